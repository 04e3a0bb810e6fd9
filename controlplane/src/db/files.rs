//! The `files` table (uploaded and batch-written files): insert while uploading, mark
//! processed or failed, read and list a tenant's files (keyset pagination), mark deleted,
//! and the sweeper's claim of expired files (`FOR UPDATE SKIP LOCKED`, so two control
//! planes never work on the same rows).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::files;
use super::DbError;

/// A row of `files` (field order matches `schema.rs`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = files)]
pub struct FileRow {
    pub id: String,
    pub tenant_id: Uuid,
    pub key_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub purpose: String,
    pub filename: String,
    pub bytes: i64,
    pub status: String,
    pub status_details: Option<String>,
    pub storage_key: String,
    pub encryption: i16,
    pub sha256: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A file about to be uploaded (status `uploading`).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = files)]
pub struct NewFile<'a> {
    pub id: &'a str,
    pub tenant_id: Uuid,
    pub key_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub purpose: &'a str,
    pub filename: &'a str,
    pub status: &'a str,
    pub storage_key: &'a str,
    pub encryption: i16,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Status values of `files.status`.
pub const UPLOADING: &str = "uploading";
/// Stored and readable.
pub const PROCESSED: &str = "processed";
/// The upload failed (no blob).
pub const ERROR: &str = "error";
/// Deleted by a client, an admin or the sweeper (no blob; the id is never reused).
pub const DELETED: &str = "deleted";

/// What a listing selects.
#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    /// Only this purpose.
    pub purpose: Option<&'a str>,
    /// Only this status (default: `processed`; uploads in progress, failed and deleted
    /// files are listed only when asked for).
    pub status: Option<&'a str>,
    /// Rows after this file id in the listing's order (keyset cursor).
    pub after: Option<&'a str>,
    /// Oldest first (`true`) or newest first.
    pub ascending: bool,
    /// Rows to return (the caller asks for one more to learn `has_more`).
    pub limit: i64,
}

/// Inserts a file in status `uploading`.
pub async fn insert(conn: &mut AsyncPgConnection, file: &NewFile<'_>) -> Result<FileRow, DbError> {
    Ok(diesel::insert_into(files::table)
        .values(file)
        .returning(FileRow::as_returning())
        .get_result(conn)
        .await?)
}

/// What a completed upload records.
#[derive(Debug, Clone)]
pub struct Processed<'a> {
    pub purpose: &'a str,
    /// Plaintext size.
    pub bytes: i64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Marks an uploading file stored, with its purpose, size, digest and expiry.
pub async fn mark_processed(
    conn: &mut AsyncPgConnection,
    id: &str,
    done: &Processed<'_>,
) -> Result<FileRow, DbError> {
    Ok(diesel::update(files::table.find(id))
        .filter(files::status.eq(UPLOADING))
        .set((
            files::status.eq(PROCESSED),
            files::purpose.eq(done.purpose),
            files::bytes.eq(done.bytes),
            files::sha256.eq(done.sha256),
            files::expires_at.eq(done.expires_at),
        ))
        .returning(FileRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Marks an uploading file failed, with the reason shown in `status_details`.
pub async fn mark_error(
    conn: &mut AsyncPgConnection,
    id: &str,
    details: &str,
) -> Result<(), DbError> {
    diesel::update(files::table.find(id))
        .filter(files::status.eq(UPLOADING))
        .set((files::status.eq(ERROR), files::status_details.eq(details)))
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant's file `id` unless deleted; `NotFound` for another tenant's file.
pub async fn get(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    id: &str,
) -> Result<FileRow, DbError> {
    Ok(files::table
        .filter(files::id.eq(id))
        .filter(files::tenant_id.eq(tenant_id))
        .filter(files::status.ne(DELETED))
        .select(FileRow::as_select())
        .first(conn)
        .await?)
}

/// A page of the tenant's files in `created_at` then `id` order, after the cursor.
/// An `after` id that is not the tenant's (or is unknown) yields `NotFound`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    filter: &ListFilter<'_>,
) -> Result<Vec<FileRow>, DbError> {
    let mut query = files::table
        .filter(files::tenant_id.eq(tenant_id))
        .select(FileRow::as_select())
        .into_boxed();
    query = match filter.status {
        Some(status) => query.filter(files::status.eq(status.to_owned())),
        None => query.filter(files::status.eq(PROCESSED)),
    };
    if let Some(purpose) = filter.purpose {
        query = query.filter(files::purpose.eq(purpose.to_owned()));
    }
    if let Some(after) = filter.after {
        let cursor: (DateTime<Utc>, String) = files::table
            .filter(files::id.eq(after))
            .filter(files::tenant_id.eq(tenant_id))
            .select((files::created_at, files::id))
            .first(conn)
            .await?;
        let (at, id) = cursor;
        query = if filter.ascending {
            query.filter(
                files::created_at
                    .gt(at)
                    .or(files::created_at.eq(at).and(files::id.gt(id))),
            )
        } else {
            query.filter(
                files::created_at
                    .lt(at)
                    .or(files::created_at.eq(at).and(files::id.lt(id))),
            )
        };
    }
    query = if filter.ascending {
        query.order((files::created_at.asc(), files::id.asc()))
    } else {
        query.order((files::created_at.desc(), files::id.desc()))
    };
    Ok(query.limit(filter.limit).load(conn).await?)
}

/// Marks the tenant's file `id` deleted and returns the row as it was (its storage key);
/// `NotFound` when it is not the tenant's or already deleted.
pub async fn mark_deleted(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    id: &str,
    now: DateTime<Utc>,
) -> Result<FileRow, DbError> {
    Ok(diesel::update(files::table.find(id))
        .filter(files::tenant_id.eq(tenant_id))
        .filter(files::status.ne(DELETED))
        .set((files::status.eq(DELETED), files::deleted_at.eq(now)))
        .returning(FileRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Up to `limit` files expired at `now` and not deleted, oldest expiry first, locked for
/// the caller's transaction; rows another transaction holds are skipped.
pub async fn claim_expired(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<FileRow>, DbError> {
    Ok(files::table
        .filter(files::status.ne(DELETED))
        .filter(files::expires_at.le(now))
        .order(files::expires_at.asc())
        .limit(limit)
        .select(FileRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await?)
}

/// Marks the files `ids` deleted (the sweeper, after their blobs are gone).
pub async fn mark_swept(
    conn: &mut AsyncPgConnection,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(files::table.filter(files::id.eq_any(ids)))
        .set((files::status.eq(DELETED), files::deleted_at.eq(now)))
        .execute(conn)
        .await?)
}
