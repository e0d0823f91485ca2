//! A real etcd for tests: the distro's `etcd` (or `NETPULSE_ETCD_BIN`) on free loopback ports
//! with a temporary data dir, killed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

pub struct Etcd {
    pub child: Child,
    pub endpoint: String,
    _dir: Option<tempfile::TempDir>,
    data: PathBuf,
    ports: (u16, u16),
    /// Set when etcd serves clients over TLS and requires their certificates.
    tls: Option<std::sync::Arc<crate::tls::TestPki>>,
}

/// A free loopback port below the kernel's ephemeral range, so no outgoing connection is given
/// it while its server is down: etcd and devices restarted on the same port get it back (an
/// ephemeral one was once taken by a client socket during an etcd outage test).
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 20_000.min(ephemeral_low / 2);
    for _ in 0..1000 {
        let port = rand::random_range(low..ephemeral_low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{ephemeral_low}");
}

impl Etcd {
    /// Starts etcd in a temp dir on free ports and waits (at most 20 s) until it answers.
    pub async fn start() -> Etcd {
        Etcd::start_with(None).await
    }

    /// Like `start`, serving clients over TLS with the PKI's server certificate and requiring
    /// a client certificate its CA signed (`--client-cert-auth`).
    pub async fn start_tls(pki: std::sync::Arc<crate::tls::TestPki>) -> Etcd {
        Etcd::start_with(Some(pki)).await
    }

    async fn start_with(tls: Option<std::sync::Arc<crate::tls::TestPki>>) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        // A port is free when picked, not always when etcd binds it (a test running alongside
        // may take it): etcd then exits at once, and new ports are tried.
        for _ in 0..3 {
            let (client, peer) = (free_port(), free_port());
            if let Some(mut e) =
                Etcd::try_start_in(dir.path(), client, peer, Stdio::null(), tls.clone()).await
            {
                e._dir = Some(dir);
                return e;
            }
            let _ = std::fs::remove_dir_all(dir.path().join("data"));
        }
        panic!("etcd exited at start three times (its ports taken?)");
    }

    /// Starts etcd with its data under `dir` on the given loopback ports, its log to `log`.
    pub async fn start_in(dir: &Path, client: u16, peer: u16, log: impl Into<Stdio>) -> Etcd {
        Etcd::try_start_in(dir, client, peer, log, None)
            .await
            .unwrap_or_else(|| panic!("etcd exited at start (port {client} or {peer} taken?)"))
    }

    /// None when etcd exits before it answers.
    async fn try_start_in(
        dir: &Path,
        client: u16,
        peer: u16,
        log: impl Into<Stdio>,
        tls: Option<std::sync::Arc<crate::tls::TestPki>>,
    ) -> Option<Etcd> {
        let bin = std::env::var_os("NETPULSE_ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("etcd"));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let c = format!("{scheme}://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let mut child = Command::new(&bin)
            .args(["--name", "t", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args(tls.iter().flat_map(|pki| {
                [
                    "--client-cert-auth".into(),
                    format!("--trusted-ca-file={}", pki.ca.display()),
                    format!("--cert-file={}", pki.server_cert.display()),
                    format!("--key-file={}", pki.server_key.display()),
                ]
            }))
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args([
                "--initial-cluster",
                &format!("t={p}"),
                "--log-level",
                "error",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} failed ({e}); install etcd-server or set NETPULSE_ETCD_BIN",
                    bin.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Ok(mut cl)) = tokio::time::timeout(
                Duration::from_secs(1),
                etcd_client::Client::connect([c.as_str()], client_options(tls.as_deref())),
            )
            .await
                && let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), cl.get("probe", None)).await
            {
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            assert!(Instant::now() < deadline, "etcd did not come up on {c}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Etcd {
            child,
            endpoint: c,
            _dir: None,
            data: dir.to_path_buf(),
            ports: (client, peer),
            tls,
        })
    }

    /// Kills etcd (an outage); `start_again` brings it back with the same data and ports.
    /// Everything etcd keeps on disk: its write-ahead log, snapshots and database.
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    pub async fn stop(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    pub async fn start_again(&mut self) {
        let again = Etcd::try_start_in(
            &self.data,
            self.ports.0,
            self.ports.1,
            Stdio::null(),
            self.tls.clone(),
        )
        .await
        .expect("etcd came back");
        self.child = again.child;
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(
            [self.endpoint.as_str()],
            client_options(self.tls.as_deref()),
        )
        .await
        .unwrap()
    }

    /// The flags our binaries need to reach this etcd (none without TLS).
    pub fn client_flags(&self) -> Vec<String> {
        self.tls
            .iter()
            .flat_map(|pki| {
                [
                    "--etcd-ca-file".to_string(),
                    pki.ca.display().to_string(),
                    "--etcd-cert-file".to_string(),
                    pki.client_cert.display().to_string(),
                    "--etcd-key-file".to_string(),
                    pki.client_key.display().to_string(),
                ]
            })
            .collect()
    }
}

/// A client's options for an etcd with `tls` (its CA trusted, its client certificate shown).
fn client_options(tls: Option<&crate::tls::TestPki>) -> Option<etcd_client::ConnectOptions> {
    let pki = tls?;
    let cfg = netpulse_proto::tls::client(
        &pki.ca,
        Some((pki.client_cert.as_path(), pki.client_key.as_path())),
    )
    .expect("the test PKI");
    Some(etcd_client::ConnectOptions::new().with_tls(cfg))
}
