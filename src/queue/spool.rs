//! The spool: append-only segment files that hold every queued message's
//! envelope (as it was at arrival) and body. This is where the `250` promise
//! lives: a message is acknowledged only after its record has been written
//! and `fdatasync`ed (and, for a new segment, the directory fsynced). One
//! writer thread takes the records of all sessions that are waiting and
//! makes them durable with one sync per batch (group commit).
//!
//! Record layout (little-endian):
//! `"PSR1" | meta_len u32 | body_len u64 | crc32(meta ‖ body) u32 | meta | body`.
//! A torn tail (crash mid-write) fails its length or CRC check; scanning
//! stops there, and nothing after it was ever acknowledged.
//!
//! Segments are written into space that is already on disk: a helper
//! thread keeps one spare segment zero-filled and synced, and the writer
//! renames it into place when it rotates. Overwriting allocated blocks lets
//! `fdatasync` flush only data, where appending would also commit the file
//! size through the filesystem journal — on the development machine that
//! halved the cost of each sync. An all-zero header is the clean end of a
//! segment. Without a spare (slow disk, first start) the writer appends.

use super::fault::FaultPlan;
use super::message::{Message, SpoolRef};
use crate::util::{create_dir_durably, fsync_dir};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

const MAGIC: &[u8; 4] = b"PSR1";
const HEADER: usize = 4 + 4 + 8 + 4;
/// Segments rotate past this size (and spares are made this big).
pub const SEGMENT_LIMIT: u64 = 16 << 20;
/// Most records one sync covers.
const MAX_BATCH: usize = 512;

pub fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.seg"))
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

/// One record found by [`scan`].
pub struct Scanned {
    pub message: Message,
    pub spool: SpoolRef,
}

/// Read the envelopes of every intact record in a segment, in order.
/// `verify` decides per message whether the body's CRC must be checked (it
/// is needed only for records the index does not know). Returns the
/// records and, if the segment ends in a torn record, its offset.
pub fn scan(
    path: &Path,
    segment: u32,
    mut verify: impl FnMut(&Message) -> bool,
) -> io::Result<(Vec<Scanned>, Option<u64>)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let torn = Some(pos);
        if len - pos < HEADER as u64 {
            let mut rest = Vec::new();
            r.read_to_end(&mut rest)?;
            return Ok((out, if rest.iter().all(|&b| b == 0) { None } else { torn }));
        }
        let mut h = [0u8; HEADER];
        r.read_exact(&mut h)?;
        if h.iter().all(|&b| b == 0) {
            // the unused, zero-filled rest of a prepared segment
            return Ok((out, None));
        }
        if &h[..4] != MAGIC {
            return Ok((out, torn));
        }
        let meta_len = u32::from_le_bytes(h[4..8].try_into().unwrap_or_default()) as u64;
        let body_len = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(h[16..20].try_into().unwrap_or_default());
        let end = pos + HEADER as u64 + meta_len + body_len;
        if meta_len > 16 << 20 || end > len {
            return Ok((out, torn));
        }
        let mut meta = vec![0u8; meta_len as usize];
        r.read_exact(&mut meta)?;
        let Ok(message) = serde_json::from_slice::<Message>(&meta) else {
            return Ok((out, torn));
        };
        let spool = SpoolRef { segment, offset: pos + HEADER as u64 + meta_len, len: body_len };
        if verify(&message) {
            let mut body = vec![0u8; body_len as usize];
            r.read_exact(&mut body)?;
            let mut h = crc32fast::Hasher::new();
            h.update(&meta);
            h.update(&body);
            if h.finalize() != crc {
                return Ok((out, torn));
            }
        } else {
            r.seek(SeekFrom::Current(body_len as i64))?;
        }
        out.push(Scanned { message, spool });
        pos = end;
    }
    Ok((out, None))
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
    /// Start the writer on a fresh segment numbered `first`. `after_sync`
    /// runs on the writer thread for each batch once it is durable (the
    /// index update), before the waiting sessions are answered.
    pub fn start(
        dir: PathBuf,
        first: u32,
        segment_limit: u64,
        faults: Arc<FaultPlan>,
        after_sync: impl Fn(&[Message]) + Send + 'static,
    ) -> io::Result<SpoolWriter> {
        create_dir_durably(&dir)?;
        let spares = Spares::start(dir.clone(), segment_limit, faults.clone())?;
        let active = spares.next_segment(&dir, first)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("postern-spool".into()).spawn(move || {
            writer_loop(dir, active, segment_limit, spares, rx, faults, after_sync);
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

fn open_segment(dir: &Path, n: u32, faults: &FaultPlan) -> io::Result<Active> {
    let path = segment_path(dir, n);
    faults.check("spool.rotate.open")?;
    let file = OpenOptions::new().create(true).write(true).truncate(false).open(&path)?;
    let len = file.metadata()?.len();
    // the new directory entry must survive a crash before anything in it is acknowledged
    faults.check("spool.rotate.dirsync")?;
    fsync_dir(dir)?;
    Ok(Active { number: n, file, len })
}

/// The helper that keeps one zero-filled, synced spare segment ready.
struct Spares {
    /// Ask for a new spare.
    request: mpsc::Sender<()>,
    /// A spare is ready at `spare_path`.
    ready: mpsc::Receiver<()>,
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
                    Err(e) => tracing::warn!("spool: cannot prepare a spare segment (appending instead): {e}"),
                }
            }
        })?;
        Ok(Spares { request, ready, faults })
    }

    /// Segment `n`: the spare renamed into place if one is ready, else a new
    /// empty file.
    fn next_segment(&self, dir: &Path, n: u32) -> io::Result<Active> {
        if self.ready.try_recv().is_ok() {
            let path = segment_path(dir, n);
            match self.faults.check("spool.rotate.rename").and_then(|_| std::fs::rename(spare_path(dir), &path)) {
                Ok(()) => {
                    self.faults.check("spool.rotate.open")?;
                    let file = OpenOptions::new().write(true).open(&path)?;
                    self.faults.check("spool.rotate.dirsync")?;
                    fsync_dir(dir)?;
                    let _ = self.request.send(());
                    return Ok(Active { number: n, file, len: 0 });
                }
                Err(e) => {
                    tracing::warn!("spool: cannot use the spare segment: {e}");
                    let _ = self.request.send(());
                }
            }
        }
        open_segment(dir, n, &self.faults)
    }
}

