//! Inbound policy: who may send what to whom (SPEC §4, §6, §8). Pure checks
//! over the config and accounts — no I/O beyond account lookups — so relay
//! control can be tested on its own ("check, then proceed").

use crate::auth::Accounts;
use crate::config::{Config, VirtualServer};
use crate::proto::smtp::reply::{self, Reply};
use crate::proto::smtp::{Address, ReversePath};
use crate::routing;
use std::net::IpAddr;

/// What we know of the client when judging a command.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    pub ip: IpAddr,
    pub auth_user: Option<&'a str>,
}

/// Where an accepted recipient goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptRoute {
    /// A local mailbox, alias or postmaster; delivered by the local agent.
    Local,
    /// Through a connector; the queue destination key.
    Remote { destination: String },
}

impl RcptRoute {
    pub fn destination(&self) -> &str {
        match self {
            RcptRoute::Local => "local",
            RcptRoute::Remote { destination } => destination,
        }
    }
}

/// May this client relay (send to domains that are not ours)?
pub fn may_relay(vs: &VirtualServer, client: &Client<'_>) -> bool {
    client.auth_user.is_some() || vs.in_relay_networks(client.ip)
}

/// Check `MAIL FROM`: on servers that demand it, an authenticated user may
/// only send as their own address or one of their aliases.
pub fn check_sender(
    accounts: &Accounts,
    vs: &VirtualServer,
    client: &Client<'_>,
    from: &ReversePath,
) -> Result<(), Reply> {
    let Some(user) = client.auth_user else {
        return Ok(());
    };
    if !vs.sender_must_match_auth() {
        return Ok(());
    }
    match from {
        ReversePath::Mailbox(a) if accounts.owns_address(user, &a.key()) => Ok(()),
        _ => Err(reply::SENDER_NOT_OWNED),
    }
}

