//! NNTP status lines as values: a three-digit code (RFC 3977 §3.2, RFC
//! 4643, RFC 4644) and a text. Every fixed reply Postern's NNTP server
//! sends lives here; the multi-line blocks (articles, listings, overview)
//! are data and are written by the session core.

use std::borrow::Cow;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn new(code: u16, text: &'static str) -> Reply {
        Reply { code, text: Cow::Borrowed(text) }
    }

    /// A reply whose text is made at run time.
    pub fn owned(code: u16, text: impl Into<String>) -> Reply {
        Reply { code, text: Cow::Owned(text.into()) }
    }

    /// 5xx: the client's mistake (they count towards the error limit;
    /// 4xx answers such as 423 or 438 are ordinary in reading and feeds).
    pub fn is_error(&self) -> bool {
        self.code >= 500
    }

    /// Serialise as one CRLF-terminated line. Control characters in the
    /// text are replaced, so a reply can never carry a line break a client
    /// would read as a second response or a `.`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.code.min(999).to_string().as_bytes());
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
        write!(f, "{} {}", self.code, self.text)
    }
}

impl crate::proto::session::KitReplies for Reply {
    // RFC 4643 §2.4.2: "*" cancels with 481; undecodable base64 is 504
    const CANCELLED: Reply = AUTH_CANCELLED;
    const BAD_BASE64: Reply = BAD_BASE64;
    const TOO_MANY_ERRORS: Reply = TOO_MANY_ERRORS;
}

// Informational and positive (RFC 3977 §3.2 and the commands' sections)
pub const HELP_FOLLOWS: Reply = Reply::new(100, "Help text follows");
pub const CAPABILITIES: Reply = Reply::new(101, "Capability list:");
pub const READER_POSTING: Reply = Reply::new(200, "Reader mode, posting permitted");
pub const STREAMING_OK: Reply = Reply::new(203, "Streaming permitted");
pub const BYE: Reply = Reply::new(205, "Bye");
pub const LIST_FOLLOWS: Reply = Reply::new(215, "Information follows");
pub const OVERVIEW_FMT_FOLLOWS: Reply = Reply::new(215, "Order of fields in overview database");
pub const HEADERS_FOLLOW: Reply = Reply::new(215, "Headers and metadata items supported");
pub const DESCRIPTIONS_FOLLOW: Reply = Reply::new(215, "Descriptions in form \"group description\"");
pub const XHDR_FOLLOWS: Reply = Reply::new(221, "Header information follows");
pub const OVERVIEW_FOLLOWS: Reply = Reply::new(224, "Overview information follows");
pub const HDR_FOLLOWS: Reply = Reply::new(225, "Headers follow");
pub const NEWNEWS_FOLLOWS: Reply = Reply::new(230, "List of new articles follows");
pub const NEWGROUPS_FOLLOW: Reply = Reply::new(231, "List of new newsgroups follows");
pub const TRANSFERRED: Reply = Reply::new(235, "Article transferred OK");
pub const POSTED: Reply = Reply::new(240, "Article received OK");
pub const AUTHENTICATED: Reply = Reply::new(281, "Authentication accepted");
pub const SEND_ARTICLE: Reply = Reply::new(335, "Send article to be transferred");
pub const SEND_POST: Reply = Reply::new(340, "Send article to be posted");
pub const PASSWORD_REQUIRED: Reply = Reply::new(381, "Enter passphrase");
pub const BEGIN_TLS: Reply = Reply::new(382, "Continue with TLS negotiation");

