//! HTTP/1.1 message heads as the reverse proxy sees them (RFC 9110, RFC 9112).
//!
//! Owns: parsing a request head into the routing key (Host without port, normalised
//! path) and its body framing; rejecting request smuggling and malformed input;
//! parsing a response head into its framing; the chunked-body state machine used to
//! find where a chunked body ends while it is forwarded verbatim; writing the head that
//! is forwarded to the target. The route lookup lives in `portico-control`; path
//! normalisation in [`crate::path`]; sockets, timeouts and replay in the data plane.
//!
//! Promises:
//! - Nothing here panics on any input, and a valid head that is cut short anywhere
//!   is [`Sniff::Incomplete`], never a reject (while it is shorter than
//!   [`Limits::max_head`]).
//! - A request is either refused or has exactly one body framing that the proxy and
//!   the target agree on: Content-Length together with Transfer-Encoding, differing
//!   Content-Lengths, Transfer-Encoding in HTTP/1.0, a final coding other than
//!   `chunked`, and line folding are all refused (RFC 9112 §6.3, §5.2).
//! - Only origin-form and absolute-form targets route. Asterisk-form (`OPTIONS *`)
//!   names no path, so it is refused with 400; CONNECT is refused with 501.
//! - Line terminators: httparse accepts a bare LF as the end of a head line (RFC 9112
//!   §2.2 allows it); the forwarded head is rewritten with CRLF, so the target never
//!   sees one. The chunked decoder forwards bytes verbatim and so accepts only CRLF.
//! - Statuses: request rejects carry the status to answer the client with (400, 431,
//!   501, 505); response rejects carry 502; [`ChunkedDecoder`] rejects carry 400 and
//!   the caller answers 502 instead when the body came from the target.

use std::fmt;
use std::ops::Range;

use crate::path::{self, PathReject};
use crate::Sniff;

/// Limits applied while sniffing a head. The size cap lives here; the timeout is the
/// I/O layer's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum size of the head (request line + headers + blank line), bytes.
    pub max_head: usize,
    /// Maximum number of header fields.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// How the body that follows a head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Transfer-Encoding: chunked; use [`ChunkedDecoder`] to find its end.
    Chunked,
    /// Responses only: the body runs until the target closes the connection.
    UntilClose,
}

/// Request methods the proxy treats specially; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Connect,
    Other,
}

impl Method {
    /// RFC 9110 §9.1: "The method token is case-sensitive".
    fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// RFC 9110 §9.2.2: a request with an idempotent method may be sent again when
    /// the connection closed before any answer ("a proxy MUST NOT automatically retry
    /// non-idempotent requests", §9.2.2).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// A parsed, validated request head. Byte ranges index the buffer given to
/// [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Length of the head including the terminating blank line.
    pub head_len: usize,
    pub method: Method,
    /// The method token as sent (range into the buffer).
    pub method_range: std::ops::Range<usize>,
    /// Host from the `Host` header (or absolute-form target, which must agree):
    /// lower-cased, port and one trailing dot removed.
    pub host: String,
    /// The request path after RFC 3986 dot-segment removal and decoding of
    /// percent-encoded unreserved characters; always starts with `/`.
    pub path: String,
    /// The query without the `?`, as sent (range into the buffer), if any.
    pub query: Option<std::ops::Range<usize>>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    pub framing: BodyFraming,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header (e.g. WebSocket).
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Why a request is refused, with the status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status to answer with (400, 414, 431, 501, ...).
    pub status: u16,
    /// Short reason for logs and the error body, e.g. "conflicting Content-Length".
    pub reason: &'static str,
}

impl Reject {
    const fn new(status: u16, reason: &'static str) -> Reject {
        Reject { status, reason }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Reject {}

/// Header slots kept on the stack; a larger [`Limits::max_headers`] costs one
/// allocation per parse.
const STACK_HEADERS: usize = 128;

/// Run `f` with exactly `n` empty httparse header slots.
fn with_header_slots<'b, R>(n: usize, f: impl FnOnce(&mut [httparse::Header<'b>]) -> R) -> R {
    if n <= STACK_HEADERS {
        let mut slots = [httparse::EMPTY_HEADER; STACK_HEADERS];
        f(slots.get_mut(..n).unwrap_or_default())
    } else {
        let mut slots = vec![httparse::EMPTY_HEADER; n];
        f(&mut slots)
    }
}

/// Parse the request head at the start of `buf`.
///
/// Grammar (RFC 9112 §2.1, §3):
/// ```text
/// HTTP-message   = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]
/// request-line   = method SP request-target SP HTTP-version
/// request-target = origin-form / absolute-form / authority-form / asterisk-form
/// field-line     = field-name ":" OWS field-value OWS
/// ```
pub fn parse_request(buf: &[u8], limits: &Limits) -> Sniff<RequestHead, Reject> {
    // The size cap sits inside the parser: httparse only ever sees `max_head` bytes.
    let window = buf.get(..limits.max_head).unwrap_or(buf);
    with_header_slots(limits.max_headers, |slots| {
        let mut req = httparse::Request::new(slots);
        match req.parse(window) {
            Ok(httparse::Status::Complete(head_len)) => match request_head(buf, head_len, &req) {
                Ok(head) => Sniff::Done(head),
                Err(reject) => Sniff::Reject(reject),
            },
            Ok(httparse::Status::Partial) if window.len() >= limits.max_head => {
                Sniff::Reject(Reject::new(431, "header too large"))
            }
            Ok(httparse::Status::Partial) => Sniff::Incomplete,
            Err(httparse::Error::TooManyHeaders) => {
                Sniff::Reject(Reject::new(431, "too many header fields"))
            }
            Err(httparse::Error::Version) if start_line_names_http(window) => {
                Sniff::Reject(Reject::new(505, "unsupported HTTP version"))
            }
            Err(_) => Sniff::Reject(Reject::new(
                400,
                folding_reason(window).unwrap_or("malformed request"),
            )),
        }
    })
}

/// Build the [`RequestHead`] from a complete httparse result.
fn request_head(
    buf: &[u8],
    head_len: usize,
    req: &httparse::Request<'_, '_>,
) -> Result<RequestHead, Reject> {
    const MALFORMED: Reject = Reject::new(400, "malformed request");
    // httparse fills these in for a complete parse.
    let (Some(method_token), Some(target), Some(version_minor)) =
        (req.method, req.path, req.version)
    else {
        return Err(MALFORMED);
    };
    let method_range = range_in(buf, method_token.as_bytes()).ok_or(MALFORMED)?;
    let method = Method::from_token(method_token.as_bytes());
    let target_range = range_in(buf, target.as_bytes()).ok_or(MALFORMED)?;
    let target = target.as_bytes();
    let version_minor = match version_minor {
        0 => 0,
        1 => 1,
        _ => return Err(Reject::new(505, "unsupported HTTP version")),
    };
    let http11 = version_minor == 1;

    // RFC 9112 §3.2.3: authority-form is only used for CONNECT, which needs a
    // tunnel to an arbitrary host; a reverse proxy does not offer that.
    if method == Method::Connect {
        return Err(Reject::new(501, "CONNECT not supported"));
    }

    let fields = Fields::scan(req.headers);

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to
    // any HTTP/1.1 request message that lacks a Host header field and to any request
    // message that contains more than one Host header field line or a Host header
    // field with an invalid field value."
    let host_header = match (fields.host_lines, fields.host) {
        (0, _) if http11 => return Err(Reject::new(400, "missing Host")),
        (0, _) => None,
        (1, Some(value)) => Some(parse_host(value).ok_or(Reject::new(400, "invalid Host"))?),
        _ => return Err(Reject::new(400, "duplicate Host")),
    };

    let target = split_target(target, method)?;
    let host = match target.authority {
        // RFC 9112 §3.2.2: absolute-form. The target's host must agree with the
        // Host header, so the host routed on and the Host the target sees are one.
        Some(authority) => {
            let from_target = match parse_host(authority) {
                Some(h) if !h.is_empty() => h,
                _ => return Err(Reject::new(400, "invalid host in request target")),
            };
            match host_header {
                Some(h) if h == from_target => h,
                Some(_) => return Err(Reject::new(400, "absolute-form host differs from Host")),
                // HTTP/1.0 without Host: no host, like origin-form (the caller refuses).
                None => String::new(),
            }
        }
        None => host_header.unwrap_or_default(),
    };
    let path = path::normalise(target.path).map_err(path_reject)?;
    let query = match target.query {
        Some(q) => {
            // RFC 9112 §3.2.1 / RFC 3986 §3.4: a query is *( pchar / "/" / "?" );
            // a fragment is never sent.
            if memchr::memchr(b'#', q).is_some() {
                return Err(Reject::new(400, "fragment in request target"));
            }
            // `q` is a sub-slice of the target, which is `target_range` of `buf`.
            let start = target_range.end.checked_sub(q.len()).ok_or(MALFORMED)?;
            Some(start..target_range.end)
        }
        None => None,
    };

    let framing = request_framing(&fields, http11)?;

    Ok(RequestHead {
        head_len,
        method,
        method_range,
        host,
        path,
        query,
        version_minor,
        framing,
        keep_alive: fields.keep_alive(http11),
        // RFC 9110 §7.8: "A server that receives an Upgrade header field in an
        // HTTP/1.0 request MUST ignore that Upgrade field."
        upgrade: http11 && fields.connection_upgrade && fields.upgrade,
        // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an
        // HTTP/1.0 request MUST ignore that expectation."
        expect_continue: http11 && fields.expect_continue,
    })
}

