//! The benchmark report: starts a cluster on loopback (etcd, one manager, one node agent,
//! devsim), drives it through the public gRPC API, and writes a markdown and a JSON report:
//! end-to-end latency (first pinned job, reused pinned jobs, fifo jobs) against zero-delay and
//! realistic-login devices, the same command the traditional way (a fresh SSH connection per
//! command, client-side) and on a reused session without the cluster (the floor), throughput
//! with 1, 10 and 100 devices (a waiting `Execute` per job, and pinned jobs over one
//! `ExecuteStream` too), failure detection times, and the scale section (`scale`: thousands of
//! pinned devices on one agent).
//!
//! Run: `cargo build --release --workspace --bins && target/release/bench-report`; the scale
//! runs alone: `target/release/bench-report --scale-only --scale-devices 1000,3000,10000`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use integration_tests::cluster::{Options, Signal, TestCluster, workspace_bin};
use integration_tests::{Devsim, SimDevice, Summary, ssh_target, summarize};
use netpulse_proto::api::job_service_client::JobServiceClient;
use netpulse_proto::api::*;
use pinned_worker::platform;
use pinned_worker::session::DeviceSession;
use tonic::transport::Channel;

mod scale;
mod transfer;

#[derive(Parser, Debug)]
struct Args {
    /// Reused pinned jobs measured (after a warm-up of 10%).
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Seconds each throughput run lasts.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Pinned devices on one agent for the scale runs, comma-separated (0 skips them); a count
    /// above what the descriptor limit lets one agent hold runs at that limit, and says so.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    scale_devices: Vec<usize>,
    /// Only the scale runs (report written to `<out>-scale.md` and `.json`).
    #[arg(long)]
    scale_only: bool,
    /// Login delay of the realistic devices.
    #[arg(long, default_value_t = 2000)]
    login_delay_ms: u64,
    /// The report's path without extension: `<out>.md` and `<out>.json` are written.
    #[arg(long, default_value = "bench/report")]
    out: PathBuf,
    /// Only a pinned throughput run over this many devices (at most 100) and its CPU split,
    /// printed (no report written): the quick loop for work on the hot path.
    #[arg(long)]
    throughput_only: Option<usize>,
    /// Only the zero-delay latency runs, printed (no report written): the quick loop for work
    /// on the latency path.
    #[arg(long)]
    latency_only: bool,
    /// Only the transfer benchmark with a file of this many MiB, printed (see `transfer`).
    #[arg(long)]
    transfer_only: Option<usize>,
    /// Runs of each transfer benchmark case.
    #[arg(long, default_value_t = 3)]
    transfer_runs: usize,
}

const LIMIT: Duration = Duration::from_secs(120);

fn msf(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[derive(Default)]
struct Report {
    md: String,
    json: BTreeMap<String, serde_json::Value>,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        self.md.push_str(s.as_ref());
        self.md.push('\n');
    }
    fn latency(&mut self, key: &str, what: &str, s: &Summary) {
        self.line(format!(
            "| {what} | {} | {:.3} | {:.3} | {:.3} |",
            s.n,
            msf(s.median),
            msf(s.p90),
            msf(s.p99)
        ));
        self.json.insert(
            key.into(),
            serde_json::json!({"n": s.n, "median_ms": msf(s.median), "p90_ms": msf(s.p90), "p99_ms": msf(s.p99), "max_ms": msf(s.max)}),
        );
    }
    fn value(&mut self, key: &str, v: serde_json::Value) {
        self.json.insert(key.into(), v);
    }
}

async fn execute(
    client: &mut JobServiceClient<Channel>,
    mut req: ExecuteRequest,
) -> anyhow::Result<(Duration, Job)> {
    req.wait = true;
    let t = Instant::now();
    let j = client.execute(req).await?.into_inner();
    ensure!(j.status() == JobStatus::Succeeded, "job failed: {j:?}");
    Ok((t.elapsed(), j))
}

fn request(d: &SimDevice, strategy: Strategy) -> ExecuteRequest {
    ExecuteRequest {
        connection: Some(Connection {
            host: "127.0.0.1".into(),
            port: d.port as u32,
            username: "admin".into(),
            password: "admin".into(),
            device_type: d.device_type.clone(),
            ..Default::default()
        }),
        commands: vec!["show clock".into()],
        strategy: strategy as i32,
        ..Default::default()
    }
}

