//! Feed arbitrary bytes, split at fuzzer-chosen points, to the IMAP command
//! reader (small limits, LITERAL+ and LITERAL-), and the whole input to the
//! command parser. No panics; the reader buffers no more than its limits;
//! every BAD it hands back is one CRLF-terminated line.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern::proto::imap::command::parse;
use postern::proto::imap::reader::{CommandReader, Event, Limits};
use postern::proto::literal::Mode;

const LIMITS: Limits = Limits { max_line: 512, max_literal: 256, max_append_literal: 1024, max_literals: 4 };

fn drive(data: &[u8], splits: &[usize], mode: Mode) {
    let mut reader = CommandReader::new(LIMITS, mode);
    let mut cuts: Vec<usize> = splits.iter().map(|&c| c.min(data.len())).collect();
    cuts.sort_unstable();
    let mut buf = BytesMut::new();
    let mut prev = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        buf.extend_from_slice(&data[prev..cut]);
        prev = cut;
        while let Some(ev) = reader.next(&mut buf) {
            if let Event::Bad(bad) = ev {
                let line = bad.line();
                assert!(line.ends_with(b"\r\n"), "{:?}", String::from_utf8_lossy(&line));
                assert!(!line[..line.len() - 2].contains(&b'\n'), "{:?}", String::from_utf8_lossy(&line));
            }
        }
        let bound = LIMITS.max_line + LIMITS.max_append_literal as usize + 64;
        assert!(reader.buffered() <= bound, "{} buffered", reader.buffered());
    }
}

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(8));
    let splits: Vec<usize> = head.iter().map(|&b| b as usize * rest.len() / 256).collect();
    drive(rest, &splits, Mode::Plus);
    drive(rest, &splits, Mode::Minus);
    let _ = parse(rest);
});
