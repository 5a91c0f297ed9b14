//! The queue store: the spool (the truth for message bytes and for each
//! message's state at arrival, fsynced by us), a sled index of messages
//! whose state has changed since (a database of its own, replaced by a
//! fresh one when it empties: see [`super::index`]), and per-segment
//! "done" journals.
//!
//! A message that is delivered on its first attempt — the common case for a
//! relay — never touches sled: it lives in the spool and, while queued, in
//! memory (`fresh`); when it finishes, its id is appended to its segment's
//! done journal. Only a message whose state changes and stays queued
//! (deferred, frozen, partly delivered) is written to the index. This keeps
//! sled, whose every log flush is a `sync_file_range`, out of the fast path.
//!
//! sled's `flush()` does not fsync and the done journals are not fsynced
//! either: neither is part of any promise. After a crash, the store is
//! reconciled ([`QueueStore::open`] at once; the server opens it with
//! [`QueueStore::open_unreconciled`], takes new mail at once, and calls
//! [`QueueStore::reconcile`] on a blocking thread): a spool record named in its segment's done journal is
//! finished; one the index knows takes the index's state; any other is
//! queued in its arrival state (so a delivery whose completion was not yet
//! recorded is repeated: at least once, never lost). An index entry whose
//! spool data is gone is dropped with a log line. A segment file is deleted,
//! with its journal, once nothing in it is queued: at start only when the
//! scan found no unfinished record in it and no damage (a damaged segment
//! is kept for the operator), at run time when its count of live messages
//! reaches zero. That count falls only for a message that was really in the
//! queue, so removing one twice (an operator naming an id twice) cannot
//! count down, and delete, its neighbours. The done journals double as the
//! spool writer's tombstones for batches it could not wipe. Journals are
//! opened per line, and the spool reader keeps a bounded set of segments
//! open, so many live segments do not cost a descriptor each.
//!
//! Reconciling in the background is safe because it touches only what was
//! there before the store opened: the segments below the first one the
//! writer starts (`first_segment`), their journals, and the index entries
//! up to the newest id then stored (new ids sort after it). New mail goes to newer segments and is counted as it
//! is stored; what reconciliation finds is merged in when it ends. Until
//! then the older messages are not in memory or the aggregates, so the
//! operator's queue commands wait for [`QueueStore::reconciled`]; the queue
//! manager delivers new mail meanwhile (every id stored since the store
//! opened reaches its subscription) and then indexes the older messages
//! from the due times reconciliation noted as it read them
//! ([`QueueStore::take_recovered`]), without reading the queue again (ids
//! are allocated past the newest in the index and the last spool
//! segments, so new ids never collide, and reconciliation never finds a
//! new message: it reads only older segments and index entries up to the
//! newest id then stored).

use super::fault::{self, FaultPlan};
use super::id::{IdAllocator, QueueId};
use super::index::{Batch, Index};
use super::message::{Message, SpoolRef};
use super::spool::{self, SpoolReader, SpoolWriter, SEGMENT_LIMIT};
use super::summary::{Aggregates, Tally};
use crate::util::{fsync_dir, LockExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, watch};

/// Fresh messages kept in memory at most; beyond this they are indexed in
/// sled at once, so a flood of new mail cannot grow memory without bound.
const FRESH_LIMIT: usize = 20_000;

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
    /// Messages queued after the reconciliation.
    pub messages: usize,
    /// Queued in their arrival state, read from the spool (never attempted,
    /// or their index entry was lost).
    pub from_spool: Vec<QueueId>,
    /// Index entries dropped because their spool data is gone.
    pub dropped: Vec<QueueId>,
    pub torn_segments: Vec<u32>,
    /// Segments with damaged stretches in the middle (logged at error
    /// level; the records after the damage are kept, the file too).
    pub damaged_segments: Vec<u32>,
    pub deleted_segments: usize,
}

#[derive(Default)]
struct Segments {
    live: HashMap<u32, usize>,
    active: u32,
}

