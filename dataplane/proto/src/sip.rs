//! SIP request heads as the SIP/SIPS listeners see them (RFC 3261 §7, §18.3, §20).
//!
//! Owns: finding the first complete request head on a stream connection; the routing
//! key taken from the `From` URI (host, lower-cased, port removed, plus an
//! innovaphone-style `/registration-location` suffix); rejecting responses, non-SIP
//! bytes and requests a proxy must not forward; writing the SIP answer sent before a
//! reject closes the connection; inserting a `Record-Route` on the first request for
//! the public NAT address. The route lookup lives in `portico-control`; sockets,
//! timeouts, TLS, certificate checks and the relay of everything after the first head
//! in the data plane.
//!
//! Promises:
//! - Nothing here panics on any input, and a valid head that is cut short anywhere is
//!   [`Sniff::Incomplete`], never a reject (while it is shorter than
//!   [`Limits::max_head`]).
//! - Bytes that cannot be a SIP request are refused as soon as that is certain (a TLS
//!   record on a plain port, an HTTP request line, a SIP response), without waiting
//!   for a head.
//! - [`SipReject::status`] is `Some` only when the whole head was read and its
//!   Request-Line names SIP: then [`write_reject_response`] can copy Via, From, To,
//!   Call-ID and CSeq into a real answer. Otherwise (not SIP, a response, no complete
//!   head within the limit) it is `None` and the connection is just closed.
//! - The head is forwarded byte for byte: [`write_with_record_route`] only inserts one
//!   line, so a folded, compact or oddly spaced head reaches the target as sent and
//!   the body (not part of the head) keeps its Content-Length.
//!
//! Decisions (where RFC 3261 leaves room or a proxy differs from an endpoint):
//! - Line ends: CRLF, and a bare LF leniently (common in hand-written test clients);
//!   a CR that is not followed by LF is refused (400), so the target cannot split a
//!   line where the sniffer did not. CRLFs before the Request-Line (RFC 5626 §3.5.1
//!   keep-alive pings) are skipped and counted in [`SipRequest::head_len`].
//! - Only what routing or the reject answer needs is validated: the Request-Line,
//!   header field syntax, From, To, CSeq, Call-ID, Content-Length. Via, Contact, Date
//!   and the rest are forwarded unparsed; the target answers their errors (RFC 4475
//!   §3.1.2.1 `badinv01`, §3.1.2.12 `baddate`, §3.1.2.13 `regbadct` pass).
//! - From must appear exactly once (RFC 4475 §3.3.1 `insuf`, §3.3.8 `multi01`: 400);
//!   To, Call-ID and CSeq at most once; a CSeq must have a number below 2**31 and the
//!   Request-Line's method (§3.1.2.4, §3.1.2.17). Missing To, Call-ID, CSeq or Via are
//!   left to the target; the answer to a reject then just lacks them.
//! - Content-Length: RFC 3261 §18.3 makes it mandatory on TCP, but a missing one is
//!   taken as 0 (the relay forwards the stream either way; the body length is only
//!   informational). Differing values are refused; repeated equal values are one.
//! - A From URI that is not `sip:`/`sips:` is refused with 403 (it is valid SIP, but
//!   there is no SIP domain to route on); malformed input gets 400; an unsupported
//!   SIP version 505.
//! - A head that does not end within [`Limits::max_head`] is refused without an
//!   answer (`status: None`, not 513): Via and the other fields needed for an answer
//!   may be in the part not read.

use std::fmt;
use std::ops::Range;

use crate::Sniff;

/// Limits applied while sniffing a head. The size cap lives here; the timeout is the
/// I/O layer's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum size of the head (keep-alive CRLFs + Request-Line + header fields +
    /// blank line), bytes.
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
        }
    }
}

/// Request methods (RFC 3261 §7.1 and the extensions a PBX sees); everything else is
/// `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Register,
    Invite,
    Options,
    /// RFC 6665.
    Subscribe,
    /// RFC 6665.
    Notify,
    /// RFC 3515.
    Refer,
    /// RFC 3428.
    Message,
    /// RFC 3903.
    Publish,
    /// RFC 6086.
    Info,
    /// RFC 3311.
    Update,
    Ack,
    Bye,
    Cancel,
    /// RFC 3262.
    Prack,
    Other,
}

impl Method {
    /// Method names are case-sensitive: RFC 3261 §25.1 spells them with `%x` octets
    /// (`INVITEm = %x49.4E.56.49.54.45 ; INVITE in caps`), so `invite` is an unknown
    /// method, and so is `RE%47IST%45R` (RFC 4475 §3.1.1.5).
    fn from_token(token: &[u8]) -> Method {
        match token {
            b"REGISTER" => Method::Register,
            b"INVITE" => Method::Invite,
            b"OPTIONS" => Method::Options,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"PRACK" => Method::Prack,
            _ => Method::Other,
        }
    }
}

/// The length of a complete SIP response at the start of `buf` (head and body; RFC
/// 3261 §7.2, §18.3: on a stream the body is `Content-Length` bytes, `l` in compact
/// form, 0 when absent), for relaying a connection message by message. Only the
/// framing is read; the response is forwarded as it is.
pub fn response_len(buf: &[u8], limits: &Limits) -> Sniff<usize, SipReject> {
    const TOO_LARGE: SipReject = SipReject {
        status: None,
        reason: "SIP response head too large",
    };
    const BAD_LENGTH: SipReject = SipReject {
        status: None,
        reason: "bad Content-Length in a SIP response",
    };
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > limits.max_head {
            Sniff::Reject(TOO_LARGE)
        } else {
            Sniff::Incomplete
        };
    };
    if end > limits.max_head {
        return Sniff::Reject(TOO_LARGE);
    }
    let head = buf.get(..end).unwrap_or_default();
    let mut body = 0usize;
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = value.get(1..).unwrap_or_default().trim_ascii();
            match std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                Some(n) if n <= 16 * 1024 * 1024 => body = n,
                _ => return Sniff::Reject(BAD_LENGTH),
            }
        }
    }
    Sniff::Done(end + 4 + body)
}

/// Whether a request with this method creates a dialog, so a record-routing proxy
/// inserts its `Record-Route` into it (RFC 3261 §16.6 step 4: "If this proxy wishes
/// to remain on the path of future requests in a dialog created by this request
/// (assuming the request creates a dialog), it MUST insert a Record-Route header
/// field value into the copy before any existing Record-Route header field values").
///
/// - INVITE: RFC 3261 §12: "only 2xx and 101-199 responses with a To tag, where the
///   request was INVITE, will establish a dialog."
/// - SUBSCRIBE: RFC 6665 §4.1.2.1: "SUBSCRIBE is a dialog-creating method".
/// - REFER: RFC 7614 (abstract): "The Session Initiation Protocol (SIP) REFER request,
///   as defined by RFC 3515, triggers an implicit SIP-Specific Event Notification
///   framework subscription", i.e. it creates a subscription dialog like SUBSCRIBE.
///
/// NOTIFY is not included: it travels in the dialog its SUBSCRIBE (or REFER) created,
/// and a proxy that did not record-route that request must not start doing so on the
/// NOTIFY. REGISTER, OPTIONS, MESSAGE, PUBLISH create no dialog.
pub fn is_dialog_creating(method: Method) -> bool {
    matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
}

/// A parsed, validated request head. Byte ranges index the buffer given to
/// [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipRequest {
    /// Length of the head: keep-alive CRLFs before the Request-Line, the Request-Line,
    /// the header fields and the blank line.
    pub head_len: usize,
    /// Content-Length (0 when absent): the body follows the head.
    pub body_len: usize,
    pub method: Method,
    /// The method token as sent (range into the buffer).
    pub method_range: Range<usize>,
    /// The routing key: host of the From URI, lower-cased, without port (and one
    /// trailing dot), IPv6 references with their brackets, plus `/location` when the
    /// URI has an innovaphone registration location right after the host.
    pub domain: String,
    /// The user part of the From URI as sent (escapes such as `%40` kept, password
    /// after `:` dropped); `None` for a URI without user part.
    pub from_user: Option<String>,
    /// The From URI as sent, without display name and header parameters.
    pub from_uri: String,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipReject {
    /// The SIP status to answer with, when the request was read far enough to answer
    /// (its whole head, with a Request-Line naming SIP): see
    /// [`write_reject_response`]. `None`: close without answering.
    pub status: Option<u16>,
    /// Short reason for logs and metrics, e.g. "duplicate From".
    pub reason: &'static str,
}

impl SipReject {
    /// A reject answered with a SIP response.
    const fn answer(status: u16, reason: &'static str) -> SipReject {
        SipReject {
            status: Some(status),
            reason,
        }
    }

    /// A reject that closes the connection without an answer.
    const fn close(reason: &'static str) -> SipReject {
        SipReject {
            status: None,
            reason,
        }
    }
}

impl fmt::Display for SipReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status} {}", self.reason),
            None => f.write_str(self.reason),
        }
    }
}

impl std::error::Error for SipReject {}

const NOT_SIP: SipReject = SipReject::close("not a SIP request");
const RESPONSE: SipReject = SipReject::close("SIP response instead of a request");
const TOO_LARGE: SipReject = SipReject::close("head too large");
const BAD_REQUEST_LINE: SipReject = SipReject::answer(400, "malformed Request-Line");
const BAD_REQUEST_URI: SipReject = SipReject::answer(400, "malformed Request-URI");
const BAD_FROM: SipReject = SipReject::answer(400, "malformed From");
const BAD_FROM_URI: SipReject = SipReject::answer(400, "malformed From URI");
const NOT_SIP_URI: SipReject = SipReject::answer(403, "From is not a SIP URI");

