//! Reading the tracking log for `postern track`: which messages a query
//! names, each message's events in the order they happened, and their
//! timeline for people. It only reads: a missing log is an error naming the
//! path looked at, never a reason to create one.
//!
//! A message is named by its queue id, or by an event within the window
//! that names the sender (`received`, `created`) or the recipient (those,
//! and every per-recipient event); addresses compare case-insensitively.
//! An id query also brings the reports the message caused (linked by the
//! `report` of its `bounced` and `delay_warned` events), and theirs.
//! Files are read one line at a time, oldest day first, so memory holds
//! only the matching messages' events.

use super::{day_start, Event, DAY};
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What `postern track` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Id(String),
    Sender(String),
    Recipient(String),
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "there is no tracking log at {0} (nothing was recorded there yet; is --config the server's configuration?)"
    )]
    NoLog(PathBuf),
    #[error("cannot read the tracking log {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// One message's events, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub id: String,
    pub events: Vec<Event>,
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether `e` names the sender or recipient the query asks for.
fn names(e: &Event, q: &Query) -> bool {
    match q {
        Query::Id(id) => same(&e.id, id),
        // `<>` asks for the null sender
        Query::Sender(a) => {
            let want = if a == "<>" { "" } else { a.as_str() };
            e.from.as_deref().is_some_and(|f| same(f, want))
        }
        Query::Recipient(a) => {
            e.rcpt.as_deref().is_some_and(|r| same(r, a))
                || (matches!(e.event.as_str(), "received" | "created") && e.recipients.iter().any(|r| same(r, a)))
        }
    }
}

/// The day files of `dir` that may hold events at or after `since`, oldest first.
fn day_files(dir: &Path, since: Option<u64>) -> Result<Vec<PathBuf>, ReadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NoLog(dir.to_path_buf())),
        Err(e) => return Err(ReadError::Io(dir.to_path_buf(), e)),
    };
    let mut days: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let start = day_start(&name)?;
            Some((start, e.path()))
        })
        .filter(|(start, _)| since.is_none_or(|s| start + DAY > s))
        .collect();
    days.sort();
    Ok(days.into_iter().map(|(_, p)| p).collect())
}

/// Every event at or after `since` (Unix seconds), oldest day first, handed
/// to `f` one at a time (for the TLS reports); lines that do not parse are
/// passed over.
pub fn scan(dir: &Path, since: Option<u64>, mut f: impl FnMut(Event)) -> Result<(), ReadError> {
    for path in day_files(dir, since)? {
        let file = std::fs::File::open(&path).map_err(|e| ReadError::Io(path.clone(), e))?;
        for line in std::io::BufReader::new(file).split(b'\n') {
            let line = line.map_err(|e| ReadError::Io(path.clone(), e))?;
            let Ok(e) = serde_json::from_slice::<Event>(&line) else { continue };
            if since.is_some_and(|s| e.secs().is_none_or(|t| t < s)) {
                continue;
            }
            f(e);
        }
    }
    Ok(())
}

/// Every message the query names, with its events at or after `since`
/// (Unix seconds; None: everything kept), in the order they were first seen.
/// A line that does not parse (cut short by a crash) is passed over.
pub fn search(dir: &Path, q: &Query, since: Option<u64>) -> Result<Vec<Timeline>, ReadError> {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut order: Vec<String> = Vec::new();
    let mut events: HashMap<String, Vec<Event>> = HashMap::new();
    for path in day_files(dir, since)? {
        let file = std::fs::File::open(&path).map_err(|e| ReadError::Io(path.clone(), e))?;
        for line in std::io::BufReader::new(file).split(b'\n') {
            let line = line.map_err(|e| ReadError::Io(path.clone(), e))?;
            let Ok(e) = serde_json::from_slice::<Event>(&line) else { continue };
            if since.is_some_and(|s| e.secs().is_none_or(|t| t < s)) {
                continue;
            }
            let id = e.id.to_ascii_uppercase();
            if !wanted.contains(&id) {
                if !names(&e, q) {
                    continue;
                }
                wanted.insert(id.clone());
                order.push(id.clone());
            }
            // an id query follows the reports the message caused
            if let (Query::Id(_), Some(report)) = (q, &e.report) {
                let r = report.to_ascii_uppercase();
                if wanted.insert(r.clone()) {
                    order.push(r);
                }
            }
            events.entry(id).or_default().push(e);
        }
    }
    Ok(order.into_iter().filter_map(|id| events.remove(&id).map(|events| Timeline { id, events })).collect())
}

