//! The sans-IO SMTP client session (RFC 5321), with RFC 3207 STARTTLS,
//! RFC 4954 AUTH (PLAIN, LOGIN), RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531
//! SMTPUTF8, RFC 2920 PIPELINING and RFC 2034/3463 enhanced status codes.
//!
//! [`ClientSession`] owns the client's half of the conversation: it writes
//! commands into an output buffer, reads the server's replies from the
//! bytes it is fed, and reports what happened as an [`Event`] — the server
//! is ready, TLS may start, a transaction ended with one result per
//! recipient. The caller (`delivery::smtp`) decides policy (STARTTLS or
//! not, which host, when to give up) and moves the bytes; the session never
//! touches a socket, a clock or a disk, and never panics on what a server
//! sends: a malformed reply is a [`ClientError`].

use super::server::BodyType;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::fmt;

mod reply;

pub use reply::{clean_text, ClientError, Extensions, ReplyReader, ServerReply, MAX_REPLY_LINE, MAX_REPLY_LINES};

/// The SASL mechanisms the client speaks (RFC 4616 PLAIN; LOGIN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Login,
}

impl AuthMechanism {
    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
        }
    }
}

impl Extensions {
    pub fn offers_auth(&self, mechanism: AuthMechanism) -> bool {
        self.auth.iter().any(|m| m == mechanism.name())
    }
}

/// A password that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The step a rejection came from, outside a mail transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Greeting,
    /// EHLO, and HELO after EHLO was refused with 5xx.
    Helo,
    StartTls,
    Auth,
    Rset,
}

/// Where in a transaction a recipient's result came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStage {
    Mail,
    Rcpt,
    Data,
}

/// How one recipient fared in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptResult {
    pub stage: TxStage,
    /// The server's reply code; `None` when the client decided alone (no
    /// SMTPUTF8 at the server, the connection was lost).
    pub code: Option<u16>,
    pub enhanced: Option<String>,
    pub text: String,
}

impl RcptResult {
    fn from_reply(stage: TxStage, r: &ServerReply) -> RcptResult {
        RcptResult { stage, code: Some(r.code), enhanced: r.enhanced.clone(), text: r.text() }
    }

    /// Accepted by the server (2xx after the final dot).
    pub fn is_success(&self) -> bool {
        matches!(self.code, Some(200..=299))
    }

    /// Will not succeed later either: a 5xx, or a local permanent reason.
    pub fn is_permanent(&self) -> bool {
        match self.code {
            Some(c) => c >= 500,
            None => self.enhanced.as_deref().is_some_and(|e| e.starts_with('5')),
        }
    }
}

/// The end of one mail transaction: one result per recipient, in the order
/// they were given to [`ClientSession::send_mail`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionResult {
    pub recipients: Vec<RcptResult>,
}

/// One message to send: the envelope and the stored body (CRLF line ends).
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    /// The reverse-path without brackets; empty for `<>`.
    pub sender: &'a str,
    pub recipients: &'a [&'a str],
    pub body: &'a [u8],
    pub body_type: BodyType,
    /// The message was received with SMTPUTF8.
    pub smtputf8: bool,
    /// RFC 8689: send `REQUIRETLS` on MAIL (when the server offers it; the
    /// caller has checked that it does before sending such a message).
    pub requiretls: bool,
}

/// What the session reports after consuming a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// EHLO (or HELO) was accepted: [`ClientSession::extensions`] says what
    /// the server offers. Also after the EHLO that follows TLS.
    Ready,
    /// The server said 220 to STARTTLS: discard any buffered input, run the
    /// handshake, then call [`ClientSession::tls_started`].
    StartTls,
    /// AUTH succeeded (235).
    Authenticated,
    /// RSET was accepted.
    Reset,
    /// A mail transaction ended.
    Transaction(TransactionResult),
    /// The server refused a step outside a transaction (its banner, EHLO
    /// and HELO, STARTTLS, AUTH, RSET). The session can still QUIT.
    Rejected { step: Step, reply: ServerReply },
    /// The server answered QUIT (or anything after it); close the connection.
    Closed,
}

/// What the session is waiting for, so the caller can pick a timeout
/// (RFC 5321 §4.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Nothing,
    Greeting,
    /// A command's reply (EHLO, STARTTLS, AUTH, MAIL, RCPT, RSET, QUIT).
    Command,
    /// The reply to DATA (354).
    DataStart,
    /// The reply after the final dot.
    DataEnd,
}

