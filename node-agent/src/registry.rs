//! Registration of the node in etcd.
//!
//! The node record lives at `<prefix>/nodes/<node_id>`, attached to a lease the agent keeps
//! alive at a third of its TTL, every call under a timeout. Until the record is written the
//! agent is fenced (takes no jobs). If the lease is lost (revoked, expired, or keep-alives
//! failing for longer than the TTL) the agent fences itself first, tells the connected
//! managers, and only then registers again under a new lease: it never serves on a lease the
//! cluster believes dead. The load in the record is refreshed in place, at most every
//! `load_interval`. On shutdown the lease is revoked so the cluster learns at once.
//!
//! All of it runs on a thread of its own ([`start`]), with its own runtime and its own etcd
//! connection: a node busy starting thousands of workers must not miss a keep-alive, because
//! a lapsed lease fences the node.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use netpulse_proto::agent::{Fenced, agent_message::Msg};
pub use netpulse_proto::records::{NodeRecord, node_key};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agent::{Admission, Agent};
use crate::process::unix_ms;

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub prefix: String,
    pub node_id: String,
    /// The gRPC address managers dial.
    pub address: String,
    pub lease_ttl: Duration,
    pub load_interval: Duration,
    /// Every etcd call gives up after this long.
    pub call_timeout: Duration,
    /// etcd over TLS (None: plaintext).
    pub etcd_tls: Option<tonic::transport::ClientTlsConfig>,
}

#[derive(Debug, thiserror::Error)]
enum RegError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("lease {0} is gone (expired or revoked)")]
    LeaseGone(i64),
}

async fn timed<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RegError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| RegError::Timeout(limit))?
        .map_err(RegError::Etcd)
}

struct Registrar {
    client: Client,
    cfg: RegistryConfig,
    agent: Arc<Agent>,
    started_unix_ms: u64,
}

impl Registrar {
    fn record(&self, lease_id: i64) -> NodeRecord {
        let load = self.agent.load();
        NodeRecord {
            node_id: self.cfg.node_id.clone(),
            address: self.cfg.address.clone(),
            max_pinned_workers: load.max_pinned_workers,
            max_fifo_concurrency: load.max_fifo_concurrency,
            pinned_workers: load.pinned_workers,
            fifo_running: load.fifo_running,
            queued_jobs: load.queued_jobs,
            idle_pinned_workers: load.idle_pinned_workers,
            draining: load.draining,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_unix_ms: self.started_unix_ms,
            lease_id,
            device_types: pinned_worker::platform::names(),
        }
    }

    async fn put(&mut self, lease_id: i64) -> Result<NodeRecord, RegError> {
        let rec = self.record(lease_id);
        let value = serde_json::to_vec(&rec).expect("record serializes");
        let key = node_key(&self.cfg.prefix, &self.cfg.node_id);
        timed(
            self.cfg.call_timeout,
            self.client
                .put(key, value, Some(PutOptions::new().with_lease(lease_id))),
        )
        .await?;
        Ok(rec)
    }

    async fn register(&mut self) -> Result<i64, RegError> {
        let ttl = self.cfg.lease_ttl.as_secs().max(1) as i64;
        let lease = timed(self.cfg.call_timeout, self.client.lease_grant(ttl, None))
            .await?
            .id();
        self.put(lease).await?;
        Ok(lease)
    }

