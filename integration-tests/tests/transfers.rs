//! File transfer through the public API: uploads into a node's staging area, PUT and GET over
//! SFTP and SCP to a real OpenSSH server (100 MB, hashes verified by the host's md5sum), a
//! transfer cut by the host and resumed, a URL fetched by the agent, the staging limit, and
//! the Cisco `scp` sink of a simulated IOS device with `verify /md5`, its free space and a cut.
//! Progress and streamed output reach `WatchJob` while the job runs.

use std::path::Path;
use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster, workspace_bin};
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

/// `netpulse <args> --host .. --port .. --username .. --key-file .. --device-type linux`.
fn cli(c: &TestCluster, sshd: &Sshd, args: &[&str]) -> tokio::process::Command {
    let key = sshd.dir.path().join("cli_key");
    std::fs::write(&key, sshd.client_key_pem()).unwrap();
    let mut cmd = tokio::process::Command::new(workspace_bin("netpulse"));
    cmd.args(args)
        .args(["--host", "127.0.0.1", "--port", &sshd.port.to_string()])
        .args(["--username", &sshd.user, "--device-type", "linux"])
        .arg("--key-file")
        .arg(&key)
        .env_clear()
        .env("NETPULSE_ADDR", &c.managers[0].addr)
        .kill_on_drop(true);
    cmd
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

    // The CLI: put (an upload, then the job) and get (the job, then a download).
    let small = work.path().join("small.txt");
    std::fs::write(&small, b"from the cli\n").unwrap();
    let on_host = work.path().join("cli-put.txt");
    let out = cli(
        &c,
        &sshd,
        &["put", "--remote", &on_host.display().to_string()],
    )
    .arg(&small)
    .output()
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verified by md5"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&on_host).unwrap(), b"from the cli\n");
    let got = work.path().join("cli-get.txt");
    let out = cli(
        &c,
        &sshd,
        &[
            "get",
            "--protocol",
            "scp",
            "--remote",
            &on_host.display().to_string(),
        ],
    )
    .arg(&got)
    .output()
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&got).unwrap(), b"from the cli\n");
    let out = cli(
        &c,
        &sshd,
        &[
            "put",
            "--overwrite",
            "never",
            "--remote",
            &on_host.display().to_string(),
        ],
    )
    .arg(&small)
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "a failed job: {out:?}");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ios_device_takes_files_through_its_scp_sink_checked_by_verify_md5() {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut spec = devsim::DeviceSpec::new(devsim::Flavor::CiscoIos, "R-files");
    spec.flash_bytes = 8 * MB as u64;
    let key =
        russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).unwrap();
    let dev = devsim::spawn_device(spec, key, shutdown.clone())
        .await
        .unwrap();
    let c = TestCluster::start(Options::default()).await.unwrap();
    let conn = Connection {
        host: "127.0.0.1".into(),
        port: dev.addr().port() as u32,
        username: "admin".into(),
        password: "admin".into(),
        secret: "enable".into(),
        device_type: "cisco_ios".into(),
        ..Default::default()
    };
    let token = c.opts.tokens.first().map(String::as_str);
    let mut jobs = c.jobs(0).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image.bin");
    let sha = files::make_file(&image, 5 * MB, 11);
    let header = UploadHeader {
        device_type: "cisco_ios".into(),
        name: "image.bin".into(),
        ..Default::default()
    };
    let staged = files::upload(&mut jobs, token, header.clone(), &image, true)
        .await
        .unwrap();
    let to = |path: &str, id: &str| ExecuteRequest {
        enable_mode: true,
        ..transfer(
            &conn,
            FileTransfer {
                remote_path: path.into(),
                ..put(id, Path::new(""), TransferProtocol::Unspecified)
            },
        )
    };

    // The platform's protocol is SCP; the device's own MD5 checks the copy.
    let (j, seen) = run(&c, to("flash:/image.bin", &staged.id)).await;
    let t = ok(&j);
    assert_eq!(
        (t.protocol.as_str(), t.verified_by.as_str()),
        ("scp", "md5")
    );
    assert_eq!(
        files::sha256(&dev.flash().get("flash:image.bin").unwrap()),
        sha
    );
    assert!(seen.iter().any(|j| j.transfer_progress.is_some()));
    let (j, _) = run(&c, to("flash:/image.bin", &staged.id)).await;
    assert!(ok(&j).skipped, "the device's MD5 matches: nothing sent");

    // The device's free space (`dir`) is checked before anything is sent.
    let (j, _) = run(&c, to("flash:/second.bin", &staged.id)).await;
    let why = failed(&j, "transfer_failed");
    assert!(
        why.contains("needs 5242880 bytes; the device shows 3145728 free"),
        "{why}"
    );
    assert_eq!(dev.flash().size("flash:second.bin"), None);

    // Cut by the device: a clear error, and no file reported or left as done.
    let small = work.path().join("small.bin");
    files::make_file(&small, 2 * MB, 12);
    // This one names its node instead of a device type.
    let by_node = UploadHeader {
        device_type: String::new(),
        node_id: "node-1".into(),
        ..header.clone()
    };
    let staged_small = files::upload(&mut jobs, token, by_node, &small, true)
        .await
        .unwrap();
    assert_eq!(staged_small.node_id, "node-1");
    dev.flash().cut_next_transfer_after(MB as u64);
    let (j, _) = run(&c, to("flash:/cut.bin", &staged_small.id)).await;
    let why = failed(&j, "transfer_failed");
    assert!(why.contains("closed") || why.contains("refused"), "{why}");
    assert!(j.transfer.is_none());
    assert_eq!(dev.flash().size("flash:cut.bin"), None);

    // Without enable mode, IOS refuses verify /md5: the job says what it could not check.
    let (j, _) = run(
        &c,
        ExecuteRequest {
            enable_mode: false,
            ..to("flash:/small.bin", &staged_small.id)
        },
    )
    .await;
    assert!(failed(&j, "transfer_failed").contains("enable_mode"));

    // GET over SCP (`scp -f`), verified the same way, then downloaded.
    let get = FileTransfer {
        direction: TransferDirection::Get as i32,
        remote_path: "flash:/image.bin".into(),
        ..Default::default()
    };
    let (j, _) = run(
        &c,
        ExecuteRequest {
            enable_mode: true,
            ..transfer(&conn, get)
        },
    )
    .await;
    let t = ok(&j).clone();
    assert_eq!(t.verified_by, "md5");
    let back = work.path().join("back.bin");
    files::download(&mut jobs, token, &t.staged_file, 0, &back)
        .await
        .unwrap();
    assert_eq!(files::sha256_file(&back), sha);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_command_s_output_arrives_in_pieces_before_it_ends() {
    let sshd = Sshd::start("").await;
    let c = TestCluster::start(Options::default()).await.unwrap();
    let slow = "for i in 1 2 3 4; do echo line$i; sleep 1; done";
    let req = ExecuteRequest {
        connection: Some(host(&sshd)),
        commands: vec!["echo first".into(), slow.into()],
        stream_output: true,
        ..Default::default()
    };
    let started = tokio::time::Instant::now();
    let (j, seen) = run(&c, req).await;
    let took = started.elapsed();
    assert_eq!(j.status(), JobStatus::Succeeded, "{:?}", j.error);
    let chunks: Vec<&OutputChunk> = seen
        .iter()
        .filter_map(|j| j.output_chunk.as_ref())
        .collect();
    let slow_chunks: Vec<&&OutputChunk> = chunks.iter().filter(|c| c.command_index == 1).collect();
    assert!(
        slow_chunks.len() >= 2,
        "one piece per line as they come: {chunks:?}"
    );
    assert!(slow_chunks[0].text.starts_with("line1"), "{chunks:?}");
    assert_eq!(slow_chunks[1].offset, slow_chunks[0].text.len() as u64);
    assert!(
        seen.iter()
            .all(|j| j.status() == JobStatus::Running || j.output_chunk.is_none())
    );
    let streamed: String = slow_chunks.iter().map(|c| c.text.as_str()).collect();
    assert!(
        j.results[1].output.starts_with(streamed.trim_end()),
        "the final job holds it all"
    );
    assert!(
        took >= Duration::from_secs(3),
        "the command took its time: {took:?}"
    );

    // `netpulse exec --follow` prints the first line while the command still runs.
    let mut child = cli(&c, &sshd, &["exec", "--follow", slow])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let first = tokio::time::timeout(LONG, async {
        loop {
            match lines.next_line().await.unwrap() {
                Some(l) if l.starts_with("line") => return l,
                Some(_) => continue,
                None => panic!("the CLI ended before printing a line"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(first, "line1");
    assert!(
        child.try_wait().unwrap().is_none(),
        "line1 came while the command ran"
    );
    let mut rest = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push(l);
    }
    assert!(child.wait().await.unwrap().success());
    assert!(rest.contains(&"line4".to_string()), "{rest:?}");
    // Without stream_output: no pieces.
    let (j, seen) = run(
        &c,
        ExecuteRequest {
            connection: Some(host(&sshd)),
            commands: vec!["for i in 1 2; do echo x; sleep 1; done".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(j.status(), JobStatus::Succeeded);
    assert!(seen.iter().all(|j| j.output_chunk.is_none()));
}
