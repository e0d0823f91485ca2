//! Running jobs' live updates (output pieces, transfer progress) on their way to watchers.
//! Agents send every event to every manager session, so each replica hears them and serves
//! its own watchers; nothing is stored. A job nobody watches costs one map lookup per update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use netpulse_proto::worker::JobUpdate;
use tokio::sync::broadcast;

/// Updates a slow watcher may fall behind by before it misses some (it then sees the gap in
/// the chunks' offsets; the final job holds everything).
const BACKLOG: usize = 256;

#[derive(Default)]
pub struct Live {
    subs: Mutex<HashMap<String, broadcast::Sender<JobUpdate>>>,
}

/// A watcher's subscription; the job's entry goes with its last subscriber.
pub struct Subscription {
    pub rx: broadcast::Receiver<JobUpdate>,
    live: Arc<Live>,
    job_id: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.live.subs.lock().expect("lock");
        // This subscription's receiver still counts until the fields drop.
        if subs
            .get(&self.job_id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            subs.remove(&self.job_id);
        }
    }
}

impl Live {
    pub fn subscribe(self: &Arc<Self>, job_id: &str) -> Subscription {
        let rx = self
            .subs
            .lock()
            .expect("lock")
            .entry(job_id.to_string())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe();
        Subscription {
            rx,
            live: self.clone(),
            job_id: job_id.to_string(),
        }
    }

    pub fn publish(&self, u: JobUpdate) {
        if let Some(tx) = self.subs.lock().expect("lock").get(&u.job_id) {
            let _ = tx.send(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_reach_the_job_s_watchers_only_and_the_entry_goes_with_the_last() {
        let live = Arc::new(Live::default());
        live.publish(JobUpdate {
            job_id: "a".into(),
            update: None,
        });
        let mut a1 = live.subscribe("a");
        let a2 = live.subscribe("a");
        let mut b = live.subscribe("b");
        live.publish(JobUpdate {
            job_id: "a".into(),
            update: None,
        });
        assert_eq!(a1.rx.try_recv().unwrap().job_id, "a");
        assert!(b.rx.try_recv().is_err());
        drop(a2);
        assert_eq!(live.subs.lock().unwrap().len(), 2);
        drop(a1);
        assert_eq!(live.subs.lock().unwrap().len(), 1, "a's entry is gone");
    }
}
