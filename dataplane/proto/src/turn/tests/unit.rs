//! One test per answer: every error code path, Binding, authentication variants, and the
//! relay paths.

use std::net::SocketAddr;
use std::time::Duration;

use crate::stun::{
    nonce_security_features, AddressFamily, Attribute, AttributeType, ChannelDataRepr, Class,
    Framing, MessageType, MessageWriter, Method, PasswordAlgorithm, PasswordAlgorithms,
    TransactionId, ALGORITHM_MD5,
};
use crate::turn::{
    AuthFailure, AuthRateLimit, ClientAction, DropReason, EndReason, PeerAction, PeerRefusal,
    QuotaKind, Transport, TurnEvent,
};

use super::kit::*;

const PEER: &str = "172.31.31.50:40000";

fn allocated(h: &mut Harness) -> (Client, SocketAddr) {
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.allocate(h, &[]);
    assert!(r.is_success(), "{:?}", r.code());
    let relay = r.relayed()[0];
    (c, relay)
}

// ------------------------------------------------------------------------------------
// Binding
// ------------------------------------------------------------------------------------

#[test]
fn binding_answers_xor_mapped_address() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.send(&mut h, &binding_request(1, false, &[]));
    assert!(r.is_success());
    assert_eq!(r.mapped(), Some(sa("198.51.100.7:5000")));
    assert!(!r.has(AttributeType::FINGERPRINT));
    assert!(!r.has(AttributeType::SOFTWARE));
    assert!(!r.has(AttributeType::MESSAGE_INTEGRITY));
    // FINGERPRINT echoed (checked by `send`), comprehension-optional attributes ignored.
    let r = c.send(
        &mut h,
        &binding_request(
            2,
            true,
            &[Attribute::Other {
                typ: AttributeType::new(0xC001),
                value: b"x",
            }],
        ),
    );
    assert!(r.is_success());
    assert!(r.has(AttributeType::FINGERPRINT));
    assert_eq!(h.server.counters().binding_requests, 2);
}

#[test]
fn binding_over_tcp_and_mapped_ipv4() {
    let mut h = Harness::new(config());
    let mut c = Client::new("[::ffff:198.51.100.7]:5000", 1);
    c.five.transport = Transport::Tls;
    let r = c.send(&mut h, &binding_request(1, false, &[]));
    assert_eq!(r.mapped(), Some(sa("198.51.100.7:5000")));
}

#[test]
fn binding_unknown_required_attribute_is_420() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.send(
        &mut h,
        &binding_request(
            1,
            false,
            &[Attribute::Other {
                typ: AttributeType::new(0x7777),
                value: b"x",
            }],
        ),
    );
    assert_eq!(r.code(), Some(420));
    let msg = r.msg();
    let Some(Ok(Attribute::UnknownAttributes(list))) =
        msg.decode(AttributeType::UNKNOWN_ATTRIBUTES)
    else {
        panic!("no UNKNOWN-ATTRIBUTES");
    };
    assert_eq!(
        list.iter().collect::<Vec<_>>(),
        [AttributeType::new(0x7777)]
    );
}

#[test]
fn software_only_when_configured() {
    let mut cfg = config();
    cfg.software = Some("portico".into());
    let mut h = Harness::new(cfg);
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.send(&mut h, &binding_request(1, true, &[]));
    assert!(r.has(AttributeType::SOFTWARE));
}

#[test]
fn bad_fingerprint_responses_and_indications_are_dropped() {
    let mut h = Harness::new(config());
    let f = five("198.51.100.7:5000");
    let mut req = binding_request(1, true, &[]);
    let n = req.len();
    req[n - 1] ^= 1;
    assert_eq!(
        h.client(&req, f),
        ClientAction::Drop(DropReason::BadFingerprint)
    );
    // A Binding indication (keepalive) and a response get nothing.
    let mut buf = Vec::new();
    MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Indication),
        TransactionId::new([1; 12]),
    );
    assert_eq!(
        h.client(&buf, f),
        ClientAction::Drop(DropReason::Unexpected)
    );
    MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::SuccessResponse),
        TransactionId::new([1; 12]),
    );
    assert_eq!(
        h.client(&buf, f),
        ClientAction::Drop(DropReason::Unexpected)
    );
    assert_eq!(h.client(&[], f), ClientAction::Drop(DropReason::Malformed));
    assert_eq!(
        h.client(&[0x80, 1, 2, 3], f),
        ClientAction::Drop(DropReason::Malformed)
    );
    assert_eq!(h.server.counters().drop_count(DropReason::Unexpected), 2);
}

#[test]
fn unknown_method_is_400() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.call_once(&mut h, Method::new(0x0222).unwrap(), &[]);
    assert_eq!(r.code(), Some(400));
}

// ------------------------------------------------------------------------------------
// Authentication
// ------------------------------------------------------------------------------------

#[test]
fn challenge_has_realm_nonce_cookie_and_algorithms() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.call_once(&mut h, Method::ALLOCATE, &[]);
    assert_eq!(r.code(), Some(401));
    let msg = r.msg();
    assert_eq!(
        msg.decode(AttributeType::REALM),
        Some(Ok(Attribute::Realm(REALM)))
    );
    let nonce = r.nonce().unwrap();
    let features = nonce_security_features(&nonce).unwrap();
    assert_eq!(features.bits(), 0b11);
    assert_eq!(
        msg.decode(AttributeType::PASSWORD_ALGORITHMS),
        Some(Ok(Attribute::PasswordAlgorithms(
            PasswordAlgorithms::SHA256_MD5
        )))
    );
    assert!(!r.has(AttributeType::MESSAGE_INTEGRITY));
    assert_eq!(h.server.counters().auth_failure(AuthFailure::Challenge), 1);
}

