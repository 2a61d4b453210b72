//! The STUN message: header and attribute walk (RFC 8489 §5, §6, §14).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Magic Cookie                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Transaction ID (96 bits)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`Message::new_checked`] validates the header and the TLV framing of every attribute
//! once; after it, no accessor can fail or panic.

use super::attribute::{Attribute, AttributeError, AttributeType};

/// Size of the STUN header.
pub const HEADER_LEN: usize = 20;
/// "The Magic Cookie field MUST contain the fixed value 0x2112A442" (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The most attributes one message may carry. Real TURN messages carry about ten; the
/// bound keeps every walk over a hostile message short.
pub const MAX_ATTRIBUTES: usize = 64;

/// The class of a message (RFC 8489 §5: bits C1 C0 of the message type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `0b00`.
    Request,
    /// `0b01`.
    Indication,
    /// `0b10`.
    SuccessResponse,
    /// `0b11`.
    ErrorResponse,
}

impl Class {
    const fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }

    const fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// A 12-bit STUN method (RFC 8489 §18.2, RFC 8656 §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (RFC 8656), request/response only.
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (RFC 8656), request/response only.
    pub const REFRESH: Method = Method(0x004);
    /// Send (RFC 8656), indication only.
    pub const SEND: Method = Method(0x006);
    /// Data (RFC 8656), indication only.
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (RFC 8656), request/response only.
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (RFC 8656), request/response only.
    pub const CHANNEL_BIND: Method = Method(0x009);

    /// A method from its 12-bit number; `None` above 0xFFF.
    pub const fn new(bits: u16) -> Option<Method> {
        if bits <= 0x0FFF {
            Some(Method(bits))
        } else {
            None
        }
    }

    /// The 12-bit method number.
    pub const fn bits(self) -> u16 {
        self.0
    }
}

/// The 14-bit message type: a method and a class interleaved (RFC 8489 §5, Figure 3).
///
/// ```text
///  0                 1
///  2  3  4 5 6 7 8 9 0 1 2 3 4 5
/// +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
/// |M |M |M|M|M|C|M|M|M|C|M|M|M|M|
/// |11|10|9|8|7|1|6|5|4|0|3|2|1|0|
/// +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType(u16);

impl MessageType {
    /// Interleaves `method` and `class`.
    pub const fn new(method: Method, class: Class) -> MessageType {
        let m = method.0;
        let c = class.bits();
        MessageType(
            (m & 0x000F)
                | ((m & 0x0070) << 1)
                | ((m & 0x0F80) << 2)
                | ((c & 1) << 4)
                | ((c & 2) << 7),
        )
    }

    /// The type from its 16 wire bits; `None` if the two most significant bits are set
    /// (then it is not STUN).
    pub const fn from_bits(bits: u16) -> Option<MessageType> {
        if bits & 0xC000 == 0 {
            Some(MessageType(bits))
        } else {
            None
        }
    }

    /// The 16 wire bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The method.
    pub const fn method(self) -> Method {
        let b = self.0;
        Method((b & 0x000F) | ((b >> 1) & 0x0070) | ((b >> 2) & 0x0F80))
    }

    /// The class.
    pub const fn class(self) -> Class {
        let b = self.0;
        Class::from_bits(((b >> 4) & 1) | ((b >> 7) & 2))
    }
}

/// The 96-bit transaction ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId([u8; 12]);

impl TransactionId {
    /// A transaction ID from its bytes (the caller draws them at random for requests).
    pub const fn new(bytes: [u8; 12]) -> TransactionId {
        TransactionId(bytes)
    }

    /// The 12 bytes.
    pub const fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// The magic cookie followed by the transaction ID: what XOR-MAPPED-ADDRESS and its
    /// siblings XOR an IPv6 address with (RFC 8489 §14.2).
    pub(crate) fn xor_key(&self) -> [u8; 16] {
        let mut key = [0u8; 16];
        let (cookie, id) = key.split_at_mut(4);
        cookie.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        id.copy_from_slice(&self.0);
        key
    }
}

/// Why bytes are not a well-formed STUN message.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Fewer than 20 bytes.
    #[error("shorter than the 20-byte STUN header")]
    TooShort,
    /// "The most significant 2 bits of every STUN message MUST be zeroes" (RFC 8489 §6).
    #[error("the first two bits are not zero: not STUN")]
    NotStun,
    /// The magic cookie is not 0x2112A442 (an RFC 3489 message, or not STUN).
    #[error("the magic cookie is not 0x2112A442")]
    BadMagicCookie,
    /// "the message length MUST contain the size of the message in bytes, not including
    /// the 20-byte STUN header … since all STUN attributes are padded to a multiple of 4
    /// bytes, the last 2 bits of this field are always zero" (RFC 8489 §5).
    #[error("the message length is not a multiple of 4")]
    UnalignedLength,
    /// The buffer is not exactly `20 + length` bytes.
    #[error("the message length does not match the datagram or frame")]
    LengthMismatch,
    /// An attribute's length runs past the end of the message.
    #[error("an attribute runs past the end of the message")]
    TruncatedAttribute,
    /// More than [`MAX_ATTRIBUTES`] attributes.
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
}

