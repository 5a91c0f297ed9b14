//! Deployment (issue 16): started as root with `[server] user`, the server
//! binds privileged ports, gives root up for good before it serves, and
//! then works as that user — mail in, local delivery, reload.

mod common;

use common::{python, Client, TestServer};
use std::time::Duration;

/// The account the server becomes: present on every Debian system.
const USER: &str = "nobody";
const GROUP: &str = "nogroup";

fn must_be_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test starts the server as root to check that it gives root up; run the suite as root (CI does)"
    );
}

/// `Uid:`/`Gid:` (real, effective, saved, filesystem) and `Groups:` of a process.
fn ids_of(pid: u32) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let field = |name: &str| -> Vec<u32> {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in status"));
        line[name.len()..].split_whitespace().map(|n| n.parse().expect("an id")).collect()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

/// The id of a user (`passwd`) or group (`group`), from the system's databases.
fn id_of(database: &str, name: &str) -> u32 {
    let out = std::process::Command::new("getent").args([database, name]).output().expect("run getent (libc-bin)");
    assert!(out.status.success(), "getent {database} {name}: no such entry");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':').nth(2).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no id in {line:?}"))
}

#[test]
fn started_as_root_it_binds_privileged_ports_then_runs_as_the_configured_user() {
    must_be_root();
    // a loopback address of our own, so that ports 25 and 110 are free
    let ip = format!("127.{}.{}.{}", fastrand::u8(1..255), fastrand::u8(1..255), fastrand::u8(2..255));
    let config = format!(
        r#"[server]
hostname = "mx.example.test"
data_dir = "data"
local_domains = ["example.test"]
user = "{USER}"
group = "{GROUP}"

[tls.certificates.main]
cert = "data/tls/main.crt"
key = "data/tls/main.key"
self_signed_if_missing = true

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["{ip}:25"]
tls = "starttls"
certificates = ["main"]

[[virtual_server]]
name = "pop3"
protocol = "pop3"
listen = ["{ip}:110"]
tls = "starttls"
certificates = ["main"]
allow_plaintext_auth = true
"#
    );
    // the server's working directory must be reachable once it is nobody
    let mut server = TestServer::start_prepared(&config, &[], |dir| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod the test directory");
    });
    let (uid, gid) = (id_of("passwd", USER), id_of("group", GROUP));
    let (uids, gids, groups) = ids_of(server.pid());
    assert_eq!(uids, vec![uid; 4], "real, effective, saved and filesystem uid");
    assert_eq!(gids, vec![gid; 4], "real, effective, saved and filesystem gid");
    assert!(groups.is_empty(), "supplementary groups left: {groups:?}");
    assert!(server.log().contains("gave up root"), "{}", server.log());
    // what it made in the data directory is the user's
    {
        use std::os::unix::fs::MetadataExt;
        for p in ["data", "data/tls/main.key", "data/db"] {
            let m = std::fs::metadata(server.path().join(p)).expect(p);
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{p} belongs to {USER}:{GROUP}");
        }
    }

    server.add_user("alice@example.test", "pw-alice");
    assert_eq!(server.addr("mx").port(), 25);
    let mut c = Client::connect(server.addr("mx"));
    c.reply();
    c.expect("EHLO client.test", 250);
    let r = c.send_mail(
        "someone@remote.test",
        &["alice@example.test"],
        "Subject: privileged\r\n\r\nDelivered by an unprivileged server.\r\n",
    );
    assert_eq!(r.code, 250, "{}", r.text());
    c.expect("QUIT", 221);

    // delivered locally, by the unprivileged server, into alice's maildrop
    let pop3 = server.addr("pop3");
    let got = python(&format!(
        r#"
import poplib, time
for _ in range(100):
    p = poplib.POP3("{}", {})
    p.user("alice@example.test"); p.pass_("pw-alice")
    if p.stat()[0] > 0:
        print(b"\n".join(p.retr(1)[1]).decode())
        p.quit()
        break
    p.quit(); time.sleep(0.1)
"#,
        pop3.ip(),
        pop3.port()
    ));
    assert!(got.contains("Delivered by an unprivileged server."), "{got}");

    let out = server.cli(&["reload"]);
    assert!(out.status.success(), "reload as {USER}: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!server.log().contains("reload kept the old"), "{}", server.log());
    server.stop();
}

