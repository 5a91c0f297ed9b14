//! The queue manager: the one writer of queue state once a message is
//! stored. It keeps an index of when each message is next due (the store
//! is the truth; the index is compact: a message waiting for a later
//! attempt costs a due-time entry and a heap entry keyed by its id as a
//! `u64`, some 40–70 bytes; destinations are shared strings), hands due
//! recipients to delivery workers grouped by destination within
//! `max_deliveries` and `max_per_destination`, applies what the workers
//! report (delivered, retry by `retry_schedule`, failed, expired after
//! `max_lifetime`), sends NDRs and the one delayed DSN, and carries out
//! operator commands (retry, freeze, thaw, delete) as events, so the CLI
//! never races a delivery. Each of these steps is also recorded in the
//! message tracking log, beside its log line.
//!
//! After a restart the manager starts at once: mail stored while the
//! queue is reconciled in the background is delivered meanwhile, and the
//! older messages join the index from the due times reconciliation noted
//! ([`QueueStore::take_recovered`]) when it ends; operator commands wait
//! until then (they select from the whole queue).
//!
//! Ordering for crash safety: an NDR is durable in the queue before the
//! recipients it reports are marked final, and a delivery is complete
//! before it is recorded — a crash in between repeats work (at least
//! once), it never loses it.

use super::dsn::{self, ReportKind};
use super::message::{AttemptResult, Message, MessageKind, RcptState, Recipient, SpoolRef, Stage};
use super::select::{self, SelectError, Selector};
use super::tracking;
use super::{QueueId, QueueStore, StoreError};
use crate::auth::Accounts;
use crate::config::Config;
use crate::delivery::{Attempt, AttemptReport, Local, RcptOutcome, Remote};
use crate::metrics::{Metrics, Outcome, TlsUse};
use crate::proto::smtp::server::BodyType;
use crate::routing;
use crate::track::{Event, Tracker};
use crate::util::now_secs;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Messages on the ready lists at most, like Postfix's active queue
/// (`qmgr_message_active_limit`): enough to keep every worker busy, few
/// enough that new mail is never queued behind a whole backlog.
const ACTIVE_LIMIT: usize = 20_000;

/// Operator commands carried out by the manager.
#[derive(Debug, Clone)]
pub enum ControlOp {
    Retry(Selector),
    Freeze(Selector),
    Thaw(Selector),
    Delete { select: Selector, ndr: bool },
}

impl ControlOp {
    pub fn selector(&self) -> &Selector {
        match self {
            ControlOp::Retry(s) | ControlOp::Freeze(s) | ControlOp::Thaw(s) => s,
            ControlOp::Delete { select, .. } => select,
        }
    }
}

/// Why the queue manager did not carry out an operator command.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the queue manager has stopped")]
    Stopped,
    #[error(transparent)]
    Select(#[from] SelectError),
    /// `delete --ndr`: the NDR could not be queued, so nothing was deleted.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Why a delivery status notification could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {0}: {1}")]
    Body(QueueId, #[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a worker could not make its attempt at all (its recipients are
/// tried again a minute later).
#[derive(Debug, thiserror::Error)]
enum WorkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} left the queue")]
    Gone(QueueId),
    #[error("cannot read {0} from the spool: {1}")]
    Body(QueueId, #[source] std::io::Error),
    #[error("bad destination {0:?}")]
    BadDestination(String),
}

/// Where an operator command's outcome goes: the ids it changed.
type Reply = oneshot::Sender<Result<Vec<String>, ControlError>>;

enum Command {
    Control(ControlOp, Reply),
    Done(Done),
}

struct Done {
    id: QueueId,
    destination: Dest,
    result: Result<WorkerResult, WorkError>,
}

/// A message in the manager's index: its [`QueueId`] as the `u64` it
/// encodes ([`QueueId::micros`], lossless), 8 bytes and no allocation.
type Id = u64;

/// A destination (`local`, or `connector/next-hop`), interned in [`Dests`]:
/// every entry for one destination shares one allocation of its name.
type Dest = Arc<str>;

/// The destinations entries refer to, each allocated once. Names no entry
/// holds any more are swept out when the set has doubled since the last
/// sweep, so it follows what is queued without a count per name.
#[derive(Default)]
struct Dests {
    names: HashSet<Dest>,
    sweep_at: usize,
}

impl Dests {
    fn intern(&mut self, name: &str) -> Dest {
        if let Some(d) = self.names.get(name) {
            return d.clone();
        }
        if self.names.len() >= self.sweep_at {
            self.names.retain(|d| Arc::strong_count(d) > 1);
            self.sweep_at = (2 * self.names.len()).max(64);
        }
        let d: Dest = Arc::from(name);
        self.names.insert(d.clone());
        d
    }

    /// The interned name, if any entry may hold it.
    fn get(&self, name: &str) -> Option<Dest> {
        self.names.get(name).cloned()
    }
}

enum WorkerResult {
    /// What became of the recipients: one report per attempt that settled
    /// some of them, and recipients given a new destination (their
    /// connector is gone from the config), each by its own domain.
    Done { reports: Vec<AttemptReport>, rerouted: Vec<(usize, String)> },
    /// Nothing was due after all (changed meanwhile).
    Nothing,
}

impl WorkerResult {
    fn report(r: AttemptReport) -> WorkerResult {
        WorkerResult::Done { reports: vec![r], rerouted: Vec::new() }
    }
}

/// Handle to the running manager.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::UnboundedSender<Command>,
}

