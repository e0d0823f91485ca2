//! Records NetPulse keeps in etcd, as JSON so operators can read them with etcdctl.

use serde::{Deserialize, Serialize};

/// A node agent's registration, at `<prefix>/nodes/<node_id>` on the agent's lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    /// The gRPC address managers dial.
    pub address: String,
    pub max_pinned_workers: u32,
    pub max_fifo_concurrency: u32,
    pub pinned_workers: u32,
    pub fifo_running: u32,
    pub queued_jobs: u32,
    /// Connected pinned workers with nothing to do: a node without free places still takes a
    /// new device by giving up the least recently used of them.
    #[serde(default)]
    pub idle_pinned_workers: u32,
    /// The node takes no new jobs (a manager asked it to drain).
    #[serde(default)]
    pub draining: bool,
    pub version: String,
    pub started_unix_ms: u64,
    pub lease_id: i64,
    /// The `device_type` names this node's workers speak (aliases included): the manager
    /// accepts a job only for a type some live node serves, and places it only there.
    #[serde(default)]
    pub device_types: Vec<String>,
}

pub fn nodes_prefix(prefix: &str) -> String {
    format!("{}/nodes/", prefix.trim_end_matches('/'))
}

pub fn node_key(prefix: &str, node_id: &str) -> String {
    format!("{}{node_id}", nodes_prefix(prefix))
}
