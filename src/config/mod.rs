//! Typed configuration: the whole schema of SPEC §3, its defaults, and the
//! validation that runs before anything starts.
//!
//! Every error names the file, the line and the key, in one sentence: serde
//! errors carry a span from the TOML parser, and the checks that run after
//! parsing (dangling references, ranges, duplicates) look the key up in a
//! spanned parse of the same text ([`locate`]). This module never touches
//! the network or the data directory; it only reads the one file.

mod locate;
pub mod values;

pub use values::*;

use crate::proto::nntp::wildmat::Wildmat;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default location, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/postern.toml";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default, rename = "virtual_server")]
    pub virtual_servers: Vec<VirtualServer>,
    #[serde(default, rename = "connector")]
    pub connectors: Vec<Connector>,
    #[serde(default)]
    pub queue: QueueSection,
    #[serde(default)]
    pub dns: DnsSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub news: NewsSection,
    #[serde(default, rename = "news_peer")]
    pub news_peers: Vec<NewsPeer>,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub mta_sts: MtaStsSection,
    /// The file this was read from (for messages).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub hostname: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub local_domains: Vec<String>,
    #[serde(default)]
    pub relay_domains: Vec<String>,
    /// Defaults to `postmaster@` the first local domain.
    #[serde(default)]
    pub postmaster: String,
    /// Threads running sessions and deliveries: 0 (the default) means one
    /// per CPU core; 1 runs everything on one event loop, which does better
    /// when the cores are shared with other busy programs.
    #[serde(default)]
    pub worker_threads: usize,
    /// Started as root: bind the listeners and read the keys, then run as
    /// this user for good (SPEC §3).
    #[serde(default)]
    pub user: Option<String>,
    /// The group to run as; the user's primary group when unset.
    #[serde(default)]
    pub group: Option<String>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("queue-data")
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    #[serde(default)]
    pub certificates: BTreeMap<String, CertificateConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub self_signed_if_missing: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    pub name: String,
    pub protocol: Protocol,
    pub listen: Vec<String>,
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub certificates: Vec<String>,
    #[serde(default)]
    pub require_tls: bool,
    #[serde(default)]
    pub min_tls_version: TlsVersion,
    #[serde(default)]
    pub auth: AuthMode,
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    #[serde(default)]
    pub relay_networks: Vec<String>,
    /// Defaults to true when `auth = "required"` (a submission server).
    #[serde(default)]
    pub sender_must_match_auth: Option<bool>,
    #[serde(default = "default_max_message_size")]
    pub max_message_size: Size,
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    /// NNTP only: whether POST works without AUTHINFO.
    #[serde(default)]
    pub allow_anonymous_posting: bool,

    /// Parsed forms of `listen` and `relay_networks`, filled in by validation.
    #[serde(skip)]
    pub listen_addrs: Vec<SocketAddr>,
    #[serde(skip)]
    pub relay_nets: Vec<IpNet>,
}

impl VirtualServer {
    pub fn sender_must_match_auth(&self) -> bool {
        self.sender_must_match_auth.unwrap_or(self.auth == AuthMode::Required)
    }

    /// A submission server takes mail from authenticated users' clients:
    /// it fixes up missing Message-ID and Date headers (RFC 6409 §8).
    pub fn is_submission(&self) -> bool {
        self.protocol == Protocol::Smtp && self.auth == AuthMode::Required
    }

    pub fn in_relay_networks(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.relay_nets.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn default_max_message_size() -> Size {
    Size(25 << 20)
}
fn default_max_recipients() -> usize {
    100
}
fn default_max_connections() -> usize {
    500
}
fn default_max_connections_per_ip() -> usize {
    20
}
fn default_idle_timeout() -> Dur {
    Dur(Duration::from_secs(300))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    pub name: String,
    pub address_spaces: Vec<AddressSpace>,
    #[serde(default = "default_cost")]
    pub cost: u32,
    #[serde(default)]
    pub tls: OutboundTls,
    #[serde(default)]
    pub smarthost: Option<String>,
    #[serde(default)]
    pub smarthost_tls: SmarthostTls,
    #[serde(default)]
    pub auth_username: Option<String>,
    #[serde(default)]
    pub auth_password_file: Option<PathBuf>,
    /// Virtual servers whose mail may use this connector; `None` means all.
    #[serde(default)]
    pub source_servers: Option<Vec<String>>,
    #[serde(default)]
    pub helo_name: Option<String>,
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The port of the recipient domain's MX hosts (without a smarthost);
    /// 25 when absent. A lab, or a test, runs receiving servers elsewhere.
    #[serde(default)]
    pub mx_port: Option<u16>,
    /// Honour the recipient domain's MTA-STS policy (RFC 8461) on MX
    /// delivery; a smarthost is the operator's own policy and never uses it.
    #[serde(default = "default_true")]
    pub mta_sts: bool,

    /// Parsed `smarthost`, filled in by validation.
    #[serde(skip)]
    pub smarthost_addr: Option<HostPort>,
}

impl Connector {
    pub fn serves(&self, source_server: &str) -> bool {
        match &self.source_servers {
            None => true,
            Some(list) => list.iter().any(|s| s == source_server),
        }
    }

    /// The smarthost port: explicit, else 465 for implicit TLS, else 25.
    pub fn smarthost_port(&self) -> u16 {
        let default = match self.smarthost_tls {
            SmarthostTls::Implicit => 465,
            SmarthostTls::Starttls => 25,
        };
        self.smarthost_addr.as_ref().map(|h| h.port_or(default)).unwrap_or(25)
    }
}

fn default_true() -> bool {
    true
}

/// `[mta_sts]`: how MTA-STS policies are fetched and MX certificates
/// verified under them (SPEC §7).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtaStsSection {
    /// PEM CA certificates trusted for the policy host's HTTPS and for MX
    /// certificates under a policy; the built-in web roots when absent. The
    /// transport loads it at start, so an unreadable file stops the start.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The HTTPS port of `mta-sts.<domain>`: 443 on the Internet.
    #[serde(default = "default_mta_sts_port")]
    pub port: u16,
}

impl Default for MtaStsSection {
    fn default() -> Self {
        MtaStsSection { ca_file: None, port: default_mta_sts_port() }
    }
}

fn default_mta_sts_port() -> u16 {
    443
}

fn default_cost() -> u32 {
    10
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    #[serde(default = "default_retry_schedule")]
    pub retry_schedule: Vec<Dur>,
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime: Dur,
    #[serde(default = "default_delay_warning")]
    pub delay_warning_after: Dur,
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: usize,
    #[serde(default = "default_max_per_destination")]
    pub max_per_destination: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            retry_schedule: default_retry_schedule(),
            max_lifetime: default_max_lifetime(),
            delay_warning_after: default_delay_warning(),
            max_deliveries: default_max_deliveries(),
            max_per_destination: default_max_per_destination(),
        }
    }
}

