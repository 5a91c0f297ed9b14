//! POP3 against the real server on 127.0.0.1:0 with real clients: Python's
//! poplib over STLS and implicit TLS, curl over pop3s with certificate
//! verification. Messages are put in the mailbox store directly while the
//! server is stopped (the store's own API, as local delivery will call it),
//! except in the end-to-end test that needs the queue scheduler.

mod common;

use common::*;
use postern::auth::Accounts;
use postern::datadir::DataDir;
use postern::mailbox::MailboxStore;
use std::process::Command;
use std::time::Duration;

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "s3cret pass";

/// A message as the queue would hand it over: our Received header first,
/// CRLF lines, lines that need dot-stuffing, 8-bit text.
fn message(n: u32) -> Vec<u8> {
    format!(
        "Received: from client.test (client.test [127.0.0.1])\r\n\tby mx.example.test with ESMTPS id 0000000000{n};\r\n\tSun, 22 Nov 2026 10:00:00 +0000\r\n\
         From: bob@example.org\r\nTo: alice@example.test\r\nSubject: message {n}\r\n\r\n\
         Hello Alice, this is message {n}.\r\n.a line that starts with a dot\r\n.\r\n..two dots\r\nGrüße\r\nend\r\n"
    )
    .into_bytes()
}

fn pop3_config(pop3_extra: &str, extra: &str) -> String {
    config(
        "",
        &format!(
            r#"
[[virtual_server]]
name = "pop3"
protocol = "pop3"
listen = ["127.0.0.1:0"]
tls = "starttls"
certificates = ["main"]
{pop3_extra}

[[virtual_server]]
name = "pop3s"
protocol = "pop3"
listen = ["127.0.0.1:0"]
tls = "implicit"
certificates = ["main"]

{extra}
"#
        ),
    )
}

/// Stop the server, deliver `messages` to `user` through the store, start again.
fn deliver_offline(s: &mut TestServer, user: &str, messages: &[Vec<u8>]) -> Vec<u32> {
    s.stop();
    let uids = {
        let data = DataDir::open(&s.path().join("data")).expect("data dir");
        let accounts = Accounts::open(&data.db).expect("accounts");
        let (store, _) = MailboxStore::open(&data.db, &data.path, accounts).expect("mailbox store");
        messages.iter().map(|m| store.deliver(user, m, 1_795_000_000).expect("deliver")).collect()
    };
    s.start_again();
    uids
}

fn server_with_mail(pop3_extra: &str, extra: &str, n: u32) -> TestServer {
    let mut s = TestServer::start(&pop3_config(pop3_extra, extra));
    s.add_user(ALICE, PASSWORD);
    let msgs: Vec<Vec<u8>> = (1..=n).map(message).collect();
    assert_eq!(deliver_offline(&mut s, ALICE, &msgs), (1..=n).collect::<Vec<u32>>());
    s
}

/// Python prelude: a TLS context that trusts our self-signed certificate.
const PY: &str = r#"
import poplib, ssl, json, base64, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def b64(lines):
    return base64.b64encode(b"\r\n".join(lines) + b"\r\n").decode()
