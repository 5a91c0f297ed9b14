//! The queue's index (see [`super::store`]: the current state of every
//! queued message whose state changed since it was spooled) in a sled
//! database of its own under `data_dir/queue/`, apart from the shared one
//! of the data directory, for two reasons. Its page cache is small
//! (4 MiB): the queue reads an entry only when a message is due or an
//! operator asks, so memory stays bounded whatever the queue's size. And
//! it can be thrown away when empty: sled never gives disk space back, so
//! an index that held a million deferred messages would keep their size
//! long after they left.
//!
//! The database lives in `queue/index.<n>`, and `queue/current` names the
//! generation `n` (written atomically: a temporary file, fsynced, renamed,
//! the directory fsynced). Once the number of entries reaches zero and
//! stays there for a second, and the database has grown past
//! [`RESET_ABOVE`] on disk, a fresh generation `n+1` is created and
//! fsynced (sled's flush does not fsync; we sync its files and directory),
//! `current` is switched to it under the write lock, with the count
//! checked there once more (every writer holds the read lock while it
//! writes and counts, so no entry can arrive in between, and none is ever
//! written to the old database after the switch), and `index.<n>` is then
//! removed. Only an empty index is dropped, so a crash at any step loses
//! nothing: before the switch the new directory is a leftover, after it
//! the old one is, and at open every generation but the current one is
//! removed.
//!
//! The count is exact: every write returns what it replaced, and the
//! entries there when the store opened are counted by reconciliation's
//! walk ([`Index::counted`]); until then no reset happens.
//!
//! Data directories from before kept the index in the shared database's
//! `queue` tree: at open its entries are copied in (an entry already in
//! the new index is kept: a crash after an earlier copy left both, and
//! they are the same), the new index is fsynced, and only then is the old
//! tree dropped.

use super::store::StoreError;
use crate::util::{create_dir_durably, fsync_dir, write_file_durably, LockExt, RwLockExt};
use sled::IVec;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// sled's page cache for the index.
const CACHE: u64 = 4 << 20;
/// How long the index must stay empty before it is replaced.
const GRACE: Duration = Duration::from_secs(1);
/// Bytes on disk up to which an empty index is kept (a fresh sled
/// database takes a few hundred): replacing a small one gains little, and
/// a queue that empties often would otherwise switch every time.
pub const RESET_ABOVE: u64 = 1 << 20;
/// The shared database's tree that held the index before.
const OLD_TREE: &[u8] = b"queue";

/// Entries to store in one call ([`Index::apply_batch`]).
#[derive(Default)]
pub struct Batch(Vec<(Vec<u8>, Vec<u8>)>);

impl Batch {
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.push((key, value));
    }
}

struct Generation {
    n: u64,
    path: PathBuf,
    db: sled::Db,
}

struct Inner {
    /// `data_dir/queue`.
    dir: PathBuf,
    current: RwLock<Arc<Generation>>,
    /// Entries in the index: exact once `known` (see the module docs).
    count: AtomicI64,
    known: AtomicBool,
    /// A reset is waiting out its grace period.
    pending: AtomicBool,
    /// One reset at a time.
    resetting: Mutex<()>,
}

/// The queue's index; cloning shares it.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

fn generation_name(n: u64) -> String {
    format!("index.{n}")
}

fn read_current(dir: &Path) -> Result<Option<u64>, StoreError> {
    let path = dir.join("current");
    match fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Corrupt(path.display().to_string(), format!("not a generation number: {s:?}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_current(dir: &Path, n: u64) -> io::Result<()> {
    write_file_durably(&dir.join("current"), format!("{n}\n").as_bytes(), 0o600)
}

/// fsync every file under `dir`, then the directories themselves.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            sync_tree(&e.path())?;
        } else {
            fs::File::open(e.path())?.sync_all()?;
        }
    }
    fsync_dir(dir)
}

/// Bytes of the files under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

