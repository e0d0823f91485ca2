//! The public gRPC services: thin adapters that call the scheduler and map its errors.

use std::pin::Pin;
use std::sync::Arc;

use netpulse_proto::api::cluster_service_server::ClusterService;
use netpulse_proto::api::job_service_server::JobService;
use netpulse_proto::api::*;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::error::ApiError;
use crate::scheduler::{Scheduler, Submitted};

#[derive(Clone)]
pub struct Api {
    pub scheduler: Arc<Scheduler>,
    /// The TextFSM templates of `ParseOutput`, compiled once and kept.
    pub library: Arc<std::sync::Mutex<netpulse_textfsm::Library>>,
    /// Requests of one `ExecuteStream` answered at a time.
    pub max_jobs_per_stream: usize,
    /// Ended tasks older than this are deleted from their host when tasks are listed.
    pub task_retention_minutes: u64,
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
    /// Submits a job and, with `wait`, waits for its end.
    async fn answer(&self, req: ExecuteRequest) -> Result<Job, ApiError> {
        let wait = req.wait;
        let submitted = self.scheduler.submit(req).await?;
        self.await_end(wait, submitted).await
    }

    /// A submitted job's answer: as it stands without `wait`, else once it is final.
    async fn await_end(&self, wait: bool, submitted: Submitted) -> Result<Job, ApiError> {
        if !wait {
            return Ok(submitted.job);
        }
        self.scheduler.await_end(submitted).await
    }

    /// Reads an `ExecuteStream`'s requests while fewer than `max_jobs_per_stream` await
    /// their answers. Each is submitted before the next is read, so a device's jobs run in
    /// stream order; its answer is awaited by a task of its own. The answers' stream ends
    /// when the requests have ended and every answer is sent (each task holds a sender).
    async fn serve_stream(
        self,
        mut requests: Streaming<ExecuteRequest>,
        answers: mpsc::Sender<Result<StreamedJob, Status>>,
    ) {
        let places = Arc::new(Semaphore::new(self.max_jobs_per_stream));
        let shutdown = self.scheduler.shutdown.clone();
        for index in 0u64.. {
            let place = tokio::select! {
                p = places.clone().acquire_owned() => p.expect("never closed"),
                _ = answers.closed() => return,
            };
            let next = tokio::select! {
                r = requests.message() => r,
                _ = answers.closed() => return,
                // Answers already owed are still given; no new request is taken.
                _ = shutdown.cancelled() => return,
            };
            let req = match next {
                Ok(Some(req)) => req,
                Ok(None) => return,
                Err(status) => {
                    // The error ends the stream, so it comes after the answers owed.
                    tracing::debug!(%status, "ExecuteStream request unreadable; ending the stream");
                    drop(place);
                    let all = self.max_jobs_per_stream as u32;
                    tokio::select! {
                        _ = places.acquire_many(all) => {
                            let _ = answers.send(Err(status)).await;
                        }
                        _ = answers.closed() => {}
                    }
                    return;
                }
            };
            let wait = req.wait;
            let submitted = self.scheduler.submit(req).await;
            let api = self.clone();
            let answers = answers.clone();
            self.scheduler.tracker.spawn(
                async move {
                    let answer = match submitted {
                        Ok(s) => api.await_end(wait, s).await,
                        Err(e) => Err(e),
                    };
                    let outcome = match answer {
                        Ok(job) => streamed_job::Outcome::Job(job),
                        Err(e) => {
                            let status = Status::from(e);
                            streamed_job::Outcome::Refused(Refusal {
                                code: status.code() as i32,
                                message: status.message().to_string(),
                            })
                        }
                    };
                    let answer = StreamedJob {
                        index,
                        outcome: Some(outcome),
                    };
                    // A client gone away leaves its jobs running: nothing else to do.
                    let _ = answers.send(Ok(answer)).await;
                    drop(place);
                }
                .in_current_span(),
            );
        }
    }
}

