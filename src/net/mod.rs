//! Listeners for virtual servers: binding, accepting, connection limits
//! (total and per client IP), graceful shutdown, and handing each accepted
//! connection to the generic [`driver`]. Nothing here knows which protocol
//! it carries; a [`Service`] makes the sessions.
//!
//! Descriptors: `serve` raises the soft open-file limit to the hard limit
//! ([`raise_file_limit`]). When accept() still fails for want of
//! descriptors or memory (EMFILE, ENFILE, ENOMEM, ENOBUFS) the listener
//! pauses, 50 ms doubling to 1 s, rather than retrying at once (the waiting
//! connection keeps the listener readable, so a retry loop would spin), and
//! logs one warning per burst; waiting clients are accepted once
//! descriptors free up.

pub mod driver;

pub use driver::{DriverSettings, Next, Session, SessionEnd};

use crate::config::{canonical_ip, TlsMode, VirtualServer};
use crate::metrics::Metrics;
use crate::tls::Stream;
use crate::util::LockExt;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// Facts about one accepted connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub implicit_tls: bool,
}

/// Makes sessions for one virtual server.
pub trait Service: Send + Sync + 'static {
    type Session: Session;
    fn session(&self, conn: &ConnInfo) -> Self::Session;
    /// Sent to a plaintext client refused by the connection limits.
    fn busy_reply(&self) -> &'static [u8];
}

/// Connection counting against `max_connections` and `max_connections_per_ip`.
#[derive(Debug)]
pub struct Limits {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Holds one connection's place; gives it back when dropped.
pub struct ConnGuard {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Limits> {
        Arc::new(Limits { max_total, max_per_ip, state: Mutex::new((0, HashMap::new())) })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnGuard> {
        let ip = canonical_ip(ip);
        let mut st = self.state.lock_or_recover();
        let per_ip = st.1.get(&ip).copied().unwrap_or(0);
        if st.0 >= self.max_total || per_ip >= self.max_per_ip {
            return None;
        }
        st.0 += 1;
        st.1.insert(ip, per_ip + 1);
        Some(ConnGuard { limits: self.clone(), ip })
    }

    pub fn current(&self) -> usize {
        self.state.lock_or_recover().0
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut st = self.limits.state.lock_or_recover();
        st.0 = st.0.saturating_sub(1);
        if let Some(n) = st.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                st.1.remove(&self.ip);
            }
        }
    }
}

/// The server-wide shutdown switch and a count of live sessions.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    live: Arc<(AtomicUsize, Notify)>,
}

/// What sessions and listeners hold to learn of shutdown.
#[derive(Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

/// Counts a session as live until dropped.
pub struct LiveGuard(Arc<(AtomicUsize, Notify)>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0 .0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0 .1.notify_waiters();
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, _) = watch::channel(false);
        Shutdown { tx: Arc::new(tx), live: Arc::new((AtomicUsize::new(0), Notify::new())) }
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal { rx: self.tx.subscribe() }
    }

    pub fn live_guard(&self) -> LiveGuard {
        self.live.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self.live.clone())
    }

    pub fn live_sessions(&self) -> usize {
        self.live.0.load(Ordering::SeqCst)
    }

    /// Tell everyone to stop, then wait up to `grace` for sessions to finish.
    pub async fn trigger_and_wait(&self, grace: Duration) {
        let _ = self.tx.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.live.1.notified();
            if self.live.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }
}

impl ShutdownSignal {
    /// Resolves once shutdown has been triggered.
    pub async fn triggered(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}

/// A `listen` address of a virtual server that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("virtual server {server:?}: cannot listen on {addr}: {source}")]
pub struct BindError {
    pub server: String,
    pub addr: SocketAddr,
    pub source: io::Error,
}

/// Bind every `listen` address of a virtual server. Errors name the server
/// and the address.
pub async fn bind(vs: &VirtualServer) -> Result<Vec<TcpListener>, BindError> {
    let mut out = Vec::new();
    for addr in &vs.listen_addrs {
        let l = listen(*addr).map_err(|source| BindError { server: vs.name.clone(), addr: *addr, source })?;
        out.push(l);
    }
    Ok(out)
}

/// A listening socket. IPv6 sockets are IPv6-only, so `0.0.0.0:25` and
/// `[::]:25` can be listed side by side whatever `net.ipv6.bindv6only` says.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Everything a listener needs besides its [`Service`].
#[derive(Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub driver: DriverSettings,
    pub limits: Arc<Limits>,
}

impl ListenerSpec {
    pub fn new(vs: &VirtualServer, tls: Option<Arc<rustls::ServerConfig>>, metrics: &Metrics) -> ListenerSpec {
        ListenerSpec {
            name: vs.name.clone(),
            driver: DriverSettings {
                idle_timeout: vs.idle_timeout.0,
                tls,
                implicit_tls: vs.tls == TlsMode::Implicit,
                sessions: metrics.sessions(&vs.name),
            },
            limits: Limits::new(vs.max_connections, vs.max_connections_per_ip),
        }
    }
}

/// Accept connections on `listeners` until shutdown, one task per session.
pub fn spawn_listeners<S: Service>(
    listeners: Vec<TcpListener>,
    service: Arc<S>,
    spec: ListenerSpec,
    shutdown: Shutdown,
) {
    for listener in listeners {
        let service = service.clone();
        let spec = spec.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut signal = shutdown.signal();
            let mut backoff = Backoff::default();
            loop {
                tokio::select! {
                    biased;
                    _ = signal.triggered() => break,
                    r = listener.accept() => match r {
                        Ok((tcp, peer)) => {
                            backoff.recovered(&spec.name);
                            accept(tcp, peer, &service, &spec, &shutdown)
                        }
                        Err(e) => match backoff.failed(&spec.name, &e) {
                            Some(pause) => tokio::time::sleep(pause).await,
                            None => continue,
                        },
                    },
                }
            }
        });
    }
}

