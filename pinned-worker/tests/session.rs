//! Device sessions against simulated devices (devsim, a real SSH server on loopback), one
//! scenario per test, every platform.

use std::time::Duration;

use devsim::{Device, DeviceSpec, Flavor, spawn_device};
use netpulse_proto::worker::CommandStatus;
use pinned_worker::error::SessionError;
use pinned_worker::ops::{self, JobSpec, Operation};
use pinned_worker::platform;
use pinned_worker::session::DeviceSession;
use pinned_worker::ssh::{HostKeyPolicy, Target};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(10);

struct Sim {
    device: Device,
    _stop: tokio_util::sync::DropGuard,
}

async fn sim(spec: DeviceSpec) -> Sim {
    let stop = CancellationToken::new();
    let device = spawn_device(spec, devsim::server::random_host_key(), stop.clone())
        .await
        .unwrap();
    Sim {
        device,
        _stop: stop.drop_guard(),
    }
}

fn target(d: &Device, policy: HostKeyPolicy) -> Target {
    Target {
        host: d.addr().ip().to_string(),
        port: d.addr().port(),
        username: d.spec().username.clone(),
        password: d.spec().password.clone(),
        private_key_pem: String::new(),
        private_key_passphrase: String::new(),
        host_key_policy: policy,
        connect_timeout: T,
        auth_timeout: T,
        ssh_keepalive_interval: Duration::from_secs(15),
        ssh_keepalive_max: 3,
        legacy_algorithms: false,
        jump: None,
    }
}

async fn open(d: &Device) -> Result<DeviceSession, SessionError> {
    let platform = platform::lookup(d.spec().flavor.device_type()).unwrap();
    DeviceSession::open(
        &target(d, HostKeyPolicy::InsecureAcceptAny),
        platform,
        "enable",
        T,
    )
    .await
}

fn job(op: Operation, enable: bool) -> JobSpec {
    JobSpec {
        operation: op,
        enable,
        command_timeout: T,
        mode: None,
        backup: false,
        dry_run: false,
        confirm_within: None,
        stream_output: false,
        updates: Default::default(),
    }
}

fn cmds(c: &[&str]) -> Operation {
    Operation::Commands(c.iter().map(|s| s.to_string()).collect())
}

fn config(lines: &[&str], save: bool) -> Operation {
    Operation::Config {
        lines: lines.iter().map(|s| s.to_string()).collect(),
        save,
    }
}

/// Per platform: a show command, the command that shows the running config, a valid config
/// line, and how that line appears in the running config.
fn platform_case(f: Flavor) -> (&'static str, &'static str, &'static str, &'static str) {
    match f {
        Flavor::JuniperJunos => (
            "show version",
            "show configuration | display set",
            "set system ntp server 203.0.113.9",
            "set system ntp server 203.0.113.9",
        ),
        Flavor::Huawei => (
            "display version",
            "display current-configuration",
            "ntp-service unicast-server 203.0.113.9",
            "ntp-service unicast-server 203.0.113.9",
        ),
        _ => (
            "show version",
            "show running-config",
            "ntp server 203.0.113.9",
            "ntp server 203.0.113.9",
        ),
    }
}

