//! Supervision logic with a scripted fake worker and a paused clock: no processes, no devices.
//! Each spawned fake hands the test a handle to see the frames the agent sent it, push what
//! the "worker" says or does, and see which signals it got.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netpulse_proto::agent::{AgentMessage, Dispatch, JobFinished, agent_message::Msg};
use netpulse_proto::frame::FrameError;
use netpulse_proto::worker::{
    self as wire, ErrorKind, parent_frame::Frame as In, worker_frame::Frame as Out,
};
use pinned_worker::child::ChildEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tonic::Status;

use crate::agent::{Agent, Limits};
use crate::process::{BoxFuture, Spawner, WorkerProc, WorkerSettings};

struct FakeProc {
    events: mpsc::Receiver<ChildEvent>,
    own: mpsc::Sender<ChildEvent>,
    sent: mpsc::Sender<wire::ParentFrame>,
    signals: Arc<Mutex<Vec<&'static str>>>,
    ignore_term: bool,
}

struct FakeHandle {
    events: mpsc::Sender<ChildEvent>,
    sent: mpsc::Receiver<wire::ParentFrame>,
    signals: Arc<Mutex<Vec<&'static str>>>,
    spawned_at: Instant,
}

fn exited(raw: i32) -> ChildEvent {
    ChildEvent::Exited(Ok(ExitStatus::from_raw(raw)))
}

impl WorkerProc for FakeProc {
    fn pid(&self) -> Option<u32> {
        Some(4242)
    }
    fn send<'a>(&'a mut self, f: &'a wire::ParentFrame) -> BoxFuture<'a, Result<(), FrameError>> {
        let f = f.clone();
        Box::pin(async move {
            self.sent
                .send(f)
                .await
                .map_err(|_| FrameError::Io(std::io::ErrorKind::BrokenPipe.into()))
        })
    }
    fn send_all<'a>(
        &'a mut self,
        frames: &'a [wire::ParentFrame],
    ) -> BoxFuture<'a, Result<(), FrameError>> {
        Box::pin(async move {
            for f in frames {
                self.send(f).await?;
            }
            Ok(())
        })
    }
    fn next_event(&mut self) -> BoxFuture<'_, ChildEvent> {
        Box::pin(async move { self.events.recv().await.unwrap_or(ChildEvent::Closed) })
    }
    fn drain(&mut self, _quiet: Duration) -> BoxFuture<'_, Vec<wire::WorkerFrame>> {
        Box::pin(async { Vec::new() })
    }
    fn close_stdin(&mut self) {
        let _ = self.own.try_send(exited(0));
    }
    fn wait(&mut self) -> BoxFuture<'_, std::io::Result<ExitStatus>> {
        Box::pin(async { Ok(ExitStatus::from_raw(0)) })
    }
    fn kill(&mut self) {
        self.signals.lock().unwrap().push("kill");
        let _ = self.own.try_send(exited(9)); // raw wait status: killed by signal 9
    }
    fn terminate(&mut self) {
        self.signals.lock().unwrap().push("term");
        if !self.ignore_term {
            let _ = self.own.try_send(exited(15));
        }
    }
}

struct FakeSpawner {
    handles: mpsc::Sender<FakeHandle>,
    ignore_term: bool,
}

impl Spawner for FakeSpawner {
    fn spawn(&self, _worker_id: &str, _device: &str) -> std::io::Result<Box<dyn WorkerProc>> {
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let (sent_tx, sent_rx) = mpsc::channel(64);
        let signals = Arc::new(Mutex::new(Vec::new()));
        let handle = FakeHandle {
            events: ev_tx.clone(),
            sent: sent_rx,
            signals: signals.clone(),
            spawned_at: Instant::now(),
        };
        self.handles
            .try_send(handle)
            .expect("test keeps up with spawns");
        Ok(Box::new(FakeProc {
            events: ev_rx,
            own: ev_tx,
            sent: sent_tx,
            signals,
            ignore_term: self.ignore_term,
        }))
    }
}

struct Setup {
    agent: Arc<Agent>,
    spawned: mpsc::Receiver<FakeHandle>,
    events: mpsc::Receiver<Result<AgentMessage, Status>>,
}

