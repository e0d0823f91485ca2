use std::collections::HashMap;
use std::time::Duration;

use netpulse_proto::api::{self, ExecuteRequest};
use netpulse_proto::{agent, worker};

use crate::command::{CommandSpec, Parse};
use crate::connection::{Connection, SessionOptions};
use crate::error::{ModelError, invalid, seconds};

/// Request size limits (configurable on the manager).
#[derive(Clone, Debug)]
pub struct RequestLimits {
    pub max_lines: usize,
    pub max_line_bytes: usize,
    pub max_request_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_lines: 1000,
            max_line_bytes: 4096,
            max_request_bytes: 1 << 20,
        }
    }
}

/// What a job does on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Commands(Vec<String>),
    /// Commands with their own reading rules.
    CommandSpecs(Vec<CommandSpec>),
    Config {
        lines: Vec<String>,
        save: bool,
    },
    /// Log in, report the session's set-up, run nothing.
    TestConnection,
    /// Confirm the pending confirmed commit.
    ConfirmCommit,
    /// Move a file to or from the device.
    Transfer(crate::transfer::Transfer),
}

impl From<&Operation> for worker::job::Operation {
    fn from(op: &Operation) -> Self {
        match op {
            Operation::Commands(c) => worker::job::Operation::Commands(worker::Commands {
                commands: c.clone(),
                specs: Vec::new(),
            }),
            Operation::CommandSpecs(c) => worker::job::Operation::Commands(worker::Commands {
                commands: Vec::new(),
                specs: c.iter().map(Into::into).collect(),
            }),
            Operation::Config { lines, save } => {
                worker::job::Operation::Config(worker::ConfigPush {
                    lines: lines.clone(),
                    save: *save,
                })
            }
            Operation::TestConnection => worker::job::Operation::Probe(worker::Probe {}),
            Operation::ConfirmCommit => {
                worker::job::Operation::ConfirmCommit(worker::ConfirmCommit {})
            }
            Operation::Transfer(t) => worker::job::Operation::Transfer(t.into()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The device's pinned worker: one session, jobs in order.
    Pinned,
    /// A fresh connection in a one-shot worker, in parallel with other fifo jobs.
    Fifo,
}

impl From<Strategy> for api::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Pinned => api::Strategy::Pinned,
            Strategy::Fifo => api::Strategy::Fifo,
        }
    }
}

impl From<Strategy> for agent::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Pinned => agent::Strategy::Pinned,
            Strategy::Fifo => agent::Strategy::Fifo,
        }
    }
}

/// How long a job may take at each stage, and how it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobOptions {
    pub enable: bool,
    /// Idle TTL of the pinned worker.
    pub idle_ttl: Duration,
    pub queue_timeout: Duration,
    /// Execution timeout.
    pub timeout: Duration,
    /// How long the finished job is kept.
    pub result_ttl: Duration,
    /// Return the session's transcript with the job.
    pub transcript: bool,
    /// Read the running configuration before and after the push.
    pub backup: bool,
    /// Load the push into a candidate, show the diff, throw it away.
    pub dry_run: bool,
    /// Commit with the device's confirmed-commit timer.
    pub confirm_within: Option<Duration>,
    /// Send commands' output in pieces as it arrives.
    pub stream_output: bool,
}

/// A validated `ExecuteRequest`: everything past the manager's API trusts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRequest {
    pub connection: Connection,
    pub session: SessionOptions,
    pub operation: Operation,
    pub strategy: Strategy,
    pub options: JobOptions,
    pub wait: bool,
    pub idempotency_key: Option<String>,
    /// The platform's named mode the commands run in.
    pub mode: Option<String>,
    /// The submit's trace context, passed to the agent in every dispatch (empty: not traced).
    pub trace_context: HashMap<String, String>,
}

fn count(name: &str, n: usize, limits: &RequestLimits) -> Result<(), ModelError> {
    if n > limits.max_lines {
        return Err(invalid(format!(
            "{name} holds at most {} lines, got {n}",
            limits.max_lines,
        )));
    }
    Ok(())
}

/// One line of a request: `name` is the field, `commands[3]` say.
fn line(name: &str, l: &str, limits: &RequestLimits) -> Result<(), ModelError> {
    if l.trim().is_empty() {
        return Err(invalid(format!("{name} is empty")));
    }
    if l.contains(['\n', '\r']) {
        return Err(invalid(format!("{name} must be one line (no line breaks)")));
    }
    if l.len() > limits.max_line_bytes {
        return Err(invalid(format!(
            "{name} is {} bytes; at most {} are allowed",
            l.len(),
            limits.max_line_bytes
        )));
    }
    Ok(())
}

