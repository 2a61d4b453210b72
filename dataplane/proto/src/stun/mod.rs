//! STUN and TURN on the wire (RFC 8489, RFC 8656): the pure layer under the TURN server.
//!
//! What this module owns:
//! - [`Message`]: a checked view over one STUN message (header, attribute walk with the
//!   RFC 8489 §14.5–§14.7 ordering rules), and [`Attribute`], the typed value of every
//!   attribute of RFC 8489 §14 and RFC 8656 §18 (parse and emit).
//! - [`MessageWriter`]: builds a message into a reused `Vec<u8>`, with
//!   MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT computed in place.
//! - [`verify_message_integrity`], [`verify_message_integrity_sha256`],
//!   [`verify_fingerprint`]: constant-time MAC checks.
//! - [`ChannelData`]: the TURN ChannelData framing (RFC 8656 §12.4).
//! - [`frame_len`]: where the next frame ends on a stream transport (TCP, TLS).
//! - Credentials: long-term keys (RFC 8489 §9.2.2, §18.5.1), USERHASH (§14.4), stateless
//!   nonces with the `obMatJos2` cookie ([`NonceCodec`], §9.2), TURN REST ephemeral
//!   passwords (coturn's `use-auth-secret`).
//!
//! What lives elsewhere: sockets, timers, allocations, permissions, channels, quotas and
//! the peer policy belong to the data plane; which users and secrets exist belongs to the
//! control plane. Nothing here reads a clock: times are arguments (UNIX seconds).
//!
//! Promises: every function reachable from network bytes is bounded (a message has at
//! most [`MAX_ATTRIBUTES`] attributes, every length is checked before use) and never
//! panics; the only allocations are the caller's `Vec` in the writers and the `String`s of
//! the credential helpers.
//!
//! Not supported: SASLprep / OpaqueString normalisation of non-ASCII strings (see
//! [`long_term_key`]), the RFC 3489 (cookie-less) message format, TURN-TCP (RFC 6062)
//! methods, and the short-term mechanism beyond "the key is the password bytes".

mod attribute;
mod channel_data;
mod credentials;
mod integrity;
mod message;
mod nonce;
mod writer;

#[cfg(test)]
mod vectors;

pub use attribute::{
    AddressFamily, Attribute, AttributeError, AttributeType, ErrorCode, PasswordAlgorithm,
    PasswordAlgorithms, UnknownAttributeList, ALGORITHM_MD5, ALGORITHM_SHA256, TRANSPORT_UDP,
};
pub use channel_data::{
    ChannelData, ChannelDataError, ChannelDataRepr, Framing, CHANNEL_MAX, CHANNEL_MIN,
};
pub use credentials::{
    long_term_key, rest_expiry, rest_password, rest_username, rest_username_valid, userhash,
    KeyAlgorithm, LongTermKey,
};
pub use integrity::{
    verify_fingerprint, verify_message_integrity, verify_message_integrity_sha256, FINGERPRINT_XOR,
};
pub use message::{
    Attributes, Class, Message, MessageError, MessageType, Method, RawAttribute, TransactionId,
    UnknownTypes, HEADER_LEN, MAGIC_COOKIE, MAX_ATTRIBUTES,
};
pub use nonce::{nonce_security_features, NonceCheck, NonceCodec, SecurityFeatures, NONCE_COOKIE};
pub use writer::{EmitError, MessageWriter};

use crate::Sniff;

/// What the first byte of a datagram or frame says it is (RFC 7983 §7, RFC 8489 §6:
/// the first two bits of a STUN message are zero; RFC 8656 §12: ChannelData starts
/// with a channel number, 0x4000–0x4FFF, so its first two bits are `01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// First two bits `00`: a STUN message (0–3 in RFC 7983's table; the rest of the
    /// `00` range is accepted here and left to [`Message::new_checked`]).
    Stun,
    /// First two bits `01`: TURN ChannelData (64–79 are valid channels; 80–127 are
    /// reserved and rejected by [`ChannelData::new_checked`]).
    ChannelData,
    /// Anything else (DTLS, RTP, …): not for the TURN server.
    Other,
}

