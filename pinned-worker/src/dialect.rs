//! Platform dialects: what a prompt looks like, how to turn paging off, enter enable and
//! configuration mode, commit and save, and which output means the device rejected a command.
//!
//! Prompt patterns are matched against the last, unterminated line of device output after
//! escape sequences are removed; the `host` group names the device and anchors later matches.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use crate::error::SessionError;

#[derive(Debug)]
pub struct Dialect {
    pub name: &'static str,
    pub prompt: Regex,
    /// Does this (matched) prompt mean privileged (enable) mode?
    pub privileged: fn(&regex::Captures<'_>) -> bool,
    /// Does this (matched) prompt mean configuration mode?
    pub in_config: fn(&regex::Captures<'_>) -> bool,
    pub paging_off: &'static [&'static str],
    pub enable: Option<Enable>,
    pub config: Option<ConfigMode>,
    pub save: Save,
    pub rejected: RegexSet,
    pub more: Regex,
    /// A line printed just above the prompt that belongs to the prompt (Junos `[edit]`).
    pub prompt_preamble: Option<Regex>,
}

#[derive(Debug)]
pub struct Enable {
    pub command: &'static str,
    pub secret_prompt: Regex,
    /// Whether the prompt shows the privilege level (otherwise success is judged by the absence
    /// of an error).
    pub prompt_shows_privilege: bool,
}

#[derive(Debug)]
pub struct ConfigMode {
    pub enter: &'static str,
    pub exit: &'static str,
    /// Platforms with a candidate configuration: the command that applies it, and the one that
    /// throws it away after a failed push.
    pub commit: Option<(&'static str, &'static str)>,
}

#[derive(Debug)]
pub enum Save {
    Command {
        command: &'static str,
        confirm: Option<(Regex, &'static str)>,
    },
    /// A commit already persists the configuration (Junos).
    ByCommit,
    Unsupported,
}

// Patterns use ASCII classes ([[:word:]], [[:space:]]): Unicode \\w tables made building the
// table cost over 100 ms, paid by every one-shot worker at start.
fn re(s: &str) -> Regex {
    Regex::new(s).expect("valid dialect regex")
}

fn set(s: &[&str]) -> RegexSet {
    RegexSet::new(s).expect("valid dialect regex set")
}

fn sign_is_hash(c: &regex::Captures<'_>) -> bool {
    c.name("sign").is_some_and(|m| m.as_str() == "#")
}

fn cisco_in_config(c: &regex::Captures<'_>) -> bool {
    c.name("mode")
        .is_some_and(|m| m.as_str().starts_with("config"))
}

const CISCO_PROMPT: &str = r"^(?P<host>[A-Za-z0-9][[:word:].\-@/:]{0,62})(?:\((?P<mode>[[:word:].\-@/:+ ]{1,40})\))?(?P<sign>[>#])[[:space:]]?$";
const MORE: &str = r"(?i)^[[:space:]]*(--[[:space:]]?more[[:space:]]?--|---[[:space:]]?\(more( [0-9]+%)?\)[[:space:]]?---|-+ more -+|<--- more --->)[[:space:]]*$";
const PASSWORD: &str = r"(?i)password:[[:space:]]*$";

fn cisco(name: &'static str, rejected: &[&str], save: &'static str) -> Dialect {
    Dialect {
        name,
        prompt: re(CISCO_PROMPT),
        privileged: sign_is_hash,
        in_config: cisco_in_config,
        paging_off: &["terminal length 0", "terminal width 511"],
        enable: Some(Enable {
            command: "enable",
            secret_prompt: re(PASSWORD),
            prompt_shows_privilege: true,
        }),
        config: Some(ConfigMode {
            enter: "configure terminal",
            exit: "end",
            commit: None,
        }),
        save: Save::Command {
            command: save,
            confirm: None,
        },
        rejected: set(rejected),
        more: re(MORE),
        prompt_preamble: None,
    }
}

const NAMES: [&str; 6] = [
    "cisco_ios",
    "cisco_nxos",
    "arista_eos",
    "juniper_junos",
    "huawei",
    "linux",
];

// Each dialect's patterns are compiled on first use, so a worker pays only for its own.
static DIALECTS: [LazyLock<Dialect>; 6] = [
    LazyLock::new(cisco_ios),
    LazyLock::new(cisco_nxos),
    LazyLock::new(arista_eos),
    LazyLock::new(juniper_junos),
    LazyLock::new(huawei),
    LazyLock::new(linux),
];

fn cisco_ios() -> Dialect {
    cisco(
        "cisco_ios",
        &[
            r"(?m)^% ?Invalid input",
            r"(?m)^% ?Incomplete command",
            r"(?m)^% ?Ambiguous command",
            r"(?m)^% ?Unknown command",
            r"(?m)^% ?Bad ",
            r"(?m)^[[:space:]]*\^[[:space:]]*$",
        ],
        "write memory",
    )
}

fn cisco_nxos() -> Dialect {
    cisco(
        "cisco_nxos",
        &[
            r"(?m)^% ?Invalid",
            r"(?m)^% ?Incomplete command",
            r"(?m)^% ?Ambiguous command",
            r"(?m)^ERROR:",
            r"(?m)^[[:space:]]*\^[[:space:]]*$",
        ],
        "copy running-config startup-config",
    )
}

fn arista_eos() -> Dialect {
    cisco(
        "arista_eos",
        &[
            r"(?m)^% ?Invalid input",
            r"(?m)^% ?Incomplete command",
            r"(?m)^% ?Ambiguous command",
            r"(?m)^% ?Unavailable command",
            r"(?m)^% ?Error",
        ],
        "write memory",
    )
}

fn juniper_junos() -> Dialect {
    Dialect {
        name: "juniper_junos",
        prompt: re(r"^(?P<host>[[:word:].\-]+@[[:word:].\-]+)(?P<sign>[>#%])[[:space:]]?$"),
        privileged: |_| true,
        in_config: sign_is_hash,
        paging_off: &["set cli screen-length 0", "set cli screen-width 1024"],
        enable: None,
        config: Some(ConfigMode {
            enter: "configure",
            exit: "exit configuration-mode",
            commit: Some(("commit", "rollback 0")),
        }),
        save: Save::ByCommit,
        rejected: set(&[
            r"(?m)^unknown command\.",
            r"(?m)^syntax error",
            r"(?m)^[[:space:]]*error:",
            r"(?m)^missing argument",
            r"(?m)^invalid value",
        ]),
        more: re(MORE),
        prompt_preamble: Some(re(r"^\[edit.*\][[:space:]]*$")),
    }
}

fn huawei() -> Dialect {
    Dialect {
        name: "huawei",
        prompt: re(
            r"^(?P<open>[<\[])[~*]?(?P<host>[[:word:].\-/:@]{1,80})(?P<close>[>\]])[[:space:]]?$",
        ),
        privileged: |_| true,
        in_config: |c| c.name("open").is_some_and(|m| m.as_str() == "["),
        paging_off: &["screen-length 0 temporary"],
        enable: Some(Enable {
            command: "super",
            secret_prompt: re(PASSWORD),
            prompt_shows_privilege: false,
        }),
        config: Some(ConfigMode {
            enter: "system-view",
            exit: "return",
            commit: None,
        }),
        save: Save::Command {
            command: "save",
            confirm: Some((re(r"(?i)\[Y/N\]:?[[:space:]]*$"), "y")),
        },
        rejected: set(&[
            r"(?m)^[[:space:]]*Error:",
            r"(?m)^[[:space:]]*\^[[:space:]]*$",
        ]),
        more: re(MORE),
        prompt_preamble: None,
    }
}

fn linux() -> Dialect {
    Dialect {
        name: "linux",
        prompt: re(
            r"^\[?(?P<host>[[:word:].\-]+(?:@[[:word:].\-]+)?)[^\r\n]{0,200}(?P<sign>[$#%>])[[:space:]]?$",
        ),
        privileged: sign_is_hash,
        in_config: |_| false,
        paging_off: &["export PAGER=cat SYSTEMD_PAGER= LESS=-FRX"],
        enable: None,
        config: None,
        save: Save::Unsupported,
        rejected: set(&[
            r"(?m): command not found$",
            r"(?m)^-?[[:word:]]+: [^[:space:]]+: command not found",
        ]),
        more: re(r"^(--More--|\(END\)|:)[[:space:]]*$"),
        prompt_preamble: None,
    }
}

/// Looks a dialect up by its `device_type` name; `cisco_xe` is an alias of `cisco_ios`.
pub fn lookup(device_type: &str) -> Result<&'static Dialect, SessionError> {
    let name = match device_type {
        "cisco_xe" => "cisco_ios",
        other => other,
    };
    let i =
        NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| SessionError::UnknownDeviceType {
                got: device_type.to_string(),
                allowed: names().join(", "),
            })?;
    Ok(&DIALECTS[i])
}

