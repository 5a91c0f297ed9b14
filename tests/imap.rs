//! IMAP4 (issue 11, SPEC §9) against the real server on 127.0.0.1:0 with
//! real clients: Python's imaplib over STARTTLS and implicit TLS (helpers in
//! tests/imap/imaptest.py), a raw line client where exact response lines
//! matter, imapflow (node) with IDLE, and curl over imaps with certificate
//! verification. Mail arrives over SMTP through the queue (so the bytes are
//! the MX's, with our Received header first) or by APPEND.

mod common;

use base64::Engine;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const PASSWORD: &str = "s3cret pass";

/// Where the Python helpers live.
const PYLIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap");

fn imap_config(imap_extra: &str, extra: &str) -> String {
    config(
        "",
        &format!(
            r#"
[[virtual_server]]
name = "imap"
protocol = "imap"
listen = ["127.0.0.1:0"]
tls = "starttls"
certificates = ["main"]
{imap_extra}

[[virtual_server]]
name = "imaps"
protocol = "imap"
listen = ["127.0.0.1:0"]
tls = "implicit"
certificates = ["main"]

{extra}
"#
        ),
    )
}

/// A server with alice and bob.
fn server(imap_extra: &str) -> TestServer {
    let s = TestServer::start(&imap_config(imap_extra, ""));
    s.add_user(ALICE, PASSWORD);
    s.add_user(BOB, PASSWORD);
    s
}

/// Run a Python script with the helpers imported and the ports and
/// credentials defined (`PORT` STARTTLS, `SPORT` implicit TLS, `MX` SMTP,
/// `ALICE`, `BOB`, `PASSWORD`); parse the JSON it prints last.
fn py(s: &TestServer, body: &str) -> serde_json::Value {
    let script = format!(
        "import sys\nsys.path.insert(0, {PYLIB:?})\nfrom imaptest import *\n\
         PORT, SPORT, MX = {}, {}, {}\nALICE, BOB, PASSWORD = {ALICE:?}, {BOB:?}, {PASSWORD:?}\n{body}",
        s.addr("imap").port(),
        s.addr("imaps").port(),
        s.addr("mx").port()
    );
    let out = python(&script);
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn unb64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a base64 string: {v}")))
        .unwrap()
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// SMTP data as the client sends it: dot-stuffed (the message itself is
/// what the MX stores after un-stuffing).
fn dot_stuff(msg: &str) -> String {
    msg.split_inclusive("\r\n").map(|l| if l.starts_with('.') { format!(".{l}") } else { l.to_string() }).collect()
}

/// Deliver `msg` to `to` over SMTP through the MX and wait until the queue
/// has delivered it (so UIDs follow the order of the calls).
fn smtp_deliver(s: &TestServer, to: &str, msg: &str) {
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let r = c.send_mail("bob@example.org", &[to], &dot_stuff(msg));
    assert_eq!(r.code, 250, "{r:?}");
    c.expect("QUIT", 221);
    assert!(
        eventually(Duration::from_secs(30), || s.queue().is_empty()),
        "the message to {to} was not delivered within 30 s; log:\n{}",
        s.log()
    );
}

/// The stored message is our Received header followed by exactly what was
/// sent: split it off and return (the Received header, the rest).
fn split_received(stored: &[u8]) -> (String, Vec<u8>) {
    assert!(stored.starts_with(b"Received: "), "our Received header comes first: {}", String::from_utf8_lossy(stored));
    let mut at = 0;
    loop {
        let end = stored[at..].windows(2).position(|w| w == b"\r\n").map(|p| at + p + 2).expect("a header line");
        at = end;
        if !matches!(stored.get(at), Some(b' ' | b'\t')) {
            break;
        }
    }
    (String::from_utf8_lossy(&stored[..at]).into_owned(), stored[at..].to_vec())
}

// ---------------------------------------------------------------- messages

const PLAIN: &str = "From: Bob Sender <bob@example.org>\r\n\
To: alice@example.test\r\n\
Subject: plain hello\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <plain-1@example.org>\r\n\
X-Tracking: alpha-42\r\n\
\r\n\
Hello Alice, this is plain.\r\n\
.a line that starts with a dot\r\n\
end\r\n";

/// The part bodies end with a line break before the boundary's CRLF, so
/// their line counts are the same whether a server counts line ends or lines.
const QP_BODY: &str = "Die Rechnung f=C3=BCr November liegt bei.\r\nStichwort: quokka\r\n";
const HTML_TEXT: &str = "<p>Die Rechnung f\u{fc}r November liegt bei. Codewort: wombat</p>\r\n";
const PDF: &[u8] =
    b"%PDF-1.4\n%\xc3\xa4\xc3\xbc\n1 0 obj\n<</Type/Catalog>>\nendobj\ntrailer\n<</Root 1 0 R>>\n%%EOF\n";
const FROM_NAME: &str = "=?utf-8?b?SsO2cmcgTcO8bGxlcg==?="; // Jörg Müller
const SUBJECT_2047: &str = "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="; // Grüße aus Köln
const FILENAME_2047: &str = "=?utf-8?q?r=c3=a9sum=c3=a9.pdf?="; // résumé.pdf

/// Base64 in 76-character lines, each ending in CRLF.
fn b64_lines(b: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(b);
    s.as_bytes().chunks(76).map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap())).collect()
}

/// multipart/mixed: [multipart/alternative: [text/plain QP, text/html
/// base64], application/pdf attachment base64]; non-ASCII From name,
/// Subject and attachment name, all RFC 2047 encoded.
fn multipart() -> String {
    format!(
        "From: {FROM_NAME} <jorg@example.org>\r\n\
To: Alice <alice@example.test>\r\n\
Cc: carol@example.net\r\n\
Subject: {SUBJECT_2047}\r\n\
Date: Tue, 24 Nov 2026 11:30:00 +0100\r\n\
Message-ID: <multi-2@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer-bound\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--outer-bound\r\n\
Content-Type: multipart/alternative; boundary=\"inner-bound\"\r\n\
\r\n\
--inner-bound\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
{QP_BODY}\r\n\
--inner-bound\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
{html}\r\n\
--inner-bound--\r\n\
\r\n\
--outer-bound\r\n\
Content-Type: application/pdf; name=\"{FILENAME_2047}\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"{FILENAME_2047}\"\r\n\
\r\n\
{pdf}\r\n\
--outer-bound--\r\n",
        html = b64_lines(HTML_TEXT.as_bytes()),
        pdf = b64_lines(PDF),
    )
}

fn lines_of(body: &str) -> usize {
    assert!(body.ends_with("\r\n"));
    body.matches("\r\n").count()
}

/// The BODYSTRUCTURE RFC 3501 §7.4.2 gives [`multipart`] (every extension
/// field, as the grammar orders them).
fn multipart_bodystructure() -> String {
    let html = b64_lines(HTML_TEXT.as_bytes());
    let pdf = b64_lines(PDF);
    format!(
        "(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" {} {} NIL NIL NIL NIL)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"base64\" {} {} NIL NIL NIL NIL) \
\"alternative\" (\"boundary\" \"inner-bound\") NIL NIL NIL)\
(\"application\" \"pdf\" (\"name\" \"{FILENAME_2047}\") NIL NIL \"base64\" {} NIL \
(\"attachment\" (\"filename\" \"{FILENAME_2047}\")) NIL NIL) \
\"mixed\" (\"boundary\" \"outer-bound\") NIL NIL NIL)",
        QP_BODY.len(),
        lines_of(QP_BODY),
        html.len(),
        lines_of(&html),
        pdf.len(),
    )
}

fn multipart_envelope() -> String {
    let from = format!("((\"{FROM_NAME}\" NIL \"jorg\" \"example.org\"))");
    format!(
        "(\"Tue, 24 Nov 2026 11:30:00 +0100\" \"{SUBJECT_2047}\" {from} {from} {from} \
((\"Alice\" NIL \"alice\" \"example.test\")) ((NIL NIL \"carol\" \"example.net\")) NIL NIL \"<multi-2@example.org>\")"
    )
}

/// A large message (for LARGER/SMALLER).
fn large() -> String {
    format!(
        "From: carol@example.net\r\nTo: alice@example.test\r\nSubject: large report\r\n\
Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <large-3@example.net>\r\n\r\n{}",
        "0123456789 the quarterly figures, line after line of them ..........................\r\n".repeat(300)
    )
}

