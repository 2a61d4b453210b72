//! The long-term credential mechanism on the server side (RFC 8489 §9.2.4, as RFC 8656
//! §5 requires for every TURN request): static users and TURN REST ephemeral usernames
//! side by side, MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256, USERHASH, and the
//! PASSWORD-ALGORITHMS bid-down protection carried by the `obMatJos2` nonce cookie.
//!
//! The keys of static users are computed once (MD5 and SHA-256, RFC 8489 §18.5.1); a REST
//! username's key is derived per request from each shared secret in turn.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::stun::{
    long_term_key, nonce_security_features, rest_password, rest_username_valid, userhash,
    verify_message_integrity, verify_message_integrity_sha256, Attribute, AttributeType, ErrorCode,
    KeyAlgorithm, LongTermKey, Message, NonceCheck, NonceCodec, PasswordAlgorithms,
    SecurityFeatures,
};

use super::event::AuthFailure;

/// The Security Features our nonces announce: password algorithms and username
/// anonymity (RFC 8489 §9.2, §18.1).
pub(crate) const FEATURES: SecurityFeatures =
    SecurityFeatures::PASSWORD_ALGORITHMS.union(SecurityFeatures::USERNAME_ANONYMITY);

/// What we advertise in PASSWORD-ALGORITHMS: SHA-256, then MD5.
pub(crate) const ADVERTISED: PasswordAlgorithms<'static> = PasswordAlgorithms::SHA256_MD5;

/// Which MESSAGE-INTEGRITY attribute a request used; the response uses the same
/// (RFC 8489 §9.2.4: "the server ... MUST use the same ... MESSAGE-INTEGRITY-SHA256 or
/// MESSAGE-INTEGRITY attribute").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MacKind {
    /// HMAC-SHA1 (MESSAGE-INTEGRITY).
    Sha1,
    /// HMAC-SHA256 (MESSAGE-INTEGRITY-SHA256).
    Sha256,
}

/// A request that passed authentication.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub(crate) user: Arc<str>,
    pub(crate) key: LongTermKey,
    pub(crate) mac: MacKind,
}

/// Why a request is refused, and how to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) code: ErrorCode<'static>,
    pub(crate) reason: AuthFailure,
    /// Whether the answer carries REALM, a fresh NONCE and PASSWORD-ALGORITHMS (401 and
    /// 438 do; 400 "SHOULD NOT include a USERNAME, NONCE, or REALM").
    pub(crate) challenge: bool,
}

impl Rejection {
    const fn new(code: ErrorCode<'static>, reason: AuthFailure) -> Rejection {
        let challenge = code.code == 401 || code.code == 438;
        Rejection {
            code,
            reason,
            challenge,
        }
    }
}

#[derive(Debug, Clone)]
struct StaticUser {
    name: Arc<str>,
    md5: LongTermKey,
    sha256: LongTermKey,
}

/// Static users, their USERHASHes, and the REST secrets.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    realm: String,
    by_name: HashMap<String, StaticUser>,
    by_hash: HashMap<[u8; 32], String>,
    rest_secrets: Vec<Vec<u8>>,
}

impl Credentials {
    pub(crate) fn new(
        realm: &str,
        users: &[(String, String)],
        rest_secrets: &[Vec<u8>],
    ) -> Credentials {
        let mut by_name = HashMap::with_capacity(users.len());
        let mut by_hash = HashMap::with_capacity(users.len());
        for (name, password) in users {
            by_name.insert(
                name.clone(),
                StaticUser {
                    name: Arc::from(name.as_str()),
                    md5: long_term_key(KeyAlgorithm::Md5, name, realm, password),
                    sha256: long_term_key(KeyAlgorithm::Sha256, name, realm, password),
                },
            );
            by_hash.insert(userhash(name, realm), name.clone());
        }
        Credentials {
            realm: realm.to_string(),
            by_name,
            by_hash,
            rest_secrets: rest_secrets.to_vec(),
        }
    }

    pub(crate) fn realm(&self) -> &str {
        &self.realm
    }