impl Scheduler {
    /// Start the manager; it runs until the runtime stops.
    pub fn start(
        store: Arc<QueueStore>,
        config: Arc<Config>,
        accounts: Accounts,
        remote: Option<Arc<dyn Remote>>,
        local: Option<Arc<dyn Local>>,
        metrics: Metrics,
        tracker: Tracker,
    ) -> Scheduler {
        let new_ids = store.subscribe();
        let (m, rx) = Manager::new(store, config, accounts, remote, local, metrics, tracker);
        let tx = m.tx.clone();
        tokio::spawn(async move { m.run(rx, new_ids).await });
        Scheduler { tx }
    }

    /// Carry out an operator command; returns the ids it changed.
    pub async fn control(&self, op: ControlOp) -> Result<Vec<String>, ControlError> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(Command::Control(op, reply)).map_err(|_| ControlError::Stopped)?;
        wait.await.map_err(|_| ControlError::Stopped)?
    }
}

struct Manager {
    store: Arc<QueueStore>,
    config: Arc<Config>,
    accounts: Accounts,
    /// None: that kind of delivery is not available; its recipients wait.
    remote: Option<Arc<dyn Remote>>,
    local: Option<Arc<dyn Local>>,
    /// Deliveries by outcome and TLS (`postern_deliveries_total`).
    metrics: Metrics,
    /// The message-tracking log: every event below is also recorded there.
    tracker: Tracker,
    /// (due second, id); entries that no longer match `due` are stale,
    /// skipped when they come up, and dropped when the heap is rebuilt
    /// (once they outnumber the live ones: see `tidy`).
    heap: BinaryHeap<Reverse<(u64, Id)>>,
    /// When each indexed message is next due.
    due: HashMap<Id, u64>,
    /// Per destination, messages waiting for a worker, in order. An entry
    /// whose key left `waiting` (an operator command) is skipped.
    ready: HashMap<Dest, VecDeque<Id>>,
    waiting: HashSet<(Id, Dest)>,
    running: HashSet<(Id, Dest)>,
    active: HashMap<Dest, usize>,
    dests: Dests,
    total: usize,
    /// At most this many messages wait on the ready lists (see `promote`).
    active_limit: usize,
    /// Operator commands that came before the queue was reconciled,
    /// carried out in order once it is.
    held: Vec<(ControlOp, Reply)>,
    /// The older messages reconciliation found are in the index.
    recovered: bool,
    tx: mpsc::UnboundedSender<Command>,
}

impl Manager {
    /// A manager with an empty index, not yet recovered, and the receiving
    /// end of its command channel.
    fn new(
        store: Arc<QueueStore>,
        config: Arc<Config>,
        accounts: Accounts,
        remote: Option<Arc<dyn Remote>>,
        local: Option<Arc<dyn Local>>,
        metrics: Metrics,
        tracker: Tracker,
    ) -> (Manager, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let m = Manager {
            store,
            config,
            accounts,
            remote,
            local,
            metrics,
            tracker,
            heap: BinaryHeap::new(),
            due: HashMap::new(),
            ready: HashMap::new(),
            waiting: HashSet::new(),
            running: HashSet::new(),
            active: HashMap::new(),
            dests: Dests::default(),
            total: 0,
            active_limit: ACTIVE_LIMIT,
            held: Vec::new(),
            recovered: false,
            tx,
        };
        (m, rx)
    }
}

