//! The running server: opens the data directory, reconciles the queue,
//! the mailboxes and the news store (whose old articles it expires
//! hourly), loads certificates, binds every virtual server (and the
//! metrics listener), serves the control socket, and stops gracefully
//! (SIGTERM/SIGINT) or reloads certificates (SIGHUP). It opens the
//! message-tracking log (pruned daily) and hands it to the SMTP services
//! and the queue manager. This is the only place that wires the pieces
//! together.

use crate::auth::throttle::AuthThrottle;
use crate::auth::{Accounts, Gate};
use crate::config::{Config, Protocol, TlsMode};
use crate::control::{self, ops, Request, Response};
use crate::datadir::DataDir;
use crate::delivery::{LocalDelivery, SmtpTransport, TransportSettings};
use crate::mailbox::MailboxStore;
use crate::metrics::{self, Metrics};
use crate::net::{self, ListenerSpec, Shutdown};
use crate::news::feed::FeedQueue;
use crate::news::{NewsSettings, NewsStore};
use crate::queue::scheduler::{ControlOp, Scheduler};
use crate::queue::QueueStore;
use crate::tls::CertStore;
use crate::track::Tracker;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What the composition root keeps: the stores it built and handed out
/// (services got narrow handles of them), the queue manager and the
/// certificates the control socket acts on. Private: nothing but the root
/// reaches into it.
pub struct Context {
    config: Arc<Config>,
    queue: Arc<QueueStore>,
    accounts: Accounts,
    mailboxes: Arc<MailboxStore>,
    /// The newsgroups and the articles owed to the feed peers.
    news: Arc<NewsStore>,
    feeds: Arc<FeedQueue>,
    certs: Arc<CertStore>,
    /// Logins for every service: accounts, failure throttle and delay.
    gate: Gate,
    /// The queue manager: every change to queued messages goes through it.
    scheduler: Scheduler,
    transport: Arc<SmtpTransport>,
    /// The counters every service bumps; off without `[metrics] listen`.
    metrics: Metrics,
    /// The message-tracking log (operator actions go in through the scheduler).
    tracker: Tracker,
    /// Held for the server's life: the database, and with it sled's lock
    /// on the data directory.
    _data: DataDir,
}

/// The control socket's requests: queue actions go through the queue
/// manager (so they never race a delivery), reload to the certificates,
/// the rest to [`ops`] on the stores.
impl control::Handler for Context {
    fn handle(&self, req: Request) -> control::BoxFuture<'_, Response> {
        Box::pin(async move {
            let op = match req {
                Request::Reload => return Response::ok(self.reload()),
                Request::QueueRetry { select } => ControlOp::Retry(select),
                Request::QueueFreeze { select } => ControlOp::Freeze(select),
                Request::QueueThaw { select } => ControlOp::Thaw(select),
                Request::QueueDelete { select, ndr } => ControlOp::Delete { select, ndr },
                req => {
                    if matches!(req, Request::QueueSummary | Request::QueueList { .. } | Request::QueueShow { .. }) {
                        // the messages queued before the restart are not counted yet
                        self.queue.reconciled().await;
                    }
                    let (config, queue, accounts) = (self.config.clone(), self.queue.clone(), self.accounts.clone());
                    let (news, tracker) = (self.news.clone(), self.tracker.clone());
                    // account changes hash passwords; listing a big queue takes a while
                    return tokio::task::spawn_blocking(move || {
                        let stores = ops::Stores {
                            config: &config,
                            queue: &queue,
                            accounts: &accounts,
                            news: &news,
                            tracker: &tracker,
                        };
                        ops::execute(&stores, req)
                    })
                    .await
                    .unwrap_or_else(|e| Response::err(format!("internal error: {e}")));
                }
            };
            match self.scheduler.control(op).await {
                Ok(ids) => Response::ok(ids),
                Err(e) => Response::err(e),
            }
        })
    }

    /// `queue list` streamed: walked on a blocking thread, line by line.
    fn stream(&self, req: Request, out: tokio::sync::mpsc::Sender<Response>) -> control::BoxFuture<'_, ()> {
        Box::pin(async move {
            let Request::QueueList { filter, .. } = req else {
                let _ = out.send(self.handle(req).await).await;
                return;
            };
            self.queue.reconciled().await;
            let (queue, tx) = (self.queue.clone(), out.clone());
            if let Err(e) = tokio::task::spawn_blocking(move || ops::stream_list(&queue, &filter, &tx)).await {
                let _ = out.send(Response::err(format!("internal error: {e}"))).await;
            }
        })
    }
}

