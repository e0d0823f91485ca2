//! The manager's cluster view against a real etcd and a real node agent (in process, with real
//! worker processes and a simulated device): the node shows up, a session opens, a job
//! dispatched through the link comes back, and the node disappears when its lease ends.

use std::time::Duration;

use devsim::{DeviceSpec, Flavor, spawn_device};
use integration_tests::etcd::Etcd;
use integration_tests::worker_bin;
use manager::cluster::{Cluster, NodeEvent};
use netpulse_proto::agent::{Dispatch, agent_message::Msg, manager_message::Msg as Out};
use netpulse_proto::worker::{self as wire, HostKeyPolicy};
use node_agent::agent::{Agent, Limits};
use node_agent::process::WorkerSettings;
use node_agent::registry::{self, RegistryConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const DEADLINE: Duration = Duration::from_secs(20);

async fn next(events: &mut mpsc::Receiver<NodeEvent>, pred: impl Fn(&Msg) -> bool) -> NodeEvent {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let e = events.recv().await.expect("events open");
            if e.msg.msg.as_ref().is_some_and(&pred) {
                return e;
            }
        }
    })
    .await
    .expect("event within deadline")
}

#[tokio::test]
async fn nodes_appear_sessions_open_jobs_flow_and_dead_nodes_disappear() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let stop_dev = CancellationToken::new();
    let dev = spawn_device(
        DeviceSpec::new(Flavor::CiscoIos, "r1"),
        devsim::server::random_host_key(),
        stop_dev.clone(),
    )
    .await
    .unwrap();
    let _dev_guard = stop_dev.drop_guard();

    // A node agent: gRPC on loopback, registered under the test prefix.
    let settings = WorkerSettings {
        bin: worker_bin(),
        log_filter: "info".into(),
        log_json: true,
        host_key_policy: HostKeyPolicy::AcceptNew,
        known_hosts: dir.path().join("known_hosts"),
        kill_grace: Duration::from_secs(2),
        platforms_dir: None,
        ntc_templates_dir: None,
        templates_dir: None,
        credentials: Default::default(),
        staging: Default::default(),
    };
    let limits = Limits {
        max_pinned_workers: 10,
        max_fifo_concurrency: 4,
        max_queued_per_device: 100,
        max_fifo_queued: 100,
        max_concurrent_logins: 64,
        max_logins_per_second: 0.0,
        login_limits: Vec::new(),
    };
    let agent = Agent::new("node-1".into(), settings, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve_stop = CancellationToken::new();
    tokio::spawn(node_agent::serve(
        agent.clone(),
        listener,
        Default::default(),
        serve_stop.clone(),
    ));
    let reg_stop = CancellationToken::new();
    let reg_cfg = RegistryConfig {
        prefix: "/np-cluster".into(),
        node_id: "node-1".into(),
        address: addr.to_string(),
        lease_ttl: Duration::from_secs(5),
        load_interval: Duration::from_millis(500),
        etcd_tls: None,
        call_timeout: Duration::from_secs(1),
    };
    let reg = tokio::spawn(registry::run(
        etcd.client().await,
        reg_cfg,
        agent.clone(),
        reg_stop.clone(),
    ));

    // The manager side.
    let (tx, mut events) = mpsc::channel(1024);
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let cluster = Cluster::start(
        etcd.client().await,
        "/np-cluster",
        "mgr-1".into(),
        Default::default(),
        tx,
        &tracker,
        shutdown.clone(),
    );
    let welcome = next(&mut events, |m| matches!(m, Msg::Welcome(_))).await;
    assert_eq!(welcome.node_id, "node-1");
    let nodes = cluster.nodes();
    assert_eq!(nodes["node-1"].address, addr.to_string());
    assert_eq!(nodes["node-1"].max_pinned_workers, 10);

    let dispatch = Dispatch {
        job_id: "job-1".into(),
        connection: Some(wire::Connection {
            host: "127.0.0.1".into(),
            port: dev.addr().port() as u32,
            username: "admin".into(),
            password: "admin".into(),
            device_type: "cisco_ios".into(),
            ..Default::default()
        }),
        job: Some(wire::Job {
            operation: Some(wire::job::Operation::Commands(wire::Commands {
                commands: vec!["show version".into()],
                specs: Vec::new(),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    cluster.send("node-1", Out::Dispatch(dispatch)).unwrap();
    let done = next(&mut events, |m| matches!(m, Msg::Finished(_))).await;
    let Some(Msg::Finished(f)) = done.msg.msg else {
        unreachable!()
    };
    assert_eq!(f.job_id, "job-1");
    let r = f.result.unwrap();
    assert!(r.ok && r.results[0].output.contains("r1"), "{r:?}");
    assert!(
        cluster
            .send("node-9", Out::Drain(Default::default()))
            .is_err(),
        "unknown nodes are refused"
    );

    // The agent stops and revokes its lease: the node leaves the manager's view.
    reg_stop.cancel();
    reg.await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    while cluster.nodes().contains_key("node-1") {
        assert!(Instant::now() < deadline, "node still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cluster
            .send("node-1", Out::Drain(Default::default()))
            .is_err()
    );
    shutdown.cancel();
    serve_stop.cancel();
    agent.shutdown(Duration::from_secs(5)).await;
    tracker.close();
    tokio::time::timeout(DEADLINE, tracker.wait())
        .await
        .unwrap();
}
