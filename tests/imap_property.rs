//! The IMAP core under random and grammar-shaped input (acceptance item 5
//! of issue 11): tagged commands with quoted strings, synchronising and
//! non-synchronising literals (right and wrong lengths), sequence sets,
//! FETCH/SEARCH/STORE/APPEND/IDLE/DONE/AUTHENTICATE and the rest, raw
//! bytes, all split at random points and fed to the sans-IO session with a
//! service that answers FETCH and SEARCH through the real `imap::fetch` and
//! `imap::search`. No panic, and every response is well formed (see
//! tests/imap_gen). The cargo-fuzz target imap_session runs the same.

mod imap_gen;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn imap_core_answers_any_input_split_anywhere_well(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        if let Err(e) = imap_gen::run(&data) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The checker itself: what it must refuse, so that the property above
/// cannot pass by checking nothing.
#[test]
fn imap_response_checker_refuses_what_is_malformed() {
    let ok = |s: &[u8]| imap_gen::check(&[&b"* OK hi\r\n"[..], s].concat());
    assert_eq!(ok(b"a OK done\r\n* 1 FETCH (BODY[] {3}\r\na\r\n UID 4)\r\n+ Ready\r\n"), Ok(()));
    assert_eq!(ok(b"* SEARCH 1 2 (MODSEQ 5)\r\n* 2 EXPUNGE\r\nt.1 NO [TRYCREATE] x\r\n"), Ok(()));
    for bad in [
        &b"a OK done\n"[..],
        b"a OK done",
        b"a MAYBE done\r\n",
        b"a+ OK done\r\n",
        b"* 1 FETCH (BODY[] {5}\r\nabc)\r\n",
        b"* 1 FETCH (BODY[] \"a\r\nb\")\r\n",
        b"* 1 FETCH (FLAGS (\\Seen)\r\n",
        b"* 1 FETCH (ENVELOPE (\"caf\xc3\xa9\"))\r\n",
        b"* 1 FROB\r\n",
        b"* OK [ALERT x\r\n",
        b"a OK \x01\r\n",
        b"\r\n",
    ] {
        assert!(ok(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    assert!(imap_gen::check(b"a OK no greeting\r\n").is_err());
}

/// A few fixed sessions through the same driver, so that the grammar paths
/// the random runs rely on are known to be taken.
#[test]
fn imap_core_fixed_sessions_through_the_driver() {
    use imap_gen::{drive, Choices};
    let (settings, _) = imap_gen::settings(&mut Choices::new(&[255; 16]));
    let input = b"t0 LOGIN alice pw\r\nt1 SELECT INBOX\r\nt2 FETCH 1:* (UID FLAGS BODY.PEEK[1] BODYSTRUCTURE)\r\n\
t3 UID SEARCH CHARSET UTF-8 OR BODY {6}\r\nsch\xc3\xb6n NOT SEEN\r\nt4 STORE 2 +FLAGS (\\Recent)\r\n\
t5 APPEND INBOX {3+}\r\nabc\r\nt6 IDLE\r\nDONE\r\nt7 LOGOUT\r\n";
    let out = drive(settings, true, input, &[5, 40, 41, 200]);
    imap_gen::check(&out).unwrap();
    let text = String::from_utf8_lossy(&out);
    for want in [
        "t0 OK [CAPABILITY ",
        "* 1 FETCH (UID 2 FLAGS (\\Seen \\Recent) BODY[1] {37}\r\nSch=C3=B6ne Gr=C3=BC=C3=9Fe vom Rhein BODYSTRUCTURE ((",
        "* 2 FETCH (UID 5 FLAGS ($Junk) BODY[1] {7}\r\nhello\r\n BODYSTRUCTURE (\"text\" \"plain\"",
        "t2 OK FETCH completed\r\n",
        "* SEARCH 2 5 6\r\nt3 OK",
        "t4 BAD The flag \\Recent cannot be stored\r\n",
        "t5 OK [APPENDUID 1 7]",
        "+ idling\r\n* 3 EXISTS\r\nt6 OK IDLE terminated\r\n",
        "* BYE Logging out\r\nt7 OK LOGOUT completed\r\n",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    assert!(!text.contains("* 3 FETCH"), "the message whose file is gone is left out: {text}");
}
