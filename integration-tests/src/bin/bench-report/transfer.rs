//! The transfer benchmark (`--transfer-only MB`): one file moved to and from a real OpenSSH
//! server on loopback through the cluster (an `Execute` of a transfer job, waited for: the
//! job's login, the transfer and the host's md5sum of the copy included), over SCP and SFTP,
//! beside OpenSSH's own `scp` and `sftp` clients moving the same file to the same server in
//! the same sitting (their login included, no verification). Printed as MB/s and the ratio,
//! also for the bytes alone (the job's `bytes_per_second`: the data phase, no login, no
//! verification).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use integration_tests::cluster::{Options, TestCluster};
use integration_tests::files;
use integration_tests::sshd::Sshd;
use netpulse_proto::api::*;

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Median and worst (the p99 of so few runs) in MB/s.
fn rates(bytes: usize, mut samples: Vec<Duration>) -> (f64, f64) {
    let s = integration_tests::summarize(&mut samples);
    (mbps(bytes, s.median), mbps(bytes, s.p99))
}

async fn openssh(sshd: &Sshd, key: &Path, args: &[String]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    // The options go before the operands: scp and sftp stop reading options at the first one.
    let out = tokio::process::Command::new(&args[0])
        .args(["-q", "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes"])
        .args(&args[1..])
        .env("HOME", sshd.dir.path())
        .output()
        .await?;
    ensure!(out.status.success(), "{args:?}: {out:?}");
    Ok(t.elapsed())
}

pub async fn run(size_mb: usize, runs: usize) -> anyhow::Result<()> {
    let size = size_mb << 20;
    let sshd = Sshd::start("Subsystem sftp /usr/lib/openssh/sftp-server").await;
    let c = TestCluster::start(Options {
        agent_args: vec![
            "--staging-max-bytes".into(),
            (size * (2 * runs + 4)).to_string(),
        ],
        ..Default::default()
    })
    .await?;
    let work = tempfile::tempdir()?;
    let key = work.path().join("key");
    std::fs::write(&key, sshd.client_key_pem())?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let src = work.path().join("src.bin");
    let sha = files::make_file(&src, size, 5);
    let mut jobs = c.jobs(0).await?;
    let header = UploadHeader {
        device_type: "linux".into(),
        name: "src.bin".into(),
        sha256: sha.clone(),
        ..Default::default()
    };
    let t = Instant::now();
    let staged = files::upload(&mut jobs, None, header, &src, true).await?;
    let upload = t.elapsed();
    let conn = sshd.connection();
    let remote = work.path().join("remote.bin");
    let job = |direction: TransferDirection, protocol: TransferProtocol| ExecuteRequest {
        connection: Some(conn.clone()),
        wait: true,
        timeout_seconds: 3600,
        transfer: Some(FileTransfer {
            direction: direction as i32,
            protocol: protocol as i32,
            remote_path: remote.display().to_string(),
            staged_file: match direction {
                TransferDirection::Put => staged.id.clone(),
                _ => String::new(),
            },
            overwrite: Overwrite::Always as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut rows = Vec::new();
    let dest = format!("{}@127.0.0.1:{}", sshd.user, remote.display());
    let port = sshd.port.to_string();
    let back = work.path().join("back.bin");
    for (name, protocol) in [
        ("scp", TransferProtocol::Scp),
        ("sftp", TransferProtocol::Sftp),
    ] {
        for (way, direction) in [
            ("put", TransferDirection::Put),
            ("get", TransferDirection::Get),
        ] {
            let (mut ours, mut theirs, mut moving) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..runs {
                // Alternating, so a slow moment of the machine hits both.
                let mut r = tonic::Request::new(job(direction, protocol));
                r.set_timeout(Duration::from_secs(3600));
                let t = Instant::now();
                let j = jobs.execute(r).await?.into_inner();
                ours.push(t.elapsed());
                ensure!(
                    j.status() == JobStatus::Succeeded,
                    "{name} {way}: {:?}",
                    j.error
                );
                let tr = j.transfer.unwrap_or_default();
                ensure!(tr.sha256 == sha && tr.verified_by == "md5", "{tr:?}");
                moving.push(tr.bytes_per_second as f64 / 1e6);
                let args: Vec<String> = match (name, way) {
                    ("scp", "put") => vec![
                        "scp".into(),
                        "-P".into(),
                        port.clone(),
                        src.display().to_string(),
                        dest.clone(),
                    ],
                    ("scp", _) => vec![
                        "scp".into(),
                        "-P".into(),
                        port.clone(),
                        dest.clone(),
                        back.display().to_string(),
                    ],
                    (_, w) => {
                        let batch = work.path().join("batch");
                        let line = match w {
                            "put" => format!("put {} {}\n", src.display(), remote.display()),
                            _ => format!("get {} {}\n", remote.display(), back.display()),
                        };
                        std::fs::write(&batch, line)?;
                        vec![
                            "sftp".into(),
                            "-P".into(),
                            port.clone(),
                            "-b".into(),
                            batch.display().to_string(),
                            format!("{}@127.0.0.1", sshd.user),
                        ]
                    }
                };
                theirs.push(openssh(&sshd, &key, &args).await?);
            }
            let (om, op) = rates(size, ours);
            let (tm, tp) = rates(size, theirs);
            moving.sort_by(f64::total_cmp);
            let mm = moving[moving.len() / 2];
            rows.push(format!(
                "| {name} {way} | {runs} | {om:.0} | {op:.0} | {mm:.0} | {tm:.0} | {tp:.0} | {:.2} | {:.2} |",
                om / tm,
                mm / tm
            ));
        }
    }
    println!(
        "{size_mb} MiB file, sshd on loopback, {runs} runs each, alternating; MB/s (median, worst)\n"
    );
    println!(
        "upload into the staging area (UploadFile): {:.0} MB/s\n",
        mbps(size, upload)
    );
    println!(
        "| transfer | runs | cluster median | cluster worst | cluster, the bytes alone (median) | OpenSSH median | OpenSSH worst | ratio (medians) | ratio, the bytes alone |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
