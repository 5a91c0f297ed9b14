//! One outbound SMTP connection: connect, implicit TLS or STARTTLS under
//! the connector's policy, EHLO, AUTH, and the byte shuffling between the
//! socket and the sans-IO client core (`proto::smtp::client`), every step
//! under a timeout (RFC 5321 §4.5.3.2).
//!
//! A session that cannot be set up reports a [`HopFailure`] at stage
//! `connect`, `tls` or `auth`, with the text `queue summary` will show. It
//! never sends credentials unless TLS is active, and after a server's 220
//! to STARTTLS it discards whatever else the server sent in plaintext.
//!
//! Where DANE applies to the host ([`OpenParams::dane`]), STARTTLS is
//! required whatever the connector says, the DANE verifier decides the
//! handshake, and the failures read `dane: STARTTLS not offered` and
//! `dane: no TLSA record matched` (no plaintext retry, ever).

use super::dane::DaneHop;
use super::tls::{handshake_failure_text, server_name, ConnectorTls};
use super::{PolicyOutcome, Stage, TlsOutcome};
use crate::config::OutboundTls;
use crate::proto::smtp::client::{
    clean_text, discard, AuthMechanism, ClientSession, Envelope, Event, RcptResult, Secret, ServerReply,
    TransactionResult, TxStage, Waiting,
};
use crate::tls::Stream;
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long each network step may take. The defaults follow RFC 5321
/// §4.5.3.2 (connect is ours: 30 s); tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// The 220 banner (§4.5.3.2.1: 5 minutes).
    pub greeting: Duration,
    pub tls_handshake: Duration,
    /// EHLO, STARTTLS, AUTH, MAIL, RCPT, RSET (§4.5.3.2.2–3: 5 minutes).
    pub command: Duration,
    /// The 354 to DATA (§4.5.3.2.4: 2 minutes).
    pub data_start: Duration,
    /// Each write of the message (§4.5.3.2.5: 3 minutes).
    pub data_block: Duration,
    /// The reply after the final dot (§4.5.3.2.6: 10 minutes).
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            tls_handshake: Duration::from_secs(60),
            command: Duration::from_secs(300),
            data_start: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// Every step bounded by `d` (for tests).
    pub fn all(d: Duration) -> Timeouts {
        Timeouts { connect: d, greeting: d, tls_handshake: d, command: d, data_start: d, data_block: d, data_end: d }
    }
}

/// Bytes read but not yet consumed beyond this mean the server is not
/// speaking SMTP; the session is dropped rather than the buffer grown.
const MAX_UNCONSUMED: usize = 1 << 20;
/// Writes are cut into pieces so a slow but live peer does not hit the
/// per-write timeout on a large message.
const WRITE_CHUNK: usize = 64 * 1024;

/// Why a session could not be set up on one address.
#[derive(Clone, Debug)]
pub(crate) struct HopFailure {
    pub stage: Stage,
    pub code: Option<u16>,
    pub enhanced: Option<String>,
    pub text: String,
    /// TLS as far as it went (None when no connection was made).
    pub tls: Option<TlsOutcome>,
    /// `opportunistic` and the handshake failed: retry this address in
    /// plaintext, noting this reason.
    pub retry_plaintext: Option<String>,
}

impl HopFailure {
    fn new(stage: Stage, text: impl Into<String>) -> HopFailure {
        HopFailure { stage, code: None, enhanced: None, text: text.into(), tls: None, retry_plaintext: None }
    }

    /// A DNS failure for one host (its TLSA lookup): stage `dns`, not a
    /// reason to stop trying the other hosts.
    pub fn dns(f: &super::mx::DnsFailure) -> HopFailure {
        HopFailure::new(Stage::Dns, f.text.clone()).enhanced(f.enhanced)
    }

    fn reply(stage: Stage, r: &ServerReply) -> HopFailure {
        HopFailure {
            stage,
            code: Some(r.code),
            enhanced: r.enhanced.clone(),
            text: r.text(),
            tls: None,
            retry_plaintext: None,
        }
    }

    fn enhanced(mut self, e: &str) -> HopFailure {
        self.enhanced.get_or_insert_with(|| e.to_string());
        self
    }

    /// Failures that let the caller try the next address or host.
    pub fn is_connect_or_tls(&self) -> bool {
        matches!(self.stage, Stage::Connect | Stage::Tls)
    }
}

