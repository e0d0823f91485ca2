//! Platforms: what a prompt looks like, how to turn paging off, enter enable and configuration
//! mode, commit and save, which questions to answer, and which output means the device
//! rejected a command. Each platform is data, one TOML file (`definition` describes the
//! format); the built-in files in `pinned-worker/platforms/` are embedded in the binary, and an
//! operator's directory adds or overrides definitions (`catalog`).
//!
//! Prompt patterns are matched against the last, unterminated line of device output after
//! escape sequences are removed; the `host` group names the device and anchors later matches.

mod catalog;
pub mod definition;
pub mod detect;
pub mod transfer;

use regex::{Captures, Regex, RegexSet};

use crate::error::SessionError;

pub use catalog::{Catalog, install, lookup, names};
pub use definition::DefinitionError;
pub use detect::{AUTODETECT, Detect, Detector};

#[derive(Clone, Debug)]
pub struct Platform {
    pub name: String,
    pub vendor: String,
    /// The platform's name in ntc-templates' index (its own name unless the definition says).
    pub ntc_name: String,
    /// Prints the running configuration (`backup`).
    pub show_config: Option<String>,
    /// How files move to and from it.
    pub transfer: transfer::TransferRules,
    /// How a dry run loads lines into a candidate, shows the device's diff and throws it away.
    pub dry_run: Option<DryRun>,
    /// A commit the device rolls back by itself unless confirmed in time.
    pub commit_confirmed: Option<CommitConfirmed>,
    pub prompt: Regex,
    /// Lines the prompt spans (1 or 2); `prompt` matches them joined by `\n`.
    pub prompt_lines: usize,
    /// The characters a prompt may end with (used for prompts `prompt` does not describe).
    pub terminators: String,
    /// Any line ending with one of `terminators`: how a first prompt of another shape is
    /// recognised (after a quiet period). Compiled when first needed (`loose_prompt()`): a
    /// worker whose device fits the pattern never pays for it.
    pub loose_prompt: std::sync::OnceLock<Regex>,
    pub privileged: ModeTest,
    pub in_config: ModeTest,
    /// A line printed just above the prompt that belongs to the prompt (Junos `[edit]`).
    pub prompt_preamble: Option<Regex>,
    pub paging_off: Vec<String>,
    pub more: Regex,
    pub enable: Option<Enable>,
    pub config: Option<ConfigMode>,
    pub save: Save,
    /// Questions any command may raise, with the answer the platform always gives.
    pub confirmations: Vec<Confirmation>,
    pub rejected: RegexSet,
    pub drop_lines: RegexSet,
    /// Modes besides user, enable and configuration, by name.
    pub modes: Vec<NamedMode>,
    /// How autodetection recognises this platform.
    pub detect: Option<Detect>,
    /// Set only on the `autodetect` platform: the session identifies the device with it,
    /// then carries on as the platform it found.
    pub detector: Option<&'static Detector>,
}

/// Whether a matched prompt means a mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeTest {
    Always,
    Never,
    Group {
        group: String,
        any_of: Vec<String>,
        prefix: Option<String>,
    },
}

