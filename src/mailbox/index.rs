//! The mailbox index in sled: key layout, folder and message records, and
//! flags. Everything here is a plain value; [`super::store`] decides when
//! to write it. Records are JSON with defaults on every field added later,
//! so an older index still reads.
//!
//! Keys (one tree, so that one `apply_batch` updates a message and its
//! folder atomically):
//! `f<user>\0<folder id u32 BE>` → [`FolderRecord`];
//! `m<user>\0<folder id u32 BE><uid u32 BE>` → [`MessageRecord`];
//! `p<user>\0<folder id u32 BE><uid u32 BE>` → the message's cached parse
//! ([`super::parse::Parsed`]), apart from the record so that listings
//! (FLAGS, UIDs) never decode it.
//! Big-endian numbers make a prefix scan return folders by id and messages
//! by ascending UID.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// RFC 6154 special-use attributes of the default folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
}

impl SpecialUse {
    /// The IMAP attribute, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
        }
    }
}

/// A message flag: the RFC 3501 §2.3.2 system flags or a keyword.
/// (`\Recent` is a session matter, not stored.)
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    Keyword(String),
}

pub type Flags = BTreeSet<Flag>;

impl Flag {
    /// Parse IMAP flag syntax: `\Seen` (any case) or an atom keyword.
    pub fn parse(s: &str) -> Option<Flag> {
        if let Some(system) = s.strip_prefix('\\') {
            return match system.to_ascii_lowercase().as_str() {
                "seen" => Some(Flag::Seen),
                "answered" => Some(Flag::Answered),
                "flagged" => Some(Flag::Flagged),
                "deleted" => Some(Flag::Deleted),
                "draft" => Some(Flag::Draft),
                _ => None,
            };
        }
        // RFC 3501 §9 atom: no specials, controls or spaces
        let atom = !s.is_empty() && s.bytes().all(|b| b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b));
        atom.then(|| Flag::Keyword(s.to_string()))
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Keyword(k) => k,
        })
    }
}

impl From<Flag> for String {
    fn from(f: Flag) -> String {
        f.to_string()
    }
}

/// Stored text that is neither a system flag nor an atom (a damaged record).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a flag")]
pub struct NotAFlag(pub String);

impl TryFrom<String> for Flag {
    type Error = NotAFlag;
    fn try_from(s: String) -> Result<Flag, NotAFlag> {
        Flag::parse(&s).ok_or(NotAFlag(s))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRecord {
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// The UIDNEXT floor last fsynced into `folder.json`.
    #[serde(default)]
    pub durable_uidnext: u32,
    #[serde(default)]
    pub special_use: Option<SpecialUse>,
    #[serde(default = "yes")]
    pub subscribed: bool,
    /// RFC 7162 HIGHESTMODSEQ: the largest MODSEQ given to a message of
    /// this folder (or to an expunge); only grows.
    #[serde(default)]
    pub highestmodseq: u64,
    /// The MODSEQ floor last fsynced into `folder.json`: every MODSEQ
    /// handed out is below it, so a restart resumes above it even when
    /// sled lost its latest writes.
    #[serde(default)]
    pub durable_modseq: u64,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Unix seconds.
    pub date: u64,
    pub size: u64,
    #[serde(default)]
    pub flags: Flags,
    /// RFC 7162 MODSEQ: set when the message arrives, raised by every flag
    /// change. 0 only in records written before CONDSTORE (reconciliation
    /// gives them one).
    #[serde(default)]
    pub modseq: u64,
}

pub fn folder_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 2);
    k.push(b'f');
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k
}

pub fn folder_key(user: &str, fid: u32) -> Vec<u8> {
    let mut k = folder_prefix(user);
    k.extend_from_slice(&fid.to_be_bytes());
    k
}

pub fn message_prefix(user: &str, fid: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 10);
    k.push(b'm');
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k.extend_from_slice(&fid.to_be_bytes());
    k
}

pub fn message_key(user: &str, fid: u32, uid: u32) -> Vec<u8> {
    let mut k = message_prefix(user, fid);
    k.extend_from_slice(&uid.to_be_bytes());
    k
}

pub fn parse_prefix(user: &str, fid: u32) -> Vec<u8> {
    let mut k = message_prefix(user, fid);
    k[0] = b'p';
    k
}

/// Where a message's cached parse lives (the message key with `p`).
pub fn parse_key(user: &str, fid: u32, uid: u32) -> Vec<u8> {
    let mut k = message_key(user, fid, uid);
    k[0] = b'p';
    k
}

/// `(user, folder id)` of a folder key.
pub fn parse_folder_key(k: &[u8]) -> Option<(String, u32)> {
    let rest = k.strip_prefix(b"f")?;
    let nul = rest.len().checked_sub(5)?;
    if rest.get(nul) != Some(&0) {
        return None;
    }
    let user = std::str::from_utf8(&rest[..nul]).ok()?.to_string();
    let fid = u32::from_be_bytes(rest[nul + 1..].try_into().ok()?);
    Some((user, fid))
}

/// The UID at the end of a message key.
pub fn uid_of(k: &[u8]) -> Option<u32> {
    let tail = k.get(k.len().checked_sub(4)?..)?;
    Some(u32::from_be_bytes(tail.try_into().ok()?))
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // plain data with string keys: serialising cannot fail
    serde_json::to_vec(v).unwrap_or_default()
}

pub fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], v: &[u8]) -> Result<T, super::MailboxError> {
    serde_json::from_slice(v)
        .map_err(|e| super::MailboxError::Corrupt(String::from_utf8_lossy(key).replace('\0', "/"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort() {
        let k = folder_key("a@b.test", 7);
        assert_eq!(parse_folder_key(&k), Some(("a@b.test".into(), 7)));
        assert!(k.starts_with(&folder_prefix("a@b.test")));
        assert!(!k.starts_with(&folder_prefix("a@b.tes")));
        assert!(message_key("u", 1, 9) < message_key("u", 1, 10));
        assert!(message_key("u", 1, 255) < message_key("u", 1, 256));
        assert_eq!(uid_of(&message_key("u", 1, 300)), Some(300));
    }

    #[test]
    fn flags_parse_print_and_serialise() {
        assert_eq!(Flag::parse("\\SEEN"), Some(Flag::Seen));
        assert_eq!(Flag::parse("$Forwarded"), Some(Flag::Keyword("$Forwarded".into())));
        assert_eq!(Flag::parse("\\Recent"), None);
        assert_eq!(Flag::parse("bad word"), None);
        let flags: Flags = [Flag::Deleted, Flag::Seen, Flag::Keyword("x".into())].into_iter().collect();
        let json = serde_json::to_string(&flags).unwrap();
        assert_eq!(json, r#"["\\Seen","\\Deleted","x"]"#);
        assert_eq!(serde_json::from_str::<Flags>(&json).unwrap(), flags);
    }
}
