//! SIP and SIPS through portico (DESIGN.md "Routing rules", "Check Certificate";
//! issue 4): routing by the From domain with an innovaphone `/location`, compact
//! headers, portico's own 403/502 answers, Record-Route with the public NAT address,
//! and Check Certificate on the `sips` listener.
//!
//! Plain SIP is driven by sipp (Debian `sip-tester`; scenarios in `tests/sipp/`) or,
//! where exact bytes matter, a raw TcpStream; SIPS by a rustls client (sipp has no TLS
//! in Debian's build). Behind portico each PBX is a pair of recording SIP targets
//! (TCP and TLS) that answer 200 and name themselves in `X-Target`.

use std::time::Duration;

use portico_tests::binary::Portico;
use portico_tests::free_port;
use portico_tests::pki::Leaf;
use portico_tests::routed::{host_block, rule, start, Listen};
use portico_tests::sip::{
    exchange_until_close, read_message, simple_request, sipp, sipp_report, sips_exchange,
    tls_connect, tls_read_until_end, ClientCa, San, SipMessage, SipTarget, TlsEnd, SDP,
};
use portico_tests::site::Lab;
use portico_tests::Scratch;

const PUBLIC: &str = "78.54.23.241";
const RR_TCP: &str = "Record-Route: <sip:78.54.23.241:5060;transport=tcp;lr>";
const RR_TLS: &str = "Record-Route: <sip:78.54.23.241:5061;transport=tls;lr>";

/// The seed's SIP part on loopback: `dvl-ckl2.net` → master, `dvl-ckl2.net/branch-b`
/// → slave (both with check_certificate), plus test hosts: `dvl-ckl2.net/no-check`
/// (master, without check_certificate), `dvl-ckl2.net/tcp-only` (master, one port)
/// and `dvl-ckl2.net/down` (nothing listens).
struct SipLab {
    lab: Lab,
    master_tcp: SipTarget,
    master_tls: SipTarget,
    slave_tcp: SipTarget,
    slave_tls: SipTarget,
    /// Issues the trusted client certificates (`[tls] client_ca`).
    clients: ClientCa,
    sip: u16,
    sips: u16,
    portico: Option<Portico>,
}

impl SipLab {
    fn new(public_nat: bool) -> SipLab {
        let mut lab = Lab::new();
        lab.site.http = None;
        lab.site.https = None;
        let pbx = Leaf::self_signed("pbx self-signed", &["127.0.0.1", "localhost"]);
        let master_tcp = SipTarget::plain("master-tcp");
        let master_tls = SipTarget::tls("master-tls", &pbx);
        let slave_tcp = SipTarget::plain("slave-tcp");
        let slave_tls = SipTarget::tls("slave-tls", &pbx);
        let clients = ClientCa::new("trusted phones CA");
        let client_ca = lab.scratch.write("trusted-clients.pem", clients.pem());
        lab.site.tls_path("client_ca", &client_ca);
        if public_nat {
            lab.site
                .proxy("public_nat_address", &format!("\"{PUBLIC}\""));
        }
        let (m, s) = (
            (master_tcp.port, master_tls.port),
            (slave_tcp.port, slave_tls.port),
        );
        for (name, tcp, tls, check) in [
            ("dvl-ckl2.net", Some(m.0), Some(m.1), Some(true)),
            ("dvl-ckl2.net/branch-b", Some(s.0), Some(s.1), Some(true)),
            ("dvl-ckl2.net/no-check", Some(m.0), Some(m.1), None),
            ("dvl-ckl2.net/tcp-only", Some(m.0), None, Some(true)),
            (
                "dvl-ckl2.net/down",
                Some(free_port()),
                Some(free_port()),
                Some(true),
            ),
        ] {
            lab.site
                .append(&host_block(name, &[rule("sip", tcp, tls, check)]));
        }
        SipLab {
            lab,
            master_tcp,
            master_tls,
            slave_tcp,
            slave_tls,
            clients,
            sip: free_port(),
            sips: free_port(),
            portico: None,
        }
    }

