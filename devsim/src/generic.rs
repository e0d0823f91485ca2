//! A device described by data: [`Model`] says what the device prints (banner, prompts per
//! mode, pager marker, error text, questions) and which commands it knows; this module runs
//! it. The models (in `models` and `models_more`) are written from each vendor's CLI as it
//! appears on a terminal, independently of the worker's platform definitions, so that a wrong
//! definition fails against them.

use crate::config::RunningConfig;
use crate::model::{ConfigModel, Model, SaveModel};
use crate::shell::{After, Confirm, Personality, Shell, Waiting, caret, matches};

fn prompt(sh: &Shell, m: &Model) -> String {
    let template = match (&sh.section, sh.config_mode) {
        (Some(_), _) => m.prompts.section,
        (None, true) => m.prompts.config,
        (None, false) if sh.privileged => m.prompts.enable,
        (None, false) => m.prompts.user,
    };
    let label = sh.section.as_ref().map_or("", |(_, l)| l.as_str());
    let unsaved = if sh.running != sh.startup {
        m.unsaved_marker
    } else {
        ""
    };
    let candidate = if sh.config_mode && sh.candidate != sh.running {
        m.candidate_marks.1
    } else {
        m.candidate_marks.0
    };
    // A bare prompt shows the hostname without the user.
    let template = if sh.s.prompt.bare {
        template.replace("{u}@", "")
    } else {
        template.to_string()
    };
    template
        .replace("{h}", &sh.s.hostname)
        .replace("{u}", &sh.s.username)
        .replace("{s}", label)
        .replace("{n}", &sh.counter.to_string())
        .replace("{*}", unsaved)
        .replace("{c}", candidate)
        .replace('\n', "\r\n")
}

