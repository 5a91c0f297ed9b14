//! IMAP4rev1 (RFC 3501) without IO: the command grammar ([`command`]), the
//! reader that assembles commands and their literals from arriving bytes
//! ([`reader`]), the values both share ([`types`]) and the response writer
//! with the ENVELOPE and BODYSTRUCTURE encodings ([`response`]).
//!
//! Not here yet: the session state machine (not authenticated /
//! authenticated / selected / logout, IDLE, the SASL exchange through
//! `proto::sasl`) and the service that runs it on the driver with the
//! mailbox store.

pub mod command;
pub mod reader;
pub mod response;
pub mod types;

#[cfg(test)]
mod tests;
