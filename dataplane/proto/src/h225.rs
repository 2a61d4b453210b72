//! H.323 call signalling as the H.323 TCP/TLS listeners see it: the first TPKT frame
//! of a connection, and in it the gatekeeper identifier of a RAS message tunnelled
//! with H.460.17.
//!
//! Owns: framing the first TPKT packet (RFC 1006 §6); reading its Q.931 message
//! (H.225.0 §7, Q.931 §4) down to the User-user information element; reading the
//! H323-UserInformation in it (ITU-T H.225.0 version 7 ASN.1, aligned PER, X.691) down
//! to `h323-uu-pdu.genericData`; finding the H.460.17 feature (GenericData id standard
//! 17) and the RasMessage carried as raw octets in its parameter 1; reading that
//! RasMessage to its `gatekeeperIdentifier` and, for GRQ and RRQ, the endpoint's first
//! h323-ID or dialledDigits alias; turning a gatekeeper identifier into a routing key
//! ([`gatekeeper_key`]). The host lookup lives in `portico-control`; sockets, TLS,
//! certificate checks, timeouts, logging and the relay of the buffered bytes in the
//! data plane.
//!
//! Promises:
//! - Nothing here panics on any input. Until the first TPKT frame is complete the
//!   answer is [`Sniff::Incomplete`] (if the bytes so far can start a frame no longer
//!   than `max_len`); a frame's contents are only looked at once all of it has
//!   arrived, so every strict prefix of a valid frame is `Incomplete` and a reject
//!   never turns into anything else with more bytes.
//! - Work is bounded by the frame (at most 65535 octets): no recursion, every loop
//!   consumes input, and the one recursive part of the grammar (a GenericData
//!   parameter's `compound` and `nested` contents) is skipped with a fixed-size
//!   explicit stack, refused past [`MAX_GENERIC_NESTING`] levels. No allocation except
//!   the returned strings.
//! - "No gatekeeper id" is not a reject: a SETUP, a FACILITY without H.460.17, or a
//!   RAS message without the field is [`Sniff::Done`] with `key: None`, and the caller
//!   decides (it refuses and logs, by DESIGN.md's routing rules).
//!
//! # Why a hand-written PER reader and not `rasn` + `rasn-compiler`
//! - Aligned PER is not self-delimiting, so any decoder must know every field before
//!   `genericData`; but the proxy needs only a thin path through the module: TPKT,
//!   Q.931, the H323-UU-PDU root, the extension bitmap, GenericData, then the root of
//!   seven RAS messages. Everything else is skipped without being built: the message
//!   body `empty` and all extension additions are open types (length-prefixed), and a
//!   SETUP's body is not read at all. A schema-driven decoder builds the whole
//!   H323-UserInformation, including every H.245 and H.235 type it can reach, to
//!   answer one string.
//! - The H.225.0 module imports H.235 and H.245 (MULTIMEDIA-SYSTEM-CONTROL, some 12,000
//!   lines of ASN.1); the generated Rust for the three modules would be tens of
//!   thousands of lines in a crate that so far depends on small crates only, and
//!   `rasn-compiler`'s support for those modules' information objects and
//!   parameterised types would itself have to be verified.
//! - GenericData is recursive (`Content.compound`, `Content.nested`) and the sender
//!   picks the depth; a derived decoder recurses on it. Here it is an explicit,
//!   bounded stack.
//! - The sniffer must tell *need more* from *malformed* on every prefix: with TPKT
//!   framing that is decided on the 4-byte header, and inside a complete frame every
//!   shortage is malformed, which a hand-written reader states directly.
//! - Speed: one pass over a frame of a few hundred octets, no allocation but the
//!   answer.
//!
//! The price is that this file must follow H.225.0 exactly for every field it skips.
//! Each reader quotes the ASN.1 it implements, and the test vectors in
//! `testdata/h323/` come from an independent encoder (pycrate's compiled H.225.0
//! module, aligned PER) and are confirmed by Wireshark's dissector (`gen_vectors.py
//! --tshark`).
//!
//! # Decisions
//! - TPKT: version 3 is required; the reserved octet is not checked (RFC 1006 gives
//!   receivers no rule). A frame shorter than TPKT + the three fixed Q.931 octets is
//!   malformed.
//! - Q.931: protocol discriminator 0x08; a call reference of 0 to 15 octets (H.460.17
//!   uses call reference 0 for the RAS tunnel; innovaphone endpoints send it with
//!   length 0, h323plus accepts that, and so do we). Any message type is read; only
//!   FACILITY (0x62) is searched for tunnelled RAS, because H.460.17 carries RAS only
//!   there. Shift IEs (Q.931 §4.5.2-4.5.4) are honoured: only a User-user IE in
//!   codeset 0 is taken, and only it has the 2-octet length of H.225.0. A message
//!   without a User-user IE, or with two, is malformed (H.225.0 carries the
//!   H323-UserInformation in exactly one).
//! - PER: unconstrained lengths of 16K and more (fragmentation, X.691 §11.9.3.8) are
//!   refused: nothing that large fits the frames this sniffer accepts. Padding bits
//!   are not checked for zero. Extension additions are skipped by their length, never
//!   looked into, except those that hold the answer.
//! - FACILITY bodies: `empty` and every other extension alternative are skipped as
//!   open types; `facility` (Facility-UUIE) is read through; the other root
//!   alternatives (setup ... releaseComplete) carry no H.460.17 RAS and give
//!   `ras: None` without being read.
//! - The first GenericData with id standard 17 whose parameter with id standard 1 has
//!   `raw` content is the tunnelled RAS message; a `standard` identifier encoded in its
//!   extension range (above 16383) is never 17.
//! - `gatekeeperIdentifier` (BMPString, UCS-2) is decoded as UTF-16; an unpaired
//!   surrogate is malformed. The alias is the first h323-ID or dialledDigits of GRQ
//!   `endpointAlias` / RRQ `terminalAlias`; other alias kinds (url-ID, email-ID, ...)
//!   are skipped. Other RAS messages give no alias.
//! - The key ([`gatekeeper_key`]): the physical location is dropped and the rest is
//!   lower-cased in ASCII only, as the rule table lower-cases host names; an id that
//!   leaves nothing (e.g. `loc@`) gives no key.

use std::fmt;

use crate::Sniff;

/// TPKT header length: version, reserved, 16-bit length (RFC 1006 §6).
pub const TPKT_HEADER_LEN: usize = 4;
/// The Q.931 protocol discriminator (Q.931 §4.2).
pub const Q931_PROTOCOL_DISCRIMINATOR: u8 = 0x08;
/// Q.931 message type SETUP (Q.931 Table 4-2).
pub const Q931_SETUP: u8 = 0x05;
/// Q.931 message type FACILITY (Q.931 Table 4-2), which carries H.460.17 RAS.
pub const Q931_FACILITY: u8 = 0x62;
/// Deepest stack of GenericData lists (`parameters`, `compound`, `nested`) skipped
/// before refusing: seven levels of `nested` features, far more than any H.460
/// feature defines.
pub const MAX_GENERIC_NESTING: usize = 16;

/// RFC 1006 §6: "vrsn [...] This field is always 3 for the version of the protocol
/// described in this memo."
const TPKT_VERSION: u8 = 3;
/// The User-user information element (Q.931 §4.5.30). H.225.0 codes its length in
/// two octets instead of Q.931's one, so that it can hold an H323-UserInformation
/// of more than 255 octets.
const IE_USER_USER: u8 = 0x7e;
/// The protocol discriminator inside the User-user IE (Q.931 §4.5.30): "X.208 and
/// X.209 coded user information", which H.225.0 uses for the H323-UserInformation.
const USER_USER_PROTOCOL_DISCRIMINATOR: u8 = 0x05;
/// H.460.17: the feature is GenericData `id standard 17`...
const H460_17_FEATURE: u32 = 17;
/// ... and the RAS message is the `raw` content of its parameter `standard 1`.
const H460_17_RAS_PARAMETER: u32 = 1;

/// The RasMessage alternatives of H.225.0 version 7, root and extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RasKind {
    Grq,
    Gcf,
    Grj,
    Rrq,
    Rcf,
    Rrj,
    Urq,
    Ucf,
    Urj,
    Arq,
    Acf,
    Arj,
    Brq,
    Bcf,
    Brj,
    Drq,
    Dcf,
    Drj,
    Lrq,
    Lcf,
    Lrj,
    Irq,
    Irr,
    NonStandardMessage,
    UnknownMessageResponse,
    RequestInProgress,
    ResourcesAvailableIndicate,
    ResourcesAvailableConfirm,
    InfoRequestAck,
    InfoRequestNak,
    ServiceControlIndication,
    ServiceControlResponse,
    AdmissionConfirmSequence,
    /// An extension alternative added after H.225.0 version 7.
    Unknown,
}

/// The 25 root alternatives, in ASN.1 order.
const RAS_ROOT: [RasKind; 25] = [
    RasKind::Grq,
    RasKind::Gcf,
    RasKind::Grj,
    RasKind::Rrq,
    RasKind::Rcf,
    RasKind::Rrj,
    RasKind::Urq,
    RasKind::Ucf,
    RasKind::Urj,
    RasKind::Arq,
    RasKind::Acf,
    RasKind::Arj,
    RasKind::Brq,
    RasKind::Bcf,
    RasKind::Brj,
    RasKind::Drq,
    RasKind::Dcf,
    RasKind::Drj,
    RasKind::Lrq,
    RasKind::Lcf,
    RasKind::Lrj,
    RasKind::Irq,
    RasKind::Irr,
    RasKind::NonStandardMessage,
    RasKind::UnknownMessageResponse,
];

/// The extension alternatives known to version 7, in ASN.1 order.
const RAS_EXTENSION: [RasKind; 8] = [
    RasKind::RequestInProgress,
    RasKind::ResourcesAvailableIndicate,
    RasKind::ResourcesAvailableConfirm,
    RasKind::InfoRequestAck,
    RasKind::InfoRequestNak,
    RasKind::ServiceControlIndication,
    RasKind::ServiceControlResponse,
    RasKind::AdmissionConfirmSequence,
];

