//! News store tests: numbering that never goes back (deletion, expiry,
//! restart, a forgetful index), cross-posts and Xref, duplicate refusal (also
//! from the history after expiry), the overview (folded and non-ASCII
//! headers), lookups, reconciliation after simulated crashes in both
//! directions, and parallel posting.

use super::*;
use crate::datadir::DataDir;
use crate::proto::nntp::wildmat::Wildmat;
use std::path::Path;
use std::sync::Arc;

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn settings() -> NewsSettings {
    NewsSettings {
        host: "news.example.test".into(),
        expire_after: Some(Duration::from_secs(10 * DAY)),
        history_after: Duration::from_secs(5 * DAY),
    }
}

fn open(dir: &Path, now: u64) -> (DataDir, NewsStore, Recovery) {
    let data = DataDir::open_when_free(dir);
    let (store, rec) = NewsStore::open(&data.db, dir, settings(), now).unwrap();
    (data, store, rec)
}

fn reopen(parts: (DataDir, NewsStore), dir: &Path, now: u64) -> (DataDir, NewsStore, Recovery) {
    drop(parts.1);
    drop(parts.0);
    open(dir, now)
}

fn art(id: &str, groups: &str) -> Vec<u8> {
    format!(
        "Path: not-for-mail\r\nFrom: a@example.test\r\nNewsgroups: {groups}\r\nSubject: about {id}\r\nMessage-ID: {id}\r\nDate: Mon, 1 Jan 2027 00:00:00 +0000\r\n\r\nbody line 1\r\n.dotted\r\n"
    )
    .into_bytes()
}

fn with_groups(store: &NewsStore, names: &[&str]) {
    for n in names {
        store.add_group(n, &format!("about {n}"), Posting::Yes, T0).unwrap();
    }
}

fn info(store: &NewsStore, g: &str) -> (u64, u64, u64) {
    let i = store.group(g).unwrap().unwrap();
    (i.count, i.low, i.high)
}

#[test]
fn news_group_names_follow_rfc5536() {
    for ok in ["comp.lang.rust", "a", "alt.test+more_x-y", "de.talk.1"] {
        assert!(check_group_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", ".a", "a.", "a..b", "a b", "a/b", "grüße", "a*", "a,b", &"x".repeat(201)] {
        assert!(matches!(check_group_name(bad), Err(NewsError::InvalidGroupName(..))), "{bad}");
    }
}

#[test]
fn news_groups_add_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["comp.lang.rust", "comp.private.x", "alt.test"]);
    assert!(matches!(store.add_group("alt.test", "", Posting::Yes, T0), Err(NewsError::GroupExists(_))));
    assert_eq!(info(&store, "alt.test"), (0, 1, 0));
    let names = |w: &str| -> Vec<String> {
        store.groups(&Wildmat::parse(w).unwrap()).unwrap().into_iter().map(|g| g.name).collect()
    };
    assert_eq!(names("comp.*,!comp.private.*"), ["comp.lang.rust"]);
    assert_eq!(names("*"), ["alt.test", "comp.lang.rust", "comp.private.x"]);
    store.add_group("new.group", "new", Posting::Moderated, T0 + 100).unwrap();
    let since: Vec<String> = store.groups_created_since(T0 + 1).unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(since, ["new.group"]);
    assert_eq!(store.group("new.group").unwrap().unwrap().posting, Posting::Moderated);
    store.delete_group("comp.private.x", T0).unwrap();
    assert_eq!(store.group("comp.private.x").unwrap(), None);
    assert!(matches!(store.delete_group("comp.private.x", T0), Err(NewsError::NoSuchGroup(_))));
}

