//! REQUIRETLS (RFC 8689) and `TLS-Required: No` end to end: the real
//! server on port 0 takes mail over SMTP (STARTTLS with real rustls) and
//! relays it through smarthost connectors to receiving SMTP servers inside
//! the test, which offer REQUIRETLS or not and present trusted or untrusted
//! certificates. What a host may not take under REQUIRETLS comes back as an
//! NDR with 5.7.10 — itself relayed under REQUIRETLS (RFC 8689 §5).

mod common;
#[path = "outbound/sink.rs"]
#[allow(dead_code)]
mod sink;

use common::*;
use sink::{Sink, SinkConfig, Sinks};
use std::time::Duration;

/// A sink named by its address (so `verify` can check it) and the PEM file trusting it.
fn sink(sinks: &Sinks, dir: &std::path::Path, name: &str, requiretls: bool) -> (Sink, String) {
    let mut c = SinkConfig::new(&["127.0.0.1"]);
    if requiretls {
        c = c.requiretls();
    }
    let s = sinks.start(c);
    let ca = dir.join(format!("{name}.pem"));
    std::fs::write(&ca, &s.config.cert_pem).unwrap();
    (s, ca.display().to_string())
}

fn connector(name: &str, space: &str, sink: &Sink, tls: &str, ca: Option<&str>) -> String {
    let ca = ca.map(|c| format!("tls_ca_file = {c:?}\n")).unwrap_or_default();
    format!(
        "[[connector]]\nname = \"{name}\"\naddress_spaces = [\"{space}\"]\nsmarthost = \"127.0.0.1:{}\"\ntls = \"{tls}\"\n{ca}\n",
        sink.port()
    )
}

fn server(connectors: &str) -> TestServer {
    let conf = config("relay_networks = [\"127.0.0.0/8\"]", connectors)
        .replace("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n", "");
    TestServer::start(&conf)
}

/// One message over STARTTLS; `requiretls` adds the MAIL parameter.
fn send(s: &TestServer, from: &str, to: &str, requiretls: bool, headers: &str) -> String {
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    let ehlo = c.starttls();
    assert!(ehlo.has("REQUIRETLS"), "advertised after TLS: {ehlo:?}");
    let param = if requiretls { " REQUIRETLS" } else { "" };
    c.expect(&format!("MAIL FROM:<{from}>{param}"), 250);
    c.expect(&format!("RCPT TO:<{to}>"), 250);
    c.expect("DATA", 354);
    c.send(&format!("{headers}Subject: secret\r\n\r\nfor your eyes only\r\n.\r\n"));
    let id = queued_id(&c.reply());
    c.cmd("QUIT");
    id
}

fn wait(what: &str, f: impl FnMut() -> bool) {
    assert!(eventually(Duration::from_secs(30), f), "timed out waiting: {what}");
}

#[test]
fn requiretls_is_refused_in_plaintext_and_advertised_only_after_tls() {
    let s = server("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n");
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.has("REQUIRETLS"), "not before TLS: {ehlo:?}");
    let r = c.cmd("MAIL FROM:<alice@origin.test> REQUIRETLS");
    assert_eq!(r.code, 530, "{r:?}");
    assert!(r.text().starts_with("5.7.10"), "{r:?}");
    // the session goes on: the same MAIL without the parameter is taken
    c.expect("MAIL FROM:<alice@origin.test>", 250);
    c.cmd("QUIT");
}

#[test]
fn requiretls_goes_only_to_hosts_offering_it_over_verified_tls_else_ndr_5_7_10() {
    let sinks = Sinks::new();
    let dir = tempfile::tempdir().unwrap();
    let (good, good_ca) = sink(&sinks, dir.path(), "good", true);
    let (no_ext, no_ext_ca) = sink(&sinks, dir.path(), "noext", false);
    let (untrusted, _) = sink(&sinks, dir.path(), "untrusted", true);
    // the sender's domain: NDRs go there, under REQUIRETLS too
    let (origin, origin_ca) = sink(&sinks, dir.path(), "origin", true);
    let s = server(&format!(
        "{}{}{}{}",
        connector("good", "good.test", &good, "verify", Some(&good_ca)),
        connector("noext", "noext.test", &no_ext, "verify", Some(&no_ext_ca)),
        connector("untrusted", "untrusted.test", &untrusted, "opportunistic", None),
        connector("origin", "origin.test", &origin, "verify", Some(&origin_ca)),
    ));

    send(&s, "alice@origin.test", "bob@good.test", true, "");
    wait("delivered to the host offering REQUIRETLS", || good.messages().len() == 1);
    let m = &good.messages()[0];
    assert!(m.mail.contains("REQUIRETLS"), "MAIL carried REQUIRETLS: {}", m.mail);
    assert!(m.tls.is_some());

    let no_ext_id = send(&s, "alice@origin.test", "bob@noext.test", true, "");
    let untrusted_id = send(&s, "alice@origin.test", "bob@untrusted.test", true, "");
    wait("two NDRs at the sender's host", || origin.messages().len() == 2);
    assert!(no_ext.messages().is_empty() && untrusted.messages().is_empty(), "nothing went to those hosts");
    for (ndr, id) in origin.messages().iter().zip([&no_ext_id, &untrusted_id]) {
        let body = String::from_utf8_lossy(&ndr.body);
        assert!(ndr.mail.starts_with("<>"), "{}", ndr.mail);
        assert!(ndr.mail.contains("REQUIRETLS"), "the NDR travels under REQUIRETLS: {}", ndr.mail);
        assert!(body.contains("Status: 5.7.10"), "{body}");
        assert!(body.contains("REQUIRETLS"), "{body}");
        assert!(!body.contains("for your eyes only"), "headers only, never the body: {body}");
        let _ = id;
    }
    let all = origin.messages().iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect::<String>();
    assert!(all.contains(&no_ext_id) && all.contains(&untrusted_id), "each NDR names its message");
    assert!(all.contains("does not offer REQUIRETLS"), "{all}");
    assert!(all.contains("not verified"), "{all}");
    wait("the queue is empty", || s.queue().is_empty());
}

#[test]
fn tls_required_no_waives_the_connectors_verification_for_that_message_only() {
    let sinks = Sinks::new();
    let dir = tempfile::tempdir().unwrap();
    // verify, but nothing trusts this certificate
    let (untrusted, _) = sink(&sinks, dir.path(), "untrusted", false);
    let s = server(&connector("strict", "strict.test", &untrusted, "verify", None));

    let kept = send(&s, "alice@origin.test", "bob@strict.test", false, "");
    send(&s, "alice@origin.test", "carol@strict.test", false, "TLS-Required: No\r\n");
    wait("the waived message delivered", || untrusted.messages().len() == 1);
    let m = &untrusted.messages()[0];
    assert_eq!(m.rcpts, ["carol@strict.test"]);
    assert!(m.tls.is_some(), "still over (opportunistic) TLS");
    // the other one waits: never weaker than the connector's own policy
    wait("the other deferred at tls", || {
        s.queue().iter().any(|q| {
            q["id"] == kept.as_str()
                && q["recipients"][0]["last_error"].as_str().is_some_and(|e| e.contains("certificate not trusted"))
        })
    });
    assert_eq!(untrusted.messages().len(), 1);
}
