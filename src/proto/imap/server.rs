//! The sans-IO IMAP4rev1 server session (RFC 3501 §3, §6): the states (not
//! authenticated, authenticated, selected, logout), which commands each
//! state takes, and everything answered without the mailbox store —
//! CAPABILITY (LOGINDISABLED and STARTTLS as SPEC §9 says), STARTTLS,
//! LOGIN and AUTHENTICATE PLAIN with SASL-IR (through the kit's exchange),
//! ID, ENABLE CONDSTORE, NAMESPACE, LOGOUT, and IDLE's `+ idling` and
//! `DONE` (RFC 2177).
//!
//! Commands are assembled by [`CommandReader`] (literals, `+` invitations,
//! bounds); SASL responses and IDLE's `DONE` are plain lines. Every command
//! that needs the store comes out as [`Event::Command`]; the service
//! answers it (untagged data and the tagged status, through [`ServerSession::out`])
//! and calls [`ServerSession::done`], after [`ServerSession::select`] or
//! [`ServerSession::deselect`] when the selected state changed. Nothing is
//! read while an event is out, so replies keep the commands' order. The
//! core never touches a socket, a clock or a disk.

use super::command::{BadCommand, Command, CommandKind};
use super::reader::{CommandReader, Event as ReaderEvent, Limits};
use super::response::{self, Code, Data, Status};
use crate::proto::literal::Mode;
use crate::proto::sasl::{Credentials, Framing, Mechanism};
use crate::proto::session::{self, AuthEvent, AuthStage, Before, Common, KitReplies, LineCore, Phase};
use bytes::BytesMut;

/// Feeding pauses while this much output waits to be taken (SPEC §12.7).
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// The capabilities every state shows (RFC 3501 §7.2.1 and the extensions').
const BASE_CAPABILITIES: [&str; 13] = [
    "IMAP4rev1",
    "LITERAL+",
    "SASL-IR",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "SPECIAL-USE",
    "CONDSTORE",
];

/// What a session is configured to offer; fixed per virtual server.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hostname: String,
    /// Offer STARTTLS (the listener has `tls = "starttls"`).
    pub starttls: bool,
    /// SPEC §9: no credentials at all before TLS.
    pub require_tls: bool,
    /// Accept credentials over plaintext (when TLS is not required).
    pub allow_plaintext_auth: bool,
    /// After this many `BAD`s the session is closed.
    pub max_errors: u32,
    /// The command reader's bounds (APPEND's is the server's `max_message_size`).
    pub limits: Limits,
}

/// A fixed status reply; the core writes it tagged with the command's tag,
/// or untagged when it closes the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub code: Option<Code>,
    pub text: &'static str,
}

impl Reply {
    pub const fn new(status: Status, code: Option<Code>, text: &'static str) -> Reply {
        Reply { status, code, text }
    }
}

impl KitReplies for Reply {
    const CANCELLED: Reply = Reply::new(Status::Bad, None, "AUTHENTICATE cancelled");
    const BAD_BASE64: Reply = Reply::new(Status::Bad, None, "The SASL response is not base64");
    const TOO_MANY_ERRORS: Reply = Reply::new(Status::Bye, None, "Too many errors, closing the connection");
}

/// The replies the service gives through the core.
pub mod replies {
    use super::{Code, Reply, Status};
    pub const AUTH_FAILED: Reply = Reply::new(Status::No, Some(Code::AuthenticationFailed), "Authentication failed");
    pub const AUTH_THROTTLED: Reply =
        Reply::new(Status::No, Some(Code::Unavailable), "Too many failed logins, try again later");
    pub const LOGIN_UNAVAILABLE: Reply =
        Reply::new(Status::No, Some(Code::Unavailable), "The mailbox is not available now, try again later");
    pub const IDLE_TIMEOUT: Reply = Reply::new(Status::Bye, None, "Idle for too long, closing the connection");
    pub const SHUTTING_DOWN: Reply = Reply::new(Status::Bye, None, "Server shutting down");
}

session::kit_event!(Event, Reply);

