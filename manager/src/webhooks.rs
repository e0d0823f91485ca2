//! Webhooks: a job's own (`ExecuteRequest.webhook`) and the manager-wide subscriptions of
//! `--webhook-subscriptions-file`. A job listener: when a job this replica drives starts or
//! ends, each matching destination gets one delivery, recorded in etcd with the event (a
//! final job's delivery records go in the job's own final write) and delivered from memory
//! (`deliver`). Delivery is at least once: a record is deleted only once delivered or given up,
//! and another replica claims the records of a manager that is gone. A slow or dead receiver
//! holds only its own deliveries: the queue is bounded and a full one leaves records for the
//! periodic scan.

mod deliver;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;
use netpulse_proto::api::{ExecuteRequest, Job, Webhook};
use netpulse_proto::manager::WebhookDelivery;
use prost::Message;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::listeners::JobListener;
use crate::store::{JobStore, Op};

pub use deliver::WebhookMetrics;

const STARTED: &str = "job.started";
const FINISHED: &str = "job.finished";
const MAX_URL: usize = 2048;
const MAX_HEADERS: usize = 16;
/// Headers that carry credentials: stored with the job, they would be secrets at rest.
const REFUSED_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// The manager's webhook settings (flattened into its flags).
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Signing secrets, one file per name (a mounted Kubernetes Secret); requests and
    /// subscriptions name one ("default" when they do not). No directory: no webhooks.
    #[arg(long, env = "NETPULSE_WEBHOOK_SECRETS_DIR")]
    pub webhook_secrets_dir: Option<PathBuf>,
    /// Manager-wide subscriptions (TOML, `[[subscription]]` tables; docs/webhooks.md).
    #[arg(long, env = "NETPULSE_WEBHOOK_SUBSCRIPTIONS_FILE")]
    pub webhook_subscriptions_file: Option<PathBuf>,
    /// Hosts webhooks may be sent to, comma-separated: names, addresses, or `*.domain`;
    /// none: any host.
    #[arg(long, env = "NETPULSE_WEBHOOK_ALLOWED_HOSTS", value_delimiter = ',')]
    pub webhook_allowed_hosts: Vec<String>,
    /// Also send to link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata services),
    /// refused by default.
    #[arg(long, env = "NETPULSE_WEBHOOK_ALLOW_LINK_LOCAL")]
    pub webhook_allow_link_local: bool,
    /// Each delivery attempt, 1..=300 seconds.
    #[arg(long, env = "NETPULSE_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 10)]
    pub webhook_timeout_seconds: u64,
    /// The first retry's delay; each next one doubles, with jitter, up to the maximum.
    #[arg(
        long,
        env = "NETPULSE_WEBHOOK_RETRY_INITIAL_MS",
        default_value_t = 1000
    )]
    pub webhook_retry_initial_ms: u64,
    #[arg(
        long,
        env = "NETPULSE_WEBHOOK_RETRY_MAX_SECONDS",
        default_value_t = 300
    )]
    pub webhook_retry_max_seconds: u64,
    /// A delivery not made this long after its event is given up (and counted).
    #[arg(long, env = "NETPULSE_WEBHOOK_MAX_AGE_SECONDS", default_value_t = 3600)]
    pub webhook_max_age_seconds: u64,
    /// Deliveries in flight at once.
    #[arg(long, env = "NETPULSE_WEBHOOK_CONCURRENCY", default_value_t = 32)]
    pub webhook_concurrency: usize,
    /// Deliveries waiting in memory; beyond, they wait in etcd for the next scan.
    #[arg(long, env = "NETPULSE_WEBHOOK_QUEUE", default_value_t = 10_000)]
    pub webhook_queue: usize,
}

/// One `[[subscription]]` of the subscriptions file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub name: String,
    pub url: String,
    /// `started`, `finished` (the default).
    #[serde(default = "finished_only")]
    pub events: Vec<String>,
    /// Only jobs on these device hosts; empty: every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Only jobs that ran on these nodes; empty: every node.
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub signing_secret: String,
}

