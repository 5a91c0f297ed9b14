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

/// A manager that is not running: the tests drive its index by hand and
/// receive what its workers report.
struct Bare {
    _dir: tempfile::TempDir,
    _data: DataDir,
    store: Arc<QueueStore>,
    fake: Arc<Fake>,
    m: Manager,
    rx: mpsc::UnboundedReceiver<Command>,
}

fn bare(config: Arc<Config>) -> Bare {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let (store, _) = QueueStore::open(&data.db, dir.path()).unwrap();
    let store = Arc::new(store);
    let fake = Arc::new(Fake::default());
    let (mut m, rx) = Manager::new(
        store.clone(),
        config,
        Accounts::open(&data.db).unwrap(),
        Some(Arc::new(FakeRemote(fake.clone()))),
        Some(Arc::new(FakeLocal(fake.clone()))),
        crate::metrics::Metrics::off(),
        crate::track::Tracker::off(),
    );
    m.recovered = true;
    Bare { _dir: dir, _data: data, store, fake, m, rx }
}

impl Bare {
    fn ready_len(&self) -> usize {
        self.m.ready.values().map(VecDeque::len).sum()
    }

    /// The next report of a worker, applied.
    async fn finish_one(&mut self) {
        match self.rx.recv().await {
            Some(Command::Done(d)) => self.m.done(d).await,
            _ => panic!("a worker's report"),
        }
    }
}

fn select(id: &QueueId) -> Selector {
    Selector { ids: vec![id.to_string()], ..Default::default() }
}

/// The index holds one live entry per message, an 8-byte id, however
/// often the message is rescheduled: stale heap entries are passed over
/// when they come up, and the heap is rebuilt once they outnumber the
/// live ones.
#[tokio::test]
async fn the_index_skips_stale_entries_and_stays_compact() {
    let mut b = bare(conf("", STAR));
    let id = enqueue(&b.store, "s@example.org", &[("a@remote.test", "internet/remote.test")]).await;
    let mut msg = b.store.get(&id).unwrap().unwrap();
    let now = now_secs();
    for i in 0..3000 {
        msg.recipients[0].next_attempt = Some(now + 10_000 + i);
        b.m.index(&msg);
    }
    assert_eq!(b.m.due.len(), 1);
    assert!(b.m.heap.len() <= 2 * b.m.due.len() + 1024 + 1, "heap of {} entries", b.m.heap.len());
    // nothing due yet; then due, with every stale entry before it: once
    b.m.promote(now);
    assert_eq!(b.ready_len(), 0);
    b.m.promote(now + 20_000);
    assert_eq!(b.ready_len(), 1);
    assert_eq!(b.m.waiting.len(), 1);
    assert!(b.m.due.is_empty() && b.m.heap.is_empty());

    // moved earlier (a retry): the later entry left behind is stale
    let other = enqueue(&b.store, "s@example.org", &[("b@remote.test", "internet/remote.test")]).await;
    b.m.schedule(other.micros(), now + 5_000);
    b.m.schedule(other.micros(), 0);
    assert_eq!(b.m.heap.len(), 2);
    b.m.promote(now);
    b.m.promote(now + 6_000);
    assert_eq!(b.ready_len(), 2);
    assert_eq!(b.m.waiting.len(), 2);
    // both wait on one shared destination name
    let d = b.m.dests.get("internet/remote.test").unwrap();
    assert_eq!(Arc::strong_count(&d), 1 + 1 + 2 + 1, "the set, ready, two waiting entries and this one");
}

