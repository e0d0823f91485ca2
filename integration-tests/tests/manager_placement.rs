//! Placement claims against a real etcd.

use std::time::Duration;

use integration_tests::etcd::Etcd;
use manager::kv::{EtcdKv, Kv};
use manager::placement::placement_key;

const T: Duration = Duration::from_secs(5);

/// Claims `device` for `node` on its lease; returns the owner afterwards.
async fn claim(kv: &EtcdKv, device: &str, node: &str, lease: i64) -> String {
    let owner = kv
        .put_if_absent(&placement_key("/np", device), node, lease)
        .await
        .unwrap();
    String::from_utf8(owner).unwrap()
}

#[tokio::test]
async fn replicas_racing_for_a_device_agree_and_a_dead_node_loses_its_devices() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let la = c.lease_grant(30, None).await.unwrap().id();
    let lb = c.lease_grant(30, None).await.unwrap().id();
    // Two replicas claim the same device for different nodes at once: one owner wins for both.
    let (k1, k2) = (
        EtcdKv::new(etcd.client().await, T),
        EtcdKv::new(etcd.client().await, T),
    );
    let (r1, r2) = tokio::join!(
        claim(&k1, "192.0.2.1:22", "a", la),
        claim(&k2, "192.0.2.1:22", "b", lb)
    );
    assert_eq!(r1, r2);
    // An existing placement is kept, whoever asks.
    assert_eq!(claim(&k1, "192.0.2.1:22", "b", lb).await, r1);
    // A release by a node that does not own it changes nothing.
    let other_id = if r1 == "a" { "b" } else { "a" };
    k2.delete_if(&placement_key("/np", "192.0.2.1:22"), other_id)
        .await
        .unwrap();
    assert_eq!(claim(&k2, "192.0.2.1:22", other_id, lb).await, r1);

    // The owner's lease ends: its placement is gone and the device can be placed again.
    let owner_lease = if r1 == "a" { la } else { lb };
    c.lease_revoke(owner_lease).await.unwrap();
    let left = c
        .get(placement_key("/np", "192.0.2.1:22"), None)
        .await
        .unwrap();
    assert!(left.kvs().is_empty());
    let other_lease = if r1 == "a" { lb } else { la };
    assert_eq!(
        claim(&k1, "192.0.2.1:22", other_id, other_lease).await,
        other_id
    );
}
