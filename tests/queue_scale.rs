//! Issue 13, the queue at scale, for real: the server binary takes mail
//! over SMTP that is delivered locally, relayed to a receiving SMTP server
//! inside the test (taken, refused with 550, deferred with 451), deferred
//! to a smarthost nobody listens on, frozen, thawed and deleted; `queue
//! summary` (read from the aggregates the store keeps) must equal a walk
//! over `queue list --json` throughout and after a SIGKILL and restart.
//! And `queue list --json` streams: a message sent after the CLI printed
//! its first line is still in the listing, so the server had not read the
//! queue to the end when that line came out.

#[path = "common/mod.rs"]
mod common;
#[path = "outbound/sink.rs"]
#[allow(dead_code)]
mod sink;

use common::*;
use postern::control::views::{MessageView, SummaryRow};
use sink::{SinkConfig, Sinks};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A port on 127.0.0.1 that nobody listens on (bound, then let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn send(s: &TestServer, to: &[&str], subject: &str) -> String {
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let id = queued_id(&c.send_mail("alice@example.test", to, &format!("Subject: {subject}\r\n\r\nbody\r\n")));
    c.cmd("QUIT");
    id
}

fn json_lines(out: &std::process::Output, what: &str) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// `per` messages of 1 KB from each of four sessions at once (so that the
/// server's group commit keeps the fill short), one recipient each,
/// `{tag}{session}-{i}@dead.test`; the queue ids, in no particular order.
fn fill(addr: std::net::SocketAddr, per: usize, tag: &str) -> Vec<String> {
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let tag = tag.to_string();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.reply();
                c.expect("EHLO client.test", 250);
                let body = format!("Subject: fill\r\n\r\n{}\r\n", "x".repeat(1000));
                let ids: Vec<String> = (0..per)
                    .map(|i| {
                        queued_id(&c.send_mail("alice@example.test", &[&format!("{tag}{t}-{i}@dead.test")], &body))
                    })
                    .collect();
                c.cmd("QUIT");
                ids
            })
        })
        .collect();
    senders.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

/// A relay whose `dead.test` goes to a port nobody listens on (retried in
/// an hour) and, with `sink`, whose `dest.test` goes to that sink.
fn relay_conf(server: &str, dead: u16, sink: Option<u16>) -> String {
    let out = sink
        .map(|p| {
            format!(
                "[[connector]]\nname = \"out\"\naddress_spaces = [\"dest.test\"]\nsmarthost = \"127.0.0.1:{p}\"\n\n"
            )
        })
        .unwrap_or_default();
    let extra = format!(
        "{out}[[connector]]\nname = \"dead\"\naddress_spaces = [\"dead.test\"]\nsmarthost = \"127.0.0.1:{dead}\"\n\n[queue]\nretry_schedule = [\"1h\"]\n"
    );
    config(server, &extra).replace("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n", "")
}

fn list(s: &TestServer) -> Vec<MessageView> {
    json_lines(&s.cli(&["queue", "list", "--json"]), "queue list")
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a message view"))
        .collect()
}

fn summary(s: &TestServer) -> Vec<serde_json::Value> {
    json_lines(&s.cli(&["queue", "summary", "--json"]), "queue summary")
}

/// What `queue summary` must say, worked out here from the listing, one
/// message at a time (SPEC §5: per destination the messages and
/// recipients still queued, the oldest arrival, the next attempt of those
/// not frozen, the newest error's category).
fn walk(messages: &[MessageView]) -> Vec<serde_json::Value> {
    #[derive(Default)]
    struct Row {
        count: usize,
        recipients: usize,
        oldest: Option<String>,
        next: Option<String>,
        last: Option<(u64, String)>,
        frozen: usize,
    }
    let mut by: BTreeMap<String, Row> = BTreeMap::new();
    for m in messages {
        let mut seen: Vec<&str> = Vec::new();
        for r in m.recipients.iter().filter(|r| r.state == "queued") {
            let row = by.entry(r.destination.clone()).or_default();
            row.recipients += 1;
            if !seen.contains(&r.destination.as_str()) {
                seen.push(&r.destination);
                row.count += 1;
                row.frozen += m.frozen as usize;
            }
            if row.oldest.as_ref().is_none_or(|o| m.arrived < *o) {
                row.oldest = Some(m.arrived.clone());
            }
            if !m.frozen {
                // null: due now, which sorts before any time
                let due = r.next_attempt.clone().unwrap_or_default();
                if row.next.as_ref().is_none_or(|n| due < *n) {
                    row.next = Some(due);
                }
            }
            if let Some(e) = &r.last_result {
                let this = (e.at, e.category());
                if row.last.as_ref().is_none_or(|l| this >= *l) {
                    row.last = Some(this);
                }
            }
        }
    }
    by.into_iter()
        .map(|(destination, r)| {
            serde_json::to_value(SummaryRow {
                destination,
                count: r.count,
                recipients: r.recipients,
                oldest: r.oldest.unwrap_or_default(),
                next_attempt: r.next.map(|n| if n.is_empty() { "now".into() } else { n }),
                last_error: r.last.map(|(_, c)| c),
                frozen: r.frozen,
            })
            .unwrap()
        })
        .collect()
}

