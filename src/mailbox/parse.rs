//! The cached parse of a message: computed once with mail-parser when the
//! message arrives (delivery, APPEND, re-indexing) and kept in the index
//! beside its record, so that FETCH ENVELOPE / BODYSTRUCTURE / BODY[1.2]
//! and SEARCH never parse a message again. Plain serde data owned by the
//! mailbox; [`super::imap`] turns it into the IMAP response types and cuts
//! sections out of the bytes with the offsets kept here.
//!
//! Header values are kept as they stand in the message (still RFC 2047
//! encoded, unfolded), as IMAP's ENVELOPE and BODYSTRUCTURE send them;
//! bytes that are not UTF-8 are replaced (U+FFFD). Nesting is bounded by
//! [`MAX_DEPTH`]: deeper parts are kept as opaque leaves. A message
//! mail-parser cannot make sense of still gets a structure (one
//! `text/plain` part over its body): a parse never loses a message.

use mail_parser::{Address as MpAddress, HeaderValue, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

/// How deep multiparts and enclosed messages are described; below that a
/// part is an opaque leaf (its bytes are still there for BODY[]).
pub const MAX_DEPTH: usize = 16;

/// Everything IMAP needs about a message besides its flags and bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parsed {
    pub envelope: Envelope,
    pub body: Part,
    pub search: SearchFields,
}

/// An RFC 3501 ENVELOPE, header values raw (encoded) and unfolded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sender: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// One address as ENVELOPE lists it; a group is a start marker (`mailbox`
/// = the group name, no host) and an end marker (all `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The display name, RFC 2047-encoded if it is not ASCII.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// One MIME part (the message itself at the top), with where it lies in
/// the message's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// `text`, `multipart`, `message`, ... (lower case).
    pub media_type: String,
    pub subtype: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Content-Transfer-Encoding as given, `7BIT` when absent.
    pub encoding: String,
    /// Lines of the body (text parts and enclosed messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<(String, Vec<(String, String)>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub language: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Byte offsets: the part's header starts at `header`, its body at
    /// `body` and ends at `end` (exclusive; the CRLF before a boundary is
    /// not part of it).
    pub header: u32,
    pub body: u32,
    pub end: u32,
    /// The parts of a multipart (never empty for one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// An enclosed `message/rfc822`: its envelope and top part (offsets in
    /// the outer message's bytes). None when the enclosed message is
    /// transfer-encoded (its offsets would not be the outer message's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Box<(Envelope, Part)>>,
}

impl Default for Part {
    fn default() -> Part {
        Part {
            media_type: "text".into(),
            subtype: "plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
            id: None,
            description: None,
            encoding: "7BIT".into(),
            lines: None,
            disposition: None,
            language: Vec::new(),
            location: None,
            md5: None,
            header: 0,
            body: 0,
            end: 0,
            parts: Vec::new(),
            message: None,
        }
    }
}

impl Part {
    pub fn is_multipart(&self) -> bool {
        !self.parts.is_empty()
    }

    /// Octets of the body as transferred.
    pub fn size(&self) -> u32 {
        self.end.saturating_sub(self.body)
    }
}

/// The header fields SEARCH looks at most, decoded to UTF-8, and where the
/// header ends (SEARCH HEADER reads the header block, not the whole message).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchFields {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub cc: String,
    #[serde(default)]
    pub bcc: String,
    #[serde(default)]
    pub subject: String,
    /// The Date: field, Unix seconds (SENTBEFORE, SENTON, SENTSINCE).
    #[serde(default)]
    pub sent: Option<i64>,
    /// End of the top-level header, blank line included.
    #[serde(default)]
    pub header_end: u32,
}

/// Parse a message once. Never fails: what cannot be parsed becomes one
/// `text/plain` part.
pub fn parse(bytes: &[u8]) -> Parsed {
    let parsed = MessageParser::default().parse(bytes);
    match parsed {
        Some(m) if !m.parts.is_empty() && m.raw_message.len() == bytes.len() => {
            let envelope = envelope(bytes, &m.parts[0]);
            let body = part(bytes, &m.parts, 0, 0);
            let search = search_fields(&m.parts[0], body.body);
            Parsed { envelope, body, search }
        }
        _ => minimal(bytes),
    }
}

fn minimal(bytes: &[u8]) -> Parsed {
    let body = header_end(bytes);
    let end = bytes.len() as u32;
    Parsed {
        envelope: Envelope::default(),
        body: Part { body, end, lines: Some(count_lines(&bytes[body as usize..])), ..Part::default() },
        search: SearchFields { header_end: body, ..SearchFields::default() },
    }
}

/// Where the body starts: after the first empty line (or at the end).
pub fn header_end(bytes: &[u8]) -> u32 {
    if bytes.starts_with(b"\r\n") {
        return 2;
    }
    if bytes.starts_with(b"\n") {
        return 1;
    }
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(bytes.len()),
    };
    end as u32
}

