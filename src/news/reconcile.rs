//! Start-up reconciliation of the `news` index with the files, as
//! `mailbox::reconcile` does for mail: the group files decide which groups
//! exist (and their description, status and number floor); the article
//! files decide which articles exist, their numbers (their `Xref`) and
//! arrival (mtime); the history file restores refused Message-IDs. sled is
//! trusted only where it agrees. It runs inside [`super::NewsStore::open`],
//! after the write-ahead log was replayed into the files (`log.rs`) and
//! before any session, so it needs no locks.
//!
//! Bodies without index entries are **re-indexed** from their own headers;
//! only a file with no valid Message-ID or no `Xref` numbers (which the
//! store never writes) is **quarantined** to `news/quarantine/`, and a file
//! whose groups are all deleted is removed (its group deletion was cut
//! short). Index entries whose body is gone are dropped.

use super::article::{self, Overview};
use super::store::{self, ArticleRecord, Dirs, GroupFile, GroupRecord};
use super::{NewsError, Recovery};
use crate::util::fsync_dir;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::time::UNIX_EPOCH;

/// `<forget-at> <message-id>` from a history line.
pub(super) fn history_line(line: &str) -> Option<(u64, &str)> {
    let (at, id) = line.split_once(' ')?;
    Some((at.parse().ok()?, id.trim()))
}

