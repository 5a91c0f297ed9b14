//! Prometheus metrics (SPEC §12): the counters the services bump as things
//! happen, the gauges read when Prometheus scrapes, and the small HTTP
//! listener ([`http`]) that serves them at `GET /metrics` in the Prometheus
//! text format (`[metrics] listen`).
//!
//! A [`Metrics`] handle is cloned into whoever counts — the listeners'
//! driver (sessions), the login gate (AUTH failures), the SMTP service
//! (messages accepted and refused), the queue manager (deliveries) — like
//! any other handle; there is no global registry. Without `[metrics]
//! listen` the handle is off and every hook does nothing. This module knows
//! nothing of the queue or the certificates: what is read at scrape time
//! comes through [`Sources`], which the server implements over its stores.
//! Label values come from the configuration (server names, protocols) or
//! from short fixed sets, never from what a client sends, so the number of
//! series stays bounded; destinations and certificate names are read anew
//! at each scrape, so gone ones disappear.

pub mod http;

use crate::config::Config;
use crate::util::LockExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The counters and gauges of one server, or nothing (`[metrics]` unset).
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Families>>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    server: String,
    protocol: String,
    /// `none`, `TLSv1.2`, `TLSv1.3`: how the session ended up.
    tls: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    server: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    server: String,
    command: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    outcome: &'static str,
    tls: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    server: String,
    protocol: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    certificate: String,
}

struct Families {
    registry: Registry,
    /// Virtual server name -> its protocol, for the `protocol` label of
    /// hooks that know only the server's name.
    protocols: HashMap<String, String>,
    sessions: Family<SessionLabels, Counter>,
    sessions_open: Family<ServerLabels, Gauge>,
    smtp_messages: Family<MessageLabels, Counter>,
    smtp_refusals: Family<RefusalLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    auth_failures: Family<AuthLabels, Counter>,
    queue_messages: Family<DestinationLabels, Gauge>,
    queue_oldest: Family<DestinationLabels, Gauge>,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    /// One scrape at a time: the scrape-time gauges are cleared and set
    /// anew for each, and two at once would mix their values.
    scrape: Mutex<()>,
}

/// What became of one recipient's delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Tried again later.
    Deferred,
    /// Given up (a permanent failure, or the queue lifetime ran out): an NDR follows.
    Failed,
}

/// TLS on the connection a delivery attempt used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsUse {
    /// Plaintext, or no connection at all (local delivery, DNS failure).
    None,
    Unverified,
    /// The peer's certificate was verified and named the host.
    Verified,
}

impl TlsUse {
    pub fn of(encrypted: bool, verified: bool) -> TlsUse {
        match (encrypted, verified) {
            (false, _) => TlsUse::None,
            (true, false) => TlsUse::Unverified,
            (true, true) => TlsUse::Verified,
        }
    }
}

/// Why a login was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong user or password, or an exchange that made no sense.
    Failed,
    /// Refused unchecked: too many recent failures from the client.
    Throttled,
}

/// What is read when Prometheus scrapes rather than counted as it happens;
/// the server implements it over the queue and the certificate store.
pub trait Sources: Send + Sync + 'static {
    /// One entry per destination with queued recipients.
    fn queue(&self) -> Vec<QueuedDestination>;
    /// Each loaded certificate's name and its notAfter (Unix seconds).
    fn certificates(&self) -> Vec<(String, i64)>;
}

/// A destination's share of the queue, as `queue summary` counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedDestination {
    pub destination: String,
    /// Messages with at least one queued recipient for it.
    pub messages: usize,
    /// When the oldest of them arrived (Unix seconds).
    pub oldest: u64,
}

impl Metrics {
    /// The families of `config`'s server when `[metrics] listen` is set,
    /// else the handle that counts nothing.
    pub fn new(config: &Config) -> Metrics {
        if config.metrics.listen.is_none() {
            return Metrics::off();
        }
        Metrics::on(config)
    }