/// RFC 9112 §6.3, for requests.
fn request_framing(fields: &Fields<'_>, http11: bool) -> Result<BodyFraming, Reject> {
    match (fields.transfer_encoding, fields.content_length) {
        (TransferEncoding::Absent, ContentLength::Absent) => Ok(BodyFraming::None),
        (_, ContentLength::Absent) if !http11 => {
            // §6.1: "A server or client that receives an HTTP/1.0 message containing
            // a Transfer-Encoding header field MUST treat the message as if the
            // framing is faulty".
            Err(Reject::new(400, "Transfer-Encoding in HTTP/1.0"))
        }
        (TransferEncoding::Absent, cl) => match cl {
            ContentLength::Value(n) => Ok(BodyFraming::Length(n)),
            // §6.3 (5): "If a message is received without Transfer-Encoding and with
            // an invalid Content-Length header field, then the message framing is
            // invalid [...] the server MUST respond with a 400".
            ContentLength::Conflicting => Err(Reject::new(400, "conflicting Content-Length")),
            ContentLength::Invalid | ContentLength::Absent => {
                Err(Reject::new(400, "invalid Content-Length"))
            }
        },
        // §6.3 (3): "If a message is received with both a Transfer-Encoding and a
        // Content-Length header field, [...] Such a message might indicate an attempt
        // to perform request smuggling"; §6.1: "A server MAY reject a request that
        // contains both Content-Length and Transfer-Encoding". We do.
        (_, ContentLength::Value(_) | ContentLength::Invalid | ContentLength::Conflicting) => {
            Err(Reject::new(400, "Content-Length with Transfer-Encoding"))
        }
        (TransferEncoding::Invalid, ContentLength::Absent) => {
            Err(Reject::new(400, "malformed Transfer-Encoding"))
        }
        // §6.3 (4): "If a Transfer-Encoding header field is present in a request and
        // the chunked transfer coding is not the final encoding, [...] the server
        // MUST respond with the 400 (Bad Request) status code".
        (TransferEncoding::NotChunkedFinal, ContentLength::Absent) => {
            Err(Reject::new(400, "chunked is not the final transfer coding"))
        }
        (TransferEncoding::ChunkedFinal, ContentLength::Absent) => Ok(BodyFraming::Chunked),
    }
}

fn path_reject(reject: PathReject) -> Reject {
    Reject::new(400, reject.reason())
}

/// The parts of a request target the router needs.
struct Target<'b> {
    /// `Some` for absolute-form: the authority as sent.
    authority: Option<&'b [u8]>,
    /// The raw path (no query), to be normalised.
    path: &'b [u8],
    /// The raw query without the `?`.
    query: Option<&'b [u8]>,
}

/// Split a request target into authority (absolute-form only), path and query.
fn split_target(target: &[u8], method: Method) -> Result<Target<'_>, Reject> {
    match target.first() {
        // RFC 9112 §3.2.1: origin-form = absolute-path [ "?" query ]
        Some(b'/') => {
            let (path, query) = split_query(target);
            Ok(Target {
                authority: None,
                path,
                query,
            })
        }
        // RFC 9112 §3.2.4: asterisk-form = "*", only for a server-wide OPTIONS. It
        // names no path, so no rule can route it.
        Some(b'*') if target == b"*" && method == Method::Options => {
            Err(Reject::new(400, "asterisk-form is not routable"))
        }
        Some(b'*') if target == b"*" => Err(Reject::new(
            400,
            "asterisk-form is only allowed for OPTIONS",
        )),
        // RFC 9112 §3.2.2: absolute-form = absolute-URI
        _ => {
            let rest = strip_prefix_ignore_case(target, b"http://")
                .or_else(|| strip_prefix_ignore_case(target, b"https://"))
                .ok_or(Reject::new(400, "malformed request target"))?;
            // RFC 3986 §3.2: the authority ends at the next "/", "?" or "#".
            let end = rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#'));
            let (authority, path_and_query) = match end {
                // `end` is a position found in `rest`: in bounds.
                Some(end) => rest.split_at(end),
                None => (rest, &b""[..]),
            };
            // RFC 9110 §4.2.4: "A recipient SHOULD parse for userinfo and treat its
            // presence as an error".
            if authority.contains(&b'@') {
                return Err(Reject::new(400, "userinfo in request target"));
            }
            let (path, query) = split_query(path_and_query);
            // RFC 9110 §4.2.3: an empty path is equivalent to "/".
            let path = if path.is_empty() { &b"/"[..] } else { path };
            Ok(Target {
                authority: Some(authority),
                path,
                query,
            })
        }
    }
}

fn split_query(path_and_query: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'?', path_and_query) {
        Some(q) => {
            // `q` is a position found in the slice: in bounds.
            let (path, query) = path_and_query.split_at(q);
            (path, query.get(1..))
        }
        None => (path_and_query, None),
    }
}

