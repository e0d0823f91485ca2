//! Where jobs run.
//!
//! Pinned: a device lives on one node. The choice prefers the node with the most free pinned
//! capacity and breaks ties with a rendezvous hash of (node, device), a fixed function rather
//! than the process-seeded std hasher, so every manager replica chooses alike. The choice is
//! then recorded at `<prefix>/placements/<host:port>` by a create-if-absent write attached to
//! the chosen node's lease ([`Kv`]: etcd, or memory in tests): concurrent replicas agree on one
//! owner, and a dead node's placements disappear with its lease. Fifo: two random live nodes,
//! the less loaded. Only nodes that serve the job's device type are considered.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use netpulse_model::{JobRequest, Strategy};
use netpulse_proto::records::NodeRecord;

use crate::error::ApiError;
use crate::kv::Kv;

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
    /// Idle pinned workers: places the node gives up for a new device when it has no free one.
    pub idle_pinned_workers: u32,
}

impl NodeView {
    fn free_pinned(&self) -> u32 {
        self.max_pinned_workers.saturating_sub(self.pinned_workers)
    }
    /// Free places and places an idle worker would give up.
    fn room(&self) -> u32 {
        self.max_pinned_workers
            .saturating_add(self.idle_pinned_workers)
            .saturating_sub(self.pinned_workers)
    }
    fn fifo_load(&self) -> (u32, u32) {
        (
            self.fifo_running.saturating_add(self.queued_jobs),
            self.fifo_running,
        )
    }
}

/// FNV-1a, 64 bit, then the splitmix64 finalizer: stable across processes and versions, and
/// well mixed (FNV alone leaves similar keys such as `10.0.0.1:22`, `10.0.0.2:22` close in
/// the high bits that decide a comparison, so ties went unevenly).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The node a new pinned device should go to, or None when no live node has room. Free places
/// first; then a full node with idle workers (it gives the least recently used one up).
pub fn choose_pinned<'a>(
    nodes: &'a [NodeView],
    device: &str,
    exclude: &HashSet<String>,
) -> Option<&'a NodeView> {
    nodes
        .iter()
        .filter(|n| !n.draining && n.room() > 0 && !exclude.contains(&n.node_id))
        .max_by_key(|n| (n.free_pinned(), n.room(), fnv1a(&[&n.node_id, device])))
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

/// A device's node, valid while that node keeps the lease it had when it was read.
#[derive(Clone, PartialEq, Eq)]
struct Placed {
    node_id: String,
    lease_id: i64,
}

/// The live nodes, by id, as the cluster watch sees them.
pub type NodeMap = BTreeMap<String, NodeRecord>;

/// The nodes a job of `device_type` may go to.
fn views(nodes: &NodeMap, excluded: &HashSet<String>, device_type: &str) -> Vec<NodeView> {
    nodes
        .values()
        .filter(|n| {
            !excluded.contains(&n.node_id) && n.device_types.iter().any(|t| t == device_type)
        })
        .map(|n| NodeView {
            node_id: n.node_id.clone(),
            lease_id: n.lease_id,
            pinned_workers: n.pinned_workers,
            max_pinned_workers: n.max_pinned_workers,
            fifo_running: n.fifo_running,
            max_fifo_concurrency: n.max_fifo_concurrency,
            queued_jobs: n.queued_jobs,
            draining: n.draining,
            idle_pinned_workers: n.idle_pinned_workers,
        })
        .collect()
}

/// Where each device lives: claims in the key-value store, and a cache of them that is valid
/// while the owner keeps the lease it had.
pub struct Placements {
    kv: Arc<dyn Kv>,
    prefix: String,
    cache: Mutex<HashMap<String, Placed>>,
    /// Devices this replica placed on each node since the node last reported its load, so a
    /// burst of placements, which all see the same (possibly seconds old) load, spreads.
    since_report: Mutex<HashMap<String, Unreported>>,
}

/// Placements on a node not yet in the load it reported (`pinned_workers` under `lease_id`).
struct Unreported {
    reported: (u32, i64),
    count: u32,
}

impl Placements {
    pub fn new(kv: Arc<dyn Kv>, prefix: &str) -> Self {
        Placements {
            kv,
            prefix: prefix.to_string(),
            cache: Mutex::new(HashMap::new()),
            since_report: Mutex::new(HashMap::new()),
        }
    }