/// When a message next needs attention: the earliest due recipient that
/// can be delivered (locally or remotely, as far as either is available);
/// None when frozen or nothing is left.
fn next_due(m: &Message, local: bool, remote: bool) -> Option<u64> {
    if m.frozen {
        return None;
    }
    m.recipients
        .iter()
        .filter(|r| r.state == RcptState::Queued && if r.destination == "local" { local } else { remote })
        .map(|r| r.next_attempt.unwrap_or(0))
        .min()
}

fn rcpt_due(r: &Recipient, now: u64) -> bool {
    r.state == RcptState::Queued && r.next_attempt.is_none_or(|t| t <= now)
}

/// The canonical domain of a queued address (queued before domains were
/// canonicalised at parse time, it may still be spelled otherwise).
fn domain_of(address: &str) -> String {
    let d = address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    crate::domain::canonical(d).unwrap_or_else(|_| d.to_ascii_lowercase())
}

impl Manager {
    fn can_deliver(&self, destination: &str) -> bool {
        if destination == "local" {
            self.local.is_some()
        } else {
            self.remote.is_some()
        }
    }

    /// When a message next needs attention: the earliest due recipient
    /// that can be delivered; None when frozen or nothing is left.
    fn next_due(&self, m: &Message) -> Option<u64> {
        next_due(m, self.local.is_some(), self.remote.is_some())
    }

    fn index(&mut self, m: &Message) {
        match self.next_due(m) {
            Some(t) => self.schedule(m.id.micros(), t),
            None => {
                self.due.remove(&m.id.micros());
            }
        }
    }

    fn schedule(&mut self, id: Id, t: u64) {
        self.due.insert(id, t);
        self.heap.push(Reverse((t, id)));
        self.tidy();
    }

    /// Keep the index's memory near what it holds: the heap is rebuilt
    /// from `due` once stale entries outnumber live ones (each rebuild
    /// follows as many pushes as it costs), and both give memory back
    /// when the queue has shrunk to a quarter of their capacity.
    fn tidy(&mut self) {
        if self.heap.len() > 2 * self.due.len() + 1024 {
            self.heap = self.due.iter().map(|(&id, &t)| Reverse((t, id))).collect();
        }
        if self.heap.capacity() > 4 * self.heap.len() + 1024 {
            self.heap.shrink_to(2 * self.heap.len());
        }
        if self.due.capacity() > 4 * self.due.len() + 1024 {
            self.due.shrink_to(2 * self.due.len());
        }
    }

    /// The older messages, once reconciliation has found them: indexed
    /// from the due times it noted, so the queue is not read again. New
    /// ids sort after every one of them, so none is indexed already; one
    /// that were would keep its entry.
    fn recover(&mut self) {
        let found = self.store.take_recovered();
        let n = found.len();
        for (t, id) in found {
            if let std::collections::hash_map::Entry::Vacant(e) = self.due.entry(id) {
                e.insert(t);
                self.heap.push(Reverse((t, id)));
            }
        }
        self.recovered = true;
        tracing::info!(recovered = n, due = self.due.len(), "queue manager started");
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, mut new_ids: mpsc::UnboundedReceiver<QueueId>) {
        let store = self.store.clone();
        let reconciled = async move { store.reconciled().await };
        tokio::pin!(reconciled);
        tracing::info!("queue manager running; what was queued before joins once the queue is reconciled");
        loop {
            self.promote(now_secs());
            self.dispatch();
            let sleep = match self.heap.peek() {
                // full: woken by the next worker's report
                Some(_) if self.waiting.len() >= self.active_limit => Duration::from_secs(3600),
                Some(Reverse((t, _))) => {
                    let at = UNIX_EPOCH + Duration::from_secs(*t);
                    at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO)
                }
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Done(d)) => self.done(d).await,
                    Some(Command::Control(op, reply)) if !self.recovered => self.held.push((op, reply)),
                    Some(Command::Control(op, reply)) => {
                        let r = self.control(op).await;
                        let _ = reply.send(r);
                    }
                    None => return,
                },
                () = &mut reconciled, if !self.recovered => {
                    self.recover();
                    for (op, reply) in std::mem::take(&mut self.held) {
                        let r = self.control(op).await;
                        let _ = reply.send(r);
                    }
                }
                // new mail goes straight to the ready lists, past the
                // active limit: it never waits behind a deferred backlog
                Some(id) = new_ids.recv() => self.promote_one(id.micros(), now_secs()),
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Move due messages onto the ready lists of their destinations, in
    /// due order, while fewer than `active_limit` wait there: the rest wait
    /// in the index, so a backlog that comes due at once is not read into
    /// memory whole. New mail does not wait for this: it goes to the ready
    /// lists as it arrives ([`Manager::promote_one`] from `run`), so it is
    /// never queued behind a backlog.
    fn promote(&mut self, now: u64) {
        while let Some(Reverse((t, _))) = self.heap.peek() {
            if *t > now || self.waiting.len() >= self.active_limit {
                break;
            }
            let Some(Reverse((t, id))) = self.heap.pop() else { break };
            if self.due.get(&id) != Some(&t) {
                continue; // stale entry
            }
            self.due.remove(&id);
            self.promote_one(id, now);
        }
        self.tidy();
    }

