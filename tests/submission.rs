//! Authenticated submission (SPEC §4 AUTH lines, §8): SASL PLAIN and LOGIN
//! with real clients, 587-style STARTTLS and 465-style implicit TLS,
//! sender ownership, brute-force throttling, and no secrets in the logs.

mod common;

use common::*;
use std::time::Duration;

const PASSWORD: &str = "correct horse 42";

/// An MX (no auth), a STARTTLS submission server and an implicit-TLS one.
fn submission_config(auth_section: &str) -> String {
    let extra = format!(
        r#"
[[virtual_server]]
name = "submission"
protocol = "smtp"
listen = ["127.0.0.1:0"]
tls = "starttls"
certificates = ["main"]
require_tls = true
auth = "required"

[[virtual_server]]
name = "submissions"
protocol = "smtp"
listen = ["127.0.0.1:0"]
tls = "implicit"
certificates = ["main"]
auth = "required"

{auth_section}
"#
    );
    config("", &extra).replace("level = \"debug\"", "level = \"trace\"")
}

fn server(auth_section: &str) -> TestServer {
    let s = TestServer::start(&submission_config(auth_section));
    s.add_user("alice@example.test", PASSWORD);
    s.add_user("bob@example.test", "bobs password");
    let out = s.cli(&["alias", "add", "sales@example.test", "alice@example.test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s
}

fn message_for(s: &TestServer, id: &str) -> serde_json::Value {
    let out = s.cli(&["queue", "show", id, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn smtplib_login_plain_and_login_then_relay() {
    let s = server("");
    let port = s.addr("submission").port();
    let tls_port = s.addr("submissions").port();
    let out = python(&format!(
        r#"
import smtplib, ssl
ids = []
for mech in ["PLAIN", "LOGIN"]:
    s = smtplib.SMTP("127.0.0.1", {port}, timeout=15)
    s.starttls()
    s.ehlo()
    s.user, s.password = "alice@example.test", "{PASSWORD}"
    code, resp = s.auth(mech, getattr(s, "auth_" + mech.lower()), initial_response_ok=(mech == "PLAIN"))
    assert code == 235, (code, resp)
    s.mail("alice@example.test")
    s.rcpt("friend@remote.test")
    code, msg = s.data("Subject: via " + mech + "\r\n\r\nhello\r\n")
    assert code == 250, (code, msg)
    ids.append(msg.decode().rsplit(" ", 1)[1])
    s.quit()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL("127.0.0.1", {tls_port}, context=ctx, timeout=15)
s.login("alice@example.test", "{PASSWORD}")
s.mail("sales@example.test")
s.rcpt("friend@remote.test")
code, msg = s.data("Subject: implicit\r\n\r\nhello\r\n")
assert code == 250, (code, msg)
ids.append(msg.decode().rsplit(" ", 1)[1])
s.quit()
print(" ".join(ids))
"#
    ));
    let ids: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(ids.len(), 3, "{out}");
    for id in ids {
        let m = message_for(&s, id);
        assert_eq!(m["auth_user"], "alice@example.test", "{m}");
        assert_eq!(m["recipients"][0]["destination"], "internet/remote.test");
        let headers = m["headers"].as_str().unwrap();
        assert!(headers.contains("with ESMTPSA id"), "{headers}");
        // submission servers add what the client left out
        assert!(headers.contains("Message-ID: <") && headers.contains("\r\nDate: "), "{headers}");
    }
}

#[test]
fn before_starttls_no_auth_and_mail_refused() {
    let s = server("");
    let mut c = Client::connect(s.addr("submission"));
    c.reply();
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.has("AUTH"), "{ehlo:?}");
    assert!(ehlo.has("STARTTLS"));
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0");
    assert_eq!((r.code, r.text().starts_with("5.7.11")), (538, true), "{r:?}");
    let r = c.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!(r.code, 530, "{r:?}");
    // after STARTTLS, AUTH is offered and MAIL still needs it
    let ehlo = c.starttls();
    assert!(ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{ehlo:?}");
    let r = c.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!((r.code, r.text().starts_with("5.7.0")), (530, true), "{r:?}");
    // the MX does not offer AUTH at all
    let mut mx = Client::connect(s.addr("mx"));
    mx.reply();
    assert!(!mx.starttls().has("AUTH"));
}

fn plain(user: &str, pw: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"))
}

#[test]
fn wrong_passwords_are_throttled_per_ip() {
    let s = server("[auth]\nfailure_limit = 5\nfailure_window = \"4s\"\nfailure_delay = \"200ms\"\n");
    let mut c = Client::connect_tls(s.addr("submissions"), "mx.example.test");
    c.reply();
    c.expect("EHLO client.test", 250);
    for i in 0..5 {
        let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", "wrong")));
        assert_eq!((r.code, r.text().starts_with("5.7.8")), (535, true), "attempt {i}: {r:?}");
    }
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", "wrong")));
    assert_eq!((r.code, r.text().starts_with("4.7.0")), (454, true), "{r:?}");
    // now even the right password is refused, from any session of this IP
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD)));
    assert_eq!(r.code, 454, "{r:?}");
    let mut d = Client::connect_tls(s.addr("submissions"), "mx.example.test");
    d.reply();
    d.expect("EHLO client.test", 250);
    assert_eq!(d.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD))).code, 454);
    // until the window passes
    assert!(eventually(Duration::from_secs(15), || {
        let mut e = Client::connect_tls(s.addr("submissions"), "mx.example.test");
        e.reply();
        e.expect("EHLO client.test", 250);
        e.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD))).code == 235
    }));
}