#[tokio::test]
async fn every_platform_runs_commands_and_pushes_config_with_a_rejected_line() {
    for flavor in Flavor::ALL {
        let name = format!("{}-r1", flavor.device_type().replace('_', ""));
        let s = sim(DeviceSpec::new(flavor, &name)).await;
        let mut session = open(&s.device)
            .await
            .unwrap_or_else(|e| panic!("{flavor:?}: {e}"));
        let (show, show_run, good, in_run) = platform_case(flavor);
        let enable = !matches!(flavor, Flavor::JuniperJunos);

        let out = ops::run(
            &mut session,
            &job(cmds(&[show, "bogus command here"]), enable),
        )
        .await;
        let ctx = format!("{flavor:?}: {out:?}");
        assert_eq!(out.results.len(), 2, "{ctx}");
        assert_eq!(out.results[0].status, CommandStatus::Ok as i32, "{ctx}");
        assert!(out.results[0].output.contains(&name), "{ctx}");
        assert!(
            !out.results[0].output.contains(show),
            "echo left in output: {ctx}"
        );
        assert!(
            !out.results[0].output.trim_end().ends_with(['#', '>', ']']),
            "prompt left in output: {ctx}"
        );
        assert_eq!(
            out.results[1].status,
            CommandStatus::Rejected as i32,
            "{ctx}"
        );
        assert!(
            matches!(out.error, Some(SessionError::CommandRejected(_))),
            "{ctx}"
        );

        let out = ops::run(
            &mut session,
            &job(
                config(
                    &[good, "frobnicate the widget", "hostname never-applied"],
                    true,
                ),
                enable,
            ),
        )
        .await;
        let ctx = format!("{flavor:?}: {out:?}");
        let statuses: Vec<i32> = out.results.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                CommandStatus::Ok as i32,
                CommandStatus::Rejected as i32,
                CommandStatus::Skipped as i32
            ],
            "{ctx}"
        );
        assert!(!out.saved, "{ctx}");

        // Junos threw the candidate away; the others applied the first line as typed.
        let run = ops::run(&mut session, &job(cmds(&[show_run]), enable)).await;
        let text = &run.results[0].output;
        assert_eq!(
            text.contains(in_run),
            flavor != Flavor::JuniperJunos,
            "{flavor:?}: {text}"
        );
        assert!(!text.contains("never-applied"), "{flavor:?}: {text}");

        let out = ops::run(&mut session, &job(config(&[good], true), enable)).await;
        assert!(out.error.is_none(), "{flavor:?}: {out:?}");
        assert!(out.saved, "{flavor:?}: {out:?}");
        assert_eq!(out.committed, flavor == Flavor::JuniperJunos, "{flavor:?}");
        let run = ops::run(&mut session, &job(cmds(&[show_run]), enable)).await;
        assert!(
            run.results[0].output.contains(in_run),
            "{flavor:?}: {:?}",
            run.results[0].output
        );
        session.close().await;
        assert_eq!(
            s.device.logins(),
            1,
            "{flavor:?}: one login for the whole session"
        );
    }
}

#[tokio::test]
async fn saved_config_survives_in_startup_config() {
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut session = open(&s.device).await.unwrap();
    let out = ops::run(
        &mut session,
        &job(
            config(&["interface Loopback7", "description saved-line"], true),
            true,
        ),
    )
    .await;
    assert!(out.error.is_none() && out.saved, "{out:?}");
    let run = ops::run(&mut session, &job(cmds(&["show startup-config"]), true)).await;
    assert!(
        run.results[0]
            .output
            .contains("interface Loopback7\n description saved-line"),
        "{:?}",
        run.results[0].output
    );
}

#[tokio::test]
async fn enable_with_a_wrong_secret_fails_clearly() {
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let platform = platform::lookup("cisco_ios").unwrap();
    let mut session = DeviceSession::open(
        &target(&s.device, HostKeyPolicy::InsecureAcceptAny),
        platform,
        "wrong",
        T,
    )
    .await
    .unwrap();
    assert!(!session.privileged());
    let err = session.enable(T).await.unwrap_err();
    assert!(
        matches!(err, SessionError::EnableFailed(ref m) if m.contains("Access denied")),
        "{err}"
    );
    // The session is still usable at the user prompt.
    assert!(
        session
            .command("show clock", T)
            .await
            .unwrap()
            .rejected
            .is_none()
    );
}

