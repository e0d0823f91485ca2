//! The store's writer task: it commits whatever writes are waiting as one etcd transaction
//! (group commit), a guarded create-once alone, and keeps the shared result leases, one per
//! expiry bucket.

use std::collections::HashMap;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// What the writer needs of the store's configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterLimits {
    /// Most puts committed in one transaction.
    pub(crate) max_batch: usize,
    /// Final jobs whose results expire within the same bucket share a lease.
    pub(crate) lease_bucket: Duration,
    pub(crate) call_timeout: Duration,
}

/// One change in a write.
#[derive(Clone, Debug)]
pub enum Op {
    /// `expires_in`: how long the key lives from now (on a shared bucket lease); None keeps it.
    Put {
        key: String,
        value: Vec<u8>,
        expires_in: Option<Duration>,
    },
    Delete {
        key: String,
    },
}

impl Op {
    pub(crate) fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// A create that happens only if `key` is absent; `key` then names `value`.
pub(crate) struct Guard {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) expires_in: Duration,
    /// The value already there when the guard failed.
    pub(crate) existing: oneshot::Sender<Option<String>>,
}

/// Called by the writer with the commit's outcome.
pub type OnCommit = Box<dyn FnOnce(Result<(), ApiError>) + Send + Sync>;

pub(crate) enum Done {
    Reply(oneshot::Sender<Result<(), ApiError>>),
    /// Runs on the writer task: no task to wake for the common "then tell the waiters".
    Call(OnCommit),
}

pub(crate) struct Write {
    pub(crate) ops: Vec<Op>,
    pub(crate) guard: Option<Guard>,
    pub(crate) done: Option<Done>,
}

#[derive(Default)]
pub struct Stats {
    pub transactions: std::sync::atomic::AtomicU64,
    pub puts: std::sync::atomic::AtomicU64,
    /// The last write failed (etcd down or slow); cleared by the next one that commits.
    pub failing: std::sync::atomic::AtomicBool,
}

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("job store ({what}): {e}"))
}

fn now_unix() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Leases shared by keys that expire within the same bucket.
struct Leases {
    by_end: HashMap<u64, i64>,
    bucket: u64,
}

impl Leases {
    async fn for_ttl(
        &mut self,
        client: &mut Client,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<i64, ApiError> {
        let now = now_unix().as_secs();
        self.by_end.retain(|end, _| *end > now);
        let end = (now + ttl.as_secs()).div_ceil(self.bucket) * self.bucket;
        if let Some(l) = self.by_end.get(&end) {
            return Ok(*l);
        }
        let g = tokio::time::timeout(timeout, client.lease_grant((end - now).max(1) as i64, None))
            .await
            .map_err(|_| unavailable("lease", "timed out"))?
            .map_err(|e| unavailable("lease", e))?;
        self.by_end.insert(end, g.id());
        Ok(g.id())
    }
}

async fn txn_op(
    op: &Op,
    client: &mut Client,
    leases: &mut Leases,
    timeout: Duration,
) -> Result<TxnOp, ApiError> {
    Ok(match op {
        Op::Put {
            key,
            value,
            expires_in,
        } => {
            let mut opts = PutOptions::new();
            if let Some(ttl) = expires_in {
                opts = opts.with_lease(leases.for_ttl(client, *ttl, timeout).await?);
            }
            TxnOp::put(key.clone(), value.clone(), Some(opts))
        }
        Op::Delete { key } => TxnOp::delete(key.clone(), None),
    })
}

/// Commits a batch of unguarded writes as one transaction. etcd refuses a transaction that
/// names a key twice, so only the last op per key is kept (later writes supersede earlier).
async fn commit_batch(
    batch: &[Write],
    client: &mut Client,
    leases: &mut Leases,
    cfg: &WriterLimits,
) -> Result<usize, ApiError> {
    let mut last: HashMap<&str, &Op> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for op in batch.iter().flat_map(|w| &w.ops) {
        if last.insert(op.key(), op).is_none() {
            order.push(op.key());
        }
    }
    let mut ops = Vec::with_capacity(order.len());
    for k in &order {
        ops.push(txn_op(last[k], client, leases, cfg.call_timeout).await?);
    }
    let n = ops.len();
    tokio::time::timeout(cfg.call_timeout, client.txn(Txn::new().and_then(ops)))
        .await
        .map_err(|_| unavailable("write", "timed out"))?
        .map_err(|e| unavailable("write", e))?;
    Ok(n)
}

async fn commit_guarded(
    w: &mut Write,
    client: &mut Client,
    leases: &mut Leases,
    cfg: &WriterLimits,
) -> Result<usize, ApiError> {
    let g = w.guard.take().expect("guarded write");
    let lease = leases
        .for_ttl(client, g.expires_in, cfg.call_timeout)
        .await?;
    let mut ops = Vec::with_capacity(w.ops.len() + 1);
    for op in &w.ops {
        ops.push(txn_op(op, client, leases, cfg.call_timeout).await?);
    }
    ops.push(TxnOp::put(
        g.key.clone(),
        g.value.clone(),
        Some(PutOptions::new().with_lease(lease)),
    ));
    let n = ops.len();
    let txn = Txn::new()
        .when([Compare::create_revision(g.key.clone(), CompareOp::Equal, 0)])
        .and_then(ops)
        .or_else([TxnOp::get(g.key.clone(), None)]);
    let r = tokio::time::timeout(cfg.call_timeout, client.txn(txn))
        .await
        .map_err(|_| unavailable("write", "timed out"))?
        .map_err(|e| unavailable("write", e))?;
    let existing = if r.succeeded() {
        None
    } else {
        r.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            _ => None,
        })
    };
    let _ = g.existing.send(existing);
    Ok(if r.succeeded() { n } else { 0 })
}

pub(crate) async fn run(
    mut client: Client,
    cfg: WriterLimits,
    mut rx: mpsc::Receiver<Write>,
    stats: std::sync::Arc<Stats>,
) {
    let mut leases = Leases {
        by_end: HashMap::new(),
        bucket: cfg.lease_bucket.as_secs().max(1),
    };
    let mut next: Option<Write> = None;
    loop {
        let first = match next.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        let (result, batch) = if first.guard.is_some() {
            let mut w = first;
            let r = commit_guarded(&mut w, &mut client, &mut leases, &cfg).await;
            (r, vec![w])
        } else {
            let mut batch = vec![first];
            let mut ops = batch[0].ops.len();
            while ops < cfg.max_batch {
                match rx.try_recv() {
                    Ok(w) if w.guard.is_some() => {
                        next = Some(w);
                        break;
                    }
                    Ok(w) => {
                        ops += w.ops.len();
                        batch.push(w);
                    }
                    Err(_) => break,
                }
            }
            (
                commit_batch(&batch, &mut client, &mut leases, &cfg).await,
                batch,
            )
        };
        stats
            .failing
            .store(result.is_err(), std::sync::atomic::Ordering::Relaxed);
        if let Ok(puts) = &result {
            stats
                .transactions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stats
                .puts
                .fetch_add(*puts as u64, std::sync::atomic::Ordering::Relaxed);
        }
        for w in batch {
            match w.done {
                Some(Done::Reply(tx)) => {
                    let _ = tx.send(result.clone().map(|_| ()));
                }
                Some(Done::Call(f)) => f(result.clone().map(|_| ())),
                None => {}
            }
        }
    }
}