fn lines(name: &str, v: Vec<String>, limits: &RequestLimits) -> Result<Vec<String>, ModelError> {
    count(name, v.len(), limits)?;
    for (i, l) in v.iter().enumerate() {
        line(&format!("{name}[{i}]"), l, limits)?;
    }
    Ok(v)
}

impl JobRequest {
    pub fn from_wire(
        req: ExecuteRequest,
        limits: &RequestLimits,
    ) -> Result<JobRequest, ModelError> {
        let size = prost::Message::encoded_len(&req);
        if size > limits.max_request_bytes {
            return Err(invalid(format!(
                "the request is {size} bytes; at most {} are allowed",
                limits.max_request_bytes
            )));
        }
        let strategy = match api::Strategy::try_from(req.strategy) {
            // Long work on a fresh connection, unless asked otherwise.
            Ok(api::Strategy::Unspecified) if req.transfer.is_some() => Strategy::Fifo,
            Ok(api::Strategy::Unspecified | api::Strategy::Pinned) => Strategy::Pinned,
            Ok(api::Strategy::Fifo) => Strategy::Fifo,
            Err(_) => {
                return Err(invalid(format!(
                    "strategy must be STRATEGY_PINNED or STRATEGY_FIFO, got {}",
                    req.strategy
                )));
            }
        };
        let given = [
            !req.commands.is_empty(),
            !req.command_specs.is_empty(),
            !req.config.is_empty(),
        ];
        let operation = match given {
            [false, false, false]
                if let Some(t) = &req.transfer
                    && !req.confirm_commit
                    && !req.test_connection =>
            {
                if req.save
                    || req.backup
                    || req.dry_run
                    || req.parse
                    || !req.mode.is_empty()
                    || req.confirm_within_seconds > 0
                {
                    return Err(invalid(
                        "a transfer moves a file: save, backup, dry_run, parse, mode and \
                         confirm_within_seconds do not apply",
                    ));
                }
                Operation::Transfer(crate::transfer::Transfer::from_wire(t)?)
            }
            _ if req.transfer.is_some() => {
                return Err(invalid(
                    "transfer stands alone: leave commands, command_specs, config, \
                     test_connection and confirm_commit empty",
                ));
            }
            [false, false, false] if req.confirm_commit && !req.test_connection => {
                if req.save || req.confirm_within_seconds > 0 {
                    return Err(invalid(
                        "confirm_commit confirms a commit: save and confirm_within_seconds do not apply",
                    ));
                }
                Operation::ConfirmCommit
            }
            _ if req.confirm_commit => {
                return Err(invalid(
                    "confirm_commit stands alone: leave commands, command_specs, config and test_connection empty",
                ));
            }
            [false, false, false] if req.test_connection => {
                if req.save || req.enable_mode {
                    return Err(invalid(
                        "test_connection runs nothing: save and enable_mode do not apply",
                    ));
                }
                Operation::TestConnection
            }
            _ if req.test_connection => {
                return Err(invalid(
                    "test_connection runs nothing: leave commands, command_specs and config empty",
                ));
            }
            [true, false, false] | [false, true, false] if req.save => {
                return Err(invalid("save applies to config, not to commands"));
            }
            [true, false, false] => Operation::Commands(lines("commands", req.commands, limits)?),
            [false, true, false] => {
                count("command_specs", req.command_specs.len(), limits)?;
                let specs = req
                    .command_specs
                    .iter()
                    .enumerate()
                    .map(|(i, c)| CommandSpec::from_wire(i, c, |n, l| line(n, l, limits)))
                    .collect::<Result<_, _>>()?;
                Operation::CommandSpecs(specs)
            }
            [false, false, true] => Operation::Config {
                lines: lines("config", req.config, limits)?,
                save: req.save,
            },
            [false, false, false] => {
                return Err(invalid(
                    "give commands, command_specs or config (or set test_connection): all are empty",
                ));
            }
            _ => {
                return Err(invalid(
                    "give one of commands, command_specs and config, not several",
                ));
            }
        };
        let idempotency_key = match req.idempotency_key {
            k if k.is_empty() => None,
            k if k.len() <= 128 && !k.contains(char::is_control) => Some(k),
            k => {
                return Err(invalid(format!(
                    "idempotency_key must be 1..=128 printable bytes, got {} bytes",
                    k.len()
                )));
            }
        };
        let operation = match (req.parse, operation) {
            (false, op) => op,
            (true, Operation::Commands(cmds)) => Operation::CommandSpecs(
                cmds.into_iter()
                    .map(|command| CommandSpec {
                        command,
                        read_timeout: None,
                        expect: None,
                        answers: Vec::new(),
                        parse: Some(Parse::NtcIndex),
                    })
                    .collect(),
            ),
            (true, Operation::CommandSpecs(mut specs)) => {
                for s in specs.iter_mut().filter(|s| s.parse.is_none()) {
                    s.parse = Some(Parse::NtcIndex);
                }
                Operation::CommandSpecs(specs)
            }
            (true, _) => {
                return Err(invalid(
                    "parse applies to commands and command_specs, not to config or test_connection",
                ));
            }
        };
        if req.backup && !matches!(operation, Operation::Config { .. }) {
            return Err(invalid("backup applies to config (or config_template)"));
        }
        if req.dry_run {
            if !matches!(operation, Operation::Config { .. }) {
                return Err(invalid("dry_run applies to config (or config_template)"));
            }
            if req.save || req.backup {
                return Err(invalid(
                    "a dry run changes nothing: save and backup do not apply to it",
                ));
            }
        }
        let mode = match req.mode {
            m if m.is_empty() => None,
            _ if !matches!(
                operation,
                Operation::Commands(_) | Operation::CommandSpecs(_)
            ) =>
            {
                return Err(invalid(
                    "mode applies to commands and command_specs, not to config or test_connection",
                ));
            }
            m if m.len() <= 32
                && m.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
            {
                Some(m)
            }
            m => {
                return Err(invalid(format!(
                    "mode is a platform's mode name, 1..=32 of a-z, 0-9 and _, got {m:?}"
                )));
            }
        };
        let confirm_within = match req.confirm_within_seconds {
            0 => None,
            s if !matches!(operation, Operation::Config { .. }) || req.dry_run => {
                return Err(invalid(format!(
                    "confirm_within_seconds ({s}) applies to a config push (not a dry run)"
                )));
            }
            s => Some(seconds("confirm_within_seconds", s, 86_400, 600)?),
        };
        if req.stream_output
            && !matches!(
                operation,
                Operation::Commands(_) | Operation::CommandSpecs(_)
            )
        {
            return Err(invalid(
                "stream_output applies to commands and command_specs",
            ));
        }
        let c = req
            .connection
            .as_ref()
            .ok_or_else(|| invalid("connection is required"))?;
        Ok(JobRequest {
            connection: Connection::try_from(c)?,
            session: SessionOptions::try_from(c)?,
            operation,
            strategy,
            options: JobOptions {
                enable: req.enable_mode,
                idle_ttl: seconds("ttl_seconds", req.ttl_seconds, 86_400, 600)?,
                queue_timeout: seconds(
                    "queue_timeout_seconds",
                    req.queue_timeout_seconds,
                    86_400,
                    300,
                )?,
                timeout: seconds("timeout_seconds", req.timeout_seconds, 86_400, 300)?,
                result_ttl: seconds("result_ttl_seconds", req.result_ttl_seconds, 604_800, 3600)?,
                transcript: req.transcript,
                backup: req.backup,
                dry_run: req.dry_run,
                confirm_within,
                stream_output: req.stream_output,
            },
            wait: req.wait,
            idempotency_key,
            mode,
            trace_context: HashMap::new(),
        })
    }

