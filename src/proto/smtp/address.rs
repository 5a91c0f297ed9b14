//! Envelope addresses: the RFC 5321 §4.1.2 `Path` grammar (with RFC 6531
//! UTF-8 when the client asked for SMTPUTF8), and the facts relay control
//! needs about an address — above all, whether its local part hides
//! further hops (`%`, `!`, a quoted `@`), and every domain they name.
//! The domain is kept in its one canonical form (A-label, lower case, no
//! trailing dot; [`crate::domain::canonical`]) from the moment it is parsed,
//! so RCPT, relay control, routing and the queue all see the same spelling.

use std::fmt;
use std::net::IpAddr;

/// A mailbox `local@domain`. The local part is kept as the client wrote it
/// (quotes included), the domain in its canonical A-label form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address must be enclosed in <>")]
    NoBrackets,
    #[error("the address has no @domain")]
    NoDomain,
    #[error("bad local part")]
    BadLocalPart,
    #[error("bad domain")]
    BadDomain,
    #[error("bad source route")]
    BadRoute,
    #[error("the address is too long")]
    TooLong,
    #[error("8-bit characters need SMTPUTF8")]
    NeedsUtf8,
}

/// A reverse-path (`MAIL FROM`): the null path `<>` or a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReversePath {
    Null,
    Mailbox(Address),
}

impl Address {
    /// Parse a bare `local@domain` (no brackets), as stored or typed by an operator.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        parse_mailbox(s, true)
    }

    /// The local part without surrounding quotes and with quoted-pairs undone.
    pub fn local_unquoted(&self) -> String {
        unquote(&self.local)
    }

    /// The local part folded for lookups: unquoted and lower-cased.
    pub fn local_key(&self) -> String {
        self.local_unquoted().to_lowercase()
    }

    /// Lower-cased `local@domain`, the key for account and alias lookups.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local_key(), self.domain)
    }

    pub fn is_domain_literal(&self) -> bool {
        self.domain.starts_with('[')
    }

    /// Every domain the local part could send the mail on to (RFC 1123
    /// §5.2.16 `%` hack, UUCP `!` paths, a quoted `user@other`), in
    /// canonical form: for `u%a%b` both `a` and `b` (each relay removes one
    /// `%`), for `a!b!u` both `a` and `b`, and so on through nested forms.
    /// A token that is no valid domain is returned as written (lower case),
    /// so it matches none of ours. Empty when the local part is plain.
    pub fn hidden_domains(&self) -> Vec<String> {
        let mut out = Vec::new();
        hops(&self.local_unquoted(), &mut out);
        out
    }

    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Mailbox(a) => a.fmt(f),
        }
    }
}

/// RFC 5321 §4.5.3.1: local part 64 octets, domain 255, path 256.
const MAX_PATH: usize = 256;
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

/// Parse `<...>` at the start of `s`; returns the path and what follows it
/// (the ESMTP parameters). `<>` is the null path. A source route
/// (`<@a,@b:user@c>`) is parsed and dropped, as RFC 5321 §4.1.1.3 asks;
/// the mailbox is what counts, for delivery and for relay control.
pub fn parse_path(s: &str, utf8: bool) -> Result<(ReversePath, &str), AddressError> {
    let s = s.trim_start_matches(' ');
    let inner_start = s.strip_prefix('<').ok_or(AddressError::NoBrackets)?;
    let end = find_closing(inner_start).ok_or(AddressError::NoBrackets)?;
    let inner = &inner_start[..end];
    let rest = &inner_start[end + 1..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(AddressError::NoBrackets);
    }
    if inner.len() > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    if !utf8 && !inner.is_ascii() {
        return Err(AddressError::NeedsUtf8);
    }
    let mailbox = if inner.starts_with('@') {
        let (route, mbox) = inner.split_once(':').ok_or(AddressError::BadRoute)?;
        for hop in route.split(',') {
            let d = hop.strip_prefix('@').ok_or(AddressError::BadRoute)?;
            if !is_domain(d, utf8) {
                return Err(AddressError::BadRoute);
            }
        }
        mbox
    } else {
        inner
    };
    Ok((ReversePath::Mailbox(parse_mailbox(mailbox, utf8)?), rest))
}

