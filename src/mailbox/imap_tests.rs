//! Tests of what the store grew for IMAP4: CONDSTORE (MODSEQ, HIGHESTMODSEQ,
//! CHANGEDSINCE, UNCHANGEDSINCE) across restarts and old index records.

use super::tests::{open, open_faulty};
use super::*;

const ALICE: &str = "alice@example.test";

fn msg(i: usize) -> Vec<u8> {
    format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes()
}

fn flags(fs: &[Flag]) -> Flags {
    fs.iter().cloned().collect()
}

fn modseqs(store: &MailboxStore, folder: &str) -> Vec<(u32, u64)> {
    store.messages(ALICE, folder).unwrap().messages.iter().map(|m| (m.uid, m.modseq)).collect()
}

#[test]
fn mailbox_modseq_grows_with_every_change_and_changedsince_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    let start = store.highestmodseq(ALICE, INBOX).unwrap();
    assert!(start >= 1);
    for i in 1..=3 {
        store.deliver(ALICE, &msg(i), 1).unwrap();
    }
    let ms = modseqs(&store, INBOX);
    assert!(ms.windows(2).all(|w| w[0].1 < w[1].1), "each arrival gets a larger MODSEQ: {ms:?}");
    let h = store.highestmodseq(ALICE, INBOX).unwrap();
    assert_eq!(h, ms[2].1);
    assert_eq!(store.messages(ALICE, INBOX).unwrap().highestmodseq, h);

    let out = store.store_flags_if(ALICE, INBOX, &[2, 1, 9], FlagChange::Add, &flags(&[Flag::Seen]), None).unwrap();
    assert!(out.conflicts.is_empty());
    assert_eq!(out.updated.len(), 2, "only messages that exist: {out:?}");
    assert!(out.updated.iter().all(|u| u.2 > h && u.1.contains(&Flag::Seen)));
    let h2 = store.highestmodseq(ALICE, INBOX).unwrap();
    assert_eq!(h2, out.updated[0].2);
    let changed: Vec<u32> = store.changed_since(ALICE, INBOX, h).unwrap().messages.iter().map(|m| m.uid).collect();
    assert_eq!(changed, vec![1, 2]);

    // a STORE that changes nothing keeps every MODSEQ
    let same = store.store_flags_if(ALICE, INBOX, &[1], FlagChange::Add, &flags(&[Flag::Seen]), None).unwrap();
    assert_eq!(same.updated[0].2, h2);
    assert_eq!(store.highestmodseq(ALICE, INBOX).unwrap(), h2);

    // UNCHANGEDSINCE: message 1 changed after h, 3 did not
    let cond = store.store_flags_if(ALICE, INBOX, &[1, 3], FlagChange::Add, &flags(&[Flag::Flagged]), Some(h)).unwrap();
    assert_eq!(cond.conflicts, vec![1]);
    assert_eq!(cond.updated.len(), 1);
    assert_eq!(cond.updated[0].0, 3);
    assert!(cond.updated[0].2 > h2);
    assert!(!store.messages(ALICE, INBOX).unwrap().messages[0].flags.contains(&Flag::Flagged));

    // an expunge raises HIGHESTMODSEQ too
    let h3 = store.highestmodseq(ALICE, INBOX).unwrap();
    store.expunge(ALICE, INBOX, &[2]).unwrap();
    assert!(store.highestmodseq(ALICE, INBOX).unwrap() > h3);

    // a copy gets MODSEQs of the destination
    let trash_before = store.highestmodseq(ALICE, "Trash").unwrap();
    store.copy(ALICE, INBOX, &[1, 3], "Trash").unwrap();
    let t = modseqs(&store, "Trash");
    assert!(t.iter().all(|m| m.1 > trash_before), "{t:?}");
}

