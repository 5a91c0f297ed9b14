//! Wildmat (RFC 3977 §4): the pattern language NNTP uses for newsgroup
//! names and header values. Exactly the RFC's grammar (§9.8 / §4.1):
//!
//! ```text
//! wildmat         = wildmat-pattern *("," ["!"] wildmat-pattern)
//! wildmat-pattern = 1*wildmat-item
//! wildmat-item    = wildmat-exact / wildmat-wild
//! wildmat-exact   = %x22-29 / %x2B / %x2D-3E / %x40-5A / %x5E-7E / UTF8-non-ascii
//! wildmat-wild    = "*" / "?"
//! ```
//!
//! So there are no character classes and no backslash escapes (`[`, `\`
//! and `]` are simply not allowed, unlike INN's older wildmat), the first
//! pattern cannot be negated, and `!` appears only as a negation prefix.
//! `?` matches one Unicode scalar value, not one octet (§4.2: the
//! wildmat and the string are both UTF-8). A list matches when the
//! rightmost pattern that matches the string is not negated (§4.2); when
//! none matches, the wildmat does not match.
//!
//! A pattern is compared with a greedy matcher that remembers only the last
//! `*` (the classic linear-space glob): at most `pattern × text` steps, never
//! exponential backtracking however many stars a client sends. The wildmat
//! as a whole is bounded by [`MAX_LEN`] octets.

/// The longest wildmat accepted, in octets: a command line is 512 octets
/// (RFC 3977 §3.1) and a configured `groups` list is a few patterns; this
/// leaves room for both and keeps a match at a bounded cost.
pub const MAX_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WildmatError {
    #[error("the wildmat is empty or has an empty pattern between commas")]
    EmptyPattern,
    #[error("the wildmat is longer than {MAX_LEN} octets")]
    TooLong,
    #[error("the wildmat contains {0:?}, which RFC 3977 does not allow in a pattern")]
    BadChar(char),
    #[error("the wildmat's first pattern starts with \"!\", which RFC 3977 allows only after a comma")]
    NegatedFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Exact(char),
    /// `?`
    One,
    /// `*`
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    negated: bool,
    items: Vec<Item>,
}

/// A parsed wildmat; [`Wildmat::matches`] tests a string against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildmat {
    patterns: Vec<Pattern>,
}

fn is_exact(c: char) -> bool {
    match c {
        '\u{22}'..='\u{29}' | '\u{2B}' | '\u{2D}'..='\u{3E}' | '\u{40}'..='\u{5A}' | '\u{5E}'..='\u{7E}' => true,
        c => !c.is_ascii(),
    }
}

impl Wildmat {
    /// Parse a wildmat as a client or the configuration writes it.
    pub fn parse(s: &str) -> Result<Wildmat, WildmatError> {
        if s.len() > MAX_LEN {
            return Err(WildmatError::TooLong);
        }
        let mut patterns = Vec::new();
        for (i, part) in s.split(',').enumerate() {
            let (negated, body) = match part.strip_prefix('!') {
                Some(_) if i == 0 => return Err(WildmatError::NegatedFirst),
                Some(rest) => (true, rest),
                None => (false, part),
            };
            if body.is_empty() {
                return Err(WildmatError::EmptyPattern);
            }
            let mut items = Vec::with_capacity(body.len());
            for c in body.chars() {
                items.push(match c {
                    '*' => {
                        // `**` matches what `*` does; one is enough
                        if items.last() == Some(&Item::Any) {
                            continue;
                        }
                        Item::Any
                    }
                    '?' => Item::One,
                    c if is_exact(c) => Item::Exact(c),
                    c => return Err(WildmatError::BadChar(c)),
                });
            }
            patterns.push(Pattern { negated, items });
        }
        Ok(Wildmat { patterns })
    }

    /// Parse a list of patterns (a configuration array such as
    /// `["comp.*", "!comp.private.*"]`) as the wildmat they make joined
    /// with commas.
    pub fn from_list<S: AsRef<str>>(list: &[S]) -> Result<Wildmat, WildmatError> {
        let joined: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
        Wildmat::parse(&joined.join(","))
    }

    /// The wildmat `*`: every string.
    pub fn any() -> Wildmat {
        Wildmat { patterns: vec![Pattern { negated: false, items: vec![Item::Any] }] }
    }

    /// Whether `s` matches: the rightmost matching pattern decides.
    pub fn matches(&self, s: &str) -> bool {
        let text: Vec<char> = s.chars().collect();
        self.patterns.iter().rev().find(|p| glob(&p.items, &text)).is_some_and(|p| !p.negated)
    }
}