    /// The node that must run the job, when it uses a file staged there.
    pub fn staged_on(&self) -> Option<&str> {
        match &self.operation {
            Operation::Transfer(t) => t.node(),
            _ => None,
        }
    }

    /// The agent's dispatch for this job.
    pub fn to_dispatch(&self, job_id: &str) -> agent::Dispatch {
        agent::Dispatch {
            job_id: job_id.to_string(),
            strategy: agent::Strategy::from(self.strategy) as i32,
            connection: Some(worker::Connection::from(&self.connection)),
            job: Some(worker::Job {
                job_id: job_id.to_string(),
                operation: Some((&self.operation).into()),
                enable_mode: self.options.enable,
                command_timeout_ms: self.session.command_timeout.as_millis() as u32,
                connection: None,
                trace_context: self.trace_context.clone(),
                transcript: self.options.transcript,
                mode: self.mode.clone().unwrap_or_default(),
                backup: self.options.backup,
                dry_run: self.options.dry_run,
                confirm_within_seconds: self
                    .options
                    .confirm_within
                    .map_or(0, |d| d.as_secs() as u32),
                stream_output: self.options.stream_output,
            }),
            keepalive_seconds: self.session.keepalive.as_secs() as u32,
            idle_ttl_seconds: self.options.idle_ttl.as_secs() as u32,
            timeout_seconds: self.options.timeout.as_secs() as u32,
            resume_only: false,
            connect_timeout_seconds: self.session.connect_timeout.as_secs() as u32,
            queue_timeout_seconds: self.options.queue_timeout.as_secs() as u32,
            credential: self.connection.credential.as_ref().map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ExecuteRequest {
        ExecuteRequest {
            connection: Some(api::Connection {
                host: " 192.0.2.1 ".into(),
                username: "admin".into(),
                password: "hunter2".into(),
                device_type: "cisco_xe".into(),
                secret: "en-secret".into(),
                ..Default::default()
            }),
            commands: vec!["show version".into()],
            ..Default::default()
        }
    }

    fn err(r: ExecuteRequest) -> String {
        match JobRequest::from_wire(r, &RequestLimits::default()) {
            Err(ModelError::Invalid(m)) => m,
            Ok(j) => panic!("expected invalid argument, got {j:?}"),
        }
    }

    #[test]
    fn defaults_and_conversion_to_a_dispatch() {
        let j = JobRequest::from_wire(req(), &RequestLimits::default()).unwrap();
        assert_eq!(
            (j.connection.device.to_string(), j.strategy),
            ("192.0.2.1:22".to_string(), Strategy::Pinned)
        );
        assert_eq!(
            (j.options.timeout, j.options.idle_ttl, j.options.result_ttl),
            (
                Duration::from_secs(300),
                Duration::from_secs(600),
                Duration::from_secs(3600)
            )
        );
        let d = j.to_dispatch("job-1");
        assert_eq!(
            (d.job_id.as_str(), d.timeout_seconds, d.idle_ttl_seconds),
            ("job-1", 300, 600)
        );
        assert_eq!(
            (d.keepalive_seconds, d.connect_timeout_seconds),
            (60, 10),
            "defaults travel explicitly"
        );
        assert_eq!(d.job.as_ref().unwrap().command_timeout_ms, 30_000);
        assert_eq!(
            d.connection.as_ref().unwrap().password,
            "hunter2",
            "credentials travel to the agent"
        );
        assert!(!format!("{j:?}").contains("hunter2") && !format!("{j:?}").contains("en-secret"));
    }

    #[test]
    fn transfers_stand_alone_default_to_fifo_and_streamed_output_is_for_commands() {
        let t = api::FileTransfer {
            direction: api::TransferDirection::Get as i32,
            remote_path: "flash:/a.bin".into(),
            ..Default::default()
        };
        let mut r = req();
        r.commands.clear();
        r.transfer = Some(t.clone());
        let j = JobRequest::from_wire(r.clone(), &RequestLimits::default()).unwrap();
        assert_eq!(j.strategy, Strategy::Fifo);
        assert!(matches!(j.operation, Operation::Transfer(_)));
        assert_eq!(j.staged_on(), None);
        let d = j.to_dispatch("job-1");
        assert!(matches!(
            d.job.unwrap().operation,
            Some(worker::job::Operation::Transfer(w)) if w.remote_path == "flash:/a.bin"
        ));
        r.strategy = api::Strategy::Pinned as i32;
        let j = JobRequest::from_wire(r.clone(), &RequestLimits::default()).unwrap();
        assert_eq!(j.strategy, Strategy::Pinned, "pinned when asked");
        let mut both = r.clone();
        both.commands = vec!["show version".into()];
        assert!(err(both).contains("transfer stands alone"));
        let mut saved = r.clone();
        saved.save = true;
        assert!(err(saved).contains("do not apply"));
        let mut streamed = r;
        streamed.stream_output = true;
        assert_eq!(
            err(streamed),
            "stream_output applies to commands and command_specs"
        );
        let mut cmds = req();
        cmds.stream_output = true;
        let j = JobRequest::from_wire(cmds, &RequestLimits::default()).unwrap();
        assert!(j.to_dispatch("j").job.unwrap().stream_output);
    }

    #[test]
    fn every_bad_field_is_named_with_what_is_allowed() {
        let mut r = req();
        r.connection.as_mut().unwrap().host = "".into();
        assert!(err(r).contains("connection.host"));
        let mut r = req();
        r.connection.as_mut().unwrap().port = 70_000;
        assert_eq!(
            err(r),
            "connection.port must be 1..=65535 (0 for 22), got 70000"
        );
        let mut r = req();
        r.connection.as_mut().unwrap().keepalive_seconds = 3601;
        assert_eq!(
            err(r),
            "connection.keepalive_seconds must be 1..=3600 (0 for 60), got 3601"
        );
        let mut r = req();
        r.commands.clear();
        assert_eq!(
            err(r),
            "give commands, command_specs or config (or set test_connection): all are empty"
        );
        let mut r = req();
        r.config = vec!["hostname x".into()];
        assert_eq!(
            err(r),
            "give one of commands, command_specs and config, not several"
        );
        let mut r = req();
        r.commands.clear();
        r.command_specs = vec![
            api::CommandSpec {
                command: "show clock".into(),
                ..Default::default()
            };
            2
        ];
        r.command_specs[1].command = "a\nb".into();
        assert_eq!(
            err(r),
            "command_specs[1].command must be one line (no line breaks)"
        );
        let mut r = req();
        r.commands.clear();
        r.command_specs = vec![api::CommandSpec {
            command: "copy running-config startup-config".into(),
            read_timeout_seconds: 90,
            expect: "\\]\\?$".into(),
            answers: vec![api::Answer {
                prompt: "confirm".into(),
                answer: "y".into(),
            }],
            parse: Some(api::Parse {
                template_name: "copy.textfsm".into(),
                ..Default::default()
            }),
        }];
        let j = JobRequest::from_wire(r, &RequestLimits::default()).unwrap();
        let d = j.to_dispatch("j");
        let Some(worker::job::Operation::Commands(c)) = &d.job.as_ref().unwrap().operation else {
            panic!("{d:?}");
        };
        assert_eq!(
            (
                c.specs[0].read_timeout_ms,
                c.specs[0].answers[0].answer.as_str()
            ),
            (90_000, "y")
        );
        let mut r = req();
        r.commands = vec!["show clock".into(), "  ".into()];
        assert_eq!(err(r), "commands[1] is empty");
        let mut r = req();
        r.commands = vec!["show clock\nreload".into()];
        assert!(err(r).contains("no line breaks"));
        let mut r = req();
        r.commands = vec!["show clock".into(); 1001];
        assert_eq!(err(r), "commands holds at most 1000 lines, got 1001");
        let mut r = req();
        r.save = true;
        assert!(err(r).contains("save applies to config"));
        let Some(worker::job::Operation::Commands(c)) = &d.job.as_ref().unwrap().operation else {
            panic!("{d:?}");
        };
        assert_eq!(
            c.specs[0].parse.as_ref().unwrap().template_name,
            "copy.textfsm"
        );
        // `parse` turns every command into one parsed by the index.
        let mut r = req();
        r.parse = true;
        let j = JobRequest::from_wire(r, &RequestLimits::default()).unwrap();
        let Operation::CommandSpecs(specs) = &j.operation else {
            panic!("{j:?}");
        };
        assert!(specs.iter().all(|s| s.parse == Some(Parse::NtcIndex)));
        let mut r = req();
        r.mode = "Shell!".into();
        assert!(err(r).contains("mode is a platform's mode name"));
        let mut r = req();
        r.commands.clear();
        r.config = vec!["hostname x".into()];
        r.mode = "shell".into();
        assert!(err(r).contains("mode applies to commands and command_specs"));
        let mut r = req();
        r.mode = "shell".into();
        let d = JobRequest::from_wire(r, &RequestLimits::default())
            .unwrap()
            .to_dispatch("j");
        assert_eq!(d.job.unwrap().mode, "shell");
        let mut r = req();
        r.timeout_seconds = 86_401;
        assert_eq!(
            err(r),
            "timeout_seconds must be 1..=86400 (0 for 300), got 86401"
        );
        let mut r = req();
        r.strategy = 9;
        assert!(err(r).contains("STRATEGY_FIFO"));
        let mut r = req();
        r.connection = None;
        assert_eq!(err(r), "connection is required");
        let mut r = req();
        r.commands = vec!["x".repeat(5000)];
        assert!(err(r).contains("at most 4096"));
        let mut r = req();
        r.idempotency_key = "k".repeat(129);
        assert!(err(r).contains("idempotency_key must be 1..=128"));
        let limits = RequestLimits {
            max_request_bytes: 100,
            ..Default::default()
        };
        let mut r = req();
        r.commands = vec!["show running-config | include interface".into(); 5];
        assert!(
            matches!(JobRequest::from_wire(r, &limits), Err(ModelError::Invalid(m)) if m.contains("at most 100"))
        );
    }
}