#[test]
fn failure_delay_does_not_block_other_sessions() {
    let s = server("[auth]\nfailure_delay = \"3s\"\n");
    let addr = s.addr("submissions");
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect_tls(addr, "mx.example.test");
        c.reply();
        c.expect("EHLO client.test", 250);
        c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", "wrong"))).code
    });
    std::thread::sleep(Duration::from_millis(300));
    // while that failure is being delayed, another client logs in and sends
    let mut c = Client::connect_tls(addr, "mx.example.test");
    c.reply();
    c.expect("EHLO client.test", 250);
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD))).code, 235);
    assert!(!slow.is_finished(), "the delayed failure must still be waiting");
    assert_eq!(slow.join().unwrap(), 535);
}

#[test]
fn sender_must_be_the_user_or_an_alias() {
    let s = server("");
    let mut c = Client::connect_tls(s.addr("submissions"), "mx.example.test");
    c.reply();
    c.expect("EHLO client.test", 250);
    c.expect(&format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD)), 235);
    c.expect("MAIL FROM:<alice@example.test>", 250);
    c.expect("RSET", 250);
    c.expect("MAIL FROM:<Sales@Example.test>", 250);
    c.expect("RSET", 250);
    let r = c.cmd("MAIL FROM:<bob@example.test>");
    assert_eq!((r.code, r.text().starts_with("5.7.1")), (553, true), "{r:?}");
    let r = c.cmd("MAIL FROM:<>");
    assert_eq!(r.code, 553, "{r:?}");
}

#[test]
fn passwords_never_reach_the_logs() {
    let s = server("[auth]\nfailure_delay = \"10ms\"\n");
    let secret_wrong = "Wr0ng-Pa55word-xyzzy";
    let mut c = Client::connect_tls(s.addr("submissions"), "mx.example.test");
    c.reply();
    c.expect("EHLO client.test", 250);
    c.expect(&format!("AUTH PLAIN {}", plain("alice@example.test", secret_wrong)), 535);
    // LOGIN with challenges
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    c.expect("AUTH LOGIN", 334);
    c.expect(&b64("alice@example.test"), 334);
    c.expect(&b64(PASSWORD), 235);
    s.cli(&["queue", "list"]);
    let log = s.log();
    assert!(log.contains("authenticated") && log.contains("authentication failed"), "{log}");
    for secret in [PASSWORD, secret_wrong, "bobs password"] {
        assert!(!log.contains(secret), "password {secret:?} in the log");
        assert!(!log.contains(&b64(secret)), "base64 of {secret:?} in the log");
        assert!(!log.contains(&plain("alice@example.test", secret)), "PLAIN blob in the log");
    }
    // and the account store has only Argon2id hashes
    drop(c);
    let mut s = s;
    s.stop();
    let data = postern::datadir::DataDir::open(&s.path().join("data")).unwrap();
    for item in data.db.open_tree("users").unwrap().iter() {
        let (_, v) = item.unwrap();
        let v = String::from_utf8_lossy(&v);
        assert!(v.contains("$argon2id$") && !v.contains(PASSWORD), "{v}");
    }
}

