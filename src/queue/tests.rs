//! Queue store tests: durability across reopen, reconciliation of a lost
//! index, torn spool tails, done journals, segment reclamation.

use super::*;
use crate::datadir::DataDir;
use std::path::Path;

/// A message to `rcpts` (all local), shared with the other queue tests.
pub(super) fn message(store: &QueueStore, rcpts: &[&str]) -> Message {
    Message {
        id: store.new_id(),
        sender: "sender@example.org".into(),
        source_server: "mx".into(),
        client_ip: Some("127.0.0.1".parse().unwrap()),
        client_helo: Some("client".into()),
        auth_user: None,
        tls: None,
        arrived: crate::util::now_secs(),
        size: 0,
        body_type: Default::default(),
        smtputf8: false,
        kind: MessageKind::Inbound,
        frozen: false,
        delay_warned: false,
        require_tls: false,
        tls_optional: false,
        recipients: rcpts.iter().map(|r| Recipient::new(r.to_string(), "local".into())).collect(),
        spool: SpoolRef::default(),
    }
}

pub(super) fn open(dir: &Path, limit: u64) -> (DataDir, QueueStore, Recovery) {
    let data = DataDir::open_when_free(dir);
    let (store, rec) = QueueStore::open_with_segment_limit(&data.db, dir, limit).unwrap();
    (data, store, rec)
}

pub(super) async fn put(store: &QueueStore, n: usize) -> Vec<QueueId> {
    let mut ids = Vec::new();
    let futs: Vec<_> = (0..n)
        .map(|i| {
            let m = message(store, &["a@example.test", "b@example.test"]);
            ids.push(m.id.clone());
            store.enqueue(m, format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes())
        })
        .collect();
    for f in futs {
        f.await.unwrap();
    }
    ids
}

#[tokio::test]
async fn messages_survive_reopen_with_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        put(&store, 50).await
    };
    let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert_eq!(rec.messages, 50);
    let listed: Vec<QueueId> = store.iter().map(|m| m.unwrap().id).collect();
    assert_eq!(listed, ids, "listed oldest first");
    let m = store.get(&ids[7]).unwrap().unwrap();
    assert_eq!(store.read_body(&m).unwrap(), b"Subject: 7\r\n\r\nbody 7\r\n");
    assert_eq!(m.recipients.len(), 2);
    // new ids sort after the old ones
    assert!(store.new_id() > ids[49]);
}

#[tokio::test]
async fn fresh_messages_stay_out_of_the_index_and_changes_go_in() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
    let ids = put(&store, 3).await;
    let tree = store.index().raw();
    assert_eq!(tree.len(), 0, "arrival state lives in the spool only");
    let mut m = store.get(&ids[1]).unwrap().unwrap();
    m.recipients[0].attempts = 1;
    m.recipients[0].next_attempt = Some(42);
    store.update(&m).unwrap();
    assert_eq!(tree.len(), 1);
    assert_eq!(store.get(&ids[1]).unwrap().unwrap().recipients[0].attempts, 1);
    let listed: Vec<QueueId> = store.iter().map(|m| m.unwrap().id).collect();
    assert_eq!(listed, ids, "fresh and indexed messages list together, oldest first");
}

#[tokio::test]
async fn lost_index_falls_back_to_the_arrival_state() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let ids = put(&store, 10).await;
        for id in &ids {
            let mut m = store.get(id).unwrap().unwrap();
            m.recipients[0].attempts = 3;
            store.update(&m).unwrap();
        }
        // what a crash before sled's flush looks like: the entries are gone
        let tree = store.index().raw();
        for id in &ids[3..] {
            tree.remove(format!("m/{id}")).unwrap();
        }
        ids
    };
    let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert_eq!(rec.from_spool, ids[3..].to_vec());
    assert_eq!(store.len(), 10);
    assert_eq!(store.get(&ids[0]).unwrap().unwrap().recipients[0].attempts, 3, "the index state wins");
    let m = store.get(&ids[9]).unwrap().unwrap();
    assert_eq!(m.recipients[0].attempts, 0, "arrival state from the spool");
    assert_eq!(store.read_body(&m).unwrap(), b"Subject: 9\r\n\r\nbody 9\r\n");
}