/// First pinned jobs (one per device), reused pinned jobs on the first, fifo jobs, and the same
/// command the traditional way and on a reused in-process session.
async fn latency(
    r: &mut Report,
    c: &TestCluster,
    devices: &[SimDevice],
    key: &str,
    reused_n: usize,
    fresh_n: usize,
) -> anyhow::Result<()> {
    let mut client = c.jobs(0).await?;
    let mut first = Vec::new();
    for d in devices.iter().take(fresh_n.max(1)) {
        let (t, j) = execute(&mut client, request(d, Strategy::Pinned)).await?;
        ensure!(!j.session_reused, "a first job connects");
        first.push(t);
    }
    r.latency(
        &format!("{key}.first_pinned"),
        "first pinned job (connect + login)",
        &summarize(&mut first),
    );
    let mut reused = Vec::new();
    for i in 0..reused_n + reused_n / 10 {
        let (t, j) = execute(&mut client, request(&devices[0], Strategy::Pinned)).await?;
        ensure!(j.session_reused, "a reused job");
        if i >= reused_n / 10 {
            reused.push(t);
        }
    }
    let reused = summarize(&mut reused);
    r.latency(
        &format!("{key}.reused_pinned"),
        "reused pinned job",
        &reused,
    );
    let mut fifo = Vec::new();
    for _ in 0..fresh_n {
        fifo.push(
            execute(&mut client, request(&devices[0], Strategy::Fifo))
                .await?
                .0,
        );
    }
    r.latency(
        &format!("{key}.fifo"),
        "fifo job (fresh connection, one-shot worker)",
        &summarize(&mut fifo),
    );

    let d = &devices[devices.len() - 1];
    let platform = platform::lookup(&d.device_type)?;
    let mut fresh = Vec::new();
    for _ in 0..fresh_n {
        let t = Instant::now();
        let mut s = DeviceSession::open(&ssh_target(d, LIMIT), platform, "", LIMIT).await?;
        s.command("show clock", LIMIT).await?;
        s.close().await;
        fresh.push(t.elapsed());
    }
    r.latency(
        &format!("{key}.traditional"),
        "traditional: new SSH connection per command, client-side, no cluster",
        &summarize(&mut fresh),
    );
    let mut s = DeviceSession::open(&ssh_target(d, LIMIT), platform, "", LIMIT).await?;
    let mut floor = Vec::new();
    for i in 0..reused_n + reused_n / 10 {
        let t = Instant::now();
        s.command("show clock", LIMIT).await?;
        if i >= reused_n / 10 {
            floor.push(t.elapsed());
        }
    }
    s.close().await;
    let floor = summarize(&mut floor);
    r.latency(
        &format!("{key}.floor"),
        "floor: reused SSH session, in-process, no cluster",
        &floor,
    );
    r.value(
        &format!("{key}.overhead_over_floor_median_ms"),
        serde_json::json!(msf(reused.median.saturating_sub(floor.median))),
    );
    Ok(())
}

