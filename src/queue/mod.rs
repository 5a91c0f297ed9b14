//! The persistent delivery queue: queue ids, the message and recipient
//! records, the spool that makes a `250` true, and the store that keeps the
//! current state of everything queued (its `index` in a sled database of
//! its own), and the delivery status reports (`dsn`) it sends back,
//! which messages an operator's selection names (`select`), the manager
//! that drives delivery (`scheduler`), the per-destination aggregates
//! `queue summary` reads (`summary`), and its records as message-tracking
//! events (`tracking`). It knows nothing of SMTP sessions or of the
//! control socket.

pub mod dsn;
pub mod fault;
pub mod id;
pub mod index;
pub mod message;
pub mod scheduler;
pub mod select;
pub mod spool;
pub mod store;
pub mod summary;
pub mod tracking;

pub use id::QueueId;
pub use message::{AttemptResult, Message, MessageKind, RcptState, Recipient, SpoolRef, Stage, TlsOutcome};
pub use store::{QueueStore, Recovery, StoreError};

#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod tests;
