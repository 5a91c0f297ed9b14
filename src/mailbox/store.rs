//! [`MailboxStore`]: the public face of the mailbox store — delivery,
//! listings, message bytes, flags, expunge, copy and folder management —
//! built from the files ([`super::disk`]) and the index ([`super::index`])
//! in the order the parent module's durability argument needs: files before
//! records when adding, files before records when removing. When a step
//! fails, the index follows the disk: an add takes back the names it made
//! (so neither the retry nor a restart makes a second copy), a removal
//! drops the records of what is already gone (so no listing shows a
//! message that cannot be read). Every index write goes through the fault
//! seam ([`super::fault`]) like the disk's.

use super::cache::{self, Listings, Numbers, Snapshot};
use super::disk::{Disk, FolderState};
use super::fault::{Faults, Step};
use super::index::{self, FolderRecord, MessageRecord};
use super::notify::{Change, ChangeKind, MaildropLock, Notifier};
use super::parse::{self, Parsed};
use super::{
    canonical_folder, Appended, FlagChange, Flags, FolderInfo, MailboxError, MessageInfo, Recovery, SpecialUse,
    DEFAULT_FOLDERS, DELIMITER, INBOX,
};
use crate::auth::Accounts;
use crate::util::LockExt;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many taken UIDs an append steps over before giving up (a file at
/// UIDNEXT means the index lags the disk; this never loops long).
const MAX_UID_PROBES: u32 = 1000;
/// Longest folder name accepted, in bytes.
const MAX_FOLDER_NAME: usize = 512;
/// How far the fsynced MODSEQ floor runs ahead of HIGHESTMODSEQ: one
/// `folder.json` write per this many changes to a folder.
const MODSEQ_STEP: u64 = 1024;

pub struct MailboxStore {
    tree: sled::Tree,
    disk: Disk,
    faults: Arc<Faults>,
    accounts: Accounts,
    /// One writer per user.
    writers: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    last_uidvalidity: Mutex<u32>,
    notifier: Notifier,
    /// Folders' listings in memory ([`super::cache`]), edited by every write.
    listings: Listings,
}

/// A folder's id and index record.
struct Folder {
    fid: u32,
    rec: FolderRecord,
}

/// A folder's messages (ascending UID) with the UIDVALIDITY they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub uidvalidity: u32,
    /// Greater than every UID listed.
    pub uidnext: u32,
    /// At least the MODSEQ of every message listed (RFC 7162).
    pub highestmodseq: u64,
    pub messages: Vec<MessageInfo>,
}

/// A folder looked up once ([`MailboxStore::folder_ref`]) for many reads.
#[derive(Clone, Debug)]
pub struct FolderRef {
    user: String,
    fid: u32,
    /// Its name when looked up (for errors).
    name: String,
}

/// One name IMAP LIST shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub name: String,
    /// `\HasChildren`/`\HasNoChildren`, SPECIAL-USE, `\Noselect`.
    pub attributes: Vec<&'static str>,
    pub subscribed: bool,
}

/// What a conditional flag change did (RFC 7162 STORE UNCHANGEDSINCE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagsStored {
    /// Every message that exists and passed the condition: its UID, flags
    /// and MODSEQ now (raised only if its flags changed).
    pub updated: Vec<(u32, Flags, u64)>,
    /// Messages left alone because their MODSEQ was above UNCHANGEDSINCE
    /// (the MODIFIED response code), ascending.
    pub conflicts: Vec<u32>,
}

fn user_key(user: &str) -> Result<String, MailboxError> {
    let k = crate::auth::key(user);
    if k.is_empty() || k.len() > 320 || k.chars().any(char::is_control) {
        return Err(MailboxError::InvalidUser(user.to_string()));
    }
    Ok(k)
}

/// A folder name for the hierarchy: checked, a trailing [`DELIMITER`]
/// dropped, no empty level, INBOX (any case) as `INBOX`, also as a parent.
fn hierarchy_name(name: &str) -> Result<String, MailboxError> {
    let trimmed = name.strip_suffix(DELIMITER).unwrap_or(name);
    check_folder_name(trimmed)?;
    if trimmed.split(DELIMITER).any(str::is_empty) {
        return Err(MailboxError::InvalidFolderName(name.to_string(), "it has an empty level"));
    }
    Ok(match trimmed.split_once(DELIMITER) {
        Some((top, rest)) => format!("{}{DELIMITER}{rest}", canonical_folder(top)),
        None => canonical_folder(trimmed).to_string(),
    })
}