    fn start(mut self) -> SipLab {
        self.portico = Some(start(
            &self.lab,
            &[Listen::new("sip", self.sip), Listen::new("sips", self.sips)],
        ));
        self
    }

    fn portico(&self) -> &Portico {
        self.portico.as_ref().expect("portico started")
    }

    /// Connections accepted by every SIP target.
    fn target_connections(&self) -> [usize; 4] {
        [
            self.master_tcp.connections(),
            self.master_tls.connections(),
            self.slave_tcp.connections(),
            self.slave_tls.connections(),
        ]
    }

    /// Waits for portico's forwarded log line for `host` to 127.0.0.1:`port`.
    fn forwarded_line(&self, scheme_host: &str, port: u16) -> String {
        let wanted = format!("-> 127.0.0.1:{port}(new)");
        self.portico()
            .wait_log(Duration::from_secs(5), |l| {
                l.contains(scheme_host) && l.contains(&wanted)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no log line for {scheme_host} {wanted}:\n{}",
                    self.portico().stdout().join("\n")
                )
            })
    }
}

fn x_target(response: &SipMessage) -> String {
    response
        .header_values("X-Target", None)
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no X-Target in response:\n{}", response.head))
}

/// Asserts that every message has exactly the Record-Route lines `expected` (`None`:
/// none at all) and that a given one is the first header line.
fn assert_record_route(message: &SipMessage, expected: Option<&str>) {
    let rr = message.header_values("Record-Route", None);
    match expected {
        Some(line) => {
            assert_eq!(
                message.first_header_line(),
                line,
                "Record-Route must come right after the request line:\n{}",
                message.head
            );
            assert_eq!(rr.len(), 1, "one Record-Route:\n{}", message.head);
        }
        None => assert!(rr.is_empty(), "no Record-Route expected:\n{}", message.head),
    }
}

// ---------------------------------------------------------------- plain SIP, sipp

#[test]
fn sipp_register_is_routed_by_from_domain_and_location() {
    let lab = SipLab::new(true).start();
    let work = Scratch::new();

    let run = sipp(work.path(), "register.xml", lab.sip, "dvl-ckl2.net", 3);
    assert_eq!(run.code(), Some(0), "{}", sipp_report(&run, work.path()));
    let got = lab.master_tcp.wait_messages(3, Duration::from_secs(5));
    assert_eq!(lab.master_tcp.methods(), ["REGISTER"; 3]);
    // One TCP connection per call (-t tn): each one was routed on its own.
    assert_eq!(lab.master_tcp.connections(), 3);
    for message in &got {
        let from = message.header_values("From", Some("f"));
        assert_eq!(from.len(), 1);
        assert!(
            from[0].starts_with("\"Alice\" <sip:alice@dvl-ckl2.net>;tag="),
            "{}",
            from[0]
        );
        // REGISTER creates no dialog: no Record-Route even with public_nat_address.
        assert_record_route(message, None);
    }
    lab.forwarded_line("sip://dvl-ckl2.net REGISTER", lab.master_tcp.port);

    let work = Scratch::new();
    let run = sipp(
        work.path(),
        "register.xml",
        lab.sip,
        "dvl-ckl2.net/branch-b",
        2,
    );
    assert_eq!(run.code(), Some(0), "{}", sipp_report(&run, work.path()));
    let got = lab.slave_tcp.wait_messages(2, Duration::from_secs(5));
    assert_eq!(lab.slave_tcp.methods(), ["REGISTER"; 2]);
    assert!(got[0].header_values("From", None)[0].contains("@dvl-ckl2.net/branch-b>"));
    lab.forwarded_line("sip://dvl-ckl2.net/branch-b REGISTER", lab.slave_tcp.port);

    // Nothing went to the TLS ports, and the master got no more than its own three.
    assert_eq!(lab.target_connections(), [3, 0, 2, 0]);
}

