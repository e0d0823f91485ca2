//! Cluster operations: nodes, workers, kill and drain. Worker tables come from the agents
//! themselves, asked over their sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netpulse_proto::agent::{self, WorkerInfo, WorkerState, manager_message::Msg as Out};
use netpulse_proto::api::{Node, Worker};
use tokio::sync::oneshot;

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::placement::Placements;
use crate::record::{new_job_id, now_ms};

fn state_name(s: WorkerState) -> String {
    s.as_str_name()
        .trim_start_matches("WORKER_STATE_")
        .to_ascii_lowercase()
}

fn worker(node_id: &str, w: WorkerInfo) -> Worker {
    let (host, port) = match w.device.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(0)),
        None => (w.device.clone(), 0),
    };
    let now = now_ms() as u64;
    let state = w.state();
    Worker {
        worker_id: w.worker_id,
        node_id: node_id.to_string(),
        host,
        port,
        state: state_name(state),
        pid: w.pid as u64,
        keepalive_ok: state != WorkerState::Unhealthy && w.last_keepalive_unix_ms > 0,
        last_keepalive_unix_ms: w.last_keepalive_unix_ms as i64,
        last_keepalive_rtt_us: w.last_keepalive_rtt_us,
        jobs_done: w.jobs_done,
        session_reuses: w.session_reuses,
        uptime_ms: if w.spawned_unix_ms > 0 && state != WorkerState::Exited {
            now.saturating_sub(w.spawned_unix_ms)
        } else {
            0
        },
    }
}

/// Answers about nodes and workers, and acts on them. Worker tables come from the agents over
/// their sessions; the event loop hands each answer back ([`ClusterOps::on_worker_table`]).
pub struct ClusterOps {
    cluster: Arc<Cluster>,
    placements: Arc<Placements>,
    /// Worker-table requests waiting for their node's answer, by request id.
    tables: Mutex<HashMap<String, oneshot::Sender<Vec<WorkerInfo>>>>,
    call_timeout: Duration,
}

impl ClusterOps {
    pub fn new(cluster: Arc<Cluster>, placements: Arc<Placements>, call_timeout: Duration) -> Self {
        ClusterOps {
            cluster,
            placements,
            tables: Mutex::new(HashMap::new()),
            call_timeout,
        }
    }

    /// A node's answer to [`ClusterOps::worker_table`].
    pub fn on_worker_table(&self, t: agent::WorkerTable) {
        if let Some(reply) = self.tables.lock().expect("lock").remove(&t.request_id) {
            let _ = reply.send(t.workers);
        }
    }

    /// Asks a node for its worker table.
    async fn worker_table(&self, node_id: &str) -> Result<Vec<WorkerInfo>, ApiError> {
        let request_id = new_job_id();
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
            Ok(()) => tokio::time::timeout(self.call_timeout, rx).await,
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
                self.call_timeout
            ))),
        }
    }

    pub fn list_nodes(&self) -> Vec<Node> {
        self.cluster
            .nodes()
            .values()
            .map(|n| Node {
                node_id: n.node_id.clone(),
                address: n.address.clone(),
                pinned_workers: n.pinned_workers,
                max_pinned_workers: n.max_pinned_workers,
                fifo_running: n.fifo_running,
                max_fifo_concurrency: n.max_fifo_concurrency,
                queued_jobs: n.queued_jobs,
                draining: n.draining,
                version: n.version.clone(),
                started_unix_ms: n.started_unix_ms as i64,
            })
            .collect()
    }

    fn live_node(&self, node_id: &str) -> Result<(), ApiError> {
        if self.cluster.nodes().contains_key(node_id) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("node {node_id:?} is not live")))
        }
    }

    /// Workers of one node or of all; nodes that do not answer in time are left out.
    pub async fn list_workers(
        self: &Arc<Self>,
        node_id: &str,
        host: &str,
    ) -> Result<Vec<Worker>, ApiError> {
        let nodes: Vec<String> = if node_id.is_empty() {
            self.cluster.nodes().keys().cloned().collect()
        } else {
            self.live_node(node_id)?;
            vec![node_id.to_string()]
        };
        let mut set = tokio::task::JoinSet::new();
        for n in nodes {
            let s = self.clone();
            set.spawn(async move { (s.worker_table(&n).await, n) });
        }
        let mut out = Vec::new();
        while let Some(Ok((table, n))) = set.join_next().await {
            match table {
                Ok(t) => out.extend(t.into_iter().map(|w| worker(&n, w))),
                Err(e) if !node_id.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(node_id = %n, error = %e, "leaving a node out of the worker list")
                }
            }
        }
        out.retain(|w| host.is_empty() || w.host == host);
        out.sort_by(|a, b| (&a.node_id, &a.host, a.port).cmp(&(&b.node_id, &b.host, b.port)));
        Ok(out)
    }

    /// Stops the worker with `worker_id`, or the worker of `host:port`.
    pub async fn kill_worker(
        self: &Arc<Self>,
        worker_id: &str,
        host: &str,
        port: u32,
    ) -> Result<(), ApiError> {
        if worker_id.is_empty() == host.is_empty() {
            return Err(ApiError::InvalidArgument(
                "give worker_id or host (with port, 0 for 22), not both".into(),
            ));
        }
        let port = if port == 0 { 22 } else { port };
        let workers = self.list_workers("", host).await?;
        let w = workers
            .into_iter()
            .find(|w| {
                w.state != "exited"
                    && if worker_id.is_empty() {
                        w.port == port
                    } else {
                        w.worker_id == worker_id
                    }
            })
            .ok_or_else(|| {
                ApiError::NotFound(if worker_id.is_empty() {
                    format!("no live worker for {host}:{port}")
                } else {
                    format!("no live worker {worker_id}")
                })
            })?;
        self.cluster.send(
            &w.node_id,
            Out::KillWorker(agent::KillWorker {
                worker_id: w.worker_id.clone(),
                device: format!("{}:{}", w.host, w.port),
            }),
        )
    }

    /// Stops new work on the node and moves its idle devices away: their placements go and
    /// their workers stop, so each device's next job is placed on another node.
    pub async fn drain_node(self: &Arc<Self>, node_id: &str) -> Result<u32, ApiError> {
        self.live_node(node_id)?;
        self.cluster.send(node_id, Out::Drain(agent::Drain {}))?;
        let table = self.worker_table(node_id).await?;
        let mut moved = 0;
        for w in table {
            let pinned = w.strategy() != agent::Strategy::Fifo;
            let idle = w.queued_jobs == 0 && w.state() != WorkerState::Busy;
            if !pinned || !idle {
                continue;
            }
            self.placements.unplace(&w.device, node_id).await?;
            if w.state() != WorkerState::Exited {
                self.cluster.send(
                    node_id,
                    Out::KillWorker(agent::KillWorker {
                        worker_id: w.worker_id.clone(),
                        device: w.device.clone(),
                    }),
                )?;
            }
            moved += 1;
        }
        tracing::info!(%node_id, devices_moved = moved, "node drained");
        Ok(moved)
    }
}
