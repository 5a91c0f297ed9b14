//! The sans-IO SMTP server session (RFC 5321, with RFC 3207 STARTTLS, RFC
//! 4954 AUTH, RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 2920
//! PIPELINING, RFC 2034 ENHANCEDSTATUSCODES).
//!
//! [`ServerSession::feed`] takes the bytes a client sent and either answers
//! them itself (syntax, sequence, limits, everything that needs no outside
//! knowledge) or returns an [`Event`] for a decision it cannot make alone —
//! a sender, a recipient, a finished message, credentials to check. The
//! caller then answers with the matching decision method before feeding
//! again. Lines are read by the kit's skeleton (`proto::session`) and AUTH
//! runs the kit's SASL exchange (`proto::sasl`) with `334` framing. Replies
//! accumulate in an output buffer the caller drains. The session never
//! touches a socket, a clock or a disk.

use super::address::{Address, ReversePath};
use super::command::{self, Command};
use super::data::{count_received, DataEnd, DataReader};
use super::reply::{self, Reply};
use crate::proto::sasl::Framing;
use crate::proto::session::{self, AuthEvent, AuthStage, Before, Common, LineCore, Phase};
use bytes::BytesMut;

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 4954 §4: an AUTH command or SASL response line may be 12288 octets.
pub const MAX_AUTH_LINE: usize = crate::proto::session::MAX_SASL_LINE;
/// SPEC §4: more than this many Received fields is a loop.
pub const MAX_RECEIVED: usize = 50;

/// What a session is configured to offer; fixed per virtual server.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Offer STARTTLS (the listener has `tls = "starttls"`).
    pub starttls: bool,
    /// No mail commands and no credentials before TLS.
    pub require_tls: bool,
    pub auth: AuthMode,
    /// Take credentials without TLS; no effect when `require_tls`.
    pub allow_plaintext_auth: bool,
    /// After this many errors the session is closed with 421.
    pub max_errors: u32,
}

/// Whether the server takes AUTH; the service maps its configuration here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    #[default]
    Off,
    Optional,
    /// No MAIL before AUTH.
    Required,
}

/// The body encoding the client declared with `BODY=`. How the queue
/// stores it is the queue's business (`queue::message`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: BodyType,
    pub smtputf8: bool,
    /// RFC 8689 `REQUIRETLS`: only ever set over TLS (the core refuses it
    /// in plaintext).
    pub requiretls: bool,
}

session::kit_event!(Event, Reply);

/// A decision the SMTP session needs from the service.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The 220 is queued; flush it, drop buffered input, start TLS, then
    /// call [`ServerSession::tls_started`].
    StartTls,
    /// AUTH: `Start` is answered with [`ServerSession::auth_begin`],
    /// `Credentials` and `Failed` with [`ServerSession::auth_done`].
    Auth(AuthEvent),
    /// Answer with [`ServerSession::mail_decision`].
    Mail { from: ReversePath, params: MailParams },
    /// Answer with [`ServerSession::rcpt_decision`].
    Rcpt { to: Address },
    /// A complete message (CRLF, unstuffed, within limits); answer with
    /// [`ServerSession::message_decision`].
    Message { body: Vec<u8> },
    /// The client said QUIT; the 221 is queued. Close after flushing.
    Quit,
    /// The error limit was reached; the 421 is queued. Close after flushing.
    TooManyErrors,
}

/// The transaction under way: it lives in the states of a transaction
/// and goes with them, so nothing has to be reset by hand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Transaction {
    params: MailParams,
    /// Recipients accepted so far.
    recipients: usize,
}

/// What [`ServerSession::mail_params`] says outside a transaction.
const NO_PARAMS: MailParams = MailParams { size: None, body: BodyType::SevenBit, smtputf8: false, requiretls: false };

#[derive(Debug)]
enum State {
    ExpectHelo,
    ExpectMail,
    ExpectRcptOrData(Transaction),
    Data(DataReader, MailParams),
    /// A SASL exchange awaits the client's next line.
    Sasl,
    /// An event is out; nothing is read until the decision comes back.
    Waiting(Pending),
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Mail(MailParams),
    Rcpt(Transaction),
    Message(MailParams),
    /// AUTH waits to be let start (the throttle).
    AuthStart,
    /// Credentials or a failed exchange wait for their verdict.
    Auth,
}

