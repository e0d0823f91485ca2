//! The `pinned-worker` binary driven over its stdin/stdout frame protocol, against simulated
//! devices: session reuse, keepalive failure detection, idle TTL, connection changes, EOF,
//! cancel, one-shot mode and bad input. Every wait has a deadline.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use devsim::{Device, DeviceSpec, Flavor, spawn_device};
use netpulse_proto::worker::{
    self as wire, Commands, ErrorKind, Init, JobResult, ParentFrame, WorkerFrame, WorkerMode,
    parent_frame::Frame as In, worker_frame::Frame as Out,
};
use pinned_worker::child::WorkerChild;
use pinned_worker::exit_code;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

const DEADLINE: Duration = Duration::from_secs(20);

async fn device(spec: DeviceSpec) -> (Device, DropGuard) {
    let stop = CancellationToken::new();
    let d = spawn_device(spec, devsim::server::random_host_key(), stop.clone())
        .await
        .unwrap();
    (d, stop.drop_guard())
}

fn connection(d: &Device) -> wire::Connection {
    wire::Connection {
        host: "127.0.0.1".into(),
        port: d.addr().port() as u32,
        username: "admin".into(),
        password: "admin".into(),
        device_type: d.spec().flavor.device_type().into(),
        secret: "enable".into(),
        ..Default::default()
    }
}

fn init(d: &Device, edit: impl FnOnce(&mut Init)) -> ParentFrame {
    let mut i = Init {
        mode: WorkerMode::Pinned as i32,
        connection: Some(connection(d)),
        host_key_policy: wire::HostKeyPolicy::InsecureAcceptAny as i32,
        worker_id: "w-test".into(),
        ..Default::default()
    };
    edit(&mut i);
    ParentFrame {
        frame: Some(In::Init(i)),
    }
}

fn job(id: &str, cmds: &[&str]) -> wire::Job {
    wire::Job {
        job_id: id.into(),
        operation: Some(wire::job::Operation::Commands(Commands {
            commands: cmds.iter().map(|c| c.to_string()).collect(),
            specs: Vec::new(),
        })),
        ..Default::default()
    }
}

fn frame(j: wire::Job) -> ParentFrame {
    ParentFrame {
        frame: Some(In::Job(j)),
    }
}

fn spawn() -> WorkerChild {
    WorkerChild::spawn(
        Path::new(env!("CARGO_BIN_EXE_pinned-worker")),
        &[],
        &[("NETPULSE_LOG", "info,pinned_worker=debug")],
        Stdio::inherit(),
    )
    .unwrap()
}

async fn next(w: &mut WorkerChild) -> Out {
    let f: Option<WorkerFrame> = tokio::time::timeout(DEADLINE, w.recv())
        .await
        .expect("frame within deadline")
        .unwrap();
    f.expect("worker closed stdout").frame.expect("frame body")
}

/// The next job result, skipping connected/health frames.
async fn result(w: &mut WorkerChild) -> JobResult {
    loop {
        match next(w).await {
            Out::Result(r) => return r,
            Out::Exiting(e) => panic!("worker exited instead of answering: {e:?}"),
            _ => {}
        }
    }
}

/// Reads until the exiting frame, then reaps the process; returns (frame, exit code).
async fn exiting(w: &mut WorkerChild) -> (wire::Exiting, i32) {
    let e = loop {
        if let Out::Exiting(e) = next(w).await {
            break e;
        }
    };
    let status = tokio::time::timeout(DEADLINE, w.wait())
        .await
        .expect("exit within deadline")
        .unwrap();
    (e, status.code().expect("exited, not signalled"))
}

fn kind(r: &JobResult) -> ErrorKind {
    r.error
        .as_ref()
        .map_or(ErrorKind::Unspecified, |e| e.kind())
}