    /// Put one message on the ready lists of the destinations it is due
    /// for, and back in the index for the recipients due later.
    fn promote_one(&mut self, id: Id, now: u64) {
        let m = match self.store.get(&QueueId::from_micros(id)) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(id = %QueueId::from_micros(id), "cannot read a queued message: {e}");
                return;
            }
        };
        if m.frozen {
            return;
        }
        let mut dests: Vec<&str> = m
            .recipients
            .iter()
            .filter(|r| rcpt_due(r, now) && self.can_deliver(&r.destination))
            .map(|r| r.destination.as_str())
            .collect();
        dests.sort_unstable();
        dests.dedup();
        for d in dests {
            let key = (id, self.dests.intern(d));
            if self.running.contains(&key) || !self.waiting.insert(key.clone()) {
                continue;
            }
            self.ready.entry(key.1).or_default().push_back(id);
        }
        // recipients due later keep the message in the index
        let later = m
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Queued && self.can_deliver(&r.destination))
            .filter_map(|r| r.next_attempt.filter(|&t| t > now))
            .min();
        if let Some(t) = later {
            self.due.insert(id, t);
            self.heap.push(Reverse((t, id)));
        }
    }

    /// Start workers within the concurrency limits, round-robin over destinations.
    fn dispatch(&mut self) {
        let max_total = self.config.queue.max_deliveries;
        let max_dest = self.config.queue.max_per_destination;
        loop {
            let mut started = false;
            let dests: Vec<Dest> = self.ready.keys().cloned().collect();
            for d in dests {
                if self.total >= max_total {
                    return;
                }
                if self.active.get(&d).copied().unwrap_or(0) >= max_dest {
                    continue;
                }
                // the first entry still waiting: those an operator command
                // took off (see `drop_waiting`) are passed over
                let mut next = None;
                if let Some(q) = self.ready.get_mut(&d) {
                    while let Some(id) = q.pop_front() {
                        if self.waiting.remove(&(id, d.clone())) {
                            next = Some(id);
                            break;
                        }
                    }
                    if q.is_empty() {
                        self.ready.remove(&d);
                    }
                }
                let Some(id) = next else { continue };
                self.running.insert((id, d.clone()));
                *self.active.entry(d.clone()).or_insert(0) += 1;
                self.total += 1;
                self.spawn_worker(QueueId::from_micros(id), d);
                started = true;
            }
            if !started {
                return;
            }
        }
    }

    fn spawn_worker(&self, id: QueueId, destination: Dest) {
        let store = self.store.clone();
        let config = self.config.clone();
        let remote = self.remote.clone();
        let local = self.local.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = work(&store, &config, remote.as_deref(), local.as_deref(), &id, &destination).await;
            let _ = tx.send(Command::Done(Done { id, destination, result }));
        });
    }

    fn retry_at(&self, m: &Message, attempts: u32, now: u64) -> u64 {
        let q = &self.config.queue;
        let mut t = now + q.retry_delay(attempts).as_secs().max(1);
        // attempt again right when the message would expire, and when the
        // delay warning is due, so neither waits for a long retry step
        t = t.min(m.arrived + q.max_lifetime.0.as_secs()).max(now + 1);
        if !m.delay_warned && !q.delay_warning_after.0.is_zero() {
            let warn = m.arrived + q.delay_warning_after.0.as_secs();
            if warn > now {
                t = t.min(warn);
            }
        }
        t
    }

    async fn done(&mut self, d: Done) {
        self.running.remove(&(d.id.micros(), d.destination.clone()));
        if let Some(n) = self.active.get_mut(&d.destination) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.active.remove(&d.destination);
            }
        }
        self.total = self.total.saturating_sub(1);
        let mut m = match self.store.get(&d.id) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(id = %d.id, "cannot read a queued message: {e}");
                return;
            }
        };
        let now = now_secs();
        let mut failed = Vec::new();
        match d.result {
            Err(e) => {
                tracing::error!(id = %d.id, destination = %d.destination, "delivery attempt failed: {e}");
                self.tracker.record(tracking::note(&d.id, "deferred", format!("{}: {e}", d.destination)));
                for r in
                    m.recipients.iter_mut().filter(|r| r.state == RcptState::Queued && *r.destination == *d.destination)
                {
                    r.next_attempt = Some(now + 60);
                }
            }
            Ok(WorkerResult::Nothing) => {}
            Ok(WorkerResult::Done { reports, rerouted }) => {
                for (i, dest) in rerouted {
                    if let Some(r) = m.recipients.get_mut(i) {
                        tracing::info!(id = %m.id, rcpt = %r.address, from = %r.destination, to = %dest, "rerouted");
                        self.tracker.record(tracking::rerouted(&m.id, r, &dest));
                        r.destination = dest;
                        r.next_attempt = None;
                    }
                }
                let lifetime_end = m.arrived + self.config.queue.max_lifetime.0.as_secs();
                for report in reports {
                    for (i, outcome) in report.outcomes {
                        let Some(r) = m.recipients.get(i) else { continue };
                        if r.state != RcptState::Queued {
                            continue; // deleted or frozen meanwhile and settled otherwise
                        }
                        let attempts = r.attempts + 1;
                        let retry = self.retry_at(&m, attempts, now);
                        let r = &mut m.recipients[i];
                        r.attempts = attempts;
                        r.last_result = Some(outcome.result().clone());
                        if report.tls.is_some() {
                            r.tls = report.tls.clone();
                        }
                        let tls = report.tls.as_ref().map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                        let tls_use = TlsUse::of(
                            report.tls.as_ref().is_some_and(|t| t.info.is_some()),
                            report.tls.as_ref().is_some_and(|t| t.verified),
                        );
                        let via = tracking::Via {
                            destination: &d.destination,
                            tls: report.tls.as_ref(),
                            ip: report.remote_ip,
                        };
                        match outcome {
                            RcptOutcome::Delivered(res) => {
                                r.state = RcptState::Delivered;
                                r.next_attempt = None;
                                tracing::info!(id = %m.id, rcpt = %r.address, via = %d.destination, result = %res, tls = %tls, "delivered");
                                self.metrics.delivery(Outcome::Delivered, tls_use);
                                self.tracker.record(tracking::attempt(&m.id, r, "delivered", &via, &res));
                            }
                            RcptOutcome::Failed(res) => {
                                r.state = RcptState::Failed;
                                r.next_attempt = None;
                                tracing::info!(id = %m.id, rcpt = %r.address, via = %d.destination, result = %res, "failed");
                                self.metrics.delivery(Outcome::Failed, tls_use);
                                self.tracker.record(tracking::attempt(&m.id, r, "failed", &via, &res));
                                failed.push(i);
                            }
                            RcptOutcome::Deferred(res) if now >= lifetime_end && !m.frozen => {
                                r.state = RcptState::Expired;
                                r.next_attempt = None;
                                tracing::info!(id = %m.id, rcpt = %r.address, result = %res, "expired");
                                self.metrics.delivery(Outcome::Failed, tls_use);
                                self.tracker.record(tracking::attempt(&m.id, r, "expired", &via, &res));
                                failed.push(i);
                            }
                            RcptOutcome::Deferred(res) => {
                                r.next_attempt = Some(retry);
                                tracing::info!(id = %m.id, rcpt = %r.address, via = %d.destination, result = %res, next = %crate::util::rfc3339(retry), "deferred");
                                self.metrics.delivery(Outcome::Deferred, tls_use);
                                self.tracker.record(tracking::deferred(&m.id, r, &via, &res, retry));
                            }
                        }
                    }
                }
            }
        }
        if !failed.is_empty() {
            if let Err(e) = self.bounce(&m, &failed, ReportKind::Failure).await {
                // keep the recipients queued: the NDR must exist before they end
                tracing::error!(id = %m.id, "cannot queue the NDR, retrying later: {e}");
                for &i in &failed {
                    let r = &mut m.recipients[i];
                    r.state = RcptState::Queued;
                    r.next_attempt = Some(now + 60);
                }
            }
        }
        self.maybe_warn(&mut m, now).await;
        self.save(&m);
    }

    /// The one "delayed" DSN, once the message has waited long enough.
    async fn maybe_warn(&mut self, m: &mut Message, now: u64) {
        let after = self.config.queue.delay_warning_after.0.as_secs();
        if m.delay_warned
            || after == 0
            || now < m.arrived + after
            || m.kind != MessageKind::Inbound
            || m.is_null_sender()
        {
            return;
        }
        let waiting: Vec<usize> =
            (0..m.recipients.len()).filter(|&i| m.recipients[i].state == RcptState::Queued).collect();
        if waiting.is_empty() {
            return;
        }
        let retry_until = Some(m.arrived + self.config.queue.max_lifetime.0.as_secs());
        match self.bounce(m, &waiting, ReportKind::Delay { retry_until }).await {
            Ok(()) => m.delay_warned = true,
            Err(e) => tracing::warn!(id = %m.id, "cannot queue the delay notice: {e}"),
        }
    }

    fn save(&mut self, m: &Message) {
        if let Err(e) = self.store.update(m) {
            tracing::error!(id = %m.id, "cannot save queue state: {e}");
        }
        if m.is_finished() {
            self.due.remove(&m.id.micros());
            tracing::info!(id = %m.id, "removed from the queue");
            self.tracker.record(Event::new(&m.id, "removed"));
        } else {
            self.index(m);
        }
    }

    /// Queue an NDR (or delay DSN) about `rcpts` of `m`. A message with a
    /// null sender never gets one; a report of ours that fails goes to the
    /// postmaster; one to the postmaster that fails is logged and dropped.
    async fn bounce(&self, m: &Message, rcpts: &[usize], kind: ReportKind) -> Result<(), ReportError> {
        let postmaster = crate::auth::key(&self.config.server.postmaster);
        let to = match m.kind {
            MessageKind::Inbound if m.is_null_sender() => {
                tracing::info!(id = %m.id, "no NDR: the sender is <>");
                self.tracker.record(tracking::note(&m.id, "no_ndr", "the sender is <>"));
                return Ok(());
            }
            MessageKind::Inbound => m.sender.clone(),
            MessageKind::Report if matches!(kind, ReportKind::Delay { .. }) => return Ok(()),
            MessageKind::Report => {
                if m.recipients.iter().any(|r| {
                    crate::auth::key(&r.address) == postmaster
                        || r.original.as_deref().map(crate::auth::key) == Some(postmaster.clone())
                }) {
                    tracing::error!(id = %m.id, "double bounce: a report to the postmaster could not be delivered; dropped");
                    self.tracker.record(tracking::note(&m.id, "no_ndr", "double bounce: dropped"));
                    return Ok(());
                }
                postmaster.clone()
            }
        };
        let body = self.store.read_body(m).map_err(|e| ReportError::Body(m.id.clone(), e))?;
        let list: Vec<&Recipient> = rcpts.iter().filter_map(|&i| m.recipients.get(i)).collect();
        let now = now_secs();
        let report = dsn::compose(kind, &self.config.server.hostname, m, &list, dsn::header_section(&body), now);
        // a report naming a UTF-8 address is message/global-delivery-status
        let body_type = if report.is_ascii() { BodyType::SevenBit } else { BodyType::EightBitMime };
        let recipients = self.route_report(&to, &m.source_server);
        let id = self.store.new_id();
        let msg = Message {
            id: id.clone(),
            sender: String::new(),
            source_server: m.source_server.clone(),
            client_ip: None,
            client_helo: None,
            auth_user: None,
            tls: None,
            arrived: now,
            size: report.len() as u64,
            body_type,
            smtputf8: !report.is_ascii(),
            kind: MessageKind::Report,
            frozen: false,
            delay_warned: false,
            // RFC 8689 §5: the report about a REQUIRETLS message (its
            // headers) travels under REQUIRETLS too
            require_tls: m.require_tls,
            tls_optional: false,
            recipients,
            spool: SpoolRef::default(),
        };
        let created = tracking::report_created(&msg, &m.id, &kind);
        self.store.enqueue(msg, report).await?;
        tracing::info!(id = %m.id, report = %id, to = %to, kind = ?kind, recipients = rcpts.len(), "delivery status notification queued");
        self.tracker.record(tracking::report_queued(m, rcpts, &kind, &id, &to));
        self.tracker.record(created);
        Ok(())
    }

    fn route_report(&self, to: &str, source: &str) -> Vec<Recipient> {
        let domain = domain_of(to);
        if self.config.is_local_domain(&domain) {
            if let Ok(a) = crate::proto::smtp::Address::parse(to) {
                return routing::expand::expand_local(&self.config, &self.accounts, source, &a)
                    .into_iter()
                    .map(|q| {
                        let mut r = Recipient::new(q.address, q.destination);
                        r.original = q.original;
                        r
                    })
                    .collect();
            }
        }
        vec![Recipient::new(to.to_string(), routing::expand::route_remote(&self.config, &domain, source))]
    }

    async fn control(&mut self, op: ControlOp) -> Result<Vec<String>, ControlError> {
        let ids = select::select(&self.store, op.selector())?;
        let mut changed = Vec::new();
        for id in ids {
            // read one at a time: gone meanwhile (delivered) is passed over
            let Some(mut m) = self.store.get(&id).map_err(SelectError::from)? else { continue };
            if let ControlOp::Delete { ndr: true, .. } = op {
                let idx: Vec<usize> =
                    (0..m.recipients.len()).filter(|&i| m.recipients[i].state == RcptState::Queued).collect();
                if !idx.is_empty() {
                    let now = now_secs();
                    for &i in &idx {
                        m.recipients[i].last_result = Some(AttemptResult {
                            code: Some(550),
                            enhanced: Some("5.0.0".into()),
                            text: "deleted from the queue by the postmaster".into(),
                            remote_host: None,
                            stage: Stage::Queue,
                            at: now,
                        });
                    }
                    self.bounce(&m, &idx, ReportKind::Failure).await?;
                }
            }
            let touched = apply(&mut m, &op, &self.tracker);
            if touched {
                self.drop_waiting(&m);
                self.save(&m);
                changed.push(m.id.to_string());
            }
        }
        Ok(changed)
    }

    /// Take a message off the ready lists (it is re-indexed by `save`):
    /// its entries there are passed over by `dispatch`, so this costs a
    /// lookup per destination, whatever the number waiting.
    fn drop_waiting(&mut self, m: &Message) {
        let id = m.id.micros();
        for r in &m.recipients {
            if let Some(d) = self.dests.get(&r.destination) {
                self.waiting.remove(&(id, d));
            }
        }
    }
}