impl QueueSection {
    /// The delay before attempt number `attempts + 1`; the last step repeats.
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry_schedule.len().saturating_sub(1));
        self.retry_schedule.get(i).map(|d| d.0).unwrap_or(Duration::from_secs(300))
    }
}

fn default_retry_schedule() -> Vec<Dur> {
    ["1m", "5m", "15m", "30m", "1h", "2h", "4h"]
        .iter()
        .map(|s| Dur::try_from(s.to_string()).unwrap_or(Dur(Duration::from_secs(60))))
        .collect()
}
fn default_max_lifetime() -> Dur {
    Dur(Duration::from_secs(2 * 86400))
}
fn default_delay_warning() -> Dur {
    Dur(Duration::from_secs(4 * 3600))
}
fn default_max_deliveries() -> usize {
    64
}
fn default_max_per_destination() -> usize {
    8
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// `"ip"` or `"ip:port"`; empty means the system resolver.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// How long one query may take before it counts as a temporary failure.
    #[serde(default = "default_dns_timeout")]
    pub timeout: Dur,
    /// Validate answers with DNSSEC, and use DANE (TLSA) for MX delivery
    /// where the records validate (SPEC §7).
    #[serde(default)]
    pub dnssec: bool,
    /// A file of DNSKEY records (zone-file lines) to trust instead of the
    /// root zone's KSK, e.g. for a lab's own signed root.
    #[serde(default)]
    pub trust_anchor: Option<PathBuf>,
    #[serde(skip)]
    pub nameserver_addrs: Vec<SocketAddr>,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            nameservers: Vec::new(),
            timeout: default_dns_timeout(),
            dnssec: false,
            trust_anchor: None,
            nameserver_addrs: Vec::new(),
        }
    }
}

/// A `[dns] trust_anchor` file that cannot be used: unreadable, not
/// DNSKEY records, or without any.
pub fn check_trust_anchor(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("dns.trust_anchor {}: cannot read the file: {e}", path.display()))?;
    text.parse::<hickory_proto::dnssec::TrustAnchors>()
        .map_err(|e| format!("dns.trust_anchor {}: not DNSKEY records: {e}", path.display()))?;
    // the parser takes an empty file; an anchor without keys would make every signed zone bogus
    let has_key = text.lines().any(|l| {
        let l = l.split(';').next().unwrap_or_default();
        l.split_whitespace().any(|t| t.eq_ignore_ascii_case("DNSKEY"))
    });
    if !has_key {
        return Err(format!("dns.trust_anchor {}: no DNSKEY record in the file", path.display()));
    }
    Ok(())
}

fn default_dns_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// Defaults to `control.sock` in the data directory.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
    /// How long the message tracking log keeps its day files; "0s" keeps them forever.
    #[serde(default = "default_tracking_retention")]
    pub tracking_retention: Dur,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: default_log_level(),
            format: LogFormat::Text,
            tracking_retention: default_tracking_retention(),
        }
    }
}

impl LogSection {
    /// None: the tracking log is kept forever.
    pub fn tracking_retention(&self) -> Option<Duration> {
        (!self.tracking_retention.0.is_zero()).then_some(self.tracking_retention.0)
    }
}

fn default_tracking_retention() -> Dur {
    Dur(Duration::from_secs(30 * 86_400))
}

fn default_log_level() -> String {
    "info".into()
}

/// Authentication failure throttling (SPEC §4: five failures from one IP in
/// ten minutes); configurable so tests and small sites can tune it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
    #[serde(default = "default_failure_window")]
    pub failure_window: Dur,
    #[serde(default = "default_failure_delay")]
    pub failure_delay: Dur,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            failure_limit: default_failure_limit(),
            failure_window: default_failure_window(),
            failure_delay: default_failure_delay(),
        }
    }
}

