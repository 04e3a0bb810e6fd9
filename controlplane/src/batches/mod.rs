//! OpenAI's Batch API (`/v1/batches*` on the internal listener, forwarded by data planes with
//! the caller's verified identity) and the batch worker that runs the lines through a data
//! plane as the batch's key. See docs/batches.md.
//!
//! - `object.rs`: the batch object and list page (pure);
//! - `lines.rs`: the input file cut into lines and each line validated (pure);
//! - `service.rs`: create (request checks, the file streamed and validated, lines stored),
//!   get, list, cancel — tenant-scoped;
//! - `http.rs`: the `/v1/batches` handlers;
//! - `answer.rs`: what a data plane's answer to a line means (pure);
//! - `worker.rs` and `finalize.rs`: the worker loop (claim, send, record, stop, expire,
//!   cancel) and the output and error files.

pub mod answer;
pub mod finalize;
pub mod http;
pub mod lines;
pub mod object;
pub mod service;
pub mod worker;

use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use rand::distributions::{Alphanumeric, DistString};

use crate::db::DbError;
use crate::files::service::FileError;

/// The endpoints a batch may target.
pub const ENDPOINTS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/messages",
];

/// A new id: `prefix` + 24 random base62 characters.
pub fn random_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24)
    )
}

/// Why a batch request failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The request is wrong (400), naming the parameter.
    #[error("{message}")]
    Invalid {
        param: Option<&'static str>,
        message: String,
    },
    /// No such batch of the caller's tenant (404).
    #[error("No batch found with id `{0}`.")]
    NotFound(String),
    /// The input file does not exist for the caller's tenant (404).
    #[error("No file found with id `{0}`.")]
    InputFileNotFound(String),
    /// The batch has ended and cannot be cancelled (400).
    #[error("{0}")]
    NotCancellable(String),
    /// Batches cannot run on this control plane (503), the message names the setting.
    #[error("{0}")]
    Unavailable(String),
    /// The file store failed.
    #[error("file storage: {0}")]
    Files(#[from] FileError),
    /// The database failed.
    #[error("{0}")]
    Db(#[from] DbError),
}

impl BatchError {
    /// A 400 naming `param`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            param: Some(param),
            message: message.into(),
        }
    }

    /// The HTTP status and the OpenAI error body.
    pub fn answer(&self) -> (u16, OpenAiErrorBody) {
        let (status, code, param, message) = match self {
            BatchError::Invalid { param, message } => {
                (400, ErrorCode::InvalidParameter, *param, message.clone())
            }
            BatchError::NotFound(_) => (404, ErrorCode::UnknownUrl, None, self.to_string()),
            BatchError::InputFileNotFound(_) => (
                404,
                ErrorCode::UnknownUrl,
                Some("input_file_id"),
                self.to_string(),
            ),
            BatchError::NotCancellable(message) => {
                (400, ErrorCode::InvalidParameter, None, message.clone())
            }
            BatchError::Unavailable(message) => {
                (503, ErrorCode::NoHealthyUpstream, None, message.clone())
            }
            BatchError::Db(DbError::Unavailable(_)) => (
                503,
                ErrorCode::NoHealthyUpstream,
                None,
                "The database is unavailable; retry shortly.".to_owned(),
            ),
            BatchError::Files(_) | BatchError::Db(_) => (
                500,
                ErrorCode::InternalError,
                None,
                "The batch could not be processed (a storage error, logged); retry later."
                    .to_owned(),
            ),
        };
        let mut body = OpenAiErrorBody::new(code, message, param);
        body.error.code = Some(
            match self {
                BatchError::NotFound(_) | BatchError::InputFileNotFound(_) => "not_found",
                BatchError::NotCancellable(_) => "batch_not_cancellable",
                BatchError::Unavailable(_) => "batches_unavailable",
                _ => code.code(),
            }
            .to_owned(),
        );
        (status, body)
    }
}

impl From<BatchError> for crate::service::Error {
    fn from(error: BatchError) -> Self {
        use crate::service::Error;
        match error {
            BatchError::Invalid { param, message } => match param {
                Some(param) => Error::invalid(param, message),
                None => Error::bad_request(message),
            },
            BatchError::NotFound(_) => Error::not_found("batch"),
            BatchError::InputFileNotFound(_) => Error::not_found("file"),
            BatchError::NotCancellable(message) => Error::conflict(message),
            BatchError::Unavailable(message) => Error::unavailable(message),
            BatchError::Db(e) => e.into(),
            BatchError::Files(e) => Error::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_prefix_and_24_base62_characters() {
        let id = random_id("batch_");
        assert_eq!(id.len(), 30);
        assert!(id["batch_".len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(random_id("batch_"), id);
    }

    #[test]
    fn errors_are_openai_shaped_with_their_status() {
        let (status, body) = BatchError::invalid("endpoint", "bad").answer();
        assert_eq!(status, 400);
        assert_eq!(body.error.param.as_deref(), Some("endpoint"));
        assert_eq!(body.error.error_type, "invalid_request_error");
        let (status, body) = BatchError::NotFound("batch_x".into()).answer();
        assert_eq!(
            (status, body.error.code.as_deref()),
            (404, Some("not_found"))
        );
        let (status, _) = BatchError::Unavailable("x".into()).answer();
        assert_eq!(status, 503);
        let (status, body) = BatchError::Db(DbError::NotFound).answer();
        assert_eq!(status, 500);
        assert!(!body.error.message.contains("not found"));
    }
}
