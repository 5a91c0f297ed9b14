//! MTA-STS (RFC 8461, SPEC §7): a recipient domain's published demand that
//! mail reach it only over verified TLS, to the MX hosts it names.
//!
//! [`MtaSts::lookup`] runs once per MX delivery attempt (the SMTP transport
//! skips it for smarthosts and connectors with `mta_sts = false`): the
//! `_mta-sts.<domain>` TXT record (`v=STSv1; id=...`), then, when its id is
//! not the cached policy's, the policy from
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` (port `[mta_sts]
//! port`; the host resolved through our own resolver; TLS verified against
//! `[mta_sts] ca_file` or webpki-roots with SNI `mta-sts.<domain>`; HTTP/1.1
//! GET through hyper, no redirects, 200 only, at most 64 KiB within
//! [`FETCH_LIMIT`]). A policy is kept for its `max_age` in memory and in
//! `<data_dir>/mta-sts/<domain>.json` (written atomically and fsynced), so
//! it survives restarts; while it is unexpired a missing TXT record or a
//! failed refetch keeps it in force (RFC 8461 §5.1). The result is a
//! [`Plan`]: what delivery does per hop — under `enforce` only MX hosts
//! matching the policy's `mx` patterns, each with STARTTLS and a verified
//! certificate; under `testing` the connector's own policy, with the would-be
//! failure recorded — and the [`PolicyOutcome`] TLS-RPT counts.

use super::mx::{MxResolver, NextHop};
use super::session::HopFailure;
use super::tls::ConnectorTls;
use super::{PolicyKind, PolicyOutcome, Stage, TlsOutcome};
use crate::config::{Config, OutboundTls};
use crate::util::LockExt;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most a policy body may be (RFC 8461 §3.2 leaves the bound to us).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// The whole fetch — resolve, connect, TLS, request and body — must fit in this.
pub const FETCH_LIMIT: Duration = Duration::from_secs(30);
/// RFC 8461 §3.2: `max_age` is at most 31557600 seconds (a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A policy's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

/// A parsed policy (RFC 8461 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// The `mx` patterns, lower case: a host name or `*.` and a domain.
    pub mx: Vec<String>,
    pub max_age: u64,
    /// The policy's non-empty lines as served (RFC 8460 `policy-string`).
    pub lines: Vec<String>,
}

/// A policy body that is not a valid STSv1 policy.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy has no version line (version: STSv1)")]
    NoVersion,
    #[error("the policy's version {0:?} is not STSv1")]
    Version(String),
    #[error("the policy's mode {0:?} is not enforce, testing or none")]
    Mode(String),
    #[error("the policy has no mode line")]
    NoMode,
    #[error("the policy's max_age {0:?} is not a number of seconds up to 31557600")]
    MaxAge(String),
    #[error("the policy has no max_age line")]
    NoMaxAge,
    #[error("the policy's mx pattern {0:?} is not a host name or *.domain")]
    Mx(String),
    #[error("the policy lists no mx pattern")]
    NoMx,
    #[error("the policy is not UTF-8 text")]
    NotText,
}

