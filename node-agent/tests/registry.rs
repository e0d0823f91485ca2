//! Registration against a real etcd (the distro's `etcd`, or `NETPULSE_ETCD_BIN`), started on
//! free loopback ports with a temporary data dir: register, stay registered past the TTL,
//! fence and re-register when the lease is lost or etcd stops answering, revoke on shutdown.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use netpulse_proto::agent::agent_message::Msg;
use netpulse_proto::worker::HostKeyPolicy;
use node_agent::agent::{Admission, Agent, Limits};
use node_agent::process::WorkerSettings;
use node_agent::registry::{self, NodeRecord, RegistryConfig};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);
const TTL: Duration = Duration::from_secs(2);

use integration_tests::etcd::{Etcd, free_port};

async fn start_etcd() -> Etcd {
    Etcd::start().await
}

fn agent() -> Arc<Agent> {
    agent_with(PathBuf::from("/bin/false"))
}

fn agent_with(bin: PathBuf) -> Arc<Agent> {
    let settings = WorkerSettings {
        bin,
        log_filter: "info".into(),
        log_json: true,
        host_key_policy: HostKeyPolicy::InsecureAcceptAny,
        known_hosts: PathBuf::from("/nonexistent"),
        kill_grace: Duration::from_secs(1),
        platforms_dir: None,
        ntc_templates_dir: None,
        templates_dir: None,
        credentials: Default::default(),
        staging: Default::default(),
    };
    Agent::new(
        "node-r".into(),
        settings,
        Limits {
            max_pinned_workers: 7,
            max_fifo_concurrency: 3,
            max_queued_per_device: 10,
            max_fifo_queued: 10,
            max_concurrent_logins: 64,
            max_logins_per_second: 0.0,
            login_limits: Vec::new(),
        },
    )
}

fn config() -> RegistryConfig {
    RegistryConfig {
        prefix: "/np-test".into(),
        node_id: "node-r".into(),
        address: "127.0.0.1:50061".into(),
        lease_ttl: TTL,
        load_interval: Duration::from_millis(500),
        etcd_tls: None,
        call_timeout: Duration::from_millis(700),
    }
}

