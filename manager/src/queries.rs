//! Job queries any replica answers for any job, from the records in etcd: get, watch, list,
//! and waiting for a job's end.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::EventType;
use netpulse_proto::api::{Job, JobStatus, ListJobsRequest, ListJobsResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::error::ApiError;
use crate::live::Live;
use crate::record::{is_final, looks_like_job_id};
use crate::store::JobStore;

/// Most records a ListJobs call reads while filtering, so one call stays cheap.
const MAX_SCANNED_PER_LIST: usize = 20_000;

pub(crate) fn check_id(id: &str) -> Result<(), ApiError> {
    if looks_like_job_id(id) {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "id must be a job id (28 lower-case hex digits), got {id:?}"
        )))
    }
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "job {id} not found (never submitted, or its result_ttl has passed)"
    ))
}

/// The job as last recorded, with one live update in it.
fn with_update(job: &Job, update: netpulse_proto::worker::job_update::Update) -> Job {
    use netpulse_proto::worker::job_update::Update;
    let mut job = job.clone();
    if job.status() == JobStatus::Queued {
        // The update proves it runs; its record may not say so yet.
        job.status = JobStatus::Running as i32;
    }
    match update {
        Update::Output(c) => job.output_chunk = Some(c),
        Update::Progress(p) => job.transfer_progress = Some(p),
    }
    job
}

/// Reads job records; watches are tasks on the manager's tracker that end at `shutdown`.
#[derive(Clone)]
pub struct JobQueries {
    store: JobStore,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Running jobs' output pieces and progress, for watchers.
    pub live: Arc<Live>,
}

impl JobQueries {
    pub fn new(store: JobStore, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        JobQueries {
            store,
            tracker,
            shutdown,
            live: Arc::default(),
        }
    }

    pub async fn get_job(&self, id: &str) -> Result<Job, ApiError> {
        check_id(id)?;
        self.store.get(id).await?.ok_or_else(|| not_found(id))
    }

    /// Streams the job at every status change until it is final, and, while it runs, with
    /// each output piece or transfer progress this replica hears of. Errors before the first
    /// message (unknown id) are returned at once.
    pub async fn watch_job(
        &self,
        id: &str,
        out: mpsc::Sender<Result<Job, ApiError>>,
    ) -> Result<(), ApiError> {
        check_id(id)?;
        // Before the read: an update that comes meanwhile is not missed.
        let mut live = self.live.subscribe(id);
        let (job, rev) = self
            .store
            .get_with_revision(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let s = self.clone();
        let id = id.to_string();
        self.tracker.spawn(async move {
            let mut last = job.status;
            if out.send(Ok(job.clone())).await.is_err() || is_final(job.status()) {
                return;
            }
            let mut latest = job;
            let mut from = rev + 1;
            loop {
                let mut stream = match s.store.watch_job(&id, from).await {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = out.send(Err(e)).await;
                        return;
                    }
                };
                loop {
                    let msg = tokio::select! {
                        m = stream.message() => m,
                        u = live.rx.recv() => {
                            if let Ok(u) = u
                                && let Some(update) = u.update
                            {
                                let job = with_update(&latest, update);
                                if out.send(Ok(job)).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        _ = out.closed() => return,
                        _ = s.shutdown.cancelled() => {
                            let _ = out.send(Err(ApiError::Unavailable("the manager is shutting down; watch again".into()))).await;
                            return;
                        }
                    };
                    let resp = match msg {
                        Ok(Some(r)) if !r.canceled() => r,
                        other => {
                            debug!(job_id = %id, ?other, "job watch ended; watching again");
                            break;
                        }
                    };
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        from = kv.mod_revision() + 1;
                        if ev.event_type() == EventType::Delete {
                            return; // the result expired
                        }
                        let Ok(job) = Job::decode(kv.value()) else { continue };
                        if job.status == last {
                            continue;
                        }
                        last = job.status;
                        latest = job.clone();
                        let done = is_final(job.status());
                        if out.send(Ok(job)).await.is_err() || done {
                            return;
                        }
                    }
                }
                if s.shutdown.is_cancelled() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Jobs in submit order, filtered; a page may hold fewer than `page_size` when many
    /// records did not match (the token then continues after the last one read).
    pub async fn list_jobs(&self, req: ListJobsRequest) -> Result<ListJobsResponse, ApiError> {
        let page_size = match req.page_size {
            0 => 100,
            n @ 1..=1000 => n as usize,
            n => {
                return Err(ApiError::InvalidArgument(format!(
                    "page_size must be 1..=1000 (0 for 100), got {n}"
                )));
            }
        };
        if !req.page_token.is_empty() && !looks_like_job_id(&req.page_token) {
            return Err(ApiError::InvalidArgument(
                "page_token must be a next_page_token from an earlier ListJobs call".into(),
            ));
        }
        let status = JobStatus::try_from(req.status).map_err(|_| {
            ApiError::InvalidArgument(format!("status {} is not a JobStatus", req.status))
        })?;
        let wanted = |j: &Job| {
            (req.host.is_empty() || j.host == req.host)
                && (status == JobStatus::Unspecified || j.status() == status)
                && (req.node_id.is_empty() || j.node_id == req.node_id)
        };
        let mut after = (!req.page_token.is_empty()).then(|| req.page_token.clone());
        let mut jobs = Vec::new();
        let mut scanned = 0;
        loop {
            let chunk = self.store.list(after.as_deref(), 500).await?;
            let full_chunk = chunk.len() == 500;
            for j in chunk {
                scanned += 1;
                after = Some(j.id.clone());
                if wanted(&j) {
                    jobs.push(j);
                    if jobs.len() == page_size {
                        return Ok(ListJobsResponse {
                            jobs,
                            next_page_token: after.unwrap_or_default(),
                        });
                    }
                }
            }
            if !full_chunk {
                return Ok(ListJobsResponse {
                    jobs,
                    next_page_token: String::new(),
                });
            }
            if scanned >= MAX_SCANNED_PER_LIST {
                return Ok(ListJobsResponse {
                    jobs,
                    next_page_token: after.unwrap_or_default(),
                });
            }
        }
    }

    /// Follows a job's record until it is final or `limit` has passed; returns the last seen.
    pub async fn wait_final(&self, job: Job, limit: Duration) -> Result<Job, ApiError> {
        let (tx, mut rx) = mpsc::channel(8);
        self.watch_job(&job.id, tx).await?;
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = job;
        while let Ok(Some(j)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            last = j?;
            if is_final(last.status()) {
                break;
            }
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_any_lookup() {
        assert!(matches!(
            check_id("x/../y"),
            Err(ApiError::InvalidArgument(_))
        ));
        assert!(check_id(&crate::record::new_job_id()).is_ok());
    }
}
