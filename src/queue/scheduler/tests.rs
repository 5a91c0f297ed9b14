//! Scheduler behaviour with scripted transports: retries on schedule,
//! permanent failures and expiry produce NDRs (never for `<>`), a report
//! that cannot be delivered goes to the postmaster, one delay DSN, freeze
//! and thaw, failover only among equally specific connectors, restart.

use super::*;
use crate::datadir::DataDir;
use crate::delivery::BoxFuture;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Deliver,
    Defer,
    Fail,
}

#[derive(Default)]
struct Fake {
    /// Per recipient address, the answers to give in turn (the last repeats).
    script: Mutex<HashMap<String, VecDeque<Act>>>,
    unreachable: Mutex<HashSet<String>>,
    calls: Mutex<Vec<(String, String, Vec<String>)>>,
    delivered: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Fake {
    fn script(&self, rcpt: &str, acts: &[Act]) {
        self.script.lock().unwrap().insert(rcpt.into(), acts.iter().copied().collect());
    }
    fn next(&self, rcpt: &str) -> Act {
        let mut s = self.script.lock().unwrap();
        match s.get_mut(rcpt) {
            Some(q) if q.len() > 1 => q.pop_front().unwrap(),
            Some(q) => q.front().copied().unwrap_or(Act::Deliver),
            None => Act::Deliver,
        }
    }
    fn calls(&self) -> Vec<(String, String, Vec<String>)> {
        self.calls.lock().unwrap().clone()
    }
    fn delivered_to(&self, rcpt: &str) -> Vec<Vec<u8>> {
        self.delivered.lock().unwrap().iter().filter(|(r, _)| r == rcpt).map(|(_, b)| b.clone()).collect()
    }
    fn answer(&self, connector: &str, domain: &str, a: Attempt<'_>) -> AttemptReport {
        let addrs: Vec<String> = a.recipients.iter().map(|&(_, address)| address.to_string()).collect();
        self.calls.lock().unwrap().push((connector.into(), domain.into(), addrs));
        let res = |code: u16, enh: &str, stage: Stage| AttemptResult {
            code: Some(code),
            enhanced: Some(enh.into()),
            text: "scripted".into(),
            remote_host: Some("mx.test".into()),
            stage,
            at: now_secs(),
        };
        if self.unreachable.lock().unwrap().contains(connector) {
            return AttemptReport {
                outcomes: a
                    .recipients
                    .iter()
                    .map(|&(i, _)| {
                        (
                            i,
                            RcptOutcome::Deferred(AttemptResult {
                                code: None,
                                enhanced: None,
                                text: "refused".into(),
                                remote_host: None,
                                stage: Stage::Connect,
                                at: 0,
                            }),
                        )
                    })
                    .collect(),
                tls: None,
                remote_ip: None,
                unreachable: true,
            };
        }
        let outcomes = a
            .recipients
            .iter()
            .map(|&(i, address)| {
                let addr = &address.to_string();
                let o = match self.next(addr) {
                    Act::Deliver => {
                        self.delivered.lock().unwrap().push((addr.clone(), a.body.to_vec()));
                        RcptOutcome::Delivered(res(250, "2.0.0", Stage::Data))
                    }
                    Act::Defer => RcptOutcome::Deferred(res(451, "4.3.0", Stage::Rcpt)),
                    Act::Fail => RcptOutcome::Failed(res(550, "5.1.1", Stage::Rcpt)),
                };
                (i, o)
            })
            .collect();
        AttemptReport { outcomes, tls: None, remote_ip: None, unreachable: false }
    }
}

struct FakeRemote(Arc<Fake>);
struct FakeLocal(Arc<Fake>);

impl Remote for FakeRemote {
    fn deliver<'a>(
        &'a self,
        c: &'a crate::config::Connector,
        domain: &'a str,
        a: Attempt<'a>,
    ) -> BoxFuture<'a, AttemptReport> {
        Box::pin(async move { self.0.answer(&c.name, domain, a) })
    }
}

impl Local for FakeLocal {
    fn deliver<'a>(&'a self, a: Attempt<'a>) -> BoxFuture<'a, AttemptReport> {
        Box::pin(async move { self.0.answer("local", "", a) })
    }
}

