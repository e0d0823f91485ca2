//! The manager's core: accepts jobs, places them on nodes, follows them through agent events
//! to their final status, and keeps their records in etcd.
//!
//! A job is written (record plus an `active` entry holding its request and owner) before it is
//! dispatched, so it survives this manager. Its owner, the replica that accepted or adopted
//! it, drives it: every agent sends every event to every manager, and each replica acts only
//! on the jobs it owns. A job without a node (its node rejected it, handed it back unstarted,
//! or left the cluster) is pending: a sweep dispatches pending jobs again, expires jobs queued
//! beyond their queue timeout, and fails running jobs whose node is gone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use netpulse_proto::agent::{
    self, CancelJob, JobRejected, RejectCode, WorkerInfo, agent_message::Msg,
    manager_message::Msg as Out,
};
use netpulse_proto::api::{ExecuteRequest, Job, JobStatus};
use netpulse_proto::manager::ActiveJob;
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::cluster::{Cluster, NodeEvent};
use crate::error::ApiError;
use crate::placement::{self, NodeView};
use crate::record;
use crate::store::{JobStore, Op};
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
}

/// A job this manager drives.
pub(crate) struct Active {
    pub(crate) job: Job,
    pub(crate) request: JobRequest,
    /// The request as received (wait cleared), for the `active` record.
    pub(crate) wire: ExecuteRequest,
    /// Where it was dispatched; None while pending.
    pub(crate) node: Option<String>,
    /// A dispatch attempt is under way.
    pub(crate) dispatching: bool,
    /// Nodes that refused it or handed it back.
    pub(crate) excluded: HashSet<String>,
    /// Adopted while running: ask the node about it, never start it again.
    pub(crate) resume_only: bool,
    pub(crate) queue_deadline: Instant,
    pub(crate) updates: watch::Sender<Job>,
    /// The record in etcd says RUNNING (written by the sweep, so a fast job costs no write).
    pub(crate) running_recorded: bool,
    /// The job and its active entry are in etcd. A waiting submit's job is written by the
    /// sweep if it is still unfinished then; one that ends sooner is written once, final.
    pub(crate) recorded: bool,
    /// A sweep has seen it: the next one writes it if it is still unfinished.
    pub(crate) swept: bool,
    /// Its place among `max_active_jobs` (adopted jobs take one only if one is free).
    pub(crate) _slot: Option<OwnedSemaphorePermit>,
}

impl Active {
    /// Shows the job's progress to anyone who looks, without waking the waiters: they wait
    /// for its end (one task wake less per job).
    fn quietly_update(&self) {
        self.updates.send_if_modified(|j| {
            j.clone_from(&self.job);
            false
        });
    }
}

/// A device's node, valid while that node keeps the lease it had when it was read.
#[derive(Clone, PartialEq, Eq)]
struct Placed {
    node_id: String,
    lease_id: i64,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) jobs: HashMap<String, Active>,
    placements: HashMap<String, Placed>,
}

pub struct Scheduler {
    pub(crate) cfg: SchedulerConfig,
    pub(crate) etcd: Client,
    pub(crate) store: JobStore,
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) state: Mutex<State>,
    pub metrics: crate::metrics::Metrics,
    pub(crate) tables: Mutex<HashMap<String, oneshot::Sender<Vec<WorkerInfo>>>>,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// One permit per job this manager may drive (`max_active_jobs`).
    pub(crate) slots: Arc<Semaphore>,
}

/// A submit's answer: the job and, for a new job this replica drives, its updates.
pub struct Submitted {
    pub job: Job,
    pub updates: Option<watch::Receiver<Job>>,
    /// How long a waiting caller may wait for the end: the job expires, fails or ends by then.
    pub wait_limit: Duration,
}

/// Beyond the queue and execution timeouts, for the agent to report a timed-out job.
const WAIT_MARGIN: Duration = Duration::from_secs(60);

