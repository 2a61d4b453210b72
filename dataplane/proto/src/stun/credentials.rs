//! Long-term credentials (RFC 8489 §9.2), USERHASH (§14.4) and TURN REST ephemeral
//! credentials (draft-uberti-behave-turn-rest-00, as coturn's `use-auth-secret` does it).
//!
//! OpaqueString (RFC 8265 §4.2) is applied as the identity: for printable ASCII, which
//! is what operators configure and what every deployed client sends, that is exactly what
//! the profile yields. Non-ASCII strings are used byte for byte as given (no width
//! mapping, no NFC, no mapping of non-ASCII spaces); configure them already prepared,
//! as RFC 5769 §2.4 gives its password ("TheMatrIX", the prepared form of
//! "The\u{AD}M\u{AA}tr\u{2168}").

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use ring::{digest, hmac};

use super::attribute::{ALGORITHM_MD5, ALGORITHM_SHA256};

/// The password algorithm a long-term key is derived with (RFC 8489 §18.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// MD5 (0x0001), and the default when PASSWORD-ALGORITHM is absent.
    Md5,
    /// SHA-256 (0x0002).
    Sha256,
}

impl KeyAlgorithm {
    /// The PASSWORD-ALGORITHM number.
    pub const fn id(self) -> u16 {
        match self {
            KeyAlgorithm::Md5 => ALGORITHM_MD5,
            KeyAlgorithm::Sha256 => ALGORITHM_SHA256,
        }
    }

    /// From a PASSWORD-ALGORITHM number; `None` for algorithms this server lacks.
    pub const fn from_id(id: u16) -> Option<KeyAlgorithm> {
        match id {
            ALGORITHM_MD5 => Some(KeyAlgorithm::Md5),
            ALGORITHM_SHA256 => Some(KeyAlgorithm::Sha256),
            _ => None,
        }
    }
}

/// A long-term key: the HMAC key for MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256.
/// Its `Debug` shows the algorithm, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct LongTermKey {
    algorithm: KeyAlgorithm,
    bytes: [u8; 32],
}

impl LongTermKey {
    /// The algorithm it was derived with.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The key: 16 bytes for MD5, 32 for SHA-256.
    pub fn as_bytes(&self) -> &[u8] {
        let len = match self.algorithm {
            KeyAlgorithm::Md5 => 16,
            KeyAlgorithm::Sha256 => 32,
        };
        self.bytes.get(..len).unwrap_or(&self.bytes)
    }
}

impl AsRef<[u8]> for LongTermKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for LongTermKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LongTermKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The long-term key (RFC 8489 §9.2.2):
///
/// ```text
/// key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))
/// key = SHA-256(username ":" OpaqueString(realm) ":" OpaqueString(password))
/// ```
///
/// (§18.5.1.1 and §18.5.1.2).
///
/// Limitation: OpaqueString (RFC 8265 §4.2; SASLprep in RFC 5389) is applied as the
/// identity. For printable ASCII, what operators configure and deployed clients send,
/// that is exactly the profile's result. Non-ASCII strings are hashed byte for byte as
/// given (no width mapping, no NFC, no mapping of non-ASCII spaces), so configure them
/// already prepared, as RFC 5769 §2.4 does with "TheMatrIX" for
/// "The\u{AD}M\u{AA}tr\u{2168}".
pub fn long_term_key(
    algorithm: KeyAlgorithm,
    username: &str,
    realm: &str,
    password: &str,
) -> LongTermKey {
    let parts = [
        username.as_bytes(),
        b":",
        realm.as_bytes(),
        b":",
        password.as_bytes(),
    ];
    let mut bytes = [0u8; 32];
    match algorithm {
        KeyAlgorithm::Md5 => {
            let mut h = Md5::new();
            for p in parts {
                h.update(p);
            }
            let sum: [u8; 16] = h.finalize().into();
            bytes.iter_mut().zip(sum).for_each(|(b, s)| *b = s);
        }
        KeyAlgorithm::Sha256 => {
            let mut h = digest::Context::new(&digest::SHA256);
            for p in parts {
                h.update(p);
            }
            bytes
                .iter_mut()
                .zip(h.finish().as_ref())
                .for_each(|(b, s)| *b = *s);
        }
    }
    LongTermKey { algorithm, bytes }
}

