//! The files service: OpenAI's file objects over the `files` table and the [`BlobStore`].
//! Uploads stream to the store (never whole in memory), sealed with `files.encryption_key`
//! when set ([`super::sealed`]), counted against the purpose's cap and hashed (SHA-256 of
//! the plaintext). Everything is scoped by tenant: another tenant's file is `NotFound`.

use bytes::Bytes;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use omg_shared::config::{FilesConfig, UPLOAD_PURPOSES};
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::multipart::MultipartError;
use super::sealed::{open_stream, SealError, Sealer};
use super::store::{BlobStore, BlobWriter, StoreError};
use crate::db::files::{self as sql, FileRow, ListFilter, NewFile};
use crate::db::{transaction, DbError, Pool};
use crate::metrics::FilesMetrics;

/// The purpose of files the batch worker writes (results); clients cannot upload it.
pub const BATCH_OUTPUT: &str = "batch_output";
/// How long `batch` files live unless the upload says otherwise (30 days).
pub const BATCH_DEFAULT_EXPIRY_SECS: i64 = 30 * 86_400;
/// Bounds of `expires_after[seconds]` (1 hour to 30 days, as OpenAI).
pub const EXPIRY_RANGE_SECS: std::ops::RangeInclusive<i64> = 3600..=2_592_000;
/// How long an upload's row lives before it is processed: an upload cut by a crash, or a
/// failed one (status `error`), is swept this long after it started.
pub const UPLOAD_DEADLINE_SECS: i64 = 86_400;
/// Longest stored file name, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;

/// Who a file belongs to.
#[derive(Debug, Clone, Copy)]
pub struct FileOwner {
    pub tenant_id: Uuid,
    /// The key that uploaded it (none: written by the batch worker).
    pub key_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
}

/// OpenAI's file object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FileObject {
    /// `file-` and 24 letters or digits.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Size of the content in bytes.
    pub bytes: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the file is deleted; none: kept until deleted.
    pub expires_at: Option<i64>,
    /// The name the client gave (metadata only).
    pub filename: String,
    pub purpose: String,
    /// `uploading`, `processed` or `error`.
    pub status: String,
    pub status_details: Option<String>,
}

impl From<&FileRow> for FileObject {
    fn from(row: &FileRow) -> Self {
        Self {
            id: row.id.clone(),
            object: "file".to_owned(),
            bytes: row.bytes,
            created_at: row.created_at.timestamp(),
            expires_at: row.expires_at.map(|t| t.timestamp()),
            filename: row.filename.clone(),
            purpose: row.purpose.clone(),
            status: row.status.clone(),
            status_details: row.status_details.clone(),
        }
    }
}

/// OpenAI's list envelope.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<FileObject>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    /// More files follow `last_id`.
    pub has_more: bool,
}

/// The answer to a delete.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub id: String,
    /// Always `file`.
    pub object: String,
    pub deleted: bool,
}

/// Listing order by creation time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// What [`FileService::list`] returns.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Files after this id in `order`.
    pub after: Option<String>,
    /// 1–10000 (the HTTP layers bound it further).
    pub limit: u32,
    pub order: Order,
    pub purpose: Option<String>,
    /// Only this status (admin views); default `processed`.
    pub status: Option<String>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            after: None,
            limit: 100,
            order: Order::Desc,
            purpose: None,
            status: None,
        }
    }
}

/// Why a files operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No such file for this tenant (or it was deleted).
    #[error("no such file")]
    NotFound,
    /// The content exceeds the purpose's cap (bytes).
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Not an uploadable purpose.
    #[error("invalid purpose")]
    InvalidPurpose,
    /// `expires_after` out of range or in the past.
    #[error("invalid expiry")]
    InvalidExpiry,
    /// The file is not readable yet (still uploading) or its upload failed.
    #[error("the file is not processed (status {0})")]
    NotProcessed(String),
    /// A request parameter is wrong (`param`, what to do).
    #[error("{message}")]
    InvalidParameter {
        param: &'static str,
        message: String,
    },
    /// The multipart body is malformed.
    #[error("multipart: {0}")]
    Upload(#[from] MultipartError),
    /// The request body stopped arriving (client gone, data plane error).
    #[error("the request body could not be read: {0}")]
    Body(String),
    /// The object store failed.
    #[error("file store: {0}")]
    Storage(#[from] StoreError),
    /// A sealed blob did not open (wrong key, tampering, truncation).
    #[error("sealed content: {0}")]
    Sealed(#[from] SealError),
    /// The database failed.
    #[error("{0}")]
    Db(DbError),
}

impl From<DbError> for FileError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::NotFound => FileError::NotFound,
            other => FileError::Db(other),
        }
    }
}

