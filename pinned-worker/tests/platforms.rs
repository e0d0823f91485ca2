//! Every built-in platform definition against a simulated device of that platform: login and
//! prompt, a command in user mode, a rejected command, each named mode (a command and a
//! rejected one inside it, then back at the CLI), enable where the platform has it, long
//! output (paging turned off, or the pager answered), a configuration push with commit and
//! save where the platform has them and a backup (the pushed line in the configuration after,
//! not before, and in the diff), a dry run where the platform has one, and the pushed line in
//! the configuration afterwards.
//! The devices are devsim's, written from what each vendor's CLI prints, so a wrong definition
//! fails here. `linux` is exercised against OpenSSH in `integration-tests/tests/linux_sshd.rs`.

use std::time::Duration;

use devsim::{DeviceSpec, Flavor, spawn_device};
use netpulse_proto::worker::CommandStatus;
use pinned_worker::ops::{self, JobSpec, Operation};
use pinned_worker::platform::{self, Catalog, Save};
use pinned_worker::session::DeviceSession;
use pinned_worker::ssh::{HostKeyPolicy, Target};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(10);
const LONG_LINES: usize = 80;

/// What a test sends to one kind of device.
struct Case {
    long: &'static str,
    show_config: &'static str,
    config: Vec<&'static str>,
    shows: &'static str,
}

fn case(flavor: Flavor) -> Case {
    let ios = |show_config| Case {
        long: "show tech-support",
        show_config,
        config: vec!["ntp server 203.0.113.9"],
        shows: "ntp server 203.0.113.9",
    };
    match flavor {
        Flavor::Model(m) => Case {
            long: m.long_command,
            show_config: m.show_config,
            config: m.sample_config.to_vec(),
            shows: m.sample_shows,
        },
        Flavor::JuniperJunos => Case {
            long: "request support information",
            show_config: "show configuration | display set",
            config: vec!["set system ntp server 203.0.113.9"],
            shows: "set system ntp server 203.0.113.9",
        },
        Flavor::Huawei => Case {
            long: "display diagnostic-information",
            show_config: "display current-configuration",
            config: vec!["ntp-service unicast-server 203.0.113.9"],
            shows: "ntp-service unicast-server 203.0.113.9",
        },
        _ => ios("show running-config"),
    }
}

