//! A job over an open session: run commands, or push configuration lines.

use std::time::Duration;

use netpulse_proto::api::ConnectionTest;
use netpulse_proto::worker::{CommandResult, CommandStatus};
use tokio::time::Instant;

pub use crate::command::CommandLine;
use crate::error::SessionError;
use crate::platform::{Platform, Save};
use crate::session::DeviceSession;
use crate::updates::{OutputStream, Updates};

#[derive(Clone, Debug)]
pub enum Operation {
    Commands(Vec<String>),
    /// Commands with their own reading rules.
    Steps(Vec<CommandLine>),
    Config {
        lines: Vec<String>,
        save: bool,
    },
    /// Nothing runs: the answer is how the session was set up.
    Probe,
    /// Confirm the pending confirmed commit.
    ConfirmCommit,
    /// Move a file to or from the device.
    Transfer(crate::transfer::TransferSpec),
}

#[derive(Clone, Debug)]
pub struct JobSpec {
    pub operation: Operation,
    pub enable: bool,
    pub command_timeout: Duration,
    /// The platform's named mode the commands run in (entered before, left after).
    pub mode: Option<String>,
    /// Read the running configuration around a push.
    pub backup: bool,
    /// Load the lines into a candidate, show the device's diff, and throw the candidate away.
    pub dry_run: bool,
    /// Commit with the device's confirmed-commit timer.
    pub confirm_within: Option<Duration>,
    /// Send each command's output as it arrives, through `updates`.
    pub stream_output: bool,
    /// Where output pieces and transfer progress go while the job runs.
    pub updates: Updates,
}

#[derive(Debug, Default)]
pub struct JobOutcome {
    pub results: Vec<CommandResult>,
    pub error: Option<SessionError>,
    pub committed: bool,
    pub saved: bool,
    pub execute: Duration,
    /// The last command ended at its `expect` pattern: the device waits for input the job
    /// did not give, so the session must not serve another job.
    pub left_waiting: bool,
    /// The answer to a probe.
    pub probed: Option<ConnectionTest>,
    pub backup: Option<crate::backup::Backup>,
    /// A dry run's diff, as the device showed it.
    pub dry_run_diff: String,
    /// Why a dry run sent nothing (the platform has no candidate to compare).
    pub dry_run_note: String,
    /// "pending" or "confirmed" (a confirmed commit).
    pub commit_confirm: String,
    pub transfer: Option<netpulse_proto::api::TransferResult>,
}

impl JobSpec {
    /// Rejects what cannot work before any byte goes to the device.
    pub fn check(&self, platform: &Platform) -> Result<(), SessionError> {
        let steps: Vec<&String>;
        let (items, what) = match &self.operation {
            Operation::Commands(c) => (c.iter().collect(), "commands"),
            Operation::Steps(c) => {
                steps = c.iter().map(|l| &l.command).collect();
                (steps, "command_specs")
            }
            Operation::Config { lines, .. } => (lines.iter().collect::<Vec<_>>(), "config"),
            Operation::Probe if self.mode.is_some() => {
                return Err(SessionError::InvalidArgument(
                    "a mode applies to commands and command_specs, not to a connection test".into(),
                ));
            }
            Operation::Probe => return Ok(()),
            Operation::Transfer(_) if self.mode.is_some() => {
                return Err(SessionError::InvalidArgument(
                    "a mode applies to commands and command_specs, not to a transfer".into(),
                ));
            }
            Operation::Transfer(_) => {
                if self.enable && platform.detector.is_none() && platform.enable.is_none() {
                    return Err(SessionError::Unsupported(format!(
                        "enable_mode is not available on {}",
                        platform.name
                    )));
                }
                return Ok(());
            }
            Operation::ConfirmCommit => {
                if platform.detector.is_none() && platform.commit_confirmed.is_none() {
                    return Err(SessionError::Unsupported(format!(
                        "{} has no confirmed commit to confirm",
                        platform.name
                    )));
                }
                return Ok(());
            }
        };
        if let (Operation::Config { .. }, Some(_)) = (&self.operation, &self.mode) {
            return Err(SessionError::InvalidArgument(
                "a mode applies to commands and command_specs, not to config".into(),
            ));
        }
        if items.is_empty() {
            return Err(SessionError::InvalidArgument(format!(
                "{what} must hold at least one line, got none"
            )));
        }
        if let Some(bad) = items.iter().find(|l| l.contains(['\n', '\r'])) {
            return Err(SessionError::InvalidArgument(format!(
                "{what} lines must not contain line breaks, got {bad:?}"
            )));
        }
        if platform.detector.is_some() {
            // Checked again once the session has identified the platform.
            return Ok(());
        }
        if self.enable && platform.enable.is_none() {
            return Err(SessionError::Unsupported(format!(
                "enable_mode is not available on {}",
                platform.name
            )));
        }
        if let Operation::Config { save: true, .. } = self.operation
            && matches!(platform.save, Save::Unsupported)
        {
            return Err(SessionError::Unsupported(format!(
                "save is not available on {}",
                platform.name
            )));
        }
        if let Some(mode) = &self.mode {
            platform.mode(mode)?;
        }
        if self.confirm_within.is_some() && platform.commit_confirmed.is_none() {
            return Err(SessionError::Unsupported(format!(
                "confirm_within_seconds is not available on {}: it has no confirmed commit",
                platform.name
            )));
        }
        if self.backup && platform.show_config.is_none() {
            return Err(SessionError::Unsupported(format!(
                "backup is not available on {}: its definition names no show_config command",
                platform.name
            )));
        }
        Ok(())
    }
}