impl RasKind {
    /// The usual abbreviation (as in the ASN.1 comments of H.225.0), for logs.
    pub fn abbreviation(self) -> &'static str {
        match self {
            RasKind::Grq => "GRQ",
            RasKind::Gcf => "GCF",
            RasKind::Grj => "GRJ",
            RasKind::Rrq => "RRQ",
            RasKind::Rcf => "RCF",
            RasKind::Rrj => "RRJ",
            RasKind::Urq => "URQ",
            RasKind::Ucf => "UCF",
            RasKind::Urj => "URJ",
            RasKind::Arq => "ARQ",
            RasKind::Acf => "ACF",
            RasKind::Arj => "ARJ",
            RasKind::Brq => "BRQ",
            RasKind::Bcf => "BCF",
            RasKind::Brj => "BRJ",
            RasKind::Drq => "DRQ",
            RasKind::Dcf => "DCF",
            RasKind::Drj => "DRJ",
            RasKind::Lrq => "LRQ",
            RasKind::Lcf => "LCF",
            RasKind::Lrj => "LRJ",
            RasKind::Irq => "IRQ",
            RasKind::Irr => "IRR",
            RasKind::NonStandardMessage => "NSM",
            RasKind::UnknownMessageResponse => "XRS",
            RasKind::RequestInProgress => "RIP",
            RasKind::ResourcesAvailableIndicate => "RAI",
            RasKind::ResourcesAvailableConfirm => "RAC",
            RasKind::InfoRequestAck => "IACK",
            RasKind::InfoRequestNak => "INAK",
            RasKind::ServiceControlIndication => "SCI",
            RasKind::ServiceControlResponse => "SCR",
            RasKind::AdmissionConfirmSequence => "ACF-SEQ",
            RasKind::Unknown => "RAS?",
        }
    }
}

impl fmt::Display for RasKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.abbreviation())
    }
}

/// The first TPKT frame of an H.323 call-signalling connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H225First {
    /// Length of the first TPKT frame, header included: the bytes to replay first.
    pub frame_len: usize,
    /// The Q.931 message type ([`Q931_FACILITY`], [`Q931_SETUP`], ...).
    pub message_type: u8,
    /// The RAS message tunnelled with H.460.17, if any.
    pub ras: Option<RasKind>,
    /// `gatekeeperIdentifier` as sent, if the RAS message has one.
    pub gatekeeper_id: Option<String>,
    /// The routing key: [`gatekeeper_key`] of the gatekeeper id, `None` without one.
    pub key: Option<String>,
    /// The endpoint's first h323-ID or dialledDigits alias (GRQ and RRQ only).
    pub alias: Option<String>,
}

/// The layer a malformed frame was refused at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum H225Layer {
    /// The TPKT header, or a frame longer than the limit.
    Tpkt,
    /// The Q.931 message and its information elements.
    Q931,
    /// The PER-encoded H323-UserInformation, down to the H.460.17 GenericData.
    UserInformation,
    /// The tunnelled PER-encoded RasMessage.
    Ras,
}

impl H225Layer {
    fn name(self) -> &'static str {
        match self {
            H225Layer::Tpkt => "TPKT",
            H225Layer::Q931 => "Q.931",
            H225Layer::UserInformation => "H323-UserInformation",
            H225Layer::Ras => "RAS",
        }
    }
}

/// Why the first frame is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H225Reject {
    pub layer: H225Layer,
    /// Short reason for logs, e.g. "frame longer than the limit".
    pub reason: &'static str,
}

impl fmt::Display for H225Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.layer.name(), self.reason)
    }
}

impl std::error::Error for H225Reject {}

/// The routing key of a gatekeeper identifier `[physical-location@]domain[/registration-location]`:
/// the physical location and its `@` dropped, the rest (`domain` or
/// `domain/registration-location`) lower-cased in ASCII (as the rule table's host
/// names are).
///
/// The domain holds neither `@` nor `/`, so the physical location ends at the last `@`
/// before the first `/`; an `@` after the first `/` belongs to the registration
/// location and is kept.
pub fn gatekeeper_key(id: &str) -> String {
    let head_end = id.find('/').unwrap_or(id.len());
    let start = id
        .get(..head_end)
        .and_then(|head| head.rfind('@'))
        .map_or(0, |at| at + 1);
    id.get(start..).unwrap_or_default().to_ascii_lowercase()
}

/// Read the first TPKT frame at the start of `buf` (no longer than `max_len` bytes)
/// and the gatekeeper id of the RAS message it tunnels. Bytes after the frame are not
/// looked at.
///
/// Wire (RFC 1006 §6, Q.931 §4, H.225.0 §7, H.460.17):
/// ```text
/// TPKT      = version(3) reserved length(16, header included) Q931
/// Q931      = 0x08 crv-len(0..15) crv message-type *IE
/// IE        = single-octet IE (bit 8 set)
///           / id len(8) contents                    ; variable length
///           / 0x7E len(16) 0x05 H323-UserInformation ; User-user, codeset 0
/// H323-UserInformation.h323-uu-pdu.genericData[i]   ; id standard 17
///     .parameters[j]                                ; id standard 1
///     .content.raw = RasMessage                     ; aligned PER
/// ```
pub fn parse_first(buf: &[u8], max_len: usize) -> Sniff<H225First, H225Reject> {
    let frame_len = match tpkt_frame(buf, max_len) {
        Ok(Some(len)) => len,
        Ok(None) => return Sniff::Incomplete,
        Err(reject) => return Sniff::Reject(reject),
    };
    // `tpkt_frame` returned a length no greater than `buf.len()`.
    let Some(payload) = buf.get(TPKT_HEADER_LEN..frame_len) else {
        return Sniff::Reject(reject(H225Layer::Tpkt, "frame shorter than its header"));
    };
    match frame(payload, frame_len) {
        Ok(first) => Sniff::Done(first),
        Err(r) => Sniff::Reject(r),
    }
}

fn reject(layer: H225Layer, reason: &'static str) -> H225Reject {
    H225Reject { layer, reason }
}

