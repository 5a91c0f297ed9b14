//! The NNTP service (SPEC §9): reader commands, posting and incoming feeds
//! on the sans-IO core (`proto::nntp`), driven by `net::driver`, with the
//! login glue shared with the other services (`auth::login`) and the news
//! store; [`feeder`] pushes new articles to the peers in `[[news_peer]]`.
//!
//! A session answers its core's requests from the store off the async
//! threads ([`reader`]); a POSTed article is checked and completed
//! ([`inject`]) and stored, as is an article a peer feeds us with IHAVE or
//! TAKETHIS — only from an address the peer's `accept_from` covers, and
//! only into the groups its `groups` covers. Every article stored is
//! handed to the feed queue ([`crate::news::feed::FeedQueue::stored`])
//! before the client hears `240`/`235`/`239`: the store has fsynced it by
//! then. TAKETHIS articles a peer pipelines are deferred in the core as
//! they are read and stored as one run ([`NewsStore::post_many`], one
//! feed-journal fsync) when the input holds no further complete TAKETHIS
//! (or after `MAX_RUN` articles). A run is stored by a blocking task while
//! the session reads and parses the next one (at most one run in flight and
//! one being read): its replies go out, in order, when the task is done
//! ([`Session::notified`]), or before the next run is handed over.
//! This module never formats a reply itself.

pub mod feeder;
pub mod inject;
pub mod reader;

use crate::auth::Gate;
use crate::config::{NewsPeer, TlsMode, VirtualServer};
use crate::net::{ConnInfo, Next, Service, Session, SessionEnd};
use crate::news::feed::FeedQueue;
use crate::news::{NewsError, NewsStore, Posted};
use crate::proto::nntp::reply::{self, Reply};
use crate::proto::nntp::server::{Answer, Event, Request, ServerSession, Settings};
use crate::proto::sasl::Credentials;
use crate::proto::session::{AuthEvent, LineCore};
use crate::service::Conn;
use crate::tls::TlsInfo;
use crate::util::now_secs;
use bytes::BytesMut;
use std::sync::Arc;

/// After this many 5xx replies a session is closed, as for SMTP and POP3.
const MAX_ERRORS: u32 = 10;

/// At most this many pipelined TAKETHIS articles, and this many octets of
/// them, are stored together.
const MAX_RUN: usize = 256;
const MAX_RUN_BYTES: usize = 8 << 20;

/// What the NNTP virtual servers share: the news store and the feed queue.
#[derive(Clone)]
pub struct News {
    pub store: Arc<NewsStore>,
    pub feeds: Arc<FeedQueue>,
    pub peers: Arc<[NewsPeer]>,
}

pub struct NntpService {
    gate: Gate,
    news: News,
    vs: Arc<VirtualServer>,
    settings: Settings,
}

impl NntpService {
    pub fn new(hostname: &str, gate: Gate, news: News, vs: Arc<VirtualServer>) -> NntpService {
        let settings = Settings {
            hostname: hostname.to_string(),
            starttls: vs.tls == TlsMode::Starttls,
            require_tls: vs.require_tls,
            allow_plaintext_auth: vs.allow_plaintext_auth,
            allow_anonymous_posting: vs.allow_anonymous_posting,
            max_article: usize::try_from(vs.max_message_size.0).unwrap_or(usize::MAX),
            max_errors: MAX_ERRORS,
        };
        NntpService { gate, news, vs, settings }
    }
}

impl Service for NntpService {
    type Session = NntpSession;

    fn session(&self, conn: &ConnInfo) -> NntpSession {
        let peer = self.news.peers.iter().position(|p| p.accepts(conn.peer.ip()));
        NntpSession {
            news: self.news.clone(),
            core: ServerSession::new(self.settings.clone(), conn.implicit_tls, peer.is_some()),
            conn: Conn::new(&self.vs, conn, &self.gate),
            peer,
            run: Vec::new(),
            run_bytes: 0,
            storing: None,
            stored_run: None,
            stored: 0,
            refused: 0,
        }
    }

    fn busy_reply(&self) -> &'static [u8] {
        reply::TOO_MANY_CONNECTIONS_LINE
    }
}

pub struct NntpSession {
    news: News,
    core: ServerSession,
    /// Peer, virtual server, TLS, and the login under way.
    conn: Conn,
    /// The `[[news_peer]]` (an index into `news.peers`) whose
    /// `accept_from` covers the client, if any: it may feed us.
    peer: Option<usize>,
    /// TAKETHIS articles deferred in the core, to be stored as one run.
    run: Vec<(String, Vec<u8>)>,
    run_bytes: usize,
    /// The run being stored: its Message-IDs and the task storing it.
    storing: Option<(Vec<String>, tokio::task::JoinHandle<Outcomes>)>,
    /// That run's outcomes, once the task is done and until they are answered.
    stored_run: Option<(Vec<String>, Outcomes)>,
    stored: u32,
    refused: u32,
}

