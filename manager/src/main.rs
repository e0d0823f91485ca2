//! `manager`: parse config, set up logs, connect etcd, serve until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use manager::config::{LogFormat, ManagerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

// Many small, short-lived gRPC buffers per job: glibc malloc spent ~5% of the manager's CPU
// consolidating them under load; mimalloc does not.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cfg = ManagerConfig::parse();
    if let Err(e) = cfg.validate() {
        eprintln!("manager: {e}");
        return ExitCode::from(64);
    }
    // Webhook HTTPS uses the process's rustls provider: ring, as tonic's TLS does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Every file the flags name is read before anything starts: a bad one exits 64.
    let manager_id = cfg.manager_id();
    let server_cfg = match cfg.load(manager_id) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("manager: {e}");
            return ExitCode::from(64);
        }
    };
    // Held to the end of main: dropping it flushes the spans not yet exported.
    let _telemetry = match netpulse_telemetry::trace::init(netpulse_telemetry::trace::LogConfig {
        service: "netpulse-manager",
        json: matches!(cfg.log_format, LogFormat::Json),
        filter: &cfg.log,
        otlp_endpoint: cfg.otlp_endpoint.as_deref(),
    }) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("manager: {e}");
            return ExitCode::from(64);
        }
    };
    let rt = match netpulse_proto::runtime::build(cfg.runtime_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("manager: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match rt.block_on(run(cfg, server_cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %format!("{e:#}"), "manager failed");
            ExitCode::from(1)
        }
    }
}

async fn run(cfg: ManagerConfig, server_cfg: manager::config::ServerConfig) -> anyhow::Result<()> {
    let opts = server_cfg.etcd_options(Duration::from_secs(5));
    let etcd = etcd_client::Client::connect(&cfg.etcd_endpoints, Some(opts)).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let manager_id = &server_cfg.scheduler.manager_id;
    info!(%manager_id, listen = %cfg.listen, "manager starting");
    let shutdown = CancellationToken::new();
    let mut server = tokio::spawn(manager::server::run(
        server_cfg,
        etcd,
        listener,
        shutdown.clone(),
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        _ = term.recv() => info!("SIGTERM: shutting down"),
        r = &mut server => return r?,
    }
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(20), server).await {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the manager did not stop within 20s"),
    }
}
