//! Request-path normalisation before routing (RFC 3986 §5.2.4, §6.2.2).
//!
//! SKELETON: signatures fixed, bodies being written.

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

/// Normalise the path part (no query) of an origin-form request target: decode
/// percent-encoded unreserved characters, remove dot segments, refuse encoded
/// separators and climbs above the root.
pub fn normalise(path: &[u8]) -> Result<String, PathReject> {
    let _ = path;
    Err(PathReject::Malformed)
}