#[test]
fn news_numbers_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let (d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["alt.test"]);
    for i in 1..=3 {
        let p = store.post(&art(&format!("<{i}@x>"), "alt.test"), T0).unwrap();
        assert_eq!(p.numbers, [("alt.test".to_string(), i)]);
    }
    assert!(store.delete_article("<3@x>", T0).unwrap());
    assert_eq!(info(&store, "alt.test"), (2, 1, 3));
    assert_eq!(store.post(&art("<4@x>", "alt.test"), T0).unwrap().numbers[0].1, 4);
    let (d, store, _) = reopen((d, store), dir.path(), T0);
    assert_eq!(info(&store, "alt.test"), (3, 1, 4));
    assert_eq!(store.post(&art("<5@x>", "alt.test"), T0).unwrap().numbers[0].1, 5);

    // expiry, then an index that forgot everything (sled lost its writes):
    // the floor in the group file keeps the numbers where they were
    store.expire(T0 + 11 * DAY).unwrap();
    assert_eq!(info(&store, "alt.test"), (0, 6, 5));
    d.db.open_tree("news").unwrap().clear().unwrap();
    let (d, store, _) = reopen((d, store), dir.path(), T0 + 11 * DAY);
    assert_eq!(info(&store, "alt.test"), (0, 6, 5));
    assert_eq!(store.post(&art("<6@x>", "alt.test"), T0 + 11 * DAY).unwrap().numbers[0].1, 6);

    // deleting the group and adding it again continues its numbers
    store.delete_group("alt.test", T0 + 11 * DAY).unwrap();
    store.add_group("alt.test", "again", Posting::Yes, T0 + 12 * DAY).unwrap();
    assert_eq!(info(&store, "alt.test"), (0, 7, 6));
    let (_d, store, _) = reopen((d, store), dir.path(), T0 + 12 * DAY);
    assert_eq!(store.post(&art("<7@x>", "alt.test"), T0 + 12 * DAY).unwrap().numbers[0].1, 7);
}

#[test]
fn news_crosspost_one_body_numbers_and_xref() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one", "b.two"]);
    store.post(&art("<first@x>", "b.two"), T0).unwrap();
    let p = store.post(&art("<cross@x>", "a.one, b.two,not.here,a.one"), T0).unwrap();
    assert_eq!(p.numbers, [("a.one".to_string(), 1), ("b.two".to_string(), 2)]);
    let bytes = store.article_by_id("<cross@x>").unwrap().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("\r\nXref: news.example.test a.one:1 b.two:2\r\n\r\nbody line 1\r\n"), "{text}");
    assert_eq!(store.article("a.one", 1).unwrap().unwrap(), ("<cross@x>".to_string(), bytes.clone()));
    assert_eq!(store.article("b.two", 2).unwrap().unwrap().1, bytes);
    assert_eq!(std::fs::read_dir(dir.path().join("news/articles")).unwrap().count(), 2, "one file per article");
    let o = store.overview_by_id("<cross@x>").unwrap().unwrap();
    assert_eq!(o.xref, "news.example.test a.one:1 b.two:2");
    // an Xref from elsewhere is replaced, not kept
    let mut foreign = b"Xref: other.host a.one:99\r\n".to_vec();
    foreign.extend_from_slice(&art("<f@x>", "a.one"));
    store.post(&foreign, T0).unwrap();
    let text = String::from_utf8(store.article_by_id("<f@x>").unwrap().unwrap()).unwrap();
    assert!(!text.contains("other.host") && text.contains("Xref: news.example.test a.one:2\r\n"), "{text}");
    assert!(matches!(store.post(&art("<n@x>", "not.here"), T0), Err(NewsError::NoGroups(_))));
}

#[test]
fn news_duplicates_refused_also_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let (d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["alt.test"]);
    store.post(&art("<dup@x>", "alt.test"), T0).unwrap();
    let again = store.post(&art("<dup@x>", "alt.test"), T0);
    assert!(matches!(again, Err(NewsError::Duplicate(ref id)) if id == "<dup@x>"));
    assert!(again.unwrap_err().is_permanent());
    assert!(store.seen("<dup@x>").unwrap());

    // expired but in the history: still refused, also after a restart
    assert_eq!(store.expire(T0 + 11 * DAY).unwrap().articles, 1);
    assert!(store.article_by_id("<dup@x>").unwrap().is_none());
    assert!(matches!(store.post(&art("<dup@x>", "alt.test"), T0 + 11 * DAY), Err(NewsError::Duplicate(_))));
    d.db.open_tree("news").unwrap().clear().unwrap();
    let (_d, store, _) = reopen((d, store), dir.path(), T0 + 12 * DAY);
    assert!(store.seen("<dup@x>").unwrap());
    assert!(matches!(store.post(&art("<dup@x>", "alt.test"), T0 + 12 * DAY), Err(NewsError::Duplicate(_))));
    // past the history window it is forgotten and accepted again
    let e = store.expire(T0 + 17 * DAY).unwrap();
    assert_eq!(e.history_forgotten, 1);
    assert!(!store.seen("<dup@x>").unwrap());
    assert!(std::fs::read_to_string(dir.path().join("news/history")).unwrap().is_empty());
    assert!(store.post(&art("<dup@x>", "alt.test"), T0 + 17 * DAY).is_ok());
}

