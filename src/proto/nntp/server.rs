//! The sans-IO NNTP server session: RFC 3977 reading and posting, RFC 4642
//! STARTTLS, RFC 4643 AUTHINFO USER/PASS and SASL PLAIN, RFC 4644
//! streaming feeds (MODE STREAM, CHECK, TAKETHIS) and IHAVE.
//!
//! [`ServerSession::feed`] parses each line into a [`Command`] and answers
//! what it can from what it holds — syntax, capabilities, TLS and
//! authentication rules, whether posting or feeding is allowed, the
//! selected group and current article number, LIST OVERVIEW.FMT and LIST
//! HEADERS — and returns an [`Event`] for anything that needs the outside
//! world: credentials to check, or a [`Request`] for the news store. The
//! caller answers with the matching decision method ([`ServerSession::answer`]
//! for requests) before feeding again; the core writes every response and
//! every multi-line block (dot-stuffed, `.`-terminated). Articles arriving
//! with POST, IHAVE and TAKETHIS are read by the kit's dot reader (bounded
//! by `max_article`; what is over it is read and dropped) and handed over
//! unstuffed. Lines are read by the kit's skeleton (`proto::session`);
//! AUTHINFO SASL runs the kit's SASL exchange with `383` framing. The core
//! never touches a socket, a clock or a disk.
//!
//! A streaming peer pipelines TAKETHIS. So that the store can make a run
//! of them durable with one round of fsyncs, the service may
//! [`ServerSession::defer`] a TAKETHIS request: the core then reads on, but
//! only further TAKETHIS commands (anything else waits in the input), and
//! holds every reply it would write until [`ServerSession::answer_deferred`]
//! (or, a run at a time, [`ServerSession::answer_first`]) brings the
//! deferred outcomes, so replies still go out in command order.

use super::command::{self, ArticleSpec, Command, ListKind, Part, RangeSpec};
use super::reply::{self, Reply};
use super::wildmat::Wildmat;
use crate::proto::dot::{write_multiline, DotEnd, DotReader};
use crate::proto::sasl::{Credentials, Framing, Mechanism};
use crate::proto::session::{self, AuthEvent, AuthStage, Before, Common, LineCore, Phase};
use bytes::BytesMut;
use std::collections::VecDeque;

/// Feeding pauses while this much output waits to be taken (a client
/// pipelining many ARTICLEs must not make one buffer of them).
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// What a session is configured to offer; fixed per virtual server.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hostname: String,
    /// Offer STARTTLS (the listener has `tls = "starttls"`).
    pub starttls: bool,
    /// SPEC §9: no credentials at all before TLS (`483`).
    pub require_tls: bool,
    /// Accept credentials over plaintext (when TLS is not required).
    pub allow_plaintext_auth: bool,
    /// POST without AUTHINFO.
    pub allow_anonymous_posting: bool,
    /// The largest article accepted (`max_message_size`).
    pub max_article: usize,
    /// After this many 5xx replies the session is closed.
    pub max_errors: u32,
}

/// A group as GROUP and the listings show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub count: u64,
    pub low: u64,
    pub high: u64,
    /// `y`, `n` or `m`.
    pub posting: char,
    pub description: String,
    /// Unix seconds.
    pub created: u64,
}

/// The article a request names, the current one resolved by the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Number { group: String, number: u64 },
    Id(String),
}

/// The articles OVER and HDR name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Span {
    Range { group: String, from: u64, to: u64 },
    Id(String),
}

