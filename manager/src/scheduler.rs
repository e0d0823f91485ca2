//! The manager's core: accepts jobs, places them on nodes, follows them through agent events
//! to their final status, and keeps their records in etcd.
//!
//! A job is written (record plus an `active` entry holding its request and owner) before it is
//! dispatched, so it survives this manager. Its owner, the replica that accepted or adopted
//! it, drives it: every agent sends every event to every manager, and each replica acts only
//! on the jobs it owns. A job without a node (its node rejected it, handed it back unstarted,
//! or left the cluster) is pending: a sweep dispatches pending jobs again, expires jobs queued
//! beyond their queue timeout, and fails running jobs whose node is gone.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;
use netpulse_proto::agent::{
    CancelJob, JobRejected, agent_message::Msg, manager_message::Msg as Out,
};
use netpulse_proto::api::{ExecuteRequest, Job, JobStatus};
use netpulse_proto::manager::ActiveJob;
use prost::Message;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admin::ClusterOps;
use crate::cluster::{Cluster, NodeEvent};
use crate::error::ApiError;
use crate::listeners::{JobListener, Listeners};
use crate::placement::Placements;
use crate::queries::JobQueries;
use crate::record::{self, is_final};
use crate::store::{JobStore, Op};
use crate::table::{Active, JobTable, Refusal};
use netpulse_model::{ErrorKind, JobRequest, RequestLimits, Strategy};

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub prefix: String,
    pub manager_id: String,
    pub limits: RequestLimits,
    /// Jobs this manager drives at once (queued or running); beyond, submits are refused.
    pub max_active_jobs: usize,
    pub call_timeout: Duration,
    pub sweep_interval: Duration,
    /// How long a running job waits for its node to come back after the node's record
    /// disappeared (a lapsed lease) before it fails `NODE_LOST`.
    pub node_lost_grace: Duration,
    /// Where `config_template.template_name` files are (`--config-templates-dir`).
    pub config_templates_dir: Option<std::path::PathBuf>,
    /// The TextFSM templates `ParseOutput` uses.
    pub ntc_templates_dir: std::path::PathBuf,
    pub templates_dir: Option<std::path::PathBuf>,
    /// How credentials are kept in the jobs' active entries.
    pub sealer: crate::sealing::Sealer,
    /// Which credentials requests may carry or name.
    pub credentials: crate::credentials::CredentialPolicy,
}

pub struct Scheduler {
    pub(crate) cfg: SchedulerConfig,
    pub(crate) etcd: Client,
    pub(crate) store: JobStore,
    pub(crate) placements: Arc<Placements>,
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) state: Mutex<JobTable>,
    listeners: Listeners,
    /// Cluster operations: the event loop hands them the agents' worker tables.
    pub ops: Arc<ClusterOps>,
    pub(crate) tracker: TaskTracker,
    /// Reads of job records (cancel of another replica's job waits on them).
    pub queries: JobQueries,
    pub(crate) shutdown: CancellationToken,
    /// One permit per job this manager may drive (`max_active_jobs`).
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) webhooks: Arc<crate::webhooks::Webhooks>,
}

