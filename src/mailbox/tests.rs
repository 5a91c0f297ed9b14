//! Mailbox store tests: delivery and reading back, default folders, stable
//! UIDs and UIDVALIDITY across reopen, reconciliation after a crash between
//! the file and the index (both directions), flags, copy, folders,
//! notifications and the maildrop lock.

use super::*;
use crate::auth::Accounts;
use crate::datadir::DataDir;
use std::path::Path;

const ALICE: &str = "alice@example.test";

pub(super) fn open(dir: &Path) -> (DataDir, MailboxStore, Recovery) {
    let data = DataDir::open_when_free(dir);
    let accounts = Accounts::open(&data.db).unwrap();
    if !accounts.user_exists(ALICE) {
        accounts.add_user(ALICE, "pw").unwrap();
    }
    let (store, rec) = MailboxStore::open(&data.db, dir, accounts).unwrap();
    (data, store, rec)
}

fn body(i: usize) -> Vec<u8> {
    format!("Received: from x\r\nSubject: {i}\r\n\r\nbody {i}\r\n.leading dot\r\n").into_bytes()
}

fn uids(store: &MailboxStore, folder: &str) -> Vec<u32> {
    store.messages(ALICE, folder).unwrap().messages.iter().map(|m| m.uid).collect()
}

#[test]
fn deliver_lists_and_reads_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    assert_eq!(store.deliver("Alice@Example.test", &body(1), 1_700_000_000).unwrap(), 1);
    assert_eq!(store.deliver(ALICE, &body(2), 1_700_000_001).unwrap(), 2);
    let l = store.messages(ALICE, "inbox").unwrap();
    assert_eq!(l.messages.len(), 2);
    assert_eq!(l.uidnext, 3);
    assert_eq!(l.messages[1].size, body(2).len() as u64);
    assert_eq!(l.messages[1].internal_date, 1_700_000_001);
    assert!(l.messages[0].flags.is_empty());
    assert_eq!(store.read(ALICE, INBOX, 2).unwrap(), body(2));
    assert!(matches!(store.read(ALICE, INBOX, 9), Err(MailboxError::NoSuchMessage { uid: 9, .. })));
    let e = store.deliver("nobody@example.test", b"x\r\n", 0).unwrap_err();
    assert!(matches!(e, MailboxError::NoSuchUser(_)) && e.is_permanent(), "{e}");
    assert_eq!(e.smtp_status(), (550, "5.1.1"));
    assert!(store.deliver("", b"x", 0).unwrap_err().is_permanent());
    // the file is where the docs say, with the internal date as mtime
    let f = dir.path().join("mail/alice@example.test/f1/2");
    assert_eq!(std::fs::read(&f).unwrap(), body(2));
    assert_eq!(disk::internal_date(&std::fs::metadata(&f).unwrap()), 1_700_000_001);
}

#[test]
fn every_user_gets_the_special_use_folders() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    let folders = store.folders(ALICE).unwrap();
    let names: Vec<(&str, Option<SpecialUse>)> = folders.iter().map(|f| (f.name.as_str(), f.special_use)).collect();
    assert_eq!(names, DEFAULT_FOLDERS.to_vec());
    let mut v: Vec<u32> = folders.iter().map(|f| f.uidvalidity).collect();
    v.dedup();
    assert_eq!(v.len(), 5, "every folder has its own UIDVALIDITY: {v:?}");
    assert!(folders.iter().all(|f| f.uidnext == 1 && f.messages == 0 && f.subscribed));
}