impl Policy {
    /// Parse a policy body: `key: value` lines ending in CRLF or LF; unknown
    /// keys are ignored, `mx` may repeat (RFC 8461 §3.2).
    pub fn parse(body: &[u8]) -> Result<Policy, PolicyError> {
        let text = std::str::from_utf8(body).map_err(|_| PolicyError::NotText)?;
        let (mut version, mut mode, mut max_age) = (None, None, None);
        let (mut mx, mut lines) = (Vec::new(), Vec::new());
        for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
            if line.trim().is_empty() {
                continue;
            }
            lines.push(line.to_string());
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key.trim() {
                "version" if version.is_none() => version = Some(value.to_string()),
                "mode" if mode.is_none() => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(PolicyError::Mode(other.to_string())),
                    })
                }
                "max_age" if max_age.is_none() => {
                    let bad = || PolicyError::MaxAge(value.to_string());
                    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    }
                    let n: u64 = value.parse().map_err(|_| bad())?;
                    if n > MAX_AGE_LIMIT {
                        return Err(bad());
                    }
                    max_age = Some(n);
                }
                "mx" => {
                    let p = value.to_ascii_lowercase();
                    let host = p.strip_prefix("*.").unwrap_or(&p);
                    if !crate::config::is_domain_name(host) {
                        return Err(PolicyError::Mx(value.to_string()));
                    }
                    mx.push(p);
                }
                _ => {}
            }
        }
        match version {
            None => return Err(PolicyError::NoVersion),
            Some(v) if v != "STSv1" => return Err(PolicyError::Version(v)),
            Some(_) => {}
        }
        let mode = mode.ok_or(PolicyError::NoMode)?;
        let max_age = max_age.ok_or(PolicyError::NoMaxAge)?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx);
        }
        Ok(Policy { mode, mx, max_age, lines })
    }

    /// Whether MX host `host` matches a pattern: exactly, or `*.d` for a
    /// host of one more label than `d` (RFC 8461 §4.1).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == parent),
            None => *p == host,
        })
    }
}

/// The id of the domain's single `v=STSv1` TXT record; `None` when there is
/// none, more than one, or it is malformed (RFC 8461 §3.1: no policy then).
pub fn txt_id(records: &[String]) -> Option<String> {
    let sts: Vec<&String> = records.iter().filter(|r| r.starts_with("v=STSv1")).collect();
    let [record] = sts.as_slice() else { return None };
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next() != Some("v=STSv1") {
        return None;
    }
    let id = fields.find_map(|f| f.strip_prefix("id="))?;
    let ok = !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| id.to_string())
}

/// The policy could not be fetched (RFC 8460 names the result type).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("MTA-STS policy host {host}: {text}")]
    Dns { host: String, text: String },
    #[error("MTA-STS policy host {host} ({addr}): connection failed: {source}")]
    Connect { host: String, addr: SocketAddr, source: std::io::Error },
    #[error("MTA-STS policy host {host}: TLS failed: {text}")]
    Tls { host: String, text: String },
    #[error("MTA-STS policy host {host}: certificate not valid: {text}")]
    Certificate { host: String, text: String },
    #[error("MTA-STS policy host {host}: HTTP failed: {text}")]
    Http { host: String, text: String },
    #[error("MTA-STS policy host {host}: status {status} (only 200 is a policy)")]
    Status { host: String, status: u16 },
    #[error("MTA-STS policy host {host}: the policy is larger than 64 KiB")]
    TooLarge { host: String },
    #[error("MTA-STS policy host {host}: no complete answer within {secs}s")]
    TimedOut { host: String, secs: u64 },
    #[error("MTA-STS policy of {domain}: {source}")]
    Invalid { domain: String, source: PolicyError },
}

impl FetchError {
    /// RFC 8460 §4.3 result type.
    pub fn result_type(&self) -> &'static str {
        match self {
            FetchError::Certificate { .. } => "sts-webpki-invalid",
            FetchError::Invalid { .. } => "sts-policy-invalid",
            _ => "sts-policy-fetch-error",
        }
    }
}

/// `[mta_sts] ca_file` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StsSetupError {
    #[error("mta_sts.ca_file {path}: {source}")]
    CaFile { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("mta_sts.ca_file {path}: not a usable CA certificate: {source}")]
    UnusableCa { path: PathBuf, source: rustls::Error },
    #[error("mta_sts.ca_file {path}: no certificates in the file")]
    NoCertificates { path: PathBuf },
    #[error("mta_sts: TLS setup failed: {0}")]
    Build(#[from] super::tls::BuildError),
}

/// A policy in force, as cached on disk (`<data_dir>/mta-sts/<domain>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    /// The TXT record's id the policy was fetched under.
    id: String,
    /// Unix seconds of the fetch; the policy holds until `fetched + max_age`.
    fetched: u64,
    /// The body as served; parsed again on load.
    policy: String,
}

#[derive(Clone, Debug)]
struct Cached {
    id: String,
    expires: u64,
    policy: Arc<Policy>,
}