"#;

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn poplib_over_stls_and_implicit_tls_reads_and_deletes() {
    let mut s = server_with_mail("", "", 2);
    let script = format!(
        r#"{PY}
p = poplib.POP3("127.0.0.1", {port}, timeout=15)
p.stls(ctx)
p.user("{ALICE}")
p.pass_("{PASSWORD}")
out = {{"stat": p.stat()}}
out["list"] = [l.decode() for l in p.list()[1]]
out["uidl"] = [l.decode() for l in p.uidl()[1]]
out["top"] = b64(p.top(2, 1)[1])
resp, lines, octets = p.retr(1)
out["retr1"], out["octets1"] = b64(lines), octets
out["retr2"] = b64(p.retr(2)[1])
out["dele"] = p.dele(1).decode()
out["quit"] = p.quit().decode()
print(json.dumps(out))
"#,
        port = s.addr("pop3").port()
    );
    let v = json(&python(&script));
    let (m1, m2) = (message(1), message(2));
    assert_eq!(v["stat"], serde_json::json!([2, m1.len() + m2.len()]));
    assert_eq!(v["list"], serde_json::json!([format!("1 {}", m1.len()), format!("2 {}", m2.len())]));
    let uidl: Vec<String> = v["uidl"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    assert!(uidl[0].starts_with("1 ") && uidl[1].starts_with("2 ") && uidl[0][2..] != uidl[1][2..], "{uidl:?}");
    assert_eq!(v["retr1"], b64(&m1), "RETR returns the stored message byte for byte");
    assert_eq!(v["octets1"], m1.len());
    assert_eq!(v["retr2"], b64(&m2));
    let text = String::from_utf8(m2.clone()).unwrap();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    assert_eq!(v["top"], b64(format!("{head}\r\n\r\nHello Alice, this is message 2.\r\n").as_bytes()));
    assert!(v["dele"].as_str().unwrap().starts_with("+OK"));
    assert!(v["quit"].as_str().unwrap().starts_with("+OK"));

    // a new session, over implicit TLS, no longer sees message 1; UIDLs are stable
    let after = |port: u16| {
        format!(
            r#"{PY}
p = poplib.POP3_SSL("127.0.0.1", {port}, context=ctx, timeout=15)
p.user("{ALICE}")
p.pass_("{PASSWORD}")
print(json.dumps({{"stat": p.stat(), "list": [l.decode() for l in p.list()[1]], "uidl": [l.decode() for l in p.uidl()[1]],
                  "top": b64(p.top(1, 1)[1]), "retr": b64(p.retr(1)[1])}}))
p.quit()
"#
        )
    };
    let v = json(&python(&after(s.addr("pop3s").port())));
    assert_eq!(v["stat"], serde_json::json!([1, m2.len()]));
    assert_eq!(v["list"], serde_json::json!([format!("1 {}", m2.len())]));
    assert_eq!(v["uidl"], serde_json::json!([format!("1 {}", &uidl[1][2..])]));
    assert_eq!(v["top"], b64(format!("{head}\r\n\r\nHello Alice, this is message 2.\r\n").as_bytes()));
    assert_eq!(v["retr"], b64(&m2));
    s.restart();
    assert_eq!(json(&python(&after(s.addr("pop3s").port())))["uidl"], v["uidl"], "UIDL survives a restart");
}

#[test]
fn require_tls_refuses_credentials_until_stls() {
    // allow_plaintext_auth would permit them; require_tls overrides it
    let s = server_with_mail("require_tls = true\nallow_plaintext_auth = true", "", 1);
    let script = format!(
        r#"{PY}
p = poplib.POP3("127.0.0.1", {port}, timeout=15)
out = {{"capa": sorted(p.capa().keys())}}
for cmd in (lambda: p.user("{ALICE}"), lambda: p.pass_("{PASSWORD}"), lambda: p._shortcmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzM2NyZXQgcGFzcw==")):
    try:
        out.setdefault("before", []).append(cmd().decode())
    except poplib.error_proto as e:
        out.setdefault("before", []).append(e.args[0].decode())
p.stls(ctx)
out["capa_tls"] = sorted(p.capa().keys())
out["user"] = p.user("{ALICE}").decode()
out["pass"] = p.pass_("{PASSWORD}").decode()
out["stat"] = p.stat()
p.quit()
print(json.dumps(out))
"#,
        port = s.addr("pop3").port()
    );
    let v = json(&python(&script));
    let capa: Vec<&str> = v["capa"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(capa.contains(&"STLS") && !capa.contains(&"USER") && !capa.contains(&"SASL"), "{capa:?}");
    for r in v["before"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        assert!(r.starts_with("-ERR") && r.contains("requires a secure channel") && r.contains("STLS"), "{r}");
    }
    let capa: Vec<&str> = v["capa_tls"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(capa.contains(&"USER") && capa.contains(&"SASL") && !capa.contains(&"STLS"), "{capa:?}");
    assert!(v["pass"].as_str().unwrap().starts_with("+OK"), "{v}");
    assert_eq!(v["stat"][0], 1);
}

#[test]
fn a_second_session_on_the_maildrop_is_refused_in_use() {
    let s = server_with_mail("", "", 1);
    let script = format!(
        r#"{PY}
def login():
    p = poplib.POP3_SSL("127.0.0.1", {port}, context=ctx, timeout=15)
    p.user("{ALICE}")
    return p, p.pass_("{PASSWORD}").decode()
first, r1 = login()
second = poplib.POP3_SSL("127.0.0.1", {port}, context=ctx, timeout=15)
second.user("{ALICE}")
try:
    r2 = second.pass_("{PASSWORD}").decode()
except poplib.error_proto as e:
    r2 = e.args[0].decode()
first.quit()
third, r3 = login()
third.quit()
print(json.dumps([r1, r2, r3]))
"#,
        port = s.addr("pop3s").port()
    );
    let v = json(&python(&script));
    assert!(v[0].as_str().unwrap().starts_with("+OK"), "{v}");
    assert!(v[1].as_str().unwrap().starts_with("-ERR [IN-USE]"), "{v}");
    assert!(v[2].as_str().unwrap().starts_with("+OK"), "the lock goes with the session: {v}");
}

#[test]
fn wrong_passwords_are_refused_then_throttled() {
    let s = server_with_mail("", "[auth]\nfailure_limit = 2\nfailure_delay = \"50ms\"\n", 0);
    let script = format!(
        r#"{PY}
out = []
for pw in ("wrong", "also wrong", "{PASSWORD}"):
    p = poplib.POP3_SSL("127.0.0.1", {port}, context=ctx, timeout=15)
    p.user("{ALICE}")
    try:
        out.append(p.pass_(pw).decode())
    except poplib.error_proto as e:
        out.append(e.args[0].decode())
print(json.dumps(out))
"#,
        port = s.addr("pop3s").port()
    );
    let v = json(&python(&script));
    assert_eq!(v[0], "-ERR [AUTH] Authentication failed");
    assert_eq!(v[1], "-ERR [AUTH] Authentication failed");
    assert!(v[2].as_str().unwrap().starts_with("-ERR [SYS/TEMP] Too many authentication failures"), "{v}");
    assert!(!s.log().contains(PASSWORD), "passwords are never logged");
}

/// SPEC §12.5: a USER pipelined behind STLS is dropped, never executed
/// (CVE-2011-0411), so the PASS after the handshake has no USER to follow.
#[test]
fn commands_pipelined_after_stls_are_discarded() {
    let s = server_with_mail("allow_plaintext_auth = true", "", 0);
    let script = format!(
        r#"{PY}
import socket
raw = socket.create_connection(("127.0.0.1", {port}), timeout=15)
f = raw.makefile("rb")
greeting = f.readline()
raw.sendall(b"STLS\r\nUSER {ALICE}\r\n")
ready = f.readline()
tls = ctx.wrap_socket(raw, server_hostname="mx.example.test")
t = tls.makefile("rb")
tls.sendall(b"PASS {PASSWORD}\r\n")
print(json.dumps([greeting.decode(), ready.decode(), t.readline().decode()]))
"#,
        port = s.addr("pop3").port()
    );
    let v = json(&python(&script));
    assert!(v[0].as_str().unwrap().starts_with("+OK mx.example.test POP3 server ready"), "{v}");
    assert_eq!(v[1], "+OK Begin TLS negotiation\r\n");
    assert_eq!(v[2], "-ERR Send USER first\r\n", "the pipelined USER must not have run");
}

/// Pipelined RETRs of large messages are answered in bounded slices, all
/// of them, in order (the driver's `Next::Continue`), and QUIT still works.
#[test]
fn pipelined_retrs_of_large_messages_are_all_answered() {
    let mut s = TestServer::start(&pop3_config("", ""));
    s.add_user(ALICE, PASSWORD);
    let big = |n: u32| {
        let mut m = message(n);
        m.extend(format!("{}\r\n", "x".repeat(998)).repeat(300).into_bytes());
        m
    };
    deliver_offline(&mut s, ALICE, &[big(1), big(2), big(3)]);
    let script = format!(
        r#"{PY}
import socket, zlib
tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port}), timeout=15), server_hostname="x")
f = tls.makefile("rb")
f.readline()
tls.sendall(b"USER {ALICE}\r\nPASS {PASSWORD}\r\n")
f.readline(); f.readline()
tls.sendall(b"RETR 1\r\nRETR 2\r\nRETR 3\r\nRETR 1\r\nDELE 2\r\nQUIT\r\n")
out = []
for _ in range(4):
    status = f.readline().decode().strip()
    body = b""
    while True:
        line = f.readline()
        if line == b".\r\n" or not line:
            break
        body += line[1:] if line.startswith(b"..") else line
    # the harness reads stdout only at exit: keep it small
    out.append([status, len(body), zlib.crc32(body)])
out.append(f.readline().decode().strip())
out.append(f.readline().decode().strip())
print(json.dumps(out))
"#,
        port = s.addr("pop3s").port()
    );
    let v = json(&python(&script));
    for (i, n) in [1, 2, 3, 1].iter().enumerate() {
        let m = big(*n);
        assert_eq!(
            v[i],
            serde_json::json!([format!("+OK {} octets", m.len()), m.len(), crc32fast::hash(&m)]),
            "RETR #{i}"
        );
    }
    assert_eq!(v[4], "+OK Message deleted");
    assert_eq!(v[5], "+OK Bye, 2 messages left");
}

