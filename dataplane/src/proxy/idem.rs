//! `Idempotency-Key` on the request path: the Pingora side of [`crate::idempotency`].
//!
//! [`begin`] runs after the model checks and before limits are taken: a replay takes no
//! rate-limit or budget capacity. [`finish`] runs once the request was answered: the answer
//! is stored only if it was a complete 2xx (no in-band error, client still there).

use std::sync::Arc;
use std::time::Duration;

use omg_shared::error::ErrorCode;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::{respond, Failure, State};
use crate::error::ApiError;
use crate::idempotency::{parse_key, Begin, Fingerprint, Recorder, Request};

/// The header.
const HEADER: &str = "idempotency-key";
/// How much longer than the longest request a pending claim in Redis lives (a data plane
/// that dies holding one frees it after that).
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// When the request carries a valid `Idempotency-Key` (and idempotency is on): replays the
/// stored answer (`Ok(true)`: answered), refuses a reused key, or claims the key so the
/// answer is recorded (`Ok(false)`: go on). Without the header, does nothing.
pub(super) async fn begin(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<bool, Failure> {
    let Some(service) = &state.idempotency else {
        return Ok(false);
    };
    let mut values = session.req_header().headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    let (Some(key), None) = (parse_key(value.as_bytes()), values.next()) else {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "The `Idempotency-Key` header must be one value of 1 to 255 visible ASCII characters.",
        )
        .with_param("Idempotency-Key")
        .into());
    };
    let (Some(tenant), Some(api_key)) = (ctx.tenant_id(), ctx.key_id()) else {
        return Ok(false);
    };
    // The slot is the API key's: another key of the tenant never gets this key's answers.
    let request = Request::new(tenant, api_key, key, Fingerprint::of(method, path, body));
    // A duplicate waits as long as the first may run.
    let settings = &state.settings;
    let longest = if ctx.stream {
        settings.stream_max_duration
    } else {
        settings.sync_timeout
    };
    let begin = tokio::select! {
        begin = service.begin(&request, longest + LEASE_MARGIN, longest) => begin,
        () = client_gone(session) => return Err(Failure::ClientGone),
    };
    match begin {
        Begin::Execute(claim) => {
            ctx.idempotency = Some(Recorder::new(claim, service.max_response_bytes()));
            Ok(false)
        }
        Begin::Replay(stored) => {
            ctx.idempotent_replay = true;
            // The limits and budget headers every answer has; nothing is taken.
            super::admission::observe_for_error(state, ctx).await;
            respond::replay(session, ctx, &stored).await?;
            Ok(true)
        }
        Begin::Mismatch => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "This `Idempotency-Key` was already used with a different request; use a new key for a new request.",
        )
        .into()),
        Begin::InUse => Err(ApiError::new(
            ErrorCode::IdempotencyKeyInUse,
            "A request with this `Idempotency-Key` is still in progress; retry shortly.",
        )
        .into()),
    }
}

/// After the request: stores its answer under the claim when it ended cleanly (a complete
/// 2xx, no in-band error), else releases the key so a retry runs again.
pub(super) async fn finish(ctx: &mut RequestCtx, handled: bool) {
    if let Some(recorder) = ctx.idempotency.take() {
        let clean = handled && (200..300).contains(&ctx.status) && ctx.error_code.is_none();
        recorder.finish(clean).await;
    }
}

/// Resolves when the client disconnects (stray bytes stop the watch, as in
/// `respond::sleep_or_client_gone`).
async fn client_gone(session: &mut Session) {
    if session
        .as_downstream_mut()
        .read_body_or_idle(true)
        .await
        .is_ok()
    {
        std::future::pending::<()>().await;
    }
}