impl Context {
    /// The queue store (tests watch it drain).
    pub fn queue(&self) -> &QueueStore {
        &self.queue
    }

    pub fn reload(&self) -> crate::tls::ReloadReport {
        let report = self.certs.reload();
        for (name, why) in &report.failed {
            tracing::warn!(certificate = %name, "reload kept the old certificate: {why}");
        }
        for w in self.certs.warnings(&self.config) {
            tracing::warn!("{w}");
        }
        tracing::info!(reloaded = ?report.reloaded, failed = report.failed.len(), "certificates reloaded");
        report
    }
}

/// A virtual server that is up.
#[derive(Clone, Debug)]
pub struct Listening {
    pub name: String,
    pub protocol: Protocol,
    pub tls: TlsMode,
    pub addr: SocketAddr,
}

pub struct Server {
    pub ctx: Arc<Context>,
    pub shutdown: Shutdown,
    pub listening: Vec<Listening>,
    control_socket: PathBuf,
    /// The tasks that push the feed queue to the news peers.
    feeder: crate::nntp::feeder::Feeder,
    /// Where `GET /metrics` is served (`[metrics] listen`, port 0 resolved).
    pub metrics: Option<SocketAddr>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

/// How to start, beyond the config: settings tests and tools may change.
#[derive(Default)]
pub struct StartOptions {
    /// Outbound SMTP: timeouts, session reuse, and the port for MX hosts.
    pub transport: TransportSettings,
}

/// Why the server did not start, or stopped serving: each names its
/// culprit (a file, an address, a certificate, a virtual server).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Certificates(#[from] crate::tls::CertError),
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error(transparent)]
    Queue(#[from] crate::queue::StoreError),
    #[error(transparent)]
    Accounts(#[from] crate::auth::AccountError),
    #[error(transparent)]
    Mailboxes(#[from] crate::mailbox::MailboxError),
    #[error(transparent)]
    News(#[from] crate::news::NewsError),
    #[error("outbound SMTP: {0}")]
    Transport(#[source] crate::delivery::TransportError),
    /// A listener could not be bound (the error names the address).
    #[error(transparent)]
    Listen(#[from] net::BindError),
    #[error("control socket {}: {source}", path.display())]
    ControlSocket { path: PathBuf, source: std::io::Error },
    #[error("virtual server {0:?}: TLS setup failed: {1}")]
    Tls(String, #[source] rustls::Error),
    #[error("cannot read the bound listeners' addresses: {0}")]
    LocalAddrs(#[source] std::io::Error),
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
    #[error(transparent)]
    Metrics(#[from] metrics::http::BindError),
}

/// Started as root with `[server] user`: hand the data directory to that
/// account and become it for good. Started as root without it: say loudly
/// that root stays root. Started as anyone else: nothing changes.
fn give_up_root(config: &Config) -> Result<(), ServeError> {
    use crate::privileges;
    let s = &config.server;
    if !privileges::is_root() {
        if let Some(user) = &s.user {
            tracing::info!(user = %user, "not started as root; server.user has nothing to give up");
        }
        return Ok(());
    }
    let Some(user) = &s.user else {
        tracing::warn!(
            "running as root: set [server] user (and group) so that postern gives root up after binding its ports"
        );
        return Ok(());
    };
    let account = privileges::lookup(user, s.group.as_deref())?;
    let changed = privileges::hand_over(&s.data_dir, &account)?;
    privileges::drop_to(&account)?;
    tracing::info!(
        user = %account.user, uid = account.uid, gid = account.gid, data_dir_entries_handed_over = changed,
        "gave up root"
    );
    Ok(())
}

/// Start everything the config describes.
pub async fn start(config: Config) -> Result<Server, ServeError> {
    start_with(config, StartOptions::default()).await
}

pub async fn start_with(config: Config, options: StartOptions) -> Result<Server, ServeError> {
    let config = Arc::new(config);
    // Certificates first: a broken key refuses to start before anything is touched.
    let certs = Arc::new(CertStore::open(&config)?);
    for w in certs.warnings(&config) {
        tracing::warn!("{w}");
    }
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let metrics = Metrics::new(&config);
    // Listeners next, while privileged ports may still be bound; then,
    // started as root, give root up before any store is opened.
    let mut bound = Vec::new();
    for vs in &config.virtual_servers {
        let listeners = net::bind(vs).await?;
        bound.push((vs.clone(), listeners));
    }
    let metrics_listener = match config.metrics.listen_addr {
        Some(addr) => Some(metrics::http::bind(addr).await?),
        None => None,
    };
    give_up_root(&config)?;
    let data = DataDir::open(&config.server.data_dir)?;
    // new mail is taken at once; what was queued before is reconciled on a
    // blocking thread (the queue manager and queue commands wait for it)
    let queue = Arc::new(QueueStore::open_unreconciled(&data.db, &data.path)?);
    tracing::info!("queue open for new mail; reconciling the spool with the index in the background");
    let reconciling = queue.clone();
    tokio::task::spawn_blocking(move || match reconciling.reconcile() {
        Ok(recovery) => tracing::info!(
            messages = recovery.messages,
            from_spool = recovery.from_spool.len(),
            dropped = recovery.dropped.len(),
            "queue opened"
        ),
        Err(e) => {
            // as a failure to open was before listening: stop, rather than
            // deliver from a half-known queue (a segment whose messages were
            // not all counted could be deleted as empty); what was
            // acknowledged is in the spool for the next start
            tracing::error!("queue reconciliation failed, stopping (the queue stays on disk for the next start): {e}");
            eprintln!("postern: {e}");
            std::process::exit(1);
        }
    });
    let accounts = Accounts::open(&data.db)?;
    let (mailboxes, found) = MailboxStore::open(&data.db, &data.path, accounts.clone())?;
    tracing::info!(
        users = found.users,
        folders = found.folders,
        messages = found.messages,
        reindexed = found.reindexed.len(),
        dropped = found.dropped.len(),
        "mailboxes opened"
    );
    let mailboxes = Arc::new(mailboxes);
    let (news, found) = NewsStore::open(&data.db, &data.path, news_settings(&config), crate::util::now_secs())?;
    tracing::info!(
        groups = found.groups,
        articles = found.articles,
        reindexed = found.reindexed.len(),
        dropped = found.dropped.len(),
        quarantined = found.quarantined.len(),
        "news store opened"
    );
    let news = Arc::new(news);
    let (feeds, found) = FeedQueue::open(&data.db, &data.path, &config.news_peers)?;
    tracing::info!(pending = ?found.pending, rescued = found.rescued.len(), "news feed queue opened");
    let feeds = Arc::new(feeds);
    let feeder = crate::nntp::feeder::spawn(feeds.clone(), news.clone(), Default::default());
    spawn_news_expiry(news.clone());
    let tracker = Tracker::from_config(&config);
    tracker.spawn_retention();
    let transport =
        Arc::new(SmtpTransport::with_settings(config.clone(), options.transport).map_err(ServeError::Transport)?);
    // RFC 8460: yesterday's TLS reports, then each day's
    match crate::tlsrpt::Reporter::new(config.clone(), queue.clone(), tracker.clone()) {
        Ok(r) => crate::tlsrpt::spawn_daily(Arc::new(r), crate::util::now_secs),
        Err(e) => tracing::warn!("TLS reports (TLS-RPT) are off: {e}"),
    }
    let scheduler = Scheduler::start(
        queue.clone(),
        config.clone(),
        accounts.clone(),
        Some(transport.clone() as Arc<dyn crate::delivery::Remote>),
        Some(Arc::new(LocalDelivery::new(mailboxes.clone(), &config.server.postmaster))
            as Arc<dyn crate::delivery::Local>),
        metrics.clone(),
        tracker.clone(),
    );
    let ctx = Arc::new(Context {
        gate: Gate::new(
            accounts.clone(),
            AuthThrottle::new(config.auth.failure_limit, config.auth.failure_window.0),
            config.auth.failure_delay.0,
        )
        .with_metrics(metrics.clone()),
        config: config.clone(),
        queue,
        scheduler,
        transport,
        tracker,
        accounts,
        mailboxes,
        news,
        feeds,
        certs: certs.clone(),
        metrics,
        _data: data,
    });

    let shutdown = Shutdown::new();

    let control_socket = config.control_socket();
    control::serve(control_socket.clone(), ctx.clone())
        .await
        .map_err(|source| ServeError::ControlSocket { path: control_socket.clone(), source })?;

    let mut listening = Vec::new();
    for (vs, listeners) in bound {
        let tls = match vs.tls {
            TlsMode::None => None,
            _ => Some(
                crate::tls::server_config(certs.clone(), &vs.certificates, vs.min_tls_version)
                    .map_err(|e| ServeError::Tls(vs.name.clone(), e))?,
            ),
        };
        for addr in net::local_addrs(&listeners).map_err(ServeError::LocalAddrs)? {
            listening.push(Listening { name: vs.name.clone(), protocol: vs.protocol, tls: vs.tls, addr });
        }
        let spec = ListenerSpec::new(&vs, tls, &ctx.metrics);
        let vs = Arc::new(vs);
        match vs.protocol {
            Protocol::Smtp => {
                let service = Arc::new(crate::smtp::SmtpService::new(
                    ctx.config.clone(),
                    ctx.accounts.clone(),
                    ctx.gate.clone(),
                    ctx.queue.clone(),
                    vs.clone(),
                    ctx.metrics.clone(),
                    ctx.tracker.clone(),
                ));
                net::spawn_listeners(listeners, service, spec, shutdown.clone());
            }
            Protocol::Pop3 => {
                let hostname = &ctx.config.server.hostname;
                let service = Arc::new(crate::pop3::Pop3Service::new(
                    hostname,
                    ctx.gate.clone(),
                    ctx.mailboxes.clone(),
                    vs.clone(),
                ));
                net::spawn_listeners(listeners, service, spec, shutdown.clone());
            }
            Protocol::Imap => {
                let hostname = &ctx.config.server.hostname;
                let service = Arc::new(crate::imap::ImapService::new(
                    hostname,
                    ctx.gate.clone(),
                    ctx.mailboxes.clone(),
                    vs.clone(),
                ));
                net::spawn_listeners(listeners, service, spec, shutdown.clone());
            }
            Protocol::Nntp => {
                let news = crate::nntp::News {
                    store: ctx.news.clone(),
                    feeds: ctx.feeds.clone(),
                    peers: ctx.config.news_peers.clone().into(),
                };
                let hostname = &ctx.config.server.hostname;
                let service = Arc::new(crate::nntp::NntpService::new(hostname, ctx.gate.clone(), news, vs.clone()));
                net::spawn_listeners(listeners, service, spec, shutdown.clone());
            }
        }
    }
    let (metrics, metrics_task) = match metrics_listener {
        Some(l) => {
            let addr = l.local_addr().map_err(ServeError::LocalAddrs)?;
            let sources = Arc::new(Scraped { queue: ctx.queue.clone(), certs: certs.clone() });
            (Some(addr), Some(metrics::http::spawn(l, ctx.metrics.clone(), sources)))
        }
        None => (None, None),
    };
    Ok(Server { ctx, shutdown, listening, control_socket, feeder, metrics, metrics_task })
}

/// What the metrics read at scrape time: the queue per destination (as
/// `queue summary` counts it) and the loaded certificates.
struct Scraped {
    queue: Arc<QueueStore>,
    certs: Arc<CertStore>,
}

impl metrics::Sources for Scraped {
    fn queue(&self) -> Vec<metrics::QueuedDestination> {
        self.queue
            .tally()
            .into_iter()
            .map(|(destination, t)| metrics::QueuedDestination { destination, messages: t.messages, oldest: t.oldest })
            .collect()
    }

    fn certificates(&self) -> Vec<(String, i64)> {
        self.certs.snapshot().iter().map(|(name, c)| (name.clone(), c.not_after)).collect()
    }
}

impl Server {
    /// Stop accepting, tell sessions to finish, wait for them, flush.
    pub async fn stop(self) {
        if let Some(task) = &self.metrics_task {
            task.abort();
        }
        self.shutdown.trigger_and_wait(Duration::from_secs(30)).await;
        self.feeder.stop(Duration::from_secs(5)).await;
        let feeds = self.ctx.feeds.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || feeds.flush()).await.unwrap_or(Ok(())) {
            tracing::warn!("news feed queue flush at shutdown: {e}");
        }
        // retire the news write-ahead log now, so the next start has nothing to replay
        let news = self.ctx.news.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || news.checkpoint()).await.unwrap_or(Ok(())) {
            tracing::warn!("news log checkpoint at shutdown: {e}");
        }
        self.ctx.transport.close_idle().await;
        if let Err(e) = self.ctx.queue.flush() {
            tracing::warn!("queue flush at shutdown: {e}");
        }
        if let Err(e) = self.ctx.mailboxes.flush() {
            tracing::warn!("mailbox index flush at shutdown: {e}");
        }
        let _ = std::fs::remove_file(&self.control_socket);
        tracing::info!("stopped");
    }
}

/// What the news store is told by the configuration (`[news]`, the name).
pub fn news_settings(config: &Config) -> NewsSettings {
    NewsSettings { expire_after: config.news.expire_after(), ..NewsSettings::new(&config.server.hostname) }
}

/// How often old articles are removed (`[news] expire_after`); also once at start.
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);

fn spawn_news_expiry(news: Arc<NewsStore>) {
    tokio::spawn(async move {
        loop {
            let store = news.clone();
            match tokio::task::spawn_blocking(move || store.expire(crate::util::now_secs())).await {
                Ok(Ok(done)) if done.articles + done.history_forgotten > 0 => {
                    tracing::info!(articles = done.articles, history = done.history_forgotten, "news expired")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("news expiry: {e}"),
                Err(e) => tracing::warn!("news expiry task: {e}"),
            }
            tokio::time::sleep(EXPIRE_EVERY).await;
        }
    });
}

fn tls_word(t: TlsMode) -> &'static str {
    match t {
        TlsMode::None => "plaintext",
        TlsMode::Starttls => "starttls",
        TlsMode::Implicit => "implicit TLS",
    }
}

/// Tell systemd (a `Type=notify` unit, which sets `NOTIFY_SOCKET`) where
/// start-up or shutdown stands. Without the variable, nothing happens.
fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::from_abstract_name(name),
        None => UnixAddr::from_pathname(&path),
    };
    let sent = UnixDatagram::unbound().and_then(|sock| sock.send_to_addr(state.as_bytes(), &addr?));
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd ({}): {e}", path.to_string_lossy());
    }
}

/// `postern serve`: run until SIGTERM or SIGINT; SIGHUP reloads certificates.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    // before anything opens descriptors; logged once started, so that a
    // refused start says only why
    let file_limit = net::raise_file_limit();
    let server = start(config).await?;
    match file_limit {
        Ok((old, new)) => tracing::info!(soft_limit = new, was = old, "open-file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!("cannot raise the open-file limit (RLIMIT_NOFILE): {e}"),
    }
    for l in &server.listening {
        // a stable line for people and scripts: which server is where
        println!("postern: {} ({}, {}) listening on {}", l.name, l.protocol, tls_word(l.tls), l.addr);
    }
    if let Some(addr) = server.metrics {
        println!("postern: metrics (http, plaintext) listening on {addr}");
    }
    println!("postern: ready");
    notify_systemd("READY=1\nSTATUS=serving");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => { server.ctx.reload(); }
        }
    }
    tracing::info!("shutting down");
    notify_systemd("STOPPING=1");
    server.stop().await;
    Ok(())
}
