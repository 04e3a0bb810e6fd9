//! Batch lines on the `/v1` listener: the Pingora side of [`crate::auth::batch`]. A request
//! carrying the control plane's signed identity (`x-omg-identity`) is authenticated by it
//! instead of a key; the identity is kept in the ctx (its batch id goes on the usage record,
//! its body digest is compared once the body is read, and it makes the exchange finish even
//! if the sender leaves: [`RequestCtx::detached`]).

use std::sync::Arc;

use omg_shared::cluster::{Audience, RequestLine, IDENTITY_HEADER};
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::{Failure, State};
use crate::auth::batch::{check_body, Arrival, BatchLines, Refusal};
use crate::auth::extract_key;
use crate::request::Route;
use crate::snapshot::{KeyEntry, RuntimeSnapshot};

/// Whether the request carries the identity header (then [`admit`] authenticates it).
pub(super) fn has_identity(session: &Session) -> bool {
    session.get_header(IDENTITY_HEADER).is_some()
}

/// Authenticates a batch line: the key its verified identity names, the identity kept in
/// `ctx.batch_line`.
pub(super) async fn admit(
    state: &State,
    session: &Session,
    ctx: &mut RequestCtx,
    matched: &Route,
    snapshot: &RuntimeSnapshot,
) -> Result<Arc<KeyEntry>, Failure> {
    let request = session.req_header();
    let arrival = Arrival {
        header: session
            .get_header(IDENTITY_HEADER)
            .and_then(|v| v.to_str().ok()),
        request: RequestLine {
            method: request.method.as_str(),
            path: request.uri.path(),
            query: request.uri.query().unwrap_or_default(),
            audience: Audience::Dataplane,
        },
        with_credentials: extract_key(|name| {
            session.get_header(name).and_then(|v| v.to_str().ok())
        })
        .is_some(),
        model_route: matches!(
            matched,
            Route::Chat
                | Route::Completions
                | Route::Embeddings
                | Route::ImagesGenerations
                | Route::Messages
        ),
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    match BatchLines::admit(state.batch_lines.as_ref(), arrival, snapshot, now_ms).await {
        Ok((key, identity)) => {
            tracing::debug!(
                request_id = %ctx.request_id,
                batch_id = identity.batch_id.as_deref().unwrap_or("-"),
                key_prefix = %key.key.prefix,
                "batch line accepted"
            );
            ctx.batch_line = Some(identity);
            Ok(key)
        }
        Err(refusal) => Err(refusal.refused(&ctx.request_id).into()),
    }
}

/// A batch line's body, once read: the one its identity was signed for.
pub(super) fn check(ctx: &RequestCtx, body: &[u8]) -> Result<(), Failure> {
    match &ctx.batch_line {
        Some(identity) => {
            check_body(identity, body).map_err(|refusal| refusal.refused(&ctx.request_id).into())
        }
        None => Ok(()),
    }
}

/// A batch line is never streamed.
pub(super) fn check_stream(ctx: &RequestCtx, stream: bool) -> Result<(), Failure> {
    if ctx.batch_line.is_some() && stream {
        return Err(Refusal::Stream.refused(&ctx.request_id).into());
    }
    Ok(())
}