#[test]
fn mailbox_highestmodseq_never_falls_back_across_restarts_even_when_sled_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for round in 0..3 {
        let (d, store, _) = open(dir.path());
        let h = store.highestmodseq(ALICE, INBOX).unwrap();
        assert!(h >= seen, "round {round}: HIGHESTMODSEQ {h} fell below {seen}");
        store.deliver(ALICE, &msg(round), 1).unwrap();
        let out = store
            .store_flags_if(
                ALICE,
                INBOX,
                &[1],
                FlagChange::Replace,
                &flags(&[Flag::Keyword(format!("r{round}"))]),
                None,
            )
            .unwrap();
        seen = out.updated[0].2;
        assert!(seen > h);
        if round == 1 {
            // sled lost every record of this folder: the disk's floor still holds
            let tree = d.db.open_tree("mailbox").unwrap();
            for k in tree.iter().keys() {
                tree.remove(k.unwrap()).unwrap();
            }
        }
    }
    let (_d, store, rec) = open(dir.path());
    assert!(store.highestmodseq(ALICE, INBOX).unwrap() >= seen);
    assert!(rec.reindexed.is_empty());
    let ms = modseqs(&store, INBOX);
    assert!(ms.iter().all(|m| m.1 >= 1), "{ms:?}");
}

#[test]
fn mailbox_index_records_from_before_condstore_still_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (d, store, _) = open(dir.path());
        for i in 1..=2 {
            store.deliver(ALICE, &msg(i), 1_700_000_000).unwrap();
        }
        store.store_flags(ALICE, INBOX, &[1], FlagChange::Add, &flags(&[Flag::Seen])).unwrap();
        // rewrite the index and folder.json as the store wrote them before
        // CONDSTORE: no modseq fields at all
        let tree = d.db.open_tree("mailbox").unwrap();
        for r in tree.iter() {
            let (k, v) = r.unwrap();
            let mut json: serde_json::Value = serde_json::from_slice(&v).unwrap();
            let obj = json.as_object_mut().unwrap();
            for field in ["modseq", "highestmodseq", "durable_modseq", "parsed"] {
                obj.remove(field);
            }
            tree.insert(k, serde_json::to_vec(&json).unwrap()).unwrap();
        }
        tree.flush().unwrap();
        for f in std::fs::read_dir(dir.path().join("mail").join(ALICE)).unwrap() {
            let state = f.unwrap().path().join(disk::STATE_FILE);
            let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
            json.as_object_mut().unwrap().remove("highestmodseq");
            std::fs::write(&state, serde_json::to_vec(&json).unwrap()).unwrap();
        }
    }
    let (_d, store, rec) = open(dir.path());
    assert!(rec.reindexed.is_empty() && rec.dropped.is_empty(), "{rec:?}");
    let l = store.messages(ALICE, INBOX).unwrap();
    assert_eq!(l.messages.len(), 2);
    assert!(l.messages[0].flags.contains(&Flag::Seen), "flags kept");
    assert!(l.messages.iter().all(|m| m.modseq >= 1 && m.modseq <= l.highestmodseq), "{l:?}");
    let h = l.highestmodseq;
    let out = store.store_flags_if(ALICE, INBOX, &[2], FlagChange::Add, &flags(&[Flag::Seen]), Some(h)).unwrap();
    assert!(out.conflicts.is_empty() && out.updated[0].2 > h);
    assert_eq!(store.read(ALICE, INBOX, 2).unwrap(), msg(2));
}

// ------------------------------------------------------------ the cached parse

use crate::proto::imap::response::BodyStructure;
use crate::proto::imap::types::{Section, SectionText};

const MULTI: &[u8] = b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.test>\r\n\
To: Alice <alice@example.test>, bob@example.test\r\n\
Cc: Team: carol@example.test;\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
Date: Tue, 1 Nov 2022 10:00:00 +0000\r\n\
Message-ID: <m1@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
plain text\r\n\
second line\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p>html</p>\r\n\
--inner--\r\n\
\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-ID: <att1>\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.test\r\n\
Subject: enclosed\r\n\
\r\n\
inner body\r\n\
--outer--\r\n";

fn sec(part: &[u32], text: Option<SectionText>) -> Section {
    Section { part: part.to_vec(), text }
}

