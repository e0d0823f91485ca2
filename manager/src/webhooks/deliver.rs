//! Making deliveries: a bounded number at once, each retried with doubling, jittered delays
//! until delivered or older than the maximum age; signed with HMAC-SHA256 over the timestamp
//! and the body. The scan claims the records of managers that are gone and picks up this
//! replica's own records that did not fit in the queue.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use netpulse_proto::manager::WebhookDelivery;
use netpulse_telemetry::prometheus_client::metrics::counter::Counter;
use netpulse_telemetry::prometheus_client::metrics::family::Family;
use netpulse_telemetry::prometheus_client::metrics::gauge::Gauge;
use netpulse_telemetry::prometheus_client::metrics::histogram::Histogram;
use netpulse_telemetry::prometheus_client::registry::Registry;
use prost::Message;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{Delivery, WebhookConfig, Webhooks, is_link_local, payload, secret_file};
use crate::record::now_ms;
use crate::store::Op;

type Labels = Vec<(&'static str, String)>;

/// Deliveries by outcome, the time from event to delivery, and how many wait.
#[derive(Clone)]
pub struct WebhookMetrics {
    outcomes: Family<Labels, Counter>,
    latency: Histogram,
    backlog: Gauge,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        WebhookMetrics {
            outcomes: Family::default(),
            latency: netpulse_telemetry::seconds_histogram(),
            backlog: Gauge::default(),
        }
    }
}

impl WebhookMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome: delivered, retried (failed, tried again), expired (given up at the maximum age), dropped (a start notice the write queue had no room for)",
            self.outcomes.clone(),
        );
        registry.register(
            "webhook_delivery_seconds",
            "Time from a webhook's event to its delivery",
            self.latency.clone(),
        );
        registry.register(
            "webhook_backlog",
            "Webhook deliveries queued or in flight in this manager",
            self.backlog.clone(),
        );
    }

    pub(super) fn outcome(&self, o: &str) {
        self.outcomes
            .get_or_create(&vec![("outcome", o.to_string())])
            .inc();
    }

    pub(super) fn backlog(&self, by: i64) {
        self.backlog.inc_by(by);
    }
}

/// Resolves names as the system does and drops link-local addresses, so a name cannot lead a
/// delivery to a metadata service.
struct NoLinkLocal;

