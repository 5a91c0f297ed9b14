//! The files of the mailbox store and the fsyncs that make them durable
//! (see the layout in the parent module). Names that start with `.` are
//! ours and temporary: `.tmp-*` message files not yet linked, `.new-f*`
//! folders not yet renamed into place, `.del-f*` folders being removed.
//! Reconciliation deletes them. Nothing here touches the index.
//!
//! Every operation first asks the fault seam ([`super::fault`]) whether to
//! fail, and every failure cleans up what it made before returning, so a
//! failed write leaves no name behind that a retry or a restart would take
//! for a message.

use super::fault::{Faults, Step};
use crate::util::fsync_dir;
use serde::{Deserialize, Serialize};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::index::SpecialUse;

pub const STATE_FILE: &str = "folder.json";

/// What a folder directory says about itself; enough to rebuild its index
/// record. `uidnext` is a floor: the real UIDNEXT is at least this and at
/// least one past every UID on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderState {
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    #[serde(default)]
    pub special_use: Option<SpecialUse>,
    /// A MODSEQ floor: above every MODSEQ handed out (0 in folders made
    /// before CONDSTORE, until their next change).
    #[serde(default)]
    pub highestmodseq: u64,
}

pub struct Disk {
    root: PathBuf,
    faults: Arc<Faults>,
}

