//! The POP3 server: the sans-IO core (`proto::pop3`), driven by
//! `net::driver`, joined to the login glue shared with SMTP AUTH
//! (`auth::login`: a login holds its throttle slot from AUTH or PASS to the
//! outcome) and the mailbox store — narrow handles, not the whole server.
//! A login takes the user's maildrop exclusively (RFC 1939 §8; a second
//! session gets `-ERR [IN-USE]`) and lists INBOX once; messages that arrive
//! later are seen by the next session. Deletions reach the store only at
//! QUIT (RFC 1939 §6). This module never formats a reply itself.

use crate::auth::Gate;
use crate::config::{TlsMode, VirtualServer};
use crate::mailbox::{blocking, MailboxError, MailboxStore, MaildropLock, INBOX};
use crate::net::{ConnInfo, Next, Service, Session, SessionEnd};
use crate::proto::pop3::reply;
use crate::proto::pop3::server::{Entry, Event, ServerSession, Settings};
use crate::proto::sasl::Credentials;
use crate::proto::session::AuthEvent;
use crate::proto::session::LineCore;
use crate::service::Conn;
use crate::tls::TlsInfo;
use bytes::BytesMut;
use std::sync::Arc;

/// After this many `-ERR`s a session is closed, as for SMTP.
const MAX_ERRORS: u32 = 10;

pub struct Pop3Service {
    gate: Gate,
    mailboxes: Arc<MailboxStore>,
    vs: Arc<VirtualServer>,
    settings: Settings,
}

impl Pop3Service {
    pub fn new(hostname: &str, gate: Gate, mailboxes: Arc<MailboxStore>, vs: Arc<VirtualServer>) -> Pop3Service {
        let settings = Settings {
            hostname: hostname.to_string(),
            stls: vs.tls == TlsMode::Starttls,
            require_tls: vs.require_tls,
            allow_plaintext_auth: vs.allow_plaintext_auth,
            max_errors: MAX_ERRORS,
        };
        Pop3Service { gate, mailboxes, vs, settings }
    }
}

impl Service for Pop3Service {
    type Session = Pop3Session;

    fn session(&self, conn: &ConnInfo) -> Pop3Session {
        Pop3Session {
            mailboxes: self.mailboxes.clone(),
            core: ServerSession::new(self.settings.clone(), conn.implicit_tls),
            conn: Conn::new(&self.vs, conn, &self.gate),
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
    mailboxes: Arc<MailboxStore>,
    core: ServerSession,
    /// Peer, virtual server, TLS, and the login (holding the throttle slot
    /// of the login under way (taken at AUTH or PASS)).
    conn: Conn,
    /// Held from login to the end of the session.
    maildrop: Option<MaildropLock>,
    retrieved: u32,
    removed: usize,
}

impl Pop3Session {
    fn user(&self) -> &str {
        self.core.user().unwrap_or("-")
    }

    fn on_auth(&mut self) {
        // the slot is taken now, before any credentials arrive
        let slot = self.conn.login.slot("AUTH", reply::AUTH_THROTTLED);
        self.core.auth_begin(slot);
    }

    /// Check the credentials, take the maildrop and list it. `method` is
    /// for the log: `USER` or `AUTH PLAIN`.
    async fn log_in(&mut self, creds: Credentials, method: &'static str) {
        // AUTH took its slot at the start; USER/PASS takes it at PASS
        let user = match self.conn.login.verify(creds).await {
            Ok(user) => user,
            Err(refused) => {
                self.core.login_done(Err(refused.reply(reply::AUTH_THROTTLED, reply::AUTH_FAILED)));
                return;
            }
        };
        let lock = match self.mailboxes.lock_maildrop(&user) {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(server = %self.conn.vs.name, peer = %self.conn.peer, user = %user, "login refused: {e}");
                let r = if matches!(e, MailboxError::InUse(_)) { reply::IN_USE } else { reply::MAILDROP_FAILED };
                self.core.login_done(Err(r));
                return;
            }
        };
        let store = self.mailboxes.clone();
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
                    server = %self.conn.vs.name, peer = %self.conn.peer, user = %user, method, messages = entries.len(),
                    "logged in"
                );
                self.maildrop = Some(lock);
                self.core.login_done(Ok((user, entries)));
            }
            Err(e) => {
                tracing::error!(server = %self.conn.vs.name, user = %user, "cannot list the maildrop: {e}");
                self.core.login_done(Err(reply::MAILDROP_FAILED));
            }
        }
    }

    async fn on_retrieve(&mut self, uid: u32) {
        let store = self.mailboxes.clone();
        let user = self.user().to_string();
        match blocking(move || store.read(&user, INBOX, uid)).await {
            Ok(bytes) => {
                self.retrieved += 1;
                self.core.message(Ok(&bytes));
            }
            Err(MailboxError::NoSuchMessage { .. }) => self.core.message(Err(reply::MESSAGE_GONE)),
            Err(e) => {
                tracing::error!(server = %self.conn.vs.name, user = %self.user(), uid, "cannot read a message: {e}");
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
        let store = self.mailboxes.clone();
        let user = self.user().to_string();
        match blocking(move || store.expunge(&user, INBOX, &deleted)).await {
            Ok(gone) => {
                self.removed = gone.len();
                self.core.update_done(Ok(()));
            }
            Err(e) => {
                tracing::error!(server = %self.conn.vs.name, user = %self.user(), "cannot remove deleted messages: {e}");
                self.core.update_done(Err(reply::UPDATE_FAILED));
            }
        }
    }
}

impl Session for Pop3Session {
    fn greeting(&mut self, out: &mut Vec<u8>) {
        Conn::greet(&mut self.core, out);
    }

    async fn handle(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Next {
        while let Some(event) = self.core.feed(input) {
            match event {
                Event::StartTls => {
                    self.core.take_output(out);
                    return Next::StartTls;
                }
                Event::Quit | Event::TooManyErrors => break,
                Event::Login(creds) => self.log_in(creds, "USER").await,
                Event::Auth(AuthEvent::Start { .. }) => self.on_auth(),
                Event::Auth(AuthEvent::Credentials(creds)) => self.log_in(creds, "AUTH PLAIN").await,
                Event::Auth(AuthEvent::Failed(_)) => {
                    self.conn.login.failed().await;
                    self.core.login_done(Err(reply::AUTH_FAILED));
                }
                Event::Retrieve { uid, .. } => self.on_retrieve(uid).await,
                Event::Update { deleted } => self.on_update(deleted).await,
            }
        }
        self.conn.end_turn(&mut self.core, out)
    }

    fn tls_started(&mut self, info: &TlsInfo) {
        self.conn.tls_started(info);
        self.core.tls_started();
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        Conn::close(&mut self.core, &reply::IDLE_TIMEOUT, out);
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        Conn::close(&mut self.core, &reply::SHUTTING_DOWN, out);
    }

    fn finished(&mut self, end: &SessionEnd) {
        let (version, cipher) = TlsInfo::log_fields(self.conn.tls.as_ref());
        tracing::info!(
            server = %self.conn.vs.name,
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