#[test]
fn news_bad_articles_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["alt.test"]);
    let no_id = b"Newsgroups: alt.test\r\nSubject: x\r\n\r\nbody\r\n";
    assert!(matches!(store.post(no_id, T0), Err(NewsError::NoMessageId)));
    let no_groups = b"Message-ID: <a@b>\r\n\r\nbody\r\n";
    assert!(matches!(store.post(no_groups, T0), Err(NewsError::NoNewsgroups)));
    for bad in ["a@b", "<a b@c>", "<a>b>", "<>"] {
        assert!(matches!(store.post(&art(bad, "alt.test"), T0), Err(NewsError::InvalidMessageId(_))), "{bad}");
    }
    assert_eq!(info(&store, "alt.test"), (0, 1, 0));
}

#[test]
fn news_overview_folded_and_non_ascii() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["alt.test"]);
    let a = "From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.test>\r\nNewsgroups: alt.test\r\nSubject: Grüße aus\r\n\tKöln,\r\n  wieder\r\nMessage-ID: <ov@x>\r\nReferences: <a@x>\r\n <b@x>\r\nDate: Mon, 1 Jan 2027 00:00:00 +0000\r\nX-Other: deep\r\n\r\nline 1\r\nline 2\r\nline 3 without end";
    store.post(a.as_bytes(), T0).unwrap();
    let stored = store.article_by_id("<ov@x>").unwrap().unwrap();
    let ov = store.overview("alt.test", 1..=u64::MAX).unwrap();
    assert_eq!(ov.len(), 1);
    let (n, o) = &ov[0];
    assert_eq!(*n, 1);
    assert_eq!(o.subject, "Grüße aus\tKöln,  wieder");
    assert_eq!(o.from, "=?UTF-8?Q?J=C3=BCrgen?= <j@example.test>");
    assert_eq!(o.references, "<a@x> <b@x>");
    assert_eq!(o.message_id, "<ov@x>");
    assert_eq!(o.date, "Mon, 1 Jan 2027 00:00:00 +0000");
    assert_eq!(o.bytes, stored.len() as u64);
    assert_eq!(o.lines, 3);
    assert_eq!(
        o.line(1),
        "1\tGrüße aus Köln,  wieder\t=?UTF-8?Q?J=C3=BCrgen?= <j@example.test>\tMon, 1 Jan 2027 00:00:00 +0000\t<ov@x>\t<a@x> <b@x>\t"
            .to_string()
            + &format!("{}\t3\tXref: news.example.test alt.test:1", stored.len())
    );
    // HDR: overview fields from the index, others from the file
    assert_eq!(store.header("alt.test", 1..=1, "subject").unwrap(), [(1, "Grüße aus\tKöln,  wieder".to_string())]);
    assert_eq!(store.header("alt.test", 1..=1, ":lines").unwrap(), [(1, "3".to_string())]);
    assert_eq!(store.header("alt.test", 1..=1, "X-Other").unwrap(), [(1, "deep".to_string())]);
    assert_eq!(store.header("alt.test", 1..=1, "X-Missing").unwrap(), [(1, String::new())]);
    assert_eq!(store.header_by_id("<ov@x>", "x-other").unwrap().as_deref(), Some("deep"));
}

