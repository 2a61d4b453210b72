//! STUN and TURN attributes: types (RFC 8489 §18.3, RFC 8656 §17) and values (RFC 8489
//! §14, RFC 8656 §18), decoded from and encoded to their wire form.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Type                  |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Value (variable)                ....
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Decoding is lenient where the RFC says "MUST be able to parse" (text up to 763 bytes)
//! and strict on fixed sizes; encoding applies the sender's limits (USERNAME under 509
//! bytes, REALM/NONCE/SOFTWARE/reason phrases under 128 characters).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::message::{be16, RawAttribute, TransactionId};
use super::writer::EmitError;

/// A 16-bit attribute type.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeType(u16);

impl AttributeType {
    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    pub const MAPPED_ADDRESS: AttributeType = AttributeType(0x0001);
    /// USERNAME (RFC 8489 §14.3).
    pub const USERNAME: AttributeType = AttributeType(0x0006);
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5).
    pub const MESSAGE_INTEGRITY: AttributeType = AttributeType(0x0008);
    /// ERROR-CODE (RFC 8489 §14.8).
    pub const ERROR_CODE: AttributeType = AttributeType(0x0009);
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    pub const UNKNOWN_ATTRIBUTES: AttributeType = AttributeType(0x000A);
    /// CHANNEL-NUMBER (RFC 8656 §18.1).
    pub const CHANNEL_NUMBER: AttributeType = AttributeType(0x000C);
    /// LIFETIME (RFC 8656 §18.2).
    pub const LIFETIME: AttributeType = AttributeType(0x000D);
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3).
    pub const XOR_PEER_ADDRESS: AttributeType = AttributeType(0x0012);
    /// DATA (RFC 8656 §18.4).
    pub const DATA: AttributeType = AttributeType(0x0013);
    /// REALM (RFC 8489 §14.9).
    pub const REALM: AttributeType = AttributeType(0x0014);
    /// NONCE (RFC 8489 §14.10).
    pub const NONCE: AttributeType = AttributeType(0x0015);
    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    pub const XOR_RELAYED_ADDRESS: AttributeType = AttributeType(0x0016);
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6).
    pub const REQUESTED_ADDRESS_FAMILY: AttributeType = AttributeType(0x0017);
    /// EVEN-PORT (RFC 8656 §18.7).
    pub const EVEN_PORT: AttributeType = AttributeType(0x0018);
    /// REQUESTED-TRANSPORT (RFC 8656 §18.8).
    pub const REQUESTED_TRANSPORT: AttributeType = AttributeType(0x0019);
    /// DONT-FRAGMENT (RFC 8656 §18.9).
    pub const DONT_FRAGMENT: AttributeType = AttributeType(0x001A);
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
    pub const MESSAGE_INTEGRITY_SHA256: AttributeType = AttributeType(0x001C);
    /// PASSWORD-ALGORITHM (RFC 8489 §14.12).
    pub const PASSWORD_ALGORITHM: AttributeType = AttributeType(0x001D);
    /// USERHASH (RFC 8489 §14.4).
    pub const USERHASH: AttributeType = AttributeType(0x001E);
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub const XOR_MAPPED_ADDRESS: AttributeType = AttributeType(0x0020);
    /// RESERVATION-TOKEN (RFC 8656 §18.10).
    pub const RESERVATION_TOKEN: AttributeType = AttributeType(0x0022);
    /// PRIORITY (RFC 8445 §16.1): ICE; known, not decoded.
    pub const PRIORITY: AttributeType = AttributeType(0x0024);
    /// USE-CANDIDATE (RFC 8445 §16.1): ICE; known, not decoded.
    pub const USE_CANDIDATE: AttributeType = AttributeType(0x0025);
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11).
    pub const ADDITIONAL_ADDRESS_FAMILY: AttributeType = AttributeType(0x8000);
    /// ADDRESS-ERROR-CODE (RFC 8656 §18.12).
    pub const ADDRESS_ERROR_CODE: AttributeType = AttributeType(0x8001);
    /// PASSWORD-ALGORITHMS (RFC 8489 §14.11).
    pub const PASSWORD_ALGORITHMS: AttributeType = AttributeType(0x8002);
    /// ALTERNATE-DOMAIN (RFC 8489 §14.16).
    pub const ALTERNATE_DOMAIN: AttributeType = AttributeType(0x8003);
    /// ICMP (RFC 8656 §18.13).
    pub const ICMP: AttributeType = AttributeType(0x8004);
    /// SOFTWARE (RFC 8489 §14.14).
    pub const SOFTWARE: AttributeType = AttributeType(0x8022);
    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    pub const ALTERNATE_SERVER: AttributeType = AttributeType(0x8023);
    /// FINGERPRINT (RFC 8489 §14.7).
    pub const FINGERPRINT: AttributeType = AttributeType(0x8028);
    /// ICE-CONTROLLED (RFC 8445 §16.1): ICE; known, not decoded.
    pub const ICE_CONTROLLED: AttributeType = AttributeType(0x8029);
    /// ICE-CONTROLLING (RFC 8445 §16.1): ICE; known, not decoded.
    pub const ICE_CONTROLLING: AttributeType = AttributeType(0x802A);

    /// A type from its number.
    pub const fn new(bits: u16) -> AttributeType {
        AttributeType(bits)
    }

    /// The number.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// "Attributes with type values between 0x0000 and 0x7FFF are comprehension-required
    /// attributes" (RFC 8489 §14).
    pub const fn is_comprehension_required(self) -> bool {
        self.0 < 0x8000
    }

    /// Whether this module knows the type: every type above, including the four ICE
    /// attributes, which a STUN server may receive in a Binding request and safely
    /// ignores (answering them with 420 would break ICE agents for no gain).
    pub const fn is_known(self) -> bool {
        self.name().is_some()
    }

    /// The IANA name, when known.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0001 => "MAPPED-ADDRESS",
            0x0006 => "USERNAME",
            0x0008 => "MESSAGE-INTEGRITY",
            0x0009 => "ERROR-CODE",
            0x000A => "UNKNOWN-ATTRIBUTES",
            0x000C => "CHANNEL-NUMBER",
            0x000D => "LIFETIME",
            0x0012 => "XOR-PEER-ADDRESS",
            0x0013 => "DATA",
            0x0014 => "REALM",
            0x0015 => "NONCE",
            0x0016 => "XOR-RELAYED-ADDRESS",
            0x0017 => "REQUESTED-ADDRESS-FAMILY",
            0x0018 => "EVEN-PORT",
            0x0019 => "REQUESTED-TRANSPORT",
            0x001A => "DONT-FRAGMENT",
            0x001C => "MESSAGE-INTEGRITY-SHA256",
            0x001D => "PASSWORD-ALGORITHM",
            0x001E => "USERHASH",
            0x0020 => "XOR-MAPPED-ADDRESS",
            0x0022 => "RESERVATION-TOKEN",
            0x0024 => "PRIORITY",
            0x0025 => "USE-CANDIDATE",
            0x8000 => "ADDITIONAL-ADDRESS-FAMILY",
            0x8001 => "ADDRESS-ERROR-CODE",
            0x8002 => "PASSWORD-ALGORITHMS",
            0x8003 => "ALTERNATE-DOMAIN",
            0x8004 => "ICMP",
            0x8022 => "SOFTWARE",
            0x8023 => "ALTERNATE-SERVER",
            0x8028 => "FINGERPRINT",
            0x8029 => "ICE-CONTROLLED",
            0x802A => "ICE-CONTROLLING",
            _ => return None,
        })
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "attribute {:#06x}", self.0),
        }
    }
}

