//! The listings of folders in memory: per folder the UIDVALIDITY, UIDNEXT,
//! HIGHESTMODSEQ and every message's UID, size, date, flags and MODSEQ, as
//! a [`Snapshot`] that every session of the user shares (an `Arc`; a
//! session copies it only when it changes its own view). Reading a folder's
//! listing from sled decodes one JSON record per message (0.37 s for
//! 100,000 messages); from here it is a lookup.
//!
//! sled stays the truth. A listing is loaded from the index on first use,
//! under the user's writer lock, so no write slips in between the read and
//! the insert; every write of the store edits the cached listing under the
//! same lock, after its index batch is applied, and before it notifies the
//! sessions; a write that fails forgets the folder's listing, and the next
//! read loads it again. Nothing here is durable: after a restart the
//! listings are read from the reconciled index. The least recently used
//! listings are dropped when more than [`MAX_CACHED_MESSAGES`] messages are
//! held, so memory stays bounded however many folders are read.

use super::MessageInfo;
use crate::util::LockExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The most messages all cached listings hold together (about 60 bytes
/// each, plus their keywords).
pub const MAX_CACHED_MESSAGES: usize = 2_000_000;

/// A folder's listing at one moment, shared: cloning it copies no message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub uidvalidity: u32,
    /// Greater than every UID listed.
    pub uidnext: u32,
    /// At least the MODSEQ of every message listed (RFC 7162).
    pub highestmodseq: u64,
    /// Ascending by UID.
    pub messages: Arc<Vec<MessageInfo>>,
}

/// The folder's numbers a write leaves in its record.
#[derive(Clone, Copy, Debug)]
pub struct Numbers {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
}

#[derive(Default)]
pub struct Listings {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(String, u32), Entry>,
    /// Messages held by all listings.
    total: usize,
    clock: u64,
}

struct Entry {
    snap: Snapshot,
    used: u64,
}

impl Listings {
    /// The cached listing of folder `fid` of `user`, if there is one.
    pub fn get(&self, user: &str, fid: u32) -> Option<Snapshot> {
        let mut inner = self.inner.lock_or_recover();
        inner.clock += 1;
        let now = inner.clock;
        let e = inner.map.get_mut(&(user.to_string(), fid))?;
        e.used = now;
        Some(e.snap.clone())
    }

    /// Keep a listing just read from the index (hold the user's writer lock).
    pub fn put(&self, user: &str, fid: u32, snap: Snapshot) {
        let mut inner = self.inner.lock_or_recover();
        inner.clock += 1;
        let used = inner.clock;
        inner.total += snap.messages.len();
        if let Some(old) = inner.map.insert((user.to_string(), fid), Entry { snap, used }) {
            inner.total -= old.snap.messages.len();
        }
        inner.evict(MAX_CACHED_MESSAGES);
    }

    /// Apply a write to the cached listing, if any (hold the user's writer
    /// lock, and call it only once the write is in the index): `numbers`
    /// from the folder's record, `edit` on its messages. The messages are
    /// copied first if a session still shares them.
    pub fn edit(&self, user: &str, fid: u32, numbers: Numbers, edit: impl FnOnce(&mut Vec<MessageInfo>)) {
        let mut inner = self.inner.lock_or_recover();
        let Some(e) = inner.map.get_mut(&(user.to_string(), fid)) else { return };
        let before = e.snap.messages.len();
        e.snap.uidvalidity = numbers.uidvalidity;
        e.snap.uidnext = numbers.uidnext;
        e.snap.highestmodseq = numbers.highestmodseq;
        let messages = Arc::make_mut(&mut e.snap.messages);
        edit(messages);
        let after = messages.len();
        inner.total = inner.total + after - before;
        inner.evict(MAX_CACHED_MESSAGES);
    }

    /// Drop a folder's listing: it is gone, or a write failed part-way and
    /// the index is the one to ask.
    pub fn forget(&self, user: &str, fid: u32) {
        let mut inner = self.inner.lock_or_recover();
        if let Some(old) = inner.map.remove(&(user.to_string(), fid)) {
            inner.total -= old.snap.messages.len();
        }
    }
}

impl Inner {
    /// Drop the least recently used listings until at most `max` messages
    /// are held (the one just used stays, however large).
    fn evict(&mut self, max: usize) {
        while self.total > max && self.map.len() > 1 {
            let Some(oldest) = self.map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else { return };
            if let Some(old) = self.map.remove(&oldest) {
                self.total -= old.snap.messages.len();
            }
        }
    }
}

/// Put `m` in its place by UID (replacing one with the same UID).
pub fn insert_sorted(messages: &mut Vec<MessageInfo>, m: MessageInfo) {
    match messages.binary_search_by_key(&m.uid, |x| x.uid) {
        Ok(i) => messages[i] = m,
        Err(i) => messages.insert(i, m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(n: u32) -> Snapshot {
        let messages = (1..=n)
            .map(|uid| MessageInfo { uid, size: 1, internal_date: 0, flags: Default::default(), modseq: 1 })
            .collect();
        Snapshot { uidvalidity: 1, uidnext: n + 1, highestmodseq: 1, messages: Arc::new(messages) }
    }

    #[test]
    fn least_recently_used_listings_go_first() {
        let c = Listings::default();
        c.put("a", 1, snap(3));
        c.put("a", 2, snap(3));
        assert!(c.get("a", 1).is_some());
        let mut inner = c.inner.lock_or_recover();
        inner.evict(4);
        assert!(inner.map.contains_key(&("a".to_string(), 1)) && inner.map.len() == 1, "folder 2 was older");
        assert_eq!(inner.total, 3);
    }

    #[test]
    fn an_edit_copies_what_a_session_shares() {
        let c = Listings::default();
        c.put("a", 1, snap(2));
        let held = c.get("a", 1).unwrap();
        let numbers = Numbers { uidvalidity: 1, uidnext: 4, highestmodseq: 2 };
        c.edit("a", 1, numbers, |m| insert_sorted(m, MessageInfo { uid: 3, ..m[0].clone() }));
        assert_eq!(held.messages.len(), 2, "the session's snapshot does not change under it");
        assert_eq!(c.get("a", 1).unwrap().messages.len(), 3);
        c.forget("a", 1);
        assert!(c.get("a", 1).is_none());
        assert_eq!(c.inner.lock_or_recover().total, 0);
    }
}