#[derive(Debug)]
enum AuthStep {
    /// AUTH PLAIN with the initial response sent.
    Plain,
    /// `*` was sent to cancel an exchange we cannot continue.
    Cancelling,
    LoginStart {
        user: String,
        pass: Secret,
    },
    LoginUser {
        pass: Secret,
    },
    LoginPass,
}

/// A command in flight in a transaction, answered in order (RFC 2920 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    /// The message and its final dot.
    Dot,
    /// A lone dot ending a DATA the server wrongly accepted without recipients.
    EmptyDot,
}

#[derive(Debug)]
struct Transaction {
    /// Addresses actually sent, with their index in the caller's list.
    rcpts: Vec<(usize, String)>,
    results: Vec<Option<RcptResult>>,
    accepted: Vec<usize>,
    pending: VecDeque<Cmd>,
    pipelining: bool,
    mail_cmd: String,
    /// The dot-stuffed body with its final `.CRLF`.
    body: Vec<u8>,
    /// A failure before RCPT (RSET or MAIL) that applies to everyone.
    early_failure: Option<RcptResult>,
    /// Position of the next RCPT to send when not pipelining.
    next_rcpt: usize,
}

#[derive(Debug)]
enum State {
    ExpectGreeting,
    ExpectEhlo,
    ExpectHelo,
    Ready,
    ExpectStartTls,
    Auth(AuthStep),
    Transaction(Box<Transaction>),
    ExpectRset,
    ExpectQuit,
    Closed,
}

/// The client side of one SMTP connection.
#[derive(Debug)]
pub struct ClientSession {
    helo_name: String,
    state: State,
    out: Vec<u8>,
    reader: ReplyReader,
    ext: Extensions,
    tls: bool,
    authenticated: bool,
    /// A transaction was opened (MAIL accepted) and not finished by a dot:
    /// the next one starts with RSET.
    needs_rset: bool,
    /// The server said 421 (closing); the session must not be reused.
    closing: bool,
    transactions: u32,
}

