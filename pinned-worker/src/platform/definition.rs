//! The file format of a platform definition, and its compilation into a [`Platform`].
//!
//! A definition is a TOML table. `inherits` names another definition whose sections this one
//! takes unless it sets them itself: a section (`[prompt]`, `[config]`, ...) is inherited or
//! replaced whole, never merged field by field, so what a file says is all there is to read.
//! `enable = false`, `config = false` and `save = false` remove an inherited section.

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::{
    Commit, CommitConfirmed, ConfigMode, Confirmation, Detect, DryRun, Enable, ModeTest, NamedMode,
    Platform, Save,
};

/// The pager markers most platforms print (`--More--`, `---(more)---`, `---- More ----`).
pub const DEFAULT_MORE: &str = r"(?i)^[[:space:]]*(--[[:space:]]?more[[:space:]]?--|---[[:space:]]?\(more( [0-9]+%)?\)[[:space:]]?---|-+ more -+|<--- more --->)[[:space:]]*$";
const DEFAULT_PASSWORD_PROMPT: &str = r"(?i)password:[[:space:]]*$";
const MAX_NAME: usize = 64;

/// One file as written. Every section is optional here: what is missing comes from `inherits`,
/// and [`compile`] says which required section is still missing after that.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherits: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The command that prints the running configuration (for `backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_config: Option<String>,
    /// The platform's name in ntc-templates' index, when it differs (`huawei_vrp` for
    /// `huawei`). Never inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntc_templates: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<PagingDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<Toggle<EnableDef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Toggle<ConfigDef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save: Option<Toggle<SaveDef>>,
    /// Questions any command may raise, answered without asking the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<Vec<ConfirmDef>>,
    /// Output lines that mean the device rejected the command (regular expressions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputDef>,
    /// A commit the device rolls back by itself unless confirmed in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_confirmed: Option<Toggle<CommitConfirmedDef>>,
    /// A dry run: lines loaded into a candidate, the device's diff, the candidate dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Toggle<DryRunDef>>,
    /// Modes besides user, enable and configuration (a shell under the CLI, an admin mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modes: Option<Vec<NamedModeDef>>,
    /// How files move: the protocol, the hash and free-space commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<super::transfer::TransferDef>,
    /// How `device_type: autodetect` recognises this platform. Never inherited: a platform
    /// built on another prints its own version text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect: Option<DetectDef>,
}

/// A section, or `false` to drop the one a base definition has.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Toggle<T> {
    Off(bool),
    On(T),
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromptDef {
    /// Matches the whole last line; its `host` group names the device.
    pub pattern: String,
    /// The characters a prompt may end with, for prompts the pattern does not describe.
    pub terminators: String,
    /// Which prompts mean privileged mode; `"always"` when there is no unprivileged mode.
    pub privileged: ModeDef,
    /// Which prompts mean configuration mode.
    pub config: ModeDef,
    /// A line printed just above the prompt that belongs to it (Junos `[edit]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preamble: Option<String>,
    /// How many lines the prompt spans (2: SR OS and SR Linux show the mode on a line above);
    /// the pattern then matches them joined by `\n`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub lines: u8,
}

fn one() -> u8 {
    1
}

fn is_one(n: &u8) -> bool {
    *n == 1
}

