//! The one driver that runs any protocol session over a socket.
//!
//! It reads, hands bytes to the session, writes what the session answered,
//! and does the four things every protocol needs the same way: the idle
//! timeout, graceful shutdown, implicit TLS, and the in-place upgrade for
//! STARTTLS/STLS — where it flushes the `Ready` reply, **discards every byte
//! the client sent after the command** (CVE-2011-0411: nothing pipelined
//! before the handshake may be executed), runs the handshake, and lets the
//! session start over.
//!
//! Two clocks bound a client's input:
//! - **Idle**: a read waits at most `idle_timeout` for the next byte (and a
//!   write at most as long for the client to take our replies).
//! - **Per record**, after Postfix's `smtpd_per_record_deadline` and
//!   `smtpd_min_data_rate`: a *record* is what the client sends between two
//!   of our replies — a command line, a DATA body, an IMAP literal, an
//!   overlong line being discarded. It starts with its first byte and ends
//!   when the session answers. It must be complete within `idle_timeout`
//!   from its first byte, plus one second per [`MIN_RATE`] bytes it has
//!   brought so far. Otherwise a client sending a byte a second would reset
//!   the idle clock forever (slowloris); now it is cut off after about one
//!   `idle_timeout`, while a body arriving at 500 B/s or faster is never
//!   cut off. The driver sees both from outside the session (bytes read,
//!   replies written), so every protocol has them. On either expiry the
//!   session writes its idle-timeout reply (SMTP `421 4.4.2`) and the
//!   connection is closed.
//!
//! `idle_timeout` is the listener's unless the session says otherwise for
//! its current state ([`Session::idle_timeout`], asked before every wait):
//! IMAP keeps authenticated and IDLE sessions 30 minutes (SPEC §9). The same
//! bound applies to the session itself: a `handle` that has not finished
//! within it (a stuck store, a slow lookup) ends the connection with the
//! idle-timeout reply, and a shutdown does not wait for it. What
//! [`Session::on_notify`] returns is acted on exactly like what `handle`
//! returns, so a notification may close, continue or upgrade.

use super::ShutdownSignal;
use crate::metrics::SessionMetrics;
use crate::tls::{Stream, TlsInfo};
use bytes::BytesMut;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// More unconsumed input than this means the session is not keeping its
/// own limits; the connection is dropped rather than the memory grown.
const MAX_UNCONSUMED: usize = 1 << 20;
const READ_CHUNK: usize = 16 * 1024;
/// How long a session's `handle` may go on finishing its work once a
/// shutdown has begun (the server waits 30 s for all sessions).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The slowest input a record may arrive at (bytes per second) and still
/// earn time beyond `idle_timeout`: Postfix's `smtpd_min_data_rate`.
pub const MIN_RATE: u32 = 500;

/// The record the client is in the middle of sending: since when, how much.
struct Record {
    start: Instant,
    bytes: usize,
}

impl Record {
    fn deadline(&self, idle: Duration) -> Instant {
        let earned = Duration::from_secs(self.bytes as u64) / MIN_RATE;
        self.start + idle + earned
    }
}

/// What the driver should do after a session has handled its input.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Flush the replies and read more.
    Read,
    /// Flush the replies, then call `handle` again before reading: the
    /// session stopped early to keep its output bounded (a client that
    /// pipelined many RETRs or FETCHes) and has complete input left.
    Continue,
    /// Flush the replies, discard buffered input, upgrade to TLS.
    StartTls,
    /// Flush the replies and close.
    Close,
}

/// How a session ended, for its log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The session asked to close (QUIT, too many errors, ...).
    Closed,
    PeerClosed,
    /// The client closed the TCP connection without TLS close_notify.
    PeerClosedWithoutTlsClose,
    IdleTimeout,
    Shutdown,
    TlsFailed(String),
    Io(String),
    InputOverflow,
    /// A command line or message body outlasted its deadline.
    TooSlow,
    /// The session itself took longer than the idle timeout to answer.
    Stalled,
}

