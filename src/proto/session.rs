//! The line-command skeleton every text protocol core runs on (SMTP and
//! POP3 today, IMAP and NNTP next): [`feed`] reads bounded lines and hands
//! each to the core's command parser, or to the SASL exchange under way
//! ([`super::sasl::Exchange`]), and does what every such core does the same
//! way — stop while a decision or an output drain is awaited, close at the
//! error limit, refuse an overlong line without buffering it. A core
//! implements [`LineCore`] (its states, greeting, framing and command
//! parser), keeps a [`Common`] (output, TLS, line framing, errors, the AUTH
//! slot) and names its events with [`kit_event!`]; nothing else.

use super::sasl::{Credentials, Exchange, Framing, Mechanism, SaslFailure, Step};
use super::{LineReader, LineTooLong};
use bytes::BytesMut;

/// The longest SASL line (RFC 4954 §4: 12288 octets), and so the default
/// bound on any line a core reads at all.
pub const MAX_SASL_LINE: usize = 12288;

/// Where a core stands, as the skeleton sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The session ended; input is dropped.
    Closed,
    /// An event is out; nothing is read until the decision comes back.
    Waiting,
    Open,
}

impl Phase {
    pub fn of(closed: bool, waiting: bool) -> Phase {
        match (closed, waiting) {
            (true, _) => Phase::Closed,
            (_, true) => Phase::Waiting,
            _ => Phase::Open,
        }
    }
}

/// What a core wants before its next line.
#[derive(Debug, PartialEq, Eq)]
pub enum Before<E> {
    /// [`feed`] returns this (`None`: wait for input or for a decision).
    Return(Option<E>),
    /// The state changed without a line (SMTP DATA ended); ask again.
    Again,
    /// Read the next line.
    ReadLine,
}

/// What an AUTH exchange asks of the service; each core's `Event::Auth`.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthEvent {
    /// AUTH is about to start: take the throttle slot, then answer with
    /// the core's `auth_begin`.
    Start { mechanism: Mechanism },
    /// The exchange gave these: check them and give the core its verdict.
    Credentials(Credentials),
    /// The exchange made no sense: it counts as a failure.
    Failed(SaslFailure),
}

/// Where an AUTH exchange stands, for the core's own state.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthStage<'a, R> {
    /// Client lines go to the exchange.
    Exchange,
    /// Credentials or a failure are out; the service's verdict is awaited.
    Verdict,
    /// Over without a login: back to commands, with this reply.
    Over(&'a R),
}

/// The AUTH state every core keeps the same way.
#[derive(Debug)]
pub struct AuthSlot<E> {
    start: Option<(Mechanism, Option<Vec<u8>>)>,
    exchange: Option<Exchange>,
    /// An event made by [`auth_begin`], returned by the next `feed`.
    ready: Option<E>,
}

impl<E> Default for AuthSlot<E> {
    fn default() -> Self {
        AuthSlot { start: None, exchange: None, ready: None }
    }
}

impl<E> AuthSlot<E> {
    /// The client asked for AUTH: the event that asks the service to let
    /// it start ([`auth_begin`]).
    pub fn request(&mut self, mechanism: Mechanism, initial: Option<&str>) -> AuthEvent {
        self.start = Some((mechanism, initial.map(|i| i.as_bytes().to_vec())));
        AuthEvent::Start { mechanism }
    }

    /// The event a decision method produced, if any; a core's `feed`
    /// returns it first while it waits.
    pub fn ready(&mut self) -> Option<E> {
        self.ready.take()
    }

    /// Forget any exchange (TLS started: RFC 3207 §4.2, RFC 2595 §4).
    pub fn reset(&mut self) {
        *self = AuthSlot::default();
    }
}

/// The replies the skeleton sends itself, in a protocol's own words.
pub trait KitReplies {
    /// To `*` and to a response that is not base64; neither counts as a
    /// failed login, no credentials were tried.
    const CANCELLED: Self;
    const BAD_BASE64: Self;
    /// Closes a session at the error limit.
    const TOO_MANY_ERRORS: Self;
}

