//! Where jobs run.
//!
//! Pinned: a device lives on one node. The choice prefers the node with the most free pinned
//! capacity and breaks ties with a rendezvous hash of (node, device), a fixed function rather
//! than the process-seeded std hasher, so every manager replica chooses alike. The choice is
//! then recorded in etcd at `<prefix>/placements/<host:port>` by a create-if-absent transaction
//! attached to the chosen node's lease: concurrent replicas agree on one owner, and a dead
//! node's placements disappear with its lease. Fifo: two random live nodes, the less loaded.

use std::collections::HashSet;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub node_id: String,
    pub lease_id: i64,
    pub pinned_workers: u32,
    pub max_pinned_workers: u32,
    pub fifo_running: u32,
    pub max_fifo_concurrency: u32,
    pub queued_jobs: u32,
    pub draining: bool,
}

impl NodeView {
    fn free_pinned(&self) -> u32 {
        self.max_pinned_workers.saturating_sub(self.pinned_workers)
    }
    fn fifo_load(&self) -> (u32, u32) {
        (
            self.fifo_running.saturating_add(self.queued_jobs),
            self.fifo_running,
        )
    }
}

/// FNV-1a, 64 bit: stable across processes and versions.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The node a new pinned device should go to, or None when no live node has room.
pub fn choose_pinned<'a>(
    nodes: &'a [NodeView],
    device: &str,
    exclude: &HashSet<String>,
) -> Option<&'a NodeView> {
    nodes
        .iter()
        .filter(|n| !n.draining && n.free_pinned() > 0 && !exclude.contains(&n.node_id))
        .max_by_key(|n| (n.free_pinned(), fnv1a(&[&n.node_id, device])))
}

/// Power of two choices among nodes with free fifo capacity; `pick` gives random indices.
pub fn choose_fifo(nodes: &[NodeView], mut pick: impl FnMut(usize) -> usize) -> Option<&NodeView> {
    let open: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| !n.draining && n.max_fifo_concurrency > 0)
        .collect();
    match open.len() {
        0 => None,
        1 => Some(open[0]),
        n => {
            let a = open[pick(n)];
            let b = open[pick(n)];
            Some(if b.fifo_load() < a.fifo_load() { b } else { a })
        }
    }
}

pub fn placement_key(prefix: &str, device: &str) -> String {
    format!("{}/placements/{device}", prefix.trim_end_matches('/'))
}

/// Records `node` as the owner of `device` unless another node already owns it; returns the
/// owner either way.
pub async fn claim(
    client: &mut Client,
    prefix: &str,
    device: &str,
    node: &NodeView,
    timeout: Duration,
) -> Result<String, ApiError> {
    let key = placement_key(prefix, device);
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            node.node_id.clone(),
            Some(PutOptions::new().with_lease(node.lease_id)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let r = tokio::time::timeout(timeout, client.txn(txn))
        .await
        .map_err(|_| ApiError::Unavailable("etcd did not answer the placement in time".into()))?
        .map_err(|e| ApiError::Unavailable(format!("placement in etcd failed: {e}")))?;
    if r.succeeded() {
        return Ok(node.node_id.clone());
    }
    for op in r.op_responses() {
        if let TxnOpResponse::Get(g) = op
            && let Some(kv) = g.kvs().first()
        {
            return Ok(String::from_utf8_lossy(kv.value()).into_owned());
        }
    }
    Err(ApiError::Unavailable(format!(
        "placement of {device} changed while it was read; retry"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(id: &str, pinned: u32, max: u32) -> NodeView {
        NodeView {
            node_id: id.into(),
            lease_id: 1,
            pinned_workers: pinned,
            max_pinned_workers: max,
            fifo_running: 0,
            max_fifo_concurrency: 4,
            queued_jobs: 0,
            draining: false,
        }
    }

    #[test]
    fn most_free_capacity_wins_and_full_draining_or_excluded_nodes_never_do() {
        let nodes = vec![node("a", 9, 10), node("b", 2, 10), node("c", 0, 0)];
        assert_eq!(
            choose_pinned(&nodes, "192.0.2.1:22", &HashSet::new())
                .unwrap()
                .node_id,
            "b"
        );
        let excluded: HashSet<String> = ["b".to_string()].into();
        assert_eq!(
            choose_pinned(&nodes, "192.0.2.1:22", &excluded)
                .unwrap()
                .node_id,
            "a"
        );
        let mut drained = nodes.clone();
        drained[1].draining = true;
        drained[0].pinned_workers = 10;
        assert_eq!(
            choose_pinned(&drained, "192.0.2.1:22", &HashSet::new()),
            None
        );
    }

    #[test]
    fn ties_spread_devices_over_nodes_and_fifo_prefers_the_less_loaded() {
        let nodes = vec![node("a", 0, 10), node("b", 0, 10), node("c", 0, 10)];
        let chosen: HashSet<String> = (0..60)
            .map(|i| {
                choose_pinned(&nodes, &format!("10.0.0.{i}:22"), &HashSet::new())
                    .unwrap()
                    .node_id
                    .clone()
            })
            .collect();
        assert_eq!(chosen.len(), 3, "equal nodes all get devices");
        let mut busy = nodes.clone();
        busy[0].fifo_running = 4;
        let mut picks = [0usize, 1].into_iter();
        assert_eq!(
            choose_fifo(&busy, |_| picks.next().unwrap())
                .unwrap()
                .node_id,
            "b"
        );
        assert_eq!(choose_fifo(&[], |_| 0), None);
    }

    proptest! {
        #[test]
        fn the_choice_is_stable_and_has_maximal_free_capacity(
            caps in prop::collection::vec((0u32..20, 0u32..20), 1..8),
            device in "[a-z0-9.]{1,20}:[0-9]{1,5}",
        ) {
            let nodes: Vec<NodeView> = caps.iter().enumerate().map(|(i, (p, m))| node(&format!("n{i}"), *p, *m)).collect();
            let first = choose_pinned(&nodes, &device, &HashSet::new()).cloned();
            let mut reversed = nodes.clone();
            reversed.reverse();
            // Another replica with the nodes listed in another order chooses the same node.
            prop_assert_eq!(&first, &choose_pinned(&reversed, &device, &HashSet::new()).cloned());
            let best = nodes.iter().map(NodeView::free_pinned).max().unwrap();
            match first {
                Some(n) => prop_assert!(n.free_pinned() == best && best > 0),
                None => prop_assert_eq!(best, 0),
            }
        }
    }
}