impl ModeTest {
    pub fn test(&self, c: &Captures<'_>) -> bool {
        match self {
            ModeTest::Always => true,
            ModeTest::Never => false,
            ModeTest::Group {
                group,
                any_of,
                prefix,
            } => c.name(group).is_some_and(|m| {
                let m = m.as_str();
                any_of.iter().any(|a| a == m) || prefix.as_ref().is_some_and(|p| m.starts_with(p))
            }),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Enable {
    pub command: String,
    pub secret_prompt: Regex,
    /// Whether the prompt shows the privilege level (otherwise success is judged by the absence
    /// of an error).
    pub prompt_shows_privilege: bool,
}

#[derive(Clone, Debug)]
pub struct ConfigMode {
    pub enter: String,
    pub exit: String,
    /// Platforms with a candidate configuration.
    pub commit: Option<Commit>,
}

#[derive(Clone, Debug)]
pub struct CommitConfirmed {
    /// Enters configuration mode for the timed push and for its confirmation (an EOS
    /// configuration session); default: `config.enter`.
    pub enter: String,
    /// The commit with its timer: `{minutes}` (rounded up), `{seconds}` or `{hms}`
    /// (hh:mm:ss) is replaced.
    pub command: String,
    /// Confirms it, in configuration mode.
    pub confirm: String,
    /// Run outside configuration mode, its output...
    pub pending: String,
    /// ...matches this while a commit waits for confirmation.
    pub pending_pattern: Regex,
}

impl CommitConfirmed {
    /// The commit command for a timer of `within`.
    pub fn command_for(&self, within: std::time::Duration) -> String {
        let s = within.as_secs();
        let minutes = s.div_ceil(60).max(1);
        self.command
            .replace("{minutes}", &minutes.to_string())
            .replace("{seconds}", &s.to_string())
            .replace(
                "{hms}",
                &format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
            )
    }
}

#[derive(Clone, Debug)]
pub struct DryRun {
    /// Enters a candidate configuration (a configuration session on EOS).
    pub enter: String,
    /// Prints the candidate's difference from the running configuration.
    pub diff: String,
    /// Throws the candidate away.
    pub abort: String,
    /// `abort` also leaves configuration mode.
    pub abort_leaves: bool,
}

#[derive(Clone, Debug)]
pub struct Commit {
    /// Applies the candidate.
    pub command: String,
    /// Throws the candidate away after a failed push.
    pub abort: String,
}

#[derive(Clone, Debug)]
pub enum Save {
    Command {
        command: String,
        confirm: Vec<Confirmation>,
        /// Runs inside configuration mode (VyOS `save`).
        in_config: bool,
    },
    /// A commit already persists the configuration (Junos).
    ByCommit,
    Unsupported,
}

impl Save {
    pub fn in_config(&self) -> bool {
        matches!(
            self,
            Save::Command {
                in_config: true,
                ..
            }
        )
    }
}

/// A mode besides user, enable and configuration: a shell under the CLI (Junos `start shell`,
/// EOS `bash`), an admin mode (IOS-XR `admin`).
#[derive(Clone, Debug)]
pub struct NamedMode {
    pub name: String,
    pub enter: String,
    pub exit: String,
    /// The prompt inside the mode.
    pub prompt: Regex,
    /// Rejection patterns inside the mode (`None`: the platform's).
    pub rejected: Option<RegexSet>,
    /// Entered from privileged mode.
    pub enable: bool,
    /// The platform as the session follows it inside the mode (see [`Platform::inside`]).
    pub inside: std::sync::OnceLock<&'static Platform>,
}

#[derive(Clone, Debug)]
pub struct Confirmation {
    pub pattern: Regex,
    pub answer: String,
}

impl AsRef<Confirmation> for Confirmation {
    fn as_ref(&self) -> &Confirmation {
        self
    }
}

/// Platforms are singletons of the catalog (or of `with_prompt`): two are the same when they
/// have the same name and prompt.
impl PartialEq for Platform {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.prompt.as_str() == other.prompt.as_str()
    }
}

/// Platforms with a caller's prompt pattern, made once per (platform, pattern) in a process.
static WITH_PROMPT: std::sync::Mutex<Vec<&'static Platform>> = std::sync::Mutex::new(Vec::new());

impl Platform {
    /// This platform with `pattern` in place of its prompt pattern.
    pub fn with_prompt(&'static self, pattern: &str) -> Result<&'static Platform, SessionError> {
        let mut made = WITH_PROMPT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = made
            .iter()
            .find(|p| p.name == self.name && p.prompt.as_str() == pattern)
        {
            return Ok(p);
        }
        let prompt = Regex::new(pattern).map_err(|e| {
            SessionError::InvalidArgument(format!(
                "connection.prompt_pattern is not a valid regular expression: {}",
                e.to_string().lines().last().unwrap_or("").trim()
            ))
        })?;
        let p: &'static Platform = Box::leak(Box::new(Platform {
            prompt,
            ..self.clone()
        }));
        made.push(p);
        Ok(p)
    }

