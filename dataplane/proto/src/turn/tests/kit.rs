//! Test fixtures: a fake [`RelayIo`], a TURN client that builds requests with the
//! [`crate::stun`] writer, and a harness with a virtual clock.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::stun::{
    long_term_key, userhash, verify_fingerprint, verify_message_integrity,
    verify_message_integrity_sha256, Attribute, AttributeType, Class, KeyAlgorithm, LongTermKey,
    Message, MessageType, MessageWriter, Method, PasswordAlgorithm, PasswordAlgorithms,
    TransactionId, ALGORITHM_SHA256, TRANSPORT_UDP,
};
use crate::turn::{
    BindError, BoundRelay, ClientAction, ClockAnchor, FiveTuple, IpNet, PeerAction, PortRequest,
    RelayIo, Transport, TurnConfig, TurnEvent, TurnServer,
};

pub const REALM: &str = "dvl-ckl2.net";
pub const USER: &str = "turn342823";
pub const PASS: &str = "ip411";
pub const SECRET: &[u8] = b"rest-secret";
/// 2023-11-14T22:13:20Z.
pub const UNIX0: u64 = 1_700_000_000;

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn config() -> TurnConfig {
    let mut c = TurnConfig::new(REALM);
    c.relay_v4 = Some("172.31.31.2".parse().unwrap());
    c.allowed_peers = vec![
        "172.31.31.0/24".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    c.own_addresses = vec![ip("172.31.31.2"), ip("172.31.31.3")];
    c.users = vec![(USER.to_string(), PASS.to_string())];
    c.rest_secrets = vec![b"current-secret".to_vec(), SECRET.to_vec()];
    c
}

/// A relay port allocator over a set; checks that the server never releases what it
/// does not hold.
#[derive(Debug, Default)]
pub struct FakeIo {
    pub bound: HashSet<SocketAddr>,
    pub held: HashSet<SocketAddr>,
    pub released: Vec<SocketAddr>,
    pub fail: bool,
    pub fail_v6: bool,
    next: u16,
}

impl FakeIo {
    fn free(&self, a: SocketAddr) -> bool {
        !self.bound.contains(&a) && !self.held.contains(&a)
    }
}

impl RelayIo for FakeIo {
    fn bind(&mut self, ip: IpAddr, request: PortRequest) -> Result<BoundRelay, BindError> {
        if self.fail || (self.fail_v6 && ip.is_ipv6()) {
            return Err(BindError::NoFreePort);
        }
        if let PortRequest::Reserved(addr) = request {
            if !self.held.remove(&addr) {
                return Err(BindError::NotReserved);
            }
            self.bound.insert(addr);
            return Ok(BoundRelay {
                addr,
                reserved_next: None,
            });
        }
        for _ in 0..16384 {
            let port = 49152 + (self.next % 16383);
            self.next = self.next.wrapping_add(1);
            let addr = SocketAddr::new(ip, port);
            let next = SocketAddr::new(ip, port + 1);
            match request {
                PortRequest::Any if self.free(addr) => {
                    self.bound.insert(addr);
                    return Ok(BoundRelay {
                        addr,
                        reserved_next: None,
                    });
                }
                PortRequest::Even { reserve_next } if port & 1 == 0 && self.free(addr) => {
                    if reserve_next {
                        if !self.free(next) {
                            continue;
                        }
                        self.held.insert(next);
                    }
                    self.bound.insert(addr);
                    return Ok(BoundRelay {
                        addr,
                        reserved_next: reserve_next.then_some(next),
                    });
                }
                _ => {}
            }
        }
        Err(BindError::NoFreePort)
    }

    fn release(&mut self, relay: SocketAddr) {
        assert!(
            self.bound.remove(&relay) || self.held.remove(&relay),
            "released {relay} which is not held"
        );
        self.released.push(relay);
    }
}

/// How a client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// USERNAME, MD5 key, MESSAGE-INTEGRITY (every deployed client).
    Classic,
    /// USERNAME, PASSWORD-ALGORITHM SHA-256, MESSAGE-INTEGRITY-SHA256.
    Sha256,
    /// USERHASH, PASSWORD-ALGORITHM SHA-256, MESSAGE-INTEGRITY-SHA256.
    UserHash,
    /// USERNAME, MD5 key, MESSAGE-INTEGRITY-SHA256.
    Md5KeySha256Mac,
}

