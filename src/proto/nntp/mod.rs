//! The sans-IO NNTP core (RFC 3977 and its extensions): the server
//! session ([`server`]) on the kit's line skeleton, its command grammar
//! ([`command`]), the reply catalogue ([`reply`]), and [`wildmat`], the
//! pattern language of RFC 3977 §4 that names groups in LIST, NEWNEWS and a
//! peer's `groups`.

pub mod command;
pub mod reply;
pub mod server;
pub mod wildmat;

pub use reply::Reply;
