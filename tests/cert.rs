//! The certificate lifecycle as an operator lives it (SPEC §10): request a
//! certificate, have a CA (made here with rcgen) sign it, install it, look
//! at it, serve it by SNI, and swap it in a running server with `postern
//! reload` or SIGHUP while sessions carry on. Start-up refusals and
//! warnings too. Everything runs the real binary; TLS is real rustls.

mod common;

use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

const DAY: i64 = 86400;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn at(t: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t).unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success; the standard output.
fn ok(o: Output) -> String {
    assert!(o.status.success(), "failed ({:?}):\n{}\n{}", o.status.code(), stdout(&o), stderr(&o));
    stdout(&o)
}

/// Assert failure with `code` and exactly one line on stderr; that line.
fn fails(o: Output, code: i32) -> String {
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{err}", stdout(&o));
    assert_eq!(err.lines().count(), 1, "one line on stderr:\n{err}");
    err
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A directory with the harness's base configuration, for CLI-only tests.
fn workdir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postern.toml");
    std::fs::write(&path, config("", "")).unwrap();
    (dir, path)
}

/// A CA for tests: its issuer handle and its PEM certificate.
fn test_ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "Postern Test CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = at(now() - DAY);
    params.not_after = at(now() + 3650 * DAY);
    let pem = params.self_signed(&key).unwrap().pem();
    (rcgen::Issuer::new(params, key), pem)
}

/// A self-signed certificate and key for `names`, valid between the times given.
fn cert_pair(names: &[&str], not_before: i64, not_after: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    p.not_before = at(not_before);
    p.not_after = at(not_after);
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// SHA-256 of the first certificate in a PEM file, lowercase hex.
fn file_fingerprint(p: &Path) -> String {
    let der = CertificateDer::pem_file_iter(p).unwrap().next().unwrap().unwrap();
    postern::cert::sha256_hex(der.as_ref())
}

/// Connect, STARTTLS, and return the session (EHLO'd again, over TLS).
fn tls_session(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().code, 220);
    c.starttls();
    c
}

fn fingerprint_now(addr: std::net::SocketAddr) -> String {
    let mut c = tls_session(addr);
    let fp = peer_fingerprint(c.tls().unwrap());
    c.expect("QUIT", 221);
    fp
}

// ------------------------------------------------------------ request, install

fn openssl_req(csr: &Path) -> String {
    let o = std::process::Command::new("openssl")
        .args(["req", "-verify", "-noout", "-text", "-in"])
        .arg(csr)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl req -verify failed:\n{}", stderr(&o));
    // openssl 3 says "verify OK" on stderr, the text on stdout
    format!("{}{}", stdout(&o), stderr(&o))
}

