//! The sans-IO POP3 server session: RFC 1939 (USER/PASS, STAT, LIST, RETR,
//! DELE, NOOP, RSET, TOP, UIDL, QUIT), RFC 2449 CAPA and response codes,
//! RFC 2595 STLS, RFC 5034 AUTH PLAIN, RFC 3206 `[AUTH]`/`[SYS/TEMP]`.
//!
//! [`ServerSession::feed`] answers everything it can from what it holds —
//! syntax, state, limits, and in the TRANSACTION state the maildrop listing
//! it was given at login (STAT, LIST, UIDL, DELE, RSET) — and returns an
//! [`Event`] for anything that needs the outside world: credentials to
//! check, a message to fetch, deletions to carry out at QUIT. The caller
//! answers with the matching decision method before feeding again.
//! Lines are read by the kit's skeleton (`proto::session`) and AUTH runs
//! the kit's SASL exchange (`proto::sasl`) with `+ ` framing.
//! Deletions are only marks until QUIT (RFC 1939 §6): a session that ends
//! any other way never asks for them. The core never touches a socket, a
//! clock or a disk.

use super::reply::{self, Reply};
use crate::proto::dot::write_multiline;
use crate::proto::sasl::{Credentials, Framing, Mechanism};
use crate::proto::session::{self, AuthEvent, AuthStage, Before, Common, LineCore, Phase};
use bytes::BytesMut;

/// RFC 2449 §4: a command line is at most 255 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 255;
/// AUTH lines and SASL responses (RFC 5034 §4 lifts the 255-octet limit
/// for them), and PASS lines (long passwords): the same bound as SMTP AUTH.
pub const MAX_AUTH_LINE: usize = crate::proto::session::MAX_SASL_LINE;
/// Feeding pauses while this much output waits to be taken (SPEC §12.7: a
/// client pipelining a thousand RETRs must not make one buffer of them).
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// What a session is configured to offer; fixed per virtual server.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hostname: String,
    /// Offer STLS (the listener has `tls = "starttls"`).
    pub stls: bool,
    /// SPEC §9: no credentials at all before TLS.
    pub require_tls: bool,
    /// Accept credentials over plaintext (when TLS is not required).
    pub allow_plaintext_auth: bool,
    /// After this many `-ERR`s the session is closed.
    pub max_errors: u32,
}

/// One message of the maildrop, as the session lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The store's UID, passed back in [`Event::Retrieve`] and [`Event::Update`].
    pub uid: u32,
    pub size: u64,
    /// The UIDL unique-id (RFC 1939 §7: 1 to 70 characters 0x21..0x7E).
    pub unique_id: String,
}

session::kit_event!(Event, Reply);

/// A decision the POP3 session needs from the service.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// `+OK Begin TLS negotiation` is queued; flush it, drop buffered input,
    /// start TLS, then call [`ServerSession::tls_started`].
    StartTls,
    /// USER/PASS: check them, take the maildrop, and answer with
    /// [`ServerSession::login_done`].
    Login(Credentials),
    /// AUTH: `Start` is answered with [`ServerSession::auth_begin`];
    /// `Credentials` as [`Event::Login`] is; `Failed` (it counts as a
    /// failure) with [`ServerSession::login_done`].
    Auth(AuthEvent),
    /// RETR, or TOP with `top` body lines: answer with [`ServerSession::message`].
    Retrieve { uid: u32, top: Option<u64> },
    /// QUIT in the TRANSACTION state: remove these UIDs (maybe none), then
    /// answer with [`ServerSession::update_done`]; close after flushing.
    Update { deleted: Vec<u32> },
    /// QUIT before login; `+OK` is queued. Close after flushing.
    Quit,
    /// The error limit was reached; the `-ERR` is queued. Close after flushing.
    TooManyErrors,
}

