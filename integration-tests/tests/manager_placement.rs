//! Placement claims against a real etcd.

use std::time::Duration;

use integration_tests::etcd::Etcd;
use manager::placement::{NodeView, claim, placement_key};

const T: Duration = Duration::from_secs(5);

fn node(id: &str, lease_id: i64) -> NodeView {
    NodeView {
        node_id: id.into(),
        lease_id,
        pinned_workers: 0,
        max_pinned_workers: 10,
        fifo_running: 0,
        max_fifo_concurrency: 4,
        queued_jobs: 0,
        draining: false,
    }
}

#[tokio::test]
async fn replicas_racing_for_a_device_agree_and_a_dead_node_loses_its_devices() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let la = c.lease_grant(30, None).await.unwrap().id();
    let lb = c.lease_grant(30, None).await.unwrap().id();
    let (a, b) = (node("a", la), node("b", lb));

    // Two replicas claim the same device for different nodes at once: one owner wins for both.
    let (mut c1, mut c2) = (etcd.client().await, etcd.client().await);
    let (r1, r2) = tokio::join!(
        claim(&mut c1, "/np", "192.0.2.1:22", &a, T),
        claim(&mut c2, "/np", "192.0.2.1:22", &b, T)
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1, r2);
    // An existing placement is kept, whoever asks.
    assert_eq!(
        claim(&mut c, "/np", "192.0.2.1:22", &b, T).await.unwrap(),
        r1
    );

    // The owner's lease ends: its placement is gone and the device can be placed again.
    let owner_lease = if r1 == "a" { la } else { lb };
    c.lease_revoke(owner_lease).await.unwrap();
    let left = c
        .get(placement_key("/np", "192.0.2.1:22"), None)
        .await
        .unwrap();
    assert!(left.kvs().is_empty());
    let other = if r1 == "a" { &b } else { &a };
    assert_eq!(
        claim(&mut c, "/np", "192.0.2.1:22", other, T)
            .await
            .unwrap(),
        other.node_id
    );
}
