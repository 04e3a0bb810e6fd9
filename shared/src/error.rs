//! The OpenAI error vocabulary: one table from error code to HTTP status and OpenAI `type`,
//! and the `{"error":{"message","type","param","code"}}` envelope.
//!
//! The official SDKs pick their exception class from the HTTP status alone and expose
//! `code`, `param` and `type` from the body, so all four keys are always present (as `null`
//! when unset). Every rejection on `/v1` goes through [`ErrorCode`].

use serde::{Deserialize, Serialize};

/// Every error the gateway answers on `/v1`, with its fixed status and OpenAI `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Missing, malformed, unknown, disabled or expired API key.
    InvalidApiKey,
    /// The key's tenant is suspended.
    TenantSuspended,
    /// The model exists but the key or tenant may not use it.
    ModelNotAllowed,
    /// No enabled alias with that name.
    ModelNotFound,
    /// No such endpoint.
    UnknownUrl,
    /// The endpoint exists with another method.
    MethodNotAllowed,
    /// The body is not valid JSON (or not an object).
    InvalidJson,
    /// A required parameter is absent.
    MissingParameter,
    /// A parameter has the wrong type or value.
    InvalidParameter,
    /// The alias cannot serve this operation (e.g. chat on an embedding model).
    OperationUnsupported,
    /// The alias's providers cannot serve this image operation (the seeds' code, so clients
    /// can fall back to another model).
    ImageOperationUnsupported,
    /// The body is larger than `server.body_limit_mb`.
    RequestTooLarge,
    /// A requests-per-minute or parallel-requests limit was hit.
    RequestRateLimited,
    /// A tokens-per-minute limit was hit.
    TokenRateLimited,
    /// The USD budget is spent (or reserved) for the current window.
    BudgetExceeded,
    /// The key or tenant has as many requests in flight as its parallel cap allows.
    ParallelLimited,
    /// The shared limits store is unreachable and `rate_limits.on_redis_error` is `reject`.
    LimitsUnavailable,
    /// The upstream failed or answered garbage.
    UpstreamError,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// No deployment of the alias can take the request now.
    NoHealthyUpstream,
    /// The gateway is draining for shutdown.
    ShuttingDown,
    /// A bug in the gateway. Never used for client mistakes.
    InternalError,
    /// The `Idempotency-Key` was already used with another request (route or body).
    IdempotencyKeyReused,
    /// A request with this `Idempotency-Key` is still in progress (waited for in vain).
    IdempotencyKeyInUse,
    /// The provider's safety filters refused the prompt (400 `content_filter`).
    ContentFilter,
    /// The body's JSON is nested too deep or has too many keys, array items or values for
    /// the gateway's parsing bounds.
    RequestTooComplex,
    /// The client did not send its request body within `server.request_body_timeout`.
    RequestTimeout,
    /// The internal channel's replay guard (single-use identity nonces in Redis) cannot be
    /// asked: a request carrying a signed identity is refused rather than accepted unguarded.
    ReplayGuardUnavailable,
}

