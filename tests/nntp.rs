//! NNTP against the real server on 127.0.0.1:0 with a real client:
//! Python's nntplib over STARTTLS and over implicit TLS (NNTPS) — reading,
//! posting, listings, the credentials rules — and `postern group` through
//! the control socket and, with no server running, on the store directly.

mod common;

use common::*;

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "s3cret pass";

fn nntp_config(nntp_extra: &str, extra: &str) -> String {
    config(
        "",
        &format!(
            r#"
[[virtual_server]]
name = "nntp"
protocol = "nntp"
listen = ["127.0.0.1:0"]
tls = "starttls"
certificates = ["main"]
{nntp_extra}

[[virtual_server]]
name = "nntps"
protocol = "nntp"
listen = ["127.0.0.1:0"]
tls = "implicit"
certificates = ["main"]

{extra}
"#
        ),
    )
}

fn cli_ok(s: &TestServer, args: &[&str]) -> String {
    let out = s.cli(args);
    assert!(out.status.success(), "postern {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python prelude: a TLS context that trusts our self-signed certificate,
/// and a helper that turns an NNTP error into its response line.
const PY: &str = r#"
import nntplib, ssl, json, base64, datetime, warnings
warnings.simplefilter("ignore")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def b64(lines):
    return base64.b64encode(b"\r\n".join(lines) + b"\r\n").decode()
def error(f):
    try:
        f()
        return None
    except nntplib.NNTPError as e:
        return str(e)
"#;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The body posted: lines that need dot-stuffing, a lone dot, an empty line.
const BODY: &[u8] = b"First line\r\n.starts with a dot\r\n.\r\n..two dots\r\n\r\n. dot space\r\nend\r\n";

#[test]
fn nntplib_over_starttls_and_nntps() {
    let s = TestServer::start(&nntp_config("", ""));
    s.add_user(ALICE, PASSWORD);
    cli_ok(&s, &["group", "add", "misc.test", "--description", "Testing Postern"]);
    cli_ok(&s, &["group", "add", "local.announce", "--description", "Announcements\tand news"]);
    let script = format!(
        r#"{PY}
out = {{}}
n = nntplib.NNTP("127.0.0.1", {port}, timeout=15)
out["welcome"] = n.getwelcome()
out["caps_plain"] = n.getcapabilities()
out["anonymous_post"] = error(lambda: n.post(b"From: x@example.test\r\nNewsgroups: misc.test\r\nSubject: anon\r\n\r\nx\r\n"))
n.starttls(ctx)
out["caps_tls"] = n.getcapabilities()
out["login"] = n.login("{ALICE}", "{PASSWORD}")
out["caps_auth"] = n.getcapabilities()
body = base64.b64decode("{body}")
first = b"From: Alice <alice@example.test>\r\nNewsgroups: misc.test\r\nSubject: first post\r\n\r\n" + body
out["post1"] = n.post(first)
second = b"From: alice@example.test\r\nNewsgroups: misc.test,local.announce\r\nSubject: second\r\nMessage-ID: <second@example.test>\r\nReferences: <first@example.test>\r\n\r\nhello\r\n"
out["post2"] = n.post(second)
out["duplicate"] = error(lambda: n.post(second))
out["no_subject"] = error(lambda: n.post(b"From: a@example.test\r\nNewsgroups: misc.test\r\n\r\nx\r\n"))
out["no_group"] = error(lambda: n.post(b"From: a@example.test\r\nNewsgroups: no.such.group\r\nSubject: x\r\n\r\nx\r\n"))
resp, count, low, high, name = n.group("misc.test")
out["group"] = [resp, count, low, high, name]
out["listgroup"] = [l for l in n._longcmdstring("LISTGROUP misc.test")[1]]
resp, info = n.article(1)
out["article1"] = [resp, info.number, info.message_id, b64(info.lines)]
first_id = info.message_id
out["head1"] = b64(n.head(1)[1].lines)
out["body1"] = b64(n.body(1)[1].lines)
out["stat1"] = n.stat(1)[0]
out["article_id"] = n.article("<second@example.test>")[1].number
out["head_id"] = b64(n.head("<second@example.test>")[1].lines)
out["body_id"] = b64(n.body(first_id)[1].lines)
out["stat_id"] = n.stat("<second@example.test>")[0]
out["missing_number"] = error(lambda: n.stat(99))
out["missing_id"] = error(lambda: n.stat("<nope@example.test>"))
out["next"] = list(n.next())
out["next_none"] = error(lambda: n.next())
out["last"] = list(n.last())
out["over"] = n.over((1, 2))[1]
out["xover"] = n.xover(1, 2)[1]
out["over_id"] = n.over("<second@example.test>")[1]
out["hdr"] = n._longcmdstring("HDR Subject 1-")[1]
out["hdr_id"] = n._longcmdstring("HDR From <second@example.test>")[1]
out["xhdr"] = n.xhdr("subject", "1-2")[1]
out["list"] = [list(g) for g in n.list()[1]]
out["list_pattern"] = [list(g) for g in n.list("misc.*")[1]]
out["newsgroups"] = n.descriptions("*")[1]
out["overview_fmt"] = n._longcmdstring("LIST OVERVIEW.FMT")[1]
out["headers"] = n._longcmdstring("LIST HEADERS")[1]
out["active_times"] = n._longcmdstring("LIST ACTIVE.TIMES")[1]
out["newgroups"] = [g.group for g in n.newgroups(datetime.datetime(2000, 1, 1))[1]]
out["newgroups_future"] = n.newgroups(datetime.datetime(2100, 1, 1))[1]
out["newnews"] = n.newnews("misc.*", datetime.datetime(2000, 1, 1))[1]
out["newnews_local"] = n.newnews("local.*", datetime.datetime(2000, 1, 1))[1]
out["date"] = n.date()[1].isoformat()
out["help"] = n.help()[0]
out["quit"] = n.quit()

s = nntplib.NNTP_SSL("127.0.0.1", {tls_port}, ssl_context=ctx, timeout=15)
out["ssl_caps"] = s.getcapabilities()
out["ssl_login"] = s.login("{ALICE}", "{PASSWORD}")
out["ssl_group"] = list(s.group("local.announce"))
out["ssl_article"] = b64(s.article(1)[1].lines)
out["ssl_quit"] = s.quit()
print(json.dumps(out))
"#,
        port = s.addr("nntp").port(),
        tls_port = s.addr("nntps").port(),
        body = b64(BODY),
    );
    let v = json(&python(&script));
    let caps = |k: &str| v[k].as_object().unwrap().keys().cloned().collect::<Vec<_>>();

    assert!(v["welcome"].as_str().unwrap().starts_with("200 mx.example.test"), "{}", v["welcome"]);
    // before TLS: no credentials offered (allow_plaintext_auth = false), STARTTLS offered
    assert!(caps("caps_plain").contains(&"STARTTLS".into()), "{:?}", caps("caps_plain"));
    assert!(!caps("caps_plain").contains(&"AUTHINFO".into()) && !caps("caps_plain").contains(&"SASL".into()));
    assert_eq!(v["caps_plain"]["VERSION"], serde_json::json!(["2"]));
    for c in ["READER", "POST", "HDR", "NEWNEWS", "IMPLEMENTATION"] {
        assert!(caps("caps_plain").contains(&c.into()), "{c} in {:?}", caps("caps_plain"));
    }
    assert_eq!(v["caps_plain"]["OVER"], serde_json::json!(["MSGID"]));
    assert_eq!(
        v["caps_plain"]["LIST"],
        serde_json::json!(["ACTIVE", "NEWSGROUPS", "OVERVIEW.FMT", "HEADERS", "ACTIVE.TIMES"])
    );
    assert!(!caps("caps_plain").contains(&"IHAVE".into()), "not a feed peer");
    // after TLS: credentials offered, no STARTTLS; after login no AUTHINFO
    assert_eq!(v["caps_tls"]["AUTHINFO"], serde_json::json!(["USER", "SASL"]));
    assert_eq!(v["caps_tls"]["SASL"], serde_json::json!(["PLAIN"]));
    assert!(!caps("caps_tls").contains(&"STARTTLS".into()));
    assert!(v["login"].is_null() || v["login"].is_string());
    assert!(!caps("caps_auth").contains(&"AUTHINFO".into()), "{:?}", caps("caps_auth"));
    assert!(v["anonymous_post"].as_str().unwrap().starts_with("480"), "{}", v["anonymous_post"]);

    assert!(v["post1"].as_str().unwrap().starts_with("240"), "{}", v["post1"]);
    assert!(v["post2"].as_str().unwrap().starts_with("240"), "{}", v["post2"]);
    assert!(v["duplicate"].as_str().unwrap().starts_with("441"), "{}", v["duplicate"]);
    assert!(
        v["no_subject"].as_str().unwrap().starts_with("441") && v["no_subject"].as_str().unwrap().contains("Subject")
    );
    assert!(v["no_group"].as_str().unwrap().contains("no.such.group"), "{}", v["no_group"]);

    assert_eq!(v["group"], serde_json::json!(["211 2 1 2 misc.test", 2, 1, 2, "misc.test"]));
    assert_eq!(v["listgroup"], serde_json::json!(["1", "2"]));
    let article1 = v["article1"].as_array().unwrap();
    assert!(article1[0].as_str().unwrap().starts_with("220 1 <"), "{article1:?}");
    let first_id = article1[2].as_str().unwrap().to_string();
    assert!(first_id.ends_with("@mx.example.test>"), "a Message-ID was added: {first_id}");
    let article = base64_decode(article1[3].as_str().unwrap());
    let text = String::from_utf8_lossy(&article).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert_eq!(body.as_bytes(), BODY, "the dot-stuffed body round-trips byte for byte");
    assert!(head.starts_with("Path: mx.example.test!not-for-mail\r\n"), "{head}");
    for h in ["Injection-Date: ", "Date: ", &format!("Message-ID: {first_id}"), "Xref: mx.example.test misc.test:1"] {
        assert!(head.contains(h), "{h} in {head}");
    }
    assert_eq!(base64_decode(v["head1"].as_str().unwrap()), format!("{head}\r\n").into_bytes());
    assert_eq!(base64_decode(v["body1"].as_str().unwrap()), BODY);
    assert!(v["stat1"].as_str().unwrap().starts_with(&format!("223 1 {first_id}")));
    assert_eq!(v["article_id"], 0, "by message-id the number is 0");
    let head2 = String::from_utf8(base64_decode(v["head_id"].as_str().unwrap())).unwrap();
    assert!(head2.contains("Xref: mx.example.test misc.test:2 local.announce:1"), "{head2}");
    assert_eq!(base64_decode(v["body_id"].as_str().unwrap()), BODY);
    assert!(v["stat_id"].as_str().unwrap().starts_with("223 0 <second@example.test>"));
    assert!(v["missing_number"].as_str().unwrap().starts_with("423"));
    assert!(v["missing_id"].as_str().unwrap().starts_with("430"));
    assert_eq!(v["next"][1], 2);
    assert_eq!(v["next"][2], "<second@example.test>");
    assert!(v["next_none"].as_str().unwrap().starts_with("421"));
    assert_eq!(v["last"][1], 1);

    let over = v["over"].as_array().unwrap();
    assert_eq!(over.len(), 2);
    assert_eq!(over[0][0], 1);
    assert_eq!(over[0][1]["subject"], "first post");
    assert_eq!(over[0][1]["from"], "Alice <alice@example.test>");
    assert_eq!(over[0][1]["message-id"], first_id.as_str());
    assert_eq!(over[0][1][":bytes"], article.len().to_string());
    assert_eq!(over[1][1]["references"], "<first@example.test>");
    assert_eq!(over[1][1]["xref"], "mx.example.test misc.test:2 local.announce:1");
    assert_eq!(v["xover"], v["over"]);
    assert_eq!(v["over_id"][0][0], 0);
    assert_eq!(v["over_id"][0][1]["subject"], "second");
    assert_eq!(v["hdr"], serde_json::json!(["1 first post", "2 second"]));
    assert_eq!(v["hdr_id"], serde_json::json!(["0 alice@example.test"]));
    assert_eq!(v["xhdr"], serde_json::json!([["1", "first post"], ["2", "second"]]));

    assert_eq!(v["list"], serde_json::json!([["local.announce", "1", "1", "y"], ["misc.test", "2", "1", "y"]]));
    assert_eq!(v["list_pattern"], serde_json::json!([["misc.test", "2", "1", "y"]]));
    assert_eq!(
        v["newsgroups"],
        serde_json::json!({"local.announce": "Announcements\tand news", "misc.test": "Testing Postern"})
    );
    assert_eq!(
        v["overview_fmt"],
        serde_json::json!([
            "Subject:",
            "From:",
            "Date:",
            "Message-ID:",
            "References:",
            ":bytes",
            ":lines",
            "Xref:full"
        ])
    );
    assert_eq!(v["headers"], serde_json::json!([":", ":bytes", ":lines"]));
    assert_eq!(v["active_times"].as_array().unwrap().len(), 2);
    assert_eq!(v["newgroups"], serde_json::json!(["local.announce", "misc.test"]));
    assert_eq!(v["newgroups_future"], serde_json::json!([]));
    assert_eq!(v["newnews"], serde_json::json!([first_id, "<second@example.test>"]));
    assert_eq!(v["newnews_local"], serde_json::json!(["<second@example.test>"]));
    let date = v["date"].as_str().unwrap();
    assert!(date.starts_with("20") && date.len() == 19, "{date}");
    assert!(v["help"].as_str().unwrap().starts_with("100"));
    assert!(v["quit"].as_str().unwrap().starts_with("205"));

    // NNTPS: TLS from the first byte, credentials offered at once
    assert_eq!(v["ssl_caps"]["AUTHINFO"], serde_json::json!(["USER", "SASL"]));
    assert!(!v["ssl_caps"].as_object().unwrap().contains_key("STARTTLS"));
    assert_eq!(v["ssl_group"], serde_json::json!(["211 1 1 1 local.announce", 1, 1, 1, "local.announce"]));
    let a = String::from_utf8(base64_decode(v["ssl_article"].as_str().unwrap())).unwrap();
    assert!(a.contains("Message-ID: <second@example.test>\r\n") && a.ends_with("\r\n\r\nhello\r\n"), "{a}");
    assert!(v["ssl_quit"].as_str().unwrap().starts_with("205"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// `require_tls`: no credentials before TLS, whatever allow_plaintext_auth
/// says (483); AUTHINFO SASL PLAIN after STARTTLS; anonymous posting where
/// the operator allows it.
#[test]
fn credentials_need_tls_under_require_tls_and_anonymous_posting() {
    let s = TestServer::start(&nntp_config(
        "require_tls = true\nallow_plaintext_auth = true",
        r#"
[[virtual_server]]
name = "open"
protocol = "nntp"
listen = ["127.0.0.1:0"]
allow_anonymous_posting = true
"#,
    ));
    s.add_user(ALICE, PASSWORD);
    cli_ok(&s, &["group", "add", "misc.test"]);
    let sasl = b64(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    let script = format!(
        r#"{PY}
out = {{}}
n = nntplib.NNTP("127.0.0.1", {port}, timeout=15)
out["caps"] = n.getcapabilities()
out["user"] = error(lambda: n.login("{ALICE}", "{PASSWORD}"))
out["sasl"] = error(lambda: n._shortcmd("AUTHINFO SASL PLAIN {sasl}"))
n.starttls(ctx)
out["sasl_tls"] = n._shortcmd("AUTHINFO SASL PLAIN {sasl}")
out["post"] = n.post(b"From: alice@example.test\r\nNewsgroups: misc.test\r\nSubject: over TLS\r\n\r\nx\r\n")
n.quit()
o = nntplib.NNTP("127.0.0.1", {open_port}, timeout=15)
out["open_caps"] = o.getcapabilities()
out["anonymous"] = o.post(b"From: someone@example.org\r\nNewsgroups: misc.test\r\nSubject: anonymous\r\n\r\nx\r\n")
out["group"] = list(o.group("misc.test"))
o.quit()
print(json.dumps(out))
"#,
        port = s.addr("nntp").port(),
        open_port = s.addr("open").port(),
    );
    let v = json(&python(&script));
    assert!(!v["caps"].as_object().unwrap().contains_key("AUTHINFO"), "{}", v["caps"]);
    assert!(v["user"].as_str().unwrap().starts_with("483"), "{}", v["user"]);
    assert!(v["sasl"].as_str().unwrap().starts_with("483"), "{}", v["sasl"]);
    assert!(v["sasl_tls"].as_str().unwrap().starts_with("281"), "{}", v["sasl_tls"]);
    assert!(v["post"].as_str().unwrap().starts_with("240"), "{}", v["post"]);
    assert!(!v["open_caps"].as_object().unwrap().contains_key("STARTTLS"), "a plaintext server offers no STARTTLS");
    assert!(v["anonymous"].as_str().unwrap().starts_with("240"), "{}", v["anonymous"]);
    assert_eq!(v["group"][1], 2);
}

/// `postern group add|list|delete` through the control socket of a running
/// server, and on the store directly when none runs; errors are one
/// sentence naming the group.
#[test]
fn postern_group_with_and_without_a_running_server() {
    let mut s = TestServer::start(&nntp_config("", ""));
    let said = cli_ok(&s, &["group", "add", "comp.test", "--description", "Compilers"]);
    assert_eq!(said.trim(), "newsgroup comp.test added");
    let out = s.cli(&["group", "add", "comp.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "postern: newsgroup comp.test already exists");
    let out = s.cli(&["group", "add", "bad..name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"bad..name\""), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = cli_ok(&s, &["group", "list", "--json"]);
    let g = json(lines.lines().next().unwrap());
    assert_eq!(g["name"], "comp.test");
    assert_eq!(g["description"], "Compilers");
    assert_eq!(g["posting"], "y");
    assert_eq!((g["count"].as_u64(), g["low"].as_u64(), g["high"].as_u64()), (Some(0), Some(1), Some(0)));
    assert!(g["created"].as_str().unwrap().ends_with('Z'), "{g}");
    // the running server sees the new group at once
    let script = format!(
        r#"{PY}
n = nntplib.NNTP("127.0.0.1", {port}, timeout=15)
print(json.dumps(list(n.group("comp.test"))))
"#,
        port = s.addr("nntp").port()
    );
    assert_eq!(json(&python(&script)), serde_json::json!(["211 0 1 0 comp.test", 0, 1, 0, "comp.test"]));

    s.stop();
    assert_eq!(cli_ok(&s, &["group", "add", "misc.test"]).trim(), "newsgroup misc.test added");
    let table = cli_ok(&s, &["group", "list"]);
    assert!(table.starts_with("NEWSGROUP") && table.contains("comp.test") && table.contains("misc.test"), "{table}");
    assert_eq!(cli_ok(&s, &["group", "delete", "comp.test"]).trim(), "newsgroup comp.test deleted");
    let out = s.cli(&["group", "delete", "comp.test"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "postern: newsgroup comp.test does not exist");
    s.start_again();
    let names: Vec<String> = cli_ok(&s, &["group", "list", "--json"])
        .lines()
        .map(|l| json(l)["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["misc.test"]);
}

/// A raw NNTP connection, for what nntplib cannot do (feeding).
struct Raw {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Raw {
    fn connect(addr: std::net::SocketAddr) -> Raw {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(15))).unwrap();
        Raw { reader: std::io::BufReader::new(s.try_clone().unwrap()), writer: s }
    }
    fn send(&mut self, data: &str) {
        use std::io::Write;
        self.writer.write_all(data.as_bytes()).expect("write");
    }
    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("read");
        assert!(l.ends_with("\r\n"), "a whole line: {l:?}");
        l.truncate(l.len() - 2);
        l
    }
    fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.line()
    }
    /// The lines of a multi-line block, unstuffed.
    fn block(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l == "." {
                return out;
            }
            out.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
        }
    }
}

fn fed(id: &str, groups: &str) -> String {
    format!(
        "Path: inn.example.net!not-for-mail\r\nFrom: bob@example.net\r\nNewsgroups: {groups}\r\nSubject: fed {id}\r\n\
         Message-ID: {id}\r\nDate: Mon, 30 Nov 2026 08:00:00 +0000\r\nXref: inn.example.net {groups}:7\r\n\r\n\
         ..a dot-stuffed line\r\nend\r\n.\r\n"
    )
}

/// A `[[news_peer]]` feeds us with IHAVE and with streaming: only from its
/// `accept_from`, only into its `groups`, never the same article twice;
/// our name goes first in `Path` and the Xref is ours.
#[test]
fn a_peer_feeds_with_ihave_and_streaming() {
    let s = TestServer::start(&nntp_config(
        "",
        r#"
[[news_peer]]
name = "inn"
accept_from = ["127.0.0.1"]
groups = ["misc.*"]
"#,
    ));
    cli_ok(&s, &["group", "add", "misc.test"]);
    cli_ok(&s, &["group", "add", "other.test"]);
    let mut c = Raw::connect(s.addr("nntp"));
    assert!(c.line().starts_with("200 "));
    assert!(c.cmd("CAPABILITIES").starts_with("101"));
    let caps = c.block();
    assert!(caps.contains(&"IHAVE".into()) && caps.contains(&"STREAMING".into()), "{caps:?}");

    assert!(c.cmd("IHAVE <f1@inn.example.net>").starts_with("335"));
    c.send(&fed("<f1@inn.example.net>", "misc.test,other.test"));
    assert!(c.line().starts_with("235"));
    assert!(c.cmd("IHAVE <f1@inn.example.net>").starts_with("435"), "seen: not wanted");
    assert!(c.cmd("MODE STREAM").starts_with("203"));
    assert_eq!(c.cmd("CHECK <f1@inn.example.net>"), "438 <f1@inn.example.net>");
    assert_eq!(c.cmd("CHECK <f2@inn.example.net>"), "238 <f2@inn.example.net>");
    // pipelined, as innfeed sends them
    c.send(&format!(
        "TAKETHIS <f2@inn.example.net>\r\n{}TAKETHIS <f3@inn.example.net>\r\n{}TAKETHIS <f2@inn.example.net>\r\n{}",
        fed("<f2@inn.example.net>", "misc.test"),
        fed("<f3@inn.example.net>", "other.test"),
        fed("<f2@inn.example.net>", "misc.test"),
    ));
    assert!(c.line().starts_with("239 <f2@inn.example.net>"));
    let r = c.line();
    assert!(r.starts_with("439 <f3@inn.example.net>"), "no group of the peer's: {r}");
    assert!(c.line().starts_with("439 <f2@inn.example.net>"), "a duplicate");
    assert!(c.cmd("QUIT").starts_with("205"));

    let mut r = Raw::connect(s.addr("nntp"));
    r.line();
    assert!(r.cmd("ARTICLE <f1@inn.example.net>").starts_with("220 0 <f1@inn.example.net>"));
    let a = r.block();
    assert_eq!(a[0], "Path: mx.example.test!inn.example.net!not-for-mail");
    assert!(a.contains(&"Xref: mx.example.test misc.test:1".to_string()), "only the peer's groups, our Xref: {a:?}");
    assert_eq!(a[a.len() - 2..], [".a dot-stuffed line", "end"]);
    assert_eq!(r.cmd("GROUP misc.test"), "211 2 1 2 misc.test");
    assert_eq!(r.cmd("GROUP other.test"), "211 0 1 0 other.test");
    assert!(r.cmd("QUIT").starts_with("205"));
}
