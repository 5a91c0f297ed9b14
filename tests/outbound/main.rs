//! Outbound delivery against real servers on 127.0.0.1: a DNS server
//! (hickory-server) for MX, and scriptable receiving SMTP servers with
//! real rustls. Every timeout is short, so a failure shows in seconds.

mod dns;
mod mx;
mod session;
#[allow(dead_code)] // Sinks serves the sync tests elsewhere
mod sink;
mod tls_policy;

use postern::config::Config;
use postern::delivery::{AttemptReport, OutboundMessage, RcptOutcome, SmtpTransport, Timeouts, TransportSettings};
use postern::proto::smtp::server::BodyType;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A configuration with `connectors` and `[dns]` pointing at `dns` (or at a
/// socket of ours that never answers, for tests that need no DNS).
pub fn config(dns: Option<SocketAddr>, connectors: &str) -> Arc<Config> {
    // without a DNS server of the test's own, a socket we bound that never answers
    static SILENT: std::sync::OnceLock<dns::Silent> = std::sync::OnceLock::new();
    let ns = dns.unwrap_or_else(|| SILENT.get_or_init(dns::silent).addr).to_string();
    let text = format!(
        r#"[server]
hostname = "postern.test"
local_domains = ["local.test"]

[dns]
nameservers = ["{ns}"]
timeout = "1s"

{connectors}
"#
    );
    Arc::new(Config::parse(&text, Path::new("outbound-test.toml")).expect("test config"))
}

/// One connector named "out" for every domain.
pub fn connector(extra: &str) -> String {
    format!("[[connector]]\nname = \"out\"\naddress_spaces = [\"*\"]\n{extra}\n")
}

pub fn settings(mx_port: u16) -> TransportSettings {
    TransportSettings { mx_port, timeouts: Timeouts::all(Duration::from_secs(3)), ..TransportSettings::default() }
}

pub fn transport(config: &Arc<Config>, settings: TransportSettings) -> SmtpTransport {
    SmtpTransport::with_settings(config.clone(), settings).expect("transport")
}

pub const BODY: &[u8] = b"From: a@origin.test\r\nTo: x@dest.test\r\nSubject: test\r\n\r\nHello.\r\n";

pub fn message<'a>(rcpts: &'a [(usize, &'a str)], body: &'a [u8]) -> OutboundMessage<'a> {
    OutboundMessage {
        id: "TESTID",
        sender: "a@origin.test",
        recipients: rcpts,
        body,
        body_type: BodyType::SevenBit,
        smtputf8: false,
        require_tls: false,
        tls_optional: false,
    }
}

/// Deliver through the config's first connector.
pub async fn deliver(t: &SmtpTransport, config: &Config, domain: &str, rcpts: &[(usize, &str)]) -> AttemptReport {
    tokio::time::timeout(Duration::from_secs(30), t.deliver(&config.connectors[0], domain, &message(rcpts, BODY)))
        .await
        .expect("deliver finished in time")
}

/// `delivered`, `deferred <category>` or `failed <category>` per recipient.
pub fn summary(r: &AttemptReport) -> Vec<String> {
    r.outcomes
        .iter()
        .map(|(_, o)| match o {
            RcptOutcome::Delivered(_) => "delivered".to_string(),
            RcptOutcome::Deferred(a) => format!("deferred {}", a.category()),
            RcptOutcome::Failed(a) => format!("failed {}", a.category()),
        })
        .collect()
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Wait until `f` holds, up to five seconds.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}
