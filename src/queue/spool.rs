//! The spool: append-only segment files that hold every queued message's
//! envelope (as it was at arrival) and body. This is where the `250` promise
//! lives: a message is acknowledged only after its record has been written
//! and `fdatasync`ed (and, for a new segment, the directory fsynced). One
//! writer thread takes the records of all sessions that are waiting and
//! makes them durable with one sync per batch (group commit).
//!
//! Record layout (little-endian):
//! `"PSR1" | meta_len u32 | body_len u64 | crc32(meta ‖ body) u32 | meta | body`.
//!
//! What the scan ([`scan_records`], [`scan`]) guarantees: a record counts
//! only if its magic, its lengths (checked against the bytes that exist
//! before anything is allocated) and, for every record the index does not
//! already vouch for, its CRC check out. A bad record in the middle — bit
//! rot, a torn write of a batch that was never acknowledged — does not end
//! the scan: it resynchronises at the next valid record (first where the
//! bad header says the record ends, else at the next `PSR1` whose record
//! verifies), keeps everything after, and logs the skipped stretch at error
//! level. The same holds for a stretch of zeros with records after it. A
//! bad stretch with no valid record after it is a torn tail.
//!
//! What the writer guarantees: it writes only where the scan would find the
//! end (the end of the last intact record, with only zeros after it), never
//! at a file's length, and it never writes into a segment whose tail is
//! torn. A batch that fails (write or sync) is answered with an error and
//! leaves no record a restart would find: its bytes are zeroed and synced
//! and the writer continues at the same place; if even that fails, the ids
//! of the batch are appended to the segment's done journal and synced (a
//! tombstone: reconciliation never queues a record named there) and the
//! writer moves to a new segment; and while that tombstone cannot be
//! written either, every new batch is refused, so a restart can find those
//! records only if the disk accepted no write at all since — then they come
//! back as queued mail (delivered twice at worst, never lost). A record
//! whose metadata cannot be serialised is refused alone.
//!
//! Segments are written into space that is already on disk: a helper
//! thread keeps one spare segment zero-filled and synced, and the writer
//! renames it into place when it rotates. Overwriting allocated blocks lets
//! `fdatasync` flush only data, where appending would also commit the file
//! size through the filesystem journal — on the development machine that
//! halved the cost of each sync. An all-zero header with only zeros after
//! it is the clean end of a segment. Without a spare (slow disk, first
//! start, a full disk: a failed spare is removed at once) the writer
//! appends. Every disk step consults the test seam in `fault`.
//!
//! Readers keep at most [`OPEN_SEGMENTS`] segment files open (least
//! recently used closed first), so a long queue of small segments cannot
//! run the server out of descriptors.

use super::fault::FaultPlan;
use super::message::{Message, SpoolRef};
use crate::util::{create_dir_durably, fsync_dir, LockExt};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

const MAGIC: &[u8; 4] = b"PSR1";
const HEADER: usize = 4 + 4 + 8 + 4;
/// Segments rotate past this size (and spares are made this big).
pub const SEGMENT_LIMIT: u64 = 16 << 20;
/// Most records one sync covers.
const MAX_BATCH: usize = 512;
/// Longest envelope a record may carry: a corrupted length never makes
/// the scanner allocate more.
const MAX_META: u64 = 16 << 20;
/// Segment files the reader keeps open at most.
pub const OPEN_SEGMENTS: usize = 64;

pub fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.seg"))
}

/// A segment's done journal (see `store`); the writer appends tombstones.
pub fn journal_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}.done"))
}

/// The prepared spare segment (not a numbered segment: never scanned).
fn spare_path(dir: &Path) -> PathBuf {
    dir.join("spare.seg")
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".seg").and_then(|s| s.parse::<u32>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn encode(meta: &[u8], body: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(meta);
    crc.update(body);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(body);
}

/// Bytes the scanner reads: a segment file, or a slice (for tests and fuzzing).
pub trait Source {
    fn size(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
}

impl Source for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let start = usize::try_from(at).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start.checked_add(buf.len()).and_then(|end| self.get(start..end));
        buf.copy_from_slice(src.ok_or(io::ErrorKind::UnexpectedEof)?);
        Ok(())
    }
}

impl Source for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, at)
    }
}

/// What the caller says about a record's envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not a valid envelope: the record is bad.
    Reject,
    /// Known good elsewhere (the index): the body's CRC need not be read.
    Trust,
    /// Verify the body's CRC.
    Verify,
}

