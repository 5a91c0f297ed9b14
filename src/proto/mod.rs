//! Sans-IO protocol cores. Each takes bytes and returns replies and events;
//! none touches a socket, a clock or a disk. `net::driver` runs them.
//! The kit they share: [`LineReader`], the line-command skeleton
//! (`session`), the SASL exchange (`sasl`), the dot-terminated body reader
//! (`dot`) and IMAP literals (`literal`).

pub mod dot;
pub mod imap;
pub mod literal;
pub mod nntp;
pub mod pop3;
pub mod sasl;
pub mod session;
pub mod smtp;

use bytes::BytesMut;

/// A line longer than the reader's limit; it was discarded as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Bounded line framing shared by the protocol cores. A line ends at LF (a
/// CR before it is dropped). A line longer than the limit is thrown away as
/// it arrives — nothing of it is buffered — and reported once it ends, so a
/// peer can never grow our memory with an endless line.
#[derive(Debug, Default)]
pub struct LineReader {
    discarding: bool,
}

impl LineReader {
    /// The next complete line of at most `max` octets (without its line
    /// end), `Err(LineTooLong)` for one that was longer, `None` when more
    /// input is needed.
    pub fn next_line(&mut self, input: &mut BytesMut, max: usize) -> Option<Result<BytesMut, LineTooLong>> {
        let Some(nl) = memchr::memchr(b'\n', input) else {
            if input.len() > max {
                input.clear();
                self.discarding = true;
            }
            return None;
        };
        let mut line = input.split_to(nl + 1);
        if std::mem::take(&mut self.discarding) || nl > max {
            return Some(Err(LineTooLong));
        }
        line.truncate(nl);
        if line.last() == Some(&b'\r') {
            line.truncate(nl - 1);
        }
        Some(Ok(line))
    }

    /// Forget a line being discarded (the connection started over, e.g. TLS).
    pub fn reset(&mut self) {
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_overlong_lines() {
        let mut r = LineReader::default();
        let mut input = BytesMut::from(&b"one\r\ntwo\nthr"[..]);
        assert_eq!(r.next_line(&mut input, 10), Some(Ok(BytesMut::from(&b"one"[..]))));
        assert_eq!(r.next_line(&mut input, 10), Some(Ok(BytesMut::from(&b"two"[..]))));
        assert_eq!(r.next_line(&mut input, 10), None);
        input.extend_from_slice(b"eeeeeeeeeeeeeeeeeeee");
        assert_eq!(r.next_line(&mut input, 10), None);
        assert!(input.is_empty(), "an overlong line is not buffered");
        input.extend_from_slice(b"tail\r\nok\r\n");
        assert_eq!(r.next_line(&mut input, 10), Some(Err(LineTooLong)));
        assert_eq!(r.next_line(&mut input, 10), Some(Ok(BytesMut::from(&b"ok"[..]))));
    }
}