    fn on(config: &Config) -> Metrics {
        let protocols = config.virtual_servers.iter().map(|v| (v.name.clone(), v.protocol.to_string())).collect();
        let mut f = Families {
            registry: Registry::with_prefix("postern"),
            protocols,
            sessions: Family::default(),
            sessions_open: Family::default(),
            smtp_messages: Family::default(),
            smtp_refusals: Family::default(),
            deliveries: Family::default(),
            auth_failures: Family::default(),
            queue_messages: Family::default(),
            queue_oldest: Family::default(),
            certificate_expiry: Family::default(),
            scrape: Mutex::new(()),
        };
        let r = &mut f.registry;
        r.register(
            "sessions",
            "Client sessions ended, by virtual server, protocol and TLS version",
            f.sessions.clone(),
        );
        r.register("sessions_open", "Client sessions open now, by virtual server", f.sessions_open.clone());
        r.register(
            "smtp_messages",
            "SMTP messages at the end of DATA, by the reply code (250: accepted and queued)",
            f.smtp_messages.clone(),
        );
        r.register(
            "smtp_refusals",
            "SMTP MAIL FROM and RCPT TO refused by policy, by command and reply code",
            f.smtp_refusals.clone(),
        );
        r.register(
            "deliveries",
            "Delivery attempts per recipient, by outcome (delivered, deferred, failed) and TLS (none, unverified, verified)",
            f.deliveries.clone(),
        );
        r.register(
            "auth_failures",
            "Logins refused, by virtual server, protocol and reason (failed, throttled)",
            f.auth_failures.clone(),
        );
        r.register("queue_messages", "Messages queued per destination", f.queue_messages.clone());
        r.register(
            "queue_oldest_age_seconds",
            "Age of the oldest message queued per destination",
            f.queue_oldest.clone(),
        );
        r.register(
            "certificate_expiry_seconds",
            "Seconds until each loaded certificate expires (negative once expired; /86400 for days)",
            f.certificate_expiry.clone(),
        );
        Metrics(Some(Arc::new(f)))
    }

    /// The handle that counts nothing.
    pub fn off() -> Metrics {
        Metrics(None)
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    fn server(f: &Families, server: &str) -> ServerLabels {
        let protocol = f.protocols.get(server).cloned().unwrap_or_default();
        ServerLabels { server: server.to_string(), protocol }
    }

    /// The session counters of virtual server `server`, for its listeners.
    pub fn sessions(&self, server: &str) -> SessionMetrics {
        SessionMetrics(self.0.as_ref().map(|f| (f.clone(), Arc::new(Metrics::server(f, server)))))
    }

    /// An SMTP message was answered `code` at the end of DATA.
    pub fn smtp_message(&self, server: &str, code: u16) {
        if let Some(f) = &self.0 {
            f.smtp_messages.get_or_create(&MessageLabels { server: server.to_string(), code }).inc();
        }
    }

    /// `command` (`MAIL`, `RCPT`) was refused with `code`.
    pub fn smtp_refused(&self, server: &str, command: &'static str, code: u16) {
        if let Some(f) = &self.0 {
            f.smtp_refusals.get_or_create(&RefusalLabels { server: server.to_string(), command, code }).inc();
        }
    }

    /// One recipient's delivery attempt ended with `outcome`.
    pub fn delivery(&self, outcome: Outcome, tls: TlsUse) {
        let Some(f) = &self.0 else { return };
        let outcome = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "failed",
        };
        let tls = match tls {
            TlsUse::None => "none",
            TlsUse::Unverified => "unverified",
            TlsUse::Verified => "verified",
        };
        f.deliveries.get_or_create(&DeliveryLabels { outcome, tls }).inc();
    }

    /// A login on virtual server `server` was refused.
    pub fn auth_failed(&self, server: &str, reason: AuthFailure) {
        let Some(f) = &self.0 else { return };
        let ServerLabels { server, protocol } = Metrics::server(f, server);
        let reason = match reason {
            AuthFailure::Failed => "failed",
            AuthFailure::Throttled => "throttled",
        };
        f.auth_failures.get_or_create(&AuthLabels { server, protocol, reason }).inc();
    }

    /// The text exposition: the counters, and the gauges read now from
    /// `sources` (`now` in Unix seconds). Blocking: the queue is read.
    pub fn render(&self, sources: &dyn Sources, now: i64) -> Result<String, std::fmt::Error> {
        let Some(f) = &self.0 else { return Ok(String::new()) };
        let _one = f.scrape.lock_or_recover();
        f.queue_messages.clear();
        f.queue_oldest.clear();
        for d in sources.queue() {
            let labels = DestinationLabels { destination: d.destination };
            f.queue_messages.get_or_create(&labels).set(i64::try_from(d.messages).unwrap_or(i64::MAX));
            f.queue_oldest.get_or_create(&labels).set(now.saturating_sub_unsigned(d.oldest).max(0));
        }
        f.certificate_expiry.clear();
        for (certificate, not_after) in sources.certificates() {
            f.certificate_expiry.get_or_create(&CertificateLabels { certificate }).set(not_after.saturating_sub(now));
        }
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &f.registry)?;
        Ok(out)
    }
}