fn finished_only() -> Vec<String> {
    vec!["finished".into()]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionsFile {
    #[serde(default)]
    subscription: Vec<Subscription>,
}

/// Where deliveries may go.
#[derive(Clone, Debug, Default)]
pub struct Destinations {
    pub allowed_hosts: Vec<String>,
    pub allow_link_local: bool,
}

pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

impl Destinations {
    /// Whether a URL may be sent to: http(s), a host on the list, no link-local address
    /// literal (names are checked when resolved, `deliver`).
    pub fn check(&self, what: &str, url: &str) -> Result<(), ApiError> {
        let invalid = |m: String| ApiError::InvalidArgument(format!("{what}: {m}"));
        if url.len() > MAX_URL {
            return Err(invalid(format!("the URL is longer than {MAX_URL} bytes")));
        }
        let parsed =
            url::Url::parse(url).map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!("{url:?} is not http:// or https://")));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid(format!("{url:?} names no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !self.allow_link_local
            && let Ok(ip) = host.parse::<IpAddr>()
            && is_link_local(ip)
        {
            return Err(ApiError::PermissionDenied(format!(
                "{what}: {host} is a link-local address (refused unless --webhook-allow-link-local)"
            )));
        }
        let listed = self.allowed_hosts.is_empty()
            || self.allowed_hosts.iter().any(|a| {
                let a = a.to_ascii_lowercase();
                match a.strip_prefix("*.") {
                    Some(domain) => host.ends_with(&format!(".{domain}")),
                    None => host == a,
                }
            });
        if !listed {
            return Err(ApiError::PermissionDenied(format!(
                "{what}: host {host} is not in --webhook-allowed-hosts"
            )));
        }
        Ok(())
    }
}

/// What `Webhooks::start` needs besides the etcd client.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub secrets_dir: Option<PathBuf>,
    pub subscriptions: Vec<Subscription>,
    pub destinations: Destinations,
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub max_age: Duration,
    pub concurrency: usize,
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secrets_dir: None,
            subscriptions: Vec::new(),
            destinations: Destinations::default(),
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_age: Duration::from_secs(3600),
            concurrency: 32,
            queue: 10_000,
        }
    }
}

impl WebhookArgs {
    pub fn load(&self) -> Result<WebhookConfig, String> {
        for (name, v, lo, hi) in [
            (
                "webhook-timeout-seconds",
                self.webhook_timeout_seconds,
                1,
                300,
            ),
            (
                "webhook-retry-initial-ms",
                self.webhook_retry_initial_ms,
                10,
                3_600_000,
            ),
            (
                "webhook-retry-max-seconds",
                self.webhook_retry_max_seconds,
                1,
                86_400,
            ),
            (
                "webhook-max-age-seconds",
                self.webhook_max_age_seconds,
                1,
                7 * 86_400,
            ),
            (
                "webhook-concurrency",
                self.webhook_concurrency as u64,
                1,
                10_000,
            ),
            ("webhook-queue", self.webhook_queue as u64, 1, 1_000_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{name} must be {lo}..={hi}, got {v}"));
            }
        }
        let destinations = Destinations {
            allowed_hosts: self
                .webhook_allowed_hosts
                .iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            allow_link_local: self.webhook_allow_link_local,
        };
        let cfg = WebhookConfig {
            secrets_dir: self.webhook_secrets_dir.clone(),
            subscriptions: match &self.webhook_subscriptions_file {
                Some(f) => read_subscriptions(f)?,
                None => Vec::new(),
            },
            destinations,
            timeout: Duration::from_secs(self.webhook_timeout_seconds),
            retry_initial: Duration::from_millis(self.webhook_retry_initial_ms),
            retry_max: Duration::from_secs(self.webhook_retry_max_seconds),
            max_age: Duration::from_secs(self.webhook_max_age_seconds),
            concurrency: self.webhook_concurrency,
            queue: self.webhook_queue,
        };
        for s in &cfg.subscriptions {
            let what = format!("subscription {}", s.name);
            cfg.destinations
                .check(&what, &s.url)
                .map_err(|e| e.to_string())?;
            secret_file(cfg.secrets_dir.as_deref(), &s.signing_secret)
                .map_err(|e| format!("{what}: {e}"))?;
            if let Some(bad) = s
                .events
                .iter()
                .find(|e| !matches!(e.as_str(), "started" | "finished"))
            {
                return Err(format!("{what}: event {bad:?} is not started or finished"));
            }
        }
        Ok(cfg)
    }
}