fn count_lines(b: &[u8]) -> u32 {
    let n = b.iter().filter(|&&c| c == b'\n').count();
    let partial = usize::from(b.last().is_some_and(|&c| c != b'\n'));
    (n + partial) as u32
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A header value as it stands, unfolded and trimmed.
fn raw_value(bytes: &[u8], start: u32, end: u32) -> Option<String> {
    let v = bytes.get(start as usize..end as usize)?;
    let unfolded: Vec<u8> = v.iter().copied().filter(|&c| c != b'\r' && c != b'\n').collect();
    Some(text(&unfolded).trim().to_string())
}

fn raw_header(bytes: &[u8], p: &MessagePart, name: &str) -> Option<String> {
    let h = p.headers.iter().find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    raw_value(bytes, h.offset_start, h.offset_end)
}

fn addresses(p: &MessagePart, name: &str) -> Vec<Address> {
    let Some(h) = p.headers.iter().find(|h| h.name.as_str().eq_ignore_ascii_case(name)) else {
        return Vec::new();
    };
    let HeaderValue::Address(a) = &h.value else { return Vec::new() };
    let one = |a: &mail_parser::Addr| {
        let addr = a.address.as_deref().unwrap_or("");
        let (mailbox, host) = match addr.rsplit_once('@') {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (addr.to_string(), None),
        };
        Address { name: a.name.as_deref().map(encode_word), mailbox: Some(mailbox), host }
    };
    match a {
        MpAddress::List(list) => list.iter().filter(|a| a.address.is_some()).map(one).collect(),
        MpAddress::Group(groups) => {
            let mut out = Vec::new();
            for g in groups {
                match &g.name {
                    Some(name) => {
                        out.push(Address { mailbox: Some(encode_word(name)), ..Address::default() });
                        out.extend(g.addresses.iter().filter(|a| a.address.is_some()).map(one));
                        out.push(Address::default());
                    }
                    None => out.extend(g.addresses.iter().filter(|a| a.address.is_some()).map(one)),
                }
            }
            out
        }
    }
}

/// A decoded display name back in header form: ASCII as is, anything
/// else as one RFC 2047 UTF-8 base64 word.
fn encode_word(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    use base64::Engine;
    format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(s))
}

fn envelope(bytes: &[u8], p: &MessagePart) -> Envelope {
    Envelope {
        date: raw_header(bytes, p, "Date"),
        subject: raw_header(bytes, p, "Subject"),
        from: addresses(p, "From"),
        sender: addresses(p, "Sender"),
        reply_to: addresses(p, "Reply-To"),
        to: addresses(p, "To"),
        cc: addresses(p, "Cc"),
        bcc: addresses(p, "Bcc"),
        in_reply_to: raw_header(bytes, p, "In-Reply-To"),
        message_id: raw_header(bytes, p, "Message-ID"),
    }
}

fn search_fields(p: &MessagePart, header_end: u32) -> SearchFields {
    let list = |name: &str| {
        addresses(p, name)
            .iter()
            .filter_map(|a| {
                let addr = match (&a.mailbox, &a.host) {
                    (Some(m), Some(h)) => format!("{m}@{h}"),
                    (Some(m), None) => m.clone(),
                    _ => return None,
                };
                Some(match &a.name {
                    Some(n) => format!("{} <{addr}>", decoded_name(n)),
                    None => addr,
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let subject = p
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case("Subject"))
        .and_then(|h| h.value.as_text())
        .unwrap_or("")
        .to_string();
    let sent = p
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case("Date"))
        .and_then(|h| h.value.as_datetime())
        .map(|d| d.to_timestamp());
    SearchFields { from: list("From"), to: list("To"), cc: list("Cc"), bcc: list("Bcc"), subject, sent, header_end }
}

/// Undo [`encode_word`] for SEARCH text.
fn decoded_name(n: &str) -> String {
    use base64::Engine;
    n.strip_prefix("=?utf-8?b?")
        .and_then(|r| r.strip_suffix("?="))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| n.to_string())
}

/// A header's parameters as mail-parser read them, each value as written
/// in the header where it can be found there (`raw`: the header's raw
/// value): BODYSTRUCTURE shows parameter values undecoded, an RFC 2047
/// encoded filename as its encoded words (as Dovecot does), not as 8-bit text.
fn attrs(a: &Option<Vec<mail_parser::Attribute>>, raw: Option<&str>) -> Vec<(String, String)> {
    let written = raw.map(raw_params).unwrap_or_default();
    a.iter()
        .flatten()
        .map(|a| {
            let value = written
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&a.name))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| a.value.to_string());
            (a.name.to_string(), value)
        })
        .collect()
}

/// `type/sub; name=value; name="quoted \"value\""` → the parameters as
/// written (quotes and escapes removed, nothing decoded).
fn raw_params(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = raw.chars().peekable();
    // skip the type (or disposition) up to the first ';' outside quotes
    let mut quoted = false;
    for c in chars.by_ref() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => break,
            _ => {}
        }
    }
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            chars.next();
            if c == '=' {
                break;
            }
            if c == ';' {
                name.clear();
                continue;
            }
            name.push(c);
        }
        let name = name.trim().to_string();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            // skip to the next ';'
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
                value.push(c);
            }
            value = value.trim().to_string();
        }
        if name.is_empty() {
            break;
        }
        out.push((name, value));
    }
    out
}