/// The timelines for people: a heading per message, then one aligned line per event.
pub fn timelines_text(found: &[Timeline]) -> String {
    let width = found.iter().flat_map(|t| &t.events).map(|e| e.event.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (n, t) in found.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&heading(t));
        out.push('\n');
        for e in &t.events {
            out.push_str(format!("  {:<24}  {:<width$}  {}", e.time, e.event, describe(e)).trim_end());
            out.push('\n');
        }
    }
    out
}

fn heading(t: &Timeline) -> String {
    let first = t.events.iter().find(|e| matches!(e.event.as_str(), "received" | "created"));
    match first {
        Some(e) if e.event == "created" => format!(
            "{} {} report about {}",
            t.id,
            e.report_kind.as_deref().unwrap_or("delivery"),
            e.report_for.as_deref().unwrap_or("?")
        ),
        Some(e) => format!("{} from <{}>", t.id, e.from.as_deref().unwrap_or("")),
        None => t.id.clone(),
    }
}

fn reply(e: &Event) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(s) = &e.stage {
        parts.push(format!("{s}:"));
    }
    if let Some(c) = e.code {
        parts.push(c.to_string());
    }
    if let Some(x) = &e.enhanced {
        parts.push(x.clone());
    }
    if let Some(t) = &e.text {
        parts.push(t.clone());
    }
    parts.join(" ")
}

fn tls(e: &Event) -> Option<String> {
    let kind = e.tls.as_deref()?;
    let mut s = match (&e.tls_version, &e.tls_cipher) {
        (Some(v), Some(c)) => format!("TLS {kind} {v} {c}"),
        (Some(v), None) => format!("TLS {kind} {v}"),
        _ => format!("TLS {kind}"),
    };
    if let Some(n) = &e.tls_note {
        s.push_str(&format!(" ({n})"));
    }
    Some(s)
}

