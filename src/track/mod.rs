//! Message tracking (SPEC §12): every event of a message's life — received,
//! each delivery attempt per recipient, delivered, deferred, failed,
//! bounced (with the report's id), deleted, frozen, left the queue — is
//! appended as one JSON line to a day file `data_dir/track/YYYY-MM-DD.jsonl`
//! (UTC days), and [`read`] answers `postern track` from those files, with
//! or without a running server.
//!
//! The log is a record, not a promise: each event is one `write` to a file
//! opened with `O_APPEND` (so lines from concurrent writers never
//! interleave), never fsynced, and a write that fails is logged once and
//! never fails or delays mail. Whole day files older than `[log]
//! tracking_retention` are removed at start and daily. This module knows
//! only plain values (strings, numbers): the queue and the SMTP service
//! turn their records into [`Event`]s, so it sits low in the layers and
//! anything may record.

pub mod read;

use crate::config::Config;
use crate::util::LockExt;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: u64 = 86_400;

/// One line of the tracking log. `time`, `id` and `event` are always there;
/// the rest only where the event has them (absent fields are left out of
/// the JSON). The JSON shape is stable and documented in the README: add
/// fields, never rename one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC, to the millisecond.
    pub time: String,
    /// The queue id of the message the event is about.
    pub id: String,
    /// `received`, `created`, `delivered`, `deferred`, `failed`, `expired`,
    /// `bounced`, `delay_warned`, `no_ndr`, `rerouted`, `retry`, `frozen`,
    /// `thawed`, `deleted`, `removed`.
    pub event: String,
    /// The reverse-path (`""` for `<>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The recipients as queued (received, created), or those a report is about (bounced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    /// The virtual server it came in on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    /// Bytes, as queued (with our `Received:` line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The one recipient an attempt (or reroute) is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcpt: Option<String>,
    /// `local`, or the connector's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// The queue's destination key (`local`, `connector/next-hop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The host that answered (an MX or smarthost name, or an address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The address of that host (or of the last one that refused a
    /// connection or handshake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Local delivery: the folder it went into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    /// Where the result came from: dns, connect, tls, auth, mail, rcpt, data, local, queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Which attempt this was for the recipient (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Deferred: when the next attempt is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// `none` (plaintext), `unverified` or `verified` (the peer's
    /// certificate checked against the trust roots and its name). Absent
    /// when no connection was made (DNS, connect failures, local delivery).
    /// Received mail is never `verified`: clients show no certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// Why TLS went as it did, e.g. plaintext after a failed handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_note: Option<String>,
    /// The recipient domain's TLS policy on this attempt (RFC 8460
    /// `policy-type`): `tlsa` (DANE), `sts` (MTA-STS) or `no-policy-found`.
    /// Absent where none was looked up (smarthosts, older lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_type: Option<String>,
    /// The policy domain (what TLS-RPT reports to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_domain: Option<String>,
    /// RFC 8460 `policy-string`: the TLSA records or the MTA-STS policy lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_strings: Vec<String>,
    /// RFC 8460 `result-type` of a failed policy (absent: the policy held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_result: Option<String>,
    /// MTA-STS `mode: testing`: a failure was reported, not enforced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub policy_testing: bool,
    /// bounced, delay_warned: the id of the report queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// created: the id of the message this report is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_for: Option<String>,
    /// `failure` or `delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_kind: Option<String>,
    /// bounced, delay_warned: where the report goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// rerouted: the destination it had before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// deleted: whether the sender gets an NDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndr: Option<bool>,
}

impl Event {
    /// An event `name` about message `id`; the time is set when it is recorded.
    pub fn new(id: impl std::fmt::Display, name: &str) -> Event {
        Event { id: id.to_string(), event: name.to_string(), ..Event::default() }
    }

    /// Unix seconds of `time` (None when it does not parse).
    pub fn secs(&self) -> Option<u64> {
        let t = humantime::parse_rfc3339(&self.time).ok()?;
        t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
    }
}

/// The directory the tracking log of `data_dir` lives in.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("track")
}

/// The day file for `secs` (UTC), e.g. `2026-11-30.jsonl`.
fn day_name(secs: u64) -> String {
    let stamp = crate::util::rfc3339(secs);
    format!("{}.jsonl", stamp.get(..10).unwrap_or("0000-00-00"))
}

/// The Unix second a day file's day starts (None: not a day file's name).
fn day_start(file_name: &str) -> Option<u64> {
    let day = file_name.strip_suffix(".jsonl")?;
    if day.len() != 10 {
        return None;
    }
    let t = humantime::parse_rfc3339(&format!("{day}T00:00:00Z")).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The day files of `names` whose whole day ended `retention` or more before `now`.
fn expired<'a>(names: impl IntoIterator<Item = &'a str>, now: u64, retention: Duration) -> Vec<&'a str> {
    names.into_iter().filter(|n| day_start(n).is_some_and(|s| s + DAY + retention.as_secs() <= now)).collect()
}

/// The handle every part of the server records through: cheap to clone;
/// [`Tracker::off`] records nothing (tests and tools that need no log).
#[derive(Clone, Default)]
pub struct Tracker {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    dir: PathBuf,
    /// None: kept forever.
    retention: Option<Duration>,
    /// Today's file, opened on the first event of the day.
    file: Mutex<Option<(String, File)>>,
    /// A write failed and was logged; the next failure stays quiet.
    failing: AtomicBool,
}

impl Tracker {
    /// A tracker that records nothing.
    pub fn off() -> Tracker {
        Tracker { inner: None }
    }