struct Env {
    _dir: tempfile::TempDir,
    _data: DataDir,
    store: Arc<QueueStore>,
    fake: Arc<Fake>,
    sched: Scheduler,
    accounts: Accounts,
}

fn conf(queue: &str, connectors: &str) -> Arc<Config> {
    let text = format!(
        r#"
[server]
hostname = "mx.example.test"
local_domains = ["example.test"]
postmaster = "postmaster@example.test"

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:0"]

{connectors}

[queue]
{queue}
"#
    );
    Arc::new(Config::parse(&text, Path::new("t.toml")).unwrap())
}

const STAR: &str = "[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n";

fn env(config: Arc<Config>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let (store, _) = QueueStore::open(&data.db, dir.path()).unwrap();
    let store = Arc::new(store);
    let accounts = Accounts::open(&data.db).unwrap();
    accounts.add_user("postmaster@example.test", "pw").unwrap();
    accounts.add_user("alice@example.test", "pw").unwrap();
    let fake = Arc::new(Fake::default());
    let sched = Scheduler::start(
        store.clone(),
        config,
        accounts.clone(),
        Some(Arc::new(FakeRemote(fake.clone()))),
        Some(Arc::new(FakeLocal(fake.clone()))),
        crate::metrics::Metrics::off(),
        crate::track::Tracker::off(),
    );
    Env { _dir: dir, _data: data, store, fake, sched, accounts }
}

async fn enqueue(store: &QueueStore, sender: &str, rcpts: &[(&str, &str)]) -> QueueId {
    let m = Message {
        id: store.new_id(),
        sender: sender.into(),
        source_server: "mx".into(),
        client_ip: None,
        client_helo: None,
        auth_user: None,
        tls: None,
        arrived: now_secs(),
        size: 40,
        body_type: Default::default(),
        smtputf8: false,
        kind: MessageKind::Inbound,
        frozen: false,
        delay_warned: false,
        require_tls: false,
        tls_optional: false,
        recipients: rcpts.iter().map(|(a, d)| Recipient::new(a.to_string(), d.to_string())).collect(),
        spool: SpoolRef::default(),
    };
    let id = m.id.clone();
    store.enqueue(m, b"Subject: original\r\nMessage-ID: <orig@x>\r\n\r\nbody\r\n".to_vec()).await.unwrap();
    id
}

async fn until(limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "condition not reached in {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reports(store: &QueueStore) -> Vec<Message> {
    store.iter().map(|m| m.unwrap()).filter(|m| m.kind == MessageKind::Report).collect()
}

#[tokio::test]
async fn delivers_and_removes() {
    let e = env(conf("", STAR));
    let id = enqueue(
        &e.store,
        "s@example.org",
        &[("a@remote.test", "internet/remote.test"), ("alice@example.test", "local")],
    )
    .await;
    until(Duration::from_secs(5), || e.store.get(&id).unwrap().is_none()).await;
    assert_eq!(e.fake.delivered_to("a@remote.test").len(), 1);
    assert_eq!(e.fake.delivered_to("alice@example.test").len(), 1);
    assert!(e.fake.calls().iter().any(|(c, d, _)| c == "internet" && d == "remote.test"));
}

#[tokio::test]
async fn deferred_recipients_retry_on_schedule() {
    let e = env(conf("retry_schedule = [\"1s\"]", STAR));
    e.fake.script("a@remote.test", &[Act::Defer, Act::Defer, Act::Deliver]);
    let id = enqueue(&e.store, "s@example.org", &[("a@remote.test", "internet/remote.test")]).await;
    until(Duration::from_secs(3), || e.store.get(&id).unwrap().is_some_and(|m| m.recipients[0].attempts == 1)).await;
    let m = e.store.get(&id).unwrap().unwrap();
    let r = &m.recipients[0];
    assert_eq!(r.state, RcptState::Queued);
    assert_eq!(r.last_result.as_ref().unwrap().category(), "rcpt: 451 4.3.0");
    assert!(r.next_attempt.unwrap() > now_secs() - 1);
    until(Duration::from_secs(10), || e.store.get(&id).unwrap().is_none()).await;
    assert_eq!(e.fake.calls().len(), 3);
    assert!(reports(&e.store).is_empty());
}

