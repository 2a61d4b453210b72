//! Reading HTTP/1.1 responses as a client does (RFC 9112 §6.3): the head with
//! httparse, then the body by its framing (Content-Length, chunked, or until close),
//! consumed without being kept. Pure: the I/O loop in [`crate::http`] feeds bytes.
//!
//! This is deliberately independent of `portico-proto`: the load generator must not
//! share the parser of the code it measures.

/// Most header fields accepted in one response head.
const MAX_HEADERS: usize = 64;

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    Head,
    ContentLength,
    TransferEncoding,
    Chunk,
}

impl Malformed {
    /// The error kind as counted in reports.
    pub fn kind(self) -> &'static str {
        match self {
            Malformed::Head => "malformed head",
            Malformed::ContentLength => "malformed content-length",
            Malformed::TransferEncoding => "unsupported transfer-encoding",
            Malformed::Chunk => "malformed chunk",
        }
    }
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, blank line included.
    pub len: usize,
    pub body: Body,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// How the body after a head is delimited, and how much of it is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing left.
    Done,
    /// This many bytes left.
    Length(u64),
    /// Chunked, in this state.
    Chunked(Chunked),
    /// Runs until the server closes the connection.
    UntilClose,
}

/// Parse a response head at the start of `buf`: `Ok(None)` when more bytes are
/// needed. `head_request` says the request was HEAD (no body follows then).
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Malformed::Head),
    };
    let status = resp.code.ok_or(Malformed::Head)?;
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = http10;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(Malformed::ContentLength)?;
            if length.is_some_and(|l| l != v) {
                return Err(Malformed::ContentLength);
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // RFC 9112 §6.1: chunked must be the final coding; anything else here
            // means the body runs to close, which a benchmark should not rely on.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            if trim(last).eq_ignore_ascii_case(b"chunked") {
                chunked = true;
            } else {
                return Err(Malformed::TransferEncoding);
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    // RFC 9112 §6.3: HEAD, 1xx, 204 and 304 have no body; then chunked; then length.
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Done
    } else if chunked {
        Body::Chunked(Chunked::default())
    } else if let Some(n) = length {
        if n == 0 {
            Body::Done
        } else {
            Body::Length(n)
        }
    } else {
        close = true;
        Body::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        body,
        close,
    }))
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

impl Body {
    /// Consume body bytes from the start of `input`; returns how many were used. The
    /// body is complete when `self` becomes [`Body::Done`]; bytes after it belong to
    /// the next response.
    pub fn consume(&mut self, input: &[u8]) -> Result<usize, Malformed> {
        match self {
            Body::Done => Ok(0),
            Body::UntilClose => Ok(input.len()),
            Body::Length(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                *left -= n as u64;
                if *left == 0 {
                    *self = Body::Done;
                }
                Ok(n)
            }
            Body::Chunked(c) => {
                let n = c.consume(input)?;
                if c.state == ChunkState::End {
                    *self = Body::Done;
                }
                Ok(n)
            }
        }
    }
}

/// Chunked body decoder state (RFC 9112 §7.1):
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*("0") [ chunk-ext ] CRLF
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    /// Reading hex digits of a chunk size.
    #[default]
    Size,
    /// In a chunk extension, up to the CR.
    Ext,
    /// Expecting LF after the size line's CR.
    SizeLf,
    /// This many data bytes left (in `size`).
    Data,
    /// Expecting CR after the data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Expecting LF after a trailer line's CR.
    TrailerLf,
    /// Expecting LF of the final CRLF.
    FinalLf,
    End,
}

/// Longest chunk-size accepted, in hex digits (16 fill a u64).
const MAX_SIZE_DIGITS: u8 = 15;

