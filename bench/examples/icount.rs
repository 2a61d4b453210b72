//! Instruction counts per call of every sniffer, for `perf-scripts/callgrind.sh`.
//!
//! `icount NAME N` prepares the input, then calls the sniffer N times (each result
//! through `black_box`). callgrind counts the whole process; the script runs N and 2N
//! iterations and divides the difference by N, so start-up and input preparation cancel
//! out. `icount list` prints the names. An example (not a `src/bin`) so it can use the
//! dev-dependencies (`portico-proto`, `portico-control`) and the load generator stays
//! independent of the code under test.

use std::hint::black_box;
use std::path::Path;

use portico_control::config;
use portico_control::rules::RuleTable;
use portico_proto::stun::{verify_fingerprint, verify_message_integrity, ChannelData, Message};
use portico_proto::{h225, http, ldap, sip, Sniff};

#[path = "../benches/common/inputs.rs"]
mod inputs;
use inputs::*;

const BROWSER_REQUEST: &[u8] = b"GET /PBX0/APPS/websocket/app.htm?lang=en HTTP/1.1\r\n\
Host: hq.dvl-ckl2.net\r\n\
User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f2a9c1e7b3d5a6f8e0c2b4d6a8f0e1c; lang=en\r\n\
\r\n";

const NAMES: &[&str] = &[
    "http-parse-browser",
    "route-http-hit",
    "sip-parse-register",
    "sip-parse-compact",
    "ldap-parse-bind-domain-user",
    "ldap-parse-bind-dn",
    "h225-parse-grq-domain",
    "h225-parse-rrq-other-features",
    "h225-parse-setup-no-ras",
    "stun-parse-allocate",
    "stun-parse-integrity-fingerprint",
    "channel-data-parse",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("list");
    if name == "list" {
        for n in NAMES {
            println!("{n}");
        }
        return;
    }
    let n: u64 = match args.get(2).and_then(|v| v.parse().ok()) {
        Some(n) => n,
        None => {
            eprintln!("usage: icount NAME ITERATIONS | icount list");
            std::process::exit(2);
        }
    };
    let mut acc = 0usize;
    match name {
        "http-parse-browser" => {
            let limits = http::Limits::default();
            for _ in 0..n {
                if let Sniff::Done(h) = http::parse_request(black_box(BROWSER_REQUEST), &limits) {
                    acc += black_box(h).path.len();
                }
            }
        }
        "route-http-hit" => {
            let text = include_str!("../../examples/dvl-ckl2.toml");
            let config =
                config::parse(Path::new("dvl-ckl2.toml"), text).expect("seed config parses");
            let table = RuleTable::from_config(&config);
            for _ in 0..n {
                acc += usize::from(
                    table
                        .route_http(
                            black_box("hq.dvl-ckl2.net"),
                            black_box("/PBX0/APPS/websocket/app.htm"),
                        )
                        .is_ok(),
                );
            }
        }
        "sip-parse-register" | "sip-parse-compact" => {
            let req = if name == "sip-parse-register" {
                SIP_REGISTER
            } else {
                SIP_COMPACT
            };
            let limits = sip::Limits::default();
            for _ in 0..n {
                if let Sniff::Done(r) = sip::parse_request(black_box(req), &limits) {
                    acc += black_box(r).head_len;
                }
            }
        }
        "ldap-parse-bind-domain-user" | "ldap-parse-bind-dn" => {
            let dn = if name == "ldap-parse-bind-dn" {
                LDAP_DN
            } else {
                LDAP_DOMAIN_USER
            };
            let msg = ldap_bind(dn);
            for _ in 0..n {
                if let Sniff::Done(r) = ldap::parse_bind(black_box(&msg), 16384) {
                    acc += black_box(r).message_len;
                }
            }
        }
        "h225-parse-grq-domain" | "h225-parse-rrq-other-features" | "h225-parse-setup-no-ras" => {
            let (frame, routable) = match name {
                "h225-parse-grq-domain" => (H225_GRQ, true),
                "h225-parse-rrq-other-features" => (H225_RRQ_FEATURES, true),
                _ => (H225_SETUP_NO_RAS, false),
            };
            for _ in 0..n {
                if let Sniff::Done(f) = h225::parse_first(black_box(frame), H225_LIMIT) {
                    if f.key.is_some() == routable {
                        acc += black_box(f).frame_len;
                    }
                }
            }
        }
        "stun-parse-allocate" => {
            let msg = stun_allocate();
            for _ in 0..n {
                if let Ok(m) = Message::new_checked(black_box(msg.as_slice())) {
                    acc += m.attributes().count();
                }
            }
        }
        "stun-parse-integrity-fingerprint" => {
            let msg = stun_allocate();
            let key = turn_key();
            for _ in 0..n {
                if let Ok(m) = Message::new_checked(black_box(msg.as_slice())) {
                    acc += usize::from(
                        verify_message_integrity(&m, black_box(&key)) && verify_fingerprint(&m),
                    );
                }
            }
        }
        "channel-data-parse" => {
            let msg = channel_data();
            for _ in 0..n {
                if let Ok(cd) = ChannelData::new_checked(black_box(msg.as_slice())) {
                    acc += usize::from(cd.channel()) + cd.data().len();
                }
            }
        }
        other => {
            eprintln!("unknown NAME {other:?}; `icount list` prints the names");
            std::process::exit(2);
        }
    }
    // Every call must have succeeded: a sniffer that rejects its input would be
    // measured on its reject path.
    if acc == 0 {
        eprintln!("{name}: no call succeeded");
        std::process::exit(1);
    }
    println!("{name} {n} {}", black_box(acc));
}
