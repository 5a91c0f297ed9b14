//! MTA-STS (RFC 8461, SPEC §7) end to end on loopback: a DNS server in the
//! test (hickory-server) with the `_mta-sts` TXT record and the addresses of
//! `mta-sts.<domain>` and the MX hosts, an HTTPS policy server (hyper on
//! tokio-rustls) whose certificate a test CA issued — the CA is
//! `[mta_sts] ca_file` — and receiving SMTP servers with rustls
//! certificates from that CA naming the MX host (or self-signed ones).

#[path = "../common/mod.rs"]
mod common;
#[path = "../outbound/dns.rs"]
#[allow(dead_code)]
mod dns;
#[path = "../outbound/sink.rs"]
#[allow(dead_code)]
mod sink;

use dns::{TestDns, Zone};
use hyper::body::{Bytes, Incoming};
use postern::config::Config;
use postern::delivery::{
    AttemptReport, OutboundMessage, PolicyKind, RcptOutcome, SmtpTransport, Timeouts, TransportSettings,
};
use postern::proto::smtp::server::BodyType;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sink::{Sink, SinkConfig, StartTls};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const BODY: &[u8] = b"From: a@origin.test\r\nSubject: sts\r\n\r\nHello.\r\n";

/// A test CA: its issuer and its certificate file.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    path: PathBuf,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "MTA-STS Test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        let path = dir.join("ca.pem");
        std::fs::write(&path, pem).expect("write CA");
        Ca { issuer: rcgen::Issuer::new(params, key), path }
    }

    /// A certificate for `names` issued by this CA, and its key.
    fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("issue");
        (vec![cert.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).expect("key der"))
    }

    /// A receiving SMTP server for `host` with a certificate from this CA.
    async fn sink(&self, host: &str) -> Sink {
        let (chain, key) = self.issue(&[host]);
        Sink::start(SinkConfig::new(&[host]).certificate(chain, key)).await
    }
}

/// The HTTPS server of `mta-sts.<domain>` for every domain of a test:
/// serves each domain's policy, counts fetches, and can be taken down
/// (connections are then closed unanswered).
struct PolicyServer {
    port: u16,
    policies: Arc<Mutex<HashMap<String, String>>>,
    fetches: Arc<Mutex<HashMap<String, usize>>>,
    up: Arc<AtomicBool>,
}