#[tokio::test]
async fn paging_is_answered_when_the_device_pages_and_large_output_comes_back_whole() {
    let mut spec = DeviceSpec::new(Flavor::CiscoIos, "r1");
    spec.tech_support_lines = 60_000; // ~5 MB
    let s = sim(spec).await;
    let mut session = open(&s.device).await.unwrap();
    let big = session
        .command("show tech-support", Duration::from_secs(60))
        .await
        .unwrap();
    let lines: Vec<&str> = big.output.lines().collect();
    assert_eq!(lines.len(), 60_001);
    assert!(big.output.len() > 4_000_000);
    assert!(
        lines[60_000].starts_with("00060000 r1 diagnostic"),
        "{}",
        lines[60_000]
    );

    // Turn paging back on: the session must answer --More-- and strip its residue.
    session.command("terminal length 24", T).await.unwrap();
    for flavor_cmd in ["show tech-support"] {
        let paged = session
            .command(flavor_cmd, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            paged.output, big.output,
            "paged output differs from unpaged output"
        );
    }
}

#[tokio::test]
async fn huawei_and_junos_paging_markers_are_answered_and_erased() {
    for (flavor, cmd, page_off) in [
        (
            Flavor::Huawei,
            "display diagnostic-information",
            "screen-length 24 temporary",
        ),
        (
            Flavor::JuniperJunos,
            "request support information",
            "set cli screen-length 24",
        ),
    ] {
        let s = sim(DeviceSpec::new(flavor, "r1")).await;
        let mut session = open(&s.device).await.unwrap();
        let whole = session.command(cmd, T).await.unwrap();
        session.command(page_off, T).await.unwrap();
        let paged = session.command(cmd, T).await.unwrap();
        assert_eq!(whole.output.lines().count(), 1001, "{flavor:?}");
        assert_eq!(paged.output, whole.output, "{flavor:?}");
    }
}

#[tokio::test]
async fn connect_failures_are_typed() {
    // wrong password
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut t = target(&s.device, HostKeyPolicy::InsecureAcceptAny);
    t.password = "wrong-password".into();
    let err = DeviceSession::open(&t, platform::lookup("cisco_ios").unwrap(), "", T)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SessionError::AuthFailed { .. }), "{err}");
    assert!(
        !err.to_string().contains("wrong-password"),
        "the password must not appear: {err}"
    );

    // refused port
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut t = target(&s.device, HostKeyPolicy::InsecureAcceptAny);
    t.port = port;
    let err = DeviceSession::open(&t, platform::lookup("cisco_ios").unwrap(), "", T)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SessionError::ConnectFailed { .. }), "{err}");

    // a device that never shows a prompt
    let mut spec = DeviceSpec::new(Flavor::CiscoIos, "mute");
    spec.mute_shell = true;
    let s = sim(spec).await;
    let t = target(&s.device, HostKeyPolicy::InsecureAcceptAny);
    let err = DeviceSession::open(
        &t,
        platform::lookup("cisco_ios").unwrap(),
        "",
        Duration::from_millis(500),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, SessionError::PromptTimeout { .. }), "{err}");

    // a frozen device: the handshake never completes
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "frozen")).await;
    s.device.set_frozen(true);
    let mut t = target(&s.device, HostKeyPolicy::InsecureAcceptAny);
    t.connect_timeout = Duration::from_millis(500);
    let err = DeviceSession::open(&t, platform::lookup("cisco_ios").unwrap(), "", T)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SessionError::ConnectTimeout { .. }), "{err}");
}

#[tokio::test]
async fn a_command_whose_output_never_ends_times_out() {
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut session = open(&s.device).await.unwrap();
    let err = session
        .command("debug hang", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::CommandTimeout { ref tail, .. } if tail.contains("debugging started")),
        "{err}"
    );
    assert!(err.poisons_session());
}

