//! The feed queue: which stored articles each `[[news_peer]]` with
//! `feed_to` is still owed, as durable as the mail queue, so that every
//! article goes to a peer at most once (at least once only for the ones in
//! flight at a crash) and never to a peer its `Path` already names.
//!
//! # Who is owed what
//!
//! An article is owed to every peer with `feed_to` whose `groups` want one
//! of the groups it was stored in, that is not the peer it came from, and
//! whose `name` is not an element of its `Path`. A peer's `name` is its
//! Path identity (its *pathhost*, INN's `pathhost`): name a peer exactly as
//! it writes itself into `Path`, or loops are not seen (and the peer's own
//! duplicate check, `435`/`438`, is all that stops them).
//!
//! # Durability
//!
//! One append-only journal, `data_dir/news/feed/journal`, of lines:
//!
//! ```text
//! @ <t>                          every article that arrived before t is accounted for
//! + <arrived> <id> <peer>...     owed to these peers (fsynced before stored()/stored_many() returns)
//! - <peer> <id>                  done for that peer: sent, refused or not wanted (fsynced by done())
//! = <arrived> <id>               known and owed to nobody (compaction keeps these for the rescan)
//! ```
//!
//! A crash can fall between the store's fsync of an article (after which
//! it is acknowledged) and the `+` line. So [`FeedQueue::open`] — which
//! must run after [`super::NewsStore::open`] has reconciled the index —
//! rescans the store's arrival order from `max(@, newest arrival in the
//! journal - RESCAN_SLACK)` and queues every article there that the
//! journal does not mention. The slack covers posts that took their
//! arrival time before another post's but were stored after it. A clock
//! that jumps back more than that across a crash can hide an article from
//! the rescan; nothing else can. Done marks are fsynced in batches, after
//! the peer's answers for a batch were read: after a crash only the
//! articles whose answers were not yet recorded are offered again (the
//! peer then says `435`/`438` for those it took). The journal is rewritten
//! (atomically, fsynced) at open, at close and when done lines dominate it.
//!
//! Pending entries live in memory too (a Message-ID and an arrival time
//! each); an article expired before it could be sent is dropped by the
//! feeder when the store no longer has it.

use super::store::{self, ArticleRecord};
use super::{article, NewsError, Posted};
use crate::config::NewsPeer;
use crate::util::{fsync_dir, LockExt};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Seconds before the newest journalled arrival that the rescan at open
/// goes back (see the module doc).
const RESCAN_SLACK: u64 = 60;

/// Done lines beyond which (and beyond twice the live lines) the journal
/// is rewritten.
const COMPACT_AFTER: usize = 4096;

/// One article owed to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub message_id: String,
    /// Unix seconds.
    pub arrived: u64,
}

/// What [`FeedQueue::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedRecovery {
    /// Articles owed, per peer, after reconciliation.
    pub pending: BTreeMap<String, usize>,
    /// Articles the store had but the journal did not (a crash after the
    /// store's fsync, before the enqueue), now queued.
    pub rescued: Vec<String>,
    /// Entries for peers no longer configured with `feed_to`, dropped.
    pub dropped_for_unknown_peers: usize,
}

#[derive(Default)]
struct PeerQueue {
    /// Owed and not in flight, in queue order.
    waiting: BTreeMap<u64, Queued>,
    /// Handed to the feeder by [`FeedQueue::next`], not yet done or released.
    in_flight: HashMap<String, (u64, Queued)>,
}

struct Journal {
    /// Shared so that an fsync runs outside the lock (appends are
    /// ordered by the lock; one fsync makes every earlier append durable).
    file: Arc<File>,
    next_seq: u64,
    queues: HashMap<String, PeerQueue>,
    /// Floor: everything that arrived before it is accounted for.
    floor: u64,
    /// Newest arrival journalled.
    newest: u64,
    /// Journalled articles that arrived within RESCAN_SLACK of `newest`,
    /// kept for compaction (the rescan's duplicate check).
    recent: VecDeque<(u64, String)>,
    done_lines: usize,
}

pub struct FeedQueue {
    path: PathBuf,
    peers: Vec<NewsPeer>,
    journal: Mutex<Journal>,
    wake: HashMap<String, Arc<Notify>>,
}

/// Whether `path` (a `Path` header value) names `name` as one of its
/// elements (RFC 5536 §3.1.5: `!`-separated, white space around allowed).
pub fn path_names(path: &str, name: &str) -> bool {
    path.split('!').map(str::trim).any(|e| e.eq_ignore_ascii_case(name))
}

