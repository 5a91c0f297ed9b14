//! The mailbox store's fault seam end to end, with the real binary: a
//! fault armed through `POSTERN_MAILBOX_FAULTS` at `serve` start makes the
//! first local delivery fail with an I/O error. The message stays queued
//! with that error (a temporary failure, never an NDR), the retry on a
//! short `retry_schedule` delivers it, and POP3 sees it exactly once, also
//! after a restart.

mod common;

use common::*;
use std::time::Duration;

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "s3cret pass";

const PY: &str = r#"
import poplib, ssl, json
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
"#;

fn fault_config() -> String {
    config(
        "",
        r#"
[[virtual_server]]
name = "pop3s"
protocol = "pop3"
listen = ["127.0.0.1:0"]
tls = "implicit"
certificates = ["main"]

[queue]
retry_schedule = ["5s"]
"#,
    )
}

/// The subjects in alice's maildrop, over POP3 with TLS.
fn subjects(s: &TestServer) -> Vec<String> {
    let script = format!(
        r#"{PY}
p = poplib.POP3_SSL("127.0.0.1", {port}, context=ctx, timeout=15)
p.user("{ALICE}")
p.pass_("{PASSWORD}")
subjects = []
for i in range(1, p.stat()[0] + 1):
    head = b"\r\n".join(p.top(i, 0)[1]).decode()
    subjects += [l[9:] for l in head.split("\r\n") if l.startswith("Subject: ")]
p.quit()
print(json.dumps(subjects))
"#,
        port = s.addr("pop3s").port()
    );
    let out = python(&script);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn an_io_error_in_local_delivery_is_retried_and_delivers_exactly_once() {
    // the child inherits the variable; only the server start sees it (the
    // CLI commands below run after it is removed again)
    std::env::set_var("POSTERN_MAILBOX_FAULTS", "mailbox.link=EIO@1");
    let mut s = TestServer::start(&fault_config());
    std::env::remove_var("POSTERN_MAILBOX_FAULTS");
    assert!(s.log().contains("POSTERN_MAILBOX_FAULTS is set"), "the armed seam is logged:\n{}", s.log());
    s.add_user(ALICE, PASSWORD);

    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let r = c.send_mail("bob@example.org", &[ALICE], "Subject: fault-1\r\n\r\nthe first attempt meets EIO\r\n");
    let id = queued_id(&r);
    c.cmd("QUIT");

    // the first attempt fails temporarily: still queued, the error named
    let mut seen = serde_json::Value::Null;
    let deferred = eventually(Duration::from_secs(30), || {
        let q = s.queue();
        seen = serde_json::json!(q);
        q.iter().any(|m| {
            m["id"] == id.as_str()
                && m["recipients"].as_array().is_some_and(|rs| {
                    rs.iter().any(|r| {
                        r["state"] == "queued"
                            && r["last_error"]
                                .as_str()
                                .is_some_and(|e| e.contains("451 4.3.0") && e.contains("os error 5"))
                    })
                })
        })
    });
    assert!(
        deferred,
        "the message stays queued with the I/O error as its last error; queue: {seen}\nlog:\n{}",
        s.log()
    );
    assert!(s.log().contains("injected fault"), "the fault fired:\n{}", s.log());

    // the retry delivers it, and it is the only copy (an NDR to the
    // remote sender would still be queued)
    assert!(eventually(Duration::from_secs(60), || s.queue().is_empty()), "the retry delivers; log:\n{}", s.log());
    assert_eq!(subjects(&s), ["fault-1"]);
    s.restart();
    assert_eq!(subjects(&s), ["fault-1"], "exactly once after a restart too");
    assert!(s.queue().is_empty());
}
