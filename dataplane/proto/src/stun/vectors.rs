//! Test vectors: RFC 5769 §2.1–§2.4 and RFC 8489 Appendix B.1 (with Errata 6268), every
//! prefix through `frame_len`, mutations through the whole parser, and writer → parser
//! round trips for every attribute.
//!
//! The RFC 5769 bytes are transcribed from the RFC's hex dumps, with its annotations.
//! The RFC 8489 B.1 bytes are the errata-corrected message (Errata 6268: the printed
//! vector's message length and NONCE length are wrong; corrected, the length is 0x90 and
//! the NONCE 41 bytes). Each vector's MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT were
//! also recomputed independently with Python's hmac/hashlib/zlib before being used here,
//! so a transcription slip would fail those checks rather than pass silently.

use std::net::SocketAddr;

use super::*;
use crate::Sniff;

/// RFC 5769 §2.1 Sample Request (short-term password "VOkJxbRl1RmTxUk/WvJxBt").
#[rustfmt::skip]
const SAMPLE_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, //    Request type and message length
    0x21, 0x12, 0xa4, 0x42, //    Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // }
    0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
    0xfa, 0x87, 0xdf, 0xae, // }
    0x80, 0x22, 0x00, 0x10, //    SOFTWARE attribute header
    0x53, 0x54, 0x55, 0x4e, // }
    0x20, 0x74, 0x65, 0x73, // }  User-agent...
    0x74, 0x20, 0x63, 0x6c, // }  ...name
    0x69, 0x65, 0x6e, 0x74, // }
    0x00, 0x24, 0x00, 0x04, //    PRIORITY attribute header
    0x6e, 0x00, 0x01, 0xff, //    ICE priority value
    0x80, 0x29, 0x00, 0x08, //    ICE-CONTROLLED attribute header
    0x93, 0x2f, 0xf9, 0xb1, // }  Pseudo-random tie breaker...
    0x51, 0x26, 0x3b, 0x36, // }   ...for ICE control
    0x00, 0x06, 0x00, 0x09, //    USERNAME attribute header
    0x65, 0x76, 0x74, 0x6a, // }
    0x3a, 0x68, 0x36, 0x76, // }  Username (9 bytes) and padding (3 bytes)
    0x59, 0x20, 0x20, 0x20, // }
    0x00, 0x08, 0x00, 0x14, //    MESSAGE-INTEGRITY attribute header
    0x9a, 0xea, 0xa7, 0x0c, // }
    0xbf, 0xd8, 0xcb, 0x56, // }
    0x78, 0x1e, 0xf2, 0xb5, // }  HMAC-SHA1 fingerprint
    0xb2, 0xd3, 0xf2, 0x49, // }
    0xc1, 0xb5, 0x71, 0xa2, // }
    0x80, 0x28, 0x00, 0x04, //    FINGERPRINT attribute header
    0xe5, 0x7a, 0x3b, 0xcf, //    CRC32 fingerprint
];

/// RFC 5769 §2.2 Sample IPv4 Response.
#[rustfmt::skip]
const SAMPLE_IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, //    Response type and message length
    0x21, 0x12, 0xa4, 0x42, //    Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // }
    0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
    0xfa, 0x87, 0xdf, 0xae, // }
    0x80, 0x22, 0x00, 0x0b, //    SOFTWARE attribute header
    0x74, 0x65, 0x73, 0x74, // }
    0x20, 0x76, 0x65, 0x63, // }  UTF-8 server name
    0x74, 0x6f, 0x72, 0x20, // }
    0x00, 0x20, 0x00, 0x08, //    XOR-MAPPED-ADDRESS attribute header
    0x00, 0x01, 0xa1, 0x47, //    Address family (IPv4) and xor'd mapped port number
    0xe1, 0x12, 0xa6, 0x43, //    Xor'd mapped IPv4 address
    0x00, 0x08, 0x00, 0x14, //    MESSAGE-INTEGRITY attribute header
    0x2b, 0x91, 0xf5, 0x99, // }
    0xfd, 0x9e, 0x90, 0xc3, // }
    0x8c, 0x74, 0x89, 0xf9, // }  HMAC-SHA1 fingerprint
    0x2a, 0xf9, 0xba, 0x53, // }
    0xf0, 0x6b, 0xe7, 0xd7, // }
    0x80, 0x28, 0x00, 0x04, //    FINGERPRINT attribute header
    0xc0, 0x7d, 0x4c, 0x96, //    CRC32 fingerprint
];

