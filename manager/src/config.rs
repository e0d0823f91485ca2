//! Command-line and environment configuration of the manager, its defaults, and the one
//! `validate` that rejects bad values at start-up (exit code 64).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{ClientTlsConfig, ServerTlsConfig};

use clap::{Parser, ValueEnum};

use crate::scheduler::SchedulerConfig;
use crate::store::StoreConfig;
use netpulse_model::RequestLimits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Parser, Clone, Debug)]
#[command(
    name = "manager",
    about = "NetPulse manager: the client gRPC API; schedules jobs onto node agents"
)]
pub struct ManagerConfig {
    /// Address the public gRPC API binds.
    #[arg(
        long,
        env = "NETPULSE_MANAGER_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// Unique id of this replica (the pod name on Kubernetes); random when unset. Give a
    /// stable one so a restarted manager takes its own unfinished jobs back at once.
    #[arg(long, env = "NETPULSE_MANAGER_ID")]
    pub manager_id: Option<String>,
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
    /// Liveness lease of this manager; its jobs are adopted by another replica this long
    /// after it dies.
    #[arg(long, env = "NETPULSE_MANAGER_LEASE_TTL_SECONDS", default_value_t = 10)]
    pub lease_ttl_seconds: u64,
    /// A file with one API bearer token per line; with no tokens, the API is open.
    #[arg(long, env = "NETPULSE_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// API bearer tokens, comma-separated (prefer the file: env is visible to other tools).
    #[arg(
        long,
        env = "NETPULSE_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<String>,
    /// The managers' shared keys for the device credentials of jobs in etcd: lines of
    /// `<key id>:<64 hex digits>`, the first sealing (docs/manager.md). Without it, credentials
    /// stay in memory and a replica that adopts a dead one's unfinished jobs fails them.
    #[arg(long, env = "NETPULSE_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookArgs,
    /// Long-running tasks that ended longer ago than this are deleted from their host when its
    /// tasks are listed, 0..=525600 minutes (0: at the first listing after they end).
    #[arg(long, env = "NETPULSE_TASK_RETENTION_MINUTES", default_value_t = 1440)]
    pub task_retention_minutes: u64,
    /// Refuse requests that carry secrets inline: every job names connection.credential.
    #[arg(long, env = "NETPULSE_REFUSE_INLINE_SECRETS")]
    pub refuse_inline_secrets: bool,
    /// The vault prefixes (`<mount>/<path>`, comma-separated) requests may name, as the
    /// agents' --vault-allowed-paths: others are refused PERMISSION_DENIED at submit.
    #[arg(long, env = "NETPULSE_VAULT_ALLOWED_PATHS", value_delimiter = ',')]
    pub vault_allowed_paths: Vec<String>,
    /// Most commands or config lines per job.
    #[arg(long, env = "NETPULSE_MAX_LINES", default_value_t = 1000)]
    pub max_lines: usize,
    #[arg(long, env = "NETPULSE_MAX_LINE_BYTES", default_value_t = 4096)]
    pub max_line_bytes: usize,
    #[arg(long, env = "NETPULSE_MAX_REQUEST_BYTES", default_value_t = 1 << 20)]
    pub max_request_bytes: usize,
    /// Stored output per job; beyond it the output is cut and marked truncated.
    #[arg(long, env = "NETPULSE_MAX_OUTPUT_BYTES", default_value_t = 1 << 20)]
    pub max_output_bytes: usize,
    /// Finished jobs whose results expire within the same window of this many seconds share
    /// one etcd lease (a job is kept up to this much longer than its result_ttl_seconds).
    #[arg(
        long,
        env = "NETPULSE_RESULT_LEASE_BUCKET_SECONDS",
        default_value_t = 60
    )]
    pub result_lease_bucket_seconds: u64,
    /// How long a running job waits for its node to register again after the node's lease
    /// lapsed (a node busy or cut off from etcd for a moment) before it fails NODE_LOST.
    #[arg(long, env = "NETPULSE_NODE_LOST_GRACE_SECONDS", default_value_t = 30)]
    pub node_lost_grace_seconds: u64,
    /// Jinja2 configuration templates that requests name (`config_template.template_name`);
    /// a file is read at each use, so a changed one takes effect at once.
    #[arg(long, env = "NETPULSE_CONFIG_TEMPLATES_DIR")]
    pub config_templates_dir: Option<std::path::PathBuf>,
    /// ntc-templates' templates and index, for `ParseOutput` by index (job outputs are parsed
    /// by the agents' workers, with theirs).
    #[arg(
        long,
        env = "NETPULSE_NTC_TEMPLATES_DIR",
        default_value = netpulse_textfsm::NTC_TEMPLATES_DIR
    )]
    pub ntc_templates_dir: std::path::PathBuf,
    /// TextFSM templates that `ParseOutput` requests name by file.
    #[arg(long, env = "NETPULSE_TEMPLATES_DIR")]
    pub templates_dir: Option<std::path::PathBuf>,
    /// Unfinished jobs one replica drives; beyond, submits get RESOURCE_EXHAUSTED.
    #[arg(long, env = "NETPULSE_MAX_ACTIVE_JOBS", default_value_t = 100_000)]
    pub max_active_jobs: usize,
    /// Requests served at once over all connections; beyond, RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "NETPULSE_MAX_CONCURRENT_REQUESTS",
        default_value_t = 10_000
    )]
    pub max_concurrent_requests: usize,
    /// Requests served at once on one client connection.
    #[arg(
        long,
        env = "NETPULSE_MAX_REQUESTS_PER_CONNECTION",
        default_value_t = 1000
    )]
    pub max_requests_per_connection: usize,
    /// Requests of one `ExecuteStream` answered at a time; the stream's further requests
    /// wait to be read until an answer frees a place.
    #[arg(long, env = "NETPULSE_MAX_JOBS_PER_STREAM", default_value_t = 1000)]
    pub max_jobs_per_stream: usize,
    /// Longest a unary call may take (an Execute that waits included).
    #[arg(long, env = "NETPULSE_REQUEST_TIMEOUT_SECONDS", default_value_t = 3600)]
    pub request_timeout_seconds: u64,
    #[arg(
        long,
        env = "NETPULSE_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    #[arg(long, env = "NETPULSE_LOG", default_value = "info")]
    pub log: String,
    /// Serve the API over TLS with this certificate chain (PEM; with --tls-key).
    #[arg(long, env = "NETPULSE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "NETPULSE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require API clients to present a certificate signed by this CA (mutual TLS).
    #[arg(long, env = "NETPULSE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Dial node agents over TLS, trusting agents whose certificates this CA signed.
    #[arg(long, env = "NETPULSE_AGENT_TLS_CA")]
    pub agent_tls_ca: Option<PathBuf>,
    /// This manager's certificate for agents that require mutual TLS (with --agent-tls-key).
    #[arg(
        long,
        env = "NETPULSE_AGENT_TLS_CERT",
        requires_all = ["agent_tls_key", "agent_tls_ca"]
    )]
    pub agent_tls_cert: Option<PathBuf>,
    #[arg(long, env = "NETPULSE_AGENT_TLS_KEY", requires = "agent_tls_cert")]
    pub agent_tls_key: Option<PathBuf>,
    /// A file whose first line is the bearer token this manager presents to agents started
    /// with --manager-tokens-file (with or without TLS).
    #[arg(long, env = "NETPULSE_AGENT_TOKEN_FILE")]
    pub agent_token_file: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`), e.g. 0.0.0.0:9464; none by
    /// default.
    #[arg(long, env = "NETPULSE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Export traces over OTLP/HTTP to this collector (e.g. http://otel-collector:4318); off
    /// by default.
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

impl ManagerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(id) = &self.manager_id
            && (id.is_empty() || id.len() > 128 || id.contains(['/', ' ']))
        {
            return Err(format!(
                "manager-id must be 1..=128 characters without '/' or spaces, got {id:?}"
            ));
        }
        range("lease-ttl-seconds", self.lease_ttl_seconds, 2, 300)?;
        range(
            "result-lease-bucket-seconds",
            self.result_lease_bucket_seconds,
            1,
            3600,
        )?;
        range(
            "node-lost-grace-seconds",
            self.node_lost_grace_seconds,
            0,
            3600,
        )?;
        range("max-lines", self.max_lines as u64, 1, 100_000)?;
        range("max-line-bytes", self.max_line_bytes as u64, 16, 1 << 20)?;
        range(
            "max-request-bytes",
            self.max_request_bytes as u64,
            1024,
            64 << 20,
        )?;
        range(
            "max-output-bytes",
            self.max_output_bytes as u64,
            1024,
            64 << 20,
        )?;
        range(
            "max-active-jobs",
            self.max_active_jobs as u64,
            1,
            10_000_000,
        )?;
        range(
            "max-concurrent-requests",
            self.max_concurrent_requests as u64,
            1,
            1_000_000,
        )?;
        range(
            "max-requests-per-connection",
            self.max_requests_per_connection as u64,
            1,
            1_000_000,
        )?;
        range(
            "max-jobs-per-stream",
            self.max_jobs_per_stream as u64,
            1,
            1_000_000,
        )?;
        range(
            "task-retention-minutes",
            self.task_retention_minutes,
            0,
            525_600,
        )?;
        range(
            "request-timeout-seconds",
            self.request_timeout_seconds,
            1,
            86_400 * 7,
        )?;
        if self.etcd_endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("etcd-endpoints must name at least one endpoint".into());
        }
        if !self.etcd_prefix.starts_with('/') {
            return Err(format!(
                "etcd-prefix must start with '/', got {:?}",
                self.etcd_prefix
            ));
        }
        if let Some(f) = &self.api_tokens_file
            && !f.is_file()
        {
            return Err(format!("api-tokens-file {} does not exist", f.display()));
        }
        Ok(())
    }

    /// Seals credentials with the keys of --secrets-key-file, or keeps them in memory.
    fn sealer(&self) -> Result<crate::sealing::Sealer, String> {
        let keys = match &self.secrets_key_file {
            Some(f) => Some(crate::sealing::Keys::load(f)?),
            None => None,
        };
        Ok(crate::sealing::Sealer::new(keys))
    }

    pub fn manager_id(&self) -> String {
        self.manager_id
            .clone()
            .unwrap_or_else(|| format!("manager-{:08x}", rand::random::<u32>()))
    }

    /// The configured tokens: the file's lines (blank lines and `#` comments skipped) and
    /// the flag's.
    fn tokens(&self) -> Result<Vec<String>, String> {
        let mut tokens: Vec<String> = self.api_tokens.clone();
        if let Some(f) = &self.api_tokens_file {
            tokens.extend(netpulse_proto::auth::read_tokens(f, "API tokens")?);
        }
        Ok(tokens)
    }

    /// The token this manager presents to agents (--agent-token-file: its first token).
    fn agent_token(&self) -> Result<Option<netpulse_model::Secret>, String> {
        let Some(f) = &self.agent_token_file else {
            return Ok(None);
        };
        let tokens = netpulse_proto::auth::read_tokens(f, "agent token")?;
        match tokens.into_iter().next() {
            Some(t) => Ok(Some(netpulse_model::Secret::new(t))),
            None => Err(format!(
                "the agent token file {} holds no token",
                f.display()
            )),
        }
    }

    /// The whole server configuration, with every file it names read (tokens, keys, TLS).
    pub fn load(&self, manager_id: String) -> Result<ServerConfig, String> {
        let mut cfg = self.server(manager_id, self.tokens()?);
        (cfg.tls, cfg.agent_tls) = self.tls()?;
        cfg.agent_token = self.agent_token()?;
        cfg.scheduler.sealer = self.sealer()?;
        cfg.webhooks = self.webhooks.load()?;
        cfg.etcd_tls = netpulse_proto::tls::etcd(
            self.etcd_ca_file.as_deref(),
            self.etcd_cert_file.as_deref(),
            self.etcd_key_file.as_deref(),
            &self.etcd_endpoints,
        )?;
        Ok(cfg)
    }

    fn server(&self, manager_id: String, tokens: Vec<String>) -> ServerConfig {
        let call_timeout = Duration::from_secs(5);
        ServerConfig {
            etcd_endpoints: self.etcd_endpoints.clone(),
            scheduler: SchedulerConfig {
                prefix: self.etcd_prefix.clone(),
                manager_id,
                limits: RequestLimits {
                    max_lines: self.max_lines,
                    max_line_bytes: self.max_line_bytes,
                    max_request_bytes: self.max_request_bytes,
                },
                max_active_jobs: self.max_active_jobs,
                call_timeout,
                sweep_interval: Duration::from_millis(500),
                node_lost_grace: Duration::from_secs(self.node_lost_grace_seconds),
                config_templates_dir: self.config_templates_dir.clone(),
                ntc_templates_dir: self.ntc_templates_dir.clone(),
                templates_dir: self.templates_dir.clone(),
                sealer: Default::default(),
                credentials: crate::credentials::CredentialPolicy {
                    refuse_inline_secrets: self.refuse_inline_secrets,
                    vault_allowed_paths: self
                        .vault_allowed_paths
                        .iter()
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty())
                        .collect(),
                },
            },
            store: StoreConfig {
                prefix: self.etcd_prefix.clone(),
                max_output_bytes: self.max_output_bytes,
                lease_bucket: Duration::from_secs(self.result_lease_bucket_seconds),
                call_timeout,
                ..Default::default()
            },
            lease_ttl: Duration::from_secs(self.lease_ttl_seconds),
            tokens,
            max_concurrent_requests: self.max_concurrent_requests,
            max_requests_per_connection: self.max_requests_per_connection,
            max_jobs_per_stream: self.max_jobs_per_stream,
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            metrics_listen: self.metrics_listen,
            tls: None,
            agent_tls: None,
            agent_token: None,
            webhooks: Default::default(),
            etcd_tls: None,
            task_retention_minutes: self.task_retention_minutes,
        }
    }

    /// The API's TLS and the agent links' TLS, read from their files.
    fn tls(&self) -> Result<(Option<ServerTlsConfig>, Option<ClientTlsConfig>), String> {
        let api = netpulse_proto::tls::server_if(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )?;
        let agents = match &self.agent_tls_ca {
            Some(ca) => Some(netpulse_proto::tls::client(
                ca,
                self.agent_tls_cert
                    .as_deref()
                    .zip(self.agent_tls_key.as_deref()),
            )?),
            None => None,
        };
        Ok((api, agents))
    }
}

