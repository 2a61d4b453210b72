//! Services routed once, on their first message: SIP/SIPS and LDAP/LDAPS.
//!
//! The first message is buffered (within `header_limit` and `header_timeout`) and
//! handed to its pure sniffer in `portico-proto`: the SIP `From:` domain (with an
//! innovaphone `/location`), or the LDAP bind name's domain. The key selects a
//! `[[host]]`'s `sip`/`ldap` rule; the connection then goes to that target for good,
//! first message included, and bytes relay both ways (splice for plain↔plain).
//!
//! A refused first message gets an answer where the protocol has one — a SIP
//! response with the request's Via/From/To/Call-ID/CSeq, an LDAP BindResponse (or a
//! Notice of Disconnection) — then the connection is closed and the reject counts
//! against the source.
//!
//! Check Certificate (SIP here; H.323 uses the same [`choose_leg`]): when the rule
//! has `check_certificate`, the connection goes out over TLS to the `tls` port only
//! if the client presented a certificate that chains to `[tls] client_ca` and one of
//! its names matches the registration; otherwise over plain TCP to the `tcp` port.
//! For SIP the names matched are the From user part and `user@domain` (domain
//! without the `/location`): innovaphone devices and most SIP phones carry their
//! user name or SIP address in CN or a SAN (DNS, e-mail or `sip:` URI).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use portico_control::metrics::{Counter, Direction, Hist, RejectKind};
use portico_control::rules::{self, ServiceTarget};
use portico_proto::{h225, ldap, sip, Sniff};

use crate::conn::Conn;
use crate::listener::Service;
use crate::shard::{Decision, ShardCtx};
use crate::time::{until, within};
use crate::tls::ClientIdentity;

const READ_CHUNK: usize = 16 * 1024;

/// Which leg to open to a target, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// The target leg for a rule (DESIGN.md "Check Certificate"): with
/// `check_certificate`, TLS only for a trusted client certificate whose name
/// matches; without it, TLS in → TLS out. When the rule has only one port, that
/// port is used either way.
pub fn choose_leg(to: &ServiceTarget, tls_in: bool, certificate_ok: bool) -> Option<Leg> {
    let want_tls = if to.check_certificate {
        tls_in && certificate_ok
    } else {
        tls_in
    };
    let (first, second) = if want_tls {
        (
            to.tls_addr().map(|a| (a, true)),
            to.tcp_addr().map(|a| (a, false)),
        )
    } else {
        (
            to.tcp_addr().map(|a| (a, false)),
            to.tls_addr().map(|a| (a, true)),
        )
    };
    first.or(second).map(|(addr, tls)| Leg { addr, tls })
}

/// Whether a client identity vouches for `names` (any one, case-insensitively).
pub fn certificate_matches(identity: Option<&ClientIdentity>, names: &[String]) -> bool {
    identity.is_some_and(|id| {
        id.trusted
            && id
                .names
                .iter()
                .any(|n| names.iter().any(|m| m.eq_ignore_ascii_case(n)))
    })
}

/// What the sniffer of a service decided.
enum First {
    Route {
        /// Routing key (domain).
        key: String,
        /// Log summary of the first message.
        summary: String,
        /// Names a client certificate must carry for Check Certificate.
        cert_names: Vec<String>,
        /// A SIP first request other than REGISTER/INVITE: routed all the same,
        /// counted and logged.
        unusual: bool,
        /// Answer to send when the route is refused: (status or result code).
        refusal: Refusal,
    },
    Reject {
        reason: String,
        kind: RejectKind,
        /// Bytes to answer with before closing (may be empty).
        answer: Vec<u8>,
    },
}

/// How to refuse a parsed first message later (no host, target down).
enum Refusal {
    Sip(sip::SipRequest),
    Ldap {
        message_id: u32,
    },
    /// H.323 has no answer to give before the close.
    H323,
}

fn sip_summary(req: &sip::SipRequest, buf: &[u8]) -> String {
    let method = buf
        .get(req.method_range.clone())
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    format!("{method} From: {}", req.from_uri)
}

