//! The `/v1` URL routes: which endpoint a method and path name, with each endpoint's usage
//! name, upstream path and model type.

use omg_shared::config::ModelType;
use omg_shared::error::ErrorCode;

use crate::error::{truncate, ApiError};

/// A `/v1` endpoint the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/models`
    ListModels,
    /// `GET /v1/models/{id}`
    GetModel(String),
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/images/generations`
    ImagesGenerations,
    /// `POST /v1/messages` (Anthropic's Messages API, translated to a chat request).
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
    /// `/v1/files*` and `/v1/batches*` (any method): authenticated here, then forwarded to
    /// the control plane's internal listener with a signed identity (cluster mode).
    Forward(ForwardKind),
}

/// Which family of forwarded endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardKind {
    /// `/v1/files*`
    Files,
    /// `/v1/batches*`
    Batches,
}

/// `/v1/files`, `/v1/files/…` → files; the same for batches; anything else is not forwarded.
fn forward_kind(path: &str) -> Option<ForwardKind> {
    let under = |base: &str| {
        path.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/v1/files") {
        Some(ForwardKind::Files)
    } else if under("/v1/batches") {
        Some(ForwardKind::Batches)
    } else {
        None
    }
}

impl Route {
    /// The usage-record name of the operation.
    pub fn endpoint_name(&self) -> &'static str {
        match self {
            Route::ListModels | Route::GetModel(_) => "models",
            Route::Chat => "chat.completions",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
            Route::ImagesGenerations => "images.generations",
            Route::Messages => "messages",
            Route::CountTokens => "messages.count_tokens",
            Route::Forward(ForwardKind::Files) => "files",
            Route::Forward(ForwardKind::Batches) => "batches",
        }
    }

    /// The upstream path below the provider's base URL.
    pub fn upstream_path(&self) -> &'static str {
        match self {
            Route::ListModels | Route::GetModel(_) => "/models",
            Route::Chat | Route::Messages => "/chat/completions",
            Route::CountTokens => "/messages/count_tokens",
            Route::Completions => "/completions",
            Route::Embeddings => "/embeddings",
            Route::ImagesGenerations => "/images/generations",
            Route::Forward(ForwardKind::Files) => "/files",
            Route::Forward(ForwardKind::Batches) => "/batches",
        }
    }

    /// Whether the client speaks Anthropic's Messages API on this route.
    pub fn is_anthropic(&self) -> bool {
        matches!(self, Route::Messages | Route::CountTokens)
    }

    /// The model type an alias must have to serve the route.
    pub fn model_type(&self) -> Option<ModelType> {
        match self {
            Route::Chat | Route::Completions | Route::Messages | Route::CountTokens => {
                Some(ModelType::Llm)
            }
            Route::Embeddings => Some(ModelType::Embedding),
            Route::ImagesGenerations => Some(ModelType::Image),
            Route::ListModels | Route::GetModel(_) | Route::Forward(_) => None,
        }
    }
}

/// Matches method and path (without query).
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let post = |route: Route| {
        if method == "POST" {
            Ok(route)
        } else {
            Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("Method {method} is not allowed on {path}; use POST."),
            ))
        }
    };
    if let Some(kind) = forward_kind(path) {
        return Ok(Route::Forward(kind));
    }
    match path {
        "/v1/chat/completions" => post(Route::Chat),
        "/v1/completions" => post(Route::Completions),
        "/v1/embeddings" => post(Route::Embeddings),
        "/v1/images/generations" => post(Route::ImagesGenerations),
        "/v1/messages" => post(Route::Messages),
        "/v1/messages/count_tokens" => post(Route::CountTokens),
        "/v1/models" | "/v1/models/" if method == "GET" => Ok(Route::ListModels),
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) if method == "GET" && !id.is_empty() => {
                Ok(Route::GetModel(percent_decode(id)))
            }
            _ => Err(ApiError::new(
                ErrorCode::UnknownUrl,
                format!("Invalid URL ({method} {}).", truncate(path, 200)),
            )),
        },
    }
}

/// Decodes `%XX` escapes (model ids such as `org%2Fmodel`); invalid escapes stay as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(high * 16 + low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit.
fn hex_value(byte: u8) -> Option<u8> {
    (byte as char)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}
