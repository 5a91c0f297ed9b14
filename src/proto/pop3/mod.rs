//! POP3: the server session core, message output (byte stuffing, TOP) and
//! the reply catalogue.

pub mod message;
pub mod reply;
pub mod server;

pub use reply::Reply;