/// The public address a Record-Route carries, and the port for this listener.
fn record_route(public: &str, service: Service) -> Option<String> {
    let default_port = if service == Service::Sips { 5061 } else { 5060 };
    let (host, port) = match public.parse::<SocketAddr>() {
        Ok(sa) => (sa.ip().to_string(), sa.port()),
        Err(_) => (public.to_string(), default_port),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let transport = if service == Service::Sips {
        "tls"
    } else {
        "tcp"
    };
    Some(format!("<sip:{host}:{port};transport={transport};lr>"))
}

fn sniff(service: Service, buf: &[u8], limit: usize) -> Option<First> {
    match service {
        Service::Sip | Service::Sips => {
            let limits = sip::Limits { max_head: limit };
            match sip::parse_request(buf, &limits) {
                Sniff::Incomplete => None,
                Sniff::Reject(r) => {
                    let mut answer = Vec::new();
                    sip::write_reject_response(buf, &limits, &r, &mut answer);
                    let kind = if r.reason.contains("too large") || r.reason.contains("limit") {
                        RejectKind::TooLarge
                    } else {
                        RejectKind::Malformed
                    };
                    Some(First::Reject {
                        reason: r.reason.to_string(),
                        kind,
                        answer,
                    })
                }
                Sniff::Done(req) => {
                    let summary = sip_summary(&req, buf);
                    let unusual =
                        !matches!(req.method, sip::Method::Register | sip::Method::Invite);
                    let mut cert_names = Vec::new();
                    if let Some(user) = &req.from_user {
                        let domain = req.domain.split('/').next().unwrap_or_default();
                        cert_names.push(user.clone());
                        cert_names.push(format!("{user}@{domain}"));
                    }
                    Some(First::Route {
                        key: req.domain.clone(),
                        summary,
                        cert_names,
                        unusual,
                        refusal: Refusal::Sip(req),
                    })
                }
            }
        }
        Service::Ldap | Service::Ldaps => match ldap::parse_bind(buf, limit) {
            Sniff::Incomplete => None,
            Sniff::Reject(r) => {
                let mut answer = Vec::new();
                match r.message_id {
                    Some(id) => ldap::write_bind_response(id, r.result_code, r.reason, &mut answer),
                    None => {
                        ldap::write_notice_of_disconnection(r.result_code, r.reason, &mut answer)
                    }
                }
                let kind = if r.reason.contains("length") && r.reason.contains("limit") {
                    RejectKind::TooLarge
                } else {
                    RejectKind::Malformed
                };
                Some(First::Reject {
                    reason: r.reason.to_string(),
                    kind,
                    answer,
                })
            }
            Sniff::Done(bind) => Some(First::Route {
                key: bind.domain.clone(),
                summary: format!(
                    "bind {}",
                    bind.name
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect::<String>()
                ),
                cert_names: Vec::new(),
                unusual: false,
                refusal: Refusal::Ldap {
                    message_id: bind.message_id,
                },
            }),
        },
        Service::H323 | Service::H323Tls => match h225::parse_first(buf, limit) {
            Sniff::Incomplete => None,
            Sniff::Reject(r) => Some(First::Reject {
                reason: format!("{:?}: {}", r.layer, r.reason),
                kind: RejectKind::Malformed,
                answer: Vec::new(),
            }),
            Sniff::Done(first) => {
                let Some(key) = first.key.clone() else {
                    return Some(First::Reject {
                        reason: "no gatekeeper id in the first message".into(),
                        kind: RejectKind::NoHost,
                        answer: Vec::new(),
                    });
                };
                Some(First::Route {
                    key,
                    summary: h323_summary(&first),
                    cert_names: first.alias.iter().cloned().collect(),
                    unusual: false,
                    refusal: Refusal::H323,
                })
            }
        },
        _ => Some(First::Reject {
            reason: "service not routed here".into(),
            kind: RejectKind::Malformed,
            answer: Vec::new(),
        }),
    }
}

fn h323_summary(first: &h225::H225First) -> String {
    let ras = first.ras.map(|r| r.abbreviation()).unwrap_or("-");
    let clean = |s: &str| {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
    };
    format!(
        "{ras} gk={} alias={}",
        first
            .gatekeeper_id
            .as_deref()
            .map(clean)
            .unwrap_or_default(),
        first
            .alias
            .as_deref()
            .map(clean)
            .unwrap_or_else(|| "-".into())
    )
}

/// Keep reading H.225 frames after the first until one carries the endpoint's alias
/// (an RRQ after a GRQ without one), within the decision limits. The alias decides
/// Check Certificate; without it the connection goes over plain TCP.
async fn h323_alias(
    client: &mut Conn,
    buf: &mut Vec<u8>,
    first_len: usize,
    deadline: Instant,
    limit: usize,
) -> Option<String> {
    let mut offset = first_len;
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        match h225::parse_first(buf.get(offset..).unwrap_or_default(), limit) {
            Sniff::Done(frame) => {
                if frame.alias.is_some() {
                    return frame.alias;
                }
                offset += frame.frame_len;
                continue;
            }
            Sniff::Reject(_) => return None,
            Sniff::Incomplete => {}
        }
        if buf.len() >= limit {
            return None;
        }
        match until(deadline, client.read(&mut chunk)).await {
            Some(Ok(n)) if n > 0 => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            _ => return None,
        }
    }
}