#[test]
fn every_auth_mode_allocates() {
    for (i, mode) in [
        AuthMode::Classic,
        AuthMode::Sha256,
        AuthMode::UserHash,
        AuthMode::Md5KeySha256Mac,
    ]
    .into_iter()
    .enumerate()
    {
        let mut h = Harness::new(config());
        let mut c = Client::new("198.51.100.7:5000", 1);
        c.mode = mode;
        c.fingerprint = i % 2 == 0;
        let r = c.allocate(&mut h, &[]);
        assert!(r.is_success(), "{mode:?}: {:?}", r.code());
        let r = c.permit(&mut h, &[sa(PEER)]);
        assert!(r.is_success(), "{mode:?}");
    }
}

#[test]
fn integrity_without_username_is_400() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    c.call_once(&mut h, Method::ALLOCATE, &[]);
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([5; 12]),
    );
    w.add(&Attribute::Realm(REALM)).unwrap();
    w.add(&Attribute::Nonce("whatever")).unwrap();
    w.add_message_integrity(b"k").unwrap();
    let r = c.send(&mut h, &buf);
    assert_eq!(r.code(), Some(400));
    assert!(!r.has(AttributeType::NONCE));
    assert!(!r.has(AttributeType::REALM));
}

#[test]
fn wrong_password_unknown_user_wrong_realm_and_foreign_nonce_are_401() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    c.password = "wrong".into();
    let r = c.allocate(&mut h, &[]);
    assert_eq!(r.code(), Some(401));
    assert!(r.nonce().is_some());
    assert_eq!(
        h.server.counters().auth_failure(AuthFailure::BadIntegrity),
        1
    );
    let mut c = Client::new("198.51.100.7:5001", 2);
    c.user = "nobody".into();
    assert_eq!(c.allocate(&mut h, &[]).code(), Some(401));
    assert_eq!(
        h.server.counters().auth_failure(AuthFailure::UnknownUser),
        1
    );
    // A nonce issued to another client.
    let mut a = Client::new("198.51.100.7:5002", 3);
    a.call(&mut h, Method::ALLOCATE, &[]);
    let mut b = Client::new("198.51.100.8:5002", 4);
    b.nonce = a.nonce.clone();
    assert_eq!(
        b.call_once(
            &mut h,
            Method::ALLOCATE,
            &[Attribute::RequestedTransport(17)]
        )
        .code(),
        Some(401)
    );
    assert_eq!(
        h.server.counters().auth_failure(AuthFailure::InvalidNonce),
        1
    );
    // A realm that is not ours.
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([5; 12]),
    );
    w.add(&Attribute::Username(USER)).unwrap();
    w.add(&Attribute::Realm("other.example")).unwrap();
    w.add(&Attribute::Nonce(a.nonce.as_deref().unwrap()))
        .unwrap();
    w.add_message_integrity(a.key().as_bytes()).unwrap();
    assert_eq!(a.send(&mut h, &buf).code(), Some(401));
    assert!(h.server.counters().auth_failures.iter().sum::<u64>() >= 5);
    let mut events = Vec::new();
    h.server.take_events(&mut events);
    assert!(events.iter().any(|e| matches!(
        e,
        TurnEvent::AuthFailed {
            reason: AuthFailure::BadIntegrity,
            ..
        }
    )));
}

#[test]
fn truncated_sha256_integrity_is_401() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    c.mode = AuthMode::Sha256;
    c.call(&mut h, Method::ALLOCATE, &[]);
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([5; 12]),
    );
    w.add(&Attribute::RequestedTransport(17)).unwrap();
    w.add(&Attribute::Username(USER)).unwrap();
    w.add(&Attribute::Realm(REALM)).unwrap();
    w.add(&Attribute::Nonce(c.nonce.as_deref().unwrap()))
        .unwrap();
    w.add_message_integrity_sha256_truncated(c.key().as_bytes(), 16)
        .unwrap();
    assert_eq!(c.send(&mut h, &buf).code(), Some(401));
}

fn with_algorithms(c: &Client, list: Option<&[u8]>, chosen: Option<u16>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([9; 12]),
    );
    w.add(&Attribute::RequestedTransport(17)).unwrap();
    w.add(&Attribute::Username(USER)).unwrap();
    w.add(&Attribute::Realm(REALM)).unwrap();
    w.add(&Attribute::Nonce(c.nonce.as_deref().unwrap()))
        .unwrap();
    if let Some(list) = list {
        w.add(&Attribute::PasswordAlgorithms(
            PasswordAlgorithms::new(list).unwrap(),
        ))
        .unwrap();
    }
    if let Some(algorithm) = chosen {
        w.add(&Attribute::PasswordAlgorithm(PasswordAlgorithm {
            algorithm,
            params: &[],
        }))
        .unwrap();
    }
    w.add_message_integrity(c.key().as_bytes()).unwrap();
    buf
}

#[test]
fn password_algorithms_bid_down_is_400() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    c.call(&mut h, Method::ALLOCATE, &[]);
    let md5_only: &[u8] = &[0, 1, 0, 0];
    let full = PasswordAlgorithms::SHA256_MD5.as_bytes();
    for (list, chosen) in [
        (Some(md5_only), Some(ALGORITHM_MD5)), // the list was edited
        (None, Some(ALGORITHM_MD5)),           // only one of the two
        (Some(full), None),
        (Some(full), Some(0x0003)), // not in the list
    ] {
        let r = c.send(&mut h, &with_algorithms(&c, list, chosen));
        assert_eq!(r.code(), Some(400), "{list:?} {chosen:?}");
    }
    // The honest echo with MD5 chosen works.
    let r = c.send(
        &mut h,
        &with_algorithms(&c, Some(full), Some(ALGORITHM_MD5)),
    );
    assert!(r.is_success(), "{:?}", r.code());
    assert_eq!(
        h.server
            .counters()
            .auth_failure(AuthFailure::PasswordAlgorithms),
        4
    );
}