fn default_failure_limit() -> u32 {
    5
}
fn default_failure_window() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_failure_delay() -> Dur {
    Dur(Duration::from_secs(1))
}

/// `[news]`: the news store's policy (SPEC §9).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsSection {
    /// Articles older than this are removed; `"0s"` keeps them forever.
    #[serde(default = "default_expire_after")]
    pub expire_after: Dur,
}

impl Default for NewsSection {
    fn default() -> Self {
        NewsSection { expire_after: default_expire_after() }
    }
}

impl NewsSection {
    /// `None`: keep articles forever.
    pub fn expire_after(&self) -> Option<Duration> {
        (!self.expire_after.0.is_zero()).then_some(self.expire_after.0)
    }
}

fn default_expire_after() -> Dur {
    Dur(Duration::from_secs(90 * 86_400))
}

/// `[metrics]`: where Prometheus scrapes (SPEC §12); unset, nothing listens.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `ip:port` of the HTTP listener for `GET /metrics`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Parsed `listen`, filled in by validation.
    #[serde(skip)]
    pub listen_addr: Option<SocketAddr>,
}

/// Outgoing feed TLS to a news peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedTls {
    None,
    #[default]
    Opportunistic,
    Required,
}

/// `[[news_peer]]`: a server we exchange articles with (SPEC §9).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsPeer {
    pub name: String,
    /// `host:port` (port 119 when omitted) we push new articles to.
    #[serde(default)]
    pub feed_to: Option<String>,
    #[serde(default)]
    pub feed_tls: FeedTls,
    /// Addresses (CIDR or IP) that may feed us with IHAVE or streaming.
    #[serde(default)]
    pub accept_from: Vec<String>,
    /// Wildmat patterns (RFC 3977 §4), joined with commas: the groups
    /// exchanged with this peer.
    #[serde(default = "default_peer_groups")]
    pub groups: Vec<String>,

    /// Parsed forms, filled in by validation.
    #[serde(skip)]
    pub feed_addr: Option<HostPort>,
    #[serde(skip)]
    pub accept_nets: Vec<IpNet>,
    #[serde(skip)]
    pub group_filter: Option<Wildmat>,
}