/// A step of the conversation broke off.
#[derive(Debug)]
pub(crate) enum IoFailure {
    Timeout,
    Closed,
    Io(io::Error),
    Protocol(String),
}

impl IoFailure {
    pub fn text(&self) -> String {
        match self {
            IoFailure::Timeout => "timed out".into(),
            IoFailure::Closed => "connection lost".into(),
            IoFailure::Io(e) => io_text(e),
            IoFailure::Protocol(p) => format!("protocol error: {p}"),
        }
    }
}

/// A client TLS handshake that did not complete. The text is the short one
/// the queue reports (`certificate expired`, `handshake failed: timed out`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("handshake failed: timed out")]
    TimedOut,
    #[error("{}", handshake_failure_text(.0))]
    Failed(#[source] io::Error),
}

/// Short texts for socket errors (`connect: refused`, ...).
pub(crate) fn io_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => {
            "connection lost".into()
        }
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => clean_text(&e.to_string(), 120),
    }
}

/// Everything needed to open a session to one address.
#[derive(Clone, Debug)]
pub(crate) struct OpenParams<'a> {
    pub host: &'a str,
    pub addr: SocketAddr,
    pub helo: &'a str,
    /// The connector's policy, already raised to `required` when AUTH is configured.
    pub policy: OutboundTls,
    pub implicit_tls: bool,
    /// The retry after an opportunistic handshake failed: no STARTTLS, and
    /// this note in the TLS outcome.
    pub plaintext_note: Option<String>,
    pub tls: &'a ConnectorTls,
    pub auth: Option<(&'a str, &'a PathBuf)>,
    pub timeouts: Timeouts,
    /// DANE for this host (validated TLSA records): STARTTLS required and
    /// the DANE verifier decides. None: the connector's policy alone.
    pub dane: Option<&'a DaneHop>,
}

/// A connected, greeted (and maybe authenticated) session.
pub(crate) struct Session {
    stream: Stream,
    core: ClientSession,
    buf: BytesMut,
    pub host: String,
    pub addr: SocketAddr,
    pub tls: TlsOutcome,
    pub opened: Instant,
    pub idle_since: Instant,
    timeouts: Timeouts,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("host", &self.host).field("addr", &self.addr).finish_non_exhaustive()
    }
}

fn plaintext(note: impl Into<String>) -> TlsOutcome {
    TlsOutcome { info: None, verified: false, note: Some(note.into()), policy: None }
}

/// A failure under DANE: stage `tls`, no SMTP code (so `queue summary`
/// shows the text), the DANE policy's RFC 8460 result-type attached.
fn dane_failure(dane: &DaneHop, text: String, enhanced: &str, result_type: &str) -> HopFailure {
    let policy: Option<PolicyOutcome> = Some(dane.outcome(Some(result_type)));
    HopFailure {
        tls: Some(TlsOutcome { policy, ..plaintext(text.clone()) }),
        ..HopFailure::new(Stage::Tls, text).enhanced(enhanced)
    }
}

impl Session {
    /// Connect to one address and bring the session to the point where a
    /// message can be sent.
    pub async fn open(p: &OpenParams<'_>) -> Result<Session, HopFailure> {
        let tcp = match tokio::time::timeout(p.timeouts.connect, TcpStream::connect(p.addr)).await {
            Err(_) => return Err(HopFailure::new(Stage::Connect, "timed out").enhanced("4.4.1")),
            Ok(Err(e)) => return Err(HopFailure::new(Stage::Connect, io_text(&e)).enhanced("4.4.1")),
            Ok(Ok(t)) => t,
        };
        let _ = tcp.set_nodelay(true);
        let (name, name_ok) = server_name(p.host, p.addr.ip());
        let verify = p.policy == OutboundTls::Verify;
        let mut s = Session {
            stream: Stream::Plain(tcp),
            core: ClientSession::new(p.helo, p.implicit_tls),
            buf: BytesMut::with_capacity(4096),
            host: p.host.to_string(),
            addr: p.addr,
            tls: plaintext("TLS not attempted"),
            opened: Instant::now(),
            idle_since: Instant::now(),
            timeouts: p.timeouts,
        };

        if p.implicit_tls {
            // RFC 8314: TLS from the first byte; there is no plaintext to fall back to.
            if verify && !name_ok {
                return Err(HopFailure::new(Stage::Tls, "certificate name mismatch").enhanced("4.7.5"));
            }
            s.handshake(p, name.clone()).await.map_err(|e| HopFailure {
                tls: Some(plaintext(e.to_string())),
                ..HopFailure::new(Stage::Tls, e.to_string()).enhanced("4.7.5")
            })?;
        }

        // The banner and EHLO (HELO if EHLO is refused).
        match s.next_event().await {
            Ok(Event::Ready) => {}
            Ok(Event::Rejected { reply, .. }) => return Err(s.fail_connect(HopFailure::reply(Stage::Connect, &reply))),
            Ok(other) => return Err(s.fail_connect(HopFailure::new(Stage::Connect, format!("unexpected {other:?}")))),
            Err(e) => return Err(s.fail_connect(HopFailure::new(Stage::Connect, e.text()).enhanced("4.4.2"))),
        }

        if !s.core.tls_active() {
            s.negotiate_starttls(p, name, name_ok).await?;
        }

        if let Some((user, file)) = p.auth {
            s.authenticate(user, file).await?;
        }
        Ok(s)
    }

