//! Client-side STUN (RFC 8489) and TURN (RFC 8656) wire format for the `turn`
//! scenario, written for the load generator alone so that it stays independent of the
//! server code it measures (portico's own codec is in `portico-proto`, which the
//! generator must not use).
//!
//! Owns: message types (method + class), a [`Builder`] for requests and indications
//! (attributes with padding, XOR-mapped addresses, MESSAGE-INTEGRITY with HMAC-SHA1,
//! FINGERPRINT), a borrowing [`Message`] parser (attribute lookup, XOR address and
//! ERROR-CODE decoding, MESSAGE-INTEGRITY and FINGERPRINT checks), the long-term
//! credential key, and ChannelData framing.
//!
//! Only what a TURN client over UDP needs: no MESSAGE-INTEGRITY-SHA256, no USERHASH,
//! no SASLprep (user names and passwords are used as given).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use md5::{Digest, Md5};
use ring::hmac;

/// The fixed value in bytes 4..8 of every RFC 5389+ message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Header: type (2), length (2), cookie (4), transaction ID (12).
pub const HEADER_LEN: usize = 20;
/// XORed into FINGERPRINT's CRC-32.
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// MESSAGE-INTEGRITY value length (HMAC-SHA1).
const INTEGRITY_LEN: usize = 20;

pub type TransactionId = [u8; 12];

/// Methods (RFC 8489 §18.2, RFC 8656 §17).
pub mod method {
    #[allow(dead_code)] // the RFC 5769 tests
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// Attribute types (RFC 8489 §18.3, RFC 8656 §18).
pub mod attr {
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    #[allow(dead_code)] // the RFC 5769 tests
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// REQUESTED-TRANSPORT value for UDP (the protocol number 17, then 3 reserved bytes).
pub const TRANSPORT_UDP: [u8; 4] = [17, 0, 0, 0];

/// The class of a message (the two C bits of its type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// The 14-bit message type of `method` (12 bits) and `class`: the class bits sit at
/// bits 4 and 8, the method bits around them.
pub fn message_type(method: u16, class: Class) -> u16 {
    let m = method & 0x0FFF;
    let c = match class {
        Class::Request => 0x0000,
        Class::Indication => 0x0010,
        Class::Success => 0x0100,
        Class::Error => 0x0110,
    };
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | c
}

/// The method and class of a message type.
pub fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match (t & 0x0100 != 0, t & 0x0010 != 0) {
        (false, false) => Class::Request,
        (false, true) => Class::Indication,
        (true, false) => Class::Success,
        (true, true) => Class::Error,
    };
    (method, class)
}

/// The long-term credential key: MD5(username ":" realm ":" password) (RFC 8489
/// §9.2.2, without SASLprep).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320), as FINGERPRINT uses it; a
/// bitwise loop, fine for the few setup messages it sees. `crc` is the running value
/// (start with 0).
pub fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            let mask = (c & 1).wrapping_neg();
            c = (c >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !c
}

fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// XOR an address the way XOR-MAPPED-ADDRESS and friends carry it: the port with the
/// cookie's top 16 bits, IPv4 with the cookie, IPv6 with the cookie and transaction ID.
/// Returns the attribute value (family, port, address).
fn xor_address_value(addr: SocketAddr, tid: &TransactionId, out: &mut Vec<u8>) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&port.to_be_bytes());
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            out.extend_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&port.to_be_bytes());
            let o = ip.octets();
            for (i, b) in o.iter().enumerate() {
                let k = if i < 4 {
                    cookie.get(i).copied().unwrap_or(0)
                } else {
                    tid.get(i - 4).copied().unwrap_or(0)
                };
                out.push(b ^ k);
            }
        }
    }
}