/// The length of the first TPKT frame once all of it is in `buf`; `None` while it
/// can still arrive.
fn tpkt_frame(buf: &[u8], max_len: usize) -> Result<Option<usize>, H225Reject> {
    let tpkt = |reason| reject(H225Layer::Tpkt, reason);
    match buf.first() {
        None => return Ok(None),
        Some(&TPKT_VERSION) => {}
        Some(_) => return Err(tpkt("not a TPKT version 3 packet")),
    }
    let [_, _, hi, lo, ..] = *buf else {
        return Ok(None);
    };
    // RFC 1006 §6: "packet length 16 bits (min=7, max=65535) This field contains the
    // length of entire packet in octets, including packet-header." Seven is also the
    // header and the three fixed Q.931 octets: discriminator, call reference length,
    // message type.
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len < TPKT_HEADER_LEN + 3 {
        return Err(tpkt("frame too short for a Q.931 message"));
    }
    if len > max_len {
        return Err(tpkt("frame longer than the limit"));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// The Q.931 message in a complete frame, and what it tunnels.
fn frame(q931: &[u8], frame_len: usize) -> Result<H225First, H225Reject> {
    let (message_type, user_information) = q931_message(q931)?;
    let mut first = H225First {
        frame_len,
        message_type,
        ras: None,
        gatekeeper_id: None,
        key: None,
        alias: None,
    };
    if message_type != Q931_FACILITY {
        return Ok(first);
    }
    let Some(ras) = tunnelled_ras(user_information)
        .map_err(|reason| reject(H225Layer::UserInformation, reason))?
    else {
        return Ok(first);
    };
    let message = ras_message(ras).map_err(|reason| reject(H225Layer::Ras, reason))?;
    first.ras = Some(message.kind);
    first.key = message
        .gatekeeper_id
        .as_deref()
        .map(gatekeeper_key)
        .filter(|key| !key.is_empty());
    first.gatekeeper_id = message.gatekeeper_id;
    first.alias = message.alias;
    Ok(first)
}

/// The message type and the H323-UserInformation octets of a Q.931 message (Q.931
/// §4.1: protocol discriminator, call reference, message type, then the other
/// information elements).
fn q931_message(q: &[u8]) -> Result<(u8, &[u8]), H225Reject> {
    let bad = |reason| reject(H225Layer::Q931, reason);
    let mut r = Octets { buf: q, pos: 0 };
    let truncated = "truncated Q.931 message";
    // Q.931 §4.2: the protocol discriminator of Q.931 user-network call control
    // messages is 0000 1000.
    if r.byte().ok_or(bad(truncated))? != Q931_PROTOCOL_DISCRIMINATOR {
        return Err(bad("not a Q.931 protocol discriminator"));
    }
    // Q.931 §4.3: the first octet of the call reference holds its length in bits
    // 1-4; bits 5-8 are spare (0). H.225.0 uses two octets, H.460.17's RAS tunnel
    // call reference 0, which innovaphone endpoints send with length 0.
    let crv_len = r.byte().ok_or(bad(truncated))?;
    if crv_len & 0xf0 != 0 {
        return Err(bad("call reference length with spare bits set"));
    }
    r.take(usize::from(crv_len)).ok_or(bad(truncated))?;
    // Q.931 §4.4: one octet (bit 8 reserved as an extension bit, 0 today).
    let message_type = r.byte().ok_or(bad(truncated))?;

    let mut user_information = None;
    let mut codeset = 0u8;
    let mut locked_codeset = 0u8;
    // Each turn consumes at least one octet.
    while let Some(id) = r.byte() {
        if id & 0x80 != 0 {
            // Q.931 §4.5.1: single-octet information elements have bit 8 set. §4.5.3
            // (locking shift, "1001 0 nnn") and §4.5.4 (non-locking shift,
            // "1001 1 nnn") change the codeset of what follows.
            if id & 0xf0 == 0x90 {
                let target = id & 0x07;
                if id & 0x08 == 0 {
                    locked_codeset = target;
                    codeset = target;
                } else {
                    codeset = target;
                    continue;
                }
            } else {
                codeset = locked_codeset;
            }
            continue;
        }
        let in_codeset_0 = codeset == 0;
        codeset = locked_codeset;
        if in_codeset_0 && id == IE_USER_USER {
            // H.225.0: the User-user IE's length is two octets.
            let (Some(hi), Some(lo)) = (r.byte(), r.byte()) else {
                return Err(bad("truncated User-user length"));
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let contents = r
                .take(len)
                .ok_or(bad("User-user IE longer than the message"))?;
            let [pd, rest @ ..] = contents else {
                return Err(bad("empty User-user IE"));
            };
            if *pd != USER_USER_PROTOCOL_DISCRIMINATOR {
                return Err(bad("User-user IE is not X.208/X.209 coded"));
            }
            if user_information.replace(rest).is_some() {
                return Err(bad("two User-user IEs"));
            }
        } else {
            let len = r
                .byte()
                .ok_or(bad("truncated information element length"))?;
            r.take(usize::from(len))
                .ok_or(bad("information element longer than the message"))?;
        }
    }
    let user_information = user_information.ok_or(bad("no User-user IE"))?;
    Ok((message_type, user_information))
}

/// A checked cursor over octets.
struct Octets<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl<'b> Octets<'b> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
}

// ---------------------------------------------------------------------------------
// Aligned PER (X.691), the subset H.225.0 needs. Clause numbers are those of the 2008
// and later editions (one more than in the 2002 edition: 11.5.7 was 10.5.7).

/// Why PER decoding stopped (the layer is added by the caller). Inside a complete
/// frame every shortage is malformed.
type Bad = &'static str;

const TRUNCATED: Bad = "truncated PER encoding";

/// A checked bit cursor over one complete PER encoding (an outermost value or an open
/// type's contents, both octet-aligned at their start).
#[derive(Debug, Clone, Copy)]
struct Per<'b> {
    buf: &'b [u8],
    /// Position in bits; never past `buf.len() * 8`.
    pos: usize,
}

impl<'b> Per<'b> {
    fn new(buf: &'b [u8]) -> Per<'b> {
        Per { buf, pos: 0 }
    }

    fn bit(&mut self) -> Result<bool, Bad> {
        let byte = *self.buf.get(self.pos / 8).ok_or(TRUNCATED)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// `n` (at most 32) bits as an unsigned number, most significant first.
    fn bits(&mut self, n: u32) -> Result<u32, Bad> {
        debug_assert!(n <= 32);
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    fn skip_bits(&mut self, n: usize) -> Result<(), Bad> {
        let end = self.pos.checked_add(n).ok_or(TRUNCATED)?;
        if end > self.buf.len().saturating_mul(8) {
            return Err(TRUNCATED);
        }
        self.pos = end;
        Ok(())
    }

    /// Move to the next octet boundary (the ALIGNED variant's padding). Padding bits
    /// are zero on the wire but not checked.
    fn align(&mut self) {
        // `buf.len() * 8` is a multiple of 8 and `pos` is at most that, so the
        // rounded-up position is too.
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// `n` whole octets, after aligning.
    fn octets(&mut self, n: usize) -> Result<&'b [u8], Bad> {
        self.align();
        let start = self.pos / 8;
        let end = start.checked_add(n).ok_or(TRUNCATED)?;
        let s = self.buf.get(start..end).ok_or(TRUNCATED)?;
        self.pos = end * 8;
        Ok(s)
    }

    /// `n` (1 to 4) aligned octets as an unsigned number, most significant first.
    fn uint(&mut self, n: usize) -> Result<u32, Bad> {
        if n > 4 {
            return Err("integer too large");
        }
        Ok(self
            .octets(n)?
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
    }

    fn skip_octets(&mut self, n: usize) -> Result<(), Bad> {
        self.octets(n).map(|_| ())
    }

    /// A BOOLEAN (X.691 §12: one bit).
    fn boolean(&mut self) -> Result<bool, Bad> {
        self.bit()
    }

    /// A constrained whole number `0 .. range` in the ALIGNED variant (X.691
    /// §11.5.7), `range = ub - lb + 1` (at most 2^32):
    /// - range 1: no bits;
    /// - "bit-field case": range <= 255, the minimum number of bits, not aligned;
    /// - "one-octet case": range = 256, one octet, aligned;
    /// - "two-octet case": 256 < range <= 64K, two octets, aligned;
    /// - "indefinite length case": range > 64K, the number of octets (1 ..= the octets
    ///   needed for range - 1) as a constrained whole number, then that many octets,
    ///   aligned.
    fn constrained(&mut self, range: u64) -> Result<u32, Bad> {
        let v = match range {
            0 | 1 => return Ok(0),
            2..=255 => self.bits(bits_for(range))?,
            256 => self.uint(1)?,
            257..=65_536 => self.uint(2)?,
            _ => {
                let max_octets = (bits_for(range) as usize).div_ceil(8);
                let n = 1 + self.constrained(max_octets as u64)? as usize;
                self.uint(n)?
            }
        };
        if u64::from(v) >= range {
            return Err("constrained integer out of range");
        }
        Ok(v)
    }

    /// An unconstrained length determinant (X.691 §11.9.3.5-8, ALIGNED: octet-aligned):
    /// `0xxxxxxx` for 0..127, `10xxxxxx xxxxxxxx` for 128..16383; `11xxxxxx` starts
    /// fragmentation (16K units), refused here.
    fn length(&mut self) -> Result<usize, Bad> {
        let first = self.uint(1)? as usize;
        match first {
            0x00..=0x7f => Ok(first),
            0x80..=0xbf => Ok(((first & 0x3f) << 8) | self.uint(1)? as usize),
            _ => Err("fragmented PER length"),
        }
    }

    /// A length `lb ..= ub` with `ub` below 64K (X.691 §11.9.4.1: a constrained whole
    /// number); `lb == ub` is not encoded.
    fn length_in(&mut self, lb: usize, ub: usize) -> Result<usize, Bad> {
        Ok(lb + self.constrained((ub - lb + 1) as u64)? as usize)
    }

    /// A normally small non-negative whole number (X.691 §11.6): `0` and six bits for
    /// 0..63, else `1` and a semi-constrained whole number (a length, then octets).
    fn normally_small(&mut self) -> Result<u32, Bad> {
        if !self.bit()? {
            return self.bits(6);
        }
        let n = self.length()?;
        if n == 0 {
            return Err("empty normally small number");
        }
        self.uint(n)
    }

    /// An open type (X.691 §11.2): an unconstrained length in octets, then that many
    /// octets holding a complete encoding.
    fn open_type(&mut self) -> Result<Per<'b>, Bad> {
        let n = self.length()?;
        Ok(Per::new(self.octets(n)?))
    }

    fn skip_open_type(&mut self) -> Result<(), Bad> {
        let n = self.length()?;
        self.skip_octets(n)
    }

    /// The extension-additions bitmap of a SEQUENCE whose extension bit was 1 (X.691
    /// §19: a normally small length n, then n presence bits, then the present
    /// additions as open types). Returns where the
    /// bits start and how many there are; the cursor moves past them.
    fn extension_bitmap(&mut self) -> Result<Bitmap, Bad> {
        // X.691 §11.9.3.4: a normally small length is n-1 in six bits after a 0, or
        // a 1 and an unconstrained length n.
        let n = if self.bit()? {
            self.length()?
        } else {
            self.bits(6)? as usize + 1
        };
        let start = self.pos;
        self.skip_bits(n)?;
        Ok(Bitmap { start, len: n })
    }

    fn bitmap_bit(&self, bitmap: Bitmap, i: usize) -> bool {
        let pos = bitmap.start + i;
        // The bitmap lies inside `buf` (checked when it was read).
        self.buf
            .get(pos / 8)
            .is_some_and(|byte| (byte >> (7 - pos % 8)) & 1 == 1)
    }

    /// Skip all extension additions (the extension bit was 1): each present one is an
    /// open type.
    fn skip_extensions(&mut self) -> Result<(), Bad> {
        let bitmap = self.extension_bitmap()?;
        // Each turn reads one bitmap bit; a present addition consumes its length.
        for i in 0..bitmap.len {
            if self.bitmap_bit(bitmap, i) {
                self.skip_open_type()?;
            }
        }
        Ok(())
    }

    /// The contents of extension addition `want` (0-based, in ASN.1 order) if present;
    /// the additions before it are skipped. The cursor is left inside the additions.
    fn extension(&mut self, want: usize) -> Result<Option<Per<'b>>, Bad> {
        let bitmap = self.extension_bitmap()?;
        for i in 0..bitmap.len.min(want + 1) {
            if self.bitmap_bit(bitmap, i) {
                let contents = self.open_type()?;
                if i == want {
                    return Ok(Some(contents));
                }
            }
        }
        Ok(None)
    }

    /// Skip a SEQUENCE's extension additions if its extension bit was set.
    fn skip_extensions_if(&mut self, extended: bool) -> Result<(), Bad> {
        if extended {
            self.skip_extensions()?;
        }
        Ok(())
    }

    /// A CHOICE index (X.691 §23): with an extension marker, a bit first; a root
    /// alternative as a constrained whole number `0 .. root`, an extension one as a
    /// normally small number followed by the value as an open type (skipped here).
    fn choice(&mut self, extensible: bool, root: u64) -> Result<Choice, Bad> {
        if extensible && self.bit()? {
            let index = self.normally_small()?;
            self.skip_open_type()?;
            return Ok(Choice::Extension(index));
        }
        Ok(Choice::Root(self.constrained(root)?))
    }
}

#[derive(Debug, Clone, Copy)]
struct Bitmap {
    start: usize,
    len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Root(u32),
    Extension(u32),
}

/// Bits for a bit-field holding `0 .. range` (range >= 2).
fn bits_for(range: u64) -> u32 {
    64 - (range - 1).leading_zeros()
}

/// `n` optional-component presence bits (X.691 §19.2), first component first.
fn presence<const N: usize>(r: &mut Per<'_>) -> Result<[bool; N], Bad> {
    let mut bits = [false; N];
    for b in &mut bits {
        *b = r.bit()?;
    }
    Ok(bits)
}

// ---------------------------------------------------------------------------------
// H.225.0 types, root parts (H323-MESSAGES, H.225.0 version 7).

/// `OBJECT IDENTIFIER` (X.691 §24: an unconstrained length, then the BER contents
/// octets).
fn skip_object_identifier(r: &mut Per<'_>) -> Result<(), Bad> {
    let n = r.length()?;
    r.skip_octets(n)
}

/// `OCTET STRING` without a size constraint (X.691 §17.8: a length, then octets).
fn skip_octet_string(r: &mut Per<'_>) -> Result<(), Bad> {
    let n = r.length()?;
    r.skip_octets(n)
}

/// ```text
/// H221NonStandard ::= SEQUENCE {
///   t35CountryCode    INTEGER(0..255),
///   t35Extension      INTEGER(0..255),
///   manufacturerCode  INTEGER(0..65535),
///   ... }
/// ```
fn skip_h221_non_standard(r: &mut Per<'_>) -> Result<(), Bad> {
    let extended = r.bit()?;
    r.constrained(256)?;
    r.constrained(256)?;
    r.constrained(65_536)?;
    r.skip_extensions_if(extended)
}

/// ```text
/// NonStandardParameter ::= SEQUENCE {
///   nonStandardIdentifier  NonStandardIdentifier,
///   data                   OCTET STRING }
/// NonStandardIdentifier ::= CHOICE {
///   object           OBJECT IDENTIFIER,
///   h221NonStandard  H221NonStandard,
///   ... }
/// ```
fn skip_non_standard_parameter(r: &mut Per<'_>) -> Result<(), Bad> {
    match r.choice(true, 2)? {
        Choice::Root(0) => skip_object_identifier(r)?,
        Choice::Root(_) => skip_h221_non_standard(r)?,
        Choice::Extension(_) => {}
    }
    skip_octet_string(r)
}

/// ```text
/// TransportAddress ::= CHOICE {
///   ipAddress SEQUENCE {ip OCTET STRING(SIZE (4)), port INTEGER(0..65535)},
///   ipSourceRoute SEQUENCE {ip OCTET STRING(SIZE (4)), port INTEGER(0..65535),
///       route SEQUENCE OF OCTET STRING(SIZE (4)),
///       routing CHOICE {strict NULL, loose NULL, ...}, ...},
///   ipxAddress SEQUENCE {node OCTET STRING(SIZE (6)), netnum OCTET STRING(SIZE (4)),
///       port OCTET STRING(SIZE (2))},
///   ip6Address SEQUENCE {ip OCTET STRING(SIZE (16)), port INTEGER(0..65535), ...},
///   netBios OCTET STRING(SIZE (16)),
///   nsap OCTET STRING(SIZE (1..20)),
///   nonStandardAddress NonStandardParameter,
///   ... }
/// ```
/// X.691 §17.6-17.8: a fixed-size OCTET STRING of more than two octets is aligned,
/// one of at most two octets is not; a variable size one has a length and is aligned.
fn skip_transport_address(r: &mut Per<'_>) -> Result<(), Bad> {
    match r.choice(true, 7)? {
        Choice::Root(0) => {
            r.skip_octets(4)?;
            r.constrained(65_536)?;
        }
        Choice::Root(1) => {
            let extended = r.bit()?;
            r.skip_octets(4)?;
            r.constrained(65_536)?;
            let routes = r.length()?;
            // Each turn consumes four octets.
            for _ in 0..routes {
                r.skip_octets(4)?;
            }
            r.choice(true, 2)?;
            r.skip_extensions_if(extended)?;
        }
        Choice::Root(2) => {
            r.skip_octets(6)?;
            r.skip_octets(4)?;
            r.skip_bits(16)?;
        }
        Choice::Root(3) => {
            let extended = r.bit()?;
            r.skip_octets(16)?;
            r.constrained(65_536)?;
            r.skip_extensions_if(extended)?;
        }
        Choice::Root(4) => r.skip_octets(16)?,
        Choice::Root(5) => {
            let n = r.length_in(1, 20)?;
            r.skip_octets(n)?;
        }
        Choice::Root(_) => skip_non_standard_parameter(r)?,
        Choice::Extension(_) => {}
    }
    Ok(())
}

/// `SEQUENCE OF TransportAddress`.
fn skip_transport_addresses(r: &mut Per<'_>) -> Result<(), Bad> {
    let n = r.length()?;
    // Each turn consumes at least the CHOICE index bits.
    for _ in 0..n {
        skip_transport_address(r)?;
    }
    Ok(())
}

/// The dialledDigits alphabet in canonical order (by character code). X.691's
/// known-multiplier character strings: thirteen characters need four bits, which the
/// ALIGNED variant keeps (it rounds the width up to a power of two); since '9' (57)
/// does not fit in four bits, each character is encoded as its index in this list
/// rather than as its code.
const DIALLED_DIGITS: &[u8; 13] = b"#*,0123456789";

/// ```text
/// AliasAddress ::= CHOICE {
///   dialledDigits  IA5String(SIZE (1..128))(FROM ("0123456789#*,")),
///   h323-ID        BMPString(SIZE (1..256)),
///   ...,
///   url-ID IA5String(SIZE (1..512)), transportID TransportAddress,
///   email-ID IA5String(SIZE (1..512)), partyNumber PartyNumber,
///   mobileUIM MobileUIM, isupNumber IsupNumber }
/// ```
/// `Some` for dialledDigits and h323-ID when `want` is set, else `None` (extension
/// alternatives are skipped as open types).
fn alias_address(r: &mut Per<'_>, want: bool) -> Result<Option<String>, Bad> {
    match r.choice(true, 2)? {
        Choice::Root(0) => {
            let n = r.length_in(1, 128)?;
            // ub (128) * b (4) > 16 bits: the characters are octet-aligned.
            r.align();
            if !want {
                r.skip_bits(n * 4)?;
                return Ok(None);
            }
            let mut digits = String::with_capacity(n);
            for _ in 0..n {
                let index = r.bits(4)? as usize;
                let c = DIALLED_DIGITS
                    .get(index)
                    .ok_or("dialledDigits character outside its alphabet")?;
                digits.push(char::from(*c));
            }
            Ok(Some(digits))
        }
        Choice::Root(_) => {
            let n = r.length_in(1, 256)?;
            let s = bmp_string(r, n, want)?;
            Ok(s)
        }
        Choice::Extension(_) => Ok(None),
    }
}

/// `SEQUENCE OF AliasAddress`; the first h323-ID or dialledDigits if `want`.
fn alias_addresses(r: &mut Per<'_>, want: bool) -> Result<Option<String>, Bad> {
    let n = r.length()?;
    let mut first = None;
    // Each turn consumes at least the CHOICE bits.
    for _ in 0..n {
        let alias = alias_address(r, want && first.is_none())?;
        if first.is_none() {
            first = alias;
        }
    }
    Ok(first)
}

/// The characters of a BMPString of `n` characters whose length was just read (16 bits
/// each, octet-aligned since ub * 16 > 16). UCS-2, read as UTF-16.
fn bmp_string(r: &mut Per<'_>, n: usize, want: bool) -> Result<Option<String>, Bad> {
    let octets = r.octets(n.checked_mul(2).ok_or(TRUNCATED)?)?;
    if !want {
        return Ok(None);
    }
    // `chunks_exact(2)` yields two-octet slices only: the indexing cannot fail.
    let units = octets
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map(Some)
        .map_err(|_| "BMPString with an unpaired surrogate")
}

/// `GatekeeperIdentifier ::= BMPString(SIZE (1..128))`, also EndpointIdentifier.
fn identifier_string(r: &mut Per<'_>, want: bool) -> Result<Option<String>, Bad> {
    let n = r.length_in(1, 128)?;
    bmp_string(r, n, want)
}

/// ```text
/// VendorIdentifier ::= SEQUENCE {
///   vendor     H221NonStandard,
///   productId  OCTET STRING(SIZE (1..256)) OPTIONAL,
///   versionId  OCTET STRING(SIZE (1..256)) OPTIONAL,
///   ..., enterpriseNumber OBJECT IDENTIFIER OPTIONAL }
/// ```
fn skip_vendor_identifier(r: &mut Per<'_>) -> Result<(), Bad> {
    let extended = r.bit()?;
    let [product, version] = presence(r)?;
    skip_h221_non_standard(r)?;
    for present in [product, version] {
        if present {
            let n = r.length_in(1, 256)?;
            r.skip_octets(n)?;
        }
    }
    r.skip_extensions_if(extended)
}

/// The many `SEQUENCE { nonStandardData NonStandardParameter OPTIONAL, ... }` types:
/// GatekeeperInfo, TerminalInfo, McuInfo, H310Caps ... T120OnlyCaps (their other
/// components are extension additions).
fn skip_non_standard_only(r: &mut Per<'_>) -> Result<(), Bad> {
    let extended = r.bit()?;
    let [non_standard] = presence(r)?;
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    r.skip_extensions_if(extended)
}

/// ```text
/// SupportedProtocols ::= CHOICE {
///   nonStandardData NonStandardParameter, h310 H310Caps, h320 H320Caps,
///   h321 H321Caps, h322 H322Caps, h323 H323Caps, h324 H324Caps,
///   voice VoiceCaps, t120-only T120OnlyCaps,
///   ..., nonStandardProtocol NonStandardProtocol,
///   t38FaxAnnexbOnly T38FaxAnnexbOnlyCaps, sip SIPCaps }
/// ```
fn skip_supported_protocols(r: &mut Per<'_>) -> Result<(), Bad> {
    match r.choice(true, 9)? {
        Choice::Root(0) => skip_non_standard_parameter(r),
        Choice::Root(_) => skip_non_standard_only(r),
        Choice::Extension(_) => Ok(()),
    }
}

/// ```text
/// GatewayInfo ::= SEQUENCE {
///   protocol         SEQUENCE OF SupportedProtocols OPTIONAL,
///   nonStandardData  NonStandardParameter OPTIONAL,
///   ... }
/// ```
fn skip_gateway_info(r: &mut Per<'_>) -> Result<(), Bad> {
    let extended = r.bit()?;
    let [protocol, non_standard] = presence(r)?;
    if protocol {
        let n = r.length()?;
        // Each turn consumes at least the CHOICE bits.
        for _ in 0..n {
            skip_supported_protocols(r)?;
        }
    }
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    r.skip_extensions_if(extended)
}

/// ```text
/// EndpointType ::= SEQUENCE {
///   nonStandardData  NonStandardParameter OPTIONAL,
///   vendor           VendorIdentifier OPTIONAL,
///   gatekeeper       GatekeeperInfo OPTIONAL,
///   gateway          GatewayInfo OPTIONAL,
///   mcu              McuInfo OPTIONAL,
///   terminal         TerminalInfo OPTIONAL,
///   mc               BOOLEAN,
///   undefinedNode    BOOLEAN,
///   ..., set BIT STRING(SIZE (32)) OPTIONAL,
///   supportedTunnelledProtocols SEQUENCE OF TunnelledProtocol OPTIONAL }
/// ```
fn skip_endpoint_type(r: &mut Per<'_>) -> Result<(), Bad> {
    let extended = r.bit()?;
    let [non_standard, vendor, gatekeeper, gateway, mcu, terminal] = presence(r)?;
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    if vendor {
        skip_vendor_identifier(r)?;
    }
    if gatekeeper {
        skip_non_standard_only(r)?;
    }
    if gateway {
        skip_gateway_info(r)?;
    }
    if mcu {
        skip_non_standard_only(r)?;
    }
    if terminal {
        skip_non_standard_only(r)?;
    }
    r.boolean()?; // mc
    r.boolean()?; // undefinedNode
    r.skip_extensions_if(extended)
}

/// ```text
/// QseriesOptions ::= SEQUENCE {
///   q932Full BOOLEAN, q951Full BOOLEAN, q952Full BOOLEAN, q953Full BOOLEAN,
///   q955Full BOOLEAN, q956Full BOOLEAN, q957Full BOOLEAN,
///   q954Info Q954Details, ... }
/// Q954Details ::= SEQUENCE {
///   conferenceCalling BOOLEAN, threePartyService BOOLEAN, ... }
/// ```
fn skip_qseries_options(r: &mut Per<'_>) -> Result<(), Bad> {
    let extended = r.bit()?;
    r.skip_bits(7)?;
    let q954_extended = r.bit()?;
    r.skip_bits(2)?;
    r.skip_extensions_if(q954_extended)?;
    r.skip_extensions_if(extended)
}

/// `ConferenceIdentifier ::= GloballyUniqueID ::= OCTET STRING(SIZE (16))`.
fn skip_guid(r: &mut Per<'_>) -> Result<(), Bad> {
    r.skip_octets(16)
}

/// `CallType ::= CHOICE {pointToPoint NULL, oneToN NULL, nToOne NULL, nToN NULL, ...}`.
fn skip_call_type(r: &mut Per<'_>) -> Result<(), Bad> {
    r.choice(true, 4).map(|_| ())
}

/// `BandWidth ::= INTEGER(0..4294967295)`.
fn skip_bandwidth(r: &mut Per<'_>) -> Result<(), Bad> {
    r.constrained(1 << 32).map(|_| ())
}

/// `RequestSeqNum ::= INTEGER(1..65535)`.
fn skip_request_seq_num(r: &mut Per<'_>) -> Result<(), Bad> {
    r.constrained(65_535).map(|_| ())
}

/// `CallReferenceValue ::= INTEGER(0..65535)`.
fn skip_call_reference_value(r: &mut Per<'_>) -> Result<(), Bad> {
    r.constrained(65_536).map(|_| ())
}

// ---------------------------------------------------------------------------------
// H323-UserInformation down to the H.460.17 RAS message.

/// The octets of the RAS message tunnelled in an H323-UserInformation, if any.
///
/// ```text
/// H323-UserInformation ::= SEQUENCE {
///   h323-uu-pdu  H323-UU-PDU,
///   user-data    SEQUENCE {...} OPTIONAL,
///   ... }
/// H323-UU-PDU ::= SEQUENCE {
///   h323-message-body CHOICE {
///       setup Setup-UUIE, callProceeding CallProceeding-UUIE,
///       connect Connect-UUIE, alerting Alerting-UUIE,
///       information Information-UUIE, releaseComplete ReleaseComplete-UUIE,
///       facility Facility-UUIE,
///       ..., progress Progress-UUIE, empty NULL, status Status-UUIE,
///       statusInquiry StatusInquiry-UUIE, setupAcknowledge SetupAcknowledge-UUIE,
///       notify Notify-UUIE},
///   nonStandardData NonStandardParameter OPTIONAL,
///   ...,
///   h4501SupplementaryService SEQUENCE OF OCTET STRING OPTIONAL,   -- 0
///   h245Tunnelling BOOLEAN,                                        -- 1
///   h245Control SEQUENCE OF OCTET STRING OPTIONAL,                 -- 2
///   nonStandardControl SEQUENCE OF NonStandardParameter OPTIONAL,  -- 3
///   callLinkage CallLinkage OPTIONAL,                              -- 4
///   tunnelledSignallingMessage SEQUENCE {...} OPTIONAL,            -- 5
///   provisionalRespToH245Tunnelling NULL OPTIONAL,                 -- 6
///   stimulusControl StimulusControl OPTIONAL,                      -- 7
///   genericData SEQUENCE OF GenericData OPTIONAL }                 -- 8
/// ```
fn tunnelled_ras(user_information: &[u8]) -> Result<Option<&[u8]>, Bad> {
    const GENERIC_DATA: usize = 8;
    let mut r = Per::new(user_information);
    r.bit()?; // H323-UserInformation extension bit: additions come after the PDU.
    let [_user_data] = presence(&mut r)?;

    let extended = r.bit()?;
    let [non_standard] = presence(&mut r)?;
    match r.choice(true, 7)? {
        Choice::Root(6) => skip_facility_uuie(&mut r)?,
        // setup .. releaseComplete: H.460.17 does not tunnel RAS in them, and their
        // root components would have to be read to get past them.
        Choice::Root(_) => return Ok(None),
        // empty, progress, ...: skipped as open types.
        Choice::Extension(_) => {}
    }
    if non_standard {
        skip_non_standard_parameter(&mut r)?;
    }
    if !extended {
        return Ok(None);
    }
    match r.extension(GENERIC_DATA)? {
        Some(mut generic) => h460_17_ras(&mut generic),
        None => Ok(None),
    }
}

/// ```text
/// Facility-UUIE ::= SEQUENCE {
///   protocolIdentifier       ProtocolIdentifier,
///   alternativeAddress       TransportAddress OPTIONAL,
///   alternativeAliasAddress  SEQUENCE OF AliasAddress OPTIONAL,
///   conferenceID             ConferenceIdentifier OPTIONAL,
///   reason                   FacilityReason,
///   ..., callIdentifier CallIdentifier, ... }
/// FacilityReason ::= CHOICE {
///   routeCallToGatekeeper NULL, callForwarded NULL, routeCallToMC NULL,
///   undefinedReason NULL, ..., conferenceListChoice NULL, ... }
/// ```
fn skip_facility_uuie(r: &mut Per<'_>) -> Result<(), Bad> {
    let extended = r.bit()?;
    let [address, aliases, conference] = presence(r)?;
    skip_object_identifier(r)?;
    if address {
        skip_transport_address(r)?;
    }
    if aliases {
        alias_addresses(r, false)?;
    }
    if conference {
        skip_guid(r)?;
    }
    r.choice(true, 4)?;
    r.skip_extensions_if(extended)
}

/// ```text
/// GenericIdentifier ::= CHOICE {
///   standard     INTEGER(0..16383, ...),
///   oid          OBJECT IDENTIFIER,
///   nonStandard  GloballyUniqueID,
///   ... }
/// ```
/// `Some(n)` for a standard identifier in the root range.
fn generic_identifier(r: &mut Per<'_>) -> Result<Option<u32>, Bad> {
    match r.choice(true, 3)? {
        Choice::Root(0) => {
            // X.691 §13.1: an extensible constraint puts a bit first; a value outside
            // the root is an unconstrained whole number (a length, then octets).
            if r.bit()? {
                skip_octet_string(r)?;
                Ok(None)
            } else {
                Ok(Some(r.constrained(16_384)?))
            }
        }
        Choice::Root(1) => skip_object_identifier(r).map(|()| None),
        Choice::Root(_) => skip_guid(r).map(|()| None),
        Choice::Extension(_) => Ok(None),
    }
}

/// `parameters SEQUENCE (SIZE (1..512)) OF EnumeratedParameter`: the count.
fn parameter_count(r: &mut Per<'_>) -> Result<usize, Bad> {
    r.length_in(1, 512)
}

/// ```text
/// GenericData ::= SEQUENCE {
///   id          GenericIdentifier,
///   parameters  SEQUENCE (SIZE (1..512)) OF EnumeratedParameter OPTIONAL,
///   ... }
/// EnumeratedParameter ::= SEQUENCE {
///   id       GenericIdentifier,
///   content  Content OPTIONAL,
///   ... }
/// ```
/// In `genericData` (a `SEQUENCE OF GenericData`), the raw content of parameter 1 of
/// the first feature 17 that has one.
fn h460_17_ras<'b>(r: &mut Per<'b>) -> Result<Option<&'b [u8]>, Bad> {
    let features = r.length()?;
    // Each turn consumes at least a GenericData's two preamble bits.
    for _ in 0..features {
        let extended = r.bit()?;
        let [has_parameters] = presence(r)?;
        let id = generic_identifier(r)?;
        if !has_parameters {
            r.skip_extensions_if(extended)?;
            continue;
        }
        let count = parameter_count(r)?;
        if id != Some(H460_17_FEATURE) {
            skip_generic(r, Pending::Parameters(count))?;
            r.skip_extensions_if(extended)?;
            continue;
        }
        // Each turn consumes at least an EnumeratedParameter's two preamble bits.
        for _ in 0..count {
            let param_extended = r.bit()?;
            let [has_content] = presence(r)?;
            let param = generic_identifier(r)?;
            if has_content {
                if let Some(raw) = content(r, param == Some(H460_17_RAS_PARAMETER))? {
                    return Ok(Some(raw));
                }
            }
            r.skip_extensions_if(param_extended)?;
        }
        r.skip_extensions_if(extended)?;
    }
    Ok(None)
}

/// What is left to skip at one level of the GenericData recursion.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// More GenericData values of a `nested` list.
    GenericData(usize),
    /// More EnumeratedParameter values of a `parameters` or `compound` list.
    Parameters(usize),
    /// The extension additions of the GenericData or EnumeratedParameter whose list
    /// just ended.
    Extensions,
}

