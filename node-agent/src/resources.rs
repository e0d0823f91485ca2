//! The operating-system limits a node of many workers runs into, checked at start so that a
//! node that cannot hold `--max-pinned-workers` says so at once, not at the thousandth spawn.
//!
//! The agent holds two descriptors per worker (the frame socket and tokio's pidfd), and each
//! worker is one process of one thread. The soft descriptor and process limits are raised to
//! their hard limits; the system-wide pid and thread limits are read from /proc.

use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// Descriptors the agent holds per worker process.
pub const FDS_PER_WORKER: u64 = 2;
/// Descriptors for everything else: listeners, manager sessions, etcd, logs, the runtime.
pub const FDS_RESERVED: u64 = 256;
/// Processes and threads besides the workers (the agent's own, and some room).
pub const TASKS_RESERVED: u64 = 64;

/// What was found and set; logged at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headroom {
    pub nofile: u64,
    pub nproc: u64,
}

/// Raises the soft limits and checks that `pinned` pinned and `fifo` one-shot worker processes
/// fit.
pub fn prepare(pinned: u64, fifo: u64) -> Result<Headroom, String> {
    let workers = pinned + fifo;
    // What to lower --max-pinned-workers to, when `limit` holds `total` workers.
    let pinned_fit = |total: u64| total.saturating_sub(fifo).min(pinned);
    let nofile = raise(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE")?;
    let need = FDS_RESERVED + FDS_PER_WORKER * workers;
    if nofile < need {
        return Err(format!(
            "{workers} workers (max-pinned-workers plus max-fifo-concurrency) need {need} file \
             descriptors ({FDS_PER_WORKER} per worker and {FDS_RESERVED} more), but the hard \
             RLIMIT_NOFILE is {nofile}: raise it (ulimit -Hn, systemd's LimitNOFILE, the \
             container runtime's nofile) or lower --max-pinned-workers to at most {}",
            pinned_fit(fit(nofile, FDS_RESERVED, FDS_PER_WORKER, workers))
        ));
    }
    let nproc = raise(Resource::RLIMIT_NPROC, "RLIMIT_NPROC")?;
    let tasks = TASKS_RESERVED + workers;
    // RLIMIT_NPROC counts every process and thread of the user; root is exempt.
    if nproc < tasks && !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "{workers} workers need {tasks} processes, but the hard RLIMIT_NPROC is {nproc}: \
             raise it (ulimit -Hu, systemd's LimitNPROC, the container's pids limit) or lower \
             --max-pinned-workers to at most {}",
            pinned_fit(fit(nproc, TASKS_RESERVED, 1, workers))
        ));
    }
    for (file, what) in [
        ("/proc/sys/kernel/pid_max", "kernel.pid_max"),
        ("/proc/sys/kernel/threads-max", "kernel.threads-max"),
    ] {
        let Some(max) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        else {
            continue;
        };
        if max < tasks {
            return Err(format!(
                "{workers} workers need {tasks} processes, but {what} is {max}: raise it \
                 (sysctl) or lower --max-pinned-workers to at most {}",
                pinned_fit(fit(max, TASKS_RESERVED, 1, workers))
            ));
        }
    }
    Ok(Headroom { nofile, nproc })
}

/// The soft limit raised to the hard one; returns it (u64::MAX for unlimited).
fn raise(r: Resource, name: &str) -> Result<u64, String> {
    let (soft, hard) = getrlimit(r).map_err(|e| format!("reading {name}: {e}"))?;
    if soft != hard {
        setrlimit(r, hard, hard)
            .map_err(|e| format!("raising the soft {name} from {soft} to {hard}: {e}"))?;
    }
    Ok(if hard == RLIM_INFINITY {
        u64::MAX
    } else {
        hard
    })
}

/// How many workers fit in `limit`, never more than asked for.
fn fit(limit: u64, reserved: u64, each: u64, asked: u64) -> u64 {
    (limit.saturating_sub(reserved) / each).min(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_and_what_fits_is_computed() {
        let h = prepare(1, 1).expect("two workers fit anywhere");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
        assert_eq!(
            h.nofile,
            if hard == RLIM_INFINITY {
                u64::MAX
            } else {
                hard
            }
        );
        assert_eq!(fit(20_000, 256, 2, 100_000), 9_872);
        assert_eq!(fit(100, 256, 2, 10), 0);
        assert_eq!(fit(u64::MAX, 256, 2, 10), 10);
    }
}
