//! The IMAP values shared by the command grammar and the response writer:
//! sequence sets, flags, mailbox names, dates and date-times, STATUS items
//! and FETCH body sections (RFC 3501 §9). Plain data, with the text forms
//! of the simple ones (sequence sets, flags, dates); what a value means for
//! a mailbox (which messages `*` names, which flags may be stored) is the
//! core's and the store's business.

use std::fmt;

/// The most ranges one sequence set may hold (SPEC §13.7): a client can
/// name any set of messages in fewer by using ranges.
pub const MAX_SEQUENCE_RANGES: usize = 16_384;

/// One end of a range: a number or `*` (the largest number in use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeqBound {
    Num(u32),
    Star,
}

impl SeqBound {
    /// The number this end names when the largest in use is `largest`.
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqBound::Num(n) => n,
            SeqBound::Star => largest,
        }
    }
}

/// `a`, `a:b` (either order; RFC 3501 §9 says `2:4` and `4:2` are the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqRange {
    pub start: SeqBound,
    pub end: SeqBound,
}

impl SeqRange {
    /// The range as `lo..=hi` once `*` is known.
    pub fn resolve(self, largest: u32) -> (u32, u32) {
        let (a, b) = (self.start.resolve(largest), self.end.resolve(largest));
        (a.min(b), a.max(b))
    }
}

/// A sequence set (message numbers or UIDs) as the client wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SequenceSet(pub Vec<SeqRange>);

impl SequenceSet {
    /// Whether `n` is in the set when the largest number in use is `largest`.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        self.0.iter().any(|r| {
            let (lo, hi) = r.resolve(largest);
            (lo..=hi).contains(&n)
        })
    }

    /// The compact set naming exactly `ids` (any order, duplicates allowed):
    /// consecutive numbers become ranges. Empty for no ids.
    pub fn from_ids(ids: &[u32]) -> SequenceSet {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ranges: Vec<SeqRange> = Vec::new();
        let mut it = sorted.into_iter().peekable();
        while let Some(lo) = it.next() {
            let mut hi = lo;
            while it.peek() == Some(&hi.wrapping_add(1)) && hi != u32::MAX {
                hi += 1;
                it.next();
            }
            ranges.push(SeqRange { start: SeqBound::Num(lo), end: SeqBound::Num(hi) });
        }
        SequenceSet(ranges)
    }
}

impl fmt::Display for SeqBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqBound::Num(n) => write!(f, "{n}"),
            SeqBound::Star => f.write_str("*"),
        }
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start == r.end {
                write!(f, "{}", r.start)?;
            } else {
                write!(f, "{}:{}", r.start, r.end)?;
            }
        }
        Ok(())
    }
}

/// A message flag. Keywords keep the client's spelling; system flags
/// compare case-insensitively as RFC 3501 says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// `\Recent` can be searched and shown, never stored by a client.
    Recent,
    /// `\*` in PERMANENTFLAGS: new keywords may be created.
    Wildcard,
    /// Another `\Name` (flag-extension).
    Extension(String),
    Keyword(String),
}

impl Flag {
    /// The flag for a name (`\Seen`, `$Forwarded`, `\*`).
    pub fn from_name(name: &str) -> Flag {
        let Some(system) = name.strip_prefix('\\') else {
            return Flag::Keyword(name.to_string());
        };
        match system.to_ascii_lowercase().as_str() {
            "seen" => Flag::Seen,
            "answered" => Flag::Answered,
            "flagged" => Flag::Flagged,
            "deleted" => Flag::Deleted,
            "draft" => Flag::Draft,
            "recent" => Flag::Recent,
            "*" => Flag::Wildcard,
            _ => Flag::Extension(system.to_string()),
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::Seen => f.write_str("\\Seen"),
            Flag::Answered => f.write_str("\\Answered"),
            Flag::Flagged => f.write_str("\\Flagged"),
            Flag::Deleted => f.write_str("\\Deleted"),
            Flag::Draft => f.write_str("\\Draft"),
            Flag::Recent => f.write_str("\\Recent"),
            Flag::Wildcard => f.write_str("\\*"),
            Flag::Extension(e) => write!(f, "\\{e}"),
            Flag::Keyword(k) => f.write_str(k),
        }
    }
}

/// A mailbox name: `INBOX` in any case is `INBOX`; every other name is
/// kept as given (modified UTF-7 is not decoded; the store decides).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox(String);