fn setup(ignore_term: bool) -> Setup {
    let (handles, spawned) = mpsc::channel(64);
    let settings = WorkerSettings {
        bin: "/nonexistent".into(),
        log_filter: "info".into(),
        log_json: true,
        host_key_policy: wire::HostKeyPolicy::InsecureAcceptAny,
        known_hosts: "/nonexistent".into(),
        kill_grace: Duration::from_secs(5),
        platforms_dir: None,
        ntc_templates_dir: None,
        templates_dir: None,
        credentials: Default::default(),
        staging: Default::default(),
    };
    let limits = Limits {
        max_pinned_workers: 10,
        max_fifo_concurrency: 2,
        max_queued_per_device: 100,
        max_fifo_queued: 100,
        max_concurrent_logins: 64,
        max_logins_per_second: 0.0,
        login_limits: Vec::new(),
    };
    let agent = Agent::with_spawner(
        "n".into(),
        settings,
        limits,
        Arc::new(FakeSpawner {
            handles,
            ignore_term,
        }),
        TaskTracker::new(),
    );
    let (tx, events) = mpsc::channel(1024);
    agent.ctx.events.subscribe(1, tx);
    Setup {
        agent,
        spawned,
        events,
    }
}

fn dispatch(id: &str, timeout_seconds: u32) -> Dispatch {
    Dispatch {
        job_id: id.into(),
        connection: Some(wire::Connection {
            host: "192.0.2.10".into(),
            username: "u".into(),
            password: "p".into(),
            device_type: "cisco_ios".into(),
            ..Default::default()
        }),
        job: Some(wire::Job {
            operation: Some(wire::job::Operation::Commands(wire::Commands {
                commands: vec!["show clock".into()],
                specs: Vec::new(),
            })),
            ..Default::default()
        }),
        timeout_seconds,
        ..Default::default()
    }
}

fn result(job_id: &str) -> ChildEvent {
    ChildEvent::Frame(wire::WorkerFrame {
        frame: Some(Out::Result(wire::JobResult {
            job_id: job_id.into(),
            ok: true,
            session_reused: true,
            ..Default::default()
        })),
    })
}

impl Setup {
    async fn spawned(&mut self) -> FakeHandle {
        tokio::time::timeout(Duration::from_secs(600), self.spawned.recv())
            .await
            .expect("a spawn")
            .expect("spawner alive")
    }

    async fn finished(&mut self) -> JobFinished {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(600), self.events.recv())
                .await
                .expect("an event")
                .unwrap()
                .unwrap();
            if let Some(Msg::Finished(f)) = m.msg {
                return f;
            }
        }
    }
}

/// The worker's answer to a cancel of a job it had not started.
fn canceled_unstarted(job_id: &str) -> ChildEvent {
    ChildEvent::Frame(wire::WorkerFrame {
        frame: Some(Out::Result(wire::JobResult {
            job_id: job_id.into(),
            not_started: true,
            error: Some(wire::Error {
                kind: ErrorKind::Canceled as i32,
                message: "canceled while queued".into(),
            }),
            ..Default::default()
        })),
    })
}

impl FakeHandle {
    /// The next cancel the agent sent: the job id and whether only a queued job may go.
    async fn cancel(&mut self) -> (String, bool) {
        let f = tokio::time::timeout(Duration::from_secs(600), self.sent.recv())
            .await
            .expect("a frame")
            .expect("worker alive");
        match f.frame {
            Some(In::Cancel(c)) => (c.job_id, c.queued_only),
            other => panic!("expected a cancel, got {other:?}"),
        }
    }

