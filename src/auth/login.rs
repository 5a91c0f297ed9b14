//! What every service does around a login, whatever the protocol (SMTP
//! AUTH, POP3 USER/PASS and AUTH, IMAP4, NNTP): hold one slot of
//! the per-IP failure throttle from the moment an attempt starts to its
//! outcome, so parallel sessions cannot race past the limit (SPEC §4);
//! accept a password that succeeded lately from the login cache
//! (`super::cache`) at once, and check any other off the async threads, a
//! few at a time (Argon2id is slow on purpose);
//! answer a failure only after the failure delay; and write the log lines.
//! A service maps the outcomes to its core's replies and nothing more.
//!
//! [`Gate`] is built once by the server and cloned into every service;
//! each session takes a [`Login`] from it.

use super::throttle::{Attempt, AuthThrottle};
use super::Accounts;
use crate::metrics::{AuthFailure, Metrics};
use crate::proto::sasl::Credentials;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The accounts, the throttle and the failure delay, shared by all services.
#[derive(Clone)]
pub struct Gate {
    accounts: Accounts,
    throttle: AuthThrottle,
    failure_delay: Duration,
    /// Password checks running at once. Each Argon2id check holds ~19 MiB
    /// for its duration; unbounded, a burst of logins ran one blocking
    /// thread each and the allocator kept their memory (3.4 GB after 600
    /// logins at once in the IMAP benchmark). More than one per core buys
    /// no throughput: a login waits for a turn instead.
    hashing: Arc<tokio::sync::Semaphore>,
    /// Counts the refusals (`postern_auth_failures_total`).
    metrics: Metrics,
}

/// Why credentials were not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many recent failures from this client; nothing was checked.
    Throttled,
    /// Wrong user or password (the failure delay has passed).
    Failed,
}

impl Refused {
    /// The protocol's reply for this refusal.
    pub fn reply<R>(self, throttled: R, failed: R) -> R {
        match self {
            Refused::Throttled => throttled,
            Refused::Failed => failed,
        }
    }
}

impl Gate {
    pub fn new(accounts: Accounts, throttle: AuthThrottle, failure_delay: Duration) -> Gate {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let hashing = Arc::new(tokio::sync::Semaphore::new(cores.max(2)));
        Gate { accounts, throttle, failure_delay, hashing, metrics: Metrics::off() }
    }

    /// The same gate, counting its refusals in `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Gate {
        Gate { metrics, ..self }
    }

    /// The logins of one session of `server` with the client at `peer`.
    pub fn session(&self, server: &str, peer: SocketAddr) -> Login {
        Login { gate: self.clone(), server: Arc::from(server), peer, attempt: None }
    }
}

/// One session's logins: the throttle slot of the attempt under way.
pub struct Login {
    gate: Gate,
    server: Arc<str>,
    peer: SocketAddr,
    attempt: Option<Attempt>,
}

impl Login {
    /// An attempt starts now (`what` names it in the log: `AUTH`, `login`):
    /// take its slot before any credentials arrive. False when the client's
    /// failure limit is used up for now.
    pub fn begin(&mut self, what: &str) -> bool {
        self.attempt = self.gate.throttle.begin(self.peer.ip(), Instant::now());
        if self.attempt.is_none() {
            tracing::info!(server = %self.server, peer = %self.peer, "{what} refused: too many recent failures");
            self.gate.metrics.auth_failed(&self.server, AuthFailure::Throttled);
        }
        self.attempt.is_some()
    }

    /// [`Login::begin`] as a core's AUTH step wants it: `Ok` with the slot
    /// taken, else the protocol's `throttled` reply.
    pub fn slot<R>(&mut self, what: &str, throttled: R) -> Result<(), R> {
        if self.begin(what) {
            Ok(())
        } else {
            Err(throttled)
        }
    }

    /// Check credentials, in the slot taken by [`Login::begin`] (one is
    /// taken now if none is held). Returns the account's key.
    pub async fn verify(&mut self, creds: Credentials) -> Result<String, Refused> {
        if self.attempt.is_none() && !self.begin("login") {
            return Err(Refused::Throttled);
        }
        let Some(attempt) = self.attempt.take() else { return Err(Refused::Throttled) };
        let name = creds.username.clone();
        let accounts = self.gate.accounts.clone();
        // a password that succeeded lately needs no Argon2 and no turn
        let creds = Arc::new(creds);
        let (a, c) = (accounts.clone(), creds.clone());
        let cached =
            tokio::task::spawn_blocking(move || a.verify_cached(&c.username, &c.password)).await.ok().flatten();
        let verified = match cached {
            Some(user) => Some(user),
            None => {
                // the semaphore is never closed; a turn is always granted in the end
                let turn = self.gate.hashing.clone().acquire_owned().await.ok();
                tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    accounts.verify(&creds.username, &creds.password)
                })
                .await
                .ok()
                .flatten()
            }
        };
        match verified {
            Some(user) => {
                attempt.succeeded();
                tracing::info!(server = %self.server, peer = %self.peer, user = %user, "authenticated");
                Ok(user)
            }
            None => {
                self.failure(attempt, &name).await;
                Err(Refused::Failed)
            }
        }
    }

    /// An exchange that made no sense counts as a failure too.
    pub async fn failed(&mut self) {
        match self.attempt.take() {
            Some(attempt) => self.failure(attempt, "-").await,
            None => self.log_failure("-"),
        }
    }

    /// After the core has had its input: unless its exchange is still
    /// under way, an attempt that ended without an outcome (cancelled, bad
    /// base64, TLS started) gives its slot back.
    pub fn settle(&mut self, in_progress: bool) {
        if !in_progress {
            self.attempt = None;
        }
    }

    /// Count the failure and wait before it is answered; the delay holds
    /// up this session and nobody else.
    async fn failure(&self, attempt: Attempt, user: &str) {
        self.log_failure(user);
        attempt.failed(Instant::now());
        tokio::time::sleep(self.gate.failure_delay).await;
    }

    fn log_failure(&self, user: &str) {
        tracing::info!(server = %self.server, peer = %self.peer, user, "authentication failed");
        self.gate.metrics.auth_failed(&self.server, AuthFailure::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(limit: u32) -> (Gate, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let accounts = Accounts::open(&db).unwrap();
        accounts.add_user("alice@example.test", "pw").unwrap();
        (Gate::new(accounts, AuthThrottle::new(limit, Duration::from_secs(60)), Duration::from_millis(1)), dir)
    }

    fn creds(p: &str) -> Credentials {
        Credentials { username: "alice@example.test".into(), password: p.into() }
    }

    #[tokio::test]
    async fn slots_failures_and_the_throttle() {
        let (gate, _dir) = gate(2);
        let peer: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let mut a = gate.session("mx", peer);
        let mut b = gate.session("mx", peer);
        assert!(a.begin("AUTH") && b.begin("AUTH"));
        assert!(!gate.session("mx", peer).begin("AUTH"), "both slots are held");
        a.settle(false);
        assert_eq!(a.verify(creds("pw")).await, Ok("alice@example.test".into()), "a slot is taken when none is held");
        b.failed().await;
        assert_eq!(a.verify(creds("wrong")).await, Err(Refused::Failed));
        assert_eq!(a.verify(creds("pw")).await, Err(Refused::Throttled), "two failures use the limit up");
    }
}