/// The session's set-up, in the public form.
fn probed(session: &DeviceSession) -> ConnectionTest {
    let s = session.setup();
    let us = |d: Duration| d.as_micros() as u64;
    let steps = [s.tcp, s.handshake, s.auth, s.shell, s.prompt].map(us);
    ConnectionTest {
        tcp_us: steps[0],
        handshake_us: steps[1],
        auth_us: steps[2],
        shell_us: steps[3],
        prompt_us: steps[4],
        total_us: steps.iter().sum(),
        prompt: s.prompt_line.clone(),
        hostname: session.hostname().to_string(),
        platform: session.platform().name.to_string(),
        privileged: session.privileged(),
    }
}

fn result(
    command: &str,
    status: CommandStatus,
    output: String,
    error: String,
    took: Duration,
) -> CommandResult {
    CommandResult {
        command: command.to_string(),
        output,
        status: status as i32,
        error,
        duration_us: took.as_micros() as u64,
        ..Default::default()
    }
}

fn skipped(rest: &[String]) -> impl Iterator<Item = CommandResult> + '_ {
    rest.iter().map(|c| {
        result(
            c,
            CommandStatus::Skipped,
            String::new(),
            "not sent: an earlier line failed".into(),
            Duration::ZERO,
        )
    })
}

pub async fn run(session: &mut DeviceSession, job: &JobSpec) -> JobOutcome {
    let start = Instant::now();
    let mut out = JobOutcome::default();
    if let Err(e) = job.check(session.platform()) {
        out.error = Some(e);
        return out;
    }
    if job.enable
        && let Err(e) = session.enable(job.command_timeout).await
    {
        out.error = Some(e);
        return out;
    }
    if let Some(mode) = &job.mode
        && let Err(e) = session.enter_mode(mode, job.command_timeout).await
    {
        out.error = Some(e);
        return out;
    }
    match &job.operation {
        Operation::Commands(cmds) => {
            let steps: Vec<CommandLine> = cmds.iter().map(|c| CommandLine::plain(c)).collect();
            run_commands(session, &steps, job, &mut out).await
        }
        Operation::Steps(steps) => run_commands(session, steps, job, &mut out).await,
        Operation::Transfer(t) => {
            match crate::transfer::run(session, t, job.command_timeout, &job.updates).await {
                Ok(r) => out.transfer = Some(r),
                Err(e) => out.error = Some(e),
            }
        }
        Operation::Config { lines, .. } if job.dry_run => {
            dry_run(session, lines, job.command_timeout, &mut out).await
        }
        Operation::Config { lines, save } if job.backup => {
            let before = match crate::backup::capture(session, job.command_timeout).await {
                Ok(b) => b,
                Err(e) => {
                    out.error = Some(e);
                    out.results.extend(skipped(lines));
                    return out;
                }
            };
            push_config(session, lines, *save, job, &mut out).await;
            if !out
                .error
                .as_ref()
                .is_some_and(SessionError::poisons_session)
            {
                match crate::backup::capture(session, job.command_timeout).await {
                    Ok(after) => {
                        let diff = crate::backup::diff(&before, &after);
                        out.backup = Some(crate::backup::Backup {
                            before,
                            after,
                            diff,
                        });
                    }
                    Err(e) => {
                        out.error.get_or_insert(e);
                    }
                }
            }
        }
        Operation::Config { lines, save } => {
            push_config(session, lines, *save, job, &mut out).await
        }
        Operation::Probe => out.probed = Some(probed(session)),
        Operation::ConfirmCommit => {
            if let Err(e) = confirm_commit(session, job.command_timeout).await {
                out.error = Some(e);
            } else {
                out.commit_confirm = "confirmed".into();
            }
        }
    }
    if job.mode.is_some()
        && !out
            .error
            .as_ref()
            .is_some_and(SessionError::poisons_session)
        && let Err(e) = session.leave_mode(job.command_timeout).await
    {
        out.error.get_or_insert(e);
    }
    out.execute = start.elapsed();
    out
}

