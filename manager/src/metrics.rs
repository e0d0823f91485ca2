//! The manager's Prometheus metrics. A job listener: counters, histograms and the active-jobs
//! gauge follow the job events; node gauges and store writes are read at each scrape from the
//! node view and the store's totals.

use std::sync::atomic::{AtomicU64, Ordering};

use netpulse_proto::api::{Job, Strategy};
use netpulse_telemetry::prometheus_client::metrics::counter::Counter;
use netpulse_telemetry::prometheus_client::metrics::family::Family;
use netpulse_telemetry::prometheus_client::metrics::gauge::Gauge;
use netpulse_telemetry::prometheus_client::metrics::histogram::Histogram;
use netpulse_telemetry::prometheus_client::registry::Registry;

use crate::listeners::JobListener;
use crate::placement::NodeMap;
use crate::store::Stats;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    submitted: Family<Labels, Counter>,
    finished: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    queued: Family<Labels, Histogram, fn() -> Histogram>,
    active: Gauge,
    nodes: Gauge,
    node_queued: Family<Labels, Gauge>,
    node_pinned: Family<Labels, Gauge>,
    store_transactions: Counter,
    store_puts: Counter,
    /// The store's totals at the last scrape, so the counters advance by the difference.
    seen: [AtomicU64; 2],
}

pub fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Fifo => "fifo",
        _ => "pinned",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("netpulse");
        let submitted = Family::<Labels, Counter>::default();
        registry.register(
            "jobs_submitted",
            "Jobs accepted by this manager, by strategy",
            submitted.clone(),
        );
        let finished = Family::<Labels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Jobs this manager drove to a final status, by strategy and status",
            finished.clone(),
        );
        let duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            netpulse_telemetry::seconds_histogram as fn() -> Histogram,
        );
        registry.register(
            "job_duration_seconds",
            "Submit to final status, by strategy",
            duration.clone(),
        );
        let queued = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            netpulse_telemetry::seconds_histogram as fn() -> Histogram,
        );
        registry.register(
            "job_queued_seconds",
            "Submit to start on a worker, by strategy",
            queued.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "jobs_active",
            "Unfinished jobs this manager drives",
            active.clone(),
        );
        let nodes = Gauge::default();
        registry.register(
            "nodes_alive",
            "Node agents registered in etcd",
            nodes.clone(),
        );
        let node_queued = Family::<Labels, Gauge>::default();
        registry.register(
            "node_queued_jobs",
            "Jobs queued on each node (its last report, refreshed every 2 s)",
            node_queued.clone(),
        );
        let node_pinned = Family::<Labels, Gauge>::default();
        registry.register(
            "node_pinned_workers",
            "Pinned workers on each node (its last report)",
            node_pinned.clone(),
        );
        let store_transactions = Counter::default();
        registry.register(
            "store_transactions",
            "etcd transactions committed by this manager's job store",
            store_transactions.clone(),
        );
        let store_puts = Counter::default();
        registry.register(
            "store_puts",
            "etcd puts committed by this manager's job store",
            store_puts.clone(),
        );
        Metrics {
            registry,
            submitted,
            finished,
            duration,
            queued,
            active,
            nodes,
            node_queued,
            node_pinned,
            store_transactions,
            store_puts,
            seen: Default::default(),
        }
    }
}

impl JobListener for Metrics {
    fn accepted(&self, job: &Job, _request: &netpulse_proto::api::ExecuteRequest, adopted: bool) {
        self.active.inc();
        if !adopted {
            self.submitted
                .get_or_create(&vec![("strategy", strategy_name(job.strategy()).into())])
                .inc();
        }
    }

    fn finished(&self, job: &Job, _writes: &mut Vec<crate::store::Op>) {
        self.active.dec();
        let strategy = strategy_name(job.strategy());
        let status = job
            .status()
            .as_str_name()
            .trim_start_matches("JOB_STATUS_")
            .to_ascii_lowercase();
        self.finished
            .get_or_create(&vec![("strategy", strategy.into()), ("status", status)])
            .inc();
        let by = vec![("strategy", strategy.to_string())];
        if job.ended_unix_ms >= job.created_unix_ms && job.created_unix_ms > 0 {
            let took = (job.ended_unix_ms - job.created_unix_ms) as f64 / 1000.0;
            self.duration.get_or_create(&by).observe(took);
        }
        if job.started_unix_ms >= job.created_unix_ms && job.started_unix_ms > 0 {
            let waited = (job.started_unix_ms - job.created_unix_ms) as f64 / 1000.0;
            self.queued.get_or_create(&by).observe(waited);
        }
    }

    fn released(&self, _job_id: &str) {
        self.active.dec();
    }
}

impl Metrics {
    /// For other parts' metrics (webhooks) to register in.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text of a scrape, with the node gauges and store writes read now.
    pub fn render(&self, nodes: &NodeMap, stats: &Stats) -> String {
        self.nodes.set(nodes.len() as i64);
        // Nodes that left drop out of the per-node gauges.
        self.node_queued.clear();
        self.node_pinned.clear();
        for n in nodes.values() {
            let node = vec![("node", n.node_id.clone())];
            self.node_queued
                .get_or_create(&node)
                .set(i64::from(n.queued_jobs));
            self.node_pinned
                .get_or_create(&node)
                .set(i64::from(n.pinned_workers));
        }
        for (i, (total, counter)) in [
            (&stats.transactions, &self.store_transactions),
            (&stats.puts, &self.store_puts),
        ]
        .into_iter()
        .enumerate()
        {
            let now = total.load(Ordering::Relaxed);
            let before = self.seen[i].swap(now, Ordering::Relaxed);
            counter.inc_by(now.saturating_sub(before));
        }
        netpulse_telemetry::encode(&self.registry)
    }
}
