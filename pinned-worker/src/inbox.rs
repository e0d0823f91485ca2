//! What the parent sends, as the worker's main task sees it: a reader task turns stdin into
//! frames on a bounded channel, and the inbox queues jobs in arrival order, answers cancels of
//! queued jobs, and turns a cancel of the running job or the parent's EOF into an interrupt.

use std::collections::VecDeque;

use netpulse_proto::frame::{self, FrameError};
use netpulse_proto::worker::{self as wire, parent_frame::Frame as In};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tracing::warn;

use crate::error::SessionError;

/// Jobs the worker accepts ahead of the running one; the parent sends a few ahead.
const MAX_QUEUED_JOBS: usize = 1024;

pub(crate) enum Inbound {
    Frame(wire::ParentFrame),
    Eof,
    Broken(FrameError),
}

/// Something that stops the work at hand.
pub(crate) enum Interrupt {
    Cancel,
    Eof,
}

pub(crate) struct Inbox {
    pub(crate) rx: mpsc::Receiver<Inbound>,
    pub(crate) queue: VecDeque<wire::Job>,
    pub(crate) shutdown: bool,
    pub(crate) eof: bool,
    /// Results owed for jobs canceled while queued.
    pub(crate) canceled: Vec<wire::JobResult>,
}

impl Inbox {
    pub(crate) fn new(rx: mpsc::Receiver<Inbound>) -> Self {
        Inbox {
            rx,
            queue: VecDeque::new(),
            shutdown: false,
            eof: false,
            canceled: Vec::new(),
        }
    }

    /// Takes the next inbound message; returns an interrupt for the work at hand, if any.
    pub(crate) async fn next(&mut self, running: Option<&str>) -> Option<Interrupt> {
        if self.eof {
            return Some(std::future::pending().await);
        }
        let msg = self.rx.recv().await.unwrap_or(Inbound::Eof);
        self.handle(msg, running)
    }

    pub(crate) fn handle(&mut self, msg: Inbound, running: Option<&str>) -> Option<Interrupt> {
        match msg {
            Inbound::Frame(f) => match f.frame {
                Some(In::Job(job)) => {
                    if self.queue.len() >= MAX_QUEUED_JOBS {
                        self.canceled.push(not_started(
                            &job.job_id,
                            &format!("worker queue is full ({MAX_QUEUED_JOBS} jobs)"),
                        ));
                    } else {
                        self.queue.push_back(job);
                    }
                    None
                }
                Some(In::Cancel(c)) => {
                    if running == Some(c.job_id.as_str()) {
                        return (!c.queued_only).then_some(Interrupt::Cancel);
                    }
                    if let Some(i) = self.queue.iter().position(|j| j.job_id == c.job_id) {
                        self.queue.remove(i);
                        let mut r = not_started(&c.job_id, "canceled while queued");
                        r.error = Some(SessionError::Canceled.to_wire());
                        self.canceled.push(r);
                    }
                    None
                }
                Some(In::Shutdown(_)) => {
                    self.shutdown = true;
                    None
                }
                Some(In::Init(_)) | None => {
                    warn!("ignoring an unexpected frame (init may only come first)");
                    None
                }
            },
            Inbound::Eof => {
                self.eof = true;
                Some(Interrupt::Eof)
            }
            Inbound::Broken(e) => {
                warn!(error = %e, "frame stream from the parent is broken");
                self.eof = true;
                Some(Interrupt::Eof)
            }
        }
    }
}

/// The answer for a job the worker hands back without starting it.
pub(crate) fn not_started(job_id: &str, why: &str) -> wire::JobResult {
    wire::JobResult {
        job_id: job_id.to_string(),
        not_started: true,
        error: Some(SessionError::SessionLost(format!("not started: {why}")).to_wire()),
        ..Default::default()
    }
}

pub(crate) async fn read_frames<R: AsyncRead + Unpin>(mut input: R, tx: mpsc::Sender<Inbound>) {
    let mut scratch = Vec::new();
    loop {
        let msg = match frame::read_frame::<wire::ParentFrame, _>(&mut input, &mut scratch).await {
            Ok(Some(f)) => Inbound::Frame(f),
            Ok(None) => Inbound::Eof,
            Err(e) => Inbound::Broken(e),
        };
        let last = !matches!(msg, Inbound::Frame(_));
        if tx.send(msg).await.is_err() || last {
            return;
        }
    }
}
