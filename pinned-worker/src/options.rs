//! Validation of the init frame and of per-job connections into typed options.

use std::path::PathBuf;
use std::time::Duration;

use netpulse_proto::worker::{self as wire, HostKeyPolicy as WirePolicy, WorkerMode};

use crate::error::SessionError;
use regex::Regex;

use crate::ops::{CommandLine, JobSpec, Operation};
use crate::platform::Confirmation;
use crate::platform::{self, Platform};
use crate::ssh::{HostKeyPolicy, Target};

pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(600);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PROMPT_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SSH_KEEPALIVE: Duration = Duration::from_secs(15);
pub const DEFAULT_SSH_KEEPALIVE_MAX: usize = 3;
const MAX_TIMEOUT_MS: u32 = 3_600_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pinned,
    OneShot,
}

/// The device to talk to, in the form the session needs.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceTarget {
    pub target: Target,
    pub platform: &'static Platform,
    pub secret: String,
}

impl std::fmt::Debug for DeviceTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTarget")
            .field("target", &self.target)
            .field("platform", &self.platform.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("mode", &self.mode)
            .field("device", &self.device)
            .field("keepalive", &self.keepalive)
            .field("idle_ttl", &self.idle_ttl)
            .finish_non_exhaustive()
    }
}

/// Options of one worker process. `Debug` leaves the init frame (and its secrets) out.
#[derive(Clone)]
pub struct WorkerOptions {
    pub mode: Mode,
    pub device: DeviceTarget,
    pub prompt_timeout: Duration,
    pub command_timeout: Duration,
    pub keepalive: Duration,
    pub idle_ttl: Duration,
    pub connect_on_start: bool,
    pub worker_id: String,
    init: wire::Init,
}

fn invalid(msg: String) -> SessionError {
    SessionError::InvalidArgument(msg)
}

fn ms(name: &str, v: u32, default: Duration) -> Result<Duration, SessionError> {
    match v {
        0 => Ok(default),
        1..=MAX_TIMEOUT_MS => Ok(Duration::from_millis(v as u64)),
        _ => Err(invalid(format!(
            "{name} must be 1..={MAX_TIMEOUT_MS} (0 for the default), got {v}"
        ))),
    }
}

fn command_line(i: usize, s: &wire::CommandSpec) -> Result<CommandLine, SessionError> {
    let re = |field: String, p: &str| {
        Regex::new(p).map_err(|e| {
            invalid(format!(
                "{field} is not a valid regular expression: {}",
                e.to_string().lines().last().unwrap_or("").trim()
            ))
        })
    };
    Ok(CommandLine {
        command: s.command.clone(),
        read_timeout: match s.read_timeout_ms {
            0 => None,
            v => Some(ms(
                &format!("specs[{i}].read_timeout_ms"),
                v,
                DEFAULT_COMMAND_TIMEOUT,
            )?),
        },
        expect: match s.expect.as_str() {
            "" => None,
            e => Some(re(format!("specs[{i}].expect"), e)?),
        },
        answers: s
            .answers
            .iter()
            .enumerate()
            .map(|(j, a)| {
                Ok(Confirmation {
                    pattern: re(format!("specs[{i}].answers[{j}].prompt"), &a.prompt)?,
                    answer: a.answer.clone(),
                })
            })
            .collect::<Result<_, SessionError>>()?,
        // Checked at the manager; an inline template compiles when the output is parsed.
        parse: s.parse.as_ref().and_then(|p| {
            use netpulse_model::Parse;
            if p.ntc_index {
                Some(Parse::NtcIndex)
            } else if !p.template_name.is_empty() {
                Some(Parse::Named(p.template_name.clone()))
            } else if !p.inline_template.is_empty() {
                Some(Parse::Inline(p.inline_template.clone()))
            } else {
                None
            }
        }),
    })
}

