//! Queue ids: 11 characters of Crockford base32 over a microsecond clock
//! that never repeats and never runs backwards within a process, and starts
//! past the newest id already stored. Short, unique, and sortable by
//! arrival as plain strings.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
pub const ID_LEN: usize = 11;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct QueueId(String);

impl QueueId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accept an id typed by an operator (case-insensitive).
    pub fn parse(s: &str) -> Option<QueueId> {
        let up = s.trim().to_ascii_uppercase();
        (up.len() == ID_LEN && up.bytes().all(|b| ALPHABET.contains(&b))).then_some(QueueId(up))
    }

    pub fn micros(&self) -> u64 {
        self.0.bytes().fold(0u64, |acc, b| {
            let v = ALPHABET.iter().position(|&a| a == b).unwrap_or(0) as u64;
            (acc << 5) | v
        })
    }

    pub fn from_micros(v: u64) -> QueueId {
        let mut s = [0u8; ID_LEN];
        for (i, c) in s.iter_mut().enumerate() {
            let shift = 5 * (ID_LEN - 1 - i);
            *c = ALPHABET[((v >> shift) & 31) as usize];
        }
        QueueId(String::from_utf8_lossy(&s).into_owned())
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default)]
pub struct IdAllocator {
    last: AtomicU64,
}

impl IdAllocator {
    /// Continue after `newest` (the largest id in the store), if any.
    pub fn starting_after(newest: Option<&QueueId>) -> IdAllocator {
        IdAllocator { last: AtomicU64::new(newest.map(QueueId::micros).unwrap_or(0)) }
    }

    pub fn next(&self) -> QueueId {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let v = now.max(prev + 1);
            match self.last.compare_exchange_weak(prev, v, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return QueueId::from_micros(v),
                Err(p) => prev = p,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_sorted_and_round_trip() {
        let a = IdAllocator::default();
        let ids: Vec<QueueId> = (0..10_000).map(|_| a.next()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
        }
        let id = &ids[0];
        assert_eq!(id.as_str().len(), ID_LEN);
        assert_eq!(QueueId::from_micros(id.micros()), *id);
        assert_eq!(QueueId::parse(&id.as_str().to_lowercase()), Some(id.clone()));
        assert_eq!(QueueId::parse("not-an-id"), None);
        let later = IdAllocator::starting_after(Some(&QueueId::from_micros(u64::MAX >> 10)));
        assert!(later.next() > *id);
    }
}