/// Parse a Host value or an absolute-form authority: `host [ ":" port ]`.
/// Returns the host lower-cased, without port and one trailing dot, or `None` if the
/// syntax is invalid. An empty value gives an empty host (RFC 9110 §7.2 allows an
/// empty Host when the target URI has no authority).
///
/// RFC 3986 §3.2.2: host = IP-literal / IPv4address / reg-name. Accepted reg-names
/// are the DNS-like subset ALPHA / DIGIT / "-" / "." / "_" / "~"; percent-encoded
/// and sub-delims characters (`,`, `;`, `=`, ...) are refused, as are IPvFuture
/// literals. The port is *DIGIT, at most five digits.
fn parse_host(value: &[u8]) -> Option<String> {
    if value.is_empty() {
        return Some(String::new());
    }
    let (host, port) = if value.first() == Some(&b'[') {
        // IP-literal = "[" IPv6address "]"
        let close = memchr::memchr(b']', value)?;
        // `close < value.len()` (found by memchr), so `close + 1 <= value.len()`.
        let (literal, after) = value.split_at(close + 1);
        let inner = literal.get(1..close)?;
        let ipv6_ok = inner.contains(&b':')
            && inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ipv6_ok {
            return None;
        }
        let port = match after.split_first() {
            None => None,
            Some((b':', port)) => Some(port),
            Some(_) => return None,
        };
        (literal, port)
    } else {
        let (host, port) = match memchr::memchr(b':', value) {
            Some(colon) => {
                // `colon` is a position found in `value`: in bounds.
                let (host, port) = value.split_at(colon);
                (host, port.get(1..))
            }
            None => (value, None),
        };
        let reg_name_ok = !host.is_empty()
            && host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !reg_name_ok {
            return None;
        }
        // One trailing dot names the same (fully qualified) host.
        (host.strip_suffix(b".").unwrap_or(host), port)
    };
    if let Some(port) = port {
        if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    // All bytes checked above are ASCII.
    let mut host = String::from_utf8(host.to_vec()).ok()?;
    host.make_ascii_lowercase();
    Some(host)
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub version_minor: u8,
    pub framing: BodyFraming,
    /// Whether the target keeps the connection open after this response.
    pub keep_alive: bool,
}

/// Parse a response head at the start of `buf`; `request_method` decides whether a
/// body can follow (HEAD, CONNECT) together with the status (1xx, 204, 304).
///
/// Grammar (RFC 9112 §4):
/// ```text
/// status-line = HTTP-version SP status-code SP [ reason-phrase ]
/// ```
/// Every reject is a 502 for the client: the target sent something unusable.
pub fn parse_response(
    buf: &[u8],
    request_method: Method,
    limits: &Limits,
) -> Sniff<ResponseHead, Reject> {
    let window = buf.get(..limits.max_head).unwrap_or(buf);
    with_header_slots(limits.max_headers, |slots| {
        let mut resp = httparse::Response::new(slots);
        match resp.parse(window) {
            Ok(httparse::Status::Complete(head_len)) => {
                match response_head(head_len, &resp, request_method) {
                    Ok(head) => Sniff::Done(head),
                    Err(reject) => Sniff::Reject(reject),
                }
            }
            Ok(httparse::Status::Partial) if window.len() >= limits.max_head => {
                Sniff::Reject(Reject::new(502, "response header too large"))
            }
            Ok(httparse::Status::Partial) => Sniff::Incomplete,
            Err(httparse::Error::TooManyHeaders) => {
                Sniff::Reject(Reject::new(502, "too many response header fields"))
            }
            Err(_) => Sniff::Reject(Reject::new(
                502,
                match folding_reason(window) {
                    Some(_) => "obsolete line folding in response",
                    None => "malformed response",
                },
            )),
        }
    })
}

fn response_head(
    head_len: usize,
    resp: &httparse::Response<'_, '_>,
    request_method: Method,
) -> Result<ResponseHead, Reject> {
    let (Some(status), Some(version_minor)) = (resp.code, resp.version) else {
        return Err(Reject::new(502, "malformed response"));
    };
    // RFC 9110 §15: status codes are three-digit integers from 100 to 599 (we let
    // 600-999 through; their class is unknown but their framing is not).
    if status < 100 {
        return Err(Reject::new(502, "invalid status code"));
    }
    let version_minor = match version_minor {
        0 => 0,
        1 => 1,
        _ => return Err(Reject::new(502, "unsupported HTTP version in response")),
    };
    let http11 = version_minor == 1;
    let fields = Fields::scan(resp.headers);
    let mut keep_alive = fields.keep_alive(http11);

    // RFC 9112 §6.3 (1): "Any response to a HEAD request and any response with a
    // 1xx (Informational), 204 (No Content), or 304 (Not Modified) status code is
    // always terminated by the first empty line after the header fields". A 101
    // turns the connection into a tunnel; that is the caller's business.
    // (2): "Any 2xx (Successful) response to a CONNECT request implies that the
    // connection will become a tunnel immediately after the empty line".
    let no_body = request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == Method::Connect && (200..300).contains(&status));
    let framing = if no_body {
        // Content-Length and Transfer-Encoding do not delimit anything here.
        BodyFraming::None
    } else {
        match fields.transfer_encoding {
            // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
            // framing.
            TransferEncoding::ChunkedFinal | TransferEncoding::NotChunkedFinal if !http11 => {
                return Err(Reject::new(502, "Transfer-Encoding in HTTP/1.0 response"));
            }
            TransferEncoding::Invalid => {
                return Err(Reject::new(502, "malformed Transfer-Encoding in response"));
            }
            TransferEncoding::ChunkedFinal | TransferEncoding::NotChunkedFinal => {
                // RFC 9112 §6.3 (3): "If a message is received with both a
                // Transfer-Encoding and a Content-Length header field, the
                // Transfer-Encoding overrides the Content-Length. Such a message
                // might indicate an attempt to perform request smuggling or response
                // splitting and ought to be handled as an error." A proxy that
                // forwarded it would have to strip the Content-Length first; portico
                // forwards response heads unchanged, so it treats this as the error
                // the RFC suggests.
                if fields.content_length != ContentLength::Absent {
                    return Err(Reject::new(
                        502,
                        "Content-Length with Transfer-Encoding in response",
                    ));
                }
                if fields.transfer_encoding == TransferEncoding::ChunkedFinal {
                    BodyFraming::Chunked
                } else {
                    // §6.3 (4): "If a Transfer-Encoding header field is present in a
                    // response and the chunked transfer coding is not the final
                    // encoding, the message body length is determined by reading the
                    // connection until it is closed by the server."
                    keep_alive = false;
                    BodyFraming::UntilClose
                }
            }
            TransferEncoding::Absent => match fields.content_length {
                ContentLength::Value(n) => BodyFraming::Length(n),
                // §6.3 (5): "If the invalid message is received by a proxy, the proxy
                // MUST close its connection to the server, discard the received
                // response, and send a 502 (Bad Gateway) response to the client".
                ContentLength::Conflicting => {
                    return Err(Reject::new(502, "conflicting Content-Length in response"));
                }
                ContentLength::Invalid => {
                    return Err(Reject::new(502, "invalid Content-Length in response"));
                }
                // §6.3 (8): "Otherwise, this is a response message without a
                // declared message body length, so the message body length is
                // determined by the number of octets received prior to the server
                // closing the connection."
                ContentLength::Absent => {
                    keep_alive = false;
                    BodyFraming::UntilClose
                }
            },
        }
    };
    Ok(ResponseHead {
        head_len,
        status,
        version_minor,
        framing,
        keep_alive,
    })
}

/// Transfer-Encoding as declared by all its field lines together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    Absent,
    ChunkedFinal,
    NotChunkedFinal,
    /// Empty, not a list of tokens, or `chunked` applied twice or with parameters.
    Invalid,
}

/// Content-Length as declared by all its field lines together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentLength {
    Absent,
    Value(u64),
    /// Not 1*DIGIT, or beyond u64.
    Invalid,
    /// Valid values that differ.
    Conflicting,
}

/// What the proxy needs from the header fields of a head, in one pass.
struct Fields<'b> {
    host: Option<&'b [u8]>,
    host_lines: usize,
    content_length: ContentLength,
    transfer_encoding: TransferEncoding,
    connection_close: bool,
    connection_keep_alive: bool,
    connection_upgrade: bool,
    upgrade: bool,
    expect_continue: bool,
}

