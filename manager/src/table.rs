//! The jobs this manager drives and how their state moves: which node holds each, which
//! events count, when a job is pending, expired or lost. Pure state, no I/O: the scheduler
//! does the writes and the sends these transitions call for, so the life-cycle rules get unit
//! tests without etcd or agents.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use netpulse_model::{ErrorKind, JobRequest};
use netpulse_proto::agent::{Dispatch, JobRejected, RejectCode};
use netpulse_proto::api::{ExecuteRequest, Job, JobStatus};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use crate::placement::NodeMap;
use crate::record;

/// A job this manager drives.
pub(crate) struct Active {
    pub(crate) job: Job,
    pub(crate) request: JobRequest,
    /// The request as received (wait cleared), for the `active` record.
    pub(crate) wire: ExecuteRequest,
    /// Where it was dispatched; None while pending.
    pub(crate) node: Option<String>,
    /// A dispatch attempt is under way.
    pub(crate) dispatching: bool,
    /// Nodes that refused it or handed it back.
    pub(crate) excluded: HashSet<String>,
    /// Adopted while running: ask the node about it, never start it again.
    pub(crate) resume_only: bool,
    pub(crate) queue_deadline: Instant,
    pub(crate) updates: watch::Sender<Job>,
    /// The record in etcd says RUNNING (written by the sweep, so a fast job costs no write).
    pub(crate) running_recorded: bool,
    /// The job and its active entry are in etcd. A waiting submit's job is written by the
    /// sweep if it is still unfinished then; one that ends sooner is written once, final.
    pub(crate) recorded: bool,
    /// A sweep has seen it: the next one writes it if it is still unfinished.
    pub(crate) swept: bool,
    /// Its place among `max_active_jobs` (adopted jobs take one only if one is free).
    pub(crate) _slot: Option<OwnedSemaphorePermit>,
}

impl Active {
    /// A job as accepted: on `node` (None: pending), not yet recorded unless `recorded`.
    pub(crate) fn new(
        job: Job,
        request: JobRequest,
        wire: ExecuteRequest,
        node: Option<String>,
        queue_deadline: Instant,
        slot: Option<OwnedSemaphorePermit>,
    ) -> (Active, watch::Receiver<Job>) {
        let (updates, rx) = watch::channel(job.clone());
        let a = Active {
            job,
            request,
            wire,
            node,
            dispatching: false,
            excluded: HashSet::new(),
            resume_only: false,
            queue_deadline,
            updates,
            running_recorded: false,
            recorded: false,
            swept: false,
            _slot: slot,
        };
        (a, rx)
    }

    /// Shows the job's progress to anyone who looks, without waking the waiters: they wait
    /// for its end (one task wake less per job).
    pub(crate) fn quietly_update(&self) {
        self.updates.send_if_modified(|j| {
            j.clone_from(&self.job);
            false
        });
    }

    fn on(&self, node: &str) -> bool {
        self.node.as_deref() == Some(node)
    }
}

/// What the sweep wants written for a job it has seen for a whole interval.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Record {
    /// The job and its active entry (never written yet).
    Whole,
    /// The job's RUNNING status.
    Running,
}

/// What one sweep found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sweep {
    /// Queued beyond their queue timeout: (job, node, the timeout).
    pub(crate) expired: Vec<(String, Option<String>, Duration)>,
    /// Running (or asked about) on a node that left: (job, node).
    pub(crate) lost: Vec<(String, String)>,
    /// Nodes this sweep found gone with jobs running on them: those jobs wait for the node.
    pub(crate) awaited: Vec<String>,
    /// Without a node: to be dispatched again.
    pub(crate) pending: Vec<String>,
}

/// What a node's refusal of a job calls for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not this node's job, already there (its events follow), or a late answer to a cancel.
    Nothing,
    /// The node is full or unavailable: the job is pending again and the device's placement
    /// on that node is to go.
    Replace { device: String },
    /// The job ends here with this reason.
    End(ErrorKind, String),
}

#[derive(Default)]
pub(crate) struct JobTable {
    pub(crate) jobs: HashMap<String, Active>,
    /// Nodes that jobs are on but that are not live, since when (see `sweep`).
    missing: HashMap<String, Instant>,
}

impl JobTable {
    /// The job started on `node`: it counts only from the node that holds it.
    /// The job started on `node`: it is running, as the returned job shows.
    pub(crate) fn started(&mut self, node: &str, job_id: &str, worker_id: &str) -> Option<&Job> {
        let a = self.jobs.get_mut(job_id).filter(|a| a.on(node))?;
        record::started(&mut a.job, worker_id);
        a.quietly_update();
        Some(&a.job)
    }

