//! The one error shape of `/admin` and `/user`: `{"error":{"code","message"[,"field"]}}`.
//! Internal failures are logged with the request id and answered with a generic message: no
//! SQL, stack traces or secrets reach a client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbError;
use crate::service;

/// An API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

/// The error body of every `/admin` and `/user` failure.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `invalid_request`, `unauthenticated`, `forbidden`, `not_found`, `conflict`, …
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// The offending field, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming the offending field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("`{field}`: {}", message.into());
        Self {
            field: Some(field),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    /// 400 without a single field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 (only for routes that are not tenant-scoped; tenant scope misses are 404).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429 with the given message.
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500 after logging the cause (never sent).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; the control plane log has the details (search for this request's x-request-id)",
        )
    }

    /// Maps a data-layer error; `what` names the resource for 404s.
    pub fn from_db(error: DbError, what: &str) -> Self {
        service::Error::from_db(error, what).into()
    }

    /// 403 `password_change_required`: a temporary password must be replaced first.
    fn password_change_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "password_change_required",
            "this password was set by an administrator and is temporary: choose a new one \
             with POST /admin/auth/password, then log in with it",
        )
    }
}

/// The one mapping of service failures to HTTP answers.
impl From<service::Error> for ApiError {
    fn from(error: service::Error) -> Self {
        use service::Error as E;
        match error {
            E::Invalid {
                field: Some(field),
                message,
            } => Self::invalid(field, message),
            E::Invalid {
                field: None,
                message,
            } => Self::bad_request(message),
            E::Unauthenticated(message) => Self::unauthenticated(message),
            E::Forbidden(message) => Self::forbidden(message),
            E::PasswordChangeRequired => Self::password_change_required(),
            E::NotFound(what) => Self::not_found(&what),
            E::Conflict(message) => Self::conflict(message),
            E::TooMany(message) => Self::too_many(message),
            E::Unavailable(message) => Self::unavailable(message),
            E::Internal(cause) => Self::internal(cause),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        Self::from_db(error, "resource")
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorEnvelope {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        })
    }
}

/// Result alias for handlers and services.
pub type ApiResult<T> = Result<T, ApiError>;
