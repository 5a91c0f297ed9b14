//! POP3: the server session core and the reply catalogue (message output,
//! byte stuffing and TOP's cut, is `proto::dot::write_multiline`, shared
//! with NNTP).

pub mod reply;
pub mod server;

pub use reply::Reply;
