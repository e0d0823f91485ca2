//! Manager liveness and the adoption of jobs whose manager is gone.
//!
//! Each manager keeps `<prefix>/managers/<id>` alive on its own lease (`liveness`). A periodic scan reads
//! `<prefix>/active/`; a job whose owner has no such key is adopted with a transaction that
//! checks the entry did not change meanwhile, so exactly one replica takes it. An adopted job
//! is dispatched again to the node it was on: the agent never runs a job id twice (it answers
//! with the job's events or its recent result). A job that was running is only looked up
//! (`resume_only`); if its node is gone, it fails. A replica that finds one of its own jobs
//! owned by another manager (its lease lapsed and the job was adopted) lets it go. A job whose
//! credentials do not open (`sealing`: held in the dead owner's memory, or sealed with a key
//! this replica lacks) fails `credentials_unavailable`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use netpulse_proto::agent::CancelJob;
use netpulse_proto::agent::manager_message::Msg;
use netpulse_proto::api::{ExecuteRequest, Job, JobStatus};
use netpulse_proto::manager::ActiveJob;
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::ApiError;
use crate::record::is_final;
use crate::scheduler::Scheduler;
use crate::sealing::Unsealed;
use crate::table::Active;
use netpulse_model::{ErrorKind, JobRequest};

pub(crate) fn managers_prefix(prefix: &str) -> String {
    format!("{}/managers/", prefix.trim_end_matches('/'))
}

/// Adopts orphaned jobs while this manager is registered (see `liveness`), until `stop`.
pub async fn run(
    s: Arc<Scheduler>,
    lease: watch::Receiver<Option<i64>>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if lease.borrow().is_some()
            && let Err(e) = adopt_orphans(&s).await
        {
            warn!(error = %e, "scanning for orphaned jobs failed");
        }
    }
}

/// The ids of the managers whose liveness key exists.
pub(crate) async fn alive_managers(
    etcd: &etcd_client::Client,
    prefix: &str,
    timeout: Duration,
) -> Result<HashSet<String>, String> {
    let prefix = managers_prefix(prefix);
    let managers = tokio::time::timeout(
        timeout,
        etcd.clone().get(
            prefix.as_str(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        ),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(managers
        .kvs()
        .iter()
        .map(|kv| {
            String::from_utf8_lossy(kv.key())
                .trim_start_matches(&prefix)
                .to_string()
        })
        .collect())
}

/// One scan: adopts jobs whose manager is gone and lets go of jobs another replica adopted.
pub async fn adopt_orphans(s: &Arc<Scheduler>) -> Result<usize, ApiError> {
    let mut etcd = s.etcd.clone();
    let timeout = s.cfg.call_timeout;
    let unavailable = |e: String| ApiError::Unavailable(format!("adoption scan: {e}"));
    let alive = alive_managers(&etcd, &s.cfg.prefix, timeout)
        .await
        .map_err(unavailable)?;
    let active_prefix = s.store.active_prefix();
    let entries = tokio::time::timeout(
        timeout,
        etcd.get(
            active_prefix.as_str(),
            Some(GetOptions::new().with_prefix()),
        ),
    )
    .await
    .map_err(|_| unavailable("timed out".into()))?
    .map_err(|e| unavailable(e.to_string()))?;
    let mut adopted = 0;
    for kv in entries.kvs() {
        let id = String::from_utf8_lossy(kv.key())
            .trim_start_matches(&active_prefix)
            .to_string();
        let Ok(mut rec) = ActiveJob::decode(kv.value()) else {
            warn!(job_id = %id, "an active-job entry does not decode; leaving it");
            continue;
        };
        let mine = s.lock().jobs.contains_key(&id);
        if rec.manager_id == s.cfg.manager_id {
            if mine {
                continue;
            }
        } else if alive.contains(&rec.manager_id) {
            if mine {
                info!(job_id = %id, owner = %rec.manager_id, "another manager adopted this job; letting it go");
                if s.lock().jobs.remove(&id).is_some() {
                    s.tell(|l| l.released(&id));
                }
            }
            continue;
        }
        // Opened before the entry names this replica: an error names the owner that died.
        let request = s.cfg.sealer.request(&id, &rec);
        rec.manager_id = s.cfg.manager_id.clone();
        let key = kv.key().to_vec();
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::put(key, rec.encode_to_vec(), None)]);
        let won = tokio::time::timeout(timeout, etcd.txn(txn))
            .await
            .map_err(|_| unavailable("timed out".into()))?
            .map_err(|e| unavailable(e.to_string()))?
            .succeeded();
        if won && adopt(s, &id, rec, request).await? {
            adopted += 1;
        }
    }
    if adopted > 0 {
        info!(adopted, "adopted jobs of managers that are gone");
    }
    Ok(adopted)
}

