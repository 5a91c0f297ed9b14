//! NNTP command lines as typed values (RFC 3977 §9 grammar, RFC 4643
//! AUTHINFO, RFC 4644 streaming, RFC 4642 STARTTLS): a line becomes a
//! [`Command`] or the `500`/`501` reply that says why not. Whether the
//! command may run now (TLS, authentication, a selected group, feed
//! permission) is the session's business, not the parser's.

use super::reply::{self, Reply};
use super::wildmat::Wildmat;

/// Which part of an article ARTICLE, HEAD, BODY and STAT return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Article,
    Head,
    Body,
    Stat,
}

/// The article an ARTICLE-family command names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArticleSpec {
    /// No argument: the current article of the selected group.
    Current,
    Number(u64),
    Id(String),
}

/// The articles OVER and HDR name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    Current,
    /// `n`, `n-` (to `u64::MAX`) or `n-m`, in the selected group.
    Range(u64, u64),
    Id(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Active,
    ActiveTimes,
    Newsgroups,
    OverviewFmt,
    Headers,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Capabilities,
    ModeReader,
    ModeStream,
    List {
        kind: ListKind,
        wildmat: Option<Wildmat>,
    },
    Group(String),
    ListGroup {
        group: Option<String>,
        range: Option<(u64, u64)>,
    },
    Article(Part, ArticleSpec),
    Next,
    Last,
    /// OVER, or XOVER when `x`.
    Over {
        spec: RangeSpec,
        x: bool,
    },
    /// HDR, or XHDR when `x`.
    Hdr {
        field: String,
        spec: RangeSpec,
        x: bool,
    },
    /// Unix seconds.
    NewGroups {
        since: u64,
    },
    NewNews {
        groups: Wildmat,
        since: u64,
    },
    Post,
    Ihave(String),
    Check(String),
    /// The message-id as sent: the article that follows must be read even
    /// when it is not a valid one (the session checks it then).
    TakeThis(String),
    Date,
    Help,
    Quit,
    StartTls,
    AuthUser(String),
    AuthPass(String),
    AuthSasl {
        mechanism: String,
        initial: Option<String>,
    },
}

/// A message-id as RFC 3977 §3.6 allows it: 3 to 250 printable US-ASCII
/// octets, `<` first, `>` last and nowhere else.
pub fn valid_message_id(id: &str) -> bool {
    let b = id.as_bytes();
    (3..=250).contains(&b.len())
        && b[0] == b'<'
        && b[b.len() - 1] == b'>'
        && b.iter().all(|c| (0x21..=0x7e).contains(c))
        && !b[..b.len() - 1].contains(&b'>')
}

/// An article number: 1 to 16 digits (RFC 3977 §6: numbers fit in 63 bits).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `n`, `n-` or `n-m` (RFC 3977 §9.8 `range`).
fn range(s: &str) -> Option<(u64, u64)> {
    match s.split_once('-') {
        None => number(s).map(|n| (n, n)),
        Some((a, "")) => Some((number(a)?, u64::MAX)),
        Some((a, b)) => Some((number(a)?, number(b)?)),
    }
}

fn message_id(s: &str) -> Result<String, Reply> {
    if valid_message_id(s) {
        Ok(s.to_string())
    } else {
        Err(reply::BAD_MESSAGE_ID)
    }
}

fn article_spec(arg: Option<&str>) -> Result<ArticleSpec, Reply> {
    match arg {
        None => Ok(ArticleSpec::Current),
        Some(a) if a.starts_with('<') => message_id(a).map(ArticleSpec::Id),
        Some(a) => number(a).map(ArticleSpec::Number).ok_or(reply::SYNTAX),
    }
}

fn range_spec(arg: Option<&str>) -> Result<RangeSpec, Reply> {
    match arg {
        None => Ok(RangeSpec::Current),
        Some(a) if a.starts_with('<') => message_id(a).map(RangeSpec::Id),
        Some(a) => range(a).map(|(from, to)| RangeSpec::Range(from, to)).ok_or(reply::SYNTAX),
    }
}

fn wildmat(arg: Option<&str>) -> Result<Option<Wildmat>, Reply> {
    arg.map(|w| Wildmat::parse(w).map_err(|_| reply::BAD_WILDMAT)).transpose()
}

