//! The queue delivering for real: the server binary relays through
//! connectors to receiving SMTP servers inside the test (real listeners,
//! real rustls), and the queue shows what happened — TLS policies, retries,
//! NDRs and expiry, crash safety, and the queue commands.

#[path = "../common/mod.rs"]
mod common;
#[path = "../outbound/dns.rs"]
#[allow(dead_code)]
mod dns;
mod mx;
#[path = "../outbound/sink.rs"]
#[allow(dead_code)]
mod sink;

use common::*;
use sink::{Sink, SinkConfig, Sinks, StartTls};
use std::time::Duration;

/// A relay (127.0.0.0/8 may relay) whose connectors are `connectors`,
/// with `queue` settings; senders at origin.test are routed to `back`.
fn relay(connectors: &str, queue: &str) -> TestServer {
    let conf = config("relay_networks = [\"127.0.0.0/8\"]", &format!("{connectors}\n[queue]\n{queue}\n"))
        // the base config's catch-all would compete with the test's own connectors
        .replace("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n", "");
    TestServer::start(&conf)
}

fn connector(name: &str, space: &str, port: u16, tls: &str) -> String {
    format!("[[connector]]\nname = \"{name}\"\naddress_spaces = [\"{space}\"]\nsmarthost = \"127.0.0.1:{port}\"\ntls = \"{tls}\"\n")
}

fn send(s: &TestServer, from: &str, to: &[&str], subject: &str) -> String {
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let id = queued_id(&c.send_mail(
        from,
        to,
        &format!("Subject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\r\nbody of {subject}\r\n"),
    ));
    c.cmd("QUIT");
    id
}

fn summary(s: &TestServer) -> Vec<serde_json::Value> {
    let out = s.cli(&["queue", "summary", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn message(s: &TestServer, id: &str) -> Option<serde_json::Value> {
    s.queue().into_iter().find(|m| m["id"] == id)
}

fn wait(what: &str, f: impl FnMut() -> bool) {
    assert!(eventually(Duration::from_secs(20), f), "timed out waiting: {what}");
}

#[test]
fn starttls_offered_is_used_and_recorded() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]));
    let s = relay(&connector("out", "*", sink.port(), "opportunistic"), "");
    let id = send(&s, "sender@origin.test", &["x@dest.test"], "tls");
    wait("delivery", || sink.messages().len() == 1);
    let m = &sink.messages()[0];
    assert_eq!(m.tls.as_deref(), Some("TLSv1.3"));
    assert!(String::from_utf8_lossy(&m.body).contains(&format!("id {id}")), "our Received header travels");
    wait("queue empty", || s.queue().is_empty());
    let log = s.log();
    assert!(log.contains("delivered") && log.contains("tls=TLSv1.3"), "{log}");
}

#[test]
fn no_starttls_opportunistic_plaintext_required_waits() {
    let sinks = Sinks::new();
    let plain = sinks.start(SinkConfig::new(&["plain.test"]).starttls(StartTls::NotOffered));
    let conf = connector("opp", "opp.test", plain.port(), "opportunistic")
        + &connector("req", "req.test", plain.port(), "required");
    let s = relay(&conf, "retry_schedule = [\"1h\"]");
    send(&s, "sender@origin.test", &["x@opp.test"], "opp");
    let held = send(&s, "sender@origin.test", &["x@req.test"], "req");
    wait("opportunistic delivery", || sink_has(&plain, "x@opp.test"));
    assert_eq!(plain.messages()[0].tls, None, "plaintext");
    wait("required deferred", || message(&s, &held).is_some_and(|m| m["recipients"][0]["attempts"] == 1));
    assert!(!sink_has(&plain, "x@req.test"));
    let m = message(&s, &held).unwrap();
    assert_eq!(m["recipients"][0]["state"], "queued");
    let rows = summary(&s);
    let row = rows.iter().find(|r| r["destination"] == format!("req/127.0.0.1:{}", plain.port())).unwrap();
    assert_eq!(row["last_error"], "tls: STARTTLS not offered", "{rows:?}");
}

fn sink_has(sink: &Sink, rcpt: &str) -> bool {
    sink.messages().iter().any(|m| m.rcpts.iter().any(|r| r.contains(rcpt)))
}

#[test]
fn failing_handshake_opportunistic_retries_plaintext_required_defers() {
    let sinks = Sinks::new();
    let broken = sinks.start(SinkConfig::new(&["broken.test"]).starttls(StartTls::GarbageAfterReady));
    let conf = connector("opp", "opp.test", broken.port(), "opportunistic")
        + &connector("req", "req.test", broken.port(), "required");
    let s = relay(&conf, "retry_schedule = [\"1h\"]");
    send(&s, "sender@origin.test", &["x@opp.test"], "opp");
    let held = send(&s, "sender@origin.test", &["x@req.test"], "req");
    wait("plaintext retry", || sink_has(&broken, "x@opp.test"));
    assert_eq!(broken.messages()[0].tls, None);
    let log = s.log();
    assert!(log.contains("plaintext (plaintext after failed handshake"), "the fallback is recorded: {log}");
    wait("required deferred", || message(&s, &held).is_some_and(|m| m["recipients"][0]["attempts"] == 1));
    let m = message(&s, &held).unwrap();
    assert!(m["recipients"][0]["last_error"].as_str().unwrap().starts_with("tls:"), "{m}");
    assert!(!sink_has(&broken, "x@req.test"));
}

