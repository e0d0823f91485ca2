//! One device's CLI: a state machine fed with the client's bytes, producing the device's bytes.
//!
//! It echoes typed characters like a PTY, runs a command on each line end, pages long output
//! until paging is turned off, and asks for secrets and confirmations without echo. Dialect
//! specifics sit behind [`Personality`], which this module owns and the `cisco`, `junos` and
//! `huawei` modules implement (`vendor` picks one per flavor); this module owns input
//! handling, paging and output framing (`\r\n` line endings, the prompt after every command).

use std::str::FromStr;

use crate::config::RunningConfig;
use crate::model::Model;
use crate::subshell::{self, SubShell};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    CiscoIos,
    CiscoNxos,
    AristaEos,
    JuniperJunos,
    Huawei,
    /// A device described by data (`generic`, `models`).
    Model(&'static Model),
}

impl Flavor {
    pub const ALL: [Flavor; 5] = [
        Flavor::CiscoIos,
        Flavor::CiscoNxos,
        Flavor::AristaEos,
        Flavor::JuniperJunos,
        Flavor::Huawei,
    ];

    /// The dialect name the worker uses for this flavor.
    pub fn device_type(self) -> &'static str {
        match self {
            Flavor::CiscoIos => "cisco_ios",
            Flavor::CiscoNxos => "cisco_nxos",
            Flavor::AristaEos => "arista_eos",
            Flavor::JuniperJunos => "juniper_junos",
            Flavor::Huawei => "huawei",
            Flavor::Model(m) => m.device_type,
        }
    }

    /// The command that shows the device's software version.
    pub fn version_command(self) -> &'static str {
        match self {
            Flavor::Huawei => "display version",
            Flavor::Model(m) => m.version.0,
            _ => "show version",
        }
    }

    /// Every flavor: the five with their own personality, then the models.
    pub fn all() -> Vec<Flavor> {
        let mut v = Flavor::ALL.to_vec();
        v.extend(crate::models::ALL.iter().map(|m| Flavor::Model(m)));
        v
    }
}

impl FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "cisco_ios" | "cisco_xe" => Flavor::CiscoIos,
            "cisco_nxos" => Flavor::CiscoNxos,
            "arista_eos" => Flavor::AristaEos,
            "juniper_junos" => Flavor::JuniperJunos,
            "huawei" => Flavor::Huawei,
            other => match crate::models::ALL.iter().find(|m| m.device_type == other) {
                Some(m) => Flavor::Model(m),
                None => {
                    let names: Vec<&str> = Flavor::all().iter().map(|f| f.device_type()).collect();
                    return Err(format!(
                        "unknown flavor {other:?}; allowed: cisco_xe, {}",
                        names.join(", ")
                    ));
                }
            },
        })
    }
}

#[derive(Clone, Debug)]
pub struct ShellSettings {
    pub flavor: Flavor,
    pub hostname: String,
    pub username: String,
    pub enable_secret: Option<String>,
    /// Lines of `show tech-support` (and its dialect equivalents): the large-output command.
    pub tech_support_lines: usize,
    /// Lines per page while paging is on.
    pub page_lines: usize,
    pub prompt: PromptVariant,
    /// How long a minute of a confirmed commit's timer lasts (a test's device hurries it).
    pub confirm_minute: std::time::Duration,
    /// The device's files (what SCP stores; `dir` and the hash commands read them).
    pub flash: std::sync::Arc<crate::flash::Flash>,
}

/// How a device's prompt differs from its vendor's usual one (for prompt-discovery tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromptVariant {
    /// A line printed above the operational prompt (Junos on a virtual chassis: `{master:0}`).
    pub line_above: Option<String>,
    /// The prompt shows the hostname alone (`R1>` where Junos shows `admin@R1>`).
    pub bare: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waiting {
    Line,
    /// `debug hang`: output that never ends; all input is swallowed.
    Hang,
    Secret,
    Confirm(Confirm),
    Pager,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum Confirm {
    SaveFilename,
    SaveYesNo,
    /// A numbered question of a model (`generic`).
    Step(u8),
}

/// What a command handler wants after it has written its output.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    Prompt,
    /// The handler switched input mode and wrote its own question.
    Wait,
    Disconnect,
}

/// What one call to [`Shell::input`] produced.
#[derive(Debug, Default)]
pub struct Reply {
    pub output: Vec<u8>,
    /// Commands (lines) that ran; the server applies the per-command delay once per line.
    pub lines: usize,
    pub disconnect: bool,
}