/// Work for the news store; answered with [`ServerSession::answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// GROUP, or LISTGROUP with the numbers in `list`:
    /// [`Answer::Group`] or `411`.
    Group { name: String, list: Option<(u64, u64)> },
    /// ARTICLE/HEAD/BODY/STAT: [`Answer::Article`] (STAT needs no bytes)
    /// or `423`/`430`.
    Article { part: Part, target: Target },
    /// NEXT (`forward`) or LAST from `from`: [`Answer::Moved`] or `421`/`422`.
    Step { group: String, from: u64, forward: bool },
    /// OVER/XOVER: [`Answer::Overview`] (lines from the overview) or `423`/`430`.
    Over(Span),
    /// HDR/XHDR: [`Answer::Headers`] or `423`/`430`.
    Hdr { field: String, span: Span },
    /// LIST ACTIVE, ACTIVE.TIMES, NEWSGROUPS: [`Answer::Groups`].
    Groups(Wildmat),
    /// NEWGROUPS: [`Answer::Groups`] of groups created at or after `since`.
    NewGroups { since: u64 },
    /// NEWNEWS: [`Answer::Ids`].
    NewNews { groups: Wildmat, since: u64 },
    /// DATE: [`Answer::Date`].
    Date,
    /// POST: check and store; answer `240`/`441`.
    Post(Vec<u8>),
    /// IHAVE offered: [`Answer::Wanted`] or `435`/`436`.
    Offer(String),
    /// The IHAVE article: answer `235`/`436`/`437`.
    Ihave { id: String, article: Vec<u8> },
    /// CHECK: answer `238`/`431`/`438`.
    Check(String),
    /// TAKETHIS: answer `239`/`439` (`400` closes the session).
    TakeThis { id: String, article: Vec<u8> },
}

/// The store's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A single-line response: a failure, or the outcome of POST, IHAVE,
    /// CHECK, TAKETHIS. A `400` closes the session.
    Reply(Reply),
    /// The group, and for LISTGROUP its numbers in the range.
    Group(GroupEntry, Vec<u64>),
    /// `number` is 0 for an article named by message-id.
    Article {
        number: u64,
        id: String,
        article: Vec<u8>,
    },
    Moved {
        number: u64,
        id: String,
    },
    Groups(Vec<GroupEntry>),
    Ids(Vec<String>),
    /// OVER lines, each `number TAB fields...` (RFC 3977 §8.3.2).
    Overview(Vec<String>),
    Headers(Vec<(u64, String)>),
    Date(u64),
    /// IHAVE: send it.
    Wanted,
}

session::kit_event!(Event, Reply);

/// A decision the NNTP session needs from the service.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// `382` is queued; flush it, drop buffered input, start TLS, then
    /// call [`ServerSession::tls_started`].
    StartTls,
    /// AUTHINFO USER/PASS: check them and answer with [`ServerSession::login_done`].
    Login(Credentials),
    /// AUTHINFO SASL: `Start` is answered with [`ServerSession::auth_begin`];
    /// `Credentials` as [`Event::Login`] is; `Failed` (it counts as a
    /// failure) with [`ServerSession::login_done`].
    Auth(AuthEvent),
    Request(Request),
    /// QUIT; `205` is queued. Close after flushing.
    Quit,
    /// The error limit was reached; the `400` is queued. Close after flushing.
    TooManyErrors,
}

/// What the article being read is for.
#[derive(Debug)]
enum Purpose {
    Post,
    Ihave(String),
    /// The message-id as sent.
    TakeThis(String),
}

#[derive(Debug)]
enum Pending {
    AuthStart,
    Login,
    Group {
        list: bool,
    },
    Article {
        part: Part,
        numbered: bool,
    },
    Step,
    Over,
    Hdr {
        x: bool,
    },
    List(ListKind),
    NewGroups,
    NewNews,
    Date,
    Offer(String),
    /// POST, IHAVE, CHECK: a single-line outcome.
    Outcome,
    /// TAKETHIS: a single-line outcome, or [`ServerSession::defer`].
    TakeThis,
}

#[derive(Debug)]
enum State {
    Command,
    /// Waiting for the client's line in a SASL exchange.
    Sasl,
    /// Reading an article (POST, IHAVE, TAKETHIS).
    Article {
        reader: DotReader,
        purpose: Purpose,
    },
    /// An event is out; nothing is read until the decision comes back.
    Waiting(Pending),
    Closed,
}

