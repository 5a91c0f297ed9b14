//! IMAP4rev1 (RFC 3501) without IO: the command grammar ([`command`]), the
//! reader that assembles commands and their literals from arriving bytes
//! ([`reader`]), the values both share ([`types`]), the response writer
//! with the ENVELOPE and BODYSTRUCTURE encodings ([`response`]), and the
//! session state machine ([`server`]: not authenticated / authenticated /
//! selected / logout, STARTTLS, LOGIN and AUTHENTICATE through the kit,
//! IDLE), which hands every command needing the mailbox store to the
//! service (`crate::imap`).

pub mod command;
pub mod reader;
pub mod response;
pub mod server;
pub mod types;

#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;