/// One intact record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordAt {
    /// Offset of the record's header.
    pub offset: u64,
    pub meta: Vec<u8>,
    /// Offset and length of the body.
    pub body_offset: u64,
    pub body_len: u64,
}

impl RecordAt {
    pub fn end(&self) -> u64 {
        self.body_offset + self.body_len
    }
}

/// Everything a scan of one segment found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub records: Vec<RecordAt>,
    /// Damaged stretches skipped before a later valid record: (offset, bytes).
    pub skipped: Vec<(u64, u64)>,
    /// The end of the last intact record (0 if none): where writing may
    /// resume when the tail is clean.
    pub end: u64,
    /// Where a torn tail starts: bytes after `end` that are neither zeros
    /// nor followed by any valid record.
    pub torn: Option<u64>,
}

/// Scan a whole segment held in memory, verifying every record's CRC. The
/// entry point for fuzzing: never panics, allocates at most the input's size.
pub fn scan_records(bytes: &[u8]) -> ScanReport {
    // reading a slice cannot fail past the bounds the scanner checks
    scan_source(bytes, |_| Check::Verify).unwrap_or_default()
}

/// The record at `pos`, if one is there and checks out.
fn record_at<S: Source + ?Sized>(
    src: &S,
    len: u64,
    pos: u64,
    force_verify: bool,
    check: &mut impl FnMut(&[u8]) -> Check,
) -> io::Result<Option<RecordAt>> {
    if len.saturating_sub(pos) < HEADER as u64 {
        return Ok(None);
    }
    let mut h = [0u8; HEADER];
    src.read_exact_at(&mut h, pos)?;
    if &h[..4] != MAGIC {
        return Ok(None);
    }
    let meta_len = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
    let body_len = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    let crc = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    let room = len - pos - HEADER as u64;
    // lengths against what exists, before any allocation
    if meta_len > MAX_META || meta_len > room || body_len > room - meta_len {
        return Ok(None);
    }
    let mut meta = vec![0u8; meta_len as usize];
    src.read_exact_at(&mut meta, pos + HEADER as u64)?;
    let verdict = check(&meta);
    if verdict == Check::Reject {
        return Ok(None);
    }
    let body_offset = pos + HEADER as u64 + meta_len;
    if force_verify || verdict == Check::Verify {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&meta);
        let mut chunk = vec![0u8; body_len.min(256 * 1024) as usize];
        let mut at = body_offset;
        let end = body_offset + body_len;
        while at < end {
            let n = (end - at).min(chunk.len() as u64) as usize;
            src.read_exact_at(&mut chunk[..n], at)?;
            hasher.update(&chunk[..n]);
            at += n as u64;
        }
        if hasher.finalize() != crc {
            return Ok(None);
        }
    }
    Ok(Some(RecordAt { offset: pos, meta, body_offset, body_len }))
}

/// The first valid record at or after `from`: where the bad header at `bad`
/// says its record ends, else the next `PSR1` whose record verifies. Also
/// tells whether everything from `from` on is zeros.
fn resync<S: Source + ?Sized>(
    src: &S,
    len: u64,
    bad: u64,
    from: u64,
    check: &mut impl FnMut(&[u8]) -> Check,
) -> io::Result<(Option<RecordAt>, bool)> {
    // a record whose body rotted still has a sound header: try its end first
    if bad + (HEADER as u64) <= len {
        let mut h = [0u8; HEADER];
        src.read_exact_at(&mut h, bad)?;
        if &h[..4] == MAGIC {
            let meta_len = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
            let body_len = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
            let next = (bad + HEADER as u64).checked_add(meta_len).and_then(|n| n.checked_add(body_len));
            if let Some(next) = next.filter(|&n| n < len) {
                if let Some(r) = record_at(src, len, next, true, check)? {
                    return Ok((Some(r), false));
                }
            }
        }
    }
    const CHUNK: u64 = 1 << 20;
    let mut all_zero = true;
    let mut buf = vec![0u8; (CHUNK + MAGIC.len() as u64) as usize];
    let mut at = from;
    while at < len {
        let n = (len - at).min(CHUNK + MAGIC.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], at)?;
        let window = &buf[..n];
        if all_zero && window.iter().any(|&b| b != 0) {
            all_zero = false;
        }
        for p in memchr::memmem::find_iter(window, MAGIC) {
            if let Some(r) = record_at(src, len, at + p as u64, true, check)? {
                return Ok((Some(r), false));
            }
        }
        // overlap by the magic's length so a header across chunks is seen
        at += (n as u64).clamp(1, CHUNK);
    }
    Ok((None, all_zero))
}