pub fn reconcile(tree: &sled::Tree, dirs: &Dirs, now: u64) -> Result<Recovery, NewsError> {
    let mut rec = Recovery::default();
    let io = |p: &std::path::Path, e| NewsError::io(p, e);

    // groups: the files decide
    let mut live: BTreeMap<String, GroupFile> = BTreeMap::new();
    for entry in fs::read_dir(&dirs.groups).map_err(|e| io(&dirs.groups, e))? {
        let entry = entry.map_err(|e| io(&dirs.groups, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            // a group file write that a crash interrupted
            let _ = fs::remove_file(entry.path());
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        match Dirs::read_group(&entry.path()) {
            Ok(g) if !g.deleted && super::check_group_name(&g.name).is_ok() => {
                live.insert(g.name.clone(), g);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("news group file {}: {e}; group ignored", entry.path().display()),
        }
    }
    let mut batch = sled::Batch::default();
    for k in tree.scan_prefix(b"g").keys() {
        let k = k?;
        if !live.contains_key(String::from_utf8_lossy(&k[1..]).as_ref()) {
            tracing::warn!(group = %String::from_utf8_lossy(&k[1..]), "dropped a news group whose file is gone or deleted");
            batch.remove(k);
        }
    }
    tree.apply_batch(batch)?;

    // article files
    let mut files: HashSet<String> = HashSet::new();
    for entry in fs::read_dir(&dirs.articles).map_err(|e| io(&dirs.articles, e))? {
        let entry = entry.map_err(|e| io(&dirs.articles, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            // left by a store older than the write-ahead log: written
            // but never linked, never acknowledged
            let _ = fs::remove_file(entry.path());
            continue;
        }
        if !name.starts_with('.') {
            files.insert(name);
        }
    }

    // index entries: drop those whose file is gone, and numbers in deleted groups
    let mut known: HashSet<String> = HashSet::new();
    let mut batch = sled::Batch::default();
    let mut orphans = Vec::new();
    for r in tree.scan_prefix(b"m") {
        let (k, v) = r?;
        let id = String::from_utf8_lossy(&k[1..]).into_owned();
        let a = match store::decode::<ArticleRecord>(&k, &v) {
            Ok(a) if files.contains(&a.file) => a,
            Ok(a) => {
                tracing::warn!(message_id = %id, "dropped a news index entry whose article file is gone");
                batch.remove(store::arrival_key(a.arrived, &id));
                batch.remove(k);
                rec.dropped.push(id);
                continue;
            }
            Err(e) => {
                // the file, if any, is re-indexed below
                tracing::warn!("{e}; re-indexed from its file");
                batch.remove(k);
                continue;
            }
        };
        if !a.numbers.iter().any(|(g, _)| live.contains_key(g)) {
            // handled here: not to be taken for an unknown file below
            known.insert(a.file.clone());
            orphans.push(a.file);
            batch.remove(store::arrival_key(a.arrived, &id));
            batch.remove(k);
            continue;
        }
        known.insert(a.file);
    }
    tree.apply_batch(batch)?;

    // files the index does not know
    let mut batch = sled::Batch::default();
    for file in files.iter().filter(|f| !known.contains(*f)) {
        let path = dirs.articles.join(file);
        let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
        let h = article::headers(&bytes);
        let id = h.get("Message-ID").map(str::to_string);
        let numbers = h.get("Xref").and_then(article::parse_xref).filter(|n| !n.is_empty());
        let (Some(id), Some(numbers)) = (id, numbers) else {
            quarantine(dirs, file)?;
            rec.quarantined.push(file.clone());
            continue;
        };
        if article::check_message_id(&id).is_err() || store::file_name(&id) != *file {
            quarantine(dirs, file)?;
            rec.quarantined.push(file.clone());
            continue;
        }
        let numbers: Vec<(String, u64)> = numbers.into_iter().filter(|(g, _)| live.contains_key(g)).collect();
        if numbers.is_empty() {
            orphans.push(file.clone());
            continue;
        }
        let arrived = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(now, |d| d.as_secs());
        for (g, n) in &numbers {
            let k = store::number_key(g, *n);
            batch.insert(k, id.as_bytes());
        }
        let a = ArticleRecord { file: file.clone(), arrived, numbers, overview: Overview::of(&bytes) };
        batch.insert(store::arrival_key(arrived, &id), &[][..]);
        batch.insert(store::article_key(&id), store::encode(&a));
        tracing::warn!(message_id = %id, "re-indexed a news article found on disk but not in the index");
        rec.reindexed.push(id);
    }
    tree.apply_batch(batch)?;
    for file in &orphans {
        let _ = fs::remove_file(dirs.articles.join(file));
        rec.orphans_removed += 1;
    }
    if !orphans.is_empty() {
        fsync_dir(&dirs.articles).map_err(|e| io(&dirs.articles, e))?;
    }

    // numbers: drop those whose article is gone; count and find the highest
    let mut batch = sled::Batch::default();
    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    for r in tree.scan_prefix(b"n") {
        let (k, id) = r?;
        let parsed = store::parse_number_key(&k);
        let owner = tree.get(store::article_key(&String::from_utf8_lossy(&id)))?;
        let belongs = owner
            .and_then(|v| store::decode::<ArticleRecord>(&k, &v).ok())
            .zip(parsed.clone())
            .is_some_and(|(a, gn)| a.numbers.contains(&gn));
        match parsed {
            Some((g, n)) if belongs && live.contains_key(&g) => {
                let c = counts.entry(g).or_default();
                c.0 += 1;
                c.1 = c.1.max(n);
            }
            _ => {
                batch.remove(k);
            }
        }
    }
    for (name, g) in &live {
        let k = store::group_key(name);
        let old: Option<GroupRecord> = tree.get(&k)?.and_then(|v| store::decode(&k, &v).ok());
        let (count, max) = counts.get(name).copied().unwrap_or_default();
        let high = old.as_ref().map_or(0, |o| o.high).max(g.floor).max(max);
        if let Some(o) = &old {
            if high != o.high {
                tracing::warn!(group = %name, from = o.high, to = high, "raised a news group's high-water mark past the disk");
            }
        }
        let r = GroupRecord { description: g.description.clone(), posting: g.posting, created: g.created, high, count };
        batch.insert(k, store::encode(&r));
        rec.articles += count as usize;
    }
    tree.apply_batch(batch)?;
    rec.groups = live.len();

    // history: the file is the truth for what is still refused
    match fs::read_to_string(&dirs.history) {
        Ok(text) => {
            let mut batch = sled::Batch::default();
            for (at, id) in text.lines().filter_map(history_line) {
                if at > now && !tree.contains_key(store::article_key(id))? {
                    batch.insert(store::history_key(id), &at.to_be_bytes()[..]);
                }
            }
            tree.apply_batch(batch)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&dirs.history, e)),
    }
    Ok(rec)
}

/// Move an unreadable article file aside, durably.
fn quarantine(dirs: &Dirs, file: &str) -> Result<(), NewsError> {
    let from = dirs.articles.join(file);
    let to = dirs.quarantine.join(file);
    tracing::warn!("news article file {} has no valid Message-ID or Xref; moved to {}", from.display(), to.display());
    fs::rename(&from, &to).map_err(|e| NewsError::io(&from, e))?;
    fsync_dir(&dirs.quarantine).and_then(|()| fsync_dir(&dirs.articles)).map_err(|e| NewsError::io(&dirs.quarantine, e))
}
