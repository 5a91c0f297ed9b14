//! Authentication failure throttling per client (SPEC §4): at most `limit`
//! attempts from one client are judged within `window`; the rest get
//! `454 4.7.0` until the oldest failure leaves the window.
//!
//! A client is an IPv4 address, or an IPv6 /64 (one subscriber's usual
//! allocation; per /128 an attacker would have 2^64 fresh counters).
//! IPv4-mapped IPv6 counts as the IPv4 address.
//!
//! An attempt reserves its slot when it starts ([`AuthThrottle::begin`]),
//! not when it fails: attempts still in flight count against the limit, so
//! sessions opened in parallel cannot all pass the check before any of
//! them has failed. The [`Attempt`] ends as a failure (the slot stays used
//! for the window), or as a success or an abandoned exchange (the slot is
//! given back, also when the session just goes away).
//!
//! Memory is bounded: at most [`MAX_TRACKED`] clients are tracked; a new
//! one pushes out the least recently active (amortised O(1) through a
//! queue of touches with lazy deletion). The clock is passed in.

use crate::util::LockExt;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many clients are tracked at once.
pub const MAX_TRACKED: usize = 100_000;

/// What failures are counted by: an IPv4 address or an IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match crate::config::canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// Failures within the window, oldest first; never more than `limit`.
    failures: VecDeque<Instant>,
    /// Attempts started and not finished yet.
    in_flight: u32,
    /// The entry's latest record in `Table::touched`.
    stamp: u64,
}

#[derive(Debug)]
struct Table {
    limit: u32,
    window: Duration,
    capacity: usize,
    entries: HashMap<IpAddr, Entry>,
    /// Every touch of an entry, oldest first. A record whose stamp is not
    /// the entry's current one is stale and skipped (lazy deletion).
    touched: VecDeque<(IpAddr, u64)>,
    next_stamp: u64,
}

impl Table {
    fn prune(&mut self, key: IpAddr, now: Instant) {
        let window = self.window;
        if let Some(e) = self.entries.get_mut(&key) {
            while e.failures.front().is_some_and(|&t| now.saturating_duration_since(t) >= window) {
                e.failures.pop_front();
            }
        }
    }

    /// Attempts that count against the limit right now.
    fn used(&mut self, key: IpAddr, now: Instant) -> u32 {
        self.prune(key, now);
        self.entries.get(&key).map_or(0, |e| e.failures.len() as u32 + e.in_flight)
    }

    /// The entry for `key`, made the most recently active; a new entry
    /// first makes room by pushing out the least recently active one.
    fn touch(&mut self, key: IpAddr) -> &mut Entry {
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.capacity {
                let Some((old, stamp)) = self.touched.pop_front() else { break };
                if self.entries.get(&old).is_some_and(|e| e.stamp == stamp) {
                    self.entries.remove(&old);
                }
            }
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.entries.entry(key).or_default().stamp = stamp;
        self.touched.push_back((key, stamp));
        // Drop stale records once they are the majority: each costs one
        // push, so this stays amortised O(1) and `touched` O(entries).
        if self.touched.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.touched.retain(|(k, s)| entries.get(k).is_some_and(|e| e.stamp == *s));
        }
        self.entries.entry(key).or_default()
    }

    /// Forget an entry that holds nothing any more.
    fn drop_if_idle(&mut self, key: IpAddr) {
        if self.entries.get(&key).is_some_and(|e| e.in_flight == 0 && e.failures.is_empty()) {
            self.entries.remove(&key);
        }
    }
}

/// The throttle shared by every protocol's login. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct AuthThrottle {
    table: Arc<Mutex<Table>>,
}

impl AuthThrottle {
    pub fn new(limit: u32, window: Duration) -> AuthThrottle {
        let table = Table {
            limit: limit.max(1),
            window,
            capacity: MAX_TRACKED,
            entries: HashMap::new(),
            touched: VecDeque::new(),
            next_stamp: 0,
        };
        AuthThrottle { table: Arc::new(Mutex::new(table)) }
    }

    /// Start an attempt from `ip`: `None` when its failures and the
    /// attempts it has in flight already reach the limit.
    pub fn begin(&self, ip: IpAddr, now: Instant) -> Option<Attempt> {
        let key = client_key(ip);
        let mut t = self.table.lock_or_recover();
        if t.used(key, now) >= t.limit {
            return None;
        }
        t.touch(key).in_flight += 1;
        Some(Attempt { table: self.table.clone(), key, open: true })
    }

    /// Whether an attempt from `ip` would be refused now.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let key = client_key(ip);
        let mut t = self.table.lock_or_recover();
        let blocked = t.used(key, now) >= t.limit;
        t.drop_if_idle(key);
        blocked
    }

    /// Clients tracked right now.
    pub fn tracked(&self) -> usize {
        self.table.lock_or_recover().entries.len()
    }
}

/// One authentication attempt holding its slot. Dropping it without
/// [`Attempt::failed`] gives the slot back.
#[derive(Debug)]
pub struct Attempt {
    table: Arc<Mutex<Table>>,
    key: IpAddr,
    open: bool,
}