#[test]
fn stale_nonce_is_438_then_success() {
    let mut h = Harness::new(config());
    let (mut c, _) = allocated(&mut h);
    assert_eq!(c.refresh(&mut h, Some(3600)).lifetime(), Some(3600));
    let first = c.nonce.clone();
    // Nonce lifetime 600 s: at 599 s still valid.
    h.advance(Duration::from_secs(599));
    assert!(c.permit(&mut h, &[sa(PEER)]).is_success());
    assert_eq!(c.nonce, first);
    h.advance(Duration::from_secs(1));
    let r = c.call_once(
        &mut h,
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress(sa(PEER))],
    );
    assert_eq!(r.code(), Some(438));
    assert!(r.nonce().is_some());
    assert!(r.has(AttributeType::REALM));
    assert_ne!(r.nonce(), first);
    // The client retries with the new nonce.
    c.nonce = r.nonce();
    assert!(c.permit(&mut h, &[sa(PEER)]).is_success());
    assert_eq!(h.server.counters().auth_failure(AuthFailure::StaleNonce), 1);
}

#[test]
fn rest_credentials() {
    let mut h = Harness::new(config());
    // Valid with either secret.
    let mut c = Client::rest("198.51.100.7:5000", 1, UNIX0 + 3600, SECRET);
    assert!(c.allocate(&mut h, &[]).is_success());
    let mut c = Client::rest("198.51.100.7:5001", 2, UNIX0 + 3600, b"current-secret");
    c.mode = AuthMode::Sha256;
    assert!(c.allocate(&mut h, &[]).is_success());
    // Signed by an unknown secret.
    let mut c = Client::rest("198.51.100.7:5002", 3, UNIX0 + 3600, b"forged");
    assert_eq!(c.allocate(&mut h, &[]).code(), Some(401));
    // Expired: the timestamp is in the past.
    let mut c = Client::rest("198.51.100.7:5003", 4, UNIX0 - 1, SECRET);
    assert_eq!(c.allocate(&mut h, &[]).code(), Some(401));
    assert_eq!(
        h.server.counters().auth_failure(AuthFailure::RestExpired),
        1
    );
    // A USERHASH cannot name a REST user.
    let mut c = Client::rest("198.51.100.7:5004", 5, UNIX0 + 3600, SECRET);
    c.mode = AuthMode::UserHash;
    assert_eq!(c.allocate(&mut h, &[]).code(), Some(401));
    // The clock moves: a username valid at allocation expires for later requests.
    let mut c = Client::rest("198.51.100.7:5005", 6, UNIX0 + 100, SECRET);
    assert!(c.allocate(&mut h, &[]).is_success());
    h.advance(Duration::from_secs(101));
    assert_eq!(c.permit(&mut h, &[sa(PEER)]).code(), Some(401));
    // Static users and REST users together, and no REST without secrets.
    let mut cfg = config();
    cfg.rest_secrets.clear();
    let mut h = Harness::new(cfg);
    let mut c = Client::rest("198.51.100.7:5000", 1, UNIX0 + 3600, SECRET);
    assert_eq!(c.allocate(&mut h, &[]).code(), Some(401));
}

#[test]
fn repeated_401s_are_rate_limited_per_ip() {
    let mut cfg = config();
    cfg.auth_rate_limit = AuthRateLimit {
        burst: 3,
        interval: Duration::from_secs(1),
        table_size: 16,
    };
    let mut h = Harness::new(cfg);
    // A legitimate client on the same IP allocates first.
    let (mut legit, _) = allocated(&mut h); // one 401 spent
    let mut bad = Client::new("198.51.100.7:6000", 9);
    bad.password = "guess".into();
    let f = bad.five;
    // Challenge (1 spent above + 1), then a failed guess: budget of 3 gone.
    assert_eq!(bad.allocate(&mut h, &[]).code(), Some(401));
    let txid = bad.next_txid();
    let req = bad.build(Method::ALLOCATE, txid, &[Attribute::RequestedTransport(17)]);
    assert_eq!(
        h.client(&req, f),
        ClientAction::Drop(DropReason::RateLimited)
    );
    // Even the right password is not tried now.
    bad.password = PASS.into();
    let txid = bad.next_txid();
    let req = bad.build(Method::ALLOCATE, txid, &[Attribute::RequestedTransport(17)]);
    assert_eq!(
        h.client(&req, f),
        ClientAction::Drop(DropReason::RateLimited)
    );
    // Another IP is unaffected; the existing allocation on the limited IP still works.
    let mut other = Client::new("203.0.113.9:5000", 10);
    assert!(other.allocate(&mut h, &[]).is_success());
    assert!(legit.permit(&mut h, &[sa(PEER)]).is_success());
    // One interval later one more answer is allowed.
    h.advance(Duration::from_secs(1));
    assert!(bad.allocate(&mut h, &[]).is_success());
    assert!(h.server.counters().auth_failure(AuthFailure::RateLimited) >= 2);
}