#[test]
fn mailbox_parse_gives_envelope_structure_and_sections() {
    let p = parse::parse(MULTI);
    let e = &p.envelope;
    assert_eq!(e.subject.as_deref(), Some("=?utf-8?q?Gr=C3=BC=C3=9Fe?="), "raw, as IMAP sends it");
    assert_eq!(e.date.as_deref(), Some("Tue, 1 Nov 2022 10:00:00 +0000"));
    assert_eq!(e.message_id.as_deref(), Some("<m1@example.test>"));
    assert_eq!(e.from.len(), 1);
    assert_eq!(e.from[0].mailbox.as_deref(), Some("jorg"));
    assert_eq!(e.from[0].host.as_deref(), Some("example.test"));
    assert!(e.from[0].name.as_deref().unwrap().starts_with("=?utf-8?"), "{:?}", e.from[0].name);
    assert_eq!(e.to.len(), 2);
    assert_eq!(e.to[0].name.as_deref(), Some("Alice"));
    // a group: start marker, member, end marker
    assert_eq!(e.cc.len(), 3, "{:?}", e.cc);
    assert_eq!(e.cc[0].mailbox.as_deref(), Some("Team"));
    assert_eq!(e.cc[2], parse::Address::default());
    assert_eq!(p.search.subject, "Grüße");
    assert!(p.search.from.contains("Jörg") && p.search.from.contains("jorg@example.test"), "{}", p.search.from);
    assert_eq!(p.search.sent, Some(1_667_296_800));

    let b = &p.body;
    assert_eq!((b.media_type.as_str(), b.subtype.as_str()), ("multipart", "mixed"));
    assert_eq!(b.parts.len(), 3);
    assert_eq!(b.parts[0].subtype, "alternative");
    assert_eq!(b.parts[0].parts[0].lines, Some(2));
    assert_eq!(b.parts[0].parts[1].encoding, "quoted-printable");
    let att = &b.parts[1];
    assert_eq!(att.disposition.as_ref().unwrap().0, "attachment");
    assert_eq!(att.id.as_deref(), Some("<att1>"));
    assert_eq!(att.size(), 12);
    let (inner_env, inner) = &**b.parts[2].message.as_ref().unwrap();
    assert_eq!(inner_env.subject.as_deref(), Some("enclosed"));
    assert_eq!(inner.media_type, "text");

    let s = |part: &[u32], t| imap::section(MULTI, b, &sec(part, t)).map(|c| c.into_owned());
    assert_eq!(s(&[], None).unwrap(), MULTI);
    assert_eq!(s(&[1, 1], None).unwrap(), b"plain text\r\nsecond line");
    assert_eq!(s(&[1, 2], None).unwrap(), b"<p>html</p>");
    assert_eq!(
        s(&[1, 2], Some(SectionText::Mime)).unwrap(),
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    );
    assert_eq!(s(&[2], None).unwrap(), b"JVBERi0xLjQK");
    assert_eq!(s(&[3, 1], None).unwrap(), b"inner body");
    assert_eq!(s(&[3], Some(SectionText::Header)).unwrap(), b"From: inner@example.test\r\nSubject: enclosed\r\n\r\n");
    assert_eq!(s(&[3], Some(SectionText::Text)).unwrap(), b"inner body");
    assert!(s(&[4], None).is_none());
    assert!(s(&[2, 1], None).is_none(), "a leaf has no parts");
    assert!(s(&[1], Some(SectionText::Header)).is_none(), "HEADER only of a message");
    let header = s(&[], Some(SectionText::Header)).unwrap();
    assert!(header.starts_with(b"From:") && header.ends_with(b"\r\n\r\n"));
    assert_eq!(
        s(&[], Some(SectionText::HeaderFields(vec!["subject".into(), "MESSAGE-ID".into()]))).unwrap(),
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <m1@example.test>\r\n\r\n"
    );
    let not = s(&[], Some(SectionText::HeaderFieldsNot(vec!["subject".into()]))).unwrap();
    assert!(!String::from_utf8_lossy(&not).contains("Subject"));
    assert!(s(&[], Some(SectionText::Text)).unwrap().starts_with(b"preamble"));
    assert_eq!(imap::partial(b"0123456789", 2, Some(3)), b"234");
    assert_eq!(imap::partial(b"0123456789", 8, Some(30)), b"89");
    assert_eq!(imap::partial(b"0123456789", 30, None), b"");

    // and as the response writer's types
    let BodyStructure::Multipart { parts, subtype, .. } = imap::body_structure(b) else { panic!() };
    assert_eq!((parts.len(), subtype.as_str()), (3, "mixed"));
    let BodyStructure::Single { part, .. } = &parts[2] else { panic!() };
    assert!(part.message.is_some() && part.lines.is_some());
    assert_eq!(imap::envelope(e).subject.as_deref(), Some(&b"=?utf-8?q?Gr=C3=BC=C3=9Fe?="[..]));
}

