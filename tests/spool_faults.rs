//! SPEC §13.2: nothing acknowledged is lost, and nothing refused comes back,
//! whatever the disk does: injected EIO / ENOSPC / EMFILE at every step of
//! the spool (through the `POSTERN_FAULTS` test seam), a real full file
//! system (a small tmpfs), an operator naming one message twice, and a
//! queue of many small segments read back without running out of file
//! descriptors.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// The servers of this file take their seams from the environment at
/// spawn; one lock keeps two tests from handing a server each other's.
static ENV: Mutex<()> = Mutex::new(());

fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    let _g = ENV.lock().unwrap_or_else(|p| p.into_inner());
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let r = f();
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    r
}

fn start(vars: &[(&str, &str)]) -> TestServer {
    let cfg = config("relay_networks = [\"127.0.0.0/8\"]", "");
    with_env(vars, || TestServer::start(&cfg))
}

fn start_again(s: &mut TestServer, vars: &[(&str, &str)]) {
    with_env(vars, || s.start_again())
}

/// One message to a remote recipient (it stays queued: test DNS never
/// answers); returns the reply to the data.
fn send(c: &mut Client, tag: &str, body_len: usize) -> SmtpReply {
    let filler = "x".repeat(76);
    let mut body = format!("Subject: {tag}\r\n\r\n");
    while body.len() < body_len {
        body.push_str(&filler);
        body.push_str("\r\n");
    }
    c.send_mail("sender@example.org", &[&format!("rcpt-{tag}@remote.test")], &body)
}

fn session(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    c.reply();
    c.expect("EHLO client.test", 250);
    c
}

fn queued_ids(s: &TestServer) -> HashMap<String, serde_json::Value> {
    s.queue().into_iter().map(|m| (m["id"].as_str().unwrap().to_string(), m)).collect()
}

/// Every acknowledged message is queued with its body, and nothing else is.
fn assert_exactly(s: &TestServer, acked: &[(String, String)]) {
    let queued = queued_ids(s);
    for (id, tag) in acked {
        assert!(queued.contains_key(id), "acknowledged message {id} ({tag}) lost; log:\n{}", s.log());
        let show = s.cli(&["queue", "show", id, "--json"]);
        assert!(show.status.success(), "queue show {id}: {}", String::from_utf8_lossy(&show.stderr));
        let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        assert!(v["headers"].as_str().unwrap().contains(&format!("Subject: {tag}\r\n")), "{id}: {v}");
    }
    let acked_ids: Vec<&String> = acked.iter().map(|(id, _)| id).collect();
    let extra: Vec<&String> = queued.keys().filter(|k| !acked_ids.contains(k)).collect();
    assert!(extra.is_empty(), "refused messages came back as queued mail: {extra:?}");
}

