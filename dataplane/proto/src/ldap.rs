//! LDAP as the reverse proxy sees it: the first LDAPMessage of a connection, which
//! must be a BindRequest (RFC 4511 §4.2), and the routing key in its bind name.
//!
//! Owns: reading the first LDAPMessage from the bytes buffered so far (a small BER
//! reader, X.690 §8.1, with the restrictions of RFC 4511 §5.1); taking the routing
//! domain out of a bind name ([`bind_domain`]: `domain\user`, `user@domain`, or an
//! RFC 4514 DN whose `DC` components are joined with `.`); writing the BindResponse or
//! Notice of Disconnection the data plane sends before it closes a refused
//! connection. The host lookup lives in `portico-control`; sockets, TLS, timeouts and
//! the replay of the buffered bytes to the target in the data plane.
//!
//! Promises:
//! - Nothing here panics on any input. Every strict prefix of a valid message is
//!   [`Sniff::Incomplete`]; a reject is decided only from bytes that are present, so
//!   more bytes never turn a reject into anything else. A message whose declared
//!   length exceeds `max_len` is refused as soon as its length octets are read.
//! - Work is bounded by the message: no recursion, and every loop consumes at least
//!   two bytes of the message per turn. Elements the sniffer does not need (the
//!   password, SASL credentials, controls, unknown trailing components) are skipped by
//!   their length without being descended into.
//!
//! # Why a hand-written BER reader and not `rasn` + `rasn-ldap`
//! A schema-driven decoder answers for the whole LDAPMessage, and the proxy needs
//! something else:
//! - It decodes every `protocolOp`, including a SearchRequest's `Filter`, which is
//!   recursive (`and [0] SET OF Filter`, `not [2] Filter`): the sender picks the
//!   recursion depth. Here a first message that is not a BindRequest is refused on
//!   its tag byte, before its contents are looked at.
//! - The sniffer must tell *need more bytes* from *malformed* on every prefix and
//!   refuse an over-long declared length before the bytes arrive; a decoder reports
//!   the first problem it meets while building values, and an error kind for "input
//!   ended" does not say whether the input could still become valid.
//! - The encoding rules are RFC 4511's, not plain BER's: definite lengths only,
//!   OCTET STRING primitive only (§5.1), trailing unknown SEQUENCE components ignored
//!   (§4). Those choices would be re-checked around a general codec anyway.
//! - The subset needed (identifier octet, definite length, INTEGER, OCTET STRING,
//!   skipping an element) is about a hundred lines, against a dependency tree
//!   (derive macros, big integers) in a crate that so far depends on two small crates.
//!
//! # Decisions
//! - Only LDAPv3 is accepted. LDAPv2 is historic (RFC 3494) and its bind names are
//!   RFC 1779 strings; a version other than 3 is refused with `protocolError`, as
//!   RFC 4511 §4.2 tells a server to.
//! - Long-form lengths with more octets than needed are accepted (X.690 §8.1.3.5
//!   NOTE 2 makes it the sender's option, RFC 4511 §5.1 does not restrict it, and
//!   Windows LDAP clients send `84 00 00 00 xx`). Indefinite lengths, more than four
//!   length octets and high tag numbers (no LDAP tag needs one) are refused.
//! - INTEGERs must be minimal (X.690 §8.3.2 applies to BER too).
//! - A simple bind with an empty name or an empty password is refused as an
//!   anonymous bind. A SASL bind routes on its name; without a name it is refused.
//! - [`LdapReject::message_id`] is `Some` exactly when the first message is a
//!   BindRequest with a valid messageID: answer it with [`write_bind_response`].
//!   Otherwise there is no bind to answer; [`write_notice_of_disconnection`] is the
//!   RFC 4511 §4.1.1 answer. [`LdapReject::result_code`] is the code to send either way.
//!   For "no route for this domain" (decided by the caller) use
//!   [`result_code::UNWILLING_TO_PERFORM`]: `invalidCredentials` would send the user
//!   looking for a wrong password.

use std::fmt;

use crate::Sniff;

/// LDAP result codes (RFC 4511 §4.1.9 and Appendix A) that the proxy answers with.
pub mod result_code {
    /// "protocolError (2): Indicates the server received data that is not
    /// well-formed."
    pub const PROTOCOL_ERROR: u8 = 2;
    /// "authMethodNotSupported (7): Indicates that the server does not support the
    /// requested authentication method or mechanism."
    pub const AUTH_METHOD_NOT_SUPPORTED: u8 = 7;
    /// "inappropriateAuthentication (48): Indicates the server requires the client
    /// that had attempted to bind anonymously or without supplying credentials to
    /// provide some form of credentials."
    pub const INAPPROPRIATE_AUTHENTICATION: u8 = 48;
    /// "invalidCredentials (49): Indicates that the provided credentials (e.g., the
    /// user's name and password) are invalid."
    pub const INVALID_CREDENTIALS: u8 = 49;
    /// "unavailable (52): Indicates that the server is currently unavailable to
    /// perform the request." (E.g. the target refused the connection.)
    pub const UNAVAILABLE: u8 = 52;
    /// "unwillingToPerform (53): Indicates that the server is unwilling to perform
    /// the operation." Used for a bind whose domain has no route.
    pub const UNWILLING_TO_PERFORM: u8 = 53;
}

use result_code::{
    AUTH_METHOD_NOT_SUPPORTED, INAPPROPRIATE_AUTHENTICATION, PROTOCOL_ERROR, UNWILLING_TO_PERFORM,
};

// Identifier octets (X.690 §8.1.2). The LDAP module is DEFINITIONS IMPLICIT TAGS
// (RFC 4511 Appendix B), so a tagged type's tag replaces the underlying one.
/// UNIVERSAL 16, constructed.
const SEQUENCE: u8 = 0x30;
/// UNIVERSAL 2.
const INTEGER: u8 = 0x02;
/// UNIVERSAL 4, primitive (RFC 4511 §5.1 (2): "OCTET STRING values are encoded in
/// the primitive form only").
const OCTET_STRING: u8 = 0x04;
/// UNIVERSAL 10.
const ENUMERATED: u8 = 0x0a;
/// `BindRequest ::= [APPLICATION 0] SEQUENCE`.
const BIND_REQUEST: u8 = 0x60;
/// `[APPLICATION 0]` in primitive form: a BindRequest, badly encoded.
const BIND_REQUEST_PRIMITIVE: u8 = 0x40;
/// `BindResponse ::= [APPLICATION 1] SEQUENCE`.
const BIND_RESPONSE: u8 = 0x61;
/// `ExtendedResponse ::= [APPLICATION 24] SEQUENCE`.
const EXTENDED_RESPONSE: u8 = 0x78;
/// `simple [0] OCTET STRING`.
const AUTH_SIMPLE: u8 = 0x80;
/// `simple [0]` in constructed form, which RFC 4511 §5.1 (2) rules out.
const AUTH_SIMPLE_CONSTRUCTED: u8 = 0xa0;
/// `sasl [3] SaslCredentials` (a SEQUENCE, so constructed).
const AUTH_SASL: u8 = 0xa3;
/// `controls [0] Controls` (a SEQUENCE OF, so constructed).
const CONTROLS: u8 = 0xa0;
/// `responseName [10] LDAPOID`.
const RESPONSE_NAME: u8 = 0x8a;
/// RFC 4511 §4.1.1: `maxInt INTEGER ::= 2147483647 -- (2^^31 - 1) --`.
const MAX_INT: u32 = 2_147_483_647;
/// RFC 4511 §4.4.1: "The responseName is 1.3.6.1.4.1.1466.20036".
const NOTICE_OF_DISCONNECTION: &[u8] = b"1.3.6.1.4.1.1466.20036";
/// Longest diagnosticMessage written; longer ones are cut at a character boundary.
const MAX_DIAGNOSTIC: usize = 1024;

/// How the client authenticates in its BindRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// `simple [0] OCTET STRING`: a password (never empty here).
    Simple,
    /// `sasl [3] SaslCredentials`.
    Sasl,
}

/// The first LDAPMessage of a connection: a BindRequest that can be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRequest {
    /// Length of the whole LDAPMessage (identifier and length octets included).
    pub message_len: usize,
    /// The messageID, 1 ..= 2^31 - 1, for an answer.
    pub message_id: u32,
    /// The protocol version; always 3.
    pub version: u8,
    /// The bind name as sent (LDAPString: UTF-8).
    pub name: String,
    /// The routing key taken from the name by [`bind_domain`]: lower-case.
    pub domain: String,
    /// The user part of the name, for logs and certificate checks.
    pub user: String,
    pub auth: AuthKind,
}