struct Shared {
    /// The index, in a database of its own (see [`super::index`]).
    tree: Index,
    dir: PathBuf,
    reader: SpoolReader,
    segments: Mutex<Segments>,
    /// Queued messages in their arrival state, not in the index.
    fresh: Mutex<BTreeMap<QueueId, Message>>,
    /// Per destination, what is queued (see `summary`): every change to
    /// `fresh` or the index changes these under the same call.
    aggregates: Mutex<Aggregates>,
    subscriber: Mutex<Option<mpsc::UnboundedSender<QueueId>>>,
    /// Until someone subscribes (see [`QueueStore::subscribe`]): the ids
    /// stored since the store opened wait here, so the queue manager
    /// learns of mail taken before it started.
    unclaimed: Mutex<Option<mpsc::UnboundedReceiver<QueueId>>>,
    /// What reconciliation found queued, as (due second, id micros), kept
    /// for the queue manager to take (see [`QueueStore::take_recovered`]).
    recovered: Mutex<Option<Vec<(u64, u64)>>>,
    faults: Arc<FaultPlan>,
    /// The first segment this process writes: reconciliation looks only
    /// below it (what was on disk when the store opened).
    first_segment: u32,
    /// The newest id stored when the store opened: index entries after it
    /// are new mail, counted as it was stored; those up to it are the old
    /// queue's (even one that points at a segment number reused since).
    newest: Option<QueueId>,
    /// True once reconciliation has run (see [`QueueStore::reconciled`]).
    reconciled: watch::Sender<bool>,
}

pub struct QueueStore {
    shared: Arc<Shared>,
    ids: IdAllocator,
    first_segment: u32,
    segment_limit: u64,
    /// Started on first use; a failure to start is kept and reported to
    /// every caller (shared, as `io::Error` is not `Clone`).
    writer: OnceLock<Result<SpoolWriter, Arc<io::Error>>>,
    /// The test seam `POSTERN_RECONCILE_GATE` (see `fault`): reconciliation
    /// waits until this file exists.
    gate: Option<&'static Path>,
}

fn mkey(id: &QueueId) -> Vec<u8> {
    let mut k = b"m/".to_vec();
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn decode(key: &[u8], v: &[u8]) -> Result<Message, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(String::from_utf8_lossy(key).into_owned(), e.to_string()))
}

fn encode(m: &Message) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(m.id.to_string(), e.to_string()))
}

pub use super::spool::journal_path;

/// The newest id in the last spool segments holding any record (the
/// writer's batches are not strictly in id order, so two are read): new
/// ids must sort after every stored one even if the clock went back.
fn newest_in_spool(dir: &Path, segments: &[u32]) -> io::Result<Option<QueueId>> {
    let mut newest: Option<QueueId> = None;
    let mut found = 0;
    for &seg in segments.iter().rev() {
        let file = std::fs::File::open(spool::segment_path(dir, seg))?;
        let mut any = false;
        spool::scan_source(&file, |meta| match serde_json::from_slice::<Message>(meta) {
            Ok(m) => {
                any = true;
                newest = newest.take().max(Some(m.id));
                spool::Check::Trust
            }
            Err(_) => spool::Check::Reject,
        })?;
        found += usize::from(any);
        if found == 2 {
            break;
        }
    }
    Ok(newest)
}

/// When a queued message is next due, for [`QueueStore::take_recovered`]:
/// its earliest queued recipient's next attempt (0: at once); None when
/// frozen or nothing is left. The queue manager skips, when the time
/// comes, recipients it has no transport for.
fn due(m: &Message) -> Option<u64> {
    if m.frozen {
        return None;
    }
    m.pending().map(|r| r.next_attempt.unwrap_or(0)).min()
}

/// The ids in a done journal; a torn last line is ignored.
fn read_journal(path: &Path) -> io::Result<HashSet<QueueId>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes
            .split(|&b| b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok().and_then(QueueId::parse))
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(e),
    }
}

impl QueueStore {
    /// Open the queue in `data_dir`, reconciling index, journals and spool.
    pub fn open(db: &sled::Db, data_dir: &Path) -> Result<(QueueStore, Recovery), StoreError> {
        let limit = fault::installed_segment_limit().unwrap_or(SEGMENT_LIMIT);
        Self::open_with(db, data_dir, limit, fault::installed())
    }

    pub fn open_with_segment_limit(
        db: &sled::Db,
        data_dir: &Path,
        segment_limit: u64,
    ) -> Result<(QueueStore, Recovery), StoreError> {
        Self::open_with(db, data_dir, segment_limit, FaultPlan::none())
    }

    /// Open with a segment size and a fault plan (the test seams; see `fault`).
    pub fn open_with(
        db: &sled::Db,
        data_dir: &Path,
        segment_limit: u64,
        faults: Arc<FaultPlan>,
    ) -> Result<(QueueStore, Recovery), StoreError> {
        let store = Self::open_unreconciled_with(db, data_dir, segment_limit, faults)?;
        let recovery = store.reconcile()?;
        Ok((store, recovery))
    }