/// A small message for APPEND, numbered.
fn small(n: u32) -> String {
    format!(
        "From: dave@example.com\r\nTo: alice@example.test\r\nSubject: appended {n}\r\n\
Date: Wed, 01 Jan 2020 12:00:00 +0000\r\nMessage-ID: <app-{n}@example.com>\r\n\r\nbody of appended {n}\r\n"
    )
}

// ---------------------------------------------------------------- raw client

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A line-level IMAP client in Rust, for what a test must do between two
/// bytes (kill the server mid-literal, wait for BYE): `line` returns one
/// response line with its literals inlined.
struct Imap {
    s: Box<dyn Stream>,
    buf: Vec<u8>,
    n: u32,
    greeting: String,
}

impl Imap {
    fn plain(addr: SocketAddr) -> Imap {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut c = Imap { s: Box::new(tcp), buf: Vec::new(), n: 0, greeting: String::new() };
        c.greeting = c.line().expect("greeting");
        c
    }

    fn tls(addr: SocketAddr) -> Imap {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        let tls = tls_connect(tcp, client_tls_default(), "mx.example.test").expect("implicit TLS handshake");
        let mut c = Imap { s: Box::new(tls), buf: Vec::new(), n: 0, greeting: String::new() };
        c.greeting = c.line().expect("greeting");
        c
    }

    fn send(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.s.write_all(b)?;
        self.s.flush()
    }

