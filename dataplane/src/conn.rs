//! One byte stream of either leg: plain TCP, TLS accepted from a client, or TLS
//! opened to a target. The HTTP proxy and the copy relay work on this one type.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

pub enum Conn {
    Plain(TcpStream),
    TlsServer(Box<futures_rustls::server::TlsStream<TcpStream>>),
    TlsClient(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::TlsServer(s) => s.get_ref().0,
            Conn::TlsClient(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Conn::Plain(_))
    }

    /// Wait until a read would not block, without a read buffer: an idle connection
    /// then holds none. TLS first looks at what rustls already holds (plaintext, a
    /// complete record, the peer's close_notify, an error), which the socket would
    /// not announce again; otherwise the socket's readiness poll (no buffer: a
    /// glommio patch, dataplane/vendor/glommio/PORTICO-PATCH.md). A closed
    /// socket or an error is "readable" too: the read that follows reports it.
    pub async fn readable(&mut self) {
        if !self.tls_has_input() {
            let tcp = match self {
                Conn::Plain(s) => s,
                Conn::TlsServer(s) => s.get_mut().0,
                Conn::TlsClient(s) => s.get_mut().0,
            };
            let _ = tcp.readable().await;
        }
    }

    /// Whether an idle connection (a pooled target leg) is still open with nothing
    /// to say: rustls holds no input (data, close_notify, an error) and a peek at the
    /// socket finds neither bytes nor EOF. One nonblocking syscall, no wait.
    pub fn idle_and_open(&mut self) -> bool {
        if self.tls_has_input() {
            return false;
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.tcp());
        let mut byte = 0u8;
        // SAFETY: `fd` is this connection's open socket; the buffer is one byte of
        // ours, and MSG_PEEK | MSG_DONTWAIT neither consumes nor waits.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    /// What rustls already holds that a socket poll would not announce again:
    /// plaintext, the peer's close_notify, or an error (false for plain TCP).
    fn tls_has_input(&mut self) -> bool {
        let state = match self {
            Conn::Plain(_) => return false,
            Conn::TlsServer(s) => s.get_mut().1.process_new_packets(),
            Conn::TlsClient(s) => s.get_mut().1.process_new_packets(),
        };
        match state {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Conn::TlsServer($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            Conn::TlsClient($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_close(cx))
    }
}
