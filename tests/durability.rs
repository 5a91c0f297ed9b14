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