#[test]
fn wrong_credentials_on_an_allocation_is_441() {
    let mut h = Harness::new(config());
    let (mut c, _) = allocated(&mut h);
    // Same 5-tuple, a REST user this time.
    let rest = Client::rest("198.51.100.7:5000", 1, UNIX0 + 3600, SECRET);
    c.user = rest.user;
    c.password = rest.password;
    let r = c.permit(&mut h, &[sa(PEER)]);
    assert_eq!(r.code(), Some(441));
    assert_eq!(
        h.server
            .counters()
            .auth_failure(AuthFailure::WrongCredentials),
        1
    );
}

// ------------------------------------------------------------------------------------
// Allocate
// ------------------------------------------------------------------------------------

#[test]
fn allocate_success_response() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    c.fingerprint = true;
    let r = c.allocate(&mut h, &[]);
    assert!(r.is_success());
    let relays = r.relayed();
    assert_eq!(relays.len(), 1);
    assert_eq!(relays[0].ip(), ip("172.31.31.2"));
    assert!((49152..=65535).contains(&relays[0].port()));
    assert_eq!(r.lifetime(), Some(600));
    assert_eq!(r.mapped(), Some(sa("198.51.100.7:5000")));
    assert!(h.io.bound.contains(&relays[0]));
    let mut events = Vec::new();
    h.server.take_events(&mut events);
    assert!(matches!(
        &events[..],
        [TurnEvent::AllocationCreated { user, lifetime, .. }]
            if &**user == USER && *lifetime == Duration::from_secs(600)
    ));
    assert_eq!(h.server.counters().allocations_active, 1);
}

#[test]
fn requested_transport_missing_400_tcp_442() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    assert_eq!(c.call(&mut h, Method::ALLOCATE, &[]).code(), Some(400));
    let r = c.call(
        &mut h,
        Method::ALLOCATE,
        &[Attribute::RequestedTransport(6)],
    );
    assert_eq!(r.code(), Some(442));
}

#[test]
fn allocate_retransmission_and_437() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.call(&mut h, Method::ALLOCATE, &[]);
    assert_eq!(r.code(), Some(400)); // no REQUESTED-TRANSPORT; learns the nonce
    let txid = c.next_txid();
    let req = c.build(
        Method::ALLOCATE,
        txid,
        &[Attribute::RequestedTransport(17), Attribute::Lifetime(3600)],
    );
    let first = c.send(&mut h, &req);
    assert!(first.is_success());
    // The same request again, even after the nonce went stale: the same bytes.
    h.advance(Duration::from_secs(700));
    let again = c.send(&mut h, &req);
    assert_eq!(again.bytes, first.bytes);
    assert_eq!(h.server.counters().allocate_retransmits, 1);
    assert_eq!(h.server.allocation_count(), 1);
    // A new transaction on the same 5-tuple: 437.
    let r = c.allocate(&mut h, &[]);
    assert_eq!(r.code(), Some(437));
}

#[test]
fn lifetime_is_clamped() {
    for (asked, granted) in [
        (10, 600),
        (0, 600),
        (1200, 1200),
        (100_000, 3600),
        (u32::MAX, 3600),
    ] {
        let mut h = Harness::new(config());
        let mut c = Client::new("198.51.100.7:5000", 1);
        let r = c.allocate(&mut h, &[Attribute::Lifetime(asked)]);
        assert_eq!(r.lifetime(), Some(granted), "{asked}");
    }
}

#[test]
fn address_families() {
    // No IPv6 relay: REQUESTED-ADDRESS-FAMILY IPv6 is 440.
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.allocate(
        &mut h,
        &[Attribute::RequestedAddressFamily(AddressFamily::V6)],
    );
    assert_eq!(r.code(), Some(440));
    // An unknown family value is 440 too.
    let r = c.allocate(
        &mut h,
        &[Attribute::Other {
            typ: AttributeType::REQUESTED_ADDRESS_FAMILY,
            value: &[3, 0, 0, 0],
        }],
    );
    assert_eq!(r.code(), Some(440));
    // Both attributes: 400; ADDITIONAL asking for IPv4: 400.
    let r = c.allocate(
        &mut h,
        &[
            Attribute::RequestedAddressFamily(AddressFamily::V4),
            Attribute::AdditionalAddressFamily(AddressFamily::V6),
        ],
    );
    assert_eq!(r.code(), Some(400));
    let r = c.allocate(
        &mut h,
        &[Attribute::AdditionalAddressFamily(AddressFamily::V4)],
    );
    assert_eq!(r.code(), Some(400));
    // Dual stack without an IPv6 relay: IPv4 only, ADDRESS-ERROR-CODE 440.
    let r = c.allocate(
        &mut h,
        &[Attribute::AdditionalAddressFamily(AddressFamily::V6)],
    );
    assert!(r.is_success());
    assert_eq!(r.relayed().len(), 1);
    assert_eq!(r.address_error(), Some(440));

    let mut cfg = config();
    cfg.relay_v6 = Some("2001:db8::2".parse().unwrap());
    let mut h = Harness::new(cfg.clone());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.allocate(
        &mut h,
        &[Attribute::RequestedAddressFamily(AddressFamily::V6)],
    );
    assert!(r.is_success());
    assert!(r.relayed()[0].is_ipv6());
    // IPv4 peers on an IPv6 allocation: 443.
    assert_eq!(c.permit(&mut h, &[sa(PEER)]).code(), Some(443));
    assert!(c.permit(&mut h, &[sa("[2001:db8::50]:1")]).is_success());
    // Refresh naming the wrong family: 443.
    let r = c.call(
        &mut h,
        Method::REFRESH,
        &[Attribute::RequestedAddressFamily(AddressFamily::V4)],
    );
    assert_eq!(r.code(), Some(443));

    // Dual stack.
    let mut c = Client::new("198.51.100.7:5001", 2);
    let r = c.allocate(
        &mut h,
        &[Attribute::AdditionalAddressFamily(AddressFamily::V6)],
    );
    assert!(r.is_success());
    let relays = r.relayed();
    assert_eq!(relays.len(), 2);
    assert!(relays[0].is_ipv4() && relays[1].is_ipv6());
    assert!(c
        .permit(&mut h, &[sa(PEER), sa("[2001:db8::50]:1")])
        .is_success());
    // IPv6 relay port exhausted: IPv4 only, ADDRESS-ERROR-CODE 508.
    h.io.fail_v6 = true;
    let mut c = Client::new("198.51.100.7:5002", 3);
    let r = c.allocate(
        &mut h,
        &[Attribute::AdditionalAddressFamily(AddressFamily::V6)],
    );
    assert!(r.is_success());
    assert_eq!(r.address_error(), Some(508));

    // No IPv4 relay at all: a plain Allocate is 440.
    let mut cfg = config();
    cfg.relay_v4 = None;
    let mut h = Harness::new(cfg);
    let mut c = Client::new("198.51.100.7:5000", 1);
    assert_eq!(c.allocate(&mut h, &[]).code(), Some(440));
}

