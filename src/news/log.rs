//! The news store's write-ahead log: what makes a run of arriving articles
//! durable with one sequential append and one fsync, however many articles
//! the run holds. [`super::NewsStore::post_many`] appends every article of
//! a run (as stored, with its `Xref`) to the current segment under
//! `news/log/` and fdatasyncs it; only then are the article files written
//! (not fsynced: the log covers them) and the index updated, and only then
//! may the caller answer `239`/`235`/`240`.
//!
//! A segment is retired (a *checkpoint*) once it passes [`SEGMENT_MAX`],
//! before any article is removed (so that no live segment can bring a
//! removed article back) and at open: `syncfs` on the store's file system
//! makes every article file written so far durable, then the segments are
//! unlinked and the directory fsynced. At open, before reconciliation,
//! every live segment is **replayed**: each whole, valid frame is written
//! again to its article file (the same bytes, so replaying twice is
//! harmless), then the checkpoint. A frame cut short by a crash was never
//! acknowledged (its fsync had not returned) and is ignored, as is all
//! that follows it in its segment (an append that fails abandons its
//! segment, so nothing acknowledged ever follows a torn frame).
//!
//! ```text
//! data_dir/news/log/<seq>.log    frames: "A <length> <arrived>\n" <article> "\n"
//! ```

use super::article;
use super::store::file_name;
use crate::util::fsync_dir;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// A segment past this many octets is retired after the append that
/// crossed it (the checkpoint's `syncfs` is then paid once per this much).
pub(super) const SEGMENT_MAX: u64 = 128 << 20;

/// The segment appended to.
struct Segment {
    file: File,
    len: u64,
}

/// The log: its directory and the open segment. Not thread-safe by
/// itself; the store holds it under its write lock.
pub(super) struct Log {
    dir: PathBuf,
    current: Option<Segment>,
    /// The next segment's number.
    next: u64,
}

/// Segment numbers present in `dir`, in order.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(seq) = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse().ok()) {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.log"))
}

/// The frames of one segment: (arrived, article), up to the first frame
/// that is cut short or malformed.
fn frames(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(nl) = memchr::memchr(b'\n', rest) {
        let Some(head) = rest.get(..nl).and_then(|h| std::str::from_utf8(h).ok()) else { break };
        let mut parts = head.split(' ');
        let (Some("A"), Some(len), Some(arrived), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            break;
        };
        let (Ok(len), Ok(arrived)) = (len.parse::<usize>(), arrived.parse::<u64>()) else { break };
        let Some(article) = rest.get(nl + 1..).and_then(|r| r.get(..len)) else { break };
        let Some(after) = rest.get(nl + 1 + len..) else { break };
        if after.first() != Some(&b'\n') {
            break;
        }
        out.push((arrived, article));
        rest = &after[1..];
    }
    out
}

/// Write an article file (not fsynced) with its arrival as mtime.
pub(super) fn write_article(path: &Path, article: &[u8], arrived: u64) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(article)?;
    f.set_modified(UNIX_EPOCH + Duration::from_secs(arrived))
}

impl Log {
    /// Open the log in `dir` (created if missing), replaying what an
    /// earlier run left into `articles` and retiring it. Returns the log
    /// and how many articles were written again.
    pub fn open(dir: &Path, articles: &Path) -> io::Result<(Log, usize)> {
        crate::util::create_dir_durably(dir)?;
        let mut replayed = 0;
        let found = segments(dir)?;
        for seq in &found {
            let path = segment_path(dir, *seq);
            let bytes = fs::read(&path)?;
            for (arrived, a) in frames(&bytes) {
                let h = article::headers(a);
                // a frame is the store's own writing; one that does not
                // name a valid Message-ID is damage, left for the index
                // to never know
                let Some(id) = h.get("Message-ID").filter(|id| article::check_message_id(id).is_ok()) else {
                    tracing::warn!("news log {}: a frame without a valid Message-ID skipped", path.display());
                    continue;
                };
                write_article(&articles.join(file_name(id)), a, arrived)?;
                replayed += 1;
            }
        }
        let mut log = Log { dir: dir.to_path_buf(), current: None, next: found.last().map_or(1, |s| s + 1) };
        if !found.is_empty() {
            log.checkpoint(articles)?;
        }
        Ok((log, replayed))
    }

