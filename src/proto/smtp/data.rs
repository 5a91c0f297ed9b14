//! The DATA phase: reading a message body up to `<CRLF>.<CRLF>`.
//!
//! The end marker is recognised only as a line that is exactly `.` between
//! two real CRLFs (RFC 5321 §4.1.1.4). A bare LF or bare CR never ends a line
//! here, so `\n.\n`, `\r.\r\n` and their cousins are just text (SMTP
//! smuggling); inside the body each bare CR or LF is rewritten to CRLF, so
//! what we store and relay has only CRLF line endings. Dot-stuffing is
//! undone at the start of each real line (§4.5.2). Memory is bounded: past
//! the size limit the body is dropped and only counted, and long lines are
//! consumed in fragments.

use bytes::{Buf, BytesMut};

/// A line longer than this is consumed in fragments rather than buffered whole.
const FRAGMENT: usize = 8192;

#[derive(Debug)]
pub struct DataReader {
    body: Vec<u8>,
    limit: usize,
    /// Bytes the message would have had, counted past the limit too.
    size: usize,
    at_line_start: bool,
}

/// How the DATA phase ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DataEnd {
    /// The whole message, CRLF-only, unstuffed.
    Complete(Vec<u8>),
    /// More than the limit arrived; the body was discarded.
    TooBig { size: usize },
}

impl DataReader {
    pub fn new(limit: usize) -> DataReader {
        DataReader { body: Vec::with_capacity(limit.min(64 * 1024)), limit, size: 0, at_line_start: true }
    }

    /// Consume what can be consumed from `input`. Returns `Some` once the
    /// terminating line has been read; bytes after it stay in `input`.
    pub fn feed(&mut self, input: &mut BytesMut) -> Option<DataEnd> {
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

    fn finish(&mut self) -> DataEnd {
        if self.size > self.limit {
            DataEnd::TooBig { size: self.size }
        } else {
            DataEnd::Complete(std::mem::take(&mut self.body))
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

/// Count the `Received:` fields in the header section of a CRLF message.
pub fn count_received(message: &[u8]) -> usize {
    let mut n = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]], limit: usize) -> (Option<DataEnd>, Vec<u8>) {
        let mut r = DataReader::new(limit);
        let mut buf = BytesMut::new();
        for (i, c) in chunks.iter().enumerate() {
            buf.extend_from_slice(c);
            if let Some(end) = r.feed(&mut buf) {
                let mut rest = buf.to_vec();
                chunks[i + 1..].iter().for_each(|c| rest.extend_from_slice(c));
                return (Some(end), rest);
            }
        }
        (None, buf.to_vec())
    }

    fn complete(input: &[u8]) -> Vec<u8> {
        match read_all(&[input], 1 << 20) {
            (Some(DataEnd::Complete(b)), _) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn simple_and_unstuffing() {
        assert_eq!(complete(b"Subject: x\r\n\r\nhello\r\n..dot\r\n.\r\n"), b"Subject: x\r\n\r\nhello\r\n.dot\r\n");
        assert_eq!(complete(b".\r\n"), b"");
        assert_eq!(complete(b"..\r\n.\r\n"), b".\r\n");
    }

    #[test]
    fn smuggling_sequences_never_end_data() {
        for seq in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"] {
            let mut msg = b"Subject: s\r\n\r\nbefore".to_vec();
            msg.extend_from_slice(seq);
            msg.extend_from_slice(b"MAIL FROM:<evil@x>\r\nafter\r\n.\r\n");
            let (end, rest) = read_all(&[&msg], 1 << 20);
            let body = match end {
                Some(DataEnd::Complete(b)) => b,
                other => panic!("{seq:?}: {other:?}"),
            };
            assert!(rest.is_empty(), "{seq:?}");
            assert!(body.windows(4).any(|w| w == b"MAIL"), "{seq:?}");
            // only CRLF line endings in what is stored
            for (i, &b) in body.iter().enumerate() {
                if b == b'\n' {
                    assert_eq!(body[i - 1], b'\r', "{seq:?}: bare LF at {i}");
                }
                if b == b'\r' {
                    assert_eq!(body.get(i + 1), Some(&b'\n'), "{seq:?}: bare CR at {i}");
                }
            }
        }
    }

    #[test]
    fn terminator_split_across_chunks() {
        let msg = b"a\r\nb\r\n.\r\nQUIT\r\n";
        for split in 0..msg.len() {
            let (end, rest) = read_all(&[&msg[..split], &msg[split..]], 1 << 20);
            assert_eq!(end, Some(DataEnd::Complete(b"a\r\nb\r\n".to_vec())), "split {split}");
            assert_eq!(rest, b"QUIT\r\n", "split {split}");
        }
    }

    #[test]
    fn long_lines_are_fragmented_and_limits_count() {
        let mut msg = vec![b'x'; 100_000];
        msg.extend_from_slice(b"\r\n.\r\n");
        let body = complete(&msg);
        assert_eq!(body.len(), 100_002);
        let (end, _) = read_all(&[&msg], 50_000);
        assert_eq!(end, Some(DataEnd::TooBig { size: 100_002 }));
        // a fragment boundary right after a line start does not unstuff twice
        let mut m = vec![b'.'; 9000];
        m.extend_from_slice(b"\r\n.\r\n");
        let chunks: Vec<&[u8]> = m.chunks(8193).collect();
        match read_all(&chunks, 1 << 20).0 {
            Some(DataEnd::Complete(b)) => assert_eq!(b.len(), 8999 + 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn received_counting() {
        let m = b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: not a header\r\n";
        assert_eq!(count_received(m), 2);
    }
}
