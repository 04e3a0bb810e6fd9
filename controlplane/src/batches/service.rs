//! Batches of a tenant: create (request checks, then the input file streamed line by line,
//! each line validated and stored in one transaction), get, list and cancel. Everything is
//! scoped by the caller's tenant: another tenant's batch answers as missing.

use std::collections::{BTreeSet, HashMap};

use chrono::{Duration as TimeSpan, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::StreamExt;
use serde::Deserialize;
use uuid::Uuid;

use super::lines::{self, LineError, LineRules, LineSplitter, Piece, ValidLine};
use super::object::BatchList;
use super::{random_id, BatchError, ENDPOINTS};
use crate::db::batches::{self as sql, Batch, NewLine, INSERT_CHUNK};
use crate::db::{self, DbError};
use crate::files::service::{FileError, FileObject, EXPIRY_RANGE_SECS};
use crate::service::audit::{Action, Actor, Entry};
use crate::state::AppState;

/// Who a batch belongs to and runs as: the key's tenant, the key, its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOwner {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub user_id: Option<Uuid>,
}

/// `POST /v1/batches`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBatch {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    /// Up to 16 pairs; keys up to 64 characters, values up to 512.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// When the output and error files expire: `{anchor: "created_at", seconds:
    /// 3600..=2592000}` after they are written. Absent: kept until deleted.
    #[serde(default)]
    pub output_expires_after: Option<OutputExpiry>,
}

/// `output_expires_after` of `POST /v1/batches`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputExpiry {
    /// Must be `created_at` (the output file's creation).
    pub anchor: String,
    /// 3600 (1 hour) to 2592000 (30 days).
    pub seconds: i32,
}

/// Bytes of valid lines buffered before they are inserted.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The checks of the request itself (before the file is read).
pub fn check_request(request: &NewBatch) -> Result<(), BatchError> {
    if request.input_file_id.trim().is_empty() {
        return Err(BatchError::invalid(
            "input_file_id",
            "`input_file_id` is required.",
        ));
    }
    if !ENDPOINTS.contains(&request.endpoint.as_str()) {
        return Err(BatchError::invalid(
            "endpoint",
            format!(
                "Unsupported endpoint `{}`; one of {}.",
                request.endpoint,
                ENDPOINTS.join(", ")
            ),
        ));
    }
    if request.completion_window != "24h" {
        return Err(BatchError::invalid(
            "completion_window",
            "`completion_window` must be `24h`.",
        ));
    }
    check_output_expiry(request.output_expires_after.as_ref())?;
    check_metadata(request.metadata.as_ref())
}

fn check_output_expiry(expiry: Option<&OutputExpiry>) -> Result<(), BatchError> {
    match expiry {
        Some(e) if e.anchor != "created_at" || !EXPIRY_RANGE_SECS.contains(&i64::from(e.seconds)) => {
            Err(BatchError::invalid(
                "output_expires_after",
                "`output_expires_after` must be {\"anchor\": \"created_at\", \"seconds\": 3600..2592000}.",
            ))
        }
        _ => Ok(()),
    }
}

fn check_metadata(metadata: Option<&serde_json::Value>) -> Result<(), BatchError> {
    let Some(value) = metadata.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let bad = |message: &str| Err(BatchError::invalid("metadata", message));
    let Some(map) = value.as_object() else {
        return bad("`metadata` must be an object of string values.");
    };
    if map.len() > 16 {
        return bad("`metadata` holds at most 16 pairs.");
    }
    for (key, value) in map {
        if key.chars().count() > 64 {
            return bad("`metadata` keys are at most 64 characters long.");
        }
        match value.as_str() {
            Some(text) if text.chars().count() <= 512 => {}
            Some(_) => return bad("`metadata` values are at most 512 characters long."),
            None => return bad("`metadata` values must be strings."),
        }
    }
    Ok(())
}

/// Whether batches can run here: the worker needs `batches.enabled` and a data plane.
fn check_available(state: &AppState) -> Result<(), BatchError> {
    let batches = &state.config.batches;
    if !batches.enabled {
        return Err(BatchError::Unavailable(
            "Batches are disabled on this gateway (batches.enabled is false).".to_owned(),
        ));
    }
    if batches.dataplane_url.is_none() {
        return Err(BatchError::Unavailable(
            "Batches need batches.dataplane_url: the control plane has no data plane to send \
             batch lines to. Ask the operator to set it."
                .to_owned(),
        ));
    }
    Ok(())
}

