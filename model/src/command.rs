//! Commands with their own reading rules (`ExecuteRequest.command_specs`), and the check of
//! every regular expression a request carries.

use std::time::Duration;

use netpulse_proto::{api, worker};

use crate::error::{ModelError, invalid, seconds};

const MAX_PATTERN_BYTES: usize = 512;
/// Compiled-size limit of one request pattern: a pattern that would need more is refused
/// rather than compiled in every worker that runs the job.
const MAX_PATTERN_SIZE: usize = 1 << 20;
const MAX_ANSWERS: usize = 16;
const MAX_TEMPLATE_BYTES: usize = 64 << 10;

/// Checks `{at}.template_name`: a plain file name in `whose` templates directory, never a path.
pub fn template_name(at: &str, whose: &str, n: &str) -> Result<(), ModelError> {
    let ok = n.len() <= 128
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        return Ok(());
    }
    Err(invalid(format!(
        "{at}.template_name is a file name in the {whose} templates directory: \
         1..=128 of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'; got {n:?}"
    )))
}

/// Checks the size of `{at}.inline_template`.
pub fn template_size(at: &str, t: &str) -> Result<(), ModelError> {
    if t.len() > MAX_TEMPLATE_BYTES {
        return Err(invalid(format!(
            "{at}.inline_template is {} bytes; at most {MAX_TEMPLATE_BYTES} are allowed",
            t.len()
        )));
    }
    Ok(())
}

/// How a command's output is parsed into rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse {
    /// The template ntc-templates' index names for the platform and command.
    NtcIndex,
    /// A file in the agent's templates directory.
    Named(String),
    /// The template's text, checked to compile.
    Inline(String),
}

impl Parse {
    /// `None` when nothing is asked; `at` names the field in errors.
    pub fn from_wire(at: &str, p: Option<&api::Parse>) -> Result<Option<Parse>, ModelError> {
        let Some(p) = p else { return Ok(None) };
        let given = [
            p.ntc_index,
            !p.template_name.is_empty(),
            !p.inline_template.is_empty(),
        ];
        let parse = match given {
            [false, false, false] => return Ok(None),
            [true, false, false] => Parse::NtcIndex,
            [false, true, false] => {
                template_name(at, "agent's", &p.template_name)?;
                Parse::Named(p.template_name.clone())
            }
            [false, false, true] => {
                let t = &p.inline_template;
                template_size(at, t)?;
                netpulse_textfsm::Template::new(t).map_err(|e| {
                    invalid(format!(
                        "{at}.inline_template is not a valid TextFSM template: {e}"
                    ))
                })?;
                Parse::Inline(t.clone())
            }
            _ => {
                return Err(invalid(format!(
                    "{at} takes one of ntc_index, template_name and inline_template, not several"
                )));
            }
        };
        Ok(Some(parse))
    }

    /// Where the template comes from, as the template library names it.
    pub fn source(&self) -> netpulse_textfsm::Source {
        match self {
            Parse::NtcIndex => netpulse_textfsm::Source::NtcIndex,
            Parse::Named(n) => netpulse_textfsm::Source::Named(n.clone()),
            Parse::Inline(t) => netpulse_textfsm::Source::Inline(t.clone()),
        }
    }

    pub fn to_wire(&self) -> api::Parse {
        match self {
            Parse::NtcIndex => api::Parse {
                ntc_index: true,
                ..Default::default()
            },
            Parse::Named(n) => api::Parse {
                template_name: n.clone(),
                ..Default::default()
            },
            Parse::Inline(t) => api::Parse {
                inline_template: t.clone(),
                ..Default::default()
            },
        }
    }
}

/// Checks that `s` is a usable regular expression; `name` is the field in errors.
pub fn pattern(name: &str, s: &str) -> Result<(), ModelError> {
    if s.len() > MAX_PATTERN_BYTES {
        return Err(invalid(format!(
            "{name} is {} bytes; at most {MAX_PATTERN_BYTES} are allowed",
            s.len()
        )));
    }
    regex::RegexBuilder::new(s)
        .size_limit(MAX_PATTERN_SIZE)
        .build()
        .map(|_| ())
        .map_err(|e| {
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("").trim();
            invalid(format!("{name} is not a valid regular expression: {why}"))
        })
}

