//! The queue index's own database: replaced by a fresh one once the queue
//! drains (its disk given back), a crash at any step of that switch losing
//! nothing, and an index kept in the shared database by older data
//! directories moved into its own.

use super::index::RESET_ABOVE;
use super::tests::{message, open, put};
use super::*;
use crate::datadir::DataDir;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| if e.file_type().unwrap().is_dir() { du(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

/// What `data_dir/queue` holds, by name.
fn entries(queue_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(queue_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Wait (polling, bounded) until `f` holds.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..1200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

fn defer(m: &mut Message, attempts: u32) {
    for r in &mut m.recipients {
        r.attempts = attempts;
        r.next_attempt = Some(4_000_000_000);
        r.last_result = Some(AttemptResult {
            code: Some(451),
            enhanced: Some("4.3.0".into()),
            text: "try again later, the destination is down for the day".into(),
            remote_host: Some("mx.example.test".into()),
            stage: Stage::Rcpt,
            at: 3_000_000_000,
        });
    }
}

/// `n` messages stored at once (the spool writer takes them in batches),
/// then each deferred: every one gets an index entry.
async fn fill_deferred(store: &Arc<QueueStore>, n: usize) -> Vec<Message> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let s = store.clone();
        let m = message(store, &["a@example.test", "b@example.test"]);
        set.spawn(async move { s.enqueue(m, format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes()).await.unwrap() });
    }
    let mut out = Vec::new();
    while let Some(m) = set.join_next().await {
        let mut m = m.unwrap();
        defer(&mut m, 1);
        store.update(&m).unwrap();
        out.push(m);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Deferred messages until the index is well past the size at which an
/// empty one is replaced.
async fn fill_past_reset(store: &Arc<QueueStore>, queue_dir: &Path) -> Vec<Message> {
    let mut all = Vec::new();
    while du(queue_dir) <= 2 * RESET_ABOVE {
        assert!(all.len() < 100_000, "the index does not grow: {} bytes", du(queue_dir));
        all.extend(fill_deferred(store, 1000).await);
        store.flush().unwrap();
    }
    all
}

fn finish(store: &QueueStore, messages: Vec<Message>) {
    for (i, mut m) in messages.into_iter().enumerate() {
        // delivered, or deleted by the operator
        let state = if i % 2 == 0 { RcptState::Delivered } else { RcptState::Deleted };
        m.recipients.iter_mut().for_each(|r| r.state = state);
        store.update(&m).unwrap();
    }
}

/// A restart finds the queue empty and keeps new mail (in the index too).
async fn takes_new_mail_after_restarts(dir: &Path, generation: u64) {
    let id = {
        let (_d, store, rec) = open(dir, spool::SEGMENT_LIMIT);
        assert_eq!(rec.messages, 0, "{rec:?}");
        assert!(store.is_empty());
        assert_eq!(store.index().generation(), generation);
        let ids = put(&store, 2).await;
        let mut m = store.get(&ids[0]).unwrap().unwrap();
        defer(&mut m, 1);
        store.update(&m).unwrap();
        store.flush().unwrap();
        ids[0].clone()
    };
    let (_d, store, rec) = open(dir, spool::SEGMENT_LIMIT);
    assert_eq!(rec.messages, 2, "{rec:?}");
    assert_eq!(store.get(&id).unwrap().unwrap().recipients[0].attempts, 1, "its state from the index");
    assert_eq!(store.index().generation(), generation);
}

/// Filled with deferred messages and drained, the index ends up on a
/// fresh small database, the old one gone; and so again when the count
/// comes from reconciliation after a restart.
#[tokio::test]
async fn a_drained_index_is_replaced_by_a_fresh_small_database() {
    let dir = tempfile::tempdir().unwrap();
    let qdir = dir.path().join("queue");
    let full = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let store = Arc::new(store);
        let queued = fill_past_reset(&store, &qdir).await;
        let full = du(&qdir);
        assert_eq!(store.index().generation(), 1);
        finish(&store, queued);
        assert!(store.is_empty());
        // switched, and the old database removed
        let replaced = eventually(|| entries(&qdir) == ["current", "index.2"]).await;
        assert!(replaced, "the empty index was not replaced: {:?}", entries(&qdir));
        assert_eq!(store.index().generation(), 2);
        full
    };
    let left = du(&qdir);
    assert!(left * 4 < full, "{left} bytes left of {full}");
    takes_new_mail_after_restarts(dir.path(), 2).await;

    // filled, restarted (the count is then reconciliation's), drained
    let queued = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let store = Arc::new(store);
        fill_past_reset(&store, &qdir).await
    };
    let full = du(&qdir);
    let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert_eq!(rec.messages, queued.len() + 2, "{rec:?}");
    // the two of the restart test, and the rest
    let all: Vec<Message> = store.iter().map(|m| m.unwrap()).collect();
    finish(&store, all);
    assert!(store.is_empty());
    let replaced = eventually(|| entries(&qdir) == ["current", "index.3"]).await;
    assert!(replaced, "the empty index was not replaced after a restart: {:?}", entries(&qdir));
    assert_eq!(store.index().generation(), 3);
    let left = du(&qdir);
    assert!(left * 4 < full, "{left} bytes left of {full}");
}

/// A small empty index is kept: replacing it would gain nothing.
#[tokio::test]
async fn a_small_empty_index_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
    let ids = put(&store, 5).await;
    for id in &ids {
        let mut m = store.get(id).unwrap().unwrap();
        defer(&mut m, 1);
        store.update(&m).unwrap();
        m.recipients.iter_mut().for_each(|r| r.state = RcptState::Delivered);
        store.update(&m).unwrap();
    }
    assert!(!store.index().reset_if_empty().unwrap());
    assert_eq!(store.index().generation(), 1);
}

/// Where a crash can stop the switch from generation 1 to 2.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// The new database made and fsynced; `current` still names 1 (also
    /// what an abandoned switch leaves: the index was written to meanwhile).
    NewDatabase,
    /// And the new `current` written to its temporary file, not renamed.
    PointerWritten,
    /// `current` names 2; the old database is still there.
    Switched,
    /// The old database removed.
    Done,
}