/// RFC 5769 §2.3 Sample IPv6 Response.
#[rustfmt::skip]
const SAMPLE_IPV6_RESPONSE: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, //    Response type and message length
    0x21, 0x12, 0xa4, 0x42, //    Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // }
    0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
    0xfa, 0x87, 0xdf, 0xae, // }
    0x80, 0x22, 0x00, 0x0b, //    SOFTWARE attribute header
    0x74, 0x65, 0x73, 0x74, // }
    0x20, 0x76, 0x65, 0x63, // }  UTF-8 server name
    0x74, 0x6f, 0x72, 0x20, // }
    0x00, 0x20, 0x00, 0x14, //    XOR-MAPPED-ADDRESS attribute header
    0x00, 0x02, 0xa1, 0x47, //    Address family (IPv6) and xor'd mapped port number
    0x01, 0x13, 0xa9, 0xfa, // }
    0xa5, 0xd3, 0xf1, 0x79, // }  Xor'd mapped IPv6 address
    0xbc, 0x25, 0xf4, 0xb5, // }
    0xbe, 0xd2, 0xb9, 0xd9, // }
    0x00, 0x08, 0x00, 0x14, //    MESSAGE-INTEGRITY attribute header
    0xa3, 0x82, 0x95, 0x4e, // }
    0x4b, 0xe6, 0x7b, 0xf1, // }
    0x17, 0x84, 0xc9, 0x7c, // }  HMAC-SHA1 fingerprint
    0x82, 0x92, 0xc2, 0x75, // }
    0xbf, 0xe3, 0xed, 0x41, // }
    0x80, 0x28, 0x00, 0x04, //    FINGERPRINT attribute header
    0xc8, 0xfb, 0x0b, 0x4c, //    CRC32 fingerprint
];

/// RFC 5769 §2.4 Sample Request with Long-Term Authentication.
#[rustfmt::skip]
const SAMPLE_LONG_TERM_REQUEST: [u8; 116] = [
    0x00, 0x01, 0x00, 0x60, //    Request type and message length
    0x21, 0x12, 0xa4, 0x42, //    Magic cookie
    0x78, 0xad, 0x34, 0x33, // }
    0xc6, 0xad, 0x72, 0xc0, // }  Transaction ID
    0x29, 0xda, 0x41, 0x2e, // }
    0x00, 0x06, 0x00, 0x12, //    USERNAME attribute header
    0xe3, 0x83, 0x9e, 0xe3, // }
    0x83, 0x88, 0xe3, 0x83, // }
    0xaa, 0xe3, 0x83, 0x83, // }  Username value (18 bytes) and padding (2 bytes)
    0xe3, 0x82, 0xaf, 0xe3, // }
    0x82, 0xb9, 0x00, 0x00, // }
    0x00, 0x15, 0x00, 0x1c, //    NONCE attribute header
    0x66, 0x2f, 0x2f, 0x34, // }
    0x39, 0x39, 0x6b, 0x39, // }
    0x35, 0x34, 0x64, 0x36, // }
    0x4f, 0x4c, 0x33, 0x34, // }  Nonce value
    0x6f, 0x4c, 0x39, 0x46, // }
    0x53, 0x54, 0x76, 0x79, // }
    0x36, 0x34, 0x73, 0x41, // }
    0x00, 0x14, 0x00, 0x0b, //    REALM attribute header
    0x65, 0x78, 0x61, 0x6d, // }
    0x70, 0x6c, 0x65, 0x2e, // }  Realm value (11 bytes) and padding (1 byte)
    0x6f, 0x72, 0x67, 0x00, // }
    0x00, 0x08, 0x00, 0x14, //    MESSAGE-INTEGRITY attribute header
    0xf6, 0x70, 0x24, 0x65, // }
    0x6d, 0xd6, 0x4a, 0x3e, // }
    0x02, 0xb8, 0xe0, 0x71, // }  HMAC-SHA1 fingerprint
    0x2e, 0x85, 0xc9, 0xa2, // }
    0x8c, 0xa8, 0x96, 0x66, // }
];

