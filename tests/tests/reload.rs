//! Hot reload (issue 3, item 1): SIGHUP and `portico reload` re-read the file; new
//! connections get the new rules, established connections and tunnels keep going, a
//! bad file is refused whole and the old rules stay, listeners come and go.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use portico_tests::binary::Portico;
use portico_tests::client::{connect, read_response};
use portico_tests::ops::{self, host_block, plain_host_block, SlowTarget, Tunnel};
use portico_tests::site::{Lab, APPS, BRANCH_B, HQ};
use portico_tests::target::pattern;
use portico_tests::{free_port, wait_for};

const NEW: &str = "new.dvl-ckl2.net";
const EXTRA: &str = "extra.dvl-ckl2.net";
const SLOW: &str = "slow.dvl-ckl2.net";

/// Writes `text` as the lab's config file (the one portico was started with).
fn rewrite(lab: &Lab, text: &str) -> PathBuf {
    lab.scratch.write("portico.toml", text)
}

fn control_socket(lab: &Lab) -> PathBuf {
    lab.scratch.path().join("ctl.sock")
}

/// Starts portico with `--control-socket` in the lab's scratch dir.
fn start(lab: &Lab, shards: &str) -> Portico {
    let socket = control_socket(lab);
    let socket = socket.to_str().expect("utf-8 scratch path").to_string();
    lab.start_with(&["--shards", shards, "--control-socket", &socket])
}

/// Waits (up to 5 s) for the `n`-th log line containing `wanted`.
fn wait_nth_log(portico: &Portico, wanted: &str, n: usize) -> String {
    wait_for(Duration::from_secs(5), || {
        let lines: Vec<String> = portico
            .stdout()
            .into_iter()
            .filter(|l| l.contains(wanted))
            .collect();
        lines.get(n - 1).cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "no log line #{n} containing {wanted:?}; log:\n{}",
            portico.stdout().join("\n")
        )
    })
}

/// The 1-based number of the first line of `text` containing `needle`, searching
/// from byte `from`.
fn line_of(text: &str, needle: &str, from: usize) -> usize {
    let at = text[from..]
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the config"))
        + from;
    text[..at].matches('\n').count() + 1
}

/// One GET through plain HTTP with `Host: host`: (status, body). Curl resolves
/// `host` to 127.0.0.1 on the lab's HTTP port.
fn get(lab: &Lab, host: &str, path: &str) -> (u16, String) {
    let run = lab
        .curl()
        .resolve(host, lab.http_port())
        .fetch(&lab.http_url(host, path));
    match run.replies.first() {
        Some(r) => (r.status, r.text()),
        None => (0, format!("curl exit {}: {}", run.exit, run.stderr)),
    }
}

/// A value of the scrape (the first sample of `name`), parsed by prometheus-parse.
fn metric(text: &str, name: &str) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parse the exposition");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// Polls the scrape (up to 5 s: shards and the control thread report periodically)
/// until `name` has `value`; returns the last value seen.
fn settle_metric(port: u16, name: &str, value: f64) -> Option<f64> {
    let mut last = None;
    let found = wait_for(Duration::from_secs(5), || {
        last = metric(&ops::scrape(port), name);
        (last == Some(value)).then_some(())
    });
    found.map(|()| value).or(last)
}

