//! Which queued messages an operator names: a [`QueueFilter`] for listing,
//! a [`Selector`] for the actions (retry, freeze, thaw, delete). Both are
//! the queue's, so the queue manager and the CLI's direct mode pick the same
//! messages; the control socket carries them as they are (their serde form
//! is part of its JSON).

use super::{Message, QueueId, QueueStore, RcptState, StoreError};
use serde::{Deserialize, Serialize};

/// What `queue list` shows: every field set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
}

/// Which messages a queue action applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// Why a selection named no messages to act on.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("name messages by id, --destination or --all")]
    NothingNamed,
    #[error("{0:?} is not a queue id")]
    BadId(String),
    #[error("no message {0} in the queue (`postern track {0}` shows where it went)")]
    NoSuchMessage(QueueId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A queue id as an operator typed it.
pub fn parse_id(id: &str) -> Result<QueueId, SelectError> {
    QueueId::parse(id).ok_or_else(|| SelectError::BadId(id.to_string()))
}

/// The message `id` names; an unknown id is an error.
pub fn get(queue: &QueueStore, id: &str) -> Result<Message, SelectError> {
    let qid = parse_id(id)?;
    queue.get(&qid)?.ok_or(SelectError::NoSuchMessage(qid))
}

pub fn matches_filter(m: &Message, f: &QueueFilter) -> bool {
    let lc = |s: &str| s.to_ascii_lowercase();
    if let Some(d) = &f.destination {
        if !m.recipients.iter().any(|r| r.state == RcptState::Queued && r.destination.eq_ignore_ascii_case(d)) {
            return false;
        }
    }
    if let Some(st) = &f.state {
        if !m.recipients.iter().any(|r| r.state.to_string() == lc(st)) {
            return false;
        }
    }
    if let Some(snd) = &f.sender {
        let want = if snd == "<>" { String::new() } else { lc(snd) };
        if lc(&m.sender) != want {
            return false;
        }
    }
    if let Some(rc) = &f.recipient {
        if !m.recipients.iter().any(|r| lc(&r.address) == lc(rc)) {
            return false;
        }
    }
    true
}

/// The ids of the messages a selector names, each once (an id named twice,
/// in any case, is one message: ids are compared as parsed), in the order
/// named, then in queue order; unknown ids are an error. Ids, not
/// messages: `--all` on a queue of a million holds a few tens of bytes per
/// message, and the caller reads each message as it acts on it (one gone
/// meanwhile is passed over).
pub fn select(queue: &QueueStore, sel: &Selector) -> Result<Vec<QueueId>, SelectError> {
    if sel.ids.is_empty() && sel.destination.is_none() && !sel.all {
        return Err(SelectError::NothingNamed);
    }
    let mut out: Vec<QueueId> = Vec::new();
    // a set, not a search of `out`: `--all` on a big queue stays linear
    let mut named = std::collections::HashSet::new();
    for id in &sel.ids {
        let qid = parse_id(id)?;
        if !named.insert(qid.clone()) {
            continue;
        }
        if queue.get(&qid)?.is_none() {
            return Err(SelectError::NoSuchMessage(qid));
        }
        out.push(qid);
    }
    if sel.destination.is_some() || sel.all {
        let filter = QueueFilter { destination: sel.destination.clone(), ..Default::default() };
        for m in queue.iter() {
            let m = m?;
            if (sel.all || matches_filter(&m, &filter)) && !named.contains(&m.id) {
                out.push(m.id);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, QueueStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (q, _) = QueueStore::open(&db, dir.path()).unwrap();
        (dir, q)
    }

    async fn put(q: &QueueStore, sender: &str, rcpt: &str, destination: &str) -> QueueId {
        let mut m = crate::queue::tests::message(q, &[rcpt]);
        m.sender = sender.into();
        m.recipients[0].destination = destination.into();
        let id = m.id.clone();
        q.enqueue(m, b"x\r\n".to_vec()).await.unwrap();
        id
    }

    fn ids(ms: &[QueueId]) -> Vec<String> {
        ms.iter().map(|id| id.to_string()).collect()
    }

    #[tokio::test]
    async fn a_selector_names_each_message_once_and_nothing_is_an_error() {
        let (_dir, q) = store();
        let a = put(&q, "s@x.test", "r@y.test", "out/y.test").await;
        let b = put(&q, "s@x.test", "r@z.test", "out/z.test").await;
        let upper = a.to_string().to_ascii_uppercase();
        let twice = Selector { ids: vec![a.to_string(), upper, a.to_string()], ..Default::default() };
        assert_eq!(ids(&select(&q, &twice).unwrap()), [a.to_string()]);
        let dest = Selector { ids: vec![a.to_string()], destination: Some("OUT/Y.TEST".into()), all: false };
        assert_eq!(ids(&select(&q, &dest).unwrap()), [a.to_string()]);
        let every = Selector { ids: vec![b.to_string()], all: true, ..Default::default() };
        assert_eq!(ids(&select(&q, &every).unwrap()).len(), 2);
        assert_eq!(
            select(&q, &Selector::default()).unwrap_err().to_string(),
            "name messages by id, --destination or --all"
        );
        let bad = Selector { ids: vec!["nope".into()], ..Default::default() };
        assert_eq!(select(&q, &bad).unwrap_err().to_string(), "\"nope\" is not a queue id");
    }

    #[tokio::test]
    async fn filters_match_case_insensitively_and_the_null_sender_as_angle_brackets() {
        let (_dir, q) = store();
        let a = put(&q, "", "R@y.test", "out/y.test").await;
        let m = get(&q, a.as_str()).unwrap();
        let f = |sender: Option<&str>, recipient: Option<&str>, state: Option<&str>| QueueFilter {
            sender: sender.map(String::from),
            recipient: recipient.map(String::from),
            state: state.map(String::from),
            destination: None,
        };
        assert!(matches_filter(&m, &f(Some("<>"), Some("r@Y.TEST"), Some("QUEUED"))));
        assert!(!matches_filter(&m, &f(Some("s@x.test"), None, None)));
        assert!(!matches_filter(&m, &f(None, None, Some("delivered"))));
    }
}