/// Parse the first request head at the start of `buf` (a stream connection's first
/// bytes).
///
/// Grammar (RFC 3261 §7, §7.1, §7.3.1, §25.1):
/// ```text
/// SIP-message    = Request / Response
/// Request        = Request-Line *( message-header ) CRLF [ message-body ]
/// Request-Line   = Method SP Request-URI SP SIP-Version CRLF
/// Status-Line    = SIP-Version SP Status-Code SP Reason-Phrase CRLF
/// SIP-Version    = "SIP" "/" 1*DIGIT "." 1*DIGIT
/// message-header = header-name HCOLON header-value *( COMMA header-value ) CRLF
/// HCOLON         = *( SP / HTAB ) ":" SWS
/// LWS            = [ *WSP CRLF ] 1*WSP ; linear whitespace
/// ```
pub fn parse_request(buf: &[u8], limits: &Limits) -> Sniff<SipRequest, SipReject> {
    // The size cap sits inside the parser: nothing past `max_head` is looked at.
    let window = buf.get(..limits.max_head).unwrap_or(buf);
    let need_more = || {
        if window.len() >= limits.max_head {
            Sniff::Reject(TOO_LARGE)
        } else {
            Sniff::Incomplete
        }
    };
    let start = match skip_keepalive(window) {
        Lead::At(start) => start,
        Lead::NeedMore => return need_more(),
        Lead::NotSip => return Sniff::Reject(NOT_SIP),
    };
    let rest = window.get(start..).unwrap_or_default();
    // Refuse what can never be a SIP request as early as possible.
    let start_line = match memchr::memchr(b'\n', rest) {
        Some(lf) => {
            let line = rest.get(..lf).unwrap_or_default();
            match classify_start_line(line.strip_suffix(b"\r").unwrap_or(line)) {
                StartLine::NotSip => return Sniff::Reject(NOT_SIP),
                StartLine::Response => return Sniff::Reject(RESPONSE),
                other => other,
            }
        }
        None => {
            if let Err(reject) = check_start_line_prefix(rest) {
                return Sniff::Reject(reject);
            }
            return need_more();
        }
    };
    let Some(head_len) = head_end(window, start) else {
        return need_more();
    };
    let head = window.get(..head_len).unwrap_or_default();
    match request_head(head, start, start_line) {
        Ok(request) => Sniff::Done(request),
        Err(reject) => Sniff::Reject(reject),
    }
}

/// Where the Request-Line starts after the keep-alive CRLFs.
enum Lead {
    At(usize),
    /// The buffer ends in a CR that may be the start of a CRLF.
    NeedMore,
    NotSip,
}

/// RFC 3261 §7.5: "Implementations processing SIP messages over stream-oriented
/// transports MUST ignore any CRLF appearing before the start-line". RFC 5626 §3.5.1
/// keep-alive pings are such CRLFs (a double CRLF).
fn skip_keepalive(buf: &[u8]) -> Lead {
    let mut i = 0;
    loop {
        match (buf.get(i), buf.get(i.saturating_add(1))) {
            (Some(b'\n'), _) => i += 1,
            (Some(b'\r'), Some(b'\n')) => i += 2,
            (Some(b'\r'), None) => return Lead::NeedMore,
            (Some(b'\r'), Some(_)) => return Lead::NotSip,
            _ => return Lead::At(i),
        }
    }
}

/// The end of the head (just past the blank line) in `buf`, searching from `start`
/// (the Request-Line), or `None` if it has not arrived yet.
fn head_end(buf: &[u8], start: usize) -> Option<usize> {
    let mut from = start;
    loop {
        let lf = from + memchr::memchr(b'\n', buf.get(from..)?)?;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => from = lf + 1,
        }
    }
}

/// What the first line is.
enum StartLine<'a> {
    /// A well-formed Request-Line.
    Request {
        method: &'a [u8],
    },
    /// A Request-Line naming SIP, but malformed: answered once the head is complete.
    Malformed(SipReject),
    Response,
    NotSip,
}

/// Classify a complete first line (without its line end).
///
/// RFC 3261 §7.1: "The Request-URI MUST NOT contain unescaped spaces or control
/// characters and MUST NOT be enclosed in "<>"." and "The SIP-Version string is
/// case-insensitive, but implementations MUST send upper-case." A line whose last word
/// is a SIP-Version is a SIP request; anything wrong with it after that is a 400
/// (505 for another version): extra SP between the elements, trailing whitespace, LWS
/// inside or `<>` around the Request-URI (RFC 4475 §3.1.2.7 to §3.1.2.10) are
/// refused, not repaired, because the head is forwarded as sent.
fn classify_start_line(line: &[u8]) -> StartLine<'_> {
    if starts_with_ignore_case(line, b"SIP/") {
        return StartLine::Response;
    }
    let method_len = line.iter().take_while(|&&b| is_token(b)).count();
    let (Some(method), Some(b' ')) = (line.get(..method_len), line.get(method_len)) else {
        return StartLine::NotSip;
    };
    if method.is_empty() {
        return StartLine::NotSip;
    }
    let trimmed = trim_end_wsp(line);
    let version_start = trimmed
        .iter()
        .rposition(|&b| is_wsp(b))
        .map_or(0, |sp| sp + 1);
    let version = trimmed.get(version_start..).unwrap_or_default();
    if !starts_with_ignore_case(version, b"SIP/") {
        return StartLine::NotSip;
    }
    // From here on the line names SIP: errors are answered.
    if trimmed.len() != line.len() {
        return StartLine::Malformed(BAD_REQUEST_LINE);
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return StartLine::Malformed(if is_sip_version(version) {
            SipReject::answer(505, "unsupported SIP version")
        } else {
            BAD_REQUEST_LINE
        });
    }
    // Between the SP after the method and the SP before the version; empty (or an
    // inverted range, also empty) when the URI is missing.
    let uri = line
        .get(method_len + 1..version_start.saturating_sub(1))
        .unwrap_or_default();
    if line.get(version_start.saturating_sub(1)) != Some(&b' ')
        || uri.is_empty()
        || uri.iter().any(|&b| is_wsp(b))
    {
        return StartLine::Malformed(BAD_REQUEST_LINE);
    }
    match check_request_uri(uri) {
        Ok(()) => StartLine::Request { method },
        Err(reject) => StartLine::Malformed(reject),
    }
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`
fn is_sip_version(version: &[u8]) -> bool {
    let Some(number) = version.get(4..) else {
        return false;
    };
    let mut parts = number.split(|&b| b == b'.');
    let all_digits = |p: &[u8]| !p.is_empty() && p.iter().all(u8::is_ascii_digit);
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(major), Some(minor), None) if all_digits(major) && all_digits(minor)
    )
}

/// RFC 3261 §7.1: `Request-URI = SIP-URI / SIPS-URI / absoluteURI`. Any scheme is
/// accepted (the request is routed on From, RFC 4475 §3.3.2, §3.3.3), but the URI
/// must be visible ASCII without `<>` or `"`. A `sip:`/`sips:` Request-URI must not
/// carry headers (`?` after the host): RFC 4475 §3.1.2.11 allows refusing them, and a
/// forwarded escaped header could be turned into a real one further on.
fn check_request_uri(uri: &[u8]) -> Result<(), SipReject> {
    let (scheme, rest) = split_scheme(uri).ok_or(BAD_REQUEST_URI)?;
    if !uri.iter().all(|&b| is_uri_char(b)) {
        return Err(BAD_REQUEST_URI);
    }
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        // The user part may contain `?` (RFC 3261 §25.1 user-unreserved), the host
        // part may not.
        let after_user = match memchr::memchr(b'@', rest) {
            Some(at) => rest.get(at + 1..).unwrap_or_default(),
            None => rest,
        };
        if after_user.is_empty() {
            return Err(BAD_REQUEST_URI);
        }
        if after_user.contains(&b'?') {
            return Err(SipReject::answer(400, "headers in Request-URI"));
        }
    }
    Ok(())
}

/// Reject a first line that is not complete yet if its start already rules out a
/// SIP request: a response, or bytes that cannot be a method token.
fn check_start_line_prefix(prefix: &[u8]) -> Result<(), SipReject> {
    if prefix.len() >= 4 && starts_with_ignore_case(prefix, b"SIP/") {
        return Err(RESPONSE);
    }
    for &b in prefix {
        if b == b' ' {
            return Ok(());
        }
        if !is_token(b) {
            return Err(NOT_SIP);
        }
    }
    Ok(())
}

/// Build the [`SipRequest`] from a complete head; `start` is where the Request-Line
/// begins.
fn request_head(
    head: &[u8],
    start: usize,
    start_line: StartLine<'_>,
) -> Result<SipRequest, SipReject> {
    // RFC 3261 §7: lines end in CRLF (a bare LF is tolerated, see the module docs). A
    // CR anywhere else could end a line for the target but not for us.
    let bare_cr = memchr::memchr_iter(b'\r', head).any(|cr| head.get(cr + 1) != Some(&b'\n'));
    if bare_cr {
        return Err(SipReject::answer(400, "CR without LF in head"));
    }
    let method = match start_line {
        StartLine::Request { method } => method,
        StartLine::Malformed(reject) => return Err(reject),
        // `parse_request` returned for these before calling us.
        StartLine::Response => return Err(RESPONSE),
        StartLine::NotSip => return Err(NOT_SIP),
    };
    let method_range = start..start + method.len();

    let fields = Fields::scan(header_section(head, start))?;

    // RFC 3261 §7.3.1: "Multiple header field rows with the same field-name MAY be
    // present in a message if and only if the entire field-value for that header field
    // is defined as a comma-separated list". From, To, Call-ID and CSeq are not.
    let from = match fields.from.as_slice() {
        [] => return Err(SipReject::answer(400, "missing From")),
        [from] => from,
        _ => return Err(SipReject::answer(400, "duplicate From")),
    };
    if fields.to.len() > 1 {
        return Err(SipReject::answer(400, "duplicate To"));
    }
    if fields.call_id > 1 {
        return Err(SipReject::answer(400, "duplicate Call-ID"));
    }
    if fields.cseq.len() > 1 {
        return Err(SipReject::answer(400, "duplicate CSeq"));
    }
    let body_len = match fields.content_length {
        // RFC 3261 §20.14: "If no body is present in a message, then the
        // Content-Length header field value MUST be set to zero." Absent is taken as
        // zero (see the module docs).
        ContentLength::Absent => 0,
        ContentLength::Value(n) => n,
        // RFC 4475 §3.1.2.3 (negative), §3.3.9 (several values).
        ContentLength::Invalid => return Err(SipReject::answer(400, "invalid Content-Length")),
        ContentLength::Conflicting => {
            return Err(SipReject::answer(400, "conflicting Content-Length"))
        }
    };
    if let Some(cseq) = fields.cseq.first() {
        check_cseq(&unfold(cseq), method)?;
    }

    let from = unfold(from);
    let address = parse_address(&from).ok_or(BAD_FROM)?;
    let uri = parse_sip_uri(address.uri)?;

    if let Some(to) = fields.to.first() {
        if parse_address(&unfold(to)).is_none() {
            return Err(SipReject::answer(400, "malformed To"));
        }
    }

    Ok(SipRequest {
        head_len: head.len(),
        body_len,
        method: Method::from_token(method),
        method_range,
        domain: uri.domain,
        from_user: uri.user,
        // `parse_address` accepted only visible ASCII in the URI.
        from_uri: String::from_utf8_lossy(address.uri).into_owned(),
    })
}

