//! TLS reporting end to end: `postern tls report` over real deliveries by
//! the real server to receiving SMTP servers inside the test (TLS verified,
//! unverified, none, plaintext after a broken handshake), and TLS-RPT (RFC
//! 8460): a simulated day of sessions under DANE and MTA-STS policies in
//! the tracking log, the day's run with an injected clock
//! (`tlsrpt::Reporter::run_day`), `_smtp._tls` TXT records from a real DNS
//! server on loopback, and the report mails delivered by the server to the
//! rua's receiving server, gunzipped and checked field by field.

mod common;
#[path = "outbound/dns.rs"]
#[allow(dead_code)]
mod dns;
#[path = "outbound/sink.rs"]
#[allow(dead_code)]
mod sink;

use common::*;
use mail_parser::MimeHeaders;
use serde_json::{json, Value};
use sink::{Sink, SinkConfig, Sinks, StartTls};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

const DAY: u64 = 86_400;

fn connector(name: &str, space: &str, sink: &Sink, tls: &str, ca: Option<&str>) -> String {
    let ca = ca.map(|c| format!("tls_ca_file = {c:?}\n")).unwrap_or_default();
    format!(
        "[[connector]]\nname = \"{name}\"\naddress_spaces = [\"{space}\"]\nsmarthost = \"127.0.0.1:{}\"\ntls = \"{tls}\"\n{ca}\n",
        sink.port()
    )
}

fn server(connectors: &str, dns: Option<std::net::SocketAddr>) -> TestServer {
    let mut conf = config("relay_networks = [\"127.0.0.0/8\"]", connectors)
        .replace("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n", "");
    if let Some(d) = dns {
        conf = conf.replace(&format!("127.0.0.1:{}", silent_dns_port()), &d.to_string());
    }
    TestServer::start(&conf)
}

fn send(s: &TestServer, to: &[&str]) -> String {
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let id = queued_id(&c.send_mail("alice@origin.test", to, "Subject: hi\r\n\r\nhello\r\n"));
    c.cmd("QUIT");
    id
}

fn wait(what: &str, f: impl FnMut() -> bool) {
    assert!(eventually(Duration::from_secs(30), f), "timed out waiting: {what}");
}

/// A tracking-log line for one recipient's attempt, at `time`, under a policy.
fn attempt_line(time: u64, id: &str, rcpt: &str, policy: Value) -> String {
    let domain = rcpt.rsplit_once('@').unwrap().1;
    let mut e = json!({
        "time": humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_secs(time)).to_string(),
        "id": id, "event": "delivered", "rcpt": rcpt, "connector": "internet",
        "destination": format!("internet/{domain}"), "attempt": 1, "stage": "data", "code": 250,
        "tls": "unverified", "tls_version": "TLSv1.3",
    });
    for (k, v) in policy.as_object().unwrap() {
        e[k] = v.clone();
    }
    e.to_string() + "\n"
}

fn append(path: &std::path::Path, lines: &str) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap().write_all(lines.as_bytes()).unwrap();
}

