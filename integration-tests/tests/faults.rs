//! The whole system under faults, with real processes (etcd, devsim, node agent, manager,
//! workers). Each test checks that every accepted job ends in a final status with a reason and
//! that no worker process is left behind. (Node agent and manager deaths are in
//! `manager/tests/failover.rs`.)

use std::time::Duration;

use integration_tests::Devsim;
use integration_tests::cluster::{
    Options, Signal, TestCluster, is_final, proc_state, workspace_bin,
};
use netpulse_proto::api::*;
use tokio::time::Instant;
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(60);

/// Waits until the process is gone (reaped by its parent); a zombie fails the test.
async fn gone(pid: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some((state, _)) = proc_state(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still there in state {state} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn one_device() -> Options {
    Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        ..Default::default()
    }
}

fn signal(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

async fn worker_of(c: &TestCluster, device: usize) -> Worker {
    let port = c.device(device).port as u32;
    let deadline = Instant::now() + LIMIT;
    loop {
        let workers = c
            .admin(0)
            .await
            .unwrap()
            .list_workers(c.authed(ListWorkersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .workers;
        if let Some(w) = workers
            .into_iter()
            .find(|w| w.port == port && w.state != "exited" && w.pid > 0)
        {
            return w;
        }
        assert!(
            Instant::now() < deadline,
            "no live worker for device {device}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(c: &TestCluster, mut r: ExecuteRequest) -> Job {
    r.wait = true;
    c.jobs(0)
        .await
        .unwrap()
        .execute(c.authed(r))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_only_its_running_job_and_the_next_job_reconnects() {
    let c = TestCluster::start(one_device()).await.unwrap();
    let show = c.request(0, &["show clock"]);
    assert_eq!(run(&c, show.clone()).await.status(), JobStatus::Succeeded);

    // While idle.
    let w = worker_of(&c, 0).await;
    signal(w.pid as u32, Signal::SIGKILL);
    gone(w.pid).await;
    let j = run(&c, show.clone()).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    assert!(!j.session_reused, "a new worker, a new session");

    // While running a job.
    let mut hang = c.request(0, &["debug hang"]);
    hang.timeout_seconds = 300;
    let running = c
        .jobs(0)
        .await
        .unwrap()
        .execute(c.authed(hang))
        .await
        .unwrap()
        .into_inner();
    c.wait_job(0, &running.id, LIMIT, |j| j.status() == JobStatus::Running)
        .await;
    let w = worker_of(&c, 0).await;
    signal(w.pid as u32, Signal::SIGKILL);
    let failed = c.wait_job(0, &running.id, LIMIT, is_final).await;
    assert_eq!(failed.status(), JobStatus::Failed);
    let e = failed.error.unwrap();
    assert_eq!(e.kind, "worker_exited", "{}", e.message);
    gone(w.pid).await;
    let j = run(&c, show).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    assert!(!j.session_reused);
    c.assert_no_zombies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_and_dropping_devices_are_detected_and_the_next_job_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let base = integration_tests::etcd::free_port();
    let devsim_args = vec![
        "--devices".to_string(),
        "cisco_ios=1".into(),
        "--base-port".into(),
        base.to_string(),
        "--host-key".into(),
        dir.path().join("host_key").display().to_string(),
    ];
    let mut c = TestCluster::start(Options {
        devsim: devsim_args.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut show = c.request(0, &["show clock"]);
    show.connection.as_mut().unwrap().keepalive_seconds = 1;
    assert_eq!(run(&c, show.clone()).await.status(), JobStatus::Succeeded);

    // Frozen: the application keepalive gets no prompt back.
    let w = worker_of(&c, 0).await;
    let devsim_pid = c.devsim.child.id().unwrap();
    let frozen_at = Instant::now();
    signal(devsim_pid, Signal::SIGSTOP);
    gone(w.pid).await;
    let detected = frozen_at.elapsed();
    signal(devsim_pid, Signal::SIGCONT);
    eprintln!("frozen device detected after {detected:?} (keepalive 1 s + reply timeout 5 s)");
    assert!(detected < Duration::from_secs(1 + 5 + 2), "{detected:?}");
    let j = run(&c, show.clone()).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    assert!(!j.session_reused);

    // Dropping: the device goes away (every session closed) and comes back.
    let w = worker_of(&c, 0).await;
    let dropped_at = Instant::now();
    let _ = c.devsim.child.start_kill();
    let _ = c.devsim.child.wait().await;
    gone(w.pid).await;
    let detected = dropped_at.elapsed();
    eprintln!("dropped connection detected after {detected:?}");
    assert!(detected < Duration::from_secs(3), "{detected:?}");
    c.devsim = Devsim::start(&workspace_bin("devsim"), &devsim_args)
        .await
        .unwrap();
    let j = run(&c, show).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    assert!(!j.session_reused);
    c.assert_no_zombies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_fails_submits_fast_and_the_cluster_recovers_by_itself() {
    let mut c = TestCluster::start(one_device()).await.unwrap();
    let show = c.request(0, &["show clock"]);
    assert_eq!(run(&c, show.clone()).await.status(), JobStatus::Succeeded);

    c.etcd.stop().await;
    let mut jobs = c.jobs(0).await.unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let r = jobs.execute(c.authed(show.clone())).await;
        let took = t.elapsed();
        let e = r.expect_err("no job is accepted without etcd");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(took < Duration::from_secs(6), "submit took {took:?}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // the outage lasts a few seconds
    c.etcd.start_again().await;

    let deadline = Instant::now() + LIMIT;
    let j = loop {
        let mut r = show.clone();
        r.wait = true;
        match jobs.execute(c.authed(r)).await {
            Ok(j) => break j.into_inner(),
            Err(e) => assert!(
                Instant::now() < deadline,
                "the cluster did not recover within {LIMIT:?}: {e:?}; logs in {}",
                c.dir.display()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    let got = c.wait_job(0, &j.id, LIMIT, |_| true).await;
    assert_eq!(
        got.status(),
        JobStatus::Succeeded,
        "recorded after recovery"
    );
    c.assert_no_zombies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_capacity_is_refused_clearly_and_every_accepted_job_ends() {
    let c = TestCluster::start(Options {
        devsim: vec![
            "--devices".into(),
            "cisco_ios=2".into(),
            "--login-delay-ms".into(),
            "300".into(),
        ],
        manager_args: vec!["--max-active-jobs".into(), "20".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let jobs = c.jobs(0).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let mut client = jobs.clone();
        let req = c.authed(c.request(i % 2, &["show clock"]));
        set.spawn(async move { client.execute(req).await });
    }
    let (mut accepted, mut refused) = (Vec::new(), 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(j) => accepted.push(j.into_inner().id),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("max_active_jobs"), "{}", e.message());
                refused += 1;
            }
        }
    }
    assert!(
        !accepted.is_empty() && refused > 0,
        "{} accepted, {refused} refused",
        accepted.len()
    );
    for id in &accepted {
        let j = c.wait_job(0, id, LIMIT, is_final).await;
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.managers[0].pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kib < 200 * 1024, "manager RSS {rss_kib} KiB");
    assert_eq!(
        run(&c, c.request(0, &["show clock"])).await.status(),
        JobStatus::Succeeded
    );
    c.assert_no_zombies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_code_every_time_and_the_server_keeps_serving() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        tokens: vec!["sweep-token".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let good = c.request(0, &["show clock"]);
    let mut cases: Vec<(&str, ExecuteRequest, Code)> = Vec::new();
    let mut bad = |name: &'static str, code: Code, f: &dyn Fn(&mut ExecuteRequest)| {
        let mut r = good.clone();
        f(&mut r);
        cases.push((name, r, code));
    };
    bad("port", Code::InvalidArgument, &|r| {
        r.connection.as_mut().unwrap().port = 70_000
    });
    bad("keepalive", Code::InvalidArgument, &|r| {
        r.connection.as_mut().unwrap().keepalive_seconds = 4000
    });
    bad("timeout", Code::InvalidArgument, &|r| {
        r.timeout_seconds = 100_000
    });
    bad("device type", Code::InvalidArgument, &|r| {
        r.connection.as_mut().unwrap().device_type = "ios-xr".into()
    });
    bad("strategy", Code::InvalidArgument, &|r| r.strategy = 7);
    bad("empty command", Code::InvalidArgument, &|r| {
        r.commands = vec!["".into()]
    });
    bad("both", Code::InvalidArgument, &|r| {
        r.config = vec!["hostname x".into()]
    });
    bad("too many", Code::InvalidArgument, &|r| {
        r.commands = vec!["show clock".into(); 5000]
    });
    bad("too large", Code::InvalidArgument, &|r| {
        r.commands = vec!["x".repeat(4000); 600]
    });
    bad("no connection", Code::InvalidArgument, &|r| {
        r.connection = None
    });
    for (name, r, code) in cases.clone() {
        let e = jobs.execute(c.authed(r)).await.expect_err(name);
        assert_eq!(e.code(), code, "{name}: {e:?}");
        assert!(!e.message().is_empty(), "{name}");
    }
    // The same requests over one ExecuteStream: each refused with the same code, and the
    // stream goes on; then one beyond the message limit ends the stream with an error.
    let mut huge = good.clone();
    huge.commands = vec!["y".repeat(1 << 20); 5];
    let requests = cases
        .iter()
        .map(|(_, r, _)| r.clone())
        .chain([huge.clone()]);
    let mut answers = jobs
        .execute_stream(c.authed(tokio_stream::iter(requests.collect::<Vec<_>>())))
        .await
        .unwrap()
        .into_inner();
    let limit = Duration::from_secs(30);
    for (i, (name, _, code)) in cases.iter().enumerate() {
        let a = tokio::time::timeout(limit, answers.message())
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer within {limit:?}"))
            .expect(name)
            .expect(name);
        assert_eq!(a.index, i as u64, "{name}");
        match a.outcome {
            Some(streamed_job::Outcome::Refused(r)) => {
                assert_eq!(r.code, *code as i32, "{name}: {r:?}");
                assert!(!r.message.is_empty(), "{name}");
            }
            o => panic!("{name}: {o:?}"),
        }
    }
    let end = tokio::time::timeout(limit, answers.message())
        .await
        .expect("the stream ends within 30 s");
    assert!(
        end.as_ref().is_err_and(|e| matches!(
            e.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        )),
        "a message beyond the limit ends the stream: {end:?}"
    );
    let e = jobs
        .execute(tonic::Request::new(good.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = jobs
        .get_job(c.authed(GetJobRequest {
            id: "ffffffffffffffffffffffffffff".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = jobs
        .list_jobs(c.authed(ListJobsRequest {
            page_token: "nope".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = jobs
        .list_jobs(c.authed(ListJobsRequest {
            page_size: 5000,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Beyond the transport's message limit (4 MiB): refused before it is decoded.
    let e = jobs.execute(c.authed(huge)).await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{e:?}"
    );
    // Still serving.
    assert_eq!(run(&c, good).await.status(), JobStatus::Succeeded);
    c.assert_no_zombies().await;
}

/// A sample of an agent's metrics, 0 when absent.
async fn agent_sample(c: &TestCluster, series: &str) -> f64 {
    let addr = c.agents[0].metrics.as_deref().expect("metrics are on");
    integration_tests::scrape(addr)
        .await
        .ok()
        .and_then(|t| integration_tests::sample(&t, series))
        .unwrap_or(0.0)
}

/// One job per device, five commands of 1.5 s each (they outlast the pauses below), all
/// RUNNING when this returns.
async fn start_long_jobs(c: &TestCluster) -> Vec<String> {
    let mut jobs = c.jobs(0).await.unwrap();
    let mut ids = Vec::new();
    for d in 0..3 {
        let r = c.request(d, &["show clock"; 5]);
        ids.push(jobs.execute(c.authed(r)).await.unwrap().into_inner().id);
    }
    for id in &ids {
        c.wait_job(0, id, LIMIT, |j| j.status() == JobStatus::Running)
            .await;
    }
    ids
}

async fn wait_lease_lost(c: &TestCluster, times: f64) {
    let deadline = Instant::now() + LIMIT;
    while agent_sample(c, "netpulse_agent_lease_lost_total").await < times {
        assert!(
            Instant::now() < deadline,
            "the agent never noticed the lost lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_succeeded(c: &TestCluster, ids: &[String]) {
    for id in ids {
        let j = c.wait_job(0, id, LIMIT, is_final).await;
        assert_eq!(
            j.status(),
            JobStatus::Succeeded,
            "{j:?}; logs in {}",
            c.dir.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_running_through_a_lapsed_lease_finish_and_none_runs_twice() {
    let mut c = TestCluster::start(Options {
        devsim: vec![
            "--devices".into(),
            "cisco_ios=3".into(),
            "--command-delay-ms".into(),
            "1500".into(),
        ],
        metrics: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // etcd frozen past the agent's 3 s TTL: the agent fences itself and registers again when
    // etcd is back, while its workers run on.
    let ids = start_long_jobs(&c).await;
    let etcd = c.etcd.child.id().expect("etcd runs");
    signal(etcd, Signal::SIGSTOP);
    wait_lease_lost(&c, 1.0).await;
    signal(etcd, Signal::SIGCONT);
    assert_succeeded(&c, &ids).await;
    // The agent frozen past its TTL: etcd expires the lease and the node record goes, so the
    // manager sees the node leave; it comes back within the grace.
    let more = start_long_jobs(&c).await;
    c.agents[0].signal(Signal::SIGSTOP);
    let mut nodes = c.admin(0).await.unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        let listed = nodes
            .list_nodes(c.authed(ListNodesRequest::default()))
            .await
            .map(|r| r.into_inner().nodes.len());
        if listed.is_ok_and(|n| n == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the node record never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The manager's sweep has seen the node gone with the jobs running.
    while !c.logs().contains("they wait for it to register again") {
        assert!(
            Instant::now() < deadline,
            "the manager never missed the node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.agents[0].signal(Signal::SIGCONT);
    wait_lease_lost(&c, 2.0).await;
    assert_succeeded(&c, &more).await;
    let ran = agent_sample(
        &c,
        "netpulse_agent_jobs_finished_total{strategy=\"pinned\",outcome=\"ok\"}",
    )
    .await;
    assert_eq!(ran, 6.0, "each job ran once");
    c.assert_no_zombies().await;
    c.shutdown().await;
}