#[tokio::test]
async fn torn_tail_is_ignored_and_finished_messages_stay_finished() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let ids = put(&store, 4).await;
        let mut m = store.get(&ids[0]).unwrap().unwrap();
        for r in &mut m.recipients {
            r.state = RcptState::Delivered;
        }
        store.update(&m).unwrap();
        assert!(store.get(&ids[0]).unwrap().is_none());
        ids
    };
    // a crash in the middle of writing the next record: half a record
    // right after the last one (into zeros in a prepared segment)
    let (seg, end) = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let last = store.iter().last().unwrap().unwrap();
        (last.spool.segment, last.spool.offset + last.spool.len)
    };
    let f = std::fs::OpenOptions::new().write(true).open(spool::segment_path(&dir.path().join("spool"), seg)).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"PSR1\x10\x00\x00\x00garbage", end).unwrap();
    drop(f);
    let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert_eq!(rec.torn_segments, vec![seg]);
    let listed: Vec<QueueId> = store.iter().map(|m| m.unwrap().id).collect();
    assert_eq!(listed, ids[1..].to_vec(), "the delivered message is not resurrected");
}

#[tokio::test]
async fn index_entry_without_spool_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let ids = put(&store, 2).await;
        for id in &ids {
            let mut m = store.get(id).unwrap().unwrap();
            m.frozen = true;
            store.update(&m).unwrap();
        }
        ids
    };
    for seg in spool::list_segments(&dir.path().join("spool")).unwrap() {
        std::fs::remove_file(spool::segment_path(&dir.path().join("spool"), seg)).unwrap();
    }
    let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert_eq!(rec.dropped.len(), 2);
    assert!(store.get(&ids[0]).unwrap().is_none());
}

#[tokio::test]
async fn finished_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let (_d, store, _) = open(dir.path(), 200);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.extend(put(&store, 1).await);
    }
    let before = spool::list_segments(&spool_dir).unwrap().len();
    assert!(before >= 3, "small segments rotate: {before}");
    for id in &ids {
        let mut m = store.get(id).unwrap().unwrap();
        m.recipients.iter_mut().for_each(|r| r.state = RcptState::Failed);
        store.update(&m).unwrap();
    }
    // only the active segment remains
    assert_eq!(spool::list_segments(&spool_dir).unwrap().len(), 1);
    drop(store);
    drop(_d);
    let (_d, store, rec) = open(dir.path(), 200);
    assert!(store.is_empty());
    assert_eq!(rec.messages, 0);
    assert!(spool::list_segments(&spool_dir).unwrap().is_empty());
}

#[tokio::test]
async fn prepared_segments_are_used_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let limit = 4096;
    let ids = {
        let (_d, store, _) = open(dir.path(), limit);
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.extend(put(&store, 1).await);
            // give the helper time to prepare the next spare
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        ids
    };
    let sizes: Vec<u64> = spool::list_segments(&spool_dir)
        .unwrap()
        .iter()
        .map(|&n| std::fs::metadata(spool::segment_path(&spool_dir, n)).unwrap().len())
        .collect();
    assert!(sizes.contains(&limit), "a zero-filled spare became a segment: {sizes:?}");
    let (_d, store, rec) = open(dir.path(), limit);
    assert!(rec.torn_segments.is_empty(), "the zeros after the data are a clean end");
    let listed: Vec<QueueId> = store.iter().map(|m| m.unwrap().id).collect();
    assert_eq!(listed, ids);
    for id in &ids {
        let m = store.get(id).unwrap().unwrap();
        assert!(store.read_body(&m).unwrap().starts_with(b"Subject: "));
    }
}

/// Bodies of 4 messages in one segment, then one byte of the second
/// record's body flipped, as bit rot would.
#[tokio::test]
async fn a_damaged_record_in_the_middle_keeps_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.extend(put(&store, 1).await);
        }
        ids
    };
    let (seg, at) = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let m = store.get(&ids[1]).unwrap().unwrap();
        (m.spool.segment, m.spool.offset + 2)
    };
    let path = spool::segment_path(&dir.path().join("spool"), seg);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at as usize] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert_eq!(rec.damaged_segments, vec![seg]);
    let listed: Vec<QueueId> = store.iter().map(|m| m.unwrap().id).collect();
    assert_eq!(listed, vec![ids[0].clone(), ids[2].clone(), ids[3].clone()], "the records after the damage are kept");
    let m = store.get(&ids[3]).unwrap().unwrap();
    assert_eq!(store.read_body(&m).unwrap(), b"Subject: 0\r\n\r\nbody 0\r\n");
}