/// Why the first message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LdapReject {
    /// Short reason for logs and the diagnosticMessage, e.g. "anonymous bind".
    pub reason: &'static str,
    /// `Some` when the first message is a BindRequest with a valid messageID: the
    /// refusal can be sent as a BindResponse with this ID.
    pub message_id: Option<u32>,
    /// The result code to answer with (see [`result_code`]).
    pub result_code: u8,
}

impl fmt::Display for LdapReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for LdapReject {}

/// Why reading stopped.
#[derive(Debug)]
enum Stop {
    /// The bytes so far are a valid prefix.
    More,
    Reject(LdapReject),
}

impl Stop {
    /// The encoding is not valid BER/LDAP; RFC 4511 §4.1.1: "the encoding structures
    /// or lengths of data fields are found to be incorrect, then the server SHOULD
    /// return the Notice of Disconnection [...] with the resultCode set to
    /// protocolError".
    const fn malformed(reason: &'static str) -> Stop {
        Stop::refused(reason, PROTOCOL_ERROR)
    }

    const fn refused(reason: &'static str, result_code: u8) -> Stop {
        Stop::Reject(LdapReject {
            reason,
            message_id: None,
            result_code,
        })
    }

    /// Attach the ID of the BindRequest being read.
    fn in_bind(self, message_id: u32) -> Stop {
        match self {
            Stop::Reject(reject) => Stop::Reject(LdapReject {
                message_id: Some(message_id),
                ..reject
            }),
            Stop::More => Stop::More,
        }
    }
}

/// Where an element's contents lie in the buffer (absolute offsets). `end` is the
/// declared end, which may lie past the bytes received so far.
#[derive(Debug, Clone, Copy)]
struct Element {
    start: usize,
    end: usize,
}

/// A checked cursor over the bytes received so far, confined to the contents of one
/// element: `pos..end`, where `end` is the declared end of the enclosing element.
/// Reading at or past `end` is malformed (the encloser is too short for what it
/// holds); reading past the received bytes but before `end` is [`Stop::More`].
#[derive(Debug, Clone, Copy)]
struct Reader<'b> {
    buf: &'b [u8],
    pos: usize,
    end: usize,
}

impl<'b> Reader<'b> {
    /// A reader over the whole input, with no enclosing element.
    fn new(buf: &'b [u8]) -> Reader<'b> {
        Reader {
            buf,
            pos: 0,
            end: usize::MAX,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        if self.at_end() {
            return Err(Stop::malformed("missing or truncated element"));
        }
        let b = *self.buf.get(self.pos).ok_or(Stop::More)?;
        // `pos < end <= usize::MAX`: no overflow.
        self.pos += 1;
        Ok(b)
    }

    /// The identifier octet.
    fn tag(&mut self) -> Result<u8, Stop> {
        let tag = self.byte()?;
        // X.690 §8.1.2.4: "For tags with a number greater than or equal to 31, the
        // identifier shall comprise a leading octet followed by one or more
        // subsequent octets." with bits 5 to 1 of the leading octet "encoded as
        // 11111". No LDAP tag needs that form.
        if tag & 0x1f == 0x1f {
            return Err(Stop::malformed("high tag number form"));
        }
        Ok(tag)
    }

    /// The length octets after an identifier; the element must fit in the
    /// enclosing one.
    fn length(&mut self) -> Result<Element, Stop> {
        let first = self.byte()?;
        let len = match first {
            // X.690 §8.1.3.4: "In the short form, the length octets shall consist of
            // a single octet in which bit 8 is zero and bits 7 to 1 encode the number
            // of octets in the contents octets".
            0x00..=0x7f => usize::from(first),
            // X.690 §8.1.3.6.1: indefinite form: "The single octet shall have bit 8
            // set to one, and bits 7 to 1 set to zero." RFC 4511 §5.1 (1): "Only the
            // definite form of length encoding is used."
            0x80 => return Err(Stop::malformed("indefinite length")),
            // X.690 §8.1.3.5: long form, "bits 7 to 1 shall encode the number of
            // subsequent octets in the length octets"; NOTE 2: "In the long form, it
            // is a sender's option whether to use more length octets than the
            // minimum necessary." One to four octets cover any length we accept.
            0x81..=0x84 => {
                let mut len: u32 = 0;
                for _ in 0..(first & 0x7f) {
                    // At most four octets: the shift never loses a set bit.
                    len = (len << 8) | u32::from(self.byte()?);
                }
                usize::try_from(len).map_err(|_| Stop::malformed("length too large"))?
            }
            // X.690 §8.1.3.5 c): "the value 11111111 shall not be used."
            0xff => return Err(Stop::malformed("reserved length octet")),
            _ => return Err(Stop::malformed("more than 4 length octets")),
        };
        let start = self.pos;
        let end = start
            .checked_add(len)
            .ok_or(Stop::malformed("length too large"))?;
        if end > self.end {
            return Err(Stop::malformed("element longer than its enclosing element"));
        }
        Ok(Element { start, end })
    }

    /// An element with the given identifier; another identifier is `wrong`.
    fn expect(&mut self, tag: u8, wrong: &'static str) -> Result<Element, Stop> {
        if self.tag()? != tag {
            return Err(Stop::malformed(wrong));
        }
        self.length()
    }

    /// An element's whole contents (all of them must have arrived); moves past it.
    fn contents(&mut self, e: Element) -> Result<&'b [u8], Stop> {
        let contents = self.buf.get(e.start..e.end).ok_or(Stop::More)?;
        self.pos = e.end;
        Ok(contents)
    }

    /// Move past an element without looking at its contents.
    fn skip(&mut self, e: Element) {
        self.pos = e.end;
    }

    /// A reader over an element's contents.
    fn inside(&self, e: Element) -> Reader<'b> {
        Reader {
            buf: self.buf,
            pos: e.start,
            end: e.end,
        }
    }

    /// RFC 4511 §4: "Because of the implied extensibility, clients and servers MUST
    /// (unless otherwise specified) ignore trailing SEQUENCE components whose tags
    /// they do not recognize." Each must still be a well-formed element.
    fn skip_rest(&mut self) -> Result<(), Stop> {
        // Each turn moves past at least two octets of the enclosing element.
        while !self.at_end() {
            self.tag()?;
            let e = self.length()?;
            self.skip(e);
        }
        Ok(())
    }
}