/// One outcome per article of a run, in order.
type Outcomes = Vec<Result<Posted, Outcome>>;

/// How an arriving article came: the replies differ (RFC 3977 §6.3,
/// RFC 4644 §2.5).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Post,
    Ihave,
    TakeThis,
}

/// Run a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

impl NntpSession {
    /// Closing with a run not stored or not answered: none of it was
    /// acknowledged (a run in flight is still stored, and fed on; a peer
    /// offering it again hears it is a duplicate).
    fn abandon_run(&mut self) {
        self.run.clear();
        self.run_bytes = 0;
        self.storing = None;
        self.stored_run = None;
        self.core.abandon_deferred();
    }

    /// Hand the run read so far to a storing task, after answering the
    /// run in flight (if any): replies go out in order, one run at a time.
    async fn start_run(&mut self) {
        self.finish_run().await;
        let run = std::mem::take(&mut self.run);
        self.run_bytes = 0;
        let ids: Vec<String> = run.iter().map(|(id, _)| id.clone()).collect();
        let task = self.spawn_store(Via::TakeThis, run.into_iter().map(|(id, a)| (Some(id), a)).collect());
        self.storing = Some((ids, task));
    }

    /// Wait for the run in flight, if any, and answer it.
    async fn finish_run(&mut self) {
        if let Some((ids, task)) = self.storing.take() {
            let n = ids.len();
            let outcomes = task.await.unwrap_or_else(|_| (0..n).map(|_| Err(task_failed())).collect());
            self.stored_run = Some((ids, outcomes));
        }
        self.answer_run();
    }

    /// Answer the run whose outcomes have come.
    fn answer_run(&mut self) {
        let Some((ids, outcomes)) = self.stored_run.take() else { return };
        let mut outcomes = outcomes.into_iter();
        let replies: Vec<Reply> = ids
            .iter()
            .map(|id| self.outcome(Via::TakeThis, id, outcomes.next().unwrap_or_else(|| Err(task_failed()))))
            .collect();
        self.core.answer_first(replies);
    }

    fn peer(&self) -> Option<&NewsPeer> {
        self.peer.and_then(|i| self.news.peers.get(i))
    }

    fn on_auth(&mut self) {
        // the slot is taken now, before any credentials arrive
        let slot = self.conn.login.slot("AUTHINFO SASL", reply::AUTH_THROTTLED);
        self.core.auth_begin(slot);
    }

    async fn log_in(&mut self, creds: Credentials) {
        let verdict = self.conn.login.verify(creds).await;
        self.core.login_done(verdict.map_err(|r| r.reply(reply::AUTH_THROTTLED, reply::AUTH_FAILED)));
    }

    async fn execute(&mut self, req: Request) -> Answer {
        let store = self.news.store.clone();
        match req {
            Request::Post(article) => self.arrived(Via::Post, None, article).await,
            Request::Ihave { id, article } => self.arrived(Via::Ihave, Some(id), article).await,
            Request::TakeThis { id, article } => {
                let r = self.take_these(vec![(id, article)]).await;
                Answer::Reply(r.into_iter().next().unwrap_or(reply::SERVICE_UNAVAILABLE))
            }
            Request::Offer(id) => match blocking(move || store.seen(&id)).await {
                Some(Ok(false)) => Answer::Wanted,
                Some(Ok(true)) => Answer::Reply(reply::NOT_WANTED),
                _ => Answer::Reply(reply::TRANSFER_LATER),
            },
            // RFC 4644 §2.4: each response names its message-id (they are pipelined)
            Request::Check(id) => {
                let i = id.clone();
                let code = match blocking(move || store.seen(&i)).await {
                    Some(Ok(false)) => 238,
                    Some(Ok(true)) => 438,
                    _ => 431,
                };
                Answer::Reply(Reply::owned(code, id))
            }
            req => blocking(move || reader::answer(&store, req, now_secs()))
                .await
                .unwrap_or(Answer::Reply(reply::STORE_FAILED)),
        }
    }

    /// An article arrived (POST or IHAVE): check it, store it, queue it
    /// for the feeds.
    async fn arrived(&mut self, via: Via, id: Option<String>, article: Vec<u8>) -> Answer {
        let offered = id.clone().unwrap_or_default();
        let outcome = self.store(via, vec![(id, article)]).await.pop().unwrap_or_else(|| Err(task_failed()));
        Answer::Reply(self.outcome(via, &offered, outcome))
    }

