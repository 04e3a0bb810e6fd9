//! [`ApiError`]: what the data plane answers when it refuses or fails a request. Built by the
//! plain modules, written once at the edge (`proxy::respond`).

use omg_shared::error::{ErrorCode, OpenAiErrorBody};

/// An error for the client, in OpenAI's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Code (fixes status and type).
    pub code: ErrorCode,
    /// Message for the client: what went wrong and what to do. No secrets, no raw upstream
    /// payloads.
    pub message: String,
    /// Offending parameter.
    pub param: Option<&'static str>,
    /// Seconds for `Retry-After`, when known.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// Names the offending parameter.
    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        OpenAiErrorBody::new(self.code, self.message.clone(), self.param).to_json()
    }

    /// `404 model_not_found` in OpenAI's wording (does not reveal whether the model exists).
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorCode::ModelNotFound,
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                truncate(model, 128)
            ),
        )
        .with_param("model")
    }
}

/// Shortens client-supplied text echoed in messages.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}
