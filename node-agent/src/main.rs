//! `node-agent`: parse config, set up logs, connect etcd, serve, register; on SIGTERM or
//! SIGINT drain jobs, stop workers, revoke the lease.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use node_agent::agent::{Admission, Agent};
use node_agent::config::{AgentConfig, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

// Many small, short-lived gRPC buffers per job: glibc malloc spent ~5% of the manager's CPU
// consolidating them under load; mimalloc does not.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cfg = AgentConfig::parse();
    if let Err(e) = cfg.validate() {
        eprintln!("node-agent: {e}");
        return ExitCode::from(64);
    }
    let tls = match cfg.tls() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("node-agent: {e}");
            return ExitCode::from(64);
        }
    };
    // Held to the end of main: dropping it flushes the spans not yet exported.
    let _telemetry = match netpulse_telemetry::trace::init(netpulse_telemetry::trace::LogConfig {
        service: "netpulse-agent",
        json: matches!(cfg.log_format, LogFormat::Json),
        filter: &cfg.log,
        otlp_endpoint: cfg.otlp_endpoint.as_deref(),
    }) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("node-agent: {e}");
            return ExitCode::from(64);
        }
    };
    let rt = match netpulse_proto::runtime::build(cfg.runtime_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("node-agent: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match rt.block_on(run(cfg, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %format!("{e:#}"), "node-agent failed");
            ExitCode::from(1)
        }
    }
}

async fn run(
    cfg: AgentConfig,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> anyhow::Result<()> {
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(5));
    let etcd = etcd_client::Client::connect(&cfg.etcd_endpoints, Some(opts)).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let agent = Agent::new(cfg.node_id.clone(), cfg.workers(), cfg.limits());
    // No job before the node is registered.
    agent.set_admission(Admission::Fenced("not registered in etcd yet".into()));
    let serve_stop = CancellationToken::new();
    let registry_stop = CancellationToken::new();
    let server = tokio::spawn(node_agent::serve(
        agent.clone(),
        listener,
        tls,
        serve_stop.clone(),
    ));
    // Scrapes are answered until the very end, so the drain can be watched.
    let metrics_stop = CancellationToken::new();
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            info!(listen = %listener.local_addr()?, "metrics served at /metrics");
            let a = agent.clone();
            let render: netpulse_telemetry::Render = std::sync::Arc::new(move || {
                a.ctx.metrics.render(
                    &a.ctx.table,
                    a.ctx.fifo_queued.load(std::sync::atomic::Ordering::Relaxed),
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
    let registry = tokio::spawn(node_agent::registry::run(
        etcd,
        cfg.registry(),
        agent.clone(),
        registry_stop.clone(),
    ));
    info!(node_id = %cfg.node_id, listen = %cfg.listen, "node agent started");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        _ = term.recv() => info!("SIGTERM: shutting down"),
    }
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
    let _ = registry.await;
    serve_stop.cancel();
    let _ = server.await;
    metrics_stop.cancel();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    info!("node agent stopped");
    Ok(())
}
