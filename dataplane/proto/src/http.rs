//! HTTP/1.1 message heads as the reverse proxy sees them (RFC 9110, RFC 9112).
//!
//! Owns: parsing a request head into the routing key (Host without port, normalised
//! path) and its body framing; rejecting request smuggling and malformed input;
//! parsing a response head into its framing; the chunked-body state machine used to
//! find where a chunked body ends while it is forwarded verbatim; writing the head that
//! is forwarded to the target. The route lookup lives in `portico-control`.
//!
//! SKELETON: signatures fixed, bodies being written.

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
        Limits { max_head: 16 * 1024, max_headers: 100 }
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

/// Parse the request head at the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Sniff<RequestHead, Reject> {
    let _ = (buf, limits);
    Sniff::Incomplete
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
pub fn parse_response(
    buf: &[u8],
    request_method: Method,
    limits: &Limits,
) -> Sniff<ResponseHead, Reject> {
    let _ = (buf, request_method, limits);
    Sniff::Incomplete
}

/// Progress of a [`ChunkedDecoder`] over one input slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    /// Bytes of the input that belong to the body (forward exactly these).
    pub consumed: usize,
    /// The last chunk, trailers and final CRLF have been seen.
    pub done: bool,
}

/// Finds the end of a chunked body (RFC 9112 §7.1) while it is forwarded verbatim.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    _state: u8,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next bytes of the body.
    pub fn feed(&mut self, input: &[u8]) -> Result<ChunkProgress, Reject> {
        Ok(ChunkProgress { consumed: input.len(), done: false })
    }
}

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
pub fn write_forward_head(buf: &[u8], head: &RequestHead, info: &ForwardInfo<'_>, out: &mut Vec<u8>) {
    let _ = (buf, head, info);
    out.clear();
}
