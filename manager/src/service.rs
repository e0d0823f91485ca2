//! The public gRPC services: thin adapters that call the scheduler and map its errors.

use std::pin::Pin;
use std::sync::Arc;

use netpulse_proto::api::cluster_service_server::ClusterService;
use netpulse_proto::api::job_service_server::JobService;
use netpulse_proto::api::*;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::record::is_final;
use crate::scheduler::Scheduler;

#[derive(Clone)]
pub struct Api {
    pub scheduler: Arc<Scheduler>,
}

type JobStream = Pin<Box<dyn Stream<Item = Result<Job, Status>> + Send>>;

/// A span for a traced call, its parent the caller's `traceparent`; None when traces are off
/// (no span is made on the hot path then).
fn traced<T>(req: &Request<T>, span: impl FnOnce() -> tracing::Span) -> Option<tracing::Span> {
    if !netpulse_telemetry::trace::exporting() {
        return None;
    }
    let span = span();
    netpulse_telemetry::trace::set_parent_from_metadata(&span, req.metadata());
    Some(span)
}

impl Api {
    async fn execute_inner(&self, req: Request<ExecuteRequest>) -> Result<Response<Job>, Status> {
        let req = req.into_inner();
        let wait = req.wait;
        let submitted = self.scheduler.submit(req).await?;
        if !wait || is_final(submitted.job.status()) {
            return Ok(Response::new(submitted.job));
        }
        let limit = submitted.wait_limit;
        let id = submitted.job.id.clone();
        let job = match submitted.updates {
            Some(mut rx) => {
                // On shutdown the caller gets the job as it stands, recorded, and can watch it
                // on another replica, which adopts it.
                let ended = tokio::select! {
                    r = tokio::time::timeout(limit, rx.wait_for(|j| is_final(j.status()))) => r.is_ok(),
                    _ = self.scheduler.shutdown.cancelled() => false,
                };
                if !ended {
                    self.scheduler.ensure_recorded(&id).await?;
                }
                rx.borrow().clone()
            }
            None => self.scheduler.wait_final(submitted.job, limit).await?,
        };
        Ok(Response::new(job))
    }
}

#[tonic::async_trait]
impl JobService for Api {
    async fn execute(&self, req: Request<ExecuteRequest>) -> Result<Response<Job>, Status> {
        match traced(&req, || tracing::info_span!("netpulse.execute")) {
            Some(span) => self.execute_inner(req).instrument(span).await,
            None => self.execute_inner(req).await,
        }
    }

    async fn execute_bulk(
        &self,
        req: Request<ExecuteBulkRequest>,
    ) -> Result<Response<ExecuteBulkResponse>, Status> {
        let span = traced(&req, || tracing::info_span!("netpulse.execute_bulk"));
        let bulk = self.scheduler.execute_bulk(req.into_inner());
        let r = match span {
            Some(span) => bulk.instrument(span).await,
            None => bulk.await,
        };
        Ok(Response::new(r?))
    }

    async fn get_job(&self, req: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        Ok(Response::new(
            self.scheduler.get_job(&req.into_inner().id).await?,
        ))
    }

    type WatchJobStream = JobStream;

    async fn watch_job(
        &self,
        req: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        self.scheduler.watch_job(&req.into_inner().id, tx).await?;
        let stream =
            tokio_stream::StreamExt::map(ReceiverStream::new(rx), |r| r.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_jobs(
        &self,
        req: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        Ok(Response::new(
            self.scheduler.list_jobs(req.into_inner()).await?,
        ))
    }

    async fn cancel_job(&self, req: Request<CancelJobRequest>) -> Result<Response<Job>, Status> {
        Ok(Response::new(
            self.scheduler.cancel_job(&req.into_inner().id).await?,
        ))
    }
}

#[tonic::async_trait]
impl ClusterService for Api {
    async fn list_nodes(
        &self,
        _req: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        Ok(Response::new(ListNodesResponse {
            nodes: self.scheduler.list_nodes(),
        }))
    }

    async fn list_workers(
        &self,
        req: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        let r = req.into_inner();
        let workers = self.scheduler.list_workers(&r.node_id, &r.host).await?;
        Ok(Response::new(ListWorkersResponse { workers }))
    }

    async fn kill_worker(
        &self,
        req: Request<KillWorkerRequest>,
    ) -> Result<Response<KillWorkerResponse>, Status> {
        let r = req.into_inner();
        self.scheduler
            .kill_worker(&r.worker_id, &r.host, r.port)
            .await?;
        Ok(Response::new(KillWorkerResponse { killed: true }))
    }

    async fn drain_node(
        &self,
        req: Request<DrainNodeRequest>,
    ) -> Result<Response<DrainNodeResponse>, Status> {
        let moved = self.scheduler.drain_node(&req.into_inner().node_id).await?;
        Ok(Response::new(DrainNodeResponse {
            devices_moved: moved,
        }))
    }
}