/// The aliases the key may use: the catalog's enabled aliases within the tenant's and the
/// key's allowlists (what a data plane applies).
async fn allowed_models(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    owner: &BatchOwner,
) -> Result<BTreeSet<String>, BatchError> {
    let key = db::keys::get(conn, owner.tenant_id, owner.key_id).await?;
    let tenant = db::tenants::get(conn, owner.tenant_id).await?;
    let disabled: BTreeSet<String> = db::catalog::alias_settings(conn)
        .await?
        .into_iter()
        .filter(|(_, enabled)| !enabled)
        .map(|(alias, _)| alias)
        .collect();
    let mut names: BTreeSet<String> = state
        .config
        .model_catalog
        .iter()
        .map(|e| e.alias.clone())
        .collect();
    names.extend(
        db::catalog::deployments(conn)
            .await?
            .into_iter()
            .map(|d| d.alias),
    );
    Ok(names
        .into_iter()
        .filter(|alias| !disabled.contains(alias))
        .filter(|alias| {
            tenant
                .allowed_models
                .as_ref()
                .is_none_or(|l| l.contains(alias))
        })
        .filter(|alias| {
            key.allowed_models
                .as_ref()
                .is_none_or(|l| l.contains(alias))
        })
        .collect())
}

/// Creates a batch: the request checked, the input file (purpose `batch`, the caller's
/// tenant) read line by line and validated. Valid: stored `in_progress` with its lines.
/// Problems in lines: stored `failed` with them listed in `errors`.
pub async fn create(
    state: &AppState,
    owner: &BatchOwner,
    request: NewBatch,
) -> Result<Batch, BatchError> {
    check_request(&request)?;
    check_available(state)?;
    input_file(state, owner, &request.input_file_id).await?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let allowed = allowed_models(state, &mut conn, owner).await?;
    let batch = new_batch(owner, &request, Utc::now());
    let may_use = move |model: &str| allowed.contains(model);
    db::transaction::begin(&mut conn).await?;
    let loaded = async {
        sql::insert(&mut conn, &batch).await?;
        let (total, model) = load_lines(state, &mut conn, &batch, &may_use).await?;
        Ok::<_, Loading>(sql::start(&mut conn, &batch.id, total, model.as_deref()).await?)
    }
    .await;
    match loaded {
        Ok(started) => {
            db::transaction::commit(&mut conn).await?;
            tracing::info!(batch = %started.id, tenant = %owner.tenant_id, lines = started.total, "batch created");
            Ok(started)
        }
        Err(failure) => {
            // `NotFound` stands for "rolled back"; anything else is the rollback's failure.
            match (
                failure,
                db::transaction::rollback(&mut conn, DbError::NotFound).await,
            ) {
                (Loading::Rejected(errors), DbError::NotFound) => {
                    Ok(store_failed(&mut conn, batch, errors).await?)
                }
                (Loading::File(e), DbError::NotFound) => Err(e.into()),
                (Loading::Db(e), DbError::NotFound) => Err(e.into()),
                (_, rollback) => Err(rollback.into()),
            }
        }
    }
}

/// The input file `id` of the caller's tenant, stored and uploaded with purpose `batch`.
async fn input_file(
    state: &AppState,
    owner: &BatchOwner,
    id: &str,
) -> Result<FileObject, BatchError> {
    let file = match state.files.get(owner.tenant_id, id).await {
        Ok(file) => file,
        Err(FileError::NotFound) => return Err(BatchError::InputFileNotFound(id.to_owned())),
        Err(e) => return Err(e.into()),
    };
    if file.status != "processed" {
        return Err(BatchError::invalid(
            "input_file_id",
            format!(
                "The file `{}` is not ready (status `{}`); upload it again.",
                file.id, file.status
            ),
        ));
    }
    if file.purpose != "batch" {
        return Err(BatchError::invalid(
            "input_file_id",
            format!(
                "The file `{}` has purpose `{}`; upload the input with purpose `batch`.",
                file.id, file.purpose
            ),
        ));
    }
    Ok(file)
}

