//! LIST and LSUB name matching (RFC 3501 §6.3.8): the reference and the
//! pattern are joined, `*` matches anything and `%` anything but the
//! hierarchy delimiter; `INBOX` matches in any case. Linear in space and
//! quadratic at worst in time (no backtracking blow-up on `*%*%*`).

use crate::mailbox::{DELIMITER, INBOX};

/// The pattern a LIST's reference and mailbox argument make.
pub fn join(reference: &str, pattern: &str) -> String {
    if reference.is_empty() || pattern.starts_with(DELIMITER) {
        return pattern.to_string();
    }
    if reference.ends_with(DELIMITER) {
        format!("{reference}{pattern}")
    } else {
        format!("{reference}{DELIMITER}{pattern}")
    }
}

/// Whether `name` matches the LIST pattern.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = canonical_inbox(pattern).chars().collect();
    let n: Vec<char> = name.chars().collect();
    // reach[j]: the pattern so far can end right before n[j]
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut on = false;
                for j in 0..=n.len() {
                    on = on || reach[j];
                    next[j] = on;
                    // % stops at the delimiter
                    if pc == '%' && n.get(j) == Some(&DELIMITER) {
                        on = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    next[j + 1] = reach[j] && n[j] == c;
                }
            }
        }
        reach = next;
    }
    reach[n.len()]
}

/// `inbox/...` in a pattern names INBOX's children too.
fn canonical_inbox(pattern: &str) -> String {
    match pattern.get(..INBOX.len()) {
        Some(head) if head.eq_ignore_ascii_case(INBOX) => {
            let rest = &pattern[INBOX.len()..];
            if rest.is_empty() || rest.starts_with(DELIMITER) {
                return format!("{INBOX}{rest}");
            }
            pattern.to_string()
        }
        _ => pattern.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_inbox() {
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "Sent"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("Inbox/%", "INBOX/x"));
        assert!(!matches("Sent", "sent"));
        assert!(matches("*%*%*%*%*x", "abcdefghij/x"));
        assert!(!matches("", "INBOX"));
        assert_eq!(join("a", "b"), "a/b");
        assert_eq!(join("a/", "%"), "a/%");
        assert_eq!(join("", "*"), "*");
    }
}