#[test]
fn uids_and_uidvalidity_are_stable_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let (_d, store, _) = open(dir.path());
        for i in 0..3 {
            store.deliver(ALICE, &body(i), 1_700_000_000).unwrap();
        }
        // the highest UID goes: UIDNEXT must not fall back to it
        assert_eq!(store.expunge(ALICE, INBOX, &[3, 42]).unwrap(), vec![3]);
        store.folders(ALICE).unwrap()
    };
    let (_d, store, rec) = open(dir.path());
    assert!(rec.reindexed.is_empty() && rec.dropped.is_empty(), "{rec:?}");
    assert_eq!(rec.messages, 2);
    assert_eq!(store.folders(ALICE).unwrap(), before);
    assert_eq!(uids(&store, INBOX), [1, 2]);
    assert_eq!(store.deliver(ALICE, &body(9), 0).unwrap(), 4);
    // a new folder never reuses a UIDVALIDITY
    let max = before.iter().map(|f| f.uidvalidity).max().unwrap();
    assert!(store.create_folder(ALICE, "Archive").unwrap().uidvalidity > max);
}

#[test]
fn a_crash_between_the_file_and_the_index_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uidvalidity = {
        let (d, store, _) = open(dir.path());
        store.deliver(ALICE, &body(1), 1_700_000_000).unwrap();
        let uidvalidity = store.folder(ALICE, INBOX).unwrap().uidvalidity;
        // A delivery that died after the file was durable and before the
        // index was written: exactly what `append` does up to that point.
        let inbox = dir.path().join("mail/alice@example.test/f1");
        disk::Disk::new(dir.path().join("mail")).write_message(&inbox, 2, 1_700_000_002, &body(2)).unwrap();
        // and a sled that lost its most recent writes of the first delivery
        let tree = d.db.open_tree("mailbox").unwrap();
        tree.remove(index::message_key(ALICE, 1, 1)).unwrap();
        uidvalidity
    };
    let (_d, store, rec) = open(dir.path());
    assert_eq!(
        rec.reindexed,
        vec![(ALICE.to_string(), INBOX.to_string(), 1), (ALICE.to_string(), INBOX.to_string(), 2)]
    );
    let l = store.messages(ALICE, INBOX).unwrap();
    assert_eq!(l.uidvalidity, uidvalidity);
    assert_eq!(l.uidnext, 3);
    assert_eq!(l.messages[1].internal_date, 1_700_000_002);
    assert_eq!(store.read(ALICE, INBOX, 1).unwrap(), body(1));
    assert_eq!(store.read(ALICE, INBOX, 2).unwrap(), body(2));
    assert_eq!(store.deliver(ALICE, &body(3), 0).unwrap(), 3);
}

#[test]
fn a_lost_index_is_rebuilt_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let (d, store, _) = open(dir.path());
        for i in 0..4 {
            store.deliver(ALICE, &body(i), 1_700_000_000 + i as u64).unwrap();
        }
        store.create_folder(ALICE, "Lists/rust").unwrap();
        store.append(ALICE, "Sent", &body(7), 5, &Flags::new()).unwrap();
        store.expunge(ALICE, INBOX, &[4]).unwrap();
        let before = store.folders(ALICE).unwrap();
        d.db.open_tree("mailbox").unwrap().clear().unwrap();
        before
    };
    let (_d, store, rec) = open(dir.path());
    assert_eq!(rec.reindexed.len(), 4);
    assert_eq!(rec.folders, 6);
    assert_eq!(store.folders(ALICE).unwrap(), before, "names, UIDVALIDITY and UIDNEXT all come back");
    assert_eq!(uids(&store, INBOX), [1, 2, 3]);
    assert_eq!(store.deliver(ALICE, &body(5), 0).unwrap(), 5, "UID 4 existed once; it is never reused");
}

