//! Giving up root after binding (SPEC §3 `[server] user` and `group`): who
//! the configured account is, handing the data directory over to it, and
//! switching the whole process to it for good — real, effective and saved
//! ids, supplementary groups dropped — checked by reading the ids back.
//! The server calls these once, after the listeners are bound and the keys
//! read, before it opens any store or accepts a connection.

use nix::unistd::{self, Gid, Group, Uid, User};
use std::path::Path;

/// The account the server runs as after start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("server.user {0:?} is not a user on this system")]
    NoSuchUser(String),
    #[error("server.group {0:?} is not a group on this system")]
    NoSuchGroup(String),
    #[error("cannot look up {0:?}: {1}")]
    Lookup(String, #[source] nix::Error),
    #[error("cannot switch to user {user:?} (uid {uid}, gid {gid}): {source}")]
    Switch { user: String, uid: u32, gid: u32, source: nix::Error },
    #[error("after switching to user {user:?} the process still has {found}")]
    NotDropped { user: String, found: String },
    #[error("cannot hand {path} over to user {user:?}: {source}")]
    Chown { path: String, user: String, source: std::io::Error },
}

/// Whether the process runs with root's effective uid.
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// Look up `user` and `group` (the user's primary group when `None`).
pub fn lookup(user: &str, group: Option<&str>) -> Result<Account, PrivilegeError> {
    let u = User::from_name(user)
        .map_err(|e| PrivilegeError::Lookup(user.into(), e))?
        .ok_or_else(|| PrivilegeError::NoSuchUser(user.into()))?;
    let gid = match group {
        None => u.gid,
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| PrivilegeError::Lookup(g.into(), e))?
                .ok_or_else(|| PrivilegeError::NoSuchGroup(g.into()))?
                .gid
        }
    };
    Ok(Account { user: user.into(), uid: u.uid.as_raw(), gid: gid.as_raw() })
}

/// Give everything under `root` (created when missing) that is not already
/// the account's to it, without following symbolic links: a data
/// directory first made by root, or restored from a backup, keeps working
/// once the server is no longer root. Returns how many entries changed.
pub fn hand_over(root: &Path, account: &Account) -> Result<usize, PrivilegeError> {
    use std::os::unix::fs::MetadataExt;
    let err = |path: &Path, source: std::io::Error| PrivilegeError::Chown {
        path: path.display().to_string(),
        user: account.user.clone(),
        source,
    };
    crate::util::create_dir_durably(root).map_err(|e| err(root, e))?;
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| err(&path, e))?;
        if meta.uid() != account.uid || meta.gid() != account.gid {
            std::os::unix::fs::lchown(&path, Some(account.uid), Some(account.gid)).map_err(|e| err(&path, e))?;
            changed += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| err(&path, e))? {
                stack.push(entry.map_err(|e| err(&path, e))?.path());
            }
        }
    }
    Ok(changed)
}

/// Switch the whole process (every thread) to `account` for good and check
/// that no trace of root is left: real, effective and saved uid and gid are
/// the account's, and there are no supplementary groups.
pub fn drop_to(account: &Account) -> Result<(), PrivilegeError> {
    let (uid, gid) = (Uid::from_raw(account.uid), Gid::from_raw(account.gid));
    let switch =
        |source| PrivilegeError::Switch { user: account.user.clone(), uid: account.uid, gid: account.gid, source };
    // groups first: once the uid is gone, so is the right to change them
    unistd::setgroups(&[]).map_err(switch)?;
    unistd::setresgid(gid, gid, gid).map_err(switch)?;
    unistd::setresuid(uid, uid, uid).map_err(switch)?;
    let ids = current().map_err(switch)?;
    let want = Ids { uids: [account.uid; 3], gids: [account.gid; 3], groups: Vec::new() };
    if ids != want {
        return Err(PrivilegeError::NotDropped { user: account.user.clone(), found: ids.to_string() });
    }
    Ok(())
}

/// A process's ids as the kernel has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    /// Real, effective, saved.
    pub uids: [u32; 3],
    pub gids: [u32; 3],
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl std::fmt::Display for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uids {:?}, gids {:?}, supplementary groups {:?}", self.uids, self.gids, self.groups)
    }
}

/// This process's ids, read back from the kernel.
pub fn current() -> Result<Ids, nix::Error> {
    let u = unistd::getresuid()?;
    let g = unistd::getresgid()?;
    let groups = unistd::getgroups()?.into_iter().map(Gid::as_raw).collect();
    Ok(Ids {
        uids: [u.real.as_raw(), u.effective.as_raw(), u.saved.as_raw()],
        gids: [g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw()],
        groups,
    })
}

/// Whether `account` may read `path` by its mode bits (check-config warns
/// when a key the server re-reads on reload would not be).
pub fn can_read(path: &Path, account: &Account) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return false };
    let mode = meta.mode();
    if account.uid == 0 {
        return true;
    }
    if meta.uid() == account.uid {
        return mode & 0o400 != 0;
    }
    if meta.gid() == account.gid {
        return mode & 0o040 != 0;
    }
    mode & 0o004 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_names_what_is_missing() {
        let e = lookup("no-such-user-here", None).unwrap_err().to_string();
        assert!(e.contains("no-such-user-here") && e.contains("not a user"), "{e}");
        let e = lookup("root", Some("no-such-group-here")).unwrap_err().to_string();
        assert!(e.contains("no-such-group-here") && e.contains("not a group"), "{e}");
        let root = lookup("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
    }

    #[test]
    fn mode_bits_decide_readability() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, b"k").unwrap();
        let stranger = Account { user: "other".into(), uid: 4243, gid: 4243 };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        // (as root in CI the file is root's: only the mode bits for others count)
        assert!(!can_read(&f, &stranger));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(can_read(&f, &stranger));
        assert!(!can_read(&dir.path().join("missing"), &stranger));
    }
}