#[test]
fn news_lookups_next_last_ranges_newnews() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one", "a.onex", "b.two"]);
    for i in 1..=5 {
        store.post(&art(&format!("<{i}@x>"), "a.one"), T0 + i).unwrap();
    }
    store.post(&art("<other@x>", "a.onex"), T0 + 3).unwrap();
    store.post(&art("<b@x>", "b.two"), T0 + 4).unwrap();
    store.delete_article("<3@x>", T0).unwrap();
    assert_eq!(info(&store, "a.one"), (4, 1, 5));
    assert_eq!(store.numbers("a.one", 2..=5).unwrap(), [2, 4, 5]);
    assert_eq!(store.next("a.one", 2).unwrap(), Some(4));
    assert_eq!(store.next("a.one", 5).unwrap(), None, "not into a.onex");
    assert_eq!(store.last("a.one", 4).unwrap(), Some(2));
    assert_eq!(store.last("a.one", 1).unwrap(), None);
    assert_eq!(store.id_of("a.one", 4).unwrap().as_deref(), Some("<4@x>"));
    assert_eq!(store.article("a.one", 3).unwrap(), None);
    let over: Vec<u64> = store.overview("a.one", 1..=4).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(over, [1, 2, 4]);
    assert_eq!(store.locate("<b@x>").unwrap().unwrap().numbers, [("b.two".to_string(), 1)]);
    let newnews = store.new_articles_since(T0 + 3, &Wildmat::parse("a.*,!a.onex").unwrap()).unwrap();
    assert_eq!(newnews, ["<4@x>", "<5@x>"]);
    assert_eq!(store.new_articles_since(T0 + 4, &Wildmat::any()).unwrap(), ["<4@x>", "<b@x>", "<5@x>"]);
}

#[test]
fn news_reconcile_body_without_index_is_reindexed() {
    let dir = tempfile::tempdir().unwrap();
    let (d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one", "b.two"]);
    store.post(&art("<kept@x>", "a.one"), T0).unwrap();
    store.post(&art("<lost@x>", "a.one,b.two"), T0 + 5).unwrap();
    // a crash after the file and before the index: the index never saw it
    let tree = d.db.open_tree("news").unwrap();
    for (k, v) in tree.iter().map(Result::unwrap) {
        let lost = k.starts_with(b"m<lost") || k.ends_with(b"<lost@x>") || v.as_ref() == b"<lost@x>";
        if lost {
            tree.remove(k).unwrap();
        }
    }
    drop(tree);
    // plus a stray temporary file and a file that is not ours
    std::fs::write(dir.path().join("news/articles/.tmp-1-1"), b"half").unwrap();
    std::fs::write(dir.path().join("news/articles/junk"), b"Subject: no id\r\n\r\n").unwrap();
    let (_d, store, rec) = reopen((d, store), dir.path(), T0 + 10);
    assert_eq!(rec.reindexed, ["<lost@x>"]);
    assert_eq!(rec.quarantined, ["junk"]);
    assert!(dir.path().join("news/quarantine/junk").exists());
    assert!(!dir.path().join("news/articles/.tmp-1-1").exists());
    assert_eq!(info(&store, "a.one"), (2, 1, 2));
    assert_eq!(info(&store, "b.two"), (1, 1, 1));
    assert_eq!(store.id_of("b.two", 1).unwrap().as_deref(), Some("<lost@x>"));
    assert_eq!(store.locate("<lost@x>").unwrap().unwrap().arrived, T0 + 5, "arrival from the mtime");
    assert_eq!(store.new_articles_since(T0 + 1, &Wildmat::any()).unwrap(), ["<lost@x>"]);
    assert!(matches!(store.post(&art("<lost@x>", "a.one"), T0), Err(NewsError::Duplicate(_))));
    assert_eq!(store.post(&art("<next@x>", "b.two"), T0).unwrap().numbers[0].1, 2);
}

#[test]
fn news_reconcile_index_without_body_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one"]);
    store.post(&art("<1@x>", "a.one"), T0).unwrap();
    store.post(&art("<2@x>", "a.one"), T0).unwrap();
    // a file lost after the write-ahead log that covered it was retired
    store.checkpoint().unwrap();
    std::fs::remove_file(dir.path().join("news/articles").join(store::file_name("<2@x>"))).unwrap();
    let (_d, store, rec) = reopen((d, store), dir.path(), T0);
    assert_eq!(rec.dropped, ["<2@x>"]);
    assert_eq!(info(&store, "a.one"), (1, 1, 2), "the high-water mark stays");
    assert_eq!(store.article("a.one", 2).unwrap(), None);
    assert_eq!(store.next("a.one", 1).unwrap(), None);
    assert_eq!(store.post(&art("<3@x>", "a.one"), T0).unwrap().numbers[0].1, 3);
}