    fn raw_line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return Ok(self.buf.drain(..p + 2).collect());
            }
            let mut b = [0u8; 16384];
            match self.s.read(&mut b) {
                Ok(0) => return Err(format!("connection closed; partial {:?}", String::from_utf8_lossy(&self.buf))),
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn line(&mut self) -> Result<String, String> {
        let mut l = self.raw_line()?;
        loop {
            let text = String::from_utf8_lossy(&l[..l.len() - 2]).into_owned();
            let lit =
                text.strip_suffix('}').and_then(|t| t.rsplit_once('{')).and_then(|(_, n)| n.parse::<usize>().ok());
            let Some(n) = lit else { return Ok(text) };
            while self.buf.len() < n {
                let mut b = [0u8; 16384];
                match self.s.read(&mut b) {
                    Ok(0) => return Err("connection closed inside a literal".into()),
                    Ok(k) => self.buf.extend_from_slice(&b[..k]),
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            let body: Vec<u8> = self.buf.drain(..n).collect();
            l.extend_from_slice(&body);
            let rest = self.raw_line()?;
            l.extend_from_slice(&rest);
        }
    }

    /// Send a tagged command; return (untagged lines, tagged line).
    fn cmd(&mut self, text: &str) -> (Vec<String>, String) {
        self.n += 1;
        let tag = format!("r{}", self.n);
        self.send(format!("{tag} {text}\r\n").as_bytes()).expect("send");
        self.until(&tag)
    }

    fn until(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut lines = Vec::new();
        loop {
            let l = self.line().unwrap_or_else(|e| panic!("waiting for {tag}: {e}; so far {lines:?}"));
            if l.starts_with(&format!("{tag} ")) {
                return (lines, l);
            }
            lines.push(l);
        }
    }

    fn ok(&mut self, text: &str) -> Vec<String> {
        let (lines, tagged) = self.cmd(text);
        assert!(tagged.split(' ').nth(1) == Some("OK"), "{text} -> {tagged} (untagged {lines:?})");
        lines
    }

    fn login(&mut self, user: &str) {
        self.ok(&format!("LOGIN \"{user}\" \"{PASSWORD}\""));
    }

    /// APPEND with a synchronising literal; returns the tagged line.
    fn append(&mut self, folder: &str, msg: &[u8]) -> String {
        self.n += 1;
        let tag = format!("r{}", self.n);
        self.send(format!("{tag} APPEND {folder} {{{}}}\r\n", msg.len()).as_bytes()).expect("send");
        let cont = self.line().expect("continuation");
        assert!(cont.starts_with('+'), "APPEND wants a continuation, got {cont}");
        self.send(msg).expect("send literal");
        self.send(b"\r\n").expect("send");
        self.until(&tag).1
    }
}

/// Flags without `\Recent`, which a server may or may not show (IMAP4rev2
/// drops it), so that flag lists compare exactly otherwise.
fn no_recent(s: &str) -> String {
    s.replace(" \\Recent", "").replace("\\Recent ", "").replace("\\Recent", "")
}

/// Whether a FETCH line names UID `uid` (items in any order).
fn has_uid(l: &str, uid: u32) -> bool {
    l.contains(&format!("UID {uid} ")) || l.contains(&format!("UID {uid})"))
}

/// `[APPENDUID v u]` in a tagged OK: (v, u).
fn appenduid(tagged: &str) -> (u32, u32) {
    let rest = tagged.split("[APPENDUID ").nth(1).unwrap_or_else(|| panic!("no APPENDUID in {tagged}"));
    let mut it = rest.split([' ', ']']);
    (it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap())
}

/// The number in a `[CODE n]` of one of `lines`.
fn code_number(lines: &[String], code: &str) -> u64 {
    let pat = format!("[{code} ");
    lines
        .iter()
        .find_map(|l| l.split(&pat).nth(1).and_then(|r| r.split(']').next()).and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no [{code} n] in {lines:?}"))
}

// ---------------------------------------------------------------- 1. imaplib

#[test]
fn capability_logindisabled_before_tls_and_login_over_starttls_and_implicit_tls() {
    let s = server("");
    let v = py(
        &s,
        r#"
r = {}
m = imaplib.IMAP4("127.0.0.1", PORT, timeout=TIMEOUT)
r["greeting"] = m.welcome.decode()
typ, d = m.capability()
r["caps_plain"] = d[0].decode().split()
r["login_plain"] = attempt(lambda: m.login(ALICE, PASSWORD))
m.starttls(ssl_context=ctx)
typ, d = m.capability()
r["caps_tls"] = d[0].decode().split()
typ, d = m.login(ALICE, PASSWORD)
r["login"] = [typ, d[0].decode()]
typ, d = m.capability()
r["caps_auth"] = d[0].decode().split()
typ, d = m.select("INBOX")
r["select"] = [typ, d[0].decode()]
r["logout"] = m.logout()[0]

m = implicit(SPORT)
typ, d = m.capability()
r["caps_implicit"] = d[0].decode().split()
r["auth_plain"] = attempt(lambda: m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (ALICE, PASSWORD)).encode())[0])
typ, d = m.select("INBOX")
r["select_implicit"] = [typ, d[0].decode()]
m.logout()

m = implicit(SPORT)
r["wrong_password"] = attempt(lambda: m.login(ALICE, "not the password"))
out(r)
"#,
    );
    assert!(v["greeting"].as_str().unwrap().starts_with("* OK"), "{v}");
    let caps = strs(&v["caps_plain"]);
    for c in ["IMAP4rev1", "STARTTLS", "LOGINDISABLED"] {
        assert!(caps.iter().any(|x| x == c), "{c} before TLS: {caps:?}");
    }
    assert!(!caps.iter().any(|x| x.starts_with("AUTH=")), "no AUTH= mechanisms before TLS: {caps:?}");
    let refused = v["login_plain"].as_str().unwrap();
    assert!(refused.starts_with("ERROR") && refused.contains("[PRIVACYREQUIRED]"), "LOGIN before TLS: {refused}");
    let caps = strs(&v["caps_tls"]);
    assert!(!caps.iter().any(|x| x == "LOGINDISABLED" || x == "STARTTLS"), "after STARTTLS: {caps:?}");
    assert!(caps.iter().any(|x| x == "AUTH=PLAIN"), "{caps:?}");
    assert_eq!(v["login"][0], "OK", "{v}");
    let caps = strs(&v["caps_auth"]);
    for c in [
        "IMAP4rev1",
        "SASL-IR",
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "LITERAL+",
        "NAMESPACE",
        "ID",
        "ENABLE",
        "UNSELECT",
        "CHILDREN",
        "SPECIAL-USE",
        "CONDSTORE",
    ] {
        assert!(caps.iter().any(|x| x == c), "{c} after login: {caps:?}");
    }
    assert_eq!(v["select"], serde_json::json!(["OK", "0"]));
    assert_eq!(v["logout"], "BYE");
    let caps = strs(&v["caps_implicit"]);
    assert!(!caps.iter().any(|x| x == "LOGINDISABLED" || x == "STARTTLS"), "implicit TLS: {caps:?}");
    assert!(caps.iter().any(|x| x == "AUTH=PLAIN"), "{caps:?}");
    assert_eq!(v["auth_plain"], "OK", "{v}");
    assert_eq!(v["select_implicit"], serde_json::json!(["OK", "0"]));
    let wrong = v["wrong_password"].as_str().unwrap();
    assert!(wrong.starts_with("ERROR") && wrong.contains("[AUTHENTICATIONFAILED]"), "{wrong}");
    assert!(!s.log().contains(PASSWORD), "passwords are never logged");
}

/// Two messages over SMTP; SELECT/EXAMINE counts; FETCH of the whole
/// message byte for byte, of a nested part, of partials; ENVELOPE and
/// BODYSTRUCTURE of the multipart message exactly.
#[test]
fn select_and_fetch_bodies_envelope_and_bodystructure() {
    let s = server("");
    smtp_deliver(&s, ALICE, PLAIN);
    let multi = multipart();
    smtp_deliver(&s, ALICE, &multi);
    let v = py(
        &s,
        r#"
r = {}
m = starttls(PORT)
m.login(ALICE, PASSWORD)
raw = Raw(SPORT)
raw.login(ALICE, PASSWORD)
r["examine"] = raw.cmd("EXAMINE INBOX")
r["select"] = raw.cmd("SELECT INBOX")
typ, d = m.select("INBOX")
r["exists"] = d[0].decode()
typ, d = m.fetch("1", "(BODY.PEEK[])")
r["peek1"] = b64(d[0][1])
r["flags_after_peek"] = flat(m.fetch("1", "(FLAGS)")[1]).decode()
typ, d = m.fetch("2", "(BODY.PEEK[])")
r["peek2"] = b64(d[0][1])
typ, d = m.fetch("2", "(BODY.PEEK[1.2])")
r["part12"] = b64(d[0][1])
r["part12_head"] = d[0][0].decode()
typ, d = m.fetch("2", "(BODY.PEEK[1.1])")
r["part11"] = b64(d[0][1])
typ, d = m.fetch("2", "(BODY.PEEK[2.MIME])")
r["part2mime"] = b64(d[0][1])
typ, d = m.fetch("2", "(BODY.PEEK[1.2]<4.8>)")
r["part12_partial"] = b64(d[0][1])
r["part12_partial_head"] = d[0][0].decode()
typ, d = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
r["fields"] = b64(d[0][1])
typ, d = m.fetch("1", "(BODY[]<0.10>)")
r["partial"] = flat(d).decode()
r["flags_after_body"] = flat(m.fetch("1", "(FLAGS)")[1]).decode()
r["envelope"] = raw.cmd("FETCH 2 (ENVELOPE)")
r["bodystructure"] = raw.cmd("FETCH 2 (BODYSTRUCTURE)")
r["uid_fetch"] = raw.cmd("UID FETCH 2 (UID RFC822.SIZE)")
m.logout()

m = implicit(SPORT)
m.login(ALICE, PASSWORD)
m.select("INBOX", readonly=True)
typ, d = m.fetch("2", "(BODY.PEEK[])")
r["implicit2"] = b64(d[0][1])
m.logout()
out(r)
"#,
    );
    // SELECT and EXAMINE
    let (lines, tagged) = (strs(&v["select"][0]), v["select"][1].as_str().unwrap().to_string());
    assert!(tagged.contains("OK [READ-WRITE]"), "{tagged}");
    assert!(lines.contains(&"* 2 EXISTS".to_string()), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("* FLAGS (")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("* ") && l.ends_with(" RECENT")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("* OK [PERMANENTFLAGS (")), "{lines:?}");
    let uidvalidity = code_number(&lines, "UIDVALIDITY");
    assert!(uidvalidity > 0);
    assert_eq!(code_number(&lines, "UIDNEXT"), 3, "{lines:?}");
    let modseq = code_number(&lines, "HIGHESTMODSEQ");
    assert!(modseq > 0, "{lines:?}");
    let (elines, etagged) = (strs(&v["examine"][0]), v["examine"][1].as_str().unwrap().to_string());
    assert!(etagged.contains("OK [READ-ONLY]"), "{etagged}");
    assert!(elines.contains(&"* 2 EXISTS".to_string()), "{elines:?}");
    assert_eq!(code_number(&elines, "UIDVALIDITY"), uidvalidity);
    assert_eq!(code_number(&elines, "UIDNEXT"), 3);
    assert_eq!(code_number(&elines, "HIGHESTMODSEQ"), modseq);
    assert_eq!(v["exists"], "2");

    // BODY.PEEK[]: our Received header, then exactly what was sent
    let peek1 = unb64(&v["peek1"]);
    let (received, rest) = split_received(&peek1);
    assert!(received.contains("by mx.example.test"), "{received}");
    assert_eq!(String::from_utf8_lossy(&rest), PLAIN, "message 1 byte for byte after the Received header");
    let peek2 = unb64(&v["peek2"]);
    assert_eq!(String::from_utf8_lossy(&split_received(&peek2).1), multi, "message 2 byte for byte");
    assert_eq!(unb64(&v["implicit2"]), peek2, "the same bytes over implicit TLS");
    assert!(!v["flags_after_peek"].as_str().unwrap().contains("\\Seen"), "PEEK sets no \\Seen: {v}");

    // sections and partials
    assert_eq!(String::from_utf8(unb64(&v["part12"])).unwrap(), b64_lines(HTML_TEXT.as_bytes()), "BODY[1.2]");
    assert!(v["part12_head"].as_str().unwrap().contains("BODY[1.2] {"), "{}", v["part12_head"]);
    assert_eq!(String::from_utf8(unb64(&v["part11"])).unwrap(), QP_BODY, "BODY[1.1]");
    let mime = String::from_utf8(unb64(&v["part2mime"])).unwrap();
    assert_eq!(
        mime,
        format!(
            "Content-Type: application/pdf; name=\"{FILENAME_2047}\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"{FILENAME_2047}\"\r\n\r\n"
        ),
        "BODY[2.MIME]"
    );
    assert_eq!(unb64(&v["part12_partial"]), b64_lines(HTML_TEXT.as_bytes()).as_bytes()[4..12].to_vec());
    assert!(v["part12_partial_head"].as_str().unwrap().contains("BODY[1.2]<4> {8}"), "{}", v["part12_partial_head"]);
    assert_eq!(
        String::from_utf8(unb64(&v["fields"])).unwrap(),
        "From: Bob Sender <bob@example.org>\r\nSubject: plain hello\r\n\r\n"
    );
    let partial = v["partial"].as_str().unwrap();
    assert!(partial.contains("BODY[]<0> {10}\r\nReceived: "), "BODY[]<0.10>: {partial:?}");
    assert!(v["flags_after_body"].as_str().unwrap().contains("\\Seen"), "BODY[] sets \\Seen: {v}");

    // ENVELOPE and BODYSTRUCTURE, exactly
    // (the raw session also hears of the imaplib session's \Seen on message 1)
    let of_2 = |k: &str| -> Vec<String> { strs(&v[k][0]).into_iter().filter(|l| l.starts_with("* 2 FETCH")).collect() };
    let env = of_2("envelope");
    assert_eq!(env, vec![format!("* 2 FETCH (ENVELOPE {})", multipart_envelope())], "ENVELOPE");
    let bs = of_2("bodystructure");
    assert_eq!(bs.len(), 1, "{bs:?}");
    // RFC 3501: type, subtype, encoding and parameter names are case-insensitive
    assert_eq!(
        bs[0].to_ascii_lowercase(),
        format!("* 2 FETCH (BODYSTRUCTURE {})", multipart_bodystructure()).to_ascii_lowercase(),
        "BODYSTRUCTURE"
    );
    let uid_fetch = of_2("uid_fetch");
    assert_eq!(uid_fetch.len(), 1, "{uid_fetch:?}");
    let f = &uid_fetch[0];
    assert!(
        f.starts_with("* 2 FETCH (") && has_uid(f, 2) && f.contains(&format!("RFC822.SIZE {}", peek2.len())),
        "{f}"
    );
}

