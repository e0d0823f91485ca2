//! Where pinned devices go, with real agents: a burst spreads evenly over equal nodes, and a
//! full node gives the place of its least recently used idle worker to a new device.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster, bulk_request, is_final};
use netpulse_proto::api::*;
use tokio::time::Instant;

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_300_devices_lands_within_ten_percent_of_even_on_three_nodes() {
    let c = TestCluster::start(Options {
        agents: 3,
        devsim: vec!["--devices".into(), "cisco_ios=300".into()],
        max_pinned_workers: 200,
        manager_log: "info".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for done in bulk_to_the_end(&c).await {
        *per_node.entry(done.node_id).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(
        per_node.values().all(|n| (90..=110).contains(n)),
        "{per_node:?}"
    );
}

/// One `show clock` on every simulated device in a bulk; each job succeeded.
async fn bulk_to_the_end(c: &TestCluster) -> Vec<Job> {
    let bulk = bulk_request(c.request(0, &["show clock"]), &c.devsim.devices);
    let resp = c
        .jobs(0)
        .await
        .unwrap()
        .execute_bulk(c.authed(bulk))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    let mut done = Vec::new();
    for j in &resp.jobs {
        let d = c.wait_job(0, &j.id, LIMIT, is_final).await;
        assert_eq!(d.status(), JobStatus::Succeeded, "{d:?}");
        done.push(d);
    }
    done
}

async fn run(c: &TestCluster, device: usize) -> Job {
    let mut r = c.request(device, &["show clock"]);
    r.wait = true;
    let j = c
        .jobs(0)
        .await
        .unwrap()
        .execute(c.authed(r))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    j
}

/// The live worker of each device port.
async fn live_workers(c: &TestCluster) -> BTreeMap<u32, Worker> {
    c.admin(0)
        .await
        .unwrap()
        .list_workers(c.authed(ListWorkersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .workers
        .into_iter()
        .filter(|w| w.state != "exited" && w.pid > 0)
        .map(|w| (w.port, w))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_gives_its_least_recently_used_idle_worker_to_a_new_device() {
    let c = TestCluster::start(Options {
        max_pinned_workers: 2,
        devsim: vec!["--devices".into(), "cisco_ios=3".into()],
        metrics: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let port = |i: usize| c.device(i).port as u32;
    // Two idle workers fill the node; device 0's was used longest ago.
    run(&c, 0).await;
    run(&c, 1).await;
    run(&c, 1).await;
    // The node's load shows both places taken (it is published every 2 s), so the manager
    // places device 2 there only because it has idle workers.
    let mut admin = c.admin(0).await.unwrap();
    let deadline = Instant::now() + LIMIT;
    while admin
        .list_nodes(c.authed(ListNodesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .nodes[0]
        .pinned_workers
        != 2
    {
        assert!(Instant::now() < deadline, "load never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = live_workers(&c).await;
    let kept = before[&port(1)].worker_id.clone();
    let j = run(&c, 2).await;
    assert!(j.queued_reason.is_empty(), "it did not wait: {j:?}");
    let deadline = Instant::now() + LIMIT;
    let after = loop {
        let w = live_workers(&c).await;
        if !w.contains_key(&port(0)) {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "device 0's worker never left: {w:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after[&port(1)].worker_id, kept, "the more recent one stays");
    assert!(after.contains_key(&port(2)));
    let metrics = integration_tests::scrape(c.agents[0].metrics.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        integration_tests::sample(&metrics, "netpulse_agent_pinned_evictions_total"),
        Some(1.0)
    );
    // Device 0 comes back: device 1's worker is now the least recently used.
    run(&c, 0).await;
    let deadline = Instant::now() + LIMIT;
    while live_workers(&c).await.contains_key(&port(1)) {
        assert!(Instant::now() < deadline, "device 1's worker never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.assert_no_zombies().await;
}

/// A bulk over 200 devices behind one prefix with a login limit of 40 per second: the logins
/// (the gate's admissions, by the times in the agent's log) come at that pace instead of all
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_logs_in_at_the_paces_limit() {
    const RATE: usize = 40;
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=200".into()],
        max_pinned_workers: 300,
        manager_log: "info".into(),
        agent_log: "info,node_agent::places=debug".into(),
        agent_args: vec!["--login-limit".into(), format!("127.0.0.0/8={RATE}")],
        ..Default::default()
    })
    .await
    .unwrap();
    bulk_to_the_end(&c).await;
    let log = std::fs::read_to_string(&c.agents[0].log).unwrap();
    let mut starts: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("login admitted"))
        .filter_map(|l| {
            let plain: String = strip_ansi(l);
            let ts = plain.split_whitespace().next()?;
            // 2026-12-02T10:06:16.706238Z: seconds of the day are enough within one test.
            let t = ts.split('T').nth(1)?.trim_end_matches('Z');
            let mut hms = t.split(':').map(|x| x.parse::<f64>().ok());
            Some(hms.next()?? * 3600.0 + hms.next()?? * 60.0 + hms.next()??)
        })
        .collect();
    assert_eq!(starts.len(), 200, "logins admitted in the agent's log");
    starts.sort_by(f64::total_cmp);
    let span = starts[199] - starts[0];
    // 200 logins at 40/s take at least 199/40 s; unpaced they start within a second.
    assert!(span >= 4.9, "200 logins within {span:.2} s");
    // The gate holds every second to the rate (`logins.rs` tests it exactly); a log line's time
    // is taken just after the admission, so a second of the log may hold one or two more.
    for (i, t) in starts.iter().enumerate() {
        let in_a_second = starts[i..].iter().take_while(|s| **s < t + 1.0).count();
        assert!(
            in_a_second <= RATE + 2,
            "{in_a_second} logins in the second from {t}"
        );
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
