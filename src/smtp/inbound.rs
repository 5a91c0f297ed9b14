//! The inbound SMTP session: the sans-IO core, driven by `net::driver`,
//! joined to policy (relay, recipients, senders), the login glue shared
//! with the other services (`auth::login`: an AUTH exchange holds a slot of
//! the failure throttle from its start to its outcome), and the queue.
//! It gets narrow handles — the configuration, the accounts, the login
//! gate, the queue, the tracking log — not the whole server.
//! A `250` goes out only after the queue says the message is on disk; the
//! message's `received` tracking event follows it.

use super::policy::{self, Client, RcptRoute};
use crate::auth::{Accounts, Gate};
use crate::config::{Config, VirtualServer};
use crate::metrics::Metrics;
use crate::net::{ConnInfo, Next, Service, Session, SessionEnd};
use crate::proto::session::AuthEvent;
use crate::proto::session::LineCore;
use crate::proto::smtp::reply::{self, Reply};
use crate::proto::smtp::server::{AuthMode, Event, Refusal, ServerSession, Settings};
use crate::proto::smtp::{Address, ReversePath};
use crate::queue::{Message, MessageKind, QueueStore, Recipient, SpoolRef};
use crate::service::Conn;
use crate::tls::TlsInfo;
use crate::track::Tracker;
use bytes::BytesMut;
use std::sync::Arc;

/// After this many errors a session is closed (SPEC §4).
const MAX_ERRORS: u32 = 10;

pub struct SmtpService {
    config: Arc<Config>,
    accounts: Accounts,
    gate: Gate,
    queue: Arc<QueueStore>,
    vs: Arc<VirtualServer>,
    settings: Settings,
    metrics: Metrics,
    tracker: Tracker,
}

impl SmtpService {
    pub fn new(
        config: Arc<Config>,
        accounts: Accounts,
        gate: Gate,
        queue: Arc<QueueStore>,
        vs: Arc<VirtualServer>,
        metrics: Metrics,
        tracker: Tracker,
    ) -> SmtpService {
        let settings = Settings {
            hostname: config.server.hostname.clone(),
            max_message_size: vs.max_message_size.0 as usize,
            max_recipients: vs.max_recipients,
            starttls: vs.tls == crate::config::TlsMode::Starttls,
            require_tls: vs.require_tls,
            auth: match vs.auth {
                crate::config::AuthMode::Off => AuthMode::Off,
                crate::config::AuthMode::Optional => AuthMode::Optional,
                crate::config::AuthMode::Required => AuthMode::Required,
            },
            allow_plaintext_auth: vs.allow_plaintext_auth,
            max_errors: MAX_ERRORS,
        };
        SmtpService { config, accounts, gate, queue, vs, settings, metrics, tracker }
    }
}

impl Service for SmtpService {
    type Session = InboundSession;

    fn session(&self, conn: &ConnInfo) -> InboundSession {
        InboundSession {
            config: self.config.clone(),
            accounts: self.accounts.clone(),
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
            tracker: self.tracker.clone(),
            core: ServerSession::new(self.settings.clone(), conn.implicit_tls),
            conn: Conn::new(&self.vs, conn, &self.gate),
            txn: Transaction::default(),
            queued: 0,
        }
    }

    fn busy_reply(&self) -> &'static [u8] {
        b"421 4.7.0 Too many connections, try again later\r\n"
    }
}

#[derive(Default)]
struct Transaction {
    from: String,
    rcpts: Vec<(Address, RcptRoute)>,
}

pub struct InboundSession {
    config: Arc<Config>,
    accounts: Accounts,
    queue: Arc<QueueStore>,
    /// Messages accepted and refused (`postern_smtp_*`).
    metrics: Metrics,
    tracker: Tracker,
    core: ServerSession,
    /// Peer, virtual server, TLS, and the login (holding the throttle slot
    /// of the AUTH exchange under way (SPEC §4)).
    conn: Conn,
    txn: Transaction,
    queued: u32,
}

