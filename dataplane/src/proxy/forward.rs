//! `/v1/files*` and `/v1/batches*` in cluster mode: the data plane authenticates the key, then
//! lets Pingora proxy the request — bodies streamed both ways, never buffered — to the
//! control plane's internal listener (`cluster.internal_url`), replacing the client's
//! credentials with a signed identity (`x-omg-identity`, see `omg_shared::cluster`): bound to
//! method, path and raw query string, with a nonce the control plane accepts once.

use omg_shared::cluster::{new_nonce, sign_identity, Audience, Identity, IDENTITY_HEADER};
use omg_shared::config::ClusterConfig;
use omg_shared::endpoint::Endpoint;
use omg_shared::error::ErrorCode;
use omg_shared::secret::Secret;
use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;

use super::ctx::RequestCtx;
use super::{Settings, State};
use crate::error::ApiError;

/// Headers of the client that never reach the control plane: its credentials.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "api-key", "x-api-key"];

/// Where forwarded requests go and the secret that signs them.
#[derive(Debug)]
pub struct ForwardTarget {
    endpoint: Endpoint,
    secret: Secret,
}

impl ForwardTarget {
    /// From `cluster.internal_url` and `cluster.internal_secret` (validated together at
    /// load); `None` when the channel is not configured.
    pub fn from_config(cluster: &ClusterConfig) -> Result<Option<Self>, String> {
        let (Some(url), Some(secret)) = (&cluster.internal_url, &cluster.internal_secret) else {
            return Ok(None);
        };
        let endpoint = Endpoint::parse(url).map_err(|e| format!("cluster.internal_url: {e}"))?;
        Ok(Some(Self {
            endpoint,
            secret: secret.clone(),
        }))
    }
}

/// Signs the authenticated caller into `ctx.forward`, bound to this request's method, path
/// and raw query (forwarded unchanged by [`rewrite`]) with a fresh single-use nonce, or
/// refuses when the channel is off.
pub(super) fn prepare(
    state: &State,
    ctx: &mut RequestCtx,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Result<(), ApiError> {
    let Some(target) = &state.forward else {
        return Err(ApiError::new(
            ErrorCode::UnknownUrl,
            format!(
                "{path} is not served by this gateway: files and batches need cluster mode with \
                 `cluster.internal_url` set."
            ),
        ));
    };
    let (Some(tenant_id), Some(key_id)) = (ctx.tenant_id(), ctx.key_id()) else {
        return Err(ApiError::new(
            ErrorCode::InternalError,
            "the request was not authenticated",
        ));
    };
    let Some(nonce) = new_nonce() else {
        return Err(ApiError::new(
            ErrorCode::InternalError,
            "the system random source failed; the request was not forwarded",
        ));
    };
    let identity = Identity {
        tenant_id,
        key_id,
        user_id: ctx.user_id(),
        request_id: ctx.request_id.clone(),
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.unwrap_or_default().to_owned(),
        nonce,
        issued_at: chrono::Utc::now().timestamp(),
        audience: Audience::Controlplane,
        batch_id: None,
        body_sha256: None,
    };
    ctx.forward = Some(sign_identity(target.secret.expose().as_bytes(), &identity));
    Ok(())
}

/// Pingora's own limit on one read from the client (its default).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Bounds the next read of a forwarded body by what is left of `server.upload_body_timeout`
/// (counted from the request's arrival), so a client trickling its upload cannot hold the
/// connection longer; `Err` once it has run out (answered 408 by `fail_to_proxy`).
pub(super) fn bound_body_reads(
    session: &mut Session,
    ctx: &RequestCtx,
    settings: &Settings,
) -> pingora::Result<()> {
    let left = settings
        .upload_body_timeout
        .saturating_sub(ctx.started.elapsed());
    if left.is_zero() {
        return Err(upload_timeout());
    }
    session.set_read_timeout(Some(left.min(READ_TIMEOUT)));
    Ok(())
}

fn upload_timeout() -> Box<pingora::Error> {
    pingora::Error::explain(
        pingora::ErrorType::ReadTimedout,
        "the upload's body outlived server.upload_body_timeout",
    )
    .into_down()
}

/// A forwarded request failed because its body stopped arriving in time: the deadline above
/// or one read outlasting what was left of it.
pub(super) fn is_upload_timeout(error: &pingora::Error) -> bool {
    matches!(error.esource(), pingora::ErrorSource::Downstream)
        && matches!(error.etype(), pingora::ErrorType::ReadTimedout)
}

/// The control plane's internal listener as a Pingora peer.
pub(super) async fn peer(state: &State) -> pingora::Result<Box<HttpPeer>> {
    let Some(target) = &state.forward else {
        return Err(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "no forward target",
        ));
    };
    let endpoint = &target.endpoint;
    let addr = state
        .resolver
        .resolve(&endpoint.host, endpoint.port)
        .await
        .map_err(|message| pingora::Error::explain(pingora::ErrorType::ConnectNoRoute, message))?;
    let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
    let settings = &state.settings;
    peer.options.connection_timeout = Some(settings.connect_timeout);
    peer.options.total_connection_timeout = Some(settings.connect_timeout * 2);
    peer.options.read_timeout = Some(settings.sync_timeout);
    peer.options.write_timeout = Some(settings.sync_timeout);
    Ok(Box::new(peer))
}

/// Rewrites the request for the control plane: credentials out, identity and request id
/// in, the internal URL's path prefix in front.
pub(super) fn rewrite(
    state: &State,
    ctx: &RequestCtx,
    request: &mut RequestHeader,
) -> pingora::Result<()> {
    let (Some(target), Some(identity)) = (&state.forward, &ctx.forward) else {
        return Ok(());
    };
    for name in CREDENTIAL_HEADERS {
        request.remove_header(name);
    }
    request.insert_header(IDENTITY_HEADER, identity.as_str())?;
    request.insert_header("x-request-id", ctx.request_id.as_str())?;
    if !target.endpoint.path.is_empty() {
        let original = request
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let uri = format!("{}{original}", target.endpoint.path)
            .parse::<http::Uri>()
            .map_err(|e| {
                pingora::Error::explain(pingora::ErrorType::InternalError, e.to_string())
            })?;
        request.set_uri(uri);
    }
    Ok(())
}
