//! Seeded simulations on a virtual clock: exact lifetimes at their boundaries, and random
//! clients checked against a model of RFC 8656's timers; then mutated messages fed in to
//! show nothing panics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::stun::{Attribute, ChannelDataRepr, Framing, Method};
use crate::turn::{ClientAction, DropReason, EndReason, PeerAction, Transport, TurnEvent};

use super::kit::*;

const NS: Duration = Duration::from_nanos(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ChannelDataRepr { channel, data }
        .emit(&mut out, Framing::Datagram)
        .unwrap();
    out
}

/// xorshift64*: small, seeded, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ------------------------------------------------------------------------------------
// Exact boundaries
// ------------------------------------------------------------------------------------

#[test]
fn allocation_permission_and_channel_lifetimes_are_exact() {
    let mut h = Harness::new(config());
    let peer = sa("172.31.31.50:40000");
    let mut c = Client::new("198.51.100.7:5000", 1);
    let relay = c.allocate(&mut h, &[]).relayed()[0];
    let t0 = h.now;
    assert!(c.bind(&mut h, 0x4000, peer).is_success());
    let f = c.five;
    let cd = channel_data(0x4000, b"rtp");

    // Permission: 300 s (installed by the ChannelBind at t0).
    h.now = t0 + secs(300) - NS;
    h.run_timers();
    assert!(matches!(
        h.peer(relay, peer, b"x"),
        PeerAction::ToClientChannel { .. }
    ));
    h.now = t0 + secs(300);
    assert_eq!(
        h.peer(relay, peer, b"x"),
        PeerAction::Drop(DropReason::NoPermission)
    );
    h.run_timers();
    assert_eq!(h.server.counters().permissions_active, 0);
    // ChannelData from the client does not need the permission, only the channel.
    assert!(matches!(h.client(&cd, f), ClientAction::ToPeer { .. }));
    // Refresh the permission at 400 s.
    h.now = t0 + secs(400);
    assert!(c.permit(&mut h, &[peer]).is_success());

    // Allocation: 600 s.
    h.now = t0 + secs(600) - NS;
    h.run_timers();
    assert_eq!(h.server.allocation_count(), 1);
    assert!(matches!(h.client(&cd, f), ClientAction::ToPeer { .. }));
    h.now = t0 + secs(600);
    assert_eq!(
        h.client(&cd, f),
        ClientAction::Drop(DropReason::NoAllocation)
    );
    assert_eq!(
        h.peer(relay, peer, b"x"),
        PeerAction::Drop(DropReason::NoAllocation)
    );
    h.run_timers();
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.io.released, vec![relay]);
    assert!(h.events.iter().any(|e| matches!(
        e,
        TurnEvent::AllocationEnded {
            reason: EndReason::Expired,
            duration,
            traffic,
            ..
        } if *duration == secs(600) && traffic.to_peer_packets == 2
            && traffic.to_client_packets == 1
    )));
    let counters = h.server.counters();
    assert_eq!(counters.allocations_expired, 1);
    assert_eq!(counters.allocations_active, 0);
    assert_eq!(counters.permissions_active, 0);
    assert_eq!(counters.channels_active, 0);
    assert_eq!(h.server.next_deadline(), None);
}