/// The MTA-STS machinery of the SMTP transport: resolver, trust roots, caches.
pub struct MtaSts {
    resolver: MxResolver,
    port: u16,
    dir: PathBuf,
    /// The trust roots for the policy host and for MX hosts under a policy.
    tls: ConnectorTls,
    memory: Mutex<HashMap<String, Cached>>,
    /// One cache write at a time (they share temporary names).
    writing: Mutex<()>,
}

impl std::fmt::Debug for MtaSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtaSts").field("port", &self.port).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl MtaSts {
    /// Loads `[mta_sts] ca_file` (or webpki-roots) now, so a bad file stops the start.
    pub fn new(config: &Config, resolver: MxResolver) -> Result<MtaSts, StsSetupError> {
        let roots = match &config.mta_sts.ca_file {
            Some(path) => roots_from_file(path)?,
            None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        Ok(MtaSts {
            resolver,
            port: config.mta_sts.port,
            dir: config.server.data_dir.join("mta-sts"),
            tls: super::tls::build(roots)?,
            memory: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
        })
    }

    /// The trust roots MX certificates are verified against under a policy.
    pub(crate) fn tls(&self) -> &ConnectorTls {
        &self.tls
    }

    /// The domain's policy for this delivery: the TXT record checked each
    /// time, the policy fetched when its id changed (RFC 8461 §5).
    pub async fn lookup(&self, domain: &str) -> Plan {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let now = crate::util::now_secs();
        let cached = self.cached(&domain, now);
        let id = match self.resolver.txt(&format!("_mta-sts.{domain}")).await {
            Ok(records) => txt_id(&records),
            Err(e) => {
                tracing::debug!(domain = %domain, "MTA-STS TXT lookup: {e}");
                None
            }
        };
        let cached = match (id, cached) {
            (None, None) => return Plan::Off,
            (None, Some(c)) => c,
            (Some(id), Some(c)) if c.id == id => c,
            (Some(id), cached) => match self.fetch(&domain).await {
                Ok((policy, body)) => {
                    let c = Cached { id: id.clone(), expires: now + policy.max_age, policy: Arc::new(policy) };
                    self.memory.lock_or_recover().insert(domain.clone(), c.clone());
                    self.store(&domain, &Stored { id, fetched: now, policy: body });
                    c
                }
                Err(e) => match cached {
                    Some(c) => {
                        tracing::info!(domain = %domain, "{e}; the cached policy stays in force");
                        c
                    }
                    None => {
                        tracing::info!(domain = %domain, "{e}");
                        let outcome = outcome(&domain, None, Some(e.result_type()));
                        return Plan::Unavailable(outcome);
                    }
                },
            },
        };
        let outcome = outcome(&domain, Some(&cached.policy), None);
        match cached.policy.mode {
            Mode::None => Plan::Off,
            Mode::Enforce => Plan::Apply { policy: cached.policy, outcome, enforce: true },
            Mode::Testing => Plan::Apply { policy: cached.policy, outcome, enforce: false },
        }
    }

    /// The unexpired policy from memory, else from disk.
    fn cached(&self, domain: &str, now: u64) -> Option<Cached> {
        if let Some(c) = self.memory.lock_or_recover().get(domain) {
            return (c.expires > now).then(|| c.clone());
        }
        let path = self.path(domain)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("MTA-STS cache {}: {e}", path.display());
                return None;
            }
        };
        let stored: Stored = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("MTA-STS cache {}: not a cached policy: {e}", path.display());
                return None;
            }
        };
        let policy = Policy::parse(stored.policy.as_bytes()).ok()?;
        let c =
            Cached { id: stored.id, expires: stored.fetched.saturating_add(policy.max_age), policy: Arc::new(policy) };
        self.memory.lock_or_recover().insert(domain.to_string(), c.clone());
        (c.expires > now).then_some(c)
    }

    /// The cache file of a domain; `None` for a name that is no safe file name.
    fn path(&self, domain: &str) -> Option<PathBuf> {
        let safe = !domain.is_empty()
            && !domain.starts_with('.')
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        safe.then(|| self.dir.join(format!("{domain}.json")))
    }

    fn store(&self, domain: &str, stored: &Stored) {
        let Some(path) = self.path(domain) else { return };
        let _one = self.writing.lock_or_recover();
        let written = serde_json::to_vec(stored)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::util::write_file_durably(&path, &bytes, 0o600));
        if let Err(e) = written {
            // the policy still holds in memory; only a restart loses it
            tracing::warn!("MTA-STS cache {}: {e}", path.display());
        }
    }

    /// GET the policy of `domain`, within [`FETCH_LIMIT`].
    async fn fetch(&self, domain: &str) -> Result<(Policy, String), FetchError> {
        let host = format!("mta-sts.{domain}");
        let body = match tokio::time::timeout(FETCH_LIMIT, self.get(&host)).await {
            Ok(r) => r?,
            Err(_) => return Err(FetchError::TimedOut { host, secs: FETCH_LIMIT.as_secs() }),
        };
        let policy = Policy::parse(&body).map_err(|source| FetchError::Invalid { domain: domain.into(), source })?;
        // parse accepted it, so it is UTF-8
        Ok((policy, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn get(&self, host: &str) -> Result<Vec<u8>, FetchError> {
        let hop = self
            .resolver
            .resolve_host(host)
            .await
            .map_err(|e| FetchError::Dns { host: host.into(), text: e.to_string() })?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| FetchError::Dns { host: host.into(), text: "not a valid host name".into() })?;
        let mut last = None;
        let mut tcp = None;
        for ip in &hop.addrs {
            let addr = SocketAddr::new(*ip, self.port);
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(source) => last = Some(FetchError::Connect { host: host.into(), addr, source }),
            }
        }
        let Some(tcp) = tcp else {
            return Err(last.unwrap_or(FetchError::Dns { host: host.into(), text: "no address".into() }));
        };
        let tls = tokio_rustls::TlsConnector::from(self.tls.verifying.clone()).connect(name, tcp).await.map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(_)) => {
                    FetchError::Certificate { host: host.into(), text: super::tls::handshake_failure_text(&e) }
                }
                _ => FetchError::Tls { host: host.into(), text: super::tls::handshake_failure_text(&e) },
            },
        )?;
        let http = |text: String| FetchError::Http { host: host.into(), text };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| http(e.to_string()))?;
        // the connection is driven until the response is read, then dropped
        let driver = tokio::spawn(conn);
        let request = hyper::Request::get("/.well-known/mta-sts.txt")
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONNECTION, "close")
            .body(http_body_util::Empty::new())
            .map_err(|e| http(e.to_string()))?;
        let result = async {
            let response = sender.send_request(request).await.map_err(|e| http(e.to_string()))?;
            // RFC 8461 §3.3: no redirects, and only 200 is a policy
            if response.status() != hyper::StatusCode::OK {
                return Err(FetchError::Status { host: host.into(), status: response.status().as_u16() });
            }
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| http(e.to_string()))?;
                if let Some(data) = frame.data_ref() {
                    if bytes.len() + data.len() > MAX_POLICY_BYTES {
                        return Err(FetchError::TooLarge { host: host.into() });
                    }
                    bytes.extend_from_slice(data);
                }
            }
            Ok(bytes)
        }
        .await;
        driver.abort();
        result
    }
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, StsSetupError> {
    let unreadable = |source| StsSetupError::CaFile { path: path.to_path_buf(), source };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(unreadable)? {
        let cert = cert.map_err(unreadable)?;
        roots.add(cert).map_err(|source| StsSetupError::UnusableCa { path: path.to_path_buf(), source })?;
    }
    if roots.is_empty() {
        return Err(StsSetupError::NoCertificates { path: path.to_path_buf() });
    }
    Ok(roots)
}