impl WorkerOptions {
    pub fn from_init(init: wire::Init) -> Result<Self, SessionError> {
        let mode = match init.mode() {
            WorkerMode::Unspecified | WorkerMode::Pinned => Mode::Pinned,
            WorkerMode::Oneshot => Mode::OneShot,
        };
        let keepalive = match init.keepalive_seconds {
            0 => DEFAULT_KEEPALIVE,
            s @ 1..=3600 => Duration::from_secs(s as u64),
            s => {
                return Err(invalid(format!(
                    "keepalive_seconds must be 1..=3600, got {s}"
                )));
            }
        };
        let idle_ttl = match init.idle_ttl_seconds {
            0 => DEFAULT_IDLE_TTL,
            s @ 1..=86_400 => Duration::from_secs(s as u64),
            s => {
                return Err(invalid(format!(
                    "idle_ttl_seconds must be 1..=86400, got {s}"
                )));
            }
        };
        let t = init.timeouts.unwrap_or_default();
        let conn = init
            .connection
            .clone()
            .ok_or_else(|| invalid("init.connection is required".into()))?;
        let device = Self::device_for(&init, &conn)?;
        Ok(WorkerOptions {
            mode,
            device,
            prompt_timeout: ms("timeouts.prompt_ms", t.prompt_ms, DEFAULT_PROMPT_TIMEOUT)?,
            command_timeout: ms("timeouts.command_ms", t.command_ms, DEFAULT_COMMAND_TIMEOUT)?,
            keepalive,
            idle_ttl,
            connect_on_start: init.connect_on_start,
            worker_id: init.worker_id.clone(),
            init,
        })
    }

    /// The device a job's own `connection` names, under this worker's policy and timeouts.
    pub fn device_for_job(&self, conn: &wire::Connection) -> Result<DeviceTarget, SessionError> {
        Self::device_for(&self.init, conn)
    }

    fn device_for(init: &wire::Init, c: &wire::Connection) -> Result<DeviceTarget, SessionError> {
        // The same rule as at the manager and the agent: host, port, user, password or key.
        let (device, jump) =
            netpulse_model::Connection::check(c).map_err(|e| invalid(e.to_string()))?;
        let mut platform = platform::lookup(&c.device_type)?;
        if !c.prompt_pattern.is_empty() {
            platform = platform.with_prompt(&c.prompt_pattern)?;
        }
        let known_hosts = || -> Result<PathBuf, SessionError> {
            if init.known_hosts_path.is_empty() {
                return Err(invalid(
                    "known_hosts_path is required unless host_key_policy is INSECURE_ACCEPT_ANY"
                        .into(),
                ));
            }
            Ok(PathBuf::from(&init.known_hosts_path))
        };
        let host_key_policy = match init.host_key_policy() {
            WirePolicy::Unspecified | WirePolicy::AcceptNew => {
                HostKeyPolicy::AcceptNew(known_hosts()?)
            }
            WirePolicy::Strict => HostKeyPolicy::Strict(known_hosts()?),
            WirePolicy::InsecureAcceptAny => HostKeyPolicy::InsecureAcceptAny,
        };
        let t = init.timeouts.unwrap_or_default();
        let ka = init.ssh_keepalive.unwrap_or_default();
        let target = Target {
            host: device.host().to_string(),
            port: device.port(),
            username: c.username.clone(),
            password: c.password.clone(),
            private_key_pem: c.private_key_pem.clone(),
            private_key_passphrase: c.private_key_passphrase.clone(),
            host_key_policy,
            connect_timeout: ms("timeouts.connect_ms", t.connect_ms, DEFAULT_CONNECT_TIMEOUT)?,
            auth_timeout: ms("timeouts.auth_ms", t.auth_ms, DEFAULT_AUTH_TIMEOUT)?,
            ssh_keepalive_interval: ms(
                "ssh_keepalive.interval_ms",
                ka.interval_ms,
                DEFAULT_SSH_KEEPALIVE,
            )?,
            legacy_algorithms: c.legacy_algorithms,
            ssh_keepalive_max: if ka.max_missed == 0 {
                DEFAULT_SSH_KEEPALIVE_MAX
            } else {
                ka.max_missed as usize
            },
            jump: None,
        };
        // The jump host: its own login, the device's policy and timeouts, modern algorithms.
        let jump = match (jump, &c.jump_host) {
            (Some(addr), Some(j)) => Some(Box::new(Target {
                host: addr.host().to_string(),
                port: addr.port(),
                username: j.username.clone(),
                password: j.password.clone(),
                private_key_pem: j.private_key_pem.clone(),
                private_key_passphrase: j.private_key_passphrase.clone(),
                legacy_algorithms: false,
                ..target.clone()
            })),
            _ => None,
        };
        Ok(DeviceTarget {
            target: Target { jump, ..target },
            platform,
            secret: c.secret.clone(),
        })
    }

