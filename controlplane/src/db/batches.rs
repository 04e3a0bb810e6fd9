//! Batches and their lines (`batches`, `batch_lines`): creation, the tenant-scoped reads, the
//! cancel request, and the batch worker's statements — the line claim (`FOR UPDATE SKIP
//! LOCKED`, safe with several control planes), the outcome of a line together with its
//! batch's counters in one statement, the mass failure of open lines (cancel, expiry, budget
//! stop) and the finalization steps.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Int4, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{batch_lines, batches};
use super::DbError;

/// A batch row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, QueryableByName)]
#[diesel(table_name = batches)]
pub struct Batch {
    pub id: String,
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub user_id: Option<Uuid>,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub errors: Option<serde_json::Value>,
    pub metadata: Option<serde_json::Value>,
    pub model: Option<String>,
    pub total: i32,
    pub completed: i32,
    pub failed: i32,
    pub input_tokens: i64,
    pub cached_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub stop_code: Option<String>,
    pub stop_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub in_progress_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub finalizing_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub expired_at: Option<DateTime<Utc>>,
    pub cancelling_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Output and error files expire this long after they are written (none: kept).
    pub output_expires_secs: Option<i32>,
}

/// A line to insert (state `pending`).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = batch_lines)]
pub struct NewLine {
    pub batch_id: String,
    pub line: i32,
    pub custom_id: String,
    pub method: String,
    pub url: String,
    pub body: Vec<u8>,
}

/// A line claimed by a worker.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedLine {
    #[diesel(sql_type = Int4)]
    pub line: i32,
    #[diesel(sql_type = Text)]
    pub custom_id: String,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Bytea)]
    pub body: Vec<u8>,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
}

