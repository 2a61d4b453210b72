//! Moving bytes both ways once a connection is routed.
//!
//! Two relays:
//! - [`splice_tunnel`] for plain TCP on both legs: bytes go socket → pipe → socket
//!   with nonblocking `splice(2)`, never through user memory. Readiness to read (and,
//!   when the destination's send buffer is full, to write) is an io_uring poll that
//!   holds no buffer (`glommio::net::wait_readable` / `wait_writable`, a patch to the
//!   vendored glommio); the splices themselves are plain nonblocking syscalls on the
//!   shard. We do not use IORING_OP_SPLICE: the kernel runs it on one blocking io-wq
//!   worker per waiting direction. Bytes waiting for room stay in the pipe: that is
//!   the backpressure.
//! - [`copy_tunnel`] when either leg is TLS: read, write, repeat, through rustls.
//!
//! Both honour half-close (EOF one way shuts down the write side of the other leg
//! and the other direction goes on) and close both legs after `idle` without
//! traffic either way.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::conn::Conn;

/// Bytes moved by a tunnel: (a → b, b → a).
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    pub a_to_b: u64,
    pub b_to_a: u64,
}

const PIPE_SIZE: usize = 64 * 1024;
const COPY_BUF: usize = 16 * 1024;
/// The copy buffer a tunnel starts with.
const COPY_BUF_FIRST: usize = 2 * 1024;

/// A pipe whose two ends close on drop.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by us alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe { read, write })
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we hold open; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

enum Spliced {
    Bytes(usize),
    WouldBlock,
    Eof,
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<Spliced> {
    // SAFETY: both descriptors are open for the duration of the call; null offsets
    // are valid for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    match n {
        0 => Ok(Spliced::Eof),
        n if n > 0 => Ok(Spliced::Bytes(n as usize)),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                Ok(Spliced::WouldBlock)
            } else if e.kind() == io::ErrorKind::Interrupted {
                Ok(Spliced::Bytes(0))
            } else {
                Err(e)
            }
        }
    }
}

/// One direction of a splice tunnel: `src` → pipe → `dst`, on raw descriptors (the
/// caller keeps both sockets open). A splice is tried first; only when it would
/// block does the direction wait, for readability or (when `dst` is full)
/// writability, with an io_uring poll that holds no buffer: under bulk traffic a
/// chunk costs two splices and no poll, and an idle direction costs a pipe and one
/// pending poll. The bytes never leave the kernel.
async fn splice_one_way(src: RawFd, dst: RawFd, activity: &Cell<Instant>) -> io::Result<u64> {
    let pipe = Pipe::new()?;
    let mut moved = 0u64;
    loop {
        let mut in_pipe = match splice(src, pipe.write.as_raw_fd(), PIPE_SIZE)? {
            Spliced::Bytes(n) => n,
            Spliced::WouldBlock => {
                // Park until data, EOF or an error (the next splice tells which).
                glommio::net::wait_readable(src).await?;
                continue;
            }
            Spliced::Eof => break,
        };
        activity.set(Instant::now());
        while in_pipe > 0 {
            match splice(pipe.read.as_raw_fd(), dst, in_pipe)? {
                Spliced::Bytes(n) => {
                    in_pipe -= n;
                    moved += n as u64;
                }
                Spliced::Eof => return Err(io::ErrorKind::WriteZero.into()),
                Spliced::WouldBlock => {
                    // Destination full: wait for room (the bytes stay in the pipe).
                    glommio::net::wait_writable(dst).await?;
                    activity.set(Instant::now());
                }
            }
        }
        // A busy direction never waits: let the shard's other tasks run.
        glommio::yield_if_needed().await;
    }
    // Half-close: the other direction goes on.
    // SAFETY: shutdown on a descriptor the caller holds open; no memory passed.
    unsafe {
        libc::shutdown(dst, libc::SHUT_WR);
    }
    Ok(moved)
}