impl FileError {
    /// The HTTP status and OpenAI error body. Internal failures say only that they happened
    /// (the details are logged by the caller).
    pub fn response(&self) -> (u16, OpenAiErrorBody) {
        let invalid = |message: String, param: &str| {
            (
                400,
                OpenAiErrorBody::new(ErrorCode::InvalidParameter, message, Some(param)),
            )
        };
        match self {
            FileError::NotFound => {
                let mut body = OpenAiErrorBody::new(
                    ErrorCode::InvalidParameter,
                    "No such file: check the file id (files are visible only to the tenant that uploaded them, and not after deletion).",
                    Some("file_id"),
                );
                body.error.code = Some("file_not_found".to_owned());
                (404, body)
            }
            FileError::TooLarge { limit } => (
                413,
                OpenAiErrorBody::new(
                    ErrorCode::RequestTooLarge,
                    format!(
                        "The file is larger than this gateway accepts for its purpose ({} MiB); upload a smaller file or split it.",
                        limit / (1024 * 1024)
                    ),
                    Some("file"),
                ),
            ),
            FileError::InvalidPurpose => invalid(
                format!("`purpose` must be one of {}.", client_purposes().join(", ")),
                "purpose",
            ),
            FileError::InvalidExpiry => invalid(
                "`expires_after` must be {anchor: \"created_at\", seconds: 3600..2592000}."
                    .to_owned(),
                "expires_after",
            ),
            FileError::NotProcessed(status) => invalid(
                format!("The file cannot be read: its status is `{status}` (only `processed` files have content)."),
                "file_id",
            ),
            FileError::InvalidParameter { param, message } => invalid(message.clone(), param),
            FileError::Upload(e) => invalid(e.message(), "file"),
            FileError::Body(e) => invalid(format!("The request body could not be read: {e}."), "file"),
            FileError::Storage(_) | FileError::Sealed(_) | FileError::Db(_) => (
                500,
                OpenAiErrorBody::new(
                    ErrorCode::InternalError,
                    "The file store failed; the request did not complete. Retry later.",
                    None,
                ),
            ),
        }
    }
}

/// The purposes a client may upload (every purpose but `batch_output`).
pub fn client_purposes() -> Vec<&'static str> {
    UPLOAD_PURPOSES
        .iter()
        .copied()
        .filter(|p| *p != BATCH_OUTPUT)
        .collect()
}

/// The file name as stored: control characters dropped, at most 255 bytes (on a character
/// boundary), never empty. It is metadata only: it never reaches a storage key.
pub fn sanitize_filename(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_FILENAME_BYTES {
            break;
        }
        out.push(c);
    }
    if out.trim().is_empty() {
        "file".to_owned()
    } else {
        out
    }
}

/// A new file id: `file-` and 24 letters or digits.
fn new_id() -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("file-{suffix}")
}

/// Refuses a purpose that is not uploadable.
fn check_purpose(purpose: &str) -> Result<(), FileError> {
    if UPLOAD_PURPOSES.contains(&purpose) {
        Ok(())
    } else {
        Err(FileError::InvalidPurpose)
    }
}

