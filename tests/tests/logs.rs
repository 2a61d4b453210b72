//! Log lines on stdout in the seed's style (DESIGN.md "Logs").

use std::time::Duration;

use portico_tests::site::Lab;

fn is_timestamp(token: &str) -> bool {
    let bytes = token.as_bytes();
    bytes.len() == 15
        && bytes[8] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit())
}

#[test]
fn forwarded_and_rejected_requests_are_logged() {
    let lab = Lab::new();
    let portico = lab.start();
    let base = format!("http://127.0.0.1:{}", lab.http_port());
    let run = lab
        .curl()
        .header("Host: hq.dvl-ckl2.net")
        .fetch(&format!("{base}/PBX0/APPS/x"));
    assert_eq!(run.status(), 200);
    let run = lab
        .curl()
        .header("Host: hq.dvl-ckl2.net")
        .fetch(&format!("{base}/PBX0/CONFIG"));
    assert_eq!(run.status(), 403);

    let wanted = format!(
        "127.0.0.1 http://hq.dvl-ckl2.net GET /PBX0/APPS/x HTTP/1.1 -> 127.0.0.1:{}(new)",
        lab.master.http.port
    );
    let line = portico
        .wait_log(Duration::from_secs(3), |l| l.contains(&wanted))
        .unwrap_or_else(|| panic!("no forwarded line containing {wanted:?}"));
    let tokens: Vec<&str> = line.split_whitespace().collect();
    assert!(
        is_timestamp(tokens[0]),
        "time YYYYMMDD-HHMMSS first: {line}"
    );
    assert_eq!(tokens[1], "REVERSE-PROXY", "{line}");
    assert!(
        tokens[2].parse::<u64>().is_ok(),
        "connection id third: {line}"
    );
    assert_eq!(tokens[3], "127.0.0.1", "{line}");

    let rejected = portico
        .wait_log(Duration::from_secs(3), |l| {
            l.contains("REVERSE-PROXY") && l.contains("/PBX0/CONFIG") && l.contains("rejected")
        })
        .expect("a rejected line for /PBX0/CONFIG");
    assert!(is_timestamp(rejected.split(' ').next().unwrap_or_default()));
}

#[test]
fn forwarded_lines_are_off_when_disabled() {
    let mut lab = Lab::new();
    lab.site.proxy("log_forwarded", "false");
    let portico = lab.start();
    let run = lab
        .curl()
        .fetch(&lab.http_url("hq.dvl-ckl2.net", "/PBX0/APPS/quiet"));
    assert_eq!(run.status(), 200);
    let run = lab
        .curl()
        .fetch(&lab.http_url("hq.dvl-ckl2.net", "/PBX0/loud"));
    assert_eq!(run.status(), 403);
    portico
        .wait_log(Duration::from_secs(3), |l| l.contains("/PBX0/loud"))
        .expect("rejects are still logged");
    assert!(
        !portico
            .stdout()
            .iter()
            .any(|l| l.contains("/PBX0/APPS/quiet")),
        "a forwarded line was logged with log_forwarded = false"
    );
}