/// SEARCH by header, subject, from, body text (QP and base64 parts, UTF-8),
/// flags, dates, sizes, UID ranges, OR and NOT.
#[test]
fn search_keys() {
    let s = server("");
    smtp_deliver(&s, ALICE, PLAIN);
    smtp_deliver(&s, ALICE, &multipart());
    smtp_deliver(&s, ALICE, &large());
    let v = py(
        &s,
        &format!(
            r#"
m = implicit(SPORT)
m.login(ALICE, PASSWORD)
m.select("INBOX")
r = {{}}
r["append"] = m.append("INBOX", "(\\Flagged)", '"01-Jan-2020 12:00:00 +0000"', {small:?}.encode())[0]
m.store("1", "+FLAGS", "(\\Seen)")
m.store("2", "+FLAGS", "(\\Answered)")
def search(*keys, uid=False):
    try:
        typ, d = m.uid("SEARCH", *keys) if uid else m.search(None, *keys)
        return " ".join(x.decode() for x in d if x)
    except imaplib.IMAP4.error as e:
        return err(e)
def utf8(key, text, uid=False):
    m.literal = text.encode()
    try:
        typ, d = m.uid("SEARCH", "CHARSET", "UTF-8", key) if uid else m.search("UTF-8", key)
        return " ".join(x.decode() for x in d if x)
    except imaplib.IMAP4.error as e:
        return err(e)
for name, keys in [
    ("header", ("HEADER", "X-Tracking", "alpha-42")),
    ("header_any", ("HEADER", "Message-ID", '""')),
    ("subject", ("SUBJECT", "hello")),
    ("subject2", ("SUBJECT", '"large report"')),
    ("from", ("FROM", "jorg")),
    ("to", ("TO", "alice@example.test")),
    ("cc", ("CC", "carol")),
    ("body_qp", ("BODY", "quokka")),
    ("body_b64", ("BODY", "wombat")),
    ("body_plain", ("BODY", '"starts with a dot"')),
    ("text", ("TEXT", "alpha-42")),
    ("seen", ("SEEN",)),
    ("unseen", ("UNSEEN",)),
    ("answered", ("ANSWERED",)),
    ("flagged", ("FLAGGED",)),
    ("not_flagged", ("NOT", "FLAGGED")),
    ("before", ("BEFORE", "1-Jan-2021")),
    ("since", ("SINCE", "1-Jan-2021")),
    ("on", ("ON", "1-Jan-2020")),
    ("sentbefore", ("SENTBEFORE", "24-Nov-2026")),
    ("sentsince", ("SENTSINCE", "24-Nov-2026")),
    ("larger", ("LARGER", "20000")),
    ("smaller", ("SMALLER", "20000")),
    ("uid_range", ("UID", "2:3")),
    ("uid_star", ("UID", "3:*")),
    ("seq_range", ("2:*",)),
    ("or", ("OR", "SUBJECT", "hello", "FROM", "carol")),
    ("not", ("NOT", "SUBJECT", "hello")),
    ("not_or", ("NOT", "OR", "SEEN", "FLAGGED")),
    ("and", ("FROM", "example.org", "UNSEEN")),
    ("nested", ("OR", "(SEEN FROM bob)", "(LARGER 20000 NOT ANSWERED)")),
    ("all", ("ALL",)),
    ("none", ("SUBJECT", "no-such-thing-anywhere")),
]:
    r[name] = search(*keys)
r["uid_search"] = search("UID", "2:*", "UNSEEN", uid=True)
r["utf8_subject"] = utf8("SUBJECT", "Köln")
r["utf8_from"] = utf8("FROM", "Jörg")
r["utf8_body"] = utf8("BODY", "für")
r["utf8_uid"] = utf8("BODY", "für", uid=True)
r["bad_charset"] = attempt(lambda: m.search("X-NO-SUCH-CHARSET", "ALL"))
m.logout()
out(r)
"#,
            small = small(4)
        ),
    );
    let want = [
        ("append", "OK"),
        ("header", "1"),
        ("header_any", "1 2 3 4"),
        ("subject", "1"),
        ("subject2", "3"),
        ("from", "2"),
        ("to", "1 2 3 4"),
        ("cc", "2"),
        ("body_qp", "2"),
        ("body_b64", "2"),
        ("body_plain", "1"),
        ("text", "1"),
        ("seen", "1"),
        ("unseen", "2 3 4"),
        ("answered", "2"),
        ("flagged", "4"),
        ("not_flagged", "1 2 3"),
        ("before", "4"),
        ("since", "1 2 3"),
        ("on", "4"),
        ("sentbefore", "1 4"),
        ("sentsince", "2 3"),
        ("larger", "3"),
        ("smaller", "1 2 4"),
        ("uid_range", "2 3"),
        ("uid_star", "3 4"),
        ("seq_range", "2 3 4"),
        ("or", "1 3"),
        ("not", "2 3 4"),
        ("not_or", "2 3"),
        ("and", "2"),
        ("nested", "1 3"),
        ("all", "1 2 3 4"),
        ("none", ""),
        ("uid_search", "2 3 4"),
        ("utf8_subject", "2"),
        ("utf8_from", "2"),
        ("utf8_body", "2"),
        ("utf8_uid", "2"),
    ];
    let mut wrong = Vec::new();
    for (k, w) in want {
        if v[k] != w {
            wrong.push(format!("{k}: expected {w:?}, got {}", v[k]));
        }
    }
    assert!(wrong.is_empty(), "SEARCH results:\n{}", wrong.join("\n"));
    let bad = v["bad_charset"].as_str().unwrap();
    assert!(bad.starts_with("NO") && bad.contains("[BADCHARSET"), "unknown charset: {bad}");
}