/// RFC 3261 §20.16: `CSeq = "CSeq" HCOLON 1*DIGIT LWS Method`.
/// §8.1.1.5: "The sequence number value MUST be expressible as a 32-bit unsigned
/// integer and MUST be less than 2**31." and "The method MUST match that of the
/// request." (RFC 4475 §3.1.2.4, §3.1.2.17, §3.1.2.18.)
fn check_cseq(value: &[u8], method: &[u8]) -> Result<(), SipReject> {
    const BAD_CSEQ: SipReject = SipReject::answer(400, "invalid CSeq");
    let mut c = Cursor::new(value);
    let number = parse_decimal(c.take_while(|b| b.is_ascii_digit())).ok_or(BAD_CSEQ)?;
    if number >= 1 << 31 || c.take_while(is_wsp).is_empty() {
        return Err(BAD_CSEQ);
    }
    if c.rest() != method {
        return Err(SipReject::answer(
            400,
            "CSeq method differs from Request-Line",
        ));
    }
    Ok(())
}

/// The header section of a head: from the line after the Request-Line to the end
/// (the blank line included). Empty if the Request-Line has no end.
fn header_section(head: &[u8], start: usize) -> &[u8] {
    let rest = head.get(start..).unwrap_or_default();
    match memchr::memchr(b'\n', rest) {
        Some(lf) => rest.get(lf + 1..).unwrap_or_default(),
        None => &[],
    }
}

/// Content-Length as declared by all its field lines together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentLength {
    Absent,
    Value(usize),
    /// Not 1*DIGIT, or beyond usize.
    Invalid,
    /// Valid values that differ.
    Conflicting,
}

/// What the sniffer needs from the header fields, in one pass. Values are raw (folds
/// included); [`unfold`] them before use.
struct Fields<'a> {
    from: Vec<&'a [u8]>,
    to: Vec<&'a [u8]>,
    cseq: Vec<&'a [u8]>,
    call_id: usize,
    content_length: ContentLength,
}

impl<'a> Fields<'a> {
    fn scan(section: &'a [u8]) -> Result<Fields<'a>, SipReject> {
        let mut f = Fields {
            from: Vec::new(),
            to: Vec::new(),
            cseq: Vec::new(),
            call_id: 0,
            content_length: ContentLength::Absent,
        };
        for field in FieldIter::new(section) {
            let RawField::Field { name, value } = field else {
                return Err(SipReject::answer(400, "malformed header field"));
            };
            match KnownField::of(name) {
                KnownField::From => f.from.push(value),
                KnownField::To => f.to.push(value),
                KnownField::CSeq => f.cseq.push(value),
                KnownField::CallId => f.call_id += 1,
                KnownField::ContentLength => {
                    f.content_length = merge_content_length(f.content_length, &unfold(value));
                }
                KnownField::Via | KnownField::Other => {}
            }
        }
        Ok(f)
    }
}

/// RFC 3261 §20.14: `Content-Length = ( "Content-Length" / "l" ) HCOLON 1*DIGIT`.
fn merge_content_length(so_far: ContentLength, value: &[u8]) -> ContentLength {
    let parsed = parse_decimal(value).and_then(|n| usize::try_from(n).ok());
    match (so_far, parsed) {
        (ContentLength::Invalid, _) | (_, None) => ContentLength::Invalid,
        (ContentLength::Conflicting, Some(_)) => ContentLength::Conflicting,
        (ContentLength::Absent, Some(n)) => ContentLength::Value(n),
        (ContentLength::Value(m), Some(n)) if m == n => ContentLength::Value(n),
        (ContentLength::Value(_), Some(_)) => ContentLength::Conflicting,
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The header fields the sniffer and the reject answer use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KnownField {
    From,
    To,
    CallId,
    CSeq,
    Via,
    ContentLength,
    Other,
}

/// RFC 3261 §7.3.3: "SIP provides a mechanism to represent common header field names
/// in an abbreviated form." [...] "Implementations MUST accept both the long and short
/// forms of each header name." The compact forms of RFC 3261 §20.
const COMPACT_FORMS: [(u8, &[u8]); 10] = [
    (b'c', b"Content-Type"),
    (b'e', b"Content-Encoding"),
    (b'f', b"From"),
    (b'i', b"Call-ID"),
    (b'k', b"Supported"),
    (b'l', b"Content-Length"),
    (b'm', b"Contact"),
    (b's', b"Subject"),
    (b't', b"To"),
    (b'v', b"Via"),
];

/// The long form of a header name (itself if it is not a compact form).
fn long_name(name: &[u8]) -> &[u8] {
    if let [letter] = name {
        let letter = letter.to_ascii_lowercase();
        if let Some((_, long)) = COMPACT_FORMS.iter().find(|(short, _)| *short == letter) {
            return long;
        }
    }
    name
}

impl KnownField {
    /// RFC 3261 §7.3.1: field names are case-insensitive.
    fn of(name: &[u8]) -> KnownField {
        let name = long_name(name);
        let known = [
            (&b"From"[..], KnownField::From),
            (b"To", KnownField::To),
            (b"Call-ID", KnownField::CallId),
            (b"CSeq", KnownField::CSeq),
            (b"Via", KnownField::Via),
            (b"Content-Length", KnownField::ContentLength),
        ];
        known
            .iter()
            .find(|(long, _)| name.eq_ignore_ascii_case(long))
            .map_or(KnownField::Other, |&(_, field)| field)
    }
}

/// One logical header field of a header section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawField<'a> {
    /// `name` as sent; `value` from after the colon to the end of its last
    /// continuation line (folds included, final line end excluded).
    Field { name: &'a [u8], value: &'a [u8] },
    /// A line that is not `token *WSP ":" ...`, or a continuation line without a
    /// field before it.
    Malformed,
}

/// The logical header fields of a header section, up to the blank line.
///
/// RFC 3261 §7.3.1: "Header fields can be extended over multiple lines by preceding
/// each extra line with at least one SP or horizontal tab (HT). The line break and the
/// whitespace at the beginning of the next line are treated as a single SP
/// character."
struct FieldIter<'a> {
    section: &'a [u8],
    pos: usize,
}

impl<'a> FieldIter<'a> {
    fn new(section: &'a [u8]) -> Self {
        FieldIter { section, pos: 0 }
    }

    /// The physical line at `pos`: (content start, content end without CR/LF, start
    /// of the next line), or `None` at the end of the section.
    fn line_at(&self, pos: usize) -> Option<(usize, usize, usize)> {
        let rest = self.section.get(pos..).filter(|r| !r.is_empty())?;
        let (end, next) = match memchr::memchr(b'\n', rest) {
            Some(lf) => (pos + lf, pos + lf + 1),
            None => (self.section.len(), self.section.len()),
        };
        let content_end = if end > pos && self.section.get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        };
        Some((pos, content_end, next))
    }

    fn starts_with_wsp(&self, at: usize) -> bool {
        self.section.get(at).is_some_and(|&b| is_wsp(b))
    }
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = RawField<'a>;

    fn next(&mut self) -> Option<RawField<'a>> {
        let (start, end, next) = self.line_at(self.pos)?;
        if start == end {
            // The blank line that ends the head.
            self.pos = self.section.len();
            return None;
        }
        self.pos = next;
        if self.starts_with_wsp(start) {
            return Some(RawField::Malformed);
        }
        let line = self.section.get(start..end).unwrap_or_default();
        let mut c = Cursor::new(line);
        // RFC 3261 §25.1: header-name = token; HCOLON = *( SP / HTAB ) ":" SWS.
        let name = c.take_while(is_token);
        c.take_while(is_wsp);
        if name.is_empty() || !c.eat(b':') {
            return Some(RawField::Malformed);
        }
        let value_start = start + c.pos();
        let mut value_end = end;
        while let Some((s, e, n)) = self.line_at(self.pos) {
            if s == e || !self.starts_with_wsp(s) {
                break;
            }
            value_end = e;
            self.pos = n;
        }
        let value = self.section.get(value_start..value_end).unwrap_or_default();
        Some(RawField::Field { name, value })
    }
}

/// A field value with each fold (line end plus the whitespace starting the next
/// line) replaced by one SP, and leading and trailing whitespace removed.
fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut c = Cursor::new(raw);
    while let Some(b) = c.bump() {
        if b == b'\r' || b == b'\n' {
            c.take_while(|b| b == b'\r' || b == b'\n' || is_wsp(b));
            out.push(b' ');
        } else {
            out.push(b);
        }
    }
    trim_wsp(&out).to_vec()
}

/// A From or To value split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Address<'a> {
    /// The URI, checked to be `scheme ":" 1*uri-char`.
    uri: &'a [u8],
    /// Whether a `tag` header parameter is present.
    has_tag: bool,
}

/// Parse an unfolded From or To value. `None` if malformed.
///
/// RFC 3261 §20.20, §20.39, §25.1:
/// ```text
/// from-spec    = ( name-addr / addr-spec ) *( SEMI from-param )
/// name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
/// display-name = *(token LWS) / quoted-string
/// quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
/// quoted-pair  = "\" (%x00-09 / %x0B-0C / %x0E-7F)
/// generic-param = token [ EQUAL gen-value ]
/// gen-value    = token / host / quoted-string
/// ```
/// RFC 3261 §20.10: "Even if the "display-name" is empty, the "name-addr" form MUST
/// be used if the "addr-spec" contains a comma, semicolon, or question mark." So in
/// the addr-spec form the URI ends at the first `;` (the rest are header parameters).
/// A display name may be a quoted string containing `<`, `@`, `;` or escaped quotes;
/// an unquoted one is tokens (UTF-8 also accepted), so `Bell, Alexander <...>` is
/// refused (RFC 4475 §3.1.2.15), and so is LWS inside `<>` (§3.1.2.14).
fn parse_address(value: &[u8]) -> Option<Address<'_>> {
    let mut c = Cursor::new(value);
    c.take_while(is_wsp);
    let uri = if c.peek() == Some(b'"') {
        skip_quoted_string(&mut c)?;
        c.take_while(is_wsp);
        if !c.eat(b'<') {
            return None;
        }
        bracketed_uri(&mut c)?
    } else {
        let mark = c.pos();
        // RFC 4475 §3.1.1.6: no LWS is needed between a display name and "<".
        c.take_while(|b| is_token(b) || is_wsp(b) || b >= 0x80);
        if c.eat(b'<') {
            bracketed_uri(&mut c)?
        } else {
            c.set_pos(mark);
            c.take_while(|b| b != b';' && !is_wsp(b))
        }
    };
    split_scheme(uri)?;
    if !uri.iter().all(|&b| is_uri_char(b)) {
        return None;
    }
    let has_tag = parse_params(&mut c)?;
    Some(Address { uri, has_tag })
}

