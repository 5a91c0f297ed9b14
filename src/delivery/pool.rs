//! Idle outbound sessions kept for reuse (SPEC §7: "a session is reused for
//! further messages to the same next hop"), keyed by connector, host and
//! port, so a session opened under one connector's TLS policy and
//! credentials never carries another connector's mail.
//!
//! The pool only holds sessions; it never talks to a server. A session
//! is taken out while in use (so no two deliveries share one), and the
//! caller probes it before reuse (`Session::probe`). Sessions idle longer than the
//! idle limit, older than the age limit, or beyond the per-key limit are
//! handed back to the caller to close.

use super::session::Session;
use crate::util::LockExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub connector: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolLimits {
    pub max_idle_per_key: usize,
    pub idle_timeout: Duration,
    pub max_age: Duration,
    pub max_messages: u32,
}

#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Session>>>,
    limits: PoolLimits,
}

impl Pool {
    pub fn new(limits: PoolLimits) -> Pool {
        Pool { idle: Mutex::new(HashMap::new()), limits }
    }

    fn fresh(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.idle_since) < self.limits.idle_timeout
            && now.duration_since(s.opened) < self.limits.max_age
            && s.transactions() < self.limits.max_messages
    }

    /// The most recently used idle session for `key`, if any; the second
    /// value holds expired sessions (of any key) for the caller to close.
    pub fn take(&self, key: &PoolKey) -> (Option<Session>, Vec<Session>) {
        let now = Instant::now();
        let mut idle = self.idle.lock_or_recover();
        let expired = self.sweep(&mut idle, now);
        let s = idle.get_mut(key).and_then(Vec::pop);
        (s, expired)
    }

    /// Keep `s` for reuse; returns the sessions to close (`s` itself if it
    /// may not be kept, the oldest if the key is full, expired ones).
    pub fn put(&self, key: PoolKey, mut s: Session) -> Vec<Session> {
        let now = Instant::now();
        s.idle_since = now;
        let mut idle = self.idle.lock_or_recover();
        let mut close = self.sweep(&mut idle, now);
        if !s.is_reusable() || !self.fresh(&s, now) || self.limits.max_idle_per_key == 0 {
            close.push(s);
            return close;
        }
        let list = idle.entry(key).or_default();
        list.push(s);
        while list.len() > self.limits.max_idle_per_key {
            close.push(list.remove(0));
        }
        close
    }

    fn sweep(&self, idle: &mut HashMap<PoolKey, Vec<Session>>, now: Instant) -> Vec<Session> {
        let mut expired = Vec::new();
        for list in idle.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if self.fresh(&list[i], now) {
                    i += 1;
                } else {
                    expired.push(list.remove(i));
                }
            }
        }
        idle.retain(|_, l| !l.is_empty());
        expired
    }

    /// Every idle session, to close at shutdown.
    pub fn drain(&self) -> Vec<Session> {
        let mut idle = self.idle.lock_or_recover();
        idle.drain().flat_map(|(_, l)| l).collect()
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock_or_recover().values().map(Vec::len).sum()
    }

    pub fn has_idle(&self, key: &PoolKey) -> bool {
        self.idle.lock_or_recover().get(key).is_some_and(|l| !l.is_empty())
    }
}
