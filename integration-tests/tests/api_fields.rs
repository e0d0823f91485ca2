//! Public API fields that take effect far from the manager, each shown end to end through the
//! public API with real processes (see `docs/api-fields.md`).

use std::time::Duration;

use integration_tests::cluster::{Options, TestCluster};
use netpulse_proto::api::*;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// `connection.connect_timeout_seconds` reaches the worker's SSH connect: against a device that
/// accepts TCP and never speaks SSH, the job fails with `connect_timeout` after the time asked
/// for, not after the 10 s default, for pinned and fifo jobs alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_seconds_bounds_the_ssh_handshake() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // Accepts connections and holds them without a word: no SSH banner ever comes.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    for (strategy, asked) in [(Strategy::Pinned, 1), (Strategy::Fifo, 2)] {
        let mut r = c.request(0, &["show clock"]);
        let conn = r.connection.as_mut().unwrap();
        conn.port = port as u32;
        conn.connect_timeout_seconds = asked;
        r.strategy = strategy as i32;
        let (job, took) = run(&c, r).await;
        assert_eq!(
            (job.status(), kind(&job)),
            (JobStatus::Failed, "connect_timeout"),
            "{strategy:?}: {job:?}"
        );
        let asked = Duration::from_secs(asked as u64);
        assert!(
            took >= asked && took < asked + Duration::from_secs(5),
            "{strategy:?}: asked for {asked:?}, the job took {took:?}"
        );
    }
    holder.abort();
}

async fn run(c: &TestCluster, r: ExecuteRequest) -> (Job, Duration) {
    let mut jobs = c.jobs(0).await.unwrap();
    let mut r = r;
    r.wait = true;
    let started = Instant::now();
    let job = tokio::time::timeout(Duration::from_secs(60), jobs.execute(c.authed(r)))
        .await
        .expect("an answer within 60 s")
        .unwrap()
        .into_inner();
    (job, started.elapsed())
}

/// The refusal of a request the manager must not accept.
async fn refused(c: &TestCluster, r: ExecuteRequest) -> tonic::Status {
    c.jobs(0)
        .await
        .unwrap()
        .execute(c.authed(r))
        .await
        .unwrap_err()
}

fn kind(j: &Job) -> &str {
    j.error.as_ref().map_or("", |e| e.kind.as_str())
}

fn fifo(mut r: ExecuteRequest) -> ExecuteRequest {
    r.strategy = Strategy::Fifo as i32;
    r
}

