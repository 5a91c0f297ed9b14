//! Delivery: taking queued recipients to where they go — local mailboxes, or
//! another SMTP server chosen by the recipient domain's MX (or a smarthost)
//! under the connector's TLS policy and the domain's MTA-STS policy
//! ([`mta_sts`]). The scheduler (`queue::scheduler`)
//! decides *when*; this module does one attempt and reports, per recipient,
//! what happened. It never changes the queue itself, and knows nothing of
//! it: an [`Attempt`] carries what delivery needs of a queued message, and
//! the result types ([`AttemptResult`], [`Stage`], [`TlsOutcome`]) are
//! delivery's, kept by the queue as they are.

pub mod dane;
mod local;
pub mod mta_sts;
pub mod mx;
mod pool;
mod result;
mod session;
pub mod smtp;
mod tls;

pub use local::LocalDelivery;
pub use result::{AttemptResult, PolicyKind, PolicyOutcome, Stage, TlsOutcome};
pub use smtp::{requiretls_refusal, OutboundMessage, SmtpTransport, Timeouts, TransportError, TransportSettings};

use crate::proto::smtp::server::BodyType;

/// What one attempt did for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptOutcome {
    /// Accepted by the next hop (2xx) or stored in the mailbox.
    Delivered(AttemptResult),
    /// Try again later (4xx, timeouts, DNS SERVFAIL, TLS required but unavailable...).
    Deferred(AttemptResult),
    /// Give up and send an NDR (5xx, null MX, NXDOMAIN...).
    Failed(AttemptResult),
}

impl RcptOutcome {
    pub fn result(&self) -> &AttemptResult {
        match self {
            RcptOutcome::Delivered(r) | RcptOutcome::Deferred(r) | RcptOutcome::Failed(r) => r,
        }
    }
}

/// The result of one attempt to deliver one message to one destination.
#[derive(Clone, Debug, Default)]
pub struct AttemptReport {
    /// One entry per recipient index that was attempted.
    pub outcomes: Vec<(usize, RcptOutcome)>,
    /// TLS as it went on the connection used (None when no connection was made).
    pub tls: Option<TlsOutcome>,
    /// The address of the host that answered (or last refused a connection
    /// or handshake); None when none was tried (DNS failures, local delivery).
    pub remote_ip: Option<std::net::IpAddr>,
    /// Every next hop failed at connect or TLS: the scheduler may try the
    /// next equally specific connector (SPEC §6.3).
    pub unreachable: bool,
}

/// What one delivery attempt works on: what delivery needs of a queued
/// message, its bytes, and the recipients to try (all for one destination).
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The queue id, for logs and the `Received` trail.
    pub id: &'a str,
    /// The reverse-path; empty for the null sender `<>`.
    pub sender: &'a str,
    /// Unix seconds the message arrived (a mailbox keeps it as its date).
    pub arrived: u64,
    pub body_type: BodyType,
    pub smtputf8: bool,
    pub body: &'a [u8],
    /// The recipients to try: each one's index in the queued message (the
    /// report names it by that) and its address.
    pub recipients: &'a [(usize, &'a str)],
    /// RFC 8689 REQUIRETLS (see [`OutboundMessage::require_tls`]).
    pub require_tls: bool,
    /// `TLS-Required: No` (see [`OutboundMessage::tls_optional`]).
    pub tls_optional: bool,
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Delivery to another SMTP server through a connector.
pub trait Remote: Send + Sync + 'static {
    /// One attempt for recipients in `domain` (the next hop is the
    /// connector's smarthost, or the domain's MX).
    fn deliver<'a>(
        &'a self,
        connector: &'a crate::config::Connector,
        domain: &'a str,
        attempt: Attempt<'a>,
    ) -> BoxFuture<'a, AttemptReport>;
}

/// Delivery into local mailboxes. Recipients are users (aliases were
/// expanded when the message was queued).
pub trait Local: Send + Sync + 'static {
    fn deliver<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, AttemptReport>;
}

impl Remote for SmtpTransport {
    fn deliver<'a>(
        &'a self,
        connector: &'a crate::config::Connector,
        domain: &'a str,
        attempt: Attempt<'a>,
    ) -> BoxFuture<'a, AttemptReport> {
        Box::pin(async move {
            let msg = OutboundMessage {
                id: attempt.id,
                sender: attempt.sender,
                recipients: attempt.recipients,
                body: attempt.body,
                body_type: attempt.body_type,
                smtputf8: attempt.smtputf8,
                require_tls: attempt.require_tls,
                tls_optional: attempt.tls_optional,
            };
            SmtpTransport::deliver(self, connector, domain, &msg).await
        })
    }
}