/// The peers (of those fed) that are owed an article in `groups` with this
/// `Path`, not counting `from_peer`.
fn owed<'a>(peers: &'a [NewsPeer], groups: &[(String, u64)], path: &str, from_peer: Option<&str>) -> Vec<&'a str> {
    peers
        .iter()
        .filter(|p| Some(p.name.as_str()) != from_peer)
        .filter(|p| groups.iter().any(|(g, _)| p.wants(g)))
        .filter(|p| !path_names(path, &p.name))
        .map(|p| p.name.as_str())
        .collect()
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> NewsError + '_ {
    move |e| NewsError::io(path, e)
}

impl Journal {
    fn push(&mut self, peer: &str, q: Queued) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queues.entry(peer.to_string()).or_default().waiting.insert(seq, q);
    }

    fn note_arrival(&mut self, arrived: u64, id: &str) {
        self.newest = self.newest.max(arrived);
        self.recent.push_back((arrived, id.to_string()));
        let keep_from = self.newest.saturating_sub(RESCAN_SLACK);
        while self.recent.front().is_some_and(|(a, _)| *a < keep_from) {
            self.recent.pop_front();
        }
    }

    fn live(&self) -> usize {
        self.queues.values().map(|q| q.waiting.len() + q.in_flight.len()).sum()
    }

    /// The whole state as a compacted journal.
    fn render(&self) -> (String, u64) {
        let floor = self.floor.max(self.newest.saturating_sub(RESCAN_SLACK));
        // per article: arrival and the peers it is still owed to
        let mut owed: BTreeMap<(u64, &str), Vec<&str>> = BTreeMap::new();
        for (peer, q) in &self.queues {
            for e in q.waiting.values().chain(q.in_flight.values().map(|(_, e)| e)) {
                owed.entry((e.arrived, e.message_id.as_str())).or_default().push(peer);
            }
        }
        let mut out = format!("@ {floor}\n");
        let mut seen: HashSet<&str> = HashSet::new();
        for ((arrived, id), peers) in &owed {
            out.push_str(&format!("+ {arrived} {id} {}\n", peers.join(" ")));
            seen.insert(id);
        }
        for (arrived, id) in &self.recent {
            if *arrived >= floor && seen.insert(id) {
                out.push_str(&format!("= {arrived} {id}\n"));
            }
        }
        (out, floor)
    }

    /// Append under the lock; the caller fsyncs the returned file after
    /// letting go of it.
    fn append(&mut self, path: &Path, text: &str) -> Result<Arc<File>, NewsError> {
        (&*self.file).write_all(text.as_bytes()).map_err(io_err(path))?;
        Ok(self.file.clone())
    }
}

