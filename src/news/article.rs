//! Reading an article's header section without decoding it: fields with
//! their byte ranges (so the store can drop an incoming `Xref` and insert
//! its own), unfolded values (a CRLF before white space removed, RFC 5322
//! §2.2.3, the rest kept as it came), and the overview fields computed once
//! when the article arrives. Values are kept as UTF-8; octets that are not
//! UTF-8 (rare in news today) become U+FFFD in the overview only — the
//! stored article keeps them.

use super::NewsError;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The most header fields read from one article: far more than any real
/// article has; the rest are kept in the body of the stored file but not
/// looked at.
const MAX_FIELDS: usize = 1000;

/// One header field: its name, its value unfolded, and where the whole
/// field (name to the end of its last line, line end included) sits. The
/// value borrows the article unless it had to be unfolded or mended (an
/// article's headers are read on every arrival: most values are one line).
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: Cow<'a, str>,
    pub start: usize,
    pub end: usize,
}

pub struct Headers<'a> {
    pub fields: Vec<Field<'a>>,
    /// Where the empty line that ends the header section starts (the
    /// article's length when there is none).
    pub end: usize,
    /// Where the body starts (after that empty line).
    pub body: usize,
    /// The article's line ending: `\r\n` unless its first line ends in a bare LF.
    pub crlf: bool,
}

impl Headers<'_> {
    /// The unfolded value of the first field called `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).map(|f| f.value.as_ref())
    }
}

fn trim_end_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Split the header section into fields. Never fails: a line that is not a
/// field and not a continuation is skipped.
pub fn headers(article: &[u8]) -> Headers<'_> {
    let crlf = memchr::memchr(b'\n', article).is_none_or(|i| i > 0 && article[i - 1] == b'\r');
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    let (mut end, mut body) = (article.len(), article.len());
    while pos < article.len() {
        let next = memchr::memchr(b'\n', &article[pos..]).map_or(article.len(), |i| pos + i + 1);
        let line = trim_end_cr(article[pos..next].strip_suffix(b"\n").unwrap_or(&article[pos..next]));
        if line.is_empty() {
            end = pos;
            body = next;
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(f) = fields.last_mut() {
                f.value.to_mut().push_str(&String::from_utf8_lossy(line));
                f.end = next;
            }
        } else if let Some(colon) = memchr::memchr(b':', line) {
            if fields.len() < MAX_FIELDS {
                let raw = &line[colon + 1..];
                let lead = raw.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
                fields.push(Field {
                    name: &line[..colon],
                    value: String::from_utf8_lossy(&raw[lead..]),
                    start: pos,
                    end: next,
                });
            }
        }
        pos = next;
    }
    for f in &mut fields {
        match &mut f.value {
            Cow::Borrowed(v) => *v = v.trim_end(),
            Cow::Owned(v) => {
                let trimmed = v.trim_end().len();
                v.truncate(trimmed);
            }
        }
    }
    Headers { fields, end, body, crlf }
}

/// What OVER shows of one article besides its number (RFC 3977 §8.3 and
/// the `LIST OVERVIEW.FMT` order), computed once at arrival.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub subject: String,
    pub from: String,
    pub date: String,
    pub message_id: String,
    pub references: String,
    /// Octets of the article as stored (its `Xref` included).
    pub bytes: u64,
    /// Lines of the body.
    pub lines: u64,
    /// The `Xref` value: `<host> group:number ...`.
    pub xref: String,
}

impl Overview {
    pub fn of(article: &[u8]) -> Overview {
        Overview::from_headers(article, &headers(article))
    }

    /// [`Overview::of`] from headers already read (`h` is `article`'s).
    pub fn from_headers(article: &[u8], h: &Headers<'_>) -> Overview {
        let get = |n: &str| h.get(n).unwrap_or_default().to_string();
        let body = &article[h.body.min(article.len())..];
        let mut lines = memchr::memchr_iter(b'\n', body).count() as u64;
        if !body.is_empty() && !body.ends_with(b"\n") {
            lines += 1;
        }
        Overview {
            subject: get("Subject"),
            from: get("From"),
            date: get("Date"),
            message_id: get("Message-ID"),
            references: get("References"),
            bytes: article.len() as u64,
            lines,
            xref: get("Xref"),
        }
    }

    /// The value of an overview field by its HDR name (`Subject`,
    /// `:bytes`, ... any case); `None` for a field the overview lacks.
    pub fn field(&self, name: &str) -> Option<String> {
        let n = name.to_ascii_lowercase();
        Some(match n.as_str() {
            "subject" => self.subject.clone(),
            "from" => self.from.clone(),
            "date" => self.date.clone(),
            "message-id" => self.message_id.clone(),
            "references" => self.references.clone(),
            ":bytes" | "bytes" => self.bytes.to_string(),
            ":lines" | "lines" => self.lines.to_string(),
            "xref" => self.xref.clone(),
            _ => return None,
        })
    }