#[tokio::test]
async fn permanent_failure_bounces_only_the_failed_recipient() {
    let e = env(conf("", STAR));
    e.fake.script("bad@remote.test", &[Act::Fail]);
    let id = enqueue(
        &e.store,
        "alice@example.test",
        &[("good@remote.test", "internet/remote.test"), ("bad@remote.test", "internet/remote.test")],
    )
    .await;
    until(Duration::from_secs(5), || e.store.get(&id).unwrap().is_none()).await;
    // the NDR went to alice (local), naming only the failed recipient
    until(Duration::from_secs(5), || !e.fake.delivered_to("alice@example.test").is_empty()).await;
    let ndr = String::from_utf8(e.fake.delivered_to("alice@example.test")[0].clone()).unwrap();
    assert!(ndr.contains("bad@remote.test") && !ndr.contains("good@remote.test"), "{ndr}");
    assert!(ndr.contains("Subject: original"), "original headers: {ndr}");
}

#[tokio::test]
async fn null_sender_never_bounces() {
    let e = env(conf("", STAR));
    e.fake.script("bad@remote.test", &[Act::Fail]);
    let id = enqueue(&e.store, "", &[("bad@remote.test", "internet/remote.test")]).await;
    until(Duration::from_secs(5), || e.store.get(&id).unwrap().is_none()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(e.store.is_empty(), "no NDR queued");
    assert_eq!(e.fake.calls().len(), 1);
}

#[tokio::test]
async fn expiry_bounces_once_with_a_delay_warning_first() {
    let e = env(conf("retry_schedule = [\"1s\"]\nmax_lifetime = \"3s\"\ndelay_warning_after = \"1s\"", STAR));
    e.fake.script("slow@remote.test", &[Act::Defer]);
    let id = enqueue(&e.store, "alice@example.test", &[("slow@remote.test", "internet/remote.test")]).await;
    until(Duration::from_secs(10), || e.store.get(&id).unwrap().is_none()).await;
    until(Duration::from_secs(5), || e.fake.delivered_to("alice@example.test").len() == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_alice = e.fake.delivered_to("alice@example.test");
    assert_eq!(to_alice.len(), 2, "one delay notice and one NDR");
    let texts: Vec<String> = to_alice.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
    assert!(texts[0].contains("Delayed"), "{}", texts[0]);
    assert!(texts[1].contains("Undelivered"), "{}", texts[1]);
}

#[tokio::test]
async fn undeliverable_ndr_goes_to_postmaster_and_stops_there() {
    let e = env(conf("", STAR));
    e.fake.script("bad@remote.test", &[Act::Fail]);
    e.fake.script("sender@elsewhere.test", &[Act::Fail]);
    e.fake.script("postmaster@example.test", &[Act::Fail]);
    enqueue(&e.store, "sender@elsewhere.test", &[("bad@remote.test", "internet/remote.test")]).await;
    // NDR to sender fails -> report to postmaster, which fails -> dropped
    until(Duration::from_secs(5), || {
        e.fake.calls().iter().any(|(_, _, a)| a.contains(&"postmaster@example.test".to_string()))
    })
    .await;
    until(Duration::from_secs(5), || e.store.is_empty()).await;
    let calls = e.fake.calls();
    assert_eq!(
        calls.iter().filter(|(_, _, a)| a.contains(&"postmaster@example.test".to_string())).count(),
        1,
        "{calls:?}"
    );
}

#[tokio::test]
async fn frozen_messages_wait_for_thaw_and_retry_is_immediate() {
    let e = env(conf("retry_schedule = [\"1h\"]", STAR));
    e.fake.script("a@remote.test", &[Act::Defer, Act::Deliver]);
    let id = enqueue(&e.store, "s@example.org", &[("a@remote.test", "internet/remote.test")]).await;
    until(Duration::from_secs(3), || e.fake.calls().len() == 1).await;
    let sel = Selector { ids: vec![id.to_string()], ..Default::default() };
    assert_eq!(e.sched.control(ControlOp::Freeze(sel.clone())).await.unwrap(), vec![id.to_string()]);
    assert!(e.store.get(&id).unwrap().unwrap().frozen);
    // retry of a frozen message does nothing until it is thawed
    e.sched.control(ControlOp::Retry(sel.clone())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.fake.calls().len(), 1);
    e.sched.control(ControlOp::Thaw(sel.clone())).await.unwrap();
    until(Duration::from_secs(3), || e.store.get(&id).unwrap().is_none()).await;
    assert_eq!(e.fake.calls().len(), 2);
}

#[tokio::test]
async fn delete_with_and_without_ndr() {
    let e = env(conf("retry_schedule = [\"1h\"]", STAR));
    e.fake.script("a@remote.test", &[Act::Defer]);
    let quiet = enqueue(&e.store, "alice@example.test", &[("a@remote.test", "internet/remote.test")]).await;
    let loud = enqueue(&e.store, "alice@example.test", &[("a@remote.test", "internet/remote.test")]).await;
    until(Duration::from_secs(3), || e.fake.calls().len() == 2).await;
    e.sched
        .control(ControlOp::Delete {
            select: Selector { ids: vec![quiet.to_string()], ..Default::default() },
            ndr: false,
        })
        .await
        .unwrap();
    e.sched
        .control(ControlOp::Delete {
            select: Selector { ids: vec![loud.to_string()], ..Default::default() },
            ndr: true,
        })
        .await
        .unwrap();
    until(Duration::from_secs(3), || e.fake.delivered_to("alice@example.test").len() == 1).await;
    let ndr = String::from_utf8_lossy(&e.fake.delivered_to("alice@example.test")[0]).into_owned();
    assert!(ndr.contains("deleted from the queue"), "{ndr}");
    until(Duration::from_secs(3), || e.store.is_empty()).await;
    assert!(e
        .sched
        .control(ControlOp::Retry(Selector { ids: vec![quiet.to_string()], ..Default::default() }))
        .await
        .is_err());
}

const TWO_EQUAL: &str = r#"
[[connector]]
name = "primary"
address_spaces = ["remote.test"]
cost = 1

[[connector]]
name = "backup"
address_spaces = ["remote.test"]
cost = 5

[[connector]]
name = "wildcard"
address_spaces = ["*"]
cost = 1
"#;

#[tokio::test]
async fn failover_only_to_equally_specific_connectors() {
    let e = env(conf("retry_schedule = [\"1h\"]", TWO_EQUAL));
    e.fake.unreachable.lock().unwrap().insert("primary".into());
    let id = enqueue(&e.store, "s@example.org", &[("a@remote.test", "primary/remote.test")]).await;
    until(Duration::from_secs(3), || e.store.get(&id).unwrap().is_none()).await;
    let names: Vec<String> = e.fake.calls().into_iter().map(|c| c.0).collect();
    assert_eq!(names, ["primary", "backup"]);
    // with both pinned connectors down, the wildcard is never used
    e.fake.unreachable.lock().unwrap().insert("backup".into());
    let id = enqueue(&e.store, "s@example.org", &[("b@remote.test", "primary/remote.test")]).await;
    until(Duration::from_secs(3), || e.store.get(&id).unwrap().is_some_and(|m| m.recipients[0].attempts == 1)).await;
    let names: Vec<String> = e.fake.calls().into_iter().map(|c| c.0).collect();
    assert_eq!(names, ["primary", "backup", "primary", "backup"]);
    let m = e.store.get(&id).unwrap().unwrap();
    assert_eq!(m.recipients[0].state, RcptState::Queued);
    assert_eq!(m.recipients[0].last_result.as_ref().unwrap().category(), "connect: refused");
}

#[tokio::test]
async fn unknown_connector_is_rerouted_and_unroutable_fails() {
    let e = env(conf("", STAR));
    let id = enqueue(&e.store, "s@example.org", &[("a@remote.test", "gone/remote.test")]).await;
    until(Duration::from_secs(3), || e.store.get(&id).unwrap().is_none()).await;
    assert_eq!(e.fake.calls()[0].0, "internet");
    let e2 = env(conf("", ""));
    let _ = &e2.accounts;
    let id = enqueue(&e2.store, "alice@example.test", &[("a@remote.test", "unroutable/remote.test")]).await;
    until(Duration::from_secs(3), || e2.store.get(&id).unwrap().is_none()).await;
    until(Duration::from_secs(3), || !e2.fake.delivered_to("alice@example.test").is_empty()).await;
}

#[tokio::test]
async fn concurrency_is_bounded_per_destination() {
    struct Slow(Arc<Fake>, Arc<Mutex<(usize, usize)>>);
    impl Remote for Slow {
        fn deliver<'a>(
            &'a self,
            c: &'a crate::config::Connector,
            d: &'a str,
            a: Attempt<'a>,
        ) -> BoxFuture<'a, AttemptReport> {
            Box::pin(async move {
                {
                    let mut g = self.1.lock().unwrap();
                    g.0 += 1;
                    g.1 = g.1.max(g.0);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.1.lock().unwrap().0 -= 1;
                self.0.answer(&c.name, d, a)
            })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let (store, _) = QueueStore::open(&data.db, dir.path()).unwrap();
    let store = Arc::new(store);
    let fake = Arc::new(Fake::default());
    let peak = Arc::new(Mutex::new((0, 0)));
    let _s = Scheduler::start(
        store.clone(),
        conf("max_per_destination = 3", STAR),
        Accounts::open(&data.db).unwrap(),
        Some(Arc::new(Slow(fake.clone(), peak.clone()))),
        None,
        crate::metrics::Metrics::off(),
        crate::track::Tracker::off(),
    );
    for _ in 0..12 {
        enqueue(&store, "s@example.org", &[("a@remote.test", "internet/remote.test")]).await;
    }
    until(Duration::from_secs(10), || store.is_empty()).await;
    assert_eq!(peak.lock().unwrap().1, 3);
}

const PINNED: &str = r#"
[[connector]]
name = "shared"
address_spaces = ["pinned.test", "other.test"]
smarthost = "127.0.0.1:2525"
cost = 1

[[connector]]
name = "pinned-backup"
address_spaces = ["pinned.test"]
tls = "verify"
cost = 5

[[connector]]
name = "other-backup"
address_spaces = ["other.test"]
cost = 5

[[connector]]
name = "wildcard"
address_spaces = ["*"]
"#;

/// Which connectors carried `rcpt`.
fn carried(fake: &Fake, rcpt: &str) -> Vec<String> {
    fake.calls().into_iter().filter(|(_, _, a)| a.iter().any(|x| x == rcpt)).map(|c| c.0).collect()
}

#[tokio::test]
async fn failover_is_decided_per_recipient_domain() {
    // SPEC §13.9: a recipient of a pinned domain never leaves on a connector
    // that does not cover it, whatever other recipients share the message
    let e = env(conf("retry_schedule = [\"1h\"]", PINNED));
    e.fake.unreachable.lock().unwrap().insert("shared".into());
    let id = enqueue(
        &e.store,
        "s@example.org",
        &[("x@other.test", "shared/127.0.0.1:2525"), ("p@pinned.test", "shared/127.0.0.1:2525")],
    )
    .await;
    until(Duration::from_secs(5), || e.store.get(&id).unwrap().is_none()).await;
    assert_eq!(carried(&e.fake, "p@pinned.test"), ["shared", "pinned-backup"], "{:?}", e.fake.calls());
    assert_eq!(carried(&e.fake, "x@other.test"), ["shared", "other-backup"], "{:?}", e.fake.calls());
    assert_eq!(e.fake.delivered_to("p@pinned.test").len(), 1);
    assert_eq!(e.fake.delivered_to("x@other.test").len(), 1);
}

#[tokio::test]
async fn rerouting_is_decided_per_recipient_domain() {
    let e = env(conf("", PINNED));
    let id =
        enqueue(&e.store, "s@example.org", &[("y@else.test", "gone/else.test"), ("p@pinned.test", "gone/else.test")])
            .await;
    until(Duration::from_secs(5), || e.store.get(&id).unwrap().is_none()).await;
    assert_eq!(carried(&e.fake, "p@pinned.test"), ["shared"], "{:?}", e.fake.calls());
    assert_eq!(carried(&e.fake, "y@else.test"), ["wildcard"], "{:?}", e.fake.calls());
}