    /// Open the queue for new mail without reconciling what is on disk:
    /// enqueue works at once, and [`QueueStore::reconcile`] must be called
    /// (once, on a blocking thread: it reads the whole spool) before the
    /// older messages are found by [`QueueStore::get`], walks and tallies.
    pub fn open_unreconciled(db: &sled::Db, data_dir: &Path) -> Result<QueueStore, StoreError> {
        let limit = fault::installed_segment_limit().unwrap_or(SEGMENT_LIMIT);
        let mut store = Self::open_unreconciled_with(db, data_dir, limit, fault::installed())?;
        store.gate = fault::installed_reconcile_gate();
        Ok(store)
    }

    fn open_unreconciled_with(
        db: &sled::Db,
        data_dir: &Path,
        segment_limit: u64,
        faults: Arc<FaultPlan>,
    ) -> Result<QueueStore, StoreError> {
        let tree = Index::open(db, data_dir)?;
        let dir = data_dir.join("spool");
        crate::util::create_dir_durably(&dir)?;
        let segments = spool::list_segments(&dir)?;
        // every existing segment is closed; the writer starts a new one
        let first_segment = segments.last().copied().unwrap_or(0) + 1;
        let newest_indexed = tree.scan_prefix(b"m/").keys().next_back().transpose()?;
        let newest_indexed = newest_indexed.and_then(|k| QueueId::parse(&String::from_utf8_lossy(&k[2..])));
        let newest = newest_indexed.max(newest_in_spool(&dir, &segments)?);
        let (subscriber, unclaimed) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tree,
            reader: SpoolReader::new(dir.clone()),
            dir,
            segments: Mutex::new(Segments { live: HashMap::new(), active: first_segment }),
            fresh: Mutex::new(BTreeMap::new()),
            aggregates: Mutex::new(Aggregates::default()),
            subscriber: Mutex::new(Some(subscriber)),
            unclaimed: Mutex::new(Some(unclaimed)),
            recovered: Mutex::new(None),
            faults,
            first_segment,
            newest: newest.clone(),
            reconciled: watch::Sender::new(false),
        });
        Ok(QueueStore {
            shared,
            ids: IdAllocator::starting_after(newest.as_ref()),
            first_segment,
            segment_limit,
            writer: OnceLock::new(),
            gate: None,
        })
    }

    /// Reconcile the spool, the journals and the index as they were when
    /// the store opened (see the module docs), merging what is queued into
    /// what arrived since. Blocking; meant to run once. Whatever the
    /// outcome, [`QueueStore::reconciled`] then returns: after a failure
    /// the older messages stay on disk, untouched by this run, for the
    /// next start.
    pub fn reconcile(&self) -> Result<Recovery, StoreError> {
        if let Some(gate) = self.gate {
            while !gate.exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let r = self.shared.reconcile();
        self.shared.reconciled.send_replace(true);
        r
    }

    /// Wait until reconciliation has run (at once after [`QueueStore::open`]).
    pub async fn reconciled(&self) {
        let mut rx = self.shared.reconciled.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    pub fn new_id(&self) -> QueueId {
        self.ids.next()
    }

    /// Receive the id of every message stored since the store opened (the
    /// first subscriber) or from now on (a later one, which replaces it).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<QueueId> {
        if let Some(rx) = self.shared.unclaimed.lock_or_recover().take() {
            return rx;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *self.shared.subscriber.lock_or_recover() = Some(tx);
        rx
    }

    /// Once reconciled: the messages reconciliation found queued, each
    /// once, as (due second, [`QueueId::micros`]) — when its earliest
    /// queued recipient is due (0: now), frozen ones left out — so the
    /// queue manager indexes them without reading the queue again. Empty
    /// after the first call, and if reconciliation failed.
    pub fn take_recovered(&self) -> Vec<(u64, u64)> {
        self.shared.recovered.lock_or_recover().take().unwrap_or_default()
    }

    fn writer(&self) -> Result<&SpoolWriter, StoreError> {
        let w = self.writer.get_or_init(|| {
            let shared = self.shared.clone();
            SpoolWriter::start(
                self.shared.dir.clone(),
                self.first_segment,
                self.segment_limit,
                self.shared.faults.clone(),
                move |batch| shared.stored(batch),
            )
            .map_err(Arc::new)
        });
        w.as_ref().map_err(|e| StoreError::Io(io::Error::other(Arc::clone(e))))
    }

    /// Store a new message. Returns once it is durable on disk; the returned
    /// message carries its spool location.
    pub async fn enqueue(&self, message: Message, body: Vec<u8>) -> Result<Message, StoreError> {
        Ok(self.writer()?.write(message, body).await?)
    }

    pub fn get(&self, id: &QueueId) -> Result<Option<Message>, StoreError> {
        if let Some(m) = self.shared.fresh.lock_or_recover().get(id) {
            return Ok(Some(m.clone()));
        }
        let k = mkey(id);
        match self.shared.tree.get(&k)? {
            Some(v) => Ok(Some(decode(&k, &v)?)),
            None => Ok(None),
        }
    }

    /// Every queued message, oldest first, read one at a time: the walk
    /// holds one message from the index and one from memory, whatever the
    /// size of the queue. A message that changes while the walk passes it
    /// may be missed or seen in its newer state.
    pub fn iter(&self) -> impl Iterator<Item = Result<Message, StoreError>> + '_ {
        Walk {
            shared: &self.shared,
            tree: self.shared.tree.scan_prefix(b"m/"),
            tree_head: None,
            fresh_head: None,
            fresh_after: None,
        }
    }

    pub fn len(&self) -> usize {
        self.shared.fresh.lock_or_recover().len() + self.shared.tree.scan_prefix(b"m/").count()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.fresh.lock_or_recover().is_empty() && self.shared.tree.scan_prefix(b"m/").next().is_none()
    }

    /// Save a message's new state. A message whose recipients are all final
    /// leaves the queue (see [`QueueStore::remove`]).
    pub fn update(&self, message: &Message) -> Result<(), StoreError> {
        if message.is_finished() {
            return self.remove(message);
        }
        // into the index first, so a reader always finds it somewhere
        let k = mkey(&message.id);
        let before = self.shared.tree.insert(&k, encode(message)?)?;
        let was_fresh = self.shared.fresh.lock_or_recover().remove(&message.id);
        let old = match (was_fresh, before) {
            (Some(m), _) => Some(m),
            (None, Some(v)) => Some(decode(&k, &v)?),
            (None, None) => None,
        };
        let mut agg = self.shared.aggregates.lock_or_recover();
        if let Some(old) = &old {
            agg.subtract(old);
        }
        agg.add(message);
        Ok(())
    }

    /// Take a message out of the queue for good.
    pub fn remove(&self, message: &Message) -> Result<(), StoreError> {
        self.shared.mark_done(message)?;
        // release the segment only for a message that was really queued:
        // removing one twice must not count down its neighbours
        let k = mkey(&message.id);
        let old = match self.shared.fresh.lock_or_recover().remove(&message.id) {
            Some(m) => Some(m),
            None => self.shared.tree.remove(&k)?.map(|v| decode(&k, &v)).transpose()?,
        };
        if let Some(old) = old {
            self.shared.aggregates.lock_or_recover().subtract(&old);
            self.shared.release(message.spool.segment);
        }
        Ok(())
    }

    /// Per destination, the queued recipients: read from the aggregates
    /// kept as messages change, never by walking the queue.
    pub fn tally(&self) -> BTreeMap<String, Tally> {
        self.shared.aggregates.lock_or_recover().tally()
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

    /// The index, for tests that look into it or damage it.
    #[cfg(test)]
    pub(crate) fn index(&self) -> &Index {
        &self.shared.tree
    }
}

/// [`QueueStore::iter`]: the index and the fresh messages merged in id
/// order (a message in both is the fresh one, as [`QueueStore::get`] reads it).
struct Walk<'a> {
    shared: &'a Shared,
    tree: sled::Iter,
    tree_head: Option<Result<Message, StoreError>>,
    fresh_head: Option<Message>,
    /// The last fresh message taken: the next is looked up after it.
    fresh_after: Option<QueueId>,
}

