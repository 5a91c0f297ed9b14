//! Outbound SMTP delivery (SPEC §7): one attempt to hand one message to
//! the next hop of a connector — the recipient domain's MX hosts, or the
//! connector's smarthost — under the connector's TLS policy, with the
//! result per recipient.
//!
//! # API
//!
//! ```text
//! let transport = SmtpTransport::new(config.clone())?;          // or with_settings(config, settings)
//! let report = transport.deliver(&connector, "example.com", &OutboundMessage { .. }).await;
//! // report.outcomes: (recipient index, Delivered | Deferred | Failed(AttemptResult))
//! // report.tls: TLS as it went on the connection used; report.unreachable: try
//! //             the next equally specific connector (SPEC §6.3)
//! transport.close_idle().await;                                   // at shutdown
//! ```
//!
//! `deliver` never fails as a whole: whatever happens becomes a per-recipient
//! outcome. It is safe to call concurrently (one `SmtpTransport` shared in an
//! `Arc` by every worker); idle sessions are pooled per (connector, host,
//! port). Before reuse a session is probed without a round trip (no open
//! transaction, nothing readable on the socket: a server that closed it or
//! said 421 has made it readable); one that still dies before MAIL is
//! answered is dropped and the message goes over a new connection.
//!
//! # What happens in one attempt
//!
//! 1. Next hops: the smarthost (`smarthost_port()`, A/AAAA or an IP), or the
//!    domain's MX hosts by preference via [`MxResolver`] (port: the
//!    connector's `mx_port`, else [`TransportSettings::mx_port`], 25 unless
//!    changed, or a per-host
//!    [`TransportSettings::port_overrides`] entry — the seam tests use to
//!    run receiving servers on 127.0.0.1 port 0). DNS failures end the
//!    attempt: NXDOMAIN and null MX fail the recipients, the rest defer them.
//!    A smarthost's DNS failure always defers, and counts as unreachable.
//!    For MX delivery with the connector's `mta_sts` on, the domain's
//!    MTA-STS policy ([`MtaSts::lookup`]): under `enforce` only the MX hosts
//!    it names are tried (none: `tls: mta-sts: <host> not in policy`), each
//!    under `verify` with the MTA-STS trust roots (the connector's own when
//!    it already verifies), and TLS failures read `tls: mta-sts: ...`;
//!    under `testing` the would-be failure is only recorded.
//! 2. Each host in order, each of its addresses: an idle pooled session if
//!    one passes the probe, else a new connection: implicit TLS (smarthost_tls =
//!    "implicit"), banner, EHLO (HELO if EHLO gets 5xx), STARTTLS per policy:
//!    - `none`: never;
//!    - `opportunistic`: when offered, any certificate; a failed handshake
//!      reconnects to the same address in plaintext, noted in the outcome;
//!    - `required`: must be offered and succeed, else `tls: STARTTLS not
//!      offered` / `tls: handshake failed: ...` and the next host;
//!    - `verify`: as required, and the chain must verify against
//!      webpki-roots (or `tls_ca_file`) and name the host: else `tls:
//!      certificate not trusted` (or `certificate name mismatch`, ...).
//!
//!    With `auth_username` set, TLS is required whatever `tls` says (AUTH
//!    never goes over plaintext); AUTH PLAIN, else LOGIN.
//!    Connect and TLS failures move on to the next address and host; other
//!    failures (AUTH) end the attempt.
//! 3. The transaction (pipelined when offered): per recipient 2xx is
//!    delivered, 4xx deferred, 5xx failed; a failure at MAIL applies to every
//!    recipient, DATA's reply to every accepted one. At most
//!    `max_recipients_per_transaction` recipients go in one transaction;
//!    more go in further transactions on the same session.
//! 4. If every hop failed at connect or TLS, every recipient is deferred with
//!    the last failure and `unreachable` is set.
//!
//! # DANE (RFC 7672), one step per hop
//!
//! With `[dns] dnssec = true`, before a hop of MX delivery is tried
//! ([`SmtpTransport::dane_for_hop`]): where its MX RRset and its addresses
//! are secure, its TLSA records (`_<mx_port>._tcp.<host>`) are looked up.
//! Secure TLSA records make STARTTLS mandatory and the DANE verifier
//! decide (`tls: dane: no TLSA record matched`, `tls: dane: STARTTLS not
//! offered`); a bogus or failed TLSA lookup skips the host
//! (`dns: dnssec: bogus TLSA records`); insecure or absent TLSA leaves the
//! connector's policy. Smarthosts and `tls = "none"` connectors never use
//! DANE. An idle pooled session is reused under DANE only if it was itself
//! DANE-verified.

