//! The spool record scanner (`queue::spool::scan_records`), which reads
//! segments back at start and must survive anything a crash or a bad disk
//! leaves: arbitrary bytes never panic, never allocate past the input, and
//! every record it reports lies inside the input, in order, without
//! overlapping another or a skipped stretch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::queue::spool::scan_records;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let report = scan_records(data);
    let mut prev_end = 0u64;
    for r in &report.records {
        assert!(r.offset >= prev_end, "record at {} overlaps the one ending at {prev_end}", r.offset);
        assert!(r.body_offset >= r.offset + r.meta.len() as u64);
        let end = r.body_offset.checked_add(r.body_len).expect("body end overflows");
        assert!(end <= len, "record body ends at {end}, past the input's {len} bytes");
        assert_eq!(end, r.end());
        prev_end = end;
    }
    assert!(report.end <= len);
    assert_eq!(report.end, report.records.last().map_or(0, |r| r.end()));
    for &(off, n) in &report.skipped {
        assert!(off.checked_add(n).is_some_and(|e| e <= len), "skipped ({off}, {n}) past the input");
    }
    if let Some(t) = report.torn {
        assert!(t >= report.end && t <= len);
    }
});
