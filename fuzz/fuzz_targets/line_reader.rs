//! The bounded line framing SMTP and POP3 share (`proto::LineReader`):
//! arbitrary bytes split at fuzzer-chosen points, an arbitrary limit. Every
//! line returned is within the limit and has no line end in it; nothing
//! more than the limit plus the latest chunk is ever buffered.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern::proto::LineReader;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, data)) = data.split_first() else { return };
    let max = limit as usize;
    let (head, rest) = data.split_at(data.len().min(8));
    let mut cuts: Vec<usize> = head.iter().map(|&b| b as usize * rest.len() / 256).collect();
    cuts.sort_unstable();
    let mut r = LineReader::default();
    let mut buf = BytesMut::new();
    let mut prev = 0;
    let mut consumed = 0usize;
    for cut in cuts.into_iter().chain([rest.len()]) {
        let chunk = cut - prev;
        buf.extend_from_slice(&rest[prev..cut]);
        prev = cut;
        while let Some(line) = r.next_line(&mut buf, max) {
            if let Ok(line) = line {
                assert!(line.len() <= max, "{} > {max}", line.len());
                assert!(!line.contains(&b'\n'));
                consumed += line.len();
            }
        }
        assert!(buf.len() <= max + chunk, "{} buffered, limit {max}, chunk {chunk}", buf.len());
    }
    assert!(consumed <= rest.len());
});