#[test]
fn even_port_and_reservation_token() {
    let mut h = Harness::new(config());
    let mut a = Client::new("198.51.100.7:5000", 1);
    let r = a.allocate(
        &mut h,
        &[Attribute::EvenPort {
            reserve_next: false,
        }],
    );
    assert_eq!(r.relayed()[0].port() % 2, 0);
    assert!(r.token().is_none());

    let mut b = Client::new("198.51.100.7:5001", 2);
    let r = b.allocate(&mut h, &[Attribute::EvenPort { reserve_next: true }]);
    let rtp = r.relayed()[0];
    assert_eq!(rtp.port() % 2, 0);
    let token = r.token().unwrap();
    assert_eq!(h.io.held.len(), 1);

    // The token with EVEN-PORT: 400. An unknown token: 508.
    let mut c = Client::new("198.51.100.7:5002", 3);
    let r = c.allocate(
        &mut h,
        &[
            Attribute::ReservationToken(token),
            Attribute::EvenPort {
                reserve_next: false,
            },
        ],
    );
    assert_eq!(r.code(), Some(400));
    let r = c.allocate(&mut h, &[Attribute::ReservationToken([0; 8])]);
    assert_eq!(r.code(), Some(508));
    // The token gets the next port.
    let r = c.allocate(&mut h, &[Attribute::ReservationToken(token)]);
    assert!(r.is_success());
    assert_eq!(r.relayed()[0], SocketAddr::new(rtp.ip(), rtp.port() + 1));
    assert!(h.io.held.is_empty());
    // Used once only.
    let mut d = Client::new("198.51.100.7:5003", 4);
    let r = d.allocate(&mut h, &[Attribute::ReservationToken(token)]);
    assert_eq!(r.code(), Some(508));

    // EVEN-PORT R with ADDITIONAL-ADDRESS-FAMILY: 400.
    let mut e = Client::new("198.51.100.7:5004", 5);
    let r = e.allocate(
        &mut h,
        &[
            Attribute::EvenPort { reserve_next: true },
            Attribute::AdditionalAddressFamily(AddressFamily::V6),
        ],
    );
    assert_eq!(r.code(), Some(400));

    // An unclaimed reservation is released after 30 s, exactly.
    let r = e.allocate(&mut h, &[Attribute::EvenPort { reserve_next: true }]);
    let token = r.token().unwrap();
    let held = *h.io.held.iter().next().unwrap();
    let start = h.now;
    h.now = start + Duration::from_secs(30) - Duration::from_nanos(1);
    h.run_timers();
    assert!(h.io.held.contains(&held));
    h.now = start + Duration::from_secs(30);
    h.run_timers();
    assert!(!h.io.held.contains(&held));
    assert!(h.io.released.contains(&held));
    let mut f = Client::new("198.51.100.7:5005", 6);
    assert_eq!(
        f.allocate(&mut h, &[Attribute::ReservationToken(token)])
            .code(),
        Some(508)
    );
}

#[test]
fn quotas_486_and_508() {
    let mut cfg = config();
    cfg.quotas.allocations_per_user = 2;
    cfg.quotas.allocations_total = 3;
    let mut h = Harness::new(cfg);
    for port in 0..2 {
        let mut c = Client::new(&format!("198.51.100.7:{}", 5000 + port), port as u8);
        assert!(c.allocate(&mut h, &[]).is_success());
    }
    let mut c = Client::new("198.51.100.7:5002", 9);
    assert_eq!(c.allocate(&mut h, &[]).code(), Some(486));
    let mut r = Client::rest("198.51.100.8:5000", 10, UNIX0 + 100, SECRET);
    assert!(r.allocate(&mut h, &[]).is_success());
    let mut r2 = Client::rest("198.51.100.8:5001", 11, UNIX0 + 200, SECRET);
    assert_eq!(r2.allocate(&mut h, &[]).code(), Some(508));
    assert_eq!(
        h.server.counters().quota_hit(QuotaKind::AllocationsPerUser),
        1
    );
    assert_eq!(
        h.server.counters().quota_hit(QuotaKind::AllocationsTotal),
        1
    );
    // Relay ports exhausted: 508.
    let mut h = Harness::new(config());
    h.io.fail = true;
    let mut c = Client::new("198.51.100.7:5000", 1);
    assert_eq!(c.allocate(&mut h, &[]).code(), Some(508));
    assert_eq!(h.server.counters().quota_hit(QuotaKind::RelayPorts), 1);
}

