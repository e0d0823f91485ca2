//! Starting a worker process and the pieces every owner of one needs: the init frame, the
//! results the agent writes when a worker cannot, stderr forwarding and reaping.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netpulse_model::AgentJob;
use netpulse_proto::frame::FrameError;
use netpulse_proto::worker::{self as wire, ErrorKind, HostKeyPolicy, WorkerMode};
use pinned_worker::child::{ChildEvent, WorkerChild};
use tracing::warn;

/// Added to a job's execution timeout before the agent kills its worker, so the worker's own
/// timeouts fire first when they can.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(2);
/// After a worker exited, how long its pipe may stay silent before the remaining frames count
/// as read (they were written before the exit, so they are already there).
pub const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// What every worker of this agent is started with.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub bin: PathBuf,
    pub log_filter: String,
    /// Workers log JSON lines (else the human format), like the agent.
    pub log_json: bool,
    pub host_key_policy: HostKeyPolicy,
    pub known_hosts: PathBuf,
    /// Between SIGTERM and SIGKILL, and for a worker to exit after its stdout closed.
    pub kill_grace: Duration,
    /// The operator's platform definitions, passed on to every worker.
    pub platforms_dir: Option<PathBuf>,
    /// Where workers find templates to parse outputs with.
    pub ntc_templates_dir: Option<PathBuf>,
    pub templates_dir: Option<PathBuf>,
    /// Resolves jobs' credential references before their workers see them.
    pub credentials: std::sync::Arc<crate::credentials::Credentials>,
    /// Files for transfer jobs (see `staging`).
    pub staging: std::sync::Arc<crate::staging::Staging>,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A worker process as its owner sees it: the real one wraps [`WorkerChild`]; unit tests use a
/// scripted fake, so supervision logic runs without processes.
pub trait WorkerProc: Send {
    fn pid(&self) -> Option<u32>;
    fn send<'a>(&'a mut self, f: &'a wire::ParentFrame) -> BoxFuture<'a, Result<(), FrameError>>;
    /// The frames in one write (the worker wakes once for all of them).
    fn send_all<'a>(
        &'a mut self,
        frames: &'a [wire::ParentFrame],
    ) -> BoxFuture<'a, Result<(), FrameError>>;
    /// A frame, end of stdout, bad output, or exit; cancel-safe.
    fn next_event(&mut self) -> BoxFuture<'_, ChildEvent>;
    /// Frames already written, after the process exited.
    fn drain(&mut self, quiet: Duration) -> BoxFuture<'_, Vec<wire::WorkerFrame>>;
    fn close_stdin(&mut self);
    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<ExitStatus>>;
    /// SIGKILL, without waiting.
    fn kill(&mut self);
    /// SIGTERM, without waiting.
    fn terminate(&mut self);
}

pub trait Spawner: Send + Sync {
    fn spawn(&self, worker_id: &str, device: &str) -> std::io::Result<Box<dyn WorkerProc>>;
}

