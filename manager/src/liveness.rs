//! This manager's liveness key, `<prefix>/managers/<id>`, on a lease kept alive by a thread of
//! its own, with its own runtime and etcd connection: a replica busy with a burst of jobs must
//! not miss a keep-alive, or the other replicas adopt its jobs. A slow answer within the TTL is
//! not a lost lease; when the lease is lost the thread registers again under a new one. On stop
//! the lease is revoked, so other replicas adopt this one's jobs at once.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub struct Liveness {
    /// The lease the key is on; None while not registered.
    pub lease: watch::Receiver<Option<i64>>,
    done: oneshot::Receiver<()>,
}

impl Liveness {
    /// Waits until the thread has revoked the lease (after its stop) and ended.
    pub async fn join(self) {
        let _ = self.done.await;
    }
}

#[derive(Clone, Debug)]
pub struct LivenessConfig {
    pub endpoints: Vec<String>,
    /// The manager's etcd connection settings (timeouts, TLS).
    pub options: etcd_client::ConnectOptions,
    pub key: String,
    pub ttl: Duration,
    pub call_timeout: Duration,
}

pub fn start(cfg: LivenessConfig, stop: CancellationToken) -> std::io::Result<Liveness> {
    let (lease_tx, lease) = watch::channel(None);
    let (done_tx, done) = oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("etcd-liveness".into())
        .spawn(move || {
            rt.block_on(keep(cfg, lease_tx, stop));
            let _ = done_tx.send(());
        })?;
    Ok(Liveness { lease, done })
}

async fn keep(cfg: LivenessConfig, lease: watch::Sender<Option<i64>>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    let mut client = None;
    while !stop.is_cancelled() {
        let c = match client.take() {
            Some(c) => c,
            None => match Client::connect(&cfg.endpoints, Some(cfg.options.clone())).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "connecting etcd for the manager's liveness failed");
                    tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => return }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let mut c = c;
        match registered(&mut c, &cfg, &lease, &stop).await {
            Ok(()) => {
                if let Some(id) = lease.send_replace(None) {
                    let _ = tokio::time::timeout(cfg.call_timeout, c.lease_revoke(id)).await;
                    info!(lease_id = id, "manager lease revoked");
                }
                return;
            }
            Err(why) => {
                lease.send_replace(None);
                warn!(reason = %why, retry_in = ?backoff, "manager lease lost; registering again");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => return }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        client = Some(c);
    }
}

/// Grants a lease, writes the key and keeps the lease alive until `stop` (Ok) or its loss.
async fn registered(
    c: &mut Client,
    cfg: &LivenessConfig,
    lease: &watch::Sender<Option<i64>>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let t = cfg.call_timeout;
    let timed = |what: &'static str| move |_| format!("{what}: no answer within {t:?}");
    let id = tokio::time::timeout(t, c.lease_grant(cfg.ttl.as_secs().max(1) as i64, None))
        .await
        .map_err(timed("lease grant"))?
        .map_err(|e| e.to_string())?
        .id();
    tokio::time::timeout(
        t,
        c.put(cfg.key.clone(), "", Some(PutOptions::new().with_lease(id))),
    )
    .await
    .map_err(timed("put"))?
    .map_err(|e| e.to_string())?;
    let (mut keeper, mut answers) = tokio::time::timeout(t, c.lease_keep_alive(id))
        .await
        .map_err(timed("keep-alive"))?
        .map_err(|e| e.to_string())?;
    info!(key = %cfg.key, lease_id = id, "manager registered");
    lease.send_replace(Some(id));
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(cfg.ttl / 3);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        let beat = async {
            keeper.keep_alive().await?;
            answers.message().await
        };
        match tokio::time::timeout(t, beat).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = Instant::now(),
            Ok(Ok(_)) => return Err(format!("lease {id} is gone (expired or revoked)")),
            Ok(Err(e)) => warn!(error = %e, "manager lease keep-alive failed"),
            Err(_) => warn!(timeout = ?t, "manager lease keep-alive timed out"),
        }
        if last_ok.elapsed() > cfg.ttl {
            return Err(format!("no keep-alive answer for {:?}", cfg.ttl));
        }
    }
}