/// Decode an XOR-…-ADDRESS value.
pub fn decode_xor_address(value: &[u8], tid: &TransactionId) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match family {
        0x01 => {
            let a: [u8; 4] = value.get(4..8)?.try_into().ok()?;
            let ip = Ipv4Addr::from(u32::from_be_bytes(a) ^ MAGIC_COOKIE);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        0x02 => {
            let a = value.get(4..20)?;
            let mut o = [0u8; 16];
            for (i, (dst, src)) in o.iter_mut().zip(a).enumerate() {
                let k = if i < 4 {
                    cookie.get(i).copied().unwrap_or(0)
                } else {
                    tid.get(i - 4).copied().unwrap_or(0)
                };
                *dst = src ^ k;
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => None,
    }
}

/// Builds one message into a byte vector, keeping the header's length field current.
#[derive(Debug, Clone)]
pub struct Builder {
    buf: Vec<u8>,
    tid: TransactionId,
}

impl Builder {
    pub fn new(method: u16, class: Class, tid: TransactionId) -> Builder {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid);
        Builder { buf, tid }
    }

    fn set_len(&mut self, body: usize) {
        let len = u16::try_from(body).unwrap_or(u16::MAX).to_be_bytes();
        if let Some(l) = self.buf.get_mut(2..4) {
            l.copy_from_slice(&len);
        }
    }

    /// Append an attribute (zero-padded to 4 bytes). Returns the offset of its value
    /// in the message.
    pub fn attr(&mut self, t: u16, value: &[u8]) -> usize {
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        let at = self.buf.len();
        self.buf
            .extend_from_slice(value.get(..usize::from(len)).unwrap_or(value));
        self.buf.resize(at + padded(usize::from(len)), 0);
        self.set_len(self.buf.len() - HEADER_LEN);
        at
    }

    pub fn u32_attr(&mut self, t: u16, v: u32) -> usize {
        self.attr(t, &v.to_be_bytes())
    }

    pub fn xor_address(&mut self, t: u16, addr: SocketAddr) -> usize {
        let mut v = Vec::with_capacity(20);
        xor_address_value(addr, &self.tid, &mut v);
        self.attr(t, &v)
    }

    /// Append MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over the message so far, the
    /// length field already counting the attribute.
    pub fn integrity(&mut self, key: &[u8]) {
        self.set_len(self.buf.len() - HEADER_LEN + 4 + INTEGRITY_LEN);
        let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let tag = hmac::sign(&k, &self.buf);
        self.attr(attr::MESSAGE_INTEGRITY, tag.as_ref());
    }

    /// Append FINGERPRINT: CRC-32 of the message so far (length counting it) XOR
    /// 0x5354554E.
    pub fn fingerprint(&mut self) {
        self.set_len(self.buf.len() - HEADER_LEN + 8);
        let crc = crc32_update(0, &self.buf) ^ FINGERPRINT_XOR;
        self.u32_attr(attr::FINGERPRINT, crc);
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// A parsed message, borrowing the datagram.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Exactly the message: header and `length` bytes of attributes.
    bytes: &'a [u8],
    pub method: u16,
    pub class: Class,
    pub tid: TransactionId,
}

/// One attribute: its type, its value (unpadded) and the offset of its header.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    pub t: u16,
    pub value: &'a [u8],
    pub at: usize,
}

impl<'a> Message<'a> {
    /// Parse a STUN message at the start of `buf` (trailing bytes are ignored). Checks
    /// the leading zero bits, the cookie, the length (a multiple of 4 that fits) and
    /// that the attributes tile the body exactly.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, &'static str> {
        let head = buf.get(..HEADER_LEN).ok_or("short STUN header")?;
        let t = u16::from_be_bytes([head[0], head[1]]);
        if t & 0xC000 != 0 {
            return Err("not STUN");
        }
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if u32::from_be_bytes([head[4], head[5], head[6], head[7]]) != MAGIC_COOKIE {
            return Err("bad magic cookie");
        }
        if len % 4 != 0 {
            return Err("length not a multiple of 4");
        }
        let bytes = buf
            .get(..HEADER_LEN + len)
            .ok_or("truncated STUN message")?;
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&head[8..20]);
        let (method, class) = split_type(t);
        let m = Message {
            bytes,
            method,
            class,
            tid,
        };
        let mut end = HEADER_LEN;
        for a in m.attrs() {
            end = a.at + 4 + padded(a.value.len());
        }
        if end != bytes.len() {
            return Err("attributes overrun the message");
        }
        Ok(m)
    }

    /// The attributes in order; stops at the first one that does not fit.
    pub fn attrs(&self) -> impl Iterator<Item = Attr<'a>> {
        let bytes = self.bytes;
        let mut at = HEADER_LEN;
        std::iter::from_fn(move || {
            let h = bytes.get(at..at + 4)?;
            let t = u16::from_be_bytes([h[0], h[1]]);
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let value = bytes.get(at + 4..at + 4 + len)?;
            let a = Attr { t, value, at };
            at += 4 + padded(len);
            Some(a)
        })
    }

    /// The value of the first attribute of type `t`.
    pub fn get(&self, t: u16) -> Option<&'a [u8]> {
        self.attrs().find(|a| a.t == t).map(|a| a.value)
    }

    pub fn xor_address(&self, t: u16) -> Option<SocketAddr> {
        decode_xor_address(self.get(t)?, &self.tid)
    }

    /// ERROR-CODE as (code, reason).
    pub fn error_code(&self) -> Option<(u16, &'a str)> {
        let v = self.get(attr::ERROR_CODE)?;
        let class = u16::from(*v.get(2)? & 0x07);
        let number = u16::from(*v.get(3)?);
        let reason = std::str::from_utf8(v.get(4..).unwrap_or_default()).unwrap_or("");
        Some((class * 100 + number, reason))
    }

    /// Whether MESSAGE-INTEGRITY is present and is the HMAC-SHA1 of the message up to
    /// it with `key` (the length field as it was when the MAC was computed).
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        let Some(mi) = self.attrs().find(|a| a.t == attr::MESSAGE_INTEGRITY) else {
            return false;
        };
        let (Some(t), Some(rest)) = (self.bytes.get(..2), self.bytes.get(4..mi.at)) else {
            return false;
        };
        let len = u16::try_from(mi.at + 4 + INTEGRITY_LEN - HEADER_LEN).unwrap_or(0);
        let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(t);
        ctx.update(&len.to_be_bytes());
        ctx.update(rest);
        ctx.sign().as_ref() == mi.value
    }

    /// Whether FINGERPRINT is present, last, and right.
    pub fn check_fingerprint(&self) -> bool {
        let Some(fp) = self.attrs().last().filter(|a| a.t == attr::FINGERPRINT) else {
            return false;
        };
        let (Some(t), Some(rest), Ok(v)) = (
            self.bytes.get(..2),
            self.bytes.get(4..fp.at),
            <[u8; 4]>::try_from(fp.value),
        ) else {
            return false;
        };
        let len = u16::try_from(fp.at + 8 - HEADER_LEN).unwrap_or(0);
        let crc = crc32_update(crc32_update(crc32_update(0, t), &len.to_be_bytes()), rest);
        crc ^ FINGERPRINT_XOR == u32::from_be_bytes(v)
    }
}