/// A decision or work the session needs from the service.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The tagged OK to STARTTLS is queued; flush it, drop buffered input,
    /// start TLS, then call [`ServerSession::tls_started`].
    StartTls,
    /// LOGIN: check the credentials and answer with [`ServerSession::login_done`].
    Login(Credentials),
    /// AUTHENTICATE: `Start` is answered with [`ServerSession::auth_begin`],
    /// `Credentials` as [`Event::Login`] is, `Failed` (a failure) with
    /// [`ServerSession::login_done`].
    Auth(AuthEvent),
    /// A command of the authenticated or selected state: answer it fully
    /// (untagged data, the tagged status) and call [`ServerSession::done`].
    Command(Command),
    /// IDLE began (`+ idling` is queued): report changes as they come
    /// while [`ServerSession::is_idle`].
    Idle,
    /// IDLE ended with `DONE`: report what is pending, answer `tag OK`, and
    /// call [`ServerSession::done`].
    IdleDone { tag: String },
    /// LOGOUT: `* BYE` and the tagged OK are queued. Close after flushing.
    Logout,
    /// The error limit was reached; `* BYE` is queued. Close after flushing.
    TooManyErrors,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NotAuthenticated,
    /// Authenticated; selected too when `selected` is set.
    Authenticated,
    /// AUTHENTICATE is reading client lines.
    Sasl,
    /// An event is out; nothing is read until the service answers.
    Waiting(Pending),
    /// IDLE: only `DONE` is read.
    Idle,
    Logout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    AuthStart,
    Login,
    Command,
}

/// The server side of one IMAP connection.
#[derive(Debug)]
pub struct ServerSession {
    settings: Settings,
    state: State,
    kit: Common<Event>,
    reader: CommandReader,
    /// The tag of the command being answered.
    tag: String,
    user: Option<String>,
    /// `Some(read_only)` in the selected state.
    selected: Option<bool>,
    /// RFC 7162: CONDSTORE was enabled (ENABLE, SELECT (CONDSTORE), or a
    /// CONDSTORE command).
    condstore: bool,
}

impl LineCore for ServerSession {
    type Event = Event;
    const MAX_COMMAND: usize = session::MAX_SASL_LINE;
    const FRAMING: Framing = Framing::Continuation;

    fn greeting(&mut self) {
        let caps = self.capabilities();
        let text = format!("{} Postern ready", self.settings.hostname);
        response::untagged(&mut self.kit.out, Status::Ok, Some(&Code::Capability(caps)), &text);
    }
    fn phase(&self) -> Phase {
        Phase::of(self.state == State::Logout, matches!(self.state, State::Waiting(_)))
    }
    fn auth_in_progress(&self) -> bool {
        matches!(self.state, State::Sasl | State::Waiting(Pending::Login | Pending::AuthStart))
    }
    fn output_full(&self) -> bool {
        self.kit.out.len() >= OUTPUT_HIGH_WATER
    }
    fn before_line(&mut self, input: &mut BytesMut) -> Before<Event> {
        if self.output_full() {
            return Before::Return(None);
        }
        if self.kit.errors >= self.settings.max_errors {
            self.close(&Reply::TOO_MANY_ERRORS);
            return Before::Return(Some(Event::TooManyErrors));
        }
        match self.state {
            // the kit reads SASL responses and IDLE's DONE as plain lines
            State::Sasl | State::Idle => return Before::ReadLine,
            _ => {}
        }
        match self.reader.next(input) {
            None => Before::Return(None),
            Some(ReaderEvent::Continue) => {
                response::continuation(&mut self.kit.out, "Ready");
                Before::Again
            }
            Some(ReaderEvent::Bad(bad)) => {
                self.bad_command(&bad);
                Before::Again
            }
            Some(ReaderEvent::Command(c)) => match self.command_parsed(c) {
                Some(e) => Before::Return(Some(e)),
                None => Before::Again,
            },
        }
    }
    fn auth_stage(&mut self, stage: AuthStage<'_, Reply>) {
        match stage {
            AuthStage::Exchange => self.state = State::Sasl,
            AuthStage::Verdict => self.state = State::Waiting(Pending::Login),
            AuthStage::Over(r) => {
                self.state = State::NotAuthenticated;
                self.reply(r);
            }
        }
    }
    fn long_allowed(_line: &[u8]) -> bool {
        true
    }
    /// Only IDLE's lines come here (SASL lines go to the exchange).
    fn command(&mut self, line: &[u8]) -> Option<Event> {
        if self.state != State::Idle {
            return None;
        }
        if super::command::is_done(line) {
            self.state = State::Waiting(Pending::Command);
            return Some(Event::IdleDone { tag: self.tag.clone() });
        }
        // RFC 2177: anything but DONE ends IDLE as an error
        self.state = State::Authenticated;
        self.reply(&Reply::new(Status::Bad, None, "Expected DONE to end IDLE"));
        None
    }
    fn line_too_long(&mut self) {
        if self.state == State::Idle {
            self.state = State::Authenticated;
        }
        self.reply(&Reply::new(Status::Bad, None, "Line too long"));
    }
    fn close(&mut self, r: &Reply) {
        response::untagged(&mut self.kit.out, r.status, r.code.as_ref(), r.text);
        self.state = State::Logout;
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
        let reader = CommandReader::new(settings.limits, Mode::Plus);
        ServerSession {
            settings,
            state: State::NotAuthenticated,
            kit: Common { tls, ..Common::default() },
            reader,
            tag: String::new(),
            user: None,
            selected: None,
            condstore: false,
        }
    }

