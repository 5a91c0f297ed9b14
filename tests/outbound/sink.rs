//! A small scriptable receiving SMTP server for outbound tests: real
//! listener on 127.0.0.1:0, real rustls. It can offer STARTTLS or not,
//! break the handshake, present any certificate, speak implicit TLS, refuse
//! EHLO, offer AUTH over TLS, answer chosen RCPTs with 4xx/5xx, and it
//! records what it received: commands (in the batches they arrived in),
//! messages with their envelope, and whether TLS carried them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Buf, BytesMut};
use postern::tls::Stream;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartTls {
    Offer,
    NotOffered,
    /// Say 220 Ready, then close the connection.
    CloseAfterReady,
    /// Say 220 Ready, then send bytes that are not TLS.
    GarbageAfterReady,
}

/// Sinks for tests that are not async themselves: they run on their own
/// runtime, kept for the test's life.
pub struct Sinks {
    rt: tokio::runtime::Runtime,
}

impl Sinks {
    pub fn new() -> Sinks {
        Sinks { rt: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap() }
    }
    pub fn start(&self, c: SinkConfig) -> Sink {
        self.rt.block_on(Sink::start(c))
    }
}

#[derive(Clone)]
pub struct SinkConfig {
    pub hostname: String,
    pub starttls: StartTls,
    pub implicit_tls: bool,
    pub pipelining: bool,
    /// Refuse EHLO with 502 (the client must fall back to HELO).
    pub ehlo: bool,
    /// Offer AUTH PLAIN LOGIN (only over TLS) and accept these credentials.
    pub auth: Option<(String, String)>,
    /// (address, reply line) for RCPTs to refuse.
    pub rcpt_replies: Vec<(String, String)>,
    pub greeting: String,
    /// After this many messages on one connection, say 421 and close it
    /// (as a server does when it ends an idle or long session).
    pub close_after: Option<usize>,
    /// Offer REQUIRETLS (RFC 8689) after STARTTLS; off by default.
    pub requiretls: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The certificate in PEM, to trust it with tls_ca_file.
    pub cert_pem: String,
}

impl SinkConfig {
    /// A server with a self-signed certificate for `names`.
    pub fn new(names: &[&str]) -> SinkConfig {
        let ck = rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("certificate");
        let cert = ck.cert.der().clone();
        let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
        let tls = rustls::ServerConfig::builder_with_provider(postern::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        SinkConfig {
            hostname: names.first().unwrap_or(&"sink.test").to_string(),
            starttls: StartTls::Offer,
            implicit_tls: false,
            pipelining: true,
            ehlo: true,
            auth: None,
            rcpt_replies: Vec::new(),
            greeting: String::new(),
            close_after: None,
            requiretls: false,
            tls: Some(Arc::new(tls)),
            cert_pem: ck.cert.pem(),
        }
    }

    pub fn starttls(mut self, s: StartTls) -> Self {
        self.starttls = s;
        self
    }
    pub fn pipelining(mut self, on: bool) -> Self {
        self.pipelining = on;
        self
    }
    pub fn no_ehlo(mut self) -> Self {
        self.ehlo = false;
        self
    }
    pub fn implicit_tls(mut self) -> Self {
        self.implicit_tls = true;
        self
    }
    pub fn auth(mut self, user: &str, pass: &str) -> Self {
        self.auth = Some((user.into(), pass.into()));
        self
    }
    pub fn rcpt_reply(mut self, address: &str, reply: &str) -> Self {
        self.rcpt_replies.push((address.to_ascii_lowercase(), reply.into()));
        self
    }
    pub fn close_after(mut self, messages: usize) -> Self {
        self.close_after = Some(messages);
        self
    }
    pub fn requiretls(mut self) -> Self {
        self.requiretls = true;
        self
    }
    pub fn greeting(mut self, line: &str) -> Self {
        self.greeting = line.into();
        self
    }
    /// Present `chain` (leaf first) with `key` instead of the self-signed
    /// certificate: e.g. one issued by a test CA (MTA-STS, DANE-TA).
    pub fn certificate(
        mut self,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        let tls = rustls::ServerConfig::builder_with_provider(postern::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        self.tls = Some(Arc::new(tls));
        self
    }
}

/// A message as the sink received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub conn: usize,
    /// The MAIL command's argument, parameters included.
    pub mail: String,
    pub rcpts: Vec<String>,
    /// Unstuffed, as a server stores it.
    pub body: Vec<u8>,
    /// The bytes between DATA's 354 and the final dot, as on the wire.
    pub wire: Vec<u8>,
    /// `TLSv1.3` etc., or None in plaintext.
    pub tls: Option<String>,
    pub auth_user: Option<String>,
}

#[derive(Debug, Default)]
pub struct SinkLog {
    pub connections: usize,
    pub messages: Vec<Received>,
    /// Every command, in the groups that were answered together.
    pub batches: Vec<Vec<String>>,
    pub auth_attempts: Vec<(String, bool)>,
}

pub struct Sink {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<SinkLog>>,
    pub config: SinkConfig,
}

impl Sink {
    pub async fn start(config: SinkConfig) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(SinkLog::default()));
        let (c, l) = (config.clone(), log.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let conn = {
                    let mut g = l.lock().unwrap();
                    g.connections += 1;
                    g.connections
                };
                let (c, l) = (c.clone(), l.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), serve(Stream::Plain(tcp), conn, c, l)).await;
                });
            }
        });
        Sink { addr, log, config }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn messages(&self) -> Vec<Received> {
        self.log.lock().unwrap().messages.clone()
    }
    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }
    pub fn batches(&self) -> Vec<Vec<String>> {
        self.log.lock().unwrap().batches.clone()
    }
}

