//! What the agent's core, the device actors and the fifo runner share: the worker settings
//! and spawner, the event bus, the worker table, the jobs in flight and the recent results.
//! It depends on none of them, so they depend on it and not on each other.

use crate::logins::LoginGate;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use netpulse_model::AgentJob;
use netpulse_proto::agent::{JobFinished, agent_message::Msg};
use netpulse_proto::worker as wire;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::EventBus;
use crate::process::{Spawner, WorkerSettings};
use crate::table::WorkerTable;

/// What the actors share.
pub struct Ctx {
    pub node_id: String,
    pub workers: WorkerSettings,
    pub spawner: Arc<dyn Spawner>,
    pub events: EventBus,
    pub table: WorkerTable,
    pub tracker: TaskTracker,
    pub fifo_queued: AtomicUsize,
    next_worker: AtomicU64,
    /// Accepted jobs not finished yet, with the device they were queued on (None: fifo) and,
    /// when traces are exported, the job's span here (it ends when the job does).
    pub(crate) jobs: Mutex<HashMap<String, JobEntry>>,
    /// The last `RECENT_FINISHED` results, so a dispatch repeated by a manager that missed the
    /// end (it restarted) is answered with the result instead of running the job again.
    pub(crate) recent: Mutex<RecentFinished>,
    /// Signalled when the last accepted job finishes.
    pub(crate) idle: Notify,
    /// Cancelled at the end of shutdown: manager sessions close.
    pub sessions_stop: CancellationToken,
    pub metrics: crate::metrics::AgentMetrics,
    /// Logins in progress and their pace: a connect storm is spread out.
    pub logins: LoginGate,
    /// One per pinned worker process (`max_pinned_workers`): held from before a worker starts
    /// until it is reaped, so a device that took the place of an exiting worker waits for it.
    pub pinned_slots: Arc<Semaphore>,
}

const RECENT_FINISHED: usize = 10_000;

/// An accepted job's route (its device; None: fifo) and its span here, if traced.
pub type JobEntry = (Option<String>, Option<tracing::Span>);

#[derive(Default)]
pub(crate) struct RecentFinished {
    order: std::collections::VecDeque<String>,
    pub(crate) by_id: HashMap<String, JobFinished>,
}

impl RecentFinished {
    fn insert(&mut self, f: JobFinished) {
        if self.by_id.insert(f.job_id.clone(), f.clone()).is_none() {
            self.order.push_back(f.job_id);
        }
        while self.order.len() > RECENT_FINISHED {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }
}

impl Ctx {
    pub fn new(
        node_id: String,
        workers: WorkerSettings,
        spawner: Arc<dyn Spawner>,
        tracker: TaskTracker,
        max_pinned: usize,
        logins: LoginGate,
    ) -> Ctx {
        Ctx {
            node_id,
            workers,
            spawner,
            events: EventBus::default(),
            table: WorkerTable::default(),
            tracker,
            fifo_queued: AtomicUsize::new(0),
            logins,
            pinned_slots: Arc::new(Semaphore::new(max_pinned)),
            next_worker: AtomicU64::new(0),
            jobs: Mutex::new(HashMap::new()),
            recent: Mutex::new(RecentFinished::default()),
            idle: Notify::new(),
            sessions_stop: CancellationToken::new(),
            metrics: crate::metrics::AgentMetrics::default(),
        }
    }

    pub fn next_worker_id(&self) -> String {
        format!(
            "{}-w{}",
            self.node_id,
            self.next_worker.fetch_add(1, Ordering::Relaxed) + 1
        )
    }
    /// The job's entry goes (and its span ends).
    pub fn forget_job(&self, job_id: &str) -> Option<JobEntry> {
        let mut jobs = self.jobs.lock().expect("lock");
        let entry = jobs.remove(job_id);
        if jobs.is_empty() {
            self.idle.notify_waiters();
        }
        entry
    }

    /// Publishes a job's end; the job id becomes free again.
    /// The job with its credential reference resolved (see `credentials`); None when it did
    /// not resolve, and the job has ended saying why.
    pub async fn with_credentials(&self, mut job: AgentJob) -> Option<AgentJob> {
        if let Err((kind, why)) = self.workers.credentials.resolve(&mut job).await {
            tracing::warn!(job_id = %job.id, device = %job.device, error = %why, "the job's credentials did not resolve");
            self.finish("", crate::process::failed(&job.id, kind, why, false));
            return None;
        }
        // A transfer's files too (see `transfers`).
        if let Err((kind, why)) = crate::transfers::prepare(&self.workers.staging, &mut job).await {
            tracing::warn!(job_id = %job.id, device = %job.device, error = %why, "the transfer's file is not available");
            self.finish("", crate::process::failed(&job.id, kind, why, false));
            return None;
        }
        Some(job)
    }

    pub fn finish(&self, worker_id: &str, mut result: wire::JobResult) {
        crate::transfers::finished(&self.workers.staging, &mut result);
        let finished = JobFinished {
            job_id: result.job_id.clone(),
            worker_id: worker_id.to_string(),
            result: Some(result),
        };
        // A job handed back unstarted may be dispatched here again; it is not "finished".
        let not_started = finished.result.as_ref().is_some_and(|r| r.not_started);
        if !not_started {
            self.recent.lock().expect("lock").insert(finished.clone());
        }
        // Known jobs only: a replayed result was counted when it first ended.
        if let (Some((route, span)), Some(r)) =
            (self.forget_job(&finished.job_id), &finished.result)
        {
            self.metrics
                .finished(crate::metrics::strategy_name(route.is_some()), r);
            if let Some(span) = span {
                let commands: Vec<(&str, u64)> = r
                    .results
                    .iter()
                    .filter(|c| c.status != wire::CommandStatus::Skipped as i32)
                    .map(|c| (c.command.as_str(), c.duration_us))
                    .collect();
                netpulse_telemetry::trace::record_worker_spans(
                    &span,
                    worker_id,
                    r.started_unix_us,
                    r.connect_us,
                    &commands,
                );
            }
        }
        self.events.publish(Msg::Finished(finished));
    }

    pub fn jobs_in_flight(&self) -> usize {
        self.jobs.lock().expect("lock").len()
    }
}