#[tonic::async_trait]
impl JobService for Api {
    async fn execute(&self, req: Request<ExecuteRequest>) -> Result<Response<Job>, Status> {
        let span = traced(&req, || tracing::info_span!("netpulse.execute"));
        let answer = self.answer(req.into_inner());
        let job = match span {
            Some(span) => answer.instrument(span).await,
            None => answer.await,
        }?;
        Ok(Response::new(job))
    }

    type ExecuteStreamStream = Pin<Box<dyn Stream<Item = Result<StreamedJob, Status>> + Send>>;

    async fn execute_stream(
        &self,
        req: Request<Streaming<ExecuteRequest>>,
    ) -> Result<Response<Self::ExecuteStreamStream>, Status> {
        let span = traced(&req, || tracing::info_span!("netpulse.execute_stream"));
        // Room for a burst of answers while the transport sends the earlier ones.
        let (tx, rx) = mpsc::channel(256);
        let serve = self.clone().serve_stream(req.into_inner(), tx);
        match span {
            Some(span) => self.scheduler.tracker.spawn(serve.instrument(span)),
            None => self.scheduler.tracker.spawn(serve),
        };
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn execute_bulk(
        &self,
        req: Request<ExecuteBulkRequest>,
    ) -> Result<Response<ExecuteBulkResponse>, Status> {
        let span = traced(&req, || tracing::info_span!("netpulse.execute_bulk"));
        let bulk = crate::bulk::execute_bulk(&self.scheduler, req.into_inner());
        let r = match span {
            Some(span) => bulk.instrument(span).await,
            None => bulk.await,
        };
        Ok(Response::new(r?))
    }

    async fn test_connection(
        &self,
        req: Request<TestConnectionRequest>,
    ) -> Result<Response<TestConnectionResponse>, Status> {
        let r = req.into_inner();
        let timeout = match r.timeout_seconds {
            0 => 60,
            t @ 1..=3600 => t,
            t => {
                return Err(Status::invalid_argument(format!(
                    "timeout_seconds must be 1..=3600 (0 for 60), got {t}"
                )));
            }
        };
        // A fifo job: a fresh session even where the device has a pinned one.
        let job = self
            .answer(ExecuteRequest {
                connection: r.connection,
                test_connection: true,
                strategy: Strategy::Fifo as i32,
                timeout_seconds: timeout,
                queue_timeout_seconds: timeout,
                result_ttl_seconds: 600,
                wait: true,
                ..Default::default()
            })
            .await?;
        Ok(Response::new(TestConnectionResponse {
            ok: job.status() == JobStatus::Succeeded,
            error: job.error,
            result: job.connection_test,
            node_id: job.node_id,
            job_id: job.id,
        }))
    }

    async fn render_template(
        &self,
        req: Request<RenderTemplateRequest>,
    ) -> Result<Response<RenderTemplateResponse>, Status> {
        let Some(t) = req.into_inner().template else {
            return Err(Status::invalid_argument("template is required"));
        };
        let dir = self.scheduler.cfg.config_templates_dir.as_deref();
        Ok(Response::new(crate::render::render(&t, dir, "template")?))
    }

    async fn start_task(&self, req: Request<StartTaskRequest>) -> Result<Response<Task>, Status> {
        Ok(Response::new(
            crate::tasks::start_task(&self.scheduler, req.into_inner()).await?,
        ))
    }

    async fn read_task(
        &self,
        req: Request<ReadTaskRequest>,
    ) -> Result<Response<TaskOutput>, Status> {
        Ok(Response::new(
            crate::tasks::read_task(&self.scheduler, req.into_inner()).await?,
        ))
    }

    async fn list_tasks(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let r = crate::tasks::list_tasks(
            &self.scheduler,
            req.into_inner(),
            self.task_retention_minutes,
        );
        Ok(Response::new(r.await?))
    }

    async fn kill_task(&self, req: Request<KillTaskRequest>) -> Result<Response<Task>, Status> {
        Ok(Response::new(
            crate::tasks::kill_task(&self.scheduler, req.into_inner()).await?,
        ))
    }

    async fn parse_output(
        &self,
        req: Request<ParseOutputRequest>,
    ) -> Result<Response<ParseOutputResponse>, Status> {
        use netpulse_textfsm::LibraryError;
        let r = req.into_inner();
        if r.text.len() > 16 << 20 {
            return Err(Status::invalid_argument(format!(
                "text is {} bytes; at most 16 MiB are allowed",
                r.text.len()
            )));
        }
        let how = netpulse_model::Parse::from_wire("parse", r.parse.as_ref())
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                Status::invalid_argument(
                    "parse is required: one of ntc_index, template_name and inline_template",
                )
            })?;
        if how == netpulse_model::Parse::NtcIndex && (r.platform.is_empty() || r.command.is_empty())
        {
            return Err(Status::invalid_argument(
                "parse.ntc_index needs platform (as ntc-templates names it) and command",
            ));
        }
        // Off the runtime thread: compiling a template takes milliseconds.
        let library = self.library.clone();
        let table = tokio::task::spawn_blocking(move || {
            library.lock().unwrap_or_else(|e| e.into_inner()).parse(
                &how.source(),
                &r.platform,
                &r.command,
                &r.text,
            )
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| match e {
            LibraryError::NotFound(m) => Status::not_found(m),
            LibraryError::Unavailable(m) => Status::failed_precondition(m),
            LibraryError::Invalid(m) => Status::invalid_argument(m),
        })?;
        Ok(Response::new(ParseOutputResponse {
            rows: Some(netpulse_model::rows(&table)),
        }))
    }

