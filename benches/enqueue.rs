//! Enqueue with fsync: what a `250` costs. One message at a time pays a
//! full `fdatasync` each; 32 concurrent sessions share syncs through the
//! spool's group commit. The ratio of the two per-message times is the
//! group-commit gain, measured in the same run on the same disk.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use postern::datadir::DataDir;
use postern::queue::{Message, MessageKind, QueueStore, Recipient, SpoolRef};
use std::sync::Arc;

fn message(store: &QueueStore) -> Message {
    Message {
        id: store.new_id(),
        sender: "sender@example.org".into(),
        source_server: "mx".into(),
        client_ip: Some("127.0.0.1".parse().unwrap()),
        client_helo: Some("client".into()),
        auth_user: None,
        tls: None,
        arrived: 0,
        size: 5120,
        body_type: Default::default(),
        smtputf8: false,
        kind: MessageKind::Inbound,
        frozen: false,
        delay_warned: false,
        require_tls: false,
        tls_optional: false,
        recipients: vec![Recipient::new("rcpt@example.net".into(), "internet/example.net".into())],
        spool: SpoolRef::default(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let (store, _) = QueueStore::open(&data.db, dir.path()).unwrap();
    let store = Arc::new(store);
    let body = vec![b'x'; 5120];
    let mut g = c.benchmark_group("enqueue_fsync");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_at_a_time", |b| {
        b.iter(|| rt.block_on(store.enqueue(message(&store), body.clone())).unwrap());
    });
    g.throughput(Throughput::Elements(32));
    g.bench_function("32_concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..32)
                    .map(|_| {
                        let store = store.clone();
                        let body = body.clone();
                        tokio::spawn(async move { store.enqueue(message(&store), body).await.unwrap() })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
