//! Assembles IMAP commands from the bytes as they arrive: a command is a
//! line, or several lines joined by literals (`{n}` / `{n+}`, read with
//! [`crate::proto::literal`]). The reader tells the core when to send the
//! `+ ` continuation a synchronising literal needs, refuses a literal over
//! its limit before reading it (a non-synchronising one is consumed
//! unkept), and hands back each complete command parsed
//! ([`super::command::parse`]) or the `BAD` to answer.
//!
//! Bounded (SPEC §13.7): the text of one command (all its lines) is at most
//! `max_line` octets, it carries at most `max_literals` literals, whose sum
//! is at most `max_literal` (64 KB by SPEC §9) or, for APPEND,
//! `max_append_literal` (the server's `max_message_size`). Nothing else is
//! buffered: an overlong line is discarded as it arrives.
//!
//! Left to the core: when to read a command at all (during IDLE and SASL it
//! reads plain lines with [`CommandReader::next_line`]), the state rules,
//! and streaming a large APPEND to disk instead of holding it.

use super::command::{parse, read_tag, BadCommand, Command, CommandError};
use crate::proto::literal::{self, Begin, LiteralReader, Mode};
use crate::proto::{LineReader, LineTooLong};
use bytes::BytesMut;

/// The reader's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Octets of command text (without literals) across all its lines.
    pub max_line: usize,
    /// Octets of literals in any command but APPEND.
    pub max_literal: u64,
    /// Octets of literals in an APPEND.
    pub max_append_literal: u64,
    /// Literals in one command.
    pub max_literals: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_line: 64 * 1024, max_literal: 64 * 1024, max_append_literal: 25 << 20, max_literals: 64 }
    }
}

/// What the reader has for the core.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Send a continuation (`+ ...`), then feed more input.
    Continue,
    Command(Command),
    /// Answer with [`BadCommand::line`]; the command is gone.
    Bad(BadCommand),
}

#[derive(Debug)]
enum State {
    Line,
    Literal(LiteralReader),
    /// A refused command whose rest the client sends anyway: its lines and
    /// non-synchronising literals are consumed, then the BAD is given.
    Discard {
        literal: Option<LiteralReader>,
        bad: BadCommand,
    },
}

#[derive(Debug)]
pub struct CommandReader {
    lines: LineReader,
    limits: Limits,
    mode: Mode,
    buf: Vec<u8>,
    text_len: usize,
    literal_total: u64,
    literals: usize,
    state: State,
}

impl CommandReader {
    pub fn new(limits: Limits, mode: Mode) -> CommandReader {
        CommandReader {
            lines: LineReader::default(),
            limits,
            mode,
            buf: Vec::new(),
            text_len: 0,
            literal_total: 0,
            literals: 0,
            state: State::Line,
        }
    }

    /// Octets held for the command being assembled (for the bound tests).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether no command is part way in.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Line) && self.buf.is_empty()
    }

    /// Drop any command part way in (after STARTTLS, nothing read before counts).
    pub fn reset(&mut self) {
        self.clear();
        self.lines.reset();
    }

    fn clear(&mut self) {
        self.buf = Vec::new();
        self.text_len = 0;
        self.literal_total = 0;
        self.literals = 0;
        self.state = State::Line;
    }

    /// A plain line (IDLE's `DONE`, a SASL response), bounded like a command
    /// line. Only between commands.
    pub fn next_line(&mut self, input: &mut BytesMut) -> Option<Result<BytesMut, LineTooLong>> {
        self.lines.next_line(input, self.limits.max_line)
    }

    fn bad(&mut self, tag: Option<String>, error: CommandError) -> Option<Event> {
        self.clear();
        Some(Event::Bad(BadCommand { tag, error }))
    }

    fn is_append(&self) -> bool {
        let mut words = self.buf.split(|&b| b == b' ');
        words.nth(1).is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
    }

    /// Consume input; `None` when more is needed.
    pub fn next(&mut self, input: &mut BytesMut) -> Option<Event> {
        loop {
            match &mut self.state {
                State::Literal(r) => {
                    let octets = r.feed(input)?;
                    self.buf.extend_from_slice(&octets);
                    self.state = State::Line;
                }
                State::Discard { literal: Some(r), .. } => {
                    r.feed(input)?;
                    if let State::Discard { literal, .. } = &mut self.state {
                        *literal = None;
                    }
                }
                State::Discard { literal: None, bad } => {
                    let bad = bad.clone();
                    let line = match self.lines.next_line(input, self.limits.max_line)? {
                        Ok(line) => line,
                        Err(LineTooLong) => return self.bad(bad.tag, bad.error),
                    };
                    match literal::announced(&line) {
                        Some(a) if !a.synchronising => {
                            self.state = State::Discard { literal: discarding(a), bad };
                        }
                        // the end of the command, or a synchronising literal
                        // the client waits to be invited to send: answer now
                        _ => return self.bad(bad.tag, bad.error),
                    }
                }
                State::Line => {
                    let allowance = self.limits.max_line.saturating_sub(self.text_len);
                    let line = match self.lines.next_line(input, allowance)? {
                        Ok(line) => line,
                        Err(LineTooLong) => {
                            let tag = read_tag(&self.buf);
                            return self.bad(tag, CommandError::LineTooLong);
                        }
                    };
                    self.text_len += line.len();
                    self.buf.extend_from_slice(&line);
                    let Some(a) = literal::announced(&line) else {
                        let done = parse(&self.buf);
                        self.clear();
                        return Some(match done {
                            Ok(c) => Event::Command(c),
                            Err(b) => Event::Bad(b),
                        });
                    };
                    self.buf.extend_from_slice(b"\r\n");
                    let tag = read_tag(&self.buf);
                    if self.literals == self.limits.max_literals {
                        let bad = BadCommand { tag, error: CommandError::TooManyLiterals };
                        if a.synchronising {
                            return self.bad(bad.tag, bad.error);
                        }
                        self.clear();
                        self.state = State::Discard { literal: discarding(a), bad };
                        continue;
                    }
                    let limit = if self.is_append() { self.limits.max_append_literal } else { self.limits.max_literal };
                    let room = limit.saturating_sub(self.literal_total);
                    self.literals += 1;
                    self.literal_total = self.literal_total.saturating_add(a.size);
                    match literal::begin(a, room, self.mode) {
                        Begin::SendContinuation(r) => {
                            self.state = State::Literal(r);
                            return Some(Event::Continue);
                        }
                        Begin::Read(r) => self.state = State::Literal(r),
                        Begin::Refuse(e) => return self.bad(tag, e.into()),
                        Begin::RefuseAndDiscard(e, r) => {
                            self.clear();
                            self.state = State::Discard { literal: Some(r), bad: BadCommand { tag, error: e.into() } };
                        }
                    }
                }
            }
        }
    }
}

/// A reader that consumes a non-synchronising literal without keeping it
/// (`None` only for a synchronising one, which is never discarded).
fn discarding(a: literal::Announced) -> Option<LiteralReader> {
    match literal::begin(a, 0, Mode::Plus) {
        Begin::SendContinuation(r) | Begin::Read(r) | Begin::RefuseAndDiscard(_, r) => Some(r),
        Begin::Refuse(_) => None,
    }
}