/// What `server::run` needs; tests build it directly.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// For the liveness thread's own etcd connection.
    pub etcd_endpoints: Vec<String>,
    pub scheduler: SchedulerConfig,
    pub store: StoreConfig,
    pub lease_ttl: Duration,
    pub tokens: Vec<String>,
    pub max_concurrent_requests: usize,
    pub max_requests_per_connection: usize,
    pub max_jobs_per_stream: usize,
    pub request_timeout: Duration,
    pub metrics_listen: Option<SocketAddr>,
    /// The API over TLS (None: plaintext).
    pub tls: Option<ServerTlsConfig>,
    /// Agent links over TLS (None: plaintext).
    pub agent_tls: Option<ClientTlsConfig>,
    /// The bearer token presented to agents that require one.
    pub agent_token: Option<netpulse_model::Secret>,
    pub webhooks: crate::webhooks::WebhookConfig,
    /// etcd over TLS (None: plaintext), for every etcd connection of the manager.
    pub etcd_tls: Option<ClientTlsConfig>,
    pub task_retention_minutes: u64,
}

impl ServerConfig {
    /// How the manager's etcd connections are made.
    pub fn etcd_options(&self, call_timeout: Duration) -> etcd_client::ConnectOptions {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(call_timeout)
            .with_timeout(call_timeout);
        match &self.etcd_tls {
            Some(tls) => opts.with_tls(tls.clone()),
            None => opts,
        }
    }
}