async fn record(c: &mut Client) -> Option<NodeRecord> {
    let r = tokio::time::timeout(Duration::from_secs(2), c.get("/np-test/nodes/node-r", None))
        .await
        .ok()?
        .ok()?;
    r.kvs()
        .first()
        .map(|kv| serde_json::from_slice(kv.value()).expect("record is json"))
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn registers_stays_registered_past_the_ttl_and_revokes_on_shutdown() {
    let etcd = start_etcd().await;
    let mut c = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let a = agent();
    assert_eq!(a.admission(), Admission::Open);
    let stop = CancellationToken::new();
    let task = tokio::spawn(registry::run(c.clone(), config(), a.clone(), stop.clone()));
    let rec = wait_for("the node record", async || record(&mut c).await).await;
    assert_eq!(
        (
            rec.node_id.as_str(),
            rec.address.as_str(),
            rec.max_pinned_workers,
            rec.max_fifo_concurrency
        ),
        ("node-r", "127.0.0.1:50061", 7, 3)
    );
    assert_eq!(a.admission(), Admission::Open);
    let ttl = c.lease_time_to_live(rec.lease_id, None).await.unwrap();
    assert!(ttl.granted_ttl() == 2, "{ttl:?}");

    // Three TTLs later the same lease still holds the record.
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        let now = record(&mut c).await.expect("record present");
        assert_eq!(now.lease_id, rec.lease_id);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    stop.cancel();
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    assert!(
        record(&mut c).await.is_none(),
        "revoked at once, not after the TTL"
    );
}

#[tokio::test]
async fn a_lost_lease_fences_the_agent_tells_managers_and_registers_again() {
    let etcd = start_etcd().await;
    let mut c = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let a = agent();
    let (tx, mut events) = mpsc::channel(64);
    a.ctx.events.subscribe(1, tx);
    let stop = CancellationToken::new();
    let _task = tokio::spawn(registry::run(c.clone(), config(), a.clone(), stop.clone()));
    let first = wait_for("the node record", async || record(&mut c).await).await;

    c.lease_revoke(first.lease_id).await.unwrap();
    let fenced = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(Ok(m)) = events.recv().await
                && let Some(Msg::Fenced(f)) = m.msg
            {
                return f;
            }
        }
    })
    .await
    .expect("a fenced event");
    assert!(fenced.reason.contains("lease"), "{fenced:?}");
    let second = wait_for("a record under a new lease", async || {
        record(&mut c)
            .await
            .filter(|r| r.lease_id != first.lease_id)
    })
    .await;
    assert_ne!(second.lease_id, first.lease_id);
    wait_for("admission open again", async || {
        (a.admission() == Admission::Open).then_some(())
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn an_etcd_outage_longer_than_the_ttl_fences_until_etcd_is_back() {
    let etcd = start_etcd().await;
    let mut c = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let a = agent();
    let stop = CancellationToken::new();
    let _task = tokio::spawn(registry::run(c.clone(), config(), a.clone(), stop.clone()));
    let first = wait_for("the node record", async || record(&mut c).await).await;

    let pid = nix::unistd::Pid::from_raw(etcd.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_for("fencing", async || {
        matches!(a.admission(), Admission::Fenced(_)).then_some(())
    })
    .await;
    assert!(
        a.dispatch(Default::default()).is_err(),
        "a fenced agent takes no job"
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    wait_for("admission open again", async || {
        (a.admission() == Admission::Open).then_some(())
    })
    .await;
    let again = wait_for("a fresh record", async || {
        record(&mut c)
            .await
            .filter(|r| r.lease_id != first.lease_id)
    })
    .await;
    assert_eq!(again.node_id, "node-r");
    stop.cancel();
}

fn agent_bin() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_node-agent"));
    cmd.env_clear();
    cmd
}

#[tokio::test]
async fn the_binary_registers_and_on_sigterm_exits_cleanly_and_revokes() {
    let etcd = start_etcd().await;
    let mut c = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let port = free_port();
    let mut cmd: Command = agent_bin().into();
    let mut child = cmd
        .args([
            "--node-id",
            "node-r",
            "--etcd-prefix",
            "/np-test",
            "--lease-ttl-seconds",
            "2",
        ])
        .args([
            "--etcd-endpoints",
            &etcd.endpoint,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--worker-bin",
            "/bin/true",
            "--known-hosts",
            "/tmp/np-known-hosts",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let rec = wait_for("the node record", async || record(&mut c).await).await;
    assert_eq!(rec.address, format!("127.0.0.1:{port}"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        record(&mut c).await.is_none(),
        "the lease was revoked on shutdown"
    );
}

#[test]
fn bad_configuration_exits_64_with_a_message() {
    let out = agent_bin()
        .args([
            "--node-id",
            "n1",
            "--lease-ttl-seconds",
            "1",
            "--worker-bin",
            "/bin/true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lease-ttl-seconds must be 2..=300, got 1"),
        "{err}"
    );
    let out = agent_bin()
        .args(["--node-id", "a/b", "--worker-bin", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_node_whose_workers_cannot_fit_in_the_descriptor_limit_refuses_to_start() {
    // A hard limit of 512 descriptors holds (512 - 256) / 2 = 128 workers, 96 of them pinned
    // next to the 32 fifo places.
    let agent = env!("CARGO_BIN_EXE_node-agent");
    let start = |pinned: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -Sn 64 && ulimit -Hn 512 && exec \"$0\" --node-id n1 --worker-bin /bin/true \
                 --etcd-endpoints http://127.0.0.1:9 --log-format json --max-pinned-workers {pinned}"
            ))
            .arg(agent)
            .env_clear()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = start("1000").wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("need 2320 file descriptors")
            && err.contains("hard RLIMIT_NOFILE is 512")
            && err.contains("lower --max-pinned-workers to at most 96"),
        "{err}"
    );
    // 96 pinned fit: the soft limit is raised and the agent starts (and keeps trying to reach
    // etcd, which is not there).
    let mut child = start("96");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Whatever happens below, the agent is stopped within 30 s (until it is reaped, its pid
    // cannot name another process).
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if watchdog.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let limits = lines
        .map_while(Result::ok)
        .find(|l| l.contains("resource limits"));
    let _ = child.kill();
    let _ = done.send(());
    let _ = child.wait();
    let limits = limits.expect("the agent logged its limits");
    assert!(limits.contains("\"nofile\":512"), "{limits}");
}

#[tokio::test]
async fn the_load_in_the_record_follows_the_agent() {
    let etcd = start_etcd().await;
    let mut c = Client::connect([etcd.endpoint.as_str()], None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let silent = dir.path().join("silent-worker");
    std::fs::write(&silent, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&silent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let a = agent_with(silent);
    let stop = CancellationToken::new();
    let _task = tokio::spawn(registry::run(c.clone(), config(), a.clone(), stop.clone()));
    let first = wait_for("the node record", async || record(&mut c).await).await;
    assert_eq!(first.pinned_workers, 0);
    let d = netpulse_proto::agent::Dispatch {
        job_id: "j".into(),
        connection: Some(netpulse_proto::worker::Connection {
            host: "192.0.2.10".into(),
            username: "u".into(),
            password: "p".into(),
            device_type: "cisco_ios".into(),
            ..Default::default()
        }),
        job: Some(netpulse_proto::worker::Job {
            operation: Some(netpulse_proto::worker::job::Operation::Commands(
                netpulse_proto::worker::Commands {
                    commands: vec!["show clock".into()],
                    specs: Vec::new(),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    a.dispatch(d).unwrap();
    let updated = wait_for("the load update", async || {
        record(&mut c).await.filter(|r| r.pinned_workers == 1)
    })
    .await;
    assert_eq!(
        updated.lease_id, first.lease_id,
        "updated in place, same lease"
    );
    stop.cancel();
    assert_eq!(
        a.shutdown(Duration::from_secs(1)).await,
        1,
        "the silent worker's job was still running"
    );
}

#[test]
fn a_malformed_platform_definition_stops_the_agent_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acme_os.toml"),
        "name = \"acme_os\"\ninherits = \"cisco_ios\"\n[paging]\ncommand = [\"no page\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_node-agent"))
        .args(["--node-id", "n1", "--worker-bin", "/bin/true"])
        .args(["--etcd-endpoints", "http://127.0.0.1:9", "--platforms-dir"])
        .arg(dir.path())
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acme_os.toml") && err.contains("unknown field `command`"),
        "{err}"
    );
}
