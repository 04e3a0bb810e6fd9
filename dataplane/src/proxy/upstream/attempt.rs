//! One attempt at one deployment: connect, send, read the head, then hand a 200 to the
//! JSON or stream path, and any other status to the breaker or the client.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use omg_shared::error::ErrorCode;
use omg_shared::snapshot::Deployment;
use pingora::connectors::http::Connector;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as Http1Session;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::OrErr;
use tokio::io::AsyncWriteExt;

use super::head::RequestHead;
use super::{internal, is_timeout, protocol, timeout, MAX_RESPONSE_BYTES, POOL_IDLE};
use crate::error::ApiError;
use crate::flow::meter::Meter;
use crate::flow::outcome::{AttemptError, Fault, Served};
use crate::metrics::Metrics;
use crate::providers::{Call, ProviderAdapter};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::{respond, State, Timeouts};
use crate::snapshot::DeploymentEntry;

/// One attempt at `deployment`: answered in process when its adapter does, else sent
/// upstream and the answer relayed.
pub(super) async fn attempt(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    deployment: &DeploymentEntry,
    timeouts: Timeouts,
    call: &Call<'_>,
) -> Result<Served, AttemptError> {
    let target = &deployment.deployment;
    let Some(adapter) = &deployment.adapter else {
        return Err(no_endpoint());
    };
    if let Some(local) = adapter.local() {
        if let Some(egress) = ctx.anthropic.as_mut() {
            // An earlier attempt may have been at a deployment that answers natively.
            egress.native = adapter.answers_natively(call);
        }
        return super::local::serve(session, ctx, local.answer(call)).await;
    }
    // Each attempt at its own time (signing adapters sign every attempt afresh).
    let call = &Call {
        now: SystemTime::now(),
        ..*call
    };
    if let Err(message) = adapter.ready() {
        tracing::warn!(deployment = %target.id, %message, "the deployment cannot be tried");
        return Err(AttemptError::retry(
            Fault::Credentials,
            ApiError::new(
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` has no usable credential yet; the gateway's operator must check its log.",
                    target.id
                ),
            ),
        ));
    }
    let sent = send_request(state, ctx, adapter.as_ref(), target, timeouts, call).await?;
    let exchange = Exchange {
        adapter: adapter.as_ref(),
        target,
        timeouts,
        call,
    };
    exchange.answer(state, session, ctx, sent).await
}

fn no_endpoint() -> AttemptError {
    AttemptError::Final(
        ApiError::new(ErrorCode::InternalError, "deployment has no endpoint").into(),
    )
}

/// An upstream whose response head was read, and its peer (to pool the connection again).
struct Sent {
    upstream: HttpSession,
    peer: HttpPeer,
}

/// Builds the provider's request, connects and sends it, and reads the response head.
async fn send_request(
    state: &Arc<State>,
    ctx: &RequestCtx,
    adapter: &dyn ProviderAdapter,
    target: &Deployment,
    timeouts: Timeouts,
    call: &Call<'_>,
) -> Result<Sent, AttemptError> {
    let Some(endpoint) = &target.endpoint else {
        return Err(no_endpoint());
    };
    // What the provider cannot express is the client's to fix, before any connection.
    let request = adapter
        .request(call, target)
        .map_err(|error| AttemptError::Final(error.into()))?;
    let addr = state
        .resolver
        .resolve(&endpoint.host, endpoint.port)
        .await
        .map_err(|message| {
            tracing::warn!(deployment = %target.id, %message, "upstream host resolution failed");
            AttemptError::retry(
                Fault::Dns,
                ApiError::new(
                    ErrorCode::UpstreamError,
                    format!("The upstream for `{}` could not be resolved.", target.id),
                ),
            )
        })?;
    let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
    peer.options.connection_timeout = Some(timeouts.connect);
    peer.options.total_connection_timeout = Some(timeouts.connect * 2);
    peer.options.read_timeout = Some(timeouts.upstream);
    peer.options.write_timeout = Some(Duration::from_secs(30));
    peer.options.idle_timeout = Some(POOL_IDLE);
    if endpoint.tls {
        peer.options.set_http_version(2, 1);
        peer.options.max_h2_streams = 100;
    }
    let payload = Bytes::from(request.body);
    let host = endpoint.host_header();
    let head = RequestHead {
        path: &request.path,
        host: &host,
        accept: if call.body.stream {
            adapter.stream_accept()
        } else {
            "application/json"
        },
        request_id: &ctx.request_id,
        content_length: payload.len(),
        provider: &request.headers,
    };
    let upstream = deliver(state, ctx, &peer, target, &head, payload, timeouts).await?;
    Ok(Sent { upstream, peer })
}

/// Sends the request, on a fresh connection when a pooled one turns out closed by the
/// upstream, within the upstream deadline.
async fn deliver(
    state: &Arc<State>,
    ctx: &RequestCtx,
    peer: &HttpPeer,
    target: &Deployment,
    head: &RequestHead<'_>,
    payload: Bytes,
    timeouts: Timeouts,
) -> Result<HttpSession, AttemptError> {
    // Also vets the configured path, host and key for both HTTP versions.
    let wire = Bytes::from(head.h1_bytes().ok_or_else(internal)?);
    let deadline = tokio::time::Instant::now() + timeouts.upstream;
    let mut stale = 0;
    loop {
        let (upstream, reused) = connect(&state.connector, peer, target).await?;
        let sent = tokio::time::timeout_at(
            deadline,
            Box::pin(send(upstream, peer, head, wire.clone(), payload.clone())),
        )
        .await;
        match sent {
            Err(_) => return Err(timeout(target)),
            Ok(Err(error)) if reused && stale < STALE_RETRIES && closed_unanswered(&error) => {
                // The upstream closed the kept-alive connection as the request arrived (its
                // idle timeout and this request crossed): it read nothing, so the request
                // goes again on another connection, within this attempt.
                stale += 1;
                Metrics::global()
                    .upstream_errors
                    .with_label_values(&[target.provider.as_str(), "stale_connection"])
                    .inc();
                tracing::debug!(request_id = %ctx.request_id, deployment = %target.id, error = %error, "a pooled upstream connection was closed by the upstream; sending on another");
            }
            Ok(Err(error)) if is_timeout(&error) => return Err(timeout(target)),
            Ok(Err(_)) => {
                return Err(protocol(format!(
                    "The upstream for `{}` closed the connection.",
                    target.id
                )))
            }
            Ok(Ok(upstream)) => return Ok(upstream),
        }
    }
}

/// A status the deployment is to blame for (429, 5xx, 401/403, 404): worth the next one.
fn failed_status(
    status: u16,
    target: &Deployment,
    retry_after: Option<u64>,
) -> Option<AttemptError> {
    let (fault, code, message) = match status {
        429 => (
            Fault::RateLimited,
            ErrorCode::RequestRateLimited,
            format!(
                "The upstream for `{}` is rate limiting; retry later.",
                target.id
            ),
        ),
        500.. => (
            Fault::ServerError,
            ErrorCode::UpstreamError,
            format!(
                "The upstream for `{}` failed with HTTP {status}.",
                target.id
            ),
        ),
        401 | 403 => {
            tracing::error!(deployment = %target.id, status, "the upstream refused the gateway's credentials; check the catalog entry's api_key");
            (
                Fault::Auth,
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` refused the gateway's credentials.",
                    target.id
                ),
            )
        }
        404 => {
            // The client named an alias the gateway knows: a provider that does not know the
            // model, deployment or path is the catalog entry's fault, not the client's.
            tracing::error!(deployment = %target.id, status, "the upstream does not know the deployment's model, deployment name or path; check the catalog entry's provider_model, deployment and endpoint");
            (
                Fault::NotFound,
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` does not know its configured model; the gateway's operator must fix the catalog entry.",
                    target.id
                ),
            )
        }
        _ => return None,
    };
    let mut error = ApiError::new(code, message);
    if matches!(fault, Fault::RateLimited | Fault::ServerError) {
        error.retry_after = retry_after;
    }
    Some(AttemptError::retry(fault, error))
}

/// One attempt's fixed parts, once its request is sent.
struct Exchange<'a> {
    adapter: &'a dyn ProviderAdapter,
    target: &'a Deployment,
    timeouts: Timeouts,
    call: &'a Call<'a>,
}

impl Exchange<'_> {
    /// The answer by its status: the deployment's failure, the client's error (passed on),
    /// or a 200 relayed as a stream or translated as JSON.
    async fn answer(
        &self,
        state: &Arc<State>,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut sent: Sent,
    ) -> Result<Served, AttemptError> {
        let Some(header) = sent.upstream.response_header() else {
            return Err(internal());
        };
        let status = header.status.as_u16();
        let content_type = header
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let text = |name: &str| header.headers.get(name).and_then(|v| v.to_str().ok());
        let retry_after = crate::routing::retry_after::seconds(
            text("retry-after"),
            text("retry-after-ms"),
            std::time::SystemTime::now(),
        );
        if let Some(failed) = failed_status(status, self.target, retry_after) {
            return Err(failed);
        }
        if status != 200 {
            // A client mistake the upstream caught (context too long, bad parameter…): the
            // adapter maps the provider's error to OpenAI's shape, nothing else of its body.
            let bytes = read_all(&mut sent.upstream, self.timeouts.upstream)
                .await
                .map_err(|_| timeout(self.target))?;
            let mapped = self.adapter.client_error(status, &bytes);
            return rejected(session, ctx, mapped).await;
        }
        if let Some(egress) = ctx.anthropic.as_mut() {
            egress.native = self.adapter.answers_natively(self.call);
        }
        if !self.call.body.stream {
            return self.json(state, session, ctx, sent).await;
        }
        if !self.adapter.is_stream_content_type(&content_type) {
            return Err(protocol(format!(
                "The upstream for `{}` answered a stream request without an event stream.",
                self.target.id
            )));
        }
        let relay = super::stream::Relay {
            call: self.call,
            target: self.target,
            timeouts: self.timeouts,
            peer: &sent.peer,
        };
        let translator = self.adapter.stream(self.call);
        relay
            .run(state, session, ctx, sent.upstream, translator)
            .await
    }

    /// A 200 JSON answer: read whole, translated, metered, sent.
    async fn json(
        &self,
        state: &Arc<State>,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut sent: Sent,
    ) -> Result<Served, AttemptError> {
        let target = self.target;
        let bytes = read_all(&mut sent.upstream, self.timeouts.upstream)
            .await
            .map_err(|error| match error {
                ReadError::TooLarge => {
                    protocol("The upstream response was larger than 64 MiB.".to_owned())
                }
                ReadError::TimedOut => timeout(target),
                ReadError::Broken => protocol(format!(
                    "The upstream for `{}` broke the connection mid-response.",
                    target.id
                )),
            })?;
        let answer = match self.adapter.response(self.call, &bytes) {
            Ok(answer) => answer,
            Err(error) if (400..500).contains(&error.code.status()) => {
                // The provider refused the request inside a 200 (a blocked prompt): the
                // deployment worked; the client gets the refusal.
                return rejected(session, ctx, error.into()).await;
            }
            Err(error) => return Err(AttemptError::retry(Fault::Protocol, error)),
        };
        ctx.meter = Meter::answer(answer.usage, self.call.body, &target.provider_model).await;
        super::release(state, sent.upstream, &sent.peer).await;
        respond::json(session, ctx, 200, answer.body).await?;
        Ok(Served::Answered)
    }
}

/// The provider's refusal of the client's request, passed on: the deployment worked.
async fn rejected(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mapped: crate::providers::ClientError,
) -> Result<Served, AttemptError> {
    ctx.error_code = Some("upstream_rejected");
    respond::json(session, ctx, mapped.status, mapped.body.to_json()).await?;
    Ok(Served::Answered)
}

/// Pooled connections found closed by the upstream, one after another, that one attempt
/// replaces before it fails.
const STALE_RETRIES: u32 = 3;

async fn connect(
    connector: &Connector,
    peer: &HttpPeer,
    target: &Deployment,
) -> Result<(HttpSession, bool), AttemptError> {
    connector.get_http_session(peer).await.map_err(|error| {
        let fault = if error.etype() == &pingora::ErrorType::ConnectTimedout {
            Fault::ConnectTimeout
        } else {
            Fault::Connect
        };
        AttemptError::retry(
            fault,
            ApiError::new(
                ErrorCode::UpstreamError,
                format!("Could not connect to the upstream for `{}`.", target.id),
            ),
        )
    })
}

/// Sends the request and reads the response head.
async fn send(
    upstream: HttpSession,
    peer: &HttpPeer,
    head: &RequestHead<'_>,
    wire: Bytes,
    payload: Bytes,
) -> pingora::Result<HttpSession> {
    let mut upstream = match upstream {
        // HTTP/1: head and body leave in one write (Pingora's session flushes the head on its
        // own, which costs a second send and a second wake-up of the upstream). The session
        // that reads the response is the one Pingora would have built.
        HttpSession::H1(session) => {
            let mut stream = session.into_inner();
            let mut request = wire.chain(payload);
            stream.write_all_buf(&mut request).await.or_err(
                pingora::ErrorType::WriteError,
                "writing the upstream request",
            )?;
            stream.flush().await.or_err(
                pingora::ErrorType::WriteError,
                "flushing the upstream request",
            )?;
            HttpSession::H1(Http1Session::new_with_options(stream, peer))
        }
        mut other => {
            other
                .write_request_header(Box::new(head.request_header()?))
                .await?;
            other.write_request_body(payload, true).await?;
            other.finish_request_body().await?;
            other
        }
    };
    upstream.read_response_header().await?;
    Ok(upstream)
}

/// Whether a reused connection failed the way one the upstream had just closed does: the
/// write was refused, or the connection ended (closed or reset) before any answer. Pingora
/// marks the latter `ReusedOnly`; a TLS failure or a timeout is not this.
fn closed_unanswered(error: &pingora::Error) -> bool {
    matches!(error.retry, pingora::RetryType::ReusedOnly)
        || error.etype() == &pingora::ErrorType::WriteError
}

enum ReadError {
    TooLarge,
    TimedOut,
    Broken,
}

async fn read_all(upstream: &mut HttpSession, deadline: Duration) -> Result<Bytes, ReadError> {
    let read = async {
        let mut buffer = BytesMut::new();
        while let Some(chunk) = upstream.read_response_body().await.map_err(|error| {
            if is_timeout(&error) {
                ReadError::TimedOut
            } else {
                ReadError::Broken
            }
        })? {
            if buffer.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ReadError::TooLarge);
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer.freeze())
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(ReadError::TimedOut))
}
