//! SMTP replies as the client reads them (RFC 5321 §4.2): multi-line
//! replies, enhanced status codes (RFC 3463, RFC 2034), and the EHLO
//! keywords. Reads bytes only; never panics on what a server sends.

use bytes::BytesMut;
use std::fmt;

/// A reply line longer than this is refused (RFC 5321 §4.5.3.1.5 says 512;
/// real servers are generous with text, so we are too, within reason).
pub const MAX_REPLY_LINE: usize = 4096;
/// A reply with more lines than this is refused (an EHLO lists perhaps 20).
pub const MAX_REPLY_LINES: usize = 128;

/// One server reply: the code, the enhanced status code (RFC 3463) if the
/// text starts with one of the same class, and the lines' texts (without
/// the enhanced code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    pub enhanced: Option<String>,
    pub lines: Vec<String>,
}

impl ServerReply {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The lines' texts joined by spaces, with control characters replaced
    /// and the length bounded, fit to store and show.
    pub fn text(&self) -> String {
        let mut t = String::new();
        for l in &self.lines {
            let l = l.trim();
            if l.is_empty() {
                continue;
            }
            if !t.is_empty() {
                t.push(' ');
            }
            t.push_str(l);
        }
        clean_text(&t, 500)
    }
}

impl fmt::Display for ServerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = &self.enhanced {
            write!(f, " {e}")?;
        }
        let t = self.text();
        if !t.is_empty() {
            write!(f, " {t}")?;
        }
        Ok(())
    }
}

/// Printable text of at most `max` characters: control characters become `?`.
pub fn clean_text(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > max {
        out.push_str("...");
    }
    out
}

/// A server said something that is not SMTP, or said it at the wrong time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("malformed reply line {0:?}")]
    BadReply(String),
    #[error("reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    #[error("reply of more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    #[error("a multi-line reply changed its code from {0} to {1}")]
    MixedCodes(u16, u16),
    #[error("unexpected reply {0} when no command was waiting for one")]
    Unexpected(String),
    #[error("{0} is not possible in the session's current state")]
    Sequence(&'static str),
}

/// Reads replies out of a byte stream, keeping partial multi-line replies
/// between calls. Accepts CRLF and, leniently, bare LF line ends.
#[derive(Debug, Default)]
pub struct ReplyReader {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyReader {
    /// The next complete reply, `Ok(None)` if more input is needed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<Option<ServerReply>, ClientError> {
        loop {
            let Some(end) = memchr::memchr(b'\n', input) else {
                if input.len() > MAX_REPLY_LINE {
                    return Err(ClientError::LineTooLong);
                }
                return Ok(None);
            };
            if end > MAX_REPLY_LINE {
                return Err(ClientError::LineTooLong);
            }
            let raw = input.split_to(end + 1);
            let line = &raw[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (code, last, text) = parse_line(line)?;
            match self.code {
                Some(c) if c != code => return Err(ClientError::MixedCodes(c, code)),
                _ => self.code = Some(code),
            }
            if self.lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::TooManyLines);
            }
            self.lines.push(text);
            if last {
                self.code = None;
                let lines = std::mem::take(&mut self.lines);
                return Ok(Some(finish_reply(code, lines)));
            }
        }
    }
}

/// `NNN[ -]text` or a bare `NNN` (RFC 5321 §4.2).
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ClientError> {
    let bad = || ClientError::BadReply(clean_text(&String::from_utf8_lossy(line), 80));
    if line.len() < 3 || !(b'2'..=b'5').contains(&line[0]) || !line[1..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let code = (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(bad()),
    };
    let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
    Ok((code, last, text))
}

/// Take the enhanced status code off the front of each line when it has the
/// reply's class (RFC 3463 §2: `class.subject.detail`).
fn finish_reply(code: u16, mut lines: Vec<String>) -> ServerReply {
    let class = char::from(b'0' + (code / 100) as u8);
    let mut enhanced = None;
    for l in lines.iter_mut() {
        let token = l.split(' ').next().unwrap_or_default();
        if is_enhanced(token, class) {
            if enhanced.is_none() {
                enhanced = Some(token.to_string());
            }
            *l = l[token.len()..].trim_start().to_string();
        }
    }
    ServerReply { code, enhanced, lines }
}

fn is_enhanced(token: &str, class: char) -> bool {
    let mut parts = token.split('.');
    let (Some(c), Some(s), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = |p: &str, max: usize| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit());
    c.len() == 1 && c.starts_with(class) && digits(s, 3) && digits(d, 3)
}

/// What the server offered in its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// The server answered EHLO (false after a HELO fallback: no extensions).
    pub esmtp: bool,
    pub starttls: bool,
    /// `SIZE n`; `Some(0)` means SIZE without a fixed limit.
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub pipelining: bool,
    pub smtputf8: bool,
    /// RFC 8689 REQUIRETLS (a server offers it only over TLS).
    pub requiretls: bool,
    pub enhanced_status_codes: bool,
    /// SASL mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Extensions {
    /// Read the keywords of an EHLO reply (every line after the first).
    pub fn parse(reply: &ServerReply) -> Extensions {
        let mut e = Extensions { esmtp: true, ..Extensions::default() };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            let keyword = keyword.to_ascii_uppercase();
            // `AUTH=PLAIN LOGIN` is the pre-RFC 4954 spelling some servers still send
            let (keyword, first_arg) = match keyword.split_once('=') {
                Some((k, a)) => (k.to_string(), Some(a.to_string())),
                None => (keyword, None),
            };
            let args: Vec<String> = first_arg.into_iter().chain(words.map(str::to_string)).collect();
            match keyword.as_str() {
                "STARTTLS" => e.starttls = true,
                "SIZE" => e.size = Some(args.first().and_then(|a| a.parse().ok()).unwrap_or(0)),
                "8BITMIME" => e.eight_bit_mime = true,
                "PIPELINING" => e.pipelining = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "REQUIRETLS" => e.requiretls = true,
                "ENHANCEDSTATUSCODES" => e.enhanced_status_codes = true,
                "AUTH" => {
                    for a in args {
                        let m = a.to_ascii_uppercase();
                        if !e.auth.contains(&m) {
                            e.auth.push(m);
                        }
                    }
                }
                _ => {}
            }
        }
        e
    }
}
