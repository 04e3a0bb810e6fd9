//! The request flow in Pingora's `request_filter`: id, route, key, body, model, then the
//! stages of [`crate::flow`] (order, admission) and the provider's exchange.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use omg_shared::error::ErrorCode;
use pingora::proxy::Session;

use super::admission::{observe, take};
use super::ctx::{AnthropicEgress, RequestCtx};
use super::{batch, forward, idem, upstream, Failure, State};
use crate::auth::{authenticate, extract_key};
use crate::error::{truncate, ApiError};
use crate::flow::admit::{request_plan, Admitted};
use crate::flow::ingress::translate_anthropic;
use crate::flow::order::{capability_filter, checked_alias, sync_timeout, try_order};
use crate::providers::{Call, Ingress};
use crate::request::{route, RequestBody, Route};
use crate::snapshot::{AliasEntry, KeyEntry, RuntimeSnapshot};

/// Handles one request end to end.
pub(super) async fn handle(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Failure> {
    ctx.event_id = new_uuid_v7();
    ctx.request_id = request_id(
        session
            .get_header("x-request-id")
            .and_then(|v| v.to_str().ok()),
        ctx.event_id,
    );
    let method = session.req_header().method.as_str().to_owned();
    let path = session.req_header().uri.path().to_owned();
    let matched = route(&method, &path)?;
    ctx.route = Some(matched.clone());
    if matched.is_anthropic() {
        ctx.anthropic = Some(AnthropicEgress::default());
    }

    let snapshot = state.snapshots.load();
    let key = if batch::has_identity(session) {
        batch::admit(state, session, ctx, &matched, &snapshot).await?
    } else {
        let presented = extract_key(|name| session.get_header(name).and_then(|v| v.to_str().ok()));
        authenticate(&snapshot, presented, chrono::Utc::now().timestamp_millis())?
    };
    ctx.key = Some(key.clone());

    match &matched {
        Route::Forward(_) => {
            let query = session.req_header().uri.query();
            Ok(forward::prepare(state, ctx, &method, &path, query)?)
        }
        Route::ListModels => {
            observe(state, ctx, &snapshot, &key).await;
            list_models(session, ctx, &snapshot, &key).await
        }
        Route::GetModel(id) => {
            observe(state, ctx, &snapshot, &key).await;
            get_model(session, ctx, &snapshot, &key, id).await
        }
        Route::Chat
        | Route::Completions
        | Route::Embeddings
        | Route::ImagesGenerations
        | Route::Messages
        | Route::CountTokens => {
            let bytes = read_body_in_time(state, session).await?;
            batch::check(ctx, &bytes)?;
            let request = Request {
                snapshot: &snapshot,
                key: &key,
                matched: &matched,
                method: &method,
                path: &path,
                bytes: &bytes,
            };
            model_request(state, session, ctx, request).await
        }
    }
}

/// A model request as read: what the later steps look at.
#[derive(Clone, Copy)]
struct Request<'r> {
    snapshot: &'r RuntimeSnapshot,
    key: &'r KeyEntry,
    /// The endpoint the client called.
    matched: &'r Route,
    method: &'r str,
    path: &'r str,
    /// The body as sent.
    bytes: &'r Bytes,
}

/// Reads the body within `server.request_body_timeout`.
async fn read_body_in_time(state: &State, session: &mut Session) -> Result<Bytes, Failure> {
    let reading = read_body(session, state.settings.body_limit);
    match tokio::time::timeout(state.settings.request_body_timeout, reading).await {
        Ok(read) => read,
        Err(_) => Err(super::conn::body_timed_out(session).into()),
    }
}

/// A model request, its body read: its OpenAI form parsed and the model checked, then
/// counted (`count_tokens`) or served.
async fn model_request(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    request: Request<'_>,
) -> Result<(), Failure> {
    let Request {
        snapshot,
        key,
        matched,
        bytes,
        ..
    } = request;
    // An Anthropic client's request runs as the chat request it translates to.
    let translated = if matched.is_anthropic() {
        Some(translate_anthropic(
            snapshot,
            bytes,
            *matched == Route::CountTokens,
        )?)
    } else {
        None
    };
    let (operation, openai): (Route, &[u8]) = match &translated {
        Some(translated) => (Route::Chat, &translated.body),
        None => (matched.clone(), bytes),
    };
    let body = RequestBody::parse(openai, &operation)?;
    batch::check_stream(ctx, body.stream)?;
    ctx.stream = body.stream;
    let alias = checked_alias(snapshot, key, &body, &operation, matched)?;
    ctx.alias = Some(alias.alias.clone());
    body.check_max_tokens(alias.max_output_tokens)?;
    if *matched == Route::CountTokens {
        let counted = super::count_tokens::Counted {
            raw: bytes,
            openai,
            body: &body,
        };
        return super::count_tokens::serve(state, session, ctx, snapshot, alias, counted).await;
    }
    let parsed = Parsed {
        alias,
        operation: &operation,
        openai,
        body: &body,
    };
    serve(state, session, ctx, &request, parsed).await
}

/// The request's OpenAI form, checked against its alias.
struct Parsed<'r> {
    alias: &'r AliasEntry,
    /// The operation (chat for an Anthropic client).
    operation: &'r Route,
    /// The OpenAI form, as bytes.
    openai: &'r [u8],
    body: &'r RequestBody<'r>,
}

