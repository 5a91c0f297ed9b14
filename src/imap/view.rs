//! The selected mailbox as one session sees it (RFC 3501 §2.3.1, §7.4.1):
//! its messages in sequence-number order, which of them are `\Recent` to
//! this session, and the news from the store not yet told: messages that
//! arrived (`* n EXISTS`), flags changed by others (`* n FETCH (FLAGS ..)`)
//! and messages expunged by others (`* n EXPUNGE`). Expunges are held back
//! while a FETCH, STORE or SEARCH is answered (RFC 3501 §7.4.1: the
//! sequence numbers the client holds must not shift under it), so the view
//! keeps an expunged message, numbered, until it may say so.
//!
//! `\Recent` (RFC 3501 §2.3.2) is shared by every session of this process
//! through [`RecentBook`]: per folder (and UIDVALIDITY) the highest UID any
//! session has selected read-write; a session sees as recent the messages
//! above it when it selected, and the ones that arrive while it has the
//! folder selected that no other session claimed first. In memory only:
//! after a restart every message is old.

use crate::mailbox::{Flags, MessageInfo, Snapshot};
use crate::proto::imap::response::{self, FetchItem};
use crate::proto::imap::types::SequenceSet;
use crate::util::LockExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The highest UID claimed per (user, folder, UIDVALIDITY), shared by the
/// sessions of one service.
#[derive(Clone, Default)]
pub struct RecentBook(Arc<Mutex<HashMap<FolderKey, u32>>>);

/// A folder as the book knows it: user, name, UIDVALIDITY.
type FolderKey = (String, String, u32);

impl RecentBook {
    /// Claim every UID up to `upto`: returns the highest claimed before.
    fn claim(&self, key: &FolderKey, upto: u32) -> u32 {
        let mut book = self.0.lock_or_recover();
        let seen = book.entry(key.clone()).or_insert(0);
        let before = *seen;
        *seen = before.max(upto);
        before
    }

    /// The highest UID of the folder any session has claimed (STATUS RECENT
    /// counts the messages above it).
    pub fn claimed(&self, user: &str, folder: &str, uidvalidity: u32) -> u32 {
        self.peek(&(user.to_string(), folder.to_string(), uidvalidity))
    }

    fn peek(&self, key: &FolderKey) -> u32 {
        self.0.lock_or_recover().get(key).copied().unwrap_or(0)
    }
}

pub struct View {
    pub folder: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub read_only: bool,
    /// In sequence order (ascending UID), expunged ones not yet told
    /// included. Shared with the store's listing and the other sessions
    /// while it is the same; copied when this view departs from it.
    pub messages: Arc<Vec<MessageInfo>>,
    /// UIDs recent to this session, ascending (a vector: the first
    /// selection of a large folder makes every message recent).
    pub recent: Vec<u32>,
    /// UIDs expunged by others, not yet told.
    expunged: HashSet<u32>,
    key: FolderKey,
    book: RecentBook,
}

impl View {
    /// A freshly selected folder; read-write selection claims its new messages as recent.
    pub fn new(user: &str, folder: &str, listing: Snapshot, read_only: bool, book: &RecentBook) -> View {
        let key = (user.to_string(), folder.to_string(), listing.uidvalidity);
        let last = listing.messages.last().map_or(0, |m| m.uid);
        let before = if read_only { book.peek(&key) } else { book.claim(&key, last) };
        let recent = listing.messages.iter().filter(|m| m.uid > before).map(|m| m.uid).collect();
        View {
            folder: folder.to_string(),
            uidvalidity: listing.uidvalidity,
            uidnext: listing.uidnext,
            highestmodseq: listing.highestmodseq,
            read_only,
            messages: listing.messages,
            recent,
            expunged: HashSet::new(),
            key,
            book: book.clone(),
        }
    }

    pub fn exists(&self) -> u32 {
        self.messages.len() as u32
    }

