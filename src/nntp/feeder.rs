//! The outgoing news feed: for every `[[news_peer]]` with `feed_to`, a task
//! that takes the peer's articles from the feed queue
//! ([`crate::news::feed::FeedQueue`]) and offers them over NNTP (streaming
//! with CHECK/TAKETHIS when the peer offers it, else IHAVE; STARTTLS per
//! `feed_tls`), retrying with back-off.