/// The session counters of one virtual server (the driver's).
#[derive(Clone, Default)]
pub struct SessionMetrics(Option<(Arc<Families>, Arc<ServerLabels>)>);

impl SessionMetrics {
    /// A session starts: it counts as open until the guard is finished or dropped.
    pub fn opened(&self) -> OpenSession {
        if let Some((f, labels)) = &self.0 {
            f.sessions_open.get_or_create(labels).inc();
        }
        OpenSession(self.0.clone())
    }
}

/// One open session; [`OpenSession::ended`] counts it.
pub struct OpenSession(Option<(Arc<Families>, Arc<ServerLabels>)>);

impl OpenSession {
    /// The session is over; `tls` is the TLS version it ran under, if any.
    pub fn ended(self, tls: Option<&str>) {
        if let Some((f, labels)) = &self.0 {
            let tls = tls.unwrap_or("none").to_string();
            f.sessions
                .get_or_create(&SessionLabels { server: labels.server.clone(), protocol: labels.protocol.clone(), tls })
                .inc();
        }
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        if let Some((f, labels)) = &self.0 {
            f.sessions_open.get_or_create(labels).dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    struct Fixed;

    impl Sources for Fixed {
        fn queue(&self) -> Vec<QueuedDestination> {
            vec![QueuedDestination { destination: "out/127.0.0.1:1".into(), messages: 2, oldest: 1_000 }]
        }
        fn certificates(&self) -> Vec<(String, i64)> {
            vec![("main".into(), 1_000 + 86_400 * 10)]
        }
    }

    fn config() -> Config {
        let text = r#"
[server]
hostname = "mx.example.test"
local_domains = ["example.test"]

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:0"]

[metrics]
listen = "127.0.0.1:0"
"#;
        Config::parse(text, Path::new("metrics-test.toml")).unwrap()
    }

    #[test]
    fn counters_and_scrape_time_gauges_render_as_prometheus_text() {
        let m = Metrics::new(&config());
        assert!(m.is_on());
        let sessions = m.sessions("mx");
        let open = sessions.opened();
        let still_open = sessions.opened();
        open.ended(Some("TLSv1.3"));
        m.smtp_message("mx", 250);
        m.smtp_refused("mx", "RCPT", 550);
        m.delivery(Outcome::Delivered, TlsUse::of(true, false));
        m.auth_failed("mx", AuthFailure::Failed);
        let text = m.render(&Fixed, 1_000 + 60).unwrap();
        for line in [
            r#"postern_sessions_total{server="mx",protocol="smtp",tls="TLSv1.3"} 1"#,
            r#"postern_sessions_open{server="mx",protocol="smtp"} 1"#,
            r#"postern_smtp_messages_total{server="mx",code="250"} 1"#,
            r#"postern_smtp_refusals_total{server="mx",command="RCPT",code="550"} 1"#,
            r#"postern_deliveries_total{outcome="delivered",tls="unverified"} 1"#,
            r#"postern_auth_failures_total{server="mx",protocol="smtp",reason="failed"} 1"#,
            r#"postern_queue_messages{destination="out/127.0.0.1:1"} 2"#,
            r#"postern_queue_oldest_age_seconds{destination="out/127.0.0.1:1"} 60"#,
            r#"postern_certificate_expiry_seconds{certificate="main"} 863940"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        drop(still_open);
        let text = m.render(&Fixed, 1_000).unwrap();
        assert!(text.contains("postern_sessions_open{server=\"mx\",protocol=\"smtp\"} 0\n"), "{text}");
    }

    #[test]
    fn off_counts_nothing_and_renders_nothing() {
        let mut c = config();
        c.metrics.listen = None;
        let m = Metrics::new(&c);
        assert!(!m.is_on());
        m.smtp_message("mx", 250);
        m.sessions("mx").opened().ended(None);
        assert_eq!(m.render(&Fixed, 0).unwrap(), "");
    }
}
