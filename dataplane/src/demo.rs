//! `portico demo`: the seed's reference topology on loopback, in one process.
//!
//! Stand-in targets play the master PBX (127.31.31.2), the slave PBX (127.31.31.3)
//! and the application platform (127.31.31.12), each on a plain and a TLS port, and
//! answer every HTTP request with their name and the path they got. WebSocket
//! upgrades are answered with `101` and an echo. They are small blocking servers on
//! their own threads, kept out of the shards: they stand in for boxes elsewhere on
//! the network.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// One stand-in target box.
#[derive(Debug, Clone)]
pub struct StandIn {
    pub name: &'static str,
    pub ip: &'static str,
}

pub const BOXES: [StandIn; 3] = [
    StandIn {
        name: "master PBX",
        ip: "127.31.31.2",
    },
    StandIn {
        name: "slave PBX",
        ip: "127.31.31.3",
    },
    StandIn {
        name: "app platform",
        ip: "127.31.31.12",
    },
];

/// Ports the stand-ins listen on (plain, TLS): the targets' "80" and "443".
pub const TARGET_HTTP: u16 = 8080;
pub const TARGET_HTTPS: u16 = 8443;

/// The demo configuration: the seed's reference rules with loopback targets.
pub fn config_text(http: u16, https: u16) -> String {
    let rules = |ip: &str| {
        [
            "/PBX0/APPCLIENT/appclient.htm",
            "/PBX0/APPS",
            "/PBX0/session",
            "/PBX0/user.soap",
            "/PBX0/ADMIN",
            "/OAUTH2/oauth2_login",
        ]
        .iter()
        .map(|p| format!("  {{ path = \"{p}\", target = \"{ip}\", tcp = {TARGET_HTTP}, tls = {TARGET_HTTPS} }},\n"))
        .collect::<String>()
    };
    format!(
        r#"# portico demo: the seed's reference topology on loopback.
[proxy]
ipv4 = true
ipv6 = false
log_forwarded = true
log_rejected = true
blacklist_expiration_min = 1
suspicious_requests_per_min = 20

[proxy.listen]
http = {http}
https = {https}
bind = ["127.0.0.1"]

[[host]]
name = "apps.dvl-ckl2.net"
http = [
  {{ path = "", target = "127.31.31.12", tcp = {TARGET_HTTP}, tls = {TARGET_HTTPS} }},
]

[[host]]
name = "branch-b.dvl-ckl2.net"
http = [
{branch}]

[[host]]
name = "hq.dvl-ckl2.net"
http = [
{hq}]
"#,
        branch = rules("127.31.31.3"),
        hq = rules("127.31.31.2"),
    )
}

/// Start one stand-in on `addr`; `tls` when it should speak TLS (self-signed).
pub fn spawn_stand_in(
    name: &'static str,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("stand-in {name}: cannot listen on {addr}"))?;
    std::thread::Builder::new()
        .name(format!("stand-in {addr}"))
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let tls = tls.clone();
                let _ = std::thread::Builder::new().spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                    match tls {
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            let mut s = rustls::StreamOwned::new(conn, stream);
                            stand_in_session(name, &mut s);
                        }
                        None => {
                            let mut s = stream;
                            stand_in_session(name, &mut s);
                        }
                    }
                });
            }
        })?;
    Ok(())
}

/// A self-signed server configuration for the stand-ins.
pub fn stand_in_tls() -> Result<Arc<rustls::ServerConfig>> {
    let made = rcgen::generate_simple_self_signed(vec!["stand-in.invalid".to_string()])?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(made.key_pair.serialize_der())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)?;
    Ok(Arc::new(cfg))
}