#[test]
fn mailbox_parse_of_anything_never_fails_and_nesting_is_bounded() {
    for junk in [
        &b""[..],
        b"\r\n",
        b"no header at all",
        b"\xff\xfe\x00garbage\r\n\r\nbody",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary",
    ] {
        let p = parse::parse(junk);
        let b = &p.body;
        assert!(b.end as usize <= junk.len() && b.body <= b.end, "{junk:?}: {b:?}");
        let _ = imap::body_structure(b);
        assert_eq!(imap::section(junk, b, &sec(&[], None)).unwrap(), junk);
    }
    // a message nested far deeper than MAX_DEPTH
    let mut m = b"Subject: leaf\r\n\r\nleaf\r\n".to_vec();
    for _ in 0..40 {
        let mut outer = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
        outer.extend_from_slice(&m);
        m = outer;
    }
    let p = parse::parse(&m);
    let mut depth = 0;
    let mut cur = &p.body;
    while let Some(inner) = &cur.message {
        cur = &inner.1;
        depth += 1;
    }
    assert!(depth <= parse::MAX_DEPTH, "{depth}");
    let _ = imap::body_structure(&p.body);
}

#[test]
fn mailbox_keeps_the_parse_of_each_message_and_copies_it() {
    let dir = tempfile::tempdir().unwrap();
    let (d, store, _) = open(dir.path());
    store.deliver(ALICE, MULTI, 1).unwrap();
    let a = store.append(ALICE, "Drafts", b"Subject: draft\r\n\r\nx\r\n", 2, &flags(&[Flag::Draft])).unwrap();
    assert_eq!(store.parsed(ALICE, INBOX, 1).unwrap(), parse::parse(MULTI));
    assert_eq!(store.parsed(ALICE, "Drafts", a.uid).unwrap().envelope.subject.as_deref(), Some("draft"));
    let (_, pairs) = store.copy(ALICE, INBOX, &[1], "Trash").unwrap();
    assert_eq!(store.parsed(ALICE, "Trash", pairs[0].1).unwrap(), parse::parse(MULTI));
    store.expunge(ALICE, INBOX, &[1]).unwrap();
    assert!(matches!(store.parsed(ALICE, INBOX, 1), Err(MailboxError::NoSuchMessage { .. })));
    // the parse lives in the index, apart from the record; an index
    // without it (older, or lost) parses again on first use
    let tree = d.db.open_tree("mailbox").unwrap();
    let pkeys: Vec<_> = tree.scan_prefix(b"p").keys().map(Result::unwrap).collect();
    assert_eq!(pkeys.len(), 2, "one per message, none for the expunged one");
    for k in pkeys {
        tree.remove(k).unwrap();
    }
    assert_eq!(store.parsed(ALICE, "Trash", pairs[0].1).unwrap(), parse::parse(MULTI));
    assert_eq!(tree.scan_prefix(b"p").count(), 1, "and kept");
}

// ------------------------------------------------------------ folders, MOVE

fn names(store: &MailboxStore) -> Vec<(String, Vec<&'static str>)> {
    store.list(ALICE).unwrap().into_iter().map(|e| (e.name, e.attributes)).collect()
}

