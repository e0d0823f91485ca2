//! How many workers may log in at once and how fast: the node's limit on logins in progress,
//! its logins per second, and tighter rates for groups of devices by address prefix (the
//! devices behind one AAA server or jump host), so that a bulk over thousands of devices
//! reaches them at a pace and not all in the same second.
//!
//! A device that wants to log in reserves the next free instant of its paces at once (and
//! keeps it while it waits), so each waiter wakes once, at its own time, whatever the number
//! waiting. When its instant comes, the start itself is checked against the starts of the
//! last second (`admit`): a stall that delayed several reserved starts cannot let them
//! through together, so no second ever holds more logins than the rate.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A rate for the devices whose address is in `net/prefix`.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupLimit {
    pub net: IpAddr,
    pub prefix: u8,
    pub per_second: f64,
}

impl std::str::FromStr for GroupLimit {
    type Err = String;

    /// `10.20.0.0/16=5`: at most 5 logins per second to devices in 10.20.0.0/16.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("a login limit is CIDR=LOGINS_PER_SECOND, e.g. 10.20.0.0/16=5, got {s:?}");
        let (cidr, rate) = s.split_once('=').ok_or_else(bad)?;
        let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let net: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let per_second: f64 = rate.trim().parse().map_err(|_| bad())?;
        if prefix > max || !(per_second > 0.0 && per_second <= 10_000.0) {
            return Err(format!(
                "{s:?}: the prefix must be 0..={max} and the rate 0 < r <= 10000 logins per second"
            ));
        }
        Ok(GroupLimit {
            net,
            prefix,
            per_second,
        })
    }
}

impl GroupLimit {
    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u32) {
            match a {
                IpAddr::V4(v) => (u32::from(v) as u128, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, len), (addr, alen)) = (bits(self.net), bits(ip));
        if len != alen {
            return false;
        }
        let shift = len - self.prefix as u32;
        shift >= len || (net >> shift) == (addr >> shift)
    }
}

/// One rate: the instant the next login may start, and the starts of the last window.
#[derive(Debug)]
struct Pace {
    interval: Duration,
    next: Mutex<Instant>,
    /// At most `per_window` starts in any `window` (`per_window / window` is the rate).
    per_window: usize,
    window: Duration,
    starts: Mutex<VecDeque<Instant>>,
}

impl Pace {
    fn new(per_second: f64) -> Pace {
        let per_window = (per_second.floor() as usize).max(1);
        Pace {
            interval: if per_second > 0.0 {
                Duration::from_secs_f64(1.0 / per_second)
            } else {
                Duration::ZERO
            },
            next: Mutex::new(Instant::now()),
            per_window,
            window: if per_second > 0.0 {
                Duration::from_secs_f64(per_window as f64 / per_second)
            } else {
                Duration::ZERO
            },
            starts: Mutex::new(VecDeque::with_capacity(per_window)),
        }
    }

    /// When a start would keep the window's count (now, when it is `<= now`).
    fn free_at(&self, starts: &VecDeque<Instant>, now: Instant) -> Instant {
        match starts.front() {
            Some(oldest) if starts.len() >= self.per_window => (*oldest + self.window).max(now),
            _ => now,
        }
    }
}

#[derive(Debug)]
pub struct LoginGate {
    /// Logins in progress: a place is held from a worker's start to its first prompt.
    pub in_progress: Arc<Semaphore>,
    node: Pace,
    groups: Vec<(GroupLimit, Pace)>,
}

impl LoginGate {
    /// `per_second` 0: no node-wide rate.
    pub fn new(max_concurrent: usize, per_second: f64, groups: &[GroupLimit]) -> LoginGate {
        LoginGate {
            in_progress: Arc::new(Semaphore::new(max_concurrent.max(1))),
            node: Pace::new(per_second),
            groups: groups
                .iter()
                .map(|g| (g.clone(), Pace::new(g.per_second)))
                .collect(),
        }
    }