#[test]
fn sipp_register_with_compact_headers_is_routed() {
    let lab = SipLab::new(true).start();
    let work = Scratch::new();
    let run = sipp(
        work.path(),
        "register_compact.xml",
        lab.sip,
        "dvl-ckl2.net/branch-b",
        2,
    );
    assert_eq!(run.code(), Some(0), "{}", sipp_report(&run, work.path()));
    let got = lab.slave_tcp.wait_messages(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    for message in &got {
        // Forwarded as sent: compact names kept.
        let from = message.header_values("f", None);
        assert_eq!(from.len(), 1, "{}", message.head);
        assert!(from[0].starts_with("<sip:alice@dvl-ckl2.net/branch-b>;tag="));
    }
    assert_eq!(lab.target_connections(), [0, 0, 2, 0]);
}

#[test]
fn sipp_invite_dialog_goes_through_with_record_route_of_the_public_address() {
    let lab = SipLab::new(true).start();
    let work = Scratch::new();
    let run = sipp(work.path(), "invite.xml", lab.sip, "dvl-ckl2.net", 2);
    assert_eq!(run.code(), Some(0), "{}", sipp_report(&run, work.path()));
    let got = lab.master_tcp.wait_messages(6, Duration::from_secs(5));
    assert_eq!(
        lab.master_tcp.methods(),
        ["INVITE", "ACK", "BYE", "INVITE", "ACK", "BYE"]
    );
    assert_eq!(lab.master_tcp.connections(), 2);
    for message in &got {
        match message.method() {
            "INVITE" => {
                assert_record_route(message, Some(RR_TCP));
                // Content-Length still matches: the target read exactly the SDP.
                let body = String::from_utf8_lossy(&message.body);
                assert!(body.starts_with("v=0\r\n"), "body: {body:?}");
                assert!(body.contains("m=audio "), "body: {body:?}");
                assert!(body.ends_with("a=rtpmap:0 PCMU/8000\r\n"), "body: {body:?}");
            }
            // In-dialog requests later on the connection are relayed as sent.
            _ => assert_record_route(message, None),
        }
    }
    lab.forwarded_line("sip://dvl-ckl2.net INVITE", lab.master_tcp.port);
    assert_eq!(lab.target_connections(), [2, 0, 0, 0]);
}

#[test]
fn sipp_register_for_an_unknown_domain_gets_403_and_no_target_sees_a_byte() {
    let lab = SipLab::new(true).start();
    let work = Scratch::new();
    let run = sipp(
        work.path(),
        "register_forbidden.xml",
        lab.sip,
        "example.org",
        2,
    );
    assert_eq!(run.code(), Some(0), "{}", sipp_report(&run, work.path()));
    let line = lab.portico().wait_log(Duration::from_secs(5), |l| {
        l.contains("sip://example.org") && l.contains("rejected")
    });
    assert!(
        line.is_some(),
        "no reject line:\n{}",
        lab.portico().stdout().join("\n")
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lab.target_connections(), [0, 0, 0, 0]);
}

// ---------------------------------------------------------- plain SIP, raw bytes

#[test]
fn refused_register_is_answered_403_with_the_request_headers_then_closed() {
    let lab = SipLab::new(true).start();
    let request = "REGISTER sip:example.org SIP/2.0\r\n\
        Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-403-test\r\n\
        Max-Forwards: 70\r\n\
        From: \"Eve\" <sip:eve@example.org>;tag=eve-1\r\n\
        To: <sip:eve@example.org>\r\n\
        Call-ID: 403-test@192.0.2.10\r\n\
        CSeq: 7 REGISTER\r\n\
        Contact: <sip:eve@192.0.2.10:5060;transport=tcp>\r\n\
        Content-Length: 0\r\n\r\n";
    let (answer, closed) = exchange_until_close(lab.sip, request.as_bytes());
    assert!(closed, "portico must close after the 403");
    let mut reader = &answer[..];
    let response = read_message(&mut reader, 0)
        .expect("read answer")
        .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&answer)));
    assert_eq!(response.start_line(), "SIP/2.0 403 Forbidden");
    assert_eq!(
        response.header_values("Via", Some("v")),
        ["SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-403-test"]
    );
    assert_eq!(
        response.header_values("From", Some("f")),
        ["\"Eve\" <sip:eve@example.org>;tag=eve-1"]
    );
    let to = response.header_values("To", Some("t"));
    assert_eq!(to.len(), 1);
    assert!(
        to[0].starts_with("<sip:eve@example.org>;tag="),
        "To with a tag: {}",
        to[0]
    );
    assert_eq!(
        response.header_values("Call-ID", Some("i")),
        ["403-test@192.0.2.10"]
    );
    assert_eq!(response.header_values("CSeq", None), ["7 REGISTER"]);
    assert!(reader.is_empty(), "nothing after the 403");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lab.target_connections(), [0, 0, 0, 0]);
}