/// Jobs per second with `devices` devices, `in_flight` waiting submits at a time.
/// Connects every device's pinned worker: throughput counts reused jobs.
async fn connect_all(c: &TestCluster, devices: &[SimDevice]) -> anyhow::Result<()> {
    let client = c.jobs(0).await?;
    let mut set = tokio::task::JoinSet::new();
    for d in devices {
        let mut cl = client.clone();
        let req = request(d, Strategy::Pinned);
        set.spawn(async move { execute(&mut cl, req).await.map(|_| ()) });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// How the load driver submits: a waiting `Execute` call per job, or every job over one
/// `ExecuteStream`.
#[derive(Clone, Copy, PartialEq)]
enum Submit {
    Execute,
    Stream,
}

impl Submit {
    fn name(self) -> &'static str {
        match self {
            Submit::Execute => "Execute",
            Submit::Stream => "ExecuteStream",
        }
    }
}

async fn throughput(
    c: &TestCluster,
    devices: &[SimDevice],
    strategy: Strategy,
    submit: Submit,
    in_flight: usize,
    seconds: u64,
) -> anyhow::Result<(f64, u64)> {
    let load = Load {
        url: format!("http://{}", c.managers[0].addr),
        devices: devices.to_vec(),
        strategy,
        in_flight,
        seconds,
    };
    on_own_thread(async move {
        match submit {
            Submit::Execute => drive(load).await,
            Submit::Stream => drive_stream(load).await,
        }
    })
}

/// What a load driver submits, how many at a time, and for how long.
struct Load {
    url: String,
    devices: Vec<SimDevice>,
    strategy: Strategy,
    in_flight: usize,
    seconds: u64,
}

/// Keeps `in_flight` jobs unanswered on one `ExecuteStream` for `seconds`, then drains it.
async fn drive_stream(load: Load) -> anyhow::Result<(f64, u64)> {
    let mut client = JobServiceClient::new(Channel::from_shared(load.url)?.connect().await?);
    let requests: Vec<ExecuteRequest> = load
        .devices
        .iter()
        .map(|d| ExecuteRequest {
            wait: true,
            ..request(d, load.strategy)
        })
        .collect();
    let mut next = requests.iter().cycle().cloned();
    let (tx, rx) = tokio::sync::mpsc::channel(load.in_flight);
    for r in next.by_ref().take(load.in_flight) {
        tx.send(r).await?;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(load.seconds);
    let mut answers = client
        .execute_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let (mut done, mut failed) = (0u64, 0u64);
    let mut tx = Some(tx);
    while let Some(a) = answers.message().await? {
        match a.outcome {
            Some(streamed_job::Outcome::Job(j)) if j.status() == JobStatus::Succeeded => done += 1,
            _ => failed += 1,
        }
        if Instant::now() >= end {
            // Half-closes the stream: it ends with the last answer.
            tx = None;
        }
        if let (Some(tx), Some(r)) = (&tx, next.next()) {
            tx.send(r).await?;
        }
    }
    Ok((done as f64 / start.elapsed().as_secs_f64(), failed))
}

/// Runs a client on a single-threaded runtime of its own, as a lean gRPC client would: its
/// calls and replies then cross no thread inside the client, so what is measured is the
/// cluster (a multi-threaded client adds ~0.1-0.2 ms per call and ~10 µs of CPU per job).
fn on_own_thread<T: Send>(f: impl Future<Output = anyhow::Result<T>> + Send) -> anyhow::Result<T> {
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(f)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the client thread panicked"))?
        })
    })
}

async fn drive(load: Load) -> anyhow::Result<(f64, u64)> {
    let Load {
        url,
        devices,
        strategy,
        in_flight,
        seconds,
    } = load;
    // Connected here, so the channel's tasks run on this thread too.
    let client = JobServiceClient::new(Channel::from_shared(url)?.connect().await?);
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..in_flight {
        let mut cl = client.clone();
        let reqs: Vec<ExecuteRequest> = devices
            .iter()
            .cycle()
            .skip(i % devices.len())
            .take(devices.len())
            .map(|d| request(d, strategy))
            .collect();
        set.spawn(async move {
            let (mut done, mut failed) = (0u64, 0u64);
            let mut k = 0;
            while Instant::now() < end {
                match execute(&mut cl, reqs[k % reqs.len()].clone()).await {
                    Ok(_) => done += 1,
                    Err(_) => failed += 1,
                }
                k += 1;
            }
            (done, failed)
        });
    }
    let (mut done, mut failed) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (d, f) = r?;
        done += d;
        failed += f;
    }
    Ok((done as f64 / start.elapsed().as_secs_f64(), failed))
}

fn proc_kib(pid: u64, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split(' ').collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// CPU ticks used so far by each part of the cluster (and this client).
async fn cpu_by_part(c: &TestCluster) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let pid = |ch: &tokio::process::Child| ch.id().unwrap_or(0) as u64;
    let workers: u64 = workers(c).await?.iter().map(|w| cpu_ticks(w.pid)).sum();
    Ok(vec![
        (
            "client (this benchmark)",
            cpu_ticks(std::process::id() as u64),
        ),
        ("manager", cpu_ticks(c.managers[0].pid() as u64)),
        ("etcd", cpu_ticks(pid(&c.etcd.child))),
        ("node agent", cpu_ticks(c.agents[0].pid() as u64)),
        ("pinned workers", workers),
        ("devsim (the devices)", cpu_ticks(pid(&c.devsim.child))),
    ])
}

