//! Relaying a streamed answer: the adapter's translator turns the provider's events into
//! OpenAI chunks as they arrive; the client's response starts with the upstream's first
//! bytes, so a stream that dies before them can still fail over. The relay returns how the
//! stream ended ([`Served`]); metering it is [`Meter::stream`]'s.

use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use omg_shared::snapshot::Deployment;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use tokio::time::Sleep;

use super::{is_timeout, timeout};
use crate::error::ApiError;
use crate::flow::meter::{Meter, StreamSeen};
use crate::flow::outcome::{AttemptError, Fault, Served, StreamBreak};
use crate::metrics::Metrics;
use crate::providers::{Call, StreamFault, StreamTranslator};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::{respond, Failure, State, Timeouts};
use crate::sse::data_event;

/// Stream bytes gathered from what the upstream already delivered before one client write.
const COALESCE_BYTES: usize = 64 * 1024;

/// How the relay loop stopped.
enum StreamEnd {
    /// The upstream's stream ended (complete, or with the provider's own error event).
    Ended,
    /// The client left.
    ClientGone,
    /// Cut while a write to the client was blocked (`stream_max_duration`).
    Cut,
    /// Broken: the client gets an in-band error.
    Broken(StreamBreak),
}

/// One streamed attempt's fixed parts.
pub(super) struct Relay<'a> {
    pub call: &'a Call<'a>,
    pub target: &'a Deployment,
    pub timeouts: Timeouts,
    pub peer: &'a HttpPeer,
}

/// The upstream's body, and the first read already made.
struct Upstream {
    session: HttpSession,
    carried: Option<pingora::Result<Option<Bytes>>>,
}

impl Relay<'_> {
    /// Relays the stream to the client and meters it; returns how it ended.
    pub(super) async fn run(
        &self,
        state: &Arc<State>,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut upstream: HttpSession,
        mut translator: Box<dyn StreamTranslator>,
    ) -> Result<Served, AttemptError> {
        upstream.set_read_timeout(Some(self.timeouts.stream_idle));
        let max_duration = tokio::time::sleep(state.settings.stream_max_duration);
        tokio::pin!(max_duration);
        // Until the first bytes, a reset, an empty stream or a stall can still fail over.
        let first = match upstream.read_response_body().await {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Err(error) if is_timeout(&error) => return Err(timeout(self.target)),
            Ok(None) | Err(_) => return Err(self.empty()),
        };
        respond::start_stream(session, ctx).await?;
        let mut upstream = Upstream {
            session: upstream,
            carried: Some(first),
        };
        let end = pump(session, ctx, &mut upstream, &mut *translator, max_duration).await;
        let seen = StreamSeen {
            done: translator.is_done(),
            reported: translator.reported_usage(),
            estimated_completion_tokens: translator.estimated_completion_tokens(),
        };
        ctx.meter = Meter::stream(seen, self.call.body, &self.target.provider_model).await;
        if translator.upstream_failed() {
            ctx.error_code = Some(StreamBreak::UpstreamError.label());
        }
        match end {
            StreamEnd::Ended if translator.is_done() => {
                super::release(state, upstream.session, self.peer).await;
                self.complete(session, ctx, translator.upstream_failed())
                    .await
            }
            StreamEnd::Ended => {
                self.complete(session, ctx, translator.upstream_failed())
                    .await
            }
            StreamEnd::ClientGone => Err(Failure::ClientGone.into()),
            StreamEnd::Cut => {
                // The client is not reading: no in-band error can reach it.
                let kind = StreamBreak::MaxDuration.label();
                ctx.error_code = Some(kind);
                tracing::info!(request_id = %ctx.request_id, error_code = kind, "stream cut while the client was not reading");
                Err(Failure::ClientGone.into())
            }
            StreamEnd::Broken(broken) => self.broken(session, ctx, broken).await,
        }
    }

    /// 502 before the first byte: the next deployment may be tried.
    fn empty(&self) -> AttemptError {
        AttemptError::retry(
            Fault::EmptyStream,
            ApiError::new(
                ErrorCode::UpstreamError,
                format!(
                    "The upstream for `{}` ended its stream before sending anything.",
                    self.target.id
                ),
            ),
        )
    }

    /// The upstream's stream reached its end: the client's ends too.
    async fn complete(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        upstream_failed: bool,
    ) -> Result<Served, AttemptError> {
        respond::end_stream(session, ctx).await?;
        Ok(if upstream_failed {
            Served::Broken(StreamBreak::UpstreamError)
        } else {
            Served::Answered
        })
    }

    /// Ends the client's stream with the in-band error of `broken`.
    async fn broken(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        broken: StreamBreak,
    ) -> Result<Served, AttemptError> {
        let kind = broken.label();
        ctx.error_code = Some(kind);
        Metrics::global()
            .upstream_errors
            .with_label_values(&[self.target.provider.as_str(), kind])
            .inc();
        tracing::warn!(request_id = %ctx.request_id, error_code = kind, "stream ended with an in-band error");
        if let Some(fault) = broken.in_band() {
            let event = OpenAiErrorBody::new(fault.code, fault.message, None);
            // Ends without `[DONE]`: the SDKs raise on the error event instead of pretending
            // the answer was complete.
            let event = Bytes::from(data_event(&event.to_json()));
            respond::stream_bytes(session, ctx, event).await?;
        }
        respond::end_stream(session, ctx).await?;
        Ok(Served::Broken(broken))
    }
}