#[test]
fn an_expunge_interrupted_by_a_crash_is_finished_and_never_reuses_a_uid() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (d, store, _) = open(dir.path());
        for i in 0..3 {
            store.deliver(ALICE, &body(i), 0).unwrap();
        }
        let tree = d.db.open_tree("mailbox").unwrap();
        let fkey = index::folder_key(ALICE, 1);
        let stale = tree.get(&fkey).unwrap().unwrap();
        let stale_msg = tree.get(index::message_key(ALICE, 1, 3)).unwrap().unwrap();
        store.expunge(ALICE, INBOX, &[3]).unwrap();
        // sled rolls back to before the expunge: the record of UID 3 is
        // back, UIDNEXT and its floor as they were
        let mut old: index::FolderRecord = serde_json::from_slice(&stale).unwrap();
        old.durable_uidnext = 1;
        tree.insert(&fkey, index::encode(&old)).unwrap();
        tree.insert(index::message_key(ALICE, 1, 3), stale_msg).unwrap();
        // and leftovers of interrupted writes
        std::fs::write(dir.path().join("mail/alice@example.test/f1/.tmp-1-1"), b"half a mess").unwrap();
        std::fs::create_dir(dir.path().join("mail/alice@example.test/.new-f9")).unwrap();
    }
    let (_d, store, rec) = open(dir.path());
    assert_eq!(rec.dropped, vec![(ALICE.to_string(), INBOX.to_string(), 3)]);
    assert!(rec.reindexed.is_empty());
    assert_eq!(uids(&store, INBOX), [1, 2]);
    assert_eq!(store.deliver(ALICE, &body(4), 0).unwrap(), 4);
    assert!(!dir.path().join("mail/alice@example.test/f1/.tmp-1-1").exists());
    assert!(!dir.path().join("mail/alice@example.test/.new-f9").exists());
}

#[test]
fn flags_copy_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    for i in 0..3 {
        store.deliver(ALICE, &body(i), 100 + i as u64).unwrap();
    }
    let seen: Flags = [Flag::Seen].into_iter().collect();
    let both: Flags = [Flag::Seen, Flag::Flagged].into_iter().collect();
    let r = store.store_flags(ALICE, INBOX, &[1, 2, 77], FlagChange::Add, &seen).unwrap();
    assert_eq!(r, vec![(1, seen.clone()), (2, seen.clone())]);
    store.store_flags(ALICE, INBOX, &[2], FlagChange::Replace, &both).unwrap();
    store.store_flags(ALICE, INBOX, &[1], FlagChange::Remove, &seen).unwrap();
    let l = store.messages(ALICE, INBOX).unwrap();
    assert_eq!(
        l.messages.iter().map(|m| m.flags.clone()).collect::<Vec<_>>(),
        [Flags::new(), both.clone(), Flags::new()]
    );
    assert_eq!(store.folder(ALICE, INBOX).unwrap().unseen, 2);

    let (uv, pairs) = store.copy(ALICE, INBOX, &[3, 2, 99], "Trash").unwrap();
    assert_eq!(uv, store.folder(ALICE, "Trash").unwrap().uidvalidity);
    assert_eq!(pairs, vec![(2, 1), (3, 2)]);
    let trash = store.messages(ALICE, "Trash").unwrap();
    assert_eq!(trash.messages[0].flags, both, "flags travel with the copy");
    assert_eq!(trash.messages[1].internal_date, 102, "and so does the internal date");
    store.expunge(ALICE, INBOX, &[2, 3]).unwrap();
    assert_eq!(store.read(ALICE, "Trash", 2).unwrap(), body(2), "the copy outlives the original");

    let info = store.create_folder(ALICE, "Work").unwrap();
    assert!(matches!(store.create_folder(ALICE, "Work"), Err(MailboxError::FolderExists { .. })));
    assert!(matches!(store.create_folder(ALICE, "inbox"), Err(MailboxError::FolderExists { .. })));
    assert!(matches!(store.create_folder(ALICE, "a\r\nb"), Err(MailboxError::InvalidFolderName(..))));
    store.append(ALICE, "Work", &body(5), 5, &seen).unwrap();
    store.rename_folder(ALICE, "Work", "Projects").unwrap();
    let p = store.folder(ALICE, "Projects").unwrap();
    assert_eq!((p.uidvalidity, p.messages), (info.uidvalidity, 1));
    assert!(matches!(store.folder(ALICE, "Work"), Err(MailboxError::NoSuchFolder { .. })));
    assert!(store.rename_folder(ALICE, INBOX, "Old").is_err());
    store.set_subscribed(ALICE, "Projects", false).unwrap();
    assert!(!store.folder(ALICE, "Projects").unwrap().subscribed);
    store.delete_folder(ALICE, "Projects").unwrap();
    assert!(store.delete_folder(ALICE, INBOX).is_err());
    assert_eq!(store.folders(ALICE).unwrap().len(), 5);
    drop(store);
    drop(_d);
    let (_d, store, rec) = open(dir.path());
    assert!(rec.dropped.is_empty() && rec.reindexed.is_empty(), "{rec:?}");
    assert_eq!(store.messages(ALICE, INBOX).unwrap().messages[0].flags, Flags::new());
    assert_eq!(store.messages(ALICE, "Trash").unwrap().messages[0].flags, both);
}