#[test]
fn requested_lifetime_is_clamped_to_3600_exactly() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    let r = c.allocate(&mut h, &[Attribute::Lifetime(7200)]);
    assert_eq!(r.lifetime(), Some(3600));
    let t0 = h.now;
    h.now = t0 + secs(3600) - NS;
    h.run_timers();
    assert_eq!(h.server.allocation_count(), 1);
    h.now = t0 + secs(3600);
    h.run_timers();
    assert_eq!(h.server.allocation_count(), 0);
    // A refresh restarts the clock from the refresh.
    let mut c = Client::new("198.51.100.7:5001", 2);
    c.allocate(&mut h, &[]);
    let t1 = h.now;
    h.now = t1 + secs(500);
    assert_eq!(c.refresh(&mut h, Some(100)).lifetime(), Some(600));
    h.now = t1 + secs(1100) - NS;
    h.run_timers();
    assert_eq!(h.server.allocation_count(), 1);
    h.now = t1 + secs(1100);
    h.run_timers();
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn channel_lifetime_and_the_five_minute_reuse_rule() {
    let mut h = Harness::new(config());
    let p1 = sa("172.31.31.50:40000");
    let p2 = sa("172.31.31.51:40000");
    let mut c = Client::new("198.51.100.7:5000", 1);
    let relay = c.allocate(&mut h, &[Attribute::Lifetime(3600)]).relayed()[0];
    let t0 = h.now;
    assert!(c.bind(&mut h, 0x4000, p1).is_success());
    let f = c.five;
    let cd = channel_data(0x4000, b"rtp");
    // Keep the permission alive to see the channel alone.
    h.now = t0 + secs(290);
    c.permit(&mut h, &[p1]);
    h.now = t0 + secs(580);
    c.permit(&mut h, &[p1]);
    // Channel: 600 s.
    h.now = t0 + secs(600) - NS;
    h.run_timers();
    assert!(matches!(h.client(&cd, f), ClientAction::ToPeer { .. }));
    assert!(matches!(
        h.peer(relay, p1, b"x"),
        PeerAction::ToClientChannel { .. }
    ));
    h.now = t0 + secs(600);
    h.run_timers();
    assert_eq!(
        h.client(&cd, f),
        ClientAction::Drop(DropReason::ChannelNotBound)
    );
    // Peer data falls back to Data indications.
    assert!(matches!(
        h.peer(relay, p1, b"x"),
        PeerAction::ToClient { .. }
    ));
    // For 5 minutes the number and the peer cannot be bound to anything else…
    h.now = t0 + secs(900) - NS;
    h.run_timers();
    assert_eq!(c.bind(&mut h, 0x4000, p2).code(), Some(400));
    assert_eq!(c.bind(&mut h, 0x4001, p1).code(), Some(400));
    assert_eq!(h.server.counters().channels_active, 1);
    // …then they are free.
    h.now = t0 + secs(900);
    h.run_timers();
    assert_eq!(h.server.counters().channels_active, 0);
    assert!(c.bind(&mut h, 0x4000, p2).is_success());
    assert!(c.bind(&mut h, 0x4001, p1).is_success());
    // Rebinding the same pair during the hold revives it.
    let t1 = h.now;
    h.now = t1 + secs(700);
    c.refresh(&mut h, Some(3600));
    assert_eq!(
        h.client(&cd, f),
        ClientAction::Drop(DropReason::ChannelNotBound)
    );
    assert!(c.bind(&mut h, 0x4000, p2).is_success());
    let cd2 = channel_data(0x4000, b"again");
    assert!(matches!(
        h.client(&cd2, f),
        ClientAction::ToPeer { peer, .. } if peer == p2
    ));
}

// ------------------------------------------------------------------------------------
// Random clients against a model
// ------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ModelAlloc {
    expires: Instant,
    relay: SocketAddr,
    perms: HashMap<IpAddr, Instant>,
    /// (number, peer, expires); held until expires + 300 s.
    chans: Vec<(u16, SocketAddr, Instant)>,
}

const HOLD: Duration = Duration::from_secs(300);

impl ModelAlloc {
    fn prune(&mut self, now: Instant) {
        self.perms.retain(|_, e| *e > now);
        self.chans.retain(|(_, _, e)| *e + HOLD > now);
    }
}

fn clamp(requested: Option<u32>) -> Option<Duration> {
    match requested {
        None => Some(secs(600)),
        Some(0) => None,
        Some(s) => Some(secs(u64::from(s)).clamp(secs(600), secs(3600))),
    }
}

