//! The agent's Prometheus metrics. Jobs, sessions, keepalives and worker lifecycles are counted
//! where they happen; queue depths and worker counts are read from the worker table at each
//! scrape.

use std::time::Duration;

use netpulse_proto::agent::{Strategy, WorkerState};
use netpulse_proto::worker as wire;
use netpulse_telemetry::prometheus_client::metrics::counter::Counter;
use netpulse_telemetry::prometheus_client::metrics::family::Family;
use netpulse_telemetry::prometheus_client::metrics::gauge::Gauge;
use netpulse_telemetry::prometheus_client::metrics::histogram::Histogram;
use netpulse_telemetry::prometheus_client::registry::Registry;

use crate::table::WorkerTable;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn histograms() -> Histograms {
    Family::new_with_constructor(netpulse_telemetry::seconds_histogram as fn() -> Histogram)
}

pub fn strategy_name(pinned: bool) -> &'static str {
    if pinned { "pinned" } else { "fifo" }
}

pub struct AgentMetrics {
    registry: Registry,
    jobs: Family<Labels, Counter>,
    reused: Family<Labels, Counter>,
    connect: Histograms,
    command: Histograms,
    keepalive_rtt: Histogram,
    keepalive_failures: Counter,
    spawns: Family<Labels, Counter>,
    exits: Family<Labels, Counter>,
    lifetime: Histograms,
    queued: Family<Labels, Gauge>,
    queued_total: Gauge,
    workers: Family<Labels, Gauge>,
    lease_keepalive: Histogram,
    lease_lost: Counter,
    evictions: Counter,
    busy_retries: Counter,
    /// The staging area: bytes used, files, the limit.
    staging: Family<Labels, Gauge>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("netpulse_agent");
        let jobs = Family::<Labels, Counter>::default();
        r.register(
            "jobs_finished",
            "Jobs that ended on this node, by strategy and outcome (ok, failed, handed_back)",
            jobs.clone(),
        );
        let reused = Family::<Labels, Counter>::default();
        r.register(
            "jobs_session_reused",
            "Jobs that ran over a session already open (divide by jobs_finished for the reuse ratio)",
            reused.clone(),
        );
        let connect = histograms();
        r.register(
            "connect_seconds",
            "SSH connection set-up: TCP, key exchange, login, prompt, paging off",
            connect.clone(),
        );
        let command = histograms();
        r.register(
            "command_seconds",
            "Response time of each command on the device",
            command.clone(),
        );
        let keepalive_rtt = netpulse_telemetry::seconds_histogram();
        r.register(
            "keepalive_rtt_seconds",
            "Round trip of the application keepalive (RETURN until the prompt is back)",
            keepalive_rtt.clone(),
        );
        let keepalive_failures = Counter::default();
        r.register(
            "keepalive_failures",
            "Keepalives that failed (the worker then reports unhealthy and exits)",
            keepalive_failures.clone(),
        );
        let spawns = Family::<Labels, Counter>::default();
        r.register("worker_spawns", "Worker processes started", spawns.clone());
        let exits = Family::<Labels, Counter>::default();
        r.register(
            "worker_exits",
            "Worker processes reaped, by exit code (128+N: killed by signal N)",
            exits.clone(),
        );
        let lifetime = histograms();
        r.register(
            "worker_lifetime_seconds",
            "From spawn to exit",
            lifetime.clone(),
        );
        let queued = Family::<Labels, Gauge>::default();
        r.register(
            "device_queued_jobs",
            "Jobs waiting per pinned device (the running one excluded)",
            queued.clone(),
        );
        let queued_total = Gauge::default();
        r.register(
            "queued_jobs",
            "Jobs waiting on this node, pinned and fifo",
            queued_total.clone(),
        );
        let staging = Family::<Labels, Gauge>::default();
        r.register(
            "staging",
            "The staging area of transfer files: bytes (used, files being written included), files, limit_bytes",
            staging.clone(),
        );
        let workers = Family::<Labels, Gauge>::default();
        r.register(
            "workers",
            "Worker processes alive, by strategy",
            workers.clone(),
        );
        let lease_keepalive = netpulse_telemetry::seconds_histogram();
        r.register(
            "lease_keepalive_seconds",
            "Round trip of the etcd lease keep-alive (its own thread; the lease lapses after the TTL without one)",
            lease_keepalive.clone(),
        );
        let lease_lost = Counter::default();
        r.register(
            "lease_lost",
            "Times the node's lease was lost and the node fenced itself until registered again",
            lease_lost.clone(),
        );
        let evictions = Counter::default();
        r.register(
            "pinned_evictions",
            "Idle pinned workers that gave their place to a new device on a full node (least recently used first)",
            evictions.clone(),
        );
        let busy_retries = Counter::default();
        r.register(
            "busy_retries",
            "Fifo jobs tried again because the device refused them as busy (every line in use)",
            busy_retries.clone(),
        );
        AgentMetrics {
            registry: r,
            evictions,
            busy_retries,
            staging,
            lease_keepalive,
            lease_lost,
            jobs,
            reused,
            connect,
            command,
            keepalive_rtt,
            keepalive_failures,
            spawns,
            exits,
            lifetime,
            queued,
            queued_total,
            workers,
        }
    }
}