use super::dane::DaneHop;
use super::mta_sts::{MtaSts, Plan};
use super::mx::{Dnssec, MxResolver, NextHop};
use super::pool::{Pool, PoolKey, PoolLimits};
use super::session::{HopFailure, OpenParams, Session};
use super::tls::TlsClients;
use super::{AttemptReport, AttemptResult, PolicyKind, RcptOutcome, Stage, TlsOutcome};
use crate::config::{Config, Connector, OutboundTls, SmarthostTls};
use crate::proto::smtp::client::{Envelope, RcptResult, TxStage};
use crate::proto::smtp::server::BodyType;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use super::session::Timeouts;

/// One message to deliver: the envelope and the stored body (CRLF line
/// ends, our `Received:` header on top).
#[derive(Clone, Copy, Debug)]
pub struct OutboundMessage<'a> {
    /// The queue id, for logs.
    pub id: &'a str,
    /// The reverse-path without brackets; empty for the null sender `<>`.
    pub sender: &'a str,
    /// The recipients to attempt: their index in the queued message (as
    /// reported back in [`AttemptReport::outcomes`]) and their address.
    pub recipients: &'a [(usize, &'a str)],
    pub body: &'a [u8],
    pub body_type: BodyType,
    pub smtputf8: bool,
    /// RFC 8689 REQUIRETLS: only to a host that offers REQUIRETLS over
    /// verified TLS (see [`requiretls_refusal`]), with `REQUIRETLS` on MAIL;
    /// where no host does, the recipients fail with 5.7.10.
    pub require_tls: bool,
    /// RFC 8689 §4.2.2 `TLS-Required: No`: the connector's `required` /
    /// `verify` act as `opportunistic` for this message (credentials still
    /// need TLS). Its sessions are pooled apart, so a weaker session never
    /// carries other mail.
    pub tls_optional: bool,
}

/// Tunables of the transport; [`Default`] is what production uses.
#[derive(Clone, Debug)]
pub struct TransportSettings {
    /// The port MX hosts (and domain literals) are contacted on when the
    /// connector sets no `mx_port`. Always 25 on the Internet.
    pub mx_port: u16,
    /// Per next-hop host name (as in the MX record, lower case), a port to
    /// use instead of `mx_port`: lets tests put several MX hosts on one
    /// address. Empty in production. Smarthosts keep their configured port.
    pub port_overrides: HashMap<String, u16>,
    pub timeouts: Timeouts,
    /// Idle sessions kept per (connector, host, port); 0 means as many as
    /// `queue.max_per_destination` (more could never be busy at once).
    pub max_idle_per_host: usize,
    /// An idle session older than this is closed rather than reused.
    pub idle_timeout: Duration,
    /// A session is not reused after this long since it was opened.
    pub max_session_age: Duration,
    /// A session is not reused after this many messages.
    pub max_messages_per_session: u32,
    /// RFC 5321 §4.5.3.1.8: servers must take at least 100 recipients.
    pub max_recipients_per_transaction: usize,
    /// Connections opened in one attempt, over all hosts and addresses.
    pub max_connections_per_attempt: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            mx_port: 25,
            port_overrides: HashMap::new(),
            timeouts: Timeouts::default(),
            max_idle_per_host: 0,
            idle_timeout: Duration::from_secs(10),
            max_session_age: Duration::from_secs(300),
            max_messages_per_session: 100,
            max_recipients_per_transaction: 100,
            max_connections_per_attempt: 10,
        }
    }
}