/// How often each interesting outcome happened, to show the simulation reaches them.
#[derive(Debug, Default)]
struct Seen {
    mismatch_437: u64,
    rebind_400: u64,
    channel_relays: u64,
    data_indications: u64,
    unbound_drops: u64,
    no_permission: u64,
    expired: u64,
}

fn simulate(seed: u64, steps: usize, seen: &mut Seen) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut h = Harness::new(config());
    let peers: Vec<SocketAddr> = (0..5)
        .map(|i| sa(&format!("172.31.31.{}:{}", 50 + i % 3, 40000 + i)))
        .collect();
    let mut clients: Vec<Client> = (0..8)
        .map(|i| {
            let mut c = Client::new(&format!("198.51.100.{}:{}", 1 + i % 3, 5000 + i), i as u8);
            c.mode = [AuthMode::Classic, AuthMode::Sha256, AuthMode::UserHash][i % 3];
            c.fingerprint = i % 2 == 1;
            if i % 4 == 3 {
                c.five.transport = Transport::Tcp;
            }
            c
        })
        .collect();
    let mut model: Vec<Option<ModelAlloc>> = vec![None; clients.len()];

    for step in 0..steps {
        let now = h.now;
        // The model forgets what has expired (the server may not have swept yet).
        for m in model.iter_mut() {
            if m.as_ref().is_some_and(|a| a.expires <= now) {
                *m = None;
            }
            if let Some(a) = m {
                a.prune(now);
            }
        }
        let i = rng.below(clients.len() as u64) as usize;
        let c = &mut clients[i];
        let ctx = format!("seed {seed} step {step} client {i}");
        match rng.below(10) {
            0 => {
                let lifetime = rng.pick(&[None, Some(0), Some(100), Some(1200), Some(9000)]);
                let mut attrs = vec![];
                if let Some(l) = lifetime {
                    attrs.push(Attribute::Lifetime(l));
                }
                let r = c.allocate(&mut h, &attrs);
                if model[i].is_some() {
                    assert_eq!(r.code(), Some(437), "{ctx}");
                    seen.mismatch_437 += 1;
                } else {
                    assert!(r.is_success(), "{ctx}: {:?}", r.code());
                    let granted = clamp(lifetime).unwrap_or(secs(600));
                    assert_eq!(u64::from(r.lifetime().unwrap()), granted.as_secs());
                    model[i] = Some(ModelAlloc {
                        expires: now + granted,
                        relay: r.relayed()[0],
                        perms: HashMap::new(),
                        chans: Vec::new(),
                    });
                }
            }
            1 => {
                let lifetime = rng.pick(&[None, Some(0), Some(300), Some(3600), Some(99999)]);
                let r = c.refresh(&mut h, lifetime);
                match model[i].as_mut() {
                    None => assert_eq!(r.code(), Some(437), "{ctx}"),
                    Some(a) => {
                        assert!(r.is_success(), "{ctx}: {:?}", r.code());
                        match clamp(lifetime) {
                            None => model[i] = None,
                            Some(d) => a.expires = now + d,
                        }
                    }
                }
            }
            2 | 3 => {
                let peer = rng.pick(&peers);
                let r = c.permit(&mut h, &[peer]);
                match model[i].as_mut() {
                    None => assert_eq!(r.code(), Some(437), "{ctx}"),
                    Some(a) => {
                        assert!(r.is_success(), "{ctx}: {:?}", r.code());
                        a.perms.insert(peer.ip(), now + secs(300));
                    }
                }
            }
            4 | 5 => {
                let peer = rng.pick(&peers);
                let number = 0x4000 + rng.below(4) as u16;
                let r = c.bind(&mut h, number, peer);
                match model[i].as_mut() {
                    None => assert_eq!(r.code(), Some(437), "{ctx}"),
                    Some(a) => {
                        let by_number = a.chans.iter().position(|(n, _, _)| *n == number);
                        let by_peer = a.chans.iter().position(|(_, p, _)| *p == peer);
                        let ok = by_number == by_peer;
                        if ok {
                            assert!(r.is_success(), "{ctx}: {:?}", r.code());
                            match by_number {
                                Some(k) => a.chans[k].2 = now + secs(600),
                                None => a.chans.push((number, peer, now + secs(600))),
                            }
                            a.perms.insert(peer.ip(), now + secs(300));
                        } else {
                            assert_eq!(r.code(), Some(400), "{ctx}");
                            seen.rebind_400 += 1;
                        }
                    }
                }
            }
            6 => {
                let number = 0x4000 + rng.below(4) as u16;
                let cd = channel_data(number, b"media");
                let f = c.five;
                let got = h.client(&cd, f);
                let want = model[i].as_ref().map(|a| {
                    a.chans
                        .iter()
                        .find(|(n, _, e)| *n == number && *e > now)
                        .map(|(_, p, _)| (a.relay, *p))
                });
                match want {
                    None => assert_eq!(got, ClientAction::Drop(DropReason::NoAllocation), "{ctx}"),
                    Some(None) => {
                        assert_eq!(
                            got,
                            ClientAction::Drop(DropReason::ChannelNotBound),
                            "{ctx}"
                        );
                        seen.unbound_drops += 1;
                    }
                    Some(Some((relay, peer))) => {
                        seen.channel_relays += 1;
                        assert_eq!(
                            got,
                            ClientAction::ToPeer {
                                relay,
                                peer,
                                payload: 4..9,
                                dont_fragment: false
                            },
                            "{ctx}"
                        )
                    }
                }
            }
            7 => {
                let Some(a) = model[i].clone() else {
                    continue;
                };
                let peer = rng.pick(&peers);
                let five = c.five;
                let got = h.peer(a.relay, peer, b"from the peer");
                let permitted = a.perms.get(&peer.ip()).is_some_and(|e| *e > now);
                let channel = a
                    .chans
                    .iter()
                    .find(|(_, p, e)| *p == peer && *e > now)
                    .map(|(n, _, _)| *n);
                match (permitted, channel) {
                    (false, _) => {
                        assert_eq!(got, PeerAction::Drop(DropReason::NoPermission), "{ctx}");
                        seen.no_permission += 1;
                    }
                    (true, Some(n)) => {
                        seen.channel_relays += 1;
                        assert!(
                            matches!(got, PeerAction::ToClientChannel { channel, five: f, .. }
                            if channel == n && f == five),
                            "{ctx}: {got:?}"
                        )
                    }
                    (true, None) => {
                        seen.data_indications += 1;
                        assert_eq!(got, PeerAction::ToClient { five }, "{ctx}");
                        assert_eq!(data_indication(&h.out), (peer, b"from the peer".to_vec()));
                    }
                }
            }
            _ => {
                // Advance: sometimes land exactly on (or 1 ns before) the next boundary.
                let boundary = model
                    .iter()
                    .flatten()
                    .flat_map(|a| {
                        std::iter::once(a.expires)
                            .chain(a.perms.values().copied())
                            .chain(a.chans.iter().flat_map(|(_, _, e)| [*e, *e + HOLD]))
                    })
                    .filter(|t| *t > now)
                    .min();
                h.now = match (rng.below(3), boundary) {
                    (0, Some(b)) => b,
                    (1, Some(b)) => b - NS,
                    _ => now + secs(1 + rng.below(400)),
                };
                if rng.below(4) != 0 {
                    h.run_timers();
                    check_invariants(&h, &model, &ctx);
                }
            }
        }
    }
    seen.expired += h.server.counters().allocations_expired;
    // Everything ends: the relays all come back.
    h.now += secs(4000);
    h.run_timers();
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.io.bound.is_empty(), "seed {seed}: {:?}", h.io.bound);
    assert!(h.io.held.is_empty());
    assert_eq!(h.server.counters().permissions_active, 0);
    assert_eq!(h.server.counters().channels_active, 0);
}

