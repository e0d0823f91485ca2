//! Cisco IOS / IOS-XE, Cisco NX-OS and Arista EOS: one command grammar, vendor-specific text.

use crate::config::RunningConfig;
use crate::shell::{After, Confirm, Flavor, Personality, Shell, Waiting, caret, matches};

const SECTIONS: [(&str, &str); 5] = [
    ("interface", "config-if"),
    ("router", "config-router"),
    ("line", "config-line"),
    ("vlan", "config-vlan"),
    ("ip access-list", "config-ext-nacl"),
];
const GLOBAL: [&str; 16] = [
    "hostname",
    "ip",
    "ipv6",
    "logging",
    "ntp",
    "snmp-server",
    "username",
    "banner",
    "service",
    "access-list",
    "spanning-tree",
    "aaa",
    "clock",
    "enable",
    "feature",
    "management",
];
const IN_SECTION: [&str; 22] = [
    "description",
    "ip",
    "ipv6",
    "shutdown",
    "switchport",
    "mtu",
    "speed",
    "duplex",
    "name",
    "network",
    "neighbor",
    "router-id",
    "password",
    "login",
    "transport",
    "exec-timeout",
    "channel-group",
    "vrf",
    "encapsulation",
    "bandwidth",
    "permit",
    "deny",
];

pub(crate) fn initial_config(hostname: &str) -> RunningConfig {
    let mut c = RunningConfig::default();
    c.upsert(&format!("hostname {hostname}"));
    for (i, addr) in [(0, "192.0.2.1"), (1, "198.51.100.1")] {
        let b = c.upsert(&format!("interface GigabitEthernet0/{i}"));
        c.add_child(b, &format!("ip address {addr} 255.255.255.0"));
    }
    c.upsert("ntp server 192.0.2.123");
    c
}

fn invalid(sh: &mut Shell, _line: &str) -> After {
    let prompt_len = sh.prompt().len();
    let err = match sh.s.flavor {
        Flavor::CiscoNxos => "% Invalid command at '^' marker.",
        Flavor::AristaEos => "% Invalid input",
        _ => "% Invalid input detected at '^' marker.",
    };
    caret(sh, prompt_len, err);
    After::Prompt
}

fn render(sh: &Shell, c: &RunningConfig) -> Vec<String> {
    let body = c.render(" ", Some("!"));
    let size: usize = body.iter().map(|l| l.len() + 1).sum();
    let mut out = match sh.s.flavor {
        Flavor::CiscoNxos => vec![
            String::new(),
            "!Command: show running-config".into(),
            "!Running configuration last done at: Wed Nov 25 10:00:00 2026".into(),
            "!".into(),
            "version 9.3(10) Bios:version".into(),
        ],
        Flavor::AristaEos => vec![
            "! Command: show running-config".into(),
            "! device: devsim (vEOS-lab, EOS-4.30.1F)".into(),
            "!".into(),
        ],
        _ => vec![
            "Building configuration...".into(),
            String::new(),
            format!("Current configuration : {size} bytes"),
            "!".into(),
            "version 17.9".into(),
        ],
    };
    out.extend(body);
    out.push("end".into());
    out
}

/// The file commands: a file's MD5 (`verify /md5` on IOS and EOS, `show file .. md5sum` on
/// NX-OS) and a file system's listing with its free space (`dir`). Privileged on IOS.
fn file_command(sh: &mut Shell, line: &str) -> Option<After> {
    let nxos = sh.s.flavor == Flavor::CiscoNxos;
    let md5_of = if nxos {
        matches(line, "show file * md5sum").map(|w| w[0].to_string())
    } else {
        matches(line, "verify /md5 *").map(|w| w[0].to_string())
    };
    let dir = matches(line, "dir *").map(|w| w[0].to_string());
    if md5_of.is_none() && dir.is_none() {
        return None;
    }
    if !sh.privileged {
        return Some(invalid(sh, line));
    }
    let flash = sh.s.flash.clone();
    if let Some(path) = md5_of {
        match (flash.md5(&path), nxos) {
            (Some(sum), true) => sh.say(&sum),
            (Some(sum), false) => {
                sh.say(".............................Done!");
                sh.say(&format!("verify /md5 ({path}) = {sum}"));
            }
            (None, _) => sh.say(&format!(
                "%Error opening {path} (No such file or directory)"
            )),
        }
        return Some(After::Prompt);
    }
    let fs = dir.unwrap_or_default();
    let mut out = vec![format!("Directory of {fs}"), String::new()];
    for (i, (name, size)) in flash.list(&fs).iter().enumerate() {
        out.push(format!(
            "{:>5}  -rw-  {size:>12}  Jan 1 2026 00:00:00 +00:00  {name}",
            i + 1
        ));
    }
    out.push(String::new());
    let (total, free) = (flash.capacity(), flash.free());
    if nxos {
        out.push(format!("Usage for {fs}"));
        out.push(format!("  {} bytes used", total - free));
        out.push(format!("  {free} bytes free"));
        out.push(format!("  {total} bytes total"));
    } else {
        out.push(format!("{total} bytes total ({free} bytes free)"));
    }
    Some(sh.lines(out))
}