/// RFC 8489 Appendix B.1, Sample Request with Long-Term Authentication with
/// MESSAGE-INTEGRITY-SHA256 and USERHASH, as corrected by Errata 6268.
#[rustfmt::skip]
const SAMPLE_SHA256_REQUEST: [u8; 164] = [
    0x00, 0x01, 0x00, 0x90, //    Request type and message length
    0x21, 0x12, 0xa4, 0x42, //    Magic cookie
    0x78, 0xad, 0x34, 0x33, // }
    0xc6, 0xad, 0x72, 0xc0, // }  Transaction ID
    0x29, 0xda, 0x41, 0x2e, // }
    0x00, 0x1e, 0x00, 0x20, //    USERHASH attribute header
    0x4a, 0x3c, 0xf3, 0x8f, // }
    0xef, 0x69, 0x92, 0xbd, // }
    0xa9, 0x52, 0xc6, 0x78, // }
    0x04, 0x17, 0xda, 0x0f, // }  Userhash value (32 bytes)
    0x24, 0x81, 0x94, 0x15, // }
    0x56, 0x9e, 0x60, 0xb2, // }
    0x05, 0xc4, 0x6e, 0x41, // }
    0x40, 0x7f, 0x17, 0x04, // }
    0x00, 0x15, 0x00, 0x29, //    NONCE attribute header
    0x6f, 0x62, 0x4d, 0x61, // }
    0x74, 0x4a, 0x6f, 0x73, // }
    0x32, 0x41, 0x41, 0x41, // }
    0x43, 0x66, 0x2f, 0x2f, // }
    0x34, 0x39, 0x39, 0x6b, // }  Nonce value and padding (3 bytes)
    0x39, 0x35, 0x34, 0x64, // }
    0x36, 0x4f, 0x4c, 0x33, // }
    0x34, 0x6f, 0x4c, 0x39, // }
    0x46, 0x53, 0x54, 0x76, // }
    0x79, 0x36, 0x34, 0x73, // }
    0x41, 0x00, 0x00, 0x00, // }
    0x00, 0x14, 0x00, 0x0b, //    REALM attribute header
    0x65, 0x78, 0x61, 0x6d, // }
    0x70, 0x6c, 0x65, 0x2e, // }  Realm value (11 bytes) and padding (1 byte)
    0x6f, 0x72, 0x67, 0x00, // }
    0x00, 0x1d, 0x00, 0x04, //    PASSWORD-ALGORITHM attribute header
    0x00, 0x02, 0x00, 0x00, //    PASSWORD-ALGORITHM value (4 bytes)
    0x00, 0x1c, 0x00, 0x20, //    MESSAGE-INTEGRITY-SHA256 attribute header
    0xb5, 0xc7, 0xbf, 0x00, // }
    0x5b, 0x6c, 0x52, 0xa2, // }
    0x1c, 0x51, 0xc5, 0xe8, // }
    0x92, 0xf8, 0x19, 0x24, // }  HMAC-SHA256 value
    0x13, 0x62, 0x96, 0xcb, // }
    0x92, 0x7c, 0x43, 0x14, // }
    0x93, 0x09, 0x27, 0x8c, // }
    0xc6, 0x51, 0x8e, 0x65, // }
];

const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const MATRIX_USER: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
/// "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep / OpaqueString, as RFC 5769 §2.4
/// gives it (this module does not prepare non-ASCII strings).
const MATRIX_PASSWORD: &str = "TheMatrIX";
const RFC5769_TXID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];
const LONG_TERM_TXID: [u8; 12] = [
    0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
];

fn all_vectors() -> [&'static [u8]; 5] {
    [
        &SAMPLE_REQUEST,
        &SAMPLE_IPV4_RESPONSE,
        &SAMPLE_IPV6_RESPONSE,
        &SAMPLE_LONG_TERM_REQUEST,
        &SAMPLE_SHA256_REQUEST,
    ]
}

fn decode<'a, T: AsRef<[u8]>>(msg: &'a Message<T>, typ: AttributeType) -> Attribute<'a> {
    msg.decode(typ).unwrap().unwrap()
}

