//! `/v1/files` on the internal listener (the data plane forwards it there after checking
//! the key; the verified [`Identity`] names the tenant). Thin handlers over
//! [`FileService`]: the multipart upload is read as it streams (never buffered), and
//! hostile bodies are refused quickly: a declared length over `files.max_size_mb` before
//! any read, a missing or malformed boundary, bytes before the first boundary, a part over
//! the purpose's cap as soon as it crosses it (the partial blob removed).

use actix_web::body::SizedStream;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{stream, Stream, StreamExt};
use omg_shared::cluster::Identity;

use super::multipart::{self, Limits, MultipartReader};
use super::service::{
    client_purposes, FileError, FileOwner, FileService, ListQuery, Order, BATCH_OUTPUT,
    EXPIRY_RANGE_SECS,
};
use crate::state::AppState;

/// Multipart framing allowed on top of `files.max_size_mb` in a declared `Content-Length`.
const FRAMING_ALLOWANCE: u64 = 1024 * 1024;
/// Longest text field (`purpose`, `expires_after[…]`).
const MAX_FIELD: usize = 256;

/// Registers `/v1/files*` (after the channel probe, which is registered first).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/files", web::post().to(create))
        .route("/v1/files", web::get().to(list))
        .route("/v1/files/{file_id}", web::get().to(retrieve))
        .route("/v1/files/{file_id}", web::delete().to(delete))
        .route("/v1/files/{file_id}/content", web::get().to(content));
}

/// The OpenAI error response of `error` (internal failures logged with the request id).
pub fn error_response(error: &FileError, request_id: &str) -> HttpResponse {
    let (status, body) = error.response();
    if status >= 500 {
        tracing::error!(request_id, %error, "files request failed");
    }
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(body.to_json())
}

fn identity(req: &HttpRequest) -> Option<Identity> {
    req.extensions().get::<Identity>().cloned()
}

/// Runs `f` with the request's identity; answers its error OpenAI-shaped.
async fn with_identity<F, Fut>(req: &HttpRequest, f: F) -> HttpResponse
where
    F: FnOnce(Identity) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, FileError>>,
{
    let Some(identity) = identity(req) else {
        return error_response(&FileError::NotFound, "");
    };
    let request_id = identity.request_id.clone();
    match f(identity).await {
        Ok(response) => response,
        Err(error) => error_response(&error, &request_id),
    }
}

fn invalid(param: &'static str, message: impl Into<String>) -> FileError {
    FileError::InvalidParameter {
        param,
        message: message.into(),
    }
}

/// The fields of an upload as they arrive.
#[derive(Default)]
struct Form {
    purpose: Option<String>,
    anchor: Option<String>,
    seconds: Option<String>,
}

impl Form {
    /// `expires_after` as an instant after `now` (both fields or neither).
    fn expires_at(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, FileError> {
        match (&self.anchor, &self.seconds) {
            (None, None) => Ok(None),
            (Some(anchor), Some(seconds)) if anchor.trim() == "created_at" => {
                let seconds: i64 = seconds
                    .trim()
                    .parse()
                    .map_err(|_| FileError::InvalidExpiry)?;
                if !EXPIRY_RANGE_SECS.contains(&seconds) {
                    return Err(FileError::InvalidExpiry);
                }
                Ok(Some(now + chrono::Duration::seconds(seconds)))
            }
            _ => Err(FileError::InvalidExpiry),
        }
    }

    /// The purpose, which a client may upload.
    fn purpose(&self) -> Result<&str, FileError> {
        match self.purpose.as_deref().map(str::trim) {
            None | Some("") => Err(FileError::InvalidParameter {
                param: "purpose",
                message: format!(
                    "`purpose` is required: one of {}.",
                    client_purposes().join(", ")
                ),
            }),
            Some(BATCH_OUTPUT) => Err(FileError::InvalidPurpose),
            Some(purpose) => Ok(purpose),
        }
    }
}

/// The body of the current part as a stream for the service.
fn part_body<S, E>(
    reader: &mut MultipartReader<S>,
) -> impl Stream<Item = Result<Bytes, FileError>> + Unpin + '_
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    Box::pin(stream::unfold(reader, |reader| async move {
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), reader)),
            Ok(None) => None,
            Err(e) => Some((Err(FileError::Upload(e)), reader)),
        }
    }))
}

/// `POST /v1/files`.
async fn create(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let request = req.clone();
    with_identity(&request, |identity| async move {
        let files = &state.files;
        let cap = files.max_upload_bytes();
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap.saturating_add(FRAMING_ALLOWANCE)) {
            return Err(FileError::TooLarge { limit: cap });
        }
        let content_type = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let boundary = multipart::boundary(content_type)?;
        let reader = MultipartReader::new(body, &boundary, Limits::default());
        let owner = FileOwner {
            tenant_id: identity.tenant_id,
            key_id: Some(identity.key_id),
            user_id: identity.user_id,
        };
        let file = upload(files, &owner, reader).await?;
        Ok(HttpResponse::Ok().json(file))
    })
    .await
}

