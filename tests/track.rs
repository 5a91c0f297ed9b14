//! Message tracking end to end: the real server on port 0 receives mail
//! over SMTP, delivers it locally and to a receiving SMTP server inside the
//! test, bounces what that server refuses, and lets the operator delete;
//! `postern track` then tells each message's history from the log, after
//! the message left the queue, for people and as JSON lines.

mod common;
#[path = "outbound/dns.rs"]
#[allow(dead_code)]
mod dns;
#[path = "outbound/sink.rs"]
#[allow(dead_code)]
mod sink;

use common::*;
use serde_json::Value;
use sink::{Sink, SinkConfig, Sinks};
use std::process::Output;
use std::time::Duration;

/// A relay (127.0.0.0/8 may relay) whose one connector takes every remote
/// domain to `sink`; example.test is local.
fn relay(sink: &Sink, queue: &str) -> TestServer {
    let out = format!(
        "[[connector]]\nname = \"out\"\naddress_spaces = [\"*\"]\nsmarthost = \"127.0.0.1:{}\"\ntls = \"opportunistic\"\n",
        sink.port()
    );
    let conf = config("relay_networks = [\"127.0.0.0/8\"]", &format!("{out}\n[queue]\n{queue}\n"))
        .replace("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n", "");
    TestServer::start(&conf)
}

fn send(s: &TestServer, tls: bool, from: &str, to: &[&str], subject: &str) -> String {
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    if tls {
        c.starttls();
    } else {
        c.expect("EHLO client.test", 250);
    }
    let id = queued_id(&c.send_mail(from, to, &format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n")));
    c.cmd("QUIT");
    id
}

fn wait(what: &str, f: impl FnMut() -> bool) {
    assert!(eventually(Duration::from_secs(20), f), "timed out waiting: {what}");
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `track ARGS --json`, parsed; every line must be one JSON object.
fn track_json(s: &TestServer, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["track"];
    all.extend(args);
    all.push("--json");
    let out = s.cli(&all);
    assert!(out.status.success(), "track {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    text(&out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn events_of<'a>(events: &'a [Value], id: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["id"] == id).collect()
}

fn names(events: &[&Value]) -> Vec<String> {
    events.iter().map(|e| e["event"].as_str().unwrap_or("?").to_string()).collect()
}

#[test]
fn local_and_relayed_deliveries_are_told_after_they_left_the_queue() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]));
    let s = relay(&sink, "");
    s.add_user("bob@example.test", "pw");
    let local = send(&s, false, "alice@origin.test", &["bob@example.test"], "local");
    let relayed = send(&s, true, "Alice@Origin.test", &["carol@dest.test"], "relayed");
    wait("both delivered and gone", || s.queue().is_empty() && sink.messages().len() == 1);

    let ev = track_json(&s, &[&local]);
    assert_eq!(names(&events_of(&ev, &local)), ["received", "delivered", "removed"], "{ev:#?}");
    let received = &ev[0];
    assert_eq!(received["from"], "alice@origin.test");
    assert_eq!(received["recipients"], serde_json::json!(["bob@example.test"]));
    assert_eq!(received["client_ip"], "127.0.0.1");
    assert_eq!(received["helo"], "client.test");
    assert_eq!(received["server"], "mx");
    assert_eq!(received["tls"], "none");
    assert!(received["size"].as_u64().unwrap() > 20, "{received}");
    assert!(received["time"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC: {received}");
    let delivered = &ev[1];
    assert_eq!(delivered["rcpt"], "bob@example.test");
    assert_eq!(delivered["connector"], "local");
    assert_eq!(delivered["mailbox"], "INBOX");
    assert_eq!(delivered["code"], 250);
    assert_eq!(delivered["attempt"], 1);

    let ev = track_json(&s, &[&relayed]);
    assert_eq!(names(&events_of(&ev, &relayed)), ["received", "delivered", "removed"], "{ev:#?}");
    assert_eq!(ev[0]["tls"], "unverified");
    assert_eq!(ev[0]["tls_version"], "TLSv1.3");
    assert!(ev[0]["tls_cipher"].as_str().unwrap().starts_with("TLS_"), "{}", ev[0]);
    let d = &ev[1];
    assert_eq!(d["rcpt"], "carol@dest.test");
    assert_eq!(d["connector"], "out");
    assert_eq!(d["destination"], format!("out/127.0.0.1:{}", sink.port()));
    assert_eq!(d["host"], "127.0.0.1");
    assert_eq!(d["remote_ip"], "127.0.0.1");
    assert_eq!(d["code"], 250);
    assert_eq!(d["tls"], "unverified", "the sink's self-signed certificate: {d}");
    assert_eq!(d["tls_version"], "TLSv1.3");

    // for people: a heading, then one aligned line per event
    let out = s.cli(&["track", &relayed]);
    assert!(out.status.success(), "{out:?}");
    let shown = text(&out);
    let lines: Vec<&str> = shown.lines().collect();
    // the domain is kept in its canonical (lower-case) form, the local part as sent
    assert_eq!(lines[0], format!("{relayed} from <Alice@origin.test>"), "{shown}");
    assert!(lines[1].contains("received") && lines[1].contains("client 127.0.0.1"), "{shown}");
    assert!(lines[2].contains("delivered  carol@dest.test via out/127.0.0.1:"), "{shown}");
    assert!(lines[2].contains("TLS unverified TLSv1.3"), "{shown}");
    assert_eq!(lines[1].find("from <"), lines[2].find("carol@dest.test"), "aligned:\n{shown}");

    // by sender and by recipient, in any case
    let by_sender = track_json(&s, &["--sender", "ALICE@origin.TEST"]);
    let mut ids: Vec<&str> = by_sender.iter().filter_map(|e| e["id"].as_str()).collect();
    ids.dedup();
    assert_eq!(ids, [local.as_str(), relayed.as_str()]);
    let by_rcpt = track_json(&s, &["--recipient", "Carol@Dest.Test", "--since", "1h"]);
    assert!(by_rcpt.iter().all(|e| e["id"] == relayed.as_str()) && !by_rcpt.is_empty(), "{by_rcpt:#?}");
}

#[test]
fn a_bounce_names_its_ndr_and_the_ndr_has_its_own_history() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]).rcpt_reply("gone@dest.test", "550 5.1.1 no such user"));
    let s = relay(&sink, "");
    let id = send(&s, false, "sender@origin.test", &["gone@dest.test"], "bounce");
    wait("NDR delivered and all gone", || {
        s.queue().is_empty() && sink.messages().iter().any(|m| m.mail.starts_with("<>"))
    });

    let ev = track_json(&s, &[&id]);
    let mine = events_of(&ev, &id);
    assert_eq!(names(&mine), ["received", "failed", "bounced", "removed"], "{ev:#?}");
    assert_eq!(mine[1]["code"], 550);
    assert_eq!(mine[1]["enhanced"], "5.1.1");
    assert!(mine[1]["text"].as_str().unwrap().contains("no such user"), "{}", mine[1]);
    assert_eq!(mine[1]["stage"], "rcpt");
    let ndr = mine[2]["report"].as_str().expect("the NDR's id").to_string();
    assert_eq!(mine[2]["to"], "sender@origin.test");
    assert_eq!(mine[2]["recipients"], serde_json::json!(["gone@dest.test"]));
    // the id query brings the NDR's own history: created for this message, then delivered
    let theirs = events_of(&ev, &ndr);
    assert_eq!(names(&theirs), ["created", "delivered", "removed"], "{ev:#?}");
    assert_eq!(theirs[0]["report_for"], id.as_str());
    assert_eq!(theirs[0]["report_kind"], "failure");
    assert_eq!(theirs[0]["from"], "");
    assert_eq!(theirs[1]["rcpt"], "sender@origin.test");

    let shown = text(&s.cli(&["track", &id.to_lowercase()]));
    assert!(shown.contains(&format!("report {ndr} to <sender@origin.test>")), "{shown}");
    assert!(shown.contains(&format!("{ndr} failure report about {id}")), "{shown}");
    // the NDR is found as mail from <>
    let null = track_json(&s, &["--sender", "<>"]);
    assert!(null.iter().any(|e| e["id"] == ndr.as_str()), "{null:#?}");
}