impl PolicyServer {
    async fn start(ca: &Ca, domains: &[&str]) -> PolicyServer {
        let names: Vec<String> = domains.iter().map(|d| format!("mta-sts.{d}")).collect();
        let (chain, key) = ca.issue(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let config = rustls::ServerConfig::builder_with_provider(postern::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind https");
        let port = listener.local_addr().expect("addr").port();
        let s = PolicyServer {
            port,
            policies: Arc::default(),
            fetches: Arc::default(),
            up: Arc::new(AtomicBool::new(true)),
        };
        let (policies, fetches, up) = (s.policies.clone(), s.fetches.clone(), s.up.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the fetch fails
                }
                let (acceptor, policies, fetches) = (acceptor.clone(), policies.clone(), fetches.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let host = req
                            .headers()
                            .get(hyper::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let domain = host.trim_start_matches("mta-sts.").to_string();
                        let policy = match req.uri().path() {
                            "/.well-known/mta-sts.txt" => policies.lock().unwrap().get(&domain).cloned(),
                            _ => None,
                        };
                        *fetches.lock().unwrap().entry(domain).or_default() += 1;
                        async move {
                            let (status, body) = match policy {
                                Some(p) => (200, p),
                                None => (404, "not found\n".to_string()),
                            };
                            let r = hyper::Response::builder()
                                .status(status)
                                .header(hyper::header::CONTENT_TYPE, "text/plain")
                                .body(http_body_util::Full::new(Bytes::from(body)))
                                .expect("response");
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        s
    }

    fn set(&self, domain: &str, policy: &str) {
        self.policies.lock().unwrap().insert(domain.to_string(), policy.to_string());
    }

    fn fetches(&self, domain: &str) -> usize {
        self.fetches.lock().unwrap().get(domain).copied().unwrap_or(0)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

fn policy(mode: &str, mx: &[&str]) -> String {
    let mut p = format!("version: STSv1\r\nmode: {mode}\r\n");
    for m in mx {
        p.push_str(&format!("mx: {m}\r\n"));
    }
    p + "max_age: 86400\r\n"
}

/// One test's world: data dir, CA, DNS, policy server.
struct Lab {
    dir: tempfile::TempDir,
    ca: Ca,
    dns: TestDns,
    https: PolicyServer,
}

impl Lab {
    /// `domains`: (domain, its MX host, the policy served, or None for no TXT record).
    async fn new(domains: &[(&str, &str, Option<&str>)]) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new(dir.path());
        let mut z = Zone::new("test");
        for (domain, mx, policy) in domains {
            z.mx(domain, 10, mx).a(mx, LO).a(&format!("mta-sts.{domain}"), LO);
            if policy.is_some() {
                z.txt(&format!("_mta-sts.{domain}"), "v=STSv1; id=first;");
            }
        }
        let dns = dns::serve(z).await;
        let names: Vec<&str> = domains.iter().map(|d| d.0).collect();
        let https = PolicyServer::start(&ca, &names).await;
        for (domain, _, policy) in domains {
            if let Some(p) = policy {
                https.set(domain, p);
            }
        }
        Lab { dir, ca, dns, https }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config(&self, connector_extra: &str) -> Arc<Config> {
        let text = format!(
            r#"[server]
hostname = "postern.test"
data_dir = "{data}"
local_domains = ["local.test"]

[dns]
nameservers = ["{dns}"]
timeout = "2s"

[mta_sts]
ca_file = "{ca}"
port = {port}

[[connector]]
name = "out"
address_spaces = ["*"]
{connector_extra}
"#,
            data = self.data().display(),
            dns = self.dns.addr,
            ca = self.ca.path.display(),
            port = self.https.port,
        );
        Arc::new(Config::parse(&text, Path::new("mta-sts-test.toml")).expect("test config"))
    }

    /// A transport reaching each MX host of `sinks` on its sink's port.
    fn transport(&self, config: &Arc<Config>, sinks: &[(&str, &Sink)]) -> SmtpTransport {
        let mut settings = TransportSettings {
            mx_port: closed_port(),
            timeouts: Timeouts::all(Duration::from_secs(3)),
            ..TransportSettings::default()
        };
        for (host, sink) in sinks {
            settings.port_overrides.insert(host.to_string(), sink.port());
        }
        SmtpTransport::with_settings(config.clone(), settings).expect("transport")
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

async fn deliver(t: &SmtpTransport, config: &Config, domain: &str) -> AttemptReport {
    let rcpt = format!("x@{domain}");
    let rcpts = [(0usize, rcpt.as_str())];
    let msg = OutboundMessage {
        id: "STSTEST",
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

/// `delivered`, `deferred <category>` or `failed <category>` per recipient.
fn summary(r: &AttemptReport) -> Vec<String> {
    r.outcomes
        .iter()
        .map(|(_, o)| match o {
            RcptOutcome::Delivered(_) => "delivered".to_string(),
            RcptOutcome::Deferred(a) => format!("deferred {}", a.category()),
            RcptOutcome::Failed(a) => format!("failed {}", a.category()),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_with_a_listed_mx_and_a_valid_certificate_delivers_verified() {
    let p = policy("enforce", &["mx.good.test"]);
    let lab = Lab::new(&[("good.test", "mx.good.test", Some(&p))]).await;
    let sink = lab.ca.sink("mx.good.test").await;
    let c = lab.config("");
    let t = lab.transport(&c, &[("mx.good.test", &sink)]);
    let r = deliver(&t, &c, "good.test").await;
    assert_eq!(summary(&r), ["delivered"]);
    let tls = r.tls.expect("TLS outcome");
    assert!(tls.info.is_some() && tls.verified, "verified TLS under the policy: {tls:?}");
    let o = tls.policy.expect("the policy's outcome is recorded");
    assert_eq!((o.kind, o.domain.as_str(), o.testing, o.failure), (PolicyKind::Sts, "good.test", false, None));
    assert!(o.strings.iter().any(|l| l == "mode: enforce") && o.strings.iter().any(|l| l == "mx: mx.good.test"));
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls.is_some(), "the message went over TLS");
    assert_eq!(lab.https.fetches("good.test"), 1);
    // the policy is kept in the data dir for its max_age
    let cached = std::fs::read_to_string(lab.data().join("mta-sts/good.test.json")).expect("cache file");
    assert!(cached.contains("first") && cached.contains("mode: enforce"), "{cached}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_defers_an_mx_not_in_the_policy_and_a_self_signed_certificate() {
    let listed = policy("enforce", &["mx.good.test"]);
    let wildcard = policy("enforce", &["*.selfsigned.test"]);
    let lab = Lab::new(&[
        ("other.test", "mx.other.test", Some(&listed)),
        ("selfsigned.test", "mx.selfsigned.test", Some(&wildcard)),
    ])
    .await;
    let other = lab.ca.sink("mx.other.test").await;
    let selfsigned = Sink::start(SinkConfig::new(&["mx.selfsigned.test"])).await;
    let c = lab.config("");
    let t = lab.transport(&c, &[("mx.other.test", &other), ("mx.selfsigned.test", &selfsigned)]);

    let r = deliver(&t, &c, "other.test").await;
    assert_eq!(summary(&r), ["deferred tls: mta-sts: mx.other.test not in policy"]);
    let o = r.tls.and_then(|t| t.policy).expect("policy outcome");
    assert_eq!(o.failure.as_deref(), Some("validation-failure"));
    assert_eq!(other.connections(), 0, "a host outside the policy is not even tried");

    let r = deliver(&t, &c, "selfsigned.test").await;
    assert_eq!(summary(&r), ["deferred tls: mta-sts: certificate not trusted"]);
    assert!(r.unreachable);
    let o = r.tls.and_then(|t| t.policy).expect("policy outcome");
    assert_eq!(o.failure.as_deref(), Some("certificate-not-trusted"));
    assert!(selfsigned.messages().is_empty(), "nothing sent over untrusted TLS");

    // STARTTLS stripped: the same category names the policy
    let stripped_lab = Lab::new(&[("strip.test", "mx.strip.test", Some(&policy("enforce", &["mx.strip.test"])))]).await;
    let plain = Sink::start(SinkConfig::new(&["mx.strip.test"]).starttls(StartTls::NotOffered)).await;
    let c = stripped_lab.config("tls = \"opportunistic\"");
    let t = stripped_lab.transport(&c, &[("mx.strip.test", &plain)]);
    let r = deliver(&t, &c, "strip.test").await;
    assert_eq!(summary(&r), ["deferred tls: mta-sts: STARTTLS not offered"]);
    let o = r.tls.and_then(|t| t.policy).expect("policy outcome");
    assert_eq!(o.failure.as_deref(), Some("starttls-not-supported"));
    assert!(plain.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_delivers_and_records_the_failure() {
    let p = policy("testing", &["mx.good.test"]);
    let lab = Lab::new(&[("testing.test", "mx.testing.test", Some(&p))]).await;
    // not in the policy, and self-signed: both would fail under enforce
    let sink = Sink::start(SinkConfig::new(&["mx.testing.test"])).await;
    let c = lab.config("");
    let t = lab.transport(&c, &[("mx.testing.test", &sink)]);
    let r = deliver(&t, &c, "testing.test").await;
    assert_eq!(summary(&r), ["delivered"], "testing: delivered as the connector says");
    let tls = r.tls.expect("TLS outcome");
    assert!(tls.info.is_some() && !tls.verified);
    let o = tls.policy.expect("policy outcome");
    assert!(o.testing);
    assert_eq!(o.failure.as_deref(), Some("validation-failure"), "the would-be failure is recorded");
    assert!(o.strings.iter().any(|l| l == "mode: testing"));

    // listed, but self-signed: the certificate is what would have failed
    let p = policy("testing", &["mx.testing2.test"]);
    let lab = Lab::new(&[("testing2.test", "mx.testing2.test", Some(&p))]).await;
    let sink = Sink::start(SinkConfig::new(&["mx.testing2.test"])).await;
    let c = lab.config("");
    let t = lab.transport(&c, &[("mx.testing2.test", &sink)]);
    let r = deliver(&t, &c, "testing2.test").await;
    assert_eq!(summary(&r), ["delivered"]);
    let o = r.tls.and_then(|t| t.policy).expect("policy outcome");
    assert_eq!(o.failure.as_deref(), Some("certificate-not-trusted"));
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_cached_across_restarts_and_refreshed_when_the_id_changes() {
    let p = policy("enforce", &["mx.cached.test"]);
    let lab = Lab::new(&[("cached.test", "mx.cached.test", Some(&p))]).await;
    let sink = lab.ca.sink("mx.cached.test").await;
    let selfsigned = Sink::start(SinkConfig::new(&["mx.cached.test"])).await;
    let c = lab.config("");
    let t = lab.transport(&c, &[("mx.cached.test", &sink)]);
    for _ in 0..3 {
        assert_eq!(summary(&deliver(&t, &c, "cached.test").await), ["delivered"]);
    }
    assert_eq!(lab.https.fetches("cached.test"), 1, "fetched once, then cached");

    // the policy server goes away, and the server restarts (a new transport):
    // the policy in the data dir still holds
    lab.https.set_up(false);
    drop(t);
    let t = lab.transport(&c, &[("mx.cached.test", &selfsigned)]);
    let r = deliver(&t, &c, "cached.test").await;
    assert_eq!(summary(&r), ["deferred tls: mta-sts: certificate not trusted"], "still enforced");
    assert!(selfsigned.messages().is_empty());

    // a new id while the policy host is down: the cached policy stays in force
    lab.dns.set_txt("_mta-sts.cached.test", "v=STSv1; id=second;").await;
    let r = deliver(&t, &c, "cached.test").await;
    assert_eq!(summary(&r), ["deferred tls: mta-sts: certificate not trusted"]);

    // back up, with a new policy under the new id: fetched again and used
    lab.https.set("cached.test", &policy("enforce", &["mx.elsewhere.test"]).replace("max_age: 86400", "max_age: 600"));
    lab.https.set_up(true);
    let before = lab.https.fetches("cached.test");
    let r = deliver(&t, &c, "cached.test").await;
    assert_eq!(summary(&r), ["deferred tls: mta-sts: mx.cached.test not in policy"]);
    assert_eq!(lab.https.fetches("cached.test"), before + 1);
    let again = deliver(&t, &c, "cached.test").await;
    assert_eq!(summary(&again), ["deferred tls: mta-sts: mx.cached.test not in policy"]);
    assert_eq!(lab.https.fetches("cached.test"), before + 1, "the new policy is cached too");
    let cached = std::fs::read_to_string(lab.data().join("mta-sts/cached.test.json")).expect("cache file");
    assert!(cached.contains("second") && cached.contains("mx.elsewhere.test"), "{cached}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_false_ignores_the_policy_and_a_failed_fetch_falls_back_to_the_connector() {
    let p = policy("enforce", &["mx.good.test"]);
    let lab = Lab::new(&[("other.test", "mx.other.test", Some(&p)), ("down.test", "mx.down.test", Some(&p))]).await;
    let other = Sink::start(SinkConfig::new(&["mx.other.test"])).await;
    let down = Sink::start(SinkConfig::new(&["mx.down.test"])).await;

    let c = lab.config("mta_sts = false");
    let t = lab.transport(&c, &[("mx.other.test", &other)]);
    let r = deliver(&t, &c, "other.test").await;
    assert_eq!(summary(&r), ["delivered"], "the connector opted out");
    assert_eq!(r.tls.expect("TLS outcome").policy, None);
    assert_eq!(lab.https.fetches("other.test"), 0, "not even looked up");

    // RFC 8461 §5: a policy that cannot be fetched, and none cached, is no
    // policy; the failure is reported
    lab.https.set_up(false);
    let c = lab.config("");
    let t = lab.transport(&c, &[("mx.down.test", &down)]);
    let r = deliver(&t, &c, "down.test").await;
    assert_eq!(summary(&r), ["delivered"]);
    let o = r.tls.and_then(|t| t.policy).expect("policy outcome");
    assert_eq!(o.failure.as_deref(), Some("sts-policy-fetch-error"));
    assert!(!lab.data().join("mta-sts/down.test.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_shows_the_mta_sts_category_in_queue_summary() {
    let p = policy("enforce", &["mx.good.test"]);
    let lab = Lab::new(&[("other.test", "mx.other.test", Some(&p))]).await;
    let sink = lab.ca.sink("mx.other.test").await;
    let text = format!(
        r#"[server]
hostname = "mx.example.test"
data_dir = "data"
local_domains = ["example.test"]

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:0"]
relay_networks = ["127.0.0.0/8"]

[[connector]]
name = "internet"
address_spaces = ["*"]
mx_port = {mx_port}

[queue]
retry_schedule = ["1h"]

[dns]
nameservers = ["{dns}"]
timeout = "2s"

[mta_sts]
ca_file = "{ca}"
port = {port}
"#,
        mx_port = sink.port(),
        dns = lab.dns.addr,
        ca = lab.ca.path.display(),
        port = lab.https.port,
    );
    let rows = tokio::task::spawn_blocking(move || {
        let s = common::TestServer::start(&text);
        let mut c = common::Client::connect(s.addr("mx"));
        c.reply();
        c.expect("EHLO client.test", 250);
        let r = c.send_mail("sender@origin.test", &["x@other.test"], "Subject: sts\r\n\r\nbody\r\n");
        assert_eq!(r.code, 250);
        c.cmd("QUIT");
        let mut text = String::new();
        let seen = common::eventually(Duration::from_secs(30), || {
            text = String::from_utf8_lossy(&s.cli(&["queue", "summary"]).stdout).into_owned();
            text.contains("tls: mta-sts: mx.other.test not in policy")
        });
        assert!(seen, "queue summary:\n{text}\nlog:\n{}", s.log());
        text
    })
    .await
    .expect("server test");
    assert!(rows.contains("internet/"), "{rows}");
    assert!(sink.messages().is_empty(), "nothing reached the MX outside the policy");
}
