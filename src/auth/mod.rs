//! Accounts and authentication: users with Argon2id password hashes,
//! aliases and their expansion, the per-IP failure throttle, and the login
//! glue every service shares (`login`: throttle slot, verification off the
//! async threads, failure delay, log lines), and the cache of successful
//! password checks that spares a repeated login its Argon2id (`cache`,
//! keyed HMACs, never a password). The SASL exchange itself is
//! sans-IO and lives in the protocol kit (`proto::sasl`).
//! Passwords never leave this module except as hashes, and nothing here
//! logs one. Aliases never form a loop that reaches no mailbox: `add_alias`
//! refuses a target that leads back to the alias, and [`Accounts::expand`]
//! reports a loop stored before that check as an error, never as nobody.

pub mod cache;
pub mod login;
pub mod throttle;

pub use login::{Gate, Login, Refused};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error("{0} is already a user; an alias cannot have the same address")]
    AliasIsUser(String),
    #[error("{0} is an alias; a user cannot have the same address")]
    UserIsAlias(String),
    #[error("no alias {0}")]
    NoSuchAlias(String),
    #[error("alias {0} does not point to {1}")]
    NoSuchTarget(String, String),
    #[error("the password is empty")]
    EmptyPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("account database: {0}")]
    Db(#[from] sled::Error),
    #[error("account record {0} is damaged: {1}")]
    Corrupt(String, String),
    #[error("alias loop {0}: refused, mail sent into it would reach no mailbox")]
    AliasCycle(String),
    #[error("alias loop {0}: it reaches no mailbox")]
    AliasLoop(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct UserRecord {
    /// PHC string, `$argon2id$v=19$...`.
    hash: String,
    created: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub email: String,
    pub created: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasInfo {
    pub alias: String,
    pub targets: Vec<String>,
}

/// What a local address is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalTarget {
    User(String),
    Alias(Vec<String>),
}

/// Where a local address finally delivers, after alias expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reached {
    /// A local address: a user, the postmaster, or one with no mailbox
    /// (an alias nested too deep), which local delivery bounces.
    Local(String),
    /// An address in a domain that is not local.
    Remote(String),
}

/// Aliases nest at most this deep; deeper ones end at the address reached.
const MAX_ALIAS_DEPTH: usize = 8;

/// Users and aliases, keyed by lower-case `local@domain` (the domain in
/// its canonical A-label form).
#[derive(Clone)]
pub struct Accounts {
    users: sled::Tree,
    aliases: sled::Tree,
    /// Successful password checks, shared by every clone ([`cache`]).
    verified: Arc<cache::VerifiedCache>,
}

pub fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.is_empty() {
        return Err(AccountError::EmptyPassword);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn verify_hash(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so that a wrong
/// user name costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("postern-dummy-password").unwrap_or_default())
}

/// The lookup key of an address: lower case, the domain in its canonical
/// (A-label) form, so `Jörg@BÜCHER.example` and `jörg@xn--bcher-kva.example`
/// are one account.
pub fn key(address: &str) -> String {
    let a = address.trim().to_lowercase();
    match a.rsplit_once('@') {
        Some((local, domain)) if !domain.starts_with('[') => match crate::domain::canonical(domain) {
            Ok(d) => format!("{local}@{d}"),
            Err(_) => a,
        },
        _ => a,
    }
}

impl Accounts {
    pub fn open(db: &sled::Db) -> Result<Accounts, AccountError> {
        Ok(Accounts {
            users: db.open_tree("users")?,
            aliases: db.open_tree("aliases")?,
            verified: Arc::new(cache::VerifiedCache::new(cache::TTL)),
        })
    }

    pub fn add_user(&self, email: &str, password: &str) -> Result<(), AccountError> {
        let k = key(email);
        if self.aliases.contains_key(&k)? {
            return Err(AccountError::UserIsAlias(k));
        }
        let rec = UserRecord { hash: hash_password(password)?, created: crate::util::now_secs() };
        let v = serde_json::to_vec(&rec).map_err(|e| AccountError::Corrupt(k.clone(), e.to_string()))?;
        match self.users.compare_and_swap(&k, None as Option<&[u8]>, Some(v))? {
            Ok(()) => Ok(()),
            Err(_) => Err(AccountError::UserExists(k)),
        }
    }

    pub fn set_password(&self, email: &str, password: &str) -> Result<(), AccountError> {
        let k = key(email);
        let mut rec = self.user(&k)?.ok_or_else(|| AccountError::NoSuchUser(k.clone()))?;
        rec.hash = hash_password(password)?;
        let v = serde_json::to_vec(&rec).map_err(|e| AccountError::Corrupt(k.clone(), e.to_string()))?;
        self.users.insert(k.as_bytes(), v)?;
        self.verified.forget(&k);
        Ok(())
    }

    pub fn delete_user(&self, email: &str) -> Result<(), AccountError> {
        let k = key(email);
        let removed = self.users.remove(&k)?;
        self.verified.forget(&k);
        removed.map(|_| ()).ok_or(AccountError::NoSuchUser(k))
    }

    fn user(&self, k: &str) -> Result<Option<UserRecord>, AccountError> {
        match self.users.get(k)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| AccountError::Corrupt(k.into(), e.to_string())),
        }
    }

    pub fn user_exists(&self, email: &str) -> bool {
        self.users.contains_key(key(email)).unwrap_or(false)
    }

    /// Whether a user exists; unlike [`Accounts::user_exists`], a database
    /// error is an error rather than a "no" (local delivery must not bounce
    /// mail because of one).
    pub fn has_user(&self, email: &str) -> Result<bool, AccountError> {
        Ok(self.users.contains_key(key(email))?)
    }

    pub fn users(&self) -> Result<Vec<UserInfo>, AccountError> {
        let mut out = Vec::new();
        for r in self.users.iter() {
            let (k, v) = r?;
            let email = String::from_utf8_lossy(&k).into_owned();
            let rec: UserRecord =
                serde_json::from_slice(&v).map_err(|e| AccountError::Corrupt(email.clone(), e.to_string()))?;
            out.push(UserInfo { email, created: rec.created });
        }
        Ok(out)
    }

    /// Check a password. CPU-heavy (Argon2id) unless the same password
    /// succeeded lately ([`Accounts::verify_cached`]): call it from a
    /// blocking context. Returns the canonical user name on success.
    pub fn verify(&self, email: &str, password: &str) -> Option<String> {
        let k = key(email);
        match self.user(&k) {
            Ok(Some(rec)) => {
                if self.verified.check(&k, &rec.hash, password) {
                    return Some(k);
                }
                let ok = verify_hash(password, &rec.hash);
                if ok {
                    self.verified.remember(&k, &rec.hash, password);
                }
                ok.then_some(k)
            }
            _ => {
                verify_hash(password, dummy_hash());
                None
            }
        }
    }

    /// The user, if this password succeeded for them within the login
    /// cache's TTL and their stored hash is still the one it succeeded
    /// against; `None` means "not known", never "wrong": check with
    /// [`Accounts::verify`]. Cheap (one index read, one HMAC), no Argon2.
    pub fn verify_cached(&self, email: &str, password: &str) -> Option<String> {
        let k = key(email);
        let rec = self.user(&k).ok()??;
        self.verified.check(&k, &rec.hash, password).then_some(k)
    }

    pub fn add_alias(&self, alias: &str, target: &str) -> Result<(), AccountError> {
        let k = key(alias);
        if self.users.contains_key(&k)? {
            return Err(AccountError::AliasIsUser(k));
        }
        let target = key(target);
        // SPEC §13.2: a target that leads back to the alias makes a loop
        if let Some(path) = self.alias_path(&target, &k)? {
            return Err(AccountError::AliasCycle(format!("{k} -> {}", path.join(" -> "))));
        }
        let mut targets = self.alias_targets(&k)?.unwrap_or_default();
        if !targets.contains(&target) {
            targets.push(target);
        }
        self.aliases.insert(k.as_bytes(), serde_json::to_vec(&targets).unwrap_or_default())?;
        Ok(())
    }

    /// Remove one target, or the whole alias when `target` is `None`.
    pub fn delete_alias(&self, alias: &str, target: Option<&str>) -> Result<(), AccountError> {
        let k = key(alias);
        let mut targets = self.alias_targets(&k)?.ok_or_else(|| AccountError::NoSuchAlias(k.clone()))?;
        match target {
            None => {
                self.aliases.remove(&k)?;
            }
            Some(t) => {
                let t = key(t);
                let before = targets.len();
                targets.retain(|x| *x != t);
                if targets.len() == before {
                    return Err(AccountError::NoSuchTarget(k, t));
                }
                if targets.is_empty() {
                    self.aliases.remove(&k)?;
                } else {
                    self.aliases.insert(k.as_bytes(), serde_json::to_vec(&targets).unwrap_or_default())?;
                }
            }
        }
        Ok(())
    }

    pub fn alias_targets(&self, alias: &str) -> Result<Option<Vec<String>>, AccountError> {
        let k = key(alias);
        match self.aliases.get(&k)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| AccountError::Corrupt(k, e.to_string())),
        }
    }

    pub fn aliases(&self) -> Result<Vec<AliasInfo>, AccountError> {
        let mut out = Vec::new();
        for r in self.aliases.iter() {
            let (k, v) = r?;
            let alias = String::from_utf8_lossy(&k).into_owned();
            let targets =
                serde_json::from_slice(&v).map_err(|e| AccountError::Corrupt(alias.clone(), e.to_string()))?;
            out.push(AliasInfo { alias, targets });
        }
        Ok(out)
    }

    /// A chain of aliases from `from` to `to` (both included), if there is one.
    fn alias_path(&self, from: &str, to: &str) -> Result<Option<Vec<String>>, AccountError> {
        let mut parent: HashMap<String, String> = HashMap::new();
        let mut stack = vec![from.to_string()];
        let mut seen = HashSet::from([from.to_string()]);
        while let Some(k) = stack.pop() {
            if k == to {
                let mut path = vec![k];
                while let Some(p) = parent.get(path.last().map(String::as_str).unwrap_or_default()) {
                    path.push(p.clone());
                }
                path.reverse();
                return Ok(Some(path));
            }
            for t in self.alias_targets(&k)?.unwrap_or_default() {
                let t = key(&t);
                if seen.insert(t.clone()) {
                    parent.insert(t.clone(), k.clone());
                    stack.push(t);
                }
            }
        }
        Ok(None)
    }

    /// Expand a local address into what it finally delivers to: aliases,
    /// recursively (a target reached twice counts once); a `postmaster@`
    /// with no mailbox goes to `postmaster`; addresses outside `is_local`
    /// domains are remote. An expansion that reaches nothing at all — only
    /// loops — is [`AccountError::AliasLoop`] naming the loop.
    pub fn expand(
        &self,
        address: &str,
        postmaster: &str,
        is_local: impl Fn(&str) -> bool,
    ) -> Result<Vec<Reached>, AccountError> {
        let start = key(address);
        let postmaster = key(postmaster);
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![(start.clone(), 0usize)];
        while let Some((k, depth)) = stack.pop() {
            if !seen.insert(k.clone()) {
                continue;
            }
            let domain = k.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            if !is_local(domain) {
                out.push(Reached::Remote(k));
                continue;
            }
            match self.lookup(&k) {
                Some(LocalTarget::Alias(targets)) if depth < MAX_ALIAS_DEPTH => {
                    stack.extend(targets.iter().rev().map(|t| (key(t), depth + 1)));
                }
                Some(LocalTarget::User(u)) => out.push(Reached::Local(u)),
                _ if k.starts_with("postmaster@") && k != postmaster => stack.push((postmaster.clone(), depth + 1)),
                // nested too deep, or a local address with no mailbox:
                // local delivery reports it
                _ => out.push(Reached::Local(k)),
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
        // nothing reached means a loop: name one for the operator
        for k in &seen {
            for t in self.alias_targets(k)?.unwrap_or_default() {
                if let Some(path) = self.alias_path(&key(&t), k)? {
                    return Err(AccountError::AliasLoop(format!("{k} -> {}", path.join(" -> "))));
                }
            }
        }
        Err(AccountError::AliasLoop(start))
    }

    /// A user or an alias at this exact address.
    pub fn lookup(&self, address: &str) -> Option<LocalTarget> {
        let k = key(address);
        if self.users.contains_key(&k).unwrap_or(false) {
            return Some(LocalTarget::User(k));
        }
        self.alias_targets(&k).ok().flatten().map(LocalTarget::Alias)
    }

    /// Whether `user` may use `address` as a sender: their own address, or
    /// an alias that delivers to them.
    pub fn owns_address(&self, user: &str, address: &str) -> bool {
        let (u, a) = (key(user), key(address));
        u == a || self.alias_targets(&a).ok().flatten().is_some_and(|t| t.contains(&u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_aliases_and_passwords() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let a = Accounts::open(&db).unwrap();
        a.add_user("Alice@Example.test", "s3cret").unwrap();
        assert!(matches!(a.add_user("alice@example.test", "x"), Err(AccountError::UserExists(_))));
        assert_eq!(a.verify("ALICE@example.test", "s3cret").as_deref(), Some("alice@example.test"));
        assert_eq!(a.verify("alice@example.test", "wrong"), None);
        assert_eq!(a.verify("nobody@example.test", "s3cret"), None);
        let stored =
            String::from_utf8(db.open_tree("users").unwrap().get("alice@example.test").unwrap().unwrap().to_vec())
                .unwrap();
        assert!(stored.contains("$argon2id$") && !stored.contains("s3cret"));
        a.set_password("alice@example.test", "n3w").unwrap();
        assert!(a.verify("alice@example.test", "n3w").is_some());
        assert!(matches!(a.set_password("bob@example.test", "x"), Err(AccountError::NoSuchUser(_))));
        assert!(matches!(a.add_user("carol@example.test", ""), Err(AccountError::EmptyPassword)));

        a.add_alias("sales@example.test", "alice@example.test").unwrap();
        a.add_alias("sales@example.test", "bob@remote.test").unwrap();
        assert!(matches!(a.add_alias("alice@example.test", "x@y.test"), Err(AccountError::AliasIsUser(_))));
        assert_eq!(
            a.lookup("SALES@example.test"),
            Some(LocalTarget::Alias(vec!["alice@example.test".into(), "bob@remote.test".into()]))
        );
        assert!(a.owns_address("alice@example.test", "sales@example.test"));
        assert!(!a.owns_address("alice@example.test", "bob@example.test"));
        a.delete_alias("sales@example.test", Some("bob@remote.test")).unwrap();
        assert_eq!(a.aliases().unwrap()[0].targets, vec!["alice@example.test".to_string()]);
        a.delete_alias("sales@example.test", None).unwrap();
        assert!(a.lookup("sales@example.test").is_none());
        a.delete_user("alice@example.test").unwrap();
        assert!(a.users().unwrap().is_empty());
    }

    #[test]
    fn the_login_cache_remembers_successes_until_the_password_changes() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let a = Accounts::open(&db).unwrap();
        a.add_user("alice@example.test", "s3cret").unwrap();
        assert_eq!(a.verify_cached("alice@example.test", "s3cret"), None, "nothing checked yet");
        assert_eq!(a.verify("alice@example.test", "wrong"), None);
        assert_eq!(a.verify_cached("alice@example.test", "wrong"), None, "failures are never cached");
        assert_eq!(a.verify("Alice@example.test", "s3cret").as_deref(), Some("alice@example.test"));
        assert_eq!(a.verify_cached("ALICE@example.test", "s3cret").as_deref(), Some("alice@example.test"), "a hit");
        assert_eq!(a.verify_cached("alice@example.test", "s3cre"), None, "only that password");
        assert_eq!(a.verify("alice@example.test", "wrong"), None, "a wrong password is not accepted after a hit");
        let clone = a.clone();
        clone.set_password("alice@example.test", "n3w").unwrap();
        assert_eq!(a.verify_cached("alice@example.test", "s3cret"), None, "miss after a password change");
        assert_eq!(a.verify("alice@example.test", "s3cret"), None, "and the old password fails");
        assert!(a.verify("alice@example.test", "n3w").is_some());
        assert!(a.verify_cached("alice@example.test", "n3w").is_some());
        // a change behind the cache's back (another Accounts on the same
        // database) is seen too: the stored hash is part of the HMAC
        Accounts::open(&db).unwrap().set_password("alice@example.test", "third").unwrap();
        assert_eq!(a.verify_cached("alice@example.test", "n3w"), None, "the stored hash changed");
        assert!(a.verify("alice@example.test", "third").is_some());
        a.delete_user("alice@example.test").unwrap();
        assert_eq!(a.verify_cached("alice@example.test", "third"), None, "miss after delete");
        assert_eq!(a.verify("alice@example.test", "third"), None);
        a.add_user("alice@example.test", "third").unwrap();
        assert_eq!(
            a.verify_cached("alice@example.test", "third"),
            None,
            "a new user with the same password: a new salt"
        );
    }

    #[test]
    fn alias_cycles_are_refused_naming_the_cycle() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let a = Accounts::open(&db).unwrap();
        let e = a.add_alias("a@example.test", "A@example.test").unwrap_err().to_string();
        assert!(e.contains("a@example.test -> a@example.test"), "{e}");
        a.add_alias("a@example.test", "b@example.test").unwrap();
        a.add_alias("b@example.test", "c@example.test").unwrap();
        let e = a.add_alias("c@example.test", "a@example.test").unwrap_err().to_string();
        assert!(e.contains("c@example.test -> a@example.test -> b@example.test -> c@example.test"), "{e}");
        assert_eq!(e.lines().count(), 1);
        assert_eq!(a.alias_targets("c@example.test").unwrap(), None, "nothing stored");
        // a target reached twice without a loop is fine
        a.add_alias("c@example.test", "d@remote.test").unwrap();
        a.add_alias("b@example.test", "d@remote.test").unwrap();
    }
}