/// The server side of one NNTP connection.
#[derive(Debug)]
pub struct ServerSession {
    settings: Settings,
    state: State,
    kit: Common<Event>,
    /// The address may feed us (a `[[news_peer]]` accept_from covers it).
    feeder: bool,
    user: Option<String>,
    /// The name from AUTHINFO USER, waiting for PASS.
    pending_user: Option<String>,
    group: Option<String>,
    current: Option<u64>,
    /// Replies held back behind deferred TAKETHIS outcomes, in order:
    /// `None` where the service still owes the outcome. While it is not
    /// empty only TAKETHIS commands are read.
    held: VecDeque<Option<Reply>>,
}

const HELP: &[&str] = &[
    "ARTICLE|HEAD|BODY|STAT [message-id|number]",
    "AUTHINFO USER name | AUTHINFO PASS password | AUTHINFO SASL PLAIN [initial-response]",
    "CAPABILITIES",
    "CHECK message-id",
    "DATE",
    "GROUP newsgroup",
    "HDR|XHDR field [message-id|range]",
    "HELP",
    "IHAVE message-id",
    "LAST",
    "LIST [ACTIVE|ACTIVE.TIMES|NEWSGROUPS [wildmat]|OVERVIEW.FMT|HEADERS]",
    "LISTGROUP [newsgroup [range]]",
    "MODE READER|STREAM",
    "NEWGROUPS [yy]yymmdd hhmmss [GMT]",
    "NEWNEWS wildmat [yy]yymmdd hhmmss [GMT]",
    "NEXT",
    "OVER|XOVER [message-id|range]",
    "POST",
    "QUIT",
    "STARTTLS",
    "TAKETHIS message-id",
];

/// `LIST OVERVIEW.FMT` (RFC 3977 §8.4): the order of the OVER fields.
const OVERVIEW_FMT: &[&str] =
    &["Subject:", "From:", "Date:", "Message-ID:", "References:", ":bytes", ":lines", "Xref:full"];

impl LineCore for ServerSession {
    type Event = Event;
    /// RFC 3977 §3.1 holds clients to 512 octets; we read up to the kit's
    /// bound (SASL lines need it anyway) and no further.
    const MAX_COMMAND: usize = session::MAX_SASL_LINE;
    const FRAMING: Framing = Framing::Nntp;