#[test]
fn curl_submits_with_ssl_reqd() {
    let v = std::process::Command::new("curl").arg("-V").output();
    let v = v.expect("this test needs curl, which is not installed (.ci/run installs it)");
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("smtp"),
        "this test needs curl with SMTP support, and `curl -V` does not list smtp"
    );
    let s = server("");
    let port = s.addr("submission").port();
    let mail = s.path().join("mail.txt");
    std::fs::write(&mail, "From: alice@example.test\r\nTo: friend@remote.test\r\nSubject: curl\r\n\r\nvia curl\r\n")
        .unwrap();
    let child = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--ssl-reqd", "--max-time", "30"])
        .args(["--cacert", s.path().join("data/tls/main.crt").to_str().unwrap()])
        .args(["--resolve", &format!("mx.example.test:{port}:127.0.0.1")])
        .arg(format!("smtp://mx.example.test:{port}"))
        .args(["--user", &format!("alice@example.test:{PASSWORD}")])
        .args(["--mail-from", "alice@example.test", "--mail-rcpt", "friend@remote.test"])
        .args(["--upload-file", mail.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(60));
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let q = s.queue();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["auth_user"], "alice@example.test");
}

/// Finding 8 (SPEC §4, §13.8): `allow_plaintext_auth` does not open a hole
/// in `require_tls`: no AUTH before STARTTLS, `538 5.7.11` if tried, AUTH
/// works after it; check-config warns that the setting has no effect.
#[test]
fn require_tls_wins_over_allow_plaintext_auth() {
    let extra = r#"
[[virtual_server]]
name = "strict"
protocol = "smtp"
listen = ["127.0.0.1:0"]
tls = "starttls"
certificates = ["main"]
require_tls = true
allow_plaintext_auth = true
auth = "required"
"#;
    let s = TestServer::start(&config("", extra));
    s.add_user("alice@example.test", PASSWORD);
    let mut c = Client::connect(s.addr("strict"));
    c.reply();
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.has("AUTH"), "{ehlo:?}");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD)));
    assert_eq!((r.code, r.text().starts_with("5.7.11")), (538, true), "{r:?}");
    let r = c.cmd("AUTH LOGIN");
    assert_eq!(r.code, 538, "{r:?}");
    let ehlo = c.starttls();
    assert!(ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"), "{ehlo:?}");
    c.expect(&format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD)), 235);

    let out = s.cli(&["check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let warning = stdout.lines().find(|l| l.contains("warning:") && l.contains("allow_plaintext_auth"));
    let warning = warning.unwrap_or_else(|| panic!("no allow_plaintext_auth warning in:\n{stdout}"));
    assert!(warning.contains("\"strict\"") && warning.contains("require_tls"), "{warning}");
    // the servers without the combination are not warned about
    assert!(!stdout.contains("\"mx\": allow_plaintext_auth"), "{stdout}");
}

/// Finding 12: the throttle counts attempts in flight, so sessions started
/// in parallel cannot all get past the limit before any has failed. Every
/// session opens AUTH LOGIN before any password is sent; only `limit` of
/// them get to be judged.
#[test]
fn parallel_sessions_cannot_race_past_the_failure_limit() {
    use base64::Engine;
    use std::sync::{Arc, Barrier};
    let s = server("[auth]\nfailure_limit = 3\nfailure_window = \"10m\"\nfailure_delay = \"100ms\"\n");
    let addr = s.addr("submissions");
    const SESSIONS: usize = 10;
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let threads: Vec<_> = (0..SESSIONS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
                let mut c = Client::connect_tls(addr, "mx.example.test");
                c.reply();
                c.expect("EHLO client.test", 250);
                let started = c.cmd("AUTH LOGIN");
                // no password goes out before every session has started AUTH
                barrier.wait();
                if started.code != 334 {
                    return started;
                }
                c.expect(&b64("alice@example.test"), 334);
                c.cmd(&b64("wrong password"))
            })
        })
        .collect();
    let replies: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let judged = replies.iter().filter(|r| r.code == 535).count();
    let refused = replies.iter().filter(|r| r.code == 454 && r.text().starts_with("4.7.0")).count();
    assert_eq!((judged, refused), (3, SESSIONS - 3), "{replies:?}");
    // the limit is used up: even the right password waits for the window
    let mut c = Client::connect_tls(addr, "mx.example.test");
    c.reply();
    c.expect("EHLO client.test", 250);
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD))).code, 454);
}