/// Serve HTTP/1.1 requests on one connection until it closes.
fn stand_in_session<S: Read + Write>(name: &str, s: &mut S) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Read one head.
        let (head_len, path, upgrade, body_len, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let path = req.path.unwrap_or("").to_string();
                    let has = |name: &str, token: &str| {
                        req.headers.iter().any(|h| {
                            h.name.eq_ignore_ascii_case(name)
                                && String::from_utf8_lossy(h.value)
                                    .to_ascii_lowercase()
                                    .contains(token)
                        })
                    };
                    let upgrade = has("upgrade", "websocket");
                    let close = has("connection", "close");
                    let body_len = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| {
                            std::str::from_utf8(h.value)
                                .ok()?
                                .trim()
                                .parse::<usize>()
                                .ok()
                        })
                        .unwrap_or(0);
                    break (n, path, upgrade, body_len, close);
                }
                Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => {}
                _ => return,
            }
            match s.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        buf.drain(..head_len);
        // Skip the body.
        let mut left = body_len;
        while left > 0 {
            if !buf.is_empty() {
                let take = left.min(buf.len());
                buf.drain(..take);
                left -= take;
                continue;
            }
            match s.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        if upgrade {
            let greeting = format!("{name}: websocket echo\n");
            let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
            let _ = s.write_all(greeting.as_bytes());
            let _ = s.flush();
            if !buf.is_empty() {
                let _ = s.write_all(&buf);
            }
            loop {
                match s.read(&mut chunk) {
                    Ok(n) if n > 0 => {
                        if s.write_all(&chunk[..n]).and_then(|_| s.flush()).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        }
        let body = format!("{name} got {path}\n");
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if s.write_all(head.as_bytes())
            .and_then(|_| s.write_all(body.as_bytes()))
            .and_then(|_| s.flush())
            .is_err()
        {
            return;
        }
        if close {
            return;
        }
    }
}

/// Start every stand-in of the reference topology.
pub fn spawn_all() -> Result<()> {
    let tls = stand_in_tls()?;
    for b in BOXES.iter() {
        let ip: std::net::IpAddr = b.ip.parse()?;
        spawn_stand_in(b.name, SocketAddr::new(ip, TARGET_HTTP), None)?;
        spawn_stand_in(b.name, SocketAddr::new(ip, TARGET_HTTPS), Some(tls.clone()))?;
    }
    Ok(())
}

/// The lines `portico demo` prints for the user to try.
pub fn try_lines(http: u16, https: u16) -> String {
    let r = |host: &str, port: u16| format!("--resolve {host}:{port}:127.0.0.1");
    let mut s = String::new();
    s.push_str("Try these (allowed):\n");
    s.push_str(&format!(
        "  curl {} http://hq.dvl-ckl2.net:{http}/PBX0/APPS/app_manager/websocket\n",
        r("hq.dvl-ckl2.net", http)
    ));
    s.push_str(&format!(
        "  curl -k {} https://hq.dvl-ckl2.net:{https}/PBX0/APPCLIENT/appclient.htm\n",
        r("hq.dvl-ckl2.net", https)
    ));
    s.push_str(&format!(
        "  curl -k {} https://branch-b.dvl-ckl2.net:{https}/PBX0/ADMIN/index.htm\n",
        r("branch-b.dvl-ckl2.net", https)
    ));
    s.push_str(&format!(
        "  curl {} http://apps.dvl-ckl2.net:{http}/dvl-ckl2.net/usersapp/picture\n",
        r("apps.dvl-ckl2.net", http)
    ));
    s.push_str(&format!(
        "  curl --path-as-is {} http://hq.dvl-ckl2.net:{http}/PBX0/APPS/../ADMIN2   # normalised to /PBX0/ADMIN2\n",
        r("hq.dvl-ckl2.net", http)
    ));
    s.push_str("And these (refused):\n");
    s.push_str(&format!(
        "  curl {} http://hq.dvl-ckl2.net:{http}/PBX0/CONFIG          # 403: no rule for the path\n",
        r("hq.dvl-ckl2.net", http)
    ));
    s.push_str(&format!(
        "  curl --path-as-is {} http://hq.dvl-ckl2.net:{http}/PBX0/APPS/%2e%2e/MY   # 403 after normalising\n",
        r("hq.dvl-ckl2.net", http)
    ));
    s.push_str(&format!(
        "  curl {} http://intranet.example:{http}/               # 421: no such host\n",
        r("intranet.example", http)
    ));
    s
}