/// The `Content` of an EnumeratedParameter. With `want_raw`, `raw` content is
/// returned; anything else (and a compound or nested content, through
/// [`skip_generic`]) is skipped.
///
/// ```text
/// Content ::= CHOICE {
///   raw OCTET STRING, text IA5String, unicode BMPString, bool BOOLEAN,
///   number8 INTEGER(0..255), number16 INTEGER(0..65535),
///   number32 INTEGER(0..4294967295), id GenericIdentifier,
///   alias AliasAddress, transport TransportAddress,
///   compound SEQUENCE (SIZE (1..512)) OF EnumeratedParameter,
///   nested SEQUENCE (SIZE (1..16)) OF GenericData,
///   ... }
/// ```
fn content<'b>(r: &mut Per<'b>, want_raw: bool) -> Result<Option<&'b [u8]>, Bad> {
    match content_step(r, want_raw)? {
        Step::Raw(raw) => Ok(Some(raw)),
        Step::Done => Ok(None),
        Step::Descend(list) => skip_generic(r, list).map(|()| None),
    }
}

enum Step<'b> {
    Raw(&'b [u8]),
    Done,
    Descend(Pending),
}

/// Read a Content's index and skip it unless it is a list (returned to descend into)
/// or wanted raw octets.
fn content_step<'b>(r: &mut Per<'b>, want_raw: bool) -> Result<Step<'b>, Bad> {
    let index = match r.choice(true, 12)? {
        Choice::Root(index) => index,
        Choice::Extension(_) => return Ok(Step::Done),
    };
    match index {
        0 => {
            let n = r.length()?;
            let raw = r.octets(n)?;
            if want_raw {
                return Ok(Step::Raw(raw));
            }
        }
        // IA5String: 8 bits a character in the ALIGNED variant (7 rounded up).
        1 => skip_octet_string(r)?,
        2 => {
            let n = r.length()?;
            r.skip_octets(n.checked_mul(2).ok_or(TRUNCATED)?)?;
        }
        3 => {
            r.boolean()?;
        }
        4 => {
            r.constrained(256)?;
        }
        5 => {
            r.constrained(65_536)?;
        }
        6 => skip_bandwidth(r)?,
        7 => {
            generic_identifier(r)?;
        }
        8 => {
            alias_address(r, false)?;
        }
        9 => skip_transport_address(r)?,
        10 => return Ok(Step::Descend(Pending::Parameters(r.length_in(1, 512)?))),
        _ => return Ok(Step::Descend(Pending::GenericData(r.length_in(1, 16)?))),
    }
    Ok(Step::Done)
}

