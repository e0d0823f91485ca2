//! Command-line and environment configuration of the node agent, with its defaults and the
//! one `validate` that rejects bad values at start-up (exit code 64).

use crate::logins::GroupLimit;
use pinned_worker::platform::{Catalog, DefinitionError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use netpulse_proto::worker::HostKeyPolicy;

use crate::agent::Limits;
use crate::process::WorkerSettings;
use crate::registry::RegistryConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HostKeys {
    AcceptNew,
    Strict,
    InsecureAcceptAny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Parser, Clone, Debug)]
#[command(
    name = "node-agent",
    about = "NetPulse node agent: registers in etcd, runs jobs in pinned-worker processes"
)]
pub struct AgentConfig {
    /// Stable id of this node (the pod name on Kubernetes).
    #[arg(long, env = "NETPULSE_NODE_ID")]
    pub node_id: String,
    /// Address the gRPC server binds.
    #[arg(long, env = "NETPULSE_AGENT_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    /// Address managers dial, as registered in etcd; defaults to --listen.
    #[arg(long, env = "NETPULSE_AGENT_ADVERTISE")]
    pub advertise: Option<String>,
    #[arg(
        long,
        env = "NETPULSE_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,
    #[arg(long, env = "NETPULSE_ETCD_PREFIX", default_value = "/netpulse")]
    pub etcd_prefix: String,
    /// Talk to etcd over TLS, trusting this CA (PEM; the endpoints are then https://).
    #[arg(long, env = "NETPULSE_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// The client certificate (PEM) etcd's --client-cert-auth checks; with --etcd-key-file.
    #[arg(long, env = "NETPULSE_ETCD_CERT_FILE", requires_all = ["etcd_key_file", "etcd_ca_file"])]
    pub etcd_cert_file: Option<PathBuf>,
    #[arg(long, env = "NETPULSE_ETCD_KEY_FILE", requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,
    /// Lease TTL of the node record, 2..=300 seconds.
    #[arg(long, env = "NETPULSE_LEASE_TTL_SECONDS", default_value_t = 10)]
    pub lease_ttl_seconds: u64,
    #[arg(long, env = "NETPULSE_MAX_PINNED_WORKERS", default_value_t = 1000)]
    pub max_pinned_workers: usize,
    #[arg(long, env = "NETPULSE_MAX_FIFO_CONCURRENCY", default_value_t = 32)]
    pub max_fifo_concurrency: usize,
    #[arg(long, env = "NETPULSE_MAX_QUEUED_PER_DEVICE", default_value_t = 1000)]
    pub max_queued_per_device: usize,
    #[arg(long, env = "NETPULSE_MAX_FIFO_QUEUED", default_value_t = 10_000)]
    pub max_fifo_queued: usize,
    /// Workers starting and logging in at once; a bulk onto the node waits its turn (its
    /// jobs stay queued) so that a connect storm does not starve the node or the devices.
    #[arg(long, env = "NETPULSE_MAX_CONCURRENT_LOGINS", default_value_t = 64)]
    pub max_concurrent_logins: usize,
    /// Logins started per second by this node (pinned and fifo workers); 0 for no limit. A
    /// bulk over thousands of devices reaches them, and their AAA servers, at this pace.
    #[arg(long, env = "NETPULSE_MAX_LOGINS_PER_SECOND", default_value_t = 100.0)]
    pub max_logins_per_second: f64,
    /// A tighter rate for devices in a prefix, CIDR=LOGINS_PER_SECOND (10.20.0.0/16=5);
    /// repeat the flag, or separate with commas in the variable. The first that holds a
    /// device's address applies, besides the node's rate.
    #[arg(long, env = "NETPULSE_LOGIN_LIMITS", value_delimiter = ',')]
    pub login_limit: Vec<GroupLimit>,
    /// A directory of platform definitions (`<name>.toml`) that add platforms or replace
    /// built-in ones; read and checked at start-up (see docs/platforms.md).
    #[arg(long, env = "NETPULSE_PLATFORMS_DIR")]
    pub platforms_dir: Option<PathBuf>,
    /// ntc-templates' templates and index, which `parse` by index uses (scripts/deps and the
    /// image install them here).
    #[arg(long, env = "NETPULSE_NTC_TEMPLATES_DIR", default_value = pinned_worker::parse::DEFAULT_NTC_DIR)]
    pub ntc_templates_dir: PathBuf,
    /// The operator's TextFSM templates, which requests name by file name; read when used, and
    /// again when a file changes.
    #[arg(long, env = "NETPULSE_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
    /// The pinned-worker binary; defaults to the one next to this binary.
    #[arg(long, env = "NETPULSE_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    #[arg(
        long,
        env = "NETPULSE_KNOWN_HOSTS",
        default_value = "/var/lib/netpulse/known_hosts"
    )]
    pub known_hosts: PathBuf,
    #[arg(
        long,
        env = "NETPULSE_HOST_KEY_POLICY",
        value_enum,
        default_value = "accept-new"
    )]
    pub host_key_policy: HostKeys,
    /// Log filter passed to every worker.
    #[arg(long, env = "NETPULSE_WORKER_LOG", default_value = "info")]
    pub worker_log: String,
    /// On SIGTERM, how long running and queued jobs may take before workers are stopped.
    #[arg(long, env = "NETPULSE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Between SIGTERM and SIGKILL for a worker being stopped.
    #[arg(long, env = "NETPULSE_KILL_GRACE_SECONDS", default_value_t = 5)]
    pub kill_grace_seconds: u64,
    #[arg(
        long,
        env = "NETPULSE_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    #[arg(long, env = "NETPULSE_LOG", default_value = "info")]
    pub log: String,
    /// Serve managers over TLS with this certificate chain (PEM; with --tls-key).
    #[arg(long, env = "NETPULSE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "NETPULSE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require managers to present a certificate signed by this CA (mutual TLS).
    #[arg(long, env = "NETPULSE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    #[command(flatten)]
    pub credentials: crate::credentials::CredentialArgs,
    #[command(flatten)]
    pub staging: crate::staging::StagingArgs,
    /// Take sessions only from managers presenting one of these bearer tokens (one per line;
    /// the managers' --agent-token-file). With TLS or without; none: any client may.
    #[arg(long, env = "NETPULSE_MANAGER_TOKENS_FILE")]
    pub manager_tokens_file: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`), e.g. 0.0.0.0:9465; none by
    /// default.
    #[arg(long, env = "NETPULSE_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Export traces over OTLP/HTTP to this collector (e.g. http://otel-collector:4318),
    /// workers' spans included; off by default.
    #[arg(long, env = "NETPULSE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Threads of the process's async runtime; 0 means one per core. One thread (the default)
    /// avoids cross-thread wake-ups on every job; more help only past a core's worth of load.
    #[arg(long, env = "NETPULSE_RUNTIME_THREADS", default_value_t = 1)]
    pub runtime_threads: usize,
}

fn range(name: &str, v: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} must be {lo}..={hi}, got {v}"))
    }
}

impl AgentConfig {
    pub fn worker_bin(&self) -> PathBuf {
        self.worker_bin.clone().unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap_or_default();
            exe.with_file_name("pinned-worker")
        })
    }

    /// Who may open a session: the server's TLS (None: plaintext) and the managers' tokens,
    /// read from their files.
    pub fn access(&self) -> Result<crate::ServeAccess, String> {
        let tls = netpulse_proto::tls::server_if(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )?;
        let tokens = match &self.manager_tokens_file {
            Some(f) => {
                let t = netpulse_proto::auth::read_tokens(f, "manager tokens")?;
                if t.is_empty() {
                    return Err(format!(
                        "the manager tokens file {} holds no token",
                        f.display()
                    ));
                }
                t
            }
            None => Vec::new(),
        };
        Ok(crate::ServeAccess {
            tls,
            manager_tokens: netpulse_proto::auth::AuthLayer::new(tokens),
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.node_id.is_empty() || self.node_id.len() > 128 || self.node_id.contains(['/', ' '])
        {
            return Err(format!(
                "node-id must be 1..=128 characters without '/' or spaces, got {:?}",
                self.node_id
            ));
        }
        range("lease-ttl-seconds", self.lease_ttl_seconds, 2, 300)?;
        range(
            "max-pinned-workers",
            self.max_pinned_workers as u64,
            1,
            100_000,
        )?;
        range(
            "max-fifo-concurrency",
            self.max_fifo_concurrency as u64,
            1,
            4096,
        )?;
        range(
            "max-queued-per-device",
            self.max_queued_per_device as u64,
            1,
            100_000,
        )?;
        range("max-fifo-queued", self.max_fifo_queued as u64, 1, 1_000_000)?;
        range(
            "max-concurrent-logins",
            self.max_concurrent_logins as u64,
            1,
            10_000,
        )?;
        range(
            "shutdown-grace-seconds",
            self.shutdown_grace_seconds,
            0,
            3600,
        )?;
        range("kill-grace-seconds", self.kill_grace_seconds, 1, 300)?;
        if !(0.0..=100_000.0).contains(&self.max_logins_per_second) {
            return Err(format!(
                "max-logins-per-second must be 0 (no limit) to 100000, got {}",
                self.max_logins_per_second
            ));
        }
        if self.etcd_endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("etcd-endpoints must name at least one endpoint".into());
        }
        if !self.etcd_prefix.starts_with('/') {
            return Err(format!(
                "etcd-prefix must start with '/', got {:?}",
                self.etcd_prefix
            ));
        }
        let bin = self.worker_bin();
        if !bin.is_file() {
            return Err(format!(
                "worker binary {} does not exist (set --worker-bin)",
                bin.display()
            ));
        }
        Ok(())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_pinned_workers: self.max_pinned_workers,
            max_fifo_concurrency: self.max_fifo_concurrency,
            max_queued_per_device: self.max_queued_per_device,
            max_fifo_queued: self.max_fifo_queued,
            max_concurrent_logins: self.max_concurrent_logins,
            max_logins_per_second: self.max_logins_per_second,
            login_limits: self.login_limit.clone(),
        }
    }

    pub fn workers(&self) -> WorkerSettings {
        WorkerSettings {
            bin: self.worker_bin(),
            log_filter: self.worker_log.clone(),
            log_json: matches!(self.log_format, LogFormat::Json),
            host_key_policy: match self.host_key_policy {
                HostKeys::AcceptNew => HostKeyPolicy::AcceptNew,
                HostKeys::Strict => HostKeyPolicy::Strict,
                HostKeys::InsecureAcceptAny => HostKeyPolicy::InsecureAcceptAny,
            },
            known_hosts: self.known_hosts.clone(),
            kill_grace: Duration::from_secs(self.kill_grace_seconds),
            platforms_dir: self.platforms_dir.clone(),
            ntc_templates_dir: Some(self.ntc_templates_dir.clone()),
            templates_dir: self.templates_dir.clone(),
            credentials: Default::default(),
            staging: Default::default(),
        }
    }

    /// The platforms this agent serves, every definition compiled (a bad file is named).
    pub fn platforms(&self) -> Result<Catalog, DefinitionError> {
        let catalog = match &self.platforms_dir {
            Some(dir) => Catalog::with_dir(dir)?,
            None => Catalog::builtin(),
        };
        catalog.validate()?;
        Ok(catalog)
    }

    pub fn registry(&self) -> RegistryConfig {
        RegistryConfig {
            prefix: self.etcd_prefix.clone(),
            node_id: self.node_id.clone(),
            address: self
                .advertise
                .clone()
                .unwrap_or_else(|| self.listen.to_string()),
            lease_ttl: Duration::from_secs(self.lease_ttl_seconds),
            load_interval: Duration::from_secs(2),
            call_timeout: Duration::from_secs(self.lease_ttl_seconds).min(Duration::from_secs(5))
                / 2,
            etcd_tls: None,
        }
    }

    /// Everything the flags name read from its files (a bad one is named): who may open a
    /// session, the credential resolver, etcd's TLS.
    pub fn load(&self) -> Result<crate::Loaded, String> {
        Ok(crate::Loaded {
            access: self.access()?,
            credentials: self.credentials.load()?,
            staging: self.staging.open(&self.node_id)?,
            etcd_tls: netpulse_proto::tls::etcd(
                self.etcd_ca_file.as_deref(),
                self.etcd_cert_file.as_deref(),
                self.etcd_key_file.as_deref(),
                &self.etcd_endpoints,
            )?,
        })
    }
}