    /// A single TAKETHIS not read in a run.
    async fn take_these(&mut self, articles: Vec<(String, Vec<u8>)>) -> Vec<Reply> {
        let ids: Vec<String> = articles.iter().map(|(id, _)| id.clone()).collect();
        let outcomes = self.store(Via::TakeThis, articles.into_iter().map(|(id, a)| (Some(id), a)).collect()).await;
        let mut outcomes = outcomes.into_iter();
        ids.iter()
            .map(|id| self.outcome(Via::TakeThis, id, outcomes.next().unwrap_or_else(|| Err(task_failed()))))
            .collect()
    }

    /// Store arriving articles ([`NntpSession::spawn_store`]) and wait.
    async fn store(&mut self, via: Via, articles: Vec<(Option<String>, Vec<u8>)>) -> Vec<Result<Posted, Outcome>> {
        let n = articles.len();
        self.spawn_store(via, articles).await.unwrap_or_else(|_| (0..n).map(|_| Err(task_failed())).collect())
    }

    /// Check arriving articles, store those that pass in one run, queue
    /// them for the feeds (one journal fsync), in a blocking task. One
    /// outcome per article, in order; every `Ok` is durable and queued.
    fn spawn_store(&self, via: Via, articles: Vec<(Option<String>, Vec<u8>)>) -> tokio::task::JoinHandle<Outcomes> {
        let news = self.news.clone();
        let peer = self.peer;
        tokio::task::spawn_blocking(move || {
            let now = now_secs();
            let host = news.store.settings().host.clone();
            let mut outcomes: Vec<Result<Posted, Outcome>> = Vec::with_capacity(articles.len());
            let mut ready = Vec::new();
            for (id, article) in &articles {
                let r = match (id, via) {
                    (None, _) | (_, Via::Post) => inject::post(&news.store, article, now).map_err(Outcome::Refused),
                    (Some(id), _) => {
                        inject::feed(&host, id, article).map_err(|inject::Rejected(why)| Outcome::Rejected(why))
                    }
                };
                match r {
                    Ok(r) => {
                        ready.push((outcomes.len(), r));
                        // a placeholder for the store's outcome
                        outcomes.push(Err(task_failed()));
                    }
                    Err(e) => outcomes.push(Err(e)),
                }
            }
            let from = peer.and_then(|i| news.peers.get(i)).filter(|_| via != Via::Post);
            let bytes: Vec<&[u8]> = ready.iter().map(|(_, r)| r.article.as_slice()).collect();
            let posted = match from {
                Some(p) => news.store.post_many(&bytes, now, |g| p.wants(g)),
                None => news.store.post_many(&bytes, now, |_| true),
            };
            let queued: Vec<(&Posted, &str)> =
                posted.iter().zip(&ready).filter_map(|(p, (_, r))| Some((p.as_ref().ok()?, r.path.as_str()))).collect();
            if let Err(e) = news.feeds.stored_many(&queued, from.map(|p| p.name.as_str())) {
                // stored and durable: the client is told so; only the feeds miss them
                let ids: Vec<&str> = queued.iter().map(|(p, _)| p.message_id.as_str()).collect();
                tracing::error!(articles = %ids.join(" "), "cannot queue articles for the news feeds: {e}");
            }
            for ((slot, _), p) in ready.iter().zip(posted) {
                if let Some(o) = outcomes.get_mut(*slot) {
                    *o = p.map_err(Outcome::Store);
                }
            }
            outcomes
        })
    }

    fn outcome(&mut self, via: Via, id: &str, outcome: Result<Posted, Outcome>) -> Reply {
        let server = &self.conn.vs.name;
        let r = match outcome {
            Ok(posted) => {
                self.stored += 1;
                // the groups are formatted only when the line is logged
                let groups = || posted.numbers.iter().map(|(g, n)| format!("{g}:{n}")).collect::<Vec<_>>().join(" ");
                tracing::info!(server = %server, peer = %self.conn.peer, article = %posted.message_id, groups = %groups(), "article stored");
                return match via {
                    Via::Post => Reply::owned(240, format!("Article received OK {}", posted.message_id)),
                    Via::Ihave => reply::TRANSFERRED,
                    Via::TakeThis => Reply::owned(239, posted.message_id),
                };
            }
            Err(Outcome::Refused(r)) => r,
            Err(Outcome::Rejected(why)) => match via {
                Via::TakeThis => Reply::owned(439, format!("{id} Rejected: {why}")),
                _ => Reply::owned(437, format!("Rejected: {why}")),
            },
            Err(Outcome::Store(e)) if e.is_permanent() => match via {
                Via::Post => Reply::owned(441, e.to_string()),
                Via::Ihave => Reply::owned(437, e.to_string()),
                Via::TakeThis => Reply::owned(439, format!("{id} {e}")),
            },
            Err(Outcome::Store(e)) => {
                tracing::error!(server = %server, "news store: {e}");
                match via {
                    Via::Post => Reply::new(441, "Posting failed: the news store is not available, try again later"),
                    Via::Ihave => reply::TRANSFER_LATER,
                    Via::TakeThis => reply::SERVICE_UNAVAILABLE,
                }
            }
        };
        self.refused += 1;
        tracing::info!(server = %server, peer = %self.conn.peer, reply = %r, "article refused");
        r
    }
}