#[test]
fn from_host_is_matched_without_case_and_port() {
    let lab = SipLab::new(false).start();
    let request = simple_request("REGISTER", "sip:Alice@DVL-CKL2.Net:5060", "case-test");
    let (answer, closed) = exchange_until_close_after_answer(lab.sip, &request);
    assert!(
        answer.starts_with("SIP/2.0 200 OK\r\n"),
        "answer: {answer:?} (closed: {closed})"
    );
    assert!(answer.contains("X-Target: master-tcp\r\n"), "{answer}");
    // A location is part of the key, also with an upper-case host.
    let request = simple_request("REGISTER", "sip:alice@DVL-ckl2.NET/branch-b", "case-test-2");
    let (answer, _) = exchange_until_close_after_answer(lab.sip, &request);
    assert!(answer.contains("X-Target: slave-tcp\r\n"), "{answer}");
    assert_eq!(lab.target_connections(), [1, 0, 1, 0]);
}

/// Sends `request` and reads for 1 s (the connection stays open after a 200): the text.
fn exchange_until_close_after_answer(port: u16, request: &str) -> (String, bool) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let (bytes, closed) = portico_tests::sip::read_until_close(&mut stream, Duration::from_secs(1));
    (String::from_utf8_lossy(&bytes).into_owned(), closed)
}

#[test]
fn target_down_is_answered_502() {
    let lab = SipLab::new(true).start();
    let request = simple_request("REGISTER", "sip:alice@dvl-ckl2.net/down", "down-test");
    let (answer, closed) = exchange_until_close(lab.sip, request.as_bytes());
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("SIP/2.0 502 Bad Gateway\r\n"),
        "answer: {text:?}"
    );
    assert!(text.contains("Call-ID: down-test\r\n"), "{text}");
    assert!(closed, "portico must close after the 502");
}

