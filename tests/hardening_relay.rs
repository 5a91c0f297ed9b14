//! Issue 9 "Hardening", relay and routing (SPEC §13 invariants 2, 4, 9),
//! against the real binary: alias loops are refused by `alias add` and at
//! RCPT (even when made by an older version), `%`/`!` paths with several
//! hops are judged by every domain they could reach, and every spelling of
//! a domain — case, trailing dot, fullwidth, U-label or A-label — routes
//! and relays as its A-label does.

mod common;

use common::*;

/// `relayed.test` and `bücher.example` are pinned to a verify connector
/// (never attempted here: test DNS does not answer, so mail stays queued).
const PINNED: &str = r#"
[[connector]]
name = "pinned"
address_spaces = ["relayed.test", "BÜCHER.example"]
tls = "verify"
"#;

fn session(s: &TestServer) -> Client {
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    c
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn alias_loops_are_refused_by_the_cli_and_at_rcpt() {
    let mut s = TestServer::start(&config("", ""));
    s.add_user("alice@example.test", "pw");
    let out = s.cli(&["alias", "add", "self@example.test", "Self@example.test"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("self@example.test -> self@example.test"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = s.cli(&["alias", "add", "ping@example.test", "pong@example.test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.cli(&["alias", "add", "pong@example.test", "ping@example.test"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("pong@example.test -> ping@example.test -> pong@example.test"), "{}", stderr(&out));

    // a loop stored by an older version: refused at RCPT, nothing queued
    s.stop();
    {
        let data = postern::datadir::DataDir::open(&s.path().join("data")).unwrap();
        let raw = data.db.open_tree("aliases").unwrap();
        raw.insert("pong@example.test", serde_json::to_vec(&["ping@example.test"]).unwrap()).unwrap();
        raw.flush().unwrap();
    }
    s.start_again();
    let mut c = session(&s);
    c.expect("MAIL FROM:<a@example.org>", 250);
    let r = c.cmd("RCPT TO:<ping@example.test>");
    assert_eq!((r.code, r.text().split(' ').next().unwrap()), (550, "5.4.6"), "{r:?}");
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.cmd("QUIT");
}

#[test]
fn multi_hop_percent_and_bang_paths_toward_a_relay_domain_are_refused() {
    let s = TestServer::start(&config("", ""));
    let mut c = session(&s);
    c.expect("MAIL FROM:<a@example.org>", 250);
    for trick in [
        "victim%evil.example%relayed.test@relayed.test",
        "relayed.test!evil.example!victim@relayed.test",
        "evil.example!victim%relayed.test@relayed.test",
        "\"victim%evil.example@relayed.test\"@relayed.test",
    ] {
        let r = c.cmd(&format!("RCPT TO:<{trick}>"));
        assert_eq!((r.code, r.text().split(' ').next().unwrap()), (550, "5.7.1"), "{trick}: {r:?}");
    }
    c.expect("RCPT TO:<someone@relayed.test>", 250);
    c.cmd("QUIT");
}

#[test]
fn every_spelling_of_a_pinned_domain_routes_and_relays_as_its_a_label() {
    let s = TestServer::start(&config("", PINNED));
    for (address, domain, unicode) in [
        ("x@relayed.test", "relayed.test", "relayed.test"),
        ("x@ＲＥＬＡＹＥＤ．ｔｅｓｔ", "relayed.test", "relayed.test"),
        ("x@Relayed.Test.", "relayed.test", "relayed.test"),
        ("x@bücher.example", "xn--bcher-kva.example", "bücher.example"),
        ("x@ＢÜＣＨＥＲ.example", "xn--bcher-kva.example", "bücher.example"),
        ("x@xn--bcher-kva.example", "xn--bcher-kva.example", "bücher.example"),
    ] {
        let out = s.cli(&["route", "explain", address, "--json"]);
        assert!(out.status.success(), "{address}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["route"]["connector"], "pinned", "{address}: {v}");
        assert_eq!(v["route"]["tls"], "verify", "{address}: {v}");
        assert_eq!(v["domain"], domain, "{address}: {v}");
        assert_eq!(v["domain_unicode"], unicode, "{address}: {v}");
        let text = String::from_utf8_lossy(&s.cli(&["route", "explain", address]).stdout).into_owned();
        assert!(text.contains(domain) && text.contains(unicode), "{address}: {text}");
        assert!(text.contains("route: connector \"pinned\""), "{address}: {text}");
    }
    let out = s.cli(&["route", "explain", "x@xn--a.example"]);
    assert_eq!(out.status.code(), Some(2), "invalid IDNA is a usage error: {}", stderr(&out));

    // RCPT: from a client that may not relay, the fullwidth spelling is the
    // relay domain, queued for the same destination as the canonical one
    let mut c = session(&s);
    c.expect("MAIL FROM:<a@example.org> SMTPUTF8", 250);
    c.expect("RCPT TO:<a@relayed.test>", 250);
    c.expect("RCPT TO:<b@ｒｅｌａｙｅｄ.ｔｅｓｔ>", 250);
    c.expect("RCPT TO:<c@RELAYED.TEST.>", 250);
    c.expect("RCPT TO:<d@ＢÜＣＨＥＲ.example>", 550);
    let r = c.cmd("RCPT TO:<e@xn--a.example>");
    assert_eq!((r.code, r.text().split(' ').next().unwrap()), (501, "5.1.3"), "{r:?}");
    c.expect("DATA", 354);
    let id = queued_id(&c.cmd("Subject: spellings\r\n\r\nbody\r\n."));
    c.cmd("QUIT");
    let list = s.queue();
    let m = list.iter().find(|m| m["id"] == id.as_str()).expect("queued");
    let rcpts: Vec<(String, String)> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap().to_string(), r["destination"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        rcpts,
        [
            ("a@relayed.test".to_string(), "pinned/relayed.test".to_string()),
            ("b@relayed.test".to_string(), "pinned/relayed.test".to_string()),
            ("c@relayed.test".to_string(), "pinned/relayed.test".to_string()),
        ]
    );
}
