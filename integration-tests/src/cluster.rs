//! A whole NetPulse cluster of real processes on loopback for end-to-end tests: etcd, a
//! `devsim`, node agents and managers, each with a log file in a temp dir (kept and named
//! when a test fails). Processes are killed on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use netpulse_proto::api::cluster_service_client::ClusterServiceClient;
use netpulse_proto::api::job_service_client::JobServiceClient;
use netpulse_proto::api::{self, ListNodesRequest};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::etcd::{Etcd, free_port};
use crate::{Devsim, SimDevice, sibling_bin};
pub use nix::sys::signal::Signal;

/// A binary of this workspace built next to the running test.
pub fn workspace_bin(name: &str) -> PathBuf {
    let bin = sibling_bin(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// A child process with its log file; killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    pub addr: String,
    /// Its metrics endpoint (`host:port`), when the cluster serves metrics.
    pub metrics: Option<String>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id().map_or(0, |p| p as i32)
    }

    /// Sends a signal (SIGSTOP freezes the process, SIGCONT resumes it).
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// SIGKILL, and reap.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `grace`).
    pub async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(r) => r.ok(),
            Err(_) => {
                self.kill9().await;
                None
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub agents: usize,
    pub managers: usize,
    /// devsim arguments (devices, delays).
    pub devsim: Vec<String>,
    pub tokens: Vec<String>,
    pub agent_lease_ttl_seconds: u64,
    pub manager_lease_ttl_seconds: u64,
    pub max_pinned_workers: usize,
    /// Extra manager flags.
    pub manager_args: Vec<String>,
    /// Extra node-agent flags.
    pub agent_args: Vec<String>,
    /// The manager's log filter (tests read its debug lines; benchmarks turn them off).
    pub manager_log: String,
    /// The node agents' log filter.
    pub agent_log: String,
    /// The simulated devices' login password and enable secret (passed to devsim).
    pub password: String,
    pub secret: String,
    /// Where etcd's data and the logs go; a temp dir (removed unless a test fails) when None.
    pub state_dir: Option<PathBuf>,
    /// Fixed ports: managers at base+1.., agents at base+11.., etcd at base+30 and base+31.
    /// Free ports when None.
    pub base_port: Option<u16>,
    /// Managers and agents serve Prometheus metrics on free ports (`Proc::metrics`).
    pub metrics: bool,
    /// Mutual TLS everywhere: the client API and the manager-agent links (the test client
    /// presents the PKI's client certificate).
    pub tls: Option<std::sync::Arc<crate::tls::TestPki>>,
    /// Managers and agents export traces to this OTLP/HTTP endpoint.
    pub otlp: Option<String>,
    /// The managers' shared `--secrets-key-file` line (`<id>:<hex>`), so replicas can adopt
    /// each other's jobs with their credentials; None keeps credentials in memory only.
    pub secrets_key: Option<String>,
    /// etcd serves over TLS and requires client certificates from this PKI; managers and
    /// agents get theirs.
    pub etcd_tls: Option<std::sync::Arc<crate::tls::TestPki>>,
}

/// The key `Options::default()` gives the managers.
pub const TEST_SECRETS_KEY: &str =
    "test-1:5e1f0c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

impl Default for Options {
    fn default() -> Self {
        Options {
            agents: 1,
            managers: 1,
            devsim: vec!["--devices".into(), "cisco_ios=2,juniper_junos=1".into()],
            tokens: Vec::new(),
            agent_lease_ttl_seconds: 3,
            manager_lease_ttl_seconds: 3,
            max_pinned_workers: 100,
            manager_args: Vec::new(),
            agent_args: Vec::new(),
            manager_log: "info,manager=debug".into(),
            agent_log: "info".into(),
            password: "admin".into(),
            secret: "enable".into(),
            state_dir: None,
            base_port: None,
            metrics: false,
            tls: None,
            secrets_key: Some(TEST_SECRETS_KEY.into()),
            etcd_tls: None,
            otlp: None,
        }
    }
}

pub struct TestCluster {
    pub opts: Options,
    pub etcd: Etcd,
    pub devsim: Devsim,
    pub agents: Vec<Proc>,
    pub managers: Vec<Proc>,
    /// Logs and etcd data.
    pub dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    pub prefix: String,
}

impl TestCluster {
    pub async fn start(opts: Options) -> anyhow::Result<TestCluster> {
        let (temp, dir) = match &opts.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new().prefix("netpulse-e2e-").tempdir()?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let etcd = match opts.base_port {
            Some(base) => {
                let log = std::fs::File::create(dir.join("etcd.log"))?;
                Etcd::start_in(&dir.join("etcd"), base + 30, base + 31, log).await
            }
            None => match &opts.etcd_tls {
                Some(pki) => Etcd::start_tls(pki.clone()).await,
                None => Etcd::start().await,
            },
        };
        let mut devsim_args = opts.devsim.clone();
        devsim_args.extend([
            "--password".into(),
            opts.password.clone(),
            "--enable-secret".into(),
            opts.secret.clone(),
        ]);
        let devsim_log = std::fs::File::create(dir.join("devsim.log"))?;
        let devsim =
            Devsim::start_logged(&workspace_bin("devsim"), &devsim_args, devsim_log.into()).await?;
        let mut c = TestCluster {
            opts: opts.clone(),
            etcd,
            devsim,
            agents: Vec::new(),
            managers: Vec::new(),
            dir,
            temp,
            prefix: "/netpulse-e2e".into(),
        };
        for i in 0..opts.agents {
            let a = c.spawn_agent(&format!("node-{}", i + 1))?;
            c.agents.push(a);
        }
        for i in 0..opts.managers {
            let m = c.spawn_manager(&format!("manager-{}", i + 1))?;
            c.managers.push(m);
        }
        for i in 0..opts.managers {
            c.wait_nodes(i, opts.agents).await?;
        }
        Ok(c)
    }

    fn log(&self, name: &str) -> anyhow::Result<(PathBuf, std::fs::File)> {
        let path = self.dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok((path, file))
    }

    /// A fixed port (`base + offset`) or a free one.
    fn port(&self, offset: u16) -> u16 {
        self.opts.base_port.map_or_else(free_port, |b| b + offset)
    }

    /// `--metrics-listen` on a free port when the cluster serves metrics (and
    /// `--otlp-endpoint` when it exports traces).
    fn telemetry_args(&self, cmd: &mut Command) -> Option<String> {
        if let Some(otlp) = &self.opts.otlp {
            cmd.args(["--otlp-endpoint", otlp]);
        }
        let addr = format!("127.0.0.1:{}", free_port());
        self.opts.metrics.then(|| {
            cmd.args(["--metrics-listen", &addr]);
            addr
        })
    }

    pub fn spawn_agent(&self, node_id: &str) -> anyhow::Result<Proc> {
        let n = node_id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1u16);
        let addr = format!("127.0.0.1:{}", self.port(10 + n));
        let (log, file) = self.log(node_id)?;
        let mut cmd = Command::new(workspace_bin("node-agent"));
        let metrics = self.telemetry_args(&mut cmd);
        if let Some(pki) = &self.opts.tls {
            cmd.arg("--tls-cert").arg(&pki.server_cert);
            cmd.arg("--tls-key").arg(&pki.server_key);
            cmd.arg("--tls-client-ca").arg(&pki.ca);
        }
        let child = cmd
            .args(["--node-id", node_id, "--listen", &addr])
            .args(["--etcd-endpoints", &self.etcd.endpoint])
            .args(["--etcd-prefix", &self.prefix])
            .args([
                "--lease-ttl-seconds",
                &self.opts.agent_lease_ttl_seconds.to_string(),
            ])
            .args([
                "--max-pinned-workers",
                &self.opts.max_pinned_workers.to_string(),
            ])
            .args(["--host-key-policy", "insecure-accept-any"])
            .args(self.etcd.client_flags())
            .args(["--shutdown-grace-seconds", "5"])
            .args(["--log", &self.opts.agent_log])
            .arg("--staging-dir")
            .arg(self.dir.join(format!("{node_id}-staging")))
            .args(&self.opts.agent_args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting node-agent")?;
        Ok(Proc {
            name: node_id.into(),
            child,
            log,
            addr,
            metrics,
        })
    }

    pub fn spawn_manager(&self, manager_id: &str) -> anyhow::Result<Proc> {
        let n = manager_id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1u16);
        let addr = format!("127.0.0.1:{}", self.port(n));
        let (log, file) = self.log(manager_id)?;
        let mut cmd = Command::new(workspace_bin("manager"));
        let metrics = self.telemetry_args(&mut cmd);
        if let Some(pki) = &self.opts.tls {
            cmd.arg("--tls-cert").arg(&pki.server_cert);
            cmd.arg("--tls-key").arg(&pki.server_key);
            cmd.arg("--tls-client-ca").arg(&pki.ca);
            cmd.arg("--agent-tls-ca").arg(&pki.ca);
            cmd.arg("--agent-tls-cert").arg(&pki.client_cert);
            cmd.arg("--agent-tls-key").arg(&pki.client_key);
        }
        cmd.args(["--manager-id", manager_id, "--listen", &addr])
            .args(["--etcd-endpoints", &self.etcd.endpoint])
            .args(["--etcd-prefix", &self.prefix])
            .args([
                "--lease-ttl-seconds",
                &self.opts.manager_lease_ttl_seconds.to_string(),
            ])
            .args(["--log", &self.opts.manager_log])
            .args(self.etcd.client_flags())
            .args(&self.opts.manager_args)
            .env_clear();
        if let Some(key) = &self.opts.secrets_key {
            let file = self.dir.join("secrets-key");
            std::fs::write(&file, key)?;
            cmd.arg("--secrets-key-file").arg(file);
        }
        if !self.opts.tokens.is_empty() {
            let tokens = self.dir.join("tokens");
            std::fs::write(&tokens, self.opts.tokens.join("\n"))?;
            cmd.arg("--api-tokens-file").arg(tokens);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting manager")?;
        Ok(Proc {
            name: manager_id.into(),
            child,
            log,
            addr,
            metrics,
        })
    }

    pub async fn channel(&self, manager: usize) -> anyhow::Result<Channel> {
        let addr = &self.managers[manager].addr;
        let endpoint = match &self.opts.tls {
            Some(pki) => Channel::from_shared(format!("https://{addr}"))?.tls_config(
                netpulse_proto::tls::client(
                    &pki.ca,
                    Some((pki.client_cert.as_path(), pki.client_key.as_path())),
                )
                .map_err(anyhow::Error::msg)?,
            )?,
            None => Channel::from_shared(format!("http://{addr}"))?,
        };
        Ok(endpoint
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?)
    }

    /// Request metadata with the first token, if any.
    pub fn authed<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = self.opts.tokens.first() {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r.set_timeout(Duration::from_secs(60));
        r
    }

    pub async fn jobs(&self, manager: usize) -> anyhow::Result<JobServiceClient<Channel>> {
        Ok(JobServiceClient::new(self.channel(manager).await?))
    }

    pub async fn admin(&self, manager: usize) -> anyhow::Result<ClusterServiceClient<Channel>> {
        Ok(ClusterServiceClient::new(self.channel(manager).await?))
    }

    /// Waits (at most 30 s) until the manager serves and sees `n` nodes.
    pub async fn wait_nodes(&self, manager: usize, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.admin(manager).await {
                Ok(mut c) => match c.list_nodes(self.authed(ListNodesRequest {})).await {
                    Ok(r) if r.get_ref().nodes.len() == n => return Ok(()),
                    Ok(r) => last = format!("{} nodes", r.get_ref().nodes.len()),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "manager {} did not see {n} nodes within 30 s (last: {last}); logs in {}",
            manager,
            self.dir.display()
        )
    }

    /// Stops everything in order with SIGTERM (managers, then agents, which drain and stop
    /// their workers, then devsim and etcd); returns each process and how it exited.
    pub async fn shutdown(&mut self) -> Vec<(String, Option<std::process::ExitStatus>)> {
        let grace = Duration::from_secs(20);
        let mut out = Vec::new();
        for p in self.managers.iter_mut().chain(self.agents.iter_mut()) {
            out.push((p.name.clone(), p.stop(grace).await));
        }
        for (name, child) in [
            ("devsim", &mut self.devsim.child),
            ("etcd", &mut self.etcd.child),
        ] {
            if let Some(pid) = child.id() {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            let status = match tokio::time::timeout(grace, child.wait()).await {
                Ok(r) => r.ok(),
                Err(_) => {
                    let _ = child.start_kill();
                    None
                }
            };
            out.push((name.to_string(), status));
        }
        out
    }

    /// Polls `GetJob` on `manager` until `done` holds (at most `limit`); returns the job.
    pub async fn wait_job(
        &self,
        manager: usize,
        id: &str,
        limit: Duration,
        done: impl Fn(&api::Job) -> bool,
    ) -> api::Job {
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(mut jobs) = self.jobs(manager).await
                && let Ok(j) = jobs
                    .get_job(self.authed(api::GetJobRequest { id: id.into() }))
                    .await
            {
                let j = j.into_inner();
                if done(&j) {
                    return j;
                }
                last = Some(j);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "job {id} did not reach the expected state within {limit:?}; last seen {last:?}; logs in {}",
            self.dir.display()
        )
    }

    /// Fails when an agent or manager of this cluster has a zombie child (an exited worker
    /// nobody reaped) for 10 s.
    pub async fn assert_no_zombies(&self) {
        let parents: Vec<i32> = self
            .agents
            .iter()
            .chain(&self.managers)
            .map(Proc::pid)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let zombies: Vec<u64> = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|pid| {
                    proc_state(*pid)
                        .is_some_and(|(s, parent)| s == 'Z' && parents.contains(&parent))
                })
                .collect();
            if zombies.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "zombies left: {zombies:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every process log written so far, concatenated.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for p in self.agents.iter().chain(&self.managers) {
            all.push_str(&std::fs::read_to_string(&p.log).unwrap_or_default());
        }
        all
    }

    pub fn device(&self, i: usize) -> &SimDevice {
        &self.devsim.devices[i]
    }

    /// A request to run `commands` on simulated device `i`.
    pub fn request(&self, i: usize, commands: &[&str]) -> api::ExecuteRequest {
        let d = self.device(i);
        api::ExecuteRequest {
            connection: Some(api::Connection {
                host: "127.0.0.1".into(),
                port: d.port as u32,
                username: "admin".into(),
                password: self.opts.password.clone(),
                device_type: d.device_type.clone(),
                secret: self.opts.secret.clone(),
                ..Default::default()
            }),
            commands: commands.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }
}

/// One bulk of `template`, one job per device (each device's port over the template's).
pub fn bulk_request(
    template: api::ExecuteRequest,
    devices: &[SimDevice],
) -> api::ExecuteBulkRequest {
    api::ExecuteBulkRequest {
        template: Some(template),
        devices: devices
            .iter()
            .map(|d| api::DeviceOverride {
                connection: Some(api::Connection {
                    port: d.port as u32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    }
}

/// Resolves on SIGINT or SIGTERM. A binary that runs a cluster selects on it around its work,
/// so that an interrupt drops the cluster (its processes are killed on drop) instead of
/// leaving them running.
pub async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A process's state letter and parent pid from `/proc/<pid>/stat`; None once it is gone.
pub fn proc_state(pid: u64) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat.rsplit_once(") ")?.1.split(' ');
    let state = f.next()?.chars().next()?;
    Some((state, f.next()?.parse().ok()?))
}

pub fn is_final(j: &api::Job) -> bool {
    use api::JobStatus::*;
    matches!(j.status(), Succeeded | Failed | Canceled | Expired)
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(t) = self.temp.take()
        {
            eprintln!("cluster logs kept in {}", t.keep().display());
        }
    }
}