    /// Reserves the instant `host` may start its login: the first free one of the node's pace
    /// and of the first group that holds the address (a host name belongs to no group).
    pub fn reserve(&self, host: &str) -> Instant {
        let paces = self.paces(host);
        let now = Instant::now();
        let mut guards: Vec<_> = paces
            .iter()
            .map(|p| p.next.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let at = guards.iter().map(|g| **g).fold(now, Instant::max);
        for (g, p) in guards.iter_mut().zip(&paces) {
            **g = at + p.interval;
        }
        at
    }

    /// Starts a login of `host` now if no pace's window is full; else the instant to retry.
    pub fn admit(&self, host: &str) -> Result<(), Instant> {
        let paces = self.paces(host);
        let now = Instant::now();
        let mut logs: Vec<_> = paces
            .iter()
            .map(|p| p.starts.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        for (log, p) in logs.iter_mut().zip(&paces) {
            while log.front().is_some_and(|t| *t + p.window <= now) {
                log.pop_front();
            }
        }
        let free = logs
            .iter()
            .zip(&paces)
            .map(|(log, p)| p.free_at(log, now))
            .fold(now, Instant::max);
        if free > now {
            return Err(free);
        }
        for log in logs.iter_mut() {
            log.push_back(now);
        }
        Ok(())
    }

    /// Waits for `host`'s turn and starts its login (for a caller that can wait in one go).
    pub async fn turn(&self, host: &str) {
        let mut at = self.reserve(host);
        loop {
            tokio::time::sleep_until(at).await;
            match self.admit(host) {
                Ok(()) => return,
                Err(retry) => at = retry,
            }
        }
    }

    /// The node's pace and the first group's that holds the address, those with a rate.
    fn paces(&self, host: &str) -> Vec<&Pace> {
        let ip: Option<IpAddr> = host.parse().ok();
        let group = ip.and_then(|ip| self.groups.iter().find(|(g, _)| g.contains(ip)));
        std::iter::once(&self.node)
            .chain(group.map(|(_, p)| p))
            .filter(|p| !p.interval.is_zero())
            .collect()
    }
}

/// The host of a device key (`host:port`, `[v6]:port`).
pub fn key_host(key: &str) -> &str {
    let host = key.rsplit_once(':').map_or(key, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_limits_parse_and_say_what_is_allowed() {
        let g: GroupLimit = "10.20.0.0/16=5".parse().unwrap();
        assert!(g.contains("10.20.3.4".parse().unwrap()));
        assert!(!g.contains("10.21.0.1".parse().unwrap()));
        assert!(!g.contains("::1".parse().unwrap()));
        let all: GroupLimit = "0.0.0.0/0=1".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        for bad in [
            "10.0.0.0=5",
            "10.0.0.0/33=5",
            "10.0.0.0/8=0",
            "x/8=1",
            "10.0.0.0/8",
        ] {
            let e = bad.parse::<GroupLimit>().unwrap_err();
            assert!(
                e.contains("CIDR=LOGINS_PER_SECOND") || e.contains("prefix must be"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_device_keys_host() {
        assert_eq!(key_host("192.0.2.1:22"), "192.0.2.1");
        assert_eq!(key_host("[2001:db8::1]:830"), "2001:db8::1");
    }

    #[tokio::test(start_paused = true)]
    async fn logins_are_paced_by_the_node_and_more_tightly_by_a_group() {
        let gate = LoginGate::new(64, 10.0, &["192.0.2.0/24=2".parse().unwrap()]);
        let t0 = Instant::now();
        // Ten devices outside the group: 100 ms apart.
        let outside: Vec<Duration> = (0..10)
            .map(|i| gate.reserve(&format!("198.51.100.{i}")) - t0)
            .collect();
        assert_eq!(outside[0], Duration::ZERO);
        assert_eq!(outside[9], Duration::from_millis(900));
        // Inside the group: 500 ms apart, after the node's next free instant.
        let inside: Vec<Duration> = (0..3)
            .map(|i| gate.reserve(&format!("192.0.2.{i}")) - t0)
            .collect();
        assert_eq!(inside, [1000, 1500, 2000].map(Duration::from_millis));
        // A host name belongs to no group: only the node's pace.
        assert_eq!(
            gate.reserve("router.example") - t0,
            Duration::from_millis(2100)
        );
        // Starts that a stall bunched up are held to the window: 10 per second.
        let gate = LoginGate::new(64, 10.0, &[]);
        for _ in 0..10 {
            gate.admit("192.0.2.1").unwrap();
        }
        let retry = gate.admit("192.0.2.1").unwrap_err();
        assert_eq!(retry - Instant::now(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        gate.admit("192.0.2.1").unwrap();
        // No rate at all: every reservation is now.
        let free = LoginGate::new(1, 0.0, &[]);
        assert_eq!(free.reserve("192.0.2.1"), free.reserve("192.0.2.1"));
    }
}