/// The answer to a refused, parsed first message.
fn refusal_answer(
    refusal: &Refusal,
    buf: &[u8],
    sip_status: (u16, &str),
    ldap_code: u8,
    why: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    match refusal {
        Refusal::H323 => {}
        Refusal::Sip(req) => sip::write_response(buf, req, sip_status.0, sip_status.1, &mut out),
        Refusal::Ldap { message_id } => {
            ldap::write_bind_response(*message_id, ldap_code, why, &mut out)
        }
    }
    out
}

/// Relay a SIP connection whose client → target requests get a Record-Route
/// (RFC 3261 §16.6 step 4) when they create a dialog. Requests are framed with the
/// request sniffer, responses with [`sip::response_len`], keep-alive CRLFs (RFC 5626
/// §3.5.1) pass at once; anything that does not frame as SIP switches the direction
/// to plain copying, so a peer cannot stall it. The other direction is copied.
async fn sip_relay(
    client: Conn,
    target: Conn,
    initial: Vec<u8>,
    rr: &str,
    limit: usize,
    idle: std::time::Duration,
) -> std::io::Result<crate::relay::Moved> {
    let (mut c_r, mut c_w) = futures_lite::io::split(client);
    let (mut t_r, mut t_w) = futures_lite::io::split(target);
    let limits = sip::Limits { max_head: limit };
    // Idle is judged over both directions together (a registered phone may hear
    // nothing from its PBX for longer than `idle` while it sends keep-alives).
    let activity = std::cell::Cell::new(Instant::now());
    let up = async {
        let mut buf: Vec<u8> = initial;
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut out = Vec::new();
        let mut moved = 0u64;
        let mut framing = true;
        loop {
            while framing && !buf.is_empty() {
                let crlf = buf
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                if crlf > 0 {
                    t_w.write_all(buf.get(..crlf).unwrap_or_default()).await?;
                    buf.drain(..crlf);
                    moved += crlf as u64;
                    continue;
                }
                let (len, head) = if buf.starts_with(b"SIP/2.0 ") {
                    match sip::response_len(&buf, &limits) {
                        Sniff::Done(len) => (len, None),
                        Sniff::Incomplete => break,
                        Sniff::Reject(_) => {
                            framing = false;
                            break;
                        }
                    }
                } else {
                    match sip::parse_request(&buf, &limits) {
                        Sniff::Done(req) => (req.head_len + req.body_len, Some(req)),
                        Sniff::Incomplete => break,
                        Sniff::Reject(_) => {
                            framing = false;
                            break;
                        }
                    }
                };
                if buf.len() < len {
                    break;
                }
                match head {
                    Some(req) if sip::is_dialog_creating(req.method) => {
                        sip::write_with_record_route(&buf, &req, rr, &mut out);
                        t_w.write_all(&out).await?;
                        t_w.write_all(buf.get(req.head_len..len).unwrap_or_default())
                            .await?;
                        moved += (out.len() + len - req.head_len) as u64;
                    }
                    _ => {
                        t_w.write_all(buf.get(..len).unwrap_or_default()).await?;
                        moved += len as u64;
                    }
                }
                buf.drain(..len);
            }
            if !framing && !buf.is_empty() {
                t_w.write_all(&buf).await?;
                moved += buf.len() as u64;
                buf.clear();
            }
            t_w.flush().await?;
            match c_r.read(&mut chunk).await {
                Ok(n) if n > 0 => {
                    activity.set(Instant::now());
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default())
                }
                _ => break,
            }
        }
        let _ = t_w.close().await;
        Ok::<u64, std::io::Error>(moved)
    };
    let down = async {
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut moved = 0u64;
        loop {
            match t_r.read(&mut chunk).await {
                Ok(n) if n > 0 => {
                    activity.set(Instant::now());
                    c_w.write_all(chunk.get(..n).unwrap_or_default()).await?;
                    c_w.flush().await?;
                    moved += n as u64;
                }
                _ => break,
            }
        }
        let _ = c_w.close().await;
        Ok::<u64, std::io::Error>(moved)
    };
    let both = futures_lite::future::zip(up, down);
    match futures_lite::future::or(async { Some(both.await) }, async {
        crate::relay::idle_watch(&activity, idle).await;
        None
    })
    .await
    {
        Some((a, b)) => Ok(crate::relay::Moved {
            a_to_b: a.unwrap_or(0),
            b_to_a: b.unwrap_or(0),
        }),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "SIP connection idle",
        )),
    }
}

