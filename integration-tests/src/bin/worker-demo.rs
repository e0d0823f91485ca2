//! The local demo: simulated devices with a realistic login delay; each device gets a pinned
//! worker (one connect, then reused jobs) and, for comparison, one-shot workers (a new
//! connection per job, the fifo strategy). Prints every job's time and what it was spent on.
//!
//! Run: `scripts/demo` (builds release binaries, then runs this).

use std::time::{Duration, Instant};

use anyhow::ensure;
use clap::Parser;
use integration_tests::{Bins, Devsim, commands, init, ms, next_result, spawn_worker};
use netpulse_proto::worker::WorkerMode;

#[derive(Parser, Debug)]
#[command(
    about = "pinned (reused session) versus one-shot (new connection per job) on simulated devices"
)]
struct Args {
    #[command(flatten)]
    bins: Bins,
    /// The simulated devices' login delay (real devices take 2000-5000 ms).
    #[arg(long, default_value_t = 2000)]
    login_delay_ms: u64,
    /// Jobs per device on the pinned worker.
    #[arg(long, default_value_t = 5)]
    jobs: usize,
    /// Jobs per device as one-shot workers.
    #[arg(long, default_value_t = 2)]
    oneshot_jobs: usize,
}

const LIMIT: Duration = Duration::from_secs(60);

fn show_command(device_type: &str) -> &'static str {
    match device_type {
        "huawei" => "display version",
        _ => "show version",
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (worker_bin, devsim_bin) = args.bins.resolve()?;
    let sim = Devsim::start(
        &devsim_bin,
        &[
            "--devices".into(),
            "cisco_ios=1,juniper_junos=1,huawei=1".into(),
            "--login-delay-ms".into(),
            args.login_delay_ms.to_string(),
        ],
    )
    .await?;
    println!(
        "simulated devices (login delay {} ms):",
        args.login_delay_ms
    );
    for d in &sim.devices {
        println!(
            "  {:<18} {:<14} 127.0.0.1:{}",
            d.name, d.device_type, d.port
        );
    }
    println!("\n| device | strategy | job | total ms | connect ms | session |");
    println!("|---|---|---|---|---|---|");
    for d in &sim.devices {
        let cmd = show_command(&d.device_type);
        let mut w = spawn_worker(&worker_bin)?;
        w.send(&init(d, WorkerMode::Pinned, false)).await?;
        for i in 1..=args.jobs {
            let t0 = Instant::now();
            w.send(&commands(&format!("p{i}"), &[cmd])).await?;
            let r = next_result(&mut w, LIMIT).await?;
            ensure!(r.ok, "job failed: {:?}", r.error);
            let session = if r.session_reused { "reused" } else { "new" };
            println!(
                "| {} | pinned | {i} | {} | {} | {session} |",
                d.name,
                ms(t0.elapsed()),
                ms(Duration::from_micros(r.connect_us))
            );
        }
        w.close_stdin();
        w.wait().await?;
        for i in 1..=args.oneshot_jobs {
            let t0 = Instant::now();
            let mut w = spawn_worker(&worker_bin)?;
            w.send(&init(d, WorkerMode::Oneshot, false)).await?;
            w.send(&commands(&format!("f{i}"), &[cmd])).await?;
            let r = next_result(&mut w, LIMIT).await?;
            ensure!(r.ok, "job failed: {:?}", r.error);
            println!(
                "| {} | one-shot (fifo) | {i} | {} | {} | new |",
                d.name,
                ms(t0.elapsed()),
                ms(Duration::from_micros(r.connect_us))
            );
            w.wait().await?;
        }
    }
    println!(
        "\nA pinned worker pays the login once; every later job costs the device's answer time."
    );
    Ok(())
}
