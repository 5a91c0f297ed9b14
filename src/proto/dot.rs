//! A dot-terminated body (SMTP DATA, NNTP POST/IHAVE/TAKETHIS and article
//! transfer), read up to `<CRLF>.<CRLF>`, protocol-neutral; and the other
//! way, [`write_multiline`]: a stored message or article as a dot-stuffed
//! multi-line response (POP3 RETR/TOP, NNTP ARTICLE/HEAD/BODY). Stored
//! messages are CRLF already and come out byte for byte; a bare LF is
//! written as CRLF so that no client can disagree with us about where a
//! line — or the response — ends.
//!
//! The end marker is recognised only as a line that is exactly `.` between
//! two real CRLFs (RFC 5321 §4.1.1.4, RFC 3977 §3.1.1). A bare LF or bare CR
//! never ends a line here, so `\n.\n`, `\r.\r\n` and their cousins are just
//! text (smuggling); inside the body each bare CR or LF is rewritten to
//! CRLF, so what we store and relay has only CRLF line endings. Dot-stuffing
//! is undone at the start of each real line. Memory is bounded: past the
//! size limit the body is dropped and only counted, and long lines are
//! consumed in fragments.

use bytes::{Buf, BytesMut};

/// A line longer than this is consumed in fragments rather than buffered whole.
const FRAGMENT: usize = 8192;

#[derive(Debug)]
pub struct DotReader {
    body: Vec<u8>,
    limit: usize,
    /// Bytes the message would have had, counted past the limit too.
    size: usize,
    at_line_start: bool,
}

/// How a dot-terminated body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DotEnd {
    /// The whole message, CRLF-only, unstuffed.
    Complete(Vec<u8>),
    /// More than the limit arrived; the body was discarded.
    TooBig { size: usize },
}

impl DotReader {
    /// The body starts with room for a typical message and grows as it
    /// needs: a run of pipelined articles holds each body until the run is
    /// stored, so a large reservation per body would cost more than growing.
    pub fn new(limit: usize) -> DotReader {
        DotReader { body: Vec::with_capacity(limit.min(8 * 1024)), limit, size: 0, at_line_start: true }
    }

    /// Consume what can be consumed from `input`. Returns `Some` once the
    /// terminating line has been read; bytes after it stay in `input`.
    pub fn feed(&mut self, input: &mut BytesMut) -> Option<DotEnd> {
        loop {
            match crlf(input) {
                Some(pos) => {
                    if self.at_line_start && &input[..pos] == b"." {
                        input.advance(pos + 2);
                        return Some(self.finish());
                    }
                    let line = input.split_to(pos + 2);
                    self.append_line_part(&line[..pos], true);
                }
                None => {
                    // No complete line. Keep a possible CR (half a CRLF), and
                    // the short start of a line that might turn out to be ".".
                    if input.len() <= FRAGMENT {
                        return None;
                    }
                    let mut take = input.len();
                    if input[take - 1] == b'\r' {
                        take -= 1;
                    }
                    let part = input.split_to(take);
                    self.append_line_part(&part, false);
                }
            }
        }
    }

    fn append_line_part(&mut self, mut part: &[u8], ends_line: bool) {
        if self.at_line_start && part.first() == Some(&b'.') {
            part = &part[1..]; // RFC 5321 §4.5.2: undo dot-stuffing
        }
        // every bare CR or LF becomes CRLF: one byte more each
        let bare = memchr::memchr2_iter(b'\r', b'\n', part).count();
        self.size += part.len() + bare + if ends_line { 2 } else { 0 };
        if self.size <= self.limit {
            let mut rest = part;
            while let Some(p) = memchr::memchr2(b'\r', b'\n', rest) {
                self.body.extend_from_slice(&rest[..p]);
                self.body.extend_from_slice(b"\r\n");
                rest = &rest[p + 1..];
            }
            self.body.extend_from_slice(rest);
            if ends_line {
                self.body.extend_from_slice(b"\r\n");
            }
        } else if !self.body.is_empty() {
            self.body = Vec::new();
        }
        self.at_line_start = ends_line;
    }