fn find(n: &[(String, Vec<&'static str>)], name: &str) -> Option<Vec<&'static str>> {
    n.iter().find(|f| f.0 == name).map(|f| f.1.clone())
}

#[test]
fn mailbox_folders_are_a_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    store.create_folder(ALICE, "Work/2024/Q1/").unwrap();
    store.create_folder(ALICE, "Work").unwrap();
    let n = names(&store);
    assert_eq!(find(&n, "Work"), Some(vec!["\\HasChildren"]));
    assert_eq!(find(&n, "Work/2024"), Some(vec!["\\Noselect", "\\HasChildren"]), "a parent that is a name only");
    assert_eq!(find(&n, "Work/2024/Q1"), Some(vec!["\\HasNoChildren"]));
    assert_eq!(find(&n, "Sent"), Some(vec!["\\HasNoChildren", "\\Sent"]));
    let pos = |name: &str| n.iter().position(|f| f.0 == name).unwrap();
    assert!(pos("Work/2024") < pos("Work/2024/Q1"), "{n:?}");
    assert!(matches!(store.create_folder(ALICE, "a//b"), Err(MailboxError::InvalidFolderName(..))));
    assert!(matches!(store.create_folder(ALICE, "Work/"), Err(MailboxError::FolderExists { .. })));
    store.create_folder(ALICE, "inbox/sub").unwrap();
    assert!(store.folder(ALICE, "INBOX/sub").is_ok());
    assert_eq!(find(&names(&store), INBOX), Some(vec!["\\HasChildren"]));

    let q1 = store.folder(ALICE, "Work/2024/Q1").unwrap();
    store.append(ALICE, "Work/2024/Q1", &msg(1), 1, &Flags::new()).unwrap();
    assert!(matches!(store.rename_folder(ALICE, "Work", "Work/x"), Err(MailboxError::InvalidFolderName(..))));
    store.rename_folder(ALICE, "Work", "Archive/Old").unwrap();
    let n = names(&store);
    assert!(find(&n, "Work").is_none() && find(&n, "Work/2024/Q1").is_none(), "{n:?}");
    assert_eq!(find(&n, "Archive"), Some(vec!["\\Noselect", "\\HasChildren"]));
    assert_eq!(find(&n, "Archive/Old"), Some(vec!["\\HasChildren"]));
    let moved = store.folder(ALICE, "Archive/Old/2024/Q1").unwrap();
    assert_eq!((moved.uidvalidity, moved.messages), (q1.uidvalidity, 1), "children keep UIDVALIDITY and messages");

    // deleting a folder with children leaves a \\Noselect name (RFC 3501 §6.3.4)
    store.delete_folder(ALICE, "Archive/Old").unwrap();
    assert_eq!(find(&names(&store), "Archive/Old"), Some(vec!["\\Noselect", "\\HasChildren"]));
    assert!(matches!(store.delete_folder(ALICE, "Archive/Old"), Err(MailboxError::NoSuchFolder { .. })));
    store.delete_folder(ALICE, "Archive/Old/2024/Q1").unwrap();
    assert!(find(&names(&store), "Archive").is_none());

    // subscriptions survive a restart and a rename
    store.create_folder(ALICE, "Archive").unwrap();
    store.set_subscribed(ALICE, "Archive", false).unwrap();
    store.rename_folder(ALICE, "Archive", "Attic").unwrap();
    drop(store);
    drop(_d);
    let (_d, store, rec) = open(dir.path());
    assert!(rec.dropped.is_empty() && rec.reindexed.is_empty(), "{rec:?}");
    assert!(!store.folder(ALICE, "Attic").unwrap().subscribed);
    let subscribed: Vec<String> =
        store.list(ALICE).unwrap().into_iter().filter(|f| f.subscribed).map(|f| f.name).collect();
    assert!(!subscribed.contains(&"Attic".to_string()) && subscribed.contains(&INBOX.to_string()));
}

#[test]
fn mailbox_rename_inbox_moves_its_messages_and_move_reports_copyuid() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, _) = open(dir.path());
    for i in 1..=3 {
        store.deliver(ALICE, &msg(i), 1).unwrap();
    }
    let mut changes = store.subscribe(ALICE).unwrap();
    let (uv, pairs) = store.move_messages(ALICE, INBOX, &[2, 3, 9], "Trash").unwrap();
    assert_eq!(uv, store.folder(ALICE, "Trash").unwrap().uidvalidity);
    assert_eq!(pairs, vec![(2, 1), (3, 2)]);
    let mut kinds = Vec::new();
    while let Ok(c) = changes.try_recv() {
        kinds.push((c.folder, c.kind));
    }
    assert!(kinds.contains(&("Trash".into(), ChangeKind::Appended(vec![1, 2]))), "{kinds:?}");
    assert!(kinds.contains(&(INBOX.into(), ChangeKind::Expunged(vec![2, 3]))), "{kinds:?}");
    assert_eq!(store.read(ALICE, "Trash", 2).unwrap(), msg(3));
    assert!(store.move_messages(ALICE, "Trash", &[1], "Trash").is_err(), "not onto itself");

    let inbox = store.folder(ALICE, INBOX).unwrap();
    store.rename_inbox(ALICE, "Old Mail").unwrap();
    let after = store.folder(ALICE, INBOX).unwrap();
    assert_eq!((after.messages, after.uidvalidity), (0, inbox.uidvalidity), "INBOX stays, empty");
    assert!(after.uidnext >= inbox.uidnext, "and never reuses a UID");
    let old = store.messages(ALICE, "Old Mail").unwrap();
    assert_eq!(old.messages.len(), 1);
    assert_eq!(store.read(ALICE, "Old Mail", old.messages[0].uid).unwrap(), msg(1));
    assert_eq!(store.deliver(ALICE, &msg(4), 1).unwrap(), inbox.uidnext);
}