/// STORE and UID STORE (with .SILENT), COPY, MOVE (COPYUID), APPEND
/// (APPENDUID, TRYCREATE), EXPUNGE and UID EXPUNGE.
#[test]
fn store_copy_move_append_expunge() {
    let s = server("");
    let v = py(
        &s,
        &format!(
            r#"
r = {{}}
m = starttls(PORT)
m.login(ALICE, PASSWORD)
msgs = {msgs:?}
r["appends"] = [m.append("INBOX", None, None, x.encode())[1][0].decode() for x in msgs]
r["append_trycreate"] = attempt(lambda: m.append("No/Such/Folder", None, None, msgs[0].encode()))
m.select("INBOX")
r["store"] = flat(m.store("1", "+FLAGS", "(\\Flagged)")[1]).decode()
r["store_silent"] = m.store("2", "+FLAGS.SILENT", "(\\Seen)")[1]
r["uid_store"] = flat(m.uid("STORE", "3", "+FLAGS", "($Label1 \\Answered)")[1]).decode()
r["uid_store_silent"] = m.uid("STORE", "3", "-FLAGS.SILENT", "(\\Answered)")[1]
r["store_replace"] = flat(m.store("4", "FLAGS", "(\\Draft)")[1]).decode()
r["flags"] = [x.decode() for x in m.fetch("1:5", "(UID FLAGS)")[1]]
r["copy_trycreate"] = attempt(lambda: m.copy("1", "Archive"))
r["create"] = m.create("Archive")[0]
r["copy"] = [x.decode() for x in m.copy("1:2", "Archive")[1]]
m.logout()

raw = Raw(SPORT)
raw.login(ALICE, PASSWORD)
raw.cmd("SELECT INBOX")
r["move"] = raw.cmd("MOVE 3 Trash")
r["uid_move"] = raw.cmd("UID MOVE 4 Junk")
r["after_move"] = raw.cmd("UID SEARCH ALL")
raw.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
raw.cmd("UID STORE 5 +FLAGS.SILENT (\\Deleted)")
r["uid_expunge"] = raw.cmd("UID EXPUNGE 5")
r["expunge"] = raw.cmd("EXPUNGE")
r["search_after"] = raw.cmd("SEARCH ALL")
r["uid_search_after"] = raw.cmd("UID SEARCH ALL")
r["status"] = [raw.cmd("STATUS %s (MESSAGES UIDNEXT UNSEEN)" % f) for f in ("INBOX", "Archive", "Trash", "Junk")]
r["archive_flags"] = (raw.cmd("EXAMINE Archive"), raw.cmd("FETCH 1:* (UID FLAGS)"))
raw.cmd("LOGOUT")
out(r)
"#,
            msgs = (1..=5).map(small).collect::<Vec<_>>()
        ),
    );
    let appends = strs(&v["appends"]);
    let uv = appenduid(&format!("x OK {}", appends[0])).0;
    for (i, a) in appends.iter().enumerate() {
        assert_eq!(appenduid(&format!("x OK {a}")), (uv, i as u32 + 1), "{a}");
    }
    let t = v["append_trycreate"].as_str().unwrap();
    assert!(t.starts_with("NO") && t.contains("[TRYCREATE]"), "APPEND to a missing folder: {t}");
    let st = &no_recent(v["store"].as_str().unwrap());
    assert!(st.starts_with("1 (") && st.contains("FLAGS (\\Flagged)"), "STORE answers with FETCH FLAGS: {st}");
    assert_eq!(v["store_silent"], serde_json::json!([null]), "+FLAGS.SILENT sends no FETCH");
    let us = &no_recent(v["uid_store"].as_str().unwrap());
    assert!(us.starts_with("3 (") && has_uid(us, 3) && us.contains("$Label1") && us.contains("\\Answered"), "{us}");
    assert_eq!(v["uid_store_silent"], serde_json::json!([null]));
    let rs = &no_recent(v["store_replace"].as_str().unwrap());
    assert!(rs.contains("FLAGS (\\Draft)"), "{rs}");
    let flags: Vec<String> = strs(&v["flags"]).iter().map(|f| no_recent(f)).collect();
    let has = |i: usize, f: &str| flags[i].contains(f);
    assert!(has(0, "\\Flagged") && has(1, "\\Seen") && has(2, "$Label1") && !has(2, "\\Answered"), "{flags:?}");
    assert!(has(3, "FLAGS (\\Draft)") && has(4, "FLAGS ()"), "{flags:?}");
    let t = v["copy_trycreate"].as_str().unwrap();
    assert!(t.starts_with("NO") && t.contains("[TRYCREATE]"), "COPY to a missing folder: {t}");
    assert_eq!(v["create"], "OK");
    let copy = strs(&v["copy"]).join(" ");
    assert!(
        copy.contains("[COPYUID ") && (copy.contains(" 1:2 1:2]") || copy.contains(" 1,2 1,2]")),
        "COPYUID: {copy}"
    );

    // MOVE: COPYUID then EXPUNGE of the moved message
    let (lines, tagged) = (strs(&v["move"][0]), v["move"][1].as_str().unwrap());
    assert!(tagged.contains(" OK"), "{tagged}");
    let all = format!("{} {tagged}", lines.join(" "));
    assert!(all.contains("[COPYUID ") && all.contains(" 3 1]"), "MOVE reports COPYUID: {all}");
    assert!(lines.contains(&"* 3 EXPUNGE".to_string()), "{lines:?}");
    let (lines, tagged) = (strs(&v["uid_move"][0]), v["uid_move"][1].as_str().unwrap());
    assert!(tagged.contains(" OK") && lines.contains(&"* 3 EXPUNGE".to_string()), "UID MOVE 4: {lines:?} {tagged}");
    assert_eq!(strs(&v["after_move"][0]), vec!["* SEARCH 1 2 5"]);
    // UID EXPUNGE removes only the named \Deleted message; EXPUNGE the rest
    let (lines, tagged) = (strs(&v["uid_expunge"][0]), v["uid_expunge"][1].as_str().unwrap());
    assert!(tagged.contains(" OK"), "{tagged}");
    assert_eq!(lines, vec!["* 3 EXPUNGE"], "UID EXPUNGE 5 (message 3)");
    assert_eq!(strs(&v["expunge"][0]), vec!["* 1 EXPUNGE"]);
    assert_eq!(strs(&v["search_after"][0]), vec!["* SEARCH 1"]);
    assert_eq!(strs(&v["uid_search_after"][0]), vec!["* SEARCH 2"]);
    let status: Vec<String> = v["status"].as_array().unwrap().iter().map(|x| strs(&x[0]).join(" ")).collect();
    assert_eq!(
        status,
        vec![
            "* STATUS INBOX (MESSAGES 1 UIDNEXT 6 UNSEEN 0)",
            "* STATUS Archive (MESSAGES 2 UIDNEXT 3 UNSEEN 1)",
            "* STATUS Trash (MESSAGES 1 UIDNEXT 2 UNSEEN 1)",
            "* STATUS Junk (MESSAGES 1 UIDNEXT 2 UNSEEN 1)",
        ]
    );
    let fetched = strs(&v["archive_flags"][1][0]);
    assert!(
        fetched.len() == 2 && fetched[0].contains("\\Flagged") && fetched[1].contains("\\Seen"),
        "COPY keeps flags: {fetched:?}"
    );
}

/// LIST with SPECIAL-USE and CHILDREN, LSUB, STATUS, CREATE/RENAME/DELETE
/// of nested folders.
#[test]
fn list_lsub_status_and_nested_folders() {
    let s = server("");
    let v = py(
        &s,
        r#"
r = {}
raw = Raw(SPORT)
raw.login(BOB, PASSWORD)
r["delim"] = raw.cmd('LIST "" ""')
r["list"] = raw.cmd('LIST "" "*"')
r["status_sent"] = raw.cmd("STATUS Sent (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
r["create"] = raw.cmd("CREATE a/b/c")
r["list_nested"] = raw.cmd('LIST "" "a*"')
r["list_pct"] = raw.cmd('LIST "" "a/%"')
r["list_top"] = raw.cmd('LIST "" "%"')
r["create_dup"] = raw.cmd("CREATE a/b/c")
r["subscribe"] = raw.cmd("SUBSCRIBE a/b/c")
r["lsub"] = raw.cmd('LSUB "" "*"')
r["append"] = raw.cmd("APPEND a/b/c {12+}\r\nSubject: x\r\n")
r["status_c"] = raw.cmd("STATUS a/b/c (MESSAGES UIDNEXT)")
r["rename"] = raw.cmd("RENAME a z")
r["list_renamed"] = raw.cmd('LIST "" "*"')
r["status_z"] = raw.cmd("STATUS z/b/c (MESSAGES)")
r["select_old"] = raw.cmd("SELECT a/b/c")
r["delete_leaf"] = raw.cmd("DELETE z/b/c")
r["list_after_delete"] = raw.cmd('LIST "" "z*"')
r["delete_inbox"] = raw.cmd("DELETE INBOX")
r["delete_missing"] = raw.cmd("DELETE nope")
r["delete_rest"] = [raw.cmd("DELETE z/b"), raw.cmd("DELETE z")]
r["list_end"] = raw.cmd('LIST "" "*"')
r["namespace"] = raw.cmd("NAMESPACE")
out(r)
"#,
    );
    let ok = |k: &str| {
        let t = v[k][1].as_str().unwrap_or_else(|| panic!("{k}: {v}"));
        assert!(t.split(' ').nth(1) == Some("OK"), "{k}: {t} ({})", v[k][0]);
    };
    assert_eq!(strs(&v["delim"][0]), vec!["* LIST (\\Noselect) \"/\" \"\""]);
    let list = strs(&v["list"][0]);
    for (name, attr) in [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk")] {
        assert!(
            list.iter().any(|l| l.starts_with("* LIST (")
                && l.ends_with(&format!(" \"/\" {name}"))
                && l.contains(attr)
                && l.contains("\\HasNoChildren")),
            "{name} with {attr} for a user who never logged in before: {list:?}"
        );
    }
    assert!(list.iter().any(|l| l.ends_with(" INBOX")), "{list:?}");
    let st = strs(&v["status_sent"][0]);
    assert!(
        st.len() == 1
            && st[0].starts_with("* STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ")
            && st[0].ends_with(" UNSEEN 0)"),
        "{st:?}"
    );
    ok("create");
    let nested = strs(&v["list_nested"][0]);
    assert_eq!(nested.len(), 3, "CREATE a/b/c creates the superiors too: {nested:?}");
    assert!(nested.iter().any(|l| l.contains("\\HasChildren") && l.ends_with(" a")), "{nested:?}");
    assert!(nested.iter().any(|l| l.contains("\\HasChildren") && l.ends_with(" a/b")), "{nested:?}");
    assert!(nested.iter().any(|l| l.contains("\\HasNoChildren") && l.ends_with(" a/b/c")), "{nested:?}");
    let pct = strs(&v["list_pct"][0]);
    assert!(pct.len() == 1 && pct[0].ends_with(" a/b"), "% does not cross the delimiter: {pct:?}");
    let top = strs(&v["list_top"][0]);
    assert_eq!(top.len(), 6, "INBOX, Sent, Drafts, Trash, Junk, a: {top:?}");
    assert!(v["create_dup"][1].as_str().unwrap().contains(" NO"), "CREATE of an existing folder: {}", v["create_dup"]);
    ok("subscribe");
    assert!(strs(&v["lsub"][0]).iter().any(|l| l.starts_with("* LSUB (") && l.ends_with(" a/b/c")), "{}", v["lsub"]);
    ok("append");
    assert_eq!(strs(&v["status_c"][0]), vec!["* STATUS a/b/c (MESSAGES 1 UIDNEXT 2)"]);
    ok("rename");
    let renamed = strs(&v["list_renamed"][0]);
    for n in ["z", "z/b", "z/b/c"] {
        assert!(
            renamed.iter().any(|l| l.ends_with(&format!(" \"/\" {n}"))),
            "RENAME a z moves the children: {n} missing in {renamed:?}"
        );
    }
    assert!(!renamed.iter().any(|l| l.contains(" \"/\" a")), "{renamed:?}");
    assert_eq!(strs(&v["status_z"][0]), vec!["* STATUS z/b/c (MESSAGES 1)"], "the messages go with it");
    assert!(v["select_old"][1].as_str().unwrap().contains(" NO"), "{}", v["select_old"]);
    ok("delete_leaf");
    let after = strs(&v["list_after_delete"][0]);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().any(|l| l.ends_with(" z/b") && l.contains("\\HasNoChildren")), "{after:?}");
    assert!(v["delete_inbox"][1].as_str().unwrap().contains(" NO"), "{}", v["delete_inbox"]);
    assert!(v["delete_missing"][1].as_str().unwrap().contains(" NO"), "{}", v["delete_missing"]);
    for r in v["delete_rest"].as_array().unwrap() {
        assert!(r[1].as_str().unwrap().contains(" OK"), "{r}");
    }
    assert_eq!(strs(&v["list_end"][0]).len(), 5, "{}", v["list_end"]);
    let ns = strs(&v["namespace"][0]);
    assert!(ns.len() == 1 && ns[0].starts_with("* NAMESPACE ((\"\" \"/\")) NIL NIL"), "{ns:?}");
}