fn check_invariants(h: &Harness, model: &[Option<ModelAlloc>], ctx: &str) {
    let now = h.now;
    let live: Vec<&ModelAlloc> = model.iter().flatten().filter(|a| a.expires > now).collect();
    let counters = h.server.counters();
    assert_eq!(h.server.allocation_count(), live.len(), "{ctx}");
    assert_eq!(counters.allocations_active, live.len() as u64, "{ctx}");
    // The relay sockets held are exactly those of the live allocations.
    let mut relays: Vec<_> = live.iter().map(|a| a.relay).collect();
    relays.sort();
    let mut bound: Vec<_> = h.io.bound.iter().copied().collect();
    bound.sort();
    assert_eq!(relays, bound, "{ctx}");
    let perms: usize = live
        .iter()
        .map(|a| a.perms.values().filter(|e| **e > now).count())
        .sum();
    assert_eq!(counters.permissions_active, perms as u64, "{ctx}");
    let chans: usize = live
        .iter()
        .map(|a| a.chans.iter().filter(|(_, _, e)| *e + HOLD > now).count())
        .sum();
    assert_eq!(counters.channels_active, chans as u64, "{ctx}");
    assert_eq!(
        counters.allocations_created,
        counters.allocations_active
            + counters.allocations_deleted
            + counters.allocations_expired
            + counters.allocations_closed,
        "{ctx}"
    );
    // The next deadline is never in the past after a tick.
    if let Some(d) = h.server.next_deadline() {
        assert!(d > now, "{ctx}");
    }
}