/// CPU µs per job of each part, from two `cpu_by_part` readings around `jobs` jobs.
fn cpu_per_job(
    before: &[(&'static str, u64)],
    after: &[(&'static str, u64)],
    jobs: f64,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(before
        .iter()
        .zip(after)
        .map(|((name, b), (_, a))| (*name, (a - b) as f64 / ticks * 1e6 / jobs))
        .collect())
}

async fn workers(c: &TestCluster) -> anyhow::Result<Vec<Worker>> {
    Ok(c.admin(0)
        .await?
        .list_workers(ListWorkersRequest::default())
        .await?
        .into_inner()
        .workers)
}

async fn gone_after(pid: u64, from: Instant) -> Duration {
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && from.elapsed() < LIMIT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    from.elapsed()
}

async fn detection(
    r: &mut Report,
    c: &TestCluster,
    devices: &[SimDevice],
    sim: &Devsim,
) -> anyhow::Result<()> {
    let mut client = c.jobs(0).await?;
    // A worker killed while idle: the agent reaps it and the next job reconnects.
    let d = &devices[0];
    execute(&mut client, request(d, Strategy::Pinned)).await?;
    let w = workers(c)
        .await?
        .into_iter()
        .find(|w| w.port == d.port as u32 && w.state != "exited")
        .context("worker")?;
    let t = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.pid as i32), Signal::SIGKILL)?;
    let reaped = gone_after(w.pid, t).await;
    let (next, j) = execute(&mut client, request(d, Strategy::Pinned)).await?;
    ensure!(!j.session_reused);
    // A frozen device (the simulator stopped): the keepalive notices, the worker exits. The
    // device has no worker yet (the latency runs used the first three), so this job's
    // keepalive applies.
    let mut req = request(&sim.devices[3], Strategy::Pinned);
    req.connection.as_mut().unwrap().keepalive_seconds = 1;
    execute(&mut client, req).await?;
    let w = workers(c)
        .await?
        .into_iter()
        .find(|w| w.port == sim.devices[3].port as u32 && w.state != "exited")
        .context("worker")?;
    let pid = nix::unistd::Pid::from_raw(sim.child.id().context("devsim pid")? as i32);
    let t = Instant::now();
    nix::sys::signal::kill(pid, Signal::SIGSTOP)?;
    let frozen = gone_after(w.pid, t).await;
    nix::sys::signal::kill(pid, Signal::SIGCONT)?;
    r.line("| fault | detected after |\n|---|---|");
    r.line(format!(
        "| pinned worker killed (-9) while idle: reaped | {:.1} ms |",
        msf(reaped)
    ));
    r.line(format!(
        "| the next job after it (reconnects, login delay included) | {:.1} ms |",
        msf(next)
    ));
    r.line(format!(
        "| device frozen (SIGSTOP), keepalive 1 s: worker exits | {:.0} ms |",
        msf(frozen)
    ));
    r.value("detection", serde_json::json!({"worker_killed_reaped_ms": msf(reaped), "next_job_after_kill_ms": msf(next), "frozen_device_ms": msf(frozen), "frozen_keepalive_seconds": 1}));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // An interrupt drops the cluster, which kills its processes.
    tokio::select! {
        r = report(args) => r,
        _ = integration_tests::cluster::interrupted() => anyhow::bail!("interrupted"),
    }
}

async fn report(args: Args) -> anyhow::Result<()> {
    if let Some(mb) = args.transfer_only {
        return transfer::run(mb, args.transfer_runs.max(1)).await;
    }
    // 1,000 workers and their devices need more descriptors than the usual soft limit.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)?;
    let scale_max = args.scale_devices.iter().copied().max().unwrap_or(0);
    let capacity = scale::agent_capacity(32) as usize;
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=100".into()],
        max_pinned_workers: (scale_max + 200).min(capacity),
        metrics: true,
        // Starting 1,000 workers at once keeps the agent busy: the production lease TTL.
        agent_lease_ttl_seconds: 10,
        manager_log: "info".into(),
        // The scale runs measure a login storm the node takes whole, not the default pace.
        agent_args: vec!["--max-logins-per-second".into(), "0".into()],
        ..Default::default()
    })
    .await?;
    let slow = Devsim::start(
        &workspace_bin("devsim"),
        &[
            "--devices".into(),
            "cisco_ios=4".into(),
            "--login-delay-ms".into(),
            args.login_delay_ms.to_string(),
        ],
    )
    .await?;
    let fast = c.devsim.devices.clone();
    if args.scale_only {
        let mut r = Report::default();
        r.line(format!(
            "# NetPulse scale report

{} on {} cores; etcd, one manager and one node agent on loopback; zero-delay devsim `cisco_ios` devices; `show clock`.",
            chrono_free_date(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ));
        scale_runs(&mut r, &c, &args.scale_devices, capacity).await?;
        return write(
            &r,
            &args.out.with_file_name(format!(
                "{}-scale",
                args.out
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("report")
            )),
        );
    }
    if let Some(n) = args.throughput_only {
        let devices = &fast[..n.clamp(1, fast.len())];
        connect_all(&c, devices).await?;
        for submit in [Submit::Execute, Submit::Stream] {
            let before = cpu_by_part(&c).await?;
            let t = Instant::now();
            let (rate, failed) =
                throughput(&c, devices, Strategy::Pinned, submit, 512, args.seconds).await?;
            let split = cpu_per_job(
                &before,
                &cpu_by_part(&c).await?,
                rate * t.elapsed().as_secs_f64(),
            )?;
            println!(
                "{} devices, pinned, {}, 512 in flight: {rate:.0} jobs/s, {failed} failed",
                devices.len(),
                submit.name()
            );
            for (name, us) in split {
                println!("  {name}: {us:.0} µs CPU per job");
            }
        }
        return Ok(());
    }
    let mut r = Report::default();
    if !args.latency_only {
        r.line(format!(
            "# NetPulse benchmark report\n\n{} on {} cores; etcd, one manager and one node agent on loopback; devsim devices; `show clock`; every job submitted with `Execute` and `wait` through the public gRPC API.\n",
            chrono_free_date(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ));
        r.line("## Latency, zero-delay devices\n");
    }
    r.line("| what | n | median ms | p90 ms | p99 ms |\n|---|---|---|---|---|");
    let zero_delay = &fast[..20];
    on_own_thread(latency(&mut r, &c, zero_delay, "zero_delay", args.jobs, 20))?;
    if args.latency_only {
        return Ok(());
    }
    r.line(format!(
        "\n## Latency, devices with a {} ms login\n\n| what | n | median ms | p90 ms | p99 ms |\n|---|---|---|---|---|",
        args.login_delay_ms
    ));
    on_own_thread(latency(
        &mut r,
        &c,
        &slow.devices[..3],
        "login_delay",
        args.jobs / 5,
        3,
    ))?;

    r.line(format!("\n## Throughput ({} s per run, waiting submits)\n\n| devices | strategy | submitted with | in flight | jobs/s | failed |\n|---|---|---|---|---|---|", args.seconds));
    let mut tp = Vec::new();
    let mut cpu_split = BTreeMap::new();
    for (n, strategy, submit, in_flight) in [
        (1, Strategy::Pinned, Submit::Execute, 8),
        (10, Strategy::Pinned, Submit::Execute, 64),
        (100, Strategy::Pinned, Submit::Execute, 512),
        (1, Strategy::Pinned, Submit::Stream, 8),
        (10, Strategy::Pinned, Submit::Stream, 64),
        (100, Strategy::Pinned, Submit::Stream, 512),
        (1, Strategy::Fifo, Submit::Execute, 8),
        (10, Strategy::Fifo, Submit::Execute, 32),
        (100, Strategy::Fifo, Submit::Execute, 32),
    ] {
        if strategy == Strategy::Pinned {
            connect_all(&c, &fast[..n]).await?;
        }
        let before = cpu_by_part(&c).await?;
        let t = Instant::now();
        let (rate, failed) =
            throughput(&c, &fast[..n], strategy, submit, in_flight, args.seconds).await?;
        if n == 100 && strategy == Strategy::Pinned {
            let jobs = rate * t.elapsed().as_secs_f64();
            cpu_split.insert(
                submit.name(),
                cpu_per_job(&before, &cpu_by_part(&c).await?, jobs)?,
            );
        }
        let s = if strategy == Strategy::Pinned {
            "pinned"
        } else {
            "fifo"
        };
        let api = submit.name();
        r.line(format!(
            "| {n} | {s} | {api} | {in_flight} | {rate:.0} | {failed} |"
        ));
        tp.push(serde_json::json!({"devices": n, "strategy": s, "submitted_with": api, "in_flight": in_flight, "jobs_per_s": rate, "failed": failed}));
    }
    r.value("throughput", serde_json::Value::Array(tp));
    r.line("\nCPU per job in the 100-device pinned runs, by process:\n\n| process | Execute µs | ExecuteStream µs |\n|---|---|---|");
    let (unary, stream) = (&cpu_split["Execute"], &cpu_split["ExecuteStream"]);
    for ((name, us), (_, stream_us)) in unary.iter().zip(stream) {
        r.line(format!("| {name} | {us:.0} | {stream_us:.0} |"));
    }
    r.value(
        "cpu_us_per_job_pinned_100",
        serde_json::json!(
            cpu_split
                .iter()
                .map(|(api, split)| (
                    api.to_string(),
                    split
                        .iter()
                        .map(|(n, v)| (n.to_string(), *v))
                        .collect::<BTreeMap<_, _>>()
                ))
                .collect::<BTreeMap<_, _>>()
        ),
    );

    r.line("\n## Failure detection\n");
    detection(&mut r, &c, &fast[..1], &slow).await?;
    scale_runs(&mut r, &c, &args.scale_devices, capacity).await?;

    let median = r
        .json
        .get("zero_delay.reused_pinned")
        .and_then(|v| v.get("median_ms"))
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN);
    let p99 = r
        .json
        .get("zero_delay.reused_pinned")
        .and_then(|v| v.get("p99_ms"))
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN);
    // Each way of submitting, with its jobs/s across 100 pinned devices.
    let runs_100: Vec<(String, f64)> = r.json["throughput"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["devices"] == 100 && t["strategy"] == "pinned")
        .filter_map(|t| {
            let api = t["submitted_with"].as_str()?.to_string();
            Some((api, t["jobs_per_s"].as_f64()?))
        })
        .collect();
    let best_100 = runs_100.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let runs_100 = runs_100
        .iter()
        .map(|(api, v)| format!("{v:.0} ({api})"))
        .collect::<Vec<_>>()
        .join(", ");
    let rss = r
        .json
        .iter()
        .find(|(k, _)| k.starts_with("scale."))
        .and_then(|(_, s)| s["worker_rss_median_mib"].as_f64())
        .unwrap_or(f64::NAN);
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    r.line("\n## Targets\n\n| target | measured | |\n|---|---|---|");
    r.line(format!(
        "| reused pinned job ≤ 2 ms median | {:.3} ms | {} |",
        median,
        mark(median <= 2.0)
    ));
    r.line(format!(
        "| reused pinned job ≤ 10 ms p99 | {p99:.3} ms | {} |",
        mark(p99 <= 10.0)
    ));
    r.line(format!(
        "| ≥ 5,000 jobs/s across 100 devices | {runs_100} jobs/s | {} |",
        mark(best_100 >= 5000.0)
    ));
    r.line(format!(
        "| ≤ 8 MiB RSS per pinned worker | {rss:.2} MiB | {} |",
        mark(rss <= 8.0)
    ));

    write(&r, &args.out)
}

fn write(r: &Report, out: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out.with_extension("md"), &r.md)?;
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&r.json)?,
    )?;
    eprintln!("wrote {}.md and .json", out.display());
    Ok(())
}

/// The scale section at each count, clamped to what one agent can hold here.
async fn scale_runs(
    r: &mut Report,
    c: &TestCluster,
    counts: &[usize],
    capacity: usize,
) -> anyhow::Result<()> {
    let counts: Vec<usize> = counts.iter().copied().filter(|n| *n > 0).collect();
    if counts.is_empty() {
        return Ok(());
    }
    r.line("\n## Scale\n");
    // Room for the workers other sections leave running.
    let most = capacity.saturating_sub(200);
    for n in counts {
        let ran = n.min(most);
        if ran < n {
            r.line(format!(
                "{n} devices asked; {ran} run: this machine's hard RLIMIT_NOFILE ({}) lets one agent hold {capacity} workers at 2 descriptors each (raising it needs CAP_SYS_RESOURCE).",
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?.1
            ));
        }
        scale::scale(r, c, ran).await?;
    }
    Ok(())
}

/// Today's date from the system clock (UTC), without a date library.
fn chrono_free_date() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}")
}