/// The scanner over any source. `check` judges each envelope.
pub fn scan_source<S: Source + ?Sized>(src: &S, mut check: impl FnMut(&[u8]) -> Check) -> io::Result<ScanReport> {
    let len = src.size()?;
    let mut rep = ScanReport::default();
    let mut pos = 0u64;
    while pos < len {
        if let Some(r) = record_at(src, len, pos, false, &mut check)? {
            pos = r.end();
            rep.end = pos;
            rep.records.push(r);
            continue;
        }
        // not a record here: the clean zero end, damage, or a torn tail
        match resync(src, len, pos, pos, &mut check)? {
            (Some(r), _) => {
                rep.skipped.push((pos, r.offset - pos));
                pos = r.offset;
            }
            (None, true) => break,
            (None, false) => {
                rep.torn = Some(pos);
                break;
            }
        }
    }
    Ok(rep)
}

/// One record found by [`scan`].
pub struct Scanned {
    pub message: Message,
    pub spool: SpoolRef,
}

/// What [`scan`] found in one segment file.
pub struct SegmentScan {
    pub records: Vec<Scanned>,
    pub skipped: Vec<(u64, u64)>,
    pub torn: Option<u64>,
}

/// Read the envelopes of every intact record in a segment, in order.
/// `verify` decides per message whether the body's CRC must be checked (it
/// is needed only for records the index does not know). Damaged stretches
/// are skipped and logged at error level, naming the segment.
pub fn scan(path: &Path, segment: u32, mut verify: impl FnMut(&Message) -> bool) -> io::Result<SegmentScan> {
    let file = File::open(path)?;
    let rep = scan_source(&file, |meta| match serde_json::from_slice::<Message>(meta) {
        Ok(m) if verify(&m) => Check::Verify,
        Ok(_) => Check::Trust,
        Err(_) => Check::Reject,
    })?;
    for (at, n) in &rep.skipped {
        tracing::error!(
            "spool segment {}: damaged data at offset {at}, {n} bytes skipped; the records after it are kept",
            path.display()
        );
    }
    let records = rep
        .records
        .into_iter()
        .filter_map(|r| {
            let message = serde_json::from_slice::<Message>(&r.meta).ok()?;
            Some(Scanned { message, spool: SpoolRef { segment, offset: r.body_offset, len: r.body_len } })
        })
        .collect();
    Ok(SegmentScan { records, skipped: rep.skipped, torn: rep.torn })
}

/// A message waiting for the writer.
pub struct Job {
    pub message: Message,
    pub body: Vec<u8>,
    pub done: tokio::sync::oneshot::Sender<io::Result<Message>>,
}

struct Active {
    number: u32,
    file: File,
    len: u64,
}

/// Handle to the writer thread.
pub struct SpoolWriter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SpoolWriter {
    /// Start the writer; its first segment is numbered `first` (or later, if
    /// that one exists and is unfit). `after_sync` runs on the writer thread
    /// for each batch once it is durable (the index update), before the
    /// waiting sessions are answered.
    pub fn start(
        dir: PathBuf,
        first: u32,
        segment_limit: u64,
        faults: Arc<FaultPlan>,
        after_sync: impl Fn(&[Message]) + Send + 'static,
    ) -> io::Result<SpoolWriter> {
        create_dir_durably(&dir)?;
        let spares = Spares::start(dir.clone(), segment_limit, faults.clone())?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("postern-spool".into()).spawn(move || {
            let mut w = Writer { dir, active: None, next: first, segment_limit, spares, faults, tombstone: None };
            w.run(rx, after_sync);
        })?;
        Ok(SpoolWriter { tx: Some(tx), thread: Some(thread) })
    }

    /// Store a message durably; resolves once it is on disk.
    pub async fn write(&self, message: Message, body: Vec<u8>) -> io::Result<Message> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| io::Error::other("the spool writer has stopped"))?
            .send(Job { message, body, done })
            .map_err(|_| io::Error::other("the spool writer has stopped"))?;
        wait.await.map_err(|_| io::Error::other("the spool writer has stopped"))?
    }
}

