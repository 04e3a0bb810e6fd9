//! Pingora glue, and the only place Pingora types appear. [`Gateway`] implements `ProxyHttp`:
//! every `/v1` model request is answered from `request_filter` (in-process exchange with the
//! upstream, see `ARCHITECTURE.md`), and `logging` emits the usage record and access log.
//! Files and batches (cluster mode) are the exception: authenticated in `request_filter`,
//! then proxied by Pingora's own phases to the control plane ([`forward`]).

mod admission;
mod batch;
pub mod conn;
mod count_tokens;
mod ctx;
mod finish;
pub mod forward;
mod handle;
mod health_check;
mod idem;
mod respond;
pub mod server;
mod upstream;

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

pub use crate::flow::Failure;
pub use ctx::RequestCtx;

use crate::auth::batch::BatchLines;
use crate::dns::Resolver;
use crate::error::ApiError;
use crate::idempotency::Idempotency;
use crate::limits::Governor;
use crate::snapshot::SnapshotStore;
use crate::usage::UsageSink;

/// Server-level settings fixed at start-up (`server.*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Body limit in bytes.
    pub body_limit: usize,
    /// Non-streamed total deadline.
    pub sync_timeout: std::time::Duration,
    /// Gap allowed between stream chunks.
    pub stream_idle_timeout: std::time::Duration,
    /// Longest stream.
    pub stream_max_duration: std::time::Duration,
    /// Deadline for upstream response headers (and whole non-streamed bodies).
    pub provider_timeout: std::time::Duration,
    /// Upstream connect timeout.
    pub connect_timeout: std::time::Duration,
    /// Total time for a request body, once the head is read.
    pub request_body_timeout: std::time::Duration,
    /// Total time for a forwarded request's body (an upload), from its arrival.
    pub upload_body_timeout: std::time::Duration,
    /// Longest a write to the client may stay blocked.
    pub write_timeout: std::time::Duration,
    /// Idle upstream connections kept for reuse.
    pub upstream_idle_connections: usize,
}

impl Settings {
    /// From the config's `server` section.
    pub fn from_config(server: &omg_shared::config::ServerConfig) -> Self {
        Self {
            body_limit: usize::try_from(server.body_limit_mb.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            sync_timeout: server.sync_timeout,
            stream_idle_timeout: server.stream_idle_timeout,
            stream_max_duration: server.stream_max_duration,
            provider_timeout: server.provider_timeout,
            connect_timeout: server.connect_timeout,
            request_body_timeout: server.request_body_timeout,
            upload_body_timeout: server.upload_body_timeout,
            write_timeout: server.write_timeout,
            upstream_idle_connections: server.upstream_idle_connections,
        }
    }

    /// The timeouts of one alias: its `routing.aliases.<alias>.timeouts` over these.
    pub fn timeouts(&self, overrides: &omg_shared::routing::TimeoutsMs) -> Timeouts {
        let pick =
            |value: Option<u64>, default| value.map_or(default, std::time::Duration::from_millis);
        Timeouts {
            connect: pick(overrides.connect_ms, self.connect_timeout),
            sync: pick(overrides.sync_ms, self.sync_timeout),
            upstream: pick(overrides.upstream_ms, self.provider_timeout),
            stream_idle: pick(overrides.stream_idle_ms, self.stream_idle_timeout),
        }
    }
}

/// The timeouts one request runs under.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: std::time::Duration,
    /// Whole non-streamed request.
    pub sync: std::time::Duration,
    /// Upstream response headers, and whole non-streamed bodies.
    pub upstream: std::time::Duration,
    /// Gap between stream chunks.
    pub stream_idle: std::time::Duration,
}

/// Shared by every request.
pub struct State {
    /// The live snapshot.
    pub snapshots: SnapshotStore,
    /// Fixed settings.
    pub settings: Settings,
    /// Usage destination.
    pub usage: Box<dyn UsageSink>,
    /// Pooled upstream connections (TLS, H1/H2).
    pub connector: Connector,
    /// Provider host resolution.
    pub resolver: Resolver,
    /// Set on SIGTERM: `/readyz` answers 503.
    pub draining: AtomicBool,
    /// Requests in progress.
    pub inflight: AtomicUsize,
    /// Cluster mode: where `/v1/files*` and `/v1/batches*` are forwarded.
    pub forward: Option<forward::ForwardTarget>,
    /// Rate limits and budgets.
    pub governor: Arc<Governor>,
    /// `Idempotency-Key` deduplication; `None` when `idempotency.enabled` is false.
    pub idempotency: Option<Idempotency>,
    /// Batch lines from the control plane (cluster mode with `cluster.internal_secret`).
    pub batch_lines: Option<BatchLines>,
}