/// Classifies a packet by its first byte.
pub const fn classify(first_byte: u8) -> PacketKind {
    match first_byte >> 6 {
        0b00 => PacketKind::Stun,
        0b01 => PacketKind::ChannelData,
        _ => PacketKind::Other,
    }
}

/// Why a stream can never yield a valid frame.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first two bits are neither `00` (STUN) nor `01` (ChannelData).
    #[error("neither a STUN message nor ChannelData")]
    NotStunOrChannelData,
    /// A STUN header whose bytes 4..8 are not the magic cookie 0x2112A442.
    #[error("STUN header without the magic cookie")]
    BadMagicCookie,
    /// A STUN header whose length is not a multiple of 4 (RFC 8489 §5).
    #[error("STUN message length is not a multiple of 4")]
    UnalignedLength,
    /// A ChannelData header with a channel number in the reserved 0x5000–0x7FFF range.
    #[error("ChannelData channel number {0:#06x} is outside 0x4000-0x7FFF")]
    ReservedChannel(u16),
}

/// The length of the next frame on a stream transport (TCP, TLS): a STUN message is
/// `20 + length` bytes; a ChannelData message is `4 + length` rounded up to a multiple of
/// four, because "over TCP and TLS-over-TCP, the ChannelData message MUST be padded to a
/// multiple of four bytes" (RFC 8656 §12.5).
///
/// Answers [`Sniff::Done`]`(n)` once the whole frame is buffered (`buf[..n]` is the
/// frame; bytes after it belong to the next one), [`Sniff::Incomplete`] before, so every
/// prefix of a valid frame is `Incomplete`, and [`Sniff::Reject`] as soon as the header
/// bytes seen so far can never start a frame (checked before waiting for the rest). It
/// reads only the header; a frame is at most `20 + 65532` bytes (STUN) or `4 + 65536`
/// (padded ChannelData), which bounds what the caller buffers.
pub fn frame_len(buf: &[u8]) -> Sniff<usize, FrameError> {
    match frame_len_from_header(buf) {
        Sniff::Done(n) if buf.len() >= n => Sniff::Done(n),
        Sniff::Done(_) => Sniff::Incomplete,
        other => other,
    }
}

