//! The periodic sweep: what the scheduler does with the job table's findings (`JobTable::sweep`)
//! every `sweep_interval`: write the jobs that have run a whole interval, expire the ones
//! queued too long (saying why they waited), fail the running ones whose node stayed gone past
//! the grace, and dispatch the pending ones again.

use std::sync::Arc;

use netpulse_model::ErrorKind;
use netpulse_proto::agent::{CancelJob, manager_message::Msg as Out};
use netpulse_proto::api::JobStatus;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::scheduler::Scheduler;
use crate::table::{Record, Sweep};

impl Scheduler {
    pub(crate) async fn sweep_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sweep(),
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Records jobs that have been running since the last sweep as RUNNING (jobs that end
    /// sooner are written once, final), expires jobs queued too long, fails running jobs whose node left,
    /// and dispatches pending jobs again.
    fn sweep(self: &Arc<Self>) {
        let nodes = self.cluster.nodes();
        // Queued under the lock, so a final write (queued after the job leaves the table)
        // always follows it.
        let Sweep {
            expired,
            lost,
            awaited,
            pending,
        } = self.lock().sweep(
            Instant::now(),
            &nodes,
            self.cfg.node_lost_grace,
            |a, what| {
                let ops = match what {
                    Record::Whole => {
                        let node = a.node.clone().unwrap_or_default();
                        self.record_ops(a.job.clone(), &a.wire, &node)
                    }
                    Record::Running => vec![self.store.job_op(a.job.clone(), None)],
                };
                self.store.write_behind(ops)
            },
        );
        self.placements.retain_live(&nodes);
        for (id, node, waited) in expired {
            if let Some(node) = node {
                let _ = self
                    .cluster
                    .send(&node, Out::Cancel(CancelJob { job_id: id.clone() }));
            }
            let why = self
                .lock()
                .jobs
                .get(&id)
                .map(|a| a.job.queued_reason.clone())
                .filter(|r| !r.is_empty())
                .map_or(String::new(), |r| format!("; it waited because {r}"));
            self.end(
                &id,
                JobStatus::Expired,
                ErrorKind::QueueTimeout,
                format!(
                    "the job did not start within queue_timeout_seconds ({}s){why}",
                    waited.as_secs()
                ),
            );
        }
        for node in awaited {
            warn!(%node, grace = ?self.cfg.node_lost_grace, "node left the cluster with jobs running; they wait for it to register again");
        }
        for (id, node) in lost {
            self.end(
                &id,
                JobStatus::Failed,
                ErrorKind::NodeLost,
                format!(
                    "node {node} left the cluster (its lease ended) while the job ran and did not come back within {}s; it is not run again",
                    self.cfg.node_lost_grace.as_secs()
                ),
            );
        }
        for id in pending {
            self.tracker.spawn(self.clone().redispatch(id));
        }
    }
}