impl ClientSession {
    /// A new session, waiting for the server's banner. `tls` is true when
    /// the connection is TLS from the first byte (implicit TLS, port 465).
    pub fn new(helo_name: &str, tls: bool) -> ClientSession {
        ClientSession {
            helo_name: helo_name.to_string(),
            state: State::ExpectGreeting,
            out: Vec::with_capacity(512),
            reader: ReplyReader::default(),
            ext: Extensions::default(),
            tls,
            authenticated: false,
            needs_rset: false,
            closing: false,
            transactions: 0,
        }
    }

    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }
    pub fn tls_active(&self) -> bool {
        self.tls
    }
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }
    /// Transactions that ended with a final reply after the dot.
    pub fn transactions(&self) -> u32 {
        self.transactions
    }
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }
    /// Greeted, idle, and the server has not announced that it is closing.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready) && !self.closing
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Move the queued commands into `into`.
    pub fn take_output(&mut self, into: &mut Vec<u8>) {
        into.append(&mut self.out);
    }

    pub fn waiting(&self) -> Waiting {
        match &self.state {
            State::ExpectGreeting => Waiting::Greeting,
            State::Ready | State::Closed => Waiting::Nothing,
            State::Transaction(t) => match t.pending.front() {
                Some(Cmd::Data) if t.pending.len() == 1 => Waiting::DataStart,
                Some(Cmd::Dot | Cmd::EmptyDot) => Waiting::DataEnd,
                _ => Waiting::Command,
            },
            _ => Waiting::Command,
        }
    }

    fn write_line(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn send_ehlo(&mut self) {
        let cmd = format!("EHLO {}", self.helo_name);
        self.write_line(&cmd);
        self.state = State::ExpectEhlo;
    }

    /// Ask for TLS (RFC 3207). Only when ready and before TLS is active;
    /// whether the server offered it is the caller's policy to judge.
    pub fn starttls(&mut self) -> Result<(), ClientError> {
        if !self.is_ready() || self.tls {
            return Err(ClientError::Sequence("STARTTLS"));
        }
        self.write_line("STARTTLS");
        self.state = State::ExpectStartTls;
        Ok(())
    }

    /// The handshake succeeded: the session starts over with EHLO, and
    /// forgets what the server said before TLS (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.ext = Extensions::default();
        self.reader = ReplyReader::default();
        self.send_ehlo();
    }

    /// Authenticate (RFC 4954). The caller checks TLS first: credentials
    /// never go over plaintext.
    pub fn auth(&mut self, mechanism: AuthMechanism, user: &str, pass: &Secret) -> Result<(), ClientError> {
        if !self.is_ready() || self.authenticated {
            return Err(ClientError::Sequence("AUTH"));
        }
        match mechanism {
            AuthMechanism::Plain => {
                // RFC 4616: authzid NUL authcid NUL passwd
                let mut raw = Vec::with_capacity(user.len() + pass.0.len() + 2);
                raw.push(0);
                raw.extend_from_slice(user.as_bytes());
                raw.push(0);
                raw.extend_from_slice(pass.0.as_bytes());
                let cmd = format!("AUTH PLAIN {}", B64.encode(raw));
                self.write_line(&cmd);
                self.state = State::Auth(AuthStep::Plain);
            }
            AuthMechanism::Login => {
                self.write_line("AUTH LOGIN");
                self.state = State::Auth(AuthStep::LoginStart { user: user.to_string(), pass: pass.clone() });
            }
        }
        Ok(())
    }

    /// Reset the session between messages (RFC 5321 §4.1.1.5); the reply
    /// also shows that an idle connection is still alive.
    pub fn reset(&mut self) -> Result<(), ClientError> {
        if !self.is_ready() {
            return Err(ClientError::Sequence("RSET"));
        }
        self.write_line("RSET");
        self.state = State::ExpectRset;
        Ok(())
    }

    /// Say goodbye. Allowed in any state but `Closed`; the connection can be
    /// closed after the reply (or without waiting for it).
    pub fn quit(&mut self) {
        if !self.is_closed() {
            self.write_line("QUIT");
            self.state = State::ExpectQuit;
        }
    }

    /// The connection broke or timed out: end the session, and if a
    /// transaction was under way, return its results, every recipient not
    /// yet decided getting `text` (temporary) at the stage it had reached.
    pub fn connection_lost(&mut self, text: &str) -> Option<TransactionResult> {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let State::Transaction(mut t) = state else { return None };
        let stage = match t.pending.front() {
            Some(Cmd::Rset | Cmd::Mail) | None => TxStage::Mail,
            Some(Cmd::Rcpt(_)) => TxStage::Rcpt,
            Some(Cmd::Data | Cmd::Dot | Cmd::EmptyDot) => TxStage::Data,
        };
        // A failure the server already gave (a 421 to MAIL) says more than "lost".
        let lost =
            t.early_failure.clone().unwrap_or(RcptResult { stage, code: None, enhanced: None, text: text.to_string() });
        for r in t.results.iter_mut().filter(|r| r.is_none()) {
            *r = Some(lost.clone());
        }
        Some(t.into_result())
    }

    /// Start a mail transaction. Returns `Some` at once when nothing needs
    /// to be sent (every recipient needs SMTPUTF8 and the server lacks it);
    /// otherwise the commands are queued — all at once with PIPELINING
    /// (RFC 2920), else one by one as the replies come — and the result
    /// arrives as [`Event::Transaction`].
    pub fn send_mail(&mut self, env: &Envelope<'_>) -> Result<Option<TransactionResult>, ClientError> {
        if !self.is_ready() {
            return Err(ClientError::Sequence("MAIL"));
        }
        let n = env.recipients.len();
        let mut results: Vec<Option<RcptResult>> = vec![None; n];
        // RFC 6531 §3.2: a non-ASCII address cannot go to a server without SMTPUTF8.
        let no_utf8 = |text: &str| RcptResult {
            stage: TxStage::Mail,
            code: None,
            enhanced: Some("5.6.7".into()),
            text: text.to_string(),
        };
        // Addresses come from our own queue, but a control character in one
        // would split a command line: never send it (defence in depth).
        let invalid = |enhanced: &str, text: &str| RcptResult {
            stage: TxStage::Mail,
            code: None,
            enhanced: Some(enhanced.into()),
            text: text.to_string(),
        };
        if !is_sendable(env.sender) {
            let r = invalid("5.1.7", "invalid sender address");
            return Ok(Some(TransactionResult { recipients: vec![r; n] }));
        }
        if !self.ext.smtputf8 && !env.sender.is_ascii() {
            let r = no_utf8("the sender address needs SMTPUTF8, which the server does not offer");
            return Ok(Some(TransactionResult { recipients: vec![r; n] }));
        }
        let mut rcpts = Vec::with_capacity(n);
        for (i, a) in env.recipients.iter().enumerate() {
            if !is_sendable(a) || a.is_empty() {
                results[i] = Some(invalid("5.1.3", "invalid recipient address"));
            } else if !self.ext.smtputf8 && !a.is_ascii() {
                results[i] = Some(no_utf8("the recipient address needs SMTPUTF8, which the server does not offer"));
            } else {
                rcpts.push((i, a.to_string()));
            }
        }
        if rcpts.is_empty() {
            return Ok(Some(TransactionResult { recipients: results.into_iter().flatten().collect() }));
        }

        let mut body = Vec::with_capacity(env.body.len() + env.body.len() / 64 + 8);
        let size = stuff_body(env.body, &mut body);
        let mut mail_cmd = format!("MAIL FROM:<{}>", env.sender);
        if self.ext.size.is_some() {
            mail_cmd.push_str(&format!(" SIZE={size}"));
        }
        if env.body_type == BodyType::EightBitMime && self.ext.eight_bit_mime {
            mail_cmd.push_str(" BODY=8BITMIME");
        }
        if env.smtputf8 && self.ext.smtputf8 {
            mail_cmd.push_str(" SMTPUTF8");
        }
        if env.requiretls && self.ext.requiretls {
            mail_cmd.push_str(" REQUIRETLS");
        }

        let mut t = Transaction {
            rcpts,
            results,
            accepted: Vec::new(),
            pending: VecDeque::new(),
            pipelining: self.ext.pipelining,
            mail_cmd,
            body,
            early_failure: None,
            next_rcpt: 0,
        };
        let rset = std::mem::take(&mut self.needs_rset);
        if t.pipelining {
            // RFC 2920 §3.1: RSET, MAIL, RCPT and DATA may go in one batch.
            if rset {
                self.write_line("RSET");
                t.pending.push_back(Cmd::Rset);
            }
            let mail = t.mail_cmd.clone();
            self.write_line(&mail);
            t.pending.push_back(Cmd::Mail);
            for i in 0..t.rcpts.len() {
                let cmd = format!("RCPT TO:<{}>", t.rcpts[i].1);
                self.write_line(&cmd);
                t.pending.push_back(Cmd::Rcpt(i));
            }
            self.write_line("DATA");
            t.pending.push_back(Cmd::Data);
        } else if rset {
            self.write_line("RSET");
            t.pending.push_back(Cmd::Rset);
        } else {
            let mail = t.mail_cmd.clone();
            self.write_line(&mail);
            t.pending.push_back(Cmd::Mail);
        }
        self.state = State::Transaction(Box::new(t));
        Ok(None)
    }

    /// Consume the server's replies in `input`; returns the next event, or
    /// `Ok(None)` when more input is needed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<Option<Event>, ClientError> {
        loop {
            let Some(reply) = self.reader.feed(input)? else { return Ok(None) };
            if reply.code == 421 {
                // RFC 5321 §3.8: the server is closing the channel.
                self.closing = true;
            }
            if let Some(ev) = self.on_reply(reply)? {
                return Ok(Some(ev));
            }
        }
    }

    fn on_reply(&mut self, reply: ServerReply) -> Result<Option<Event>, ClientError> {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let (next, event) = match state {
            State::ExpectGreeting => {
                if reply.code == 220 {
                    self.send_ehlo();
                    return Ok(None);
                }
                // RFC 5321 §3.1: a refused banner ends the session (QUIT only).
                self.closing = true;
                (State::Ready, Some(Event::Rejected { step: Step::Greeting, reply }))
            }
            State::ExpectEhlo => {
                if reply.is_success() {
                    self.ext = Extensions::parse(&reply);
                    (State::Ready, Some(Event::Ready))
                } else if reply.is_permanent() {
                    // RFC 5321 §3.2: a server that does not know EHLO gets HELO.
                    let cmd = format!("HELO {}", self.helo_name);
                    self.write_line(&cmd);
                    (State::ExpectHelo, None)
                } else {
                    self.closing = true;
                    (State::Ready, Some(Event::Rejected { step: Step::Helo, reply }))
                }
            }
            State::ExpectHelo => {
                if reply.is_success() {
                    self.ext = Extensions::default();
                    (State::Ready, Some(Event::Ready))
                } else {
                    self.closing = true;
                    (State::Ready, Some(Event::Rejected { step: Step::Helo, reply }))
                }
            }
            State::ExpectStartTls => {
                if reply.code == 220 {
                    (State::Ready, Some(Event::StartTls))
                } else {
                    (State::Ready, Some(Event::Rejected { step: Step::StartTls, reply }))
                }
            }
            State::Auth(step) => return Ok(self.on_auth_reply(step, reply)),
            State::ExpectRset => {
                if reply.is_success() {
                    self.needs_rset = false;
                    (State::Ready, Some(Event::Reset))
                } else {
                    (State::Ready, Some(Event::Rejected { step: Step::Rset, reply }))
                }
            }
            State::ExpectQuit => (State::Closed, Some(Event::Closed)),
            State::Transaction(t) => return Ok(self.on_transaction_reply(t, reply)),
            State::Ready | State::Closed => {
                self.state = state;
                return Err(ClientError::Unexpected(reply.to_string()));
            }
        };
        self.state = next;
        Ok(event)
    }

    fn on_auth_reply(&mut self, step: AuthStep, reply: ServerReply) -> Option<Event> {
        self.state = State::Ready;
        let rejected = Some(Event::Rejected { step: Step::Auth, reply: reply.clone() });
        match (step, reply.code) {
            (AuthStep::Cancelling, _) => rejected,
            (_, 235) => {
                self.authenticated = true;
                Some(Event::Authenticated)
            }
            // RFC 4954 §4: a 334 asks for the next response.
            (AuthStep::LoginStart { user, pass }, 334) => {
                let line = B64.encode(user.as_bytes());
                self.write_line(&line);
                self.state = State::Auth(AuthStep::LoginUser { pass });
                None
            }
            (AuthStep::LoginUser { pass }, 334) => {
                let line = B64.encode(pass.0.as_bytes());
                self.write_line(&line);
                self.state = State::Auth(AuthStep::LoginPass);
                None
            }
            (AuthStep::Plain | AuthStep::LoginPass, 334) => {
                // A challenge we have no answer for: cancel, and report
                // the reply to the cancellation.
                self.write_line("*");
                self.state = State::Auth(AuthStep::Cancelling);
                None
            }
            _ => rejected,
        }
    }

    fn on_transaction_reply(&mut self, mut t: Box<Transaction>, reply: ServerReply) -> Option<Event> {
        let Some(cmd) = t.pending.pop_front() else {
            // Cannot happen: a transaction always waits for something.
            self.state = State::Ready;
            return None;
        };
        match cmd {
            Cmd::Rset => {
                if !reply.is_success() {
                    t.early_failure = Some(RcptResult::from_reply(TxStage::Mail, &reply));
                    // Without pipelining nothing else was sent: done.
                    if !t.pipelining {
                        return self.finish_transaction(t);
                    }
                } else if !t.pipelining {
                    let mail = t.mail_cmd.clone();
                    self.write_line(&mail);
                    t.pending.push_back(Cmd::Mail);
                }
            }
            Cmd::Mail => {
                if t.early_failure.is_none() && !reply.is_success() {
                    t.early_failure = Some(RcptResult::from_reply(TxStage::Mail, &reply));
                }
                if t.early_failure.is_none() {
                    // MAIL accepted: a transaction is open until a dot or RSET ends it.
                    self.needs_rset = true;
                }
                if !t.pipelining {
                    if t.early_failure.is_some() {
                        return self.finish_transaction(t);
                    }
                    self.send_next_rcpt(&mut t);
                }
            }
            Cmd::Rcpt(i) => {
                if let Some(f) = &t.early_failure {
                    t.results[t.rcpts[i].0] = Some(f.clone());
                } else if reply.is_success() {
                    t.accepted.push(i);
                } else {
                    t.results[t.rcpts[i].0] = Some(RcptResult::from_reply(TxStage::Rcpt, &reply));
                }
                if !t.pipelining {
                    if t.next_rcpt < t.rcpts.len() {
                        self.send_next_rcpt(&mut t);
                    } else if t.accepted.is_empty() {
                        return self.finish_transaction(t);
                    } else {
                        self.write_line("DATA");
                        t.pending.push_back(Cmd::Data);
                    }
                }
            }
            Cmd::Data => {
                if reply.code == 354 {
                    if t.accepted.is_empty() || t.early_failure.is_some() {
                        // RFC 2920 §3.1: DATA accepted with no recipients;
                        // end it with an empty message and discard the reply.
                        self.write_line(".");
                        t.pending.push_back(Cmd::EmptyDot);
                    } else {
                        let body = std::mem::take(&mut t.body);
                        self.out.extend_from_slice(&body);
                        t.pending.push_back(Cmd::Dot);
                    }
                } else {
                    let r = RcptResult::from_reply(TxStage::Data, &reply);
                    for &i in &t.accepted {
                        t.results[t.rcpts[i].0] = Some(r.clone());
                    }
                    return self.finish_transaction(t);
                }
            }
            Cmd::Dot => {
                let r = RcptResult::from_reply(TxStage::Data, &reply);
                for &i in &t.accepted {
                    t.results[t.rcpts[i].0] = Some(r.clone());
                }
                self.needs_rset = false;
                self.transactions += 1;
                return self.finish_transaction(t);
            }
            Cmd::EmptyDot => {
                self.needs_rset = false;
                return self.finish_transaction(t);
            }
        }
        if t.pending.is_empty() {
            return self.finish_transaction(t);
        }
        self.state = State::Transaction(t);
        None
    }

    fn send_next_rcpt(&mut self, t: &mut Transaction) {
        let i = t.next_rcpt;
        t.next_rcpt += 1;
        let cmd = format!("RCPT TO:<{}>", t.rcpts[i].1);
        self.write_line(&cmd);
        t.pending.push_back(Cmd::Rcpt(i));
    }

    fn finish_transaction(&mut self, t: Box<Transaction>) -> Option<Event> {
        self.state = State::Ready;
        Some(Event::Transaction(t.into_result()))
    }
}

