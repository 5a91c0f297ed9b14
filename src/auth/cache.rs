//! The cache of successful password checks (what Dovecot calls
//! `auth_cache`): an Argon2id check costs tens of milliseconds of CPU and
//! ~19 MiB on purpose, and a mail client logs in again and again with the
//! same password (IMAP clients open several connections, POP3 polls), so a
//! login that succeeded recently is accepted again without Argon2.
//!
//! Nothing here can give away a password: an entry is an HMAC-SHA256, under
//! a random key made when the process starts and never stored, of the
//! user, the stored Argon2 hash and the password. A check recomputes it with
//! the user's *current* stored hash, so a changed password or a deleted user
//! never matches (and [`VerifiedCache::forget`] drops the entry at once).
//! Only successes are kept; a wrong password makes a different HMAC, misses,
//! and goes through Argon2 and the failure delay as always. Entries live
//! [`TTL`]; at most [`MAX_ENTRIES`] are kept.

use crate::util::LockExt;
use ring::hmac;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a successful check is trusted.
pub const TTL: Duration = Duration::from_secs(3600);
/// Most users remembered at once (one entry each); when full, the expired
/// ones go, and if none has, all do.
pub const MAX_ENTRIES: usize = 10_000;

pub struct VerifiedCache {
    /// `None` if the system gave no randomness: nothing is cached then.
    key: Option<hmac::Key>,
    entries: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
}

struct Entry {
    tag: hmac::Tag,
    at: Instant,
}

impl VerifiedCache {
    pub fn new(ttl: Duration) -> VerifiedCache {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok();
        if key.is_none() {
            tracing::warn!("no randomness for the login cache key: every login is checked with Argon2id");
        }
        VerifiedCache { key, entries: Mutex::new(HashMap::new()), ttl }
    }

    /// The length-prefixed fields, so that no two triples give the same input.
    fn message(user: &str, stored: &str, password: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(user.len() + stored.len() + password.len() + 24);
        for field in [user, stored, password] {
            m.extend_from_slice(&(field.len() as u64).to_be_bytes());
            m.extend_from_slice(field.as_bytes());
        }
        m
    }

    /// Whether `password` succeeded for `user` (an account key) with the
    /// stored hash `stored` within the TTL.
    pub fn check(&self, user: &str, stored: &str, password: &str) -> bool {
        let Some(key) = &self.key else { return false };
        let entries = self.entries.lock_or_recover();
        let Some(e) = entries.get(user) else { return false };
        e.at.elapsed() < self.ttl && hmac::verify(key, &Self::message(user, stored, password), e.tag.as_ref()).is_ok()
    }

    /// Remember that `password` was right for `user` with the stored hash `stored`.
    pub fn remember(&self, user: &str, stored: &str, password: &str) {
        let Some(key) = &self.key else { return };
        let tag = hmac::sign(key, &Self::message(user, stored, password));
        let mut entries = self.entries.lock_or_recover();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(user) {
            let ttl = self.ttl;
            entries.retain(|_, e| e.at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(user.to_string(), Entry { tag, at: Instant::now() });
    }

    /// Drop what is remembered for `user` (password changed, user deleted).
    pub fn forget(&self, user: &str) {
        self.entries.lock_or_recover().remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_password_and_stored_hash_match_within_the_ttl() {
        let c = VerifiedCache::new(TTL);
        assert!(!c.check("a@x.test", "$h1", "pw"), "nothing remembered yet");
        c.remember("a@x.test", "$h1", "pw");
        assert!(c.check("a@x.test", "$h1", "pw"));
        assert!(!c.check("a@x.test", "$h1", "pw2"), "another password");
        assert!(!c.check("a@x.test", "$h2", "pw"), "the stored hash changed");
        assert!(!c.check("b@x.test", "$h1", "pw"), "another user");
        c.forget("a@x.test");
        assert!(!c.check("a@x.test", "$h1", "pw"));
        let expired = VerifiedCache::new(Duration::ZERO);
        expired.remember("a@x.test", "$h1", "pw");
        assert!(!expired.check("a@x.test", "$h1", "pw"), "past the TTL");
    }
}