    /// Process input until an event needs an answer or more input is needed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Option<Event> {
        session::feed(self, input)
    }

    pub fn tls_active(&self) -> bool {
        self.kit.tls
    }
    /// The logged-in user.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    /// Whether a mailbox is selected, and read-only.
    pub fn selected(&self) -> Option<bool> {
        self.selected
    }
    pub fn condstore(&self) -> bool {
        self.condstore
    }
    /// A CONDSTORE command or `SELECT (CONDSTORE)` turns it on (RFC 7162 §3.1).
    pub fn enable_condstore(&mut self) {
        self.condstore = true;
    }
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }
    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }
    /// The tag of the command being answered.
    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// Where the service writes its responses.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.kit.out
    }

    /// Whether credentials may be sent now (SPEC §9).
    pub fn credentials_allowed(&self) -> bool {
        self.kit.tls || (self.settings.allow_plaintext_auth && !self.settings.require_tls)
    }

    /// The CAPABILITY list for the current state.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = BASE_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        if self.user.is_none() {
            if self.settings.starttls && !self.kit.tls {
                caps.push("STARTTLS".into());
            }
            if self.credentials_allowed() {
                caps.push("AUTH=PLAIN".into());
            } else {
                caps.push("LOGINDISABLED".into());
            }
        }
        caps
    }

    /// A mailbox is selected now (SELECT, EXAMINE).
    pub fn select(&mut self, read_only: bool) {
        self.selected = Some(read_only);
    }
    /// Back to the authenticated state (CLOSE, UNSELECT, a failed SELECT).
    pub fn deselect(&mut self) {
        self.selected = None;
    }

    /// The service answered [`Event::Command`] or [`Event::IdleDone`].
    pub fn done(&mut self) {
        if self.state == State::Waiting(Pending::Command) {
            self.state = State::Authenticated;
        }
    }

    /// Answer [`Event::Auth`] `Start`: `Ok(())` once the throttle slot is
    /// taken, `Err(reply)` refuses it.
    pub fn auth_begin(&mut self, slot: Result<(), Reply>) {
        if self.state == State::Waiting(Pending::AuthStart) {
            session::auth_begin(self, slot);
        }
    }

    /// The verdict on a login: the account's key, or the refusal.
    pub fn login_done(&mut self, verdict: Result<String, Reply>) {
        if self.state != State::Waiting(Pending::Login) {
            return;
        }
        match verdict {
            Ok(user) => {
                self.user = Some(user);
                self.state = State::Authenticated;
                let caps = self.capabilities();
                let tag = self.tag.clone();
                response::tagged(&mut self.kit.out, &tag, Status::Ok, Some(&Code::Capability(caps)), "Logged in");
            }
            Err(r) => {
                self.state = State::NotAuthenticated;
                self.reply(&r);
            }
        }
    }

    /// TLS is up after STARTTLS: nothing read before counts (RFC 3501 §6.2.1).
    pub fn tls_started(&mut self) {
        self.kit.tls = true;
        self.kit.auth.reset();
        self.reader.reset();
        self.kit.lines.reset();
    }

    /// Write `r` tagged with the current command's tag; a BAD counts
    /// towards the error limit (a NO is a fair answer to a fair command:
    /// a folder that exists already; failed logins have the throttle).
    pub fn reply(&mut self, r: &Reply) {
        let tag = self.tag.clone();
        response::tagged(&mut self.kit.out, &tag, r.status, r.code.as_ref(), r.text);
        if r.status == Status::Bad {
            self.kit.errors += 1;
        }
    }

    /// Count an error the service answered (a `BAD` it wrote).
    pub fn count_error(&mut self) {
        self.kit.errors += 1;
    }

    fn bad_command(&mut self, bad: &BadCommand) {
        self.kit.out.extend_from_slice(&bad.line());
        self.kit.errors += 1;
    }

    fn command_parsed(&mut self, c: Command) -> Option<Event> {
        self.tag = c.tag.clone();
        let authenticated = self.user.is_some();
        let selected = self.selected.is_some();
        use CommandKind as K;
        match c.kind {
            K::Capability => {
                let caps = self.capabilities();
                response::data(&mut self.kit.out, &Data::Capability(&caps));
                self.ok("CAPABILITY completed");
                None
            }
            K::Noop if !authenticated => {
                self.ok("NOOP completed");
                None
            }
            K::Logout => {
                response::untagged(&mut self.kit.out, Status::Bye, None, "Logging out");
                self.ok("LOGOUT completed");
                self.state = State::Logout;
                Some(Event::Logout)
            }
            K::Id(_) => {
                let ours = [("name".to_string(), "Postern".to_string())];
                response::data(&mut self.kit.out, &Data::Id(Some(&ours)));
                self.ok("ID completed");
                None
            }
            K::StartTls | K::Login(_) | K::Authenticate { .. } if authenticated => {
                self.reply(&Reply::new(Status::Bad, None, "Already authenticated"));
                None
            }
            K::StartTls => {
                if self.kit.tls {
                    self.reply(&Reply::new(Status::Bad, None, "TLS is already active"));
                    None
                } else if !self.settings.starttls {
                    self.reply(&Reply::new(Status::Bad, None, "STARTTLS is not offered here"));
                    None
                } else {
                    self.ok("Begin TLS negotiation now");
                    Some(Event::StartTls)
                }
            }
            K::Login(creds) => {
                if let Some(r) = self.credentials_refusal() {
                    self.reply(&r);
                    return None;
                }
                self.state = State::Waiting(Pending::Login);
                Some(Event::Login(creds))
            }
            K::Authenticate { mechanism, initial } => {
                if let Some(r) = self.credentials_refusal() {
                    self.reply(&r);
                    return None;
                }
                let Some(m @ Mechanism::Plain) = Mechanism::parse(&mechanism) else {
                    self.reply(&Reply::new(Status::No, None, "Unsupported authentication mechanism"));
                    return None;
                };
                let initial = initial.map(|i| String::from_utf8_lossy(&i).into_owned());
                self.state = State::Waiting(Pending::AuthStart);
                Some(Event::Auth(self.kit.auth.request(m, initial.as_deref())))
            }
            _ if !authenticated => {
                self.reply(&Reply::new(Status::Bad, None, "Log in first (LOGIN or AUTHENTICATE)"));
                None
            }
            K::Enable(names) => {
                let enabled: Vec<String> = names.into_iter().filter(|n| n == "CONDSTORE").take(1).collect();
                if !enabled.is_empty() {
                    self.condstore = true;
                }
                response::data(&mut self.kit.out, &Data::Enabled(&enabled));
                self.ok("ENABLE completed");
                None
            }
            K::Namespace => {
                response::data(&mut self.kit.out, &Data::Namespace { prefix: "", delimiter: Some('/') });
                self.ok("NAMESPACE completed");
                None
            }
            K::Idle => {
                response::continuation(&mut self.kit.out, "idling");
                self.state = State::Idle;
                Some(Event::Idle)
            }
            K::Check
            | K::Close
            | K::Unselect
            | K::Expunge
            | K::UidExpunge(_)
            | K::Search { .. }
            | K::Fetch { .. }
            | K::Store { .. }
            | K::Copy { .. }
            | K::Move { .. }
                if !selected =>
            {
                self.reply(&Reply::new(Status::Bad, None, "No mailbox selected"));
                None
            }
            kind => {
                self.state = State::Waiting(Pending::Command);
                Some(Event::Command(Command { tag: c.tag, kind }))
            }
        }
    }

    fn ok(&mut self, text: &str) {
        let tag = self.tag.clone();
        response::tagged(&mut self.kit.out, &tag, Status::Ok, None, text);
    }

    /// Why credentials cannot be taken now, if they cannot (SPEC §9).
    fn credentials_refusal(&self) -> Option<Reply> {
        if self.credentials_allowed() {
            None
        } else if self.settings.require_tls {
            Some(Reply::new(Status::No, Some(Code::PrivacyRequired), "TLS is required: use STARTTLS first"))
        } else {
            Some(Reply::new(Status::No, Some(Code::PrivacyRequired), "Plaintext login is disabled: use STARTTLS first"))
        }
    }
}
