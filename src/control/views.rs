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
    let widths = widths(header, rows);
    let mut out = String::new();
    write_row(&widths, header, &mut out);
    for r in rows {
        write_row(&widths, r, &mut out);
    }
    out
}

/// Each column as wide as its widest cell (the header included).
fn widths(header: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    widths
}

/// One line of a table: every cell but the last padded to its column (a
/// wider cell pushes the rest of its line right).
fn write_row(widths: &[usize], cells: &[impl AsRef<str>], out: &mut String) {
    let n = cells.len();
    for (i, c) in cells.iter().enumerate() {
        let c = c.as_ref();
        if i + 1 == n {
            out.push_str(c);
        } else {
            let _ = write!(out, "{c:<w$}  ", w = widths.get(i).copied().unwrap_or(0));
        }
    }
    out.push('\n');
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

const LIST_HEADER: [&str; 8] = ["ID", "ARRIVED", "SIZE", "SENDER", "RECIPIENT", "STATE", "TRIES", "LAST ERROR"];

/// Messages the table form of `queue list` holds to size its columns;
/// later rows are printed at once with those widths, so a listing of a
/// million messages starts at once and its memory stays flat.
pub const LIST_SIZING_ROWS: usize = 1000;

/// The table form of `queue list`, built as messages arrive: the first
/// [`LIST_SIZING_ROWS`] rows are held to size the columns, then everything
/// is written through `out` as it comes. A listing that fits is aligned
/// throughout.
pub struct ListTable<F: FnMut(&str)> {
    out: F,
    held: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
    frozen: bool,
    empty: bool,
}

impl<F: FnMut(&str)> ListTable<F> {
    pub fn new(out: F) -> Self {
        ListTable { out, held: Vec::new(), widths: None, frozen: false, empty: true }
    }

    pub fn push(&mut self, m: &MessageView) {
        self.empty = false;
        self.frozen |= m.frozen;
        let sender = if m.sender.is_empty() { "<>".to_string() } else { m.sender.clone() };
        let id = if m.frozen { format!("{}*", m.id) } else { m.id.clone() };
        for (i, r) in m.recipients.iter().enumerate() {
            let first = |s: &String| if i == 0 { s.clone() } else { String::new() };
            let row = vec![
                first(&id),
                first(&m.arrived),
                first(&m.size.to_string()),
                first(&sender),
                r.address.clone(),
                r.state.clone(),
                r.attempts.to_string(),
                r.last_error.clone().unwrap_or_else(|| "-".into()),
            ];
            match &self.widths {
                Some(w) => {
                    let mut line = String::new();
                    write_row(w, &row, &mut line);
                    (self.out)(&line);
                }
                None => self.held.push(row),
            }
        }
        if self.widths.is_none() && self.held.len() >= LIST_SIZING_ROWS {
            self.release();
        }
    }

    /// Size the columns on the rows held and write them.
    fn release(&mut self) {
        let w = widths(&LIST_HEADER, &self.held);
        let mut text = String::new();
        write_row(&w, &LIST_HEADER, &mut text);
        for r in self.held.drain(..) {
            write_row(&w, &r, &mut text);
        }
        (self.out)(&text);
        self.widths = Some(w);
    }

    pub fn finish(mut self) {
        if self.empty {
            (self.out)("The queue is empty.\n");
            return;
        }
        if self.widths.is_none() {
            self.release();
        }
        if self.frozen {
            (self.out)("(* frozen)\n");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: usize, frozen: bool, rcpts: &[&str]) -> MessageView {
        let recipients: Vec<RecipientView> = rcpts
            .iter()
            .map(|a| RecipientView {
                address: a.to_string(),
                destination: "example.net".into(),
                state: "deferred".into(),
                attempts: 1,
                next_attempt: None,
                last_error: Some("connection refused".into()),
                last_result: None,
                tls: None,
                original: None,
            })
            .collect();
        MessageView {
            id: format!("{id:011}"),
            sender: if id.is_multiple_of(2) { String::new() } else { format!("s{id}@example.org") },
            arrived: "2026-11-30T16:00:00Z".into(),
            size: 2048,
            frozen,
            destination: "example.net".into(),
            source_server: "mx".into(),
            client_ip: None,
            client_helo: None,
            auth_user: None,
            tls: None,
            kind: crate::queue::MessageKind::Inbound,
            recipients,
        }
    }

    fn render(views: &[MessageView]) -> String {
        let mut text = String::new();
        let mut t = ListTable::new(|s: &str| text.push_str(s));
        for v in views {
            t.push(v);
        }
        t.finish();
        text
    }

    #[test]
    fn a_short_listing_is_one_aligned_table() {
        let text = render(&[view(1, false, &["a@x.org", "bb@y.org"]), view(2, true, &["c@z.org"])]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("ID "));
        let col = lines[0].find("RECIPIENT").unwrap();
        for l in &lines[1..4] {
            assert!(l[col..].starts_with(|c: char| c.is_ascii_alphanumeric()), "misaligned: {l}");
        }
        assert!(lines[1].starts_with("00000000001 "));
        assert!(lines[2].starts_with("  "), "second recipient without the message's columns: {}", lines[2]);
        assert!(lines[3].starts_with("00000000002*"));
        assert!(lines[3].contains(" <> "));
        assert_eq!(lines[4], "(* frozen)");
    }

    #[test]
    fn a_long_listing_is_written_as_it_comes() {
        let chunks = std::cell::RefCell::new(Vec::<String>::new());
        let mut t = ListTable::new(|s: &str| chunks.borrow_mut().push(s.to_string()));
        for i in 0..LIST_SIZING_ROWS - 1 {
            t.push(&view(i, false, &["a@x.org"]));
        }
        assert!(chunks.borrow().is_empty(), "nothing is written while the columns are being sized");
        for i in LIST_SIZING_ROWS - 1..LIST_SIZING_ROWS + 5 {
            t.push(&view(i, false, &["a@x.org"]));
        }
        // the sized rows went out in one piece, every later row on its own
        assert_eq!(chunks.borrow().len(), 6);
        assert_eq!(chunks.borrow()[0].lines().count(), LIST_SIZING_ROWS + 1);
        t.push(&view(5000, false, &["a-much-longer-recipient-address@example.org"]));
        t.finish();
        let chunks = chunks.into_inner();
        assert_eq!(chunks.len(), 7);
        assert!(chunks[6].contains("a-much-longer-recipient-address@example.org  deferred"));
        let header = chunks[0].lines().next().unwrap();
        let col = header.find("STATE").unwrap();
        assert_eq!(&chunks[1][col..col + 8], "deferred");
    }

    #[test]
    fn an_empty_listing_says_so() {
        assert_eq!(render(&[]), "The queue is empty.\n");
    }
}
