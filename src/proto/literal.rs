//! IMAP literals (RFC 3501 §4.3, RFC 7888): a command line that ends in
//! `{n}` (synchronising: the server must send a `+ ` continuation before
//! the client sends the n octets) or `{n+}` (non-synchronising: the octets
//! follow at once). Bounded: a literal over the server's maximum is
//! refused before it is read; a non-synchronising one the client sends
//! anyway is consumed without being kept. Under LITERAL- (RFC 7888 §4) a
//! non-synchronising literal may carry at most 4096 octets.

use bytes::{Buf, BytesMut};

/// The largest non-synchronising literal under LITERAL- (RFC 7888 §4).
pub const LITERAL_MINUS_MAX: u64 = 4096;

/// What the server advertised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `LITERAL+`: non-synchronising literals of any size (up to our maximum).
    Plus,
    /// `LITERAL-`: non-synchronising literals up to 4096 octets.
    Minus,
}

/// A literal announced at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announced {
    pub size: u64,
    pub synchronising: bool,
}

/// Why a literal is refused; the core answers the command with a tagged NO/BAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LiteralError {
    #[error("the literal of {size} octets exceeds the limit of {max}")]
    TooBig { size: u64, max: u64 },
    #[error("a non-synchronising literal of {size} octets exceeds the LITERAL- limit of 4096")]
    NonSyncTooBig { size: u64 },
}

/// The literal a line (its line end removed) announces: `{n}` or `{n+}` at
/// its very end. `None` when the line ends otherwise.
pub fn announced(line: &[u8]) -> Option<Announced> {
    let inner = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', inner)?;
    let inner = &inner[open + 1..];
    let (digits, synchronising) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    // RFC 3501 `number`: at most 32 bits, so at most 10 digits
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    Some(Announced { size, synchronising })
}

/// How to go on after a literal was announced.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// Send the `+ ` continuation, then read with the reader.
    SendContinuation(LiteralReader),
    /// The octets follow at once: read with the reader.
    Read(LiteralReader),
    /// Refuse the command; no octets follow (no continuation was sent).
    Refuse(LiteralError),
    /// Refuse the command, but the client sends the octets anyway: consume
    /// them with this reader (it keeps nothing) before the next command.
    RefuseAndDiscard(LiteralError, LiteralReader),
}

/// Decide what an announced literal needs, given our maximum and mode.
pub fn begin(a: Announced, max: u64, mode: Mode) -> Begin {
    let limit = if !a.synchronising && mode == Mode::Minus { max.min(LITERAL_MINUS_MAX) } else { max };
    let refusal = match (a.size > limit, a.synchronising, mode) {
        (false, _, _) => None,
        (true, false, Mode::Minus) if a.size <= max => Some(LiteralError::NonSyncTooBig { size: a.size }),
        (true, _, _) => Some(LiteralError::TooBig { size: a.size, max }),
    };
    match (refusal, a.synchronising) {
        (None, true) => Begin::SendContinuation(LiteralReader::new(a.size, true)),
        (None, false) => Begin::Read(LiteralReader::new(a.size, true)),
        (Some(e), true) => Begin::Refuse(e),
        (Some(e), false) => Begin::RefuseAndDiscard(e, LiteralReader::new(a.size, false)),
    }
}

/// Reads exactly the announced number of octets, in as many pieces as they
/// arrive; what follows stays in the input.
#[derive(Debug, PartialEq, Eq)]
pub struct LiteralReader {
    remaining: u64,
    keep: bool,
    body: Vec<u8>,
}

impl LiteralReader {
    fn new(size: u64, keep: bool) -> LiteralReader {
        // capacity is not trusted to the announcement: it grows as octets arrive
        let cap = if keep { size.min(64 * 1024) as usize } else { 0 };
        LiteralReader { remaining: size, keep, body: Vec::with_capacity(cap) }
    }

    /// Consume from `input`; `Some(octets)` once all have arrived (empty for
    /// a discarded literal), `None` while more are needed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        let take = (input.len() as u64).min(self.remaining) as usize;
        if self.keep {
            self.body.extend_from_slice(&input[..take]);
        }
        input.advance(take);
        self.remaining -= take as u64;
        (self.remaining == 0).then(|| std::mem::take(&mut self.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements() {
        assert_eq!(announced(b"A1 APPEND INBOX {5}"), Some(Announced { size: 5, synchronising: true }));
        assert_eq!(announced(b"A1 APPEND INBOX {0+}"), Some(Announced { size: 0, synchronising: false }));
        for not in [&b"A1 NOOP"[..], b"{}", b"{+}", b"{5", b"{-1}", b"{12345678901}", b"{5 }", b"{5++}"] {
            assert_eq!(announced(not), None, "{:?}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn limits_and_modes() {
        let sync = |size| Announced { size, synchronising: true };
        let plus = |size| Announced { size, synchronising: false };
        assert!(matches!(begin(sync(10), 10, Mode::Plus), Begin::SendContinuation(_)));
        assert!(matches!(begin(plus(10), 10, Mode::Minus), Begin::Read(_)));
        assert_eq!(begin(sync(11), 10, Mode::Plus), Begin::Refuse(LiteralError::TooBig { size: 11, max: 10 }));
        assert!(matches!(begin(plus(5000), 1 << 20, Mode::Plus), Begin::Read(_)));
        assert!(matches!(begin(sync(5000), 1 << 20, Mode::Minus), Begin::SendContinuation(_)));
        match begin(plus(5000), 1 << 20, Mode::Minus) {
            Begin::RefuseAndDiscard(LiteralError::NonSyncTooBig { size: 5000 }, mut r) => {
                let mut input = BytesMut::from(&[b'x'; 5000][..]);
                input.extend_from_slice(b"A2 NOOP\r\n");
                assert_eq!(r.feed(&mut input), Some(Vec::new()), "consumed, not kept");
                assert_eq!(&input[..], b"A2 NOOP\r\n");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(begin(plus(11), 10, Mode::Plus), Begin::RefuseAndDiscard(LiteralError::TooBig { .. }, _)));
    }

    /// Every split of the input into two reads gives the same octets and
    /// leaves the same rest, for kept and discarded literals alike.
    #[test]
    fn every_split_gives_the_same_result() {
        let input: &[u8] = b"hello\r\n{world}\r\n A2 NOOP\r\n";
        for (announce, mode) in [(&b"A1 APPEND INBOX {14}"[..], Mode::Plus), (b"A1 APPEND INBOX {14+}", Mode::Minus)] {
            let a = announced(announce).unwrap();
            for (max, expected) in [(100, b"hello\r\n{world}".to_vec()), (3, Vec::new())] {
                for cut in 0..=input.len() {
                    let mut r = match begin(a, max, mode) {
                        Begin::SendContinuation(r) | Begin::Read(r) | Begin::RefuseAndDiscard(_, r) => r,
                        Begin::Refuse(_) => {
                            assert!(a.synchronising && max < a.size, "refused only when nothing follows");
                            continue;
                        }
                    };
                    let mut buf = BytesMut::from(&input[..cut]);
                    let mut got = r.feed(&mut buf);
                    buf.extend_from_slice(&input[cut..]);
                    if got.is_none() {
                        got = r.feed(&mut buf);
                    }
                    assert_eq!(got.as_deref(), Some(&expected[..]), "split at {cut}");
                    assert_eq!(&buf[..], b"\r\n A2 NOOP\r\n", "split at {cut}");
                }
            }
        }
    }
}
