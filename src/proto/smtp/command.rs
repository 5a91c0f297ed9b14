//! Typed SMTP server commands (as the smtp-proto crate does): [`parse`]
//! turns a line into a [`Command`] or the reply to an unknown verb or a bad
//! EHLO/HELO, and [`requires_tls`] says which commands a `require_tls`
//! server refuses before STARTTLS. The arguments of MAIL, RCPT and AUTH are
//! parsed by [`mail_from`], [`rcpt_to`] and [`auth_args`] once the command
//! is in sequence: a client that sends a malformed MAIL before EHLO is told
//! to send EHLO first (RFC 5321 §4.3.2 lists the 503 for both), which is
//! the order the replies have always come in.

use super::address::{parse_path, Address, AddressError, ReversePath};
use super::reply::{self, Reply};
use super::server::{BodyType, MailParams};
use crate::proto::sasl::Mechanism;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// The client's name (the first word after the verb).
    Ehlo(&'a str),
    Helo(&'a str),
    /// The text after `MAIL`, for [`mail_from`].
    Mail(&'a str),
    /// The text after `RCPT`, for [`rcpt_to`].
    Rcpt(&'a str),
    /// `args`: something followed the verb (a syntax error once in sequence).
    Data {
        args: bool,
    },
    /// CHUNKING is not offered; refused without reading chunk data.
    Bdat,
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    Expn,
    StartTls {
        args: bool,
    },
    /// The text after `AUTH`, for [`auth_args`].
    Auth(&'a str),
}

/// The command on a line (line end removed). Arguments of NOOP, RSET,
/// QUIT, HELP, VRFY and EXPN are ignored, as they always were.
pub fn parse(line: &str) -> Result<Command<'_>, Reply> {
    let (verb, arg) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_start_matches(' ')),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    Ok(match verb.as_str() {
        "EHLO" | "HELO" => {
            let name = arg.trim();
            if name.is_empty() || name.contains(' ') && verb == "HELO" {
                return Err(reply::SYNTAX_HELO);
            }
            let name = name.split(' ').next().unwrap_or(name);
            if verb == "EHLO" {
                Command::Ehlo(name)
            } else {
                Command::Helo(name)
            }
        }
        "MAIL" => Command::Mail(arg),
        "RCPT" => Command::Rcpt(arg),
        "DATA" => Command::Data { args: !arg.is_empty() },
        "BDAT" => Command::Bdat,
        "RSET" => Command::Rset,
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        "HELP" => Command::Help,
        "VRFY" => Command::Vrfy,
        "EXPN" => Command::Expn,
        "STARTTLS" => Command::StartTls { args: !arg.is_empty() },
        "AUTH" => Command::Auth(arg),
        _ => return Err(reply::UNKNOWN_COMMAND),
    })
}

/// The commands a server with `require_tls` answers only over TLS (SPEC
/// §13.8): mail commands, and VRFY, which would probe for users.
pub fn requires_tls(command: &Command) -> bool {
    matches!(command, Command::Mail(_) | Command::Rcpt(_) | Command::Data { .. } | Command::Bdat | Command::Vrfy)
}

/// `FROM:<path> [params]`. `auth_param`: AUTH is configured, so `AUTH=`
/// is taken (RFC 4954 §5; informational for us).
pub fn mail_from(arg: &str, auth_param: bool) -> Result<(ReversePath, MailParams), Reply> {
    let rest = strip_keyword(arg, "FROM:").ok_or(reply::BAD_SENDER_SYNTAX)?;
    // SMTPUTF8 must be known before the path is parsed
    let utf8 = rest.to_ascii_uppercase().split(' ').any(|p| p == "SMTPUTF8");
    let (from, params) = parse_path(rest, utf8).map_err(|_| reply::BAD_SENDER_SYNTAX)?;
    Ok((from, mail_parameters(params, auth_param)?))
}

fn mail_parameters(params: &str, auth_param: bool) -> Result<MailParams, Reply> {
    let mut p = MailParams::default();
    for param in params.split(' ').filter(|s| !s.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (param.to_ascii_uppercase(), None),
        };
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => p.size = Some(v.parse().map_err(|_| reply::SYNTAX_PARAMS)?),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => p.body = BodyType::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => p.body = BodyType::EightBitMime,
            ("SMTPUTF8", None) => p.smtputf8 = true,
            ("REQUIRETLS", None) => p.requiretls = true,
            ("AUTH", Some(_)) if auth_param => {}
            _ => return Err(reply::UNSUPPORTED_PARAM),
        }
    }
    Ok(p)
}

/// `TO:<path>`; `smtputf8` as declared on MAIL. No parameters are taken.
pub fn rcpt_to(arg: &str, smtputf8: bool) -> Result<Address, Reply> {
    let rest = strip_keyword(arg, "TO:").ok_or(reply::BAD_RCPT_SYNTAX)?;
    match parse_path(rest, smtputf8) {
        Ok((ReversePath::Mailbox(a), params)) if params.trim().is_empty() => Ok(a),
        Ok((ReversePath::Mailbox(_), _)) => Err(reply::UNSUPPORTED_PARAM),
        // RFC 5321 §4.1.1.3: <Postmaster> without a domain
        Err(AddressError::NoDomain) if rest.trim().eq_ignore_ascii_case("<postmaster>") => {
            Ok(Address { local: "postmaster".into(), domain: String::new() })
        }
        _ => Err(reply::BAD_RCPT_SYNTAX),
    }
}

