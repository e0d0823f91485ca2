//! `netpulse`: the command-line client of the NetPulse manager's gRPC API.
//!
//! Exit codes: 0 done (every job succeeded); 1 a job failed, was canceled or expired (or a bulk
//! entry was refused); 2 bad usage or an argument the server refused (`INVALID_ARGUMENT`); 3 the
//! manager could not be reached or is unavailable (`UNAVAILABLE`, `DEADLINE_EXCEEDED`); 4 the
//! token was missing or refused; 5 no such job, worker or node; 6 any other server error
//! (`RESOURCE_EXHAUSTED`, `FAILED_PRECONDITION`, `INTERNAL`).

mod credential;
mod files;
mod follow;
mod inventory;
mod reach;
mod render;
mod tasks;
mod test_connection;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use netpulse_proto::api::cluster_service_client::ClusterServiceClient;
use netpulse_proto::api::job_service_client::JobServiceClient;
use netpulse_proto::api::*;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::inventory::{Entry, Format};

#[derive(Parser, Debug)]
#[command(
    name = "netpulse",
    version,
    about = "Run commands on network devices through NetPulse"
)]
struct Cli {
    /// The manager's gRPC address.
    #[arg(
        long,
        global = true,
        env = "NETPULSE_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// API bearer token (prefer the variable: flags show in `ps`).
    #[arg(long, global = true, env = "NETPULSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// JSON on stdout instead of tables (one document; `jobs watch` prints one per line).
    #[arg(long, global = true)]
    json: bool,
    /// Talk TLS to the manager, trusting this CA (PEM).
    #[arg(long, global = true, env = "NETPULSE_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate for a manager that requires mutual TLS (PEM; with --tls-key).
    #[arg(long, global = true, env = "NETPULSE_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    #[arg(long, global = true, env = "NETPULSE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Longest wait for the manager on any one call, in seconds (waiting for a job included).
    #[arg(long, global = true, default_value_t = 3600)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run commands (or push configuration) on one device; waits and prints the output.
    Exec(ExecArgs),
    /// Log in to one device and show each step's time, the prompt and the platform; runs
    /// nothing.
    Test(test_connection::TestArgs),
    /// Long-running tasks on linux hosts: start, read (--follow), list, kill.
    Tasks(tasks::TasksArgs),
    /// Send a file to a device (through a node's staging area), verified by its hash.
    Put(files::PutArgs),
    /// Fetch a file from a device, verified by its hash.
    Get(files::GetArgs),
    /// Run on every device of an inventory file (YAML or CSV) with a progress bar and a summary.
    Bulk(BulkArgs),
    /// List, show, follow or cancel jobs.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// List pinned workers, or stop one.
    #[command(subcommand)]
    Workers(WorkersCmd),
    /// List node agents, or drain one.
    #[command(subcommand)]
    Nodes(NodesCmd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StrategyArg {
    Pinned,
    Fifo,
}

#[derive(Args, Debug)]
struct JobOptions {
    /// The lines are configuration to push (in config mode), not commands.
    #[arg(long)]
    config: bool,
    /// Enter enable (privileged) mode first; the secret comes from --secret-env.
    #[arg(long)]
    enable: bool,
    /// Save the configuration after a fully successful push.
    #[arg(long)]
    save: bool,
    /// pinned: reuse the device's session (the default); fifo: a fresh connection per job.
    #[arg(long, value_enum, default_value = "pinned")]
    strategy: StrategyArg,
    /// Return at once with the job id instead of waiting for the end.
    #[arg(long)]
    no_wait: bool,
    /// Longest run of the job on the device, in seconds (0: the server's default, 300).
    #[arg(long, default_value_t = 0)]
    job_timeout: u32,
    /// Also return the session's transcript (what it received and sent, secrets masked).
    #[arg(long)]
    transcript: bool,
    /// With a push: read the running configuration before and after, and print the diff
    /// (JSON: config_before, config_after, config_diff).
    #[arg(long)]
    backup: bool,
    /// Commit the push with the device's confirmed-commit timer of this many seconds (Junos:
    /// whole minutes, rounded up); unless --confirm-commit follows in time, it rolls back.
    #[arg(long, value_name = "SECONDS")]
    confirm_within: Option<u32>,
    /// Confirm the pending confirmed commit (no lines).
    #[arg(long)]
    confirm_commit: bool,
    /// Load the configuration lines into the device's candidate, print its diff and throw the
    /// candidate away (platforms without one: nothing is sent).
    #[arg(long)]
    dry_run: bool,
    /// Push configuration lines rendered (at the manager) from this Jinja2 template file.
    #[arg(long, value_name = "FILE")]
    template: Option<PathBuf>,
    /// A template variable, NAME=VALUE: a string, or JSON for numbers, lists and objects
    /// (--var 'servers=["192.0.2.1"]'). Repeat for each.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// POST the job's JSON to this URL when it ends, signed (docs/webhooks.md).
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// A header for the webhook's requests, NAME=VALUE (not a secret: it is stored). Repeat.
    #[arg(long, value_name = "NAME=VALUE", requires = "webhook")]
    webhook_header: Vec<String>,
    /// The managers' signing secret to sign with (the one named "default" when left out).
    #[arg(long, value_name = "NAME", requires = "webhook")]
    webhook_secret: Option<String>,
    /// Also call the webhook when the job starts.
    #[arg(long, requires = "webhook")]
    webhook_on_start: bool,
    /// Parse each command's output into rows with the template ntc-templates' index names for
    /// it (the rows print under the output; JSON: `parsed`).
    #[arg(long)]
    parse: bool,
    /// Run the commands in one of the platform's named modes (`shell` on Junos, `admin` on
    /// IOS-XR, `bash` on EOS and NX-OS; docs/platforms.md lists them).
    #[arg(long)]
    mode: Option<String>,
    #[command(flatten)]
    login: Login,
}

/// Who logs in to the device and how it is reached.
#[derive(Args, Debug)]
struct Login {
    /// Device login user.
    #[arg(long, env = "NETPULSE_DEVICE_USERNAME")]
    username: Option<String>,
    /// The variable that holds the device password.
    #[arg(long, default_value = "NETPULSE_DEVICE_PASSWORD")]
    password_env: String,
    /// A file whose first line is the device password (instead of --password-env).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The variable that holds the enable secret.
    #[arg(long, default_value = "NETPULSE_DEVICE_SECRET")]
    secret_env: String,
    /// A platform name, Netmiko's spelling (cisco_ios, juniper_junos, huawei_vrpv8, fortinet,
    /// linux, ...; docs/platforms.md lists them).
    #[arg(long)]
    device_type: Option<String>,
    #[command(flatten)]
    reach: reach::Reach,
    #[command(flatten)]
    credential: credential::CredentialFlags,
}

#[derive(Args, Debug)]
struct ExecArgs {
    /// Device address.
    #[arg(long)]
    host: String,
    /// SSH port (22 when left out).
    #[arg(long, default_value_t = 22)]
    port: u32,
    /// A retried submit with the same key returns the first job instead of running again.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print each command's output as the device sends it, not only at the end.
    #[arg(long, conflicts_with = "no_wait")]
    follow: bool,
    #[command(flatten)]
    job: JobOptions,
    /// Commands (or configuration lines with --config), in order.
    #[arg(required_unless_present_any = ["template", "confirm_commit"])]
    lines: Vec<String>,
}

#[derive(Args, Debug)]
struct BulkArgs {
    /// Inventory file: YAML (a list of devices, or defaults + devices) or CSV with a header row.
    inventory: PathBuf,
    /// Default: from the file name (.csv is CSV, anything else YAML).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Commands (or configuration lines) for devices whose entry lists none.
    #[arg(long = "line", short = 'l')]
    lines: Vec<String>,
    /// Jobs followed at once while waiting (each is a stream on the one connection).
    #[arg(long, default_value_t = 256)]
    follow: usize,
    #[command(flatten)]
    job: JobOptions,
}

#[derive(Subcommand, Debug)]
enum JobsCmd {
    /// Jobs in submit order (oldest first), with optional filters.
    List {
        #[arg(long)]
        host: Option<String>,
        /// queued, running, succeeded, failed, canceled or expired.
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        #[arg(long)]
        node: Option<String>,
        /// At most this many jobs (pages are followed).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One job with its output.
    Get { id: String },
    /// Follows a job until it ends (exit code as for exec).
    Watch { id: String },
    /// Cancels a queued or running job.
    Cancel { id: String },
}

#[derive(Subcommand, Debug)]
enum WorkersCmd {
    List {
        #[arg(long)]
        node: Option<String>,
        /// Only the workers of this device address.
        #[arg(long)]
        host: Option<String>,
    },
    /// Stops a pinned worker (by id, or by device): its device's next job reconnects.
    Kill {
        #[arg(long, conflicts_with_all = ["host", "port"], required_unless_present = "host")]
        id: Option<String>,
        #[arg(long, requires = "port")]
        host: Option<String>,
        #[arg(long)]
        port: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
enum NodesCmd {
    List,
    /// Stops placing devices on the node and moves its idle devices away.
    Drain {
        node: String,
    },
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::from_str_name(&format!("JOB_STATUS_{}", s.to_ascii_uppercase()))
        .filter(|s| *s != JobStatus::Unspecified)
        .ok_or_else(|| {
            format!("{s:?} is not a status: queued, running, succeeded, failed, canceled, expired")
        })
}

/// A failure and the exit code it maps to.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl From<Status> for Failure {
    fn from(s: Status) -> Failure {
        // The connection failed under the call (a refused TLS handshake shows here).
        if let Some(e) =
            std::error::Error::source(&s).and_then(|e| e.downcast_ref::<tonic::transport::Error>())
        {
            return Failure {
                code: 3,
                message: format!("the connection to the manager failed: {e:?}"),
            };
        }
        let code = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => 2,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => 3,
            Code::Unauthenticated | Code::PermissionDenied => 4,
            Code::NotFound => 5,
            _ => 6,
        };
        let name = format!("{:?}", s.code());
        Failure {
            code,
            message: format!("{name}: {}", s.message()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure {
            code: 2,
            message: format!("{e:#}"),
        }
    }
}

type Outcome = Result<u8, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netpulse: cannot start: {e}");
            return ExitCode::from(70);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("netpulse: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The connection and the token every call carries.
#[derive(Clone)]
struct Api {
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
}

impl Api {
    async fn connect(cli: &Cli) -> Result<Api, Failure> {
        let scheme = if cli.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let addr = if cli.addr.contains("://") {
            cli.addr.clone()
        } else {
            format!("{scheme}://{}", cli.addr)
        };
        let usage = |message: String| Failure { code: 2, message };
        let mut endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|e| usage(format!("--addr {addr:?} is not a URL: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(ca) = &cli.tls_ca {
            let identity = cli.tls_cert.as_deref().zip(cli.tls_key.as_deref());
            let tls = netpulse_proto::tls::client(ca, identity).map_err(usage)?;
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| usage(format!("TLS settings: {e}")))?;
        }
        let channel = endpoint.connect().await.map_err(|e| Failure {
            code: 3,
            message: format!("cannot reach the manager at {addr}: {e:?}"),
        })?;
        let token = match &cli.token {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| Failure {
                code: 2,
                message: "the token has characters a header cannot carry".into(),
            })?),
            None => None,
        };
        Ok(Api {
            channel,
            token,
            timeout: Duration::from_secs(cli.timeout.max(1)),
        })
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(self.timeout);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }

    fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
    }

    fn cluster(&self) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.channel.clone())
    }
}

async fn run(cli: Cli) -> Outcome {
    let api = Api::connect(&cli).await?;
    let json = cli.json;
    match cli.cmd {
        Cmd::Exec(a) => exec(&api, a, json).await,
        Cmd::Bulk(a) => bulk(&api, a, json).await,
        Cmd::Test(a) => test_connection::run(&api, a, json).await,
        Cmd::Tasks(a) => tasks::run(&api, a, json).await,
        Cmd::Put(a) => files::put(&api, a, json).await,
        Cmd::Get(a) => files::get(&api, a, json).await,
        Cmd::Jobs(c) => jobs(&api, c, json).await,
        Cmd::Workers(c) => workers(&api, c, json).await,
        Cmd::Nodes(c) => nodes(&api, c, json).await,
    }
}

fn print_json(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = writeln!(out);
}

/// 0 when the job succeeded (or is not final yet: it was not waited for), 1 otherwise.
fn job_code(j: &Job) -> u8 {
    match j.status() {
        JobStatus::Succeeded | JobStatus::Queued | JobStatus::Running => 0,
        _ => 1,
    }
}

fn show_job(j: &Job, json: bool) {
    if json {
        print_json(&render::job_json(j));
    } else {
        print!("{}", render::job_text(j));
        eprintln!("{}", render::job_summary(j));
    }
}

fn read_secret(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

impl Login {
    fn password(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --password-file {}", path.display()))?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
        }
        Ok(read_secret(&self.password_env))
    }

    /// The connection to `host:port` with these credentials and flags.
    fn connection(&self, host: String, port: u32) -> anyhow::Result<Connection> {
        let mut connection = Connection {
            host,
            port,
            username: self.username.clone().unwrap_or_default(),
            password: self.password()?.unwrap_or_default(),
            device_type: self.device_type.clone().unwrap_or_default(),
            secret: read_secret(&self.secret_env).unwrap_or_default(),
            ..Default::default()
        };
        self.reach.apply(&mut connection)?;
        self.credential.apply(&mut connection)?;
        Ok(connection)
    }

    /// One device's connection: it needs a password, a key or a credential reference.
    fn device(&self, host: String, port: u32) -> anyhow::Result<Connection> {
        let c = self.connection(host, port)?;
        if c.password.is_empty() && c.private_key.is_empty() && c.credential.is_none() {
            anyhow::bail!(
                "no device password: set {}, or give --password-file, --key-file, --credential-profile or --vault-path",
                self.password_env
            );
        }
        Ok(c)
    }
}

/// `NAME=VALUE` pairs as template variables: JSON where the value parses as JSON, else text.
fn template_vars(vars: &[String]) -> anyhow::Result<prost_types::Struct> {
    let mut fields = std::collections::BTreeMap::new();
    for v in vars {
        let Some((name, text)) = v.split_once('=') else {
            anyhow::bail!("--var takes NAME=VALUE, got {v:?}");
        };
        let parsed = serde_json::from_str(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
        fields.insert(name.to_string(), netpulse_proto::json::to_value(&parsed));
    }
    Ok(prost_types::Struct { fields })
}

impl JobOptions {
    /// The request every device starts from; the caller sets the connection's address.
    fn template(&self, lines: Vec<String>) -> anyhow::Result<ExecuteRequest> {
        let (commands, config) = if self.config {
            (Vec::new(), lines)
        } else {
            (lines, Vec::new())
        };
        let config_template = match &self.template {
            None if !self.vars.is_empty() => anyhow::bail!("--var needs --template"),
            None => None,
            Some(_) if !commands.is_empty() || !config.is_empty() => {
                anyhow::bail!("give lines or --template, not both")
            }
            Some(path) => Some(ConfigTemplate {
                inline_template: std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("--template {}: {e}", path.display()))?,
                variables: Some(template_vars(&self.vars)?),
                ..Default::default()
            }),
        };
        Ok(ExecuteRequest {
            config_template,
            connection: Some(self.login.connection(String::new(), 0)?),
            commands,
            config,
            strategy: match self.strategy {
                StrategyArg::Pinned => Strategy::Pinned,
                StrategyArg::Fifo => Strategy::Fifo,
            } as i32,
            enable_mode: self.enable,
            save: self.save,
            timeout_seconds: self.job_timeout,
            transcript: self.transcript,
            mode: self.mode.clone().unwrap_or_default(),
            parse: self.parse,
            backup: self.backup,
            dry_run: self.dry_run,
            confirm_within_seconds: self.confirm_within.unwrap_or(0),
            confirm_commit: self.confirm_commit,
            wait: !self.no_wait,
            webhook: self.webhook()?,
            ..Default::default()
        })
    }

    fn webhook(&self) -> anyhow::Result<Option<netpulse_proto::api::Webhook>> {
        let Some(url) = &self.webhook else {
            return Ok(None);
        };
        let mut headers = std::collections::HashMap::new();
        for h in &self.webhook_header {
            let Some((k, v)) = h.split_once('=') else {
                anyhow::bail!("--webhook-header takes NAME=VALUE, got {h:?}");
            };
            headers.insert(k.to_string(), v.to_string());
        }
        Ok(Some(netpulse_proto::api::Webhook {
            url: url.clone(),
            headers,
            signing_secret: self.webhook_secret.clone().unwrap_or_default(),
            on_start: self.webhook_on_start,
        }))
    }
}

async fn exec(api: &Api, a: ExecArgs, json: bool) -> Outcome {
    let mut req = a.job.template(a.lines)?;
    req.connection = Some(a.job.login.device(a.host, a.port)?);
    req.idempotency_key = a.idempotency_key.unwrap_or_default();
    if a.follow {
        return follow::exec(api, req, json).await;
    }
    let job = api.jobs().execute(api.req(req)).await?.into_inner();
    if a.job.no_wait && !json {
        println!("{}", job.id);
        eprintln!("{}", render::job_summary(&job));
        return Ok(0);
    }
    show_job(&job, json);
    Ok(job_code(&job))
}

/// The override for one inventory entry: what it sets beyond the template.
fn device_override(d: &Entry, defaults: &Entry) -> anyhow::Result<DeviceOverride> {
    let pick = |own: &Option<String>, default: &Option<String>| {
        own.clone().or_else(|| default.clone()).unwrap_or_default()
    };
    let password = match (
        &d.password_env,
        &d.password,
        &defaults.password_env,
        &defaults.password,
    ) {
        (Some(var), _, _, _) => secret_var(var)?,
        (None, Some(p), _, _) => p.clone(),
        (None, None, Some(var), _) => secret_var(var)?,
        (None, None, None, Some(p)) => p.clone(),
        _ => String::new(),
    };
    let secret = match d.secret_env.as_ref().or(defaults.secret_env.as_ref()) {
        Some(var) => secret_var(var)?,
        None => String::new(),
    };
    use netpulse_proto::api::{CredentialRef, VaultSecret, credential_ref::Source};
    let credential = match (
        pick(&d.credential_profile, &defaults.credential_profile),
        pick(&d.vault_path, &defaults.vault_path),
    ) {
        (p, v) if !p.is_empty() && !v.is_empty() => {
            anyhow::bail!(
                "{}: give credential_profile or vault_path, not both",
                pick(&d.host, &None)
            )
        }
        (p, _) if !p.is_empty() => Some(Source::Profile(p)),
        (_, v) if !v.is_empty() => Some(Source::Vault(VaultSecret {
            path: v,
            ..Default::default()
        })),
        _ => None,
    }
    .map(|s| CredentialRef { source: Some(s) });
    let (commands, config) = if d.commands.is_empty() && d.config.is_empty() {
        (defaults.commands.clone(), defaults.config.clone())
    } else {
        (d.commands.clone(), d.config.clone())
    };
    Ok(DeviceOverride {
        connection: Some(Connection {
            host: pick(&d.host, &None),
            port: d.port.or(defaults.port).unwrap_or(0),
            username: pick(&d.username, &defaults.username),
            password,
            device_type: pick(&d.device_type, &defaults.device_type),
            secret,
            credential,
            ..Default::default()
        }),
        commands,
        config,
    })
}

fn secret_var(var: &str) -> anyhow::Result<String> {
    read_secret(var).with_context(|| format!("the inventory names {var}, which is not set"))
}

async fn bulk(api: &Api, a: BulkArgs, json: bool) -> Outcome {
    let inv = inventory::load(&a.inventory, a.format)?;
    let wait = !a.job.no_wait;
    let mut template = a.job.template(a.lines)?;
    // The inventory's devices are followed by watching, not by a waiting submit.
    template.wait = false;
    let devices = inv
        .devices
        .iter()
        .map(|d| device_override(d, &inv.defaults))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let hosts: Vec<String> = devices
        .iter()
        .map(|d| {
            let c = d.connection.as_ref().expect("set above");
            format!("{}:{}", c.host, if c.port == 0 { 22 } else { c.port })
        })
        .collect();
    let resp = api
        .jobs()
        .execute_bulk(api.req(ExecuteBulkRequest {
            template: Some(template),
            devices,
        }))
        .await?
        .into_inner();
    for r in &resp.rejected {
        eprintln!(
            "refused: device {} ({}): {}",
            r.index + 1,
            hosts.get(r.index as usize).map_or("?", String::as_str),
            r.reason
        );
    }
    let jobs = if wait {
        follow_all(api, resp.jobs, a.follow.max(1), json).await?
    } else {
        resp.jobs
    };
    if json {
        print_json(&serde_json::json!({
            "jobs": jobs.iter().map(render::job_json).collect::<Vec<_>>(),
            "rejected": resp.rejected.iter().map(|r| serde_json::json!({
                "index": r.index, "host": r.host, "reason": r.reason,
            })).collect::<Vec<_>>(),
        }));
    } else {
        print!("{}", render::jobs_table(&jobs));
        let ok = jobs
            .iter()
            .filter(|j| j.status() == JobStatus::Succeeded)
            .count();
        let summary = if wait {
            format!(
                "{ok} of {} succeeded, {} failed, {} refused",
                jobs.len(),
                jobs.len() - ok,
                resp.rejected.len()
            )
        } else {
            format!("{} submitted, {} refused", jobs.len(), resp.rejected.len())
        };
        eprintln!("{summary}");
    }
    let failed = !resp.rejected.is_empty() || jobs.iter().any(|j| job_code(j) != 0);
    Ok(u8::from(failed))
}

/// Follows every job to its end (at most `at_once` streams open), with a progress bar on a
/// terminal.
async fn follow_all(
    api: &Api,
    jobs: Vec<Job>,
    at_once: usize,
    json: bool,
) -> Result<Vec<Job>, Failure> {
    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} jobs ended  {msg}  ({elapsed})",
        )
        .expect("valid template"),
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(at_once));
    let mut set = tokio::task::JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let (api, permits, bar) = (api.clone(), permits.clone(), bar.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let end = follow(&api, job).await;
            bar.inc(1);
            (i, end)
        });
    }
    let mut ended = Vec::new();
    let mut failed = 0;
    while let Some(r) = set.join_next().await {
        let (i, end) = r.map_err(|e| anyhow::anyhow!("a follower stopped: {e}"))?;
        let j = end?;
        if job_code(&j) != 0 {
            failed += 1;
            bar.set_message(format!("{failed} failed"));
        }
        ended.push((i, j));
    }
    bar.finish_and_clear();
    ended.sort_by_key(|(i, _)| *i);
    Ok(ended.into_iter().map(|(_, j)| j).collect())
}

