//! The NetPulse node agent.
//!
//! Theory of operation: the agent registers the node in etcd under a lease (`registry`) and
//! serves `AgentService` (`service`) to managers. A manager's `Session` stream carries
//! dispatches in and events out; every event goes to every session (`events`), so a result is
//! not lost with the manager that asked for it. The core (`agent`) validates and routes: pinned
//! jobs go to their device's actor (`device`: one task that owns the device's queue and its
//! `pinned-worker` process), fifo jobs to the fifo runner (`fifo`: one-shot workers, bounded
//! concurrency); what they share is `ctx`. Each worker process is owned by exactly one task,
//! which reads its frames until its stdout closes and then reaps it, the same way for both
//! strategies (`supervise`, over `process`). The agent
//! never speaks SSH itself. [`run`] assembles all of it; `main` only parses the configuration
//! and turns signals into its shutdown future.

pub mod agent;
pub mod config;
pub mod credentials;
pub mod ctx;
pub mod device;
pub mod error;
pub mod events;
pub mod fifo;
mod files;
pub mod logins;
pub mod metrics;
pub mod places;
pub mod process;
pub mod registry;
pub mod resources;
pub mod service;
pub mod staging;
pub mod supervise;
pub mod table;
mod transfers;
pub mod vault;

use std::sync::Arc;
use std::time::Duration;

use netpulse_proto::agent::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tracing::info;

use crate::agent::{Admission, Agent};
use crate::config::AgentConfig;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The whole agent on `listener`: connects etcd, serves managers, registers the node, and at
/// `shutdown` drains jobs, stops the workers and revokes the lease.
pub async fn run(
    cfg: AgentConfig,
    loaded: Loaded,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let Loaded {
        access,
        credentials,
        staging,
        etcd_tls,
    } = loaded;
    let mut workers = cfg.workers();
    workers.credentials = Arc::new(credentials);
    workers.staging = Arc::new(staging);
    let agent = Agent::new(cfg.node_id.clone(), workers, cfg.limits());
    // No job before the node is registered.
    agent.set_admission(Admission::Fenced("not registered in etcd yet".into()));
    let serve_stop = CancellationToken::new();
    let registry_stop = CancellationToken::new();
    let server = tokio::spawn(serve(agent.clone(), listener, access, serve_stop.clone()));
    // Scrapes are answered until the very end, so the drain can be watched.
    let metrics_stop = CancellationToken::new();
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await?;
            info!(listen = %listener.local_addr()?, "metrics served at /metrics");
            let a = agent.clone();
            let render: netpulse_telemetry::Render = Arc::new(move || {
                a.ctx.metrics.render(
                    &a.ctx.table,
                    a.ctx.fifo_queued.load(std::sync::atomic::Ordering::Relaxed),
                    &a.ctx.workers.staging,
                )
            });
            Some(tokio::spawn(netpulse_telemetry::serve_metrics(
                listener,
                render,
                metrics_stop.clone(),
            )))
        }
        None => None,
    };
    let registry = match registry::start(
        cfg.etcd_endpoints.clone(),
        registry::RegistryConfig {
            etcd_tls,
            ..cfg.registry()
        },
        agent.clone(),
        registry_stop.clone(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            serve_stop.cancel();
            metrics_stop.cancel();
            return Err(e.into());
        }
    };
    // Staged files past their retention go even while nothing touches the area. Stopped
    // before the drain: the drain waits for the tracker's tasks.
    let staging = agent.ctx.workers.staging.clone();
    let sweep_stop = CancellationToken::new();
    let sweep_stopped = sweep_stop.clone();
    agent.ctx.tracker.spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = every.tick() => staging.sweep(),
                _ = sweep_stopped.cancelled() => return,
            }
        }
    });
    info!(node_id = %cfg.node_id, listen = %cfg.listen, "node agent started");
    shutdown.await;
    sweep_stop.cancel();
    let left = agent
        .shutdown(Duration::from_secs(cfg.shutdown_grace_seconds))
        .await;
    if left > 0 {
        info!(
            jobs = left,
            "grace period over; unfinished jobs were stopped with their workers"
        );
    }
    registry_stop.cancel();
    registry.join().await;
    serve_stop.cancel();
    let _ = server.await;
    metrics_stop.cancel();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    info!("node agent stopped");
    Ok(())
}

/// What `run` needs beyond the flags, read from the files they name.
pub struct Loaded {
    pub access: ServeAccess,
    pub credentials: credentials::Credentials,
    pub staging: staging::Staging,
    pub etcd_tls: Option<tonic::transport::ClientTlsConfig>,
}

/// Who may open a session: managers over TLS (mutual when the TLS names a client CA) and, when
/// tokens are set, only with one of them (`authorization: Bearer`; `UNAUTHENTICATED` without).
/// The health service stays open to probes.
#[derive(Clone, Default)]
pub struct ServeAccess {
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    pub manager_tokens: netpulse_proto::auth::AuthLayer,
}

/// The health service name that is SERVING only while the node takes jobs (registered, not
/// draining or fenced): Kubernetes readiness. The empty name is SERVING while the process
/// serves at all: liveness.
pub const READY_SERVICE: &str = "netpulse.agent.v1.AgentService";

/// Serves the agent's gRPC API and `grpc.health.v1` on `listener` until `shutdown` is
/// cancelled.
pub async fn serve(
    agent: Arc<agent::Agent>,
    listener: TcpListener,
    access: ServeAccess,
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
    if let Some(tls) = access.tls {
        builder = builder.tls_config(tls)?;
    }
    let served = builder
        .tcp_nodelay(true)
        .layer(access.manager_tokens)
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