/// The harness: a server, its fake relay sockets and a virtual clock.
pub struct Harness {
    pub server: TurnServer,
    pub io: FakeIo,
    pub now: Instant,
    pub out: Vec<u8>,
    pub events: Vec<TurnEvent>,
}

impl Harness {
    pub fn new(config: TurnConfig) -> Harness {
        let t0 = Instant::now();
        Harness {
            server: TurnServer::new(
                config,
                [7; 32],
                ClockAnchor {
                    instant: t0,
                    unix_secs: UNIX0,
                },
            ),
            io: FakeIo::default(),
            now: t0,
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    pub fn client(&mut self, packet: &[u8], five: FiveTuple) -> ClientAction {
        self.server
            .handle_client(self.now, five, packet, &mut self.io, &mut self.out)
    }

    pub fn peer(&mut self, relay: SocketAddr, peer: SocketAddr, payload: &[u8]) -> PeerAction {
        self.server
            .handle_peer(self.now, relay, peer, payload, &mut self.out)
    }

    pub fn tick(&mut self) {
        self.server
            .on_tick(self.now, &mut self.io, &mut self.events);
    }

    /// Ticks at every deadline up to `now`, as the I/O layer's timer would.
    pub fn run_timers(&mut self) {
        while let Some(d) = self.server.next_deadline() {
            if d > self.now {
                break;
            }
            self.server.on_tick(d, &mut self.io, &mut self.events);
        }
        self.tick();
    }
}

/// A simulated TURN client.
pub struct Client {
    pub five: FiveTuple,
    pub user: String,
    pub password: String,
    pub mode: AuthMode,
    pub fingerprint: bool,
    pub nonce: Option<String>,
    counter: u32,
    seed: u8,
}

pub fn five(client: &str) -> FiveTuple {
    FiveTuple {
        client: sa(client),
        server_local: sa("172.31.31.2:3478"),
        transport: Transport::Udp,
    }
}

/// A decoded response, owning its bytes.
#[derive(Debug, Clone)]
pub struct Response {
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn msg(&self) -> Message<&[u8]> {
        Message::new_checked(&self.bytes[..]).unwrap()
    }

    pub fn class(&self) -> Class {
        self.msg().class()
    }

    pub fn is_success(&self) -> bool {
        self.class() == Class::SuccessResponse
    }

    pub fn code(&self) -> Option<u16> {
        match self.msg().decode(AttributeType::ERROR_CODE) {
            Some(Ok(Attribute::ErrorCode(e))) => Some(e.code),
            _ => None,
        }
    }

    pub fn has(&self, typ: AttributeType) -> bool {
        self.msg().attribute(typ).is_some()
    }

    pub fn relayed(&self) -> Vec<SocketAddr> {
        let msg = self.msg();
        let txid = msg.transaction_id();
        msg.attributes()
            .filter(|a| a.attribute_type() == AttributeType::XOR_RELAYED_ADDRESS)
            .map(|a| match Attribute::parse(&a, &txid).unwrap() {
                Attribute::XorRelayedAddress(s) => s,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    pub fn lifetime(&self) -> Option<u32> {
        match self.msg().decode(AttributeType::LIFETIME) {
            Some(Ok(Attribute::Lifetime(l))) => Some(l),
            _ => None,
        }
    }

    pub fn mapped(&self) -> Option<SocketAddr> {
        match self.msg().decode(AttributeType::XOR_MAPPED_ADDRESS) {
            Some(Ok(Attribute::XorMappedAddress(a))) => Some(a),
            _ => None,
        }
    }

    pub fn token(&self) -> Option<[u8; 8]> {
        match self.msg().decode(AttributeType::RESERVATION_TOKEN) {
            Some(Ok(Attribute::ReservationToken(t))) => Some(t),
            _ => None,
        }
    }

    pub fn nonce(&self) -> Option<String> {
        match self.msg().decode(AttributeType::NONCE) {
            Some(Ok(Attribute::Nonce(n))) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn address_error(&self) -> Option<u16> {
        match self.msg().decode(AttributeType::ADDRESS_ERROR_CODE) {
            Some(Ok(Attribute::AddressErrorCode { error, .. })) => Some(error.code),
            _ => None,
        }
    }
}

impl Client {
    pub fn new(addr: &str, seed: u8) -> Client {
        Client {
            five: five(addr),
            user: USER.to_string(),
            password: PASS.to_string(),
            mode: AuthMode::Classic,
            fingerprint: false,
            nonce: None,
            counter: 0,
            seed,
        }
    }

    pub fn rest(addr: &str, seed: u8, expiry: u64, secret: &[u8]) -> Client {
        let mut c = Client::new(addr, seed);
        c.user = crate::stun::rest_username(expiry, "alice");
        c.password = crate::stun::rest_password(secret, &c.user);
        c
    }

    pub fn next_txid(&mut self) -> TransactionId {
        self.counter += 1;
        let mut id = [self.seed; 12];
        id[..4].copy_from_slice(&self.counter.to_be_bytes());
        TransactionId::new(id)
    }

    pub fn key(&self) -> LongTermKey {
        let alg = match self.mode {
            AuthMode::Classic | AuthMode::Md5KeySha256Mac => KeyAlgorithm::Md5,
            AuthMode::Sha256 | AuthMode::UserHash => KeyAlgorithm::Sha256,
        };
        long_term_key(alg, &self.user, REALM, &self.password)
    }

    /// A request with `attrs`, credentials when a nonce is known, integrity and
    /// fingerprint as configured.
    pub fn build(&self, method: Method, txid: TransactionId, attrs: &[Attribute<'_>]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::new(method, Class::Request), txid);
        for a in attrs {
            w.add(a).unwrap();
        }
        if let Some(nonce) = &self.nonce {
            match self.mode {
                AuthMode::UserHash => {
                    w.add(&Attribute::UserHash(&userhash(&self.user, REALM)))
                        .unwrap();
                }
                _ => w.add(&Attribute::Username(&self.user)).unwrap(),
            }
            w.add(&Attribute::Realm(REALM)).unwrap();
            w.add(&Attribute::Nonce(nonce)).unwrap();
            if matches!(self.mode, AuthMode::Sha256 | AuthMode::UserHash) {
                w.add(&Attribute::PasswordAlgorithms(
                    PasswordAlgorithms::SHA256_MD5,
                ))
                .unwrap();
                w.add(&Attribute::PasswordAlgorithm(PasswordAlgorithm {
                    algorithm: ALGORITHM_SHA256,
                    params: &[],
                }))
                .unwrap();
            }
            let key = self.key();
            match self.mode {
                AuthMode::Classic => w.add_message_integrity(key.as_bytes()).unwrap(),
                _ => w.add_message_integrity_sha256(key.as_bytes()).unwrap(),
            }
        }
        if self.fingerprint {
            w.add_fingerprint().unwrap();
        }
        buf
    }

    /// Sends a request; on 401 or 438 with a NONCE, learns it and retries once. Checks
    /// the response's integrity and fingerprint.
    pub fn call(&mut self, h: &mut Harness, method: Method, attrs: &[Attribute<'_>]) -> Response {
        let mut resp = self.call_once(h, method, attrs);
        if matches!(resp.code(), Some(401 | 438)) {
            if let Some(n) = resp.nonce() {
                self.nonce = Some(n);
                resp = self.call_once(h, method, attrs);
            }
        }
        resp
    }

    pub fn call_once(
        &mut self,
        h: &mut Harness,
        method: Method,
        attrs: &[Attribute<'_>],
    ) -> Response {
        let txid = self.next_txid();
        let req = self.build(method, txid, attrs);
        self.send(h, &req)
    }

    pub fn send(&mut self, h: &mut Harness, req: &[u8]) -> Response {
        let action = h.client(req, self.five);
        assert_eq!(action, ClientAction::Reply, "no reply to {req:02x?}");
        let resp = Response {
            bytes: h.out.clone(),
        };
        let msg = resp.msg();
        assert_eq!(
            msg.transaction_id(),
            Message::new_checked(req).unwrap().transaction_id()
        );
        let had_fp = Message::new_checked(req)
            .unwrap()
            .attribute(AttributeType::FINGERPRINT)
            .is_some();
        assert_eq!(msg.attribute(AttributeType::FINGERPRINT).is_some(), had_fp);
        if had_fp {
            assert!(verify_fingerprint(&msg));
        }
        // Responses to authenticated requests carry the same kind of integrity.
        let code = resp.code();
        if !matches!(code, Some(400 | 401 | 438)) && self.nonce.is_some() {
            let key = self.key();
            match self.mode {
                AuthMode::Classic => {
                    assert!(verify_message_integrity(&msg, key.as_bytes()), "{code:?}");
                    assert!(!resp.has(AttributeType::MESSAGE_INTEGRITY_SHA256));
                }
                _ => {
                    assert!(verify_message_integrity_sha256(&msg, key.as_bytes()));
                    assert!(!resp.has(AttributeType::MESSAGE_INTEGRITY));
                }
            }
        }
        resp
    }

    pub fn allocate(&mut self, h: &mut Harness, extra: &[Attribute<'_>]) -> Response {
        let mut attrs = vec![Attribute::RequestedTransport(TRANSPORT_UDP)];
        attrs.extend_from_slice(extra);
        self.call(h, Method::ALLOCATE, &attrs)
    }

    pub fn permit(&mut self, h: &mut Harness, peers: &[SocketAddr]) -> Response {
        let attrs: Vec<Attribute<'_>> = peers
            .iter()
            .map(|p| Attribute::XorPeerAddress(*p))
            .collect();
        self.call(h, Method::CREATE_PERMISSION, &attrs)
    }

    pub fn bind(&mut self, h: &mut Harness, channel: u16, peer: SocketAddr) -> Response {
        self.call(
            h,
            Method::CHANNEL_BIND,
            &[
                Attribute::ChannelNumber(channel),
                Attribute::XorPeerAddress(peer),
            ],
        )
    }

    pub fn refresh(&mut self, h: &mut Harness, lifetime: Option<u32>) -> Response {
        let attrs: Vec<Attribute<'_>> = lifetime.map(Attribute::Lifetime).into_iter().collect();
        self.call(h, Method::REFRESH, &attrs)
    }

    /// A Send indication.
    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8], df: bool) -> Vec<u8> {
        let txid = self.next_txid();
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(Method::SEND, Class::Indication),
            txid,
        );
        w.add(&Attribute::XorPeerAddress(peer)).unwrap();
        if df {
            w.add(&Attribute::DontFragment).unwrap();
        }
        w.add(&Attribute::Data(data)).unwrap();
        buf
    }
}

/// A Binding request.
pub fn binding_request(txid: u8, fingerprint: bool, extra: &[Attribute<'_>]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId::new([txid; 12]),
    );
    for a in extra {
        w.add(a).unwrap();
    }
    if fingerprint {
        w.add_fingerprint().unwrap();
    }
    buf
}

/// Decodes a Data indication: (peer, data).
pub fn data_indication(bytes: &[u8]) -> (SocketAddr, Vec<u8>) {
    let msg = Message::new_checked(bytes).unwrap();
    assert_eq!(msg.method(), Method::DATA);
    assert_eq!(msg.class(), Class::Indication);
    let Some(Ok(Attribute::XorPeerAddress(peer))) = msg.decode(AttributeType::XOR_PEER_ADDRESS)
    else {
        panic!("no XOR-PEER-ADDRESS");
    };
    let Some(Ok(Attribute::Data(data))) = msg.decode(AttributeType::DATA) else {
        panic!("no DATA");
    };
    (peer, data.to_vec())
}

pub fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}
