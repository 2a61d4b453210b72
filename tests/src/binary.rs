//! The `portico` binary under test: where it is, building it once per test process,
//! and [`Portico`], a running instance that is killed when dropped.
//!
//! The binary is `<target dir>/<profile>/portico`, the target dir being
//! `CARGO_TARGET_DIR` or `<workspace>/target` and the profile `PORTICO_PROFILE` or
//! `debug`. It is built with `cargo build -p portico-dataplane --bin portico` the first
//! time a test asks for it, so `cargo test` alone is enough.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn profile() -> String {
    std::env::var("PORTICO_PROFILE")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "debug".to_string())
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_dir().join(dir)
            }
        }
        _ => workspace_dir().join("target"),
    }
}

/// The path of the portico binary, built on first use (once per test process).
pub fn portico_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let profile = profile();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_dir()).args([
            "build",
            "-p",
            "portico-dataplane",
            "--bin",
            "portico",
        ]);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd
            .output()
            .expect("run cargo build for the portico binary");
        assert!(
            out.status.success(),
            "building the portico binary failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = target_dir().join(&profile).join("portico");
        assert!(bin.is_file(), "no portico binary at {}", bin.display());
        bin
    })
}

/// The result of a one-shot command run with [`run_within`].
#[derive(Debug)]
pub struct Finished {
    /// `None` when the command was killed for running out of time.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` to completion, feeding it `stdin`, killing it after `limit`.
pub fn run_within(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Finished {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut input = child.stdin.take();
    let stdin = stdin.to_vec();
    let feeder = thread::spawn(move || {
        if let Some(input) = input.as_mut() {
            let _ = input.write_all(&stdin);
        }
        // Dropping `input` closes the pipe: the command sees end of input.
    });
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = feeder.join();
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut all);
        }
        all
    })
}

/// `portico check --config FILE`, with a 20 s limit.
pub fn check(config: &Path) -> Finished {
    let mut cmd = Command::new(portico_bin());
    cmd.arg("check").arg("--config").arg(config);
    run_within(&mut cmd, b"", Duration::from_secs(20))
}

/// How [`Portico::start`] knows a listener is ready.
#[derive(Clone, Copy, Debug)]
pub enum Ready {
    /// A TCP connect succeeds (then the connection is closed without a byte).
    Tcp(u16),
    /// A TLS handshake completes (any certificate accepted), then a clean close. Used on
    /// TLS ports so the probe is not an aborted handshake, which portico may count
    /// against 127.0.0.1 as a reject.
    Tls(u16),
}

/// A running `portico run` process: its output is collected line by line, and it is
/// killed (and reaped) when this guard is dropped. If the test is panicking, the
/// collected output is printed to help find out why.
pub struct Portico {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Portico {
    /// Starts `portico run --config <config> <extra args>` and waits (up to 10 s) until
    /// every listener in `ready` answers on 127.0.0.1.
    pub fn start(config: &Path, extra_args: &[&str], ready: &[Ready]) -> Portico {
        let mut portico = Portico::spawn(config, extra_args);
        for &probe in ready {
            portico.wait_ready(probe, Duration::from_secs(10));
        }
        portico
    }

    /// Starts `portico run` without waiting for anything.
    pub fn spawn(config: &Path, extra_args: &[&str]) -> Portico {
        let mut child = Command::new(portico_bin())
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portico run");
        let stdout = collect_lines(child.stdout.take());
        let stderr = collect_lines(child.stderr.take());
        Portico {
            child,
            stdout,
            stderr,
        }
    }

    fn wait_ready(&mut self, probe: Ready, limit: Duration) {
        let (Ready::Tcp(port) | Ready::Tls(port)) = probe;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "portico exited ({status}) before listening on {port}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout().join("\n"),
                    self.stderr().join("\n")
                );
            }
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                match probe {
                    Ready::Tcp(_) => return,
                    Ready::Tls(_) => {
                        if tls_handshake(stream) {
                            return;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "portico did not listen on 127.0.0.1:{port} within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout().join("\n"),
                self.stderr().join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` for the process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id (for sending signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines printed on stdout so far (the log).
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Lines printed on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits up to `limit` for a stdout line for which `wanted` holds.
    pub fn wait_log(&self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        crate::wait_for(limit, || self.stdout().into_iter().find(|l| wanted(l)))
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            // Give the pipe readers a moment to pick up the last lines.
            thread::sleep(Duration::from_millis(50));
            eprintln!("---- portico stdout ----\n{}", self.stdout().join("\n"));
            eprintln!("---- portico stderr ----\n{}", self.stderr().join("\n"));
        }
    }
}

/// Completes a TLS handshake on `stream` (SNI `hq.dvl-ckl2.net`, any certificate) and
/// closes it with close_notify; true when the handshake completed.
fn tls_handshake(stream: TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let Ok(name) = rustls::pki_types::ServerName::try_from("hq.dvl-ckl2.net") else {
        return false;
    };
    let Ok(mut session) = rustls::ClientConnection::new(crate::pki::any_server_config(), name)
    else {
        return false;
    };
    let mut stream = stream;
    while session.is_handshaking() {
        if session.complete_io(&mut stream).is_err() {
            return false;
        }
    }
    session.send_close_notify();
    let _ = session.complete_io(&mut stream);
    true
}

fn collect_lines(pipe: Option<impl Read + Send + 'static>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    if let Some(pipe) = pipe {
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            while let Ok(n) = reader.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if let Ok(mut all) = sink.lock() {
                    all.push(text);
                }
                line.clear();
            }
        });
    }
    lines
}
