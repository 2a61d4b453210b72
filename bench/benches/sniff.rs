//! Micro-benchmarks of the per-request work on portico's hot path: parsing a request
//! head, normalising its path, writing the forwarded head, and the route lookup
//! against the rules of the seed's reference site (`examples/dvl-ckl2.toml`).
//!
//! Run with `cargo bench -p portico-bench --bench sniff`. Wall-clock figures on a
//! shared machine are noisy: compare runs of the same machine, in the same session.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portico_control::config;
use portico_control::rules::RuleTable;
use portico_proto::http::{parse_request, write_forward_head, ForwardInfo, Limits};
use portico_proto::path::normalise;
use portico_proto::Sniff;

/// What a current desktop browser sends for an app page (~700 bytes of head).
const BROWSER_REQUEST: &[u8] = b"GET /PBX0/APPS/websocket/app.htm?lang=en&theme=dark HTTP/1.1\r\n\
Host: hq.dvl-ckl2.net\r\n\
User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f2a9c1e7b3d5a6f8e0c2b4d6a8f0e1c; lang=en\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: none\r\n\
Upgrade-Insecure-Requests: 1\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
\r\n";

/// The smallest request a load generator sends.
const MINIMAL_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\r\n";

const CLEAN_PATH: &[u8] = b"/PBX0/APPS/websocket/app.htm";
const TRAVERSAL_PATH: &[u8] = b"/PBX0/APPS/./x/%2e%2e/../../ADMIN/%7Euser/index.htm";

fn parse(c: &mut Criterion) {
    eprintln!("browser request: {} bytes", BROWSER_REQUEST.len());
    let limits = Limits::default();
    let mut g = c.benchmark_group("http/parse_request");
    for (name, req) in [("browser", BROWSER_REQUEST), ("minimal", MINIMAL_REQUEST)] {
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| match parse_request(black_box(req), &limits) {
                Sniff::Done(head) => head,
                other => panic!("{name}: not a complete request: {other:?}"),
            })
        });
    }
    g.finish();
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("path/normalise");
    for (name, path) in [("clean", CLEAN_PATH), ("traversal", TRAVERSAL_PATH)] {
        g.bench_function(name, |b| b.iter(|| normalise(black_box(path))));
    }
    g.finish();
}

fn forward_head(c: &mut Criterion) {
    let limits = Limits::default();
    let Sniff::Done(head) = parse_request(BROWSER_REQUEST, &limits) else {
        panic!("browser request does not parse");
    };
    let info = ForwardInfo {
        client_ip: "203.0.113.45",
        proto: "https",
    };
    let mut out = Vec::with_capacity(2048);
    c.bench_function("http/write_forward_head/browser", |b| {
        b.iter(|| {
            write_forward_head(
                black_box(BROWSER_REQUEST),
                black_box(&head),
                &info,
                &mut out,
            );
            out.len()
        })
    });
}

fn route(c: &mut Criterion) {
    let text = include_str!("../../examples/dvl-ckl2.toml");
    let config = match config::parse(Path::new("dvl-ckl2.toml"), text) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("skipping rules/route_http: examples/dvl-ckl2.toml does not parse:");
            for e in errors {
                eprintln!("  {e:?}");
            }
            return;
        }
    };
    let table = RuleTable::from_config(&config);
    let mut g = c.benchmark_group("rules/route_http");
    // A hit on a long rule, a hit on the catch-all host, a miss on a known host, an
    // unknown host, and a host name in mixed case (the case-folding path).
    let cases = [
        ("hit", "hq.dvl-ckl2.net", "/PBX0/APPS/websocket/app.htm"),
        ("catch-all", "apps.dvl-ckl2.net", "/any/path/here"),
        ("no-rule", "hq.dvl-ckl2.net", "/secret/admin"),
        ("no-host", "unknown.example.com", "/PBX0/APPS/x"),
        ("mixed-case-host", "HQ.Dvl-Ckl2.NET", "/PBX0/session/x"),
    ];
    for (name, host, path) in cases {
        g.bench_function(name, |b| {
            b.iter(|| table.route_http(black_box(host), black_box(path)).is_ok())
        });
    }
    g.finish();

    // The whole per-request decision: parse, then route (normalisation is inside the
    // parse).
    let limits = Limits::default();
    c.bench_function("http/parse_and_route/browser", |b| {
        b.iter(
            || match parse_request(black_box(BROWSER_REQUEST), &limits) {
                Sniff::Done(head) => table.route_http(&head.host, &head.path).is_ok(),
                _ => false,
            },
        )
    });
}

criterion_group!(benches, parse, paths, forward_head, route);
criterion_main!(benches);