#[test]
fn rfc5769_sample_request() {
    let msg = Message::new_checked(&SAMPLE_REQUEST[..]).unwrap();
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.transaction_id(), TransactionId::new(RFC5769_TXID));
    assert_eq!(
        decode(&msg, AttributeType::SOFTWARE),
        Attribute::Software("STUN test client")
    );
    assert_eq!(
        decode(&msg, AttributeType::USERNAME),
        Attribute::Username("evtj:h6vY")
    );
    assert!(verify_message_integrity(&msg, SHORT_TERM_PASSWORD));
    assert!(!verify_message_integrity(&msg, b"VOkJxbRl1RmTxUk/WvJxBT"));
    assert!(verify_fingerprint(&msg));
    assert_eq!(
        decode(&msg, AttributeType::FINGERPRINT),
        Attribute::Fingerprint(0xe57a3bcf)
    );
    // PRIORITY is comprehension-required but known (ICE), so nothing for a 420.
    assert!(msg.unknown_comprehension_required().is_empty());
    assert_eq!(msg.attributes().count(), 6);
}

#[test]
fn rfc5769_sample_ipv4_response() {
    let msg = Message::new_checked(&SAMPLE_IPV4_RESPONSE[..]).unwrap();
    assert_eq!(msg.class(), Class::SuccessResponse);
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(
        decode(&msg, AttributeType::SOFTWARE),
        Attribute::Software("test vector")
    );
    let mapped: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    assert_eq!(
        decode(&msg, AttributeType::XOR_MAPPED_ADDRESS),
        Attribute::XorMappedAddress(mapped)
    );
    assert!(verify_message_integrity(&msg, SHORT_TERM_PASSWORD));
    assert!(verify_fingerprint(&msg));
}

#[test]
fn rfc5769_sample_ipv6_response() {
    let msg = Message::new_checked(&SAMPLE_IPV6_RESPONSE[..]).unwrap();
    assert_eq!(msg.class(), Class::SuccessResponse);
    let mapped: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(
        decode(&msg, AttributeType::XOR_MAPPED_ADDRESS),
        Attribute::XorMappedAddress(mapped)
    );
    assert!(verify_message_integrity(&msg, SHORT_TERM_PASSWORD));
    assert!(verify_fingerprint(&msg));
}

#[test]
fn rfc5769_sample_long_term_request() {
    let msg = Message::new_checked(&SAMPLE_LONG_TERM_REQUEST[..]).unwrap();
    assert_eq!(msg.transaction_id(), TransactionId::new(LONG_TERM_TXID));
    assert_eq!(
        decode(&msg, AttributeType::USERNAME),
        Attribute::Username(MATRIX_USER)
    );
    assert_eq!(
        decode(&msg, AttributeType::NONCE),
        Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA")
    );
    assert_eq!(
        decode(&msg, AttributeType::REALM),
        Attribute::Realm("example.org")
    );
    let key = long_term_key(
        KeyAlgorithm::Md5,
        MATRIX_USER,
        "example.org",
        MATRIX_PASSWORD,
    );
    assert!(verify_message_integrity(&msg, key.as_bytes()));
    let wrong = long_term_key(KeyAlgorithm::Md5, MATRIX_USER, "example.org", "TheMatrix");
    assert!(!verify_message_integrity(&msg, wrong.as_bytes()));
    assert!(!verify_fingerprint(&msg)); // there is none
    assert_eq!(
        nonce_security_features("f//499k954d6OL34oL9FSTvy64sA"),
        None
    );

    // The writer reproduces it byte for byte (its padding is zeros, like ours).
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId::new(LONG_TERM_TXID),
    );
    w.add(&Attribute::Username(MATRIX_USER)).unwrap();
    w.add(&Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA"))
        .unwrap();
    w.add(&Attribute::Realm("example.org")).unwrap();
    w.add_message_integrity(key.as_bytes()).unwrap();
    assert_eq!(w.finish(), &SAMPLE_LONG_TERM_REQUEST[..]);
}

