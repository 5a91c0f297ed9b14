//! `[metrics] listen` for real: the server binary with its metrics
//! listener on port 0 takes mail that is delivered locally, relayed to a
//! receiving SMTP server inside the test, deferred (a smarthost nobody
//! listens on) and bounced (550), refuses a recipient and a login; then
//! curl reads `/metrics` and the exact counters, the queue and
//! certificate gauges, and the shape of every line are checked, with
//! HEAD, 404 and 405 besides.

#[path = "common/mod.rs"]
mod common;
#[path = "outbound/sink.rs"]
#[allow(dead_code)]
mod sink;

use common::*;
use sink::{SinkConfig, Sinks};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

/// A port on 127.0.0.1 that nobody listens on (bound, then let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// curl with `args`; its stdout, and the HTTP status it printed last.
fn curl(args: &[&str]) -> (String, u16) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is needed for this test (.ci/run installs it)");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_string(), code.trim().parse().unwrap_or(0))
}

fn scrape(s: &TestServer) -> String {
    let (body, code) = curl(&[&format!("http://{}/metrics", s.addr("metrics"))]);
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample `series` (`name{labels}` exactly as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every line is a `# HELP`/`# TYPE` comment or `name{labels} value`
/// (Prometheus text format 0.0.4), and every sample's family has a TYPE.
fn assert_parses(text: &str) {
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "value of {line:?}");
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("labels end with }}: {line:?}"));
                for pair in labels.split(',') {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("label k=v: {line:?}"));
                    assert!(!k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{line:?}");
                    assert!(v.len() >= 2 && v.starts_with('"') && v.ends_with('"'), "quoted value: {line:?}");
                }
                name
            }
            None => series,
        };
        assert!(name.starts_with("postern_"), "{line:?}");
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{line:?}");
        assert!(typed.iter().any(|t| t == name), "a sample before its TYPE: {line:?}");
    }
}