#[test]
fn unknown_required_attribute_in_allocate_is_420_with_integrity() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.allocate(
        &mut h,
        &[Attribute::Other {
            typ: AttributeType::new(0x0030),
            value: &[1, 2, 3, 4],
        }],
    );
    assert_eq!(r.code(), Some(420));
    assert!(r.has(AttributeType::UNKNOWN_ATTRIBUTES));
    assert!(r.has(AttributeType::MESSAGE_INTEGRITY)); // and verified by `send`
}

// ------------------------------------------------------------------------------------
// Refresh
// ------------------------------------------------------------------------------------

#[test]
fn refresh_without_allocation_is_437_and_zero_deletes() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    assert_eq!(c.refresh(&mut h, Some(600)).code(), Some(437));
    assert_eq!(c.permit(&mut h, &[sa(PEER)]).code(), Some(437));
    assert_eq!(c.bind(&mut h, 0x4000, sa(PEER)).code(), Some(437));
    let relay = c.allocate(&mut h, &[]).relayed()[0];
    let r = c.refresh(&mut h, Some(1800));
    assert_eq!(r.lifetime(), Some(1800));
    let r = c.refresh(&mut h, None);
    assert_eq!(r.lifetime(), Some(600));
    let r = c.refresh(&mut h, Some(0));
    assert!(r.is_success());
    assert_eq!(r.lifetime(), Some(0));
    assert_eq!(h.io.released, vec![relay]);
    assert_eq!(h.server.allocation_count(), 0);
    // A retransmitted delete meets 437 ("the client will treat this as equivalent to a
    // success response").
    assert_eq!(c.refresh(&mut h, Some(0)).code(), Some(437));
    let mut events = Vec::new();
    h.server.take_events(&mut events);
    assert!(events.iter().any(|e| matches!(
        e,
        TurnEvent::AllocationEnded {
            reason: EndReason::Deleted,
            ..
        }
    )));
    assert_eq!(h.server.counters().allocations_deleted, 1);
    // And a new allocation on the same 5-tuple is possible.
    assert!(c.allocate(&mut h, &[]).is_success());
}

// ------------------------------------------------------------------------------------
// CreatePermission and ChannelBind
// ------------------------------------------------------------------------------------

#[test]
fn create_permission_errors() {
    let mut cfg = config();
    cfg.quotas.permissions_per_allocation = 3;
    let mut h = Harness::new(cfg);
    let (mut c, _) = allocated(&mut h);
    assert_eq!(c.permit(&mut h, &[]).code(), Some(400));
    let r = c.permit(&mut h, &[sa("10.0.0.1:1")]);
    assert_eq!(r.code(), Some(403));
    assert_eq!(h.server.counters().peer_refused(PeerRefusal::NotAllowed), 1);
    // One refused peer refuses the whole request; nothing installed.
    let r = c.permit(&mut h, &[sa(PEER), sa("127.0.0.1:1")]);
    assert_eq!(r.code(), Some(403));
    assert_eq!(h.server.counters().permissions_active, 0);
    assert_eq!(c.permit(&mut h, &[sa("[2001:db8::1]:1")]).code(), Some(443));
    // Several at once; duplicates count once.
    let r = c.permit(
        &mut h,
        &[
            sa("172.31.31.10:1"),
            sa("172.31.31.11:2"),
            sa("172.31.31.10:3"),
        ],
    );
    assert!(r.is_success());
    assert_eq!(h.server.counters().permissions_active, 2);
    // Refreshing existing ones is fine; a 4th and 5th would exceed 3.
    assert!(c
        .permit(&mut h, &[sa("172.31.31.10:1"), sa("172.31.31.12:1")])
        .is_success());
    let r = c.permit(&mut h, &[sa("172.31.31.13:1")]);
    assert_eq!(r.code(), Some(508));
    assert_eq!(h.server.counters().quota_hit(QuotaKind::Permissions), 1);
    // A malformed XOR-PEER-ADDRESS: 400.
    let r = c.call(
        &mut h,
        Method::CREATE_PERMISSION,
        &[Attribute::Other {
            typ: AttributeType::XOR_PEER_ADDRESS,
            value: &[0, 1, 2],
        }],
    );
    assert_eq!(r.code(), Some(400));
}

#[test]
fn channel_bind_rules() {
    let mut cfg = config();
    cfg.quotas.channels_per_allocation = 2;
    let mut h = Harness::new(cfg);
    let (mut c, _) = allocated(&mut h);
    let p1 = sa("172.31.31.50:40000");
    let p2 = sa("172.31.31.51:40000");
    let p3 = sa("172.31.31.52:40000");
    for bad in [0x3FFF, 0x8000, 0xFFFF, 0] {
        assert_eq!(c.bind(&mut h, bad, p1).code(), Some(400), "{bad:#x}");
    }
    assert_eq!(
        c.call(
            &mut h,
            Method::CHANNEL_BIND,
            &[Attribute::ChannelNumber(0x4000)]
        )
        .code(),
        Some(400)
    );
    assert_eq!(
        c.call(
            &mut h,
            Method::CHANNEL_BIND,
            &[Attribute::XorPeerAddress(p1)]
        )
        .code(),
        Some(400)
    );
    assert_eq!(c.bind(&mut h, 0x4000, sa("10.1.1.1:1")).code(), Some(403));
    assert_eq!(
        c.bind(&mut h, 0x4000, sa("[2001:db8::1]:1")).code(),
        Some(443)
    );
    assert!(c.bind(&mut h, 0x4000, p1).is_success());
    assert!(c.bind(&mut h, 0x4FFF, p2).is_success());
    // Refreshing the same binding is fine.
    assert!(c.bind(&mut h, 0x4000, p1).is_success());
    // The channel bound to another peer, the peer bound to another channel: 400.
    assert_eq!(c.bind(&mut h, 0x4000, p2).code(), Some(400));
    assert_eq!(c.bind(&mut h, 0x4001, p1).code(), Some(400));
    // Same IP, other port is another transport address.
    assert_eq!(
        c.bind(&mut h, 0x4000, sa("172.31.31.50:40001")).code(),
        Some(400)
    );
    // Quota.
    assert_eq!(c.bind(&mut h, 0x4002, p3).code(), Some(508));
    assert_eq!(h.server.counters().quota_hit(QuotaKind::Channels), 1);
    // The channel installs a permission.
    assert_eq!(h.server.counters().permissions_active, 2);
    assert_eq!(h.server.counters().channels_active, 2);
}

