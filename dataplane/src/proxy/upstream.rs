//! The in-process exchange with OpenAI-format upstreams (`openai`, `openai-compatible`).
//!
//! The body is read and checked before any upstream is contacted, so every attempt can
//! replay it, whatever its size. Connect errors, timeouts, 5xx and 429 before the response
//! starts move on to the next deployment; once the client has received bytes, a failure ends
//! the stream with an in-band OpenAI error event (never a clean-looking end).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use omg_shared::routing::HealthPolicy;
use omg_shared::tokens::estimate_tokens;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as Http1Session;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::OrErr;
use tokio::io::AsyncWriteExt;

use super::ctx::RequestCtx;
use super::{respond, Failure, State, Timeouts};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::providers::openai::{response_usage, EventAction, StreamMeter};
use crate::providers::Usage;
use crate::request::{RequestBody, Route};
use crate::routing::Outcome;
use crate::snapshot::DeploymentEntry;
use crate::sse::{data_event, SseSplitter};

/// Largest non-streamed upstream body accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Stream bytes gathered from what the upstream already delivered before one client write.
const COALESCE_BYTES: usize = 64 * 1024;
/// The `user-agent` sent upstream.
pub(super) const USER_AGENT: &str = concat!("open-model-gateway/", env!("CARGO_PKG_VERSION"));

/// Why one attempt did not produce a response for the client.
enum AttemptError {
    /// Worth trying the next deployment.
    Retryable { error: ApiError, kind: &'static str },
    /// Final (a client error from the upstream, or the client left).
    Final(Failure),
}

/// What the attempts of one request run under.
pub(super) struct Plan<'a> {
    /// Deployments in the order to try them.
    pub order: &'a [Arc<DeploymentEntry>],
    /// Attempts allowed (≥ 1).
    pub max_attempts: u32,
    /// The alias's timeouts.
    pub timeouts: Timeouts,
    /// Breaker policy.
    pub health: &'a HealthPolicy,
}

/// Error codes of a stream that ended broken after its first byte: the deployment failed.
const BROKEN_STREAM: [&str; 4] = [
    "stream_idle_timeout",
    "stream_interrupted",
    "upstream_protocol",
    "upstream_stream_error",
];