/// The transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Dns(#[from] super::mx::DnsSetupError),
    #[error(transparent)]
    Tls(#[from] super::tls::TlsSetupError),
    #[error(transparent)]
    MtaSts(#[from] super::mta_sts::StsSetupError),
}

/// Outbound SMTP: resolver, TLS configurations and the session pool.
pub struct SmtpTransport {
    config: Arc<Config>,
    resolver: MxResolver,
    tls: TlsClients,
    sts: MtaSts,
    pool: Pool,
    settings: TransportSettings,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The hops of one attempt, and how to reach them.
struct Route {
    hops: Vec<NextHop>,
    port: u16,
    implicit_tls: bool,
    smarthost: bool,
}

impl SmtpTransport {
    pub fn new(config: Arc<Config>) -> Result<SmtpTransport, TransportError> {
        SmtpTransport::with_settings(config, TransportSettings::default())
    }

    /// Builds the resolver from `[dns]` and checks every connector's
    /// `tls_ca_file` now, so a bad file is an error at start, not at the
    /// first delivery.
    pub fn with_settings(config: Arc<Config>, settings: TransportSettings) -> Result<SmtpTransport, TransportError> {
        let resolver = MxResolver::from_config(&config.dns)?;
        let tls = TlsClients::default();
        let sts = MtaSts::new(&config, resolver.clone())?;
        for c in &config.connectors {
            tls.for_connector(c)?;
        }
        let pool = Pool::new(PoolLimits {
            max_idle_per_key: match settings.max_idle_per_host {
                0 => config.queue.max_per_destination,
                n => n,
            },
            idle_timeout: settings.idle_timeout,
            max_age: settings.max_session_age,
            max_messages: settings.max_messages_per_session,
        });
        Ok(SmtpTransport { config, resolver, tls, sts, pool, settings })
    }

    pub fn settings(&self) -> &TransportSettings {
        &self.settings
    }

    /// Idle sessions in the pool (for tests and status).
    pub fn idle_sessions(&self) -> usize {
        self.pool.idle_count()
    }

    /// QUIT every idle session (at shutdown).
    pub async fn close_idle(&self) {
        for s in self.pool.drain() {
            s.close(Duration::from_secs(2)).await;
        }
    }

    /// One attempt to deliver `msg` to the recipients of `domain` through
    /// `connector` (its smarthost when it has one, else the MX of `domain`).
    pub async fn deliver(&self, connector: &Connector, domain: &str, msg: &OutboundMessage<'_>) -> AttemptReport {
        let now = crate::util::now_secs();
        if msg.recipients.is_empty() {
            return AttemptReport::default();
        }
        let tls = match self.tls.for_connector(connector) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(id = msg.id, "{e}");
                let r = result(Stage::Tls, None, Some("4.7.5"), "trust roots unavailable (tls_ca_file)", None, now);
                return all(msg, RcptOutcome::Deferred(r), None, false);
            }
        };
        let mut route = match self.route(connector, domain).await {
            Ok(r) => r,
            Err((f, smarthost)) => {
                tracing::info!(id = msg.id, connector = %connector.name, "{f}");
                let r = f.result(now);
                let o = if f.permanent { RcptOutcome::Failed(r) } else { RcptOutcome::Deferred(r) };
                return all(msg, o, None, smarthost);
            }
        };

        let auth = match (&connector.auth_username, &connector.auth_password_file) {
            (Some(u), Some(f)) => Some((u.as_str(), f)),
            _ => None,
        };
        // AUTH never goes over plaintext: credentials make TLS required.
        let policy = match (connector.tls, auth.is_some()) {
            (OutboundTls::None | OutboundTls::Opportunistic, true) => OutboundTls::Required,
            (OutboundTls::Required | OutboundTls::Verify, false) if msg.tls_optional => OutboundTls::Opportunistic,
            (p, _) => p,
        };
        // sessions opened under a waived policy are kept apart from the rest
        let pool_name = match policy != connector.tls {
            true => format!("{}\0tls-optional", connector.name),
            false => connector.name.clone(),
        };
        let helo = connector.helo_name.as_deref().unwrap_or(&self.config.server.hostname);

        // MTA-STS (RFC 8461): the domain's own policy, for MX delivery only;
        // under `enforce` only the MX hosts it names, each with verified TLS
        // (`TLS-Required: No` waives it, RFC 8689 §4.1)
        let sts = match route.smarthost || !connector.mta_sts || msg.tls_optional {
            true => Plan::Off,
            false => self.sts.lookup(domain).await,
        };
        route.hops = match sts.hops(std::mem::take(&mut route.hops)) {
            Ok(hops) => hops,
            Err(host) => {
                tracing::info!(id = msg.id, domain, "MTA-STS: no MX host matches the policy ({host} first)");
                let text = format!("mta-sts: {host} not in policy");
                let r = result(Stage::Tls, None, Some("4.7.5"), &text, Some(&host), now);
                return all(msg, RcptOutcome::Deferred(r), Some(sts.not_in_policy()), true);
            }
        };
        let (policy, tls) = sts.tls(policy, &tls, self.sts.tls());

        let mut last: Option<HopFailure> = None;
        let mut last_host = String::new();
        let mut last_ip = None;
        let mut connections = 0;
        let mut requiretls_refused: Option<AttemptResult> = None;
        'hops: for hop in self.prefer_pooled(connector, &route) {
            let port = self.port(&route, &hop);
            // DANE: a step of its own per hop (RFC 7672 §2.2); it wins over
            // MTA-STS where both apply, and `TLS-Required: No` waives it
            let dane = match msg.tls_optional {
                true => Ok(None),
                false => self.dane_for_hop(connector, &route, &hop, port, domain).await,
            };
            let dane = match dane {
                Ok(d) => d,
                Err(f) => {
                    tracing::info!(id = msg.id, host = %hop.host, "{}: {}", f.stage, f.text);
                    last_host = hop.host.clone();
                    last = Some(f);
                    continue;
                }
            };
            let key = PoolKey { connector: pool_name.clone(), host: hop.host.clone(), port };
            while let Some(mut s) = self.take_idle(&key) {
                if !s.probe() || (dane.is_some() && !dane_verified(&s.tls)) {
                    close_all(vec![s]);
                    continue;
                }
                if dane.is_none() {
                    if sts.enforce() && !s.tls.verified {
                        // opened for a domain without a policy: not good enough here
                        close_all(self.pool.put(key.clone(), s));
                        break;
                    }
                    let sts_verified = s.would_verify(self.sts.tls());
                    sts.opened(&hop.host, &mut s.tls, sts_verified);
                }
                let s = match self.requiretls_check(msg, &key, s, now) {
                    Ok(s) => s,
                    Err(r) => {
                        requiretls_refused = Some(r);
                        continue 'hops;
                    }
                };
                tracing::debug!(id = msg.id, host = %hop.host, "reusing an idle session");
                // a reused session that dies before MAIL is answered is not
                // the message's fault: try it on a fresh connection instead
                if let Some(report) = self.run(key.clone(), s, msg, now, true).await {
                    return report;
                }
            }
            for ip in &hop.addrs {
                if connections >= self.settings.max_connections_per_attempt {
                    break 'hops;
                }
                connections += 1;
                let mut p = OpenParams {
                    host: &hop.host,
                    addr: SocketAddr::new(*ip, port),
                    helo,
                    policy,
                    implicit_tls: route.implicit_tls,
                    plaintext_note: None,
                    tls,
                    auth,
                    timeouts: self.settings.timeouts,
                    dane: dane.as_ref(),
                };
                let mut opened = Session::open(&p).await;
                if let Err(HopFailure { retry_plaintext: Some(note), .. }) = &opened {
                    // SPEC §7: opportunistic TLS retries the same host in plaintext.
                    tracing::info!(id = msg.id, host = %hop.host, addr = %p.addr, "{note}");
                    p.plaintext_note = Some(note.clone());
                    connections += 1;
                    opened = Session::open(&p).await;
                }
                match opened {
                    Ok(mut s) => {
                        if dane.is_none() {
                            let sts_verified = s.would_verify(self.sts.tls());
                            sts.opened(&hop.host, &mut s.tls, sts_verified);
                        }
                        let s = match self.requiretls_check(msg, &key, s, now) {
                            Ok(s) => s,
                            Err(r) => {
                                requiretls_refused = Some(r);
                                continue 'hops;
                            }
                        };
                        // a fresh session always decides (None is for reused ones)
                        if let Some(report) = self.run(key.clone(), s, msg, now, false).await {
                            return report;
                        }
                    }
                    Err(mut f) => {
                        if dane.is_none() {
                            sts.failed(&mut f);
                        }
                        tracing::info!(id = msg.id, host = %hop.host, addr = %p.addr, "{}: {}", f.stage, f.text);
                        let next = f.is_connect_or_tls();
                        last_host = hop.host.clone();
                        last_ip = Some(p.addr.ip());
                        last = Some(f);
                        if !next {
                            break 'hops;
                        }
                    }
                }
            }
        }

        if let Some(r) = requiretls_refused {
            // RFC 8689 §4.2.1: no host could take it under REQUIRETLS: return it
            return AttemptReport { remote_ip: last_ip, ..all(msg, RcptOutcome::Failed(r), None, false) };
        }
        let Some(f) = last else {
            let r = result(Stage::Connect, None, Some("4.4.1"), "no address to connect to", None, now);
            return all(msg, RcptOutcome::Deferred(r), None, true);
        };
        let unreachable = f.is_connect_or_tls();
        let r = result(f.stage, f.code, f.enhanced.as_deref(), &f.text, Some(&last_host), now);
        AttemptReport { remote_ip: last_ip, ..all(msg, RcptOutcome::Deferred(r), f.tls, unreachable) }
    }

    async fn route(&self, c: &Connector, domain: &str) -> Result<Route, (super::mx::DnsFailure, bool)> {
        match &c.smarthost_addr {
            Some(h) => {
                let hop = self.resolver.resolve_host(&h.host).await.map_err(|f| (f.into_temporary(), true))?;
                Ok(Route {
                    hops: vec![hop],
                    port: c.smarthost_port(),
                    implicit_tls: c.smarthost_tls == SmarthostTls::Implicit,
                    smarthost: true,
                })
            }
            None => {
                let hops = self.resolver.resolve_domain(domain).await.map_err(|f| (f, false))?;
                Ok(Route {
                    hops,
                    port: c.mx_port.unwrap_or(self.settings.mx_port),
                    implicit_tls: false,
                    smarthost: false,
                })
            }
        }
    }

    /// DANE for one hop of MX delivery (RFC 7672 §2.2): `Some` when the
    /// host's MX RRset, addresses and TLSA records are secure and TLSA
    /// records exist; `None` where DANE does not apply (validation off, a
    /// smarthost, `tls = "none"`, anything insecure, no TLSA). A bogus or
    /// failed TLSA lookup is a failure for this host: it is skipped.
    async fn dane_for_hop(
        &self,
        c: &Connector,
        route: &Route,
        hop: &NextHop,
        port: u16,
        domain: &str,
    ) -> Result<Option<DaneHop>, HopFailure> {
        if !self.resolver.dnssec() || route.smarthost || c.tls == OutboundTls::None || !hop.dane_eligible() {
            return Ok(None);
        }
        let answer = match self.resolver.tlsa(&hop.host, port).await {
            Ok(a) => a,
            Err(f) => {
                let mut h = HopFailure::dns(&f);
                let failed = if f.text.starts_with("dnssec:") { "dnssec-invalid" } else { "tlsa-invalid" };
                if let Ok(d) = DaneHop::new(domain, &hop.host, Vec::new()) {
                    h.tls = Some(TlsOutcome {
                        info: None,
                        verified: false,
                        note: Some(f.text.clone()),
                        policy: Some(d.outcome(Some(failed))),
                    });
                }
                return Err(h);
            }
        };
        if answer.dnssec != Dnssec::Secure || answer.records.is_empty() {
            return Ok(None);
        }
        match DaneHop::new(domain, &hop.host, answer.records) {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                tracing::warn!(host = %hop.host, "DANE client configuration: {e}");
                Err(HopFailure::dns(&super::mx::DnsFailure {
                    name: answer.name,
                    permanent: false,
                    text: "dane: TLS setup failed".into(),
                    enhanced: "4.7.5",
                }))
            }
        }
    }

    fn port(&self, route: &Route, hop: &NextHop) -> u16 {
        match route.smarthost {
            true => route.port,
            false => self.settings.port_overrides.get(&hop.host).copied().unwrap_or(route.port),
        }
    }

    /// Among hosts of equal preference, those with an idle session first.
    fn prefer_pooled(&self, c: &Connector, route: &Route) -> Vec<NextHop> {
        let pooled = |h: &NextHop| {
            let port = self.port(route, h);
            self.pool.has_idle(&PoolKey { connector: c.name.clone(), host: h.host.clone(), port })
        };
        let mut hops = route.hops.clone();
        // a stable sort keeps the shuffled order within each class
        hops.sort_by_key(|h| (h.preference, !pooled(h)));
        hops
    }

    fn take_idle(&self, key: &PoolKey) -> Option<Session> {
        let (s, expired) = self.pool.take(key);
        close_all(expired);
        s
    }

    /// Send the message over an open session, then pool or close it.
    /// Run the message's transactions on `s`. For a `reused` session, `None`
    /// means it was dead before the first MAIL got any reply (nothing was
    /// decided); the session is then dropped.
    async fn run(
        &self,
        key: PoolKey,
        mut s: Session,
        msg: &OutboundMessage<'_>,
        now: u64,
        reused: bool,
    ) -> Option<AttemptReport> {
        let host = s.host.clone();
        let mut outcomes = Vec::with_capacity(msg.recipients.len());
        let per = self.settings.max_recipients_per_transaction.max(1);
        for (n, chunk) in msg.recipients.chunks(per).enumerate() {
            if !s.is_reusable() {
                // the session broke in an earlier chunk
                let r = result(Stage::Mail, None, Some("4.4.2"), "connection lost", Some(&host), now);
                outcomes.extend(chunk.iter().map(|(i, _)| (*i, RcptOutcome::Deferred(r.clone()))));
                continue;
            }
            let addrs: Vec<&str> = chunk.iter().map(|(_, a)| *a).collect();
            let env = Envelope {
                sender: msg.sender,
                recipients: &addrs,
                body: msg.body,
                body_type: msg.body_type,
                smtputf8: msg.smtputf8,
                requiretls: msg.require_tls,
            };
            let t = s.transaction(&env).await;
            if reused && n == 0 && t.recipients.iter().all(|r| r.stage == TxStage::Mail && r.code.is_none()) {
                tracing::debug!(id = msg.id, host = %host, "an idle session was dead; opening a new one");
                close_all(vec![s]);
                return None;
            }
            for ((i, addr), r) in chunk.iter().zip(t.recipients) {
                let o = outcome(&r, &host, now);
                tracing::info!(id = msg.id, to = %addr, host = %host, "{}", describe(&o));
                outcomes.push((*i, o));
            }
        }
        let (tls, remote_ip) = (s.tls.clone(), Some(s.addr.ip()));
        close_all(self.pool.put(key, s));
        Some(AttemptReport { outcomes, tls: Some(tls), remote_ip, unreachable: false })
    }
}

