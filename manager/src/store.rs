//! Durable job records in etcd.
//!
//! A record is the public `Job` message, protobuf-encoded, at `<prefix>/jobs/<id>`. Writes go
//! through one writer task (`writer`) that commits whatever is waiting as one transaction (group commit):
//! under load, many jobs' writes share one etcd round trip and one fsync, so throughput is not
//! bounded by one round trip per job; alone, a write goes out at once. A caller's write is
//! acknowledged only after its transaction commits, so "written before Execute returns" holds.
//! Unfinished jobs carry no lease. A final job is attached to a shared lease that expires at the
//! end of its `result_ttl`, rounded up to the bucket width, so there is one lease per bucket,
//! not one per job. Outputs are capped per job; beyond the cap they are cut and marked.

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use netpulse_proto::api::Job;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::writer::{Done, Guard, Write, WriterLimits, unavailable};
pub use crate::writer::{OnCommit, Op, Stats};

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub prefix: String,
    /// Final jobs whose results expire within the same bucket share a lease.
    pub lease_bucket: Duration,
    /// Most puts committed in one transaction (etcd's default limit is 128 operations).
    pub max_batch: usize,
    pub max_output_bytes: usize,
    pub call_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            prefix: "/netpulse".into(),
            lease_bucket: Duration::from_secs(60),
            max_batch: 64,
            max_output_bytes: 1 << 20,
            call_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct JobStore {
    client: Client,
    cfg: StoreConfig,
    writes: mpsc::Sender<Write>,
    stats: std::sync::Arc<Stats>,
}

/// Cuts outputs beyond `max` bytes in total, at char boundaries, and drops parsed rows that
/// do not fit (each command's text first, then its rows); returns whether it cut.
pub fn cap_output(job: &mut Job, max: usize) -> bool {
    let mut left = max;
    let mut cut = false;
    for r in &mut job.results {
        if r.output.len() <= left {
            left -= r.output.len();
        } else {
            let mut at = left;
            while !r.output.is_char_boundary(at) {
                at -= 1;
            }
            r.output.truncate(at);
            left = 0;
            cut = true;
        }
        if let Some(rows) = &r.parsed {
            let n = prost::Message::encoded_len(rows);
            if n <= left {
                left -= n;
            } else {
                r.parsed = None;
                r.parse_error = "the parsed rows were left out: they exceed the server's output \
                                 cap (--max-output-bytes)"
                    .into();
                left = 0;
                cut = true;
            }
        }
    }
    // A backup's texts come last: dropped whole (all three) when they do not fit.
    let backup = job.config_before.len() + job.config_after.len() + job.config_diff.len();
    if backup > left {
        job.config_before.clear();
        job.config_after.clear();
        job.config_diff.clear();
        cut = true;
    }
    job.output_truncated |= cut;
    cut
}