impl SessionEnd {
    /// A failed read, in one plain sentence: a client that drops the
    /// connection without ending TLS first (no close_notify) simply
    /// disconnected, as far as an operator is concerned (rustls's own
    /// message is a manual link).
    pub fn from_read_error(e: &std::io::Error) -> SessionEnd {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => SessionEnd::PeerClosedWithoutTlsClose,
            std::io::ErrorKind::ConnectionReset => SessionEnd::PeerClosed,
            _ => SessionEnd::Io(e.to_string()),
        }
    }
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::Closed => f.write_str("closed"),
            SessionEnd::PeerClosed => f.write_str("client disconnected"),
            SessionEnd::PeerClosedWithoutTlsClose => f.write_str("client disconnected without ending TLS"),
            SessionEnd::IdleTimeout => f.write_str("idle timeout"),
            SessionEnd::Shutdown => f.write_str("server shutdown"),
            SessionEnd::TlsFailed(e) => write!(f, "TLS handshake failed: {e}"),
            SessionEnd::Io(e) => write!(f, "I/O error: {e}"),
            SessionEnd::InputOverflow => f.write_str("input overflow"),
            SessionEnd::TooSlow => f.write_str("input too slow (record deadline)"),
            SessionEnd::Stalled => f.write_str("the server took too long to answer"),
        }
    }
}

/// One protocol session, as the driver sees it. Implementations wrap a
/// sans-IO core and whatever policy it needs; they never see the socket.
pub trait Session: Send + 'static {
    /// The first bytes sent (the banner), after implicit TLS if any.
    fn greeting(&mut self, out: &mut Vec<u8>);

    /// Handle everything complete in `input` (leaving any partial tail),
    /// appending replies to `out`.
    fn handle(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> impl Future<Output = Next> + Send;

    /// TLS is up (implicit at connect, or after [`Next::StartTls`]).
    fn tls_started(&mut self, info: &TlsInfo);

    /// The client was idle too long; write the goodbye.
    fn timed_out(&mut self, out: &mut Vec<u8>);

    /// The server is shutting down; write the goodbye.
    fn shutting_down(&mut self, out: &mut Vec<u8>);

    /// Resolves when something outside the connection has news for the
    /// client (IMAP IDLE). Never, by default.
    fn notified(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Write what [`Session::notified`] announced; what it returns is acted
    /// on like the result of [`Session::handle`].
    fn on_notify(&mut self, _out: &mut Vec<u8>) -> Next {
        Next::Read
    }

    /// The idle timeout for the state the session is in now, when it is not
    /// the listener's (IMAP: 30 minutes once authenticated, SPEC §9).
    /// Asked before every wait; `None` keeps the listener's.
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }

    /// The connection is over; log it.
    fn finished(&mut self, end: &SessionEnd);
}

/// What the driver needs to know about the listener a session came from.
#[derive(Clone)]
pub struct DriverSettings {
    pub idle_timeout: Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub implicit_tls: bool,
    /// The listener's session counters (open now; ended, by TLS version).
    pub sessions: SessionMetrics,
}

async fn write_all(stream: &mut Stream, out: &mut Vec<u8>, limit: Duration) -> Result<(), SessionEnd> {
    if out.is_empty() {
        return Ok(());
    }
    let r = tokio::time::timeout(limit, async {
        stream.write_all(out).await?;
        stream.flush().await
    })
    .await;
    out.clear();
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(SessionEnd::Io(e.to_string())),
        Err(_) => Err(SessionEnd::IdleTimeout),
    }
}

async fn handshake(stream: &mut Stream, settings: &DriverSettings) -> Result<TlsInfo, SessionEnd> {
    let Some(config) = settings.tls.clone() else {
        return Err(SessionEnd::TlsFailed("no TLS configuration".into()));
    };
    match tokio::time::timeout(settings.idle_timeout, stream.accept_tls(config)).await {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(e)) => Err(SessionEnd::TlsFailed(e.to_string())),
        Err(_) => Err(SessionEnd::TlsFailed("timed out".into())),
    }
}