fn check_folder_name(name: &str) -> Result<(), MailboxError> {
    let bad = |why| Err(MailboxError::InvalidFolderName(name.to_string(), why));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_FOLDER_NAME {
        return bad("it is too long");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    Ok(())
}

impl MailboxStore {
    /// Open the store in `data_dir` on the shared database, reconciling the
    /// index with the message files (see the parent module).
    /// Faults named by `POSTERN_MAILBOX_FAULTS` are armed (a test seam, see
    /// [`super::fault`]).
    pub fn open(db: &sled::Db, data_dir: &Path, accounts: Accounts) -> Result<(MailboxStore, Recovery), MailboxError> {
        let faults = Faults::from_env().map_err(|e| MailboxError::Faults(e.to_string()))?;
        MailboxStore::open_with_faults(db, data_dir, accounts, Arc::new(faults))
    }

    /// [`MailboxStore::open`] with the given fault seam (tests).
    pub fn open_with_faults(
        db: &sled::Db,
        data_dir: &Path,
        accounts: Accounts,
        faults: Arc<Faults>,
    ) -> Result<(MailboxStore, Recovery), MailboxError> {
        let tree = db.open_tree("mailbox")?;
        let disk = Disk::with_faults(data_dir.join("mail"), faults.clone());
        disk.init().map_err(|e| MailboxError::io(disk.root(), e))?;
        let (recovery, max_uidvalidity) = super::reconcile::reconcile(&tree, &disk)?;
        let store = MailboxStore {
            tree,
            disk,
            faults,
            accounts,
            writers: Mutex::new(HashMap::new()),
            last_uidvalidity: Mutex::new(max_uidvalidity),
            notifier: Notifier::default(),
            listings: Listings::default(),
        };
        Ok((store, recovery))
    }

    /// Local delivery: append `message` to the INBOX of `user` (an Accounts
    /// key; aliases already expanded). Returns the new UID only once the
    /// message is durable on disk. Blocking: call from `spawn_blocking`.
    /// [`MailboxError::is_permanent`] tells a missing user (fail, NDR) from
    /// store trouble (retry).
    pub fn deliver(&self, user: &str, message: &[u8], internal_date: u64) -> Result<u32, MailboxError> {
        let user = user_key(user)?;
        if !self.accounts.has_user(&user)? {
            return Err(MailboxError::NoSuchUser(user));
        }
        Ok(self.append(&user, INBOX, message, internal_date, &Flags::new())?.uid)
    }

    /// Append a message to a folder (IMAP APPEND; delivery uses INBOX).
    /// Durable when it returns, like [`MailboxStore::deliver`].
    pub fn append(
        &self,
        user: &str,
        folder: &str,
        message: &[u8],
        internal_date: u64,
        flags: &Flags,
    ) -> Result<Appended, MailboxError> {
        let user = user_key(user)?;
        // parsed once, here, before the writer lock
        let parsed = index::encode(&parse::parse(message));
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        let mut f = self.folder_locked(&user, folder)?;
        let dir = self.disk.folder_dir(&user, f.fid);
        let uid = self.write_new(&dir, &f.rec, |uid| self.disk.write_message(&dir, uid, internal_date, message))?;
        f.rec.uidnext = uid + 1;
        let indexed = self.next_modseq(&dir, &mut f.rec).and_then(|modseq| {
            let rec = MessageRecord { date: internal_date, size: message.len() as u64, flags: flags.clone(), modseq };
            let mut batch = sled::Batch::default();
            batch.insert(index::message_key(&user, f.fid, uid), index::encode(&rec));
            batch.insert(index::parse_key(&user, f.fid, uid), parsed);
            batch.insert(index::folder_key(&user, f.fid), index::encode(&f.rec));
            self.apply(batch).map(|()| modseq)
        });
        let modseq = match indexed {
            Ok(m) => m,
            Err(e) => {
                self.listings.forget(&user, f.fid);
                // not acknowledged: take the file back so a retry does not duplicate it
                self.disk.discard_messages(&dir, &[super::disk::message_name(uid)]);
                return Err(e);
            }
        };
        let info = MessageInfo { uid, size: message.len() as u64, internal_date, flags: flags.clone(), modseq };
        self.listings.edit(&user, f.fid, numbers(&f.rec), |m| cache::insert_sorted(m, info));
        self.notify(&user, &f, ChangeKind::Appended(vec![uid]));
        Ok(Appended { uidvalidity: f.rec.uidvalidity, uid })
    }

    /// Make sure `user`'s default folders exist (a session's login): what
    /// [`MailboxStore::folders`] does first, without reading any listing.
    pub fn ensure_user(&self, user: &str) -> Result<(), MailboxError> {
        let user = user_key(user)?;
        if self.lookup(&user, INBOX)?.is_none() {
            let lock = self.writer(&user);
            let _held = lock.lock_or_recover();
            self.ensure_defaults(&user)?;
        }
        Ok(())
    }

    /// Every folder of `user` (creating the default ones for a new user), by creation.
    pub fn folders(&self, user: &str) -> Result<Vec<FolderInfo>, MailboxError> {
        let user = user_key(user)?;
        let mut all = self.folder_records(&user)?;
        if !all.iter().any(|f| f.rec.name == INBOX) {
            let lock = self.writer(&user);
            let _held = lock.lock_or_recover();
            self.ensure_defaults(&user)?;
            all = self.folder_records(&user)?;
        }
        all.iter().map(|f| self.info(&user, f, &self.snapshot(&user, f.fid)?)).collect()
    }

    /// One folder's status (IMAP STATUS / SELECT).
    pub fn folder(&self, user: &str, name: &str) -> Result<FolderInfo, MailboxError> {
        let user = user_key(user)?;
        let f = self.find(&user, name)?;
        self.info(&user, &f, &self.snapshot(&user, f.fid)?)
    }

    /// The messages of a folder, ascending by UID (a copy of
    /// [`MailboxStore::listing`]).
    pub fn messages(&self, user: &str, folder: &str) -> Result<Listing, MailboxError> {
        let s = self.listing(user, folder)?;
        let messages = s.messages.as_ref().clone();
        Ok(Listing { uidvalidity: s.uidvalidity, uidnext: s.uidnext, highestmodseq: s.highestmodseq, messages })
    }

    /// The messages of a folder, ascending by UID, shared with every other
    /// reader ([`super::cache`]): no copy, no index read after the first.
    pub fn listing(&self, user: &str, folder: &str) -> Result<Snapshot, MailboxError> {
        let user = user_key(user)?;
        let f = self.find(&user, folder)?;
        self.snapshot(&user, f.fid)
    }

    /// A folder's HIGHESTMODSEQ (RFC 7162; STATUS, SELECT).
    pub fn highestmodseq(&self, user: &str, folder: &str) -> Result<u64, MailboxError> {
        let user = user_key(user)?;
        Ok(self.find(&user, folder)?.rec.highestmodseq)
    }

    /// The messages whose MODSEQ is above `modseq` (RFC 7162 CHANGEDSINCE),
    /// ascending by UID, in a listing like [`MailboxStore::messages`].
    pub fn changed_since(&self, user: &str, folder: &str, modseq: u64) -> Result<Listing, MailboxError> {
        let s = self.listing(user, folder)?;
        let messages = s.messages.iter().filter(|m| m.modseq > modseq).cloned().collect();
        Ok(Listing { uidvalidity: s.uidvalidity, uidnext: s.uidnext, highestmodseq: s.highestmodseq, messages })
    }

    /// A message's bytes, exactly as stored.
    pub fn read(&self, user: &str, folder: &str, uid: u32) -> Result<Vec<u8>, MailboxError> {
        self.read_in(&self.folder_ref(user, folder)?, uid)
    }

    /// A folder looked up once for many reads of its messages (a FETCH or
    /// SEARCH over a whole folder), by its id: a rename since does not
    /// matter, a deletion makes every message gone.
    pub fn folder_ref(&self, user: &str, folder: &str) -> Result<FolderRef, MailboxError> {
        let user = user_key(user)?;
        let f = self.find(&user, folder)?;
        Ok(FolderRef { user, fid: f.fid, name: f.rec.name })
    }

    /// [`MailboxStore::read`] in a folder looked up before.
    pub fn read_in(&self, at: &FolderRef, uid: u32) -> Result<Vec<u8>, MailboxError> {
        let gone = || MailboxError::NoSuchMessage { folder: at.name.clone(), uid };
        if !self.tree.contains_key(index::message_key(&at.user, at.fid, uid))? {
            return Err(gone());
        }
        let path = self.disk.message_path(&at.user, at.fid, uid);
        match Disk::read_message(&path) {
            Ok(b) => Ok(b),
            // expunged by another session since the record was read
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(gone()),
            Err(e) => Err(MailboxError::io(path, e)),
        }
    }

    /// A message's cached parse (envelope, body structure with offsets,
    /// SEARCH fields), made when it arrived. A message indexed before the
    /// cache existed is parsed now, and the parse kept.
    pub fn parsed(&self, user: &str, folder: &str, uid: u32) -> Result<Parsed, MailboxError> {
        self.parsed_in(&self.folder_ref(user, folder)?, uid)
    }

    /// [`MailboxStore::parsed`] in a folder looked up before.
    pub fn parsed_in(&self, at: &FolderRef, uid: u32) -> Result<Parsed, MailboxError> {
        let user = &at.user;
        let pk = index::parse_key(user, at.fid, uid);
        if let Some(v) = self.tree.get(&pk)? {
            match index::decode(&pk, &v) {
                Ok(p) => return Ok(p),
                Err(e) => tracing::warn!("{e}; parsed again from the message"),
            }
        }
        let parsed = parse::parse(&self.read_in(at, uid)?);
        let lock = self.writer(user);
        let _held = lock.lock_or_recover();
        // only for a message still there, or an expunge would leave it behind
        if self.tree.contains_key(index::message_key(user, at.fid, uid))? {
            if let Err(e) = self.insert(pk, index::encode(&parsed)) {
                tracing::warn!(user, uid, "cannot keep a message's parse: {e}");
            }
        }
        Ok(parsed)
    }

    /// Change the flags of some messages (IMAP STORE); returns the new
    /// flags of each message that exists.
    pub fn store_flags(
        &self,
        user: &str,
        folder: &str,
        uids: &[u32],
        change: FlagChange,
        flags: &Flags,
    ) -> Result<Vec<(u32, Flags)>, MailboxError> {
        let stored = self.store_flags_if(user, folder, uids, change, flags, None)?;
        Ok(stored.updated.into_iter().map(|(uid, flags, _)| (uid, flags)).collect())
    }

    /// [`MailboxStore::store_flags`] with RFC 7162's condition: with
    /// `unchanged_since = Some(n)`, only messages whose MODSEQ is at most
    /// `n` change; the others are reported as conflicts. Every message
    /// whose flags change gets one new MODSEQ, above all before it.
    pub fn store_flags_if(
        &self,
        user: &str,
        folder: &str,
        uids: &[u32],
        change: FlagChange,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsStored, MailboxError> {
        let user = user_key(user)?;
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        let mut f = self.folder_locked(&user, folder)?;
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let mut out = FlagsStored::default();
        let mut changed = Vec::new();
        for uid in uids {
            let k = index::message_key(&user, f.fid, uid);
            let Some(v) = self.tree.get(&k)? else { continue };
            let mut rec: MessageRecord = index::decode(&k, &v)?;
            if unchanged_since.is_some_and(|n| rec.modseq > n) {
                out.conflicts.push(uid);
                continue;
            }
            let before = rec.flags.clone();
            match change {
                FlagChange::Add => rec.flags.extend(flags.iter().cloned()),
                FlagChange::Remove => rec.flags.retain(|x| !flags.contains(x)),
                FlagChange::Replace => rec.flags = flags.clone(),
            }
            out.updated.push((uid, rec.flags.clone(), rec.modseq));
            if rec.flags != before {
                changed.push((k, rec, out.updated.len() - 1));
            }
        }
        if changed.is_empty() {
            return Ok(out);
        }
        let dir = self.disk.folder_dir(&user, f.fid);
        let modseq = self.next_modseq(&dir, &mut f.rec)?;
        let mut batch = sled::Batch::default();
        let mut uids = Vec::with_capacity(changed.len());
        for (k, mut rec, i) in changed {
            out.updated[i].2 = modseq;
            uids.push(out.updated[i].0);
            rec.modseq = modseq;
            batch.insert(k, index::encode(&rec));
        }
        batch.insert(index::folder_key(&user, f.fid), index::encode(&f.rec));
        if let Err(e) = self.apply(batch) {
            self.listings.forget(&user, f.fid);
            return Err(e);
        }
        self.listings.edit(&user, f.fid, numbers(&f.rec), |m| {
            for (uid, flags, modseq) in &out.updated {
                if let Ok(i) = m.binary_search_by_key(uid, |x| x.uid) {
                    m[i].flags = flags.clone();
                    m[i].modseq = *modseq;
                }
            }
        });
        self.notify(&user, &f, ChangeKind::Flags(uids));
        Ok(out)
    }

    /// Remove messages for good (POP3 UPDATE, IMAP EXPUNGE); returns the
    /// UIDs that were there. Durable when it returns.
    pub fn expunge(&self, user: &str, folder: &str, uids: &[u32]) -> Result<Vec<u32>, MailboxError> {
        let user = user_key(user)?;
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        self.expunge_locked(&user, folder, uids)
    }

    /// [`MailboxStore::expunge`] under the user's writer lock.
    fn expunge_locked(&self, user: &str, folder: &str, uids: &[u32]) -> Result<Vec<u32>, MailboxError> {
        let user = user.to_string();
        let mut f = self.folder_locked(&user, folder)?;
        let mut gone = uids.to_vec();
        gone.sort_unstable();
        gone.dedup();
        let mut present = Vec::with_capacity(gone.len());
        for uid in gone {
            if self.tree.contains_key(index::message_key(&user, f.fid, uid))? {
                present.push(uid);
            }
        }
        let gone = present;
        let Some(&highest) = gone.last() else { return Ok(gone) };
        let dir = self.disk.folder_dir(&user, f.fid);
        if highest >= f.rec.durable_uidnext {
            // Raise the floor on disk before the files go, so UIDNEXT can
            // never fall back below a UID that existed.
            self.disk.write_state(&dir, &state_of(&f.rec)).map_err(|e| MailboxError::io(&dir, e))?;
            f.rec.durable_uidnext = f.rec.uidnext;
        }
        // an expunge is a change a CONDSTORE client must be able to notice
        self.next_modseq(&dir, &mut f.rec)?;
        let names: Vec<String> = gone.iter().map(|&u| super::disk::message_name(u)).collect();
        let removed = self.disk.remove_messages(&dir, &names);
        let gone = match &removed {
            Ok(()) => gone,
            // some files may be gone already: their records go too, so that
            // no listing offers a message that cannot be read
            Err(_) => gone.into_iter().filter(|&u| !self.disk.message_path(&user, f.fid, u).exists()).collect(),
        };
        if !gone.is_empty() || removed.is_ok() {
            let mut batch = sled::Batch::default();
            for &uid in &gone {
                batch.remove(index::message_key(&user, f.fid, uid));
                batch.remove(index::parse_key(&user, f.fid, uid));
            }
            batch.insert(index::folder_key(&user, f.fid), index::encode(&f.rec));
            if let Err(e) = self.apply(batch) {
                self.listings.forget(&user, f.fid);
                return Err(e);
            }
            self.listings.edit(&user, f.fid, numbers(&f.rec), |m| m.retain(|x| gone.binary_search(&x.uid).is_err()));
            if !gone.is_empty() {
                self.notify(&user, &f, ChangeKind::Expunged(gone.clone()));
            }
        }
        removed.map_err(|e| MailboxError::io(&dir, e))?;
        Ok(gone)
    }

    /// Copy messages to another folder (IMAP COPY; MOVE is copy + expunge),
    /// keeping bytes, internal date and flags. Returns the destination's
    /// UIDVALIDITY and `(source uid, new uid)` pairs (RFC 4315 COPYUID).
    pub fn copy(&self, user: &str, from: &str, uids: &[u32], to: &str) -> Result<(u32, Vec<(u32, u32)>), MailboxError> {
        let user = user_key(user)?;
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        self.copy_locked(&user, from, uids, to)
    }

    /// Move messages to another folder (RFC 6851 MOVE): a copy, then an
    /// expunge of what was copied, both under the user's writer lock so no
    /// other writer sees the messages in both folders or in neither.
    /// Returns what [`MailboxStore::copy`] does (COPYUID). A crash between
    /// the two leaves the messages in both folders, never in neither.
    pub fn move_messages(
        &self,
        user: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), MailboxError> {
        let user = user_key(user)?;
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        if canonical_folder(from) == canonical_folder(to) {
            return Err(MailboxError::InvalidFolderName(to.to_string(), "it is the folder the messages are in"));
        }
        let (uidvalidity, pairs) = self.copy_locked(&user, from, uids, to)?;
        let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        self.expunge_locked(&user, from, &moved)?;
        Ok((uidvalidity, pairs))
    }

    /// [`MailboxStore::copy`] under the user's writer lock.
    fn copy_locked(
        &self,
        user: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), MailboxError> {
        let user = user.to_string();
        let src = self.folder_locked(&user, from)?;
        let mut dst = self.folder_locked(&user, to)?;
        let dst_dir = self.disk.folder_dir(&user, dst.fid);
        let mut pairs = Vec::new();
        let mut added = Vec::new();
        let mut batch = sled::Batch::default();
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let link_all = || -> Result<(), MailboxError> {
            for uid in uids {
                let k = index::message_key(&user, src.fid, uid);
                let Some(v) = self.tree.get(&k)? else { continue };
                let rec: MessageRecord = index::decode(&k, &v)?;
                let from_path = self.disk.message_path(&user, src.fid, uid);
                let new = match self.write_new(&dst_dir, &dst.rec, |n| self.disk.link_message(&from_path, &dst_dir, n))
                {
                    Ok(n) => n,
                    // its file is gone (an expunge a crash interrupted): nothing to copy
                    Err(MailboxError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                dst.rec.uidnext = new + 1;
                pairs.push((uid, new));
                let mut rec = rec;
                rec.modseq = self.next_modseq(&dst_dir, &mut dst.rec)?;
                added.push(MessageInfo {
                    uid: new,
                    size: rec.size,
                    internal_date: rec.date,
                    flags: rec.flags.clone(),
                    modseq: rec.modseq,
                });
                batch.insert(index::message_key(&user, dst.fid, new), index::encode(&rec));
                if let Some(p) = self.tree.get(index::parse_key(&user, src.fid, uid))? {
                    batch.insert(index::parse_key(&user, dst.fid, new), p);
                }
            }
            if pairs.is_empty() {
                return Ok(());
            }
            self.disk.sync_dir(&dst_dir).map_err(|e| MailboxError::io(&dst_dir, e))?;
            batch.insert(index::folder_key(&user, dst.fid), index::encode(&dst.rec));
            self.apply(std::mem::take(&mut batch))
        };
        if let Err(e) = link_all() {
            self.listings.forget(&user, dst.fid);
            // not acknowledged: take the new names back so they are not re-indexed later
            let made: Vec<String> = pairs.iter().map(|p| super::disk::message_name(p.1)).collect();
            self.disk.discard_messages(&dst_dir, &made);
            return Err(e);
        }
        if pairs.is_empty() {
            return Ok((dst.rec.uidvalidity, pairs));
        }
        self.listings.edit(&user, dst.fid, numbers(&dst.rec), |m| {
            for info in added {
                cache::insert_sorted(m, info);
            }
        });
        self.notify(&user, &dst, ChangeKind::Appended(pairs.iter().map(|p| p.1).collect()));
        Ok((dst.rec.uidvalidity, pairs))
    }

    /// A new, empty folder with a fresh UIDVALIDITY (IMAP CREATE). Names
    /// are a hierarchy with [`DELIMITER`] (`a/b/c`); a missing parent is
    /// not made, it is listed as `\Noselect` by [`MailboxStore::list`]
    /// while it has children (RFC 3501 §6.3.3 lets it be a name only). A
    /// trailing delimiter is dropped.
    pub fn create_folder(&self, user: &str, name: &str) -> Result<FolderInfo, MailboxError> {
        let user = user_key(user)?;
        let name = hierarchy_name(name)?;
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        self.ensure_defaults(&user)?;
        if self.lookup(&user, &name)?.is_some() {
            return Err(MailboxError::FolderExists { user, folder: name });
        }
        let f = self.new_folder(&user, &name, None)?;
        self.notify(&user, &f, ChangeKind::Folders);
        self.info(&user, &f, &self.snapshot_locked(&user, f.fid)?)
    }

    /// What IMAP LIST shows: every folder with its attributes
    /// ([`FolderInfo::attributes`]), and every missing parent of one as a
    /// name with `\Noselect \HasChildren`, just before its first child.
    pub fn list(&self, user: &str) -> Result<Vec<ListEntry>, MailboxError> {
        let folders = self.folders(user)?;
        let real: std::collections::HashSet<&str> = folders.iter().map(|f| f.name.as_str()).collect();
        let mut listed = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(folders.len());
        for f in &folders {
            for (i, _) in f.name.match_indices(DELIMITER) {
                let parent = &f.name[..i];
                if !real.contains(parent) && listed.insert(parent.to_string()) {
                    out.push(ListEntry {
                        name: parent.to_string(),
                        attributes: vec!["\\Noselect", "\\HasChildren"],
                        subscribed: false,
                    });
                }
            }
            out.push(ListEntry { name: f.name.clone(), attributes: f.attributes(), subscribed: f.subscribed });
        }
        Ok(out)
    }

    /// Rename a folder and every folder under it (RFC 3501 §6.3.5), keeping
    /// their UIDVALIDITY and messages. Not INBOX: IMAP's RENAME INBOX is [`MailboxStore::rename_inbox`].
    /// Each folder is renamed durably in turn: a failure part-way leaves
    /// the ones done renamed, and the error says which one failed.
    pub fn rename_folder(&self, user: &str, from: &str, to: &str) -> Result<(), MailboxError> {
        if canonical_folder(from) == INBOX {
            return Err(MailboxError::InvalidFolderName(
                INBOX.into(),
                "INBOX cannot be renamed, only emptied into another folder",
            ));
        }
        self.rename(user, from, to)
    }

    /// RENAME INBOX (RFC 3501 §6.3.5): a new folder `to` gets all of
    /// INBOX's messages (as a MOVE would), INBOX stays, empty, and its
    /// children stay where they are.
    pub fn rename_inbox(&self, user: &str, to: &str) -> Result<(), MailboxError> {
        self.rename(user, INBOX, to)
    }

    fn rename(&self, user: &str, from: &str, to: &str) -> Result<(), MailboxError> {
        let user = user_key(user)?;
        let to = hierarchy_name(to)?;
        let from = canonical_folder(from).to_string();
        if to == INBOX {
            return Err(MailboxError::InvalidFolderName(INBOX.into(), "INBOX cannot be replaced"));
        }
        if from != INBOX && to.starts_with(&format!("{from}{DELIMITER}")) {
            return Err(MailboxError::InvalidFolderName(to, "it is under the folder being renamed"));
        }
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        let f = self.folder_locked(&user, &from)?;
        if self.lookup(&user, &to)?.is_some() {
            return Err(MailboxError::FolderExists { user, folder: to });
        }
        if from == INBOX {
            let new = self.new_folder(&user, &to, None)?;
            self.notify(&user, &new, ChangeKind::Folders);
            let uids: Vec<u32> = self.message_infos(&user, f.fid)?.iter().map(|m| m.uid).collect();
            let (_, pairs) = self.copy_locked(&user, INBOX, &uids, &to)?;
            let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            self.expunge_locked(&user, INBOX, &moved)?;
            return Ok(());
        }
        let prefix = format!("{from}{DELIMITER}");
        let children: Vec<Folder> =
            self.folder_records(&user)?.into_iter().filter(|c| c.rec.name.starts_with(&prefix)).collect();
        self.rename_one(&user, f, to.clone())?;
        for c in children {
            let new = format!("{to}{}", &c.rec.name[from.len()..]);
            self.rename_one(&user, c, new)?;
        }
        Ok(())
    }

    /// Give one folder a new name: `folder.json` first (the disk decides
    /// names at the next start), then the index. Hold the writer lock.
    fn rename_one(&self, user: &str, mut f: Folder, to: String) -> Result<(), MailboxError> {
        let user = user.to_string();
        let old = Folder { fid: f.fid, rec: f.rec.clone() };
        f.rec.name = to;
        let dir = self.disk.folder_dir(&user, f.fid);
        self.disk.write_state(&dir, &state_of(&f.rec)).map_err(|e| MailboxError::io(&dir, e))?;
        f.rec.durable_uidnext = f.rec.uidnext;
        if let Err(e) = self.insert(index::folder_key(&user, f.fid), index::encode(&f.rec)) {
            // the disk decides a folder's name at the next start: give it
            // back the old one, as the caller was told the rename failed
            if let Err(e) = self.disk.write_state(&dir, &state_of(&old.rec)) {
                tracing::warn!("{}: cannot restore the name {:?}: {e}", dir.display(), old.rec.name);
            }
            return Err(e);
        }
        self.notify(&user, &old, ChangeKind::Folders);
        Ok(())
    }

    /// Delete a folder and every message in it (IMAP DELETE). Not INBOX.
    /// Its children stay; while there are any, [`MailboxStore::list`] shows
    /// the name as `\Noselect` (RFC 3501 §6.3.4).
    pub fn delete_folder(&self, user: &str, name: &str) -> Result<(), MailboxError> {
        let user = user_key(user)?;
        let name = canonical_folder(name);
        if name == INBOX {
            return Err(MailboxError::InvalidFolderName(INBOX.into(), "INBOX cannot be deleted"));
        }
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        let f = self.folder_locked(&user, name)?;
        let dir = self.disk.folder_dir(&user, f.fid);
        let removed = self.disk.remove_folder(&user, f.fid);
        if removed.is_err() && dir.exists() {
            return removed.map_err(|e| MailboxError::io(dir, e));
        }
        // the directory is gone (perhaps not durably, the error says so):
        // so is the folder, or its listing would offer what is not there
        let mut batch = sled::Batch::default();
        batch.remove(index::folder_key(&user, f.fid));
        for k in self.tree.scan_prefix(index::message_prefix(&user, f.fid)).keys() {
            batch.remove(k?);
        }
        for k in self.tree.scan_prefix(index::parse_prefix(&user, f.fid)).keys() {
            batch.remove(k?);
        }
        let applied = self.apply(batch);
        self.listings.forget(&user, f.fid);
        applied?;
        self.notify(&user, &f, ChangeKind::Folders);
        removed.map_err(|e| MailboxError::io(dir, e))
    }

    /// Mark a folder subscribed or not (IMAP SUBSCRIBE / UNSUBSCRIBE).
    pub fn set_subscribed(&self, user: &str, name: &str, subscribed: bool) -> Result<(), MailboxError> {
        let user = user_key(user)?;
        let lock = self.writer(&user);
        let _held = lock.lock_or_recover();
        let mut f = self.folder_locked(&user, name)?;
        f.rec.subscribed = subscribed;
        self.insert(index::folder_key(&user, f.fid), index::encode(&f.rec))?;
        Ok(())
    }

    /// Hear about every change to `user`'s folders from now on.
    pub fn subscribe(&self, user: &str) -> Result<broadcast::Receiver<Change>, MailboxError> {
        Ok(self.notifier.subscribe(&user_key(user)?))
    }

    /// Take `user`'s maildrop exclusively (POP3); `InUse` if another
    /// session holds it. Released when the lock is dropped.
    pub fn lock_maildrop(&self, user: &str) -> Result<MaildropLock, MailboxError> {
        let user = user_key(user)?;
        self.notifier.lock_maildrop(&user).ok_or(MailboxError::InUse(user))
    }

    /// Ask sled to write its buffers (not an fsync; see the module docs).
    pub fn flush(&self) -> Result<(), MailboxError> {
        self.faults.check(Step::Flush).map_err(sled::Error::Io)?;
        self.tree.flush()?;
        Ok(())
    }

    // ------------------------------------------------------------ helpers

    /// Every index write: one atomic batch, through the fault seam.
    fn apply(&self, batch: sled::Batch) -> Result<(), MailboxError> {
        self.faults.check(Step::Index).map_err(sled::Error::Io)?;
        Ok(self.tree.apply_batch(batch)?)
    }

    fn insert(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), MailboxError> {
        let mut batch = sled::Batch::default();
        batch.insert(key, value);
        self.apply(batch)
    }

    fn writer(&self, user: &str) -> Arc<Mutex<()>> {
        let mut w = self.writers.lock_or_recover();
        w.entry(user.to_string()).or_default().clone()
    }

    fn notify(&self, user: &str, f: &Folder, kind: ChangeKind) {
        self.notifier.send(user, Change { folder: f.rec.name.clone(), uidvalidity: f.rec.uidvalidity, kind });
    }

    /// The next MODSEQ of a folder (HIGHESTMODSEQ raised in `rec`, which
    /// the caller writes to the index). When it reaches the fsynced floor,
    /// the floor moves [`MODSEQ_STEP`] ahead first (with the UIDNEXT floor),
    /// so no MODSEQ is handed out twice even if sled loses its last writes.
    fn next_modseq(&self, dir: &Path, rec: &mut FolderRecord) -> Result<u64, MailboxError> {
        let next = rec.highestmodseq.max(1) + 1;
        if next >= rec.durable_modseq {
            let mut raised = rec.clone();
            raised.durable_modseq = next + MODSEQ_STEP;
            self.disk.write_state(dir, &state_of(&raised)).map_err(|e| MailboxError::io(dir, e))?;
            rec.durable_modseq = raised.durable_modseq;
            rec.durable_uidnext = rec.uidnext;
        }
        rec.highestmodseq = next;
        Ok(next)
    }

    /// Put a new file at the first free UID from UIDNEXT on, with `put`.
    fn write_new(
        &self,
        dir: &Path,
        rec: &FolderRecord,
        mut put: impl FnMut(u32) -> io::Result<()>,
    ) -> Result<u32, MailboxError> {
        let mut uid = rec.uidnext.max(1);
        for _ in 0..MAX_UID_PROBES {
            if uid == u32::MAX {
                break;
            }
            match put(uid) {
                Ok(()) => return Ok(uid),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    tracing::warn!(folder = %rec.name, uid, "a message file already holds UIDNEXT; skipping it");
                    uid += 1;
                }
                Err(e) => return Err(MailboxError::io(dir, e)),
            }
        }
        Err(MailboxError::UidsExhausted(rec.name.clone()))
    }

    fn folder_records(&self, user: &str) -> Result<Vec<Folder>, MailboxError> {
        let mut out = Vec::new();
        for r in self.tree.scan_prefix(index::folder_prefix(user)) {
            let (k, v) = r?;
            let Some((_, fid)) = index::parse_folder_key(&k) else { continue };
            out.push(Folder { fid, rec: index::decode(&k, &v)? });
        }
        Ok(out)
    }

    fn lookup(&self, user: &str, name: &str) -> Result<Option<Folder>, MailboxError> {
        let name = canonical_folder(name);
        Ok(self.folder_records(user)?.into_iter().find(|f| f.rec.name == name))
    }

    /// The named folder; a user who has never been seen gets the defaults
    /// first. Takes the user's writer lock for that: never call it while
    /// holding the lock (use [`MailboxStore::folder_locked`]).
    fn find(&self, user: &str, name: &str) -> Result<Folder, MailboxError> {
        if let Some(f) = self.lookup(user, name)? {
            return Ok(f);
        }
        if self.lookup(user, INBOX)?.is_none() {
            // a user never seen, or whose defaults a failure cut short
            let lock = self.writer(user);
            let _held = lock.lock_or_recover();
            self.ensure_defaults(user)?;
            if let Some(f) = self.lookup(user, name)? {
                return Ok(f);
            }
        }
        Err(MailboxError::NoSuchFolder { user: user.to_string(), folder: name.to_string() })
    }

    /// [`MailboxStore::find`] for callers already holding the user's writer lock.
    fn folder_locked(&self, user: &str, name: &str) -> Result<Folder, MailboxError> {
        self.ensure_defaults(user)?;
        self.lookup(user, name)?
            .ok_or_else(|| MailboxError::NoSuchFolder { user: user.to_string(), folder: name.to_string() })
    }

    /// SPEC §9: every user has INBOX, Sent, Drafts, Trash and Junk. Made on
    /// first use; a user who later deletes Trash does not get it back. INBOX
    /// is made last (and cannot be deleted): while it is missing, a failure
    /// cut the defaults short and the missing ones are made now. Each
    /// default keeps its place (INBOX is folder 1) so listings come out in
    /// the usual order. Hold the user's writer lock.
    fn ensure_defaults(&self, user: &str) -> Result<(), MailboxError> {
        let existing = self.folder_records(user)?;
        if existing.iter().any(|f| f.rec.name == INBOX) {
            return Ok(());
        }
        let order = DEFAULT_FOLDERS.iter().enumerate().skip(1).chain(DEFAULT_FOLDERS.iter().enumerate().take(1));
        let mut taken: Vec<u32> = existing.iter().map(|f| f.fid).collect();
        for (i, &(name, special)) in order {
            if existing.iter().any(|f| f.rec.name == name) {
                continue;
            }
            let place = i as u32 + 1;
            let fid = if taken.contains(&place) { taken.iter().max().map_or(1, |m| m + 1) } else { place };
            self.new_folder_at(user, fid, name, special)?;
            taken.push(fid);
        }
        Ok(())
    }

    fn new_folder(&self, user: &str, name: &str, special_use: Option<SpecialUse>) -> Result<Folder, MailboxError> {
        let fid = self.folder_records(user)?.iter().map(|f| f.fid).max().map_or(1, |m| m + 1);
        self.new_folder_at(user, fid, name, special_use)
    }

    fn new_folder_at(
        &self,
        user: &str,
        fid: u32,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<Folder, MailboxError> {
        let uidvalidity = {
            let mut last = self.last_uidvalidity.lock_or_recover();
            // unique per folder ever made here, and time-based so that a
            // store rebuilt from scratch does not repeat old values
            *last = (crate::util::now_secs() as u32).max(last.saturating_add(1));
            *last
        };
        let rec = FolderRecord {
            name: name.to_string(),
            uidvalidity,
            uidnext: 1,
            durable_uidnext: 1,
            special_use,
            subscribed: true,
            highestmodseq: 1,
            durable_modseq: MODSEQ_STEP,
        };
        self.disk
            .create_folder(user, fid, &state_of(&rec))
            .map_err(|e| MailboxError::io(self.disk.user_dir(user), e))?;
        if let Err(e) = self.insert(index::folder_key(user, fid), index::encode(&rec)) {
            // not made: take the directory back, or the next attempt at the
            // same folder id would find it in the way
            self.disk.discard_folder(user, fid);
            return Err(e);
        }
        // a folder deleted before had this id: nothing of its listing stays
        self.listings.forget(user, fid);
        Ok(Folder { fid, rec })
    }

    fn message_infos(&self, user: &str, fid: u32) -> Result<Vec<MessageInfo>, MailboxError> {
        let mut out = Vec::new();
        for r in self.tree.scan_prefix(index::message_prefix(user, fid)) {
            let (k, v) = r?;
            let Some(uid) = index::uid_of(&k) else { continue };
            let rec: MessageRecord = index::decode(&k, &v)?;
            out.push(MessageInfo {
                uid,
                size: rec.size,
                internal_date: rec.date,
                flags: rec.flags,
                modseq: rec.modseq,
            });
        }
        Ok(out)
    }

    /// A folder's listing: from memory, else read from the index (under
    /// the user's writer lock: never call it holding the lock, use
    /// [`MailboxStore::snapshot_locked`]).
    fn snapshot(&self, user: &str, fid: u32) -> Result<Snapshot, MailboxError> {
        if let Some(s) = self.listings.get(user, fid) {
            return Ok(s);
        }
        let lock = self.writer(user);
        let _held = lock.lock_or_recover();
        self.snapshot_locked(user, fid)
    }

    /// [`MailboxStore::snapshot`] for callers holding the user's writer
    /// lock: no write can come between the read and the caching.
    fn snapshot_locked(&self, user: &str, fid: u32) -> Result<Snapshot, MailboxError> {
        if let Some(s) = self.listings.get(user, fid) {
            return Ok(s);
        }
        let snap = self.read_listing(user, fid)?;
        self.listings.put(user, fid, snap.clone());
        Ok(snap)
    }

    /// A folder's listing as the index has it (the cache's source).
    pub(super) fn read_listing(&self, user: &str, fid: u32) -> Result<Snapshot, MailboxError> {
        let messages = self.message_infos(user, fid)?;
        // read the record after the messages, so UIDNEXT is past every UID listed
        let k = index::folder_key(user, fid);
        let Some(v) = self.tree.get(&k)? else {
            return Err(MailboxError::NoSuchFolder { user: user.to_string(), folder: format!("#{fid}") });
        };
        let rec: FolderRecord = index::decode(&k, &v)?;
        let n = numbers(&rec);
        Ok(Snapshot {
            uidvalidity: n.uidvalidity,
            uidnext: n.uidnext,
            highestmodseq: n.highestmodseq,
            messages: Arc::new(messages),
        })
    }

    /// The listing of `folder` as the index has it, bypassing the cache
    /// (tests compare the two).
    #[cfg(test)]
    pub(super) fn listing_from_index(&self, user: &str, folder: &str) -> Result<Snapshot, MailboxError> {
        let user = user_key(user)?;
        let f = self.find(&user, folder)?;
        self.read_listing(&user, f.fid)
    }

    fn info(&self, user: &str, f: &Folder, snap: &Snapshot) -> Result<FolderInfo, MailboxError> {
        let msgs = &snap.messages;
        let prefix = format!("{}{DELIMITER}", f.rec.name);
        let has_children = self.folder_records(user)?.iter().any(|c| c.rec.name.starts_with(&prefix));
        Ok(FolderInfo {
            name: f.rec.name.clone(),
            special_use: f.rec.special_use,
            uidvalidity: f.rec.uidvalidity,
            uidnext: f.rec.uidnext,
            messages: msgs.len() as u32,
            unseen: msgs.iter().filter(|m| !m.flags.contains(&super::Flag::Seen)).count() as u32,
            subscribed: f.rec.subscribed,
            has_children,
        })
    }
}

fn numbers(rec: &FolderRecord) -> Numbers {
    Numbers { uidvalidity: rec.uidvalidity, uidnext: rec.uidnext, highestmodseq: rec.highestmodseq }
}

fn state_of(rec: &FolderRecord) -> FolderState {
    FolderState {
        name: rec.name.clone(),
        uidvalidity: rec.uidvalidity,
        uidnext: rec.uidnext,
        special_use: rec.special_use,
        highestmodseq: rec.durable_modseq,
    }
}