// ---------------------------------------------------------------- 2. sessions

/// Flags, expunges and new mail made by one session reach another at its
/// next command.
#[test]
fn two_sessions_see_each_others_changes_at_the_next_command() {
    let s = server("");
    let v = py(
        &s,
        &format!(
            r#"
import smtplib
r = {{}}
a = Raw(SPORT); a.login(ALICE, PASSWORD)
b = Raw(PORT, tls="starttls"); b.login(ALICE, PASSWORD)
for x in {msgs:?}:
    a.cmd("APPEND INBOX {{%d+}}\r\n%s" % (len(x.encode()), x))
a.cmd("SELECT INBOX")
r["b_select"] = b.cmd("SELECT INBOX")
a.cmd("STORE 1 +FLAGS (\\Flagged)")
r["b_flags"] = b.cmd("NOOP")
a.cmd("APPEND INBOX {{%d+}}\r\n%s" % (len({extra:?}.encode()), {extra:?}))
r["b_append"] = b.cmd("NOOP")
a.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)")
a.cmd("EXPUNGE")
r["b_expunge"] = b.cmd("NOOP")
smtp = smtplib.SMTP("127.0.0.1", MX, timeout=15)
smtp.sendmail("bob@example.org", [ALICE], b"Subject: over smtp\r\n\r\nnew mail\r\n")
smtp.quit()
import time
deadline = time.time() + 30
seen = []
while time.time() < deadline:
    l, t = b.cmd("NOOP")
    seen += l
    if any(x.endswith(" EXISTS") for x in l):
        break
    time.sleep(0.2)
r["b_smtp"] = seen
r["b_fetch"] = b.cmd("FETCH 1:* (UID FLAGS)")
out(r)
"#,
            msgs = (1..=3).map(small).collect::<Vec<_>>(),
            extra = small(9)
        ),
    );
    assert!(strs(&v["b_select"][0]).contains(&"* 3 EXISTS".to_string()), "{}", v["b_select"]);
    let f: Vec<String> = strs(&v["b_flags"][0]).iter().map(|f| no_recent(f)).collect();
    assert!(
        f.len() == 1 && f[0].starts_with("* 1 FETCH (") && f[0].contains("FLAGS (\\Flagged)"),
        "B sees A's STORE at NOOP: {f:?}"
    );
    assert_eq!(
        strs(&v["b_append"][0]).iter().filter(|l| l.ends_with("EXISTS")).cloned().collect::<Vec<_>>(),
        vec!["* 4 EXISTS"],
        "{}",
        v["b_append"]
    );
    assert!(strs(&v["b_expunge"][0]).contains(&"* 2 EXPUNGE".to_string()), "B sees A's EXPUNGE: {}", v["b_expunge"]);
    assert!(strs(&v["b_smtp"]).contains(&"* 4 EXISTS".to_string()), "B sees the SMTP delivery: {}", v["b_smtp"]);
    let fetch = strs(&v["b_fetch"][0]);
    assert_eq!(fetch.len(), 4, "{fetch:?}");
    assert!(
        has_uid(&fetch[0], 1) && has_uid(&fetch[1], 3) && has_uid(&fetch[2], 4) && has_uid(&fetch[3], 5),
        "{fetch:?}"
    );
}

/// A session in IDLE sees a message delivered over SMTP, a flag change and
/// an expunge by another session, while it idles.
#[test]
fn idle_sees_smtp_delivery_and_other_sessions() {
    let s = server("");
    let v = py(
        &s,
        &format!(
            r#"
import smtplib, time
r = {{}}
a = Raw(SPORT); a.login(ALICE, PASSWORD)
a.cmd("APPEND INBOX {{%d+}}\r\n%s" % (len({m1:?}), {m1:?}))
a.cmd("APPEND INBOX {{%d+}}\r\n%s" % (len({m1:?}), {m1:?}))
a.cmd("SELECT INBOX")
b = Raw(SPORT); b.login(ALICE, PASSWORD)
b.cmd("SELECT INBOX")
tag = b.tag()
b.send(("%s IDLE\r\n" % tag).encode())
r["cont"] = b.line()
b.sock.settimeout(10)
def wait_for(pred):
    got = []
    try:
        while True:
            l = b.line()
            got.append(l)
            if pred(l):
                return got
    except (socket.timeout, TimeoutError) as e:
        got.append("TIMEOUT after 10 s")
        return got
smtp = smtplib.SMTP("127.0.0.1", MX, timeout=15)
smtp.sendmail("bob@example.org", [ALICE], b"Subject: while idle\r\n\r\nhello idler\r\n")
smtp.quit()
r["exists"] = wait_for(lambda l: l.endswith(" EXISTS"))
a.cmd("STORE 1 +FLAGS (\\Flagged)")
r["flags"] = wait_for(lambda l: " FETCH " in l)
a.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)")
a.cmd("EXPUNGE")
r["expunge"] = wait_for(lambda l: l.endswith(" EXPUNGE"))
b.sock.settimeout(15)
b.send(b"DONE\r\n")
r["done"] = b.until(tag)
out(r)
"#,
            m1 = small(1)
        ),
    );
    assert!(v["cont"].as_str().unwrap().starts_with('+'), "IDLE is accepted with a continuation: {}", v["cont"]);
    assert_eq!(
        strs(&v["exists"]).last().unwrap(),
        "* 3 EXISTS",
        "the SMTP delivery arrives while idling: {}",
        v["exists"]
    );
    let f = strs(&v["flags"]);
    assert!(f.last().unwrap().starts_with("* 1 FETCH (") && f.last().unwrap().contains("\\Flagged"), "{f:?}");
    assert_eq!(strs(&v["expunge"]).last().unwrap(), "* 2 EXPUNGE", "{}", v["expunge"]);
    assert!(v["done"][1].as_str().unwrap().contains(" OK"), "{}", v["done"]);
}

/// Where .ci/run installs imapflow (as ../shared/peers/install-peers.sh does).
fn imapflow_dir() -> std::path::PathBuf {
    std::env::var_os("IMAPFLOW_DIR").map(Into::into).unwrap_or_else(|| "/tmp/npm-clients".into())
}