/// The value of a non-negative INTEGER that fits in 32 bits.
fn unsigned(contents: &[u8]) -> Result<u32, Stop> {
    match contents {
        // X.690 §8.3.1: "The contents octets shall consist of one or more octets."
        [] => return Err(Stop::malformed("empty INTEGER")),
        [first, ..] if first & 0x80 != 0 => return Err(Stop::malformed("negative INTEGER")),
        // X.690 §8.3.2: "If the contents octets of an integer value encoding consist
        // of more than one octet, then the bits of the first octet and bit 8 of the
        // second octet: a) shall not all be ones; and b) shall not all be zero."
        [0, second, ..] if second & 0x80 == 0 => {
            return Err(Stop::malformed("non-minimal INTEGER"))
        }
        _ => {}
    }
    let digits = contents.strip_prefix(&[0]).unwrap_or(contents);
    if digits.len() > 4 {
        return Err(Stop::malformed("INTEGER too large"));
    }
    Ok(digits
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Read the first LDAPMessage at the start of `buf`, which must be a routable
/// BindRequest no longer than `max_len` bytes. Bytes after it are not looked at.
///
/// Grammar (RFC 4511 §4.1.1, §4.2, §4.1.11):
/// ```text
/// LDAPMessage ::= SEQUENCE {
///      messageID       MessageID,               -- INTEGER (0 .. maxInt)
///      protocolOp      CHOICE { bindRequest BindRequest, ... },
///      controls       [0] Controls OPTIONAL }
/// BindRequest ::= [APPLICATION 0] SEQUENCE {
///      version                 INTEGER (1 ..  127),
///      name                    LDAPDN,          -- OCTET STRING, UTF-8
///      authentication          AuthenticationChoice }
/// AuthenticationChoice ::= CHOICE {
///      simple                  [0] OCTET STRING,
///                              -- 1 and 2 reserved
///      sasl                    [3] SaslCredentials,
///      ...  }
/// SaslCredentials ::= SEQUENCE {
///      mechanism               LDAPString,
///      credentials             OCTET STRING OPTIONAL }
/// Controls ::= SEQUENCE OF control Control
/// Control ::= SEQUENCE {
///      controlType             LDAPOID,
///      criticality             BOOLEAN DEFAULT FALSE,
///      controlValue            OCTET STRING OPTIONAL }
/// ```
pub fn parse_bind(buf: &[u8], max_len: usize) -> Sniff<BindRequest, LdapReject> {
    match first_message(buf, max_len) {
        Ok(bind) => Sniff::Done(bind),
        Err(Stop::More) => Sniff::Incomplete,
        Err(Stop::Reject(reject)) => Sniff::Reject(reject),
    }
}

fn first_message(buf: &[u8], max_len: usize) -> Result<BindRequest, Stop> {
    let mut input = Reader::new(buf);
    let message = input.expect(SEQUENCE, "not an LDAPMessage")?;
    // The message starts at offset 0, so its end is its length.
    let message_len = message.end;
    if message_len > max_len {
        return Err(Stop::refused(
            "message longer than the limit",
            UNWILLING_TO_PERFORM,
        ));
    }
    let mut r = input.inside(message);

    let id = r.expect(INTEGER, "messageID is not an INTEGER")?;
    let message_id = unsigned(r.contents(id)?)?;
    if message_id > MAX_INT {
        return Err(Stop::malformed("messageID out of range"));
    }
    // RFC 4511 §4.1.1.1: "The messageID of a request MUST have a non-zero value
    // [...]. The zero value is reserved for the unsolicited notification message."
    if message_id == 0 {
        return Err(Stop::malformed("messageID 0 is reserved"));
    }

    match r.tag()? {
        BIND_REQUEST => {}
        BIND_REQUEST_PRIMITIVE => {
            return Err(Stop::malformed("BindRequest in primitive form").in_bind(message_id))
        }
        // A SearchRequest, StartTLS ExtendedRequest, UnbindRequest, ...: no name to
        // route on. Refused on the tag; its contents are never read.
        _ => {
            return Err(Stop::refused(
                "first message is not a bind",
                UNWILLING_TO_PERFORM,
            ))
        }
    }
    bind_request(buf, &mut r, message_len, message_id).map_err(|stop| stop.in_bind(message_id))
}

/// The BindRequest and what follows it in the LDAPMessage; `r` is positioned just
/// after the BindRequest's identifier.
fn bind_request(
    buf: &[u8],
    r: &mut Reader<'_>,
    message_len: usize,
    message_id: u32,
) -> Result<BindRequest, Stop> {
    let op = r.length()?;
    let mut b = r.inside(op);

    let version = b.expect(INTEGER, "version is not an INTEGER")?;
    let version = unsigned(b.contents(version)?)?;
    // RFC 4511 §4.2: "This document describes version 3 of the protocol. There is no
    // version negotiation. [...] If the server does not support the specified
    // version, it MUST respond with a BindResponse where the resultCode is set to
    // protocolError." LDAPv2 is historic (RFC 3494).
    if version != 3 {
        return Err(Stop::malformed("unsupported LDAP version"));
    }

    let name = b.expect(OCTET_STRING, "bind name is not a primitive OCTET STRING")?;
    let name = b.contents(name)?;

    let auth = match b.tag()? {
        AUTH_SIMPLE => AuthKind::Simple,
        AUTH_SASL => AuthKind::Sasl,
        AUTH_SIMPLE_CONSTRUCTED => return Err(Stop::malformed("simple password is not primitive")),
        _ => {
            return Err(Stop::refused(
                "unsupported authentication choice",
                AUTH_METHOD_NOT_SUPPORTED,
            ))
        }
    };
    let credentials = b.length()?;
    match auth {
        // RFC 4513 §5.1.1: anonymous authentication is "a Bind request with a name
        // value of zero length and specifying the simple authentication choice
        // containing a password value of zero length"; §5.1.2: unauthenticated
        // authentication is a name "of non-zero length" with "a password value of
        // zero length". Neither proves anything; an empty name names no domain.
        AuthKind::Simple if name.is_empty() || credentials.start == credentials.end => {
            return Err(Stop::refused(
                "anonymous bind",
                INAPPROPRIATE_AUTHENTICATION,
            ));
        }
        AuthKind::Sasl if name.is_empty() => {
            return Err(Stop::refused(
                "SASL bind without a name",
                UNWILLING_TO_PERFORM,
            ));
        }
        _ => {}
    }

    // RFC 4511 §4.1.2: "LDAPString ::= OCTET STRING -- UTF-8 encoded".
    let name = std::str::from_utf8(name).map_err(|_| Stop::malformed("bind name is not UTF-8"))?;
    let (domain, user) = bind_domain(name).ok_or(Stop::refused(
        "no domain in bind name",
        UNWILLING_TO_PERFORM,
    ))?;

    if auth == AuthKind::Sasl {
        let mut sasl = b.inside(credentials);
        let mechanism = sasl.expect(OCTET_STRING, "SASL mechanism is not an OCTET STRING")?;
        sasl.skip(mechanism);
        // credentials OCTET STRING OPTIONAL, then any unknown components.
        sasl.skip_rest()?;
    }
    b.skip(credentials);
    b.skip_rest()?;

    r.skip(op);
    if !r.at_end() {
        let tag = r.tag()?;
        let e = r.length()?;
        if tag == CONTROLS {
            controls(r.inside(e))?;
        }
        r.skip(e);
        r.skip_rest()?;
    }

    if buf.len() < message_len {
        return Err(Stop::More);
    }
    Ok(BindRequest {
        message_len,
        message_id,
        version: 3,
        name: name.to_owned(),
        domain,
        user,
        auth,
    })
}

/// Check the shape of `controls [0] Controls` without reading the values: each is a
/// SEQUENCE starting with its controlType.
fn controls(mut c: Reader<'_>) -> Result<(), Stop> {
    // Each turn moves past at least two octets of the controls element.
    while !c.at_end() {
        let control = c.expect(SEQUENCE, "control is not a SEQUENCE")?;
        c.inside(control)
            .expect(OCTET_STRING, "controlType is not an OCTET STRING")?;
        c.skip(control);
    }
    Ok(())
}

/// The routing domain (lower-case) and the user in a bind name, or `None` when the
/// name holds no usable domain.
///
/// Forms, tried in this order:
/// - `domain\user` (a down-level logon name): the part before the first `\` holds no
///   `=` (in a DN the first attribute type and `=` come before any escape);
/// - an RFC 4514 distinguished name (it contains `=`): every `DC` (domainComponent)
///   value, in order, joined with `.`; the user is the first `CN` value, or else the
///   first attribute value;
/// - `user@domain` (split at the last `@`).
///
/// The domain must be a DNS name: non-empty labels of ASCII letters, digits, `-` and
/// `_`, at most 63 octets each and 253 in all. The user must not be empty.
pub fn bind_domain(name: &str) -> Option<(String, String)> {
    if let Some((domain, user)) = name.split_once('\\') {
        if !domain.contains('=') {
            return routing_pair(domain, user.as_bytes());
        }
    }
    if name.contains('=') {
        return dn_domain(name.as_bytes());
    }
    let (user, domain) = name.rsplit_once('@')?;
    routing_pair(domain, user.as_bytes())
}

fn routing_pair(domain: &str, user: &[u8]) -> Option<(String, String)> {
    let domain = domain_key(domain)?;
    let user = String::from_utf8(user.to_vec()).ok()?;
    (!user.is_empty()).then_some((domain, user))
}

/// A domain name as a routing key: lower-case, labels checked.
fn domain_key(raw: &str) -> Option<String> {
    // RFC 1035 §2.3.4: labels of 63 octets or less, names of 255 octets or less
    // (253 characters in text form without the root dot).
    if raw.is_empty() || raw.len() > 253 {
        return None;
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    raw.split('.')
        .all(label_ok)
        .then(|| raw.to_ascii_lowercase())
}

/// What an attribute type in a DN means to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttributeType {
    DomainComponent,
    CommonName,
    Other,
}

impl AttributeType {
    /// RFC 4514 §3: "attributeType = descr / numericoid"; descriptors are
    /// case-insensitive (RFC 4512 §1.4).
    fn classify(name: &[u8]) -> AttributeType {
        if name.eq_ignore_ascii_case(b"dc")
            || name.eq_ignore_ascii_case(b"domainComponent")
            || name == b"0.9.2342.19200300.100.1.25"
        {
            AttributeType::DomainComponent
        } else if name.eq_ignore_ascii_case(b"cn")
            || name.eq_ignore_ascii_case(b"commonName")
            || name == b"2.5.4.3"
        {
            AttributeType::CommonName
        } else {
            AttributeType::Other
        }
    }
}

/// The domain and user of a distinguished name in string form.
///
/// Grammar (RFC 4514 §3):
/// ```text
/// distinguishedName = [ relativeDistinguishedName
///     *( COMMA relativeDistinguishedName ) ]
/// relativeDistinguishedName = attributeTypeAndValue
///     *( PLUS attributeTypeAndValue )
/// attributeTypeAndValue = attributeType EQUALS attributeValue
/// attributeType = descr / numericoid
/// attributeValue = string / hexstring
/// string =   [ ( leadchar / pair ) [ *( stringchar / pair )
///    ( trailchar / pair ) ] ]
/// pair = ESC ( ESC / special / hexpair )
/// special = escaped / SPACE / SHARP / EQUALS
/// escaped = DQUOTE / PLUS / COMMA / SEMI / LANGLE / RANGLE
/// hexstring = SHARP 1*hexpair
/// ```
/// RFC 4514 §3: "Implementations MAY recognize other DN string representations."
/// Older clients write RFC 1779/2253 forms, so these are accepted too: spaces around
/// `,` `;` `+` `=` (RFC 2253 §4: "Implementations [...] MUST also allow whitespace
/// characters to be present on either side of the comma or semicolon"), `;` between
/// RDNs, quoted values (RFC 1779 §2.3), and an `OID.` prefix on numeric types.
fn dn_domain(dn: &[u8]) -> Option<(String, String)> {
    let mut text = DnText { s: dn, pos: 0 };
    let mut labels: Vec<Vec<u8>> = Vec::new();
    let mut common_name: Option<Vec<u8>> = None;
    let mut first_value: Option<Vec<u8>> = None;
    // Each turn consumes at least the `=` of one attributeTypeAndValue.
    loop {
        text.skip_spaces();
        let kind = text.attribute_type()?;
        text.skip_spaces();
        if text.next()? != b'=' {
            return None;
        }
        text.skip_spaces();
        let value = text.attribute_value()?;
        match kind {
            AttributeType::DomainComponent => labels.push(value.clone()),
            AttributeType::CommonName if common_name.is_none() => common_name = Some(value.clone()),
            _ => {}
        }
        if first_value.is_none() {
            first_value = Some(value);
        }
        match text.next() {
            None => break,
            // RDN separators (`,`, and `;` from RFC 2253 §4) and the `+` between
            // the values of a multi-valued RDN: all DC values count, in order.
            Some(b',' | b';' | b'+') => {}
            Some(_) => return None,
        }
    }
    if labels.is_empty() {
        return None;
    }
    let domain = String::from_utf8(labels.join(&b'.')).ok()?;
    let user = common_name.or(first_value)?;
    routing_pair(&domain, &user)
}

/// A checked cursor over a DN string.
struct DnText<'s> {
    s: &'s [u8],
    pos: usize,
}

impl<'s> DnText<'s> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        // `pos < s.len()`: no overflow.
        self.pos += 1;
        Some(b)
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
    }

    /// RFC 4512 §1.4: `descr = keystring`, `keystring = leadkeychar *keychar`,
    /// `leadkeychar = ALPHA`, `keychar = ALPHA / DIGIT / HYPHEN`,
    /// `numericoid = number 1*( DOT number )`.
    fn attribute_type(&mut self) -> Option<AttributeType> {
        let start = self.pos;
        match self.peek()? {
            b if b.is_ascii_alphabetic() => {
                self.skip_while(|b| b.is_ascii_alphanumeric() || b == b'-');
                let descr = self.s.get(start..self.pos)?;
                // RFC 1779 §2.3: `| "OID." <oid> | "oid." <oid>`.
                if descr.eq_ignore_ascii_case(b"oid") && self.peek() == Some(b'.') {
                    self.pos += 1;
                    return self.numericoid().map(AttributeType::classify);
                }
                Some(AttributeType::classify(descr))
            }
            b if b.is_ascii_digit() => self.numericoid().map(AttributeType::classify),
            _ => None,
        }
    }

    fn numericoid(&mut self) -> Option<&'s [u8]> {
        let start = self.pos;
        loop {
            let digits = self.pos;
            self.skip_while(|b| b.is_ascii_digit());
            if self.pos == digits {
                return None;
            }
            if self.peek() != Some(b'.') {
                break;
            }
            self.pos += 1;
        }
        self.s.get(start..self.pos)
    }

    /// An attribute value, unescaped, up to (not including) the next separator.
    fn attribute_value(&mut self) -> Option<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted_value(),
            Some(b'#') => self.hex_value(),
            _ => self.string_value(),
        }
    }

    /// RFC 4514 `string`. Unescaped spaces at the end are insignificant (leading
    /// ones were skipped by the caller); an escaped space is kept.
    fn string_value(&mut self) -> Option<Vec<u8>> {
        let mut value = Vec::new();
        let mut significant = 0;
        loop {
            match self.peek() {
                None | Some(b',' | b';' | b'+') => break,
                Some(b'\\') => {
                    self.pos += 1;
                    value.push(self.pair()?);
                    significant = value.len();
                }
                // RFC 4514 §3: SUTF1 excludes "%x00 / %x22 / %x2B / %x2C / %x3B /
                // %x3C / %x3E / %x5C"; those must be escaped.
                Some(0 | b'"' | b'<' | b'>') => return None,
                Some(b' ') => {
                    self.pos += 1;
                    value.push(b' ');
                }
                Some(b) => {
                    self.pos += 1;
                    value.push(b);
                    significant = value.len();
                }
            }
        }
        value.truncate(significant);
        Some(value)
    }

    /// RFC 1779 §2.3: `| <quotation> *( <quotechar> | <pair> ) <quotation>`, where
    /// a quotechar is anything but `\` and `"`.
    fn quoted_value(&mut self) -> Option<Vec<u8>> {
        self.pos += 1; // the opening quote, seen by the caller
        let mut value = Vec::new();
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => value.push(self.pair()?),
                b => value.push(b),
            }
        }
        self.skip_spaces();
        Some(value)
    }

    /// RFC 4514 §2.4: `#` and the hex of the value's BER encoding. A BER string
    /// (OCTET STRING, UTF8String, PrintableString, IA5String) in short form gives
    /// its contents; any other value yields its raw octets.
    fn hex_value(&mut self) -> Option<Vec<u8>> {
        self.pos += 1; // the `#`, seen by the caller
        let mut octets = Vec::new();
        while self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
            let high = self.next().and_then(hex_digit)?;
            let low = self.next().and_then(hex_digit)?;
            octets.push((high << 4) | low);
        }
        self.skip_spaces();
        match octets.as_slice() {
            [] => None,
            [0x04 | 0x0c | 0x13 | 0x16, len, contents @ ..]
                if usize::from(*len) == contents.len() && *len < 0x80 =>
            {
                Some(contents.to_vec())
            }
            _ => Some(octets),
        }
    }

    /// After a `\`: RFC 4514 `pair = ESC ( ESC / special / hexpair )`.
    fn pair(&mut self) -> Option<u8> {
        match self.next()? {
            b @ (b'\\' | b'"' | b'+' | b',' | b';' | b'<' | b'>' | b' ' | b'#' | b'=') => Some(b),
            high => {
                let high = hex_digit(high)?;
                let low = self.next().and_then(hex_digit)?;
                Some((high << 4) | low)
            }
        }
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Append a BindResponse (RFC 4511 §4.2.2) to `out`:
/// ```text
/// BindResponse ::= [APPLICATION 1] SEQUENCE {
///      COMPONENTS OF LDAPResult,
///      serverSaslCreds    [7] OCTET STRING OPTIONAL }
/// LDAPResult ::= SEQUENCE {
///      resultCode         ENUMERATED { ... },
///      matchedDN          LDAPDN,
///      diagnosticMessage  LDAPString,
///      referral           [3] Referral OPTIONAL }
/// ```
/// with an empty matchedDN. `diagnostic` is cut to 1024 bytes at a character
/// boundary.
pub fn write_bind_response(message_id: u32, result_code: u8, diagnostic: &str, out: &mut Vec<u8>) {
    write_result(
        out,
        message_id,
        BIND_RESPONSE,
        result_code,
        diagnostic,
        None,
    );
}

/// Append a Notice of Disconnection (RFC 4511 §4.4.1) to `out`: the answer to a
/// first message that cannot be answered with a BindResponse. "This notification
/// is an ExtendedResponse message. Its responseName is 1.3.6.1.4.1.1466.20036, its
/// responseValue field is absent, and the resultCode is used to indicate the reason
/// for the disconnection." Its messageID is 0 (§4.1.1.1).
pub fn write_notice_of_disconnection(result_code: u8, diagnostic: &str, out: &mut Vec<u8>) {
    write_result(
        out,
        0,
        EXTENDED_RESPONSE,
        result_code,
        diagnostic,
        Some((RESPONSE_NAME, NOTICE_OF_DISCONNECTION)),
    );
}

/// An LDAPMessage whose protocolOp is an LDAPResult with an optional trailing
/// element. DER-style minimal lengths and integers.
fn write_result(
    out: &mut Vec<u8>,
    message_id: u32,
    op_tag: u8,
    result_code: u8,
    diagnostic: &str,
    trailer: Option<(u8, &[u8])>,
) {
    let mut op = Vec::new();
    push_unsigned(&mut op, ENUMERATED, u32::from(result_code));
    push_element(&mut op, OCTET_STRING, b"");
    push_element(
        &mut op,
        OCTET_STRING,
        clip(diagnostic, MAX_DIAGNOSTIC).as_bytes(),
    );
    if let Some((tag, contents)) = trailer {
        push_element(&mut op, tag, contents);
    }
    let mut message = Vec::new();
    push_unsigned(&mut message, INTEGER, message_id);
    push_element(&mut message, op_tag, &op);
    push_element(out, SEQUENCE, &message);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    // Offset 0 is always a boundary, so the loop stops.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn push_element(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    // X.690 §10.1 (DER): "The definite form of length encoding shall be used,
    // encoded in the minimum number of octets."
    match u8::try_from(contents.len()) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let be = (contents.len() as u64).to_be_bytes();
            let skip = be.iter().take_while(|&&b| b == 0).count();
            let octets = be.get(skip..).unwrap_or_default();
            // At most 8 octets: fits in bits 7 to 1.
            out.push(0x80 | octets.len() as u8);
            out.extend_from_slice(octets);
        }
    }
    out.extend_from_slice(contents);
}