/// What an operator command changes in one message (the NDR of
/// `delete --ndr` aside). Shared with the CLI's direct mode, so that with or
/// without a running server the commands mean the same. What changed is
/// recorded in the tracking log.
pub fn apply(m: &mut Message, op: &ControlOp, tracker: &Tracker) -> bool {
    let changed = match op {
        // a frozen message keeps the request and is attempted when thawed
        ControlOp::Retry(_) => {
            let mut any = false;
            for r in m.recipients.iter_mut().filter(|r| r.state == RcptState::Queued) {
                r.next_attempt = None;
                any = true;
            }
            any
        }
        ControlOp::Freeze(_) => !std::mem::replace(&mut m.frozen, true),
        ControlOp::Thaw(_) => std::mem::replace(&mut m.frozen, false),
        ControlOp::Delete { ndr, .. } => {
            let mut deleted = Vec::new();
            for r in m.recipients.iter_mut().filter(|r| r.state == RcptState::Queued) {
                r.state = RcptState::Deleted;
                r.next_attempt = None;
                deleted.push(r.address.clone());
            }
            tracing::info!(id = %m.id, recipients = deleted.len(), ndr = *ndr, "deleted by the operator");
            tracker.record(Event { recipients: deleted, ndr: Some(*ndr), ..Event::new(&m.id, "deleted") });
            return true;
        }
    };
    if changed {
        let name = match op {
            ControlOp::Retry(_) => "retry",
            ControlOp::Freeze(_) => "frozen",
            _ => "thawed",
        };
        tracker.record(Event::new(&m.id, name));
    }
    changed
}