pub(super) async fn exchange(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &Plan<'_>,
    route: &Route,
    body: &RequestBody<'_>,
) -> Result<(), Failure> {
    let metrics = Metrics::global();
    let mut last_error: Option<ApiError> = None;
    let mut made = 0;
    for deployment in plan.order {
        if made >= plan.max_attempts {
            break;
        }
        // Another request may have tripped it, or taken its probe, since the order was made.
        let Some(permit) = deployment.health.acquire() else {
            continue;
        };
        made += 1;
        let alias = ctx.alias.clone().unwrap_or_default();
        if made > 1 {
            metrics.failovers.with_label_values(&[alias.as_str()]).inc();
        }
        ctx.attempts += 1;
        ctx.provider = Some(deployment.deployment.provider);
        ctx.deployment = Some(deployment.deployment.id.clone());
        ctx.pricing = deployment.deployment.pricing;
        let id = deployment.deployment.id.as_str();
        match attempt(state, session, ctx, deployment, plan.timeouts, route, body).await {
            Ok(()) => {
                let outcome = match ctx.error_code.filter(|code| BROKEN_STREAM.contains(code)) {
                    Some(code) => Outcome::Failure(code),
                    None => Outcome::Success,
                };
                let label = match outcome {
                    Outcome::Failure(code) => code,
                    _ => "ok",
                };
                metrics
                    .upstream_attempts
                    .with_label_values(&[alias.as_str(), id, label])
                    .inc();
                permit.finish(outcome, plan.health);
                return Ok(());
            }
            Err(AttemptError::Final(failure)) => {
                // No verdict on the deployment (the client left, or the gateway failed).
                metrics
                    .upstream_attempts
                    .with_label_values(&[alias.as_str(), id, "abandoned"])
                    .inc();
                return Err(failure);
            }
            Err(AttemptError::Retryable { error, kind }) => {
                let outcome = if kind == "status_429" {
                    Outcome::RateLimited(error.retry_after.map(|s| s.saturating_mul(1000)))
                } else {
                    Outcome::Failure(kind)
                };
                permit.finish(outcome, plan.health);
                metrics
                    .upstream_errors
                    .with_label_values(&[deployment.deployment.provider.as_str(), kind])
                    .inc();
                metrics
                    .upstream_attempts
                    .with_label_values(&[alias.as_str(), id, kind])
                    .inc();
                tracing::warn!(
                    request_id = %ctx.request_id,
                    deployment = %deployment.deployment.id,
                    attempt = ctx.attempts,
                    kind,
                    error = %error.message,
                    "upstream attempt failed"
                );
                last_error = Some(error);
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| {
            // Every candidate went to rest between routing and now.
            let mut error = ApiError::new(
                ErrorCode::NoHealthyUpstream,
                "Every deployment of the model is failing and resting; retry later.",
            );
            error.retry_after = Some(1);
            error
        })
        .into())
}

async fn attempt(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    deployment: &DeploymentEntry,
    timeouts: Timeouts,
    route: &Route,
    body: &RequestBody<'_>,
) -> Result<(), AttemptError> {
    let target = &deployment.deployment;
    let Some(endpoint) = &target.endpoint else {
        return Err(AttemptError::Final(
            ApiError::new(ErrorCode::InternalError, "deployment has no endpoint").into(),
        ));
    };
    let addr = state
        .resolver
        .resolve(&endpoint.host, endpoint.port)
        .await
        .map_err(|message| {
            tracing::warn!(deployment = %target.id, %message, "upstream host resolution failed");
            AttemptError::Retryable {
                error: ApiError::new(
                    ErrorCode::UpstreamError,
                    format!("The upstream for `{}` could not be resolved.", target.id),
                ),
                kind: "dns",
            }
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

    let payload = Bytes::from(body.upstream_body(&target.provider_model));
    let host = endpoint.host_header();
    let head = RequestHead {
        path: &endpoint.path,
        route_path: route.upstream_path(),
        host: &host,
        accept: if body.stream {
            "text/event-stream"
        } else {
            "application/json"
        },
        request_id: &ctx.request_id,
        api_key: target.api_key.as_ref().map(|key| key.expose()),
        content_length: payload.len(),
    };
    // Also vets the configured path, host and key for both HTTP versions.
    let wire = head.h1_bytes().ok_or_else(internal)?;
    let connector: &Connector = &state.connector;
    let (upstream, _reused) =
        connector
            .get_http_session(&peer)
            .await
            .map_err(|error| AttemptError::Retryable {
                error: ApiError::new(
                    ErrorCode::UpstreamError,
                    format!("Could not connect to the upstream for `{}`.", target.id),
                ),
                kind: if error.etype() == &pingora::ErrorType::ConnectTimedout {
                    "connect_timeout"
                } else {
                    "connect"
                },
            })?;

    let send = async {
        let mut upstream = match upstream {
            // HTTP/1: head and body leave in one write (Pingora's session flushes the head on
            // its own, which costs a second send and a second wake-up of the upstream). The
            // session that reads the response is the one Pingora would have built.
            HttpSession::H1(session) => {
                let mut stream = session.into_inner();
                let mut request = Bytes::from(wire).chain(payload);
                stream.write_all_buf(&mut request).await.or_err(
                    pingora::ErrorType::WriteError,
                    "writing the upstream request",
                )?;
                stream.flush().await.or_err(
                    pingora::ErrorType::WriteError,
                    "flushing the upstream request",
                )?;
                HttpSession::H1(Http1Session::new_with_options(stream, &peer))
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
        Ok::<_, Box<pingora::Error>>(upstream)
    };
    let mut upstream = match tokio::time::timeout(timeouts.upstream, send).await {
        Err(_) => return Err(timeout(target)),
        Ok(Err(error)) if is_timeout(&error) => return Err(timeout(target)),
        Ok(Err(_)) => {
            return Err(AttemptError::Retryable {
                error: ApiError::new(
                    ErrorCode::UpstreamError,
                    format!("The upstream for `{}` closed the connection.", target.id),
                ),
                kind: "protocol",
            })
        }
        Ok(Ok(upstream)) => upstream,
    };
    let Some(header) = upstream.response_header() else {
        return Err(internal());
    };
    let status = header.status.as_u16();
    let content_type = header
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let retry_after = header
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());

    if status == 429 || status >= 500 {
        let mut error = if status == 429 {
            ApiError::new(
                ErrorCode::RequestRateLimited,
                format!(
                    "The upstream for `{}` is rate limiting; retry later.",
                    target.id
                ),
            )
        } else {
            ApiError::new(
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` failed with HTTP {status}.",
                    target.id
                ),
            )
        };
        error.retry_after = retry_after;
        return Err(AttemptError::Retryable {
            error,
            kind: if status == 429 {
                "status_429"
            } else {
                "status_5xx"
            },
        });
    }
    if status == 401 || status == 403 {
        tracing::error!(deployment = %target.id, status, "the upstream refused the gateway's credentials; check the catalog entry's api_key");
        return Err(AttemptError::Retryable {
            error: ApiError::new(
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` refused the gateway's credentials.",
                    target.id
                ),
            ),
            kind: "auth",
        });
    }
    if status != 200 {
        // A client mistake the upstream caught (context too long, bad parameter…): pass its
        // OpenAI-shaped error on, with the status, and nothing else of the upstream's body.
        let bytes = read_all(&mut upstream, timeouts.upstream)
            .await
            .map_err(|_| timeout(target))?;
        let error = match serde_json::from_slice::<OpenAiErrorBody>(&bytes) {
            Ok(parsed) => parsed,
            Err(_) => OpenAiErrorBody::new(
                ErrorCode::InvalidParameter,
                format!("The upstream rejected the request with HTTP {status}."),
                None,
            ),
        };
        let status = if (400..500).contains(&status) {
            status
        } else {
            502
        };
        ctx.error_code = Some("upstream_rejected");
        return respond::json(session, ctx, status, error.to_json())
            .await
            .map_err(AttemptError::Final);
    }

    if body.stream && content_type.starts_with("text/event-stream") {
        stream(state, session, ctx, upstream, &peer, body, target, timeouts).await
    } else if body.stream {
        Err(AttemptError::Retryable {
            error: ApiError::new(
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` answered a stream request without an event stream.",
                    target.id
                ),
            ),
            kind: "protocol",
        })
    } else {
        let bytes =
            read_all(&mut upstream, timeouts.upstream)
                .await
                .map_err(|error| match error {
                    ReadError::TooLarge => AttemptError::Retryable {
                        error: ApiError::new(
                            ErrorCode::UpstreamError,
                            "The upstream response was larger than 64 MiB.",
                        ),
                        kind: "protocol",
                    },
                    ReadError::TimedOut => timeout(target),
                    ReadError::Broken => AttemptError::Retryable {
                        error: ApiError::new(
                            ErrorCode::UpstreamError,
                            format!(
                                "The upstream for `{}` broke the connection mid-response.",
                                target.id
                            ),
                        ),
                        kind: "protocol",
                    },
                })?;
        let usage = match response_usage(&bytes) {
            Ok(usage) => usage,
            Err(_) => {
                return Err(AttemptError::Retryable {
                    error: ApiError::new(
                        ErrorCode::UpstreamError,
                        format!(
                            "The upstream for `{}` answered with a body that is not JSON.",
                            target.id
                        ),
                    ),
                    kind: "protocol",
                })
            }
        };
        ctx.usage = usage.unwrap_or_else(|| {
            ctx.usage_estimated = true;
            Usage {
                prompt_tokens: estimate_tokens(&body.prompt_text()),
                ..Usage::default()
            }
        });
        state
            .connector
            .release_http_session(upstream, &peer, Some(POOL_IDLE))
            .await;
        respond::json(session, ctx, 200, bytes.to_vec())
            .await
            .map_err(AttemptError::Final)
    }
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

/// Streams an upstream SSE response to the client, metering every event.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the pieces of one attempt"
)]
async fn stream(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut upstream: HttpSession,
    peer: &HttpPeer,
    body: &RequestBody<'_>,
    target: &omg_shared::snapshot::Deployment,
    timeouts: Timeouts,
) -> Result<(), AttemptError> {
    upstream.set_read_timeout(Some(timeouts.stream_idle));
    let mut splitter = SseSplitter::default();
    let mut meter = StreamMeter::new(body.include_usage);
    let max_duration = tokio::time::sleep(state.settings.stream_max_duration);
    tokio::pin!(max_duration);
    let mut watch_client = true;
    // The client's response starts only with the upstream's first bytes: until then a reset,
    // an empty stream or a stall can still fail over to the next deployment.
    let first = upstream.read_response_body().await;
    let mut carried: Option<pingora::Result<Option<Bytes>>> = match first {
        Ok(Some(bytes)) => Some(Ok(Some(bytes))),
        Err(error) if is_timeout(&error) => return Err(timeout(target)),
        Ok(None) | Err(_) => {
            return Err(AttemptError::Retryable {
                error: ApiError::new(
                    ErrorCode::UpstreamError,
                    format!(
                        "The upstream for `{}` ended its stream before sending anything.",
                        target.id
                    ),
                ),
                kind: "stream_interrupted",
            })
        }
    };
    respond::start_stream(session, ctx)
        .await
        .map_err(AttemptError::Final)?;

    let outcome: StreamEnd = loop {
        let read = match carried.take() {
            Some(read) => read,
            None => tokio::select! {
                biased;
                read = upstream.read_response_body() => read,
                idle = session.as_downstream_mut().read_body_or_idle(true), if watch_client => {
                    if idle.is_err() {
                        break StreamEnd::ClientGone;
                    }
                    watch_client = false;
                    continue;
                }
                () = &mut max_duration => {
                    break StreamEnd::failed(ErrorCode::UpstreamTimeout, "stream_max_duration", "The stream exceeded the gateway's maximum duration.");
                }
            },
        };
        match read {
            Ok(Some(bytes)) => {
                let mut out = BytesMut::new();
                let mut end = forward(&mut splitter, &mut meter, &bytes, &mut out).err();
                // Pingora returns the upstream's HTTP chunks one at a time even when a single
                // read brought many: take every one already here (never waiting) so they leave
                // in one client write instead of one write, and one send, each.
                while end.is_none() && out.len() < COALESCE_BYTES {
                    match ready_now(upstream.read_response_body()).await {
                        Some(Ok(Some(bytes))) => {
                            end = forward(&mut splitter, &mut meter, &bytes, &mut out).err();
                        }
                        Some(other) => {
                            carried = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                if meter.saw_choices {
                    ctx.mark_first_token();
                }
                if !out.is_empty()
                    && respond::stream_bytes(session, ctx, out.freeze())
                        .await
                        .is_err()
                {
                    break StreamEnd::ClientGone;
                }
                if let Some(end) = end {
                    break end;
                }
            }
            Ok(None) => {
                if meter.done || meter.upstream_error {
                    break StreamEnd::Complete;
                }
                break StreamEnd::failed(
                    ErrorCode::UpstreamError,
                    "stream_interrupted",
                    "The upstream stream ended before it was complete.",
                );
            }
            Err(error) if is_timeout(&error) => {
                break StreamEnd::failed(
                    ErrorCode::UpstreamTimeout,
                    "stream_idle_timeout",
                    "The upstream stream stalled and was cut by the gateway.",
                )
            }
            Err(_) => {
                break StreamEnd::failed(
                    ErrorCode::UpstreamError,
                    "stream_interrupted",
                    "The upstream stream was interrupted.",
                )
            }
        }
    };

    // Bill what the upstream reported, or the prompt plus the tokens seen.
    match meter.usage {
        Some(usage) => ctx.usage = usage,
        None => {
            ctx.usage_estimated = true;
            ctx.usage = Usage {
                prompt_tokens: estimate_tokens(&body.prompt_text()),
                completion_tokens: meter.estimated_completion_tokens,
                cached_tokens: 0,
            };
        }
    }
    if meter.upstream_error {
        ctx.error_code = Some("upstream_stream_error");
    }
    let result = match outcome {
        StreamEnd::Complete => {
            if meter.done {
                state
                    .connector
                    .release_http_session(upstream, peer, Some(POOL_IDLE))
                    .await;
            }
            respond::end_stream(session).await
        }
        StreamEnd::ClientGone => Err(Failure::ClientGone),
        StreamEnd::Failed {
            code,
            error_code,
            message,
        } => {
            ctx.error_code = Some(error_code);
            Metrics::global()
                .upstream_errors
                .with_label_values(&[ctx.provider.map_or("-", |p| p.as_str()), error_code])
                .inc();
            tracing::warn!(request_id = %ctx.request_id, error_code, "stream ended with an in-band error");
            let event = OpenAiErrorBody::new(code, message, None);
            // Ends without `[DONE]`: the SDKs raise on the error event instead of pretending
            // the answer was complete.
            match respond::stream_bytes(session, ctx, Bytes::from(data_event(&event.to_json())))
                .await
            {
                Ok(()) => respond::end_stream(session).await,
                Err(failure) => Err(failure),
            }
        }
    };
    result.map_err(AttemptError::Final)
}

/// Splits `bytes` into events, meters them and appends those to forward to `out`.
fn forward(
    splitter: &mut SseSplitter,
    meter: &mut StreamMeter,
    bytes: &[u8],
    out: &mut BytesMut,
) -> Result<(), StreamEnd> {
    let events = splitter.push(bytes).map_err(|_| {
        StreamEnd::failed(
            ErrorCode::UpstreamError,
            "upstream_protocol",
            "The upstream sent an oversized stream event.",
        )
    })?;
    for event in events {
        match meter.process(&event) {
            EventAction::Forward => out.extend_from_slice(&event),
            EventAction::Drop => {}
            EventAction::Malformed => {
                return Err(StreamEnd::failed(
                    ErrorCode::UpstreamError,
                    "upstream_protocol",
                    "The upstream sent a malformed stream event.",
                ))
            }
        }
    }
    Ok(())
}

/// Polls `future` once: its output when it is ready without waiting, else `None` (the future
/// is dropped; Pingora's body reads keep their state in the session, so this is safe).
async fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        output = future => Some(output),
        () = std::future::ready(()) => None,
    }
}

/// What the upstream request carries besides its body. One list of headers for both the
/// HTTP/1 wire writer and the HTTP/2 request header.
struct RequestHead<'a> {
    /// The endpoint's path prefix (`/v1`).
    path: &'a str,
    /// The route below it (`/chat/completions`).
    route_path: &'static str,
    host: &'a str,
    accept: &'static str,
    request_id: &'a str,
    api_key: Option<&'a str>,
    content_length: usize,
}

impl RequestHead<'_> {
    /// Calls `each(name, value parts)` for every header, in order.
    fn for_each_header(&self, mut each: impl FnMut(&'static str, &[&str])) {
        let length = self.content_length.to_string();
        each("host", &[self.host]);
        each("content-type", &["application/json"]);
        each("content-length", &[&length]);
        each("accept", &[self.accept]);
        each("accept-encoding", &["identity"]);
        each("user-agent", &[USER_AGENT]);
        each("x-request-id", &[self.request_id]);
        if let Some(key) = self.api_key {
            each("authorization", &["Bearer ", key]);
        }
    }

    /// The HTTP/1.1 request line and headers, or `None` when a configured value (path, host,
    /// key) holds a byte that would break the framing.
    fn h1_bytes(&self) -> Option<Vec<u8>> {
        let target_ok = |text: &str| text.bytes().all(|b| b.is_ascii_graphic());
        let value_ok = |text: &str| text.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if !target_ok(self.path) || !target_ok(self.route_path) {
            return None;
        }
        let mut out = Vec::with_capacity(384);
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(self.route_path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut valid = true;
        self.for_each_header(|name, parts| {
            valid &= parts.iter().all(|part| value_ok(part));
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            for part in parts {
                out.extend_from_slice(part.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        });
        out.extend_from_slice(b"\r\n");
        valid.then_some(out)
    }

    /// The same request as a Pingora header (HTTP/2 upstreams).
    fn request_header(&self) -> pingora::Result<RequestHeader> {
        let mut request = RequestHeader::build(
            "POST",
            format!("{}{}", self.path, self.route_path).as_bytes(),
            Some(8),
        )?;
        let mut result = Ok(());
        self.for_each_header(|name, parts| {
            if result.is_ok() {
                result = request.insert_header(name, parts.concat()).map(|_| ());
            }
        });
        result.map(|()| request)
    }
}

/// How a stream ended.
enum StreamEnd {
    Complete,
    ClientGone,
    Failed {
        code: ErrorCode,
        error_code: &'static str,
        message: &'static str,
    },
}

impl StreamEnd {
    fn failed(code: ErrorCode, error_code: &'static str, message: &'static str) -> Self {
        StreamEnd::Failed {
            code,
            error_code,
            message,
        }
    }
}

fn is_timeout(error: &pingora::Error) -> bool {
    matches!(
        error.etype(),
        pingora::ErrorType::ReadTimedout
            | pingora::ErrorType::WriteTimedout
            | pingora::ErrorType::ConnectTimedout
    )
}

fn timeout(target: &omg_shared::snapshot::Deployment) -> AttemptError {
    AttemptError::Retryable {
        error: ApiError::new(
            ErrorCode::UpstreamTimeout,
            format!("The upstream for `{}` did not answer in time.", target.id),
        ),
        kind: "timeout",
    }
}

fn internal() -> AttemptError {
    AttemptError::Final(
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway failed to build the upstream request.",
        )
        .into(),
    )
}