async fn run_commands(
    s: &mut DeviceSession,
    cmds: &[CommandLine],
    job: &JobSpec,
    out: &mut JobOutcome,
) {
    let timeout = job.command_timeout;
    let mut rejected = Vec::new();
    for (i, line) in cmds.iter().enumerate() {
        let cmd = &line.command;
        if job.stream_output && job.updates.is_on() {
            s.stream_output(Some(OutputStream::new(job.updates.clone(), i, cmd)));
        }
        let ran = s.run_line(line, timeout).await;
        s.stream_output(None);
        match ran {
            Ok(o) => {
                out.left_waiting = !o.at_prompt;
                let status = if o.rejected.is_some() {
                    CommandStatus::Rejected
                } else {
                    CommandStatus::Ok
                };
                if let Some(why) = &o.rejected {
                    rejected.push(format!("{cmd:?}: {why}"));
                }
                let parsed = match (&line.parse, &o.rejected) {
                    (Some(how), None) => Some(crate::parse::parse(
                        how,
                        &s.platform().ntc_name,
                        cmd,
                        &o.output,
                    )),
                    _ => None,
                };
                let mut r = result(
                    cmd,
                    status,
                    o.output,
                    o.rejected.unwrap_or_default(),
                    o.duration,
                );
                match parsed {
                    Some(Ok(rows)) => r.parsed = Some(rows),
                    Some(Err(why)) => r.parse_error = why,
                    None => {}
                }
                out.results.push(r);
            }
            Err(e) => {
                out.results.push(result(
                    cmd,
                    CommandStatus::Failed,
                    String::new(),
                    e.to_string(),
                    Duration::ZERO,
                ));
                let rest: Vec<String> = cmds[i + 1..].iter().map(|l| l.command.clone()).collect();
                out.results.extend(skipped(&rest));
                out.error = Some(e);
                return;
            }
        }
    }
    if !rejected.is_empty() {
        out.error = Some(SessionError::CommandRejected(format!(
            "{} of {} commands rejected: {}",
            rejected.len(),
            cmds.len(),
            rejected.join("; ")
        )));
    }
}

async fn push_config(
    s: &mut DeviceSession,
    lines: &[String],
    save: bool,
    job: &JobSpec,
    out: &mut JobOutcome,
) {
    let timeout = job.command_timeout;
    // A timed commit may need its own way in (an EOS configuration session).
    let timed_enter = job
        .confirm_within
        .and(s.platform().commit_confirmed.as_ref())
        .map(|cc| cc.enter.clone());
    let entered = match &timed_enter {
        Some(enter) => s.enter_config_by(enter, timeout).await,
        None => s.enter_config(timeout).await,
    };
    if let Err(e) = entered {
        out.error = Some(e);
        out.results.extend(skipped(lines));
        return;
    }
    if !send_lines(s, lines, timeout, out).await {
        return; // the session is unusable; leaving config mode would fail too
    }
    if out.error.is_none() {
        let with_timer = job
            .confirm_within
            .zip(s.platform().commit_confirmed.as_ref())
            .map(|(w, cc)| cc.command_for(w));
        let committed = match &with_timer {
            Some(cmd) => s.commit_as(cmd, timeout).await,
            None => s.commit(timeout).await,
        };
        match committed {
            Ok(c) => {
                out.committed = c;
                if with_timer.is_some() {
                    out.commit_confirm = "pending".into();
                }
            }
            Err(e) => out.error = Some(e),
        }
    }
    finish_push(s, save, timeout, out).await
}

