//! POP3 status lines as values: `+OK` or `-ERR`, an optional response code
//! (RFC 2449 §8: `[IN-USE]`; RFC 3206: `[AUTH]`, `[SYS/TEMP]`) and the
//! text. Every fixed reply Postern's POP3 server sends lives here; the
//! multi-line bodies (listings, messages, capabilities) are data and are
//! written by the session core.

use std::borrow::Cow;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    /// A response code without brackets, e.g. `IN-USE`.
    pub code: Option<&'static str>,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn ok(text: &'static str) -> Reply {
        Reply { ok: true, code: None, text: Cow::Borrowed(text) }
    }

    pub const fn err(text: &'static str) -> Reply {
        Reply { ok: false, code: None, text: Cow::Borrowed(text) }
    }

    pub const fn err_code(code: &'static str, text: &'static str) -> Reply {
        Reply { ok: false, code: Some(code), text: Cow::Borrowed(text) }
    }

    /// A `+OK` with text made at run time.
    pub fn ok_owned(text: impl Into<String>) -> Reply {
        Reply { ok: true, code: None, text: Cow::Owned(text.into()) }
    }

    /// Serialise as one CRLF-terminated line (RFC 1939 §3). Control
    /// characters in the text are replaced, so a reply can never carry a
    /// line break a client would read as a second response or a `.`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.ok { b"+OK" } else { b"-ERR" });
        if let Some(code) = self.code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_bytes());
            out.push(b']');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            for b in self.text.bytes() {
                out.push(if b < 0x20 || b == 0x7f { b'?' } else { b });
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.ok { "+OK" } else { "-ERR" })?;
        if let Some(c) = self.code {
            write!(f, " [{c}]")?;
        }
        write!(f, " {}", self.text)
    }
}

// Positive
pub const OK: Reply = Reply::ok("");
pub const USER_OK: Reply = Reply::ok("Send your password");
pub const BYE: Reply = Reply::ok("Bye");
pub const CAPABILITIES: Reply = Reply::ok("Capability list follows");
pub const MECHANISMS: Reply = Reply::ok("Supported SASL mechanisms follow");
pub const BEGIN_TLS: Reply = Reply::ok("Begin TLS negotiation");
pub const MESSAGE_DELETED: Reply = Reply::ok("Message deleted");
pub const TOP_FOLLOWS: Reply = Reply::ok("Top of message follows");
pub const UIDL_FOLLOWS: Reply = Reply::ok("Unique-id listing follows");

// Negative: the client's mistake
pub const UNKNOWN_COMMAND: Reply = Reply::err("Unknown command");
pub const LINE_TOO_LONG: Reply = Reply::err("Line too long");
pub const SYNTAX: Reply = Reply::err("Syntax error in arguments");
pub const NOT_IN_STATE: Reply = Reply::err("Command not valid in this state");
pub const USER_FIRST: Reply = Reply::err("Send USER first");
pub const NO_SUCH_MESSAGE: Reply = Reply::err("No such message");
pub const ALREADY_DELETED: Reply = Reply::err("Message already deleted");
pub const ALREADY_TLS: Reply = Reply::err("TLS is already active");
pub const NO_STLS: Reply = Reply::err("STLS is not available on this server");
pub const APOP_UNSUPPORTED: Reply = Reply::err("APOP is not supported; use USER/PASS or AUTH PLAIN over TLS");
pub const UNKNOWN_MECHANISM: Reply = Reply::err("Unrecognized authentication mechanism");
pub const AUTH_CANCELLED: Reply = Reply::err("Authentication cancelled");
pub const AUTH_BAD_BASE64: Reply = Reply::err("Cannot decode the response");

impl crate::proto::session::KitReplies for Reply {
    // RFC 5034 §4: "*" cancels
    const CANCELLED: Reply = AUTH_CANCELLED;
    const BAD_BASE64: Reply = AUTH_BAD_BASE64;
    const TOO_MANY_ERRORS: Reply = TOO_MANY_ERRORS;
}

pub const TOO_MANY_ERRORS: Reply = Reply::err("Too many errors, closing connection");

// Negative: credentials and the maildrop
/// SPEC §9: `require_tls` and no TLS yet.
pub const TLS_REQUIRED: Reply =
    Reply::err_code("AUTH", "This server requires a secure channel: send STLS before any credentials");
/// Plaintext credentials are not allowed (`allow_plaintext_auth = false`).
pub const PLAINTEXT_DISABLED: Reply =
    Reply::err_code("AUTH", "Plaintext authentication is disabled: send STLS before any credentials");
pub const AUTH_FAILED: Reply = Reply::err_code("AUTH", "Authentication failed");
pub const AUTH_THROTTLED: Reply =
    Reply::err_code("SYS/TEMP", "Too many authentication failures from your address, try again later");
pub const IN_USE: Reply = Reply::err_code("IN-USE", "Maildrop is in use by another session");
pub const MAILDROP_FAILED: Reply = Reply::err_code("SYS/TEMP", "Cannot open the maildrop, try again later");
pub const MESSAGE_GONE: Reply = Reply::err("Message was removed by another session");
pub const READ_FAILED: Reply = Reply::err_code("SYS/TEMP", "Cannot read the message, try again later");
pub const UPDATE_FAILED: Reply = Reply::err_code("SYS/TEMP", "Some deleted messages were not removed");

// Closing
pub const IDLE_TIMEOUT: Reply = Reply::err("Disconnected for inactivity");
pub const SHUTTING_DOWN: Reply = Reply::err_code("SYS/TEMP", "Server shutting down");
/// Written raw by the listener to a client refused by the connection limits.
pub const TOO_MANY_CONNECTIONS_LINE: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut out = Vec::new();
        OK.write(&mut out);
        IN_USE.write(&mut out);
        Reply::ok_owned("evil\r\n.\r\n").write(&mut out);
        assert_eq!(out, b"+OK\r\n-ERR [IN-USE] Maildrop is in use by another session\r\n+OK evil??.??\r\n");
        assert_eq!(AUTH_FAILED.to_string(), "-ERR [AUTH] Authentication failed");
    }
}
