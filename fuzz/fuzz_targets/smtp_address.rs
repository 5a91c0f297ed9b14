//! Arbitrary strings through the envelope address grammar (RFC 5321 paths
//! with source routes, quoted local parts, `%` and `!` hops, domain
//! literals; with and without SMTPUTF8) and every fact relay control asks
//! of a parsed address. A parsed path must re-parse to the same address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::proto::smtp::address::{is_domain, literal_ip, parse_path, Address, ReversePath};

fn facts(a: &Address) {
    let _ = (a.local_unquoted(), a.local_key(), a.key(), a.is_domain_literal(), a.hidden_domains(), a.is_ascii());
    let _ = literal_ip(&a.domain);
    let _ = a.to_string();
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for utf8 in [false, true] {
        if let Ok((path, rest)) = parse_path(s, utf8) {
            assert!(s.ends_with(rest));
            if let ReversePath::Mailbox(a) = path {
                facts(&a);
                let text = format!("<{a}>");
                let again = parse_path(&text, utf8);
                assert!(matches!(&again, Ok((ReversePath::Mailbox(b), "")) if *b == a), "{a} -> {again:?}");
            }
        }
        let _ = is_domain(s, utf8);
    }
    if let Ok(a) = Address::parse(s) {
        facts(&a);
    }
});