/// The `>` that closes the path, skipping any inside a quoted local part.
fn find_closing(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_mailbox(s: &str, utf8: bool) -> Result<Address, AddressError> {
    // The domain follows the last @ outside quotes.
    let at = last_unquoted_at(s).ok_or(AddressError::NoDomain)?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if local.is_empty() || unquote(local).len() > MAX_LOCAL {
        return Err(AddressError::BadLocalPart);
    }
    if local.starts_with('"') {
        check_quoted(local, utf8)?;
    } else if !local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(|c| is_atext(c, utf8))) {
        return Err(AddressError::BadLocalPart);
    }
    if domain.len() > MAX_DOMAIN {
        return Err(AddressError::TooLong);
    }
    let domain = if domain.starts_with('[') {
        check_literal(domain)?;
        domain.to_ascii_lowercase()
    } else {
        // UTS 46 first (it maps fullwidth forms and ideographic full stops),
        // then the RFC 5321 grammar on the A-label form
        let canonical = crate::domain::canonical(domain).map_err(|_| AddressError::BadDomain)?;
        if !is_domain(&canonical, false) {
            return Err(AddressError::BadDomain);
        }
        canonical
    };
    // the limit holds for the form we keep, not only the one we were given:
    // a U-label domain grows in its A-label form (found by fuzzing)
    if local.len() + 1 + domain.len() > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    Ok(Address { local: local.to_string(), domain })
}

/// Collect the domains a local part names as further hops (see
/// [`Address::hidden_domains`]). Bounded by the local part's length.
fn hops(local: &str, out: &mut Vec<String>) {
    let mut push = |d: &str| {
        out.push(crate::domain::canonical(d).unwrap_or_else(|_| d.to_lowercase()));
    };
    if let Some((inner, d)) = local.rsplit_once('@') {
        push(d);
        return hops(inner, out);
    }
    if let Some((user, rest)) = local.split_once('%') {
        rest.split('%').for_each(&mut push);
        return hops(user, out);
    }
    if let Some((path, _user)) = local.rsplit_once('!') {
        path.split('!').for_each(push);
    }
}

fn last_unquoted_at(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut last = None;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '@' if !in_quotes => last = Some(i),
            _ => {}
        }
    }
    last
}

/// RFC 5322 atext, extended with any non-ASCII character under SMTPUTF8.
fn is_atext(c: char, utf8: bool) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (utf8 && !c.is_ascii() && !c.is_control())
}

/// Quoted-string (RFC 5321 §4.1.2): qtextSMTP and quoted-pairSMTP only.
fn check_quoted(s: &str, utf8: bool) -> Result<(), AddressError> {
    let body = s.strip_prefix('"').and_then(|b| b.strip_suffix('"')).ok_or(AddressError::BadLocalPart)?;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) if (' '..='~').contains(&n) => {}
                _ => return Err(AddressError::BadLocalPart),
            },
            '"' => return Err(AddressError::BadLocalPart),
            c if (' '..='~').contains(&c) => {}
            c if utf8 && !c.is_ascii() && !c.is_control() => {}
            _ => return Err(AddressError::BadLocalPart),
        }
    }
    Ok(())
}

fn unquote(local: &str) -> String {
    match local.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
        None => local.to_string(),
        Some(body) => {
            let mut out = String::with_capacity(body.len());
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// RFC 5321 Domain: sub-domains of letters, digits and inner hyphens; with
/// SMTPUTF8, U-labels (any non-ASCII letters) too.
pub fn is_domain(d: &str, utf8: bool) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= MAX_DOMAIN
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || (utf8 && !c.is_ascii() && c.is_alphanumeric()))
        })
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn check_literal(d: &str) -> Result<(), AddressError> {
    let inner = d.strip_prefix('[').and_then(|x| x.strip_suffix(']')).ok_or(AddressError::BadDomain)?;
    let ok = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<std::net::Ipv6Addr>().is_ok(),
        _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(AddressError::BadDomain)
    }
}

