//! The public `Job` record and how agent events change it.

use std::time::{SystemTime, UNIX_EPOCH};

use netpulse_proto::api::{self, CommandResult, Job, JobError, JobStatus, Timings};
use netpulse_proto::worker::{self as wire, CommandStatus};

use netpulse_model::{ErrorKind, JobRequest, Outcome};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A new job id: milliseconds then randomness, in hex, so ids sort by submit time.
pub fn new_job_id() -> String {
    job_id(now_ms(), rand::random())
}

fn job_id(unix_ms: i64, random: u64) -> String {
    format!("{unix_ms:012x}{random:016x}")
}

/// Whether `s` has the shape of a job id (page tokens are job ids).
pub fn looks_like_job_id(s: &str) -> bool {
    s.len() == 28
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

pub fn is_final(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired
    )
}

/// A queued job as first written.
pub fn queued(id: &str, r: &JobRequest, node_id: &str) -> Job {
    Job {
        id: id.to_string(),
        status: JobStatus::Queued as i32,
        host: r.connection.device.host().to_string(),
        port: r.connection.device.port() as u32,
        strategy: api::Strategy::from(r.strategy) as i32,
        node_id: node_id.to_string(),
        device_type: r.connection.device_type.clone(),
        created_unix_ms: now_ms(),
        ..Default::default()
    }
}

pub fn started(job: &mut Job, worker_id: &str) {
    job.status = JobStatus::Running as i32;
    job.worker_id = worker_id.to_string();
    job.started_unix_ms = now_ms();
}

fn command_status(s: CommandStatus) -> &'static str {
    match s {
        CommandStatus::Ok => "ok",
        CommandStatus::Rejected => "rejected",
        CommandStatus::Skipped => "skipped",
        CommandStatus::Failed | CommandStatus::Unspecified => "failed",
    }
}

/// Ends the job with the worker's (or agent's) result.
pub fn finished(job: &mut Job, worker_id: &str, r: wire::JobResult) {
    let outcome = Outcome::of(&r);
    let now = now_ms();
    if !worker_id.is_empty() {
        job.worker_id = worker_id.to_string();
    }
    if job.started_unix_ms == 0 {
        job.started_unix_ms = now;
    }
    job.ended_unix_ms = now;
    job.session_reused = r.session_reused;
    job.connection_test = r.probed;
    job.transcript = r.transcript;
    job.platform = r.platform;
    job.config_before = r.config_before;
    job.config_after = r.config_after;
    job.config_diff = r.config_diff;
    job.dry_run_note = r.dry_run_note;
    job.commit_confirm = r.commit_confirm;
    job.transfer = r.transfer;
    job.results = r
        .results
        .into_iter()
        .map(|c| CommandResult {
            ok: c.status() == CommandStatus::Ok,
            status: command_status(c.status()).to_string(),
            command: c.command,
            output: c.output,
            error: c.error,
            duration_ms: c.duration_us / 1000,
            parsed: c.parsed,
            parse_error: c.parse_error,
        })
        .collect();
    let (status, error) = match outcome {
        Outcome::Succeeded => (JobStatus::Succeeded, None),
        Outcome::Canceled { message } => {
            (JobStatus::Canceled, Some((ErrorKind::Canceled, message)))
        }
        Outcome::Failed { kind, message } => (JobStatus::Failed, Some((kind, message))),
    };
    job.status = status as i32;
    job.error = error.map(|(kind, message)| JobError {
        kind: kind.name().into(),
        message,
    });
    job.timings = Some(Timings {
        queued_ms: (job.started_unix_ms - job.created_unix_ms).max(0) as u64,
        connect_ms: r.connect_us / 1000,
        execute_ms: r.execute_us / 1000,
        total_ms: (now - job.created_unix_ms).max(0) as u64,
    });
}

/// Ends the job without a result from a worker.
pub fn ended(job: &mut Job, status: JobStatus, kind: ErrorKind, message: String) {
    let now = now_ms();
    job.status = status as i32;
    job.ended_unix_ms = now;
    job.error = Some(JobError {
        kind: kind.name().to_string(),
        message,
    });
    let queued_until = if job.started_unix_ms > 0 {
        job.started_unix_ms
    } else {
        now
    };
    job.timings = Some(Timings {
        queued_ms: (queued_until - job.created_unix_ms).max(0) as u64,
        total_ms: (now - job.created_unix_ms).max(0) as u64,
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    use netpulse_proto::worker::ErrorKind as WireKind;

    fn result(ok: bool, statuses: &[CommandStatus], error: Option<WireKind>) -> wire::JobResult {
        wire::JobResult {
            ok,
            results: statuses
                .iter()
                .map(|s| wire::CommandResult {
                    command: "c".into(),
                    status: *s as i32,
                    duration_us: 2500,
                    ..Default::default()
                })
                .collect(),
            error: error.map(|k| wire::Error {
                kind: k as i32,
                message: "m".into(),
            }),
            connect_us: 3_000,
            ..Default::default()
        }
    }

    #[test]
    fn results_map_to_final_statuses_with_reasons() {
        let mut j = Job::default();
        finished(&mut j, "w1", result(true, &[CommandStatus::Ok], None));
        assert_eq!(j.status(), JobStatus::Succeeded);
        assert!(j.results[0].ok && j.results[0].duration_ms == 2 && j.error.is_none());
        assert_eq!(j.timings.unwrap().connect_ms, 3);

        let mut j = Job::default();
        let r = result(false, &[CommandStatus::Ok, CommandStatus::Rejected], None);
        finished(&mut j, "w1", r);
        assert_eq!(j.status(), JobStatus::Failed);
        assert_eq!(j.results[1].status, "rejected");
        assert_eq!(j.error.unwrap().kind, "command_rejected");

        let mut j = Job::default();
        finished(&mut j, "w1", result(false, &[], Some(WireKind::Canceled)));
        assert_eq!(j.status(), JobStatus::Canceled);

        let mut j = Job::default();
        let r = result(false, &[], Some(WireKind::ConnectTimeout));
        finished(&mut j, "w1", r);
        assert_eq!(
            (j.status(), j.error.unwrap().kind.as_str()),
            (JobStatus::Failed, "connect_timeout")
        );
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = job_id(1_700_000_000_000, u64::MAX);
        let b = job_id(1_700_000_000_001, 0);
        assert!(a < b && looks_like_job_id(&a) && looks_like_job_id(&new_job_id()));
        assert!(!looks_like_job_id("../../nodes") && !looks_like_job_id(""));
    }
}
