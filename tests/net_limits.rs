//! The listeners and the driver under hostile clients, against the real
//! binary on 127.0.0.1:0: a server out of file descriptors, slowloris
//! clients (a byte a second), a connection flood, and a client that never
//! reads its replies. Figures (peak RSS, how long an ordinary client waited)
//! are printed with eprintln for the README; they are never asserted as
//! performance, only as generous bounds that a leak or a spin would break.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The real server, optionally under util-linux `prlimit` (which sets the
/// limit and execs the server, so the child's pid is the server's), with
/// what the tests read from /proc.
struct Proc(TestServer);

impl Proc {
    /// Start `postern serve` with `config`; `nofile` is "soft:hard".
    fn start(config: &str, nofile: Option<&str>) -> Proc {
        match nofile {
            Some(limit) => {
                let ok = Command::new("prlimit").arg("--version").output().map(|o| o.status.success());
                assert!(
                    matches!(ok, Ok(true)),
                    "this test needs the `prlimit` tool from util-linux to start the server with a low file limit"
                );
                Proc(TestServer::start_under(config, &["prlimit", &format!("--nofile={limit}"), "--"]))
            }
            None => Proc(TestServer::start(config)),
        }
    }

    fn addr(&self, name: &str) -> SocketAddr {
        self.0.addr(name)
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.0.pid())).expect("read /proc")
    }

    /// CPU time (user + system) the server has used so far.
    fn cpu_time(&self) -> Duration {
        let stat = self.proc_file("stat");
        // fields after the ")" that ends the command name; utime and stime are 14 and 15
        let rest = &stat[stat.rfind(')').expect("stat") + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        let hz = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().expect("getconf").stdout)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(100);
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// A `kB` figure from /proc/PID/status (VmHWM, VmRSS).
    fn status_kb(&self, field: &str) -> u64 {
        let status = self.proc_file("status");
        let line = status.lines().find(|l| l.starts_with(field)).expect("status field");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn log(&self) -> String {
        self.0.log()
    }
}

/// An ordinary client's whole transaction; retried while the server
/// refuses it as busy (the flood comes from the same IP). Returns how long
/// it took to be served.
fn ordinary_transaction(addr: SocketAddr) -> Duration {
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(120), "the ordinary client was never served");
        let mut c = Client::connect(addr);
        let banner = c.reply();
        if banner.code == 421 {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert_eq!(banner.code, 220, "{banner:?}");
        c.expect("EHLO ordinary.test", 250);
        let r = c.send_mail("a@ordinary.test", &["b@relayed.test"], "Subject: hi\r\n\r\nhello\r\n");
        assert_eq!(r.code, 250, "{r:?}");
        c.expect("QUIT", 221);
        return t0.elapsed();
    }
}

/// Send one byte a second from `bytes` (cycled), reading between bytes,
/// until the server answers something and closes, or `budget` passes.
/// Returns what the server sent and when it closed, if it did.
fn trickle(stream: &mut TcpStream, bytes: &[u8], budget: Duration) -> (String, Option<Duration>) {
    let t0 = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut got = Vec::new();
    let mut i = 0;
    while t0.elapsed() < budget {
        let mut b = [0u8; 4096];
        match stream.read(&mut b) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), Some(t0.elapsed())),
            Ok(n) => {
                got.extend_from_slice(&b[..n]);
                continue;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), Some(t0.elapsed())),
        }
        if got.is_empty() {
            let _ = stream.write_all(&bytes[i % bytes.len()..i % bytes.len() + 1]);
            i += 1;
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), None)
}

fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\n") {
        match stream.read(&mut b) {
            Ok(1) => line.push(b[0]),
            other => panic!("reading a reply line: {other:?} after {:?}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Read reply lines until the last line of an SMTP reply (`NNN `).
fn read_smtp(stream: &mut TcpStream) -> String {
    loop {
        let l = read_line(stream);
        if l.as_bytes().get(3) == Some(&b' ') {
            return l;
        }
    }
}

const IDLE: &str = "idle_timeout = \"3s\"";
const IDLE_SECS: u64 = 3;

// ------------------------------------------------------------ file limits

#[test]
fn soft_file_limit_is_raised_to_the_hard_limit() {
    let s = Proc::start(&config("", ""), Some("256:8192"));
    let limits = s.proc_file("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((f[3], f[4]), ("8192", "8192"), "soft limit not raised: {line}");
    assert!(s.log().contains("8192"), "the limit is logged at start:\n{}", s.log());
}

#[test]
fn out_of_file_descriptors_backs_off_quietly_then_serves() {
    let s = Proc::start(
        &config("max_connections = 2000\nmax_connections_per_ip = 2000\nidle_timeout = \"60s\"", ""),
        Some("64:64"),
    );
    let addr = s.addr("mx");
    // Far more connections than the server has descriptors for: the kernel
    // completes them into the listen backlog; accept() then fails with EMFILE.
    let mut held = Vec::new();
    for _ in 0..120 {
        held.push(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect"));
    }
    assert!(
        eventually(Duration::from_secs(20), || s.log().contains("Too many open files")),
        "the server never ran out of descriptors; log:\n{}",
        s.log()
    );
    let warned_before = s.log().matches("accept failed").count();
    let cpu0 = s.cpu_time();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = s.cpu_time() - cpu0;
    let wall = t0.elapsed();
    let warned = s.log().matches("accept failed").count() - warned_before;
    eprintln!("out of descriptors: {cpu:?} CPU in {wall:?}; {warned} more warnings");
    // a bound on spinning, not a performance figure: a spinning accept loop uses the whole 2 s
    assert!(cpu < Duration::from_millis(700), "the accept loop burns CPU while out of descriptors: {cpu:?}");
    assert!(warned <= 1, "one warning per burst of accept failures, not one per failure: {warned} in 2 s");
    drop(held);
    let waited = ordinary_transaction(addr);
    eprintln!("out of descriptors: ordinary client served {waited:?} after the connections closed");
}

// ------------------------------------------------------------ slowloris

#[test]
fn slowloris_smtp_command_line_is_cut_off() {
    let s = Proc::start(&config(IDLE, ""), None);
    let mut c = TcpStream::connect(s.addr("mx")).unwrap();
    assert!(read_smtp(&mut c).starts_with("220"));
    c.write_all(b"EHLO slow.test\r\n").unwrap();
    assert!(read_smtp(&mut c).starts_with("250"));
    let (got, closed) = trickle(&mut c, b"NOOP NOOP NOOP ", Duration::from_secs(5 * IDLE_SECS));
    eprintln!("slowloris SMTP: closed after {closed:?} with {got:?}");
    assert!(got.starts_with("421 4.4.2"), "a byte a second must not keep the session: got {got:?}");
    assert!(closed.is_some_and(|t| t < Duration::from_secs(4 * IDLE_SECS)), "{closed:?}");
}

#[test]
fn slowloris_smtp_data_is_cut_off() {
    let s = Proc::start(&config(IDLE, ""), None);
    let mut c = TcpStream::connect(s.addr("mx")).unwrap();
    assert!(read_smtp(&mut c).starts_with("220"));
    c.write_all(b"EHLO slow.test\r\nMAIL FROM:<a@slow.test>\r\n").unwrap();
    assert!(read_smtp(&mut c).starts_with("250"));
    assert!(read_smtp(&mut c).starts_with("250"));
    c.write_all(b"RCPT TO:<b@relayed.test>\r\nDATA\r\n").unwrap();
    assert!(read_smtp(&mut c).starts_with("250"));
    assert!(read_smtp(&mut c).starts_with("354"));
    // whole lines, each slower than nothing but never fast: the body as a
    // whole has a deadline, not each line
    let (got, closed) = trickle(&mut c, b"ab\r\n", Duration::from_secs(5 * IDLE_SECS));
    eprintln!("slowloris DATA: closed after {closed:?} with {got:?}");
    assert!(got.starts_with("421 4.4.2"), "a byte a second must not keep the session: got {got:?}");
    assert!(closed.is_some_and(|t| t < Duration::from_secs(4 * IDLE_SECS)), "{closed:?}");
}

#[test]
fn slowloris_pop3_command_line_is_cut_off() {
    let extra = format!(
        "[[virtual_server]]\nname = \"pop3\"\nprotocol = \"pop3\"\nlisten = [\"127.0.0.1:0\"]\ntls = \"none\"\n{IDLE}\n"
    );
    let s = Proc::start(&config("", &extra), None);
    let mut c = TcpStream::connect(s.addr("pop3")).unwrap();
    assert!(read_line(&mut c).starts_with("+OK"));
    c.write_all(b"CAPA\r\n").unwrap();
    while read_line(&mut c) != ".\r\n" {}
    let (got, closed) = trickle(&mut c, b"USER alice@example.test ", Duration::from_secs(5 * IDLE_SECS));
    eprintln!("slowloris POP3: closed after {closed:?} with {got:?}");
    assert!(got.starts_with("-ERR"), "a byte a second must not keep the session: got {got:?}");
    assert!(closed.is_some_and(|t| t < Duration::from_secs(4 * IDLE_SECS)), "{closed:?}");
}

// ------------------------------------------------------------ under load

#[test]
fn connection_flood_is_refused_or_served_and_memory_stays_bounded() {
    let s = Proc::start(&config("max_connections_per_ip = 50", ""), None);
    let addr = s.addr("mx");
    const FLOOD: usize = 3000;
    let next = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let odd = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (next, served, refused, odd) = (next.clone(), served.clone(), refused.clone(), odd.clone());
            std::thread::spawn(move || {
                // each worker holds what it was served, to keep the server's table full
                let mut held = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < FLOOD {
                    let mut c = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                        Ok(c) => c,
                        Err(e) => {
                            odd.lock().unwrap().push(format!("connect: {e}"));
                            continue;
                        }
                    };
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut b = [0u8; 512];
                    let n = c.read(&mut b).unwrap_or(0);
                    let line = String::from_utf8_lossy(&b[..n]).into_owned();
                    if line.starts_with("220") {
                        served.fetch_add(1, Ordering::SeqCst);
                        held.push(c);
                        if held.len() > 2 {
                            let mut old = held.remove(0);
                            let _ = old.write_all(b"QUIT\r\n");
                        }
                    } else if line.starts_with("421 4.7.0") {
                        refused.fetch_add(1, Ordering::SeqCst);
                    } else {
                        odd.lock().unwrap().push(line);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let waited = ordinary_transaction(addr);
    for w in workers {
        w.join().unwrap();
    }
    let flood_time = t0.elapsed();
    let hwm = s.status_kb("VmHWM");
    let (served, refused) = (served.load(Ordering::SeqCst), refused.load(Ordering::SeqCst));
    eprintln!(
        "connection flood: {FLOOD} connections in {flood_time:?}: {served} served, {refused} refused (421 4.7.0); \
         peak RSS {hwm} kB; ordinary client served in {waited:?}"
    );
    let odd = odd.lock().unwrap();
    assert!(
        odd.is_empty(),
        "every connection is served or refused with 421 4.7.0: {} not: {:?}",
        odd.len(),
        &odd[..odd.len().min(5)]
    );
    assert_eq!(served + refused, FLOOD);
    assert!(hwm < 200 * 1024, "peak RSS {hwm} kB during a connection flood");
}

#[test]
fn client_that_never_reads_cannot_grow_memory() {
    let s = Proc::start(&config(IDLE, ""), None);
    let addr = s.addr("mx");
    let rss0 = s.status_kb("VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                let chunk = "NOOP\r\nRSET\r\n".repeat(4096);
                let _ = c.write_all(b"EHLO deaf.test\r\n");
                // never read; stop when the server stops taking input
                let mut blocked = 0;
                while !stop.load(Ordering::SeqCst) && blocked < 30 {
                    match c.write(chunk.as_bytes()) {
                        Ok(n) => {
                            sent.fetch_add(n, Ordering::SeqCst);
                            blocked = 0;
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                            blocked += 1
                        }
                        Err(_) => break,
                    }
                }
                c
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let waited = ordinary_transaction(addr);
    std::thread::sleep(Duration::from_secs(IDLE_SECS + 2));
    stop.store(true, Ordering::SeqCst);
    let conns: Vec<TcpStream> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let hwm = s.status_kb("VmHWM");
    let sent = sent.load(Ordering::SeqCst);
    eprintln!(
        "deaf pipelining clients: {} kB of commands taken before the server stopped reading; RSS {rss0} kB at start, \
         peak {hwm} kB; ordinary client served in {waited:?}",
        sent / 1024
    );
    assert!(hwm < 200 * 1024, "peak RSS {hwm} kB with clients that never read");
    // the server gave up on them: blocked on output longer than idle_timeout
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut sink = Vec::new();
        let r = c.read_to_end(&mut sink);
        let kept =
            matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        assert!(!kept, "a client that never reads is closed, not kept: {r:?}");
    }
}
