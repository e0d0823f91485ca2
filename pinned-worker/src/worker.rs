//! The `pinned-worker` process loop.
//!
//! A reader task turns stdin into frames on a bounded channel (`inbox`); the main task owns the
//! session and does everything else, so a job and a keepalive can never touch the session at once.
//! While idle it waits on four things: a frame, the keepalive timer, the session itself (the
//! device closing it is noticed at once) and the idle TTL. While busy (connecting, running a
//! job, a keepalive) it still reads frames: jobs are queued in arrival order, a cancel for the
//! running job interrupts it, EOF (the parent is gone) ends the process.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netpulse_proto::frame;
use netpulse_proto::worker::{
    self as wire, parent_frame::Frame as In, worker_frame::Frame as OutFrame,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use crate::error::SessionError;
use crate::exit_code;
use crate::inbox::{Inbound, Inbox, Interrupt, not_started, read_frames};
use crate::ops;
use crate::options::{DeviceTarget, Mode, WorkerOptions};
use crate::session::DeviceSession;

/// How long the parent has to send the init frame.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a keepalive RETURN may take to bring the prompt back. A live device answers in
/// milliseconds; this bounds how long a frozen one goes unnoticed after the keepalive.
const KEEPALIVE_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The keepalive period, 10% either way at random: thousands of sessions opened by one bulk
/// would otherwise keep their keepalives in step, a burst on the node every period.
/// (The clock's nanoseconds and the pid, mixed, are random enough for this, without a random
/// number crate in every worker's binary.)
fn spread(period: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) ^ (u64::from(std::process::id()) << 32);
    // splitmix64's finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
    period.mul_f64(0.9 + 0.2 * unit)
}

/// Why the process ends: its exit code and the reason sent in the last frame.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub reason: String,
}

impl Exit {
    fn new(code: i32, reason: impl Into<String>) -> Exit {
        Exit {
            code,
            reason: reason.into(),
        }
    }
}

/// Runs `work` while still taking frames; an interrupt abandons the work. Results owed for
/// jobs canceled meanwhile are sent at once.
async fn guarded<T, W: AsyncWrite + Unpin>(
    inbox: &mut Inbox,
    out: &mut Output<W>,
    updates: &mut mpsc::Receiver<wire::JobUpdate>,
    running: Option<&str>,
    work: impl Future<Output = T>,
) -> Result<T, Interrupt> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            v = &mut work => {
                // What the work said on its way goes out before its result.
                while let Ok(u) = updates.try_recv() {
                    if out.send(OutFrame::Update(u)).await.is_err() {
                        return Err(Interrupt::Eof);
                    }
                }
                return Ok(v);
            }
            Some(u) = updates.recv() => {
                if out.send(OutFrame::Update(u)).await.is_err() {
                    return Err(Interrupt::Eof);
                }
            }
            i = inbox.next(running) => {
                if let Some(i) = i {
                    return Err(i);
                }
                for r in std::mem::take(&mut inbox.canceled) {
                    if out.send(OutFrame::Result(r)).await.is_err() {
                        return Err(Interrupt::Eof);
                    }
                }
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Output<W> {
    w: W,
    scratch: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    async fn send(&mut self, f: OutFrame) -> Result<(), Exit> {
        frame::write_frame(
            &mut self.w,
            &wire::WorkerFrame { frame: Some(f) },
            &mut self.scratch,
        )
        .await
        .map_err(|e| Exit::new(exit_code::INTERNAL, format!("writing to the parent: {e}")))
    }
}

struct Worker<W> {
    opts: WorkerOptions,
    device: DeviceTarget,
    session: Option<DeviceSession>,
    out: Output<W>,
    inbox: Inbox,
    jobs_done: u64,
    reuses: u64,
    last_ok_ms: u64,
    /// A running job's output pieces and progress, on their way to `out`.
    updates_tx: mpsc::Sender<wire::JobUpdate>,
    updates: mpsc::Receiver<wire::JobUpdate>,
}

/// Updates waiting for the pipe; more are dropped (see `updates`).
const UPDATES_QUEUED: usize = 64;

/// Runs the worker over the given streams (stdin and stdout in the binary) and returns the
/// process exit code. The last frame written is always `Exiting` (unless stdout is broken).
pub async fn run<R, W>(input: R, output: W) -> i32
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_frames(input, tx));
    let mut out = Output {
        w: output,
        scratch: Vec::new(),
    };
    let mut inbox = Inbox::new(rx);
    let exit = match tokio::time::timeout(INIT_TIMEOUT, inbox.rx.recv()).await {
        Ok(Some(Inbound::Frame(wire::ParentFrame {
            frame: Some(In::Init(init)),
        }))) => match WorkerOptions::from_init(init) {
            Ok(opts) => {
                let device = opts.device.clone();
                let (updates_tx, updates) = mpsc::channel(UPDATES_QUEUED);
                let mut w = Worker {
                    updates_tx,
                    updates,
                    opts,
                    device,
                    session: None,
                    out,
                    inbox,
                    jobs_done: 0,
                    reuses: 0,
                    last_ok_ms: 0,
                };
                let exit = w.run().await;
                w.finish(exit).await
            }
            Err(e) => report(&mut out, Exit::new(exit_code::BAD_ARGUMENTS, e.to_string())).await,
        },
        Ok(Some(Inbound::Frame(_))) => {
            report(
                &mut out,
                Exit::new(exit_code::BAD_ARGUMENTS, "the first frame must be init"),
            )
            .await
        }
        Ok(Some(Inbound::Broken(e))) => {
            report(
                &mut out,
                Exit::new(
                    exit_code::BAD_ARGUMENTS,
                    format!("reading the init frame: {e}"),
                ),
            )
            .await
        }
        Ok(Some(Inbound::Eof) | None) => {
            Exit::new(exit_code::OK, "parent closed stdin before init")
        }
        Err(_) => {
            report(
                &mut out,
                Exit::new(
                    exit_code::BAD_ARGUMENTS,
                    format!("no init frame within {INIT_TIMEOUT:?}"),
                ),
            )
            .await
        }
    };
    reader.abort();
    info!(code = exit.code, reason = %exit.reason, "worker exiting");
    exit.code
}