pub(crate) struct Generic(pub &'static Model);

const LOGIN: Confirm = Confirm::Step(0xff);
const ENTER: Confirm = Confirm::Step(0xfe);

impl Personality for Generic {
    fn initial_config(&self, hostname: &str) -> RunningConfig {
        let mut c = RunningConfig::default();
        c.upsert(&format!("hostname {hostname}"));
        c
    }

    fn prompt(&self, sh: &Shell) -> Option<String> {
        Some(prompt(sh, self.0))
    }

    fn greeting(&self, sh: &mut Shell) -> After {
        sh.text(self.0.banner);
        match self.0.login_question {
            Some(q) => sh.ask(q, Waiting::Confirm(LOGIN)),
            None => After::Prompt,
        }
    }

    fn command(&self, sh: &mut Shell, line: &str) -> After {
        sh.counter += 1;
        let m = self.0;
        if line.is_empty() {
            return After::Prompt;
        }
        if m.paging_off.iter().any(|p| matches(line, p).is_some()) {
            sh.paging = false;
            if !m.paging_reply.is_empty() {
                sh.say(m.paging_reply);
            }
            return After::Prompt;
        }
        if m.accepted.iter().any(|p| matches(line, p).is_some()) {
            return After::Prompt;
        }
        if sh.config_mode {
            return self.config_line(sh, line);
        }
        if let Some(en) = m.enable
            && matches(line, en).is_some()
        {
            if sh.privileged || sh.s.enable_secret.is_none() {
                sh.privileged = true;
                return After::Prompt;
            }
            return sh.ask("Password: ", Waiting::Secret);
        }
        if matches(line, m.version.0).is_some() {
            let v = m.version.1.replace("{h}", &sh.s.hostname);
            return sh.lines(v.lines().map(String::from).collect());
        }
        if matches(line, m.long_command).is_some() {
            let v = sh.tech_support(m.long_command);
            return sh.lines(v);
        }
        let privileged = sh.privileged;
        if matches(line, m.show_config).is_some() && privileged {
            let v = sh.running.render(" ", None);
            return sh.lines(v);
        }
        if let Some(c) = &m.config
            && matches(line, c.enter).is_some()
            && privileged
        {
            if let Some(q) = c.enter_question.filter(|_| !sh.asked_once) {
                sh.asked_once = true;
                return sh.ask(q, Waiting::Confirm(ENTER));
            }
            return enter_config(sh, c);
        }
        if let Some(s) = &m.save
            && matches(line, s.command).is_some()
            && !s.in_config
            && privileged
        {
            return save(sh, s, 0);
        }
        if m.config.is_none() && privileged && self.exec_config(sh, line) {
            return After::Prompt;
        }
        if matches(line, "exit").is_some() || matches(line, "logout").is_some() {
            return After::Disconnect;
        }
        self.error(sh, line)
    }

    fn confirm(&self, sh: &mut Shell, c: Confirm, answer: &str) -> After {
        let m = self.0;
        match c {
            LOGIN => After::Prompt,
            ENTER => match &m.config {
                Some(cfg) => enter_config(sh, cfg),
                None => After::Prompt,
            },
            Confirm::Step(i) => {
                let Some(s) = &m.save else {
                    return After::Prompt;
                };
                let i = i as usize;
                if !answer.trim().eq_ignore_ascii_case(s.questions[i].1) {
                    sh.say("Aborted.");
                    return After::Prompt;
                }
                save(sh, s, i + 1)
            }
            _ => After::Prompt,
        }
    }
}

fn enter_config(sh: &mut Shell, c: &ConfigModel) -> After {
    if !c.enter_text.is_empty() {
        sh.say(c.enter_text);
    }
    sh.candidate = sh.running.clone();
    sh.config_mode = true;
    After::Prompt
}

/// Asks the save questions from `step` on; saves after the last.
fn save(sh: &mut Shell, s: &SaveModel, step: usize) -> After {
    if let Some((q, _)) = s.questions.get(step) {
        return sh.ask(q, Waiting::Confirm(Confirm::Step(step as u8)));
    }
    sh.startup = sh.running.clone();
    if !s.text.is_empty() {
        sh.say(s.text);
    }
    After::Prompt
}

impl Generic {
    fn error(&self, sh: &mut Shell, line: &str) -> After {
        let text = self.0.error.replace("{cmd}", line);
        if self.0.caret {
            let n = sh.prompt().rsplit('\n').next().unwrap_or("").len();
            caret(sh, n, &text);
        } else {
            sh.say(&text);
        }
        After::Prompt
    }

    /// A configuration command at the prompt of a platform without configuration mode.
    fn exec_config(&self, sh: &mut Shell, line: &str) -> bool {
        let first = line.split_whitespace().next().unwrap_or("");
        let (open, close) = self.0.exec_blocks;
        if open.contains(&first) {
            let label = line.rsplit(' ').next().unwrap_or("").to_string();
            // An `edit` inside a block stays in the block's configuration.
            let idx = match &sh.section {
                Some((idx, _)) if first != open[0] => *idx,
                _ => sh.running.upsert(line),
            };
            sh.section = Some((idx, label));
            return true;
        }
        if close.contains(&first) {
            sh.section = None;
            return true;
        }
        if !self.0.exec_words.contains(&first) {
            return false;
        }
        match sh.section.clone() {
            Some((idx, _)) => sh.running.add_child(idx, line),
            None => {
                sh.running.upsert(line);
            }
        }
        true
    }

    fn config_line(&self, sh: &mut Shell, line: &str) -> After {
        let Some(c) = &self.0.config else {
            return self.error(sh, line);
        };
        if let Some(s) = &self.0.save
            && s.in_config
            && matches(line, s.command).is_some()
        {
            return save(sh, s, 0);
        }
        // Where `exit` is the way out, it leaves a section first (MLNX-OS, FASTPATH).
        if matches(line, "exit").is_some() && sh.section.is_some() {
            sh.section = None;
            return After::Prompt;
        }
        if matches(line, c.exit).is_some() {
            if !c.exit_text.is_empty() {
                sh.say(c.exit_text);
            }
            sh.candidate = sh.running.clone();
            sh.config_mode = false;
            sh.section = None;
            return After::Prompt;
        }
        if let Some(k) = &c.commit {
            if matches(line, k.command).is_some() {
                sh.running = sh.candidate.clone();
                if k.persists {
                    sh.startup = sh.running.clone();
                }
                if !k.text.is_empty() {
                    sh.say(k.text);
                }
                if k.commit_leaves {
                    sh.config_mode = false;
                    sh.section = None;
                }
                return After::Prompt;
            }
            if !k.compare.is_empty() && matches(line, k.compare).is_some() {
                let (old, new) = (sh.running.render(" ", None), sh.candidate.render(" ", None));
                let mut v: Vec<String> = new
                    .iter()
                    .filter(|l| !old.contains(l))
                    .map(|l| format!("+{l}"))
                    .collect();
                v.extend(
                    old.iter()
                        .filter(|l| !new.contains(l))
                        .map(|l| format!("-{l}")),
                );
                return sh.lines(v);
            }
            if matches(line, k.abort).is_some() {
                sh.candidate = sh.running.clone();
                if !k.abort_text.is_empty() {
                    sh.say(k.abort_text);
                }
                if k.abort_leaves {
                    sh.config_mode = false;
                    sh.section = None;
                }
                return After::Prompt;
            }
        }
        let first = line.split_whitespace().next().unwrap_or("");
        let target = if c.commit.is_some() {
            &mut sh.candidate
        } else {
            &mut sh.running
        };
        if let Some((_, label)) = c
            .sections
            .iter()
            .find(|(kw, _)| line.starts_with(&format!("{kw} ")))
        {
            let idx = target.upsert(line);
            let label = if label.is_empty() {
                line.rsplit(' ').next().unwrap_or("").to_string()
            } else {
                label.to_string()
            };
            sh.section = Some((idx, label));
            return After::Prompt;
        }
        if !c.words.contains(&first) {
            return self.error(sh, line);
        }
        match sh.section.clone() {
            Some((idx, _)) => target.add_child(idx, line),
            None => {
                target.upsert(line);
            }
        }
        After::Prompt
    }
}
