//! Small helpers shared across modules: durable file writes, time, and
//! locks that survive a panicked holder ([`LockExt`], [`RwLockExt`]).
//!
//! Why recovering from a poisoned lock is right here: a poisoned lock means
//! some thread panicked while holding it. That is a bug, and the panic has
//! already ended its session or task; refusing the lock from then on would
//! turn that one bug into a panic in every later caller, and the server
//! would stop serving mail for data that is still good. It is still good
//! because every lock taken through these helpers guards a short critical
//! section of plain collection and counter updates that runs no caller's
//! code and leaves the data valid between any two statements: connection
//! and throttle counts, idle-session and TLS-config caches, the queue's
//! in-memory index, open-file tables, fault-seam rules. The worst a panic
//! part way can leave is a stale entry (a slot not given back, a session
//! not returned to the pool), never a broken structure. The mailbox's
//! per-user writer locks guard `()`: they only serialise writes, and the
//! files and index keep their own invariants by the order of the steps (see
//! [`crate::mailbox`]), so a writer that died half way leaves what a crash
//! at that point would, which the store is built to survive (the next
//! append steps over a file at UIDNEXT; start-up reconciliation repairs the
//! rest). A lock whose data is only consistent again at the end of a
//! section (an invariant broken across steps) must not use these helpers;
//! there is none today.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// fsync a directory, so that entries created or renamed in it survive a crash.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `dir` (and parents) and make the new entry durable in its parent.
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Write a whole file atomically and durably: a temporary file in the same
/// directory, fsynced, renamed over the target, and the directory fsynced.
pub fn write_file_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => Path::new(".").to_path_buf(),
    };
    create_dir_durably(&dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fsync_dir(&dir)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// RFC 5322 date-time, e.g. `Sun, 22 Nov 2026 10:00:00 +0000`.
pub fn rfc5322_date(secs: u64) -> String {
    mail_builder::headers::date::Date::new(secs as i64).to_rfc822()
}

/// RFC 3339 in UTC, to the second, for people and JSON.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// Bytes available to us on the file system holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// [`Mutex::lock`] that takes the data over from a holder that panicked
/// (see the module docs for why that is safe here).
pub trait LockExt<T: ?Sized> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that take the data over from a
/// holder that panicked (see the module docs for why that is safe here).
pub trait RwLockExt<T: ?Sized> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T>;
    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Panic in another thread while holding the lock, poisoning it.
    fn poison<L: Send + Sync + 'static>(lock: &Arc<L>, hold: fn(&L)) {
        let l = lock.clone();
        let joined = std::thread::spawn(move || {
            hold(&l);
        })
        .join();
        assert!(joined.is_err(), "the holder was meant to panic");
    }

    #[test]
    fn a_poisoned_mutex_still_hands_out_its_data() {
        let m = Arc::new(Mutex::new(vec![1]));
        poison(&m, |m| {
            let mut g = m.lock().unwrap();
            g.push(2);
            panic!("a holder panics");
        });
        assert!(m.is_poisoned());
        m.lock_or_recover().push(3);
        assert_eq!(*m.lock_or_recover(), [1, 2, 3]);
    }

    #[test]
    fn a_poisoned_rwlock_still_reads_and_writes() {
        let l = Arc::new(RwLock::new(1));
        poison(&l, |l| {
            let mut g = l.write().unwrap();
            *g = 2;
            panic!("a writer panics");
        });
        assert!(l.is_poisoned());
        assert_eq!(*l.read_or_recover(), 2);
        *l.write_or_recover() = 3;
        assert_eq!(*l.read_or_recover(), 3);
    }
}