/// Part `i` of `parts` (one message's flat list) as a tree, `depth` deep.
fn part(bytes: &[u8], parts: &[MessagePart], i: usize, depth: usize) -> Part {
    let Some(p) = parts.get(i) else { return Part::default() };
    let (header, body) = (p.offset_header, p.offset_body.max(p.offset_header));
    let end = trim_boundary_crlf(bytes, body, p.offset_end.max(body));
    let ct = p.content_type();
    let (mut media_type, mut subtype) = match ct {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().map(str::to_ascii_lowercase).unwrap_or_else(|| default_subtype(ct.ctype()).into()),
        ),
        None => ("text".to_string(), "plain".to_string()),
    };
    let mut params =
        ct.map(|ct| attrs(&ct.attributes, raw_header(bytes, p, "Content-Type").as_deref())).unwrap_or_default();
    if ct.is_none() {
        params.push(("charset".into(), "us-ascii".into()));
    }
    let language = match p.content_language() {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    };
    let mut out = Part {
        media_type: media_type.clone(),
        subtype: subtype.clone(),
        params,
        id: raw_header(bytes, p, "Content-ID"),
        description: raw_header(bytes, p, "Content-Description"),
        encoding: raw_header(bytes, p, "Content-Transfer-Encoding").unwrap_or_else(|| "7BIT".into()),
        lines: None,
        disposition: p.content_disposition().map(|d| {
            (d.ctype().to_string(), attrs(&d.attributes, raw_header(bytes, p, "Content-Disposition").as_deref()))
        }),
        language,
        location: p.content_location().map(str::to_string),
        md5: raw_header(bytes, p, "Content-MD5"),
        header,
        body,
        end,
        parts: Vec::new(),
        message: None,
    };
    let deep = depth >= MAX_DEPTH;
    match &p.body {
        PartType::Multipart(ids) if !deep && !ids.is_empty() => {
            out.parts = ids.iter().map(|&id| part(bytes, parts, id as usize, depth + 1)).collect();
        }
        PartType::Multipart(_) => {
            // too deep or empty: an opaque leaf, not a multipart without parts
            (media_type, subtype) = ("application".into(), "octet-stream".into());
            out.media_type = media_type.clone();
            out.subtype = subtype.clone();
        }
        PartType::Message(m) if !deep && !m.parts.is_empty() && m.raw_message.len() == bytes.len() => {
            // not transfer-encoded: offsets are the outer message's
            let inner = part(bytes, &m.parts, 0, depth + 1);
            out.message = Some(Box::new((envelope(bytes, &m.parts[0]), inner)));
        }
        _ => {}
    }
    if media_type == "text" || (media_type == "message" && subtype == "rfc822") {
        out.lines = Some(count_lines(bytes.get(body as usize..end as usize).unwrap_or_default()));
    }
    out
}

fn default_subtype(ctype: &str) -> &'static str {
    match ctype.to_ascii_lowercase().as_str() {
        "text" => "plain",
        "multipart" => "mixed",
        "message" => "rfc822",
        _ => "octet-stream",
    }
}

/// mail-parser ends a part where the next boundary line starts; RFC 2046
/// gives the CRLF before the boundary to the boundary, not the part.
fn trim_boundary_crlf(bytes: &[u8], body: u32, end: u32) -> u32 {
    let (b, e) = (body as usize, (end as usize).min(bytes.len()));
    if e >= b + 2 && bytes.get(e..).is_some_and(|rest| rest.starts_with(b"--")) {
        if &bytes[e - 2..e] == b"\r\n" {
            return (e - 2) as u32;
        }
        if bytes[e - 1] == b'\n' {
            return (e - 1) as u32;
        }
    }
    e as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_as_written() {
        let p = raw_params(" attachment; filename=\"=?utf-8?q?r=c3=a9sum=c3=a9.pdf?=\";\r\n\tsize=12 ; x=\"a\\\"b;c\"");
        assert_eq!(
            p,
            vec![
                ("filename".to_string(), "=?utf-8?q?r=c3=a9sum=c3=a9.pdf?=".to_string()),
                ("size".to_string(), "12".to_string()),
                ("x".to_string(), "a\"b;c".to_string()),
            ]
        );
        assert!(raw_params("text/plain").is_empty());
        let msg = b"Content-Type: application/pdf; name=\"=?utf-8?q?r=c3=a9sum=c3=a9.pdf?=\"\r\n\
Content-Disposition: attachment; filename=\"=?utf-8?q?r=c3=a9sum=c3=a9.pdf?=\"\r\n\r\n%PDF\r\n";
        let parsed = parse(msg);
        assert_eq!(parsed.body.params, vec![("name".to_string(), "=?utf-8?q?r=c3=a9sum=c3=a9.pdf?=".to_string())]);
        let (_, dparams) = parsed.body.disposition.expect("a disposition");
        assert_eq!(dparams, vec![("filename".to_string(), "=?utf-8?q?r=c3=a9sum=c3=a9.pdf?=".to_string())]);
    }
}
