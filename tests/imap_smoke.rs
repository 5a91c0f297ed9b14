//! IMAP4 smoke test against the real server on 127.0.0.1:0 with Python's
//! imaplib: LOGINDISABLED before TLS, STARTTLS, login, a message delivered
//! over SMTP fetched byte-exact, SEARCH, STORE, APPEND, LOGOUT. The full
//! acceptance tests are in tests/imap.rs.

mod common;

use common::*;
use std::time::Duration;

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "s3cret pass";

fn imap_config() -> String {
    config(
        "",
        r#"
[[virtual_server]]
name = "imap"
protocol = "imap"
listen = ["127.0.0.1:0"]
tls = "starttls"
certificates = ["main"]
"#,
    )
}

const PY: &str = r#"
import imaplib, ssl, json, base64
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def b64(b):
    return base64.b64encode(b).decode()
"#;

#[test]
fn imaplib_over_starttls_reads_searches_and_flags_mail_from_smtp() {
    let s = TestServer::start(&imap_config());
    s.add_user(ALICE, PASSWORD);
    let body =
        "From: bob@example.org\r\nTo: alice@example.test\r\nSubject: smoke\r\n\r\nHello Alice.\r\nGr\u{fc}\u{df}e\r\n";
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.cmd("EHLO client.test");
    assert_eq!(c.send_mail("bob@example.org", &[ALICE], body).code, 250);
    c.cmd("QUIT");
    let script = format!(
        r#"{PY}
import time
m = imaplib.IMAP4("127.0.0.1", {port}, timeout=15)
out = {{"caps_before": sorted(m.capabilities)}}
m.starttls(ctx)
out["caps_tls"] = sorted(m.capabilities)
out["login"] = m.login("{ALICE}", "{PASSWORD}")[0]
# the delivery is asynchronous: wait for it (bounded)
for _ in range(100):
    typ, data = m.select("INBOX")
    if data[0] != b"0":
        break
    time.sleep(0.1)
out["exists"] = data[0].decode()
typ, data = m.fetch("1", "(UID FLAGS BODY.PEEK[])")
out["body"] = b64(data[0][1])
out["search"] = m.search(None, "SUBJECT", "smoke")[1][0].decode()
out["search_none"] = m.search(None, "SUBJECT", "nothing")[1][0].decode()
out["store"] = [x.decode() for x in m.store("1", "+FLAGS", "(\\Flagged)")[1]]
out["seen"] = m.search(None, "FLAGGED")[1][0].decode()
typ, data = m.append("INBOX", "(\\Seen)", None, b"Subject: two\r\n\r\nsecond\r\n")
out["append"] = data[0].decode()
out["noop"] = m.noop()[0]
out["logout"] = m.logout()[0]
print(json.dumps(out))
"#,
        port = s.addr("imap").port()
    );
    let out = python(&script);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let caps = |k: &str| v[k].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(caps("caps_before").contains(&"LOGINDISABLED".to_string()), "{v}");
    assert!(caps("caps_before").contains(&"STARTTLS".to_string()), "{v}");
    assert!(!caps("caps_tls").contains(&"LOGINDISABLED".to_string()), "{v}");
    assert!(caps("caps_tls").contains(&"AUTH=PLAIN".to_string()), "{v}");
    assert_eq!(v["login"], "OK");
    assert_eq!(v["exists"], "1");
    use base64::Engine;
    let fetched = base64::engine::general_purpose::STANDARD.decode(v["body"].as_str().unwrap()).unwrap();
    let fetched = String::from_utf8(fetched).unwrap();
    assert!(fetched.starts_with("Received: "), "our Received: comes first: {fetched}");
    assert!(fetched.ends_with(body), "the message arrives byte-exact: {fetched:?}");
    assert_eq!(v["search"], "1");
    assert_eq!(v["search_none"], "");
    assert!(v["store"][0].as_str().unwrap().contains("\\Flagged"), "{v}");
    assert_eq!(v["seen"], "1");
    assert!(v["append"].as_str().unwrap().contains("APPENDUID"), "{v}");
    assert_eq!(v["noop"], "OK");
    assert_eq!(v["logout"], "BYE");
    assert!(eventually(Duration::from_secs(5), || s.log().contains("imap session")), "one log line per session");
}