/// One event's line after its time and name.
pub fn describe(e: &Event) -> String {
    let mut parts: Vec<String> = Vec::new();
    let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    match e.event.as_str() {
        "received" | "created" => {
            parts.push(format!("from <{}> to {}", e.from.as_deref().unwrap_or(""), list(&e.recipients)));
            if let Some(ip) = &e.client_ip {
                parts.push(format!("client {ip}"));
            }
            if let Some(h) = &e.helo {
                parts.push(format!("helo {h}"));
            }
            if let Some(s) = &e.server {
                parts.push(format!("server {s}"));
            }
            if let Some(u) = &e.auth_user {
                parts.push(format!("user {u}"));
            }
            parts.extend(tls(e));
            if let Some(s) = e.size {
                parts.push(format!("{s} bytes"));
            }
        }
        "bounced" | "delay_warned" => {
            let mut said =
                format!("report {} to <{}>", e.report.as_deref().unwrap_or("?"), e.to.as_deref().unwrap_or(""));
            if !e.recipients.is_empty() {
                said.push_str(&format!(" about {}", list(&e.recipients)));
            }
            parts.push(said);
        }
        "rerouted" => parts.push(format!(
            "{} from {} to {}",
            e.rcpt.as_deref().unwrap_or("?"),
            e.previous.as_deref().unwrap_or("?"),
            e.destination.as_deref().unwrap_or("?")
        )),
        "deleted" => {
            parts.push(format!("by the operator, {}", if e.ndr == Some(true) { "with an NDR" } else { "silently" }));
            if !e.recipients.is_empty() {
                parts.push(list(&e.recipients));
            }
        }
        "removed" => parts.push("left the queue".into()),
        _ => {
            let mut head = e.rcpt.clone().unwrap_or_default();
            if let Some(d) = &e.destination {
                head = format!("{head} via {d}").trim_start().to_string();
            }
            match (&e.host, &e.remote_ip) {
                (Some(h), Some(ip)) if h != ip => head.push_str(&format!(" ({h} [{ip}])")),
                (Some(h), _) => head.push_str(&format!(" ({h})")),
                (None, Some(ip)) => head.push_str(&format!(" ([{ip}])")),
                (None, None) => {}
            }
            let r = reply(e);
            if !r.is_empty() {
                head = if head.is_empty() { r } else { format!("{head}: {r}") };
            }
            if !head.is_empty() {
                parts.push(head);
            }
            if let Some(m) = &e.mailbox {
                parts.push(format!("mailbox {m}"));
            }
            parts.extend(tls(e));
            if let Some(a) = e.attempt {
                parts.push(format!("attempt {a}"));
            }
            if let Some(n) = &e.next_attempt {
                parts.push(format!("next attempt {n}"));
            }
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, id: &str, event: &str, extra: &str) -> String {
        format!(r#"{{"time":"{time}","id":"{id}","event":"{event}"{extra}}}"#)
    }

    fn log(lines: &[(&str, Vec<String>)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (day, ls) in lines {
            std::fs::write(dir.path().join(format!("{day}.jsonl")), ls.join("\n") + "\n").unwrap();
        }
        dir
    }

    fn sample() -> tempfile::TempDir {
        log(&[
            (
                "2026-11-28",
                vec![
                    line(
                        "2026-11-28T10:00:00.000Z",
                        "AAA",
                        "received",
                        r#","from":"Alice@Example.test","recipients":["bob@remote.test"],"size":10"#,
                    ),
                    line("2026-11-28T10:00:01.000Z", "AAA", "failed", r#","rcpt":"bob@remote.test","code":550"#),
                    line("2026-11-28T10:00:01.000Z", "AAA", "bounced", r#","report":"RRR","to":"alice@example.test""#),
                    line(
                        "2026-11-28T10:00:01.000Z",
                        "RRR",
                        "created",
                        r#","from":"","recipients":["alice@example.test"],"report_for":"AAA""#,
                    ),
                    "{\"time\":\"2026-11-28T10:00:02".into(), // cut short by a crash
                    line("2026-11-28T10:00:02.000Z", "RRR", "delivered", r#","rcpt":"alice@example.test""#),
                ],
            ),
            (
                "2026-11-30",
                vec![line(
                    "2026-11-30T09:00:00.000Z",
                    "BBB",
                    "received",
                    r#","from":"carol@example.test","recipients":["BOB@remote.test"]"#,
                )],
            ),
        ])
    }

    fn found(dir: &tempfile::TempDir, q: Query, since: Option<u64>) -> Vec<(String, Vec<String>)> {
        search(dir.path(), &q, since)
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.events.into_iter().map(|e| e.event).collect()))
            .collect()
    }

    #[test]
    fn an_id_brings_its_events_and_the_report_it_caused() {
        let d = sample();
        let f = found(&d, Query::Id("aaa".into()), None);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0], ("AAA".into(), vec!["received".into(), "failed".into(), "bounced".into()]));
        assert_eq!(f[1], ("RRR".into(), vec!["created".into(), "delivered".into()]));
        assert!(found(&d, Query::Id("ZZZ".into()), None).is_empty());
    }

    #[test]
    fn addresses_match_case_insensitively() {
        let d = sample();
        let by_sender = found(&d, Query::Sender("alice@EXAMPLE.test".into()), None);
        assert_eq!(by_sender.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["AAA"]);
        let by_rcpt = found(&d, Query::Recipient("bob@remote.TEST".into()), None);
        assert_eq!(by_rcpt.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["AAA", "BBB"]);
        let null = found(&d, Query::Sender("<>".into()), None);
        assert_eq!(null.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["RRR"]);
    }

    #[test]
    fn since_leaves_out_older_events_and_files() {
        let d = sample();
        let since = Event { time: "2026-11-29T00:00:00Z".into(), ..Event::default() }.secs();
        let f = found(&d, Query::Recipient("bob@remote.test".into()), since);
        assert_eq!(f.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["BBB"]);
        assert!(found(&d, Query::Id("AAA".into()), since).is_empty());
    }

    #[test]
    fn a_missing_log_names_its_path_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("track");
        let e = search(&missing, &Query::Id("AAA".into()), None).unwrap_err();
        assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
        assert!(!missing.exists());
    }

    #[test]
    fn the_timeline_is_aligned_and_says_what_happened() {
        let d = sample();
        let text = timelines_text(&search(d.path(), &Query::Id("AAA".into()), None).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "AAA from <Alice@Example.test>");
        assert!(lines[1].contains("received   from <Alice@Example.test> to bob@remote.test; 10 bytes"), "{text}");
        assert!(lines[2].contains("failed     bob@remote.test: 550"), "{text}");
        assert!(lines[3].ends_with("bounced    report RRR to <alice@example.test>"), "{text}");
        assert!(text.contains("\nRRR delivery report about AAA\n"), "{text}");
    }
}