async fn report<W: AsyncWrite + Unpin>(out: &mut Output<W>, exit: Exit) -> Exit {
    let _ = out
        .send(OutFrame::Exiting(wire::Exiting {
            exit_code: exit.code,
            reason: exit.reason.clone(),
        }))
        .await;
    exit
}

impl<W: AsyncWrite + Unpin> Worker<W> {
    async fn run(&mut self) -> Exit {
        info!(worker_id = %self.opts.worker_id, device = %self.device.target.addr(), mode = ?self.opts.mode, "worker started");
        if self.opts.mode == Mode::Pinned && self.opts.connect_on_start {
            match guarded(
                &mut self.inbox,
                &mut self.out,
                &mut self.updates,
                None,
                open_session(&self.device, self.opts.prompt_timeout),
            )
            .await
            {
                Ok(Ok((s, took))) => {
                    self.session = Some(s);
                    if let Err(e) = self.connected(took, false).await {
                        return e;
                    }
                }
                Ok(Err(e)) => return Exit::new(exit_code::for_connect_error(&e), e.to_string()),
                Err(_) => return Exit::new(exit_code::OK, "parent closed stdin"),
            }
        }
        let mut idle_deadline = Instant::now() + self.opts.idle_ttl;
        let mut next_keepalive = Instant::now() + spread(self.opts.keepalive);
        loop {
            if let Err(e) = self.flush_canceled().await {
                return e;
            }
            if let Some(job) = self.inbox.queue.pop_front() {
                if let Err(e) = self.run_job(job).await {
                    return e;
                }
                if self.opts.mode == Mode::OneShot {
                    return Exit::new(exit_code::OK, "one-shot job done");
                }
                idle_deadline = Instant::now() + self.opts.idle_ttl;
                next_keepalive = Instant::now() + spread(self.opts.keepalive);
                continue;
            }
            if self.inbox.shutdown {
                return Exit::new(exit_code::OK, "shutdown requested");
            }
            if self.inbox.eof {
                return Exit::new(exit_code::OK, "parent closed stdin");
            }
            let pinned = self.opts.mode == Mode::Pinned;
            let has_session = self.session.is_some();
            tokio::select! {
                i = self.inbox.next(None) => {
                    if let Some(Interrupt::Eof) = i {
                        return Exit::new(exit_code::OK, "parent closed stdin");
                    }
                }
                _ = tokio::time::sleep_until(next_keepalive), if pinned && has_session => {
                    if let Err(e) = self.keepalive().await {
                        return e;
                    }
                    next_keepalive = Instant::now() + spread(self.opts.keepalive);
                }
                r = idle_event(&mut self.session), if has_session => {
                    if let Err(e) = r {
                        return self.session_lost(e).await;
                    }
                }
                _ = tokio::time::sleep_until(idle_deadline), if pinned => {
                    return Exit::new(exit_code::OK, format!("idle for {:?} (idle ttl)", self.opts.idle_ttl));
                }
            }
        }
    }

    async fn keepalive(&mut self) -> Result<(), Exit> {
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        match guarded(
            &mut self.inbox,
            &mut self.out,
            &mut self.updates,
            None,
            s.keepalive(self.opts.prompt_timeout.min(KEEPALIVE_REPLY_TIMEOUT)),
        )
        .await
        {
            Ok(Ok(rtt)) => {
                self.last_ok_ms = unix_ms();
                debug!(rtt_us = rtt.as_micros() as u64, "keepalive ok");
                self.health(true, rtt, String::new()).await
            }
            Ok(Err(e)) => Err(self.session_lost(e).await),
            Err(_) => Err(Exit::new(exit_code::OK, "parent closed stdin")),
        }
    }