pub(crate) fn command(sh: &mut Shell, line: &str) -> After {
    if sh.config_mode {
        return config_command(sh, line);
    }
    if line.is_empty() {
        return After::Prompt;
    }
    let priv_only = |sh: &mut Shell, f: fn(&mut Shell) -> After| {
        if sh.privileged {
            f(sh)
        } else {
            invalid(sh, line)
        }
    };
    if matches(line, "enable").is_some() {
        if sh.privileged {
            return After::Prompt;
        }
        if sh.s.enable_secret.is_none() {
            sh.privileged = true;
            return After::Prompt;
        }
        return sh.ask("Password: ", Waiting::Secret);
    }
    if matches(line, "disable").is_some() {
        sh.privileged = false;
        return After::Prompt;
    }
    if let Some(n) = matches(line, "terminal length *") {
        sh.paging = n[0] != "0";
        if sh.s.flavor == Flavor::AristaEos && !sh.paging {
            sh.say("Pagination disabled.");
        }
        return After::Prompt;
    }
    if matches(line, "terminal width *").is_some() {
        return After::Prompt;
    }
    if let Some(after) = file_command(sh, line) {
        return after;
    }
    if matches(line, "show version").is_some() {
        let h = sh.s.hostname.clone();
        let text = match sh.s.flavor {
            Flavor::CiscoNxos => format!(
                "Cisco Nexus Operating System (NX-OS) Software\nNXOS: version 9.3(10)\n  Device name: {h}\nKernel uptime is 12 day(s), 3 hour(s)"
            ),
            Flavor::AristaEos => format!(
                "Arista vEOS-lab\nSoftware image version: 4.30.1F\nHostname: {h}\nUptime: 12 days, 3 hours"
            ),
            _ => format!(
                "Cisco IOS Software, IOSv Software (VIOS-ADVENTERPRISEK9-M), Version 15.9(3)M4, RELEASE SOFTWARE (fc3)\n{h} uptime is 12 days, 3 hours, 4 minutes\nSystem image file is \"flash0:/vios-adventerprisek9-m\""
            ),
        };
        return sh.lines(text.lines().map(String::from).collect());
    }
    if matches(line, "show clock").is_some() {
        sh.say("*10:00:00.000 UTC Wed Nov 25 2026");
        return After::Prompt;
    }
    if matches(line, "show ip interface brief").is_some() {
        let mut v = vec![
            "Interface              IP-Address      OK? Method Status                Protocol"
                .to_string(),
        ];
        for b in sh
            .running
            .blocks
            .iter()
            .filter(|b| b.line.starts_with("interface "))
        {
            let addr = b
                .children
                .iter()
                .find_map(|c| c.strip_prefix("ip address "))
                .and_then(|a| a.split(' ').next())
                .unwrap_or("unassigned");
            v.push(format!(
                "{:<22} {:<15} YES manual up                    up",
                &b.line[10..],
                addr
            ));
        }
        return sh.lines(v);
    }
    if matches(line, "show tech-support").is_some() {
        let v = sh.tech_support("show tech-support");
        return sh.lines(v);
    }
    if matches(line, "show running-config").is_some() {
        return priv_only(sh, |sh| {
            let v = render(sh, &sh.running);
            sh.lines(v)
        });
    }
    if matches(line, "show startup-config").is_some() {
        return priv_only(sh, |sh| {
            let v = render(sh, &sh.startup);
            sh.lines(v)
        });
    }
    if sh.s.flavor == Flavor::AristaEos && matches(line, "show configuration sessions").is_some() {
        let mut v = vec![
            "  Name               State                  User    Terminal".to_string(),
            "  ------------------ ---------------------- ------- --------".to_string(),
        ];
        if let Some(name) = &sh.pending_session {
            v.push(format!(
                "  {name:<18} pending-commit-timer   {}   vty3",
                sh.s.username
            ));
        }
        return sh.lines(v);
    }
    if sh.s.flavor == Flavor::AristaEos
        && let Some(name) = matches(line, "configure session *")
    {
        if !sh.privileged {
            return invalid(sh, line);
        }
        // The session edits `running`; `candidate` keeps what to return to.
        sh.config_session = Some(name[0].to_string());
        sh.candidate = sh.running.clone();
        sh.config_mode = true;
        return After::Prompt;
    }
    if matches(line, "configure terminal").is_some() || matches(line, "configure").is_some() {
        return priv_only(sh, |sh| {
            if sh.s.flavor == Flavor::CiscoIos {
                sh.say("Enter configuration commands, one per line.  End with CNTL/Z.");
            }
            sh.config_mode = true;
            After::Prompt
        });
    }
    if matches(line, "write memory").is_some() || matches(line, "write").is_some() {
        return priv_only(sh, |sh| {
            sh.startup = sh.running.clone();
            match sh.s.flavor {
                Flavor::AristaEos => sh.say("Copy completed successfully."),
                Flavor::CiscoNxos => {
                    sh.say("[########################################] 100%\nCopy complete.")
                }
                _ => sh.say("Building configuration...\n[OK]"),
            }
            After::Prompt
        });
    }
    if matches(line, "copy running-config startup-config").is_some() {
        return priv_only(sh, |sh| {
            if sh.s.flavor == Flavor::CiscoIos {
                return sh.ask(
                    "Destination filename [startup-config]? ",
                    Waiting::Confirm(Confirm::SaveFilename),
                );
            }
            sh.startup = sh.running.clone();
            sh.say("[########################################] 100%\nCopy complete.");
            After::Prompt
        });
    }
    if let Some(f) = matches(line, "delete *") {
        if !sh.privileged {
            return invalid(sh, line);
        }
        let name = f[0].rsplit(':').next().unwrap_or("").to_string();
        let q = format!("Delete filename [{name}]? ");
        sh.scratch = name;
        return sh.ask(&q, Waiting::Confirm(Confirm::Step(DELETE_NAME)));
    }
    if matches(line, "exit").is_some() || matches(line, "logout").is_some() {
        return After::Disconnect;
    }
    invalid(sh, line)
}