impl reqwest::dns::Resolve for NoLinkLocal {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> =
                all.into_iter().filter(|a| !is_link_local(a.ip())).collect();
            if kept.is_empty() {
                return Err(format!("{host} resolves to no address that is not link-local").into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(super) struct State {
    client: reqwest::Client,
    /// Event ids queued or in flight here.
    inflight: Mutex<HashSet<String>>,
    me: OnceLock<Weak<Webhooks>>,
}

impl State {
    pub(super) fn new(cfg: &WebhookConfig) -> Result<State, String> {
        let mut b = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // A redirect could lead anywhere the allow-list does not.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("netpulse-webhooks/", env!("CARGO_PKG_VERSION")));
        if !cfg.destinations.allow_link_local {
            b = b.dns_resolver(NoLinkLocal);
        }
        let client = b.build().map_err(|e| format!("the webhook client: {e}"))?;
        Ok(State {
            client,
            inflight: Mutex::new(HashSet::new()),
            me: OnceLock::new(),
        })
    }

    pub(super) fn set_me(&self, w: &Arc<Webhooks>) {
        let _ = self.me.set(Arc::downgrade(w));
    }

    pub(super) fn me(&self) -> Weak<Webhooks> {
        self.me.get().cloned().unwrap_or_default()
    }

    /// Marks the event as handled here; false when it already is.
    pub(super) fn claim(&self, id: &str) -> bool {
        self.inflight.lock().expect("lock").insert(id.to_string())
    }

    pub(super) fn unclaim(&self, id: &str) {
        self.inflight.lock().expect("lock").remove(id);
    }

    fn holds(&self, id: &str) -> bool {
        self.inflight.lock().expect("lock").contains(id)
    }
}

/// Takes queued deliveries, `concurrency` at a time, until `stop`.
pub(super) async fn run(
    w: Arc<Webhooks>,
    mut rx: mpsc::Receiver<Delivery>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(w.cfg.concurrency));
    loop {
        let d = tokio::select! {
            d = rx.recv() => match d { Some(d) => d, None => return },
            _ = stop.cancelled() => return,
        };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.cancelled() => return,
        };
        let (w, stop) = (w.clone(), stop.clone());
        tracker.spawn(async move {
            let id = d.record.event_id.clone();
            deliver(&w, d, &stop).await;
            w.deliver.unclaim(&id);
            w.metrics.backlog(-1);
            drop(permit);
        });
    }
}

/// The body of a record: kept in it (a start), or rebuilt from the job's final record.
async fn body_of(w: &Webhooks, r: &WebhookDelivery) -> Option<Arc<Vec<u8>>> {
    if !r.body.is_empty() {
        return Some(Arc::new(r.body.clone()));
    }
    let job = w.store.get(&r.job_id).await.ok().flatten()?;
    crate::record::is_final(job.status()).then(|| Arc::new(payload(&r.event_id, &r.event, &job)))
}

/// Attempts until delivered, given up or stopped (the record then stays for another replica).
async fn deliver(w: &Webhooks, d: Delivery, stop: &CancellationToken) {
    let r = d.record;
    let gone = |why: &str| {
        warn!(event_id = %r.event_id, url = %r.url, reason = why, "webhook delivery given up");
        w.metrics.outcome("expired");
    };
    let body = match d.body {
        Some(b) => b,
        None => match body_of(w, &r).await {
            Some(b) => b,
            None => {
                gone("the job's record is gone (its result TTL passed)");
                forget(w, &r.event_id).await;
                return;
            }
        },
    };
    let deadline = r.created_unix_ms + w.cfg.max_age.as_millis() as i64;
    let mut delay = w.cfg.retry_initial;
    let mut attempt = 0u32;
    loop {
        match post(w, &r, &body).await {
            Ok(()) => {
                w.metrics.outcome("delivered");
                let age = (now_ms() - r.created_unix_ms).max(0) as f64 / 1000.0;
                w.metrics.latency.observe(age);
                debug!(event_id = %r.event_id, attempt, "webhook delivered");
                forget(w, &r.event_id).await;
                return;
            }
            Err(e) => {
                attempt += 1;
                let wait = jittered(delay, &r.event_id, attempt);
                if now_ms() + wait.as_millis() as i64 > deadline {
                    gone(&format!("{e}; still failing after {attempt} attempts"));
                    forget(w, &r.event_id).await;
                    return;
                }
                w.metrics.outcome("retried");
                info!(event_id = %r.event_id, url = %r.url, attempt, error = %e, retry_in = ?wait, "webhook delivery failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
                delay = (delay * 2).min(w.cfg.retry_max);
            }
        }
    }
}

/// ±25% around `base`, from the event id and attempt, so receivers coming back are not hit
/// by every retry at once.
fn jittered(base: Duration, id: &str, attempt: u32) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (id, attempt).hash(&mut h);
    let f = 0.75 + (h.finish() % 1000) as f64 / 2000.0;
    base.mul_f64(f)
}

async fn forget(w: &Webhooks, event_id: &str) {
    // A delete that fails leaves the record: the scan delivers it again (at least once).
    let _ = w
        .store
        .write(vec![Op::Delete {
            key: w.key(event_id),
        }])
        .await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature a receiver recomputes: HMAC-SHA256 of `<timestamp>.<body>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex(ctx.sign().as_ref()))
}

async fn post(w: &Webhooks, r: &WebhookDelivery, body: &Arc<Vec<u8>>) -> Result<(), String> {
    let file = secret_file(w.cfg.secrets_dir.as_deref(), &r.signing_secret)?;
    let secret = std::fs::read(&file).map_err(|e| format!("reading the signing secret: {e}"))?;
    // A Secret written with a trailing newline signs as without it.
    let secret = secret.trim_ascii_end();
    let ts = (now_ms() / 1000) as u64;
    let mut req = w
        .deliver
        .client
        .post(&r.url)
        .header("content-type", "application/json")
        .header("x-netpulse-event", &r.event)
        .header("x-netpulse-event-id", &r.event_id)
        .header("x-netpulse-timestamp", ts.to_string())
        .header("x-netpulse-signature", signature(secret, ts, body));
    for (k, v) in &r.headers {
        req = req.header(k, v);
    }
    let resp = req
        .body(body.as_ref().clone())
        .send()
        .await
        .map_err(|e| match e.is_timeout() {
            true => format!("no answer within {:?}", w.cfg.timeout),
            false => format!(
                "not reachable: {}",
                std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string())
            ),
        })?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

/// Every `every`: claims the deliveries of managers that are gone, and queues this replica's
/// own that are not queued (the queue was full, or this manager restarted under its id).
pub(super) async fn scan_loop(w: Arc<Webhooks>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = scan(&w).await {
            warn!(error = %e, "scanning webhook deliveries failed");
        }
    }
}

async fn scan(w: &Arc<Webhooks>) -> Result<(), String> {
    let timeout = Duration::from_secs(5);
    let alive = crate::recovery::alive_managers(&w.etcd, &w.prefix, timeout).await?;
    let prefix = format!("{}/webhooks/", w.prefix);
    let mut etcd = w.etcd.clone();
    let entries = tokio::time::timeout(
        timeout,
        etcd.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    for kv in entries.kvs() {
        let Ok(mut r) = WebhookDelivery::decode(kv.value()) else {
            continue;
        };
        if w.deliver.holds(&r.event_id) {
            continue;
        }
        if r.manager_id != w.manager_id {
            if alive.contains(&r.manager_id) {
                continue;
            }
            let from = std::mem::replace(&mut r.manager_id, w.manager_id.clone());
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    kv.key(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(kv.key(), r.encode_to_vec(), None)]);
            let won = tokio::time::timeout(timeout, etcd.txn(txn))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?
                .succeeded();
            if !won {
                continue;
            }
            info!(event_id = %r.event_id, from = %from, "took over a webhook delivery of a manager that is gone");
        }
        w.enqueue(Delivery {
            record: r,
            body: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2 ("what do ya want for nothing?" keyed "Jefe"), split at a dot.
        let sig = signature(b"Jefe", 0, b"");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let want = ring::hmac::sign(&key, b"1700000000.{\"a\":1}");
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, b"{\"a\":1}"),
            format!("v1={}", hex(want.as_ref()))
        );
        assert_eq!(
            hex(ring::hmac::sign(&key, b"what do ya want for nothing?").as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for attempt in 0..50 {
            let d = jittered(Duration::from_secs(4), "e", attempt);
            assert!(
                d >= Duration::from_secs(3) && d <= Duration::from_secs(5),
                "{d:?}"
            );
        }
    }
}
