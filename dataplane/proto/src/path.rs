//! Request-path normalisation before routing (RFC 3986 §5.2.4, §6.2.2).
//!
//! Owns: turning the path part of an origin-form request target into the one string
//! the rule table is matched against, so that two spellings of the same resource route
//! the same way and no spelling reaches a path that no rule allows. The query, the
//! Host and the request line live in [`crate::http`]; the match itself lives in
//! `portico-control`.
//!
//! Promises, in this order, for an input that starts with `/`:
//! 1. Only bytes allowed in a request path get through: controls, space, DEL, bytes
//!    above 0x7f, `#` and `?` are [`PathReject::Malformed`]; a literal backslash is
//!    [`PathReject::EncodedSeparator`] (some targets treat it as `/`). Other printable
//!    ASCII (`[`, `]`, `|`, `{`, ...) is kept as sent: real clients send it raw, and
//!    it separates nothing.
//! 2. Percent-escapes of unreserved characters are decoded (RFC 3986 §6.2.2.2), the
//!    others keep their escape with upper-case hex digits (RFC 3986 §6.2.2.1).
//!    `%2F` and `%5C` are refused (a target would see a different segment structure
//!    than the rule table did), `%00` is refused, a broken escape is refused.
//! 3. Dot segments are removed (RFC 3986 §5.2.4), `%2E%2E` included because it is
//!    decoded first; a `..` that would climb above the root is refused, not clamped.
//! 4. Nothing else changes: empty segments (`//`) are kept as sent, because targets
//!    disagree about what they mean and a rule that ends in `/` already refuses a
//!    further `/` in the rest of the path.

use std::fmt;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathReject {
    /// Not starting with `/`, or bytes not allowed in a path.
    Malformed,
    /// `%2F` or `%5C` (encoded slash or backslash) inside a segment.
    EncodedSeparator,
    /// A `..` that would climb above the root.
    AboveRoot,
    /// A malformed percent-escape (`%zz`, truncated `%4`).
    BadEscape,
}

impl PathReject {
    /// A short reason for logs and error bodies.
    pub fn reason(self) -> &'static str {
        match self {
            PathReject::Malformed => "malformed path",
            PathReject::EncodedSeparator => "encoded separator in path",
            PathReject::AboveRoot => "path climbs above the root",
            PathReject::BadEscape => "bad percent-escape in path",
        }
    }
}

impl fmt::Display for PathReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathReject {}

