//! Device passwords never rest in clear: jobs with inline credentials run (and are adopted by
//! a replica when their manager dies), then etcd's whole data directory (write-ahead log,
//! snapshots, database) and every log are searched for the passwords.

use std::path::Path;
use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster, is_final};
use netpulse_proto::api::*;

const PASSWORD: &str = "Np-dev-pass-7f3a9c";
const SECRET: &str = "Np-enable-1b2d4e";

fn options(secrets_key: Option<String>) -> Options {
    Options {
        managers: 2,
        // Slow logins keep the jobs queued on the agent while their manager is killed.
        devsim: vec![
            "--devices".into(),
            "cisco_ios=2".into(),
            "--login-delay-ms".into(),
            "1500".into(),
        ],
        password: PASSWORD.into(),
        secret: SECRET.into(),
        secrets_key,
        ..Default::default()
    }
}

/// The files under `dir` that hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn assert_nothing_in_clear(c: &TestCluster) {
    let etcd = c.etcd.data_dir();
    // The search itself can fail: the data directory holds the job records.
    assert!(
        !files_holding(&etcd, b"show clock").is_empty(),
        "the jobs are in {}",
        etcd.display()
    );
    for secret in [PASSWORD, SECRET] {
        assert_eq!(
            files_holding(&etcd, secret.as_bytes()),
            Vec::<String>::new(),
            "{secret}"
        );
        assert!(!c.logs().contains(secret), "{secret} is in a log");
    }
}

/// Submits jobs to manager 0, kills it while they wait for the devices' slow logins, and
/// returns them as manager 1 ends them.
async fn orphaned_jobs(c: &mut TestCluster) -> Vec<Job> {
    let mut jobs = c.jobs(0).await.unwrap();
    let mut ids = Vec::new();
    for device in [0, 1, 0] {
        let r = c.request(device, &["show clock"]);
        ids.push(jobs.execute(c.authed(r)).await.unwrap().into_inner().id);
    }
    c.managers[0].kill9().await;
    let mut ended = Vec::new();
    for id in &ids {
        ended.push(c.wait_job(1, id, Duration::from_secs(60), is_final).await);
    }
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_credentials_let_a_replica_run_a_dead_managers_jobs() {
    let mut c = TestCluster::start(options(Some(
        integration_tests::cluster::TEST_SECRETS_KEY.into(),
    )))
    .await
    .unwrap();
    let mut jobs = c.jobs(1).await.unwrap();
    let mut r = c.request(0, &["show clock"]);
    r.wait = true;
    let j = jobs.execute(c.authed(r)).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    for j in orphaned_jobs(&mut c).await {
        assert_eq!(
            j.status(),
            JobStatus::Succeeded,
            "opened by the replica: {j:?}"
        );
    }
    assert!(c.logs().contains("adopted jobs of managers that are gone"));
    assert_nothing_in_clear(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_credentials_stay_in_memory_and_orphans_fail_saying_why() {
    let mut c = TestCluster::start(options(None)).await.unwrap();
    let ended = orphaned_jobs(&mut c).await;
    // A job may have ended on the agent before its manager died; the others cannot run.
    let failed: Vec<_> = ended
        .iter()
        .filter(|j| j.status() != JobStatus::Succeeded)
        .collect();
    assert!(!failed.is_empty(), "{ended:?}");
    for j in failed {
        assert_eq!(j.status(), JobStatus::Failed, "{j:?}");
        let e = j.error.as_ref().unwrap();
        assert_eq!(e.kind, "credentials_unavailable", "{j:?}");
        assert!(
            e.message.contains("manager manager-1") && e.message.contains("--secrets-key-file"),
            "{e:?}"
        );
    }
    // Jobs of a live manager are untouched.
    let mut jobs = c.jobs(1).await.unwrap();
    let mut r = c.request(1, &["show clock"]);
    r.wait = true;
    let j = jobs.execute(c.authed(r)).await.unwrap().into_inner();
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    assert_nothing_in_clear(&c);
}