/// `[a-z0-9.@_+-]` stay; every other byte (and a leading `.`) becomes `%XX`.
pub fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for (i, b) in user.bytes().enumerate() {
        let keep = b.is_ascii_lowercase() || b.is_ascii_digit() || b"@_+-".contains(&b) || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn unescape_user(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn message_name(uid: u32) -> String {
    uid.to_string()
}

/// The UID a message file name stands for.
pub fn parse_message_name(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) || name.starts_with('0') {
        return None;
    }
    name.parse().ok()
}

/// A message file's internal date (its mtime), Unix seconds.
pub fn internal_date(meta: &fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn folder_dir_name(fid: u32) -> String {
    format!("f{fid}")
}

pub fn parse_folder_dir_name(name: &str) -> Option<u32> {
    name.strip_prefix('f')?.parse().ok()
}

/// A name no other writer in this process uses.
fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl Disk {
    #[cfg(test)]
    pub fn new(root: PathBuf) -> Disk {
        Disk::with_faults(root, Arc::new(Faults::none()))
    }

    pub fn with_faults(root: PathBuf, faults: Arc<Faults>) -> Disk {
        Disk { root, faults }
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        self.faults.check(Step::Folder)?;
        DirBuilder::new().mode(0o700).create(path)
    }

    fn rename_dir(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Step::Folder)?;
        fs::rename(from, to)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.faults.check(Step::Folder)?;
        fs::remove_dir_all(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.check(Step::Unlink)?;
        fs::remove_file(path)
    }

    /// A new file with `bytes`, fsynced (not yet its directory). With the
    /// mtime set when `date` is given.
    fn write_synced(&self, path: &Path, bytes: &[u8], date: Option<u64>) -> io::Result<()> {
        self.faults.check(Step::Create)?;
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        if let Err(e) = self.faults.check(Step::Write) {
            // a disk that fills up mid-write leaves a partial file behind
            let _ = f.write_all(&bytes[..bytes.len() / 2]);
            return Err(e);
        }
        f.write_all(bytes)?;
        if let Some(date) = date {
            f.set_modified(UNIX_EPOCH + Duration::from_secs(date))?;
        }
        self.faults.check(Step::Fsync)?;
        f.sync_all()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.root.join(escape_user(user))
    }

    pub fn folder_dir(&self, user: &str, fid: u32) -> PathBuf {
        self.user_dir(user).join(folder_dir_name(fid))
    }

    pub fn message_path(&self, user: &str, fid: u32, uid: u32) -> PathBuf {
        self.folder_dir(user, fid).join(message_name(uid))
    }

    /// Create the root directory durably.
    pub fn init(&self) -> io::Result<()> {
        crate::util::create_dir_durably(&self.root)
    }

    /// Make a folder directory with its state file, atomically: built under
    /// `.new-f<id>`, fsynced, renamed into place, the user directory fsynced.
    pub fn create_folder(&self, user: &str, fid: u32, state: &FolderState) -> io::Result<()> {
        let udir = self.user_dir(user);
        if !udir.is_dir() {
            self.mkdir(&udir).or_else(|e| if e.kind() == io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })?;
        }
        // every time, not only after the mkdir: an earlier attempt may
        // have made the directory and then failed to make it durable
        self.sync_dir(&self.root)?;
        let tmp = udir.join(format!(".new-{}", folder_dir_name(fid)));
        if tmp.exists() {
            self.remove_dir_all(&tmp)?;
        }
        self.mkdir(&tmp)?;
        let built = self
            .write_synced(&tmp.join(STATE_FILE), &serde_json::to_vec(state).unwrap_or_default(), None)
            .and_then(|()| self.sync_dir(&tmp))
            .and_then(|()| self.rename_dir(&tmp, &udir.join(folder_dir_name(fid))));
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = self.sync_dir(&udir) {
            // in place but not known to be durable, and the caller will not
            // index it: take it back, or it would stand in the way of the
            // retry and come back as a folder at the next start
            self.discard_folder(user, fid);
            return Err(e);
        }
        Ok(())
    }

    /// Replace a folder's state file durably (rename, a raised UIDNEXT floor).
    pub fn write_state(&self, dir: &Path, state: &FolderState) -> io::Result<()> {
        self.faults.check(Step::State)?;
        crate::util::write_file_durably(&dir.join(STATE_FILE), &serde_json::to_vec(state).unwrap_or_default(), 0o600)
    }

    pub fn read_state(dir: &Path) -> io::Result<FolderState> {
        let bytes = fs::read(dir.join(STATE_FILE))?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Write a message under `uid` durably, its mtime set to the internal
    /// date. Fails with `AlreadyExists` if a file already holds that UID: a
    /// hard link never overwrites, so no UID is ever written twice.
    pub fn write_message(&self, dir: &Path, uid: u32, date: u64, bytes: &[u8]) -> io::Result<()> {
        let tmp = dir.join(format!(".tmp-{}", nonce()));
        let name = dir.join(message_name(uid));
        let linked = self.write_synced(&tmp, bytes, Some(date)).and_then(|()| self.link(&tmp, &name));
        let _ = fs::remove_file(&tmp);
        linked?;
        if let Err(e) = self.sync_dir(dir) {
            // Linked but not known to be durable, and never acknowledged:
            // take the name back, or a restart would re-index it and the
            // retry the caller makes would deliver it a second time.
            let _ = fs::remove_file(&name).and_then(|()| fsync_dir(dir));
            return Err(e);
        }
        Ok(())
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Step::Link)?;
        fs::hard_link(from, to)
    }

    /// Give an existing message file a second name in `dir` (IMAP COPY:
    /// same bytes, same internal date); the caller fsyncs `dir` once for a
    /// batch with [`Disk::sync_dir`].
    pub fn link_message(&self, from: &Path, dir: &Path, uid: u32) -> io::Result<()> {
        self.link(from, &dir.join(message_name(uid)))
    }

    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.check(Step::DirSync)?;
        fsync_dir(dir)
    }

    /// Unlink message files (already-missing ones are fine) and fsync the directory.
    pub fn remove_messages(&self, dir: &Path, names: &[String]) -> io::Result<()> {
        for n in names {
            match self.remove_file(&dir.join(n)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.sync_dir(dir)
    }

    /// Take a folder directory away atomically (renamed aside, then removed).
    pub fn remove_folder(&self, user: &str, fid: u32) -> io::Result<()> {
        let udir = self.user_dir(user);
        let aside = udir.join(format!(".del-{}", folder_dir_name(fid)));
        if aside.exists() {
            self.remove_dir_all(&aside)?;
        }
        self.rename_dir(&udir.join(folder_dir_name(fid)), &aside)?;
        self.sync_dir(&udir)?;
        // the folder is gone for good once the rename is durable; what is
        // left under `.del-` is reconciliation's to remove
        if let Err(e) = self.remove_dir_all(&aside) {
            tracing::warn!("cannot remove {}: {e}; removed at the next start", aside.display());
        }
        Ok(())
    }

    /// Take back names a failed write made (best effort, no fault seam:
    /// this is the cleanup after a failure, not a step of the write).
    pub fn discard_messages(&self, dir: &Path, names: &[String]) {
        for n in names {
            let _ = fs::remove_file(dir.join(n));
        }
        let _ = fsync_dir(dir);
    }

    /// Take back a folder a failed creation made (best effort, like
    /// [`Disk::discard_messages`]).
    pub fn discard_folder(&self, user: &str, fid: u32) {
        let _ = fs::remove_dir_all(self.folder_dir(user, fid));
        let _ = fsync_dir(&self.user_dir(user));
    }

    pub fn read_message(path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
}
