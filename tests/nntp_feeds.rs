//! News feeds (SPEC §9, issue 12 acceptance 2 and 3): Postern pushes new
//! articles to its `[[news_peer]]`s with `feed_to` — at most once per peer
//! across SIGKILL (only the articles in flight may be offered again), never
//! to a peer its `Path` names — and exchanges articles with INN 2.7 both
//! ways.
//!
//! The receiver here is a small NNTP peer in the test (streaming or IHAVE)
//! that records every article transferred to it, so a repeat is seen even
//! where a real server would just refuse it. INN is the system's (Debian
//! inn2), driven by `tests/peers/inn-feed.sh`; the INN tests are serialised
//! (`.config/nextest.toml`, group `inn`) since INN has fixed ports and one
//! system-wide configuration.

mod common;

use common::*;
use postern::config::Config;
use postern::news::feed::FeedQueue;
use postern::news::{NewsSettings, NewsStore, Posting};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HOST: &str = "mx.example.test";

/// Articles as the NNTP service stores them: through the library, into the
/// stopped server's data directory, then queued for the feed.
fn store_articles(server: &TestServer, articles: &[(String, &str, String)]) {
    let config = Config::load(&server.config_path).expect("config");
    let data = postern::datadir::DataDir::open(&server.path().join(&config.server.data_dir)).expect("data dir");
    let now = postern::util::now_secs();
    let (store, _) = NewsStore::open(&data.db, &data.path, NewsSettings::new(HOST), now).expect("news store");
    for g in ["local.test", "alt.elsewhere"] {
        if store.group(g).unwrap().is_none() {
            store.add_group(g, "", Posting::Yes, now).unwrap();
        }
    }
    let (feed, _) = FeedQueue::open(&data.db, &data.path, &config.news_peers).expect("feed queue");
    for (id, groups, path) in articles {
        let art = format!(
            "Path: {path}\r\nFrom: poster@example.test\r\nNewsgroups: {groups}\r\nSubject: feed test {id}\r\n\
             Message-ID: {id}\r\nDate: {}\r\n\r\nbody of {id}\r\n.leading dot\r\n",
            postern::util::rfc5322_date(now)
        );
        let posted = store.post(art.as_bytes(), now).expect("post");
        feed.stored(&posted, path, None).expect("queue");
    }
}

fn peer_config(name: &str, feed_to: &str, groups: &str) -> String {
    config(
        "",
        &format!("[[news_peer]]\nname = \"{name}\"\nfeed_to = \"{feed_to}\"\nfeed_tls = \"opportunistic\"\ngroups = [{groups}]\n"),
    )
}

/// A news peer in the test: answers CAPABILITIES (STREAMING or not),
/// MODE STREAM, CHECK (always 238: it wants everything, so a repeat
/// offer is a repeat transfer), TAKETHIS and IHAVE, and records the
/// Message-ID of every article transferred, in order.
struct Receiver {
    addr: SocketAddr,
    got: Received,
}

/// Message-ID and body of every article a receiver took, in order.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

impl Receiver {
    fn start(streaming: bool) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { break };
                let g = g.clone();
                std::thread::spawn(move || {
                    let _ = serve(c, streaming, &g);
                });
            }
        });
        Receiver { addr, got }
    }

    fn ids(&self) -> Vec<String> {
        self.got.lock().unwrap().iter().map(|(id, _)| id.clone()).collect()
    }
}

