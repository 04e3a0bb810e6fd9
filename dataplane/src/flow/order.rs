//! Which deployments of an alias may serve a request, and in what order: the capability
//! check before anything is taken, and the routing order (with its 503 when every
//! deployment rests).

use std::sync::Arc;

use omg_shared::error::ErrorCode;
use omg_shared::provider::Operation;

use crate::error::ApiError;
use crate::request::{RequestBody, Route};
use crate::routing::{self, Order};
use crate::snapshot::{AliasEntry, DeploymentEntry, KeyEntry, RuntimeSnapshot};

/// Which deployments can serve the route (and streaming, when asked) by their provider's
/// capabilities.
pub fn capability_filter(route: &Route, stream: bool) -> impl Fn(&DeploymentEntry) -> bool {
    let operation = match route {
        Route::Completions => Operation::Completions,
        Route::Embeddings => Operation::Embeddings,
        Route::ImagesGenerations => Operation::ImagesGenerate,
        _ => Operation::Chat,
    };
    move |d: &DeploymentEntry| {
        let provider = d.deployment.provider;
        provider.supports(operation) && (!stream || provider.supports(Operation::Stream))
    }
}

/// 400 `operation_unsupported`: no deployment of the alias has a provider that can serve
/// the request; nothing was sent upstream.
pub fn unsupported(alias: &AliasEntry, route: &Route, stream: bool) -> ApiError {
    let mut providers: Vec<&str> = alias
        .deployments
        .iter()
        .map(|d| d.deployment.provider.as_str())
        .collect();
    providers.dedup();
    let code = match route {
        Route::ImagesGenerations => ErrorCode::ImageOperationUnsupported,
        _ => ErrorCode::OperationUnsupported,
    };
    ApiError::new(
        code,
        format!(
            "The model `{}` is served by {} which cannot serve {}{}; use a model whose provider can (see GET /v1/models).",
            alias.alias,
            providers.join(", "),
            route.endpoint_name(),
            if stream { " with `stream: true`" } else { "" },
        ),
    )
    .with_param("model")
}

/// The alias's deployments in the order to try them, only those `keep` accepts (possibly
/// none: the exchange then answers 503); an error when every deployment is resting.
pub fn try_order(
    alias: &AliasEntry,
    keep: impl Fn(&DeploymentEntry) -> bool,
) -> Result<Vec<Arc<DeploymentEntry>>, ApiError> {
    match routing::order(
        &alias.deployments,
        alias.policy.strategy,
        routing::health::now_ms(),
        |total| rand::random::<u64>() % total.max(1),
    ) {
        Order::Try(mut order) => {
            order.retain(|d| keep(d));
            Ok(order)
        }
        Order::AllResting { retry_in_ms } => Err(all_resting(&alias.alias, retry_in_ms)),
    }
}

/// Every deployment of the alias is resting after failures: 503 with the time until one
/// may take a probe.
fn all_resting(alias: &str, retry_in_ms: Option<u64>) -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::NoHealthyUpstream,
        format!(
            "Every deployment of `{alias}` is failing and resting; retry later. \
             Operators: see /deployments on the data plane's admin listener."
        ),
    );
    error.retry_after = Some(retry_in_ms.map_or(1, |ms| ms.div_ceil(1000).max(1)));
    error
}

/// Every candidate went to rest between routing and the attempts: 503, retry in a second.
pub fn none_left() -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::NoHealthyUpstream,
        "Every deployment of the model is failing and resting; retry later.",
    );
    error.retry_after = Some(1);
    error
}

/// 504: a non-streamed request outlived its sync timeout.
pub fn sync_timeout() -> ApiError {
    ApiError::new(
        ErrorCode::UpstreamTimeout,
        "The request did not complete within the gateway's sync timeout \
         (`server.sync_timeout`, or the alias's `routing.aliases.<alias>.timeouts.sync`).",
    )
}

/// The alias a model request names, once the key may use it, its type serves the
/// operation and one of its deployments' providers can (`matched` names the endpoint the
/// client called, for the messages).
pub fn checked_alias<'s>(
    snapshot: &'s RuntimeSnapshot,
    key: &KeyEntry,
    body: &RequestBody<'_>,
    operation: &Route,
    matched: &Route,
) -> Result<&'s Arc<AliasEntry>, ApiError> {
    let alias = snapshot
        .model(&body.model)
        .ok_or_else(|| ApiError::model_not_found(&body.model))?;
    if !key.may_use(&alias.alias) {
        return Err(ApiError::new(
            ErrorCode::ModelNotAllowed,
            format!(
                "Your key may not use the model `{}`. Ask your tenant admin to allow it.",
                alias.alias
            ),
        )
        .with_param("model"));
    }
    if operation.model_type() != Some(alias.model_type) {
        return Err(ApiError::new(
            ErrorCode::OperationUnsupported,
            format!(
                "The model `{}` cannot serve {}; pick a model of the right type.",
                alias.alias,
                matched.endpoint_name()
            ),
        )
        .with_param("model"));
    }
    let capable = capability_filter(operation, body.stream);
    if !alias.deployments.iter().any(|d| capable(d)) {
        return Err(unsupported(alias, operation, body.stream));
    }
    Ok(alias)
}
