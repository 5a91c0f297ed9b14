//! Next hops from a real DNS server: MX preference, fallback to the next
//! host, implicit MX, null MX, NXDOMAIN, and broken name servers.

use crate::dns::{self, Zone};
use crate::sink::{Sink, SinkConfig};
use crate::*;
use postern::delivery::mx::MxResolver;
use postern::delivery::RcptOutcome;
use postern::queue::Stage;
use std::net::Ipv4Addr;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_preference_first() {
    let primary = Sink::start(SinkConfig::new(&["mx1.pref.test"])).await;
    let backup = Sink::start(SinkConfig::new(&["mx2.pref.test"])).await;
    let mut z = Zone::new("test");
    z.mx("pref.test", 20, "mx2.pref.test").mx("pref.test", 10, "mx1.pref.test");
    z.a("mx1.pref.test", LO).a("mx2.pref.test", LO);
    let d = dns::serve(z).await;
    let c = config(Some(d.addr), &connector(""));
    let mut s = settings(25);
    s.port_overrides.insert("mx1.pref.test".into(), primary.port());
    s.port_overrides.insert("mx2.pref.test".into(), backup.port());
    let t = transport(&c, s);
    for _ in 0..3 {
        let r = deliver(&t, &c, "pref.test", &[(0, "x@pref.test")]).await;
        assert_eq!(summary(&r), ["delivered"]);
        let RcptOutcome::Delivered(a) = &r.outcomes[0].1 else { unreachable!() };
        assert_eq!(a.remote_host.as_deref(), Some("mx1.pref.test"));
    }
    assert_eq!(primary.messages().len(), 3);
    assert_eq!(backup.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_next_mx_on_connect_failure() {
    let live = Sink::start(SinkConfig::new(&["mx2.fb.test"])).await;
    let mut z = Zone::new("test");
    z.mx("fb.test", 10, "mx1.fb.test").mx("fb.test", 20, "mx2.fb.test");
    z.a("mx1.fb.test", LO).a("mx2.fb.test", LO);
    let d = dns::serve(z).await;
    let c = config(Some(d.addr), &connector(""));
    let mut s = settings(live.port());
    s.port_overrides.insert("mx1.fb.test".into(), closed_port());
    let t = transport(&c, s);
    let r = deliver(&t, &c, "fb.test", &[(3, "x@fb.test")]).await;
    assert_eq!(summary(&r), ["delivered"]);
    assert_eq!(r.outcomes[0].0, 3, "the recipient's index comes back");
    assert!(!r.unreachable);
    assert_eq!(live.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mx_refusing_is_unreachable_and_deferred() {
    let mut z = Zone::new("test");
    z.mx("dead.test", 10, "mx1.dead.test").mx("dead.test", 20, "mx2.dead.test");
    z.a("mx1.dead.test", LO).a("mx2.dead.test", LO);
    let d = dns::serve(z).await;
    let c = config(Some(d.addr), &connector(""));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "dead.test", &[(0, "x@dead.test"), (1, "y@dead.test")]).await;
    assert_eq!(summary(&r), ["deferred connect: refused", "deferred connect: refused"]);
    assert!(r.unreachable);
    assert!(r.tls.is_none(), "no connection, no TLS outcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_mx_and_domain_literal() {
    let sink = Sink::start(SinkConfig::new(&["a-only.test"])).await;
    let mut z = Zone::new("test");
    z.a("a-only.test", LO);
    let d = dns::serve(z).await;
    let c = config(Some(d.addr), &connector(""));
    let t = transport(&c, settings(sink.port()));
    let r = deliver(&t, &c, "a-only.test", &[(0, "x@a-only.test")]).await;
    assert_eq!(summary(&r), ["delivered"]);
    let r = deliver(&t, &c, "[127.0.0.1]", &[(0, "x@[127.0.0.1]")]).await;
    assert_eq!(summary(&r), ["delivered"]);
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(sink.messages()[1].rcpts, ["x@[127.0.0.1]"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_and_nxdomain_fail_permanently() {
    let mut z = Zone::new("test");
    z.mx("nullmx.test", 0, ".");
    z.mx("nohost.test", 10, "nowhere.nohost.test");
    let d = dns::serve(z).await;
    let c = config(Some(d.addr), &connector(""));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "nullmx.test", &[(0, "x@nullmx.test")]).await;
    assert_eq!(summary(&r), ["failed dns: null MX: the domain accepts no mail"]);
    assert_eq!(r.outcomes[0].1.result().enhanced.as_deref(), Some("5.1.10"));
    assert!(!r.unreachable);
    let r = deliver(&t, &c, "nosuch.test", &[(0, "x@nosuch.test"), (1, "y@nosuch.test")]).await;
    assert_eq!(summary(&r), ["failed dns: domain not found", "failed dns: domain not found"]);
    // an MX whose host has no address is a temporary problem
    let r = deliver(&t, &c, "nohost.test", &[(0, "x@nohost.test")]).await;
    assert!(summary(&r)[0].starts_with("deferred dns: no address for any MX host"), "{:?}", summary(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_failing_name_servers_defer() {
    let quiet = dns::silent();
    let c = config(Some(quiet.addr), &connector(""));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "example.test", &[(0, "x@example.test")]).await;
    assert_eq!(summary(&r), ["deferred dns: timed out"]);
    assert_eq!(r.outcomes[0].1.result().stage, Stage::Dns);

    let sf = dns::servfail().await;
    let c = config(Some(sf), &connector(""));
    let t = transport(&c, settings(closed_port()));
    let r = deliver(&t, &c, "example.test", &[(0, "x@example.test")]).await;
    assert_eq!(summary(&r), ["deferred dns: server failure (SERVFAIL)"]);
    assert!(matches!(r.outcomes[0].1, RcptOutcome::Deferred(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_orders_and_resolves_mx_hosts() {
    let mut z = Zone::new("test");
    z.mx("many.test", 30, "c.many.test").mx("many.test", 10, "a.many.test").mx("many.test", 20, "b.many.test");
    z.a("a.many.test", Ipv4Addr::new(192, 0, 2, 1)).a("b.many.test", Ipv4Addr::new(192, 0, 2, 2));
    z.a("c.many.test", Ipv4Addr::new(192, 0, 2, 3));
    let d = dns::serve(z).await;
    let c = config(Some(d.addr), "");
    let r = MxResolver::from_config(&c.dns).unwrap();
    let hops = r.resolve_domain("Many.Test.").await.unwrap();
    let hosts: Vec<(&str, Option<u16>)> = hops.iter().map(|h| (h.host.as_str(), h.preference)).collect();
    assert_eq!(hosts, [("a.many.test", Some(10)), ("b.many.test", Some(20)), ("c.many.test", Some(30))]);
    assert_eq!(hops[1].addrs, [std::net::IpAddr::from(Ipv4Addr::new(192, 0, 2, 2))]);
    let h = r.resolve_host("b.many.test").await.unwrap();
    assert_eq!(h.preference, None);
    let e = r.resolve_host("gone.many.test").await.unwrap_err();
    assert!(e.permanent && e.to_string().contains("gone.many.test"), "{e}");
}
