//! One accepted connection's socket, wrapped so a handler can ask for the connection to end
//! with a TCP reset (`reset-after-headers`) instead of an orderly close, and know whether
//! the connection served a request before (`close-reused`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What the handlers of one connection may ask of its socket.
#[derive(Debug, Default)]
pub(crate) struct ConnControl {
    reset: AtomicBool,
    requests: AtomicU64,
}

impl ConnControl {
    /// Counts a request on this connection; whether one came before it.
    pub(crate) fn reused(&self) -> bool {
        self.requests.fetch_add(1, Ordering::SeqCst) > 0
    }

    /// When the connection closes, reset it (`SO_LINGER` 0: an RST, unsent bytes discarded)
    /// instead of closing it in order.
    pub(crate) fn reset_on_close(&self) {
        self.reset.store(true, Ordering::SeqCst);
    }
}

/// The socket hyper serves; plain delegation, plus the reset on drop.
pub(crate) struct Conn {
    stream: TcpStream,
    control: Arc<ConnControl>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, control: Arc<ConnControl>) -> Conn {
        Conn { stream, control }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.control.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