/// The server side of one SMTP connection (RFC 5321 with the extensions of
/// its EHLO reply).
#[derive(Debug)]
pub struct ServerSession {
    settings: Settings,
    state: State,
    kit: Common<Event>,
    helo: Option<String>,
    esmtp: bool,
    auth_user: Option<String>,
    transactions: u32,
    /// Refusals the core made by itself since the service last asked
    /// ([`ServerSession::take_refusals`]): the service counts them.
    refusals: Vec<Refusal>,
}

/// A refusal the core answers without asking the service: a message at the
/// end of DATA (too big, too many `Received:` hops), or a MAIL by policy
/// (a declared SIZE over the limit, AUTH required first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Message(u16),
    Mail(u16),
}

fn verb_is(line: &[u8], verb: &str) -> bool {
    line.len() >= verb.len()
        && line[..verb.len()].eq_ignore_ascii_case(verb.as_bytes())
        && (line.len() == verb.len() || line[verb.len()] == b' ')
}

impl ServerSession {
    /// A new session; `tls` is true on implicit-TLS listeners.
    pub fn new(settings: Settings, tls: bool) -> ServerSession {
        ServerSession {
            settings,
            state: State::ExpectHelo,
            kit: Common { tls, ..Common::default() },
            helo: None,
            esmtp: false,
            auth_user: None,
            transactions: 0,
            refusals: Vec::new(),
        }
    }

