//! Stateless nonces for the long-term credential mechanism (RFC 8489 §9.2), with the
//! "nonce cookie" that carries the STUN Security Features (§9.2, §18.1).
//!
//! A nonce is, in printable base64 (all of it `qdtext`, as §14.10 requires):
//!
//! ```text
//! [ "obMatJos2" base64(features, 3 bytes) ]   only when features are offered
//! base64( timestamp (8 bytes, UNIX seconds) || HMAC-SHA256(secret, …)[..16] )
//! ```
//!
//! The HMAC covers a version tag, the cookie (present or not, and its features), the
//! timestamp and the client's transport address, so a nonce is valid only for the
//! client it was issued to, only for `lifetime` seconds, and its features cannot be
//! edited (the bid-down protection of §9.2: "the server MUST verify that the nonce
//! cookie … has not been modified"). Nothing is stored; rotating the secret makes every
//! outstanding nonce `Invalid`, which clients recover from with one more 401.
//!
//! Feature bits follow RFC 8489 Errata 6290: "Bit 0" is the least significant bit of the
//! 24-bit set, so Password algorithms is 0x000001 and Username anonymity 0x000002 (which
//! is what the corrected Appendix B.1 vector's `obMatJos2AAAC` says: username anonymity).

use std::net::SocketAddr;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use ring::hmac;

use super::integrity::constant_time_eq;

/// "obMatJos2": the nonce cookie (RFC 8489 §9.2).
pub const NONCE_COOKIE: &str = "obMatJos2";
/// Version tag mixed into the MAC, so a future format cannot be confused with this one.
const TAG: &[u8] = b"portico stun nonce v1";
/// Timestamp (8) and truncated MAC (16).
const BODY_BYTES: usize = 24;
/// Base64 of [`BODY_BYTES`] without padding.
const BODY_CHARS: usize = 32;
/// Base64 of the 3-byte feature set.
const FEATURE_CHARS: usize = 4;

/// The 24-bit STUN Security Feature set (RFC 8489 §18.1, bit order per Errata 6290).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SecurityFeatures(u32);

impl SecurityFeatures {
    /// No feature: the nonce carries no cookie (an RFC 5389-style server).
    pub const NONE: SecurityFeatures = SecurityFeatures(0);
    /// Bit 0: Password algorithms (PASSWORD-ALGORITHMS / PASSWORD-ALGORITHM, §9.2.4).
    pub const PASSWORD_ALGORITHMS: SecurityFeatures = SecurityFeatures(0x00_0001);
    /// Bit 1: Username anonymity (USERHASH, §9.2.4).
    pub const USERNAME_ANONYMITY: SecurityFeatures = SecurityFeatures(0x00_0002);

    /// The set from its 24 bits (higher bits are dropped).
    pub const fn from_bits(bits: u32) -> SecurityFeatures {
        SecurityFeatures(bits & 0x00FF_FFFF)
    }

    /// The 24 bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Both sets.
    pub const fn union(self, other: SecurityFeatures) -> SecurityFeatures {
        SecurityFeatures(self.0 | other.0)
    }

    /// Whether every feature of `other` is in `self`.
    pub const fn contains(self, other: SecurityFeatures) -> bool {
        self.0 & other.0 == other.0
    }

    fn to_bytes(self) -> [u8; 3] {
        let [_, a, b, c] = self.0.to_be_bytes();
        [a, b, c]
    }
}

/// What [`NonceCodec::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by this codec to this client, within its lifetime.
    Valid,
    /// Issued by this codec to this client, but too old (or from a clock that has since
    /// gone back): answer 438 (Stale Nonce) with a fresh one.
    Stale,
    /// Not issued by this codec (forged, edited, another client's, or an old secret's):
    /// answer 401 with a fresh one.
    Invalid,
}

/// Issues and checks nonces with a server secret.
pub struct NonceCodec {
    key: hmac::Key,
}

impl std::fmt::Debug for NonceCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceCodec").finish_non_exhaustive()
    }
}