/// For each step: messages deferred in the index (kept through steps that
/// leave `current` at 1; a switch starts only on an empty index, so
/// delivered before the others), delivered ones, and fresh ones only in
/// the spool; a crash at that step; the store opens cleanly, with every
/// queued message, one generation on disk, and takes new mail.
#[tokio::test]
async fn a_crash_at_any_step_of_the_switch_loses_nothing() {
    for step in [Step::NewDatabase, Step::PointerWritten, Step::Switched, Step::Done] {
        let dir = tempfile::tempdir().unwrap();
        let qdir = dir.path().join("queue");
        let pointer_moved = matches!(step, Step::Switched | Step::Done);
        let (deferred, fresh) = {
            let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
            let ids = put(&store, 30).await;
            for id in &ids[..20] {
                let mut m = store.get(id).unwrap().unwrap();
                defer(&mut m, 1);
                store.update(&m).unwrap();
            }
            let finished = if pointer_moved { &ids[..20] } else { &ids[10..20] };
            for id in finished {
                let mut m = store.get(id).unwrap().unwrap();
                m.recipients.iter_mut().for_each(|r| r.state = RcptState::Delivered);
                store.update(&m).unwrap();
            }
            store.flush().unwrap();
            let deferred = if pointer_moved { vec![] } else { ids[..10].to_vec() };
            (deferred, ids[20..].to_vec())
        };
        assert_eq!(entries(&qdir), ["current", "index.1"]);
        {
            let db = sled::Config::new().path(qdir.join("index.2")).open().unwrap();
            db.flush().unwrap();
        }
        if step == Step::PointerWritten {
            std::fs::write(qdir.join(".current.tmp4242"), "2\n").unwrap();
        }
        if pointer_moved {
            std::fs::write(qdir.join("current"), "2\n").unwrap();
        }
        if step == Step::Done {
            std::fs::remove_dir_all(qdir.join("index.1")).unwrap();
        }
        let generation = if pointer_moved { 2 } else { 1 };
        {
            let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
            assert_eq!(rec.messages, deferred.len() + fresh.len(), "{step:?}: {rec:?}");
            assert!(rec.dropped.is_empty(), "{step:?}: {rec:?}");
            assert_eq!(store.index().generation(), generation, "{step:?}");
            assert_eq!(entries(&qdir), ["current".to_string(), format!("index.{generation}")], "{step:?}");
            let listed: Vec<Message> = store.iter().map(|m| m.unwrap()).collect();
            let ids: Vec<QueueId> = listed.iter().map(|m| m.id.clone()).collect();
            assert_eq!(ids, deferred.iter().chain(&fresh).cloned().collect::<Vec<_>>(), "{step:?}");
            for m in &listed {
                let expected = u32::from(deferred.contains(&m.id));
                assert_eq!(m.recipients[0].attempts, expected, "{step:?}: {}", m.id);
                assert_eq!(store.read_body(m).map(|b| b.starts_with(b"Subject: ")).ok(), Some(true));
            }
            // emptied again, so the restart test below starts from nothing
            for m in listed {
                store.remove(&m).unwrap();
            }
        }
        takes_new_mail_after_restarts(dir.path(), generation).await;
    }
}

