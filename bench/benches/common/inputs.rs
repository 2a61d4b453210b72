//! Inputs shared by the criterion benches (`benches/protocols.rs`; in a subdirectory so cargo does not take it for a bench target) and the callgrind
//! instruction counter (`examples/icount.rs`): what the sniffers see in real traffic.

#![allow(dead_code)]

use portico_proto::stun::{
    long_term_key, AttributeType, Class, KeyAlgorithm, MessageType, MessageWriter, Method,
    TransactionId,
};

/// A desk phone's REGISTER over TCP (~560 bytes of head), From with a registration
/// location (innovaphone style).
pub const SIP_REGISTER: &[u8] = b"REGISTER sip:dvl-ckl2.net SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.168.1.57:50484;branch=z9hG4bK-524287-1---4a0b7e1c2d9f3a10;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.168.1.57:50484;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0090339a2b1c>\"\r\n\
To: \"Alice\" <sip:alice@dvl-ckl2.net/branch-b>\r\n\
From: \"Alice\" <sip:alice@dvl-ckl2.net/branch-b>;tag=8b1c3f2a\r\n\
Call-ID: 5d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6@192.168.1.57\r\n\
CSeq: 42 REGISTER\r\n\
Expires: 120\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Supported: replaces, outbound, gruu\r\n\
User-Agent: innovaphone-IP222/13r3\r\n\
Content-Length: 0\r\n\
\r\n";

/// A compact-form INVITE head (short field names), no body.
pub const SIP_COMPACT: &[u8] = b"INVITE sip:bob@dvl-ckl2.net SIP/2.0\r\n\
v: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bK776asdhds\r\n\
f: <sip:alice@dvl-ckl2.net>;tag=1928301774\r\n\
t: <sip:bob@dvl-ckl2.net>\r\n\
i: a84b4c76e66710@10.0.0.2\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@10.0.0.2>\r\n\
l: 0\r\n\
\r\n";

fn ber(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    assert!(value.len() < 128);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// An LDAPv3 simple BindRequest for `name`.
pub fn ldap_bind(name: &str) -> Vec<u8> {
    let mut bind = Vec::new();
    ber(0x02, &[3], &mut bind);
    ber(0x04, name.as_bytes(), &mut bind);
    ber(0x80, b"secret-password", &mut bind);
    let mut msg = Vec::new();
    ber(0x02, &[1], &mut msg);
    ber(0x60, &bind, &mut msg);
    let mut out = Vec::new();
    ber(0x30, &msg, &mut out);
    out
}

/// H.225.0 first messages: committed vectors of `dataplane/proto/testdata/h323/`
/// (encoded by pycrate, confirmed by Wireshark; see its README).
///
/// A GRQ tunnelled with H.460.17 in a FACILITY, gatekeeper id `dvl-ckl2.net`: an
/// innovaphone endpoint's first message on an H.460.17 connection (100 bytes).
pub const H225_GRQ: &[u8] = include_bytes!("../../../dataplane/proto/testdata/h323/grq_domain.bin");

/// An RRQ whose `genericData` holds H.460.18, an H.460.19 feature with every content
/// kind (nested and compound) and a non-standard feature before H.460.17, after
/// bearer capability, display and sending-complete IEs: the longest walk to the
/// gatekeeper id among the vectors (300 bytes).
pub const H225_RRQ_FEATURES: &[u8] =
    include_bytes!("../../../dataplane/proto/testdata/h323/rrq_other_features_first.bin");

/// A SETUP without tunnelled RAS: no gatekeeper id, so portico refuses the
/// connection (137 bytes).
pub const H225_SETUP_NO_RAS: &[u8] =
    include_bytes!("../../../dataplane/proto/testdata/h323/setup_no_ras.bin");

/// `header_limit`'s default: the longest first frame the sniffer accepts.
pub const H225_LIMIT: usize = 16384;

pub const LDAP_DOMAIN_USER: &str = "dvl-ckl2.net\\ldap-guest";
pub const LDAP_DN: &str = "CN=ldap-guest, OU=Users, DC=dvl-ckl2, DC=net";

pub const TURN_USER: &str = "turn342823";
pub const TURN_REALM: &str = "dvl-ckl2.net";
pub const TURN_PASSWORD: &str = "ip411";

/// The long-term key (MD5) of the TURN user.
pub fn turn_key() -> Vec<u8> {
    long_term_key(KeyAlgorithm::Md5, TURN_USER, TURN_REALM, TURN_PASSWORD)
        .as_bytes()
        .to_vec()
}

/// An authenticated TURN Allocate request: USERNAME, REALM, NONCE,
/// REQUESTED-TRANSPORT, MESSAGE-INTEGRITY (HMAC-SHA1), FINGERPRINT.
pub fn stun_allocate() -> Vec<u8> {
    let key = turn_key();
    let mut buf = Vec::with_capacity(256);
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([7; 12]),
    );
    w.add_raw(AttributeType::USERNAME, TURN_USER.as_bytes())
        .expect("USERNAME");
    w.add_raw(AttributeType::REALM, TURN_REALM.as_bytes())
        .expect("REALM");
    w.add_raw(
        AttributeType::NONCE,
        b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA",
    )
    .expect("NONCE");
    w.add_raw(AttributeType::new(0x0019), &[17, 0, 0, 0])
        .expect("REQUESTED-TRANSPORT");
    w.add_message_integrity(&key).expect("MESSAGE-INTEGRITY");
    w.add_fingerprint().expect("FINGERPRINT");
    w.finish().to_vec()
}

/// A ChannelData message carrying 20 ms of G.711 (160 bytes) on channel 0x4001.
pub fn channel_data() -> Vec<u8> {
    let mut m = vec![0x40, 0x01, 0x00, 160];
    m.extend(std::iter::repeat_n(0xd5u8, 160));
    m
}