#[test]
fn cert_request_is_a_valid_pkcs10_and_its_signed_certificate_installs() {
    let (dir, conf) = workdir();
    let d = dir.path();
    let cli = |args: &[&str]| cli_in(d, &conf, args, None);
    let said = ok(cli(&[
        "cert",
        "request",
        "--cn",
        "mx.example.test",
        "--san",
        "mail.example.test",
        "--org",
        "Example Org",
        "--org-unit",
        "Mail Team",
        "--country",
        "DE",
        "--state",
        "Berlin",
        "--locality",
        "Kreuzberg",
        "--csr-out",
        "req.csr",
        "--key-out",
        "req.key",
    ]));
    assert!(said.contains("data/tls/pending/mx.example.test.key"), "{said}");
    assert_eq!(mode(&d.join("req.key")), 0o600);
    let pending = d.join("data/tls/pending/mx.example.test.key");
    assert_eq!(mode(&pending), 0o600);
    assert_eq!(std::fs::read(&pending).unwrap(), std::fs::read(d.join("req.key")).unwrap());

    let text = openssl_req(&d.join("req.csr"));
    assert!(text.contains("verify OK"), "{text}");
    assert!(
        text.contains(
            "Subject: C = DE, ST = Berlin, L = Kreuzberg, O = Example Org, OU = Mail Team, CN = mx.example.test"
        ),
        "{text}"
    );
    assert!(text.contains("DNS:mx.example.test, DNS:mail.example.test"), "{text}");
    assert!(text.contains("id-ecPublicKey") && text.contains("P-256"), "{text}");

    // a second request for the same name would orphan the first key
    let err = fails(
        cli(&["cert", "request", "--cn", "mx.example.test", "--csr-out", "again.csr", "--key-out", "again.key"]),
        2,
    );
    assert!(err.contains("already pending") && err.contains("--force"), "{err}");
    assert!(!d.join("again.key").exists());

    // the CA answers with leaf + CA
    let (ca, ca_pem) = test_ca();
    let mut csr =
        rcgen::CertificateSigningRequestParams::from_pem(&std::fs::read_to_string(d.join("req.csr")).unwrap()).unwrap();
    csr.params.not_before = at(now() - 60);
    csr.params.not_after = at(now() + 90 * DAY);
    let leaf = csr.signed_by(&ca).unwrap().pem();
    std::fs::write(d.join("signed.crt"), format!("{leaf}{ca_pem}")).unwrap();

    // the wrong key: one clear sentence, and nothing installed
    ok(cli(&["cert", "self-signed", "--hostname", "mx.example.test", "--cert-out", "o.crt", "--key-out", "other.key"]));
    let err = fails(cli(&["cert", "install", "--name", "main", "--cert", "signed.crt", "--key", "other.key"]), 2);
    assert!(err.contains("the private key in other.key does not match the certificate in signed.crt"), "{err}");
    assert!(!d.join("data/tls/main.crt").exists() && !d.join("data/tls/main.key").exists());

    // without --key: the pending key that matches
    let said = ok(cli(&["cert", "install", "--name", "main", "--cert", "signed.crt"]));
    assert!(said.contains("installed certificate \"main\" in data/tls/main.crt"), "{said}");
    assert!(
        said.contains("[tls.certificates.main]\ncert = \"data/tls/main.crt\"\nkey = \"data/tls/main.key\""),
        "{said}"
    );
    assert!(said.contains("already points at it") && said.contains("postern reload"), "{said}");
    assert_eq!(std::fs::read(d.join("data/tls/main.key")).unwrap(), std::fs::read(d.join("req.key")).unwrap());
    assert_eq!(mode(&d.join("data/tls/main.key")), 0o600);
    assert_eq!(std::fs::read_to_string(d.join("data/tls/main.crt")).unwrap(), format!("{leaf}{ca_pem}"));
    assert!(!pending.exists(), "the pending request is done");
    assert!(!d.join("data/tls/pending/mx.example.test.csr").exists());

    // and the configuration is happy with it
    let check = ok(cli(&["check-config"]));
    assert!(check.contains("main: data/tls/main.crt names mx.example.test, mail.example.test"), "{check}");
    let show = ok(cli(&["cert", "show", "main"]));
    assert!(show.contains("issuer       CN=Postern Test CA"), "{show}");
    assert!(show.contains("self-signed  no") && show.contains("chain        2 certificates"), "{show}");
    assert!(show.contains("used by      mx (default)") && !show.contains("warning"), "{show}");
}