/// A finished line, as the output and error files need it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = batch_lines)]
pub struct FinishedLine {
    pub line: i32,
    pub custom_id: String,
    pub status_code: Option<i32>,
    pub request_id: Option<String>,
    pub response: Option<Vec<u8>>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// How a claimed line ended, with what its batch gains.
#[derive(Debug, Clone, Default)]
pub struct LineOutcome {
    /// `done` (2xx) or `failed`.
    pub done: bool,
    pub status_code: Option<i32>,
    pub request_id: Option<String>,
    pub response: Option<Vec<u8>>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub input_tokens: i64,
    pub cached_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    /// Stops the batch (its remaining lines fail with this code and message).
    pub stop: Option<(String, String)>,
}

/// A batch the worker has work for, with whether lines are still open.
#[derive(Debug, Clone, QueryableByName)]
pub struct ActiveBatch {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub tenant_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub key_id: Uuid,
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    pub user_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub stop_code: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub stop_message: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub expired: bool,
    /// Lines pending or claimed.
    #[diesel(sql_type = BigInt)]
    pub open: i64,
    /// Lines pending (or claimed under an expired lease): what can be claimed now.
    #[diesel(sql_type = BigInt)]
    pub claimable: i64,
}

/// Rows per insert statement when lines are stored (Postgres allows 65535 parameters; a line
/// takes 6).
pub const INSERT_CHUNK: usize = 1000;

/// Inserts a batch.
pub async fn insert(conn: &mut AsyncPgConnection, batch: &Batch) -> Result<(), DbError> {
    diesel::insert_into(batches::table)
        .values(batch)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts lines (call in chunks of at most [`INSERT_CHUNK`]).
pub async fn insert_lines(conn: &mut AsyncPgConnection, lines: &[NewLine]) -> Result<(), DbError> {
    if lines.is_empty() {
        return Ok(());
    }
    diesel::insert_into(batch_lines::table)
        .values(lines)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a batch (inserted `validating` in the same transaction) `in_progress` with `total`
/// lines and the model of its first line.
pub async fn start(
    conn: &mut AsyncPgConnection,
    id: &str,
    total: i32,
    model: Option<&str>,
) -> Result<Batch, DbError> {
    Ok(diesel::update(batches::table.filter(batches::id.eq(id)))
        .set((
            batches::status.eq("in_progress"),
            batches::in_progress_at.eq(diesel::dsl::now),
            batches::total.eq(total),
            batches::model.eq(model),
        ))
        .returning(Batch::as_returning())
        .get_result(conn)
        .await?)
}

/// One batch of a tenant (`NotFound` for another tenant's).
pub async fn get(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    id: &str,
) -> Result<Batch, DbError> {
    Ok(batches::table
        .filter(batches::id.eq(id))
        .filter(batches::tenant_id.eq(tenant_id))
        .select(Batch::as_select())
        .first(conn)
        .await?)
}

/// A page of a tenant's batches, newest first: at most `limit` after the batch `after`
/// (keyset on creation time then id), optionally of one `status` and of one owner `user_id`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    after: Option<&str>,
    status: Option<&str>,
    user_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Batch>, DbError> {
    let mut query = batches::table
        .filter(batches::tenant_id.eq(tenant_id))
        .select(Batch::as_select())
        .into_boxed();
    if let Some(after) = after {
        let anchor: (DateTime<Utc>, String) = batches::table
            .filter(batches::id.eq(after))
            .filter(batches::tenant_id.eq(tenant_id))
            .select((batches::created_at, batches::id))
            .first(conn)
            .await?;
        query = query.filter(
            batches::created_at.lt(anchor.0).or(batches::created_at
                .eq(anchor.0)
                .and(batches::id.lt(anchor.1))),
        );
    }
    if let Some(status) = status {
        query = query.filter(batches::status.eq(status.to_owned()));
    }
    if let Some(user) = user_id {
        query = query.filter(batches::user_id.eq(user));
    }
    Ok(query
        .order((batches::created_at.desc(), batches::id.desc()))
        .limit(limit)
        .load(conn)
        .await?)
}

/// Asks for a batch's cancellation: `in_progress` (or `validating`) becomes `cancelling`.
/// Returns the row after the change, or as it is when it was not running (the caller decides
/// what that means) — `NotFound` for another tenant's.
pub async fn request_cancel(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    id: &str,
) -> Result<(Batch, bool), DbError> {
    let changed = diesel::update(
        batches::table
            .filter(batches::id.eq(id))
            .filter(batches::tenant_id.eq(tenant_id))
            .filter(batches::status.eq_any(["validating", "in_progress"])),
    )
    .set((
        batches::status.eq("cancelling"),
        batches::cancelling_at.eq(diesel::dsl::now),
    ))
    .returning(Batch::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    match changed {
        Some(batch) => Ok((batch, true)),
        None => Ok((get(conn, tenant_id, id).await?, false)),
    }
}

/// The batches with work for a worker (`in_progress`, `cancelling`, `finalizing`), oldest
/// first, with their open and claimable line counts.
pub async fn active(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<ActiveBatch>, DbError> {
    Ok(diesel::sql_query(
        "SELECT b.id, b.tenant_id, b.key_id, b.user_id, b.status, b.stop_code, b.stop_message, \
                b.expires_at < now() AS expired, \
                (SELECT count(*) FROM batch_lines l WHERE l.batch_id = b.id \
                   AND l.state IN ('pending', 'claimed')) AS open, \
                (SELECT count(*) FROM batch_lines l WHERE l.batch_id = b.id \
                   AND (l.state = 'pending' OR (l.state = 'claimed' AND l.claimed_until < now()))) \
                   AS claimable \
         FROM batches b WHERE b.status IN ('in_progress', 'cancelling', 'finalizing') \
         ORDER BY b.created_at, b.id LIMIT $1",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// Claims up to `n` lines of a running batch for `replica` until `lease_ms` from now: pending
/// lines, and lines whose previous claim expired (its worker died). Locked rows are skipped,
/// so two control planes never claim the same line; nothing is claimed once the batch is
/// cancelling, stopped or past its expiry. Each claim counts an attempt.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    batch_id: &str,
    replica: &str,
    lease_ms: i64,
    n: i64,
) -> Result<Vec<ClaimedLine>, DbError> {
    Ok(diesel::sql_query(
        "UPDATE batch_lines l SET state = 'claimed', claimed_by = $2, \
                claimed_until = now() + $3 * interval '1 millisecond', attempts = l.attempts + 1 \
         WHERE (l.batch_id, l.line) IN ( \
             SELECT c.batch_id, c.line FROM batch_lines c \
             WHERE c.batch_id = $1 \
               AND (c.state = 'pending' OR (c.state = 'claimed' AND c.claimed_until < now())) \
               AND EXISTS (SELECT 1 FROM batches b WHERE b.id = $1 AND b.status = 'in_progress' \
                           AND b.stop_code IS NULL AND b.expires_at > now()) \
             ORDER BY c.line LIMIT $4 FOR UPDATE SKIP LOCKED) \
         RETURNING l.line, l.custom_id, l.url, l.body, l.attempts",
    )
    .bind::<Text, _>(batch_id)
    .bind::<Text, _>(replica)
    .bind::<BigInt, _>(lease_ms)
    .bind::<BigInt, _>(n)
    .load(conn)
    .await?)
}

/// Puts a line this replica holds back to `pending` (a 429, a 503, the data plane
/// unreachable): its attempt stays counted. `false` when it was no longer ours.
pub async fn release(
    conn: &mut AsyncPgConnection,
    batch_id: &str,
    line: i32,
    replica: &str,
) -> Result<bool, DbError> {
    let n = diesel::update(
        batch_lines::table
            .filter(batch_lines::batch_id.eq(batch_id))
            .filter(batch_lines::line.eq(line))
            .filter(batch_lines::state.eq("claimed"))
            .filter(batch_lines::claimed_by.eq(replica)),
    )
    .set((
        batch_lines::state.eq("pending"),
        batch_lines::claimed_by.eq(None::<String>),
        batch_lines::claimed_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Extends the claims `replica` holds to `lease_ms` from now (its worker is alive); returns
/// how many lines it holds.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    replica: &str,
    lease_ms: i64,
) -> Result<usize, DbError> {
    Ok(diesel::sql_query(
        "UPDATE batch_lines SET claimed_until = now() + $2 * interval '1 millisecond' \
         WHERE state = 'claimed' AND claimed_by = $1",
    )
    .bind::<Text, _>(replica)
    .bind::<BigInt, _>(lease_ms)
    .execute(conn)
    .await?)
}

/// Puts every line `replica` holds back to `pending` (its worker stopping).
pub async fn release_all(conn: &mut AsyncPgConnection, replica: &str) -> Result<usize, DbError> {
    Ok(diesel::update(
        batch_lines::table
            .filter(batch_lines::state.eq("claimed"))
            .filter(batch_lines::claimed_by.eq(replica)),
    )
    .set((
        batch_lines::state.eq("pending"),
        batch_lines::claimed_by.eq(None::<String>),
        batch_lines::claimed_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await?)
}

/// Records how a line `replica` holds ended and adds it to its batch's counters and usage,
/// in one statement: nothing happens when the line is no longer claimed by `replica` (a line
/// finished twice counts once). Returns whether it was recorded.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    batch_id: &str,
    line: i32,
    replica: &str,
    outcome: &LineOutcome,
) -> Result<bool, DbError> {
    #[derive(QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let (stop_code, stop_message) = match &outcome.stop {
        Some((code, message)) => (Some(code.as_str()), Some(message.as_str())),
        None => (None, None),
    };
    let recorded: Option<Recorded> = diesel::sql_query(
        "WITH l AS ( \
             UPDATE batch_lines SET state = $4, status_code = $5, request_id = $6, response = $7, \
                    error_code = $8, error_message = $9, finished_at = now(), \
                    claimed_until = NULL \
             WHERE batch_id = $1 AND line = $2 AND state = 'claimed' AND claimed_by = $3 \
             RETURNING state) \
         UPDATE batches SET \
             completed = completed + (SELECT count(*) FROM l WHERE state = 'done'), \
             failed = failed + (SELECT count(*) FROM l WHERE state = 'failed'), \
             input_tokens = input_tokens + $10 * (SELECT count(*) FROM l), \
             cached_tokens = cached_tokens + $11 * (SELECT count(*) FROM l), \
             output_tokens = output_tokens + $12 * (SELECT count(*) FROM l), \
             reasoning_tokens = reasoning_tokens + $13 * (SELECT count(*) FROM l), \
             stop_code = CASE WHEN EXISTS (SELECT 1 FROM l) AND stop_code IS NULL \
                              THEN $14 ELSE stop_code END, \
             stop_message = CASE WHEN EXISTS (SELECT 1 FROM l) AND stop_code IS NULL \
                                 THEN $15 ELSE stop_message END \
         WHERE id = $1 RETURNING (SELECT count(*) FROM l) AS n",
    )
    .bind::<Text, _>(batch_id)
    .bind::<Int4, _>(line)
    .bind::<Text, _>(replica)
    .bind::<Text, _>(if outcome.done { "done" } else { "failed" })
    .bind::<Nullable<Int4>, _>(outcome.status_code)
    .bind::<Nullable<Text>, _>(outcome.request_id.as_deref())
    .bind::<Nullable<Bytea>, _>(outcome.response.as_deref())
    .bind::<Nullable<Text>, _>(outcome.error_code.as_deref())
    .bind::<Nullable<Text>, _>(outcome.error_message.as_deref())
    .bind::<BigInt, _>(outcome.input_tokens)
    .bind::<BigInt, _>(outcome.cached_tokens)
    .bind::<BigInt, _>(outcome.output_tokens)
    .bind::<BigInt, _>(outcome.reasoning_tokens)
    .bind::<Nullable<Text>, _>(stop_code)
    .bind::<Nullable<Text>, _>(stop_message)
    .get_result(conn)
    .await
    .optional()?;
    Ok(recorded.is_some_and(|r| r.n == 1))
}

/// Fails every line of a batch nobody is working on — pending, or claimed under an expired
/// lease — with `code` and `message`, and counts them in the batch, in one statement.
/// Returns how many failed.
pub async fn fail_open(
    conn: &mut AsyncPgConnection,
    batch_id: &str,
    code: &str,
    message: &str,
) -> Result<i64, DbError> {
    #[derive(QueryableByName)]
    struct Failed {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let failed: Failed = diesel::sql_query(
        "WITH f AS ( \
             UPDATE batch_lines SET state = 'failed', error_code = $2, error_message = $3, \
                    finished_at = now(), claimed_by = NULL, claimed_until = NULL \
             WHERE batch_id = $1 \
               AND (state = 'pending' OR (state = 'claimed' AND claimed_until < now())) \
             RETURNING 1) \
         UPDATE batches SET failed = failed + (SELECT count(*) FROM f) WHERE id = $1 \
         RETURNING (SELECT count(*) FROM f) AS n",
    )
    .bind::<Text, _>(batch_id)
    .bind::<Text, _>(code)
    .bind::<Text, _>(message)
    .get_result(conn)
    .await?;
    Ok(failed.n)
}

/// Stops running batches past their expiry (`stop_code` `batch_expired`); returns their ids.
pub async fn stop_expired(conn: &mut AsyncPgConnection) -> Result<Vec<String>, DbError> {
    Ok(diesel::update(
        batches::table
            .filter(batches::status.eq("in_progress"))
            .filter(batches::stop_code.is_null())
            .filter(batches::expires_at.lt(diesel::dsl::now)),
    )
    .set((
        batches::stop_code.eq("batch_expired"),
        batches::stop_message
            .eq("This request could not be executed before the completion window of 24h expired."),
    ))
    .returning(batches::id)
    .get_results(conn)
    .await?)
}

/// Starts finalizing a batch with no open line: `in_progress` becomes `finalizing`
/// (`cancelling` stays so until it is `cancelled`). Returns the row when the batch is (now or
/// still, after a crash) to be finalized, `None` when lines are open or it is finished.
pub async fn begin_finalizing(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> Result<Option<Batch>, DbError> {
    Ok(diesel::sql_query(
        "UPDATE batches SET \
             status = CASE WHEN status = 'cancelling' THEN 'cancelling' ELSE 'finalizing' END, \
             finalizing_at = CASE WHEN status = 'cancelling' THEN finalizing_at \
                                  ELSE coalesce(finalizing_at, now()) END \
         WHERE id = $1 AND status IN ('in_progress', 'cancelling', 'finalizing') \
           AND NOT EXISTS (SELECT 1 FROM batch_lines l WHERE l.batch_id = $1 \
                           AND l.state IN ('pending', 'claimed')) \
         RETURNING *",
    )
    .bind::<Text, _>(id)
    .get_result(conn)
    .await
    .optional()?)
}

/// A page of a batch's finished lines in one state (`done` or `failed`), by line number,
/// after line `after`.
pub async fn finished_page(
    conn: &mut AsyncPgConnection,
    batch_id: &str,
    state: &str,
    after: i32,
    limit: i64,
) -> Result<Vec<FinishedLine>, DbError> {
    Ok(batch_lines::table
        .filter(batch_lines::batch_id.eq(batch_id))
        .filter(batch_lines::state.eq(state.to_owned()))
        .filter(batch_lines::line.gt(after))
        .order(batch_lines::line.asc())
        .limit(limit)
        .select(FinishedLine::as_select())
        .load(conn)
        .await?)
}

/// Ends a batch being finalized: sets its files and final `status` (`completed`, `cancelled`
/// or `expired`, with its timestamp) — only while it is still `finalizing`/`cancelling`, so of
/// two finalizations one wins; the loser gets `false` and deletes its files. The winner's
/// lines lose their bodies and answers in the same transaction (the files hold them now).
pub async fn complete(
    conn: &mut AsyncPgConnection,
    id: &str,
    output_file_id: Option<&str>,
    error_file_id: Option<&str>,
    status: &str,
) -> Result<bool, DbError> {
    let column = match status {
        "cancelled" => "cancelled_at",
        "expired" => "expired_at",
        _ => "completed_at",
    };
    let sql = format!(
        "UPDATE batches SET output_file_id = $2, error_file_id = $3, status = $4, \
                {column} = now() \
         WHERE id = $1 AND status IN ('finalizing', 'cancelling')"
    );
    conn.transaction(async |conn| {
        let n = diesel::sql_query(&sql)
            .bind::<Text, _>(id)
            .bind::<Nullable<Text>, _>(output_file_id)
            .bind::<Nullable<Text>, _>(error_file_id)
            .bind::<Text, _>(status)
            .execute(conn)
            .await?;
        if n == 1 {
            diesel::update(batch_lines::table.filter(batch_lines::batch_id.eq(id)))
                .set((
                    batch_lines::body.eq(Vec::<u8>::new()),
                    batch_lines::response.eq(None::<Vec<u8>>),
                ))
                .execute(conn)
                .await?;
        }
        Ok::<bool, DbError>(n == 1)
    })
    .await
}

/// A batch by id whatever its tenant (the worker's view).
pub async fn by_id(conn: &mut AsyncPgConnection, id: &str) -> Result<Batch, DbError> {
    Ok(batches::table
        .filter(batches::id.eq(id))
        .select(Batch::as_select())
        .first(conn)
        .await?)
}