/// The credentials, enable mode, save, and the per-command and per-job timeouts, each shown to
/// change what the device does or how the job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_enable_save_and_timeouts_take_effect_on_the_device() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=2".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    // password (and username): a wrong one fails the login.
    let mut r = fifo(c.request(0, &["show clock"]));
    r.connection.as_mut().unwrap().password = "not-the-password".into();
    let (j, _) = run(&c, r).await;
    assert_eq!(
        (j.status(), kind(&j)),
        (JobStatus::Failed, "auth_failed"),
        "{j:?}"
    );

    // enable_mode and secret: a privileged command is rejected without enable mode, runs with
    // it and the right secret, and a wrong secret fails the enable.
    let (j, _) = run(&c, fifo(c.request(0, &["show startup-config"]))).await;
    assert_eq!(j.status(), JobStatus::Failed, "{j:?}");
    assert_eq!(j.results[0].status, "rejected");
    let mut r = fifo(c.request(0, &["show startup-config"]));
    r.enable_mode = true;
    let (j, _) = run(&c, r.clone()).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    r.connection.as_mut().unwrap().secret = "wrong-secret".into();
    let (j, _) = run(&c, r).await;
    assert_eq!(
        (j.status(), kind(&j)),
        (JobStatus::Failed, "enable_failed"),
        "{j:?}"
    );

    // save: on one pinned session, a saved push reaches the startup config, an unsaved one
    // only the running config.
    let push = |line: &str, save: bool| {
        let mut r = c.request(1, &[]);
        r.config = vec![line.into()];
        r.save = save;
        r.enable_mode = true;
        r
    };
    let show = |what: &str| {
        let mut r = c.request(1, &[what]);
        r.enable_mode = true;
        r
    };
    let (j, _) = run(&c, push("hostname saved-by-test", true)).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    let (j, _) = run(&c, push("hostname unsaved-by-test", false)).await;
    assert_eq!(j.status(), JobStatus::Succeeded, "{j:?}");
    let (startup, _) = run(&c, show("show startup-config")).await;
    let (running, _) = run(&c, show("show running-config")).await;
    assert!(startup.session_reused && running.session_reused);
    let startup = &startup.results[0].output;
    assert!(
        startup.contains("hostname saved-by-test") && !startup.contains("unsaved-by-test"),
        "{startup}"
    );
    assert!(
        running.results[0]
            .output
            .contains("hostname unsaved-by-test")
    );

    // command_timeout_seconds: a command whose output never ends fails after the time asked.
    let mut r = fifo(c.request(0, &["debug hang"]));
    r.connection.as_mut().unwrap().command_timeout_seconds = 1;
    let (j, took) = run(&c, r).await;
    assert_eq!(
        (j.status(), kind(&j)),
        (JobStatus::Failed, "command_timeout"),
        "{j:?}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );

    // timeout_seconds: the whole job is bounded; the agent kills a worker past it (plus 2 s).
    let mut r = fifo(c.request(0, &["debug hang"]));
    r.timeout_seconds = 1;
    let (j, took) = run(&c, r).await;
    assert_eq!(
        (j.status(), kind(&j)),
        (JobStatus::Failed, "timeout"),
        "{j:?}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

/// `ttl_seconds` ends an idle pinned session, and `result_ttl_seconds` removes a finished job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ttl_and_result_ttl_take_effect() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        manager_args: vec!["--result-lease-bucket-seconds".into(), "1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut r = c.request(0, &["show clock"]);
    r.ttl_seconds = 1;
    r.result_ttl_seconds = 1;
    let (first, _) = run(&c, r.clone()).await;
    assert_eq!(first.status(), JobStatus::Succeeded, "{first:?}");
    let mut admin = c.admin(0).await.unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut idle_exit, mut result_gone) = (false, false);
    while !(idle_exit && result_gone) {
        assert!(
            Instant::now() < deadline,
            "within 30 s: worker exited {idle_exit}, result removed {result_gone}"
        );
        let workers = admin
            .list_workers(c.authed(ListWorkersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .workers;
        idle_exit |= workers
            .iter()
            .any(|w| w.worker_id == first.worker_id && w.state == "exited");
        let got = jobs
            .get_job(c.authed(GetJobRequest {
                id: first.id.clone(),
            }))
            .await;
        result_gone |= matches!(&got, Err(s) if s.code() == tonic::Code::NotFound);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next job logs in again: the idle session is gone.
    let (next, _) = run(&c, r).await;
    assert!(
        next.status() == JobStatus::Succeeded && !next.session_reused,
        "{next:?}"
    );
}

/// `command_specs` (each field), `connection.prompt_pattern` and `connection.private_key` with
/// its passphrase, through the public API to a device's questions and its SSH server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_specs_prompt_pattern_and_private_key_take_effect() {
    let key = devsim::server::random_host_key();
    let public = key.public_key().to_openssh().unwrap();
    let c = TestCluster::start(Options {
        devsim: vec![
            "--devices".into(),
            "cisco_ios=1".into(),
            "--authorized-key".into(),
            public,
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let specs = |v: Vec<CommandSpec>| {
        let mut r = c.request(0, &[]);
        r.enable_mode = true;
        r.command_specs = v;
        r
    };
    let spec = |command: &str| CommandSpec {
        command: command.into(),
        ..Default::default()
    };

    // `answers`: `delete` asks twice; each question gets its answer.
    let answered = CommandSpec {
        answers: vec![
            Answer {
                prompt: r"Delete filename \[[^\]]*\]\? $".into(),
                answer: String::new(),
            },
            Answer {
                prompt: r"\[confirm\]$".into(),
                answer: "y".into(),
            },
        ],
        ..spec("delete flash:old.bin")
    };
    let (job, _) = run(&c, specs(vec![answered])).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    assert!(
        job.results[0].output.contains("Deleted flash:/old.bin"),
        "{job:?}"
    );

    // `read_timeout_seconds`: unanswered, the question holds the read for 1 s, not the
    // connection's 30 s.
    let (job, took) = run(
        &c,
        specs(vec![CommandSpec {
            read_timeout_seconds: 1,
            ..spec("delete flash:x.bin")
        }]),
    )
    .await;
    assert_eq!(
        (job.status(), kind(&job)),
        (JobStatus::Failed, "command_timeout"),
        "{job:?}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");

    // `expect`: the read ends at the question; the next spec (an empty line: RETURN) answers.
    let (job, _) = run(
        &c,
        specs(vec![
            CommandSpec {
                expect: r"Destination filename \[.*\]\? $".into(),
                ..spec("copy running-config startup-config")
            },
            spec(""),
        ]),
    )
    .await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    assert!(
        job.results[0].output.starts_with("Destination filename"),
        "{job:?}"
    );
    assert!(job.results[1].output.contains("[OK]"), "{job:?}");

    // `prompt_pattern`: a bad one is refused at once; a good one logs in.
    let mut r = c.request(0, &["show version"]);
    r.connection.as_mut().unwrap().prompt_pattern = "R1[".into();
    let e = refused(&c, r).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("connection.prompt_pattern"), "{e:?}");
    let mut r = c.request(0, &["show version"]);
    let host = c.device(0).name.clone();
    r.connection.as_mut().unwrap().prompt_pattern = format!(
        r"^(?P<host>{})(?:\((?P<mode>[^)]+)\))?(?P<sign>[>#]) ?$",
        regex::escape(&host)
    );
    let (job, _) = run(&c, r).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");

    // `private_key` with `private_key_passphrase`, and no password.
    let locked = key
        .encrypt(&mut rand::rng(), "key-phrase-5")
        .unwrap()
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .unwrap()
        .to_string();
    let keyed = |passphrase: &str| {
        let mut r = fifo(c.request(0, &["show version"]));
        let conn = r.connection.as_mut().unwrap();
        conn.password.clear();
        conn.private_key = locked.clone();
        conn.private_key_passphrase = passphrase.into();
        r
    };
    let (job, _) = run(&c, keyed("key-phrase-5")).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    let (job, _) = run(&c, keyed("wrong")).await;
    assert_eq!(job.status(), JobStatus::Failed, "{job:?}");
    assert!(!format!("{job:?}").contains("key-phrase-5"));
}

/// `connection.legacy_algorithms`: a device that offers only SHA-1 key exchange, CBC ciphers
/// and hmac-sha1 is refused without the opt-in (`connect_failed`, with the hint) and reached
/// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_algorithms_reach_an_old_device_only_when_asked() {
    let c = TestCluster::start(Options {
        devsim: vec![
            "--devices".into(),
            "cisco_ios=1".into(),
            "--legacy-ssh-only".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let (job, _) = run(&c, fifo(c.request(0, &["show version"]))).await;
    assert_eq!(
        (job.status(), kind(&job)),
        (JobStatus::Failed, "connect_failed"),
        "{job:?}"
    );
    let message = &job.error.as_ref().unwrap().message;
    assert!(
        message.contains("connection.legacy_algorithms"),
        "{message}"
    );
    let mut r = c.request(0, &["show version"]);
    r.connection.as_mut().unwrap().legacy_algorithms = true;
    let (job, _) = run(&c, r).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
}

/// `connection.jump_host`: OpenSSH's sshd as the bastion in front of devsim. The device is
/// reached through it for pinned and fifo jobs (sshd's log shows the forwarded channel to the
/// device's port), the jump host logging in with its own key; a wrong jump-host key and a jump
/// host that refuses forwarding fail with errors that name the jump host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_host_carries_the_session_to_the_device() {
    use integration_tests::sshd::Sshd;
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let jump = Sshd::start("").await;
    let through = |sshd: &Sshd, key: String, strategy: Strategy| {
        let mut r = c.request(0, &["show version"]);
        r.strategy = strategy as i32;
        r.connection.as_mut().unwrap().jump_host = Some(JumpHost {
            host: "127.0.0.1".into(),
            port: sshd.port as u32,
            username: sshd.user.clone(),
            private_key: key,
            ..Default::default()
        });
        r
    };
    for strategy in [Strategy::Pinned, Strategy::Fifo] {
        let (job, _) = run(&c, through(&jump, jump.client_key_pem(), strategy)).await;
        assert_eq!(job.status(), JobStatus::Succeeded, "{strategy:?}: {job:?}");
        assert!(job.results[0].output.contains("Cisco IOS"), "{job:?}");
    }
    let log = std::fs::read_to_string(jump.log()).unwrap();
    let forwarded = format!("target 127.0.0.1 port {}", c.device(0).port);
    assert_eq!(
        log.matches(&forwarded).count(),
        2,
        "one forwarded channel per login, in sshd's log:\n{log}"
    );

    let stranger =
        russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
            .unwrap()
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap()
            .to_string();
    let (job, _) = run(&c, through(&jump, stranger, Strategy::Fifo)).await;
    let at = format!("jump host 127.0.0.1:{}", jump.port);
    assert_eq!(kind(&job), "auth_failed", "{job:?}");
    assert!(job.error.as_ref().unwrap().message.contains(&at), "{job:?}");

    let closed = Sshd::start("AllowTcpForwarding no").await;
    let (job, _) = run(
        &c,
        through(&closed, closed.client_key_pem(), Strategy::Fifo),
    )
    .await;
    let message = &job.error.as_ref().unwrap().message;
    assert_eq!(kind(&job), "connect_failed", "{job:?}");
    assert!(
        message.contains(&format!(
            "the jump host 127.0.0.1:{} did not open a channel",
            closed.port
        )),
        "{message}"
    );
}

/// `queue_timeout_seconds` bounds how long a fifo job retries a device that refuses it as busy
/// (devsim serves one session at a time and closes the connection of the next, as IOS does
/// with no free VTY line): two fifo jobs at once both succeed, one after retrying (the agent
/// logs each retry); beside a pinned session that keeps the only line, a fifo job with a 2 s
/// queue timeout ends `device_busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_device_is_retried_within_the_queue_timeout() {
    let c = TestCluster::start(Options {
        devsim: vec![
            "--devices".into(),
            "cisco_ios=1".into(),
            "--max-sessions".into(),
            "1".into(),
            // Each line (paging off, the RETURN, the command) holds the line this long.
            "--command-delay-ms".into(),
            "400".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let both = tokio::join!(
        run(&c, fifo(c.request(0, &["show clock"]))),
        run(&c, fifo(c.request(0, &["show clock"])))
    );
    for (job, _) in [both.0, both.1] {
        assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    }
    let retries = || {
        std::fs::read_to_string(&c.agents[0].log)
            .unwrap()
            .matches("the device is busy; retrying")
            .count()
    };
    assert!(retries() >= 1, "no retry in the agent's log");

    let (held, _) = run(&c, c.request(0, &["show clock"])).await;
    assert_eq!(held.status(), JobStatus::Succeeded, "{held:?}");
    let mut r = fifo(c.request(0, &["show clock"]));
    r.queue_timeout_seconds = 2;
    let before = retries();
    let (job, took) = run(&c, r).await;
    assert_eq!(kind(&job), "device_busy", "{job:?}");
    assert!(
        job.error
            .as_ref()
            .unwrap()
            .message
            .contains("refused the session"),
        "{job:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(retries() > before, "it was retried before it failed");
}

/// `TestConnection` (and `ExecuteRequest.test_connection` under it): logs in on a fresh
/// session and reports each step's time, the prompt, the name and the platform (an alias
/// resolved), running nothing; a wrong password is `auth_failed`; bad input is
/// `INVALID_ARGUMENT` with what is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_reports_the_login_without_running_anything() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1,juniper_junos=1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut jobs = c.jobs(0).await.unwrap();
    let test = |i: usize, device_type: &str| TestConnectionRequest {
        connection: Some(Connection {
            device_type: device_type.into(),
            ..c.request(i, &[]).connection.unwrap()
        }),
        timeout_seconds: 30,
    };
    let r = jobs
        .test_connection(c.authed(test(0, "cisco_ios")))
        .await
        .unwrap()
        .into_inner();
    assert!(r.ok, "{r:?}");
    let t = r.result.unwrap();
    assert!(
        t.tcp_us > 0 && t.handshake_us > 0 && t.auth_us > 0 && t.shell_us > 0 && t.prompt_us > 0,
        "{t:?}"
    );
    assert_eq!(
        t.total_us,
        t.tcp_us + t.handshake_us + t.auth_us + t.shell_us + t.prompt_us
    );
    assert_eq!(t.hostname, "cisco-ios-1");
    assert_eq!(t.platform, "cisco_ios");
    assert!(t.prompt.starts_with("cisco-ios-1"), "{t:?}");
    assert!(!r.node_id.is_empty() && !r.job_id.is_empty());
    let job = jobs
        .get_job(c.authed(GetJobRequest { id: r.job_id }))
        .await
        .unwrap()
        .into_inner();
    assert!(job.results.is_empty(), "nothing ran: {job:?}");
    assert_eq!(job.strategy(), Strategy::Fifo);

    // By an alias, and by autodetect: the platform reported is the one the session followed.
    for device_type in ["juniper", "autodetect"] {
        let r = jobs
            .test_connection(c.authed(test(1, device_type)))
            .await
            .unwrap()
            .into_inner();
        let t = r.result.as_ref().unwrap();
        assert_eq!(
            (t.platform.as_str(), t.hostname.as_str()),
            ("juniper_junos", "admin@juniper-junos-1"),
            "{r:?}"
        );
        let job = jobs
            .get_job(c.authed(GetJobRequest { id: r.job_id }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (job.device_type.as_str(), job.platform.as_str()),
            (device_type, "juniper_junos")
        );
    }

    let mut wrong = test(0, "cisco_ios");
    wrong.connection.as_mut().unwrap().password = "not-the-password".into();
    let r = jobs
        .test_connection(c.authed(wrong))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.ok);
    assert_eq!(r.error.as_ref().unwrap().kind, "auth_failed", "{r:?}");
    assert!(!format!("{r:?}").contains("not-the-password"));

    let mut slow = test(0, "cisco_ios");
    slow.timeout_seconds = 3601;
    let e = jobs.test_connection(c.authed(slow)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("1..=3600"), "{e:?}");
    let mut both = c.request(0, &["show clock"]);
    both.test_connection = true;
    let e = jobs.execute(c.authed(both)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("test_connection runs nothing"),
        "{e:?}"
    );
}

/// `transcript`: the job returns what its session received and sent, the login included when
/// the job opened the session, the enable secret masked; a job that does not ask gets none,
/// and a later job on the reused session gets only its own exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_shows_the_session_with_secrets_masked() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        password: "pw-s3cret".into(),
        secret: "en-s3cret".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut r = c.request(0, &["show clock"]);
    r.enable_mode = true;
    r.transcript = true;
    let (job, _) = run(&c, r.clone()).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    let t = &job.transcript;
    for seen in [
        "cisco-ios-1>",
        "[sent] enable",
        "[sent] ********",
        "cisco-ios-1#",
        "[sent] show clock",
    ] {
        assert!(
            t.contains(seen),
            "{seen:?} missing from the transcript:\n{t}"
        );
    }
    assert!(!t.contains("s3cret"), "a secret in the transcript:\n{t}");

    r.transcript = false;
    let (job, _) = run(&c, r.clone()).await;
    assert!(job.session_reused && job.transcript.is_empty(), "{job:?}");
    r.transcript = true;
    r.commands = vec!["show version".into()];
    let (job, _) = run(&c, r).await;
    let t = &job.transcript;
    assert!(job.session_reused, "{job:?}");
    assert!(
        t.contains("[sent] show version") && t.contains("Cisco IOS"),
        "{t}"
    );
    assert!(!t.contains("show clock"), "only this job's exchange:\n{t}");
}

/// `mode` runs the commands in one of the platform's named modes (Junos's shell here) and the
/// pinned session is back at the CLI for the next job; a mode the platform lacks fails with
/// the modes it has, and a mode beside config is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_mode_runs_the_commands_and_the_session_comes_back() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "juniper_junos=1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut r = c.request(0, &["uname -a", "id"]);
    r.mode = "shell".into();
    let (job, _) = run(&c, r).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    assert!(job.results[0].output.starts_with("FreeBSD "), "{job:?}");
    assert!(job.results[1].output.starts_with("uid="), "{job:?}");

    let (job, _) = run(&c, c.request(0, &["show version"])).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    assert!(
        job.session_reused && job.results[0].output.contains("Junos:"),
        "{job:?}"
    );

    let mut r = c.request(0, &["show platform"]);
    r.mode = "admin".into();
    let (job, _) = run(&c, r).await;
    assert_eq!(
        (job.status(), kind(&job)),
        (JobStatus::Failed, "unsupported")
    );
    let message = &job.error.as_ref().unwrap().message;
    assert!(
        message.contains("\"admin\"") && message.contains("shell"),
        "{message}"
    );

    let mut r = c.request(0, &[]);
    r.config = vec!["set system host-name x".into()];
    r.mode = "shell".into();
    let e = refused(&c, r).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("mode applies to commands"), "{e:?}");
}

/// `parse` and `command_specs[].parse`: rows from ntc-templates' index (installed by
/// scripts/deps, found by platform and command), from a template file in the agent's
/// `--templates-dir` (read again when it changes), and inline; a command with no template
/// keeps its text and says why; bad templates are refused at the manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_turns_outputs_into_rows() {
    let templates = tempfile::tempdir().unwrap();
    let clock = "Value TIME (\\S+)\nValue ZONE (\\S+)\n\nStart\n  ^\\*?${TIME} ${ZONE} -> Record\n";
    std::fs::write(templates.path().join("clock.textfsm"), clock).unwrap();
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        agent_args: vec![
            "--templates-dir".into(),
            templates.path().display().to_string(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let fields = |v: &prost_types::Value, key: &str| -> String {
        let Some(prost_types::value::Kind::StructValue(s)) = &v.kind else {
            panic!("a row is an object: {v:?}");
        };
        match s.fields.get(key).and_then(|f| f.kind.clone()) {
            Some(prost_types::value::Kind::StringValue(s)) => s,
            other => panic!("{key}: {other:?}"),
        }
    };

    // By the index, for every command of `commands`.
    let mut r = c.request(
        0,
        &[
            "show version",
            "show ip interface brief",
            "show tech-support",
        ],
    );
    r.parse = true;
    let (job, _) = run(&c, r).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    let version = job.results[0].parsed.as_ref().expect("show version parsed");
    assert_eq!(version.values.len(), 1, "{:?}", job.results[0]);
    assert_eq!(fields(&version.values[0], "version"), "15.9(3)M4");
    assert_eq!(fields(&version.values[0], "hostname"), "cisco-ios-1");
    let brief = job.results[1].parsed.as_ref().expect("brief parsed");
    assert!(!brief.values.is_empty(), "{:?}", job.results[1]);
    assert!(job.results[2].parsed.is_none());
    assert!(
        job.results[2]
            .parse_error
            .contains("no template for \"show tech-support\" on cisco_ios"),
        "{:?}",
        job.results[2]
    );
    assert!(!job.results[2].output.is_empty(), "the text is kept");

    // A named template, then the same file changed; and an inline one.
    let spec = |p: Parse| CommandSpec {
        command: "show clock".into(),
        parse: Some(p),
        ..Default::default()
    };
    let named = || Parse {
        template_name: "clock.textfsm".into(),
        ..Default::default()
    };
    let mut r = c.request(0, &[]);
    r.command_specs = vec![spec(named())];
    let (job, _) = run(&c, r.clone()).await;
    let rows = job.results[0]
        .parsed
        .as_ref()
        .expect("named template parsed");
    assert_eq!(fields(&rows.values[0], "zone"), "UTC", "{job:?}");
    let changed = clock
        .replace("Value ZONE", "Value TZ")
        .replace("${ZONE}", "${TZ}");
    std::fs::write(templates.path().join("clock.textfsm"), changed).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(templates.path().join("clock.textfsm"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    let (job, _) = run(&c, r).await;
    let rows = job.results[0]
        .parsed
        .as_ref()
        .expect("changed template parsed");
    assert_eq!(fields(&rows.values[0], "tz"), "UTC", "{job:?}");
    let mut r = c.request(0, &[]);
    r.command_specs = vec![spec(Parse {
        inline_template: clock.into(),
        ..Default::default()
    })];
    let (job, _) = run(&c, r).await;
    let rows = job.results[0]
        .parsed
        .as_ref()
        .expect("inline template parsed");
    assert_eq!(fields(&rows.values[0], "time"), "10:00:00.000");

    // Refused at once: a template that does not compile, two kinds at once, parse with config.
    for (p, why) in [
        (
            Parse {
                inline_template: "Value X\n".into(),
                ..Default::default()
            },
            "inline_template is not a valid TextFSM template",
        ),
        (
            Parse {
                ntc_index: true,
                template_name: "clock.textfsm".into(),
                ..Default::default()
            },
            "not several",
        ),
        (
            Parse {
                template_name: "../etc/passwd".into(),
                ..Default::default()
            },
            "template_name is a file name",
        ),
    ] {
        let mut r = c.request(0, &[]);
        r.command_specs = vec![spec(p)];
        let e = refused(&c, r).await;
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains(why), "{e:?}");
    }
    let mut r = c.request(0, &[]);
    r.config = vec!["hostname x".into()];
    r.parse = true;
    assert!(
        refused(&c, r)
            .await
            .message()
            .contains("parse applies to commands")
    );
}

/// `config_template` renders at the manager (variables, a loop) and the lines are pushed; a
/// missing variable refuses the job, naming it, before anything reaches the device;
/// `RenderTemplate` renders a file of `--config-templates-dir`, read again at each use, and
/// lists the variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_template_renders_at_the_manager_and_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let ntp = "{% for s in servers %}\nntp server {{ s }}\n{% endfor %}\n";
    std::fs::write(dir.path().join("ntp.j2"), ntp).unwrap();
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        manager_args: vec![
            "--config-templates-dir".into(),
            dir.path().display().to_string(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let text = |v: &str| prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(v.into())),
    };
    let servers = prost_types::Value {
        kind: Some(prost_types::value::Kind::ListValue(
            prost_types::ListValue {
                values: vec![text("192.0.2.1"), text("192.0.2.2")],
            },
        )),
    };
    let vars = |with_servers: bool| {
        let mut fields =
            std::collections::BTreeMap::from([("syslog".to_string(), text("192.0.2.9"))]);
        if with_servers {
            fields.insert("servers".into(), servers.clone());
        }
        Some(prost_types::Struct { fields })
    };
    let inline =
        "{% for s in servers %}\nntp server {{ s }}\n{% endfor %}\nlogging host {{ syslog }}\n";
    let template = |with_servers| ConfigTemplate {
        inline_template: inline.into(),
        variables: vars(with_servers),
        ..Default::default()
    };

    let mut r = c.request(0, &[]);
    r.config_template = Some(template(true));
    r.enable_mode = true;
    let (job, _) = run(&c, r).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    let pushed: Vec<&str> = job.results.iter().map(|r| r.command.as_str()).collect();
    assert_eq!(
        pushed,
        [
            "ntp server 192.0.2.1",
            "ntp server 192.0.2.2",
            "logging host 192.0.2.9"
        ]
    );
    let mut r = c.request(0, &["show running-config"]);
    r.enable_mode = true;
    let (job, _) = run(&c, r).await;
    assert!(
        job.results[0].output.contains("ntp server 192.0.2.2"),
        "{job:?}"
    );

    let mut r = c.request(0, &[]);
    r.config_template = Some(template(false));
    let e = refused(&c, r).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("does not give: servers"), "{e:?}");

    let mut api = c.jobs(0).await.unwrap();
    let named = RenderTemplateRequest {
        template: Some(ConfigTemplate {
            template_name: "ntp.j2".into(),
            variables: vars(true),
            ..Default::default()
        }),
    };
    let r = api
        .render_template(c.authed(named.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.lines, ["ntp server 192.0.2.1", "ntp server 192.0.2.2"]);
    assert_eq!(
        (r.variables, r.missing),
        (vec!["servers".to_string()], vec![])
    );
    std::fs::write(
        dir.path().join("ntp.j2"),
        ntp.replace("ntp server", "ntp peer"),
    )
    .unwrap();
    let r = api
        .render_template(c.authed(named))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.lines[0], "ntp peer 192.0.2.1", "the changed file is read");
    let missing = RenderTemplateRequest {
        template: Some(ConfigTemplate {
            template_name: "absent.j2".into(),
            ..Default::default()
        }),
    };
    let e = api.render_template(c.authed(missing)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

/// `ParseOutput` parses text without a device: by ntc-templates' index (platform as
/// ntc-templates names it, and command), or inline; with the right code when it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_output_parses_text_without_a_device() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut api = c.jobs(0).await.unwrap();
    let brief = "Interface              IP-Address      OK? Method Status                Protocol\nGigabitEthernet0/0     192.0.2.1       YES manual up                    up\nLoopback0              unassigned      YES unset  administratively down down\n";
    let ask = |parse: Parse, platform: &str, command: &str| ParseOutputRequest {
        text: brief.into(),
        parse: Some(parse),
        platform: platform.into(),
        command: command.into(),
    };
    let index = || Parse {
        ntc_index: true,
        ..Default::default()
    };
    let r = api
        .parse_output(c.authed(ask(index(), "cisco_ios", "show ip int brief")))
        .await
        .unwrap()
        .into_inner();
    let rows = r.rows.unwrap().values;
    assert_eq!(rows.len(), 2);
    let Some(prost_types::value::Kind::StructValue(first)) = &rows[0].kind else {
        panic!("{rows:?}");
    };
    assert_eq!(
        first.fields["ip_address"].kind,
        Some(prost_types::value::Kind::StringValue("192.0.2.1".into()))
    );
    let inline = Parse {
        inline_template: "Value NAME (\\S+)\n\nStart\n  ^${NAME}\\s+\\d -> Record\n".into(),
        ..Default::default()
    };
    let r = api
        .parse_output(c.authed(ask(inline, "", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.rows.unwrap().values.len(), 1, "only the numbered line");

    for (req, code) in [
        (
            ask(index(), "cisco_ios", "show nothing-like-this"),
            tonic::Code::NotFound,
        ),
        (ask(index(), "", ""), tonic::Code::InvalidArgument),
        (
            ask(
                Parse {
                    template_name: "x.textfsm".into(),
                    ..Default::default()
                },
                "",
                "",
            ),
            tonic::Code::FailedPrecondition,
        ),
    ] {
        let e = api.parse_output(c.authed(req)).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
    }
}

/// `backup`: the running configuration before and after a push and their unified diff, on a
/// platform that applies lines at once (IOS) and on one that commits a candidate (Junos);
/// refused beside commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_keeps_the_configuration_around_a_push_and_its_diff() {
    let c = TestCluster::start(Options {
        devsim: vec!["--devices".into(), "cisco_ios=1,juniper_junos=1".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for (i, line, enable) in [
        (0, "ntp server 192.0.2.44", true),
        (1, "set system ntp server 192.0.2.44", false),
    ] {
        let mut r = c.request(i, &[]);
        r.config = vec![line.into()];
        r.backup = true;
        r.enable_mode = enable;
        let (job, _) = run(&c, r).await;
        assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
        assert!(!job.config_before.contains("192.0.2.44"), "{job:?}");
        assert!(job.config_after.contains("192.0.2.44"), "{job:?}");
        let added: Vec<&str> = job
            .config_diff
            .lines()
            .filter(|l| l.starts_with('+'))
            .collect();
        assert!(
            job.config_diff.starts_with("--- before\n+++ after\n"),
            "{job:?}"
        );
        assert!(
            added.iter().any(|l| l.contains("192.0.2.44")),
            "{}",
            job.config_diff
        );
        // The same push again changes nothing: no diff, both kept.
        let mut r = c.request(i, &[]);
        r.config = vec![line.into()];
        r.backup = true;
        r.enable_mode = enable;
        let (again, _) = run(&c, r).await;
        assert!(
            again.config_diff.is_empty() && again.config_after == job.config_after,
            "{again:?}"
        );
    }
    let mut r = c.request(0, &["show clock"]);
    r.backup = true;
    assert!(
        refused(&c, r)
            .await
            .message()
            .contains("backup applies to config")
    );
}

/// `dry_run`: on Junos (`show | compare`) and EOS (a configuration session) the lines go into
/// a candidate, the job carries the device's diff, and the running configuration is unchanged
/// afterwards; on IOS nothing is sent and the job says why; refused beside save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_returns_the_devices_diff_and_changes_nothing() {
    let c = TestCluster::start(Options {
        devsim: vec![
            "--devices".into(),
            "juniper_junos=1,arista_eos=1,cisco_ios=1".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let device = |t: &str| (0..3).find(|&i| c.device(i).device_type == t).unwrap();
    for (t, line, show, enable, diff_line) in [
        (
            "juniper_junos",
            "set system ntp server 192.0.2.55",
            "show configuration",
            false,
            "+    server 192.0.2.55;",
        ),
        (
            "arista_eos",
            "ntp server 192.0.2.55",
            "show running-config",
            true,
            "+ntp server 192.0.2.55",
        ),
    ] {
        let i = device(t);
        let mut r = c.request(i, &[]);
        r.config = vec![line.into()];
        r.dry_run = true;
        r.enable_mode = enable;
        let (job, _) = run(&c, r).await;
        assert_eq!(job.status(), JobStatus::Succeeded, "{t}: {job:?}");
        assert!(
            job.config_diff.lines().any(|l| l == diff_line),
            "{t}: {:?}",
            job.config_diff
        );
        assert!(job.dry_run_note.is_empty());
        let mut r = c.request(i, &[show]);
        r.enable_mode = enable;
        let (after, _) = run(&c, r).await;
        assert!(after.session_reused, "the session stayed usable");
        assert!(
            !after.results[0].output.contains("192.0.2.55"),
            "{t}: the candidate was dropped"
        );
    }
    let i = device("cisco_ios");
    let mut r = c.request(i, &[]);
    r.config = vec!["ntp server 192.0.2.55".into()];
    r.dry_run = true;
    r.enable_mode = true;
    let (job, _) = run(&c, r).await;
    assert_eq!(job.status(), JobStatus::Succeeded, "{job:?}");
    assert!(job.dry_run_note.contains("nothing was sent"), "{job:?}");
    assert_eq!(job.results[0].status, "skipped");
    let mut r = c.request(i, &[]);
    r.config = vec!["ntp server 192.0.2.55".into()];
    r.dry_run = true;
    r.save = true;
    assert!(
        refused(&c, r)
            .await
            .message()
            .contains("a dry run changes nothing")
    );
}

/// Whether device `i`'s configuration (shown by `show`) holds `line`.
async fn shows(c: &TestCluster, i: usize, show: &str, line: &str) -> bool {
    let mut r = c.request(i, &[show]);
    r.enable_mode = c.device(i).device_type == "arista_eos";
    let (job, _) = run(c, r).await;
    job.results[0].output.contains(line)
}

/// `confirm_within_seconds` commits with the device's timer (Junos `commit confirmed`, EOS
/// `commit timer` in a configuration session; devsim's minute hurried to 1.5 s): confirmed by
/// a `confirm_commit` job, the change stays past the timer; left alone, the device rolls it
/// back by itself, and a late confirmation says nothing is pending. Refused where it cannot
/// apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_commit_rolls_back_by_itself_unless_confirmed() {
    let c = TestCluster::start(Options {
        devsim: vec![
            "--devices".into(),
            "juniper_junos=1,arista_eos=1,cisco_ios=1".into(),
            "--confirm-minute-ms".into(),
            "1500".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let device = |t: &str| (0..3).find(|&i| c.device(i).device_type == t).unwrap();
    for (t, show, kept, dropped) in [
        (
            "juniper_junos",
            "show configuration",
            "set system ntp server 192.0.2.61",
            "set system ntp server 192.0.2.62",
        ),
        (
            "arista_eos",
            "show running-config",
            "ntp server 192.0.2.61",
            "ntp server 192.0.2.62",
        ),
    ] {
        let i = device(t);
        let enable = t == "arista_eos";
        let push = |line: &str| {
            let mut r = c.request(i, &[]);
            r.config = vec![line.into()];
            r.confirm_within_seconds = 30;
            r.enable_mode = enable;
            r
        };
        let confirm = || {
            let mut r = c.request(i, &[]);
            r.confirm_commit = true;
            r.enable_mode = enable;
            r
        };
        let (job, _) = run(&c, push(kept)).await;
        assert_eq!(
            (job.status(), job.commit_confirm.as_str()),
            (JobStatus::Succeeded, "pending"),
            "{t}: {job:?}"
        );
        let committed = Instant::now();
        let (job, _) = run(&c, confirm()).await;
        assert_eq!(
            (job.status(), job.commit_confirm.as_str()),
            (JobStatus::Succeeded, "confirmed"),
            "{t}: {job:?}"
        );
        // Past the timer (Junos: a minute, 1.5 s here; EOS: 30 s, 0.75 s), the change stays.
        while committed.elapsed() < Duration::from_millis(2000) {
            assert!(
                shows(&c, i, show, kept).await,
                "{t}: a confirmed commit was rolled back"
            );
        }

        let (job, _) = run(&c, push(dropped)).await;
        assert_eq!(job.commit_confirm, "pending", "{t}: {job:?}");
        assert!(shows(&c, i, show, dropped).await, "{t}: committed at once");
        let deadline = Instant::now() + Duration::from_secs(15);
        while shows(&c, i, show, dropped).await {
            assert!(
                Instant::now() < deadline,
                "{t}: not rolled back within 15 s"
            );
        }
        assert!(
            shows(&c, i, show, kept).await,
            "{t}: back to the confirmed configuration"
        );
        let (job, _) = run(&c, confirm()).await;
        assert_eq!(
            (job.status(), kind(&job)),
            (JobStatus::Failed, "commit_failed"),
            "{t}: {job:?}"
        );
        assert!(
            job.error
                .unwrap()
                .message
                .contains("no confirmed commit is pending")
        );
    }

    let mut r = c.request(device("cisco_ios"), &[]);
    r.config = vec!["ntp server 192.0.2.63".into()];
    r.confirm_within_seconds = 30;
    r.enable_mode = true;
    let (job, _) = run(&c, r).await;
    assert_eq!(kind(&job), "unsupported", "{job:?}");
    let mut r = c.request(device("juniper_junos"), &["show version"]);
    r.confirm_within_seconds = 30;
    assert!(
        refused(&c, r)
            .await
            .message()
            .contains("applies to a config push")
    );
}