fn serve(c: TcpStream, streaming: bool, got: &Mutex<Vec<(String, Vec<u8>)>>) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    w.write_all(b"200 receiver.test ready\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        let (verb, arg) = l.split_once(' ').unwrap_or((l, ""));
        match verb.to_ascii_uppercase().as_str() {
            "CAPABILITIES" => {
                let s = if streaming { "STREAMING\r\n" } else { "" };
                w.write_all(format!("101 caps\r\nVERSION 2\r\nIHAVE\r\n{s}.\r\n").as_bytes())?;
            }
            "MODE" if streaming => w.write_all(b"203 streaming\r\n")?,
            "MODE" => w.write_all(b"501 no\r\n")?,
            "CHECK" => w.write_all(format!("238 {arg}\r\n").as_bytes())?,
            "TAKETHIS" => {
                let body = read_block(&mut r)?;
                // slow enough that a feed is still running when the test kills it
                std::thread::sleep(Duration::from_millis(3));
                got.lock().unwrap().push((arg.to_string(), body));
                w.write_all(format!("239 {arg}\r\n").as_bytes())?;
            }
            "IHAVE" => {
                w.write_all(b"335 send it\r\n")?;
                let body = read_block(&mut r)?;
                std::thread::sleep(Duration::from_millis(3));
                got.lock().unwrap().push((arg.to_string(), body));
                w.write_all(b"235 thanks\r\n")?;
            }
            "QUIT" => {
                w.write_all(b"205 bye\r\n")?;
                return Ok(());
            }
            _ => w.write_all(b"500 what\r\n")?,
        }
    }
}

/// A dot-terminated block, as sent (still dot-stuffed).
fn read_block(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut l = Vec::new();
        if r.read_until(b'\n', &mut l)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if l == b".\r\n" {
            return Ok(out);
        }
        out.extend_from_slice(&l);
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    let tag = std::process::id();
    (0..n).map(|i| format!("<{prefix}{i}.{tag}@{HOST}>")).collect()
}

/// The feeder's batch size: what may be in flight when the server dies.
fn window() -> usize {
    postern::nntp::feeder::FeederSettings::default().window
}

fn sigkill_during_a_feed(streaming: bool) {
    let rx = Receiver::start(streaming);
    let mut s = TestServer::start(&peer_config("receiver.test", &rx.addr.to_string(), "\"local.*\""));
    s.stop();
    let owed = ids(if streaming { "s" } else { "i" }, 300);
    let mut arts: Vec<(String, &str, String)> =
        owed.iter().map(|id| (id.clone(), "local.test", format!("{HOST}!not-for-mail"))).collect();
    let looped = format!("<loop.{}@{HOST}>", std::process::id());
    let unwanted = format!("<other.{}@{HOST}>", std::process::id());
    arts.push((looped.clone(), "local.test", format!("receiver.test!{HOST}!not-for-mail")));
    arts.push((unwanted.clone(), "alt.elsewhere", format!("{HOST}!not-for-mail")));
    store_articles(&s, &arts);

    s.start_again();
    assert!(
        eventually(Duration::from_secs(60), || rx.ids().len() >= 100),
        "the feed did not start: {} received; log:\n{}",
        rx.ids().len(),
        s.log()
    );
    s.kill9();
    let at_kill = rx.ids().len();
    s.start_again();
    let all_there = || {
        let got = rx.ids();
        owed.iter().all(|id| got.contains(id))
    };
    assert!(eventually(Duration::from_secs(90), all_there), "not every article arrived; log:\n{}", s.log());
    s.stop();

    let got = rx.ids();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for id in &got {
        *count.entry(id.as_str()).or_default() += 1;
    }
    let repeated: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!("killed with {at_kill} of {} received; {} offered again after the restart", owed.len(), repeated.len());
    assert!(count.values().all(|n| *n <= 2), "an article was sent three times: {repeated:?}");
    assert!(
        repeated.len() <= window(),
        "{} articles sent twice after the restart (killed with {at_kill} received); at most the {} in flight may be: {repeated:?}",
        repeated.len(),
        window()
    );
    assert!(!count.contains_key(looped.as_str()), "an article whose Path names the peer was sent to it");
    assert!(!count.contains_key(unwanted.as_str()), "an article in a group the peer does not want was sent");
    assert_eq!(count.len(), owed.len());
    // the body arrives dot-stuffed, with our Xref
    let body = &rx.got.lock().unwrap()[0].1;
    let text = String::from_utf8_lossy(body);
    assert!(text.contains("\r\n..leading dot\r\n"), "{text}");
    assert!(text.contains(&format!("Xref: {HOST} local.test:")), "{text}");
}

#[test]
fn streaming_feed_is_at_most_once_across_sigkill() {
    sigkill_during_a_feed(true);
}

#[test]
fn ihave_feed_is_at_most_once_across_sigkill() {
    sigkill_during_a_feed(false);
}

