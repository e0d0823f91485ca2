//! The job store against a real etcd.

use std::sync::atomic::Ordering;
use std::time::Duration;

use integration_tests::etcd::Etcd;
use manager::store::{JobStore, StoreConfig};
use netpulse_proto::api::{Job, JobStatus};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

fn job(id: &str, status: JobStatus) -> Job {
    Job {
        id: id.into(),
        status: status as i32,
        host: "192.0.2.1".into(),
        ..Default::default()
    }
}

fn config(bucket: Duration) -> StoreConfig {
    StoreConfig {
        prefix: "/np-store".into(),
        lease_bucket: bucket,
        ..Default::default()
    }
}

#[tokio::test]
async fn records_round_trip_and_list_in_pages() {
    let etcd = Etcd::start().await;
    let store = JobStore::new(
        etcd.client().await,
        config(Duration::from_secs(60)),
        &TaskTracker::new(),
    );
    assert_eq!(store.get("nope").await.unwrap(), None);
    for id in ["a", "b", "c", "d", "e"] {
        store.put(job(id, JobStatus::Queued), None).await.unwrap();
    }
    store
        .put(
            job("c", JobStatus::Succeeded),
            Some(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("c").await.unwrap().unwrap().status(),
        JobStatus::Succeeded
    );
    let ids = |v: Vec<Job>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list(None, 2).await.unwrap()), ["a", "b"]);
    assert_eq!(ids(store.list(Some("b"), 2).await.unwrap()), ["c", "d"]);
    assert_eq!(ids(store.list(Some("d"), 2).await.unwrap()), ["e"]);
}

#[tokio::test]
async fn concurrent_writes_share_transactions() {
    let etcd = Etcd::start().await;
    let store = JobStore::new(
        etcd.client().await,
        config(Duration::from_secs(60)),
        &TaskTracker::new(),
    );
    let mut tasks = Vec::new();
    for i in 0..512 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.put(job(&format!("j{i:04}"), JobStatus::Queued), None)
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (txns, puts) = (
        store.stats().transactions.load(Ordering::Relaxed),
        store.stats().puts.load(Ordering::Relaxed),
    );
    assert_eq!(puts, 512);
    assert!(
        txns < 256,
        "{txns} transactions for 512 writes: no batching"
    );
    assert_eq!(store.list(None, 1000).await.unwrap().len(), 512);
}

#[tokio::test]
async fn final_jobs_expire_with_their_result_ttl_and_open_ones_stay() {
    let etcd = Etcd::start().await;
    let store = JobStore::new(
        etcd.client().await,
        config(Duration::from_secs(1)),
        &TaskTracker::new(),
    );
    store
        .put(
            job("done", JobStatus::Succeeded),
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    store
        .put(
            job("also-done", JobStatus::Failed),
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    store
        .put(job("open", JobStatus::Running), None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get("done").await.unwrap().is_some()
        || store.get("also-done").await.unwrap().is_some()
    {
        assert!(Instant::now() < deadline, "final jobs did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.get("open").await.unwrap().is_some());
    let mut c = etcd.client().await;
    let leases = c.leases().await.unwrap();
    assert!(
        leases.leases().len() <= 1,
        "jobs in one bucket share a lease: {:?}",
        leases.leases().len()
    );
}

#[tokio::test]
async fn an_idempotency_key_creates_once_and_later_writes_of_a_key_win_within_a_batch() {
    let etcd = Etcd::start().await;
    let store = JobStore::new(
        etcd.client().await,
        config(Duration::from_secs(60)),
        &TaskTracker::new(),
    );
    let ttl = Duration::from_secs(600);
    let first = store
        .create_once(
            "k1",
            "a",
            ttl,
            vec![store.job_op(job("a", JobStatus::Queued), None)],
        )
        .await
        .unwrap();
    assert_eq!(first, None, "a new key creates the job");
    let again = store
        .create_once(
            "k1",
            "b",
            ttl,
            vec![store.job_op(job("b", JobStatus::Queued), None)],
        )
        .await
        .unwrap();
    assert_eq!(
        again.as_deref(),
        Some("a"),
        "a used key names the first job"
    );
    assert_eq!(
        store.get("b").await.unwrap(),
        None,
        "the second job was not written"
    );

    // Many writes of one record at once: etcd refuses a transaction naming a key twice, so
    // the batch keeps the last, and every caller's write succeeds.
    let mut tasks = Vec::new();
    for status in [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded] {
        let s = store.clone();
        tasks.push(tokio::spawn(
            async move { s.put(job("c", status), None).await },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    store
        .write(vec![
            store.job_op(job("c", JobStatus::Succeeded), None),
            manager::store::Op::Delete {
                key: store.active_key("c"),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        store.get("c").await.unwrap().unwrap().status(),
        JobStatus::Succeeded
    );
}
