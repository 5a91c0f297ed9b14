//! The README's first command on a fresh checkout: `postern serve` on the
//! default config (loopback 2525, self-signed certificate made on first
//! start); Python's smtplib sends with STARTTLS; `queue list --json` shows it.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn default_config_serves_and_queues() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::copy(
        format!("{}/config/postern.toml", env!("CARGO_MANIFEST_DIR")),
        dir.path().join("config/postern.toml"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut child = KillOnDrop(
        Command::new(BIN).arg("serve").current_dir(dir.path()).stdout(Stdio::null()).stderr(log).spawn().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect("127.0.0.1:2525").is_err() {
        assert!(Instant::now() < deadline, "the server did not start on 127.0.0.1:2525");
        if let Ok(Some(st)) = child.0.try_wait() {
            panic!("server exited ({st}): {}", std::fs::read_to_string(dir.path().join("serve.log")).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = python(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", 2525, timeout=15)
s.starttls()
s.ehlo()
s.mail("sender@example.org")
s.rcpt("postmaster@example.test")
code, msg = s.data("Subject: hello\r\n\r\nfrom the README\r\n")
print(code, msg.decode())
s.quit()
"#,
    );
    let (code, text) = out.trim().split_once(' ').unwrap();
    assert_eq!(code, "250", "{out}");
    assert!(text.starts_with("2.0.0 Ok: queued as "), "{out}");
    let id = text.rsplit(' ').next().unwrap();
    // The queue shows it until the local delivery to the postmaster's
    // mailbox (milliseconds later) takes it out; then the log says so.
    let list = cli_in(dir.path(), std::path::Path::new("config/postern.toml"), &["queue", "list", "--json"], None);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let stdout = String::from_utf8_lossy(&list.stdout);
    let listed = stdout.lines().any(|l| l.contains(&format!("\"id\":\"{id}\"")));
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(
        listed
            || eventually(Duration::from_secs(10), || log()
                .lines()
                .any(|l| l.contains(&format!("id={id}")) && l.contains("delivered"))),
        "{id} neither in the queue ({stdout}) nor delivered:\n{}",
        log()
    );
    assert!(dir.path().join("queue-data/tls/main.crt").exists());
    let _ = Command::new("kill").arg(child.0.id().to_string()).status();
    let _ = child.0.wait();
}

/// The server must not outlive a failed test (it holds fixed ports).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