    /// The refusals made by the core itself since the last call.
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.refusals)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }
    pub fn esmtp(&self) -> bool {
        self.esmtp
    }
    pub fn tls_active(&self) -> bool {
        self.kit.tls
    }
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }
    /// What MAIL declared in the transaction under way.
    pub fn mail_params(&self) -> &MailParams {
        match &self.state {
            State::ExpectRcptOrData(t) | State::Waiting(Pending::Rcpt(t)) => &t.params,
            State::Data(_, params) | State::Waiting(Pending::Mail(params) | Pending::Message(params)) => params,
            _ => &NO_PARAMS,
        }
    }
    /// Messages accepted so far in this session.
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    /// Whether AUTH is usable on this connection right now: configured, and
    /// TLS is up or plaintext credentials are allowed — never before TLS on
    /// a `require_tls` server, whatever `allow_plaintext_auth` says (SPEC
    /// §13.8). The one decision behind both the EHLO keyword and the AUTH
    /// command's `538 5.7.11`, so the two cannot disagree.
    pub fn auth_offered(&self) -> bool {
        let plaintext_ok = self.settings.allow_plaintext_auth && !self.settings.require_tls;
        self.settings.auth != AuthMode::Off && (self.kit.tls || plaintext_ok)
    }

    /// Write a reply, counting errors; at the limit, the 421 and close.
    fn reply(&mut self, r: &Reply) {
        r.write(&mut self.kit.out);
        if r.code >= 500 {
            self.kit.errors += 1;
        }
    }

    fn reset_transaction(&mut self) {
        if matches!(self.state, State::ExpectRcptOrData(_)) {
            self.state = State::ExpectMail;
        }
    }

    /// Process input until an event needs a decision or more input is needed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Option<Event> {
        session::feed(self, input)
    }

    /// What DATA does with the input: the body, then back to commands.
    fn data(&mut self, input: &mut BytesMut) -> Before<Event> {
        let State::Data(reader, _) = &mut self.state else { return Before::ReadLine };
        let Some(end) = reader.feed(input) else { return Before::Return(None) };
        let refusal = match end {
            DataEnd::TooBig { .. } => reply::SIZE_EXCEEDED,
            DataEnd::Complete(body) if count_received(&body) <= MAX_RECEIVED => {
                let params = self.mail_params().clone();
                self.state = State::Waiting(Pending::Message(params));
                return Before::Return(Some(Event::Message { body }));
            }
            DataEnd::Complete(_) => reply::TOO_MANY_HOPS,
        };
        self.state = State::ExpectMail;
        self.refusals.push(Refusal::Message(refusal.code));
        self.reply(&refusal);
        Before::Again
    }

    fn after_auth_state(&self) -> State {
        if self.helo.is_some() {
            State::ExpectMail
        } else {
            State::ExpectHelo
        }
    }

    fn command(&mut self, line: &[u8]) -> Option<Event> {
        let text = String::from_utf8_lossy(line);
        let command = match command::parse(&text) {
            Ok(c) => c,
            Err(r) => {
                self.reply(&r);
                return None;
            }
        };
        if command::requires_tls(&command) && self.settings.require_tls && !self.kit.tls {
            self.reply(&reply::TLS_REQUIRED);
            return None;
        }
        match command {
            Command::Ehlo(name) | Command::Helo(name) => {
                self.helo = Some(name.to_string());
                self.esmtp = matches!(command, Command::Ehlo(_));
                // RFC 5321 §4.1.4: EHLO resets any transaction
                self.state = State::ExpectMail;
                if self.esmtp {
                    self.write_ehlo();
                } else {
                    Reply::owned(250, "", self.settings.hostname.clone()).write(&mut self.kit.out);
                }
            }
            Command::Noop => reply::OK.write(&mut self.kit.out),
            Command::Rset => {
                self.reset_transaction();
                reply::OK.write(&mut self.kit.out);
            }
            Command::Quit => {
                reply::BYE.write(&mut self.kit.out);
                self.state = State::Closed;
                return Some(Event::Quit);
            }
            Command::Help => reply::HELP.write(&mut self.kit.out),
            Command::Vrfy => reply::VRFY_CANNOT.write(&mut self.kit.out),
            Command::Expn => self.reply(&reply::EXPN_DISABLED),
            Command::Bdat => self.reply(&reply::NOT_IMPLEMENTED),
            Command::StartTls { args } => return self.starttls(args),
            Command::Auth(arg) => return self.auth_command(arg),
            Command::Mail(arg) => return self.mail(arg),
            Command::Rcpt(arg) => return self.rcpt(arg),
            Command::Data { args } => self.data_command(args),
        }
        None
    }

    fn starttls(&mut self, args: bool) -> Option<Event> {
        let refusal = if self.kit.tls {
            reply::ALREADY_TLS
        } else if !self.settings.starttls {
            reply::NOT_IMPLEMENTED
        } else if args {
            reply::SYNTAX_PARAMS
        } else if self.helo.is_none() {
            reply::HELO_FIRST
        } else {
            reply::READY_TLS.write(&mut self.kit.out);
            return Some(Event::StartTls);
        };
        self.reply(&refusal);
        None
    }

    fn mail(&mut self, arg: &str) -> Option<Event> {
        let refusal = match self.state {
            State::ExpectHelo => Some(reply::HELO_FIRST),
            State::ExpectRcptOrData(_) => Some(reply::NESTED_MAIL),
            _ if self.settings.auth == AuthMode::Required && self.auth_user.is_none() => {
                self.refusals.push(Refusal::Mail(reply::AUTH_REQUIRED.code));
                Some(reply::AUTH_REQUIRED)
            }
            _ => None,
        };
        let parsed = match refusal {
            Some(r) => Err(r),
            None => command::mail_from(arg, self.settings.auth != AuthMode::Off),
        };
        let (from, params) = match parsed {
            // RFC 8689 §4.1: REQUIRETLS is offered only over TLS; asked in
            // plaintext it is refused, never silently dropped
            Ok((_, params)) if params.requiretls && !self.kit.tls => {
                self.reply(&reply::REQUIRETLS_NEEDS_TLS);
                return None;
            }
            Ok((_, params)) if params.size.is_some_and(|s| s > self.settings.max_message_size as u64) => {
                self.refusals.push(Refusal::Mail(reply::SIZE_EXCEEDED.code));
                self.reply(&reply::SIZE_EXCEEDED);
                return None;
            }
            Ok(p) => p,
            Err(r) => {
                self.reply(&r);
                return None;
            }
        };
        self.state = State::Waiting(Pending::Mail(params.clone()));
        Some(Event::Mail { from, params })
    }

    fn rcpt(&mut self, arg: &str) -> Option<Event> {
        let to = match &self.state {
            State::ExpectRcptOrData(t) => command::rcpt_to(arg, t.params.smtputf8),
            State::ExpectHelo => Err(reply::HELO_FIRST),
            _ => Err(reply::MAIL_FIRST),
        };
        let to = match to {
            Ok(to) => to,
            Err(r) => {
                self.reply(&r);
                return None;
            }
        };
        let State::ExpectRcptOrData(txn) = &mut self.state else { return None };
        if txn.recipients >= self.settings.max_recipients {
            reply::TOO_MANY_RECIPIENTS.write(&mut self.kit.out);
            return None;
        }
        let txn = std::mem::take(txn);
        self.state = State::Waiting(Pending::Rcpt(txn));
        Some(Event::Rcpt { to })
    }

    fn data_command(&mut self, args: bool) {
        match &self.state {
            State::ExpectRcptOrData(t) if t.recipients > 0 => {
                if args {
                    self.reply(&reply::SYNTAX_PARAMS);
                    return;
                }
                let params = t.params.clone();
                reply::START_DATA.write(&mut self.kit.out);
                self.state = State::Data(DataReader::new(self.settings.max_message_size), params);
            }
            State::ExpectRcptOrData(_) => self.reply(&reply::NO_VALID_RECIPIENTS),
            State::ExpectHelo => self.reply(&reply::HELO_FIRST),
            _ => self.reply(&reply::MAIL_FIRST),
        }
    }

    fn write_ehlo(&mut self) {
        let mut lines = vec![
            self.settings.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.settings.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
        ];
        if self.settings.starttls && !self.kit.tls {
            lines.push("STARTTLS".into());
        }
        if self.kit.tls {
            // RFC 8689 §3: only once TLS is active
            lines.push("REQUIRETLS".into());
        }
        if self.auth_offered() && self.auth_user.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Reply::owned(250, "", lines.join("\n")).write(&mut self.kit.out);
    }

    fn auth_command(&mut self, arg: &str) -> Option<Event> {
        if self.settings.auth == AuthMode::Off {
            self.reply(&reply::NOT_IMPLEMENTED);
            return None;
        }
        if !self.auth_offered() {
            self.reply(&reply::AUTH_NEEDS_TLS);
            return None;
        }
        match self.state {
            State::ExpectHelo => {
                self.reply(&reply::HELO_FIRST);
                return None;
            }
            State::ExpectRcptOrData(_) => {
                self.reply(&reply::AUTH_IN_TRANSACTION);
                return None;
            }
            _ => {}
        }
        if self.auth_user.is_some() {
            self.reply(&reply::ALREADY_AUTH);
            return None;
        }
        let (mechanism, initial) = match command::auth_args(arg) {
            Ok(args) => args,
            Err(r) => {
                self.reply(&r);
                return None;
            }
        };
        self.state = State::Waiting(Pending::AuthStart);
        Some(Event::Auth(self.kit.auth.request(mechanism, initial)))
    }

    fn expect_decision(&mut self, p: Pending) -> bool {
        matches!(&self.state, State::Waiting(w) if *w == p)
    }

    /// Answer [`Event::Mail`]: `Ok(())` accepts the sender.
    pub fn mail_decision(&mut self, decision: Result<(), Reply>) {
        let State::Waiting(Pending::Mail(params)) = &mut self.state else { return };
        match decision {
            Ok(()) => {
                reply::SENDER_OK.write(&mut self.kit.out);
                let params = std::mem::take(params);
                self.state = State::ExpectRcptOrData(Transaction { params, recipients: 0 });
            }
            Err(r) => {
                self.state = State::ExpectMail;
                self.reply(&r);
            }
        }
    }

    /// Answer [`Event::Rcpt`]: `Ok(())` accepts the recipient.
    pub fn rcpt_decision(&mut self, decision: Result<(), Reply>) {
        let State::Waiting(Pending::Rcpt(txn)) = &mut self.state else { return };
        let mut txn = std::mem::take(txn);
        match decision {
            Ok(()) => {
                txn.recipients += 1;
                reply::RCPT_OK.write(&mut self.kit.out);
            }
            Err(r) => self.reply(&r),
        }
        self.state = State::ExpectRcptOrData(txn);
    }

    /// Answer [`Event::Message`] with the final reply (250 queued, or 4xx/5xx).
    pub fn message_decision(&mut self, r: Reply) {
        if !matches!(self.state, State::Waiting(Pending::Message(_))) {
            return;
        }
        if r.is_positive() {
            self.transactions += 1;
        }
        self.state = State::ExpectMail;
        self.reply(&r);
    }

    /// Answer [`Event::Auth`]: `Ok(())` starts the exchange (the slot is
    /// taken), `Err(reply)` refuses it (throttled).
    pub fn auth_begin(&mut self, slot: Result<(), Reply>) {
        if self.expect_decision(Pending::AuthStart) {
            session::auth_begin(self, slot);
        }
    }

    /// Finish an AUTH exchange: `Ok(user)` is 235, `Err(reply)` the failure.
    pub fn auth_done(&mut self, result: Result<String, Reply>) {
        if !self.expect_decision(Pending::Auth) {
            return;
        }
        self.state = self.after_auth_state();
        match result {
            Ok(user) => {
                self.auth_user = Some(user);
                reply::AUTH_OK.write(&mut self.kit.out);
            }
            Err(r) => self.reply(&r),
        }
    }

    /// TLS is up after STARTTLS: RFC 3207 §4.2, forget everything learnt
    /// before the handshake; the client must EHLO again.
    pub fn tls_started(&mut self) {
        self.kit.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.auth_user = None;
        self.kit.lines.reset();
        self.kit.auth.reset();
        self.state = State::ExpectHelo;
    }

    /// Queue a reply the driver decided on (timeouts, shutdown) and close.
    pub fn close_with(&mut self, r: &Reply) {
        r.write(&mut self.kit.out);
        self.state = State::Closed;
    }
}