impl NewsPeer {
    /// Whether `ip` may feed us as this peer.
    pub fn accepts(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.accept_nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether `group` is exchanged with this peer.
    pub fn wants(&self, group: &str) -> bool {
        self.group_filter.as_ref().is_some_and(|w| w.matches(group))
    }
}

fn default_peer_groups() -> Vec<String> {
    vec!["*".to_string()]
}

/// A configuration problem: one sentence naming the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    At { path: String, line: usize, message: String },
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let message = friendlier(&single_line(e.message()));
            match e.span() {
                Some(span) => {
                    let line = locate::line_of(text, span.start);
                    let message = match message.strip_prefix("unknown field ") {
                        Some(rest) => unknown_key(rest, locate::section_of_line(text, line)),
                        None => message,
                    };
                    let key = locate::key_on_line(text, line);
                    let message = match key {
                        // serde's "unknown field" already names the key
                        Some(k) if !message.contains(&format!("`{k}`")) => {
                            format!("{k}: {message}")
                        }
                        _ => message,
                    };
                    ConfigError::At { path: shown.clone(), line, message }
                }
                None => ConfigError::File { path: shown.clone(), message },
            }
        })?;
        config.path = path.to_path_buf();
        if let Err(problem) = config.validate() {
            let line = locate::line_of_path(text, &problem.key);
            return Err(match line {
                Some(line) => ConfigError::At { path: shown, line, message: problem.message },
                None => ConfigError::File { path: shown, message: problem.message },
            });
        }
        Ok(config)
    }

    pub fn virtual_server(&self, name: &str) -> Option<&VirtualServer> {
        self.virtual_servers.iter().find(|v| v.name == name)
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.server.local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    pub fn is_relay_domain(&self, domain: &str) -> bool {
        self.server.relay_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    pub fn control_socket(&self) -> PathBuf {
        self.control.socket.clone().unwrap_or_else(|| self.server.data_dir.join("control.sock"))
    }

    /// Settings that are valid but do not do what they seem to: check-config
    /// prints these as warnings, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.virtual_servers {
            if v.require_tls && v.allow_plaintext_auth {
                out.push(format!(
                    "virtual server {:?}: allow_plaintext_auth has no effect with require_tls = true \
                     (credentials are taken only after TLS)",
                    v.name
                ));
            }
        }
        if self.dns.trust_anchor.is_some() && !self.dns.dnssec {
            out.push(
                "dns.trust_anchor has no effect without dns.dnssec = true (answers are not validated)".to_string(),
            );
        }
        if let Some(addr) = self.metrics.listen_addr.filter(|a| !a.ip().is_loopback()) {
            out.push(format!(
                "metrics.listen {addr} is not a loopback address: anyone who reaches it can read the metrics \
                 (server names, destinations, certificate names); keep it on 127.0.0.1 or behind a firewall"
            ));
        }
        out
    }

    fn validate(&mut self) -> Result<(), Problem> {
        use locate::Seg::{Idx, Key};
        let s = &mut self.server;
        if !is_domain_name(&s.hostname) {
            return Err(Problem::new(
                vec![Key("server"), Key("hostname")],
                format!("server.hostname {:?} is not a valid host name", s.hostname),
            ));
        }
        for (key, list) in [("local_domains", &mut s.local_domains), ("relay_domains", &mut s.relay_domains)] {
            for (i, d) in list.iter_mut().enumerate() {
                // one canonical (A-label) form, as the address parser makes
                match crate::domain::canonical(d) {
                    Ok(c) if is_domain_name(&c) => *d = c,
                    _ => {
                        return Err(Problem::new(
                            vec![Key("server"), Key(key), Idx(i)],
                            format!("server.{key}: {d:?} is not a valid domain name"),
                        ))
                    }
                }
            }
        }
        if let Some(d) = s.relay_domains.iter().find(|d| s.local_domains.contains(d)) {
            return Err(Problem::new(
                vec![Key("server"), Key("relay_domains")],
                format!("server.relay_domains: {d:?} is also a local domain; a domain is one or the other"),
            ));
        }
        if s.postmaster.is_empty() {
            match s.local_domains.first() {
                Some(d) => s.postmaster = format!("postmaster@{d}"),
                None => {
                    return Err(Problem::new(
                        vec![Key("server")],
                        "server.postmaster must be set when there are no local_domains".into(),
                    ))
                }
            }
        } else if !looks_like_address(&s.postmaster) {
            return Err(Problem::new(
                vec![Key("server"), Key("postmaster")],
                format!("server.postmaster {:?} is not an address (local@domain)", s.postmaster),
            ));
        }

        if s.group.is_some() && s.user.is_none() {
            return Err(Problem::new(
                vec![Key("server"), Key("group")],
                "server.group is only used together with server.user".into(),
            ));
        }

        for (name, c) in &self.tls.certificates {
            if c.cert.as_os_str().is_empty() || c.key.as_os_str().is_empty() {
                return Err(Problem::new(
                    vec![Key("tls"), Key("certificates"), locate::Seg::Name(name.clone())],
                    format!("tls.certificates.{name}: cert and key must both name files"),
                ));
            }
        }

        let mut names = HashSet::new();
        for (i, v) in self.virtual_servers.iter_mut().enumerate() {
            let at = |k: &'static str| vec![Key("virtual_server"), Idx(i), Key(k)];
            let vs = format!("virtual server {:?}", v.name);
            if v.name.is_empty() || !v.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(Problem::new(
                    at("name"),
                    format!("virtual_server name {:?} must be letters, digits, '-' or '_'", v.name),
                ));
            }
            if !names.insert(v.name.clone()) {
                return Err(Problem::new(at("name"), format!("two virtual servers are named {:?}", v.name)));
            }
            if v.listen.is_empty() {
                return Err(Problem::new(at("listen"), format!("{vs}: listen needs at least one address")));
            }
            v.listen_addrs.clear();
            for (j, l) in v.listen.iter().enumerate() {
                match l.parse::<SocketAddr>() {
                    Ok(a) => v.listen_addrs.push(a),
                    Err(_) => {
                        return Err(Problem::new(
                            vec![Key("virtual_server"), Idx(i), Key("listen"), Idx(j)],
                            format!(
                                "{vs}: listen address {l:?} is not ip:port (e.g. \"127.0.0.1:2525\" or \"[::1]:2525\")"
                            ),
                        ))
                    }
                }
            }
            for (j, c) in v.certificates.iter().enumerate() {
                if !self.tls.certificates.contains_key(c) {
                    return Err(Problem::new(
                        vec![Key("virtual_server"), Idx(i), Key("certificates"), Idx(j)],
                        format!("{vs}: certificates names {c:?}, which is not defined as [tls.certificates.{c}]"),
                    ));
                }
            }
            if v.tls != TlsMode::None && v.certificates.is_empty() {
                return Err(Problem::new(
                    at("certificates"),
                    format!("{vs}: TLS needs at least one entry in certificates"),
                ));
            }
            if v.tls == TlsMode::None && v.require_tls {
                return Err(Problem::new(
                    at("require_tls"),
                    format!("{vs}: require_tls = true cannot be met with tls = \"none\""),
                ));
            }
            v.relay_nets.clear();
            for (j, n) in v.relay_networks.iter().enumerate() {
                match parse_network(n) {
                    Some(net) => v.relay_nets.push(net),
                    None => {
                        return Err(Problem::new(
                            vec![Key("virtual_server"), Idx(i), Key("relay_networks"), Idx(j)],
                            format!(
                                "{vs}: relay_networks entry {n:?} is not a CIDR (e.g. \"10.0.0.0/8\") or an IP address"
                            ),
                        ))
                    }
                }
            }
            for (k, n) in [
                ("max_recipients", v.max_recipients),
                ("max_connections", v.max_connections),
                ("max_connections_per_ip", v.max_connections_per_ip),
            ] {
                if n == 0 {
                    return Err(Problem::new(at(k), format!("{vs}: {k} must be at least 1")));
                }
            }
            if v.max_message_size.0 == 0 {
                return Err(Problem::new(
                    at("max_message_size"),
                    format!("{vs}: max_message_size must be more than 0"),
                ));
            }
            if v.idle_timeout.0.is_zero() {
                return Err(Problem::new(at("idle_timeout"), format!("{vs}: idle_timeout must be more than 0s")));
            }
        }

        let mut names = HashSet::new();
        for (i, c) in self.connectors.iter_mut().enumerate() {
            let at = |k: &'static str| vec![Key("connector"), Idx(i), Key(k)];
            let cn = format!("connector {:?}", c.name);
            if c.name.is_empty() || c.name.contains(['/', ' ']) {
                return Err(Problem::new(
                    at("name"),
                    format!("connector name {:?} must be non-empty, without '/' or spaces", c.name),
                ));
            }
            if c.name == "local" {
                return Err(Problem::new(at("name"), "connector name \"local\" is reserved for local delivery".into()));
            }
            if !names.insert(c.name.clone()) {
                return Err(Problem::new(at("name"), format!("two connectors are named {:?}", c.name)));
            }
            if c.address_spaces.is_empty() {
                return Err(Problem::new(
                    at("address_spaces"),
                    format!("{cn}: address_spaces needs at least one entry"),
                ));
            }
            if !(1..=100).contains(&c.cost) {
                return Err(Problem::new(at("cost"), format!("{cn}: cost {} is outside 1..100", c.cost)));
            }
            c.smarthost_addr = match &c.smarthost {
                None => None,
                Some(h) => Some(HostPort::parse(h).map_err(|m| Problem::new(at("smarthost"), format!("{cn}: {m}")))?),
            };
            if c.auth_username.is_some() != c.auth_password_file.is_some() {
                return Err(Problem::new(
                    at(if c.auth_username.is_some() { "auth_username" } else { "auth_password_file" }),
                    format!("{cn}: auth_username and auth_password_file go together"),
                ));
            }
            if c.auth_username.is_some() && c.smarthost.is_none() {
                return Err(Problem::new(
                    at("auth_username"),
                    format!("{cn}: AUTH is only used towards a smarthost; set smarthost"),
                ));
            }
            if c.auth_username.is_some() && c.tls == OutboundTls::None && c.smarthost_tls != SmarthostTls::Implicit {
                return Err(Problem::new(
                    at("tls"),
                    format!("{cn}: AUTH never goes over plaintext; tls = \"none\" would never send the credentials"),
                ));
            }
            if c.mx_port == Some(0) {
                return Err(Problem::new(at("mx_port"), format!("{cn}: mx_port 0 is not a port (1..65535)")));
            }
            if c.mx_port.is_some() && c.smarthost.is_some() {
                return Err(Problem::new(
                    at("mx_port"),
                    format!("{cn}: mx_port is for MX delivery; a smarthost carries its own port"),
                ));
            }
            if let Some(h) = &c.helo_name {
                if !is_domain_name(h) {
                    return Err(Problem::new(at("helo_name"), format!("{cn}: helo_name {h:?} is not a host name")));
                }
            }
            if let Some(list) = &c.source_servers {
                for (j, s) in list.iter().enumerate() {
                    match self.virtual_servers.iter().find(|v| &v.name == s) {
                        Some(v) if v.protocol == Protocol::Smtp => {}
                        Some(_) => {
                            return Err(Problem::new(
                                vec![Key("connector"), Idx(i), Key("source_servers"), Idx(j)],
                                format!("{cn}: source_servers names {s:?}, which is not an SMTP virtual server"),
                            ))
                        }
                        None => {
                            return Err(Problem::new(
                                vec![Key("connector"), Idx(i), Key("source_servers"), Idx(j)],
                                format!("{cn}: source_servers names {s:?}, which is not a [[virtual_server]]"),
                            ))
                        }
                    }
                }
            }
        }

        let mut names = HashSet::new();
        for (i, p) in self.news_peers.iter_mut().enumerate() {
            let at = |k: &'static str| vec![Key("news_peer"), Idx(i), Key(k)];
            let pn = format!("news peer {:?}", p.name);
            if p.name.is_empty() || !p.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return Err(Problem::new(
                    at("name"),
                    format!("news_peer name {:?} must be letters, digits, '-', '_' or '.'", p.name),
                ));
            }
            if !names.insert(p.name.clone()) {
                return Err(Problem::new(at("name"), format!("two news peers are named {:?}", p.name)));
            }
            p.feed_addr = match &p.feed_to {
                None => None,
                Some(h) => Some(HostPort::parse(h).map_err(|m| Problem::new(at("feed_to"), format!("{pn}: {m}")))?),
            };
            p.accept_nets.clear();
            for (j, n) in p.accept_from.iter().enumerate() {
                match parse_network(n) {
                    Some(net) => p.accept_nets.push(net),
                    None => {
                        return Err(Problem::new(
                            vec![Key("news_peer"), Idx(i), Key("accept_from"), Idx(j)],
                            format!(
                                "{pn}: accept_from entry {n:?} is not a CIDR (e.g. \"192.0.2.0/24\") or an IP address"
                            ),
                        ))
                    }
                }
            }
            if p.feed_to.is_none() && p.accept_from.is_empty() {
                return Err(Problem::new(
                    at("name"),
                    format!("{pn}: set feed_to, accept_from or both; otherwise nothing is exchanged"),
                ));
            }
            p.group_filter = Some(
                Wildmat::from_list(&p.groups).map_err(|e| Problem::new(at("groups"), format!("{pn}: groups: {e}")))?,
            );
        }

        let kept = self.log.tracking_retention.0;
        if !kept.is_zero() && kept < Duration::from_secs(86_400) {
            return Err(Problem::new(
                vec![Key("log"), Key("tracking_retention")],
                "log.tracking_retention must be at least \"1d\" (whole day files are removed), or \"0s\" to keep the log forever".into(),
            ));
        }

        let q = &self.queue;
        if q.retry_schedule.is_empty() || q.retry_schedule.iter().any(|d| d.0.is_zero()) {
            return Err(Problem::new(
                vec![Key("queue"), Key("retry_schedule")],
                "queue.retry_schedule needs at least one duration, none of them 0s".into(),
            ));
        }
        if q.max_deliveries == 0 || q.max_per_destination == 0 {
            return Err(Problem::new(
                vec![Key("queue"), Key(if q.max_deliveries == 0 { "max_deliveries" } else { "max_per_destination" })],
                "queue.max_deliveries and queue.max_per_destination must be at least 1".into(),
            ));
        }

        if let Some(path) = &self.dns.trust_anchor {
            check_trust_anchor(path).map_err(|m| Problem::new(vec![Key("dns"), Key("trust_anchor")], m))?;
        }

        self.dns.nameserver_addrs.clear();
        for (i, n) in self.dns.nameservers.iter().enumerate() {
            let addr =
                n.parse::<SocketAddr>().ok().or_else(|| n.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
            match addr {
                Some(a) => self.dns.nameserver_addrs.push(a),
                None => {
                    return Err(Problem::new(
                        vec![Key("dns"), Key("nameservers"), Idx(i)],
                        format!("dns.nameservers entry {n:?} is not an IP address or ip:port"),
                    ))
                }
            }
        }

        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(Problem::new(
                vec![Key("log"), Key("level")],
                format!("log.level {:?} is not one of error, warn, info, debug, trace", self.log.level),
            ));
        }
        if self.auth.failure_limit == 0 {
            return Err(Problem::new(
                vec![Key("auth"), Key("failure_limit")],
                "auth.failure_limit must be at least 1".into(),
            ));
        }
        if self.mta_sts.port == 0 {
            return Err(Problem::new(
                vec![Key("mta_sts"), Key("port")],
                "mta_sts.port 0 is not a port (1..65535)".to_string(),
            ));
        }
        self.metrics.listen_addr = match &self.metrics.listen {
            None => None,
            Some(l) => {
                let at = vec![Key("metrics"), Key("listen")];
                let Ok(addr) = l.parse::<SocketAddr>() else {
                    return Err(Problem::new(
                        at,
                        format!("metrics.listen {l:?} is not ip:port (e.g. \"127.0.0.1:9187\" or \"[::1]:9187\")"),
                    ));
                };
                let taken = self.virtual_servers.iter().find(|v| addr.port() != 0 && v.listen_addrs.contains(&addr));
                if let Some(v) = taken {
                    return Err(Problem::new(
                        at,
                        format!("metrics.listen {addr} is also a listen address of virtual server {:?}", v.name),
                    ));
                }
                Some(addr)
            }
        };
        Ok(())
    }
}