// ------------------------------------------------------------ faults in the new writes

use super::fault::{Step, EIO, ENOSPC};

/// Every message's bytes, wherever it is.
fn all_bytes(store: &MailboxStore) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in store.folders(ALICE).unwrap() {
        for m in store.messages(ALICE, &f.name).unwrap().messages {
            out.push(store.read(ALICE, &f.name, m.uid).unwrap());
        }
    }
    out.sort();
    out.dedup();
    out
}

type Op = fn(&MailboxStore) -> Result<(), MailboxError>;

/// The MODSEQ floor write (the first change after a start moves it), and
/// MOVE failing in its copy or in its expunge: a temporary error, nothing
/// lost (a MOVE cut short leaves both copies), the retry completes it, and
/// no MODSEQ or UID is handed out twice.
#[test]
fn mailbox_faults_in_modseq_floor_and_move_lose_nothing() {
    let flags: Op = |s| s.store_flags(ALICE, INBOX, &[1], FlagChange::Add, &flags(&[Flag::Seen])).map(drop);
    let append: Op = |s| s.append(ALICE, INBOX, &msg(9), 9, &Flags::new()).map(drop);
    let mv: Op = |s| s.move_messages(ALICE, INBOX, &[2, 3], "Trash").map(drop);
    let cases: &[(&str, Op, Step)] = &[
        ("flags", flags, Step::State),
        ("append", append, Step::State),
        ("move", mv, Step::Link),
        ("move", mv, Step::Index),
        ("move", mv, Step::Unlink),
    ];
    for (i, &(name, op, step)) in cases.iter().enumerate() {
        let what = format!("{name} with {} failing", step.name());
        let errno = [EIO, ENOSPC][i % 2];
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let (_d, store, _) = open(dir.path());
            for i in 1..=3 {
                store.deliver(ALICE, &msg(i), 1).unwrap();
            }
            all_bytes(&store)
        };
        let (modseq, uidnext) = {
            // a fresh start: the first change moves the MODSEQ floor
            let (_d, store, faults) = open_faulty(dir.path());
            let modseq = store.highestmodseq(ALICE, INBOX).unwrap();
            let uidnext = store.folder(ALICE, INBOX).unwrap().uidnext;
            faults.inject(step, errno, 1);
            let e = op(&store).unwrap_err();
            assert!(!e.is_permanent() && !faults.pending(), "{what}: {e}");
            assert_eq!(all_bytes(&store), before, "{what}: nothing lost, nothing added");
            (modseq, uidnext)
        };
        let (_d, store, _) = open(dir.path());
        assert_eq!(all_bytes(&store), before, "{what}: after a restart");
        op(&store).unwrap_or_else(|e| panic!("{what}: the retry: {e}"));
        assert!(store.highestmodseq(ALICE, INBOX).unwrap() > modseq, "{what}");
        assert!(store.folder(ALICE, INBOX).unwrap().uidnext >= uidnext, "{what}");
        if name == "move" {
            let inbox: Vec<u32> = store.messages(ALICE, INBOX).unwrap().messages.iter().map(|m| m.uid).collect();
            assert_eq!(inbox, vec![1], "{what}: the retry finished the move");
            let trash = store.messages(ALICE, "Trash").unwrap().messages;
            assert!(trash.len() >= 2, "{what}: {trash:?}");
        }
        let ms = modseqs(&store, INBOX);
        assert!(ms.iter().all(|m| m.1 >= 1), "{what}: {ms:?}");
    }
}