/// Reads the parts: text fields, then the `file` part streamed to the store. With the
/// `purpose` before the file (as the SDKs send it) its cap applies while streaming; a file
/// before its purpose is staged under `files.max_size_mb` and checked once the purpose
/// arrives.
async fn upload<S, E>(
    files: &FileService,
    owner: &FileOwner,
    mut reader: MultipartReader<S>,
) -> Result<super::service::FileObject, FileError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut form = Form::default();
    let mut staged = None;
    while let Some(part) = reader.next_part().await? {
        match part.name.as_str() {
            "purpose" => form.purpose = Some(reader.read_text(MAX_FIELD).await?),
            "expires_after[anchor]" => form.anchor = Some(reader.read_text(MAX_FIELD).await?),
            "expires_after[seconds]" => form.seconds = Some(reader.read_text(MAX_FIELD).await?),
            "file" if staged.is_some() => {
                return Err(invalid("file", "Send exactly one `file` part."));
            }
            "file" => {
                let filename = part.filename.unwrap_or_default();
                let (purpose, limit) = match &form.purpose {
                    // The file before its purpose: staged under the global cap.
                    None => (String::new(), files.max_upload_bytes()),
                    // Checked before the content streams (the expiry is set at the end).
                    Some(_) => {
                        let purpose = form.purpose()?;
                        if !client_purposes().contains(&purpose) {
                            return Err(FileError::InvalidPurpose);
                        }
                        form.expires_at(Utc::now())?;
                        (purpose.to_owned(), files.max_bytes(purpose))
                    }
                };
                let body = part_body(&mut reader);
                staged = Some(files.stage(owner, &purpose, &filename, limit, body).await?);
            }
            // Other fields are ignored (their bodies skipped by `next_part`).
            _ => {}
        }
    }
    let Some(staged) = staged else {
        return Err(FileError::InvalidParameter {
            param: "file",
            message: "`file` is required: send the content as a multipart part named `file`."
                .to_owned(),
        });
    };
    let outcome = form.purpose().and_then(|purpose| {
        let expires = form.expires_at(Utc::now())?;
        super::service::expiry(purpose, expires, Utc::now()).map(|e| (purpose, e))
    });
    match outcome {
        Ok((purpose, expires)) => files.finalize(staged, purpose, expires).await,
        Err(error) => {
            files.discard_staged(staged, &error).await;
            Err(error)
        }
    }
}

/// The query of `GET /v1/files`.
#[derive(serde::Deserialize)]
struct ListParams {
    after: Option<String>,
    limit: Option<String>,
    order: Option<String>,
    purpose: Option<String>,
}

/// Parses `limit` (1–`max`, default `max`) and `order` (`asc`|`desc`, default `desc`).
pub fn page_params(
    limit: Option<&str>,
    order: Option<&str>,
    max: u32,
) -> Result<(u32, Order), FileError> {
    let limit = match limit {
        None => max,
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "limit",
                    format!("`limit` must be an integer between 1 and {max}."),
                ))
            }
        },
    };
    let order = match order.map(str::trim) {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(invalid("order", "`order` must be `asc` or `desc`.")),
    };
    Ok((limit, order))
}

/// `GET /v1/files`.
async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let request = req.clone();
    with_identity(&request, |identity| async move {
        let params = web::Query::<ListParams>::from_query(req.query_string())
            .map_err(|e| invalid("query", format!("The query string is not valid: {e}.")))?
            .into_inner();
        let (limit, order) = page_params(params.limit.as_deref(), params.order.as_deref(), 100)?;
        let query = ListQuery {
            after: params.after.filter(|a| !a.is_empty()),
            limit,
            order,
            purpose: params.purpose.filter(|p| !p.is_empty()),
            status: None,
        };
        let page = state.files.list(identity.tenant_id, &query).await?;
        Ok(HttpResponse::Ok().json(page))
    })
    .await
}

/// `GET /v1/files/{file_id}`.
async fn retrieve(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    with_identity(&req, |identity| async move {
        let file = state.files.get(identity.tenant_id, &path).await?;
        Ok(HttpResponse::Ok().json(file))
    })
    .await
}

/// `DELETE /v1/files/{file_id}`.
async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    with_identity(&req, |identity| async move {
        let deleted = state.files.delete(identity.tenant_id, &path).await?;
        Ok(HttpResponse::Ok().json(deleted))
    })
    .await
}

/// `GET /v1/files/{file_id}/content`.
async fn content(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    with_identity(&req, |identity| async move {
        download(
            &state.files,
            identity.tenant_id,
            &path,
            &identity.request_id,
        )
        .await
    })
    .await
}

/// The content of the tenant's file as a streamed response with its length.
pub async fn download(
    files: &FileService,
    tenant_id: uuid::Uuid,
    file_id: &str,
    request_id: &str,
) -> Result<HttpResponse, FileError> {
    let (file, stream) = files.open(tenant_id, file_id).await?;
    let (id, request_id) = (file.id.clone(), request_id.to_owned());
    let stream = stream.map(move |chunk| {
        chunk.inspect_err(|e| {
            tracing::error!(file_id = %id, request_id = %request_id, error = %e, "file content stream failed");
        })
    });
    let size = u64::try_from(file.bytes).unwrap_or(0);
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(SizedStream::new(size, stream)))
}
