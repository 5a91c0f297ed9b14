//! Postern: a mail server in one binary — an SMTP MTA and relay with
//! opportunistic STARTTLS both ways, a persistent delivery queue, connectors
//! with address spaces, authenticated submission, and (as they land) POP3,
//! IMAP4 and NNTP on the same TLS layer.
//!
//! # Layout
//!
//! The flow of a message, and the module that owns each step:
//!
//! ```text
//! client ─▶ net (listener, limits, driver) ─▶ tls (certificates, SNI, upgrade)
//!        ─▶ proto::smtp (sans-IO core) ─▶ smtp (inbound policy, session)
//!        ─▶ queue (spool fsync + sled index) ◀─ control (socket, ops) ◀─ CLI (main.rs)
//!        ─▶ routing (connectors, address spaces)
//!        ─▶ delivery (local: mailbox::MailboxStore::deliver | SMTP)
//! client ─▶ net ─▶ tls ─▶ proto::pop3 (sans-IO core) ─▶ pop3 (session) ─▶ mailbox (files fsync + sled index)
//! ```
//!
//! - [`config`]: the TOML schema, defaults and validation (errors name file, line, key).
//! - [`tls`]: the certificate store, SNI, `min_tls_version`, the upgradable stream.
//! - [`net`]: listeners, connection limits, idle timeouts, graceful shutdown,
//!   and the generic driver that runs any protocol session.
//! - [`proto`]: sans-IO protocol cores (no sockets, clocks or disks).
//! - [`smtp`]: inbound policy (relay, recipients, senders) and the SMTP session.
//! - [`auth`]: accounts (Argon2id), aliases, SASL, failure throttling.
//! - [`queue`]: queue ids, message records, the spool and the store.
//! - [`routing`]: most-specific connector selection and `route explain`.
//! - [`delivery`]: one delivery attempt: local mailboxes, or SMTP to the next hop.
//! - [`mailbox`]: users' folders, UIDs, flags and message files behind POP3
//!   and IMAP4; the durable local-delivery API.
//! - [`pop3`]: the POP3 service and session (login, maildrop lock, UPDATE at QUIT).
//! - [`control`]: the control socket, its JSON shapes, the operator actions.
//! - [`cert`]: the `cert` subcommands (self-signed, request with pending keys,
//!   install, show) and the self-signed certificate made at first start.
//! - [`server`]: wires everything together for `postern serve`.
//! - [`datadir`], [`util`]: the data directory and small shared helpers.
//! - [`domain`]: the one canonical (A-label) form of every domain name.

pub mod auth;
pub mod cert;
pub mod config;
pub mod control;
pub mod datadir;
pub mod delivery;
pub mod domain;
pub mod mailbox;
pub mod net;
pub mod pop3;
pub mod proto;
pub mod queue;
pub mod routing;
pub mod server;
pub mod smtp;
pub mod tls;
pub mod util;