/// A checked view over exactly one STUN message.
#[derive(Debug, Clone)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

/// Reads a big-endian `u16` at `at`; 0 when out of range (unreachable after the checks in
/// [`Message::new_checked`], which is why a default is acceptable).
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at.saturating_add(2)) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// Rounds up to a multiple of four (attribute padding, RFC 8489 §14).
pub(crate) const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Checks that `buffer` is one whole STUN message: header, cookie, length (equal to
    /// the buffer's, a multiple of 4) and the TLV framing of every attribute, at most
    /// [`MAX_ATTRIBUTES`] of them.
    ///
    /// On UDP the buffer is the datagram; on TCP/TLS it is the frame [`super::frame_len`]
    /// delimited.
    pub fn new_checked(buffer: T) -> Result<Message<T>, MessageError> {
        let buf = buffer.as_ref();
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Err(MessageError::TooShort);
        };
        if be16(header, 0) & 0xC000 != 0 {
            return Err(MessageError::NotStun);
        }
        if header.get(4..8) != Some(&MAGIC_COOKIE.to_be_bytes()[..]) {
            return Err(MessageError::BadMagicCookie);
        }
        let length = usize::from(be16(header, 2));
        if length & 3 != 0 {
            return Err(MessageError::UnalignedLength);
        }
        if buf.len() != HEADER_LEN + length {
            return Err(MessageError::LengthMismatch);
        }
        let mut pos = HEADER_LEN;
        let mut count = 0usize;
        while pos < buf.len() {
            // pos and the body length are multiples of 4, so the 4-byte attribute header
            // fits whenever pos < len.
            let value_len = usize::from(be16(buf, pos + 2));
            let next = pos + 4 + pad4(value_len);
            if next > buf.len() {
                return Err(MessageError::TruncatedAttribute);
            }
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(MessageError::TooManyAttributes);
            }
            pos = next;
        }
        Ok(Message { buffer })
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        MessageType(be16(self.as_bytes(), 0) & 0x3FFF)
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.message_type().method()
    }

    /// The class.
    pub fn class(&self) -> Class {
        self.message_type().class()
    }

    /// The length field: the size of the attributes, header excluded.
    pub fn length(&self) -> u16 {
        be16(self.as_bytes(), 2)
    }

    /// The transaction ID.
    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        if let Some(src) = self.as_bytes().get(8..HEADER_LEN) {
            id.copy_from_slice(src);
        }
        TransactionId(id)
    }

    /// The attributes a receiver processes, in order: everything up to
    /// MESSAGE-INTEGRITY, then only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, then after
    /// MESSAGE-INTEGRITY-SHA256 only FINGERPRINT, and nothing after FINGERPRINT. The
    /// others are skipped, because "agents MUST ignore all other attributes that follow
    /// MESSAGE-INTEGRITY" (RFC 8489 §14.5), likewise after MESSAGE-INTEGRITY-SHA256
    /// (§14.6), and FINGERPRINT "MUST be the last attribute" (§14.7). The RFC says
    /// ignore, not reject, so the message itself stays acceptable.
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            buf: self.as_bytes(),
            pos: HEADER_LEN,
            stage: Stage::Open,
        }
    }

    /// The first processed occurrence of `typ` ("only the first occurrence needs to be
    /// processed by a receiver", RFC 8489 §14).
    pub fn attribute(&self, typ: AttributeType) -> Option<RawAttribute<'_>> {
        self.attributes().find(|a| a.typ == typ)
    }

    /// The first processed occurrence of `typ`, decoded.
    pub fn decode(&self, typ: AttributeType) -> Option<Result<Attribute<'_>, AttributeError>> {
        let raw = self.attribute(typ)?;
        Some(Attribute::parse(&raw, &self.transaction_id()))
    }

    /// The comprehension-required attribute types (0x0000–0x7FFF) this module does not
    /// know, deduplicated, for a 420 (Unknown Attribute) answer with UNKNOWN-ATTRIBUTES
    /// (RFC 8489 §6.3.1). Empty when the message can be processed.
    pub fn unknown_comprehension_required(&self) -> UnknownTypes {
        let mut unknown = UnknownTypes::default();
        for attr in self.attributes() {
            if attr.typ.is_comprehension_required() && !attr.typ.is_known() {
                unknown.push(attr.typ);
            }
        }
        unknown
    }
}

