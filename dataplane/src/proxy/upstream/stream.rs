//! Relaying a streamed answer: the adapter's translator turns the provider's events into
//! OpenAI chunks as they arrive; the client's response starts with the upstream's first
//! bytes, so a stream that dies before them can still fail over.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;

use super::{is_timeout, timeout, AttemptError};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::providers::{Call, StreamFault, StreamTranslator, Usage};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::{respond, Failure, State, Timeouts};
use crate::sse::data_event;
use crate::tokens::{PromptSource, Vocabulary};

/// Stream bytes gathered from what the upstream already delivered before one client write.
const COALESCE_BYTES: usize = 64 * 1024;

/// How a stream ended.
enum StreamEnd {
    Complete,
    ClientGone,
    /// Cut while a write to the client was blocked (`stream_max_duration`).
    Cut(&'static str),
    Failed(StreamFault),
}

impl StreamEnd {
    fn failed(kind: &'static str, code: ErrorCode, message: &'static str) -> Self {
        StreamEnd::Failed(StreamFault {
            kind,
            code,
            message,
        })
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the pieces of one attempt"
)]
pub(super) async fn relay(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut upstream: HttpSession,
    peer: &HttpPeer,
    call: &Call<'_>,
    mut translator: Box<dyn StreamTranslator>,
    target: &omg_shared::snapshot::Deployment,
    timeouts: Timeouts,
) -> Result<(), AttemptError> {
    upstream.set_read_timeout(Some(timeouts.stream_idle));
    let max_duration = tokio::time::sleep(state.settings.stream_max_duration);
    tokio::pin!(max_duration);
    let mut watch_client = true;
    // Until the first bytes, a reset, an empty stream or a stall can still fail over.
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
                    break StreamEnd::failed("stream_max_duration", ErrorCode::UpstreamTimeout, "The stream exceeded the gateway's maximum duration.");
                }
            },
        };
        match read {
            Ok(Some(bytes)) => {
                let mut out = BytesMut::new();
                let mut end = translator.push(&bytes, &mut out).err();
                // Pingora returns the upstream's HTTP chunks one at a time even when a single
                // read brought many: take every one already here (never waiting) so they leave
                // in one client write instead of one write, and one send, each.
                while end.is_none() && out.len() < COALESCE_BYTES && !finished(&*translator) {
                    match ready_now(upstream.read_response_body()).await {
                        Some(Ok(Some(bytes))) => end = translator.push(&bytes, &mut out).err(),
                        Some(other) => {
                            carried = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                if translator.saw_content() {
                    ctx.mark_first_token();
                }
                if !out.is_empty() {
                    if let Err(end) = write(session, ctx, out.freeze(), max_duration.as_mut()).await
                    {
                        break end;
                    }
                }
                if let Some(fault) = end {
                    break StreamEnd::Failed(fault);
                }
            }
            Ok(None) => {
                // Streams without a terminal event (Gemini) end here.
                let mut out = BytesMut::new();
                translator.finish(&mut out);
                if !out.is_empty() {
                    if let Err(end) = write(session, ctx, out.freeze(), max_duration.as_mut()).await
                    {
                        break end;
                    }
                }
                if finished(&*translator) {
                    break StreamEnd::Complete;
                }
                break StreamEnd::failed(
                    "stream_interrupted",
                    ErrorCode::UpstreamError,
                    "The upstream stream ended before it was complete.",
                );
            }
            Err(error) if is_timeout(&error) => {
                break StreamEnd::failed(
                    "stream_idle_timeout",
                    ErrorCode::UpstreamTimeout,
                    "The upstream stream stalled and was cut by the gateway.",
                )
            }
            Err(_) => {
                break StreamEnd::failed(
                    "stream_interrupted",
                    ErrorCode::UpstreamError,
                    "The upstream stream was interrupted.",
                )
            }
        }
    };

    bill(ctx, call, &mut *translator, &target.provider_model).await;
    if translator.upstream_failed() {
        ctx.error_code = Some("upstream_stream_error");
    }
    let result = match outcome {
        StreamEnd::Complete => {
            if translator.is_done() {
                super::release(state, upstream, peer).await;
            }
            respond::end_stream(session, ctx).await
        }
        StreamEnd::ClientGone => Err(Failure::ClientGone),
        StreamEnd::Cut(kind) => {
            // The client is not reading: no in-band error can reach it.
            ctx.error_code = Some(kind);
            tracing::info!(request_id = %ctx.request_id, error_code = kind, "stream cut while the client was not reading");
            Err(Failure::ClientGone)
        }
        StreamEnd::Failed(fault) => {
            ctx.error_code = Some(fault.kind);
            Metrics::global()
                .upstream_errors
                .with_label_values(&[ctx.provider.map_or("-", |p| p.as_str()), fault.kind])
                .inc();
            tracing::warn!(request_id = %ctx.request_id, error_code = fault.kind, "stream ended with an in-band error");
            let event = OpenAiErrorBody::new(fault.code, fault.message, None);
            // Ends without `[DONE]`: the SDKs raise on the error event instead of pretending
            // the answer was complete.
            match respond::stream_bytes(session, ctx, Bytes::from(data_event(&event.to_json())))
                .await
            {
                Ok(()) => respond::end_stream(session, ctx).await,
                Err(failure) => Err(failure),
            }
        }
    };
    result.map_err(AttemptError::Final)
}

/// Writes stream bytes to the client; `stream_max_duration` bounds the write too (a client
/// that stops reading is also cut by `server.write_timeout`, whichever comes first).
async fn write(
    session: &mut Session,
    ctx: &mut RequestCtx,
    bytes: Bytes,
    max_duration: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Result<(), StreamEnd> {
    tokio::select! {
        biased;
        written = respond::stream_bytes(session, ctx, bytes) => {
            written.map_err(|_| StreamEnd::ClientGone)
        }
        () = max_duration => Err(StreamEnd::Cut("stream_max_duration")),
    }
}

/// The stream reached an end of its own: `[DONE]`, or the provider's in-band error.
fn finished(translator: &dyn StreamTranslator) -> bool {
    translator.is_done() || translator.upstream_failed()
}

/// Bills what the provider reported; for a stream cut short, at least the prompt plus the
/// tokens seen (a provider may report output usage only at the end).
async fn bill(
    ctx: &mut RequestCtx,
    call: &Call<'_>,
    // `&mut` only to be `Send` across the await (translators are not `Sync`).
    translator: &mut dyn StreamTranslator,
    provider_model: &str,
) {
    let estimated = translator.estimated_completion_tokens();
    match translator.reported_usage() {
        Some(usage) if translator.is_done() => ctx.usage = usage,
        Some(mut usage) => {
            ctx.usage_estimated = usage.completion_tokens < estimated;
            usage.completion_tokens = usage.completion_tokens.max(estimated);
            ctx.usage = usage;
        }
        None => {
            ctx.usage_estimated = true;
            ctx.usage = Usage {
                prompt_tokens: PromptSource::of(call.body)
                    .count_off_worker(Vocabulary::for_model(provider_model))
                    .await,
                completion_tokens: estimated,
                cached_tokens: 0,
                cache_write_tokens: 0,
                images: 0,
            };
        }
    }
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
