//! One attempt at one deployment: connect, send, read the head, then hand a 200 to the
//! JSON or stream path, and any other status to the breaker or the client.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use omg_shared::error::ErrorCode;
use pingora::connectors::http::Connector;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as Http1Session;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::OrErr;
use tokio::io::AsyncWriteExt;

use super::head::RequestHead;
use super::{internal, is_timeout, protocol, timeout, AttemptError, MAX_RESPONSE_BYTES, POOL_IDLE};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::providers::{Call, Usage};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::{respond, State, Timeouts};
use crate::snapshot::DeploymentEntry;
use crate::tokens::{PromptSource, Vocabulary};

pub(super) async fn attempt(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    deployment: &DeploymentEntry,
    timeouts: Timeouts,
    call: &Call<'_>,
) -> Result<(), AttemptError> {
    let target = &deployment.deployment;
    let (Some(endpoint), Some(adapter)) = (&target.endpoint, &deployment.adapter) else {
        return Err(AttemptError::Final(
            ApiError::new(ErrorCode::InternalError, "deployment has no endpoint").into(),
        ));
    };
    // Each attempt at its own time (signing adapters sign every attempt afresh).
    let call = &Call {
        now: SystemTime::now(),
        ..*call
    };
    if let Err(message) = adapter.ready() {
        tracing::warn!(deployment = %target.id, %message, "the deployment cannot be tried");
        return Err(AttemptError::Retryable {
            error: ApiError::new(
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` has no usable credential yet; the gateway's operator must check its log.",
                    target.id
                ),
            ),
            kind: "credentials",
        });
    }
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
    // Also vets the configured path, host and key for both HTTP versions.
    let wire = Bytes::from(head.h1_bytes().ok_or_else(internal)?);
    let deadline = tokio::time::Instant::now() + timeouts.upstream;
    let mut stale = 0;
    let mut upstream = loop {
        let (upstream, reused) = connect(&state.connector, &peer, target).await?;
        let sent = tokio::time::timeout_at(
            deadline,
            Box::pin(send(upstream, &peer, &head, wire.clone(), payload.clone())),
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
            Ok(Ok(upstream)) => break upstream,
        }
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
    let text = |name: &str| header.headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = crate::routing::retry_after::seconds(
        text("retry-after"),
        text("retry-after-ms"),
        std::time::SystemTime::now(),
    );

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
    if status == 404 {
        // The client named an alias the gateway knows: a provider that does not know the
        // model, deployment or path is the catalog entry's fault, not the client's.
        tracing::error!(deployment = %target.id, status, "the upstream does not know the deployment's model, deployment name or path; check the catalog entry's provider_model, deployment and endpoint");
        return Err(AttemptError::Retryable {
            error: ApiError::new(
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` does not know its configured model; the gateway's operator must fix the catalog entry.",
                    target.id
                ),
            ),
            kind: "not_found",
        });
    }
    if status != 200 {
        // A client mistake the upstream caught (context too long, bad parameter…): the
        // adapter maps the provider's error to OpenAI's shape, nothing else of its body.
        let bytes = read_all(&mut upstream, timeouts.upstream)
            .await
            .map_err(|_| timeout(target))?;
        let mapped = adapter.client_error(status, &bytes);
        ctx.error_code = Some("upstream_rejected");
        return respond::json(session, ctx, mapped.status, mapped.body.to_json())
            .await
            .map_err(AttemptError::Final);
    }

    if let Some(egress) = ctx.anthropic.as_mut() {
        egress.native = adapter.answers_natively(call);
    }
    if call.body.stream && adapter.is_stream_content_type(&content_type) {
        let translator = adapter.stream(call);
        super::stream::relay(
            state, session, ctx, upstream, &peer, call, translator, target, timeouts,
        )
        .await
    } else if call.body.stream {
        Err(protocol(format!(
            "The upstream for `{}` answered a stream request without an event stream.",
            target.id
        )))
    } else {
        let bytes =
            read_all(&mut upstream, timeouts.upstream)
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
        let answer = match adapter.response(call, &bytes) {
            Ok(answer) => answer,
            Err(error) if (400..500).contains(&error.code.status()) => {
                // The provider refused the request inside a 200 (a blocked prompt): the
                // deployment worked; the client gets the refusal.
                ctx.error_code = Some("upstream_rejected");
                let mapped = crate::providers::ClientError::from(error);
                return respond::json(session, ctx, mapped.status, mapped.body.to_json())
                    .await
                    .map_err(AttemptError::Final);
            }
            Err(error) => {
                return Err(AttemptError::Retryable {
                    error,
                    kind: "protocol",
                })
            }
        };
        ctx.usage = match answer.usage {
            Some(usage) => usage,
            None => {
                ctx.usage_estimated = true;
                Usage {
                    prompt_tokens: PromptSource::of(call.body)
                        .count_off_worker(Vocabulary::for_model(&target.provider_model))
                        .await,
                    ..Usage::default()
                }
            }
        };
        super::release(state, upstream, &peer).await;
        respond::json(session, ctx, 200, answer.body)
            .await
            .map_err(AttemptError::Final)
    }
}

/// Pooled connections found closed by the upstream, one after another, that one attempt
/// replaces before it fails.
const STALE_RETRIES: u32 = 3;

async fn connect(
    connector: &Connector,
    peer: &HttpPeer,
    target: &omg_shared::snapshot::Deployment,
) -> Result<(HttpSession, bool), AttemptError> {
    connector
        .get_http_session(peer)
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