impl ErrorCode {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidApiKey => 401,
            ErrorCode::TenantSuspended | ErrorCode::ModelNotAllowed => 403,
            ErrorCode::ModelNotFound | ErrorCode::UnknownUrl => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::InvalidJson
            | ErrorCode::MissingParameter
            | ErrorCode::InvalidParameter
            | ErrorCode::OperationUnsupported
            | ErrorCode::ImageOperationUnsupported
            | ErrorCode::ContentFilter
            | ErrorCode::RequestTooComplex => 400,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::RequestRateLimited
            | ErrorCode::TokenRateLimited
            | ErrorCode::ParallelLimited
            | ErrorCode::BudgetExceeded => 429,
            ErrorCode::UpstreamError => 502,
            ErrorCode::NoHealthyUpstream
            | ErrorCode::ShuttingDown
            | ErrorCode::LimitsUnavailable
            | ErrorCode::ReplayGuardUnavailable => 503,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::InternalError => 500,
            ErrorCode::IdempotencyKeyReused => 422,
            ErrorCode::IdempotencyKeyInUse => 409,
            ErrorCode::RequestTimeout => 408,
        }
    }

    /// The OpenAI `type` field.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidApiKey
            | ErrorCode::ModelNotFound
            | ErrorCode::UnknownUrl
            | ErrorCode::MethodNotAllowed
            | ErrorCode::InvalidJson
            | ErrorCode::MissingParameter
            | ErrorCode::InvalidParameter
            | ErrorCode::OperationUnsupported
            | ErrorCode::ImageOperationUnsupported
            | ErrorCode::RequestTooLarge
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::IdempotencyKeyInUse
            | ErrorCode::ContentFilter
            | ErrorCode::RequestTooComplex
            | ErrorCode::RequestTimeout => "invalid_request_error",
            ErrorCode::TenantSuspended | ErrorCode::ModelNotAllowed => "permission_error",
            ErrorCode::RequestRateLimited | ErrorCode::ParallelLimited => "requests",
            ErrorCode::TokenRateLimited => "tokens",
            ErrorCode::BudgetExceeded => "insufficient_quota",
            ErrorCode::UpstreamError
            | ErrorCode::UpstreamTimeout
            | ErrorCode::NoHealthyUpstream
            | ErrorCode::ShuttingDown
            | ErrorCode::LimitsUnavailable
            | ErrorCode::ReplayGuardUnavailable
            | ErrorCode::InternalError => "server_error",
        }
    }

    /// The OpenAI `code` field.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::TenantSuspended => "tenant_suspended",
            ErrorCode::ModelNotAllowed => "model_not_allowed",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::UnknownUrl => "unknown_url",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::MissingParameter => "missing_required_parameter",
            ErrorCode::InvalidParameter => "invalid_value",
            ErrorCode::OperationUnsupported => "operation_unsupported",
            ErrorCode::ImageOperationUnsupported => "image_operation_unsupported",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::RequestRateLimited | ErrorCode::TokenRateLimited => "rate_limit_exceeded",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::ParallelLimited => "parallel_limit_exceeded",
            ErrorCode::LimitsUnavailable => "limits_unavailable",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::NoHealthyUpstream => "no_healthy_upstream",
            ErrorCode::ShuttingDown => "server_shutting_down",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            ErrorCode::ContentFilter => "content_filter",
            ErrorCode::RequestTooComplex => "request_too_complex",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::ReplayGuardUnavailable => "replay_guard_unavailable",
        }
    }

    /// Whether a client retry can succeed. `false` becomes `x-should-retry: false`, which
    /// both official SDKs obey before their status-based retry rules.
    pub fn should_retry(self) -> bool {
        matches!(
            self,
            ErrorCode::RequestRateLimited
                | ErrorCode::TokenRateLimited
                | ErrorCode::ParallelLimited
                | ErrorCode::LimitsUnavailable
                | ErrorCode::ReplayGuardUnavailable
                | ErrorCode::UpstreamError
                | ErrorCode::UpstreamTimeout
                | ErrorCode::NoHealthyUpstream
                | ErrorCode::ShuttingDown
                | ErrorCode::IdempotencyKeyInUse
        )
    }

    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::InvalidApiKey,
        ErrorCode::TenantSuspended,
        ErrorCode::ModelNotAllowed,
        ErrorCode::ModelNotFound,
        ErrorCode::UnknownUrl,
        ErrorCode::MethodNotAllowed,
        ErrorCode::InvalidJson,
        ErrorCode::MissingParameter,
        ErrorCode::InvalidParameter,
        ErrorCode::OperationUnsupported,
        ErrorCode::ImageOperationUnsupported,
        ErrorCode::RequestTooLarge,
        ErrorCode::RequestRateLimited,
        ErrorCode::TokenRateLimited,
        ErrorCode::BudgetExceeded,
        ErrorCode::ParallelLimited,
        ErrorCode::LimitsUnavailable,
        ErrorCode::UpstreamError,
        ErrorCode::UpstreamTimeout,
        ErrorCode::NoHealthyUpstream,
        ErrorCode::ShuttingDown,
        ErrorCode::InternalError,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInUse,
        ErrorCode::ContentFilter,
        ErrorCode::RequestTooComplex,
        ErrorCode::RequestTimeout,
        ErrorCode::ReplayGuardUnavailable,
    ];
}

/// The inner object of the OpenAI error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiError {
    /// Human-readable, says what to do. Never contains secrets or raw upstream payloads.
    pub message: String,
    /// OpenAI `type`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// The offending request parameter, if any.
    pub param: Option<String>,
    /// Machine-readable code.
    pub code: Option<String>,
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiErrorBody {
    /// The error.
    pub error: OpenAiError,
}

impl OpenAiErrorBody {
    /// An error body for a code, a message and an optional parameter name.
    pub fn new(code: ErrorCode, message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            error: OpenAiError {
                message: message.into(),
                error_type: code.error_type().to_owned(),
                param: param.map(str::to_owned),
                code: Some(code.code().to_owned()),
            },
        }
    }

    /// Serialized JSON bytes. Serializing these plain strings cannot fail; an empty body is
    /// returned in the impossible case rather than panicking.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_is_consistent() {
        let mut codes = HashSet::new();
        for code in ErrorCode::ALL {
            let status = code.status();
            assert!((400..600).contains(&status), "{code:?}");
            // Client mistakes are 4xx, and only InternalError is a 500.
            assert_eq!(status == 500, code == ErrorCode::InternalError);
            codes.insert(code.code());
        }
        // Rate limits share a code on purpose; everything else is distinct.
        assert_eq!(codes.len(), ErrorCode::ALL.len() - 1);
    }

    #[test]
    fn envelope_has_all_four_keys() {
        let body = OpenAiErrorBody::new(
            ErrorCode::MissingParameter,
            "you must provide `model`",
            Some("model"),
        );
        let value: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap_or_default();
        assert_eq!(value["error"]["type"], "invalid_request_error");
        assert_eq!(value["error"]["param"], "model");
        assert_eq!(value["error"]["code"], "missing_required_parameter");
        let none = OpenAiErrorBody::new(ErrorCode::InvalidApiKey, "bad key", None);
        let value: serde_json::Value = serde_json::from_slice(&none.to_json()).unwrap_or_default();
        assert!(value["error"]
            .as_object()
            .is_some_and(|o| o.contains_key("param")));
        assert!(value["error"]["param"].is_null());
    }
}