#[test]
fn own_addresses_only_on_relay_ports() {
    let mut h = Harness::new(config());
    let (mut c, _) = allocated(&mut h);
    // The permission for the box's own address is allowed (IP only)…
    assert!(c.permit(&mut h, &[sa("172.31.31.3:5060")]).is_success());
    // …but SIP on it is not a peer, a relay port is.
    assert_eq!(
        c.bind(&mut h, 0x4000, sa("172.31.31.3:5060")).code(),
        Some(403)
    );
    assert_eq!(h.server.counters().peer_refused(PeerRefusal::OwnAddress), 1);
    assert!(c.bind(&mut h, 0x4000, sa("172.31.31.2:50000")).is_success());
    let f = c.five;
    let ind = c.send_indication(sa("172.31.31.3:5060"), b"INVITE", false);
    assert_eq!(
        h.client(&ind, f),
        ClientAction::Drop(DropReason::PeerRefused)
    );
    let ind = c.send_indication(sa("172.31.31.3:50001"), b"rtp", false);
    assert!(matches!(h.client(&ind, f), ClientAction::ToPeer { .. }));
}

// ------------------------------------------------------------------------------------
// Relaying
// ------------------------------------------------------------------------------------

#[test]
fn send_indication_paths() {
    let mut h = Harness::new(config());
    let (mut c, relay) = allocated(&mut h);
    let f = c.five;
    let peer = sa(PEER);
    let ind = c.send_indication(peer, b"hello", false);
    assert_eq!(
        h.client(&ind, f),
        ClientAction::Drop(DropReason::NoPermission)
    );
    c.permit(&mut h, &[peer]);
    let ind = c.send_indication(peer, b"hello", true);
    let ClientAction::ToPeer {
        relay: r,
        peer: p,
        payload,
        dont_fragment,
    } = h.client(&ind, f)
    else {
        panic!()
    };
    assert_eq!(
        (r, p, &ind[payload], dont_fragment),
        (relay, peer, &b"hello"[..], true)
    );
    // Refused peers are dropped even with a permission for the IP (own address rule).
    let ind = c.send_indication(sa("10.0.0.1:1"), b"x", false);
    assert_eq!(
        h.client(&ind, f),
        ClientAction::Drop(DropReason::PeerRefused)
    );
    // No allocation.
    let ind = c.send_indication(peer, b"x", false);
    assert_eq!(
        h.client(&ind, five("198.51.100.9:1")),
        ClientAction::Drop(DropReason::NoAllocation)
    );
    // Missing DATA, unknown comprehension-required attribute.
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::SEND, Class::Indication),
        TransactionId::new([1; 12]),
    );
    w.add(&Attribute::XorPeerAddress(peer)).unwrap();
    assert_eq!(h.client(&buf, f), ClientAction::Drop(DropReason::Malformed));
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::SEND, Class::Indication),
        TransactionId::new([1; 12]),
    );
    w.add(&Attribute::XorPeerAddress(peer)).unwrap();
    w.add(&Attribute::Data(b"x")).unwrap();
    w.add_raw(AttributeType::new(0x7001), b"").unwrap();
    assert_eq!(
        h.client(&buf, f),
        ClientAction::Drop(DropReason::UnknownAttribute)
    );
}