#[test]
fn sessions_hear_of_changes_and_the_maildrop_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    let mut rx = store.subscribe(ALICE).unwrap();
    let uid = store.deliver(ALICE, &body(1), 0).unwrap();
    let c = rx.try_recv().unwrap();
    assert_eq!((c.folder.as_str(), c.kind), (INBOX, ChangeKind::Appended(vec![uid])));
    let seen: Flags = [Flag::Seen].into_iter().collect();
    store.store_flags(ALICE, INBOX, &[uid], FlagChange::Add, &seen).unwrap();
    assert_eq!(rx.try_recv().unwrap().kind, ChangeKind::Flags(vec![uid]));
    store.store_flags(ALICE, INBOX, &[uid], FlagChange::Add, &seen).unwrap();
    assert!(rx.try_recv().is_err(), "no change, no news");
    store.expunge(ALICE, INBOX, &[uid]).unwrap();
    assert_eq!(rx.try_recv().unwrap().kind, ChangeKind::Expunged(vec![uid]));

    let lock = store.lock_maildrop("ALICE@example.test").unwrap();
    assert!(matches!(store.lock_maildrop(ALICE), Err(MailboxError::InUse(_))));
    drop(lock);
    assert!(store.lock_maildrop(ALICE).is_ok());
}

#[test]
fn any_method_can_be_the_first_for_a_new_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    let seen: Flags = [Flag::Seen].into_iter().collect();
    // each on a user the store has never seen: defaults are made, nothing deadlocks
    assert!(store.expunge("u1@example.test", INBOX, &[1]).unwrap().is_empty());
    assert!(store.store_flags("u2@example.test", INBOX, &[1], FlagChange::Add, &seen).unwrap().is_empty());
    assert!(store.copy("u3@example.test", INBOX, &[1], "Trash").unwrap().1.is_empty());
    store.rename_folder("u4@example.test", "Junk", "Spam").unwrap();
    store.delete_folder("u5@example.test", "Drafts").unwrap();
    store.set_subscribed("u6@example.test", "Sent", false).unwrap();
    assert_eq!(store.messages("u7@example.test", INBOX).unwrap().messages, vec![]);
    assert_eq!(store.folder("u8@example.test", "Trash").unwrap().special_use, Some(SpecialUse::Trash));
    assert_eq!(store.append("u9@example.test", "Sent", b"x\r\n", 1, &seen).unwrap().uid, 1);
    assert!(matches!(store.read("u10@example.test", INBOX, 1), Err(MailboxError::NoSuchMessage { .. })));
    assert_eq!(store.folders("u4@example.test").unwrap().iter().filter(|f| f.name == "Spam").count(), 1);
}

#[test]
fn concurrent_deliveries_get_distinct_uids() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    let store = std::sync::Arc::new(store);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..10).map(|i| store.deliver(ALICE, &body(t * 100 + i), 0).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u32> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<u32>>());
    assert_eq!(uids(&store, INBOX).len(), 40);
}