impl LineCore for ServerSession {
    type Event = Event;
    const MAX_COMMAND: usize = MAX_COMMAND_LINE;
    const FRAMING: Framing = Framing::Smtp;

    fn greeting(&mut self) {
        let text = format!("{} ESMTP", self.settings.hostname);
        Reply::owned(220, "", text).write(&mut self.kit.out);
    }
    fn phase(&self) -> Phase {
        Phase::of(matches!(self.state, State::Closed), matches!(self.state, State::Waiting(_)))
    }
    fn auth_in_progress(&self) -> bool {
        matches!(self.state, State::Sasl | State::Waiting(Pending::Auth | Pending::AuthStart))
    }
    fn before_line(&mut self, input: &mut BytesMut) -> Before<Event> {
        self.data(input)
    }
    fn common(&mut self) -> &mut Common<Event> {
        &mut self.kit
    }
    fn over_error_limit(&self) -> bool {
        self.kit.errors >= self.settings.max_errors
    }
    fn close(&mut self, r: &Reply) {
        self.close_with(r);
    }
    fn line_too_long(&mut self) {
        self.reply(&reply::LINE_TOO_LONG);
    }
    fn long_allowed(line: &[u8]) -> bool {
        verb_is(line, "AUTH")
    }
    fn command(&mut self, line: &[u8]) -> Option<Event> {
        ServerSession::command(self, line)
    }
    fn auth_stage(&mut self, stage: AuthStage<'_, Reply>) {
        self.state = match stage {
            AuthStage::Exchange => State::Sasl,
            AuthStage::Verdict => State::Waiting(Pending::Auth),
            AuthStage::Over(r) => {
                self.reply(r);
                self.after_auth_state()
            }
        };
    }
}

#[doc(hidden)]
pub mod fuzz;

#[cfg(test)]
mod tests;