fn outcome(domain: &str, policy: Option<&Policy>, failure: Option<&str>) -> PolicyOutcome {
    PolicyOutcome {
        kind: PolicyKind::Sts,
        domain: domain.to_string(),
        strings: policy.map(|p| p.lines.clone()).unwrap_or_default(),
        testing: policy.is_some_and(|p| p.mode == Mode::Testing),
        failure: failure.map(str::to_string),
    }
}

/// What one delivery attempt does under the domain's MTA-STS policy.
#[derive(Clone, Debug)]
pub enum Plan {
    /// No policy (or `mode: none`, or the connector opts out): the
    /// connector's own policy, nothing to report.
    Off,
    /// The domain announces a policy that could not be fetched and none is
    /// cached: the connector's own policy (RFC 8461 §5), reported.
    Unavailable(PolicyOutcome),
    /// A policy in force; `enforce` false is `mode: testing`.
    Apply { policy: Arc<Policy>, outcome: PolicyOutcome, enforce: bool },
}

impl Plan {
    pub fn enforce(&self) -> bool {
        matches!(self, Plan::Apply { enforce: true, .. })
    }

    /// Under `enforce`, the hops whose host matches the policy; `Err` names
    /// the first host when none does (SPEC §7: a temporary failure).
    pub fn hops(&self, hops: Vec<NextHop>) -> Result<Vec<NextHop>, String> {
        let Plan::Apply { policy, enforce: true, .. } = self else { return Ok(hops) };
        let first = hops.first().map(|h| h.host.clone()).unwrap_or_default();
        let kept: Vec<NextHop> = hops.into_iter().filter(|h| policy.matches(&h.host)).collect();
        if kept.is_empty() {
            return Err(first);
        }
        Ok(kept)
    }

