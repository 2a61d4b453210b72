//! TURN ChannelData (RFC 8656 §12.4).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Channel Number        |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! /                       Application Data                        /
//! /                                                               /
//! |                                                               |
//! |                               +-------------------------------+
//! |                               |
//! +-------------------------------+
//! ```
//!
//! "The Length field specifies the length in bytes of the application data field (i.e.,
//! it does not include the size of the ChannelData header)." Over TCP and TLS "the
//! ChannelData message MUST be padded to a multiple of four bytes"; "over UDP, the
//! padding is not required but MAY be included" (RFC 8656 §12.5).

/// The lowest channel number: "0x4000 through 0x4FFF: These values are the allowed
/// channel numbers (4096 possible values)" (RFC 8656 §12).
pub const CHANNEL_MIN: u16 = 0x4000;
/// The highest channel number accepted: 0x7FFF, RFC 5766's range, not RFC 8656's
/// 0x4FFF. RFC 8656 §12 reserves 0x5000–0xFFFF, but clients written to RFC 5766 (coturn's
/// `turnutils_uclient` among them) pick channels anywhere in 0x4000–0x7FFF, and a
/// server that answers them 400 breaks calls for no gain: the first two bits (`01`)
/// still tell ChannelData from STUN (`00`) and from RTP/DTLS (RFC 7983). 0x8000 and up
/// stay refused.
pub const CHANNEL_MAX: u16 = 0x7FFF;

pub(crate) const fn padded(n: usize) -> usize {
    (n + 3) & !3
}

/// How a ChannelData message is framed when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// UDP (and DTLS): no padding.
    Datagram,
    /// TCP and TLS: padded to a multiple of four bytes.
    Stream,
}

/// Why bytes are not a ChannelData message.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelDataError {
    /// Fewer than the 4 header bytes.
    #[error("shorter than the 4-byte ChannelData header")]
    TooShort,
    /// A channel number outside 0x4000–0x7FFF.
    #[error("channel number {0:#06x} is outside 0x4000-0x7FFF")]
    BadChannel(u16),
    /// The length field runs past the end of the datagram or frame.
    #[error("the length field runs past the end of the buffer")]
    Truncated,
    /// More than 3 bytes after the data: not padding.
    #[error("more bytes after the data than padding allows")]
    TrailingBytes,
    /// Data longer than the 16-bit length field (when writing).
    #[error("data longer than 65535 bytes")]
    DataTooLong,
}

/// A checked view over one ChannelData message, padded or not.
#[derive(Debug, Clone)]
pub struct ChannelData<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ChannelData<T> {
    /// Checks the channel number and that the buffer holds `4 + length` bytes plus at
    /// most the padding to a multiple of 4 (accepted on UDP too, as RFC 8656 §12.5
    /// allows).
    pub fn new_checked(buffer: T) -> Result<ChannelData<T>, ChannelDataError> {
        let buf = buffer.as_ref();
        let Some(&[c0, c1, l0, l1]) = buf.get(..4) else {
            return Err(ChannelDataError::TooShort);
        };
        let channel = u16::from_be_bytes([c0, c1]);
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
            return Err(ChannelDataError::BadChannel(channel));
        }
        let end = 4 + usize::from(u16::from_be_bytes([l0, l1]));
        if buf.len() < end {
            return Err(ChannelDataError::Truncated);
        }
        if buf.len() > padded(end) {
            return Err(ChannelDataError::TrailingBytes);
        }
        Ok(ChannelData { buffer })
    }

    /// The channel number (0x4000–0x7FFF).
    pub fn channel(&self) -> u16 {
        super::message::be16(self.buffer.as_ref(), 0)
    }

    /// The length field.
    pub fn length(&self) -> u16 {
        super::message::be16(self.buffer.as_ref(), 2)
    }

    /// The application data, without padding.
    pub fn data(&self) -> &[u8] {
        let end = 4 + usize::from(self.length());
        self.buffer.as_ref().get(4..end).unwrap_or(&[])
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// A ChannelData message to write, or the content of a parsed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelDataRepr<'a> {
    /// 0x4000–0x4FFF.
    pub channel: u16,
    /// The application data.
    pub data: &'a [u8],
}

