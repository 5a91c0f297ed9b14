//! SMTP replies as values: code, enhanced status (RFC 3463) and text. Every
//! fixed reply Postern sends lives here, so the contract of SPEC §4 can be
//! read in one place and no handler spells a reply string of its own.

use std::borrow::Cow;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `"2.0.0"`; empty for replies that carry none (220 banner, 334, 354).
    pub enhanced: Cow<'static, str>,
    /// May hold several lines separated by `\n`; each becomes a reply line.
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn new(code: u16, enhanced: &'static str, text: &'static str) -> Reply {
        Reply { code, enhanced: Cow::Borrowed(enhanced), text: Cow::Borrowed(text) }
    }

    pub fn owned(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply { code, enhanced: Cow::Borrowed(enhanced), text: Cow::Owned(text.into()) }
    }

    /// A copy of a fixed reply with other text.
    pub fn with_text(&self, text: impl Into<String>) -> Reply {
        Reply { code: self.code, enhanced: self.enhanced.clone(), text: Cow::Owned(text.into()) }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Serialise as one or more CRLF-terminated lines (RFC 5321 §4.2.1).
    /// Control characters in the text are replaced, so a reply can never
    /// carry a line break that a peer would read as a second reply.
    pub fn write(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self.text.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(sep as u8);
            if !self.enhanced.is_empty() {
                out.extend_from_slice(self.enhanced.as_bytes());
                out.push(b' ');
            }
            for b in line.trim_end_matches('\r').bytes() {
                out.push(if b < 0x20 || b == 0x7f { b'?' } else { b });
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.enhanced.is_empty() {
            write!(f, "{} {}", self.code, self.text.replace('\n', " / "))
        } else {
            write!(f, "{} {} {}", self.code, self.enhanced, self.text.replace('\n', " / "))
        }
    }
}

// Positive
pub const OK: Reply = Reply::new(250, "2.0.0", "Ok");
pub const SENDER_OK: Reply = Reply::new(250, "2.1.0", "Sender ok");
pub const RCPT_OK: Reply = Reply::new(250, "2.1.5", "Recipient ok");
pub const BYE: Reply = Reply::new(221, "2.0.0", "Bye");
pub const READY_TLS: Reply = Reply::new(220, "2.0.0", "Ready to start TLS");
pub const START_DATA: Reply = Reply::new(354, "", "End data with <CR><LF>.<CR><LF>");
pub const VRFY_CANNOT: Reply =
    Reply::new(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
pub const HELP: Reply =
    Reply::new(214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS AUTH");
pub const AUTH_OK: Reply = Reply::new(235, "2.7.0", "Authentication successful");

// Temporary
pub const TOO_MANY_CONNECTIONS: Reply = Reply::new(421, "4.7.0", "Too many connections, try again later");
pub const TOO_MANY_ERRORS: Reply = Reply::new(421, "4.7.0", "Too many errors, closing connection");
pub const IDLE_TIMEOUT: Reply = Reply::new(421, "4.4.2", "Idle timeout, closing connection");
pub const SHUTTING_DOWN: Reply = Reply::new(421, "4.3.2", "Service shutting down, closing connection");
pub const STORE_FAILED: Reply = Reply::new(451, "4.3.0", "Temporary failure storing the message, try again later");
pub const LOCAL_ERROR: Reply = Reply::new(451, "4.3.0", "Temporary local error, try again later");
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, "4.5.3", "Too many recipients");
pub const AUTH_THROTTLED: Reply =
    Reply::new(454, "4.7.0", "Too many authentication failures from your address, try again later");

// Permanent
pub const UNKNOWN_COMMAND: Reply = Reply::new(500, "5.5.2", "Command not recognized");
pub const LINE_TOO_LONG: Reply = Reply::new(500, "5.5.2", "Line too long");
pub const SYNTAX_HELO: Reply = Reply::new(501, "5.5.4", "Syntax: EHLO hostname");
pub const SYNTAX_PARAMS: Reply = Reply::new(501, "5.5.4", "Syntax error in parameters");
pub const BAD_SENDER_SYNTAX: Reply = Reply::new(501, "5.1.7", "Bad sender address syntax");
pub const BAD_RCPT_SYNTAX: Reply = Reply::new(501, "5.1.3", "Bad recipient address syntax");
pub const AUTH_CANCELLED: Reply = Reply::new(501, "5.0.0", "Authentication cancelled");
pub const AUTH_BAD_BASE64: Reply = Reply::new(501, "5.5.2", "Cannot decode the response");

impl crate::proto::session::KitReplies for Reply {
    const CANCELLED: Reply = AUTH_CANCELLED;
    const BAD_BASE64: Reply = AUTH_BAD_BASE64;
    const TOO_MANY_ERRORS: Reply = TOO_MANY_ERRORS;
}

pub const NOT_IMPLEMENTED: Reply = Reply::new(502, "5.5.1", "Command not implemented");
pub const EXPN_DISABLED: Reply = Reply::new(502, "5.5.1", "EXPN is not available");
pub const BAD_SEQUENCE: Reply = Reply::new(503, "5.5.1", "Bad sequence of commands");
pub const HELO_FIRST: Reply = Reply::new(503, "5.5.1", "Send EHLO first");
pub const MAIL_FIRST: Reply = Reply::new(503, "5.5.1", "Need MAIL before RCPT");
pub const NESTED_MAIL: Reply = Reply::new(503, "5.5.1", "Sender already given");
pub const ALREADY_TLS: Reply = Reply::new(503, "5.5.1", "TLS already active");
pub const ALREADY_AUTH: Reply = Reply::new(503, "5.5.1", "Already authenticated");
pub const AUTH_IN_TRANSACTION: Reply = Reply::new(503, "5.5.1", "AUTH not allowed during a mail transaction");
pub const UNKNOWN_MECHANISM: Reply = Reply::new(504, "5.5.4", "Unrecognized authentication mechanism");
pub const TLS_REQUIRED: Reply = Reply::new(530, "5.7.0", "Must issue a STARTTLS command first");
pub const AUTH_REQUIRED: Reply = Reply::new(530, "5.7.0", "Authentication required");
pub const AUTH_FAILED: Reply = Reply::new(535, "5.7.8", "Authentication credentials invalid");
pub const AUTH_NEEDS_TLS: Reply =
    Reply::new(538, "5.7.11", "Encryption required for requested authentication mechanism");
pub const UNKNOWN_USER: Reply = Reply::new(550, "5.1.1", "Recipient address rejected: user unknown");
pub const RELAY_DENIED: Reply = Reply::new(550, "5.7.1", "Relaying denied");
pub const NO_ROUTE: Reply = Reply::new(550, "5.4.4", "No route to the recipient's domain");
/// RFC 3463 X.4.6 "Routing loop detected": a local alias that only loops.
pub const ALIAS_LOOP: Reply = Reply::new(550, "5.4.6", "Routing loop detected: the alias reaches no mailbox");
pub const SIZE_EXCEEDED: Reply = Reply::new(552, "5.3.4", "Message size exceeds fixed limit");
pub const SENDER_NOT_OWNED: Reply = Reply::new(553, "5.7.1", "Sender address not owned by the authenticated user");
pub const NO_VALID_RECIPIENTS: Reply = Reply::new(554, "5.5.1", "No valid recipients");
pub const TOO_MANY_HOPS: Reply = Reply::new(554, "5.4.6", "Too many Received headers: mail loop");
/// RFC 8689: `MAIL FROM:<..> REQUIRETLS` outside TLS (5.7.10: encryption needed).
pub const REQUIRETLS_NEEDS_TLS: Reply = Reply::new(530, "5.7.10", "REQUIRETLS needs TLS: issue STARTTLS first");
pub const UNSUPPORTED_PARAM: Reply = Reply::new(555, "5.5.4", "Unsupported parameter");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        let mut out = Vec::new();
        OK.write(&mut out);
        assert_eq!(out, b"250 2.0.0 Ok\r\n");
        out.clear();
        Reply::owned(250, "", "a\nb\nc").write(&mut out);
        assert_eq!(out, b"250-a\r\n250-b\r\n250 c\r\n");
        out.clear();
        Reply::owned(550, "5.1.1", "evil\rtext").write(&mut out);
        assert_eq!(out, b"550 5.1.1 evil?text\r\n");
    }
}