/// A new batch of `owner` as requested, `validating`, expiring 24 h after `now`.
fn new_batch(owner: &BatchOwner, request: &NewBatch, now: chrono::DateTime<Utc>) -> Batch {
    Batch {
        id: random_id("batch_"),
        tenant_id: owner.tenant_id,
        key_id: owner.key_id,
        user_id: owner.user_id,
        endpoint: request.endpoint.clone(),
        input_file_id: request.input_file_id.clone(),
        completion_window: request.completion_window.clone(),
        status: "validating".to_owned(),
        output_file_id: None,
        error_file_id: None,
        errors: None,
        metadata: request.metadata.clone().filter(|m| !m.is_null()),
        model: None,
        total: 0,
        completed: 0,
        failed: 0,
        input_tokens: 0,
        cached_tokens: 0,
        output_tokens: 0,
        reasoning_tokens: 0,
        stop_code: None,
        stop_message: None,
        created_at: now,
        in_progress_at: None,
        expires_at: now + TimeSpan::hours(24),
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        output_expires_secs: request.output_expires_after.as_ref().map(|e| e.seconds),
    }
}

/// Why loading the lines stopped.
enum Loading {
    Rejected(Vec<LineError>),
    Db(DbError),
    File(FileError),
}

impl From<DbError> for Loading {
    fn from(e: DbError) -> Self {
        Loading::Db(e)
    }
}

/// Validation state over the file.
struct Check {
    seen: HashMap<String, i32>,
    errors: Vec<LineError>,
    more_errors: usize,
    valid: usize,
    model: Option<String>,
    chunk: Vec<NewLine>,
    chunk_bytes: usize,
}

impl Check {
    fn problem(&mut self, error: LineError) {
        if self.errors.len() < lines::MAX_LISTED_ERRORS {
            self.errors.push(error);
        } else {
            self.more_errors += 1;
        }
    }

    fn accept(&mut self, batch_id: &str, line: ValidLine) {
        self.valid += 1;
        if self.model.is_none() {
            self.model = Some(line.model.clone());
        }
        if self.errors.is_empty() {
            self.chunk_bytes += line.body.len();
            self.chunk.push(NewLine {
                batch_id: batch_id.to_owned(),
                line: line.line,
                custom_id: line.custom_id,
                method: "POST".to_owned(),
                url: line.url,
                body: line.body,
            });
        }
    }

    fn full(&self) -> bool {
        self.chunk.len() >= INSERT_CHUNK || self.chunk_bytes >= CHUNK_BYTES
    }

    async fn flush(&mut self, conn: &mut AsyncPgConnection) -> Result<(), DbError> {
        if self.errors.is_empty() {
            sql::insert_lines(conn, &self.chunk).await?;
        }
        self.chunk.clear();
        self.chunk_bytes = 0;
        Ok(())
    }
}