impl Iterator for Walk<'_> {
    type Item = Result<Message, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::ops::Bound::{Excluded, Unbounded};
        if self.tree_head.is_none() {
            self.tree_head = self.tree.next().map(|r| r.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v)));
        }
        // looked up again each time: mail that arrives during the walk is
        // in it (after everything older), as long as the walk is not over
        if self.fresh_head.is_none() {
            let fresh = self.shared.fresh.lock_or_recover();
            let next = match &self.fresh_after {
                None => fresh.values().next(),
                Some(after) => fresh.range((Excluded(after.clone()), Unbounded)).next().map(|(_, m)| m),
            };
            self.fresh_head = next.cloned();
            if let Some(m) = &self.fresh_head {
                self.fresh_after = Some(m.id.clone());
            }
        }
        let take_tree = match (&self.tree_head, &self.fresh_head) {
            (None, None) => return None,
            (Some(Err(_)), _) | (Some(Ok(_)), None) => true,
            (None, Some(_)) => false,
            (Some(Ok(t)), Some(f)) if t.id == f.id => {
                // moved into the index while the walk ran: shown once
                self.tree_head = None;
                false
            }
            (Some(Ok(t)), Some(f)) => t.id < f.id,
        };
        if take_tree {
            self.tree_head.take()
        } else {
            self.fresh_head.take().map(Ok)
        }
    }
}