/// The URI after `<` up to `>`, which is consumed.
fn bracketed_uri<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let uri = c.take_while(|b| b != b'>');
    c.eat(b'>').then_some(uri)
}

/// Skip a quoted string starting at `"`; `None` if it is not terminated.
fn skip_quoted_string(c: &mut Cursor<'_>) -> Option<()> {
    if !c.eat(b'"') {
        return None;
    }
    loop {
        match c.bump()? {
            b'"' => return Some(()),
            b'\\' => {
                // quoted-pair: any octet but CR and LF (unfolded values have none).
                c.bump()?;
            }
            _ => {}
        }
    }
}

/// `*( SEMI generic-param )` until the end of the value. Returns whether a `tag`
/// parameter is present; `None` if malformed (anything else after the address, such
/// as a second address after a comma).
fn parse_params(c: &mut Cursor<'_>) -> Option<bool> {
    let mut has_tag = false;
    loop {
        c.take_while(is_wsp);
        if c.peek().is_none() {
            return Some(has_tag);
        }
        if !c.eat(b';') {
            return None;
        }
        c.take_while(is_wsp);
        let name = c.take_while(is_token);
        if name.is_empty() {
            return None;
        }
        has_tag |= name.eq_ignore_ascii_case(b"tag");
        c.take_while(is_wsp);
        if c.eat(b'=') {
            c.take_while(is_wsp);
            if c.peek() == Some(b'"') {
                skip_quoted_string(c)?;
            } else {
                // token / host (IPv6 references included)
                let value = c.take_while(|b| b != b';' && b != b',' && !is_wsp(b));
                if value.is_empty() {
                    return None;
                }
            }
        }
    }
}

/// What routing takes from a SIP URI.
struct SipUri {
    domain: String,
    user: Option<String>,
}

/// Parse the From URI into the routing key.
///
/// RFC 3261 §19.1.1, §25.1:
/// ```text
/// SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
/// SIPS-URI = "sips:" [ userinfo ] hostport uri-parameters [ headers ]
/// userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
/// hostport = host [ ":" port ]
/// host     = hostname / IPv4address / IPv6reference
/// ```
/// plus the innovaphone registration location: `host [ "/" location ] [ ":" port ]`
/// (either order with the port), location = 1*( ALPHA / DIGIT / "-" / "." / "_" /
/// "~" ). `@` cannot appear unescaped in a valid SIP URI except to end the userinfo,
/// so the first `@` splits userinfo from host; user-unreserved `;` and `?` stay in the
/// user part (RFC 4475 §3.1.1.9).
fn parse_sip_uri(uri: &[u8]) -> Result<SipUri, SipReject> {
    let (scheme, rest) = split_scheme(uri).ok_or(BAD_FROM)?;
    if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
        return Err(NOT_SIP_URI);
    }
    let (userinfo, hostport) = match memchr::memchr(b'@', rest) {
        Some(at) => (rest.get(..at), rest.get(at + 1..).unwrap_or_default()),
        None => (None, rest),
    };
    let user = match userinfo {
        Some(userinfo) => {
            let user = userinfo.split(|&b| b == b':').next().unwrap_or_default();
            if user.is_empty() || !escapes_valid(user) {
                return Err(BAD_FROM_URI);
            }
            // `parse_address` accepted only visible ASCII in the URI.
            Some(String::from_utf8_lossy(user).into_owned())
        }
        None => None,
    };

    let mut c = Cursor::new(hostport);
    let mut domain = String::new();
    if c.peek() == Some(b'[') {
        // IPv6reference = "[" IPv6address "]"
        let literal = c.take_while(|b| b != b']');
        let inner = literal.get(1..).unwrap_or_default();
        let ipv6_ok = c.eat(b']')
            && inner.contains(&b':')
            && inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ipv6_ok {
            return Err(BAD_FROM_URI);
        }
        push_lower(&mut domain, literal);
        domain.push(']');
    } else {
        let host = c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        // One trailing dot names the same (fully qualified) host.
        let host = host.strip_suffix(b".").unwrap_or(host);
        if host.is_empty() {
            return Err(BAD_FROM_URI);
        }
        push_lower(&mut domain, host);
    }
    let (mut port_seen, mut location_seen) = (false, false);
    loop {
        match c.peek() {
            Some(b':') if !port_seen => {
                c.bump();
                let port = c.take_while(|b| b.is_ascii_digit());
                if port.is_empty() || port.len() > 5 || parse_decimal(port).unwrap_or(0) > 65535 {
                    return Err(BAD_FROM_URI);
                }
                port_seen = true;
            }
            Some(b'/') if !location_seen => {
                c.bump();
                let location = c.take_while(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
                });
                if location.is_empty() {
                    return Err(BAD_FROM_URI);
                }
                domain.push('/');
                push_lower(&mut domain, location);
                location_seen = true;
            }
            // uri-parameters and headers are not part of the key.
            None | Some(b';' | b'?') => break,
            Some(_) => return Err(BAD_FROM_URI),
        }
    }
    Ok(SipUri { domain, user })
}

/// Every `%` is followed by two hex digits (RFC 3261 §25.1: escaped = "%" HEXDIG
/// HEXDIG).
fn escapes_valid(s: &[u8]) -> bool {
    let mut c = Cursor::new(s);
    while let Some(b) = c.bump() {
        if b == b'%' {
            let hex = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit());
            if !(hex(c.bump()) && hex(c.bump())) {
                return false;
            }
        }
    }
    true
}

/// Append ASCII bytes lower-cased (callers pass only ASCII).
fn push_lower(out: &mut String, ascii: &[u8]) {
    out.extend(ascii.iter().map(|&b| char::from(b.to_ascii_lowercase())));
}

/// `scheme ":" rest` with RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" /
/// "." )` and a non-empty rest.
fn split_scheme(uri: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', uri)?;
    let scheme = uri.get(..colon)?;
    let rest = uri.get(colon + 1..)?;
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (scheme_ok && !rest.is_empty()).then_some((scheme, rest))
}

/// Octets allowed in a URI here: visible ASCII except `<`, `>` and `"`.
fn is_uri_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'<' | b'>' | b'"')
}

/// RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" /
/// "`" / "'" / "~" ).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// WSP = SP / HTAB
fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(mut s: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = s.split_first() {
        if !is_wsp(b) {
            break;
        }
        s = rest;
    }
    trim_end_wsp(s)
}

fn trim_end_wsp(mut s: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = s.split_last() {
        if !is_wsp(b) {
            break;
        }
        s = rest;
    }
    s
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// The one checked cursor every text parser here goes through: no accessor can index
/// out of bounds, and `pos` never passes the end.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn pos(&self) -> usize {
        self.pos
    }

    /// Move back to a position returned by [`Cursor::pos`].
    fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.buf.len());
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> bool {
        let found = self.peek() == Some(want);
        if found {
            self.pos += 1;
        }
        found
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }
}

/// Write a SIP response to a parsed request into `out` (cleared first), for the
/// 403/404 a routing reject answers with, built by the rules for a server that
/// generates a response itself (RFC 3261 §8.2.6):
///
/// ```text
/// SIP/2.0 <status> <reason_phrase>
/// Via: ...          (every Via value, in order)
/// From: ...
/// To: ...;tag=...   (a tag added if the request's To has none)
/// Call-ID: ...
/// CSeq: ...
/// Content-Length: 0
/// ```
/// RFC 3261 §8.2.6.2: "The From field of the response MUST equal the From header field
/// of the request. The Call-ID header field of the response MUST equal the Call-ID
/// header field of the request. The CSeq header field of the response MUST equal the
/// CSeq field of the request. The Via header field values in the response MUST equal
/// the Via header field values in the request and MUST maintain the same ordering."
/// and "if the To header field in the request did not contain a tag, the URI in the To
/// header field in the response MUST equal the URI in the To header field;
/// additionally, the UAS MUST add a tag to the To header field in the response".
///
/// Values are copied with folds joined to one SP; names are written in long form
/// (`v:` becomes `Via:`), which compares equal (RFC 3261 §7.3.3). The added tag is
/// derived from the Call-ID (FNV-1a, 16 hex digits): the same request always gets the
/// same answer, and no randomness is needed. Headers missing from the request are
/// left out. CR, LF and other control octets in `reason_phrase` are dropped. No
/// `received` parameter is added to the top Via: the answer goes back on the
/// connection the request came on (RFC 3261 §18.2.2).
pub fn write_response(
    buf: &[u8],
    req: &SipRequest,
    status: u16,
    reason_phrase: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    let head = buf.get(..req.head_len).unwrap_or(buf);
    write_response_for_head(head, status, reason_phrase.as_bytes(), out);
}

/// Write the answer for a reject that has a status (see [`SipReject::status`]) into
/// `out` (cleared first), like [`write_response`] with the reject's reason as the
/// reason phrase (e.g. `SIP/2.0 400 duplicate From`). `buf` and `limits` are those
/// given to [`parse_request`]. Returns `false` and leaves `out` empty when there is
/// nothing to answer (no status, or no complete head in `buf`).
pub fn write_reject_response(
    buf: &[u8],
    limits: &Limits,
    reject: &SipReject,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let Some(status) = reject.status else {
        return false;
    };
    let window = buf.get(..limits.max_head).unwrap_or(buf);
    let Lead::At(start) = skip_keepalive(window) else {
        return false;
    };
    let Some(end) = head_end(window, start) else {
        return false;
    };
    let head = window.get(..end).unwrap_or_default();
    write_response_for_head(head, status, reject.reason.as_bytes(), out);
    true
}

