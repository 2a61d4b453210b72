//! MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5), MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256,
//! §14.6) and FINGERPRINT (CRC-32 XOR 0x5354554E, §14.7): computing and verifying.
//!
//! "The text used as input to HMAC is the STUN message, up to and including the attribute
//! preceding the MESSAGE-INTEGRITY attribute. The Length field of the STUN message header
//! is adjusted to point to the end of the MESSAGE-INTEGRITY attribute." (§14.5; the same
//! for §14.6). Nothing is copied: the header is hashed with the adjusted length, then the
//! rest of the message up to the attribute.
//!
//! The key is the caller's: the password bytes for short-term credentials (§9.1.1), a
//! [`super::LongTermKey`] for long-term ones (§9.2.2).

use ring::hmac;

use super::attribute::AttributeType;
use super::message::{Message, HEADER_LEN};

/// "XOR'ed with the 32-bit value 0x5354554e" (RFC 8489 §14.7).
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// The first four header bytes with the length field set so the message ends at
/// `end` (an offset into `bytes`).
fn adjusted_header(bytes: &[u8], end: usize) -> [u8; 4] {
    let [t0, t1] = match bytes.get(..2) {
        Some(&[a, b]) => [a, b],
        _ => [0, 0],
    };
    // end ≤ 20 + 65535 for a message that passed new_checked or the writer's bound.
    let [l0, l1] = u16::try_from(end.saturating_sub(HEADER_LEN))
        .unwrap_or(u16::MAX)
        .to_be_bytes();
    [t0, t1, l0, l1]
}

/// HMAC over the message up to `attr_offset`, with the length adjusted to end after an
/// attribute of `value_len` bytes placed there.
pub(crate) fn mac(
    algorithm: hmac::Algorithm,
    key: &[u8],
    bytes: &[u8],
    attr_offset: usize,
    value_len: usize,
) -> hmac::Tag {
    let key = hmac::Key::new(algorithm, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(&adjusted_header(bytes, attr_offset + 4 + value_len));
    ctx.update(bytes.get(4..attr_offset).unwrap_or(&[]));
    ctx.sign()
}

/// The FINGERPRINT value for an attribute at `attr_offset`.
pub(crate) fn fingerprint(bytes: &[u8], attr_offset: usize) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&adjusted_header(bytes, attr_offset + 8));
    crc.update(bytes.get(4..attr_offset).unwrap_or(&[]));
    crc.finalize() ^ FINGERPRINT_XOR
}

/// Compares two byte strings in time that depends only on their lengths (which are
/// public: the attribute length is on the wire).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether the message's MESSAGE-INTEGRITY (the first one a receiver processes) is the
/// HMAC-SHA1 of the message under `key`. False when there is none.
pub fn verify_message_integrity<T: AsRef<[u8]>>(msg: &Message<T>, key: &[u8]) -> bool {
    let Some(attr) = msg.attribute(AttributeType::MESSAGE_INTEGRITY) else {
        return false;
    };
    if attr.value().len() != 20 {
        return false;
    }
    let tag = mac(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        key,
        msg.as_bytes(),
        attr.offset(),
        20,
    );
    constant_time_eq(tag.as_ref(), attr.value())
}

/// Whether the message's MESSAGE-INTEGRITY-SHA256 is the HMAC-SHA256 of the message
/// under `key`, truncated to its length (16–32 bytes, a multiple of 4: RFC 8489 §14.6).
/// False when there is none. Whether a truncated MAC is acceptable is the usage's
/// decision ("The value must be the full 32 bytes unless the STUN Usage explicitly
/// specifies that truncation is allowed"): check the length before calling if not.
pub fn verify_message_integrity_sha256<T: AsRef<[u8]>>(msg: &Message<T>, key: &[u8]) -> bool {
    let Some(attr) = msg.attribute(AttributeType::MESSAGE_INTEGRITY_SHA256) else {
        return false;
    };
    let len = attr.value().len();
    if !(16..=32).contains(&len) || len & 3 != 0 {
        return false;
    }
    let tag = mac(hmac::HMAC_SHA256, key, msg.as_bytes(), attr.offset(), len);
    match tag.as_ref().get(..len) {
        Some(truncated) => constant_time_eq(truncated, attr.value()),
        None => false,
    }
}

/// Whether the message's FINGERPRINT is right. False when there is none.
pub fn verify_fingerprint<T: AsRef<[u8]>>(msg: &Message<T>) -> bool {
    let Some(attr) = msg.attribute(AttributeType::FINGERPRINT) else {
        return false;
    };
    let Ok(value) = <[u8; 4]>::try_from(attr.value()) else {
        return false;
    };
    fingerprint(msg.as_bytes(), attr.offset()) == u32::from_be_bytes(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn crc32_check_value() {
        // The CRC-32 of ITU V.42 / RFC 1952: check value of "123456789" is 0xCBF43926.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }
}
