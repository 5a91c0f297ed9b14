//! The README's first commands on a fresh checkout: `postern serve` on the
//! default config (self-signed certificate made on first start), then "Try
//! it": a user, a message over SMTP with STARTTLS, `queue list`, and the
//! message read back with curl over POP3S and IMAPS. The default config's ports are
//! rewritten to free ones (port 0) so that the test never meets another
//! server on 2525; everything else is the file as shipped.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The default config with every `127.0.0.1:PORT` made `127.0.0.1:0`
/// (the virtual servers' lists and the metrics listener's one address).
fn default_config_on_free_ports() -> String {
    let text = std::fs::read_to_string(format!("{}/config/postern.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("listen = [\"127.0.0.1:") {
            out.push_str("listen = [\"127.0.0.1:0\"]");
        } else if line.starts_with("listen = \"127.0.0.1:") {
            out.push_str("listen = \"127.0.0.1:0\"");
        } else {
            assert!(!line.starts_with("listen"), "a listen line this test does not rewrite: {line}");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[test]
fn default_config_serves_and_queues() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/postern.toml"), default_config_on_free_ports()).unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    // `postern serve` with the default --config, as the README runs it
    let mut child = KillOnDrop(
        Command::new(BIN).arg("serve").current_dir(dir.path()).stdout(Stdio::piped()).stderr(log).spawn().unwrap(),
    );
    let mut addrs: HashMap<String, SocketAddr> = HashMap::new();
    for line in BufReader::new(child.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "postern: ready" {
            break;
        }
        if let Some((head, addr)) = line.split_once(" listening on ") {
            let name = head.trim_start_matches("postern: ").split(' ').next().unwrap().to_string();
            addrs.insert(name, addr.parse().unwrap());
        }
    }
    let serve_log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    for name in ["mx", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "nntp", "nntps", "metrics"] {
        assert!(addrs.contains_key(name), "no {name} listener: {addrs:?}\n{}", serve_log());
    }
    let cli = |args: &[&str], stdin: Option<&str>| {
        cli_in(dir.path(), std::path::Path::new("config/postern.toml"), args, stdin)
    };
    let out = cli(&["user", "add", "alice@example.test", "--password-stdin"], Some("pw-alice\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mx = addrs["mx"];
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("{}", {}, timeout=15)
s.starttls()
s.ehlo()
s.mail("me@example.org")
s.rcpt("alice@example.test")
code, msg = s.data("Subject: hi\r\n\r\nhello\r\n")
print(code, msg.decode())
s.quit()
"#,
        mx.ip(),
        mx.port()
    ));
    let (code, text) = out.trim().split_once(' ').unwrap();
    assert_eq!(code, "250", "{out}");
    assert!(text.starts_with("2.0.0 Ok: queued as "), "{out}");
    let id = text.rsplit(' ').next().unwrap();
    let list = cli(&["queue", "list", "--json"], None);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    // delivered to alice's mailbox (milliseconds later): the log says so
    assert!(
        eventually(Duration::from_secs(10), || serve_log()
            .lines()
            .any(|l| l.contains(&format!("id={id}")) && l.contains("delivered"))),
        "{id} was not delivered:\n{}",
        serve_log()
    );
    // read it with curl over POP3S, as the README does (-k: self-signed)
    let pop3s = addrs["pop3s"];
    let curl = Command::new("curl")
        .args(["-sS", "-k", "-u", "alice@example.test:pw-alice"])
        .arg(format!("pop3s://{}:{}/1", pop3s.ip(), pop3s.port()))
        .output()
        .expect("curl is needed for this test (.ci/run installs it)");
    let got = String::from_utf8_lossy(&curl.stdout);
    assert!(curl.status.success(), "curl: {}", String::from_utf8_lossy(&curl.stderr));
    assert!(got.starts_with("Received: ") && got.contains("Subject: hi") && got.contains("hello"), "{got}");
    // and over IMAPS, as the next README line does
    let imaps = addrs["imaps"];
    let curl = Command::new("curl")
        .args(["-sS", "-k", "-u", "alice@example.test:pw-alice"])
        .arg(format!("imaps://{}:{}/INBOX;UID=1", imaps.ip(), imaps.port()))
        .output()
        .expect("curl is needed for this test (.ci/run installs it)");
    let over_imap = String::from_utf8_lossy(&curl.stdout);
    assert!(curl.status.success(), "curl imaps: {}", String::from_utf8_lossy(&curl.stderr));
    assert_eq!(over_imap, got, "the same bytes over IMAP as over POP3");
    // and the metrics counted the message, as the README's last line shows
    let metrics = addrs["metrics"];
    let curl = Command::new("curl")
        .args(["-sS", &format!("http://{metrics}/metrics")])
        .output()
        .expect("curl is needed for this test (.ci/run installs it)");
    let text = String::from_utf8_lossy(&curl.stdout);
    assert!(curl.status.success(), "curl metrics: {}", String::from_utf8_lossy(&curl.stderr));
    assert!(text.lines().any(|l| l == r#"postern_smtp_messages_total{server="mx",code="250"} 1"#), "{text}");
    assert!(dir.path().join("queue-data/tls/main.crt").exists());
    let _ = Command::new("kill").arg(child.0.id().to_string()).status();
    let _ = child.0.wait();
}

/// The server must not outlive a failed test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
