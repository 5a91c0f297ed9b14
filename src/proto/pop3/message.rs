//! Writing a stored message as the body of a POP3 multi-line response
//! (RFC 1939 §3): byte stuffing of lines that begin with `.`, CRLF line
//! ends, the `.` terminator, and TOP's cut after the header and N body
//! lines (RFC 1939 §7). Stored messages are CRLF already and come out byte
//! for byte; a bare LF is written as CRLF so that no client can disagree
//! with us about where a line — or the response — ends.

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