impl Transaction {
    fn into_result(self) -> TransactionResult {
        let fallback = self.early_failure.clone().unwrap_or(RcptResult {
            stage: TxStage::Data,
            code: None,
            enhanced: None,
            text: "the transaction ended without a reply for this recipient".into(),
        });
        let recipients = self.results.into_iter().map(|r| r.unwrap_or_else(|| fallback.clone())).collect();
        TransactionResult { recipients }
    }
}

/// An address that can go between `<` and `>` on a command line.
fn is_sendable(a: &str) -> bool {
    a.len() <= 512 && !a.chars().any(|c| c.is_control())
}

/// Write `body` for DATA: CRLF line ends only (a bare CR or LF becomes
/// CRLF, SPEC §12.6), a `.` doubled at the start of every line (RFC 5321
/// §4.5.2), a CRLF added if the body does not end with one, then `.CRLF`.
/// Returns the size for `SIZE=` (RFC 1870 §3: CRLFs counted, the stuffing
/// dots and the final dot not).
pub fn stuff_body(body: &[u8], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.reserve(body.len() + body.len() / 64 + 8);
    let mut stuffed = 0;
    let mut line_start = true;
    let mut rest = body;
    while !rest.is_empty() {
        if line_start && rest[0] == b'.' {
            out.push(b'.');
            stuffed += 1;
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(p) => {
                // CRLF is one line end; a bare CR or LF is one too.
                out.extend_from_slice(&rest[..p]);
                out.extend_from_slice(b"\r\n");
                let end = if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') { 2 } else { 1 };
                rest = &rest[p + end..];
                line_start = true;
            }
            None => {
                out.extend_from_slice(rest);
                rest = &[];
                line_start = false;
            }
        }
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    let size = out.len() - start - stuffed;
    out.extend_from_slice(b".\r\n");
    size
}

/// Consume and drop everything in a buffer (after STARTTLS, RFC 3207 §4.2:
/// nothing the server sent before the handshake may be trusted).
pub fn discard(input: &mut BytesMut) {
    input.advance(input.len());
}

#[cfg(test)]
mod tests;