fn job(operation: Operation, enable: bool) -> JobSpec {
    JobSpec {
        operation,
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

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn exercise(name: &str) -> Result<(), String> {
    let flavor: Flavor = name.parse()?;
    let p = platform::lookup(name).map_err(|e| e.to_string())?;
    let c = case(flavor);
    let version = flavor.version_command();
    let mut spec = DeviceSpec::new(flavor, "r1");
    spec.tech_support_lines = LONG_LINES;
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let device = spawn_device(spec, devsim::server::random_host_key(), stop)
        .await
        .map_err(|e| e.to_string())?;
    let target = Target {
        host: device.addr().ip().to_string(),
        port: device.addr().port(),
        username: "admin".into(),
        password: "admin".into(),
        private_key_pem: String::new(),
        private_key_passphrase: String::new(),
        host_key_policy: HostKeyPolicy::InsecureAcceptAny,
        connect_timeout: T,
        auth_timeout: T,
        ssh_keepalive_interval: Duration::from_secs(15),
        ssh_keepalive_max: 3,
        legacy_algorithms: false,
        jump: None,
    };
    let mut s = DeviceSession::open(&target, p, "enable", T)
        .await
        .map_err(|e| format!("open: {e}"))?;
    if s.hostname().is_empty() || !s.hostname().contains("r1") {
        return Err(format!("learned hostname {:?}", s.hostname()));
    }

    // User mode: a command, then one the device rejects.
    let out = ops::run(
        &mut s,
        &job(
            Operation::Commands(lines(&[version, "bogus netpulse"])),
            false,
        ),
    )
    .await;
    let st: Vec<i32> = out.results.iter().map(|r| r.status).collect();
    if st != [CommandStatus::Ok as i32, CommandStatus::Rejected as i32] {
        return Err(format!("user mode: {out:?}"));
    }
    let shown = &out.results[0].output;
    if shown.is_empty() || shown.contains(version) {
        return Err(format!("user-mode output {shown:?}"));
    }

    // Each named mode: a command the mode knows and one it rejects, then back at the CLI.
    let subs = devsim::subshell::of(flavor.device_type());
    if subs.len() != p.modes.len() {
        return Err(format!(
            "{} modes defined, devsim has {}",
            p.modes.len(),
            subs.len()
        ));
    }
    for m in &p.modes {
        let Some(sub) = subs.iter().find(|d| d.enter == m.enter) else {
            return Err(format!(
                "mode {}: devsim opens nothing with {:?}",
                m.name, m.enter
            ));
        };
        let mut spec = job(
            Operation::Commands(lines(&[sub.commands[0].0, "bogus-netpulse"])),
            false,
        );
        spec.mode = Some(m.name.clone());
        let out = ops::run(&mut s, &spec).await;
        let st: Vec<i32> = out.results.iter().map(|r| r.status).collect();
        let first = out.results.first().map_or("", |r| r.output.as_str());
        let want = sub.commands[0].1.lines().last().unwrap_or("");
        let want = want.replace("{h}", "r1").replace("{u}", "admin");
        if st != [CommandStatus::Ok as i32, CommandStatus::Rejected as i32]
            || !first.ends_with(&want)
        {
            return Err(format!("mode {}: {out:?}", m.name));
        }
        let back = s
            .command(version, T)
            .await
            .map_err(|e| format!("after mode {}: {e}", m.name))?;
        if back.output.is_empty() || back.rejected.is_some() {
            return Err(format!("after mode {}: {back:?}", m.name));
        }
    }

    if p.enable.is_some() {
        let out = ops::run(
            &mut s,
            &job(Operation::Commands(lines(&[c.show_config])), true),
        )
        .await;
        if out.error.is_some() || !s.privileged() {
            return Err(format!("enable: {out:?}"));
        }
    }

    // Long output: whole, without pager residue, whether paging is off or answered.
    let long = s
        .command(c.long, T)
        .await
        .map_err(|e| format!("long: {e}"))?;
    let n = long.output.lines().count();
    if n != LONG_LINES + 1 || long.output.to_lowercase().contains("more") {
        return Err(format!(
            "long output has {n} lines: {:?}",
            &long.output[..long.output.len().min(300)]
        ));
    }

    // A dry run, where the platform has one: the device's diff, and nothing left changed.
    if p.dry_run.is_some() {
        let mut dry = job(
            Operation::Config {
                lines: lines(&c.config),
                save: false,
            },
            p.enable.is_some(),
        );
        dry.dry_run = true;
        let out = ops::run(&mut s, &dry).await;
        let shown = s
            .command(c.show_config, T)
            .await
            .map_err(|e| format!("after dry run: {e}"))?;
        if out.error.is_some() || out.dry_run_diff.is_empty() || shown.output.contains(c.shows) {
            return Err(format!("dry run: {out:?} then {:?}", shown.output));
        }
    }

    // With backup: the definition's show_config reads the configuration before and after.
    let save = !matches!(p.save, Save::Unsupported);
    let mut push = job(
        Operation::Config {
            lines: lines(&c.config),
            save,
        },
        p.enable.is_some(),
    );
    push.backup = true;
    let out = ops::run(&mut s, &push).await;
    let commits = p.config.as_ref().is_some_and(|c| c.commit.is_some());
    if out.error.is_some() || out.committed != commits || out.saved != save {
        return Err(format!("config push: {out:?}"));
    }
    let Some(b) = &out.backup else {
        return Err("no backup".into());
    };
    if b.before.contains(c.shows) || !b.after.contains(c.shows) || !b.diff.contains(c.shows) {
        return Err(format!("backup: {b:?}"));
    }
    let run = s
        .command(c.show_config, T)
        .await
        .map_err(|e| format!("show config: {e}"))?;
    if !run.output.contains(c.shows) {
        return Err(format!("pushed line not in {:?}", run.output));
    }
    // A rejected configuration line fails the push and leaves the session usable.
    if p.config.is_some() {
        let out = ops::run(
            &mut s,
            &job(
                Operation::Config {
                    lines: lines(&["bogus netpulse"]),
                    save: false,
                },
                p.enable.is_some(),
            ),
        )
        .await;
        if out.results.first().map(|r| r.status) != Some(CommandStatus::Rejected as i32) {
            return Err(format!("rejected config line: {out:?}"));
        }
    }
    s.keepalive(T)
        .await
        .map_err(|e| format!("keepalive after: {e}"))?;
    Ok(())
}

#[tokio::test]
async fn every_built_in_platform_works_against_its_simulated_device() {
    let catalog = Catalog::builtin();
    let names: Vec<String> = catalog
        .names()
        .into_iter()
        .filter(|n| {
            catalog.lookup(n).is_ok_and(|p| &p.name == n)
                && n != "linux"
                && n != platform::AUTODETECT
        })
        .collect();
    assert!(names.len() >= 41, "{names:?}");
    let mut failures = Vec::new();
    for name in &names {
        if let Err(e) = exercise(name).await {
            failures.push(format!("{name}: {e}"));
        }
    }
    println!(
        "{} platforms exercised, {} failed",
        names.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