/// A vendor's CLI: what a command line does, and what an answer to a question it asked does.
/// The answers' defaults are the Cisco-like ones (an enable secret, a save confirmation).
pub(crate) trait Personality: Send + Sync {
    fn initial_config(&self, hostname: &str) -> RunningConfig;
    fn command(&self, sh: &mut Shell, line: &str) -> After;
    fn secret(&self, sh: &mut Shell, answer: &str) -> After {
        if sh.s.enable_secret.as_deref() == Some(answer) {
            sh.privileged = true;
        } else {
            sh.say("% Access denied");
        }
        After::Prompt
    }
    /// The prompt, when the personality draws its own.
    fn prompt(&self, _sh: &Shell) -> Option<String> {
        None
    }
    /// The banner, and what follows it (the first prompt, or a question).
    fn greeting(&self, sh: &mut Shell) -> After {
        let banner = match sh.s.flavor {
            Flavor::JuniperJunos => {
                "--- JUNOS 21.4R3-S3 Kernel 64-bit  JNPR-12.1-20230101.0_builder\n"
            }
            Flavor::Huawei => {
                "\nInfo: The max number of VTY users is 10, and the number\n      of current VTY users on line is 1.\n"
            }
            _ => {
                "\n**************************************************\n*  Authorized access only (netpulse devsim)      *\n**************************************************\n"
            }
        };
        sh.text(banner);
        After::Prompt
    }
    fn confirm(&self, sh: &mut Shell, _c: Confirm, _answer: &str) -> After {
        sh.startup = sh.running.clone();
        sh.say("Building configuration...\n[OK]");
        After::Prompt
    }
}

pub struct Shell {
    pub(crate) s: ShellSettings,
    personality: &'static dyn Personality,
    pub(crate) privileged: bool,
    /// In configuration mode; `section` is the index of the block being edited, with its
    /// prompt label (`config-if`, `GigabitEthernet0/0/1`, ...).
    pub(crate) config_mode: bool,
    pub(crate) section: Option<(usize, String)>,
    /// A Junos `commit confirmed`: when it rolls back, and to what.
    pub(crate) pending_confirm: Option<(std::time::Instant, RunningConfig)>,
    /// The EOS session committed with a timer, until confirmed or rolled back.
    pub(crate) pending_session: Option<String>,
    /// Junos commits, the latest last: who and how (`show system commit`).
    pub(crate) commits: Vec<String>,
    /// An EOS configuration session (`configure session NAME`): its name. While it is open,
    /// `running` holds the session's configuration and `candidate` the one to return to.
    pub(crate) config_session: Option<String>,
    /// Inside a mode a command opened (`start shell`), with its own prompt.
    sub: Option<&'static SubShell>,
    pub(crate) paging: bool,
    pub(crate) running: RunningConfig,
    pub(crate) startup: RunningConfig,
    /// Junos candidate configuration.
    pub(crate) candidate: RunningConfig,
    pub(crate) waiting: Waiting,
    /// Commands so far (prompts that count them: `{n}`).
    pub(crate) counter: u64,
    /// A once-per-session question was asked.
    pub(crate) asked_once: bool,
    /// What a question in progress is about (a file name, say).
    pub(crate) scratch: String,
    line: Vec<u8>,
    pager: Option<std::vec::IntoIter<String>>,
    last_was_cr: bool,
    out: Vec<u8>,
}

impl Shell {
    pub(crate) fn new(s: ShellSettings, personality: &'static dyn Personality) -> Self {
        let running = personality.initial_config(&s.hostname);
        let privileged = match s.flavor {
            Flavor::CiscoNxos | Flavor::JuniperJunos | Flavor::Huawei => true,
            Flavor::Model(m) => m.enable.is_none(),
            Flavor::CiscoIos | Flavor::AristaEos => false,
        };
        Shell {
            privileged,
            config_mode: false,
            section: None,
            config_session: None,
            pending_confirm: None,
            pending_session: None,
            commits: Vec::new(),
            sub: None,
            paging: true,
            startup: running.clone(),
            candidate: running.clone(),
            running,
            waiting: Waiting::Line,
            counter: 1,
            asked_once: false,
            scratch: String::new(),
            line: Vec::new(),
            pager: None,
            last_was_cr: false,
            out: Vec::new(),
            s,
            personality,
        }
    }

    /// The banner and first prompt sent when the shell starts.
    pub fn greeting(&mut self) -> Vec<u8> {
        let after = self.personality.greeting(self);
        self.finish(after);
        std::mem::take(&mut self.out)
    }

    pub fn hostname(&self) -> &str {
        &self.s.hostname
    }