    /// STARTTLS per policy (RFC 3207); on return the session is ready,
    /// over TLS or (where the policy allows) in plaintext.
    async fn negotiate_starttls(
        &mut self,
        p: &OpenParams<'_>,
        name: rustls_pki_types::ServerName<'static>,
        name_ok: bool,
    ) -> Result<(), HopFailure> {
        let must = matches!(p.policy, OutboundTls::Required | OutboundTls::Verify) || p.dane.is_some();
        if let Some(d) = p.dane.filter(|_| !self.core.extensions().starttls) {
            // RFC 7672 §2.2: usable TLSA records make TLS mandatory
            let f = dane_failure(d, "dane: STARTTLS not offered".into(), "4.7.4", "starttls-not-supported");
            return Err(self.fail_connect(f));
        }
        if p.policy == OutboundTls::None && p.dane.is_none() {
            self.tls = plaintext("TLS disabled for this connector (tls = \"none\")");
            return Ok(());
        }
        if let Some(note) = p.plaintext_note.as_ref().filter(|_| p.dane.is_none()) {
            self.tls = plaintext(note.clone());
            return Ok(());
        }
        if !self.core.extensions().starttls {
            if must {
                let f = HopFailure {
                    tls: Some(plaintext("STARTTLS not offered")),
                    ..HopFailure::new(Stage::Tls, "STARTTLS not offered").enhanced("4.7.4")
                };
                return Err(self.fail_connect(f));
            }
            self.tls = plaintext("STARTTLS not offered");
            return Ok(());
        }
        if p.policy == OutboundTls::Verify && !name_ok && p.dane.is_none() {
            let f = HopFailure::new(Stage::Tls, "certificate name mismatch").enhanced("4.7.5");
            return Err(self.fail_connect(f));
        }
        let _ = self.core.starttls();
        match self.next_event().await {
            Ok(Event::StartTls) => {}
            Ok(Event::Rejected { reply, .. }) if !must => {
                self.tls = plaintext(format!("STARTTLS refused: {reply}"));
                return Ok(());
            }
            Ok(Event::Rejected { reply, .. }) => {
                // under DANE the refusal is also the policy's failure (RFC 8460)
                let policy = p.dane.map(|d| d.outcome(Some("starttls-not-supported")));
                let f = HopFailure {
                    tls: Some(TlsOutcome { policy, ..plaintext(format!("STARTTLS refused: {reply}")) }),
                    ..HopFailure::reply(Stage::Tls, &reply)
                };
                return Err(self.fail_connect(f));
            }
            Ok(other) => {
                return Err(self.fail_connect(HopFailure::new(Stage::Tls, format!("unexpected {other:?}"))));
            }
            Err(e) => return Err(self.fail_connect(HopFailure::new(Stage::Tls, e.text()).enhanced("4.4.2"))),
        }
        // RFC 3207 §4.2 (and CVE-2011-0411 in reverse): nothing the server
        // sent before the handshake may be acted upon.
        discard(&mut self.buf);
        if let Err(e) = self.handshake(p, name).await {
            if let Some(d) = p.dane {
                let text = match &e {
                    HandshakeError::Failed(io) => super::dane::handshake_failure_text(io),
                    HandshakeError::TimedOut => format!("dane: {e}"),
                };
                let result_type =
                    if text == super::dane::NO_MATCH { "validation-failure" } else { "certificate-not-trusted" };
                return Err(dane_failure(d, text, "4.7.5", result_type));
            }
            let text = e.to_string();
            let reason = text.strip_prefix("handshake failed: ").unwrap_or(&text);
            let f = HopFailure {
                tls: Some(plaintext(text.clone())),
                retry_plaintext: (!must).then(|| format!("plaintext after failed handshake: {reason}")),
                ..HopFailure::new(Stage::Tls, text.clone()).enhanced("4.7.5")
            };
            return Err(f);
        }
        self.core.tls_started();
        match self.next_event().await {
            Ok(Event::Ready) => Ok(()),
            Ok(Event::Rejected { reply, .. }) => Err(self.fail_connect(HopFailure::reply(Stage::Tls, &reply))),
            Ok(other) => Err(self.fail_connect(HopFailure::new(Stage::Tls, format!("unexpected {other:?}")))),
            Err(e) => Err(self.fail_connect(HopFailure::new(Stage::Tls, e.text()).enhanced("4.4.2"))),
        }
    }

