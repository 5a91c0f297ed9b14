//! One SASL exchange for every protocol core: PLAIN (RFC 4616) with or
//! without an initial response, and LOGIN. The core feeds it the client's
//! lines as they arrive and gets back either a challenge line, framed the
//! way its protocol frames them ([`Framing`]: `334 ` for SMTP AUTH, RFC
//! 4954; `+ ` for POP3 AUTH, RFC 5034, and IMAP AUTHENTICATE, RFC 3501;
//! `383 ` for NNTP AUTHINFO SASL, RFC 4643), or the credentials to check, or
//! why it failed — `*` cancels, as all four RFCs say.
//!
//! It is sans-IO and knows no accounts: checking the credentials, the
//! throttle and the failure delay belong to the service (`auth::login`).
//! The cores drive it through the skeleton (`proto::session`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            _ => None,
        }
    }
}

/// How a protocol frames a server challenge line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `334 <base64>` (RFC 4954).
    Smtp,
    /// `+ <base64>` (RFC 5034 POP3, RFC 3501 IMAP).
    Continuation,
    /// `383 <base64>` (RFC 4643).
    Nntp,
}

impl Framing {
    /// The challenge as a full line, CRLF included. Only printable ASCII
    /// of the challenge is sent (it is base64; nothing else may leak).
    pub fn line(self, challenge_b64: &str) -> Vec<u8> {
        let prefix: &[u8] = match self {
            Framing::Smtp => b"334 ",
            Framing::Continuation => b"+ ",
            Framing::Nntp => b"383 ",
        };
        let mut out = prefix.to_vec();
        out.extend(challenge_b64.bytes().filter(|b| b.is_ascii_graphic()));
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// A user name and password, as the client sent them. Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Why an exchange ended without credentials; each maps to one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslFailure {
    #[error("the client cancelled the exchange")]
    Cancelled,
    #[error("the response is not valid base64")]
    BadBase64,
    #[error("the response is malformed")]
    Malformed,
    #[error("authorization as another user is not supported")]
    AuthzidMismatch,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this line (already framed) and feed the next client line.
    Challenge(Vec<u8>),
    /// The exchange is complete; check these.
    Done(Credentials),
    Failed(SaslFailure),
}

#[derive(Debug)]
enum State {
    PlainWaiting,
    LoginUser,
    LoginPassword(String),
    Finished,
}

#[derive(Debug)]
pub struct Exchange {
    state: State,
    framing: Framing,
}

const USERNAME: &str = "VXNlcm5hbWU6"; // "Username:"
const PASSWORD: &str = "UGFzc3dvcmQ6"; // "Password:"

fn decode(line: &[u8]) -> Result<Vec<u8>, SaslFailure> {
    let t = line.trim_ascii();
    if t == b"=" {
        return Ok(Vec::new());
    }
    B64.decode(t).map_err(|_| SaslFailure::BadBase64)
}

fn utf8(b: Vec<u8>) -> Result<String, SaslFailure> {
    String::from_utf8(b).map_err(|_| SaslFailure::Malformed)
}

impl Exchange {
    /// Begin with an optional initial response (`=` means empty; RFC 4954).
    pub fn start(mechanism: Mechanism, initial: Option<&[u8]>, framing: Framing) -> (Exchange, Step) {
        let state = match mechanism {
            Mechanism::Plain => State::PlainWaiting,
            Mechanism::Login => State::LoginUser,
        };
        let mut ex = Exchange { state, framing };
        let step = match (mechanism, initial) {
            (_, Some(i)) => ex.answer(i),
            (Mechanism::Plain, None) => Step::Challenge(framing.line("")),
            (Mechanism::Login, None) => Step::Challenge(framing.line(USERNAME)),
        };
        (ex, step)
    }

    /// The client's next line (line end removed). `*` cancels.
    pub fn respond(&mut self, line: &[u8]) -> Step {
        if line == b"*" {
            self.state = State::Finished;
            return Step::Failed(SaslFailure::Cancelled);
        }
        self.answer(line)
    }

    fn answer(&mut self, line: &[u8]) -> Step {
        match self.step(line) {
            Ok(step) => step,
            Err(e) => {
                self.state = State::Finished;
                Step::Failed(e)
            }
        }
    }

