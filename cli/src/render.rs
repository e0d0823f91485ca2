//! What the CLI prints: aligned tables for people, JSON for scripts. Enum values are the API's
//! names without their prefix, in lower case (`succeeded`, `pinned`).

use netpulse_proto::api::{Job, Node, Worker};
use serde_json::{Value, json};

pub use netpulse_proto::json::{job as job_json, status, strategy};

pub fn node_json(n: &Node) -> Value {
    json!({
        "node_id": n.node_id, "address": n.address, "pinned_workers": n.pinned_workers,
        "max_pinned_workers": n.max_pinned_workers, "fifo_running": n.fifo_running,
        "max_fifo_concurrency": n.max_fifo_concurrency, "queued_jobs": n.queued_jobs,
        "draining": n.draining, "version": n.version, "started_unix_ms": n.started_unix_ms,
    })
}

pub fn worker_json(w: &Worker) -> Value {
    json!({
        "worker_id": w.worker_id, "node_id": w.node_id, "host": w.host, "port": w.port,
        "state": w.state, "pid": w.pid, "keepalive_ok": w.keepalive_ok,
        "last_keepalive_unix_ms": w.last_keepalive_unix_ms,
        "last_keepalive_rtt_us": w.last_keepalive_rtt_us, "jobs_done": w.jobs_done,
        "session_reuses": w.session_reuses, "uptime_ms": w.uptime_ms,
    })
}

