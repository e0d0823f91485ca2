//! Juniper Junos: operational mode, and configuration mode with a candidate configuration that
//! only `commit` makes running (and persistent).

use crate::config::RunningConfig;
use crate::shell::{After, Personality, Shell, caret, matches};

const SET_ROOTS: [&str; 10] = [
    "system",
    "interfaces",
    "protocols",
    "routing-options",
    "policy-options",
    "firewall",
    "vlans",
    "snmp",
    "security",
    "routing-instances",
];

pub(crate) fn initial_config(hostname: &str) -> RunningConfig {
    let mut c = RunningConfig::default();
    c.upsert(&format!("set system host-name {hostname}"));
    c.upsert("set interfaces ge-0/0/0 unit 0 family inet address 192.0.2.1/24");
    c.upsert("set system ntp server 192.0.2.123");
    c
}

fn unknown(sh: &mut Shell) -> After {
    let n = sh.prompt().trim_start().len();
    caret(sh, n, "unknown command.");
    After::Prompt
}

pub(crate) fn command(sh: &mut Shell, line: &str) -> After {
    if sh.config_mode {
        return config_command(sh, line);
    }
    if line.is_empty() {
        return After::Prompt;
    }
    if let Some(n) = matches(line, "set cli screen-length *") {
        sh.paging = n[0] != "0";
        sh.say(&format!("Screen length set to {}", n[0]));
        return After::Prompt;
    }
    if let Some(n) = matches(line, "set cli screen-width *") {
        sh.say(&format!("Screen width set to {}", n[0]));
        return After::Prompt;
    }
    if matches(line, "show version").is_some() {
        let v = vec![
            format!("Hostname: {}", sh.s.hostname),
            "Model: vmx".into(),
            "Junos: 21.4R3-S3.4".into(),
        ];
        return sh.lines(v);
    }
    if matches(line, "show configuration").is_some()
        || matches(line, "show configuration | display set").is_some()
    {
        let v = sh.running.render("", None);
        return sh.lines(v);
    }
    if matches(line, "show system commit").is_some() {
        // The latest first; a confirmed commit shows its timer only while it waits.
        let pending = sh.pending_confirm.is_some();
        let v = sh
            .commits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, c)| {
                let c = if i > 0 || !pending {
                    c.split(", rollback in").next().unwrap_or(c).to_string()
                } else {
                    c.clone()
                };
                format!("{i}   2026-12-02 10:{:02}:00 UTC {c}", i % 60)
            })
            .collect();
        return sh.lines(v);
    }
    if matches(line, "show interfaces terse").is_some() {
        let v = vec![
            "Interface               Admin Link Proto    Local                 Remote".into(),
            "ge-0/0/0                up    up".into(),
            "ge-0/0/0.0              up    up   inet     192.0.2.1/24".into(),
        ];
        return sh.lines(v);
    }
    if matches(line, "request support information").is_some() {
        let v = sh.tech_support("request support information");
        return sh.lines(v);
    }
    if matches(line, "configure").is_some() || matches(line, "configure private").is_some() {
        sh.say("Entering configuration mode");
        sh.candidate = sh.running.clone();
        sh.config_mode = true;
        return After::Prompt;
    }
    if matches(line, "exit").is_some() || matches(line, "quit").is_some() {
        return After::Disconnect;
    }
    unknown(sh)
}

fn config_command(sh: &mut Shell, line: &str) -> After {
    if line.is_empty() {
        return After::Prompt;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[0] {
        "set" => {
            if words.len() < 3 || !SET_ROOTS.contains(&words[1]) {
                let n = sh.prompt().trim_start().len();
                caret(sh, n + 4, "syntax error.");
            } else {
                sh.candidate.upsert(line);
            }
            After::Prompt
        }
        "delete" => {
            let what = format!("set {}", &line[7..]);
            sh.candidate.remove(None, what.trim());
            After::Prompt
        }
        "commit" => {
            if words.get(1) == Some(&"check") {
                sh.say("configuration check succeeds");
                return After::Prompt;
            }
            let confirmed = match words.get(1..) {
                Some(["confirmed", n]) => match n.parse::<u32>() {
                    Ok(m @ 1..=65535) => Some(m),
                    _ => {
                        sh.say("error: invalid value for minutes (1..65535)");
                        return After::Prompt;
                    }
                },
                _ => None,
            };
            match confirmed {
                Some(m) => {
                    // The previous configuration comes back unless a commit follows in time.
                    let before = sh
                        .pending_confirm
                        .take()
                        .map_or_else(|| sh.running.clone(), |(_, b)| b);
                    let deadline = std::time::Instant::now() + sh.s.confirm_minute * m;
                    sh.pending_confirm = Some((deadline, before));
                    sh.commits.push(format!(
                        "by {} via cli commit confirmed, rollback in {m}mins",
                        sh.s.username
                    ));
                    sh.say(&format!("commit confirmed will be automatically rolled back in {m} minutes unless confirmed"));
                }
                None => {
                    sh.pending_confirm = None;
                    sh.commits.push(format!("by {} via cli", sh.s.username));
                }
            }
            sh.running = sh.candidate.clone();
            sh.startup = sh.running.clone();
            if let Some(b) = sh
                .running
                .blocks
                .iter()
                .find(|b| b.line.starts_with("set system host-name "))
            {
                sh.s.hostname = b.line["set system host-name ".len()..].to_string();
            }
            sh.say("commit complete");
            if words.get(1) == Some(&"and-quit") {
                sh.say("Exiting configuration mode");
                sh.config_mode = false;
            }
            After::Prompt
        }
        "rollback" => {
            sh.candidate = sh.running.clone();
            sh.say("load complete");
            After::Prompt
        }
        "show" if line == "show | compare" => {
            let v = compare(&sh.running, &sh.candidate);
            sh.lines(v)
        }
        "show" => {
            let v = sh.candidate.render("", None);
            sh.lines(v)
        }
        "exit" | "quit" => {
            if words.len() == 1 || words[1] == "configuration-mode" {
                sh.candidate = sh.running.clone();
                sh.say("Exiting configuration mode");
                sh.config_mode = false;
            }
            After::Prompt
        }
        _ => unknown(sh),
    }
}

/// `show | compare`: each changed statement under its hierarchy, `+` added, `-` removed.
fn compare(running: &RunningConfig, candidate: &RunningConfig) -> Vec<String> {
    let lines =
        |c: &RunningConfig| -> Vec<String> { c.blocks.iter().map(|b| b.line.clone()).collect() };
    let (old, new) = (lines(running), lines(candidate));
    let mut out = Vec::new();
    let mut last = String::new();
    let changes = new
        .iter()
        .filter(|l| !old.contains(l))
        .map(|l| ('+', l))
        .chain(old.iter().filter(|l| !new.contains(l)).map(|l| ('-', l)));
    for (sign, line) in changes {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let cut = words.len().saturating_sub(2);
        let edit = format!("[edit {}]", words[..cut].join(" "));
        if edit != last {
            out.push(edit.clone());
            last = edit;
        }
        out.push(format!("{sign}    {};", words[cut..].join(" ")));
    }
    out
}

pub(crate) struct Junos;

impl Personality for Junos {
    fn initial_config(&self, hostname: &str) -> RunningConfig {
        initial_config(hostname)
    }
    fn command(&self, sh: &mut Shell, line: &str) -> After {
        command(sh, line)
    }
}