impl SmtpTransport {
    /// For a REQUIRETLS message: `s` if its host may take it, else the
    /// session goes back to the pool (still good for other mail) and the
    /// result that returns the message.
    fn requiretls_check(
        &self,
        msg: &OutboundMessage<'_>,
        key: &PoolKey,
        s: Session,
        now: u64,
    ) -> Result<Session, AttemptResult> {
        if !msg.require_tls {
            return Ok(s);
        }
        let Some(why) = requiretls_refusal(&s.tls, s.offers_requiretls()) else { return Ok(s) };
        tracing::info!(id = msg.id, host = %s.host, "REQUIRETLS: {why}");
        let r = result(Stage::Mail, None, Some("5.7.10"), &format!("REQUIRETLS: {why}"), Some(&s.host), now);
        close_all(self.pool.put(key.clone(), s));
        Err(r)
    }
}

/// RFC 8689 §4.2.1: why a session may not carry a REQUIRETLS message, or
/// `None` when it may: the host offers REQUIRETLS, and TLS is verified —
/// by the connector's `verify` (or a certificate that would pass it), or
/// by the domain's DANE or MTA-STS policy succeeding on this session.
pub fn requiretls_refusal(tls: &TlsOutcome, offered: bool) -> Option<&'static str> {
    let policy_ok = tls
        .policy
        .as_ref()
        .is_some_and(|p| matches!(p.kind, super::PolicyKind::Tlsa | super::PolicyKind::Sts) && p.failure.is_none());
    if tls.info.is_none() {
        Some("the session is not encrypted")
    } else if !(tls.verified || policy_ok) {
        Some("the host's certificate is not verified (by verify, DANE or MTA-STS)")
    } else if !offered {
        Some("the host does not offer REQUIRETLS")
    } else {
        None
    }
}