pub fn names() -> Vec<&'static str> {
    let mut v = NAMES.to_vec();
    v.insert(1, "cisco_xe");
    v
}

/// Dialects are static singletons: two are the same when they have the same name.
impl PartialEq for Dialect {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Dialect {}

impl Dialect {
    /// The first rejection line in `output`, if the device rejected the command.
    pub fn rejection<'a>(&self, output: &'a str) -> Option<&'a str> {
        if !self.rejected.is_match(output) {
            return None;
        }
        let lines: Vec<&str> = output.lines().collect();
        // Prefer the message over the caret line that usually precedes it.
        lines
            .iter()
            .find(|l| {
                let t = l.trim();
                !t.is_empty() && t != "^" && self.rejected.is_match(l)
            })
            .or_else(|| lines.iter().find(|l| self.rejected.is_match(l)))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(d: &str, line: &str) -> Option<String> {
        lookup(d)
            .unwrap()
            .prompt
            .captures(line)
            .map(|c| c["host"].to_string())
    }

    #[test]
    fn prompts_of_every_dialect() {
        assert_eq!(prompt("cisco_xe", "R1#").as_deref(), Some("R1"));
        assert_eq!(prompt("cisco_ios", "R1(config-if)#").as_deref(), Some("R1"));
        assert_eq!(prompt("cisco_ios", "show run | inc #"), None);
        assert_eq!(
            prompt("arista_eos", "sw1(config-if-Et1)#").as_deref(),
            Some("sw1")
        );
        assert_eq!(
            prompt("juniper_junos", "admin@vmx1> ").as_deref(),
            Some("admin@vmx1")
        );
        assert_eq!(
            prompt("huawei", "[~HUAWEI-GigabitEthernet0/0/1]").as_deref(),
            Some("HUAWEI-GigabitEthernet0/0/1")
        );
        assert_eq!(prompt("huawei", "<HUAWEI>").as_deref(), Some("HUAWEI"));
        assert_eq!(
            prompt("linux", "root@host1:~# ").as_deref(),
            Some("root@host1")
        );
        assert_eq!(
            prompt("linux", "[user@web1 tmp]$ ").as_deref(),
            Some("user@web1")
        );
    }