#[test]
fn cert_request_with_rsa_keys_and_an_unconfigured_name() {
    let (dir, conf) = workdir();
    let d = dir.path();
    let cli = |args: &[&str]| cli_in(d, &conf, args, None);
    ok(cli(&[
        "cert",
        "request",
        "--cn",
        "imap.example.test",
        "--key-type",
        "rsa3072",
        "--csr-out",
        "imap.csr",
        "--key-out",
        "imap.key",
    ]));
    let text = openssl_req(&d.join("imap.csr"));
    assert!(text.contains("rsaEncryption") && text.contains("(3072 bit)"), "{text}");
    assert!(text.contains("Subject: CN = imap.example.test") && text.contains("DNS:imap.example.test"), "{text}");
    let (ca, _) = test_ca();
    let csr = rcgen::CertificateSigningRequestParams::from_pem(&std::fs::read_to_string(d.join("imap.csr")).unwrap())
        .unwrap();
    std::fs::write(d.join("imap.crt"), csr.signed_by(&ca).unwrap().pem()).unwrap();
    // no virtual server uses "imap", so its names need not be the hostname
    let said = ok(cli(&["cert", "install", "--name", "imap", "--cert", "imap.crt", "--key", "imap.key"]));
    assert!(said.contains("add these lines to") && said.contains("[tls.certificates.imap]"), "{said}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(cli(&["cert", "show", "data/tls/imap.crt", "--json"]))).unwrap();
    assert_eq!(v["key_type"], "rsa");
    assert_eq!(v["key_bits"], 3072);
    // an explicit --key stays where it was; only pending keys are retired
    assert!(d.join("imap.key").exists() && d.join("data/tls/pending/imap.example.test.key").exists());
    // bad arguments are usage errors
    let err = fails(
        cli(&["cert", "request", "--cn", "x.test", "--country", "Germany", "--csr-out", "a", "--key-out", "b"]),
        2,
    );
    assert!(err.contains("--country"), "{err}");
    assert_eq!(
        cli(&["cert", "request", "--cn", "x.test", "--key-type", "dsa", "--csr-out", "a", "--key-out", "b"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn cert_install_refuses_expired_misnamed_and_unmatched_certificates() {
    let (dir, conf) = workdir();
    let d = dir.path();
    let cli = |args: &[&str]| cli_in(d, &conf, args, None);
    let put = |stem: &str, (c, k): (String, String)| {
        std::fs::write(d.join(format!("{stem}.crt")), c).unwrap();
        std::fs::write(d.join(format!("{stem}.key")), k).unwrap();
    };
    put("old", cert_pair(&["mx.example.test"], now() - 90 * DAY, now() - 2 * DAY));
    put("early", cert_pair(&["mx.example.test"], now() + 2 * DAY, now() + 90 * DAY));
    put("other", cert_pair(&["mail.other.test"], now() - DAY, now() + 90 * DAY));
    let err = fails(cli(&["cert", "install", "--name", "main", "--cert", "old.crt", "--key", "old.key"]), 2);
    assert!(err.contains("old.crt expired on"), "{err}");
    let err = fails(cli(&["cert", "install", "--name", "main", "--cert", "early.crt", "--key", "early.key"]), 2);
    assert!(err.contains("early.crt is not valid before"), "{err}");
    let err = fails(cli(&["cert", "install", "--name", "main", "--cert", "other.crt", "--key", "other.key"]), 2);
    assert!(
        err.contains("names mail.other.test but not mx.example.test") && err.contains("virtual server mx"),
        "{err}"
    );
    let err = fails(cli(&["cert", "install", "--name", "main", "--cert", "other.crt"]), 2);
    assert!(err.contains("no pending key") && err.contains("--key"), "{err}");
    let err = fails(cli(&["cert", "install", "--name", "main", "--cert", "other.key", "--key", "other.key"]), 2);
    assert!(err.contains("other.key holds no PEM certificate"), "{err}");
    let err = fails(cli(&["cert", "install", "--name", "main", "--cert", "other.crt", "--key", "other.crt"]), 2);
    assert!(err.contains("other.crt holds no PEM private key"), "{err}");
    let err = fails(cli(&["cert", "install", "--name", "../main", "--cert", "other.crt", "--key", "other.key"]), 2);
    assert!(err.contains("--name"), "{err}");
    assert!(!d.join("data/tls").exists(), "nothing was written");
}

// ------------------------------------------------------------ show

#[test]
fn cert_show_prints_every_field_and_warns() {
    let (dir, conf) = workdir();
    let d = dir.path();
    let cli = |args: &[&str]| cli_in(d, &conf, args, None);
    let expired_at = now() - 2 * DAY - 60;
    let (c, _) = cert_pair(&["mail.other.test", "alt.other.test"], now() - 30 * DAY, expired_at);
    std::fs::write(d.join("expired.crt"), c).unwrap();

    let text = ok(cli(&["cert", "show", "expired.crt"]));
    for line in [
        "certificate in expired.crt",
        "  subject      CN=mail.other.test",
        "  issuer       CN=mail.other.test",
        "  names        mail.other.test, alt.other.test",
        "  valid from   ",
        "  valid until  ",
        "(expired)",
        "  key          ECDSA P-256, 256 bits",
        "  serial       ",
        "  SHA-256      ",
        "  self-signed  yes",
        "  chain        1 certificate",
        "  used by      no virtual server",
        "warning: certificate in expired.crt expired 2 days ago",
        "warning: certificate in expired.crt names mail.other.test, alt.other.test but not the server hostname mx.example.test",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    let fp = file_fingerprint(&d.join("expired.crt"));
    let colons: Vec<String> = fp.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_uppercase()).collect();
    assert!(text.contains(&colons.join(":")), "{text}");

    let v: serde_json::Value = serde_json::from_str(&ok(cli(&["cert", "show", "expired.crt", "--json"]))).unwrap();
    assert_eq!(v["name"], serde_json::Value::Null);
    assert_eq!(v["path"], "expired.crt");
    assert_eq!(v["subject"], "CN=mail.other.test");
    assert_eq!(v["issuer"], "CN=mail.other.test");
    assert_eq!(v["sans"], serde_json::json!(["mail.other.test", "alt.other.test"]));
    assert_eq!(v["not_after"], postern::util::rfc3339(expired_at as u64));
    assert!(v["not_before"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["days_left"], -3);
    assert_eq!(v["key_type"], "ecdsa-p256");
    assert_eq!(v["key_bits"], 256);
    assert!(v["serial"].as_str().unwrap().contains(':'));
    assert_eq!(v["fingerprint_sha256"], fp.as_str());
    assert_eq!(v["self_signed"], true);
    assert_eq!(v["chain_length"], 1);
    assert_eq!(v["used_by"], serde_json::json!([]));
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2, "{v}");

    // expiring soon, by configured name, used by the MX
    let (c, k) = cert_pair(&["mx.example.test"], now() - DAY, now() + 10 * DAY + 3600);
    std::fs::create_dir_all(d.join("data/tls")).unwrap();
    std::fs::write(d.join("data/tls/main.crt"), c).unwrap();
    std::fs::write(d.join("data/tls/main.key"), k).unwrap();
    let text = ok(cli(&["cert", "show", "main"]));
    assert!(text.starts_with("certificate \"main\" (data/tls/main.crt)"), "{text}");
    assert!(text.contains("(10 days left)") && text.contains("used by      mx (default)"), "{text}");
    assert!(text.contains("warning: certificate \"main\" (data/tls/main.crt) expires in 10 days"), "{text}");
    assert!(!text.contains("hostname"), "{text}");
    // the same file by path is the same certificate
    let v: serde_json::Value =
        serde_json::from_str(&ok(cli(&["cert", "show", "./data/tls/main.crt", "--json"]))).unwrap();
    assert_eq!(v["name"], "main");
    assert_eq!(v["used_by"], serde_json::json!([{"server": "mx", "default": true}]));

    let err = fails(cli(&["cert", "show", "nosuch"]), 2);
    assert!(err.contains("\"nosuch\" is neither a certificate named in"), "{err}");
    // no configuration at all: a file is still shown
    let out = cli_in(d, &d.join("absent.toml"), &["cert", "show", "expired.crt"], None);
    let text = ok(out);
    assert!(text.contains("expired 2 days ago") && !text.contains("hostname"), "{text}");
}

#[test]
fn cert_self_signed_writes_a_usable_pair() {
    let (dir, conf) = workdir();
    let d = dir.path();
    let cli = |args: &[&str]| cli_in(d, &conf, args, None);
    let said = ok(cli(&[
        "cert",
        "self-signed",
        "--hostname",
        "mx.example.test",
        "--san",
        "smtp.example.test",
        "--key-type",
        "rsa2048",
        "--cert-out",
        "s.crt",
        "--key-out",
        "s.key",
    ]));
    assert!(said.contains("mx.example.test, smtp.example.test"), "{said}");
    assert_eq!(mode(&d.join("s.key")), 0o600);
    let v: serde_json::Value = serde_json::from_str(&ok(cli(&["cert", "show", "s.crt", "--json"]))).unwrap();
    assert_eq!((v["key_type"].as_str(), v["key_bits"].as_u64()), (Some("rsa"), Some(2048)));
    assert_eq!(v["self_signed"], true);
    assert_eq!(v["sans"], serde_json::json!(["mx.example.test", "smtp.example.test"]));
    assert!(v["days_left"].as_i64().unwrap() >= 364, "{v}");
    assert_eq!(v["warnings"], serde_json::json!([]));
    // never overwrite a key by accident
    let before = std::fs::read(d.join("s.key")).unwrap();
    let err = fails(
        cli(&["cert", "self-signed", "--hostname", "mx.example.test", "--cert-out", "t.crt", "--key-out", "s.key"]),
        2,
    );
    assert!(err.contains("s.key exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(d.join("s.key")).unwrap(), before);
    assert!(!d.join("t.crt").exists());
    let err = fails(
        cli(&["cert", "self-signed", "--hostname", "not a name", "--cert-out", "u.crt", "--key-out", "u.key"]),
        2,
    );
    assert!(err.contains("\"not a name\" is not a host name"), "{err}");
}

// ------------------------------------------------------------ SNI

/// Two certificates in a directory outside the server's, and a config in
/// which `mx` lists them one way round and `mx2` the other.
fn two_certificate_server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, host) in [("one", "mx.example.test"), ("two", "mail.other.test")] {
        let (c, k) = cert_pair(&[host], now() - DAY, now() + 90 * DAY);
        std::fs::write(dir.path().join(format!("{name}.crt")), c).unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), k).unwrap();
    }
    let d = dir.path().display();
    let extra = format!(
        r#"
[[virtual_server]]
name = "mx2"
protocol = "smtp"
listen = ["127.0.0.1:0"]
tls = "implicit"
certificates = ["two", "one"]

[tls.certificates.one]
cert = "{d}/one.crt"
key = "{d}/one.key"

[tls.certificates.two]
cert = "{d}/two.crt"
key = "{d}/two.key"
"#
    );
    let conf = config("", &extra).replace("certificates = [\"main\"]", "certificates = [\"one\", \"two\"]");
    (TestServer::start(&conf), dir)
}

fn no_sni() -> Arc<rustls::ClientConfig> {
    let mut c = (*client_tls_default()).clone();
    c.enable_sni = false;
    Arc::new(c)
}

#[test]
fn sni_serves_the_matching_certificate_and_the_first_without_a_name() {
    let (s, _certs) = two_certificate_server();
    let starttls_names = |cfg: Arc<rustls::ClientConfig>, sni: &str| {
        let mut c = Client::connect(s.addr("mx"));
        c.reply();
        c.expect("EHLO c", 250);
        c.expect("STARTTLS", 220);
        c.start_tls_with(cfg, sni).unwrap();
        let names = peer_names(c.tls().unwrap());
        c.expect("EHLO c", 250);
        names
    };
    assert_eq!(starttls_names(client_tls_default(), "mail.other.test"), ["mail.other.test"]);
    assert_eq!(starttls_names(client_tls_default(), "MX.example.test"), ["mx.example.test"]);
    // no server_name extension at all: the virtual server's first certificate
    assert_eq!(starttls_names(no_sni(), "mail.other.test"), ["mx.example.test"]);
    assert_eq!(starttls_names(no_sni(), "mx.example.test"), ["mx.example.test"]);

    // the other virtual server lists them the other way round
    let implicit_names = |cfg: Arc<rustls::ClientConfig>, sni: &str| {
        let mut c = Client::connect(s.addr("mx2"));
        c.start_tls_with(cfg, sni).unwrap();
        assert_eq!(c.reply().code, 220);
        peer_names(c.tls().unwrap())
    };
    assert_eq!(implicit_names(no_sni(), "mx.example.test"), ["mail.other.test"]);
    assert_eq!(implicit_names(client_tls_default(), "mx.example.test"), ["mx.example.test"]);
    assert_eq!(implicit_names(client_tls_default(), "unknown.test"), ["mail.other.test"]);

    // cert show knows who uses what
    let v: serde_json::Value = serde_json::from_str(&ok(s.cli(&["cert", "show", "two", "--json"]))).unwrap();
    assert_eq!(
        v["used_by"],
        serde_json::json!([{"server": "mx", "default": false}, {"server": "mx2", "default": true}])
    );
}

// ------------------------------------------------------------ reload

/// Make a new self-signed pair for the MX with the CLI and install it as
/// "main" (where the server reads it); its fingerprint.
fn install_new_main(s: &TestServer, stem: &str) -> String {
    ok(s.cli(&[
        "cert",
        "self-signed",
        "--hostname",
        "mx.example.test",
        "--cert-out",
        &format!("{stem}.crt"),
        "--key-out",
        &format!("{stem}.key"),
    ]));
    let said = ok(s.cli(&[
        "cert",
        "install",
        "--name",
        "main",
        "--cert",
        &format!("{stem}.crt"),
        "--key",
        &format!("{stem}.key"),
    ]));
    assert!(said.contains("already points at it"), "{said}");
    file_fingerprint(&s.path().join(format!("{stem}.crt")))
}

/// Put a key that belongs to another certificate where the server reads its key.
fn break_main_key(s: &TestServer) {
    let (_, other_key) = cert_pair(&["mx.example.test"], now() - DAY, now() + DAY);
    std::fs::write(s.path().join("data/tls/main.key"), other_key).unwrap();
}

#[test]
fn reload_swaps_certificates_for_new_sessions_only() {
    let s = TestServer::start(&config("", ""));
    let addr = s.addr("mx");
    let mut open = tls_session(addr);
    let first = peer_fingerprint(open.tls().unwrap());
    assert_eq!(first, file_fingerprint(&s.path().join("data/tls/main.crt")));
    open.expect("MAIL FROM:<a@example.org>", 250);
    open.expect("RCPT TO:<postmaster@example.test>", 250);

    let second = install_new_main(&s, "second");
    assert_ne!(first, second);
    assert_eq!(fingerprint_now(addr), first, "nothing changes before the reload");
    let said = ok(s.cli(&["reload"]));
    assert!(said.contains("certificate \"main\" reloaded"), "{said}");

    // the open session carries on with the old certificate and completes a message
    open.expect("DATA", 354);
    open.send("Subject: across a reload\r\n\r\nstill here\r\n.\r\n");
    assert_eq!(open.reply().code, 250);
    assert_eq!(peer_fingerprint(open.tls().unwrap()), first);
    open.expect("QUIT", 221);
    // new sessions get the new one
    assert_eq!(fingerprint_now(addr), second);

    // a broken new key: the old certificate stays, and reload says why
    break_main_key(&s);
    let err = fails(s.cli(&["reload"]), 1);
    assert!(err.contains("reload kept the old certificate \"main\""), "{err}");
    assert!(err.contains("data/tls/main.key does not match the certificate in data/tls/main.crt"), "{err}");
    assert_eq!(fingerprint_now(addr), second);
    std::fs::write(s.path().join("data/tls/main.key"), "not a key\n").unwrap();
    let err = fails(s.cli(&["reload"]), 1);
    assert!(err.contains("certificate \"main\"") && err.contains("no usable PEM private key"), "{err}");
    assert_eq!(fingerprint_now(addr), second);
}

#[test]
fn sighup_reloads_certificates_and_keeps_the_old_on_failure() {
    let s = TestServer::start(&config("", ""));
    let addr = s.addr("mx");
    let first = fingerprint_now(addr);
    let mut open = tls_session(addr);

    let second = install_new_main(&s, "second");
    s.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || fingerprint_now(addr) == second), "SIGHUP did not reload");
    assert!(open.send_mail("a@example.org", &["postmaster@example.test"], "Subject: x\r\n\r\ny\r\n").code == 250);
    assert_eq!(peer_fingerprint(open.tls().unwrap()), first);

    break_main_key(&s);
    s.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || s.log().contains("reload kept the old certificate")),
        "no warning in the log:\n{}",
        s.log()
    );
    assert!(s.log().contains("does not match"), "{}", s.log());
    assert_eq!(fingerprint_now(addr), second);
}