/// The session's TLS was verified by DANE (an idle one may serve a DANE hop).
fn dane_verified(tls: &TlsOutcome) -> bool {
    tls.verified && tls.policy.as_ref().is_some_and(|p| p.kind == PolicyKind::Tlsa && p.failure.is_none())
}

/// Close sessions in the background: a QUIT is polite, not worth waiting for.
fn close_all(sessions: Vec<Session>) {
    for s in sessions {
        tokio::spawn(s.close(Duration::from_secs(5)));
    }
}

fn all(msg: &OutboundMessage<'_>, o: RcptOutcome, tls: Option<TlsOutcome>, unreachable: bool) -> AttemptReport {
    let outcomes = msg.recipients.iter().map(|(i, _)| (*i, o.clone())).collect();
    AttemptReport { outcomes, tls, remote_ip: None, unreachable }
}

fn result(
    stage: Stage,
    code: Option<u16>,
    enhanced: Option<&str>,
    text: &str,
    host: Option<&str>,
    at: u64,
) -> AttemptResult {
    AttemptResult {
        code,
        enhanced: enhanced.map(str::to_string),
        text: text.to_string(),
        remote_host: host.map(str::to_string),
        stage,
        at,
    }
}

fn outcome(r: &RcptResult, host: &str, now: u64) -> RcptOutcome {
    let stage = match r.stage {
        TxStage::Mail => Stage::Mail,
        TxStage::Rcpt => Stage::Rcpt,
        TxStage::Data => Stage::Data,
    };
    let a = result(stage, r.code, r.enhanced.as_deref(), &r.text, Some(host), now);
    if r.is_success() {
        RcptOutcome::Delivered(a)
    } else if r.is_permanent() {
        RcptOutcome::Failed(a)
    } else {
        RcptOutcome::Deferred(a)
    }
}

