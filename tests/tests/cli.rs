//! The command line outside `run`'s traffic: `portico check` and start-up failures.

use std::net::TcpListener;
use std::time::Duration;

use portico_tests::binary::{check, workspace_dir, Portico};
use portico_tests::site::Lab;
use portico_tests::{free_port, Scratch};

#[test]
fn check_accepts_the_seed_reference_example() {
    let example = workspace_dir().join("examples/dvl-ckl2.toml");
    let done = check(&example);
    assert_eq!(
        done.code(),
        Some(0),
        "check must accept examples/dvl-ckl2.toml; stderr:\n{}",
        done.stderr
    );
}

#[test]
fn check_accepts_the_test_site() {
    let lab = Lab::new();
    let config = lab.scratch.write("portico.toml", lab.site.to_toml());
    let done = check(&config);
    assert_eq!(done.code(), Some(0), "stderr:\n{}", done.stderr);
}

/// Writes `text` as broken.toml, runs check, and expects a failure naming `broken.toml:<line>`.
fn assert_check_names_line(text: &str, line: usize) {
    let scratch = Scratch::new();
    let config = scratch.write("broken.toml", text);
    let done = check(&config);
    assert!(
        matches!(done.code(), Some(code) if code != 0),
        "check must fail on:\n{text}\nexit {:?}",
        done.code()
    );
    let wanted = format!("broken.toml:{line}");
    assert!(
        done.stderr.contains(&wanted),
        "the error must name {wanted}; stderr:\n{}",
        done.stderr
    );
}

#[test]
fn check_rejects_a_wrong_type_naming_the_line() {
    assert_check_names_line(
        "[proxy]\nipv6 = false\n\n[proxy.listen]\nhttp = \"ninety\"\nbind = [\"127.0.0.1\"]\n",
        5,
    );
}

#[test]
fn check_rejects_a_rule_without_target_naming_the_line() {
    assert_check_names_line(
        "[proxy.listen]\nhttp = 8080\n\n[[host]]\nname = \"hq.dvl-ckl2.net\"\nhttp = [\n  { path = \"/PBX0/APPS\", tcp = 80, tls = 443 },\n]\n",
        7,
    );
}

#[test]
fn check_rejects_a_syntax_error_naming_the_line() {
    assert_check_names_line(
        "[proxy.listen]\nhttp = 8080\n\n[[host]]\nname = \"hq.dvl-ckl2.net\nhttp = []\n",
        5,
    );
}

#[test]
fn run_fails_clearly_when_a_port_is_taken() {
    let port = free_port();
    let _taken = TcpListener::bind(("127.0.0.1", port)).expect("hold the port");
    let mut lab = Lab::new();
    lab.site.http = Some(port);
    let config = lab.scratch.write("portico.toml", lab.site.to_toml());
    let mut portico = Portico::spawn(&config, &["--shards", "1"]);
    let status = portico.wait_exit(Duration::from_secs(10));
    let status = status.expect("portico must exit when its port is taken");
    assert!(!status.success());
    let said = format!(
        "{}\n{}",
        portico.stderr().join("\n"),
        portico.stdout().join("\n")
    );
    assert!(
        said.contains(&port.to_string()),
        "the message must name the port {port}:\n{said}"
    );
}