/// Moves the stream from the upstream to the client until it ends, the client leaves, or
/// it breaks.
async fn pump(
    session: &mut Session,
    ctx: &mut RequestCtx,
    upstream: &mut Upstream,
    translator: &mut dyn StreamTranslator,
    mut max_duration: Pin<&mut Sleep>,
) -> StreamEnd {
    let mut watch_client = true;
    loop {
        let read = match upstream.carried.take() {
            Some(read) => read,
            None => tokio::select! {
                biased;
                read = upstream.session.read_response_body() => read,
                idle = session.as_downstream_mut().read_body_or_idle(true), if watch_client => {
                    if idle.is_err() {
                        return StreamEnd::ClientGone;
                    }
                    watch_client = false;
                    continue;
                }
                () = &mut max_duration => return StreamEnd::Broken(StreamBreak::MaxDuration),
            },
        };
        let mut out = BytesMut::new();
        let (fault, eof) = match read {
            Ok(Some(bytes)) => {
                let fault = gather(upstream, translator, &bytes, &mut out).await;
                if translator.saw_content() {
                    ctx.mark_first_token();
                }
                (fault.map(StreamBreak::Unreadable), false)
            }
            // Streams without a terminal event (Gemini) end here.
            Ok(None) => {
                translator.finish(&mut out);
                (None, true)
            }
            Err(error) if is_timeout(&error) => (Some(StreamBreak::IdleTimeout), false),
            Err(_) => (Some(StreamBreak::Interrupted), false),
        };
        if !out.is_empty() {
            if let Err(end) = write(session, ctx, out.freeze(), max_duration.as_mut()).await {
                return end;
            }
        }
        match (fault, eof) {
            (Some(broken), _) => return StreamEnd::Broken(broken),
            (None, true) if finished(translator) => return StreamEnd::Ended,
            (None, true) => return StreamEnd::Broken(StreamBreak::Incomplete),
            (None, false) => {}
        }
    }
}

/// Feeds `bytes` to the translator, then every chunk the upstream already delivered (never
/// waiting), so they leave in one client write: Pingora returns the upstream's HTTP chunks
/// one at a time even when a single read brought many. A read that is not a chunk is
/// carried to the next turn of the loop.
async fn gather(
    upstream: &mut Upstream,
    translator: &mut dyn StreamTranslator,
    bytes: &[u8],
    out: &mut BytesMut,
) -> Option<StreamFault> {
    let mut fault = translator.push(bytes, out).err();
    while fault.is_none() && out.len() < COALESCE_BYTES && !finished(translator) {
        match ready_now(upstream.session.read_response_body()).await {
            Some(Ok(Some(bytes))) => fault = translator.push(&bytes, out).err(),
            Some(other) => {
                upstream.carried = Some(other);
                break;
            }
            None => break,
        }
    }
    fault
}

/// Writes stream bytes to the client; `stream_max_duration` bounds the write too (a client
/// that stops reading is also cut by `server.write_timeout`, whichever comes first).
async fn write(
    session: &mut Session,
    ctx: &mut RequestCtx,
    bytes: Bytes,
    max_duration: Pin<&mut Sleep>,
) -> Result<(), StreamEnd> {
    tokio::select! {
        biased;
        written = respond::stream_bytes(session, ctx, bytes) => {
            written.map_err(|_| StreamEnd::ClientGone)
        }
        () = max_duration => Err(StreamEnd::Cut),
    }
}

/// The stream reached an end of its own: `[DONE]`, or the provider's in-band error.
fn finished(translator: &dyn StreamTranslator) -> bool {
    translator.is_done() || translator.upstream_failed()
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
