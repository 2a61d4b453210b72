//! STUN/TURN end to end (issue 6, "How it is checked", end-to-end part): the real
//! binary on loopback, driven by coturn's real clients (`turnutils_stunclient`,
//! `turnutils_uclient` with `turnutils_peer`; Debian package `coturn`, whose
//! `turnserver` is never started), by a second client from another codebase (PyPI
//! `aioice`, `tests/turn/aioice_relay.py`), and by a hand-made STUN client built on
//! `portico_proto::stun` where the point is a request no real client sends (an
//! IPv4-mapped or `0.0.0.0` XOR-PEER-ADDRESS).
//!
//! Every peer is on 127.0.0.1 (or its IPv4-mapped form): no test ever names another
//! address, not even one the server is expected to refuse. Each test has its own
//! portico, listen ports, relay port range and peers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use portico_proto::stun::{
    long_term_key, Attribute, AttributeType, Class, KeyAlgorithm, Message, MessageType,
    MessageWriter, Method, TransactionId, TRANSPORT_UDP,
};
use portico_tests::binary::Portico;
use portico_tests::ops;
use portico_tests::pki::Ca;
use portico_tests::turn::{
    aioice_script, python, stunclient, uclient, TurnPeer, TurnSite, UclientReport, UdpEcho,
    PASSWORD, SECRET, USER,
};
use portico_tests::Scratch;
use prometheus_parse::{Scrape, Value};

const UCLIENT_LIMIT: Duration = Duration::from_secs(60);
/// Payload size of every uclient run (`-l`).
const LEN: u64 = 170;

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// A started portico with its config, scratch dir and an echoing `turnutils_peer`.
struct Turn {
    site: TurnSite,
    peer: TurnPeer,
    portico: Portico,
    /// Kept for the certificate files and the config.
    _scratch: Scratch,
}

impl Turn {
    fn start(site: TurnSite) -> Turn {
        let scratch = Scratch::new();
        Turn::start_in(site, scratch)
    }

    fn start_in(site: TurnSite, scratch: Scratch) -> Turn {
        let peer = TurnPeer::start();
        let portico = site.start(&scratch);
        Turn {
            site,
            peer,
            portico,
            _scratch: scratch,
        }
    }

    /// `turnutils_uclient -v -p <port> -e 127.0.0.1 -r <peer> -n <n> -m <m> -l 170
    /// <extra> 127.0.0.1` with the static user unless `extra` brings credentials.
    fn uclient(&self, n: u64, m: u64, extra: &[&str]) -> (Option<i32>, UclientReport) {
        let port = self.site.port.to_string();
        self.uclient_at(&port, n, m, extra)
    }

    fn uclient_at(
        &self,
        port: &str,
        n: u64,
        m: u64,
        extra: &[&str],
    ) -> (Option<i32>, UclientReport) {
        let (peer, n_s, m_s, l) = (
            self.peer.port.to_string(),
            n.to_string(),
            m.to_string(),
            LEN.to_string(),
        );
        let mut args: Vec<&str> = vec!["-p", port, "-e", "127.0.0.1", "-r", &peer];
        args.extend(["-n", &n_s, "-m", &m_s, "-l", &l]);
        let has_credentials = extra.iter().any(|a| matches!(*a, "-u" | "-w" | "-W"));
        if !has_credentials {
            args.extend(["-u", USER, "-w", PASSWORD]);
        }
        args.extend(extra);
        let run = uclient(&args, UCLIENT_LIMIT);
        let mut text = run.stdout_text();
        text.push_str(&run.stderr);
        assert!(
            run.status.is_some(),
            "turnutils_uclient {args:?} did not finish within {UCLIENT_LIMIT:?}:\n{text}"
        );
        (run.code(), UclientReport::parse(&text))
    }

    /// Runs uclient and asserts that it relayed every message with 0 % loss.
    fn relay_ok(&self, n: u64, m: u64, extra: &[&str]) -> UclientReport {
        let (code, report) = self.uclient(n, m, extra);
        assert_eq!(
            code,
            Some(0),
            "turnutils_uclient {extra:?} failed:\n{}",
            report.text
        );
        assert_zero_loss(&report, n, m, extra);
        report
    }

    fn metrics(&self) -> Metrics {
        Metrics::parse(ops::scrape(self.site.metrics_port))
    }

