//! SPEC §12.1: a `250` after DATA means the message survives `kill -9`.

mod common;

use common::*;
use std::collections::HashMap;

#[test]
fn every_acknowledged_message_survives_sigkill() {
    let mut s = TestServer::start(&config("relay_networks = [\"127.0.0.0/8\"]", ""));
    let addr = s.addr("mx");
    // several sessions at once, each sending several messages
    let handles: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.reply();
                c.expect("EHLO client.test", 250);
                let mut acked = Vec::new();
                for i in 0..15 {
                    // remote recipients stay queued: test DNS never answers
                    let to = [format!("first{t}-{i}@relayed.test"), format!("user{t}-{i}@remote.test")];
                    let to: Vec<&str> = to.iter().map(String::as_str).collect();
                    let r =
                        c.send_mail("sender@example.org", &to, &format!("Subject: {t}/{i}\r\n\r\nbody {t} {i}\r\n"));
                    acked.push((queued_id(&r), to.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
                }
                acked
            })
        })
        .collect();
    let acked: Vec<(String, Vec<String>)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(acked.len(), 90);
    s.kill9();
    s.start_again();
    let queued: HashMap<String, serde_json::Value> =
        s.queue().into_iter().map(|m| (m["id"].as_str().unwrap().to_string(), m)).collect();
    for (id, rcpts) in &acked {
        let m = queued.get(id).unwrap_or_else(|| panic!("acknowledged message {id} lost after SIGKILL"));
        let got: Vec<&str> =
            m["recipients"].as_array().unwrap().iter().map(|r| r["address"].as_str().unwrap()).collect();
        assert_eq!(got, *rcpts, "{id}");
        assert!(m["recipients"].as_array().unwrap().iter().all(|r| r["state"] == "queued"));
    }
    assert_eq!(queued.len(), acked.len());
    // and the bodies are intact
    let show = s.cli(&["queue", "show", &acked[37].0, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert!(v["headers"].as_str().unwrap().contains("Subject: "), "{v}");
}

/// Issue 9, point 4: a record damaged in the middle of a segment (a bad
/// sector, a stray write) costs that record only; every message acknowledged
/// after it is still queued after a restart, and the log says what was lost.
#[test]
fn a_damaged_record_mid_segment_costs_only_that_record() {
    let mut s = TestServer::start(&config("relay_networks = [\"127.0.0.0/8\"]", ""));
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let ids: Vec<String> = (0..4)
        .map(|i| {
            let body = format!("Subject: {i}\r\n\r\nMARKER-{i}-{}\r\n", "x".repeat(200));
            queued_id(&c.send_mail("sender@example.org", &[&format!("user{i}@remote.test")], &body))
        })
        .collect();
    c.expect("QUIT", 221);
    s.kill9();
    // flip one byte of the second message's body in its segment
    let spool = s.path().join("data/spool");
    let mut damaged = 0;
    for e in std::fs::read_dir(&spool).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "seg") && !p.ends_with("spare.seg") {
            let mut bytes = std::fs::read(&p).unwrap();
            if let Some(at) = bytes.windows(9).position(|w| w == b"MARKER-1-") {
                bytes[at + 12] ^= 0x55;
                std::fs::write(&p, &bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1, "the second message's record was not found in {}", spool.display());
    s.start_again();
    let queued: Vec<String> = s.queue().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    for i in [0, 2, 3] {
        assert!(
            queued.contains(&ids[i]),
            "message {i} ({}) was lost with the damaged record; queued: {queued:?}",
            ids[i]
        );
    }
    assert!(!queued.contains(&ids[1]), "the damaged record came back as mail");
    let log = s.log();
    assert!(log.contains("damaged") || log.contains("skipped"), "the damage is logged:\n{log}");
}