/// `mechanism [initial-response]`.
pub fn auth_args(arg: &str) -> Result<(Mechanism, Option<&str>), Reply> {
    let mut parts = arg.split(' ').filter(|s| !s.is_empty());
    let mechanism = parts.next().ok_or(reply::SYNTAX_PARAMS)?;
    let mechanism = Mechanism::parse(mechanism).ok_or(reply::UNKNOWN_MECHANISM)?;
    let initial = parts.next();
    match parts.next() {
        Some(_) => Err(reply::SYNTAX_PARAMS),
        None => Ok((mechanism, initial)),
    }
}

/// `FROM:` / `TO:` case-insensitively, allowing a space after the colon.
fn strip_keyword<'a>(arg: &'a str, kw: &str) -> Option<&'a str> {
    let head = arg.get(..kw.len())?;
    head.eq_ignore_ascii_case(kw).then(|| arg[kw.len()..].trim_start_matches(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_their_arguments() {
        assert_eq!(parse("ehlo  client.example  extra"), Ok(Command::Ehlo("client.example")));
        assert_eq!(parse("HELO c"), Ok(Command::Helo("c")));
        assert_eq!(parse("MAIL FROM:<a@b.test> SIZE=10"), Ok(Command::Mail("FROM:<a@b.test> SIZE=10")));
        assert_eq!(parse("rcpt TO:<x@y.test>"), Ok(Command::Rcpt("TO:<x@y.test>")));
        assert_eq!(parse("DATA"), Ok(Command::Data { args: false }));
        assert_eq!(parse("DATA x"), Ok(Command::Data { args: true }));
        assert_eq!(parse("STARTTLS"), Ok(Command::StartTls { args: false }));
        assert_eq!(parse("AUTH PLAIN AGFAYg=="), Ok(Command::Auth("PLAIN AGFAYg==")));
        assert_eq!(parse("NOOP anything"), Ok(Command::Noop));
        assert_eq!(parse("QUIT"), Ok(Command::Quit));
        assert_eq!(parse("BDAT 10 LAST"), Ok(Command::Bdat));
    }

    #[test]
    fn bad_lines_get_the_replies_they_always_did() {
        assert_eq!(parse("EHLO"), Err(reply::SYNTAX_HELO));
        assert_eq!(parse("HELO a b"), Err(reply::SYNTAX_HELO));
        assert_eq!(parse("BOGUS"), Err(reply::UNKNOWN_COMMAND));
        assert_eq!(parse(""), Err(reply::UNKNOWN_COMMAND));
        assert_eq!(parse("MAILFROM:<a@b>"), Err(reply::UNKNOWN_COMMAND));
        assert_eq!(mail_from("TO:<a@b.test>", false).unwrap_err(), reply::BAD_SENDER_SYNTAX);
        assert_eq!(mail_from("FROM:<a@b.test> SIZE=x", false).unwrap_err(), reply::SYNTAX_PARAMS);
        assert_eq!(mail_from("FROM:<a@b.test> AUTH=<>", false).unwrap_err(), reply::UNSUPPORTED_PARAM);
        assert!(mail_from("FROM:<a@b.test> AUTH=<>", true).is_ok());
        let (from, p) = mail_from("from: <> BODY=8BITMIME SMTPUTF8 SIZE=5", false).unwrap();
        assert_eq!((from, p.body, p.smtputf8, p.size), (ReversePath::Null, BodyType::EightBitMime, true, Some(5)));
        assert_eq!(rcpt_to("TO:<a@b.test> NOTIFY=NEVER", false).unwrap_err(), reply::UNSUPPORTED_PARAM);
        assert_eq!(rcpt_to("TO:a@b.test", false).unwrap_err(), reply::BAD_RCPT_SYNTAX);
        assert_eq!(rcpt_to("TO:<Postmaster>", false).unwrap().local, "postmaster");
        assert_eq!(auth_args(""), Err(reply::SYNTAX_PARAMS));
        assert_eq!(auth_args("CRAM-MD5"), Err(reply::UNKNOWN_MECHANISM));
        assert_eq!(auth_args("PLAIN a b"), Err(reply::SYNTAX_PARAMS));
        assert_eq!(auth_args("login  abc"), Ok((Mechanism::Login, Some("abc"))));
    }

    #[test]
    fn which_commands_need_tls() {
        let need: Vec<bool> = [
            "MAIL FROM:<>",
            "RCPT TO:<a@b>",
            "DATA",
            "BDAT 1",
            "VRFY x",
            "EXPN x",
            "EHLO c",
            "AUTH PLAIN",
            "NOOP",
            "STARTTLS",
        ]
        .iter()
        .map(|l| requires_tls(&parse(l).unwrap()))
        .collect();
        assert_eq!(need, [true, true, true, true, true, false, false, false, false, false]);
    }
}
