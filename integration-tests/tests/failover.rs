//! Replicas, restarts and node death, with real processes: no accepted job is lost.

use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster, is_final, proc_state};
use netpulse_proto::api::*;
use tokio::time::Instant;

fn slow_devices(devices: &str, login_ms: u32) -> Vec<String> {
    vec![
        "--devices".into(),
        devices.into(),
        "--login-delay-ms".into(),
        login_ms.to_string(),
    ]
}

async fn submit(c: &TestCluster, manager: usize, device: usize, n: usize) -> Vec<String> {
    let mut jobs = c.jobs(manager).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = c.request(device, &["show clock"]);
        ids.push(jobs.execute(c.authed(r)).await.unwrap().into_inner().id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_answer_for_each_other_and_take_over_a_dead_or_restarted_ones_jobs() {
    let mut c = TestCluster::start(Options {
        managers: 2,
        devsim: slow_devices("cisco_ios=3", 1500),
        ..Default::default()
    })
    .await
    .unwrap();

    // Jobs accepted by manager-1, which dies while they wait for the devices' slow logins.
    let mut ids = submit(&c, 0, 0, 3).await;
    ids.extend(submit(&c, 0, 1, 3).await);
    let seen = c
        .wait_job(1, &ids[0], Duration::from_secs(10), |_| true)
        .await;
    assert!(!is_final(&seen), "still waiting for the login: {seen:?}");
    c.managers[0].kill9().await;
    for id in &ids {
        let j = c.wait_job(1, id, Duration::from_secs(60), is_final).await;
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    }

    // manager-1 comes back; manager-2 dies with queued jobs and restarts under its id.
    c.managers[0] = c.spawn_manager("manager-1").unwrap();
    c.wait_nodes(0, 1).await.unwrap();
    let ids = submit(&c, 1, 2, 4).await;
    c.managers[1].kill9().await;
    c.managers[1] = c.spawn_manager("manager-2").unwrap();
    c.wait_nodes(1, 1).await.unwrap();
    let mut ended = Vec::new();
    for id in &ids {
        let j = c.wait_job(0, id, Duration::from_secs(60), is_final).await;
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
        ended.push((j.started_unix_ms, j.ended_unix_ms));
    }
    // Each ran once, in order, on the device's one session.
    for w in ended.windows(2) {
        assert!(w[0].1 <= w[1].0, "{ended:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_queued_jobs_move_and_its_running_job_fails_with_the_reason() {
    let mut c = TestCluster::start(Options {
        agents: 2,
        devsim: slow_devices("cisco_ios=1", 500),
        // The dead node's running job fails once the node has been gone this long.
        manager_args: vec!["--node-lost-grace-seconds".into(), "2".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let mut hang = c.request(0, &["debug hang"]);
    hang.timeout_seconds = 300;
    let running = jobs.execute(c.authed(hang)).await.unwrap().into_inner();
    let running = c
        .wait_job(0, &running.id, Duration::from_secs(30), |j| {
            j.status() == JobStatus::Running
        })
        .await;
    let queued = submit(&c, 0, 0, 3).await;
    // Queued behind the hung job longer than its queue timeout: it expires, with the reason.
    let mut impatient = c.request(0, &["show clock"]);
    impatient.queue_timeout_seconds = 1;
    let impatient = jobs
        .execute(c.authed(impatient))
        .await
        .unwrap()
        .into_inner();
    let expired = c
        .wait_job(0, &impatient.id, Duration::from_secs(20), is_final)
        .await;
    assert_eq!(expired.status(), JobStatus::Expired);
    assert!(
        expired
            .error
            .unwrap()
            .message
            .contains("queue_timeout_seconds (1s)")
    );
    let dead = running.node_id.clone();
    let index = c.agents.iter().position(|a| a.name == dead).unwrap();
    let orphans: Vec<u64> = c
        .admin(0)
        .await
        .unwrap()
        .list_workers(c.authed(ListWorkersRequest {
            node_id: dead.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .workers
        .iter()
        .map(|w| w.pid)
        .filter(|p| *p > 0)
        .collect();
    assert!(!orphans.is_empty());
    c.agents[index].kill9().await;

    let failed = c
        .wait_job(0, &running.id, Duration::from_secs(30), is_final)
        .await;
    assert_eq!(failed.status(), JobStatus::Failed);
    let e = failed.error.unwrap();
    assert_eq!(e.kind, "node_lost");
    assert!(e.message.contains(&dead), "{}", e.message);
    assert!(e.message.contains("within 2s"), "{}", e.message);
    for id in &queued {
        let j = c.wait_job(0, id, Duration::from_secs(60), is_final).await;
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
        assert_ne!(j.node_id, dead, "re-placed on the live node");
    }
    // The dead agent's workers saw their stdin close and exited (no worker runs on).
    let deadline = Instant::now() + Duration::from_secs(20);
    for pid in orphans {
        while let Some((state, _)) = proc_state(pid).filter(|(s, _)| *s != 'Z') {
            assert!(
                Instant::now() < deadline,
                "worker {pid} outlived its agent (state {state})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    c.assert_no_zombies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_of_busy_workers_makes_jobs_wait_with_the_reason_and_no_node_refuses() {
    let mut c = TestCluster::start(Options {
        max_pinned_workers: 1,
        devsim: vec!["--devices".into(), "cisco_ios=2".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    // The node's one pinned place is busy.
    let mut hang = c.request(0, &["debug hang"]);
    hang.timeout_seconds = 300;
    let busy = jobs.execute(c.authed(hang)).await.unwrap().into_inner();
    c.wait_job(0, &busy.id, Duration::from_secs(30), |j| {
        j.status() == JobStatus::Running
    })
    .await;
    // The node's record shows its one pinned device (load is published every 2 s).
    let mut admin = c.admin(0).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = admin
            .list_nodes(c.authed(ListNodesRequest {}))
            .await
            .unwrap()
            .into_inner()
            .nodes;
        if nodes[0].pinned_workers == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "load never published: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another device waits for a place within its queue timeout, and says why.
    let mut other = c.request(1, &["show clock"]);
    other.queue_timeout_seconds = 2;
    let waiting = jobs.execute(c.authed(other)).await.unwrap().into_inner();
    assert_eq!(waiting.status(), JobStatus::Queued);
    assert!(
        waiting.queued_reason.contains("max_pinned_workers"),
        "{waiting:?}"
    );
    let expired = c
        .wait_job(0, &waiting.id, Duration::from_secs(20), is_final)
        .await;
    assert_eq!(expired.status(), JobStatus::Expired, "{expired:?}");
    let e = expired.error.unwrap();
    assert!(
        e.message.contains("queue_timeout_seconds (2s)")
            && e.message.contains("it waited because")
            && e.message.contains("busy pinned workers"),
        "{}",
        e.message
    );
    jobs.cancel_job(c.authed(CancelJobRequest {
        id: busy.id.clone(),
    }))
    .await
    .unwrap();

    c.agents[0].kill9().await;
    c.wait_nodes(0, 0).await.unwrap();
    let e = jobs
        .execute(c.authed(c.request(0, &["show clock"])))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message().contains("no node agent is live"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_nodes_idle_devices_move_and_excess_requests_are_shed() {
    let c = TestCluster::start(Options {
        agents: 2,
        devsim: vec!["--devices".into(), "cisco_ios=2".into()],
        manager_args: vec![
            "--max-concurrent-requests".into(),
            "2".into(),
            "--request-timeout-seconds".into(),
            "3".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let mut r = c.request(0, &["show clock"]);
    r.wait = true;
    let before = jobs
        .execute(c.authed(r.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut admin = c.admin(0).await.unwrap();
    let moved = admin
        .drain_node(c.authed(DrainNodeRequest {
            node_id: before.node_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.devices_moved, 1);
    let after = jobs.execute(c.authed(r)).await.unwrap().into_inner();
    assert_eq!(after.status(), JobStatus::Succeeded, "{after:?}");
    assert_ne!(
        after.node_id, before.node_id,
        "the device moved off the drained node"
    );
    assert!(!after.session_reused);
    let e = admin
        .drain_node(c.authed(DrainNodeRequest {
            node_id: "nope".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Two waiting requests hold the manager's two slots; another request is shed, not queued.
    // A poll can race a holder for the last slot, so a shed holder is simply sent again.
    let holder = jobs.clone();
    let hang = || {
        let mut h = c.request(1, &["debug hang"]);
        h.strategy = Strategy::Fifo as i32;
        h.timeout_seconds = 300;
        h.wait = true;
        let mut client = holder.clone();
        let req = c.authed(h);
        tokio::spawn(async move { client.execute(req).await })
    };
    let mut holders = vec![hang(), hang()];
    let deadline = Instant::now() + Duration::from_secs(30);
    let shed = loop {
        let r = jobs
            .get_job(c.authed(GetJobRequest {
                id: before.id.clone(),
            }))
            .await;
        if let Err(e) = r
            && e.code() == tonic::Code::ResourceExhausted
            && holders.iter().all(|h| !h.is_finished())
        {
            break e;
        }
        for h in holders.iter_mut() {
            if h.is_finished() {
                *h = hang();
            }
        }
        assert!(Instant::now() < deadline, "no request was shed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        shed.message().contains("max-concurrent-requests"),
        "{}",
        shed.message()
    );
    // A call that outlives the request timeout ends with it; the job goes on, watchable.
    let mut outlives = None;
    for h in holders {
        match h.await.unwrap() {
            Err(e) if e.code() == tonic::Code::Cancelled => outlives = Some(e),
            other => assert!(
                matches!(&other, Err(e) if e.code() == tonic::Code::ResourceExhausted),
                "{other:?}"
            ),
        }
    }
    let e = outlives.expect("a holder ran into the request timeout");
    assert!(e.message().contains("Timeout expired"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_no_agent_acknowledged_run_exactly_once_after_a_manager_restart() {
    use integration_tests::cluster::Signal;
    let mut c = TestCluster::start(Options {
        agent_lease_ttl_seconds: 15,
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let mut warm = c.request(0, &["show clock"]);
    warm.wait = true;
    let first = jobs.execute(c.authed(warm)).await.unwrap().into_inner();
    assert_eq!(first.status(), JobStatus::Succeeded);

    // A frozen agent reads nothing: the dispatches wait in its socket, unacknowledged.
    c.agents[0].signal(Signal::SIGSTOP);
    let ids = submit(&c, 0, 0, 3).await;
    c.managers[0].kill9().await;
    c.managers[0] = c.spawn_manager("manager-1").unwrap();
    c.wait_nodes(0, 1).await.unwrap();
    c.agents[0].signal(Signal::SIGCONT);

    for id in &ids {
        let j = c.wait_job(0, id, Duration::from_secs(60), is_final).await;
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    }
    let mut admin = c.admin(0).await.unwrap();
    let workers = admin
        .list_workers(c.authed(ListWorkersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .workers;
    let w = workers.iter().find(|w| w.state != "exited").unwrap();
    assert_eq!(w.jobs_done, 4, "each job ran once: {workers:?}");
    assert!(c.logs().contains("adopted jobs of managers that are gone"));
}