/// Freeze, thaw, retry and delete while a message waits for a worker or is
/// being delivered: an entry taken off is never started, a running message
/// is never started twice, and each message is delivered once.
#[tokio::test]
async fn operator_commands_on_waiting_and_running_messages() {
    let mut b = bare(conf("retry_schedule = [\"1h\"]\nmax_deliveries = 1", STAR));
    let a = enqueue(&b.store, "s@example.org", &[("a@remote.test", "internet/remote.test")]).await;
    let c = enqueue(&b.store, "s@example.org", &[("c@remote.test", "internet/remote.test")]).await;
    let now = now_secs();
    b.m.schedule(a.micros(), 0);
    b.m.schedule(c.micros(), 0);
    b.m.promote(now);
    assert_eq!(b.m.waiting.len(), 2);

    // frozen while waiting: its entry is passed over, the other one runs
    assert_eq!(b.m.control(ControlOp::Freeze(select(&a))).await.unwrap(), vec![a.to_string()]);
    assert_eq!(b.m.waiting.len(), 1);
    b.m.dispatch();
    assert_eq!(b.m.total, 1);
    assert!(b.m.running.iter().all(|(id, _)| *id == c.micros()));
    // thawed: due again, behind its stale entry
    b.m.control(ControlOp::Thaw(select(&a))).await.unwrap();
    b.m.promote(now_secs());
    assert_eq!(b.m.waiting.len(), 1);
    // a retry of the running message does not queue it a second time
    b.m.control(ControlOp::Retry(select(&c))).await.unwrap();
    b.m.promote(now_secs());
    assert!(b.m.waiting.iter().all(|(id, _)| *id == a.micros()));
    b.finish_one().await;
    assert!(b.store.get(&c).unwrap().is_none());
    assert_eq!(b.m.total, 0);
    b.m.dispatch();
    assert_eq!(b.m.total, 1);
    b.finish_one().await;
    assert!(b.store.get(&a).unwrap().is_none());
    assert_eq!(b.fake.delivered_to("a@remote.test").len(), 1);
    assert_eq!(b.fake.delivered_to("c@remote.test").len(), 1);

    // deleted while waiting: never started
    let gone = enqueue(&b.store, "s@example.org", &[("gone@remote.test", "internet/remote.test")]).await;
    b.m.schedule(gone.micros(), 0);
    b.m.promote(now_secs());
    assert_eq!(b.m.waiting.len(), 1);
    let del = ControlOp::Delete { select: select(&gone), ndr: false };
    assert_eq!(b.m.control(del).await.unwrap(), vec![gone.to_string()]);
    b.m.dispatch();
    assert_eq!(b.m.total, 0);
    assert!(b.m.ready.is_empty() && b.m.waiting.is_empty() && b.m.due.is_empty());
    assert!(b.fake.delivered_to("gone@remote.test").is_empty());

    // deleted while running: the report finds it gone, nothing is redone
    let busy = enqueue(&b.store, "s@example.org", &[("busy@remote.test", "internet/remote.test")]).await;
    b.m.schedule(busy.micros(), 0);
    b.m.promote(now_secs());
    b.m.dispatch();
    assert_eq!(b.m.total, 1);
    b.m.control(ControlOp::Delete { select: select(&busy), ndr: false }).await.unwrap();
    b.finish_one().await;
    b.m.promote(now_secs());
    assert_eq!(b.m.total, 0);
    assert!(b.m.running.is_empty() && b.m.waiting.is_empty() && b.m.due.is_empty());
    assert!(b.store.is_empty());
}

