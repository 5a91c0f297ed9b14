//! SMTP in Postern: inbound policy and sessions (and, with the outbound
//! issue, the client driver). The protocol grammar itself is in
//! `proto::smtp`; this module decides and acts.

pub mod inbound;
pub mod policy;
pub mod received;

pub use inbound::SmtpService;
