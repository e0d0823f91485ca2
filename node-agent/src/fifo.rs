//! Fifo jobs: each runs in its own one-shot worker process, at most `max_concurrency` at once;
//! the rest wait in arrival order. Each running job is one task that owns its child, reads its
//! frames until stdout closes, and reaps it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use netpulse_model::AgentJob;
use netpulse_proto::agent::{JobStarted, Strategy, WorkerState, agent_message::Msg};
use netpulse_proto::worker::{self as wire, ErrorKind, WorkerMode, worker_frame::Frame as Out};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::ctx::Ctx;
use crate::process::{self, TIMEOUT_MARGIN, unix_ms};
use crate::supervise::{Step, Supervised};

pub enum FifoCmd {
    Enqueue(AgentJob),
    Cancel(String, oneshot::Sender<bool>),
    /// Hand back every job that has not started (the node was fenced).
    DropQueued(String),
}

pub async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<FifoCmd>, max_concurrency: usize) {
    let mut queue: VecDeque<AgentJob> = VecDeque::new();
    let mut running: JoinSet<String> = JoinSet::new();
    let mut cancels: HashMap<String, oneshot::Sender<()>> = HashMap::new();
    loop {
        while running.len() < max_concurrency
            && let Some(d) = queue.pop_front()
        {
            let (tx, cancel) = oneshot::channel();
            cancels.insert(d.id.clone(), tx);
            running.spawn(run_one(ctx.clone(), d, cancel));
        }
        ctx.fifo_queued
            .store(queue.len(), std::sync::atomic::Ordering::Relaxed);
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(FifoCmd::Enqueue(d)) => queue.push_back(d),
                Some(FifoCmd::Cancel(job_id, reply)) => {
                    if let Some(i) = queue.iter().position(|d| d.id == job_id) {
                        queue.remove(i);
                        ctx.finish("", process::failed(&job_id, ErrorKind::Canceled, "canceled while queued".into(), true));
                        let _ = reply.send(true);
                    } else if let Some(tx) = cancels.remove(&job_id) {
                        let _ = reply.send(tx.send(()).is_ok());
                    } else {
                        let _ = reply.send(false);
                    }
                }
                Some(FifoCmd::DropQueued(reason)) => {
                    for d in std::mem::take(&mut queue) {
                        ctx.finish("", process::failed(&d.id, ErrorKind::NodeUnavailable, reason.clone(), true));
                    }
                }
                None => break,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(job_id) = done {
                    cancels.remove(&job_id);
                }
            }
        }
    }
    // Shutdown: queued jobs go back unstarted; running ones finish (their tasks own the children).
    for d in queue {
        ctx.finish(
            "",
            process::failed(
                &d.id,
                ErrorKind::SessionLost,
                "agent shutting down before the job started".into(),
                true,
            ),
        );
    }
    while running.join_next().await.is_some() {}
}

/// The first wait before a busy device is tried again; it doubles up to [`BUSY_BACKOFF_MAX`].
const BUSY_BACKOFF: Duration = Duration::from_secs(1);
const BUSY_BACKOFF_MAX: Duration = Duration::from_secs(16);

/// Runs one fifo job: a one-shot worker, again after a back-off while the device refuses it as
/// busy and the job's queue timeout allows.
async fn run_one(ctx: Arc<Ctx>, d: AgentJob, mut cancel: oneshot::Receiver<()>) -> String {
    let id = d.id.clone();
    let Some(d) = ctx.with_credentials(d).await else {
        return id;
    };
    let retry_until = Instant::now() + d.busy_retry;
    let mut cancel_open = true;
    let mut backoff = BUSY_BACKOFF;
    let mut attempt = 0u32;
    loop {
        let Some((worker_id, r)) =
            attempt_once(&ctx, &d, &mut cancel, &mut cancel_open, attempt).await
        else {
            return d.id;
        };
        let busy = r
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::DeviceBusy as i32);
        let wait = jittered(backoff, &d.id, attempt);
        if !busy || !cancel_open || Instant::now() + wait >= retry_until {
            ctx.finish(&worker_id, r);
            return d.id;
        }
        info!(job_id = %d.id, device = %d.device, attempt, ?wait, "the device is busy; retrying");
        ctx.metrics.busy_retried();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut cancel => {
                ctx.finish("", process::failed(&d.id, ErrorKind::Canceled, "canceled while waiting to retry a busy device".into(), false));
                return d.id;
            }
        }
        backoff = (backoff * 2).min(BUSY_BACKOFF_MAX);
        attempt += 1;
    }
}

