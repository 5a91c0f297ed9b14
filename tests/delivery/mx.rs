//! The whole server (in process, so the test can point MX hosts at its own
//! ports) with a real DNS server on loopback: mail goes to the lowest
//! preference first and falls back on connect failure; a null MX and an
//! NXDOMAIN end in an NDR to the sender.

use super::dns::{self, Zone};
use super::sink::{Sink, SinkConfig};
use postern::config::Config;
use postern::delivery::{Timeouts, TransportSettings};
use postern::server::StartOptions;
use std::net::Ipv4Addr;
use std::time::Duration;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_preference_fallback_and_ndrs_for_null_mx_and_nxdomain() {
    let sink = Sink::start(SinkConfig::new(&["mx2.good.test"])).await;
    let mut z = Zone::new("test");
    z.mx("good.test", 10, "mx1.good.test").mx("good.test", 20, "mx2.good.test");
    z.a("mx1.good.test", LO).a("mx2.good.test", LO);
    z.mx("origin.test", 10, "mx2.good.test");
    z.mx("nullmx.test", 0, ".");
    let d = dns::serve(z).await;

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"[server]
hostname = "mx.example.test"
data_dir = "{data}"
local_domains = ["example.test"]

[[virtual_server]]
name = "mx"
protocol = "smtp"
listen = ["127.0.0.1:0"]
relay_networks = ["127.0.0.0/8"]

[[connector]]
name = "internet"
address_spaces = ["*"]
mx_port = {mx_port}

[dns]
nameservers = ["{dns}"]
timeout = "2s"

[control]
socket = "{data}/control.sock"
"#,
        data = dir.path().join("data").display(),
        dns = d.addr,
        mx_port = sink.port()
    );
    let config = Config::parse(&text, std::path::Path::new("mx-test.toml")).unwrap();
    // the MX port comes from the connector's `mx_port`, not from a seam
    let mut transport = TransportSettings { timeouts: Timeouts::all(Duration::from_secs(3)), ..Default::default() };
    transport.port_overrides.insert("mx1.good.test".into(), closed_port());
    let server = postern::server::start_with(config, StartOptions { transport }).await.unwrap();
    let addr = server.listening[0].addr;

    // submit with a real SMTP client on a blocking thread
    tokio::task::spawn_blocking(move || {
        let mut c = super::common::Client::connect(addr);
        c.reply();
        c.expect("EHLO client.test", 250);
        for (to, subject) in [("x@good.test", "good"), ("y@nullmx.test", "nullmx"), ("z@missing.test", "missing")] {
            let r = c.send_mail("sender@origin.test", &[to], &format!("Subject: {subject}\r\n\r\nbody\r\n"));
            assert_eq!(r.code, 250);
        }
    })
    .await
    .unwrap();

    let has = |pred: &dyn Fn(&super::sink::Received) -> bool| sink.messages().iter().any(pred);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let delivered = has(&|m| m.rcpts.iter().any(|r| r == "x@good.test"));
        let ndrs: Vec<String> = sink
            .messages()
            .iter()
            .filter(|m| m.mail.starts_with("<>"))
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        let null_ndr = ndrs.iter().any(|t| t.contains("Final-Recipient: rfc822; y@nullmx.test"));
        let nx_ndr = ndrs.iter().any(|t| t.contains("Final-Recipient: rfc822; z@missing.test"));
        if delivered && null_ndr && nx_ndr {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivered={delivered} null-MX NDR={null_ndr} NXDOMAIN NDR={nx_ndr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the primary MX (a closed port) was tried first, the backup took the mail
    let good = sink.messages().into_iter().find(|m| m.rcpts.iter().any(|r| r == "x@good.test")).unwrap();
    assert!(String::from_utf8_lossy(&good.body).contains("Subject: good"));
    let ndrs: Vec<String> = sink
        .messages()
        .iter()
        .filter(|m| m.mail.starts_with("<>"))
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert!(ndrs.iter().all(|t| t.contains("Action: failed") && t.contains("Status: 5.")), "{ndrs:#?}");
    assert!(server.ctx.queue().is_empty() || eventually_empty(&server).await);
    server.stop().await;
}

async fn eventually_empty(server: &postern::server::Server) -> bool {
    for _ in 0..100 {
        if server.ctx.queue().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
