//! Building STUN messages into a reused buffer.
//!
//! [`MessageWriter`] writes the header, then attributes with their padding ("The padding
//! bits MUST be set to zero on sending", RFC 8489 §14), keeping the length field right
//! after every step, so the buffer always holds a complete message. MESSAGE-INTEGRITY,
//! MESSAGE-INTEGRITY-SHA256 and FINGERPRINT have their own methods, and the order of
//! RFC 8489 §14.5–§14.7 is enforced: nothing but MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
//! after MESSAGE-INTEGRITY, nothing but FINGERPRINT after MESSAGE-INTEGRITY-SHA256, and
//! nothing after FINGERPRINT.
//!
//! The writer allocates nothing itself: it clears the caller's `Vec` and appends to it
//! (which grows only while its capacity is below the largest message written).

use ring::hmac;

use super::attribute::{Attribute, AttributeType};
use super::integrity;
use super::message::{pad4, MessageType, TransactionId, HEADER_LEN, MAGIC_COOKIE};

/// Why an attribute could not be written. Nothing is written when one is returned.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The attributes would exceed the 16-bit message length.
    #[error("the message would exceed 65535 bytes of attributes")]
    MessageTooLong,
    /// A value over its limit (USERNAME 508 bytes, texts 127 characters, 16-bit length).
    #[error("{0}: value too long")]
    ValueTooLong(AttributeType),
    /// A value outside its range (error code outside 300–699, non-ASCII domain).
    #[error("{0}: value out of range")]
    OutOfRange(AttributeType),
    /// An attribute after MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 or FINGERPRINT that
    /// RFC 8489 §14.5–§14.7 does not allow there.
    #[error("{0} cannot follow the integrity attributes already written")]
    AfterIntegrity(AttributeType),
    /// MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are computed by their
    /// own methods.
    #[error("{0} is written by its own method")]
    UseDedicatedMethod(AttributeType),
    /// A MESSAGE-INTEGRITY-SHA256 truncation that is not 16–32 bytes in steps of 4.
    #[error("MESSAGE-INTEGRITY-SHA256 must be 16 to 32 bytes, a multiple of 4")]
    BadTruncation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    AfterIntegrity,
    AfterIntegritySha256,
    Closed,
}

/// Writes one STUN message into a caller's buffer.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
    xor_key: [u8; 16],
    stage: Stage,
}