    /// Feeds client bytes; returns what the device writes back.
    pub fn input(&mut self, data: &[u8]) -> Reply {
        let mut reply = Reply::default();
        for &b in data {
            if reply.disconnect {
                break;
            }
            let is_newline = b == b'\n' && self.last_was_cr;
            self.last_was_cr = b == b'\r';
            if is_newline {
                continue; // the \n of a \r\n pair
            }
            match self.waiting {
                Waiting::Hang => {}
                Waiting::Pager => self.pager_key(b),
                Waiting::Secret | Waiting::Confirm(_) => {
                    if b == b'\r' || b == b'\n' {
                        let line =
                            String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                        self.out.extend_from_slice(b"\r\n");
                        reply.lines += 1;
                        let after = self.answer(&line);
                        reply.disconnect = self.finish(after);
                    } else if matches!(self.waiting, Waiting::Confirm(_)) {
                        self.out.push(b);
                        self.line.push(b);
                    } else {
                        self.line.push(b); // secrets are not echoed
                    }
                }
                Waiting::Line => match b {
                    b'\r' | b'\n' => {
                        let line =
                            String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                        self.out.extend_from_slice(b"\r\n");
                        reply.lines += 1;
                        let after = self.command(line.trim());
                        reply.disconnect = self.finish(after);
                    }
                    0x7f | 0x08 if self.line.pop().is_some() => {
                        self.out.extend_from_slice(b"\x08 \x08");
                    }
                    0x20..=0x7e | 0x09 => {
                        self.line.push(b);
                        self.out.push(b);
                    }
                    _ => {}
                },
            }
        }
        reply.output = std::mem::take(&mut self.out);
        reply
    }

    fn finish(&mut self, after: After) -> bool {
        match after {
            After::Prompt => {
                self.write_prompt();
                false
            }
            After::Wait => false,
            After::Disconnect => true,
        }
    }

    /// A confirmed commit whose time ran out is rolled back, as the device does by itself
    /// (here, at the next input).
    fn expire_confirm(&mut self) {
        if let Some((deadline, _)) = &self.pending_confirm
            && std::time::Instant::now() >= *deadline
            && let Some((_, before)) = self.pending_confirm.take()
        {
            self.running = before.clone();
            self.startup = before.clone();
            self.candidate = before;
            self.pending_session = None;
            self.commits
                .push("by root via other (commit confirmed timed out: rolled back)".into());
        }
    }

    fn command(&mut self, line: &str) -> After {
        self.expire_confirm();
        // Every flavor: a command whose output never ends, for timeout tests.
        if line == "debug hang" {
            self.say("debugging started; output follows");
            self.waiting = Waiting::Hang;
            return After::Wait;
        }
        if let Some(sub) = self.sub {
            return self.in_sub(sub, line);
        }
        if !self.config_mode
            && let Some(sub) = subshell::of(self.s.flavor.device_type())
                .iter()
                .find(|s| matches(line, s.enter).is_some() && (self.privileged || !s.privileged))
        {
            self.sub = Some(sub);
            self.text(sub.greeting);
            return After::Prompt;
        }
        self.personality.command(self, line)
    }

    fn fill(&self, text: &str) -> String {
        text.replace("{h}", &self.s.hostname)
            .replace("{u}", &self.s.username)
    }

    /// A line typed inside a mode a command opened.
    fn in_sub(&mut self, sub: &'static SubShell, line: &str) -> After {
        if line.is_empty() {
            return After::Prompt;
        }
        if line == sub.exit {
            self.sub = None;
            return After::Prompt;
        }
        if let Some((_, out)) = sub
            .commands
            .iter()
            .find(|(c, _)| matches(line, c).is_some())
        {
            let text = self.fill(out);
            return self.lines(text.lines().map(String::from).collect());
        }
        let word = line.split_whitespace().next().unwrap_or("");
        self.say(&sub.error.replace("{cmd}", word));
        After::Prompt
    }

    fn answer(&mut self, answer: &str) -> After {
        let waiting = std::mem::replace(&mut self.waiting, Waiting::Line);
        match waiting {
            Waiting::Secret => self.personality.secret(self, answer),
            Waiting::Confirm(c) => self.personality.confirm(self, c, answer),
            _ => After::Prompt,
        }
    }

    pub(crate) fn prompt(&self) -> String {
        if let Some(sub) = self.sub {
            return self.fill(sub.prompt);
        }
        let above = match (&self.s.prompt.line_above, self.config_mode) {
            (Some(l), false) => format!("{l}\r\n"),
            _ => String::new(),
        };
        if let Some(p) = self.personality.prompt(self) {
            return above + &p;
        }
        let h = &self.s.hostname;
        above
            + &match self.s.flavor {
                Flavor::JuniperJunos => {
                    let who = if self.s.prompt.bare {
                        h.clone()
                    } else {
                        format!("{}@{h}", self.s.username)
                    };
                    if self.config_mode {
                        format!("\r\n[edit]\r\n{who}# ")
                    } else {
                        format!("{who}> ")
                    }
                }
                Flavor::Huawei => match (&self.section, self.config_mode) {
                    (Some((_, label)), _) => format!("[{h}-{label}]"),
                    (None, true) => format!("[{h}]"),
                    (None, false) => format!("<{h}>"),
                },
                _ => match (&self.section, self.config_mode) {
                    (Some((_, label)), _) => format!("{h}({label})#"),
                    (None, true) if let Some(name) = &self.config_session => {
                        // EOS shows the session's name, cut to six characters.
                        format!("{h}(config-s-{})#", &name[..name.len().min(6)])
                    }
                    (None, true) => format!("{h}(config)#"),
                    (None, false) => format!("{h}{}", if self.privileged { "#" } else { ">" }),
                },
            }
    }

