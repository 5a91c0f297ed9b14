//! The POP3 server: the sans-IO core (`proto::pop3`), driven by
//! `net::driver`, joined to the accounts (Argon2id, off the async threads),
//! the failure throttle shared with SMTP AUTH (a login holds its slot from
//! AUTH or PASS to the outcome), and the mailbox store.
//! A login takes the user's maildrop exclusively (RFC 1939 §8; a second
//! session gets `-ERR [IN-USE]`) and lists INBOX once; messages that arrive
//! later are seen by the next session. Deletions reach the store only at
//! QUIT (RFC 1939 §6). This module never formats a reply itself.

use crate::auth::sasl::{self, Credentials, Mechanism, Step};
use crate::auth::throttle::Attempt;
use crate::config::{TlsMode, VirtualServer};
use crate::mailbox::{MailboxError, MaildropLock, INBOX};
use crate::net::{ConnInfo, Next, Service, Session, SessionEnd};
use crate::proto::pop3::reply;
use crate::proto::pop3::server::{Entry, Event, ServerSession, Settings};
use crate::server::Context;
use crate::tls::TlsInfo;
use bytes::BytesMut;
use std::sync::Arc;

/// After this many `-ERR`s a session is closed, as for SMTP.
const MAX_ERRORS: u32 = 10;

pub struct Pop3Service {
    ctx: Arc<Context>,
    vs: Arc<VirtualServer>,
    settings: Settings,
}

impl Pop3Service {
    pub fn new(ctx: Arc<Context>, vs: Arc<VirtualServer>) -> Pop3Service {
        let settings = Settings {
            hostname: ctx.config.server.hostname.clone(),
            stls: vs.tls == TlsMode::Starttls,
            require_tls: vs.require_tls,
            allow_plaintext_auth: vs.allow_plaintext_auth,
            max_errors: MAX_ERRORS,
        };
        Pop3Service { ctx, vs, settings }
    }
}

impl Service for Pop3Service {
    type Session = Pop3Session;

    fn session(&self, conn: &ConnInfo) -> Pop3Session {
        Pop3Session {
            ctx: self.ctx.clone(),
            vs: self.vs.clone(),
            core: ServerSession::new(self.settings.clone(), conn.implicit_tls),
            conn: conn.clone(),
            tls: None,
            sasl: None,
            attempt: None,
            maildrop: None,
            retrieved: 0,
            removed: 0,
        }
    }

    fn busy_reply(&self) -> &'static [u8] {
        reply::TOO_MANY_CONNECTIONS_LINE
    }
}

pub struct Pop3Session {
    ctx: Arc<Context>,
    vs: Arc<VirtualServer>,
    core: ServerSession,
    conn: ConnInfo,
    tls: Option<TlsInfo>,
    sasl: Option<sasl::Exchange>,
    /// The throttle slot of the login under way (taken at AUTH or PASS).
    attempt: Option<Attempt>,
    /// Held from login to the end of the session.
    maildrop: Option<MaildropLock>,
    retrieved: u32,
    removed: usize,
}

/// Run a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MailboxError> + Send + 'static,
) -> Result<T, MailboxError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(MailboxError::Io { path: "mailbox".into(), source: std::io::Error::other(e.to_string()) })
    })
}

impl Pop3Session {
    fn user(&self) -> &str {
        self.core.user().unwrap_or("-")
    }

    async fn on_auth(&mut self, mechanism: &str, initial: Option<String>) {
        // the slot is taken now, before any credentials arrive
        let Some(attempt) = self.ctx.auth_attempt(self.conn.peer.ip()) else {
            tracing::info!(server = %self.vs.name, peer = %self.conn.peer, "AUTH refused: too many recent failures");
            self.core.login_done(Err(reply::AUTH_THROTTLED));
            return;
        };
        let Some(mech @ Mechanism::Plain) = Mechanism::parse(mechanism) else {
            self.core.login_done(Err(reply::UNKNOWN_MECHANISM));
            return;
        };
        self.attempt = Some(attempt);
        let (exchange, step) = sasl::Exchange::start(mech, initial.as_deref());
        self.sasl = Some(exchange);
        self.auth_step(step).await;
    }

    async fn auth_step(&mut self, step: Step) {
        match step {
            Step::Challenge(c) => self.core.auth_challenge(&c),
            Step::Failed(sasl::SaslError::BadBase64) => {
                self.sasl = None;
                self.attempt = None;
                self.core.login_done(Err(reply::AUTH_BAD_BASE64));
            }
            Step::Failed(_) => {
                self.sasl = None;
                self.auth_failed(None).await;
            }
            Step::Done(creds) => {
                self.sasl = None;
                self.login(creds, "AUTH PLAIN").await;
            }
        }
    }

