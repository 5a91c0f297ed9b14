//! The SMTP conversation: per-recipient results, session reuse,
//! PIPELINING, dot-stuffing, HELO fallback, smarthosts with implicit TLS
//! and AUTH.

use crate::sink::{Sink, SinkConfig, StartTls};
use crate::*;
use postern::delivery::RcptOutcome;
use postern::queue::Stage;

const LITERAL: &str = "[127.0.0.1]";

async fn literal_transport(sink: &Sink, extra: &str) -> (Arc<Config>, SmtpTransport) {
    let c = config(None, &connector(extra));
    let t = transport(&c, settings(sink.port()));
    (c, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcpt_4xx_defers_and_5xx_fails_only_that_recipient() {
    let sink = Sink::start(
        SinkConfig::new(&["mx.test"])
            .rcpt_reply("busy@[127.0.0.1]", "451 4.7.1 greylisted, try later")
            .rcpt_reply("nobody@[127.0.0.1]", "550 5.1.1 no such user"),
    )
    .await;
    let (c, t) = literal_transport(&sink, "").await;
    let r = deliver(&t, &c, LITERAL, &[(0, "busy@[127.0.0.1]")]).await;
    assert_eq!(summary(&r), ["deferred rcpt: 451 4.7.1"]);
    let a = r.outcomes[0].1.result();
    assert_eq!((a.text.as_str(), a.remote_host.as_deref()), ("greylisted, try later", Some("127.0.0.1")));

    let r = deliver(&t, &c, LITERAL, &[(4, "nobody@[127.0.0.1]"), (7, "x@[127.0.0.1]")]).await;
    assert_eq!(summary(&r), ["failed rcpt: 550 5.1.1", "delivered"]);
    assert_eq!(r.outcomes.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [4, 7]);
    let RcptOutcome::Delivered(a) = &r.outcomes[1].1 else { unreachable!() };
    assert_eq!((a.code, a.stage), (Some(250), Stage::Data));
    assert!(a.text.contains("queued as SINK1"), "{a:?}");
    assert!(!r.unreachable);
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, ["x@[127.0.0.1]"]);
    assert_eq!(got[0].mail, "<a@origin.test> SIZE=63");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_carries_several_messages() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"])).await;
    let (c, t) = literal_transport(&sink, "").await;
    for i in 0..3 {
        let r = deliver(&t, &c, LITERAL, &[(i, "x@[127.0.0.1]")]).await;
        assert_eq!(summary(&r), ["delivered"]);
        assert!(r.tls.unwrap().info.is_some(), "a reused session keeps its TLS outcome");
        assert_eq!(t.idle_sessions(), 1);
    }
    assert_eq!(sink.connections(), 1, "one connection for three messages");
    let got = sink.messages();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|m| m.conn == 1 && m.tls.is_some()));
    // a clean transaction leaves nothing to reset: reuse costs no round trip
    let commands = sink.batches().concat();
    assert_eq!(commands.iter().filter(|c| *c == "RSET").count(), 0, "{commands:?}");
    t.close_idle().await;
    assert_eq!(t.idle_sessions(), 0);
    assert!(crate::eventually(|| sink.batches().concat().last().map(String::as_str) == Some("QUIT")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_the_server_closed_is_not_reused() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"]).close_after(1)).await;
    let (c, t) = literal_transport(&sink, "").await;
    assert_eq!(summary(&deliver(&t, &c, LITERAL, &[(0, "x@[127.0.0.1]")]).await), ["delivered"]);
    // the server says 421 and closes the idle connection
    assert!(crate::eventually(|| sink.batches().len() >= 2 || sink.connections() == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = deliver(&t, &c, LITERAL, &[(0, "y@[127.0.0.1]")]).await;
    assert_eq!(summary(&r), ["delivered"], "not a failure: the probe saw the closed session");
    assert_eq!(sink.connections(), 2);
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_idle_session_is_replaced() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"])).await;
    let c = config(None, &connector(""));
    let mut s = settings(sink.port());
    s.idle_timeout = Duration::from_millis(200);
    let t = transport(&c, s);
    assert_eq!(summary(&deliver(&t, &c, LITERAL, &[(0, "x@[127.0.0.1]")]).await), ["delivered"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(summary(&deliver(&t, &c, LITERAL, &[(0, "x@[127.0.0.1]")]).await), ["delivered"]);
    assert_eq!(sink.connections(), 2, "the expired session was not reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_recipients_go_in_several_transactions() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"])).await;
    let c = config(None, &connector(""));
    let mut s = settings(sink.port());
    s.max_recipients_per_transaction = 2;
    let t = transport(&c, s);
    let addrs: Vec<String> = (0..5).map(|i| format!("r{i}@[127.0.0.1]")).collect();
    let rcpts: Vec<(usize, &str)> = addrs.iter().enumerate().map(|(i, a)| (i, a.as_str())).collect();
    let r = deliver(&t, &c, LITERAL, &rcpts).await;
    assert_eq!(summary(&r), vec!["delivered"; 5]);
    let got = sink.messages();
    assert_eq!(got.iter().map(|m| m.rcpts.len()).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(sink.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_is_used_only_when_offered() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"])).await;
    let (c, t) = literal_transport(&sink, "").await;
    let r = deliver(&t, &c, LITERAL, &[(0, "x@[127.0.0.1]"), (1, "y@[127.0.0.1]")]).await;
    assert_eq!(summary(&r), ["delivered", "delivered"]);
    let b = sink.batches();
    let mail = b.iter().find(|b| b.iter().any(|c| c.starts_with("MAIL"))).unwrap();
    assert_eq!(
        mail,
        &["MAIL FROM:<a@origin.test> SIZE=63", "RCPT TO:<x@[127.0.0.1]>", "RCPT TO:<y@[127.0.0.1]>", "DATA"],
        "{b:?}"
    );

    let plain = Sink::start(SinkConfig::new(&["mx.test"]).pipelining(false)).await;
    let (c, t) = literal_transport(&plain, "").await;
    let r = deliver(&t, &c, LITERAL, &[(0, "x@[127.0.0.1]"), (1, "y@[127.0.0.1]")]).await;
    assert_eq!(summary(&r), ["delivered", "delivered"]);
    for batch in plain.batches() {
        assert!(batch.len() == 1, "one command at a time without PIPELINING: {batch:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_stuffing_and_crlf() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"])).await;
    let (c, t) = literal_transport(&sink, "").await;
    let body = b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two\r\nlast line without end";
    let rcpts = [(0, "x@[127.0.0.1]")];
    let r = t.deliver(&c.connectors[0], LITERAL, &message(&rcpts, body)).await;
    assert_eq!(summary(&r), ["delivered"]);
    let got = &sink.messages()[0];
    assert_eq!(got.wire, b"Subject: dots\r\n\r\n..leading dot\r\n..\r\n...two\r\nlast line without end\r\n");
    assert_eq!(got.body, b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two\r\nlast line without end\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helo_when_ehlo_is_refused() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"]).no_ehlo()).await;
    let (c, t) = literal_transport(&sink, "tls = \"opportunistic\"\nhelo_name = \"out.postern.test\"").await;
    let r = deliver(&t, &c, LITERAL, &[(0, "x@[127.0.0.1]")]).await;
    assert_eq!(summary(&r), ["delivered"]);
    let commands = sink.batches().concat();
    assert_eq!(&commands[..2], ["EHLO out.postern.test", "HELO out.postern.test"]);
    assert_eq!(r.tls.unwrap().note.as_deref(), Some("STARTTLS not offered"));
    assert_eq!(sink.messages()[0].mail, "<a@origin.test>", "no ESMTP parameters after HELO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_greeting_moves_on() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"]).greeting("554 5.7.1 not you")).await;
    let (c, t) = literal_transport(&sink, "").await;
    let r = deliver(&t, &c, LITERAL, &[(0, "x@[127.0.0.1]")]).await;
    assert_eq!(summary(&r), ["deferred connect: 554 5.7.1"]);
    assert!(r.unreachable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_smarthost() {
    let sink = Sink::start(SinkConfig::new(&["relay.test"]).implicit_tls().starttls(StartTls::NotOffered)).await;
    let extra = format!("smarthost = \"127.0.0.1:{}\"\nsmarthost_tls = \"implicit\"\ntls = \"none\"", sink.port());
    let c = config(None, &connector(&extra));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "anywhere.example", &[(0, "x@anywhere.example")]).await;
    assert_eq!(summary(&r), ["delivered"]);
    assert!(r.tls.unwrap().info.is_some());
    assert!(sink.messages()[0].tls.is_some());

    // a plaintext server on the implicit-TLS port: a TLS failure, no plaintext
    let plain = Sink::start(SinkConfig::new(&["relay.test"]).starttls(StartTls::NotOffered)).await;
    let extra = format!("smarthost = \"127.0.0.1:{}\"\nsmarthost_tls = \"implicit\"", plain.port());
    let c = config(None, &connector(&extra));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "anywhere.example", &[(0, "x@anywhere.example")]).await;
    assert!(summary(&r)[0].starts_with("deferred tls: handshake failed"), "{:?}", summary(&r));
    assert!(plain.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_to_the_smarthost_only_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("relay.secret");
    std::fs::write(&secret, "pa ss\nignored second line\n").unwrap();
    let auth = |port: u16, user: &str| {
        format!(
            "smarthost = \"127.0.0.1:{port}\"\nauth_username = \"{user}\"\nauth_password_file = {:?}",
            secret.display().to_string()
        )
    };

    let sink = Sink::start(SinkConfig::new(&["relay.test"]).auth("relay-user", "pa ss")).await;
    let c = config(None, &connector(&auth(sink.port(), "relay-user")));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "anywhere.example", &[(0, "x@anywhere.example")]).await;
    assert_eq!(summary(&r), ["delivered"]);
    let got = &sink.messages()[0];
    assert_eq!((got.auth_user.as_deref(), got.tls.is_some()), (Some("relay-user"), true));
    assert_eq!(sink.log.lock().unwrap().auth_attempts, [("relay-user".to_string(), true)]);

    // wrong credentials: deferred at auth, not "unreachable"
    let c = config(None, &connector(&auth(sink.port(), "someone-else")));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "anywhere.example", &[(0, "x@anywhere.example")]).await;
    assert_eq!(summary(&r), ["deferred auth: 535 5.7.8"]);
    assert!(!r.unreachable);

    // no STARTTLS at the smarthost: the credentials are never sent
    let plain =
        Sink::start(SinkConfig::new(&["relay.test"]).auth("relay-user", "pa ss").starttls(StartTls::NotOffered)).await;
    let c = config(None, &connector(&auth(plain.port(), "relay-user")));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "anywhere.example", &[(0, "x@anywhere.example")]).await;
    assert_eq!(summary(&r), ["deferred tls: STARTTLS not offered"]);
    assert!(plain.log.lock().unwrap().auth_attempts.is_empty());
    assert!(plain.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_dns_failure_defers_and_is_unreachable() {
    let quiet = crate::dns::silent();
    let c = config(Some(quiet.addr), &connector("smarthost = \"relay.nowhere.test:2525\""));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "anywhere.example", &[(0, "x@anywhere.example")]).await;
    assert_eq!(summary(&r), ["deferred dns: timed out"]);
    assert!(r.unreachable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_the_transport() {
    let sink = Sink::start(SinkConfig::new(&["mx.test"])).await;
    let (c, t) = literal_transport(&sink, "").await;
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (t, c) = (t.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let addr = format!("r{i}@[127.0.0.1]");
            let rcpts = [(i, addr.as_str())];
            summary(&t.deliver(&c.connectors[0], LITERAL, &message(&rcpts, BODY)).await)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), ["delivered"]);
    }
    assert_eq!(sink.messages().len(), 6);
    assert!(sink.connections() <= 6);
    // idle sessions are bounded by the queue's per-destination concurrency
    assert!(t.idle_sessions() <= c.queue.max_per_destination, "{}", t.idle_sessions());
}
