//! Alias expansion routed into queue recipients: what a local recipient
//! finally delivers to ([`Accounts::expand`]), each remote target given its
//! queue destination by [`super::select`]. Shared by the SMTP service (at
//! RCPT/DATA) and the queue (DSN recipients), so neither imports the other.

use crate::auth::{Accounts, Reached};
use crate::config::Config;
use crate::proto::smtp::Address;

/// The queue destination for remote mail to `domain` from virtual server
/// `source`: the chosen connector's, or `unroutable/<domain>` when no
/// connector carries it (that recipient then fails with 5.4.4 when tried).
pub fn route_remote(config: &Config, domain: &str, source: &str) -> String {
    match super::choose(&super::select(&config.connectors, domain, source)) {
        Some(c) => super::destination(c.connector, domain),
        None => format!("unroutable/{domain}"),
    }
}

/// A recipient as it goes into the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedRcpt {
    pub address: String,
    pub destination: String,
    /// The address the client gave, when expansion replaced it.
    pub original: Option<String>,
}

/// Expand a local recipient into the users and remote addresses it stands
/// for ([`Accounts::expand`]: aliases, recursively; `postmaster` without a
/// mailbox goes to `server.postmaster`). Remote targets are routed as mail
/// from `source` would be; one with no route keeps the destination
/// `unroutable/<domain>` and fails with 5.4.4 when attempted (the alias is
/// the operator's doing, not the sender's). Never empty (SPEC §13.2): an
/// expansion that reaches nobody — a loop that slipped in between RCPT and
/// DATA — stays the address itself, which local delivery then bounces.
pub fn expand_local(config: &Config, accounts: &Accounts, source: &str, address: &Address) -> Vec<QueuedRcpt> {
    let original = address.to_string();
    let reached = accounts.expand(&address.key(), &config.server.postmaster, |d| config.is_local_domain(d));
    let mut out: Vec<QueuedRcpt> = match reached {
        Ok(targets) => targets
            .into_iter()
            .map(|t| match t {
                Reached::Local(key) => QueuedRcpt { address: key, destination: "local".into(), original: None },
                Reached::Remote(key) => {
                    let domain = key.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
                    QueuedRcpt { destination: route_remote(config, &domain, source), address: key, original: None }
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(rcpt = %original, "alias expansion reaches no mailbox, the message will bounce: {e}");
            Vec::new()
        }
    };
    if out.is_empty() {
        out.push(QueuedRcpt { address: address.key(), destination: "local".into(), original: None });
    }
    for r in &mut out {
        if r.address != address.key() {
            r.original = Some(original.clone());
        } else {
            // keep the client's spelling when nothing was expanded
            r.address = original.clone();
        }
    }
    out
}
