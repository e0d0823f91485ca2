//! One pinned device: its job queue and its worker process, owned by one task.
//!
//! The task keeps the queue in arrival order and sends the worker a few jobs ahead
//! ([`PIPELINE_DEPTH`]), refilling only when it runs low so the worker wakes once for several
//! jobs; the worker runs them in order, so the first unanswered job is the running one and the
//! ones behind it have not started. It reads
//! the worker's frames until its stdout closes, then reaps it (the worker closes stdout only by
//! exiting), so every frame the worker wrote before dying is seen and no child is left
//! unreaped. A job that was running when its worker died fails with the exit code and the last
//! health report; it is never re-run. When jobs are waiting, a new worker is started, after a
//! back-off if workers keep dying without doing any work.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use netpulse_model::AgentJob;
use netpulse_proto::agent::{
    JobStarted, Strategy, WorkerEvent, WorkerInfo, WorkerState, agent_message::Msg,
};
use netpulse_proto::worker::{self as wire, ErrorKind, WorkerMode, worker_frame::Frame as Out};
use pinned_worker::child::ChildEvent;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::ctx::Ctx;
use crate::places::{Places, Taken};
use crate::process::{self, TIMEOUT_MARGIN, unix_ms};
use crate::supervise::{Ended, Step, Supervised};

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Jobs handed to a worker at most (the running one included).
pub const PIPELINE_DEPTH: usize = 4;
/// More jobs are sent only when at most this many are unanswered: one pipe write (one wake of
/// the worker) per few jobs instead of one per job.
const REFILL_AT: usize = 1;

pub enum DeviceCmd {
    /// Boxed: a channel's slots are as large as its largest command, and every device has one.
    Enqueue(Box<AgentJob>),
    /// Replies whether the job was found (queued or running).
    Cancel(String, oneshot::Sender<bool>),
    Kill(String),
    /// Hand back every job that has not started (the node was fenced): they may run elsewhere.
    DropQueued(String),
    /// Give the place up (a full node needs it for another device), if still idle.
    Retire(String),
}

/// A job handed to the worker: running if first in [`Live::sent`], not started otherwise.
struct Sent {
    /// Kept so a job the worker hands back unstarted can be queued again.
    job: AgentJob,
    /// Set when it starts (becomes first).
    deadline: Option<Instant>,
    timed_out: bool,
    /// Taken back (the node was fenced): if the worker answers "not started", it is handed
    /// back with this reason.
    withdrawn: Option<String>,
}

struct Live {
    w: Supervised,
    /// A place among the logins in progress (`Ctx::logins`), until the first login is over.
    login: Option<OwnedSemaphorePermit>,
    /// Its place among the node's pinned workers (`Ctx::pinned_slots`), until it is reaped.
    _slot: OwnedSemaphorePermit,
    connected: bool,
    did_work: bool,
    /// In the order sent; the first is running.
    sent: VecDeque<Sent>,
    /// Jobs handed back unstarted by this (exiting) worker, requeued in their order.
    handed_back: usize,
    last_health: Option<wire::Health>,
    exit_reason: Option<String>,
}

pub struct DeviceActor {
    key: String,
    ctx: Arc<Ctx>,
    rx: mpsc::Receiver<DeviceCmd>,
    queue: VecDeque<AgentJob>,
    live: Option<Live>,
    crash_streak: u32,
    backoff_until: Option<Instant>,
    /// A pinned place and a login place, taken in that order before a worker is started.
    places: Places,
}

impl DeviceActor {
    pub fn new(key: String, ctx: Arc<Ctx>, rx: mpsc::Receiver<DeviceCmd>) -> Self {
        ctx.table.update(&key, |w| {
            w.device = key.clone();
            w.strategy = Strategy::Pinned as i32;
            w.state = WorkerState::Exited as i32;
        });
        DeviceActor {
            key,
            ctx,
            rx,
            queue: VecDeque::new(),
            live: None,
            crash_streak: 0,
            backoff_until: None,
            places: Places::default(),
        }
    }