#[test]
fn rfc8489_b1_sha256_userhash_request() {
    let msg = Message::new_checked(&SAMPLE_SHA256_REQUEST[..]).unwrap();
    assert_eq!(msg.transaction_id(), TransactionId::new(LONG_TERM_TXID));
    let hash = userhash(MATRIX_USER, "example.org");
    assert_eq!(
        decode(&msg, AttributeType::USERHASH),
        Attribute::UserHash(&hash)
    );
    let nonce = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA";
    assert_eq!(decode(&msg, AttributeType::NONCE), Attribute::Nonce(nonce));
    assert_eq!(
        decode(&msg, AttributeType::REALM),
        Attribute::Realm("example.org")
    );
    assert_eq!(
        decode(&msg, AttributeType::PASSWORD_ALGORITHM),
        Attribute::PasswordAlgorithm(PasswordAlgorithm {
            algorithm: ALGORITHM_SHA256,
            params: &[]
        })
    );
    assert_eq!(
        KeyAlgorithm::from_id(ALGORITHM_SHA256),
        Some(KeyAlgorithm::Sha256)
    );
    let key = long_term_key(
        KeyAlgorithm::Sha256,
        MATRIX_USER,
        "example.org",
        MATRIX_PASSWORD,
    );
    assert!(verify_message_integrity_sha256(&msg, key.as_bytes()));
    let md5 = long_term_key(
        KeyAlgorithm::Md5,
        MATRIX_USER,
        "example.org",
        MATRIX_PASSWORD,
    );
    assert!(!verify_message_integrity_sha256(&msg, md5.as_bytes()));
    assert!(!verify_message_integrity(&msg, key.as_bytes())); // there is none

    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId::new(LONG_TERM_TXID),
    );
    w.add(&Attribute::UserHash(&hash)).unwrap();
    w.add(&Attribute::Nonce(nonce)).unwrap();
    w.add(&Attribute::Realm("example.org")).unwrap();
    w.add(&Attribute::PasswordAlgorithm(PasswordAlgorithm {
        algorithm: ALGORITHM_SHA256,
        params: &[],
    }))
    .unwrap();
    w.add_message_integrity_sha256(key.as_bytes()).unwrap();
    assert_eq!(w.finish(), &SAMPLE_SHA256_REQUEST[..]);
}

/// linkerd's `check_all_prefixes`: every truncation of a valid frame says "need more".
#[test]
fn every_prefix_is_incomplete() {
    let mut frames: Vec<Vec<u8>> = all_vectors().iter().map(|v| v.to_vec()).collect();
    let mut cd = Vec::new();
    ChannelDataRepr {
        channel: 0x4000,
        data: b"abcde",
    }
    .emit(&mut cd, Framing::Stream)
    .unwrap();
    frames.push(cd);
    for frame in &frames {
        assert_eq!(frame_len(frame), Sniff::Done(frame.len()));
        for cut in 0..frame.len() {
            assert_eq!(frame_len(&frame[..cut]), Sniff::Incomplete, "cut at {cut}");
            assert!(Message::new_checked(&frame[..cut]).is_err());
        }
        // Followed by more bytes, the frame still ends where it ends.
        let mut longer = frame.clone();
        longer.extend_from_slice(&SAMPLE_REQUEST);
        assert_eq!(frame_len(&longer), Sniff::Done(frame.len()));
    }
}

/// Runs every reader over `bytes`; the point is that none panics.
fn exercise(bytes: &[u8]) {
    let _ = frame_len(bytes);
    if let Ok(msg) = Message::new_checked(bytes) {
        let txid = msg.transaction_id();
        for raw in msg.attributes() {
            if let Ok(attr) = Attribute::parse(&raw, &txid) {
                // Whatever parses re-encodes (unless it is one of the computed three).
                let mut buf = Vec::new();
                let mut w = MessageWriter::new(&mut buf, msg.message_type(), txid);
                if w.add(&attr).is_ok() {
                    let again = Message::new_checked(w.finish()).unwrap();
                    let raw2 = again.attributes().next().unwrap();
                    assert_eq!(Attribute::parse(&raw2, &txid), Ok(attr));
                }
            }
        }
        let _ = msg.unknown_comprehension_required();
        let _ = verify_message_integrity(&msg, SHORT_TERM_PASSWORD);
        let _ = verify_message_integrity_sha256(&msg, SHORT_TERM_PASSWORD);
        let _ = verify_fingerprint(&msg);
    }
    if let Ok(cd) = ChannelData::new_checked(bytes) {
        assert!(cd.data().len() <= bytes.len() - 4);
    }
}