/// Shut both sockets down fully, so that the other direction of a tunnel whose one
/// direction failed wakes up and ends too.
fn abort_both(a: RawFd, b: RawFd) {
    // SAFETY: shutdown on descriptors held open by the caller; no memory passed.
    unsafe {
        libc::shutdown(a, libc::SHUT_RDWR);
        libc::shutdown(b, libc::SHUT_RDWR);
    }
}

/// Resolves when nothing moved either way for `idle`.
pub(crate) async fn idle_watch(activity: &Cell<Instant>, idle: Duration) {
    loop {
        let since = activity.get().elapsed();
        if since >= idle {
            return;
        }
        glommio::timer::sleep(idle - since).await;
    }
}

/// A descriptor of its own for `s`'s socket (F_DUPFD_CLOEXEC), or an error (out of
/// descriptors).
fn dup(s: &TcpStream) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor the stream holds open; no memory is passed.
    let fd = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Relay two plain TCP sockets with splice. Pending bytes already read from either
/// side (e.g. after an upgrade) must have been written before calling this.
///
/// The sockets come as bare descriptors: a glommio stream kept beside them would
/// hold its reactor state (and possibly an early read poll, ~0.5 kB each) for the
/// whole life of a tunnel that never reads through it.
pub async fn splice_tunnel(a: OwnedFd, b: OwnedFd, idle: Duration) -> io::Result<Moved> {
    set_nonblocking(a.as_raw_fd())?;
    set_nonblocking(b.as_raw_fd())?;
    let activity = Cell::new(Instant::now());
    let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
    let fail_fast = |r: io::Result<u64>| {
        if r.is_err() {
            abort_both(a_fd, b_fd);
        }
        r
    };
    // Built in place: a future kept in a local and then awaited inside another
    // would be stored twice in this one (an idle tunnel's whole state is this).
    let outcome = futures_lite::future::or(
        async {
            Some(
                futures_lite::future::zip(
                    async { fail_fast(splice_one_way(a_fd, b_fd, &activity).await) },
                    async { fail_fast(splice_one_way(b_fd, a_fd, &activity).await) },
                )
                .await,
            )
        },
        async {
            idle_watch(&activity, idle).await;
            None
        },
    )
    .await;
    match outcome {
        Some((ab, ba)) => Ok(Moved {
            a_to_b: ab.unwrap_or(0),
            b_to_a: ba.unwrap_or(0),
        }),
        None => Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel idle")),
    }
}

async fn copy_one_way(
    mut from: impl futures_lite::AsyncRead + Unpin,
    mut to: impl futures_lite::AsyncWrite + Unpin,
    activity: &Cell<Instant>,
) -> io::Result<u64> {
    // Small until a read fills it: an idle tunnel (a registered SIPS phone) holds
    // little; bulk traffic gets the full buffer after its first full read.
    let mut buf = vec![0u8; COPY_BUF_FIRST];
    let mut moved = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if n == buf.len() && buf.len() < COPY_BUF {
            buf.resize(COPY_BUF, 0);
        }
        activity.set(Instant::now());
        to.write_all(buf.get(..n).unwrap_or_default()).await?;
        to.flush().await?;
        moved += n as u64;
    }
    let _ = to.close().await;
    Ok(moved)
}

/// Relay two streams of which at least one is TLS, by copying.
pub async fn copy_tunnel(a: Conn, b: Conn, idle: Duration) -> io::Result<Moved> {
    let (a_fd, b_fd) = (a.tcp().as_raw_fd(), b.tcp().as_raw_fd());
    let fail_fast = |r: io::Result<u64>| {
        if r.is_err() {
            abort_both(a_fd, b_fd);
        }
        r
    };
    let (a_r, a_w) = futures_lite::io::split(a);
    let (b_r, b_w) = futures_lite::io::split(b);
    let activity = Cell::new(Instant::now());
    // Built in place, as in `splice_tunnel`.
    let outcome = futures_lite::future::or(
        async {
            Some(
                futures_lite::future::zip(
                    async { fail_fast(copy_one_way(a_r, b_w, &activity).await) },
                    async { fail_fast(copy_one_way(b_r, a_w, &activity).await) },
                )
                .await,
            )
        },
        async {
            idle_watch(&activity, idle).await;
            None
        },
    )
    .await;
    match outcome {
        Some((ab, ba)) => Ok(Moved {
            a_to_b: ab.unwrap_or(0),
            b_to_a: ba.unwrap_or(0),
        }),
        None => Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel idle")),
    }
}