#[test]
fn user_names_escape_safely_on_disk() {
    for u in ["alice@example.test", "a/b@x.test", "..@x", "Ü@x", "%@x"] {
        let e = disk::escape_user(u);
        assert!(!e.contains('/') && !e.starts_with('.'), "{u} -> {e}");
        assert_eq!(disk::unescape_user(&e).as_deref(), Some(u));
    }
    assert_eq!(disk::parse_message_name("12"), Some(12));
    assert_eq!(disk::parse_message_name("012"), None);
    assert_eq!(disk::parse_message_name(".tmp-1"), None);
}

// ------------------------------------------------------------ the fault seam

use super::fault::{Faults, Step, EIO, EMFILE, ENOSPC};
use std::sync::Arc;

const ERRNOS: [i32; 3] = [EIO, ENOSPC, EMFILE];

/// Runs every row of a table test, then fails naming each row that failed
/// (its own message is printed as it panics), so one run shows them all.
#[derive(Default)]
struct Table(Vec<String>);

impl Table {
    fn row<T>(&mut self, what: &str, f: impl FnOnce() -> T) -> Option<T> {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        if r.is_err() {
            self.0.push(what.to_string());
        }
        r.ok()
    }

    fn finish(self) {
        assert!(self.0.is_empty(), "{} rows failed: {:#?}", self.0.len(), self.0);
    }
}

pub(super) fn open_faulty(dir: &Path) -> (DataDir, MailboxStore, Arc<Faults>) {
    let data = DataDir::open_when_free(dir);
    let accounts = Accounts::open(&data.db).unwrap();
    if !accounts.user_exists(ALICE) {
        accounts.add_user(ALICE, "pw").unwrap();
    }
    let faults = Arc::new(Faults::none());
    let (store, _) = MailboxStore::open_with_faults(&data.db, dir, accounts, faults.clone()).unwrap();
    (data, store, faults)
}

fn assert_temporary(e: &MailboxError, errno: i32, what: &str) {
    assert!(!e.is_permanent(), "{what}: {e} must be temporary");
    assert_eq!(e.smtp_status(), (451, "4.3.0"), "{what}: {e}");
    assert!(e.to_string().contains(&format!("os error {errno}")), "{what}: {e} names the I/O error");
}

/// Every folder of alice with its messages (uid, flags, bytes); a listed
/// message that cannot be read shows as `None`.
type Snapshot = Vec<(String, Vec<(u32, Flags, Option<Vec<u8>>)>)>;

fn snapshot(store: &MailboxStore) -> Snapshot {
    store
        .folders(ALICE)
        .unwrap()
        .into_iter()
        .map(|f| {
            let msgs = store.messages(ALICE, &f.name).unwrap().messages;
            let msgs = msgs.into_iter().map(|m| (m.uid, m.flags, store.read(ALICE, &f.name, m.uid).ok())).collect();
            (f.name, msgs)
        })
        .collect()
}

/// What the user's directory holds: per folder directory, its message
/// file names; plus any other name (leftovers of an interrupted write).
fn on_disk(dir: &Path) -> (Vec<Vec<u32>>, Vec<String>) {
    let udir = dir.join("mail").join(ALICE);
    let mut folders = Vec::new();
    let mut stray = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&udir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| disk::parse_folder_dir_name(&e.file_name().to_string_lossy()));
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if disk::parse_folder_dir_name(&name).is_none() {
            stray.push(name);
            continue;
        }
        let mut uids = Vec::new();
        for m in std::fs::read_dir(e.path()).unwrap() {
            let m = m.unwrap().file_name().to_string_lossy().into_owned();
            match disk::parse_message_name(&m) {
                Some(uid) => uids.push(uid),
                None if m == disk::STATE_FILE => {}
                None => stray.push(format!("{name}/{m}")),
            }
        }
        uids.sort_unstable();
        folders.push(uids);
    }
    (folders, stray)
}