fn send(s: &TestServer, from: &str, to: &[&str], subject: &str) -> String {
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let id = queued_id(&c.send_mail(from, to, &format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n")));
    c.cmd("QUIT");
    id
}

#[test]
fn metrics_count_sessions_messages_deliveries_and_auth_failures() {
    let sinks = Sinks::new();
    let sink = sinks.start(SinkConfig::new(&["sink.test"]).rcpt_reply("gone@dest.test", "550 5.1.1 no such user"));
    let dead = dead_port();
    let extra = format!(
        r#"[[virtual_server]]
name = "submission"
protocol = "smtp"
listen = ["127.0.0.1:0"]
tls = "starttls"
certificates = ["main"]
auth = "required"

[[connector]]
name = "out"
address_spaces = ["dest.test"]
smarthost = "127.0.0.1:{sink}"

[[connector]]
name = "dead"
address_spaces = ["dead.test"]
smarthost = "127.0.0.1:{dead}"

[queue]
retry_schedule = ["1h"]

[auth]
failure_delay = "10ms"

[metrics]
listen = "127.0.0.1:0"
"#,
        sink = sink.port()
    );
    let conf = config("relay_networks = [\"127.0.0.0/8\"]\nmax_message_size = 4096", &extra)
        .replace("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n", "");
    let s = TestServer::start(&conf);
    s.add_user("alice@example.test", "pw-alice");
    let metrics = s.addr("metrics");
    assert!(metrics.ip().is_loopback() && metrics.port() != 0, "{metrics}");

    // a message for a local user, one relayed (one recipient taken, one
    // refused with 550: an NDR back to alice, delivered locally), one for
    // a smarthost nobody listens on (deferred, stays queued)
    send(&s, "alice@example.test", &["alice@example.test"], "local");
    send(&s, "alice@example.test", &["x@dest.test", "gone@dest.test"], "relayed");
    let held = send(&s, "alice@example.test", &["y@dead.test"], "deferred");
    // a recipient refused at RCPT, and a failed AUTH over TLS on submission
    let mut c = Client::connect(s.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@origin.test>", 250);
    c.expect("RCPT TO:<nobody@example.test>", 550);
    // refusals the SMTP core makes by itself: a declared SIZE over the
    // limit at MAIL, and a message over it at the end of DATA
    c.expect("RSET", 250);
    c.expect("MAIL FROM:<a@origin.test> SIZE=100000", 552);
    c.expect("MAIL FROM:<a@origin.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("DATA", 354);
    c.send(&format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(8000)));
    assert_eq!(c.reply().code, 552);
    c.cmd("QUIT");
    let mut c = Client::connect(s.addr("submission"));
    c.reply();
    c.starttls();
    // PLAIN: "\0alice@example.test\0wrong"
    c.expect("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==", 535);
    c.cmd("QUIT");

    let expected: &[(&str, f64)] = &[
        (r#"postern_smtp_messages_total{server="mx",code="250"}"#, 3.0),
        (r#"postern_smtp_refusals_total{server="mx",command="RCPT",code="550"}"#, 1.0),
        (r#"postern_smtp_refusals_total{server="mx",command="MAIL",code="552"}"#, 1.0),
        (r#"postern_smtp_messages_total{server="mx",code="552"}"#, 1.0),
        // alice's message and the NDR to her
        (r#"postern_deliveries_total{outcome="delivered",tls="none"}"#, 2.0),
        (r#"postern_deliveries_total{outcome="delivered",tls="unverified"}"#, 1.0),
        (r#"postern_deliveries_total{outcome="failed",tls="unverified"}"#, 1.0),
        (r#"postern_deliveries_total{outcome="deferred",tls="none"}"#, 1.0),
        (r#"postern_auth_failures_total{server="submission",protocol="smtp",reason="failed"}"#, 1.0),
        (r#"postern_sessions_total{server="mx",protocol="smtp",tls="none"}"#, 4.0),
        (r#"postern_sessions_total{server="submission",protocol="smtp",tls="TLSv1.3"}"#, 1.0),
        (r#"postern_sessions_open{server="mx",protocol="smtp"}"#, 0.0),
        (r#"postern_sessions_open{server="submission",protocol="smtp"}"#, 0.0),
        (&format!(r#"postern_queue_messages{{destination="dead/127.0.0.1:{dead}"}}"#), 1.0),
    ];
    let mut text = String::new();
    let settled = eventually(Duration::from_secs(30), || {
        text = scrape(&s);
        expected.iter().all(|(series, v)| value(&text, series) == Some(*v))
    });
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(series, v)| value(&text, series) != Some(*v))
        .map(|(series, v)| format!("{series} = {:?}, expected {v}", value(&text, series)))
        .collect();
    assert!(settled, "{}\n--- /metrics:\n{text}\n--- log:\n{}", wrong.join("\n"), s.log());
    assert_eq!(sink.messages().len(), 1, "only x@dest.test reached the sink");
    assert!(s.queue().iter().any(|m| m["id"] == held), "the deferred message stays queued");
    assert_parses(&text);
    // nothing else was counted
    let counted: Vec<&str> = text.lines().filter(|l| l.starts_with("postern_deliveries_total")).collect();
    assert_eq!(counted.len(), 4, "{counted:?}");
    let age = format!(r#"postern_queue_oldest_age_seconds{{destination="dead/127.0.0.1:{dead}"}}"#);
    assert!(value(&text, &age).is_some_and(|a| a >= 0.0), "{text}");
    assert_eq!(value(&text, r#"postern_queue_messages{destination="local"}"#), None, "local mail left the queue");
    // the self-signed certificate made at first start is valid for a long while
    let left = value(&text, r#"postern_certificate_expiry_seconds{certificate="main"}"#).expect("certificate gauge");
    assert!(left > 300.0 * 86400.0, "{left}");
    assert!(text.contains("# TYPE postern_sessions_total counter\n"), "{text}");
    assert!(text.contains("# TYPE postern_queue_messages gauge\n"), "{text}");

    // HEAD: the headers only; other paths 404, other methods 405
    let (head, code) = curl(&["-I", &format!("http://{metrics}/metrics")]);
    assert_eq!(code, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(!head.contains("postern_"), "HEAD has no body: {head}");
    let (body, code) = curl(&[&format!("http://{metrics}/")]);
    assert_eq!(code, 404, "{body}");
    let (body, code) = curl(&[&format!("http://{metrics}/metrics/extra")]);
    assert_eq!(code, 404, "{body}");
    let (body, code) = curl(&["-X", "POST", "-d", "x=1", &format!("http://{metrics}/metrics")]);
    assert_eq!(code, 405, "{body}");
    let (body, code) = curl(&["-i", "-X", "DELETE", &format!("http://{metrics}/metrics")]);
    assert_eq!(code, 405, "{body}");
    assert!(body.to_ascii_lowercase().contains("allow: get, head"), "{body}");
    // a request head over the limit is refused (431, or closed before the
    // client read it), and the listener still serves
    let mut tcp = std::net::TcpStream::connect(metrics).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let big = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(16 * 1024));
    let _ = tcp.write_all(big.as_bytes());
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(value(&scrape(&s), r#"postern_smtp_messages_total{server="mx",code="250"}"#), Some(3.0));
}

#[test]
fn without_metrics_listen_nothing_listens() {
    let s = TestServer::start(&config("", ""));
    assert!(!s.addrs.contains_key("metrics"), "{:?}", s.addrs);
    let out = s.cli(&["check-config"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("metrics:       -\n"));
}
