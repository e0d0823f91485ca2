//! The linux platform against a real OpenSSH server (`integration_tests::sshd`).

use std::time::Duration;

use integration_tests::sshd::Sshd;
use netpulse_proto::worker::CommandStatus;
use pinned_worker::ops::{self, JobSpec, Operation};
use pinned_worker::platform;
use pinned_worker::session::DeviceSession;
use pinned_worker::ssh::HostKeyPolicy;

const T: Duration = Duration::from_secs(15);

#[tokio::test]
async fn linux_platform_against_openssh() {
    let sshd = Sshd::start("").await;
    let linux = platform::lookup("linux").unwrap();
    let mut s = DeviceSession::open(&sshd.target(T), linux, "", T)
        .await
        .expect("session to sshd");
    assert!(
        sshd.dir.path().join("known_hosts").exists(),
        "accept-new recorded the host key"
    );

    let out = s.command("echo hello-$((40+2))", T).await.unwrap();
    assert_eq!(out.output, "hello-42");
    assert!(out.rejected.is_none());

    let out = s.command("no-such-command-netpulse", T).await.unwrap();
    assert!(
        out.rejected
            .as_deref()
            .is_some_and(|r| r.contains("command not found")),
        "{out:?}"
    );

    let out = s.command("seq 1 50000", T).await.unwrap();
    let lines: Vec<&str> = out.output.lines().collect();
    assert_eq!(
        (lines.len(), lines[0], lines[49_999]),
        (50_000, "1", "50000")
    );

    s.keepalive(T).await.unwrap();

    // No configuration mode on linux: the lines run as commands, stopping at the first failure.
    let marker = sshd.dir.path().join("applied");
    let lines = vec![
        format!("touch {}", marker.display()),
        "no-such-command-netpulse".into(),
        "echo skipped".into(),
    ];
    let job = JobSpec {
        operation: Operation::Config { lines, save: false },
        enable: false,
        command_timeout: T,
        mode: None,
        backup: false,
        dry_run: false,
        confirm_within: None,
        stream_output: false,
        updates: Default::default(),
    };
    let outcome = ops::run(&mut s, &job).await;
    let statuses: Vec<i32> = outcome.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            CommandStatus::Ok as i32,
            CommandStatus::Rejected as i32,
            CommandStatus::Skipped as i32
        ]
    );
    assert!(marker.exists());
    s.close().await;

    // The key recorded on first use now satisfies the strict policy.
    let mut t = sshd.target(T);
    t.host_key_policy = HostKeyPolicy::Strict(sshd.dir.path().join("known_hosts"));
    DeviceSession::open(&t, linux, "", T)
        .await
        .unwrap()
        .close()
        .await;

    // Autodetect: the shell answers none of the network CLIs' commands, and `uname -a`.
    let probe = platform::lookup(platform::AUTODETECT).unwrap();
    let mut s = DeviceSession::open(&t, probe, "", T).await.unwrap();
    assert_eq!(s.platform().name, "linux");
    let out = s.command("echo detected-$((40+2))", T).await.unwrap();
    assert_eq!(out.output, "detected-42");
    s.close().await;
}