fn config_command(sh: &mut Shell, line: &str) -> After {
    if line.is_empty() || line.starts_with('!') {
        return After::Prompt;
    }
    if sh.config_session.is_some() {
        match line {
            "show session-config diffs" => {
                let v = session_diffs(sh);
                return sh.lines(v);
            }
            // `end` leaves the session uncommitted: the running configuration is unchanged.
            "abort" | "end" => {
                sh.running = sh.candidate.clone();
                sh.config_session = None;
                sh.config_mode = false;
                sh.section = None;
                return After::Prompt;
            }
            // Committing the session that waits on its timer confirms it.
            "commit" => {
                if sh.pending_session == sh.config_session {
                    sh.pending_confirm = None;
                    sh.pending_session = None;
                }
                sh.config_session = None;
                sh.config_mode = false;
                sh.section = None;
                return After::Prompt;
            }
            _ => {}
        }
        if let Some(t) = line.strip_prefix("commit timer ") {
            let hms: Vec<u64> = t.split(':').filter_map(|p| p.parse().ok()).collect();
            let [h, m, s] = hms[..] else {
                sh.say("% Invalid input: commit timer hh:mm:ss");
                return After::Prompt;
            };
            // The device's minute (hurried in tests) scales the timer.
            let secs = h * 3600 + m * 60 + s;
            let after = sh.s.confirm_minute.mul_f64(secs as f64 / 60.0);
            let before = sh
                .pending_confirm
                .take()
                .map_or_else(|| sh.candidate.clone(), |(_, b)| b);
            sh.pending_confirm = Some((std::time::Instant::now() + after, before));
            sh.pending_session = sh.config_session.take();
            sh.config_mode = false;
            sh.section = None;
            return After::Prompt;
        }
    }
    if matches(line, "end").is_some() {
        sh.config_mode = false;
        sh.section = None;
        return After::Prompt;
    }
    if matches(line, "exit").is_some() {
        if sh.section.take().is_none() {
            sh.config_mode = false;
        }
        return After::Prompt;
    }
    if let Some(rest) = line.strip_prefix("do ") {
        let was = std::mem::replace(&mut sh.config_mode, false);
        let after = command(sh, rest);
        sh.config_mode = was;
        return after;
    }
    if let Some(name) = line.strip_prefix("hostname ") {
        sh.s.hostname = name.trim().to_string();
        sh.running
            .replace_keyword("hostname ", &format!("hostname {}", sh.s.hostname));
        sh.section = None;
        return After::Prompt;
    }
    if let Some(&(_, label)) = SECTIONS
        .iter()
        .find(|(kw, _)| line.starts_with(&format!("{kw} ")))
    {
        let idx = sh.running.upsert(line);
        sh.section = Some((idx, label.to_string()));
        return After::Prompt;
    }
    let first = line.split_whitespace().next().unwrap_or("");
    let negated = first == "no";
    let keyword = if negated {
        line.split_whitespace().nth(1).unwrap_or("")
    } else {
        first
    };
    if let Some((idx, _)) = sh.section.clone()
        && IN_SECTION.contains(&keyword)
    {
        if negated {
            sh.running.remove(Some(idx), line[3..].trim());
        } else {
            sh.running.add_child(idx, line);
        }
        return After::Prompt;
    }
    if GLOBAL.contains(&keyword) {
        sh.section = None;
        if negated {
            sh.running.remove(None, line[3..].trim());
        } else {
            sh.running.upsert(line);
        }
        return After::Prompt;
    }
    invalid(sh, line)
}