/// One pattern against the whole text. On a mismatch the matcher goes back
/// to the last `*` and lets it take one more character; earlier stars never
/// need revisiting (whatever they could take, the last star can), so the
/// work is at most `items × text`.
fn glob(items: &[Item], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match items.get(p) {
            Some(Item::Exact(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(Item::One) => {
                p += 1;
                t += 1;
            }
            Some(Item::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    items[p..].iter().all(|i| *i == Item::Any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(w: &str, s: &str) -> bool {
        Wildmat::parse(w).expect("valid wildmat").matches(s)
    }

    #[test]
    fn wildmat_rfc3977_examples() {
        // RFC 3977 §4.4, with "£" (%xC2.A3) for the RFC's "$@"
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd") && !m("abc", "ab") && !m("abc", "ABC"));
        assert!(m("abc,def", "abc") && m("abc,def", "def") && !m("abc,def", "abcdef"));
        assert!(m("£", "£") && !m("£", "$") && !m("£", "££"));
        assert!(m("a*", "a") && m("a*", "abc") && !m("a*", "ba"));
        assert!(m("a*b", "ab") && m("a*b", "axxb") && !m("a*b", "abc"));
        assert!(m("a*,*b", "ax") && m("a*,*b", "xb") && !m("a*,*b", "xx"));
        assert!(m("a*,!*b", "ax") && !m("a*,!*b", "axb") && !m("a*,!*b", "xx"));
        assert!(m("a*,!*b,c*", "ax") && !m("a*,!*b,c*", "ab") && m("a*,!*b,c*", "cb"));
        assert!(m("a*,c*,!*b", "ax") && m("a*,c*,!*b", "cx") && !m("a*,c*,!*b", "cb") && !m("a*,c*,!*b", "ab"));
        assert!(m("?a*", "ba") && m("?a*", "£a") && !m("?a*", "a") && !m("?a*", "aba"));
        assert!(m("??a*", "xya") && !m("??a*", "xa"));
        assert!(m("*a?", "xab") && m("*a?", "a£") && !m("*a?", "ab£"));
        assert!(m("*a??", "xabc") && !m("*a??", "abcd"));
    }

    #[test]
    fn wildmat_rightmost_match_decides() {
        let w = Wildmat::from_list(&["comp.*", "!comp.private.*", "comp.private.ok"]).expect("valid");
        assert!(w.matches("comp.lang.rust"));
        assert!(!w.matches("comp.private.secret"));
        assert!(w.matches("comp.private.ok"));
        assert!(!w.matches("alt.test"));
        // a negation with nothing before it to take away from matches nothing
        assert!(!m("a,!*", "a"));
        assert!(m("*", "") && !m("?", ""));
        assert!(Wildmat::any().matches("anything.at.all"));
    }

    #[test]
    fn wildmat_grammar_is_the_rfcs() {
        assert_eq!(Wildmat::parse(""), Err(WildmatError::EmptyPattern));
        assert_eq!(Wildmat::parse("a,,b"), Err(WildmatError::EmptyPattern));
        assert_eq!(Wildmat::parse("a,!"), Err(WildmatError::EmptyPattern));
        assert_eq!(Wildmat::parse("!a"), Err(WildmatError::NegatedFirst));
        assert_eq!(Wildmat::parse("a,!!b"), Err(WildmatError::BadChar('!')));
        for bad in ['[', ']', '\\', ' ', '\t', '\u{7f}', '\u{0}'] {
            assert_eq!(Wildmat::parse(&format!("a{bad}")), Err(WildmatError::BadChar(bad)), "{bad:?}");
        }
        assert_eq!(Wildmat::parse(&"a".repeat(MAX_LEN + 1)), Err(WildmatError::TooLong));
        assert!(Wildmat::parse(&"a".repeat(MAX_LEN)).is_ok());
        // brackets are ordinary nowhere: "[abc]" is not a class, it is invalid
        assert!(Wildmat::parse("comp.[ab]*").is_err());
        assert!(m("grüße.*", "grüße.de"));
    }

    #[test]
    fn wildmat_many_stars_stay_fast() {
        // exponential for a naive backtracker; bounded steps here
        let w = Wildmat::parse(&"*a".repeat(1000)).expect("valid");
        let text = "a".repeat(999) + "b";
        let started = std::time::Instant::now();
        assert!(!w.matches(&text));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// The obvious exponential definition, for small inputs.
    fn reference(items: &[Item], text: &[char]) -> bool {
        match items.split_first() {
            None => text.is_empty(),
            Some((Item::Any, rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Some((Item::One, rest)) => !text.is_empty() && reference(rest, &text[1..]),
            Some((Item::Exact(c), rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    proptest! {
        #[test]
        fn wildmat_agrees_with_the_reference(
            pats in proptest::collection::vec(("!?", "[ab£*?]{1,6}"), 1..4),
            text in "[ab£]{0,8}",
        ) {
            let mut src = String::new();
            for (i, (neg, p)) in pats.iter().enumerate() {
                if i > 0 {
                    src.push(',');
                    src.push_str(neg);
                }
                src.push_str(p);
            }
            let w = Wildmat::parse(&src).expect("generated wildmats are valid");
            let chars: Vec<char> = text.chars().collect();
            let expected = w.patterns.iter().rev().find(|p| reference(&p.items, &chars)).is_some_and(|p| !p.negated);
            prop_assert_eq!(w.matches(&text), expected);
        }

        #[test]
        fn wildmat_parse_never_panics(s in "\\PC{0,40}", text in "\\PC{0,20}") {
            if let Ok(w) = Wildmat::parse(&s) {
                let _ = w.matches(&text);
            }
        }
    }
}
