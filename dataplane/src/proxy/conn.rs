//! Client connections of the `/v1` listener: the connection cap (`server.max_connections`)
//! and the total deadline for each request's head (`server.request_head_timeout`).
//!
//! Pingora's own timeouts are per read, so a client that sends one header byte every few
//! seconds holds its socket forever. [`Guarded`] wraps the proxy application: it refuses a
//! connection over the cap at accept, and wraps the socket in a [`ClientStream`] whose reads
//! fail once the head deadline has passed. The deadline runs from the accept (and, on a
//! kept-alive connection, from the next request's first byte) until the request's phases
//! start ([`head_done`], from `early_request_filter`). HTTP/1 only: the listener offers no
//! h2c and no TLS.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// Least time between two "connection cap reached" log lines.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The proxy application behind the connection cap and the head deadline.
pub struct Guarded<A> {
    app: Arc<A>,
    open: Arc<Semaphore>,
    max_connections: usize,
    head_timeout: Duration,
    last_refusal_log: std::sync::Mutex<Option<std::time::Instant>>,
}

impl<A> Guarded<A> {
    /// Wraps `app`; at most `max_connections` (at least 1) open at once, `head_timeout` for
    /// each request's head.
    pub fn new(app: A, max_connections: usize, head_timeout: Duration) -> Self {
        let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            app: Arc::new(app),
            open: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            head_timeout,
            last_refusal_log: std::sync::Mutex::new(None),
        }
    }

    fn refused(&self) {
        Metrics::global().downstream_connections_refused.inc();
        let now = std::time::Instant::now();
        let Ok(mut last) = self.last_refusal_log.lock() else {
            return;
        };
        if last.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY) {
            *last = Some(now);
            tracing::warn!(
                max_connections = self.max_connections,
                "connection cap reached (`server.max_connections`): new client connections are closed at accept; see omg_downstream_connections_refused_total"
            );
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Ok(_permit) = self.open.clone().try_acquire_owned() else {
            self.refused();
            return None; // dropping the stream closes it
        };
        let _open = OpenConnection::counted();
        let stream: Stream = Box::new(ClientStream::new(stream, self.head_timeout));
        // HTTP/1 keeps the connection inside this call for all its requests.
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// Counts one open connection in `omg_downstream_connections` while it lives.
struct OpenConnection;

impl OpenConnection {
    fn counted() -> Self {
        Metrics::global().downstream_connections.inc();
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        Metrics::global().downstream_connections.dec();
    }
}

/// The connection is reading a request head, under the deadline.
const HEAD: u8 = 0;
/// A request's phases run; reads are the body's (bounded by `request_body_timeout`).
const IN_REQUEST: u8 = 1;
/// A request ended: the next byte read starts the next head's deadline.
const BETWEEN: u8 = 2;

/// A client socket whose reads fail once a request head has taken longer than its deadline.
#[derive(Debug)]
pub struct ClientStream {
    inner: Stream,
    phase: Arc<AtomicU8>,
    head_timeout: Duration,
    /// Armed while a head is being read.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl ClientStream {
    fn new(inner: Stream, head_timeout: Duration) -> Self {
        Self {
            inner,
            phase: Arc::new(AtomicU8::new(HEAD)),
            head_timeout,
            deadline: Some(Box::pin(tokio::time::sleep(head_timeout))),
        }
    }
}

/// The request's head has been read: its deadline stops.
pub fn head_done(session: &Session) {
    if let Some(phase) = phase_of(session) {
        phase.store(IN_REQUEST, Ordering::Release);
    }
}

/// The request is over: the next head's deadline starts with its first byte.
pub fn request_done(session: &Session) {
    if let Some(phase) = phase_of(session) {
        phase.store(BETWEEN, Ordering::Release);
    }
}

fn phase_of(session: &Session) -> Option<&AtomicU8> {
    let stream: &Stream = session.as_downstream().stream()?;
    let io: &dyn pingora::protocols::IO = &**stream;
    io.as_any()
        .downcast_ref::<ClientStream>()
        .map(|client| &*client.phase)
}

/// The request body was not complete within `server.request_body_timeout`: the connection
/// will be closed after the 408 (the rest of the body is not drained).
pub fn body_timed_out(session: &mut Session) -> crate::error::ApiError {
    timed_out(session, "server.request_body_timeout")
}

/// A forwarded request's body (an upload) was not complete within
/// `server.upload_body_timeout`: as [`body_timed_out`].
pub fn upload_timed_out(session: &mut Session) -> crate::error::ApiError {
    timed_out(session, "server.upload_body_timeout")
}

fn timed_out(session: &mut Session, key: &str) -> crate::error::ApiError {
    session.set_keepalive(None);
    Metrics::global()
        .downstream_timeouts
        .with_label_values(&["body"])
        .inc();
    crate::error::ApiError::new(
        omg_shared::error::ErrorCode::RequestTimeout,
        format!("The request body was not received within the gateway's deadline (`{key}`)."),
    )
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.phase.load(Ordering::Acquire) {
            IN_REQUEST => this.deadline = None,
            HEAD => {
                if let Some(deadline) = this.deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        Metrics::global()
                            .downstream_timeouts
                            .with_label_values(&["head"])
                            .inc();
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "request head not complete within server.request_head_timeout",
                        )));
                    }
                }
            }
            _ => {}
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got_bytes = buf.filled().len() > before;
        if got_bytes
            && this
                .phase
                .compare_exchange(BETWEEN, HEAD, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            this.deadline = Some(Box::pin(tokio::time::sleep(this.head_timeout)));
        }
        read
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for ClientStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for ClientStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClientStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ClientStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for ClientStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const HEAD_TIMEOUT: Duration = Duration::from_millis(150);

    /// A client socket and the server side wrapped as the listener wraps it.
    async fn pair() -> (TcpStream, ClientStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        (client, ClientStream::new(stream, HEAD_TIMEOUT))
    }

    async fn read(server: &mut ClientStream) -> std::io::Result<Vec<u8>> {
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }

    #[tokio::test]
    async fn a_trickled_head_fails_at_the_deadline() {
        let started = Instant::now();
        let (mut client, mut server) = pair().await;
        client.write_all(b"GET").await.unwrap();
        assert_eq!(read(&mut server).await.unwrap(), b"GET");
        let error = read(&mut server).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= HEAD_TIMEOUT);
    }

    #[tokio::test]
    async fn no_deadline_while_a_request_runs() {
        let (mut client, mut server) = pair().await;
        server.phase.store(IN_REQUEST, Ordering::Release);
        let waited = tokio::time::timeout(HEAD_TIMEOUT * 3, read(&mut server)).await;
        assert!(waited.is_err(), "the read should still wait: {waited:?}");
        client.write_all(b"body").await.unwrap();
        assert_eq!(read(&mut server).await.unwrap(), b"body");
    }

    #[tokio::test]
    async fn between_requests_the_deadline_starts_with_the_first_byte() {
        let (mut client, mut server) = pair().await;
        server.phase.store(BETWEEN, Ordering::Release);
        // An idle kept-alive connection is left to Pingora's keep-alive timeout.
        let waited = tokio::time::timeout(HEAD_TIMEOUT * 3, read(&mut server)).await;
        assert!(waited.is_err(), "the read should still wait: {waited:?}");
        client.write_all(b"G").await.unwrap();
        let first = Instant::now();
        assert_eq!(read(&mut server).await.unwrap(), b"G");
        let error = read(&mut server).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(first.elapsed() >= HEAD_TIMEOUT - Duration::from_millis(5));
    }

    #[tokio::test]
    async fn the_cap_closes_connections_over_it() {
        struct Holder;
        #[async_trait]
        impl ServerApp for Holder {
            async fn process_new(
                self: &Arc<Self>,
                _stream: Stream,
                _shutdown: &ShutdownWatch,
            ) -> Option<Stream> {
                std::future::pending().await
            }
        }
        let guarded = Arc::new(Guarded::new(Holder, 1, HEAD_TIMEOUT));
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let (_first_client, first) = pair().await;
        let held = tokio::spawn({
            let guarded = guarded.clone();
            let shutdown = shutdown.clone();
            async move { guarded.process_new(Box::new(first), &shutdown).await }
        });
        while guarded.open.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let (_second_client, second) = pair().await;
        // Over the cap: returns at once (the stream is dropped, closing it).
        let refused = tokio::time::timeout(
            Duration::from_secs(5),
            guarded.process_new(Box::new(second), &shutdown),
        )
        .await;
        assert!(matches!(refused, Ok(None)));
        held.abort();
    }
}