impl InboundSession {
    fn client(&self) -> Client<'_> {
        Client { ip: self.conn.peer.ip(), auth_user: self.core.auth_user() }
    }

    fn on_mail(&mut self, from: ReversePath) {
        let decision = policy::check_sender(&self.accounts, &self.conn.vs, &self.client(), &from);
        if decision.is_ok() {
            self.txn = Transaction { from: from.to_string(), rcpts: Vec::new() };
        }
        if let Err(r) = &decision {
            self.metrics.smtp_refused(&self.conn.vs.name, "MAIL", r.code);
        }
        self.core.mail_decision(decision);
    }

    fn on_rcpt(&mut self, mut to: Address) {
        let decision = policy::check_rcpt(&self.config, &self.accounts, &self.conn.vs, &self.client(), &to);
        match decision {
            Ok(route) => {
                if to.domain.is_empty() {
                    // bare <Postmaster>
                    to = Address::parse(&self.config.server.postmaster).unwrap_or(to);
                }
                if !self.txn.rcpts.iter().any(|(a, _)| a.key() == to.key()) {
                    self.txn.rcpts.push((to, route));
                }
                self.core.rcpt_decision(Ok(()));
            }
            Err(r) => {
                tracing::info!(server = %self.conn.vs.name, peer = %self.conn.peer, rcpt = %to, reply = %r, "recipient refused");
                self.metrics.smtp_refused(&self.conn.vs.name, "RCPT", r.code);
                self.core.rcpt_decision(Err(r));
            }
        }
    }

    /// The transaction's recipients as the queue keeps them: local ones
    /// expanded through aliases, duplicates removed.
    fn queue_recipients(&self, txn: &Transaction) -> Vec<Recipient> {
        let mut out: Vec<Recipient> = Vec::new();
        for (a, route) in &txn.rcpts {
            let expanded = match route {
                RcptRoute::Local => policy::expand_local(&self.config, &self.accounts, &self.conn.vs.name, a),
                RcptRoute::Remote { destination } => {
                    vec![policy::QueuedRcpt {
                        address: a.to_string(),
                        destination: destination.clone(),
                        original: None,
                    }]
                }
            };
            for q in expanded {
                if !out.iter().any(|r| r.address.eq_ignore_ascii_case(&q.address)) {
                    let mut r = Recipient::new(q.address, q.destination);
                    r.original = q.original;
                    out.push(r);
                }
            }
        }
        out
    }

    async fn on_message(&mut self, body: Vec<u8>) {
        let r = self.enqueue(body).await;
        self.metrics.smtp_message(&self.conn.vs.name, r.code);
        self.core.message_decision(r);
    }

    async fn enqueue(&mut self, body: Vec<u8>) -> Reply {
        let txn = std::mem::take(&mut self.txn);
        let id = self.queue.new_id();
        let now = crate::util::now_secs();
        let single = (txn.rcpts.len() == 1).then(|| txn.rcpts[0].0.to_string());
        let mut full = super::received::header(&super::received::Trace {
            helo: self.core.helo().unwrap_or("unknown"),
            ip: self.conn.peer.ip(),
            hostname: &self.config.server.hostname,
            esmtp: self.core.esmtp(),
            utf8: self.core.mail_params().smtputf8,
            tls: self.conn.tls.as_ref(),
            authenticated: self.core.auth_user().is_some(),
            id: id.as_str(),
            for_rcpt: single.as_deref(),
            date: now,
        });
        if self.conn.vs.is_submission() {
            super::received::add_missing_headers(&body, &mut full, id.as_str(), &self.config.server.hostname, now);
        }
        full.extend_from_slice(&body);
        drop(body);
        let params = self.core.mail_params().clone();
        let message = Message {
            id: id.clone(),
            sender: txn.from.clone(),
            source_server: self.conn.vs.name.clone(),
            client_ip: Some(self.conn.peer.ip()),
            client_helo: self.core.helo().map(str::to_string),
            auth_user: self.core.auth_user().map(str::to_string),
            tls: self.conn.tls.clone(),
            arrived: now,
            size: full.len() as u64,
            body_type: params.body,
            smtputf8: params.smtputf8,
            kind: MessageKind::Inbound,
            frozen: false,
            delay_warned: false,
            require_tls: params.requiretls,
            // RFC 8689 §4.1: with REQUIRETLS the header is ignored
            tls_optional: !params.requiretls && tls_required_no(&full),
            recipients: self.queue_recipients(&txn),
            spool: SpoolRef::default(),
        };
        let (size, nrcpt) = (message.size, message.recipients.len());
        let received = crate::queue::tracking::received(&message);
        match self.queue.enqueue(message, full).await {
            Ok(_) => {
                self.queued += 1;
                tracing::info!(
                    id = %id, size, from = %txn.from, recipients = nrcpt, server = %self.conn.vs.name,
                    "message queued"
                );
                self.tracker.record(received);
                Reply::owned(250, "2.0.0", format!("Ok: queued as {id}"))
            }
            Err(e) => {
                tracing::error!(server = %self.conn.vs.name, peer = %self.conn.peer, "cannot queue a message: {e}");
                reply::STORE_FAILED
            }
        }
    }

    /// The driver ends the session (idle, shutdown) with this reply.
    /// AUTH: the slot is taken when the exchange starts, before any
    /// credentials arrive; the verdict goes back to the core.
    async fn on_auth(&mut self, event: AuthEvent) {
        let verdict = match event {
            AuthEvent::Start { .. } => {
                let slot = self.conn.login.slot("AUTH", reply::AUTH_THROTTLED);
                return self.core.auth_begin(slot);
            }
            AuthEvent::Credentials(creds) => {
                self.conn.login.verify(creds).await.map_err(|r| r.reply(reply::AUTH_THROTTLED, reply::AUTH_FAILED))
            }
            AuthEvent::Failed(_) => {
                self.conn.login.failed().await;
                Err(reply::AUTH_FAILED)
            }
        };
        self.core.auth_done(verdict);
    }
}