    async fn session_lost(&mut self, e: SessionError) -> Exit {
        warn!(device = %self.device.target.addr(), error = %e, "connection unhealthy; exiting so the next job gets a fresh session");
        let _ = self.health(false, Duration::ZERO, e.to_string()).await;
        self.session = None;
        Exit::new(exit_code::SESSION_LOST, e.to_string())
    }

    async fn health(&mut self, ok: bool, rtt: Duration, error: String) -> Result<(), Exit> {
        let h = wire::Health {
            ok,
            rtt_us: rtt.as_micros() as u64,
            last_ok_unix_ms: self.last_ok_ms,
            error,
            jobs_done: self.jobs_done,
            session_reuses: self.reuses,
        };
        self.out.send(OutFrame::Health(h)).await
    }

    async fn connected(&mut self, took: Duration, reconnect: bool) -> Result<(), Exit> {
        self.last_ok_ms = unix_ms();
        let prompt = self
            .session
            .as_ref()
            .map(|s| s.hostname().to_string())
            .unwrap_or_default();
        self.out
            .send(OutFrame::Connected(wire::Connected {
                connect_us: took.as_micros() as u64,
                prompt,
                reconnect,
            }))
            .await
    }

    async fn flush_canceled(&mut self) -> Result<(), Exit> {
        for r in std::mem::take(&mut self.inbox.canceled) {
            self.out.send(OutFrame::Result(r)).await?;
        }
        Ok(())
    }

    /// Runs one job. `Err` means the process must exit (after the job's result was sent).
    async fn run_job(&mut self, job: wire::Job) -> Result<(), Exit> {
        // With tracing on, the job's log lines carry its trace id; off, no span costs anything.
        match trace_id(&job.trace_context) {
            Some(trace_id) => {
                let span = tracing::info_span!("job", job_id = %job.job_id, %trace_id);
                self.run_job_inner(job).instrument(span).await
            }
            None => self.run_job_inner(job).await,
        }
    }