/// Skip the rest of a GenericData structure starting with `first`, without
/// recursion: an explicit stack, at most [`MAX_GENERIC_NESTING`] lists deep.
fn skip_generic(r: &mut Per<'_>, first: Pending) -> Result<(), Bad> {
    // Each level pushes at most two entries (its extensions and its list).
    let mut stack = [Pending::Extensions; 2 * MAX_GENERIC_NESTING + 1];
    // A constant index into a non-empty array (checked at compile time).
    stack[0] = first;
    let mut depth = 1usize;
    let mut lists = 1usize;
    // Each turn pops an entry or consumes at least two bits of input (a SEQUENCE's
    // extension and presence bits), and entries are only pushed after consuming.
    while let Some(top) = depth.checked_sub(1).and_then(|i| stack.get_mut(i)) {
        let (extended, descend) = match top {
            Pending::Extensions => {
                depth -= 1;
                r.skip_extensions()?;
                continue;
            }
            Pending::GenericData(0) | Pending::Parameters(0) => {
                depth -= 1;
                lists -= 1;
                continue;
            }
            Pending::GenericData(n) => {
                *n -= 1;
                let extended = r.bit()?;
                let [has_parameters] = presence(r)?;
                generic_identifier(r)?;
                let descend = if has_parameters {
                    Some(Pending::Parameters(parameter_count(r)?))
                } else {
                    None
                };
                (extended, descend)
            }
            Pending::Parameters(n) => {
                *n -= 1;
                let extended = r.bit()?;
                let [has_content] = presence(r)?;
                generic_identifier(r)?;
                let descend = if has_content {
                    match content_step(r, false)? {
                        Step::Descend(list) => Some(list),
                        Step::Raw(_) | Step::Done => None,
                    }
                } else {
                    None
                };
                (extended, descend)
            }
        };
        match descend {
            None => r.skip_extensions_if(extended)?,
            Some(list) => {
                if lists == MAX_GENERIC_NESTING {
                    return Err("GenericData nested too deeply");
                }
                lists += 1;
                if extended {
                    push(&mut stack, &mut depth, Pending::Extensions)?;
                }
                push(&mut stack, &mut depth, list)?;
            }
        }
    }
    Ok(())
}