    /// Keeps `lease` alive until it is lost (returns why) or shutdown (returns None).
    async fn keep_alive(&mut self, lease: i64, shutdown: &CancellationToken) -> Option<RegError> {
        let ttl = self.cfg.lease_ttl;
        let (mut keeper, mut stream) =
            match timed(self.cfg.call_timeout, self.client.lease_keep_alive(lease)).await {
                Ok(ks) => ks,
                Err(e) => return Some(e),
            };
        let mut last_ok = Instant::now();
        let mut last_load = self.agent.load();
        let mut next_load = Instant::now() + self.cfg.load_interval;
        let mut tick = tokio::time::interval(ttl / 3);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tick.tick() => {}
            }
            let sent = Instant::now();
            let beat = async {
                keeper.keep_alive().await?;
                stream.message().await
            };
            match tokio::time::timeout(self.cfg.call_timeout, beat).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                    self.agent.ctx.metrics.lease_keepalive(sent.elapsed());
                    last_ok = Instant::now();
                }
                Ok(Ok(_)) => return Some(RegError::LeaseGone(lease)),
                Ok(Err(e)) => warn!(error = %e, "lease keep-alive failed"),
                Err(_) => warn!(timeout = ?self.cfg.call_timeout, "lease keep-alive timed out"),
            }
            if last_ok.elapsed() > ttl {
                return Some(RegError::LeaseGone(lease));
            }
            let load = self.agent.load();
            if load != last_load && Instant::now() >= next_load {
                match self.put(lease).await {
                    Ok(_) => last_load = load,
                    Err(e) => warn!(error = %e, "updating the node load failed"),
                }
                next_load = Instant::now() + self.cfg.load_interval;
            }
        }
    }

    async fn fence(&self, why: String) {
        self.agent.ctx.metrics.lease_lost();
        warn!(reason = %why, "fencing: not taking jobs until registered again");
        self.agent.fence(why.clone()).await;
        self.agent
            .ctx
            .events
            .publish(Msg::Fenced(Fenced { reason: why }));
    }
}

/// The registry's thread: connected to etcd, registering, until its `shutdown`.
pub struct Registry {
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Registry {
    /// Waits until the thread has revoked the lease (after its `shutdown`) and ended.
    pub async fn join(self) {
        let _ = self.done.await;
    }
}

/// Connects etcd and starts registering on a thread of its own. Fails when etcd cannot be
/// connected at start.
pub async fn start(
    endpoints: Vec<String>,
    cfg: RegistryConfig,
    agent: Arc<Agent>,
    shutdown: CancellationToken,
) -> Result<Registry, etcd_client::Error> {
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(etcd_client::Error::IoError)?;
    std::thread::Builder::new()
        .name("etcd-lease".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut opts = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(5));
                if let Some(tls) = cfg.etcd_tls.clone() {
                    opts = opts.with_tls(tls);
                }
                // The client's connection tasks live on this thread's runtime.
                let client = match Client::connect(&endpoints, Some(opts)).await {
                    Ok(c) => {
                        let _ = connected_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = connected_tx.send(Err(e));
                        return;
                    }
                };
                run(client, cfg, agent, shutdown).await;
            });
            let _ = done_tx.send(());
        })
        .map_err(etcd_client::Error::IoError)?;
    match connected.await {
        Ok(Ok(())) => Ok(Registry { done }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(etcd_client::Error::IoError(std::io::Error::other(
            "the etcd lease thread ended before connecting",
        ))),
    }
}

/// Registers and stays registered until `shutdown`; then revokes the lease.
pub async fn run(
    client: Client,
    cfg: RegistryConfig,
    agent: Arc<Agent>,
    shutdown: CancellationToken,
) {
    let mut r = Registrar {
        client,
        cfg,
        agent,
        started_unix_ms: unix_ms(),
    };
    r.agent
        .set_admission(Admission::Fenced("not registered in etcd yet".into()));
    let mut backoff = Duration::from_millis(200);
    let mut lease = None;
    while !shutdown.is_cancelled() {
        let id = match r.register().await {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "registration failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        lease = Some(id);
        info!(node_id = %r.cfg.node_id, lease = id, key = %node_key(&r.cfg.prefix, &r.cfg.node_id), "registered");
        if matches!(r.agent.admission(), Admission::Fenced(_)) {
            r.agent.set_admission(Admission::Open);
        }
        match r.keep_alive(id, &shutdown).await {
            None => break,
            Some(why) => {
                lease = None;
                r.fence(format!("etcd lease lost: {why}")).await;
            }
        }
    }
    if let Some(id) = lease {
        match timed(r.cfg.call_timeout, r.client.lease_revoke(id)).await {
            Ok(_) => info!(lease = id, "lease revoked"),
            Err(e) => {
                warn!(lease = id, error = %e, "revoking the lease failed; it expires by itself")
            }
        }
    }
}