fn read_subscriptions(path: &Path) -> Result<Vec<Subscription>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the webhook subscriptions {}: {e}", path.display()))?;
    let file: SubscriptionsFile = toml::from_str(&text)
        .map_err(|e| format!("the webhook subscriptions {}: {e}", path.display()))?;
    Ok(file.subscription)
}

/// The file of signing secret `name` ("" is "default"), which must exist.
fn secret_file(dir: Option<&Path>, name: &str) -> Result<PathBuf, String> {
    let name = if name.is_empty() { "default" } else { name };
    let dir =
        dir.ok_or("webhooks need signing secrets: the manager has no --webhook-secrets-dir")?;
    // Named as credential profiles are: a file name, no path.
    netpulse_model::credential::profile_name("signing secret", name).map_err(|e| e.to_string())?;
    let path = dir.join(name);
    if !path.is_file() {
        return Err(format!("no signing secret {name} in {}", dir.display()));
    }
    Ok(path)
}

/// A delivery this replica will make: its record and, once known, its body.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub record: WebhookDelivery,
    pub body: Option<Arc<Vec<u8>>>,
}

pub struct Webhooks {
    cfg: WebhookConfig,
    manager_id: String,
    prefix: String,
    etcd: Client,
    store: JobStore,
    /// The webhooks of the jobs this replica drives.
    jobs: Mutex<HashMap<String, Webhook>>,
    queue: mpsc::Sender<Delivery>,
    pub metrics: WebhookMetrics,
    deliver: deliver::State,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Webhooks({} subscriptions)",
            self.cfg.subscriptions.len()
        )
    }
}

