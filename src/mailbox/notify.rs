//! What open sessions share about a user's mailbox while the store changes
//! underneath them: a broadcast of every change (for IMAP IDLE and
//! unsolicited EXISTS/EXPUNGE/FETCH), and POP3's exclusive maildrop lock
//! (RFC 1939 §8: one session per maildrop). Both live in memory only; sled
//! already guarantees that one process owns the data directory.

use crate::util::LockExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// A receiver that falls this far behind gets `Lagged` and must re-read.
const CHANNEL_CAPACITY: usize = 256;

/// One change to one folder of a user (or to the folder list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The folder's name when the change was made.
    pub folder: String,
    pub uidvalidity: u32,
    pub kind: ChangeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// New messages with these UIDs.
    Appended(Vec<u32>),
    /// These UIDs are gone.
    Expunged(Vec<u32>),
    /// The flags of these UIDs changed.
    Flags(Vec<u32>),
    /// The folder was created, renamed (`folder` is the old name) or deleted.
    Folders,
}

#[derive(Default)]
pub struct Notifier {
    channels: Mutex<HashMap<String, broadcast::Sender<Change>>>,
    maildrops: Arc<Mutex<HashSet<String>>>,
}

/// Holds a user's maildrop for one POP3 session; dropping it lets go.
#[derive(Debug)]
pub struct MaildropLock {
    user: String,
    held: Arc<Mutex<HashSet<String>>>,
}

impl MaildropLock {
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.held.lock_or_recover().remove(&self.user);
    }
}

impl Notifier {
    pub fn subscribe(&self, user: &str) -> broadcast::Receiver<Change> {
        let mut ch = self.channels.lock_or_recover();
        ch.entry(user.to_string()).or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0).subscribe()
    }

    pub fn send(&self, user: &str, change: Change) {
        let mut ch = self.channels.lock_or_recover();
        if let Some(tx) = ch.get(user) {
            if tx.send(change).is_err() {
                // nobody listens any more
                ch.remove(user);
            }
        }
    }

    pub fn lock_maildrop(&self, user: &str) -> Option<MaildropLock> {
        let mut held = self.maildrops.lock_or_recover();
        held.insert(user.to_string()).then(|| MaildropLock { user: user.to_string(), held: self.maildrops.clone() })
    }
}