/// One attribute as it sits in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    typ: AttributeType,
    value: &'a [u8],
    offset: usize,
}

impl<'a> RawAttribute<'a> {
    /// The attribute type.
    pub fn attribute_type(&self) -> AttributeType {
        self.typ
    }

    /// The value, without padding.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// Where the attribute's 4-byte header starts in the message.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    AfterIntegrity,
    AfterIntegritySha256,
    Done,
}

/// The attributes of a [`Message`], with the ordering rules of RFC 8489 §14.5–§14.7
/// applied (see [`Message::attributes`]).
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    pos: usize,
    stage: Stage,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        // Bounded: each turn advances pos by at least 4 within a checked message.
        while self.stage != Stage::Done && self.pos < self.buf.len() {
            let offset = self.pos;
            let typ = AttributeType::new(be16(self.buf, offset));
            let len = usize::from(be16(self.buf, offset + 2));
            let value = self.buf.get(offset + 4..offset + 4 + len)?;
            self.pos = offset + 4 + pad4(len);
            let (yield_it, stage) = match (self.stage, typ) {
                (_, AttributeType::FINGERPRINT) => (true, Stage::Done),
                (Stage::Open | Stage::AfterIntegrity, AttributeType::MESSAGE_INTEGRITY_SHA256) => {
                    (true, Stage::AfterIntegritySha256)
                }
                (Stage::Open, AttributeType::MESSAGE_INTEGRITY) => (true, Stage::AfterIntegrity),
                (Stage::Open, _) => (true, Stage::Open),
                (stage, _) => (false, stage),
            };
            self.stage = stage;
            if yield_it {
                return Some(RawAttribute { typ, value, offset });
            }
        }
        None
    }
}

/// Up to 16 distinct unknown comprehension-required attribute types (a 420 response
/// lists at most these; a message with more is hostile or broken anyway).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnknownTypes {
    types: [AttributeType; 16],
    len: usize,
}

impl UnknownTypes {
    fn push(&mut self, typ: AttributeType) {
        if self.as_slice().contains(&typ) {
            return;
        }
        if let Some(slot) = self.types.get_mut(self.len) {
            *slot = typ;
            self.len += 1;
        }
    }

    /// The types, in order of first appearance.
    pub fn as_slice(&self) -> &[AttributeType] {
        self.types.get(..self.len).unwrap_or(&[])
    }

