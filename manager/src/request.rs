//! Validation of `ExecuteRequest` into a job request the scheduler can trust, and its
//! conversion into the agent's `Dispatch`. Every refusal says what was wrong and what is
//! allowed. `Debug` never shows the password or the secret.

use std::time::Duration;

use netpulse_proto::agent::{self, Dispatch};
use netpulse_proto::api::{self, ExecuteRequest};
use netpulse_proto::worker;

use crate::error::ApiError;

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

#[derive(Clone, PartialEq, Eq)]
pub struct Device {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// As given (an alias such as `cisco_xe` is kept: the worker resolves it).
    pub device_type: String,
    pub secret: String,
    pub keepalive_seconds: u32,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("device_type", &self.device_type)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// The key a pinned device is placed and queued under.
    pub fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Commands(Vec<String>),
    Config { lines: Vec<String>, save: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Pinned,
    Fifo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRequest {
    pub device: Device,
    pub operation: Operation,
    pub strategy: Strategy,
    pub enable: bool,
    pub idle_ttl: Duration,
    pub queue_timeout: Duration,
    pub timeout: Duration,
    pub result_ttl: Duration,
    pub wait: bool,
    pub idempotency_key: Option<String>,
    /// The submit's trace context, passed to the agent in every dispatch (empty: not traced).
    pub trace_context: std::collections::HashMap<String, String>,
}

fn invalid(msg: String) -> ApiError {
    ApiError::InvalidArgument(msg)
}

/// `0` means `default`; otherwise `1..=max` seconds.
fn seconds(name: &str, v: u32, max: u32, default: u32) -> Result<Duration, ApiError> {
    match v {
        0 => Ok(Duration::from_secs(default as u64)),
        v if v <= max => Ok(Duration::from_secs(v as u64)),
        v => Err(invalid(format!(
            "{name} must be 1..={max} (0 for {default}), got {v}"
        ))),
    }
}

fn lines(name: &str, v: Vec<String>, limits: &RequestLimits) -> Result<Vec<String>, ApiError> {
    if v.len() > limits.max_lines {
        return Err(invalid(format!(
            "{name} holds at most {} lines, got {}",
            limits.max_lines,
            v.len()
        )));
    }
    for (i, l) in v.iter().enumerate() {
        if l.trim().is_empty() {
            return Err(invalid(format!("{name}[{i}] is empty")));
        }
        if l.contains(['\n', '\r']) {
            return Err(invalid(format!(
                "{name}[{i}] must be one line (no line breaks)"
            )));
        }
        if l.len() > limits.max_line_bytes {
            return Err(invalid(format!(
                "{name}[{i}] is {} bytes; at most {} are allowed",
                l.len(),
                limits.max_line_bytes
            )));
        }
    }
    Ok(v)
}

fn device(c: Option<api::Connection>) -> Result<Device, ApiError> {
    let c = c.ok_or_else(|| invalid("connection is required".into()))?;
    let host = c.host.trim().to_string();
    if host.is_empty() || host.len() > 253 || host.contains(char::is_whitespace) {
        return Err(invalid(format!(
            "connection.host must be a host name or address (1..=253 characters, no spaces), got {:?}",
            c.host
        )));
    }
    let port = match c.port {
        0 => 22,
        p @ 1..=65535 => p as u16,
        p => {
            return Err(invalid(format!(
                "connection.port must be 1..=65535 (0 for 22), got {p}"
            )));
        }
    };
    if c.username.is_empty() {
        return Err(invalid("connection.username must not be empty".into()));
    }
    if c.password.is_empty() {
        return Err(invalid("connection.password must not be empty".into()));
    }
    pinned_worker::dialect::lookup(&c.device_type)
        .map_err(|e| invalid(format!("connection.device_type: {e}")))?;
    let keepalive_seconds = match c.keepalive_seconds {
        v @ 0..=3600 => v,
        v => {
            return Err(invalid(format!(
                "connection.keepalive_seconds must be 1..=3600 (0 for 60), got {v}"
            )));
        }
    };
    Ok(Device {
        host,
        port,
        username: c.username,
        password: c.password,
        device_type: c.device_type,
        secret: c.secret,
        keepalive_seconds,
        connect_timeout: seconds(
            "connection.connect_timeout_seconds",
            c.connect_timeout_seconds,
            300,
            10,
        )?,
        command_timeout: seconds(
            "connection.command_timeout_seconds",
            c.command_timeout_seconds,
            3600,
            30,
        )?,
    })
}

impl JobRequest {
    pub fn from_wire(req: ExecuteRequest, limits: &RequestLimits) -> Result<JobRequest, ApiError> {
        let size = prost::Message::encoded_len(&req);
        if size > limits.max_request_bytes {
            return Err(invalid(format!(
                "the request is {size} bytes; at most {} are allowed",
                limits.max_request_bytes
            )));
        }
        let strategy = match api::Strategy::try_from(req.strategy) {
            Ok(api::Strategy::Unspecified | api::Strategy::Pinned) => Strategy::Pinned,
            Ok(api::Strategy::Fifo) => Strategy::Fifo,
            Err(_) => {
                return Err(invalid(format!(
                    "strategy must be STRATEGY_PINNED or STRATEGY_FIFO, got {}",
                    req.strategy
                )));
            }
        };
        let operation = match (req.commands.is_empty(), req.config.is_empty()) {
            (false, true) => {
                if req.save {
                    return Err(invalid("save applies to config, not to commands".into()));
                }
                Operation::Commands(lines("commands", req.commands, limits)?)
            }
            (true, false) => Operation::Config {
                lines: lines("config", req.config, limits)?,
                save: req.save,
            },
            (true, true) => return Err(invalid("give commands or config: both are empty".into())),
            (false, false) => return Err(invalid("give commands or config, not both".into())),
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
        Ok(JobRequest {
            device: device(req.connection)?,
            operation,
            strategy,
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
            wait: req.wait,
            idempotency_key,
            trace_context: Default::default(),
        })
    }

    /// The agent's dispatch for this job.
    pub fn to_dispatch(&self, job_id: &str) -> Dispatch {
        let d = &self.device;
        let operation = match &self.operation {
            Operation::Commands(c) => worker::job::Operation::Commands(worker::Commands {
                commands: c.clone(),
            }),
            Operation::Config { lines, save } => {
                worker::job::Operation::Config(worker::ConfigPush {
                    lines: lines.clone(),
                    save: *save,
                })
            }
        };
        Dispatch {
            job_id: job_id.to_string(),
            strategy: match self.strategy {
                Strategy::Pinned => agent::Strategy::Pinned,
                Strategy::Fifo => agent::Strategy::Fifo,
            } as i32,
            connection: Some(worker::Connection {
                host: d.host.clone(),
                port: d.port as u32,
                username: d.username.clone(),
                password: d.password.clone(),
                device_type: d.device_type.clone(),
                secret: d.secret.clone(),
                ..Default::default()
            }),
            job: Some(worker::Job {
                job_id: job_id.to_string(),
                operation: Some(operation),
                enable_mode: self.enable,
                command_timeout_ms: d.command_timeout.as_millis() as u32,
                connection: None,
                trace_context: self.trace_context.clone(),
            }),
            keepalive_seconds: d.keepalive_seconds,
            idle_ttl_seconds: self.idle_ttl.as_secs() as u32,
            timeout_seconds: self.timeout.as_secs() as u32,
            resume_only: false,
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
            Err(ApiError::InvalidArgument(m)) => m,
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_conversion_to_a_dispatch() {
        let j = JobRequest::from_wire(req(), &RequestLimits::default()).unwrap();
        assert_eq!(
            (j.device.host.as_str(), j.device.port, j.strategy),
            ("192.0.2.1", 22, Strategy::Pinned)
        );
        assert_eq!(
            (j.timeout, j.idle_ttl, j.result_ttl),
            (
                Duration::from_secs(300),
                Duration::from_secs(600),
                Duration::from_secs(3600)
            )
        );
        assert_eq!(j.device.key(), "192.0.2.1:22");
        let d = j.to_dispatch("job-1");
        assert_eq!(
            (d.job_id.as_str(), d.timeout_seconds, d.idle_ttl_seconds),
            ("job-1", 300, 600)
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
        r.connection.as_mut().unwrap().device_type = "ios".into();
        let m = err(r);
        assert!(m.contains("\"ios\"") && m.contains("juniper_junos"), "{m}");
        let mut r = req();
        r.connection.as_mut().unwrap().keepalive_seconds = 0;
        assert!(
            JobRequest::from_wire(r, &RequestLimits::default()).is_ok(),
            "0 means the default"
        );
        let mut r = req();
        r.connection.as_mut().unwrap().keepalive_seconds = 3601;
        assert_eq!(
            err(r),
            "connection.keepalive_seconds must be 1..=3600 (0 for 60), got 3601"
        );
        let mut r = req();
        r.commands.clear();
        assert_eq!(err(r), "give commands or config: both are empty");
        let mut r = req();
        r.config = vec!["hostname x".into()];
        assert_eq!(err(r), "give commands or config, not both");
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
        let limits = RequestLimits {
            max_request_bytes: 100,
            ..Default::default()
        };
        let mut r = req();
        r.commands = vec!["show running-config | include interface".into(); 5];
        assert!(
            matches!(JobRequest::from_wire(r, &limits), Err(ApiError::InvalidArgument(m)) if m.contains("at most 100"))
        );
    }
}