    fn greeting(&mut self) {
        // RFC 3977 §5.1.1: 200 when posting may be allowed (perhaps after AUTHINFO)
        Reply::owned(200, format!("{} Postern NNTP service ready, posting allowed", self.settings.hostname))
            .write(&mut self.kit.out);
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
    fn before_line(&mut self, input: &mut BytesMut) -> Before<Event> {
        if let State::Article { reader, .. } = &mut self.state {
            let Some(end) = reader.feed(input) else { return Before::Return(None) };
            let State::Article { purpose, .. } = std::mem::replace(&mut self.state, State::Command) else {
                return Before::Again;
            };
            return match self.article_read(purpose, end) {
                Some(event) => Before::Return(Some(event)),
                None => Before::Again,
            };
        }
        if self.output_full() {
            return Before::Return(None);
        }
        if !self.held.is_empty() && !starts_with_ignore_case(input, b"TAKETHIS ") {
            // not another TAKETHIS (or not all here yet): the deferred
            // outcomes come first
            return Before::Return(None);
        }
        Before::ReadLine
    }
    fn auth_stage(&mut self, stage: AuthStage<'_, Reply>) {
        match stage {
            AuthStage::Exchange => self.state = State::Sasl,
            AuthStage::Verdict => self.state = State::Waiting(Pending::Login),
            AuthStage::Over(r) => {
                self.state = State::Command;
                self.reply(r);
            }
        }
    }
    fn long_allowed(_line: &[u8]) -> bool {
        false
    }
    fn command(&mut self, line: &[u8]) -> Option<Event> {
        match command::parse(line) {
            Ok(c) => self.run(c),
            Err(r) => {
                self.reply(&r);
                None
            }
        }
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
    /// A new session; `tls` is true on implicit-TLS listeners, `feeder`
    /// when the client's address may feed us articles.
    pub fn new(settings: Settings, tls: bool, feeder: bool) -> ServerSession {
        ServerSession {
            settings,
            state: State::Command,
            kit: Common { tls, ..Common::default() },
            feeder,
            user: None,
            pending_user: None,
            group: None,
            current: None,
            held: VecDeque::new(),
        }
    }

    pub fn tls_active(&self) -> bool {
        self.kit.tls
    }
    /// The authenticated user.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    /// The selected group.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Whether credentials may be sent now (SPEC §9, §12.8).
    pub fn credentials_allowed(&self) -> bool {
        self.kit.tls || (self.settings.allow_plaintext_auth && !self.settings.require_tls)
    }

    /// Process input until an event needs a decision or more input is needed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Option<Event> {
        session::feed(self, input)
    }

    fn reply(&mut self, r: &Reply) {
        if r.is_error() {
            self.kit.errors += 1;
        }
        self.emit(r);
    }

    /// Write `r`, or hold it behind the deferred outcomes.
    fn emit(&mut self, r: &Reply) {
        if self.held.is_empty() {
            r.write(&mut self.kit.out);
        } else {
            self.held.push_back(Some(r.clone()));
        }
    }

    /// Leave the TAKETHIS request just returned unanswered for now and read
    /// on (only TAKETHIS commands); its outcome comes, in order with the
    /// others deferred, through [`ServerSession::answer_deferred`]. Does
    /// nothing unless a TAKETHIS is waiting for its answer.
    pub fn defer(&mut self) {
        if matches!(self.state, State::Waiting(Pending::TakeThis)) {
            self.state = State::Command;
            self.held.push_back(None);
        }
    }

    /// Whether more input must come before the core can go on: it is in
    /// the middle of an article, or `input` ends in a partial line (a
    /// client never waits for replies there, so it is still sending).
    pub fn expects_more(&self, input: &[u8]) -> bool {
        matches!(self.state, State::Article { .. }) || (!input.is_empty() && memchr::memchr(b'\n', input).is_none())
    }

    /// Forget the deferred outcomes and the replies held behind them: the
    /// session is closing (timeout, shutdown) before they were decided,
    /// and a peer takes what a `400` leaves unanswered as not taken.
    pub fn abandon_deferred(&mut self) {
        self.held.clear();
    }

    /// How many deferred outcomes the service owes.
    pub fn deferred(&self) -> usize {
        self.held.iter().filter(|h| h.is_none()).count()
    }

    /// The outcomes of the deferred TAKETHIS requests, in the order they
    /// were deferred: written with every reply held behind them. An
    /// outcome missing from `replies` is answered `400` (the service's
    /// mistake), which closes the session.
    pub fn answer_deferred(&mut self, replies: impl IntoIterator<Item = Reply>) {
        self.answer_first(replies);
        if !self.held.is_empty() {
            self.held.clear();
            self.state = State::Closed;
            reply::SERVICE_UNAVAILABLE.write(&mut self.kit.out);
        }
    }

    /// The outcomes of the oldest deferred TAKETHIS requests, as many as
    /// `replies` holds: written, in order, with the replies held between
    /// them; what was deferred after them stays held. So a service may
    /// store one run while the core reads (and defers) the next, and
    /// answer each run as it becomes durable. A `400` closes the session.
    pub fn answer_first(&mut self, replies: impl IntoIterator<Item = Reply>) {
        let mut replies = replies.into_iter();
        while let Some(slot) = self.held.front_mut() {
            let r = match slot.take() {
                Some(r) => r,
                None => {
                    let Some(r) = replies.next() else { break };
                    if r.is_error() {
                        self.kit.errors += 1;
                    }
                    if r.code == 400 {
                        self.state = State::Closed;
                    }
                    r
                }
            };
            self.held.pop_front();
            r.write(&mut self.kit.out);
        }
    }

    fn request(&mut self, pending: Pending, request: Request) -> Option<Event> {
        self.state = State::Waiting(pending);
        Some(Event::Request(request))
    }

    /// The selected group, or `412` written.
    fn selected(&mut self) -> Option<String> {
        if self.group.is_none() {
            self.reply(&reply::NO_GROUP_SELECTED);
        }
        self.group.clone()
    }

    /// The selected group and its current article, or `412`/`420` written.
    fn current_article(&mut self) -> Option<(String, u64)> {
        let group = self.selected()?;
        match self.current {
            Some(n) => Some((group, n)),
            None => {
                self.reply(&reply::CURRENT_INVALID);
                None
            }
        }
    }

    fn span(&mut self, spec: RangeSpec) -> Option<Span> {
        Some(match spec {
            RangeSpec::Id(id) => Span::Id(id),
            RangeSpec::Current => {
                let (group, n) = self.current_article()?;
                Span::Range { group, from: n, to: n }
            }
            RangeSpec::Range(from, to) => Span::Range { group: self.selected()?, from, to },
        })
    }

    fn run(&mut self, c: Command) -> Option<Event> {
        match c {
            Command::Capabilities => self.write_capabilities(),
            Command::ModeReader => self.reply(&reply::READER_POSTING),
            Command::ModeStream if self.feeder => self.reply(&reply::STREAMING_OK),
            Command::ModeStream | Command::Check(_) | Command::Ihave(_) if !self.feeder => {
                self.reply(&reply::NOT_A_PEER)
            }
            Command::Help => {
                reply::HELP_FOLLOWS.write(&mut self.kit.out);
                block(&mut self.kit.out, HELP.iter().map(|s| s.to_string()));
            }
            Command::Quit => {
                reply::BYE.write(&mut self.kit.out);
                self.state = State::Closed;
                return Some(Event::Quit);
            }
            Command::Date => return self.request(Pending::Date, Request::Date),
            Command::StartTls => {
                if self.kit.tls {
                    self.reply(&reply::TLS_ACTIVE);
                } else if !self.settings.starttls || self.user.is_some() {
                    // RFC 4642 §2.2.2: not after authentication either
                    self.reply(&reply::NO_STARTTLS);
                } else {
                    reply::BEGIN_TLS.write(&mut self.kit.out);
                    return Some(Event::StartTls);
                }
            }
            Command::AuthUser(_) | Command::AuthPass(_) | Command::AuthSasl { .. } => return self.authinfo(c),
            Command::List { kind: ListKind::OverviewFmt, .. } => {
                reply::OVERVIEW_FMT_FOLLOWS.write(&mut self.kit.out);
                block(&mut self.kit.out, OVERVIEW_FMT.iter().map(|s| s.to_string()));
            }
            Command::List { kind: ListKind::Headers, .. } => {
                // RFC 3977 §8.6: ":" means any header field may be asked for
                reply::HEADERS_FOLLOW.write(&mut self.kit.out);
                block(&mut self.kit.out, [":", ":bytes", ":lines"].iter().map(|s| s.to_string()));
            }
            Command::List { kind, wildmat } => {
                return self.request(Pending::List(kind), Request::Groups(wildmat.unwrap_or_else(Wildmat::any)))
            }
            Command::NewGroups { since } => return self.request(Pending::NewGroups, Request::NewGroups { since }),
            Command::NewNews { groups, since } => {
                return self.request(Pending::NewNews, Request::NewNews { groups, since })
            }
            Command::Group(name) => {
                return self.request(Pending::Group { list: false }, Request::Group { name, list: None })
            }
            Command::ListGroup { group, range } => {
                let name = match group {
                    Some(g) => g,
                    None => self.selected()?,
                };
                let list = Some(range.unwrap_or((1, u64::MAX)));
                return self.request(Pending::Group { list: true }, Request::Group { name, list });
            }
            Command::Article(part, spec) => {
                let (target, numbered) = match spec {
                    ArticleSpec::Id(id) => (Target::Id(id), false),
                    ArticleSpec::Current => {
                        let (group, number) = self.current_article()?;
                        (Target::Number { group, number }, true)
                    }
                    ArticleSpec::Number(number) => (Target::Number { group: self.selected()?, number }, true),
                };
                return self.request(Pending::Article { part, numbered }, Request::Article { part, target });
            }
            Command::Next | Command::Last => {
                let (group, from) = self.current_article()?;
                let forward = c == Command::Next;
                return self.request(Pending::Step, Request::Step { group, from, forward });
            }
            Command::Over { spec, .. } => {
                let span = self.span(spec)?;
                return self.request(Pending::Over, Request::Over(span));
            }
            Command::Hdr { field, spec, x } => {
                let span = self.span(spec)?;
                return self.request(Pending::Hdr { x }, Request::Hdr { field, span });
            }
            Command::Post => {
                if self.user.is_none() && !self.settings.allow_anonymous_posting {
                    self.reply(&reply::AUTH_REQUIRED);
                } else {
                    reply::SEND_POST.write(&mut self.kit.out);
                    self.read_article(Purpose::Post);
                }
            }
            Command::Ihave(id) => return self.request(Pending::Offer(id.clone()), Request::Offer(id)),
            Command::Check(id) => return self.request(Pending::Outcome, Request::Check(id)),
            // RFC 4644 §2.5: the article follows at once and is read whatever the answer
            Command::TakeThis(id) => self.read_article(Purpose::TakeThis(id)),
            Command::ModeStream => self.reply(&reply::NOT_A_PEER),
        }
        None
    }

    fn read_article(&mut self, purpose: Purpose) {
        self.state = State::Article { reader: DotReader::new(self.settings.max_article), purpose };
    }

    /// An article was read to its end.
    fn article_read(&mut self, purpose: Purpose, end: DotEnd) -> Option<Event> {
        let article = match end {
            DotEnd::Complete(a) => a,
            DotEnd::TooBig { .. } => {
                let r = match purpose {
                    Purpose::Post => reply::POST_TOO_BIG,
                    Purpose::Ihave(_) => reply::TRANSFER_TOO_BIG,
                    Purpose::TakeThis(id) => Reply::owned(439, format!("{id} Article too large; do not retry")),
                };
                self.reply(&r);
                return None;
            }
        };
        let request = match purpose {
            Purpose::Post => Request::Post(article),
            Purpose::Ihave(id) => Request::Ihave { id, article },
            Purpose::TakeThis(_) if !self.feeder => {
                self.reply(&reply::NOT_A_PEER);
                return None;
            }
            Purpose::TakeThis(id) if !command::valid_message_id(&id) => {
                self.reply(&Reply::owned(439, format!("{id} Invalid message-id")));
                return None;
            }
            Purpose::TakeThis(id) => return self.request(Pending::TakeThis, Request::TakeThis { id, article }),
        };
        self.request(Pending::Outcome, request)
    }

    /// Why credentials cannot be taken now, if they cannot.
    fn credentials_refusal(&self) -> Option<Reply> {
        if self.user.is_some() {
            Some(reply::ALREADY_AUTHENTICATED)
        } else if !self.credentials_allowed() {
            Some(reply::TLS_REQUIRED)
        } else {
            None
        }
    }

    fn authinfo(&mut self, c: Command) -> Option<Event> {
        if let Some(r) = self.credentials_refusal() {
            self.reply(&r);
            return None;
        }
        match c {
            Command::AuthUser(name) => {
                self.pending_user = Some(name);
                reply::PASSWORD_REQUIRED.write(&mut self.kit.out);
            }
            Command::AuthPass(password) => {
                let Some(username) = self.pending_user.take() else {
                    self.reply(&reply::AUTH_OUT_OF_SEQUENCE);
                    return None;
                };
                self.state = State::Waiting(Pending::Login);
                return Some(Event::Login(Credentials { username, password }));
            }
            Command::AuthSasl { mechanism, initial } => {
                let Some(m @ Mechanism::Plain) = Mechanism::parse(&mechanism) else {
                    self.reply(&reply::UNKNOWN_MECHANISM);
                    return None;
                };
                self.pending_user = None;
                self.state = State::Waiting(Pending::AuthStart);
                return Some(Event::Auth(self.kit.auth.request(m, initial.as_deref())));
            }
            _ => {}
        }
        None
    }

    fn write_capabilities(&mut self) {
        reply::CAPABILITIES.write(&mut self.kit.out);
        let mut caps = vec!["VERSION 2", "READER", "POST"];
        if self.feeder {
            caps.extend(["IHAVE", "STREAMING"]);
        }
        caps.extend(["LIST ACTIVE NEWSGROUPS OVERVIEW.FMT HEADERS ACTIVE.TIMES", "OVER MSGID", "HDR", "NEWNEWS"]);
        if self.settings.starttls && !self.kit.tls && self.user.is_none() {
            caps.push("STARTTLS");
        }
        // SPEC §9: never advertise a way to send credentials that would be refused
        if self.user.is_none() && self.credentials_allowed() {
            caps.extend(["AUTHINFO USER SASL", "SASL PLAIN"]);
        }
        caps.push("IMPLEMENTATION Postern");
        block(&mut self.kit.out, caps.into_iter().map(str::to_string));
    }

    /// Answer [`Event::Auth`]: `Ok(())` starts the exchange (the slot is
    /// taken), `Err(reply)` refuses it (throttled).
    pub fn auth_begin(&mut self, slot: Result<(), Reply>) {
        if matches!(self.state, State::Waiting(Pending::AuthStart)) {
            session::auth_begin(self, slot);
        }
    }

    /// Finish [`Event::Login`] or an AUTHINFO SASL exchange.
    pub fn login_done(&mut self, result: Result<String, Reply>) {
        if !matches!(self.state, State::Waiting(Pending::Login)) {
            return;
        }
        self.state = State::Command;
        match result {
            Ok(user) => {
                self.user = Some(user);
                reply::AUTHENTICATED.write(&mut self.kit.out);
            }
            Err(r) => self.reply(&r),
        }
    }

    /// Answer [`Event::Request`].
    pub fn answer(&mut self, answer: Answer) {
        let State::Waiting(pending) = std::mem::replace(&mut self.state, State::Command) else {
            return;
        };
        let out = &mut self.kit.out;
        match (pending, answer) {
            (Pending::AuthStart | Pending::Login, _) => {}
            (Pending::Offer(id), Answer::Wanted) => {
                reply::SEND_ARTICLE.write(out);
                self.read_article(Purpose::Ihave(id));
            }
            (_, Answer::Reply(r)) => {
                self.reply(&r);
                if r.code == 400 {
                    self.state = State::Closed;
                }
            }
            (Pending::Group { list }, Answer::Group(g, numbers)) => {
                Reply::owned(211, format!("{} {} {} {}", g.count, g.low, g.high, g.name)).write(out);
                if list {
                    block(out, numbers.iter().map(u64::to_string));
                }
                self.current = (g.count > 0).then_some(g.low);
                self.group = Some(g.name);
            }
            (Pending::Article { part, numbered }, Answer::Article { number, id, article }) => {
                let (code, what) = match part {
                    Part::Article => (220, "Article follows"),
                    Part::Head => (221, "Headers follow"),
                    Part::Body => (222, "Body follows"),
                    Part::Stat => (223, "Article exists"),
                };
                Reply::owned(code, format!("{number} {id} {what}")).write(out);
                let (head, body) = split_article(&article);
                match part {
                    Part::Article => write_multiline(&article, None, out),
                    Part::Head => write_multiline(head, None, out),
                    Part::Body => write_multiline(body, None, out),
                    Part::Stat => {}
                }
                if numbered {
                    self.current = Some(number);
                }
            }
            (Pending::Step, Answer::Moved { number, id }) => {
                Reply::owned(223, format!("{number} {id} Article found")).write(out);
                self.current = Some(number);
            }
            (Pending::Over, Answer::Overview(lines)) => {
                reply::OVERVIEW_FOLLOWS.write(out);
                block(out, lines);
            }
            (Pending::Hdr { x }, Answer::Headers(values)) => {
                if x { reply::XHDR_FOLLOWS } else { reply::HDR_FOLLOWS }.write(out);
                block(out, values.into_iter().map(|(n, v)| format!("{n} {v}")));
            }
            (Pending::List(kind), Answer::Groups(groups)) => {
                let host = &self.settings.hostname;
                let line = |g: GroupEntry| match kind {
                    ListKind::ActiveTimes => format!("{} {} news@{host}", g.name, g.created),
                    ListKind::Newsgroups => format!("{}\t{}", g.name, g.description),
                    _ => active_line(&g),
                };
                if kind == ListKind::Newsgroups { reply::DESCRIPTIONS_FOLLOW } else { reply::LIST_FOLLOWS }.write(out);
                block(out, groups.into_iter().map(line));
            }
            (Pending::NewGroups, Answer::Groups(groups)) => {
                reply::NEWGROUPS_FOLLOW.write(out);
                block(out, groups.iter().map(active_line));
            }
            (Pending::NewNews, Answer::Ids(ids)) => {
                reply::NEWNEWS_FOLLOWS.write(out);
                block(out, ids);
            }
            (Pending::Date, Answer::Date(secs)) => Reply::owned(111, command::date_time(secs)).write(out),
            // an answer that does not fit the request: the service's mistake
            (_, _) => self.reply(&reply::STORE_FAILED),
        }
    }

    /// TLS is up after STARTTLS (or at connect): RFC 4642 §2.2.2, anything
    /// learnt before the handshake is forgotten.
    pub fn tls_started(&mut self) {
        self.kit.tls = true;
        self.kit.lines.reset();
        self.kit.auth.reset();
        self.pending_user = None;
        self.group = None;
        self.current = None;
        if !matches!(self.state, State::Closed) {
            self.state = State::Command;
        }
    }

    /// Queue a reply the driver decided on (timeouts, shutdown) and close.
    pub fn close_with(&mut self, r: &Reply) {
        self.emit(r);
        self.state = State::Closed;
    }
}

fn starts_with_ignore_case(input: &[u8], prefix: &[u8]) -> bool {
    input.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// `name high low status` (LIST ACTIVE, NEWGROUPS).
fn active_line(g: &GroupEntry) -> String {
    format!("{} {} {} {}", g.name, g.high, g.low, g.posting)
}

/// Write `lines` as a multi-line block: no line breaks inside a line,
/// dot-stuffed, `.`-terminated (RFC 3977 §3.1.1).
fn block(out: &mut Vec<u8>, lines: impl IntoIterator<Item = String>) {
    for l in lines {
        if l.starts_with('.') {
            out.push(b'.');
        }
        out.extend(l.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// An article's header section (with the line end of its last field) and
/// its body (after the empty line); all header when there is no empty line.
fn split_article(article: &[u8]) -> (&[u8], &[u8]) {
    if article.starts_with(b"\r\n") {
        return (&[], &article[2..]);
    }
    match memchr::memmem::find(article, b"\r\n\r\n") {
        Some(i) => (&article[..i + 2], &article[i + 4..]),
        None => (article, &[]),
    }
}

#[cfg(test)]
mod tests;