#[test]
fn seeded_simulation_against_the_model() {
    let mut seen = Seen::default();
    for seed in 1..=40 {
        simulate(seed, 600, &mut seen);
    }
    for (what, n) in [
        ("437", seen.mismatch_437),
        ("rebind 400", seen.rebind_400),
        ("channel relays", seen.channel_relays),
        ("data indications", seen.data_indications),
        ("unbound drops", seen.unbound_drops),
        ("no permission", seen.no_permission),
        ("expired", seen.expired),
    ] {
        assert!(n >= 20, "{what}: {seen:?}");
    }
}

#[test]
fn stale_nonces_during_a_long_call_recover() {
    // A client that refreshes every 9 minutes for 3 hours meets 438 and recovers.
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", 1);
    assert!(c.allocate(&mut h, &[]).is_success());
    for _ in 0..20 {
        h.advance(secs(540));
        h.run_timers();
        assert!(c.refresh(&mut h, None).is_success());
        assert!(c.permit(&mut h, &[sa("172.31.31.50:1")]).is_success());
    }
    assert!(
        h.server
            .counters()
            .auth_failure(crate::turn::AuthFailure::StaleNonce)
            >= 9
    );
    assert_eq!(h.server.counters().allocations_expired, 0);
}

// ------------------------------------------------------------------------------------
// Mutations
// ------------------------------------------------------------------------------------

fn corpus(h: &mut Harness) -> (Vec<Vec<u8>>, Client, SocketAddr) {
    let peer = sa("172.31.31.50:40000");
    let mut c = Client::new("198.51.100.7:5000", 1);
    c.fingerprint = true;
    c.mode = AuthMode::Sha256;
    let r = c.allocate(h, &[Attribute::EvenPort { reserve_next: true }]);
    let relay = r.relayed()[0];
    c.permit(h, &[peer]);
    c.bind(h, 0x4000, peer);
    let mut msgs = Vec::new();
    let t = c.next_txid();
    msgs.push(c.build(
        Method::ALLOCATE,
        t,
        &[
            Attribute::RequestedTransport(17),
            Attribute::AdditionalAddressFamily(crate::stun::AddressFamily::V6),
            Attribute::DontFragment,
            Attribute::Lifetime(1200),
        ],
    ));
    let t = c.next_txid();
    msgs.push(c.build(Method::REFRESH, t, &[Attribute::Lifetime(1200)]));
    let t = c.next_txid();
    msgs.push(c.build(
        Method::CREATE_PERMISSION,
        t,
        &[
            Attribute::XorPeerAddress(peer),
            Attribute::XorPeerAddress(sa("172.31.31.51:1")),
        ],
    ));
    let t = c.next_txid();
    msgs.push(c.build(
        Method::CHANNEL_BIND,
        t,
        &[
            Attribute::ChannelNumber(0x4001),
            Attribute::XorPeerAddress(peer),
        ],
    ));
    let t = c.next_txid();
    msgs.push(c.build(
        Method::ALLOCATE,
        t,
        &[
            Attribute::RequestedTransport(17),
            Attribute::ReservationToken([1; 8]),
        ],
    ));
    msgs.push(c.send_indication(peer, b"some data", true));
    msgs.push(channel_data(0x4000, b"channel data"));
    msgs.push(binding_request(3, true, &[Attribute::Software("x")]));
    (msgs, c, relay)
}