/// A job as a person reads it: each command's output under a header line.
pub fn job_text(j: &Job) -> String {
    let mut out = String::new();
    for r in &j.results {
        out.push_str(&format!(
            "## {} ({}, {} ms)\n",
            r.command, r.status, r.duration_ms
        ));
        out.push_str(&r.output);
        if !r.output.is_empty() && !r.output.ends_with('\n') {
            out.push('\n');
        }
        if !r.error.is_empty() {
            out.push_str(&format!("error: {}\n", r.error));
        }
        if let Some(rows) = &r.parsed {
            let text = serde_json::to_string_pretty(&netpulse_proto::json::from_list(rows))
                .unwrap_or_default();
            out.push_str(&format!("## parsed ({} rows)\n{text}\n", rows.values.len()));
        }
        if !r.parse_error.is_empty() {
            out.push_str(&format!("parse error: {}\n", r.parse_error));
        }
    }
    if j.output_truncated {
        out.push_str("(output truncated by the server's size limit)\n");
    }
    if !j.dry_run_note.is_empty() {
        out.push_str(&format!("## dry run\n{}\n", j.dry_run_note));
    }
    if !j.config_diff.is_empty() {
        out.push_str("## configuration diff\n");
        out.push_str(&j.config_diff);
        if !j.config_diff.ends_with('\n') {
            out.push('\n');
        }
    } else if !j.config_after.is_empty() {
        out.push_str("## configuration unchanged\n");
    }
    if !j.transcript.is_empty() {
        out.push_str("## transcript\n");
        out.push_str(&j.transcript);
        if !j.transcript.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// One line about a job's outcome (printed on stderr after its output).
pub fn job_summary(j: &Job) -> String {
    let mut s = format!(
        "job {} {} on {}:{}",
        j.id,
        status(j.status()),
        j.host,
        j.port
    );
    if !j.node_id.is_empty() {
        s.push_str(&format!(" via {}", j.node_id));
    }
    if !j.platform.is_empty() && j.platform != j.device_type {
        // An alias or autodetect: say what the device was taken for.
        s.push_str(&format!(" as {}", j.platform));
    }
    if let Some(t) = j.timings {
        s.push_str(&format!(" in {} ms", t.total_ms));
    }
    if j.session_reused {
        s.push_str(" (session reused)");
    }
    match j.commit_confirm.as_str() {
        "pending" => {
            s.push_str(" (committed: confirm it with --confirm-commit in time, or it rolls back)")
        }
        "confirmed" => s.push_str(" (commit confirmed)"),
        _ => {}
    }
    if let Some(t) = &j.transfer {
        if t.skipped {
            s.push_str(&format!(
                " ({}: the device has the same file; nothing sent)",
                t.protocol
            ));
        } else {
            s.push_str(&format!(
                " ({}: {} bytes, {:.1} MB/s, verified by {})",
                t.protocol,
                t.bytes_sent,
                t.bytes_per_second as f64 / 1e6,
                t.verified_by
            ));
        }
        if t.resumed_from > 0 {
            s.push_str(&format!(" (resumed from byte {})", t.resumed_from));
        }
        if !t.staged_file.is_empty() {
            s.push_str(&format!(" staged as {}", t.staged_file));
        }
    }
    if let Some(e) = &j.error {
        s.push_str(&format!(": {}: {}", e.kind, e.message));
    }
    s
}

pub fn jobs_table(jobs: &[Job]) -> String {
    table(
        &["ID", "STATUS", "DEVICE", "STRATEGY", "NODE", "MS", "ERROR"],
        jobs.iter()
            .map(|j| {
                vec![
                    j.id.clone(),
                    status(j.status()),
                    format!("{}:{}", j.host, j.port),
                    strategy(j.strategy()),
                    j.node_id.clone(),
                    j.timings.map_or(String::new(), |t| t.total_ms.to_string()),
                    j.error.as_ref().map_or(String::new(), |e| e.kind.clone()),
                ]
            })
            .collect(),
    )
}

pub fn nodes_table(nodes: &[Node]) -> String {
    table(
        &[
            "NODE", "ADDRESS", "PINNED", "FIFO", "QUEUED", "DRAINING", "VERSION",
        ],
        nodes
            .iter()
            .map(|n| {
                vec![
                    n.node_id.clone(),
                    n.address.clone(),
                    format!("{}/{}", n.pinned_workers, n.max_pinned_workers),
                    format!("{}/{}", n.fifo_running, n.max_fifo_concurrency),
                    n.queued_jobs.to_string(),
                    if n.draining { "yes" } else { "no" }.into(),
                    n.version.clone(),
                ]
            })
            .collect(),
    )
}

pub fn workers_table(workers: &[Worker]) -> String {
    table(
        &[
            "WORKER",
            "NODE",
            "DEVICE",
            "STATE",
            "PID",
            "JOBS",
            "REUSES",
            "KEEPALIVE",
        ],
        workers
            .iter()
            .map(|w| {
                vec![
                    w.worker_id.clone(),
                    w.node_id.clone(),
                    format!("{}:{}", w.host, w.port),
                    w.state.clone(),
                    w.pid.to_string(),
                    w.jobs_done.to_string(),
                    w.session_reuses.to_string(),
                    match (w.last_keepalive_unix_ms, w.keepalive_ok) {
                        (0, _) => "-".into(),
                        (_, true) => format!("ok {} µs", w.last_keepalive_rtt_us),
                        (_, false) => "failing".into(),
                    },
                ]
            })
            .collect(),
    )
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpulse_proto::api::{JobStatus, Strategy};

    #[test]
    fn tables_align_columns_and_names_lose_their_prefix() {
        let t = table(
            &["A", "BB"],
            vec![
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    BB\nxyz  1\nq    22\n");
        assert_eq!(status(JobStatus::Succeeded), "succeeded");
        assert_eq!(strategy(Strategy::Unspecified), "pinned");
        assert_eq!(strategy(Strategy::Fifo), "fifo");
    }

    #[test]
    fn a_summary_names_the_platform_only_when_the_device_type_did_not() {
        let mut j = Job {
            id: "j1".into(),
            host: "r1".into(),
            port: 22,
            device_type: "autodetect".into(),
            platform: "arista_eos".into(),
            ..Default::default()
        };
        assert!(
            job_summary(&j).contains(" as arista_eos"),
            "{}",
            job_summary(&j)
        );
        assert_eq!(job_json(&j)["platform"], "arista_eos");
        j.device_type = "arista_eos".into();
        assert!(!job_summary(&j).contains(" as "), "{}", job_summary(&j));
    }
}
