//! Start-up reconciliation of the mailbox index with the message files, as
//! `queue::store` does for the spool: the files are the truth for which
//! messages exist and for each folder's name and UIDVALIDITY; sled is the
//! truth only for what the files cannot say (flags, subscriptions). It runs
//! before any session or delivery, so it needs no locks.

use super::disk::{self, Disk};
use super::index::{self, FolderRecord, MessageRecord};
use super::{MailboxError, Recovery};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

/// Reconcile everything; returns what was found and the highest UIDVALIDITY
/// in use (new folders get larger ones).
pub fn reconcile(tree: &sled::Tree, disk: &Disk) -> Result<(Recovery, u32), MailboxError> {
    let mut rec = Recovery::default();
    let mut seen: HashSet<(String, u32)> = HashSet::new();
    let mut max_uidvalidity = 0u32;
    let io = |p: &Path, e| MailboxError::io(p, e);
    for entry in fs::read_dir(disk.root()).map_err(|e| io(disk.root(), e))? {
        let entry = entry.map_err(|e| io(disk.root(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let Some(user) = disk::unescape_user(&name) else {
            tracing::warn!("mailbox directory {}: not a user name; ignored", entry.path().display());
            continue;
        };
        rec.users += 1;
        let udir = entry.path();
        for f in fs::read_dir(&udir).map_err(|e| io(&udir, e))? {
            let f = f.map_err(|e| io(&udir, e))?;
            let fname = f.file_name().to_string_lossy().into_owned();
            if fname.starts_with(".new-") || fname.starts_with(".del-") {
                // a folder creation or deletion that a crash interrupted
                if let Err(e) = fs::remove_dir_all(f.path()) {
                    tracing::warn!("cannot remove {}: {e}", f.path().display());
                }
                continue;
            }
            let Some(fid) = disk::parse_folder_dir_name(&fname) else { continue };
            if folder(tree, disk, &user, fid, &f.path(), &mut rec, &mut max_uidvalidity)? {
                seen.insert((user.clone(), fid));
            }
        }
    }
    rec.folders = seen.len();
    drop_orphans(tree, &seen, &mut rec)?;
    Ok((rec, max_uidvalidity))
}

/// Reconcile one folder directory; false if it could not be used.
fn folder(
    tree: &sled::Tree,
    disk: &Disk,
    user: &str,
    fid: u32,
    dir: &Path,
    rec: &mut Recovery,
    max_uidvalidity: &mut u32,
) -> Result<bool, MailboxError> {
    let fkey = index::folder_key(user, fid);
    let indexed: Option<FolderRecord> = match tree.get(&fkey)? {
        Some(v) => {
            index::decode(&fkey, &v).map_err(|e| tracing::warn!("{e}; rebuilding it from {}", dir.display())).ok()
        }
        None => None,
    };
    let state = match Disk::read_state(dir) {
        Ok(s) => s,
        Err(e) => match &indexed {
            // the index still knows the folder: write its state file again
            Some(r) => {
                tracing::warn!("{}: {e}; rewritten from the index", dir.join(disk::STATE_FILE).display());
                let s = disk::FolderState {
                    name: r.name.clone(),
                    uidvalidity: r.uidvalidity,
                    uidnext: r.uidnext,
                    special_use: r.special_use,
                    highestmodseq: r.durable_modseq,
                };
                disk.write_state(dir, &s).map_err(|e| MailboxError::io(dir, e))?;
                s
            }
            None => {
                tracing::warn!("{}: {e}; folder ignored", dir.join(disk::STATE_FILE).display());
                return Ok(false);
            }
        },
    };

    // the messages on disk: uid -> (size, internal date)
    let mut files: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for m in fs::read_dir(dir).map_err(|e| MailboxError::io(dir, e))? {
        let m = m.map_err(|e| MailboxError::io(dir, e))?;
        let name = m.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            // written but never linked: never acknowledged
            let _ = fs::remove_file(m.path());
            continue;
        }
        let Some(uid) = disk::parse_message_name(&name) else { continue };
        let meta = m.metadata().map_err(|e| MailboxError::io(m.path(), e))?;
        files.insert(uid, (meta.len(), disk::internal_date(&meta)));
    }

    let mut frec = indexed.clone().unwrap_or(FolderRecord {
        name: state.name.clone(),
        uidvalidity: state.uidvalidity,
        uidnext: state.uidnext,
        durable_uidnext: state.uidnext,
        special_use: state.special_use,
        subscribed: true,
        highestmodseq: 0,
        durable_modseq: 0,
    });
    if indexed.is_none() {
        tracing::warn!(user, folder = %state.name, "re-indexed a folder found on disk but not in the index");
    }
    // the disk decides the name and UIDVALIDITY (written first, fsynced)
    frec.name = state.name.clone();
    frec.uidvalidity = state.uidvalidity;
    frec.special_use = state.special_use;
    frec.durable_uidnext = state.uidnext;
    // every MODSEQ handed out is below the fsynced floor: resume just under
    // it, whatever sled lost (folders from before CONDSTORE have no floor)
    frec.durable_modseq = state.highestmodseq;
    frec.highestmodseq = frec.highestmodseq.max(state.highestmodseq.saturating_sub(1)).max(1);
    let past_disk = files.keys().next_back().map_or(1, |u| u.saturating_add(1));
    let uidnext = frec.uidnext.max(state.uidnext).max(past_disk);
    if uidnext != frec.uidnext && indexed.is_some() {
        tracing::warn!(user, folder = %frec.name, from = frec.uidnext, to = uidnext, "raised UIDNEXT past the disk");
        rec.uidnext_raised += 1;
    }
    frec.uidnext = uidnext;
    *max_uidvalidity = (*max_uidvalidity).max(frec.uidvalidity);

    let mut batch = sled::Batch::default();
    let mut indexed_uids = HashSet::new();
    // messages without a MODSEQ (re-indexed, or indexed before CONDSTORE)
    // get one above everything the folder has handed out
    let mut unversioned = Vec::new();
    for r in tree.scan_prefix(index::message_prefix(user, fid)) {
        let (k, v) = r?;
        let Some(uid) = index::uid_of(&k) else { continue };
        match (files.get(&uid), index::decode::<MessageRecord>(&k, &v)) {
            (None, _) => {
                tracing::warn!(user, folder = %frec.name, uid, "dropped a mailbox index entry whose file is gone");
                batch.remove(k);
                batch.remove(index::parse_key(user, fid, uid));
                rec.dropped.push((user.to_string(), frec.name.clone(), uid));
            }
            (Some(&(size, _)), Ok(mut m)) => {
                indexed_uids.insert(uid);
                frec.highestmodseq = frec.highestmodseq.max(m.modseq);
                if m.modseq == 0 {
                    m.size = size;
                    unversioned.push((k.to_vec(), m));
                } else if m.size != size {
                    m.size = size;
                    batch.insert(k, index::encode(&m));
                }
            }
            (Some(_), Err(e)) => tracing::warn!("{e}; re-indexed from its file"),
        }
    }
    for (&uid, &(size, date)) in &files {
        if indexed_uids.contains(&uid) {
            continue;
        }
        let m = MessageRecord { date, size, flags: Default::default(), modseq: 0 };
        unversioned.push((index::message_key(user, fid, uid), m));
        // parsed as a delivery would have (unreadable now: parsed on first use)
        if let Ok(bytes) = fs::read(dir.join(disk::message_name(uid))) {
            batch.insert(index::parse_key(user, fid, uid), index::encode(&super::parse::parse(&bytes)));
        }
        tracing::warn!(user, folder = %frec.name, uid, "re-indexed a message found on disk but not in the index");
        rec.reindexed.push((user.to_string(), frec.name.clone(), uid));
    }
    if !unversioned.is_empty() {
        // one new MODSEQ for all of them; the floor (if any) stays ahead
        // because the next change by the store moves it first
        frec.highestmodseq += 1;
        for (k, mut m) in unversioned {
            m.modseq = frec.highestmodseq;
            batch.insert(k, index::encode(&m));
        }
    }
    batch.insert(fkey, index::encode(&frec));
    tree.apply_batch(batch)?;
    rec.messages += files.len();
    Ok(true)
}

/// Index entries for folders that have no directory (any more).
fn drop_orphans(tree: &sled::Tree, seen: &HashSet<(String, u32)>, rec: &mut Recovery) -> Result<(), MailboxError> {
    let mut batch = sled::Batch::default();
    for k in tree.scan_prefix(b"f").keys() {
        let k = k?;
        match index::parse_folder_key(&k) {
            Some(key) if seen.contains(&key) => {}
            other => {
                tracing::warn!(folder = ?other, "dropped a mailbox folder whose directory is gone");
                batch.remove(k);
            }
        }
    }
    // a parse whose message record is gone goes too
    for k in tree.scan_prefix(b"p").keys() {
        let k = k?;
        let mut mk = k.to_vec();
        mk[0] = b'm';
        let folder = k.len().checked_sub(4).and_then(|end| {
            let mut fk = k[..end].to_vec();
            fk[0] = b'f';
            index::parse_folder_key(&fk)
        });
        if !folder.is_some_and(|key| seen.contains(&key)) || !tree.contains_key(&mk)? {
            batch.remove(k);
        }
    }
    for k in tree.scan_prefix(b"m").keys() {
        let k = k?;
        let folder = k.len().checked_sub(4).and_then(|end| {
            let mut fk = k[..end].to_vec();
            fk[0] = b'f';
            index::parse_folder_key(&fk)
        });
        match folder {
            Some(key) if seen.contains(&key) => {}
            other => {
                if let (Some((user, _)), Some(uid)) = (other, index::uid_of(&k)) {
                    rec.dropped.push((user, String::new(), uid));
                }
                batch.remove(k);
            }
        }
    }
    tree.apply_batch(batch)?;
    Ok(())
}