/// Streams the input file, validates every line and inserts the valid ones in chunks; the
/// line count and first model, or every problem found (the transaction is then rolled back).
async fn load_lines(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    batch: &Batch,
    may_use: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(i32, Option<String>), Loading> {
    let limits = &state.config.batches;
    let max_body = usize::try_from(limits.max_line_kb).unwrap_or(1024) * 1024;
    let rules = LineRules {
        endpoint: &batch.endpoint,
        max_body_bytes: max_body,
        may_use,
    };
    let max_lines = usize::try_from(limits.max_requests).unwrap_or(50_000);
    let (_, mut stream) = state
        .files
        .open(batch.tenant_id, &batch.input_file_id)
        .await
        .map_err(Loading::File)?;
    // A line holds its body plus the request's envelope.
    let mut splitter = LineSplitter::new(max_body + 64 * 1024);
    let mut check = Check {
        seen: HashMap::new(),
        errors: Vec::new(),
        more_errors: 0,
        valid: 0,
        model: None,
        chunk: Vec::new(),
        chunk_bytes: 0,
    };
    let mut pieces = Vec::new();
    let mut too_many = false;
    let mut ended = false;
    while !ended && !too_many {
        match stream.next().await {
            Some(chunk) => splitter.push(&chunk.map_err(Loading::File)?, &mut pieces),
            None => {
                splitter.finish(&mut pieces);
                ended = true;
            }
        }
        for piece in pieces.drain(..) {
            if check.valid + check.errors.len() + check.more_errors >= max_lines {
                too_many = true;
                break;
            }
            match piece {
                Piece::TooLong(n) => check.problem(LineError {
                    code: "line_too_large",
                    message: format!(
                        "The line is longer than batches.max_line_kb ({} KiB) allows.",
                        limits.max_line_kb
                    ),
                    param: Some("body"),
                    line: Some(n),
                }),
                Piece::Line(n, bytes) => {
                    match lines::check_line(n, &bytes, &rules, &mut check.seen) {
                        Ok(valid) => check.accept(&batch.id, valid),
                        Err(error) => check.problem(error),
                    }
                }
            }
            if check.full() {
                check.flush(conn).await?;
            }
        }
    }
    check.flush(conn).await?;
    finish_check(check, too_many, max_lines)
}

fn finish_check(
    mut check: Check,
    too_many: bool,
    max_lines: usize,
) -> Result<(i32, Option<String>), Loading> {
    if too_many {
        check.problem(LineError {
            code: "too_many_requests",
            message: format!(
                "The file holds more than {max_lines} requests (batches.max_requests); split it."
            ),
            param: None,
            line: None,
        });
    }
    if check.valid == 0 && check.errors.is_empty() {
        check.problem(LineError {
            code: "empty_file",
            message: "The input file holds no requests.".to_owned(),
            param: None,
            line: None,
        });
    }
    if check.more_errors > 0 {
        let more = check.more_errors;
        check.errors.push(LineError {
            code: "too_many_errors",
            message: format!("{more} more problems were found and are not listed."),
            param: None,
            line: None,
        });
    }
    if check.errors.is_empty() {
        Ok((i32::try_from(check.valid).unwrap_or(i32::MAX), check.model))
    } else {
        Err(Loading::Rejected(check.errors))
    }
}

/// Stores a batch whose file failed validation: `failed`, its problems in `errors`.
async fn store_failed(
    conn: &mut AsyncPgConnection,
    mut batch: Batch,
    errors: Vec<LineError>,
) -> Result<Batch, DbError> {
    let now = Utc::now();
    batch.status = "failed".to_owned();
    batch.failed_at = Some(now);
    batch.errors = Some(serde_json::to_value(&errors).unwrap_or_default());
    sql::insert(conn, &batch).await?;
    tracing::info!(batch = %batch.id, tenant = %batch.tenant_id, problems = errors.len(), "batch failed validation");
    Ok(batch)
}

/// One batch of the tenant.
pub async fn get(state: &AppState, tenant_id: Uuid, id: &str) -> Result<Batch, BatchError> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    match sql::get(&mut conn, tenant_id, id).await {
        Err(DbError::NotFound) => Err(BatchError::NotFound(id.to_owned())),
        other => Ok(other?),
    }
}

/// `?after=&limit=` (limit 1–100, default 20) and, for operators, `status`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub after: Option<String>,
    pub limit: Option<i64>,
    pub status: Option<String>,
}

/// A page of the tenant's batches, newest first (only `user_id`'s when given).
pub async fn list(
    state: &AppState,
    tenant_id: Uuid,
    query: &ListQuery,
    user_id: Option<Uuid>,
) -> Result<BatchList, BatchError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(BatchError::invalid(
            "limit",
            "`limit` must be between 1 and 100.",
        ));
    }
    let statuses = [
        "validating",
        "failed",
        "in_progress",
        "finalizing",
        "completed",
        "expired",
        "cancelling",
        "cancelled",
    ];
    if let Some(status) = &query.status {
        if !statuses.contains(&status.as_str()) {
            return Err(BatchError::invalid(
                "status",
                format!("Unknown status `{status}`; one of {}.", statuses.join(", ")),
            ));
        }
    }
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let rows = sql::list(
        &mut conn,
        tenant_id,
        query.after.as_deref().filter(|a| !a.is_empty()),
        query.status.as_deref(),
        user_id,
        limit + 1,
    )
    .await;
    match rows {
        Err(DbError::NotFound) => Err(BatchError::invalid(
            "after",
            "`after` names no batch of yours.",
        )),
        rows => Ok(BatchList::from_rows(
            rows?,
            usize::try_from(limit).unwrap_or(20),
        )),
    }
}