fn curl_has_pop3s() -> bool {
    match Command::new("curl").arg("-V").output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with("Protocols:") && l.split_whitespace().any(|p| p == "pop3s")),
        Err(_) => false,
    }
}

#[test]
fn curl_lists_and_retrieves_over_verified_tls() {
    assert!(
        curl_has_pop3s(),
        "this test needs curl with POP3S support: curl is missing or `curl -V` does not list pop3s (.ci/run installs it)"
    );
    // a certificate whose SANs cover the address curl connects to
    let certs = tempfile::tempdir().unwrap();
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let (cert, key) = postern::cert::self_signed_pem(&names, postern::cert::KeyType::EcdsaP256).unwrap();
    let (cert_path, key_path) = (certs.path().join("pop.crt"), certs.path().join("pop.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let extra =
        format!("[tls.certificates.pop]\ncert = \"{}\"\nkey = \"{}\"\n", cert_path.display(), key_path.display());
    let conf = pop3_config("", &extra)
        .replace("tls = \"implicit\"\ncertificates = [\"main\"]", "tls = \"implicit\"\ncertificates = [\"pop\"]");
    let mut s = TestServer::start(&conf);
    s.add_user(ALICE, PASSWORD);
    deliver_offline(&mut s, ALICE, &[message(1), message(2)]);
    let curl = |url: String| {
        let child = Command::new("curl")
            .args(["-sS", "--ssl-reqd", "--max-time", "20", "--cacert"])
            .arg(&cert_path)
            .args(["--user", &format!("{ALICE}:{PASSWORD}"), &url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("curl");
        let out = wait_output(child, Duration::from_secs(30));
        assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let pop3s = format!("pop3s://127.0.0.1:{}", s.addr("pop3s").port());
    let list = String::from_utf8(curl(format!("{pop3s}/"))).unwrap();
    assert_eq!(list, format!("1 {}\r\n2 {}\r\n", message(1).len(), message(2).len()));
    assert_eq!(curl(format!("{pop3s}/2")), message(2), "curl gets the message byte for byte");
    // curl logs in with AUTH PLAIN when CAPA offers it
    assert!(s.log().contains("method=\"AUTH PLAIN\""), "{}", s.log());
    // and over STLS on the other listener (its certificate is "main": not verified here)
    let stls = format!("pop3://127.0.0.1:{}/1", s.addr("pop3").port());
    let child = Command::new("curl")
        .args(["-sS", "--ssl-reqd", "--insecure", "--max-time", "20", "--user", &format!("{ALICE}:{PASSWORD}"), &stls])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    let out = wait_output(child, Duration::from_secs(30));
    assert!(out.status.success(), "curl {stls}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, message(1));
}

/// The whole path a user sees: smtplib with STARTTLS → MX → queue → local
/// delivery → POP3 over STLS and over implicit TLS: STAT, LIST, UIDL, TOP
/// and RETR agree byte for byte (our Received header first); DELE + QUIT
/// removes the message; a new session no longer sees it.
#[test]
fn smtp_to_pop3_end_to_end() {
    let s = TestServer::start(&pop3_config("", ""));
    s.add_user(ALICE, PASSWORD);
    let send = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", {port}, timeout=15)
s.starttls(context=ctx)
s.sendmail("bob@example.org", ["{ALICE}"], b"Subject: end to end\r\n\r\nfrom smtplib\r\n.dot line\r\n")
s.quit()
"#,
        port = s.addr("mx").port()
    );
    python(&send);
    let implicit = format!(
        r#"{PY}
p = poplib.POP3_SSL("127.0.0.1", {port}, context=ctx, timeout=15)
p.user("{ALICE}")
p.pass_("{PASSWORD}")
n = p.stat()[0]
print(json.dumps({{"n": n, "msg": b64(p.retr(n)[1]) if n else ""}}))
p.quit()
"#,
        port = s.addr("pop3s").port()
    );
    let mut last = serde_json::Value::Null;
    let arrived = eventually(Duration::from_secs(30), || {
        last = json(&python(&implicit));
        last["n"].as_u64().unwrap_or(0) > 0
    });
    assert!(arrived, "the message did not reach alice's INBOX within 30 s; log:\n{}", s.log());
    use base64::Engine;
    let msg = base64::engine::general_purpose::STANDARD.decode(last["msg"].as_str().unwrap()).unwrap();
    let text = String::from_utf8_lossy(&msg);
    assert!(text.starts_with("Received: from "), "our Received header comes first: {text}");
    assert!(text.ends_with("\r\n\r\nfrom smtplib\r\n.dot line\r\n"), "{text}");
    assert!(s.queue().is_empty(), "delivered and gone from the queue");

    // the same message over STLS, every command, then DELE + QUIT
    let stls = format!(
        r#"{PY}
p = poplib.POP3("127.0.0.1", {port}, timeout=15)
p.stls(context=ctx)
p.user("{ALICE}")
p.pass_("{PASSWORD}")
n, size = p.stat()
listed = p.list()[1]
uidl = p.uidl()[1]
top = p.top(1, 0)[1]
msg = p.retr(1)[1]
p.dele(1)
p.quit()
print(json.dumps({{"n": n, "size": size, "list": [l.decode() for l in listed], "uidl": [u.decode() for u in uidl],
                   "top": b64(top), "msg": b64(msg)}}))
"#,
        port = s.addr("pop3").port()
    );
    let v = json(&python(&stls));
    assert_eq!(v["n"], 1);
    assert_eq!(v["size"].as_u64().unwrap() as usize, msg.len(), "STAT counts the stored bytes");
    assert_eq!(v["list"][0], format!("1 {}", msg.len()));
    assert_eq!(v["uidl"].as_array().unwrap().len(), 1);
    let retr = base64::engine::general_purpose::STANDARD.decode(v["msg"].as_str().unwrap()).unwrap();
    assert_eq!(retr, msg, "STLS and implicit TLS return the same bytes");
    let top = base64::engine::general_purpose::STANDARD.decode(v["top"].as_str().unwrap()).unwrap();
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(top, msg[..head_end].to_vec(), "TOP 1 0 is the header section");
    let after = json(&python(&implicit));
    assert_eq!(after["n"], 0, "deleted at QUIT");
}

/// SIGKILL while the queue is delivering into the mailbox: after a restart
/// every message is in alice's INBOX at least once (a duplicate is allowed,
/// a loss is not), and the UIDs seen before the restart are still there.
#[test]
fn sigkill_during_local_delivery_loses_nothing() {
    let mut s = TestServer::start(&pop3_config("", ""));
    s.add_user(ALICE, PASSWORD);
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    for i in 0..40 {
        let r = c.send_mail("bob@example.org", &[ALICE], &format!("Subject: crash-{i}\r\n\r\nbody {i}\r\n"));
        assert_eq!(r.code, 250);
    }
    // kill while deliveries are (most likely) under way
    s.kill9();
    s.start_again();
    assert!(eventually(Duration::from_secs(30), || s.queue().is_empty()), "the queue drains after the restart");
    // ports are chosen anew at each start
    let list = |s: &TestServer| {
        format!(
            r#"{PY}
p = poplib.POP3_SSL("127.0.0.1", {port}, context=ctx, timeout=15)
p.user("{ALICE}")
p.pass_("{PASSWORD}")
subjects = []
for line in p.uidl()[1]:
    n = int(line.split()[0])
    head = b"\r\n".join(p.top(n, 0)[1]).decode()
    subjects += [l[9:] for l in head.split("\r\n") if l.startswith("Subject: ")]
uids = [l.decode().split()[1] for l in p.uidl()[1]]
p.quit()
print(json.dumps({{"subjects": subjects, "uids": uids}}))
"#,
            port = s.addr("pop3s").port()
        )
    };
    let before = json(&python(&list(&s)));
    let subjects: Vec<&str> = before["subjects"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for i in 0..40 {
        assert!(subjects.contains(&format!("crash-{i}").as_str()), "crash-{i} lost: {subjects:?}");
    }
    s.restart();
    let after = json(&python(&list(&s)));
    assert_eq!(after["uids"], before["uids"], "UIDs are stable across restarts");
}
