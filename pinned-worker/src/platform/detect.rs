//! `device_type: autodetect`: which platform a device is, judged from its login banner and its
//! answers to the commands the definitions' `[detect]` sections name (Netmiko's SSHDetect
//! idea). The session logs in as the `autodetect` platform, a probe that accepts any prompt
//! and answers any platform's pager and login questions, runs the commands until one
//! platform matches with certainty (or all have run), and then carries on as the best match.

use regex::{Regex, RegexSet};

use super::{ModeTest, Platform, Save};

/// The device type that asks for detection.
pub const AUTODETECT: &str = "autodetect";
/// The priority that ends detection at once.
pub const CERTAIN: u8 = 99;

/// What identifies one platform (its definition's `[detect]` section).
#[derive(Clone, Debug)]
pub struct Detect {
    pub command: String,
    /// Matched against the command's output.
    pub patterns: RegexSet,
    /// Matched against what the device printed at login, up to its first prompt.
    pub banner: RegexSet,
    pub priority: u8,
}

#[derive(Debug)]
pub struct Detector {
    /// Every platform with a `[detect]` section, by name.
    pub candidates: Vec<&'static Platform>,
    /// The commands to send, those most platforms share first (one answer settles many).
    pub commands: Vec<String>,
    /// The probe's own prompt pattern: another one is the caller's override, which the
    /// platform found then takes too.
    pub probe_prompt: String,
}

/// A platform that matched, and how sure the match is.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub platform: &'static Platform,
    pub priority: u8,
}

