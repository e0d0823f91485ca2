//! The NetPulse node agent.
//!
//! Theory of operation: the agent registers the node in etcd under a lease (`registry`) and
//! serves `AgentService` (`service`) to managers. A manager's `Session` stream carries
//! dispatches in and events out; every event goes to every session (`events`), so a result is
//! not lost with the manager that asked for it. The core (`agent`) validates and routes: pinned
//! jobs go to their device's actor (`device`: one task that owns the device's queue and its
//! `pinned-worker` process), fifo jobs to the fifo runner (`fifo`: one-shot workers, bounded
//! concurrency). Each worker process is owned by exactly one task, which reads its frames
//! until its stdout closes and then reaps it (`process`). The agent never speaks SSH itself.

pub mod agent;
pub mod config;
pub mod ctx;
pub mod device;
pub mod error;
pub mod events;
pub mod fifo;
pub mod metrics;
pub mod process;
pub mod registry;
pub mod service;
pub mod table;

use std::sync::Arc;

use netpulse_proto::agent::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

/// The health service name that is SERVING only while the node takes jobs (registered, not
/// draining or fenced): Kubernetes readiness. The empty name is SERVING while the process
/// serves at all: liveness.
pub const READY_SERVICE: &str = "netpulse.agent.v1.AgentService";

/// Serves the agent's gRPC API and `grpc.health.v1` on `listener` until `shutdown` is
/// cancelled.
pub async fn serve(
    agent: Arc<agent::Agent>,
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let mut admission = agent.watch_admission();
    let svc = AgentServiceServer::new(service::AgentGrpc::new(agent, shutdown.clone()))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(64 << 20);
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // Readiness follows admission until the server stops (awaited below).
    let stop = shutdown.child_token();
    let stop_health = stop.clone();
    let readiness = tokio::spawn(async move {
        loop {
            let status = match *admission.borrow_and_update() {
                agent::Admission::Open => tonic_health::ServingStatus::Serving,
                _ => tonic_health::ServingStatus::NotServing,
            };
            health.set_service_status(READY_SERVICE, status).await;
            tokio::select! {
                r = admission.changed() => if r.is_err() { return },
                _ = stop.cancelled() => return,
            }
        }
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let served = builder
        .tcp_nodelay(true)
        .add_service(health_svc)
        .add_service(svc)
        .serve_with_incoming_shutdown(
            // Without nodelay on accepted sockets, Nagle and delayed acks add ~40 ms per event.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await;
    stop_health.cancel();
    let _ = readiness.await;
    served
}

#[cfg(test)]
mod supervision_tests;