fn write_response_for_head(head: &[u8], status: u16, reason_phrase: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    extend_sanitised(out, reason_phrase);
    out.extend_from_slice(b"\r\n");

    let start = match skip_keepalive(head) {
        Lead::At(start) => start,
        Lead::NeedMore | Lead::NotSip => 0,
    };
    let section = header_section(head, start);
    let fields = || {
        FieldIter::new(section).filter_map(|f| match f {
            RawField::Field { name, value } => Some((KnownField::of(name), value)),
            RawField::Malformed => None,
        })
    };
    let first = |want: KnownField| fields().find(|&(k, _)| k == want).map(|(_, v)| v);

    for (_, via) in fields().filter(|&(k, _)| k == KnownField::Via) {
        write_field(out, b"Via", &unfold(via), None);
    }
    let call_id = first(KnownField::CallId).map(unfold);
    if let Some(from) = first(KnownField::From) {
        write_field(out, b"From", &unfold(from), None);
    }
    if let Some(to) = first(KnownField::To) {
        let to = unfold(to);
        let needs_tag = parse_address(&to).is_some_and(|a| !a.has_tag);
        let tag = needs_tag.then(|| to_tag(call_id.as_deref().unwrap_or_default()));
        write_field(out, b"To", &to, tag.as_ref().map(|t| &t[..]));
    }
    if let Some(call_id) = &call_id {
        write_field(out, b"Call-ID", call_id, None);
    }
    if let Some(cseq) = first(KnownField::CSeq) {
        write_field(out, b"CSeq", &unfold(cseq), None);
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// `name: value[;tag=tag]` CRLF.
fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], tag: Option<&[u8]>) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    if let Some(tag) = tag {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(tag);
    }
    out.extend_from_slice(b"\r\n");
}

/// A To tag derived from the Call-ID: FNV-1a 64 as 16 lower-case hex digits.
fn to_tag(call_id: &[u8]) -> [u8; 16] {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = call_id
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    let mut tag = [0u8; 16];
    for (i, digit) in tag.iter_mut().enumerate() {
        // `i` < 16, so the shift is at most 60.
        let nibble = (hash >> (60 - 4 * i)) & 0xf;
        *digit = b"0123456789abcdef"
            .get(nibble as usize)
            .copied()
            .unwrap_or(b'0');
    }
    tag
}

/// Append `s` without CR, LF and other control octets (HTAB kept).
fn extend_sanitised(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(
        s.iter()
            .copied()
            .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
    );
}

