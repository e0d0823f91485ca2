//! The gRPC adapter: one `Session` stream per manager. Converts messages, calls the agent,
//! and turns refusals into `JobRejected` answers on the same stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use netpulse_proto::agent::agent_service_server::AgentService;
use netpulse_proto::agent::{
    AgentMessage, JobRejected, ManagerMessage, RejectCode, Welcome, WorkerTable,
    agent_message::Msg, manager_message::Msg as In,
};
use netpulse_proto::api::{DownloadFileRequest, FileChunk, StagedFile, UploadFileRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::agent::{Admission, Agent};
use crate::events::SessionTx;

/// Events buffered per manager session before it counts as not reading.
const SESSION_BUFFER: usize = 4096;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AgentGrpc {
    agent: Arc<Agent>,
    shutdown: CancellationToken,
    next_session: AtomicU64,
}

impl AgentGrpc {
    pub fn new(agent: Arc<Agent>, shutdown: CancellationToken) -> Self {
        AgentGrpc {
            agent,
            shutdown,
            next_session: AtomicU64::new(1),
        }
    }
}

fn send(tx: &SessionTx, msg: Msg) {
    let _ = tx.try_send(Ok(AgentMessage { msg: Some(msg) }));
}

#[tonic::async_trait]
impl AgentService for AgentGrpc {
    type SessionStream = ReceiverStream<Result<AgentMessage, Status>>;
    type DownloadStream = ReceiverStream<Result<FileChunk, Status>>;

    async fn upload(
        &self,
        req: Request<Streaming<UploadFileRequest>>,
    ) -> Result<Response<StagedFile>, Status> {
        crate::files::upload(&self.agent.ctx.workers.staging, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn download(
        &self,
        req: Request<DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let staging = self.agent.ctx.workers.staging.clone();
        crate::files::download(staging, &self.agent.ctx.tracker, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn session(
        &self,
        req: Request<Streaming<ManagerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = req.into_inner();
        let manager_id = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(ManagerMessage {
                msg: Some(In::Hello(h)),
            }))) => h.manager_id,
            Ok(Ok(Some(_))) => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be hello",
                ));
            }
            Ok(Ok(None)) => {
                return Err(Status::cancelled(
                    "the manager closed the session before hello",
                ));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "no hello within {HELLO_TIMEOUT:?}"
                )));
            }
        };
        match self.agent.admission() {
            Admission::Fenced(why) => {
                return Err(Status::unavailable(format!("node is fenced: {why}")));
            }
            Admission::ShuttingDown => return Err(Status::unavailable("node is shutting down")),
            Admission::Open | Admission::Draining => {}
        }
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        let agent = self.agent.clone();
        send(
            &tx,
            Msg::Welcome(Welcome {
                node_id: agent.ctx.node_id.clone(),
                load: Some(agent.load()),
                version: env!("CARGO_PKG_VERSION").into(),
            }),
        );
        // Closed by the bus (the manager stopped reading): the stream must end, so the manager
        // reconnects and asks about its jobs instead of missing their events.
        let closed = agent.ctx.events.subscribe(id, tx.clone());
        info!(session = id, %manager_id, "manager session opened");
        let shutdown = self.shutdown.clone();
        let sessions_stop = agent.ctx.sessions_stop.clone();
        agent.ctx.tracker.clone().spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => m,
                    _ = shutdown.cancelled() => break,
                    _ = sessions_stop.cancelled() => break,
                    _ = tx.closed() => break,
                    _ = closed.cancelled() => break,
                };
                match msg {
                    Ok(Some(m)) => {
                        // A manager's burst waits while the event streams are full.
                        agent.ctx.events.room().await;
                        handle(&agent, &tx, m).await
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(session = id, error = %e, "manager stream ended");
                        break;
                    }
                }
            }
            agent.ctx.events.unsubscribe(id);
            info!(session = id, %manager_id, "manager session closed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn handle(agent: &Agent, tx: &SessionTx, m: ManagerMessage) {
    let reject = |job_id: String, code: RejectCode, message: String| {
        Msg::Rejected(JobRejected {
            job_id,
            code: code as i32,
            message,
        })
    };
    match m.msg {
        Some(In::Dispatch(d)) => {
            let job_id = d.job_id.clone();
            if let Err(e) = agent.dispatch(d) {
                send(tx, reject(job_id, e.code(), e.to_string()));
            }
        }
        Some(In::Cancel(c)) => {
            if !agent.cancel(&c.job_id).await {
                let msg = format!("job {} is not queued or running on this node", c.job_id);
                send(tx, reject(c.job_id, RejectCode::NotFound, msg));
            }
        }
        Some(In::KillWorker(k)) => {
            if !agent.kill_worker(&k.device, &k.worker_id).await {
                debug!(device = %k.device, worker_id = %k.worker_id, "kill-worker: no such worker");
            }
        }
        Some(In::Drain(_)) => {
            agent.set_admission(Admission::Draining);
            agent.ctx.events.publish(Msg::Load(agent.load()));
        }
        Some(In::ListWorkers(l)) => send(
            tx,
            Msg::Workers(WorkerTable {
                request_id: l.request_id,
                workers: agent.workers(),
            }),
        ),
        Some(In::Hello(_)) => warn!("ignoring a second hello"),
        None => warn!("ignoring an empty manager message"),
    }
}
