//! The manager's assembly: cluster view, job store, scheduler, liveness and adoption, and the
//! gRPC server (public API, health, reflection) behind auth, load shedding and limits.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use netpulse_proto::api::cluster_service_server::ClusterServiceServer;
use netpulse_proto::api::job_service_server::JobServiceServer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::admin::ClusterOps;
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::kv::EtcdKv;
use crate::liveness::LivenessConfig;
use crate::metrics::Metrics;
use crate::placement::Placements;
use crate::scheduler::{Parts, Scheduler};
use crate::service::Api;
use crate::shed::ShedLayer;
use crate::store::JobStore;
use netpulse_proto::auth::AuthLayer;

/// Agent events buffered between the links and the scheduler.
const EVENT_BUFFER: usize = 65_536;

/// Serves until `shutdown`; then stops the tasks and revokes this manager's lease.
pub async fn run(
    cfg: ServerConfig,
    etcd: Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
    let cluster = Cluster::start(
        etcd.clone(),
        &cfg.scheduler.prefix,
        cfg.scheduler.manager_id.clone(),
        crate::cluster::AgentAccess {
            tls: cfg.agent_tls.clone(),
            token: cfg.agent_token.clone(),
        },
        events_tx,
        &tracker,
        shutdown.clone(),
    );
    let store = JobStore::new(etcd.clone(), cfg.store.clone(), &tracker);
    let call_timeout = cfg.scheduler.call_timeout;
    let placements = Arc::new(Placements::new(
        Arc::new(EtcdKv::new(etcd.clone(), call_timeout)),
        &cfg.scheduler.prefix,
    ));
    let ops = Arc::new(ClusterOps::new(
        cluster.clone(),
        placements.clone(),
        call_timeout,
    ));
    let webhooks = crate::webhooks::Webhooks::start(
        cfg.webhooks.clone(),
        etcd.clone(),
        store.clone(),
        &cfg.scheduler.prefix,
        cfg.scheduler.manager_id.clone(),
        cfg.lease_ttl / 2,
        &tracker,
        shutdown.clone(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut metrics = Metrics::default();
    webhooks.metrics.register(metrics.registry());
    let metrics = Arc::new(metrics);
    let scheduler = Scheduler::start(
        cfg.scheduler.clone(),
        Parts {
            listeners: vec![metrics.clone(), webhooks.clone()],
            webhooks,
            store: store.clone(),
            cluster: cluster.clone(),
            etcd,
            placements,
            ops,
        },
        events_rx,
        &tracker,
        shutdown.clone(),
    );
    let liveness_stop = CancellationToken::new();
    let liveness = crate::liveness::start(
        LivenessConfig {
            endpoints: cfg.etcd_endpoints.clone(),
            options: cfg.etcd_options(call_timeout),
            key: format!(
                "{}{}",
                crate::recovery::managers_prefix(&cfg.scheduler.prefix),
                cfg.scheduler.manager_id
            ),
            ttl: cfg.lease_ttl,
            call_timeout,
        },
        liveness_stop.clone(),
    )?;
    tracker.spawn(crate::recovery::run(
        scheduler.clone(),
        liveness.lease.clone(),
        cfg.lease_ttl / 2,
        shutdown.clone(),
    ));

    let api = Api {
        library: Arc::new(std::sync::Mutex::new(netpulse_textfsm::Library::new(
            cfg.scheduler.ntc_templates_dir.clone(),
            cfg.scheduler.templates_dir.clone(),
        ))),
        scheduler: scheduler.clone(),
        max_jobs_per_stream: cfg.max_jobs_per_stream,
        task_retention_minutes: cfg.task_retention_minutes,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<JobServiceServer<Api>>().await;
    health.set_serving::<ClusterServiceServer<Api>>().await;
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        b.register_encoded_file_descriptor_set(netpulse_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("netpulse.v1.JobService")
            .with_service_name("netpulse.v1.ClusterService")
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure()).build_v1()?;
    let reflection_v1alpha =
        reflection(tonic_reflection::server::Builder::configure()).build_v1alpha()?;

    let auth = AuthLayer::new(cfg.tokens.clone());
    if !auth.enabled() {
        warn!("no API tokens configured: the API is open to anyone who can reach it");
    }
    let limits = tower::ServiceBuilder::new()
        .layer(ShedLayer::new(cfg.max_concurrent_requests))
        .layer(auth)
        .into_inner();
    info!(
        manager_id = %cfg.scheduler.manager_id,
        listen = %listener.local_addr()?,
        "manager serving"
    );
    if let Some(addr) = cfg.metrics_listen {
        let listener = TcpListener::bind(addr).await?;
        info!(listen = %listener.local_addr()?, "metrics served at /metrics");
        let render: netpulse_telemetry::Render =
            Arc::new(move || metrics.render(&cluster.nodes(), store.stats()));
        let stop = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = netpulse_telemetry::serve_metrics(listener, render, stop).await {
                warn!(error = %e, "metrics endpoint stopped");
            }
        });
    }
    let stop = shutdown.clone();
    // The builder's nodelay and keepalive apply only to sockets it binds itself; without
    // nodelay, Nagle and delayed acks add ~40 ms to every small response.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = cfg.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    builder
        .max_concurrent_streams(Some(cfg.max_requests_per_connection as u32))
        .timeout(cfg.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(limits)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(JobServiceServer::new(api.clone()))
        .add_service(ClusterServiceServer::new(api))
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await?;
    shutdown.cancel();
    // The store's writer ends, its queue flushed, once the last task holding the scheduler has.
    drop(scheduler);
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        warn!("some manager tasks did not stop within 10s");
    }
    // Last: other replicas adopt what is left as soon as the lease is revoked.
    liveness_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(10), liveness.join())
        .await
        .is_err()
    {
        warn!("revoking the manager's lease did not finish within 10s");
    }
    info!("manager stopped");
    Ok(())
}