    /// Whether there are none (the message can be processed).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_interleaving() {
        // RFC 8489 §5: "a Binding request has class=0b00 (request) and method=0b000000000001
        // (Binding) and is encoded into the first 16 bits as 0x0001. A Binding response
        // has class=0b10 (success response) and method=0b000000000001, and is encoded
        // into the first 16 bits as 0x0101."
        assert_eq!(
            MessageType::new(Method::BINDING, Class::Request).bits(),
            0x0001
        );
        assert_eq!(
            MessageType::new(Method::BINDING, Class::SuccessResponse).bits(),
            0x0101
        );
        assert_eq!(
            MessageType::new(Method::BINDING, Class::ErrorResponse).bits(),
            0x0111
        );
        assert_eq!(
            MessageType::new(Method::BINDING, Class::Indication).bits(),
            0x0011
        );
        assert_eq!(
            MessageType::new(Method::ALLOCATE, Class::Request).bits(),
            0x0003
        );
        assert_eq!(
            MessageType::new(Method::SEND, Class::Indication).bits(),
            0x0016
        );
        assert_eq!(
            MessageType::new(Method::DATA, Class::Indication).bits(),
            0x0017
        );
        assert_eq!(
            MessageType::new(Method::CHANNEL_BIND, Class::ErrorResponse).bits(),
            0x0119
        );
        for m in 0..=0x0FFF {
            for c in [
                Class::Request,
                Class::Indication,
                Class::SuccessResponse,
                Class::ErrorResponse,
            ] {
                let t = MessageType::new(Method::new(m).unwrap(), c);
                assert_eq!(t.method().bits(), m);
                assert_eq!(t.class(), c);
                assert_eq!(MessageType::from_bits(t.bits()), Some(t));
            }
        }
        assert_eq!(MessageType::from_bits(0x4001), None);
        assert_eq!(Method::new(0x1000), None);
    }

    fn header(length: u16) -> Vec<u8> {
        let mut b = vec![0x00, 0x01];
        b.extend_from_slice(&length.to_be_bytes());
        b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        b.extend_from_slice(&[9; 12]);
        b
    }

    #[test]
    fn new_checked_errors() {
        assert_eq!(
            Message::new_checked(&[0u8; 19][..]).err(),
            Some(MessageError::TooShort)
        );
        let mut b = header(0);
        b[0] = 0x40;
        assert_eq!(
            Message::new_checked(&b[..]).err(),
            Some(MessageError::NotStun)
        );
        let mut b = header(0);
        b[7] = 0;
        assert_eq!(
            Message::new_checked(&b[..]).err(),
            Some(MessageError::BadMagicCookie)
        );
        let b = header(2);
        assert_eq!(
            Message::new_checked(&b[..]).err(),
            Some(MessageError::UnalignedLength)
        );
        let b = header(4);
        assert_eq!(
            Message::new_checked(&b[..]).err(),
            Some(MessageError::LengthMismatch)
        );
        let mut b = header(4);
        b.extend_from_slice(&[0x80, 0x22, 0x00, 0x01]);
        assert_eq!(
            Message::new_checked(&b[..]).err(),
            Some(MessageError::TruncatedAttribute)
        );
        let n = MAX_ATTRIBUTES + 1;
        let mut b = header(u16::try_from(4 * n).unwrap());
        for _ in 0..n {
            b.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
        }
        assert_eq!(
            Message::new_checked(&b[..]).err(),
            Some(MessageError::TooManyAttributes)
        );
        let mut b = header(u16::try_from(4 * MAX_ATTRIBUTES).unwrap());
        for _ in 0..MAX_ATTRIBUTES {
            b.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
        }
        assert_eq!(
            Message::new_checked(&b[..]).unwrap().attributes().count(),
            MAX_ATTRIBUTES
        );
    }

    fn with_attrs(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&u16::try_from(v.len()).unwrap().to_be_bytes());
            body.extend_from_slice(v);
            body.resize(pad4(body.len()), 0);
        }
        let mut b = header(u16::try_from(body.len()).unwrap());
        b.extend_from_slice(&body);
        b
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mi = [0u8; 20];
        let mi256 = [0u8; 32];
        let fp = [0u8; 4];
        let b = with_attrs(&[
            (0x0006, b"user"),
            (0x0008, &mi),
            (0x8022, b"ignored"),
            (0x0008, &mi),
            (0x001C, &mi256),
            (0x0006, b"ignored"),
            (0x0008, &mi),
            (0x8028, &fp),
            (0x8028, &fp),
            (0x0006, b"ignored"),
        ]);
        let msg = Message::new_checked(&b[..]).unwrap();
        let types: Vec<u16> = msg
            .attributes()
            .map(|a| a.attribute_type().bits())
            .collect();
        assert_eq!(types, [0x0006, 0x0008, 0x001C, 0x8028]);
        // Only FINGERPRINT after MESSAGE-INTEGRITY-SHA256.
        let b = with_attrs(&[(0x001C, &mi256), (0x0008, &mi), (0x8028, &fp)]);
        let msg = Message::new_checked(&b[..]).unwrap();
        let types: Vec<u16> = msg
            .attributes()
            .map(|a| a.attribute_type().bits())
            .collect();
        assert_eq!(types, [0x001C, 0x8028]);
    }

    #[test]
    fn first_occurrence_and_unknown_required() {
        let b = with_attrs(&[
            (0x0006, b"first"),
            (0x0006, b"second"),
            (0x7777, b"x"),
            (0x8888, b"optional, ignored"),
            (0x7777, b"y"),
            (0x0024, &[0, 0, 0, 1]), // PRIORITY (ICE) is known
            (0x0003, &[0, 0, 0, 0]), // CHANGE-REQUEST (RFC 5780) is not
        ]);
        let msg = Message::new_checked(&b[..]).unwrap();
        assert_eq!(
            msg.attribute(AttributeType::USERNAME).unwrap().value(),
            b"first"
        );
        assert_eq!(
            msg.decode(AttributeType::USERNAME),
            Some(Ok(Attribute::Username("first")))
        );
        let unknown = msg.unknown_comprehension_required();
        assert_eq!(
            unknown.as_slice(),
            &[AttributeType::new(0x7777), AttributeType::new(0x0003)]
        );
        assert_eq!(unknown.len(), 2);
        assert!(!unknown.is_empty());
    }

    #[test]
    fn unknown_types_are_capped() {
        let mut u = UnknownTypes::default();
        for t in 0..40u16 {
            u.push(AttributeType::new(0x7000 + t));
        }
        assert_eq!(u.len(), 16);
    }
}