/// A data directory from before, its index in the shared database's
/// `queue` tree: at open every entry moves into the index's own database
/// and the old tree goes; a second open finds nothing to move; and after a
/// crash between the copy and the drop (entries in both), the new index's
/// copy is the one kept.
#[tokio::test]
async fn an_index_in_the_shared_database_moves_into_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let qdir = dir.path().join("queue");
    let (ids, old_entries) = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let ids = put(&store, 20).await;
        for id in &ids[..12] {
            let mut m = store.get(id).unwrap().unwrap();
            defer(&mut m, 1);
            store.update(&m).unwrap();
        }
        store.flush().unwrap();
        let entries: Vec<(sled::IVec, sled::IVec)> = store.index().raw().iter().map(Result::unwrap).collect();
        (ids, entries)
    };
    assert_eq!(old_entries.len(), 12);
    assert!(old_entries.iter().all(|(k, _)| k.starts_with(b"m/")));
    // the layout of before: the same entries in the shared tree, no queue/
    std::fs::remove_dir_all(&qdir).unwrap();
    let write_old = |entries: &[(sled::IVec, sled::IVec)]| {
        let data = DataDir::open_when_free(dir.path());
        let old = data.db.open_tree("queue").unwrap();
        for (k, v) in entries {
            old.insert(k, v).unwrap();
        }
        data.db.flush().unwrap();
    };
    write_old(&old_entries);
    let attempts =
        |store: &QueueStore| -> Vec<u32> { store.iter().map(|m| m.unwrap().recipients[0].attempts).collect() };
    for round in ["migrated", "opened again"] {
        let (d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
        assert_eq!(rec.messages, 20, "{round}: {rec:?}");
        assert_eq!(rec.from_spool, ids[12..].to_vec(), "{round}: the deferred ones come from the index");
        let expected: Vec<u32> = (0..20).map(|i| u32::from(i < 12)).collect();
        assert_eq!(attempts(&store), expected, "{round}");
        assert!(!d.db.tree_names().iter().any(|n| &n[..] == b"queue"), "{round}: the old tree is gone");
        assert_eq!(store.index().raw().len(), 12, "{round}");
    }
    // the new index moves on (a second attempt each), then a crash left
    // the old copies behind as well
    {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        for id in &ids[..12] {
            let mut m = store.get(id).unwrap().unwrap();
            defer(&mut m, 2);
            store.update(&m).unwrap();
        }
        store.flush().unwrap();
    }
    write_old(&old_entries);
    let (d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert_eq!(rec.messages, 20, "{rec:?}");
    let expected: Vec<u32> = (0..20).map(|i| if i < 12 { 2 } else { 0 }).collect();
    assert_eq!(attempts(&store), expected, "the new index's copy wins");
    assert!(!d.db.tree_names().iter().any(|n| &n[..] == b"queue"));
    assert_eq!(store.index().raw().len(), 12);
}