impl fmt::Debug for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why an attribute value could not be decoded. The server answers most of these with
/// 400 (Bad Request); [`AttributeError::UnknownAddressFamily`] in
/// REQUESTED-ADDRESS-FAMILY is a 440 (RFC 8656 §7.2).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    /// The value has a size the attribute does not allow.
    #[error("{0}: wrong value length")]
    BadLength(AttributeType),
    /// An address family other than 0x01 (IPv4) or 0x02 (IPv6).
    #[error("address family {0:#04x} is neither IPv4 nor IPv6")]
    UnknownAddressFamily(u8),
    /// Text that is not UTF-8.
    #[error("{0}: not UTF-8")]
    NotUtf8(AttributeType),
    /// Text longer than the decoder accepts (763 bytes; 255 for ALTERNATE-DOMAIN).
    #[error("{0}: text too long")]
    TextTooLong(AttributeType),
    /// ERROR-CODE or ADDRESS-ERROR-CODE with a class outside 3–6 or a number above 99.
    #[error("error code class or number out of range")]
    BadErrorCode,
    /// PASSWORD-ALGORITHMS or PASSWORD-ALGORITHM whose parameter lengths do not add up.
    #[error("malformed password algorithm list")]
    BadAlgorithmList,
}

/// An IP address family as STUN encodes it (RFC 8489 §14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// 0x01.
    V4,
    /// 0x02.
    V6,
}

impl AddressFamily {
    /// The wire value.
    pub const fn bits(self) -> u8 {
        match self {
            AddressFamily::V4 => 0x01,
            AddressFamily::V6 => 0x02,
        }
    }

    /// From the wire value.
    pub const fn from_bits(bits: u8) -> Result<AddressFamily, AttributeError> {
        match bits {
            0x01 => Ok(AddressFamily::V4),
            0x02 => Ok(AddressFamily::V6),
            other => Err(AttributeError::UnknownAddressFamily(other)),
        }
    }

    /// The family of an address.
    pub const fn of(ip: &IpAddr) -> AddressFamily {
        match ip {
            IpAddr::V4(_) => AddressFamily::V4,
            IpAddr::V6(_) => AddressFamily::V6,
        }
    }
}

/// An error code and reason phrase (ERROR-CODE, RFC 8489 §14.8; also inside
/// ADDRESS-ERROR-CODE, RFC 8656 §18.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// 300–699.
    pub code: u16,
    /// Diagnostic text, fewer than 128 characters.
    pub reason: &'a str,
}

impl ErrorCode<'static> {
    /// 300 (RFC 8489 §14.8).
    pub const TRY_ALTERNATE: ErrorCode<'static> = ErrorCode::new(300, "Try Alternate");
    /// 400 (RFC 8489 §14.8).
    pub const BAD_REQUEST: ErrorCode<'static> = ErrorCode::new(400, "Bad Request");
    /// 401 (RFC 8489 §14.8).
    pub const UNAUTHENTICATED: ErrorCode<'static> = ErrorCode::new(401, "Unauthenticated");
    /// 403 (RFC 8656 §19).
    pub const FORBIDDEN: ErrorCode<'static> = ErrorCode::new(403, "Forbidden");
    /// 420 (RFC 8489 §14.8).
    pub const UNKNOWN_ATTRIBUTE: ErrorCode<'static> = ErrorCode::new(420, "Unknown Attribute");
    /// 437 (RFC 8656 §19).
    pub const ALLOCATION_MISMATCH: ErrorCode<'static> = ErrorCode::new(437, "Allocation Mismatch");
    /// 438 (RFC 8489 §14.8).
    pub const STALE_NONCE: ErrorCode<'static> = ErrorCode::new(438, "Stale Nonce");
    /// 440 (RFC 8656 §19).
    pub const ADDRESS_FAMILY_NOT_SUPPORTED: ErrorCode<'static> =
        ErrorCode::new(440, "Address Family not Supported");
    /// 441 (RFC 8656 §19).
    pub const WRONG_CREDENTIALS: ErrorCode<'static> = ErrorCode::new(441, "Wrong Credentials");
    /// 442 (RFC 8656 §19).
    pub const UNSUPPORTED_TRANSPORT_PROTOCOL: ErrorCode<'static> =
        ErrorCode::new(442, "Unsupported Transport Protocol");
    /// 443 (RFC 8656 §19).
    pub const PEER_ADDRESS_FAMILY_MISMATCH: ErrorCode<'static> =
        ErrorCode::new(443, "Peer Address Family Mismatch");
    /// 486 (RFC 8656 §19).
    pub const ALLOCATION_QUOTA_REACHED: ErrorCode<'static> =
        ErrorCode::new(486, "Allocation Quota Reached");
    /// 500 (RFC 8489 §14.8).
    pub const SERVER_ERROR: ErrorCode<'static> = ErrorCode::new(500, "Server Error");
    /// 508 (RFC 8656 §19).
    pub const INSUFFICIENT_CAPACITY: ErrorCode<'static> =
        ErrorCode::new(508, "Insufficient Capacity");
}