impl<'b> Fields<'b> {
    fn scan(headers: &[httparse::Header<'b>]) -> Fields<'b> {
        let mut f = Fields {
            host: None,
            host_lines: 0,
            content_length: ContentLength::Absent,
            transfer_encoding: TransferEncoding::Absent,
            connection_close: false,
            connection_keep_alive: false,
            connection_upgrade: false,
            upgrade: false,
            expect_continue: false,
        };
        let mut te = TeScan::default();
        for h in headers {
            // RFC 9110 §5.1: field names are case-insensitive.
            let name = h.name.as_bytes();
            let value = h.value;
            if name.eq_ignore_ascii_case(b"host") {
                f.host_lines += 1;
                f.host = Some(value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                f.content_length = merge_content_length(f.content_length, value);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te.line(value);
            } else if name.eq_ignore_ascii_case(b"connection") {
                // RFC 9110 §7.6.1: Connection = #connection-option, case-insensitive.
                for option in list_elements(value) {
                    if option.eq_ignore_ascii_case(b"close") {
                        f.connection_close = true;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        f.connection_keep_alive = true;
                    } else if option.eq_ignore_ascii_case(b"upgrade") {
                        f.connection_upgrade = true;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                f.upgrade |= list_elements(value).next().is_some();
            } else if name.eq_ignore_ascii_case(b"expect") {
                // RFC 9110 §10.1.1: "The Expect field value is case-insensitive."
                f.expect_continue |=
                    list_elements(value).any(|e| e.eq_ignore_ascii_case(b"100-continue"));
            }
        }
        f.transfer_encoding = te.finish();
        f
    }

    /// RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with
    /// "keep-alive".
    fn keep_alive(&self, http11: bool) -> bool {
        !self.connection_close && (http11 || self.connection_keep_alive)
    }
}

/// RFC 9110 §8.6: Content-Length = 1*DIGIT. RFC 9112 §6.3 (5): "If a message is
/// received without Transfer-Encoding and with an invalid Content-Length header
/// field [...]"; a list of identical values (several lines or `5, 5`) is accepted as
/// that value (RFC 9110 §8.6 allows either), differing values are not.
fn merge_content_length(so_far: ContentLength, value: &[u8]) -> ContentLength {
    let mut acc = so_far;
    let mut any = false;
    for element in value.split(|&b| b == b',').map(trim_ows) {
        any = true;
        let parsed = parse_decimal(element);
        acc = match (acc, parsed) {
            (ContentLength::Invalid, _) | (_, None) => ContentLength::Invalid,
            (ContentLength::Conflicting, Some(_)) => ContentLength::Conflicting,
            (ContentLength::Absent, Some(n)) => ContentLength::Value(n),
            (ContentLength::Value(m), Some(n)) if m == n => ContentLength::Value(n),
            (ContentLength::Value(_), Some(_)) => ContentLength::Conflicting,
        };
    }
    if any {
        acc
    } else {
        ContentLength::Invalid
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

/// Accumulates Transfer-Encoding over all its field lines, in order (RFC 9110 §5.3:
/// several lines are one comma-separated list).
///
/// RFC 9112 §6.1: Transfer-Encoding = #transfer-coding;
/// RFC 9110 §10.1.4: transfer-coding = token *( OWS ";" OWS transfer-parameter ).
/// A parameter with a quoted comma splits wrongly and is refused as malformed.
#[derive(Default)]
struct TeScan {
    present: bool,
    codings: usize,
    chunked: usize,
    last_is_chunked: bool,
    invalid: bool,
}

impl TeScan {
    fn line(&mut self, value: &[u8]) {
        self.present = true;
        for coding in list_elements(value) {
            let (name, params) = match memchr::memchr(b';', coding) {
                // `semi` is a position found in `coding`: in bounds.
                Some(semi) => coding.split_at(semi),
                None => (coding, &b""[..]),
            };
            let name = trim_ows(name);
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                self.invalid = true;
            }
            let is_chunked = name.eq_ignore_ascii_case(b"chunked");
            // RFC 9112 §7: the chunked coding has no parameters.
            if is_chunked && !params.is_empty() {
                self.invalid = true;
            }
            self.codings += 1;
            self.chunked += usize::from(is_chunked);
            self.last_is_chunked = is_chunked;
        }
    }

    fn finish(&self) -> TransferEncoding {
        if !self.present {
            TransferEncoding::Absent
        } else if self.invalid || self.codings == 0 || self.chunked > 1 {
            // RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer coding more
            // than once to a message body".
            TransferEncoding::Invalid
        } else if self.last_is_chunked {
            TransferEncoding::ChunkedFinal
        } else {
            TransferEncoding::NotChunkedFinal
        }
    }
}

/// The non-empty elements of a comma-separated list, trimmed of OWS (RFC 9110 §5.6.1:
/// "a recipient MUST accept empty list elements" and ignores them).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// RFC 9110 §5.6.3: OWS = *( SP / HTAB )
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let Some((b' ' | b'\t', rest)) = s.split_first() {
        s = rest;
    }
    while let Some((b' ' | b'\t', rest)) = s.split_last() {
        s = rest;
    }
    s
}

/// RFC 9110 §5.6.2: tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// The range of `sub` inside `buf`, if `sub` is a sub-slice of it.
fn range_in(buf: &[u8], sub: &[u8]) -> Option<Range<usize>> {
    let start = (sub.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(sub.len())?;
    (end <= buf.len()).then_some(start..end)
}

/// The lines of a head (terminator and a preceding CR removed), leading empty lines
/// skipped (RFC 9112 §2.2: a server SHOULD ignore at least one empty line received
/// before the request-line), up to but excluding the empty line that ends the head.
/// The first item is the start line.
fn head_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .skip_while(|line| line.is_empty())
        .enumerate()
        .take_while(|(i, line)| *i == 0 || !line.is_empty())
        .map(|(_, line)| line)
}

/// Why httparse refused a head, if it is whitespace at the start of a field line.
/// RFC 9112 §5.2: "A server that receives an obs-fold in a request message [...]
/// MUST either reject the message by sending a 400 (Bad Request) [...]"; §2.2:
/// whitespace between the start-line and the first field is rejected likewise.
fn folding_reason(head: &[u8]) -> Option<&'static str> {
    head_lines(head)
        .skip(1)
        .enumerate()
        .find_map(|(i, line)| match line.first() {
            Some(b' ' | b'\t') if i == 0 => Some("whitespace before first header field"),
            Some(b' ' | b'\t') => Some("obsolete line folding"),
            _ => None,
        })
}

/// Whether a request line that httparse refused for its version names some HTTP
/// version (answered with 505) rather than being garbage (400).
fn start_line_names_http(head: &[u8]) -> bool {
    head_lines(head)
        .next()
        .is_some_and(|line| memchr::memmem::find(line, b" HTTP/").is_some())
}

/// Progress of a [`ChunkedDecoder`] over one input slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    /// Bytes of the input that belong to the body (forward exactly these).
    pub consumed: usize,
    /// The last chunk, trailers and final CRLF have been seen.
    pub done: bool,
}

/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section (all trailer field lines and the final CRLF) accepted.
const MAX_TRAILERS: usize = 16 * 1024;
/// Hex digits in a chunk size: 16 fill a u64.
const MAX_SIZE_DIGITS: u8 = 16;

/// Where a [`ChunkedDecoder`] is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    /// Before the first hex digit of a chunk-size.
    #[default]
    SizeStart,
    /// In the hex digits of a chunk-size.
    Size,
    /// BWS after the chunk-size, before a ";".
    SizeSpace,
    /// In the chunk extensions, until CR.
    Extension,
    /// After the CR that ends a chunk-size line.
    SizeLf,
    /// In chunk data; `remaining` bytes are left.
    Data,
    /// After chunk data, expecting CR.
    DataCr,
    /// After chunk data and CR, expecting LF.
    DataLf,
    /// At the start of a trailer field line or the final CRLF.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value, until CR.
    TrailerValue,
    /// After the CR that ends a trailer field line.
    TrailerLf,
    /// After the CR of the final CRLF.
    FinalLf,
    /// The body is over.
    Done,
    /// A reject was returned; every later feed returns it again.
    Failed(Reject),
}

/// Finds the end of a chunked body (RFC 9112 §7.1) while it is forwarded verbatim.
///
/// ```text
/// chunked-body   = *chunk last-chunk trailer-section CRLF
/// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-size     = 1*HEXDIG
/// last-chunk     = 1*("0") [ chunk-ext ] CRLF
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// trailer-section = *( field-line CRLF )
/// ```
/// Only CRLF ends a line here (a bare LF or CR is refused), because the bytes go to
/// the target unchanged and it must split them the same way. Extensions are checked
/// only for allowed bytes (HTAB / SP / VCHAR / obs-text): a quoted-string cannot
/// contain CR or LF, so the CR that ends the line is unambiguous. Limits: 16 hex
/// digits, 4096 bytes per chunk-size line, 16 KiB of trailers. Rejects carry 400.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// The chunk-size being read, then the chunk data left.
    remaining: u64,
    size_digits: u8,
    /// Bytes of the current chunk-size line so far.
    line_len: usize,
    /// Bytes of the trailer section so far.
    trailer_len: usize,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next bytes of the body.
    ///
    /// `consumed` is all of `input` until the body ends; then it stops right after
    /// the final CRLF, so bytes of a following pipelined message are not counted.
    /// After the end, every feed returns `consumed: 0, done: true`.
    pub fn feed(&mut self, input: &[u8]) -> Result<ChunkProgress, Reject> {
        let mut i = 0;
        loop {
            match self.state {
                ChunkState::Failed(reject) => return Err(reject),
                ChunkState::Done => {
                    return Ok(ChunkProgress {
                        consumed: i,
                        done: true,
                    })
                }
                ChunkState::Data => {
                    let avail = input.len().saturating_sub(i);
                    if avail == 0 {
                        break;
                    }
                    let take = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
                    i += take;
                    // `take <= remaining` by construction.
                    self.remaining = self.remaining.saturating_sub(take as u64);
                    if self.remaining == 0 {
                        self.state = ChunkState::DataCr;
                    }
                }
                _ => {
                    let Some(&b) = input.get(i) else { break };
                    i += 1;
                    if let Err(reject) = self.step(b) {
                        self.state = ChunkState::Failed(reject);
                        return Err(reject);
                    }
                }
            }
        }
        Ok(ChunkProgress {
            consumed: i,
            done: false,
        })
    }

    /// Advance over one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), Reject> {
        const BAD_SIZE: Reject = Reject::new(400, "invalid chunk size");
        const BAD_EXT: Reject = Reject::new(400, "invalid chunk extension");
        const NO_LF: Reject = Reject::new(400, "CR without LF in chunked body");
        const BARE_LF: Reject = Reject::new(400, "bare LF in chunked body");
        const NO_CRLF: Reject = Reject::new(400, "missing CRLF after chunk data");
        const BAD_TRAILER: Reject = Reject::new(400, "invalid trailer field");

        use ChunkState as S;
        match self.state {
            S::SizeStart | S::Size | S::SizeSpace | S::Extension | S::SizeLf => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err(Reject::new(400, "chunk-size line too long"));
                }
            }
            S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf | S::FinalLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILERS {
                    return Err(Reject::new(400, "trailer section too large"));
                }
            }
            _ => {}
        }
        self.state = match (self.state, b) {
            (S::SizeStart, _) => {
                let digit = hex_digit(b).ok_or(BAD_SIZE)?;
                self.remaining = u64::from(digit);
                self.size_digits = 1;
                S::Size
            }
            (S::Size, _) if b.is_ascii_hexdigit() => {
                let digit = hex_digit(b).ok_or(BAD_SIZE)?;
                self.size_digits += 1;
                if self.size_digits > MAX_SIZE_DIGITS {
                    return Err(Reject::new(400, "chunk size too large"));
                }
                // At most 16 digits: the shift cannot lose bits.
                self.remaining = self.remaining << 4 | u64::from(digit);
                S::Size
            }
            (S::Size | S::SizeSpace, b' ' | b'\t') => S::SizeSpace,
            (S::Size | S::SizeSpace | S::Extension, b';') => S::Extension,
            (S::Size | S::Extension, b'\r') => S::SizeLf,
            (S::Size | S::SizeSpace | S::Extension, b'\n') => return Err(BARE_LF),
            (S::Size | S::SizeSpace, _) => return Err(BAD_SIZE),
            (S::Extension, b'\t' | b' '..=0x7e | 0x80..=0xff) => S::Extension,
            (S::Extension, _) => return Err(BAD_EXT),
            (S::SizeLf, b'\n') => {
                self.line_len = 0;
                if self.remaining == 0 {
                    // last-chunk: the trailer section follows.
                    S::TrailerStart
                } else {
                    S::Data
                }
            }
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataLf, b'\n') => S::SizeStart,
            (S::DataCr | S::DataLf, _) => return Err(NO_CRLF),
            (S::TrailerStart, b'\r') => S::FinalLf,
            (S::TrailerStart, b'\n') => return Err(BARE_LF),
            // RFC 9112 §5.2: no obs-fold.
            (S::TrailerStart, b' ' | b'\t') => {
                return Err(Reject::new(400, "obsolete line folding in trailer"));
            }
            // RFC 9110 §5.1: field-name = token.
            (S::TrailerStart | S::TrailerName, _) if is_tchar(b) => S::TrailerName,
            (S::TrailerName, b':') => S::TrailerValue,
            (S::TrailerStart | S::TrailerName, _) => return Err(BAD_TRAILER),
            (S::TrailerValue, b'\r') => S::TrailerLf,
            (S::TrailerValue, b'\n') => return Err(BARE_LF),
            // RFC 9110 §5.5: field-value characters are VCHAR / obs-text, with SP and
            // HTAB inside.
            (S::TrailerValue, b'\t' | b' '..=0x7e | 0x80..=0xff) => S::TrailerValue,
            (S::TrailerValue, _) => return Err(BAD_TRAILER),
            (S::TrailerLf, b'\n') => S::TrailerStart,
            (S::FinalLf, b'\n') => S::Done,
            (S::SizeLf | S::TrailerLf | S::FinalLf, _) => return Err(NO_LF),
            // `feed` handles these states without calling `step`.
            (S::Data | S::Done | S::Failed(_), _) => self.state,
        };
        Ok(())
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Fields that only concern one connection (RFC 9110 §7.6.1), never forwarded as
/// sent (`Upgrade` is, for an upgrade request).
const HOP_BY_HOP: [&[u8]; 4] = [b"connection", b"keep-alive", b"proxy-connection", b"te"];