    fn finish(&mut self) -> DotEnd {
        if self.size > self.limit {
            DotEnd::TooBig { size: self.size }
        } else {
            DotEnd::Complete(std::mem::take(&mut self.body))
        }
    }
}

/// The first CRLF in `b`: a LF whose previous byte is CR (memmem would
/// build a searcher on every call).
fn crlf(b: &[u8]) -> Option<usize> {
    let mut from = 1;
    while from < b.len() {
        let p = memchr::memchr(b'\n', &b[from..])? + from;
        if b[p - 1] == b'\r' {
            return Some(p - 1);
        }
        from = p + 1;
    }
    None
}

/// Append `message` to `out` as a multi-line response body, terminator
/// included. `body_lines` limits the body to that many lines after the
/// blank line that ends the header (TOP); `None` writes everything (RETR).
pub fn write_multiline(message: &[u8], body_lines: Option<u64>, out: &mut Vec<u8>) {
    out.reserve(message.len() + message.len() / 64 + 8);
    let mut in_header = true;
    let mut body_written = 0u64;
    let mut rest = message;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !in_header {
            if body_lines.is_some_and(|n| body_written >= n) {
                break;
            }
            body_written += 1;
        } else if line.is_empty() {
            in_header = false;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split of the input into two reads gives the same body and
    /// leaves the same bytes behind the terminator.
    #[test]
    fn every_split_gives_the_same_result() {
        let input: &[u8] = b"a\r\n..b\nc\r.\r\n\n.\n\r\n.x\r\n.\r\nNEXT";
        let mut whole = BytesMut::from(input);
        let expected = DotReader::new(1000).feed(&mut whole);
        assert_eq!(expected, Some(DotEnd::Complete(b"a\r\n.b\r\nc\r\n.\r\n\r\n.\r\n\r\nx\r\n".to_vec())));
        assert_eq!(&whole[..], b"NEXT");
        for cut in 0..=input.len() {
            let mut r = DotReader::new(1000);
            let mut buf = BytesMut::from(&input[..cut]);
            let mut got = r.feed(&mut buf);
            buf.extend_from_slice(&input[cut..]);
            if got.is_none() {
                got = r.feed(&mut buf);
            }
            assert_eq!(got, expected, "split at {cut}");
            assert_eq!(&buf[..], b"NEXT", "split at {cut}");
        }
    }

    #[test]
    fn over_the_limit_is_counted_not_kept() {
        let mut r = DotReader::new(4);
        let mut buf = BytesMut::from(&b"12345\r\n.\r\n"[..]);
        assert_eq!(r.feed(&mut buf), Some(DotEnd::TooBig { size: 7 }));
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;

    fn multiline(m: &[u8], n: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        write_multiline(m, n, &mut out);
        out
    }

    #[test]
    fn stuffing_is_byte_for_byte_on_crlf_messages() {
        let m = b"Subject: x\r\n\r\n.hidden\r\n..two\r\nend\r\n";
        assert_eq!(multiline(m, None), b"Subject: x\r\n\r\n..hidden\r\n...two\r\nend\r\n.\r\n");
        assert_eq!(multiline(b".\r\n", None), b"..\r\n.\r\n");
        assert_eq!(multiline(b"", None), b".\r\n");
        // no final CRLF, bare LF, bare CR inside a line
        assert_eq!(multiline(b"a\nb\rc\r\r\n.x", None), b"a\r\nb\rc\r\r\n..x\r\n.\r\n");
    }

    #[test]
    fn top_cuts_after_the_header_and_n_lines() {
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
        assert_eq!(multiline(m, Some(0)), b"A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(multiline(m, Some(2)), b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n");
        assert_eq!(multiline(m, Some(99)), multiline(m, None));
        // no blank line: all header
        assert_eq!(multiline(b"A: 1\r\nB: 2\r\n", Some(0)), b"A: 1\r\nB: 2\r\n.\r\n");
    }
}