/// Normalise the path part (no query) of an origin-form request target: decode
/// percent-encoded unreserved characters, remove dot segments, refuse encoded
/// separators and climbs above the root.
///
/// The result always starts with `/` and is ASCII. One allocation (the result).
pub fn normalise(path: &[u8]) -> Result<String, PathReject> {
    // RFC 9112 §3.2.1: origin-form = absolute-path [ "?" query ];
    // RFC 3986 §3.3:   path-absolute begins with "/".
    let rest = match path.split_first() {
        Some((b'/', rest)) => rest,
        _ => return Err(PathReject::Malformed),
    };

    let mut out = String::with_capacity(path.len());
    // Every segment of the input is decoded straight into `out`, then RFC 3986
    // §5.2.4 is applied to it in place. Splitting the raw bytes on `/` splits the
    // decoded path the same way because an encoded `/` is refused.
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(raw) = segments.next() {
        let last = segments.peek().is_none();
        let seg_start = out.len();
        out.push('/');
        decode_segment(raw, &mut out)?;
        // `seg_start + 1 <= out.len()` because a '/' was just pushed; `get` keeps
        // this panic-free regardless.
        let seg = out.get(seg_start + 1..).unwrap_or("");
        match seg {
            // RFC 3986 §5.2.4 B: "/./" -> "/" and a final "/." -> "/".
            "." => {
                out.truncate(seg_start);
                if last {
                    out.push('/');
                }
            }
            // RFC 3986 §5.2.4 C: "/../" or a final "/.." -> "/", removing the last
            // segment and its preceding "/" from the output. With no segment left to
            // remove the reference climbs above the root: refused, not clamped.
            ".." => {
                out.truncate(seg_start);
                if out.is_empty() {
                    return Err(PathReject::AboveRoot);
                }
                // `out` is non-empty and every segment written starts with '/'.
                let cut = out.rfind('/').unwrap_or(0);
                out.truncate(cut);
                if last {
                    out.push('/');
                }
            }
            // RFC 3986 §5.2.4 E: move the segment to the output (already there).
            _ => {}
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Decode one raw segment (no `/` in it) into `out`.
fn decode_segment(raw: &[u8], out: &mut String) -> Result<(), PathReject> {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            // RFC 3986 §2.1: pct-encoded = "%" HEXDIG HEXDIG
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&h| hex_value(h));
                let lo = raw.get(i + 2).and_then(|&l| hex_value(l));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathReject::BadEscape);
                };
                let v = hi << 4 | lo;
                match v {
                    0 => return Err(PathReject::Malformed),
                    b'/' | b'\\' => return Err(PathReject::EncodedSeparator),
                    // RFC 3986 §6.2.2.2: percent-encoded octets that correspond to
                    // unreserved characters should be decoded.
                    v if is_unreserved(v) => out.push(char::from(v)),
                    // RFC 3986 §6.2.2.1: the hex digits of the others are upper-cased.
                    // Both indexes are nibbles (< 16), in bounds of HEX_UPPER.
                    v => {
                        out.push('%');
                        out.push(char::from(HEX_UPPER[usize::from(v >> 4)]));
                        out.push(char::from(HEX_UPPER[usize::from(v & 0xf)]));
                    }
                }
                i += 3;
            }
            // Some targets treat a backslash as a separator: refuse it like `%5C`.
            b'\\' => return Err(PathReject::EncodedSeparator),
            // RFC 3986 §3.3 and §3.5: a fragment never reaches the server, and the
            // query was split off by the caller.
            b'#' | b'?' => return Err(PathReject::Malformed),
            // Printable ASCII.
            0x21..=0x7e => {
                out.push(char::from(b));
                i += 1;
            }
            // Controls, space, DEL, non-ASCII.
            _ => return Err(PathReject::Malformed),
        }
    }
    Ok(())
}