    /// Run the client handshake in place; on success record the outcome.
    async fn handshake(
        &mut self,
        p: &OpenParams<'_>,
        name: rustls_pki_types::ServerName<'static>,
    ) -> Result<(), HandshakeError> {
        let verify = p.policy == OutboundTls::Verify;
        let config = match p.dane {
            Some(d) => d.config.clone(),
            None if verify => p.tls.verifying.clone(),
            None => p.tls.any.clone(),
        };
        let started = tokio::time::timeout(p.timeouts.tls_handshake, self.stream.connect_tls(config, name.clone()));
        let info = match started.await {
            Err(_) => return Err(HandshakeError::TimedOut),
            Ok(Err(e)) => {
                tracing::debug!(host = %p.host, addr = %p.addr, "TLS handshake failed: {e}");
                return Err(HandshakeError::Failed(e));
            }
            Ok(Ok(info)) => info,
        };
        if let Some(d) = p.dane {
            // the DANE verifier accepted the chain (authenticated unless no record was usable)
            let policy = Some(d.outcome(None));
            self.tls = TlsOutcome { info: Some(info), verified: d.authenticates(), note: None, policy };
            return Ok(());
        }
        let verified = verify || self.stream.peer_certificates().is_some_and(|certs| p.tls.would_verify(&certs, &name));
        self.tls = TlsOutcome { info: Some(info), verified, note: None, policy: None };
        Ok(())
    }

    /// AUTH to a smarthost (RFC 4954): PLAIN if offered, else LOGIN; only
    /// ever over TLS.
    async fn authenticate(&mut self, user: &str, file: &PathBuf) -> Result<(), HopFailure> {
        if !self.core.tls_active() {
            let f = HopFailure::new(Stage::Tls, "TLS required for AUTH but not active").enhanced("4.7.4");
            return Err(self.fail_connect(f));
        }
        let ext = self.core.extensions();
        let mechanism = if ext.offers_auth(AuthMechanism::Plain) {
            AuthMechanism::Plain
        } else if ext.offers_auth(AuthMechanism::Login) {
            AuthMechanism::Login
        } else if ext.auth.is_empty() {
            return Err(self.fail_connect(HopFailure::new(Stage::Auth, "AUTH not offered").enhanced("4.7.0")));
        } else {
            let text = format!("no supported AUTH mechanism (offered: {})", ext.auth.join(" "));
            return Err(self.fail_connect(HopFailure::new(Stage::Auth, clean_text(&text, 120)).enhanced("4.7.0")));
        };
        let password = match tokio::fs::read_to_string(file).await {
            Ok(s) => Secret(s.lines().next().unwrap_or_default().to_string()),
            Err(e) => {
                let text = format!("cannot read auth_password_file {}: {e}", file.display());
                return Err(self.fail_connect(HopFailure::new(Stage::Auth, text).enhanced("4.3.5")));
            }
        };
        let _ = self.core.auth(mechanism, user, &password);
        match self.next_event().await {
            Ok(Event::Authenticated) => Ok(()),
            Ok(Event::Rejected { reply, .. }) => Err(self.fail_connect(HopFailure::reply(Stage::Auth, &reply))),
            Ok(other) => Err(self.fail_connect(HopFailure::new(Stage::Auth, format!("unexpected {other:?}")))),
            Err(e) => Err(self.fail_connect(HopFailure::new(Stage::Auth, e.text()))),
        }
    }

    /// Attach what TLS did so far to a failure (the connection is dropped).
    fn fail_connect(&self, mut f: HopFailure) -> HopFailure {
        if f.tls.is_none() {
            f.tls = Some(self.tls.clone());
        }
        f
    }

