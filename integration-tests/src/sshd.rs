//! A real OpenSSH server for tests: `sshd` from the distro on a free loopback port, with its
//! own host key, configuration and one authorized client key in a temporary directory. It
//! logs at DEBUG1 to `log()`, where tests find the channels it opened.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey, ssh_key::LineEnding};
use tokio::process::{Child, Command};

const SSHD: &str = "/usr/sbin/sshd";
const START: Duration = Duration::from_secs(15);

pub struct Sshd {
    _child: Child,
    pub port: u16,
    /// The user the tests run as, whom the authorized key logs in.
    pub user: String,
    pub client_key: PrivateKey,
    pub dir: tempfile::TempDir,
}

fn write_private(path: &Path, key: &PrivateKey) {
    std::fs::write(path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn random_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
}

impl Sshd {
    /// Starts sshd with key authentication only; `extra` is appended to its configuration.
    pub async fn start(extra: &str) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (scripts/deps does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let client_key = random_key();
        write_private(&dir.path().join("host_key"), &random_key());
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
        let port = crate::etcd::free_port();
        let d = dir.path().display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPrintMotd no\n\
             PrintLastLog no\nLogLevel DEBUG1\n{extra}\n"
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + START;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "sshd did not listen on {port} within {START:?}: {}",
                std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
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

    /// This host as a `linux` device, logged in to with the client key.
    pub fn connection(&self) -> netpulse_proto::api::Connection {
        netpulse_proto::api::Connection {
            host: "127.0.0.1".into(),
            port: self.port as u32,
            username: self.user.clone(),
            private_key: self.client_key_pem(),
            device_type: "linux".into(),
            ..Default::default()
        }
    }

    pub fn client_key_pem(&self) -> String {
        self.client_key
            .to_openssh(LineEnding::LF)
            .unwrap()
            .to_string()
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// The client side of a session to this server, accepting its key on first use.
    pub fn target(&self, limit: Duration) -> pinned_worker::ssh::Target {
        let me = crate::SimDevice {
            name: "sshd".into(),
            device_type: "linux".into(),
            port: self.port,
        };
        pinned_worker::ssh::Target {
            username: self.user.clone(),
            password: String::new(),
            private_key_pem: self.client_key_pem(),
            host_key_policy: pinned_worker::ssh::HostKeyPolicy::AcceptNew(
                self.dir.path().join("known_hosts"),
            ),
            ..crate::ssh_target(&me, limit)
        }
    }
}