impl<'a> ErrorCode<'a> {
    /// An error code with a reason phrase.
    pub const fn new(code: u16, reason: &'a str) -> ErrorCode<'a> {
        ErrorCode { code, reason }
    }
}

/// PASSWORD-ALGORITHM ID of MD5 (RFC 8489 §18.5).
pub const ALGORITHM_MD5: u16 = 0x0001;
/// PASSWORD-ALGORITHM ID of SHA-256 (RFC 8489 §18.5).
pub const ALGORITHM_SHA256: u16 = 0x0002;
/// REQUESTED-TRANSPORT protocol number of UDP, the only one RFC 8656 allocates.
pub const TRANSPORT_UDP: u8 = 17;

/// One password algorithm with its parameters (RFC 8489 §14.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordAlgorithm<'a> {
    /// [`ALGORITHM_MD5`], [`ALGORITHM_SHA256`], or another registered number.
    pub algorithm: u16,
    /// Parameters (empty for MD5 and SHA-256).
    pub params: &'a [u8],
}

/// A PASSWORD-ALGORITHMS value (RFC 8489 §14.11), kept in its encoded form so a server
/// can compare the copy a client echoes byte for byte (§9.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordAlgorithms<'a>(&'a [u8]);

impl<'a> PasswordAlgorithms<'a> {
    /// SHA-256 preferred, then MD5: what a server that supports both advertises.
    pub const SHA256_MD5: PasswordAlgorithms<'static> =
        PasswordAlgorithms(&[0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);

    /// Checks an encoded list: entries of algorithm, parameter length, parameters padded
    /// to 4 bytes.
    pub fn new(encoded: &'a [u8]) -> Result<PasswordAlgorithms<'a>, AttributeError> {
        let mut rest = encoded;
        while !rest.is_empty() {
            let [_, _, l0, l1, tail @ ..] = rest else {
                return Err(AttributeError::BadAlgorithmList);
            };
            let plen = usize::from(u16::from_be_bytes([*l0, *l1]));
            if plen > tail.len() {
                return Err(AttributeError::BadAlgorithmList);
            }
            // The last entry's padding may be left to the attribute padding.
            rest = tail.get(super::message::pad4(plen)..).unwrap_or(&[]);
        }
        Ok(PasswordAlgorithms(encoded))
    }

    /// The encoded value.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The algorithms, in preference order.
    pub fn iter(&self) -> impl Iterator<Item = PasswordAlgorithm<'a>> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let [a0, a1, l0, l1, tail @ ..] = rest else {
                return None;
            };
            let plen = usize::from(u16::from_be_bytes([*l0, *l1]));
            let params = tail.get(..plen)?;
            let algorithm = u16::from_be_bytes([*a0, *a1]);
            rest = tail.get(super::message::pad4(plen)..).unwrap_or(&[]);
            Some(PasswordAlgorithm { algorithm, params })
        })
    }
}

/// An UNKNOWN-ATTRIBUTES value (RFC 8489 §14.13): as decoded, or as a list to encode.
#[derive(Debug, Clone, Copy)]
pub enum UnknownAttributeList<'a> {
    /// The wire form: big-endian 16-bit types (even length, checked).
    Encoded(&'a [u8]),
    /// A list to encode (e.g. [`super::UnknownTypes::as_slice`]).
    Types(&'a [AttributeType]),
}

impl<'a> UnknownAttributeList<'a> {
    /// The types.
    pub fn iter(&self) -> impl Iterator<Item = AttributeType> + 'a {
        let (encoded, types): (&'a [u8], &'a [AttributeType]) = match *self {
            UnknownAttributeList::Encoded(b) => (b, &[]),
            UnknownAttributeList::Types(t) => (&[], t),
        };
        encoded
            .chunks_exact(2)
            .map(|c| AttributeType(be16(c, 0)))
            .chain(types.iter().copied())
    }

    fn len(&self) -> usize {
        match self {
            UnknownAttributeList::Encoded(b) => b.len() / 2,
            UnknownAttributeList::Types(t) => t.len(),
        }
    }
}

impl PartialEq for UnknownAttributeList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for UnknownAttributeList<'_> {}