/// Accept errors that mean the process or the machine is out of something
/// (descriptors, memory, buffers): the pending connection stays in the
/// backlog and accept() fails again at once, so retrying without a pause
/// spins. Anything else (ECONNABORTED, ...) concerns one connection only.
fn out_of_resources(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let out_of = [Errno::MFILE, Errno::NFILE, Errno::NOMEM, Errno::NOBUFS];
    e.raw_os_error().is_some_and(|n| out_of.iter().any(|x| x.raw_os_error() == n))
}

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The accept loop's pause while out of resources: 50 ms doubling to 1 s,
/// with one warning when a burst of failures starts and one line when it
/// ends, not a line per failure.
#[derive(Default)]
struct Backoff {
    pause: Option<Duration>,
    failures: u64,
}

impl Backoff {
    /// How long to pause after `e`, if at all.
    fn failed(&mut self, server: &str, e: &io::Error) -> Option<Duration> {
        if !out_of_resources(e) {
            tracing::debug!(server, "accept failed: {e}");
            return None;
        }
        self.failures += 1;
        let pause = match self.pause {
            None => {
                tracing::warn!(server, "accept failed: {e}; pausing accepts until resources free up");
                BACKOFF_FIRST
            }
            Some(p) => (p * 2).min(BACKOFF_MAX),
        };
        self.pause = Some(pause);
        Some(pause)
    }

    fn recovered(&mut self, server: &str) {
        if self.pause.take().is_some() {
            tracing::info!(server, failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

/// Raise the soft limit on open files to the hard limit: every connection
/// is a descriptor, and the usual soft default (1024) is far below what a
/// busy server needs. Returns the (old, new) soft limits.
/// `u64::MAX` stands for "unlimited".
pub fn raise_file_limit() -> io::Result<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let old = lim.current.unwrap_or(u64::MAX);
    let max = lim.maximum.unwrap_or(u64::MAX);
    if old < max {
        setrlimit(Resource::Nofile, Rlimit { current: lim.maximum, maximum: lim.maximum })?;
    }
    Ok((old, max.max(old)))
}

fn accept<S: Service>(tcp: TcpStream, peer: SocketAddr, service: &Arc<S>, spec: &ListenerSpec, shutdown: &Shutdown) {
    let _ = tcp.set_nodelay(true);
    let Some(guard) = spec.limits.try_acquire(peer.ip()) else {
        tracing::info!(server = %spec.name, %peer, "connection refused: over the connection limits");
        let busy = service.busy_reply();
        let implicit = spec.driver.implicit_tls;
        tokio::spawn(async move {
            let mut tcp = tcp;
            // A TLS client cannot read a plaintext reply; just close.
            if !implicit {
                let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(busy)).await;
            }
            let _ = tcp.shutdown().await;
        });
        return;
    };
    let conn = ConnInfo { peer, implicit_tls: spec.driver.implicit_tls };
    let session = service.session(&conn);
    let settings = spec.driver.clone();
    let signal = shutdown.signal();
    let live = shutdown.live_guard();
    tokio::spawn(async move {
        driver::run(Stream::Plain(tcp), session, settings, signal).await;
        drop(guard);
        drop(live);
    });
}

/// Local addresses actually bound (port 0 resolved), for logs and tests.
pub fn local_addrs(listeners: &[TcpListener]) -> io::Result<Vec<SocketAddr>> {
    listeners.iter().map(|l| l.local_addr()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ipv6_listeners_are_ipv6_only() {
        let l = listen("[::1]:0".parse().unwrap())
            .expect("this test needs an IPv6 loopback address (::1), and binding [::1]:0 failed");
        assert!(socket2::SockRef::from(&l).only_v6().unwrap());
        let v4 = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(v4.local_addr().unwrap().is_ipv4());
    }

    #[test]
    fn a_bind_error_names_the_server_and_the_address() {
        let e = BindError {
            server: "mx".into(),
            addr: "127.0.0.1:25".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(e.to_string(), "virtual server \"mx\": cannot listen on 127.0.0.1:25: address in use");
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_only_for_resources() {
        let mut b = Backoff::default();
        let aborted = io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error());
        assert_eq!(b.failed("t", &aborted), None, "one connection's error: no pause");
        let emfile = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let pauses: Vec<_> = (0..7).map(|_| b.failed("t", &emfile).unwrap().as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000]);
        b.recovered("t");
        assert_eq!(
            b.failed("t", &io::Error::from_raw_os_error(rustix::io::Errno::NFILE.raw_os_error())),
            Some(BACKOFF_FIRST)
        );
    }

    #[test]
    fn limits_count_per_ip() {
        let l = Limits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let g1 = l.try_acquire(a).unwrap();
        let _g2 = l.try_acquire(b).unwrap();
        assert!(l.try_acquire(a).is_none(), "mapped v6 counts as the same IP");
        let _g3 = l.try_acquire("10.0.0.2".parse().unwrap()).unwrap();
        assert!(l.try_acquire("10.0.0.3".parse().unwrap()).is_none(), "total");
        drop(g1);
        assert!(l.try_acquire("10.0.0.3".parse().unwrap()).is_some());
    }
}