/// Between half and all of `backoff`, spread by job and attempt so that jobs refused together
/// do not come back together.
fn jittered(backoff: Duration, job_id: &str, attempt: u32) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (job_id, attempt).hash(&mut h);
    backoff.mul_f64(0.5 + (h.finish() % 1000) as f64 / 2000.0)
}

/// One one-shot worker for the job: its login turn, the worker, its frames. Returns the worker
/// and the result, or `None` when the job already ended (canceled before it started, or no
/// worker could start).
async fn attempt_once(
    ctx: &Arc<Ctx>,
    d: &AgentJob,
    cancel: &mut oneshot::Receiver<()>,
    cancel_open: &mut bool,
    attempt: u32,
) -> Option<(String, wire::JobResult)> {
    let device = d.device.to_string();
    // A one-shot worker logs in too: it takes its turn and a place like a pinned one.
    let login = tokio::select! {
        p = async {
            let p = ctx.logins.in_progress.clone().acquire_owned().await;
            ctx.logins.turn(d.device.host()).await;
            p
        } => p.ok(),
        _ = &mut *cancel, if *cancel_open => {
            ctx.finish("", process::failed(&d.id, ErrorKind::Canceled, "canceled before it started".into(), attempt == 0));
            return None;
        }
    };
    let mut login = login;
    let mut w = match Supervised::start(ctx, &device, WorkerMode::Oneshot, d).await {
        Ok(w) => w,
        Err(e) => {
            ctx.finish(
                "",
                process::failed(
                    &d.id,
                    ErrorKind::Internal,
                    format!("cannot start a worker: {e}"),
                    attempt == 0,
                ),
            );
            return None;
        }
    };
    let id = w.id.clone();
    ctx.table.update(&id, |row| {
        row.worker_id = id.clone();
        row.device = device.clone();
        row.strategy = Strategy::Fifo as i32;
        row.pid = w.pid;
        row.state = WorkerState::Busy as i32;
        row.spawned_unix_ms = unix_ms();
    });
    let deadline = Instant::now() + d.timeout + TIMEOUT_MARGIN;
    if let Err(e) = w.child.send(&process::job_frame(d)).await {
        warn!(worker_id = %id, error = %e, "could not hand the job to a one-shot worker");
    }
    if attempt == 0 {
        ctx.events.publish(Msg::Started(JobStarted {
            job_id: d.id.clone(),
            worker_id: id.clone(),
        }));
    }
    let mut result = None;
    let mut timed_out = false;
    let mut exit_reason = None;
    let mut on_frame = |f: Option<Out>, result: &mut Option<wire::JobResult>| match f {
        Some(Out::Result(r)) if r.job_id == d.id && result.is_none() => *result = Some(r),
        Some(Out::Exiting(e)) => exit_reason = Some(e.reason),
        Some(Out::Connected(c)) => {
            login = None;
            ctx.metrics.connected("fifo", c.connect_us);
        }
        Some(Out::Update(u)) => ctx.events.publish_lossy(Msg::Update(u)),
        _ => {}
    };
    let end = loop {
        tokio::select! {
            ev = w.next_event() => match w.step(ev, ctx.workers.kill_grace).await {
                Step::Frame(f) => on_frame(f.frame, &mut result),
                Step::Ended(end) => break end,
            },
            _ = tokio::time::sleep_until(deadline), if !timed_out => {
                warn!(worker_id = %id, job_id = %d.id, "job exceeded its execution timeout; killing the worker");
                timed_out = true;
                w.child.kill();
            }
            r = &mut *cancel, if *cancel_open => {
                *cancel_open = false;
                if r.is_ok() {
                    let _ = w.child.send(&process::cancel_frame(d.id.clone(), false)).await;
                }
            }
        }
    };
    for f in end.frames {
        on_frame(f.frame, &mut result);
    }
    if let Some(e) = &end.bad_frame {
        warn!(worker_id = %id, error = %e, "one-shot worker wrote a bad frame; it was killed");
        exit_reason = Some(format!("bad frame: {e}"));
    }
    let (code, how) = (end.code, end.how);
    info!(worker_id = %id, %how, "one-shot worker exited");
    ctx.table.remove(&id);
    w.count_exit(ctx, code);
    let r = match result {
        Some(r) => r,
        None if timed_out => process::failed(
            &d.id,
            ErrorKind::Timeout,
            "the job exceeded its execution timeout; the worker was killed".into(),
            false,
        ),
        None => process::failed(
            &d.id,
            ErrorKind::WorkerExited,
            format!(
                "the worker exited without a result ({how}, code {code}; {})",
                exit_reason.unwrap_or_default()
            ),
            false,
        ),
    };
    Some((id, r))
}