impl FeedQueue {
    /// Open (and reconcile) the queue for `peers` in the data directory;
    /// only peers with `feed_to` are fed. Call it after
    /// [`super::NewsStore::open`] on the same database: the rescan reads
    /// the reconciled `news` index.
    pub fn open(db: &sled::Db, data_dir: &Path, peers: &[NewsPeer]) -> Result<(FeedQueue, FeedRecovery), NewsError> {
        let dir = data_dir.join("news").join("feed");
        crate::util::create_dir_durably(&dir).map_err(io_err(&dir))?;
        let path = dir.join("journal");
        let peers: Vec<NewsPeer> = peers.iter().filter(|p| p.feed_addr.is_some()).cloned().collect();
        let known_peers: HashSet<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        let mut recovery = FeedRecovery::default();

        let text = match fs::read(&path) {
            Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(NewsError::io(&path, e)),
        };
        let fresh = text.is_none();
        // id -> (arrived, peers still owed)
        let mut articles: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut floor = 0u64;
        for line in text.as_deref().unwrap_or_default().lines() {
            let mut w = line.split(' ');
            match (w.next(), w.next(), w.next()) {
                (Some("@"), Some(t), None) => floor = floor.max(t.parse().unwrap_or(0)),
                (Some("+"), Some(t), Some(id)) => {
                    let Ok(t) = t.parse() else { continue };
                    let e = articles.entry(id.to_string()).or_insert_with(|| {
                        order.push(id.to_string());
                        (t, Vec::new())
                    });
                    for p in w {
                        if !e.1.iter().any(|q| q == p) {
                            e.1.push(p.to_string());
                        }
                    }
                }
                (Some("="), Some(t), Some(id)) => {
                    let Ok(t) = t.parse() else { continue };
                    articles.entry(id.to_string()).or_insert_with(|| {
                        order.push(id.to_string());
                        (t, Vec::new())
                    });
                }
                (Some("-"), Some(peer), Some(id)) => {
                    if let Some(e) = articles.get_mut(id) {
                        e.1.retain(|p| p != peer);
                    }
                }
                // a torn last line (a crash mid-append): its fsync never returned
                _ => {}
            }
        }
        if fresh {
            // a new queue owes nothing that arrived before it
            floor = crate::util::now_secs();
        }

        let file = OpenOptions::new().append(true).create(true).mode(0o600).open(&path).map_err(io_err(&path))?;
        let mut j = Journal {
            file: Arc::new(file),
            next_seq: 0,
            queues: HashMap::new(),
            floor,
            newest: 0,
            recent: VecDeque::new(),
            done_lines: 0,
        };
        order.sort_by_key(|id| articles.get(id).map_or(0, |e| e.0));
        for id in &order {
            let Some((arrived, owed_to)) = articles.get(id) else { continue };
            j.note_arrival(*arrived, id);
            for p in owed_to {
                if known_peers.contains(p.as_str()) {
                    j.push(p, Queued { message_id: id.clone(), arrived: *arrived });
                } else {
                    recovery.dropped_for_unknown_peers += 1;
                }
            }
        }

        // the rescan: articles stored but never journalled
        let tree = db.open_tree("news")?;
        let articles_dir = data_dir.join("news").join("articles");
        let from = j.floor.max(j.newest.saturating_sub(RESCAN_SLACK));
        for k in tree.range(store::arrival_key(from, "")..b"u".to_vec()).keys() {
            let k = k?;
            let id = String::from_utf8_lossy(k.get(9..).unwrap_or_default()).into_owned();
            if articles.contains_key(&id) {
                continue;
            }
            let mk = store::article_key(&id);
            let Some(v) = tree.get(&mk)? else { continue };
            let rec: ArticleRecord = store::decode(&mk, &v)?;
            let file = articles_dir.join(&rec.file);
            let bytes = match fs::read(&file) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(NewsError::io(&file, e)),
            };
            let h = article::headers(&bytes);
            let peers_owed = owed(&peers, &rec.numbers, h.get("Path").unwrap_or_default(), None);
            if peers_owed.is_empty() {
                continue;
            }
            for p in peers_owed {
                j.push(p, Queued { message_id: id.clone(), arrived: rec.arrived });
            }
            j.note_arrival(rec.arrived, &id);
            tracing::warn!(message_id = %id, "news feed: queued an article stored before a crash but never queued");
            recovery.rescued.push(id);
        }
        if recovery.dropped_for_unknown_peers > 0 {
            tracing::warn!(
                entries = recovery.dropped_for_unknown_peers,
                "news feed: dropped queue entries for peers no longer configured with feed_to"
            );
        }