/// Cisco IOS, NX-OS and Arista EOS.
pub(crate) struct Cisco;

impl Personality for Cisco {
    fn initial_config(&self, hostname: &str) -> RunningConfig {
        initial_config(hostname)
    }
    fn command(&self, sh: &mut Shell, line: &str) -> After {
        command(sh, line)
    }
    fn confirm(&self, sh: &mut Shell, c: Confirm, answer: &str) -> After {
        match c {
            Confirm::Step(DELETE_NAME) => {
                if !answer.is_empty() {
                    sh.scratch = answer.to_string();
                }
                let q = format!("Delete flash:/{}? [confirm]", sh.scratch);
                sh.ask(&q, Waiting::Confirm(Confirm::Step(DELETE_CONFIRM)))
            }
            Confirm::Step(DELETE_CONFIRM) => {
                if answer.is_empty() || answer.eq_ignore_ascii_case("y") {
                    sh.say(&format!("Deleted flash:/{}", sh.scratch));
                } else {
                    sh.say("%Delete aborted");
                }
                After::Prompt
            }
            _ => {
                sh.startup = sh.running.clone();
                sh.say("Building configuration...\n[OK]");
                After::Prompt
            }
        }
    }
}

/// `delete`'s two questions: the file name, then `[confirm]`.
const DELETE_NAME: u8 = 1;
const DELETE_CONFIRM: u8 = 2;

/// EOS `show session-config diffs`: the session's changes to the running configuration, as a
/// unified diff of the two renderings.
fn session_diffs(sh: &Shell) -> Vec<String> {
    let old = render(sh, &sh.candidate);
    let new = render(sh, &sh.running);
    let name = sh.config_session.clone().unwrap_or_default();
    let mut out = vec![
        "--- system:/running-config".to_string(),
        format!("+++ session:/{name}-session-config"),
    ];
    out.extend(
        new.iter()
            .filter(|l| !old.contains(l))
            .map(|l| format!("+{l}")),
    );
    out.extend(
        old.iter()
            .filter(|l| !new.contains(l))
            .map(|l| format!("-{l}")),
    );
    out
}
