//! Per-destination aggregates of the queued recipients (SPEC §5's `queue
//! summary`: count, oldest arrival, next attempt, last error category),
//! kept up to date by the store as messages arrive, change and leave, so a
//! summary never walks the queue.
//!
//! Minimum and maximum cannot be taken back when the message holding them
//! leaves, so the oldest arrival, the due times and the errors are kept as
//! counted multisets (`BTreeMap<value, count>`): a message's contribution
//! is added when it is stored and subtracted, exactly as it was added, when
//! it changes or leaves. Their size grows with the distinct seconds and
//! error categories, not with the messages. [`walk`] computes the same from
//! a list of messages (the reference the tests compare with).

use super::message::Message;
use std::collections::BTreeMap;

/// One destination's queued recipients, counted: what `queue summary`
/// shows and the metrics' queue gauges read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Messages with at least one queued recipient for this destination.
    pub messages: usize,
    pub recipients: usize,
    /// The arrival of the oldest of them (Unix seconds).
    pub oldest: u64,
    /// The earliest next attempt of a recipient not frozen (0: due now).
    pub next: Option<u64>,
    /// The newest error: when, and its category (of two at the same
    /// second, the greater category, so that every way of counting agrees).
    pub last_error: Option<(u64, String)>,
    pub frozen: usize,
}

/// One destination, as counted multisets.
#[derive(Default, Debug)]
struct Destination {
    messages: usize,
    recipients: usize,
    frozen: usize,
    arrivals: BTreeMap<u64, usize>,
    due: BTreeMap<u64, usize>,
    errors: BTreeMap<(u64, String), usize>,
}

impl Destination {
    fn tally(&self) -> Tally {
        Tally {
            messages: self.messages,
            recipients: self.recipients,
            oldest: self.arrivals.keys().next().copied().unwrap_or(u64::MAX),
            next: self.due.keys().next().copied(),
            last_error: self.errors.keys().next_back().cloned(),
            frozen: self.frozen,
        }
    }
}

fn bump<K: Ord>(map: &mut BTreeMap<K, usize>, key: K, add: bool) {
    if add {
        *map.entry(key).or_insert(0) += 1;
    } else if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

/// The aggregates of every destination with queued recipients.
#[derive(Default, Debug)]
pub struct Aggregates {
    by: BTreeMap<String, Destination>,
}

impl Aggregates {
    /// Count a message that entered the queue (or its new state).
    pub fn add(&mut self, m: &Message) {
        self.apply(m, true);
    }

    /// Take back exactly what [`Aggregates::add`] counted for `m`.
    pub fn subtract(&mut self, m: &Message) {
        self.apply(m, false);
    }

    fn apply(&mut self, m: &Message, add: bool) {
        let step = |n: &mut usize| {
            if add {
                *n += 1
            } else {
                *n = n.saturating_sub(1)
            }
        };
        let mut counted: Vec<&str> = Vec::new();
        for r in m.pending() {
            let d = self.by.entry(r.destination.clone()).or_default();
            step(&mut d.recipients);
            if !counted.contains(&r.destination.as_str()) {
                counted.push(&r.destination);
                step(&mut d.messages);
                if m.frozen {
                    step(&mut d.frozen);
                }
                bump(&mut d.arrivals, m.arrived, add);
            }
            if !m.frozen {
                bump(&mut d.due, r.next_attempt.unwrap_or(0), add);
            }
            if let Some(e) = &r.last_result {
                bump(&mut d.errors, (e.at, e.category()), add);
            }
        }
        if !add {
            for dest in counted {
                if self.by.get(dest).is_some_and(|d| d.recipients == 0) {
                    self.by.remove(dest);
                }
            }
        }
    }

    /// Add the counts of `other` (messages disjoint from ours).
    pub fn absorb(&mut self, other: Aggregates) {
        for (name, o) in other.by {
            let d = self.by.entry(name).or_default();
            d.messages += o.messages;
            d.recipients += o.recipients;
            d.frozen += o.frozen;
            for (k, n) in o.arrivals {
                *d.arrivals.entry(k).or_insert(0) += n;
            }
            for (k, n) in o.due {
                *d.due.entry(k).or_insert(0) += n;
            }
            for (k, n) in o.errors {
                *d.errors.entry(k).or_insert(0) += n;
            }
        }
    }

    /// Per destination, what is queued now.
    pub fn tally(&self) -> BTreeMap<String, Tally> {
        self.by.iter().map(|(k, d)| (k.clone(), d.tally())).collect()
    }
}

/// Per destination, the queued recipients of `messages`, counted by
/// walking them one by one: the reference the aggregates must always equal
/// (the tests compare the two).
pub fn walk<'a>(messages: impl Iterator<Item = &'a Message>) -> BTreeMap<String, Tally> {
    let mut by: BTreeMap<String, Tally> = BTreeMap::new();
    for m in messages {
        let mut counted: Vec<&str> = Vec::new();
        for r in m.pending() {
            let a = by.entry(r.destination.clone()).or_insert(Tally {
                messages: 0,
                recipients: 0,
                oldest: u64::MAX,
                next: None,
                last_error: None,
                frozen: 0,
            });
            a.recipients += 1;
            if !counted.contains(&r.destination.as_str()) {
                counted.push(&r.destination);
                a.messages += 1;
                if m.frozen {
                    a.frozen += 1;
                }
            }
            a.oldest = a.oldest.min(m.arrived);
            if !m.frozen {
                let due = r.next_attempt.unwrap_or(0);
                a.next = Some(a.next.map_or(due, |n| n.min(due)));
            }
            if let Some(e) = &r.last_result {
                let this = (e.at, e.category());
                if a.last_error.as_ref().is_none_or(|last| this >= *last) {
                    a.last_error = Some(this);
                }
            }
        }
    }
    by
}
