//! Harness for end-to-end runs of the real binaries: start `devsim` as a process and read the
//! addresses it serves, start `pinned-worker` processes and drive them with frames, summarise
//! latency samples.

pub mod bao;
pub mod cluster;
pub mod etcd;
pub mod files;
pub mod otlp;
pub mod sshd;
pub mod tls;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use netpulse_proto::worker::{
    self as wire, ParentFrame, WorkerFrame, parent_frame::Frame as In, worker_frame::Frame as Out,
};
use pinned_worker::child::WorkerChild;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A binary built next to the running one (`target/<profile>/NAME`).
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("profile dir")
    } else {
        dir
    };
    dir.join(name)
}

/// Where the binaries under test are: next to the running one unless given.
#[derive(clap::Args, Clone, Debug)]
pub struct Bins {
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    #[arg(long)]
    pub devsim_bin: Option<PathBuf>,
}

impl Bins {
    /// The (worker, devsim) paths; an error names a missing one and how to build it.
    pub fn resolve(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        let worker = self
            .worker_bin
            .clone()
            .unwrap_or_else(|| sibling_bin("pinned-worker"));
        let devsim = self
            .devsim_bin
            .clone()
            .unwrap_or_else(|| sibling_bin("devsim"));
        for b in [&worker, &devsim] {
            anyhow::ensure!(
                b.exists(),
                "{} not found: build it first (cargo build --release -p pinned-worker -p devsim)",
                b.display()
            );
        }
        Ok((worker, devsim))
    }
}

/// The debug `pinned-worker` next to the running test, which must have been built.
pub fn worker_bin() -> PathBuf {
    let bin = sibling_bin("pinned-worker");
    assert!(
        bin.exists(),
        "{} is missing: build it (cargo build -p pinned-worker)",
        bin.display()
    );
    bin
}

#[derive(Clone, Debug)]
pub struct SimDevice {
    pub name: String,
    pub device_type: String,
    pub port: u16,
}

/// A running `devsim` process; killed on drop.
pub struct Devsim {
    pub child: Child,
    pub devices: Vec<SimDevice>,
}

impl Devsim {
    pub async fn start(bin: &Path, args: &[String]) -> anyhow::Result<Devsim> {
        Devsim::start_logged(bin, args, Stdio::inherit()).await
    }

    /// As `start`, with devsim's log (stderr) going to `log`.
    pub async fn start_logged(bin: &Path, args: &[String], log: Stdio) -> anyhow::Result<Devsim> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut devices = Vec::new();
        let ready = async {
            while let Some(line) = lines.next_line().await? {
                if line == "ready" {
                    return Ok(());
                }
                devices
                    .push(parse_device(&line).with_context(|| format!("devsim printed {line:?}"))?);
            }
            bail!("devsim exited before it was ready")
        };
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .context("devsim not ready within 30 s")??;
        Ok(Devsim { child, devices })
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

fn parse_device(line: &str) -> Option<SimDevice> {
    let addr = field(line, "addr")?;
    Some(SimDevice {
        name: field(line, "name")?.to_string(),
        device_type: field(line, "device_type")?.to_string(),
        port: addr.rsplit(':').next()?.parse().ok()?,
    })
}

/// A client-side SSH target for a simulated device (credentials admin/admin), for measuring
/// sessions without a worker process.
pub fn ssh_target(d: &SimDevice, limit: Duration) -> pinned_worker::ssh::Target {
    pinned_worker::ssh::Target {
        host: "127.0.0.1".into(),
        port: d.port,
        username: "admin".into(),
        password: "admin".into(),
        private_key_pem: String::new(),
        private_key_passphrase: String::new(),
        host_key_policy: pinned_worker::ssh::HostKeyPolicy::InsecureAcceptAny,
        connect_timeout: limit,
        auth_timeout: limit,
        ssh_keepalive_interval: Duration::from_secs(15),
        ssh_keepalive_max: 3,
        legacy_algorithms: false,
        jump: None,
    }
}

pub fn connection(d: &SimDevice) -> wire::Connection {
    wire::Connection {
        host: "127.0.0.1".into(),
        port: d.port as u32,
        username: "admin".into(),
        password: "admin".into(),
        device_type: d.device_type.clone(),
        secret: "enable".into(),
        ..Default::default()
    }
}

pub fn init(d: &SimDevice, mode: wire::WorkerMode, connect_on_start: bool) -> ParentFrame {
    ParentFrame {
        frame: Some(In::Init(wire::Init {
            mode: mode as i32,
            connection: Some(connection(d)),
            host_key_policy: wire::HostKeyPolicy::InsecureAcceptAny as i32,
            connect_on_start,
            ..Default::default()
        })),
    }
}

pub fn commands(id: &str, cmds: &[&str]) -> ParentFrame {
    ParentFrame {
        frame: Some(In::Job(wire::Job {
            job_id: id.to_string(),
            operation: Some(wire::job::Operation::Commands(wire::Commands {
                commands: cmds.iter().map(|c| c.to_string()).collect(),
                specs: Vec::new(),
            })),
            ..Default::default()
        })),
    }
}

pub fn spawn_worker(bin: &Path) -> anyhow::Result<WorkerChild> {
    WorkerChild::spawn(bin, &[], &[("NETPULSE_LOG", "error")], Stdio::inherit())
        .with_context(|| format!("starting {}", bin.display()))
}

/// The next frame that is not health, within `limit`.
pub async fn next_event(w: &mut WorkerChild, limit: Duration) -> anyhow::Result<Out> {
    loop {
        let f: Option<WorkerFrame> = tokio::time::timeout(limit, w.recv())
            .await
            .context("worker did not answer in time")??;
        match f.and_then(|f| f.frame) {
            Some(Out::Health(_)) => continue,
            Some(other) => return Ok(other),
            None => bail!("worker closed its stdout"),
        }
    }
}

/// The job result that comes next, within `limit`.
pub async fn next_result(w: &mut WorkerChild, limit: Duration) -> anyhow::Result<wire::JobResult> {
    loop {
        match next_event(w, limit).await? {
            Out::Result(r) => return Ok(r),
            Out::Exiting(e) => bail!("worker exited: {} ({})", e.reason, e.exit_code),
            _ => continue,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub n: usize,
    pub median: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn summarize(samples: &mut [Duration]) -> Summary {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    Summary {
        n: samples.len(),
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: samples[samples.len() - 1],
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// `GET /metrics` from a metrics endpoint (`host:port`): the body, after checking the answer is
/// 200 in the text format.
pub async fn scrape(addr: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: netpulse\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        anyhow::Ok(out)
    };
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), io).await??;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {out}"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "scrape failed: {head}");
    anyhow::ensure!(head.contains("application/openmetrics-text"), "{head}");
    Ok(body.to_string())
}

/// The value of one sample (`name{labels}` exactly as exposed), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(&mut v);
        assert_eq!(
            (s.median, s.p90, s.p99, s.max),
            (
                Duration::from_millis(50),
                Duration::from_millis(90),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
    }

    #[test]
    fn devsim_lines_parse() {
        let d = parse_device(
            r#"{"name":"cisco-ios-1","device_type":"cisco_ios","addr":"127.0.0.1:40001"}"#,
        )
        .unwrap();
        assert_eq!(
            (d.name.as_str(), d.device_type.as_str(), d.port),
            ("cisco-ios-1", "cisco_ios", 40001)
        );
    }
}
