//! Listening sockets: which (service, address, port) to listen on, and making one
//! SO_REUSEPORT socket per shard for each. Before any socket is made, each address is
//! probed with a plain bind (no SO_REUSEPORT): if another process holds the port —
//! even another portico with SO_REUSEPORT, which would silently split the traffic —
//! the probe fails and portico refuses to start, naming the port and the service.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use anyhow::{anyhow, Result};
use socket2::{Domain, Protocol, Socket, Type};

use portico_control::config::ListenConfig;

/// The services portico listens for (shared with the metrics labels).
pub use portico_control::metrics::Service;

/// Whether the client leg of `service` is TLS.
pub fn is_tls(service: Service) -> bool {
    matches!(
        service,
        Service::Https | Service::Ldaps | Service::Sips | Service::H323Tls
    )
}

/// One listening endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub service: Service,
    pub addr: SocketAddr,
}

/// Every endpoint the config asks for.
pub fn endpoints(listen: &ListenConfig) -> Vec<Endpoint> {
    let ports = [
        (Service::Http, listen.http),
        (Service::Https, listen.https),
        (Service::Ldap, listen.ldap),
        (Service::Ldaps, listen.ldaps),
        (Service::Sip, listen.sip),
        (Service::Sips, listen.sips),
        (Service::H323, listen.h323),
        (Service::H323Tls, listen.h323_tls),
    ];
    let mut out = Vec::new();
    for (service, port) in ports {
        let Some(port) = port else { continue };
        for ip in &listen.bind {
            out.push(Endpoint {
                service,
                addr: SocketAddr::new(*ip, port),
            });
        }
    }
    out
}

fn new_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // `::` must not also take IPv4: `0.0.0.0` has its own sockets.
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// Fail unless `addr` is free: bind without SO_REUSEPORT and close again.
pub fn probe(ep: &Endpoint) -> Result<()> {
    let s = new_socket(ep.addr)?;
    s.set_reuse_address(true)?;
    s.bind(&ep.addr.into()).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "is already in use by another process; stop it or choose another port".to_string()
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "is not an address of this machine; fix [proxy.listen] bind".to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                "needs privileges (ports below 1024 need root or CAP_NET_BIND_SERVICE)".to_string()
            }
            _ => e.to_string(),
        };
        anyhow!(
            "cannot listen for {} on {}: {} {}",
            ep.service.name(),
            ep.addr,
            ep.addr,
            why
        )
    })?;
    Ok(())
}

/// A listening socket with SO_REUSEPORT for one shard.
pub fn bind_reuseport(ep: &Endpoint) -> Result<RawFd> {
    let s = new_socket(ep.addr)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nodelay(true)?;
    s.bind(&ep.addr.into()).map_err(|e| {
        anyhow!(
            "cannot listen for {} on {}: {e}",
            ep.service.name(),
            ep.addr
        )
    })?;
    s.listen(4096)?;
    Ok(s.into_raw_fd())
}
