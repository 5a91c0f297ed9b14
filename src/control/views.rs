//! The stable JSON shapes of `queue list|summary|show --json` and
//! `group list --json` (documented in the README), and their aligned-table
//! forms for people. Clients ignore
//! fields they do not know; fields are only ever added.

use crate::queue::summary::Tally;
use crate::queue::{Message, RcptState, Recipient};
use crate::util::rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecipientView {
    pub address: String,
    pub destination: String,
    pub state: String,
    pub attempts: u32,
    /// RFC 3339, or null when not scheduled (final, or due now).
    pub next_attempt: Option<String>,
    /// One line: `stage: code enhanced text (from host)`.
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<crate::queue::AttemptResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::queue::TlsOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    /// Empty for the null sender.
    pub sender: String,
    /// RFC 3339.
    pub arrived: String,
    pub size: u64,
    pub frozen: bool,
    /// The destination of the still-queued recipients (comma-separated when several).
    pub destination: String,
    pub source_server: String,
    pub client_ip: Option<String>,
    pub client_helo: Option<String>,
    pub auth_user: Option<String>,
    /// TLS of the session the message arrived on.
    pub tls: Option<crate::tls::TlsInfo>,
    pub kind: crate::queue::MessageKind,
    pub recipients: Vec<RecipientView>,
}

/// `queue show`: the message plus its header section.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: MessageView,
    pub headers: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SummaryRow {
    pub destination: String,
    /// Messages with at least one queued recipient for this destination.
    pub count: usize,
    pub recipients: usize,
    pub oldest: String,
    pub next_attempt: Option<String>,
    /// The category of the newest error, e.g. `tls: STARTTLS not offered`.
    pub last_error: Option<String>,
    pub frozen: usize,
}

pub fn recipient_view(r: &Recipient) -> RecipientView {
    RecipientView {
        address: r.address.clone(),
        destination: r.destination.clone(),
        state: r.state.to_string(),
        attempts: r.attempts,
        next_attempt: if r.state == RcptState::Queued { r.next_attempt.map(rfc3339) } else { None },
        last_error: r.last_result.as_ref().map(|e| e.to_string()),
        last_result: r.last_result.clone(),
        tls: r.tls.clone(),
        original: r.original.clone(),
    }
}

pub fn message_view(m: &Message) -> MessageView {
    let mut dests: Vec<&str> = m.pending().map(|r| r.destination.as_str()).collect();
    dests.sort_unstable();
    dests.dedup();
    MessageView {
        id: m.id.to_string(),
        sender: m.sender.clone(),
        arrived: rfc3339(m.arrived),
        size: m.size,
        frozen: m.frozen,
        destination: dests.join(","),
        source_server: m.source_server.clone(),
        client_ip: m.client_ip.map(|i| i.to_string()),
        client_helo: m.client_helo.clone(),
        auth_user: m.auth_user.clone(),
        tls: m.tls.clone(),
        kind: m.kind,
        recipients: m.recipients.iter().map(recipient_view).collect(),
    }
}

/// One row per destination, from the queue's aggregates.
pub fn summary(tally: BTreeMap<String, Tally>) -> Vec<SummaryRow> {
    tally
        .into_iter()
        .map(|(destination, a)| SummaryRow {
            destination,
            count: a.messages,
            recipients: a.recipients,
            oldest: rfc3339(a.oldest),
            next_attempt: a.next.map(|n| if n == 0 { "now".to_string() } else { rfc3339(n) }),
            last_error: a.last_error.map(|(_, c)| c),
            frozen: a.frozen,
        })
        .collect()
}

/// Columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

pub fn summary_table(rows: &[SummaryRow]) -> String {
    if rows.is_empty() {
        return "The queue is empty.\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.destination.clone(),
                r.count.to_string(),
                r.oldest.clone(),
                r.next_attempt.clone().unwrap_or_else(|| "frozen".into()),
                r.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["DESTINATION", "COUNT", "OLDEST", "NEXT ATTEMPT", "LAST ERROR"], &body)
}