/// The listing in memory equals a fresh read of the index in every folder.
fn assert_cache_current(store: &MailboxStore, what: &str) {
    for f in store.folders(ALICE).unwrap() {
        let cached = store.listing(ALICE, &f.name).unwrap();
        let fresh = store.listing_from_index(ALICE, &f.name).unwrap();
        assert_eq!(cached, fresh, "after {what}: folder {}", f.name);
    }
}

#[test]
fn the_cached_listing_equals_a_fresh_read_after_every_kind_of_write() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, store, faults) = open_faulty(dir.path());
    // every folder's listing is cached from here on
    assert_cache_current(&store, "the first read");
    for i in 1..=4 {
        store.deliver(ALICE, &msg(i), 1).unwrap();
    }
    store.append(ALICE, "Sent", &msg(5), 2, &flags(&[Flag::Seen])).unwrap();
    assert_cache_current(&store, "deliveries and APPEND");
    let held = store.listing(ALICE, INBOX).unwrap();

    store.store_flags(ALICE, INBOX, &[1, 2], FlagChange::Add, &flags(&[Flag::Flagged])).unwrap();
    store.store_flags(ALICE, INBOX, &[2], FlagChange::Replace, &flags(&[Flag::Keyword("$x".into())])).unwrap();
    let h = store.highestmodseq(ALICE, INBOX).unwrap();
    store.store_flags_if(ALICE, INBOX, &[1, 2], FlagChange::Remove, &flags(&[Flag::Flagged]), Some(h - 1)).unwrap();
    assert_cache_current(&store, "STORE, with and without UNCHANGEDSINCE");
    assert_eq!(held.messages.len(), 4, "a session's snapshot does not change under it");
    assert!(held.messages.iter().all(|m| m.flags.is_empty()));

    store.expunge(ALICE, INBOX, &[3]).unwrap();
    assert_cache_current(&store, "EXPUNGE");
    store.copy(ALICE, INBOX, &[1, 2], "Trash").unwrap();
    assert_cache_current(&store, "COPY");
    store.move_messages(ALICE, INBOX, &[4], "Junk").unwrap();
    assert_cache_current(&store, "MOVE");

    store.create_folder(ALICE, "a").unwrap();
    store.copy(ALICE, "Trash", &[1], "a").unwrap();
    store.rename_folder(ALICE, "a", "b").unwrap();
    assert_cache_current(&store, "CREATE and RENAME");
    store.delete_folder(ALICE, "b").unwrap();
    // the new folder gets the deleted one's id: none of its listing may show
    store.create_folder(ALICE, "c").unwrap();
    assert!(store.listing(ALICE, "c").unwrap().messages.is_empty());
    assert_cache_current(&store, "DELETE and CREATE");
    store.rename_inbox(ALICE, "Old").unwrap();
    assert_cache_current(&store, "RENAME INBOX");

    // writes that fail part-way: the cache follows the index
    store.deliver(ALICE, &msg(6), 3).unwrap();
    store.deliver(ALICE, &msg(7), 3).unwrap();
    faults.inject(fault::Step::Index, 5, 1);
    assert!(store.deliver(ALICE, &msg(8), 3).is_err());
    assert_cache_current(&store, "a failed delivery");
    faults.inject(fault::Step::Index, 5, 1);
    assert!(store.store_flags(ALICE, INBOX, &[1, 2, 3, 4, 5, 6, 7], FlagChange::Add, &flags(&[Flag::Seen])).is_err());
    assert_cache_current(&store, "a failed STORE");
    let uids: Vec<u32> = store.listing(ALICE, INBOX).unwrap().messages.iter().map(|m| m.uid).collect();
    faults.inject(fault::Step::Unlink, 5, 1);
    assert!(store.expunge(ALICE, INBOX, &uids).is_err());
    assert_cache_current(&store, "a failed EXPUNGE");
    faults.inject(fault::Step::Index, 5, 1);
    assert!(store.copy(ALICE, INBOX, &uids, "Trash").is_err());
    assert_cache_current(&store, "a failed COPY");
}
