//! The line-command skeleton every text protocol core runs on (SMTP and
//! POP3 today, IMAP and NNTP next): [`feed`] reads bounded lines and hands
//! each to the core's command parser, or to the SASL exchange under way
//! ([`super::sasl::Exchange`]), and does what every such core does the same
//! way — stop while a decision or an output drain is awaited, close at the
//! error limit, refuse an overlong line without buffering it. A core
//! implements [`LineCore`]: its states, replies and framing; nothing else.

use super::sasl::{Credentials, Exchange, Framing, Mechanism, SaslFailure, Step};
use super::{LineReader, LineTooLong};
use bytes::BytesMut;

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

/// The parts of a line-command core that differ between protocols.
pub trait LineCore {
    type Event;
    /// The longest line read at all (AUTH commands, SASL responses).
    const MAX_LINE: usize;
    /// The longest command line, CRLF included, unless [`LineCore::long_allowed`].
    const MAX_COMMAND: usize;
    /// How this protocol frames a SASL challenge.
    const FRAMING: Framing;

    /// Closed, waiting, output full, or a state that reads no lines.
    fn before_line(&mut self, input: &mut BytesMut) -> Before<Self::Event>;
    fn lines(&mut self) -> &mut LineReader;
    fn over_error_limit(&self) -> bool;
    /// Queue the closing reply and close; the event that says so.
    fn close_for_errors(&mut self) -> Option<Self::Event>;
    /// Answer a line longer than the limit (it counts as an error).
    fn line_too_long(&mut self);
    /// Whether this command may be longer than `MAX_COMMAND` (AUTH, PASS).
    fn long_allowed(line: &[u8]) -> bool;
    fn command(&mut self, line: &[u8]) -> Option<Self::Event>;

    /// The slot of the SASL exchange awaiting a client line.
    fn sasl(&mut self) -> &mut Option<Exchange>;
    /// Send a challenge line (already framed); the exchange goes on.
    fn challenge(&mut self, line: &[u8]);
    /// The client cancelled (`*`) or sent bad base64: answer it here; no
    /// credentials were tried, so no failure counts.
    fn sasl_refused(&mut self, why: SaslFailure);
    /// The exchange ended with something for the service: credentials to
    /// check, or a malformed exchange to count as a failure.
    fn sasl_finished(&mut self, result: Result<Credentials, SaslFailure>) -> Self::Event;
}