    /// RFC 8489 §9.2.4, in its order: integrity present, the required attributes, the
    /// nonce, the password algorithms, the user, the integrity, then staleness.
    pub(crate) fn authenticate(
        &self,
        msg: &Message<&[u8]>,
        client: SocketAddr,
        unix_secs: u64,
        nonces: &NonceCodec,
        nonce_lifetime_secs: u64,
    ) -> Result<Authenticated, Rejection> {
        let has_mi = msg.attribute(AttributeType::MESSAGE_INTEGRITY).is_some();
        let mi256 = msg.attribute(AttributeType::MESSAGE_INTEGRITY_SHA256);
        // "If the message does not contain a MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256
        // attribute, the server MUST generate an error response with an error code of 401
        // (Unauthenticated)."
        if !has_mi && mi256.is_none() {
            return Err(Rejection::new(
                ErrorCode::UNAUTHENTICATED,
                AuthFailure::Challenge,
            ));
        }
        // "If the message contains a MESSAGE-INTEGRITY or a MESSAGE-INTEGRITY-SHA256
        // attribute, but is missing either the USERNAME or USERHASH, REALM, or NONCE
        // attribute, the server MUST generate an error response with an error code of 400
        // (Bad Request)."
        let missing = Rejection::new(ErrorCode::BAD_REQUEST, AuthFailure::MissingAttributes);
        let username = match msg.decode(AttributeType::USERNAME) {
            None => None,
            Some(Ok(Attribute::Username(u))) => Some(u),
            Some(_) => return Err(missing),
        };
        let hash = match msg.decode(AttributeType::USERHASH) {
            None => None,
            Some(Ok(Attribute::UserHash(h))) => Some(h),
            Some(_) => return Err(missing),
        };
        let (Some(Ok(Attribute::Realm(realm))), Some(Ok(Attribute::Nonce(nonce)))) = (
            msg.decode(AttributeType::REALM),
            msg.decode(AttributeType::NONCE),
        ) else {
            return Err(missing);
        };
        if username.is_none() && hash.is_none() {
            return Err(missing);
        }
        // A nonce we did not issue to this client (forged, another client's, or from a
        // secret since rotated) gets a fresh one, as an invalid USERNAME would.
        let stale = match nonces.check(nonce, unix_secs, client, nonce_lifetime_secs) {
            NonceCheck::Valid => false,
            NonceCheck::Stale => true,
            NonceCheck::Invalid => {
                return Err(Rejection::new(
                    ErrorCode::UNAUTHENTICATED,
                    AuthFailure::InvalidNonce,
                ))
            }
        };
        if realm != self.realm {
            return Err(Rejection::new(
                ErrorCode::UNAUTHENTICATED,
                AuthFailure::MissingAttributes,
            ));
        }
        let algorithm = password_algorithm(msg, nonce)?;

        let unknown = Rejection::new(ErrorCode::UNAUTHENTICATED, AuthFailure::UnknownUser);
        let bad_integrity = Rejection::new(ErrorCode::UNAUTHENTICATED, AuthFailure::BadIntegrity);
        // "If the MESSAGE-INTEGRITY-SHA256 attribute is present, compute the value for the
        // message integrity as described in Section 14.6 ... Otherwise, ... compute the
        // value for the MESSAGE-INTEGRITY attribute" (RFC 8489 §9.2.4). TURN does not
        // allow truncation, so MESSAGE-INTEGRITY-SHA256 must be the full 32 bytes.
        let mac = match mi256 {
            Some(attr) if attr.value().len() != 32 => return Err(bad_integrity),
            Some(_) => MacKind::Sha256,
            None => MacKind::Sha1,
        };
        let verifies = |key: &LongTermKey| match mac {
            MacKind::Sha1 => verify_message_integrity(msg, key.as_bytes()),
            MacKind::Sha256 => verify_message_integrity_sha256(msg, key.as_bytes()),
        };

        let user = match (username, hash) {
            (Some(name), _) => self.by_name.get(name),
            (None, Some(hash)) => self.by_hash.get(hash).and_then(|n| self.by_name.get(n)),
            (None, None) => None,
        };
        let found = if let Some(user) = user {
            let key = match algorithm {
                KeyAlgorithm::Md5 => &user.md5,
                KeyAlgorithm::Sha256 => &user.sha256,
            };
            if !verifies(key) {
                return Err(bad_integrity);
            }
            Authenticated {
                user: user.name.clone(),
                key: key.clone(),
                mac,
            }
        } else {
            // TURN REST: `expiry:user`, password base64(HMAC-SHA1(secret, username)). A
            // USERHASH cannot name one (the username is not known in advance).
            let Some(name) = username else {
                return Err(unknown);
            };
            if self.rest_secrets.is_empty() || crate::stun::rest_expiry(name).is_none() {
                return Err(unknown);
            }
            if !rest_username_valid(name, unix_secs) {
                return Err(Rejection::new(
                    ErrorCode::UNAUTHENTICATED,
                    AuthFailure::RestExpired,
                ));
            }
            let key = self
                .rest_secrets
                .iter()
                .map(|secret| {
                    let password = rest_password(secret, name);
                    long_term_key(algorithm, name, &self.realm, &password)
                })
                .find(|key| verifies(key))
                .ok_or(bad_integrity)?;
            Authenticated {
                user: Arc::from(name),
                key,
                mac,
            }
        };
        // "If the NONCE is no longer valid, the server MUST generate an error response
        // with an error code of 438 (Stale Nonce)" — checked after the integrity, as the
        // list of RFC 8489 §9.2.4 orders it.
        if stale {
            return Err(Rejection::new(
                ErrorCode::STALE_NONCE,
                AuthFailure::StaleNonce,
            ));
        }
        Ok(found)
    }
}

/// "If the NONCE attribute starts with the 'nonce cookie' with the STUN Security Feature
/// 'Password algorithms' bit set to 1": neither PASSWORD-ALGORITHMS nor
/// PASSWORD-ALGORITHM means MD5; otherwise both must be present, PASSWORD-ALGORITHMS must
/// match what we sent, and PASSWORD-ALGORITHM must be one of its entries, "the server MUST
/// generate an error response with an error code of 400 (Bad Request)" if not
/// (RFC 8489 §9.2.4).
fn password_algorithm(msg: &Message<&[u8]>, nonce: &str) -> Result<KeyAlgorithm, Rejection> {
    let bad = Rejection::new(ErrorCode::BAD_REQUEST, AuthFailure::PasswordAlgorithms);
    let features = nonce_security_features(nonce).unwrap_or(SecurityFeatures::NONE);
    if !features.contains(SecurityFeatures::PASSWORD_ALGORITHMS) {
        return Ok(KeyAlgorithm::Md5);
    }
    match (
        msg.decode(AttributeType::PASSWORD_ALGORITHMS),
        msg.decode(AttributeType::PASSWORD_ALGORITHM),
    ) {
        (None, None) => Ok(KeyAlgorithm::Md5),
        (
            Some(Ok(Attribute::PasswordAlgorithms(list))),
            Some(Ok(Attribute::PasswordAlgorithm(chosen))),
        ) => {
            if list.as_bytes() != ADVERTISED.as_bytes() || !list.iter().any(|a| a == chosen) {
                return Err(bad);
            }
            KeyAlgorithm::from_id(chosen.algorithm).ok_or(bad)
        }
        _ => Err(bad),
    }
}
