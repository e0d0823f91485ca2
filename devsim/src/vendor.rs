//! Which personality each flavor has: the one place that knows every vendor module.

use crate::shell::{Flavor, Personality};

pub(crate) fn personality(flavor: Flavor) -> &'static dyn Personality {
    match flavor {
        Flavor::JuniperJunos => &crate::junos::Junos,
        Flavor::Huawei => &crate::huawei::Huawei,
        Flavor::CiscoIos | Flavor::CiscoNxos | Flavor::AristaEos => &crate::cisco::Cisco,
        // One small value per device, for the life of the process.
        Flavor::Model(m) => Box::leak(Box::new(crate::generic::Generic(m))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::{Flavor, Shell, ShellSettings, matches};

    pub(crate) fn shell(flavor: Flavor) -> Shell {
        Shell::new(
            ShellSettings {
                flavor,
                hostname: "R1".into(),
                username: "admin".into(),
                enable_secret: Some("en4ble".into()),
                tech_support_lines: 60,
                page_lines: 24,
                prompt: Default::default(),
                confirm_minute: std::time::Duration::from_secs(60),
                flash: Default::default(),
            },
            personality(flavor),
        )
    }

    fn run(sh: &mut Shell, line: &str) -> String {
        String::from_utf8(sh.input(format!("{line}\n").as_bytes()).output).unwrap()
    }

    #[test]
    fn abbreviations_match() {
        assert_eq!(matches("sh run", "show running-config"), Some(vec![]));
        assert_eq!(matches("term len 0", "terminal length *"), Some(vec!["0"]));
        assert_eq!(matches("s run", "show running-config"), None);
        assert_eq!(matches("show run extra", "show running-config"), None);
    }

    #[test]
    fn ios_enable_config_and_running_config() {
        let mut sh = shell(Flavor::CiscoIos);
        assert!(String::from_utf8(sh.greeting()).unwrap().ends_with("R1>"));
        assert!(run(&mut sh, "show running-config").contains("% Invalid input"));
        assert!(run(&mut sh, "enable").ends_with("Password: "));
        assert!(run(&mut sh, "en4ble").ends_with("R1#"));
        assert!(run(&mut sh, "conf t").ends_with("R1(config)#"));
        assert!(run(&mut sh, "interface Loopback9").ends_with("R1(config-if)#"));
        assert!(run(&mut sh, "description mgmt").ends_with("R1(config-if)#"));
        assert!(run(&mut sh, "bogus words").contains("% Invalid input detected at '^' marker."));
        assert!(run(&mut sh, "end").ends_with("R1#"));
        let out = run(&mut sh, "terminal length 0");
        assert!(out.ends_with("R1#"), "{out}");
        let conf = run(&mut sh, "show running-config");
        assert!(
            conf.contains("interface Loopback9\r\n description mgmt\r\n"),
            "{conf}"
        );
    }

    #[test]
    fn paging_stops_at_more_until_a_key_and_is_off_after_terminal_length_0() {
        let mut sh = shell(Flavor::CiscoIos);
        sh.greeting();
        let first = run(&mut sh, "show tech-support");
        assert!(first.ends_with(" --More-- "), "{first}");
        assert_eq!(first.matches("\r\n").count(), 24); // echo line + 23 output lines
        let rest = String::from_utf8(sh.input(b" ").output).unwrap();
        assert!(rest.ends_with(" --More-- "));
        let rest = String::from_utf8(sh.input(b" ").output).unwrap();
        assert!(rest.ends_with("R1>"), "{rest}");
        run(&mut sh, "terminal length 0");
        let all = run(&mut sh, "show tech-support");
        assert!(!all.contains("More") && all.ends_with("R1>"));
    }

    #[test]
    fn junos_commit_and_huawei_save() {
        let mut sh = shell(Flavor::JuniperJunos);
        sh.greeting();
        assert!(run(&mut sh, "configure").ends_with("[edit]\r\nadmin@R1# "));
        run(&mut sh, "set interfaces ge-0/0/1 description uplink");
        assert!(run(&mut sh, "frobnicate").contains("unknown command."));
        assert!(run(&mut sh, "commit").contains("commit complete"));
        run(&mut sh, "exit configuration-mode");
        assert!(
            run(&mut sh, "show configuration | display set")
                .contains("set interfaces ge-0/0/1 description uplink")
        );

        let mut sh = shell(Flavor::Huawei);
        sh.greeting();
        assert!(run(&mut sh, "system-view").ends_with("[R1]"));
        assert!(
            run(&mut sh, "interface GigabitEthernet0/0/1").ends_with("[R1-GigabitEthernet0/0/1]")
        );
        run(&mut sh, "description uplink");
        assert!(run(&mut sh, "return").ends_with("<R1>"));
        assert!(run(&mut sh, "save").ends_with("[Y/N]"));
        assert!(run(&mut sh, "y").contains("successfully"));
        assert!(run(&mut sh, "display saved-configuration").contains(" description uplink"));
    }
}
