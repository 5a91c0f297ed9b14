//! The sans-IO NNTP core (RFC 3977 and its extensions). So far only the
//! piece the news store and the feeds need first: [`wildmat`], the pattern
//! language of RFC 3977 §4 that names groups in LIST, NEWNEWS and a peer's
//! `groups`.

pub mod wildmat;