    /// The next job id the agent sent this worker (init frames are skipped).
    async fn job(&mut self) -> String {
        loop {
            let f = tokio::time::timeout(Duration::from_secs(600), self.sent.recv())
                .await
                .expect("a frame")
                .expect("worker alive");
            match f.frame {
                Some(In::Job(j)) => return j.job_id,
                Some(In::Init(_)) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }
}

fn kind(f: &JobFinished) -> ErrorKind {
    f.result
        .as_ref()
        .and_then(|r| r.error.as_ref())
        .map_or(ErrorKind::Unspecified, |e| e.kind())
}

#[tokio::test(start_paused = true)]
async fn jobs_run_in_order_and_a_dead_worker_is_replaced_without_rerunning_its_job() {
    let mut s = setup(false);
    for id in ["j1", "j2", "j3"] {
        s.agent.dispatch(dispatch(id, 0)).unwrap();
    }
    let mut w1 = s.spawned().await;
    assert_eq!(w1.job().await, "j1");
    w1.events.send(result("j1")).await.unwrap();
    assert_eq!(s.finished().await.job_id, "j1");
    assert_eq!(w1.job().await, "j2");
    w1.events.send(exited(10 << 8)).await.unwrap(); // exit code 10 while j2 runs
    let f = s.finished().await;
    assert_eq!(
        (f.job_id.as_str(), kind(&f)),
        ("j2", ErrorKind::WorkerExited)
    );
    assert!(
        f.result
            .unwrap()
            .error
            .unwrap()
            .message
            .contains("exit code 10")
    );
    let mut w2 = s.spawned().await;
    assert_eq!(w2.job().await, "j3", "j2 is not re-run");
    w2.events.send(result("j3")).await.unwrap();
    assert_eq!(s.finished().await.job_id, "j3");
}

#[tokio::test(start_paused = true)]
async fn workers_that_die_without_work_are_restarted_with_growing_back_off() {
    let mut s = setup(false);
    for i in 0..4 {
        s.agent.dispatch(dispatch(&format!("c{i}"), 0)).unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..4 {
        let w = s.spawned().await;
        times.push(w.spawned_at);
        w.events.send(exited(1 << 8)).await.unwrap(); // dies before answering anything
        assert_eq!(kind(&s.finished().await), ErrorKind::WorkerExited);
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] < Duration::from_millis(100),
        "first restart is immediate: {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_secs(1) && gaps[2] >= Duration::from_secs(2),
        "back-off grows: {gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_worker_is_killed_at_the_execution_timeout_plus_margin() {
    let mut s = setup(false);
    let start = Instant::now();
    s.agent.dispatch(dispatch("slow", 5)).unwrap();
    let mut w = s.spawned().await;
    assert_eq!(w.job().await, "slow");
    let f = s.finished().await;
    assert_eq!(kind(&f), ErrorKind::Timeout);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(*w.signals.lock().unwrap(), ["kill"]);
}

#[tokio::test(start_paused = true)]
async fn kill_worker_sends_sigterm_then_sigkill_after_the_grace() {
    let mut s = setup(true);
    s.agent.dispatch(dispatch("k", 0)).unwrap();
    let mut w = s.spawned().await;
    assert_eq!(w.job().await, "k");
    let start = Instant::now();
    assert!(s.agent.kill_worker("192.0.2.10:22", "").await);
    let f = s.finished().await;
    assert_eq!(kind(&f), ErrorKind::WorkerExited);
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "SIGKILL waits for the grace: {:?}",
        start.elapsed()
    );
    assert_eq!(*w.signals.lock().unwrap(), ["term", "kill"]);
}

#[tokio::test(start_paused = true)]
async fn cancel_removes_a_queued_job_and_forwards_to_the_worker_one_it_holds() {
    let mut s = setup(false);
    for id in ["run", "ahead", "a3", "a4", "wait"] {
        s.agent.dispatch(dispatch(id, 0)).unwrap();
    }
    let mut w = s.spawned().await;
    // The first PIPELINE_DEPTH jobs go to the worker; the last waits in the agent.
    for id in ["run", "ahead", "a3", "a4"] {
        assert_eq!(w.job().await, id);
    }
    assert!(s.agent.cancel("wait").await);
    let f = s.finished().await;
    assert_eq!((f.job_id.as_str(), kind(&f)), ("wait", ErrorKind::Canceled));
    // A job sent ahead: the worker is asked, and its answer is the job's end.
    assert!(s.agent.cancel("ahead").await);
    assert_eq!(w.cancel().await, ("ahead".to_string(), false));
    w.events.send(canceled_unstarted("ahead")).await.unwrap();
    let f = s.finished().await;
    assert_eq!(
        (f.job_id.as_str(), kind(&f)),
        ("ahead", ErrorKind::Canceled)
    );
    assert!(s.agent.cancel("run").await);
    assert_eq!(w.cancel().await, ("run".to_string(), false));
    assert!(!s.agent.cancel("unknown").await);
}

#[tokio::test(start_paused = true)]
async fn jobs_are_sent_ahead_in_batches_and_those_behind_a_dead_worker_s_job_run_on_the_next() {
    let mut s = setup(false);
    for i in 1..=7 {
        s.agent.dispatch(dispatch(&format!("j{i}"), 0)).unwrap();
    }
    let mut w1 = s.spawned().await;
    for id in ["j1", "j2", "j3", "j4"] {
        assert_eq!(w1.job().await, id);
    }
    // Two of four answered: still more than REFILL_AT unanswered, so nothing is sent yet.
    for id in ["j1", "j2"] {
        w1.events.send(result(id)).await.unwrap();
        assert_eq!(s.finished().await.job_id, id);
    }
    // Everything runnable runs before the paused clock moves.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(w1.sent.try_recv().is_err(), "no refill above REFILL_AT");
    // At one unanswered, the worker is topped up to PIPELINE_DEPTH in one go.
    w1.events.send(result("j3")).await.unwrap();
    assert_eq!(s.finished().await.job_id, "j3");
    for id in ["j5", "j6", "j7"] {
        assert_eq!(w1.job().await, id);
    }
    // The worker dies running j4: j4 fails, j5..j7 never started and go to the next worker.
    w1.events.send(exited(10 << 8)).await.unwrap();
    let f = s.finished().await;
    assert_eq!(
        (f.job_id.as_str(), kind(&f)),
        ("j4", ErrorKind::WorkerExited)
    );
    let mut w2 = s.spawned().await;
    for id in ["j5", "j6", "j7"] {
        assert_eq!(w2.job().await, id);
    }
}

#[tokio::test(start_paused = true)]
async fn keepalive_and_idle_ttl_travel_to_the_worker_in_its_init_frame() {
    let mut s = setup(false);
    let mut d = dispatch("k", 0);
    d.keepalive_seconds = 7;
    d.idle_ttl_seconds = 9;
    s.agent.dispatch(d).unwrap();
    let mut w = s.spawned().await;
    let first = tokio::time::timeout(Duration::from_secs(5), w.sent.recv())
        .await
        .unwrap()
        .unwrap();
    match first.frame {
        Some(In::Init(i)) => {
            assert_eq!((i.keepalive_seconds, i.idle_ttl_seconds), (7, 9));
            assert_eq!(i.mode(), wire::WorkerMode::Pinned);
            assert_eq!(
                i.connection.unwrap().password,
                "p",
                "credentials go in the init frame"
            );
        }
        other => panic!("the first frame must be init, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn fencing_hands_back_jobs_not_started_and_lets_started_ones_finish() {
    let mut s = setup(false);
    for id in ["run", "a1", "a2", "a3", "queued"] {
        s.agent.dispatch(dispatch(id, 0)).unwrap();
    }
    let mut w = s.spawned().await;
    for id in ["run", "a1", "a2", "a3"] {
        assert_eq!(w.job().await, id);
    }
    s.agent.fence("lease lost".into()).await;
    let f = s.finished().await;
    assert_eq!(
        (f.job_id.as_str(), kind(&f)),
        ("queued", ErrorKind::NodeUnavailable)
    );
    assert!(f.result.as_ref().unwrap().not_started, "{f:?}");
    // Jobs sent ahead are taken back without touching the running one.
    for id in ["a1", "a2", "a3"] {
        assert_eq!(w.cancel().await, (id.to_string(), true));
    }
    assert!(
        s.agent.dispatch(dispatch("new", 0)).is_err(),
        "a fenced node takes no job"
    );
    // a1 was still queued in the worker: handed back. a2 had started by the time the worker
    // read the request (after run ended): it finishes here. a3: handed back.
    w.events.send(canceled_unstarted("a1")).await.unwrap();
    w.events.send(result("run")).await.unwrap();
    w.events.send(result("a2")).await.unwrap();
    w.events.send(canceled_unstarted("a3")).await.unwrap();
    let mut ends = Vec::new();
    for _ in 0..4 {
        let f = s.finished().await;
        let r = f.result.clone().unwrap();
        ends.push((f.job_id.clone(), r.ok, r.not_started, kind(&f)));
    }
    use ErrorKind::{NodeUnavailable, Unspecified};
    assert_eq!(
        ends,
        [
            ("a1".into(), false, true, NodeUnavailable),
            ("run".into(), true, false, Unspecified),
            ("a2".into(), true, false, Unspecified),
            ("a3".into(), false, true, NodeUnavailable),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_handed_back_unstarted_by_an_exiting_worker_runs_on_the_next_one() {
    let mut s = setup(false);
    s.agent.dispatch(dispatch("j", 0)).unwrap();
    let mut w1 = s.spawned().await;
    assert_eq!(w1.job().await, "j");
    // The worker hit its idle TTL as the job arrived: it hands the job back and exits.
    let back = wire::JobResult {
        job_id: "j".into(),
        not_started: true,
        error: Some(wire::Error {
            kind: ErrorKind::SessionLost as i32,
            message: "not started: idle ttl".into(),
        }),
        ..Default::default()
    };
    w1.events
        .send(ChildEvent::Frame(wire::WorkerFrame {
            frame: Some(Out::Result(back)),
        }))
        .await
        .unwrap();
    w1.events.send(exited(0)).await.unwrap();
    let mut w2 = s.spawned().await;
    assert_eq!(w2.job().await, "j", "the same job, on a new worker");
    w2.events.send(result("j")).await.unwrap();
    let f = s.finished().await;
    assert!(f.job_id == "j" && f.result.unwrap().ok);
}

#[tokio::test(start_paused = true)]
async fn a_job_left_unread_by_a_worker_exiting_idle_runs_on_the_next_one() {
    let mut s = setup(false);
    s.agent.dispatch(dispatch("j", 0)).unwrap();
    let mut w1 = s.spawned().await;
    assert_eq!(w1.job().await, "j");
    w1.events.send(exited(0)).await.unwrap(); // idle TTL: exit 0 without reading the job
    let mut w2 = s.spawned().await;
    assert_eq!(w2.job().await, "j");
    w2.events.send(result("j")).await.unwrap();
    assert!(s.finished().await.result.unwrap().ok);
}

#[tokio::test(start_paused = true)]
async fn a_repeated_dispatch_never_runs_a_job_twice_and_replays_a_finished_result() {
    let mut s = setup(false);
    let mut resume = dispatch("r1", 0);
    resume.resume_only = true;
    assert!(
        matches!(
            s.agent.dispatch(resume.clone()),
            Err(crate::error::AgentError::NotFound(_))
        ),
        "resume_only never starts an unknown job"
    );
    s.agent.dispatch(dispatch("j1", 0)).unwrap();
    let mut w = s.spawned().await;
    assert_eq!(w.job().await, "j1");
    assert!(matches!(
        s.agent.dispatch(dispatch("j1", 0)),
        Err(crate::error::AgentError::AlreadyExists(_))
    ));
    w.events.send(result("j1")).await.unwrap();
    assert_eq!(s.finished().await.job_id, "j1");
    // A manager that missed the end dispatches again: the result comes back, the job does not
    // run again.
    let mut again = dispatch("j1", 0);
    again.resume_only = true;
    assert!(matches!(
        s.agent.dispatch(again),
        Err(crate::error::AgentError::AlreadyExists(_))
    ));
    let f = s.finished().await;
    assert!(f.job_id == "j1" && f.result.unwrap().ok);
    assert!(s.agent.dispatch(dispatch("j1", 0)).is_err());
    s.agent.dispatch(dispatch("j2", 0)).unwrap();
    assert_eq!(w.job().await, "j2", "the worker never saw j1 again");
}