    /// Check the credentials, take the maildrop and list it. `method` is
    /// for the log: `USER` or `AUTH PLAIN`.
    async fn login(&mut self, creds: Credentials, method: &'static str) {
        // AUTH took its slot at the start; USER/PASS takes it at PASS
        let Some(attempt) = self.attempt.take().or_else(|| self.ctx.auth_attempt(self.conn.peer.ip())) else {
            tracing::info!(server = %self.vs.name, peer = %self.conn.peer, "login refused: too many recent failures");
            self.core.login_done(Err(reply::AUTH_THROTTLED));
            return;
        };
        let name = creds.username.clone();
        let Some(user) = self.ctx.authenticate(attempt, creds).await else {
            self.log_failure(Some(&name));
            self.core.login_done(Err(reply::AUTH_FAILED));
            return;
        };
        let lock = match self.ctx.mailboxes.lock_maildrop(&user) {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(server = %self.vs.name, peer = %self.conn.peer, user = %user, "login refused: {e}");
                let r = if matches!(e, MailboxError::InUse(_)) { reply::IN_USE } else { reply::MAILDROP_FAILED };
                self.core.login_done(Err(r));
                return;
            }
        };
        let store = self.ctx.mailboxes.clone();
        let u = user.clone();
        match blocking(move || store.messages(&u, INBOX)).await {
            Ok(listing) => {
                let entries = listing
                    .messages
                    .iter()
                    .map(|m| Entry {
                        uid: m.uid,
                        size: m.size,
                        // stable across sessions and restarts while UIDVALIDITY is
                        unique_id: format!("{}.{}", listing.uidvalidity, m.uid),
                    })
                    .collect::<Vec<_>>();
                tracing::info!(
                    server = %self.vs.name, peer = %self.conn.peer, user = %user, method, messages = entries.len(),
                    "logged in"
                );
                self.maildrop = Some(lock);
                self.core.login_done(Ok((user, entries)));
            }
            Err(e) => {
                tracing::error!(server = %self.vs.name, user = %user, "cannot list the maildrop: {e}");
                self.core.login_done(Err(reply::MAILDROP_FAILED));
            }
        }
    }

    /// A SASL exchange that made no sense counts as a failure too.
    async fn auth_failed(&mut self, user: Option<&str>) {
        self.log_failure(user);
        if let Some(attempt) = self.attempt.take() {
            self.ctx.auth_failure(attempt).await;
        }
        self.core.login_done(Err(reply::AUTH_FAILED));
    }

    fn log_failure(&self, user: Option<&str>) {
        tracing::info!(server = %self.vs.name, peer = %self.conn.peer, user = user.unwrap_or("-"), "authentication failed");
    }

    async fn on_retrieve(&mut self, uid: u32) {
        let store = self.ctx.mailboxes.clone();
        let user = self.user().to_string();
        match blocking(move || store.read(&user, INBOX, uid)).await {
            Ok(bytes) => {
                self.retrieved += 1;
                self.core.message(Ok(&bytes));
            }
            Err(MailboxError::NoSuchMessage { .. }) => self.core.message(Err(reply::MESSAGE_GONE)),
            Err(e) => {
                tracing::error!(server = %self.vs.name, user = %self.user(), uid, "cannot read a message: {e}");
                self.core.message(Err(reply::READ_FAILED));
            }
        }
    }

    /// RFC 1939 §6, the UPDATE state: remove what was marked, then say goodbye.
    async fn on_update(&mut self, deleted: Vec<u32>) {
        if deleted.is_empty() {
            self.core.update_done(Ok(()));
            return;
        }
        let store = self.ctx.mailboxes.clone();
        let user = self.user().to_string();
        match blocking(move || store.expunge(&user, INBOX, &deleted)).await {
            Ok(gone) => {
                self.removed = gone.len();
                self.core.update_done(Ok(()));
            }
            Err(e) => {
                tracing::error!(server = %self.vs.name, user = %self.user(), "cannot remove deleted messages: {e}");
                self.core.update_done(Err(reply::UPDATE_FAILED));
            }
        }
    }
}

impl Session for Pop3Session {
    fn greeting(&mut self, out: &mut Vec<u8>) {
        self.core.greeting();
        self.core.take_output(out);
    }

    async fn handle(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Next {
        while let Some(event) = self.core.feed(input) {
            match event {
                Event::StartTls => {
                    self.core.take_output(out);
                    return Next::StartTls;
                }
                Event::Quit | Event::TooManyErrors => break,
                Event::Login(creds) => self.login(creds, "USER").await,
                Event::Auth { mechanism, initial } => self.on_auth(&mechanism, initial).await,
                Event::AuthResponse(line) => {
                    let step = match self.sasl.as_mut() {
                        Some(ex) => ex.respond(&line),
                        None => Step::Failed(sasl::SaslError::Malformed),
                    };
                    self.auth_step(step).await;
                }
                Event::Retrieve { uid, .. } => self.on_retrieve(uid).await,
                Event::Update { deleted } => self.on_update(deleted).await,
            }
        }
        if !self.core.auth_in_progress() {
            // cancelled with "*" or ended by the core: the slot goes back
            self.attempt = None;
        }
        let paused = self.core.output_full();
        self.core.take_output(out);
        if self.core.is_closed() {
            Next::Close
        } else if paused {
            // send this slice first; the rest of the pipelined input follows
            Next::Continue
        } else {
            Next::Read
        }
    }

    fn tls_started(&mut self, info: &TlsInfo) {
        self.tls = Some(info.clone());
        self.sasl = None;
        self.attempt = None;
        self.core.tls_started();
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        self.core.close_with(&reply::IDLE_TIMEOUT);
        self.core.take_output(out);
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        self.core.close_with(&reply::SHUTTING_DOWN);
        self.core.take_output(out);
    }

    fn finished(&mut self, end: &SessionEnd) {
        let (version, cipher) = TlsInfo::log_fields(self.tls.as_ref());
        tracing::info!(
            server = %self.vs.name,
            peer = %self.conn.peer,
            tls = version,
            cipher,
            user = self.user(),
            retrieved = self.retrieved,
            deleted = self.removed,
            outcome = %end,
            "pop3 session"
        );
        self.maildrop = None;
    }
}