/// Fields a client cannot have dropped by naming them in `Connection`: the body's
/// framing (dropping it would let the body be read as a second request), the host
/// routed on, and the forwarding chain.
const NEVER_DROPPED: [&[u8]; 4] = [
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"x-forwarded-for",
];

/// Connection options looked at when forwarding; further ones are ignored (their
/// fields are forwarded).
pub const MAX_CONNECTION_OPTIONS: usize = 16;

/// What the proxy adds to a forwarded request.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInfo<'a> {
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: &'a str,
    /// "http" or "https", for `X-Forwarded-Proto`.
    pub proto: &'a str,
}

/// Write the head forwarded to the target into `out` (cleared first): request line in
/// origin-form with the normalised path and the original query, the client's header
/// fields, `X-Forwarded-For` / `X-Forwarded-Proto` set. `buf` and `head` are those
/// given to and returned by [`parse_request`].
///
/// Field lines keep their order, names and values (OWS around values is trimmed, and
/// every line ends in CRLF). `X-Forwarded-Proto` lines from the client are dropped and
/// one with `info.proto` is added last. The client IP is appended to the last
/// `X-Forwarded-For` line (several lines form one list, RFC 9110 §5.3), or a new line
/// is added.
///
/// Hop-by-hop fields are not forwarded (RFC 9110 §7.6.1): `Connection`, `Keep-Alive`,
/// `Proxy-Connection`, `TE`, `Upgrade`, and the fields the client named in
/// `Connection` (the first [`MAX_CONNECTION_OPTIONS`]; framing fields, `Host` and
/// `X-Forwarded-For` are never dropped that way, so naming them cannot desynchronise
/// the body or hide the client). portico's own options take their place: `Connection:
/// upgrade` with the client's `Upgrade` for an upgrade, `Connection: keep-alive` for
/// HTTP/1.0, none for HTTP/1.1 (persistent by default). The target connection thus
/// stays open whatever the client asked of its own, and can serve the next request,
/// of this client or another. All other fields are forwarded as sent. Allocates
/// nothing beyond growing `out`.
pub fn write_forward_head(
    buf: &[u8],
    head: &RequestHead,
    info: &ForwardInfo<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    // `parse_request` validated these bytes; a mismatched `buf` yields a truncated
    // head, never a panic.
    let head_bytes = buf.get(..head.head_len).unwrap_or(buf);
    out.reserve(head_bytes.len() + info.client_ip.len() + info.proto.len() + 64);

    // RFC 9112 §3.2.1: the request line sent to an origin server is in origin-form.
    out.extend_from_slice(buf.get(head.method_range.clone()).unwrap_or_default());
    out.push(b' ');
    out.extend_from_slice(head.path.as_bytes());
    if let Some(query) = &head.query {
        out.push(b'?');
        out.extend_from_slice(buf.get(query.clone()).unwrap_or_default());
    }
    out.extend_from_slice(if head.version_minor == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });

    // One pass for the last X-Forwarded-For line and the options of every
    // Connection line, these up to a bound (a hostile list cannot make the per-field
    // check below quadratic).
    let mut last_xff = None;
    let mut named: [&[u8]; MAX_CONNECTION_OPTIONS] = [&[]; MAX_CONNECTION_OPTIONS];
    let mut n_named = 0;
    for (i, (name, value)) in field_lines(head_bytes).enumerate() {
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            last_xff = Some(i);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list_elements(value) {
                if let Some(slot) = named.get_mut(n_named) {
                    *slot = option;
                    n_named += 1;
                }
            }
        }
    }
    let named = named.get(..n_named).unwrap_or_default();
    let dropped = |name: &[u8]| {
        if name.eq_ignore_ascii_case(b"upgrade") {
            return !head.upgrade;
        }
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || (named.iter().any(|o| name.eq_ignore_ascii_case(o))
                && !NEVER_DROPPED.iter().any(|k| name.eq_ignore_ascii_case(k)))
    };

    for (i, (name, value)) in field_lines(head_bytes).enumerate() {
        if name.eq_ignore_ascii_case(b"x-forwarded-proto") || dropped(name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        if Some(i) == last_xff {
            if !value.is_empty() {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(info.client_ip.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if head.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if head.version_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    if last_xff.is_none() {
        out.extend_from_slice(b"X-Forwarded-For: ");
        out.extend_from_slice(info.client_ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-Proto: ");
    out.extend_from_slice(info.proto.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// The field lines of a head httparse accepted, as (name, value without OWS).
fn field_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head_lines(head).skip(1).filter_map(|line| {
        let colon = memchr::memchr(b':', line)?;
        // `colon` is a position found in `line`: in bounds.
        let (name, value) = line.split_at(colon);
        Some((name, trim_ows(value.get(1..).unwrap_or_default())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::tests::for_each_mutation;

    const LIMITS: Limits = Limits {
        max_head: 16 * 1024,
        max_headers: 100,
    };

    fn req(buf: &[u8]) -> Sniff<RequestHead, Reject> {
        parse_request(buf, &LIMITS)
    }

    fn done(buf: &[u8]) -> RequestHead {
        match req(buf) {
            Sniff::Done(head) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn rejected(buf: &[u8], status: u16, reason: &str) {
        match req(buf) {
            Sniff::Reject(r) => {
                assert_eq!(
                    (r.status, r.reason),
                    (status, reason),
                    "{:?}",
                    String::from_utf8_lossy(buf)
                )
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn resp(buf: &[u8], method: Method) -> Sniff<ResponseHead, Reject> {
        parse_response(buf, method, &LIMITS)
    }

    fn resp_done(buf: &[u8], method: Method) -> ResponseHead {
        match resp(buf, method) {
            Sniff::Done(head) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn resp_rejected(buf: &[u8], reason: &str) {
        match resp(buf, Method::Get) {
            Sniff::Reject(r) => {
                assert_eq!(
                    (r.status, r.reason),
                    (502, reason),
                    "{:?}",
                    String::from_utf8_lossy(buf)
                )
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// Every strict prefix of a valid message is Incomplete, the whole is Done.
    fn check_all_prefixes<T: std::fmt::Debug>(
        msg: &[u8],
        parse: impl Fn(&[u8]) -> Sniff<T, Reject>,
    ) {
        for n in 0..msg.len() {
            let prefix = &msg[..n];
            match parse(prefix) {
                Sniff::Incomplete => {}
                other => panic!("prefix {:?}: {other:?}", String::from_utf8_lossy(prefix)),
            }
        }
        assert!(
            matches!(parse(msg), Sniff::Done(_)),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }

    const VALID_REQUESTS: [&[u8]; 7] = [
        b"GET /PBX0/APPS/x?a=b HTTP/1.1\r\nHost: hq.example.net\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: a:8080\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        b"GET http://Example.COM:80/a/../b?x HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"GET /ws HTTP/1.1\nHost: [::1]:443\nConnection: Upgrade\nUpgrade: websocket\n\n",
        b"GET / HTTP/1.0\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: ftp\r\n\r\n",
    ];

    #[test]
    fn request_prefixes_are_incomplete() {
        for msg in VALID_REQUESTS {
            let head = done(msg);
            check_all_prefixes(&msg[..head.head_len], req);
        }
    }

    #[test]
    fn request_origin_form() {
        let buf =
            b"GET /PBX0/APPS/../ADMIN2?x=1&y HTTP/1.1\r\nHost: HQ.Example.NET.:443\r\n\r\nrest";
        let head = done(buf);
        assert_eq!(head.head_len, buf.len() - 4);
        assert_eq!(head.method, Method::Get);
        assert_eq!(&buf[head.method_range.clone()], b"GET");
        assert_eq!(head.host, "hq.example.net");
        assert_eq!(head.path, "/PBX0/ADMIN2");
        assert_eq!(head.query.clone().map(|q| &buf[q]), Some(&b"x=1&y"[..]));
        assert_eq!(head.version_minor, 1);
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive && !head.upgrade && !head.expect_continue);

        let head = done(b"GET /a? HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(head.query.map(|q| q.len()), Some(0));
        let buf = b"\r\n\r\nPUT / HTTP/1.1\r\nHost: a\r\n\r\n";
        let head = done(buf);
        assert_eq!(&buf[head.method_range.clone()], b"PUT");
        assert_eq!(head.method, Method::Put);
        assert_eq!(head.head_len, buf.len());
    }

    #[test]
    fn request_methods_are_case_sensitive() {
        let cases: [(&[u8], Method); 10] = [
            (b"GET", Method::Get),
            (b"HEAD", Method::Head),
            (b"POST", Method::Post),
            (b"PUT", Method::Put),
            (b"DELETE", Method::Delete),
            (b"OPTIONS", Method::Options),
            (b"PATCH", Method::Patch),
            (b"TRACE", Method::Trace),
            (b"get", Method::Other),
            (b"PROPFIND", Method::Other),
        ];
        for (token, method) in cases {
            let mut buf = token.to_vec();
            buf.extend_from_slice(b" / HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(done(&buf).method, method);
        }
        rejected(
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            501,
            "CONNECT not supported",
        );
    }

    #[test]
    fn request_target_forms() {
        let head =
            done(b"GET HTTP://Example.com:8080/a/./b?q=1 HTTP/1.1\r\nHost: EXAMPLE.com\r\n\r\n");
        assert_eq!(
            (head.host.as_str(), head.path.as_str()),
            ("example.com", "/a/b")
        );
        let head = done(b"GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(head.path, "/");
        let buf = b"GET http://example.com?q HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let head = done(buf);
        assert_eq!(
            (head.path.as_str(), head.query.map(|q| &buf[q])),
            ("/", Some(&b"q"[..]))
        );
        // HTTP/1.0 without Host: no host, the caller refuses.
        assert_eq!(done(b"GET http://example.com/ HTTP/1.0\r\n\r\n").host, "");

        rejected(
            b"GET http://evil.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            400,
            "absolute-form host differs from Host",
        );
        rejected(
            b"GET http://user@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            400,
            "userinfo in request target",
        );
        rejected(
            b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "invalid host in request target",
        );
        rejected(
            b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "malformed request target",
        );
        rejected(
            b"GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "malformed request target",
        );
        rejected(
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "asterisk-form is not routable",
        );
        rejected(
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "asterisk-form is only allowed for OPTIONS",
        );
        rejected(
            b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "malformed path",
        );
        rejected(
            b"GET /a?b#f HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "fragment in request target",
        );
    }

    #[test]
    fn request_path_rejects() {
        let cases: [(&[u8], &str); 5] = [
            (b"/..", "path climbs above the root"),
            (b"/a/../../b", "path climbs above the root"),
            (b"/PBX0/APPS/..%2fCONFIG", "encoded separator in path"),
            (b"/a\\b", "encoded separator in path"),
            (b"/%zz", "bad percent-escape in path"),
        ];
        for (path, reason) in cases {
            let mut buf = b"GET ".to_vec();
            buf.extend_from_slice(path);
            buf.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            rejected(&buf, 400, reason);
        }
        assert_eq!(
            done(b"GET /PBX0/APPS/%2e%2e/MY HTTP/1.1\r\nHost: a\r\n\r\n").path,
            "/PBX0/MY"
        );
        // Non-ASCII in the target: httparse takes UTF-8, the path refuses it.
        rejected(
            "GET /é HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes(),
            400,
            "malformed path",
        );
        rejected(
            b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "malformed request",
        );
    }

    #[test]
    fn request_host_rules() {
        rejected(b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host");
        rejected(
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            400,
            "duplicate Host",
        );
        rejected(
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
            "duplicate Host",
        );
        for bad in [
            "a b", "a,b", "a:80:80", "a:x", "a:123456", "[::1", "[::1]x", "[v1.x]", "[]", ":80",
            "a@b", "a%41", "é",
        ] {
            let buf = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            rejected(buf.as_bytes(), 400, "invalid Host");
        }
        let cases = [
            ("Example.COM", "example.com"),
            ("example.com.", "example.com"),
            ("example.com.:80", "example.com"),
            ("example.com:", "example.com"),
            ("10.0.0.1:8443", "10.0.0.1"),
            ("[2001:DB8::1]:443", "[2001:db8::1]"),
            ("[::ffff:10.0.0.1]", "[::ffff:10.0.0.1]"),
            ("", ""),
        ];
        for (value, host) in cases {
            let buf = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
            assert_eq!(done(buf.as_bytes()).host, host, "{value}");
        }
        assert_eq!(done(b"GET / HTTP/1.0\r\n\r\n").host, "");
    }

    #[test]
    fn request_size_limits() {
        let limits = Limits {
            max_head: 64,
            max_headers: 2,
        };
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\nA: b\r\n\r\n";
        assert!(matches!(parse_request(ok, &limits), Sniff::Done(_)));
        let big = b"GET / HTTP/1.1\r\nHost: a\r\nA: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n";
        assert_eq!(parse_request(&big[..63], &limits), Sniff::Incomplete);
        let too_large = Sniff::Reject(Reject {
            status: 431,
            reason: "header too large",
        });
        assert_eq!(parse_request(&big[..64], &limits), too_large);
        assert_eq!(parse_request(big, &limits), too_large);
        // A complete head of exactly max_head bytes is fine, bytes after it are body.
        let exact = Limits {
            max_head: ok.len(),
            max_headers: 2,
        };
        let mut with_body = ok.to_vec();
        with_body.extend_from_slice(b"more");
        assert!(matches!(parse_request(&with_body, &exact), Sniff::Done(_)));

        let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: b\r\nC: d\r\n\r\n";
        let too_many = Sniff::Reject(Reject {
            status: 431,
            reason: "too many header fields",
        });
        assert_eq!(parse_request(many, &limits), too_many);
        // A large max_headers goes to the heap and still works.
        let lots = Limits {
            max_head: 1 << 20,
            max_headers: 1000,
        };
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..500 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&buf, &lots), Sniff::Done(_)));
        assert!(matches!(
            parse_request(&buf, &LIMITS),
            Sniff::Reject(Reject { status: 431, .. })
        ));
    }

    #[test]
    fn request_syntax_rejects() {
        rejected(
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            400,
            "obsolete line folding",
        );
        rejected(
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
            400,
            "obsolete line folding",
        );
        rejected(
            b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            400,
            "whitespace before first header field",
        );
        rejected(
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            505,
            "unsupported HTTP version",
        );
        rejected(
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            505,
            "unsupported HTTP version",
        );
        rejected(
            b"GET / FOO/1.1\r\nHost: a\r\n\r\n",
            400,
            "malformed request",
        );
        rejected(b"GET /\r\n\r\n", 400, "malformed request");
        rejected(
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "malformed request",
        );
        rejected(
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            400,
            "malformed request",
        );
        rejected(
            b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            400,
            "malformed request",
        );
        rejected(
            b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
            400,
            "malformed request",
        );
        rejected(
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            400,
            "malformed request",
        );
        rejected(
            b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
            400,
            "malformed request",
        );
        rejected(
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            400,
            "malformed request",
        );
    }

    #[test]
    fn request_framing_rules() {
        let framing = |fields: &str| {
            let buf = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
            req(buf.as_bytes())
        };
        let ok = |fields: &str, want: BodyFraming| match framing(fields) {
            Sniff::Done(h) => assert_eq!(h.framing, want, "{fields}"),
            other => panic!("{fields}: {other:?}"),
        };
        let bad = |fields: &str, status: u16, reason: &str| match framing(fields) {
            Sniff::Reject(r) => assert_eq!((r.status, r.reason), (status, reason), "{fields}"),
            other => panic!("{fields}: {other:?}"),
        };
        ok("", BodyFraming::None);
        ok("Content-Length: 0\r\n", BodyFraming::Length(0));
        ok("Content-Length: 42\r\n", BodyFraming::Length(42));
        ok("Content-Length: 007\r\n", BodyFraming::Length(7));
        ok(
            "Content-Length: 5, 5\r\ncontent-length: 5\r\n",
            BodyFraming::Length(5),
        );
        ok(
            "Content-Length: 18446744073709551615\r\n",
            BodyFraming::Length(u64::MAX),
        );
        ok("Transfer-Encoding: chunked\r\n", BodyFraming::Chunked);
        ok("Transfer-Encoding: CHUNKED\r\n", BodyFraming::Chunked);
        ok("Transfer-Encoding: gzip, chunked\r\n", BodyFraming::Chunked);
        ok(
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            BodyFraming::Chunked,
        );
        ok(
            "Transfer-Encoding: gzip;q=1 , ,chunked\r\n",
            BodyFraming::Chunked,
        );

        bad(
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            400,
            "conflicting Content-Length",
        );
        bad(
            "Content-Length: 5, 6\r\n",
            400,
            "conflicting Content-Length",
        );
        bad("Content-Length: 5x\r\n", 400, "invalid Content-Length");
        bad("Content-Length: -1\r\n", 400, "invalid Content-Length");
        bad("Content-Length: +1\r\n", 400, "invalid Content-Length");
        bad("Content-Length: \r\n", 400, "invalid Content-Length");
        bad("Content-Length: 5,\r\n", 400, "invalid Content-Length");
        bad("Content-Length: 1 2\r\n", 400, "invalid Content-Length");
        bad(
            "Content-Length: 18446744073709551616\r\n",
            400,
            "invalid Content-Length",
        );
        bad(
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            400,
            "Content-Length with Transfer-Encoding",
        );
        bad(
            "Transfer-Encoding: chunked\r\nContent-Length: x\r\n",
            400,
            "Content-Length with Transfer-Encoding",
        );
        bad(
            "Transfer-Encoding: gzip\r\n",
            400,
            "chunked is not the final transfer coding",
        );
        bad(
            "Transfer-Encoding: chunked, gzip\r\n",
            400,
            "chunked is not the final transfer coding",
        );
        bad(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            400,
            "chunked is not the final transfer coding",
        );
        bad(
            "Transfer-Encoding: xchunked\r\n",
            400,
            "chunked is not the final transfer coding",
        );
        bad(
            "Transfer-Encoding: chunked, chunked\r\n",
            400,
            "malformed Transfer-Encoding",
        );
        bad(
            "Transfer-Encoding: chunked;x=1\r\n",
            400,
            "malformed Transfer-Encoding",
        );
        bad(
            "Transfer-Encoding: \r\n",
            400,
            "malformed Transfer-Encoding",
        );
        bad(
            "Transfer-Encoding: \"chunked\"\r\n",
            400,
            "malformed Transfer-Encoding",
        );

        let te10 = b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        rejected(te10, 400, "Transfer-Encoding in HTTP/1.0");
        let cl10 = done(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(cl10.framing, BodyFraming::Length(3));
    }

    #[test]
    fn request_connection_options() {
        let flags = |version: &str, fields: &str| {
            let buf = format!("GET / HTTP/1.{version}\r\nHost: a\r\n{fields}\r\n");
            let h = done(buf.as_bytes());
            (h.keep_alive, h.upgrade, h.expect_continue)
        };
        assert_eq!(flags("1", ""), (true, false, false));
        assert_eq!(flags("1", "Connection: close\r\n"), (false, false, false));
        assert_eq!(
            flags("1", "Connection: foo, CLOSE\r\n"),
            (false, false, false)
        );
        assert_eq!(
            flags("1", "Connection: keep-alive\r\nConnection: close\r\n"),
            (false, false, false)
        );
        assert_eq!(flags("0", ""), (false, false, false));
        assert_eq!(
            flags("0", "Connection: Keep-Alive\r\n"),
            (true, false, false)
        );
        assert_eq!(
            flags("0", "Connection: keep-alive, close\r\n"),
            (false, false, false)
        );
        assert_eq!(
            flags(
                "1",
                "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
            ),
            (true, true, false)
        );
        assert_eq!(flags("1", "Connection: upgrade\r\n"), (true, false, false));
        assert_eq!(flags("1", "Upgrade: websocket\r\n"), (true, false, false));
        assert_eq!(
            flags("0", "Connection: upgrade\r\nUpgrade: websocket\r\n"),
            (false, false, false)
        );
        assert_eq!(flags("1", "Expect: 100-Continue\r\n"), (true, false, true));
        assert_eq!(flags("1", "Expect: 200-ok\r\n"), (true, false, false));
        assert_eq!(
            flags("0", "Expect: 100-continue\r\n"),
            (false, false, false)
        );
    }

    const VALID_RESPONSES: [&[u8]; 5] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.0 304 Not Modified\r\nConnection: keep-alive\r\n\r\n",
        b"\r\nHTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n\n",
        b"HTTP/1.1 204\r\n\r\n",
    ];

    #[test]
    fn response_prefixes_are_incomplete() {
        for msg in VALID_RESPONSES {
            let head = resp_done(msg, Method::Get);
            check_all_prefixes(&msg[..head.head_len], |b| resp(b, Method::Get));
        }
    }

    #[test]
    fn response_framing_rules() {
        let framing = |status: &str, fields: &str, method: Method| {
            let buf = format!("HTTP/1.1 {status} X\r\n{fields}\r\n");
            let h = resp_done(buf.as_bytes(), method);
            (h.framing, h.keep_alive)
        };
        use BodyFraming::*;
        let g = Method::Get;
        assert_eq!(
            framing("200", "Content-Length: 10\r\n", g),
            (Length(10), true)
        );
        assert_eq!(
            framing("200", "Content-Length: 10\r\n", Method::Head),
            (None, true)
        );
        assert_eq!(
            framing("200", "Content-Length: x\r\n", Method::Head),
            (None, true)
        );
        assert_eq!(framing("204", "", g), (None, true));
        assert_eq!(framing("304", "Content-Length: 10\r\n", g), (None, true));
        assert_eq!(framing("100", "", g), (None, true));
        assert_eq!(framing("101", "Connection: upgrade\r\n", g), (None, true));
        assert_eq!(framing("200", "", Method::Connect), (None, true));
        assert_eq!(
            framing("407", "Content-Length: 1\r\n", Method::Connect),
            (Length(1), true)
        );
        assert_eq!(
            framing("200", "Transfer-Encoding: chunked\r\n", g),
            (Chunked, true)
        );
        assert_eq!(
            framing("200", "Transfer-Encoding: gzip, chunked\r\n", g),
            (Chunked, true)
        );
        assert_eq!(
            framing("200", "Transfer-Encoding: gzip\r\n", g),
            (UntilClose, false)
        );
        resp_rejected(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n",
            "Content-Length with Transfer-Encoding in response",
        );
        assert_eq!(framing("200", "", g), (UntilClose, false));
        assert_eq!(
            framing("200", "Connection: close\r\nContent-Length: 1\r\n", g),
            (Length(1), false)
        );
        assert_eq!(
            framing("500", "Content-Length: 3, 3\r\n", g),
            (Length(3), true)
        );

        let h = resp_done(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", g);
        assert_eq!(
            (h.version_minor, h.framing, h.keep_alive),
            (0, Length(1), false)
        );
        let h = resp_done(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            g,
        );
        assert_eq!((h.status, h.framing, h.keep_alive), (200, Length(1), true));
    }

    #[test]
    fn response_rejects() {
        resp_rejected(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "conflicting Content-Length in response",
        );
        resp_rejected(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
            "invalid Content-Length in response",
        );
        resp_rejected(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "malformed Transfer-Encoding in response",
        );
        resp_rejected(
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Transfer-Encoding in HTTP/1.0 response",
        );
        resp_rejected(
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 1\r\n\r\n",
            "obsolete line folding in response",
        );
        resp_rejected(b"HTTP/1.1 099 Odd\r\n\r\n", "invalid status code");
        resp_rejected(b"HTTP/2.0 200 OK\r\n\r\n", "malformed response");
        resp_rejected(b"HTTP/1.1 20 OK\r\n\r\n", "malformed response");
        resp_rejected(
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "malformed response",
        );
        let limits = Limits {
            max_head: 32,
            max_headers: 1,
        };
        let big = b"HTTP/1.1 200 OK\r\nServer: some long server name\r\n\r\n";
        assert_eq!(
            parse_response(big, Method::Get, &limits),
            Sniff::Reject(Reject {
                status: 502,
                reason: "response header too large"
            })
        );
        let many = b"HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\r\n";
        assert_eq!(
            parse_response(
                many,
                Method::Get,
                &Limits {
                    max_head: 1024,
                    max_headers: 1
                }
            ),
            Sniff::Reject(Reject {
                status: 502,
                reason: "too many response header fields"
            })
        );
    }

    const CHUNKED_BODY: &[u8] =
        b"4;ext=1;q=\"a b\"\r\nWiki\r\n5 ; x\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n\
        000;last\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\nX-T:\r\n\r\n";

    fn feed_all(parts: &[&[u8]]) -> Result<(usize, bool), Reject> {
        let mut dec = ChunkedDecoder::new();
        let mut total = 0;
        let mut done = false;
        for part in parts {
            let p = dec.feed(part)?;
            assert!(p.consumed <= part.len());
            assert!(!done || p.consumed == 0);
            if !p.done {
                assert_eq!(p.consumed, part.len());
            }
            total += p.consumed;
            done = p.done;
        }
        Ok((total, done))
    }

    #[test]
    fn chunked_every_split() {
        let mut input = CHUNKED_BODY.to_vec();
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        let want = Ok((CHUNKED_BODY.len(), true));
        assert_eq!(feed_all(&[&input]), want);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(feed_all(&[a, b]), want, "split at {i}");
            for j in i..=input.len() {
                let (b, c) = input.split_at(j);
                let a = &b[..i];
                let b = &b[i..];
                assert_eq!(feed_all(&[a, b, c]), want, "split at {i}, {j}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed_all(&bytes), want);
    }

    #[test]
    fn chunked_prefixes_are_incomplete() {
        let bodies: [&[u8]; 3] = [CHUNKED_BODY, b"0\r\n\r\n", b"ffffffffffffffff\r\nab"];
        for body in bodies {
            for n in 0..body.len() {
                let prefix = &body[..n];
                assert_eq!(
                    feed_all(&[prefix]),
                    Ok((n, false)),
                    "{:?}",
                    String::from_utf8_lossy(prefix)
                );
            }
        }
    }

    #[test]
    fn chunked_after_end_and_after_reject() {
        let mut dec = ChunkedDecoder::new();
        assert_eq!(
            dec.feed(b"0\r\n\r\nX"),
            Ok(ChunkProgress {
                consumed: 5,
                done: true
            })
        );
        assert_eq!(
            dec.feed(b"more"),
            Ok(ChunkProgress {
                consumed: 0,
                done: true
            })
        );
        let mut dec = ChunkedDecoder::new();
        let err = dec.feed(b"x").unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(dec.feed(b"0\r\n\r\n"), Err(err));
    }

    #[test]
    fn chunked_rejects() {
        let cases: [(&[u8], &str); 18] = [
            (b"\r\n", "invalid chunk size"),
            (b"g\r\n", "invalid chunk size"),
            (b"5 \r\nhello\r\n", "invalid chunk size"),
            (b"5 x\r\n", "invalid chunk size"),
            (b"-5\r\n", "invalid chunk size"),
            (b"10000000000000000\r\n", "chunk size too large"),
            (b"00000000000000000\r\n", "chunk size too large"),
            (b"5\n", "bare LF in chunked body"),
            (b"5;a\n", "bare LF in chunked body"),
            (b"5\rx", "CR without LF in chunked body"),
            (b"5;a\x00\r\n", "invalid chunk extension"),
            (b"5\r\nhelloX", "missing CRLF after chunk data"),
            (b"5\r\nhello\n", "missing CRLF after chunk data"),
            (b"5\r\nhello\r\r", "missing CRLF after chunk data"),
            (b"0\r\nX: y\n", "bare LF in chunked body"),
            (b"0\r\n\n", "bare LF in chunked body"),
            (b"0\r\nX: y\r\n z\r\n", "obsolete line folding in trailer"),
            (b"0\r\nX y\r\n", "invalid trailer field"),
        ];
        for (body, reason) in cases {
            let got = feed_all(&[body]);
            assert_eq!(
                got,
                Err(Reject {
                    status: 400,
                    reason
                }),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            feed_all(&[b"0\r\n: y\r\n"]),
            Err(Reject {
                status: 400,
                reason: "invalid trailer field"
            })
        );
        assert_eq!(
            feed_all(&[b"0\r\n\r\x00"]),
            Err(Reject {
                status: 400,
                reason: "CR without LF in chunked body"
            })
        );
        // 16 hex digits are fine.
        assert_eq!(feed_all(&[b"ffffffffffffffff\r\nabc"]), Ok((21, false)));

        let mut long_ext = b"1;".to_vec();
        long_ext.resize(MAX_CHUNK_LINE - 2, b'a');
        long_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(feed_all(&[&long_ext]), Ok((long_ext.len(), true)));
        let mut too_long = b"1;".to_vec();
        too_long.resize(MAX_CHUNK_LINE - 1, b'a');
        too_long.extend_from_slice(b"\r\n");
        assert_eq!(
            feed_all(&[&too_long]),
            Err(Reject {
                status: 400,
                reason: "chunk-size line too long"
            })
        );

        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS {
            trailers.extend_from_slice(
                b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(
            feed_all(&[&trailers]),
            Err(Reject {
                status: 400,
                reason: "trailer section too large"
            })
        );
    }

    fn forward(buf: &[u8]) -> String {
        let head = done(buf);
        let mut out = b"stale".to_vec();
        write_forward_head(
            buf,
            &head,
            &ForwardInfo {
                client_ip: "192.0.2.7",
                proto: "https",
            },
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forward_head() {
        assert_eq!(
            forward(
                b"GET /a/../b%7e?x=%41 HTTP/1.1\r\nHost: Example.com\r\nAccept:  */* \r\n\r\nbody"
            ),
            "GET /b~?x=%41 HTTP/1.1\r\nHost: Example.com\r\nAccept: */*\r\n\
             X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        assert_eq!(
            forward(
                b"\r\nPOST http://example.com/x?q HTTP/1.0\nX-Forwarded-Proto: http\nHost: example.com\n\
                  x-forwarded-for: 10.0.0.1\nX-Forwarded-For: 10.0.0.2\nContent-Length: 0\n\n"
            ),
            "POST /x?q HTTP/1.0\r\nHost: example.com\r\nx-forwarded-for: 10.0.0.1\r\n\
             X-Forwarded-For: 10.0.0.2, 192.0.2.7\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\
             X-Forwarded-Proto: https\r\n\r\n"
        );
        assert_eq!(
            forward(b"GET / HTTP/1.1\r\nX-Forwarded-For:\r\nHost: a\r\n\r\n"),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 192.0.2.7\r\nHost: a\r\n\
             X-Forwarded-Proto: https\r\n\r\n"
        );
    }

    /// RFC 9110 §7.6.1: hop-by-hop fields and those named in Connection stay on the
    /// client's connection; portico's own options replace them.
    #[test]
    fn forward_head_drops_hop_by_hop_fields() {
        // The client's close is its own business: the target connection persists.
        assert_eq!(
            forward(
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Trace\r\nX-Trace: 1\r\n\
                  Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: close\r\n\
                  Upgrade: h2c\r\nAccept: */*\r\n\r\n"
            ),
            "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\
             X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        // An upgrade keeps Upgrade and says so in portico's own Connection line.
        assert_eq!(
            forward(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\
                  Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Connection: upgrade\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        // Naming the framing, Host or X-Forwarded-For does not drop them: the body
        // stays framed as portico reads it.
        assert_eq!(
            forward(
                b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, host, \
                  x-forwarded-for\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 2\r\n\r\nab"
            ),
            "POST / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n\
             Content-Length: 2\r\nX-Forwarded-Proto: https\r\n\r\n"
        );
        // Options past the bound are not looked at: their fields pass.
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: ".to_vec();
        for i in 0..MAX_CONNECTION_OPTIONS {
            many.extend_from_slice(format!("x-{i}, ").as_bytes());
        }
        many.extend_from_slice(b"x-last\r\nX-0: gone\r\nX-Last: kept\r\n\r\n");
        let out = forward(&many);
        assert!(!out.contains("X-0"), "{out}");
        assert!(out.contains("X-Last: kept\r\n"), "{out}");
    }

    /// Feed deterministic mutations of valid messages to every parser: no panic, any
    /// Done is within the buffer, and a forwarded head parses back to the same key.
    #[test]
    fn mutations_never_panic() {
        let bytes = [
            0u8, b' ', b'\t', b'\r', b'\n', b':', b',', b';', b'%', b'/', b'.', b'?', b'#', b'0',
            b'a', b'A', 0x7f, 0xff,
        ];
        let info = ForwardInfo {
            client_ip: "192.0.2.7",
            proto: "http",
        };
        let mut out = Vec::new();
        let mut done_count = 0usize;
        for seed in VALID_REQUESTS {
            for_each_mutation(seed, &bytes, |m| {
                if let Sniff::Done(head) = req(m) {
                    done_count += 1;
                    assert!(head.head_len <= m.len());
                    assert!(head.path.starts_with('/'));
                    write_forward_head(m, &head, &info, &mut out);
                    match req(&out) {
                        Sniff::Done(again) => {
                            assert_eq!(again.head_len, out.len());
                            assert_eq!(
                                (
                                    &again.host,
                                    &again.path,
                                    again.framing,
                                    again.keep_alive,
                                    again.upgrade
                                ),
                                // The target connection always persists.
                                (&head.host, &head.path, head.framing, true, head.upgrade),
                                "{:?}",
                                String::from_utf8_lossy(m)
                            );
                        }
                        other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(&out)),
                    }
                }
            });
        }
        assert!(done_count > 100);
        for seed in VALID_RESPONSES {
            for method in [Method::Get, Method::Head, Method::Connect] {
                for_each_mutation(seed, &bytes, |m| {
                    if let Sniff::Done(head) = resp(m, method) {
                        assert!(head.head_len <= m.len());
                    }
                });
            }
        }
        for_each_mutation(CHUNKED_BODY, &bytes, |m| {
            let whole = feed_all(&[m]);
            if let Ok((consumed, _)) = whole {
                assert!(consumed <= m.len());
            }
            for split in [1, m.len() / 2, m.len().saturating_sub(1)] {
                let (a, b) = m.split_at(split.min(m.len()));
                assert_eq!(feed_all(&[a, b]), whole);
            }
        });
    }
}