    /// The TLS policy for a hop: `verify` under `enforce` (the connector's
    /// own trust roots when it already verifies, else the MTA-STS ones),
    /// never weaker than the connector's.
    pub(crate) fn tls<'a>(
        &self,
        policy: OutboundTls,
        connector: &'a ConnectorTls,
        sts: &'a ConnectorTls,
    ) -> (OutboundTls, &'a ConnectorTls) {
        match (self.enforce(), policy) {
            (true, OutboundTls::Verify) | (false, _) => (policy, connector),
            (true, _) => (OutboundTls::Verify, sts),
        }
    }

    /// The outcome to record for a session opened to `host`: under
    /// `testing`, the failure enforcement would have had. `sts_verified`:
    /// the certificate verifies against the MTA-STS roots for the host.
    pub fn opened(&self, host: &str, tls: &mut TlsOutcome, sts_verified: bool) {
        let mut o = match self {
            // a pooled session may carry the outcome of another domain's policy
            Plan::Off => {
                tls.policy = None;
                return;
            }
            Plan::Unavailable(o) => o.clone(),
            Plan::Apply { outcome, .. } => outcome.clone(),
        };
        if let Plan::Apply { policy, enforce: false, .. } = self {
            o.failure = if !policy.matches(host) {
                Some("validation-failure".into())
            } else if tls.info.is_none() {
                Some("starttls-not-supported".into())
            } else if !(sts_verified || tls.verified) {
                Some("certificate-not-trusted".into())
            } else {
                None
            };
        }
        tls.policy = Some(o);
    }

    /// A hop failed to open: under `enforce` a TLS failure's text names the
    /// policy (`tls: mta-sts: certificate not trusted`); either way its TLS
    /// outcome carries the policy's result.
    pub(crate) fn failed(&self, f: &mut HopFailure) {
        let mut o = match self {
            Plan::Off => return,
            Plan::Unavailable(o) => o.clone(),
            Plan::Apply { outcome, .. } => outcome.clone(),
        };
        if f.stage != Stage::Tls {
            return;
        }
        if matches!(self, Plan::Apply { .. }) {
            o.failure = Some(result_type(&f.text).into());
        }
        if self.enforce() {
            f.text = format!("mta-sts: {}", f.text);
        }
        let tls = f.tls.get_or_insert(TlsOutcome { info: None, verified: false, note: None, policy: None });
        tls.policy = Some(o);
    }

    /// The TLS outcome of an attempt refused because no MX matches.
    pub fn not_in_policy(&self) -> TlsOutcome {
        let policy = match self {
            Plan::Apply { outcome, .. } => {
                Some(PolicyOutcome { failure: Some("validation-failure".into()), ..outcome.clone() })
            }
            _ => None,
        };
        TlsOutcome { info: None, verified: false, note: Some("no MX host matches the MTA-STS policy".into()), policy }
    }
}

