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
//! same time: small segments let tests make many of them. The third,
//! `POSTERN_RECONCILE_GATE` (a path), holds the server's background
//! reconciliation of the queue until that file exists, so tests can watch
//! what the server does meanwhile. A spec that does
//! not parse is a [`SpecError`] naming the part at fault; [`EnvError`] adds
//! which variable held it.

use crate::util::LockExt;
use std::io;
use std::path::{Path, PathBuf};
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

/// A fault spec that does not parse, naming the comma-separated part at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("fault {part:?}: expected step=ERRNO")]
    Syntax { part: String },
    #[error("fault {part:?}: unknown step {step:?} (known: {})", STEPS.join(", "))]
    UnknownStep { part: String, step: String },
    #[error("fault {part:?}: bad count {count:?}")]
    Count { part: String, count: String },
    #[error("fault {part:?}: bad position {position:?}")]
    Position { part: String, position: String },
    #[error("fault {part:?}: unknown errno {errno:?}")]
    Errno { part: String, errno: String },
}

/// A test-seam variable [`install_from_env`] could not use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("POSTERN_FAULTS: {0}")]
    Faults(#[from] SpecError),
    #[error("POSTERN_SPOOL_SEGMENT_LIMIT: {0:?} is not a number")]
    SegmentLimit(String),
}

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
    pub fn parse(spec: &str) -> Result<FaultPlan, SpecError> {
        let plan = FaultPlan::default();
        plan.add(spec)?;
        Ok(plan)
    }

    /// Add the rules of `spec` to the plan.
    pub fn add(&self, spec: &str) -> Result<(), SpecError> {
        let mut new = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (step, rest) = part.split_once('=').ok_or_else(|| SpecError::Syntax { part: part.into() })?;
            if !STEPS.contains(&step) {
                return Err(SpecError::UnknownStep { part: part.into(), step: step.into() });
            }
            let (rest, times) = match rest.split_once('x') {
                Some((r, t)) => {
                    let count =
                        t.parse::<u64>().map_err(|_| SpecError::Count { part: part.into(), count: t.into() })?;
                    (r, Some(count))
                }
                None => (rest, None),
            };
            let (name, from) = match rest.split_once('@') {
                Some((n, f)) => {
                    let from =
                        f.parse::<u64>().map_err(|_| SpecError::Position { part: part.into(), position: f.into() })?;
                    (n, from)
                }
                None => (rest, 1),
            };
            let errno = errno(name).ok_or_else(|| SpecError::Errno { part: part.into(), errno: name.into() })?;
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
static GATE: OnceLock<PathBuf> = OnceLock::new();

/// Read `POSTERN_FAULTS`, `POSTERN_SPOOL_SEGMENT_LIMIT` and
/// `POSTERN_RECONCILE_GATE` (called by `serve`
/// before the queue opens). A spec that does not parse is an error naming it.
pub fn install_from_env() -> Result<(), EnvError> {
    let plan = match std::env::var("POSTERN_FAULTS") {
        Ok(spec) if !spec.is_empty() => {
            let p = FaultPlan::parse(&spec)?;
            tracing::warn!("POSTERN_FAULTS is set: the test seam injects disk errors ({spec})");
            p
        }
        _ => FaultPlan::default(),
    };
    let limit = match std::env::var("POSTERN_SPOOL_SEGMENT_LIMIT") {
        Ok(s) if !s.is_empty() => {
            let n = s.parse::<u64>().map_err(|_| EnvError::SegmentLimit(s.clone()))?;
            tracing::warn!("POSTERN_SPOOL_SEGMENT_LIMIT is set: spool segments rotate past {n} bytes (test seam)");
            Some(n.max(1))
        }
        _ => None,
    };
    if let Some(gate) = std::env::var_os("POSTERN_RECONCILE_GATE").filter(|g| !g.is_empty()) {
        let gate = PathBuf::from(gate);
        tracing::warn!(
            "POSTERN_RECONCILE_GATE is set: the queue is reconciled once {} exists (test seam)",
            gate.display()
        );
        let _ = GATE.set(gate);
    }
    let _ = INSTALLED.set((Arc::new(plan), limit));
    Ok(())
}

/// The file the background reconciliation waits for, if
/// [`install_from_env`] found one named.
pub fn installed_reconcile_gate() -> Option<&'static Path> {
    GATE.get().map(PathBuf::as_path)
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
        assert!(FaultPlan::parse("spool.nope=EIO").unwrap_err().to_string().contains("spool.nope"));
        assert!(FaultPlan::parse("spool.sync=EFOO").is_err());
    }

    #[test]
    fn spec_errors_name_the_part_at_fault() {
        let text = |spec: &str| FaultPlan::parse(spec).unwrap_err().to_string();
        assert_eq!(text("spool.sync"), r#"fault "spool.sync": expected step=ERRNO"#);
        assert_eq!(text("spool.sync=EIOx2y"), r#"fault "spool.sync=EIOx2y": bad count "2y""#);
        assert_eq!(text("spool.sync=EIO@z"), r#"fault "spool.sync=EIO@z": bad position "z""#);
        assert_eq!(text("spool.sync=EFOO"), r#"fault "spool.sync=EFOO": unknown errno "EFOO""#);
        assert!(text("x=EIO").starts_with(r#"fault "x=EIO": unknown step "x" (known: spool.write, spool.sync, "#));
        let env = EnvError::from(FaultPlan::parse("spool.sync").unwrap_err());
        assert_eq!(env.to_string(), r#"POSTERN_FAULTS: fault "spool.sync": expected step=ERRNO"#);
        let limit = EnvError::SegmentLimit("lots".into());
        assert_eq!(limit.to_string(), r#"POSTERN_SPOOL_SEGMENT_LIMIT: "lots" is not a number"#);
    }
}