#[tokio::test]
async fn a_damaged_first_header_does_not_cost_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.extend(put(&store, 1).await);
        }
        ids
    };
    let spool_dir = dir.path().join("spool");
    let seg = spool::list_segments(&spool_dir).unwrap()[0];
    let path = spool::segment_path(&spool_dir, seg);
    let mut bytes = std::fs::read(&path).unwrap();
    // the first record's lengths: a huge body that must not be allocated
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert!(path.exists(), "the segment still holds records and was deleted");
    assert_eq!(rec.messages, 2);
    let listed: Vec<QueueId> = store.iter().map(|m| m.unwrap().id).collect();
    assert_eq!(listed, ids[1..].to_vec());
}

#[test]
fn the_record_scanner_resynchronises_and_never_panics() {
    let mut seg = Vec::new();
    let rec = |meta: &[u8], body: &[u8]| {
        let mut crc = crc32fast::Hasher::new();
        crc.update(meta);
        crc.update(body);
        let mut v = b"PSR1".to_vec();
        v.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        v.extend_from_slice(&(body.len() as u64).to_le_bytes());
        v.extend_from_slice(&crc.finalize().to_le_bytes());
        v.extend_from_slice(meta);
        v.extend_from_slice(body);
        v
    };
    seg.extend(rec(b"{}", b"one"));
    let garbage_at = seg.len() as u64;
    seg.extend(b"PSR1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff junk junk");
    let second = seg.len() as u64;
    seg.extend(rec(b"{}", b"two"));
    seg.extend([0u8; 64]);
    let r = spool::scan_records(&seg);
    assert_eq!(r.records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0, second]);
    assert_eq!(r.skipped, vec![(garbage_at, second - garbage_at)]);
    assert_eq!(r.torn, None);
    assert_eq!(r.end, seg.len() as u64 - 64);
    // every prefix and every single-byte corruption: no panic, records in order
    for cut in 0..seg.len() {
        let _ = spool::scan_records(&seg[..cut]);
    }
    for i in 0..seg.len() {
        let mut s = seg.clone();
        s[i] ^= 0xa5;
        let r = spool::scan_records(&s);
        assert!(r.records.windows(2).all(|w| w[0].end() <= w[1].offset));
    }
}

/// The summary's aggregates equal a full walk after every kind of change
/// (deferral, partial delivery, bounce, freeze, thaw, delete) and after the
/// store is opened again, with and without sled's copy of the changes.
#[tokio::test]
async fn aggregates_equal_a_walk_through_every_change_and_a_reopen() {
    use super::summary::walk;
    let dir = tempfile::tempdir().unwrap();
    let check = |store: &QueueStore, when: &str| {
        let all: Vec<Message> = store.iter().map(|m| m.unwrap()).collect();
        assert_eq!(store.tally(), walk(all.iter()), "{when}");
    };
    let error = |stage: Stage, code: Option<u16>, at: u64| AttemptResult {
        code,
        enhanced: code.map(|c| format!("{}.0.0", c / 100)),
        text: "refused".into(),
        remote_host: None,
        stage,
        at,
    };
    {
        let (_d, store, _) = open(dir.path(), 4096);
        let mut ms = Vec::new();
        for i in 0..40u64 {
            let mut m = message(&store, &["a@one.test", "b@two.test", "c@one.test"]);
            m.recipients[0].destination = "smtp/one.test".into();
            m.recipients[1].destination = "smtp/two.test".into();
            m.recipients[2].destination = "smtp/one.test".into();
            m.arrived = 1_000 + i % 7;
            ms.push(store.enqueue(m, format!("Subject: {i}\r\n\r\nbody\r\n").into_bytes()).await.unwrap());
        }
        check(&store, "after arrival");
        for (i, m) in ms.iter_mut().enumerate() {
            let at = 2_000 + (i as u64 % 5);
            match i % 6 {
                0 => {
                    // deferred, all of them
                    for r in &mut m.recipients {
                        r.attempts += 1;
                        r.next_attempt = Some(at + 600);
                        r.last_result = Some(error(Stage::Connect, None, at));
                    }
                }
                1 => {
                    // one delivered, one bounced, one deferred
                    m.recipients[0].state = RcptState::Delivered;
                    m.recipients[1].state = RcptState::Failed;
                    m.recipients[1].last_result = Some(error(Stage::Rcpt, Some(550), at));
                    m.recipients[2].next_attempt = Some(at + 60);
                    m.recipients[2].last_result = Some(error(Stage::Rcpt, Some(451), at));
                }
                2 => m.frozen = true,
                3 => {
                    for r in &mut m.recipients {
                        r.state = RcptState::Delivered;
                    }
                }
                4 => {
                    for r in &mut m.recipients {
                        r.state = RcptState::Deleted;
                    }
                }
                _ => continue,
            }
            store.update(m).unwrap();
        }
        check(&store, "after deliveries, deferrals, bounces, freezes and deletes");
        // thaw half the frozen ones, defer the deferred once more
        for m in ms.iter_mut().filter(|m| m.frozen).step_by(2) {
            m.frozen = false;
            store.update(m).unwrap();
        }
        for m in ms.iter_mut().filter(|m| m.recipients[0].attempts == 1) {
            m.recipients[0].attempts = 2;
            m.recipients[0].next_attempt = Some(9_000);
            m.recipients[0].last_result = Some(error(Stage::Tls, None, 3_000));
            store.update(m).unwrap();
        }
        // removed twice: counted down once
        let gone = ms.iter().find(|m| m.is_finished()).unwrap().clone();
        store.remove(&gone).unwrap();
        check(&store, "after thaws, more deferrals and a second removal");
        store.flush().unwrap();
    }
    let (_d, store, _) = open(dir.path(), 4096);
    check(&store, "after reopening");
    drop((_d, store));
    // without the index: everything is queued again from the spool
    std::fs::remove_dir_all(dir.path().join("queue")).unwrap();
    let (_d, store, rec) = open(dir.path(), 4096);
    assert!(!rec.from_spool.is_empty());
    check(&store, "after losing the index");
}

