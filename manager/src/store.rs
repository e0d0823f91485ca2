//! Durable job records in etcd.
//!
//! A record is the public `Job` message, protobuf-encoded, at `<prefix>/jobs/<id>`. Writes go
//! through one writer task that commits whatever is waiting as one transaction (group commit):
//! under load, many jobs' writes share one etcd round trip and one fsync, so throughput is not
//! bounded by one round trip per job; alone, a write goes out at once. A caller's write is
//! acknowledged only after its transaction commits, so "written before Execute returns" holds.
//! Unfinished jobs carry no lease. A final job is attached to a shared lease that expires at the
//! end of its `result_ttl`, rounded up to the bucket width, so there is one lease per bucket,
//! not one per job. Outputs are capped per job; beyond the cap they are cut and marked.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use netpulse_proto::api::Job;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

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

struct Write {
    key: String,
    value: Vec<u8>,
    /// Seconds from now until the record may go (final jobs); None keeps it.
    expires_in: Option<Duration>,
    done: oneshot::Sender<Result<(), ApiError>>,
}

#[derive(Clone)]
pub struct JobStore {
    client: Client,
    cfg: StoreConfig,
    writes: mpsc::Sender<Write>,
    stats: std::sync::Arc<Stats>,
}

#[derive(Default)]
pub struct Stats {
    pub transactions: std::sync::atomic::AtomicU64,
    pub puts: std::sync::atomic::AtomicU64,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("job store ({what}): {e}"))
}

fn now_unix() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Cuts outputs beyond `max` bytes in total, at char boundaries; returns whether it cut.
pub fn cap_output(job: &mut Job, max: usize) -> bool {
    let mut left = max;
    let mut cut = false;
    for r in &mut job.results {
        if r.output.len() <= left {
            left -= r.output.len();
            continue;
        }
        let mut at = left;
        while !r.output.is_char_boundary(at) {
            at -= 1;
        }
        r.output.truncate(at);
        left = 0;
        cut = true;
    }
    job.output_truncated |= cut;
    cut
}

impl JobStore {
    /// Starts the writer task; it ends when every clone of the store is dropped.
    pub fn new(client: Client, cfg: StoreConfig) -> JobStore {
        let (tx, rx) = mpsc::channel(cfg.max_batch * 16);
        let stats = std::sync::Arc::new(Stats::default());
        tokio::spawn(writer(client.clone(), cfg.clone(), rx, stats.clone()));
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

    fn key(&self, id: &str) -> String {
        format!("{}/jobs/{id}", self.cfg.prefix.trim_end_matches('/'))
    }

    /// Writes the job; returns once etcd has committed it. A final job with `result_ttl`
    /// expires that long after now.
    pub async fn put(&self, mut job: Job, result_ttl: Option<Duration>) -> Result<(), ApiError> {
        cap_output(&mut job, self.cfg.max_output_bytes);
        let (done, answer) = oneshot::channel();
        let w = Write {
            key: self.key(&job.id),
            value: job.encode_to_vec(),
            expires_in: result_ttl,
            done,
        };
        self.writes
            .send(w)
            .await
            .map_err(|_| ApiError::Unavailable("job store is shutting down".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Unavailable("job store writer stopped".into()))?
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>, ApiError> {
        let mut c = self.client.clone();
        let r = tokio::time::timeout(self.cfg.call_timeout, c.get(self.key(id), None))
            .await
            .map_err(|_| unavailable("get", "timed out"))?
            .map_err(|e| unavailable("get", e))?;
        match r.kvs().first() {
            None => Ok(None),
            Some(kv) => Job::decode(kv.value())
                .map(Some)
                .map_err(|e| ApiError::Internal(format!("job {id} does not decode: {e}"))),
        }
    }

    /// Jobs in id order after `after` (exclusive), at most `limit`.
    pub async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Job>, ApiError> {
        let start = match after {
            Some(id) => format!("{}\0", self.key(id)),
            None => self.key(""),
        };
        let end = format!("{}/jobs0", self.cfg.prefix.trim_end_matches('/'));
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
}

async fn writer(
    mut client: Client,
    cfg: StoreConfig,
    mut rx: mpsc::Receiver<Write>,
    stats: std::sync::Arc<Stats>,
) {
    // bucket end (unix seconds) -> lease id
    let mut leases: HashMap<u64, i64> = HashMap::new();
    let bucket = cfg.lease_bucket.as_secs().max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let now = now_unix().as_secs();
        leases.retain(|end, _| *end > now);
        let mut ops = Vec::with_capacity(batch.len());
        let mut failed: Option<ApiError> = None;
        for w in &batch {
            let mut opts = PutOptions::new();
            if let Some(ttl) = w.expires_in {
                let end = (now + ttl.as_secs()).div_ceil(bucket) * bucket;
                let lease = match leases.get(&end) {
                    Some(l) => *l,
                    None => {
                        let grant = tokio::time::timeout(
                            cfg.call_timeout,
                            client.lease_grant((end - now).max(1) as i64, None),
                        )
                        .await;
                        match grant {
                            Ok(Ok(g)) => {
                                leases.insert(end, g.id());
                                g.id()
                            }
                            Ok(Err(e)) => {
                                failed = Some(unavailable("lease", e));
                                break;
                            }
                            Err(_) => {
                                failed = Some(unavailable("lease", "timed out"));
                                break;
                            }
                        }
                    }
                };
                opts = opts.with_lease(lease);
            }
            ops.push(TxnOp::put(w.key.clone(), w.value.clone(), Some(opts)));
        }
        let result = match failed {
            Some(e) => Err(e),
            None => {
                match tokio::time::timeout(cfg.call_timeout, client.txn(Txn::new().and_then(ops)))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(unavailable("write", e)),
                    Err(_) => Err(unavailable("write", "timed out")),
                }
            }
        };
        if result.is_ok() {
            stats
                .transactions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stats
                .puts
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        for w in batch {
            let _ = w.done.send(result.clone());
        }
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
    }
}