struct Conn {
    stream: Stream,
    buf: BytesMut,
    out: Vec<u8>,
}

impl Conn {
    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }
    /// Read more; false at EOF or error.
    async fn fill(&mut self) -> bool {
        matches!(self.stream.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }
    fn line(&mut self) -> Option<String> {
        let pos = self.buf.windows(2).position(|w| w == b"\r\n")?;
        let l = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
        self.buf.advance(pos + 2);
        Some(l)
    }
    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(l) = self.line() {
                return Some(l);
            }
            if !self.fill().await {
                return None;
            }
        }
    }
}

async fn serve(stream: Stream, id: usize, cfg: SinkConfig, log: Arc<Mutex<SinkLog>>) {
    let mut c = Conn { stream, buf: BytesMut::new(), out: Vec::new() };
    let tls_config = cfg.tls.clone().expect("certificate");
    if cfg.implicit_tls && c.stream.accept_tls(tls_config.clone()).await.is_err() {
        return;
    }
    let greeting =
        if cfg.greeting.is_empty() { format!("220 {} ESMTP sink", cfg.hostname) } else { cfg.greeting.clone() };
    c.reply(&greeting);
    if c.flush().await.is_err() {
        return;
    }
    let mut mail: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut auth_user: Option<String> = None;
    let mut batch: Vec<String> = Vec::new();
    loop {
        let Some(line) = c.line() else {
            // nothing complete buffered: answer what was asked, then read
            if cfg.pipelining && batch.iter().any(|b| b.starts_with("MAIL")) && !batch.iter().any(|b| b == "DATA") {
                // give a pipelining client the chance to show its whole batch
                let _ = tokio::time::timeout(Duration::from_millis(300), c.fill()).await;
                if c.buf.windows(2).any(|w| w == b"\r\n") {
                    continue;
                }
            }
            if !batch.is_empty() {
                log.lock().unwrap().batches.push(std::mem::take(&mut batch));
            }
            if c.flush().await.is_err() || !c.fill().await {
                return;
            }
            continue;
        };
        batch.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let tls = c.stream.tls_info().map(|i| i.version);
        if upper.starts_with("EHLO") {
            if !cfg.ehlo {
                c.reply("502 5.5.2 EHLO not supported");
                continue;
            }
            let mut ext = vec![cfg.hostname.clone()];
            if cfg.pipelining {
                ext.push("PIPELINING".into());
            }
            ext.extend(["SIZE 1000000".into(), "8BITMIME".into(), "ENHANCEDSTATUSCODES".into(), "SMTPUTF8".into()]);
            if cfg.starttls != StartTls::NotOffered && tls.is_none() {
                ext.push("STARTTLS".into());
            }
            if cfg.requiretls && tls.is_some() {
                ext.push("REQUIRETLS".into());
            }
            if cfg.auth.is_some() && tls.is_some() {
                ext.push("AUTH PLAIN LOGIN".into());
            }
            let n = ext.len();
            for (i, e) in ext.iter().enumerate() {
                let sep = if i + 1 == n { ' ' } else { '-' };
                c.reply(&format!("250{sep}{e}"));
            }
        } else if upper.starts_with("HELO") {
            c.reply(&format!("250 {}", cfg.hostname));
        } else if upper == "STARTTLS" {
            c.reply("220 2.0.0 Ready to start TLS");
            log.lock().unwrap().batches.push(std::mem::take(&mut batch));
            if c.flush().await.is_err() {
                return;
            }
            match cfg.starttls {
                StartTls::CloseAfterReady => return,
                StartTls::GarbageAfterReady => {
                    let _ = c.stream.write_all(b"this is not TLS at all\r\n\r\n\r\n\r\n").await;
                    let _ = c.stream.flush().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
                _ => {}
            }
            c.buf.clear();
            if c.stream.accept_tls(tls_config.clone()).await.is_err() {
                return;
            }
            mail = None;
            rcpts.clear();
        } else if upper.starts_with("AUTH") {
            let Some((user, pass)) = cfg.auth.clone() else {
                c.reply("502 5.5.1 no AUTH here");
                continue;
            };
            let words: Vec<&str> = line.split(' ').collect();
            let (got_user, got_pass) = match words.get(1).map(|w| w.to_ascii_uppercase()).as_deref() {
                Some("PLAIN") => {
                    let ir = match words.get(2) {
                        Some(ir) => ir.to_string(),
                        None => {
                            c.reply("334 ");
                            let _ = c.flush().await;
                            c.read_line().await.unwrap_or_default()
                        }
                    };
                    let raw = B64.decode(ir).unwrap_or_default();
                    let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                    let s = |i: usize| String::from_utf8_lossy(parts.get(i).copied().unwrap_or_default()).into_owned();
                    (s(1), s(2))
                }
                Some("LOGIN") => {
                    c.reply("334 VXNlcm5hbWU6");
                    let _ = c.flush().await;
                    let u = c.read_line().await.unwrap_or_default();
                    c.reply("334 UGFzc3dvcmQ6");
                    let _ = c.flush().await;
                    let p = c.read_line().await.unwrap_or_default();
                    let d = |s: String| String::from_utf8_lossy(&B64.decode(s).unwrap_or_default()).into_owned();
                    (d(u), d(p))
                }
                _ => {
                    c.reply("504 5.5.4 unknown mechanism");
                    continue;
                }
            };
            log.lock().unwrap().auth_attempts.push((got_user.clone(), tls.is_some()));
            if got_user == user && got_pass == pass {
                auth_user = Some(got_user);
                c.reply("235 2.7.0 Authentication successful");
            } else {
                c.reply("535 5.7.8 Authentication credentials invalid");
            }
        } else if upper.starts_with("MAIL FROM:") {
            mail = Some(line[10..].to_string());
            rcpts.clear();
            c.reply("250 2.1.0 Ok");
        } else if upper.starts_with("RCPT TO:") {
            let addr = line[8..].trim_start_matches('<').split('>').next().unwrap_or_default().to_ascii_lowercase();
            if mail.is_none() {
                c.reply("503 5.5.1 need MAIL");
            } else if let Some((_, r)) = cfg.rcpt_replies.iter().find(|(a, _)| *a == addr) {
                c.reply(r);
            } else {
                rcpts.push(addr);
                c.reply("250 2.1.5 Ok");
            }
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                c.reply("554 5.5.1 No valid recipients");
                continue;
            }
            c.reply("354 End data with <CR><LF>.<CR><LF>");
            log.lock().unwrap().batches.push(std::mem::take(&mut batch));
            if c.flush().await.is_err() {
                return;
            }
            let mut wire = Vec::new();
            loop {
                if c.buf.starts_with(b".\r\n") {
                    c.buf.advance(3);
                    break;
                }
                if let Some(pos) = find(&c.buf, b"\r\n.\r\n") {
                    wire.extend_from_slice(&c.buf[..pos + 2]);
                    c.buf.advance(pos + 5);
                    break;
                }
                if !c.fill().await {
                    return;
                }
            }
            let body = unstuff(&wire);
            log.lock().unwrap().messages.push(Received {
                conn: id,
                mail: mail.take().unwrap_or_default(),
                rcpts: std::mem::take(&mut rcpts),
                body,
                wire,
                tls: tls.clone(),
                auth_user: auth_user.clone(),
            });
            let n = log.lock().unwrap().messages.len();
            c.reply(&format!("250 2.0.0 Ok: queued as SINK{n}"));
            let on_this = log.lock().unwrap().messages.iter().filter(|m| m.conn == id).count();
            if cfg.close_after.is_some_and(|max| on_this >= max) {
                let _ = c.flush().await;
                // a moment later, as a server's idle timer would
                tokio::time::sleep(Duration::from_millis(50)).await;
                c.reply("421 4.4.2 closing the connection");
                let _ = c.flush().await;
                return;
            }
        } else if upper == "RSET" {
            mail = None;
            rcpts.clear();
            c.reply("250 2.0.0 Ok");
        } else if upper == "NOOP" {
            c.reply("250 2.0.0 Ok");
        } else if upper == "QUIT" {
            c.reply("221 2.0.0 Bye");
            log.lock().unwrap().batches.push(std::mem::take(&mut batch));
            let _ = c.flush().await;
            return;
        } else {
            c.reply("500 5.5.2 unknown command");
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in wire.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}