#[derive(Debug)]
enum State {
    /// RFC 1939 §4, with the name from USER once given.
    Authorization {
        user: Option<String>,
    },
    /// Waiting for the client's line in a SASL exchange.
    Sasl,
    /// An event is out; nothing is read until the decision comes back.
    Waiting(Pending),
    Transaction,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// AUTH waits to be let start (the throttle).
    AuthStart,
    Login,
    /// RETR, or TOP with this many body lines.
    Message {
        top: Option<u64>,
    },
    Update,
}

/// The server side of one POP3 connection (RFC 1939, RFC 2449, RFC 5034).
#[derive(Debug)]
pub struct ServerSession {
    settings: Settings,
    state: State,
    kit: Common<Event>,
    user: Option<String>,
    maildrop: Vec<Entry>,
    deleted: Vec<bool>,
}

impl LineCore for ServerSession {
    type Event = Event;
    const MAX_COMMAND: usize = MAX_COMMAND_LINE;
    const FRAMING: Framing = Framing::Continuation;

    fn greeting(&mut self) {
        Reply::ok_owned(format!("{} POP3 server ready", self.settings.hostname)).write(&mut self.kit.out);
    }
    fn phase(&self) -> Phase {
        Phase::of(matches!(self.state, State::Closed), matches!(self.state, State::Waiting(_)))
    }
    fn auth_in_progress(&self) -> bool {
        matches!(self.state, State::Sasl | State::Waiting(Pending::Login | Pending::AuthStart))
    }
    fn output_full(&self) -> bool {
        self.kit.out.len() >= OUTPUT_HIGH_WATER
    }
    fn before_line(&mut self, _input: &mut BytesMut) -> Before<Event> {
        // SPEC §12.7: pause while the output waits to be taken
        if self.output_full() {
            return Before::Return(None);
        }
        Before::ReadLine
    }
    fn auth_stage(&mut self, stage: AuthStage<'_, Reply>) {
        match stage {
            AuthStage::Exchange => self.state = State::Sasl,
            AuthStage::Verdict => self.state = State::Waiting(Pending::Login),
            AuthStage::Over(r) => self.not_logged_in(r),
        }
    }
    /// AUTH and PASS may be longer than an ordinary command line.
    fn long_allowed(line: &[u8]) -> bool {
        let verb = line.split(|&b| b == b' ').next().unwrap_or_default();
        verb.eq_ignore_ascii_case(b"AUTH") || verb.eq_ignore_ascii_case(b"PASS")
    }
    fn command(&mut self, line: &[u8]) -> Option<Event> {
        ServerSession::command(self, line)
    }
    fn line_too_long(&mut self) {
        self.reply(&reply::LINE_TOO_LONG);
    }
    fn close(&mut self, r: &Reply) {
        self.close_with(r);
    }
    fn over_error_limit(&self) -> bool {
        self.kit.errors >= self.settings.max_errors
    }
    fn common(&mut self) -> &mut Common<Event> {
        &mut self.kit
    }
}

impl ServerSession {
    /// A new session; `tls` is true on implicit-TLS listeners.
    pub fn new(settings: Settings, tls: bool) -> ServerSession {
        ServerSession {
            settings,
            state: State::Authorization { user: None },
            kit: Common { tls, ..Common::default() },
            user: None,
            maildrop: Vec::new(),
            deleted: Vec::new(),
        }
    }

    pub fn tls_active(&self) -> bool {
        self.kit.tls
    }
    /// The logged-in user.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    /// Messages marked for deletion right now.
    pub fn marked(&self) -> usize {
        self.deleted.iter().filter(|d| **d).count()
    }

    /// Whether credentials may be sent now (SPEC §9, §12.8).
    pub fn credentials_allowed(&self) -> bool {
        self.kit.tls || (self.settings.allow_plaintext_auth && !self.settings.require_tls)
    }

    fn reply(&mut self, r: &Reply) {
        r.write(&mut self.kit.out);
        if !r.ok {
            self.kit.errors += 1;
        }
    }