    /// The job ended on `node`: it leaves the table, for the scheduler to finalize.
    pub(crate) fn take_finished(&mut self, node: &str, job_id: &str) -> Option<Active> {
        match self.jobs.get(job_id) {
            Some(a) if a.on(node) => self.jobs.remove(job_id),
            _ => None,
        }
    }

    /// Takes the job off `node` (it refused it or handed it back): pending, and `node` is
    /// excluded. Returns the job's device when it was on that node.
    pub(crate) fn take_off(&mut self, job_id: &str, node: &str) -> Option<String> {
        let a = self.jobs.get_mut(job_id).filter(|a| a.on(node))?;
        a.node = None;
        a.excluded.insert(node.to_string());
        Some(a.request.connection.device.to_string())
    }

    /// Whether `node` holds the job, and if so whether it is only asked about.
    pub(crate) fn held_by(&self, job_id: &str, node: &str) -> Option<bool> {
        self.jobs
            .get(job_id)
            .filter(|a| a.on(node))
            .map(|a| a.resume_only)
    }

    /// `node` refused the job (`JobRejected`).
    pub(crate) fn rejected(&mut self, node: &str, r: &JobRejected) -> Refusal {
        let Some(resume) = self.held_by(&r.job_id, node) else {
            return Refusal::Nothing;
        };
        match r.code() {
            RejectCode::AlreadyExists => Refusal::Nothing,
            RejectCode::ResourceExhausted | RejectCode::Unavailable => {
                match self.take_off(&r.job_id, node) {
                    Some(device) => Refusal::Replace { device },
                    None => Refusal::Nothing,
                }
            }
            RejectCode::NotFound if resume => Refusal::End(
                ErrorKind::NodeLost,
                format!(
                    "node {node} no longer knows the job (its agent restarted while the job \
                     ran); it is not run again"
                ),
            ),
            RejectCode::NotFound => Refusal::Nothing,
            RejectCode::InvalidArgument | RejectCode::Unspecified => Refusal::End(
                ErrorKind::InvalidArgument,
                format!("node {node} refused the job: {}", r.message),
            ),
        }
    }

    /// A session to `node` (re)opened: its jobs are dispatched again; a running one only asked
    /// about, since the agent never runs a job id twice.
    pub(crate) fn resync(&mut self, node: &str) -> Vec<Dispatch> {
        self.jobs
            .iter_mut()
            .filter(|(_, a)| a.on(node))
            .map(|(id, a)| {
                a.resume_only |= a.job.status() == JobStatus::Running;
                let mut d = a.request.to_dispatch(id);
                d.resume_only = a.resume_only;
                d
            })
            .collect()
    }

