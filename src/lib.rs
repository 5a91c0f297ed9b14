//! Postern: a mail server in one binary — an SMTP MTA and relay with
//! opportunistic STARTTLS both ways, a persistent delivery queue, connectors
//! with address spaces, authenticated submission, and POP3, IMAP4 and NNTP
//! (with news feeds) on the same TLS layer.
//!
//! # Layout
//!
//! The flow of a message, and the module that owns each step:
//!
//! ```text
//! client ─▶ net (listener, limits, driver) ─▶ tls (certificates, SNI, upgrade)
//!        ─▶ proto::smtp (sans-IO core) ─▶ smtp (inbound policy, session)
//!        ─▶ queue (spool fsync + sled index) ◀─ control (socket, ops) ◀─ CLI (main.rs)
//!        ─▶ queue::scheduler ─▶ routing (connectors, address spaces)
//!        ─▶ delivery (local: mailbox::MailboxStore::deliver | SMTP)
//! client ─▶ net ─▶ tls ─▶ proto::pop3 (sans-IO core) ─▶ pop3 (session) ─▶ mailbox (files fsync + sled index)
//! client ─▶ net ─▶ tls ─▶ proto::imap (sans-IO core) ─▶ imap (session, view, FETCH, SEARCH) ─▶ mailbox
//! client/peer ─▶ net ─▶ tls ─▶ proto::nntp (sans-IO core) ─▶ nntp (session) ─▶ news (+ news::feed ─▶ nntp::feeder ─▶ peers)
//! ```
//!
//! - [`config`]: the TOML schema, defaults and validation (errors name file, line, key).
//! - [`tls`]: the certificate store, SNI, `min_tls_version`, the upgradable stream.
//! - [`net`]: listeners, connection limits, idle timeouts, graceful shutdown,
//!   and the generic driver that runs any protocol session.
//! - [`proto`]: sans-IO protocol cores (no sockets, clocks or disks).
//! - [`smtp`]: inbound policy (relay, recipients, senders) and the SMTP session.
//! - [`auth`]: accounts (Argon2id), aliases and their expansion
//!   ([`auth::Accounts::expand`], the one place), failure throttling, and
//!   the login glue every service shares ([`auth::login`]).
//! - [`queue`]: queue ids, message records, the spool and the store (its
//!   index in a sled database of its own, [`queue::index`]), which
//!   messages an operator's selection names ([`queue::select`]), and the
//!   queue manager that drives delivery ([`queue::scheduler`]).
//! - [`routing`]: most-specific connector selection, `route explain`, and
//!   expanded recipients turned into queue recipients ([`routing::expand`],
//!   shared by the SMTP service and the queue's reports).
//! - [`delivery`]: one delivery attempt: local mailboxes, or SMTP to the next
//!   hop; it owns the attempt's result types, which the queue stores.
//! - [`mailbox`]: users' folders, UIDs, flags, MODSEQs, message files and
//!   each message's cached parse behind POP3 and IMAP4; the durable
//!   local-delivery API.
//! - [`news`]: newsgroups, articles by number and Message-ID, the overview,
//!   the Message-ID history and expiry behind NNTP (files fsync + sled index).
//! - [`pop3`]: the POP3 service and session (login, maildrop lock, UPDATE at QUIT).
//! - [`imap`]: the IMAP4 service and session (selected folder, FETCH, SEARCH, IDLE).
//! - [`nntp`]: the NNTP service and session (reading, posting, incoming
//!   feeds) and the outgoing feeder.
//! - [`control`]: the control socket, its JSON shapes, the operator actions;
//!   requests are answered by a [`control::Handler`] (the server is one).
//! - [`cert`]: the `cert` subcommands (self-signed, request with pending keys,
//!   install, show); key generation and the first-start self-signed
//!   certificate are the TLS layer's ([`tls::selfsigned`]).
//! - [`track`]: message tracking: the append-only log of every message's
//!   events (received, attempts, delivered, bounced, deleted...) and the
//!   reader behind `postern track`.
//! - [`tlsrpt`]: TLS reporting from the tracking log: `postern tls report`
//!   (coverage per destination domain) and the daily RFC 8460 aggregate
//!   reports (TLS-RPT), queued as mail from the postmaster.
//! - [`server`]: wires everything together for `postern serve`.
//! - [`datadir`], [`util`]: the data directory and small shared helpers.
//! - [`privileges`]: giving up root after binding (`[server] user`/`group`).
//! - [`domain`]: the one canonical (A-label) form of every domain name.
//! - [`metrics`]: the Prometheus counters every layer bumps through a
//!   [`metrics::Metrics`] handle, and the `GET /metrics` listener (`[metrics] listen`).
//!
//! # Layers
//!
//! Data flows one way: a module may import only the modules its row names
//! (`crate::X`, or `super::` climbing out of its own module). The
//! composition root `server` wires the services; the services (`smtp`,
//! `pop3`) use the stores below them; the sans-IO cores under `proto` know
//! nothing of ours but `util` and `domain`. The queue's manager sits above
//! `delivery` and hands it a `delivery::Attempt` (never the queue's own
//! record); `control` sits above the queue and answers through a handler the
//! server gives it, so nothing but the root imports `server`. `tests/architecture.rs` reads
//! this table and every file under `src/`, and fails on an import it does
//! not allow; it lists no exceptions.
//!
//! | module | may import |
//! | --- | --- |
//! | `util` | |
//! | `domain` | |
//! | `config` | util, domain, proto |
//! | `privileges` | util |
//! | `metrics` | util, config |
//! | `datadir` | util, domain, config |
//! | `track` | util, config |
//! | `proto` | util, domain |
//! | `tls` | util, domain, config |
//! | `auth` | util, domain, config, datadir, proto, metrics |
//! | `mailbox` | util, domain, config, datadir, proto, auth |
//! | `news` | util, domain, config, datadir, proto |
//! | `routing` | util, domain, config, auth, proto |
//! | `delivery` | util, domain, config, tls, proto, auth, mailbox |
//! | `queue` | util, domain, config, datadir, tls, proto, auth, routing, delivery, metrics, track |
//! | `net` | util, domain, config, tls, metrics |
//! | `cert` | util, domain, config, tls |
//! | `service` | util, domain, config, tls, net, proto, auth |
//! | `smtp` | util, domain, config, tls, net, proto, auth, routing, queue, service, metrics, track |
//! | `pop3` | util, domain, config, tls, net, proto, auth, mailbox, service |
//! | `imap` | util, domain, config, tls, net, proto, auth, mailbox, service |
//! | `nntp` | util, domain, config, tls, net, proto, auth, news, service |
//! | `tlsrpt` | util, domain, config, delivery, queue, routing, track |
//! | `control` | util, domain, config, datadir, tls, proto, auth, queue, news, track |
//! | `server` | util, domain, config, datadir, privileges, tls, net, proto, auth, routing, mailbox, delivery, queue, news, service, smtp, pop3, imap, nntp, control, metrics, track, tlsrpt |

pub mod auth;
pub mod cert;
pub mod config;
pub mod control;
pub mod datadir;
pub mod delivery;
pub mod domain;
pub mod imap;
pub mod mailbox;
pub mod metrics;
pub mod net;
pub mod news;
pub mod nntp;
pub mod pop3;
pub mod privileges;
pub mod proto;
pub mod queue;
pub mod routing;
pub mod server;
pub mod service;
pub mod smtp;
pub mod tls;
pub mod tlsrpt;
pub mod track;
pub mod util;