/// The store task itself failed (it panicked): store trouble, not the article's.
fn task_failed() -> Outcome {
    Outcome::Store(NewsError::Corrupt("task".into(), "the store task failed".into()))
}

/// Why an arriving article was not stored.
enum Outcome {
    /// A POST check failed: this `441`.
    Refused(Reply),
    /// A fed article is malformed: `437`/`439`.
    Rejected(String),
    Store(NewsError),
}

impl Session for NntpSession {
    fn greeting(&mut self, out: &mut Vec<u8>) {
        Conn::greet(&mut self.core, out);
    }

    async fn handle(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Next {
        // pipelined TAKETHIS articles are deferred in the core and stored
        // as one run: when the input holds no further TAKETHIS and the peer
        // may be waiting for the replies (it is not in the middle of
        // sending something), or when the run is full. The run is stored
        // while the next one is read; a full run waits for the one before.
        self.answer_run();
        loop {
            let event = match self.core.feed(input) {
                Some(Event::Request(Request::TakeThis { id, article })) => {
                    self.core.defer();
                    self.run_bytes += article.len();
                    self.run.push((id, article));
                    if self.run.len() < MAX_RUN && self.run_bytes < MAX_RUN_BYTES {
                        continue;
                    }
                    None
                }
                event => event,
            };
            if !self.run.is_empty() {
                let full = self.run.len() >= MAX_RUN || self.run_bytes >= MAX_RUN_BYTES;
                if event.is_none() && !full && (self.core.expects_more(input) || self.storing.is_some()) {
                    // the rest is on its way, or the run in flight ends
                    // first: read on into this run (notified() answers it)
                    break;
                }
                self.start_run().await;
                if event.is_none() {
                    // the core may read on now
                    continue;
                }
            } else if event.is_none() && self.storing.is_some() && self.core.deferred() > 0 && !input.is_empty() {
                // what waits in the input waits for the run in flight
                if !self.core.expects_more(input) {
                    self.finish_run().await;
                    continue;
                }
            }
            let Some(event) = event else { break };
            match event {
                Event::StartTls => {
                    self.core.take_output(out);
                    return Next::StartTls;
                }
                Event::Quit | Event::TooManyErrors => break,
                Event::Login(creds) => self.log_in(creds).await,
                Event::Auth(AuthEvent::Start { .. }) => self.on_auth(),
                Event::Auth(AuthEvent::Credentials(creds)) => self.log_in(creds).await,
                Event::Auth(AuthEvent::Failed(_)) => {
                    self.conn.login.failed().await;
                    self.core.login_done(Err(reply::AUTH_FAILED));
                }
                Event::Request(req) => {
                    let answer = self.execute(req).await;
                    self.core.answer(answer);
                }
            }
        }
        self.conn.end_turn(&mut self.core, out)
    }

    fn tls_started(&mut self, info: &TlsInfo) {
        self.conn.tls_started(info);
        self.core.tls_started();
    }

    /// The run in flight is stored: its outcomes wait in `stored_run`.
    async fn notified(&mut self) {
        let Some((_, task)) = self.storing.as_mut() else { return std::future::pending().await };
        let outcomes = task.await;
        if let Some((ids, _)) = self.storing.take() {
            let n = ids.len();
            self.stored_run = Some((ids, outcomes.unwrap_or_else(|_| (0..n).map(|_| Err(task_failed())).collect())));
        }
    }

    /// Answer the run just stored, then let `handle` go on with what the
    /// input and the next run hold.
    fn on_notify(&mut self, out: &mut Vec<u8>) -> Next {
        self.answer_run();
        match self.conn.end_turn(&mut self.core, out) {
            Next::Read => Next::Continue,
            next => next,
        }
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        self.abandon_run();
        Conn::close(&mut self.core, &reply::IDLE_TIMEOUT, out);
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        self.abandon_run();
        Conn::close(&mut self.core, &reply::SHUTTING_DOWN, out);
    }

    fn finished(&mut self, end: &SessionEnd) {
        let (version, cipher) = TlsInfo::log_fields(self.conn.tls.as_ref());
        tracing::info!(
            server = %self.conn.vs.name,
            peer = %self.conn.peer,
            tls = version,
            cipher,
            user = self.core.user().unwrap_or("-"),
            news_peer = self.peer().map_or("-", |p| p.name.as_str()),
            stored = self.stored,
            refused = self.refused,
            outcome = %end,
            "nntp session"
        );
    }
}
