use std::time::Duration;

use netpulse_proto::agent::{self, Dispatch};
use netpulse_proto::worker;

use crate::connection::Connection;
use crate::device::DeviceKey;
use crate::error::{ModelError, invalid};
use crate::request::Strategy;

const MAX_ID_LEN: usize = 128;
const MAX_LINES: usize = 10_000;

/// A dispatch as the agent trusts it: checked once when it arrives from a manager.
#[derive(Clone, Debug)]
pub struct AgentJob {
    pub id: String,
    pub device: DeviceKey,
    pub strategy: Strategy,
    pub connection: Connection,
    /// Application keepalive of the pinned worker, in seconds (0: the worker's default).
    pub keepalive_seconds: u32,
    /// Idle TTL of the pinned worker, in seconds (0: the worker's default).
    pub idle_ttl_seconds: u32,
    /// TCP connect and SSH handshake of the worker's session.
    pub connect_timeout: Duration,
    /// Execution timeout: the agent kills the worker when it does not answer in time.
    pub timeout: Duration,
    /// How long a fifo job may retry a device that refused it as busy (zero: not at all).
    pub busy_retry: Duration,
    /// Only look the job up here, never start it (see `Dispatch.resume_only`).
    pub resume_only: bool,
    /// The job frame the worker gets: its id, operation, enable mode, command timeout, trace
    /// context, and its connection (a pinned worker reconnects when that changes).
    pub frame: worker::Job,
}

fn at_most(name: &str, v: u32, max: u32) -> Result<u32, ModelError> {
    if v > max {
        return Err(invalid(format!(
            "{name} must be 1..={max} (0 for the default), got {v}"
        )));
    }
    Ok(v)
}

/// `0` means `default`.
fn secs_or(v: u32, default: u64) -> Duration {
    Duration::from_secs(if v == 0 { default } else { v as u64 })
}

impl TryFrom<Dispatch> for AgentJob {
    type Error = ModelError;

    fn try_from(d: Dispatch) -> Result<Self, ModelError> {
        if d.job_id.is_empty() || d.job_id.len() > MAX_ID_LEN {
            return Err(invalid(format!(
                "job_id must be 1..={MAX_ID_LEN} bytes, got {}",
                d.job_id.len()
            )));
        }
        let wire = d
            .connection
            .as_ref()
            .ok_or_else(|| invalid("dispatch.connection is required"))?;
        let credential = d
            .credential
            .as_ref()
            .map(crate::credential::CredentialRef::try_from)
            .transpose()?;
        let connection = Connection::from_worker(wire, credential)?;
        let strategy = match d.strategy() {
            agent::Strategy::Fifo => Strategy::Fifo,
            agent::Strategy::Pinned | agent::Strategy::Unspecified => Strategy::Pinned,
        };
        let mut frame = d.job.ok_or_else(|| invalid("dispatch.job is required"))?;
        let lines = match &frame.operation {
            Some(worker::job::Operation::Commands(c)) => c.commands.len() + c.specs.len(),
            Some(worker::job::Operation::Config(c)) => c.lines.len(),
            Some(worker::job::Operation::Probe(_)) => 1,
            Some(worker::job::Operation::ConfirmCommit(_)) => 1,
            Some(worker::job::Operation::Transfer(_)) => 1,
            None => return Err(invalid("job needs commands or config")),
        };
        if lines == 0 || lines > MAX_LINES {
            return Err(invalid(format!(
                "a job holds 1..={MAX_LINES} commands or config lines, got {lines}"
            )));
        }
        frame.job_id = d.job_id.clone();
        // The wire form as it came (checked above) travels on, uncopied.
        frame.connection = d.connection;
        Ok(AgentJob {
            id: d.job_id,
            device: connection.device.clone(),
            strategy,
            connection,
            keepalive_seconds: at_most("keepalive_seconds", d.keepalive_seconds, 3600)?,
            idle_ttl_seconds: at_most("idle_ttl_seconds", d.idle_ttl_seconds, 86_400)?,
            connect_timeout: secs_or(
                at_most("connect_timeout_seconds", d.connect_timeout_seconds, 300)?,
                10,
            ),
            timeout: secs_or(at_most("timeout_seconds", d.timeout_seconds, 86_400)?, 300),
            busy_retry: Duration::from_secs(at_most(
                "queue_timeout_seconds",
                d.queue_timeout_seconds,
                86_400,
            )? as u64),
            resume_only: d.resume_only,
            frame,
        })
    }
}

impl AgentJob {
    /// Puts the secrets its credential reference resolved to in the connection and in the
    /// worker's job frame.
    pub fn resolve(&mut self, r: crate::credential::Resolved) -> Result<(), ModelError> {
        self.connection.resolve(r)?;
        self.frame.connection = Some(worker::Connection::from(&self.connection));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{JobRequest, RequestLimits};
    use netpulse_proto::api;

    fn dispatch() -> Dispatch {
        let req = api::ExecuteRequest {
            connection: Some(api::Connection {
                host: "192.0.2.7".into(),
                port: 2222,
                username: "admin".into(),
                password: "hunter2".into(),
                device_type: "cisco_ios".into(),
                connect_timeout_seconds: 3,
                ..Default::default()
            }),
            commands: vec!["show clock".into()],
            strategy: api::Strategy::Fifo as i32,
            timeout_seconds: 40,
            ..Default::default()
        };
        JobRequest::from_wire(req, &RequestLimits::default())
            .unwrap()
            .to_dispatch("j1")
    }

    #[test]
    fn a_dispatch_from_the_manager_round_trips() {
        let j = AgentJob::try_from(dispatch()).unwrap();
        assert_eq!(j.device.to_string(), "192.0.2.7:2222");
        assert_eq!(j.strategy, Strategy::Fifo);
        assert_eq!(
            (j.connect_timeout, j.timeout),
            (Duration::from_secs(3), Duration::from_secs(40))
        );
        assert_eq!(
            j.busy_retry,
            Duration::from_secs(300),
            "the queue timeout's default"
        );
        assert_eq!(j.frame.job_id, "j1");
        assert_eq!(j.frame.connection.as_ref().unwrap().password, "hunter2");
        assert!(!format!("{:?}", j.connection).contains("hunter2"));
    }

    #[test]
    fn bad_dispatches_are_refused_with_the_field_named() {
        let mut d = dispatch();
        d.job_id = "x".repeat(129);
        assert!(
            AgentJob::try_from(d)
                .unwrap_err()
                .to_string()
                .contains("job_id")
        );
        let mut d = dispatch();
        d.connection = None;
        assert_eq!(
            AgentJob::try_from(d).unwrap_err().to_string(),
            "dispatch.connection is required"
        );
        let mut d = dispatch();
        d.timeout_seconds = 86_401;
        assert!(
            AgentJob::try_from(d)
                .unwrap_err()
                .to_string()
                .contains("timeout_seconds")
        );
        let mut d = dispatch();
        d.job.as_mut().unwrap().operation = None;
        assert_eq!(
            AgentJob::try_from(d).unwrap_err().to_string(),
            "job needs commands or config"
        );
    }
}
