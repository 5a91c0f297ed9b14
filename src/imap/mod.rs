//! The IMAP4rev1 service (SPEC §9): the sans-IO core (`proto::imap`),
//! driven by `net::driver`, joined to the login glue shared with SMTP and
//! POP3 (`auth::login`) and the mailbox store. FETCH items are rendered and
//! SEARCH keys evaluated by [`fetch`] and [`search`], pure functions over a
//! folder's listing and a [`fetch::Source`] of bytes and cached parses;
//! [`flags`] converts between the store's flags and the protocol's.

pub mod fetch;
pub mod flags;
pub mod search;