#[test]
fn invite_body_arriving_later_and_a_pipelined_request_reach_the_target_intact() {
    use std::io::Write;
    let lab = SipLab::new(true).start();
    let invite = simple_request("INVITE", "sip:alice@dvl-ckl2.net", "split");
    let (head, body) = invite.split_at(invite.find("\r\n\r\n").expect("head end") + 4);
    let (body_a, body_b) = body.split_at(10);
    let options = simple_request("OPTIONS", "sip:alice@dvl-ckl2.net", "split-2");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", lab.sip)).expect("connect");
    // Head alone (routing decided on it), then the body in two pieces, the second
    // together with the next request.
    for piece in [
        head.to_string(),
        body_a.to_string(),
        format!("{body_b}{options}"),
    ] {
        stream.write_all(piece.as_bytes()).expect("send");
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = lab.master_tcp.wait_messages(2, Duration::from_secs(5));
    assert_eq!(lab.master_tcp.methods(), ["INVITE", "OPTIONS"]);
    assert_record_route(&got[0], Some(RR_TCP));
    assert_eq!(String::from_utf8_lossy(&got[0].body), SDP);
    // The INVITE as sent, with only the Record-Route line added.
    let expected = invite.replacen("SIP/2.0\r\n", &format!("SIP/2.0\r\n{RR_TCP}\r\n"), 1);
    assert_eq!(format!("{}{}", got[0].head, SDP), expected);
    assert_eq!(got[1].head, options);
    assert_eq!(lab.master_tcp.connections(), 1);
}

#[test]
fn without_public_nat_address_invite_is_forwarded_unchanged() {
    let lab = SipLab::new(false).start();
    let request = simple_request("INVITE", "sip:alice@dvl-ckl2.net", "no-nat");
    let (answer, _) = exchange_until_close_after_answer(lab.sip, &request);
    assert!(answer.contains("X-Target: master-tcp\r\n"), "{answer}");
    let got = lab.master_tcp.wait_messages(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let forwarded = format!("{}{}", got[0].head, String::from_utf8_lossy(&got[0].body));
    assert_eq!(forwarded, request, "byte for byte");
}

#[test]
fn subscribe_gets_record_route_and_options_does_not() {
    let lab = SipLab::new(true).start();
    for (method, expected) in [("SUBSCRIBE", Some(RR_TCP)), ("OPTIONS", None)] {
        let request = simple_request(method, "sip:alice@dvl-ckl2.net", method);
        let (answer, _) = exchange_until_close_after_answer(lab.sip, &request);
        assert!(answer.contains("X-Target: master-tcp\r\n"), "{answer}");
        let got = lab.master_tcp.messages();
        let message = got
            .iter()
            .find(|m| m.method() == method)
            .unwrap_or_else(|| panic!("no {method} at the target"));
        assert_record_route(message, expected);
    }
}

// ------------------------------------------------------------- SIPS, Check Certificate

#[test]
fn sips_with_a_trusted_certificate_naming_the_from_user_goes_to_the_tls_port() {
    let lab = SipLab::new(true).start();
    let alice = lab.clients.issue("alice", &[]);
    let register = simple_request("REGISTER", "sip:alice@dvl-ckl2.net", "sips-cn");
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&alice), &register);
    assert_eq!(response.start_line(), "SIP/2.0 200 OK");
    assert_eq!(x_target(&response), "master-tls");
    let got = lab.master_tls.wait_messages(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method(), "REGISTER");
    assert_record_route(&got[0], None);
    lab.forwarded_line("sips://dvl-ckl2.net REGISTER", lab.master_tls.port);

    // INVITE over sips: the Record-Route names the public address's TLS port.
    let invite = simple_request("INVITE", "sip:alice@dvl-ckl2.net", "sips-invite");
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&alice), &invite);
    assert_eq!(x_target(&response), "master-tls");
    let got = lab.master_tls.wait_messages(2, Duration::from_secs(5));
    assert_eq!(got[1].method(), "INVITE");
    assert_record_route(&got[1], Some(RR_TLS));
    assert_eq!(String::from_utf8_lossy(&got[1].body), SDP);
    assert_eq!(lab.target_connections(), [0, 2, 0, 0]);
}

#[test]
fn sips_without_a_client_certificate_goes_to_the_tcp_port() {
    let lab = SipLab::new(true).start();
    let register = simple_request("REGISTER", "sip:alice@dvl-ckl2.net", "sips-none");
    let response = sips_exchange(lab.sips, &lab.lab.ca, None, &register);
    assert_eq!(response.start_line(), "SIP/2.0 200 OK");
    assert_eq!(x_target(&response), "master-tcp");
    lab.forwarded_line("sips://dvl-ckl2.net REGISTER", lab.master_tcp.port);

    // INVITE over sips to the TCP port: still the sips listener's Record-Route.
    let invite = simple_request("INVITE", "sip:alice@dvl-ckl2.net", "sips-none-invite");
    let response = sips_exchange(lab.sips, &lab.lab.ca, None, &invite);
    assert_eq!(x_target(&response), "master-tcp");
    let got = lab.master_tcp.wait_messages(2, Duration::from_secs(5));
    assert_record_route(&got[1], Some(RR_TLS));
    assert_eq!(lab.target_connections(), [2, 0, 0, 0]);
}