impl<'a> ChannelDataRepr<'a> {
    /// The content of a checked message.
    pub fn parse<T: AsRef<[u8]>>(packet: &'a ChannelData<T>) -> ChannelDataRepr<'a> {
        ChannelDataRepr {
            channel: packet.channel(),
            data: packet.data(),
        }
    }

    /// The size of the written message.
    pub fn buffer_len(&self, framing: Framing) -> usize {
        match framing {
            Framing::Datagram => 4 + self.data.len(),
            Framing::Stream => padded(4 + self.data.len()),
        }
    }

    /// The 4-byte header, for relaying without copying the data (write the header in
    /// front of the data, and on a stream the padding after it).
    pub fn header(&self) -> Result<[u8; 4], ChannelDataError> {
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&self.channel) {
            return Err(ChannelDataError::BadChannel(self.channel));
        }
        let len = u16::try_from(self.data.len()).map_err(|_| ChannelDataError::DataTooLong)?;
        let [c0, c1] = self.channel.to_be_bytes();
        let [l0, l1] = len.to_be_bytes();
        Ok([c0, c1, l0, l1])
    }

    /// Appends the message to `out`, padded for a stream.
    pub fn emit(&self, out: &mut Vec<u8>, framing: Framing) -> Result<(), ChannelDataError> {
        let header = self.header()?;
        out.extend_from_slice(&header);
        out.extend_from_slice(self.data);
        let pad = self.buffer_len(framing) - 4 - self.data.len();
        out.extend_from_slice(&[0, 0, 0][..pad.min(3)]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::frame_len;
    use crate::Sniff;

    #[test]
    fn round_trip_both_framings() {
        for len in 0..9 {
            let data: Vec<u8> = (0..len).map(|i| i as u8 + 1).collect();
            for framing in [Framing::Datagram, Framing::Stream] {
                let repr = ChannelDataRepr {
                    channel: 0x4ABC,
                    data: &data,
                };
                let mut out = Vec::new();
                repr.emit(&mut out, framing).unwrap();
                assert_eq!(out.len(), repr.buffer_len(framing));
                if framing == Framing::Stream {
                    assert_eq!(out.len() % 4, 0);
                    assert_eq!(frame_len(&out), Sniff::Done(out.len()));
                }
                let packet = ChannelData::new_checked(&out[..]).unwrap();
                assert_eq!(ChannelDataRepr::parse(&packet), repr);
                assert_eq!(usize::from(packet.length()), len);
            }
        }
    }

    #[test]
    fn udp_padding_may_be_present_or_absent() {
        let bare = [0x40, 0x00, 0x00, 0x03, 1, 2, 3];
        assert_eq!(
            ChannelData::new_checked(&bare[..]).unwrap().data(),
            &[1, 2, 3]
        );
        let padded = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0];
        assert_eq!(
            ChannelData::new_checked(&padded[..]).unwrap().data(),
            &[1, 2, 3]
        );
        let too_much = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0, 0];
        assert_eq!(
            ChannelData::new_checked(&too_much[..]).err(),
            Some(ChannelDataError::TrailingBytes)
        );
        let short = [0x40, 0x00, 0x00, 0x04, 1, 2, 3];
        assert_eq!(
            ChannelData::new_checked(&short[..]).err(),
            Some(ChannelDataError::Truncated)
        );
        assert_eq!(
            ChannelData::new_checked(&[0x40u8, 0][..]).err(),
            Some(ChannelDataError::TooShort)
        );
        assert_eq!(
            ChannelData::new_checked(&[0x80u8, 0, 0, 0][..]).err(),
            Some(ChannelDataError::BadChannel(0x8000))
        );
        assert_eq!(
            ChannelData::new_checked(&[0x3Fu8, 0xFF, 0, 0][..]).err(),
            Some(ChannelDataError::BadChannel(0x3FFF))
        );
    }

    #[test]
    fn emit_checks() {
        let repr = ChannelDataRepr {
            channel: 0x3FFF,
            data: b"",
        };
        assert_eq!(
            repr.emit(&mut Vec::new(), Framing::Datagram),
            Err(ChannelDataError::BadChannel(0x3FFF))
        );
        let big = vec![0u8; 65_536];
        let repr = ChannelDataRepr {
            channel: 0x4000,
            data: &big,
        };
        assert_eq!(repr.header(), Err(ChannelDataError::DataTooLong));
        let repr = ChannelDataRepr {
            channel: 0x4FFF,
            data: &big[..65_535],
        };
        assert_eq!(repr.header(), Ok([0x4F, 0xFF, 0xFF, 0xFF]));
        assert_eq!(repr.buffer_len(Framing::Stream), 65_540);
    }
}