fn push(stack: &mut [Pending], depth: &mut usize, entry: Pending) -> Result<(), Bad> {
    let slot = stack
        .get_mut(*depth)
        .ok_or("GenericData nested too deeply")?;
    *slot = entry;
    *depth += 1;
    Ok(())
}

// ---------------------------------------------------------------------------------
// RasMessage

/// What the sniffer takes from a RAS message.
struct RasSummary {
    kind: RasKind,
    gatekeeper_id: Option<String>,
    alias: Option<String>,
}

/// ```text
/// RasMessage ::= CHOICE {
///   gatekeeperRequest GatekeeperRequest, ... (25 root alternatives),
///   ..., requestInProgress RequestInProgress, ... (8 extension alternatives) }
/// ```
fn ras_message(ras: &[u8]) -> Result<RasSummary, Bad> {
    let mut r = Per::new(ras);
    // The extension alternatives' contents are skipped: none of them has a
    // gatekeeperIdentifier the sniffer reads.
    let kind = match r.choice(true, 25)? {
        Choice::Root(i) => RAS_ROOT
            .get(i as usize)
            .copied()
            .unwrap_or(RasKind::Unknown),
        Choice::Extension(i) => RAS_EXTENSION
            .get(i as usize)
            .copied()
            .unwrap_or(RasKind::Unknown),
    };
    let (gatekeeper_id, alias) = match kind {
        RasKind::Grq => gatekeeper_request(&mut r)?,
        RasKind::Rrq => registration_request(&mut r)?,
        RasKind::Urq => (unregistration_request(&mut r)?, None),
        RasKind::Arq => (admission_request(&mut r)?, None),
        RasKind::Brq => (bandwidth_request(&mut r)?, None),
        RasKind::Drq => (disengage_request(&mut r)?, None),
        RasKind::Lrq => (location_request(&mut r)?, None),
        _ => (None, None),
    };
    Ok(RasSummary {
        kind,
        gatekeeper_id,
        alias,
    })
}

/// ```text
/// GatekeeperRequest ::= SEQUENCE {
///   requestSeqNum         RequestSeqNum,
///   protocolIdentifier    ProtocolIdentifier,
///   nonStandardData       NonStandardParameter OPTIONAL,
///   rasAddress            TransportAddress,
///   endpointType          EndpointType,
///   gatekeeperIdentifier  GatekeeperIdentifier OPTIONAL,
///   callServices          QseriesOptions OPTIONAL,
///   endpointAlias         SEQUENCE OF AliasAddress OPTIONAL,
///   ... }
/// ```
fn gatekeeper_request(r: &mut Per<'_>) -> Result<(Option<String>, Option<String>), Bad> {
    r.bit()?; // extension bit: the additions come after everything wanted
    let [non_standard, gatekeeper, call_services, aliases] = presence(r)?;
    skip_request_seq_num(r)?;
    skip_object_identifier(r)?;
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    skip_transport_address(r)?;
    skip_endpoint_type(r)?;
    let gatekeeper_id = match gatekeeper {
        true => identifier_string(r, true)?,
        false => None,
    };
    if call_services {
        skip_qseries_options(r)?;
    }
    let alias = match aliases {
        true => alias_addresses(r, true)?,
        false => None,
    };
    Ok((gatekeeper_id, alias))
}

/// ```text
/// RegistrationRequest ::= SEQUENCE {
///   requestSeqNum         RequestSeqNum,
///   protocolIdentifier    ProtocolIdentifier,
///   nonStandardData       NonStandardParameter OPTIONAL,
///   discoveryComplete     BOOLEAN,
///   callSignalAddress     SEQUENCE OF TransportAddress,
///   rasAddress            SEQUENCE OF TransportAddress,
///   terminalType          EndpointType,
///   terminalAlias         SEQUENCE OF AliasAddress OPTIONAL,
///   gatekeeperIdentifier  GatekeeperIdentifier OPTIONAL,
///   endpointVendor        VendorIdentifier,
///   ... }
/// ```
fn registration_request(r: &mut Per<'_>) -> Result<(Option<String>, Option<String>), Bad> {
    r.bit()?; // extension bit
    let [non_standard, aliases, gatekeeper] = presence(r)?;
    skip_request_seq_num(r)?;
    skip_object_identifier(r)?;
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    r.boolean()?; // discoveryComplete
    skip_transport_addresses(r)?;
    skip_transport_addresses(r)?;
    skip_endpoint_type(r)?;
    let alias = match aliases {
        true => alias_addresses(r, true)?,
        false => None,
    };
    let gatekeeper_id = match gatekeeper {
        true => identifier_string(r, true)?,
        false => None,
    };
    Ok((gatekeeper_id, alias))
}

/// The gatekeeperIdentifier in extension addition `index` (the root was read).
fn gatekeeper_extension(
    r: &mut Per<'_>,
    extended: bool,
    index: usize,
) -> Result<Option<String>, Bad> {
    if !extended {
        return Ok(None);
    }
    match r.extension(index)? {
        Some(mut contents) => identifier_string(&mut contents, true),
        None => Ok(None),
    }
}

/// ```text
/// UnregistrationRequest ::= SEQUENCE {
///   requestSeqNum       RequestSeqNum,
///   callSignalAddress   SEQUENCE OF TransportAddress,
///   endpointAlias       SEQUENCE OF AliasAddress OPTIONAL,
///   nonStandardData     NonStandardParameter OPTIONAL,
///   endpointIdentifier  EndpointIdentifier OPTIONAL,
///   ..., alternateEndpoints SEQUENCE OF Endpoint OPTIONAL,       -- 0
///   gatekeeperIdentifier GatekeeperIdentifier OPTIONAL, ... }    -- 1
/// ```
fn unregistration_request(r: &mut Per<'_>) -> Result<Option<String>, Bad> {
    let extended = r.bit()?;
    let [aliases, non_standard, endpoint] = presence(r)?;
    skip_request_seq_num(r)?;
    skip_transport_addresses(r)?;
    if aliases {
        alias_addresses(r, false)?;
    }
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    if endpoint {
        identifier_string(r, false)?;
    }
    gatekeeper_extension(r, extended, 1)
}