#[tokio::test]
async fn jobs_run_in_order_on_one_reused_session() {
    let (d, _g) = device(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut w = spawn();
    w.send(&init(&d, |_| {})).await.unwrap();
    // Three jobs at once: they queue in the worker and run in arrival order.
    for id in ["a", "b", "c"] {
        w.send(&frame(job(id, &["show clock"]))).await.unwrap();
    }
    let first = result(&mut w).await;
    assert_eq!(first.job_id, "a");
    assert!(
        first.ok && !first.session_reused && first.connect_us > 0,
        "{first:?}"
    );
    for id in ["b", "c"] {
        let r = result(&mut w).await;
        assert_eq!(r.job_id, id);
        assert!(r.ok && r.session_reused && r.connect_us == 0, "{r:?}");
        assert!(r.results[0].output.contains("UTC"), "{r:?}");
    }
    assert_eq!(d.logins(), 1);
    w.close_stdin();
    let (e, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::OK, "{e:?}");
}

#[tokio::test]
async fn keepalive_detects_a_dropped_device_and_exits_session_lost() {
    let (d, _g) = device(DeviceSpec::new(Flavor::AristaEos, "sw1")).await;
    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connect_on_start = true;
        i.keepalive_seconds = 1;
    }))
    .await
    .unwrap();
    loop {
        if let Out::Health(h) = next(&mut w).await {
            assert!(h.ok && h.rtt_us > 0, "{h:?}");
            break;
        }
    }
    let dropped = Instant::now();
    d.drop_connections();
    let mut unhealthy = None;
    let e = loop {
        match next(&mut w).await {
            Out::Health(h) if !h.ok => unhealthy = Some(h),
            Out::Exiting(e) => break e,
            _ => {}
        }
    };
    let detected = dropped.elapsed();
    assert_eq!(e.exit_code, exit_code::SESSION_LOST, "{e:?}");
    assert!(unhealthy.is_some(), "an unhealthy report precedes the exit");
    assert!(
        detected < Duration::from_secs(3),
        "detected after {detected:?}"
    );
    assert_eq!(
        w.wait().await.unwrap().code(),
        Some(exit_code::SESSION_LOST)
    );
}

#[tokio::test]
async fn keepalive_detects_a_frozen_device_within_interval_plus_timeout() {
    let (d, _g) = device(DeviceSpec::new(Flavor::JuniperJunos, "vmx1")).await;
    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connect_on_start = true;
        i.keepalive_seconds = 1;
        i.timeouts = Some(wire::Timeouts {
            prompt_ms: 1000,
            ..Default::default()
        });
    }))
    .await
    .unwrap();
    loop {
        if let Out::Health(h) = next(&mut w).await {
            assert!(h.ok, "{h:?}");
            break;
        }
    }
    let frozen = Instant::now();
    d.set_frozen(true);
    let (e, code) = exiting(&mut w).await;
    let detected = frozen.elapsed();
    assert_eq!(code, exit_code::SESSION_LOST, "{e:?}");
    assert!(e.reason.contains("keepalive"), "{e:?}");
    // keepalive interval (1 s) + prompt timeout (1 s) + margin
    assert!(
        detected < Duration::from_secs(4),
        "detected after {detected:?}"
    );
}

#[tokio::test]
async fn keepalive_keeps_the_session_past_the_device_exec_timeout() {
    let mut spec = DeviceSpec::new(Flavor::Huawei, "hw1");
    spec.exec_timeout = Some(Duration::from_millis(1500));
    let (d, _g) = device(spec).await;
    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connect_on_start = true;
        i.keepalive_seconds = 1;
    }))
    .await
    .unwrap();
    // Four healthy keepalives span more than twice the device's exec-timeout.
    let mut healthy = 0;
    while healthy < 4 {
        match next(&mut w).await {
            Out::Health(h) => {
                assert!(h.ok, "{h:?}");
                healthy += 1;
            }
            Out::Exiting(e) => panic!("session lost: {e:?}"),
            _ => {}
        }
    }
    w.send(&frame(job("j", &["display version"])))
        .await
        .unwrap();
    let r = result(&mut w).await;
    assert!(r.ok && r.session_reused, "{r:?}");
    assert_eq!(d.logins(), 1);
}

#[tokio::test]
async fn idle_ttl_ends_the_worker_cleanly() {
    let (d, _g) = device(DeviceSpec::new(Flavor::CiscoNxos, "n1")).await;
    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connect_on_start = true;
        i.idle_ttl_seconds = 1;
    }))
    .await
    .unwrap();
    let (e, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::OK);
    assert!(e.reason.contains("idle"), "{e:?}");
}

