//! Prometheus metrics of the manager and the node agent, scraped over HTTP from the real
//! processes while jobs of every kind run: the values follow what happened.

use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster};
use integration_tests::{sample, scrape};
use netpulse_proto::api::{JobStatus, Strategy};
use nix::sys::signal::Signal;

/// Scrapes until `series` reaches `at_least` (values settle a moment after a job's answer).
async fn wait_for(addr: &str, series: &str, at_least: f64) -> String {
    wait_until(addr, series, |v| v >= at_least).await
}

async fn wait_until(addr: &str, series: &str, ok: impl Fn(f64) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(addr).await.unwrap();
        if sample(&text, series).is_some_and(&ok) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never got there:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn manager_and_agent_metrics_follow_the_jobs() {
    let mut c = TestCluster::start(Options {
        metrics: true,
        ..Default::default()
    })
    .await
    .unwrap();
    c.wait_nodes(0, 1).await.unwrap();
    let manager = c.managers[0].metrics.clone().unwrap();
    let agent = c.agents[0].metrics.clone().unwrap();
    let mut jobs = c.jobs(0).await.unwrap();

    // Three pinned jobs on one device (the first connects; keepalives every second), a rejected
    // command, and one fifo job on another device.
    for _ in 0..3 {
        let mut req = c.request(0, &["show clock"]);
        req.wait = true;
        req.connection.as_mut().unwrap().keepalive_seconds = 1;
        let j = jobs.execute(req).await.unwrap().into_inner();
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    }
    let mut bad = c.request(0, &["bogus words"]);
    bad.wait = true;
    let j = jobs.execute(bad).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Failed, "{j:?}");
    let mut fifo = c.request(1, &["show version"]);
    fifo.wait = true;
    fifo.strategy = Strategy::Fifo as i32;
    let j = jobs.execute(fifo).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");

    let m = wait_for(
        &manager,
        r#"netpulse_jobs_finished_total{strategy="fifo",status="succeeded"}"#,
        1.0,
    )
    .await;
    let at = |text: &str, series: &str| {
        sample(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert_eq!(
        at(&m, r#"netpulse_jobs_submitted_total{strategy="pinned"}"#),
        4.0
    );
    assert_eq!(
        at(
            &m,
            r#"netpulse_jobs_finished_total{strategy="pinned",status="succeeded"}"#
        ),
        3.0
    );
    assert_eq!(
        at(
            &m,
            r#"netpulse_jobs_finished_total{strategy="pinned",status="failed"}"#
        ),
        1.0
    );
    assert_eq!(
        at(
            &m,
            r#"netpulse_job_duration_seconds_count{strategy="pinned"}"#
        ),
        4.0
    );
    assert_eq!(at(&m, "netpulse_nodes_alive"), 1.0);
    assert_eq!(at(&m, "netpulse_jobs_active"), 0.0);
    assert!(at(&m, "netpulse_store_puts_total") >= 5.0, "{m}");
    assert_eq!(at(&m, r#"netpulse_node_queued_jobs{node="node-1"}"#), 0.0);

    // The agent: jobs by outcome, session reuse, connection set-up, commands, workers.
    let a = wait_for(
        &agent,
        r#"netpulse_agent_worker_exits_total{strategy="fifo",code="0"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        at(
            &a,
            r#"netpulse_agent_jobs_finished_total{strategy="pinned",outcome="ok"}"#
        ),
        3.0
    );
    assert_eq!(
        at(
            &a,
            r#"netpulse_agent_jobs_finished_total{strategy="pinned",outcome="failed"}"#
        ),
        1.0
    );
    assert_eq!(
        at(
            &a,
            r#"netpulse_agent_jobs_session_reused_total{strategy="pinned"}"#
        ),
        3.0,
        "every pinned job after the first reused the session"
    );
    assert_eq!(
        at(
            &a,
            r#"netpulse_agent_connect_seconds_count{strategy="pinned"}"#
        ),
        1.0
    );
    assert_eq!(
        at(
            &a,
            r#"netpulse_agent_connect_seconds_count{strategy="fifo"}"#
        ),
        1.0
    );
    assert!(
        at(
            &a,
            r#"netpulse_agent_command_seconds_count{strategy="pinned"}"#
        ) >= 4.0
    );
    assert_eq!(
        at(
            &a,
            r#"netpulse_agent_worker_spawns_total{strategy="pinned"}"#
        ),
        1.0
    );
    assert_eq!(at(&a, r#"netpulse_agent_workers{strategy="pinned"}"#), 1.0);
    assert_eq!(at(&a, "netpulse_agent_queued_jobs"), 0.0);

    // Keepalives run every second on the pinned session.
    let a = wait_for(&agent, "netpulse_agent_keepalive_rtt_seconds_count", 1.0).await;
    assert_eq!(at(&a, "netpulse_agent_keepalive_failures_total"), 0.0);

    // A killed worker shows as an exit by signal 9 (code 137) with its lifetime.
    let pid = c
        .admin(0)
        .await
        .unwrap()
        .list_workers(netpulse_proto::api::ListWorkersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workers
        .into_iter()
        .find(|w| w.state != "exited")
        .expect("the pinned worker")
        .pid;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let a = wait_for(
        &agent,
        r#"netpulse_agent_worker_exits_total{strategy="pinned",code="137"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        at(
            &a,
            r#"netpulse_agent_worker_lifetime_seconds_count{strategy="pinned"}"#
        ),
        1.0
    );
    // Gauges are read from the table a moment before the counters are encoded.
    wait_until(
        &agent,
        r#"netpulse_agent_workers{strategy="pinned"}"#,
        |v| v == 0.0,
    )
    .await;
    c.shutdown().await;
}