#[test]
fn mutated_messages_never_panic() {
    let mut h = Harness::new(config());
    let (msgs, c, relay) = corpus(&mut h);
    let f = c.five;
    let mut rng = Rng(0xDEAD_BEEF);
    // Every prefix.
    for m in &msgs {
        for n in 0..=m.len() {
            let _ = h.client(&m[..n], f);
        }
    }
    for round in 0..20_000 {
        let mut m = msgs[rng.below(msgs.len() as u64) as usize].clone();
        let edits = 1 + rng.below(4);
        for _ in 0..edits {
            match rng.below(7) {
                0 if !m.is_empty() => {
                    let k = rng.below(m.len() as u64) as usize;
                    m[k] ^= 1 << rng.below(8);
                }
                1 if !m.is_empty() => {
                    let k = rng.below(m.len() as u64) as usize;
                    m[k] = rng.next() as u8;
                }
                2 => {
                    let n = rng.below(m.len() as u64 + 1) as usize;
                    m.truncate(n);
                }
                3 => {
                    for _ in 0..rng.below(12) {
                        m.push(rng.next() as u8);
                    }
                }
                4 if m.len() >= 4 => {
                    // Rewrite the length field to agree (or not) with the size.
                    let len =
                        (m.len().saturating_sub(20) as u16).wrapping_add(rng.below(3) as u16 * 4);
                    m[2..4].copy_from_slice(&len.to_be_bytes());
                }
                5 if m.len() > 24 => {
                    // Retype an attribute header at a 4-byte boundary.
                    let k = 20 + 4 * rng.below(((m.len() - 20) / 4) as u64) as usize;
                    let t = rng.pick(&[
                        0x0012u16, 0x0013, 0x000C, 0x000D, 0x0016, 0x0017, 0x0018, 0x0019, 0x001A,
                        0x0022, 0x8000, 0x0008, 0x001C, 0x8028, 0x001E, 0x001D, 0x8002, 0x7FFF,
                    ]);
                    if k + 2 <= m.len() {
                        m[k..k + 2].copy_from_slice(&t.to_be_bytes());
                    }
                }
                _ => {
                    // Change the message type.
                    if m.len() >= 2 {
                        let t = rng.pick(&[
                            0x0001u16, 0x0003, 0x0004, 0x0008, 0x0009, 0x0016, 0x0017, 0x0111,
                            0x0103,
                        ]);
                        m[..2].copy_from_slice(&t.to_be_bytes());
                    }
                }
            }
        }
        let five = if round % 3 == 0 {
            five("198.51.100.8:7")
        } else {
            f
        };
        let _ = h.client(&m, five);
        let _ = h.peer(relay, sa("172.31.31.50:40000"), &m);
        if round % 1000 == 0 {
            h.advance(secs(7));
            h.run_timers();
        }
    }
    // The counters stayed consistent.
    let counters = h.server.counters();
    assert_eq!(
        counters.allocations_active,
        h.server.allocation_count() as u64
    );
}