// Negative: state and availability
pub const TOO_MANY_ERRORS: Reply = Reply::new(400, "Too many errors, closing connection");
pub const NO_SUCH_GROUP: Reply = Reply::new(411, "No such newsgroup");
pub const NO_GROUP_SELECTED: Reply = Reply::new(412, "No newsgroup selected");
pub const CURRENT_INVALID: Reply = Reply::new(420, "Current article number is invalid");
pub const NO_NEXT: Reply = Reply::new(421, "No next article in this group");
pub const NO_PREVIOUS: Reply = Reply::new(422, "No previous article in this group");
pub const NO_SUCH_NUMBER: Reply = Reply::new(423, "No article with that number");
pub const NO_ARTICLES_IN_RANGE: Reply = Reply::new(423, "No articles in that range");
pub const NO_SUCH_ID: Reply = Reply::new(430, "No article with that message-id");
pub const NOT_WANTED: Reply = Reply::new(435, "Article not wanted");
pub const TRANSFER_LATER: Reply = Reply::new(436, "Transfer not possible; try again later");
pub const TRANSFER_REJECTED: Reply = Reply::new(437, "Transfer rejected; do not retry");
pub const TRANSFER_TOO_BIG: Reply = Reply::new(437, "Article too large; do not retry");
pub const POSTING_FAILED: Reply = Reply::new(441, "Posting failed");
pub const POST_TOO_BIG: Reply = Reply::new(441, "Article too large");
pub const AUTH_REQUIRED: Reply = Reply::new(480, "Authentication required");
pub const AUTH_FAILED: Reply = Reply::new(481, "Authentication failed");
pub const AUTH_CANCELLED: Reply = Reply::new(481, "Authentication cancelled");
pub const AUTH_THROTTLED: Reply =
    Reply::new(481, "Too many authentication failures from your address, try again later");
pub const AUTH_OUT_OF_SEQUENCE: Reply = Reply::new(482, "Authentication commands issued out of sequence");
/// SPEC §9: `require_tls` and no TLS yet, or plaintext credentials refused.
pub const TLS_REQUIRED: Reply = Reply::new(483, "Encryption required: send STARTTLS before any credentials");

// RFC 4644 streaming
// (CHECK and TAKETHIS answers carry the message-id first, RFC 4644 §2.4
// and §2.5, so they are made by the session with `Reply::owned`.)
/// TAKETHIS has no "try again later" (RFC 4644 §2.5): a store failure ends
/// the session, so the peer offers the article again on its next one.
pub const SERVICE_UNAVAILABLE: Reply = Reply::new(400, "Service temporarily unavailable, try again later");

// Negative: the client's mistake
pub const UNKNOWN_COMMAND: Reply = Reply::new(500, "Unknown command");
pub const SYNTAX: Reply = Reply::new(501, "Syntax error in arguments");
pub const LINE_TOO_LONG: Reply = Reply::new(501, "Line too long");
pub const UNKNOWN_LIST: Reply = Reply::new(501, "Unknown LIST keyword");
pub const BAD_WILDMAT: Reply = Reply::new(501, "Invalid wildmat");
pub const BAD_MESSAGE_ID: Reply = Reply::new(501, "Invalid message-id");
pub const NOT_PERMITTED: Reply = Reply::new(502, "Command unavailable");
pub const NOT_A_PEER: Reply = Reply::new(502, "Transfer permission denied: this address is not a configured news peer");
pub const ALREADY_AUTHENTICATED: Reply = Reply::new(502, "Already authenticated");
pub const TLS_ACTIVE: Reply = Reply::new(502, "TLS is already active");
pub const NO_STARTTLS: Reply = Reply::new(502, "STARTTLS is not available on this server");
pub const UNKNOWN_MECHANISM: Reply = Reply::new(503, "Mechanism not recognised");
pub const BAD_BASE64: Reply = Reply::new(504, "Base64 encoding error");

// Negative: our trouble
pub const STORE_FAILED: Reply = Reply::new(403, "Internal fault, try again later");

// Closing
pub const IDLE_TIMEOUT: Reply = Reply::new(400, "Disconnected for inactivity");
pub const SHUTTING_DOWN: Reply = Reply::new(400, "Server shutting down");
/// Written raw by the listener to a client refused by the connection limits.
pub const TOO_MANY_CONNECTIONS_LINE: &[u8] = b"400 Too many connections, try again later\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut out = Vec::new();
        BYE.write(&mut out);
        Reply::owned(240, "evil\r\n.\r\n").write(&mut out);
        assert_eq!(out, b"205 Bye\r\n240 evil??.??\r\n");
        assert_eq!(AUTH_FAILED.to_string(), "481 Authentication failed");
        assert!(SYNTAX.is_error() && !NO_SUCH_NUMBER.is_error());
    }
}