impl Shared {
    /// Runs on the writer thread once a batch is durable.
    fn stored(&self, batch: &[Message]) {
        let mut overflow = Batch::default();
        let mut overflowed = false;
        {
            let mut agg = self.aggregates.lock_or_recover();
            for m in batch {
                agg.add(m);
            }
        }
        {
            let mut fresh = self.fresh.lock_or_recover();
            for m in batch {
                if fresh.len() < FRESH_LIMIT {
                    fresh.insert(m.id.clone(), m.clone());
                } else {
                    match encode(m) {
                        Ok(v) => {
                            overflow.insert(mkey(&m.id), v);
                            overflowed = true;
                        }
                        Err(e) => tracing::error!(id = %m.id, "cannot index message: {e}"),
                    }
                }
            }
        }
        if overflowed {
            if let Err(e) = self.tree.apply_batch(overflow) {
                // the spool has them; the next start queues them again
                tracing::error!("queue index update failed: {e}");
            }
        }
        let mut stale = Vec::new();
        {
            let mut segs = self.segments.lock_or_recover();
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
        if let Some(tx) = self.subscriber.lock_or_recover().as_ref() {
            for m in batch {
                let _ = tx.send(m.id.clone());
            }
        }
    }

    /// Record in its segment's journal that a message is finished. Not
    /// fsynced: a lost line means a repeated delivery after a crash. Opened
    /// for each line, so a queue of many segments holds no descriptor per
    /// journal; `O_APPEND` keeps lines whole beside the writer's tombstones.
    fn mark_done(&self, m: &Message) -> io::Result<()> {
        self.faults.check("journal.write")?;
        let mut f = OpenOptions::new().create(true).append(true).open(journal_path(&self.dir, m.spool.segment))?;
        f.write_all(format!("{}\n", m.id).as_bytes())
    }

    /// One message in `segment` left the queue.
    fn release(&self, segment: u32) {
        let empty = {
            let mut segs = self.segments.lock_or_recover();
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
        // the journal only matters while its segment exists
        let _ = std::fs::remove_file(journal_path(&self.dir, segment));
        let _ = fsync_dir(&self.dir);
        self.segments.lock_or_recover().live.remove(&segment);
    }

    fn reconcile(&self) -> Result<Recovery, StoreError> {
        let mut rec = Recovery::default();
        let first = self.first_segment;
        let segments: Vec<u32> = spool::list_segments(&self.dir)?.into_iter().filter(|&s| s < first).collect();
        let mut indexed: HashMap<QueueId, SpoolRef> = HashMap::new();
        // for the queue manager: when each message is due, read here so
        // that nobody reads the queue a second time (`take_recovered`)
        let mut index_due: HashMap<u64, u64> = HashMap::new();
        let mut recovered: Vec<(u64, u64)> = Vec::new();
        // counted as read; what reconciliation then drops is taken back
        let mut agg = Aggregates::default();
        // the index entries there at open (its count has the rest)
        let mut entries = 0;
        for r in self.tree.scan_prefix(b"m/") {
            let (k, v) = r?;
            match decode(&k, &v) {
                // stored since the store opened: counted as it was stored
                Ok(m) if self.newest.as_ref().is_none_or(|n| m.id > *n) => {}
                Ok(m) => {
                    entries += 1;
                    agg.add(&m);
                    if let Some(t) = due(&m) {
                        index_due.insert(m.id.micros(), t);
                    }
                    indexed.insert(m.id.clone(), m.spool);
                }
                Err(e) => {
                    entries += 1;
                    tracing::warn!("{e}; dropping the index entry, the spool copy is queued again");
                    self.tree.remove(&k)?;
                }
            }
        }
        let mut seen: HashSet<QueueId> = HashSet::new();
        let mut live: HashMap<u32, usize> = HashMap::new();
        let mut fresh = BTreeMap::new();
        let mut overflow = Batch::default();
        for &seg in &segments {
            let path = spool::segment_path(&self.dir, seg);
            let done = read_journal(&journal_path(&self.dir, seg))?;
            let scan = spool::scan(&path, seg, |m| !indexed.contains_key(&m.id) && !done.contains(&m.id))?;
            if !scan.skipped.is_empty() {
                rec.damaged_segments.push(seg);
            }
            if let Some(at) = scan.torn {
                tracing::warn!(
                    "spool segment {}: incomplete record at offset {at} ignored (never acknowledged)",
                    path.display()
                );
                rec.torn_segments.push(seg);
            }
            for r in scan.records {
                let id = r.message.id.clone();
                if done.contains(&id) || seen.contains(&id) {
                    continue;
                }
                seen.insert(id.clone());
                *live.entry(seg).or_insert(0) += 1;
                if indexed.get(&id).is_some_and(|s| s.segment == seg) {
                    if let Some(&t) = index_due.get(&id.micros()) {
                        recovered.push((t, id.micros()));
                    }
                    continue;
                }
                if indexed.contains_key(&id) {
                    // the spool copy shadows an index entry pointing elsewhere
                    if let Some(v) = self.tree.get(mkey(&id))? {
                        agg.subtract(&decode(&mkey(&id), &v)?);
                    }
                }
                let mut m = r.message;
                m.spool = r.spool;
                agg.add(&m);
                if let Some(t) = due(&m) {
                    recovered.push((t, id.micros()));
                }
                rec.from_spool.push(id.clone());
                if fresh.len() < FRESH_LIMIT {
                    fresh.insert(id, m);
                } else {
                    overflow.insert(mkey(&id), encode(&m)?);
                }
            }
            // index entries of finished messages (the journal line came first)
            for id in indexed.keys().filter(|id| done.contains(*id)) {
                if let Some(v) = self.tree.remove(mkey(id))? {
                    agg.subtract(&decode(&mkey(id), &v)?);
                }
            }
        }
        self.tree.apply_batch(overflow)?;
        for id in indexed.keys() {
            if seen.contains(id) {
                continue;
            }
            if let Some(v) = self.tree.remove(mkey(id))? {
                tracing::warn!(id = %id, "dropped queue index entry: its spool data is missing");
                agg.subtract(&decode(&mkey(id), &v)?);
                rec.dropped.push(id.clone());
            }
        }
        if !rec.from_spool.is_empty() {
            tracing::info!(messages = rec.from_spool.len(), "queued from the spool in their arrival state");
        }
        // journals whose segment is gone
        let present: HashSet<u32> = segments.iter().copied().collect();
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".done").and_then(|s| s.parse::<u32>().ok()) {
                if n < first && !present.contains(&n) {
                    let _ = std::fs::remove_file(journal_path(&self.dir, n));
                }
            }
        }
        rec.messages = seen.len();
        // merged into what arrived meanwhile; index first, so a reader
        // always finds a message somewhere
        let mut overflow = Batch::default();
        let mut keep = BTreeMap::new();
        let room = FRESH_LIMIT.saturating_sub(self.fresh.lock_or_recover().len());
        for (i, (id, m)) in fresh.into_iter().enumerate() {
            if i < room {
                keep.insert(id, m);
            } else {
                overflow.insert(mkey(&id), encode(&m)?);
            }
        }
        self.tree.apply_batch(overflow)?;
        self.tree.counted(entries);
        self.fresh.lock_or_recover().extend(keep);
        self.aggregates.lock_or_recover().absorb(agg);
        // the older segments' counts; newer ones are counted as written
        self.segments.lock_or_recover().live.extend(live);
        for &seg in &segments {
            // a damaged segment stays for the operator to look at
            if !self.segments.lock_or_recover().live.contains_key(&seg) && !rec.damaged_segments.contains(&seg) {
                self.delete_segment(seg);
                rec.deleted_segments += 1;
            }
        }
        *self.recovered.lock_or_recover() = Some(recovered);
        Ok(rec)
    }
}