/// ```text
/// AdmissionRequest ::= SEQUENCE {
///   requestSeqNum          RequestSeqNum,
///   callType               CallType,
///   callModel              CallModel OPTIONAL,
///   endpointIdentifier     EndpointIdentifier,
///   destinationInfo        SEQUENCE OF AliasAddress OPTIONAL,
///   destCallSignalAddress  TransportAddress OPTIONAL,
///   destExtraCallInfo      SEQUENCE OF AliasAddress OPTIONAL,
///   srcInfo                SEQUENCE OF AliasAddress,
///   srcCallSignalAddress   TransportAddress OPTIONAL,
///   bandWidth              BandWidth,
///   callReferenceValue     CallReferenceValue,
///   nonStandardData        NonStandardParameter OPTIONAL,
///   callServices           QseriesOptions OPTIONAL,
///   conferenceID           ConferenceIdentifier,
///   activeMC               BOOLEAN,
///   answerCall             BOOLEAN,
///   ..., canMapAlias BOOLEAN,                                    -- 0
///   callIdentifier CallIdentifier,                               -- 1
///   srcAlternatives SEQUENCE OF Endpoint OPTIONAL,               -- 2
///   destAlternatives SEQUENCE OF Endpoint OPTIONAL,              -- 3
///   gatekeeperIdentifier GatekeeperIdentifier OPTIONAL, ... }    -- 4
/// CallModel ::= CHOICE {direct NULL, gatekeeperRouted NULL, ...}
/// ```
fn admission_request(r: &mut Per<'_>) -> Result<Option<String>, Bad> {
    let extended = r.bit()?;
    let [call_model, dest_info, dest_address, dest_extra, src_address, non_standard, call_services] =
        presence(r)?;
    skip_request_seq_num(r)?;
    skip_call_type(r)?;
    if call_model {
        r.choice(true, 2)?;
    }
    identifier_string(r, false)?;
    if dest_info {
        alias_addresses(r, false)?;
    }
    if dest_address {
        skip_transport_address(r)?;
    }
    if dest_extra {
        alias_addresses(r, false)?;
    }
    alias_addresses(r, false)?; // srcInfo
    if src_address {
        skip_transport_address(r)?;
    }
    skip_bandwidth(r)?;
    skip_call_reference_value(r)?;
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    if call_services {
        skip_qseries_options(r)?;
    }
    skip_guid(r)?;
    r.skip_bits(2)?; // activeMC, answerCall
    gatekeeper_extension(r, extended, 4)
}

/// ```text
/// BandwidthRequest ::= SEQUENCE {
///   requestSeqNum       RequestSeqNum,
///   endpointIdentifier  EndpointIdentifier,
///   conferenceID        ConferenceIdentifier,
///   callReferenceValue  CallReferenceValue,
///   callType            CallType OPTIONAL,
///   bandWidth           BandWidth,
///   nonStandardData     NonStandardParameter OPTIONAL,
///   ..., callIdentifier CallIdentifier,                           -- 0
///   gatekeeperIdentifier GatekeeperIdentifier OPTIONAL, ... }     -- 1
/// ```
fn bandwidth_request(r: &mut Per<'_>) -> Result<Option<String>, Bad> {
    let extended = r.bit()?;
    let [call_type, non_standard] = presence(r)?;
    skip_request_seq_num(r)?;
    identifier_string(r, false)?;
    skip_guid(r)?;
    skip_call_reference_value(r)?;
    if call_type {
        skip_call_type(r)?;
    }
    skip_bandwidth(r)?;
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    gatekeeper_extension(r, extended, 1)
}

/// ```text
/// DisengageRequest ::= SEQUENCE {
///   requestSeqNum       RequestSeqNum,
///   endpointIdentifier  EndpointIdentifier,
///   conferenceID        ConferenceIdentifier,
///   callReferenceValue  CallReferenceValue,
///   disengageReason     DisengageReason,
///   nonStandardData     NonStandardParameter OPTIONAL,
///   ..., callIdentifier CallIdentifier,                           -- 0
///   gatekeeperIdentifier GatekeeperIdentifier OPTIONAL, ... }     -- 1
/// DisengageReason ::= CHOICE {forcedDrop NULL, normalDrop NULL,
///   undefinedReason NULL, ...}
/// ```
fn disengage_request(r: &mut Per<'_>) -> Result<Option<String>, Bad> {
    let extended = r.bit()?;
    let [non_standard] = presence(r)?;
    skip_request_seq_num(r)?;
    identifier_string(r, false)?;
    skip_guid(r)?;
    skip_call_reference_value(r)?;
    r.choice(true, 3)?;
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    gatekeeper_extension(r, extended, 1)
}

