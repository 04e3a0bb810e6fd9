//! Writing responses to the client: JSON bodies, OpenAI errors, stream headers. Every response
//! carries `x-request-id`.

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::ctx::{AnthropicEgress, RequestCtx};
use super::Failure;
use crate::error::ApiError;
use crate::ingress::anthropic::{self, EventConverter};
use crate::metrics::Metrics;

/// A response header with the headers every `/v1` response has.
pub fn header(
    ctx: &RequestCtx,
    status: u16,
    content_type: &str,
) -> Result<ResponseHeader, Failure> {
    let mut header = ResponseHeader::build(status, Some(24)).map_err(internal)?;
    header
        .insert_header("content-type", content_type)
        .map_err(internal)?;
    header
        .insert_header("x-request-id", ctx.request_id.as_str())
        .map_err(internal)?;
    if ctx.anthropic.is_some() {
        // Where Anthropic's SDKs look for it.
        header
            .insert_header("request-id", ctx.request_id.as_str())
            .map_err(internal)?;
    }
    if let Some(target) = &ctx.target {
        header
            .insert_header("x-omg-deployment", target.deployment.as_str())
            .map_err(internal)?;
        header
            .insert_header("x-omg-attempts", ctx.attempts.to_string())
            .map_err(internal)?;
    }
    if let Some(observed) = &ctx.observed {
        for (name, value) in observed.headers() {
            header.insert_header(name, value).map_err(internal)?;
        }
    }
    Ok(header)
}

fn internal(error: Box<pingora::Error>) -> Failure {
    tracing::error!(%error, "building a response header failed");
    Failure::ClientGone
}

/// Sends a complete JSON response.
pub async fn json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Vec<u8>,
) -> Result<(), Failure> {
    let body = match &ctx.anthropic {
        Some(egress) => to_anthropic(ctx, egress, status, body),
        None => body,
    };
    let mut header = header(ctx, status, "application/json")?;
    header
        .insert_header(
            "openai-processing-ms",
            ctx.started.elapsed().as_millis().to_string(),
        )
        .map_err(internal)?;
    send(session, ctx, header, body.into()).await
}

/// A JSON body for an Anthropic client: a success translated unless already native, an
/// error always rewritten in Anthropic's shape.
fn to_anthropic(ctx: &RequestCtx, egress: &AnthropicEgress, status: u16, body: Vec<u8>) -> Vec<u8> {
    if status != 200 {
        return anthropic::from_openai_error(status, &body);
    }
    if egress.native {
        return body;
    }
    let alias = ctx.alias.as_deref().unwrap_or("-");
    anthropic::from_openai(&body, alias, &ctx.request_id).unwrap_or_else(|| {
        tracing::error!(request_id = %ctx.request_id, "an answer could not be translated to Anthropic's shape");
        anthropic::error_body(502, "The upstream answer could not be translated.")
    })
}

/// Sends a stored answer again (`Idempotency-Key`): its status, content type and body as
/// first sent (a stream's events in one response), marked `idempotent-replayed: true`.
pub async fn replay(
    session: &mut Session,
    ctx: &mut RequestCtx,
    stored: &crate::idempotency::Stored,
) -> Result<(), Failure> {
    let mut header = header(ctx, stored.status, &stored.content_type)?;
    header
        .insert_header("idempotent-replayed", "true")
        .map_err(internal)?;
    if stored.content_type.starts_with("text/event-stream") {
        header
            .insert_header("cache-control", "no-cache")
            .map_err(internal)?;
    }
    send(session, ctx, header, stored.body.clone()).await
}

/// Writes a complete response with its `content-length` and records its status.
async fn send(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut header: ResponseHeader,
    body: Bytes,
) -> Result<(), Failure> {
    header
        .insert_header("content-length", body.len().to_string())
        .map_err(internal)?;
    ctx.status = header.status.as_u16();
    if let Some(recorder) = ctx.idempotency.as_mut() {
        let content_type = header
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        recorder
            .capture
            .start(ctx.status, content_type.unwrap_or(""));
        recorder.capture.push(&body);
    }
    let written = async {
        session
            .write_response_header(Box::new(header), false)
            .await?;
        let limit = session.get_write_timeout();
        bounded(limit, session.write_response_body(Some(body), true)).await
    }
    .await;
    match written {
        Ok(()) => Ok(()),
        Err(error) if ctx.detached() => {
            // A batch line's answer is complete (captured above): it stands, is stored
            // under its `Idempotency-Key` and billed as answered; the re-sent line gets it.
            tracing::info!(request_id = %ctx.request_id, %error, "the batch line's sender left before its answer was written; the answer stands");
            Ok(())
        }
        Err(error) => Err(write_failed(ctx, &error)),
    }
}