#[tokio::test]
async fn changed_connection_arguments_open_a_new_session() {
    let (a, _ga) = device(DeviceSpec::new(Flavor::CiscoIos, "dev-a")).await;
    let (b, _gb) = device(DeviceSpec::new(Flavor::CiscoIos, "dev-b")).await;
    let mut w = spawn();
    w.send(&init(&a, |i| i.connect_on_start = true))
        .await
        .unwrap();
    w.send(&frame(job("1", &["show version"]))).await.unwrap();
    let r = result(&mut w).await;
    assert!(
        r.session_reused && r.results[0].output.contains("dev-a"),
        "{r:?}"
    );

    let mut j = job("2", &["show version"]);
    j.connection = Some(connection(&b));
    w.send(&frame(j)).await.unwrap();
    let r = result(&mut w).await;
    assert!(
        r.ok && !r.session_reused && r.results[0].output.contains("dev-b"),
        "{r:?}"
    );

    // The same arguments again: the session is reused.
    let mut j = job("3", &["show version"]);
    j.connection = Some(connection(&b));
    w.send(&frame(j)).await.unwrap();
    assert!(result(&mut w).await.session_reused);
    assert_eq!((a.logins(), b.logins()), (1, 1));
}

#[tokio::test]
async fn eof_on_stdin_closes_the_session_and_exits() {
    let (d, _g) = device(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut w = spawn();
    w.send(&init(&d, |i| i.connect_on_start = true))
        .await
        .unwrap();
    assert!(matches!(next(&mut w).await, Out::Connected(_)));
    w.close_stdin();
    let (e, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::OK);
    assert!(e.reason.contains("stdin"), "{e:?}");
}

#[tokio::test]
async fn cancel_interrupts_the_running_job_and_the_next_job_reconnects() {
    let (d, _g) = device(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut w = spawn();
    w.send(&init(&d, |i| i.connect_on_start = true))
        .await
        .unwrap();
    assert!(matches!(next(&mut w).await, Out::Connected(_)));
    w.send(&frame(job("hang", &["debug hang"]))).await.unwrap();
    w.send(&frame(job("queued", &["show clock"])))
        .await
        .unwrap();
    // Taking back queued jobs leaves the running one alone: the first answer is the queued one.
    w.send(&ParentFrame {
        frame: Some(In::Cancel(wire::Cancel {
            job_id: "hang".into(),
            queued_only: true,
        })),
    })
    .await
    .unwrap();
    w.send(&ParentFrame {
        frame: Some(In::Cancel(wire::Cancel {
            job_id: "queued".into(),
            queued_only: true,
        })),
    })
    .await
    .unwrap();
    let r = result(&mut w).await;
    assert_eq!(
        (r.job_id.as_str(), kind(&r), r.not_started),
        ("queued", ErrorKind::Canceled, true),
        "{r:?}"
    );
    w.send(&ParentFrame {
        frame: Some(In::Cancel(wire::Cancel {
            job_id: "hang".into(),
            queued_only: false,
        })),
    })
    .await
    .unwrap();
    let r = result(&mut w).await;
    assert_eq!(
        (r.job_id.as_str(), kind(&r)),
        ("hang", ErrorKind::Canceled),
        "{r:?}"
    );
    w.send(&frame(job("after", &["show clock"]))).await.unwrap();
    let r = result(&mut w).await;
    assert!(r.ok && !r.session_reused, "{r:?}");
    assert_eq!(d.logins(), 2);
}

#[tokio::test]
async fn a_command_timeout_fails_the_job_and_ends_the_worker() {
    let (d, _g) = device(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut w = spawn();
    w.send(&init(&d, |_| {})).await.unwrap();
    let mut j = job("t", &["show clock", "debug hang", "show version"]);
    j.command_timeout_ms = 300;
    w.send(&frame(j)).await.unwrap();
    w.send(&frame(job("next", &["show clock"]))).await.unwrap();
    let r = result(&mut w).await;
    assert_eq!(kind(&r), ErrorKind::CommandTimeout, "{r:?}");
    let st: Vec<i32> = r.results.iter().map(|c| c.status).collect();
    use wire::CommandStatus as S;
    assert_eq!(st, [S::Ok as i32, S::Failed as i32, S::Skipped as i32]);
    // The queued job is handed back unstarted, so the parent can run it on a fresh worker.
    let r = result(&mut w).await;
    assert!(r.job_id == "next" && r.not_started, "{r:?}");
    let (_, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::SESSION_LOST);
}

#[tokio::test]
async fn one_shot_mode_runs_one_job_on_a_fresh_connection() {
    let (d, _g) = device(DeviceSpec::new(Flavor::Huawei, "hw1")).await;
    let mut w = spawn();
    w.send(&init(&d, |i| i.mode = WorkerMode::Oneshot as i32))
        .await
        .unwrap();
    w.send(&frame(job("once", &["display version"])))
        .await
        .unwrap();
    let r = result(&mut w).await;
    assert!(r.ok && !r.session_reused && r.connect_us > 0, "{r:?}");
    let (_, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::OK);
}

#[tokio::test]
async fn bad_input_gets_typed_answers() {
    let (d, _g) = device(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;

    // invalid init: exit 64 with a message that says what is allowed
    let mut w = spawn();
    w.send(&init(&d, |i| i.keepalive_seconds = 5000))
        .await
        .unwrap();
    let (e, code) = exiting(&mut w).await;
    assert_eq!(
        (code, e.reason.as_str()),
        (
            exit_code::BAD_ARGUMENTS,
            "keepalive_seconds must be 1..=3600, got 5000"
        )
    );

    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connection.as_mut().unwrap().device_type = "cisco_iox".into()
    }))
    .await
    .unwrap();
    let (e, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::BAD_ARGUMENTS);
    assert!(
        e.reason.contains("cisco_iox") && e.reason.contains("allowed"),
        "{e:?}"
    );

    // a job frame first: not allowed
    let mut w = spawn();
    w.send(&frame(job("x", &["show clock"]))).await.unwrap();
    let (_, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::BAD_ARGUMENTS);

    // garbage bytes instead of a frame
    let mut w = spawn();
    w.send(&ParentFrame { frame: None }).await.unwrap();
    let (_, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::BAD_ARGUMENTS);

    // per-job problems fail the job, not the worker
    let mut w = spawn();
    w.send(&init(&d, |_| {})).await.unwrap();
    w.send(&frame(job("empty", &[]))).await.unwrap();
    let r = result(&mut w).await;
    assert_eq!(kind(&r), ErrorKind::InvalidArgument, "{r:?}");
    let mut j = job("junos-enable", &["show clock"]);
    j.enable_mode = true;
    let mut c = connection(&d);
    c.device_type = "juniper_junos".into();
    j.connection = Some(c);
    w.send(&frame(j)).await.unwrap();
    let r = result(&mut w).await;
    assert_eq!(kind(&r), ErrorKind::Unsupported, "{r:?}");
    w.send(&frame(job("fine", &["show clock"]))).await.unwrap();
    assert!(result(&mut w).await.ok);

    // wrong password: the job says why, the worker exits with the auth code
    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connection.as_mut().unwrap().password = "nope".into()
    }))
    .await
    .unwrap();
    w.send(&frame(job("j", &["show clock"]))).await.unwrap();
    let r = result(&mut w).await;
    assert_eq!(kind(&r), ErrorKind::AuthFailed, "{r:?}");
    let (_, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::AUTH_FAILED);

    // unreachable device
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connect_on_start = true;
        i.connection.as_mut().unwrap().port = port as u32;
    }))
    .await
    .unwrap();
    let (e, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::CONNECT_FAILED, "{e:?}");
}