impl Webhooks {
    /// Starts delivering (and scanning for deliveries to claim) until `stop`.
    pub fn start(
        cfg: WebhookConfig,
        etcd: Client,
        store: JobStore,
        prefix: &str,
        manager_id: String,
        scan_every: Duration,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Arc<Webhooks>, String> {
        let (tx, rx) = mpsc::channel(cfg.queue);
        let w = Arc::new(Webhooks {
            deliver: deliver::State::new(&cfg)?,
            cfg,
            manager_id,
            prefix: prefix.trim_end_matches('/').to_string(),
            etcd,
            store,
            jobs: Mutex::new(HashMap::new()),
            queue: tx,
            metrics: WebhookMetrics::default(),
        });
        w.deliver.set_me(&w);
        tracker.spawn(deliver::run(w.clone(), rx, tracker.clone(), stop.clone()));
        tracker.spawn(deliver::scan_loop(w.clone(), scan_every, stop));
        Ok(w)
    }

    fn key(&self, event_id: &str) -> String {
        format!("{}/webhooks/{event_id}", self.prefix)
    }

    /// A request's webhook, checked at submit: destination, headers, signing secret.
    pub fn check(&self, w: Option<&Webhook>) -> Result<(), ApiError> {
        let Some(w) = w else { return Ok(()) };
        self.cfg.destinations.check("webhook.url", &w.url)?;
        if w.headers.len() > MAX_HEADERS {
            return Err(ApiError::InvalidArgument(format!(
                "webhook.headers holds at most {MAX_HEADERS} headers, got {}",
                w.headers.len()
            )));
        }
        for (k, v) in &w.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                ApiError::InvalidArgument(format!("webhook.headers: {k:?} is not a header name"))
            })?;
            if REFUSED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("x-netpulse-")
            {
                return Err(ApiError::InvalidArgument(format!(
                    "webhook.headers: {k} is refused (headers are stored with the job; receivers authenticate deliveries by the signature, docs/webhooks.md)"
                )));
            }
            http::HeaderValue::from_str(v).map_err(|_| {
                ApiError::InvalidArgument(format!(
                    "webhook.headers: the value of {k} is not a header value"
                ))
            })?;
        }
        secret_file(self.cfg.secrets_dir.as_deref(), &w.signing_secret)
            .map(|_| ())
            .map_err(|e| ApiError::InvalidArgument(format!("webhook.signing_secret: {e}")))
    }

    /// The deliveries of `event` for `job`: its own webhook and the matching subscriptions.
    fn deliveries(&self, event: &str, job: &Job, own: Option<&Webhook>) -> Vec<WebhookDelivery> {
        let short = event.trim_start_matches("job.");
        let mut out = Vec::new();
        let mut add = |tag: &str, url: &str, headers: HashMap<String, String>, secret: &str| {
            let event_id = format!("{}.{short}.{tag}", job.id);
            out.push(WebhookDelivery {
                event_id,
                event: event.to_string(),
                job_id: job.id.clone(),
                url: url.to_string(),
                headers,
                signing_secret: secret.to_string(),
                body: Vec::new(),
                created_unix_ms: crate::record::now_ms(),
                manager_id: self.manager_id.clone(),
            });
        };
        if let Some(w) = own
            && (event == FINISHED || w.on_start)
        {
            add("job", &w.url, w.headers.clone(), &w.signing_secret);
        }
        for s in &self.cfg.subscriptions {
            let wanted = s.events.iter().any(|e| e == short)
                && (s.hosts.is_empty() || s.hosts.contains(&job.host))
                && (s.nodes.is_empty() || s.nodes.contains(&job.node_id));
            if wanted {
                add(
                    &format!("s-{}", s.name),
                    &s.url,
                    HashMap::new(),
                    &s.signing_secret,
                );
            }
        }
        out
    }

    fn put(&self, d: &WebhookDelivery) -> Op {
        Op::Put {
            key: self.key(&d.event_id),
            value: d.encode_to_vec(),
            expires_in: None,
        }
    }

    /// Hands a delivery to the senders; a full queue leaves it to the scan.
    fn enqueue(&self, d: Delivery) {
        if self.deliver.claim(&d.record.event_id) {
            self.metrics.backlog(1);
            if self.queue.try_send(d.clone()).is_err() {
                self.deliver.unclaim(&d.record.event_id);
                self.metrics.backlog(-1);
            }
        }
    }
}

