//! A real DNS server on loopback (hickory-server 0.26, the recipe in
//! DEPENDENCIES.md) serving one zone, plus two broken servers: one that
//! never answers and one that answers SERVFAIL to everything. Records have
//! TTL 0, so the resolver asks again each time, and a test may change a
//! TXT record while it runs (the MTA-STS tests change the policy id).

use hickory_proto::rr::rdata::{A, MX, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RrKey};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

fn name(s: &str) -> Name {
    Name::from_str(&format!("{}.", s.trim_end_matches('.'))).expect("test name")
}

fn set(owner: &str, data: RData) -> (RrKey, RecordSet) {
    let n = name(owner);
    let key = RrKey::new(LowerName::from(n.clone()), data.record_type());
    let mut set = RecordSet::new(n.clone(), data.record_type(), 0);
    set.insert(Record::from_rdata(n, 0, data), 0);
    (key, set)
}

/// The records of one zone, added with small helpers.
pub struct Zone {
    origin: Name,
    records: BTreeMap<RrKey, RecordSet>,
}

impl Zone {
    pub fn new(origin: &str) -> Zone {
        let origin = name(origin);
        let mut z = Zone { origin: origin.clone(), records: BTreeMap::new() };
        let soa =
            SOA::new(name(&format!("ns.{origin}")), name(&format!("hostmaster.{origin}")), 1, 3600, 600, 86400, 0);
        z.add(&origin.to_string(), RData::SOA(soa));
        z
    }

    fn add(&mut self, owner: &str, data: RData) -> &mut Zone {
        let (key, new) = set(owner, data);
        let entry = self.records.entry(key).or_insert_with(|| RecordSet::new(new.name().clone(), new.record_type(), 0));
        for r in new.records_without_rrsigs() {
            entry.insert(r.clone(), 0);
        }
        self
    }

    pub fn mx(&mut self, domain: &str, pref: u16, host: &str) -> &mut Zone {
        let exchange = if host == "." { Name::root() } else { name(host) };
        self.add(domain, RData::MX(MX::new(pref, exchange)))
    }

    pub fn a(&mut self, host: &str, ip: Ipv4Addr) -> &mut Zone {
        self.add(host, RData::A(A(ip)))
    }

    /// TXT (`_mta-sts`, TLS-RPT's `_smtp._tls`); the outbound tests use none.
    #[allow(dead_code)]
    pub fn txt(&mut self, owner: &str, text: &str) -> &mut Zone {
        self.add(owner, RData::TXT(TXT::new(vec![text.to_string()])))
    }
}

/// A running DNS server; dropping it stops it.
pub struct TestDns {
    pub addr: SocketAddr,
    handler: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    _server: Server<Catalog>,
}

impl TestDns {
    /// Replace the TXT records at `owner` with one record `text`.
    #[allow(dead_code)]
    pub async fn set_txt(&self, owner: &str, text: &str) {
        let (key, set) = set(owner, RData::TXT(TXT::new(vec![text.to_string()])));
        self.handler.records_mut().await.insert(key, Arc::new(set));
    }
}

pub async fn serve(zone: Zone) -> TestDns {
    let handler = Arc::new(
        InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            zone.origin.clone(),
            zone.records,
            ZoneType::Primary,
            AxfrPolicy::Deny,
            None, // no NSEC/NSEC3: the zone is not signed
        )
        .expect("zone"),
    );
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(zone.origin), vec![handler.clone() as Arc<dyn ZoneHandler>]);
    // DNS wants UDP and TCP on one port; the kernel picks a free UDP port,
    // whose TCP twin may be some other test's connection: try again then.
    let mut tries = 0;
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        match TcpListener::bind(udp.local_addr().expect("addr")).await {
            Ok(tcp) => break (udp, tcp),
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("DNS test server: TCP twin of {:?} taken ({e}); another port", udp.local_addr());
            }
            Err(e) => panic!("bind tcp: no UDP port with a free TCP twin after 50 tries: {e}"),
        }
    };
    let addr = udp.local_addr().expect("addr");
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 16);
    TestDns { addr, handler, _server: server }
}

/// A UDP socket that reads nothing and answers nothing.
pub struct Silent {
    pub addr: SocketAddr,
    _socket: std::net::UdpSocket,
}

pub fn silent() -> Silent {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    Silent { addr: s.local_addr().expect("addr"), _socket: s }
}

/// Answers every query with SERVFAIL (RFC 1035 §4.1.1 RCODE 2), echoing
/// the question. Stops when the runtime does.
pub async fn servfail() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = s.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = s.recv_from(&mut buf).await else { return };
            if n < 12 {
                continue;
            }
            // header + the question (QNAME labels, QTYPE, QCLASS)
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += buf[end] as usize + 1;
            }
            end = (end + 5).min(n);
            let mut resp = buf[..end].to_vec();
            resp[2] = 0x80 | (buf[2] & 0x01); // QR, keep RD
            resp[3] = 0x80 | 0x02; // RA, SERVFAIL
            resp[4..6].copy_from_slice(&[0, 1]);
            resp[6..12].fill(0);
            let _ = s.send_to(&resp, peer).await;
        }
    });
    addr
}