#[tokio::test]
async fn ssh_level_keepalive_alone_detects_a_frozen_device() {
    let (d, _g) = device(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connect_on_start = true;
        i.keepalive_seconds = 3600; // the application keepalive stays out of it
        i.ssh_keepalive = Some(wire::SshKeepalive {
            interval_ms: 300,
            max_missed: 2,
        });
    }))
    .await
    .unwrap();
    assert!(matches!(next(&mut w).await, Out::Connected(_)));
    let frozen = Instant::now();
    d.set_frozen(true);
    let (e, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::SESSION_LOST, "{e:?}");
    assert!(
        frozen.elapsed() < Duration::from_secs(5),
        "detected after {:?}",
        frozen.elapsed()
    );
}

#[tokio::test]
async fn without_keepalives_the_device_exec_timeout_ends_the_session() {
    let mut spec = DeviceSpec::new(Flavor::Huawei, "hw1");
    spec.exec_timeout = Some(Duration::from_millis(500));
    let (d, _g) = device(spec).await;
    let mut w = spawn();
    w.send(&init(&d, |i| {
        i.connect_on_start = true;
        i.keepalive_seconds = 3600;
    }))
    .await
    .unwrap();
    let (e, code) = exiting(&mut w).await;
    assert_eq!(code, exit_code::SESSION_LOST, "{e:?}");
}