    /// Process input until an event needs a decision or more input is needed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Option<Event> {
        session::feed(self, input)
    }

    fn command(&mut self, line: &[u8]) -> Option<Event> {
        let text = String::from_utf8_lossy(line);
        let (verb, arg) = match text.find(' ') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (&text[..], ""),
        };
        let verb = verb.to_ascii_uppercase();
        let args: Vec<&str> = arg.split(' ').filter(|s| !s.is_empty()).collect();
        let authorization = matches!(self.state, State::Authorization { .. });
        match verb.as_str() {
            "CAPA" => {
                self.write_capabilities();
                None
            }
            "QUIT" if authorization => {
                reply::BYE.write(&mut self.kit.out);
                self.state = State::Closed;
                Some(Event::Quit)
            }
            "QUIT" => {
                let deleted = (0..self.maildrop.len()).filter(|&i| self.deleted[i]).map(|i| self.maildrop[i].uid);
                let deleted = deleted.collect();
                self.state = State::Waiting(Pending::Update);
                Some(Event::Update { deleted })
            }
            "USER" | "PASS" | "AUTH" | "STLS" | "APOP" if !authorization => {
                self.reply(&reply::NOT_IN_STATE);
                None
            }
            "STLS" => {
                if self.kit.tls {
                    self.reply(&reply::ALREADY_TLS);
                } else if !self.settings.stls {
                    self.reply(&reply::NO_STLS);
                } else if !args.is_empty() {
                    self.reply(&reply::SYNTAX);
                } else {
                    reply::BEGIN_TLS.write(&mut self.kit.out);
                    return Some(Event::StartTls);
                }
                None
            }
            "USER" => {
                if let Some(refusal) = self.credentials_refusal() {
                    self.reply(&refusal);
                } else if args.len() != 1 {
                    self.reply(&reply::SYNTAX);
                } else {
                    self.state = State::Authorization { user: Some(args[0].to_string()) };
                    reply::USER_OK.write(&mut self.kit.out);
                }
                None
            }
            "PASS" => {
                if let Some(refusal) = self.credentials_refusal() {
                    self.reply(&refusal);
                    return None;
                }
                let State::Authorization { user: Some(user) } =
                    std::mem::replace(&mut self.state, State::Authorization { user: None })
                else {
                    self.reply(&reply::USER_FIRST);
                    return None;
                };
                // RFC 1939 §7: the password is the rest of the line, spaces and all
                self.state = State::Waiting(Pending::Login);
                Some(Event::Login(Credentials { username: user, password: arg.to_string() }))
            }
            "AUTH" => self.auth_command(&args),
            "APOP" => {
                self.reply(&reply::APOP_UNSUPPORTED);
                None
            }
            _ if authorization => {
                let known =
                    matches!(verb.as_str(), "STAT" | "LIST" | "RETR" | "DELE" | "NOOP" | "RSET" | "TOP" | "UIDL");
                let r = if known { reply::NOT_IN_STATE } else { reply::UNKNOWN_COMMAND };
                self.reply(&r);
                None
            }
            _ => self.transaction(&verb, &args),
        }
    }

    /// Why credentials cannot be taken now, if they cannot.
    fn credentials_refusal(&self) -> Option<Reply> {
        if self.credentials_allowed() {
            None
        } else if self.settings.require_tls {
            Some(reply::TLS_REQUIRED)
        } else {
            Some(reply::PLAINTEXT_DISABLED)
        }
    }

    fn auth_command(&mut self, args: &[&str]) -> Option<Event> {
        if args.is_empty() {
            // the RFC 1734 listing some clients still ask for
            reply::MECHANISMS.write(&mut self.kit.out);
            if self.credentials_allowed() {
                self.kit.out.extend_from_slice(b"PLAIN\r\n");
            }
            self.kit.out.extend_from_slice(b".\r\n");
            return None;
        }
        if let Some(refusal) = self.credentials_refusal() {
            self.reply(&refusal);
            return None;
        }
        if args.len() > 2 {
            self.reply(&reply::SYNTAX);
            return None;
        }
        let Some(mechanism @ Mechanism::Plain) = Mechanism::parse(args[0]) else {
            self.reply(&reply::UNKNOWN_MECHANISM);
            return None;
        };
        self.state = State::Waiting(Pending::AuthStart);
        Some(Event::Auth(self.kit.auth.request(mechanism, args.get(1).copied())))
    }

    fn write_capabilities(&mut self) {
        reply::CAPABILITIES.write(&mut self.kit.out);
        let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if matches!(self.state, State::Authorization { .. }) {
            // SPEC §9: never advertise a way to send credentials that would be refused
            if self.credentials_allowed() {
                caps.extend(["USER", "SASL PLAIN"]);
            }
            if self.settings.stls && !self.kit.tls {
                caps.push("STLS");
            }
        }
        for c in caps {
            self.kit.out.extend_from_slice(c.as_bytes());
            self.kit.out.extend_from_slice(b"\r\n");
        }
        self.kit.out.extend_from_slice(b".\r\n");
    }

    /// The index of a message number argument that names a live message.
    fn message_index(&mut self, arg: &str) -> Option<usize> {
        if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
            self.reply(&reply::SYNTAX);
            return None;
        }
        let i = match arg.parse::<usize>() {
            Ok(n) if (1..=self.maildrop.len()).contains(&n) => n - 1,
            _ => {
                self.reply(&reply::NO_SUCH_MESSAGE);
                return None;
            }
        };
        if self.deleted[i] {
            self.reply(&reply::ALREADY_DELETED);
            return None;
        }
        Some(i)
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.maildrop.iter().enumerate().filter(|(i, _)| !self.deleted[*i])
    }

    fn totals(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(n, s), (_, e)| (n + 1, s + e.size))
    }

    fn transaction(&mut self, verb: &str, args: &[&str]) -> Option<Event> {
        let arity_ok = match verb {
            "STAT" | "NOOP" | "RSET" => args.is_empty(),
            "LIST" | "UIDL" => args.len() <= 1,
            "RETR" | "DELE" => args.len() == 1,
            "TOP" => args.len() == 2,
            _ => {
                self.reply(&reply::UNKNOWN_COMMAND);
                return None;
            }
        };
        if !arity_ok {
            self.reply(&reply::SYNTAX);
            return None;
        }
        match verb {
            "STAT" => {
                let (n, size) = self.totals();
                Reply::ok_owned(format!("{n} {size}")).write(&mut self.kit.out);
            }
            "NOOP" => reply::OK.write(&mut self.kit.out),
            "RSET" => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let (n, size) = self.totals();
                Reply::ok_owned(format!("Maildrop has {n} messages ({size} octets)")).write(&mut self.kit.out);
            }
            "LIST" | "UIDL" => {
                let uidl = verb == "UIDL";
                let show = |i: usize, e: &Entry| match uidl {
                    true => format!("{} {}", i + 1, e.unique_id),
                    false => format!("{} {}", i + 1, e.size),
                };
                if let Some(arg) = args.first() {
                    let i = self.message_index(arg)?;
                    Reply::ok_owned(show(i, &self.maildrop[i])).write(&mut self.kit.out);
                } else {
                    let (n, size) = self.totals();
                    let head = if uidl {
                        reply::UIDL_FOLLOWS
                    } else {
                        Reply::ok_owned(format!("{n} messages ({size} octets)"))
                    };
                    head.write(&mut self.kit.out);
                    let lines: Vec<String> = self.live().map(|(i, e)| show(i, e)).collect();
                    for l in lines {
                        self.kit.out.extend_from_slice(l.as_bytes());
                        self.kit.out.extend_from_slice(b"\r\n");
                    }
                    self.kit.out.extend_from_slice(b".\r\n");
                }
            }
            "DELE" => {
                let i = self.message_index(args[0])?;
                self.deleted[i] = true;
                reply::MESSAGE_DELETED.write(&mut self.kit.out);
            }
            "RETR" | "TOP" => {
                let top = match args.get(1) {
                    None => None,
                    Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                        Some(n.parse::<u64>().unwrap_or(u64::MAX))
                    }
                    Some(_) => {
                        self.reply(&reply::SYNTAX);
                        return None;
                    }
                };
                let i = self.message_index(args[0])?;
                self.state = State::Waiting(Pending::Message { top });
                return Some(Event::Retrieve { uid: self.maildrop[i].uid, top });
            }
            _ => self.reply(&reply::UNKNOWN_COMMAND),
        }
        None
    }

    fn expect_decision(&self, p: Pending) -> bool {
        matches!(self.state, State::Waiting(w) if w == p)
    }

    /// Answer [`Event::Auth`]: `Ok(())` starts the exchange (the slot is
    /// taken), `Err(reply)` refuses it (throttled).
    pub fn auth_begin(&mut self, slot: Result<(), Reply>) {
        if self.expect_decision(Pending::AuthStart) {
            session::auth_begin(self, slot);
        }
    }

    /// Back to AUTHORIZATION with the reply that says why.
    fn not_logged_in(&mut self, r: &Reply) {
        self.state = State::Authorization { user: None };
        self.reply(r);
    }

    /// Finish [`Event::Login`] or an AUTH exchange: `Ok((user, maildrop))`
    /// enters the TRANSACTION state; `Err(reply)` stays in AUTHORIZATION.
    pub fn login_done(&mut self, result: Result<(String, Vec<Entry>), Reply>) {
        if !self.expect_decision(Pending::Login) {
            return;
        }
        match result {
            Ok((user, maildrop)) => {
                self.deleted = vec![false; maildrop.len()];
                self.maildrop = maildrop;
                self.user = Some(user);
                self.state = State::Transaction;
                let (n, size) = self.totals();
                Reply::ok_owned(format!("Logged in, {n} messages ({size} octets)")).write(&mut self.kit.out);
            }
            Err(r) => self.not_logged_in(&r),
        }
    }

    /// Answer [`Event::Retrieve`] with the message as stored, or a failure.
    pub fn message(&mut self, result: Result<&[u8], Reply>) {
        let State::Waiting(Pending::Message { top }) = self.state else {
            return;
        };
        self.state = State::Transaction;
        match (result, top) {
            (Ok(bytes), Some(n)) => {
                reply::TOP_FOLLOWS.write(&mut self.kit.out);
                write_multiline(bytes, Some(n), &mut self.kit.out);
            }
            (Ok(bytes), None) => {
                // RFC 1939 §7: the size is of the message as stored (CRLF lines)
                Reply::ok_owned(format!("{} octets", bytes.len())).write(&mut self.kit.out);
                write_multiline(bytes, None, &mut self.kit.out);
            }
            (Err(r), _) => self.reply(&r),
        }
    }

    /// Answer [`Event::Update`]: `Ok(())` once the deletions are done.
    pub fn update_done(&mut self, result: Result<(), Reply>) {
        if !self.expect_decision(Pending::Update) {
            return;
        }
        match result {
            Ok(()) => {
                let (n, _) = self.totals();
                Reply::ok_owned(format!("Bye, {n} messages left")).write(&mut self.kit.out);
            }
            Err(r) => self.reply(&r),
        }
        self.state = State::Closed;
    }

    /// TLS is up after STLS (or at connect): RFC 2595 §4, anything learnt
    /// before the handshake is forgotten.
    pub fn tls_started(&mut self) {
        self.kit.tls = true;
        self.kit.lines.reset();
        self.kit.auth.reset();
        if matches!(self.state, State::Authorization { .. } | State::Sasl) {
            self.state = State::Authorization { user: None };
        }
    }

    /// Queue a reply the driver decided on (timeouts, shutdown) and close.
    /// No deletions happen: only QUIT enters the UPDATE state.
    pub fn close_with(&mut self, r: &Reply) {
        r.write(&mut self.kit.out);
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests;
