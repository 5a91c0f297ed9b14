//! The outgoing news feed: for every `[[news_peer]]` with `feed_to`, a task
//! that takes the peer's articles from the feed queue
//! ([`crate::news::feed::FeedQueue`]) and offers them over NNTP (streaming
//! with CHECK/TAKETHIS when the peer offers it, RFC 4644, else IHAVE,
//! RFC 3977 §6.3.2; STARTTLS per `feed_tls`, RFC 4642), retrying with
//! back-off.
//!
//! A task sleeps until the queue wakes it (an article was queued for its
//! peer) or its retry time comes, connects, reads the greeting (`200`/`201`)
//! and CAPABILITIES, upgrades to TLS when `feed_tls` asks for it (and gives
//! up until the next retry when `required` and the peer offers no
//! STARTTLS), then offers articles in batches of `window`: in streaming
//! mode every CHECK of a batch is pipelined, then every TAKETHIS the peer
//! asked for. An article is marked done (fsynced, never offered again) only
//! on a final answer — `239`/`439` to TAKETHIS, `438` to CHECK, `235`/`437`
//! to IHAVE after the body, `435` to IHAVE — or when the store no longer
//! has it (expired); "try later" (`431`, `436`) and a broken connection put
//! it back. One log line per batch: peer, offered, accepted, refused,
//! deferred. The connection stays open a while when the queue runs dry, so
//! a steady trickle of articles does not pay a connection each.

use crate::config::{FeedTls, NewsPeer};
use crate::news::feed::{FeedQueue, Queued};
use crate::news::NewsStore;
use crate::tls::Stream;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the feeder behaves; [`FeederSettings::default`] is what `serve` uses.
#[derive(Clone, Debug)]
pub struct FeederSettings {
    pub connect_timeout: Duration,
    /// Longest wait for one reply.
    pub reply_timeout: Duration,
    /// First retry delay after a failure or a "try later"; it doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How long an idle connection is kept for more articles.
    pub linger: Duration,
    /// Articles per batch (CHECKs pipelined at once).
    pub window: usize,
}

impl Default for FeederSettings {
    fn default() -> FeederSettings {
        FeederSettings {
            connect_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(120),
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            linger: Duration::from_secs(30),
            window: 32,
        }
    }
}

