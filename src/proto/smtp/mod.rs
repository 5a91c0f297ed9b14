//! SMTP: the server and client session cores, typed server commands, the
//! DATA reader, envelope addresses and the reply catalogue.

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod reply;
pub mod server;

pub use address::{Address, ReversePath};
pub use reply::Reply;