    /// The mode named `name`, or why there is none.
    pub fn mode(&self, name: &str) -> Result<&NamedMode, SessionError> {
        self.modes.iter().find(|m| m.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.modes.iter().map(|m| m.name.as_str()).collect();
            SessionError::Unsupported(format!(
                "{} has no mode {name:?}; its modes: {}",
                self.name,
                if names.is_empty() {
                    "none besides user, enable and configuration".into()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// This platform as followed inside `mode`: the mode's prompt (one line) and rejection
    /// patterns, no privilege or configuration test, no further modes. Made once per process.
    pub fn inside(&'static self, mode: &'static NamedMode) -> &'static Platform {
        mode.inside.get_or_init(|| {
            Box::leak(Box::new(Platform {
                prompt: mode.prompt.clone(),
                prompt_lines: 1,
                prompt_preamble: None,
                loose_prompt: std::sync::OnceLock::new(),
                privileged: ModeTest::Never,
                in_config: ModeTest::Never,
                rejected: mode
                    .rejected
                    .clone()
                    .unwrap_or_else(|| self.rejected.clone()),
                modes: Vec::new(),
                ..self.clone()
            }))
        })
    }

    /// See the `loose_prompt` field.
    pub fn loose_prompt(&self) -> &Regex {
        self.loose_prompt.get_or_init(|| {
            Regex::new(&format!(
                r"^(?P<host>[[:graph:]][[:print:]]{{0,78}}?)[[:space:]]*(?P<sign>[{}])[[:space:]]?$",
                regex::escape(&self.terminators)
            ))
            .expect("terminators are escaped")
        })
    }

    /// The shape of a prompt learned from the device rather than from the pattern: its text,
    /// in which numbers may change (a command counter: ExtremeXOS `sw1.12 #`), then up to 80
    /// characters (a mode), then one of the platform's terminators.
    pub fn learned_shape(&self, host: &str) -> Result<Regex, regex::Error> {
        let terms = regex::escape(&self.terminators);
        let mut text = String::new();
        let mut rest = host;
        while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
            text.push_str(&regex::escape(&rest[..i]));
            text.push_str("[0-9]+");
            rest = rest[i..].trim_start_matches(|c: char| c.is_ascii_digit());
        }
        text.push_str(&regex::escape(rest));
        Regex::new(&format!(
            r"^(?P<host>{text})(?P<mode>[[:print:]]{{0,80}}?)(?P<sign>[{terms}])[[:space:]]?$"
        ))
    }

    /// The device's name in a matched prompt: the `host` group, or (for a caller's pattern
    /// without one) the prompt without its terminator.
    pub fn host_of(&self, c: &Captures<'_>) -> String {
        match c.name("host") {
            Some(m) => m.as_str().to_string(),
            None => c[0]
                .trim_end()
                .trim_end_matches(|ch| self.terminators.contains(ch))
                .trim_end()
                .to_string(),
        }
    }
}
impl Eq for Platform {}

impl Platform {
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

    /// Output of one command: the text between the echoed command line and the prompt line.
    pub fn strip_echo_and_prompt(&self, text: &str, cmd: &str) -> String {
        self.strip_echo(text, cmd, self.prompt_lines)
    }

    /// The text after the echoed command line, without the last `prompt_lines` lines.
    pub fn strip_echo(&self, text: &str, cmd: &str, prompt_lines: usize) -> String {
        let mut lines: Vec<&str> = text.split('\n').collect();
        for _ in 0..prompt_lines {
            lines.pop(); // the prompt
        }
        if prompt_lines > 0
            && let Some(pre) = &self.prompt_preamble
            && lines.last().is_some_and(|l| pre.is_match(l))
        {
            lines.pop();
        }
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        let cmd = cmd.trim();
        if lines.first().is_some_and(|l| l.trim_end().ends_with(cmd)) {
            lines.remove(0);
        }
        lines.join("\n")
    }

    /// `output` without the lines the platform marks as noise.
    pub fn drop_noise(&self, output: String) -> String {
        if self.drop_lines.is_empty() {
            return output;
        }
        output
            .split('\n')
            .filter(|l| !self.drop_lines.is_match(l))
            .collect::<Vec<_>>()
            .join("\n")
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
    fn prompts_of_the_first_platforms() {
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
    fn modes_follow_the_prompt() {
        let ios = lookup("cisco_ios").unwrap();
        let c = ios.prompt.captures("R1(config-if)#").unwrap();
        assert!(ios.privileged.test(&c) && ios.in_config.test(&c));
        let c = ios.prompt.captures("R1>").unwrap();
        assert!(!ios.privileged.test(&c) && !ios.in_config.test(&c));
        let hw = lookup("huawei").unwrap();
        assert!(hw.in_config.test(&hw.prompt.captures("[R1]").unwrap()));
        assert!(!hw.in_config.test(&hw.prompt.captures("<R1>").unwrap()));
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
    fn unknown_device_type_lists_the_allowed_ones_and_aliases_resolve() {
        let e = lookup("cisco_foo").unwrap_err().to_string();
        assert!(
            e.contains("cisco_foo") && e.contains("juniper_junos") && e.contains("cisco_xe"),
            "{e}"
        );
        assert_eq!(lookup("juniper").unwrap().name, "juniper_junos");
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

    #[test]
    fn echo_prompt_and_junos_edit_line_are_stripped() {
        let ios = lookup("cisco_ios").unwrap();
        assert_eq!(
            ios.strip_echo_and_prompt("show clock\n*10:00 UTC\nR1#", "show clock"),
            "*10:00 UTC"
        );
        assert_eq!(ios.strip_echo_and_prompt("\nR1#", ""), "");
        let junos = lookup("juniper_junos").unwrap();
        let raw = "set system ntp server 1.2.3.4\n\n[edit]\nadmin@R1# ";
        assert_eq!(
            junos.strip_echo_and_prompt(raw, "set system ntp server 1.2.3.4"),
            ""
        );
    }

    #[test]
    fn a_learned_prompt_lets_its_numbers_change() {
        let exos = lookup("extreme_exos").unwrap();
        let re = exos.learned_shape("sw-1.1").unwrap();
        assert!(re.is_match("sw-1.2 # ") && re.is_match("sw-1.12 # "));
        assert!(!re.is_match("sw-x.2 # ") && !re.is_match("other-1.2 # "));
        assert!(re.is_match("sw-1.1(config) # "));
    }

    #[test]
    fn every_built_in_definition_compiles_and_names_are_unique() {
        let c = Catalog::builtin();
        c.validate().unwrap();
        assert!(c.names().len() >= 7);
    }
}