    fn write_prompt(&mut self) {
        let p = self.prompt();
        self.out.extend_from_slice(p.as_bytes());
    }

    /// Writes text, turning `\n` into `\r\n` as a terminal line discipline would.
    pub(crate) fn text(&mut self, t: &str) {
        for (i, part) in t.split('\n').enumerate() {
            if i > 0 {
                self.out.extend_from_slice(b"\r\n");
            }
            self.out.extend_from_slice(part.as_bytes());
        }
    }

    pub(crate) fn say(&mut self, line: &str) {
        self.text(line);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Writes a question and waits for an answer instead of a command.
    pub(crate) fn ask(&mut self, question: &str, waiting: Waiting) -> After {
        self.text(question);
        self.waiting = waiting;
        After::Wait
    }

    /// Writes output lines, paging them when paging is on and they do not fit a page.
    pub(crate) fn lines(&mut self, lines: Vec<String>) -> After {
        let page = self.s.page_lines.saturating_sub(1).max(1);
        if !self.paging || lines.len() <= page {
            for l in &lines {
                self.say(l);
            }
            return After::Prompt;
        }
        self.pager = Some(lines.into_iter());
        self.page(page);
        After::Wait
    }

    fn more_prompt(&self) -> (&'static str, &'static str) {
        match self.s.flavor {
            Flavor::Model(m) => (m.more, m.more_erase),
            Flavor::JuniperJunos => (
                "---(more)---",
                "\r                                        \r",
            ),
            Flavor::Huawei => (
                "  ---- More ----",
                "\x1b[42D                                          \x1b[42D",
            ),
            _ => (
                " --More-- ",
                "\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08",
            ),
        }
    }

    fn page(&mut self, n: usize) {
        let pager = self.pager.as_mut().expect("paging");
        let chunk: Vec<String> = pager.take(n).collect();
        let done = pager.len() == 0;
        for l in &chunk {
            self.say(l);
        }
        if done {
            self.pager = None;
            self.waiting = Waiting::Line;
            self.write_prompt();
        } else {
            let more = self.more_prompt().0;
            self.out.extend_from_slice(more.as_bytes());
            self.waiting = Waiting::Pager;
        }
    }

    fn pager_key(&mut self, key: u8) {
        let erase = self.more_prompt().1;
        self.out.extend_from_slice(erase.as_bytes());
        match key {
            b'q' | b'Q' | 0x03 => {
                self.pager = None;
                self.waiting = Waiting::Line;
                self.write_prompt();
            }
            b'\r' | b'\n' => self.page(1),
            _ => {
                let page = self.s.page_lines.saturating_sub(1).max(1);
                self.page(page)
            }
        }
    }

    pub(crate) fn tech_support(&self, title: &str) -> Vec<String> {
        let mut v = Vec::with_capacity(self.s.tech_support_lines + 1);
        v.push(format!("------------------ {title} ------------------"));
        for i in 1..=self.s.tech_support_lines {
            v.push(format!(
                "{i:08} {} diagnostic record: counters ok, buffers ok, temperature 41C, fans ok",
                self.s.hostname
            ));
        }
        v
    }
}

/// Matches input words against a command pattern where each input word may abbreviate the
/// pattern word (`sh run` matches `show running-config`) and `*` takes any one word.
/// Returns the words taken by `*`, in order.
pub(crate) fn matches<'a>(input: &'a str, pattern: &str) -> Option<Vec<&'a str>> {
    let words: Vec<&str> = input.split_whitespace().collect();
    let pat: Vec<&str> = pattern.split_whitespace().collect();
    if words.len() != pat.len() {
        return None;
    }
    let mut caps = Vec::new();
    for (i, (w, p)) in words.iter().zip(&pat).enumerate() {
        // The first word needs two letters (`s` is ambiguous on every vendor), later ones one.
        if *p == "*" {
            caps.push(*w);
        } else if !(p.starts_with(w) && (i > 0 || w.len() >= 2 || p.len() == 1)) {
            return None;
        }
    }
    Some(caps)
}

/// The caret line vendors print under the offending word, then their error text.
pub(crate) fn caret(sh: &mut Shell, prompt_len: usize, error: &str) {
    sh.say(&format!("{}^", " ".repeat(prompt_len)));
    sh.say(error);
}