    async fn get_job(&self, req: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        Ok(Response::new(
            self.scheduler.queries.get_job(&req.into_inner().id).await?,
        ))
    }

    type WatchJobStream = JobStream;

    async fn upload_file(
        &self,
        req: Request<Streaming<UploadFileRequest>>,
    ) -> Result<Response<StagedFile>, Status> {
        let file = crate::files::upload(&self.scheduler.cluster, req.into_inner()).await?;
        Ok(Response::new(file))
    }

    type DownloadFileStream = Streaming<FileChunk>;

    async fn download_file(
        &self,
        req: Request<DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadFileStream>, Status> {
        let chunks = crate::files::download(&self.scheduler.cluster, req.into_inner()).await?;
        Ok(Response::new(chunks))
    }

    async fn watch_job(
        &self,
        req: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        self.scheduler
            .queries
            .watch_job(&req.into_inner().id, tx)
            .await?;
        let stream =
            tokio_stream::StreamExt::map(ReceiverStream::new(rx), |r| r.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_jobs(
        &self,
        req: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        Ok(Response::new(
            self.scheduler.queries.list_jobs(req.into_inner()).await?,
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
            nodes: self.scheduler.ops.list_nodes(),
        }))
    }

    async fn list_workers(
        &self,
        req: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        let r = req.into_inner();
        let workers = self.scheduler.ops.list_workers(&r.node_id, &r.host).await?;
        Ok(Response::new(ListWorkersResponse { workers }))
    }

    async fn kill_worker(
        &self,
        req: Request<KillWorkerRequest>,
    ) -> Result<Response<KillWorkerResponse>, Status> {
        let r = req.into_inner();
        self.scheduler
            .ops
            .kill_worker(&r.worker_id, &r.host, r.port)
            .await?;
        Ok(Response::new(KillWorkerResponse { killed: true }))
    }

    async fn drain_node(
        &self,
        req: Request<DrainNodeRequest>,
    ) -> Result<Response<DrainNodeResponse>, Status> {
        let moved = self
            .scheduler
            .ops
            .drain_node(&req.into_inner().node_id)
            .await?;
        Ok(Response::new(DrainNodeResponse {
            devices_moved: moved,
        }))
    }
}
