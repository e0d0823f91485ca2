//! Webhooks against real HTTP receivers: a job's own webhook retried past failures, a
//! subscription to starts and ends whose receiver holds its answers while jobs go on, the
//! signature checked with the shared secret, duplicates told apart by event id, the request
//! checks, and a manager killed with deliveries pending (another replica delivers them).

use std::collections::HashMap;
use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster, is_final};
use integration_tests::webhook::{Received, Receiver};
use netpulse_proto::api::*;

const JOB_SECRET: &[u8] = b"whsec-job-4f1c";
const NOC_SECRET: &[u8] = b"whsec-noc-9a2b";
const WAIT: Duration = Duration::from_secs(30);

/// The managers' webhook flags: secrets `default` and `noc`, fast retries, and the given
/// subscriptions file text.
fn webhook_args(dir: &std::path::Path, subscriptions: &str) -> Vec<String> {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("default"), JOB_SECRET).unwrap();
    // As a Secret written by hand often is: with a newline, which the signature ignores.
    std::fs::write(secrets.join("noc"), [NOC_SECRET, b"\n"].concat()).unwrap();
    let subs = dir.join("subscriptions.toml");
    std::fs::write(&subs, subscriptions).unwrap();
    vec![
        "--webhook-secrets-dir".into(),
        secrets.display().to_string(),
        "--webhook-subscriptions-file".into(),
        subs.display().to_string(),
        "--webhook-retry-initial-ms".into(),
        "100".into(),
    ]
}

fn hooked(c: &TestCluster, device: usize, url: &str) -> ExecuteRequest {
    let mut r = c.request(device, &["show clock"]);
    r.webhook = Some(Webhook {
        url: url.into(),
        headers: HashMap::from([("X-Tenant".to_string(), "t-17".to_string())]),
        ..Default::default()
    });
    r
}