#[test]
fn news_reconcile_finishes_a_group_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let (d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one", "b.two"]);
    store.post(&art("<only@x>", "a.one"), T0).unwrap();
    store.post(&art("<both@x>", "a.one,b.two"), T0).unwrap();
    // the group file says deleted; the crash came before the index and files
    let path = dir.path().join("news/groups/a.one.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("\"deleted\":false", "\"deleted\":true");
    std::fs::write(&path, text).unwrap();
    let (_d, store, rec) = reopen((d, store), dir.path(), T0);
    assert_eq!(rec.orphans_removed, 1);
    assert_eq!(store.group("a.one").unwrap(), None);
    assert!(store.article_by_id("<only@x>").unwrap().is_none());
    assert_eq!(store.article("b.two", 1).unwrap().unwrap().0, "<both@x>");
    assert_eq!(std::fs::read_dir(dir.path().join("news/articles")).unwrap().count(), 1);
}

#[test]
fn news_expiry_removes_old_articles_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one"]);
    store.post(&art("<old@x>", "a.one"), T0).unwrap();
    store.post(&art("<new@x>", "a.one"), T0 + 5 * DAY).unwrap();
    assert_eq!(store.expire(T0 + 10 * DAY - 1).unwrap().articles, 0);
    assert_eq!(store.expire(T0 + 10 * DAY + 1).unwrap().articles, 1);
    assert_eq!(info(&store, "a.one"), (1, 2, 2));
    assert!(store.article_by_id("<old@x>").unwrap().is_none());
    assert!(store.article_by_id("<new@x>").unwrap().is_some());
    assert_eq!(std::fs::read_dir(dir.path().join("news/articles")).unwrap().count(), 1);
    assert_eq!(store.new_articles_since(0, &Wildmat::any()).unwrap(), ["<new@x>"]);
}

#[test]
fn news_expire_after_none_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open_when_free(dir.path());
    let s = NewsSettings { expire_after: None, ..settings() };
    let (store, _) = NewsStore::open(&data.db, dir.path(), s, T0).unwrap();
    with_groups(&store, &["a.one"]);
    store.post(&art("<old@x>", "a.one"), T0).unwrap();
    assert_eq!(store.expire(T0 + 1000 * DAY).unwrap().articles, 0);
    assert_eq!(info(&store, "a.one"), (1, 1, 1));
}

#[test]
fn news_parallel_posts_get_distinct_consecutive_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one", "b.two"]);
    let store = Arc::new(store);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| store.post(&art(&format!("<{t}.{i}@x>"), "a.one,b.two"), T0).unwrap().numbers)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut a: Vec<u64> = Vec::new();
    for t in threads {
        for numbers in t.join().unwrap() {
            assert_eq!(numbers[0].1, numbers[1].1, "both groups advance together here");
            a.push(numbers[0].1);
        }
    }
    a.sort_unstable();
    assert_eq!(a, (1..=40).collect::<Vec<u64>>());
    assert_eq!(info(&store, "a.one"), (40, 1, 40));
}