    /// The log in `dir`; nothing is created before the first event.
    pub fn open(dir: PathBuf, retention: Option<Duration>) -> Tracker {
        let inner = Inner { dir, retention, file: Mutex::new(None), failing: AtomicBool::new(false) };
        Tracker { inner: Some(Arc::new(inner)) }
    }

    /// The log of the configured `data_dir`, kept `[log] tracking_retention`.
    pub fn from_config(config: &Config) -> Tracker {
        Tracker::open(log_dir(&config.server.data_dir), config.log.tracking_retention())
    }

    /// Append `event`, stamped with the time now. Never fails: a write
    /// error is logged (once until writing works again) and the event lost.
    pub fn record(&self, mut event: Event) {
        let Some(inner) = &self.inner else { return };
        let now = SystemTime::now();
        event.time = humantime::format_rfc3339_millis(now).to_string();
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let Ok(mut line) = serde_json::to_vec(&event) else { return };
        line.push(b'\n');
        let day = day_name(secs);
        let result = {
            let mut file = inner.file.lock_or_recover();
            inner.append(&mut file, &day, &line)
        };
        match result {
            Ok(()) => {
                if inner.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(dir = %inner.dir.display(), "the tracking log is written again");
                }
            }
            Err(e) => {
                if !inner.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot write the tracking log in {}: {e}; events are lost until it works again",
                        inner.dir.display()
                    );
                }
            }
        }
    }

    /// Remove the day files past retention; returns how many went.
    pub fn prune(&self, now: u64) -> usize {
        let Some(inner) = &self.inner else { return 0 };
        let Some(retention) = inner.retention else { return 0 };
        let Ok(entries) = std::fs::read_dir(&inner.dir) else { return 0 };
        let names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        let mut removed = 0;
        for name in expired(names.iter().map(String::as_str), now, retention) {
            match std::fs::remove_file(inner.dir.join(name)) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove the old tracking log {}: {e}", inner.dir.join(name).display()),
            }
        }
        if removed > 0 {
            tracing::info!(files = removed, dir = %inner.dir.display(), "old tracking log files removed");
        }
        removed
    }

    /// Prune now and then once a day, for as long as the runtime runs.
    pub fn spawn_retention(&self) {
        let Some(inner) = &self.inner else { return };
        if inner.retention.is_none() {
            return;
        }
        let tracker = self.clone();
        tokio::spawn(async move {
            loop {
                let t = tracker.clone();
                let _ = tokio::task::spawn_blocking(move || t.prune(crate::util::now_secs())).await;
                tokio::time::sleep(Duration::from_secs(DAY)).await;
            }
        });
    }
}

impl Inner {
    fn append(&self, file: &mut Option<(String, File)>, day: &str, line: &[u8]) -> std::io::Result<()> {
        if file.as_ref().is_none_or(|(d, _)| d != day) {
            *file = None;
            std::fs::create_dir_all(&self.dir)?;
            let f = OpenOptions::new().append(true).create(true).mode(0o640).open(self.dir.join(day))?;
            *file = Some((day.to_string(), f));
        }
        match file {
            // one write: O_APPEND places it whole at the end
            Some((_, f)) => f.write_all(line),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_files_are_named_by_utc_day_and_read_back() {
        assert_eq!(day_name(0), "1970-01-01.jsonl");
        assert_eq!(day_name(1_796_000_000), "2026-11-30.jsonl");
        assert_eq!(day_start("2026-11-30.jsonl"), Some(1_795_996_800));
        assert_eq!(day_start("2026-11-30.json"), None);
        assert_eq!(day_start("notes.jsonl"), None);
    }

    #[test]
    fn retention_removes_whole_days_only() {
        let names = ["2026-10-31.jsonl", "2026-10-30.jsonl", "2026-11-29.jsonl", "README"];
        // 2026-11-30T12:00:00Z, kept 30 days: the 30th of October ended 30
        // days ago at midnight; the 31st ends 30 days before the next midnight
        let now = 1_795_996_800 + 12 * 3600;
        assert_eq!(expired(names, now, Duration::from_secs(30 * DAY)), ["2026-10-30.jsonl"]);
        assert_eq!(expired(names, now + 12 * 3600, Duration::from_secs(30 * DAY)).len(), 2);
    }

    #[test]
    fn events_append_as_json_lines_and_old_days_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("track");
        let t = Tracker::open(logs.clone(), Some(Duration::from_secs(DAY)));
        assert!(!logs.exists(), "nothing is created before the first event");
        t.record(Event { from: Some("a@example.test".into()), ..Event::new("ID1", "received") });
        t.clone().record(Event::new("ID1", "removed"));
        let today = day_name(crate::util::now_secs());
        let text = std::fs::read_to_string(logs.join(&today)).unwrap();
        let events: Vec<Event> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "received");
        assert!(events[0].secs().is_some());
        assert!(!text.contains("\"rcpt\""), "absent fields are left out: {text}");
        std::fs::write(logs.join("2000-01-01.jsonl"), "").unwrap();
        assert_eq!(t.prune(crate::util::now_secs()), 1);
        assert!(logs.join(&today).exists());
        Tracker::off().record(Event::new("ID2", "received"));
    }

    #[test]
    fn a_write_error_loses_the_event_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let t = Tracker::open(blocker.join("track"), None);
        t.record(Event::new("ID1", "received"));
        t.record(Event::new("ID1", "removed"));
        assert_eq!(t.prune(u64::MAX / 2), 0);
    }
}