    /// One sweep at `now` over the live `nodes`. `write` queues what a job seen for a whole
    /// interval needs recorded and says whether it was queued (jobs that end sooner are
    /// written once, final).
    pub(crate) fn sweep(
        &mut self,
        now: Instant,
        nodes: &NodeMap,
        grace: Duration,
        mut write: impl FnMut(&Active, Record) -> bool,
    ) -> Sweep {
        let mut found = Sweep::default();
        self.missing.retain(|n, _| !nodes.contains_key(n));
        for (id, a) in self.jobs.iter_mut() {
            let running = a.job.status() == JobStatus::Running;
            let aged = std::mem::replace(&mut a.swept, true);
            if aged && !a.recorded {
                a.recorded = write(a, Record::Whole);
                a.running_recorded = a.recorded && running;
            } else if aged && running && !a.running_recorded {
                a.running_recorded = write(a, Record::Running);
            }
            if !running && now >= a.queue_deadline {
                found
                    .expired
                    .push((id.clone(), a.node.clone(), a.request.options.queue_timeout));
                continue;
            }
            match &a.node {
                Some(n) if !nodes.contains_key(n) => {
                    if running || a.resume_only {
                        // A lease that lapsed for a moment: the agent keeps running the job
                        // and, registered again, reports it when the session reopens.
                        let since = *self.missing.entry(n.clone()).or_insert_with(|| {
                            found.awaited.push(n.clone());
                            now
                        });
                        if now.duration_since(since) >= grace {
                            found.lost.push((id.clone(), n.clone()));
                        }
                    } else {
                        a.excluded.insert(n.clone());
                        a.node = None;
                        found.pending.push(id.clone());
                    }
                }
                None if !a.dispatching => found.pending.push(id.clone()),
                _ => {}
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpulse_model::RequestLimits;
    use netpulse_proto::api;
    use netpulse_proto::records::NodeRecord;

    fn request(host: &str) -> (JobRequest, ExecuteRequest) {
        let wire = api::ExecuteRequest {
            connection: Some(api::Connection {
                host: host.into(),
                username: "admin".into(),
                password: "pw".into(),
                device_type: "cisco_ios".into(),
                ..Default::default()
            }),
            commands: vec!["show clock".into()],
            queue_timeout_seconds: 5,
            ..Default::default()
        };
        let r = JobRequest::from_wire(wire.clone(), &RequestLimits::default()).unwrap();
        (r, wire)
    }

    fn table(jobs: &[(&str, Option<&str>)], now: Instant) -> JobTable {
        let mut t = JobTable::default();
        for (id, node) in jobs {
            let (r, wire) = request("192.0.2.1");
            let job = record::queued(id, &r, node.unwrap_or(""));
            let deadline = now + r.options.queue_timeout;
            let (a, _) = Active::new(job, r, wire, node.map(String::from), deadline, None);
            t.jobs.insert(id.to_string(), a);
        }
        t
    }

    fn live(ids: &[&str]) -> NodeMap {
        ids.iter()
            .map(|id| {
                let rec = NodeRecord {
                    node_id: id.to_string(),
                    address: String::new(),
                    max_pinned_workers: 1,
                    max_fifo_concurrency: 1,
                    pinned_workers: 0,
                    fifo_running: 0,
                    queued_jobs: 0,
                    idle_pinned_workers: 0,
                    draining: false,
                    version: String::new(),
                    started_unix_ms: 0,
                    lease_id: 1,
                    device_types: vec![],
                };
                (id.to_string(), rec)
            })
            .collect()
    }

    /// No grace: a running job fails at the first sweep that misses its node.
    const GRACE: Duration = Duration::ZERO;

    #[test]
    fn a_running_job_waits_out_the_grace_for_its_node_to_come_back() {
        let now = Instant::now();
        let grace = Duration::from_secs(10);
        let mut t = table(&[("ran", Some("a")), ("back", Some("b"))], now);
        t.started("a", "ran", "w");
        t.started("b", "back", "w");
        let s = t.sweep(now, &live(&[]), grace, |_, _| true);
        assert!(
            s.lost.is_empty() && s.pending.is_empty(),
            "within the grace"
        );
        let mut awaited = s.awaited;
        awaited.sort();
        assert_eq!(awaited, vec!["a".to_string(), "b".to_string()]);
        // b registers again; a stays away past the grace.
        let later = now + grace;
        let s = t.sweep(later, &live(&["b"]), grace, |_, _| true);
        assert_eq!(s.lost, vec![("ran".to_string(), "a".to_string())]);
        // b's absence is forgotten: a later lapse gets a whole grace of its own.
        let s = t.sweep(later + grace, &live(&[]), grace, |_, _| true);
        assert!(s.lost.iter().all(|(id, _)| id != "back"), "{:?}", s.lost);
    }

    #[test]
    fn only_the_node_holding_a_job_moves_it() {
        let mut t = table(&[("j1", Some("a"))], Instant::now());
        t.started("b", "j1", "w-b");
        assert_eq!(t.jobs["j1"].job.status(), JobStatus::Queued, "not b's job");
        t.started("a", "j1", "w-a");
        assert_eq!(t.jobs["j1"].job.status(), JobStatus::Running);
        assert!(t.take_finished("b", "j1").is_none());
        assert_eq!(t.held_by("j1", "a"), Some(false));
        assert!(t.take_finished("a", "j1").is_some());
        assert!(t.jobs.is_empty());
    }

    #[test]
    fn a_job_taken_off_its_node_is_pending_and_that_node_excluded() {
        let mut t = table(&[("j1", Some("a"))], Instant::now());
        assert_eq!(t.take_off("j1", "b"), None, "b does not hold it");
        assert_eq!(t.take_off("j1", "a").as_deref(), Some("192.0.2.1:22"));
        let a = &t.jobs["j1"];
        assert!(a.node.is_none() && a.excluded.contains("a"));
        assert_eq!(t.held_by("j1", "a"), None);
        let s = t.sweep(Instant::now(), &live(&["a", "b"]), GRACE, |_, _| true);
        assert_eq!(s.pending, vec!["j1".to_string()]);
    }

    fn refusal(id: &str, code: RejectCode) -> JobRejected {
        JobRejected {
            job_id: id.into(),
            code: code as i32,
            message: "m".into(),
        }
    }

    #[test]
    fn refusals_replace_end_or_are_ignored_by_what_they_say() {
        let mut t = table(
            &[("j1", Some("a")), ("j2", Some("a")), ("j3", Some("a"))],
            Instant::now(),
        );
        assert_eq!(
            t.rejected("b", &refusal("j1", RejectCode::ResourceExhausted)),
            Refusal::Nothing
        );
        assert_eq!(
            t.rejected("a", &refusal("j1", RejectCode::AlreadyExists)),
            Refusal::Nothing
        );
        assert_eq!(
            t.rejected("a", &refusal("j1", RejectCode::ResourceExhausted)),
            Refusal::Replace {
                device: "192.0.2.1:22".into()
            }
        );
        assert!(t.jobs["j1"].node.is_none() && t.jobs["j1"].excluded.contains("a"));
        assert_eq!(
            t.rejected("a", &refusal("j2", RejectCode::NotFound)),
            Refusal::Nothing,
            "a cancel's answer"
        );
        t.resync("a");
        t.started("a", "j3", "w");
        t.jobs.get_mut("j3").unwrap().resume_only = true;
        assert!(matches!(
            t.rejected("a", &refusal("j3", RejectCode::NotFound)),
            Refusal::End(ErrorKind::NodeLost, _)
        ));
        assert!(matches!(
            t.rejected("a", &refusal("j2", RejectCode::InvalidArgument)),
            Refusal::End(ErrorKind::InvalidArgument, m) if m == "node a refused the job: m"
        ));
    }

    #[test]
    fn a_reopened_session_asks_about_running_jobs_and_redispatches_queued_ones() {
        let mut t = table(
            &[("run", Some("a")), ("wait", Some("a")), ("else", Some("b"))],
            Instant::now(),
        );
        t.started("a", "run", "w");
        let mut d = t.resync("a");
        d.sort_by(|x, y| x.job_id.cmp(&y.job_id));
        let asked: Vec<(&str, bool)> = d
            .iter()
            .map(|d| (d.job_id.as_str(), d.resume_only))
            .collect();
        assert_eq!(asked, vec![("run", true), ("wait", false)]);
        assert_eq!(t.held_by("run", "a"), Some(true));
    }

    #[test]
    fn the_sweep_expires_loses_and_re_places_and_records_only_aged_jobs() {
        let now = Instant::now();
        let mut t = table(
            &[
                ("late", Some("a")),
                ("ran", Some("gone")),
                ("moved", Some("gone")),
                ("fresh", Some("a")),
            ],
            now,
        );
        t.started("gone", "ran", "w");
        t.jobs.get_mut("late").unwrap().queue_deadline = now;
        let mut writes = Vec::new();
        // First sweep: nothing is old enough to write.
        let first = t.sweep(now, &live(&["a"]), GRACE, |a, r| {
            writes.push((a.job.id.clone(), r));
            true
        });
        assert!(writes.is_empty());
        assert_eq!(
            first.expired,
            vec![(
                "late".to_string(),
                Some("a".to_string()),
                Duration::from_secs(5)
            )]
        );
        assert_eq!(first.lost, vec![("ran".to_string(), "gone".to_string())]);
        assert_eq!(first.pending, vec!["moved".to_string()]);
        assert!(t.jobs["moved"].excluded.contains("gone"));
        // The manager ends what was expired and lost; the next sweep writes the aged ones.
        t.jobs.remove("late");
        t.jobs.remove("ran");
        t.started("a", "fresh", "w");
        t.sweep(now, &live(&["a"]), GRACE, |a, r| {
            writes.push((a.job.id.clone(), r));
            true
        });
        writes.sort();
        assert_eq!(
            writes,
            vec![
                ("fresh".to_string(), Record::Whole),
                ("moved".to_string(), Record::Whole)
            ]
        );
        assert!(t.jobs["fresh"].running_recorded && !t.jobs["moved"].running_recorded);
        // Recorded jobs are not written again.
        writes.clear();
        t.sweep(now, &live(&["a"]), GRACE, |a, r| {
            writes.push((a.job.id.clone(), r));
            true
        });
        assert!(writes.is_empty(), "{writes:?}");
    }
}