/// Why a routed connection is given up after its first message was parsed: what the
/// client is answered (SIP status, LDAP result code), how it is counted and logged.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Closed,
    NoHost,
    NoPort,
    Refused,
    Timeout,
    TlsFailed,
}

impl Failure {
    fn answer(self) -> ((u16, &'static str), u8, RejectKind, &'static str) {
        match self {
            Failure::Closed => (
                (502, "Bad Gateway"),
                ldap::result_code::UNAVAILABLE,
                RejectKind::TargetError,
                "target closed the connection",
            ),
            Failure::NoHost => (
                (403, "Forbidden"),
                ldap::result_code::UNWILLING_TO_PERFORM,
                RejectKind::NoHost,
                "no such host",
            ),
            Failure::NoPort => (
                (403, "Forbidden"),
                ldap::result_code::UNWILLING_TO_PERFORM,
                RejectKind::NoRule,
                "rule has no port",
            ),
            Failure::Refused => (
                (502, "Bad Gateway"),
                ldap::result_code::UNAVAILABLE,
                RejectKind::TargetRefused,
                "target refused the connection",
            ),
            Failure::Timeout => (
                (504, "Server Time-out"),
                ldap::result_code::UNAVAILABLE,
                RejectKind::TargetTimeout,
                "target did not answer in time",
            ),
            Failure::TlsFailed => (
                (502, "Bad Gateway"),
                ldap::result_code::UNAVAILABLE,
                RejectKind::TargetError,
                "TLS to target failed",
            ),
        }
    }
}

/// Send portico's own answer to a refused first message and close: flush, then a
/// TLS close_notify (RFC 8446 §6.1) or a FIN, so the client reads the answer and a
/// clean end rather than a reset.
async fn answer_and_close(client: &mut Conn, answer: &[u8]) {
    let _ = client.write_all(answer).await;
    let _ = client.flush().await;
    let _ = client.close().await;
}

fn rules_service(service: Service) -> rules::Service {
    match service {
        Service::Ldap | Service::Ldaps => rules::Service::Ldap,
        Service::H323 | Service::H323Tls => rules::Service::H323,
        _ => rules::Service::Sip,
    }
}

pub async fn serve(
    ctx: Rc<ShardCtx>,
    service: Service,
    conn_id: u64,
    mut client: Conn,
    peer: SocketAddr,
    scheme: &'static str,
    identity: Option<ClientIdentity>,
) {
    let snapshot = ctx.shared.rules();
    let proxy = &snapshot.config.proxy;
    let started = Instant::now();
    let deadline = started + proxy.header_timeout;
    let limit = proxy.header_limit;
    let public_nat = proxy.public_nat_address.clone();
    let mut d = Decision {
        service,
        conn_id,
        source: peer.ip(),
        scheme,
        host: "",
        summary: "",
    };

    // Buffer until the sniffer decides.
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; READ_CHUNK];
    let first = loop {
        if !buf.is_empty() {
            if let Some(first) = sniff(service, &buf, limit) {
                break first;
            }
            if buf.len() >= limit {
                break First::Reject {
                    reason: "no routing decision within the header limit".into(),
                    kind: RejectKind::TooLarge,
                    answer: Vec::new(),
                };
            }
        }
        match until(deadline, client.read(&mut chunk)).await {
            Some(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n.min(chunk.len())]),
            Some(_) if buf.is_empty() => return,
            Some(_) => {
                break First::Reject {
                    reason: "connection closed before a routing decision".into(),
                    kind: RejectKind::Malformed,
                    answer: Vec::new(),
                }
            }
            None => {
                break First::Reject {
                    reason: "no routing decision within the header timeout".into(),
                    kind: RejectKind::Timeout,
                    answer: Vec::new(),
                }
            }
        }
    };
    drop(chunk);

    let (key, summary, cert_names, unusual, refusal) = match first {
        First::Reject {
            reason,
            kind,
            answer,
        } => {
            ctx.reject(&d, kind, &reason);
            answer_and_close(&mut client, &answer).await;
            return;
        }
        First::Route {
            key,
            summary,
            cert_names,
            unusual,
            refusal,
        } => (key, summary, cert_names, unusual, refusal),
    };
    d.host = &key;
    d.summary = &summary;
    if unusual {
        // The seed routes SIP by the From of REGISTER and INVITE; other first
        // requests (OPTIONS keep-alives, SUBSCRIBE, ...) are routed by From as well,
        // and counted and logged so an operator sees them.
        ctx.metrics
            .borrow_mut()
            .add(Counter::OtherFirstRequest, service, 1);
        ctx.notice(format!("{scheme}: connection {conn_id} from {}: first request is {summary}; routed by its From domain", peer.ip()));
    }
    ctx.metrics
        .borrow_mut()
        .observe_duration(Hist::RoutingDecision, service, started.elapsed());

    let refuse = |buf: &[u8], failure: Failure| {
        let (status, ldap_code, kind, why) = failure.answer();
        ctx.reject(&d, kind, why);
        refusal_answer(&refusal, buf, status, ldap_code, why)
    };
    // Answer, count, log and close: the first message was parsed, the route failed.
    macro_rules! give_up {
        ($failure:expr) => {{
            let answer = refuse(&buf, $failure);
            answer_and_close(&mut client, &answer).await;
            return;
        }};
    }

    let Some((host, to)) = snapshot.rules.route_domain(rules_service(service), &key) else {
        give_up!(Failure::NoHost);
    };
    let mut cert_names = cert_names;
    let trusted_cert = identity.as_ref().is_some_and(|id| id.trusted);
    if matches!(service, Service::H323Tls)
        && to.check_certificate
        && trusted_cert
        && cert_names.is_empty()
    {
        if let Sniff::Done(first) = h225::parse_first(&buf, limit) {
            if let Some(alias) =
                h323_alias(&mut client, &mut buf, first.frame_len, deadline, limit).await
            {
                cert_names.push(alias);
            }
        }
    }
    let certificate_ok = certificate_matches(identity.as_ref(), &cert_names);
    let Some(leg) = choose_leg(to, client.is_tls(), certificate_ok) else {
        give_up!(Failure::NoPort);
    };

    // Connect to the target.
    let connect_started = Instant::now();
    let target = match within(proxy.connect_timeout, TcpStream::connect(leg.addr)).await {
        Some(Ok(s)) => s,
        Some(Err(_)) => {
            give_up!(Failure::Refused);
        }
        None => {
            give_up!(Failure::Timeout);
        }
    };
    let _ = target.set_nodelay(true);
    let mut target = if leg.tls {
        let config = ctx.tls.load().targets.for_host(host.verify_target).clone();
        let name = crate::tls::target_server_name(&host.name, leg.addr.ip());
        match within(
            proxy.connect_timeout,
            futures_rustls::TlsConnector::from(config).connect(name, target),
        )
        .await
        {
            Some(Ok(s)) => Conn::TlsClient(Box::new(s)),
            _ => {
                give_up!(Failure::TlsFailed);
            }
        }
    } else {
        Conn::Plain(target)
    };
    ctx.metrics.borrow_mut().observe_duration(
        Hist::TargetConnect,
        service,
        connect_started.elapsed(),
    );

    // With a public NAT address, SIP is relayed message by message client → target
    // so every dialog-creating request (RFC 3261 §16.6 step 4), the first one
    // included, gets a Record-Route with the router's public address; the bytes
    // buffered so far go through that framing too. Otherwise the buffered bytes go
    // out as they are and the connection becomes a tunnel.
    let record_route = match service {
        Service::Sip | Service::Sips => {
            public_nat.as_deref().and_then(|p| record_route(p, service))
        }
        _ => None,
    };
    let sent = if record_route.is_some() {
        Ok(0)
    } else {
        target.write_all(&buf).await.map(|_| buf.len())
    };
    let flushed = match sent {
        Ok(n) => target.flush().await.map(|()| n),
        Err(e) => Err(e),
    };
    let Ok(sent) = flushed else {
        give_up!(Failure::Closed);
    };
    ctx.forwarded(&d, &host.name, leg.addr, true);
    let idle = proxy.idle_timeout;
    drop(snapshot);

    ctx.metrics
        .borrow_mut()
        .bytes(service, Direction::ClientToTarget, sent as u64);
    let Some(rr) = record_route else {
        // A plain relay from here on: a task of its own, and this session (with its
        // sniffing buffer) ends.
        crate::shard::spawn_tunnel(ctx, service, client, target, idle);
        return;
    };
    ctx.metrics.borrow_mut().tunnel_open(service);
    let moved = sip_relay(client, target, std::mem::take(&mut buf), &rr, limit, idle).await;
    ctx.tunnel_closed(service, moved);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(tcp: Option<u16>, tls: Option<u16>, check: bool) -> ServiceTarget {
        ServiceTarget {
            target: "10.0.0.1".parse().unwrap(),
            tcp,
            tls,
            check_certificate: check,
        }
    }

    #[test]
    fn leg_without_check_certificate_follows_the_client() {
        let t = target(Some(5060), Some(5061), false);
        assert_eq!(choose_leg(&t, true, false).unwrap().addr.port(), 5061);
        assert_eq!(choose_leg(&t, false, false).unwrap().addr.port(), 5060);
        // One port: used either way.
        let only_tcp = target(Some(5060), None, false);
        assert_eq!(
            choose_leg(&only_tcp, true, false).unwrap(),
            Leg {
                addr: "10.0.0.1:5060".parse().unwrap(),
                tls: false
            }
        );
        let only_tls = target(None, Some(5061), false);
        assert!(choose_leg(&only_tls, false, false).unwrap().tls);
    }

    #[test]
    fn leg_with_check_certificate_needs_a_matching_trusted_certificate() {
        let t = target(Some(5060), Some(5061), true);
        assert_eq!(
            choose_leg(&t, true, true).unwrap(),
            Leg {
                addr: "10.0.0.1:5061".parse().unwrap(),
                tls: true
            }
        );
        assert_eq!(
            choose_leg(&t, true, false).unwrap(),
            Leg {
                addr: "10.0.0.1:5060".parse().unwrap(),
                tls: false
            }
        );
        assert!(!choose_leg(&t, false, true).unwrap().tls);
    }

    #[test]
    fn certificate_names_match_case_insensitively_and_only_when_trusted() {
        let names = vec!["ckl".to_string(), "ckl@dvl-ckl2.net".to_string()];
        let id = ClientIdentity {
            trusted: true,
            names: vec!["other".into(), "CKL@dvl-ckl2.net".into()],
        };
        assert!(certificate_matches(Some(&id), &names));
        let untrusted = ClientIdentity {
            trusted: false,
            ..id.clone()
        };
        assert!(!certificate_matches(Some(&untrusted), &names));
        assert!(!certificate_matches(None, &names));
        let wrong = ClientIdentity {
            trusted: true,
            names: vec!["john".into()],
        };
        assert!(!certificate_matches(Some(&wrong), &names));
    }

    #[test]
    fn record_route_carries_the_public_address_and_port() {
        assert_eq!(
            record_route("78.54.23.241", Service::Sip).unwrap(),
            "<sip:78.54.23.241:5060;transport=tcp;lr>"
        );
        assert_eq!(
            record_route("78.54.23.241", Service::Sips).unwrap(),
            "<sip:78.54.23.241:5061;transport=tls;lr>"
        );
        assert_eq!(
            record_route("78.54.23.241:5080", Service::Sip).unwrap(),
            "<sip:78.54.23.241:5080;transport=tcp;lr>"
        );
    }
}