/// Send `n` messages in one session, pausing so the spare helper keeps up;
/// returns the acknowledged (id, tag) pairs and the refused tags.
fn send_many(addr: SocketAddr, prefix: &str, n: usize) -> (Vec<(String, String)>, Vec<String>) {
    let mut c = session(addr);
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for i in 0..n {
        let tag = format!("{prefix}{i}");
        let r = send(&mut c, &tag, 1500);
        match r.code {
            250 => acked.push((queued_id(&r), tag)),
            451 => {
                assert!(r.has("4.3.0"), "{r:?}");
                refused.push(tag);
            }
            _ => panic!("{tag}: unexpected reply {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    (acked, refused)
}

/// Inject `fault`, send through it, send more once the fault has passed,
/// SIGKILL, restart without faults: exactly the acknowledged mail is there.
fn survive(fault: &str, expect_refusals: bool) {
    let mut s = start(&[("POSTERN_FAULTS", fault), ("POSTERN_SPOOL_SEGMENT_LIMIT", "4096")]);
    let (mut acked, refused) = send_many(s.addr("mx"), "a", 12);
    if expect_refusals {
        assert!(!refused.is_empty(), "{fault}: no message was refused; log:\n{}", s.log());
    }
    assert!(acked.len() >= 4, "{fault}: too few accepted ({acked:?}); log:\n{}", s.log());
    // the fault has passed: the spool takes mail again
    let (later, refused_later) = send_many(s.addr("mx"), "b", 4);
    assert!(refused_later.is_empty(), "{fault}: refused after the fault passed: {refused_later:?}; log:\n{}", s.log());
    acked.extend(later);
    s.kill9();
    start_again(&mut s, &[]);
    assert_exactly(&s, &acked);
    // and new mail after the restart survives too
    let (after, refused_after) = send_many(s.addr("mx"), "c", 2);
    assert!(refused_after.is_empty());
    acked.extend(after);
    s.kill9();
    start_again(&mut s, &[]);
    assert_exactly(&s, &acked);
}

#[test]
fn write_failure_enospc_leaves_nothing_half_written() {
    survive("spool.write=ENOSPC@5x2", true);
}

#[test]
fn write_failure_eio_leaves_nothing_half_written() {
    survive("spool.write=EIO@3x1", true);
}

#[test]
fn sync_failure_is_not_resurrected() {
    survive("spool.sync=EIO@4x2", true);
}

#[test]
fn sync_failure_with_failed_zeroing_is_tombstoned() {
    survive("spool.sync=EIO@4x1,spool.cleanup=EIO@1x1", true);
}

#[test]
fn sync_failure_with_failed_zeroing_and_tombstone_retries_the_tombstone() {
    survive("spool.sync=EIO@4x1,spool.cleanup=EIO@1x1,spool.tombstone=ENOSPC@1x1", true);
}

#[test]
fn rotation_open_failure_emfile_after_the_rename() {
    survive("spool.rotate.open=EMFILE@2x1", true);
}

#[test]
fn rotation_directory_sync_failure() {
    survive("spool.rotate.dirsync=EIO@2x1", true);
}

#[test]
fn rotation_rename_failure() {
    survive("spool.rotate.rename=EIO@1x1", false);
}

#[test]
fn spare_creation_failure_appends_instead() {
    survive("spool.spare=ENOSPC", false);
}

#[test]
fn metadata_serialisation_failure_refuses_only_that_message() {
    survive("spool.encode=EIO@3x1", true);
}

// ---------------------------------------------------------------- delete twice

fn two_in_one_segment(s: &TestServer) -> (String, String) {
    let mut c = session(s.addr("mx"));
    let x = queued_id(&send(&mut c, "x", 300));
    let y = queued_id(&send(&mut c, "y", 300));
    (x, y)
}

#[test]
fn deleting_one_id_named_twice_without_a_server_keeps_its_neighbour() {
    let mut s = start(&[]);
    let (x, y) = two_in_one_segment(&s);
    s.stop();
    let out = s.cli(&["queue", "delete", &x, &x.to_ascii_lowercase()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    start_again(&mut s, &[]);
    let q = queued_ids(&s);
    assert!(!q.contains_key(&x), "{x} was deleted");
    assert!(q.contains_key(&y), "{y} shared the deleted message's segment and was lost");
    assert_exactly(&s, &[(y, "y".into())]);
}

#[test]
fn deleting_one_id_named_twice_through_the_server_keeps_its_neighbour() {
    let mut s = start(&[("POSTERN_SPOOL_SEGMENT_LIMIT", "4096")]);
    let (x, y) = two_in_one_segment(&s);
    let mut c = session(s.addr("mx"));
    // a big one fills the segment, the next starts a new one
    let z = queued_id(&send(&mut c, "z", 5000));
    let w = queued_id(&send(&mut c, "w", 300));
    let out = s.cli(&["queue", "delete", &x, &x.to_ascii_lowercase()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = s.cli(&["queue", "delete", &z]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let show = s.cli(&["queue", "show", &y, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert!(v["headers"].as_str().unwrap().contains("Subject: y\r\n"), "{y} lost its body: {v}");
    s.kill9();
    start_again(&mut s, &[]);
    assert_exactly(&s, &[(y, "y".into()), (w, "w".into())]);
}

// ---------------------------------------------------------------- descriptors

/// The pid of this test server's `serve` process (found by its config path).
fn server_pid(s: &TestServer) -> u32 {
    let want = s.config_path.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").unwrap() {
        let e = e.unwrap();
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            cmd.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.contains(&want) && args.last().is_some_and(|a| a == "serve") {
            return pid;
        }
    }
    panic!("no serve process for {want} in /proc");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd needs Linux procfs").count()
}

#[test]
fn many_segments_do_not_hold_a_descriptor_each() {
    // every batch rotates: one segment per message
    let s = start(&[("POSTERN_SPOOL_SEGMENT_LIMIT", "1")]);
    let pid = server_pid(&s);
    let before = open_fds(pid);
    let mut c = session(s.addr("mx"));
    let ids: Vec<String> = (0..200).map(|i| queued_id(&send(&mut c, &format!("m{i}"), 200))).collect();
    drop(c);
    let mut most = 0;
    for (i, id) in ids.iter().enumerate() {
        let show = s.cli(&["queue", "show", id, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        assert!(v["headers"].as_str().unwrap().contains(&format!("Subject: m{i}\r\n")), "{id}: {v}");
        if i % 10 == 0 {
            most = most.max(open_fds(pid));
        }
    }
    most = most.max(open_fds(pid));
    assert!(
        most <= before + 64 + 8,
        "the server held {most} descriptors reading 200 segments back (it started with {before})"
    );
}

// ---------------------------------------------------------------- a real full disk

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("this test needs the mount command (util-linux)");
        assert!(
            out.status.success(),
            "this test needs root and the right to mount a tmpfs (mount -t tmpfs failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_file_system_refuses_with_451_and_keeps_what_it_acknowledged() {
    let data = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(&data.path().join("spool"), "2m");
    let cfg = config("relay_networks = [\"127.0.0.0/8\"]", "")
        .replace("data_dir = \"data\"", &format!("data_dir = {:?}", data.path().to_str().unwrap()));
    let mut s = with_env(&[], || TestServer::start(&cfg));
    let mut c = session(s.addr("mx"));
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..60 {
        let tag = format!("f{i}");
        let r = send(&mut c, &tag, 100_000);
        match r.code {
            250 => acked.push((queued_id(&r), tag)),
            451 => {
                assert!(r.has("4.3.0"), "{r:?}");
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
            _ => panic!("{tag}: {r:?}"),
        }
    }
    drop(c);
    assert!(refused >= 1, "a 2 MB file system never filled; log:\n{}", s.log());
    assert!(acked.len() >= 5, "only {} messages fit in 2 MB; log:\n{}", acked.len(), s.log());
    s.kill9();
    start_again(&mut s, &[]);
    assert_exactly(&s, &acked);
    // room again (the operator grows the file system): new mail is accepted and kept
    let grow = Command::new("mount")
        .args(["-o", "remount,size=8m"])
        .arg(data.path().join("spool"))
        .status()
        .expect("this test needs the mount command (util-linux)");
    assert!(grow.success(), "this test needs root to remount its tmpfs larger");
    let mut c = session(s.addr("mx"));
    let r = send(&mut c, "again", 100_000);
    assert_eq!(r.code, 250, "{r:?}; log:\n{}", s.log());
    acked.push((queued_id(&r), "again".to_string()));
    drop(c);
    s.kill9();
    start_again(&mut s, &[]);
    assert_exactly(&s, &acked);
}