impl Generation {
    /// Open generation `n` in `dir`. sled's lock on a database this
    /// process has just closed is let go of only once its last background
    /// task is done (a moment), so a lock refused is tried again for a
    /// while; another process cannot hold it, as it would hold the shared
    /// database's lock first.
    fn open(dir: &Path, n: u64) -> Result<Generation, StoreError> {
        let path = dir.join(generation_name(n));
        let existed = path.exists();
        let deadline = Instant::now() + Duration::from_secs(20);
        let db = loop {
            match sled::Config::new().path(&path).cache_capacity(CACHE).open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                r => break r?,
            }
        };
        let g = Generation { n, path, db };
        if !existed {
            // a crash must not leave `current` naming a half-written database
            g.sync()?;
            fsync_dir(dir)?;
        }
        Ok(g)
    }

    /// Flush and fsync sled's files and directory.
    fn sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        sync_tree(&self.path)?;
        Ok(())
    }
}

impl Index {
    /// Open the index of the queue in `data_dir`, removing leftover
    /// generations and moving the entries of the shared database's old
    /// `queue` tree in (see the module docs).
    pub fn open(shared: &sled::Db, data_dir: &Path) -> Result<Index, StoreError> {
        let dir = data_dir.join("queue");
        create_dir_durably(&dir)?;
        let n = match read_current(&dir)? {
            Some(n) => n,
            None => {
                // before its database exists: any generation found is a leftover
                write_current(&dir, 1)?;
                1
            }
        };
        let keep = generation_name(n);
        let mut removed = false;
        for e in fs::read_dir(&dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            let leftover = name.strip_prefix("index.").is_some_and(|g| g.parse::<u64>().is_ok() && *name != keep)
                || name.starts_with(".current.tmp");
            if leftover {
                let path = dir.join(&*name);
                let r = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                r?;
                removed = true;
            }
        }
        if removed {
            fsync_dir(&dir)?;
        }
        let generation = Generation::open(&dir, n)?;
        migrate(shared, &generation)?;
        Ok(Index {
            inner: Arc::new(Inner {
                dir,
                current: RwLock::new(Arc::new(generation)),
                count: AtomicI64::new(0),
                known: AtomicBool::new(false),
                pending: AtomicBool::new(false),
                resetting: Mutex::new(()),
            }),
        })
    }

