//! Protobuf's JSON-like values (`google.protobuf.Value`, `Struct`, `ListValue`: parsed rows,
//! template variables) to and from `serde_json`.

use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::Value as J;

use crate::api::{Job, JobStatus, Strategy};

pub fn to_value(j: &J) -> Value {
    let kind = match j {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        J::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

pub fn from_value(v: &Value) -> J {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        // Whole numbers stay integers, so that `10` reads and renders as 10, not 10.0.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9e15 => J::from(*n as i64),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::ListValue(l)) => from_list(l),
        Some(Kind::StructValue(s)) => J::Object(from_struct(s)),
    }
}

pub fn from_list(l: &ListValue) -> J {
    J::Array(l.values.iter().map(from_value).collect())
}

pub fn from_struct(s: &Struct) -> serde_json::Map<String, J> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), from_value(v)))
        .collect()
}

pub fn status(s: JobStatus) -> String {
    short(s.as_str_name(), "JOB_STATUS_")
}

pub fn strategy(s: Strategy) -> String {
    match s {
        Strategy::Unspecified => "pinned".into(),
        s => short(s.as_str_name(), "STRATEGY_"),
    }
}

fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

/// A job as JSON: the CLI's `--json` and the webhooks' payload. Enum values are the API's
/// names without their prefix, in lower case (`succeeded`, `pinned`).
pub fn job(j: &Job) -> J {
    let t = j.timings.unwrap_or_default();
    serde_json::json!({
        "id": j.id,
        "status": status(j.status()),
        "host": j.host,
        "port": j.port,
        "device_type": j.device_type,
        "platform": j.platform,
        "strategy": strategy(j.strategy()),
        "node_id": j.node_id,
        "worker_id": j.worker_id,
        "session_reused": j.session_reused,
        "error": j.error.as_ref().map(|e| serde_json::json!({"kind": e.kind, "message": e.message})),
        "results": j.results.iter().map(|r| {
            let mut c = serde_json::json!({
                "command": r.command, "status": r.status, "ok": r.ok, "output": r.output,
                "error": r.error, "duration_ms": r.duration_ms,
            });
            if let Some(rows) = &r.parsed {
                c["parsed"] = from_list(rows);
            }
            if !r.parse_error.is_empty() {
                c["parse_error"] = serde_json::json!(r.parse_error);
            }
            c
        }).collect::<Vec<_>>(),
        "output_truncated": j.output_truncated,
        "transcript": j.transcript,
        "config_before": j.config_before,
        "config_after": j.config_after,
        "config_diff": j.config_diff,
        "dry_run_note": j.dry_run_note,
        "commit_confirm": j.commit_confirm,
        "transfer": j.transfer.as_ref().map(|t| serde_json::json!({
            "protocol": t.protocol, "size": t.size, "bytes_sent": t.bytes_sent,
            "sha256": t.sha256, "staged_file": t.staged_file, "verified_by": t.verified_by,
            "skipped": t.skipped, "resumed_from": t.resumed_from,
            "bytes_per_second": t.bytes_per_second,
        })),
        "timings_ms": {"queued": t.queued_ms, "connect": t.connect_ms, "execute": t.execute_ms, "total": t.total_ms},
        "created_unix_ms": j.created_unix_ms,
        "started_unix_ms": j.started_unix_ms,
        "ended_unix_ms": j.ended_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_survive_the_round_trip_and_whole_numbers_stay_integers() {
        let j = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": "d"}});
        assert_eq!(super::from_value(&super::to_value(&j)), j);
    }
}
