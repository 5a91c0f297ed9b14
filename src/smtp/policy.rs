//! Inbound policy: who may send what to whom (SPEC §4, §6, §8). Pure checks
//! over the config and accounts — no I/O beyond account lookups — so relay
//! control can be tested on its own ("check, then proceed"). Alias
//! expansion belongs to the accounts ([`Accounts::expand`]) and the routing
//! of its targets to [`crate::routing::expand`], which the queue shares.

use crate::auth::{Accounts, LocalTarget};
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

/// Check `RCPT TO`. Addresses that hide further hops (`%`, `!`, a quoted
/// `@`) are judged by every domain they could reach, so no trickery turns
/// a local or relay domain into an open relay. A local alias must reach a
/// mailbox: one that only loops (made before `alias add` refused loops)
/// is `550 5.4.6`, RFC 3463 "routing loop detected", not a message that
/// would be queued with nobody to deliver it to.
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
    let reaches_only_ours = ours(&rcpt.domain) && rcpt.hidden_domains().iter().all(|d| ours(d));
    if !reaches_only_ours && !may_relay(vs, client) {
        return Err(reply::RELAY_DENIED);
    }
    if config.is_local_domain(&rcpt.domain) {
        if rcpt.local_key() == "postmaster" {
            return Ok(RcptRoute::Local);
        }
        return match accounts.lookup(&rcpt.key()) {
            Some(LocalTarget::User(_)) => Ok(RcptRoute::Local),
            Some(LocalTarget::Alias(_)) => {
                match accounts.expand(&rcpt.key(), &config.server.postmaster, |d| config.is_local_domain(d)) {
                    Ok(_) => Ok(RcptRoute::Local),
                    Err(e) => Err(reply::ALIAS_LOOP.with_text(format!("Routing loop detected: {e}"))),
                }
            }
            None => Err(reply::UNKNOWN_USER),
        };
    }
    let group = routing::select(&config.connectors, &rcpt.domain, &vs.name);
    match routing::choose(&group) {
        Some(c) => Ok(RcptRoute::Remote { destination: routing::destination(c.connector, &rcpt.domain) }),
        None => Err(reply::NO_ROUTE),
    }
}

