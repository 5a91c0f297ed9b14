//! A DNSSEC-signed DNS world on loopback (hickory-server 0.26 with
//! dnssec-ring): a root zone "." signed with a fresh Ed25519 test key
//! (NSEC denials), whose DNSKEY the resolver is given as `[dns]
//! trust_anchor`, and an unsigned child zone `insecure.test` delegated
//! from it without a DS record (a secure NSEC proves the delegation
//! insecure). Records can be tampered with after signing (the RRSIG
//! stays, the data changes): a bogus answer.
//!
//! hickory's catalog sends every query to the deepest zone it serves, but
//! a DS record lives in the parent; [`Split`] answers DS queries from
//! the root zone alone, as a real name server does at a zone cut.

use hickory_proto::dnssec::crypto::Ed25519SigningKey;
use hickory_proto::dnssec::rdata::{DNSSECRData, DNSKEY};
use hickory_proto::dnssec::{DnssecSigner, SigningKey};
use hickory_proto::rr::rdata::{tlsa, A, MX, NS, SOA, TLSA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_server::dnssec::NxProofKind;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

pub const INSECURE: &str = "insecure.test";

fn name(s: &str) -> Name {
    if s == "." {
        return Name::root();
    }
    Name::from_str(&format!("{}.", s.trim_end_matches('.'))).expect("test name")
}

type Records = BTreeMap<RrKey, RecordSet>;

fn add(records: &mut Records, owner: &str, data: RData) {
    let n = name(owner);
    let key = RrKey::new(LowerName::from(n.clone()), data.record_type());
    let set = records.entry(key).or_insert_with(|| RecordSet::new(n.clone(), data.record_type(), 0));
    set.insert(Record::from_rdata(n, 60, data), 0);
}

fn soa(records: &mut Records, origin: &str) {
    let ns = if origin == "." { "ns.root-servers.test".to_string() } else { format!("ns.{origin}") };
    let data = SOA::new(name(&ns), name(&format!("hostmaster.{ns}")), 1, 3600, 600, 86400, 60);
    add(records, origin, RData::SOA(data));
    add(records, origin, RData::NS(NS(name(&ns))));
}

/// The records of the signed root and of the unsigned child, built by the test.
pub struct World {
    root: Records,
    child: Records,
    tampered: Vec<(String, RData)>,
}

impl World {
    pub fn new() -> World {
        let (mut root, mut child) = (Records::new(), Records::new());
        soa(&mut root, ".");
        add(&mut root, "ns.root-servers.test", RData::A(A(Ipv4Addr::LOCALHOST)));
        soa(&mut child, INSECURE);
        add(&mut child, &format!("ns.{INSECURE}"), RData::A(A(Ipv4Addr::LOCALHOST)));
        // the delegation: NS without DS
        add(&mut root, INSECURE, RData::NS(NS(name(&format!("ns.{INSECURE}")))));
        World { root, child, tampered: Vec::new() }
    }

    fn zone(&mut self, owner: &str) -> &mut Records {
        match name(INSECURE).zone_of(&name(owner)) {
            true => &mut self.child,
            false => &mut self.root,
        }
    }

    pub fn mx(&mut self, domain: &str, pref: u16, host: &str) -> &mut World {
        add(self.zone(domain), domain, RData::MX(MX::new(pref, name(host))));
        self
    }

    pub fn a(&mut self, host: &str, ip: Ipv4Addr) -> &mut World {
        add(self.zone(host), host, RData::A(A(ip)));
        self
    }

    /// `_<port>._tcp.<host> TLSA usage selector matching data`.
    pub fn tlsa(&mut self, host: &str, port: u16, usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> &mut World {
        let owner = format!("_{port}._tcp.{host}");
        let t = TLSA::new(tlsa::CertUsage::from(usage), selector.into(), matching.into(), data);
        add(self.zone(&owner), &owner, RData::TLSA(t));
        self
    }

    /// After signing, `owner`'s RRset of this type holds `data` instead,
    /// under the signatures made for the old data.
    pub fn tamper(&mut self, owner: &str, data: RData) -> &mut World {
        self.tampered.push((owner.to_string(), data));
        self
    }

    /// Sign the root, start the server, and write the trust anchor file
    /// (the root's DNSKEY) into `dir`.
    pub async fn serve(self, dir: &Path) -> SignedDns {
        let pkcs8 = Ed25519SigningKey::generate_pkcs8().expect("key");
        let key = Ed25519SigningKey::from_pkcs8(&pkcs8).expect("key");
        let dnskey = DNSKEY::from_key(&key.to_public_key().expect("public key"));
        let anchor_record = Record::from_rdata(Name::root(), 3600, RData::DNSSEC(DNSSECRData::DNSKEY(dnskey.clone())));
        let anchor = dir.join("anchor.keys");
        std::fs::write(&anchor, format!("{anchor_record}\n")).expect("anchor file");

        let mut root = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            Name::root(),
            self.root,
            ZoneType::Primary,
            AxfrPolicy::Deny,
            Some(NxProofKind::Nsec),
        )
        .expect("root zone");
        let signer = DnssecSigner::new(dnskey, Box::new(key), Name::root(), Duration::from_secs(86_400));
        root.add_zone_signing_key_mut(signer).expect("signing key");
        root.secure_zone_mut().expect("sign");
        for (owner, data) in self.tampered {
            let key = RrKey::new(LowerName::from(name(&owner)), data.record_type());
            let records = root.records_get_mut();
            let old = records.get(&key).expect("tampered record exists").clone();
            let mut set = RecordSet::new(name(&owner), data.record_type(), 0);
            set.insert(Record::from_rdata(name(&owner), 60, data), 0);
            for sig in old.rrsigs() {
                set.insert_rrsig(sig.clone());
            }
            records.insert(key, Arc::new(set));
        }
        let child = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            name(INSECURE),
            self.child,
            ZoneType::Primary,
            AxfrPolicy::Deny,
            None,
        )
        .expect("child zone");

        let root: Arc<dyn ZoneHandler> = Arc::new(root);
        let mut all = Catalog::new();
        all.upsert(LowerName::from(Name::root()), vec![root.clone()]);
        all.upsert(LowerName::from(name(INSECURE)), vec![Arc::new(child) as Arc<dyn ZoneHandler>]);
        let mut parents = Catalog::new();
        parents.upsert(LowerName::from(Name::root()), vec![root]);

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
        let mut server = Server::new(Split { all, parents });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 16);
        SignedDns { addr, anchor, _server: server }
    }
}

/// A running signed DNS server; dropping it stops it.
pub struct SignedDns {
    pub addr: SocketAddr,
    /// The trust anchor file (the root's DNSKEY).
    pub anchor: PathBuf,
    _server: Server<Split>,
}

/// DS queries to the parent zones, everything else to the deepest zone.
pub struct Split {
    all: Catalog,
    parents: Catalog,
}

#[async_trait::async_trait]
impl RequestHandler for Split {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let ds = request.request_info().is_ok_and(|i| i.query.query_type() == RecordType::DS);
        match ds {
            true => self.parents.handle_request::<R, T>(request, response_handle).await,
            false => self.all.handle_request::<R, T>(request, response_handle).await,
        }
    }
}
