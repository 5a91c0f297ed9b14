//! A real DNS server on loopback (hickory-server, as tests/outbound/dns.rs)
//! serving one zone whose records the test can change while it runs: the
//! `_mta-sts` TXT record's id changes between deliveries. Records have TTL
//! 0, so the resolver asks again each time.

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

/// The records of one zone.
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
        self.add(domain, RData::MX(MX::new(pref, name(host))))
    }

    pub fn a(&mut self, host: &str, ip: Ipv4Addr) -> &mut Zone {
        self.add(host, RData::A(A(ip)))
    }

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
