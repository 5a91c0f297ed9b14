//! The files of the mailbox store and the fsyncs that make them durable
//! (see the layout in the parent module). Names that start with `.` are
//! ours and temporary: `.tmp-*` message files not yet linked, `.new-f*`
//! folders not yet renamed into place, `.del-f*` folders being removed.
//! Reconciliation deletes them. Nothing here touches the index.

use crate::util::fsync_dir;
use serde::{Deserialize, Serialize};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
}

pub struct Disk {
    root: PathBuf,
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

fn mkdir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o700).create(path)
}

/// A name no other writer in this process uses.
fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Disk {
    pub fn new(root: PathBuf) -> Disk {
        Disk { root }
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
            mkdir(&udir).or_else(|e| if e.kind() == io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })?;
            fsync_dir(&self.root)?;
        }
        let tmp = udir.join(format!(".new-{}", folder_dir_name(fid)));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        mkdir(&tmp)?;
        write_synced(&tmp.join(STATE_FILE), &serde_json::to_vec(state).unwrap_or_default())?;
        fsync_dir(&tmp)?;
        fs::rename(&tmp, udir.join(folder_dir_name(fid)))?;
        fsync_dir(&udir)
    }

    /// Replace a folder's state file durably (rename, a raised UIDNEXT floor).
    pub fn write_state(&self, dir: &Path, state: &FolderState) -> io::Result<()> {
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
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(bytes)?;
            f.set_modified(UNIX_EPOCH + Duration::from_secs(date))?;
            f.sync_all()
        })();
        let linked = written.and_then(|()| fs::hard_link(&tmp, dir.join(message_name(uid))));
        let _ = fs::remove_file(&tmp);
        linked?;
        fsync_dir(dir)
    }

    /// Give an existing message file a second name in `dir` (IMAP COPY:
    /// same bytes, same internal date); the caller fsyncs `dir` once for a
    /// batch with [`Disk::sync_dir`].
    pub fn link_message(&self, from: &Path, dir: &Path, uid: u32) -> io::Result<()> {
        fs::hard_link(from, dir.join(message_name(uid)))
    }

    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fsync_dir(dir)
    }

    /// Unlink message files (already-missing ones are fine) and fsync the directory.
    pub fn remove_messages(&self, dir: &Path, names: &[String]) -> io::Result<()> {
        for n in names {
            match fs::remove_file(dir.join(n)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        fsync_dir(dir)
    }

    /// Take a folder directory away atomically (renamed aside, then removed).
    pub fn remove_folder(&self, user: &str, fid: u32) -> io::Result<()> {
        let udir = self.user_dir(user);
        let aside = udir.join(format!(".del-{}", folder_dir_name(fid)));
        if aside.exists() {
            fs::remove_dir_all(&aside)?;
        }
        fs::rename(udir.join(folder_dir_name(fid)), &aside)?;
        fsync_dir(&udir)?;
        fs::remove_dir_all(&aside)
    }

    pub fn read_message(path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
}
