//! Configuration errors exit 2 with one line naming the key and the line.

mod common;

use common::*;

fn check(conf: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postern.toml");
    std::fs::write(&path, conf).unwrap();
    let out = cli_in(dir.path(), &path, &["check-config"], None);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn line_of(conf: &str, needle: &str) -> usize {
    conf.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn unknown_key() {
    let conf = config("speling_mistake = true", "");
    let (code, err) = check(&conf);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("postern.toml:{}:", line_of(&conf, "speling_mistake"))), "{err}");
    assert!(err.contains("speling_mistake"), "{err}");
    assert!(err.contains("in [[virtual_server]]"), "{err}");
    // a near miss is named
    let (code, err) = check(&config("max_recipeints = 5", ""));
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown key `max_recipeints` in [[virtual_server]]; did you mean `max_recipients`?"),
        "{err}"
    );
    // and types are said in words
    let (code, err) = check(&config("max_recipients = \"many\"", ""));
    assert_eq!(code, 2);
    assert!(err.contains("expected a whole number") && !err.contains("usize"), "{err}");
}

/// Commands that only read never make a data directory (SPEC §3): with no
/// server and no store they say where they looked and exit 1. A bad
/// option value is a usage error (2).
#[test]
fn read_only_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postern.toml");
    std::fs::write(&path, config("", "")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    for args in [&["queue", "summary"][..], &["queue", "list"], &["queue", "show", "X"], &["user", "list"]] {
        let out = cli_in(elsewhere.path(), &path, args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("no data directory at data"), "{args:?}: {err}");
        assert!(!elsewhere.path().join("data").exists(), "{args:?} created a data directory");
    }
    let out = cli_in(dir.path(), &path, &["queue", "list", "--state", "bogus"], None);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_duration() {
    let conf = config("idle_timeout = \"5 fortnights\"", "");
    let (code, err) = check(&conf);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("postern.toml:{}:", line_of(&conf, "idle_timeout"))), "{err}");
    assert!(err.contains("idle_timeout") && err.contains("5 fortnights"), "{err}");
}

#[test]
fn missing_certificate() {
    let conf = config("", "").replace("certificates = [\"main\"]", "certificates = [\"nosuch\"]");
    let (code, err) = check(&conf);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("postern.toml:{}:", line_of(&conf, "\"nosuch\""))), "{err}");
    assert!(err.contains("certificates") && err.contains("nosuch"), "{err}");
    // serve refuses the same way
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postern.toml");
    std::fs::write(&path, &conf).unwrap();
    let out = cli_in(dir.path(), &path, &["serve"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn wrong_type_and_bad_network() {
    let (code, err) = check(&config("max_recipients = \"many\"", ""));
    assert_eq!(code, 2);
    assert!(err.contains("max_recipients"), "{err}");
    let (code, err) = check(&config("relay_networks = [\"10.0.0.0/40\"]", ""));
    assert_eq!(code, 2);
    assert!(err.contains("relay_networks") && err.contains("10.0.0.0/40"), "{err}");
}

#[test]
fn unreadable_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = postern::cert::self_signed_pem(&["mx.example.test".into()], Default::default()).unwrap();
    let (_, other_key) = postern::cert::self_signed_pem(&["mx.example.test".into()], Default::default()).unwrap();
    std::fs::write(dir.path().join("c.pem"), c).unwrap();
    std::fs::write(dir.path().join("k.pem"), other_key).unwrap();
    let conf = config("", "").replace(
        "cert = \"data/tls/main.crt\"\nkey = \"data/tls/main.key\"\nself_signed_if_missing = true",
        "cert = \"c.pem\"\nkey = \"k.pem\"",
    );
    let path = dir.path().join("postern.toml");
    std::fs::write(&path, &conf).unwrap();
    let out = cli_in(dir.path(), &path, &["check-config"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not match"), "{err}");
    let out = cli_in(dir.path(), &path, &["serve"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not match") && err.lines().count() == 1, "{err}");
}

#[test]
fn default_and_production_configs_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    for f in ["config/postern.toml", "config/production.example.toml"] {
        let c = postern::config::Config::load(std::path::Path::new(&format!("{root}/{f}")));
        assert!(c.is_ok(), "{f}: {:?}", c.err().map(|e| e.to_string()));
    }
}

/// Output into a pipe nobody reads (`postern check-config | head -1`):
/// the command ends quietly, exit 0, no panic and no backtrace.
#[test]
fn a_closed_pipe_on_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postern.toml");
    std::fs::write(&path, config("", "")).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .current_dir(dir.path())
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}