#[test]
fn a_peer_that_is_down_gets_its_articles_once_it_is_up() {
    // a port nothing listens on, then a receiver there
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut s = TestServer::start(&peer_config("receiver.test", &format!("127.0.0.1:{port}"), "\"*\""));
    s.stop();
    let owed = ids("d", 3);
    let arts: Vec<_> = owed.iter().map(|id| (id.clone(), "local.test", format!("{HOST}!x"))).collect();
    store_articles(&s, &arts);
    s.start_again();
    assert!(
        eventually(Duration::from_secs(30), || s.log().contains("news feed deferred")),
        "no retry was scheduled; log:\n{}",
        s.log()
    );
    // kept across a restart while the peer is down
    s.stop();
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let _ = serve(c, true, &g);
        }
    });
    s.start_again();
    let have = || got.lock().unwrap().len() == owed.len();
    assert!(eventually(Duration::from_secs(30), have), "log:\n{}", s.log());
    s.stop();
}

#[test]
fn feed_tls_required_sends_nothing_to_a_peer_without_starttls() {
    let rx = Receiver::start(true);
    let cfg = peer_config("receiver.test", &rx.addr.to_string(), "\"*\"").replace("\"opportunistic\"", "\"required\"");
    let mut s = TestServer::start(&cfg);
    s.stop();
    store_articles(&s, &[(ids("tls", 1).remove(0), "local.test", format!("{HOST}!x"))]);
    s.start_again();
    assert!(eventually(Duration::from_secs(30), || s.log().contains("does not offer STARTTLS")), "log:\n{}", s.log());
    s.stop();
    assert!(rx.ids().is_empty(), "an article went out in plaintext under feed_tls = \"required\"");
}

// ---- INN ----

const INN_PORT: u16 = 10119;

fn inn_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/inn-feed.sh")
}