/// ChannelData header length (channel number, length).
pub const CHANNEL_HEADER_LEN: usize = 4;

/// Write a ChannelData header for `payload_len` bytes into `out[..4]`.
pub fn channel_header(channel: u16, payload_len: usize, out: &mut [u8]) {
    let len = u16::try_from(payload_len).unwrap_or(u16::MAX);
    if let Some(h) = out.get_mut(..CHANNEL_HEADER_LEN) {
        h[..2].copy_from_slice(&channel.to_be_bytes());
        h[2..].copy_from_slice(&len.to_be_bytes());
    }
}

/// A ChannelData message at the start of `buf` (trailing padding ignored): its channel
/// number and payload. `None` when `buf` does not start with a channel number
/// (0x4000–0x7FFF) or is shorter than its length field says.
pub fn parse_channel_data(buf: &[u8]) -> Option<(u16, &[u8])> {
    let h = buf.get(..CHANNEL_HEADER_LEN)?;
    let channel = u16::from_be_bytes([h[0], h[1]]);
    if !(0x4000..=0x7FFF).contains(&channel) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    Some((
        channel,
        buf.get(CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// RFC 5769 §2.2, "Sample IPv4 Response", transcribed from the RFC's dump.
    fn rfc5769_ipv4_response() -> Vec<u8> {
        hex("0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
             8022000b 74657374 20766563 746f7220
             00200008 0001a147 e112a643
             00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
             80280004 c07d4c96")
    }

    /// RFC 5769 §2.4, "Sample Request with Long-Term Authentication": user name
    /// U+30DE U+30C8 U+30EA U+30C3 U+30AF U+30B9, realm "example.org", password
    /// "TheMatrIX".
    fn rfc5769_long_term_request() -> Vec<u8> {
        hex("00010060 2112a442 78ad3433 c6ad72c0 29da412e
             00060012 e3839ee3 8388e383 aae38383 e382afe3 82b90000
             0015001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341
             0014000b 6578616d 706c652e 6f726700
             00080014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666")
    }

    #[test]
    fn rfc5769_ipv4_response_decodes_and_verifies() {
        let buf = rfc5769_ipv4_response();
        let m = Message::parse(&buf).unwrap();
        assert_eq!((m.method, m.class), (method::BINDING, Class::Success));
        assert_eq!(m.get(attr::SOFTWARE), Some(&b"test vector"[..]));
        assert_eq!(
            m.xor_address(attr::XOR_MAPPED_ADDRESS),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        // Short-term credentials: the key is the password itself.
        assert!(m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBT"));
        assert!(m.check_fingerprint());
        let mut bad = buf.clone();
        bad[30] ^= 1; // inside SOFTWARE
        let m = Message::parse(&bad).unwrap();
        assert!(!m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!m.check_fingerprint());
    }

    #[test]
    fn rfc5769_long_term_request_verifies_with_the_md5_key() {
        let buf = rfc5769_long_term_request();
        let m = Message::parse(&buf).unwrap();
        assert_eq!((m.method, m.class), (method::BINDING, Class::Request));
        let user = std::str::from_utf8(m.get(attr::USERNAME).unwrap()).unwrap();
        assert_eq!(user, "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}");
        assert_eq!(m.get(attr::REALM), Some(&b"example.org"[..]));
        let key = long_term_key(user, "example.org", "TheMatrIX");
        assert!(m.check_integrity(&key));
        assert!(!m.check_integrity(&long_term_key(user, "example.org", "thematrix")));
    }

    #[test]
    fn long_term_key_is_md5_of_user_realm_password() {
        // MD5("user:realm:pass"), computed independently (`printf %s user:realm:pass
        // | md5sum`).
        assert_eq!(
            long_term_key("user", "realm", "pass").to_vec(),
            hex("8493fbc53ba582fb4c044c456bdc40eb")
        );
    }

    #[test]
    fn crc32_check_value() {
        // The CRC-32 catalogue's check value for "123456789".
        assert_eq!(crc32_update(0, b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32_update(crc32_update(0, b"1234"), b"56789"),
            0xCBF4_3926
        );
    }

    #[test]
    fn types_round_trip() {
        assert_eq!(message_type(method::BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(method::BINDING, Class::Success), 0x0101);
        assert_eq!(message_type(method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(message_type(method::SEND, Class::Indication), 0x0016);
        assert_eq!(message_type(method::DATA, Class::Indication), 0x0017);
        assert_eq!(message_type(method::CHANNEL_BIND, Class::Success), 0x0109);
        for m in [1u16, 3, 4, 6, 7, 8, 9, 0x0ABC, 0x0FFF] {
            for c in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(split_type(message_type(m, c)), (m, c));
            }
        }
    }

    #[test]
    fn built_request_has_rfc_structure_and_verifies() {
        let tid = *b"0123456789ab";
        let key = long_term_key("u", "r", "p");
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mut b = Builder::new(method::CHANNEL_BIND, Class::Request, tid);
        b.u32_attr(attr::CHANNEL_NUMBER, 0x4001_0000);
        b.xor_address(attr::XOR_PEER_ADDRESS, peer);
        b.attr(attr::USERNAME, b"u");
        b.attr(attr::REALM, b"r");
        b.attr(attr::NONCE, b"nonce");
        b.integrity(&key);
        b.fingerprint();
        let buf = b.finish();
        // Header: type, length = everything after the header, cookie, tid.
        assert_eq!(&buf[..2], &[0x00, 0x09]);
        assert_eq!(
            usize::from(u16::from_be_bytes([buf[2], buf[3]])),
            buf.len() - 20
        );
        assert_eq!(&buf[4..8], &[0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(&buf[8..20], &tid);
        assert_eq!(buf.len() % 4, 0);
        let m = Message::parse(&buf).unwrap();
        assert_eq!((m.method, m.class), (method::CHANNEL_BIND, Class::Request));
        assert_eq!(m.xor_address(attr::XOR_PEER_ADDRESS), Some(peer));
        assert_eq!(m.get(attr::USERNAME), Some(&b"u"[..]));
        assert_eq!(m.get(attr::NONCE), Some(&b"nonce"[..]));
        // USERNAME "u" is padded with three zero bytes.
        let types: Vec<u16> = m.attrs().map(|a| a.t).collect();
        assert_eq!(
            types,
            [
                attr::CHANNEL_NUMBER,
                attr::XOR_PEER_ADDRESS,
                attr::USERNAME,
                attr::REALM,
                attr::NONCE,
                attr::MESSAGE_INTEGRITY,
                attr::FINGERPRINT
            ]
        );
        assert!(m.check_integrity(&key));
        assert!(m.check_fingerprint());
        assert!(!m.check_integrity(&long_term_key("u", "r", "q")));
    }

    #[test]
    fn ipv6_xor_address_round_trips() {
        let tid = [7u8; 12];
        let a: SocketAddr = "[2001:db8::1:2]:3478".parse().unwrap();
        let mut v = Vec::new();
        xor_address_value(a, &tid, &mut v);
        assert_eq!(v.len(), 20);
        assert_eq!(decode_xor_address(&v, &tid), Some(a));
        assert_eq!(decode_xor_address(&v[..10], &tid), None);
    }

    #[test]
    fn error_code_and_bad_messages() {
        let mut b = Builder::new(method::ALLOCATE, Class::Error, [1; 12]);
        b.attr(
            attr::ERROR_CODE,
            &[0, 0, 4, 38, b'S', b't', b'a', b'l', b'e'],
        );
        let buf = b.finish();
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.error_code(), Some((438, "Stale")));
        assert!(!m.check_integrity(b"k"));
        assert!(!m.check_fingerprint());
        assert!(Message::parse(&buf[..buf.len() - 4]).is_err());
        assert!(Message::parse(&[0x40, 0, 0, 4, 1, 2, 3, 4]).is_err());
        let mut bad = buf.clone();
        bad[4] = 0;
        assert!(Message::parse(&bad).is_err());
        // An attribute length running past the body.
        let mut bad = buf;
        bad[23] = 40;
        assert!(Message::parse(&bad).is_err());
    }

    #[test]
    fn channel_data_frames() {
        let mut f = [0u8; 12];
        channel_header(0x4001, 5, &mut f);
        f[4..9].copy_from_slice(b"hello");
        assert_eq!(parse_channel_data(&f), Some((0x4001, &b"hello"[..])));
        assert_eq!(parse_channel_data(&f[..8]), None);
        channel_header(0x3fff, 5, &mut f);
        assert_eq!(parse_channel_data(&f), None);
        // A STUN message is not ChannelData.
        assert_eq!(parse_channel_data(&rfc5769_ipv4_response()), None);
    }
}
