//! The agent end to end without etcd: a test client plays the manager over gRPC, real
//! `pinned-worker` processes talk to simulated devices, and shell scripts stand in for broken
//! workers (garbage frames, hangs, crash loops).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use devsim::{Device, DeviceSpec, Flavor, spawn_device};
use integration_tests::worker_bin;
use netpulse_proto::agent::agent_service_client::AgentServiceClient;
use netpulse_proto::agent::{
    AgentMessage, CancelJob, Dispatch, Hello, JobFinished, KillWorker, ListWorkers, ManagerMessage,
    RejectCode, Strategy, WorkerInfo, WorkerState, agent_message::Msg, manager_message::Msg as In,
};
use netpulse_proto::worker::{self as wire, ErrorKind, HostKeyPolicy};
use node_agent::agent::{Agent, Limits};
use node_agent::process::WorkerSettings;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, DropGuard};

const DEADLINE: Duration = Duration::from_secs(30);

fn limits(max_pinned: usize, max_fifo: usize) -> Limits {
    Limits {
        max_pinned_workers: max_pinned,
        max_fifo_concurrency: max_fifo,
        max_queued_per_device: 100,
        max_fifo_queued: 100,
        max_concurrent_logins: 64,
        max_logins_per_second: 0.0,
        login_limits: Vec::new(),
    }
}

struct Harness {
    agent: Arc<Agent>,
    addr: String,
    tx: mpsc::Sender<ManagerMessage>,
    events: tonic::Streaming<AgentMessage>,
    _stop: DropGuard,
    _dir: tempfile::TempDir,
}