fn failure_all(rcpts: &[usize], stage: Stage, code: u16, enhanced: &str, text: String) -> AttemptReport {
    let res = AttemptResult {
        code: Some(code),
        enhanced: Some(enhanced.into()),
        text,
        remote_host: None,
        stage,
        at: now_secs(),
    };
    AttemptReport {
        outcomes: rcpts.iter().map(|&i| (i, RcptOutcome::Failed(res.clone()))).collect(),
        tls: None,
        remote_ip: None,
        unreachable: false,
    }
}

/// One attempt for the due recipients of `id` at `destination`.
async fn work(
    store: &QueueStore,
    config: &Config,
    remote: Option<&dyn Remote>,
    local: Option<&dyn Local>,
    id: &QueueId,
    destination: &str,
) -> Result<WorkerResult, WorkError> {
    let m = store.get(id)?.ok_or_else(|| WorkError::Gone(id.clone()))?;
    let now = now_secs();
    let rcpts: Vec<usize> = (0..m.recipients.len())
        .filter(|&i| m.recipients[i].destination == destination && rcpt_due(&m.recipients[i], now))
        .collect();
    if rcpts.is_empty() || m.frozen {
        return Ok(WorkerResult::Nothing);
    }
    let body = store.read_body(&m).map_err(|e| WorkError::Body(id.clone(), e))?;
    let addressed: Vec<(usize, &str)> = rcpts.iter().map(|&i| (i, m.recipients[i].address.as_str())).collect();
    let attempt = Attempt {
        id: m.id.as_str(),
        sender: &m.sender,
        arrived: m.arrived,
        body_type: m.body_type,
        smtputf8: m.smtputf8,
        body: &body,
        recipients: &addressed,
        require_tls: m.require_tls,
        tls_optional: m.tls_optional,
    };
    if destination == "local" {
        return match local {
            Some(l) => Ok(WorkerResult::report(l.deliver(attempt).await)),
            None => Ok(WorkerResult::Nothing),
        };
    }
    let Some(remote) = remote else {
        return Ok(WorkerResult::Nothing);
    };
    let Some((name, _hop)) = routing::parse_destination(destination) else {
        return Err(WorkError::BadDestination(destination.to_string()));
    };
    // SPEC §13.9: every routing decision below is made per recipient, by
    // its own domain — never by whichever recipient happens to come first
    let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in &rcpts {
        by_domain.entry(domain_of(&m.recipients[i].address)).or_default().push(i);
    }
    let Some(connector) = config.connectors.iter().find(|c| c.name == name) else {
        // the connector is gone (config changed) or there never was a route
        let mut reports = Vec::new();
        let mut rerouted = Vec::new();
        for (domain, idx) in by_domain {
            match routing::choose(&routing::select(&config.connectors, &domain, &m.source_server)) {
                Some(c) => {
                    let dest = routing::destination(c.connector, &domain);
                    rerouted.extend(idx.iter().map(|&i| (i, dest.clone())));
                }
                None => reports.push(failure_all(
                    &idx,
                    Stage::Queue,
                    550,
                    "5.4.4",
                    format!("no connector routes {domain} for mail from {:?}", m.source_server),
                )),
            }
        }
        return Ok(WorkerResult::Done { reports, rerouted });
    };
    // one session for all: a destination is one connector and one next hop
    // (a smarthost, or the MX of its one domain)
    let first = by_domain.keys().next().cloned().unwrap_or_default();
    let mut report = remote.deliver(connector, &first, attempt).await;
    if !report.unreachable {
        return Ok(WorkerResult::report(report));
    }
    // SPEC §6.3: every next hop failed at connect or TLS — try the other
    // connectors equally specific for each recipient's own domain, cheapest
    // first; never a less specific one, never one that does not cover it
    let mut reports = Vec::new();
    let mut still: HashSet<usize> = HashSet::new();
    for (domain, idx) in &by_domain {
        let part: Vec<(usize, &str)> = addressed.iter().copied().filter(|(i, _)| idx.contains(i)).collect();
        let part = Attempt { recipients: &part, ..attempt };
        let mut settled = None;
        for c in routing::select(&config.connectors, domain, &m.source_server) {
            if c.connector.name == connector.name {
                continue;
            }
            tracing::info!(id = %id, domain = %domain, from = %connector.name, to = %c.connector.name, "trying an equally specific connector");
            let r = remote.deliver(c.connector, domain, part).await;
            if !r.unreachable {
                settled = Some(r);
                break;
            }
        }
        match settled {
            Some(r) => reports.push(r),
            None => still.extend(idx.iter().copied()),
        }
    }
    // the rest keep the first connector's outcome (deferred: unreachable)
    report.outcomes.retain(|(i, _)| still.contains(i));
    if !report.outcomes.is_empty() {
        reports.push(report);
    }
    Ok(WorkerResult::Done { reports, rerouted: Vec::new() })
}

#[cfg(test)]
mod tests;
