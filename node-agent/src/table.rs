//! The agent's table of workers: one row per pinned device (kept after its worker exits, for
//! the last exit code) and one per running one-shot worker.

use std::collections::HashMap;
use std::sync::Mutex;

use netpulse_proto::agent::{Strategy, WorkerInfo, WorkerState};

#[derive(Default)]
pub struct WorkerTable {
    rows: Mutex<HashMap<String, WorkerInfo>>,
}

impl WorkerTable {
    /// Edits the row under `key` (created empty when missing) and returns a copy of it.
    pub fn update(&self, key: &str, edit: impl FnOnce(&mut WorkerInfo)) -> WorkerInfo {
        let mut rows = self.rows.lock().expect("lock");
        let row = rows.entry(key.to_string()).or_default();
        edit(row);
        row.clone()
    }

    pub fn get(&self, key: &str) -> Option<WorkerInfo> {
        self.rows.lock().expect("lock").get(key).cloned()
    }

    pub fn remove(&self, key: &str) {
        self.rows.lock().expect("lock").remove(key);
    }

    pub fn snapshot(&self) -> Vec<WorkerInfo> {
        let mut v: Vec<WorkerInfo> = self.rows.lock().expect("lock").values().cloned().collect();
        v.sort_by(|a, b| a.device.cmp(&b.device).then(a.worker_id.cmp(&b.worker_id)));
        v
    }

    /// Pinned devices holding a slot: a live worker or jobs waiting for one.
    pub fn pinned_in_use(&self) -> usize {
        self.rows
            .lock()
            .expect("lock")
            .values()
            .filter(|w| {
                w.strategy() == Strategy::Pinned
                    && (w.state() != WorkerState::Exited || w.queued_jobs > 0)
            })
            .count()
    }

    pub fn fifo_running(&self) -> usize {
        self.rows
            .lock()
            .expect("lock")
            .values()
            .filter(|w| w.strategy() == Strategy::Fifo)
            .count()
    }

    pub fn queued(&self) -> usize {
        self.rows
            .lock()
            .expect("lock")
            .values()
            .map(|w| w.queued_jobs as usize)
            .sum()
    }
}