#[test]
fn mutations_never_panic() {
    // Deterministic xorshift, so a failure reproduces.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for vector in all_vectors() {
        // Every byte set to a few interesting values, including the length fields.
        for i in 0..vector.len() {
            for value in [0x00, 0x01, 0x03, 0x7F, 0x80, 0xFF, vector[i] ^ 0x40] {
                let mut m = vector.to_vec();
                m[i] = value;
                exercise(&m);
            }
        }
        // Random multi-byte mutations and truncations.
        for _ in 0..2_000 {
            let mut m = vector.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % m.len();
                m[at] = next() as u8;
            }
            let keep = (next() as usize) % (m.len() + 1);
            exercise(&m[..keep]);
            exercise(&m);
        }
    }
    // Pure noise, with a valid header in front half of the time.
    for round in 0..5_000 {
        let len = (next() % 120) as usize;
        let mut m: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round & 1 == 0 && m.len() >= 20 {
            let body = u16::try_from(m.len() - 20).unwrap();
            m[0] &= 0x3F;
            m[2..4].copy_from_slice(&body.to_be_bytes());
            m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        }
        exercise(&m);
    }
}

#[test]
fn any_single_byte_change_breaks_integrity_or_fingerprint() {
    for (vector, key) in [
        (&SAMPLE_REQUEST[..], SHORT_TERM_PASSWORD),
        (&SAMPLE_IPV4_RESPONSE[..], SHORT_TERM_PASSWORD),
        (&SAMPLE_IPV6_RESPONSE[..], SHORT_TERM_PASSWORD),
    ] {
        // Up to the MESSAGE-INTEGRITY value, padding aside (§14: "MUST be ignored by the
        // receiver" only on receipt; it is still covered by the HMAC).
        for i in 0..vector.len() - 8 {
            let mut m = vector.to_vec();
            m[i] ^= 0x01;
            if let Ok(msg) = Message::new_checked(&m[..]) {
                let both = verify_message_integrity(&msg, key) && verify_fingerprint(&msg);
                assert!(!both, "byte {i}");
            }
        }
    }
}