/// Why a feed session ended early; the articles of its batch went back to
/// the queue.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("news peer {peer}: cannot connect to {addr}: {source}")]
    Connect { peer: String, addr: String, source: io::Error },
    #[error("news peer {0}: the connection failed: {1}")]
    Io(String, #[source] io::Error),
    #[error("news peer {0}: no reply within the timeout ({1})")]
    Timeout(String, &'static str),
    #[error("news peer {0}: unexpected reply to {1}: {2:?}")]
    Reply(String, &'static str, String),
    #[error("news peer {0}: feed_tls = \"required\" but the peer does not offer STARTTLS")]
    NoStartTls(String),
    #[error("news peer {0}: the TLS handshake failed: {1}")]
    Tls(String, #[source] io::Error),
    #[error("news peer {0}: the news store failed: {1}")]
    Store(String, #[source] crate::news::NewsError),
}

/// The running feeder tasks.
pub struct Feeder {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Feeder {
    /// Stop every task: each ends after its current exchange (within
    /// `grace`, else it is aborted; whatever was in flight is offered again
    /// after the restart).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(grace, t).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Start one task per peer the queue feeds.
pub fn spawn(queue: Arc<FeedQueue>, store: Arc<NewsStore>, settings: FeederSettings) -> Feeder {
    let (stop, stopped) = watch::channel(false);
    let tls = client_config();
    let tasks = queue
        .peers()
        .iter()
        .map(|p| {
            let task = PeerTask {
                peer: p.clone(),
                queue: queue.clone(),
                store: store.clone(),
                settings: settings.clone(),
                tls: tls.clone(),
                stop: stopped.clone(),
            };
            tokio::spawn(task.run())
        })
        .collect();
    Feeder { stop, tasks }
}

struct PeerTask {
    peer: NewsPeer,
    queue: Arc<FeedQueue>,
    store: Arc<NewsStore>,
    settings: FeederSettings,
    tls: Option<Arc<ClientConfig>>,
    stop: watch::Receiver<bool>,
}

/// Counts for the batch log line.
#[derive(Default)]
struct Tally {
    offered: usize,
    accepted: usize,
    refused: usize,
    deferred: usize,
}

/// What one batch left to record.
#[derive(Default)]
struct BatchOutcome {
    done: Vec<String>,
    deferred: Vec<String>,
    tally: Tally,
}

type Conn = BufReader<Stream>;

impl PeerTask {
    /// Told to stop, or the [`Feeder`] is gone (so is whoever would stop us).
    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    async fn run(mut self) {
        let name = self.peer.name.clone();
        let Some(wake) = self.queue.notifier(&name) else { return };
        let mut failures: u32 = 0;
        loop {
            while self.queue.waiting(&name) == 0 {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = self.stop.changed() => {}
                }
                if self.stopping() {
                    return;
                }
            }
            let result = self.session(&wake).await;
            self.queue.release_all(&name);
            let later = match result {
                Ok(later) => later,
                Err(e) => {
                    tracing::warn!(peer = %name, "news feed: {e}");
                    true
                }
            };
            if self.stopping() {
                return;
            }
            if !later {
                failures = 0;
                continue;
            }
            failures = failures.saturating_add(1);
            let factor = 1u32 << failures.saturating_sub(1).min(16);
            let delay = self.settings.retry_min.saturating_mul(factor).min(self.settings.retry_max);
            tracing::info!(peer = %name, retry_in = ?delay, waiting = self.queue.waiting(&name), "news feed deferred");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.changed() => {}
            }
            if self.stopping() {
                return;
            }
        }
    }

    /// One connection: Ok(true) when the peer asked us to try later.
    async fn session(&mut self, wake: &tokio::sync::Notify) -> Result<bool, FeedError> {
        let name = self.peer.name.clone();
        let Some(addr) = self.peer.feed_addr.clone() else { return Ok(false) };
        let port = addr.port_or(119);
        let target = addr.to_string();
        let tcp = tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect((addr.host.as_str(), port)))
            .await
            .map_err(|_| FeedError::Timeout(name.clone(), "connect"))?
            .map_err(|source| FeedError::Connect { peer: name.clone(), addr: target.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let ip = tcp.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut conn: Conn = BufReader::new(Stream::Plain(tcp));

        let greeting = self.reply(&mut conn, "the greeting").await?;
        if !matches!(greeting.0, 200 | 201) {
            return Err(FeedError::Reply(name, "the greeting", greeting.1));
        }
        let mut caps = self.capabilities(&mut conn).await?;
        if self.peer.feed_tls != FeedTls::None {
            let offered = caps.as_ref().is_some_and(|c| c.iter().any(|l| l == "STARTTLS"));
            match (offered, &self.tls) {
                (true, Some(tls)) => {
                    self.send(&mut conn, b"STARTTLS\r\n").await?;
                    let r = self.reply(&mut conn, "STARTTLS").await?;
                    if r.0 != 382 {
                        if self.peer.feed_tls == FeedTls::Required {
                            return Err(FeedError::Reply(name, "STARTTLS", r.1));
                        }
                    } else {
                        conn.get_mut()
                            .connect_tls(tls.clone(), server_name(&addr.host, ip))
                            .await
                            .map_err(|e| FeedError::Tls(name.clone(), e))?;
                        // RFC 4642 §2.2.2: what was learnt before TLS is forgotten
                        caps = self.capabilities(&mut conn).await?;
                    }
                }
                _ if self.peer.feed_tls == FeedTls::Required => return Err(FeedError::NoStartTls(name)),
                _ => {}
            }
        }
        // a server without CAPABILITIES (500) may still stream
        let try_stream = caps.as_ref().is_none_or(|c| c.iter().any(|l| l == "STREAMING"));
        let mut streaming = false;
        if try_stream {
            self.send(&mut conn, b"MODE STREAM\r\n").await?;
            streaming = self.reply(&mut conn, "MODE STREAM").await?.0 == 203;
        }

        let mut later = false;
        loop {
            if self.stopping() {
                break;
            }
            let batch = self.queue.next(&name, self.settings.window.max(1));
            if batch.is_empty() {
                // keep the connection a while for the next articles
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(self.settings.linger) => break,
                    _ = self.stop.changed() => break,
                }
                continue;
            }
            let mut out = BatchOutcome::default();
            let result = if streaming {
                self.stream_batch(&mut conn, batch, &mut out).await
            } else {
                self.ihave_batch(&mut conn, batch, &mut out).await
            };
            // final answers are recorded even when the batch broke off
            let queue = self.queue.clone();
            let (peer, done) = (name.clone(), std::mem::take(&mut out.done));
            tokio::task::spawn_blocking(move || queue.done(&peer, &done))
                .await
                .map_err(|e| FeedError::Io(name.clone(), io::Error::other(e)))?
                .map_err(|e| FeedError::Store(name.clone(), e))?;
            self.queue.release(&name, &out.deferred);
            let t = &out.tally;
            tracing::info!(
                peer = %name,
                offered = t.offered,
                accepted = t.accepted,
                refused = t.refused,
                deferred = t.deferred,
                mode = if streaming { "streaming" } else { "ihave" },
                "news feed batch"
            );
            result?;
            if t.deferred > 0 {
                later = true;
                break;
            }
        }
        let _ = self.send(&mut conn, b"QUIT\r\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.get_mut().shutdown()).await;
        Ok(later)
    }

    /// The articles of a batch, read from the store; those it no longer has
    /// (expired) are done at once.
    async fn load(&self, batch: Vec<Queued>, out: &mut BatchOutcome) -> Result<Vec<(String, Vec<u8>)>, FeedError> {
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|q| store.article_by_id(&q.message_id).map(|a| (q.message_id, a)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| FeedError::Io(self.peer.name.clone(), io::Error::other(e)))?
        .map_err(|e| FeedError::Store(self.peer.name.clone(), e))?;
        let mut present = Vec::new();
        for (id, a) in loaded {
            match a {
                Some(a) => present.push((id, a)),
                None => out.done.push(id),
            }
        }
        Ok(present)
    }

    async fn stream_batch(&self, conn: &mut Conn, batch: Vec<Queued>, out: &mut BatchOutcome) -> Result<(), FeedError> {
        let name = &self.peer.name;
        let articles = self.load(batch, out).await?;
        out.tally.offered = articles.len();
        let mut checks = Vec::new();
        for (id, _) in &articles {
            checks.extend_from_slice(format!("CHECK {id}\r\n").as_bytes());
        }
        self.send(conn, &checks).await?;
        let mut wanted = Vec::new();
        let mut pending: Vec<String> = articles.iter().map(|(id, _)| id.clone()).collect();
        let result = async {
            for (id, art) in &articles {
                let (code, line) = self.reply(conn, "CHECK").await?;
                match code {
                    238 => wanted.push((id, art)),
                    438 => {
                        out.done.push(id.clone());
                        out.tally.refused += 1;
                    }
                    431 => {
                        out.deferred.push(id.clone());
                        out.tally.deferred += 1;
                    }
                    _ => return Err(FeedError::Reply(name.clone(), "CHECK", line)),
                }
                pending.retain(|p| p != id);
            }
            let mut takes = Vec::new();
            for (id, art) in &wanted {
                takes.extend_from_slice(format!("TAKETHIS {id}\r\n").as_bytes());
                dot_stuff(art, &mut takes);
            }
            self.send(conn, &takes).await?;
            for (id, _) in &wanted {
                let (code, line) = self.reply(conn, "TAKETHIS").await?;
                match code {
                    239 => out.tally.accepted += 1,
                    439 => out.tally.refused += 1,
                    _ => return Err(FeedError::Reply(name.clone(), "TAKETHIS", line)),
                }
                out.done.push((*id).clone());
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            // whatever had no final answer goes back
            out.deferred.extend(pending);
            out.deferred.extend(wanted.iter().map(|(id, _)| (*id).clone()).filter(|id| !out.done.contains(id)));
        }
        result
    }

    async fn ihave_batch(&self, conn: &mut Conn, batch: Vec<Queued>, out: &mut BatchOutcome) -> Result<(), FeedError> {
        let articles = self.load(batch, out).await?;
        out.tally.offered = articles.len();
        for (i, (id, art)) in articles.iter().enumerate() {
            let r = self.offer_one(conn, id, art, out).await;
            if let Err(e) = r {
                out.deferred.extend(articles[i..].iter().map(|(id, _)| id.clone()));
                return Err(e);
            }
            if out.tally.deferred > 0 {
                // the peer wants a pause: the rest waits too
                out.deferred.extend(articles[i + 1..].iter().map(|(id, _)| id.clone()));
                return Ok(());
            }
        }
        Ok(())
    }

    async fn offer_one(&self, conn: &mut Conn, id: &str, art: &[u8], out: &mut BatchOutcome) -> Result<(), FeedError> {
        let name = &self.peer.name;
        self.send(conn, format!("IHAVE {id}\r\n").as_bytes()).await?;
        let (code, line) = self.reply(conn, "IHAVE").await?;
        match code {
            335 => {}
            435 => {
                out.done.push(id.to_string());
                out.tally.refused += 1;
                return Ok(());
            }
            436 => {
                out.deferred.push(id.to_string());
                out.tally.deferred += 1;
                return Ok(());
            }
            _ => return Err(FeedError::Reply(name.clone(), "IHAVE", line)),
        }
        let mut body = Vec::with_capacity(art.len() + 64);
        dot_stuff(art, &mut body);
        self.send(conn, &body).await?;
        let (code, line) = self.reply(conn, "the IHAVE article").await?;
        match code {
            235 => out.tally.accepted += 1,
            437 => out.tally.refused += 1,
            436 => {
                out.deferred.push(id.to_string());
                out.tally.deferred += 1;
                return Ok(());
            }
            _ => return Err(FeedError::Reply(name.clone(), "the IHAVE article", line)),
        }
        out.done.push(id.to_string());
        Ok(())
    }

    /// CAPABILITIES: the capability labels (upper-cased, first word of each
    /// line), or `None` when the peer does not know the command.
    async fn capabilities(&self, conn: &mut Conn) -> Result<Option<Vec<String>>, FeedError> {
        self.send(conn, b"CAPABILITIES\r\n").await?;
        let (code, _) = self.reply(conn, "CAPABILITIES").await?;
        if code != 101 {
            return Ok(None);
        }
        let mut caps = Vec::new();
        loop {
            let line = self.line(conn, "CAPABILITIES").await?;
            if line == "." {
                return Ok(Some(caps));
            }
            if caps.len() < 256 {
                caps.push(line.split_ascii_whitespace().next().unwrap_or_default().to_ascii_uppercase());
            }
        }
    }

    async fn send(&self, conn: &mut Conn, bytes: &[u8]) -> Result<(), FeedError> {
        let s = conn.get_mut();
        let io = async {
            s.write_all(bytes).await?;
            s.flush().await
        };
        tokio::time::timeout(self.settings.reply_timeout, io)
            .await
            .map_err(|_| FeedError::Timeout(self.peer.name.clone(), "a write"))?
            .map_err(|e| FeedError::Io(self.peer.name.clone(), e))
    }

    /// One reply: its code (0 when the line has none) and the line.
    async fn reply(&self, conn: &mut Conn, stage: &'static str) -> Result<(u16, String), FeedError> {
        let line = self.line(conn, stage).await?;
        let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        Ok((code, line))
    }

    /// One line without its line end, at most 4 KB (the rest is dropped).
    async fn line(&self, conn: &mut Conn, stage: &'static str) -> Result<String, FeedError> {
        const MAX: usize = 4096;
        let name = &self.peer.name;
        let read = async {
            let mut buf = Vec::new();
            loop {
                let chunk = conn.fill_buf().await?;
                if chunk.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection"));
                }
                let (used, end) = match memchr::memchr(b'\n', chunk) {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                let room = MAX.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..used.min(room)]);
                conn.consume(used);
                if end {
                    return Ok(buf);
                }
            }
        };
        let buf = tokio::time::timeout(self.settings.reply_timeout, read)
            .await
            .map_err(|_| FeedError::Timeout(name.clone(), stage))?
            .map_err(|e| FeedError::Io(name.clone(), e))?;
        let text = String::from_utf8_lossy(&buf);
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// `article` as a dot-terminated block: every line ending CRLF, a leading
/// `.` doubled (RFC 3977 §3.1.1), then `.` CRLF.
fn dot_stuff(article: &[u8], out: &mut Vec<u8>) {
    let mut rest = article;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
}

/// The name to present (SNI): the host, or the address for an IP literal
/// or a name rustls does not take.
fn server_name(host: &str, ip: IpAddr) -> ServerName<'static> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_string()).unwrap_or(ServerName::IpAddress(ip.into()))
}

/// The client configuration for feed STARTTLS: any certificate, as for
/// opportunistic SMTP (RFC 7435: an encrypted channel beats none); news
/// peers are configured by hand and `feed_tls` has no `verify`. `None`
/// (logged) if rustls refuses to build it: feeds then go without TLS where
/// allowed.
fn client_config() -> Option<Arc<ClientConfig>> {
    crate::tls::client::accept_any_config()
        .map_err(|e| tracing::error!("news feed: cannot build the TLS client configuration: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::dot_stuff;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_with_crlf() {
        let mut out = Vec::new();
        dot_stuff(b"A: b\r\n\r\n.x\r\n..\nlast", &mut out);
        assert_eq!(out, b"A: b\r\n\r\n..x\r\n...\r\nlast\r\n.\r\n");
    }
}
