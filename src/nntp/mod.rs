//! The NNTP service (SPEC §9): reader commands, posting and incoming feeds
//! on the sans-IO core (`proto::nntp`), driven by `net::driver`, with the
//! login glue shared with the other services (`auth::login`) and the news
//! store; [`feeder`] pushes new articles to the peers in `[[news_peer]]`.

pub mod feeder;