/// What a client sees matches the disk: every listed message reads back,
/// every message file is listed, nothing else lies around.
fn assert_consistent(dir: &Path, store: &MailboxStore, what: &str) {
    let snap = snapshot(store);
    for (folder, msgs) in &snap {
        for (uid, _, bytes) in msgs {
            assert!(bytes.is_some(), "{what}: {folder} lists UID {uid} but it cannot be read");
        }
    }
    let listed: Vec<Vec<u32>> = snap.iter().map(|(_, m)| m.iter().map(|m| m.0).collect()).collect();
    let (files, mut stray) = on_disk(dir);
    assert_eq!(files, listed, "{what}: the message files on disk are exactly the listed messages");
    // a folder deleted while its directory could not be fsynced stays
    // aside until the next start, which removes it (checked after restarts)
    stray.retain(|n| !n.starts_with(".del-"));
    assert!(stray.is_empty(), "{what}: leftovers on disk: {stray:?}");
}

/// Table: a delivery fails at each of its steps with EIO, ENOSPC and
/// EMFILE. Each time it is a temporary failure (the queue retries), nothing
/// of it is visible or left on disk, a restart brings back exactly the
/// messages delivered before, and the retry delivers it exactly once.
#[test]
fn a_fault_at_any_step_of_a_delivery_is_temporary_and_leaves_nothing_behind() {
    let mut table = Table::default();
    for step in [Step::Create, Step::Write, Step::Fsync, Step::Link, Step::DirSync, Step::Index] {
        for errno in ERRNOS {
            let what = format!("{} = os error {errno}", step.name());
            table.row(&what, || {
                let dir = tempfile::tempdir().unwrap();
                {
                    let (_d, store, faults) = open_faulty(dir.path());
                    store.deliver(ALICE, &body(1), 1).unwrap();
                    store.deliver(ALICE, &body(2), 2).unwrap();
                    faults.inject(step, errno, 1);
                    let e = store.deliver(ALICE, &body(3), 3).unwrap_err();
                    assert!(!faults.pending(), "{what}: the fault fired");
                    assert_temporary(&e, errno, &what);
                    assert_eq!(uids(&store, INBOX), [1, 2], "{what}");
                    assert_consistent(dir.path(), &store, &what);
                }
                // restart: what was delivered before is there, nothing more
                {
                    let (_d, store, rec) = open(dir.path());
                    assert!(rec.reindexed.is_empty() && rec.dropped.is_empty(), "{what}: {rec:?}");
                    assert_eq!(uids(&store, INBOX), [1, 2], "{what}");
                    assert_eq!(store.read(ALICE, INBOX, 2).unwrap(), body(2), "{what}");
                    // the queue's retry
                    let uid = store.deliver(ALICE, &body(3), 3).unwrap();
                    assert_eq!(store.read(ALICE, INBOX, uid).unwrap(), body(3), "{what}");
                }
                let (_d, store, rec) = open(dir.path());
                assert!(rec.reindexed.is_empty() && rec.dropped.is_empty(), "{what}: {rec:?}");
                let bodies: Vec<Vec<u8>> =
                    uids(&store, INBOX).iter().map(|&u| store.read(ALICE, INBOX, u).unwrap()).collect();
                assert_eq!(bodies, [body(1), body(2), body(3)], "{what}: each message exactly once");
                assert_consistent(dir.path(), &store, &what);
            });
        }
    }
    table.finish();
}

/// A fault without a restart: the retry in the same process (the queue's
/// next attempt) delivers the message exactly once too.
#[test]
fn a_delivery_retried_after_a_fault_is_stored_once() {
    let mut table = Table::default();
    for step in [Step::Create, Step::Write, Step::Fsync, Step::Link, Step::DirSync, Step::Index] {
        let what = step.name();
        table.row(what, || {
            let dir = tempfile::tempdir().unwrap();
            {
                let (_d, store, faults) = open_faulty(dir.path());
                store.deliver(ALICE, &body(1), 1).unwrap();
                faults.inject(step, EIO, 1);
                assert_temporary(&store.deliver(ALICE, &body(2), 2).unwrap_err(), EIO, what);
                store.deliver(ALICE, &body(2), 2).unwrap();
                assert_consistent(dir.path(), &store, what);
            }
            let (_d, store, _) = open(dir.path());
            let bodies: Vec<Vec<u8>> =
                uids(&store, INBOX).iter().map(|&u| store.read(ALICE, INBOX, u).unwrap()).collect();
            assert_eq!(bodies, [body(1), body(2)], "{what}: each message exactly once after a restart");
        });
    }
    table.finish();
}

