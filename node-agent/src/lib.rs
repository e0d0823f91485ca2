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
pub mod device;
pub mod error;
pub mod events;
pub mod fifo;
pub mod process;
pub mod registry;
pub mod service;
pub mod table;

use std::sync::Arc;

use netpulse_proto::agent::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

/// Serves the agent's gRPC API on `listener` until `shutdown` is cancelled.
pub async fn serve(
    agent: Arc<agent::Agent>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let svc = AgentServiceServer::new(service::AgentGrpc::new(agent, shutdown.clone()))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(64 << 20);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(svc)
        .serve_with_incoming_shutdown(
            // Without nodelay on accepted sockets, Nagle and delayed acks add ~40 ms per event.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
}

#[cfg(test)]
mod supervision_tests;