fn delivered(got: &[Received], event_id: &str) -> bool {
    got.iter()
        .any(|r| r.status == 204 && r.header("x-netpulse-event-id") == event_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_never_hold_jobs_up() {
    let own = Receiver::start().await;
    let noc = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let subscriptions = format!(
        "[[subscription]]\nname = \"noc\"\nurl = \"{}\"\nevents = [\"started\", \"finished\"]\nsigning_secret = \"noc\"\n\n\
         [[subscription]]\nname = \"other-site\"\nurl = \"{}\"\nhosts = [\"192.0.2.99\"]\n",
        noc.url, elsewhere.url
    );
    let c = TestCluster::start(Options {
        manager_args: webhook_args(dir.path(), &subscriptions),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();

    // The noc receiver holds every answer: jobs end all the same.
    noc.hold(true);
    own.fail_first(2);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut r = hooked(&c, 0, &own.url);
        r.wait = true;
        let j = jobs.execute(c.authed(r)).await.unwrap().into_inner();
        assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
        if ids.is_empty() {
            // Its two failures are the receiver's first two answers.
            let first = format!("{}.finished.job", j.id);
            own.wait_for(WAIT, |got| delivered(got, &first)).await;
        }
        ids.push(j.id);
    }
    noc.wait_for(WAIT, |got| got.len() >= 2).await;
    assert!(
        noc.received()
            .iter()
            .all(|r| r.status == 0 || r.status == 204)
    );

    // The job's own webhook: two failed attempts, then delivered; the same event id and body
    // each time, signed with the default secret, with the request's header.
    let first = format!("{}.finished.job", ids[0]);
    let got = own.wait_for(WAIT, |got| delivered(got, &first)).await;
    let attempts: Vec<&Received> = got
        .iter()
        .filter(|r| r.header("x-netpulse-event-id") == first)
        .collect();
    assert_eq!(
        attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 204],
        "{attempts:#?}"
    );
    for a in &attempts {
        assert_eq!(
            a.body, attempts[0].body,
            "every attempt sends the same bytes"
        );
        assert!(a.signed_with(JOB_SECRET), "{a:?}");
        assert!(!a.signed_with(NOC_SECRET));
        assert_eq!(a.header("x-tenant"), "t-17");
        assert_eq!(a.header("x-netpulse-event"), "job.finished");
        assert_eq!(a.header("content-type"), "application/json");
    }
    let body = attempts[0].json();
    assert_eq!(body["event_id"], first.as_str());
    assert_eq!(body["event"], "job.finished");
    assert_eq!(body["job"]["id"], ids[0].as_str());
    assert_eq!(body["job"]["status"], "succeeded");
    assert_eq!(body["job"]["results"][0]["command"], "show clock");
    for id in &ids[1..] {
        own.wait_for(WAIT, |got| delivered(got, &format!("{id}.finished.job")))
            .await;
    }

    // The subscription, released: a start and an end per job, signed with its own secret.
    noc.hold(false);
    for id in &ids {
        for event in ["started", "finished"] {
            let event_id = format!("{id}.{event}.s-noc");
            let got = noc.wait_for(WAIT, |got| delivered(got, &event_id)).await;
            let r = got
                .iter()
                .find(|r| r.header("x-netpulse-event-id") == event_id)
                .unwrap();
            assert!(r.signed_with(NOC_SECRET), "{r:?}");
            assert_eq!(r.json()["event"], format!("job.{event}"));
        }
    }
    assert!(
        elsewhere.received().is_empty(),
        "a host filter that matches nothing"
    );

    // Requests are checked at submit.
    let refused = |url: &str, header: Option<(&str, &str)>, secret: &str| {
        let mut r = c.request(0, &["show clock"]);
        r.webhook = Some(Webhook {
            url: url.into(),
            headers: header
                .map(|(k, v)| HashMap::from([(k.to_string(), v.to_string())]))
                .unwrap_or_default(),
            signing_secret: secret.into(),
            ..Default::default()
        });
        r
    };
    for (r, code, says) in [
        (
            refused("http://169.254.169.254/latest", None, ""),
            tonic::Code::PermissionDenied,
            "link-local",
        ),
        (
            refused("ftp://x/y", None, ""),
            tonic::Code::InvalidArgument,
            "http:// or https://",
        ),
        (
            refused(&own.url, Some(("Authorization", "Bearer x")), ""),
            tonic::Code::InvalidArgument,
            "Authorization is refused",
        ),
        (
            refused(&own.url, None, "nobody"),
            tonic::Code::InvalidArgument,
            "no signing secret nobody",
        ),
    ] {
        let e = jobs.execute(c.authed(r)).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(says), "{e:?}");
    }
    for secret in [JOB_SECRET, NOC_SECRET] {
        assert!(!c.logs().contains(std::str::from_utf8(secret).unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_managers_pending_deliveries_are_made_by_another_replica() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = TestCluster::start(Options {
        managers: 2,
        manager_args: webhook_args(dir.path(), ""),
        ..Default::default()
    })
    .await
    .unwrap();
    receiver.refuse(true);
    let mut jobs = c.jobs(0).await.unwrap();
    let mut r = hooked(&c, 0, &receiver.url);
    r.wait = true;
    let j = jobs.execute(c.authed(r)).await.unwrap().into_inner();
    assert!(is_final(&j) && j.status() == JobStatus::Succeeded, "{j:?}");
    let event_id = format!("{}.finished.job", j.id);
    receiver.wait_for(WAIT, |got| got.len() >= 2).await;

    // manager-1 dies with the delivery pending; the receiver comes back; manager-2 delivers.
    let mut c = c;
    c.managers[0].kill9().await;
    let killed = tokio::time::Instant::now();
    receiver.refuse(false);
    let got = receiver
        .wait_for(WAIT, |got| delivered(got, &event_id))
        .await;
    let ok = got.iter().find(|r| r.status == 204).unwrap();
    assert!(ok.at > killed);
    assert!(ok.signed_with(JOB_SECRET));
    assert_eq!(
        ok.header("x-tenant"),
        "t-17",
        "the headers travel with the record"
    );
    assert_eq!(
        ok.json()["job"]["id"],
        j.id.as_str(),
        "the body rebuilt from the job's record"
    );
    let log = std::fs::read_to_string(&c.managers[1].log).unwrap();
    assert!(log.contains("took over a webhook delivery"), "{log}");
    // Every attempt, before and after the takeover, names the same event.
    assert!(
        got.iter()
            .all(|r| r.header("x-netpulse-event-id") == event_id)
    );
}

/// Scrapes the manager until `series` reaches `at_least`.
async fn metric_reaches(addr: &str, series: &str, at_least: f64) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = integration_tests::scrape(addr).await.unwrap();
        if integration_tests::sample(&text, series).is_some_and(|v| v >= at_least) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_are_told_and_undeliverable_webhooks_are_given_up_at_the_maximum_age() {
    let open = Receiver::start().await;
    let dead = Receiver::start().await;
    dead.refuse(true);
    let dir = tempfile::tempdir().unwrap();
    let mut args = webhook_args(dir.path(), "");
    args.extend(["--webhook-max-age-seconds".into(), "1".into()]);
    let c = TestCluster::start(Options {
        manager_args: args,
        metrics: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let mut r = hooked(&c, 0, &open.url);
    r.webhook.as_mut().unwrap().on_start = true;
    r.wait = true;
    let told = jobs.execute(c.authed(r)).await.unwrap().into_inner();
    let mut r = hooked(&c, 1, &dead.url);
    r.wait = true;
    let lost = jobs.execute(c.authed(r)).await.unwrap().into_inner();

    // `on_start`: the start, then the end, each once delivered.
    for event in ["started", "finished"] {
        let id = format!("{}.{event}.job", told.id);
        open.wait_for(WAIT, |got| delivered(got, &id)).await;
    }
    let started = open
        .received()
        .into_iter()
        .find(|r| r.header("x-netpulse-event") == "job.started")
        .unwrap();
    assert_eq!(started.json()["job"]["status"], "running");

    // From the CLI: a webhook with a header and the start too.
    let d = c.device(0);
    let out = tokio::process::Command::new(integration_tests::cluster::workspace_bin("netpulse"))
        .args(["exec", "--host", "127.0.0.1", "--port", &d.port.to_string()])
        .args(["--device-type", &d.device_type, "--username", "admin"])
        .args([
            "--webhook",
            &open.url,
            "--webhook-header",
            "X-From=cli",
            "--webhook-on-start",
            "--webhook-secret",
            "noc",
        ])
        .args(["--json", "show clock"])
        .env_clear()
        .env("NETPULSE_ADDR", &c.managers[0].addr)
        .env("NETPULSE_DEVICE_PASSWORD", &c.opts.password)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cli_job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for event in ["started", "finished"] {
        let id = format!("{}.{event}.job", cli_job["id"].as_str().unwrap());
        let got = open.wait_for(WAIT, |got| delivered(got, &id)).await;
        let r = got
            .iter()
            .find(|r| r.header("x-netpulse-event-id") == id)
            .unwrap();
        assert_eq!(r.header("x-from"), "cli");
        assert!(
            r.signed_with(NOC_SECRET),
            "signing_secret names the noc secret"
        );
    }

    // The dead receiver's delivery is given up after a second of failures, and counted.
    let manager = c.managers[0].metrics.clone().unwrap();
    let text = metric_reaches(
        &manager,
        "netpulse_webhook_attempts_total{outcome=\"expired\"}",
        1.0,
    )
    .await;
    assert!(
        integration_tests::sample(
            &text,
            "netpulse_webhook_attempts_total{outcome=\"delivered\"}"
        ) >= Some(2.0),
        "{text}"
    );
    assert!(
        integration_tests::sample(
            &text,
            "netpulse_webhook_attempts_total{outcome=\"retried\"}"
        ) >= Some(1.0)
    );
    assert!(
        text.contains("netpulse_webhook_delivery_seconds_count"),
        "{text}"
    );
    metric_reaches(&manager, "netpulse_webhook_backlog", 0.0).await;
    let attempts = dead.received();
    assert!(attempts.len() >= 2, "{attempts:#?}");
    assert!(
        attempts
            .iter()
            .all(|a| a.header("x-netpulse-event-id") == format!("{}.finished.job", lost.id))
    );
    assert!(c.logs().contains("webhook delivery given up"));
    // Nothing is left pending in etcd.
    let mut etcd = c.etcd.client().await;
    let left = etcd
        .get(
            format!("{}/webhooks/", c.prefix),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(left.kvs().len(), 0);
}