/// Opened for new mail before reconciling (as the server does): mail
/// stored and changed meanwhile is kept beside the old queue, which
/// reconciliation merges in with its states, counts and segments.
#[tokio::test]
async fn new_mail_while_reconciling_is_merged_with_the_old_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (old, deferred) = {
        let (_d, store, _) = open(dir.path(), spool::SEGMENT_LIMIT);
        let ids = put(&store, 30).await;
        for id in &ids[..10] {
            let mut m = store.get(id).unwrap().unwrap();
            m.recipients[0].attempts = 1;
            m.recipients[0].next_attempt = Some(4_000_000_000);
            store.update(&m).unwrap();
        }
        for id in &ids[25..] {
            let m = store.get(id).unwrap().unwrap();
            store.remove(&m).unwrap();
        }
        store.flush().unwrap();
        (ids[..25].to_vec(), ids[..10].to_vec())
    };
    let data = DataDir::open_when_free(dir.path());
    let store = QueueStore::open_unreconciled(&data.db, dir.path()).unwrap();
    let new = put(&store, 20).await;
    assert!(new[0] > old[24], "new ids sort after the stored ones");
    // one of the new messages changes before the reconciliation ends
    let mut changed = store.get(&new[3]).unwrap().unwrap();
    changed.recipients[1].attempts = 1;
    changed.recipients[1].next_attempt = Some(4_000_000_000);
    store.update(&changed).unwrap();
    let rec = store.reconcile().unwrap();
    store.reconciled().await;
    assert_eq!(rec.messages, 25, "{rec:?}");
    assert!(rec.dropped.is_empty(), "{rec:?}");

    let all: Vec<Message> = store.iter().map(|m| m.unwrap()).collect();
    let ids: Vec<QueueId> = all.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, old.iter().chain(&new).cloned().collect::<Vec<_>>());
    for m in &all {
        let attempts = m.recipients.iter().map(|r| r.attempts).sum::<u32>();
        let expected = u32::from(deferred.contains(&m.id) || m.id == new[3]);
        assert_eq!(attempts, expected, "{}", m.id);
    }
    assert_eq!(store.tally(), super::summary::walk(all.iter()), "the aggregates count old and new once");
    // the old segments' counts are in: removing everything empties them
    for m in &all {
        store.remove(m).unwrap();
    }
    assert!(store.is_empty());
    drop(store);
    drop(data);
    let (_d, store, rec) = open(dir.path(), spool::SEGMENT_LIMIT);
    assert_eq!(rec.messages, 0, "{rec:?}");
    assert!(store.is_empty());
}