/// What the scheduler works with, built by the server.
pub struct Parts {
    /// Told of every job this replica accepts, ends or lets go.
    pub listeners: Listeners,
    pub etcd: Client,
    pub store: JobStore,
    pub cluster: Arc<Cluster>,
    pub placements: Arc<Placements>,
    pub ops: Arc<ClusterOps>,
    /// Checks requests' webhooks (it listens too, among `listeners`).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

/// A submit's answer: the job and, for a new job this replica drives, its updates.
pub struct Submitted {
    pub job: Job,
    pub updates: Option<watch::Receiver<Job>>,
    /// How long a waiting caller may wait for the end: the job expires, fails or ends by then.
    pub wait_limit: Duration,
}

/// How long a cancel of another replica's job waits for that job to end.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Beyond the queue and execution timeouts, for the agent to report a timed-out job.
const WAIT_MARGIN: Duration = Duration::from_secs(60);

impl Scheduler {
    /// Starts the event loop and the sweep; both stop with `shutdown`.
    pub fn start(
        cfg: SchedulerConfig,
        parts: Parts,
        events: mpsc::Receiver<NodeEvent>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Scheduler> {
        let cfg_slots = cfg.max_active_jobs;
        let Parts {
            listeners,
            etcd,
            store,
            cluster,
            placements,
            ops,
            webhooks,
        } = parts;
        let queries = JobQueries::new(store.clone(), tracker.clone(), shutdown.clone());
        let s = Arc::new(Scheduler {
            queries,
            placements,
            cfg,
            etcd,
            store,
            cluster,
            state: Mutex::new(JobTable::default()),
            listeners,
            ops,
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            slots: Arc::new(Semaphore::new(cfg_slots)),
            webhooks,
        });
        tracker.spawn(s.clone().event_loop(events, shutdown.clone()));
        tracker.spawn(s.clone().sweep_loop(shutdown));
        s
    }

    pub(crate) fn tell(&self, mut event: impl FnMut(&dyn JobListener)) {
        for l in &self.listeners {
            event(l.as_ref());
        }
    }

    /// Tells the listeners of a job now in the table, with the request it holds.
    pub(crate) fn tell_accepted(&self, job: &Job, adopted: bool) {
        let t = self.lock();
        if let Some(a) = t.jobs.get(&job.id) {
            self.tell(|l| l.accepted(job, &a.wire, adopted));
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, JobTable> {
        self.state.lock().expect("scheduler state lock")
    }

    /// Validates, records and dispatches a job. An idempotency key already used returns the
    /// job it named.
    pub async fn submit(&self, req: ExecuteRequest) -> Result<Submitted, ApiError> {
        // Rendered first: the record keeps the lines, which any replica can run.
        let req = crate::render::expand(req, self.cfg.config_templates_dir.as_deref())?;
        let mut wire = req.clone();
        wire.wait = false;
        let mut request = JobRequest::from_wire(req, &self.cfg.limits)?;
        self.cfg.credentials.check(&request.connection)?;
        self.webhooks.check(wire.webhook.as_ref())?;
        if netpulse_telemetry::trace::exporting() {
            request.trace_context = netpulse_telemetry::trace::inject(&tracing::Span::current());
        }
        // Taken before any await, so concurrent submits cannot all pass the check.
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::ResourceExhausted(format!(
                "this manager drives {} unfinished jobs, its max_active_jobs; retry later",
                self.cfg.max_active_jobs
            ))
        })?;
        let id = record::new_job_id();
        // Every node full of busy pinned workers: the job waits for a place (the sweep tries
        // again), within its queue timeout, and says why. Anything else is refused now.
        let (node, waits_because) = match self.place(&request, &HashSet::new()).await {
            Ok(node) => (Some(node), None),
            Err(ApiError::ResourceExhausted(why)) if request.strategy == Strategy::Pinned => {
                (None, Some(why))
            }
            Err(e) => return Err(e),
        };
        let mut job = record::queued(&id, &request, node.as_deref().unwrap_or(""));
        job.queued_reason = waits_because.unwrap_or_default();
        let ops = self.record_ops(job.clone(), &wire, node.as_deref().unwrap_or(""));
        // A waiting caller learns the job id only from the final answer, written before it is
        // sent; so its first record may wait for the sweep, and a fast job costs one write.
        // A retried waiting submit can run twice if this manager dies meanwhile (the caller
        // saw an error): an idempotency key closes that, so keyed submits are written first.
        // While etcd writes fail, every submit writes first, so it fails fast with UNAVAILABLE
        // and the first one that commits after the outage clears the flag.
        let deferred = request.wait && request.idempotency_key.is_none() && self.store.healthy();
        if let (false, Some(key)) = (deferred, &request.idempotency_key) {
            let o = &request.options;
            let keep = o.queue_timeout + o.timeout + o.result_ttl;
            if let Some(existing) = self.store.create_once(key, &id, keep, ops).await? {
                let mut s = self.existing(&existing).await?;
                s.wait_limit = o.queue_timeout + o.timeout + WAIT_MARGIN;
                return Ok(s);
            }
        } else if !deferred {
            self.store.write(ops).await?;
        }
        let dispatch = request.to_dispatch(&id);
        let wait_limit = request.options.queue_timeout + request.options.timeout + WAIT_MARGIN;
        let queue_deadline = Instant::now() + request.options.queue_timeout;
        let (mut active, rx) = Active::new(
            job.clone(),
            request,
            wire,
            node.clone(),
            queue_deadline,
            Some(slot),
        );
        active.recorded = !deferred;
        // The adoption scan may have taken this replica's own job between its write and now
        // (it reads the record): this entry, which the caller waits on, drives it.
        if self.lock().jobs.insert(id.clone(), active).is_some() {
            self.tell(|l| l.released(&id));
        }
        self.tell_accepted(&job, false);
        match &node {
            Some(node) => {
                debug!(job_id = %id, node_id = %node, "job dispatched");
                if let Err(e) = self.cluster.send(node, Out::Dispatch(dispatch)) {
                    warn!(job_id = %id, node_id = %node, error = %e, "dispatch failed; the job stays queued");
                    self.make_pending(&id, node);
                }
            }
            None => debug!(job_id = %id, reason = %job.queued_reason, "job waits for a place"),
        }
        Ok(Submitted {
            job,
            updates: Some(rx),
            wait_limit,
        })
    }

    async fn existing(&self, id: &str) -> Result<Submitted, ApiError> {
        if let Some(a) = self.lock().jobs.get(id) {
            return Ok(Submitted {
                job: a.job.clone(),
                updates: Some(a.updates.subscribe()),
                wait_limit: Duration::ZERO,
            });
        }
        let job = self.store.get(id).await?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "the idempotency key names job {id}, which has expired"
            ))
        })?;
        Ok(Submitted {
            job,
            updates: None,
            wait_limit: Duration::ZERO,
        })
    }

    /// The writes that record an unfinished job: its record and its active entry.
    pub(crate) fn record_ops(&self, job: Job, wire: &ExecuteRequest, node: &str) -> Vec<Op> {
        let active = Op::Put {
            key: self.store.active_key(&job.id),
            value: self
                .cfg
                .sealer
                .entry(&job.id, wire, &self.cfg.manager_id, node)
                .encode_to_vec(),
            expires_in: None,
        };
        vec![self.store.job_op(job, None), active]
    }

    /// The node for a job (see [`Placements::place`]).
    pub(crate) async fn place(
        &self,
        r: &JobRequest,
        excluded: &HashSet<String>,
    ) -> Result<String, ApiError> {
        self.placements
            .place(&self.cluster.nodes(), r, excluded)
            .await
    }

    /// Takes the job off `node`: it will be dispatched again by the sweep.
    fn make_pending(&self, id: &str, node: &str) {
        let device = self.lock().take_off(id, node);
        if let Some(device) = device {
            self.placements.forget(&device, node);
        }
    }

    /// Dispatches a pending job again: a new node, recorded before the dispatch is sent, so an
    /// adopting manager asks the right node.
    pub(crate) async fn redispatch(self: Arc<Self>, id: String) {
        let taken = {
            let mut st = self.lock();
            match st.jobs.get_mut(&id) {
                Some(a) if a.node.is_none() && !a.dispatching => {
                    a.dispatching = true;
                    Some((a.request.clone(), a.excluded.clone(), a.wire.clone()))
                }
                _ => None,
            }
        };
        let Some((request, excluded, wire)) = taken else {
            return;
        };
        let placed = match self.place(&request, &excluded).await {
            Ok(n) => Ok(n),
            // Every node refused it once: try them all again rather than give up.
            Err(_) if !excluded.is_empty() => self.place(&request, &HashSet::new()).await,
            Err(e) => Err(e),
        };
        let node = match placed {
            Ok(n) => n,
            Err(e) => {
                debug!(job_id = %id, error = %e, "no node for a pending job yet");
                if let Some(a) = self.lock().jobs.get_mut(&id) {
                    a.dispatching = false;
                    a.excluded.clear();
                    // The job says why it waits (and, if it expires, why it never ran).
                    if a.job.queued_reason.is_empty() {
                        a.job.queued_reason = e.to_string();
                        a.quietly_update();
                    }
                }
                return;
            }
        };
        let job = {
            let mut st = self.lock();
            let Some(a) = st.jobs.get_mut(&id) else {
                return;
            };
            a.job.node_id = node.clone();
            a.job.clone()
        };
        let ops = self.record_ops(job, &wire, &node);
        let written = self.store.write(ops).await;
        let dispatch = {
            let mut st = self.lock();
            let Some(a) = st.jobs.get_mut(&id) else {
                return;
            };
            a.dispatching = false;
            if let Err(e) = written {
                warn!(job_id = %id, error = %e, "recording a new node failed; will retry");
                return;
            }
            a.node = Some(node.clone());
            a.recorded = true;
            a.quietly_update();
            let mut d = a.request.to_dispatch(&id);
            d.resume_only = a.resume_only;
            d
        };
        info!(job_id = %id, node_id = %node, "job dispatched again");
        if let Err(e) = self.cluster.send(&node, Out::Dispatch(dispatch)) {
            warn!(job_id = %id, node_id = %node, error = %e, "dispatch failed; will retry");
            self.make_pending(&id, &node);
        }
    }

    /// Ends a job this manager drives: records it final (expiring after its result TTL),
    /// drops its `active` entry, then tells its watchers.
    pub(crate) fn finalize(self: &Arc<Self>, a: Active) {
        let mut ops = vec![
            self.store
                .job_op(a.job.clone(), Some(a.request.options.result_ttl)),
        ];
        self.tell(|l| l.finished(&a.job, &mut ops));
        let id = a.job.id.clone();
        // A job never recorded has no active entry to remove.
        if a.recorded {
            ops.push(Op::Delete {
                key: self.store.active_key(&id),
            });
        }
        let then: crate::store::OnCommit = Box::new(move |r| {
            if let Err(e) = r {
                // The active entry stays: a manager adopting it asks the node again.
                warn!(job_id = %id, error = %e, "recording the final status failed");
            }
            a.updates.send_replace(a.job);
        });
        // Usually queued at once; a task waits for room only when the write queue is full.
        if let Err((ops, then)) = self.store.try_write_then(ops, then) {
            let store = self.store.clone();
            self.tracker
                .spawn(async move { then(store.write(ops).await) });
        }
    }

    /// Cancels a queued or running job. This replica's jobs end at once; another replica's
    /// job is cancelled on its node and the answer waits (briefly) for its end.
    pub async fn cancel_job(self: &Arc<Self>, id: &str) -> Result<Job, ApiError> {
        crate::queries::check_id(id)?;
        let mine = self.lock().jobs.get(id).map(|a| a.node.clone());
        if let Some(node) = mine {
            if let Some(node) = node {
                let _ = self
                    .cluster
                    .send(&node, Out::Cancel(CancelJob { job_id: id.into() }));
            }
            let mut updates = self.lock().jobs.get(id).map(|a| a.updates.subscribe());
            self.end(
                id,
                JobStatus::Canceled,
                ErrorKind::Canceled,
                "canceled by a client".into(),
            );
            if let Some(rx) = updates.as_mut() {
                let _ = tokio::time::timeout(
                    self.cfg.call_timeout,
                    rx.wait_for(|j| is_final(j.status())),
                )
                .await;
            }
            return self.queries.get_job(id).await;
        }
        let job = self.queries.get_job(id).await?;
        if is_final(job.status()) {
            return Err(ApiError::FailedPrecondition(format!(
                "job {id} has already ended ({})",
                job.status().as_str_name()
            )));
        }
        let active = self.store.get_raw(&self.store.active_key(id)).await?;
        let node = active
            .and_then(|(v, _)| ActiveJob::decode(v.as_slice()).ok())
            .map(|a| a.node_id)
            .unwrap_or_default();
        if node.is_empty() {
            return Err(ApiError::Unavailable(format!(
                "job {id} is between nodes; retry the cancel"
            )));
        }
        self.cluster
            .send(&node, Out::Cancel(CancelJob { job_id: id.into() }))?;
        self.queries.wait_final(job, CANCEL_WAIT).await
    }

    /// A submitted job once it is final. On shutdown the caller gets the job as it stands,
    /// recorded, and can watch it on another replica, which adopts it.
    pub async fn await_end(&self, submitted: Submitted) -> Result<Job, ApiError> {
        let (limit, job) = (submitted.wait_limit, submitted.job);
        match submitted.updates {
            _ if is_final(job.status()) => Ok(job),
            Some(mut rx) => {
                let ended = tokio::select! {
                    r = tokio::time::timeout(limit, rx.wait_for(|j| is_final(j.status()))) => r.is_ok(),
                    _ = self.shutdown.cancelled() => false,
                };
                if !ended {
                    self.ensure_recorded(&job.id).await?;
                }
                Ok(rx.borrow().clone())
            }
            None => self.queries.wait_final(job, limit).await,
        }
    }

    /// Writes a waiting submit's job now if the sweep has not yet (its caller is about to
    /// get its id without the end: the manager is shutting down).
    pub(crate) async fn ensure_recorded(&self, id: &str) -> Result<(), ApiError> {
        let ops = {
            let mut st = self.lock();
            let Some(a) = st.jobs.get_mut(id) else {
                return Ok(());
            };
            if a.recorded {
                return Ok(());
            }
            a.recorded = true;
            let node = a.node.clone().unwrap_or_default();
            self.record_ops(a.job.clone(), &a.wire, &node)
        };
        self.store.write(ops).await
    }

    /// Ends a job with a status of the manager's own (not from a worker).
    pub(crate) fn end(self: &Arc<Self>, id: &str, status: JobStatus, kind: ErrorKind, msg: String) {
        let Some(mut a) = self.lock().jobs.remove(id) else {
            return;
        };
        info!(job_id = %id, status = ?status, %kind, reason = %msg, "job ended by the manager");
        record::ended(&mut a.job, status, kind, msg);
        self.finalize(a);
    }

    async fn event_loop(
        self: Arc<Self>,
        mut events: mpsc::Receiver<NodeEvent>,
        stop: CancellationToken,
    ) {
        loop {
            let ev = tokio::select! {
                e = events.recv() => match e { Some(e) => e, None => return },
                _ = stop.cancelled() => return,
            };
            self.on_event(ev);
        }
    }

    fn on_event(self: &Arc<Self>, ev: NodeEvent) {
        let NodeEvent { node_id, msg } = ev;
        let Some(msg) = msg.msg else { return };
        match msg {
            Msg::Started(s) => {
                // Told under the table's lock, as acceptance is: no copy of the job per start.
                let mut t = self.lock();
                if let Some(job) = t.started(&node_id, &s.job_id, &s.worker_id) {
                    self.tell(|l| l.started(job));
                }
            }
            Msg::Finished(f) => {
                let result = f.result.unwrap_or_default();
                if result.not_started {
                    debug!(job_id = %f.job_id, %node_id, "job handed back unstarted");
                    self.make_pending(&f.job_id, &node_id);
                    return;
                }
                let taken = self.lock().take_finished(&node_id, &f.job_id);
                let Some(mut a) = taken else { return };
                record::finished(&mut a.job, &f.worker_id, result);
                self.finalize(a);
            }
            Msg::Rejected(r) => self.on_rejected(&node_id, r),
            Msg::Workers(t) => self.ops.on_worker_table(t),
            Msg::Fenced(f) => {
                warn!(%node_id, reason = %f.reason, "node fenced; its placements will be redone");
                self.placements.forget_node(&node_id);
            }
            Msg::Welcome(_) => self.resync(&node_id),
            Msg::Update(u) => self.queries.live.publish(u),
            Msg::Worker(_) | Msg::Load(_) => {}
        }
    }

    /// A (re)opened session to a node: events it published while the link was down are
    /// lost, so every job this manager has there is dispatched again. The agent never runs a
    /// job id twice: it answers with the job's events or its recent result; a job that had
    /// started is only looked up (`resume_only`), and fails if the node no longer knows it.
    fn resync(self: &Arc<Self>, node_id: &str) {
        let dispatches = self.lock().resync(node_id);
        if !dispatches.is_empty() {
            info!(%node_id, jobs = dispatches.len(), "session to the node reopened; asking it about its jobs");
        }
        for d in dispatches {
            if let Err(e) = self.cluster.send(node_id, Out::Dispatch(d)) {
                debug!(%node_id, error = %e, "resync dispatch not sent; the next session retries");
            }
        }
    }

    fn on_rejected(self: &Arc<Self>, node_id: &str, r: JobRejected) {
        let refusal = self.lock().rejected(node_id, &r);
        match refusal {
            Refusal::Nothing => {}
            Refusal::Replace { device } => {
                debug!(job_id = %r.job_id, %node_id, reason = %r.message, "node refused the job; placing it elsewhere");
                self.placements.forget(&device, node_id);
                let s = self.clone();
                let node = node_id.to_string();
                self.tracker.spawn(async move {
                    if let Err(e) = s.placements.unplace(&device, &node).await {
                        debug!(%device, error = %e, "removing a refused placement failed");
                    }
                    s.redispatch(r.job_id).await;
                });
            }
            Refusal::End(kind, why) => self.end(&r.job_id, JobStatus::Failed, kind, why),
        }
    }
}
