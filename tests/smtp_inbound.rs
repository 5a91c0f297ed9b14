//! Inbound SMTP against the real server on 127.0.0.1:0 with real rustls on
//! both ends: TLS behaviour, STARTTLS injection, relay control, DATA
//! framing and limits.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn starttls_advertised_before_and_gone_after() {
    let s = TestServer::start(&config("", ""));
    let mut c = Client::connect(s.addr("mx"));
    let banner = c.reply();
    assert_eq!(banner.code, 220);
    assert_eq!(banner.text(), "mx.example.test ESMTP", "no version in the banner");
    let ehlo = c.expect("EHLO client.test", 250);
    for cap in ["PIPELINING", "SIZE 26214400", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "STARTTLS"] {
        assert!(ehlo.lines.iter().any(|l| l == cap), "{cap} missing: {ehlo:?}");
    }
    assert!(!ehlo.has("AUTH"), "auth is off: {ehlo:?}");
    let r = c.expect("STARTTLS", 220);
    assert_eq!(r.text(), "2.0.0 Ready to start TLS");
    c.start_tls_with(client_tls_default(), "mx.example.test").unwrap();
    // the session starts over: EHLO first
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").code, 503);
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.has("STARTTLS"), "{ehlo:?}");
    let r = c.cmd("STARTTLS");
    assert_eq!(r.code, 503, "second STARTTLS: {r:?}");
    assert!(r.text().starts_with("5.5.1"));
    // and mail flows over TLS, recorded as ESMTPS with the cipher (to a
    // relay domain, so it stays queued: test DNS never answers)
    let id = queued_id(&c.send_mail("a@example.org", &["someone@relayed.test"], "Subject: t\r\n\r\nhi\r\n"));
    let show = s.cli(&["queue", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["tls"]["version"], "TLSv1.3");
    let headers = v["headers"].as_str().unwrap();
    assert!(headers.contains("with ESMTPS id") && headers.contains("(using TLSv1.3 with cipher TLS_AES_"), "{headers}");
    // an SMTPUTF8 transaction is UTF8SMTPS (RFC 6531 §3.7.3) and its one
    // recipient is named as written
    c.expect("MAIL FROM:<a@example.org> SMTPUTF8", 250);
    c.expect("RCPT TO:<jösé@relayed.test>", 250);
    c.expect("DATA", 354);
    let id = queued_id(&c.expect("Subject: t\r\n\r\nhi\r\n.", 250));
    let show = s.cli(&["queue", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let headers = v["headers"].as_str().unwrap();
    assert!(headers.contains("with UTF8SMTPS id") && headers.contains("for <jösé@relayed.test>"), "{headers}");
}

#[test]
fn implicit_tls_listener() {
    let extra = r#"
[[virtual_server]]
name = "smtps"
protocol = "smtp"
listen = ["127.0.0.1:0"]
tls = "implicit"
certificates = ["main"]
"#;
    let s = TestServer::start(&config("", extra));
    let mut c = Client::connect_tls(s.addr("smtps"), "mx.example.test");
    assert_eq!(c.reply().code, 220);
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.has("STARTTLS"));
    let r = c.send_mail("a@example.org", &["postmaster@example.test"], "Subject: x\r\n\r\ny\r\n");
    assert_eq!(r.code, 250);
    // a plaintext client gets nothing it can use
    let mut p = Client::connect(s.addr("smtps"));
    p.send("EHLO x\r\n");
    assert!(p.try_reply().is_err());
}

#[test]
fn require_tls_refuses_mail_before_starttls() {
    let s = TestServer::start(&config("require_tls = true", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    for cmd in
        ["MAIL FROM:<a@example.org>", "RCPT TO:<postmaster@example.test>", "DATA", "VRFY postmaster", "BDAT 5 LAST"]
    {
        let r = c.cmd(cmd);
        assert_eq!(r.code, 530, "{cmd}: {r:?}");
        assert_eq!(r.text(), "5.7.0 Must issue a STARTTLS command first");
    }
    c.expect("NOOP", 250);
    c.expect("STARTTLS", 220);
    c.start_tls_with(client_tls_default(), "mx.example.test").unwrap();
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@example.org>", 250);
}

#[test]
fn min_tls_version_13_refuses_a_tls12_only_client() {
    let s = TestServer::start(&config("min_tls_version = \"1.3\"", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    c.expect("STARTTLS", 220);
    let r = c.start_tls_with(client_tls(&[&rustls::version::TLS12]), "mx.example.test");
    assert!(r.is_err(), "a TLS 1.2-only client must be refused");
    // a 1.3 client is fine
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.starttls();
    // and with the default floor, TLS 1.2 works
    let s2 = TestServer::start(&config("", ""));
    let mut c = Client::connect(s2.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    c.expect("STARTTLS", 220);
    c.start_tls_with(client_tls(&[&rustls::version::TLS12]), "mx.example.test").unwrap();
    assert_eq!(c.tls().unwrap().conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    c.expect("EHLO client.test", 250);
}

#[test]
fn sni_picks_the_matching_certificate() {
    // two certificates, made by the CLI-independent generator of the library
    let dir = tempfile::tempdir().unwrap();
    for (name, host) in [("one", "mx.example.test"), ("two", "mail.other.test")] {
        let (c, k) = postern::cert::self_signed_pem(&[host.to_string()], postern::cert::KeyType::EcdsaP256).unwrap();
        std::fs::write(dir.path().join(format!("{name}.crt")), c).unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), k).unwrap();
    }
    let d = dir.path().display();
    let conf = config("", "").replace("certificates = [\"main\"]", "certificates = [\"one\", \"two\"]")
        + &format!(
            "\n[tls.certificates.one]\ncert = \"{d}/one.crt\"\nkey = \"{d}/one.key\"\n\n[tls.certificates.two]\ncert = \"{d}/two.crt\"\nkey = \"{d}/two.key\"\n"
        );
    let s = TestServer::start(&conf);
    let names_for = |sni: &str| {
        let mut c = Client::connect(s.addr("mx"));
        c.reply();
        c.expect("EHLO c", 250);
        c.expect("STARTTLS", 220);
        c.start_tls_with(client_tls_default(), sni).unwrap();
        peer_names(c.tls().unwrap())
    };
    assert_eq!(names_for("mail.other.test"), ["mail.other.test"]);
    assert_eq!(names_for("mx.example.test"), ["mx.example.test"]);
    // no match: the first
    assert_eq!(names_for("unknown.test"), ["mx.example.test"]);
}

#[test]
fn starttls_injection_is_discarded() {
    let s = TestServer::start(&config("", ""));
    for injected in [
        "STARTTLS\r\nRSET\r\n",
        "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n",
        "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<postmaster@example.test>\r\n",
    ] {
        let mut c = Client::connect(s.addr("mx"));
        c.reply();
        c.expect("EHLO client.test", 250);
        c.send(injected);
        let r = c.reply();
        assert_eq!(r.code, 220, "{injected:?}: {r:?}");
        // only the 220: nothing else was answered before the handshake
        assert!(!c.has_pending(Duration::from_millis(300)), "{injected:?}: more replies before TLS");
        c.start_tls_with(client_tls_default(), "mx.example.test").unwrap();
        c.expect("EHLO client.test", 250);
        // the injected MAIL was never executed: RCPT needs a MAIL first
        let r = c.cmd("RCPT TO:<postmaster@example.test>");
        assert_eq!(r.code, 503, "{injected:?}: {r:?}");
    }
    assert!(!s.log().contains("evil@example.org"));
}

fn relay_config() -> String {
    config("relay_networks = [\"10.0.0.0/8\"]", "")
}

#[test]
fn relay_control_refuses_outsiders_and_their_tricks() {
    let s = TestServer::start(&relay_config());
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@example.org>", 250);
    for rcpt in [
        "<someone@remote.test>",
        "<someone%remote.test@example.test>",
        "<remote.test!someone@example.test>",
        "<@example.test:someone@remote.test>",
        "<@example.test,@relayed.test:someone@remote.test>",
        "<\"someone@remote.test\"@example.test>",
        "<someone%remote.test@relayed.test>",
        "<someone@[127.0.0.1]>",
        "<someone@remote.test.>",
    ] {
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        assert_eq!(r.code, 550, "{rcpt}: {r:?}");
        assert!(r.text().starts_with("5.7.1"), "{rcpt}: {r:?}");
    }
    // relay domains are accepted from anyone; local users and postmaster too
    c.expect("RCPT TO:<anyone@relayed.test>", 250);
    c.expect("RCPT TO:<postmaster@example.test>", 250);
    c.expect("RCPT TO:<Postmaster>", 250);
    let r = c.cmd("RCPT TO:<nobody@example.test>");
    assert_eq!((r.code, r.text().starts_with("5.1.1")), (550, true), "{r:?}");
}

#[test]
fn relay_networks_may_relay() {
    let s = TestServer::start(&config("relay_networks = [\"127.0.0.0/8\"]", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let id = queued_id(&c.send_mail("a@example.org", &["someone@remote.test"], "Subject: r\r\n\r\nrelay\r\n"));
    let q = s.queue();
    let m = q.iter().find(|m| m["id"] == id.as_str()).unwrap();
    assert_eq!(m["recipients"][0]["destination"], "internet/remote.test");
}

#[test]
fn no_route_is_refused_at_rcpt() {
    let conf = config("relay_networks = [\"127.0.0.0/8\"]", "")
        .replace("address_spaces = [\"*\"]", "address_spaces = [\"*.corp.test\"]");
    let s = TestServer::start(&conf);
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@example.org>", 250);
    let r = c.cmd("RCPT TO:<x@remote.test>");
    assert_eq!((r.code, r.text().starts_with("5.4.4")), (550, true), "{r:?}");
    c.expect("RCPT TO:<x@a.corp.test>", 250);
}

/// Read a queued message's stored body straight from the spool (server stopped).
fn stored_body(s: &mut TestServer, id: &str) -> Vec<u8> {
    s.stop();
    let data = postern::datadir::DataDir::open(&s.path().join("data")).unwrap();
    let (q, _) = postern::queue::QueueStore::open(&data.db, &data.path).unwrap();
    let m = q.get(&postern::queue::QueueId::parse(id).unwrap()).unwrap().expect("queued");
    q.read_body(&m).unwrap()
}

#[test]
fn data_framing_smuggling_and_crlf_only() {
    let mut s = TestServer::start(&config("", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@example.org>", 250);
    // a relay domain: the message stays queued (test DNS never answers)
    c.expect("RCPT TO:<someone@relayed.test>", 250);
    c.expect("DATA", 354);
    let mut body = String::from("Subject: smuggle\r\n\r\n..leading dot\r\n");
    for seq in ["\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r"] {
        body.push_str("text");
        body.push_str(seq);
        body.push_str("MAIL FROM:<smuggled@example.org>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\nsmuggled\r\n");
    }
    c.send(&body);
    c.send(".\r\n");
    let r = c.reply();
    let id = queued_id(&r);
    // exactly one message: the next command is answered as a command
    c.expect("NOOP", 250);
    assert!(!c.has_pending(Duration::from_millis(200)));
    assert_eq!(s.queue().len(), 1, "no second message was produced");
    let stored = stored_body(&mut s, &id);
    for (i, &b) in stored.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(stored[i - 1], b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(stored.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    let text = String::from_utf8_lossy(&stored);
    assert!(text.contains("\r\n.leading dot\r\n"), "dot-unstuffed: {text}");
    assert_eq!(text.matches("smuggled@example.org").count(), 5, "{text}");
}

#[test]
fn size_limits_by_param_and_by_counting() {
    let s = TestServer::start(&config("max_message_size = \"10KB\"", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.has("SIZE 10240"));
    let r = c.cmd("MAIL FROM:<a@example.org> SIZE=20000");
    assert_eq!((r.code, r.text().starts_with("5.3.4")), (552, true), "{r:?}");
    c.expect("MAIL FROM:<a@example.org> SIZE=1000", 250);
    c.expect("RCPT TO:<postmaster@example.test>", 250);
    c.expect("DATA", 354);
    c.send(&"0123456789012345678901234567890123456789\r\n".repeat(1000));
    c.send(".\r\n");
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("5.3.4")), (552, true), "{r:?}");
    // the session goes on
    c.expect("MAIL FROM:<a@example.org>", 250);
    assert!(s.queue().is_empty());
}

#[test]
fn loops_are_refused() {
    let s = TestServer::start(&config("", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let hops = "Received: from a by b; Sun, 22 Nov 2026 00:00:00 +0000\r\n".repeat(51);
    c.expect("MAIL FROM:<a@example.org>", 250);
    c.expect("RCPT TO:<postmaster@example.test>", 250);
    c.expect("DATA", 354);
    c.send(&format!("{hops}Subject: loop\r\n\r\nbody\r\n.\r\n"));
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("5.4.6")), (554, true), "{r:?}");
    let hops = "Received: x\r\n".repeat(50);
    let r = c.send_mail("a@example.org", &["postmaster@example.test"], &format!("{hops}\r\nbody\r\n"));
    assert_eq!(r.code, 250);
}

#[test]
fn command_line_limit_and_error_limit() {
    let s = TestServer::start(&config("", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    let r = c.cmd(&format!("NOOP {}", "x".repeat(520)));
    assert_eq!((r.code, r.text().starts_with("5.5.2")), (500, true), "{r:?}");
    c.expect("NOOP", 250);
    for _ in 0..8 {
        assert_eq!(c.cmd("BOGUS").code, 500);
    }
    // the tenth error closes the session
    c.send("BOGUS\r\n");
    assert_eq!(c.reply().code, 500);
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("4.7.0")), (421, true), "{r:?}");
    assert!(c.is_closed(Duration::from_secs(5)));
}

#[test]
fn idle_timeout_closes_with_421() {
    let s = TestServer::start(&config("idle_timeout = \"1s\"", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    std::thread::sleep(Duration::from_millis(1500));
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("4.4.2")), (421, true), "{r:?}");
    assert!(c.is_closed(Duration::from_secs(5)));
}

#[test]
fn connection_limit_per_ip() {
    let s = TestServer::start(&config("max_connections_per_ip = 2", ""));
    let mut a = Client::connect(s.addr("mx"));
    assert_eq!(a.reply().code, 220);
    let mut b = Client::connect(s.addr("mx"));
    assert_eq!(b.reply().code, 220);
    let mut c = Client::connect(s.addr("mx"));
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("4.7.0")), (421, true), "{r:?}");
    assert!(c.is_closed(Duration::from_secs(5)));
    // a place frees up when a session ends
    a.expect("QUIT", 221);
    assert!(a.is_closed(Duration::from_secs(5)));
    assert!(eventually(Duration::from_secs(5), || {
        let mut d = Client::connect(s.addr("mx"));
        d.reply().code == 220
    }));
}

#[test]
fn shutdown_says_421_and_logs_sessions() {
    let mut s = TestServer::start(&config("", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    s.signal("TERM");
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("4.3.2")), (421, true), "{r:?}");
    s.stop();
    let log = s.log();
    assert!(log.contains("smtp session") && log.contains("outcome=server shutdown"), "{log}");
}

#[test]
fn pipelined_transaction_in_one_write() {
    let s = TestServer::start(&config("", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    c.send(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<postmaster@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n",
    );
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 550);
    assert_eq!(c.reply().code, 354);
    c.send("Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 221);
}

#[test]
fn python_smtplib_with_starttls() {
    let s = TestServer::start(&config("", ""));
    let port = s.addr("mx").port();
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=15)
s.starttls()
code, msg = s.ehlo()
assert b"STARTTLS" not in msg
refused = s.sendmail("sender@example.org", ["someone@relayed.test"], "Subject: py\r\n\r\nhello\r\n")
assert refused == {{}}
print(s.noop()[0])
s.quit()
"#
    ));
    assert_eq!(out.trim(), "250");
    assert_eq!(s.queue().len(), 1);
}

#[test]
fn one_worker_thread_serves_and_delivers() {
    let conf = config("", "")
        .replace("local_domains = [\"example.test\"]", "local_domains = [\"example.test\"]\nworker_threads = 1");
    let s = TestServer::start(&conf);
    s.add_user("alice@example.test", "pw");
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.starttls();
    let id = queued_id(&c.send_mail("a@example.org", &["alice@example.test"], "Subject: one\r\n\r\nthread\r\n"));
    assert!(eventually(Duration::from_secs(10), || s.queue().is_empty()), "delivered locally");
    assert!(s.log().contains(&format!("id={id}")));
}