/// The first delivery to a user makes the default folders: a fault at
/// every hit of every step there is temporary too, and the retry leaves
/// the user with all five folders (not only those made before the fault).
#[test]
fn a_fault_while_making_a_new_users_folders_is_temporary_and_all_of_them_come() {
    let mut table = Table::default();
    for step in [Step::Folder, Step::Create, Step::Write, Step::Fsync, Step::DirSync, Step::Index] {
        let mut fired = true;
        let mut n = 0;
        while fired {
            n += 1;
            assert!(n < 50, "{}: the faults never ran out", step.name());
            let what = format!("{} hit {n}", step.name());
            fired = table
                .row(&what, || {
                    let errno = ERRNOS[n as usize % 3];
                    let dir = tempfile::tempdir().unwrap();
                    let (_d, store, faults) = open_faulty(dir.path());
                    faults.inject(step, errno, n);
                    match store.deliver(ALICE, &body(1), 1) {
                        Ok(_) => {
                            assert!(n > 1, "{what}: the step is never taken");
                            assert!(faults.pending(), "{what}: a delivery that met its fault cannot succeed");
                            return false;
                        }
                        Err(e) => assert_temporary(&e, errno, &what),
                    }
                    assert_eq!(store.deliver(ALICE, &body(1), 1).unwrap(), 1, "{what}: the retry");
                    let names: Vec<String> = store.folders(ALICE).unwrap().into_iter().map(|f| f.name).collect();
                    let defaults: Vec<&str> = DEFAULT_FOLDERS.iter().map(|d| d.0).collect();
                    assert_eq!(names, defaults, "{what}");
                    assert_consistent(dir.path(), &store, &what);
                    drop((store, _d));
                    let (_d, store, _) = open(dir.path());
                    let names: Vec<String> = store.folders(ALICE).unwrap().into_iter().map(|f| f.name).collect();
                    assert_eq!(names, defaults, "{what}: after a restart");
                    assert_eq!(uids(&store, INBOX), [1], "{what}");
                    true
                })
                .unwrap_or(true);
        }
    }
    table.finish();
}

type Op = fn(&MailboxStore) -> Result<(), MailboxError>;

fn setup(store: &MailboxStore) {
    for i in 1..=4 {
        store.deliver(ALICE, &body(i), i as u64).unwrap();
    }
    store.store_flags(ALICE, INBOX, &[1], FlagChange::Add, &[Flag::Seen].into_iter().collect()).unwrap();
    store.copy(ALICE, INBOX, &[4], "Drafts").unwrap();
}