/// The frame length as soon as the header says it.
fn frame_len_from_header(buf: &[u8]) -> Sniff<usize, FrameError> {
    let Some(&first) = buf.first() else {
        return Sniff::Incomplete;
    };
    match classify(first) {
        PacketKind::Stun => {
            // Check whatever part of the cookie has arrived, so garbage is refused early.
            let cookie = MAGIC_COOKIE.to_be_bytes();
            let seen = buf.get(4..).unwrap_or(&[]);
            if seen.iter().zip(cookie.iter()).any(|(a, b)| a != b) {
                return Sniff::Reject(FrameError::BadMagicCookie);
            }
            let Some(&[_, _, hi, lo]) = buf.get(..4) else {
                return Sniff::Incomplete;
            };
            let length = usize::from(u16::from_be_bytes([hi, lo]));
            if length & 3 != 0 {
                return Sniff::Reject(FrameError::UnalignedLength);
            }
            if buf.len() < 8 {
                return Sniff::Incomplete;
            }
            Sniff::Done(HEADER_LEN + length)
        }
        PacketKind::ChannelData => {
            let Some(&[c0, c1, l0, l1]) = buf.get(..4) else {
                // The channel number needs both bytes; a first byte that can only
                // start a refused channel is refused at once.
                if u16::from(first) << 8 > CHANNEL_MAX {
                    return Sniff::Reject(FrameError::ReservedChannel(u16::from(first) << 8));
                }
                return Sniff::Incomplete;
            };
            let channel = u16::from_be_bytes([c0, c1]);
            if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
                return Sniff::Reject(FrameError::ReservedChannel(channel));
            }
            let length = usize::from(u16::from_be_bytes([l0, l1]));
            Sniff::Done(channel_data::padded(4 + length))
        }
        PacketKind::Other => Sniff::Reject(FrameError::NotStunOrChannelData),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_uses_the_first_two_bits() {
        assert_eq!(classify(0x00), PacketKind::Stun);
        assert_eq!(classify(0x03), PacketKind::Stun);
        assert_eq!(classify(0x40), PacketKind::ChannelData);
        assert_eq!(classify(0x4F), PacketKind::ChannelData);
        assert_eq!(classify(0x16), PacketKind::Stun); // DTLS range is left to new_checked
        assert_eq!(classify(0x80), PacketKind::Other); // RTP
        assert_eq!(classify(0xC0), PacketKind::Other);
    }

    #[test]
    fn frame_len_of_stun_and_channel_data() {
        let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42];
        stun.resize(28, 0);
        assert_eq!(frame_len(&stun), Sniff::Done(28));
        assert_eq!(frame_len(&stun[..27]), Sniff::Incomplete);
        // ChannelData: 5 bytes of data → 9, padded to 12 on a stream.
        let mut cd = vec![0x40, 0x00, 0x00, 0x05];
        cd.resize(12, 0);
        assert_eq!(frame_len(&cd), Sniff::Done(12));
        assert_eq!(frame_len(&cd[..9]), Sniff::Incomplete);
        assert_eq!(frame_len(&[0x4F, 0xFF, 0x00, 0x00]), Sniff::Done(4));
        let mut big = vec![0x40, 0x00, 0xFF, 0xFF];
        big.resize(65540, 0);
        assert_eq!(frame_len(&big), Sniff::Done(65540));
        assert_eq!(frame_len(&big[..65539]), Sniff::Incomplete);
    }

    #[test]
    fn frame_len_rejects() {
        assert_eq!(
            frame_len(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            Sniff::Reject(FrameError::BadMagicCookie)
        );
        assert_eq!(
            frame_len(&[0x00, 0x01, 0x00, 0x06, 0x21, 0x12, 0xA4, 0x42]),
            Sniff::Reject(FrameError::UnalignedLength)
        );
        // RFC 5766's channels above 0x4FFF are accepted (see CHANNEL_MAX).
        assert_eq!(frame_len(&[0x50, 0x00, 0x00, 0x00]), Sniff::Done(4));
        assert_eq!(frame_len(&[0x7F]), Sniff::Incomplete);
        assert_eq!(
            frame_len(&[0x80, 0x00]),
            Sniff::Reject(FrameError::NotStunOrChannelData)
        );
    }

    #[test]
    fn frame_len_walks_a_stream_of_mixed_frames() {
        let mut stream = Vec::new();
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Request),
            TransactionId::new([7; 12]),
        );
        w.add(&Attribute::Software("portico")).unwrap();
        w.add_fingerprint().unwrap();
        let stun = w.finish().to_vec();
        stream.extend_from_slice(&stun);
        let cd = ChannelDataRepr {
            channel: 0x4001,
            data: b"hello",
        };
        cd.emit(&mut stream, Framing::Stream).unwrap();
        stream.extend_from_slice(&stun);

        let mut at = 0;
        let mut frames = Vec::new();
        while at < stream.len() {
            match frame_len(&stream[at..]) {
                Sniff::Done(n) => {
                    frames.push(&stream[at..at + n]);
                    at += n;
                }
                other => panic!("unexpected {other:?} at {at}"),
            }
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], &stun[..]);
        let parsed = ChannelData::new_checked(frames[1]).unwrap();
        assert_eq!(parsed.data(), b"hello");
        assert!(Message::new_checked(frames[2]).is_ok());
    }
}
