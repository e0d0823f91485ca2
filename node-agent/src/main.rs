//! `node-agent`: parse config, set up logs, connect etcd, serve, register; on SIGTERM or
//! SIGINT drain jobs, stop workers, revoke the lease.

use std::process::ExitCode;

use clap::Parser;
use node_agent::config::{AgentConfig, LogFormat};
use tracing::{error, info, warn};

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
    // The vault client's HTTPS uses the process's rustls provider: ring, as tonic's TLS does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Every file the flags name is read before anything starts: a bad one exits 64.
    let loaded = match cfg.load() {
        Ok(l) => l,
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
    if cfg.manager_tokens_file.is_none() && cfg.tls_client_ca.is_none() {
        warn!(
            "any client that reaches --listen can run jobs: set --manager-tokens-file or --tls-client-ca"
        );
    }
    match cfg.platforms() {
        Ok(c) => {
            let c = pinned_worker::platform::install(c);
            info!(platforms = c.names().len(), dir = ?cfg.platforms_dir, "platform definitions loaded");
        }
        Err(e) => {
            error!(error = %e, "not starting: a platform definition is invalid");
            eprintln!("node-agent: {e}");
            return ExitCode::from(64);
        }
    }
    let (pinned, fifo) = (
        cfg.max_pinned_workers as u64,
        cfg.max_fifo_concurrency as u64,
    );
    match node_agent::resources::prepare(pinned, fifo) {
        Ok(h) => info!(
            nofile = h.nofile,
            nproc = h.nproc,
            pinned,
            fifo,
            "resource limits"
        ),
        Err(e) => {
            error!(error = %e, "not starting: this node cannot hold its workers");
            eprintln!("node-agent: {e}");
            return ExitCode::from(64);
        }
    }
    let rt = match netpulse_proto::runtime::build(cfg.runtime_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("node-agent: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        node_agent::run(cfg, loaded, listener, signalled()).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %format!("{e:#}"), "node-agent failed");
            ExitCode::from(1)
        }
    }
}

/// Resolves at SIGINT or SIGTERM.
async fn signalled() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        // Without a SIGTERM handler, Ctrl-C still stops the agent.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        _ = term.recv() => info!("SIGTERM: shutting down"),
    }
}