/// imapflow (node) opens INBOX, idles, and gets its `exists` event when a
/// message arrives over SMTP.
#[test]
fn imapflow_idle_sees_new_mail() {
    let dir = imapflow_dir();
    assert!(
        Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success()),
        "this test needs node (Node.js), which is not installed (.ci/run installs it)"
    );
    assert!(
        dir.join("node_modules/imapflow/package.json").is_file(),
        "this test needs the imapflow npm package in {} (.ci/run installs it; IMAPFLOW_DIR overrides the place)",
        dir.display()
    );
    let s = server("");
    smtp_deliver(&s, ALICE, PLAIN);
    let mut child = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/imapflow_idle.js"))
        .env("NODE_PATH", dir.join("node_modules"))
        .env("IMAP_PORT", s.addr("imaps").port().to_string())
        .env("IMAP_USER", ALICE)
        .env("IMAP_PASS", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut next = |what: &str| loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => {
                seen.push(l.clone());
                if l.starts_with(what) {
                    return l;
                }
                if l.starts_with("error") {
                    panic!("imapflow: {l}");
                }
            }
            Err(_) => {
                let _ = child.kill();
                let err = child.stderr.take().map(|mut e| {
                    let mut s = String::new();
                    let _ = e.read_to_string(&mut s);
                    s
                });
                panic!("imapflow did not say {what:?} within 30 s; said {seen:?}; stderr {err:?}");
            }
        }
    };
    let opened = next("opened");
    assert_eq!(opened, "opened 1", "imapflow sees the one message");
    next("idling");
    smtp_deliver(&s, ALICE, &multipart());
    let exists = next("exists");
    assert_eq!(exists, "exists 2 1", "the exists event while idling (count, prevCount)");
    let fetched = next("fetched");
    assert!(fetched.contains(SUBJECT_2047) || fetched.contains("Grüße aus Köln"), "{fetched}");
    next("done");
    let out = wait_output(child, Duration::from_secs(30));
    assert!(out.status.success(), "node: {}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------- 3. curl

#[test]
fn curl_lists_and_fetches_over_imaps() {
    let v = Command::new("curl").arg("-V").output();
    let v = v.expect("this test needs curl, which is not installed (.ci/run installs it)");
    assert!(
        String::from_utf8_lossy(&v.stdout).lines().any(|l| l.starts_with("Protocols:") && l.contains(" imaps")),
        "this test needs curl with IMAPS support, and `curl -V` does not list imaps"
    );
    let s = server("");
    smtp_deliver(&s, ALICE, PLAIN);
    smtp_deliver(&s, ALICE, &multipart());
    let port = s.addr("imaps").port();
    let curl = |url: &str, extra: &[&str]| {
        let child = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "30"])
            .args(["--cacert", s.path().join("data/tls/main.crt").to_str().unwrap()])
            .args(["--resolve", &format!("mx.example.test:{port}:127.0.0.1")])
            .args(["--user", &format!("{ALICE}:{PASSWORD}")])
            .args(extra)
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_output(child, Duration::from_secs(60));
        assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let base = format!("imaps://mx.example.test:{port}");
    let list = String::from_utf8(curl(&format!("{base}/"), &[])).unwrap();
    for f in ["INBOX", "Sent", "Drafts", "Trash", "Junk"] {
        assert!(list.lines().any(|l| l.starts_with("* LIST ") && l.ends_with(f)), "curl lists {f}: {list}");
    }
    let examine = String::from_utf8(curl(&format!("{base}/INBOX"), &["--request", "EXAMINE INBOX"])).unwrap();
    assert!(examine.contains("* 2 EXISTS"), "{examine}");
    let search = String::from_utf8(curl(&format!("{base}/INBOX?ALL"), &[])).unwrap();
    assert_eq!(search.trim_end(), "* SEARCH 1 2", "curl's search of INBOX");
    let one = curl(&format!("{base}/INBOX;UID=1"), &[]);
    assert_eq!(String::from_utf8_lossy(&split_received(&one).1), PLAIN, "curl fetches message 1 byte for byte");
    let part = curl(&format!("{base}/INBOX;UID=2;SECTION=1.2"), &[]);
    assert_eq!(String::from_utf8(part).unwrap(), b64_lines(HTML_TEXT.as_bytes()), "curl fetches section 1.2");
}

// ---------------------------------------------------------------- 4. CONDSTORE

#[test]
fn condstore_changedsince_and_unchangedsince() {
    let s = server("");
    let v = py(
        &s,
        &format!(
            r#"
r = {{}}
a = Raw(SPORT); a.login(ALICE, PASSWORD)
for x in {msgs:?}:
    a.cmd("APPEND INBOX {{%d+}}\r\n%s" % (len(x), x))
r["enable"] = a.cmd("ENABLE CONDSTORE")
r["select"] = a.cmd("SELECT INBOX")
r["store"] = a.cmd("STORE 2 +FLAGS (\\Flagged)")
out(r)
"#,
            msgs = (1..=3).map(small).collect::<Vec<_>>()
        ),
    );
    assert_eq!(strs(&v["enable"][0]), vec!["* ENABLED CONDSTORE"]);
    let sel = strs(&v["select"][0]);
    let m0 = code_number(&sel, "HIGHESTMODSEQ");
    let st = strs(&v["store"][0]);
    assert!(
        st.len() == 1 && st[0].starts_with("* 2 FETCH (") && st[0].contains("MODSEQ ("),
        "STORE reports the new MODSEQ once CONDSTORE is on: {st:?}"
    );

    let v = py(
        &s,
        &format!(
            r#"
r = {{}}
a = Raw(SPORT); a.login(ALICE, PASSWORD)
b = Raw(SPORT); b.login(ALICE, PASSWORD)
r["a_select"] = a.cmd("SELECT INBOX (CONDSTORE)")
r["changed"] = a.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE {m0})")
r["uid_changed"] = a.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m0})")
r["search_modseq"] = a.cmd("SEARCH MODSEQ {m1}")
r["b_select"] = b.cmd("SELECT INBOX (CONDSTORE)")
r["a_store"] = a.cmd("STORE 1 +FLAGS (\\Answered)")
r["b_conditional"] = b.cmd("STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % int([l for l in r["b_select"][0] if "HIGHESTMODSEQ" in l][0].split("HIGHESTMODSEQ ")[1].split("]")[0]))
r["b_flags"] = b.cmd("FETCH 1:2 (FLAGS)")
r["status"] = b.cmd("STATUS INBOX (HIGHESTMODSEQ)")
out(r)
"#,
            m1 = m0 + 1
        ),
    );
    let a_sel = strs(&v["a_select"][0]);
    let m1 = code_number(&a_sel, "HIGHESTMODSEQ");
    assert!(m1 > m0, "the STORE raised HIGHESTMODSEQ: {m0} -> {m1}");
    let changed = strs(&v["changed"][0]);
    assert!(
        changed.len() == 1
            && changed[0].starts_with("* 2 FETCH (")
            && changed[0].contains("\\Flagged")
            && changed[0].contains(&format!("MODSEQ ({m1})")),
        "CHANGEDSINCE {m0} returns only message 2: {changed:?}"
    );
    let uc = strs(&v["uid_changed"][0]);
    assert!(uc.len() == 1 && uc[0].starts_with("* 2 FETCH (") && has_uid(&uc[0], 2), "{uc:?}");
    assert_eq!(strs(&v["search_modseq"][0]), vec![format!("* SEARCH 2 (MODSEQ {m1})")]);
    let tagged = v["b_conditional"][1].as_str().unwrap();
    assert!(
        tagged.contains(" OK [MODIFIED 1]"),
        "STORE (UNCHANGEDSINCE) after another session changed #1: {tagged} ({})",
        v["b_conditional"][0]
    );
    let flags = strs(&v["b_flags"][0]);
    let one = flags.iter().find(|l| l.starts_with("* 1 FETCH")).unwrap_or_else(|| panic!("{flags:?}"));
    let two = flags.iter().find(|l| l.starts_with("* 2 FETCH")).unwrap_or_else(|| panic!("{flags:?}"));
    assert!(!one.contains("\\Seen") && one.contains("\\Answered"), "the conflicting message is untouched: {one}");
    assert!(two.contains("\\Seen") && two.contains("\\Flagged"), "the other one is stored: {two}");
    let st = strs(&v["status"][0]);
    assert!(st.len() == 1 && st[0].starts_with("* STATUS INBOX (HIGHESTMODSEQ "), "{st:?}");
}

// ---------------------------------------------------------------- 6. durability

fn max_uid(lines: &[String]) -> u32 {
    lines.iter().filter_map(|l| l.split("UID ").nth(1)?.split([' ', ')']).next()?.parse().ok()).max().unwrap_or(0)
}