    /// Flush the commands, then read until the core reports an event.
    async fn next_event(&mut self) -> Result<Event, IoFailure> {
        loop {
            self.flush().await?;
            match self.core.feed(&mut self.buf) {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(IoFailure::Protocol(e.to_string())),
            }
            if self.core.has_output() {
                continue;
            }
            if self.buf.len() > MAX_UNCONSUMED {
                return Err(IoFailure::Protocol("reply too long".into()));
            }
            let wait = match self.core.waiting() {
                Waiting::Greeting => self.timeouts.greeting,
                Waiting::DataStart => self.timeouts.data_start,
                Waiting::DataEnd => self.timeouts.data_end,
                Waiting::Command | Waiting::Nothing => self.timeouts.command,
            };
            match tokio::time::timeout(wait, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(IoFailure::Timeout),
                Ok(Ok(0)) => return Err(IoFailure::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(IoFailure::Io(e)),
            }
        }
    }

    async fn flush(&mut self) -> Result<(), IoFailure> {
        if !self.core.has_output() {
            return Ok(());
        }
        let mut out = Vec::new();
        self.core.take_output(&mut out);
        for chunk in out.chunks(WRITE_CHUNK) {
            match tokio::time::timeout(self.timeouts.data_block, self.stream.write_all(chunk)).await {
                Err(_) => return Err(IoFailure::Timeout),
                Ok(Err(e)) => return Err(IoFailure::Io(e)),
                Ok(Ok(())) => {}
            }
        }
        match tokio::time::timeout(self.timeouts.data_block, self.stream.flush()).await {
            Err(_) => Err(IoFailure::Timeout),
            Ok(Err(e)) => Err(IoFailure::Io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Whether the peer's certificate verifies for the host against `tls`'s
    /// roots (MTA-STS `testing` reports what enforcing would have done).
    pub fn would_verify(&self, tls: &ConnectorTls) -> bool {
        let (name, name_ok) = server_name(&self.host, self.addr.ip());
        name_ok && self.stream.peer_certificates().is_some_and(|certs| tls.would_verify(&certs, &name))
    }

    /// Whether an idle session looks usable, without a round trip: no
    /// transaction left open (the core pipelines an RSET itself if one
    /// was) and nothing waiting on the socket — a server that closed the
    /// connection or said 421 has made it readable.
    pub fn probe(&self) -> bool {
        if !self.core.is_ready() {
            return false;
        }
        let Some(tcp) = self.stream.tcp() else { return false };
        let mut b = [0u8; 1];
        matches!(tcp.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// One mail transaction; a broken connection gives every undecided
    /// recipient a temporary result at the stage it had reached.
    pub async fn transaction(&mut self, env: &Envelope<'_>) -> TransactionResult {
        match self.core.send_mail(env) {
            Ok(Some(r)) => return r,
            Ok(None) => {}
            Err(e) => {
                let r = RcptResult { stage: TxStage::Mail, code: None, enhanced: None, text: e.to_string() };
                return TransactionResult { recipients: vec![r; env.recipients.len()] };
            }
        }
        let text = match self.next_event().await {
            Ok(Event::Transaction(r)) => return r,
            Ok(other) => format!("protocol error: unexpected {other:?}"),
            Err(e) => e.text(),
        };
        let fallback = || {
            let r = RcptResult { stage: TxStage::Mail, code: None, enhanced: None, text: text.clone() };
            TransactionResult { recipients: vec![r; env.recipients.len()] }
        };
        self.core.connection_lost(&text).unwrap_or_else(fallback)
    }

    /// The server offered REQUIRETLS (RFC 8689) in its last EHLO reply.
    pub fn offers_requiretls(&self) -> bool {
        self.core.extensions().requiretls
    }

    /// Can carry another message (the server is not closing, nothing broke).
    pub fn is_reusable(&self) -> bool {
        self.core.is_ready()
    }

    pub fn transactions(&self) -> u32 {
        self.core.transactions()
    }

    /// QUIT and close, waiting at most `wait` for the goodbye.
    pub async fn close(mut self, wait: Duration) {
        if !self.core.is_closed() {
            self.core.quit();
        }
        let _ = tokio::time::timeout(wait, async {
            let _ = self.flush().await;
            let mut scratch = [0u8; 512];
            let _ = self.stream.read(&mut scratch).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}