/// The body of a delivery: the event, its id and the job as JSON (as `netpulse --json`
/// prints it). Built the same from the job's final record, so every attempt sends the same
/// bytes.
pub fn payload(event_id: &str, event: &str, job: &Job) -> Vec<u8> {
    let body = serde_json::json!({
        "event_id": event_id,
        "event": event,
        "job": netpulse_proto::json::job(job),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

impl JobListener for Webhooks {
    fn accepted(&self, job: &Job, request: &ExecuteRequest, _adopted: bool) {
        if let Some(w) = &request.webhook {
            self.jobs
                .lock()
                .expect("lock")
                .insert(job.id.clone(), w.clone());
        }
    }

    fn started(&self, job: &Job) {
        let mut ops = Vec::new();
        let mut ready = Vec::new();
        let own = self.jobs.lock().expect("lock").get(&job.id).cloned();
        for mut d in self.deliveries(STARTED, job, own.as_ref()) {
            d.body = payload(&d.event_id, STARTED, job);
            ops.push(self.put(&d));
            let body = Some(Arc::new(std::mem::take(&mut d.body)));
            ready.push(Delivery { record: d, body });
        }
        if ops.is_empty() {
            return;
        }
        let me = self.deliver.me();
        let then: crate::store::OnCommit = Box::new(move |r| {
            if let (Ok(()), Some(w)) = (r, me.upgrade()) {
                ready.into_iter().for_each(|d| w.enqueue(d));
            }
        });
        // A full write queue drops the start notice: it never holds a job up.
        if self.store.try_write_then(ops, then).is_err() {
            self.metrics.outcome("dropped");
        }
    }

    fn finished(&self, job: &Job, writes: &mut Vec<Op>) {
        let own = self.jobs.lock().expect("lock").remove(&job.id);
        if own.is_none() && self.cfg.subscriptions.is_empty() {
            return;
        }
        let list = self.deliveries(FINISHED, job, own.as_ref());
        if list.is_empty() {
            return;
        }
        let capped = self.store.capped(job);
        for d in list {
            writes.push(self.put(&d));
            let body = Arc::new(payload(&d.event_id, FINISHED, &capped));
            self.enqueue(Delivery {
                record: d,
                body: Some(body),
            });
        }
    }

    fn released(&self, job_id: &str) {
        self.jobs.lock().expect("lock").remove(job_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_checked() {
        let open = Destinations::default();
        assert!(open.check("w", "http://127.0.0.1:9/x").is_ok());
        assert!(open.check("w", "https://hooks.example.com/x").is_ok());
        for (url, says) in [
            ("ftp://h/x", "is not http:// or https://"),
            ("not a url", "is not a URL"),
            ("http://169.254.169.254/latest", "link-local"),
            ("http://[fe80::1]/x", "link-local"),
        ] {
            let e = open.check("w", url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let listed = Destinations {
            allowed_hosts: vec!["*.example.com".into(), "10.0.0.5".into()],
            allow_link_local: true,
        };
        assert!(listed.check("w", "https://a.b.example.com/x").is_ok());
        assert!(listed.check("w", "http://10.0.0.5:8080/").is_ok());
        assert!(
            listed.check("w", "http://169.254.1.1/").is_err(),
            "listed hosts only"
        );
        let e = listed.check("w", "https://example.org/").unwrap_err();
        assert!(matches!(e, ApiError::PermissionDenied(_)), "{e:?}");
        assert!(is_link_local("::ffff:169.254.0.1".parse().unwrap()));
        assert!(!is_link_local("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn payloads_are_the_same_bytes_each_time() {
        let job = Job {
            id: "j1".into(),
            host: "10.0.0.1".into(),
            ..Default::default()
        };
        let a = payload("j1.finished.job", FINISHED, &job);
        assert_eq!(a, payload("j1.finished.job", FINISHED, &job));
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(
            (v["event_id"].as_str(), v["job"]["host"].as_str()),
            (Some("j1.finished.job"), Some("10.0.0.1"))
        );
    }

    #[test]
    fn subscriptions_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default"), "s3cret").unwrap();
        let subs = dir.path().join("subs.toml");
        std::fs::write(
            &subs,
            "[[subscription]]\nname = \"noc\"\nurl = \"http://127.0.0.1:9/h\"\nevents = [\"started\", \"finished\"]\nhosts = [\"10.0.0.1\"]\n",
        )
        .unwrap();
        let args = |file: &Path| WebhookArgs {
            webhook_secrets_dir: Some(dir.path().to_path_buf()),
            webhook_subscriptions_file: Some(file.to_path_buf()),
            webhook_allowed_hosts: Vec::new(),
            webhook_allow_link_local: false,
            webhook_timeout_seconds: 10,
            webhook_retry_initial_ms: 1000,
            webhook_retry_max_seconds: 300,
            webhook_max_age_seconds: 3600,
            webhook_concurrency: 32,
            webhook_queue: 100,
        };
        let cfg = args(&subs).load().unwrap();
        assert_eq!(cfg.subscriptions[0].hosts, ["10.0.0.1"]);
        std::fs::write(
            &subs,
            "[[subscription]]\nname = \"x\"\nurl = \"http://h/\"\nevents = [\"ended\"]\n",
        )
        .unwrap();
        assert!(args(&subs).load().unwrap_err().contains("event \"ended\""));
        std::fs::write(
            &subs,
            "[[subscription]]\nname = \"x\"\nurl = \"http://h/\"\nsigning_secret = \"other\"\n",
        )
        .unwrap();
        assert!(
            args(&subs)
                .load()
                .unwrap_err()
                .contains("no signing secret other")
        );
    }
}