#[test]
fn check_config_warns_when_the_user_could_not_reread_a_key() {
    must_be_root();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    let cert = dir.path().join("k.crt");
    let out = common::cli_in(
        dir.path(),
        &dir.path().join("none.toml"),
        &[
            "cert",
            "self-signed",
            "--hostname",
            "mx.example.test",
            "--cert-out",
            cert.to_str().unwrap(),
            "--key-out",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = format!(
        "[server]\nhostname = \"mx.example.test\"\nlocal_domains = [\"example.test\"]\nuser = \"{USER}\"\n\n\
         [tls.certificates.main]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();
    let out = common::cli_in(dir.path(), &path, &["check-config"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("k.key is not readable by user \"nobody\""), "{text}");
    // a bad account is a config error naming it
    std::fs::write(
        &path,
        "[server]\nhostname = \"mx.example.test\"\nlocal_domains = [\"example.test\"]\nuser = \"no-such-user-here\"\n",
    )
    .unwrap();
    let out = common::cli_in(dir.path(), &path, &["check-config"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-user-here"));
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (is it installed? .ci/run installs it): {e}"))
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The Debian package: built with cargo-deb (from the binary this test run
/// built), installed with dpkg, checked, and removed again; its systemd
/// unit verified and scored by systemd-analyze. It installs into the
/// system, so it runs only as root and refuses when postern is installed.
#[test]
fn the_debian_package_installs_checks_out_and_removes_cleanly() {
    must_be_root();
    let status = run("dpkg-query", &["-W", "-f=${Status}", "postern"]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("installed"),
        "a postern package is installed on this machine; this test installs and removes its own"
    );
    let cargo_deb = run("cargo", &["deb", "--version"]);
    assert!(cargo_deb.status.success(), "cargo-deb is missing: `cargo install --locked cargo-deb` (.ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("postern.deb");
    let root = env!("CARGO_MANIFEST_DIR");
    // the binary is the one this test run built (target/debug)
    // (stripped, and compressed fast: the debug binary is 200 MB)
    let manifest = format!("{root}/Cargo.toml");
    let deb_path = deb.to_str().unwrap();
    ok(
        "cargo",
        &["deb", "--manifest-path", &manifest, "--no-build", "--profile", "dev", "--strip", "--fast", "-o", deb_path],
    );
    let contents = ok("dpkg-deb", &["--contents", deb_path]);
    for path in ["./usr/bin/postern", "./etc/postern/postern.toml", "./usr/lib/systemd/system/postern.service"] {
        assert!(contents.contains(path), "the package lacks {path}:\n{contents}");
    }
    let conffiles = ok("dpkg-deb", &["--info", deb.to_str().unwrap(), "conffiles"]);
    assert!(conffiles.contains("/etc/postern/postern.toml"), "not a conffile: {conffiles}");

    ok("dpkg", &["-i", deb_path]);
    let installed = std::panic::catch_unwind(|| {
        ok("/usr/bin/postern", &["check-config", "--config", "/etc/postern/postern.toml"]);
        let user = ok("getent", &["passwd", "postern"]);
        assert!(user.contains("/var/lib/postern"), "{user}");
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/var/lib/postern").expect("/var/lib/postern exists");
        let uid: u32 = user.split(':').nth(2).and_then(|u| u.parse().ok()).expect("uid");
        assert_eq!(m.uid(), uid, "/var/lib/postern belongs to postern");
        let key = std::fs::metadata("/etc/postern/tls/postern.key").expect("a key was made");
        assert_eq!(key.mode() & 0o777, 0o640);
        ok("systemd-analyze", &["verify", "/usr/lib/systemd/system/postern.service"]);
        let security = ok("systemd-analyze", &["security", "--offline=yes", "/usr/lib/systemd/system/postern.service"]);
        let score = security.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default().to_string();
        println!("systemd-analyze security: {score}");
        assert!(score.contains("OK") || score.contains("MEDIUM"), "{security}");
    });
    ok("dpkg", &["-r", "postern"]);
    assert!(!std::path::Path::new("/usr/bin/postern").exists(), "dpkg -r left /usr/bin/postern");
    assert!(!std::path::Path::new("/usr/lib/systemd/system/postern.service").exists(), "dpkg -r left the unit");
    ok("dpkg", &["-P", "postern"]);
    assert!(!std::path::Path::new("/etc/postern").exists(), "dpkg -P left /etc/postern");
    assert!(!std::path::Path::new("/var/lib/postern").exists(), "dpkg -P left /var/lib/postern");
    if let Err(e) = installed {
        std::panic::resume_unwind(e);
    }
}