/// Run `session` over `stream` until either side ends it.
pub async fn run<S: Session>(
    mut stream: Stream,
    mut session: S,
    settings: DriverSettings,
    mut shutdown: ShutdownSignal,
) {
    let open = settings.sessions.opened();
    let end = drive(&mut stream, &mut session, &settings, &mut shutdown).await;
    open.ended(stream.tls_info().as_ref().map(|t| t.version.as_str()));
    // TLS ends with close_notify; a plain socket's close sends the FIN itself
    if stream.is_tls() && end != SessionEnd::PeerClosed {
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await;
    }
    drop(stream);
    session.finished(&end);
}

async fn drive<S: Session>(
    stream: &mut Stream,
    session: &mut S,
    settings: &DriverSettings,
    shutdown: &mut ShutdownSignal,
) -> SessionEnd {
    let mut out = Vec::with_capacity(1024);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    if settings.implicit_tls {
        match handshake(stream, settings).await {
            Ok(info) => session.tls_started(&info),
            Err(end) => return end,
        }
    }
    session.greeting(&mut out);
    let mut more = false;
    let mut record: Option<Record> = None;
    loop {
        // asked anew each time: the session's state decides (SPEC §9)
        let idle = session.idle_timeout().unwrap_or(settings.idle_timeout);
        if let Err(end) = write_all(stream, &mut out, idle).await {
            return end;
        }
        // a partial line left behind a reply is the start of the next record
        if record.is_none() && !input.is_empty() {
            record = Some(Record { start: Instant::now(), bytes: input.len() });
        }
        let idle_deadline = Instant::now() + idle;
        let record_deadline = record.as_ref().map(|r| r.deadline(idle)).filter(|d| *d < idle_deadline);
        input.reserve(READ_CHUNK);
        let notified = tokio::select! {
            biased;
            _ = shutdown.triggered() => {
                session.shutting_down(&mut out);
                let _ = write_all(stream, &mut out, idle).await;
                return SessionEnd::Shutdown;
            }
            r = tokio::time::timeout_at(record_deadline.unwrap_or(idle_deadline), stream.read_buf(&mut input)), if !more => match r {
                Err(_) => {
                    session.timed_out(&mut out);
                    let _ = write_all(stream, &mut out, idle).await;
                    return if record_deadline.is_some() { SessionEnd::TooSlow } else { SessionEnd::IdleTimeout };
                }
                Ok(Err(e)) => return SessionEnd::from_read_error(&e),
                Ok(Ok(0)) => return SessionEnd::PeerClosed,
                Ok(Ok(n)) => {
                    record.get_or_insert_with(|| Record { start: Instant::now(), bytes: 0 }).bytes += n;
                    None
                }
            },
            // Next::Continue: go straight back to the session (a shutdown still wins)
            _ = std::future::ready(()), if more => None,
            _ = session.notified(), if !more => Some(session.on_notify(&mut out)),
        };
        more = false;
        let next = match notified {
            // news the client did not ask for: it answers no record of theirs
            Some(next) => next,
            None => {
                let answered = out.len();
                // bounded like the client: a stuck session neither holds the
                // connection forever nor delays a shutdown. Work under way
                // (a message being made durable) gets SHUTDOWN_GRACE to finish
                // and answer, so a shutdown does not turn an accepted message
                // into a client's retry and a second copy.
                let handled = {
                    let work = tokio::time::timeout(idle, session.handle(&mut input, &mut out));
                    tokio::pin!(work);
                    tokio::select! {
                        biased;
                        r = &mut work => Some(r),
                        _ = shutdown.triggered() => tokio::time::timeout(SHUTDOWN_GRACE, work).await.ok(),
                    }
                };
                match handled {
                    None => {
                        session.shutting_down(&mut out);
                        let _ = write_all(stream, &mut out, idle).await;
                        return SessionEnd::Shutdown;
                    }
                    Some(Err(_)) => {
                        session.timed_out(&mut out);
                        let _ = write_all(stream, &mut out, idle).await;
                        return SessionEnd::Stalled;
                    }
                    Some(Ok(next)) => {
                        if out.len() > answered {
                            // the session answered: the record it was reading is complete
                            record = None;
                        }
                        next
                    }
                }
            }
        };
        match next {
            Next::Read => {
                if input.len() > MAX_UNCONSUMED {
                    return SessionEnd::InputOverflow;
                }
            }
            Next::Continue => more = true,
            Next::StartTls => {
                if let Err(end) = write_all(stream, &mut out, idle).await {
                    return end;
                }
                // CVE-2011-0411: what was pipelined after the command is dropped unread.
                input.clear();
                record = None;
                match handshake(stream, settings).await {
                    Ok(info) => session.tls_started(&info),
                    Err(end) => return end,
                }
            }
            Next::Close => {
                let _ = write_all(stream, &mut out, idle).await;
                return SessionEnd::Closed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! A line session over a real loopback socket pair: `LONG` switches to a
    //! long idle timeout, `SLOW` never finishes handling, anything else is
    //! echoed; a notification asks to be handled like input (`Continue`).
    use super::*;
    use crate::net::Shutdown;

    #[test]
    fn a_tls_client_leaving_without_close_notify_is_said_plainly() {
        let eof = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/",
        );
        let end = SessionEnd::from_read_error(&eof);
        assert_eq!(end.to_string(), "client disconnected without ending TLS");
        let other = std::io::Error::other("disk on fire");
        assert_eq!(SessionEnd::from_read_error(&other).to_string(), "I/O error: disk on fire");
    }
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    /// Far beyond anything a slow machine needs; a hang fails, not blocks.
    const GENEROUS: Duration = Duration::from_secs(20);

    struct LineSession {
        long: bool,
        news: mpsc::UnboundedReceiver<()>,
        pending_news: bool,
        ended: mpsc::UnboundedSender<SessionEnd>,
    }

    impl Session for LineSession {
        fn greeting(&mut self, out: &mut Vec<u8>) {
            out.extend_from_slice(b"HELLO\r\n");
        }

        async fn handle(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Next {
            if std::mem::take(&mut self.pending_news) {
                out.extend_from_slice(b"NEWS HANDLED\r\n");
            }
            while let Some(end) = input.iter().position(|&b| b == b'\n') {
                let line = input.split_to(end + 1);
                match line.trim_ascii() {
                    b"LONG" => self.long = true,
                    b"SLOW" => std::future::pending::<()>().await,
                    b"COMMIT" => tokio::time::sleep(Duration::from_secs(1)).await,
                    _ => {}
                }
                out.extend_from_slice(b"OK ");
                out.extend_from_slice(&line);
            }
            Next::Read
        }

        fn tls_started(&mut self, _info: &TlsInfo) {}

        fn timed_out(&mut self, out: &mut Vec<u8>) {
            out.extend_from_slice(b"TIMEOUT\r\n");
        }

        fn shutting_down(&mut self, out: &mut Vec<u8>) {
            out.extend_from_slice(b"BYE\r\n");
        }

        async fn notified(&mut self) {
            if self.news.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }

        fn on_notify(&mut self, out: &mut Vec<u8>) -> Next {
            out.extend_from_slice(b"NEWS\r\n");
            self.pending_news = true;
            Next::Continue
        }

        fn idle_timeout(&self) -> Option<Duration> {
            self.long.then_some(GENEROUS)
        }

        fn finished(&mut self, end: &SessionEnd) {
            let _ = self.ended.send(end.clone());
        }
    }

    struct Harness {
        client: BufReader<TcpStream>,
        news: mpsc::UnboundedSender<()>,
        ended: mpsc::UnboundedReceiver<SessionEnd>,
        shutdown: Shutdown,
    }

    impl Harness {
        async fn start(idle: Duration) -> Harness {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let (news_tx, news) = mpsc::unbounded_channel();
            let (ended_tx, ended) = mpsc::unbounded_channel();
            let shutdown = Shutdown::new();
            let session = LineSession { long: false, news, pending_news: false, ended: ended_tx };
            let settings =
                DriverSettings { idle_timeout: idle, tls: None, implicit_tls: false, sessions: Default::default() };
            tokio::spawn(run(Stream::Plain(server), session, settings, shutdown.signal()));
            let mut h = Harness { client: BufReader::new(client), news: news_tx, ended, shutdown };
            assert_eq!(h.line().await, "HELLO");
            h
        }

        async fn line(&mut self) -> String {
            let mut l = String::new();
            tokio::time::timeout(GENEROUS, self.client.read_line(&mut l)).await.expect("the server answers").unwrap();
            l.trim_end().to_string()
        }

        async fn send(&mut self, s: &str) {
            self.client.get_mut().write_all(s.as_bytes()).await.unwrap();
        }

        async fn end(&mut self) -> SessionEnd {
            tokio::time::timeout(GENEROUS, self.ended.recv()).await.expect("the session ends").unwrap()
        }
    }

    #[tokio::test]
    async fn the_session_sets_the_idle_timeout_of_its_state() {
        let short = Duration::from_millis(300);
        let mut h = Harness::start(short).await;
        h.send("LONG\r\n").await;
        assert_eq!(h.line().await, "OK LONG");
        // several listener timeouts pass: the session's own keeps it open
        tokio::time::sleep(short * 5).await;
        h.send("PING\r\n").await;
        assert_eq!(h.line().await, "OK PING");

        // a session that says nothing keeps the listener's
        let mut h = Harness::start(short).await;
        assert_eq!(h.line().await, "TIMEOUT");
        assert_eq!(h.end().await, SessionEnd::IdleTimeout);
    }

    #[tokio::test]
    async fn a_notification_result_is_acted_on_like_input() {
        let mut h = Harness::start(GENEROUS).await;
        h.news.send(()).unwrap();
        assert_eq!(h.line().await, "NEWS");
        // Next::Continue from on_notify: handle runs without new input
        assert_eq!(h.line().await, "NEWS HANDLED");
        h.send("PING\r\n").await;
        assert_eq!(h.line().await, "OK PING");
    }

    #[tokio::test]
    async fn a_stuck_handle_is_bounded_by_the_idle_timeout() {
        let mut h = Harness::start(Duration::from_millis(300)).await;
        h.send("SLOW\r\n").await;
        assert_eq!(h.line().await, "TIMEOUT");
        assert_eq!(h.end().await, SessionEnd::Stalled);
    }

    #[tokio::test]
    async fn a_stuck_handle_does_not_delay_shutdown() {
        let mut h = Harness::start(GENEROUS * 3).await;
        h.send("SLOW\r\n").await;
        // let the session get into its handle before shutting down
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.shutdown.trigger_and_wait(Duration::ZERO).await;
        assert_eq!(h.line().await, "BYE");
        assert_eq!(h.end().await, SessionEnd::Shutdown);
    }

    #[tokio::test]
    async fn work_under_way_at_shutdown_finishes_and_answers_first() {
        let mut h = Harness::start(GENEROUS).await;
        h.send("COMMIT\r\n").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.shutdown.trigger_and_wait(Duration::ZERO).await;
        // the commit's answer reaches the client before the goodbye
        assert_eq!(h.line().await, "OK COMMIT");
        assert_eq!(h.line().await, "BYE");
        assert_eq!(h.end().await, SessionEnd::Shutdown);
    }
}