async fn adopt(
    s: &Arc<Scheduler>,
    id: &str,
    rec: ActiveJob,
    request: Result<ExecuteRequest, Unsealed>,
) -> Result<bool, ApiError> {
    let job: Option<Job> = s.store.get(id).await?;
    let wire = match request {
        Ok(wire) => wire,
        Err(e) => {
            fail_unopened(s, id, job, &rec, e).await?;
            return Ok(false);
        }
    };
    let request = JobRequest::from_wire(wire.clone(), &s.cfg.limits);
    let (job, request) = match (job, request) {
        (Some(j), Ok(r)) if !is_final(j.status()) => (j, r),
        (job, request) => {
            // Ended already, gone, or unreadable: nothing to drive.
            if let (Some(j), Err(e)) = (&job, &request)
                && !is_final(j.status())
            {
                warn!(job_id = %id, error = %e, "an adopted job's request is no longer valid");
            }
            s.store
                .write(vec![crate::store::Op::Delete {
                    key: s.store.active_key(id),
                }])
                .await?;
            return Ok(false);
        }
    };
    let running = job.status() == JobStatus::Running;
    let node = (!rec.node_id.is_empty()).then_some(rec.node_id);
    // The queue timeout counts from the submit, not from the adoption.
    let age = Duration::from_millis((crate::record::now_ms() - job.created_unix_ms).max(0) as u64);
    let queue_deadline = Instant::now() + request.options.queue_timeout.saturating_sub(age);
    let mut dispatch = request.to_dispatch(id);
    dispatch.resume_only = running;
    let slot = s.slots.clone().try_acquire_owned().ok();
    let (mut active, _) = Active::new(job, request, wire, None, queue_deadline, slot);
    active.resume_only = running;
    active.running_recorded = running;
    active.recorded = true;
    // A job of this replica's own that was being submitted while the scan read it (written,
    // not yet in the table) is already driven: never replace it.
    let job = active.job.clone();
    match s.lock().jobs.entry(id.to_string()) {
        std::collections::hash_map::Entry::Occupied(_) => return Ok(false),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(active);
        }
    }
    s.tell_accepted(&job, true);
    let Some(node) = node else {
        return Ok(true); // pending: the sweep places it
    };
    if let Some(a) = s.lock().jobs.get_mut(id) {
        a.node = Some(node.clone());
    }
    if !s.cluster.nodes().contains_key(&node) {
        // The sweep fails it if the node does not come back within the grace.
        return Ok(true);
    }
    if let Err(e) = s.cluster.send(
        &node,
        netpulse_proto::agent::manager_message::Msg::Dispatch(dispatch),
    ) {
        warn!(job_id = %id, %node, error = %e, "asking the node about an adopted job failed; the sweep retries");
        if let Some(a) = s.lock().jobs.get_mut(id) {
            a.node = None;
        }
    }
    Ok(true)
}

/// Ends an adopted job whose credentials cannot be put back: without them it cannot be
/// dispatched again, and leaving it queued would only let it expire with a less useful reason.
/// Its node, which may still hold it, is told to cancel it, so it does not run unrecorded.
async fn fail_unopened(
    s: &Arc<Scheduler>,
    id: &str,
    job: Option<Job>,
    rec: &ActiveJob,
    why: Unsealed,
) -> Result<(), ApiError> {
    let mut ops = vec![crate::store::Op::Delete {
        key: s.store.active_key(id),
    }];
    if let Some(mut job) = job.filter(|j| !is_final(j.status())) {
        warn!(job_id = %id, error = %why, "an adopted job cannot run without its credentials");
        if !rec.node_id.is_empty() {
            let cancel = CancelJob { job_id: id.into() };
            let _ = s.cluster.send(&rec.node_id, Msg::Cancel(cancel));
        }
        crate::record::ended(
            &mut job,
            JobStatus::Failed,
            ErrorKind::CredentialsUnavailable,
            why.to_string(),
        );
        let ttl = rec.request.as_ref().map_or(0, |r| r.result_ttl_seconds);
        let ttl = Duration::from_secs(if ttl == 0 {
            3600
        } else {
            u64::from(ttl.min(604_800))
        });
        ops.insert(0, s.store.job_op(job, Some(ttl)));
    }
    s.store.write(ops).await
}