/// The events the skeleton makes itself, as a core's own event type has
/// them, and the core's reply type (the two go together). A core whose
/// event enum has `Auth(AuthEvent)` and `TooManyErrors` says so with
/// [`kit_event!`].
pub trait KitEvent: Sized {
    type Reply: KitReplies;
    /// An AUTH exchange's event.
    const AUTH: fn(AuthEvent) -> Self;
    /// The session closed at the error limit.
    const TOO_MANY_ERRORS: Self;
}

/// What every line core keeps the same way: the replies not yet taken,
/// the line framing (it remembers an overlong line being discarded), the
/// errors so far, the AUTH slot, and whether TLS is up (implicit, or after
/// the protocol's STARTTLS): what may be offered and sent depends on it.
#[derive(Debug)]
pub struct Common<E> {
    pub out: Vec<u8>,
    pub tls: bool,
    pub lines: LineReader,
    pub errors: u32,
    pub auth: AuthSlot<E>,
}

impl<E> Default for Common<E> {
    fn default() -> Self {
        // room for a few reply lines before the first grows it
        Common {
            out: Vec::with_capacity(512),
            tls: false,
            lines: LineReader::default(),
            errors: 0,
            auth: AuthSlot::default(),
        }
    }
}

/// A core's reply type, through its events.
pub type ReplyOf<C> = <<C as LineCore>::Event as KitEvent>::Reply;

/// `kit_event!(Event, Reply)`: [`KitEvent`] for a core's event enum whose
/// `Auth(AuthEvent)` and `TooManyErrors` carry the skeleton's events.
macro_rules! kit_event {
    ($event:ident, $reply:ty) => {
        impl $crate::proto::session::KitEvent for $event {
            type Reply = $reply;
            const AUTH: fn($crate::proto::session::AuthEvent) -> $event = $event::Auth;
            const TOO_MANY_ERRORS: $event = $event::TooManyErrors;
        }
    };
}
pub(crate) use kit_event;

/// The parts of a line-command core that differ between protocols.
pub trait LineCore {
    type Event: KitEvent;
    /// The longest line read at all (AUTH commands, SASL responses).
    const MAX_LINE: usize = MAX_SASL_LINE;
    /// The longest command line, CRLF included, unless [`LineCore::long_allowed`].
    const MAX_COMMAND: usize;
    /// How this protocol frames a SASL challenge.
    const FRAMING: Framing;

