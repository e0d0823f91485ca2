//! File transfer through the public API: uploads into a node's staging area, PUT and GET over
//! SFTP and SCP to a real OpenSSH server (100 MB, hashes verified by the host's md5sum), a
//! transfer cut by the host and resumed, a URL fetched by the agent, the staging limit, and
//! the Cisco `scp` sink of a simulated IOS device with `verify /md5`, its free space and a cut.
//! Progress and streamed output reach `WatchJob` while the job runs.

use std::path::Path;
use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster};
use integration_tests::files::{self, FileServer};
use integration_tests::sshd::Sshd;
use netpulse_proto::api::*;
use tokio_stream::StreamExt;

const MB: usize = 1 << 20;
const LONG: Duration = Duration::from_secs(300);

fn host(sshd: &Sshd) -> Connection {
    sshd.connection()
}

fn transfer(conn: &Connection, t: FileTransfer) -> ExecuteRequest {
    ExecuteRequest {
        connection: Some(conn.clone()),
        transfer: Some(t),
        timeout_seconds: 600,
        ..Default::default()
    }
}

fn put(staged: &str, remote: &Path, protocol: TransferProtocol) -> FileTransfer {
    FileTransfer {
        direction: TransferDirection::Put as i32,
        protocol: protocol as i32,
        remote_path: remote.display().to_string(),
        staged_file: staged.into(),
        ..Default::default()
    }
}