impl Drop for SpoolWriter {
    /// Finish what is queued and wait for the thread, so that nothing it
    /// holds (the index) outlives the store.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Open segment `n` for writing at the end the scan finds in it (0 for a
/// new file). `None`: the file exists but its tail is torn or damaged, so
/// nothing may be written after it; the caller takes the next number.
fn open_segment(dir: &Path, n: u32, faults: &FaultPlan) -> io::Result<Option<Active>> {
    let path = segment_path(dir, n);
    faults.check("spool.rotate.open")?;
    let file = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&path)?;
    // where the scan would find the end, never the file's length: a spare
    // renamed into place is all zeros, and records after them would be lost
    let rep = scan_source(&file, |meta| {
        if serde_json::from_slice::<Message>(meta).is_ok() {
            Check::Verify
        } else {
            Check::Reject
        }
    })?;
    if rep.torn.is_some() || !rep.skipped.is_empty() {
        tracing::warn!("spool segment {}: its tail is damaged; writing to the next segment", path.display());
        return Ok(None);
    }
    // the new directory entry must survive a crash before anything in it is acknowledged
    faults.check("spool.rotate.dirsync")?;
    fsync_dir(dir)?;
    Ok(Some(Active { number: n, file, len: rep.end }))
}

/// The helper that keeps one zero-filled, synced spare segment ready.
struct Spares {
    /// Ask for a new spare.
    request: mpsc::Sender<()>,
    /// A spare is ready at `spare_path`.
    ready: mpsc::Receiver<()>,
    /// A ready signal was taken and the spare not used yet.
    have_spare: bool,
    faults: Arc<FaultPlan>,
}

impl Spares {
    fn start(dir: PathBuf, size: u64, faults: Arc<FaultPlan>) -> io::Result<Spares> {
        let (request, wanted) = mpsc::channel::<()>();
        let (done, ready) = mpsc::channel::<()>();
        // a spare left by an earlier run is complete (it is renamed into
        // place only after its sync); a half-made one is not
        let _ = std::fs::remove_file(dir.join("spare.tmp"));
        if spare_path(&dir).exists() {
            let _ = done.send(());
        } else {
            let _ = request.send(());
        }
        let plan = faults.clone();
        std::thread::Builder::new().name("postern-spare".into()).spawn(move || {
            while wanted.recv().is_ok() {
                match make_spare(&dir, size, &plan) {
                    Ok(()) => {
                        if done.send(()).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // a half-made spare on a full disk would take the
                        // room the mail needs
                        let _ = std::fs::remove_file(dir.join("spare.tmp"));
                        tracing::warn!("spool: cannot prepare a spare segment (appending instead): {e}")
                    }
                }
            }
        })?;
        Ok(Spares { request, ready, have_spare: false, faults })
    }

    /// Segment `n` or the first fit one after it: the spare renamed into
    /// place if one is ready, else the file opened or created.
    fn next_segment(&mut self, dir: &Path, mut n: u32) -> io::Result<Active> {
        if !self.have_spare {
            self.have_spare = self.ready.try_recv().is_ok();
        }
        let path = segment_path(dir, n);
        // never rename over a segment that exists (a rotation that failed
        // half-way): that one is opened and scanned instead
        if self.have_spare && !path.exists() {
            self.have_spare = false;
            match self.faults.check("spool.rotate.rename").and_then(|_| std::fs::rename(spare_path(dir), &path)) {
                Ok(()) => {
                    let _ = self.request.send(());
                    self.faults.check("spool.rotate.open")?;
                    let file = OpenOptions::new().read(true).write(true).open(&path)?;
                    self.faults.check("spool.rotate.dirsync")?;
                    fsync_dir(dir)?;
                    // the spare is zeros by construction: the scan's end is 0
                    return Ok(Active { number: n, file, len: 0 });
                }
                Err(e) => {
                    tracing::warn!("spool: cannot use the spare segment: {e}");
                    let _ = self.request.send(());
                }
            }
        }
        for _ in 0..16 {
            if let Some(a) = open_segment(dir, n, &self.faults)? {
                return Ok(a);
            }
            n += 1;
        }
        Err(io::Error::other(format!("spool: segments up to {n} all have damaged tails")))
    }
}