/// The expiry of a new file: `requested` (which must be in the future), else 30 days for
/// `batch` files, else none.
pub fn expiry(
    purpose: &str,
    requested: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, FileError> {
    match requested {
        Some(at) if at <= now => Err(FileError::InvalidExpiry),
        Some(at) => Ok(Some(at)),
        None if purpose == "batch" => Ok(Some(
            now + ChronoDuration::seconds(BATCH_DEFAULT_EXPIRY_SECS),
        )),
        None => Ok(None),
    }
}

/// A file whose content is stored but not yet `processed` ([`FileService::stage`]).
#[derive(Debug)]
pub struct Staged {
    pub id: String,
    pub tenant_id: Uuid,
    storage_key: String,
    /// Plaintext bytes stored.
    pub bytes: u64,
    sha256: String,
}

/// The files service (held in `AppState::files`).
pub struct FileService {
    pool: Pool,
    store: BlobStore,
    config: FilesConfig,
    key: Option<[u8; 32]>,
    metrics: FilesMetrics,
}

/// Where an upload's bytes go: hashed, counted against the cap, sealed when a key is set,
/// then written to the store.
struct Sink {
    writer: BlobWriter,
    sealer: Option<Sealer>,
    hasher: Sha256,
    bytes: u64,
    limit: u64,
}

impl Sink {
    async fn push(&mut self, data: &[u8]) -> Result<(), FileError> {
        self.bytes = self.bytes.saturating_add(data.len() as u64);
        if self.bytes > self.limit {
            return Err(FileError::TooLarge { limit: self.limit });
        }
        self.hasher.update(data);
        match &mut self.sealer {
            Some(sealer) => {
                for chunk in sealer.push(data) {
                    self.writer.write(&chunk).await?;
                }
            }
            None => self.writer.write(data).await?,
        }
        Ok(())
    }

    /// Completes the blob; the plaintext size and SHA-256 (hex).
    async fn finish(mut self) -> Result<(u64, String), FileError> {
        if let Some(sealer) = self.sealer.take() {
            self.writer.write(&sealer.finish()).await?;
        }
        self.writer.finish().await?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }
}

impl FileService {
    /// The service over `store`, with `files.*`.
    pub fn new(pool: Pool, store: BlobStore, config: &FilesConfig, metrics: FilesMetrics) -> Self {
        Self {
            pool,
            store,
            key: config.decoded_encryption_key(),
            config: config.clone(),
            metrics,
        }
    }

    /// The store (for the start-up check).
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// The cap of `purpose` in bytes.
    pub fn max_bytes(&self, purpose: &str) -> u64 {
        self.config.max_bytes(purpose)
    }

    /// The largest upload of any purpose in bytes (`files.max_size_mb`).
    pub fn max_upload_bytes(&self) -> u64 {
        self.config.max_size_mb.saturating_mul(1024 * 1024)
    }

    /// Stores a file from `body`: the row first (`uploading`), then the content streamed to
    /// the store, then `processed`. A failure removes the partial blob and marks the row
    /// `error`. `batch` files expire after 30 days unless `expires_at` says otherwise.
    pub async fn create<S>(
        &self,
        owner: &FileOwner,
        purpose: &str,
        filename: &str,
        expires_at: Option<DateTime<Utc>>,
        body: S,
    ) -> Result<FileObject, FileError>
    where
        S: Stream<Item = Result<Bytes, FileError>> + Unpin,
    {
        check_purpose(purpose)?;
        let expires_at = expiry(purpose, expires_at, Utc::now())?;
        let limit = self.max_bytes(purpose);
        let staged = self.stage(owner, purpose, filename, limit, body).await?;
        self.finalize(staged, purpose, expires_at).await
    }

    /// Inserts the row (`uploading`, with `purpose` as known so far, possibly empty) and
    /// streams `body` to the store, at most `limit` bytes. On failure the row is marked
    /// `error` and nothing stays in the store. [`FileService::finalize`] completes it.
    /// Until then the row expires [`UPLOAD_DEADLINE_SECS`] after its creation, so an upload
    /// cut by a crash (or a failed one) is swept like an expired file.
    pub async fn stage<S>(
        &self,
        owner: &FileOwner,
        purpose: &str,
        filename: &str,
        limit: u64,
        body: S,
    ) -> Result<Staged, FileError>
    where
        S: Stream<Item = Result<Bytes, FileError>> + Unpin,
    {
        let id = new_id();
        let now = Utc::now();
        let storage_key = self.store.key(owner.tenant_id, &id);
        let filename = sanitize_filename(filename);
        let new = NewFile {
            id: &id,
            tenant_id: owner.tenant_id,
            key_id: owner.key_id,
            user_id: owner.user_id,
            purpose,
            filename: &filename,
            status: sql::UPLOADING,
            storage_key: &storage_key,
            encryption: i16::from(self.key.is_some()),
            created_at: now,
            expires_at: Some(now + ChronoDuration::seconds(UPLOAD_DEADLINE_SECS)),
        };
        {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            sql::insert(&mut conn, &new).await?;
        }
        match self.upload(&storage_key, limit, body).await {
            Ok((bytes, sha256)) => Ok(Staged {
                id,
                tenant_id: owner.tenant_id,
                storage_key,
                bytes,
                sha256,
            }),
            Err(error) => {
                self.failed(&id, &error).await;
                Err(error)
            }
        }
    }

    /// Completes a staged file as `purpose` (checked, with its cap) expiring at
    /// `expires_at`; when the purpose or its cap refuses it, the blob is removed and the
    /// row marked `error`.
    pub async fn finalize(
        &self,
        staged: Staged,
        purpose: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<FileObject, FileError> {
        let limit = self.max_bytes(purpose);
        let checked = check_purpose(purpose).and_then(|()| {
            if staged.bytes > limit {
                Err(FileError::TooLarge { limit })
            } else {
                Ok(())
            }
        });
        if let Err(error) = checked {
            self.discard_staged(staged, &error).await;
            return Err(error);
        }
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let size = i64::try_from(staged.bytes).unwrap_or(i64::MAX);
        let done = sql::Processed {
            purpose,
            bytes: size,
            sha256: &staged.sha256,
            expires_at,
        };
        let row = sql::mark_processed(&mut conn, &staged.id, &done).await?;
        self.metrics.upload("ok", staged.bytes);
        tracing::info!(file_id = %staged.id, tenant = %staged.tenant_id, purpose, bytes = staged.bytes, "file stored");
        Ok(FileObject::from(&row))
    }

    /// Removes a staged file's blob and marks its row failed with `error`.
    pub async fn discard_staged(&self, staged: Staged, error: &FileError) {
        if let Err(e) = self.store.delete(&staged.storage_key).await {
            tracing::error!(file_id = %staged.id, key = %staged.storage_key, error = %e, "a refused upload's blob could not be removed");
        }
        self.failed(&staged.id, error).await;
    }

    /// Streams `body` into a new blob `key`; on any failure the blob is aborted.
    async fn upload<S>(
        &self,
        key: &str,
        limit: u64,
        mut body: S,
    ) -> Result<(u64, String), FileError>
    where
        S: Stream<Item = Result<Bytes, FileError>> + Unpin,
    {
        let sealer = match &self.key {
            Some(key) => Some(Sealer::new(key)?),
            None => None,
        };
        let mut sink = Sink {
            writer: self.store.writer(key).await?,
            sealer,
            hasher: Sha256::new(),
            bytes: 0,
            limit,
        };
        let outcome = loop {
            match body.next().await {
                Some(Ok(data)) => {
                    if let Err(e) = sink.push(&data).await {
                        break Err(e);
                    }
                }
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            }
        };
        match outcome {
            Ok(()) => sink.finish().await,
            Err(error) => {
                if let Err(abort) = sink.writer.abort().await {
                    tracing::warn!(key, error = %abort, "aborting a failed upload's blob failed");
                }
                Err(error)
            }
        }
    }

    /// Marks a failed upload's row `error` and counts it.
    async fn failed(&self, id: &str, error: &FileError) {
        let result = match error {
            FileError::TooLarge { .. } => "too_large",
            FileError::Upload(_) | FileError::Body(_) => "invalid",
            _ => "error",
        };
        self.metrics.upload(result, 0);
        match error {
            FileError::Storage(_) | FileError::Sealed(_) | FileError::Db(_) => {
                tracing::error!(file_id = %id, %error, "file upload failed");
            }
            _ => tracing::info!(file_id = %id, %error, "file upload refused"),
        }
        let details = match error {
            FileError::TooLarge { .. } | FileError::Upload(_) | FileError::Body(_) => {
                error.to_string()
            }
            _ => "the file could not be stored".to_owned(),
        };
        match self.pool.get().await {
            Ok(mut conn) => {
                if let Err(e) = sql::mark_error(&mut conn, id, &details).await {
                    tracing::error!(file_id = %id, error = %e, "marking a failed upload failed");
                }
            }
            Err(e) => tracing::error!(file_id = %id, error = %e, "marking a failed upload failed"),
        }
    }

    async fn row(&self, tenant_id: Uuid, id: &str) -> Result<FileRow, FileError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        Ok(sql::get(&mut conn, tenant_id, id).await?)
    }

    /// The tenant's file `id`; `NotFound` for another tenant's or a deleted file.
    pub async fn get(&self, tenant_id: Uuid, id: &str) -> Result<FileObject, FileError> {
        Ok(FileObject::from(&self.row(tenant_id, id).await?))
    }

    /// The file and its plaintext content as a stream (opened when sealed).
    pub async fn open(
        &self,
        tenant_id: Uuid,
        id: &str,
    ) -> Result<(FileObject, BoxStream<'static, Result<Bytes, FileError>>), FileError> {
        let row = self.row(tenant_id, id).await?;
        if row.status != sql::PROCESSED {
            return Err(FileError::NotProcessed(row.status));
        }
        let blob = self.store.read(&row.storage_key).await?;
        let stream = if row.encryption == 0 {
            blob.map(|r| r.map_err(FileError::from)).boxed()
        } else {
            let key = self.key.ok_or_else(|| {
                StoreError(format!(
                    "file {} is sealed but files.encryption_key is not set",
                    row.id
                ))
            })?;
            open_stream(key, blob)
                .map(|r| r.map_err(FileError::from))
                .boxed()
        };
        Ok((FileObject::from(&row), stream))
    }

    /// A page of the tenant's files.
    pub async fn list(&self, tenant_id: Uuid, q: &ListQuery) -> Result<FileList, FileError> {
        let limit = q.limit.clamp(1, 10_000);
        let filter = ListFilter {
            purpose: q.purpose.as_deref(),
            status: q.status.as_deref(),
            after: q.after.as_deref(),
            ascending: q.order == Order::Asc,
            limit: i64::from(limit) + 1,
        };
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let mut rows = match sql::list(&mut conn, tenant_id, &filter).await {
            Err(DbError::NotFound) => return Err(FileError::InvalidParameter {
                param: "after",
                message:
                    "`after` is not one of your file ids: pass the `last_id` of the previous page."
                        .to_owned(),
            }),
            other => other?,
        };
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let data: Vec<FileObject> = rows.iter().map(FileObject::from).collect();
        Ok(FileList {
            object: "list".to_owned(),
            first_id: data.first().map(|f| f.id.clone()),
            last_id: data.last().map(|f| f.id.clone()),
            data,
            has_more,
        })
    }

    /// Deletes the tenant's file `id` (by a client).
    pub async fn delete(&self, tenant_id: Uuid, id: &str) -> Result<Deleted, FileError> {
        self.delete_by(tenant_id, id, "client").await
    }

    /// Deletes the tenant's file `id`: the row is marked `deleted` first (the file is gone
    /// for every reader), then the blob is removed ([`FileService::remove_blob`]).
    pub async fn delete_by(
        &self,
        tenant_id: Uuid,
        id: &str,
        by: &str,
    ) -> Result<Deleted, FileError> {
        let row = {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            sql::mark_deleted(&mut conn, tenant_id, id, Utc::now()).await?
        };
        Ok(self.remove_blob(&row, by).await)
    }

    /// Removes the blob of a row just marked `deleted` and counts the deletion; a blob that
    /// cannot be removed is logged with its key (no row points at it any more).
    pub async fn remove_blob(&self, row: &FileRow, by: &str) -> Deleted {
        if let Err(e) = self.store.delete(&row.storage_key).await {
            tracing::error!(file_id = %row.id, key = %row.storage_key, error = %e, "deleted file's blob could not be removed");
        }
        self.metrics.deleted(by, 1);
        tracing::info!(file_id = %row.id, tenant = %row.tenant_id, by, "file deleted");
        Deleted {
            id: row.id.clone(),
            object: "file".to_owned(),
            deleted: true,
        }
    }

    /// One sweep step: up to `batch` expired files claimed (rows locked, skipping those
    /// another control plane holds), their blobs removed, the rows marked `deleted`. Files
    /// whose blob could not be removed stay for the next sweep (logged with their id).
    /// Returns how many were deleted.
    pub async fn sweep_once(&self, batch: u32) -> Result<u32, FileError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        transaction::begin(&mut conn).await?;
        let swept = self.sweep_claimed(&mut conn, batch).await;
        match swept {
            Ok(n) => {
                transaction::commit(&mut conn).await?;
                self.metrics.deleted("sweeper", u64::from(n));
                Ok(n)
            }
            Err(e) => Err(transaction::rollback(&mut conn, e).await.into()),
        }
    }

    async fn sweep_claimed(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        batch: u32,
    ) -> Result<u32, DbError> {
        let now = Utc::now();
        let rows = sql::claim_expired(conn, now, i64::from(batch.max(1))).await?;
        let mut gone = Vec::with_capacity(rows.len());
        for row in rows {
            match self.store.delete(&row.storage_key).await {
                Ok(()) => {
                    tracing::info!(file_id = %row.id, tenant = %row.tenant_id, "expired file deleted");
                    gone.push(row.id);
                }
                Err(e) => {
                    self.metrics.sweep_error();
                    tracing::error!(file_id = %row.id, key = %row.storage_key, error = %e, "expired file's blob could not be deleted (check the files store's credentials and permissions)");
                }
            }
        }
        sql::mark_swept(conn, &gone, now).await?;
        Ok(u32::try_from(gone.len()).unwrap_or(u32::MAX))
    }
}
