//! Shared test harness: runs the real `postern` binary in a temporary
//! directory on 127.0.0.1 port 0, learns its ports from the `listening on`
//! lines, and offers a raw SMTP client over plaintext or real rustls TLS.
//! Every wait is bounded.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_postern");

/// A UDP port on 127.0.0.1 that this test process bound and never answers:
/// the test servers' DNS, so no lookup ever leaves the machine (they time
/// out, which is a temporary failure).
pub fn silent_dns_port() -> u16 {
    static SOCK: std::sync::OnceLock<std::net::UdpSocket> = std::sync::OnceLock::new();
    SOCK.get_or_init(|| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp")).local_addr().unwrap().port()
}

/// A base configuration: an MX on port 0 with STARTTLS and a self-signed
/// certificate made at first start; DNS goes to [`silent_dns_port`]. `extra` is appended (more virtual
/// servers, connectors, sections); `mx_extra` goes inside the MX table.
pub fn config(mx_extra: &str, extra: &str) -> String {
    format!(
        r#"[server]
hostname = "mx.example.test"
data_dir = "data"
local_domains = ["example.test"]
relay_domains = ["relayed.test"]

[tls.certificates.main]
cert = "data/tls/main.crt"
key = "data/tls/main.key"
self_signed_if_missing = true

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:0"]
tls = "starttls"
certificates = ["main"]
{mx_extra}

[[connector]]
name = "internet"
address_spaces = ["*"]

[log]
level = "debug"

[dns]
nameservers = ["127.0.0.1:{dns}"]
timeout = "1s"

{extra}
"#,
        dns = silent_dns_port()
    )
}

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Option<Child>,
    pub addrs: HashMap<String, SocketAddr>,
    starts: usize,
    /// A command the server is started under (e.g. `prlimit --nofile=64:64 --`),
    /// which must exec it, so that the child's pid is the server's.
    wrapper: Vec<String>,
}

impl TestServer {
    /// Write `config` and start the server.
    pub fn start(config: &str) -> TestServer {
        TestServer::start_under(config, &[])
    }

    /// Start the server under `wrapper` (a command that execs its arguments).
    pub fn start_under(config: &str, wrapper: &[&str]) -> TestServer {
        TestServer::start_prepared(config, wrapper, |_| {})
    }

    /// Start the server under `wrapper` once `prepare` has seen its
    /// directory (e.g. opened it to an unprivileged server user).
    pub fn start_prepared(config: &str, wrapper: &[&str], prepare: impl FnOnce(&Path)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let config_path = dir.path().join("postern.toml");
        std::fs::write(&config_path, config).expect("write config");
        let wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        let mut s = TestServer { dir, config_path, child: None, addrs: HashMap::new(), starts: 0, wrapper };
        s.spawn();
        s
    }

    /// The server's process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("server-{}.log", self.starts))).expect("log file");
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .args(["--config", self.config_path.to_str().unwrap(), "serve"])
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn postern");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        self.addrs.clear();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == "postern: ready" => break,
                Ok(line) => {
                    // "postern: NAME (proto, tls) listening on ADDR"
                    if let Some((head, addr)) = line.split_once(" listening on ") {
                        let name = head.trim_start_matches("postern: ").split(' ').next().unwrap().to_string();
                        self.addrs.entry(name).or_insert(addr.parse().expect("addr"));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("server did not become ready; log:\n{}", self.log());
                }
            }
        }
        self.child = Some(child);
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        *self.addrs.get(name).unwrap_or_else(|| panic!("no listener {name}: {:?}", self.addrs))
    }

    /// All log output so far, over every start.
    pub fn log(&self) -> String {
        let mut all = String::new();
        for i in 1..=self.starts {
            all.push_str(&std::fs::read_to_string(self.dir.path().join(format!("server-{i}.log"))).unwrap_or_default());
        }
        all
    }

    /// SIGKILL: no goodbye, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            unsafe_kill(c.id(), sig);
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    /// Run a CLI command against this server's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_in(self.dir.path(), &self.config_path, args, None)
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        cli_in(self.dir.path(), &self.config_path, args, Some(stdin))
    }

    /// `queue list --json`, parsed.
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["queue", "list", "--json"]);
        assert!(out.status.success(), "queue list failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
    }

    pub fn add_user(&self, email: &str, password: &str) {
        let out = self.cli_stdin(&["user", "add", email, "--password-stdin"], &format!("{password}\n"));
        assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    }
}

pub fn cli_in(dir: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args).current_dir(dir);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cli");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    wait_output(child, Duration::from_secs(60))
}

/// Wait for `child` at most `limit`, reading its output as it comes (a
/// command that writes more than a pipe holds would otherwise never end).
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            return Output { status, stdout, stderr };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------- TLS

