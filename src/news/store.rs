//! [`NewsStore`]: posting, expiry, group management and every lookup NNTP
//! needs, from the files and the `news` index in the order the parent
//! module's durability argument needs: a run in the write-ahead log
//! (fdatasynced) before its article files and index entries; floors and
//! history (fsynced), after a log checkpoint, before an unlink.

use super::article::{self, Overview};
use super::log::Log;
use super::{check_group_name, Expired, GroupInfo, NewsError, NewsSettings, Posted, Posting, Recovery};
use crate::proto::nntp::wildmat::Wildmat;
use crate::util::{fsync_dir, LockExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A group's file: what survives sled forgetting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupFile {
    pub name: String,
    pub description: String,
    pub posting: Posting,
    pub created: u64,
    /// No number at or below this is given again.
    pub floor: u64,
    #[serde(default)]
    pub deleted: bool,
}

/// A group's index record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupRecord {
    pub description: String,
    pub posting: Posting,
    pub created: u64,
    pub high: u64,
    pub count: u64,
}

/// An article's index record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ArticleRecord {
    /// Its file's name under `articles/`.
    pub file: String,
    pub arrived: u64,
    pub numbers: Vec<(String, u64)>,
    pub overview: Overview,
}

// index keys: g<group>, n<group>\0<number BE>, m<id>, t<arrived BE><id>, h<id>
pub(super) fn group_key(name: &str) -> Vec<u8> {
    [b"g", name.as_bytes()].concat()
}
pub(super) fn number_prefix(group: &str) -> Vec<u8> {
    [b"n", group.as_bytes(), b"\0"].concat()
}
pub(super) fn number_key(group: &str, n: u64) -> Vec<u8> {
    [number_prefix(group).as_slice(), &n.to_be_bytes()].concat()
}
/// (group, number) of an `n` key.
pub(super) fn parse_number_key(k: &[u8]) -> Option<(String, u64)> {
    let rest = k.strip_prefix(b"n")?;
    let nul = memchr::memchr(0, rest)?;
    let n: [u8; 8] = rest.get(nul + 1..)?.try_into().ok()?;
    Some((String::from_utf8(rest[..nul].to_vec()).ok()?, u64::from_be_bytes(n)))
}
pub(super) fn article_key(id: &str) -> Vec<u8> {
    [b"m", id.as_bytes()].concat()
}
pub(super) fn arrival_key(arrived: u64, id: &str) -> Vec<u8> {
    [b"t".as_slice(), &arrived.to_be_bytes(), id.as_bytes()].concat()
}
pub(super) fn history_key(id: &str) -> Vec<u8> {
    [b"h", id.as_bytes()].concat()
}

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // plain data with string keys: serialising cannot fail
    serde_json::to_vec(v).unwrap_or_default()
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], v: &[u8]) -> Result<T, NewsError> {
    serde_json::from_slice(v)
        .map_err(|e| NewsError::Corrupt(String::from_utf8_lossy(key).replace('\0', "/"), e.to_string()))
}