impl NonceCodec {
    /// A codec keyed with a random 32-byte secret (drawn by the caller, e.g. at start or
    /// reload).
    pub fn new(secret: [u8; 32]) -> NonceCodec {
        NonceCodec {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    /// A nonce for `client` at `now_secs`, carrying the cookie with `features` unless they
    /// are [`SecurityFeatures::NONE`]. At most 45 characters.
    ///
    /// The client's port is part of the binding; pass a port of 0 to bind to the IP only.
    /// IPv4-mapped IPv6 addresses are treated as the IPv4 address.
    pub fn issue(&self, now_secs: u64, client: SocketAddr, features: SecurityFeatures) -> String {
        let cookie = (features != SecurityFeatures::NONE).then_some(features);
        let mut body = [0u8; BODY_BYTES];
        let (stamp, mac) = body.split_at_mut(8);
        stamp.copy_from_slice(&now_secs.to_be_bytes());
        let tag = self.mac(cookie, now_secs, client);
        mac.iter_mut().zip(tag.as_ref()).for_each(|(m, t)| *m = *t);

        let mut nonce = String::with_capacity(NONCE_COOKIE.len() + FEATURE_CHARS + BODY_CHARS);
        if let Some(features) = cookie {
            nonce.push_str(NONCE_COOKIE);
            STANDARD.encode_string(features.to_bytes(), &mut nonce);
        }
        STANDARD_NO_PAD.encode_string(body, &mut nonce);
        nonce
    }

    /// Checks a NONCE a client sent back: `Valid` if this codec issued it to `client` less
    /// than `lifetime_secs` before `now_secs`.
    pub fn check(
        &self,
        nonce: &str,
        now_secs: u64,
        client: SocketAddr,
        lifetime_secs: u64,
    ) -> NonceCheck {
        let (cookie, body) = match nonce.strip_prefix(NONCE_COOKIE) {
            Some(rest) => {
                let Some((features, body)) = split_features(rest) else {
                    return NonceCheck::Invalid;
                };
                (Some(features), body)
            }
            None => (None, nonce),
        };
        if body.len() != BODY_CHARS {
            return NonceCheck::Invalid;
        }
        let mut decoded = [0u8; BODY_BYTES];
        if !matches!(
            STANDARD_NO_PAD.decode_slice(body, &mut decoded),
            Ok(BODY_BYTES)
        ) {
            return NonceCheck::Invalid;
        }
        let (stamp, mac) = decoded.split_at(8);
        let Ok(stamp) = <[u8; 8]>::try_from(stamp) else {
            return NonceCheck::Invalid;
        };
        let issued = u64::from_be_bytes(stamp);
        let expected = self.mac(cookie, issued, client);
        let Some(expected) = expected.as_ref().get(..mac.len()) else {
            return NonceCheck::Invalid;
        };
        if !constant_time_eq(expected, mac) {
            return NonceCheck::Invalid;
        }
        match now_secs.checked_sub(issued) {
            Some(age) if age < lifetime_secs => NonceCheck::Valid,
            _ => NonceCheck::Stale,
        }
    }

    fn mac(&self, cookie: Option<SecurityFeatures>, stamp: u64, client: SocketAddr) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(TAG);
        match cookie {
            Some(features) => {
                ctx.update(&[1]);
                ctx.update(&features.to_bytes());
            }
            None => ctx.update(&[0, 0, 0, 0]),
        }
        ctx.update(&stamp.to_be_bytes());
        match client.ip().to_canonical() {
            std::net::IpAddr::V4(ip) => {
                ctx.update(&[4]);
                ctx.update(&ip.octets());
            }
            std::net::IpAddr::V6(ip) => {
                ctx.update(&[6]);
                ctx.update(&ip.octets());
            }
        }
        ctx.update(&client.port().to_be_bytes());
        ctx.sign()
    }
}

/// Splits the 4 base64 characters of the feature set off what follows the cookie.
fn split_features(rest: &str) -> Option<(SecurityFeatures, &str)> {
    let chars = rest.get(..FEATURE_CHARS)?;
    let body = rest.get(FEATURE_CHARS..)?;
    let mut bytes = [0u8; 3];
    if !matches!(STANDARD.decode_slice(chars, &mut bytes), Ok(3)) {
        return None;
    }
    let [a, b, c] = bytes;
    Some((
        SecurityFeatures::from_bits(u32::from_be_bytes([0, a, b, c])),
        body,
    ))
}

/// The Security Features a nonce's cookie announces, or `None` if it has no cookie
/// (RFC 8489 §9.2: "obMatJos2" followed by 4 base64 characters). Works on any server's
/// nonce; it says nothing about whether the nonce is valid.
pub fn nonce_security_features(nonce: &str) -> Option<SecurityFeatures> {
    let rest = nonce.strip_prefix(NONCE_COOKIE)?;
    split_features(rest).map(|(features, _)| features)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIME: u64 = 600;

    fn codec() -> NonceCodec {
        NonceCodec::new([0x5A; 32])
    }

    fn client() -> SocketAddr {
        "198.51.100.7:40000".parse().unwrap()
    }

    #[test]
    fn issue_and_check() {
        let c = codec();
        let n = c.issue(1_000, client(), SecurityFeatures::NONE);
        assert_eq!(n.len(), 32);
        assert!(!n.starts_with(NONCE_COOKIE));
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        assert_eq!(nonce_security_features(&n), None);
        assert_eq!(c.check(&n, 1_000, client(), LIFETIME), NonceCheck::Valid);
        assert_eq!(c.check(&n, 1_599, client(), LIFETIME), NonceCheck::Valid);
        assert_eq!(c.check(&n, 1_600, client(), LIFETIME), NonceCheck::Stale);
        assert_eq!(c.check(&n, 999, client(), LIFETIME), NonceCheck::Stale);
    }

    #[test]
    fn bound_to_the_client() {
        let c = codec();
        let n = c.issue(1_000, client(), SecurityFeatures::NONE);
        let other_port: SocketAddr = "198.51.100.7:40001".parse().unwrap();
        let other_ip: SocketAddr = "198.51.100.8:40000".parse().unwrap();
        assert_eq!(
            c.check(&n, 1_000, other_port, LIFETIME),
            NonceCheck::Invalid
        );
        assert_eq!(c.check(&n, 1_000, other_ip, LIFETIME), NonceCheck::Invalid);
        // A stale nonce of another client is still Invalid, not Stale.
        assert_eq!(c.check(&n, 9_999, other_ip, LIFETIME), NonceCheck::Invalid);
        let mapped: SocketAddr = "[::ffff:198.51.100.7]:40000".parse().unwrap();
        assert_eq!(c.check(&n, 1_000, mapped, LIFETIME), NonceCheck::Valid);
        let v6: SocketAddr = "[2001:db8::1]:3478".parse().unwrap();
        let n6 = c.issue(5, v6, SecurityFeatures::NONE);
        assert_eq!(c.check(&n6, 5, v6, LIFETIME), NonceCheck::Valid);
        assert_eq!(c.check(&n6, 5, client(), LIFETIME), NonceCheck::Invalid);
    }

    #[test]
    fn another_secret_or_forgery_is_invalid() {
        let n = codec().issue(1_000, client(), SecurityFeatures::NONE);
        let other = NonceCodec::new([0xA5; 32]);
        assert_eq!(
            other.check(&n, 1_000, client(), LIFETIME),
            NonceCheck::Invalid
        );
        for bad in [
            "",
            "x",
            "obMatJos2",
            "obMatJos2AAAB",
            "obMatJos2!!!!xyz",
            &n[..31],
            "f//499k954d6OL34oL9FSTvy64sA",
        ] {
            assert_eq!(
                codec().check(bad, 1_000, client(), LIFETIME),
                NonceCheck::Invalid,
                "{bad}"
            );
        }
        // Flipping any character breaks it.
        for i in 0..n.len() {
            let mut bytes = n.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(bytes).unwrap();
            assert_eq!(
                codec().check(&edited, 1_000, client(), LIFETIME),
                NonceCheck::Invalid
            );
        }
    }

    #[test]
    fn cookie_and_features() {
        let c = codec();
        let both =
            SecurityFeatures::PASSWORD_ALGORITHMS.union(SecurityFeatures::USERNAME_ANONYMITY);
        let n = c.issue(1_000, client(), both);
        assert!(n.starts_with("obMatJos2AAAD"), "{n}");
        assert_eq!(n.len(), 45);
        assert_eq!(nonce_security_features(&n), Some(both));
        assert!(both.contains(SecurityFeatures::PASSWORD_ALGORITHMS));
        assert!(!SecurityFeatures::USERNAME_ANONYMITY.contains(both));
        assert_eq!(c.check(&n, 1_000, client(), LIFETIME), NonceCheck::Valid);
        let pa = c.issue(1_000, client(), SecurityFeatures::PASSWORD_ALGORITHMS);
        assert!(pa.starts_with("obMatJos2AAAB"));
        // Bid-down: editing the features, or removing or adding the cookie, is detected.
        let downgraded = n.replacen("AAAD", "AAAB", 1);
        assert_eq!(
            c.check(&downgraded, 1_000, client(), LIFETIME),
            NonceCheck::Invalid
        );
        let stripped = &n[NONCE_COOKIE.len() + 4..];
        assert_eq!(
            c.check(stripped, 1_000, client(), LIFETIME),
            NonceCheck::Invalid
        );
        let plain = c.issue(1_000, client(), SecurityFeatures::NONE);
        let added = format!("obMatJos2AAAA{plain}");
        assert_eq!(
            c.check(&added, 1_000, client(), LIFETIME),
            NonceCheck::Invalid
        );
        // The RFC 8489 Appendix B.1 nonce (Errata 6268) announces username anonymity.
        assert_eq!(
            nonce_security_features("obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"),
            Some(SecurityFeatures::USERNAME_ANONYMITY)
        );
        assert_eq!(SecurityFeatures::from_bits(0xFF00_0001).bits(), 1);
        assert_eq!(format!("{c:?}"), "NonceCodec { .. }");
    }
}
