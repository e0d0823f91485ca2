//! The whole system through the public API: real etcd, the manager and node-agent binaries,
//! pinned-worker processes and devsim devices, all on loopback.

use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster};
use netpulse_proto::api::*;
use tokio::time::Instant;
use tonic::Code;

const TOKEN: &str = "e2e-token";

fn opts() -> Options {
    Options {
        tokens: vec![TOKEN.into()],
        // A login delay like a (fast) real device, so the fifo jobs' overlap is visible.
        devsim: vec![
            "--devices".into(),
            "cisco_ios=3,juniper_junos=1".into(),
            "--login-delay-ms".into(),
            "400".into(),
        ],
        password: "pw-e2e-7q3x".into(),
        secret: "en-e2e-9z4w".into(),
        ..Default::default()
    }
}

async fn watch_to_end(c: &TestCluster, manager: usize, id: &str) -> Vec<Job> {
    let mut jobs = c.jobs(manager).await.unwrap();
    let mut stream = jobs
        .watch_job(c.authed(WatchJobRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(j) = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("a watch update within 60 s")
        .unwrap()
    {
        seen.push(j);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_api_runs_pinned_and_fifo_jobs_end_to_end() {
    let c = TestCluster::start(opts()).await.unwrap();
    let mut jobs = c.jobs(0).await.unwrap();

    // Auth: no token or a wrong one is refused; health stays open.
    let r = jobs.get_job(GetJobRequest { id: "x".into() }).await;
    assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);
    let mut wrong = tonic::Request::new(ListJobsRequest::default());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        jobs.list_jobs(wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(c.channel(0).await.unwrap());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "netpulse.v1.JobService".into(),
        })
        .await
        .unwrap();
    assert_eq!(h.get_ref().status, 1, "SERVING");

    // Pinned: the first job connects, the second reuses the session.
    let mut first = c.request(0, &["show clock"]);
    first.wait = true;
    let j1 = jobs
        .execute(c.authed(first.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j1.status(), JobStatus::Succeeded, "{j1:?}");
    assert!(!j1.session_reused && j1.timings.as_ref().unwrap().connect_ms >= 300);
    assert!(j1.results[0].ok && !j1.results[0].output.is_empty());
    let j2 = jobs
        .execute(c.authed(first.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j2.status(), JobStatus::Succeeded);
    assert!(j2.session_reused && j2.timings.as_ref().unwrap().connect_ms == 0);
    assert_eq!(j1.worker_id, j2.worker_id);

    // Ordering per device: no-wait jobs run one after another in submit order.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut r = c.request(0, &["show clock", "show version"]);
        r.wait = false;
        let j = jobs.execute(c.authed(r)).await.unwrap().into_inner();
        assert_eq!(j.status(), JobStatus::Queued);
        ids.push(j.id);
    }
    let mut ended = Vec::new();
    for id in &ids {
        let seen = watch_to_end(&c, 0, id).await;
        let last = seen.last().unwrap();
        assert_eq!(last.status(), JobStatus::Succeeded, "{last:?}");
        ended.push((last.started_unix_ms, last.ended_unix_ms));
    }
    for w in ended.windows(2) {
        assert!(w[0].1 <= w[1].0, "jobs of one device overlap: {ended:?}");
    }

    // Fifo: fresh connections in parallel.
    let t0 = Instant::now();
    let mut fifo = Vec::new();
    for _ in 0..4 {
        let mut r = c.request(1, &["show clock"]);
        r.strategy = Strategy::Fifo as i32;
        r.wait = true;
        let mut client = jobs.clone();
        let req = c.authed(r);
        fifo.push(tokio::spawn(async move { client.execute(req).await }));
    }
    let mut spans = Vec::new();
    for f in fifo {
        let j = f.await.unwrap().unwrap().into_inner();
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
        assert!(!j.session_reused);
        spans.push((j.started_unix_ms, j.ended_unix_ms));
    }
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "fifo jobs did not run in parallel: {spans:?} ({:?} in all)",
        t0.elapsed()
    );

    // Config: accepted lines succeed; a rejected line fails the job with per-line detail.
    let mut cfg = c.request(2, &[]);
    cfg.config = vec!["interface Loopback7".into(), "description e2e".into()];
    cfg.wait = true;
    cfg.enable_mode = true;
    let j = jobs
        .execute(c.authed(cfg.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    cfg.config = vec!["hostname ok".into(), "bogus line here".into()];
    let j = jobs.execute(c.authed(cfg)).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Failed, "{j:?}");
    assert_eq!(j.results[1].status, "rejected");
    assert!(j.error.is_some());

    // Idempotency: a retried submit returns the same job.
    let mut once = c.request(0, &["show clock"]);
    once.idempotency_key = "e2e-once".into();
    once.wait = true;
    let a = jobs
        .execute(c.authed(once.clone()))
        .await
        .unwrap()
        .into_inner();
    let b = jobs.execute(c.authed(once)).await.unwrap().into_inner();
    assert_eq!(a.id, b.id);
    assert_eq!(b.status(), JobStatus::Succeeded);

    // Cancel a queued job, then the running one ahead of it; a second cancel says it has ended.
    let mut hang = c.request(3, &["show version", "debug hang"]);
    hang.timeout_seconds = 120;
    let j = jobs.execute(c.authed(hang)).await.unwrap().into_inner();
    let behind = jobs
        .execute(c.authed(c.request(3, &["show version"])))
        .await
        .unwrap()
        .into_inner();
    let dropped = jobs
        .cancel_job(c.authed(CancelJobRequest {
            id: behind.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dropped.status(), JobStatus::Canceled);
    assert!(dropped.results.is_empty(), "it never ran: {dropped:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let g = jobs
            .get_job(c.authed(GetJobRequest { id: j.id.clone() }))
            .await
            .unwrap()
            .into_inner();
        if g.status() == JobStatus::Running {
            break;
        }
        assert!(Instant::now() < deadline, "job never ran: {g:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let canceled = jobs
        .cancel_job(c.authed(CancelJobRequest { id: j.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(canceled.status(), JobStatus::Canceled);
    let again = jobs
        .cancel_job(c.authed(CancelJobRequest { id: j.id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // A waiting submit's job is recorded while it runs (within the sweep), so it is listed
    // and can be cancelled from outside; the waiting caller then gets the end.
    let mut slow = c.request(3, &["debug hang"]);
    slow.timeout_seconds = 120;
    slow.wait = true;
    let waiter = {
        let mut jobs = jobs.clone();
        let req = c.authed(slow);
        tokio::spawn(async move { jobs.execute(req).await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let running = jobs
            .list_jobs(c.authed(ListJobsRequest {
                status: JobStatus::Running as i32,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .jobs;
        if let Some(j) = running
            .into_iter()
            .find(|j| j.port == c.device(3).port as u32)
        {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "the waiting job was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    jobs.cancel_job(c.authed(CancelJobRequest {
        id: listed.id.clone(),
    }))
    .await
    .unwrap();
    let ended = waiter.await.unwrap().unwrap().into_inner();
    assert_eq!(
        (ended.id.as_str(), ended.status()),
        (listed.id.as_str(), JobStatus::Canceled)
    );

    // Bulk: one template, per-device overrides; a bad device is rejected with its reason.
    let template = c.request(0, &["show clock"]);
    let port = |i: usize| c.device(i).port as u32;
    let bulk = ExecuteBulkRequest {
        template: Some(template),
        devices: vec![
            DeviceOverride {
                connection: Some(Connection {
                    port: port(1),
                    ..Default::default()
                }),
                ..Default::default()
            },
            DeviceOverride {
                connection: Some(Connection {
                    port: 70_000,
                    ..Default::default()
                }),
                ..Default::default()
            },
            DeviceOverride {
                connection: Some(Connection {
                    port: port(2),
                    ..Default::default()
                }),
                commands: vec!["show version".into()],
                ..Default::default()
            },
        ],
    };
    let r = jobs
        .execute_bulk(c.authed(bulk))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.jobs.len(), 2);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].index, 1);
    assert!(
        r.rejected[0]
            .reason
            .contains("connection.port must be 1..=65535")
    );
    for j in &r.jobs {
        let end = watch_to_end(&c, 0, &j.id).await;
        assert_eq!(end.last().unwrap().status(), JobStatus::Succeeded);
    }

    // List: filtered by host port and status, page by page.
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = jobs
            .list_jobs(c.authed(ListJobsRequest {
                status: JobStatus::Succeeded as i32,
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.jobs.len() <= 3);
        all.extend(page.jobs);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(all.iter().all(|j| j.status() == JobStatus::Succeeded));
    assert!(all.iter().any(|j| j.id == j1.id) && all.iter().any(|j| j.id == ids[4]));
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert!(!all.iter().any(|j| j.id == canceled.id));
    let count = |host: &str, node_id: &str| {
        let mut jobs = jobs.clone();
        let req = c.authed(ListJobsRequest {
            host: host.into(),
            node_id: node_id.into(),
            page_size: 1000,
            ..Default::default()
        });
        async move { jobs.list_jobs(req).await.unwrap().into_inner().jobs.len() }
    };
    let everything = count("", "").await;
    assert!(everything > all.len());
    assert_eq!(count("127.0.0.1", "node-1").await, everything);
    assert_eq!(count("192.0.2.99", "").await, 0);
    assert_eq!(count("", "node-9").await, 0);

    // Validation and unknown ids.
    let mut bad = c.request(0, &["show clock"]);
    bad.connection.as_mut().unwrap().host = String::new();
    let e = jobs.execute(c.authed(bad)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("connection.host"), "{}", e.message());
    let e = jobs
        .get_job(c.authed(GetJobRequest {
            id: "0000000000000000000000000000".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = jobs
        .get_job(c.authed(GetJobRequest { id: "../x".into() }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Workers: list, then kill the device's worker; its next job connects again.
    let mut admin = c.admin(0).await.unwrap();
    let workers = admin
        .list_workers(c.authed(ListWorkersRequest {
            host: "127.0.0.1".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .workers;
    let w0 = workers
        .iter()
        .find(|w| w.port == port(0) && w.state != "exited")
        .unwrap_or_else(|| panic!("no worker for device 0 in {workers:?}"));
    assert!(w0.jobs_done >= 8 && w0.session_reuses >= 7, "{w0:?}");
    let on_node = admin
        .list_workers(c.authed(ListWorkersRequest {
            node_id: "node-1".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert!(on_node.iter().any(|w| w.worker_id == w0.worker_id));
    let e = admin
        .list_workers(c.authed(ListWorkersRequest {
            node_id: "node-9".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = admin
        .kill_worker(c.authed(KillWorkerRequest {
            host: "192.0.2.99".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let killed = admin
        .kill_worker(c.authed(KillWorkerRequest {
            worker_id: w0.worker_id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(killed.killed);
    let j = jobs.execute(c.authed(first)).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded);
    assert!(!j.session_reused, "a fresh worker after the kill");
    let nodes = admin
        .list_nodes(c.authed(ListNodesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].node_id, "node-1");
    // Credentials reach the devices, and neither the answers nor any log line hold them.
    let answers = format!("{j:?}{workers:?}{nodes:?}{all:?}{r:?}{canceled:?}");
    let logs = c.logs();
    assert!(logs.contains("job dispatched"), "debug logs are on");
    for secret in ["pw-e2e-7q3x", "en-e2e-9z4w"] {
        assert!(!answers.contains(secret) && !logs.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_both_protocol_versions() {
    use tokio_stream::StreamExt;
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let ch = c.channel(0).await.unwrap();
    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let req = ServerReflectionRequest {
            message_request: Some(MessageRequest::ListServices(String::new())),
            ..Default::default()
        };
        let mut r = ServerReflectionClient::new(ch.clone())
            .server_reflection_info(tokio_stream::once(req))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(l)) =
            r.next().await.unwrap().unwrap().message_response
        else {
            panic!("no service list")
        };
        let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"netpulse.v1.JobService".to_string())
                && names.contains(&"netpulse.v1.ClusterService".to_string()),
            "{names:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let req = ServerReflectionRequest {
            message_request: Some(MessageRequest::FileContainingSymbol(
                "netpulse.v1.JobService".into(),
            )),
            ..Default::default()
        };
        let mut r = ServerReflectionClient::new(ch)
            .server_reflection_info(tokio_stream::once(req))
            .await
            .unwrap()
            .into_inner();
        let resp = r.next().await.unwrap().unwrap().message_response;
        assert!(
            matches!(resp, Some(MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty())
        );
    }
}

/// `ExecuteStream`: every request answered once with its index (a refusal in the middle does
/// not end the stream), a device's jobs in order, at most `--max-jobs-per-stream` unanswered
/// at a time, and the stream ends after the client half-closes and the last answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_stream_answers_every_request_once_within_its_window() {
    let c = TestCluster::start(Options {
        manager_args: vec!["--max-jobs-per-stream".into(), "4".into()],
        metrics: true,
        ..opts()
    })
    .await
    .unwrap();
    c.wait_nodes(0, 1).await.unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let anonymous = jobs
        .execute_stream(tokio_stream::iter(vec![c.request(0, &["show clock"])]))
        .await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);

    // Pinned jobs on two devices, then fifo jobs (each one logs in: 400 ms) to fill the window.
    let mut requests = Vec::new();
    for i in 0..12 {
        let mut r = c.request(i % 2, &["show clock"]);
        r.wait = true;
        requests.push(r);
    }
    requests[5].commands.clear();
    requests[6].wait = false;
    for _ in 0..10 {
        let mut r = c.request(2, &["show clock"]);
        r.strategy = Strategy::Fifo as i32;
        r.wait = true;
        requests.push(r);
    }
    let n = requests.len();
    let (tx, rx) = tokio::sync::mpsc::channel(n);
    for r in requests {
        tx.send(r).await.unwrap();
    }
    drop(tx);
    let mut answers = jobs
        .execute_stream(c.authed(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();

    let metrics = c.managers[0].metrics.clone().unwrap();
    let watch_window = async {
        let mut most = 0.0f64;
        loop {
            let text = integration_tests::scrape(&metrics).await.unwrap();
            most = most.max(integration_tests::sample(&text, "netpulse_jobs_active").unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Four unanswered waits, and request 6 (no wait: answered at once) may still be
            // running beside them.
            if most > 5.0 {
                return most;
            }
        }
    };
    let collect = async {
        let mut got = Vec::new();
        while let Some(a) = answers.message().await.unwrap() {
            got.push(a);
        }
        got
    };
    let got = tokio::select! {
        got = tokio::time::timeout(Duration::from_secs(90), collect) => got.expect("every answer within 90 s"),
        most = watch_window => panic!("{most} jobs active at once; the stream's window is 4, plus one job that does not wait"),
    };

    let mut seen: Vec<u64> = got.iter().map(|a| a.index).collect();
    seen.sort();
    assert_eq!(
        seen,
        (0..n as u64).collect::<Vec<_>>(),
        "each index answered once"
    );
    let mut by_device: [Vec<(u64, i64)>; 2] = Default::default();
    for a in &got {
        match (a.index, a.outcome.as_ref().unwrap()) {
            (5, streamed_job::Outcome::Refused(r)) => {
                assert_eq!(r.code, Code::InvalidArgument as i32, "{r:?}");
                assert!(r.message.contains("commands"), "{r:?}");
            }
            (6, streamed_job::Outcome::Job(j)) => assert_eq!(j.status(), JobStatus::Queued),
            (i, streamed_job::Outcome::Job(j)) => {
                assert_eq!(j.status(), JobStatus::Succeeded, "request {i}: {j:?}");
                if i < 12 {
                    by_device[i as usize % 2].push((i, j.started_unix_ms));
                }
            }
            (i, o) => panic!("request {i}: {o:?}"),
        }
    }
    for mut d in by_device {
        d.sort();
        assert!(
            d.windows(2).all(|w| w[0].1 <= w[1].1),
            "a device's jobs start in request order: {d:?}"
        );
    }
}
