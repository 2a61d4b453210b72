//! Micro-benchmarks of the other sniffers and the TURN fast path: the SIP request
//! sniffer (`sip::parse_request`), the LDAP bind sniffer (`ldap::parse_bind`), the
//! H.225.0 first-message sniffer (`h225::parse_first`, on committed vectors), STUN
//! parse + MESSAGE-INTEGRITY (+ FINGERPRINT) check, and ChannelData parse.
//!
//! Run with `cargo bench -p portico-bench --bench protocols`. Wall-clock figures on a
//! shared machine are noisy; `perf-scripts/callgrind.sh` counts instructions for the
//! same inputs (`examples/icount.rs`), which are stable.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portico_proto::stun::{
    verify_fingerprint, verify_message_integrity, Attribute, ChannelData, Message,
};
use portico_proto::{h225, ldap, sip, Sniff};

#[path = "common/inputs.rs"]
mod inputs;
use inputs::*;

fn sip_sniffer(c: &mut Criterion) {
    let limits = sip::Limits::default();
    let mut g = c.benchmark_group("sip/parse_request");
    for (name, req) in [("register", SIP_REGISTER), ("compact-invite", SIP_COMPACT)] {
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| match sip::parse_request(black_box(req), &limits) {
                Sniff::Done(r) => r.head_len,
                other => panic!("{name}: {other:?}"),
            })
        });
    }
    g.finish();
}

fn ldap_sniffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("ldap/parse_bind");
    for (name, dn) in [("domain-user", LDAP_DOMAIN_USER), ("dn", LDAP_DN)] {
        let msg = ldap_bind(dn);
        g.bench_function(name, |b| {
            b.iter(|| match ldap::parse_bind(black_box(&msg), 16384) {
                Sniff::Done(r) => r.message_len,
                other => panic!("{name}: {other:?}"),
            })
        });
    }
    g.finish();
}

fn h225_sniffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("h225/parse_first");
    // (name, frame, whether it carries a routing key)
    let cases = [
        ("grq-domain", H225_GRQ, true),
        ("rrq-other-features", H225_RRQ_FEATURES, true),
        ("setup-no-ras", H225_SETUP_NO_RAS, false),
    ];
    for (name, frame, routable) in cases {
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| match h225::parse_first(black_box(frame), H225_LIMIT) {
                Sniff::Done(f) if f.key.is_some() == routable => f.frame_len,
                other => panic!("{name}: {other:?}"),
            })
        });
    }
    g.finish();
}

fn stun(c: &mut Criterion) {
    let msg = stun_allocate();
    let key = turn_key();
    let mut g = c.benchmark_group("stun");
    g.bench_function("parse/allocate", |b| {
        b.iter(|| {
            let m = Message::new_checked(black_box(msg.as_slice())).expect("parses");
            m.attributes().count()
        })
    });
    g.bench_function("parse+integrity+fingerprint/allocate", |b| {
        b.iter(|| {
            let m = Message::new_checked(black_box(msg.as_slice())).expect("parses");
            let user = matches!(
                m.decode(portico_proto::stun::AttributeType::USERNAME),
                Some(Ok(Attribute::Username(_)))
            );
            user && verify_message_integrity(&m, black_box(&key)) && verify_fingerprint(&m)
        })
    });
    g.finish();
}

fn channel(c: &mut Criterion) {
    let msg = channel_data();
    c.bench_function("stun/channel_data/parse-160B", |b| {
        b.iter(|| {
            let cd = ChannelData::new_checked(black_box(msg.as_slice())).expect("parses");
            (cd.channel(), cd.data().len())
        })
    });
}

criterion_group!(
    benches,
    sip_sniffer,
    ldap_sniffer,
    h225_sniffer,
    stun,
    channel
);
criterion_main!(benches);