    /// The views with this replica's unreported placements added to each node's load. A new
    /// report takes in as many of them as its count grew by (a report written mid-burst
    /// holds only the devices that had reached the node by then); a new lease starts over.
    fn with_unreported(&self, mut open: Vec<NodeView>) -> Vec<NodeView> {
        let mut since = self.since_report.lock().expect("placement counts lock");
        for n in &mut open {
            let Some(u) = since.get_mut(&n.node_id) else {
                continue;
            };
            if u.reported.1 != n.lease_id {
                since.remove(&n.node_id);
                continue;
            }
            let grew = n.pinned_workers.saturating_sub(u.reported.0);
            u.count = u.count.saturating_sub(grew);
            u.reported.0 = n.pinned_workers;
            n.pinned_workers = n.pinned_workers.saturating_add(u.count);
        }
        open
    }

    /// `delta` devices more placed on `node` since the load it reported (-1: a claim that
    /// did not go through).
    fn count_placed(&self, node: &NodeRecord, delta: i32) {
        let mut since = self.since_report.lock().expect("placement counts lock");
        let u = since.entry(node.node_id.clone()).or_insert(Unreported {
            reported: (node.pinned_workers, node.lease_id),
            count: 0,
        });
        u.count = u.count.saturating_add_signed(delta);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Placed>> {
        self.cache.lock().expect("placement cache lock")
    }

    /// The node for a job: the device's placement (claimed when it has none) or a fifo choice,
    /// among the live nodes that serve its device type and are not `excluded`; a job using a
    /// staged file runs where the file is.
    pub async fn place(
        &self,
        nodes: &NodeMap,
        r: &JobRequest,
        excluded: &HashSet<String>,
    ) -> Result<String, ApiError> {
        let Some(node) = r.staged_on() else {
            return self.place_any(nodes, r, excluded).await;
        };
        match nodes.get(node) {
            None => {
                return Err(ApiError::FailedPrecondition(format!(
                    "the job's staged file is on node {node}, which is not live; upload it again"
                )));
            }
            Some(n) if excluded.contains(node) || n.draining => {
                return Err(ApiError::Unavailable(format!(
                    "node {node}, which holds the job's staged file, cannot take it now"
                )));
            }
            Some(n) if !n.device_types.contains(&r.connection.device_type) => {
                return Err(ApiError::InvalidArgument(format!(
                    "node {node}, which holds the job's staged file, does not serve device_type {:?}",
                    r.connection.device_type
                )));
            }
            Some(_) if r.strategy == Strategy::Fifo => return Ok(node.to_string()),
            Some(_) => {}
        }
        let owner = self.place_any(nodes, r, excluded).await?;
        if owner != node {
            return Err(ApiError::FailedPrecondition(format!(
                "device {}'s pinned worker is on node {owner} and the staged file on node {node}: \
                 upload the file with node_id {owner}, or use the fifo strategy",
                r.connection.device
            )));
        }
        Ok(owner)
    }

    async fn place_any(
        &self,
        nodes: &NodeMap,
        r: &JobRequest,
        excluded: &HashSet<String>,
    ) -> Result<String, ApiError> {
        if nodes.is_empty() {
            return Err(ApiError::Unavailable(format!(
                "no node agent is live (none registered under {}/nodes/ in etcd)",
                self.prefix.trim_end_matches('/')
            )));
        }
        let device_type = &r.connection.device_type;
        if !nodes
            .values()
            .any(|n| n.device_types.iter().any(|t| t == device_type))
        {
            let served: BTreeSet<&str> = nodes
                .values()
                .flat_map(|n| n.device_types.iter().map(String::as_str))
                .collect();
            return Err(ApiError::InvalidArgument(format!(
                "connection.device_type {device_type:?} is served by no live node agent; served: {}",
                served.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        let open = views(nodes, excluded, device_type);
        if r.strategy == Strategy::Fifo {
            return choose_fifo(&open, |n| rand::random_range(0..n))
                .map(|n| n.node_id.clone())
                .ok_or_else(|| {
                    ApiError::ResourceExhausted(format!(
                        "no node can take a fifo job: {} live, all draining, refusing, or \
                         without fifo capacity",
                        nodes.len()
                    ))
                });
        }
        let device = r.connection.device.to_string();
        let live = |p: &Placed| {
            nodes
                .get(&p.node_id)
                .is_some_and(|n| n.lease_id == p.lease_id)
                && !excluded.contains(&p.node_id)
        };
        if let Some(p) = self.cache().get(&device)
            && live(p)
        {
            return Ok(p.node_id.clone());
        }
        let key = placement_key(&self.prefix, &device);
        if let Some(owner) = self.kv.get(&key).await? {
            let owner = String::from_utf8_lossy(&owner).into_owned();
            match nodes.get(&owner) {
                Some(n) if !excluded.contains(&owner) => {
                    return Ok(self.remember(&device, &owner, n.lease_id));
                }
                // The owner refused the device or left: the placement goes, unless another
                // replica changed it meanwhile.
                _ => self.unplace(&device, &owner).await?,
            }
        }
        let open = self.with_unreported(open);
        let choice = choose_pinned(&open, &device, excluded).ok_or_else(|| {
            ApiError::ResourceExhausted(format!(
                "no node can take device {device}: {} live, all full of busy pinned workers \
                 (max_pinned_workers), draining or refusing",
                nodes.len()
            ))
        })?;
        // Counted before the claim's round trip: the placements of a burst run concurrently,
        // and each must see the ones chosen before it.
        let chosen = choice.node_id.clone();
        if let Some(reported) = nodes.get(&chosen) {
            self.count_placed(reported, 1);
        }
        // Concurrent replicas agree on one owner: the first claim wins, on its node's lease.
        let claimed = self
            .kv
            .put_if_absent(&key, &choice.node_id, choice.lease_id)
            .await;
        let owner = claimed.map(|o| String::from_utf8_lossy(&o).into_owned());
        if owner.as_ref().ok() != Some(&chosen)
            && let Some(reported) = nodes.get(&chosen)
        {
            self.count_placed(reported, -1);
        }
        let owner = owner?;
        match nodes.get(&owner) {
            Some(n) if !excluded.contains(&owner) => Ok(self.remember(&device, &owner, n.lease_id)),
            _ => Err(ApiError::Unavailable(format!(
                "device {device} is placed on node {owner}, which cannot take it now; retry"
            ))),
        }
    }

    fn remember(&self, device: &str, node_id: &str, lease_id: i64) -> String {
        self.cache().insert(
            device.to_string(),
            Placed {
                node_id: node_id.to_string(),
                lease_id,
            },
        );
        node_id.to_string()
    }

    /// Removes the device's placement if it still names `node_id`.
    pub async fn unplace(&self, device: &str, node_id: &str) -> Result<(), ApiError> {
        self.forget(device, node_id);
        self.kv
            .delete_if(&placement_key(&self.prefix, device), node_id)
            .await
    }

    /// Drops the cached placement of `device` on `node_id` (the node refused or handed back
    /// a job): the next job of the device reads the claim again.
    pub fn forget(&self, device: &str, node_id: &str) {
        let mut cache = self.cache();
        if cache.get(device).is_some_and(|p| p.node_id == node_id) {
            cache.remove(device);
        }
    }

    /// Drops every cached placement on `node_id` (it was fenced).
    pub fn forget_node(&self, node_id: &str) {
        self.cache().retain(|_, p| p.node_id != node_id);
    }

    /// Keeps only the cached placements whose node still has the lease they were read with.
    pub fn retain_live(&self, nodes: &NodeMap) {
        self.cache().retain(|_, p| {
            nodes
                .get(&p.node_id)
                .is_some_and(|n| n.lease_id == p.lease_id)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;
    use netpulse_model::RequestLimits;
    use netpulse_proto::api;
    use proptest::prelude::*;

    fn record(id: &str, lease_id: i64, free: u32, types: &[&str]) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            address: format!("{id}:1"),
            max_pinned_workers: 10,
            max_fifo_concurrency: 4,
            pinned_workers: 10 - free,
            fifo_running: 0,
            queued_jobs: 0,
            idle_pinned_workers: 0,
            draining: false,
            version: "test".into(),
            started_unix_ms: 0,
            lease_id,
            device_types: types.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn nodes(records: Vec<NodeRecord>) -> NodeMap {
        records
            .into_iter()
            .map(|r| (r.node_id.clone(), r))
            .collect()
    }

    fn request(host: &str, device_type: &str, strategy: api::Strategy) -> JobRequest {
        let req = api::ExecuteRequest {
            connection: Some(api::Connection {
                host: host.into(),
                username: "admin".into(),
                password: "pw".into(),
                device_type: device_type.into(),
                ..Default::default()
            }),
            commands: vec!["show clock".into()],
            strategy: strategy as i32,
            ..Default::default()
        };
        JobRequest::from_wire(req, &RequestLimits::default()).unwrap()
    }

    const PINNED: api::Strategy = api::Strategy::Pinned;

    #[tokio::test]
    async fn a_new_device_goes_to_the_freest_node_and_replicas_agree_on_it() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::default());
        let (one, two) = (
            Placements::new(kv.clone(), "/np"),
            Placements::new(kv, "/np"),
        );
        let mut view = nodes(vec![
            record("a", 1, 8, &["cisco_ios"]),
            record("b", 2, 2, &["cisco_ios"]),
        ]);
        let r = request("192.0.2.1", "cisco_ios", PINNED);
        let none = HashSet::new();
        assert_eq!(one.place(&view, &r, &none).await.unwrap(), "a");
        // Another replica, and a changed load view: the claim stands.
        view.get_mut("b").unwrap().pinned_workers = 0;
        assert_eq!(two.place(&view, &r, &none).await.unwrap(), "a");
        assert_eq!(one.place(&view, &r, &none).await.unwrap(), "a");
        // A new device sees the new loads.
        let other = request("192.0.2.2", "cisco_ios", PINNED);
        assert_eq!(two.place(&view, &other, &none).await.unwrap(), "b");
    }

    #[tokio::test]
    async fn a_burst_over_equal_nodes_lands_evenly_and_a_report_takes_in_what_it_holds() {
        let p = Placements::new(Arc::new(MemoryKv::default()), "/np");
        let ios = &["cisco_ios"];
        let mut view = nodes(vec![
            record("a", 1, 10, ios),
            record("b", 2, 10, ios),
            record("c", 3, 10, ios),
        ]);
        // Almost equal: without counting its own placements, a replica would send the whole
        // burst to the freest node.
        for (n, max) in view.values_mut().zip([1000, 999, 998]) {
            n.max_pinned_workers = max;
            n.pinned_workers = 0;
        }
        let mut landed: HashMap<String, usize> = HashMap::new();
        for i in 0..300 {
            let r = request(
                &format!("10.0.{}.{}", i / 250, i % 250),
                "cisco_ios",
                PINNED,
            );
            let node = p.place(&view, &r, &HashSet::new()).await.unwrap();
            *landed.entry(node).or_default() += 1;
        }
        for (node, n) in &landed {
            assert!((90..=110).contains(n), "{node} got {n} of 300: {landed:?}");
        }
        // Node a reports mid-burst, holding 50 of its devices by then: the rest stay counted.
        let held = landed["a"] as u32;
        view.get_mut("a").unwrap().pinned_workers = 50;
        let seen = |view: &NodeMap| {
            let open = views(view, &HashSet::new(), "cisco_ios");
            p.with_unreported(open)
                .into_iter()
                .find(|n| n.node_id == "a")
                .unwrap()
                .pinned_workers
        };
        assert_eq!(seen(&view), held);
        assert_eq!(p.since_report.lock().unwrap()["a"].count, held - 50);
        // A node registered again (a new lease) starts over from its report.
        view.get_mut("a").unwrap().lease_id = 99;
        assert_eq!(seen(&view), 50);
        assert!(!p.since_report.lock().unwrap().contains_key("a"));
    }

    #[test]
    fn the_tie_break_spreads_similar_device_keys() {
        let nodes = vec![node("a", 0, 10), node("b", 0, 10), node("c", 0, 10)];
        let mut landed: HashMap<String, usize> = HashMap::new();
        for i in 0..300 {
            let d = format!("10.0.{}.{}:22", i / 250, i % 250);
            let n = choose_pinned(&nodes, &d, &HashSet::new()).unwrap();
            *landed.entry(n.node_id.clone()).or_default() += 1;
        }
        for (node, n) in &landed {
            assert!((70..=130).contains(n), "{node} got {n} of 300: {landed:?}");
        }
    }

    #[tokio::test]
    async fn a_dead_or_refusing_owner_loses_the_device_to_another_node() {
        let mem = Arc::new(MemoryKv::default());
        let p = Placements::new(mem.clone(), "/np");
        let view = nodes(vec![
            record("a", 1, 8, &["cisco_ios"]),
            record("b", 2, 2, &["cisco_ios"]),
        ]);
        let r = request("192.0.2.1", "cisco_ios", PINNED);
        assert_eq!(p.place(&view, &r, &HashSet::new()).await.unwrap(), "a");
        // The owner refused the job: excluded, its claim goes and the device moves.
        let refused: HashSet<String> = ["a".to_string()].into();
        assert_eq!(p.place(&view, &r, &refused).await.unwrap(), "b");
        assert_eq!(p.place(&view, &r, &HashSet::new()).await.unwrap(), "b");
        // The owner's lease ends and it leaves the cluster: its claim is gone with the lease.
        mem.revoke(2);
        let view = nodes(vec![record("a", 1, 8, &["cisco_ios"])]);
        p.retain_live(&view);
        assert_eq!(p.place(&view, &r, &HashSet::new()).await.unwrap(), "a");
        // The same node back under a new lease: the cached placement is not trusted.
        let view = nodes(vec![
            record("a", 7, 8, &["cisco_ios"]),
            record("c", 8, 9, &["cisco_ios"]),
        ]);
        mem.revoke(1);
        assert_eq!(p.place(&view, &r, &HashSet::new()).await.unwrap(), "c");
    }

    #[tokio::test]
    async fn only_nodes_serving_the_device_type_are_chosen_and_refusals_say_why() {
        let p = Placements::new(Arc::new(MemoryKv::default()), "/np");
        let none = HashSet::new();
        let empty = NodeMap::new();
        let r = request("192.0.2.1", "cisco_ios", PINNED);
        assert!(matches!(
            p.place(&empty, &r, &none).await,
            Err(ApiError::Unavailable(m)) if m.contains("no node agent is live")
        ));
        let view = nodes(vec![
            record("junos-only", 1, 9, &["juniper_junos"]),
            record("ios", 2, 1, &["cisco_ios", "cisco_xe"]),
        ]);
        assert_eq!(p.place(&view, &r, &none).await.unwrap(), "ios");
        let fifo = request("192.0.2.9", "juniper_junos", api::Strategy::Fifo);
        for _ in 0..10 {
            assert_eq!(p.place(&view, &fifo, &none).await.unwrap(), "junos-only");
        }
        let unknown = request("192.0.2.3", "ios-xr", PINNED);
        match p.place(&view, &unknown, &none).await {
            Err(ApiError::InvalidArgument(m)) => assert_eq!(
                m,
                "connection.device_type \"ios-xr\" is served by no live node agent; served: cisco_ios, cisco_xe, juniper_junos"
            ),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
        // Full everywhere that serves the type.
        let full = nodes(vec![record("ios", 2, 0, &["cisco_ios"])]);
        assert!(matches!(
            p.place(&full, &request("192.0.2.4", "cisco_ios", PINNED), &none)
                .await,
            Err(ApiError::ResourceExhausted(_))
        ));
    }

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
            idle_pinned_workers: 0,
        }
    }

    #[test]
    fn a_full_node_with_idle_workers_takes_a_device_only_when_no_node_has_a_free_place() {
        let mut full = node("a", 10, 10);
        full.idle_pinned_workers = 3;
        let busy = node("b", 10, 10);
        let free = node("c", 9, 10);
        let none = HashSet::new();
        let pick = |nodes: &[NodeView]| {
            choose_pinned(nodes, "192.0.2.1:22", &none).map(|n| n.node_id.clone())
        };
        assert_eq!(
            pick(&[full.clone(), busy.clone(), free]).as_deref(),
            Some("c")
        );
        assert_eq!(pick(&[full.clone(), busy.clone()]).as_deref(), Some("a"));
        // Three unreported placements used its idle workers up.
        full.pinned_workers = 13;
        assert_eq!(pick(&[full, busy]), None);
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
