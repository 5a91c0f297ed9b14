//! Articles as they arrive, made ready for the store: a POSTed article is
//! checked and completed as an injecting agent does (RFC 5537 §3.5: From,
//! Newsgroups and Subject required, every group existing and open to
//! posting, a Message-ID not seen before; `Path`, `Message-ID` and `Date`
//! added where missing, `Injection-Date` always), and an article from a
//! feed peer keeps its headers but gets our name prepended to its `Path`
//! (RFC 5537 §3.3). Pure functions over the bytes, plus the store's
//! read-only checks; storing is the caller's.

use crate::news::article::{self, Headers};
use crate::news::{NewsError, NewsStore, Posting};
use crate::proto::nntp::reply::Reply;

/// An article ready to store, and its new `Path` value (for the feed queue).
#[derive(Debug, PartialEq, Eq)]
pub struct Ready {
    pub article: Vec<u8>,
    pub path: String,
    pub message_id: String,
}

fn posting_failed(text: String) -> Reply {
    Reply::owned(441, text)
}

/// `article` with the fields named in `drop` removed, `first` put before
/// the rest of the header section and `last` after it.
fn rewrite(article: &[u8], h: &Headers<'_>, drop: &[&str], first: &str, last: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(article.len() + first.len() + last.len());
    out.extend_from_slice(first.as_bytes());
    let mut pos = 0;
    for f in h.fields.iter().filter(|f| drop.iter().any(|d| f.name.eq_ignore_ascii_case(d.as_bytes()))) {
        out.extend_from_slice(&article[pos..f.start]);
        pos = f.end;
    }
    out.extend_from_slice(&article[pos..h.end]);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(last.as_bytes());
    if h.end == article.len() {
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(&article[h.end..]);
    }
    out
}

/// A POSTed article checked and completed, or the `441` that says why not.
pub fn post(store: &NewsStore, article: &[u8], now: u64) -> Result<Ready, Reply> {
    let host = &store.settings().host;
    let h = article::headers(article);
    for name in ["From", "Newsgroups", "Subject"] {
        if h.get(name).is_none_or(str::is_empty) {
            return Err(posting_failed(format!("The article has no {name} header field")));
        }
    }
    let newsgroups = h.get("Newsgroups").unwrap_or_default();
    let groups: Vec<&str> = newsgroups.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return Err(posting_failed("The Newsgroups header field names no newsgroup".into()));
    }
    let trouble = |e: NewsError| {
        tracing::error!("news store: {e}");
        posting_failed("Posting failed: the news store is not available, try again later".into())
    };
    for g in &groups {
        match store.group(g).map_err(trouble)? {
            None => return Err(posting_failed(format!("No such newsgroup: {g}"))),
            Some(info) if info.posting != Posting::Yes => {
                return Err(posting_failed(format!("Posting to {g} is not allowed")))
            }
            Some(_) => {}
        }
    }
    let mut last = String::new();
    let message_id = match h.get("Message-ID") {
        Some(id) => {
            if article::check_message_id(id).is_err() {
                return Err(posting_failed(format!("Invalid Message-ID {id}")));
            }
            if store.seen(id).map_err(trouble)? {
                return Err(posting_failed(format!("Duplicate article {id}")));
            }
            id.to_string()
        }
        None => {
            let id = format!("<{:x}.{:016x}@{host}>", now, fastrand::u64(..));
            last.push_str(&format!("Message-ID: {id}\r\n"));
            id
        }
    };
    if h.get("Date").is_none() {
        last.push_str(&format!("Date: {}\r\n", crate::util::rfc5322_date(now)));
    }
    last.push_str(&format!("Injection-Date: {}\r\n", crate::util::rfc5322_date(now)));
    let path = match h.get("Path").map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => format!("{host}!{p}"),
        None => format!("{host}!not-for-mail"),
    };
    let article = rewrite(article, &h, &["Path", "Injection-Date"], &format!("Path: {path}\r\n"), &last);
    Ok(Ready { article, path, message_id })
}

/// Why a fed article is refused: for good (`437`/`439`).
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected(pub String);

/// An article offered by a feed peer as `id`: the same Message-ID, a
/// `Path` and `Newsgroups` required; our name goes first in its `Path`.
pub fn feed(host: &str, id: &str, article: &[u8]) -> Result<Ready, Rejected> {
    let h = article::headers(article);
    match h.get("Message-ID") {
        Some(m) if m == id => {}
        Some(m) => return Err(Rejected(format!("its Message-ID {m} is not the {id} offered"))),
        None => return Err(Rejected("it has no Message-ID header field".into())),
    }
    if h.get("Newsgroups").is_none_or(|g| g.trim().is_empty()) {
        return Err(Rejected("it has no Newsgroups header field".into()));
    }
    let Some(old) = h.get("Path").map(str::trim).filter(|p| !p.is_empty()) else {
        return Err(Rejected("it has no Path header field".into()));
    };
    let path = format!("{host}!{old}");
    let article = rewrite(article, &h, &["Path"], &format!("Path: {path}\r\n"), "");
    Ok(Ready { article, path, message_id: id.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_article_keeps_its_headers_behind_our_path() {
        let a =
            b"Path: inn.test!not-for-mail\r\nFrom: a@b\r\nNewsgroups: misc.test\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n";
        let r = feed("mx.test", "<1@x>", a).unwrap();
        assert_eq!(r.path, "mx.test!inn.test!not-for-mail");
        assert_eq!(
            r.article,
            b"Path: mx.test!inn.test!not-for-mail\r\nFrom: a@b\r\nNewsgroups: misc.test\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"
        );
        assert!(feed("mx.test", "<2@x>", a).is_err(), "not the id offered");
        assert!(feed("mx.test", "<1@x>", b"Message-ID: <1@x>\r\nNewsgroups: a\r\n\r\n").is_err(), "no Path");
    }
}