impl Mailbox {
    pub fn new(name: String) -> Mailbox {
        if name.eq_ignore_ascii_case("INBOX") {
            Mailbox("INBOX".to_string())
        } else {
            Mailbox(name)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A calendar date (SEARCH dates: no time, no zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// The date if it exists in the calendar.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (1..=days).contains(&day).then_some(Date { year, month, day })
    }

    /// The month for its three-letter name, any case.
    pub fn month_from_name(name: &[u8]) -> Option<u8> {
        MONTHS.iter().position(|m| m.as_bytes().eq_ignore_ascii_case(name)).map(|i| i as u8 + 1)
    }

    /// Days since 1970-01-01 (negative before), for comparing with stored times.
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u16;
        Date { year, month, day }
    }
}

impl fmt::Display for Date {
    /// `d-Mon-yyyy` (RFC 3501 `date-text`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let month = MONTHS.get(usize::from(self.month).wrapping_sub(1)).unwrap_or(&"Jan");
        write!(f, "{}-{}-{:04}", self.day, month, self.year)
    }
}

/// A date-time with its zone (APPEND and INTERNALDATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset east of UTC in minutes (`-0130` is -90).
    pub zone_minutes: i16,
}

impl DateTime {
    /// Seconds since the Unix epoch of this instant.
    pub fn unix_timestamp(&self) -> i64 {
        self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.zone_minutes) * 60
    }

    /// The instant `ts` shown in the zone `zone_minutes` east of UTC.
    pub fn from_unix(ts: i64, zone_minutes: i16) -> DateTime {
        let local = ts + i64::from(zone_minutes) * 60;
        let secs = local.rem_euclid(86_400);
        DateTime {
            date: Date::from_days(local.div_euclid(86_400)),
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
            zone_minutes,
        }
    }
}

impl fmt::Display for DateTime {
    /// `dd-Mon-yyyy hh:mm:ss +zzzz` without the quotes, the day padded with
    /// a space (RFC 3501 `date-time`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let month = MONTHS.get(usize::from(self.date.month).wrapping_sub(1)).unwrap_or(&"Jan");
        let sign = if self.zone_minutes < 0 { '-' } else { '+' };
        let z = self.zone_minutes.unsigned_abs();
        write!(
            f,
            "{:>2}-{}-{:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            self.date.day,
            month,
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            z / 60,
            z % 60
        )
    }
}

/// A STATUS data item (RFC 3501 §6.3.10, RFC 7162 HIGHESTMODSEQ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    HighestModSeq,
}

impl StatusItem {
    pub fn from_name(name: &[u8]) -> Option<StatusItem> {
        let all = [
            StatusItem::Messages,
            StatusItem::Recent,
            StatusItem::UidNext,
            StatusItem::UidValidity,
            StatusItem::Unseen,
            StatusItem::HighestModSeq,
        ];
        all.into_iter().find(|i| i.name().as_bytes().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
        }
    }
}

/// The text part of a body section specifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SectionText {
    Header,
    /// Field names as given (compare case-insensitively).
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// Only after a part number.
    Mime,
}

/// `BODY[1.2.HEADER]`: the part path (empty for the whole message) and what of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_sequence_set_compaction_and_membership() {
        let s = SequenceSet::from_ids(&[5, 1, 2, 3, 9, 7, 8, 3]);
        assert_eq!(s.to_string(), "1:3,5,7:9");
        assert!(s.contains(8, 9) && !s.contains(4, 9));
        assert_eq!(SequenceSet::from_ids(&[]).to_string(), "");
        assert_eq!(SequenceSet::from_ids(&[u32::MAX - 1, u32::MAX]).to_string(), "4294967294:4294967295");
        let star = SequenceSet(vec![SeqRange { start: SeqBound::Num(4), end: SeqBound::Star }]);
        assert!(
            star.contains(7, 9) && !star.contains(3, 9) && star.contains(2, 2),
            "4:* covers 2 when 2 is the largest"
        );
    }

    #[test]
    fn imap_dates() {
        assert!(
            Date::new(2024, 2, 29).is_some() && Date::new(2023, 2, 29).is_none() && Date::new(2000, 13, 1).is_none()
        );
        assert_eq!(Date::new(1970, 1, 1).unwrap().days_since_epoch(), 0);
        let dt = DateTime { date: Date::new(2024, 3, 5).unwrap(), hour: 7, minute: 8, second: 9, zone_minutes: -90 };
        assert_eq!(dt.to_string(), " 5-Mar-2024 07:08:09 -0130");
        assert_eq!(DateTime::from_unix(dt.unix_timestamp(), -90), dt);
        assert_eq!(DateTime::from_unix(0, 0).to_string(), " 1-Jan-1970 00:00:00 +0000");
        assert_eq!(Date::new(2001, 12, 31).unwrap().to_string(), "31-Dec-2001");
    }

    #[test]
    fn imap_flags_and_inbox() {
        assert_eq!(Flag::from_name("\\SEEN"), Flag::Seen);
        assert_eq!(Flag::from_name("$Forwarded").to_string(), "$Forwarded");
        assert_eq!(Flag::from_name("\\Custom").to_string(), "\\Custom");
        assert!(Mailbox::new("inBox".into()).is_inbox());
        assert_eq!(Mailbox::new("INBOX.Sent".into()).as_str(), "INBOX.Sent");
    }
}