async fn start(bin: PathBuf, limits: Limits) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let settings = WorkerSettings {
        bin,
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
    let agent = Agent::new("node-t".into(), settings, limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(node_agent::serve(
        agent.clone(),
        listener,
        Default::default(),
        stop.clone(),
    ));
    let mut client = AgentServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(1024);
    tx.send(ManagerMessage {
        msg: Some(In::Hello(Hello {
            manager_id: "test".into(),
        })),
    })
    .await
    .unwrap();
    let mut events = client
        .session(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    match events.next().await {
        Some(Ok(AgentMessage {
            msg: Some(Msg::Welcome(w)),
        })) => assert_eq!(w.node_id, "node-t"),
        other => panic!("expected welcome, got {other:?}"),
    }
    Harness {
        agent,
        addr: format!("http://{addr}"),
        tx,
        events,
        _stop: stop.drop_guard(),
        _dir: dir,
    }
}

async fn device(flavor: Flavor, name: &str) -> (Device, DropGuard) {
    let stop = CancellationToken::new();
    let d = spawn_device(
        DeviceSpec::new(flavor, name),
        devsim::server::random_host_key(),
        stop.clone(),
    )
    .await
    .unwrap();
    (d, stop.drop_guard())
}

fn dispatch(id: &str, d: &Device, cmds: &[&str], strategy: Strategy) -> Dispatch {
    Dispatch {
        job_id: id.into(),
        strategy: strategy as i32,
        connection: Some(wire::Connection {
            host: "127.0.0.1".into(),
            port: d.addr().port() as u32,
            username: "admin".into(),
            password: "admin".into(),
            device_type: d.spec().flavor.device_type().into(),
            ..Default::default()
        }),
        job: Some(wire::Job {
            operation: Some(wire::job::Operation::Commands(wire::Commands {
                commands: cmds.iter().map(|c| c.to_string()).collect(),
                specs: Vec::new(),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Harness {
    async fn send(&self, m: In) {
        self.tx.send(ManagerMessage { msg: Some(m) }).await.unwrap();
    }

    async fn next(&mut self) -> Msg {
        let m = tokio::time::timeout(DEADLINE, self.events.next())
            .await
            .expect("event within deadline");
        m.expect("stream open")
            .expect("stream ok")
            .msg
            .expect("message body")
    }

    /// Waits for the events of `n` finished jobs; other events are skipped.
    async fn finished(&mut self, n: usize) -> Vec<JobFinished> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next().await {
                Msg::Finished(f) => out.push(f),
                Msg::Rejected(r) => panic!("unexpected rejection {r:?}"),
                _ => {}
            }
        }
        out
    }

    async fn rejected(&mut self) -> (String, RejectCode, String) {
        loop {
            if let Msg::Rejected(r) = self.next().await {
                return (r.job_id.clone(), r.code(), r.message);
            }
        }
    }

    /// Waits for the job's start; other events are skipped.
    async fn started(&mut self, job_id: &str) {
        loop {
            if let Msg::Started(s) = self.next().await
                && s.job_id == job_id
            {
                return;
            }
        }
    }

    /// The agent's worker table.
    async fn workers(&mut self) -> Vec<WorkerInfo> {
        self.send(In::ListWorkers(ListWorkers {
            request_id: "table".into(),
        }))
        .await;
        loop {
            if let Msg::Workers(t) = self.next().await {
                return t.workers;
            }
        }
    }

    /// Waits for a worker event that satisfies `pred`.
    async fn worker_event(&mut self, pred: impl Fn(&WorkerInfo) -> bool) -> WorkerInfo {
        loop {
            if let Msg::Worker(w) = self.next().await {
                let w = w.worker.unwrap();
                if pred(&w) {
                    return w;
                }
            }
        }
    }
}

fn kind(f: &JobFinished) -> ErrorKind {
    f.result
        .as_ref()
        .and_then(|r| r.error.as_ref())
        .map_or(ErrorKind::Unspecified, |e| e.kind())
}

fn ok(f: &JobFinished) -> bool {
    f.result.as_ref().is_some_and(|r| r.ok)
}

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Waits until this process has no zombie children. Tests run in parallel, so a child of
/// another test may be between its exit and its reaping at any instant; a leak stays.
async fn assert_no_zombies() {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while zombies() > 0 {
        if tokio::time::Instant::now() >= deadline {
            let me = std::process::id().to_string();
            let list: Vec<String> = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
                .filter(|s| s.contains(" Z ") && s.contains(&format!(" Z {me} ")))
                .collect();
            panic!("zombie children remain: {list:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Zombie children of this process (state Z in /proc).
fn zombies() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split(' ').collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&me.as_str())
        })
        .count()
}

#[tokio::test]
async fn pinned_jobs_keep_their_order_per_device_and_devices_run_in_parallel() {
    let (a, _ga) = device(Flavor::CiscoIos, "dev-a").await;
    let (b, _gb) = device(Flavor::JuniperJunos, "dev-b").await;
    let mut h = start(worker_bin(), limits(10, 4)).await;
    for i in 0..5 {
        h.send(In::Dispatch(dispatch(
            &format!("a{i}"),
            &a,
            &["show version"],
            Strategy::Pinned,
        )))
        .await;
        h.send(In::Dispatch(dispatch(
            &format!("b{i}"),
            &b,
            &["show version"],
            Strategy::Pinned,
        )))
        .await;
    }
    let done = h.finished(10).await;
    let order = |p: &str| {
        done.iter()
            .filter(|f| f.job_id.starts_with(p))
            .map(|f| f.job_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(order("a"), ["a0", "a1", "a2", "a3", "a4"]);
    assert_eq!(order("b"), ["b0", "b1", "b2", "b3", "b4"]);
    assert!(done.iter().all(ok), "{done:?}");
    let reused = done
        .iter()
        .filter(|f| f.result.as_ref().unwrap().session_reused)
        .count();
    assert_eq!(reused, 8, "one connect per device");
    assert_eq!((a.logins(), b.logins()), (1, 1));
    let load = h.agent.load();
    assert_eq!((load.pinned_workers, load.queued_jobs), (2, 0));
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn a_worker_killed_while_idle_is_reaped_and_the_next_job_gets_a_new_one() {
    let (a, _ga) = device(Flavor::CiscoIos, "dev-a").await;
    let mut h = start(worker_bin(), limits(10, 4)).await;
    h.send(In::Dispatch(dispatch(
        "1",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    assert!(ok(&h.finished(1).await[0]));
    let w = h
        .agent
        .workers()
        .into_iter()
        .find(|w| w.pid != 0)
        .expect("a live worker");
    kill9(w.pid);
    let exited = h.worker_event(|w| w.state() == WorkerState::Exited).await;
    assert_eq!(exited.last_exit_code, 128 + 9, "{exited:?}");
    h.send(In::Dispatch(dispatch(
        "2",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    let f = h.finished(1).await;
    assert!(
        ok(&f[0]) && !f[0].result.as_ref().unwrap().session_reused,
        "{f:?}"
    );
    assert_ne!(f[0].worker_id, w.worker_id);
    assert_no_zombies().await;
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn a_worker_killed_mid_job_fails_that_job_with_the_reason_and_the_queue_goes_on() {
    let (a, _ga) = device(Flavor::CiscoIos, "dev-a").await;
    let mut h = start(worker_bin(), limits(10, 4)).await;
    h.send(In::Dispatch(dispatch(
        "hang",
        &a,
        &["debug hang"],
        Strategy::Pinned,
    )))
    .await;
    h.send(In::Dispatch(dispatch(
        "after",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    h.started("hang").await;
    let busy = h.workers().await.remove(0);
    assert_eq!(busy.state(), WorkerState::Busy, "{busy:?}");
    kill9(busy.pid);
    let done = h.finished(2).await;
    assert_eq!(done[0].job_id, "hang");
    assert_eq!(kind(&done[0]), ErrorKind::WorkerExited);
    let msg = &done[0]
        .result
        .as_ref()
        .unwrap()
        .error
        .as_ref()
        .unwrap()
        .message;
    assert!(msg.contains("signal 9"), "{msg}");
    assert_eq!(done[1].job_id, "after");
    assert!(ok(&done[1]), "{done:?}");
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn execution_timeout_kills_the_worker_and_cancel_works_queued_and_running() {
    let (a, _ga) = device(Flavor::CiscoIos, "dev-a").await;
    let mut h = start(worker_bin(), limits(10, 4)).await;
    let mut slow = dispatch("slow", &a, &["debug hang"], Strategy::Pinned);
    slow.timeout_seconds = 1;
    h.send(In::Dispatch(slow)).await;
    let f = h.finished(1).await;
    assert_eq!(kind(&f[0]), ErrorKind::Timeout, "{f:?}");

    h.send(In::Dispatch(dispatch(
        "running",
        &a,
        &["debug hang"],
        Strategy::Pinned,
    )))
    .await;
    h.send(In::Dispatch(dispatch(
        "queued",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    h.started("running").await;
    h.send(In::Cancel(CancelJob {
        job_id: "queued".into(),
    }))
    .await;
    h.send(In::Cancel(CancelJob {
        job_id: "running".into(),
    }))
    .await;
    let done = h.finished(2).await;
    let by_id: HashMap<_, _> = done.iter().map(|f| (f.job_id.as_str(), kind(f))).collect();
    assert_eq!(by_id["queued"], ErrorKind::Canceled);
    assert_eq!(by_id["running"], ErrorKind::Canceled);
    h.send(In::Cancel(CancelJob {
        job_id: "nope".into(),
    }))
    .await;
    assert_eq!(h.rejected().await.1, RejectCode::NotFound);
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn capacity_and_bad_dispatches_are_rejected_with_typed_reasons() {
    let (a, _ga) = device(Flavor::CiscoIos, "dev-a").await;
    let (b, _gb) = device(Flavor::CiscoIos, "dev-b").await;
    let mut h = start(worker_bin(), limits(1, 4)).await;
    h.send(In::Dispatch(dispatch(
        "a1",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    h.send(In::Dispatch(dispatch(
        "b1",
        &b,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    let (id, code, msg) = h.rejected().await;
    assert_eq!(
        (id.as_str(), code),
        ("b1", RejectCode::ResourceExhausted),
        "{msg}"
    );
    assert!(msg.contains("max_pinned_workers"), "{msg}");

    let mut d = dispatch("x1", &a, &["show clock"], Strategy::Pinned);
    d.connection = None;
    h.send(In::Dispatch(d)).await;
    let (_, code, msg) = h.rejected().await;
    assert_eq!(code, RejectCode::InvalidArgument, "{msg}");
    let mut d = dispatch("x2", &a, &["show clock"], Strategy::Pinned);
    d.connection.as_mut().unwrap().device_type = "cisco_iox".into();
    h.send(In::Dispatch(d)).await;
    let (_, code, msg) = h.rejected().await;
    assert!(
        code == RejectCode::InvalidArgument && msg.contains("allowed"),
        "{msg}"
    );
    h.send(In::Dispatch(dispatch("x3", &a, &[], Strategy::Pinned)))
        .await;
    assert_eq!(h.rejected().await.1, RejectCode::InvalidArgument);
    let mut d = dispatch("x4", &a, &["show clock"], Strategy::Pinned);
    d.keepalive_seconds = 4000;
    h.send(In::Dispatch(d)).await;
    let (_, code, msg) = h.rejected().await;
    assert_eq!(
        (code, msg.as_str()),
        (
            RejectCode::InvalidArgument,
            "keepalive_seconds must be 1..=3600 (0 for the default), got 4000"
        )
    );
    // A job id that is still running here cannot be dispatched again.
    h.send(In::Dispatch(dispatch(
        "long",
        &a,
        &["debug hang"],
        Strategy::Pinned,
    )))
    .await;
    h.send(In::Dispatch(dispatch(
        "long",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    let (id, code, _) = h.rejected().await;
    assert_eq!((id.as_str(), code), ("long", RejectCode::AlreadyExists));
    h.send(In::Cancel(CancelJob {
        job_id: "long".into(),
    }))
    .await;

    // Still serving after all that.
    h.send(In::Dispatch(dispatch(
        "a2",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    loop {
        if let Msg::Finished(f) = h.next().await
            && f.job_id == "a2"
        {
            assert!(ok(&f), "{f:?}");
            break;
        }
    }
    h.send(In::ListWorkers(ListWorkers {
        request_id: "r".into(),
    }))
    .await;
    loop {
        if let Msg::Workers(t) = h.next().await {
            assert_eq!(t.request_id, "r");
            assert_eq!(t.workers.len(), 1);
            assert_eq!(
                t.workers[0].device,
                format!("127.0.0.1:{}", a.addr().port())
            );
            break;
        }
    }
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn fifo_jobs_run_in_one_shot_workers_in_parallel_and_every_child_is_reaped() {
    let (a, _ga) = device(Flavor::AristaEos, "sw1").await;
    let mut h = start(worker_bin(), limits(10, 8)).await;
    for i in 0..16 {
        h.send(In::Dispatch(dispatch(
            &format!("f{i}"),
            &a,
            &["show version"],
            Strategy::Fifo,
        )))
        .await;
    }
    let done = h.finished(16).await;
    assert!(
        done.iter()
            .all(|f| ok(f) && !f.result.as_ref().unwrap().session_reused),
        "{done:?}"
    );
    assert_eq!(a.logins(), 16);
    assert_no_zombies().await;
    assert_eq!(h.agent.load().fifo_running, 0);
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn broken_workers_garbage_hang_and_crash_loop_fail_jobs_clearly() {
    let (a, _ga) = device(Flavor::CiscoIos, "dev-a").await;
    let dir = tempfile::tempdir().unwrap();

    let mut h = start(
        script(
            dir.path(),
            "garbage",
            "printf 'this is not a frame at all'; sleep 30",
        ),
        limits(10, 4),
    )
    .await;
    h.send(In::Dispatch(dispatch(
        "g",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    let f = h.finished(1).await;
    assert_eq!(kind(&f[0]), ErrorKind::WorkerExited, "{f:?}");
    assert!(
        f[0].result
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("bad frame"),
        "{f:?}"
    );

    let mut h = start(script(dir.path(), "hang", "sleep 30"), limits(10, 4)).await;
    let mut d = dispatch("h", &a, &["show clock"], Strategy::Pinned);
    d.timeout_seconds = 1;
    h.send(In::Dispatch(d)).await;
    assert_eq!(kind(&h.finished(1).await[0]), ErrorKind::Timeout);

    let mut h = start(script(dir.path(), "crash", "exit 3"), limits(10, 4)).await;
    for i in 0..3 {
        h.send(In::Dispatch(dispatch(
            &format!("c{i}"),
            &a,
            &["show clock"],
            Strategy::Pinned,
        )))
        .await;
    }
    let done = h.finished(3).await;
    assert!(
        done.iter().all(|f| kind(f) == ErrorKind::WorkerExited),
        "{done:?}"
    );
    let row = h.agent.workers().into_iter().next().unwrap();
    assert_eq!(row.last_exit_code, 3);
    assert_no_zombies().await;
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn kill_worker_and_graceful_shutdown_reap_everything() {
    let (a, _ga) = device(Flavor::Huawei, "hw1").await;
    let mut h = start(worker_bin(), limits(10, 4)).await;
    h.send(In::Dispatch(dispatch(
        "1",
        &a,
        &["display version"],
        Strategy::Pinned,
    )))
    .await;
    assert!(ok(&h.finished(1).await[0]));
    h.send(In::KillWorker(KillWorker {
        device: format!("127.0.0.1:{}", a.addr().port()),
        worker_id: String::new(),
    }))
    .await;
    let exited = h.worker_event(|w| w.state() == WorkerState::Exited).await;
    assert_eq!(exited.last_exit_code, 128 + 15, "SIGTERM: {exited:?}");

    h.send(In::Dispatch(dispatch(
        "2",
        &a,
        &["display version"],
        Strategy::Pinned,
    )))
    .await;
    assert!(ok(&h.finished(1).await[0]));
    let left = h.agent.shutdown(Duration::from_secs(5)).await;
    assert_eq!(left, 0);
    assert!(h.agent.workers().is_empty());
    assert_no_zombies().await;
}

#[tokio::test]
async fn several_managers_all_see_results_and_drain_stops_new_jobs() {
    let (a, _ga) = device(Flavor::CiscoIos, "dev-a").await;
    let mut h = start(worker_bin(), limits(10, 4)).await;
    // A second manager on the same agent.
    let (tx2, rx2) = mpsc::channel(16);
    tx2.send(ManagerMessage {
        msg: Some(In::Hello(Hello {
            manager_id: "second".into(),
        })),
    })
    .await
    .unwrap();
    let addr = h.addr.clone();
    let mut c2 = AgentServiceClient::connect(addr).await.unwrap();
    let mut ev2 = c2
        .session(ReceiverStream::new(rx2))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        ev2.next().await,
        Some(Ok(AgentMessage {
            msg: Some(Msg::Welcome(_))
        }))
    ));

    h.send(In::Dispatch(dispatch(
        "j1",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    assert!(ok(&h.finished(1).await[0]));
    let seen_by_second = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(m)) = ev2.next().await {
            if let Some(Msg::Finished(f)) = m.msg {
                return f.job_id;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert_eq!(seen_by_second, "j1");

    h.send(In::Drain(Default::default())).await;
    h.send(In::Dispatch(dispatch(
        "j2",
        &a,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    let (id, code, msg) = h.rejected().await;
    assert_eq!(
        (id.as_str(), code),
        ("j2", RejectCode::Unavailable),
        "{msg}"
    );
    assert!(msg.contains("draining"), "{msg}");
    drop(tx2);
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn a_session_must_start_with_hello() {
    let h = start(worker_bin(), limits(1, 1)).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(ManagerMessage {
        msg: Some(In::ListWorkers(ListWorkers::default())),
    })
    .await
    .unwrap();
    let mut c = AgentServiceClient::connect(h.addr.clone()).await.unwrap();
    let err = c.session(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("hello"), "{err}");

    // After hello, an empty message is ignored and the session keeps serving.
    let mut h = h;
    h.tx.send(ManagerMessage { msg: None }).await.unwrap();
    h.send(In::ListWorkers(ListWorkers {
        request_id: "after-empty".into(),
    }))
    .await;
    loop {
        if let Msg::Workers(t) = h.next().await {
            assert_eq!(t.request_id, "after-empty");
            break;
        }
    }
}

#[tokio::test]
async fn shutdown_lets_a_running_job_finish_within_the_grace() {
    let mut spec = DeviceSpec::new(Flavor::CiscoIos, "slow");
    spec.command_delay = Duration::from_millis(300);
    let stop = CancellationToken::new();
    let d = spawn_device(spec, devsim::server::random_host_key(), stop.clone())
        .await
        .unwrap();
    let _g = stop.drop_guard();
    let mut h = start(worker_bin(), limits(10, 4)).await;
    h.send(In::Dispatch(dispatch(
        "slow",
        &d,
        &["show clock"],
        Strategy::Pinned,
    )))
    .await;
    h.started("slow").await;
    let agent = h.agent.clone();
    let shutdown = tokio::spawn(async move { agent.shutdown(Duration::from_secs(20)).await });
    let f = h.finished(1).await;
    assert!(ok(&f[0]), "the running job finished normally: {f:?}");
    assert_eq!(
        tokio::time::timeout(DEADLINE, shutdown)
            .await
            .unwrap()
            .unwrap(),
        0
    );
    assert_no_zombies().await;
}

#[tokio::test]
async fn kill_worker_escalates_to_sigkill_when_sigterm_is_ignored() {
    let (a, _ga) = device(Flavor::CiscoIos, "dev-a").await;
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let stubborn = script(
        dir.path(),
        "stubborn",
        &format!(
            "trap '' TERM\ntouch {}\nwhile :; do sleep 1; done",
            ready.display()
        ),
    );
    let mut h = start(stubborn, limits(10, 4)).await;
    let mut d = dispatch("s", &a, &["show clock"], Strategy::Pinned);
    d.timeout_seconds = 600;
    h.send(In::Dispatch(d)).await;
    h.started("s").await;
    // SIGTERM before the script has set its trap would kill it: wait until it has.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !ready.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the script never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.send(In::KillWorker(KillWorker {
        worker_id: String::new(),
        device: format!("127.0.0.1:{}", a.addr().port()),
    }))
    .await;
    // The job's end is published before the worker's exit.
    let f = h.finished(1).await;
    assert_eq!(kind(&f[0]), ErrorKind::WorkerExited, "{f:?}");
    let exited = h.worker_event(|w| w.state() == WorkerState::Exited).await;
    assert_eq!(exited.last_exit_code, 128 + 9, "{exited:?}");
    assert_eq!(h.agent.shutdown(Duration::from_secs(5)).await, 0);
    assert_no_zombies().await;
}

#[tokio::test]
async fn health_says_serving_while_up_and_ready_only_while_the_node_takes_jobs() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let h = start(worker_bin(), limits(10, 4)).await;
    let channel = tonic::transport::Channel::from_shared(h.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut status = async |service: &str| {
        health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status()
    };
    assert_eq!(status("").await, ServingStatus::Serving);
    let ready = node_agent::READY_SERVICE;
    assert_eq!(status(ready).await, ServingStatus::Serving);
    use node_agent::agent::Admission;
    for (admission, want, draining) in [
        (
            Admission::Fenced("lease lost".into()),
            ServingStatus::NotServing,
            false,
        ),
        (Admission::Open, ServingStatus::Serving, false),
        // Shutting down counts as draining in the load managers read.
        (Admission::ShuttingDown, ServingStatus::NotServing, true),
        (Admission::Open, ServingStatus::Serving, false),
    ] {
        h.agent.set_admission(admission);
        assert_eq!(h.agent.load().draining, draining);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while status(ready).await != want {
            assert!(tokio::time::Instant::now() < deadline, "never {want:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(status("").await, ServingStatus::Serving);
}