#[test]
fn self_signed_verify_defers_required_delivers() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]));
    let conf =
        connector("ver", "ver.test", sink.port(), "verify") + &connector("req", "req.test", sink.port(), "required");
    let s = relay(&conf, "retry_schedule = [\"1h\"]");
    let held = send(&s, "sender@origin.test", &["x@ver.test"], "ver");
    send(&s, "sender@origin.test", &["x@req.test"], "req");
    wait("required delivers", || sink_has(&sink, "x@req.test"));
    wait("verify deferred", || message(&s, &held).is_some_and(|m| m["recipients"][0]["attempts"] == 1));
    let rows = summary(&s);
    let row = rows.iter().find(|r| r["destination"].as_str().unwrap().starts_with("ver/")).unwrap();
    assert_eq!(row["last_error"], "tls: certificate not trusted", "{rows:?}");
    let shown = s.cli(&["queue", "show", &held]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("certificate not trusted"), "{text}");
}

#[test]
fn rcpt_4xx_is_retried_on_schedule_and_5xx_bounces_only_that_recipient() {
    let sinks = Sinks::new();
    let sink = sinks.start(
        SinkConfig::new(&["sink.test"])
            .rcpt_reply("later@dest.test", "451 4.2.0 mailbox busy")
            .rcpt_reply("gone@dest.test", "550 5.1.1 no such user"),
    );
    let s = relay(&connector("out", "*", sink.port(), "opportunistic"), "retry_schedule = [\"1s\"]");
    let later = send(&s, "sender@origin.test", &["later@dest.test"], "later");
    let mixed = send(&s, "sender@origin.test", &["ok@dest.test", "gone@dest.test"], "mixed");
    // 4xx: attempted again and again on the 1 s schedule
    wait("three attempts", || message(&s, &later).is_some_and(|m| m["recipients"][0]["attempts"].as_u64() >= Some(3)));
    let m = message(&s, &later).unwrap();
    assert_eq!(m["recipients"][0]["state"], "queued");
    assert!(m["recipients"][0]["last_error"].as_str().unwrap().starts_with("rcpt: 451 4.2.0"), "{m}");
    // 5xx for one of two: one delivered, one NDR naming only it (to the sender, via the sink)
    wait("mixed done", || message(&s, &mixed).is_none());
    wait("NDR", || sink.messages().iter().any(|m| m.mail.starts_with("<>")));
    let ndr = sink.messages().into_iter().find(|m| m.mail.starts_with("<>")).unwrap();
    assert_eq!(ndr.rcpts, ["sender@origin.test"]);
    let text = String::from_utf8_lossy(&ndr.body).into_owned();
    assert!(text.contains("Final-Recipient: rfc822; gone@dest.test") && !text.contains("ok@dest.test"), "{text}");
    assert!(text.contains("Status: 5.1.1") && text.contains("Diagnostic-Code: smtp; 550"), "{text}");
    assert!(text.contains("Message-ID: <mixed@client.test>"), "original headers: {text}");
    assert!(sink_has(&sink, "ok@dest.test"));
}

#[test]
fn expiry_sends_one_delay_notice_then_one_ndr_with_4_4_7() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]).rcpt_reply("slow@dest.test", "451 4.2.0 try later"));
    let s = relay(
        &connector("out", "*", sink.port(), "opportunistic"),
        "retry_schedule = [\"1s\"]\nmax_lifetime = \"4s\"\ndelay_warning_after = \"2s\"",
    );
    let id = send(&s, "sender@origin.test", &["slow@dest.test"], "expiring");
    let null = send(&s, "", &["slow@dest.test"], "nullsender");
    wait("both expired", || message(&s, &id).is_none() && message(&s, &null).is_none());
    wait("reports delivered", || sink.messages().iter().filter(|m| m.mail.starts_with("<>")).count() >= 2);
    std::thread::sleep(Duration::from_millis(1500));
    let reports: Vec<String> = sink
        .messages()
        .into_iter()
        .filter(|m| m.mail.starts_with("<>"))
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(reports.len(), 2, "one delay notice and one NDR, none for <>: {reports:#?}");
    let delayed: Vec<&String> = reports.iter().filter(|r| r.contains("Action: delayed")).collect();
    let failed: Vec<&String> = reports.iter().filter(|r| r.contains("Action: failed")).collect();
    assert_eq!((delayed.len(), failed.len()), (1, 1));
    assert!(failed[0].contains("Status: 4.4.7"), "{}", failed[0]);
    assert!(failed[0].contains("Subject: expiring") && !failed[0].contains("nullsender"), "{}", failed[0]);
    assert!(failed[0].contains("Auto-Submitted: auto-replied") && failed[0].contains("MAILER-DAEMON@mx.example.test"));
}

