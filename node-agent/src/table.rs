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

    /// Pinned devices holding a place: a live worker (not one on its way out) or jobs waiting
    /// for one. The places themselves are `Ctx::pinned_slots`: a device counted here before
    /// the exiting worker it replaces is gone waits there for it.
    pub fn pinned_in_use(&self) -> usize {
        self.rows
            .lock()
            .expect("lock")
            .values()
            .filter(|w| {
                w.strategy() == Strategy::Pinned
                    && (!matches!(w.state(), WorkerState::Exited | WorkerState::Exiting)
                        || w.queued_jobs > 0)
            })
            .count()
    }

    /// Connected pinned workers with nothing to do: the places a full node can give up.
    pub fn pinned_idle(&self) -> usize {
        self.rows
            .lock()
            .expect("lock")
            .values()
            .filter(|w| is_idle(w))
            .count()
    }

    /// The least recently used idle pinned worker's device, marked as exiting (so it is
    /// neither counted nor chosen again): a full node gives its place to a new device.
    pub fn take_lru_idle(&self) -> Option<String> {
        let mut rows = self.rows.lock().expect("lock");
        let victim = rows
            .values_mut()
            .filter(|w| is_idle(w))
            .min_by_key(|w| (w.last_job_unix_ms, w.device.clone()))?;
        victim.state = WorkerState::Exiting as i32;
        Some(victim.device.clone())
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

fn is_idle(w: &WorkerInfo) -> bool {
    w.strategy() == Strategy::Pinned && w.state() == WorkerState::Ready && w.queued_jobs == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &WorkerTable, device: &str, state: WorkerState, last_job: u64, queued: u32) {
        t.update(device, |w| {
            w.device = device.into();
            w.strategy = Strategy::Pinned as i32;
            w.state = state as i32;
            w.last_job_unix_ms = last_job;
            w.queued_jobs = queued;
        });
    }

    #[test]
    fn the_least_recently_used_idle_worker_gives_its_place_up() {
        let t = WorkerTable::default();
        row(&t, "a:22", WorkerState::Ready, 300, 0);
        row(&t, "b:22", WorkerState::Ready, 100, 0);
        row(&t, "c:22", WorkerState::Busy, 50, 0);
        row(&t, "d:22", WorkerState::Ready, 10, 2);
        assert_eq!((t.pinned_in_use(), t.pinned_idle()), (4, 2));
        assert_eq!(t.take_lru_idle().as_deref(), Some("b:22"));
        // b is on its way out: no longer counted, never chosen twice.
        assert_eq!((t.pinned_in_use(), t.pinned_idle()), (3, 1));
        assert_eq!(t.take_lru_idle().as_deref(), Some("a:22"));
        assert_eq!(t.take_lru_idle(), None, "busy or with jobs waiting: kept");
    }
}
