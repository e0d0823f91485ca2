//! Fifo jobs: each runs in its own one-shot worker process, at most `max_concurrency` at once;
//! the rest wait in arrival order. Each running job is one task that owns its child, reads its
//! frames until stdout closes, and reaps it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

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

async fn run_one(ctx: Arc<Ctx>, d: AgentJob, mut cancel: oneshot::Receiver<()>) -> String {
    let device = d.device.to_string();
    // A one-shot worker logs in too: it takes its turn and a place like a pinned one.
    let login = tokio::select! {
        p = async {
            let p = ctx.logins.in_progress.clone().acquire_owned().await;
            ctx.logins.turn(d.device.host()).await;
            p
        } => p.ok(),
        _ = &mut cancel => {
            ctx.finish("", process::failed(&d.id, ErrorKind::Canceled, "canceled before it started".into(), true));
            return d.id;
        }
    };
    let mut login = login;
    let mut w = match Supervised::start(&ctx, &device, WorkerMode::Oneshot, &d).await {
        Ok(w) => w,
        Err(e) => {
            ctx.finish(
                "",
                process::failed(
                    &d.id,
                    ErrorKind::Internal,
                    format!("cannot start a worker: {e}"),
                    true,
                ),
            );
            return d.id;
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
    if let Err(e) = w.child.send(&process::job_frame(&d)).await {
        warn!(worker_id = %id, error = %e, "could not hand the job to a one-shot worker");
    }
    ctx.events.publish(Msg::Started(JobStarted {
        job_id: d.id.clone(),
        worker_id: id.clone(),
    }));
    let mut result = None;
    let mut timed_out = false;
    let mut exit_reason = None;
    let mut cancel_open = true;
    let mut on_frame = |f: Option<Out>, result: &mut Option<wire::JobResult>| match f {
        Some(Out::Result(r)) if r.job_id == d.id && result.is_none() => *result = Some(r),
        Some(Out::Exiting(e)) => exit_reason = Some(e.reason),
        Some(Out::Connected(c)) => {
            login = None;
            ctx.metrics.connected("fifo", c.connect_us);
        }
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
            r = &mut cancel, if cancel_open => {
                cancel_open = false;
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
    w.count_exit(&ctx, code);
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
    ctx.finish(&id, r);
    d.id
}
