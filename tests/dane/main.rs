//! DANE (RFC 7672) end to end on loopback: a DNS server signing its root
//! zone with a test key that the resolver trusts through `[dns]
//! trust_anchor`, receiving SMTP servers with real rustls on the
//! connector's `mx_port`, and the transport (and, in one test, the real
//! server binary with `queue summary`) deciding by the TLSA records.

#[path = "../common/mod.rs"]
mod common;
mod signed;
#[path = "../outbound/sink.rs"]
#[allow(dead_code)]
mod sink;

use postern::config::Config;
use postern::delivery::{
    AttemptReport, OutboundMessage, PolicyKind, RcptOutcome, SmtpTransport, Timeouts, TransportSettings,
};
use postern::proto::smtp::server::BodyType;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use signed::{SignedDns, World, INSECURE};
use sink::{Sink, SinkConfig, StartTls};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().to_vec()
}

fn spki(cert: &[u8]) -> Vec<u8> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).expect("certificate");
    c.tbs_certificate.subject_pki.raw.to_vec()
}

/// The DER of a sink's (self-signed) certificate.
fn sink_cert(s: &Sink) -> Vec<u8> {
    CertificateDer::from_pem_slice(s.config.cert_pem.as_bytes()).expect("sink certificate").as_ref().to_vec()
}

/// `3 1 1` data for a certificate.
fn ee(cert: &[u8]) -> Vec<u8> {
    sha256(&spki(cert))
}

fn config(dns: &SignedDns, connectors: &str) -> Arc<Config> {
    let text = format!(
        r#"[server]
hostname = "postern.test"
local_domains = ["local.test"]

[dns]
nameservers = ["{ns}"]
timeout = "2s"
dnssec = true
trust_anchor = "{anchor}"

{connectors}
"#,
        ns = dns.addr,
        anchor = dns.anchor.display()
    );
    Arc::new(Config::parse(&text, Path::new("dane-test.toml")).expect("test config"))
}

fn connector(port: u16, tls: &str) -> String {
    format!("[[connector]]\nname = \"out\"\naddress_spaces = [\"*\"]\nmx_port = {port}\ntls = \"{tls}\"\n")
}

fn transport(config: &Arc<Config>) -> SmtpTransport {
    let settings =
        TransportSettings { timeouts: Timeouts::all(Duration::from_secs(5)), ..TransportSettings::default() };
    SmtpTransport::with_settings(config.clone(), settings).expect("transport")
}

const BODY: &[u8] = b"From: a@origin.test\r\nTo: x@dest.test\r\nSubject: dane\r\n\r\nHello.\r\n";

async fn deliver(config: &Arc<Config>, domain: &str) -> AttemptReport {
    let t = transport(config);
    let to = format!("x@{domain}");
    let rcpts = [(0, to.as_str())];
    let msg = OutboundMessage {
        id: "DANETEST",
        sender: "a@origin.test",
        recipients: &rcpts,
        body: BODY,
        body_type: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        tls_optional: false,
    };
    tokio::time::timeout(Duration::from_secs(60), t.deliver(&config.connectors[0], domain, &msg))
        .await
        .expect("deliver finished in time")
}

/// `delivered`, or `deferred <category>` / `failed <category>`.
fn outcome(r: &AttemptReport) -> String {
    match &r.outcomes[0].1 {
        RcptOutcome::Delivered(_) => "delivered".to_string(),
        RcptOutcome::Deferred(a) => format!("deferred {}", a.category()),
        RcptOutcome::Failed(a) => format!("failed {}", a.category()),
    }
}