/// Once nothing moves (every queued recipient waits for a later attempt or
/// is frozen, and two listings agree), the summary equals the walk.
fn assert_summary_is_exact(s: &TestServer, when: &str) {
    let mut last = None;
    let settled = eventually(Duration::from_secs(60), || {
        let before = list(s);
        let sum = summary(s);
        let after = list(s);
        let quiet = after
            .iter()
            .all(|m| m.frozen || m.recipients.iter().filter(|r| r.state == "queued").all(|r| r.next_attempt.is_some()));
        let same = serde_json::to_value(&before).unwrap() == serde_json::to_value(&after).unwrap();
        last = Some((sum, after));
        quiet && same
    });
    let (sum, messages) = last.unwrap();
    assert!(settled, "{when}: the queue did not settle; log:\n{}", s.log());
    assert!(!sum.is_empty(), "{when}: something is queued");
    assert_eq!(sum, walk(&messages), "{when}: the summary differs from a walk over the listing");
}

#[test]
fn summary_aggregates_stay_exact_through_every_change_and_a_sigkill() {
    let sinks = Sinks::new();
    let sink = sinks.start(
        SinkConfig::new(&["sink.test"])
            .rcpt_reply("gone@dest.test", "550 5.1.1 no such user")
            .rcpt_reply("later@dest.test", "451 4.3.0 try again later"),
    );
    let dead = dead_port();
    let conf = relay_conf("relay_networks = [\"127.0.0.0/8\"]", dead, Some(sink.port()));
    let mut s = TestServer::start(&conf);
    s.add_user("alice@example.test", "pw-alice");

    // every mix of delivered (local, relayed), bounced (550: an NDR to
    // alice), deferred (451, connection refused) in one message or apart
    let shapes: &[&[&str]] = &[
        &["a@dead.test"],
        &["a@dead.test", "b@dead.test", "later@dest.test"],
        &["x@dest.test", "gone@dest.test", "later@dest.test"],
        &["alice@example.test", "a@dead.test"],
        &["later@dest.test"],
        &["x@dest.test", "alice@example.test"],
        &["gone@dest.test", "c@dead.test"],
    ];
    let mut ids = Vec::new();
    for i in 0..28 {
        ids.push(send(&s, shapes[i % shapes.len()], &format!("message {i}")));
    }
    assert_summary_is_exact(&s, "after deliveries, bounces and deferrals");

    // operator changes: freeze some, thaw one, delete two
    let queued: Vec<String> = list(&s).into_iter().map(|m| m.id).collect();
    assert!(queued.len() >= 12, "{queued:?}");
    for id in &queued[..5] {
        assert!(s.cli(&["queue", "freeze", id]).status.success());
    }
    assert!(s.cli(&["queue", "thaw", &queued[2]]).status.success());
    for id in &queued[6..8] {
        assert!(s.cli(&["queue", "delete", id]).status.success());
    }
    // a deferred message tried again at once
    assert!(s.cli(&["queue", "retry", &queued[9]]).status.success());
    assert_summary_is_exact(&s, "after freezes, a thaw, deletes and a retry");

    s.kill9();
    s.start_again();
    assert_summary_is_exact(&s, "after SIGKILL and a restart");
    // and new mail counts in at once
    send(&s, &["z@dead.test", "later@dest.test"], "after the restart");
    assert_summary_is_exact(&s, "after new mail following the restart");
}

