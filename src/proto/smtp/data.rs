//! The DATA phase: the body is read by the protocol-neutral
//! [`crate::proto::dot::DotReader`] (only `<CRLF>.<CRLF>` ends it; bare CR
//! and LF are data, rewritten to CRLF; bounded), here under its SMTP names,
//! with what SMTP adds on top (counting `Received:` fields for loops).

// The reading itself is shared with every dot-terminated protocol.
pub use crate::proto::dot::{DotEnd as DataEnd, DotReader as DataReader};

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
    use bytes::BytesMut;

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
