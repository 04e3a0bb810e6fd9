//! The response body: a whole buffer (sent with `content-length`), frames fed through a
//! channel as they are produced (sent chunked unless the head has a `content-length`), or
//! nothing and then an abort (`reset-after-headers`), plus the in-flight guard that lives as
//! long as the body does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::Shared;

/// One item of a streamed body: a data frame, or an error that makes hyper abort the
/// connection without the terminating zero-size chunk.
pub(crate) type StreamItem = Result<Bytes, io::Error>;

/// Counts a request as in flight from when it arrives until its response is finished (the body
/// is dropped by hyper after the last frame, or when the connection goes away).
pub(crate) struct InFlight {
    shared: Arc<Shared>,
}

impl InFlight {
    pub(crate) fn enter(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight {
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a `reset-after-headers` body stays pending (hyper flushes the head meanwhile)
/// before it fails and hyper drops the connection.
const RESET_GRACE: Duration = Duration::from_millis(20);

enum Kind {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<StreamItem>),
    Reset(Pin<Box<Sleep>>),
}

/// The body of every response the mock sends.
pub(crate) struct MockBody {
    kind: Kind,
    _in_flight: Option<InFlight>,
}

impl MockBody {
    pub(crate) fn full(bytes: Bytes, in_flight: InFlight) -> MockBody {
        MockBody {
            kind: Kind::Full(Some(bytes)),
            _in_flight: Some(in_flight),
        }
    }

    /// A whole buffer that does not count as a request in flight (the control endpoint).
    pub(crate) fn untracked(bytes: Bytes) -> MockBody {
        MockBody {
            kind: Kind::Full(Some(bytes)),
            _in_flight: None,
        }
    }

    pub(crate) fn channel(rx: mpsc::Receiver<StreamItem>, in_flight: InFlight) -> MockBody {
        MockBody {
            kind: Kind::Channel(rx),
            _in_flight: Some(in_flight),
        }
    }

    /// No data: pending while hyper flushes the head, then an error, so hyper drops the
    /// connection (which the connection's control turns into a reset).
    pub(crate) fn reset(in_flight: InFlight) -> MockBody {
        MockBody {
            kind: Kind::Reset(Box::pin(tokio::time::sleep(RESET_GRACE))),
            _in_flight: Some(in_flight),
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Channel(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|r| r.map(Frame::data))),
            Kind::Reset(grace) => grace
                .as_mut()
                .poll(cx)
                .map(|()| Some(Err(io::Error::other("mock upstream: reset-after-headers")))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Kind::Channel(_) | Kind::Reset(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Channel(_) | Kind::Reset(_) => SizeHint::default(),
        }
    }
}
