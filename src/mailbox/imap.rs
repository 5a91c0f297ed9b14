//! The cached parse ([`super::parse`]) as IMAP wants it: conversion to the
//! response writer's ENVELOPE and BODYSTRUCTURE types, and the bytes of a
//! FETCH section (`BODY[1.2]`, `BODY[2.HEADER]`, `BODY[1.MIME]`, a
//! partial) cut out of a message's bytes with the offsets stored at parse
//! time, so no FETCH parses a message. Pure functions over the bytes
//! ([`super::MailboxStore::read`]) and the parse
//! ([`super::MailboxStore::parsed`]).

use super::parse::{Address, Envelope, Part};
use crate::proto::imap::response::{self as resp, BodyStructure, Disposition, Extension, SinglePart};
use crate::proto::imap::types::{Section, SectionText};
use std::borrow::Cow;

fn bytes_of(s: &Option<String>) -> Option<Vec<u8>> {
    s.as_ref().map(|s| s.as_bytes().to_vec())
}

fn address(a: &Address) -> resp::Address {
    resp::Address { name: bytes_of(&a.name), adl: None, mailbox: bytes_of(&a.mailbox), host: bytes_of(&a.host) }
}

/// The ENVELOPE of a message (or of an enclosed message/rfc822).
pub fn envelope(e: &Envelope) -> resp::Envelope {
    let list = |l: &[Address]| l.iter().map(address).collect();
    resp::Envelope {
        date: bytes_of(&e.date),
        subject: bytes_of(&e.subject),
        from: list(&e.from),
        sender: list(&e.sender),
        reply_to: list(&e.reply_to),
        to: list(&e.to),
        cc: list(&e.cc),
        bcc: list(&e.bcc),
        in_reply_to: bytes_of(&e.in_reply_to),
        message_id: bytes_of(&e.message_id),
    }
}

/// The BODYSTRUCTURE of a message or part.
pub fn body_structure(p: &Part) -> BodyStructure {
    let ext = Extension {
        disposition: p
            .disposition
            .as_ref()
            .map(|(kind, params)| Disposition { kind: kind.clone(), params: params.clone() }),
        language: p.language.clone(),
        location: p.location.clone(),
    };
    if p.is_multipart() {
        return BodyStructure::Multipart {
            parts: p.parts.iter().map(body_structure).collect(),
            subtype: p.subtype.clone(),
            params: p.params.clone(),
            ext,
        };
    }
    let part = SinglePart {
        media_type: p.media_type.clone(),
        subtype: p.subtype.clone(),
        params: p.params.clone(),
        id: p.id.clone(),
        description: bytes_of(&p.description),
        encoding: p.encoding.clone(),
        size: p.size(),
        lines: p.lines,
        message: p.message.as_ref().map(|m| Box::new((envelope(&m.0), body_structure(&m.1)))),
        md5: p.md5.clone(),
    };
    BodyStructure::Single { part, ext }
}

/// The part a section path names (RFC 3501 §6.4.5: part 1 of a
/// non-multipart message is its body; a message/rfc822 part's numbers go
/// into the enclosed message). `None` if the path leads nowhere.
fn resolve<'p>(top: &'p Part, path: &[u32]) -> Option<&'p Part> {
    let mut cur = top;
    // a message's top part: part 1 of a non-multipart message is its body
    let mut at_top = true;
    for &n in path {
        if !at_top && !cur.is_multipart() {
            // going into a leaf: only an enclosed message has parts of its own
            cur = &cur.message.as_ref()?.1;
            at_top = true;
        }
        if cur.is_multipart() {
            cur = cur.parts.get((n as usize).checked_sub(1)?)?;
        } else if !(at_top && n == 1) {
            return None;
        }
        at_top = false;
    }
    Some(cur)
}

fn slice(bytes: &[u8], from: u32, to: u32) -> &[u8] {
    let (from, to) = ((from as usize).min(bytes.len()), (to as usize).min(bytes.len()));
    bytes.get(from..to.max(from)).unwrap_or_default()
}

/// The bytes of `BODY[section]` of a message whose cached top part is
/// `top`; `None` for a section that does not exist (RFC 3501 says: empty).
pub fn section<'b>(bytes: &'b [u8], top: &Part, section: &Section) -> Option<Cow<'b, [u8]>> {
    if section.part.is_empty() {
        let whole = || slice(bytes, 0, top.end.max(bytes.len() as u32));
        return match &section.text {
            None => Some(Cow::Borrowed(whole())),
            Some(SectionText::Mime) => None,
            Some(t) => message_text(bytes, top, t),
        };
    }
    let p = resolve(top, &section.part)?;
    match &section.text {
        None => Some(Cow::Borrowed(slice(bytes, p.body, p.end))),
        Some(SectionText::Mime) => Some(Cow::Borrowed(slice(bytes, p.header, p.body))),
        // HEADER and TEXT of a part: of the message it encloses
        Some(t) => {
            let m = p.message.as_ref()?;
            message_text(bytes, &m.1, t)
        }
    }
}

/// HEADER, HEADER.FIELDS (NOT) or TEXT of the message whose top part is `top`.
fn message_text<'b>(bytes: &'b [u8], top: &Part, t: &SectionText) -> Option<Cow<'b, [u8]>> {
    let header = slice(bytes, top.header, top.body);
    Some(match t {
        SectionText::Header => Cow::Borrowed(header),
        SectionText::HeaderFields(names) => Cow::Owned(header_fields(header, names, false)),
        SectionText::HeaderFieldsNot(names) => Cow::Owned(header_fields(header, names, true)),
        SectionText::Text => Cow::Borrowed(slice(bytes, top.body, top.end.max(top.body))),
        SectionText::Mime => return None,
    })
}

/// The fields of a header block named in `names` (or, with `not`, the
/// others), each with its continuation lines, then the blank line.
pub fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            let named = names.iter().any(|n| n.eq_ignore_ascii_case(name.trim()));
            keep = named != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `<start.len>` of a section's bytes (RFC 3501 §6.4.5): empty past the end.
pub fn partial(bytes: &[u8], start: u32, len: Option<u32>) -> &[u8] {
    let start = (start as usize).min(bytes.len());
    let end = match len {
        Some(l) => start.saturating_add(l as usize).min(bytes.len()),
        None => bytes.len(),
    };
    &bytes[start..end]
}
