//! Local delivery: queued recipients whose destination is `local` go into
//! their user's INBOX through the mailbox store, which returns only once
//! the message is durable. Aliases were expanded when the message was
//! queued, so every recipient here is (or was) a user. A missing user is a
//! permanent failure (an NDR); a store error is temporary (retried). The
//! configured postmaster always exists (SPEC §4): its mail is kept in its
//! mailbox even before the operator creates the account to read it.

use super::{Attempt, AttemptReport, BoxFuture, Local, RcptOutcome};
use super::{AttemptResult, Stage};
use crate::mailbox::{Flags, MailboxStore, INBOX};
use std::sync::Arc;

pub struct LocalDelivery {
    mailboxes: Arc<MailboxStore>,
    /// The postmaster's key: delivered to whether or not it has an account.
    postmaster: String,
}

impl LocalDelivery {
    pub fn new(mailboxes: Arc<MailboxStore>, postmaster: &str) -> LocalDelivery {
        LocalDelivery { mailboxes, postmaster: crate::auth::key(postmaster) }
    }
}

impl Local for LocalDelivery {
    fn deliver<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, AttemptReport> {
        Box::pin(async move {
            let users: Vec<(usize, String)> =
                attempt.recipients.iter().map(|&(i, address)| (i, crate::auth::key(address))).collect();
            let store = self.mailboxes.clone();
            let body = attempt.body.to_vec();
            let arrived = attempt.arrived;
            let postmaster = self.postmaster.clone();
            // the store blocks (it fsyncs): one blocking task for all recipients
            let results = tokio::task::spawn_blocking(move || {
                users
                    .into_iter()
                    .map(|(i, user)| {
                        let r = if user == postmaster {
                            store.append(&user, INBOX, &body, arrived, &Flags::new()).map(|a| a.uid)
                        } else {
                            store.deliver(&user, &body, arrived)
                        };
                        (i, r)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let now = crate::util::now_secs();
            let result = |code: u16, enhanced: &str, text: String| AttemptResult {
                code: Some(code),
                enhanced: Some(enhanced.into()),
                text,
                remote_host: None,
                stage: Stage::Local,
                at: now,
            };
            let outcomes = match results {
                Ok(rs) => rs
                    .into_iter()
                    .map(|(i, r)| {
                        let o = match r {
                            Ok(uid) => RcptOutcome::Delivered(result(
                                250,
                                "2.0.0",
                                format!("delivered to the mailbox (uid {uid})"),
                            )),
                            Err(e) => {
                                let (code, enhanced) = e.smtp_status();
                                if e.is_permanent() {
                                    RcptOutcome::Failed(result(code, enhanced, e.to_string()))
                                } else {
                                    RcptOutcome::Deferred(result(code, enhanced, e.to_string()))
                                }
                            }
                        };
                        (i, o)
                    })
                    .collect(),
                Err(e) => attempt
                    .recipients
                    .iter()
                    .map(|&(i, _)| {
                        (i, RcptOutcome::Deferred(result(451, "4.3.0", format!("local delivery task failed: {e}"))))
                    })
                    .collect(),
            };
            AttemptReport { outcomes, tls: None, remote_ip: None, unreachable: false }
        })
    }
}
