//! The peer policy table: what is refused whatever `allowed_peers` says, and what
//! `allowed_peers` decides.

use crate::turn::{PeerPolicy, PeerRefusal, PortCheck, PortRange, TurnConfig};

use super::kit::*;

fn policy(allowed: &[&str], loopback: bool) -> PeerPolicy {
    let mut c = TurnConfig::new(REALM);
    c.relay_v4 = Some("172.31.31.2".parse().unwrap());
    c.relay_v6 = Some("2001:db8::2".parse().unwrap());
    c.relay_ports = PortRange {
        first: 49152,
        last: 65535,
    };
    c.own_addresses = vec![ip("172.31.31.3"), ip("::ffff:192.0.2.1")];
    c.allowed_peers = nets(allowed);
    c.allow_loopback_peers = loopback;
    PeerPolicy::new(&c)
}

#[test]
fn refused_whatever_allowed_peers_says() {
    use PeerRefusal::*;
    // Everything is inside allowed_peers here.
    let p = policy(&["0.0.0.0/0", "::/0"], false);
    let table: &[(&str, Result<&str, PeerRefusal>)] = &[
        ("127.0.0.1:3480", Err(Loopback)),
        ("127.8.9.10:1", Err(Loopback)),
        ("[::1]:3480", Err(Loopback)),
        ("[::ffff:127.0.0.1]:3480", Err(Loopback)),
        ("0.0.0.0:3480", Err(Unspecified)),
        ("0.1.2.3:1", Err(Unspecified)),
        ("[::]:3480", Err(Unspecified)),
        ("[::ffff:0.0.0.0]:1", Err(Unspecified)),
        ("224.0.0.1:5004", Err(Multicast)),
        ("239.255.255.250:1900", Err(Multicast)),
        ("[ff02::1]:1", Err(Multicast)),
        ("169.254.169.254:80", Err(LinkLocal)),
        ("[fe80::1]:1", Err(LinkLocal)),
        ("[febf::1]:1", Err(LinkLocal)),
        ("255.255.255.255:9", Err(Broadcast)),
        // The box's own addresses: refused outside the relay range…
        ("172.31.31.3:5060", Err(OwnAddress)),
        ("172.31.31.2:3478", Err(OwnAddress)),
        ("192.0.2.1:443", Err(OwnAddress)),
        ("[2001:db8::2]:80", Err(OwnAddress)),
        // …and allowed on relay ports (another allocation's relayed address).
        ("172.31.31.2:49152", Ok("172.31.31.2:49152")),
        ("172.31.31.3:65535", Ok("172.31.31.3:65535")),
        // Ordinary peers; IPv4-mapped addresses come back as IPv4.
        ("8.8.8.8:53", Ok("8.8.8.8:53")),
        ("[::ffff:172.31.31.50]:4000", Ok("172.31.31.50:4000")),
        ("[fec0::1]:1", Ok("[fec0::1]:1")),
    ];
    for (peer, want) in table {
        let got = p.check(sa(peer), PortCheck::WithPort);
        assert_eq!(got, want.map(sa), "{peer}");
    }
    // Without the port (CreatePermission), the own-address rule waits for the datagram.
    assert_eq!(
        p.check(sa("172.31.31.3:5060"), PortCheck::IpOnly),
        Ok(sa("172.31.31.3:5060"))
    );
    assert_eq!(p.check(sa("127.0.0.1:1"), PortCheck::IpOnly), Err(Loopback));
}

#[test]
fn allowed_peers_decides_the_rest() {
    let p = policy(&["172.31.31.0/24", "2001:db8:1::/48"], false);
    for (peer, ok) in [
        ("172.31.31.50:4000", true),
        ("[::ffff:172.31.31.50]:4000", true),
        ("172.31.32.1:4000", false),
        ("10.0.0.1:4000", false),
        ("8.8.8.8:53", false),
        ("[2001:db8:1::5]:1", true),
        ("[2001:db8:2::5]:1", false),
    ] {
        let got = p.check(sa(peer), PortCheck::WithPort);
        assert_eq!(got.is_ok(), ok, "{peer}: {got:?}");
        if !ok {
            assert_eq!(got, Err(PeerRefusal::NotAllowed));
        }
    }
    // Empty allowed_peers: never an open relay.
    let none = policy(&[], false);
    assert_eq!(
        none.check(sa("8.8.8.8:53"), PortCheck::WithPort),
        Err(PeerRefusal::NotAllowed)
    );
}

#[test]
fn loopback_needs_the_switch_and_allowed_peers() {
    // allowed_peers containing loopback is not enough.
    let p = policy(&["127.0.0.0/8", "::1/128"], false);
    for peer in ["127.0.0.1:3480", "[::ffff:127.0.0.1]:3480", "[::1]:3480"] {
        assert_eq!(
            p.check(sa(peer), PortCheck::WithPort),
            Err(PeerRefusal::Loopback),
            "{peer}"
        );
    }
    let p = policy(&["127.0.0.0/8", "::1/128"], true);
    assert_eq!(
        p.check(sa("[::ffff:127.0.0.1]:3480"), PortCheck::WithPort),
        Ok(sa("127.0.0.1:3480"))
    );
    assert!(p.check(sa("[::1]:3480"), PortCheck::WithPort).is_ok());
    // The switch alone is not enough either.
    let p = policy(&["172.31.31.0/24"], true);
    assert_eq!(
        p.check(sa("127.0.0.1:3480"), PortCheck::WithPort),
        Err(PeerRefusal::NotAllowed)
    );
}

#[test]
fn the_server_answers_403_for_each_refusal() {
    let mut cfg = config();
    cfg.allowed_peers = nets(&["0.0.0.0/0"]);
    let mut h = Harness::new(cfg);
    let mut c = Client::new("198.51.100.7:5000", 1);
    assert!(c.allocate(&mut h, &[]).is_success());
    for peer in [
        "127.0.0.1:1",
        "[::ffff:127.0.0.1]:1",
        "0.0.0.0:1",
        "224.0.0.1:1",
        "169.254.1.1:1",
        "255.255.255.255:1",
    ] {
        assert_eq!(c.permit(&mut h, &[sa(peer)]).code(), Some(403), "{peer}");
        assert_eq!(c.bind(&mut h, 0x4000, sa(peer)).code(), Some(403), "{peer}");
    }
    // `::` is an IPv6 peer on an IPv4 allocation: the family is checked first (443).
    assert_eq!(c.permit(&mut h, &[sa("[::]:1")]).code(), Some(443));
    assert!(c.permit(&mut h, &[sa("8.8.8.8:1")]).is_success());
    let counters = h.server.counters();
    assert_eq!(counters.peer_refused(PeerRefusal::Loopback), 4);
    assert_eq!(counters.peer_refused(PeerRefusal::Unspecified), 2);
}