impl WorkerProc for WorkerChild {
    fn pid(&self) -> Option<u32> {
        WorkerChild::pid(self)
    }
    fn send<'a>(&'a mut self, f: &'a wire::ParentFrame) -> BoxFuture<'a, Result<(), FrameError>> {
        Box::pin(WorkerChild::send(self, f))
    }
    fn send_all<'a>(
        &'a mut self,
        frames: &'a [wire::ParentFrame],
    ) -> BoxFuture<'a, Result<(), FrameError>> {
        Box::pin(WorkerChild::send_all(self, frames))
    }
    fn next_event(&mut self) -> BoxFuture<'_, ChildEvent> {
        Box::pin(WorkerChild::next_event(self))
    }
    fn drain(&mut self, quiet: Duration) -> BoxFuture<'_, Vec<wire::WorkerFrame>> {
        Box::pin(WorkerChild::drain(self, quiet))
    }
    fn close_stdin(&mut self) {
        WorkerChild::close_stdin(self)
    }
    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<ExitStatus>> {
        Box::pin(WorkerChild::wait(self))
    }
    fn kill(&mut self) {
        let _ = self.start_kill();
    }
    fn terminate(&mut self) {
        if let Some(pid) = WorkerChild::pid(self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Starts real `pinned-worker` processes.
pub struct ProcessSpawner {
    pub settings: WorkerSettings,
}

impl Spawner for ProcessSpawner {
    fn spawn(&self, worker_id: &str, device: &str) -> std::io::Result<Box<dyn WorkerProc>> {
        Ok(Box::new(spawn(&self.settings, worker_id, device)?))
    }
}

fn spawn(settings: &WorkerSettings, worker_id: &str, device: &str) -> std::io::Result<WorkerChild> {
    let dirs = [
        ("--platforms-dir", &settings.platforms_dir),
        ("--ntc-templates-dir", &settings.ntc_templates_dir),
        ("--templates-dir", &settings.templates_dir),
    ]
    .map(|(flag, d)| (flag, d.as_ref().map(|d| d.display().to_string())));
    let mut args = vec![
        "--log-format",
        if settings.log_json { "json" } else { "pretty" },
        "--log",
        settings.log_filter.as_str(),
        "--worker-id",
        worker_id,
        "--device",
        device,
    ];
    for (flag, dir) in &dirs {
        if let Some(dir) = dir {
            args.extend([*flag, dir.as_str()]);
        }
    }
    // Workers write their logs, each line naming the worker, to the agent's own stderr: a
    // pipe per worker would cost the agent a descriptor and a task per worker.
    WorkerChild::spawn(&settings.bin, &args, &[], Stdio::inherit())
}

pub fn init_frame(
    s: &WorkerSettings,
    d: &AgentJob,
    mode: WorkerMode,
    worker_id: &str,
) -> wire::ParentFrame {
    wire::ParentFrame {
        frame: Some(wire::parent_frame::Frame::Init(wire::Init {
            mode: mode as i32,
            connection: Some((&d.connection).into()),
            timeouts: Some(wire::Timeouts {
                connect_ms: d.connect_timeout.as_millis() as u32,
                ..Default::default()
            }),
            host_key_policy: s.host_key_policy as i32,
            known_hosts_path: s.known_hosts.display().to_string(),
            keepalive_seconds: d.keepalive_seconds,
            idle_ttl_seconds: d.idle_ttl_seconds,
            connect_on_start: false,
            worker_id: worker_id.to_string(),
            ..Default::default()
        })),
    }
}

/// The job as the worker gets it; it names its connection, so a pinned worker reconnects when
/// the arguments change.
pub fn job_frame(d: &AgentJob) -> wire::ParentFrame {
    wire::ParentFrame {
        frame: Some(wire::parent_frame::Frame::Job(d.frame.clone())),
    }
}

pub fn cancel_frame(job_id: String, queued_only: bool) -> wire::ParentFrame {
    wire::ParentFrame {
        frame: Some(wire::parent_frame::Frame::Cancel(wire::Cancel {
            job_id,
            queued_only,
        })),
    }
}

/// A result for a job whose worker could not produce one.
pub fn failed(
    job_id: &str,
    kind: ErrorKind,
    message: String,
    not_started: bool,
) -> wire::JobResult {
    wire::JobResult {
        job_id: job_id.to_string(),
        error: Some(wire::Error {
            kind: kind as i32,
            message,
        }),
        not_started,
        ..Default::default()
    }
}

/// The end of a job that never started here and may run elsewhere.
pub fn handed_back(job_id: &str, reason: &str) -> wire::JobResult {
    failed(job_id, ErrorKind::NodeUnavailable, reason.to_string(), true)
}

/// Sleeps until `at`, or forever when there is no deadline (a `select!` branch that is off).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub fn describe(status: &ExitStatus) -> (i32, String) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => (c, format!("exit code {c}")),
        (None, Some(sig)) => (128 + sig, format!("killed by signal {sig}")),
        _ => (-1, "unknown exit status".into()),
    }
}

/// Reaps a worker whose stdout has closed; kills it if it does not exit within the grace.
pub async fn reap(child: &mut dyn WorkerProc, grace: Duration) -> (i32, String) {
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(r) => r,
        Err(_) => {
            warn!("worker closed its stdout but did not exit; killing it");
            child.kill();
            child.wait().await
        }
    };
    match status {
        Ok(s) => describe(&s),
        Err(e) => (-1, format!("waiting for the worker failed: {e}")),
    }
}