/// The date and time of NEWGROUPS and NEWNEWS (RFC 3977 §7.3.2):
/// `yyyymmdd hhmmss [GMT]`, or `yymmdd` with the century closest to
/// 2000-2049/1950-1999 (a fixed pivot: the core has no clock). Without `GMT`
/// the time is the server's local time, which for Postern is UTC.
fn since(date: &str, time: &str, gmt: Option<&str>) -> Result<u64, Reply> {
    if gmt.is_some_and(|g| !g.eq_ignore_ascii_case("GMT")) {
        return Err(reply::SYNTAX);
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(date) || !digits(time) || time.len() != 6 {
        return Err(reply::SYNTAX);
    }
    let n = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    let (year, md) = match date.len() {
        8 => (n(&date[..4]), &date[4..]),
        6 => {
            let yy = n(&date[..2]);
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &date[2..])
        }
        _ => return Err(reply::SYNTAX),
    };
    let (month, day) = (n(&md[..2]), n(&md[2..]));
    let (h, m, s) = (n(&time[..2]), n(&time[2..4]), n(&time[4..]));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
        return Err(reply::SYNTAX);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to a date on or after it (Hinnant's algorithm).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// `yyyymmddhhmmss` for DATE (RFC 3977 §7.1), in UTC.
pub fn date_time(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Parse one command line (without its line end).
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_matches([' ', '\t']);
    let (verb, rest) = match text.find([' ', '\t']) {
        Some(i) => (&text[..i], text[i + 1..].trim_start_matches([' ', '\t'])),
        None => (text, ""),
    };
    let args: Vec<&str> = rest.split([' ', '\t']).filter(|s| !s.is_empty()).collect();
    let verb = verb.to_ascii_uppercase();
    let arity = |min: usize, max: usize| if (min..=max).contains(&args.len()) { Ok(()) } else { Err(reply::SYNTAX) };
    let arg = |i: usize| args.get(i).copied();
    Ok(match verb.as_str() {
        "CAPABILITIES" => {
            arity(0, 1)?;
            Command::Capabilities
        }
        "MODE" => {
            arity(1, 1)?;
            match args[0].to_ascii_uppercase().as_str() {
                "READER" => Command::ModeReader,
                "STREAM" => Command::ModeStream,
                _ => return Err(reply::SYNTAX),
            }
        }
        "LIST" => {
            arity(0, 2)?;
            let keyword = arg(0).unwrap_or("ACTIVE").to_ascii_uppercase();
            let kind = match keyword.as_str() {
                "ACTIVE" => ListKind::Active,
                "ACTIVE.TIMES" => ListKind::ActiveTimes,
                "NEWSGROUPS" => ListKind::Newsgroups,
                "OVERVIEW.FMT" => ListKind::OverviewFmt,
                "HEADERS" => ListKind::Headers,
                _ => return Err(reply::UNKNOWN_LIST),
            };
            let wildmat = match kind {
                ListKind::OverviewFmt if args.len() > 1 => return Err(reply::SYNTAX),
                ListKind::Headers => match arg(1) {
                    Some(a) if !a.eq_ignore_ascii_case("MSGID") && !a.eq_ignore_ascii_case("RANGE") => {
                        return Err(reply::SYNTAX)
                    }
                    _ => None,
                },
                _ => wildmat(arg(1))?,
            };
            Command::List { kind, wildmat }
        }
        "GROUP" => {
            arity(1, 1)?;
            Command::Group(args[0].to_string())
        }
        "LISTGROUP" => {
            arity(0, 2)?;
            let range = arg(1).map(|r| range(r).ok_or(reply::SYNTAX)).transpose()?;
            Command::ListGroup { group: arg(0).map(str::to_string), range }
        }
        "ARTICLE" | "HEAD" | "BODY" | "STAT" => {
            arity(0, 1)?;
            let part = match verb.as_str() {
                "ARTICLE" => Part::Article,
                "HEAD" => Part::Head,
                "BODY" => Part::Body,
                _ => Part::Stat,
            };
            Command::Article(part, article_spec(arg(0))?)
        }
        "NEXT" => {
            arity(0, 0)?;
            Command::Next
        }
        "LAST" => {
            arity(0, 0)?;
            Command::Last
        }
        "OVER" | "XOVER" => {
            arity(0, 1)?;
            Command::Over { spec: range_spec(arg(0))?, x: verb == "XOVER" }
        }
        "HDR" | "XHDR" => {
            arity(1, 2)?;
            Command::Hdr { field: args[0].to_string(), spec: range_spec(arg(1))?, x: verb == "XHDR" }
        }
        "NEWGROUPS" => {
            arity(2, 3)?;
            Command::NewGroups { since: since(args[0], args[1], arg(2))? }
        }
        "NEWNEWS" => {
            arity(3, 4)?;
            let groups = wildmat(Some(args[0]))?.unwrap_or_else(Wildmat::any);
            Command::NewNews { groups, since: since(args[1], args[2], arg(3))? }
        }
        "POST" => {
            arity(0, 0)?;
            Command::Post
        }
        "IHAVE" => {
            arity(1, 1)?;
            Command::Ihave(message_id(args[0])?)
        }
        "CHECK" => {
            arity(1, 1)?;
            Command::Check(message_id(args[0])?)
        }
        "TAKETHIS" => {
            arity(1, 1)?;
            Command::TakeThis(args[0].to_string())
        }
        "DATE" => {
            arity(0, 0)?;
            Command::Date
        }
        "HELP" => {
            arity(0, 0)?;
            Command::Help
        }
        "QUIT" => {
            arity(0, 0)?;
            Command::Quit
        }
        "STARTTLS" => {
            arity(0, 0)?;
            Command::StartTls
        }
        "AUTHINFO" => {
            let sub = arg(0).unwrap_or_default().to_ascii_uppercase();
            // RFC 4643 §2.3: the rest of the line, spaces and all
            let rest = rest.get(sub.len()..).unwrap_or_default().trim_start_matches([' ', '\t']);
            match sub.as_str() {
                "USER" if !rest.is_empty() => Command::AuthUser(rest.to_string()),
                "PASS" if !rest.is_empty() => Command::AuthPass(rest.to_string()),
                "SASL" => {
                    arity(2, 3)?;
                    Command::AuthSasl { mechanism: args[1].to_string(), initial: arg(2).map(str::to_string) }
                }
                _ => return Err(reply::SYNTAX),
            }
        }
        _ => return Err(reply::UNKNOWN_COMMAND),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, Reply> {
        parse(s.as_bytes())
    }

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(p("article 12"), Ok(Command::Article(Part::Article, ArticleSpec::Number(12))));
        assert_eq!(p("STAT <a@b>"), Ok(Command::Article(Part::Stat, ArticleSpec::Id("<a@b>".into()))));
        assert_eq!(p("HEAD"), Ok(Command::Article(Part::Head, ArticleSpec::Current)));
        assert_eq!(p("BODY x"), Err(reply::SYNTAX));
        assert_eq!(p("BODY <a b>"), Err(reply::SYNTAX), "two arguments");
        assert_eq!(p("OVER 3-"), Ok(Command::Over { spec: RangeSpec::Range(3, u64::MAX), x: false }));
        assert_eq!(p("XOVER 3-5"), Ok(Command::Over { spec: RangeSpec::Range(3, 5), x: true }));
        assert_eq!(
            p("HDR subject <x@y>"),
            Ok(Command::Hdr { field: "subject".into(), spec: RangeSpec::Id("<x@y>".into()), x: false })
        );
        assert_eq!(
            p("LISTGROUP misc.test 2-4"),
            Ok(Command::ListGroup { group: Some("misc.test".into()), range: Some((2, 4)) })
        );
        assert_eq!(p("LIST"), Ok(Command::List { kind: ListKind::Active, wildmat: None }));
        assert!(matches!(
            p("LIST NEWSGROUPS comp.*"),
            Ok(Command::List { kind: ListKind::Newsgroups, wildmat: Some(_) })
        ));
        assert_eq!(p("LIST DISTRIB.PATS"), Err(reply::UNKNOWN_LIST));
        assert_eq!(p("LIST ACTIVE [x]"), Err(reply::BAD_WILDMAT));
        assert_eq!(p("AUTHINFO PASS two words"), Ok(Command::AuthPass("two words".into())));
        assert_eq!(
            p("AUTHINFO SASL PLAIN AGEAYg=="),
            Ok(Command::AuthSasl { mechanism: "PLAIN".into(), initial: Some("AGEAYg==".into()) })
        );
        assert_eq!(p("AUTHINFO GENERIC x"), Err(reply::SYNTAX));
        assert_eq!(p("TAKETHIS nonsense"), Ok(Command::TakeThis("nonsense".into())));
        assert_eq!(p("IHAVE nonsense"), Err(reply::BAD_MESSAGE_ID));
        assert_eq!(p("FROB"), Err(reply::UNKNOWN_COMMAND));
        assert_eq!(p(""), Err(reply::UNKNOWN_COMMAND));
        assert_eq!(p("ARTICLE 99999999999999999"), Err(reply::SYNTAX));
    }

    #[test]
    fn dates() {
        assert_eq!(p("NEWGROUPS 19700101 000000 GMT"), Ok(Command::NewGroups { since: 0 }));
        assert_eq!(p("NEWGROUPS 20261122 100000"), Ok(Command::NewGroups { since: 1_795_341_600 }));
        assert_eq!(p("NEWGROUPS 261122 100000"), Ok(Command::NewGroups { since: 1_795_341_600 }));
        assert_eq!(p("NEWGROUPS 20261322 100000"), Err(reply::SYNTAX));
        assert_eq!(p("NEWGROUPS 20261122 100000 UTC"), Err(reply::SYNTAX));
        assert_eq!(date_time(1_795_341_600), "20261122100000");
        assert_eq!(date_time(0), "19700101000000");
        assert_eq!(date_time(951_782_400), "20000229000000");
    }
}