#[test]
fn an_operator_delete_is_recorded_and_queue_show_points_to_track() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]).rcpt_reply("busy@dest.test", "451 4.2.0 mailbox busy"));
    let s = relay(&sink, "retry_schedule = [\"1h\"]");
    let id = send(&s, false, "sender@origin.test", &["busy@dest.test"], "held");
    wait("one attempt", || s.queue().first().is_some_and(|m| m["recipients"][0]["attempts"] == 1));
    assert!(s.cli(&["queue", "freeze", &id]).status.success());
    let out = s.cli(&["queue", "delete", &id]);
    assert!(out.status.success(), "{out:?}");
    assert!(s.queue().is_empty());

    let ev = track_json(&s, &[&id]);
    assert_eq!(names(&events_of(&ev, &id)), ["received", "deferred", "frozen", "deleted", "removed"], "{ev:#?}");
    let deferred = &ev[1];
    assert_eq!(deferred["code"], 451);
    assert_eq!(deferred["enhanced"], "4.2.0");
    assert!(deferred["next_attempt"].as_str().is_some_and(|t| t.ends_with('Z')), "{deferred}");
    assert_eq!(ev[3]["ndr"], false);
    assert_eq!(ev[3]["recipients"], serde_json::json!(["busy@dest.test"]));
    let shown = text(&s.cli(&["track", &id]));
    assert!(shown.contains("deleted") && shown.contains("by the operator, silently"), "{shown}");

    let out = s.cli(&["queue", "show", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("postern track {id}")), "{out:?}");
}