/// Parsed rows as the public API carries them: one object per record.
pub fn rows(table: &netpulse_textfsm::Table) -> prost_types::ListValue {
    match netpulse_proto::json::to_value(&table.to_json()).kind {
        Some(prost_types::value::Kind::ListValue(l)) => l,
        _ => prost_types::ListValue::default(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub command: String,
    /// `None`: the connection's command timeout.
    pub read_timeout: Option<Duration>,
    pub expect: Option<String>,
    /// (question pattern, answer)
    pub answers: Vec<(String, String)>,
    pub parse: Option<Parse>,
}

impl CommandSpec {
    /// Validates `command_specs[i]`; `check_line` applies the request's line rules.
    pub fn from_wire(
        i: usize,
        c: &api::CommandSpec,
        check_line: impl Fn(&str, &str) -> Result<(), ModelError>,
    ) -> Result<CommandSpec, ModelError> {
        let at = |f: &str| format!("command_specs[{i}].{f}");
        // An empty command is a RETURN, which answers a question the device asked.
        if !c.command.is_empty() {
            check_line(&at("command"), &c.command)?;
        }
        let read_timeout = match c.read_timeout_seconds {
            0 => None,
            s => Some(seconds(&at("read_timeout_seconds"), s, 3600, 30)?),
        };
        let expect = match c.expect.as_str() {
            "" => None,
            e => {
                pattern(&at("expect"), e)?;
                Some(e.to_string())
            }
        };
        if c.answers.len() > MAX_ANSWERS {
            return Err(invalid(format!(
                "{} holds at most {MAX_ANSWERS} answers, got {}",
                at("answers"),
                c.answers.len()
            )));
        }
        let mut answers = Vec::with_capacity(c.answers.len());
        for (j, a) in c.answers.iter().enumerate() {
            if a.prompt.is_empty() {
                return Err(invalid(format!(
                    "{} must not be empty",
                    at(&format!("answers[{j}].prompt"))
                )));
            }
            pattern(&at(&format!("answers[{j}].prompt")), &a.prompt)?;
            if a.answer.contains(['\n', '\r']) {
                return Err(invalid(format!(
                    "{} must be one line (no line breaks)",
                    at(&format!("answers[{j}].answer"))
                )));
            }
            answers.push((a.prompt.clone(), a.answer.clone()));
        }
        Ok(CommandSpec {
            command: c.command.clone(),
            read_timeout,
            expect,
            answers,
            parse: Parse::from_wire(&at("parse"), c.parse.as_ref())?,
        })
    }
}

impl From<&CommandSpec> for worker::CommandSpec {
    fn from(c: &CommandSpec) -> Self {
        worker::CommandSpec {
            command: c.command.clone(),
            read_timeout_ms: c.read_timeout.map_or(0, |d| d.as_millis() as u32),
            expect: c.expect.clone().unwrap_or_default(),
            answers: c
                .answers
                .iter()
                .map(|(prompt, answer)| worker::Answer {
                    prompt: prompt.clone(),
                    answer: answer.clone(),
                })
                .collect(),
            parse: c.parse.as_ref().map(Parse::to_wire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_line(_: &str, _: &str) -> Result<(), ModelError> {
        Ok(())
    }

    #[test]
    fn bad_patterns_timeouts_and_answers_are_named() {
        let spec = |f: fn(&mut api::CommandSpec)| {
            let mut c = api::CommandSpec {
                command: "copy run start".into(),
                ..Default::default()
            };
            f(&mut c);
            CommandSpec::from_wire(2, &c, ok_line).map_err(|e| e.to_string())
        };
        assert!(spec(|_| {}).unwrap().expect.is_none());
        let e = spec(|c| c.expect = "(".into()).unwrap_err();
        assert!(
            e.starts_with("command_specs[2].expect is not a valid regular expression"),
            "{e}"
        );
        let e = spec(|c| c.read_timeout_seconds = 3601).unwrap_err();
        assert_eq!(
            e,
            "command_specs[2].read_timeout_seconds must be 1..=3600 (0 for 30), got 3601"
        );
        let e = spec(|c| {
            c.answers = vec![api::Answer {
                prompt: "x".into(),
                answer: "a\nb".into(),
            }]
        })
        .unwrap_err();
        assert!(e.contains("answers[0].answer must be one line"), "{e}");
        let e = spec(|c| c.answers = vec![api::Answer::default()]).unwrap_err();
        assert!(e.contains("answers[0].prompt must not be empty"), "{e}");
        let e = pattern("p", &"a".repeat(513)).unwrap_err().to_string();
        assert!(e.contains("at most 512"), "{e}");
        // Patterns whose compiled form would be huge are refused, not compiled.
        assert!(pattern("p", "(?:[a-z]{1,100}){1,100}\\w{100}").is_err());
    }
}