fn by(strategy: &'static str) -> Labels {
    vec![("strategy", strategy.to_string())]
}

impl AgentMetrics {
    pub fn finished(&self, strategy: &'static str, r: &wire::JobResult) {
        let outcome = match (r.not_started, r.ok) {
            (true, _) => "handed_back",
            (false, true) => "ok",
            (false, false) => "failed",
        };
        self.jobs
            .get_or_create(&vec![
                ("strategy", strategy.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
        if r.session_reused {
            self.reused.get_or_create(&by(strategy)).inc();
        }
        let command = self.command.get_or_create(&by(strategy));
        for c in &r.results {
            if c.status != wire::CommandStatus::Skipped as i32 {
                command.observe(c.duration_us as f64 / 1e6);
            }
        }
    }

    pub fn busy_retried(&self) {
        self.busy_retries.inc();
    }

    pub fn connected(&self, strategy: &'static str, connect_us: u64) {
        self.connect
            .get_or_create(&by(strategy))
            .observe(connect_us as f64 / 1e6);
    }

    pub fn health(&self, h: &wire::Health) {
        if h.ok {
            self.keepalive_rtt.observe(h.rtt_us as f64 / 1e6);
        } else {
            self.keepalive_failures.inc();
        }
    }

    pub fn lease_keepalive(&self, rtt: Duration) {
        self.lease_keepalive.observe(rtt.as_secs_f64());
    }

    pub fn evicted(&self) {
        self.evictions.inc();
    }

    pub fn lease_lost(&self) {
        self.lease_lost.inc();
    }

    pub fn spawned(&self, strategy: &'static str) {
        self.spawns.get_or_create(&by(strategy)).inc();
    }

    pub fn exited(&self, strategy: &'static str, code: i32, lived: Duration) {
        self.exits
            .get_or_create(&vec![
                ("strategy", strategy.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
        self.lifetime
            .get_or_create(&by(strategy))
            .observe(lived.as_secs_f64());
    }

    /// The text of a scrape, with gauges read from the worker table and the staging area now.
    pub fn render(
        &self,
        table: &WorkerTable,
        fifo_queued: usize,
        staging: &crate::staging::Staging,
    ) -> String {
        let (bytes, files, limit) = staging.usage();
        for (what, v) in [
            ("bytes", bytes),
            ("files", files as u64),
            ("limit_bytes", limit),
        ] {
            self.staging
                .get_or_create(&vec![("what", what.to_string())])
                .set(v as i64);
        }
        self.queued.clear();
        let (mut pinned, mut fifo, mut queued) = (0, 0, fifo_queued as i64);
        for w in table.snapshot() {
            let alive = w.state != WorkerState::Exited as i32 && w.pid != 0;
            if w.strategy == Strategy::Fifo as i32 {
                fifo += i64::from(alive);
                continue;
            }
            pinned += i64::from(alive);
            queued += i64::from(w.queued_jobs);
            if w.queued_jobs > 0 {
                self.queued
                    .get_or_create(&vec![("device", w.device.clone())])
                    .set(i64::from(w.queued_jobs));
            }
        }
        self.queued_total.set(queued);
        self.workers.get_or_create(&by("pinned")).set(pinned);
        self.workers.get_or_create(&by("fifo")).set(fifo);
        netpulse_telemetry::encode(&self.registry)
    }
}