/// ```text
/// LocationRequest ::= SEQUENCE {
///   requestSeqNum       RequestSeqNum,
///   endpointIdentifier  EndpointIdentifier OPTIONAL,
///   destinationInfo     SEQUENCE OF AliasAddress,
///   nonStandardData     NonStandardParameter OPTIONAL,
///   replyAddress        TransportAddress,
///   ..., sourceInfo SEQUENCE OF AliasAddress OPTIONAL,            -- 0
///   canMapAlias BOOLEAN,                                          -- 1
///   gatekeeperIdentifier GatekeeperIdentifier OPTIONAL, ... }     -- 2
/// ```
fn location_request(r: &mut Per<'_>) -> Result<Option<String>, Bad> {
    let extended = r.bit()?;
    let [endpoint, non_standard] = presence(r)?;
    skip_request_seq_num(r)?;
    if endpoint {
        identifier_string(r, false)?;
    }
    alias_addresses(r, false)?;
    if non_standard {
        skip_non_standard_parameter(r)?;
    }
    skip_transport_address(r)?;
    gatekeeper_extension(r, extended, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65_535;

    /// One committed vector and what `testdata/h323/vectors.tsv` says it holds.
    struct Vector {
        name: String,
        bytes: Vec<u8>,
        message_type: u8,
        ras: Option<String>,
        gatekeeper_id: Option<String>,
        key: Option<String>,
        alias: Option<String>,
    }

    fn field(s: &str) -> Option<String> {
        (!s.is_empty()).then(|| s.to_owned())
    }

    /// The vectors written by `testdata/h323/gen_vectors.py` (pycrate, aligned PER,
    /// confirmed with tshark).
    fn vectors() -> Vec<Vector> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/h323/");
        let manifest = include_str!("../testdata/h323/vectors.tsv");
        let mut out = Vec::new();
        for line in manifest.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 7, "{line}");
            let bytes = std::fs::read(format!("{dir}{}.bin", cols[0])).unwrap();
            out.push(Vector {
                name: cols[0].to_owned(),
                bytes,
                message_type: u8::from_str_radix(cols[1].trim_start_matches("0x"), 16).unwrap(),
                ras: field(cols[2]),
                gatekeeper_id: field(cols[3]),
                key: field(cols[4]),
                alias: field(cols[5]),
            });
        }
        assert!(out.len() >= 17, "vectors missing");
        out
    }

    fn done(buf: &[u8]) -> H225First {
        match parse_first(buf, MAX) {
            Sniff::Done(first) => first,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn rejected(buf: &[u8]) -> H225Reject {
        match parse_first(buf, MAX) {
            Sniff::Reject(r) => r,
            other => panic!("expected Reject, got {other:?}"),
        }
    }

    #[test]
    fn h225_vectors_decode_to_the_manifest() {
        for v in vectors() {
            let first = done(&v.bytes);
            let name = &v.name;
            assert_eq!(first.frame_len, v.bytes.len(), "{name}");
            assert_eq!(first.message_type, v.message_type, "{name}");
            assert_eq!(
                first.ras.map(|k| k.abbreviation().to_ascii_lowercase()),
                v.ras,
                "{name}"
            );
            assert_eq!(first.gatekeeper_id, v.gatekeeper_id, "{name}");
            assert_eq!(first.key, v.key, "{name}");
            assert_eq!(first.alias, v.alias, "{name}");
            // Bytes after the frame are not looked at.
            let mut more = v.bytes.clone();
            more.extend_from_slice(&v.bytes);
            more.extend_from_slice(b"\xff\x00garbage");
            assert_eq!(done(&more), first, "{name}");
        }
    }

    #[test]
    fn h225_routing_keys_of_the_issue() {
        let by_name = |n: &str| vectors().into_iter().find(|v| v.name == n).unwrap();
        let key = |n: &str| done(&by_name(n).bytes).key.unwrap();
        assert_eq!(key("grq_domain"), "dvl-ckl2.net");
        assert_eq!(key("grq_loc_branch_crv2"), "dvl-ckl2.net/branch-b");
        assert_eq!(key("rrq_hq"), "dvl-ckl2.net/hq");
        let setup = done(&by_name("setup_no_ras").bytes);
        assert_eq!(setup.message_type, Q931_SETUP);
        assert_eq!((setup.ras, setup.key, setup.alias), (None, None, None));
    }

    #[test]
    fn h225_every_prefix_is_incomplete() {
        for v in vectors() {
            for n in 0..v.bytes.len() {
                assert_eq!(
                    parse_first(&v.bytes[..n], MAX),
                    Sniff::Incomplete,
                    "{} cut at {n}",
                    v.name
                );
            }
        }
    }

    #[test]
    fn h225_frame_over_the_limit_is_refused_on_its_header() {
        for v in vectors() {
            let len = v.bytes.len();
            assert!(matches!(parse_first(&v.bytes, len), Sniff::Done(_)));
            for n in TPKT_HEADER_LEN..=len {
                let r = parse_first(&v.bytes[..n], len - 1);
                assert_eq!(
                    r,
                    Sniff::Reject(reject(H225Layer::Tpkt, "frame longer than the limit")),
                    "{}",
                    v.name
                );
            }
        }
    }

    #[test]
    fn h225_flipped_bits_never_panic() {
        for v in vectors() {
            let mut m = v.bytes.clone();
            for i in 0..m.len() * 8 {
                m[i / 8] ^= 1 << (i % 8);
                match parse_first(&m, MAX) {
                    // A flipped TPKT length that grows the frame waits for more.
                    Sniff::Incomplete => assert!(i / 8 < TPKT_HEADER_LEN, "{} bit {i}", v.name),
                    Sniff::Done(first) => assert!(first.frame_len <= m.len()),
                    Sniff::Reject(_) => {}
                }
                m[i / 8] ^= 1 << (i % 8);
            }
        }
    }

    #[test]
    fn h225_truncated_and_enlarged_tpkt_lengths() {
        for v in vectors() {
            let len = v.bytes.len();
            let mut m = v.bytes.clone();
            for declared in 0..=len + 8 {
                m[2..4].copy_from_slice(&(declared as u16).to_be_bytes());
                match parse_first(&m, MAX) {
                    Sniff::Incomplete => assert!(declared > len, "{} {declared}", v.name),
                    Sniff::Done(first) => assert_eq!(first.frame_len, declared),
                    Sniff::Reject(_) => assert!(declared < len, "{} {declared}", v.name),
                }
                // The frame cut to its declared length: never Incomplete, never a panic.
                if declared <= len {
                    let r = parse_first(&m[..declared.max(4)], MAX);
                    assert_ne!(r, Sniff::Incomplete, "{} {declared}", v.name);
                }
            }
            m[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
            assert_eq!(parse_first(&m, MAX), Sniff::Incomplete);
        }
    }

    #[test]
    fn h225_byte_mutations_never_panic() {
        for v in vectors() {
            crate::path::tests::for_each_mutation(&v.bytes, &[0x00, 0x7f, 0x80, 0xff], |m| {
                if let Sniff::Done(first) = parse_first(m, MAX) {
                    assert!(first.frame_len <= m.len());
                }
            });
        }
    }

    #[test]
    fn h225_tpkt_and_q931_rejects() {
        assert_eq!(parse_first(b"", MAX), Sniff::Incomplete);
        assert_eq!(rejected(b"\x16").layer, H225Layer::Tpkt); // a TLS record
        assert_eq!(rejected(b"GET / HTTP/1.1\r\n").layer, H225Layer::Tpkt);
        assert_eq!(parse_first(b"\x03\x00\x00", MAX), Sniff::Incomplete);
        assert_eq!(
            rejected(b"\x03\x00\x00\x06\x08\x00").reason,
            "frame too short for a Q.931 message"
        );
        // Q.931 with a wrong discriminator, spare bits, a cut call reference.
        let frame = |q: &[u8]| {
            let mut f = vec![3, 0];
            f.extend_from_slice(&((q.len() + 4) as u16).to_be_bytes());
            f.extend_from_slice(q);
            f
        };
        let uu = |pd: u8, body: &[u8]| {
            let mut ie = vec![0x7e];
            ie.extend_from_slice(&((body.len() + 1) as u16).to_be_bytes());
            ie.push(pd);
            ie.extend_from_slice(body);
            ie
        };
        let q931 = |crv: &[u8], ty: u8, ies: &[&[u8]]| {
            let mut q = vec![0x08, crv.len() as u8];
            q.extend_from_slice(crv);
            q.push(ty);
            for ie in ies {
                q.extend_from_slice(ie);
            }
            frame(&q)
        };
        // The PER of a FACILITY body `empty` without genericData (from the vectors).
        let empty_uu = [0x28u8, 0x10, 0x01, 0x00, 0x00, 0x40, 0x01, 0x00];
        let ok = q931(b"", Q931_FACILITY, &[&uu(5, &empty_uu)]);
        assert_eq!(done(&ok).ras, None);

        let r = |f: &[u8]| rejected(f);
        assert_eq!(
            r(&frame(b"\x09\x00\x62")).reason,
            "not a Q.931 protocol discriminator"
        );
        assert_eq!(
            r(&frame(b"\x08\x10\x62")).reason,
            "call reference length with spare bits set"
        );
        assert_eq!(
            r(&frame(b"\x08\x0f\x00\x00")).reason,
            "truncated Q.931 message"
        );
        assert_eq!(r(&q931(b"", Q931_FACILITY, &[])).reason, "no User-user IE");
        assert_eq!(
            r(&q931(b"", Q931_FACILITY, &[&uu(4, &empty_uu)])).reason,
            "User-user IE is not X.208/X.209 coded"
        );
        assert_eq!(
            r(&q931(
                b"",
                Q931_FACILITY,
                &[&uu(5, &empty_uu), &uu(5, &empty_uu)]
            ))
            .reason,
            "two User-user IEs"
        );
        assert_eq!(
            r(&q931(b"", Q931_FACILITY, &[b"\x28\x05ab"])).reason,
            "information element longer than the message"
        );
        assert_eq!(
            r(&q931(b"", Q931_FACILITY, &[b"\x7e\x00"])).layer,
            H225Layer::Q931
        );
        // A 15-octet call reference is accepted.
        assert_eq!(done(&q931(&[0; 15], 0x62, &[&uu(5, &empty_uu)])).ras, None);
        // Shift: a User-user IE in codeset 6 (non-locking shift 0x9e) has a one-octet
        // length and is not the H.225.0 one; a locking shift to codeset 5 (0x95) holds
        // until the message ends.
        let codeset6 = [0x9e, 0x7e, 0x02, 0xaa, 0xbb];
        assert_eq!(
            done(&q931(b"", 0x62, &[&codeset6, &uu(5, &empty_uu)])).ras,
            None
        );
        assert_eq!(r(&q931(b"", 0x62, &[&codeset6])).reason, "no User-user IE");
        assert_eq!(
            r(&q931(b"", 0x62, &[b"\x95", &uu(5, &empty_uu)])).layer,
            H225Layer::Q931
        );
        // Single-octet IEs (sending complete) are skipped.
        assert_eq!(
            done(&q931(b"\x00\x00", 0x62, &[b"\xa1", &uu(5, &empty_uu)])).ras,
            None
        );
        // A SETUP's User-user contents are not read.
        assert_eq!(
            done(&q931(b"\x12\x34", Q931_SETUP, &[&uu(5, b"\xff")])).ras,
            None
        );
        // But a FACILITY's are.
        assert_eq!(
            r(&q931(b"", Q931_FACILITY, &[&uu(5, b"")])).layer,
            H225Layer::UserInformation
        );
    }

    #[test]
    fn h225_gatekeeper_key() {
        assert_eq!(gatekeeper_key("dvl-ckl2.net"), "dvl-ckl2.net");
        assert_eq!(
            gatekeeper_key("loc@dvl-ckl2.net/branch-b"),
            "dvl-ckl2.net/branch-b"
        );
        assert_eq!(gatekeeper_key("x@DVL-ckl2.net/HQ"), "dvl-ckl2.net/hq");
        assert_eq!(gatekeeper_key("DVL-CKL2.NET"), "dvl-ckl2.net");
        assert_eq!(gatekeeper_key("a@b@dom/reg"), "dom/reg");
        assert_eq!(gatekeeper_key("dom/reg@x"), "dom/reg@x");
        assert_eq!(gatekeeper_key("loc@"), "");
        assert_eq!(gatekeeper_key("Ü@dom/Zürich-ÄB"), "dom/zürich-Äb");
        assert_eq!(gatekeeper_key(""), "");
    }

    // ---- a tiny aligned-PER writer for GenericData shapes the vectors lack ----

    #[derive(Default)]
    struct Bits {
        out: Vec<u8>,
        len: usize,
    }

    impl Bits {
        fn push(&mut self, value: u32, n: u32) {
            for i in (0..n).rev() {
                if self.len.is_multiple_of(8) {
                    self.out.push(0);
                }
                if (value >> i) & 1 == 1 {
                    *self.out.last_mut().unwrap() |= 0x80 >> (self.len % 8);
                }
                self.len += 1;
            }
        }
        fn align(&mut self) {
            self.len = self.len.div_ceil(8) * 8;
        }
        fn octets(&mut self, o: &[u8]) {
            self.align();
            self.out.extend_from_slice(o);
            self.len += o.len() * 8;
        }
        /// GenericIdentifier standard n (root CHOICE 0, root INTEGER value).
        fn standard(&mut self, n: u16) {
            self.push(0, 1 + 2 + 1);
            self.octets(&n.to_be_bytes());
        }
        /// A GenericData with one parameter holding `nested` levels of nested
        /// GenericData, ending in a parameter without content.
        fn nested_feature(&mut self, id: u16, nested: usize) {
            self.push(0b01, 2); // no extensions, parameters present
            self.standard(id);
            self.octets(&0u16.to_be_bytes()); // one parameter
            self.push(0b01, 2); // EnumeratedParameter: content present
            self.standard(1);
            if nested == 0 {
                self.push(0, 1 + 4); // content raw
                self.octets(&[3, 1, 2, 3]);
            } else {
                self.push(11, 1 + 4); // content nested
                self.push(0, 4); // one GenericData
                self.nested_feature(id, nested - 1);
            }
        }
    }

    /// `genericData` holding feature 18 with `depth` nested levels, then feature 17
    /// with the RAS octets 01 02 03 in parameter 1.
    fn generic_data(depth: usize) -> Vec<u8> {
        let mut b = Bits::default();
        b.octets(&[2]); // two GenericData
        b.nested_feature(18, depth);
        b.nested_feature(17, 0);
        b.out
    }

    #[test]
    fn h225_nested_generic_data_is_skipped_without_recursion_and_bounded() {
        for depth in 0..=7 {
            let g = generic_data(depth);
            assert_eq!(
                h460_17_ras(&mut Per::new(&g)),
                Ok(Some(&[1u8, 2, 3][..])),
                "depth {depth}"
            );
        }
        for depth in [8, 9, 100, 10_000] {
            let g = generic_data(depth);
            assert_eq!(
                h460_17_ras(&mut Per::new(&g)),
                Err("GenericData nested too deeply"),
                "depth {depth}"
            );
        }
    }

    #[test]
    fn h225_per_primitives() {
        // X.691 §11.5.7.4: INTEGER(0..4294967295) = 2-bit octet count, aligned octets.
        let mut r = Per::new(&[0b0100_0000, 0x12, 0x34]);
        assert_eq!(r.constrained(1 << 32), Ok(0x1234));
        // §11.9.3.7: two-octet unconstrained length; §11.9.3.8 fragmentation refused.
        assert_eq!(Per::new(&[0x81, 0x00]).length(), Ok(256));
        assert_eq!(Per::new(&[0xc1]).length(), Err("fragmented PER length"));
        // A constrained bit-field value past the range is malformed.
        assert_eq!(
            Per::new(&[0xff]).constrained(5),
            Err("constrained integer out of range")
        );
        assert_eq!(Per::new(&[]).bit(), Err(TRUNCATED));
        // Normally small: 0 + six bits; 1 + length + octets.
        assert_eq!(Per::new(&[0b0000_0110]).normally_small(), Ok(3));
        assert_eq!(Per::new(&[0x80, 0x01, 0x45]).normally_small(), Ok(0x45));
        // dialledDigits outside its 13-character alphabet.
        let mut r = Per::new(&[0b0000_0000, 0b0000_0000, 0xd0]);
        assert_eq!(
            alias_address(&mut r, true),
            Err("dialledDigits character outside its alphabet")
        );
        // h323-ID "A" then an unpaired surrogate.
        let mut r = Per::new(&[0b0100_0000, 0x01, 0x00, 0x41, 0xd8, 0x00]);
        assert_eq!(
            alias_address(&mut r, true),
            Err("BMPString with an unpaired surrogate")
        );
    }
}