    fn step(&mut self, line: &[u8]) -> Result<Step, SaslFailure> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::PlainWaiting => {
                let raw = decode(line)?;
                let mut parts = raw.split(|&b| b == 0);
                let (Some(authz), Some(user), Some(pass), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(SaslFailure::Malformed);
                };
                let (authz, username, password) = (utf8(authz.to_vec())?, utf8(user.to_vec())?, utf8(pass.to_vec())?);
                if username.is_empty() {
                    return Err(SaslFailure::Malformed);
                }
                if !authz.is_empty() && !authz.eq_ignore_ascii_case(&username) {
                    return Err(SaslFailure::AuthzidMismatch);
                }
                Ok(Step::Done(Credentials { username, password }))
            }
            State::LoginUser => {
                let user = utf8(decode(line)?)?;
                if user.is_empty() {
                    return Err(SaslFailure::Malformed);
                }
                self.state = State::LoginPassword(user);
                Ok(Step::Challenge(self.framing.line(PASSWORD)))
            }
            State::LoginPassword(username) => {
                let password = utf8(decode(line)?)?;
                Ok(Step::Done(Credentials { username, password }))
            }
            State::Finished => Err(SaslFailure::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> Vec<u8> {
        B64.encode(s).into_bytes()
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials { username: u.into(), password: p.into() }
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(b"\0alice@example.test\0pw")), Framing::Smtp);
        assert_eq!(step, Step::Done(creds("alice@example.test", "pw")));
        let (mut ex, step) = Exchange::start(Mechanism::Plain, None, Framing::Smtp);
        assert_eq!(step, Step::Challenge(b"334 \r\n".to_vec()));
        assert_eq!(ex.respond(&b64(b"alice\0alice\0pw")), Step::Done(creds("alice", "pw")));
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(b"bob\0alice\0pw")), Framing::Smtp);
        assert_eq!(step, Step::Failed(SaslFailure::AuthzidMismatch));
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(b"nonul")), Framing::Smtp);
        assert_eq!(step, Step::Failed(SaslFailure::Malformed));
        let (_, step) = Exchange::start(Mechanism::Plain, Some(b"="), Framing::Smtp);
        assert_eq!(step, Step::Failed(SaslFailure::Malformed), "empty PLAIN has no user");
    }

    #[test]
    fn login_in_each_framing() {
        for (framing, prefix) in [(Framing::Smtp, "334 "), (Framing::Continuation, "+ "), (Framing::Nntp, "383 ")] {
            let (mut ex, step) = Exchange::start(Mechanism::Login, None, framing);
            assert_eq!(step, Step::Challenge(format!("{prefix}{USERNAME}\r\n").into_bytes()));
            assert_eq!(ex.respond(&b64(b"alice")), Step::Challenge(format!("{prefix}{PASSWORD}\r\n").into_bytes()));
            assert_eq!(ex.respond(&b64(b"pw")), Step::Done(creds("alice", "pw")));
        }
        let (mut ex, step) = Exchange::start(Mechanism::Login, Some(&b64(b"alice")), Framing::Continuation);
        assert_eq!(step, Step::Challenge(format!("+ {PASSWORD}\r\n").into_bytes()));
        assert_eq!(ex.respond(b"="), Step::Done(creds("alice", "")));
    }

    #[test]
    fn cancel_bad_base64_and_bad_bytes_fail() {
        let (mut ex, _) = Exchange::start(Mechanism::Login, None, Framing::Smtp);
        assert_eq!(ex.respond(b"*"), Step::Failed(SaslFailure::Cancelled));
        assert_eq!(ex.respond(&b64(b"late")), Step::Failed(SaslFailure::Malformed), "finished stays finished");
        let (mut ex, _) = Exchange::start(Mechanism::Plain, None, Framing::Continuation);
        assert_eq!(ex.respond(b"!!!"), Step::Failed(SaslFailure::BadBase64));
        let (mut ex, _) = Exchange::start(Mechanism::Plain, None, Framing::Continuation);
        assert_eq!(ex.respond(b"\xff\xfe"), Step::Failed(SaslFailure::BadBase64), "not UTF-8 is not base64");
        assert!(!format!("{:?}", creds("u", "hunter2")).contains("hunter2"));
        assert_eq!(Framing::Smtp.line("a\r\nb"), b"334 ab\r\n", "only base64 characters go out");
    }
}