    fn phase(&self) -> Phase;
    /// Queue the greeting (the first reply of a session).
    fn greeting(&mut self);
    /// Whether an AUTH exchange is under way (a decision or a client line
    /// is awaited); false again once it succeeded, failed or was cancelled.
    fn auth_in_progress(&self) -> bool;
    /// [`feed`] stopped because of the output waiting, not for lack of
    /// input: take the output, send it, and feed again.
    fn output_full(&self) -> bool {
        false
    }
    /// Move the replies queued so far to `into`.
    fn take_output(&mut self, into: &mut Vec<u8>) {
        into.append(&mut self.common().out);
    }
    fn is_closed(&self) -> bool {
        self.phase() == Phase::Closed
    }
    /// An open core that reads no line now: output full, SMTP DATA.
    fn before_line(&mut self, _input: &mut BytesMut) -> Before<Self::Event> {
        Before::ReadLine
    }
    /// The state every core keeps the same way.
    fn common(&mut self) -> &mut Common<Self::Event>;
    fn over_error_limit(&self) -> bool;
    /// Queue this reply and close.
    fn close(&mut self, r: &ReplyOf<Self>);
    /// Answer a line longer than the limit (it counts as an error).
    fn line_too_long(&mut self);
    /// Whether this command may be longer than `MAX_COMMAND` (AUTH, PASS).
    fn long_allowed(line: &[u8]) -> bool;
    fn command(&mut self, line: &[u8]) -> Option<Self::Event>;
    /// Follow the exchange in the core's own state.
    fn auth_stage(&mut self, stage: AuthStage<'_, ReplyOf<Self>>);
}

/// Process input until an event needs a decision or more input is needed.
pub fn feed<C: LineCore>(core: &mut C, input: &mut BytesMut) -> Option<C::Event> {
    loop {
        match core.phase() {
            Phase::Closed => {
                input.clear();
                return None;
            }
            Phase::Waiting => return core.common().auth.ready(),
            Phase::Open => {}
        }
        match core.before_line(input) {
            Before::Return(event) => return event,
            Before::Again => continue,
            Before::ReadLine => {}
        }
        if core.over_error_limit() {
            core.close(&ReplyOf::<C>::TOO_MANY_ERRORS);
            return Some(C::Event::TOO_MANY_ERRORS);
        }
        // read up to the AUTH limit; ordinary commands are held to theirs below
        let line = match core.common().lines.next_line(input, C::MAX_LINE)? {
            Ok(line) => line,
            Err(LineTooLong) => {
                core.line_too_long();
                continue;
            }
        };
        let event = if let Some(exchange) = core.common().auth.exchange.as_mut() {
            let step = exchange.respond(&line);
            sasl_step(core, step)
        } else if line.len() + 2 > C::MAX_COMMAND && !C::long_allowed(&line) {
            core.line_too_long();
            None
        } else {
            core.command(&line)
        };
        if event.is_some() {
            return event;
        }
    }
}

/// The service's answer to [`AuthEvent::Start`]: `Ok(())` once it took the
/// throttle slot, starting the exchange; `Err(reply)` refuses it.
pub fn auth_begin<C: LineCore>(core: &mut C, slot: Result<(), ReplyOf<C>>) {
    let Some((mechanism, initial)) = core.common().auth.start.take() else { return };
    if let Err(refusal) = slot {
        return core.auth_stage(AuthStage::Over(&refusal));
    }
    core.auth_stage(AuthStage::Exchange);
    let (exchange, step) = Exchange::start(mechanism, initial.as_deref(), C::FRAMING);
    core.common().auth.exchange = Some(exchange);
    let event = sasl_step(core, step);
    core.common().auth.ready = event;
}

fn sasl_step<C: LineCore>(core: &mut C, step: Step) -> Option<C::Event> {
    let event = match step {
        Step::Challenge(line) => {
            core.common().out.extend_from_slice(&line);
            return None;
        }
        Step::Done(credentials) => AuthEvent::Credentials(credentials),
        Step::Failed(why @ (SaslFailure::Cancelled | SaslFailure::BadBase64)) => {
            core.common().auth.exchange = None;
            let r = if why == SaslFailure::Cancelled { ReplyOf::<C>::CANCELLED } else { ReplyOf::<C>::BAD_BASE64 };
            core.auth_stage(AuthStage::Over(&r));
            return None;
        }
        Step::Failed(why) => AuthEvent::Failed(why),
    };
    core.common().auth.exchange = None;
    core.auth_stage(AuthStage::Verdict);
    Some((C::Event::AUTH)(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    pub struct Words(&'static str);

    impl KitReplies for Words {
        const CANCELLED: Words = Words("E cancelled");
        const BAD_BASE64: Words = Words("E base64");
        const TOO_MANY_ERRORS: Words = Words("E bye");
    }

    /// A toy core: commands echo, `AUTH` starts PLAIN, errors are `E` lines.
    #[derive(Default)]
    struct Toy {
        kit: Common<String>,
        closed: bool,
        waiting: bool,
    }

    impl KitEvent for String {
        type Reply = Words;
        const AUTH: fn(AuthEvent) -> String = |e| format!("{e:?}");
        const TOO_MANY_ERRORS: String = String::new();
    }

    impl LineCore for Toy {
        type Event = String;
        const MAX_LINE: usize = 40;
        const MAX_COMMAND: usize = 12;
        const FRAMING: Framing = Framing::Continuation;

        fn phase(&self) -> Phase {
            Phase::of(self.closed, self.waiting)
        }
        fn greeting(&mut self) {}
        fn auth_in_progress(&self) -> bool {
            self.kit.auth.exchange.is_some()
        }
        fn common(&mut self) -> &mut Common<String> {
            &mut self.kit
        }
        fn over_error_limit(&self) -> bool {
            self.kit.errors >= 3
        }
        fn close(&mut self, Words(r): &Words) {
            self.closed = true;
            self.kit.out.extend_from_slice(format!("{r}\r\n").as_bytes());
        }
        fn line_too_long(&mut self) {
            self.kit.errors += 1;
            self.kit.out.extend_from_slice(b"E long\r\n");
        }
        fn long_allowed(line: &[u8]) -> bool {
            line.starts_with(b"AUTH")
        }
        fn command(&mut self, line: &[u8]) -> Option<String> {
            if let Some(m) = line.strip_prefix(b"AUTH ") {
                let m = Mechanism::parse(std::str::from_utf8(m).unwrap()).unwrap();
                self.waiting = true;
                return Some(format!("{:?}", self.kit.auth.request(m, None)));
            }
            self.kit.out.extend_from_slice(line);
            self.kit.out.extend_from_slice(b"\r\n");
            None
        }
        fn auth_stage(&mut self, stage: AuthStage<'_, Words>) {
            self.waiting = stage == AuthStage::Verdict;
            if let AuthStage::Over(Words(r)) = stage {
                self.kit.out.extend_from_slice(format!("{r}\r\n").as_bytes());
            }
        }
    }

    fn output(t: &mut Toy) -> String {
        String::from_utf8(std::mem::take(&mut t.kit.out)).unwrap()
    }

    #[test]
    fn commands_overlong_lines_and_the_error_limit() {
        let mut t = Toy::default();
        let mut input = BytesMut::from(&b"hello\r\nthis is too long\r\n"[..]);
        assert_eq!(feed(&mut t, &mut input), None);
        assert_eq!(output(&mut t), "hello\r\nE long\r\n");
        input.extend_from_slice(&[b'x'; 100]);
        input.extend_from_slice(b"\r\nlong again here\r\nlate\r\n");
        assert_eq!(feed(&mut t, &mut input), Some(String::new()), "the third error closes");
        assert_eq!(output(&mut t), "E long\r\nE long\r\nE bye\r\n");
        assert_eq!(feed(&mut t, &mut input), None);
        assert!(input.is_empty(), "a closed core drops input");
    }

    #[test]
    fn an_exchange_takes_the_lines_until_it_ends() {
        let mut t = Toy::default();
        let mut input = BytesMut::from(&b"AUTH PLAIN\r\nAGFsaWNlAHB3\r\nnext\r\n"[..]);
        assert_eq!(feed(&mut t, &mut input), Some("Start { mechanism: Plain }".into()));
        assert_eq!(feed(&mut t, &mut input), None, "waiting for the service");
        auth_begin(&mut t, Ok(()));
        assert_eq!(output(&mut t), "+ \r\n");
        let ev = feed(&mut t, &mut input).unwrap();
        assert!(ev.starts_with("Credentials(Credentials { username: \"alice\""), "{ev}");
        t.waiting = false;
        assert_eq!(feed(&mut t, &mut input), None);
        assert_eq!(output(&mut t), "next\r\n");
    }

    #[test]
    fn refusals_cancel_and_failures() {
        let mut t = Toy::default();
        let mut input = BytesMut::from(&b"AUTH LOGIN\r\n*\r\n"[..]);
        feed(&mut t, &mut input);
        auth_begin(&mut t, Err(Words("E throttled")));
        feed(&mut t, &mut input);
        assert_eq!(output(&mut t), "E throttled\r\n*\r\n", "refused: the next line is a command");
        t.kit.auth.request(Mechanism::Login, Some("!"));
        auth_begin(&mut t, Ok(()));
        assert_eq!(output(&mut t), "E base64\r\n");
        assert!(t.kit.auth.exchange.is_none() && t.kit.auth.ready().is_none());
        t.kit.auth.request(Mechanism::Login, None);
        auth_begin(&mut t, Ok(()));
        feed(&mut t, &mut BytesMut::from(&b"*\r\n"[..]));
        assert_eq!(output(&mut t), "+ VXNlcm5hbWU6\r\nE cancelled\r\n");
        assert!(t.kit.auth.exchange.is_none());
        t.kit.auth.request(Mechanism::Plain, Some("bm9udWw="));
        auth_begin(&mut t, Ok(()));
        assert_eq!(t.kit.auth.ready(), Some("Failed(Malformed)".into()));
    }
}