#[test]
fn tls_facts_of_a_refused_policy_and_of_an_unreachable_host_are_recorded() {
    let sinks = Sinks::new();
    let plain = sinks.start(SinkConfig::new(&["plain.test"]).starttls(sink::StartTls::NotOffered));
    // a port nothing listens on: bound, then closed
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = config(
        "relay_networks = [\"127.0.0.0/8\"]",
        &format!(
            "[[connector]]\nname = \"req\"\naddress_spaces = [\"req.test\"]\nsmarthost = \"127.0.0.1:{}\"\n\
             tls = \"required\"\n\n[[connector]]\nname = \"gone\"\naddress_spaces = [\"gone.test\"]\n\
             smarthost = \"127.0.0.1:{closed}\"\n\n[queue]\nretry_schedule = [\"1h\"]\n",
            plain.port()
        ),
    );
    let s = TestServer::start(&conf);
    let req = send(&s, false, "sender@origin.test", &["x@req.test"], "req");
    let gone = send(&s, false, "sender@origin.test", &["y@gone.test"], "gone");
    let deferred = |id: &str| {
        let ev = track_json(&s, &[id]);
        ev.into_iter().find(|e| e["event"] == "deferred")
    };
    wait("both deferred", || deferred(&req).is_some() && deferred(&gone).is_some());
    // TLS required, not offered: a connection was made, in plaintext
    let e = deferred(&req).unwrap();
    assert_eq!(e["stage"], "tls", "{e}");
    assert_eq!(e["tls"], "none", "{e}");
    assert_eq!(e["tls_note"], "STARTTLS not offered", "{e}");
    assert_eq!(e["remote_ip"], "127.0.0.1", "{e}");
    // nothing listening: no connection, so no TLS facts at all
    let e = deferred(&gone).unwrap();
    assert_eq!(e["stage"], "connect", "{e}");
    assert!(e.get("tls").is_none(), "{e}");
    assert_eq!(e["remote_ip"], "127.0.0.1", "{e}");
}

/// A configuration for the CLI alone: no server is started.
fn offline(data_dir: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let conf = config("", "").replace("data_dir = \"data\"", &format!("data_dir = \"{data_dir}\""));
    let path = dir.path().join("postern.toml");
    std::fs::write(&path, conf).unwrap();
    (dir, path)
}

fn cli(dir: &tempfile::TempDir, config: &std::path::Path, args: &[&str]) -> Output {
    cli_in(dir.path(), config, args, None)
}

#[test]
fn since_filters_and_reading_needs_no_server() {
    let (dir, config) = offline("data");
    let logs = dir.path().join("data/track");
    std::fs::create_dir_all(&logs).unwrap();
    let now = std::time::SystemTime::now();
    let day = |ago: u64| {
        let t = now - Duration::from_secs(ago * 86_400);
        (humantime::format_rfc3339_seconds(t).to_string(), humantime::format_rfc3339_millis(t).to_string())
    };
    let (old_day, old_time) = day(5);
    let (new_day, new_time) = day(0);
    let line = |time: &str, id: &str, event: &str| {
        format!(
            r#"{{"time":"{time}","id":"{id}","event":"{event}","from":"old@origin.test","recipients":["x@dest.test"]}}"#
        )
    };
    std::fs::write(logs.join(format!("{}.jsonl", &old_day[..10])), line(&old_time, "OLD1", "received") + "\n").unwrap();
    std::fs::write(logs.join(format!("{}.jsonl", &new_day[..10])), line(&new_time, "NEW1", "received") + "\n").unwrap();

    let all = cli(&dir, &config, &["track", "--sender", "old@origin.test", "--json"]);
    assert!(all.status.success(), "{all:?}");
    assert_eq!(text(&all).lines().count(), 2, "{}", text(&all));
    let recent = cli(&dir, &config, &["track", "--recipient", "X@dest.test", "--since", "2d", "--json"]);
    let ids: Vec<Value> =
        text(&recent).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone()).collect();
    assert_eq!(ids, ["NEW1"]);
    // nothing matches: one sentence, exit 1
    let none = cli(&dir, &config, &["track", "OLD1", "--since", "2d"]);
    assert_eq!(none.status.code(), Some(1), "{none:?}");
    assert!(String::from_utf8_lossy(&none.stderr).contains("no message OLD1 in the tracking log"), "{none:?}");
    // usage errors are 2
    for args in [&["track"][..], &["track", "A1", "--sender", "a@b.test"], &["track", "A1", "--since", "soon"]] {
        assert_eq!(cli(&dir, &config, args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_missing_data_dir_is_named_and_nothing_is_created() {
    let (dir, config) = offline("nowhere");
    let out = cli(&dir, &config, &["track", "ABC123"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere") && err.lines().count() == 1, "{err}");
    // a data directory without a log yet: the log's path is named
    std::fs::create_dir(dir.path().join("nowhere")).unwrap();
    let out = cli(&dir, &config, &["track", "--sender", "a@b.test"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere/track"), "{out:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 2, "only the config and the directory made above: {left:?}");
    assert!(std::fs::read_dir(dir.path().join("nowhere")).unwrap().next().is_none(), "nothing created inside");
    // check-config shows where the log is and how long it is kept
    let shown = text(&cli(&dir, &config, &["check-config"]));
    assert!(shown.contains("tracking log:") && shown.contains("nowhere/track (kept 30days)"), "{shown}");
}