#[tokio::test]
async fn host_key_policies() {
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let platform = platform::lookup("cisco_ios").unwrap();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let mut spec = DeviceSpec::new(Flavor::CiscoIos, "r1");
    let first = spawn_device(
        spec.clone(),
        devsim::server::random_host_key(),
        stop.clone(),
    )
    .await
    .unwrap();

    // strict with an empty known_hosts: rejected
    let err = DeviceSession::open(
        &target(&first, HostKeyPolicy::Strict(kh.clone())),
        platform,
        "",
        T,
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, SessionError::HostKeyRejected(ref m) if m.contains("strict")),
        "{err}"
    );
    // accept-new records the key; strict then accepts it
    DeviceSession::open(
        &target(&first, HostKeyPolicy::AcceptNew(kh.clone())),
        platform,
        "",
        T,
    )
    .await
    .unwrap()
    .close()
    .await;
    DeviceSession::open(
        &target(&first, HostKeyPolicy::Strict(kh.clone())),
        platform,
        "",
        T,
    )
    .await
    .unwrap()
    .close()
    .await;

    // same address, new key: rejected under accept-new too
    stop.cancel();
    first.closed().await;
    let stop2 = CancellationToken::new();
    let _guard2 = stop2.clone().drop_guard();
    spec.bind = first.addr();
    let second = spawn_device(spec, devsim::server::random_host_key(), stop2.clone())
        .await
        .unwrap();
    let err = DeviceSession::open(
        &target(&second, HostKeyPolicy::AcceptNew(kh.clone())),
        platform,
        "",
        T,
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, SessionError::HostKeyRejected(ref m) if m.contains("changed")),
        "{err}"
    );
    // insecure accepts anything
    DeviceSession::open(
        &target(&second, HostKeyPolicy::InsecureAcceptAny),
        platform,
        "",
        T,
    )
    .await
    .unwrap()
    .close()
    .await;
}

#[tokio::test]
async fn public_key_authentication() {
    let key = devsim::server::random_host_key();
    let mut spec = DeviceSpec::new(Flavor::AristaEos, "sw1");
    spec.password = "not-this".into();
    spec.authorized_keys = vec![key.public_key().clone()];
    let s = sim(spec).await;
    let mut t = target(&s.device, HostKeyPolicy::InsecureAcceptAny);
    t.password = String::new();
    t.private_key_pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .unwrap()
        .to_string();
    let mut session = DeviceSession::open(&t, platform::lookup("arista_eos").unwrap(), "", T)
        .await
        .unwrap();
    assert_eq!(session.hostname(), "sw1");
    assert!(
        session
            .command("show version", T)
            .await
            .unwrap()
            .output
            .contains("sw1")
    );
}

#[tokio::test]
async fn a_hostname_change_moves_the_prompt_anchor() {
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "old-name")).await;
    let mut session = open(&s.device).await.unwrap();
    let out = ops::run(
        &mut session,
        &job(config(&["hostname new-name"], false), true),
    )
    .await;
    assert!(out.error.is_none(), "{out:?}");
    assert_eq!(session.hostname(), "new-name");
    let out = ops::run(&mut session, &job(cmds(&["show version"]), true)).await;
    assert!(out.results[0].output.contains("new-name uptime"), "{out:?}");
}

#[tokio::test]
async fn simulator_faults_refused_auth_and_command_delay() {
    let mut spec = DeviceSpec::new(Flavor::CiscoIos, "r1");
    spec.refuse_auth = true;
    let s = sim(spec).await;
    assert!(matches!(
        open(&s.device).await.err().unwrap(),
        SessionError::AuthFailed { .. }
    ));

    let mut spec = DeviceSpec::new(Flavor::CiscoIos, "slow");
    spec.command_delay = Duration::from_millis(200);
    let s = sim(spec).await;
    let mut session = open(&s.device).await.unwrap();
    let out = session.command("show clock", T).await.unwrap();
    assert!(out.duration >= Duration::from_millis(200), "{out:?}");
}

#[tokio::test]
async fn a_dead_session_is_found_without_sending_a_byte() {
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut session = open(&s.device).await.unwrap();
    session.check_alive().unwrap();
    let commands_before = s.device.commands();
    s.device.drop_connections();
    let deadline = tokio::time::Instant::now() + T;
    while session.check_alive().is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "drop not noticed");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(
        session.check_alive(),
        Err(SessionError::SessionLost(_))
    ));
    assert_eq!(
        s.device.commands(),
        commands_before,
        "the check sent nothing"
    );
}