    pub fn job_spec(&self, job: &wire::Job) -> Result<JobSpec, SessionError> {
        let operation = match &job.operation {
            Some(wire::job::Operation::Commands(c)) if c.specs.is_empty() => {
                Operation::Commands(c.commands.clone())
            }
            Some(wire::job::Operation::Commands(c)) => Operation::Steps(
                c.specs
                    .iter()
                    .enumerate()
                    .map(|(i, s)| command_line(i, s))
                    .collect::<Result<_, _>>()?,
            ),
            Some(wire::job::Operation::Config(c)) => Operation::Config {
                lines: c.lines.clone(),
                save: c.save,
            },
            Some(wire::job::Operation::Probe(_)) => Operation::Probe,
            Some(wire::job::Operation::ConfirmCommit(_)) => Operation::ConfirmCommit,
            Some(wire::job::Operation::Transfer(t)) => Operation::Transfer(transfer_spec(t)?),
            None => return Err(invalid("job needs commands or config".into())),
        };
        Ok(JobSpec {
            operation,
            enable: job.enable_mode,
            command_timeout: ms(
                "command_timeout_ms",
                job.command_timeout_ms,
                self.command_timeout,
            )?,
            mode: (!job.mode.is_empty()).then(|| job.mode.clone()),
            backup: job.backup,
            dry_run: job.dry_run,
            confirm_within: (job.confirm_within_seconds > 0)
                .then(|| Duration::from_secs(job.confirm_within_seconds.into())),
            stream_output: job.stream_output,
            updates: crate::updates::Updates::default(),
        })
    }
}

fn transfer_spec(t: &wire::Transfer) -> Result<crate::transfer::TransferSpec, SessionError> {
    use crate::platform::transfer::Protocol;
    use netpulse_proto::api::{Overwrite, TransferDirection, TransferProtocol};
    let put = match t.direction() {
        TransferDirection::Put => true,
        TransferDirection::Get => false,
        TransferDirection::Unspecified => {
            return Err(invalid("transfer.direction must be PUT or GET".into()));
        }
    };
    let local = std::path::PathBuf::from(&t.local_path);
    if !local.is_absolute() {
        return Err(invalid(format!(
            "transfer.local_path must be an absolute path on the node, got {:?}",
            t.local_path
        )));
    }
    Ok(crate::transfer::TransferSpec {
        put,
        protocol: match t.protocol() {
            TransferProtocol::Unspecified => None,
            TransferProtocol::Scp => Some(Protocol::Scp),
            TransferProtocol::Sftp => Some(Protocol::Sftp),
        },
        remote: t.remote_path.clone(),
        local,
        overwrite: match t.overwrite() {
            Overwrite::Unspecified => Overwrite::IfDifferent,
            o => o,
        },
        resume: t.resume,
        max_bytes: t.max_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() -> wire::Init {
        wire::Init {
            connection: Some(wire::Connection {
                host: "127.0.0.1".into(),
                port: 2222,
                username: "u".into(),
                password: "p".into(),
                device_type: "cisco_xe".into(),
                ..Default::default()
            }),
            host_key_policy: WirePolicy::InsecureAcceptAny as i32,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_apply_and_ranges_are_enforced() {
        let o = WorkerOptions::from_init(init()).unwrap();
        assert_eq!(
            (o.keepalive, o.idle_ttl, o.mode),
            (DEFAULT_KEEPALIVE, DEFAULT_IDLE_TTL, Mode::Pinned)
        );
        assert_eq!(o.device.platform.name, "cisco_xe");

        let mut i = init();
        i.keepalive_seconds = 3601;
        let e = WorkerOptions::from_init(i).unwrap_err().to_string();
        assert_eq!(e, "keepalive_seconds must be 1..=3600, got 3601");

        let mut i = init();
        i.host_key_policy = WirePolicy::Strict as i32;
        assert!(
            WorkerOptions::from_init(i)
                .unwrap_err()
                .to_string()
                .contains("known_hosts_path")
        );

        let mut i = init();
        i.connection.as_mut().unwrap().port = 70000;
        assert!(
            WorkerOptions::from_init(i)
                .unwrap_err()
                .to_string()
                .contains("1..=65535")
        );

        let mut i = init();
        i.connection.as_mut().unwrap().device_type = "ios".into();
        assert!(matches!(
            WorkerOptions::from_init(i),
            Err(SessionError::UnknownDeviceType { .. })
        ));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut i = init();
        i.connection.as_mut().unwrap().password = "hunter2".into();
        i.connection.as_mut().unwrap().secret = "en-secret".into();
        let o = WorkerOptions::from_init(i).unwrap();
        let dbg = format!("{o:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("en-secret"),
            "{dbg}"
        );
    }
}
