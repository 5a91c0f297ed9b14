//! Feed arbitrary bytes, split at fuzzer-chosen points, to the SMTP server
//! core; every decision is answered; replies must stay well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the first bytes choose the split points, the rest is the session
    let (head, rest) = data.split_at(data.len().min(8));
    let splits: Vec<usize> = head.iter().map(|&b| b as usize * rest.len() / 256).collect();
    postern::proto::smtp::server::fuzz::drive(rest, &splits);
});
