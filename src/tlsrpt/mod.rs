//! TLS reporting, both kinds, read from the tracking log: `postern tls
//! report` for the operator ([`coverage`]), and the daily RFC 8460
//! aggregate report (TLS-RPT) for the domains that publish a policy and ask
//! for one ([`report`], [`Reporter`]).
//!
//! Once a UTC day, [`Reporter::run_day`] reads the previous day's attempt
//! events, groups the sessions by policy domain (the DANE or MTA-STS
//! outcome delivery recorded), looks up `_smtp._tls.<domain>`, and for
//! every `mailto:` rua queues one report mail from the postmaster through
//! our own queue (durably, like any mail). `https:` ruas are not served.
//! The clock is a parameter: the server's daily task passes the time now
//! ([`spawn_daily`]), tests pass the day they simulated. A marker file in
//! `data_dir/tlsrpt` keeps a restarted server from sending a day twice.
//! This module never delivers anything itself and never fails mail.

pub mod coverage;
pub mod report;

use crate::config::Config;
use crate::delivery::mx::MxResolver;
use crate::queue::{Message, MessageKind, QueueStore, Recipient, SpoolRef};
use crate::track::read::ReadError;
use crate::track::Tracker;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Seconds in a day.
pub const DAY: u64 = 86_400;

/// Why a day's reports could not all be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsRptError {
    #[error(transparent)]
    Log(#[from] ReadError),
    #[error("cannot queue the TLS report for {0}: {1}")]
    Queue(String, #[source] crate::queue::StoreError),
    #[error("cannot compress the TLS report for {0}: {1}")]
    Gzip(String, #[source] std::io::Error),
    #[error(transparent)]
    Dns(#[from] crate::delivery::mx::DnsSetupError),
}

/// What one day's run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayReport {
    /// (policy domain, queue id of the report mail) for each report queued.
    pub queued: Vec<(String, String)>,
    /// Policy domains seen that publish no `mailto:` rua (or whose lookup failed).
    pub skipped: Vec<String>,
}

/// Makes and queues the day's TLS-RPT reports.
pub struct Reporter {
    config: Arc<Config>,
    queue: Arc<QueueStore>,
    resolver: MxResolver,
    tracker: Tracker,
}

impl Reporter {
    pub fn new(config: Arc<Config>, queue: Arc<QueueStore>, tracker: Tracker) -> Result<Reporter, TlsRptError> {
        let resolver = MxResolver::from_config(&config.dns)?;
        Ok(Reporter { config, queue, resolver, tracker })
    }

    fn marker(&self) -> PathBuf {
        self.config.server.data_dir.join("tlsrpt").join("last-day")
    }

    /// The start of the last day whose reports were queued.
    fn last_day(&self) -> Option<u64> {
        std::fs::read_to_string(self.marker()).ok()?.trim().parse().ok()
    }

    fn mark(&self, day: u64) {
        let path = self.marker();
        let written = path
            .parent()
            .map_or(Ok(()), crate::util::create_dir_durably)
            .and_then(|()| crate::util::write_file_durably(&path, day.to_string().as_bytes(), 0o640));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}; the day's TLS reports may be sent again", path.display());
        }
    }

    /// Queue the reports for the UTC day starting at `day` (Unix seconds,
    /// a multiple of [`DAY`]), dated `now`.
    pub async fn run_day(&self, day: u64, now: u64) -> Result<DayReport, TlsRptError> {
        let dir = crate::track::log_dir(&self.config.server.data_dir);
        let mut fold = report::Day::default();
        let scanned = crate::track::read::scan(&dir, Some(day), |e| {
            if e.policy_domain.is_some() && e.secs().is_some_and(|t| t < day + DAY) {
                fold.add(&e);
            }
        });
        match scanned {
            Err(ReadError::NoLog(_)) => return Ok(DayReport::default()),
            r => r?,
        }
        let mut done = DayReport::default();
        let postmaster = self.config.server.postmaster.clone();
        let submitter = report::Submitter { hostname: &self.config.server.hostname, contact: &postmaster, day };
        for (domain, policies) in fold.finish() {
            let ruas = match self.resolver.txt(&format!("_smtp._tls.{domain}")).await {
                Ok(records) => report::mailto_ruas(&records),
                Err(f) => {
                    tracing::info!(domain = %domain, "no TLS report: the _smtp._tls lookup failed: {f}");
                    Vec::new()
                }
            };
            if ruas.is_empty() {
                done.skipped.push(domain);
                continue;
            }
            let json = report::json(&submitter, &domain, &policies);
            let gz = report::gzip(&json).map_err(|e| TlsRptError::Gzip(domain.clone(), e))?;
            let body = report::compose(&submitter, &domain, &ruas, gz, now);
            let id = self.enqueue(&ruas, body, now).await.map_err(|e| TlsRptError::Queue(domain.clone(), e))?;
            tracing::info!(domain = %domain, id = %id, rua = %ruas.join(","), "TLS report queued");
            done.queued.push((domain, id));
        }
        Ok(done)
    }

    async fn enqueue(&self, ruas: &[String], body: Vec<u8>, now: u64) -> Result<String, crate::queue::StoreError> {
        let c = &self.config;
        // routed as mail the first SMTP virtual server accepted
        let source = c
            .virtual_servers
            .iter()
            .find(|v| v.protocol == crate::config::values::Protocol::Smtp)
            .map(|v| v.name.clone())
            .unwrap_or_default();
        let recipients = ruas
            .iter()
            .map(|a| {
                let raw = a.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                let domain = crate::domain::canonical(raw).unwrap_or_else(|_| raw.to_ascii_lowercase());
                let dest = match c.is_local_domain(&domain) {
                    true => "local".to_string(),
                    false => crate::routing::expand::route_remote(c, &domain, &source),
                };
                Recipient::new(a.clone(), dest)
            })
            .collect();
        let id = self.queue.new_id();
        let msg = Message {
            id: id.clone(),
            sender: c.server.postmaster.clone(),
            source_server: source,
            client_ip: None,
            client_helo: None,
            auth_user: None,
            tls: None,
            arrived: now,
            size: body.len() as u64,
            body_type: Default::default(),
            smtputf8: false,
            kind: MessageKind::Inbound,
            frozen: false,
            delay_warned: false,
            require_tls: false,
            tls_optional: false,
            recipients,
            spool: SpoolRef::default(),
        };
        let created = crate::queue::tracking::received(&msg);
        self.queue.enqueue(msg, body).await?;
        self.tracker.record(created);
        Ok(id.to_string())
    }
}

/// Run the reports of each finished UTC day, for as long as the runtime
/// runs: at start for yesterday (unless already sent), then a few minutes
/// after each UTC midnight. `clock` gives Unix seconds.
pub fn spawn_daily(reporter: Arc<Reporter>, clock: fn() -> u64) {
    tokio::spawn(async move {
        loop {
            let now = clock();
            let yesterday = (now - now % DAY).saturating_sub(DAY);
            if reporter.last_day().is_none_or(|d| d < yesterday) {
                match reporter.run_day(yesterday, now).await {
                    Ok(_) => reporter.mark(yesterday),
                    Err(e) => tracing::warn!("TLS reports for {}: {e}", crate::util::rfc3339(yesterday)),
                }
            }
            // five minutes past the next midnight: the day's last events are in
            let next = now - now % DAY + DAY + 300;
            tokio::time::sleep(Duration::from_secs(next.saturating_sub(clock()).max(60))).await;
        }
    });
}
