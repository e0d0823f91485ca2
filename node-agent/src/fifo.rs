//! Fifo jobs: each runs in its own one-shot worker process, at most `max_concurrency` at once;
//! the rest wait in arrival order. Each running job is one task that owns its child, reads its
//! frames until stdout closes, and reaps it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use netpulse_model::AgentJob;
use netpulse_proto::agent::{JobStarted, Strategy, WorkerState, agent_message::Msg};
use netpulse_proto::worker::{ErrorKind, WorkerMode, worker_frame::Frame as Out};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::ctx::Ctx;
use crate::process::{self, DRAIN_QUIET, TIMEOUT_MARGIN, unix_ms};
use pinned_worker::child::ChildEvent;

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
    let id = ctx.next_worker_id();
    let device = d.device.to_string();
    let mut child = match ctx.spawner.spawn(&id, &device) {
        Ok(c) => c,
        Err(e) => {
            ctx.finish(
                &id,
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
    let pid = child.pid().unwrap_or_default();
    let spawned_at = Instant::now();
    ctx.metrics.spawned("fifo");
    ctx.table.update(&id, |w| {
        w.worker_id = id.clone();
        w.device = device.clone();
        w.strategy = Strategy::Fifo as i32;
        w.pid = pid;
        w.state = WorkerState::Busy as i32;
        w.spawned_unix_ms = unix_ms();
    });
    let deadline = Instant::now() + d.timeout + TIMEOUT_MARGIN;
    let sent = async {
        child
            .send(&process::init_frame(
                &ctx.workers,
                &d,
                WorkerMode::Oneshot,
                &id,
            ))
            .await?;
        child.send(&process::job_frame(&d)).await
    }
    .await;
    if let Err(e) = sent {
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
    let status = loop {
        tokio::select! {
            ev = child.next_event() => match ev {
                ChildEvent::Frame(f) => match f.frame {
                    Some(Out::Result(r)) if r.job_id == d.id => result = Some(r),
                    Some(Out::Exiting(e)) => exit_reason = Some(e.reason),
                    Some(Out::Connected(c)) => ctx.metrics.connected("fifo", c.connect_us),
                    _ => {}
                },
                ChildEvent::Closed => break None,
                ChildEvent::Exited(s) => {
                    for f in child.drain(DRAIN_QUIET).await {
                        if let Some(Out::Result(r)) = f.frame.filter(|_| result.is_none()) {
                            result = Some(r);
                        }
                    }
                    break Some(s);
                }
                ChildEvent::Broken(e) => {
                    warn!(worker_id = %id, error = %e, "one-shot worker wrote a bad frame; killing it");
                    exit_reason = Some(format!("bad frame: {e}"));
                    child.kill();
                    break None;
                }
            },
            _ = tokio::time::sleep_until(deadline), if !timed_out => {
                warn!(worker_id = %id, job_id = %d.id, "job exceeded its execution timeout; killing the worker");
                timed_out = true;
                child.kill();
            }
            r = &mut cancel, if cancel_open => {
                cancel_open = false;
                if r.is_ok() {
                    let _ = child.send(&process::cancel_frame(d.id.clone(), false)).await;
                }
            }
        }
    };
    let (code, how) = match status {
        Some(Ok(s)) => process::describe(&s),
        Some(Err(e)) => (-1, format!("waiting for the worker failed: {e}")),
        None => process::reap(child.as_mut(), ctx.workers.kill_grace).await,
    };
    info!(worker_id = %id, %how, "one-shot worker exited");
    ctx.table.remove(&id);
    ctx.metrics.exited("fifo", code, spawned_at.elapsed());
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