impl Detector {
    /// The `autodetect` platform for a catalog whose platforms are `all` (sorted by name).
    pub fn probe(all: &[&'static Platform]) -> &'static Platform {
        let candidates: Vec<&'static Platform> =
            all.iter().copied().filter(|p| p.detect.is_some()).collect();
        let mut commands: Vec<(usize, String)> = Vec::new();
        for c in candidates.iter().filter_map(|p| p.detect.as_ref()) {
            match commands.iter_mut().find(|(_, cmd)| *cmd == c.command) {
                Some((n, _)) => *n += 1,
                None => commands.push((1, c.command.clone())),
            }
        }
        // Stable: among commands as common, the one met first (by platform name) goes first.
        commands.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        let mut terminators = String::new();
        let mut more: Vec<&str> = Vec::new();
        let mut confirmations: Vec<super::Confirmation> = Vec::new();
        for p in all {
            for t in p.terminators.chars() {
                if !terminators.contains(t) {
                    terminators.push(t);
                }
            }
            if !more.contains(&p.more.as_str()) {
                more.push(p.more.as_str());
            }
            for c in &p.confirmations {
                if !confirmations
                    .iter()
                    .any(|k| k.pattern.as_str() == c.pattern.as_str())
                {
                    confirmations.push(c.clone());
                }
            }
        }
        // Matches nothing: every prompt is taken by its shape, after a quiet period, and then
        // followed exactly (see the session's learned prompt).
        let prompt = Regex::new(r"(?P<host>[^\s\S])").expect("valid");
        let more = more
            .iter()
            .map(|m| format!("(?:{m})"))
            .collect::<Vec<_>>()
            .join("|");
        let detector: &'static Detector = Box::leak(Box::new(Detector {
            candidates,
            commands: commands.into_iter().map(|(_, c)| c).collect(),
            probe_prompt: prompt.as_str().to_string(),
        }));
        Box::leak(Box::new(Platform {
            name: AUTODETECT.into(),
            ntc_name: AUTODETECT.into(),
            show_config: None,
            transfer: Default::default(),
            dry_run: None,
            commit_confirmed: None,
            vendor: String::new(),
            prompt,
            prompt_lines: 1,
            terminators,
            loose_prompt: std::sync::OnceLock::new(),
            privileged: ModeTest::Never,
            in_config: ModeTest::Never,
            prompt_preamble: None,
            paging_off: Vec::new(),
            more: Regex::new(&more).expect("each part compiled on its own"),
            enable: None,
            config: None,
            save: Save::Unsupported,
            confirmations,
            rejected: RegexSet::empty(),
            drop_lines: RegexSet::empty(),
            modes: Vec::new(),
            detect: None,
            detector: Some(detector),
        }))
    }

    /// The best match for a device that printed `banner` at login and answered the commands
    /// in `outputs` (command, output) so far: the highest priority, ties to the first name.
    pub fn best(&self, banner: &str, outputs: &[(String, String)]) -> Option<Found> {
        let mut best: Option<Found> = None;
        for &platform in &self.candidates {
            let d = platform.detect.as_ref().expect("candidates detect");
            let hit = d.banner.is_match(banner)
                || outputs
                    .iter()
                    .any(|(cmd, out)| *cmd == d.command && d.patterns.is_match(out));
            if hit && best.is_none_or(|b| d.priority > b.priority) {
                best = Some(Found {
                    platform,
                    priority: d.priority,
                });
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Catalog;

    fn detector() -> &'static Detector {
        let c = Box::leak(Box::new(Catalog::builtin()));
        c.lookup(AUTODETECT).unwrap().detector.unwrap()
    }

    fn found(banner: &str, outputs: &[(&str, &str)]) -> Option<&'static str> {
        let outputs: Vec<(String, String)> = outputs
            .iter()
            .map(|(c, o)| (c.to_string(), o.to_string()))
            .collect();
        detector()
            .best(banner, &outputs)
            .map(|f| f.platform.name.as_str())
    }

    #[test]
    fn vendor_outputs_name_their_platform() {
        let v = "show version";
        let cases = [
            (
                "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(7)E4",
                "cisco_ios",
            ),
            // IOS-XE prints the IOS line too; its own line wins.
            (
                "Cisco IOS XE Software, Version 17.03.04a\nCisco IOS Software [Amsterdam], Virtual XE Software",
                "cisco_xe",
            ),
            ("Cisco IOS XR Software, Version 7.3.2", "cisco_xr"),
            (
                "Cisco Nexus Operating System (NX-OS) Software\nNXOS: version 9.3(8)",
                "cisco_nxos",
            ),
            (
                "Image stamp:    /ws/swbuildm/K_15_18_0013/code/build/btm(swbuildm_K_15_18_0013)\n                K.15.18.0013",
                "hp_procurve",
            ),
            (
                "Image stamp:    /ws/swbuildm/rel_ukiah_qaoff/code/build/bom(swbuildm_rel_ukiah_qaoff_rel_ukiah)\n                KB.16.10.0003",
                "aruba_osswitch",
            ),
            (
                "Hostname: r1\nModel: mx960\nJunos: 20.4R3.8\nJUNOS OS Kernel 64-bit  [20210618.f43645e_builder_stable_11]",
                "juniper_junos",
            ),
        ];
        for (out, want) in cases {
            assert_eq!(found("", &[(v, out)]), Some(want), "{out}");
        }
        let vrp5 = "Huawei Versatile Routing Platform Software\nVRP (R) software, Version 5.170 (S5720 V200R011C10SPC600)";
        let vrp8 = "Huawei Versatile Routing Platform Software\nVRP (R) software, Version 8.180 (CE6881 V300R020C10SPC200)";
        assert_eq!(found("", &[("display version", vrp5)]), Some("huawei"));
        assert_eq!(
            found("", &[("display version", vrp8)]),
            Some("huawei_vrpv8")
        );
        let uname =
            "Linux web1 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 x86_64 GNU/Linux";
        assert_eq!(found("", &[("uname -a", uname)]), Some("linux"));
    }

    #[test]
    fn an_answer_counts_only_for_the_command_it_answers() {
        // "Linux" in EdgeSwitch's version text is not an answer to `uname -a`.
        let edge = "System Description.... EdgeSwitch 24-Port 250W, 1.9.3, Linux 3.6.5";
        assert_eq!(
            found("", &[("show version", edge)]),
            Some("ubiquiti_edgeswitch")
        );
        assert_eq!(
            found("", &[("get system status", "Version: VyOS 1.4")]),
            None
        );
        assert_eq!(
            found("", &[("show version", "% Invalid input detected")]),
            None
        );
    }

    #[test]
    fn a_banner_alone_can_settle_it() {
        let banner = "\n  MikroTik RouterOS 7.12 (c) 1999-2023       https://www.mikrotik.com/\n\n[admin@gw] > ";
        assert_eq!(found(banner, &[]), Some("mikrotik_routeros"));
        assert_eq!(found("Unauthorized access is prohibited.\nR1>", &[]), None);
    }

    #[test]
    fn the_most_shared_command_goes_first_and_the_probe_takes_every_prompt_shape() {
        let d = detector();
        assert_eq!(d.commands[0], "show version");
        assert!(d.commands.contains(&"uname -a".to_string()));
        let probe = Catalog::builtin().lookup(AUTODETECT).unwrap();
        for t in ['>', '#', '$', ']', '%'] {
            assert!(probe.terminators.contains(t), "{t}");
        }
        assert!(probe.more.is_match(" --More-- "));
        assert!(probe.more.is_match("-- [Q quit|D dump|down]"));
        assert!(
            !probe.prompt.is_match("R1#"),
            "prompts are taken by shape only"
        );
        assert!(
            probe
                .confirmations
                .iter()
                .any(|c| c.pattern.is_match("Press any key to continue"))
        );
    }
}