/// Sends configuration lines, stopping at the first rejected one; false when the session
/// failed (and must not be used to leave configuration mode).
async fn send_lines(
    s: &mut DeviceSession,
    lines: &[String],
    timeout: Duration,
    out: &mut JobOutcome,
) -> bool {
    for (i, line) in lines.iter().enumerate() {
        match s.command(line, timeout).await {
            Ok(o) if o.rejected.is_none() => out.results.push(result(
                line,
                CommandStatus::Ok,
                o.output,
                String::new(),
                o.duration,
            )),
            Ok(o) => {
                let why = o.rejected.clone().unwrap_or_default();
                out.results.push(result(
                    line,
                    CommandStatus::Rejected,
                    o.output,
                    why.clone(),
                    o.duration,
                ));
                out.results.extend(skipped(&lines[i + 1..]));
                out.error = Some(SessionError::CommandRejected(format!(
                    "config line {} {line:?} rejected: {why}",
                    i + 1
                )));
                break;
            }
            Err(e) => {
                out.results.push(result(
                    line,
                    CommandStatus::Failed,
                    String::new(),
                    e.to_string(),
                    Duration::ZERO,
                ));
                out.results.extend(skipped(&lines[i + 1..]));
                out.error = Some(e);
                return false;
            }
        }
    }
    true
}

/// After the lines (and the commit): throw a failed candidate away, save, leave.
async fn finish_push(s: &mut DeviceSession, save: bool, timeout: Duration, out: &mut JobOutcome) {
    if out.error.is_some()
        && let Err(e) = s.discard_candidate(timeout).await
    {
        out.error = Some(e);
        return;
    }
    let save_inside = s.platform().save.in_config();
    if save && save_inside && out.error.is_none() {
        match s.save(timeout).await {
            Ok(()) => out.saved = true,
            Err(e) => out.error = Some(e),
        }
    }
    if let Err(e) = s.exit_config(timeout).await {
        out.error.get_or_insert(e);
        return;
    }
    if save && !save_inside && out.error.is_none() {
        match s.save(timeout).await {
            Ok(()) => out.saved = true,
            Err(e) => out.error = Some(e),
        }
    }
}

/// A dry run: on a platform with a candidate, the lines are loaded into it, the device's own
/// diff is kept, and the candidate is thrown away; elsewhere nothing is sent.
async fn dry_run(s: &mut DeviceSession, lines: &[String], timeout: Duration, out: &mut JobOutcome) {
    let Some(d) = s.platform().dry_run.clone() else {
        out.results.extend(lines.iter().map(|l| {
            result(
                l,
                CommandStatus::Skipped,
                String::new(),
                "dry run: not sent".into(),
                Duration::ZERO,
            )
        }));
        out.dry_run_note = format!(
            "{} has no candidate configuration to compare against: nothing was sent, and the \
             lines above are the ones a push would send",
            s.platform().name
        );
        return;
    };
    if let Err(e) = s.enter_config_by(&d.enter, timeout).await {
        out.error = Some(e);
        out.results.extend(skipped(lines));
        return;
    }
    if !send_lines(s, lines, timeout, out).await {
        return;
    }
    match s.command(&d.diff, timeout).await {
        Ok(o) if o.rejected.is_none() => out.dry_run_diff = o.output,
        Ok(o) => {
            out.error
                .get_or_insert(SessionError::CommandRejected(format!(
                    "dry run: {:?} was rejected: {}",
                    d.diff,
                    o.rejected.unwrap_or_default()
                )));
        }
        Err(e) => {
            out.error = Some(e);
            return;
        }
    }
    if let Err(e) = s.command(&d.abort, timeout).await {
        out.error = Some(e);
        return;
    }
    if !d.abort_leaves
        && let Err(e) = s.exit_config(timeout).await
    {
        out.error.get_or_insert(e);
    }
}

/// Confirms the pending confirmed commit, when the device says one is pending.
async fn confirm_commit(s: &mut DeviceSession, timeout: Duration) -> Result<(), SessionError> {
    let Some(cc) = s.platform().commit_confirmed.clone() else {
        return Err(SessionError::Unsupported(format!(
            "{} has no confirmed commit to confirm",
            s.platform().name
        )));
    };
    let history = s.command(&cc.pending, timeout).await?;
    if !cc.pending_pattern.is_match(&history.output) {
        let latest = history
            .output
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        return Err(SessionError::CommitFailed(format!(
            "no confirmed commit is pending (the device rolled it back, or none was made); \
             {:?} shows: {latest:?}",
            cc.pending
        )));
    }
    s.enter_config_by(&cc.enter, timeout).await?;
    let confirmed = s.commit_as(&cc.confirm, timeout).await;
    let left = s.exit_config(timeout).await;
    confirmed?;
    left
}
