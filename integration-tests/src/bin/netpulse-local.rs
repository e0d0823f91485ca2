//! A whole NetPulse cluster on this machine: etcd, one manager, two node agents and simulated
//! devices of several dialects, with data and logs under a state folder. Prints the addresses
//! and copy-paste examples, runs a short demo of pinned against fifo jobs through the public
//! API, and keeps running until Ctrl-C (or, with `--once`, stops after the demo).
//!
//! Run: `scripts/cluster` (installs what is missing, builds, then runs this).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use integration_tests::cluster::{Options, TestCluster, interrupted};
use netpulse_proto::api::job_service_client::JobServiceClient;
use netpulse_proto::api::{Job, JobStatus, Strategy};
use tonic::transport::Channel;

#[derive(Parser, Debug)]
#[command(about = "Start a local NetPulse cluster with simulated devices")]
struct Args {
    /// Where etcd's data and every process log go.
    #[arg(long, default_value = ".netpulse-local")]
    state_dir: PathBuf,
    /// Simulated devices, as `dialect=count`.
    #[arg(
        long,
        default_value = "cisco_ios=2,cisco_nxos=1,arista_eos=1,juniper_junos=1,huawei=1"
    )]
    devices: String,
    /// The simulated devices' login delay (real devices take 2000-5000 ms).
    #[arg(long, default_value_t = 2000)]
    login_delay_ms: u64,
    /// The manager listens on base+1, agents on base+11 and base+12, etcd on base+30/31,
    /// devices from base+100. 0 picks free ports.
    #[arg(long, default_value_t = 50050)]
    base_port: u16,
    /// Stop after the demo instead of waiting for Ctrl-C.
    #[arg(long)]
    once: bool,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Interrupted while starting: what started is dropped, which kills it.
    let mut c = tokio::select! {
        r = start(&args) => r?,
        _ = interrupted() => {
            eprintln!("interrupted while starting");
            return Ok(());
        }
    };
    let shown = tokio::select! {
        r = demo(&c) => r,
        _ = interrupted() => Ok(()),
    };
    if let Err(e) = &shown {
        eprintln!("the demo failed: {e:#}");
    } else if !args.once {
        println!("\nRunning until Ctrl-C.");
        interrupted().await;
        eprintln!("stopping");
    }
    // Stopped with SIGTERM in order, so agents drain and stop their workers.
    for (name, status) in c.shutdown().await {
        eprintln!(
            "  {name}: {}",
            status.map_or("killed after the grace period".into(), |s| s.to_string())
        );
    }
    shown
}

/// Starts the cluster and prints its addresses and examples.
async fn start(args: &Args) -> anyhow::Result<TestCluster> {
    let base = (args.base_port != 0).then_some(args.base_port);
    let mut devsim = vec![
        "--devices".to_string(),
        args.devices.clone(),
        "--login-delay-ms".into(),
        args.login_delay_ms.to_string(),
    ];
    if let Some(b) = base {
        devsim.extend(["--base-port".into(), (b + 100).to_string()]);
    }
    let state_dir = std::path::absolute(&args.state_dir)?;
    eprintln!(
        "starting etcd, 2 node agents, 1 manager and devsim; logs in {}",
        state_dir.display()
    );
    let c = TestCluster::start(Options {
        agents: 2,
        managers: 1,
        devsim,
        agent_lease_ttl_seconds: 10,
        manager_lease_ttl_seconds: 10,
        state_dir: Some(state_dir.clone()),
        base_port: base,
        ..Default::default()
    })
    .await
    .context("starting the cluster")?;
    let addr = c.managers[0].addr.clone();
    let d0 = c.device(0).clone();
    println!("\nNetPulse is running.");
    println!("  manager (gRPC, reflection on): {addr}");
    for a in &c.agents {
        println!("  node agent {}: {}", a.name, a.addr);
    }
    println!("  etcd: {} (prefix {})", c.etcd.endpoint, c.prefix);
    println!("  simulated devices (user admin, password admin, enable secret enable):");
    for d in &c.devsim.devices {
        println!(
            "    {:<16} 127.0.0.1:{}  device_type {}",
            d.name, d.port, d.device_type
        );
    }
    println!("  logs: {}\n", state_dir.display());
    println!("Try:");
    println!("  grpcurl -plaintext {addr} list");
    println!(
        "  grpcurl -plaintext -d '{{\"connection\":{{\"host\":\"127.0.0.1\",\"port\":{},\"username\":\"admin\",\"password\":\"admin\",\"device_type\":\"{}\"}},\"commands\":[\"show version\"],\"wait\":true}}' {addr} netpulse.v1.JobService/Execute",
        d0.port, d0.device_type
    );
    println!("  grpcurl -plaintext {addr} netpulse.v1.ClusterService/ListWorkers");
    println!("  grpcurl -plaintext {addr} netpulse.v1.ClusterService/ListNodes");
    let cli = integration_tests::sibling_bin("netpulse");
    println!("or with the netpulse CLI:");
    println!(
        "  export NETPULSE_ADDR={addr} NETPULSE_DEVICE_USERNAME=admin NETPULSE_DEVICE_PASSWORD=admin"
    );
    println!(
        "  {} exec --host 127.0.0.1 --port {} --device-type {} 'show version'",
        cli.display(),
        d0.port,
        d0.device_type
    );
    println!(
        "  {0} nodes list; {0} workers list; {0} jobs list\n",
        cli.display()
    );

    Ok(c)
}

async fn run(
    c: &TestCluster,
    client: &mut JobServiceClient<Channel>,
    device: usize,
    strategy: Strategy,
) -> anyhow::Result<(Duration, Job)> {
    let mut req = c.request(device, &["show clock"]);
    req.strategy = strategy as i32;
    req.wait = true;
    let t = Instant::now();
    let j = client.execute(c.authed(req)).await?.into_inner();
    ensure!(j.status() == JobStatus::Succeeded, "demo job failed: {j:?}");
    Ok((t.elapsed(), j))
}

/// The first pinned job to a device connects; the next ones reuse its session. Fifo jobs
/// connect every time.
async fn demo(c: &TestCluster) -> anyhow::Result<()> {
    let d = c.device(0);
    println!(
        "Demo: `show clock` on {} (127.0.0.1:{}), through the public API with wait:",
        d.name, d.port
    );
    println!("| job | strategy | node | session | connect | end to end |");
    println!("|---|---|---|---|---|---|");
    let line = |n: usize, strategy: &str, (t, j): &(Duration, Job)| {
        let connect = j.timings.as_ref().map_or(0, |t| t.connect_ms);
        println!(
            "| {n} | {strategy} | {} | {} | {connect} ms | {} |",
            j.node_id,
            if j.session_reused { "reused" } else { "new" },
            ms(*t)
        );
    };
    let mut client = c.jobs(0).await?;
    for n in 1..=5 {
        line(
            n,
            "pinned",
            &run(c, &mut client, 0, Strategy::Pinned).await?,
        );
    }
    for n in 1..=3 {
        line(n, "fifo", &run(c, &mut client, 0, Strategy::Fifo).await?);
    }
    Ok(())
}