/// RFC 8460 result type of a hop's TLS failure text (see `tls::handshake_failure_text`).
fn result_type(text: &str) -> &'static str {
    match text {
        "STARTTLS not offered" => "starttls-not-supported",
        "certificate not trusted" => "certificate-not-trusted",
        "certificate name mismatch" => "certificate-host-mismatch",
        "certificate expired" => "certificate-expired",
        _ => "validation-failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_policy() {
        let body = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\nx-extra: 1\r\n";
        let p = Policy::parse(body).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(p.lines.len(), 6);
        assert!(p.matches("MAIL.example.com."));
        assert!(p.matches("mx1.example.net"));
        assert!(!p.matches("a.b.example.net"), "the wildcard is one label");
        assert!(!p.matches("example.net"));
        assert!(!p.matches("mail.example.org"));
        let lf = Policy::parse(b"version: STSv1\nmode: none\nmax_age: 0\n").unwrap();
        assert_eq!(lf.mode, Mode::None);
    }

    #[test]
    fn refuses_bad_policies() {
        let p = |s: &str| Policy::parse(s.as_bytes()).unwrap_err();
        assert_eq!(p("mode: enforce\nmx: a.test\nmax_age: 1\n"), PolicyError::NoVersion);
        assert_eq!(p("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n"), PolicyError::Version("STSv2".into()));
        assert_eq!(p("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n"), PolicyError::Mode("strict".into()));
        assert_eq!(
            p("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n"),
            PolicyError::MaxAge("31557601".into())
        );
        assert_eq!(p("version: STSv1\nmode: enforce\nmax_age: 1\n"), PolicyError::NoMx);
        assert_eq!(p("version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n"), PolicyError::Mx("a..b".into()));
        assert_eq!(Policy::parse(b"\xff\xfe").unwrap_err(), PolicyError::NotText);
        assert!(p("version: STSv1\nmode: enforce\nmx: a.test\n").to_string().contains("max_age"));
    }

    #[test]
    fn txt_records() {
        let t = |v: &[&str]| txt_id(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(t(&["v=STSv1; id=20160831085700Z;"]), Some("20160831085700Z".into()));
        assert_eq!(t(&["v=spf1 -all", "v=STSv1;id=abc"]), Some("abc".into()));
        assert_eq!(t(&["v=STSv1; id=a", "v=STSv1; id=b"]), None, "two records: no policy");
        assert_eq!(t(&["v=STSv1;"]), None);
        assert_eq!(t(&["v=STSv1; id=not-alnum"]), None);
        assert_eq!(t(&[]), None);
    }

    #[tokio::test]
    async fn an_unusable_ca_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("garbage.pem"), "not a pem").unwrap();
        for name in ["missing.pem", "garbage.pem"] {
            let path = dir.path().join(name);
            let text = format!(
                "[server]\nhostname = \"h.test\"\nlocal_domains = [\"h.test\"]\n\n[mta_sts]\nca_file = \"{}\"\n",
                path.display()
            );
            let config = Config::parse(&text, Path::new("t.toml")).unwrap();
            let resolver = MxResolver::from_config(&config.dns).unwrap();
            let e = MtaSts::new(&config, resolver).unwrap_err().to_string();
            assert!(e.starts_with("mta_sts.ca_file ") && e.contains(name), "{e}");
        }
    }

    #[test]
    fn failure_texts_map_to_result_types() {
        assert_eq!(result_type("STARTTLS not offered"), "starttls-not-supported");
        assert_eq!(result_type("certificate not trusted"), "certificate-not-trusted");
        assert_eq!(result_type("certificate name mismatch"), "certificate-host-mismatch");
        assert_eq!(result_type("handshake failed: timed out"), "validation-failure");
    }
}