impl JobStore {
    /// Starts the writer task on `tracker`; it ends when every clone of the store is dropped,
    /// after committing what was queued, so waiting on the tracker flushes the final writes.
    pub fn new(client: Client, cfg: StoreConfig, tracker: &TaskTracker) -> JobStore {
        let (tx, rx) = mpsc::channel(cfg.max_batch * 16);
        let stats = std::sync::Arc::new(Stats::default());
        let limits = WriterLimits {
            max_batch: cfg.max_batch,
            lease_bucket: cfg.lease_bucket,
            call_timeout: cfg.call_timeout,
        };
        tracker.spawn(crate::writer::run(
            client.clone(),
            limits,
            rx,
            stats.clone(),
        ));
        JobStore {
            client,
            cfg,
            writes: tx,
            stats,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether the last write committed.
    pub fn healthy(&self) -> bool {
        !self
            .stats
            .failing
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn root(&self) -> &str {
        self.cfg.prefix.trim_end_matches('/')
    }

    fn key(&self, id: &str) -> String {
        format!("{}/jobs/{id}", self.root())
    }

    /// Where an unfinished job's request and owner are kept.
    pub fn active_key(&self, id: &str) -> String {
        format!("{}/active/{id}", self.root())
    }

    pub fn active_prefix(&self) -> String {
        format!("{}/active/", self.root())
    }

    fn idempotency_key(&self, key: &str) -> String {
        format!("{}/idempotency/{key}", self.root())
    }

    /// The put of a job record, its output capped.
    /// The job as its record holds it (output within the cap).
    pub fn capped(&self, job: &Job) -> Job {
        let mut job = job.clone();
        cap_output(&mut job, self.cfg.max_output_bytes);
        job
    }

    pub fn job_op(&self, mut job: Job, result_ttl: Option<Duration>) -> Op {
        cap_output(&mut job, self.cfg.max_output_bytes);
        Op::Put {
            key: self.key(&job.id),
            value: job.encode_to_vec(),
            expires_in: result_ttl,
        }
    }

    /// Writes the job; returns once etcd has committed it. A final job with `result_ttl`
    /// expires that long after now.
    pub async fn put(&self, job: Job, result_ttl: Option<Duration>) -> Result<(), ApiError> {
        self.write(vec![self.job_op(job, result_ttl)]).await
    }

    /// Commits `ops` together (in one transaction, possibly shared with other writes).
    pub async fn write(&self, ops: Vec<Op>) -> Result<(), ApiError> {
        let (done, answer) = oneshot::channel();
        self.send(Write {
            ops,
            guard: None,
            done: Some(Done::Reply(done)),
        })
        .await?;
        answer
            .await
            .map_err(|_| ApiError::Unavailable("job store writer stopped".into()))?
    }

    /// Queues `ops` to commit and then call `then` with the outcome, on the writer task (no
    /// task to wake for "then tell the waiters"). Gives both back when the queue is full.
    pub fn try_write_then(&self, ops: Vec<Op>, then: OnCommit) -> Result<(), (Vec<Op>, OnCommit)> {
        let w = Write {
            ops,
            guard: None,
            done: Some(Done::Call(then)),
        };
        match self.writes.try_send(w) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(w) | mpsc::error::TrySendError::Closed(w)) => {
                match w.done {
                    Some(Done::Call(f)) => Err((w.ops, f)),
                    _ => unreachable!("built above with a callback"),
                }
            }
        }
    }

    /// Queues `ops` without waiting for the commit; false when the queue is full (the
    /// caller tries again later).
    pub fn write_behind(&self, ops: Vec<Op>) -> bool {
        self.writes
            .try_send(Write {
                ops,
                guard: None,
                done: None,
            })
            .is_ok()
    }

    /// Commits `ops` only if `idempotency_key` is new, recording `job_id` under it for
    /// `expires_in`. Returns the job id already recorded when the key is not new.
    pub async fn create_once(
        &self,
        idempotency_key: &str,
        job_id: &str,
        expires_in: Duration,
        ops: Vec<Op>,
    ) -> Result<Option<String>, ApiError> {
        let (done, answer) = oneshot::channel();
        let (existing, existing_rx) = oneshot::channel();
        self.send(Write {
            ops,
            guard: Some(Guard {
                key: self.idempotency_key(idempotency_key),
                value: job_id.to_string(),
                expires_in,
                existing,
            }),
            done: Some(Done::Reply(done)),
        })
        .await?;
        answer
            .await
            .map_err(|_| ApiError::Unavailable("job store writer stopped".into()))??;
        Ok(existing_rx.await.ok().flatten())
    }

    async fn send(&self, w: Write) -> Result<(), ApiError> {
        match tokio::time::timeout(self.cfg.call_timeout, self.writes.send(w)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ApiError::Unavailable("job store is shutting down".into())),
            Err(_) => Err(ApiError::Unavailable(
                "job store is not keeping up (etcd slow or unreachable)".into(),
            )),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>, ApiError> {
        Ok(self.get_with_revision(id).await?.map(|(j, _)| j))
    }

    /// The job and the etcd revision it was read at (to watch from).
    pub async fn get_with_revision(&self, id: &str) -> Result<Option<(Job, i64)>, ApiError> {
        let kv = self.get_raw(&self.key(id)).await?;
        match kv {
            None => Ok(None),
            Some((value, rev)) => Job::decode(value.as_slice())
                .map(|j| Some((j, rev)))
                .map_err(|e| ApiError::Internal(format!("job {id} does not decode: {e}"))),
        }
    }

    /// A key's value and the store revision of the read.
    pub async fn get_raw(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, ApiError> {
        let mut c = self.client.clone();
        let r = tokio::time::timeout(self.cfg.call_timeout, c.get(key, None))
            .await
            .map_err(|_| unavailable("get", "timed out"))?
            .map_err(|e| unavailable("get", e))?;
        let rev = r.header().map_or(0, |h| h.revision());
        Ok(r.kvs().first().map(|kv| (kv.value().to_vec(), rev)))
    }

    /// Jobs in id order after `after` (exclusive), at most `limit`.
    pub async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Job>, ApiError> {
        let start = match after {
            Some(id) => format!("{}\0", self.key(id)),
            None => self.key(""),
        };
        let end = format!("{}/jobs0", self.root());
        let mut c = self.client.clone();
        let opts = GetOptions::new().with_range(end).with_limit(limit as i64);
        let r = tokio::time::timeout(self.cfg.call_timeout, c.get(start, Some(opts)))
            .await
            .map_err(|_| unavailable("list", "timed out"))?
            .map_err(|e| unavailable("list", e))?;
        r.kvs()
            .iter()
            .map(|kv| {
                Job::decode(kv.value())
                    .map_err(|e| ApiError::Internal(format!("a job record does not decode: {e}")))
            })
            .collect()
    }

    /// A watch on one job's record from `revision` on.
    pub async fn watch_job(
        &self,
        id: &str,
        revision: i64,
    ) -> Result<etcd_client::WatchStream, ApiError> {
        let mut c = self.client.clone();
        let opts = etcd_client::WatchOptions::new().with_start_revision(revision);
        tokio::time::timeout(self.cfg.call_timeout, c.watch(self.key(id), Some(opts)))
            .await
            .map_err(|_| unavailable("watch", "timed out"))?
            .map_err(|e| unavailable("watch", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpulse_proto::api::CommandResult;

    #[test]
    fn output_cap_cuts_at_char_boundaries_and_marks_the_job() {
        let mut j = Job {
            results: vec![
                CommandResult {
                    output: "abc".into(),
                    ..Default::default()
                },
                CommandResult {
                    output: "déjà vu".into(),
                    ..Default::default()
                },
                CommandResult {
                    output: "gone".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert!(cap_output(&mut j, 5));
        let outs: Vec<&str> = j.results.iter().map(|r| r.output.as_str()).collect();
        assert_eq!(outs, ["abc", "d", ""]);
        assert!(j.output_truncated);
        let mut small = Job {
            results: vec![CommandResult {
                output: "ok".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(!cap_output(&mut small, 5) && !small.output_truncated);
        let row = prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("x".repeat(10))),
        };
        let mut parsed = Job {
            results: vec![CommandResult {
                output: "ok".into(),
                parsed: Some(prost_types::ListValue { values: vec![row] }),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(!cap_output(&mut parsed.clone(), 64));
        assert!(cap_output(&mut parsed, 8));
        let r = &parsed.results[0];
        assert!(r.parsed.is_none() && r.parse_error.contains("output cap") && r.output == "ok");
    }
}
