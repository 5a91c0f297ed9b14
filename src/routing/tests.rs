//! The route table of the outbound issue's acceptance list.

use super::*;
use std::path::Path;

const TABLE: &str = r#"
[server]
hostname = "mail.example.test"
local_domains = ["example.test"]

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:2525"]

[[virtual_server]]
name = "submission"
protocol = "smtp"
listen = ["127.0.0.1:2587"]

[[connector]]
name = "star"
address_spaces = ["*"]
cost = 1

[[connector]]
name = "sub-example"
address_spaces = ["*.example.com"]
cost = 5

[[connector]]
name = "example"
address_spaces = ["example.com"]
cost = 10

[[connector]]
name = "a-cheap"
address_spaces = ["a.example.com"]
cost = 3
tls = "required"

[[connector]]
name = "a-dear"
address_spaces = ["a.example.com"]
cost = 7

[[connector]]
name = "partners"
address_spaces = ["partner.org"]
source_servers = ["submission"]
smarthost = "relay.partner.org:587"
"#;

fn config() -> Config {
    Config::parse(TABLE, Path::new("table.toml")).unwrap()
}

fn winner(c: &Config, domain: &str, server: &str) -> Option<String> {
    select(&c.connectors, domain, server).first().map(|w| w.connector.name.clone())
}

#[test]
fn most_specific_wins_then_cost() {
    let c = config();
    for (domain, want) in [
        ("a.example.com", "a-cheap"),
        ("A.Example.COM", "a-cheap"),
        ("b.a.example.com", "sub-example"),
        ("x.example.com", "sub-example"),
        ("example.com", "example"),
        ("example.org", "star"),
        ("partner.org", "star"),
    ] {
        assert_eq!(winner(&c, &domain.to_ascii_lowercase(), "mx").as_deref(), Some(want), "{domain}");
    }
    // from submission, the scoped connector is the most specific
    assert_eq!(winner(&c, "partner.org", "submission").as_deref(), Some("partners"));
    // failover candidates are only the equally specific ones
    let group: Vec<&str> =
        select(&c.connectors, "a.example.com", "mx").iter().map(|c| c.connector.name.as_str()).collect();
    assert_eq!(group, ["a-cheap", "a-dear"]);
    let group = select(&c.connectors, "b.a.example.com", "mx");
    assert_eq!(group.len(), 1);
}

#[test]
fn wildcard_does_not_match_its_own_domain() {
    let sub = AddressSpace::Subdomains("example.com".into());
    assert!(matches(&sub, "example.com").is_none());
    assert!(matches(&sub, "badexample.com").is_none());
    assert!(matches(&sub, "x.example.com").is_some());
    let deeper = matches(&AddressSpace::Subdomains("a.example.com".into()), "b.a.example.com").unwrap();
    assert!(deeper > matches(&sub, "b.a.example.com").unwrap());
    assert!(matches(&AddressSpace::Exact("example.com".into()), "example.com").unwrap() > deeper);
}

#[test]
fn equal_costs_share_the_load() {
    let t = TABLE.replace("cost = 7", "cost = 3");
    let c = Config::parse(&t, Path::new("t.toml")).unwrap();
    let group = select(&c.connectors, "a.example.com", "mx");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.insert(choose(&group).unwrap().connector.name.clone());
    }
    assert_eq!(seen.len(), 2);
}

#[test]
fn explanation_names_winner_and_losers() {
    let c = config();
    let ex = explain(&c, "bob@a.example.com", Some("mx")).unwrap();
    let r = ex.route.as_ref().unwrap();
    assert_eq!(
        (r.connector.as_str(), r.address_space.as_str(), r.tls.as_str()),
        ("a-cheap", "a.example.com", "required")
    );
    assert_eq!(r.destination, "a-cheap/a.example.com");
    let reason = |n: &str| ex.passed_over.iter().find(|p| p.connector == n).unwrap().reason.clone();
    assert!(reason("a-dear").contains("higher cost (7 > 3)"), "{}", reason("a-dear"));
    assert!(reason("star").contains("less specific"), "{}", reason("star"));
    assert!(reason("sub-example").contains("less specific"));
    assert!(reason("partners").contains("not used for mail received on \"mx\""), "{}", reason("partners"));
    let text = ex.to_string();
    assert!(text.contains("route: connector \"a-cheap\""), "{text}");

    let ex = explain(&c, "x@partner.org", Some("submission")).unwrap();
    assert_eq!(ex.route.as_ref().unwrap().next_hop, "smarthost relay.partner.org:587");
    assert!(explain(&c, "x@example.test", None).unwrap().local);
    assert!(explain(&c, "nodomain", None).is_err());
    assert!(explain(&c, "x@y.z", Some("nosuch")).is_err());
}
