//! One trace per job over OTLP: the client's `traceparent` (gRPC metadata) is the parent of the
//! manager's span, which is the parent of the agent's (through the dispatch), which is the
//! parent of the worker's spans (through the job frame), all received by an in-process OTLP
//! collector.

use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster};
use integration_tests::otlp::{OtlpReceiver, ReceivedSpan};
use netpulse_proto::api::JobStatus;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_job_is_one_trace_from_the_client_through_manager_agent_and_worker() {
    let collector = OtlpReceiver::start().await.unwrap();
    let mut c = TestCluster::start(Options {
        otlp: Some(collector.endpoint.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    c.wait_nodes(0, 1).await.unwrap();
    let trace_id = format!("{:032x}", rand_id());
    let client_span = "00f067aa0ba902b7";
    let mut req = c.authed(c.request(0, &["show clock", "show version"]));
    req.get_mut().wait = true;
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{client_span}-01").parse().unwrap(),
    );
    let j = c
        .jobs(0)
        .await
        .unwrap()
        .execute(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");

    // Spans are exported in batches within a second or so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ours = loop {
        let ours: Vec<ReceivedSpan> = collector
            .spans()
            .into_iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        let names: Vec<&str> = ours.iter().map(|s| s.name.as_str()).collect();
        if [
            "netpulse.execute",
            "netpulse.agent.job",
            "netpulse.worker.job",
        ]
        .iter()
        .all(|n| names.contains(n))
        {
            break ours;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans of the trace so far: {ours:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let one = |name: &str| {
        let v: Vec<&ReceivedSpan> = ours.iter().filter(|s| s.name == name).collect();
        assert_eq!(v.len(), 1, "one {name}: {ours:#?}");
        v[0].clone()
    };
    let manager = one("netpulse.execute");
    let agent = one("netpulse.agent.job");
    let worker = one("netpulse.worker.job");
    assert_eq!(manager.service, "netpulse-manager");
    assert_eq!(agent.service, "netpulse-agent");
    assert_eq!(
        hex(&manager.parent_span_id),
        client_span,
        "the client's call"
    );
    assert_eq!(agent.parent_span_id, manager.span_id, "agent under manager");
    assert_eq!(worker.parent_span_id, agent.span_id, "worker under agent");
    // The worker's connect and both commands, inside its job span and in order.
    let connect = one("netpulse.worker.connect");
    let commands: Vec<&ReceivedSpan> = ours
        .iter()
        .filter(|s| s.name == "netpulse.worker.command")
        .collect();
    assert_eq!(commands.len(), 2, "{ours:#?}");
    for s in commands.iter().copied().chain([&connect]) {
        assert_eq!(s.parent_span_id, worker.span_id, "{s:?}");
        assert!(
            s.start_unix_nanos >= worker.start_unix_nanos
                && s.end_unix_nanos <= worker.end_unix_nanos,
            "{s:?} inside {worker:?}"
        );
    }
    assert!(worker.start_unix_nanos >= manager.start_unix_nanos);
    assert!(agent.end_unix_nanos <= manager.end_unix_nanos + 1_000_000_000);
    c.shutdown().await;
}

fn rand_id() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t ^ (u128::from(std::process::id()) << 64) | 1
}