/// SIGKILL in the middle of a big APPEND's literal, right after an
/// acknowledged APPEND and an acknowledged SMTP message: after a restart
/// every acknowledged message is there, UIDVALIDITY is the same, and a new
/// message gets a UID above every UID handed out before.
#[test]
fn sigkill_during_append_loses_no_acknowledged_message_and_reuses_no_uid() {
    let mut s = server("allow_plaintext_auth = true");
    let mut c = Imap::plain(s.addr("imap"));
    c.login(ALICE);
    let sel = c.ok("SELECT INBOX");
    let uidvalidity = code_number(&sel, "UIDVALIDITY");
    let mut acked = Vec::new();
    for i in 1..=5 {
        let t = c.append("INBOX", small(i).as_bytes());
        let (v, uid) = appenduid(&t);
        assert_eq!(v as u64, uidvalidity);
        acked.push((format!("appended {i}"), uid));
    }
    // an acknowledged SMTP message, still in the queue or being delivered
    let mut smtp = Client::connect(s.addr("mx"));
    smtp.reply();
    smtp.expect("EHLO client.test", 250);
    let r = smtp.send_mail("bob@example.org", &[ALICE], "Subject: smtp before the kill\r\n\r\nbody\r\n");
    assert_eq!(r.code, 250);
    let t = c.append("INBOX", small(6).as_bytes());
    acked.push(("appended 6".into(), appenduid(&t).1));
    // the big APPEND: half its literal, then SIGKILL
    let big = 8 * 1024 * 1024;
    c.n += 1;
    c.send(format!("r{} APPEND INBOX {{{big}}}\r\n", c.n).as_bytes()).unwrap();
    let cont = c.line().expect("continuation");
    assert!(cont.starts_with('+'), "{cont}");
    let chunk = format!("Subject: big\r\n\r\n{}", "y".repeat(998) + "\r\n").into_bytes();
    let mut sent = 0;
    while sent < big / 2 {
        c.send(&chunk).unwrap();
        sent += chunk.len();
    }
    s.kill9();
    s.start_again();
    assert!(eventually(Duration::from_secs(30), || s.queue().is_empty()), "the queue drains after the restart");

    let mut c = Imap::plain(s.addr("imap"));
    c.login(ALICE);
    let sel = c.ok("SELECT INBOX");
    assert_eq!(code_number(&sel, "UIDVALIDITY"), uidvalidity, "UIDVALIDITY is stable across SIGKILL");
    let uidnext = code_number(&sel, "UIDNEXT") as u32;
    let fetched = c.ok("UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    for (subject, uid) in &acked {
        assert!(
            fetched.iter().any(|l| has_uid(l, *uid) && l.contains(&format!("Subject: {subject}\r\n"))),
            "acknowledged message {subject:?} (UID {uid}) lost: {fetched:?}"
        );
    }
    assert!(
        fetched.iter().any(|l| l.contains("Subject: smtp before the kill")),
        "the acknowledged SMTP message: {fetched:?}"
    );
    assert!(
        !fetched.iter().any(|l| l.contains("Subject: big")),
        "the unacknowledged, half-sent APPEND must not appear (certainly not truncated): {fetched:?}"
    );
    let highest = max_uid(&fetched).max(acked.iter().map(|a| a.1).max().unwrap());
    assert!(uidnext > highest, "UIDNEXT {uidnext} is above every UID handed out ({highest})");
    let (_, new_uid) = appenduid(&c.append("INBOX", small(7).as_bytes()));
    assert!(new_uid > highest, "a new message gets UID {new_uid}, above {highest}: UIDs are never reused");
}

/// SIGKILL while the queue delivers into the mailbox: every message is in
/// INBOX after the restart, UIDVALIDITY and the UIDs seen before stay,
/// and the next message's UID is above all of them.
#[test]
fn sigkill_during_delivery_keeps_uids_and_uidvalidity() {
    let mut s = server("allow_plaintext_auth = true");
    let mut c = Imap::plain(s.addr("imap"));
    c.login(ALICE);
    let uidvalidity = code_number(&c.ok("SELECT INBOX"), "UIDVALIDITY");
    drop(c);
    let mut smtp = Client::connect(s.addr("mx"));
    smtp.reply();
    smtp.expect("EHLO client.test", 250);
    for i in 0..30 {
        let r = smtp.send_mail("bob@example.org", &[ALICE], &format!("Subject: crash-{i}\r\n\r\nbody {i}\r\n"));
        assert_eq!(r.code, 250);
    }
    s.kill9();
    s.start_again();
    assert!(eventually(Duration::from_secs(30), || s.queue().is_empty()), "the queue drains after the restart");
    let mut c = Imap::plain(s.addr("imap"));
    c.login(ALICE);
    let sel = c.ok("SELECT INBOX");
    assert_eq!(code_number(&sel, "UIDVALIDITY"), uidvalidity);
    let fetched = c.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    for i in 0..30 {
        assert!(fetched.iter().any(|l| l.contains(&format!("Subject: crash-{i}\r\n"))), "crash-{i} lost: {fetched:?}");
    }
    let before = max_uid(&fetched);
    drop(c);
    s.restart();
    let mut c = Imap::plain(s.addr("imap"));
    c.login(ALICE);
    c.ok("SELECT INBOX");
    let again = c.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert_eq!(again, fetched, "UIDs are stable across restarts");
    let (_, uid) = appenduid(&c.append("INBOX", small(1).as_bytes()));
    assert!(uid > before, "new UID {uid} above {before}");
}

// ---------------------------------------------------------------- misc

/// Garbage gets BAD, commands in the wrong state BAD or NO, credentials
/// without TLS on a require_tls server NO [PRIVACYREQUIRED]; at shutdown
/// every session gets `* BYE`.
#[test]
fn bad_commands_privacy_required_and_bye_at_shutdown() {
    let mut s = server("require_tls = true\nallow_plaintext_auth = true");
    let mut c = Imap::plain(s.addr("imap"));
    assert!(c.greeting.starts_with("* OK"), "{}", c.greeting);
    let (caps, _) = c.cmd("CAPABILITY");
    assert!(caps[0].contains(" LOGINDISABLED") && caps[0].contains(" STARTTLS"), "require_tls: {caps:?}");
    let (_, t) = c.cmd(&format!("LOGIN {ALICE} \"{PASSWORD}\""));
    assert!(t.contains(" NO [PRIVACYREQUIRED]"), "LOGIN without TLS under require_tls: {t}");
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{PASSWORD}"));
    let (_, t) = c.cmd(&format!("AUTHENTICATE PLAIN {plain}"));
    assert!(
        t.contains(" NO [PRIVACYREQUIRED]") || t.contains(" BAD"),
        "AUTHENTICATE without TLS under require_tls: {t}"
    );
    assert!(!t.contains(" OK"), "{t}");
    let (_, t) = c.cmd("FROBNICATE now");
    assert!(t.contains(" BAD"), "unknown command: {t}");
    let (_, t) = c.cmd("SELECT INBOX");
    assert!(t.contains(" BAD") || t.contains(" NO"), "SELECT before login: {t}");
    c.send(b"\r\n").unwrap();
    let l = c.line().unwrap();
    assert!(l.starts_with("* BAD") || l.contains(" BAD"), "an empty line: {l}");
    c.send(b"no-tag-at-all\r\n").unwrap();
    let l = c.line().unwrap();
    assert!(l.contains("BAD"), "a line without a command: {l}");
    c.send(b"x1 LOGIN \xff\xfe\x00 x\r\n").unwrap();
    let l = c.line().unwrap();
    assert!(l.contains("BAD") || l.contains(" NO"), "binary garbage: {l}");
    let (_, t) = c.cmd("NOOP");
    assert!(t.contains(" OK"), "the session survives garbage: {t}");

    // logged in and selected over implicit TLS, then shutdown: BYE for both
    let mut d = Imap::tls(s.addr("imaps"));
    d.login(ALICE);
    let (_, t) = d.cmd("FETCH 1:* (FLAGS)");
    assert!(t.contains(" BAD") || t.contains(" NO"), "FETCH without a selected mailbox: {t}");
    d.ok("SELECT INBOX");
    let (_, t) = d.cmd("FETCH 1:* (FLAGS");
    assert!(t.contains(" BAD"), "unbalanced parenthesis: {t}");
    let (_, t) = d.cmd("FETCH 1:* (NOSUCHITEM)");
    assert!(t.contains(" BAD"), "unknown FETCH item: {t}");
    let (_, t) = d.cmd("FETCH 1 (FLAGS)");
    assert!(t.contains(" BAD") || t.contains(" NO"), "FETCH of a message that does not exist: {t}");
    s.signal("TERM");
    let bye = d.line().unwrap_or_else(|e| panic!("a selected session gets BYE at shutdown: {e}"));
    assert!(bye.starts_with("* BYE"), "{bye}");
    let bye = c.line().unwrap_or_else(|e| panic!("a session before login gets BYE at shutdown: {e}"));
    assert!(bye.starts_with("* BYE"), "{bye}");
    s.stop();
}
