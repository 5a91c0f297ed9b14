//! Domain names in one canonical form: the lower-case A-label spelling
//! (UTS 46 / IDNA2008 processing through the `idna` crate), without a
//! trailing dot. Every domain Postern compares — in envelope addresses, in
//! `local_domains`, `relay_domains` and connector address spaces, in
//! `route explain` — goes through [`canonical`] once, where it is read, so
//! that `ＥＸＡＭＰＬＥ.com`, `ExAmple.COM.` and `example.com` (or
//! `bücher.example` and `xn--bcher-kva.example`) are one domain to relay
//! control and routing, as they are to DNS (SPEC §13 invariant 9). Nothing
//! here does I/O.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// Why a domain has no canonical form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid domain name (IDNA)")]
pub struct DomainError(pub String);

/// Every printable ASCII character that is not a letter, digit, hyphen, dot
/// or underscore; with `deny_glyphless`, also space and controls. The
/// underscore stays allowed for names like `_dmarc.example.com` in config;
/// the address grammar refuses it on its own.
const DENY: AsciiDenyList = AsciiDenyList::new(true, "!\"#$%&'()*+,/:;<=>?@[\\]^`{|}~");

/// The canonical (A-label, lower-case, no trailing dot) form of `domain`.
/// Fails on what DNS cannot name: invalid U-labels or Punycode, empty
/// labels, labels over 63 octets, names over 253, a label that begins or
/// ends with a hyphen.
pub fn canonical(domain: &str) -> Result<String, DomainError> {
    let err = || DomainError(domain.to_string());
    let ascii = Uts46::new()
        .to_ascii(domain.as_bytes(), DENY, Hyphens::CheckFirstLast, DnsLength::VerifyAllowRootDot)
        .map_err(|_| err())?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    if ascii.is_empty() {
        return Err(err());
    }
    Ok(ascii.to_ascii_lowercase())
}

/// The Unicode (U-label) form of a canonical domain, for people to read.
/// A label that does not decode stays as it is.
pub fn to_unicode(domain: &str) -> String {
    let (unicode, _) = Uts46::new().to_unicode(domain.as_bytes(), DENY, Hyphens::Allow);
    unicode.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_domain_have_one_a_label() {
        for (spellings, want) in [
            (
                &[
                    "example.com",
                    "ExAmple.COM.",
                    "EXAMPLE.COM",
                    "ｅｘａｍｐｌｅ.com",
                    "ＥＸＡＭＰＬＥ．ＣＯＭ",
                    "example。com",
                    "ｅｘａｍｐｌｅ．ｃｏｍ．",
                ][..],
                "example.com",
            ),
            (
                &["bücher.example", "BÜCHER.example", "xn--bcher-kva.example", "XN--BCHER-KVA.Example."][..],
                "xn--bcher-kva.example",
            ),
            (&["faß.de", "xn--fa-hia.de"][..], "xn--fa-hia.de"),
            (&["Mail.Pinned.TEST", "ｍａｉｌ.pinned.test"][..], "mail.pinned.test"),
        ] {
            for s in spellings {
                assert_eq!(canonical(s).as_deref(), Ok(want), "{s}");
            }
        }
        assert_eq!(to_unicode("xn--bcher-kva.example"), "bücher.example");
        assert_eq!(to_unicode("example.com"), "example.com");
    }

    #[test]
    fn what_dns_cannot_name_is_refused() {
        for bad in ["", ".", "a..b", "-a.com", "a-.com", "a b.com", "a@b.com", "xn--a.com", "a%b.com", &"a".repeat(64)]
        {
            assert!(canonical(bad).is_err(), "{bad:?}");
        }
        assert!(canonical(&format!("{}.com", vec!["a".repeat(63); 4].join("."))).is_err(), "over 253");
    }
}