/// The IP address of a domain literal, if the domain is one.
pub fn literal_ip(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse().ok(),
        _ => inner.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(s: &str) -> Address {
        match parse_path(s, false).unwrap().0 {
            ReversePath::Mailbox(a) => a,
            ReversePath::Null => panic!("null"),
        }
    }

    #[test]
    fn plain_paths() {
        let a = mailbox("<Alice@Example.TEST>");
        assert_eq!(a.local, "Alice");
        assert_eq!(a.domain, "example.test");
        assert_eq!(a.key(), "alice@example.test");
        assert_eq!(parse_path("<>", false).unwrap().0, ReversePath::Null);
        let (_, rest) = parse_path("<a@b.c> SIZE=100", false).unwrap();
        assert_eq!(rest, " SIZE=100");
        assert_eq!(mailbox(" <a@[192.0.2.1]>").domain, "[192.0.2.1]");
        assert_eq!(mailbox("<a@[IPv6:::1]>").domain, "[ipv6:::1]");
    }

    #[test]
    fn rejects() {
        for bad in [
            "a@b.c",
            "<a@b.c",
            "<a>",
            "<@b.c>",
            "<a..b@c.d>",
            "<.a@c.d>",
            "<a@-c.d>",
            "<a@c..d>",
            "<a b@c.d>",
            "<a@[1.2.3]>",
            "<\"unterminated@c.d>",
            "<@a.b:>",
            "<@a b:x@c.d>",
            "<a@b.c>junk",
        ] {
            assert!(parse_path(bad, false).is_err(), "{bad} should fail");
        }
        assert_eq!(parse_path("<jörg@example.test>", false).unwrap_err(), AddressError::NeedsUtf8);
        assert!(parse_path("<jörg@bücher.example>", true).is_ok());
        let long = format!("<{}@b.c>", "a".repeat(65));
        assert!(parse_path(&long, false).is_err());
    }

    #[test]
    fn the_length_limit_holds_for_the_a_label_form() {
        // 28 two-octet U-labels: 92 octets as given, 232 as A-labels, so the path is
        // 157 octets as given and 297 as kept (a fuzzing find: the address parsed,
        // and its own text did not parse again)
        let domain = vec!["ܚ"; 28].join(".") + ".example";
        let path = format!("<{}@{domain}>", "a".repeat(64));
        assert!(path.len() <= MAX_PATH + 2, "the input itself is within the limit");
        assert_eq!(parse_path(&path, true).map(|_| ()), Err(AddressError::TooLong));
        // a U-label address whose A-label form fits still parses, and its text parses again
        let (p, _) = parse_path("<u@ܚ.example>", true).unwrap();
        let ReversePath::Mailbox(a) = p else { panic!("a mailbox") };
        let text = format!("<{a}>");
        assert!(matches!(parse_path(&text, false), Ok((ReversePath::Mailbox(b), "")) if b == a));
    }

    #[test]
    fn every_spelling_of_a_domain_parses_to_its_a_label() {
        // SPEC §13.9: case, trailing dot, fullwidth forms, U-label or A-label
        for (spellings, want) in [
            (
                &["example.com", "ExAmple.COM.", "ｅｘａｍｐｌｅ.com", "ＥＸＡＭＰＬＥ．ＣＯＭ", "example。com"][..],
                "example.com",
            ),
            (
                &["bücher.example", "BÜCHER.example", "xn--bcher-kva.example", "XN--BCHER-KVA.example."][..],
                "xn--bcher-kva.example",
            ),
        ] {
            for s in spellings {
                let a = match parse_path(&format!("<u@{s}>"), true) {
                    Ok((ReversePath::Mailbox(a), _)) => a,
                    other => panic!("{s}: {other:?}"),
                };
                assert_eq!(a.domain, want, "{s}");
                assert_eq!(Address::parse(&format!("u@{s}")).map(|a| a.domain).as_deref(), Ok(want), "{s}");
            }
        }
        // not IDNA-valid: a syntax error (501 5.1.3 at RCPT)
        for bad in ["<u@xn--a.com>", "<u@a\u{fffd}b.com>", "<u@xn--bcher-kva-.example>"] {
            assert!(parse_path(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn hidden_hops() {
        let hops = |s: &str| mailbox(s).hidden_domains();
        assert_eq!(hops("<user%remote.com@example.test>"), ["remote.com"]);
        assert_eq!(hops("<remote.com!user@example.test>"), ["remote.com"]);
        assert_eq!(hops("<\"user@remote.com\"@example.test>"), ["remote.com"]);
        assert_eq!(hops("<a%b%Last.COM@example.test>"), ["b", "last.com"]);
        assert_eq!(hops("<a.test!B.test!u@example.test>"), ["a.test", "b.test"]);
        assert_eq!(hops("<a.test!u%b.test@example.test>"), ["b.test", "a.test"]);
        assert_eq!(hops("<\"u%a.test@b.test\"@example.test>"), ["b.test", "a.test"]);
        assert!(hops("<plain@example.test>").is_empty());
        // the route is dropped; the mailbox decides
        let a = mailbox("<@example.test,@relay.test:user@remote.com>");
        assert_eq!(a.domain, "remote.com");
        // a > inside quotes does not end the path
        let a = mailbox("<\"a>b\"@example.test>");
        assert_eq!(a.local_unquoted(), "a>b");
    }
}