/// `"always"`, `"never"`, or a test on one capture group of the prompt pattern.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ModeDef {
    Fixed(String),
    Group {
        group: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        any_of: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PagingDef {
    /// Sent after login; a rejected one is logged and `--More--` is answered instead.
    #[serde(default)]
    pub commands: Vec<String>,
    /// The pager's marker on the last line; answered with a space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnableDef {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_prompt: Option<String>,
    /// Whether the prompt shows privilege; otherwise success is judged by the absence of an
    /// error.
    #[serde(default = "yes")]
    pub prompt_shows_privilege: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDef {
    pub enter: String,
    pub exit: String,
    /// Platforms with a candidate configuration: the command that applies it...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// ...and the one that throws it away after a failed push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaveDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A commit already persists the configuration (Junos).
    #[serde(default)]
    pub by_commit: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirm: Vec<ConfirmDef>,
    /// Commands that must run in configuration mode to save (VyOS `save`).
    #[serde(default)]
    pub in_config: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmDef {
    pub pattern: String,
    pub answer: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDef {
    /// Lines removed from every command's output (banners some platforms repeat).
    #[serde(default)]
    pub drop_lines: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommitConfirmedDef {
    /// Enters configuration mode for it; default: `config.enter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enter: Option<String>,
    /// The commit with its timer, with `{minutes}`, `{seconds}` or `{hms}` in it.
    pub command: String,
    pub confirm: String,
    pub pending: String,
    pub pending_pattern: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunDef {
    /// Enters the candidate; default: `config.enter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enter: Option<String>,
    /// Shows the candidate's difference from the running configuration.
    pub diff: String,
    /// Throws the candidate away.
    pub abort: String,
    /// `abort` also leaves configuration mode (EOS sessions).
    #[serde(default)]
    pub abort_leaves: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedModeDef {
    /// What a request names it by (`ExecuteRequest.mode`).
    pub name: String,
    pub enter: String,
    pub exit: String,
    /// The prompt inside the mode (the whole last line; a `host` group is optional).
    pub prompt: String,
    /// Output lines that mean a command was rejected inside the mode; default: the platform's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
    /// The mode is entered from privileged mode: the session enables first.
    #[serde(default)]
    pub enable: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectDef {
    /// A command that shows what the device is (`show version`); sent in user mode, before
    /// paging is turned off, so it should print little.
    pub command: String,
    /// Any of these in the command's output identifies the platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    /// Any of these in what the device prints at login, up to its first prompt, does too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub banner: Vec<String>,
    /// Confidence of a match, 1..=99; the highest wins, and a 99 ends the search at once.
    pub priority: u8,
}

/// Why a definition cannot be used: the file, the field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("platform definition {file}: {field}: {message}")]
pub struct DefinitionError {
    pub file: String,
    pub field: String,
    pub message: String,
}

impl Definition {
    /// Parses one file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Definition, DefinitionError> {
        let def: Definition = toml::from_str(text).map_err(|e| DefinitionError {
            file: file.to_string(),
            field: "toml".into(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        check_name(file, "name", &def.name)?;
        for a in &def.aliases {
            check_name(file, "aliases", a)?;
        }
        Ok(def)
    }

    /// This definition with the sections it leaves out taken from `base`.
    pub fn over(&self, base: &Definition) -> Definition {
        fn or<T: Clone>(mine: &Option<T>, theirs: &Option<T>) -> Option<T> {
            mine.clone().or_else(|| theirs.clone())
        }
        Definition {
            name: self.name.clone(),
            inherits: None,
            aliases: self.aliases.clone(),
            vendor: or(&self.vendor, &base.vendor),
            description: or(&self.description, &base.description),
            ntc_templates: self.ntc_templates.clone(),
            show_config: or(&self.show_config, &base.show_config),
            prompt: or(&self.prompt, &base.prompt),
            paging: or(&self.paging, &base.paging),
            enable: or(&self.enable, &base.enable),
            config: or(&self.config, &base.config),
            save: or(&self.save, &base.save),
            confirmations: or(&self.confirmations, &base.confirmations),
            errors: or(&self.errors, &base.errors),
            output: or(&self.output, &base.output),
            modes: or(&self.modes, &base.modes),
            dry_run: or(&self.dry_run, &base.dry_run),
            commit_confirmed: or(&self.commit_confirmed, &base.commit_confirmed),
            transfer: or(&self.transfer, &base.transfer),
            detect: self.detect.clone(),
        }
    }
}

fn check_name(file: &str, field: &str, name: &str) -> Result<(), DefinitionError> {
    if name == super::detect::AUTODETECT {
        return Err(DefinitionError {
            file: file.to_string(),
            field: field.to_string(),
            message: format!("{name:?} is reserved: it asks the worker to identify the platform"),
        });
    }
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        return Ok(());
    }
    Err(DefinitionError {
        file: file.to_string(),
        field: field.to_string(),
        message: format!(
            "a platform name is 1..={MAX_NAME} of a-z, 0-9 and _, starting with a letter, got {name:?}"
        ),
    })
}

/// Turns a complete (inherited) definition into a usable platform.
pub fn compile(file: &str, def: &Definition) -> Result<Platform, DefinitionError> {
    let err = |field: &str, message: String| DefinitionError {
        file: file.to_string(),
        field: field.to_string(),
        message,
    };
    let re = |field: &str, s: &str| Regex::new(s).map_err(|e| err(field, one_line(&e)));
    let Some(p) = &def.prompt else {
        return Err(err(
            "prompt",
            "is required (in this file or the one it inherits)".into(),
        ));
    };
    let prompt = re("prompt.pattern", &p.pattern)?;
    if !prompt.capture_names().any(|n| n == Some("host")) {
        return Err(err(
            "prompt.pattern",
            "needs a (?P<host>...) group that names the device".into(),
        ));
    }
    if p.terminators.is_empty() || p.terminators.chars().any(char::is_whitespace) {
        return Err(err(
            "prompt.terminators",
            format!(
                "must list the characters a prompt ends with, without blanks, got {:?}",
                p.terminators
            ),
        ));
    }
    if !(1..=2).contains(&p.lines) {
        return Err(err(
            "prompt.lines",
            format!("must be 1 or 2, got {}", p.lines),
        ));
    }
    let mode = |field: &str, m: &ModeDef| -> Result<ModeTest, DefinitionError> {
        match m {
            ModeDef::Fixed(s) if s == "always" => Ok(ModeTest::Always),
            ModeDef::Fixed(s) if s == "never" => Ok(ModeTest::Never),
            ModeDef::Fixed(s) => Err(err(
                field,
                format!(
                    "must be \"always\", \"never\" or {{ group = ..., any_of = [...] or prefix = ... }}, got {s:?}"
                ),
            )),
            ModeDef::Group {
                group,
                any_of,
                prefix,
            } => {
                if !prompt.capture_names().any(|n| n == Some(group.as_str())) {
                    return Err(err(
                        field,
                        format!("names group {group:?}, which prompt.pattern does not have"),
                    ));
                }
                if any_of.is_empty() == prefix.is_none() {
                    return Err(err(field, "needs exactly one of any_of and prefix".into()));
                }
                Ok(ModeTest::Group {
                    group: group.clone(),
                    any_of: any_of.clone(),
                    prefix: prefix.clone(),
                })
            }
        }
    };
    let paging = def.paging.clone().unwrap_or_default();
    let enable = match section(file, "enable", &def.enable)? {
        None => None,
        Some(e) => Some(Enable {
            command: non_empty(file, "enable.command", &e.command)?,
            secret_prompt: re(
                "enable.password_prompt",
                e.password_prompt
                    .as_deref()
                    .unwrap_or(DEFAULT_PASSWORD_PROMPT),
            )?,
            prompt_shows_privilege: e.prompt_shows_privilege,
        }),
    };
    let config = match section(file, "config", &def.config)? {
        None => None,
        Some(c) => Some(ConfigMode {
            enter: non_empty(file, "config.enter", &c.enter)?,
            exit: non_empty(file, "config.exit", &c.exit)?,
            commit: match (&c.commit, &c.abort) {
                (None, None) => None,
                (Some(commit), Some(abort)) => Some(Commit {
                    command: non_empty(file, "config.commit", commit)?,
                    abort: non_empty(file, "config.abort", abort)?,
                }),
                _ => {
                    return Err(err(
                        "config",
                        "commit and abort go together: set both or neither".into(),
                    ));
                }
            },
        }),
    };
    let confirms =
        |field: &str, list: &[ConfirmDef]| -> Result<Vec<Confirmation>, DefinitionError> {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    Ok(Confirmation {
                        pattern: re(&format!("{field}[{i}].pattern"), &c.pattern)?,
                        answer: c.answer.clone(),
                    })
                })
                .collect()
        };
    let save = match section(file, "save", &def.save)? {
        None => Save::Unsupported,
        Some(s) => match (&s.command, s.by_commit) {
            (Some(_), true) | (None, false) => {
                return Err(err(
                    "save",
                    "needs exactly one of command and by_commit = true".into(),
                ));
            }
            (None, true) if config.as_ref().is_none_or(|c| c.commit.is_none()) => {
                return Err(err(
                    "save.by_commit",
                    "needs config.commit: only a commit can persist the configuration".into(),
                ));
            }
            (None, true) => Save::ByCommit,
            (Some(command), false) => Save::Command {
                command: non_empty(file, "save.command", command)?,
                confirm: confirms("save.confirm", &s.confirm)?,
                in_config: s.in_config,
            },
        },
    };
    if save.in_config() && config.is_none() {
        return Err(err(
            "save.in_config",
            "needs a config section to enter".into(),
        ));
    }
    let errors = def.errors.clone().unwrap_or_default();
    let rejected = RegexSet::new(&errors).map_err(|e| err("errors", one_line(&e)))?;
    let drop_lines = def.output.clone().unwrap_or_default().drop_lines;
    let dry_run = match section(file, "dry_run", &def.dry_run)? {
        None => None,
        Some(d) => {
            let Some(cm) = &config else {
                return Err(err("dry_run", "needs a config section".into()));
            };
            Some(DryRun {
                enter: match &d.enter {
                    Some(e) => non_empty(file, "dry_run.enter", e)?,
                    None => cm.enter.clone(),
                },
                diff: non_empty(file, "dry_run.diff", &d.diff)?,
                abort: non_empty(file, "dry_run.abort", &d.abort)?,
                abort_leaves: d.abort_leaves,
            })
        }
    };
    let commit_confirmed = match section(file, "commit_confirmed", &def.commit_confirmed)? {
        None => None,
        Some(c) => {
            let Some(cm) = &config else {
                return Err(err("commit_confirmed", "needs a config section".into()));
            };
            if !["{minutes}", "{seconds}", "{hms}"]
                .iter()
                .any(|p| c.command.contains(p))
            {
                return Err(err(
                    "commit_confirmed.command",
                    format!(
                        "must hold {{minutes}}, {{seconds}} or {{hms}}, got {:?}",
                        c.command
                    ),
                ));
            }
            Some(CommitConfirmed {
                enter: match &c.enter {
                    Some(e) => non_empty(file, "commit_confirmed.enter", e)?,
                    None => cm.enter.clone(),
                },
                command: non_empty(file, "commit_confirmed.command", &c.command)?,
                confirm: non_empty(file, "commit_confirmed.confirm", &c.confirm)?,
                pending: non_empty(file, "commit_confirmed.pending", &c.pending)?,
                pending_pattern: re("commit_confirmed.pending_pattern", &c.pending_pattern)?,
            })
        }
    };
    let mut modes: Vec<NamedMode> = Vec::new();
    for (i, m) in def.modes.iter().flatten().enumerate() {
        let field = |f: &str| format!("modes[{i}].{f}");
        check_name(file, &field("name"), &m.name)?;
        if modes.iter().any(|o| o.name == m.name) {
            return Err(err(&field("name"), format!("{:?} is named twice", m.name)));
        }
        if m.enable && enable.is_none() {
            return Err(err(
                &field("enable"),
                "needs an enable section to enter privileged mode with".into(),
            ));
        }
        modes.push(NamedMode {
            name: m.name.clone(),
            enter: non_empty(file, &field("enter"), &m.enter)?,
            exit: non_empty(file, &field("exit"), &m.exit)?,
            prompt: re(&field("prompt"), &m.prompt)?,
            rejected: m
                .errors
                .as_ref()
                .map(|e| RegexSet::new(e).map_err(|e| err(&field("errors"), one_line(&e))))
                .transpose()?,
            enable: m.enable,
            inside: std::sync::OnceLock::new(),
        });
    }
    let detect = match &def.detect {
        None => None,
        Some(d) => {
            if !(1..=super::detect::CERTAIN).contains(&d.priority) {
                return Err(err(
                    "detect.priority",
                    format!("must be 1..={}, got {}", super::detect::CERTAIN, d.priority),
                ));
            }
            if d.patterns.is_empty() && d.banner.is_empty() {
                return Err(err(
                    "detect",
                    "needs at least one of patterns and banner".into(),
                ));
            }
            let set =
                |field: &str, v: &[String]| RegexSet::new(v).map_err(|e| err(field, one_line(&e)));
            Some(Detect {
                command: non_empty(file, "detect.command", &d.command)?,
                patterns: set("detect.patterns", &d.patterns)?,
                banner: set("detect.banner", &d.banner)?,
                priority: d.priority,
            })
        }
    };
    Ok(Platform {
        name: def.name.clone(),
        show_config: def
            .show_config
            .as_deref()
            .map(|c| non_empty(file, "show_config", c))
            .transpose()?,
        ntc_name: def
            .ntc_templates
            .clone()
            .unwrap_or_else(|| def.name.clone()),
        vendor: def.vendor.clone().unwrap_or_default(),
        privileged: mode("prompt.privileged", &p.privileged)?,
        in_config: mode("prompt.config", &p.config)?,
        prompt_preamble: p
            .preamble
            .as_deref()
            .map(|s| re("prompt.preamble", s))
            .transpose()?,
        loose_prompt: std::sync::OnceLock::new(),
        terminators: p.terminators.clone(),
        prompt_lines: p.lines as usize,
        prompt,
        paging_off: paging.commands,
        more: re(
            "paging.more",
            paging.more.as_deref().unwrap_or(DEFAULT_MORE),
        )?,
        enable,
        config,
        save,
        confirmations: confirms(
            "confirmations",
            def.confirmations.as_deref().unwrap_or_default(),
        )?,
        rejected,
        drop_lines: RegexSet::new(&drop_lines)
            .map_err(|e| err("output.drop_lines", one_line(&e)))?,
        modes,
        dry_run,
        commit_confirmed,
        transfer: super::transfer::compile(file, def.transfer.as_ref())?,
        detect,
        detector: None,
    })
}

/// A section that may be switched off: `None` when absent or `false`.
fn section<'a, T>(
    file: &str,
    field: &str,
    t: &'a Option<Toggle<T>>,
) -> Result<Option<&'a T>, DefinitionError> {
    match t {
        None | Some(Toggle::Off(false)) => Ok(None),
        Some(Toggle::On(v)) => Ok(Some(v)),
        Some(Toggle::Off(true)) => Err(DefinitionError {
            file: file.to_string(),
            field: field.to_string(),
            message: "is a table or false, got true".into(),
        }),
    }
}

fn non_empty(file: &str, field: &str, s: &str) -> Result<String, DefinitionError> {
    if s.trim().is_empty() || s.contains(['\n', '\r']) {
        return Err(DefinitionError {
            file: file.to_string(),
            field: field.to_string(),
            message: format!("must be one non-empty line, got {s:?}"),
        });
    }
    Ok(s.to_string())
}

fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