impl Attempt {
    /// The credentials were wrong or the exchange made no sense: the slot
    /// stays used, as a failure, for the window.
    pub fn failed(mut self, now: Instant) {
        self.open = false;
        let mut t = self.table.lock_or_recover();
        t.prune(self.key, now);
        let limit = t.limit as usize;
        let e = t.touch(self.key);
        // the entry may have been pushed out meanwhile: then it starts afresh
        e.in_flight = e.in_flight.saturating_sub(1);
        e.failures.push_back(now);
        while e.failures.len() > limit {
            e.failures.pop_front();
        }
    }

    /// Logged in: the slot is given back.
    pub fn succeeded(self) {}
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let mut t = self.table.lock_or_recover();
        if let Some(e) = t.entries.get_mut(&self.key) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
        t.drop_if_idle(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attempt from `ip` that fails at `now`.
    fn fail(t: &AuthThrottle, ip: IpAddr, now: Instant) {
        t.begin(ip, now).expect("not throttled").failed(now);
    }

    #[test]
    fn blocks_after_limit_until_window_passes() {
        let t = AuthThrottle::new(5, Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(!t.is_blocked(ip, t0), "attempt {i}");
            fail(&t, ip, t0 + Duration::from_secs(i));
        }
        assert!(t.is_blocked(ip, t0 + Duration::from_secs(10)));
        assert!(t.begin(ip, t0 + Duration::from_secs(10)).is_none());
        assert!(!t.is_blocked(other, t0 + Duration::from_secs(10)));
        assert!(t.is_blocked(ip, t0 + Duration::from_secs(599)));
        assert!(!t.is_blocked(ip, t0 + Duration::from_secs(601)));
    }

    #[test]
    fn ipv6_counts_per_64_ipv4_per_address() {
        let t = AuthThrottle::new(2, Duration::from_secs(600));
        let t0 = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // two addresses of one /64 share a counter
        fail(&t, ip("2001:db8:1:2::1"), t0);
        fail(&t, ip("2001:db8:1:2:ffff:ffff:ffff:fffe"), t0);
        assert!(t.is_blocked(ip("2001:db8:1:2:abcd::9"), t0));
        assert!(!t.is_blocked(ip("2001:db8:1:3::1"), t0), "the next /64 is someone else");
        // IPv4 stays per address; the mapped form is the same address
        fail(&t, ip("192.0.2.1"), t0);
        fail(&t, ip("::ffff:192.0.2.1"), t0);
        assert!(t.is_blocked(ip("192.0.2.1"), t0));
        assert!(t.is_blocked(ip("::ffff:192.0.2.1"), t0));
        assert!(!t.is_blocked(ip("192.0.2.2"), t0));
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_failed_only() {
        let t = AuthThrottle::new(1, Duration::from_secs(600));
        let t0 = Instant::now();
        let v4 = |i: usize| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
        for i in 0..MAX_TRACKED {
            fail(&t, v4(i), t0 + Duration::from_millis(i as u64 / 1000));
        }
        // the table is full, every entry within its window: one more address
        // pushes out the oldest, and only it
        let later = t0 + Duration::from_secs(200);
        fail(&t, v4(MAX_TRACKED), later);
        assert!(!t.is_blocked(v4(0), later), "the oldest entry makes room");
        for i in [1, 2, MAX_TRACKED / 2, MAX_TRACKED - 1, MAX_TRACKED] {
            assert!(t.is_blocked(v4(i), later), "entry {i} was forgotten");
        }
        // and however many clients come, the table stays at its bound
        for i in 0..10_000 {
            fail(&t, v4(2 * MAX_TRACKED + i), later);
        }
        assert_eq!(t.tracked(), MAX_TRACKED);
        assert!(t.is_blocked(v4(2 * MAX_TRACKED + 9_999), later));
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let t = AuthThrottle::new(3, Duration::from_secs(600));
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        let t0 = Instant::now();
        // three sessions start at once: the fourth is refused before any fails
        let mut started: Vec<Attempt> = (0..3).map(|_| t.begin(ip, t0).expect("under the limit")).collect();
        assert!(t.begin(ip, t0).is_none(), "three attempts in flight use up a limit of three");
        // a success gives its slot back, and so does an abandoned exchange
        started.pop().unwrap().succeeded();
        let abandoned = t.begin(ip, t0).expect("the success freed a slot");
        assert!(t.begin(ip, t0).is_none());
        drop(abandoned);
        started.push(t.begin(ip, t0).expect("the abandoned attempt freed a slot"));
        // failures keep their slots for the window
        for a in started {
            a.failed(t0);
        }
        assert!(t.begin(ip, t0 + Duration::from_secs(599)).is_none());
        assert!(t.begin(ip, t0 + Duration::from_secs(600)).is_some());
        // nothing is kept for a client that only ever succeeded
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        t.begin(other, t0).unwrap().succeeded();
        assert_eq!(t.tracked(), 0);
    }
}