/// The job's last state: its stream ends when the job is final.
async fn follow(api: &Api, job: Job) -> Result<Job, Failure> {
    let mut last = job;
    let mut stream = api
        .jobs()
        .watch_job(api.req(WatchJobRequest {
            id: last.id.clone(),
        }))
        .await?
        .into_inner();
    while let Some(j) = stream.next().await {
        last = j?;
    }
    Ok(last)
}

async fn jobs(api: &Api, cmd: JobsCmd, json: bool) -> Outcome {
    let mut client = api.jobs();
    match cmd {
        JobsCmd::List {
            host,
            status,
            node,
            limit,
        } => {
            let mut jobs = Vec::new();
            let mut token = String::new();
            while jobs.len() < limit {
                let page = client
                    .list_jobs(api.req(ListJobsRequest {
                        host: host.clone().unwrap_or_default(),
                        status: status.map_or(0, |s| s as i32),
                        node_id: node.clone().unwrap_or_default(),
                        page_size: (limit - jobs.len()).min(1000) as u32,
                        page_token: token,
                    }))
                    .await?
                    .into_inner();
                jobs.extend(page.jobs);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            jobs.truncate(limit);
            if json {
                print_json(&serde_json::Value::Array(
                    jobs.iter().map(render::job_json).collect(),
                ));
            } else {
                print!("{}", render::jobs_table(&jobs));
            }
            Ok(0)
        }
        JobsCmd::Get { id } => {
            let j = client
                .get_job(api.req(GetJobRequest { id }))
                .await?
                .into_inner();
            show_job(&j, json);
            Ok(job_code(&j))
        }
        JobsCmd::Watch { id } => {
            let mut stream = client
                .watch_job(api.req(WatchJobRequest { id }))
                .await?
                .into_inner();
            let mut last = None;
            while let Some(j) = stream.next().await {
                let j = j?;
                if json {
                    println!("{}", render::job_json(&j));
                } else {
                    eprintln!("{}", render::job_summary(&j));
                }
                last = Some(j);
            }
            let Some(j) = last else {
                return Err(Failure {
                    code: 6,
                    message: "the watch ended without the job".into(),
                });
            };
            if !json {
                print!("{}", render::job_text(&j));
            }
            Ok(job_code(&j))
        }
        JobsCmd::Cancel { id } => {
            let j = client
                .cancel_job(api.req(CancelJobRequest { id }))
                .await?
                .into_inner();
            if json {
                print_json(&render::job_json(&j));
            } else {
                eprintln!("{}", render::job_summary(&j));
            }
            Ok(0)
        }
    }
}

async fn workers(api: &Api, cmd: WorkersCmd, json: bool) -> Outcome {
    let mut client = api.cluster();
    match cmd {
        WorkersCmd::List { node, host } => {
            let ws = client
                .list_workers(api.req(ListWorkersRequest {
                    node_id: node.unwrap_or_default(),
                    host: host.unwrap_or_default(),
                }))
                .await?
                .into_inner()
                .workers;
            if json {
                print_json(&serde_json::Value::Array(
                    ws.iter().map(render::worker_json).collect(),
                ));
            } else {
                print!("{}", render::workers_table(&ws));
            }
            Ok(0)
        }
        WorkersCmd::Kill { id, host, port } => {
            let killed = client
                .kill_worker(api.req(KillWorkerRequest {
                    worker_id: id.unwrap_or_default(),
                    host: host.unwrap_or_default(),
                    port: port.unwrap_or_default(),
                }))
                .await?
                .into_inner()
                .killed;
            if json {
                print_json(&serde_json::json!({ "killed": killed }));
            } else {
                eprintln!(
                    "{}",
                    if killed {
                        "worker stopping"
                    } else {
                        "no such worker running"
                    }
                );
            }
            Ok(if killed { 0 } else { 5 })
        }
    }
}

async fn nodes(api: &Api, cmd: NodesCmd, json: bool) -> Outcome {
    let mut client = api.cluster();
    match cmd {
        NodesCmd::List => {
            let ns = client
                .list_nodes(api.req(ListNodesRequest {}))
                .await?
                .into_inner()
                .nodes;
            if json {
                print_json(&serde_json::Value::Array(
                    ns.iter().map(render::node_json).collect(),
                ));
            } else {
                print!("{}", render::nodes_table(&ns));
            }
            Ok(0)
        }
        NodesCmd::Drain { node } => {
            let moved = client
                .drain_node(api.req(DrainNodeRequest {
                    node_id: node.clone(),
                }))
                .await?
                .into_inner()
                .devices_moved;
            if json {
                print_json(&serde_json::json!({ "node_id": node, "devices_moved": moved }));
            } else {
                eprintln!("{node} draining; {moved} idle devices moved");
            }
            Ok(0)
        }
    }
}