fn make_spare(dir: &Path, size: u64, faults: &FaultPlan) -> io::Result<()> {
    faults.check("spool.spare")?;
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

fn writer_loop(
    dir: PathBuf,
    mut active: Active,
    segment_limit: u64,
    spares: Spares,
    rx: mpsc::Receiver<Job>,
    faults: Arc<FaultPlan>,
    after_sync: impl Fn(&[Message]),
) {
    let mut buf = Vec::with_capacity(1 << 20);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if active.len >= segment_limit {
            match spares.next_segment(&dir, active.number + 1) {
                Ok(a) => active = a,
                Err(e) => {
                    fail_all(batch, &e);
                    continue;
                }
            }
        }
        buf.clear();
        let mut messages = Vec::with_capacity(batch.len());
        let mut bodies = Vec::with_capacity(batch.len());
        for job in batch {
            let mut m = job.message;
            // The spool copy carries no SpoolRef: a record's position is
            // where the scanner finds it.
            m.spool = SpoolRef::default();
            let meta = faults
                .check("spool.encode")
                .map_err(serde_json::Error::io)
                .and_then(|_| serde_json::to_vec(&m))
                .unwrap_or_default();
            let start = active.len + buf.len() as u64;
            m.spool = SpoolRef {
                segment: active.number,
                offset: start + HEADER as u64 + meta.len() as u64,
                len: job.body.len() as u64,
            };
            encode(&meta, &job.body, &mut buf);
            messages.push(m);
            bodies.push(job.done);
        }
        let result = write_faulty(&active.file, &buf, active.len, &faults)
            .and_then(|_| faults.check("spool.sync"))
            .and_then(|_| active.file.sync_data());
        match result {
            Ok(()) => {
                active.len += buf.len() as u64;
                after_sync(&messages);
                for (m, done) in messages.into_iter().zip(bodies) {
                    let _ = done.send(Ok(m));
                }
            }
            Err(e) => {
                tracing::error!("spool segment {}: write failed: {e}", active.number);
                for done in bodies {
                    let _ = done.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
                // whatever reached the file is a torn tail now; never write after it
                if let Ok(a) = spares.next_segment(&dir, active.number + 1) {
                    active = a;
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

fn fail_all(batch: Vec<Job>, e: &io::Error) {
    tracing::error!("spool: cannot open a new segment: {e}");
    for job in batch {
        let _ = job.done.send(Err(io::Error::new(e.kind(), e.to_string())));
    }
}

/// Reads bodies back, keeping segment files open.
#[derive(Default)]
pub struct SpoolReader {
    dir: PathBuf,
    open: Mutex<HashMap<u32, Arc<File>>>,
}

impl SpoolReader {
    pub fn new(dir: PathBuf) -> SpoolReader {
        SpoolReader { dir, open: Mutex::new(HashMap::new()) }
    }

    pub fn read(&self, r: &SpoolRef) -> io::Result<Vec<u8>> {
        let file = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            match open.get(&r.segment) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(segment_path(&self.dir, r.segment))?);
                    open.insert(r.segment, f.clone());
                    f
                }
            }
        };
        let mut body = vec![0u8; r.len as usize];
        file.read_exact_at(&mut body, r.offset)?;
        Ok(body)
    }

    /// Forget an open handle (before the segment is deleted).
    pub fn forget(&self, segment: u32) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&segment);
    }
}