/// A validation failure before it is placed on a line.
struct Problem {
    key: Vec<locate::Seg>,
    message: String,
}

impl Problem {
    fn new(key: Vec<locate::Seg>, message: String) -> Problem {
        Problem { key, message }
    }
}

/// serde's words for people: no Rust type names.
fn friendlier(message: &str) -> String {
    let mut m = message.to_string();
    for t in ["usize", "u64", "u32", "u16", "u8"] {
        m = m.replace(&format!("expected {t}"), "expected a whole number");
    }
    m.replace("expected i64", "expected a number")
}

/// serde's "`key`, expected one of `a`, `b`, ..." as one sentence naming the
/// section and the key most likely meant.
fn unknown_key(rest: &str, section: Option<String>) -> String {
    let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let Some((key, expected)) = names.split_first() else { return format!("unknown field {rest}") };
    let place = section.map(|s| format!(" in {s}")).unwrap_or_default();
    let closest = expected.iter().map(|e| (edit_distance(key, e), *e)).min();
    match closest {
        Some((d, e)) if d <= (key.len() / 3).max(2) => format!("unknown key `{key}`{place}; did you mean `{e}`?"),
        _ if expected.is_empty() => format!("unknown key `{key}`{place}"),
        _ => format!("unknown key `{key}`{place}; known keys: {}", expected.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn single_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn looks_like_address(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((l, d)) => !l.is_empty() && is_domain_name(d),
        None => false,
    }
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
pub fn parse_network(s: &str) -> Option<IpNet> {
    let t = s.trim();
    t.parse::<IpNet>().ok().or_else(|| t.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
hostname = "mail.example.test"
local_domains = ["example.test"]

[tls.certificates.main]
cert = "c.pem"
key = "k.pem"

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:2525"]
tls = "starttls"
certificates = ["main"]
"#;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn minimal_parses_with_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.server.postmaster, "postmaster@example.test");
        assert_eq!(c.virtual_servers[0].max_message_size.0, 25 << 20);
        assert_eq!(c.queue.retry_schedule.len(), 7);
        assert_eq!(c.queue.retry_delay(1), Duration::from_secs(60));
        assert_eq!(c.queue.retry_delay(100), Duration::from_secs(4 * 3600));
        assert_eq!(c.control_socket(), PathBuf::from("queue-data/control.sock"));
    }

    #[test]
    fn metrics_listen_is_checked_and_warned_about_off_loopback() {
        assert_eq!(parse(MINIMAL).unwrap().metrics.listen_addr, None, "no [metrics]: no listener");
        let c = parse(&format!("{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9187\"\n")).unwrap();
        assert_eq!(c.metrics.listen_addr, Some("127.0.0.1:9187".parse().unwrap()));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let e = parse(&format!("{MINIMAL}[metrics]\nlisten = \"localhost\"\n")).unwrap_err().to_string();
        assert_eq!(
            e,
            "test.toml:17: metrics.listen \"localhost\" is not ip:port (e.g. \"127.0.0.1:9187\" or \"[::1]:9187\")"
        );
        let e = parse(&format!("{MINIMAL}[metrics]\nlisten = \"127.0.0.1:2525\"\n")).unwrap_err().to_string();
        assert!(e.ends_with("metrics.listen 127.0.0.1:2525 is also a listen address of virtual server \"mx\""), "{e}");
        let c = parse(&format!("{MINIMAL}[metrics]\nlisten = \"0.0.0.0:9187\"\n")).unwrap();
        let w = c.warnings();
        assert!(w.len() == 1 && w[0].starts_with("metrics.listen 0.0.0.0:9187 is not a loopback address"), "{w:?}");
    }

    #[test]
    fn dnssec_and_trust_anchor() {
        let c = parse(MINIMAL).unwrap();
        assert!(!c.dns.dnssec && c.dns.trust_anchor.is_none(), "off by default; the root KSK when on");
        let dir = tempfile::tempdir().unwrap();
        let anchor = dir.path().join("anchor.keys");
        std::fs::write(&anchor, ". 3600 IN DNSKEY 257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=\n").unwrap();
        let with = |p: &Path| format!("{MINIMAL}[dns]\ndnssec = true\ntrust_anchor = \"{}\"\n", p.display());
        let c = parse(&with(&anchor)).unwrap();
        assert!(c.dns.dnssec && c.warnings().is_empty());
        let missing = dir.path().join("missing.keys");
        let e = parse(&with(&missing)).unwrap_err().to_string();
        assert!(e.contains("dns.trust_anchor") && e.contains("missing.keys") && e.contains("cannot read"), "{e}");
        std::fs::write(&anchor, "; nothing here\n").unwrap();
        let e = parse(&with(&anchor)).unwrap_err().to_string();
        assert!(e.contains("anchor.keys") && e.contains("no DNSKEY"), "{e}");
        std::fs::write(&anchor, ". IN DNSKEY not-a-key\n").unwrap();
        let e = parse(&with(&anchor)).unwrap_err().to_string();
        assert!(e.contains("anchor.keys") && e.contains("not DNSKEY records"), "{e}");
        std::fs::write(&anchor, ". 3600 IN DNSKEY 257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=\n").unwrap();
        let c = parse(&with(&anchor).replace("dnssec = true", "dnssec = false")).unwrap();
        assert!(c.warnings().iter().any(|w| w.contains("trust_anchor has no effect")), "{:?}", c.warnings());
    }

    #[test]
    fn mx_port_is_a_port_and_only_for_mx_delivery() {
        let conn = |extra: &str| format!("{MINIMAL}[[connector]]\nname = \"lab\"\naddress_spaces = [\"*\"]\n{extra}\n");
        assert_eq!(parse(&conn("")).unwrap().connectors[0].mx_port, None, "absent: 25 (the transport's default)");
        assert_eq!(parse(&conn("mx_port = 2526")).unwrap().connectors[0].mx_port, Some(2526));
        let e = parse(&conn("mx_port = 0")).unwrap_err().to_string();
        assert!(e.ends_with("connector \"lab\": mx_port 0 is not a port (1..65535)"), "{e}");
        let e = parse(&conn("mx_port = 70000")).unwrap_err().to_string();
        assert!(e.contains("mx_port"), "{e}");
        let e = parse(&conn("mx_port = 2526\nsmarthost = \"relay.example.net:587\"")).unwrap_err().to_string();
        assert!(e.ends_with("connector \"lab\": mx_port is for MX delivery; a smarthost carries its own port"), "{e}");
    }

    #[test]
    fn mta_sts_keys_and_defaults() {
        let conn = |extra: &str| format!("{MINIMAL}[[connector]]\nname = \"lab\"\naddress_spaces = [\"*\"]\n{extra}\n");
        let c = parse(&conn("")).unwrap();
        assert!(c.connectors[0].mta_sts, "MTA-STS is on by default");
        assert_eq!((c.mta_sts.ca_file.clone(), c.mta_sts.port), (None, 443));
        assert!(!parse(&conn("mta_sts = false")).unwrap().connectors[0].mta_sts);
        let c = parse(&format!("{}\n[mta_sts]\nca_file = \"/etc/ca.pem\"\nport = 8443\n", conn(""))).unwrap();
        assert_eq!((c.mta_sts.ca_file, c.mta_sts.port), (Some(PathBuf::from("/etc/ca.pem")), 8443));
        let e = parse(&format!("{}\n[mta_sts]\nport = 0\n", conn(""))).unwrap_err().to_string();
        assert!(e.ends_with("mta_sts.port 0 is not a port (1..65535)"), "{e}");
        let e = parse(&format!("{}\n[mta_sts]\nbogus = 1\n", conn(""))).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let t = MINIMAL.replace("tls = \"starttls\"", "tls = \"starttls\"\nbogus_key = 1");
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.starts_with("test.toml:15:"), "{e}");
        assert!(e.contains("bogus_key"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let t = format!("{MINIMAL}idle_timeout = \"five minutes\"\n");
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.starts_with("test.toml:16:"), "{e}");
        assert!(e.contains("idle_timeout") && e.contains("five minutes"), "{e}");
    }

    #[test]
    fn missing_certificate_names_key_and_line() {
        let t = MINIMAL.replace("certificates = [\"main\"]", "certificates = [\"main\", \"nosuch\"]");
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.starts_with("test.toml:15:"), "{e}");
        assert!(e.contains("nosuch") && e.contains("certificates"), "{e}");
    }

    #[test]
    fn connector_checks() {
        let t = format!("{MINIMAL}\n[[connector]]\nname = \"x\"\naddress_spaces = [\"*\"]\ncost = 500\n");
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.contains(":20:") && e.contains("cost"), "{e}");
        let t =
            format!("{MINIMAL}\n[[connector]]\nname = \"x\"\naddress_spaces = [\"*\"]\nsource_servers = [\"nope\"]\n");
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.contains(":20:") && e.contains("nope"), "{e}");
        let t = format!("{MINIMAL}\n[[connector]]\nname = \"x\"\naddress_spaces = [\"bad domain\"]\n");
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.contains(":19:") && e.contains("bad domain"), "{e}");
    }

    #[test]
    fn run_as_user_and_group() {
        let with = |lines: &str| MINIMAL.replace("[server]\n", &format!("[server]\n{lines}"));
        let c = parse(&with("user = \"postern\"\ngroup = \"mail\"\n")).unwrap();
        assert_eq!((c.server.user.as_deref(), c.server.group.as_deref()), (Some("postern"), Some("mail")));
        let e = parse(&with("group = \"mail\"\n")).unwrap_err().to_string();
        assert!(e.contains("server.group") && e.contains("server.user"), "{e}");
    }

    #[test]
    fn tracking_retention_defaults_to_30_days_and_keeps_whole_days() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.log.tracking_retention(), Some(Duration::from_secs(30 * 86_400)));
        let c = parse(&format!("{MINIMAL}\n[log]\ntracking_retention = \"0s\"\n")).unwrap();
        assert_eq!(c.log.tracking_retention(), None);
        let e = parse(&format!("{MINIMAL}\n[log]\ntracking_retention = \"6h\"\n")).unwrap_err().to_string();
        assert!(e.contains("log.tracking_retention") && e.contains("1d"), "{e}");
    }

    #[test]
    fn news_section_and_peers() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.news.expire_after(), Some(Duration::from_secs(90 * 86_400)));
        assert!(c.news_peers.is_empty());
        let t = format!(
            "{MINIMAL}\n[news]\nexpire_after = \"0s\"\n\n[[news_peer]]\nname = \"inn\"\nfeed_to = \"127.0.0.1:10119\"\n\
             accept_from = [\"127.0.0.0/8\"]\ngroups = [\"local.*\", \"!local.private.*\"]\n"
        );
        let c = parse(&t).unwrap();
        assert_eq!(c.news.expire_after(), None);
        let p = &c.news_peers[0];
        assert_eq!(p.feed_addr.as_ref().map(|a| (a.host.as_str(), a.port)), Some(("127.0.0.1", Some(10119))));
        assert_eq!(p.feed_tls, FeedTls::Opportunistic);
        assert!(p.accepts("127.0.0.2".parse().unwrap()) && !p.accepts("10.0.0.1".parse().unwrap()));
        assert!(p.wants("local.test") && !p.wants("local.private.x") && !p.wants("comp.lang"));
        // each problem names its key and line
        for (peer, key, line) in [
            ("name = \"inn\"\naccept_from = [\"not a net\"]\n", "not a net", ":19:"),
            ("name = \"inn\"\nfeed_to = \"bad host:x\"\n", "bad host", ":19:"),
            ("name = \"inn\"\naccept_from = [\"::1\"]\ngroups = [\"a[b\"]\n", "groups", ":20:"),
            ("name = \"inn\"\n", "feed_to, accept_from", ":18:"),
        ] {
            let e = parse(&format!("{MINIMAL}\n[[news_peer]]\n{peer}")).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(line), "{e}");
        }
    }

    #[test]
    fn relay_networks_parse() {
        let t = format!("{MINIMAL}relay_networks = [\"10.0.0.0/8\", \"127.0.0.1\", \"::1\"]\n");
        let c = parse(&t).unwrap();
        let v = &c.virtual_servers[0];
        assert!(v.in_relay_networks("10.1.2.3".parse().unwrap()));
        assert!(v.in_relay_networks("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!v.in_relay_networks("192.0.2.1".parse().unwrap()));
        let t = format!("{MINIMAL}relay_networks = [\"10.0.0.0/33\"]\n");
        assert!(parse(&t).unwrap_err().to_string().contains("10.0.0.0/33"));
    }
}