    async fn run_job_inner(&mut self, job: wire::Job) -> Result<(), Exit> {
        // Left by a job that was canceled: not this one's.
        while self.updates.try_recv().is_ok() {}
        let id = job.job_id.clone();
        let mut result = wire::JobResult {
            job_id: id.clone(),
            started_unix_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            ..Default::default()
        };
        let mut spec = match self.opts.job_spec(&job) {
            Ok(s) => s,
            Err(e) => return self.fail(result, e).await,
        };
        spec.updates = crate::updates::Updates::new(self.updates_tx.clone(), &id);
        let device = match &job.connection {
            Some(conn) => match self.opts.device_for_job(conn) {
                Ok(d) => d,
                Err(e) => return self.fail(result, e).await,
            },
            None => self.device.clone(),
        };
        // Checked against the job's device before switching to it: a rejected job changes nothing.
        if let Err(e) = spec.check(device.platform) {
            return self.fail(result, e).await;
        }
        if device != self.device {
            info!(device = %device.target.addr(), "connection arguments changed; opening a new session");
            if let Some(s) = self.session.take() {
                s.close().await;
            }
            self.device = device;
        }
        // A session that died while idle is replaced before any byte of the job is sent.
        if let Some(s) = self.session.as_mut()
            && let Err(e) = s.check_alive()
        {
            info!(error = %e, "session found dead before the job; reconnecting");
            self.session = None;
        }
        let fresh = self.session.is_none();
        if fresh {
            match guarded(
                &mut self.inbox,
                &mut self.out,
                &mut self.updates,
                Some(&id),
                open_session(&self.device, self.opts.prompt_timeout),
            )
            .await
            {
                Ok(Ok((s, took))) => {
                    self.session = Some(s);
                    result.connect_us = took.as_micros() as u64;
                    self.connected(took, self.jobs_done > 0).await?;
                }
                Ok(Err(e)) => {
                    let code = exit_code::for_connect_error(&e);
                    let reason = e.to_string();
                    result.error = Some(e.to_wire());
                    self.out.send(OutFrame::Result(result)).await?;
                    return Err(Exit::new(code, reason));
                }
                Err(Interrupt::Cancel) => {
                    let mut r = not_started(&id, "canceled while connecting");
                    r.error = Some(SessionError::Canceled.to_wire());
                    return self.out.send(OutFrame::Result(r)).await;
                }
                Err(Interrupt::Eof) => return Err(Exit::new(exit_code::OK, "parent closed stdin")),
            }
        }
        let session = self.session.as_mut().expect("session is open");
        session.transcript().begin_job(job.transcript);
        let outcome = match guarded(
            &mut self.inbox,
            &mut self.out,
            &mut self.updates,
            Some(&id),
            ops::run(session, &spec),
        )
        .await
        {
            Ok(o) => o,
            Err(Interrupt::Cancel) => {
                // The device may be mid-command: drop the session rather than guess its state.
                info!(job_id = %id, "job canceled while running; dropping the session");
                if let Some(s) = self.session.take() {
                    s.close().await;
                }
                result.error = Some(SessionError::Canceled.to_wire());
                return self.out.send(OutFrame::Result(result)).await;
            }
            Err(Interrupt::Eof) => return Err(Exit::new(exit_code::OK, "parent closed stdin")),
        };
        self.jobs_done += 1;
        if !fresh {
            self.reuses += 1;
        }
        result.session_reused = !fresh;
        result.results = outcome.results;
        result.execute_us = outcome.execute.as_micros() as u64;
        result.saved = outcome.saved;
        result.committed = outcome.committed;
        result.probed = outcome.probed;
        if let Some(b) = outcome.backup {
            result.config_before = b.before;
            result.config_after = b.after;
            result.config_diff = b.diff;
        }
        if !outcome.dry_run_diff.is_empty() {
            result.config_diff = outcome.dry_run_diff;
        }
        result.dry_run_note = outcome.dry_run_note;
        result.commit_confirm = outcome.commit_confirm;
        result.transfer = outcome.transfer;
        if let Some(s) = &self.session {
            result.platform = s.platform().name.clone();
        }
        if job.transcript
            && let Some(s) = self.session.as_mut()
        {
            result.transcript = s.transcript().take();
        }
        result.ok = outcome.error.is_none();
        let poisoned = outcome
            .error
            .as_ref()
            .is_some_and(SessionError::poisons_session);
        if outcome.left_waiting
            && !poisoned
            && let Some(s) = self.session.take()
        {
            // The device waits for input the job did not give: the next job logs in afresh.
            info!(job_id = %id, "the last command ended at its expected pattern; closing the session");
            s.close().await;
        }
        let reason = outcome.error.as_ref().map(|e| e.to_string());
        result.error = outcome.error.map(|e| e.to_wire());
        self.out.send(OutFrame::Result(result)).await?;
        if poisoned {
            self.session = None;
            let reason = reason.unwrap_or_default();
            warn!(job_id = %id, %reason, "session unusable after the job; exiting");
            let _ = self.health(false, Duration::ZERO, reason.clone()).await;
            return Err(Exit::new(exit_code::SESSION_LOST, reason));
        }
        Ok(())
    }

    async fn fail(&mut self, mut result: wire::JobResult, e: SessionError) -> Result<(), Exit> {
        debug!(job_id = %result.job_id, error = %e, "job rejected before it reached the device");
        result.error = Some(e.to_wire());
        self.out.send(OutFrame::Result(result)).await
    }

    /// Ends the process: queued jobs are handed back unstarted, the session is closed, and the
    /// last frame says why.
    async fn finish(&mut self, exit: Exit) -> Exit {
        // Jobs already read from the pipe count as received: hand them back too.
        while let Ok(msg) = self.inbox.rx.try_recv() {
            self.inbox.handle(msg, None);
        }
        let _ = self.flush_canceled().await;
        let queued: Vec<_> = self.inbox.queue.drain(..).collect();
        for job in queued {
            let _ = self
                .out
                .send(OutFrame::Result(not_started(&job.job_id, &exit.reason)))
                .await;
        }
        if let Some(s) = self.session.take() {
            s.close().await;
        }
        report(&mut self.out, exit).await
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(trace_context: &std::collections::HashMap<String, String>) -> Option<&str> {
    trace_context.get("traceparent")?.split('-').nth(1)
}

async fn open_session(
    d: &DeviceTarget,
    prompt_timeout: Duration,
) -> Result<(DeviceSession, Duration), SessionError> {
    let start = Instant::now();
    let s = DeviceSession::open(&d.target, d.platform, &d.secret, prompt_timeout).await?;
    Ok((s, start.elapsed()))
}

async fn idle_event(session: &mut Option<DeviceSession>) -> Result<(), SessionError> {
    match session {
        Some(s) => s.idle_event().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_periods_spread_within_ten_percent() {
        let p = Duration::from_secs(60);
        let got: Vec<Duration> = (0..200).map(|_| spread(p)).collect();
        assert!(
            got.iter()
                .all(|d| *d >= p.mul_f64(0.9) && *d <= p.mul_f64(1.1))
        );
        let (lo, hi) = (got.iter().min().unwrap(), got.iter().max().unwrap());
        assert!(
            *hi - *lo > Duration::from_secs(1),
            "not spread: {lo:?}..{hi:?}"
        );
    }
}
