//! The scale section: N pinned devices on one agent, from one bulk request. For each N: the
//! time for the bulk to connect every device, how its jobs ended (`node_lost` must be 0), the
//! agent's etcd lease keep-alive round trip during the bulk, worker RSS and PSS and agent RSS,
//! idle CPU with keepalives every 10 s and every 60 s (a second bulk, after the first's workers
//! were stopped), and the reused pinned latency of one device while all the others idle.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::ensure;
use integration_tests::cluster::{TestCluster, bulk_request, workspace_bin};
use integration_tests::{Devsim, SimDevice, summarize};
use netpulse_proto::api::*;

use crate::{Report, cpu_ticks, execute, msf, proc_kib, request, workers};

/// Devices per devsim process: each takes a listener and a connection, so one process stays
/// well inside a 20,000-descriptor limit.
const DEVICES_PER_DEVSIM: usize = 4000;
/// The bulk has this long to connect every device.
const SETTLE: Duration = Duration::from_secs(900);

/// The pinned workers one agent can hold under this process's hard descriptor limit (the
/// agent's own start-up check, `node_agent::resources`), with `fifo` fifo places besides.
pub fn agent_capacity(fifo: u64) -> u64 {
    // node_agent::resources's figures (a bin cannot use the agent, a dev-dependency here).
    const FDS_PER_WORKER: u64 = 2;
    const FDS_RESERVED: u64 = 256;
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((0, 0));
    (hard.saturating_sub(FDS_RESERVED) / FDS_PER_WORKER).saturating_sub(fifo)
}

/// Cumulative histogram buckets `(le, count)` of one metric in a scrape.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let (le, rest) = l.strip_prefix(prefix.as_str())?.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q` of what was observed between two scrapes.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let was = |i: usize| before.get(i).map_or(0.0, |b| b.1);
    let total = after.last()?.1 - was(after.len() - 1);
    if total <= 0.0 {
        return None;
    }
    after
        .iter()
        .enumerate()
        .find(|(i, (_, c))| c - was(*i) >= q * total)
        .map(|(_, (le, _))| *le)
}

async fn agent_metrics(c: &TestCluster) -> String {
    match c.agents[0].metrics.as_deref() {
        Some(addr) => integration_tests::scrape(addr).await.unwrap_or_default(),
        None => String::new(),
    }
}

const LEASE_RTT: &str = "netpulse_agent_lease_keepalive_seconds";

/// One bulk of pinned jobs, one per device, with this keepalive; returns how long until every
/// job ended and how they ended (by status or error kind).
async fn bulk(
    c: &TestCluster,
    devices: &[SimDevice],
    keepalive_seconds: u32,
) -> anyhow::Result<(Duration, BTreeMap<String, usize>)> {
    let mut template = request(&devices[0], Strategy::Pinned);
    template.connection.as_mut().unwrap().keepalive_seconds = keepalive_seconds;
    template.queue_timeout_seconds = SETTLE.as_secs() as u32;
    let bulk = bulk_request(template, devices);
    let t = Instant::now();
    let resp = c.jobs(0).await?.execute_bulk(bulk).await?.into_inner();
    ensure!(
        resp.rejected.is_empty(),
        "bulk refused: {:?}",
        &resp.rejected[..resp.rejected.len().min(3)]
    );
    let deadline = t + SETTLE;
    let mut ended = BTreeMap::new();
    for j in &resp.jobs {
        let left = deadline.saturating_duration_since(Instant::now());
        let done = c
            .wait_job(
                0,
                &j.id,
                left.max(Duration::from_secs(1)),
                integration_tests::cluster::is_final,
            )
            .await;
        let how = match (done.status(), &done.error) {
            (JobStatus::Succeeded, _) => "succeeded".to_string(),
            (_, Some(e)) => e.kind.clone(),
            (s, None) => format!("{s:?}"),
        };
        *ended.entry(how).or_default() += 1;
    }
    Ok((t.elapsed(), ended))
}