/// Cancels a batch: a running one becomes `cancelling` (the worker stops sending its lines,
/// fails the pending ones with `batch_cancelled` and ends it `cancelled`), with an audit
/// entry by `actor`. Cancelling a cancelling or cancelled batch answers it as it is; a batch
/// that has ended otherwise cannot be cancelled.
pub async fn cancel(
    state: &AppState,
    tenant_id: Uuid,
    id: &str,
    actor: Actor<'_>,
) -> Result<Batch, BatchError> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let result = crate::service::mutate::mutate(state, &mut conn, actor, async |tx| {
        let (batch, changed) = sql::request_cancel(tx.conn, tenant_id, id).await?;
        if changed {
            tx.record(Entry {
                action: Action::BatchCancel,
                target_id: batch.id.clone(),
                tenant_id: Some(tenant_id),
                before: Some(serde_json::json!({"status": "in_progress"})),
                after: Some(serde_json::json!({"status": "cancelling"})),
            })
            .await?;
        }
        Ok((batch, changed))
    })
    .await;
    let (batch, changed) = match result {
        Err(DbError::NotFound) => return Err(BatchError::NotFound(id.to_owned())),
        other => other?,
    };
    if changed {
        tracing::info!(batch = %batch.id, tenant = %tenant_id, "batch worker: cancellation requested");
    } else if !matches!(batch.status.as_str(), "cancelling" | "cancelled") {
        return Err(BatchError::NotCancellable(format!(
            "The batch is `{}` and can no longer be cancelled.",
            batch.status
        )));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(endpoint: &str, window: &str, metadata: Option<serde_json::Value>) -> NewBatch {
        NewBatch {
            input_file_id: "file-x".into(),
            endpoint: endpoint.into(),
            completion_window: window.into(),
            metadata,
            output_expires_after: None,
        }
    }

    fn param(result: Result<(), BatchError>) -> Option<&'static str> {
        match result {
            Err(BatchError::Invalid { param, .. }) => param,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn output_expiry_is_created_at_plus_an_hour_to_thirty_days() {
        let with = |anchor: &str, seconds: i32| NewBatch {
            output_expires_after: Some(OutputExpiry {
                anchor: anchor.into(),
                seconds,
            }),
            ..request("/v1/chat/completions", "24h", None)
        };
        assert!(check_request(&with("created_at", 3600)).is_ok());
        assert!(check_request(&with("created_at", 2_592_000)).is_ok());
        for bad in [
            with("created_at", 3599),
            with("created_at", 2_592_001),
            with("now", 7200),
        ] {
            assert_eq!(param(check_request(&bad)), Some("output_expires_after"));
        }
        assert_eq!(new_batch_expiry(&with("created_at", 7200)), Some(7200));
    }

    fn new_batch_expiry(request: &NewBatch) -> Option<i32> {
        let owner = BatchOwner {
            tenant_id: Uuid::nil(),
            key_id: Uuid::nil(),
            user_id: None,
        };
        new_batch(&owner, request, Utc::now()).output_expires_secs
    }

    #[test]
    fn request_checks_name_the_parameter() {
        assert!(check_request(&request("/v1/chat/completions", "24h", None)).is_ok());
        assert!(check_request(&request(
            "/v1/messages",
            "24h",
            Some(serde_json::json!({"a": "b"}))
        ))
        .is_ok());
        assert_eq!(
            param(check_request(&request(
                "/v1/images/generations",
                "24h",
                None
            ))),
            Some("endpoint")
        );
        assert_eq!(
            param(check_request(&request("/v1/embeddings", "48h", None))),
            Some("completion_window")
        );
        let many: serde_json::Map<String, serde_json::Value> =
            (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        for bad in [
            serde_json::Value::Object(many),
            serde_json::json!({"k": 1}),
            serde_json::json!({"k".repeat(65): "v"}),
            serde_json::json!({"k": "v".repeat(513)}),
            serde_json::json!(["a"]),
        ] {
            assert_eq!(
                param(check_request(&request("/v1/embeddings", "24h", Some(bad)))),
                Some("metadata")
            );
        }
        let mut no_file = request("/v1/embeddings", "24h", None);
        no_file.input_file_id = " ".into();
        assert_eq!(param(check_request(&no_file)), Some("input_file_id"));
    }
}