    #[test]
    fn rejections_are_found_and_named() {
        let ios = lookup("cisco_ios").unwrap();
        let out = "        ^\n% Invalid input detected at '^' marker.";
        assert_eq!(
            ios.rejection(out),
            Some("% Invalid input detected at '^' marker.")
        );
        assert_eq!(ios.rejection("Building configuration...\n[OK]"), None);
        let hw = lookup("huawei").unwrap();
        assert!(
            hw.rejection("   ^\nError: Unrecognized command found at '^' position.")
                .is_some()
        );
        let junos = lookup("juniper_junos").unwrap();
        assert!(junos.rejection("      ^\nunknown command.").is_some());
        assert!(
            lookup("linux")
                .unwrap()
                .rejection("bash: foo: command not found")
                .is_some()
        );
    }

    #[test]
    fn unknown_device_type_lists_the_allowed_ones() {
        let e = lookup("cisco_foo").unwrap_err().to_string();
        assert!(
            e.contains("cisco_foo") && e.contains("juniper_junos") && e.contains("cisco_xe"),
            "{e}"
        );
    }

    #[test]
    fn more_prompts() {
        let m = &lookup("cisco_ios").unwrap().more;
        for s in [
            " --More-- ",
            "---(more)---",
            "---(more 42%)---",
            "  ---- More ----",
        ] {
            assert!(m.is_match(s), "{s}");
        }
    }
}