/// USERHASH (RFC 8489 §14.4):
/// `userhash = SHA-256(OpaqueString(username) ":" OpaqueString(realm))`.
pub fn userhash(username: &str, realm: &str) -> [u8; 32] {
    let mut h = digest::Context::new(&digest::SHA256);
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    let mut out = [0u8; 32];
    out.iter_mut()
        .zip(h.finish().as_ref())
        .for_each(|(o, d)| *o = *d);
    out
}

/// The TURN REST password for `username`: `base64(HMAC-SHA1(secret, username))`, the
/// scheme of draft-uberti-behave-turn-rest-00 §2.2 and coturn's `use-auth-secret`
/// (`static-auth-secret`, default SHA-1 HMAC).
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    STANDARD.encode(hmac::sign(&key, username.as_bytes()).as_ref())
}

/// A TURN REST username: `expiry ":" user`, expiry in UNIX seconds. This is coturn's
/// order (the timestamp first, `:` its default `rest-api-separator`), which every
/// client library and the draft's examples use; `user` may be empty, then the username
/// is the bare timestamp.
pub fn rest_username(expiry_secs: u64, user: &str) -> String {
    if user.is_empty() {
        expiry_secs.to_string()
    } else {
        format!("{expiry_secs}:{user}")
    }
}

/// The expiry of a TURN REST username: the decimal digits before the first `:` (or the
/// whole username). `None` if that is not a plain decimal number.
pub fn rest_expiry(username: &str) -> Option<u64> {
    let stamp = username.split(':').next()?;
    if stamp.is_empty() || stamp.len() > 20 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stamp.parse().ok()
}

/// Whether a TURN REST username has not expired at `now_secs`: it has when its
/// timestamp is earlier than now (coturn's rule). A username without a timestamp is not
/// a REST username and is not valid.
pub fn rest_username_valid(username: &str, now_secs: u64) -> bool {
    rest_expiry(username).is_some_and(|expiry| expiry >= now_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn md5_key_of_rfc5769_section_2_4() {
        let key = long_term_key(
            KeyAlgorithm::Md5,
            "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}",
            "example.org",
            "TheMatrIX",
        );
        // MD5 of the UTF-8 of "マトリックス:example.org:TheMatrIX" (Python hashlib).
        assert_eq!(hex(key.as_bytes()), "e8ca7ad59d5eb0518e312911d2dab2a9");
        assert_eq!(key.algorithm(), KeyAlgorithm::Md5);
        assert_eq!(format!("{key:?}"), "LongTermKey { algorithm: Md5, .. }");
    }

    #[test]
    fn plain_ascii_keys() {
        // MD5("user:realm:pass"), SHA-256("user:realm:pass") (Python hashlib).
        let md5 = long_term_key(KeyAlgorithm::Md5, "user", "realm", "pass");
        assert_eq!(hex(md5.as_bytes()), "8493fbc53ba582fb4c044c456bdc40eb");
        let sha = long_term_key(KeyAlgorithm::Sha256, "user", "realm", "pass");
        assert_eq!(
            hex(sha.as_bytes()),
            "07e934117abd40836e7c6329b54731b2b2d2a5f9a71f544922d75e0730d8251b"
        );
    }

    #[test]
    fn algorithm_ids() {
        assert_eq!(KeyAlgorithm::from_id(1), Some(KeyAlgorithm::Md5));
        assert_eq!(KeyAlgorithm::from_id(2), Some(KeyAlgorithm::Sha256));
        assert_eq!(KeyAlgorithm::from_id(0), None);
        assert_eq!(KeyAlgorithm::Sha256.id(), 2);
    }

    #[test]
    fn rest_credentials() {
        // Python: base64.b64encode(hmac.new(b"north-secret", b"1700000000:alice",
        // hashlib.sha1).digest()).
        let user = rest_username(1_700_000_000, "alice");
        assert_eq!(user, "1700000000:alice");
        assert_eq!(
            rest_password(b"north-secret", &user),
            "g+jb180fcj+xlpA/2mP60OdIgU0="
        );
        assert_eq!(rest_expiry(&user), Some(1_700_000_000));
        assert!(rest_username_valid(&user, 1_699_999_999));
        assert!(rest_username_valid(&user, 1_700_000_000));
        assert!(!rest_username_valid(&user, 1_700_000_001));
        assert_eq!(rest_username(42, ""), "42");
        assert!(rest_username_valid("42", 40));
        for bad in [
            "alice:1700000000",
            "",
            ":alice",
            "17e9:x",
            "-1:x",
            "99999999999999999999999:x",
        ] {
            assert!(!rest_username_valid(bad, 0), "{bad}");
        }
    }
}