fn inn(args: &[&str]) -> String {
    assert!(
        Path::new("/usr/lib/news/bin/innd").exists(),
        "INN (innd from Debian's inn2 package) is not installed; .ci/run installs it"
    );
    let out = Command::new(inn_script()).args(args).output().expect("run tests/peers/inn-feed.sh");
    assert!(
        out.status.success(),
        "inn-feed.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// INN stopped when the test ends, however it ends.
struct InnUp;
impl Drop for InnUp {
    fn drop(&mut self) {
        let _ = Command::new(inn_script()).arg("down").output();
    }
}

/// An article from INN's reader side (MODE READER, ARTICLE): None for 430.
fn inn_article(id: &str) -> Option<String> {
    let c = TcpStream::connect(("127.0.0.1", INN_PORT)).expect("connect to innd");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    let mut reply = |r: &mut BufReader<TcpStream>| {
        line.clear();
        r.read_line(&mut line).unwrap();
        line.clone()
    };
    assert!(reply(&mut r).starts_with("20"));
    w.write_all(b"MODE READER\r\n").unwrap();
    assert!(reply(&mut r).starts_with("20"));
    w.write_all(format!("ARTICLE {id}\r\n").as_bytes()).unwrap();
    let first = reply(&mut r);
    if first.starts_with("430") {
        return None;
    }
    assert!(first.starts_with("220"), "ARTICLE {id}: {first}");
    let mut text = String::new();
    loop {
        let l = reply(&mut r);
        if l == ".\r\n" || l.is_empty() {
            break;
        }
        text.push_str(&l);
    }
    let _ = w.write_all(b"QUIT\r\n");
    Some(text)
}

fn path_of(article: &str) -> String {
    article.lines().find_map(|l| l.strip_prefix("Path: ")).unwrap_or_default().to_string()
}

/// The sum of `accepted=` over the feeder's batch lines.
fn accepted_by_feed(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("news feed batch"))
        .filter_map(|l| l.split("accepted=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .sum()
}

#[test]
fn inn_postern_to_inn_once_with_both_in_path_and_not_back_to_a_peer_in_path() {
    let _ = inn(&["down"]);
    inn(&["up"]);
    let _inn = InnUp;
    let inn_host = inn(&["pathhost"]);
    let mut s = TestServer::start(&peer_config(&inn_host, &format!("127.0.0.1:{INN_PORT}"), "\"local.*\""));
    s.stop();
    let tag = std::process::id();
    let ours = format!("<to-inn.{tag}.{}@{HOST}>", postern::util::now_secs());
    let looped = format!("<loop-inn.{tag}.{}@{HOST}>", postern::util::now_secs());
    store_articles(
        &s,
        &[
            (looped.clone(), "local.test", format!("{inn_host}!{HOST}!not-for-mail")),
            (ours.clone(), "local.test", format!("{HOST}!not-for-mail")),
        ],
    );
    s.start_again();
    assert!(
        eventually(Duration::from_secs(60), || inn_article(&ours).is_some()),
        "INN never got the article; log:\n{}",
        s.log()
    );
    let art = inn_article(&ours).unwrap();
    let path = path_of(&art);
    assert!(path.starts_with(&format!("{inn_host}!{HOST}!")), "Path at INN: {path}");
    assert_eq!(inn_article(&looped), None, "an article whose Path names INN was fed to INN");
    s.stop();
    assert_eq!(accepted_by_feed(&s.log()), 1, "log:\n{}", s.log());
}

// ---- through Postern's own NNTP service ----

/// A raw NNTP client: one line per reply, dot-terminated blocks.
struct Nntp {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Nntp {
    fn connect(addr: SocketAddr) -> std::io::Result<Nntp> {
        let c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut n = Nntp { w: c.try_clone()?, r: BufReader::new(c) };
        let g = n.line()?;
        assert!(g.starts_with("20"), "greeting {g}");
        Ok(n)
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(l.trim_end().to_string())
    }

    fn cmd(&mut self, c: &str) -> std::io::Result<String> {
        self.w.write_all(format!("{c}\r\n").as_bytes())?;
        self.line()
    }

    /// An article as a dot-terminated block after `first` (POST's 340, ...).
    fn block(&mut self, article: &str) -> std::io::Result<String> {
        let mut out = String::new();
        for l in article.split("\r\n") {
            if l.starts_with('.') {
                out.push('.');
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str(".\r\n");
        self.w.write_all(out.as_bytes())?;
        self.line()
    }

    fn article(&mut self, id: &str) -> std::io::Result<Option<String>> {
        let r = self.cmd(&format!("ARTICLE {id}"))?;
        if r.starts_with("430") {
            return Ok(None);
        }
        assert!(r.starts_with("220"), "ARTICLE {id}: {r}");
        let mut text = String::new();
        loop {
            let l = self.line()?;
            if l == "." {
                return Ok(Some(text));
            }
            text.push_str(&l);
            text.push('\n');
        }
    }
}

fn news_article(id: &str, groups: &str, path: Option<&str>) -> String {
    let path = path.map(|p| format!("Path: {p}\r\n")).unwrap_or_default();
    format!(
        "{path}From: poster@example.test\r\nNewsgroups: {groups}\r\nSubject: test {id}\r\nMessage-ID: {id}\r\n\
         Date: {}\r\n\r\nbody of {id}\r\n",
        postern::util::rfc5322_date(postern::util::now_secs())
    )
}

fn news_config(peers: &str) -> String {
    config(
        "",
        &format!(
            "[[virtual_server]]\nname = \"news\"\nprotocol = \"nntp\"\nlisten = [\"127.0.0.1:0\"]\ntls = \"none\"\n\
             allow_anonymous_posting = true\n\n{peers}"
        ),
    )
}

#[test]
fn sigkill_while_articles_arrive_loses_nothing_acknowledged_and_feeds_it_once() {
    let rx = Receiver::start(true);
    let peers = format!(
        "[[news_peer]]\nname = \"feeder.test\"\naccept_from = [\"127.0.0.0/8\"]\ngroups = [\"*\"]\n\n\
         [[news_peer]]\nname = \"receiver.test\"\nfeed_to = \"{}\"\nfeed_tls = \"none\"\ngroups = [\"local.*\"]\n",
        rx.addr
    );
    let mut s = TestServer::start(&news_config(&peers));
    let out = s.cli(&["group", "add", "local.test"]);
    assert!(out.status.success(), "group add: {}", String::from_utf8_lossy(&out.stderr));
    let addr = s.addr("news");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let a = acked.clone();
    let tag = std::process::id();
    let sender = std::thread::spawn(move || {
        // one TAKETHIS at a time, so "acknowledged" is exact
        let mut n = Nntp::connect(addr).expect("connect");
        assert!(n.cmd("MODE STREAM").unwrap().starts_with("203"));
        for i in 0..100_000 {
            let id = format!("<arrive{i}.{tag}@feeder.test>");
            let art = news_article(&id, "local.test", Some("feeder.test!not-for-mail"));
            if n.w.write_all(format!("TAKETHIS {id}\r\n").as_bytes()).is_err() {
                return;
            }
            match n.block(&art) {
                Ok(r) if r.starts_with("239") => a.lock().unwrap().push(id),
                Ok(r) => panic!("TAKETHIS {id}: {r}"),
                Err(_) => return,
            }
        }
    });
    assert!(
        eventually(Duration::from_secs(60), || acked.lock().unwrap().len() >= 150),
        "articles are not arriving; log:\n{}",
        s.log()
    );
    s.kill9();
    sender.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    s.start_again();
    let mut n = Nntp::connect(s.addr("news")).unwrap();
    for id in &acked {
        assert!(n.article(id).unwrap().is_some(), "acknowledged article {id} is lost");
    }
    let all_fed = || {
        let got = rx.ids();
        acked.iter().all(|id| got.contains(id))
    };
    assert!(eventually(Duration::from_secs(90), all_fed), "not every acknowledged article was fed; log:\n{}", s.log());
    s.stop();
    let got = rx.ids();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for id in &got {
        *count.entry(id.as_str()).or_default() += 1;
    }
    let repeated = count.values().filter(|n| **n > 1).count();
    eprintln!("{} acknowledged before the kill; {} fed in all, {repeated} twice", acked.len(), count.len());
    assert!(count.values().all(|n| *n <= 2));
    assert!(repeated <= window(), "{repeated} articles fed twice; at most the {} in flight may be", window());
}

#[test]
fn inn_both_ways_once_with_both_in_path() {
    let _ = inn(&["down"]);
    let inn_host = {
        inn(&["up"]);
        inn(&["pathhost"])
    };
    let _inn = InnUp;
    let peers = format!(
        "[[news_peer]]\nname = \"{inn_host}\"\nfeed_to = \"127.0.0.1:{INN_PORT}\"\nfeed_tls = \"opportunistic\"\n\
         accept_from = [\"127.0.0.1\"]\ngroups = [\"local.*\"]\n"
    );
    let mut s = TestServer::start(&news_config(&peers));
    for g in ["local.test", "local.general"] {
        let out = s.cli(&["group", "add", g]);
        assert!(out.status.success(), "group add: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = s.addr("news").port().to_string();
    // INN feeds us as HOST (our Path identity), with innxmit
    inn(&["up", HOST, &port]);
    let t = format!("{}.{}", std::process::id(), postern::util::now_secs());

    // INN -> Postern: posted to INN's reader, pushed by INN's feed
    let from_inn = format!("<from-inn.{t}@inn.test>");
    {
        let mut c = Nntp::connect(SocketAddr::from(([127, 0, 0, 1], INN_PORT))).unwrap();
        assert!(c.cmd("MODE READER").unwrap().starts_with("20"));
        assert!(c.cmd("POST").unwrap().starts_with("340"));
        let r = c.block(&news_article(&from_inn, "local.test", None)).unwrap();
        assert!(r.starts_with("240"), "POST to INN: {r}");
    }
    // Postern -> INN: posted to Postern, pushed by our feeder
    let from_us = format!("<from-postern.{t}@{HOST}>");
    let mut p = Nntp::connect(s.addr("news")).unwrap();
    assert!(p.cmd("POST").unwrap().starts_with("340"));
    let r = p.block(&news_article(&from_us, "local.general", None)).unwrap();
    assert!(r.starts_with("240"), "POST to Postern: {r}");

    assert!(
        eventually(Duration::from_secs(60), || {
            inn(&["push", HOST, &port]);
            p.article(&from_inn).unwrap().is_some()
        }),
        "INN's article never reached Postern; log:\n{}",
        s.log()
    );
    assert!(
        eventually(Duration::from_secs(60), || inn_article(&from_us).is_some()),
        "Postern's article never reached INN; log:\n{}",
        s.log()
    );
    let here = p.article(&from_inn).unwrap().unwrap();
    assert!(path_of(&here).starts_with(&format!("{HOST}!{inn_host}!")), "Path here: {}", path_of(&here));
    let there = inn_article(&from_us).unwrap();
    assert!(path_of(&there).starts_with(&format!("{inn_host}!{HOST}!")), "Path at INN: {}", path_of(&there));

    // exactly once: INN has nothing more for us (its Path check), we sent one article
    inn(&["push", HOST, &port]);
    let over = p.cmd("GROUP local.test").unwrap();
    assert!(over.starts_with("211 1 "), "Postern's local.test: {over}");
    drop(p);
    s.stop();
    assert_eq!(accepted_by_feed(&s.log()), 1, "log:\n{}", s.log());
    let refused: usize =
        s.log().lines().filter(|l| l.contains("news feed batch")).filter(|l| !l.contains("refused=0")).count();
    assert_eq!(refused, 0, "a batch was refused: our feed offered INN its own article; log:\n{}", s.log());
}

#[test]
fn sigkill_during_pipelined_takethis_loses_nothing_acknowledged_and_shows_nothing_half() {
    // a peer that pipelines TAKETHIS as innfeed does: the server stores
    // them in runs (group commit), each reply only once its run is durable
    let peers = "[[news_peer]]\nname = \"feeder.test\"\naccept_from = [\"127.0.0.0/8\"]\ngroups = [\"*\"]\n";
    let mut s = TestServer::start(&news_config(peers));
    let out = s.cli(&["group", "add", "local.test"]);
    assert!(out.status.success(), "group add: {}", String::from_utf8_lossy(&out.stderr));
    let mut n = Nntp::connect(s.addr("news")).expect("connect");
    assert!(n.cmd("MODE STREAM").unwrap().starts_with("203"));
    let tag = std::process::id();
    let mut w = n.w.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..100_000 {
            let id = format!("<pipe{i}.{tag}@feeder.test>");
            let art = news_article(&id, "local.test", Some("feeder.test!not-for-mail"));
            // news_article has no line starting with a dot: no stuffing needed
            if w.write_all(format!("TAKETHIS {id}\r\n{art}.\r\n").as_bytes()).is_err() {
                return;
            }
        }
    });
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let a = acked.clone();
    let reader = std::thread::spawn(move || {
        while let Ok(l) = n.line() {
            match l.strip_prefix("239 ") {
                Some(id) => a.lock().unwrap().push(id.to_string()),
                None => panic!("TAKETHIS answered {l}"),
            }
        }
    });
    assert!(
        eventually(Duration::from_secs(60), || acked.lock().unwrap().len() >= 300),
        "articles are not arriving; log:\n{}",
        s.log()
    );
    s.kill9();
    writer.join().unwrap();
    reader.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    s.start_again();
    let mut n = Nntp::connect(s.addr("news")).unwrap();
    for id in &acked {
        assert!(n.article(id).unwrap().is_some(), "acknowledged article {id} is lost");
    }
    // whatever the group lists is there whole
    let g = n.cmd("LISTGROUP local.test").unwrap();
    assert!(g.starts_with("211"), "{g}");
    let mut numbers = Vec::new();
    loop {
        let l = n.line().unwrap();
        if l == "." {
            break;
        }
        numbers.push(l);
    }
    assert!(numbers.len() >= acked.len(), "{} listed, {} acknowledged", numbers.len(), acked.len());
    for num in &numbers {
        let r = n.cmd(&format!("ARTICLE {num}")).unwrap();
        assert!(r.starts_with("220"), "ARTICLE {num}: {r}");
        loop {
            if n.line().unwrap() == "." {
                break;
            }
        }
    }
    eprintln!("{} acknowledged before the kill, {} stored", acked.len(), numbers.len());
    s.stop();
}
