//! Replicas, restarts and node death, with real processes: no accepted job is lost.

use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster};
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

/// Polls `GetJob` on `manager` until `done` holds (at most `limit`); returns the job.
async fn until(
    c: &TestCluster,
    manager: usize,
    id: &str,
    limit: Duration,
    done: impl Fn(&Job) -> bool,
) -> Job {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(mut jobs) = c.jobs(manager).await
            && let Ok(j) = jobs
                .get_job(c.authed(GetJobRequest { id: id.into() }))
                .await
        {
            let j = j.into_inner();
            if done(&j) {
                return j;
            }
            last = Some(j);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "job {id} did not reach the expected state within {limit:?}; last seen {last:?}; logs in {}",
        c.dir.path().display()
    )
}

fn is_final(j: &Job) -> bool {
    matches!(
        j.status(),
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired
    )
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
    let seen = until(&c, 1, &ids[0], Duration::from_secs(10), |_| true).await;
    assert!(!is_final(&seen), "still waiting for the login: {seen:?}");
    c.managers[0].kill9().await;
    for id in &ids {
        let j = until(&c, 1, id, Duration::from_secs(60), is_final).await;
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
        let j = until(&c, 0, id, Duration::from_secs(60), is_final).await;
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
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let mut hang = c.request(0, &["debug hang"]);
    hang.timeout_seconds = 300;
    let running = jobs.execute(c.authed(hang)).await.unwrap().into_inner();
    let running = until(&c, 0, &running.id, Duration::from_secs(30), |j| {
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
    let expired = until(&c, 0, &impatient.id, Duration::from_secs(20), is_final).await;
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
    c.agents[index].kill9().await;

    let failed = until(&c, 0, &running.id, Duration::from_secs(30), is_final).await;
    assert_eq!(failed.status(), JobStatus::Failed);
    let e = failed.error.unwrap();
    assert_eq!(e.kind, "node_lost");
    assert!(e.message.contains(&dead), "{}", e.message);
    for id in &queued {
        let j = until(&c, 0, id, Duration::from_secs(60), is_final).await;
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
        assert_ne!(j.node_id, dead, "re-placed on the live node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_nodes_and_no_nodes_are_refused_at_once_with_the_reason() {
    let mut c = TestCluster::start(Options {
        max_pinned_workers: 1,
        devsim: vec!["--devices".into(), "cisco_ios=2".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let mut first = c.request(0, &["show clock"]);
    first.wait = true;
    let j = jobs.execute(c.authed(first)).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded);
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
    let e = jobs
        .execute(c.authed(c.request(1, &["show clock"])))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(
        e.message().contains("max_pinned_workers"),
        "{}",
        e.message()
    );

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
