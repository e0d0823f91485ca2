//! One worker process under supervision: the sequence every owner of a worker follows, pinned
//! or one-shot. Spawn it (counted), read its events, and when it ends read the frames it wrote
//! before exiting and reap it, killing it if it closed its stdout but lingers or wrote garbage;
//! stop it with SIGTERM and SIGKILL after the grace period. The owner decides what the frames
//! mean and what its jobs become.

use std::time::Duration;

use netpulse_proto::worker::{self as wire, WorkerMode};
use pinned_worker::child::ChildEvent;
use tokio::time::Instant;

use crate::ctx::Ctx;
use crate::process::{self, DRAIN_QUIET, WorkerProc};

/// A supervised worker process.
pub struct Supervised {
    pub child: Box<dyn WorkerProc>,
    pub id: String,
    pub pid: u32,
    pub spawned_at: Instant,
    strategy: &'static str,
    /// SIGKILL at this time unless the worker is gone (after SIGTERM).
    kill_at: Option<Instant>,
}

/// What one event of the worker amounts to.
pub enum Step {
    Frame(wire::WorkerFrame),
    /// The worker is gone and reaped.
    Ended(Ended),
}

pub struct Ended {
    /// Frames it wrote before it exited, read after the exit.
    pub frames: Vec<wire::WorkerFrame>,
    pub code: i32,
    /// How it ended: `exit code 0`, `killed by signal 9`, ...
    pub how: String,
    /// It wrote something that is not a frame, and was killed.
    pub bad_frame: Option<String>,
}

impl Supervised {
    /// Starts a worker for `device` and sends it its init frame for `job` (a failed send shows
    /// up as the worker's end).
    pub async fn start(
        ctx: &Ctx,
        device: &str,
        mode: WorkerMode,
        job: &netpulse_model::AgentJob,
    ) -> std::io::Result<Supervised> {
        let id = ctx.next_worker_id();
        let mut child = ctx.spawner.spawn(&id, device)?;
        let init = process::init_frame(&ctx.workers, job, mode, &id);
        if let Err(e) = child.send(&init).await {
            tracing::warn!(%device, worker_id = %id, error = %e, "could not send init to the worker");
        }
        let strategy = match mode {
            WorkerMode::Oneshot => "fifo",
            _ => "pinned",
        };
        ctx.metrics.spawned(strategy);
        Ok(Supervised {
            pid: child.pid().unwrap_or_default(),
            child,
            id,
            spawned_at: Instant::now(),
            strategy,
            kill_at: None,
        })
    }

    /// The next event; cancel-safe, for a `select!`. Hand it to [`Supervised::step`].
    pub async fn next_event(&mut self) -> ChildEvent {
        self.child.next_event().await
    }

    /// Turns an event into a frame, or into the worker's end: the frames it left are read and
    /// it is reaped (killed first if it wrote garbage, or closed its stdout and lingers).
    pub async fn step(&mut self, ev: ChildEvent, grace: Duration) -> Step {
        let (status, bad_frame) = match ev {
            ChildEvent::Frame(f) => return Step::Frame(f),
            ChildEvent::Exited(status) => (Some(status), None),
            ChildEvent::Closed => (None, None),
            ChildEvent::Broken(e) => {
                self.child.kill();
                (None, Some(e.to_string()))
            }
        };
        let frames = match status {
            Some(_) => self.child.drain(DRAIN_QUIET).await,
            None => Vec::new(),
        };
        let (code, how) = match status {
            Some(Ok(s)) => process::describe(&s),
            Some(Err(e)) => (-1, format!("waiting for the worker failed: {e}")),
            None => process::reap(self.child.as_mut(), grace).await,
        };
        Step::Ended(Ended {
            frames,
            code,
            how,
            bad_frame,
        })
    }

    /// Closes its stdin (it exits once its jobs are done) and follows it to its end, handing
    /// each frame to `frame`; killed if it takes longer than `grace` between two frames.
    pub async fn close(
        &mut self,
        grace: Duration,
        mut frame: impl FnMut(wire::WorkerFrame),
    ) -> Ended {
        self.child.close_stdin();
        loop {
            match tokio::time::timeout(grace, self.next_event()).await {
                Ok(ev) => match self.step(ev, grace).await {
                    Step::Frame(f) => frame(f),
                    Step::Ended(mut end) => {
                        for f in std::mem::take(&mut end.frames) {
                            frame(f);
                        }
                        return end;
                    }
                },
                Err(_) => {
                    let (code, how) = process::reap(self.child.as_mut(), grace).await;
                    return Ended {
                        frames: Vec::new(),
                        code,
                        how,
                        bad_frame: None,
                    };
                }
            }
        }
    }

    /// SIGTERM now, SIGKILL at [`Supervised::kill_at`] unless it is gone by then.
    /// Closes the worker's stdin, so it ends its session and exits on its own, cleanly; it is
    /// killed if it has not within `grace`.
    pub fn retire(&mut self, grace: Duration) {
        self.child.close_stdin();
        self.kill_at = Some(Instant::now() + grace);
    }

    pub fn terminate(&mut self, grace: Duration) {
        self.child.terminate();
        self.kill_at = Some(Instant::now() + grace);
    }

    pub fn kill_at(&self) -> Option<Instant> {
        self.kill_at
    }

    /// The grace after SIGTERM is over.
    pub fn escalate(&mut self) {
        tracing::warn!(worker_id = %self.id, "worker ignored SIGTERM; killing it");
        self.child.kill();
        self.kill_at = None;
    }

    /// Counts the end (after the owner's table says so, so a scrape never sees the exit
    /// before the row).
    pub fn count_exit(&self, ctx: &Ctx, code: i32) {
        ctx.metrics
            .exited(self.strategy, code, self.spawned_at.elapsed());
    }
}
