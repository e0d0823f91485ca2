//! End-to-end latency through the whole cluster (etcd, one manager, one node agent, devsim),
//! driven through the public gRPC API: `Execute` with `wait` on a zero-delay simulated device,
//! pinned (the first job connects, later ones reuse the session) and fifo. Prints medians, p90
//! and p99 as a markdown table.
//!
//! Run: `cargo build --release --workspace --bins && target/release/bench-cluster`

use std::time::{Duration, Instant};

use anyhow::ensure;
use clap::Parser;
use integration_tests::cluster::{Options, TestCluster};
use integration_tests::{Summary, ms, summarize};
use netpulse_proto::api::job_service_client::JobServiceClient;
use netpulse_proto::api::{ExecuteRequest, Job, JobStatus, Strategy};
use tonic::transport::Channel;

#[derive(Parser, Debug)]
struct Args {
    /// Reused pinned jobs measured (after a warm-up of 10%).
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Fifo jobs measured.
    #[arg(long, default_value_t = 50)]
    fifo: usize,
    /// Keep the processes' logs here (a temp dir, removed, by default).
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
}

fn row(what: &str, s: &Summary) {
    println!(
        "| {what} | {} | {} | {} | {} |",
        s.n,
        ms(s.median),
        ms(s.p90),
        ms(s.p99)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        state_dir: args.state_dir.clone(),
        ..Default::default()
    })
    .await?;
    let jobs = c.jobs(0).await?;
    let mut req = c.request(0, &["show clock"]);
    req.wait = true;
    let (first, j) = run(jobs.clone(), req.clone()).await?;
    ensure!(!j.session_reused, "the first job connects");
    let mut reused: Vec<Duration> = Vec::with_capacity(args.jobs);
    for i in 0..args.jobs + args.jobs / 10 {
        let (d, j) = run(jobs.clone(), req.clone()).await?;
        ensure!(j.session_reused, "job {i} did not reuse the session");
        if i >= args.jobs / 10 {
            reused.push(d);
        }
    }
    req.strategy = Strategy::Fifo as i32;
    let mut fifo = Vec::with_capacity(args.fifo);
    for _ in 0..args.fifo {
        fifo.push(run(jobs.clone(), req.clone()).await?.0);
    }
    // Parts of the path, for the breakdown: one etcd write (as the store commits it) and one
    // read through the manager.
    let mut etcd = c.etcd.client().await;
    let mut put = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let txn = etcd_client::Txn::new().and_then([
            etcd_client::TxnOp::put(format!("/bench/a{i}"), vec![0u8; 300], None),
            etcd_client::TxnOp::put(format!("/bench/b{i}"), vec![0u8; 300], None),
        ]);
        etcd.txn(txn).await?;
        put.push(t.elapsed());
    }
    let mut get = Vec::new();
    let mut client = c.jobs(0).await?;
    for _ in 0..200 {
        let t = Instant::now();
        client
            .get_job(netpulse_proto::api::GetJobRequest { id: j.id.clone() })
            .await?;
        get.push(t.elapsed());
    }
    println!("| what | n | median ms | p90 ms | p99 ms |\n|---|---|---|---|---|");
    row(
        "first pinned job (connect + login)",
        &summarize(&mut [first]),
    );
    row("reused pinned job", &summarize(&mut reused));
    row("fifo job (fresh connection)", &summarize(&mut fifo));
    row(
        "etcd transaction of 2 puts (client to etcd)",
        &summarize(&mut put),
    );
    row("GetJob (client to manager to etcd)", &summarize(&mut get));
    Ok(())
}

async fn run(
    mut jobs: JobServiceClient<Channel>,
    req: ExecuteRequest,
) -> anyhow::Result<(Duration, Job)> {
    let t = Instant::now();
    let j = jobs.execute(req).await?.into_inner();
    ensure!(j.status() == JobStatus::Succeeded, "job failed: {j:?}");
    Ok((t.elapsed(), j))
}
