//! The one failure type of the services: what went wrong, in domain terms. `api/` turns it
//! into an HTTP answer in one place (`impl From<Error> for ApiError`).

use std::fmt;

use crate::db::DbError;

/// A service failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input is wrong: `field` names the offending field when there is one.
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// No valid credentials (or a login that failed).
    Unauthenticated(String),
    /// Signed in, but not allowed.
    Forbidden(String),
    /// A correct temporary password: the user must choose a new one first.
    PasswordChangeRequired,
    /// `what` does not exist (or is not visible to the caller).
    NotFound(String),
    /// The change conflicts with the current state.
    Conflict(String),
    /// Too many attempts; the message says when to retry.
    TooMany(String),
    /// A dependency (database, Redis) is down; retry later.
    Unavailable(String),
    /// A bug or an unexpected failure; the cause is logged, never sent.
    Internal(String),
}

/// Result of a service call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The input field `field` is wrong.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The input is wrong, not in one field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::Invalid {
            field: None,
            message: message.into(),
        }
    }

    /// No valid credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::Unauthenticated(message.into())
    }

    /// Not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    /// `what` was not found.
    pub fn not_found(what: &str) -> Self {
        Self::NotFound(what.to_owned())
    }

    /// Conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    /// Too many attempts.
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::TooMany(message.into())
    }

    /// A dependency is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// An unexpected failure (logged where it is answered).
    pub fn internal(cause: impl fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// The offending input field, for [`Error::Invalid`].
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// Maps a data-layer error; `what` names the resource for 404s and conflicts.
    pub fn from_db(error: DbError, what: &str) -> Self {
        match error {
            DbError::NotFound => Self::not_found(what),
            DbError::Conflict(constraint) => Self::conflict(format!(
                "{what} conflicts with an existing one ({constraint})"
            )),
            DbError::Unavailable(message) => {
                tracing::error!(error = %message, "database unavailable");
                Self::unavailable("database unavailable; retry shortly")
            }
            DbError::Query(error) => Self::internal(error),
        }
    }
}

impl From<DbError> for Error {
    fn from(error: DbError) -> Self {
        Self::from_db(error, "resource")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid {
                field: Some(field),
                message,
            } => write!(f, "invalid `{field}`: {message}"),
            Self::Invalid {
                field: None,
                message,
            } => write!(f, "invalid request: {message}"),
            Self::Unauthenticated(message) => write!(f, "unauthenticated: {message}"),
            Self::Forbidden(message) => write!(f, "forbidden: {message}"),
            Self::PasswordChangeRequired => f.write_str("password change required"),
            Self::NotFound(what) => write!(f, "{what} not found"),
            Self::Conflict(message) => write!(f, "conflict: {message}"),
            Self::TooMany(message) => write!(f, "too many requests: {message}"),
            Self::Unavailable(message) => write!(f, "unavailable: {message}"),
            Self::Internal(cause) => write!(f, "internal error: {cause}"),
        }
    }
}

impl std::error::Error for Error {}