impl<'b> MessageWriter<'b> {
    /// Clears `buf` and writes a header with no attributes.
    pub fn new(buf: &'b mut Vec<u8>, typ: MessageType, txid: TransactionId) -> MessageWriter<'b> {
        buf.clear();
        buf.extend_from_slice(&typ.bits().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(txid.as_bytes());
        MessageWriter {
            buf,
            xor_key: txid.xor_key(),
            stage: Stage::Open,
        }
    }

    /// Appends an attribute. MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
    /// are refused ([`EmitError::UseDedicatedMethod`]).
    pub fn add(&mut self, attr: &Attribute<'_>) -> Result<(), EmitError> {
        attr.check_emit()?;
        let typ = attr.attribute_type();
        if self.stage != Stage::Open {
            return Err(EmitError::AfterIntegrity(typ));
        }
        let value_len = attr.value_len();
        let start = self.reserve(typ, value_len)?;
        attr.write_value(&self.xor_key, self.buf);
        self.finish_attribute(start);
        Ok(())
    }

    /// Appends an attribute from its type and raw value (extensions, ICE attributes,
    /// deliberately malformed values in tests).
    pub fn add_raw(&mut self, typ: AttributeType, value: &[u8]) -> Result<(), EmitError> {
        self.add(&Attribute::Other { typ, value })
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 under `key` over the message so far, with the
    /// length field covering the attribute (RFC 8489 §14.5).
    pub fn add_message_integrity(&mut self, key: &[u8]) -> Result<(), EmitError> {
        let typ = AttributeType::MESSAGE_INTEGRITY;
        if self.stage != Stage::Open {
            return Err(EmitError::AfterIntegrity(typ));
        }
        let start = self.reserve(typ, 20)?;
        let tag = integrity::mac(
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            key,
            self.buf,
            start,
            20,
        );
        self.buf.extend_from_slice(tag.as_ref());
        self.finish_attribute(start);
        self.stage = Stage::AfterIntegrity;
        Ok(())
    }

    /// Appends a full (32-byte) MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
    pub fn add_message_integrity_sha256(&mut self, key: &[u8]) -> Result<(), EmitError> {
        self.add_message_integrity_sha256_truncated(key, 32)
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 truncated to `len` bytes (16–32, a multiple of 4),
    /// for usages that allow truncation.
    pub fn add_message_integrity_sha256_truncated(
        &mut self,
        key: &[u8],
        len: usize,
    ) -> Result<(), EmitError> {
        let typ = AttributeType::MESSAGE_INTEGRITY_SHA256;
        if !(16..=32).contains(&len) || len & 3 != 0 {
            return Err(EmitError::BadTruncation);
        }
        if !matches!(self.stage, Stage::Open | Stage::AfterIntegrity) {
            return Err(EmitError::AfterIntegrity(typ));
        }
        let start = self.reserve(typ, len)?;
        let tag = integrity::mac(hmac::HMAC_SHA256, key, self.buf, start, len);
        self.buf
            .extend_from_slice(tag.as_ref().get(..len).unwrap_or(&[]));
        self.finish_attribute(start);
        self.stage = Stage::AfterIntegritySha256;
        Ok(())
    }

    /// Appends FINGERPRINT, the last attribute (RFC 8489 §14.7).
    pub fn add_fingerprint(&mut self) -> Result<(), EmitError> {
        let typ = AttributeType::FINGERPRINT;
        if self.stage == Stage::Closed {
            return Err(EmitError::AfterIntegrity(typ));
        }
        let start = self.reserve(typ, 4)?;
        let crc = integrity::fingerprint(self.buf, start);
        self.buf.extend_from_slice(&crc.to_be_bytes());
        self.finish_attribute(start);
        self.stage = Stage::Closed;
        Ok(())
    }

    /// The message so far (always complete and well-formed).
    pub fn as_bytes(&self) -> &[u8] {
        self.buf
    }

    /// The message's size so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always false: the header is there from the start.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Ends writing and gives the message.
    pub fn finish(self) -> &'b [u8] {
        let buf: &'b Vec<u8> = self.buf;
        buf
    }

    /// Writes the attribute header and sets the message length to include the padded
    /// attribute; returns where the attribute starts.
    fn reserve(&mut self, typ: AttributeType, value_len: usize) -> Result<usize, EmitError> {
        let start = self.buf.len();
        let body = start - HEADER_LEN + 4 + pad4(value_len);
        let (Ok(body), Ok(value_len)) = (u16::try_from(body), u16::try_from(value_len)) else {
            return Err(EmitError::MessageTooLong);
        };
        self.buf.extend_from_slice(&typ.bits().to_be_bytes());
        self.buf.extend_from_slice(&value_len.to_be_bytes());
        self.set_length(body);
        Ok(start)
    }

    /// Pads the attribute that started at `start` to 4 bytes.
    fn finish_attribute(&mut self, start: usize) {
        let end = start + pad4(self.buf.len() - start);
        self.buf.resize(end, 0);
    }

    fn set_length(&mut self, body: u16) {
        if let Some(len) = self.buf.get_mut(2..4) {
            len.copy_from_slice(&body.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::{Class, Message, Method};
    use super::super::{
        verify_fingerprint, verify_message_integrity, verify_message_integrity_sha256,
    };
    use super::*;

    fn writer(buf: &mut Vec<u8>) -> MessageWriter<'_> {
        MessageWriter::new(
            buf,
            MessageType::new(Method::ALLOCATE, Class::Request),
            TransactionId::new([3; 12]),
        )
    }

    #[test]
    fn order_is_enforced() {
        let mut buf = Vec::new();
        let mut w = writer(&mut buf);
        w.add(&Attribute::Username("u")).unwrap();
        w.add_message_integrity(b"k").unwrap();
        assert_eq!(
            w.add(&Attribute::Software("s")),
            Err(EmitError::AfterIntegrity(AttributeType::SOFTWARE))
        );
        assert_eq!(
            w.add_message_integrity(b"k"),
            Err(EmitError::AfterIntegrity(AttributeType::MESSAGE_INTEGRITY))
        );
        w.add_message_integrity_sha256(b"k").unwrap();
        assert_eq!(
            w.add_message_integrity_sha256(b"k"),
            Err(EmitError::AfterIntegrity(
                AttributeType::MESSAGE_INTEGRITY_SHA256
            ))
        );
        w.add_fingerprint().unwrap();
        assert_eq!(
            w.add_fingerprint(),
            Err(EmitError::AfterIntegrity(AttributeType::FINGERPRINT))
        );
        let bytes = w.finish().to_vec();
        let msg = Message::new_checked(&bytes[..]).unwrap();
        assert!(verify_message_integrity(&msg, b"k"));
        assert!(verify_message_integrity_sha256(&msg, b"k"));
        assert!(verify_fingerprint(&msg));
        assert!(!verify_message_integrity(&msg, b"K"));
        assert!(!verify_message_integrity_sha256(&msg, b"K"));
    }

    #[test]
    fn truncated_sha256() {
        for len in [16, 20, 24, 28, 32] {
            let mut buf = Vec::new();
            let mut w = writer(&mut buf);
            w.add_message_integrity_sha256_truncated(b"key", len)
                .unwrap();
            let msg = Message::new_checked(w.finish()).unwrap();
            assert_eq!(
                msg.attribute(AttributeType::MESSAGE_INTEGRITY_SHA256)
                    .unwrap()
                    .value()
                    .len(),
                len
            );
            assert!(verify_message_integrity_sha256(&msg, b"key"));
            assert!(!verify_message_integrity_sha256(&msg, b"kex"));
        }
        let mut buf = Vec::new();
        let mut w = writer(&mut buf);
        for bad in [0, 12, 18, 36] {
            assert_eq!(
                w.add_message_integrity_sha256_truncated(b"k", bad),
                Err(EmitError::BadTruncation)
            );
        }
    }

    #[test]
    fn too_long_writes_nothing() {
        let mut buf = Vec::new();
        let mut w = writer(&mut buf);
        let big = vec![0u8; 40_000];
        w.add(&Attribute::Data(&big)).unwrap();
        let before = w.as_bytes().to_vec();
        assert_eq!(
            w.add(&Attribute::Data(&big)),
            Err(EmitError::MessageTooLong)
        );
        assert_eq!(w.as_bytes(), &before[..]);
        assert!(Message::new_checked(w.as_bytes()).is_ok());
        let mut buf = Vec::new();
        let mut w = writer(&mut buf);
        assert_eq!(
            w.add(&Attribute::Data(&vec![0u8; 65_536])),
            Err(EmitError::ValueTooLong(AttributeType::DATA))
        );
        assert_eq!(w.len(), HEADER_LEN);
        assert!(!w.is_empty());
    }

    #[test]
    fn buffer_is_reused() {
        let mut buf = Vec::with_capacity(256);
        let ptr = buf.as_ptr();
        for i in 0..3u8 {
            let mut w = writer(&mut buf);
            w.add(&Attribute::Data(&[i; 17])).unwrap();
            w.add_fingerprint().unwrap();
            assert_eq!(w.len(), 20 + 4 + 20 + 8);
        }
        assert_eq!(buf.as_ptr(), ptr);
    }
}
