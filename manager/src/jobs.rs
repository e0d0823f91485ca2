//! Job queries and commands that any replica answers for any job: get, watch, list, cancel,
//! and bulk submits.

use netpulse_model::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::EventType;
use netpulse_proto::agent::{CancelJob, manager_message::Msg as Out};
use netpulse_proto::api::{
    BulkRejection, ExecuteBulkRequest, ExecuteBulkResponse, Job, JobStatus, ListJobsRequest,
    ListJobsResponse,
};
use netpulse_proto::manager::ActiveJob;
use prost::Message;
use tokio::sync::mpsc;
use tracing::debug;

use crate::error::ApiError;
use crate::record::{is_final, looks_like_job_id};
use crate::scheduler::Scheduler;

/// Most devices in one bulk request.
pub const MAX_BULK_DEVICES: usize = 10_000;
/// Most records a ListJobs call reads while filtering, so one call stays cheap.
const MAX_SCANNED_PER_LIST: usize = 20_000;
/// How long a cancel of another replica's job waits for that job to end.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

fn check_id(id: &str) -> Result<(), ApiError> {
    if looks_like_job_id(id) {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "id must be a job id (28 lower-case hex digits), got {id:?}"
        )))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "job {id} not found (never submitted, or its result_ttl has passed)"
    ))
}

impl Scheduler {
    pub async fn get_job(&self, id: &str) -> Result<Job, ApiError> {
        check_id(id)?;
        self.store.get(id).await?.ok_or_else(|| not_found(id))
    }

    /// Streams the job at every status change until it is final. Errors before the first
    /// message (unknown id) are returned at once.
    pub async fn watch_job(
        self: &Arc<Self>,
        id: &str,
        out: mpsc::Sender<Result<Job, ApiError>>,
    ) -> Result<(), ApiError> {
        check_id(id)?;
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

    /// Cancels a queued or running job. This replica's jobs end at once; another replica's
    /// job is cancelled on its node and the answer waits (briefly) for its end.
    pub async fn cancel_job(self: &Arc<Self>, id: &str) -> Result<Job, ApiError> {
        check_id(id)?;
        let mine = self.lock().jobs.get(id).map(|a| a.node.clone());
        if let Some(node) = mine {
            if let Some(node) = node {
                let _ = self
                    .cluster
                    .send(&node, Out::Cancel(CancelJob { job_id: id.into() }));
            }
            let mut updates = self.lock().jobs.get(id).map(|a| a.updates.subscribe());
            self.end(
                id,
                JobStatus::Canceled,
                ErrorKind::Canceled,
                "canceled by a client".into(),
            );
            if let Some(rx) = updates.as_mut() {
                let _ = tokio::time::timeout(
                    self.cfg.call_timeout,
                    rx.wait_for(|j| is_final(j.status())),
                )
                .await;
            }
            return self.get_job(id).await;
        }
        let job = self.get_job(id).await?;
        if is_final(job.status()) {
            return Err(ApiError::FailedPrecondition(format!(
                "job {id} has already ended ({})",
                job.status().as_str_name()
            )));
        }
        let active = self.store.get_raw(&self.store.active_key(id)).await?;
        let node = active
            .and_then(|(v, _)| ActiveJob::decode(v.as_slice()).ok())
            .map(|a| a.node_id)
            .unwrap_or_default();
        if node.is_empty() {
            return Err(ApiError::Unavailable(format!(
                "job {id} is between nodes; retry the cancel"
            )));
        }
        self.cluster
            .send(&node, Out::Cancel(CancelJob { job_id: id.into() }))?;
        self.wait_final(job, CANCEL_WAIT).await
    }

    /// Follows a job's record until it is final or `limit` has passed; returns the last seen.
    pub async fn wait_final(self: &Arc<Self>, job: Job, limit: Duration) -> Result<Job, ApiError> {
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

    /// Submits one job per device; a device's refusal does not stop the others.
    pub async fn execute_bulk(
        self: &Arc<Self>,
        req: ExecuteBulkRequest,
    ) -> Result<ExecuteBulkResponse, ApiError> {
        let template = req
            .template
            .ok_or_else(|| ApiError::InvalidArgument("template is required".into()))?;
        if template.wait {
            return Err(ApiError::InvalidArgument(
                "bulk submits do not wait: set template.wait to false and watch the jobs".into(),
            ));
        }
        if req.devices.is_empty() || req.devices.len() > MAX_BULK_DEVICES {
            return Err(ApiError::InvalidArgument(format!(
                "devices must hold 1..={MAX_BULK_DEVICES} entries, got {}",
                req.devices.len()
            )));
        }
        let mut set = tokio::task::JoinSet::new();
        for (index, d) in req.devices.into_iter().enumerate() {
            let mut r = template.clone();
            let mut c = r.connection.take().unwrap_or_default();
            if let Some(o) = d.connection {
                merge(&mut c, o);
            }
            r.connection = Some(c);
            if !d.commands.is_empty() || !d.config.is_empty() {
                r.commands = d.commands;
                r.config = d.config;
            }
            if !r.idempotency_key.is_empty() {
                r.idempotency_key = format!("{}/{index}", r.idempotency_key);
            }
            let s = self.clone();
            set.spawn(async move {
                let host = r
                    .connection
                    .as_ref()
                    .map(|c| c.host.clone())
                    .unwrap_or_default();
                (index, host, s.submit(r).await.map(|x| x.job))
            });
        }
        let mut done = Vec::with_capacity(set.len());
        while let Some(r) = set.join_next().await {
            done.push(
                r.map_err(|e| ApiError::Internal(format!("a bulk submit task failed: {e}")))?,
            );
        }
        done.sort_by_key(|(i, _, _)| *i);
        let mut resp = ExecuteBulkResponse::default();
        for (index, host, r) in done {
            match r {
                Ok(job) => resp.jobs.push(job),
                Err(e) => resp.rejected.push(BulkRejection {
                    index: index as u32,
                    host,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(resp)
    }
}

/// Overrides the template's connection with the fields the device sets.
fn merge(c: &mut netpulse_proto::api::Connection, o: netpulse_proto::api::Connection) {
    let text = |t: &mut String, v: String| {
        if !v.is_empty() {
            *t = v
        }
    };
    let num = |t: &mut u32, v: u32| {
        if v != 0 {
            *t = v
        }
    };
    text(&mut c.host, o.host);
    num(&mut c.port, o.port);
    text(&mut c.username, o.username);
    text(&mut c.password, o.password);
    text(&mut c.device_type, o.device_type);
    text(&mut c.secret, o.secret);
    num(&mut c.keepalive_seconds, o.keepalive_seconds);
    num(&mut c.connect_timeout_seconds, o.connect_timeout_seconds);
    num(&mut c.command_timeout_seconds, o.command_timeout_seconds);
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpulse_proto::api::Connection;

    #[test]
    fn device_fields_override_the_template_only_where_set() {
        let mut c = Connection {
            host: "t".into(),
            port: 22,
            username: "admin".into(),
            password: "p".into(),
            device_type: "cisco_ios".into(),
            ..Default::default()
        };
        merge(
            &mut c,
            Connection {
                host: "192.0.2.7".into(),
                port: 2222,
                ..Default::default()
            },
        );
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.username.as_str(),
                c.device_type.as_str()
            ),
            ("192.0.2.7", 2222, "admin", "cisco_ios")
        );
    }

    #[test]
    fn ids_are_checked_before_any_lookup() {
        assert!(matches!(
            check_id("x/../y"),
            Err(ApiError::InvalidArgument(_))
        ));
        assert!(check_id(&crate::record::new_job_id()).is_ok());
    }
}
