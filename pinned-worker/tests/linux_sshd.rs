//! The linux platform against a real OpenSSH server: `sshd` from the distro, started on a free
//! loopback port with its own host key, config and authorized key in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use netpulse_proto::worker::CommandStatus;
use pinned_worker::ops::{self, JobSpec, Operation};
use pinned_worker::platform;
use pinned_worker::session::DeviceSession;
use pinned_worker::ssh::{HostKeyPolicy, Target};
use russh::keys::{Algorithm, PrivateKey, ssh_key::LineEnding};
use tokio::process::{Child, Command};

const SSHD: &str = "/usr/sbin/sshd";
const T: Duration = Duration::from_secs(15);

struct Sshd {
    _child: Child,
    port: u16,
    user: String,
    client_key: PrivateKey,
    dir: tempfile::TempDir,
}

fn write_private(path: &Path, key: &PrivateKey) {
    std::fs::write(path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn start_sshd() -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: install openssh-server (scripts/deps does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let host_key = PrivateKey::random(&mut rand_core(), Algorithm::Ed25519).unwrap();
    let client_key = PrivateKey::random(&mut rand_core(), Algorithm::Ed25519).unwrap();
    write_private(&dir.path().join("host_key"), &host_key);
    std::fs::write(
        dir.path().join("authorized_keys"),
        client_key.public_key().to_openssh().unwrap() + "\n",
    )
    .unwrap();
    let user = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    // sshd refuses to start as root without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.path().display();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
         PrintMotd no\nPrintLastLog no\nLogLevel ERROR\n"
    );
    std::fs::write(dir.path().join("sshd_config"), config).unwrap();
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.path().join("sshd_config"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sshd did not listen on {port} within {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Sshd {
        _child: child,
        port,
        user,
        client_key,
        dir,
    }
}

fn rand_core() -> impl russh::keys::signature::rand_core::CryptoRng {
    rand::rng()
}

fn target(s: &Sshd) -> Target {
    Target {
        host: "127.0.0.1".into(),
        port: s.port,
        username: s.user.clone(),
        password: String::new(),
        private_key_pem: s.client_key.to_openssh(LineEnding::LF).unwrap().to_string(),
        private_key_passphrase: String::new(),
        host_key_policy: HostKeyPolicy::AcceptNew(s.dir.path().join("known_hosts")),
        connect_timeout: T,
        auth_timeout: T,
        ssh_keepalive_interval: Duration::from_secs(15),
        ssh_keepalive_max: 3,
        legacy_algorithms: false,
    }
}

#[tokio::test]
async fn linux_platform_against_openssh() {
    let sshd = start_sshd().await;
    let linux = platform::lookup("linux").unwrap();
    let mut s = DeviceSession::open(&target(&sshd), linux, "", T)
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
    let mut t = target(&sshd);
    t.host_key_policy = HostKeyPolicy::Strict(sshd.dir.path().join("known_hosts"));
    DeviceSession::open(&t, linux, "", T)
        .await
        .unwrap()
        .close()
        .await;
}