fn make_spare(dir: &Path, size: u64, faults: &FaultPlan) -> io::Result<()> {
    faults.check("spool.spare")?;
    // a spare must never take the room the mail itself needs: only with
    // twice its size free (else the writer appends, growing as mail comes)
    let free = crate::util::free_space(dir)?;
    if free < size.saturating_mul(2) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("{free} bytes free, a spare of {size} bytes needs twice that"),
        ));
    }
    let tmp = dir.join("spare.tmp");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, spare_path(dir))?;
    fsync_dir(dir)
}

/// The ids of a failed batch whose bytes could not be zeroed, still to be
/// written to their segment's done journal.
struct Tombstone {
    segment: u32,
    ids: Vec<String>,
}

struct Writer {
    dir: PathBuf,
    /// `None` until opened, and after a failure that forbids writing on.
    active: Option<Active>,
    /// The number the next segment gets.
    next: u32,
    segment_limit: u64,
    spares: Spares,
    faults: Arc<FaultPlan>,
    tombstone: Option<Tombstone>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Job>, after_sync: impl Fn(&[Message])) {
        let mut buf = Vec::with_capacity(1 << 20);
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            // a failed batch that may still be on disk must be buried first
            if let Some(t) = &self.tombstone {
                if let Err(e) = write_tombstone(&self.dir, t, &self.faults) {
                    tracing::error!(
                        "spool segment {}: still cannot record the failed batch as finished ({e}); refusing mail",
                        t.segment
                    );
                    fail_all(batch, &e);
                    continue;
                }
                self.tombstone = None;
            }
            let active = match self.active.take() {
                Some(a) if a.len < self.segment_limit => a,
                _ => match self.spares.next_segment(&self.dir, self.next) {
                    Ok(a) => {
                        self.next = a.number + 1;
                        a
                    }
                    Err(e) => {
                        tracing::error!("spool: cannot open a new segment: {e}");
                        fail_all(batch, &e);
                        continue;
                    }
                },
            };
            self.active = self.write_batch(active, batch, &mut buf, &after_sync);
        }
    }

    /// Write and sync one batch into `active`; returns the segment to go on
    /// with (`None` when the failed batch could not be wiped from it).
    fn write_batch(
        &mut self,
        mut active: Active,
        batch: Vec<Job>,
        buf: &mut Vec<u8>,
        after_sync: &impl Fn(&[Message]),
    ) -> Option<Active> {
        buf.clear();
        let mut messages = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for job in batch {
            let mut m = job.message;
            // The spool copy carries no SpoolRef: a record's position is
            // where the scanner finds it.
            m.spool = SpoolRef::default();
            let meta = match self
                .faults
                .check("spool.encode")
                .map_err(serde_json::Error::io)
                .and_then(|_| serde_json::to_vec(&m))
            {
                Ok(meta) => meta,
                Err(e) => {
                    // refuse this message alone: an empty envelope would
                    // be a record no scan can read
                    tracing::error!(id = %m.id, "spool: cannot serialise the envelope: {e}");
                    let _ =
                        job.done.send(Err(io::Error::other(format!("cannot serialise the envelope of {}: {e}", m.id))));
                    continue;
                }
            };
            let start = active.len + buf.len() as u64;
            m.spool = SpoolRef {
                segment: active.number,
                offset: start + HEADER as u64 + meta.len() as u64,
                len: job.body.len() as u64,
            };
            encode(&meta, &job.body, buf);
            messages.push(m);
            waiting.push(job.done);
        }
        if messages.is_empty() {
            return Some(active);
        }
        let result = write_faulty(&active.file, buf, active.len, &self.faults)
            .and_then(|_| self.faults.check("spool.sync"))
            .and_then(|_| active.file.sync_data());
        match result {
            Ok(()) => {
                active.len += buf.len() as u64;
                after_sync(&messages);
                for (m, done) in messages.into_iter().zip(waiting) {
                    let _ = done.send(Ok(m));
                }
                Some(active)
            }
            Err(e) => {
                tracing::error!("spool segment {}: write failed: {e}", active.number);
                for done in waiting {
                    let _ = done.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
                // the batch's records may be complete on disk: wipe them
                // so a restart cannot queue mail that was refused
                match wipe(&active, buf.len() as u64, &self.faults) {
                    Ok(()) => Some(active),
                    Err(we) => {
                        tracing::error!(
                            "spool segment {}: cannot wipe the failed batch at offset {} ({we}); \
                             recording it as finished and moving to a new segment",
                            active.number,
                            active.len
                        );
                        let t = Tombstone {
                            segment: active.number,
                            ids: messages.iter().map(|m| m.id.to_string()).collect(),
                        };
                        if let Err(te) = write_tombstone(&self.dir, &t, &self.faults) {
                            tracing::error!(
                                "spool segment {}: cannot record the failed batch as finished either ({te}); \
                                 refusing mail until it is",
                                t.segment
                            );
                            self.tombstone = Some(t);
                        }
                        None
                    }
                }
            }
        }
    }
}

