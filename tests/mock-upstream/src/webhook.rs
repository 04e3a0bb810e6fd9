//! An HTTP webhook receiver for tests: records every request and answers scripted statuses
//! (e.g. `[500, 500]` then 200 for every later request).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use omg_mock_upstream::webhook::WebhookReceiver;
//! let hook = WebhookReceiver::start(vec![500, 500]).await?;
//! let url = hook.url("/hooks/budget");
//! # let _ = url;
//! assert_eq!(hook.requests().len(), 0);
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::RecordedRequest;

struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    script: Mutex<VecDeque<u16>>,
    default_status: u16,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running receiver on 127.0.0.1; stops accepting when dropped.
pub struct WebhookReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl WebhookReceiver {
    /// Answers `script` in order, then 200.
    pub async fn start(script: Vec<u16>) -> std::io::Result<WebhookReceiver> {
        Self::start_with(script, 200).await
    }

    /// Answers `script` in order, then `default_status`.
    pub async fn start_with(
        script: Vec<u16>,
        default_status: u16,
    ) -> std::io::Result<WebhookReceiver> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(script.into()),
            default_status,
        });
        let (shutdown, stop) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop));
        Ok(WebhookReceiver {
            addr,
            shared,
            shutdown,
        })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        let service = service_fn(move |request| handle(Arc::clone(&shared), request));
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    lock(&shared.requests).push(RecordedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers,
        body,
    });
    let status = lock(&shared.script)
        .pop_front()
        .unwrap_or(shared.default_status);
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if response.status().is_redirection() {
        response.headers_mut().insert(
            hyper::header::LOCATION,
            hyper::header::HeaderValue::from_static("http://169.254.169.254/latest/meta-data/"),
        );
    }
    Ok(response)
}
