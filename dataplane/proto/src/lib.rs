//! Pure protocol code for portico: the sniffers that look at the first bytes of a
//! connection and decide where it goes, and the helpers they need (path normalisation,
//! body framing). Everything here is a pure function or state machine over byte
//! slices: no I/O, no clock, no runtime. The data plane (`portico-dataplane`) owns the
//! sockets, timeouts and replay of buffered bytes; the control plane
//! (`portico-control`) owns the rule table the keys are looked up in.
//!
//! Every sniffer answers with [`Sniff`]: need more bytes, a result, or a reject with
//! a reason. Nothing reachable from network input panics.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod h225;
pub mod http;
pub mod path;

/// The three outcomes of looking at the bytes buffered so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff<T, R> {
    /// The bytes so far are a valid prefix; read more and ask again.
    Incomplete,
    /// A complete, valid unit was found.
    Done(T),
    /// The bytes can never become valid input.
    Reject(R),
}
pub mod ldap;
pub mod sip;
pub mod stun;
pub mod turn;