/// The world every test starts from: `domain`'s MX `mx.<domain>` on 127.0.0.1.
fn world(domain: &str) -> World {
    let mut w = World::new();
    let mx = format!("mx.{domain}");
    w.mx(domain, 10, &mx).a(&mx, LO);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_dane_ee_record_delivers_verified() {
    let sink = Sink::start(SinkConfig::new(&["mx.dane.test"])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut w = world("dane.test");
    w.tlsa("mx.dane.test", sink.port(), 3, 1, 1, ee(&sink_cert(&sink)));
    let dns = w.serve(dir.path()).await;
    let r = deliver(&config(&dns, &connector(sink.port(), "opportunistic")), "dane.test").await;
    assert_eq!(outcome(&r), "delivered", "{r:?}");
    assert_eq!(sink.messages().len(), 1);
    assert!(sink.messages()[0].tls.is_some(), "over TLS");
    let tls = r.tls.expect("tls outcome");
    assert!(tls.verified, "DANE authenticated the server: {tls:?}");
    let p = tls.policy.expect("the DANE policy's outcome");
    assert_eq!((p.kind, p.domain.as_str(), p.failure), (PolicyKind::Tlsa, "dane.test", None));
    assert_eq!(p.strings.len(), 1);
    assert!(p.strings[0].starts_with("3 1 1 "), "{:?}", p.strings);
    // DANE decides instead of `verify`'s web PKI check (the certificate is self-signed)
    let r = deliver(&config(&dns, &connector(sink.port(), "verify")), "dane.test").await;
    assert_eq!(outcome(&r), "delivered", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_matching_record_defers_although_the_certificate_would_do() {
    let sink = Sink::start(SinkConfig::new(&["mx.dane.test"])).await;
    let other = rcgen::generate_simple_self_signed(vec!["mx.dane.test".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = world("dane.test");
    w.tlsa("mx.dane.test", sink.port(), 3, 1, 1, ee(other.cert.der()));
    let dns = w.serve(dir.path()).await;
    // opportunistic TLS alone takes any certificate; DANE does not
    let r = deliver(&config(&dns, &connector(sink.port(), "opportunistic")), "dane.test").await;
    assert_eq!(outcome(&r), "deferred tls: dane: no TLSA record matched", "{r:?}");
    assert!(sink.messages().is_empty(), "nothing was sent");
    assert!(!r.unreachable || r.tls.is_some());
    let p = r.tls.and_then(|t| t.policy).expect("the DANE policy's outcome");
    assert_eq!((p.kind, p.failure.as_deref()), (PolicyKind::Tlsa, Some("validation-failure")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_not_offered_with_a_valid_record_defers() {
    let sink = Sink::start(SinkConfig::new(&["mx.dane.test"]).starttls(StartTls::NotOffered)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut w = world("dane.test");
    w.tlsa("mx.dane.test", sink.port(), 3, 1, 1, ee(&sink_cert(&sink)));
    let dns = w.serve(dir.path()).await;
    let r = deliver(&config(&dns, &connector(sink.port(), "opportunistic")), "dane.test").await;
    assert_eq!(outcome(&r), "deferred tls: dane: STARTTLS not offered", "{r:?}");
    assert!(sink.messages().is_empty(), "never in plaintext");
    let p = r.tls.and_then(|t| t.policy).expect("the DANE policy's outcome");
    assert_eq!(p.failure.as_deref(), Some("starttls-not-supported"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_zone_falls_back_to_the_connector_policy() {
    let sink = Sink::start(SinkConfig::new(&["mx.mail.insecure.test"])).await;
    let dir = tempfile::tempdir().unwrap();
    let domain = format!("mail.{INSECURE}");
    let mut w = world(&domain);
    // a TLSA record that would not match, in a zone nothing vouches for: ignored
    w.tlsa(&format!("mx.{domain}"), sink.port(), 3, 1, 1, vec![0x55; 32]);
    // RFC 7672 §2.2.1: a signed MX naming a host whose addresses are insecure: no DANE either
    w.mx("mixed.test", 10, &format!("mx.{domain}"));
    let dns = w.serve(dir.path()).await;
    for d in [domain.as_str(), "mixed.test"] {
        let r = deliver(&config(&dns, &connector(sink.port(), "opportunistic")), d).await;
        assert_eq!(outcome(&r), "delivered", "{d}: {r:?}");
        let tls = r.tls.expect("tls outcome");
        assert!(tls.info.is_some() && !tls.verified && tls.policy.is_none(), "{d}: opportunistic TLS: {tls:?}");
    }
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_signatures_defer_and_nothing_connects() {
    let sink = Sink::start(SinkConfig::new(&["mx.dane.test"])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut w = world("dane.test");
    w.tlsa("mx.dane.test", sink.port(), 3, 1, 1, ee(&sink_cert(&sink)));
    // MX records changed after signing
    let mx =
        |p: u16| hickory_proto::rr::RData::MX(hickory_proto::rr::rdata::MX::new(p, "mx.dane.test.".parse().unwrap()));
    w.mx("bogusmx.test", 10, "mx.dane.test").tamper("bogusmx.test", mx(20));
    // TLSA records changed after signing
    w.mx("bogustlsa.test", 10, "mx.bogustlsa.test").a("mx.bogustlsa.test", LO);
    w.tlsa("mx.bogustlsa.test", sink.port(), 3, 1, 1, ee(&sink_cert(&sink)));
    let forged = hickory_proto::rr::rdata::TLSA::new(3.into(), 1.into(), 1.into(), vec![0x66; 32]);
    w.tamper(&format!("_{}._tcp.mx.bogustlsa.test", sink.port()), hickory_proto::rr::RData::TLSA(forged));
    let dns = w.serve(dir.path()).await;
    let config = config(&dns, &connector(sink.port(), "opportunistic"));

    let r = deliver(&config, "bogusmx.test").await;
    assert_eq!(outcome(&r), "deferred dns: dnssec: bogus MX records", "{r:?}");
    let r = deliver(&config, "bogustlsa.test").await;
    assert_eq!(outcome(&r), "deferred dns: dnssec: bogus TLSA records", "{r:?}");
    let p = r.tls.and_then(|t| t.policy).expect("the DANE policy's outcome");
    assert_eq!(p.failure.as_deref(), Some("dnssec-invalid"));
    assert_eq!(sink.connections(), 0, "a bogus answer is never used");
    // the good domain next to them still delivers
    assert_eq!(outcome(&deliver(&config, "dane.test").await), "delivered");
}

/// A CA and a leaf for `name` it issued: (leaf, ca) DER and the leaf's key.
fn ca_and_leaf(
    name: &str,
) -> (CertificateDer<'static>, CertificateDer<'static>, rustls_pki_types::PrivateKeyDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "DANE test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    (leaf.der().clone(), ca.der().clone(), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_ta_delivers_when_the_chain_has_the_anchor_and_names_the_host() {
    let (leaf, ca, key) = ca_and_leaf("mx.ta.test");
    let sink = Sink::start(SinkConfig::new(&["mx.ta.test"]).certificate(vec![leaf, ca.clone()], key)).await;
    let (wrong_leaf, wrong_ca, wrong_key) = ca_and_leaf("somewhere.else.test");
    let wrong = Sink::start(SinkConfig::new(&["x"]).certificate(vec![wrong_leaf, wrong_ca.clone()], wrong_key)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut w = world("ta.test");
    w.tlsa("mx.ta.test", sink.port(), 2, 0, 1, sha256(&ca));
    w.mx("wrongname.test", 10, "mx.wrongname.test").a("mx.wrongname.test", LO);
    w.tlsa(
        "mx.wrongname.test",
        wrong.port(),
        2,
        1,
        2,
        ring::digest::digest(&ring::digest::SHA512, &spki(&wrong_ca)).as_ref().to_vec(),
    );
    let dns = w.serve(dir.path()).await;

    let r = deliver(&config(&dns, &connector(sink.port(), "opportunistic")), "ta.test").await;
    assert_eq!(outcome(&r), "delivered", "{r:?}");
    let tls = r.tls.expect("tls outcome");
    assert!(tls.verified && tls.policy.is_some_and(|p| p.failure.is_none() && p.strings[0].starts_with("2 0 1 ")));
    // the anchor matches, but the chain names neither the MX host nor the domain
    let r = deliver(&config(&dns, &connector(wrong.port(), "opportunistic")), "wrongname.test").await;
    assert_eq!(outcome(&r), "deferred tls: dane: no TLSA record matched", "{r:?}");
    assert!(wrong.messages().is_empty());
}

/// The real server: one domain with a matching record is delivered, one
/// whose record does not match waits, and `queue summary` says why.
#[test]
fn queue_summary_names_the_dane_failure() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let good = rt.block_on(Sink::start(SinkConfig::new(&["mx.good.test"])));
    let bad = rt.block_on(Sink::start(SinkConfig::new(&["mx.bad.test"])));
    let other = rcgen::generate_simple_self_signed(vec!["mx.bad.test".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = world("good.test");
    w.tlsa("mx.good.test", good.port(), 3, 1, 1, ee(&sink_cert(&good)));
    w.mx("bad.test", 10, "mx.bad.test").a("mx.bad.test", LO);
    w.tlsa("mx.bad.test", bad.port(), 3, 1, 1, ee(other.cert.der()));
    let dns = rt.block_on(w.serve(dir.path()));

    let connectors = format!(
        "[[connector]]\nname = \"good\"\naddress_spaces = [\"good.test\"]\nmx_port = {}\n\n\
         [[connector]]\nname = \"bad\"\naddress_spaces = [\"bad.test\"]\nmx_port = {}\n",
        good.port(),
        bad.port()
    );
    let base = common::config(
        "relay_networks = [\"127.0.0.0/8\"]",
        &format!("{connectors}\n[queue]\nretry_schedule = [\"1h\"]\n"),
    )
    .replace("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n", "");
    let dns_at = base.find("[dns]").expect("the base config has [dns]");
    let dns_end = base[dns_at..].find("\n\n").map(|n| dns_at + n).unwrap_or(base.len());
    let conf = format!(
        "{}[dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\ndnssec = true\ntrust_anchor = \"{}\"\n{}",
        &base[..dns_at],
        dns.addr,
        dns.anchor.display(),
        &base[dns_end..]
    );
    let s = common::TestServer::start(&conf);
    let send = |to: &str| {
        let mut c = common::Client::connect(s.addr("mx"));
        c.reply();
        c.expect("EHLO client.test", 250);
        let r = c.send_mail("sender@origin.test", &[to], "Subject: dane\r\n\r\nbody\r\n");
        assert_eq!(r.code, 250, "{}", r.text());
        c.cmd("QUIT");
    };
    send("x@good.test");
    send("y@bad.test");
    assert!(common::eventually(Duration::from_secs(30), || good.messages().len() == 1), "good.test delivered");
    let summary = || -> Vec<serde_json::Value> {
        let out = s.cli(&["queue", "summary", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let waited = common::eventually(Duration::from_secs(30), || {
        summary().iter().any(|r| r["last_error"] == "tls: dane: no TLSA record matched")
    });
    let rows = summary();
    assert!(waited, "{rows:?}\n{}", s.log());
    assert_eq!(rows.len(), 1, "only bad.test waits: {rows:?}");
    assert!(rows[0]["destination"].as_str().is_some_and(|d| d.contains("bad.test")), "{rows:?}");
    assert!(bad.messages().is_empty());
    let text = String::from_utf8_lossy(&s.cli(&["queue", "summary"]).stdout).into_owned();
    assert!(text.contains("tls: dane: no TLSA record matched"), "{text}");

    // the tracking log carries each session's DANE result to `tls report`
    let out = s.cli(&["tls", "report", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let row = |d: &str| report.iter().find(|r| r["domain"] == d).cloned().unwrap_or_else(|| panic!("{d}: {report:?}"));
    let good_row = row("good.test");
    assert_eq!(good_row["verified"], 1, "{good_row}");
    assert_eq!(good_row["verified_by"]["dane"], 1, "{good_row}");
    let bad_row = row("bad.test");
    assert_eq!(bad_row["verified"], 0, "{bad_row}");
    assert_eq!(bad_row["failures"]["tls: dane: no TLSA record matched"], 1, "{bad_row}");
    // and the policy's result, which TLS-RPT reports
    let out = s.cli(&["track", "--recipient", "y@bad.test", "--json"]);
    let track = String::from_utf8_lossy(&out.stdout).into_owned();
    let deferred: Vec<serde_json::Value> = track
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "deferred")
        .collect();
    assert!(!deferred.is_empty(), "{track}");
    assert_eq!(deferred[0]["policy_type"], "tlsa", "{track}");
    assert_eq!(deferred[0]["policy_domain"], "bad.test", "{track}");
    assert_eq!(deferred[0]["policy_result"], "validation-failure", "{track}");
    drop(dns);
    let _: SocketAddr = good.addr;
}
