//! Who hears about the jobs this replica drives. Metrics listen today; webhooks and audit plug
//! in the same way, without reading the scheduler's state.

use std::sync::Arc;

use netpulse_proto::api::Job;

pub trait JobListener: Send + Sync {
    /// This replica drives the job from now on: submitted here (`adopted` false), or taken
    /// over from a replica that is gone.
    fn accepted(&self, job: &Job, adopted: bool);
    /// A job this replica drove is final (its record is queued for writing).
    fn finished(&self, job: &Job);
    /// Another replica took the job over; this one drives it no more.
    fn released(&self, job_id: &str);
}

pub type Listeners = Vec<Arc<dyn JobListener>>;