/// A write to the client failed: it left, or it stopped reading for `server.write_timeout`
/// (then recorded as `write_timeout`, the connection cut).
fn write_failed(ctx: &mut RequestCtx, error: &pingora::Error) -> Failure {
    if matches!(error.etype(), pingora::ErrorType::WriteTimedout) {
        ctx.error_code = Some("write_timeout");
        Metrics::global()
            .downstream_timeouts
            .with_label_values(&["write"])
            .inc();
        tracing::info!(request_id = %ctx.request_id, "the client stopped reading: cut after `server.write_timeout`");
    }
    Failure::ClientGone
}

/// Bounds a write Pingora does not time out itself (the flush that ends a body) by the
/// session's write timeout.
async fn bounded(
    limit: Option<std::time::Duration>,
    write: impl std::future::Future<Output = pingora::Result<()>>,
) -> pingora::Result<()> {
    let Some(limit) = limit else {
        return write.await;
    };
    tokio::time::timeout(limit, write)
        .await
        .unwrap_or_else(|_| {
            Err(pingora::Error::explain(
                pingora::ErrorType::WriteTimedout,
                "ending the response body",
            ))
        })
}

/// Sends an OpenAI error, unless a response has already started (then the caller has dealt
/// with it in-band).
pub async fn error(session: &mut Session, ctx: &mut RequestCtx, error: &ApiError) {
    ctx.error_code = Some(error.code.code());
    if session.response_written().is_some() {
        return;
    }
    let body = match ctx.anthropic {
        Some(_) => anthropic::error_body(error.code.status(), &error.message),
        None => error.body(),
    };
    let result = async {
        let mut header = header(ctx, error.code.status(), "application/json")?;
        if let Some(seconds) = error.retry_after {
            header
                .insert_header("retry-after", seconds.max(1).to_string())
                .map_err(internal)?;
        }
        if !error.code.should_retry() && error.code.status() >= 429 {
            header
                .insert_header("x-should-retry", "false")
                .map_err(internal)?;
        }
        send(session, ctx, header, body.into()).await
    }
    .await;
    if result.is_err() {
        ctx.status = 499;
    }
}

/// Starts a server-sent-events response.
pub async fn start_stream(session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Failure> {
    let mut header = header(ctx, 200, "text/event-stream")?;
    header
        .insert_header("cache-control", "no-cache")
        .map_err(internal)?;
    header
        .insert_header("x-accel-buffering", "no")
        .map_err(internal)?;
    if !session.as_downstream().is_http2() {
        header
            .insert_header("transfer-encoding", "chunked")
            .map_err(internal)?;
    }
    ctx.status = 200;
    if let Some(recorder) = ctx.idempotency.as_mut() {
        recorder.capture.start(200, "text/event-stream");
    }
    let alias = ctx.alias.as_deref().unwrap_or("-");
    if let Some(egress) = ctx.anthropic.as_mut() {
        egress.stream = Some(if egress.native {
            EventConverter::native(alias, &ctx.request_id)
        } else {
            EventConverter::translating(alias, &ctx.request_id)
        });
    }
    session
        .write_response_header(Box::new(header), false)
        .await
        .map_err(|_| Failure::ClientGone)
}

/// Writes stream bytes; a failure means the client left.
pub async fn stream_bytes(
    session: &mut Session,
    ctx: &mut RequestCtx,
    bytes: Bytes,
) -> Result<(), Failure> {
    let bytes = match ctx.anthropic.as_mut().and_then(|e| e.stream.as_mut()) {
        Some(converter) => {
            let mut out = BytesMut::with_capacity(bytes.len() + 256);
            converter.push(&bytes, &mut out);
            if out.is_empty() {
                return Ok(());
            }
            out.freeze()
        }
        None => bytes,
    };
    if let Some(recorder) = ctx.idempotency.as_mut() {
        recorder.capture.push(&bytes);
    }
    session
        .write_response_body(Some(bytes), false)
        .await
        .map_err(|e| write_failed(ctx, &e))
}

/// Ends a stream.
pub async fn end_stream(session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Failure> {
    let limit = session.get_write_timeout();
    bounded(limit, session.write_response_body(None, true))
        .await
        .map_err(|e| write_failed(ctx, &e))
}

/// Waits for `duration`, or fails early when the client disconnects.
pub async fn sleep_or_client_gone(
    session: &mut Session,
    duration: std::time::Duration,
) -> Result<(), Failure> {
    if duration.is_zero() {
        return Ok(());
    }
    let sleep = tokio::time::sleep(duration);
    tokio::pin!(sleep);
    tokio::select! {
        _ = &mut sleep => Ok(()),
        idle = session.as_downstream_mut().read_body_or_idle(true) => {
            if idle.is_err() {
                return Err(Failure::ClientGone);
            }
            // Stray bytes (pipelining): keep waiting without watching the client.
            sleep.await;
            Ok(())
        }
    }
}