#[tokio::test]
async fn keyboard_interactive_passwords_are_answered() {
    let mut spec = DeviceSpec::new(Flavor::JuniperJunos, "vmx1");
    spec.keyboard_interactive_only = true;
    let s = sim(spec).await;
    let mut session = open(&s.device).await.unwrap();
    assert!(
        session
            .command("show version", T)
            .await
            .unwrap()
            .output
            .contains("vmx1")
    );

    let mut t = target(&s.device, HostKeyPolicy::InsecureAcceptAny);
    t.password = "wrong-password".into();
    let err = DeviceSession::open(&t, platform::lookup("juniper_junos").unwrap(), "", T)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, SessionError::AuthFailed { ref reason, .. } if reason.contains("keyboard-interactive")),
        "{err}"
    );
}

#[tokio::test]
async fn a_prompt_of_another_shape_than_the_platforms_is_learned_and_followed() {
    // Junos's pattern wants `user@host>`; this device shows `r1>` and `r1#`.
    let mut spec = DeviceSpec::new(Flavor::JuniperJunos, "r1");
    spec.prompt.bare = true;
    let s = sim(spec).await;
    let mut session = open(&s.device).await.unwrap();
    assert_eq!(session.hostname(), "r1");
    let out = ops::run(&mut session, &job(cmds(&["show version", "bogus"]), false)).await;
    assert_eq!(out.results[0].status, CommandStatus::Ok as i32, "{out:?}");
    assert!(out.results[0].output.starts_with("Hostname: r1"), "{out:?}");
    assert_eq!(
        out.results[1].status,
        CommandStatus::Rejected as i32,
        "{out:?}"
    );
    let push = ops::run(
        &mut session,
        &job(config(&["set system ntp server 203.0.113.7"], false), false),
    )
    .await;
    assert!(push.error.is_none() && push.committed, "{push:?}");
    let conf = session.command("show configuration", T).await.unwrap();
    assert!(conf.output.contains("203.0.113.7"), "{conf:?}");
}

#[tokio::test]
async fn a_line_above_the_junos_prompt_is_not_output() {
    let mut spec = DeviceSpec::new(Flavor::JuniperJunos, "r1");
    spec.prompt.line_above = Some("{master:0}".into());
    let s = sim(spec).await;
    let mut session = open(&s.device).await.unwrap();
    let out = session.command("show version", T).await.unwrap();
    assert!(out.output.ends_with("Junos: 21.4R3-S3.4"), "{out:?}");
    assert!(!out.output.contains("master"), "{out:?}");
}

fn step(
    command: &str,
    timeout: Option<Duration>,
    expect: Option<&str>,
    answers: &[(&str, &str)],
) -> ops::CommandLine {
    ops::CommandLine {
        command: command.into(),
        read_timeout: timeout,
        expect: expect.map(|e| regex::Regex::new(e).unwrap()),
        answers: answers
            .iter()
            .map(|(p, a)| platform::Confirmation {
                pattern: regex::Regex::new(p).unwrap(),
                answer: a.to_string(),
            })
            .collect(),
        parse: None,
    }
}