/// The nodes a job of `device_type` may go to.
fn views(
    nodes: &crate::cluster::Nodes,
    excluded: &HashSet<String>,
    device_type: &str,
) -> Vec<NodeView> {
    nodes
        .values()
        .filter(|n| {
            !excluded.contains(&n.node_id) && n.device_types.iter().any(|t| t == device_type)
        })
        .map(|n| NodeView {
            node_id: n.node_id.clone(),
            lease_id: n.lease_id,
            pinned_workers: n.pinned_workers,
            max_pinned_workers: n.max_pinned_workers,
            fifo_running: n.fifo_running,
            max_fifo_concurrency: n.max_fifo_concurrency,
            queued_jobs: n.queued_jobs,
            draining: n.draining,
        })
        .collect()
}

impl Scheduler {
    /// Starts the event loop and the sweep; both stop with `shutdown`.
    pub fn start(
        cfg: SchedulerConfig,
        etcd: Client,
        store: JobStore,
        cluster: Arc<Cluster>,
        events: mpsc::Receiver<NodeEvent>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Scheduler> {
        let cfg_slots = cfg.max_active_jobs;
        let s = Arc::new(Scheduler {
            cfg,
            etcd,
            store,
            cluster,
            state: Mutex::new(State::default()),
            metrics: crate::metrics::Metrics::default(),
            tables: Mutex::new(HashMap::new()),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            slots: Arc::new(Semaphore::new(cfg_slots)),
        });
        tracker.spawn(s.clone().event_loop(events, shutdown.clone()));
        tracker.spawn(s.clone().sweep_loop(shutdown));
        s
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("scheduler state lock")
    }

    /// Validates, records and dispatches a job. An idempotency key already used returns the
    /// job it named.
    pub async fn submit(&self, req: ExecuteRequest) -> Result<Submitted, ApiError> {
        let mut wire = req.clone();
        wire.wait = false;
        let mut request = JobRequest::from_wire(req, &self.cfg.limits)?;
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
        let node = self.place(&request, &HashSet::new()).await?;
        let job = record::queued(&id, &request, &node);
        let ops = self.record_ops(job.clone(), &wire, &node);
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
        let (updates, rx) = watch::channel(job.clone());
        let dispatch = request.to_dispatch(&id);
        let wait_limit = request.options.queue_timeout + request.options.timeout + WAIT_MARGIN;
        self.lock().jobs.insert(
            id.clone(),
            Active {
                job: job.clone(),
                queue_deadline: Instant::now() + request.options.queue_timeout,
                request,
                wire,
                node: Some(node.clone()),
                dispatching: false,
                excluded: HashSet::new(),
                resume_only: false,
                updates,
                running_recorded: false,
                recorded: !deferred,
                swept: false,
                _slot: Some(slot),
            },
        );
        self.metrics.submitted(job.strategy());
        debug!(job_id = %id, node_id = %node, "job dispatched");
        if let Err(e) = self.cluster.send(&node, Out::Dispatch(dispatch)) {
            warn!(job_id = %id, node_id = %node, error = %e, "dispatch failed; the job stays queued");
            self.make_pending(&id, &node);
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
    fn record_ops(&self, job: Job, wire: &ExecuteRequest, node: &str) -> Vec<Op> {
        let active = Op::Put {
            key: self.store.active_key(&job.id),
            value: ActiveJob {
                request: Some(wire.clone()),
                manager_id: self.cfg.manager_id.clone(),
                node_id: node.to_string(),
            }
            .encode_to_vec(),
            expires_in: None,
        };
        vec![self.store.job_op(job, None), active]
    }

    /// The node for a job: the device's placement (claimed when it has none) or a fifo choice.
    pub(crate) async fn place(
        &self,
        r: &JobRequest,
        excluded: &HashSet<String>,
    ) -> Result<String, ApiError> {
        let nodes = self.cluster.nodes();
        if nodes.is_empty() {
            return Err(ApiError::Unavailable(format!(
                "no node agent is live (none registered under {}/nodes/ in etcd)",
                self.cfg.prefix.trim_end_matches('/')
            )));
        }
        let device_type = &r.connection.device_type;
        if !nodes
            .values()
            .any(|n| n.device_types.iter().any(|t| t == device_type))
        {
            let served: std::collections::BTreeSet<&str> = nodes
                .values()
                .flat_map(|n| n.device_types.iter().map(String::as_str))
                .collect();
            return Err(ApiError::InvalidArgument(format!(
                "connection.device_type {device_type:?} is served by no live node agent; served: {}",
                served.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        let open = views(&nodes, excluded, device_type);
        if r.strategy == Strategy::Fifo {
            return placement::choose_fifo(&open, |n| rand::random_range(0..n))
                .map(|n| n.node_id.clone())
                .ok_or_else(|| {
                    ApiError::ResourceExhausted(format!(
                        "no node can take a fifo job: {} live, all draining, refusing, or \
                         without fifo capacity",
                        nodes.len()
                    ))
                });
        }
        let device = r.connection.device.to_string();
        let live = |p: &Placed| {
            nodes
                .get(&p.node_id)
                .is_some_and(|n| n.lease_id == p.lease_id)
                && !excluded.contains(&p.node_id)
        };
        if let Some(p) = self.lock().placements.get(&device)
            && live(p)
        {
            return Ok(p.node_id.clone());
        }
        let key = placement::placement_key(&self.cfg.prefix, &device);
        let mut etcd = self.etcd.clone();
        let current = self.store.get_raw(&key).await?;
        if let Some((owner, _)) = current {
            let owner = String::from_utf8_lossy(&owner).into_owned();
            match nodes.get(&owner) {
                Some(n) if !excluded.contains(&owner) => {
                    return Ok(self.cache(&device, &owner, n.lease_id));
                }
                // The owner refused the device or left: the placement goes, unless another
                // replica changed it meanwhile.
                _ => self.unplace(&device, &owner).await?,
            }
        }
        let choice = placement::choose_pinned(&open, &device, excluded).ok_or_else(|| {
            ApiError::ResourceExhausted(format!(
                "no node can take device {device}: {} live, all full (max_pinned_workers), \
                 draining or refusing",
                nodes.len()
            ))
        })?;
        let owner = placement::claim(
            &mut etcd,
            &self.cfg.prefix,
            &device,
            choice,
            self.cfg.call_timeout,
        )
        .await?;
        match nodes.get(&owner) {
            Some(n) if !excluded.contains(&owner) => Ok(self.cache(&device, &owner, n.lease_id)),
            _ => Err(ApiError::Unavailable(format!(
                "device {device} is placed on node {owner}, which cannot take it now; retry"
            ))),
        }
    }

    fn cache(&self, device: &str, node_id: &str, lease_id: i64) -> String {
        self.lock().placements.insert(
            device.to_string(),
            Placed {
                node_id: node_id.to_string(),
                lease_id,
            },
        );
        node_id.to_string()
    }

    /// Removes the device's placement if it still names `node_id`.
    pub(crate) async fn unplace(&self, device: &str, node_id: &str) -> Result<(), ApiError> {
        {
            let mut st = self.lock();
            if st
                .placements
                .get(device)
                .is_some_and(|p| p.node_id == node_id)
            {
                st.placements.remove(device);
            }
        }
        let key = placement::placement_key(&self.cfg.prefix, device);
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, node_id)])
            .and_then([TxnOp::delete(key, None)]);
        let mut etcd = self.etcd.clone();
        tokio::time::timeout(self.cfg.call_timeout, etcd.txn(txn))
            .await
            .map_err(|_| ApiError::Unavailable("etcd did not answer in time".into()))?
            .map_err(|e| ApiError::Unavailable(format!("placement in etcd failed: {e}")))?;
        Ok(())
    }

    /// Takes the job off `node`: it will be dispatched again by the sweep.
    fn make_pending(&self, id: &str, node: &str) {
        let mut st = self.lock();
        let Some(a) = st.jobs.get_mut(id) else { return };
        if a.node.as_deref() != Some(node) {
            return;
        }
        a.node = None;
        a.excluded.insert(node.to_string());
        let device = a.request.connection.device.to_string();
        if st
            .placements
            .get(&device)
            .is_some_and(|p| p.node_id == node)
        {
            st.placements.remove(&device);
        }
    }

    /// Dispatches a pending job again: a new node, recorded before the dispatch is sent, so an
    /// adopting manager asks the right node.
    async fn redispatch(self: Arc<Self>, id: String) {
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
        self.metrics.finished(&a.job);
        let id = a.job.id.clone();
        let mut ops = vec![
            self.store
                .job_op(a.job.clone(), Some(a.request.options.result_ttl)),
        ];
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
                let mut st = self.lock();
                let Some(a) = st.jobs.get_mut(&s.job_id) else {
                    return;
                };
                if a.node.as_deref() != Some(node_id.as_str()) {
                    return;
                }
                record::started(&mut a.job, &s.worker_id);
                a.quietly_update();
            }
            Msg::Finished(f) => {
                let result = f.result.unwrap_or_default();
                if result.not_started {
                    debug!(job_id = %f.job_id, %node_id, "job handed back unstarted");
                    self.make_pending(&f.job_id, &node_id);
                    return;
                }
                let a = {
                    let mut st = self.lock();
                    match st.jobs.get(&f.job_id) {
                        Some(a) if a.node.as_deref() == Some(node_id.as_str()) => {
                            st.jobs.remove(&f.job_id)
                        }
                        _ => None,
                    }
                };
                let Some(mut a) = a else { return };
                record::finished(&mut a.job, &f.worker_id, result);
                self.finalize(a);
            }
            Msg::Rejected(r) => self.on_rejected(&node_id, r),
            Msg::Workers(t) => {
                if let Some(reply) = self.tables.lock().expect("lock").remove(&t.request_id) {
                    let _ = reply.send(t.workers);
                }
            }
            Msg::Fenced(f) => {
                warn!(%node_id, reason = %f.reason, "node fenced; its placements will be redone");
                self.lock().placements.retain(|_, p| p.node_id != node_id);
            }
            Msg::Welcome(_) => self.resync(&node_id),
            Msg::Worker(_) | Msg::Load(_) => {}
        }
    }

    /// A (re)opened session to a node: events it published while the link was down are
    /// lost, so every job this manager has there is dispatched again. The agent never runs a
    /// job id twice: it answers with the job's events or its recent result; a job that had
    /// started is only looked up (`resume_only`), and fails if the node no longer knows it.
    fn resync(self: &Arc<Self>, node_id: &str) {
        let dispatches: Vec<_> = {
            let mut st = self.lock();
            st.jobs
                .iter_mut()
                .filter(|(_, a)| a.node.as_deref() == Some(node_id))
                .map(|(id, a)| {
                    a.resume_only |= a.job.status() == JobStatus::Running;
                    let mut d = a.request.to_dispatch(id);
                    d.resume_only = a.resume_only;
                    d
                })
                .collect()
        };
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
        let (owned, resume) = match self.lock().jobs.get(&r.job_id) {
            Some(a) if a.node.as_deref() == Some(node_id) => (true, a.resume_only),
            _ => (false, false),
        };
        if !owned {
            return;
        }
        match r.code() {
            // Already there (a repeated dispatch): its events will follow.
            RejectCode::AlreadyExists => {}
            RejectCode::ResourceExhausted | RejectCode::Unavailable => {
                debug!(job_id = %r.job_id, %node_id, reason = %r.message, "node refused the job; placing it elsewhere");
                let device = self
                    .lock()
                    .jobs
                    .get(&r.job_id)
                    .map(|a| a.request.connection.device.to_string());
                self.make_pending(&r.job_id, node_id);
                if let Some(device) = device {
                    let s = self.clone();
                    let node = node_id.to_string();
                    let id = r.job_id.clone();
                    self.tracker.spawn(async move {
                        if let Err(e) = s.unplace(&device, &node).await {
                            debug!(%device, error = %e, "removing a refused placement failed");
                        }
                        s.redispatch(id).await;
                    });
                }
            }
            RejectCode::NotFound if resume => self.end(
                &r.job_id,
                JobStatus::Failed,
                ErrorKind::NodeLost,
                format!(
                    "node {node_id} no longer knows the job (its agent restarted while the job \
                     ran); it is not run again"
                ),
            ),
            RejectCode::NotFound => {} // a cancel for a job the node no longer has
            RejectCode::InvalidArgument | RejectCode::Unspecified => self.end(
                &r.job_id,
                JobStatus::Failed,
                ErrorKind::InvalidArgument,
                format!("node {node_id} refused the job: {}", r.message),
            ),
        }
    }

    async fn sweep_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sweep(),
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Records jobs that have been running since the last sweep as RUNNING (jobs that end
    /// sooner are written once, final), expires jobs queued too long, fails running jobs whose node left,
    /// and dispatches pending jobs again.
    fn sweep(self: &Arc<Self>) {
        let nodes = self.cluster.nodes();
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut lost = Vec::new();
        let mut pending = Vec::new();
        {
            let mut st = self.lock();
            for (id, a) in st.jobs.iter_mut() {
                let running = a.job.status() == JobStatus::Running;
                // Only jobs unfinished for a whole interval are written: under load most end
                // sooner, and writing them twice (unfinished, then final) would double
                // etcd's work. Queued under the lock, so a final write (queued after the job
                // leaves the table) always follows it.
                let aged = std::mem::replace(&mut a.swept, true);
                if aged && !a.recorded {
                    let node = a.node.clone().unwrap_or_default();
                    let ops = self.record_ops(a.job.clone(), &a.wire, &node);
                    a.recorded = self.store.write_behind(ops);
                    a.running_recorded = a.recorded && running;
                } else if aged && running && !a.running_recorded {
                    a.running_recorded = self
                        .store
                        .write_behind(vec![self.store.job_op(a.job.clone(), None)]);
                }
                if !running && now >= a.queue_deadline {
                    expired.push((id.clone(), a.node.clone(), a.request.options.queue_timeout));
                    continue;
                }
                match &a.node {
                    Some(n) if !nodes.contains_key(n) => {
                        if running || a.resume_only {
                            lost.push((id.clone(), n.clone()));
                        } else {
                            a.excluded.insert(n.clone());
                            a.node = None;
                            pending.push(id.clone());
                        }
                    }
                    None if !a.dispatching => pending.push(id.clone()),
                    _ => {}
                }
            }
            st.placements.retain(|_, p| {
                nodes
                    .get(&p.node_id)
                    .is_some_and(|n| n.lease_id == p.lease_id)
            });
        }
        for (id, node, waited) in expired {
            if let Some(node) = node {
                let _ = self
                    .cluster
                    .send(&node, Out::Cancel(CancelJob { job_id: id.clone() }));
            }
            self.end(
                &id,
                JobStatus::Expired,
                ErrorKind::QueueTimeout,
                format!(
                    "the job did not start within queue_timeout_seconds ({}s)",
                    waited.as_secs()
                ),
            );
        }
        for (id, node) in lost {
            self.end(
                &id,
                JobStatus::Failed,
                ErrorKind::NodeLost,
                format!("node {node} left the cluster (its lease ended) while the job ran; it is not run again"),
            );
        }
        for id in pending {
            self.tracker.spawn(self.clone().redispatch(id));
        }
    }

    /// Asks a node for its worker table.
    pub(crate) async fn worker_table(&self, node_id: &str) -> Result<Vec<WorkerInfo>, ApiError> {
        let request_id = record::new_job_id();
        let (tx, rx) = oneshot::channel();
        self.tables
            .lock()
            .expect("lock")
            .insert(request_id.clone(), tx);
        let sent = self.cluster.send(
            node_id,
            Out::ListWorkers(agent::ListWorkers {
                request_id: request_id.clone(),
            }),
        );
        let answer = match sent {
            Ok(()) => tokio::time::timeout(self.cfg.call_timeout, rx).await,
            Err(e) => {
                self.tables.lock().expect("lock").remove(&request_id);
                return Err(e);
            }
        };
        self.tables.lock().expect("lock").remove(&request_id);
        match answer {
            Ok(Ok(w)) => Ok(w),
            _ => Err(ApiError::Unavailable(format!(
                "node {node_id} did not list its workers within {:?}",
                self.cfg.call_timeout
            ))),
        }
    }
}