    fn db(&self) -> sled::Db {
        self.inner.current.read_or_recover().db.clone()
    }

    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        self.db().get(key)
    }

    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> sled::Iter {
        self.db().scan_prefix(prefix)
    }

    pub fn insert<K: AsRef<[u8]>, V: Into<IVec>>(&self, key: K, value: V) -> sled::Result<Option<IVec>> {
        let g = self.inner.current.read_or_recover();
        let before = g.db.insert(key, value)?;
        if before.is_none() {
            self.inner.count.fetch_add(1, SeqCst);
        }
        Ok(before)
    }

    pub fn remove<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        let g = self.inner.current.read_or_recover();
        let before = g.db.remove(key)?;
        if before.is_some() {
            let left = self.inner.count.fetch_sub(1, SeqCst) - 1;
            drop(g);
            if left == 0 && self.inner.known.load(SeqCst) {
                self.emptied();
            }
        }
        Ok(before)
    }

    /// Store every entry of `batch` (each on its own: they are independent).
    pub fn apply_batch(&self, batch: Batch) -> sled::Result<()> {
        for (k, v) in batch.0 {
            self.insert(k, v)?;
        }
        Ok(())
    }

    /// Ask sled to write its buffers (not an fsync).
    pub fn flush(&self) -> sled::Result<usize> {
        self.db().flush()
    }

    /// Reconciliation found `entries` that were in the index when the
    /// store opened: with what was written since, the count is now exact.
    pub fn counted(&self, entries: usize) {
        let total = self.inner.count.fetch_add(i64::try_from(entries).unwrap_or(i64::MAX), SeqCst)
            + i64::try_from(entries).unwrap_or(i64::MAX);
        self.inner.known.store(true, SeqCst);
        if total == 0 {
            self.emptied();
        }
    }

    /// The index just became empty: replace it once it has stayed so for
    /// `GRACE`, on a thread of its own (the caller may be delivering).
    fn emptied(&self) {
        if self.inner.pending.swap(true, SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new().name("queue-index".into()).spawn(move || {
            std::thread::sleep(GRACE);
            // gone with its store
            let Some(inner) = weak.upgrade() else { return };
            inner.pending.store(false, SeqCst);
            match (Index { inner }).reset_if_empty() {
                Ok(true) => tracing::info!("the empty queue index was replaced by a fresh one"),
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot replace the empty queue index: {e}"),
            }
        });
        if spawned.is_err() {
            self.inner.pending.store(false, SeqCst);
        }
    }

    fn known_empty(&self) -> bool {
        self.inner.known.load(SeqCst) && self.inner.count.load(SeqCst) == 0
    }

    /// Replace the database by a fresh one if the index is empty and has
    /// grown past [`RESET_ABOVE`] on disk (see the module docs). Returns
    /// whether it did.
    pub fn reset_if_empty(&self) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let _one = inner.resetting.lock_or_recover();
        let (n, old_path, db) = {
            let g = inner.current.read_or_recover();
            (g.n, g.path.clone(), g.db.clone())
        };
        if !self.known_empty() || disk_usage(&old_path) <= RESET_ABOVE {
            return Ok(false);
        }
        // the count says empty; sled must agree (an entry it holds and the
        // count missed would be lost with the database)
        if db.first()?.is_some() {
            tracing::warn!("the queue index holds entries its count missed; it is kept until the next start");
            inner.known.store(false, SeqCst);
            return Ok(false);
        }
        drop(db);
        let next_path = inner.dir.join(generation_name(n + 1));
        if next_path.exists() {
            fs::remove_dir_all(&next_path)?;
        }
        let next = Generation::open(&inner.dir, n + 1)?;
        let old = {
            let mut g = inner.current.write_or_recover();
            // writers count under the read lock: nothing arrives meanwhile
            let switched = self.known_empty()
                && match write_current(&inner.dir, n + 1) {
                    Ok(()) => true,
                    // renamed but not fsynced: `current` says n+1 now (and
                    // either generation is empty after a crash)
                    Err(e) => {
                        tracing::warn!("queue index pointer {}: {e}", inner.dir.join("current").display());
                        matches!(read_current(&inner.dir), Ok(Some(c)) if c == n + 1)
                    }
                };
            if !switched {
                drop(g);
                drop(next);
                let _ = fs::remove_dir_all(&next_path);
                return Ok(false);
            }
            std::mem::replace(&mut *g, Arc::new(next))
        };
        // a walk still reading the old database keeps it open; its files
        // go once it is done
        drop(old);
        fs::remove_dir_all(&old_path)?;
        fsync_dir(&inner.dir)?;
        Ok(true)
    }

    /// The generation in use (for tests and diagnostics).
    pub fn generation(&self) -> u64 {
        self.inner.current.read_or_recover().n
    }

    /// The current database, for tests that damage it on purpose.
    #[cfg(test)]
    pub(crate) fn raw(&self) -> sled::Db {
        self.db()
    }
}

/// Move the entries of the shared database's old `queue` tree into `to`.
fn migrate(shared: &sled::Db, to: &Generation) -> Result<(), StoreError> {
    if !shared.tree_names().iter().any(|n| &n[..] == OLD_TREE) {
        return Ok(());
    }
    let old = shared.open_tree(OLD_TREE)?;
    let mut moved = 0usize;
    for r in old.iter() {
        let (k, v) = r?;
        if to.db.compare_and_swap(&k, None::<&[u8]>, Some(v))?.is_ok() {
            moved += 1;
        }
    }
    // durable in the new index before it leaves the old one
    to.sync()?;
    shared.drop_tree(OLD_TREE)?;
    shared.flush()?;
    if moved > 0 {
        tracing::info!(entries = moved, "queue index moved out of the shared database into {}", to.path.display());
    }
    Ok(())
}