/// Accepts any server certificate (our servers use self-signed ones) and
/// remembers nothing; tests read the chain from the connection.
#[derive(Debug)]
pub struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn client_tls(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

pub fn client_tls_default() -> Arc<rustls::ClientConfig> {
    client_tls(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Run a TLS handshake on `tcp` towards `sni`, fully, so errors show here.
pub fn tls_connect(tcp: TcpStream, cfg: Arc<rustls::ClientConfig>, sni: &str) -> Result<TlsStream, std::io::Error> {
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// SHA-256 of the leaf certificate the server presented, hex.
pub fn peer_fingerprint(s: &TlsStream) -> String {
    let leaf = &s.conn.peer_certificates().expect("peer certs")[0];
    let d = ring_digest(leaf.as_ref());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn ring_digest(b: &[u8]) -> Vec<u8> {
    // SHA-256 itself: the first TLS 1.3 suite's hash (used here before) is SHA-384
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().to_vec()
}

/// DNS names in the leaf certificate the server presented.
pub fn peer_names(s: &TlsStream) -> Vec<String> {
    let leaf = &s.conn.peer_certificates().expect("peer certs")[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).expect("x509");
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                out.push(d.to_string());
            }
        }
    }
    out
}

// ---------------------------------------------------------------- SMTP

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    Gone,
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(b),
            Conn::Tls(s) => s.read(b),
            Conn::Gone => Ok(0),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(b),
            Conn::Tls(s) => s.write(b),
            Conn::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Gone => Ok(()),
        }
    }
}

/// A deliberately simple line client: send exactly what a test says, read
/// replies, and upgrade to TLS when told.
pub struct Client {
    conn: Conn,
    buf: Vec<u8>,
}

/// One SMTP reply: the code and its lines' texts.
#[derive(Debug, Clone)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
    pub fn has(&self, s: &str) -> bool {
        self.lines.iter().any(|l| l.contains(s))
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        Client { conn: Conn::Plain(tcp), buf: Vec::new() }
    }

    /// Connect with implicit TLS.
    pub fn connect_tls(addr: SocketAddr, sni: &str) -> Client {
        let mut c = Client::connect(addr);
        c.start_tls_with(client_tls_default(), sni).expect("implicit TLS handshake");
        c
    }

    pub fn send(&mut self, data: &str) {
        self.send_bytes(data.as_bytes());
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        self.conn.write_all(data).expect("send");
        self.conn.flush().expect("flush");
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut b = [0u8; 16384];
        let n = self.conn.read(&mut b)?;
        self.buf.extend_from_slice(&b[..n]);
        Ok(n)
    }

    /// Read one complete (possibly multi-line) reply.
    pub fn reply(&mut self) -> SmtpReply {
        self.try_reply().expect("reply")
    }

    pub fn try_reply(&mut self) -> Result<SmtpReply, String> {
        let mut lines = Vec::new();
        loop {
            let pos = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                match self.fill() {
                    Ok(0) => {
                        return Err(format!("connection closed; partial {:?}", String::from_utf8_lossy(&self.buf)))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            };
            let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
            let line = String::from_utf8_lossy(&line[..pos]).into_owned();
            if line.len() < 4 {
                return Err(format!("short reply line {line:?}"));
            }
            let code: u16 = line[..3].parse().map_err(|_| format!("bad reply line {line:?}"))?;
            let last = line.as_bytes()[3] == b' ';
            lines.push(line[4..].to_string());
            if last {
                return Ok(SmtpReply { code, lines });
            }
        }
    }

    /// Send a command line and read its reply.
    pub fn cmd(&mut self, line: &str) -> SmtpReply {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    pub fn expect(&mut self, line: &str, code: u16) -> SmtpReply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line} -> {r:?}");
        r
    }

    /// Whether more bytes arrive within `wait` (without consuming replies).
    pub fn has_pending(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let Conn::Plain(s) = &self.conn else { return false };
        let s = s.try_clone().expect("clone");
        s.set_read_timeout(Some(wait)).unwrap();
        let r = self.fill();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        matches!(r, Ok(n) if n > 0)
    }

    pub fn start_tls_with(&mut self, cfg: Arc<rustls::ClientConfig>, sni: &str) -> Result<(), std::io::Error> {
        assert!(self.buf.is_empty(), "unread bytes before TLS: {:?}", String::from_utf8_lossy(&self.buf));
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else { panic!("not plaintext") };
        let s = tls_connect(tcp, cfg, sni)?;
        self.conn = Conn::Tls(Box::new(s));
        Ok(())
    }

    /// EHLO, STARTTLS, handshake, EHLO again; returns the second EHLO reply.
    pub fn starttls(&mut self) -> SmtpReply {
        self.expect("EHLO client.test", 250);
        self.expect("STARTTLS", 220);
        self.start_tls_with(client_tls_default(), "mx.example.test").expect("handshake");
        self.expect("EHLO client.test", 250)
    }

    pub fn tls(&self) -> Option<&TlsStream> {
        match &self.conn {
            Conn::Tls(s) => Some(s),
            _ => None,
        }
    }

    /// A whole transaction; returns the final reply to the data.
    pub fn send_mail(&mut self, from: &str, to: &[&str], data: &str) -> SmtpReply {
        self.expect(&format!("MAIL FROM:<{from}>"), 250);
        for t in to {
            self.expect(&format!("RCPT TO:<{t}>"), 250);
        }
        self.expect("DATA", 354);
        self.send(data);
        self.send(".\r\n");
        self.reply()
    }

    /// Whether the server has closed the connection (reads EOF within `wait`).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        if let Conn::Plain(s) = &self.conn {
            s.set_read_timeout(Some(wait)).unwrap();
        }
        matches!(self.fill(), Ok(0) | Err(_))
    }
}

/// The queue id in a `250 2.0.0 Ok: queued as ID` reply.
pub fn queued_id(r: &SmtpReply) -> String {
    assert_eq!(r.code, 250, "{r:?}");
    r.text().rsplit(' ').next().unwrap().to_string()
}

/// Run a Python 3 script; panics with its stderr on failure.
pub fn python(script: &str) -> String {
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let out = wait_output(child, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait until `f` holds, up to `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
