//! The one place where the store's flags ([`crate::mailbox::Flag`]: the
//! five system flags and keywords) become the protocol's
//! ([`crate::proto::imap::types::Flag`], which adds `\Recent`, `\*` and
//! other `\Name` flag-extensions) and back. `\Recent` is a session matter
//! shown beside the stored flags; `\*` and extensions only appear in what a
//! client sends, and are not storable ([`to_store`] names the culprit, the
//! session answers BAD or NO).

use crate::mailbox::{Flag as Stored, Flags};
use crate::proto::imap::types::Flag;

/// A flag a client asked to store that the store cannot keep.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("The flag {0} cannot be stored")]
    NotStorable(String),
}

/// One stored flag as the protocol shows it.
pub fn protocol_flag(f: &Stored) -> Flag {
    match f {
        Stored::Seen => Flag::Seen,
        Stored::Answered => Flag::Answered,
        Stored::Flagged => Flag::Flagged,
        Stored::Deleted => Flag::Deleted,
        Stored::Draft => Flag::Draft,
        Stored::Keyword(k) => Flag::Keyword(k.clone()),
    }
}

/// The flags of a message as FETCH FLAGS shows them: the stored ones, then
/// `\Recent` when the session shows the message as recent.
pub fn to_protocol(flags: &Flags, recent: bool) -> Vec<Flag> {
    let mut out = Vec::with_capacity(flags.len() + usize::from(recent));
    out.extend(flags.iter().map(protocol_flag));
    if recent {
        out.push(Flag::Recent);
    }
    out
}

/// One protocol flag as the store keeps it; `None` for `\Recent`, `\*`
/// and flag-extensions, which the store has no place for.
pub fn store_flag(f: &Flag) -> Option<Stored> {
    Some(match f {
        Flag::Seen => Stored::Seen,
        Flag::Answered => Stored::Answered,
        Flag::Flagged => Stored::Flagged,
        Flag::Deleted => Stored::Deleted,
        Flag::Draft => Stored::Draft,
        // the grammar only lets atoms through as keywords; the store's own
        // check keeps a keyword from anywhere else honest
        Flag::Keyword(k) => return Stored::parse(k).filter(|s| matches!(s, Stored::Keyword(_))),
        Flag::Recent | Flag::Wildcard | Flag::Extension(_) => return None,
    })
}

/// The flags a client asked to store (STORE, APPEND), or the first one the
/// store cannot keep (`\Recent`, `\*`, `\Other`).
pub fn to_store(flags: &[Flag]) -> Result<Flags, FlagError> {
    flags.iter().map(|f| store_flag(f).ok_or_else(|| FlagError::NotStorable(f.to_string()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_flags_round_trip_and_recent_is_shown_not_stored() {
        let stored: Flags = [Stored::Seen, Stored::Draft, Stored::Keyword("$Forwarded".into())].into_iter().collect();
        let shown = to_protocol(&stored, true);
        assert_eq!(shown, vec![Flag::Seen, Flag::Draft, Flag::Keyword("$Forwarded".into()), Flag::Recent]);
        assert_eq!(to_store(&shown[..3]).unwrap(), stored);
        assert_eq!(to_protocol(&Flags::new(), false), vec![]);
        let all = [Flag::Seen, Flag::Answered, Flag::Flagged, Flag::Deleted, Flag::Draft];
        assert_eq!(to_protocol(&to_store(&all).unwrap(), false), all.to_vec());
        assert_eq!(to_store(&[Flag::Seen, Flag::Recent]), Err(FlagError::NotStorable("\\Recent".into())));
        assert_eq!(to_store(&[Flag::Wildcard]).unwrap_err().to_string(), "The flag \\* cannot be stored");
        assert!(to_store(&[Flag::Extension("Junk".into())]).is_err());
        assert!(to_store(&[Flag::Keyword("bad word".into())]).is_err());
        assert_eq!(to_store(&[]).unwrap(), Flags::new());
    }
}
