//! Feed arbitrary bytes, split at fuzzer-chosen points, to the SMTP client's
//! reply reader (what a remote server sends us); every reply it returns is
//! interpreted as delivery does (EHLO extensions, text, class). Errors are
//! fine, panics and unbounded buffering are not.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern::proto::smtp::client::{Extensions, ReplyReader, MAX_REPLY_LINE, MAX_REPLY_LINES};

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(8));
    let mut cuts: Vec<usize> = head.iter().map(|&b| b as usize * rest.len() / 256).collect();
    cuts.sort_unstable();
    let mut reader = ReplyReader::default();
    let mut buf = BytesMut::new();
    let mut prev = 0;
    for cut in cuts.into_iter().chain([rest.len()]) {
        buf.extend_from_slice(&rest[prev..cut]);
        prev = cut;
        loop {
            match reader.feed(&mut buf) {
                Ok(Some(reply)) => {
                    assert!((200..600).contains(&reply.code), "{}", reply.code);
                    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
                    let _ = (reply.is_success(), reply.is_transient(), reply.is_permanent(), reply.text());
                    let _ = Extensions::parse(&reply);
                }
                Ok(None) => break,
                // the session gives up on this server: start over as a new one
                Err(_) => {
                    reader = ReplyReader::default();
                    buf.clear();
                    break;
                }
            }
        }
        assert!(buf.len() <= MAX_REPLY_LINE + 1 + (rest.len() - prev).max(256));
    }
});