/// A non-negative INTEGER or ENUMERATED in the fewest octets (X.690 §8.3.2).
fn push_unsigned(out: &mut Vec<u8>, tag: u8, value: u32) {
    let be = u64::from(value).to_be_bytes();
    // The top four octets of a widened u32 are zero: the first non-zero one (or the
    // last octet for 0) is at index 4 or later, so one step back stays in bounds and
    // supplies the 0x00 that keeps a value with bit 8 set positive.
    let first = be.iter().position(|&b| b != 0).unwrap_or(be.len() - 1);
    let first = match be.get(first) {
        Some(b) if b & 0x80 != 0 => first.saturating_sub(1),
        _ => first,
    };
    push_element(out, tag, be.get(first..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::tests::for_each_mutation;

    const MAX: usize = 16 * 1024;

    // ---- a tiny BER encoder, independent of the one above ----

    fn enc(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = contents.len();
        if n < 0x80 {
            out.push(n as u8);
        } else if n < 0x100 {
            out.extend([0x81, n as u8]);
        } else {
            out.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        out.extend_from_slice(contents);
        out
    }

    /// With a long-form length of exactly `octets` octets (non-minimal allowed).
    fn enc_long(tag: u8, contents: &[u8], octets: usize) -> Vec<u8> {
        let mut out = vec![tag, 0x80 | octets as u8];
        let be = (contents.len() as u64).to_be_bytes();
        out.extend_from_slice(&be[8 - octets..]);
        out.extend_from_slice(contents);
        out
    }

    fn int(v: u32) -> Vec<u8> {
        let mut bytes = v.to_be_bytes().to_vec();
        while bytes.len() > 1 && bytes[0] == 0 && bytes[1] & 0x80 == 0 {
            bytes.remove(0);
        }
        if bytes[0] & 0x80 != 0 {
            bytes.insert(0, 0);
        }
        enc(0x02, &bytes)
    }

    fn message(id: u32, op: &[u8]) -> Vec<u8> {
        enc(0x30, &[int(id), op.to_vec()].concat())
    }

    fn bind_op(version: u32, name: &[u8], auth: &[u8]) -> Vec<u8> {
        enc(
            0x60,
            &[int(version), enc(0x04, name), auth.to_vec()].concat(),
        )
    }

    fn simple_bind(id: u32, name: &str, password: &[u8]) -> Vec<u8> {
        message(id, &bind_op(3, name.as_bytes(), &enc(0x80, password)))
    }

    fn sasl_bind(id: u32, name: &str, mechanism: &str, credentials: Option<&[u8]>) -> Vec<u8> {
        let mut sasl = enc(0x04, mechanism.as_bytes());
        if let Some(c) = credentials {
            sasl.extend(enc(0x04, c));
        }
        message(id, &bind_op(3, name.as_bytes(), &enc(0xa3, &sasl)))
    }

    // ---- captured vectors ----

    /// `ldapwhoami -x -H ldap://127.0.0.1:38901 -D 'CN=ldap-guest,DC=dvl-ckl2,DC=net'
    /// -w pw` (OpenLDAP 2.5.13, Debian `ldap-utils` 2.5.13+dfsg-5), the first bytes
    /// received by a Python listener on 127.0.0.1.
    const LDAPWHOAMI_DN: &[u8] = b"\x30\x2e\x02\x01\x01\x60\x29\x02\x01\x03\x04\x20\
CN=ldap-guest,DC=dvl-ckl2,DC=net\x80\x02pw";

    /// Same client, `-D 'branch-b.dvl-ckl2.net\ldap-guest' -w pw`.
    const LDAPWHOAMI_DOMAIN: &[u8] = b"\x30\x2e\x02\x01\x01\x60\x29\x02\x01\x03\x04\x20\
branch-b.dvl-ckl2.net\\ldap-guest\x80\x02pw";

    /// Same client, `-e ppolicy -D 'CN=ldap-guest,DC=dvl-ckl2,DC=net' -w pw`: the bind
    /// carries the password policy request control (1.3.6.1.4.1.42.2.27.8.5.1).
    const LDAPWHOAMI_PPOLICY: &[u8] = b"\x30\x4d\x02\x01\x01\x60\x29\x02\x01\x03\x04\x20\
CN=ldap-guest,DC=dvl-ckl2,DC=net\x80\x02pw\
\xa0\x1d\x30\x1b\x04\x191.3.6.1.4.1.42.2.27.8.5.1";

    /// Same client, `-Y EXTERNAL` with no SASL plugin installed: it gave up and sent
    /// an UnbindRequest (`[APPLICATION 2] NULL`) as its first message.
    const LDAPWHOAMI_UNBIND: &[u8] = b"\x30\x05\x02\x01\x01\x42\x00";

    fn done(buf: &[u8]) -> BindRequest {
        match parse_bind(buf, MAX) {
            Sniff::Done(bind) => bind,
            other => panic!("{buf:02x?}: {other:?}"),
        }
    }

    fn rejected(buf: &[u8], reason: &str) -> LdapReject {
        match parse_bind(buf, MAX) {
            Sniff::Reject(r) => {
                assert_eq!(r.reason, reason, "{buf:02x?}");
                r
            }
            other => panic!("{buf:02x?}: {other:?}"),
        }
    }

    /// Every strict prefix of a valid message is Incomplete, the whole is Done.
    fn check_all_prefixes(msg: &[u8]) {
        for n in 0..msg.len() {
            match parse_bind(&msg[..n], MAX) {
                Sniff::Incomplete => {}
                other => panic!("prefix {:02x?}: {other:?}", &msg[..n]),
            }
        }
        assert_eq!(done(msg).message_len, msg.len());
    }

    fn valid_messages() -> Vec<Vec<u8>> {
        let long_name = format!("CN={},DC=dvl-ckl2,DC=net", "x".repeat(300));
        vec![
            LDAPWHOAMI_DN.to_vec(),
            LDAPWHOAMI_DOMAIN.to_vec(),
            LDAPWHOAMI_PPOLICY.to_vec(),
            simple_bind(7, "user@dvl-ckl2.net", b"secret"),
            simple_bind(MAX_INT, "cn=x, dc=A ,DC=b", b"pw"),
            simple_bind(128, &long_name, b"pw"),
            sasl_bind(2, "dvl-ckl2.net\\ldap-guest", "PLAIN", Some(b"\0u\0p")),
            sasl_bind(3, "CN=u,DC=a", "EXTERNAL", None),
            // Non-minimal long-form lengths everywhere (Windows clients do this).
            enc_long(
                0x30,
                &[
                    int(5),
                    enc_long(
                        0x60,
                        &[
                            int(3),
                            enc_long(0x04, b"a.b\\c", 4),
                            enc_long(0x80, b"p", 2),
                        ]
                        .concat(),
                        4,
                    ),
                ]
                .concat(),
                4,
            ),
            // Unknown trailing components in the BindRequest, the SASL credentials
            // and the LDAPMessage are ignored (RFC 4511 §4).
            message(
                9,
                &enc(
                    0x60,
                    &[
                        int(3),
                        enc(0x04, b"x@y.z"),
                        enc(
                            0xa3,
                            &[enc(0x04, b"M"), enc(0x04, b""), enc(0x85, b"?")].concat(),
                        ),
                        enc(0x8f, b"future"),
                    ]
                    .concat(),
                ),
            ),
            {
                let controls = enc(
                    0xa0,
                    &[
                        enc(0x30, &enc(0x04, b"1.2.3")),
                        enc(
                            0x30,
                            &[enc(0x04, b"1.2.4"), vec![0x01, 0x01, 0xff], enc(0x04, b"v")]
                                .concat(),
                        ),
                    ]
                    .concat(),
                );
                let op = bind_op(3, b"DC=a", &enc(0x80, b"pw"));
                enc(0x30, &[int(10), op, controls, enc(0x81, b"later")].concat())
            },
        ]
    }

    #[test]
    fn captured_ldapwhoami_binds() {
        let bind = done(LDAPWHOAMI_DN);
        assert_eq!(
            bind,
            BindRequest {
                message_len: LDAPWHOAMI_DN.len(),
                message_id: 1,
                version: 3,
                name: "CN=ldap-guest,DC=dvl-ckl2,DC=net".into(),
                domain: "dvl-ckl2.net".into(),
                user: "ldap-guest".into(),
                auth: AuthKind::Simple,
            }
        );
        let bind = done(LDAPWHOAMI_DOMAIN);
        assert_eq!(bind.name, "branch-b.dvl-ckl2.net\\ldap-guest");
        assert_eq!(
            (bind.domain.as_str(), bind.user.as_str()),
            ("branch-b.dvl-ckl2.net", "ldap-guest")
        );
        let bind = done(LDAPWHOAMI_PPOLICY);
        assert_eq!(bind.message_len, LDAPWHOAMI_PPOLICY.len());
        assert_eq!(bind.domain, "dvl-ckl2.net");
        let r = rejected(LDAPWHOAMI_UNBIND, "first message is not a bind");
        assert_eq!(r.message_id, None);
    }

    #[test]
    fn prefixes_are_incomplete() {
        for msg in valid_messages() {
            check_all_prefixes(&msg);
        }
    }

    #[test]
    fn trailing_bytes_are_not_part_of_the_message() {
        let mut buf = LDAPWHOAMI_DN.to_vec();
        buf.extend_from_slice(LDAPWHOAMI_UNBIND);
        buf.extend_from_slice(b"\xff\xff");
        assert_eq!(done(&buf).message_len, LDAPWHOAMI_DN.len());
    }

    #[test]
    fn built_binds() {
        let bind = done(&simple_bind(42, "cn=x, dc=A ,DC=b", b"pw"));
        assert_eq!(
            (bind.message_id, bind.domain.as_str(), bind.user.as_str()),
            (42, "a.b", "x")
        );
        assert_eq!(bind.name, "cn=x, dc=A ,DC=b");
        let bind = done(&simple_bind(1, "user@DVL-ckl2.net", b"pw"));
        assert_eq!(
            (bind.domain.as_str(), bind.user.as_str()),
            ("dvl-ckl2.net", "user")
        );
        let bind = done(&simple_bind(
            1,
            r"CN=Smith\, J\C3\A9r\C3\B4me,DC=dvl-ckl2,DC=net",
            b"pw",
        ));
        assert_eq!(
            (bind.domain.as_str(), bind.user.as_str()),
            ("dvl-ckl2.net", "Smith, Jérôme")
        );
        let bind = done(&sasl_bind(
            5,
            "CN=ldap-guest,DC=dvl-ckl2,DC=net",
            "DIGEST-MD5",
            None,
        ));
        assert_eq!(bind.auth, AuthKind::Sasl);
        assert_eq!(bind.domain, "dvl-ckl2.net");
        let bind = done(&simple_bind(MAX_INT, "a.b\\c", b"pw"));
        assert_eq!(bind.message_id, MAX_INT);
    }

    #[test]
    fn bind_name_forms() {
        let ok = |name: &str, domain: &str, user: &str| {
            assert_eq!(
                bind_domain(name),
                Some((domain.to_owned(), user.to_owned())),
                "{name:?}"
            );
        };
        ok(
            "branch-b.dvl-ckl2.net\\ldap-guest",
            "branch-b.dvl-ckl2.net",
            "ldap-guest",
        );
        ok(
            "apps.dvl-ckl2.net\\contacts",
            "apps.dvl-ckl2.net",
            "contacts",
        );
        ok("innovaphone.com\\ckl", "innovaphone.com", "ckl");
        ok("Dvl-CKL2.net\\a\\b", "dvl-ckl2.net", "a\\b");
        ok("user@dvl-ckl2.net", "dvl-ckl2.net", "user");
        ok("a@b@Example.COM", "example.com", "a@b");
        ok(
            "CN=ldap-guest,DC=dvl-ckl2,DC=net",
            "dvl-ckl2.net",
            "ldap-guest",
        );
        ok("CN=ckl, DC=innovaphone, DC=com", "innovaphone.com", "ckl");
        ok("cn=x, dc=A ,DC=b", "a.b", "x");
        ok("  cn = x ,  dc = A  ;  Dc=B  ", "a.b", "x");
        ok("CN=x;DC=a;DC=b", "a.b", "x");
        ok(
            "uid=jdoe+CN=John Doe,OU=People,DC=Example,DC=COM",
            "example.com",
            "John Doe",
        );
        ok(
            "UID=jdoe,OU=People,DC=example,DC=com",
            "example.com",
            "jdoe",
        );
        ok("CN=x,DC=a+DC=b,DC=c", "a.b.c", "x");
        ok("CN=x,DC=innovaphone.com", "innovaphone.com", "x");
        ok(
            "domainComponent=a,0.9.2342.19200300.100.1.25=b,commonName=u",
            "a.b",
            "u",
        );
        ok(
            "OID.2.5.4.3=u,oid.0.9.2342.19200300.100.1.25=a,dc=b",
            "a.b",
            "u",
        );
        ok("DC=a,DC=b", "a.b", "a");
        // RFC 4514 §3 escapes.
        ok(r"CN=Smith\, John,DC=a,DC=b", "a.b", "Smith, John");
        ok(r"CN=Smith\2C John,DC=a,DC=b", "a.b", "Smith, John");
        ok(r"CN=Smith\2c John,DC=a,DC=b", "a.b", "Smith, John");
        ok(
            r#"CN=\"q\" \+ \; \< \> \= \# \\,DC=a,DC=b"#,
            "a.b",
            r#""q" + ; < > = # \"#,
        );
        ok(r"CN=\#lead,DC=a", "a", "#lead");
        ok(r"CN=x#y=z,DC=a", "a", "x#y=z");
        ok(r"CN=\ both\ ,DC=a", "a", " both ");
        ok(r"CN=trail  \ ,DC=a", "a", "trail   ");
        ok(r"CN=trail   ,DC=a", "a", "trail");
        ok(r"CN=Lu\C4\8Di\C4\87,DC=a", "a", "Lučić");
        ok("CN=Lučić,DC=a", "a", "Lučić");
        ok(r"CN=x,DC=a\2Eb", "a.b", "x");
        // RFC 1779 quoted values and RFC 4514 §2.4 hexstrings.
        ok(r#"CN="Smith, John" ,DC=a,DC=b"#, "a.b", "Smith, John");
        ok(r#"CN="say \"hi\"",DC=a"#, "a", r#"say "hi""#);
        ok("CN=u,DC=#16036e6574", "net", "u");
        ok("CN=#0c0175,DC=a", "a", "u");
    }

    #[test]
    fn bind_names_without_a_domain() {
        for name in [
            "",
            "user",
            "\\user",
            "dom\\",
            "@dom",
            "user@",
            "user@dom ain",
            "user@dom..ain",
            "user@dom.ain.",
            "user@dvl-ckl2.net/branch-b",
            "CN=x",
            "CN=x,OU=y,O=z",
            "DC=",
            "CN=x,DC=",
            "CN=x,DC=a,,DC=b",
            "CN=x,DC=a,",
            "CN=x,DC=a.,DC=b",
            "CN=x,DC=a b",
            "dc=münchen,dc=de",
            "CN=,DC=a",
            "=x,DC=a",
            "CN x,DC=a",
            "C N=x,DC=a",
            "1.=x,DC=a",
            r"CN=a\x,DC=b",
            r"CN=a\4,DC=b",
            r"CN=a\,DC=b\",
            r"CN=a\C3,DC=b",
            "CN=a<b,DC=c",
            "CN=a\"b,DC=c",
            "CN=a\0b,DC=c",
            "CN=\"unterminated,DC=a",
            "CN=\"q\"x,DC=a",
            "CN=#,DC=a",
            "CN=#0,DC=a",
            "CN=u,DC=#1603",
            "CN=u,DC=#ff",
        ] {
            assert_eq!(bind_domain(name), None, "{name:?}");
        }
        let long = format!("CN=u,DC={}", "a".repeat(64));
        assert_eq!(bind_domain(&long), None);
        let long = format!("CN=u{}", ",DC=abc".repeat(64));
        assert_eq!(bind_domain(&long), None);
    }

    #[test]
    fn malformed_ber() {
        let bind = simple_bind(1, "a.b\\c", b"pw");
        // Indefinite lengths.
        rejected(&[0x30, 0x80], "indefinite length");
        let op = [int(3), enc(0x04, b"a.b\\c"), enc(0x80, b"p")].concat();
        let indefinite_op = [&[0x60, 0x80][..], &op, &[0, 0]].concat();
        let r = rejected(
            &enc(0x30, &[int(1), indefinite_op].concat()),
            "indefinite length",
        );
        assert_eq!(r.message_id, Some(1));
        // Long form with more than four octets, and the reserved 0xff.
        rejected(&[0x30, 0x85, 0, 0, 0, 0, 0x10], "more than 4 length octets");
        rejected(&[0x30, 0x85], "more than 4 length octets");
        rejected(&[0x30, 0xff], "reserved length octet");
        // High tag numbers: outer, messageID, protocolOp.
        rejected(&[0x1f], "high tag number form");
        rejected(&[0x3f, 0x81, 0x00], "high tag number form");
        rejected(&[0x30, 0x05, 0x1f], "high tag number form");
        rejected(
            &[0x30, 0x05, 0x02, 0x01, 0x01, 0x7f],
            "high tag number form",
        );
        // An element longer than the one enclosing it, even before its bytes came.
        rejected(
            &[0x30, 0x03, 0x02, 0x05],
            "element longer than its enclosing element",
        );
        let mut short = bind.clone();
        short[6] += 1; // BindRequest one byte longer than the LDAPMessage allows
        rejected(&short[..7], "element longer than its enclosing element");
        // The enclosing element ends before the next component.
        let no_auth = message(1, &enc(0x60, &[int(3), enc(0x04, b"a\\b")].concat()));
        rejected(&no_auth, "missing or truncated element");
        rejected(&enc(0x30, &[0x02]), "missing or truncated element");
        // Not an LDAPMessage (a TLS ClientHello on the plain port, HTTP).
        rejected(b"\x16\x03\x01\x02\x00\x01", "not an LDAPMessage");
        rejected(b"GET / HTTP/1.1\r\n", "not an LDAPMessage");
        // Constructed strings (RFC 4511 §5.1 (2)).
        let constructed_name = enc(0x24, &enc(0x04, b"a\\b"));
        let msg = message(
            1,
            &enc(0x60, &[int(3), constructed_name, enc(0x80, b"p")].concat()),
        );
        rejected(&msg, "bind name is not a primitive OCTET STRING");
        let msg = message(1, &bind_op(3, b"a\\b", &enc(0xa0, &enc(0x04, b"p"))));
        rejected(&msg, "simple password is not primitive");
        rejected(
            &message(1, &enc(0x40, b"")),
            "BindRequest in primitive form",
        );
        // Controls.
        let op = bind_op(3, b"a\\b", &enc(0x80, b"p"));
        let msg = enc(
            0x30,
            &[int(1), op.clone(), enc(0xa0, &enc(0x04, b"x"))].concat(),
        );
        rejected(&msg, "control is not a SEQUENCE");
        let msg = enc(0x30, &[int(1), op, enc(0xa0, &enc(0x30, &int(1)))].concat());
        rejected(&msg, "controlType is not an OCTET STRING");
        // SASL credentials.
        let msg = message(1, &bind_op(3, b"a\\b", &enc(0xa3, &int(1))));
        rejected(&msg, "SASL mechanism is not an OCTET STRING");
    }

    #[test]
    fn length_past_max_len_is_refused_before_the_bytes() {
        let r = match parse_bind(&[0x30, 0x84, 0x00, 0x10, 0x00, 0x00], 4096) {
            Sniff::Reject(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (r.reason, r.message_id),
            ("message longer than the limit", None)
        );
        assert!(matches!(
            parse_bind(&[0x30, 0x82, 0x10, 0x00], 4096),
            Sniff::Reject(_)
        ));
        assert!(matches!(
            parse_bind(&[0x30, 0x82, 0x0f], 4096),
            Sniff::Incomplete
        ));
        let msg = LDAPWHOAMI_DN;
        assert!(matches!(parse_bind(msg, msg.len()), Sniff::Done(_)));
        assert!(matches!(
            parse_bind(&msg[..2], msg.len() - 1),
            Sniff::Reject(_)
        ));
        assert!(matches!(parse_bind(&[0x30, 0x00], 1), Sniff::Reject(_)));
    }

    #[test]
    fn message_ids() {
        let with_id = |id: &[u8]| {
            let op = bind_op(3, b"a\\b", &enc(0x80, b"p"));
            enc(0x30, &[enc(0x02, id), op].concat())
        };
        rejected(&with_id(&[0]), "messageID 0 is reserved");
        rejected(&with_id(&[]), "empty INTEGER");
        rejected(&with_id(&[0xff]), "negative INTEGER");
        rejected(&with_id(&[0x00, 0x01]), "non-minimal INTEGER");
        rejected(&with_id(&[0x00, 0x80, 0, 0, 0]), "messageID out of range");
        rejected(&with_id(&[0x01, 0, 0, 0, 0]), "INTEGER too large");
        assert_eq!(done(&with_id(&[0x00, 0x80])).message_id, 128);
        assert_eq!(
            done(&with_id(&[0x7f, 0xff, 0xff, 0xff])).message_id,
            MAX_INT
        );
        let r = rejected(
            &enc(0x30, &[0x04, 0x01, 0x01]),
            "messageID is not an INTEGER",
        );
        assert_eq!(r.message_id, None);
    }

    #[test]
    fn semantic_rejects_carry_the_message_id() {
        let check = |msg: &[u8], reason: &str, code: u8| {
            let r = rejected(msg, reason);
            assert_eq!((r.message_id, r.result_code), (Some(77), code), "{reason}");
        };
        for version in [1, 2, 4, 127, 300] {
            let msg = message(77, &bind_op(version, b"a\\b", &enc(0x80, b"pw")));
            check(&msg, "unsupported LDAP version", PROTOCOL_ERROR);
        }
        let anonymous = INAPPROPRIATE_AUTHENTICATION;
        check(&simple_bind(77, "", b""), "anonymous bind", anonymous);
        check(
            &simple_bind(77, "CN=u,DC=a", b""),
            "anonymous bind",
            anonymous,
        );
        check(&simple_bind(77, "", b"pw"), "anonymous bind", anonymous);
        // Decided before the password arrives.
        let anon = simple_bind(77, "", b"pw");
        check(&anon[..anon.len() - 2], "anonymous bind", anonymous);
        let no_name = UNWILLING_TO_PERFORM;
        check(
            &sasl_bind(77, "", "EXTERNAL", None),
            "SASL bind without a name",
            no_name,
        );
        check(
            &simple_bind(77, "CN=u,OU=x", b"pw"),
            "no domain in bind name",
            no_name,
        );
        check(
            &simple_bind(77, "ldap-guest", b"pw"),
            "no domain in bind name",
            no_name,
        );
        let msg = message(77, &bind_op(3, b"CN=\xff,DC=a", &enc(0x80, b"pw")));
        check(&msg, "bind name is not UTF-8", PROTOCOL_ERROR);
        for tag in [0x81, 0x82, 0xa1, 0xa2, 0x83, 0x04] {
            let msg = message(77, &bind_op(3, b"a\\b", &enc(tag, b"")));
            check(
                &msg,
                "unsupported authentication choice",
                AUTH_METHOD_NOT_SUPPORTED,
            );
        }
    }

    #[test]
    fn first_message_that_is_not_a_bind() {
        // SearchRequest [APPLICATION 3], StartTLS ExtendedRequest [APPLICATION 23],
        // UnbindRequest [APPLICATION 2], and a BindResponse. Refused on the tag.
        for op_tag in [0x63, 0x77, 0x42, 0x61, 0x30, 0x04] {
            let r = rejected(
                &[0x30, 0x10, 0x02, 0x01, 0x05, op_tag],
                "first message is not a bind",
            );
            assert_eq!((r.message_id, r.result_code), (None, UNWILLING_TO_PERFORM));
        }
        let start_tls = message(1, &enc(0x77, &enc(0x80, b"1.3.6.1.4.1.1466.20037")));
        rejected(&start_tls, "first message is not a bind");
        let mut response = Vec::new();
        write_bind_response(3, 0, "", &mut response);
        rejected(&response, "first message is not a bind");
    }

    /// Decode an LDAPResult message with the module's reader.
    fn read_result(buf: &[u8]) -> (u32, u8, u8, String, Vec<Vec<u8>>) {
        let mut input = Reader::new(buf);
        let msg = input.expect(SEQUENCE, "seq").unwrap();
        assert_eq!(msg.end, buf.len());
        let mut r = input.inside(msg);
        let id = r.expect(INTEGER, "id").unwrap();
        let id = unsigned(r.contents(id).unwrap()).unwrap();
        let op_tag = r.tag().unwrap();
        let op = r.length().unwrap();
        assert_eq!(op.end, msg.end);
        let mut o = r.inside(op);
        let code = o.expect(ENUMERATED, "code").unwrap();
        let code = unsigned(o.contents(code).unwrap()).unwrap();
        let matched = o.expect(OCTET_STRING, "dn").unwrap();
        assert_eq!(o.contents(matched).unwrap(), b"");
        let diag = o.expect(OCTET_STRING, "diag").unwrap();
        let diag = String::from_utf8(o.contents(diag).unwrap().to_vec()).unwrap();
        let mut rest = Vec::new();
        while !o.at_end() {
            let tag = o.tag().unwrap();
            let e = o.length().unwrap();
            let mut v = vec![tag];
            v.extend_from_slice(o.contents(e).unwrap());
            rest.push(v);
        }
        (id, op_tag, u8::try_from(code).unwrap(), diag, rest)
    }

    #[test]
    fn bind_response_round_trip() {
        let mut out = Vec::new();
        write_bind_response(1, 53, "no route for this domain", &mut out);
        assert_eq!(
            out,
            b"\x30\x24\x02\x01\x01\x61\x1f\x0a\x01\x35\x04\x00\x04\x18no route for this domain"
        );
        for (id, code) in [
            (1, 0),
            (127, 2),
            (128, 48),
            (65_535, 49),
            (MAX_INT, 53),
            (u32::MAX, 255),
        ] {
            for diag in ["", "anonymous bind", &"é".repeat(100), &"x".repeat(2000)] {
                out.clear();
                out.extend_from_slice(b"kept");
                write_bind_response(id, code, diag, &mut out);
                assert_eq!(&out[..4], b"kept");
                let (rid, tag, rcode, rdiag, rest) = read_result(&out[4..]);
                assert_eq!((rid, tag, rcode), (id, BIND_RESPONSE, code));
                assert!(diag.starts_with(&rdiag) && rdiag.len() <= MAX_DIAGNOSTIC);
                assert!(rdiag.len() == diag.len() || diag.len() > MAX_DIAGNOSTIC);
                assert!(rest.is_empty());
            }
        }
        // A cut never splits a character: 1024 is inside the 513th "é".
        out.clear();
        write_bind_response(1, 53, &format!("a{}", "é".repeat(600)), &mut out);
        assert_eq!(read_result(&out).3.len(), 1023);
    }

    #[test]
    fn notice_of_disconnection_round_trip() {
        let mut out = Vec::new();
        write_notice_of_disconnection(PROTOCOL_ERROR, "first message is not a bind", &mut out);
        let (id, tag, code, diag, rest) = read_result(&out);
        assert_eq!((id, tag, code), (0, EXTENDED_RESPONSE, PROTOCOL_ERROR));
        assert_eq!(diag, "first message is not a bind");
        assert_eq!(
            rest,
            vec![[&[RESPONSE_NAME][..], NOTICE_OF_DISCONNECTION].concat()]
        );
    }

    #[test]
    fn all_short_inputs_without_panic() {
        for a in 0..=255u8 {
            let _ = parse_bind(&[a], MAX);
            for b in 0..=255u8 {
                let _ = parse_bind(&[a, b], MAX);
                let _ = parse_bind(&[0x30, a, b], MAX);
                let _ = parse_bind(&[0x30, 0x84, 0, 0, 0, 0x10, 0x02, a, b], MAX);
            }
        }
    }

    /// Flip, insert and delete bytes in valid messages: never a panic; a result is
    /// consistent; and every prefix of the mutant agrees with the whole (a reject or
    /// result, once reached, never changes as bytes are added).
    #[test]
    fn mutations_do_not_panic() {
        let bytes = [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x1f, 0x24, 0x30, 0x3f, 0x40, 0x60, 0x61, 0x7f,
            0x80, 0x81, 0x82, 0x84, 0x85, 0xa0, 0xa3, 0xff, b'=', b',', b'\\', b'@', b'"', b'#',
            b'+', b' ',
        ];
        let mut seeds = valid_messages();
        seeds.retain(|s| s.len() < 200);
        seeds.push(LDAPWHOAMI_UNBIND.to_vec());
        let mut dones = 0;
        for seed in &seeds {
            for_each_mutation(seed, &bytes, |m| {
                let whole = parse_bind(m, MAX);
                if let Sniff::Done(bind) = &whole {
                    dones += 1;
                    assert!(bind.message_len <= m.len() && bind.message_len <= MAX);
                    assert!(bind.message_id != 0 && bind.message_id <= MAX_INT);
                    assert_eq!(bind.version, 3);
                    assert_eq!(
                        bind_domain(&bind.name),
                        Some((bind.domain.clone(), bind.user.clone()))
                    );
                    assert_eq!(bind.domain, bind.domain.to_ascii_lowercase());
                    // The message alone gives the same answer, and a smaller
                    // limit refuses it.
                    assert_eq!(parse_bind(&m[..bind.message_len], MAX), whole);
                    assert!(matches!(
                        parse_bind(m, bind.message_len - 1),
                        Sniff::Reject(_)
                    ));
                }
                let mut settled: Option<Sniff<BindRequest, LdapReject>> = None;
                for n in 0..=m.len() {
                    let now = parse_bind(&m[..n], MAX);
                    match (&settled, &now) {
                        (None, Sniff::Incomplete) => {}
                        (None, _) => settled = Some(now),
                        (Some(s), _) => assert_eq!(s, &now, "{m:02x?} at {n}"),
                    }
                }
                assert_eq!(settled.unwrap_or(Sniff::Incomplete), whole);
            });
        }
        assert!(dones > 100, "{dones}");
    }
}
