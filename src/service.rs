//! What every protocol service's session does the same way around its
//! sans-IO core ([`crate::proto::session::LineCore`]): the connection facts
//! it keeps (virtual server, peer, TLS, the login under way), the greeting,
//! the end of a turn (give back a throttle slot no exchange holds any more,
//! hand over the output, tell the driver what comes next), TLS starting,
//! and closing with a reply on timeout or shutdown. SMTP and POP3 use it;
//! IMAP and NNTP will. What a service does with its core's events is its own.

use crate::auth::login::{Gate, Login};
use crate::config::VirtualServer;
use crate::net::{ConnInfo, Next};
use crate::proto::session::{LineCore, ReplyOf};
use crate::tls::TlsInfo;
use std::net::SocketAddr;
use std::sync::Arc;

/// One client connection as a service session sees it.
pub struct Conn {
    pub vs: Arc<VirtualServer>,
    pub peer: SocketAddr,
    /// Set once TLS is up (implicit or STARTTLS), for the session log.
    pub tls: Option<TlsInfo>,
    /// The login glue; holds the throttle slot of an exchange under way.
    pub login: Login,
}

impl Conn {
    pub fn new(vs: &Arc<VirtualServer>, info: &ConnInfo, gate: &Gate) -> Conn {
        Conn { vs: vs.clone(), peer: info.peer, tls: None, login: gate.session(&vs.name, info.peer) }
    }

    /// The session's first words.
    pub fn greet<C: LineCore>(core: &mut C, out: &mut Vec<u8>) {
        core.greeting();
        core.take_output(out);
    }

    /// After the core's events of this turn were answered: an exchange that
    /// ended (cancelled, or ended by the core) gives its slot back; the
    /// output goes out; a closed core closes, a core paused on its output
    /// gets fed again once that is sent, else the driver reads.
    pub fn end_turn<C: LineCore>(&mut self, core: &mut C, out: &mut Vec<u8>) -> Next {
        self.login.settle(core.auth_in_progress());
        let paused = core.output_full();
        core.take_output(out);
        if core.is_closed() {
            Next::Close
        } else if paused {
            Next::Continue
        } else {
            Next::Read
        }
    }

    /// TLS is up: remember it for the log; an exchange under way is gone
    /// with the plaintext it came in (RFC 3207 §4.2, RFC 2595 §4).
    pub fn tls_started(&mut self, info: &TlsInfo) {
        self.tls = Some(info.clone());
        self.login.settle(false);
    }

    /// Say `reply` and close (idle timeout, shutdown).
    pub fn close<C: LineCore>(core: &mut C, reply: &ReplyOf<C>, out: &mut Vec<u8>) {
        core.close(reply);
        core.take_output(out);
    }
}
