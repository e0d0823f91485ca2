//! The small key-value interface placement needs, with an etcd implementation and an
//! in-memory one (as GreptimeDB's `kv_backend` has), so placement logic gets fast unit tests
//! without etcd. Keys written on a lease vanish with it: that is how a dead node loses its
//! devices.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use crate::error::ApiError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Kv: Send + Sync {
    /// The value at `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, ApiError>>;
    /// Writes `value` at `key`, attached to `lease`, unless the key exists; returns the value
    /// the key holds afterwards (this one, or the one that was there).
    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        lease: i64,
    ) -> BoxFuture<'a, Result<Vec<u8>, ApiError>>;
    /// Deletes `key` if it holds `value`.
    fn delete_if<'a>(&'a self, key: &'a str, value: &'a str)
    -> BoxFuture<'a, Result<(), ApiError>>;
}

/// Placement calls in flight to etcd at once: a bulk of ten thousand new devices would
/// otherwise put ten thousand claims in etcd's queue at once, and etcd refuses requests
/// ("too many requests") once it is 5,000 entries behind.
const IN_FLIGHT: usize = 256;

/// etcd, every call bounded by `timeout` (waiting for a place among the calls in flight
/// included).
pub struct EtcdKv {
    client: Client,
    timeout: Duration,
    in_flight: tokio::sync::Semaphore,
}

impl EtcdKv {
    pub fn new(client: Client, timeout: Duration) -> Self {
        EtcdKv {
            client,
            timeout,
            in_flight: tokio::sync::Semaphore::new(IN_FLIGHT),
        }
    }

    /// One etcd call, bounded by the timeout, its failure as `UNAVAILABLE`.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, ApiError> {
        let call = async {
            let _place = self.in_flight.acquire().await;
            call.await
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ApiError::Unavailable("etcd did not answer in time".into()))?
            .map_err(|e| ApiError::Unavailable(format!("etcd: {e}")))
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, ApiError> {
        let mut c = self.client.clone();
        self.bounded(c.txn(txn)).await
    }
}

impl Kv for EtcdKv {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, ApiError>> {
        Box::pin(async move {
            let mut c = self.client.clone();
            let r = self.bounded(c.get(key, None)).await?;
            Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        lease: i64,
    ) -> BoxFuture<'a, Result<Vec<u8>, ApiError>> {
        Box::pin(async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key, None)]);
            let r = self.txn(txn).await?;
            if r.succeeded() {
                return Ok(value.as_bytes().to_vec());
            }
            for op in r.op_responses() {
                if let TxnOpResponse::Get(g) = op
                    && let Some(kv) = g.kvs().first()
                {
                    return Ok(kv.value().to_vec());
                }
            }
            Err(ApiError::Unavailable(format!(
                "{key} changed while it was read; retry"
            )))
        })
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let txn = Txn::new()
                .when([Compare::value(key, CompareOp::Equal, value)])
                .and_then([TxnOp::delete(key, None)]);
            self.txn(txn).await.map(|_| ())
        })
    }
}

/// In memory, for tests: the same contract, and `revoke` ends a lease as etcd would.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<BTreeMap<String, (Vec<u8>, i64)>>,
}

impl MemoryKv {
    /// Removes every key attached to `lease`.
    pub fn revoke(&self, lease: i64) {
        self.entries
            .lock()
            .expect("lock")
            .retain(|_, (_, l)| *l != lease);
    }
}

impl Kv for MemoryKv {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, ApiError>> {
        let v = self
            .entries
            .lock()
            .expect("lock")
            .get(key)
            .map(|(v, _)| v.clone());
        Box::pin(async move { Ok(v) })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        lease: i64,
    ) -> BoxFuture<'a, Result<Vec<u8>, ApiError>> {
        let v = self
            .entries
            .lock()
            .expect("lock")
            .entry(key.to_string())
            .or_insert_with(|| (value.as_bytes().to_vec(), lease))
            .0
            .clone();
        Box::pin(async move { Ok(v) })
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let mut entries = self.entries.lock().expect("lock");
        if entries.get(key).is_some_and(|(v, _)| v == value.as_bytes()) {
            entries.remove(key);
        }
        Box::pin(async { Ok(()) })
    }
}