    /// The OVER line for article `number` (without its line end): fields
    /// separated by TAB, with TAB, CR and LF inside a value replaced by a
    /// space (RFC 3977 §8.3.2). The last field is `Xref:` with its name, as
    /// `LIST OVERVIEW.FMT` announces it (`Xref:full`).
    pub fn line(&self, number: u64) -> String {
        let clean = |s: &str| s.replace(['\t', '\r', '\n'], " ");
        format!(
            "{number}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\tXref: {}",
            clean(&self.subject),
            clean(&self.from),
            clean(&self.date),
            clean(&self.message_id),
            clean(&self.references),
            self.bytes,
            self.lines,
            clean(&self.xref)
        )
    }
}

/// A message-id as RFC 3977 §3.6 allows it: 3 to 250 printable US-ASCII
/// octets, `<` first, `>` last and nowhere else.
pub fn check_message_id(id: &str) -> Result<(), NewsError> {
    let b = id.as_bytes();
    let ok = (3..=250).contains(&b.len())
        && b[0] == b'<'
        && b[b.len() - 1] == b'>'
        && b.iter().all(|c| (0x21..=0x7e).contains(c))
        && !b[..b.len() - 1].contains(&b'>');
    if ok {
        Ok(())
    } else {
        Err(NewsError::InvalidMessageId(id.chars().take(300).collect()))
    }
}

/// The `group:number` pairs of an `Xref` value (the host first is skipped).
pub fn parse_xref(value: &str) -> Option<Vec<(String, u64)>> {
    let mut parts = value.split_ascii_whitespace();
    parts.next()?;
    parts
        .map(|p| {
            let (g, n) = p.rsplit_once(':')?;
            Some((g.to_string(), n.parse().ok().filter(|n| *n > 0)?))
        })
        .collect()
}

/// `article` with every `Xref` field it came with removed and `xref`
/// (the whole value) put last in its header section: Xref is the local
/// server's own (RFC 5536 §3.2.14), never a peer's.
pub fn with_xref(article: &[u8], xref: &str) -> Vec<u8> {
    with_xref_in(article, &headers(article), xref)
}

/// [`with_xref`] with `article`'s headers already read.
fn with_xref_in(article: &[u8], h: &Headers<'_>, xref: &str) -> Vec<u8> {
    let eol: &[u8] = if h.crlf { b"\r\n" } else { b"\n" };
    let mut out = Vec::with_capacity(article.len() + xref.len() + 16);
    let mut pos = 0;
    for f in h.fields.iter().filter(|f| f.name.eq_ignore_ascii_case(b"Xref")) {
        out.extend_from_slice(&article[pos..f.start]);
        pos = f.end;
    }
    out.extend_from_slice(&article[pos..h.end]);
    if !out.is_empty() && !out.ends_with(b"\n") {
        // a last header line without its line end (an article of headers only)
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(b"Xref: ");
    out.extend_from_slice(xref.as_bytes());
    out.extend_from_slice(eol);
    if h.end == article.len() {
        out.extend_from_slice(eol);
    } else {
        out.extend_from_slice(&article[h.end..]);
    }
    out
}

/// An arriving article as the store keeps it ([`with_xref`]) and its
/// overview, from one reading of its headers (`h`, `article`'s): the same
/// as [`Overview::of`] the stored bytes, the `Xref` being ours and the
/// only one left.
pub fn stored(article: &[u8], h: &Headers<'_>, xref: &str) -> (Vec<u8>, Overview) {
    let stored = with_xref_in(article, h, xref);
    let mut overview = Overview::from_headers(article, h);
    overview.bytes = stored.len() as u64;
    overview.xref = xref.to_string();
    (stored, overview)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_reads_the_headers_once_and_agrees_with_overview_of() {
        let cases: [&[u8]; 6] = [
            b"Subject: a\r\n b\r\nFrom: x@y\r\nXref: other g:9\r\nMessage-ID: <1@x>\r\n\r\nline\r\nline2",
            b"Subject: s\nMessage-ID: <2@x>\n\nbody\n",
            b"Subject: headers only\r\nMessage-ID: <3@x>",
            b"Subject: headers only\r\nMessage-ID: <3@x>\r\n",
            b"Subject: \xff\xfe  \r\nReferences: <a@b>\r\n\t<c@d>\r\nDate: now\r\n\r\n",
            b"",
        ];
        for a in cases {
            let (bytes, overview) = stored(a, &headers(a), "host g:1 h:2");
            assert_eq!(bytes, with_xref(a, "host g:1 h:2"));
            assert_eq!(overview, Overview::of(&bytes), "{}", String::from_utf8_lossy(a));
        }
    }
}