    /// Append a run of articles (each with its arrival) and fdatasync: when
    /// this returns Ok they survive a crash. On an error the segment is
    /// abandoned (its tail may be torn); the next append starts another.
    pub fn append(&mut self, run: &[(&[u8], u64)]) -> io::Result<()> {
        // the frame lines apart, the articles written from where they are
        // (one vectored write, not a copy of the whole run)
        let mut heads = Vec::with_capacity(run.len());
        for (i, (a, arrived)) in run.iter().enumerate() {
            let end_of_last = if i == 0 { "" } else { "\n" };
            heads.push(format!("{end_of_last}A {} {arrived}\n", a.len()));
        }
        let mut parts = Vec::with_capacity(2 * run.len() + 1);
        for (head, (a, _)) in heads.iter().zip(run) {
            parts.push(IoSlice::new(head.as_bytes()));
            parts.push(IoSlice::new(a));
        }
        if !run.is_empty() {
            parts.push(IoSlice::new(b"\n"));
        }
        let r = self.append_parts(&mut parts);
        if r.is_err() {
            self.current = None;
        }
        r
    }

    fn append_parts(&mut self, mut parts: &mut [IoSlice<'_>]) -> io::Result<()> {
        if self.current.is_none() {
            let path = segment_path(&self.dir, self.next);
            let file = OpenOptions::new().append(true).create_new(true).mode(0o600).open(&path)?;
            self.next += 1;
            // the segment's name must survive a crash as its frames do
            fsync_dir(&self.dir)?;
            self.current = Some(Segment { file, len: 0 });
        }
        let Some(seg) = self.current.as_mut() else { return Err(io::Error::other("no log segment")) };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        while !parts.is_empty() {
            match seg.file.write_vectored(parts) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut parts, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        seg.file.sync_data()?;
        seg.len += len as u64;
        Ok(())
    }

    /// Whether the open segment is past [`SEGMENT_MAX`].
    pub fn full(&self) -> bool {
        self.current.as_ref().is_some_and(|s| s.len >= SEGMENT_MAX)
    }

    /// Make every article file written so far durable (`syncfs` of the
    /// file system that holds `articles`, then its directory), then drop
    /// every segment: nothing in them is needed any more.
    pub fn checkpoint(&mut self, articles: &Path) -> io::Result<()> {
        let found = segments(&self.dir)?;
        if found.is_empty() {
            return Ok(());
        }
        let dir = File::open(articles)?;
        rustix::fs::syncfs(&dir)?;
        dir.sync_all()?;
        self.current = None;
        for seq in found {
            fs::remove_file(segment_path(&self.dir, seq))?;
        }
        fsync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_stop_at_the_first_torn_one() {
        let a = b"Message-ID: <a@x>\r\n\r\nbody\r\n";
        let mut log = format!("A {} 7\n", a.len()).into_bytes();
        log.extend_from_slice(a);
        log.push(b'\n');
        let whole = log.len();
        log.extend_from_slice(format!("A {} 8\n", a.len()).as_bytes());
        log.extend_from_slice(&a[..5]);
        assert_eq!(frames(&log), vec![(7, &a[..])]);
        assert_eq!(frames(&log[..whole - 1]), vec![]);
        assert_eq!(frames(b"A x 1\nabc\n"), vec![]);
    }

    #[test]
    fn a_run_appended_reads_back_frame_by_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(&dir.path().join("log"), dir.path()).unwrap();
        let (a, b) = (&b"Message-ID: <a@x>\r\n\r\none\r\n"[..], &b"Message-ID: <b@x>\n\ntwo"[..]);
        log.append(&[(a, 7), (b, 8)]).unwrap();
        log.append(&[(b, 9)]).unwrap();
        let bytes = fs::read(segment_path(&dir.path().join("log"), 1)).unwrap();
        assert_eq!(frames(&bytes), vec![(7, a), (8, b), (9, b)]);
        assert_eq!(log.current.as_ref().map(|s| s.len), Some(bytes.len() as u64));
    }
}