#[tokio::test]
async fn per_command_answers_expect_and_read_timeout() {
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let mut session = open(&s.device).await.unwrap();
    // Two questions, each answered by its own pattern.
    let answered = step(
        "delete flash:old.bin",
        None,
        None,
        &[
            (r"Delete filename \[[^\]]*\]\? $", ""),
            (r"\[confirm\]$", "y"),
        ],
    );
    let out = ops::run(&mut session, &job(Operation::Steps(vec![answered]), true)).await;
    assert!(out.error.is_none() && !out.left_waiting, "{out:?}");
    assert!(
        out.results[0].output.contains("Deleted flash:/old.bin"),
        "{out:?}"
    );

    // Unanswered, the question holds the read until the command's own timeout.
    let started = std::time::Instant::now();
    let out = ops::run(
        &mut session,
        &job(
            Operation::Steps(vec![step(
                "delete flash:x.bin",
                Some(Duration::from_millis(700)),
                None,
                &[],
            )]),
            true,
        ),
    )
    .await;
    assert!(
        matches!(out.error, Some(SessionError::CommandTimeout { .. })),
        "{out:?}"
    );
    assert!(started.elapsed() < T, "the job's 10 s timeout was used");

    // `expect` ends the read at the question, even one the platform answers itself; the next
    // command is the answer.
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "r2")).await;
    let mut session = open(&s.device).await.unwrap();
    let out = ops::run(
        &mut session,
        &job(
            Operation::Steps(vec![
                step(
                    "copy running-config startup-config",
                    None,
                    Some(r"Destination filename \[.*\]\? $"),
                    &[],
                ),
                step("", None, None, &[]),
            ]),
            true,
        ),
    )
    .await;
    assert!(out.error.is_none() && !out.left_waiting, "{out:?}");
    assert!(
        out.results[0].output.starts_with("Destination filename"),
        "{out:?}"
    );
    assert!(out.results[1].output.contains("[OK]"), "{out:?}");
    // A job whose last command ends at its pattern leaves the device waiting: it says so.
    let out = ops::run(
        &mut session,
        &job(
            Operation::Steps(vec![step("delete flash:y.bin", None, Some(r"\? $"), &[])]),
            true,
        ),
    )
    .await;
    assert!(out.error.is_none() && out.left_waiting, "{out:?}");
}