/// Submits without waiting and watches the job to its end: the final job, and every message
/// the watch gave before it.
async fn run(c: &TestCluster, req: ExecuteRequest) -> (Job, Vec<Job>) {
    let mut jobs = c.jobs(0).await.unwrap();
    let job = jobs
        .execute(c.authed(ExecuteRequest { wait: false, ..req }))
        .await
        .unwrap()
        .into_inner();
    let mut watch = tonic::Request::new(WatchJobRequest { id: job.id.clone() });
    if let Some(t) = c.opts.tokens.first() {
        watch
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let mut stream = jobs.watch_job(watch).await.unwrap().into_inner();
    let mut seen = Vec::new();
    let work = async {
        while let Some(j) = stream.next().await {
            let j = j.unwrap();
            if integration_tests::cluster::is_final(&j) {
                return j;
            }
            seen.push(j);
        }
        panic!("the watch of {} ended before the job", job.id)
    };
    let last = tokio::time::timeout(LONG, work)
        .await
        .unwrap_or_else(|_| panic!("job {} did not end within {LONG:?}", job.id));
    (last, seen)
}

fn ok(j: &Job) -> &TransferResult {
    assert_eq!(j.status(), JobStatus::Succeeded, "{:?}", j.error);
    j.transfer.as_ref().expect("a transfer result")
}

fn failed(j: &Job, kind: &str) -> String {
    assert_eq!(j.status(), JobStatus::Failed, "{j:?}");
    let e = j.error.as_ref().unwrap();
    assert_eq!(e.kind, kind, "{e:?}");
    e.message.clone()
}

fn vm_hwm_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_to_a_host_and_back_over_sftp_and_scp_with_their_hashes_checked() {
    let work = tempfile::tempdir().unwrap();
    let cut_marker = work.path().join("cut-once");
    // The host's sftp-server, except once: then a file-size limit (20 MiB in 512-byte
    // blocks) kills it mid-transfer, as a host that drops the transfer.
    let wrapper = work.path().join("sftp-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {m} ]; then rm -f {m}; ulimit -f 40960; fi\nexec /usr/lib/openssh/sftp-server\n",
            m = cut_marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sshd = Sshd::start(&format!("Subsystem sftp {}", wrapper.display())).await;
    let c = TestCluster::start(Options {
        metrics: true,
        agent_args: vec!["--staging-max-bytes".into(), (260 * MB).to_string()],
        ..Default::default()
    })
    .await
    .unwrap();
    let conn = host(&sshd);
    let token = c.opts.tokens.first().map(String::as_str);
    let mut jobs = c.jobs(0).await.unwrap();

    // 100 MB up into the staging area, with its hash checked there.
    let big = work.path().join("big.bin");
    let sha = files::make_file(&big, 100 * MB, 7);
    let header = UploadHeader {
        device_type: "linux".into(),
        name: "big.bin".into(),
        sha256: sha.clone(),
        ..Default::default()
    };
    let staged = files::upload(&mut jobs, token, header.clone(), &big, true)
        .await
        .unwrap();
    assert_eq!(
        (staged.size, staged.sha256.as_str()),
        ((100 * MB) as u64, sha.as_str())
    );
    assert_eq!(staged.node_id, "node-1");
    assert!(staged.id.starts_with("node-1/f-") && staged.expires_unix_ms > 0);

    // PUT over SFTP (linux's protocol): progress while it runs, the host's md5sum after.
    let remote = work.path().join("on-host.bin");
    let (j, seen) = run(
        &c,
        transfer(
            &conn,
            put(&staged.id, &remote, TransferProtocol::Unspecified),
        ),
    )
    .await;
    let t = ok(&j);
    assert_eq!(
        (t.protocol.as_str(), t.verified_by.as_str()),
        ("sftp", "md5")
    );
    assert_eq!(
        (t.size, t.bytes_sent, t.sha256.as_str()),
        (staged.size, staged.size, sha.as_str())
    );
    assert!(t.bytes_per_second > 0);
    assert_eq!(files::sha256_file(&remote), sha);
    assert_eq!(
        j.strategy(),
        Strategy::Fifo,
        "a transfer is fifo unless asked"
    );
    let progress: Vec<&TransferProgress> = seen
        .iter()
        .filter_map(|j| j.transfer_progress.as_ref())
        .collect();
    assert!(
        progress
            .iter()
            .any(|p| p.bytes_done > 0 && p.bytes_total == staged.size),
        "progress while it ran: {progress:?}"
    );
    // The agent streamed 100 MB in; it never held it.
    let hwm = vm_hwm_kib(c.agents[0].pid());
    assert!(hwm < 64 * 1024, "the agent's peak memory is {hwm} KiB");

    // The same file again: skipped; OVERWRITE_NEVER: refused.
    let (j, _) = run(
        &c,
        transfer(&conn, put(&staged.id, &remote, TransferProtocol::Sftp)),
    )
    .await;
    assert!(ok(&j).skipped && ok(&j).bytes_sent == 0);
    let never = FileTransfer {
        overwrite: Overwrite::Never as i32,
        ..put(&staged.id, &remote, TransferProtocol::Sftp)
    };
    let (j, _) = run(&c, transfer(&conn, never)).await;
    assert!(failed(&j, "transfer_failed").contains("OVERWRITE_NEVER"));

    // GET it back over SCP into staging, then download it.
    let get = FileTransfer {
        direction: TransferDirection::Get as i32,
        protocol: TransferProtocol::Scp as i32,
        remote_path: remote.display().to_string(),
        ..Default::default()
    };
    let (j, _) = run(&c, transfer(&conn, get)).await;
    let t = ok(&j).clone();
    assert_eq!(
        (
            t.protocol.as_str(),
            t.verified_by.as_str(),
            t.sha256.as_str()
        ),
        ("scp", "md5", sha.as_str())
    );
    let back = work.path().join("back.bin");
    let f = files::download(&mut jobs, token, &t.staged_file, 0, &back)
        .await
        .unwrap();
    assert_eq!(
        (f.size, files::sha256_file(&back)),
        (staged.size, sha.clone())
    );
    let tail = work.path().join("tail.bin");
    files::download(&mut jobs, token, &t.staged_file, staged.size - 10, &tail)
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&tail).unwrap().len(), 10);

    // A PUT over SCP to a new path, then one cut by the host and resumed over SFTP.
    let by_scp = work.path().join("by-scp.bin");
    let (j, _) = run(
        &c,
        transfer(&conn, put(&staged.id, &by_scp, TransferProtocol::Scp)),
    )
    .await;
    assert_eq!(ok(&j).verified_by, "md5");
    assert_eq!(files::sha256_file(&by_scp), sha);
    std::fs::write(&cut_marker, "").unwrap();
    let cut = work.path().join("cut.bin");
    let (j, _) = run(
        &c,
        transfer(&conn, put(&staged.id, &cut, TransferProtocol::Sftp)),
    )
    .await;
    failed(&j, "transfer_failed");
    let partial = std::fs::metadata(&cut).unwrap().len();
    assert!(
        partial > 0 && partial < staged.size,
        "a partial file: {partial}"
    );
    let resume = FileTransfer {
        resume: true,
        ..put(&staged.id, &cut, TransferProtocol::Sftp)
    };
    let (j, _) = run(&c, transfer(&conn, resume)).await;
    let t = ok(&j);
    assert_eq!(t.resumed_from, partial);
    assert_eq!(t.bytes_sent, staged.size - partial);
    assert_eq!(files::sha256_file(&cut), sha);

    // The staging area's use shows in the agent's metrics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!(
        "http://{}/metrics",
        c.agents[0].metrics.as_ref().unwrap()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let used = metrics
        .lines()
        .find_map(|l| l.strip_prefix("netpulse_agent_staging{what=\"bytes\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no staging bytes in {metrics}"));
    assert_eq!(used, 2 * staged.size, "the upload and the GET");

    // Beyond the limit: refused at once when the size is known, on the way when it is not.
    let e = files::upload(&mut jobs, token, header.clone(), &big, true)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let e = files::upload(
        &mut jobs,
        token,
        UploadHeader {
            sha256: String::new(),
            ..header.clone()
        },
        &big,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("room for"), "{e:?}");

    // A URL the agent fetches: its hash must match.
    let body = b"hostname from-a-url\n".to_vec();
    let server = FileServer::start("startup.cfg", body.clone()).await;
    let from_url = work.path().join("from-url.cfg");
    let by_url = |sha256: String| FileTransfer {
        direction: TransferDirection::Put as i32,
        remote_path: from_url.display().to_string(),
        url: server.url.clone(),
        sha256,
        ..Default::default()
    };
    let (j, _) = run(&c, transfer(&conn, by_url(files::sha256(&body)))).await;
    ok(&j);
    assert_eq!(std::fs::read(&from_url).unwrap(), body);
    let (j, _) = run(&c, transfer(&conn, by_url("0".repeat(64)))).await;
    assert!(failed(&j, "transfer_failed").contains("SHA-256"));

    // Ids and paths that are not allowed.
    let e = files::download(&mut jobs, token, "node-1/f-0123456789abcdef", 0, &tail)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = jobs
        .execute(c.authed(transfer(
            &conn,
            put("nope", &remote, TransferProtocol::Sftp),
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = jobs
        .execute(c.authed(transfer(
            &conn,
            put("node-9/f-0123456789abcdef", &remote, TransferProtocol::Sftp),
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
}
