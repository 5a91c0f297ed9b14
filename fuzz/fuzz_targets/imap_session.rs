//! Grammar-shaped and raw client input, split at fuzzer-chosen points, fed
//! to the IMAP session core with a service answering FETCH and SEARCH
//! through the real `imap::fetch` and `imap::search` (the driver, the input
//! generator and the response checker are the property test's, in
//! tests/imap_gen). No panics; every response is well formed: untagged,
//! continuation or tagged status, CRLF-terminated, literals exact.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/imap_gen/mod.rs"]
mod imap_gen;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = imap_gen::run(data) {
        panic!("{e}");
    }
});