#[test]
fn channel_data_and_data_indication_round_trips() {
    let mut h = Harness::new(config());
    let (mut c, relay) = allocated(&mut h);
    let f = c.five;
    let peer = sa(PEER);
    // Nothing bound: ChannelData is dropped; peer data without permission too.
    let mut cd = Vec::new();
    ChannelDataRepr {
        channel: 0x4001,
        data: b"rtp!",
    }
    .emit(&mut cd, Framing::Datagram)
    .unwrap();
    assert_eq!(
        h.client(&cd, f),
        ClientAction::Drop(DropReason::ChannelNotBound)
    );
    assert_eq!(
        h.peer(relay, peer, b"from peer"),
        PeerAction::Drop(DropReason::NoPermission)
    );
    // With a permission: Data indication.
    c.permit(&mut h, &[peer]);
    assert_eq!(
        h.peer(relay, peer, b"from peer"),
        PeerAction::ToClient { five: f }
    );
    assert_eq!(data_indication(&h.out), (peer, b"from peer".to_vec()));
    // Another port of the same IP is covered by the permission too.
    let other = sa("172.31.31.50:40002");
    assert_eq!(h.peer(relay, other, b"x"), PeerAction::ToClient { five: f });
    // Bound: ChannelData both ways.
    assert!(c.bind(&mut h, 0x4001, peer).is_success());
    let ClientAction::ToPeer {
        relay: r,
        peer: p,
        payload,
        dont_fragment,
    } = h.client(&cd, f)
    else {
        panic!()
    };
    assert_eq!(
        (r, p, &cd[payload], dont_fragment),
        (relay, peer, &b"rtp!"[..], false)
    );
    // Padding is accepted on UDP.
    let mut padded = Vec::new();
    ChannelDataRepr {
        channel: 0x4001,
        data: b"abcde",
    }
    .emit(&mut padded, Framing::Stream)
    .unwrap();
    assert!(matches!(
        h.client(&padded, f),
        ClientAction::ToPeer { payload, .. } if payload == (4..9)
    ));
    assert_eq!(
        h.peer(relay, peer, b"abc"),
        PeerAction::ToClientChannel {
            five: f,
            channel: 0x4001,
            header: [0x40, 0x01, 0x00, 0x03],
            padding: 0,
        }
    );
    // Unbound peer port on the same IP still gets Data indications.
    assert_eq!(h.peer(relay, other, b"x"), PeerAction::ToClient { five: f });
    // An IPv4-mapped peer address from a dual-stack relay socket is the same peer.
    assert!(matches!(
        h.peer(relay, sa("[::ffff:172.31.31.50]:40000"), b"abc"),
        PeerAction::ToClientChannel { .. }
    ));
    // Unknown relay.
    assert_eq!(
        h.peer(sa("172.31.31.2:1"), peer, b"x"),
        PeerAction::Drop(DropReason::NoAllocation)
    );
    let counters = h.server.counters();
    assert_eq!(counters.to_peer_packets, 2);
    assert_eq!(counters.to_peer_bytes, 9);
    assert_eq!(counters.to_client_packets, 5);
}

#[test]
fn tcp_channel_data_is_padded_and_closing_ends_the_allocation() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    c.five.transport = Transport::Tcp;
    let relay = c.allocate(&mut h, &[]).relayed()[0];
    assert!(c.bind(&mut h, 0x4000, sa(PEER)).is_success());
    assert!(matches!(
        h.peer(relay, sa(PEER), b"abcde"),
        PeerAction::ToClientChannel { padding: 3, .. }
    ));
    assert!(matches!(
        h.peer(relay, sa(PEER), b"abcd"),
        PeerAction::ToClientChannel { padding: 0, .. }
    ));
    let now = h.now;
    h.server.client_closed(now, c.five, &mut h.io);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.io.released, vec![relay]);
    assert_eq!(h.server.counters().allocations_closed, 1);
    assert_eq!(h.server.counters().channels_active, 0);
    assert_eq!(h.server.counters().permissions_active, 0);
}

#[test]
fn dont_fragment_from_allocate_applies_to_channel_data() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    assert!(c.allocate(&mut h, &[Attribute::DontFragment]).is_success());
    c.bind(&mut h, 0x4000, sa(PEER));
    let mut cd = Vec::new();
    ChannelDataRepr {
        channel: 0x4000,
        data: b"x",
    }
    .emit(&mut cd, Framing::Datagram)
    .unwrap();
    let f = c.five;
    assert!(matches!(
        h.client(&cd, f),
        ClientAction::ToPeer {
            dont_fragment: true,
            ..
        }
    ));
}

#[test]
fn bandwidth_cap_drops_beyond_the_bucket() {
    let mut cfg = config();
    cfg.quotas.bandwidth_bytes_per_sec = Some(1000);
    let mut h = Harness::new(cfg);
    let (mut c, relay) = allocated(&mut h);
    c.bind(&mut h, 0x4000, sa(PEER));
    let f = c.five;
    let data = [0u8; 400];
    let mut cd = Vec::new();
    ChannelDataRepr {
        channel: 0x4000,
        data: &data,
    }
    .emit(&mut cd, Framing::Datagram)
    .unwrap();
    assert!(matches!(h.client(&cd, f), ClientAction::ToPeer { .. }));
    assert!(matches!(h.client(&cd, f), ClientAction::ToPeer { .. }));
    // 800 bytes spent; the peer's 400 would exceed the second's 1000.
    assert_eq!(
        h.peer(relay, sa(PEER), &data),
        PeerAction::Drop(DropReason::Bandwidth)
    );
    h.advance(Duration::from_millis(400));
    assert!(matches!(
        h.peer(relay, sa(PEER), &data),
        PeerAction::ToClientChannel { .. }
    ));
    assert_eq!(h.server.counters().drop_count(DropReason::Bandwidth), 1);
}

#[test]
fn reconfigure_revokes_peers_the_new_policy_refuses() {
    let mut h = Harness::new(config());
    let (mut c, relay) = allocated(&mut h);
    let keep = sa("172.31.31.50:40000");
    let lose = sa("172.31.31.200:40000");
    c.permit(&mut h, &[keep]);
    c.bind(&mut h, 0x4000, lose);
    let mut cfg = config();
    cfg.allowed_peers = nets(&["172.31.31.0/25"]);
    h.server.reconfigure(cfg);
    assert!(matches!(
        h.peer(relay, keep, b"x"),
        PeerAction::ToClient { .. }
    ));
    assert_eq!(
        h.peer(relay, lose, b"x"),
        PeerAction::Drop(DropReason::NoPermission)
    );
    let mut events = Vec::new();
    h.server.take_events(&mut events);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TurnEvent::PeerRevoked { .. }))
            .count(),
        2
    );
    assert_eq!(h.server.counters().permissions_active, 1);
    assert_eq!(h.server.counters().channels_active, 0);
    // The allocation itself is untouched.
    assert_eq!(h.server.allocation_count(), 1);
}
