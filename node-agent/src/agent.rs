//! The agent's core: takes dispatches, routes pinned jobs to their device's actor and fifo
//! jobs to the fifo runner, enforces capacity, and answers cancel, kill, drain and list
//! requests. It knows nothing of gRPC; `service` adapts it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use netpulse_model::{AgentJob, Strategy};
use netpulse_proto::agent::{Dispatch, Load, WorkerInfo, WorkerState, agent_message::Msg};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::ctx::Ctx;
use crate::device::{DeviceActor, DeviceCmd};
use crate::error::AgentError;
use crate::fifo::{self, FifoCmd};
use crate::process::{ProcessSpawner, Spawner, WorkerSettings};

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_pinned_workers: usize,
    pub max_fifo_concurrency: usize,
    /// Jobs waiting per device, and fifo jobs waiting in all.
    pub max_queued_per_device: usize,
    pub max_fifo_queued: usize,
    /// Workers starting and logging in at once.
    pub max_concurrent_logins: usize,
    /// Logins started per second on this node; 0: no limit.
    pub max_logins_per_second: f64,
    /// Tighter rates for devices by address prefix.
    pub login_limits: Vec<crate::logins::GroupLimit>,
}

/// Whether the agent takes new jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Open,
    Draining,
    /// Lease lost: the cluster may think this node is dead.
    Fenced(String),
    ShuttingDown,
}

pub struct Agent {
    pub ctx: Arc<Ctx>,
    limits: Limits,
    devices: Mutex<HashMap<String, mpsc::Sender<DeviceCmd>>>,
    /// Taken at shutdown so the fifo runner ends.
    fifo: Mutex<Option<mpsc::Sender<FifoCmd>>>,
    admission: watch::Sender<Admission>,
}

impl Agent {
    /// An agent that runs real `pinned-worker` processes.
    pub fn new(node_id: String, workers: WorkerSettings, limits: Limits) -> Arc<Agent> {
        let tracker = TaskTracker::new();
        let spawner = Arc::new(ProcessSpawner {
            settings: workers.clone(),
        });
        Self::with_spawner(node_id, workers, limits, spawner, tracker)
    }

    pub fn with_spawner(
        node_id: String,
        workers: WorkerSettings,
        limits: Limits,
        spawner: Arc<dyn Spawner>,
        tracker: TaskTracker,
    ) -> Arc<Agent> {
        let ctx = Arc::new(Ctx::new(
            node_id,
            workers,
            spawner,
            tracker,
            limits.max_pinned_workers,
            crate::logins::LoginGate::new(
                limits.max_concurrent_logins,
                limits.max_logins_per_second,
                &limits.login_limits,
            ),
        ));
        let (fifo_tx, fifo_rx) = mpsc::channel(limits.max_fifo_queued.max(1));
        ctx.tracker
            .spawn(fifo::run(ctx.clone(), fifo_rx, limits.max_fifo_concurrency));
        Arc::new(Agent {
            ctx,
            limits,
            devices: Mutex::new(HashMap::new()),
            fifo: Mutex::new(Some(fifo_tx)),
            admission: watch::Sender::new(Admission::Open),
        })
    }

    pub fn admission(&self) -> Admission {
        self.admission.borrow().clone()
    }

    /// Follows admission changes (the health service reports them).
    pub fn watch_admission(&self) -> watch::Receiver<Admission> {
        self.admission.subscribe()
    }

    pub fn set_admission(&self, a: Admission) {
        info!(admission = ?a, "admission changed");
        self.admission.send_replace(a);
    }