/// Stops every pinned worker and waits until none is left.
async fn stop_all(c: &TestCluster) -> anyhow::Result<()> {
    let mut admin = c.admin(0).await?;
    let live = |ws: &[Worker]| -> Vec<String> {
        ws.iter()
            .filter(|w| w.state != "exited" && w.pid > 0)
            .map(|w| w.worker_id.clone())
            .collect()
    };
    for id in live(&workers(c).await?) {
        let _ = admin
            .kill_worker(KillWorkerRequest {
                worker_id: id,
                ..Default::default()
            })
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !live(&workers(c).await?).is_empty() {
        ensure!(Instant::now() < deadline, "workers still alive after 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// CPU of `pids` over an idle `window`, in percent of one core.
async fn idle_cpu(pids: &[u64], window: Duration) -> anyhow::Result<f64> {
    let before: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    tokio::time::sleep(window).await; // an idle window: only keepalives run
    let after: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok((after - before) as f64 / ticks / window.as_secs_f64() * 100.0)
}

pub async fn scale(r: &mut Report, c: &TestCluster, n: usize) -> anyhow::Result<()> {
    let mut sims = Vec::new();
    let mut devices = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(DEVICES_PER_DEVSIM);
        let sim = Devsim::start(
            &workspace_bin("devsim"),
            &["--devices".into(), format!("cisco_ios={k}")],
        )
        .await?;
        devices.extend(sim.devices.iter().cloned());
        sims.push(sim);
        left -= k;
    }
    let sim_pids: Vec<u64> = sims
        .iter()
        .map(|s| u64::from(s.child.id().unwrap_or(0)))
        .collect();
    let agent = c.agents[0].pid() as u64;

    let lease_before = buckets(&agent_metrics(c).await, LEASE_RTT);
    let (connected_in, ended) = bulk(c, &devices, 10).await?;
    let lease_after = buckets(&agent_metrics(c).await, LEASE_RTT);
    let lease = |q| quantile(&lease_before, &lease_after, q).map_or(f64::NAN, |s| s * 1e3);
    let lease_n =
        lease_after.last().map_or(0.0, |b| b.1) - lease_before.last().map_or(0.0, |b| b.1);
    let node_lost = ended.get("node_lost").copied().unwrap_or(0);
    let succeeded = ended.get("succeeded").copied().unwrap_or(0);

    let ws: Vec<Worker> = workers(c)
        .await?
        .into_iter()
        .filter(|w| w.state != "exited" && w.pid > 0)
        .collect();
    let mut rss: Vec<u64> = ws
        .iter()
        .map(|w| proc_kib(w.pid, "status", "VmRSS:"))
        .collect();
    let mut pss: Vec<u64> = ws
        .iter()
        .map(|w| proc_kib(w.pid, "smaps_rollup", "Pss:"))
        .collect();
    rss.sort_unstable();
    pss.sort_unstable();
    ensure!(!rss.is_empty(), "no live workers after the bulk: {ended:?}");
    let agent_rss = proc_kib(agent, "status", "VmRSS:");
    let node: Vec<u64> = ws.iter().map(|w| w.pid).chain([agent]).collect();
    let window_10 = Duration::from_secs(20);
    let cpu_10 = idle_cpu(&node, window_10).await?;
    let sim_10 = idle_cpu(&sim_pids, window_10).await?;

    // One device's reused latency while all the others idle.
    let mut client = c.jobs(0).await?;
    let mut reused = Vec::new();
    for i in 0..330 {
        let (t, j) = execute(&mut client, request(&devices[0], Strategy::Pinned)).await?;
        if i >= 30 {
            ensure!(j.session_reused, "the device's session is reused");
            reused.push(t);
        }
    }
    let reused = summarize(&mut reused);

    stop_all(c).await?;
    let (connected_60, ended_60) = bulk(c, &devices, 60).await?;
    let node_60: Vec<u64> = workers(c)
        .await?
        .iter()
        .filter(|w| w.state != "exited" && w.pid > 0)
        .map(|w| w.pid)
        .chain([agent])
        .collect();
    let window_60 = Duration::from_secs(60);
    let cpu_60 = idle_cpu(&node_60, window_60).await?;
    let node_lost_60 = ended_60.get("node_lost").copied().unwrap_or(0);
    stop_all(c).await?;

    let mib = |k: u64| k as f64 / 1024.0;
    r.line(format!(
        "\n### {n} pinned devices on one agent\n\nOne bulk request; {} devsim process(es). Jobs: {ended:?} (keepalive 10 s), {ended_60:?} (keepalive 60 s).\n",
        sims.len()
    ));
    r.line("| what | value |\n|---|---|");
    r.line(format!(
        "| bulk connects every device (keepalive 10 s / 60 s) | {:.1} s / {:.1} s |",
        connected_in.as_secs_f64(),
        connected_60.as_secs_f64()
    ));
    r.line(format!("| node_lost | {} |", node_lost + node_lost_60));
    r.line(format!(
        "| lease keep-alive round trip during the bulk, p50 / p99 (bucket bound; {lease_n} keep-alives) | ≤ {:.1} / ≤ {:.1} ms |",
        lease(0.5),
        lease(0.99)
    ));
    r.line(format!(
        "| worker RSS, median / max | {:.2} / {:.2} MiB |",
        mib(rss[rss.len() / 2]),
        mib(rss[rss.len() - 1])
    ));
    r.line(format!(
        "| worker PSS (shared pages split), median | {:.2} MiB |",
        mib(pss[pss.len() / 2])
    ));
    r.line(format!("| agent RSS | {:.1} MiB |", mib(agent_rss)));
    r.line(format!(
        "| idle CPU, agent + workers, keepalive 10 s / 60 s | {cpu_10:.1}% / {cpu_60:.1}% of one core |"
    ));
    r.line(format!(
        "| idle CPU, devsim, keepalive 10 s | {sim_10:.1}% of one core |"
    ));
    r.line(format!(
        "| reused pinned job on one device while the rest idle, median / p99 | {:.3} / {:.3} ms |",
        msf(reused.median),
        msf(reused.p99)
    ));
    r.value(
        &format!("scale.{n}"),
        serde_json::json!({
            "devices": n, "devsim_processes": sims.len(),
            "connect_all_s": connected_in.as_secs_f64(), "connect_all_keepalive_60_s": connected_60.as_secs_f64(),
            "jobs_keepalive_10": ended, "jobs_keepalive_60": ended_60,
            "succeeded": succeeded, "node_lost": node_lost + node_lost_60,
            "lease_keepalives": lease_n, "lease_keepalive_p50_ms_le": lease(0.5), "lease_keepalive_p99_ms_le": lease(0.99),
            "worker_rss_median_mib": mib(rss[rss.len() / 2]), "worker_rss_max_mib": mib(rss[rss.len() - 1]),
            "worker_pss_median_mib": mib(pss[pss.len() / 2]), "agent_rss_mib": mib(agent_rss),
            "idle_cpu_percent_keepalive_10": cpu_10, "idle_cpu_percent_keepalive_60": cpu_60,
            "devsim_idle_cpu_percent_keepalive_10": sim_10,
            "reused_median_ms": msf(reused.median), "reused_p99_ms": msf(reused.p99),
        }),
    );
    ensure!(
        node_lost + node_lost_60 == 0,
        "{n} devices: jobs ended node_lost"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_bucket_deltas() {
        let text = "x_bucket{le=\"0.001\"} 5\nx_bucket{le=\"0.002\"} 9\nx_bucket{le=\"+Inf\"} 10\n";
        let before = buckets(
            "x_bucket{le=\"0.001\"} 5\nx_bucket{le=\"0.002\"} 5\nx_bucket{le=\"+Inf\"} 5\n",
            "x",
        );
        let after = buckets(text, "x");
        assert_eq!(after.len(), 3);
        // Five new observations: four in (1, 2] ms, one above.
        assert_eq!(quantile(&before, &after, 0.5), Some(0.002));
        assert_eq!(quantile(&before, &after, 0.99), Some(f64::INFINITY));
        assert_eq!(quantile(&after, &after, 0.5), None);
    }
}