// ------------------------------------------------------------ start-up

/// `serve` on a config whose "main" is `cert`/`key` (relative to the dir);
/// the exit status and stderr, or None when the server came up.
fn serve_with(dir: &Path, cert: &str, key: &str) -> Output {
    let conf = config("", "").replace(
        "cert = \"data/tls/main.crt\"\nkey = \"data/tls/main.key\"\nself_signed_if_missing = true",
        &format!("cert = \"{cert}\"\nkey = \"{key}\""),
    );
    let path = dir.join("postern.toml");
    std::fs::write(&path, conf).unwrap();
    cli_in(dir, &path, &["serve"], None)
}

#[test]
fn startup_refuses_missing_unreadable_and_broken_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (c, k) = cert_pair(&["mx.example.test"], now() - DAY, now() + 90 * DAY);
    std::fs::write(d.join("c.pem"), &c).unwrap();
    std::fs::write(d.join("k.pem"), &k).unwrap();
    std::fs::create_dir(d.join("dir.pem")).unwrap(); // unreadable as a file, even for root
    std::fs::write(d.join("junk.pem"), "junk\n").unwrap();

    let err = fails(serve_with(d, "c.pem", "missing.pem"), 1);
    assert!(err.contains("certificate \"main\": cannot read missing.pem"), "{err}");
    let err = fails(serve_with(d, "missing.pem", "k.pem"), 1);
    assert!(err.contains("certificate \"main\": cannot read missing.pem"), "{err}");
    let err = fails(serve_with(d, "c.pem", "dir.pem"), 1);
    assert!(err.contains("certificate \"main\": cannot read dir.pem"), "{err}");
    let err = fails(serve_with(d, "junk.pem", "k.pem"), 1);
    assert!(err.contains("certificate \"main\": junk.pem holds no PEM certificate"), "{err}");
    let err = fails(serve_with(d, "c.pem", "junk.pem"), 1);
    assert!(err.contains("certificate \"main\": junk.pem holds no usable PEM private key"), "{err}");
    // and the good pair starts (check-config agrees without starting)
    let path = d.join("postern.toml");
    let conf = std::fs::read_to_string(&path).unwrap().replace("junk.pem", "k.pem");
    std::fs::write(&path, conf).unwrap();
    ok(cli_in(d, &path, &["check-config"], None));
}

#[test]
fn startup_warns_about_expiring_and_misnamed_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let (c, k) = cert_pair(&["mail.other.test"], now() - DAY, now() + 10 * DAY + 3600);
    std::fs::write(certs.path().join("c.pem"), c).unwrap();
    std::fs::write(certs.path().join("k.pem"), k).unwrap();
    let d = certs.path().display();
    let conf = config("", "").replace(
        "cert = \"data/tls/main.crt\"\nkey = \"data/tls/main.key\"\nself_signed_if_missing = true",
        &format!("cert = \"{d}/c.pem\"\nkey = \"{d}/k.pem\""),
    );
    let s = TestServer::start(&conf);
    // it serves, and the log says what to look at
    assert_eq!(fingerprint_now(s.addr("mx")), file_fingerprint(&certs.path().join("c.pem")));
    let log = s.log();
    assert!(log.contains("expires in 10 days"), "{log}");
    assert!(log.contains("names mail.other.test but not the server hostname mx.example.test"), "{log}");
}
