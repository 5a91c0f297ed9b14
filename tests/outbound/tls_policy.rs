//! The connector TLS policies (SPEC §7) against real rustls servers.

use crate::dns::{self, Zone};
use crate::sink::{Sink, SinkConfig, StartTls};
use crate::*;
use std::net::Ipv4Addr;

const LITERAL: &str = "[127.0.0.1]";
const RCPT: &[(usize, &str)] = &[(0, "x@[127.0.0.1]")];

async fn attempt(sink: &Sink, tls: &str) -> AttemptReport {
    let c = config(None, &connector(&format!("tls = \"{tls}\"")));
    let t = transport(&c, settings(sink.port()));
    deliver(&t, &c, LITERAL, RCPT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_offered_is_used_and_recorded() {
    let sink = Sink::start(SinkConfig::new(&["mx.tls.test"])).await;
    for policy in ["opportunistic", "required"] {
        let r = attempt(&sink, policy).await;
        assert_eq!(summary(&r), ["delivered"], "{policy}");
        let tls = r.tls.expect("TLS outcome");
        let info = tls.info.expect("TLS was used");
        assert!(info.version.starts_with("TLSv1."), "{info:?}");
        assert!(!info.cipher.is_empty());
        assert!(!tls.verified, "a self-signed certificate does not verify");
        assert_eq!(tls.note, None);
    }
    let got = sink.messages();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m.tls.is_some()), "both went over TLS");
    assert_eq!(got[0].body, BODY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_none_never_starts_tls() {
    let sink = Sink::start(SinkConfig::new(&["mx.tls.test"])).await;
    let r = attempt(&sink, "none").await;
    assert_eq!(summary(&r), ["delivered"]);
    let tls = r.tls.unwrap();
    assert!(tls.info.is_none());
    assert!(tls.note.unwrap().contains("tls = \"none\""));
    assert!(sink.messages()[0].tls.is_none());
    assert!(!sink.batches().concat().iter().any(|c| c == "STARTTLS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_starttls_opportunistic_goes_plain_required_defers() {
    let sink = Sink::start(SinkConfig::new(&["mx.tls.test"]).starttls(StartTls::NotOffered)).await;
    let r = attempt(&sink, "opportunistic").await;
    assert_eq!(summary(&r), ["delivered"]);
    let tls = r.tls.unwrap();
    assert_eq!((tls.info, tls.note.as_deref()), (None, Some("STARTTLS not offered")));
    assert!(sink.messages()[0].tls.is_none());

    for policy in ["required", "verify"] {
        let r = attempt(&sink, policy).await;
        assert_eq!(summary(&r), ["deferred tls: STARTTLS not offered"], "{policy}");
        assert!(r.unreachable, "a TLS failure lets the scheduler try another connector");
        assert_eq!(r.outcomes[0].1.result().remote_host.as_deref(), Some("127.0.0.1"));
    }
    assert_eq!(sink.messages().len(), 1, "nothing sent without TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshake_opportunistic_retries_in_plaintext() {
    for mode in [StartTls::CloseAfterReady, StartTls::GarbageAfterReady] {
        let sink = Sink::start(SinkConfig::new(&["mx.tls.test"]).starttls(mode)).await;
        let r = attempt(&sink, "opportunistic").await;
        assert_eq!(summary(&r), ["delivered"], "{mode:?}");
        let tls = r.tls.unwrap();
        assert!(tls.info.is_none());
        let note = tls.note.unwrap();
        assert!(note.starts_with("plaintext after failed handshake: "), "{mode:?}: {note}");
        assert!(!note.contains("handshake failed"), "said once: {note}");
        assert_eq!(sink.connections(), 2, "{mode:?}: one failed handshake, one plaintext session");
        let got = sink.messages();
        assert_eq!((got.len(), got[0].tls.clone()), (1, None));
        assert!(
            !sink
                .batches()
                .iter()
                .skip_while(|b| !b.contains(&"STARTTLS".to_string()))
                .skip(1)
                .flatten()
                .any(|c| c == "STARTTLS"),
            "the plaintext retry does not try STARTTLS again"
        );

        let r = attempt(&sink, "required").await;
        let s = summary(&r);
        assert!(s[0].starts_with("deferred tls: handshake failed: "), "{mode:?}: {s:?}");
        assert!(r.unreachable);
        let note = r.tls.unwrap().note.unwrap();
        assert!(note.starts_with("handshake failed: ") && !note[1..].contains("handshake failed"), "{note}");
        assert_eq!(sink.messages().len(), 1, "required never falls back to plaintext");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_needs_a_trusted_certificate_naming_the_host() {
    let sink = Sink::start(SinkConfig::new(&["mx.verify.test"])).await;
    let mut z = Zone::new("test");
    z.mx("verify.test", 10, "mx.verify.test").a("mx.verify.test", Ipv4Addr::LOCALHOST);
    z.mx("wrongname.test", 10, "mx.wrongname.test").a("mx.wrongname.test", Ipv4Addr::LOCALHOST);
    let d = dns::serve(z).await;
    let rcpt: &[(usize, &str)] = &[(0, "x@verify.test")];

    // self-signed, verified against webpki-roots: not trusted
    let c = config(Some(d.addr), &connector("tls = \"verify\""));
    let t = transport(&c, settings(sink.port()));
    let r = deliver(&t, &c, "verify.test", rcpt).await;
    assert_eq!(summary(&r), ["deferred tls: certificate not trusted"]);
    assert!(r.unreachable);
    assert_eq!(r.outcomes[0].1.result().enhanced.as_deref(), Some("4.7.5"));

    // required does not verify
    let c = config(Some(d.addr), &connector("tls = \"required\""));
    let t = transport(&c, settings(sink.port()));
    assert_eq!(summary(&deliver(&t, &c, "verify.test", rcpt).await), ["delivered"]);

    // verify with tls_ca_file trusting that certificate, and the right name
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &sink.config.cert_pem).unwrap();
    let c =
        config(Some(d.addr), &connector(&format!("tls = \"verify\"\ntls_ca_file = {:?}", ca.display().to_string())));
    let t = transport(&c, settings(sink.port()));
    let r = deliver(&t, &c, "verify.test", rcpt).await;
    assert_eq!(summary(&r), ["delivered"]);
    let tls = r.tls.unwrap();
    assert!(tls.verified && tls.info.is_some());
    assert_eq!(sink.messages().len(), 2);

    // trusted, but the certificate does not name the MX host
    let r = deliver(&t, &c, "wrongname.test", &[(0, "x@wrongname.test")]).await;
    assert_eq!(summary(&r), ["deferred tls: certificate name mismatch"]);

    // and with the same trust, opportunistic reports the certificate as verified
    let c = config(
        Some(d.addr),
        &connector(&format!("tls = \"opportunistic\"\ntls_ca_file = {:?}", ca.display().to_string())),
    );
    let t = transport(&c, settings(sink.port()));
    let r = deliver(&t, &c, "verify.test", rcpt).await;
    assert!(r.tls.unwrap().verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_ca_file_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("nothing.pem");
    std::fs::write(&ca, "no certificates here").unwrap();
    let c = config(None, &connector(&format!("tls = \"verify\"\ntls_ca_file = {:?}", ca.display().to_string())));
    let e = SmtpTransport::with_settings(c, settings(25)).unwrap_err().to_string();
    assert!(e.contains("\"out\"") && e.contains("nothing.pem"), "{e}");
}
