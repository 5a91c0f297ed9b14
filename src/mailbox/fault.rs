//! A fault seam under the mailbox store, **for tests only**: every disk
//! and index write the store makes first asks [`Faults::check`] whether
//! to fail, so a test can make the Nth hit of one step fail with EIO,
//! ENOSPC or EMFILE and prove that the store reports a temporary failure,
//! leaves nothing half-written visible and loses nothing delivered before.
//! With no fault armed (always, in production) a check costs a counter
//! and an uncontended lock, nothing next to the fsyncs it sits beside.
//!
//! The steps, as named in a spec: `mailbox.create` (open a new file),
//! `mailbox.write` (write its bytes; half are written before the error),
//! `mailbox.fsync` (fsync a file), `mailbox.link` (hard-link a message to
//! its UID name), `mailbox.dirsync` (fsync a directory), `mailbox.unlink`
//! (remove a message file), `mailbox.state` (rewrite `folder.json`),
//! `mailbox.folder` (make, rename or remove a folder directory),
//! `mailbox.index` (a sled write) and `mailbox.flush` (sled flush).
//!
//! The real binary arms faults from the environment when the store opens
//! at `serve` start (and logs a warning that it did), e.g.
//! `POSTERN_MAILBOX_FAULTS="mailbox.fsync=EIO@1,mailbox.index=ENOSPC@3"`:
//! the first fsync and the third index write after start fail once. The
//! queue has its own, independent seam.

use crate::util::LockExt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The environment variable read by [`Faults::from_env`].
pub const ENV: &str = "POSTERN_MAILBOX_FAULTS";

/// One kind of disk or index operation the store performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Create,
    Write,
    Fsync,
    Link,
    DirSync,
    Unlink,
    State,
    Folder,
    Index,
    Flush,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::Create,
        Step::Write,
        Step::Fsync,
        Step::Link,
        Step::DirSync,
        Step::Unlink,
        Step::State,
        Step::Folder,
        Step::Index,
        Step::Flush,
    ];

    /// The name in a spec, e.g. `mailbox.fsync`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Create => "mailbox.create",
            Step::Write => "mailbox.write",
            Step::Fsync => "mailbox.fsync",
            Step::Link => "mailbox.link",
            Step::DirSync => "mailbox.dirsync",
            Step::Unlink => "mailbox.unlink",
            Step::State => "mailbox.state",
            Step::Folder => "mailbox.folder",
            Step::Index => "mailbox.index",
            Step::Flush => "mailbox.flush",
        }
    }

    fn index(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// The errors a fault can raise (Linux and BSD agree on these numbers).
pub const EIO: i32 = 5;
pub const EMFILE: i32 = 24;
pub const ENOSPC: i32 = 28;

fn errno(name: &str) -> Option<i32> {
    match name {
        "EIO" => Some(EIO),
        "EMFILE" => Some(EMFILE),
        "ENOSPC" => Some(ENOSPC),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{ENV}: {0:?} is not STEP=EIO|ENOSPC|EMFILE@N (STEP one of mailbox.create, .write, .fsync, .link, .dirsync, .unlink, .state, .folder, .index, .flush)")]
pub struct SpecError(String);

#[derive(Clone, Copy, Debug)]
struct Rule {
    step: Step,
    errno: i32,
    /// Fail the hit with this count (1-based, per step).
    at: u64,
}

/// The armed faults and a hit counter per step.
#[derive(Default)]
pub struct Faults {
    hits: [AtomicU64; Step::ALL.len()],
    rules: Mutex<Vec<Rule>>,
}

impl Faults {
    /// No faults: what production runs with.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Parse a spec: comma-separated `STEP=ERRNO@N`.
    pub fn parse(spec: &str) -> Result<Faults, SpecError> {
        let faults = Faults::none();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || SpecError(part.to_string());
            let (step, rest) = part.split_once('=').ok_or_else(bad)?;
            let (err, at) = rest.split_once('@').ok_or_else(bad)?;
            let step = Step::ALL.into_iter().find(|s| s.name() == step.trim()).ok_or_else(bad)?;
            let errno = errno(err.trim()).ok_or_else(bad)?;
            let at: u64 = at.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
            faults.rules.lock_or_recover().push(Rule { step, errno, at });
        }
        Ok(faults)
    }

    /// The faults named by [`ENV`], if it is set; warns that they are armed.
    pub fn from_env() -> Result<Faults, SpecError> {
        match std::env::var(ENV) {
            Ok(spec) if !spec.trim().is_empty() => {
                let faults = Faults::parse(&spec)?;
                tracing::warn!(spec = %spec, "{ENV} is set: mailbox store faults are armed (a test seam; never set it in production)");
                Ok(faults)
            }
            _ => Ok(Faults::none()),
        }
    }

    /// Make the `n`th hit of `step` from now fail with `errno` (tests).
    pub fn inject(&self, step: Step, errno: i32, n: u64) {
        let at = self.hits[step.index()].load(Ordering::SeqCst) + n;
        self.rules.lock_or_recover().push(Rule { step, errno, at });
    }

    /// Count a hit of `step`; an error if a fault is armed for this hit.
    pub fn check(&self, step: Step) -> io::Result<()> {
        let hit = self.hits[step.index()].fetch_add(1, Ordering::SeqCst) + 1;
        let mut rules = self.rules.lock_or_recover();
        if rules.is_empty() {
            return Ok(());
        }
        if let Some(i) = rules.iter().position(|r| r.step == step && r.at == hit) {
            let r = rules.remove(i);
            tracing::warn!(step = step.name(), hit, "injected fault: {}", io::Error::from_raw_os_error(r.errno));
            return Err(io::Error::from_raw_os_error(r.errno));
        }
        Ok(())
    }

    /// True while some armed fault has not fired yet.
    pub fn pending(&self) -> bool {
        !self.rules.lock_or_recover().is_empty()
    }
}
