//! The sans-IO SMTP server core on a typical pipelined transaction with a
//! 5 KB body. The baseline in the same run is a plain `memchr` scan for
//! line ends over the same bytes: the ratio says what the parser costs
//! beyond touching every byte.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use postern::proto::session::LineCore;
use postern::proto::smtp::reply;
use postern::proto::smtp::server::{AuthMode, Event, ServerSession, Settings};
use std::hint::black_box;

fn transaction() -> Vec<u8> {
    let mut t = b"EHLO client.example.org\r\nMAIL FROM:<sender@example.org> SIZE=5400 BODY=8BITMIME\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n".to_vec();
    t.extend_from_slice(b"From: sender@example.org\r\nTo: alice@example.test\r\nSubject: benchmark\r\nMessage-ID: <1@example.org>\r\n\r\n");
    for i in 0..70 {
        t.extend_from_slice(
            format!("{i:04} Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusm.\r\n").as_bytes(),
        );
    }
    t.extend_from_slice(b".\r\nQUIT\r\n");
    t
}

fn settings() -> Settings {
    Settings {
        hostname: "mx.example.test".into(),
        max_message_size: 25 << 20,
        max_recipients: 100,
        starttls: true,
        require_tls: false,
        auth: AuthMode::Off,
        allow_plaintext_auth: false,
        max_errors: 10,
    }
}

fn run_session(input: &[u8]) -> usize {
    let mut s = ServerSession::new(settings(), false);
    s.greeting();
    let mut buf = BytesMut::from(input);
    let mut body = 0;
    while let Some(ev) = s.feed(&mut buf) {
        match ev {
            Event::Mail { .. } => s.mail_decision(Ok(())),
            Event::Rcpt { .. } => s.rcpt_decision(Ok(())),
            Event::Message { body: b } => {
                body = b.len();
                s.message_decision(reply::OK);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    s.take_output(&mut out);
    body + out.len()
}

fn bench(c: &mut Criterion) {
    let t = transaction();
    let mut g = c.benchmark_group("smtp_core");
    g.throughput(Throughput::Bytes(t.len() as u64));
    g.bench_function("baseline_memchr_lines", |b| b.iter(|| memchr::memchr_iter(b'\n', black_box(&t)).count()));
    g.bench_function("transaction_5k", |b| b.iter(|| run_session(black_box(&t))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