#[test]
fn queue_list_streams_from_the_server_to_the_terminal() {
    let dead = dead_port();
    let conf = relay_conf("relay_networks = [\"127.0.0.0/8\"]\nmax_recipients = 200", dead, None);
    let s = TestServer::start(&conf);
    // each listed message is a long line (100 recipients), and there are
    // far more lines than the pipes and the socket between server, CLI and
    // this test can hold
    let rcpts: Vec<String> = (0..100).map(|i| format!("recipient-number-{i:03}@dead.test")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let mut ids = Vec::new();
    for i in 0..250 {
        ids.push(queued_id(&c.send_mail("alice@example.test", &rcpts, &format!("Subject: {i}\r\n\r\nbody\r\n"))));
    }
    c.cmd("QUIT");
    // every first attempt made (refused), so nothing moves while listing
    let settled = eventually(Duration::from_secs(120), || {
        let q = list(&s);
        q.len() == ids.len() && q.iter().all(|m| m.recipients[0].attempts == 1)
    });
    assert!(settled, "the first attempts did not all fail; log:\n{}", s.log());

    let mut cli = Command::new(BIN)
        .args(["--config", s.config_path.to_str().unwrap(), "queue", "list", "--json"])
        .current_dir(s.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    let mut out = BufReader::new(cli.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let first: MessageView = serde_json::from_str(&first).expect("the first line is a message");
    assert_eq!(first.id, ids[0]);
    // the listing is under way and held back by us: a message queued now
    // comes after every other, and shows up only if the server has not
    // read the queue to its end yet
    let late = send(&s, &["late@dead.test"], "late");
    let rest: Vec<MessageView> =
        out.lines().map(|l| serde_json::from_str(&l.unwrap()).expect("a message per line")).collect();
    let status = cli.wait().unwrap();
    assert!(status.success(), "queue list failed");
    let listed: Vec<&str> = std::iter::once(first.id.as_str()).chain(rest.iter().map(|m| m.id.as_str())).collect();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.push(&late);
    assert_eq!(listed, expected, "every message once, in arrival order, the late one last");
    assert_eq!(rest.last().unwrap().recipients[0].address, "late@dead.test");
}

/// Issue 13: the server listens before the queue on disk is reconciled.
/// A few thousand messages deferred to a dead smarthost, written by the
/// server itself, some already tried (their state in the index) and some
/// not (only in the spool) when the server is killed; right after the
/// restart new mail is accepted, and once the queue is reconciled every
/// message acknowledged before the kill is there beside the new ones.
#[test]
fn mail_arriving_during_background_recovery_is_accepted_and_nothing_acknowledged_is_lost() {
    let dead = dead_port();
    let conf = relay_conf("relay_networks = [\"127.0.0.0/8\"]", dead, None);
    let mut s = TestServer::start(&conf);
    let addr = s.addr("mx");
    let mut before = fill(addr, 750, "r");
    s.kill9();

    s.start_again();
    // at once: the restart does not wait for the reconciliation to accept
    let mut after = Vec::new();
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    for i in 0..20 {
        let r = c.send_mail("alice@example.test", &[&format!("new{i}@dead.test")], "Subject: new\r\n\r\nnew\r\n");
        assert_eq!(r.code, 250, "new mail after the restart: {}; log:\n{}", r.text(), s.log());
        after.push(queued_id(&r));
    }
    c.cmd("QUIT");
    let log = s.log();
    assert!(
        log.contains("queue open for new mail; reconciling the spool with the index in the background"),
        "the restart took the background path; log:\n{log}"
    );

    // `queue list` answers once the reconciliation is done: all of it
    let listed = list(&s);
    before.append(&mut after);
    before.sort();
    let ids: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, before, "every message acknowledged before the kill, and the new ones, each once");
    assert!(listed.iter().all(|m| m.recipients.len() == 1 && m.recipients[0].state == "queued"));
    // the table form lists them too, one line each in order (its columns
    // are sized on the first rows, the rest printed as they come)
    let out = s.cli(&["queue", "list"]);
    assert!(out.status.success(), "queue list: {}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID "), "{}", lines[0]);
    let table_ids: Vec<&str> = lines[1..].iter().map(|l| l.split(' ').next().unwrap_or("")).collect();
    assert_eq!(table_ids, ids, "the table lists every message once, in order");
    // and the summary counts every one of them
    let sum = summary(&s);
    assert_eq!(sum.len(), 1, "{sum:?}");
    assert_eq!(sum[0]["count"], serde_json::json!(before.len()), "{sum:?}");
    assert!(
        eventually(Duration::from_secs(60), || s.log().contains("queue manager started")),
        "the queue manager starts once the queue is reconciled; log:\n{}",
        s.log()
    );
}

/// Bytes of the files under `dir`.
fn du(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| if e.file_type().unwrap().is_dir() { du(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Issue 13: a drained queue gives its disk back. Messages deferred to a
/// dead smarthost grow the queue's index well past the size at which an
/// emptied one is replaced; `queue delete --all` drains the queue; the
/// index moves to a fresh database and the old one is removed, so the
/// queue's directory is back near its empty size (compared with its size
/// while full); after a restart the queue is empty and new mail is kept.
#[test]
fn a_drained_queue_gives_its_index_disk_back() {
    let dead = dead_port();
    let conf = relay_conf("relay_networks = [\"127.0.0.0/8\"]", dead, None);
    let mut s = TestServer::start(&conf);
    let qdir = s.path().join("data").join("queue");
    let addr = s.addr("mx");
    let mut sent = 0;
    while du(&qdir) <= 2 * postern::queue::index::RESET_ABOVE {
        assert!(sent < 20_000, "the index does not grow: {} bytes; log:\n{}", du(&qdir), s.log());
        fill(addr, 250, &format!("r{sent}-"));
        sent += 1000;
        // every message tried once (refused): its state is in the index
        let deferred = eventually(Duration::from_secs(120), || {
            let q = list(&s);
            q.len() == sent && q.iter().all(|m| m.recipients[0].attempts == 1)
        });
        assert!(deferred, "the first attempts did not all fail; log:\n{}", s.log());
        // sled writes its buffers every half second
        std::thread::sleep(Duration::from_secs(1));
    }
    let full = du(&qdir);
    assert_eq!(names(&qdir), ["current", "index.1"]);

    let out = s.cli(&["queue", "delete", "--all"]);
    assert!(out.status.success(), "queue delete: {}", String::from_utf8_lossy(&out.stderr));
    let replaced = eventually(Duration::from_secs(60), || names(&qdir) == ["current", "index.2"]);
    assert!(replaced, "the drained index was not replaced: {:?}; log:\n{}", names(&qdir), s.log());
    assert!(list(&s).is_empty());
    let left = du(&qdir);
    assert!(left * 20 < full, "{left} bytes left of {full}");
    assert!(s.log().contains("the empty queue index was replaced by a fresh one"), "{}", s.log());

    s.stop();
    s.start_again();
    assert!(list(&s).is_empty(), "the queue is empty after the restart");
    let id = send(&s, &["after@dead.test"], "after the drain");
    let kept = eventually(Duration::from_secs(60), || {
        let q = list(&s);
        q.len() == 1 && q[0].id == id && q[0].recipients[0].attempts == 1
    });
    assert!(kept, "new mail after the drain is queued (and deferred); log:\n{}", s.log());
    assert_eq!(names(&qdir), ["current", "index.2"]);
}

/// Issue 13: mail that arrives while the queue on disk is still being
/// reconciled after a restart is delivered at once, not after the
/// reconciliation. The server is restarted with two thousand messages
/// deferred to a dead smarthost; the `POSTERN_RECONCILE_GATE` test seam
/// holds the reconciliation until the new mail has reached the receiving
/// server, so the order is certain, not a matter of timing. Once the
/// reconciliation ends, every message deferred before the restart is
/// listed once, still waiting for its next attempt.
#[test]
fn new_mail_is_delivered_while_the_queue_is_reconciled_in_the_background() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]));
    let dead = dead_port();
    let conf = relay_conf("relay_networks = [\"127.0.0.0/8\"]", dead, Some(sink.port()));
    let gates = tempfile::tempdir().expect("tempdir");
    let gate = gates.path().join("open");
    std::fs::write(&gate, "").unwrap();
    let seam = format!("POSTERN_RECONCILE_GATE={}", gate.display());
    // `env` (coreutils) execs the server with the seam set, at every start
    let mut s = TestServer::start_under(&conf, &["env", &seam]);
    let addr = s.addr("mx");
    let mut old = fill(addr, 500, "r");
    old.sort();
    let settled = eventually(Duration::from_secs(120), || {
        let q = list(&s);
        q.len() == old.len() && q.iter().all(|m| m.recipients[0].attempts == 1)
    });
    assert!(settled, "the first attempts did not all fail; log:\n{}", s.log());
    s.kill9();

    std::fs::remove_file(&gate).unwrap();
    s.start_again();
    let restarted = || std::fs::read_to_string(s.path().join("server-2.log")).unwrap_or_default();
    send(&s, &["new@dest.test"], "during the reconciliation");
    let delivered = eventually(Duration::from_secs(60), || {
        sink.messages().iter().any(|m| m.rcpts.iter().any(|r| r.contains("new@dest.test")))
    });
    assert!(delivered, "the new mail was not delivered; log:\n{}", restarted());
    let log = restarted();
    assert!(log.contains("POSTERN_RECONCILE_GATE is set"), "the seam holds the reconciliation; log:\n{log}");
    assert!(!log.contains("queue manager started"), "delivered before the older queue joined; log:\n{log}");

    std::fs::write(&gate, "").unwrap();
    assert!(
        eventually(Duration::from_secs(60), || restarted().contains("queue manager started")),
        "the reconciliation ended and the older messages joined; log:\n{}",
        restarted()
    );
    let listed = list(&s);
    let ids: Vec<String> = listed.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, old, "every message deferred before the restart, each once (the new one is delivered)");
    assert!(listed.iter().all(|m| m.recipients[0].state == "queued" && m.recipients[0].next_attempt.is_some()));
    let sum = summary(&s);
    assert_eq!(sum.len(), 1, "{sum:?}");
    assert_eq!(sum[0]["count"], serde_json::json!(old.len()), "{sum:?}");
    assert_eq!(sink.messages().len(), 1, "only the new mail went to the receiving server");
}
