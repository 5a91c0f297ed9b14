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

use super::ShutdownSignal;
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
    IdleTimeout,
    Shutdown,
    TlsFailed(String),
    Io(String),
    InputOverflow,
    /// A command line or message body outlasted its deadline.
    TooSlow,
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::Closed => f.write_str("closed"),
            SessionEnd::PeerClosed => f.write_str("client disconnected"),
            SessionEnd::IdleTimeout => f.write_str("idle timeout"),
            SessionEnd::Shutdown => f.write_str("server shutdown"),
            SessionEnd::TlsFailed(e) => write!(f, "TLS handshake failed: {e}"),
            SessionEnd::Io(e) => write!(f, "I/O error: {e}"),
            SessionEnd::InputOverflow => f.write_str("input overflow"),
            SessionEnd::TooSlow => f.write_str("input too slow (record deadline)"),
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

    /// Write what [`Session::notified`] announced.
    fn on_notify(&mut self, _out: &mut Vec<u8>) -> Next {
        Next::Read
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
    let end = drive(&mut stream, &mut session, &settings, &mut shutdown).await;
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
    let idle = settings.idle_timeout;
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
        tokio::select! {
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
                Ok(Err(e)) => return SessionEnd::Io(e.to_string()),
                Ok(Ok(0)) => return SessionEnd::PeerClosed,
                Ok(Ok(n)) => record.get_or_insert_with(|| Record { start: Instant::now(), bytes: 0 }).bytes += n,
            },
            // Next::Continue: go straight back to the session (a shutdown still wins)
            _ = std::future::ready(()), if more => {}
            _ = session.notified(), if !more => {
                if session.on_notify(&mut out) == Next::Close {
                    let _ = write_all(stream, &mut out, idle).await;
                    return SessionEnd::Closed;
                }
                continue;
            }
        }
        more = false;
        let answered = out.len();
        let next = session.handle(&mut input, &mut out).await;
        if out.len() > answered {
            // the session answered: the record it was reading is complete
            record = None;
        }
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
