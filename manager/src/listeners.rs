//! Who hears about the jobs this replica drives. Metrics listen today; webhooks and audit plug
//! in the same way, without reading the scheduler's state.

use std::sync::Arc;

use netpulse_proto::api::{ExecuteRequest, Job};

use crate::store::Op;

pub trait JobListener: Send + Sync {
    /// This replica drives the job from now on: submitted here (`adopted` false), or taken
    /// over from a replica that is gone.
    fn accepted(&self, job: &Job, request: &ExecuteRequest, adopted: bool);
    /// A job this replica drives started running on its node.
    fn started(&self, _job: &Job) {}
    /// A job this replica drove is final; `writes` go to etcd in the same transaction as its
    /// final record.
    fn finished(&self, job: &Job, writes: &mut Vec<Op>);
    /// Another replica took the job over; this one drives it no more.
    fn released(&self, job_id: &str);
}

pub type Listeners = Vec<Arc<dyn JobListener>>;