impl State {
    /// Assembles the shared state.
    pub fn new(
        snapshots: SnapshotStore,
        settings: Settings,
        usage: Box<dyn UsageSink>,
        governor: Arc<Governor>,
    ) -> Self {
        let pool = ConnectorOptions::new(settings.upstream_idle_connections);
        Self {
            governor,
            snapshots,
            settings,
            usage,
            connector: Connector::new(Some(pool)),
            resolver: Resolver::default(),
            draining: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            forward: None,
            idempotency: None,
            batch_lines: None,
        }
    }

    /// Sets the acceptance of batch lines.
    pub fn with_batch_lines(mut self, batch_lines: Option<BatchLines>) -> Self {
        self.batch_lines = batch_lines;
        self
    }

    /// Sets the idempotency store.
    pub fn with_idempotency(mut self, idempotency: Option<Idempotency>) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// Sets the forward target of files and batches.
    pub fn with_forward(mut self, forward: Option<forward::ForwardTarget>) -> Self {
        self.forward = forward;
        self
    }
}

/// The `ProxyHttp` implementation.
pub struct Gateway {
    /// Shared state.
    pub state: Arc<State>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// A fresh per-request context; counts the request as in flight.
    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.state.clone())
    }

    /// The head is read: its deadline stops, and every write to the client is bounded by
    /// `server.write_timeout` (a client that stops reading is cut).
    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        conn::head_done(session);
        session.set_write_timeout(Some(self.state.settings.write_timeout));
        Ok(())
    }

    /// Answers the whole request in-process (auth, routing, upstream exchange, streaming) and
    /// returns `Ok(true)` so Pingora skips its own upstream phases.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let handled = handle::handle(&self.state, session, ctx).await;
        idem::finish(ctx, handled.is_ok()).await;
        match handled {
            // Authenticated files/batches request: Pingora proxies it (upstream_peer on).
            Ok(()) if ctx.forward.is_some() => return Ok(false),
            Ok(()) => {}
            Err(Failure::Api(error)) => {
                admission::observe_for_error(&self.state, ctx).await;
                respond::error(session, ctx, &error).await;
            }
            Err(Failure::ClientGone) => {
                ctx.status = 499;
                ctx.error_code.get_or_insert("client_closed_request");
            }
        }
        Ok(true)
    }

    /// Reached only for forwarded routes (`request_filter` answers everything else);
    /// refusing otherwise keeps a routing bug from proxying anywhere.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        if ctx.forward.is_none() {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "no upstream phase for this route",
            ));
        }
        forward::bound_body_reads(session, ctx, &self.state.settings)?;
        forward::peer(&self.state).await
    }

    /// Forwarded routes: each body read is bounded by what is left of
    /// `server.upload_body_timeout`.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if ctx.forward.is_some() && !end_of_stream {
            forward::bound_body_reads(session, ctx, &self.state.settings)?;
        }
        Ok(())
    }

    /// Forwarded routes: credentials out, signed identity in.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        forward::rewrite(&self.state, ctx, upstream_request)
    }

    /// Forwarded routes: the response keeps the request id; its status is recorded.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if ctx.forward.is_some() {
            ctx.status = upstream_response.status.as_u16();
            upstream_response.insert_header("x-request-id", ctx.request_id.as_str())?;
        }
        Ok(())
    }

    /// Forwarded routes whose proxying failed: an OpenAI-shaped error, not Pingora's page.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &pingora::Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let client_gone = matches!(error.esource(), pingora::ErrorSource::Downstream)
            && matches!(
                error.etype(),
                pingora::ErrorType::WriteError
                    | pingora::ErrorType::ReadError
                    | pingora::ErrorType::ConnectionClosed
            );
        if client_gone {
            ctx.status = 499;
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if forward::is_upload_timeout(error) {
            let api_error = conn::upload_timed_out(session);
            respond::error(session, ctx, &api_error).await;
            return FailToProxy {
                error_code: api_error.code.status(),
                can_reuse_downstream: false,
            };
        }
        tracing::warn!(request_id = %ctx.request_id, %error, "forwarding to the control plane failed");
        let api_error = ApiError::new(
            omg_shared::error::ErrorCode::UpstreamError,
            "The gateway could not reach its control plane for this request; retry shortly.",
        );
        respond::error(session, ctx, &api_error).await;
        FailToProxy {
            error_code: api_error.code.status(),
            can_reuse_downstream: false,
        }
    }

    /// Emits the usage record and the access log line.
    async fn logging(
        &self,
        session: &mut Session,
        _error: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        finish::finish(&self.state, session, ctx);
        conn::request_done(session);
    }
}