#[test]
fn undeliverable_ndr_goes_to_the_postmaster() {
    let sinks = Sinks::new();
    let sink = sinks.start(
        SinkConfig::new(&["sink.test"])
            .rcpt_reply("gone@dest.test", "550 5.1.1 no such user")
            .rcpt_reply("nobody@origin.test", "550 5.1.1 no such sender"),
    );
    let s = relay(&connector("out", "*", sink.port(), "opportunistic"), "");
    send(&s, "nobody@origin.test", &["gone@dest.test"], "double");
    // the NDR to nobody@origin.test fails; a report goes to the postmaster,
    // whose mailbox always exists
    wait("report delivered to the postmaster", || {
        let log = s.log();
        log.contains("to=postmaster@example.test") && log.contains("rcpt=postmaster@example.test")
    });
    wait("queue empty", || s.queue().is_empty());
    let log = s.log();
    assert!(!log.contains("double bounce"), "{log}");
}

#[test]
fn crash_during_delivery_loses_nothing() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]));
    let mut s = relay(&connector("out", "*", sink.port(), "opportunistic"), "retry_schedule = [\"1s\"]");
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push((send(&s, "sender@origin.test", &[&format!("r{i}@dest.test")], &format!("crash{i}")), i));
    }
    s.kill9();
    s.start_again();
    wait("queue drained after restart", || s.queue().is_empty());
    for (_, i) in &ids {
        assert!(sink_has(&sink, &format!("r{i}@dest.test")), "message {i} was lost");
    }
}

#[test]
fn queue_commands_against_a_running_server() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]).rcpt_reply("busy@dest.test", "451 4.2.0 busy"));
    let s = relay(&connector("out", "*", sink.port(), "opportunistic"), "retry_schedule = [\"1h\"]");
    let a = send(&s, "sender@origin.test", &["busy@dest.test"], "a");
    let b = send(&s, "sender@origin.test", &["busy@dest.test"], "b");
    let c = send(&s, "sender@origin.test", &["busy@dest.test"], "c");
    let attempts = |id: &str| message(&s, id).map(|m| m["recipients"][0]["attempts"].as_u64().unwrap()).unwrap_or(0);
    wait("first attempts", || [&a, &b, &c].iter().all(|id| attempts(id) == 1));
    // summary names the destination and the error category
    let rows = summary(&s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["count"], 3);
    assert_eq!(rows[0]["last_error"], "rcpt: 451 4.2.0");
    let text = String::from_utf8_lossy(&s.cli(&["queue", "summary"]).stdout).into_owned();
    assert!(text.contains("DESTINATION") && text.contains("rcpt: 451 4.2.0"), "{text}");
    // show
    let shown = String::from_utf8_lossy(&s.cli(&["queue", "show", &a]).stdout).into_owned();
    assert!(shown.contains("busy@dest.test") && shown.contains("Subject: a"), "{shown}");
    // retry: the attempt happens now, not in an hour
    assert!(s.cli(&["queue", "retry", &a]).status.success());
    wait("retried", || attempts(&a) == 2);
    // freeze: no attempts, even when asked to retry; thaw: attempted again
    let out = s.cli(&["queue", "freeze", &b]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("frozen"), "{out:?}");
    assert_eq!(message(&s, &b).unwrap()["frozen"], true);
    assert!(s.cli(&["queue", "retry", &b]).status.success());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(attempts(&b), 1, "frozen messages are not attempted");
    assert!(s.cli(&["queue", "thaw", &b]).status.success());
    wait("thawed and retried", || attempts(&b) == 2);
    // retry by destination
    let dest = format!("out/127.0.0.1:{}", sink.port());
    assert!(s.cli(&["queue", "retry", "--destination", &dest]).status.success());
    wait("all retried", || attempts(&c) >= 2);
    // delete silently, and with an NDR
    assert!(s.cli(&["queue", "delete", &a]).status.success());
    assert!(message(&s, &a).is_none());
    let before = sink.messages().len();
    assert!(s.cli(&["queue", "delete", "--ndr", &b]).status.success());
    wait("NDR for the deleted message", || sink.messages().len() > before);
    let ndr = String::from_utf8_lossy(&sink.messages().last().unwrap().body).into_owned();
    assert!(ndr.contains("busy@dest.test") && ndr.contains("Subject: b"), "{ndr}");
    // unknown ids are one clear error
    let out = s.cli(&["queue", "freeze", "0000000000Z"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no message 0000000000Z"), "{out:?}");
}