#[test]
fn sips_with_an_untrusted_or_non_matching_certificate_goes_to_the_tcp_port() {
    let lab = SipLab::new(true).start();
    let register = simple_request("REGISTER", "sip:alice@dvl-ckl2.net", "sips-untrusted");
    // Right name, but issued by a CA portico does not trust.
    let stranger_ca = ClientCa::new("someone else's CA");
    let untrusted = stranger_ca.issue("alice", &[San::Uri("sip:alice@dvl-ckl2.net")]);
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&untrusted), &register);
    assert_eq!(x_target(&response), "master-tcp", "untrusted certificate");
    // Trusted, but for somebody else.
    let bob = lab.clients.issue(
        "bob",
        &[
            San::Uri("sip:bob@dvl-ckl2.net"),
            San::Email("bob@dvl-ckl2.net"),
        ],
    );
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&bob), &register);
    assert_eq!(x_target(&response), "master-tcp", "non-matching name");
    // Trusted, named after the domain only: not the registration's name.
    let domain_only = lab
        .clients
        .issue("dvl-ckl2.net", &[San::Dns("dvl-ckl2.net")]);
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&domain_only), &register);
    assert_eq!(x_target(&response), "master-tcp", "domain is not the user");
    assert_eq!(lab.target_connections(), [3, 0, 0, 0]);
}

#[test]
fn sips_certificate_names_in_san_uri_and_email_match_user_at_domain() {
    let lab = SipLab::new(true).start();
    // SAN URI sip:alice@dvl-ckl2.net, CN something else.
    let by_uri = lab
        .clients
        .issue("Alice's desk phone", &[San::Uri("sip:alice@dvl-ckl2.net")]);
    let register = simple_request("REGISTER", "sip:alice@dvl-ckl2.net", "sips-uri");
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&by_uri), &register);
    assert_eq!(x_target(&response), "master-tls", "SAN URI sip:user@domain");

    // With a location the name is still user@domain (domain without /location),
    // and the case of the certificate's name does not matter.
    let by_mail = lab
        .clients
        .issue("phone 17", &[San::Email("Alice@DVL-ckl2.net")]);
    let register = simple_request("REGISTER", "sip:alice@dvl-ckl2.net/branch-b", "sips-mail");
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&by_mail), &register);
    assert_eq!(x_target(&response), "slave-tls", "SAN e-mail user@domain");
    lab.forwarded_line("sips://dvl-ckl2.net/branch-b REGISTER", lab.slave_tls.port);
    assert_eq!(lab.target_connections(), [0, 1, 0, 1]);
}

#[test]
fn without_check_certificate_tls_in_means_tls_out_and_one_port_is_used_either_way() {
    let lab = SipLab::new(false).start();
    // No check_certificate: no client certificate needed for TLS out.
    let register = simple_request("REGISTER", "sip:alice@dvl-ckl2.net/no-check", "nc-1");
    let response = sips_exchange(lab.sips, &lab.lab.ca, None, &register);
    assert_eq!(x_target(&response), "master-tls", "TLS in, TLS out");
    let (answer, _) = exchange_until_close_after_answer(lab.sip, &register);
    assert!(
        answer.contains("X-Target: master-tcp\r\n"),
        "plain in, TCP out: {answer}"
    );
    // Only a TCP port: used for TLS in too, even with a trusted, matching certificate.
    let alice = lab.clients.issue("alice", &[]);
    let register = simple_request("REGISTER", "sip:alice@dvl-ckl2.net/tcp-only", "nc-2");
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&alice), &register);
    assert_eq!(x_target(&response), "master-tcp", "only port");
    assert_eq!(lab.target_connections(), [2, 1, 0, 0]);
}