/// Table: the store's other writes (flags, expunge, copy, folder create,
/// rename, delete, flush), each failing at each of its steps. The failure
/// is temporary; what a client sees matches the disk at once (except after
/// an index write failed, which a restart reconciles); a restart loses no
/// message and resurrects none; the retried operation ends as if no fault
/// had been.
#[test]
fn faults_in_the_stores_other_writes_lose_nothing_and_show_nothing_half_done() {
    let flags: Op =
        |s| s.store_flags(ALICE, INBOX, &[2], FlagChange::Add, &[Flag::Flagged].into_iter().collect()).map(drop);
    let expunge: Op = |s| s.expunge(ALICE, INBOX, &[3, 4]).map(drop);
    let copy: Op = |s| s.copy(ALICE, INBOX, &[1, 2], "Trash").map(drop);
    let create: Op = |s| s.create_folder(ALICE, "Work").map(drop);
    let rename: Op = |s| s.rename_folder(ALICE, "Junk", "Spam");
    let delete: Op = |s| match s.delete_folder(ALICE, "Drafts") {
        // a retry after the folder went: nothing left to do
        Err(MailboxError::NoSuchFolder { .. }) => Ok(()),
        r => r,
    };
    let flush: Op = |s| s.flush();
    // (name, operation, step, nth hit, whether what a client sees matches
    // the disk at once: not when the index write of a removal failed)
    let cases: &[(&str, Op, Step, u64, bool)] = &[
        ("flags", flags, Step::Index, 1, true),
        ("expunge", expunge, Step::State, 1, true),
        ("expunge", expunge, Step::Unlink, 1, true),
        ("expunge", expunge, Step::Unlink, 2, true),
        ("expunge", expunge, Step::DirSync, 1, true),
        ("expunge", expunge, Step::Index, 1, false),
        ("copy", copy, Step::Link, 1, true),
        ("copy", copy, Step::Link, 2, true),
        ("copy", copy, Step::DirSync, 1, true),
        ("copy", copy, Step::Index, 1, true),
        ("create", create, Step::Folder, 1, true),
        ("create", create, Step::Folder, 2, true),
        ("create", create, Step::Create, 1, true),
        ("create", create, Step::Write, 1, true),
        ("create", create, Step::Fsync, 1, true),
        ("create", create, Step::DirSync, 1, true),
        ("create", create, Step::DirSync, 2, true),
        ("create", create, Step::DirSync, 3, true),
        ("create", create, Step::Index, 1, true),
        ("rename", rename, Step::State, 1, true),
        ("rename", rename, Step::Index, 1, true),
        ("delete", delete, Step::Folder, 1, true),
        ("delete", delete, Step::DirSync, 1, true),
        ("delete", delete, Step::Index, 1, false),
        ("flush", flush, Step::Flush, 1, true),
    ];
    let mut table = Table::default();
    for (i, &(name, op, step, n, at_once)) in cases.iter().enumerate() {
        let errno = ERRNOS[i % 3];
        let what = format!("{name} with {} hit {n} = os error {errno}", step.name());
        table.row(&what, || {
            // the same operation without a fault, for the expected end state
            let expected = {
                let dir = tempfile::tempdir().unwrap();
                let (_d, store, _) = open(dir.path());
                setup(&store);
                op(&store).unwrap();
                snapshot(&store)
            };
            let dir = tempfile::tempdir().unwrap();
            let before = {
                let (_d, store, faults) = open_faulty(dir.path());
                setup(&store);
                let before = snapshot(&store);
                faults.inject(step, errno, n);
                let e = op(&store).unwrap_err();
                assert!(!faults.pending(), "{what}: the fault fired");
                assert_temporary(&e, errno, &what);
                if at_once {
                    assert_consistent(dir.path(), &store, &what);
                }
                before
            };
            {
                let (_d, store, rec) = open(dir.path());
                assert!(rec.reindexed.is_empty(), "{what}: a restart resurrects nothing: {rec:?}");
                assert_consistent(dir.path(), &store, &format!("{what}, after a restart"));
                // every message from before is still there, unless the
                // operation was to remove it
                let now = snapshot(&store);
                for (folder, msgs) in &before {
                    for m in msgs {
                        let kept = now.iter().any(|(f, ms)| f == folder && ms.iter().any(|x| x.0 == m.0 && x.2 == m.2));
                        let removed_on_purpose = (name == "expunge" && folder == INBOX && m.0 >= 3)
                            || (name == "delete" && folder == "Drafts");
                        assert!(kept || removed_on_purpose, "{what}: {folder} UID {} lost", m.0);
                    }
                }
                op(&store).unwrap_or_else(|e| panic!("{what}: the retry: {e}"));
                assert_eq!(snapshot(&store), expected, "{what}: the retry ends as if no fault had been");
            }
            let (_d, store, rec) = open(dir.path());
            assert!(rec.reindexed.is_empty() && rec.dropped.is_empty(), "{what}: {rec:?}");
            assert_eq!(snapshot(&store), expected, "{what}: after another restart");
        });
    }
    table.finish();
}