pub fn list_table(messages: &[MessageView]) -> String {
    if messages.is_empty() {
        return "The queue is empty.\n".into();
    }
    let mut rows = Vec::new();
    for m in messages {
        let sender = if m.sender.is_empty() { "<>".to_string() } else { m.sender.clone() };
        let id = if m.frozen { format!("{}*", m.id) } else { m.id.clone() };
        for (i, r) in m.recipients.iter().enumerate() {
            let (id, sender, arrived, size) = if i == 0 {
                (id.clone(), sender.clone(), m.arrived.clone(), m.size.to_string())
            } else {
                (String::new(), String::new(), String::new(), String::new())
            };
            rows.push(vec![
                id,
                arrived,
                size,
                sender,
                r.address.clone(),
                r.state.clone(),
                r.attempts.to_string(),
                r.last_error.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let mut t = table(&["ID", "ARRIVED", "SIZE", "SENDER", "RECIPIENT", "STATE", "TRIES", "LAST ERROR"], &rows);
    if messages.iter().any(|m| m.frozen) {
        t.push_str("(* frozen)\n");
    }
    t
}

pub fn detail_text(d: &MessageDetail) -> String {
    let m = &d.message;
    let mut s = String::new();
    let _ = writeln!(s, "id:          {}{}", m.id, if m.frozen { " (frozen)" } else { "" });
    let _ = writeln!(s, "sender:      <{}>", m.sender);
    let _ = writeln!(s, "arrived:     {}", m.arrived);
    let _ = writeln!(s, "size:        {} bytes", m.size);
    let _ = writeln!(
        s,
        "received on: {} from {} (HELO {})",
        m.source_server,
        m.client_ip.as_deref().unwrap_or("-"),
        m.client_helo.as_deref().unwrap_or("-")
    );
    let _ = writeln!(s, "auth user:   {}", m.auth_user.as_deref().unwrap_or("-"));
    let _ = writeln!(
        s,
        "tls:         {}",
        m.tls.as_ref().map(|t| format!("{} {}", t.version, t.cipher)).unwrap_or_else(|| "none".into())
    );
    let _ = writeln!(s, "recipients:");
    for r in &m.recipients {
        let _ = writeln!(s, "  {}  [{}]  via {}  attempts {}", r.address, r.state, r.destination, r.attempts);
        if let Some(n) = &r.next_attempt {
            let _ = writeln!(s, "    next attempt: {n}");
        }
        if let Some(e) = &r.last_error {
            let _ = writeln!(s, "    last result:  {e}");
        }
        if let Some(t) = &r.tls {
            let desc = match &t.info {
                Some(i) => {
                    format!("{} {}{}", i.version, i.cipher, if t.verified { ", verified" } else { ", not verified" })
                }
                None => "plaintext".into(),
            };
            let note = t.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            let _ = writeln!(s, "    tls:          {desc}{note}");
        }
    }
    let _ = writeln!(s, "headers:");
    for line in d.headers.lines() {
        let _ = writeln!(s, "  {line}");
    }
    s
}

/// `group list --json`: one newsgroup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    pub description: String,
    /// `y` (posting allowed), `n` or `m` (moderated), as LIST ACTIVE shows it.
    pub posting: String,
    /// Articles present.
    pub count: u64,
    /// The lowest article number present (`high + 1` when empty).
    pub low: u64,
    /// The highest article number given so far.
    pub high: u64,
    /// RFC 3339.
    pub created: String,
}

pub fn group_view(g: crate::news::GroupInfo) -> GroupView {
    GroupView {
        posting: g.posting.letter().to_string(),
        created: rfc3339(g.created),
        name: g.name,
        description: g.description,
        count: g.count,
        low: g.low,
        high: g.high,
    }
}

/// `group list` for people.
pub fn group_table(groups: &[GroupView]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.posting.clone(),
                g.count.to_string(),
                g.low.to_string(),
                g.high.to_string(),
                g.created.clone(),
                g.description.clone(),
            ]
        })
        .collect();
    table(&["NEWSGROUP", "POSTING", "COUNT", "LOW", "HIGH", "CREATED", "DESCRIPTION"], &rows)
}