/// Relay `a` and `b` both ways with the best relay for their kinds: splice for two
/// plain sockets (as bare descriptors, the streams dropped), copy otherwise or when
/// no descriptor is left to spare.
pub async fn tunnel(a: Conn, b: Conn, idle: Duration) -> io::Result<Moved> {
    match spliceable(&a, &b) {
        Some((fa, fb)) => {
            drop((a, b));
            splice_tunnel(fa, fb, idle).await
        }
        None => copy_tunnel(a, b, idle).await,
    }
}

/// Descriptors of their own for two plain sockets, for [`splice_tunnel`] (the
/// caller then drops the streams); `None` when either is TLS or no descriptor is
/// left to spare.
pub fn spliceable(a: &Conn, b: &Conn) -> Option<(OwnedFd, OwnedFd)> {
    match (a, b) {
        (Conn::Plain(a), Conn::Plain(b)) => Some((dup(a).ok()?, dup(b).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::net::TcpListener;
    use glommio::{LocalExecutorBuilder, Placement};

    /// A connected pair of glommio streams over loopback.
    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (a, b) = futures_lite::future::zip(TcpStream::connect(addr), listener.accept()).await;
        (a.unwrap(), b.unwrap())
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// client ⇄ [x | tunnel | y] ⇄ server: every byte arrives, in order, both ways,
    /// and a half-close one way lets the other way finish.
    fn conserve(len: usize, slow_reader: bool) {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(move || async move {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let (mut client, x) = pair(&l).await;
                let (y, mut server) = pair(&l).await;
                let relay = glommio::spawn_local(tunnel(
                    Conn::Plain(x),
                    Conn::Plain(y),
                    Duration::from_secs(10),
                ));
                let up = pattern(len, 1);
                let down = pattern(len / 2 + 7, 2);
                let (up2, down2) = (up.clone(), down.clone());
                let server_task = glommio::spawn_local(async move {
                    let mut got = Vec::new();
                    if slow_reader {
                        glommio::timer::sleep(Duration::from_millis(200)).await;
                    }
                    server.read_to_end(&mut got).await.unwrap();
                    server.write_all(&down2).await.unwrap();
                    server.close().await.unwrap();
                    got
                });
                client.write_all(&up2).await.unwrap();
                client.close().await.unwrap();
                let mut back = Vec::new();
                client.read_to_end(&mut back).await.unwrap();
                let got = server_task.await;
                let moved = relay.await.unwrap();
                assert_eq!(got.len(), up.len());
                assert!(got == up, "upstream bytes differ");
                assert!(back == down, "downstream bytes differ");
                assert_eq!(moved.a_to_b, up.len() as u64);
                assert_eq!(moved.b_to_a, down.len() as u64);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn splice_conserves_small() {
        conserve(1000, false);
    }

    #[test]
    fn splice_conserves_large_with_backpressure() {
        // 16 MiB against a reader that starts late: the destination fills up and the
        // direction must wait for room with the bytes in its pipe.
        conserve(16 << 20, true);
    }

    #[test]
    fn idle_tunnel_closes() {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(|| async move {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let (_client, x) = pair(&l).await;
                let (y, _server) = pair(&l).await;
                let (x, y) = (dup(&x).unwrap(), dup(&y).unwrap());
                let r = splice_tunnel(x, y, Duration::from_millis(100)).await;
                assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