fn tls_report(s: &TestServer, json: bool) -> String {
    let out = s.cli(if json { &["tls", "report", "--json"] } else { &["tls", "report"] });
    assert!(out.status.success(), "tls report: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_report_counts_sessions_messages_tls_verification_and_fallbacks_per_domain() {
    let sinks = Sinks::new();
    let dir = tempfile::tempdir().unwrap();
    let trusted = sinks.start(SinkConfig::new(&["127.0.0.1"]));
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &trusted.config.cert_pem).unwrap();
    let opportunistic = sinks.start(SinkConfig::new(&["sink.test"]));
    let plain = sinks.start(SinkConfig::new(&["sink.test"]).starttls(StartTls::NotOffered));
    let broken = sinks.start(SinkConfig::new(&["sink.test"]).starttls(StartTls::GarbageAfterReady));
    let strict = sinks.start(SinkConfig::new(&["sink.test"]).starttls(StartTls::NotOffered));
    let s = server(
        &[
            connector("verified", "verified.test", &trusted, "verify", Some(&ca.display().to_string())),
            connector("opp", "opp.test", &opportunistic, "opportunistic", None),
            connector("plain", "plain.test", &plain, "opportunistic", None),
            connector("broken", "broken.test", &broken, "opportunistic", None),
            connector("strict", "strict.test", &strict, "required", None),
        ]
        .concat(),
        None,
    );
    send(&s, &["a@verified.test", "b@verified.test"]); // one session, one message
    send(&s, &["a@verified.test"]);
    send(&s, &["a@opp.test"]);
    send(&s, &["a@plain.test"]);
    send(&s, &["a@broken.test"]);
    send(&s, &["a@strict.test"]);
    wait("deliveries", || {
        trusted.messages().len() == 2
            && opportunistic.messages().len() == 1
            && plain.messages().len() == 1
            && broken.messages().len() == 1
    });
    wait("the required one deferred", || {
        s.queue().iter().any(|q| q["recipients"][0]["last_error"].as_str().is_some_and(|e| e.contains("STARTTLS")))
    });
    // a DANE-verified session recorded by delivery today
    let now = postern::util::now_secs();
    let today = s.path().join("data/track").join(format!("{}.jsonl", &postern::util::rfc3339(now)[..10]));
    append(
        &today,
        &attempt_line(now, "DANE1", "x@dane.test", json!({"policy_type": "tlsa", "policy_domain": "dane.test"})),
    );

    let rows: Vec<Value> = tls_report(&s, true).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let row = |d: &str| rows.iter().find(|r| r["domain"] == d).unwrap_or_else(|| panic!("{d} in {rows:?}")).clone();
    let v = row("verified.test");
    assert_eq!((v["sessions"].as_u64(), v["messages"].as_u64()), (Some(2), Some(2)), "{v}");
    assert_eq!(
        (v["tls"].as_u64(), v["verified"].as_u64(), v["verified_by"]["verify"].as_u64()),
        (Some(2), Some(2), Some(2))
    );
    let o = row("opp.test");
    assert_eq!(
        (o["tls"].as_u64(), o["verified"].as_u64(), o["plaintext"].as_u64()),
        (Some(1), Some(0), Some(0)),
        "{o}"
    );
    let p = row("plain.test");
    assert_eq!((p["plaintext"].as_u64(), p["plaintext_fallback"].as_u64()), (Some(1), Some(0)), "{p}");
    let b = row("broken.test");
    assert_eq!(
        (b["sessions"].as_u64(), b["plaintext"].as_u64(), b["plaintext_fallback"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{b}"
    );
    let st = row("strict.test");
    assert_eq!(st["failures"]["tls: STARTTLS not offered"].as_u64(), Some(st["sessions"].as_u64().unwrap()), "{st}");
    assert_eq!(st["tls"].as_u64(), Some(0));
    let d = row("dane.test");
    assert_eq!((d["verified"].as_u64(), d["verified_by"]["dane"].as_u64()), (Some(1), Some(1)), "{d}");

    let table = tls_report(&s, false);
    assert!(table.starts_with("DOMAIN"), "{table}");
    let line = table.lines().find(|l| l.starts_with("broken.test")).unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols, ["broken.test", "1", "1", "0", "0", "1", "1"], "{table}");
    assert!(table.contains("x tls: STARTTLS not offered"), "{table}");
}

#[test]
fn tls_rpt_sends_one_report_per_policy_domain_to_its_mailto_rua() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut z = dns::Zone::new("test");
    z.txt("_smtp._tls.pol.test", "v=TLSRPTv1; rua=mailto:tlsrpt@rua.test");
    z.txt("_smtp._tls.dane.test", "v=TLSRPTv1;rua=https://reports.test/x,mailto:reports@rua.test");
    let d = rt.block_on(dns::serve(z));
    let sinks = Sinks::new();
    let rua = sinks.start(SinkConfig::new(&["sink.test"]));
    let out = sinks.start(SinkConfig::new(&["sink.test"]));
    let mut s = server(
        &[
            connector("rua", "rua.test", &rua, "opportunistic", None),
            connector("out", "*", &out, "opportunistic", None),
        ]
        .concat(),
        Some(d.addr),
    );
    // real mail too: it has no policy outcome, so no report is about it
    send(&s, &["a@pol.test"]);
    wait("delivered", || out.messages().len() == 1);
    // the server's daily task has done yesterday (nothing then) at start
    let data = s.path().join("data");
    wait("the daily task ran", || data.join("tlsrpt/last-day").exists());

    // yesterday, as delivery records it under MTA-STS and DANE
    let now = postern::util::now_secs();
    let day = now - now % DAY - DAY;
    let sts = |result: Option<&str>, host: &str| {
        let mut p = json!({
            "policy_type": "sts", "policy_domain": "pol.test", "host": host, "remote_ip": "192.0.2.10",
            "policy_strings": ["version: STSv1", "mode: testing", "mx: *.pol.test", "max_age: 86400"],
        });
        if let Some(r) = result {
            p["policy_result"] = json!(r);
            p["policy_testing"] = json!(true);
        }
        p
    };
    let tlsa = |result: Option<&str>| {
        let mut p = json!({"policy_type": "tlsa", "policy_domain": "dane.test", "host": "mx.dane.test",
            "remote_ip": "192.0.2.20", "policy_strings": ["3 1 1 0123abcd"]});
        if let Some(r) = result {
            p["policy_result"] = json!(r);
        }
        p
    };
    let lines = [
        attempt_line(day + 100, "S1", "a@pol.test", sts(None, "mx1.pol.test")),
        attempt_line(day + 101, "S1", "b@pol.test", sts(None, "mx1.pol.test")), // the same session
        attempt_line(day + 200, "S2", "a@pol.test", sts(None, "mx1.pol.test")),
        attempt_line(day + 300, "S3", "a@pol.test", sts(Some("certificate-host-mismatch"), "mx2.pol.test")),
        attempt_line(day + 400, "S4", "a@pol.test", sts(Some("certificate-host-mismatch"), "mx2.pol.test")),
        attempt_line(day + 500, "S5", "a@pol.test", sts(Some("starttls-not-supported"), "mx3.pol.test")),
        attempt_line(day + 600, "D1", "a@dane.test", tlsa(None)),
        attempt_line(day + 700, "D2", "a@dane.test", tlsa(Some("validation-failure"))),
        attempt_line(day + 800, "N1", "a@nopub.test", json!({"policy_type": "sts", "policy_domain": "nopub.test"})),
        // the day before and the day after are not in the report
        attempt_line(day - 10, "X1", "a@pol.test", sts(None, "mx1.pol.test")),
    ]
    .concat();
    append(&data.join("track").join(format!("{}.jsonl", &postern::util::rfc3339(day)[..10])), &lines);

    // the day's run, with the injected clock, on the stopped server's store
    s.stop();
    {
        let mut config = postern::config::Config::load(&s.config_path).unwrap();
        config.server.data_dir = data.clone();
        let dd = postern::datadir::DataDir::open(&data).unwrap();
        let (queue, _) = postern::queue::QueueStore::open(&dd.db, &data).unwrap();
        let tracker = postern::track::Tracker::open(postern::track::log_dir(&data), None);
        let r = postern::tlsrpt::Reporter::new(Arc::new(config), Arc::new(queue), tracker).unwrap();
        let done = rt.block_on(r.run_day(day, day + DAY + 300)).unwrap();
        let domains: Vec<&str> = done.queued.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(domains, ["dane.test", "pol.test"]);
        assert_eq!(done.skipped, ["nopub.test"]);
    }
    // sled lets go of its lock when its last handle is gone: wait for that
    assert!(
        eventually(Duration::from_secs(20), || postern::datadir::DataDir::open(&data).is_ok()),
        "store still locked"
    );
    s.start_again();
    wait("two reports at the rua", || rua.messages().len() == 2);

    let mut reports = Vec::new();
    for m in rua.messages() {
        let msg = mail_parser::MessageParser::default().parse(&m.body).expect("a report mail");
        let domain = msg.header_raw("TLS-Report-Domain").unwrap_or_default().trim().to_string();
        assert_eq!(msg.header_raw("TLS-Report-Submitter").map(str::trim), Some("mx.example.test"));
        let subject = msg.subject().unwrap_or_default().to_string();
        assert!(
            subject.starts_with(&format!("Report Domain: {domain} Submitter: mx.example.test Report-ID: <")),
            "{subject}"
        );
        assert!(m.mail.starts_with("<postmaster@"), "from the postmaster: {}", m.mail);
        let ct = msg.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("tlsrpt"));
        let part = msg.attachments().find(|a| a.content_type().is_some_and(|c| c.subtype() == Some("tlsrpt+gzip")));
        let gz = part.expect("an application/tlsrpt+gzip part").contents().to_vec();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
        let j: Value = serde_json::from_str(&text).unwrap();
        reports.push((domain, m.rcpts.clone(), j));
    }
    reports.sort_by(|a, b| a.0.cmp(&b.0));
    let date = &postern::util::rfc3339(day)[..10];
    for (domain, _, j) in &reports {
        assert_eq!(j["organization-name"], "mx.example.test");
        assert_eq!(j["contact-info"], "postmaster@example.test");
        assert_eq!(j["date-range"]["start-datetime"], format!("{date}T00:00:00Z"));
        assert_eq!(j["date-range"]["end-datetime"], format!("{date}T23:59:59Z"));
        assert!(j["report-id"].as_str().is_some_and(|id| id.contains(domain.as_str())), "{j}");
        assert_eq!(j["policies"].as_array().map(Vec::len), Some(1), "{j}");
    }
    let (_, to, dane) = &reports[0];
    assert_eq!(to, &["reports@rua.test"]);
    let p = &dane["policies"][0];
    assert_eq!(
        p["policy"],
        json!({"policy-type": "tlsa", "policy-domain": "dane.test",
        "policy-string": ["3 1 1 0123abcd"], "mx-host": ["mx.dane.test"]})
    );
    assert_eq!(p["summary"], json!({"total-successful-session-count": 1, "total-failure-session-count": 1}));
    assert_eq!(
        p["failure-details"],
        json!([{"result-type": "validation-failure", "receiving-mx-hostname": "mx.dane.test",
        "receiving-ip": "192.0.2.20", "failed-session-count": 1}])
    );

    let (_, to, sts) = &reports[1];
    assert_eq!(to, &["tlsrpt@rua.test"]);
    let p = &sts["policies"][0];
    assert_eq!(p["policy"]["policy-type"], "sts");
    assert_eq!(p["policy"]["policy-domain"], "pol.test");
    assert_eq!(p["policy"]["mx-host"], json!(["*.pol.test"]));
    assert_eq!(p["policy"]["policy-string"][1], "mode: testing");
    assert_eq!(p["summary"], json!({"total-successful-session-count": 2, "total-failure-session-count": 3}));
    let details = p["failure-details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{details:?}");
    assert_eq!(details[0]["result-type"], "certificate-host-mismatch");
    assert_eq!(details[0]["receiving-mx-hostname"], "mx2.pol.test");
    assert_eq!(details[0]["failed-session-count"], 2);
    assert_eq!(details[1]["result-type"], "starttls-not-supported");
    assert_eq!(details[1]["failed-session-count"], 1);
    // a restart sends nothing twice
    s.restart();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rua.messages().len(), 2);
}
