//! The running server: opens the data directory, reconciles the queue,
//! loads certificates, binds every virtual server, serves the control
//! socket, and stops gracefully (SIGTERM/SIGINT) or reloads certificates
//! (SIGHUP). This is the only place that wires the pieces together.

use crate::auth::throttle::AuthThrottle;
use crate::auth::{Accounts, Gate};
use crate::config::{Config, Protocol, TlsMode};
use crate::control::{self, ops, Request, Response};
use crate::datadir::DataDir;
use crate::delivery::{LocalDelivery, SmtpTransport, TransportSettings};
use crate::mailbox::MailboxStore;
use crate::net::{self, ListenerSpec, Shutdown};
use crate::queue::scheduler::{ControlOp, Scheduler};
use crate::queue::QueueStore;
use crate::tls::CertStore;
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
    certs: Arc<CertStore>,
    /// Logins for every service: accounts, failure throttle and delay.
    gate: Gate,
    /// The queue manager: every change to queued messages goes through it.
    scheduler: Scheduler,
    transport: Arc<SmtpTransport>,
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
                    let (config, queue, accounts) = (self.config.clone(), self.queue.clone(), self.accounts.clone());
                    // account changes hash passwords; listing a big queue takes a while
                    return tokio::task::spawn_blocking(move || {
                        ops::execute(&ops::Stores { config: &config, queue: &queue, accounts: &accounts }, req)
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
    let data = DataDir::open(&config.server.data_dir)?;
    let (queue, recovery) = QueueStore::open(&data.db, &data.path)?;
    tracing::info!(
        messages = recovery.messages,
        from_spool = recovery.from_spool.len(),
        dropped = recovery.dropped.len(),
        "queue opened"
    );
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
    let queue = Arc::new(queue);
    let transport =
        Arc::new(SmtpTransport::with_settings(config.clone(), options.transport).map_err(ServeError::Transport)?);
    let scheduler = Scheduler::start(
        queue.clone(),
        config.clone(),
        accounts.clone(),
        Some(transport.clone() as Arc<dyn crate::delivery::Remote>),
        Some(Arc::new(LocalDelivery::new(mailboxes.clone(), &config.server.postmaster))
            as Arc<dyn crate::delivery::Local>),
    );
    let ctx = Arc::new(Context {
        gate: Gate::new(
            accounts.clone(),
            AuthThrottle::new(config.auth.failure_limit, config.auth.failure_window.0),
            config.auth.failure_delay.0,
        ),
        config: config.clone(),
        queue,
        scheduler,
        transport,
        accounts,
        mailboxes,
        certs: certs.clone(),
        _data: data,
    });

    let shutdown = Shutdown::new();
    let mut bound = Vec::new();
    for vs in &config.virtual_servers {
        if !matches!(vs.protocol, Protocol::Smtp | Protocol::Pop3 | Protocol::Imap) {
            tracing::warn!(server = %vs.name, "protocol {} is not implemented yet; virtual server not started", vs.protocol);
            continue;
        }
        let listeners = net::bind(vs).await?;
        bound.push((vs.clone(), listeners));
    }

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
        let spec = ListenerSpec::new(&vs, tls);
        let vs = Arc::new(vs);
        match vs.protocol {
            Protocol::Smtp => {
                let service = Arc::new(crate::smtp::SmtpService::new(
                    ctx.config.clone(),
                    ctx.accounts.clone(),
                    ctx.gate.clone(),
                    ctx.queue.clone(),
                    vs.clone(),
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
            Protocol::Nntp => {}
        }
    }
    Ok(Server { ctx, shutdown, listening, control_socket })
}

impl Server {
    /// Stop accepting, tell sessions to finish, wait for them, flush.
    pub async fn stop(self) {
        self.shutdown.trigger_and_wait(Duration::from_secs(30)).await;
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

fn tls_word(t: TlsMode) -> &'static str {
    match t {
        TlsMode::None => "plaintext",
        TlsMode::Starttls => "starttls",
        TlsMode::Implicit => "implicit TLS",
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
    println!("postern: ready");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => { server.ctx.reload(); }
        }
    }
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}