    pub async fn run(mut self) {
        loop {
            // Back-pressure (`EventBus::room`) before each step that publishes events.
            self.ctx.events.room().await;
            self.start_work().await;
            let job_deadline = self.live.as_ref().and_then(|l| {
                l.sent
                    .front()
                    .filter(|r| !r.timed_out)
                    .and_then(|r| r.deadline)
            });
            let kill_at = self.live.as_ref().and_then(|l| l.w.kill_at());
            let backoff = self
                .backoff_until
                .filter(|_| self.live.is_none() && !self.queue.is_empty());
            let wants_worker = self.wants_worker();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => {
                        self.on_cmd(cmd).await;
                        // A burst is taken whole, so its jobs reach the worker in one write.
                        while let Ok(cmd) = self.rx.try_recv() {
                            self.on_cmd(cmd).await;
                        }
                    }
                    None => break,
                },
                ev = next_event(&mut self.live) => {
                    self.ctx.events.room().await;
                    self.on_event(ev).await
                }
                _ = process::sleep_until(job_deadline) => self.on_timeout(),
                _ = process::sleep_until(kill_at) => {
                    if let Some(l) = self.live.as_mut() {
                        l.w.escalate();
                    }
                }
                _ = process::sleep_until(backoff) => self.backoff_until = None,
                _ = self.places.wait(&self.ctx, &self.key), if wants_worker => {}
            }
        }
        // The agent dropped us (shutdown): close the worker's stdin so it exits, publish the
        // results still on the way, then reap it.
        if let Some(mut l) = self.live.take() {
            let ctx = self.ctx.clone();
            let id = l.w.id.clone();
            let end =
                l.w.close(self.ctx.workers.kill_grace, |f| {
                    if let Some(Out::Result(r)) = f.frame {
                        ctx.finish(&id, r);
                    }
                })
                .await;
            info!(device = %self.key, worker_id = %id, how = %end.how, "worker stopped");
            self.set_exited(end.code, "agent shutting down".into());
            l.w.count_exit(&self.ctx, end.code);
        }
        self.ctx.table.remove(&self.key);
    }

    fn publish_row(&self, edit: impl FnOnce(&mut WorkerInfo)) {
        let row = self.update_row(edit);
        self.ctx
            .events
            .publish(Msg::Worker(WorkerEvent { worker: Some(row) }));
    }

    /// Changes the row without an event: a job's start and end are events of their own, so a
    /// worker turning busy or ready is only in the table (one event less per job each way).
    fn update_row(&self, edit: impl FnOnce(&mut WorkerInfo)) -> WorkerInfo {
        let queued = self.waiting() as u32;
        self.ctx.table.update(&self.key, |w| {
            edit(w);
            w.queued_jobs = queued;
        })
    }

    fn wants_worker(&self) -> bool {
        self.live.is_none() && !self.queue.is_empty() && self.backoff_until.is_none()
    }

    /// Both places (pinned, login) when a worker is wanted and both are free; else `run` waits.
    fn take_places(&mut self) -> Option<Taken> {
        if !self.wants_worker() {
            // Nothing to start (any more): the places go back for other devices.
            self.places.release();
            return None;
        }
        self.places.try_take(&self.ctx, &self.key)
    }

    async fn start_work(&mut self) {
        if let Some(Taken { slot, login }) = self.take_places() {
            let first = self.queue.front().expect("non-empty");
            match Supervised::start(&self.ctx, &self.key, WorkerMode::Pinned, first).await {
                Ok(w) => {
                    info!(device = %self.key, worker_id = %w.id, pid = w.pid, "worker spawned");
                    let (id, pid) = (w.id.clone(), w.pid);
                    self.live = Some(Live {
                        w,
                        login: Some(login),
                        _slot: slot,
                        connected: false,
                        did_work: false,
                        sent: VecDeque::new(),
                        handed_back: 0,
                        last_health: None,
                        exit_reason: None,
                    });
                    self.publish_row(|w| {
                        w.worker_id = id;
                        w.pid = pid;
                        w.state = WorkerState::Connecting as i32;
                        w.spawned_unix_ms = unix_ms();
                        w.connected_unix_ms = 0;
                        w.jobs_done = 0;
                        w.session_reuses = 0;
                    });
                }
                Err(e) => {
                    // Nothing can run here; fail the queue rather than spin.
                    warn!(device = %self.key, error = %e, "cannot start a worker");
                    for d in std::mem::take(&mut self.queue) {
                        let r = process::failed(
                            &d.id,
                            ErrorKind::Internal,
                            format!("cannot start a worker: {e}"),
                            true,
                        );
                        self.ctx.finish("", r);
                    }
                }
            }
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if live.sent.len() > REFILL_AT
            || self.queue.is_empty()
            || live.w.kill_at().is_some()
            || live.exit_reason.is_some()
        {
            return;
        }
        let n = (PIPELINE_DEPTH - live.sent.len()).min(self.queue.len());
        let batch: Vec<AgentJob> = self.queue.drain(..n).collect();
        let frames: Vec<_> = batch.iter().map(process::job_frame).collect();
        if let Err(e) = live.w.child.send_all(&frames).await {
            // The worker is going away; its exit path will start another for these jobs.
            warn!(device = %self.key, error = %e, "could not hand jobs to the worker");
            for d in batch.into_iter().rev() {
                self.queue.push_front(d);
            }
            return;
        }
        let was_idle = live.sent.is_empty();
        live.sent.extend(batch.into_iter().map(|d| Sent {
            job: d,
            deadline: None,
            timed_out: false,
            withdrawn: None,
        }));
        if was_idle {
            self.front_started();
        } else {
            self.update_row(|_| {});
        }
    }

    /// The first sent job has started: its deadline runs from now, and managers hear of it.
    fn front_started(&mut self) {
        let Some(l) = self.live.as_mut() else { return };
        let Some(front) = l.sent.front_mut() else {
            self.update_row(|w| w.state = WorkerState::Ready as i32);
            return;
        };
        front.deadline = Some(Instant::now() + front.job.timeout + TIMEOUT_MARGIN);
        let started = JobStarted {
            job_id: front.job.id.clone(),
            worker_id: l.w.id.clone(),
        };
        self.ctx.events.publish(Msg::Started(started));
        self.update_row(|w| w.state = WorkerState::Busy as i32);
    }

    /// Jobs waiting here and ahead in the worker's pipe (the running one is not waiting).
    fn waiting(&self) -> usize {
        self.queue.len()
            + self
                .live
                .as_ref()
                .map_or(0, |l| l.sent.len().saturating_sub(1))
    }

    async fn on_cmd(&mut self, cmd: DeviceCmd) {
        match cmd {
            // Resolved here, in arrival order, so the device's jobs keep their order.
            DeviceCmd::Enqueue(d) => match self.ctx.with_credentials(*d).await {
                Some(d) => self.queue.push_back(d), // the agent counted it
                None => {
                    self.ctx.table.update(&self.key, |w| {
                        w.queued_jobs = w.queued_jobs.saturating_sub(1)
                    });
                }
            },
            DeviceCmd::Cancel(job_id, reply) => {
                if let Some(i) = self.queue.iter().position(|d| d.id == job_id) {
                    self.queue.remove(i);
                    self.ctx.table.update(&self.key, |w| {
                        w.queued_jobs = w.queued_jobs.saturating_sub(1)
                    });
                    let r = process::failed(
                        &job_id,
                        ErrorKind::Canceled,
                        "canceled while queued".into(),
                        true,
                    );
                    self.ctx.finish("", r);
                    let _ = reply.send(true);
                } else if let Some(l) = self
                    .live
                    .as_mut()
                    .filter(|l| l.sent.iter().any(|r| r.job.id == job_id))
                {
                    // Running: interrupted. Sent ahead: the worker drops it and answers
                    // "canceled, not started".
                    let _ = l.w.child.send(&process::cancel_frame(job_id, false)).await;
                    let _ = reply.send(true);
                } else {
                    let _ = reply.send(false);
                }
            }
            DeviceCmd::DropQueued(reason) => {
                for d in std::mem::take(&mut self.queue) {
                    self.ctx.finish("", process::handed_back(&d.id, &reason));
                }
                // Jobs sent ahead are taken back unless the worker has started them meanwhile;
                // its answer says which (see `on_frame`).
                if let Some(l) = self.live.as_mut() {
                    for r in l.sent.iter_mut().skip(1) {
                        r.withdrawn = Some(reason.clone());
                        let _ =
                            l.w.child
                                .send(&process::cancel_frame(r.job.id.clone(), true))
                                .await;
                    }
                }
                self.publish_row(|_| {});
            }
            DeviceCmd::Retire(reason) => match self.live.as_mut() {
                Some(l)
                    if l.sent.is_empty() && self.queue.is_empty() && l.exit_reason.is_none() =>
                {
                    info!(device = %self.key, worker_id = %l.w.id, %reason, "retiring an idle worker");
                    l.w.retire(self.ctx.workers.kill_grace);
                    l.exit_reason = Some(reason);
                    self.publish_row(|w| w.state = WorkerState::Exiting as i32);
                }
                // Work came meanwhile, or it is gone already: the row says what it is again.
                l => {
                    let state = match l {
                        Some(l) if l.exit_reason.is_some() => WorkerState::Exiting,
                        Some(l) if !l.sent.is_empty() => WorkerState::Busy,
                        Some(_) => WorkerState::Ready,
                        None => WorkerState::Exited,
                    } as i32;
                    self.update_row(|w| w.state = state);
                }
            },
            DeviceCmd::Kill(reason) => {
                if let Some(l) = self.live.as_mut() {
                    info!(device = %self.key, worker_id = %l.w.id, %reason, "stopping worker");
                    l.w.terminate(self.ctx.workers.kill_grace);
                    l.exit_reason = Some(reason);
                    self.publish_row(|w| w.state = WorkerState::Exiting as i32);
                }
            }
        }
    }

    fn on_timeout(&mut self) {
        let Some(l) = self.live.as_mut() else { return };
        let Some(r) = l.sent.front_mut() else { return };
        warn!(device = %self.key, worker_id = %l.w.id, job_id = %r.job.id, "job exceeded its execution timeout; killing the worker");
        r.timed_out = true;
        l.w.child.kill();
    }

    async fn on_event(&mut self, ev: ChildEvent) {
        let l = self
            .live
            .as_mut()
            .expect("an event came from a live worker");
        match l.w.step(ev, self.ctx.workers.kill_grace).await {
            Step::Frame(f) => self.on_frame(f.frame),
            Step::Ended(mut end) => {
                if let Some(e) = &end.bad_frame {
                    warn!(device = %self.key, worker_id = %l.w.id, error = %e, "worker wrote a bad frame; it was killed");
                    l.exit_reason
                        .get_or_insert_with(|| format!("bad frame from the worker: {e}"));
                }
                for f in std::mem::take(&mut end.frames) {
                    self.on_frame(f.frame);
                }
                self.on_exit(end);
            }
        }
    }

    fn on_frame(&mut self, frame: Option<Out>) {
        let l = self.live.as_mut().expect("a frame came from a live worker");
        match frame {
            Some(Out::Update(u)) => self.ctx.events.publish_lossy(Msg::Update(u)),
            Some(Out::Connected(c)) => {
                self.ctx.metrics.connected("pinned", c.connect_us);
                l.connected = true;
                l.login = None;
                let state = if !l.sent.is_empty() {
                    WorkerState::Busy
                } else {
                    WorkerState::Ready
                };
                self.publish_row(|w| {
                    w.state = state as i32;
                    w.connected_unix_ms = unix_ms();
                    w.last_job_unix_ms = w.connected_unix_ms;
                });
            }
            Some(Out::Result(r)) => {
                // Connected or not, the first login is over.
                l.login = None;
                let id = l.w.id.clone();
                let Some(i) = l.sent.iter().position(|x| x.job.id == r.job_id) else {
                    // Not one this worker holds (already settled): published as it is.
                    self.ctx.finish(&id, r);
                    return;
                };
                let sent = l.sent.remove(i).expect("found");
                let canceled = r
                    .error
                    .as_ref()
                    .is_some_and(|e| e.kind() == ErrorKind::Canceled);
                if r.not_started && !canceled {
                    // The worker is exiting (idle TTL, session lost) and hands back the jobs it
                    // never touched: they go back to the head of the queue, in their order, for
                    // the next worker. It is sent nothing more.
                    l.exit_reason
                        .get_or_insert_with(|| "exiting; handed a job back".into());
                    info!(device = %self.key, job_id = %sent.job.id, "worker handed the job back unstarted; queueing it again");
                    match sent.withdrawn {
                        Some(reason) => self
                            .ctx
                            .finish("", process::handed_back(&sent.job.id, &reason)),
                        None => {
                            let at = l.handed_back.min(self.queue.len());
                            l.handed_back += 1;
                            self.queue.insert(at, sent.job);
                        }
                    }
                    return;
                }
                let first = i == 0;
                if first {
                    l.did_work = true;
                }
                let reused = r.session_reused;
                match sent.withdrawn {
                    // Taken back before it started: it may run elsewhere.
                    Some(reason) if r.not_started => self
                        .ctx
                        .finish("", process::handed_back(&sent.job.id, &reason)),
                    _ => self.ctx.finish(&id, r),
                }
                self.update_row(|w| {
                    if first {
                        w.jobs_done += 1;
                        w.session_reuses += reused as u64;
                        w.last_job_unix_ms = unix_ms();
                    }
                });
                if first {
                    self.front_started();
                }
            }
            Some(Out::Health(h)) => {
                let state = match (h.ok, !l.sent.is_empty()) {
                    (false, _) => WorkerState::Unhealthy,
                    (true, true) => WorkerState::Busy,
                    (true, false) => WorkerState::Ready,
                };
                l.last_health = Some(h.clone());
                self.ctx.metrics.health(&h);
                self.publish_row(|w| {
                    w.state = state as i32;
                    w.last_keepalive_rtt_us = h.rtt_us;
                    w.last_keepalive_unix_ms = h.last_ok_unix_ms;
                });
            }
            Some(Out::Exiting(e)) => {
                l.exit_reason = Some(e.reason);
                self.publish_row(|w| w.state = WorkerState::Exiting as i32);
            }
            None => warn!(device = %self.key, "worker sent an empty frame"),
        }
    }

    /// The worker is gone and reaped: settle the job it was running and those it held.
    fn on_exit(&mut self, end: Ended) {
        let mut l = self.live.take().expect("live worker");
        let (code, how) = (end.code, end.how);
        let reason = l.exit_reason.clone().unwrap_or_else(|| how.clone());
        info!(device = %self.key, worker_id = %l.w.id, %how, %reason, "worker exited");
        let mut sent = std::mem::take(&mut l.sent);
        // A pinned worker exits 0 on its own only at its idle TTL, which it checks only with no
        // job in hand, and it hands back the jobs it had read: what is left was still unread in
        // its pipe. Otherwise the first job was running; the ones behind it never started.
        let first_unread =
            code == 0 && l.w.kill_at().is_none() && sent.front().is_some_and(|r| !r.timed_out);
        let running = if first_unread { None } else { sent.pop_front() };
        let mut requeued = 0;
        for x in sent {
            match x.withdrawn {
                Some(reason) => self
                    .ctx
                    .finish("", process::handed_back(&x.job.id, &reason)),
                None => {
                    info!(device = %self.key, job_id = %x.job.id, "the worker exited before starting the job; queueing it again");
                    let at = (l.handed_back + requeued).min(self.queue.len());
                    self.queue.insert(at, x.job);
                    requeued += 1;
                }
            }
        }
        if let Some(run) = running {
            let health = match &l.last_health {
                Some(h) if h.ok => format!("last keepalive ok at unix ms {}", h.last_ok_unix_ms),
                Some(h) => format!("last health: unhealthy ({})", h.error),
                None => "no keepalive report yet".into(),
            };
            let r = if run.timed_out {
                process::failed(
                    &run.job.id,
                    ErrorKind::Timeout,
                    "the job exceeded its execution timeout; the worker was killed".into(),
                    false,
                )
            } else {
                process::failed(
                    &run.job.id,
                    ErrorKind::WorkerExited,
                    format!("the worker exited while running the job ({how}; {reason}; {health})"),
                    false,
                )
            };
            self.ctx.finish(&l.w.id, r);
        }
        // Back off when workers die without doing any work (crash loop, unreachable device).
        if l.did_work || l.exit_reason.is_some() && code == 0 {
            self.crash_streak = 0;
        } else {
            self.crash_streak += 1;
            if self.crash_streak > 1 {
                let wait = (Duration::from_millis(250) * 2u32.pow(self.crash_streak.min(8)))
                    .min(MAX_BACKOFF);
                warn!(device = %self.key, streak = self.crash_streak, ?wait, "workers keep exiting without doing work; backing off");
                self.backoff_until = Some(Instant::now() + wait);
            }
        }
        self.set_exited(code, reason);
        l.w.count_exit(&self.ctx, code);
    }

    fn set_exited(&self, code: i32, reason: String) {
        self.publish_row(|w| {
            w.state = WorkerState::Exited as i32;
            w.pid = 0;
            w.last_exit_code = code;
            w.last_exit_reason = reason;
        });
    }
}

async fn next_event(live: &mut Option<Live>) -> ChildEvent {
    match live {
        Some(l) => l.w.next_event().await,
        None => std::future::pending().await,
    }
}