impl Session for InboundSession {
    fn greeting(&mut self, out: &mut Vec<u8>) {
        Conn::greet(&mut self.core, out);
    }

    async fn handle(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Next {
        while let Some(event) = self.core.feed(input) {
            match event {
                Event::Mail { from, .. } => self.on_mail(from),
                Event::Rcpt { to } => self.on_rcpt(to),
                Event::Message { body } => self.on_message(body).await,
                Event::Auth(auth) => self.on_auth(auth).await,
                Event::StartTls => {
                    self.core.take_output(out);
                    return Next::StartTls;
                }
                Event::Quit | Event::TooManyErrors => break,
            }
        }
        for refusal in self.core.take_refusals() {
            match refusal {
                Refusal::Message(code) => self.metrics.smtp_message(&self.conn.vs.name, code),
                Refusal::Mail(code) => self.metrics.smtp_refused(&self.conn.vs.name, "MAIL", code),
            }
        }
        self.conn.end_turn(&mut self.core, out)
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        Conn::close(&mut self.core, &reply::IDLE_TIMEOUT, out);
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        Conn::close(&mut self.core, &reply::SHUTTING_DOWN, out);
    }

    fn tls_started(&mut self, info: &TlsInfo) {
        self.conn.tls_started(info);
        self.txn = Transaction::default();
        self.core.tls_started();
    }

    fn finished(&mut self, end: &SessionEnd) {
        let (version, cipher) = TlsInfo::log_fields(self.conn.tls.as_ref());
        tracing::info!(
            server = %self.conn.vs.name,
            peer = %self.conn.peer,
            helo = self.core.helo().unwrap_or("-"),
            tls = version,
            cipher,
            user = self.core.auth_user().unwrap_or("-"),
            messages = self.queued,
            outcome = %end,
            "smtp session"
        );
    }
}

/// RFC 8689 §4.2.2: whether the message's header section has
/// `TLS-Required: No` (the name and value compare case-insensitively; a
/// folded field is unfolded). Only the header section is read.
fn tls_required_no(message: &[u8]) -> bool {
    let end = memchr::memmem::find(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2);
    let headers = String::from_utf8_lossy(message.get(..end).unwrap_or(message));
    let mut field: Option<String> = None;
    let is_no = |f: &str| {
        f.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("TLS-Required") && value.trim().eq_ignore_ascii_case("No")
        })
    };
    for line in headers.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(f) = &mut field {
                f.push_str(line);
            }
            continue;
        }
        if field.as_deref().is_some_and(is_no) {
            return true;
        }
        field = Some(line.to_string());
    }
    field.as_deref().is_some_and(is_no)
}

#[cfg(test)]
mod tests {
    use super::tls_required_no;

    #[test]
    fn tls_required_no_is_read_from_the_header_section_only() {
        assert!(tls_required_no(b"Received: x\r\nTLS-Required: No\r\n\r\nbody\r\n"));
        assert!(tls_required_no(b"tls-required:\r\n  no\r\nSubject: s\r\n\r\n"));
        assert!(!tls_required_no(b"TLS-Required: Yes\r\n\r\nTLS-Required: No\r\n"));
        assert!(!tls_required_no(b"Subject: TLS-Required: No\r\n\r\n"));
        assert!(!tls_required_no(b""));
    }
}