    pub fn load(&self) -> Load {
        let t = &self.ctx.table;
        Load {
            pinned_workers: t.pinned_in_use() as u32,
            max_pinned_workers: self.limits.max_pinned_workers as u32,
            fifo_running: t.fifo_running() as u32,
            max_fifo_concurrency: self.limits.max_fifo_concurrency as u32,
            queued_jobs: (t.queued() + self.ctx.fifo_queued.load(Ordering::Relaxed)) as u32,
            idle_pinned_workers: t.pinned_idle() as u32,
            // Shutting down drains too: managers stop placing here before the refusals.
            draining: matches!(
                self.admission(),
                Admission::Draining | Admission::ShuttingDown
            ),
        }
    }

    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.ctx.table.snapshot()
    }

    /// Accepts a job or says why not. Returns the device key. A job id this agent has queued,
    /// running or recently finished is never run again (see `Dispatch.resume_only`).
    pub fn dispatch(&self, d: Dispatch) -> Result<String, AgentError> {
        if self.ctx.jobs.lock().expect("lock").contains_key(&d.job_id) {
            return Err(AgentError::AlreadyExists(format!(
                "job {} is already queued or running here",
                d.job_id
            )));
        }
        let replay = self
            .ctx
            .recent
            .lock()
            .expect("lock")
            .by_id
            .get(&d.job_id)
            .cloned();
        if let Some(finished) = replay {
            self.ctx.events.publish(Msg::Finished(finished));
            return Err(AgentError::AlreadyExists(format!(
                "job {} already finished here; its result was sent again",
                d.job_id
            )));
        }
        if d.resume_only {
            return Err(AgentError::NotFound(format!(
                "job {} is not queued, running or recently finished here",
                d.job_id
            )));
        }
        match self.admission() {
            Admission::Open => {}
            Admission::Draining => {
                return Err(AgentError::Unavailable(
                    "node is draining; place the job elsewhere".into(),
                ));
            }
            Admission::Fenced(why) => {
                return Err(AgentError::Unavailable(format!(
                    "node is fenced ({why}); place the job elsewhere"
                )));
            }
            Admission::ShuttingDown => {
                return Err(AgentError::Unavailable("node is shutting down".into()));
            }
        }
        let mut job = AgentJob::try_from(d)?;
        // The device types this node serves are its workers' platforms.
        pinned_worker::platform::lookup(&job.connection.device_type)
            .map_err(|e| AgentError::InvalidArgument(e.to_string()))?;
        let key = job.device.to_string();
        {
            let mut jobs = self.ctx.jobs.lock().expect("lock");
            if jobs.contains_key(&job.id) {
                return Err(AgentError::AlreadyExists(format!(
                    "job {} is already queued or running here",
                    job.id
                )));
            }
            let route = (job.strategy == Strategy::Pinned).then(|| key.clone());
            // The job's span here, a child of the manager's; the worker gets its context.
            let span = netpulse_telemetry::trace::exporting().then(|| {
                let span =
                    tracing::info_span!("netpulse.agent.job", job_id = %job.id, device = %key);
                netpulse_telemetry::trace::set_parent(&span, &job.frame.trace_context);
                job.frame.trace_context = netpulse_telemetry::trace::inject(&span);
                span
            });
            jobs.insert(job.id.clone(), (route, span));
        }
        let id = job.id.clone();
        let r = match job.strategy {
            Strategy::Fifo => match self.fifo.lock().expect("lock").as_ref() {
                Some(tx) => tx.try_send(FifoCmd::Enqueue(job)).map_err(|_| {
                    AgentError::ResourceExhausted(format!(
                        "fifo queue is full ({} jobs)",
                        self.limits.max_fifo_queued
                    ))
                }),
                None => Err(AgentError::Unavailable("node is shutting down".into())),
            },
            Strategy::Pinned => self.dispatch_pinned(&key, job),
        };
        if r.is_err() {
            self.ctx.forget_job(&id);
        }
        r.map(|_| key)
    }

    fn dispatch_pinned(&self, key: &str, mut d: AgentJob) -> Result<(), AgentError> {
        let mut devices = self.devices.lock().expect("lock");
        self.make_room(key, &devices)?;
        if let Some(tx) = devices.get(key) {
            let queued = self
                .ctx
                .table
                .get(key)
                .map_or(0, |w| w.queued_jobs as usize);
            if queued >= self.limits.max_queued_per_device {
                return Err(AgentError::ResourceExhausted(format!(
                    "{key} has {queued} jobs queued, the limit"
                )));
            }
            match tx.try_send(DeviceCmd::Enqueue(Box::new(d))) {
                Ok(()) => {
                    self.ctx.table.update(key, |w| w.queued_jobs += 1);
                    return Ok(());
                }
                // Its actor is gone; start a new one below.
                Err(mpsc::error::TrySendError::Closed(DeviceCmd::Enqueue(back))) => {
                    d = *back;
                    devices.remove(key);
                }
                Err(_) => {
                    return Err(AgentError::ResourceExhausted(format!(
                        "{key} has its queue full"
                    )));
                }
            }
        }
        let (tx, rx) = mpsc::channel(self.limits.max_queued_per_device.max(1));
        let actor = DeviceActor::new(key.to_string(), self.ctx.clone(), rx);
        // The actor ends when its channel closes (shutdown): it closes its worker and reaps it.
        self.ctx.tracker.spawn(actor.run());
        tx.try_send(DeviceCmd::Enqueue(Box::new(d)))
            .expect("new channel has room");
        // Counted now, under the lock, so the next capacity check sees this device.
        self.ctx.table.update(key, |w| w.queued_jobs += 1);
        devices.insert(key.to_string(), tx);
        Ok(())
    }

    /// A device without a place gets one: a free one, or, on a full node, the place of the
    /// least recently used idle worker, which is told to exit (its device's actor waits for
    /// the place, `Ctx::pinned_slots`, until it has). Refused only when every worker is busy.
    fn make_room(
        &self,
        key: &str,
        devices: &HashMap<String, mpsc::Sender<DeviceCmd>>,
    ) -> Result<(), AgentError> {
        let t = &self.ctx.table;
        let holds_place = t.get(key).is_some_and(|w| {
            !matches!(w.state(), WorkerState::Exited | WorkerState::Exiting) || w.queued_jobs > 0
        });
        let in_use = t.pinned_in_use();
        if holds_place || in_use < self.limits.max_pinned_workers {
            return Ok(());
        }
        let Some(victim) = t.take_lru_idle() else {
            return Err(AgentError::ResourceExhausted(format!(
                "node holds {in_use} pinned devices, its max_pinned_workers, all of them busy; \
                 place {key} elsewhere or wait for one to finish"
            )));
        };
        info!(device = %victim, for_device = %key, "node full: the least recently used idle worker gives its place up");
        self.ctx.metrics.evicted();
        if let Some(tx) = devices.get(&victim) {
            let _ = tx.try_send(DeviceCmd::Retire(format!(
                "gave its place to {key} (least recently used idle worker on a full node)"
            )));
        }
        Ok(())
    }

    /// Cancels a queued or running job; false when this agent does not have it.
    pub async fn cancel(&self, job_id: &str) -> bool {
        let route = self
            .ctx
            .jobs
            .lock()
            .expect("lock")
            .get(job_id)
            .map(|(route, _)| route.clone());
        let Some(route) = route else { return false };
        if let Some(key) = route {
            let tx = self.devices.lock().expect("lock").get(&key).cloned();
            let Some(tx) = tx else { return false };
            let (reply, answer) = oneshot::channel();
            let sent = tx.send(DeviceCmd::Cancel(job_id.to_string(), reply)).await;
            return sent.is_ok() && answer.await == Ok(true);
        }
        let Some(fifo) = self.fifo.lock().expect("lock").clone() else {
            return false;
        };
        let (reply, answer) = oneshot::channel();
        fifo.send(FifoCmd::Cancel(job_id.to_string(), reply))
            .await
            .is_ok()
            && answer.await == Ok(true)
    }

    /// Fences the node: no new jobs, and every job that has not started is handed back
    /// (`not_started`, `NODE_UNAVAILABLE`) so that it runs elsewhere, never twice. Running jobs
    /// go on; their results are still published.
    pub async fn fence(&self, reason: String) {
        self.set_admission(Admission::Fenced(reason.clone()));
        let why = format!("node fenced before the job started: {reason}");
        let senders: Vec<mpsc::Sender<DeviceCmd>> = self
            .devices
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect();
        for tx in senders {
            let _ = tx.send(DeviceCmd::DropQueued(why.clone())).await;
        }
        let fifo = self.fifo.lock().expect("lock").clone();
        if let Some(fifo) = fifo {
            let _ = fifo.send(FifoCmd::DropQueued(why)).await;
        }
    }

    /// Stops the worker of a device (by `host:port`) or with a worker id; false if none.
    pub async fn kill_worker(&self, device: &str, worker_id: &str) -> bool {
        let key = if device.is_empty() {
            match self
                .ctx
                .table
                .snapshot()
                .into_iter()
                .find(|w| w.worker_id == worker_id)
            {
                Some(w) => w.device,
                None => return false,
            }
        } else {
            device.to_string()
        };
        let tx = self.devices.lock().expect("lock").get(&key).cloned();
        match tx {
            Some(tx) => tx
                .send(DeviceCmd::Kill("kill requested by a manager".into()))
                .await
                .is_ok(),
            None => false,
        }
    }

    /// Stops taking jobs, lets accepted ones finish for up to `grace`, then closes every
    /// worker (EOF on its stdin) and waits until all are reaped. Returns the jobs that were
    /// still unfinished when the grace ran out.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.set_admission(Admission::ShuttingDown);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.ctx.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.ctx.jobs_in_flight() == 0 {
                break;
            }
            tokio::select! {
                _ = &mut idle => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let left = self.ctx.jobs_in_flight();
        self.ctx.sessions_stop.cancel();
        self.devices.lock().expect("lock").clear();
        self.fifo.lock().expect("lock").take();
        self.ctx.tracker.close();
        self.ctx.tracker.wait().await;
        left
    }
}