/// Check `RCPT TO`. Addresses that hide a second hop (`%`, `!`, a quoted
/// `@`) are judged by every domain they could reach, so no trickery turns
/// a local or relay domain into an open relay.
pub fn check_rcpt(
    config: &Config,
    accounts: &Accounts,
    vs: &VirtualServer,
    client: &Client<'_>,
    rcpt: &Address,
) -> Result<RcptRoute, Reply> {
    // RFC 5321 §4.1.1.3: RCPT TO:<Postmaster> without a domain
    if rcpt.domain.is_empty() {
        return Ok(RcptRoute::Local);
    }
    let ours = |d: &str| config.is_local_domain(d) || config.is_relay_domain(d);
    if !may_relay(vs, client) {
        if !ours(&rcpt.domain) {
            return Err(reply::RELAY_DENIED);
        }
        if let Some(hidden) = rcpt.hidden_domain() {
            if !ours(&hidden) {
                return Err(reply::RELAY_DENIED);
            }
        }
    }
    if config.is_local_domain(&rcpt.domain) {
        if rcpt.local_key() == "postmaster" || accounts.lookup(&rcpt.key()).is_some() {
            return Ok(RcptRoute::Local);
        }
        return Err(reply::UNKNOWN_USER);
    }
    let group = routing::select(&config.connectors, &rcpt.domain, &vs.name);
    match routing::choose(&group) {
        Some(c) => Ok(RcptRoute::Remote { destination: routing::destination(c.connector, &rcpt.domain) }),
        None => Err(reply::NO_ROUTE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::smtp::address::parse_path;
    use std::path::Path;

    const CONF: &str = r#"
[server]
hostname = "mail.example.test"
local_domains = ["example.test"]
relay_domains = ["relayed.test"]

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:2525"]
relay_networks = ["10.0.0.0/8"]
auth = "optional"
allow_plaintext_auth = true

[[virtual_server]]
name = "submission"
protocol = "smtp"
listen = ["127.0.0.1:2587"]
auth = "required"
allow_plaintext_auth = true

[[connector]]
name = "internet"
address_spaces = ["*"]
source_servers = ["submission", "mx"]

[[connector]]
name = "partner"
address_spaces = ["relayed.test"]
smarthost = "10.1.1.1:25"
"#;

    fn setup() -> (Config, Accounts, sled::Db) {
        let config = Config::parse(CONF, Path::new("t.toml")).unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let accounts = Accounts::open(&db).unwrap();
        accounts.add_user("alice@example.test", "pw").unwrap();
        accounts.add_alias("sales@example.test", "alice@example.test").unwrap();
        (config, accounts, db)
    }

    fn addr(s: &str) -> Address {
        match parse_path(s, true).unwrap().0 {
            ReversePath::Mailbox(a) => a,
            ReversePath::Null => panic!(),
        }
    }

    fn check(config: &Config, accounts: &Accounts, ip: &str, user: Option<&str>, rcpt: &str) -> Result<RcptRoute, u16> {
        let vs = config.virtual_server("mx").unwrap();
        let client = Client { ip: ip.parse().unwrap(), auth_user: user };
        check_rcpt(config, accounts, vs, &client, &addr(rcpt)).map_err(|r| r.code * 10 + enhanced_tag(&r))
    }

    fn enhanced_tag(r: &Reply) -> u16 {
        match r.enhanced.as_ref() {
            "5.7.1" => 1,
            "5.1.1" => 2,
            "5.4.4" => 3,
            _ => 9,
        }
    }

    #[test]
    fn relay_control() {
        let (c, a, _db) = setup();
        let outside = "192.0.2.9";
        assert_eq!(check(&c, &a, outside, None, "<alice@example.test>"), Ok(RcptRoute::Local));
        assert_eq!(check(&c, &a, outside, None, "<Sales@Example.TEST>"), Ok(RcptRoute::Local));
        assert_eq!(check(&c, &a, outside, None, "<postmaster@example.test>"), Ok(RcptRoute::Local));
        assert_eq!(check(&c, &a, outside, None, "<nobody@example.test>"), Err(5502));
        assert_eq!(check(&c, &a, outside, None, "<x@remote.test>"), Err(5501));
        assert_eq!(
            check(&c, &a, outside, None, "<x@relayed.test>"),
            Ok(RcptRoute::Remote { destination: "partner/10.1.1.1:25".into() })
        );
        // every trick is judged by where it would finally go
        for trick in [
            "<x%remote.test@example.test>",
            "<remote.test!x@example.test>",
            "<\"x@remote.test\"@example.test>",
            "<@example.test:x@remote.test>",
            "<x%remote.test@relayed.test>",
            "<x@[192.0.2.1]>",
            "<x%example.test@remote.test>",
        ] {
            assert_eq!(check(&c, &a, outside, None, trick), Err(5501), "{trick}");
        }
        // relay networks and authenticated users may relay
        assert_eq!(
            check(&c, &a, "10.2.3.4", None, "<x@remote.test>"),
            Ok(RcptRoute::Remote { destination: "internet/remote.test".into() })
        );
        assert!(check(&c, &a, outside, Some("alice@example.test"), "<x@remote.test>").is_ok());
        // ...but a hidden hop at a local domain is still no mailbox of ours
        assert_eq!(check(&c, &a, "10.2.3.4", None, "<x%remote.test@example.test>"), Err(5502));
    }

    #[test]
    fn no_route_is_554_at_rcpt() {
        let t = CONF.replace("address_spaces = [\"*\"]", "address_spaces = [\"*.corp.test\"]");
        let c = Config::parse(&t, Path::new("t.toml")).unwrap();
        let (_, a, _db) = setup();
        assert_eq!(check(&c, &a, "10.0.0.1", None, "<x@remote.test>"), Err(5503));
    }

    #[test]
    fn sender_ownership() {
        let (c, a, _db) = setup();
        let vs = c.virtual_server("submission").unwrap();
        assert!(vs.sender_must_match_auth());
        let client = Client { ip: "192.0.2.1".parse().unwrap(), auth_user: Some("alice@example.test") };
        let from = |s: &str| parse_path(s, false).unwrap().0;
        assert!(check_sender(&a, vs, &client, &from("<alice@example.test>")).is_ok());
        assert!(check_sender(&a, vs, &client, &from("<ALICE@example.test>")).is_ok());
        assert!(check_sender(&a, vs, &client, &from("<sales@example.test>")).is_ok());
        assert_eq!(check_sender(&a, vs, &client, &from("<bob@example.test>")).unwrap_err().code, 553);
        assert_eq!(check_sender(&a, vs, &client, &from("<>")).unwrap_err().code, 553);
        let mx = c.virtual_server("mx").unwrap();
        assert!(check_sender(&a, mx, &client, &from("<bob@example.test>")).is_ok());
    }
}
