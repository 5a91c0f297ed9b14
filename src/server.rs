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

/// Everything sessions and the control socket share.
pub struct Context {
    pub config: Arc<Config>,
    pub queue: Arc<QueueStore>,
    pub accounts: Accounts,
    pub mailboxes: Arc<MailboxStore>,
    pub certs: Arc<CertStore>,
    /// Logins for every service: accounts, failure throttle and delay.
    pub gate: Gate,
    /// The queue manager: every change to queued messages goes through it.
    pub scheduler: Scheduler,
    pub transport: Arc<SmtpTransport>,
    pub data: DataDir,
}

impl Context {
    /// Answer a control-socket request.
    pub async fn control(self: &Arc<Self>, req: Request) -> Response {
        let op = match req {
            Request::Reload => return Response::ok(self.reload()),
            Request::QueueRetry { select } => ControlOp::Retry(select),
            Request::QueueFreeze { select } => ControlOp::Freeze(select),
            Request::QueueThaw { select } => ControlOp::Thaw(select),
            Request::QueueDelete { select, ndr } => ControlOp::Delete { select, ndr },
            req => {
                let ctx = self.clone();
                // account changes hash passwords; listing a big queue takes a while
                return tokio::task::spawn_blocking(move || {
                    ops::execute(&ops::Stores { config: &ctx.config, queue: &ctx.queue, accounts: &ctx.accounts }, req)
                })
                .await
                .unwrap_or_else(|e| Response::err(format!("internal error: {e}")));
            }
        };
        match self.scheduler.control(op).await {
            Ok(ids) => Response::ok(ids),
            Err(e) => Response::err(e),
        }
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

/// Start everything the config describes. Errors are one sentence naming
/// the culprit (a file, an address, a certificate).
pub async fn start(config: Config) -> Result<Server, String> {
    start_with(config, StartOptions::default()).await
}

pub async fn start_with(config: Config, options: StartOptions) -> Result<Server, String> {
    let config = Arc::new(config);
    // Certificates first: a broken key refuses to start before anything is touched.
    let certs = Arc::new(CertStore::open(&config).map_err(|e| e.to_string())?);
    for w in certs.warnings(&config) {
        tracing::warn!("{w}");
    }
    let data = DataDir::open(&config.server.data_dir).map_err(|e| e.to_string())?;
    let (queue, recovery) = QueueStore::open(&data.db, &data.path).map_err(|e| e.to_string())?;
    tracing::info!(
        messages = recovery.messages,
        from_spool = recovery.from_spool.len(),
        dropped = recovery.dropped.len(),
        "queue opened"
    );
    let accounts = Accounts::open(&data.db).map_err(|e| e.to_string())?;
    let (mailboxes, found) = MailboxStore::open(&data.db, &data.path, accounts.clone()).map_err(|e| e.to_string())?;
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
    let transport = Arc::new(
        SmtpTransport::with_settings(config.clone(), options.transport).map_err(|e| format!("outbound SMTP: {e}"))?,
    );
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
        data,
    });

    let shutdown = Shutdown::new();
    let mut bound = Vec::new();
    for vs in &config.virtual_servers {
        if !matches!(vs.protocol, Protocol::Smtp | Protocol::Pop3) {
            tracing::warn!(server = %vs.name, "protocol {} is not implemented yet; virtual server not started", vs.protocol);
            continue;
        }
        let listeners = net::bind(vs).await?;
        bound.push((vs.clone(), listeners));
    }

    let control_socket = config.control_socket();
    control::serve(control_socket.clone(), ctx.clone())
        .await
        .map_err(|e| format!("control socket {}: {e}", control_socket.display()))?;

    let mut listening = Vec::new();
    for (vs, listeners) in bound {
        let tls = match vs.tls {
            TlsMode::None => None,
            _ => Some(
                crate::tls::server_config(certs.clone(), &vs.certificates, vs.min_tls_version)
                    .map_err(|e| format!("virtual server {:?}: TLS setup failed: {e}", vs.name))?,
            ),
        };
        for addr in net::local_addrs(&listeners).map_err(|e| e.to_string())? {
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
            Protocol::Imap | Protocol::Nntp => {}
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
pub async fn serve(config: Config) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
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