const HEX_UPPER: [u8; 16] = *b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ok(input: &str, want: &str) {
        assert_eq!(
            normalise(input.as_bytes()).as_deref(),
            Ok(want),
            "input {input:?}"
        );
    }

    fn err(input: &[u8], want: PathReject) {
        assert_eq!(
            normalise(input),
            Err(want),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn traversal_vectors() {
        ok("/PBX0/APPS/../ADMIN2", "/PBX0/ADMIN2");
        ok("/PBX0/APPS/%2e%2e/MY", "/PBX0/MY");
        ok("/PBX0/APPS/%2E%2E/MY", "/PBX0/MY");
        ok("/PBX0/APPS/.%2e/MY", "/PBX0/MY");
        ok("/PBX0/APPS/./x", "/PBX0/APPS/x");
        ok("/PBX0/APPS/%2e/x", "/PBX0/APPS/x");
        err(b"/..", PathReject::AboveRoot);
        err(b"/../", PathReject::AboveRoot);
        err(b"/%2e%2e/x", PathReject::AboveRoot);
        err(b"/a/../../b", PathReject::AboveRoot);
        err(b"/a/./../..", PathReject::AboveRoot);
        err(b"/PBX0/APPS/..%2fCONFIG", PathReject::EncodedSeparator);
        err(b"/PBX0/APPS/..%2FCONFIG", PathReject::EncodedSeparator);
        err(b"/PBX0/APPS/..%5cCONFIG", PathReject::EncodedSeparator);
        err(b"/PBX0/APPS/..%5CCONFIG", PathReject::EncodedSeparator);
        err(b"/PBX0/APPS/..\\CONFIG", PathReject::EncodedSeparator);
    }

    #[test]
    fn rfc3986_dot_segments() {
        ok("/a/b/..", "/a/");
        ok("/a/b/.", "/a/b/");
        ok("/a/..", "/");
        ok("/.", "/");
        ok("/./", "/");
        ok("/", "/");
        ok("/a/b/c/./../../g", "/a/g"); // RFC 3986 §5.2.4 example
        ok("/a/b/../c/", "/a/c/");
        ok("/a/..b/c", "/a/..b/c");
        ok("/a/b../c", "/a/b../c");
        ok("/a/.../c", "/a/.../c");
    }

    #[test]
    fn empty_segments_are_kept() {
        ok("//", "//");
        ok("/a//b", "/a//b");
        ok("/a//..", "/a/");
        ok("//..", "/");
    }

    #[test]
    fn percent_decoding() {
        ok("/%41BC", "/ABC");
        ok("/%7e%2D%5f%2E%30", "/~-_.0");
        ok("/a%20b", "/a%20b");
        ok("/a%2ab", "/a%2Ab");
        ok("/%c3%a9", "/%C3%A9");
        ok("/%25", "/%25");
        ok("/%2541", "/%2541"); // no double decoding
        err(b"/%zz", PathReject::BadEscape);
        err(b"/%4", PathReject::BadEscape);
        err(b"/%", PathReject::BadEscape);
        err(b"/%4g", PathReject::BadEscape);
        err(b"/a%00b", PathReject::Malformed);
    }

    #[test]
    fn malformed() {
        err(b"", PathReject::Malformed);
        err(b"a/b", PathReject::Malformed);
        err(b"*", PathReject::Malformed);
        err(b"/a b", PathReject::Malformed);
        err(b"/a\tb", PathReject::Malformed);
        err(b"/a\x00b", PathReject::Malformed);
        err(b"/a\x7fb", PathReject::Malformed);
        err(b"/a\xc3\xa9", PathReject::Malformed);
        err(b"/a#frag", PathReject::Malformed);
        err(b"/a?q", PathReject::Malformed);
        ok("/a[1]|{x}", "/a[1]|{x}");
    }

    #[test]
    fn no_panic_on_prefixes_and_mutations() {
        let seeds: [&[u8]; 4] = [
            b"/PBX0/APPS/%2e%2e/MY",
            b"/a/b/../c/./d%41%2f",
            b"/%zz/..",
            b"//x/%7E/..",
        ];
        let bytes = [
            0u8, b'/', b'.', b'%', b'2', b'e', b'f', b'\\', b'#', 0x7f, 0xff, b'a',
        ];
        for seed in seeds {
            for n in 0..=seed.len() {
                check_result(seed.get(..n).unwrap_or_default());
            }
            for_each_mutation(seed, &bytes, check_result);
        }
    }

    fn check_result(input: &[u8]) {
        if let Ok(p) = normalise(input) {
            assert!(p.starts_with('/'), "{p:?}");
            assert!(p.is_ascii());
            // Normalisation is idempotent.
            assert_eq!(normalise(p.as_bytes()).as_deref(), Ok(p.as_str()));
            for seg in p.split('/') {
                assert!(seg != "." && seg != "..", "{p:?}");
            }
        }
    }

    /// Replace, insert and delete bytes at every position.
    pub(crate) fn for_each_mutation(seed: &[u8], bytes: &[u8], mut f: impl FnMut(&[u8])) {
        let mut m = Vec::with_capacity(seed.len() + 1);
        for pos in 0..=seed.len() {
            for &b in bytes {
                m.clear();
                m.extend_from_slice(seed);
                if pos < seed.len() {
                    m[pos] = b;
                    f(&m);
                    m.copy_from_slice(seed);
                }
                m.insert(pos, b);
                f(&m);
            }
            if pos < seed.len() {
                m.clear();
                m.extend_from_slice(seed);
                m.remove(pos);
                f(&m);
            }
        }
    }
}
