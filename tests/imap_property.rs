//! The IMAP core under random and grammar-shaped input (acceptance item 5
//! of issue 11): tagged commands with quoted strings, synchronising and
//! non-synchronising literals (right and wrong lengths), sequence sets,
//! FETCH/SEARCH/STORE/APPEND/IDLE/DONE/AUTHENTICATE and the rest, raw
//! bytes, all split at random points and fed to the sans-IO session with a
//! service that answers FETCH and SEARCH through the real `imap::fetch` and
//! `imap::search`; then the same input through the real service
//! (`imap::ImapService`) on a real mailbox store, in process. No panic, and
//! every response is well formed (see tests/imap_gen). The cargo-fuzz
//! target imap_session runs the core part.

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

/// The real service (`imap::ImapService` on a real mailbox store in a temp
/// dir), driven in process as the driver drives it: the same grammar-shaped
/// input after a login and SELECT, split at random points. No panic, every
/// response well formed, whatever the commands do to the store.
mod service {
    use super::imap_gen::{self, Choices};
    use bytes::BytesMut;
    use postern::auth::throttle::AuthThrottle;
    use postern::auth::{Accounts, Gate};
    use postern::config::Config;
    use postern::imap::ImapService;
    use postern::mailbox::MailboxStore;
    use postern::net::{ConnInfo, Next, Service, Session};
    use postern::tls::TlsInfo;
    use proptest::prelude::*;
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    const ALICE: &str = "alice@example.test";

    struct World {
        _dir: tempfile::TempDir,
        store: Arc<MailboxStore>,
        service: ImapService,
        rt: tokio::runtime::Runtime,
    }

    fn world() -> &'static World {
        static W: OnceLock<World> = OnceLock::new();
        W.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::Config::new().path(dir.path().join("db")).open().unwrap();
            let accounts = Accounts::open(&db).unwrap();
            accounts.add_user(ALICE, "pw").unwrap();
            let store = Arc::new(MailboxStore::open(&db, dir.path(), accounts.clone()).unwrap().0);
            let toml = r#"
[server]
hostname = "imap.example.test"
data_dir = "data"
local_domains = ["example.test"]

[[virtual_server]]
name = "imap"
protocol = "imap"
listen = ["127.0.0.1:0"]
tls = "none"
allow_plaintext_auth = true
"#;
            let config = Config::parse(toml, std::path::Path::new("property.toml")).unwrap();
            let vs = Arc::new(config.virtual_server("imap").unwrap().clone());
            let gate = Gate::new(accounts, AuthThrottle::new(1_000_000, Duration::from_secs(1)), Duration::ZERO);
            let service = ImapService::new("imap.example.test", gate, store.clone(), vs);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            World { _dir: dir, store, service, rt }
        })
    }

    /// Run one session; the output, all of it.
    fn session(w: &World, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        // keep a few messages in the INBOX whatever earlier runs expunged
        let have = w.store.messages(ALICE, "INBOX").map(|l| l.messages.len()).unwrap_or(0);
        for _ in have..3 {
            w.store.deliver(ALICE, imap_gen::MULTI.as_bytes(), 1_700_000_000).unwrap();
        }
        let conn = ConnInfo { peer: "127.0.0.1:40000".parse().unwrap(), implicit_tls: false };
        let mut s = w.service.session(&conn);
        let mut out = Vec::new();
        s.greeting(&mut out);
        w.rt.block_on(async {
            let mut buf = BytesMut::new();
            let mut prev = 0;
            'input: for cut in cuts.iter().map(|&c| c.min(input.len())).chain([input.len()]) {
                if cut < prev {
                    continue;
                }
                buf.extend_from_slice(&input[prev..cut]);
                prev = cut;
                loop {
                    match s.handle(&mut buf, &mut out).await {
                        Next::Read => break,
                        Next::Continue => {}
                        Next::StartTls => {
                            buf.clear();
                            let info = TlsInfo { version: "TLSv1.3".into(), cipher: "x".into(), sni: None };
                            s.tls_started(&info);
                        }
                        Next::Close => break 'input,
                    }
                }
            }
        });
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn imap_service_answers_any_input_split_anywhere_well(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let w = world();
            let mut c = Choices::new(&data);
            let mut input = b"t0 LOGIN alice@example.test pw\r\nt1 SELECT INBOX\r\n".to_vec();
            input.extend(imap_gen::session_input(&mut c));
            let cuts = imap_gen::cuts(&mut Choices::new(&data), input.len());
            let out = session(w, &input, &cuts);
            if let Err(e) = imap_gen::check(&out) {
                prop_assert!(false, "{}\ninput: {:?}", e, String::from_utf8_lossy(&input));
            }
        }
    }

    /// The service side of the harness works: a known session is answered
    /// as the acceptance tests expect.
    #[test]
    fn imap_service_fixed_session_through_the_harness() {
        let w = world();
        let input = "t0 LOGIN alice@example.test pw\r\nt1 SELECT INBOX\r\n\
t2 FETCH 1 (FLAGS BODY.PEEK[1])\r\nt3 SEARCH CHARSET UTF-8 BODY {7}\r\nsch\u{f6}ne\r\nt4 LOGOUT\r\n";
        let out = session(w, input.as_bytes(), &[3, 30, 31, 90]);
        imap_gen::check(&out).unwrap();
        let text = String::from_utf8_lossy(&out);
        for want in [
            "t0 OK [CAPABILITY ",
            "t1 OK [READ-WRITE]",
            "* 1 FETCH (FLAGS (",
            "BODY[1] {37}\r\nSch=C3=B6ne Gr=C3=BC=C3=9Fe vom Rhein)\r\n",
            "* SEARCH 1 2 3",
            "* BYE ",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
    }
}