#[test]
fn round_trip_every_attribute() {
    let v4: SocketAddr = "203.0.113.9:3478".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::42]:49152".parse().unwrap();
    let hash = [0xAB; 32];
    let unknown = [AttributeType::new(0x7777), AttributeType::new(0x0003)];
    let attrs = [
        Attribute::MappedAddress(v4),
        Attribute::MappedAddress(v6),
        Attribute::XorMappedAddress(v4),
        Attribute::XorMappedAddress(v6),
        Attribute::XorPeerAddress(v4),
        Attribute::XorPeerAddress(v6),
        Attribute::XorRelayedAddress(v4),
        Attribute::XorRelayedAddress(v6),
        Attribute::AlternateServer(v6),
        Attribute::Username("alice"),
        Attribute::Username(MATRIX_USER),
        Attribute::UserHash(&hash),
        Attribute::ErrorCode(ErrorCode::UNAUTHENTICATED),
        Attribute::ErrorCode(ErrorCode::new(699, "")),
        Attribute::Realm("example.org"),
        Attribute::Nonce("obMatJos2AAAD0123456789"),
        Attribute::PasswordAlgorithms(PasswordAlgorithms::SHA256_MD5),
        Attribute::PasswordAlgorithm(PasswordAlgorithm {
            algorithm: ALGORITHM_MD5,
            params: &[],
        }),
        Attribute::PasswordAlgorithm(PasswordAlgorithm {
            algorithm: 9,
            params: &[1, 2, 3],
        }),
        Attribute::UnknownAttributes(UnknownAttributeList::Types(&unknown)),
        Attribute::UnknownAttributes(UnknownAttributeList::Types(&unknown[..1])),
        Attribute::Software("portico 0.1"),
        Attribute::AlternateDomain("turn.example.org"),
        Attribute::ChannelNumber(0x4001),
        Attribute::Lifetime(600),
        Attribute::Data(b""),
        Attribute::Data(b"media bytes"),
        Attribute::EvenPort { reserve_next: true },
        Attribute::EvenPort {
            reserve_next: false,
        },
        Attribute::RequestedTransport(TRANSPORT_UDP),
        Attribute::DontFragment,
        Attribute::ReservationToken([1, 2, 3, 4, 5, 6, 7, 8]),
        Attribute::RequestedAddressFamily(AddressFamily::V4),
        Attribute::RequestedAddressFamily(AddressFamily::V6),
        Attribute::AdditionalAddressFamily(AddressFamily::V6),
        Attribute::AddressErrorCode {
            family: AddressFamily::V6,
            error: ErrorCode::INSUFFICIENT_CAPACITY,
        },
        Attribute::Icmp {
            icmp_type: 3,
            icmp_code: 4,
            error_data: 1400,
        },
        Attribute::Other {
            typ: AttributeType::PRIORITY,
            value: &[0x6e, 0, 1, 0xff],
        },
        Attribute::Other {
            typ: AttributeType::new(0xC001),
            value: b"x",
        },
    ];
    let txid = TransactionId::new([0x11; 12]);
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::SuccessResponse),
        txid,
    );
    for a in &attrs {
        w.add(a).unwrap();
    }
    let key = long_term_key(KeyAlgorithm::Md5, "alice", "example.org", "secret");
    w.add_message_integrity(key.as_bytes()).unwrap();
    w.add_message_integrity_sha256(key.as_bytes()).unwrap();
    w.add_fingerprint().unwrap();
    let bytes = w.finish().to_vec();
    assert_eq!(frame_len(&bytes), Sniff::Done(bytes.len()));
    let msg = Message::new_checked(&bytes[..]).unwrap();
    assert_eq!(msg.method(), Method::ALLOCATE);
    assert_eq!(msg.class(), Class::SuccessResponse);
    let parsed: Vec<Attribute<'_>> = msg
        .attributes()
        .map(|raw| Attribute::parse(&raw, &txid).unwrap())
        .collect();
    assert_eq!(&parsed[..attrs.len()], &attrs[..]);
    assert!(matches!(
        parsed[attrs.len()],
        Attribute::MessageIntegrity(_)
    ));
    assert!(
        matches!(parsed[attrs.len() + 1], Attribute::MessageIntegritySha256(v) if v.len() == 32)
    );
    assert!(matches!(parsed[attrs.len() + 2], Attribute::Fingerprint(_)));
    assert_eq!(parsed.len(), attrs.len() + 3);
    assert!(verify_message_integrity(&msg, key.as_bytes()));
    assert!(verify_message_integrity_sha256(&msg, key.as_bytes()));
    assert!(verify_fingerprint(&msg));
    // The XOR'd address is not the address in clear on the wire.
    let raw = msg.attribute(AttributeType::XOR_MAPPED_ADDRESS).unwrap();
    assert_ne!(&raw.value()[4..8], &[203, 0, 113, 9]);
}

/// A 420 answer built from what `unknown_comprehension_required` found.
#[test]
fn answer_420_with_unknown_attributes() {
    let txid = TransactionId::new([5; 12]);
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        txid,
    );
    w.add_raw(AttributeType::new(0x0003), &[0, 0, 0, 0])
        .unwrap(); // CHANGE-REQUEST
    w.add_raw(AttributeType::new(0xC057), &[1]).unwrap(); // optional: ignored
    let request = w.finish().to_vec();
    let msg = Message::new_checked(&request[..]).unwrap();
    let unknown = msg.unknown_comprehension_required();
    assert_eq!(unknown.as_slice(), &[AttributeType::new(0x0003)]);

    let mut out = Vec::new();
    let mut w = MessageWriter::new(
        &mut out,
        MessageType::new(Method::BINDING, Class::ErrorResponse),
        txid,
    );
    w.add(&Attribute::ErrorCode(ErrorCode::UNKNOWN_ATTRIBUTE))
        .unwrap();
    w.add(&Attribute::UnknownAttributes(UnknownAttributeList::Types(
        unknown.as_slice(),
    )))
    .unwrap();
    w.add_fingerprint().unwrap();
    let answer = Message::new_checked(w.finish()).unwrap();
    assert_eq!(answer.class(), Class::ErrorResponse);
    let Attribute::UnknownAttributes(list) = decode(&answer, AttributeType::UNKNOWN_ATTRIBUTES)
    else {
        panic!("no UNKNOWN-ATTRIBUTES");
    };
    assert_eq!(
        list.iter().collect::<Vec<_>>(),
        [AttributeType::new(0x0003)]
    );
    assert!(verify_fingerprint(&answer));
}
