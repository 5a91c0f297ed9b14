//! SASL PLAIN (RFC 4616) and LOGIN as a sans-IO exchange: the protocol core
//! passes the client's base64 lines in and gets either a challenge to send
//! or the credentials to check. The same exchange serves SMTP AUTH (RFC
//! 4954), POP3 AUTH (RFC 5034), IMAP AUTHENTICATE (RFC 3501) and NNTP.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

// One mechanism list and one credentials type for every protocol: the
// kit's (`proto::sasl`), which the cores will drive directly (issue 10).
pub use crate::proto::sasl::{Credentials, Mechanism};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("the response is not valid base64")]
    BadBase64,
    #[error("the response is malformed")]
    Malformed,
    #[error("authorization as another user is not supported")]
    AuthzidMismatch,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this base64 challenge (possibly empty) and wait for a response.
    Challenge(String),
    /// The exchange is complete; check these.
    Done(Credentials),
    Failed(SaslError),
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
}

const USERNAME: &str = "VXNlcm5hbWU6"; // "Username:"
const PASSWORD: &str = "UGFzc3dvcmQ6"; // "Password:"

fn decode(line: &str) -> Result<Vec<u8>, SaslError> {
    let t = line.trim();
    if t == "=" {
        return Ok(Vec::new());
    }
    B64.decode(t).map_err(|_| SaslError::BadBase64)
}

fn utf8(b: Vec<u8>) -> Result<String, SaslError> {
    String::from_utf8(b).map_err(|_| SaslError::Malformed)
}

impl Exchange {
    /// Begin with an optional initial response (`=` means empty).
    pub fn start(mechanism: Mechanism, initial: Option<&str>) -> (Exchange, Step) {
        let mut ex = Exchange {
            state: match mechanism {
                Mechanism::Plain => State::PlainWaiting,
                Mechanism::Login => State::LoginUser,
            },
        };
        let step = match (mechanism, initial) {
            (_, Some(i)) => ex.respond(i),
            (Mechanism::Plain, None) => Step::Challenge(String::new()),
            (Mechanism::Login, None) => Step::Challenge(USERNAME.into()),
        };
        (ex, step)
    }

    pub fn respond(&mut self, line: &str) -> Step {
        let r = self.step(line);
        if let Err(e) = r {
            self.state = State::Finished;
            return Step::Failed(e);
        }
        r.unwrap_or(Step::Failed(SaslError::Malformed))
    }

    fn step(&mut self, line: &str) -> Result<Step, SaslError> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::PlainWaiting => {
                let raw = decode(line)?;
                let mut parts = raw.split(|&b| b == 0);
                let (Some(authz), Some(user), Some(pass), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(SaslError::Malformed);
                };
                let (authz, username, password) = (utf8(authz.to_vec())?, utf8(user.to_vec())?, utf8(pass.to_vec())?);
                if username.is_empty() {
                    return Err(SaslError::Malformed);
                }
                if !authz.is_empty() && !authz.eq_ignore_ascii_case(&username) {
                    return Err(SaslError::AuthzidMismatch);
                }
                Ok(Step::Done(Credentials { username, password }))
            }
            State::LoginUser => {
                let user = utf8(decode(line)?)?;
                if user.is_empty() {
                    return Err(SaslError::Malformed);
                }
                self.state = State::LoginPassword(user);
                Ok(Step::Challenge(PASSWORD.into()))
            }
            State::LoginPassword(username) => {
                let password = utf8(decode(line)?)?;
                Ok(Step::Done(Credentials { username, password }))
            }
            State::Finished => Err(SaslError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        B64.encode(s)
    }

    #[test]
    fn plain_initial_and_challenged() {
        let creds = Credentials { username: "alice@example.test".into(), password: "pw".into() };
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(b"\0alice@example.test\0pw")));
        assert_eq!(step, Step::Done(creds.clone()));
        let (mut ex, step) = Exchange::start(Mechanism::Plain, None);
        assert_eq!(step, Step::Challenge(String::new()));
        assert_eq!(ex.respond(&b64(b"alice@example.test\0alice@example.test\0pw")), Step::Done(creds));
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(b"bob\0alice\0pw")));
        assert_eq!(step, Step::Failed(SaslError::AuthzidMismatch));
        let (_, step) = Exchange::start(Mechanism::Plain, Some("!!!"));
        assert_eq!(step, Step::Failed(SaslError::BadBase64));
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(b"nonul")));
        assert_eq!(step, Step::Failed(SaslError::Malformed));
    }

    #[test]
    fn login() {
        let (mut ex, step) = Exchange::start(Mechanism::Login, None);
        assert_eq!(step, Step::Challenge(USERNAME.into()));
        assert_eq!(ex.respond(&b64(b"alice")), Step::Challenge(PASSWORD.into()));
        assert_eq!(
            ex.respond(&b64(b"pw")),
            Step::Done(Credentials { username: "alice".into(), password: "pw".into() })
        );
        let (mut ex, step) = Exchange::start(Mechanism::Login, Some(&b64(b"alice")));
        assert_eq!(step, Step::Challenge(PASSWORD.into()));
        assert!(matches!(ex.respond(&b64(b"pw")), Step::Done(_)));
        assert!(!format!("{:?}", Credentials { username: "u".into(), password: "hunter2".into() }).contains("hunter2"));
    }
}