        let q = FeedQueue {
            wake: peers.iter().map(|p| (p.name.clone(), Arc::new(Notify::new()))).collect(),
            peers,
            path,
            journal: Mutex::new(j),
        };
        {
            let mut j = q.journal.lock_or_recover();
            q.compact(&mut j)?;
            for p in &q.peers {
                recovery.pending.insert(p.name.clone(), j.queues.get(&p.name).map_or(0, |q| q.waiting.len()));
            }
        }
        Ok((q, recovery))
    }

    /// Rewrite the journal from the state in memory, atomically and durably.
    fn compact(&self, j: &mut Journal) -> Result<(), NewsError> {
        let (text, floor) = j.render();
        crate::util::write_file_durably(&self.path, text.as_bytes(), 0o600).map_err(io_err(&self.path))?;
        j.file = Arc::new(OpenOptions::new().append(true).open(&self.path).map_err(io_err(&self.path))?);
        j.floor = floor;
        j.done_lines = 0;
        Ok(())
    }

    /// The peers fed (those with `feed_to`).
    pub fn peers(&self) -> &[NewsPeer] {
        &self.peers
    }

    /// An article was stored (by POST, or by a feed from `from_peer`):
    /// queue it for every peer that wants its groups and is not in `path`
    /// (the article's `Path` header value). Returns once the queue entry is
    /// fsynced. Blocking: call it from `spawn_blocking`.
    pub fn stored(&self, posted: &Posted, path: &str, from_peer: Option<&str>) -> Result<(), NewsError> {
        self.stored_many(&[(posted, path)], from_peer)
    }

    /// [`FeedQueue::stored`] for a run of articles (each with its `Path`
    /// value) from the same source: one append and one fsync for all.
    pub fn stored_many(&self, stored: &[(&Posted, &str)], from_peer: Option<&str>) -> Result<(), NewsError> {
        let owed: Vec<(&Posted, Vec<&str>)> = stored
            .iter()
            .map(|(posted, path)| (*posted, owed(&self.peers, &posted.numbers, path, from_peer)))
            .filter(|(_, to)| !to.is_empty())
            .collect();
        if owed.is_empty() {
            return Ok(());
        }
        let text: String = owed
            .iter()
            .map(|(posted, to)| format!("+ {} {} {}\n", posted.arrived, posted.message_id, to.join(" ")))
            .collect();
        let file = {
            let mut j = self.journal.lock_or_recover();
            let file = j.append(&self.path, &text)?;
            for (posted, to) in &owed {
                for p in to {
                    j.push(p, Queued { message_id: posted.message_id.clone(), arrived: posted.arrived });
                }
                j.note_arrival(posted.arrived, &posted.message_id);
            }
            file
        };
        // the feeder may see the entries before this returns; whatever it
        // records later is appended after them, so never durable without them
        file.sync_data().map_err(io_err(&self.path))?;
        let woken: HashSet<&str> = owed.iter().flat_map(|(_, to)| to.iter().copied()).collect();
        for p in woken {
            if let Some(n) = self.wake.get(p) {
                n.notify_one();
            }
        }
        Ok(())
    }

    /// What wakes `peer`'s feeder when an article is queued for it.
    pub fn notifier(&self, peer: &str) -> Option<Arc<Notify>> {
        self.wake.get(peer).cloned()
    }

    /// Articles owed to `peer` and not in flight.
    pub fn waiting(&self, peer: &str) -> usize {
        self.journal.lock_or_recover().queues.get(peer).map_or(0, |q| q.waiting.len())
    }

    /// Up to `max` articles owed to `peer`, oldest first; they are in
    /// flight until [`FeedQueue::done`] or [`FeedQueue::release`] names them.
    pub fn next(&self, peer: &str, max: usize) -> Vec<Queued> {
        let mut j = self.journal.lock_or_recover();
        let Some(q) = j.queues.get_mut(peer) else { return Vec::new() };
        let mut out = Vec::new();
        while out.len() < max {
            let Some((seq, e)) = q.waiting.pop_first() else { break };
            q.in_flight.insert(e.message_id.clone(), (seq, e.clone()));
            out.push(e);
        }
        out
    }

    /// The peer gave a final answer for these articles (taken, refused, not
    /// wanted), or the store no longer has them: never offer them again.
    /// Returns once that is fsynced. Blocking.
    pub fn done(&self, peer: &str, ids: &[String]) -> Result<(), NewsError> {
        if ids.is_empty() {
            return Ok(());
        }
        let text: String = ids.iter().map(|id| format!("- {peer} {id}\n")).collect();
        let file = {
            let mut j = self.journal.lock_or_recover();
            let file = j.append(&self.path, &text)?;
            if let Some(q) = j.queues.get_mut(peer) {
                for id in ids {
                    if q.in_flight.remove(id).is_none() {
                        q.waiting.retain(|_, e| e.message_id != *id);
                    }
                }
            }
            j.done_lines += ids.len();
            if j.done_lines > COMPACT_AFTER && j.done_lines > 2 * j.live() {
                // the rewrite is durable on its own
                return self.compact(&mut j);
            }
            file
        };
        file.sync_data().map_err(io_err(&self.path))
    }

    /// Put in-flight articles back, in their old place (the peer said "try
    /// later", or the connection failed before a final answer).
    pub fn release(&self, peer: &str, ids: &[String]) {
        let mut j = self.journal.lock_or_recover();
        if let Some(q) = j.queues.get_mut(peer) {
            for id in ids {
                if let Some((seq, e)) = q.in_flight.remove(id) {
                    q.waiting.insert(seq, e);
                }
            }
        }
    }

    /// Put back everything in flight for `peer` (its session ended).
    pub fn release_all(&self, peer: &str) {
        let mut j = self.journal.lock_or_recover();
        if let Some(q) = j.queues.get_mut(peer) {
            for (_, (seq, e)) in q.in_flight.drain() {
                q.waiting.insert(seq, e);
            }
        }
    }

    /// Rewrite the journal compactly (at shutdown). Blocking.
    pub fn flush(&self) -> Result<(), NewsError> {
        let mut j = self.journal.lock_or_recover();
        self.compact(&mut j)?;
        fsync_dir(self.path.parent().unwrap_or(Path::new("."))).map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FeedTls, HostPort};
    use crate::news::{NewsSettings, NewsStore, Posting};
    use crate::proto::nntp::wildmat::Wildmat;

    fn peer(name: &str, groups: &[&str], feed: bool) -> NewsPeer {
        let groups: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        NewsPeer {
            name: name.into(),
            feed_to: feed.then(|| "127.0.0.1:119".into()),
            feed_tls: FeedTls::None,
            accept_from: vec![],
            group_filter: Some(Wildmat::from_list(&groups).unwrap()),
            groups,
            feed_addr: feed.then(|| HostPort::parse("127.0.0.1:119").unwrap()),
            accept_nets: vec![],
        }
    }

    struct Env {
        dir: tempfile::TempDir,
    }

    impl Env {
        fn new() -> Env {
            Env { dir: tempfile::tempdir().unwrap() }
        }
        fn open(&self, peers: &[NewsPeer]) -> (sled::Db, NewsStore, FeedQueue, FeedRecovery) {
            let db = sled::open(self.dir.path().join("db")).unwrap();
            let (store, _) = NewsStore::open(&db, self.dir.path(), NewsSettings::new("us.test"), now()).unwrap();
            for g in ["local.test", "comp.lang", "alt.other"] {
                let _ = store.add_group(g, "", Posting::Yes, now());
            }
            let (q, rec) = FeedQueue::open(&db, self.dir.path(), peers).unwrap();
            (db, store, q, rec)
        }
    }

    fn now() -> u64 {
        crate::util::now_secs()
    }

    fn art(id: &str, groups: &str, path: &str) -> Vec<u8> {
        format!(
            "Path: {path}\r\nFrom: a@b.test\r\nNewsgroups: {groups}\r\nSubject: s\r\nMessage-ID: {id}\r\nDate: x\r\n\r\nbody\r\n"
        )
        .into_bytes()
    }

    fn post(store: &NewsStore, q: &FeedQueue, id: &str, groups: &str, path: &str, from: Option<&str>) -> Posted {
        let p = store.post(&art(id, groups, path), now()).unwrap();
        q.stored(&p, path, from).unwrap();
        p
    }

    fn ids(v: Vec<Queued>) -> Vec<String> {
        v.into_iter().map(|e| e.message_id).collect()
    }

    #[test]
    fn path_elements_are_matched_whole_and_without_case() {
        assert!(path_names("inn.test!us.test!not-for-mail", "INN.test"));
        assert!(path_names("a.test ! inn.test!x", "inn.test"));
        assert!(!path_names("inn.test2!x", "inn.test"));
        assert!(!path_names("", "inn.test"));
    }

    #[test]
    fn queued_for_every_peer_that_wants_it_except_path_and_source() {
        let env = Env::new();
        let peers = [
            peer("a.test", &["local.*"], true),
            peer("b.test", &["comp.*"], true),
            peer("c.test", &["*"], true),
            peer("d.test", &["*"], false),
        ];
        let (_db, store, q, _) = env.open(&peers);
        post(&store, &q, "<1@x>", "local.test", "us.test!not-for-mail", None);
        post(&store, &q, "<2@x>", "comp.lang,local.test", "c.test!elsewhere", None);
        post(&store, &q, "<3@x>", "alt.other", "elsewhere", Some("c.test"));
        assert_eq!(ids(q.next("a.test", 10)), ["<1@x>", "<2@x>"]);
        assert_eq!(ids(q.next("b.test", 10)), ["<2@x>"]);
        assert_eq!(ids(q.next("c.test", 10)), ["<1@x>"]);
        assert!(q.next("d.test", 10).is_empty());
        assert_eq!(q.waiting("a.test"), 0);
    }

    #[test]
    fn at_most_once_done_survives_restart_and_release_puts_back() {
        let env = Env::new();
        let peers = [peer("a.test", &["*"], true)];
        {
            let (_db, store, q, _) = env.open(&peers);
            for i in 0..5 {
                post(&store, &q, &format!("<{i}@x>"), "local.test", "us.test", None);
            }
            let batch = ids(q.next("a.test", 3));
            assert_eq!(batch, ["<0@x>", "<1@x>", "<2@x>"]);
            // a second next does not hand out what is in flight
            assert_eq!(ids(q.next("a.test", 10)), ["<3@x>", "<4@x>"]);
            q.done("a.test", &batch[..2]).unwrap();
            q.release("a.test", &["<2@x>".to_string(), "<4@x>".to_string()]);
            assert_eq!(ids(q.next("a.test", 10)), ["<2@x>", "<4@x>"]);
            q.done("a.test", &["<4@x>".to_string()]).unwrap();
            // dropped without flush: a crash
        }
        let (_db, _store, q, rec) = env.open(&peers);
        assert!(rec.rescued.is_empty(), "{rec:?}");
        assert_eq!(ids(q.next("a.test", 10)), ["<2@x>", "<3@x>"]);
    }

    #[test]
    fn an_article_stored_but_never_queued_is_rescued_at_open() {
        let env = Env::new();
        let peers = [peer("a.test", &["local.*"], true)];
        {
            let (_db, store, q, _) = env.open(&peers);
            post(&store, &q, "<1@x>", "local.test", "us.test", None);
            q.done("a.test", &["<1@x>".to_string()]).unwrap();
            // the crash between the store's fsync and stored()
            store.post(&art("<2@x>", "local.test", "us.test"), now()).unwrap();
            store.post(&art("<3@x>", "local.test", "a.test!y"), now()).unwrap();
            store.post(&art("<4@x>", "alt.other", "us.test"), now()).unwrap();
        }
        let (_db, _store, q, rec) = env.open(&peers);
        assert_eq!(rec.rescued, ["<2@x>"]);
        assert_eq!(ids(q.next("a.test", 10)), ["<2@x>"]);
        drop(q);
        // after compaction at open, a further restart neither loses nor repeats
        drop(_store);
        drop(_db);
        let (_db, _store, q, rec) = env.open(&peers);
        assert!(rec.rescued.is_empty(), "{rec:?}");
        assert_eq!(ids(q.next("a.test", 10)), ["<2@x>"]);
    }

    #[test]
    fn compaction_keeps_pending_and_forgets_done() {
        let env = Env::new();
        let peers = [peer("a.test", &["*"], true), peer("b.test", &["*"], true)];
        {
            let (_db, store, q, _) = env.open(&peers);
            for i in 0..20 {
                post(&store, &q, &format!("<{i}@x>"), "local.test", "us.test", None);
            }
            let all = ids(q.next("a.test", 100));
            q.done("a.test", &all[..19]).unwrap();
            q.flush().unwrap();
            q.done("b.test", &["<0@x>".to_string()]).unwrap();
        }
        let text = fs::read_to_string(env.dir.path().join("news/feed/journal")).unwrap();
        assert!(text.starts_with("@ "), "{text}");
        let (_db, _store, q, rec) = env.open(&peers);
        assert!(rec.rescued.is_empty());
        assert_eq!(rec.pending.get("a.test"), Some(&1));
        assert_eq!(rec.pending.get("b.test"), Some(&19));
        assert_eq!(ids(q.next("a.test", 100)), ["<19@x>"]);
    }

    #[test]
    fn a_peer_removed_from_the_config_loses_its_entries() {
        let env = Env::new();
        {
            let peers = [peer("a.test", &["*"], true), peer("b.test", &["*"], true)];
            let (_db, store, q, _) = env.open(&peers);
            post(&store, &q, "<1@x>", "local.test", "us.test", None);
        }
        let (_db, _store, q, rec) = env.open(&[peer("a.test", &["*"], true)]);
        assert_eq!(rec.dropped_for_unknown_peers, 1);
        assert_eq!(ids(q.next("a.test", 10)), ["<1@x>"]);
        assert!(q.next("b.test", 10).is_empty());
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let env = Env::new();
        let peers = [peer("a.test", &["*"], true)];
        {
            let (_db, store, q, _) = env.open(&peers);
            post(&store, &q, "<1@x>", "local.test", "us.test", None);
        }
        let j = env.dir.path().join("news/feed/journal");
        let mut f = OpenOptions::new().append(true).open(&j).unwrap();
        f.write_all(b"- a.te").unwrap();
        drop(f);
        let (_db, _store, q, _) = env.open(&peers);
        assert_eq!(ids(q.next("a.test", 10)), ["<1@x>"]);
    }
}
