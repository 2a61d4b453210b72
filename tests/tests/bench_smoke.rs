//! `perf-scripts/compare.sh --quick` as a smoke test (issue 7: "CI runs --quick once
//! as a smoke test without asserting figures"). It builds the release binaries,
//! starts portico, HAProxy, coturn's turnserver and the built-in targets on loopback,
//! runs every scenario once for two seconds and prints the table of medians.
//!
//! Asserted: the script exits 0, every scenario has a row in the table, and portico's
//! column holds a number on every row (a scenario that failed through portico shows
//! `—` or `0`). No figure is compared with anything: a shared CI machine's timings
//! mean nothing, and speed is measured in BENCHMARKS.md, not in tests.
//!
//! The script needs wrk, haproxy and turnserver. Without them the test says so and
//! passes, unless `PORTICO_REQUIRE_BENCH_SMOKE=1` (set by `.ci/run`, which installs
//! them) makes that a failure.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn compare_quick_prints_every_row() {
    let missing: Vec<&str> = ["wrk", "haproxy", "turnserver", "taskset"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        let required = std::env::var("PORTICO_REQUIRE_BENCH_SMOKE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{missing:?} missing and PORTICO_REQUIRE_BENCH_SMOKE=1: install them \
             (apt-get install wrk haproxy coturn util-linux)"
        );
        eprintln!("skipped: {missing:?} not installed (set PORTICO_REQUIRE_BENCH_SMOKE=1 to fail)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let out_dir =
        std::env::temp_dir().join(format!("portico-compare-smoke-{}", std::process::id()));
    let started = Instant::now();
    // `timeout` bounds the whole run (the release build included) whatever happens.
    let output = Command::new("timeout")
        .arg("1200")
        .arg(root.join("perf-scripts/compare.sh"))
        .arg("--quick")
        .env("OUT", &out_dir)
        // Outside 10000-20999, where the other tests take their ports
        // (`portico_tests::next_free_ports`), and below the ephemeral range: the
        // benchmark's sockets lingering after it cannot collide with a later test.
        .env("BASE_PORT", "23100")
        .current_dir(&root)
        .output()
        .expect("run compare.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "compare.sh --quick failed ({:?}) after {:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        started.elapsed(),
        tail(&stderr, 60)
    );
    // The table: `| scenario | unit | portico | …`.
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| scenario") && !l.starts_with("|--"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let expected = [
        "HTTP keep-alive",
        "HTTP new connection",
        "TLS full handshake",
        "HTTPS keep-alive",
        "tunnel",
        "SIP",
        "LDAP",
        "H.323",
        "TURN",
        "idle HTTP",
        "idle plain tunnel, fresh process",
        "idle plain tunnel, after HTTP idle",
        "p99 at ½",
    ];
    for want in expected {
        let row = rows
            .iter()
            .find(|r| r.first().is_some_and(|name| name.contains(want)))
            .unwrap_or_else(|| panic!("no row for {want:?} in the table:\n{stdout}"));
        let portico = row.get(2).map(String::as_str).unwrap_or("");
        let value: f64 = portico
            .replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("row {row:?}: portico's column is not a number\n{stdout}"));
        assert!(value > 0.0, "row {row:?}: portico's figure is 0\n{stdout}");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    // The issue asks for under 3 minutes of running (the build comes on top):
    // reported, not asserted (a timing).
    eprintln!("compare.sh --quick took {:?}", started.elapsed());
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