/// Serves a checked model request: idempotency, routing order, admission, then the
/// exchange with the deployments (bounded by the sync timeout unless streamed).
async fn serve(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    request: &Request<'_>,
    parsed: Parsed<'_>,
) -> Result<(), Failure> {
    let Parsed {
        alias,
        operation,
        openai,
        body,
    } = parsed;
    let bytes = request.bytes;
    if idem::begin(state, session, ctx, request.method, request.path, bytes).await? {
        return Ok(()); // replayed from the idempotency store
    }
    let capable = capability_filter(operation, body.stream);
    let order = try_order(alias, |d| capable(d))?;
    let beta = session
        .get_header("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let anthropic = request.matched.is_anthropic();
    let admitted = Admitted {
        alias,
        order: &order,
        route: operation,
        body,
        anthropic: anthropic.then_some(&bytes[..]),
        beta: beta.as_deref(),
    };
    if let Some(plan) = request_plan(request.snapshot, request.key, &admitted).await? {
        take(
            state,
            ctx,
            request.snapshot,
            plan,
            "request refused by a limit",
        )
        .await?;
    }
    let timeouts = state.settings.timeouts(&alias.policy.timeouts);
    let plan = upstream::Plan {
        order: &order,
        max_attempts: alias.policy.max_attempts,
        timeouts,
        health: &request.snapshot.routing.health,
    };
    let request_id = ctx.request_id.clone();
    let call = Call {
        route: operation,
        body,
        raw: openai,
        alias: &alias.alias,
        request_id: &request_id,
        created: ctx.started_at.timestamp(),
        ingress: if anthropic {
            Ingress::Anthropic {
                raw: bytes,
                beta: beta.as_deref(),
            }
        } else {
            Ingress::OpenAi
        },
        now: std::time::SystemTime::now(),
    };
    let exchange = upstream::exchange(state, session, ctx, &plan, &call);
    if body.stream {
        // Streams are bounded by the idle timeout and `stream_max_duration`.
        return exchange.await;
    }
    tokio::time::timeout(timeouts.sync, exchange)
        .await
        .unwrap_or_else(|_| Err(sync_timeout().into()))
}

/// The client's request id when it is sane (1-128 of `[A-Za-z0-9._:-]`), else the request's
/// own UUIDv7 (its usage event id).
fn request_id(client: Option<&str>, own: uuid::Uuid) -> String {
    match client {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => {
            let mut buffer = uuid::Uuid::encode_buffer();
            own.hyphenated().encode_lower(&mut buffer).to_owned()
        }
    }
}

/// A UUIDv7 from the clock and the thread-local RNG (`Uuid::now_v7` reads the OS RNG, one
/// `getrandom` syscall or two per request).
fn new_uuid_v7() -> uuid::Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random::<[u8; 10]>()).into_uuid()
}

async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, Failure> {
    let too_large = || {
        ApiError::new(
            ErrorCode::RequestTooLarge,
            format!(
                "The request body is larger than the gateway's limit of {} MiB.",
                limit / (1024 * 1024)
            ),
        )
    };
    let declared = session
        .get_header("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        // Do not drain a huge body just to keep the connection.
        session.set_keepalive(None);
        return Err(too_large().into());
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buffer.len() + chunk.len() > limit {
                    session.set_keepalive(None);
                    return Err(too_large().into());
                }
                buffer.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buffer.freeze()),
            Err(_) => return Err(Failure::ClientGone),
        }
    }
}

async fn list_models(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
) -> Result<(), Failure> {
    let created = snapshot.generated_at_ms.max(0) / 1000;
    let data: Vec<serde_json::Value> = snapshot
        .models_for(key)
        .map(|alias| alias.model_object(created))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({"object": "list", "data": data}))
        .unwrap_or_default();
    super::respond::json(session, ctx, 200, body).await
}

async fn get_model(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
    id: &str,
) -> Result<(), Failure> {
    let alias = snapshot
        .model(id)
        .ok_or_else(|| ApiError::model_not_found(id))?;
    if !key.may_use(&alias.alias) {
        return Err(ApiError::new(
            ErrorCode::ModelNotAllowed,
            format!("Your key may not use the model `{}`.", truncate(id, 128)),
        )
        .with_param("model")
        .into());
    }
    let created = snapshot.generated_at_ms.max(0) / 1000;
    let body = serde_json::to_vec(&alias.model_object(created)).unwrap_or_default();
    super::respond::json(session, ctx, 200, body).await
}

#[cfg(test)]
mod tests {
    use super::{new_uuid_v7, request_id};

    #[test]
    fn request_ids_are_honoured_only_when_sane() {
        let own = new_uuid_v7();
        assert_eq!(request_id(Some("abc-123_x.y:z"), own), "abc-123_x.y:z");
        for bad in [None, Some(""), Some("has space"), Some("new\nline")] {
            assert_eq!(request_id(bad, own), own.to_string(), "{bad:?}");
        }
        assert_eq!(request_id(Some(&"a".repeat(129)), own), own.to_string());
    }

    #[test]
    fn event_ids_are_uuid_v7_and_distinct() {
        let id = new_uuid_v7();
        assert_eq!(id.get_version_num(), 7, "{id}");
        assert_ne!(new_uuid_v7(), id);
    }
}
