//! portico's data plane: the glommio shards and everything that runs on them.
//!
//! - [`listener`]: which endpoints to listen on; SO_REUSEPORT sockets per shard.
//! - [`shard`]: one executor per core; accept, blacklist check, dispatch by service.
//! - [`tls`]: rustls (ring provider) for client and target legs.
//! - [`http`]: the HTTP/HTTPS reverse proxy on one client connection.
//! - [`relay`]: tunnels after routing: splice for plain↔plain, copy through TLS.
//! - [`routed`]: SIP/SIPS and LDAP/LDAPS, routed once on the first message.
//! - [`turn`]: the STUN/TURN server's sockets and timers around the sans-I/O core.
//! - [`udp_batch`]: recvmmsg/sendmmsg for the TURN data path.
//! - [`runtime`]: starting the control thread and the shards from a config.
//! - [`demo`]: the stand-in targets for `portico demo`.
//!
//! The pure parsing lives in `portico-proto`, the rules and snapshots in
//! `portico-control`.

pub mod conn;
pub mod demo;
pub mod http;
pub mod listener;
pub mod pool;
pub mod relay;
pub mod routed;
pub mod runtime;
pub mod shard;
pub mod time;
pub mod tls;
pub mod turn;
pub mod udp_batch;