impl Chunked {
    fn consume(&mut self, input: &[u8]) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < input.len() && self.state != ChunkState::End {
            if self.state == ChunkState::Data {
                let n = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                self.size -= n as u64;
                i += n;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let b = input.get(i).copied().ok_or(Malformed::Chunk)?;
            i += 1;
            self.state = match (self.state, b) {
                (ChunkState::Size, b';' | b' ' | b'\t') if self.digits > 0 => ChunkState::Ext,
                (ChunkState::Size, b'\r') if self.digits > 0 => ChunkState::SizeLf,
                (ChunkState::Size, b) => {
                    let d = (b as char).to_digit(16).ok_or(Malformed::Chunk)?;
                    if self.digits >= MAX_SIZE_DIGITS {
                        return Err(Malformed::Chunk);
                    }
                    self.size = self.size * 16 + u64::from(d);
                    self.digits += 1;
                    ChunkState::Size
                }
                (ChunkState::Ext, b'\r') => ChunkState::SizeLf,
                (ChunkState::Ext, b'\n') => return Err(Malformed::Chunk),
                (ChunkState::Ext, _) => ChunkState::Ext,
                (ChunkState::SizeLf, b'\n') => {
                    self.digits = 0;
                    if self.size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    }
                }
                (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                (ChunkState::DataLf, b'\n') => ChunkState::Size,
                (ChunkState::TrailerStart, b'\r') => ChunkState::FinalLf,
                (ChunkState::TrailerStart, b'\n') => return Err(Malformed::Chunk),
                (ChunkState::TrailerLine, b'\r') => ChunkState::TrailerLf,
                (ChunkState::TrailerStart | ChunkState::TrailerLine, _) => ChunkState::TrailerLine,
                (ChunkState::TrailerLf, b'\n') => ChunkState::TrailerStart,
                (ChunkState::FinalLf, b'\n') => ChunkState::End,
                _ => return Err(Malformed::Chunk),
            };
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(resp: &[u8]) -> Result<(Head, usize), Malformed> {
        let head = parse_head(resp, false)?.ok_or(Malformed::Head)?;
        let mut body = head.body;
        let used = body.consume(resp.get(head.len..).unwrap_or_default())?;
        assert_eq!(body, Body::Done, "body incomplete");
        Ok((head, head.len + used))
    }

    #[test]
    fn content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        let (h, used) = whole(r).unwrap();
        assert_eq!(h.status, 200);
        assert!(!h.close);
        assert_eq!(used, r.len() - 8);
    }

    #[test]
    fn chunked_with_ext_and_trailer() {
        let r =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                  5;a=b\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (h, used) = whole(r).unwrap();
        assert_eq!(h.status, 404);
        assert!(h.close);
        assert_eq!(used, r.len() - 4);
    }

    #[test]
    fn chunked_byte_by_byte() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut b = Body::Chunked(Chunked::default());
        for (i, byte) in body.iter().enumerate() {
            assert_ne!(b, Body::Done, "done early at {i}");
            assert_eq!(b.consume(std::slice::from_ref(byte)).unwrap(), 1);
        }
        assert_eq!(b, Body::Done);
    }

    #[test]
    fn every_prefix_of_a_head_needs_more() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        for n in 0..r.len() {
            assert_eq!(parse_head(&r[..n], false), Ok(None), "prefix {n}");
        }
        let h = parse_head(r, false).unwrap().unwrap();
        assert_eq!(h.body, Body::Done);
    }

    #[test]
    fn framing_rules() {
        let h = parse_head(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.body, Body::Done);
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Body::Done);
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Body::UntilClose);
        assert!(h.close);
        let h = parse_head(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.close);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            parse_head(b"HTTX/1.1 200 OK\r\n\r\n", false),
            Err(Malformed::Head)
        );
        assert_eq!(
            parse_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(Malformed::ContentLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            Err(Malformed::TransferEncoding)
        );
        let mut b = Body::Chunked(Chunked::default());
        assert_eq!(b.consume(b"zz\r\n"), Err(Malformed::Chunk));
        let mut b = Body::Chunked(Chunked::default());
        assert_eq!(b.consume(b"ffffffffffffffff\r\n"), Err(Malformed::Chunk));
        let mut b = Body::Chunked(Chunked::default());
        assert_eq!(b.consume(b"1\r\nab"), Err(Malformed::Chunk));
    }
}
