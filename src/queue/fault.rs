//! A test seam under the spool: a [`FaultPlan`] names steps of the disk
//! work (`spool.write`, `spool.sync`, rotation, spare making, the done
//! journals) and makes chosen ones fail with a chosen errno, so tests can
//! prove that every failure answers `451` and leaves nothing a restart would
//! resurrect. Unit tests build a plan directly; the binary reads one from
//! the environment variable `POSTERN_FAULTS` once, at `serve` start (see
//! [`install_from_env`]), and logs a warning when it does. Unset, the plan
//! is empty and every check is one uncontended lock and an empty scan.
//!
//! Spec syntax: `step=ERRNO[@N][xM]`, comma-separated; the step fails from
//! its N-th use on (default 1), M times (default: every time after).
//! ERRNO is `EIO`, `ENOSPC` or `EMFILE`. Example:
//! `POSTERN_FAULTS="spool.sync=EIO@3x1,spool.spare=ENOSPC"`.
//!
//! `POSTERN_SPOOL_SEGMENT_LIMIT` (bytes) is the second seam, read at the
//! same time: small segments let tests make many of them.

use crate::util::LockExt;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

/// The steps the spool consults (documentation and spec validation).
pub const STEPS: &[&str] = &[
    // a batch's write (half the bytes reach the file, then the error)
    "spool.write",
    // a batch's fdatasync (after the bytes reached the file)
    "spool.sync",
    // serialising one record's metadata
    "spool.encode",
    // rotation: renaming the spare into place, opening the new segment,
    // fsyncing the directory
    "spool.rotate.rename",
    "spool.rotate.open",
    "spool.rotate.dirsync",
    // making a spare segment
    "spool.spare",
    // cleaning up after a failed batch (zeroing it out; the tombstone)
    "spool.cleanup",
    "spool.tombstone",
    // appending to a done journal
    "journal.write",
];

#[derive(Debug)]
struct Rule {
    step: String,
    errno: i32,
    from: u64,
    times: Option<u64>,
    seen: u64,
}

/// Which steps fail, and how. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct FaultPlan {
    rules: Mutex<Vec<Rule>>,
}

fn errno(name: &str) -> Option<i32> {
    Some(match name {
        "EIO" => 5,
        "ENOSPC" => 28,
        "EMFILE" => 24,
        _ => return None,
    })
}

impl FaultPlan {
    pub fn none() -> Arc<FaultPlan> {
        Arc::new(FaultPlan::default())
    }

    /// Parse a spec (see the module docs).
    pub fn parse(spec: &str) -> Result<FaultPlan, String> {
        let plan = FaultPlan::default();
        plan.add(spec)?;
        Ok(plan)
    }

    /// Add the rules of `spec` to the plan.
    pub fn add(&self, spec: &str) -> Result<(), String> {
        let mut new = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (step, rest) = part.split_once('=').ok_or_else(|| format!("fault {part:?}: expected step=ERRNO"))?;
            if !STEPS.contains(&step) {
                return Err(format!("fault {part:?}: unknown step {step:?} (known: {})", STEPS.join(", ")));
            }
            let (rest, times) = match rest.split_once('x') {
                Some((r, t)) => (r, Some(t.parse::<u64>().map_err(|_| format!("fault {part:?}: bad count {t:?}"))?)),
                None => (rest, None),
            };
            let (name, from) = match rest.split_once('@') {
                Some((n, f)) => (n, f.parse::<u64>().map_err(|_| format!("fault {part:?}: bad position {f:?}"))?),
                None => (rest, 1),
            };
            let errno = errno(name).ok_or_else(|| format!("fault {part:?}: unknown errno {name:?}"))?;
            new.push(Rule { step: step.to_string(), errno, from: from.max(1), times, seen: 0 });
        }
        self.rules.lock_or_recover().extend(new);
        Ok(())
    }

    /// Forget every rule: the disk works again.
    pub fn clear(&self) {
        self.rules.lock_or_recover().clear();
    }

    /// Called at `step`: the injected error, if the plan says this use fails.
    pub fn check(&self, step: &str) -> io::Result<()> {
        let mut rules = self.rules.lock_or_recover();
        for r in rules.iter_mut().filter(|r| r.step == step) {
            r.seen += 1;
            let fails = r.seen >= r.from && r.times.is_none_or(|t| r.seen < r.from + t);
            if fails {
                return Err(io::Error::from_raw_os_error(r.errno));
            }
        }
        Ok(())
    }
}

static INSTALLED: OnceLock<(Arc<FaultPlan>, Option<u64>)> = OnceLock::new();

/// Read `POSTERN_FAULTS` and `POSTERN_SPOOL_SEGMENT_LIMIT` (called by `serve`
/// before the queue opens). A spec that does not parse is an error naming it.
pub fn install_from_env() -> Result<(), String> {
    let plan = match std::env::var("POSTERN_FAULTS") {
        Ok(spec) if !spec.is_empty() => {
            let p = FaultPlan::parse(&spec).map_err(|e| format!("POSTERN_FAULTS: {e}"))?;
            tracing::warn!("POSTERN_FAULTS is set: the test seam injects disk errors ({spec})");
            p
        }
        _ => FaultPlan::default(),
    };
    let limit = match std::env::var("POSTERN_SPOOL_SEGMENT_LIMIT") {
        Ok(s) if !s.is_empty() => {
            let n = s.parse::<u64>().map_err(|_| format!("POSTERN_SPOOL_SEGMENT_LIMIT: {s:?} is not a number"))?;
            tracing::warn!("POSTERN_SPOOL_SEGMENT_LIMIT is set: spool segments rotate past {n} bytes (test seam)");
            Some(n.max(1))
        }
        _ => None,
    };
    let _ = INSTALLED.set((Arc::new(plan), limit));
    Ok(())
}

/// The plan installed by [`install_from_env`] (empty if none).
pub fn installed() -> Arc<FaultPlan> {
    INSTALLED.get().map(|(p, _)| p.clone()).unwrap_or_else(FaultPlan::none)
}

/// The segment limit installed by [`install_from_env`], if any.
pub fn installed_segment_limit() -> Option<u64> {
    INSTALLED.get().and_then(|(_, l)| *l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_from_the_nth_use_for_m_uses() {
        let p = FaultPlan::parse("spool.sync=EIO@2x2, spool.spare=ENOSPC").unwrap();
        let hits: Vec<bool> = (0..5).map(|_| p.check("spool.sync").is_err()).collect();
        assert_eq!(hits, [false, true, true, false, false]);
        assert_eq!(p.check("spool.spare").unwrap_err().raw_os_error(), Some(28));
        assert!(p.check("spool.write").is_ok());
        p.clear();
        assert!(p.check("spool.spare").is_ok());
        assert!(FaultPlan::parse("spool.nope=EIO").unwrap_err().contains("spool.nope"));
        assert!(FaultPlan::parse("spool.sync=EFOO").is_err());
    }
}