#[test]
fn news_a_run_posted_together_and_crashes_inside_one() {
    let dir = tempfile::tempdir().unwrap();
    let (d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one", "b.two"]);
    let run = [art("<r1@x>", "a.one"), art("<r2@x>", "a.one,b.two"), art("<r1@x>", "a.one"), art("<r3@x>", "c.none")];
    let refs: Vec<&[u8]> = run.iter().map(Vec::as_slice).collect();
    let out = store.post_many(&refs, T0, |_| true);
    assert_eq!(out[0].as_ref().unwrap().numbers, [("a.one".to_string(), 1)]);
    assert_eq!(out[1].as_ref().unwrap().numbers, [("a.one".to_string(), 2), ("b.two".to_string(), 1)]);
    assert!(matches!(out[2], Err(NewsError::Duplicate(_))), "the same Message-ID twice in one run");
    assert!(matches!(out[3], Err(NewsError::NoGroups(_))));
    assert_eq!(info(&store, "a.one"), (2, 1, 2));

    // a crash after the files were written, before their fsync and link:
    // nothing of the run is visible after reconciliation
    *store.crash.lock().unwrap() = Some(store::Crash::BeforeSync);
    let run = [art("<s1@x>", "a.one"), art("<s2@x>", "b.two")];
    let refs: Vec<&[u8]> = run.iter().map(Vec::as_slice).collect();
    assert!(store.post_many(&refs, T0 + 1, |_| true).iter().all(Result::is_err));
    let (d, store, rec) = reopen((d, store), dir.path(), T0 + 2);
    assert!(rec.reindexed.is_empty() && rec.quarantined.is_empty(), "{rec:?}");
    assert_eq!(store.locate("<s1@x>").unwrap(), None);
    assert_eq!(store.locate("<s2@x>").unwrap(), None);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("news/articles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(info(&store, "a.one"), (2, 1, 2));

    // a crash after the files were made durable, before the index: the
    // whole run comes back whole, with its numbers
    *store.crash.lock().unwrap() = Some(store::Crash::BeforeIndex);
    let run = [art("<t1@x>", "a.one"), art("<t2@x>", "a.one,b.two")];
    let refs: Vec<&[u8]> = run.iter().map(Vec::as_slice).collect();
    store.post_many(&refs, T0 + 3, |_| true);
    let (_d, store, rec) = reopen((d, store), dir.path(), T0 + 4);
    let mut reindexed = rec.reindexed.clone();
    reindexed.sort();
    assert_eq!(reindexed, ["<t1@x>", "<t2@x>"]);
    assert_eq!(store.id_of("a.one", 3).unwrap().as_deref(), Some("<t1@x>"));
    assert_eq!(store.id_of("a.one", 4).unwrap().as_deref(), Some("<t2@x>"));
    assert_eq!(store.id_of("b.two", 2).unwrap().as_deref(), Some("<t2@x>"));
    assert_eq!(info(&store, "a.one"), (4, 1, 4));
    assert!(matches!(store.post(&art("<t1@x>", "a.one"), T0 + 5), Err(NewsError::Duplicate(_))));
    assert_eq!(store.post(&art("<u@x>", "a.one"), T0 + 5).unwrap().numbers[0].1, 5, "numbers never go back");
}

#[test]
fn news_an_acknowledged_run_survives_losing_its_unsynced_files() {
    let dir = tempfile::tempdir().unwrap();
    let (d, store, _) = open(dir.path(), T0);
    with_groups(&store, &["a.one"]);
    let run = [art("<w1@x>", "a.one"), art("<w2@x>", "a.one"), art("<w3@x>", "a.one")];
    let refs: Vec<&[u8]> = run.iter().map(Vec::as_slice).collect();
    assert!(store.post_many(&refs, T0, |_| true).iter().all(Result::is_ok));
    store.delete_article("<w3@x>", T0 + 1).unwrap();
    let run = [art("<w4@x>", "a.one")];
    let refs: Vec<&[u8]> = run.iter().map(Vec::as_slice).collect();
    assert!(store.post_many(&refs, T0 + 2, |_| true).iter().all(Result::is_ok));
    // a power cut: the last run's file was never fsynced (the log covers
    // it; the removal's checkpoint made the others durable) and neither
    // was the index; the log's last append was torn
    std::fs::remove_file(dir.path().join("news/articles").join(store::file_name("<w4@x>"))).unwrap();
    let tree = d.db.open_tree("news").unwrap();
    for k in tree.iter().keys().map(Result::unwrap) {
        if !k.starts_with(b"g") {
            tree.remove(k).unwrap();
        }
    }
    drop(tree);
    let segments: Vec<_> = std::fs::read_dir(dir.path().join("news/log")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let mut f = std::fs::OpenOptions::new().append(true).open(&segments[0]).unwrap();
    std::io::Write::write_all(&mut f, b"A 999 9\nPath: half").unwrap();
    let (_d, store, rec) = reopen((d, store), dir.path(), T0 + 3);
    let mut reindexed = rec.reindexed.clone();
    reindexed.sort();
    assert_eq!(reindexed, ["<w1@x>", "<w2@x>", "<w4@x>"]);
    assert_eq!(store.id_of("a.one", 4).unwrap().as_deref(), Some("<w4@x>"));
    assert_eq!(store.locate("<w4@x>").unwrap().unwrap().arrived, T0 + 2);
    assert_eq!(store.locate("<w3@x>").unwrap(), None, "a removed article does not come back");
    assert!(std::fs::read_dir(dir.path().join("news/log")).unwrap().next().is_none(), "the log is retired at open");
    assert_eq!(store.post(&art("<w5@x>", "a.one"), T0 + 4).unwrap().numbers[0].1, 5);
}