    /// The sequence number of `uid`, if the view has it.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok().map(|i| i as u32 + 1)
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.binary_search(&uid).is_ok()
    }

    pub fn is_expunged(&self, uid: u32) -> bool {
        self.expunged.contains(&uid)
    }

    /// The indices a sequence set (or a UID set) names, ascending, no repeats.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        let n = self.messages.len();
        if n == 0 {
            return Vec::new();
        }
        let mut picked = vec![false; n];
        if uid {
            let largest = self.messages[n - 1].uid;
            for r in &set.0 {
                let (lo, hi) = r.resolve(largest);
                let start = self.messages.partition_point(|m| m.uid < lo);
                let end = self.messages.partition_point(|m| m.uid <= hi);
                picked[start..end.max(start)].iter_mut().for_each(|p| *p = true);
            }
        } else {
            for r in &set.0 {
                let (lo, hi) = r.resolve(n as u32);
                let lo = (lo.max(1) as usize).min(n + 1);
                let hi = (hi as usize).min(n);
                if lo <= hi {
                    picked[lo - 1..hi].iter_mut().for_each(|p| *p = true);
                }
            }
        }
        picked.iter().enumerate().filter(|(_, p)| **p).map(|(i, _)| i).collect()
    }

    /// Whether a sequence-number set names a number past the end (RFC 3501
    /// §9: an invalid sequence number is an error; `*` on an empty mailbox too).
    pub fn seq_out_of_range(&self, set: &SequenceSet) -> bool {
        let n = self.messages.len() as u32;
        set.0.iter().any(|r| {
            let (lo, hi) = r.resolve(n);
            lo == 0 || hi > n
        })
    }

    /// Our own change: new flags and MODSEQ for `uid`.
    pub fn set_flags(&mut self, uid: u32, flags: Flags, modseq: u64) {
        if let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.uid) {
            let m = &mut Arc::make_mut(&mut self.messages)[i];
            m.flags = flags;
            m.modseq = modseq;
        }
        self.highestmodseq = self.highestmodseq.max(modseq);
    }

    /// Our own expunge: the messages gone; writes `* n EXPUNGE` for each.
    pub fn remove(&mut self, uids: &[u32], out: &mut Vec<u8>) {
        let gone: HashSet<u32> = uids.iter().copied().collect();
        self.tell_expunged(&gone, out);
    }

    fn tell_expunged(&mut self, gone: &HashSet<u32>, out: &mut Vec<u8>) {
        if gone.is_empty() {
            return;
        }
        // from the highest number down, so no told number shifts another
        for i in (0..self.messages.len()).rev() {
            if gone.contains(&self.messages[i].uid) {
                response::data(out, &response::Data::Expunge(i as u32 + 1));
            }
        }
        Arc::make_mut(&mut self.messages).retain(|m| !gone.contains(&m.uid));
        self.recent.retain(|u| !gone.contains(u));
        for u in gone {
            self.expunged.remove(u);
        }
    }

    /// Tell the expunges held back so far.
    pub fn refresh_expunges(&mut self, out: &mut Vec<u8>) {
        let gone = std::mem::take(&mut self.expunged);
        self.tell_expunged(&gone, out);
    }

    /// Compare with a fresh listing and tell the client what changed:
    /// expunges (unless `expunges_allowed` is false: they wait), new
    /// messages, flags changed by others (with MODSEQ when `condstore`).
    /// Both lists are in UID order: one walk, no map. When the view ends up
    /// showing just what the listing holds, it shares the listing again.
    pub fn refresh(&mut self, fresh: Snapshot, expunges_allowed: bool, condstore: bool, out: &mut Vec<u8>) {
        if fresh.uidvalidity != self.uidvalidity {
            return;
        }
        let last = self.messages.last().map_or(0, |m| m.uid).max(self.uidnext.saturating_sub(1));
        let split = fresh.messages.partition_point(|m| m.uid <= last);
        let (known, newer) = fresh.messages.split_at(split);
        if !Arc::ptr_eq(&fresh.messages, &self.messages) {
            let mut j = 0;
            for m in self.messages.iter() {
                while known.get(j).is_some_and(|k| k.uid < m.uid) {
                    j += 1;
                }
                if known.get(j).is_some_and(|k| k.uid == m.uid) {
                    j += 1;
                } else {
                    self.expunged.insert(m.uid);
                }
            }
        }
        if expunges_allowed {
            self.refresh_expunges(out);
        }
        if !newer.is_empty() {
            let upto = newer.last().map_or(0, |m| m.uid);
            let before = if self.read_only { self.book.peek(&self.key) } else { self.book.claim(&self.key, upto) };
            // above every UID the view had: the vector stays ascending
            self.recent.extend(newer.iter().filter(|m| m.uid > before).map(|m| m.uid));
            Arc::make_mut(&mut self.messages).extend_from_slice(newer);
            response::data(out, &response::Data::Exists(self.exists()));
            response::data(out, &response::Data::Recent(self.recent.len() as u32));
        }
        self.uidnext = self.uidnext.max(fresh.uidnext);
        self.highestmodseq = self.highestmodseq.max(fresh.highestmodseq);
        // flags changed by others: (index, index in `known`), told now
        let mut changed = Vec::new();
        let mut j = 0;
        for (i, m) in self.messages.iter().enumerate() {
            while known.get(j).is_some_and(|k| k.uid < m.uid) {
                j += 1;
            }
            let Some(k) = known.get(j).filter(|k| k.uid == m.uid) else { continue };
            if k.flags != m.flags {
                let flags = super::flags::to_protocol(&k.flags, self.recent.binary_search(&m.uid).is_ok());
                let mut items = vec![FetchItem::Uid(m.uid), FetchItem::Flags(&flags)];
                if condstore {
                    items.push(FetchItem::ModSeq(k.modseq));
                }
                response::fetch(out, i as u32 + 1, &items);
            }
            if k.flags != m.flags || k.modseq != m.modseq {
                changed.push((i, j));
            }
        }
        let same_uids = self.expunged.is_empty()
            && self.messages.len() == fresh.messages.len()
            && self.messages.iter().zip(fresh.messages.iter()).all(|(a, b)| a.uid == b.uid);
        if same_uids {
            self.messages = fresh.messages.clone();
        } else if !changed.is_empty() {
            let messages = Arc::make_mut(&mut self.messages);
            for (i, j) in changed {
                if let (Some(m), Some(k)) = (messages.get_mut(i), known.get(j)) {
                    m.flags = k.flags.clone();
                    m.modseq = k.modseq;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::Flag as Stored;
    use crate::proto::imap::types::{SeqBound, SeqRange};

    fn msg(uid: u32, flags: &[Stored], modseq: u64) -> MessageInfo {
        MessageInfo { uid, size: 10, internal_date: 0, flags: flags.iter().cloned().collect(), modseq }
    }

    fn listing(messages: Vec<MessageInfo>) -> Snapshot {
        let uidnext = messages.last().map_or(1, |m| m.uid + 1);
        let highestmodseq = messages.iter().map(|m| m.modseq).max().unwrap_or(1);
        Snapshot { uidvalidity: 7, uidnext, highestmodseq, messages: Arc::new(messages) }
    }

    fn text(out: &mut Vec<u8>) -> String {
        String::from_utf8(std::mem::take(out)).unwrap()
    }

    #[test]
    fn changes_by_others_are_told_and_expunges_wait_when_asked() {
        let book = RecentBook::default();
        let mut v =
            View::new("alice", "INBOX", listing(vec![msg(1, &[], 1), msg(2, &[], 2), msg(3, &[], 3)]), false, &book);
        assert_eq!(v.recent.len(), 3, "the first read-write selection claims every message");
        let other = View::new("alice", "INBOX", listing(vec![msg(1, &[], 1)]), false, &book);
        assert!(other.recent.is_empty(), "already claimed");
        let mut out = Vec::new();
        // another session expunged 2, flagged 3, and a message arrived; during a FETCH
        let fresh = listing(vec![msg(1, &[], 1), msg(3, &[Stored::Flagged], 5), msg(4, &[], 6)]);
        v.refresh(fresh.clone(), false, true, &mut out);
        assert_eq!(
            text(&mut out),
            "* 4 EXISTS\r\n* 4 RECENT\r\n* 3 FETCH (UID 3 FLAGS (\\Flagged \\Recent) MODSEQ (5))\r\n",
            "no EXPUNGE during FETCH, STORE or SEARCH; the numbers stay"
        );
        assert!(v.is_expunged(2));
        assert_eq!(v.seq_of(4), Some(4));
        v.refresh(fresh, true, true, &mut out);
        assert_eq!(text(&mut out), "* 2 EXPUNGE\r\n");
        assert_eq!((v.exists(), v.seq_of(3)), (3, Some(2)));
        v.remove(&[1, 4], &mut out);
        assert_eq!(text(&mut out), "* 3 EXPUNGE\r\n* 1 EXPUNGE\r\n", "from the highest number down");
    }

    #[test]
    fn sets_resolve_to_indices() {
        let book = RecentBook::default();
        let v = View::new("a", "INBOX", listing(vec![msg(2, &[], 1), msg(5, &[], 1), msg(9, &[], 1)]), true, &book);
        let set = |a: SeqBound, b: SeqBound| SequenceSet(vec![SeqRange { start: a, end: b }]);
        assert_eq!(v.resolve(&set(SeqBound::Num(2), SeqBound::Star), false), vec![1, 2]);
        assert_eq!(v.resolve(&set(SeqBound::Num(3), SeqBound::Num(9)), true), vec![1, 2]);
        assert_eq!(v.resolve(&set(SeqBound::Num(100), SeqBound::Star), true), vec![2], "UID n:* names the last");
        assert!(v.seq_out_of_range(&set(SeqBound::Num(4), SeqBound::Num(4))));
        assert!(!v.seq_out_of_range(&set(SeqBound::Num(1), SeqBound::Star)));
        assert_eq!(book.claimed("a", "INBOX", 7), 0, "EXAMINE claims nothing");
    }
}