fn describe(o: &RcptOutcome) -> String {
    match o {
        RcptOutcome::Delivered(r) => format!("delivered: {r}"),
        RcptOutcome::Deferred(r) => format!("deferred: {r}"),
        RcptOutcome::Failed(r) => format!("failed: {r}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{PolicyKind, PolicyOutcome};
    use crate::tls::TlsInfo;

    fn tls(encrypted: bool, verified: bool, policy: Option<(PolicyKind, Option<&str>)>) -> TlsOutcome {
        TlsOutcome {
            info: encrypted.then(|| TlsInfo { version: "TLSv1.3".into(), cipher: "X".into(), sni: None }),
            verified,
            note: None,
            policy: policy.map(|(kind, failure)| PolicyOutcome {
                kind,
                domain: "d.test".into(),
                strings: Vec::new(),
                testing: false,
                failure: failure.map(str::to_string),
            }),
        }
    }

    /// RFC 8689 §4.2.1: REQUIRETLS offered, and TLS verified by verify, DANE or MTA-STS.
    #[test]
    fn requiretls_needs_the_extension_and_verified_tls() {
        assert_eq!(requiretls_refusal(&tls(true, true, None), true), None);
        assert_eq!(requiretls_refusal(&tls(true, false, Some((PolicyKind::Tlsa, None))), true), None);
        assert_eq!(requiretls_refusal(&tls(true, false, Some((PolicyKind::Sts, None))), true), None);
        let not_verified = Some("the host's certificate is not verified (by verify, DANE or MTA-STS)");
        assert_eq!(requiretls_refusal(&tls(true, false, None), true), not_verified);
        assert_eq!(requiretls_refusal(&tls(true, false, Some((PolicyKind::NoPolicyFound, None))), true), not_verified);
        let failed = Some((PolicyKind::Sts, Some("certificate-host-mismatch")));
        assert_eq!(requiretls_refusal(&tls(true, false, failed), true), not_verified);
        assert_eq!(requiretls_refusal(&tls(false, true, None), true), Some("the session is not encrypted"));
        assert_eq!(requiretls_refusal(&tls(true, true, None), false), Some("the host does not offer REQUIRETLS"));
    }
}
