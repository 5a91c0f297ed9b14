//! `postern route explain` from the command line: the winner, the address
//! space and TLS policy, the next hop, and every other connector with the
//! reason it lost; a connector scoped to `submission` is never used for
//! mail that came in on `mx`.

mod common;

use common::*;

const CONNECTORS: &str = r#"
[[virtual_server]]
name = "submission"
protocol = "smtp"
listen = ["127.0.0.1:0"]

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
tls = "verify"

[[connector]]
name = "a-dear"
address_spaces = ["a.example.com"]
cost = 7

[[connector]]
name = "clients-only"
address_spaces = ["partner.org"]
source_servers = ["submission"]
smarthost = "relay.partner.org:587"
"#;

fn explain(dir: &std::path::Path, cfg: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["route", "explain"];
    all.extend_from_slice(args);
    let out = cli_in(dir, cfg, &all, None);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explains_winner_and_losers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("postern.toml");
    let text = config("", CONNECTORS).replace("[[connector]]\nname = \"internet\"\naddress_spaces = [\"*\"]\n", "");
    std::fs::write(&cfg, text).unwrap();

    let (code, out, err) = explain(dir.path(), &cfg, &["bob@b.a.example.com"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("route: connector \"sub-example\", address space *.example.com, cost 5"), "{out}");
    assert!(out.contains("\"star\": less specific: * loses to *.example.com"), "{out}");
    assert!(out.contains("\"example\": no address space matches b.a.example.com"), "{out}");

    let (_, out, _) = explain(dir.path(), &cfg, &["bob@a.example.com", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["route"]["connector"], "a-cheap");
    assert_eq!(v["route"]["tls"], "verify");
    assert_eq!(v["route"]["next_hop"], "MX of a.example.com");
    let reasons: Vec<(String, String)> = v["passed_over"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["connector"].as_str().unwrap().to_string(), p["reason"].as_str().unwrap().to_string()))
        .collect();
    let reason = |n: &str| reasons.iter().find(|(c, _)| c == n).map(|(_, r)| r.clone()).unwrap();
    assert!(reason("a-dear").contains("higher cost (7 > 3)"), "{reasons:?}");
    assert!(reason("example").contains("no address space matches"), "{reasons:?}");

    let (_, out, _) = explain(dir.path(), &cfg, &["x@example.com"]);
    assert!(out.contains("route: connector \"example\""), "an exact domain beats the cheaper wildcard: {out}");

    // scoped to submission: never for mail that came in on mx
    let (_, out, _) = explain(dir.path(), &cfg, &["x@partner.org", "--server", "mx"]);
    assert!(out.contains("route: connector \"star\""), "{out}");
    assert!(out.contains("\"clients-only\": not used for mail received on \"mx\""), "{out}");
    let (_, out, _) = explain(dir.path(), &cfg, &["x@partner.org", "--server", "submission"]);
    assert!(
        out.contains("route: connector \"clients-only\"") && out.contains("smarthost relay.partner.org:587"),
        "{out}"
    );

    let (_, out, _) = explain(dir.path(), &cfg, &["alice@example.test"]);
    assert!(out.contains("local delivery"), "{out}");

    let (code, _, err) = explain(dir.path(), &cfg, &["not-an-address"]);
    assert_eq!(code, 2);
    assert!(err.contains("not-an-address") && err.lines().count() == 1, "{err}");
}
