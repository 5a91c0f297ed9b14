//! Authentication failure throttling per client IP (SPEC §4): after
//! `limit` failures within `window`, further attempts from that IP are
//! refused until the oldest failure leaves the window. The clock is passed
//! in; memory is bounded by pruning and, at worst, forgetting.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many tracked IPs, expired entries are pruned; if that is not
/// enough, the map is cleared (an attacker with that many addresses gains a
/// fresh window, never unbounded memory).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl AuthThrottle {
    pub fn new(limit: u32, window: Duration) -> AuthThrottle {
        AuthThrottle { limit: limit.max(1), window, failures: Mutex::new(HashMap::new()) }
    }

    fn prune(q: &mut VecDeque<Instant>, window: Duration, now: Instant) {
        while q.front().is_some_and(|&t| now.saturating_duration_since(t) >= window) {
            q.pop_front();
        }
    }

    /// Whether `ip` has used up its failures for now.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = crate::config::canonical_ip(ip);
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&ip) {
            None => false,
            Some(q) => {
                Self::prune(q, self.window, now);
                q.len() as u32 >= self.limit
            }
        }
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let ip = crate::config::canonical_ip(ip);
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, q| {
                Self::prune(q, window, now);
                !q.is_empty()
            });
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let q = map.entry(ip).or_default();
        Self::prune(q, self.window, now);
        q.push_back(now);
        while q.len() as u32 > self.limit {
            q.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_until_window_passes() {
        let t = AuthThrottle::new(5, Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(!t.is_blocked(ip, t0), "attempt {i}");
            t.record_failure(ip, t0 + Duration::from_secs(i));
        }
        assert!(t.is_blocked(ip, t0 + Duration::from_secs(10)));
        assert!(!t.is_blocked(other, t0 + Duration::from_secs(10)));
        assert!(t.is_blocked(ip, t0 + Duration::from_secs(599)));
        assert!(!t.is_blocked(ip, t0 + Duration::from_secs(601)));
    }
}