/// After a restart: mail stored while the older queue is still being
/// reconciled is delivered at once; operator commands wait for the
/// reconciliation; then the older messages are indexed by the due times
/// it found (the one due now is delivered once, the deferred one waits,
/// the frozen one stays), without the manager reading the queue again.
#[tokio::test]
async fn new_mail_is_delivered_while_the_queue_is_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let (due, later, frozen) = {
        let (store, _) = QueueStore::open(&data.db, dir.path()).unwrap();
        let due = enqueue(&store, "s@example.org", &[("due@remote.test", "internet/remote.test")]).await;
        let later = enqueue(&store, "s@example.org", &[("later@remote.test", "internet/remote.test")]).await;
        let frozen = enqueue(&store, "s@example.org", &[("frozen@remote.test", "internet/remote.test")]).await;
        let mut m = store.get(&later).unwrap().unwrap();
        m.recipients[0].attempts = 1;
        m.recipients[0].next_attempt = Some(now_secs() + 3600);
        store.update(&m).unwrap();
        let mut m = store.get(&frozen).unwrap().unwrap();
        m.frozen = true;
        store.update(&m).unwrap();
        (due, later, frozen)
    };
    let store = Arc::new(QueueStore::open_unreconciled(&data.db, dir.path()).unwrap());
    let fake = Arc::new(Fake::default());
    let sched = Scheduler::start(
        store.clone(),
        conf("retry_schedule = [\"1h\"]", STAR),
        Accounts::open(&data.db).unwrap(),
        Some(Arc::new(FakeRemote(fake.clone()))),
        Some(Arc::new(FakeLocal(fake.clone()))),
        crate::metrics::Metrics::off(),
        crate::track::Tracker::off(),
    );
    let new = enqueue(&store, "s@example.org", &[("new@remote.test", "internet/remote.test")]).await;
    until(Duration::from_secs(5), || store.get(&new).unwrap().is_none()).await;
    assert_eq!(fake.delivered_to("new@remote.test").len(), 1);
    assert!(fake.delivered_to("due@remote.test").is_empty(), "not reconciled yet");
    // a command selects from the whole queue: it waits
    let (s, sel) = (sched.clone(), select(&frozen));
    let retry = tokio::spawn(async move { s.control(ControlOp::Retry(sel)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!retry.is_finished(), "the command waits for the reconciliation");

    let reconciling = store.clone();
    let rec = tokio::task::spawn_blocking(move || reconciling.reconcile()).await.unwrap().unwrap();
    assert_eq!(rec.messages, 3);
    assert_eq!(retry.await.unwrap().unwrap(), vec![frozen.to_string()]);
    until(Duration::from_secs(5), || store.get(&due).unwrap().is_none()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.delivered_to("due@remote.test").len(), 1);
    let calls = fake.calls();
    assert!(calls.iter().all(|(_, _, a)| a != &["later@remote.test"] && a != &["frozen@remote.test"]), "{calls:?}");
    assert!(store.get(&later).unwrap().is_some() && store.get(&frozen).unwrap().is_some());
    assert!(store.take_recovered().is_empty(), "taken by the manager");
}

/// A backlog that comes due at once waits in the index beyond the active
/// limit, and new mail (due at 0) goes ahead of it.
#[tokio::test]
async fn a_due_backlog_is_promoted_in_bounded_steps_behind_new_mail() {
    let mut b = bare(conf("", STAR));
    b.m.active_limit = 2;
    let now = now_secs();
    let mut backlog = Vec::new();
    for i in 0..3 {
        let id = enqueue(&b.store, "s@example.org", &[(&format!("old{i}@remote.test"), "internet/remote.test")]).await;
        b.m.schedule(id.micros(), now - 100 + i);
        backlog.push(id.micros());
    }
    let new = enqueue(&b.store, "s@example.org", &[("new@remote.test", "internet/remote.test")]).await;
    b.m.schedule(new.micros(), 0);
    b.m.promote(now);
    let mut waiting: Vec<u64> = b.m.waiting.iter().map(|(id, _)| *id).collect();
    waiting.sort();
    assert_eq!(waiting, vec![backlog[0], new.micros()]);
    assert_eq!(b.m.due.len(), 2, "the rest of the backlog waits in the index");
    // room again: the next in due order
    b.m.drop_waiting(&b.store.get(&new).unwrap().unwrap());
    b.m.promote(now);
    assert!(b.m.waiting.iter().any(|(id, _)| *id == backlog[1]));
    assert_eq!(b.m.due.len(), 1);
}

/// New mail is put on the ready lists as it arrives, also when a due
/// backlog has filled them to the active limit: it never waits for the
/// backlog's deliveries to end.
#[tokio::test]
async fn new_mail_passes_a_full_active_queue() {
    let mut b = bare(conf("", STAR));
    b.m.active_limit = 2;
    let now = now_secs();
    for i in 0..3 {
        let id = enqueue(&b.store, "s@example.org", &[(&format!("old{i}@dead.test"), "internet/dead.test")]).await;
        b.m.schedule(id.micros(), now - 100 + i);
    }
    b.m.promote(now);
    assert_eq!(b.m.waiting.len(), 2, "the backlog fills the active queue");
    let new = enqueue(&b.store, "s@example.org", &[("new@remote.test", "internet/remote.test")]).await;
    b.m.promote_one(new.micros(), now);
    assert!(b.m.waiting.iter().any(|(id, _)| *id == new.micros()), "new mail is ready at once");
    assert_eq!(b.m.due.len(), 1, "the rest of the backlog still waits in the index");
}