// One place: aliases expand in `auth::Accounts::expand`, and the result
// becomes queue recipients in `routing::expand` (the queue expands DSN
// recipients too, and must not import this service); re-exported for the
// SMTP service, which may as well name `routing::expand` itself.
pub use crate::routing::expand::{expand_local, QueuedRcpt};

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
            "5.4.6" => 4,
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
    fn every_hidden_hop_toward_a_relay_domain_is_judged() {
        let (c, a, _db) = setup();
        let outside = "192.0.2.9";
        // SPEC §13.4: with two or more hops only the last one is ours
        for trick in [
            "<victim%evil.example%relayed.test@relayed.test>",
            "<victim%evil.example%example.test@relayed.test>",
            "<relayed.test!evil.example!victim@relayed.test>",
            "<example.test!evil.example!victim@relayed.test>",
            "<\"victim%evil.example@relayed.test\"@relayed.test>",
            "<evil.example!victim%relayed.test@relayed.test>",
            "<victim%evil.example%relayed.test@example.test>",
        ] {
            assert_eq!(check(&c, &a, outside, None, trick), Err(5501), "{trick}");
        }
        // ordinary relay-domain mail, and hops that stay among our domains
        assert!(check(&c, &a, outside, None, "<x@relayed.test>").is_ok());
        assert!(check(&c, &a, outside, None, "<x%relayed.test@relayed.test>").is_ok());
        assert!(check(&c, &a, outside, None, "<relayed.test!x@relayed.test>").is_ok());
        // clients that may relay anyway are not refused for the trick
        assert!(check(&c, &a, "10.2.3.4", None, "<victim%evil.example%relayed.test@relayed.test>").is_ok());
    }

    #[test]
    fn spellings_of_our_domains_are_our_domains() {
        let (c, a, _db) = setup();
        let outside = "192.0.2.9";
        let partner = Ok(RcptRoute::Remote { destination: "partner/10.1.1.1:25".into() });
        for rcpt in ["<x@ｒｅｌａｙｅｄ.test>", "<x@RELAYED.test.>", "<x@ＲＥＬＡＹＥＤ．ＴＥＳＴ>"]
        {
            assert_eq!(check(&c, &a, outside, None, rcpt), partner, "{rcpt}");
        }
        assert_eq!(check(&c, &a, outside, None, "<alice@ｅｘａｍｐｌｅ.test>"), Ok(RcptRoute::Local));
        assert_eq!(check(&c, &a, outside, None, "<x%ｒｅｍｏｔｅ.test@ｅｘａｍｐｌｅ.test>"), Err(5501));
    }

    #[test]
    fn an_alias_that_reaches_no_mailbox_is_refused_at_rcpt() {
        let (c, a, db) = setup();
        // loops made before `alias add` refused them are still in the store
        let raw = db.open_tree("aliases").unwrap();
        let put = |k: &str, t: &[&str]| raw.insert(k, serde_json::to_vec(t).unwrap()).unwrap();
        put("self@example.test", &["self@example.test"]);
        put("ping@example.test", &["pong@example.test"]);
        put("pong@example.test", &["ping@example.test"]);
        put("half@example.test", &["ping@example.test", "alice@example.test"]);
        for rcpt in ["<self@example.test>", "<ping@example.test>", "<Pong@example.test>"] {
            assert_eq!(check(&c, &a, "192.0.2.9", None, rcpt), Err(5504), "{rcpt}");
            // and if one slipped through (made between RCPT and DATA), it
            // still ends in a recipient that local delivery bounces
            let got = expand_local(&c, &a, "mx", &addr(rcpt));
            assert_eq!(got.len(), 1, "{rcpt}: {got:?}");
            assert_eq!(got[0].destination, "local");
        }
        // a loop beside a mailbox still reaches the mailbox
        assert_eq!(check(&c, &a, "192.0.2.9", None, "<half@example.test>"), Ok(RcptRoute::Local));
        let got = expand_local(&c, &a, "mx", &addr("<half@example.test>"));
        assert_eq!(got.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), ["alice@example.test"]);
    }

    #[test]
    fn no_route_is_554_at_rcpt() {
        let t = CONF.replace("address_spaces = [\"*\"]", "address_spaces = [\"*.corp.test\"]");
        let c = Config::parse(&t, Path::new("t.toml")).unwrap();
        let (_, a, _db) = setup();
        assert_eq!(check(&c, &a, "10.0.0.1", None, "<x@remote.test>"), Err(5503));
    }

    #[test]
    fn alias_expansion() {
        let (c, a, _db) = setup();
        a.add_user("bob@example.test", "pw").unwrap();
        a.add_alias("team@example.test", "sales@example.test").unwrap();
        a.add_alias("team@example.test", "bob@example.test").unwrap();
        a.add_alias("team@example.test", "Partner@Remote.test").unwrap();
        a.add_alias("loop@example.test", "loop2@example.test").unwrap();
        assert!(matches!(
            a.add_alias("loop2@example.test", "loop@example.test"),
            Err(crate::auth::AccountError::AliasCycle(_))
        ));
        let x = |s: &str| expand_local(&c, &a, "mx", &addr(s));
        let got = x("<Team@example.test>");
        let addrs: Vec<(&str, &str)> = got.iter().map(|r| (r.address.as_str(), r.destination.as_str())).collect();
        assert_eq!(
            addrs,
            [
                ("alice@example.test", "local"),
                ("bob@example.test", "local"),
                ("partner@remote.test", "internet/remote.test")
            ]
        );
        assert!(got.iter().all(|r| r.original.as_deref() == Some("Team@example.test")));
        assert_eq!(x("<Alice@example.test>")[0].address, "Alice@example.test");
        assert_eq!(x("<Alice@example.test>")[0].original, None);
        // postmaster without an account goes to server.postmaster
        let pm = x("<postmaster@example.test>");
        assert_eq!(pm.len(), 1);
        assert_eq!(pm[0].destination, "local");
        assert!(x("<loop@example.test>").len() <= 2, "circular aliases end");
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