/// The file name of the article with Message-ID `id`: its SHA-256 in hex
/// (a Message-ID may hold `/` and be longer than a file name may).
pub(super) fn file_name(id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

pub(super) struct Dirs {
    pub root: PathBuf,
    pub groups: PathBuf,
    pub articles: PathBuf,
    pub quarantine: PathBuf,
    pub history: PathBuf,
    pub log: PathBuf,
}

impl Dirs {
    fn new(data_dir: &Path) -> Dirs {
        let root = data_dir.join("news");
        Dirs {
            groups: root.join("groups"),
            articles: root.join("articles"),
            quarantine: root.join("quarantine"),
            history: root.join("history"),
            log: root.join("log"),
            root,
        }
    }

    pub fn group_file(&self, name: &str) -> PathBuf {
        self.groups.join(format!("{name}.json"))
    }

    pub fn write_group(&self, g: &GroupFile) -> Result<(), NewsError> {
        let path = self.group_file(&g.name);
        crate::util::write_file_durably(&path, &encode(g), 0o600).map_err(|e| NewsError::io(path, e))
    }

    pub fn read_group(path: &Path) -> io::Result<GroupFile> {
        serde_json::from_slice(&fs::read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// A run of articles being posted together (see [`NewsStore::post_many`]).
#[derive(Default)]
struct Batch {
    /// The records of the groups the run touches, numbers raised.
    groups: BTreeMap<String, GroupRecord>,
    /// Message-IDs in the run so far.
    ids: HashSet<String>,
    staged: Vec<Staged>,
}

/// An article of a run, checked and numbered, its file not yet written.
struct Staged {
    /// Its place among the run's results.
    slot: usize,
    id: String,
    file: String,
    numbers: Vec<(String, u64)>,
    /// As stored, with our `Xref`.
    stored: Vec<u8>,
    /// Computed from the same reading of the headers as `stored`.
    overview: Overview,
}

pub struct NewsStore {
    tree: sled::Tree,
    dirs: Dirs,
    settings: NewsSettings,
    /// One writer at a time: numbers are read and raised under it, and
    /// the write-ahead log is appended to under it.
    write: Mutex<Log>,
    /// Tests: where the next [`NewsStore::post_many`] "crashes".
    #[cfg(test)]
    pub(super) crash: Mutex<Option<Crash>>,
}

/// A point in [`NewsStore::post_many`] where a test stops it dead, leaving
/// the disk as a crash there would (nothing is cleaned up).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Crash {
    /// The run is staged, not yet in the log (or not yet fsynced there).
    BeforeSync,
    /// The run is in the log, fsynced, and its files written; the index
    /// is not written.
    BeforeIndex,
}

/// A group record with its name, or NoSuchGroup.
fn group_record(tree: &sled::Tree, name: &str) -> Result<GroupRecord, NewsError> {
    let k = group_key(name);
    match tree.get(&k)? {
        Some(v) => decode(&k, &v),
        None => Err(NewsError::NoSuchGroup(name.to_string())),
    }
}

impl NewsStore {
    /// Open the store under `data_dir/news` on the shared database,
    /// reconciling the index with the files (see the parent module); `now`
    /// (Unix seconds) decides which history lines are still kept.
    pub fn open(
        db: &sled::Db,
        data_dir: &Path,
        settings: NewsSettings,
        now: u64,
    ) -> Result<(NewsStore, Recovery), NewsError> {
        let tree = db.open_tree("news")?;
        let dirs = Dirs::new(data_dir);
        for d in [&dirs.root, &dirs.groups, &dirs.articles, &dirs.quarantine] {
            crate::util::create_dir_durably(d).map_err(|e| NewsError::io(d, e))?;
        }
        // the log first: what it replays, reconciliation then indexes
        let (log, replayed) = Log::open(&dirs.log, &dirs.articles).map_err(|e| NewsError::io(&dirs.log, e))?;
        if replayed > 0 {
            tracing::info!(articles = replayed, "news articles written again from the write-ahead log");
        }
        let recovery = super::reconcile::reconcile(&tree, &dirs, now)?;
        let store = NewsStore {
            tree,
            dirs,
            settings,
            write: Mutex::new(log),
            #[cfg(test)]
            crash: Mutex::new(None),
        };
        Ok((store, recovery))
    }

    pub fn settings(&self) -> &NewsSettings {
        &self.settings
    }

    // ---- groups ----

    /// Create a group (`postern group add`). A group deleted before comes
    /// back with its numbers continuing where they stopped.
    pub fn add_group(&self, name: &str, description: &str, posting: Posting, now: u64) -> Result<GroupInfo, NewsError> {
        check_group_name(name)?;
        let _w = self.write.lock_or_recover();
        if self.tree.contains_key(group_key(name))? {
            return Err(NewsError::GroupExists(name.to_string()));
        }
        let floor = match Dirs::read_group(&self.dirs.group_file(name)) {
            Ok(old) => old.floor,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(NewsError::io(self.dirs.group_file(name), e)),
        };
        let file = GroupFile {
            name: name.to_string(),
            description: description.to_string(),
            posting,
            created: now,
            floor,
            deleted: false,
        };
        self.dirs.write_group(&file)?;
        let rec = GroupRecord { description: description.to_string(), posting, created: now, high: floor, count: 0 };
        self.tree.insert(group_key(name), encode(&rec))?;
        self.group(name)?.ok_or_else(|| NewsError::NoSuchGroup(name.to_string()))
    }

    /// Delete a group (`postern group delete`): its numbers are kept (a
    /// floor in its file), articles in no other group are removed and
    /// their Message-IDs go to the history.
    pub fn delete_group(&self, name: &str, now: u64) -> Result<(), NewsError> {
        let mut w = self.write.lock_or_recover();
        let rec = group_record(&self.tree, name)?;
        let path = self.dirs.group_file(name);
        let mut file = Dirs::read_group(&path).map_err(|e| NewsError::io(&path, e))?;
        file.floor = file.floor.max(rec.high);
        file.deleted = true;
        self.dirs.write_group(&file)?;
        // from here on the group is gone (reconciliation drops whatever of
        // it the index still has); the rest is tidying the index
        let mut only_here = Vec::new();
        let mut batch = sled::Batch::default();
        for r in self.tree.scan_prefix(number_prefix(name)) {
            let (k, id) = r?;
            batch.remove(k);
            let id = String::from_utf8_lossy(&id).into_owned();
            if let Some(a) = self.record(&id)? {
                if a.numbers.iter().all(|(g, _)| g == name || !self.tree.contains_key(group_key(g)).unwrap_or(false)) {
                    only_here.push(id);
                }
            }
        }
        batch.remove(group_key(name));
        self.tree.apply_batch(batch)?;
        self.remove_articles(&mut w, &only_here, now)?;
        Ok(())
    }

    /// Every group, by name, whose name matches `filter`.
    pub fn groups(&self, filter: &Wildmat) -> Result<Vec<GroupInfo>, NewsError> {
        let mut out = Vec::new();
        for r in self.tree.scan_prefix(b"g") {
            let (k, v) = r?;
            let name = String::from_utf8_lossy(&k[1..]).into_owned();
            if filter.matches(&name) {
                let rec: GroupRecord = decode(&k, &v)?;
                out.push(self.info(name, rec)?);
            }
        }
        Ok(out)
    }

    /// Groups created at or after `since` (NEWGROUPS).
    pub fn groups_created_since(&self, since: u64) -> Result<Vec<GroupInfo>, NewsError> {
        Ok(self.groups(&Wildmat::any())?.into_iter().filter(|g| g.created >= since).collect())
    }

    /// One group (GROUP), or `None`.
    pub fn group(&self, name: &str) -> Result<Option<GroupInfo>, NewsError> {
        match group_record(&self.tree, name) {
            Ok(rec) => Ok(Some(self.info(name.to_string(), rec)?)),
            Err(NewsError::NoSuchGroup(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn info(&self, name: String, rec: GroupRecord) -> Result<GroupInfo, NewsError> {
        let low = match self.tree.scan_prefix(number_prefix(&name)).keys().next() {
            Some(k) => parse_number_key(&k?).map_or(rec.high + 1, |(_, n)| n),
            None => rec.high + 1,
        };
        Ok(GroupInfo {
            name,
            description: rec.description,
            posting: rec.posting,
            created: rec.created,
            count: rec.count,
            low,
            high: rec.high,
        })
    }

    // ---- posting ----

    /// Whether `id` is stored or still in the history (CHECK, IHAVE).
    pub fn seen(&self, id: &str) -> Result<bool, NewsError> {
        Ok(self.tree.contains_key(article_key(id))? || self.tree.contains_key(history_key(id))?)
    }

    /// Store an article in the groups of its `Newsgroups` header that exist
    /// here (others are skipped, as a transit server does), giving it the
    /// next number in each and an `Xref` naming them. Returns only once the
    /// article is durable. The article must carry a valid Message-ID; the
    /// caller adds `Path`, `Date` and the like before.
    pub fn post(&self, article: &[u8], now: u64) -> Result<Posted, NewsError> {
        self.post_where(article, now, |_| true)
    }

    /// [`NewsStore::post`] into only those of the article's groups that
    /// `keep` accepts (a feed peer's `groups`); the others are skipped like
    /// groups that do not exist here.
    pub fn post_where(&self, article: &[u8], now: u64, keep: impl Fn(&str) -> bool) -> Result<Posted, NewsError> {
        self.post_many(&[article], now, keep).pop().unwrap_or_else(|| Err(NewsError::NoMessageId))
    }

    /// Store a run of articles as [`NewsStore::post_where`] does, with one
    /// fsync for all of them (a group commit): the run is appended to the
    /// write-ahead log and fdatasynced, then the files are written and the
    /// index in one batch (a checkpoint follows when the log is full). One
    /// result per article, in order; each `Ok` is durable when this
    /// returns. A Message-ID seen earlier in the same run is a duplicate.
    pub fn post_many(
        &self,
        articles: &[&[u8]],
        now: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<Result<Posted, NewsError>> {
        let mut log = self.write.lock_or_recover();
        let mut batch = Batch::default();
        let mut results: Vec<Result<Posted, NewsError>> =
            articles.iter().enumerate().map(|(i, a)| self.stage(i, a, &keep, &mut batch)).collect();
        // until it is in the log, a staged article has failed
        let mut set = |slot: usize, r: Result<Posted, NewsError>| {
            if let Some(place) = results.get_mut(slot) {
                *place = r;
            }
        };
        if batch.staged.is_empty() {
            return results;
        }
        #[cfg(test)]
        if *self.crash.lock_or_recover() == Some(Crash::BeforeSync) {
            return Vec::new();
        }
        let run: Vec<(&[u8], u64)> = batch.staged.iter().map(|st| (st.stored.as_slice(), now)).collect();
        if let Err(e) = log.append(&run) {
            tracing::error!("news write-ahead log {}: {e}", self.dirs.log.display());
            for st in &batch.staged {
                set(st.slot, Err(NewsError::io(&self.dirs.log, io::Error::new(e.kind(), e.to_string()))));
            }
            return results;
        }
        // durable from here on (the log replays them after a crash): the
        // files and the index are written for readers, not for safety
        let mut index = sled::Batch::default();
        for st in &mut batch.staged {
            let path = self.dirs.articles.join(&st.file);
            if let Err(e) = super::log::write_article(&path, &st.stored, now) {
                // the log brings it back at the next start; until then
                // it is not here, and this run's caller is told so
                tracing::error!("news article file {}: {e}", path.display());
                let _ = fs::remove_file(&path);
                set(st.slot, Err(NewsError::io(path, e)));
                continue;
            }
            for (g, n) in &st.numbers {
                if let Some(r) = batch.groups.get_mut(g) {
                    r.count += 1;
                }
                index.insert(number_key(g, *n), st.id.as_bytes());
            }
            let rec = ArticleRecord {
                file: st.file.clone(),
                arrived: now,
                numbers: st.numbers.clone(),
                overview: std::mem::take(&mut st.overview),
            };
            index.insert(article_key(&st.id), encode(&rec));
            index.insert(arrival_key(now, &st.id), &[][..]);
            set(st.slot, Ok(Posted { message_id: st.id.clone(), numbers: st.numbers.clone(), arrived: now }));
        }
        // the numbers of articles that failed stay given: they never go back
        for (g, r) in &batch.groups {
            index.insert(group_key(g), encode(r));
        }
        #[cfg(test)]
        if *self.crash.lock_or_recover() == Some(Crash::BeforeIndex) {
            return Vec::new();
        }
        if let Err(e) = self.tree.apply_batch(index) {
            // durable in the log, but not findable until the next start
            // re-indexes the files: store trouble for the caller
            tracing::error!("news index: {e}");
            for st in &batch.staged {
                set(st.slot, Err(NewsError::Index(e.clone())));
            }
        }
        if log.full() {
            if let Err(e) = log.checkpoint(&self.dirs.articles) {
                // the segments stay and are replayed at the next start
                tracing::error!("news write-ahead log checkpoint {}: {e}", self.dirs.log.display());
            }
        }
        results
    }

    /// Under the write lock: check one article of a run and give it its
    /// numbers and `Xref` (the files come later, for the whole run). Always
    /// an `Err`: the refusal, or for a staged article the failure it is
    /// until its file is written.
    fn stage(
        &self,
        slot: usize,
        article: &[u8],
        keep: &impl Fn(&str) -> bool,
        batch: &mut Batch,
    ) -> Result<Posted, NewsError> {
        let h = article::headers(article);
        let id = h.get("Message-ID").ok_or(NewsError::NoMessageId)?.to_string();
        article::check_message_id(&id)?;
        let newsgroups = h.get("Newsgroups").ok_or(NewsError::NoNewsgroups)?.to_string();
        let mut wanted: Vec<&str> = Vec::new();
        for g in newsgroups.split(',').map(str::trim).filter(|g| !g.is_empty() && keep(g)) {
            if !wanted.contains(&g) {
                wanted.push(g);
            }
        }
        if batch.ids.contains(&id) || self.seen(&id)? {
            return Err(NewsError::Duplicate(id));
        }
        let mut numbers = Vec::new();
        for g in wanted {
            if !batch.groups.contains_key(g) {
                match group_record(&self.tree, g) {
                    Ok(r) => batch.groups.insert(g.to_string(), r),
                    Err(NewsError::NoSuchGroup(_)) => continue,
                    Err(e) => return Err(e),
                };
            }
            let Some(rec) = batch.groups.get_mut(g) else { continue };
            rec.high += 1;
            numbers.push((g.to_string(), rec.high));
        }
        if numbers.is_empty() {
            return Err(NewsError::NoGroups(newsgroups));
        }
        let xref = std::iter::once(self.settings.host.clone())
            .chain(numbers.iter().map(|(g, n)| format!("{g}:{n}")))
            .collect::<Vec<_>>()
            .join(" ");
        let (stored, overview) = article::stored(article, &h, &xref);
        batch.ids.insert(id.clone());
        let file = file_name(&id);
        let not_yet = NewsError::io(&self.dirs.log, io::Error::other("the article was not written to the log"));
        batch.staged.push(Staged { slot, file, id, numbers, stored, overview });
        Err(not_yet)
    }

    /// Retire the write-ahead log now: every article file made durable
    /// (`syncfs`), the log's segments removed, so that a start has nothing
    /// to replay. Posting does it by itself when a segment is full.
    pub fn checkpoint(&self) -> Result<(), NewsError> {
        let mut log = self.write.lock_or_recover();
        log.checkpoint(&self.dirs.articles).map_err(|e| NewsError::io(&self.dirs.log, e))
    }

    // ---- removal ----

    /// Remove articles older than `expire_after` and forget history lines
    /// past their time. Numbers stay where they are.
    pub fn expire(&self, now: u64) -> Result<Expired, NewsError> {
        let mut w = self.write.lock_or_recover();
        let mut out = Expired::default();
        if let Some(age) = self.settings.expire_after {
            let cutoff = now.saturating_sub(age.as_secs());
            let mut ids = Vec::new();
            for k in self.tree.range(b"t".to_vec()..arrival_key(cutoff, "")).keys() {
                let k = k?;
                ids.push(String::from_utf8_lossy(k.get(9..).unwrap_or_default()).into_owned());
            }
            out.articles = self.remove_articles(&mut w, &ids, now)?;
        }
        out.history_forgotten = self.forget_history(now)?;
        Ok(out)
    }

    /// Remove one article from every group (an operator's or a cancel's
    /// doing); its Message-ID goes to the history. False if it is not here.
    pub fn delete_article(&self, id: &str, now: u64) -> Result<bool, NewsError> {
        let mut w = self.write.lock_or_recover();
        Ok(self.remove_articles(&mut w, &[id.to_string()], now)? == 1)
    }

    /// Under the write lock: floors, then history, then the unlinks, then
    /// the index — each step durable before the next. The log is retired
    /// first, so that no replay brings a removed article back.
    fn remove_articles(&self, log: &mut Log, ids: &[String], now: u64) -> Result<usize, NewsError> {
        let mut found = Vec::new();
        for id in ids {
            if let Some(rec) = self.record(id)? {
                found.push((id.clone(), rec));
            }
        }
        if found.is_empty() {
            return Ok(0);
        }
        log.checkpoint(&self.dirs.articles).map_err(|e| NewsError::io(&self.dirs.log, e))?;
        let groups: BTreeSet<&str> =
            found.iter().flat_map(|(_, r)| r.numbers.iter().map(|(g, _)| g.as_str())).collect();
        let mut records = BTreeMap::new();
        for g in groups {
            let Ok(rec) = group_record(&self.tree, g) else { continue };
            let path = self.dirs.group_file(g);
            let mut file = Dirs::read_group(&path).map_err(|e| NewsError::io(&path, e))?;
            if file.floor < rec.high {
                file.floor = rec.high;
                self.dirs.write_group(&file)?;
            }
            records.insert(g.to_string(), rec);
        }
        let forget_at = now.saturating_add(self.settings.history_after.as_secs());
        let lines: String = found.iter().map(|(id, _)| format!("{forget_at} {id}\n")).collect();
        self.append_history(lines.as_bytes())?;
        for (id, rec) in &found {
            match fs::remove_file(self.dirs.articles.join(&rec.file)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(NewsError::io(self.dirs.articles.join(&rec.file), e)),
            }
            tracing::debug!(message_id = %id, "news article removed");
        }
        fsync_dir(&self.dirs.articles).map_err(|e| NewsError::io(&self.dirs.articles, e))?;

        let mut batch = sled::Batch::default();
        for (id, rec) in &found {
            for (g, n) in &rec.numbers {
                batch.remove(number_key(g, *n));
                if let Some(r) = records.get_mut(g) {
                    r.count = r.count.saturating_sub(1);
                }
            }
            batch.remove(article_key(id));
            batch.remove(arrival_key(rec.arrived, id));
            batch.insert(history_key(id), &forget_at.to_be_bytes()[..]);
        }
        for (g, r) in &records {
            batch.insert(group_key(g), encode(r));
        }
        self.tree.apply_batch(batch)?;
        Ok(found.len())
    }

    fn append_history(&self, lines: &[u8]) -> Result<(), NewsError> {
        let path = &self.dirs.history;
        let existed = path.exists();
        let mut f =
            OpenOptions::new().append(true).create(true).mode(0o600).open(path).map_err(|e| NewsError::io(path, e))?;
        f.write_all(lines).and_then(|()| f.sync_all()).map_err(|e| NewsError::io(path, e))?;
        if !existed {
            fsync_dir(&self.dirs.root).map_err(|e| NewsError::io(&self.dirs.root, e))?;
        }
        Ok(())
    }

    /// Drop history entries whose time has come, from the index and (when
    /// any) from the history file, rewritten durably.
    fn forget_history(&self, now: u64) -> Result<usize, NewsError> {
        let mut batch = sled::Batch::default();
        let mut forgotten = 0;
        for r in self.tree.scan_prefix(b"h") {
            let (k, v) = r?;
            let at = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            if at <= now {
                batch.remove(k);
                forgotten += 1;
            }
        }
        self.tree.apply_batch(batch)?;
        let path = &self.dirs.history;
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(forgotten),
            Err(e) => return Err(NewsError::io(path, e)),
        };
        let kept: String = text
            .lines()
            .filter(|l| super::reconcile::history_line(l).is_some_and(|(at, _)| at > now))
            .map(|l| format!("{l}\n"))
            .collect();
        if kept.len() != text.len() {
            crate::util::write_file_durably(path, kept.as_bytes(), 0o600).map_err(|e| NewsError::io(path, e))?;
        }
        Ok(forgotten)
    }

    // ---- articles ----

    fn record(&self, id: &str) -> Result<Option<ArticleRecord>, NewsError> {
        let k = article_key(id);
        self.tree.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// The Message-ID of article `number` in `group`.
    pub fn id_of(&self, group: &str, number: u64) -> Result<Option<String>, NewsError> {
        Ok(self.tree.get(number_key(group, number))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// An article's place (groups, numbers, arrival), by Message-ID.
    pub fn locate(&self, id: &str) -> Result<Option<Posted>, NewsError> {
        Ok(self.record(id)?.map(|r| Posted { message_id: id.to_string(), numbers: r.numbers, arrived: r.arrived }))
    }

    /// The stored article (with its `Xref`) by Message-ID; `None` if it is
    /// not here (or was expired a moment ago).
    pub fn article_by_id(&self, id: &str) -> Result<Option<Vec<u8>>, NewsError> {
        let Some(rec) = self.record(id)? else { return Ok(None) };
        let path = self.dirs.articles.join(&rec.file);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NewsError::io(path, e)),
        }
    }

    /// Article `number` of `group`: its Message-ID and bytes.
    pub fn article(&self, group: &str, number: u64) -> Result<Option<(String, Vec<u8>)>, NewsError> {
        let Some(id) = self.id_of(group, number)? else { return Ok(None) };
        Ok(self.article_by_id(&id)?.map(|b| (id, b)))
    }

    /// The first number after `number` in `group` (NEXT).
    pub fn next(&self, group: &str, number: u64) -> Result<Option<u64>, NewsError> {
        let from = number_key(group, number.saturating_add(1));
        let Some(r) = self.tree.range(from..).keys().next() else { return Ok(None) };
        Ok(parse_number_key(&r?).filter(|(g, _)| g == group).map(|(_, n)| n))
    }

    /// The last number before `number` in `group` (LAST).
    pub fn last(&self, group: &str, number: u64) -> Result<Option<u64>, NewsError> {
        let Some(r) = self.tree.range(number_prefix(group)..number_key(group, number)).keys().next_back() else {
            return Ok(None);
        };
        Ok(parse_number_key(&r?).map(|(_, n)| n))
    }

    /// The numbers present in `range` (LISTGROUP).
    pub fn numbers(&self, group: &str, range: RangeInclusive<u64>) -> Result<Vec<u64>, NewsError> {
        let mut out = Vec::new();
        for k in self.tree.range(number_key(group, *range.start())..=number_key(group, *range.end())).keys() {
            if let Some((_, n)) = parse_number_key(&k?) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// The overview of every article in `range` of `group` (OVER), by number.
    pub fn overview(&self, group: &str, range: RangeInclusive<u64>) -> Result<Vec<(u64, Overview)>, NewsError> {
        let mut out = Vec::new();
        for r in self.tree.range(number_key(group, *range.start())..=number_key(group, *range.end())) {
            let (k, id) = r?;
            let Some((_, n)) = parse_number_key(&k) else { continue };
            if let Some(rec) = self.record(&String::from_utf8_lossy(&id))? {
                out.push((n, rec.overview));
            }
        }
        Ok(out)
    }

    /// The overview of one article by Message-ID.
    pub fn overview_by_id(&self, id: &str) -> Result<Option<Overview>, NewsError> {
        Ok(self.record(id)?.map(|r| r.overview))
    }

    /// One header field (unfolded) of every article in `range` (HDR):
    /// from the overview when it has the field, else read from the files.
    /// Articles without the field are listed with an empty value.
    pub fn header(
        &self,
        group: &str,
        range: RangeInclusive<u64>,
        field: &str,
    ) -> Result<Vec<(u64, String)>, NewsError> {
        let mut out = Vec::new();
        for r in self.tree.range(number_key(group, *range.start())..=number_key(group, *range.end())) {
            let (k, id) = r?;
            let Some((_, n)) = parse_number_key(&k) else { continue };
            let id = String::from_utf8_lossy(&id).into_owned();
            if let Some(v) = self.header_by_id(&id, field)? {
                out.push((n, v));
            }
        }
        Ok(out)
    }

    /// One header field of one article by Message-ID (empty when the
    /// article lacks it); `None` when the article is not here.
    pub fn header_by_id(&self, id: &str, field: &str) -> Result<Option<String>, NewsError> {
        let Some(rec) = self.record(id)? else { return Ok(None) };
        if let Some(v) = rec.overview.field(field) {
            return Ok(Some(v));
        }
        let Some(bytes) = self.article_by_id(id)? else { return Ok(None) };
        Ok(Some(article::headers(&bytes).get(field).unwrap_or_default().to_string()))
    }

    /// Message-IDs of articles that arrived at or after `since` in a group
    /// matching `groups` (NEWNEWS), oldest first.
    pub fn new_articles_since(&self, since: u64, groups: &Wildmat) -> Result<Vec<String>, NewsError> {
        let mut out = Vec::new();
        for k in self.tree.range(arrival_key(since, "")..b"u".to_vec()).keys() {
            let k = k?;
            let id = String::from_utf8_lossy(k.get(9..).unwrap_or_default()).into_owned();
            if let Some(rec) = self.record(&id)? {
                if rec.numbers.iter().any(|(g, _)| groups.matches(g)) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }
}