#[test]
fn reload_under_traffic_drops_nothing_and_applies_the_new_rules() {
    let mut lab = Lab::new();
    let slow = SlowTarget::start();
    lab.site.append(&plain_host_block(SLOW, slow.port));
    let portico = start(&lab, "2");
    let first_config = lab.site.to_toml();
    let http = lab.http_port();

    // Before: the rules and the listener of the reloads do not exist yet.
    assert_eq!(get(&lab, NEW, "/NEW/before").0, 421, "no such host yet");
    assert!(
        TcpStream::connect(("127.0.0.2", http)).is_err(),
        "nothing listens on 127.0.0.2 yet"
    );

    // A WebSocket tunnel, open across both reloads.
    let mut tunnel = Tunnel::open(http, "master");
    assert_eq!(tunnel.echo("before").expect("echo before"), "before");

    // A slow download: 1.5 MB trickled over 5 s.
    const DOWNLOAD: usize = 1_500_000;
    let download = thread::spawn(move || {
        let mut stream = connect(http);
        stream
            .write_all(
                format!("GET /dl/slow/{DOWNLOAD}/5000 HTTP/1.1\r\nHost: {SLOW}\r\n\r\n").as_bytes(),
            )
            .expect("send the download request");
        read_response(&mut BufReader::new(stream))
    });

    // Two request loops: HTTP with a new connection per request, HTTPS with four
    // requests per connection (keep-alive across the reloads).
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let http_done = Arc::new(AtomicUsize::new(0));
    let https_done = Arc::new(AtomicUsize::new(0));
    let http_loop = {
        let (curl, stop, failures, done) = (
            lab.curl(),
            stop.clone(),
            failures.clone(),
            http_done.clone(),
        );
        let url = lab.http_url(HQ, "/PBX0/APPS/loop-");
        thread::spawn(move || {
            let started = Instant::now();
            for i in 0..400 {
                if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(25) {
                    break;
                }
                let run = curl.fetch(&format!("{url}{i}"));
                let want = format!("master /PBX0/APPS/loop-{i}");
                let ok = run.exit == 0 && run.statuses() == [200] && run.text() == want;
                if !ok {
                    failures.lock().unwrap().push(format!(
                        "http #{i}: exit {} statuses {:?} stderr {}",
                        run.exit,
                        run.statuses(),
                        run.stderr
                    ));
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let https_loop = {
        let (curl, stop, failures, done) = (
            lab.curl(),
            stop.clone(),
            failures.clone(),
            https_done.clone(),
        );
        let base = lab.https_url(BRANCH_B, "/PBX0/APPS/tls-");
        thread::spawn(move || {
            let started = Instant::now();
            for i in 0..150 {
                if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(25) {
                    break;
                }
                let urls: Vec<String> = (0..4).map(|k| format!("{base}{i}-{k}")).collect();
                let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
                let run = curl.get(&refs);
                let bodies: Vec<String> = run.replies.iter().map(|r| r.text()).collect();
                let want: Vec<String> = (0..4)
                    .map(|k| format!("slave /PBX0/APPS/tls-{i}-{k}"))
                    .collect();
                if run.exit != 0 || run.statuses() != [200; 4] || bodies != want {
                    failures.lock().unwrap().push(format!(
                        "https #{i}: exit {} statuses {:?} stderr {}",
                        run.exit,
                        run.statuses(),
                        run.stderr
                    ));
                }
                done.fetch_add(4, Ordering::SeqCst);
            }
        })
    };

    // The download is under way, and both loops are running.
    wait_for(Duration::from_secs(5), || {
        (slow.started() == 1).then_some(())
    })
    .expect("the download reached the slow target");
    wait_for(Duration::from_secs(10), || {
        (http_done.load(Ordering::SeqCst) >= 5 && https_done.load(Ordering::SeqCst) >= 8)
            .then_some(())
    })
    .expect("both request loops are running");

    // Reload 1, by SIGHUP: a new host and a listener on 127.0.0.2.
    lab.site.append(&host_block(
        NEW,
        "/NEW",
        lab.master.http.port,
        lab.master.tls.port,
    ));
    let second_config = lab.site.to_toml().replace(
        "bind = [\"127.0.0.1\"]",
        "bind = [\"127.0.0.1\", \"127.0.0.2\"]",
    );
    assert_ne!(second_config, first_config);
    rewrite(&lab, &second_config);
    ops::signal(&portico, "HUP");
    let line = wait_nth_log(&portico, "PORTICO reload: generation 2", 1);
    assert!(
        line.contains(&format!("now listening on http 127.0.0.2:{http}")),
        "the reload must open the new listener: {line}"
    );
    assert_eq!(
        get(&lab, NEW, "/NEW/after"),
        (200, "master /NEW/after".to_string()),
        "the new host works after the reload"
    );
    let via_new_listener = lab
        .curl()
        .arg("--resolve")
        .arg(format!("{APPS}:{http}:127.0.0.2"))
        .fetch(&lab.http_url(APPS, "/on-127.0.0.2"));
    assert_eq!(
        (via_new_listener.exit, via_new_listener.statuses()),
        (0, vec![200]),
        "the listener added by the reload: {}",
        via_new_listener.stderr
    );
    assert_eq!(via_new_listener.text(), "apps /on-127.0.0.2");

    // Reload 2, by `portico reload`: one more host.
    assert_eq!(get(&lab, EXTRA, "/EXTRA/before").0, 421, "no such host yet");
    lab.site.append(&host_block(
        EXTRA,
        "/EXTRA",
        lab.apps.http.port,
        lab.apps.tls.port,
    ));
    let third_config = lab.site.to_toml().replace(
        "bind = [\"127.0.0.1\"]",
        "bind = [\"127.0.0.1\", \"127.0.0.2\"]",
    );
    rewrite(&lab, &third_config);
    let reply = ops::reload(&control_socket(&lab));
    let said = reply.stdout_text();
    assert_eq!(
        reply.code(),
        Some(0),
        "reload refused: {said}{}",
        reply.stderr
    );
    assert!(said.starts_with("ok generation 3"), "{said}");
    assert_eq!(
        get(&lab, EXTRA, "/EXTRA/after"),
        (200, "apps /EXTRA/after".to_string())
    );
    assert_eq!(
        slow.finished(),
        0,
        "the download must still be running when the second reload is done"
    );
    let at_second_reload = (
        http_done.load(Ordering::SeqCst),
        https_done.load(Ordering::SeqCst),
    );

    // Established things kept going.
    assert_eq!(
        tunnel.echo("after both reloads").expect("echo after"),
        "after both reloads",
        "the tunnel must survive the reloads"
    );
    let response = download
        .join()
        .expect("download thread")
        .expect("the download must complete");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), DOWNLOAD, "download length");
    assert!(response.body == pattern(DOWNLOAD), "download bytes altered");

    // Some more traffic after the reloads, then stop the loops.
    wait_for(Duration::from_secs(10), || {
        (http_done.load(Ordering::SeqCst) >= at_second_reload.0 + 5
            && https_done.load(Ordering::SeqCst) >= at_second_reload.1 + 8)
            .then_some(())
    })
    .expect("the loops go on after the reloads");
    stop.store(true, Ordering::SeqCst);
    http_loop.join().expect("http loop");
    https_loop.join().expect("https loop");
    let failures = failures.lock().unwrap();
    let total = http_done.load(Ordering::SeqCst) + https_done.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed around the reloads:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 40, "too little traffic to tell: {total} requests");
    eprintln!(
        "{total} requests, {} of them after the second reload, none failed",
        total - at_second_reload.0 - at_second_reload.1
    );
    assert_eq!(get(&lab, NEW, "/NEW/still").0, 200, "reload 1's host stays");
}

#[test]
fn a_bad_config_is_refused_and_the_old_rules_keep_working() {
    let mut lab = Lab::new();
    let metrics = free_port();
    lab.site
        .append(&format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"));
    let portico = start(&lab, "1");
    let good = lab.site.to_toml();
    ops::wait_scrape(metrics);
    assert_eq!(
        metric(
            &ops::scrape(metrics),
            "portico_config_last_reload_successful"
        ),
        Some(1.0)
    );
    let works = |lab: &Lab| {
        assert_eq!(
            get(lab, HQ, "/PBX0/APPS/old"),
            (200, "master /PBX0/APPS/old".to_string()),
            "the old rules must keep working"
        );
    };
    let socket = control_socket(&lab);

    // A syntax error: an unterminated string.
    let broken = format!("{good}\n[[host]]\nname = \"broken.dvl-ckl2.net\nhttp = []\n");
    let line = line_of(&broken, "name = \"broken", good.len());
    rewrite(&lab, &broken);
    let reply = ops::reload(&socket);
    let said = reply.stdout_text();
    assert_eq!(
        reply.code(),
        Some(1),
        "a syntax error must be refused: {said}"
    );
    assert!(
        said.starts_with("error reload refused, generation 1 stays"),
        "{said}"
    );
    assert!(
        said.contains(&format!("portico.toml:{line}")),
        "the reply must name portico.toml:{line}:\n{said}"
    );
    works(&lab);
    assert_eq!(
        settle_metric(metrics, "portico_config_last_reload_successful", 0.0),
        Some(0.0),
        "a refused reload must show in the metrics"
    );
    assert_eq!(
        metric(&ops::scrape(metrics), "portico_config_generation"),
        Some(1.0)
    );
    wait_nth_log(&portico, "PORTICO reload refused, generation 1 stays", 1);

    // Semantically invalid: a second [[host]] with the name of the first, and a new
    // host: refused whole, so the new host does not appear either.
    let new_block = host_block(NEW, "/NEW", lab.master.http.port, lab.master.tls.port);
    let dup_block = host_block(HQ, "/DUP", lab.slave.http.port, lab.slave.tls.port);
    let duplicate = format!("{good}{new_block}{dup_block}");
    let hq_name = format!("name = \"{HQ}\"");
    let first_hq = line_of(&duplicate, &hq_name, 0);
    let second_hq = line_of(&duplicate, &hq_name, good.len() + new_block.len());
    assert!(second_hq > first_hq);
    rewrite(&lab, &duplicate);
    let reply = ops::reload(&socket);
    let said = reply.stdout_text();
    assert_eq!(
        reply.code(),
        Some(1),
        "a duplicate host must be refused: {said}"
    );
    assert!(
        said.contains(&format!("portico.toml:{second_hq}")) && said.contains("used twice"),
        "the reply must name portico.toml:{second_hq} and the duplicate:\n{said}"
    );
    works(&lab);
    assert_eq!(
        get(&lab, NEW, "/NEW/x").0,
        421,
        "a refused file applies nothing"
    );

    // The same file by SIGHUP: refused too, said in the log.
    ops::signal(&portico, "HUP");
    let line = wait_nth_log(&portico, "PORTICO reload refused, generation 1 stays", 2);
    assert!(line.contains("used twice"), "{line}");
    works(&lab);

    // A port that cannot be bound: refused whole as well.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken_port = taken.local_addr().expect("addr").port();
    let mut with_taken = lab.site.clone();
    with_taken.https = Some(taken_port);
    with_taken.append(&host_block(
        NEW,
        "/NEW",
        lab.master.http.port,
        lab.master.tls.port,
    ));
    rewrite(&lab, &with_taken.to_toml());
    let reply = ops::reload(&socket);
    let said = reply.stdout_text();
    assert_eq!(
        reply.code(),
        Some(1),
        "an unbindable port must be refused: {said}"
    );
    assert!(said.contains(&taken_port.to_string()), "{said}");
    works(&lab);
    assert_eq!(
        get(&lab, NEW, "/NEW/x").0,
        421,
        "a refused file applies nothing"
    );
    drop(taken);

    // A good file again: applied, and the metrics say so.
    lab.site.append(&host_block(
        NEW,
        "/NEW",
        lab.master.http.port,
        lab.master.tls.port,
    ));
    rewrite(&lab, &lab.site.to_toml());
    let reply = ops::reload(&socket);
    let said = reply.stdout_text();
    assert_eq!(reply.code(), Some(0), "{said}{}", reply.stderr);
    assert!(said.starts_with("ok generation 2"), "{said}");
    assert_eq!(get(&lab, NEW, "/NEW/x"), (200, "master /NEW/x".to_string()));
    assert_eq!(
        settle_metric(metrics, "portico_config_last_reload_successful", 1.0),
        Some(1.0)
    );
    assert_eq!(
        settle_metric(metrics, "portico_config_generation", 2.0),
        Some(2.0)
    );
}

#[test]
fn a_listener_added_by_reload_accepts_and_a_removed_one_stops_but_its_connections_go_on() {
    let mut lab = Lab::new();
    let https = lab.site.https.take().expect("the lab has an https port");
    let http = lab.http_port();
    let _portico = start(&lab, "2");
    assert!(
        TcpStream::connect(("127.0.0.1", https)).is_err(),
        "https is not configured yet"
    );

    // Established on the HTTP listener: a keep-alive connection and a tunnel.
    let keep = connect(http);
    let mut keep_writer = keep.try_clone().expect("clone");
    let mut keep_reader = BufReader::new(keep);
    let ask = |w: &mut TcpStream, r: &mut BufReader<TcpStream>, path: &str| {
        w.write_all(format!("GET {path} HTTP/1.1\r\nHost: {HQ}\r\n\r\n").as_bytes())
            .and_then(|()| read_response(r))
    };
    let first = ask(&mut keep_writer, &mut keep_reader, "/PBX0/APPS/keep-1").expect("first");
    assert_eq!(
        (first.status, first.text()),
        (200, "master /PBX0/APPS/keep-1".to_string())
    );
    let mut tunnel = Tunnel::open(http, "master");

    // Reload: HTTPS added, HTTP removed.
    lab.site.https = Some(https);
    lab.site.http = None;
    rewrite(&lab, &lab.site.to_toml());
    let reply = ops::reload(&control_socket(&lab));
    let said = reply.stdout_text();
    assert_eq!(reply.code(), Some(0), "{said}{}", reply.stderr);
    assert!(
        said.contains(&format!("now listening on https 127.0.0.1:{https}")),
        "{said}"
    );
    assert!(
        said.contains(&format!("stopped listening on http 127.0.0.1:{http}")),
        "{said}"
    );

    // The added listener accepts (several connections: every shard listens).
    let curl = lab.curl().resolve(APPS, https);
    for i in 0..6 {
        let run = curl.fetch(&format!("https://{APPS}:{https}/added-{i}"));
        assert_eq!(
            (run.exit, run.statuses()),
            (0, vec![200]),
            "the added https listener, request {i}: {}",
            run.stderr
        );
        assert_eq!(run.text(), format!("apps /added-{i}"));
    }

    // The removed one stops accepting (shards close it within moments).
    let closed = wait_for(Duration::from_secs(3), || {
        TcpStream::connect(("127.0.0.1", http))
            .is_err()
            .then_some(())
    });
    assert!(closed.is_some(), "the removed http listener still accepts");

    // What was established through it goes on.
    let second = ask(&mut keep_writer, &mut keep_reader, "/PBX0/APPS/keep-2")
        .expect("the keep-alive connection of the removed listener must still work");
    assert_eq!(
        (second.status, second.text()),
        (200, "master /PBX0/APPS/keep-2".to_string())
    );
    assert_eq!(
        first.header("x-conn"),
        second.header("x-conn"),
        "same target connection"
    );
    assert_eq!(
        tunnel.echo("still here").expect("tunnel after removal"),
        "still here"
    );
}