/// A decoded attribute value.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute<'a> {
    /// MAPPED-ADDRESS: the reflexive address in clear (RFC 3489 clients only).
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS: the reflexive address.
    XorMappedAddress(SocketAddr),
    /// XOR-PEER-ADDRESS: a peer of a TURN allocation.
    XorPeerAddress(SocketAddr),
    /// XOR-RELAYED-ADDRESS: the relayed address of an allocation.
    XorRelayedAddress(SocketAddr),
    /// ALTERNATE-SERVER (same encoding as MAPPED-ADDRESS).
    AlternateServer(SocketAddr),
    /// USERNAME.
    Username(&'a str),
    /// USERHASH: SHA-256 of `username ":" realm`.
    UserHash(&'a [u8; 32]),
    /// MESSAGE-INTEGRITY: HMAC-SHA1. Written only by
    /// [`super::MessageWriter::add_message_integrity`].
    MessageIntegrity(&'a [u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256: 16–32 bytes of HMAC-SHA256, a multiple of 4. Written only
    /// by [`super::MessageWriter::add_message_integrity_sha256`].
    MessageIntegritySha256(&'a [u8]),
    /// FINGERPRINT: CRC-32 XOR 0x5354554E. Written only by
    /// [`super::MessageWriter::add_fingerprint`].
    Fingerprint(u32),
    /// ERROR-CODE.
    ErrorCode(ErrorCode<'a>),
    /// REALM.
    Realm(&'a str),
    /// NONCE.
    Nonce(&'a str),
    /// PASSWORD-ALGORITHMS.
    PasswordAlgorithms(PasswordAlgorithms<'a>),
    /// PASSWORD-ALGORITHM.
    PasswordAlgorithm(PasswordAlgorithm<'a>),
    /// UNKNOWN-ATTRIBUTES.
    UnknownAttributes(UnknownAttributeList<'a>),
    /// SOFTWARE.
    Software(&'a str),
    /// ALTERNATE-DOMAIN.
    AlternateDomain(&'a str),
    /// CHANNEL-NUMBER (the RFFU half is ignored; range checks belong to the server,
    /// which answers 400 outside 0x4000–0x4FFF).
    ChannelNumber(u16),
    /// LIFETIME in seconds.
    Lifetime(u32),
    /// DATA.
    Data(&'a [u8]),
    /// EVEN-PORT; `reserve_next` is the R bit: reserve the next-higher port too.
    EvenPort {
        /// The R bit.
        reserve_next: bool,
    },
    /// REQUESTED-TRANSPORT: an IP protocol number ([`TRANSPORT_UDP`]).
    RequestedTransport(u8),
    /// DONT-FRAGMENT (no value).
    DontFragment,
    /// RESERVATION-TOKEN.
    ReservationToken([u8; 8]),
    /// REQUESTED-ADDRESS-FAMILY.
    RequestedAddressFamily(AddressFamily),
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 allows only IPv6 here; the server checks).
    AdditionalAddressFamily(AddressFamily),
    /// ADDRESS-ERROR-CODE: why one family of a dual-stack Allocate failed.
    AddressErrorCode {
        /// The family that failed.
        family: AddressFamily,
        /// Why.
        error: ErrorCode<'a>,
    },
    /// ICMP: an ICMP error a peer sent, relayed in a Data indication. Decoded byte-wise
    /// (type in byte 2, code in byte 3), as the field names and sizes of RFC 8656 §18.13
    /// say; its drawing is misaligned.
    Icmp {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        icmp_code: u8,
        /// Error data (the next-hop MTU for "fragmentation needed"/"packet too big").
        error_data: u32,
    },
    /// Any other type (ICE attributes, extensions), undecoded.
    Other {
        /// The type.
        typ: AttributeType,
        /// The value.
        value: &'a [u8],
    },
}

/// "A compliant implementation MUST be able to parse a UTF-8-encoded sequence of 763 or
/// fewer octets" (RFC 8489 §14.3, and likewise §14.8–§14.10, §14.14).
const MAX_TEXT_DECODE: usize = 763;
/// USERNAME: "a UTF-8-encoded sequence of fewer than 509 bytes" (RFC 8489 §14.3).
const MAX_USERNAME_ENCODE: usize = 508;
/// REALM, NONCE, SOFTWARE, reason phrases: "fewer than 128 characters".
const MAX_CHARS_ENCODE: usize = 127;
/// ALTERNATE-DOMAIN: "255 or fewer ASCII characters" (RFC 8489 §14.16).
const MAX_DOMAIN: usize = 255;

fn text(typ: AttributeType, v: &[u8], max: usize) -> Result<&str, AttributeError> {
    if v.len() > max {
        return Err(AttributeError::TextTooLong(typ));
    }
    std::str::from_utf8(v).map_err(|_| AttributeError::NotUtf8(typ))
}

fn exact<const N: usize>(typ: AttributeType, v: &[u8]) -> Result<[u8; N], AttributeError> {
    <[u8; N]>::try_from(v).map_err(|_| AttributeError::BadLength(typ))
}

fn parse_address(
    typ: AttributeType,
    v: &[u8],
    xor: Option<&[u8; 16]>,
) -> Result<SocketAddr, AttributeError> {
    let [_, family, p0, p1, addr @ ..] = v else {
        return Err(AttributeError::BadLength(typ));
    };
    let mask = xor.copied().unwrap_or([0; 16]);
    let [m0, m1, ..] = mask;
    let port = u16::from_be_bytes([p0 ^ m0, p1 ^ m1]);
    let ip = match AddressFamily::from_bits(*family)? {
        AddressFamily::V4 => {
            let mut octets = exact::<4>(typ, addr)?;
            octets
                .iter_mut()
                .zip(mask.iter())
                .for_each(|(o, m)| *o ^= m);
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        AddressFamily::V6 => {
            let mut octets = exact::<16>(typ, addr)?;
            octets
                .iter_mut()
                .zip(mask.iter())
                .for_each(|(o, m)| *o ^= m);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

fn parse_error_code(v: &[u8]) -> Result<(u8, ErrorCode<'_>), AttributeError> {
    let [family, _, class, number, reason @ ..] = v else {
        return Err(AttributeError::BadLength(AttributeType::ERROR_CODE));
    };
    // "The Class represents the hundreds digit of the error code. The value MUST be
    // between 3 and 6. The Number … MUST be between 0 and 99" (RFC 8489 §14.8).
    let class = class & 0x07;
    if !(3..=6).contains(&class) || *number > 99 {
        return Err(AttributeError::BadErrorCode);
    }
    let reason = text(AttributeType::ERROR_CODE, reason, MAX_TEXT_DECODE)?;
    Ok((
        *family,
        ErrorCode::new(u16::from(class) * 100 + u16::from(*number), reason),
    ))
}

fn parse_family(typ: AttributeType, v: &[u8]) -> Result<AddressFamily, AttributeError> {
    let [family, _, _, _] = exact::<4>(typ, v)?;
    AddressFamily::from_bits(family)
}

impl<'a> Attribute<'a> {
    /// Decodes an attribute of a message with transaction ID `txid` (the XOR'd addresses
    /// need it).
    pub fn parse(
        raw: &RawAttribute<'a>,
        txid: &TransactionId,
    ) -> Result<Attribute<'a>, AttributeError> {
        Attribute::parse_value(raw.attribute_type(), raw.value(), txid)
    }

    /// Decodes the value `v` of an attribute of type `typ`.
    pub fn parse_value(
        typ: AttributeType,
        v: &'a [u8],
        txid: &TransactionId,
    ) -> Result<Attribute<'a>, AttributeError> {
        let xor = txid.xor_key();
        Ok(match typ {
            AttributeType::MAPPED_ADDRESS => Attribute::MappedAddress(parse_address(typ, v, None)?),
            AttributeType::ALTERNATE_SERVER => {
                Attribute::AlternateServer(parse_address(typ, v, None)?)
            }
            AttributeType::XOR_MAPPED_ADDRESS => {
                Attribute::XorMappedAddress(parse_address(typ, v, Some(&xor))?)
            }
            AttributeType::XOR_PEER_ADDRESS => {
                Attribute::XorPeerAddress(parse_address(typ, v, Some(&xor))?)
            }
            AttributeType::XOR_RELAYED_ADDRESS => {
                Attribute::XorRelayedAddress(parse_address(typ, v, Some(&xor))?)
            }
            AttributeType::USERNAME => Attribute::Username(text(typ, v, MAX_TEXT_DECODE)?),
            AttributeType::REALM => Attribute::Realm(text(typ, v, MAX_TEXT_DECODE)?),
            AttributeType::NONCE => Attribute::Nonce(text(typ, v, MAX_TEXT_DECODE)?),
            AttributeType::SOFTWARE => Attribute::Software(text(typ, v, MAX_TEXT_DECODE)?),
            AttributeType::ALTERNATE_DOMAIN => {
                let domain = text(typ, v, MAX_DOMAIN)?;
                if !domain.is_ascii() {
                    return Err(AttributeError::NotUtf8(typ));
                }
                Attribute::AlternateDomain(domain)
            }
            AttributeType::USERHASH => Attribute::UserHash(
                <&[u8; 32]>::try_from(v).map_err(|_| AttributeError::BadLength(typ))?,
            ),
            AttributeType::MESSAGE_INTEGRITY => Attribute::MessageIntegrity(
                <&[u8; 20]>::try_from(v).map_err(|_| AttributeError::BadLength(typ))?,
            ),
            AttributeType::MESSAGE_INTEGRITY_SHA256 => {
                // "at most 32 bytes, but it MUST be at least 16 bytes and MUST be a
                // multiple of 4 bytes" (RFC 8489 §14.6).
                if !(16..=32).contains(&v.len()) || v.len() & 3 != 0 {
                    return Err(AttributeError::BadLength(typ));
                }
                Attribute::MessageIntegritySha256(v)
            }
            AttributeType::FINGERPRINT => {
                Attribute::Fingerprint(u32::from_be_bytes(exact(typ, v)?))
            }
            AttributeType::ERROR_CODE => Attribute::ErrorCode(parse_error_code(v)?.1),
            AttributeType::ADDRESS_ERROR_CODE => {
                let (family, error) = parse_error_code(v)?;
                Attribute::AddressErrorCode {
                    family: AddressFamily::from_bits(family)?,
                    error,
                }
            }
            AttributeType::PASSWORD_ALGORITHMS => {
                Attribute::PasswordAlgorithms(PasswordAlgorithms::new(v)?)
            }
            AttributeType::PASSWORD_ALGORITHM => {
                let [a0, a1, l0, l1, params @ ..] = v else {
                    return Err(AttributeError::BadLength(typ));
                };
                let plen = usize::from(u16::from_be_bytes([*l0, *l1]));
                // The parameters may or may not have their padding inside the length.
                if params.len() != plen && params.len() != super::message::pad4(plen) {
                    return Err(AttributeError::BadAlgorithmList);
                }
                Attribute::PasswordAlgorithm(PasswordAlgorithm {
                    algorithm: u16::from_be_bytes([*a0, *a1]),
                    params: params.get(..plen).unwrap_or(&[]),
                })
            }
            AttributeType::UNKNOWN_ATTRIBUTES => {
                if v.len() & 1 != 0 {
                    return Err(AttributeError::BadLength(typ));
                }
                Attribute::UnknownAttributes(UnknownAttributeList::Encoded(v))
            }
            AttributeType::CHANNEL_NUMBER => {
                let [c0, c1, _, _] = exact::<4>(typ, v)?;
                Attribute::ChannelNumber(u16::from_be_bytes([c0, c1]))
            }
            AttributeType::LIFETIME => Attribute::Lifetime(u32::from_be_bytes(exact(typ, v)?)),
            AttributeType::DATA => Attribute::Data(v),
            AttributeType::EVEN_PORT => {
                let [flags] = exact::<1>(typ, v)?;
                Attribute::EvenPort {
                    reserve_next: flags & 0x80 != 0,
                }
            }
            AttributeType::REQUESTED_TRANSPORT => {
                let [protocol, _, _, _] = exact::<4>(typ, v)?;
                Attribute::RequestedTransport(protocol)
            }
            AttributeType::DONT_FRAGMENT => {
                if !v.is_empty() {
                    return Err(AttributeError::BadLength(typ));
                }
                Attribute::DontFragment
            }
            AttributeType::RESERVATION_TOKEN => Attribute::ReservationToken(exact(typ, v)?),
            AttributeType::REQUESTED_ADDRESS_FAMILY => {
                Attribute::RequestedAddressFamily(parse_family(typ, v)?)
            }
            AttributeType::ADDITIONAL_ADDRESS_FAMILY => {
                Attribute::AdditionalAddressFamily(parse_family(typ, v)?)
            }
            AttributeType::ICMP => {
                let [_, _, icmp_type, icmp_code, d0, d1, d2, d3] = exact::<8>(typ, v)?;
                Attribute::Icmp {
                    icmp_type,
                    icmp_code,
                    error_data: u32::from_be_bytes([d0, d1, d2, d3]),
                }
            }
            _ => Attribute::Other { typ, value: v },
        })
    }

    /// The attribute type.
    pub fn attribute_type(&self) -> AttributeType {
        match self {
            Attribute::MappedAddress(_) => AttributeType::MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => AttributeType::XOR_MAPPED_ADDRESS,
            Attribute::XorPeerAddress(_) => AttributeType::XOR_PEER_ADDRESS,
            Attribute::XorRelayedAddress(_) => AttributeType::XOR_RELAYED_ADDRESS,
            Attribute::AlternateServer(_) => AttributeType::ALTERNATE_SERVER,
            Attribute::Username(_) => AttributeType::USERNAME,
            Attribute::UserHash(_) => AttributeType::USERHASH,
            Attribute::MessageIntegrity(_) => AttributeType::MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => AttributeType::MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => AttributeType::FINGERPRINT,
            Attribute::ErrorCode(_) => AttributeType::ERROR_CODE,
            Attribute::Realm(_) => AttributeType::REALM,
            Attribute::Nonce(_) => AttributeType::NONCE,
            Attribute::PasswordAlgorithms(_) => AttributeType::PASSWORD_ALGORITHMS,
            Attribute::PasswordAlgorithm(_) => AttributeType::PASSWORD_ALGORITHM,
            Attribute::UnknownAttributes(_) => AttributeType::UNKNOWN_ATTRIBUTES,
            Attribute::Software(_) => AttributeType::SOFTWARE,
            Attribute::AlternateDomain(_) => AttributeType::ALTERNATE_DOMAIN,
            Attribute::ChannelNumber(_) => AttributeType::CHANNEL_NUMBER,
            Attribute::Lifetime(_) => AttributeType::LIFETIME,
            Attribute::Data(_) => AttributeType::DATA,
            Attribute::EvenPort { .. } => AttributeType::EVEN_PORT,
            Attribute::RequestedTransport(_) => AttributeType::REQUESTED_TRANSPORT,
            Attribute::DontFragment => AttributeType::DONT_FRAGMENT,
            Attribute::ReservationToken(_) => AttributeType::RESERVATION_TOKEN,
            Attribute::RequestedAddressFamily(_) => AttributeType::REQUESTED_ADDRESS_FAMILY,
            Attribute::AdditionalAddressFamily(_) => AttributeType::ADDITIONAL_ADDRESS_FAMILY,
            Attribute::AddressErrorCode { .. } => AttributeType::ADDRESS_ERROR_CODE,
            Attribute::Icmp { .. } => AttributeType::ICMP,
            Attribute::Other { typ, .. } => *typ,
        }
    }

    /// The length of the encoded value, before padding.
    pub fn value_len(&self) -> usize {
        match self {
            Attribute::MappedAddress(a)
            | Attribute::XorMappedAddress(a)
            | Attribute::XorPeerAddress(a)
            | Attribute::XorRelayedAddress(a)
            | Attribute::AlternateServer(a) => match a {
                SocketAddr::V4(_) => 8,
                SocketAddr::V6(_) => 20,
            },
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => s.len(),
            Attribute::UserHash(_) => 32,
            Attribute::MessageIntegrity(_) => 20,
            Attribute::MessageIntegritySha256(v) | Attribute::Data(v) => v.len(),
            Attribute::Fingerprint(_) => 4,
            Attribute::ErrorCode(e) | Attribute::AddressErrorCode { error: e, .. } => {
                4 + e.reason.len()
            }
            Attribute::PasswordAlgorithms(p) => p.as_bytes().len(),
            Attribute::PasswordAlgorithm(p) => 4 + p.params.len(),
            Attribute::UnknownAttributes(list) => 2 * list.len(),
            Attribute::ChannelNumber(_)
            | Attribute::Lifetime(_)
            | Attribute::RequestedTransport(_)
            | Attribute::RequestedAddressFamily(_)
            | Attribute::AdditionalAddressFamily(_) => 4,
            Attribute::EvenPort { .. } => 1,
            Attribute::DontFragment => 0,
            Attribute::ReservationToken(_) | Attribute::Icmp { .. } => 8,
            Attribute::Other { value, .. } => value.len(),
        }
    }

    /// Checks the sender's limits before anything is written.
    pub(crate) fn check_emit(&self) -> Result<(), EmitError> {
        let typ = self.attribute_type();
        let too_long = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(EmitError::ValueTooLong(typ))
            }
        };
        let error_code = |e: &ErrorCode<'_>| {
            if !(300..=699).contains(&e.code) {
                return Err(EmitError::OutOfRange(typ));
            }
            too_long(e.reason.chars().count() <= MAX_CHARS_ENCODE)
        };
        match self {
            Attribute::MessageIntegrity(_)
            | Attribute::MessageIntegritySha256(_)
            | Attribute::Fingerprint(_) => Err(EmitError::UseDedicatedMethod(typ)),
            Attribute::Other { typ, .. }
                if matches!(
                    *typ,
                    AttributeType::MESSAGE_INTEGRITY
                        | AttributeType::MESSAGE_INTEGRITY_SHA256
                        | AttributeType::FINGERPRINT
                ) =>
            {
                Err(EmitError::UseDedicatedMethod(*typ))
            }
            Attribute::Username(s) => too_long(s.len() <= MAX_USERNAME_ENCODE),
            Attribute::Realm(s) | Attribute::Nonce(s) | Attribute::Software(s) => {
                too_long(s.chars().count() <= MAX_CHARS_ENCODE)
            }
            Attribute::AlternateDomain(s) => {
                if !s.is_ascii() {
                    return Err(EmitError::OutOfRange(typ));
                }
                too_long(s.len() <= MAX_DOMAIN)
            }
            Attribute::ErrorCode(e) | Attribute::AddressErrorCode { error: e, .. } => error_code(e),
            Attribute::PasswordAlgorithm(p) => {
                too_long(p.params.len() <= usize::from(u16::MAX) - 4)
            }
            _ => too_long(self.value_len() <= usize::from(u16::MAX)),
        }
    }

    /// Appends the value (unpadded) to `out`; `xor_key` is the cookie and transaction ID.
    pub(crate) fn write_value(&self, xor_key: &[u8; 16], out: &mut Vec<u8>) {
        match self {
            Attribute::MappedAddress(a) | Attribute::AlternateServer(a) => {
                write_address(a, None, out)
            }
            Attribute::XorMappedAddress(a)
            | Attribute::XorPeerAddress(a)
            | Attribute::XorRelayedAddress(a) => write_address(a, Some(xor_key), out),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::UserHash(h) => out.extend_from_slice(&h[..]),
            Attribute::MessageIntegrity(m) => out.extend_from_slice(&m[..]),
            Attribute::MessageIntegritySha256(v) | Attribute::Data(v) => out.extend_from_slice(v),
            Attribute::Fingerprint(f) => out.extend_from_slice(&f.to_be_bytes()),
            Attribute::ErrorCode(e) => write_error_code(0, e, out),
            Attribute::AddressErrorCode { family, error } => {
                write_error_code(family.bits(), error, out)
            }
            Attribute::PasswordAlgorithms(p) => out.extend_from_slice(p.as_bytes()),
            Attribute::PasswordAlgorithm(p) => {
                out.extend_from_slice(&p.algorithm.to_be_bytes());
                // check_emit bounded the parameters to fit the 16-bit length.
                let plen = u16::try_from(p.params.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&plen.to_be_bytes());
                out.extend_from_slice(p.params);
            }
            Attribute::UnknownAttributes(list) => {
                for t in list.iter() {
                    out.extend_from_slice(&t.bits().to_be_bytes());
                }
            }
            Attribute::ChannelNumber(c) => {
                out.extend_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attribute::Lifetime(l) => out.extend_from_slice(&l.to_be_bytes()),
            Attribute::EvenPort { reserve_next } => {
                out.push(if *reserve_next { 0x80 } else { 0x00 })
            }
            Attribute::RequestedTransport(p) => out.extend_from_slice(&[*p, 0, 0, 0]),
            Attribute::DontFragment => {}
            Attribute::ReservationToken(t) => out.extend_from_slice(t),
            Attribute::RequestedAddressFamily(f) | Attribute::AdditionalAddressFamily(f) => {
                out.extend_from_slice(&[f.bits(), 0, 0, 0])
            }
            Attribute::Icmp {
                icmp_type,
                icmp_code,
                error_data,
            } => {
                out.extend_from_slice(&[0, 0, *icmp_type, *icmp_code]);
                out.extend_from_slice(&error_data.to_be_bytes());
            }
            Attribute::Other { value, .. } => out.extend_from_slice(value),
        }
    }
}

fn write_address(addr: &SocketAddr, xor: Option<&[u8; 16]>, out: &mut Vec<u8>) {
    let mask = xor.copied().unwrap_or([0; 16]);
    let [m0, m1, ..] = mask;
    let [p0, p1] = addr.port().to_be_bytes();
    let family = AddressFamily::of(&addr.ip());
    out.extend_from_slice(&[0, family.bits(), p0 ^ m0, p1 ^ m1]);
    match addr.ip() {
        IpAddr::V4(ip) => out.extend(ip.octets().iter().zip(mask.iter()).map(|(o, m)| o ^ m)),
        IpAddr::V6(ip) => out.extend(ip.octets().iter().zip(mask.iter()).map(|(o, m)| o ^ m)),
    }
}

fn write_error_code(family: u8, e: &ErrorCode<'_>, out: &mut Vec<u8>) {
    // check_emit kept the code within 300..=699, so both casts are exact.
    let class = u8::try_from(e.code / 100).unwrap_or(0);
    let number = u8::try_from(e.code % 100).unwrap_or(0);
    out.extend_from_slice(&[family, 0, class, number]);
    out.extend_from_slice(e.reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const TXID: TransactionId = TransactionId::new([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

    fn parse(typ: AttributeType, v: &[u8]) -> Result<Attribute<'_>, AttributeError> {
        Attribute::parse_value(typ, v, &TXID)
    }

    #[test]
    fn comprehension_ranges() {
        assert!(AttributeType::USERNAME.is_comprehension_required());
        assert!(AttributeType::new(0x7FFF).is_comprehension_required());
        assert!(!AttributeType::SOFTWARE.is_comprehension_required());
        assert!(!AttributeType::new(0x8000).is_comprehension_required());
        assert!(AttributeType::PRIORITY.is_known());
        assert!(!AttributeType::new(0x0003).is_known());
        assert_eq!(
            AttributeType::XOR_PEER_ADDRESS.to_string(),
            "XOR-PEER-ADDRESS"
        );
        assert_eq!(AttributeType::new(0x7777).to_string(), "attribute 0x7777");
    }

    #[test]
    fn fixed_sizes_are_enforced() {
        use AttributeType as T;
        for (typ, good) in [
            (T::USERHASH, 32),
            (T::MESSAGE_INTEGRITY, 20),
            (T::FINGERPRINT, 4),
            (T::CHANNEL_NUMBER, 4),
            (T::LIFETIME, 4),
            (T::EVEN_PORT, 1),
            (T::REQUESTED_TRANSPORT, 4),
            (T::DONT_FRAGMENT, 0),
            (T::RESERVATION_TOKEN, 8),
            (T::ICMP, 8),
        ] {
            let buf = [0u8; 40];
            assert!(parse(typ, &buf[..good]).is_ok(), "{typ}");
            assert_eq!(
                parse(typ, &buf[..good + 1]),
                Err(AttributeError::BadLength(typ))
            );
            if good > 0 {
                assert_eq!(
                    parse(typ, &buf[..good - 1]),
                    Err(AttributeError::BadLength(typ))
                );
            }
        }
        for len in 0..40 {
            let ok = (16..=32).contains(&len) && len & 3 == 0;
            assert_eq!(
                parse(T::MESSAGE_INTEGRITY_SHA256, &[0u8; 40][..len]).is_ok(),
                ok,
                "{len}"
            );
        }
    }

    #[test]
    fn addresses() {
        let v = [0, 1, 0x12, 0x34, 192, 0, 2, 1];
        assert_eq!(
            parse(AttributeType::MAPPED_ADDRESS, &v),
            Ok(Attribute::MappedAddress("192.0.2.1:4660".parse().unwrap()))
        );
        assert_eq!(
            parse(AttributeType::MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4]),
            Err(AttributeError::UnknownAddressFamily(3))
        );
        assert_eq!(
            parse(AttributeType::MAPPED_ADDRESS, &[0, 2, 0, 0, 1, 2, 3, 4]),
            Err(AttributeError::BadLength(AttributeType::MAPPED_ADDRESS))
        );
        assert_eq!(
            parse(AttributeType::XOR_PEER_ADDRESS, &[0, 1, 0]),
            Err(AttributeError::BadLength(AttributeType::XOR_PEER_ADDRESS))
        );
    }

    #[test]
    fn text_limits() {
        let long = "a".repeat(764);
        assert_eq!(
            parse(AttributeType::USERNAME, long.as_bytes()),
            Err(AttributeError::TextTooLong(AttributeType::USERNAME))
        );
        assert!(parse(AttributeType::USERNAME, &long.as_bytes()[..763]).is_ok());
        assert_eq!(
            parse(AttributeType::REALM, &[0xFF, 0xFE]),
            Err(AttributeError::NotUtf8(AttributeType::REALM))
        );
        assert!(Attribute::Username(&"a".repeat(508)).check_emit().is_ok());
        assert_eq!(
            Attribute::Username(&"a".repeat(509)).check_emit(),
            Err(EmitError::ValueTooLong(AttributeType::USERNAME))
        );
        // 127 three-byte characters are fine, 128 are not.
        assert!(Attribute::Realm(&"マ".repeat(127)).check_emit().is_ok());
        assert!(Attribute::Nonce(&"マ".repeat(128)).check_emit().is_err());
        assert!(Attribute::AlternateDomain("example.org")
            .check_emit()
            .is_ok());
        assert!(Attribute::AlternateDomain("éxample.org")
            .check_emit()
            .is_err());
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            parse(AttributeType::ERROR_CODE, b"\0\0\x04\x26Stale Nonce"),
            Ok(Attribute::ErrorCode(ErrorCode::STALE_NONCE))
        );
        // Reserved bits are ignored.
        assert_eq!(
            parse(AttributeType::ERROR_CODE, b"\xFF\xFF\xFC\x01x"),
            Ok(Attribute::ErrorCode(ErrorCode::new(401, "x")))
        );
        assert_eq!(
            parse(AttributeType::ERROR_CODE, b"\0\0\x02\x00"),
            Err(AttributeError::BadErrorCode)
        );
        assert_eq!(
            parse(AttributeType::ERROR_CODE, b"\0\0\x04\x64"),
            Err(AttributeError::BadErrorCode)
        );
        assert!(Attribute::ErrorCode(ErrorCode::new(299, ""))
            .check_emit()
            .is_err());
        assert!(Attribute::ErrorCode(ErrorCode::new(700, ""))
            .check_emit()
            .is_err());
        assert_eq!(
            parse(
                AttributeType::ADDRESS_ERROR_CODE,
                b"\x02\0\x04\x28Address Family not Supported"
            ),
            Ok(Attribute::AddressErrorCode {
                family: AddressFamily::V6,
                error: ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED
            })
        );
    }

    #[test]
    fn password_algorithms() {
        let list = PasswordAlgorithms::SHA256_MD5;
        let algs: Vec<u16> = list.iter().map(|a| a.algorithm).collect();
        assert_eq!(algs, [ALGORITHM_SHA256, ALGORITHM_MD5]);
        // One with 5 bytes of parameters (padded to 8), then MD5.
        let odd = [0, 9, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0, 0, 1, 0, 0];
        let parsed = PasswordAlgorithms::new(&odd).unwrap();
        let all: Vec<PasswordAlgorithm<'_>> = parsed.iter().collect();
        assert_eq!(
            all[0],
            PasswordAlgorithm {
                algorithm: 9,
                params: &[1, 2, 3, 4, 5]
            }
        );
        assert_eq!(all[1].algorithm, ALGORITHM_MD5);
        assert_eq!(
            PasswordAlgorithms::new(&[0, 1, 0]),
            Err(AttributeError::BadAlgorithmList)
        );
        assert_eq!(
            PasswordAlgorithms::new(&[0, 1, 0, 9, 0]),
            Err(AttributeError::BadAlgorithmList)
        );
        assert_eq!(
            parse(AttributeType::PASSWORD_ALGORITHM, &[0, 2, 0, 0]),
            Ok(Attribute::PasswordAlgorithm(PasswordAlgorithm {
                algorithm: 2,
                params: &[]
            }))
        );
        assert_eq!(
            parse(AttributeType::PASSWORD_ALGORITHM, &[0, 2, 0, 4, 1]),
            Err(AttributeError::BadAlgorithmList)
        );
    }

    #[test]
    fn unknown_attribute_lists_compare_by_content() {
        let types = [AttributeType::new(0x7777), AttributeType::new(0x0003)];
        assert_eq!(
            UnknownAttributeList::Encoded(&[0x77, 0x77, 0x00, 0x03]),
            UnknownAttributeList::Types(&types)
        );
        assert_eq!(
            parse(AttributeType::UNKNOWN_ATTRIBUTES, &[0, 1, 2]),
            Err(AttributeError::BadLength(AttributeType::UNKNOWN_ATTRIBUTES))
        );
    }

    #[test]
    fn dedicated_methods_only() {
        for a in [
            Attribute::MessageIntegrity(&[0; 20]),
            Attribute::MessageIntegritySha256(&[0; 32]),
            Attribute::Fingerprint(0),
            Attribute::Other {
                typ: AttributeType::FINGERPRINT,
                value: &[0; 4],
            },
        ] {
            assert!(matches!(
                a.check_emit(),
                Err(EmitError::UseDedicatedMethod(_))
            ));
        }
    }
}