    /// Polls `/metrics` (shards report every second) until `ok` holds, up to 5 s;
    /// returns the last scrape either way.
    fn metrics_until(&self, ok: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let m = self.metrics();
            if ok(&m) || Instant::now() >= deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `Total lost packets 0 (0%)`, and all `n` messages of every session sent and back.
fn assert_zero_loss(report: &UclientReport, n: u64, m: u64, flags: &[&str]) {
    let (lost, pct) = report.lost.unwrap_or_else(|| {
        panic!(
            "no `Total lost packets` line from uclient {flags:?}:\n{}",
            report.text
        )
    });
    assert_eq!(lost, 0, "uclient {flags:?} lost packets:\n{}", report.text);
    assert!(
        pct == 0.0,
        "uclient {flags:?} lost {pct}% of packets:\n{}",
        report.text
    );
    let sessions = report
        .sessions
        .unwrap_or_else(|| panic!("no `msz=` from uclient {flags:?}:\n{}", report.text));
    assert!(
        sessions >= m,
        "uclient {flags:?} ran {sessions} sessions, fewer than -m {m}:\n{}",
        report.text
    );
    let messages = n * sessions;
    assert_eq!(
        report.totals,
        Some((messages, messages)),
        "uclient {flags:?}: every one of the {messages} messages sent must come back \
         (tot_send_msgs, tot_recv_msgs):\n{}",
        report.text
    );
}

/// The TURN REST password for `username`: base64(HMAC-SHA1(secret, username)), computed
/// here with ring, independently of portico's own helper.
fn rest_password(secret: &str, username: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A parsed `/metrics` scrape.
struct Metrics {
    scrape: Scrape,
    text: String,
}

impl Metrics {
    fn parse(text: String) -> Metrics {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("prometheus-parse reads the exposition");
        Metrics { scrape, text }
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .and_then(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// Every `portico_turn_*` sample line, for failure messages.
    fn turn_lines(&self) -> String {
        self.text
            .lines()
            .filter(|l| l.starts_with("portico_turn_"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

// ---------------------------------------------------------------------------------
// A minimal STUN/TURN client over UDP, on portico_proto::stun
// ---------------------------------------------------------------------------------

/// The long-term credentials learnt from a 401.
struct Auth {
    realm: String,
    nonce: String,
    key: Vec<u8>,
}

/// What came back for one request.
#[derive(Debug)]
struct Answer {
    class: Class,
    error: Option<u16>,
    relayed: Option<SocketAddr>,
}

impl Answer {
    fn is_success(&self) -> bool {
        self.class == Class::SuccessResponse
    }
}

struct StunClient {
    socket: UdpSocket,
    user: String,
    password: String,
    auth: Option<Auth>,
    next: u64,
}

impl StunClient {
    fn connect(server_port: u16, user: &str, password: &str) -> StunClient {
        StunClient::connect_from("127.0.0.1", server_port, user, password)
    }

    /// From a chosen loopback source address (the server steers clients to shards by
    /// their IP address).
    fn connect_from(source: &str, server_port: u16, user: &str, password: &str) -> StunClient {
        let socket = UdpSocket::bind((source, 0)).expect("bind the STUN client socket");
        socket
            .connect(("127.0.0.1", server_port))
            .expect("connect the STUN client socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("set_read_timeout");
        StunClient {
            socket,
            user: user.to_string(),
            password: password.to_string(),
            auth: None,
            next: 0,
        }
    }

    fn transaction_id(&mut self) -> TransactionId {
        self.next += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&self.next.to_be_bytes());
        bytes[8..].copy_from_slice(&(nanos ^ std::process::id()).to_be_bytes());
        TransactionId::new(bytes)
    }

    /// One request, authenticated once a 401 has taught realm and nonce; a 438 (stale
    /// nonce) is retried with the new nonce. A 401 to an authenticated request is the
    /// answer.
    fn request(&mut self, method: Method, attrs: &[Attribute<'_>]) -> Answer {
        for _ in 0..3 {
            let authenticated = self.auth.is_some();
            let (answer, realm, nonce) = self.exchange(method, attrs);
            let retry = match answer.error {
                Some(401) => !authenticated,
                Some(438) => true,
                _ => false,
            };
            let (Some(realm), Some(nonce), true) = (realm, nonce, retry) else {
                return answer;
            };
            let key = long_term_key(KeyAlgorithm::Md5, &self.user, &realm, &self.password);
            self.auth = Some(Auth {
                realm,
                nonce,
                key: key.as_bytes().to_vec(),
            });
        }
        panic!("{method:?}: still challenged after three attempts");
    }

    /// Sends the request (retransmitted every 500 ms, 6 times at most) and reads the
    /// answer with the same transaction ID: the answer, its REALM and NONCE.
    fn exchange(
        &mut self,
        method: Method,
        attrs: &[Attribute<'_>],
    ) -> (Answer, Option<String>, Option<String>) {
        let txid = self.transaction_id();
        let mut buf = Vec::with_capacity(512);
        let mut w = MessageWriter::new(&mut buf, MessageType::new(method, Class::Request), txid);
        for a in attrs {
            w.add(a).expect("write attribute");
        }
        if let Some(auth) = &self.auth {
            w.add(&Attribute::Username(&self.user)).expect("USERNAME");
            w.add(&Attribute::Realm(&auth.realm)).expect("REALM");
            w.add(&Attribute::Nonce(&auth.nonce)).expect("NONCE");
            w.add_message_integrity(&auth.key)
                .expect("MESSAGE-INTEGRITY");
        }
        w.add_fingerprint().expect("FINGERPRINT");
        let request = w.finish().to_vec();
        let mut reply = vec![0u8; 2048];
        for _ in 0..6 {
            self.socket.send(&request).expect("send the STUN request");
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                let Ok(n) = self.socket.recv(&mut reply) else {
                    break;
                };
                let Ok(msg) = Message::new_checked(&reply[..n]) else {
                    continue;
                };
                if msg.transaction_id() != txid {
                    continue;
                }
                let text = |typ| match msg.decode(typ) {
                    Some(Ok(Attribute::Realm(s))) | Some(Ok(Attribute::Nonce(s))) => {
                        Some(s.to_string())
                    }
                    _ => None,
                };
                let error = match msg.decode(AttributeType::ERROR_CODE) {
                    Some(Ok(Attribute::ErrorCode(e))) => Some(e.code),
                    _ => None,
                };
                let relayed = match msg.decode(AttributeType::XOR_RELAYED_ADDRESS) {
                    Some(Ok(Attribute::XorRelayedAddress(a))) => Some(a),
                    _ => None,
                };
                let answer = Answer {
                    class: msg.class(),
                    error,
                    relayed,
                };
                return (
                    answer,
                    text(AttributeType::REALM),
                    text(AttributeType::NONCE),
                );
            }
        }
        panic!("{method:?}: no answer from 127.0.0.1 after 6 transmissions");
    }

    /// Allocate (UDP relay), asserting success; the relayed address.
    fn allocate(&mut self) -> SocketAddr {
        let answer = self.request(
            Method::ALLOCATE,
            &[Attribute::RequestedTransport(TRANSPORT_UDP)],
        );
        assert!(answer.is_success(), "Allocate failed: {answer:?}");
        answer
            .relayed
            .expect("an Allocate success carries XOR-RELAYED-ADDRESS")
    }

    fn create_permission(&mut self, peer: SocketAddr) -> Answer {
        self.request(
            Method::CREATE_PERMISSION,
            &[Attribute::XorPeerAddress(peer)],
        )
    }

    /// A Send indication (no answer comes back to it).
    fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let txid = self.transaction_id();
        let mut buf = Vec::with_capacity(512);
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(Method::SEND, Class::Indication),
            txid,
        );
        w.add(&Attribute::XorPeerAddress(peer))
            .expect("XOR-PEER-ADDRESS");
        w.add(&Attribute::Data(data)).expect("DATA");
        w.add_fingerprint().expect("FINGERPRINT");
        let message = w.finish().to_vec();
        self.socket
            .send(&message)
            .expect("send the Send indication");
    }

    fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Answer {
        self.request(
            Method::CHANNEL_BIND,
            &[
                Attribute::ChannelNumber(channel),
                Attribute::XorPeerAddress(peer),
            ],
        )
    }
}

fn mapped_loopback(port: u16) -> SocketAddr {
    let ip: Ipv6Addr = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
    SocketAddr::new(IpAddr::V6(ip), port)
}

fn v4(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

// ---------------------------------------------------------------------------------
// 1. STUN Binding
// ---------------------------------------------------------------------------------

#[test]
fn stunclient_gets_the_mapped_address() {
    let site = TurnSite::new(21000);
    let scratch = Scratch::new();
    let _portico = site.start(&scratch);
    let run = stunclient(site.port);
    let text = format!("{}{}", run.stdout_text(), run.stderr);
    assert_eq!(run.code(), Some(0), "turnutils_stunclient failed:\n{text}");
    let mapped: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .map(str::trim)
        .collect();
    assert!(!mapped.is_empty(), "no reflexive address printed:\n{text}");
    for addr in mapped {
        let (ip, port) = addr
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("not ip:port: {addr:?}"));
        assert_eq!(ip, "127.0.0.1", "the mapped address of a loopback client");
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("the mapped port {port:?} is not a port number"));
        assert_ne!(port, 0, "mapped port 0");
    }
}

// ---------------------------------------------------------------------------------
// 2. Relaying with turnutils_uclient and turnutils_peer
// ---------------------------------------------------------------------------------

#[test]
fn uclient_relays_over_udp_with_channels() {
    let turn = Turn::start(TurnSite::new(21200));
    let report = turn.relay_ok(50, 4, &[]);
    assert!(
        report.channel_binds > 0,
        "the default mode binds channels:\n{}",
        report.text
    );
}

#[test]
fn uclient_relays_over_tcp() {
    let turn = Turn::start(TurnSite::new(21400));
    let report = turn.relay_ok(50, 4, &["-t"]);
    assert!(report.channel_binds > 0, "{}", report.text);
    // Send indications over TCP too.
    let report = turn.relay_ok(30, 2, &["-t", "-s"]);
    assert_eq!(report.channel_binds, 0, "{}", report.text);
    assert!(report.create_perms > 0, "{}", report.text);
}

#[test]
fn uclient_relays_with_send_indications() {
    let turn = Turn::start(TurnSite::new(21600));
    let report = turn.relay_ok(50, 4, &["-s"]);
    assert_eq!(
        report.channel_binds, 0,
        "-s must not bind channels:\n{}",
        report.text
    );
    assert!(
        report.create_perms > 0,
        "-s creates permissions:\n{}",
        report.text
    );
}

#[test]
fn uclient_relays_with_dont_fragment() {
    let turn = Turn::start(TurnSite::new(21800));
    turn.relay_ok(50, 4, &["-g"]);
    turn.relay_ok(30, 2, &["-g", "-s"]);
}

#[test]
fn uclient_relays_on_even_port_pairs() {
    // Without -c, each RTP allocation asks for EVEN-PORT with the R bit and the RTCP
    // one takes the next port with the RESERVATION-TOKEN it got.
    let turn = Turn::start(TurnSite::new(22000));
    let report = turn.relay_ok(50, 4, &[]);
    let reserved: Vec<SocketAddr> = report
        .reservations
        .iter()
        .filter(|(_, token)| *token != 0)
        .map(|(relay, _)| *relay)
        .collect();
    assert!(
        !reserved.is_empty(),
        "no allocation got a RESERVATION-TOKEN:\n{}",
        report.text
    );
    for relay in reserved {
        assert_eq!(
            relay.port() % 2,
            0,
            "an EVEN-PORT allocation got odd port {relay}:\n{}",
            report.text
        );
        let next = SocketAddr::new(relay.ip(), relay.port() + 1);
        assert!(
            report.relays.contains(&next),
            "the reserved port {next} (after {relay}) was not handed to the RTCP \
             allocation:\n{}",
            report.text
        );
    }
}

#[test]
fn uclient_relays_without_rtcp() {
    let turn = Turn::start(TurnSite::new(22200));
    let report = turn.relay_ok(50, 4, &["-c"]);
    assert!(
        report.reservations.iter().all(|(_, token)| *token == 0),
        "-c asks for no reservation:\n{}",
        report.text
    );
    assert!(!report.relays.is_empty(), "{}", report.text);
}

// ---------------------------------------------------------------------------------
// 3. TLS
// ---------------------------------------------------------------------------------

/// A TURN site with `listen_tls` and a certificate for 127.0.0.1 signed by a test CA;
/// returns the CA file too.
fn tls_site(relay_first: u16, scratch: &Scratch) -> (TurnSite, std::path::PathBuf) {
    let ca = Ca::new("portico-tests TURN CA");
    let ca_pem = scratch.write("turn-ca.pem", ca.pem());
    let leaf = ca.issue("portico turn", &["127.0.0.1", "localhost"]);
    let (cert, key) = leaf.write(scratch.path(), "turn");
    let mut site = TurnSite::new(relay_first).with_tls();
    site.certificate = Some((cert, key));
    (site, ca_pem)
}

#[test]
fn uclient_relays_over_tls() {
    let scratch = Scratch::new();
    let (site, _ca_pem) = tls_site(22400, &scratch);
    let tls_port = site.tls_port.expect("listen_tls").to_string();
    let turn = Turn::start_in(site, scratch);
    // uclient does not check the server's certificate (coturn 4.6.1 connects even when
    // `-E` names a CA that did not sign it), so that check is the aioice TLS test's,
    // which verifies the chain against the test CA and the name 127.0.0.1.
    for extra in [&["-t", "-S"][..], &["-t", "-S", "-s"][..]] {
        let (code, report) = turn.uclient_at(&tls_port, 30, 2, extra);
        assert_eq!(
            code,
            Some(0),
            "uclient over TLS {extra:?} failed:\n{}",
            report.text
        );
        assert_zero_loss(&report, 30, 2, extra);
        assert!(
            !report.tls_sessions.is_empty(),
            "no TLS session reported:\n{}",
            report.text
        );
        // uclient picks among TLS_client_method and version-pinned contexts (TLSv1,
        // TLSv1.1, TLSv1.2) at random and retries when one fails: rustls speaks only
        // 1.2 and 1.3, so every session that connected must be one of those.
        for (cipher, method) in &report.tls_sessions {
            assert!(
                method == "TLSv1.2" || method == "TLSv1.3",
                "a TLS session with {method} ({cipher}):\n{}",
                report.text
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// 4. Credentials
// ---------------------------------------------------------------------------------

#[test]
fn wrong_password_fails() {
    let turn = Turn::start(TurnSite::new(22600));
    let (code, report) = turn.uclient(10, 1, &["-u", USER, "-w", "wrong"]);
    assert_ne!(
        code,
        Some(0),
        "a wrong password must not allocate:\n{}",
        report.text
    );
    assert!(
        report.text.contains("Cannot complete Allocation"),
        "uclient should report the failed Allocate:\n{}",
        report.text
    );
    assert!(report.relays.is_empty(), "{}", report.text);
    assert!(report.lost.is_none(), "nothing relayed:\n{}", report.text);
    // An unknown user fails the same way.
    let (code, report) = turn.uclient(10, 1, &["-u", "nobody", "-w", PASSWORD]);
    assert_ne!(code, Some(0), "{}", report.text);
    // The right password still works on the same server afterwards.
    turn.relay_ok(10, 1, &[]);
    let m = turn.metrics_until(|m| {
        m.value(
            "portico_turn_auth_failures_total",
            &[("reason", "bad_integrity")],
        )
        .is_some_and(|v| v >= 1.0)
    });
    assert!(
        m.value(
            "portico_turn_auth_failures_total",
            &[("reason", "bad_integrity")]
        )
        .is_some_and(|v| v >= 1.0),
        "the wrong password is counted as bad_integrity:\n{}",
        m.turn_lines()
    );
}

#[test]
fn rest_credentials_work_and_expire() {
    let turn = Turn::start(TurnSite::new(22800));

    // username = expiry:user, password = base64(HMAC-SHA1(secret, username)).
    let username = format!("{}:alice", unix_now() + 3600);
    let password = rest_password(SECRET, &username);
    turn.relay_ok(30, 2, &["-u", &username, "-w", &password]);

    // uclient computes the same itself from -W (with a one-day expiry).
    turn.relay_ok(30, 2, &["-u", "alice", "-W", SECRET]);
    turn.relay_ok(20, 1, &["-W", SECRET]);

    // The static user still works alongside.
    turn.relay_ok(20, 1, &[]);

    // An expired REST username, correctly signed, fails.
    let expired = format!("{}:alice", unix_now() - 60);
    let password = rest_password(SECRET, &expired);
    let (code, report) = turn.uclient(10, 1, &["-u", &expired, "-w", &password]);
    assert_ne!(
        code,
        Some(0),
        "an expired REST username must not allocate:\n{}",
        report.text
    );
    assert!(
        report.text.contains("Cannot complete Allocation"),
        "{}",
        report.text
    );

    // A valid REST username signed with another secret fails.
    let (code, report) = turn.uclient(10, 1, &["-u", "alice", "-W", "southwind"]);
    assert_ne!(
        code,
        Some(0),
        "a REST password from the wrong secret must not allocate:\n{}",
        report.text
    );

    let m = turn.metrics_until(|m| {
        m.value(
            "portico_turn_auth_failures_total",
            &[("reason", "rest_expired")],
        )
        .is_some_and(|v| v >= 1.0)
    });
    assert!(
        m.value(
            "portico_turn_auth_failures_total",
            &[("reason", "rest_expired")]
        )
        .is_some_and(|v| v >= 1.0),
        "the expired REST username is counted as rest_expired:\n{}",
        m.turn_lines()
    );
}

// ---------------------------------------------------------------------------------
// 5. Peer refusals
// ---------------------------------------------------------------------------------

#[test]
fn peer_outside_allowed_peers_is_refused() {
    let mut site = TurnSite::new(23000);
    site.allowed_peers = vec!["127.0.0.2/32".into()];
    let turn = Turn::start(site);

    let (code, report) = turn.uclient(10, 1, &[]);
    assert_ne!(code, Some(0), "{}", report.text);
    assert!(
        report.text.contains("channel bind: error 403"),
        "ChannelBind to 127.0.0.1 (outside 127.0.0.2/32) must get 403:\n{}",
        report.text
    );
    assert!(report.lost.is_none(), "nothing relayed:\n{}", report.text);

    let (code, report) = turn.uclient(10, 1, &["-s"]);
    assert_ne!(code, Some(0), "{}", report.text);
    assert!(
        report.text.contains("create permission error 403"),
        "CreatePermission for 127.0.0.1 (outside 127.0.0.2/32) must get 403:\n{}",
        report.text
    );

    let (code, report) = turn.uclient(10, 1, &["-t"]);
    assert_ne!(code, Some(0), "{}", report.text);
    assert!(
        report.text.contains("error 403"),
        "over TCP too:\n{}",
        report.text
    );

    let m = turn.metrics_until(|m| {
        m.value(
            "portico_turn_peers_refused_total",
            &[("reason", "not_allowed")],
        )
        .is_some_and(|v| v >= 3.0)
    });
    assert!(
        m.value(
            "portico_turn_peers_refused_total",
            &[("reason", "not_allowed")]
        )
        .is_some_and(|v| v >= 3.0),
        "three refusals counted as not_allowed:\n{}",
        m.turn_lines()
    );
}

#[test]
fn loopback_peers_are_refused_unless_allowed() {
    let mut site = TurnSite::new(23200);
    site.allow_loopback_peers = false;
    // allowed_peers (from TurnSite::new) holds 127.0.0.0/8 and ::ffff:0:0/96.
    assert!(site.allowed_peers.contains(&"127.0.0.0/8".to_string()));
    assert!(site.allowed_peers.contains(&"::ffff:0:0/96".to_string()));
    let turn = Turn::start(site);

    let (code, report) = turn.uclient(10, 1, &[]);
    assert_ne!(code, Some(0), "{}", report.text);
    assert!(
        report.text.contains("channel bind: error 403"),
        "ChannelBind to 127.0.0.1 must get 403 with allow_loopback_peers = false:\n{}",
        report.text
    );
    let (code, report) = turn.uclient(10, 1, &["-s"]);
    assert_ne!(code, Some(0), "{}", report.text);
    assert!(
        report.text.contains("create permission error 403"),
        "CreatePermission for 127.0.0.1 must get 403 with allow_loopback_peers = false:\n{}",
        report.text
    );

    // uclient cannot name an IPv4-mapped peer on an IPv4 allocation (with
    // `-e ::ffff:127.0.0.1` it asks for an IPv6 relay, refused with 440 here), so the
    // hand-made client sends those.
    let echo = UdpEcho::start();
    let port = echo.addr.port();
    let mut client = StunClient::connect(turn.site.port, USER, PASSWORD);
    client.allocate();
    for peer in [v4([127, 0, 0, 1], port), mapped_loopback(port)] {
        let answer = client.create_permission(peer);
        assert_eq!(
            (answer.class, answer.error),
            (Class::ErrorResponse, Some(403)),
            "CreatePermission for {peer} must get 403"
        );
        let answer = client.channel_bind(0x4000, peer);
        assert_eq!(
            (answer.class, answer.error),
            (Class::ErrorResponse, Some(403)),
            "ChannelBind to {peer} must get 403"
        );
    }
    // Send indications to them are dropped (no permission could be installed; the
    // policy is checked on Send as well).
    client.send_indication(v4([127, 0, 0, 1], port), b"to 127.0.0.1");
    client.send_indication(mapped_loopback(port), b"to ::ffff:127.0.0.1");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        echo.seen().is_empty(),
        "nothing may reach the loopback peer: {:?}",
        echo.seen()
    );

    let m = turn.metrics_until(|m| {
        m.value(
            "portico_turn_peers_refused_total",
            &[("reason", "loopback")],
        )
        .is_some_and(|v| v >= 6.0)
    });
    assert!(
        m.value(
            "portico_turn_peers_refused_total",
            &[("reason", "loopback")]
        )
        .is_some_and(|v| v >= 6.0),
        "six refusals counted as loopback:\n{}",
        m.turn_lines()
    );
}

#[test]
fn unspecified_peer_is_refused_whatever_allowed_peers_says() {
    let mut site = TurnSite::new(23400);
    site.allowed_peers = vec![
        "127.0.0.0/8".into(),
        "::ffff:0:0/96".into(),
        "0.0.0.0/8".into(),
    ];
    let turn = Turn::start(site);
    let echo = UdpEcho::start();
    let port = echo.addr.port();
    let mut client = StunClient::connect(turn.site.port, USER, PASSWORD);
    let relayed = client.allocate();
    assert_eq!(
        relayed.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "relay_address"
    );
    let (first, last) = turn.site.relay_ports;
    assert!(
        (first..=last).contains(&relayed.port()),
        "relay port {relayed} outside relay_ports {first}-{last}"
    );

    // Positive controls: with allow_loopback_peers = true, 127.0.0.1 is a peer, and so is
    // its IPv4-mapped form (normalised to it).
    for peer in [v4([127, 0, 0, 1], port), mapped_loopback(port)] {
        let answer = client.create_permission(peer);
        assert!(
            answer.is_success(),
            "CreatePermission for {peer} (allowed, loopback allowed): {answer:?}"
        );
    }
    let answer = client.channel_bind(0x4001, mapped_loopback(port));
    assert!(
        answer.is_success(),
        "ChannelBind to ::ffff:127.0.0.1 (allowed, loopback allowed): {answer:?}"
    );
    // With the permission, a Send indication reaches the peer from the relayed address
    // (so the refusals below are refusals, not a client that cannot send).
    client.send_indication(mapped_loopback(port), b"via the relay");
    let arrived = portico_tests::wait_for(Duration::from_secs(3), || {
        echo.seen()
            .into_iter()
            .find(|(_, data)| data.as_slice() == b"via the relay")
    });
    assert_eq!(
        arrived.map(|(from, _)| from),
        Some(relayed),
        "a Send indication to ::ffff:127.0.0.1 should reach 127.0.0.1 from the relay"
    );

    // 0.0.0.0 (and its mapped form) is refused even though allowed_peers contains it.
    for peer in [
        v4([0, 0, 0, 0], port),
        SocketAddr::new(IpAddr::V6(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()), port),
    ] {
        let answer = client.create_permission(peer);
        assert_eq!(
            (answer.class, answer.error),
            (Class::ErrorResponse, Some(403)),
            "CreatePermission for {peer} must get 403"
        );
        let answer = client.channel_bind(0x4002, peer);
        assert_eq!(
            (answer.class, answer.error),
            (Class::ErrorResponse, Some(403)),
            "ChannelBind to {peer} must get 403"
        );
    }
    client.send_indication(v4([0, 0, 0, 0], port), b"to 0.0.0.0");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        echo.seen()
            .iter()
            .all(|(_, d)| d.as_slice() != b"to 0.0.0.0"),
        "a Send indication to 0.0.0.0 (delivered locally by Linux) must be dropped: {:?}",
        echo.seen()
    );
    let m = turn.metrics_until(|m| {
        m.value(
            "portico_turn_peers_refused_total",
            &[("reason", "unspecified")],
        )
        .is_some_and(|v| v >= 4.0)
    });
    assert!(
        m.value(
            "portico_turn_peers_refused_total",
            &[("reason", "unspecified")]
        )
        .is_some_and(|v| v >= 4.0),
        "four refusals counted as unspecified:\n{}",
        m.turn_lines()
    );
}

// ---------------------------------------------------------------------------------
// 6. A second client: aioice
// ---------------------------------------------------------------------------------

fn aioice_relays(transport: &str, relay_first: u16) {
    let scratch = Scratch::new();
    let (site, ca_pem) = tls_site(relay_first, &scratch);
    let portico = site.start(&scratch);
    let echo = UdpEcho::start();
    let port = match transport {
        "tls" => site.tls_port.expect("listen_tls"),
        _ => site.port,
    };
    let (port_s, peer_s) = (port.to_string(), echo.addr.port().to_string());
    let ca = ca_pem.display().to_string();
    let script = aioice_script();
    let run = python(
        &script,
        &[
            transport,
            "127.0.0.1",
            &port_s,
            USER,
            PASSWORD,
            &peer_s,
            &ca,
        ],
        Duration::from_secs(40),
    );
    let out = run.stdout_text();
    assert!(
        !run.stderr.contains("No module named 'aioice'"),
        "aioice is not installed: `python3 -m pip install aioice==0.13.0`\n{}",
        run.stderr
    );
    assert_eq!(
        run.code(),
        Some(0),
        "aioice over {transport} failed:\nstdout: {out}\nstderr: {}",
        run.stderr
    );
    let result: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("aioice script printed no JSON ({e}): {out}"));
    assert_eq!(result["ok"], true, "{result}");
    let relayed: SocketAddr = format!(
        "{}:{}",
        result["relayed"][0].as_str().unwrap_or_default(),
        result["relayed"][1]
    )
    .parse()
    .unwrap_or_else(|e| panic!("relayed address in {result}: {e}"));
    assert_eq!(relayed.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{result}");
    assert!(
        (site.relay_ports.0..=site.relay_ports.1).contains(&relayed.port()),
        "{result}"
    );
    assert_eq!(result["mapped"][0], "127.0.0.1", "{result}");
    assert_eq!(result["channel_data"]["channel"], 0x4000, "{result}");

    // The echo socket saw both payloads, from the relayed address and nothing else.
    let seen = echo.seen();
    let payloads: BTreeMap<String, SocketAddr> = seen
        .iter()
        .map(|(from, data)| (String::from_utf8_lossy(data).into_owned(), *from))
        .collect();
    for expected in [
        format!("aioice send indication {transport}"),
        format!("aioice channel data {transport}"),
    ] {
        assert_eq!(
            payloads.get(&expected),
            Some(&relayed),
            "the peer should get {expected:?} from the relayed address {relayed}: {seen:?}"
        );
    }
    assert!(
        seen.iter().all(|(from, _)| *from == relayed),
        "only the relay may talk to the peer: {seen:?}"
    );
    drop(portico);
}

#[test]
fn aioice_allocates_and_relays_over_udp() {
    aioice_relays("udp", 23600);
}

#[test]
fn aioice_allocates_and_relays_over_tcp() {
    aioice_relays("tcp", 23800);
}

#[test]
fn aioice_allocates_and_relays_over_tls() {
    aioice_relays("tls", 24000);
}

// ---------------------------------------------------------------------------------
// 7. Metrics
// ---------------------------------------------------------------------------------

#[test]
fn metrics_count_allocations_and_relayed_bytes() {
    let turn = Turn::start(TurnSite::new(24200));
    let (n, m) = (20, 2);
    let report = turn.relay_ok(n, m, &[]);
    let allocations = report.relays.len() as f64;
    assert!(allocations >= 1.0, "{}", report.text);
    let sent_bytes = (n * m * LEN) as f64;

    let created = "portico_turn_allocations_created_total";
    let bytes = "portico_turn_relayed_bytes_total";
    let to_peer = [("direction", "to_peer")];
    let to_client = [("direction", "to_client")];
    let metrics = turn.metrics_until(|x| {
        x.value(created, &[]).is_some_and(|v| v >= allocations)
            && x.value(bytes, &to_peer).is_some_and(|v| v >= sent_bytes)
            && x.value(bytes, &to_client).is_some_and(|v| v >= sent_bytes)
    });
    let got = metrics.value(created, &[]);
    assert!(
        got.is_some_and(|v| v >= allocations),
        "{created} = {got:?}, want >= {allocations} (the relay addresses uclient got):\n{}",
        metrics.turn_lines()
    );
    // The family is `portico_turn_relayed_bytes` (unit bytes), like
    // `portico_relayed_bytes`: its samples are `portico_turn_relayed_bytes_total`. A
    // descriptor named `turn_relayed_bytes` *with* the bytes unit comes out as
    // `portico_turn_relayed_bytes_bytes_total`, which no dashboard expects.
    let doubled = metrics
        .text
        .contains("portico_turn_relayed_bytes_bytes_total");
    for labels in [to_peer, to_client] {
        let got = metrics.value(bytes, &labels);
        assert!(
            got.is_some_and(|v| v >= sent_bytes),
            "{bytes}{labels:?} = {got:?}, want >= {sent_bytes} ({n} x {m} messages of \
             {LEN} bytes){}:\n{}",
            if doubled {
                "; the scrape has portico_turn_relayed_bytes_bytes_total instead (unit \
                 suffix doubled)"
            } else {
                ""
            },
            metrics.turn_lines()
        );
    }
    let packets = metrics.value("portico_turn_relayed_packets_to_peer_total", &[]);
    assert!(
        packets.is_some_and(|v| v >= (n * m) as f64),
        "portico_turn_relayed_packets_to_peer_total = {packets:?}:\n{}",
        metrics.turn_lines()
    );
    // The log line of an allocation's start names the user and the relay address.
    let relay = report.relays[0];
    let line = turn
        .portico
        .wait_log(Duration::from_secs(5), |l| {
            l.contains("allocation") && l.contains(&relay.to_string())
        })
        .unwrap_or_else(|| panic!("no log line names the allocation on {relay}"));
    assert!(line.contains(USER), "{line}");
}

/// Not a test of portico: makes sure the hand-made client above fails when it should,
/// by asking an allocation with a wrong password (401 comes back, not a success).
#[test]
fn hand_made_client_sees_wrong_credentials() {
    let turn = Turn::start(TurnSite::new(24400));
    let mut client = StunClient::connect(turn.site.port, USER, "wrong");
    let answer = client.request(
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(TRANSPORT_UDP)],
    );
    assert_eq!(
        (answer.class, answer.error),
        (Class::ErrorResponse, Some(401)),
        "a wrong password gets 401"
    );
}

/// `allocations_per_user` holds for the whole process, not per shard: clients from
/// 127.0.0.2 and 127.0.0.4 are steered to one shard and 127.0.0.3 to the other, so a
/// per-shard count would let the third allocation through.
#[test]
fn allocation_quota_per_user_holds_across_shards() {
    let site = TurnSite::new(24600);
    let scratch = Scratch::new();
    let toml = site.to_toml().replace(
        "allow_loopback_peers = true\n",
        "allow_loopback_peers = true\nallocations_per_user = 2\n",
    );
    assert!(toml.contains("allocations_per_user = 2"));
    let config = scratch.write("portico.toml", toml);
    let portico = Portico::start(
        &config,
        &["--shards", "2"],
        &[
            portico_tests::binary::Ready::Tcp(site.http_port),
            portico_tests::binary::Ready::Tcp(site.port),
        ],
    );
    let allocate = |client: &mut StunClient| {
        client.request(
            Method::ALLOCATE,
            &[Attribute::RequestedTransport(TRANSPORT_UDP)],
        )
    };
    let mut a = StunClient::connect_from("127.0.0.2", site.port, USER, PASSWORD);
    let mut b = StunClient::connect_from("127.0.0.3", site.port, USER, PASSWORD);
    let mut c = StunClient::connect_from("127.0.0.4", site.port, USER, PASSWORD);
    assert_eq!(
        allocate(&mut a).class,
        Class::SuccessResponse,
        "first allocation"
    );
    assert_eq!(
        allocate(&mut b).class,
        Class::SuccessResponse,
        "second allocation"
    );
    let third = allocate(&mut c);
    assert_eq!(
        (third.class, third.error),
        (Class::ErrorResponse, Some(486)),
        "a third allocation for the user, on either shard, is over the quota"
    );
    // Deleting one makes room again, on the other shard too.
    let deleted = b.request(Method::REFRESH, &[Attribute::Lifetime(0)]);
    assert_eq!(deleted.class, Class::SuccessResponse, "Refresh LIFETIME 0");
    assert_eq!(
        allocate(&mut c).class,
        Class::SuccessResponse,
        "after a deletion the third client gets its allocation"
    );
    drop(portico);
}

// ---------------------------------------------------------------------------------
// IPv6 relayed addresses (`relay_address_v6`)
// ---------------------------------------------------------------------------------

#[test]
fn relay_address_v6_serves_ipv6_allocations_to_an_ipv4_client() {
    let mut site = TurnSite::new(23800);
    site.allowed_peers = vec!["127.0.0.0/8".into(), "::1/128".into()];
    let scratch = Scratch::new();
    let toml = site.to_toml().replace(
        "relay_address = \"127.0.0.1\"\n",
        "relay_address = \"127.0.0.1\"\nrelay_address_v6 = \"::1\"\n",
    );
    assert!(
        toml.contains("relay_address_v6"),
        "the config carries the IPv6 relay address"
    );
    let config = scratch.write("portico.toml", toml);
    let portico = Portico::start(
        &config,
        &["--shards", "2"],
        &[
            portico_tests::binary::Ready::Tcp(site.http_port),
            portico_tests::binary::Ready::Tcp(site.port),
        ],
    );
    // A peer on ::1 (turnutils_peer echoes on the port and the next).
    let peer_port = portico_tests::turn::free_udp_pair();
    let mut peer = std::process::Command::new("turnutils_peer")
        .args(["-p", &peer_port.to_string(), "-L", "::1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn turnutils_peer");
    std::thread::sleep(Duration::from_millis(300));
    // `-x`: REQUESTED-ADDRESS-FAMILY IPv6.
    let args = [
        "-x",
        "-p",
        &site.port.to_string(),
        "-e",
        "::1",
        "-r",
        &peer_port.to_string(),
        "-u",
        USER,
        "-w",
        PASSWORD,
        "-n",
        "30",
        "-m",
        "2",
        "-l",
        "170",
    ];
    let run = uclient(&args, Duration::from_secs(60));
    let _ = peer.kill();
    let _ = peer.wait();
    let text = format!("{}{}", run.stdout_text(), run.stderr);
    assert_eq!(run.code(), Some(0), "turnutils_uclient -x failed:\n{text}");
    let report = UclientReport::parse(&text);
    assert_eq!(
        report.lost.map(|(n, _)| n),
        Some(0),
        "no datagram lost:\n{text}"
    );
    // Every relayed address uclient printed is the IPv6 one (its parser may not
    // list IPv6 forms; portico's log line below is the check that always holds).
    for relay in &report.relays {
        assert_eq!(
            relay.ip(),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "an IPv6 relayed address: {relay}"
        );
    }
    portico
        .wait_log(Duration::from_secs(5), |l| l.contains("relay [::1]:"))
        .expect("the allocation log line names the IPv6 relay");
}