/// Copy the request head into `out` (cleared first) with a `Record-Route` header
/// field carrying `record_route` (the whole value, e.g.
/// `<sip:203.0.113.7:5060;transport=tcp;lr>`) inserted right after the Request-Line,
/// so it is the topmost Record-Route.
///
/// RFC 3261 §16.6 step 4: the proxy "MUST insert a Record-Route header field value
/// into the copy before any existing Record-Route header field values, even if a Route
/// header field is already present." Inserting a field line of its own before every
/// other field line does that without touching the others. Every other byte of the
/// head is copied unchanged (keep-alive CRLFs included); the inserted line ends like
/// the Request-Line (CRLF, or LF if the client used bare LFs). The body is not part of
/// the head: the caller forwards `buf[req.head_len..]` unchanged, so Content-Length
/// stays right. CR, LF and control octets in `record_route` are dropped.
pub fn write_with_record_route(
    buf: &[u8],
    req: &SipRequest,
    record_route: &str,
    out: &mut Vec<u8>,
) {
    out.clear();
    let head = buf.get(..req.head_len).unwrap_or(buf);
    out.reserve(head.len() + record_route.len() + 16);
    let start = match skip_keepalive(head) {
        Lead::At(start) => start,
        Lead::NeedMore | Lead::NotSip => 0,
    };
    let request_line_end = head
        .get(start..)
        .and_then(|rest| memchr::memchr(b'\n', rest))
        .map(|lf| start + lf);
    let Some(lf) = request_line_end else {
        // Not a head `parse_request` accepted: copy it as it is.
        out.extend_from_slice(head);
        return;
    };
    let crlf = lf > 0 && head.get(lf - 1) == Some(&b'\r');
    out.extend_from_slice(head.get(..=lf).unwrap_or_default());
    out.extend_from_slice(b"Record-Route: ");
    extend_sanitised(out, record_route.as_bytes());
    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    out.extend_from_slice(head.get(lf + 1..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::tests::for_each_mutation;

    const LIMITS: Limits = Limits {
        max_head: 16 * 1024,
    };

    fn req(buf: &[u8]) -> Sniff<SipRequest, SipReject> {
        parse_request(buf, &LIMITS)
    }

    fn done(buf: &[u8]) -> SipRequest {
        match req(buf) {
            Sniff::Done(r) => r,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn rejected(buf: &[u8], status: Option<u16>, reason: &str) {
        match req(buf) {
            Sniff::Reject(r) => assert_eq!(
                (r.status, r.reason),
                (status, reason),
                "{:?}",
                String::from_utf8_lossy(buf)
            ),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// A request with the given From value (and otherwise ordinary fields).
    fn with_from(from: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:dvl-ckl2.net SIP/2.0\r\n\
             Via: SIP/2.0/TCP 192.0.2.10:49152;branch=z9hG4bK776asdhds\r\n\
             From: {from}\r\n\
             To: <sip:4711@dvl-ckl2.net>\r\n\
             Call-ID: 843817637684230@998sdasdh09\r\n\
             CSeq: 1826 REGISTER\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    const REGISTER: &[u8] = b"REGISTER sip:dvl-ckl2.net SIP/2.0\r\n\
        Via: SIP/2.0/TCP 192.0.2.10:49152;branch=z9hG4bK776asdhds;rport\r\n\
        Max-Forwards: 70\r\n\
        From: \"Anna Alt\" <sip:4711@dvl-ckl2.net>;tag=a73kszlfl\r\n\
        To: \"Anna Alt\" <sip:4711@dvl-ckl2.net>\r\n\
        Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n\
        CSeq: 1 REGISTER\r\n\
        Contact: <sip:4711@192.0.2.10:49152;transport=tcp>;expires=3600\r\n\
        Content-Length: 0\r\n\r\n";

    const INVITE_SDP: &[u8] = b"INVITE sip:200@dvl-ckl2.net SIP/2.0\r\n\
        Via: SIP/2.0/TLS 192.0.2.10:49153;branch=z9hG4bKnashds8\r\n\
        Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK77ef4c2312983.1, SIP/2.0/TLS 10.0.0.2\r\n\
        Max-Forwards: 70\r\n\
        To: <sip:200@dvl-ckl2.net>\r\n\
        From: Anna <sips:4711@DVL-CKL2.NET:5061/Branch-B;transport=tls>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sips:4711@192.0.2.10:49153;transport=tls>\r\n\
        Record-Route: <sip:10.0.0.1;lr>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 32\r\n\r\n\
        v=0\r\no=- 0 0 IN IP4 192.0.2.10\r\n";

    const COMPACT: &[u8] = b"SUBSCRIBE sip:4711@dvl-ckl2.net SIP/2.0\r\n\
        v: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKa\r\n\
        f: <sip:4711@dvl-ckl2.net/branch-b>;tag=x\r\n\
        t: <sip:4711@dvl-ckl2.net/branch-b>\r\n\
        i: 7@192.0.2.10\r\n\
        CSeq: 7 SUBSCRIBE\r\n\
        o: presence\r\n\
        m: <sip:4711@192.0.2.10>\r\n\
        k: path\r\n\
        L: 0\r\n\r\n";

    const FOLDED: &[u8] = b"OPTIONS sip:dvl-ckl2.net SIP/2.0\r\n\
        Via: SIP/2.0/TCP 192.0.2.10\r\n \t;branch=z9hG4bKf\r\n\
        From:\r\n \"Folded\r\n Name\"\r\n <sip:4711@dvl-ckl2.net>\r\n\
        \t;tag=9\r\n\
        To  :  <sip:dvl-ckl2.net>\r\n\
        Call-ID: f1\r\n\
        CSeq: 2\r\n  OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    const KEEPALIVE: &[u8] = b"\r\n\r\n\r\nREGISTER sip:dvl-ckl2.net SIP/2.0\r\n\
        Via: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKk\r\n\
        From: <sip:4711@dvl-ckl2.net>;tag=k\r\n\
        To: <sip:4711@dvl-ckl2.net>\r\n\
        Call-ID: k1\r\n\
        CSeq: 3 REGISTER\r\n\
        Content-Length: 0\r\n\r\n";

    const BARE_LF: &[u8] = b"\nINVITE sip:200@dvl-ckl2.net SIP/2.0\n\
        Via: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKlf\n\
        From: sip:4711@dvl-ckl2.net;tag=lf\n\
        To: sip:200@dvl-ckl2.net\n\
        Call-ID: lf1\n\
        CSeq: 1 INVITE\n\
        Content-Length: 2\n\nok";

    const VALID: [&[u8]; 6] = [REGISTER, INVITE_SDP, COMPACT, FOLDED, KEEPALIVE, BARE_LF];

    /// Every strict prefix of a valid head is Incomplete, the whole head is Done.
    fn check_all_prefixes(msg: &[u8]) {
        let head_len = done(msg).head_len;
        for n in 0..head_len {
            let prefix = &msg[..n];
            match req(prefix) {
                Sniff::Incomplete => {}
                other => panic!("prefix {:?}: {other:?}", String::from_utf8_lossy(prefix)),
            }
        }
        let head = done(&msg[..head_len]);
        assert_eq!(head.head_len, head_len);
    }

    #[test]
    fn sip_prefixes_are_incomplete() {
        for msg in VALID {
            check_all_prefixes(msg);
        }
        for (_, msg, expect) in &TORTURE {
            if let Expect::Done(..) = expect {
                check_all_prefixes(msg);
            }
        }
    }

    #[test]
    fn sip_valid_requests() {
        let r = done(REGISTER);
        assert_eq!(r.head_len, REGISTER.len());
        assert_eq!(r.body_len, 0);
        assert_eq!(r.method, Method::Register);
        assert_eq!(&REGISTER[r.method_range.clone()], b"REGISTER");
        assert_eq!(r.domain, "dvl-ckl2.net");
        assert_eq!(r.from_user.as_deref(), Some("4711"));
        assert_eq!(r.from_uri, "sip:4711@dvl-ckl2.net");

        let r = done(INVITE_SDP);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.body_len, 32);
        assert_eq!(r.head_len + r.body_len, INVITE_SDP.len());
        assert_eq!(r.domain, "dvl-ckl2.net/branch-b");
        assert_eq!(
            r.from_uri,
            "sips:4711@DVL-CKL2.NET:5061/Branch-B;transport=tls"
        );

        let r = done(COMPACT);
        assert_eq!(
            (r.method, r.domain.as_str()),
            (Method::Subscribe, "dvl-ckl2.net/branch-b")
        );

        let r = done(FOLDED);
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.domain, "dvl-ckl2.net");
        assert_eq!(r.from_uri, "sip:4711@dvl-ckl2.net");

        let r = done(KEEPALIVE);
        assert_eq!(r.head_len, KEEPALIVE.len());
        assert_eq!(r.method_range, 6..14);

        let r = done(BARE_LF);
        assert_eq!((r.head_len, r.body_len), (BARE_LF.len() - 2, 2));
        assert_eq!(r.method_range, 1..7);
        assert_eq!(r.domain, "dvl-ckl2.net");

        // Pipelined bytes after the head do not matter.
        let mut two = REGISTER.to_vec();
        two.extend_from_slice(INVITE_SDP);
        assert_eq!(done(&two).head_len, REGISTER.len());
    }

    #[test]
    fn sip_methods() {
        let cases: [(&str, Method); 17] = [
            ("REGISTER", Method::Register),
            ("INVITE", Method::Invite),
            ("OPTIONS", Method::Options),
            ("SUBSCRIBE", Method::Subscribe),
            ("NOTIFY", Method::Notify),
            ("REFER", Method::Refer),
            ("MESSAGE", Method::Message),
            ("PUBLISH", Method::Publish),
            ("INFO", Method::Info),
            ("UPDATE", Method::Update),
            ("ACK", Method::Ack),
            ("BYE", Method::Bye),
            ("CANCEL", Method::Cancel),
            ("PRACK", Method::Prack),
            ("invite", Method::Other),
            ("NEWMETHOD", Method::Other),
            ("RE%47IST%45R", Method::Other),
        ];
        for (token, method) in cases {
            let buf = format!(
                "{token} sip:a@dvl-ckl2.net SIP/2.0\r\nFrom: <sip:a@dvl-ckl2.net>\r\n\
                 CSeq: 1 {token}\r\n\r\n"
            );
            let r = done(buf.as_bytes());
            assert_eq!(r.method, method, "{token}");
            assert_eq!(&buf.as_bytes()[r.method_range], token.as_bytes());
        }
        let dialog: Vec<Method> = cases
            .iter()
            .map(|&(_, m)| m)
            .filter(|&m| is_dialog_creating(m))
            .collect();
        assert_eq!(dialog, [Method::Invite, Method::Subscribe, Method::Refer]);
    }

    #[test]
    fn sip_from_domains() {
        let cases: [(&str, &str, Option<&str>); 18] = [
            ("<sip:4711@dvl-ckl2.net>", "dvl-ckl2.net", Some("4711")),
            ("sip:4711@dvl-ckl2.net", "dvl-ckl2.net", Some("4711")),
            ("sip:4711@dvl-ckl2.net;tag=x", "dvl-ckl2.net", Some("4711")),
            (
                "<sip:4711@dvl-ckl2.net/branch-b>;tag=1",
                "dvl-ckl2.net/branch-b",
                Some("4711"),
            ),
            (
                "sip:4711@dvl-ckl2.net/branch-b;tag=1",
                "dvl-ckl2.net/branch-b",
                Some("4711"),
            ),
            (
                "sip:4711@DVL-CKL2.NET:5061;tag=x",
                "dvl-ckl2.net",
                Some("4711"),
            ),
            (
                "<sips:Anna@DVL-CKL2.NET:5061/Branch-B;transport=tls>",
                "dvl-ckl2.net/branch-b",
                Some("Anna"),
            ),
            (
                "<sip:a@dvl-ckl2.net/branch-b:5060?x=y>",
                "dvl-ckl2.net/branch-b",
                Some("a"),
            ),
            (
                "\"Display, <Name> @ x;y\" <sip:a@b.example>;tag=z",
                "b.example",
                Some("a"),
            ),
            (
                "\"Quote \\\" inside <sip:evil@evil.example>\" <sip:good@good.example>",
                "good.example",
                Some("good"),
            ),
            ("Anna Alt <sip:anna@x.example>", "x.example", Some("anna")),
            ("J\u{f6}rg<sip:joerg@x.example>", "x.example", Some("joerg")),
            ("<sip:x.example>", "x.example", None),
            ("<sip:[2001:DB8::1]:5060>;tag=6", "[2001:db8::1]", None),
            (
                "sip:%40weird%20user@x.example;tag=1",
                "x.example",
                Some("%40weird%20user"),
            ),
            ("<sip:user:secret@x.example>", "x.example", Some("user")),
            ("<SIP:User@X.Example.>", "x.example", Some("User")),
            (
                "  <sip:a@x.example>  ;  tag = 1 ; lr ; q=\"a;b\"",
                "x.example",
                Some("a"),
            ),
        ];
        for (from, domain, user) in cases {
            let r = done(&with_from(from));
            assert_eq!(
                (r.domain.as_str(), r.from_user.as_deref()),
                (domain, user),
                "{from}"
            );
        }
    }

    #[test]
    fn sip_from_rejects() {
        let cases: [(&str, u16, &str); 19] = [
            ("<tel:+4930123>", 403, "From is not a SIP URI"),
            ("tel:+4930123;tag=1", 403, "From is not a SIP URI"),
            (
                "<http://www.example.com>;tag=3",
                403,
                "From is not a SIP URI",
            ),
            ("\"unterminated <sip:a@b.example>", 400, "malformed From"),
            ("<sip:a@b.example", 400, "malformed From"),
            ("< sip:a@b.example >", 400, "malformed From"),
            ("Bell, Alexander <sip:a@b.example>", 400, "malformed From"),
            (
                "<sip:a@b.example>, <sip:c@d.example>",
                400,
                "malformed From",
            ),
            ("<sip:a@b.example>garbage", 400, "malformed From"),
            ("<sip:a@b.example>;", 400, "malformed From"),
            ("<sip:a@b.example>;tag=", 400, "malformed From"),
            ("<>", 400, "malformed From"),
            ("<sip:a@>", 400, "malformed From URI"),
            ("<sip:@b.example>", 400, "malformed From URI"),
            ("<sip:a@b.example:99999>", 400, "malformed From URI"),
            ("<sip:a@b.example/>", 400, "malformed From URI"),
            ("<sip:a@b%41.example>", 400, "malformed From URI"),
            ("<sip:a%zz@b.example>", 400, "malformed From URI"),
            ("<sip:a@[::1>", 400, "malformed From URI"),
        ];
        for (from, status, reason) in cases {
            rejected(&with_from(from), Some(status), reason);
        }
    }

    #[test]
    fn sip_not_sip_is_rejected_early() {
        let cases: [(&[u8], &str); 9] = [
            (b"SIP/2.0 200 OK\r\n", "SIP response instead of a request"),
            (b"SIP/", "SIP response instead of a request"),
            (
                b"\r\n\r\nsip/2.0 180 Ringing\r\n\r\n",
                "SIP response instead of a request",
            ),
            (b"\x16\x03\x01\x02\x00\x01", "not a SIP request"),
            (b"GET / HTTP/1.1\r\n", "not a SIP request"),
            (b"INVITE\r\n\r\n", "not a SIP request"),
            (b" INVITE sip:a@b SIP/2.0\r\n", "not a SIP request"),
            (b"\rX", "not a SIP request"),
            (b"INVITE sip:a@b SIP\r\n", "not a SIP request"),
        ];
        for (buf, reason) in cases {
            rejected(buf, None, reason);
        }
        // The prefix of a valid request line is not refused.
        for buf in [
            &b""[..],
            b"\r",
            b"\r\n\r",
            b"SIP",
            b"INVITE",
            b"INVITE sip:a@b SIP/2.",
        ] {
            assert_eq!(req(buf), Sniff::Incomplete, "{buf:?}");
        }
    }

    #[test]
    fn sip_head_rejects() {
        let line = "INVITE sip:a@dvl-ckl2.net SIP/2.0\r\n";
        let from = "From: <sip:a@dvl-ckl2.net>\r\n";
        let cases: [(String, u16, &str); 16] = [
            (format!("{line}\r\n"), 400, "missing From"),
            (
                format!("{line}{from}f: <sip:b@x>\r\n\r\n"),
                400,
                "duplicate From",
            ),
            (
                format!("{line}{from}To: <sip:a@b>\r\nt: <sip:a@b>\r\n\r\n"),
                400,
                "duplicate To",
            ),
            (
                format!("{line}{from}i: 1\r\nCall-ID: 1\r\n\r\n"),
                400,
                "duplicate Call-ID",
            ),
            (
                format!("{line}{from}CSeq: 1 INVITE\r\nCSeq: 1 INVITE\r\n\r\n"),
                400,
                "duplicate CSeq",
            ),
            (
                format!("{line}{from}l: 5\r\nContent-Length: 6\r\n\r\n"),
                400,
                "conflicting Content-Length",
            ),
            (
                format!("{line}{from}Content-Length: 5x\r\n\r\n"),
                400,
                "invalid Content-Length",
            ),
            (
                format!("{line}{from}Content-Length:\r\n\r\n"),
                400,
                "invalid Content-Length",
            ),
            (
                format!("{line}{from}Content-Length: 99999999999999999999999\r\n\r\n"),
                400,
                "invalid Content-Length",
            ),
            (
                format!("{line}{from}CSeq: 2147483648 INVITE\r\n\r\n"),
                400,
                "invalid CSeq",
            ),
            (
                format!("{line}{from}CSeq: INVITE\r\n\r\n"),
                400,
                "invalid CSeq",
            ),
            (
                format!("{line}{from}CSeq: 1 invite\r\n\r\n"),
                400,
                "CSeq method differs from Request-Line",
            ),
            (
                format!("{line}{from}To: <sip:a@b\r\n\r\n"),
                400,
                "malformed To",
            ),
            (format!("{line} {from}\r\n"), 400, "malformed header field"),
            (
                format!("{line}{from}Bad Name: x\r\n\r\n"),
                400,
                "malformed header field",
            ),
            (
                format!("{line}{from}X-A: a\rb\r\n\r\n"),
                400,
                "CR without LF in head",
            ),
        ];
        for (buf, status, reason) in cases {
            rejected(buf.as_bytes(), Some(status), reason);
        }
        // Equal repeated Content-Length values are one; CSeq 2**31 - 1 is fine.
        let ok = format!("{line}{from}Content-Length: 0\r\nl:0\r\nCSeq: 2147483647 INVITE\r\n\r\n");
        assert_eq!(done(ok.as_bytes()).body_len, 0);
    }

    #[test]
    fn sip_request_line_rejects() {
        let rest = "From: <sip:a@dvl-ckl2.net>\r\n\r\n";
        let cases: [(&str, u16, &str); 8] = [
            ("INVITE sip:a@b SIP/3.0", 505, "unsupported SIP version"),
            ("INVITE sip:a@b SIP/2.0x", 400, "malformed Request-Line"),
            ("INVITE sip:a@b sip/2.0 ", 400, "malformed Request-Line"),
            ("INVITE SIP/2.0", 400, "malformed Request-Line"),
            ("INVITE sip:a@b\tSIP/2.0", 400, "malformed Request-Line"),
            ("INVITE sip:a@b?x=1 SIP/2.0", 400, "headers in Request-URI"),
            ("INVITE sip: SIP/2.0", 400, "malformed Request-URI"),
            ("INVITE \"sip:a@b\" SIP/2.0", 400, "malformed Request-URI"),
        ];
        for (line, status, reason) in cases {
            let buf = format!("{line}\r\n{rest}");
            rejected(buf.as_bytes(), Some(status), reason);
            // The answer waits for the complete head.
            assert_eq!(req(&buf.as_bytes()[..line.len() + 4]), Sniff::Incomplete);
        }
        // The SIP version is case-insensitive.
        done(format!("INVITE sip:a@b sip/2.0\r\n{rest}").as_bytes());
    }

    #[test]
    fn sip_limits() {
        let limits = Limits { max_head: 64 };
        assert_eq!(
            parse_request(REGISTER, &limits),
            Sniff::Reject(SipReject {
                status: None,
                reason: "head too large"
            })
        );
        assert_eq!(parse_request(&REGISTER[..63], &limits), Sniff::Incomplete);
        // Keep-alive CRLFs count against the limit.
        let pings = b"\r\n".repeat(40);
        assert_eq!(
            parse_request(&pings, &limits),
            Sniff::Reject(SipReject {
                status: None,
                reason: "head too large"
            })
        );
        let exact = Limits {
            max_head: REGISTER.len(),
        };
        assert!(matches!(parse_request(REGISTER, &exact), Sniff::Done(_)));
        assert_eq!(Limits::default().max_head, 16 * 1024);
        assert_eq!(
            SipReject {
                status: Some(403),
                reason: "x"
            }
            .to_string(),
            "403 x"
        );
        assert_eq!(NOT_SIP.to_string(), "not a SIP request");
    }

    /// Expected outcome of an RFC 4475 message.
    enum Expect {
        /// Routed: method, From domain, From user, body length.
        Done(Method, &'static str, Option<&'static str>, usize),
        Reject(Option<u16>, &'static str),
    }

    macro_rules! torture {
        ($name:literal) => {
            include_bytes!(concat!("../testdata/sip/", $name, ".sip"))
        };
    }

    /// RFC 4475 torture messages (transcribed, see testdata/sip/README.md) and what the
    /// sniffer does with them. "Done" for an invalid message means the error is in a
    /// part a router does not read; the target answers it.
    const TORTURE: [(&str, &[u8], Expect); 38] = [
        // §3.1.1.1: folding, LWS around colons, compact forms, escaped quotes.
        ("wsinv", torture!("wsinv"), Expect::Done(Method::Invite, "example.com", Some("jdrosen"), 150)),
        // §3.1.1.2: unknown method of all token characters, NUL in a quoted string.
        ("intmeth", torture!("intmeth"), Expect::Done(Method::Other, "example.com", Some("mundane"), 0)),
        // §3.1.1.3: escapes in the From user part are kept as sent.
        ("esc01", torture!("esc01"), Expect::Done(Method::Invite, "example.net", Some("I%20have%20spaces"), 150)),
        // §3.1.1.4
        ("escnull", torture!("escnull"), Expect::Done(Method::Register, "example.com", Some("null-%00-null"), 0)),
        // §3.1.1.5: RE%47IST%45R is not REGISTER.
        ("esc02", torture!("esc02"), Expect::Done(Method::Other, "example.com", Some("resource"), 0)),
        // §3.1.1.6
        ("lwsdisp", torture!("lwsdisp"), Expect::Done(Method::Options, "example.com", Some("caller"), 0)),
        // §3.1.1.7
        ("longreq", torture!("longreq"), Expect::Done(Method::Invite, "example.net", Some("amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername"), 150)),
        // §3.1.1.8: the head ends at the first blank line.
        ("dblreq", torture!("dblreq"), Expect::Done(Method::Register, "example.com", Some("j.user"), 0)),
        // §3.1.1.9
        ("semiuri", torture!("semiuri"), Expect::Done(Method::Options, "example.org", Some("caller"), 0)),
        // §3.1.1.10
        ("transports", torture!("transports"), Expect::Done(Method::Options, "example.com", Some("caller"), 0)),
        // §3.1.1.12, §3.1.1.13, §3.1.2.5, §3.1.2.19: responses are never a first message.
        ("unreason", torture!("unreason"), Expect::Reject(None, "SIP response instead of a request")),
        ("noreason", torture!("noreason"), Expect::Reject(None, "SIP response instead of a request")),
        ("scalarlg", torture!("scalarlg"), Expect::Reject(None, "SIP response instead of a request")),
        ("bigcode", torture!("bigcode"), Expect::Reject(None, "SIP response instead of a request")),
        // §3.1.2.1: the empty Via and Contact parameters are the target's business.
        ("badinv01", torture!("badinv01"), Expect::Done(Method::Invite, "example.net", Some("caller"), 152)),
        // §3.1.2.2: on TCP the relay just waits for the rest of the body.
        ("clerr", torture!("clerr"), Expect::Done(Method::Invite, "example.net", Some("caller"), 9999)),
        // §3.1.2.3
        ("ncl", torture!("ncl"), Expect::Reject(Some(400), "invalid Content-Length")),
        // §3.1.2.4: "respond with a 400 Bad Request due to the CSeq error".
        ("scalar02", torture!("scalar02"), Expect::Reject(Some(400), "invalid CSeq")),
        // §3.1.2.6
        ("quotbal", torture!("quotbal"), Expect::Reject(Some(400), "malformed To")),
        // §3.1.2.7
        ("ltgtruri", torture!("ltgtruri"), Expect::Reject(Some(400), "malformed Request-URI")),
        // §3.1.2.8
        ("lwsruri", torture!("lwsruri"), Expect::Reject(Some(400), "malformed Request-Line")),
        // §3.1.2.9
        ("lwsstart", torture!("lwsstart"), Expect::Reject(Some(400), "malformed Request-Line")),
        // §3.1.2.10
        ("trws", torture!("trws"), Expect::Reject(Some(400), "malformed Request-Line")),
        // §3.1.2.11
        ("escruri", torture!("escruri"), Expect::Reject(Some(400), "headers in Request-URI")),
        // §3.1.2.12: Date is not read.
        ("baddate", torture!("baddate"), Expect::Done(Method::Invite, "example.net", Some("caller"), 150)),
        // §3.1.2.13: Contact is not read.
        ("regbadct", torture!("regbadct"), Expect::Done(Method::Register, "example.com", Some("user"), 0)),
        // §3.1.2.14
        ("badaspec", torture!("badaspec"), Expect::Reject(Some(400), "malformed To")),
        // §3.1.2.15: From is checked before To.
        ("baddn", torture!("baddn"), Expect::Reject(Some(400), "malformed From")),
        // §3.1.2.16: "respond to the request with a 505 Version Not Supported error".
        ("badvers", torture!("badvers"), Expect::Reject(Some(505), "unsupported SIP version")),
        // §3.1.2.17, §3.1.2.18
        ("mismatch01", torture!("mismatch01"), Expect::Reject(Some(400), "CSeq method differs from Request-Line")),
        ("mismatch02", torture!("mismatch02"), Expect::Reject(Some(400), "CSeq method differs from Request-Line")),
        // §3.2.1: the branch parameter is not read.
        ("badbranch", torture!("badbranch"), Expect::Done(Method::Options, "example.org", Some("caller"), 0)),
        // §3.3.1: no From, no routing key.
        ("insuf", torture!("insuf"), Expect::Reject(Some(400), "missing From")),
        // §3.3.2, §3.3.3: any Request-URI scheme; the request routes on From.
        ("unkscm", torture!("unkscm"), Expect::Done(Method::Options, "example.net", Some("caller"), 0)),
        ("novelsc", torture!("novelsc"), Expect::Done(Method::Options, "example.net", Some("caller"), 0)),
        // §3.3.4
        ("unksm2", torture!("unksm2"), Expect::Reject(Some(403), "From is not a SIP URI")),
        // §3.3.8
        ("multi01", torture!("multi01"), Expect::Reject(Some(400), "duplicate From")),
        // §3.3.9
        ("mcl01", torture!("mcl01"), Expect::Reject(Some(400), "conflicting Content-Length")),
    ];

    #[test]
    fn sip_torture_messages() {
        let mut out = Vec::new();
        for (name, msg, expect) in &TORTURE {
            let got = req(msg);
            match (expect, &got) {
                (Expect::Done(method, domain, user, body_len), Sniff::Done(r)) => {
                    assert_eq!(
                        (
                            r.method,
                            r.domain.as_str(),
                            r.from_user.as_deref(),
                            r.body_len
                        ),
                        (*method, *domain, *user, *body_len),
                        "{name}"
                    );
                    assert_eq!(&msg[r.head_len - 2..r.head_len], b"\r\n", "{name}");
                    write_response(msg, r, 404, "Not Found", &mut out);
                    assert!(out.starts_with(b"SIP/2.0 404 Not Found\r\nVia: "), "{name}");
                }
                (Expect::Reject(status, reason), Sniff::Reject(r)) => {
                    assert_eq!((r.status, r.reason), (*status, *reason), "{name}");
                    let answered = write_reject_response(msg, &LIMITS, r, &mut out);
                    assert_eq!(answered, status.is_some(), "{name}");
                    assert_eq!(out.is_empty(), status.is_none(), "{name}");
                }
                _ => panic!("{name}: {got:?}"),
            }
        }
        // dblreq: the INVITE after the REGISTER is not part of the first head.
        let dblreq = torture!("dblreq");
        let r = done(dblreq);
        assert!(dblreq[r.head_len..].starts_with(b"INVITE sip:joe@example.com"));
    }

    #[test]
    fn sip_write_response() {
        let r = done(REGISTER);
        let mut out = b"stale".to_vec();
        write_response(REGISTER, &r, 403, "Forbidden", &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "SIP/2.0 403 Forbidden\r\n\
             Via: SIP/2.0/TCP 192.0.2.10:49152;branch=z9hG4bK776asdhds;rport\r\n\
             From: \"Anna Alt\" <sip:4711@dvl-ckl2.net>;tag=a73kszlfl\r\n\
             To: \"Anna Alt\" <sip:4711@dvl-ckl2.net>;tag=bd46981e786f3b48\r\n\
             Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n\
             CSeq: 1 REGISTER\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(to_tag(b"1j9FpLxk3uxtm8tn@192.0.2.10"), *b"bd46981e786f3b48");

        // Compact and folded fields come out in long form, one line each, Vias in
        // order; a To that has a tag keeps it; no Call-ID: no Call-ID line.
        let buf = b"\r\nINVITE sip:200@dvl-ckl2.net SIP/2.0\r\n\
            v: SIP/2.0/TCP a.example;branch=z9hG4bK1,\r\n SIP/2.0/TCP b.example\r\n\
            f: <sip:4711@dvl-ckl2.net>;tag=1\r\n\
            VIA: SIP/2.0/TCP c.example\r\n\
            t: <sip:200@dvl-ckl2.net>;TAG=2\r\n\
            cseq: 5\r\n INVITE\r\n\r\n";
        let r = done(buf);
        write_response(buf, &r, 404, "Not\r\nFound", &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "SIP/2.0 404 NotFound\r\n\
             Via: SIP/2.0/TCP a.example;branch=z9hG4bK1, SIP/2.0/TCP b.example\r\n\
             Via: SIP/2.0/TCP c.example\r\n\
             From: <sip:4711@dvl-ckl2.net>;tag=1\r\n\
             To: <sip:200@dvl-ckl2.net>;TAG=2\r\n\
             CSeq: 5 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );

        // Only what is there; a mismatched buffer or request never panics.
        let bare = b"OPTIONS sip:x SIP/2.0\r\nFrom: sip:a@b.example\r\n\r\n";
        let r = done(bare);
        write_response(bare, &r, 404, "Not Found", &mut out);
        assert_eq!(
            out,
            b"SIP/2.0 404 Not Found\r\nFrom: sip:a@b.example\r\nContent-Length: 0\r\n\r\n"
        );
        let r = done(INVITE_SDP);
        write_response(b"", &r, 404, "", &mut out);
        assert_eq!(out, b"SIP/2.0 404 \r\nContent-Length: 0\r\n\r\n");
        write_response(b"garbage\r\nFrom: x\r\n", &r, 403, "F", &mut out);
        assert_eq!(
            out,
            b"SIP/2.0 403 F\r\nFrom: x\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn sip_write_reject_response() {
        let buf = b"\r\nINVITE <sip:a@b> SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\
            From: <sip:a@b>;tag=1\r\nTo: sip:a@b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\nbody";
        let Sniff::Reject(reject) = req(buf) else {
            panic!()
        };
        let mut out = Vec::new();
        assert!(write_reject_response(buf, &LIMITS, &reject, &mut out));
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!(
                "SIP/2.0 400 malformed Request-URI\r\n\
                 Via: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\
                 From: <sip:a@b>;tag=1\r\n\
                 To: sip:a@b;tag={}\r\n\
                 Call-ID: c\r\n\
                 CSeq: 1 INVITE\r\n\
                 Content-Length: 0\r\n\r\n",
                std::str::from_utf8(&to_tag(b"c")).unwrap()
            )
        );
        assert!(!write_reject_response(
            b"GET / HTTP/1.1\r\n",
            &LIMITS,
            &NOT_SIP,
            &mut out
        ));
        assert!(out.is_empty());
        // A status but no complete head (the caller mixed things up): no answer.
        let odd = SipReject::answer(400, "x");
        assert!(!write_reject_response(
            b"INVITE sip:a SIP/2.0\r\n",
            &LIMITS,
            &odd,
            &mut out
        ));
    }

    #[test]
    fn sip_write_with_record_route() {
        let rr = "<sip:203.0.113.7:5060;transport=tcp;lr>";
        let r = done(INVITE_SDP);
        let mut out = b"stale".to_vec();
        write_with_record_route(INVITE_SDP, &r, rr, &mut out);
        let line_end = INVITE_SDP.iter().position(|&b| b == b'\n').unwrap() + 1;
        let mut want = INVITE_SDP[..line_end].to_vec();
        want.extend_from_slice(b"Record-Route: <sip:203.0.113.7:5060;transport=tcp;lr>\r\n");
        want.extend_from_slice(&INVITE_SDP[line_end..r.head_len]);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            String::from_utf8(want).unwrap()
        );
        // The new Record-Route comes before the existing one.
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.find("Record-Route: <sip:203").unwrap()
                < text.find("Record-Route: <sip:10.0").unwrap()
        );
        // With the body appended unchanged, the result parses to the same key and body.
        out.extend_from_slice(&INVITE_SDP[r.head_len..]);
        let again = done(&out);
        assert_eq!(
            (
                &again.domain,
                again.body_len,
                again.head_len + again.body_len
            ),
            (&r.domain, r.body_len, out.len())
        );

        // Keep-alive CRLFs are kept; bare LF heads get a bare LF line; injection is
        // stripped.
        let r = done(BARE_LF);
        write_with_record_route(BARE_LF, &r, "<sip:a;lr>\r\nX-Evil: 1", &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "\nINVITE sip:200@dvl-ckl2.net SIP/2.0\nRecord-Route: <sip:a;lr>X-Evil: 1\n\
             Via: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKlf\n\
             From: sip:4711@dvl-ckl2.net;tag=lf\n\
             To: sip:200@dvl-ckl2.net\n\
             Call-ID: lf1\n\
             CSeq: 1 INVITE\n\
             Content-Length: 2\n\n"
        );
        let r = done(KEEPALIVE);
        write_with_record_route(KEEPALIVE, &r, rr, &mut out);
        assert!(out.starts_with(
            b"\r\n\r\n\r\nREGISTER sip:dvl-ckl2.net SIP/2.0\r\nRecord-Route: <sip:203.0.113.7"
        ));
        assert_eq!(
            out.len(),
            KEEPALIVE.len() + "Record-Route: \r\n".len() + rr.len()
        );
        // A mismatched buffer is copied, never indexed out of bounds.
        write_with_record_route(b"no line end", &r, rr, &mut out);
        assert_eq!(out, b"no line end");
    }

    /// Feed deterministic mutations of valid messages: no panic; any Done is within
    /// the buffer with a lower-case key; the answer and the record-routed head are
    /// well formed, and the record-routed head parses back to the same key.
    #[test]
    fn sip_mutations_never_panic() {
        let bytes = [
            0u8, b' ', b'\t', b'\r', b'\n', b':', b';', b'"', b'\\', b'<', b'>', b'@', b'/', 0xff,
        ];
        let mut out = Vec::new();
        let mut rr = Vec::new();
        let mut done_count = 0usize;
        let mut seeds: Vec<&[u8]> = VALID.to_vec();
        seeds.extend(
            TORTURE
                .iter()
                .filter(|(name, _, _)| *name == "wsinv")
                .map(|(_, msg, _)| &msg[..head_end(msg, 0).unwrap()]),
        );
        for seed in seeds {
            for_each_mutation(seed, &bytes, |m| match req(m) {
                Sniff::Done(r) => {
                    done_count += 1;
                    assert!(r.head_len <= m.len());
                    assert!(!r.domain.is_empty());
                    assert_eq!(r.domain, r.domain.to_ascii_lowercase());
                    assert!(r.method_range.end <= r.head_len);
                    write_response(m, &r, 404, "Not Found", &mut out);
                    assert!(out.starts_with(b"SIP/2.0 404 Not Found\r\n"));
                    assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
                    write_with_record_route(m, &r, "<sip:203.0.113.7;lr>", &mut rr);
                    match req(&rr) {
                        Sniff::Done(again) => assert_eq!(
                            (&again.domain, again.method, again.body_len, again.head_len),
                            (&r.domain, r.method, r.body_len, rr.len()),
                            "{:?}",
                            String::from_utf8_lossy(m)
                        ),
                        other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(&rr)),
                    }
                }
                Sniff::Reject(reject) => {
                    let answered = write_reject_response(m, &LIMITS, &reject, &mut out);
                    if answered {
                        assert!(out.starts_with(b"SIP/2.0 "));
                    }
                }
                Sniff::Incomplete => {}
            });
        }
        assert!(done_count > 1000, "{done_count}");
    }

    #[test]
    fn response_len_frames_head_and_body() {
        let limits = Limits::default();
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a\r\nl: 3\r\n\r\nabcNEXT";
        assert_eq!(response_len(ok, &limits), Sniff::Done(ok.len() - 4));
        for n in 0..ok.len() - 7 {
            assert_eq!(
                response_len(&ok[..n], &limits),
                Sniff::Incomplete,
                "prefix {n}"
            );
        }
        let none = b"SIP/2.0 100 Trying\r\n\r\n";
        assert_eq!(response_len(none, &limits), Sniff::Done(none.len()));
        let bad = b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n";
        assert!(matches!(response_len(bad, &limits), Sniff::Reject(_)));
        let big = vec![b'a'; limits.max_head + 10];
        assert!(matches!(response_len(&big, &limits), Sniff::Reject(_)));
    }
}
