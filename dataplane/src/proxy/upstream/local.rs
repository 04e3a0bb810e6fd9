//! Playing out an answer made in process (the built-in `mock`, see
//! [`LocalAnswer`](crate::providers::mock::LocalAnswer)): its delays, then the same response
//! path as real upstreams (headers, streaming, metering).

use bytes::Bytes;
use pingora::proxy::Session;

use crate::flow::meter::Meter;
use crate::flow::outcome::{AttemptError, Served};
use crate::providers::mock::{Local, LocalStream};
use crate::providers::Usage;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::{respond, Failure};

/// Sends `answer` to the client.
pub(super) async fn serve(
    session: &mut Session,
    ctx: &mut RequestCtx,
    answer: Local,
) -> Result<Served, AttemptError> {
    match answer {
        Local::Json { delay, body, usage } => {
            if ctx.detached() {
                // A batch line's exchange goes on without its sender.
                tokio::time::sleep(delay).await;
            } else {
                respond::sleep_or_client_gone(session, delay).await?;
            }
            ctx.meter = Meter::reported(usage);
            respond::json(session, ctx, 200, body).await?;
        }
        Local::Stream(stream) => self::stream(session, ctx, stream).await?,
    }
    Ok(Served::Answered)
}

/// A stream: until the last chunk is out, billed the prompt plus what was delivered.
async fn stream(
    session: &mut Session,
    ctx: &mut RequestCtx,
    stream: LocalStream,
) -> Result<(), Failure> {
    ctx.meter = Meter::partial(Usage {
        prompt_tokens: stream.usage.prompt_tokens,
        ..Usage::default()
    });
    respond::start_stream(session, ctx).await?;
    if let Some(opening) = stream.opening {
        respond::stream_bytes(session, ctx, Bytes::from(opening)).await?;
    }
    for (delay, chunk) in stream.chunks {
        respond::sleep_or_client_gone(session, delay).await?;
        respond::stream_bytes(session, ctx, Bytes::from(chunk)).await?;
        ctx.mark_first_token();
        ctx.meter.delivered(stream.tokens_per_chunk);
    }
    ctx.meter = Meter::reported(stream.usage);
    respond::stream_bytes(session, ctx, Bytes::from(stream.closing)).await?;
    respond::end_stream(session, ctx).await
}
