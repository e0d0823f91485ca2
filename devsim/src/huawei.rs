//! Huawei VRP: user view `<name>`, system view `[name]`, sub-views `[name-view]`; `save` asks
//! for confirmation; `super` raises the privilege level with a password.

use crate::config::RunningConfig;
use crate::shell::{After, Confirm, Personality, Shell, Waiting, caret, matches};

const VIEWS: [&str; 5] = ["interface", "vlan", "ospf", "aaa", "user-interface"];
const GLOBAL: [&str; 10] = [
    "sysname",
    "ntp-service",
    "snmp-agent",
    "info-center",
    "stp",
    "ip",
    "dns",
    "interface",
    "vlan",
    "undo",
];
const IN_VIEW: [&str; 11] = [
    "description",
    "ip",
    "undo",
    "shutdown",
    "port",
    "mtu",
    "area",
    "network",
    "local-user",
    "authentication-mode",
    "speed",
];

pub(crate) fn initial_config(hostname: &str) -> RunningConfig {
    let mut c = RunningConfig::default();
    c.upsert(&format!("sysname {hostname}"));
    let i = c.upsert("interface GigabitEthernet0/0/0");
    c.add_child(i, "ip address 192.0.2.1 255.255.255.0");
    c.upsert("ntp-service unicast-server 192.0.2.123");
    c
}

fn unrecognized(sh: &mut Shell) -> After {
    let n = sh.prompt().len();
    caret(sh, n, "Error: Unrecognized command found at '^' position.");
    After::Prompt
}

fn render(c: &RunningConfig) -> Vec<String> {
    let mut v = vec!["#".to_string()];
    v.extend(c.render(" ", Some("#")));
    v.push("return".into());
    v
}

pub(crate) fn command(sh: &mut Shell, line: &str) -> After {
    if sh.config_mode {
        return view_command(sh, line);
    }
    if line.is_empty() {
        return After::Prompt;
    }
    if matches(line, "screen-length 0 temporary").is_some() {
        sh.paging = false;
        sh.say("Info: The configuration takes effect on the current user terminal interface only.");
        return After::Prompt;
    }
    if matches(line, "display version").is_some() {
        let v = vec![
            "Huawei Versatile Routing Platform Software".into(),
            "VRP (R) software, Version 5.170 (AR2200 V200R010C10SPC700)".into(),
            format!(
                "Huawei {} uptime is 12 days, 3 hours, 4 minutes",
                sh.s.hostname
            ),
        ];
        return sh.lines(v);
    }
    if matches(line, "display current-configuration").is_some() {
        let v = render(&sh.running);
        return sh.lines(v);
    }
    if matches(line, "display saved-configuration").is_some() {
        let v = render(&sh.startup);
        return sh.lines(v);
    }
    if matches(line, "display diagnostic-information").is_some() {
        let v = sh.tech_support("display diagnostic-information");
        return sh.lines(v);
    }
    if matches(line, "super").is_some() {
        return match sh.s.enable_secret {
            Some(_) => sh.ask("Password:", Waiting::Secret),
            None => {
                sh.say("Now user privilege is 15 level, and only those commands whose level is equal to or less than this level can be used.");
                After::Prompt
            }
        };
    }
    if matches(line, "system-view").is_some() {
        sh.say("Enter system view, return user view with Ctrl+Z.");
        sh.config_mode = true;
        return After::Prompt;
    }
    if matches(line, "save").is_some() {
        sh.say("The current configuration will be written to the device.");
        return sh.ask(
            "Are you sure to continue?[Y/N]",
            Waiting::Confirm(Confirm::SaveYesNo),
        );
    }
    if matches(line, "quit").is_some() {
        return After::Disconnect;
    }
    unrecognized(sh)
}

fn view_command(sh: &mut Shell, line: &str) -> After {
    if line.is_empty() || line == "#" {
        return After::Prompt;
    }
    if matches(line, "return").is_some() {
        sh.config_mode = false;
        sh.section = None;
        return After::Prompt;
    }
    if matches(line, "quit").is_some() {
        if sh.section.take().is_none() {
            sh.config_mode = false;
        }
        return After::Prompt;
    }
    if let Some(name) = line.strip_prefix("sysname ") {
        sh.s.hostname = name.trim().to_string();
        sh.running
            .replace_keyword("sysname ", &format!("sysname {}", sh.s.hostname));
        sh.section = None;
        return After::Prompt;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    if VIEWS.contains(&words[0]) && words.len() >= 2 {
        let idx = sh.running.upsert(line);
        let label = match words[0] {
            "interface" => words[1..].join(""),
            other => format!("{other}{}", words[1..].join("")),
        };
        sh.section = Some((idx, label));
        return After::Prompt;
    }
    let undo = words[0] == "undo";
    let keyword = if undo {
        words.get(1).copied().unwrap_or("")
    } else {
        words[0]
    };
    if let Some((idx, _)) = sh.section.clone()
        && IN_VIEW.contains(&keyword)
    {
        if undo {
            sh.running.remove(Some(idx), line[5..].trim())
        } else {
            sh.running.add_child(idx, line)
        }
        return After::Prompt;
    }
    if GLOBAL.contains(&keyword) {
        sh.section = None;
        if undo {
            sh.running.remove(None, line[5..].trim())
        } else {
            sh.running.upsert(line);
        }
        return After::Prompt;
    }
    unrecognized(sh)
}

fn secret(sh: &mut Shell, answer: &str) -> After {
    if sh.s.enable_secret.as_deref() == Some(answer) {
        sh.privileged = true;
        sh.say("Now user privilege is 15 level, and only those commands whose level is equal to or less than this level can be used.");
    } else {
        sh.say("Error: Password is wrong.");
    }
    After::Prompt
}

fn confirm(sh: &mut Shell, answer: &str) -> After {
    if answer.trim().eq_ignore_ascii_case("y") {
        sh.startup = sh.running.clone();
        sh.say("Now saving the current configuration to the slot 0.\nSave the configuration successfully.");
    }
    After::Prompt
}

pub(crate) struct Huawei;

impl Personality for Huawei {
    fn initial_config(&self, hostname: &str) -> RunningConfig {
        initial_config(hostname)
    }
    fn command(&self, sh: &mut Shell, line: &str) -> After {
        command(sh, line)
    }
    fn secret(&self, sh: &mut Shell, answer: &str) -> After {
        secret(sh, answer)
    }
    fn confirm(&self, sh: &mut Shell, _c: Confirm, answer: &str) -> After {
        confirm(sh, answer)
    }
}