/// Process input until an event needs a decision or more input is needed.
pub fn feed<C: LineCore>(core: &mut C, input: &mut BytesMut) -> Option<C::Event> {
    loop {
        match core.before_line(input) {
            Before::Return(event) => return event,
            Before::Again => continue,
            Before::ReadLine => {}
        }
        if core.over_error_limit() {
            return core.close_for_errors();
        }
        // read up to the AUTH limit; ordinary commands are held to theirs below
        let line = match core.lines().next_line(input, C::MAX_LINE)? {
            Ok(line) => line,
            Err(LineTooLong) => {
                core.line_too_long();
                continue;
            }
        };
        let event = if let Some(exchange) = core.sasl().as_mut() {
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

/// Start an exchange the service let begin (it took the throttle slot).
/// An event comes back when the initial response already ended it.
pub fn sasl_begin<C: LineCore>(core: &mut C, mechanism: Mechanism, initial: Option<&[u8]>) -> Option<C::Event> {
    let (exchange, step) = Exchange::start(mechanism, initial, C::FRAMING);
    *core.sasl() = Some(exchange);
    sasl_step(core, step)
}

fn sasl_step<C: LineCore>(core: &mut C, step: Step) -> Option<C::Event> {
    if let Step::Challenge(line) = step {
        core.challenge(&line);
        return None;
    }
    *core.sasl() = None;
    match step {
        Step::Failed(why @ (SaslFailure::Cancelled | SaslFailure::BadBase64)) => {
            core.sasl_refused(why);
            None
        }
        Step::Failed(why) => Some(core.sasl_finished(Err(why))),
        Step::Done(credentials) => Some(core.sasl_finished(Ok(credentials))),
        Step::Challenge(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy core: commands echo, `AUTH` starts PLAIN, errors are `E` lines.
    #[derive(Default)]
    struct Toy {
        out: Vec<u8>,
        lines: LineReader,
        sasl: Option<Exchange>,
        errors: u32,
        closed: bool,
        waiting: bool,
    }

    impl LineCore for Toy {
        type Event = String;
        const MAX_LINE: usize = 40;
        const MAX_COMMAND: usize = 12;
        const FRAMING: Framing = Framing::Continuation;

        fn before_line(&mut self, input: &mut BytesMut) -> Before<String> {
            if self.closed {
                input.clear();
                return Before::Return(None);
            }
            match self.waiting {
                true => Before::Return(None),
                false => Before::ReadLine,
            }
        }
        fn lines(&mut self) -> &mut LineReader {
            &mut self.lines
        }
        fn over_error_limit(&self) -> bool {
            self.errors >= 3
        }
        fn close_for_errors(&mut self) -> Option<String> {
            self.closed = true;
            Some("closed".into())
        }
        fn line_too_long(&mut self) {
            self.errors += 1;
            self.out.extend_from_slice(b"E long\r\n");
        }
        fn long_allowed(line: &[u8]) -> bool {
            line.starts_with(b"AUTH")
        }
        fn command(&mut self, line: &[u8]) -> Option<String> {
            if line.starts_with(b"AUTH") {
                self.waiting = true;
                return Some("auth".into());
            }
            self.out.extend_from_slice(line);
            self.out.extend_from_slice(b"\r\n");
            None
        }
        fn sasl(&mut self) -> &mut Option<Exchange> {
            &mut self.sasl
        }
        fn challenge(&mut self, line: &[u8]) {
            self.out.extend_from_slice(line);
        }
        fn sasl_refused(&mut self, why: SaslFailure) {
            self.out.extend_from_slice(format!("E {why}\r\n").as_bytes());
        }
        fn sasl_finished(&mut self, result: Result<Credentials, SaslFailure>) -> String {
            self.waiting = true;
            match result {
                Ok(c) => format!("credentials {}", c.username),
                Err(e) => format!("failed: {e}"),
            }
        }
    }

    fn output(t: &mut Toy) -> String {
        String::from_utf8(std::mem::take(&mut t.out)).unwrap()
    }

    #[test]
    fn commands_overlong_lines_and_the_error_limit() {
        let mut t = Toy::default();
        let mut input = BytesMut::from(&b"hello\r\nthis is too long\r\n"[..]);
        assert_eq!(feed(&mut t, &mut input), None);
        assert_eq!(output(&mut t), "hello\r\nE long\r\n");
        input.extend_from_slice(&[b'x'; 100]);
        input.extend_from_slice(b"\r\nlong again here\r\nlate\r\n");
        assert_eq!(feed(&mut t, &mut input), Some("closed".into()), "the third error closes");
        assert_eq!(output(&mut t), "E long\r\nE long\r\n");
        assert_eq!(feed(&mut t, &mut input), None);
        assert!(input.is_empty(), "a closed core drops input");
    }

    #[test]
    fn an_exchange_takes_the_lines_until_it_ends() {
        let mut t = Toy::default();
        let mut input = BytesMut::from(&b"AUTH PLAIN\r\nAGFsaWNlAHB3\r\nnext\r\n"[..]);
        assert_eq!(feed(&mut t, &mut input), Some("auth".into()));
        assert_eq!(feed(&mut t, &mut input), None, "waiting for the service");
        t.waiting = false;
        assert_eq!(sasl_begin(&mut t, Mechanism::Plain, None), None);
        assert_eq!(feed(&mut t, &mut input), Some("credentials alice".into()));
        assert!(t.sasl.is_none());
        t.waiting = false;
        assert_eq!(feed(&mut t, &mut input), None);
        assert_eq!(output(&mut t), "+ \r\nnext\r\n");

        let mut input = BytesMut::from(&b"*\r\n"[..]);
        assert_eq!(sasl_begin(&mut t, Mechanism::Login, None), None);
        assert_eq!(feed(&mut t, &mut input), None);
        assert_eq!(output(&mut t), "+ VXNlcm5hbWU6\r\nE the client cancelled the exchange\r\n");
        assert_eq!(sasl_begin(&mut t, Mechanism::Plain, Some(b"!")), None);
        assert_eq!(
            sasl_begin(&mut t, Mechanism::Plain, Some(b"bm9udWw=")),
            Some("failed: the response is malformed".into())
        );
        assert_eq!(output(&mut t), "E the response is not valid base64\r\n");
    }
}
