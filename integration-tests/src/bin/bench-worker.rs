//! Benchmark of the device-session layer against a zero-delay simulated device (`devsim`):
//! connect + login, a reused command through the pinned-worker process (frame in, command on
//! the device, frame out), the same on an in-process russh session (the floor), and a fresh
//! connection per command (client-side, and as a one-shot worker process). Prints medians, p90
//! and p99 as a markdown table.
//!
//! Run: `cargo run --release -p integration-tests --bin bench-worker`

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use integration_tests::{
    Bins, Devsim, Summary, commands, init, ms, next_event, next_result, spawn_worker, ssh_target,
    summarize,
};
use netpulse_proto::worker::{WorkerMode, worker_frame::Frame as Out};
use pinned_worker::platform;
use pinned_worker::session::DeviceSession;

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    bins: Bins,
    /// Reused commands measured (after a warm-up of 10%).
    #[arg(long, default_value_t = 2000)]
    commands: usize,
    /// Fresh connections measured, per fresh-connection row.
    #[arg(long, default_value_t = 50)]
    fresh: usize,
    /// The command that is timed.
    #[arg(long, default_value = "show clock")]
    command: String,
}

const LIMIT: Duration = Duration::from_secs(30);

fn row(what: &str, s: &Summary) {
    println!(
        "| {what} | {} | {} | {} | {} | {} |",
        s.n,
        ms(s.median),
        ms(s.p90),
        ms(s.p99),
        ms(s.max)
    );
}

// The benchmark client is single-threaded like the worker, so it adds no cross-thread hops.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (worker_bin, devsim_bin) = args.bins.resolve()?;
    let sim = Devsim::start(&devsim_bin, &["--devices".into(), "cisco_ios=1".into()]).await?;
    let dev = sim.devices[0].clone();
    let cmd = args.command.as_str();
    let platform = platform::lookup(&dev.device_type)?;

    println!(
        "device: devsim {} on 127.0.0.1:{} (zero login and command delay), command {cmd:?}\n",
        dev.device_type, dev.port
    );
    println!("| what | n | median ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");

    // Connect + login (TCP, SSH handshake, auth, shell, prompt, paging off), inside a worker.
    let mut connect = Vec::new();
    for _ in 0..args.fresh {
        let mut w = spawn_worker(&worker_bin)?;
        w.send(&init(&dev, WorkerMode::Pinned, true)).await?;
        match next_event(&mut w, LIMIT).await? {
            Out::Connected(c) => connect.push(Duration::from_micros(c.connect_us)),
            other => bail!("expected connected, got {other:?}"),
        }
        w.close_stdin();
        w.wait().await?;
    }
    row("connect + login (in the worker)", &summarize(&mut connect));

    // Reused session through the worker process: frame in, command, frame out.
    let mut w = spawn_worker(&worker_bin)?;
    w.send(&init(&dev, WorkerMode::Pinned, true)).await?;
    next_event(&mut w, LIMIT).await?;
    let mut reused = Vec::with_capacity(args.commands);
    for i in 0..args.commands + args.commands / 10 {
        let t0 = Instant::now();
        w.send(&commands("b", &[cmd])).await?;
        let r = next_result(&mut w, LIMIT).await?;
        let took = t0.elapsed();
        ensure!(r.ok && r.session_reused, "unexpected result {r:?}");
        if i >= args.commands / 10 {
            reused.push(took);
        }
    }
    let through_worker = summarize(&mut reused);
    row(
        "reused session, through the worker process",
        &through_worker,
    );
    w.close_stdin();
    w.wait().await?;

    // The floor: the same command on a reused russh session in this process.
    let mut s = DeviceSession::open(&ssh_target(&dev, LIMIT), platform, "", LIMIT).await?;
    let mut floor = Vec::with_capacity(args.commands);
    for i in 0..args.commands + args.commands / 10 {
        let t0 = Instant::now();
        let out = s.command(cmd, LIMIT).await?;
        let took = t0.elapsed();
        ensure!(out.rejected.is_none(), "rejected: {out:?}");
        if i >= args.commands / 10 {
            floor.push(took);
        }
    }
    let floor = summarize(&mut floor);
    row("reused russh session, in-process (floor)", &floor);
    s.close().await;

    // The traditional way: a new connection for every command, client-side, no worker.
    let mut fresh = Vec::new();
    for _ in 0..args.fresh {
        let t0 = Instant::now();
        let mut s = DeviceSession::open(&ssh_target(&dev, LIMIT), platform, "", LIMIT).await?;
        s.command(cmd, LIMIT).await?;
        s.close().await;
        fresh.push(t0.elapsed());
    }
    row(
        "new connection per command, in-process",
        &summarize(&mut fresh),
    );

    // A one-shot worker process per command (the fifo strategy's unit of work).
    let mut oneshot = Vec::new();
    for _ in 0..args.fresh {
        let t0 = Instant::now();
        let mut w = spawn_worker(&worker_bin)?;
        w.send(&init(&dev, WorkerMode::Oneshot, false)).await?;
        w.send(&commands("o", &[cmd])).await?;
        let r = next_result(&mut w, LIMIT)
            .await
            .context("one-shot result")?;
        ensure!(r.ok, "one-shot failed: {r:?}");
        oneshot.push(t0.elapsed());
        w.wait().await?;
    }
    row(
        "one-shot worker process per command",
        &summarize(&mut oneshot),
    );

    let overhead = through_worker.median.saturating_sub(floor.median);
    println!(
        "\nworker process overhead over the floor (median): {} ms",
        ms(overhead)
    );
    println!(
        "target: reused round trip through the worker <= 1 ms median: {}",
        if through_worker.median <= Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