/// The batch's write; an injected `spool.write` fault lets half the bytes
/// reach the file first, as a full disk would.
fn write_faulty(file: &File, buf: &[u8], at: u64, faults: &FaultPlan) -> io::Result<()> {
    if let Err(e) = faults.check("spool.write") {
        file.write_all_at(&buf[..buf.len() / 2], at)?;
        return Err(e);
    }
    file.write_all_at(buf, at)
}

/// Zero the `len` bytes of a failed batch at the segment's end and sync, so
/// the scan ends where it did before the batch. Only bytes inside the file
/// are zeroed: past its length nothing was written, and extending the file
/// is what a full disk refuses.
fn wipe(active: &Active, len: u64, faults: &FaultPlan) -> io::Result<()> {
    faults.check("spool.cleanup")?;
    let size = active.file.metadata()?.len();
    let end = (active.len + len).min(size);
    if end > active.len {
        let zeros = vec![0u8; (end - active.len).min(1 << 20) as usize];
        let mut at = active.len;
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            active.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
    }
    active.file.sync_data()
}

/// Name the ids of a failed batch in its segment's done journal, synced:
/// reconciliation never queues a record named there.
fn write_tombstone(dir: &Path, t: &Tombstone, faults: &FaultPlan) -> io::Result<()> {
    faults.check("spool.tombstone")?;
    let path = journal_path(dir, t.segment);
    let new = !path.exists();
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    let mut lines = String::new();
    for id in &t.ids {
        lines.push_str(id);
        lines.push('\n');
    }
    // a torn line from an earlier crash must not swallow the first id
    f.write_all(b"\n")?;
    f.write_all(lines.as_bytes())?;
    f.sync_data()?;
    if new {
        fsync_dir(dir)?;
    }
    Ok(())
}

fn fail_all(batch: Vec<Job>, e: &io::Error) {
    for job in batch {
        let _ = job.done.send(Err(io::Error::new(e.kind(), e.to_string())));
    }
}

/// Reads bodies back, keeping at most [`OPEN_SEGMENTS`] segment files open.
#[derive(Default)]
pub struct SpoolReader {
    dir: PathBuf,
    open: Mutex<OpenFiles>,
}

/// The open segment files, each with the tick of its last use.
#[derive(Default)]
struct OpenFiles {
    files: HashMap<u32, (Arc<File>, u64)>,
    tick: u64,
}

impl SpoolReader {
    pub fn new(dir: PathBuf) -> SpoolReader {
        SpoolReader { dir, open: Mutex::new(OpenFiles::default()) }
    }

    fn file(&self, segment: u32) -> io::Result<Arc<File>> {
        let mut open = self.open.lock_or_recover();
        open.tick += 1;
        let tick = open.tick;
        if let Some((f, used)) = open.files.get_mut(&segment) {
            *used = tick;
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(segment_path(&self.dir, segment))?);
        if open.files.len() >= OPEN_SEGMENTS {
            // close the least recently used (a reader still holding it keeps it until done)
            if let Some(old) = open.files.iter().min_by_key(|(_, (_, used))| *used).map(|(n, _)| *n) {
                open.files.remove(&old);
            }
        }
        open.files.insert(segment, (f.clone(), tick));
        Ok(f)
    }

    pub fn read(&self, r: &SpoolRef) -> io::Result<Vec<u8>> {
        let file = self.file(r.segment)?;
        // the length is checked against the file before it is allocated
        let size = file.metadata()?.len();
        if r.offset.checked_add(r.len).is_none_or(|end| end > size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("spool segment {}: {} bytes at {} run past its end", r.segment, r.len, r.offset),
            ));
        }
        let mut body = vec![0u8; r.len as usize];
        FileExt::read_exact_at(&*file, &mut body, r.offset)?;
        Ok(body)
    }

    /// Forget an open handle (before the segment is deleted).
    pub fn forget(&self, segment: u32) {
        self.open.lock_or_recover().files.remove(&segment);
    }
}
