//! The queue store: the spool (the truth for message bytes, fsynced by us)
//! plus a sled index of every queued message's current state.
//!
//! sled 0.34's `flush()` does not fsync (DEPENDENCIES.md), so the index may
//! lag the spool after a crash. [`QueueStore::open`] reconciles them: a
//! spool record the index does not know is re-indexed; an index entry whose
//! spool data is gone is dropped with a log line. A finished message leaves
//! a tombstone (`d/<segment>/<id>`) in the same atomic batch that removes
//! its entry, so that a restart never resurrects it; tombstones go when
//! their segment file is deleted, which happens once no live message is in it.

use super::id::{IdAllocator, QueueId};
use super::message::{Message, SpoolRef};
use super::spool::{self, SpoolReader, SpoolWriter, SEGMENT_LIMIT};
use crate::util::fsync_dir;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("queue spool: {0}")]
    Io(#[from] io::Error),
    #[error("queue index: {0}")]
    Index(#[from] sled::Error),
    #[error("queue index entry {0}: {1}")]
    Corrupt(String, String),
}

/// What start-up reconciliation found.
#[derive(Debug, Default)]
pub struct Recovery {
    pub messages: usize,
    pub reindexed: Vec<QueueId>,
    pub dropped: Vec<QueueId>,
    pub torn_segments: Vec<u32>,
    pub deleted_segments: usize,
}

#[derive(Default)]
struct Segments {
    live: HashMap<u32, usize>,
    active: u32,
}

struct Shared {
    tree: sled::Tree,
    dir: PathBuf,
    reader: SpoolReader,
    segments: Mutex<Segments>,
    subscriber: Mutex<Option<mpsc::UnboundedSender<QueueId>>>,
}

pub struct QueueStore {
    shared: Arc<Shared>,
    ids: IdAllocator,
    first_segment: u32,
    segment_limit: u64,
    writer: OnceLock<Result<SpoolWriter, String>>,
}

fn mkey(id: &QueueId) -> Vec<u8> {
    let mut k = b"m/".to_vec();
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn dkey(segment: u32, id: &QueueId) -> Vec<u8> {
    let mut k = dprefix(segment);
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn dprefix(segment: u32) -> Vec<u8> {
    let mut k = b"d/".to_vec();
    k.extend_from_slice(&segment.to_be_bytes());
    k.push(b'/');
    k
}

fn decode(key: &[u8], v: &[u8]) -> Result<Message, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(String::from_utf8_lossy(key).into_owned(), e.to_string()))
}

impl QueueStore {
    /// Open the queue in `data_dir`, reconciling index and spool.
    pub fn open(db: &sled::Db, data_dir: &Path) -> Result<(QueueStore, Recovery), StoreError> {
        Self::open_with_segment_limit(db, data_dir, SEGMENT_LIMIT)
    }

    pub fn open_with_segment_limit(
        db: &sled::Db,
        data_dir: &Path,
        segment_limit: u64,
    ) -> Result<(QueueStore, Recovery), StoreError> {
        let tree = db.open_tree("queue")?;
        let dir = data_dir.join("spool");
        crate::util::create_dir_durably(&dir)?;
        let shared = Arc::new(Shared {
            tree,
            reader: SpoolReader::new(dir.clone()),
            dir,
            segments: Mutex::new(Segments::default()),
            subscriber: Mutex::new(None),
        });
        let recovery = shared.reconcile()?;
        let newest = shared.tree.scan_prefix(b"m/").keys().next_back().transpose()?;
        let newest = newest.and_then(|k| QueueId::parse(&String::from_utf8_lossy(&k[2..])));
        let first_segment = shared.segments.lock().map(|s| s.active).unwrap_or(1);
        Ok((
            QueueStore {
                shared,
                ids: IdAllocator::starting_after(newest.as_ref()),
                first_segment,
                segment_limit,
                writer: OnceLock::new(),
            },
            recovery,
        ))
    }

    pub fn new_id(&self) -> QueueId {
        self.ids.next()
    }

    /// Receive the id of every message stored from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<QueueId> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.shared.subscriber.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    fn writer(&self) -> Result<&SpoolWriter, StoreError> {
        let w = self.writer.get_or_init(|| {
            let shared = self.shared.clone();
            SpoolWriter::start(self.shared.dir.clone(), self.first_segment, self.segment_limit, move |batch| {
                shared.indexed(batch)
            })
            .map_err(|e| e.to_string())
        });
        w.as_ref().map_err(|e| StoreError::Io(io::Error::other(e.clone())))
    }

    /// Store a new message. Returns once it is durable on disk; the returned
    /// message carries its spool location.
    pub async fn enqueue(&self, message: Message, body: Vec<u8>) -> Result<Message, StoreError> {
        Ok(self.writer()?.write(message, body).await?)
    }

    pub fn get(&self, id: &QueueId) -> Result<Option<Message>, StoreError> {
        let k = mkey(id);
        match self.shared.tree.get(&k)? {
            Some(v) => Ok(Some(decode(&k, &v)?)),
            None => Ok(None),
        }
    }

    /// Every queued message, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Result<Message, StoreError>> + '_ {
        self.shared.tree.scan_prefix(b"m/").map(|r| {
            let (k, v) = r?;
            decode(&k, &v)
        })
    }

    pub fn len(&self) -> usize {
        self.shared.tree.scan_prefix(b"m/").count()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.tree.scan_prefix(b"m/").next().is_none()
    }

    /// Save a message's new state. A message whose recipients are all final
    /// leaves the queue (see [`QueueStore::remove`]).
    pub fn update(&self, message: &Message) -> Result<(), StoreError> {
        if message.is_finished() {
            return self.remove(message);
        }
        let v = serde_json::to_vec(message).map_err(|e| StoreError::Corrupt(message.id.to_string(), e.to_string()))?;
        self.shared.tree.insert(mkey(&message.id), v)?;
        Ok(())
    }

    /// Take a message out of the queue for good.
    pub fn remove(&self, message: &Message) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.remove(mkey(&message.id));
        batch.insert(dkey(message.spool.segment, &message.id), &[][..]);
        self.shared.tree.apply_batch(batch)?;
        self.shared.release(message.spool.segment);
        Ok(())
    }

    pub fn read_body(&self, message: &Message) -> io::Result<Vec<u8>> {
        self.shared.reader.read(&message.spool)
    }

    /// Ask sled to write its buffers (not an fsync; see the module docs).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.shared.tree.flush()?;
        Ok(())
    }

    pub fn spool_dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Shared {
    /// Runs on the writer thread once a batch is durable.
    fn indexed(&self, batch: &[Message]) {
        let mut b = sled::Batch::default();
        for m in batch {
            match serde_json::to_vec(m) {
                Ok(v) => b.insert(mkey(&m.id), v),
                Err(e) => tracing::error!(id = %m.id, "cannot index message: {e}"),
            }
        }
        if let Err(e) = self.tree.apply_batch(b) {
            // the spool has the messages; the next start re-indexes them
            tracing::error!("queue index update failed: {e}");
        }
        let mut stale = Vec::new();
        {
            let mut segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            for m in batch {
                *segs.live.entry(m.spool.segment).or_insert(0) += 1;
                if m.spool.segment > segs.active {
                    let old = segs.active;
                    segs.active = m.spool.segment;
                    if segs.live.get(&old).copied().unwrap_or(0) == 0 {
                        stale.push(old);
                    }
                }
            }
        }
        for s in stale {
            self.delete_segment(s);
        }
        if let Some(tx) = self.subscriber.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            for m in batch {
                let _ = tx.send(m.id.clone());
            }
        }
    }

    /// One message in `segment` left the queue.
    fn release(&self, segment: u32) {
        let empty = {
            let mut segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            let n = segs.live.entry(segment).or_insert(1);
            *n = n.saturating_sub(1);
            *n == 0 && segment < segs.active
        };
        if empty {
            self.delete_segment(segment);
        }
    }

    fn delete_segment(&self, segment: u32) {
        let path = spool::segment_path(&self.dir, segment);
        self.reader.forget(segment);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("cannot delete spool segment {}: {e}", path.display());
                return;
            }
        }
        let _ = fsync_dir(&self.dir);
        self.segments.lock().unwrap_or_else(|p| p.into_inner()).live.remove(&segment);
        // tombstones are only needed while the segment exists
        let mut b = sled::Batch::default();
        for k in self.tree.scan_prefix(dprefix(segment)).keys().flatten() {
            b.remove(k);
        }
        if let Err(e) = self.tree.apply_batch(b) {
            tracing::warn!("cannot remove tombstones of segment {segment}: {e}");
        }
    }

    fn reconcile(&self) -> Result<Recovery, StoreError> {
        let mut rec = Recovery::default();
        let segments = spool::list_segments(&self.dir)?;
        let mut indexed: HashMap<QueueId, SpoolRef> = HashMap::new();
        for r in self.tree.scan_prefix(b"m/") {
            let (k, v) = r?;
            match decode(&k, &v) {
                Ok(m) => {
                    indexed.insert(m.id.clone(), m.spool);
                }
                Err(e) => {
                    tracing::warn!("{e}; dropping the index entry, the spool copy will be re-indexed");
                    self.tree.remove(&k)?;
                }
            }
        }
        let mut seen: HashSet<QueueId> = HashSet::new();
        let mut live: HashMap<u32, usize> = HashMap::new();
        for &seg in &segments {
            let path = spool::segment_path(&self.dir, seg);
            let tree = &self.tree;
            let (records, torn) = spool::scan(&path, seg, |m| {
                !indexed.contains_key(&m.id) && !tree.contains_key(dkey(seg, &m.id)).unwrap_or(false)
            })?;
            if let Some(at) = torn {
                tracing::warn!(
                    "spool segment {}: incomplete record at offset {at} ignored (never acknowledged)",
                    path.display()
                );
                rec.torn_segments.push(seg);
            }
            for r in records {
                let id = r.message.id.clone();
                if indexed.get(&id).is_some_and(|s| s.segment == seg) {
                    seen.insert(id);
                    *live.entry(seg).or_insert(0) += 1;
                } else if self.tree.contains_key(dkey(seg, &id))? || seen.contains(&id) {
                    continue;
                } else {
                    let mut m = r.message;
                    m.spool = r.spool;
                    let v = serde_json::to_vec(&m).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
                    self.tree.insert(mkey(&id), v)?;
                    tracing::warn!(id = %id, "re-indexed message found in the spool but not in the index");
                    rec.reindexed.push(id.clone());
                    seen.insert(id);
                    *live.entry(seg).or_insert(0) += 1;
                }
            }
        }
        for id in indexed.keys() {
            if !seen.contains(id) {
                tracing::warn!(id = %id, "dropped queue index entry: its spool data is missing");
                self.tree.remove(mkey(id))?;
                rec.dropped.push(id.clone());
            }
        }
        let present: HashSet<u32> = segments.iter().copied().collect();
        let mut b = sled::Batch::default();
        for k in self.tree.scan_prefix(b"d/").keys() {
            let k = k?;
            let seg = k.get(2..6).and_then(|s| s.try_into().ok()).map(u32::from_be_bytes);
            if seg.is_none_or(|s| !present.contains(&s)) {
                b.remove(k);
            }
        }
        self.tree.apply_batch(b)?;
        rec.messages = seen.len();
        let active = segments.last().copied().unwrap_or(0);
        {
            let mut segs = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            segs.live = live;
            // every existing segment is closed; the writer starts a new one
            segs.active = active + 1;
        }
        for &seg in &segments {
            let empty = self.segments.lock().map(|s| !s.live.contains_key(&seg)).unwrap_or(false);
            if empty {
                self.delete_segment(seg);
                rec.deleted_segments += 1;
            }
        }
        Ok(rec)
    }
}