#[tokio::test]
async fn a_callers_prompt_pattern_replaces_the_platforms() {
    let s = sim(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let ios = platform::lookup("cisco_ios").unwrap();
    let t = target(&s.device, HostKeyPolicy::InsecureAcceptAny);
    // The host group decides the name the session anchors on...
    let p = ios
        .with_prompt(r"^(?P<host>r)1(?:\((?P<mode>[^)]+)\))?(?P<sign>[>#]) ?$")
        .unwrap();
    let mut session = DeviceSession::open(&t, p, "enable", T).await.unwrap();
    assert_eq!(session.hostname(), "r");
    let out = ops::run(&mut session, &job(cmds(&["show version"]), true)).await;
    assert!(out.error.is_none() && session.privileged(), "{out:?}");
    // ...and without one the prompt minus its terminator does.
    let p = ios.with_prompt(r"^r1[>#]$").unwrap();
    let session = DeviceSession::open(&t, p, "enable", T).await.unwrap();
    assert_eq!(session.hostname(), "r1");
    assert!(
        std::ptr::eq(p, ios.with_prompt(r"^r1[>#]$").unwrap()),
        "made once"
    );
    assert!(ios.with_prompt("(").is_err());
}

#[tokio::test]
async fn legacy_algorithms_are_offered_only_to_a_device_opted_in() {
    let mut spec = DeviceSpec::new(Flavor::CiscoIos, "old-sw");
    spec.legacy_ssh_only = true;
    let s = sim(spec).await;
    let ios = platform::lookup("cisco_ios").unwrap();
    let mut t = target(&s.device, HostKeyPolicy::InsecureAcceptAny);
    let e = DeviceSession::open(&t, ios, "enable", T)
        .await
        .err()
        .expect("refused without the opt-in");
    assert!(matches!(e, SessionError::ConnectFailed { .. }), "{e}");
    assert!(
        e.to_string().contains("connection.legacy_algorithms"),
        "{e}"
    );
    t.legacy_algorithms = true;
    let mut session = DeviceSession::open(&t, ios, "enable", T).await.unwrap();
    assert!(
        session
            .command("show version", T)
            .await
            .unwrap()
            .output
            .contains("old-sw")
    );
    // By default nothing of SHA-1 or CBC is offered, ssh-rsa with SHA-1 included.
    let modern = pinned_worker::ssh::preferred(false);
    let names =
        |p: &russh::Preferred| format!("{:?} {:?} {:?} {:?}", p.kex, p.cipher, p.mac, p.key);
    let m = names(&modern);
    assert!(
        !m.contains("sha1")
            && !m.contains("cbc")
            && !m.contains("Dsa")
            && !m.contains("hash: None"),
        "{m}"
    );
    let l = names(&pinned_worker::ssh::preferred(true));
    assert!(
        l.contains("diffie-hellman-group1-sha1")
            && l.contains("3des-cbc")
            && l.contains("Dsa")
            && l.contains("hash: None"),
        "{l}"
    );
}

/// A device with every line in use refuses one more session, by closing the connection before
/// the SSH banner or by an SSH "too many connections" disconnect: both are `DeviceBusy`, and a
/// line that frees up takes the next login.
#[tokio::test]
async fn a_device_with_every_line_in_use_is_busy() {
    use devsim::server::BusyRefusal;
    for how in [BusyRefusal::Close, BusyRefusal::Disconnect] {
        let mut spec = DeviceSpec::new(Flavor::CiscoIos, "full-sw");
        spec.max_sessions = Some(1);
        spec.busy_refusal = how;
        let s = sim(spec).await;
        let first = open(&s.device).await.unwrap();
        let e = open(&s.device)
            .await
            .err()
            .expect("the second session is refused");
        assert!(matches!(e, SessionError::DeviceBusy { .. }), "{how:?}: {e}");
        assert_eq!(
            e.kind(),
            netpulse_proto::worker::ErrorKind::DeviceBusy,
            "{how:?}: {e}"
        );
        assert_eq!(s.device.refused(), 1, "{how:?}");
        first.close().await;
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match open(&s.device).await {
                Ok(again) => break again.close().await,
                Err(SessionError::DeviceBusy { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::task::yield_now().await
                }
                Err(e) => panic!("{how:?}: the freed line takes no login: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn autodetect_that_matches_nothing_names_what_it_tried() {
    // An operator's cisco_ios without a [detect] section: nothing else claims classic IOS.
    let builtin = include_str!("../platforms/cisco_ios.toml");
    let without = &builtin[..builtin.find("[detect]").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cisco_ios.toml"), without).unwrap();
    let catalog = Box::leak(Box::new(platform::Catalog::with_dir(dir.path()).unwrap()));
    let probe = catalog.lookup(platform::AUTODETECT).unwrap();
    let sim = sim(DeviceSpec::new(Flavor::CiscoIos, "r1")).await;
    let target = target(&sim.device, HostKeyPolicy::InsecureAcceptAny);
    let e = DeviceSession::open(&target, probe, "", T)
        .await
        .err()
        .expect("nothing matches");
    let msg = e.to_string();
    assert!(matches!(e, SessionError::Unsupported(_)), "{e:?}");
    assert!(
        msg.contains("r1>")
            && msg.contains("show version, display version")
            && msg.contains("uname -a"),
        "{msg}"
    );

    // With the built-in definitions the same device is found, and the session runs as it.
    let probe = platform::lookup(platform::AUTODETECT).unwrap();
    let mut s = DeviceSession::open(&target, probe, "enable", T)
        .await
        .unwrap();
    assert_eq!(
        (s.platform().name.as_str(), s.hostname()),
        ("cisco_ios", "r1")
    );
    let out = ops::run(&mut s, &job(cmds(&["show clock"]), true)).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(s.privileged());
    s.close().await;

    // A caller's prompt pattern applies to the probe and then to the platform found.
    let pattern = r"^(?P<host>r1)(?P<sign>[>#])$";
    let probe = probe.with_prompt(pattern).unwrap();
    let s = DeviceSession::open(&target, probe, "enable", T)
        .await
        .unwrap();
    assert_eq!(
        (s.platform().name.as_str(), s.platform().prompt.as_str()),
        ("cisco_ios", pattern)
    );
}