#[test]
fn sips_for_an_unknown_domain_gets_403() {
    let lab = SipLab::new(true).start();
    let alice = lab.clients.issue("alice", &[]);
    let register = simple_request("REGISTER", "sip:alice@example.org", "sips-403");
    let response = sips_exchange(lab.sips, &lab.lab.ca, Some(&alice), &register);
    assert_eq!(response.start_line(), "SIP/2.0 403 Forbidden");
    assert_eq!(response.header_values("Call-ID", None), ["sips-403"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lab.target_connections(), [0, 0, 0, 0]);
}

/// RFC 8446 §6.1: a TLS endpoint sends close_notify before closing. portico does so
/// when it refuses a malformed first message; its 403 (no host) and 502 (target
/// down) answers on sips must end the same way, not with a bare TCP close.
#[test]
fn sips_refusals_end_with_close_notify() {
    use std::io::Write;
    let lab = SipLab::new(true).start();
    for (what, from, status) in [
        (
            "no host",
            "sip:alice@example.org",
            "SIP/2.0 403 Forbidden\r\n",
        ),
        (
            "target down",
            "sip:alice@dvl-ckl2.net/down",
            "SIP/2.0 502 Bad Gateway\r\n",
        ),
    ] {
        let register = simple_request("REGISTER", from, "sips-close");
        let mut tls = tls_connect(lab.sips, &lab.lab.ca, None);
        tls.write_all(register.as_bytes()).expect("send");
        let (answer, end) = tls_read_until_end(&mut tls, Duration::from_secs(5));
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(status), "{what}: {answer:?}");
        assert_eq!(end, TlsEnd::CloseNotify, "{what}: how the connection ended");
    }
    // The malformed-request path, for comparison (a response as first message).
    let mut tls = tls_connect(lab.sips, &lab.lab.ca, None);
    tls.write_all(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        .expect("send");
    let (_, end) = tls_read_until_end(&mut tls, Duration::from_secs(5));
    assert_eq!(end, TlsEnd::CloseNotify, "malformed first message");
}

#[test]
fn later_dialog_creating_requests_on_the_connection_get_record_route_too() {
    let lab = SipLab::new(true).start();
    let register = simple_request("REGISTER", "sip:alice@dvl-ckl2.net", "later-reg");
    let invite = simple_request("INVITE", "sip:alice@dvl-ckl2.net", "later-inv");
    let options = simple_request("OPTIONS", "sip:alice@dvl-ckl2.net", "later-opt");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", lab.sip)).expect("connect");
    use std::io::Write;
    // A keep-alive ping between requests, and the INVITE split across writes.
    stream.write_all(register.as_bytes()).expect("write");
    stream.write_all(b"\r\n\r\n").expect("write");
    let (first, rest) = invite.split_at(invite.len() / 2);
    stream.write_all(first.as_bytes()).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(rest.as_bytes()).expect("write");
    stream.write_all(options.as_bytes()).expect("write");
    let got = lab.master_tcp.wait_messages(3, Duration::from_secs(5));
    let methods: Vec<&str> = got.iter().map(|m| m.method()).collect();
    assert_eq!(methods, ["REGISTER", "INVITE", "OPTIONS"]);
    assert_record_route(&got[0], None);
    assert_record_route(&got[1], Some(RR_TCP));
    assert_record_route(&got[2], None);
    let sent_body = invite
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert!(!sent_body.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&got[1].body),
        sent_body,
        "INVITE body intact"
    );
    assert_eq!(
        lab.master_tcp.connections(),
        1,
        "one target connection for the whole client connection"
    );
}
