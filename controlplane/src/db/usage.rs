//! Usage: the `requests` table (one row per usage event) and the dead letters of the usage
//! stream.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{DeadLetter, NewDeadLetter, NewRequestRecord, RequestRecord};
use super::schema::{requests, usage_dead_letters};
use super::DbError;

/// Rows per `INSERT` statement: 25 bound columns each keeps a statement well under
/// Postgres' 65,535 parameters whatever `cluster.usage_batch_size` is.
const ROWS_PER_STATEMENT: usize = 1000;

/// What one [`ingest_batch`] stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Requests inserted (the others were already stored: same `event_id`).
    pub inserted: usize,
    /// Dead letters inserted (the others were already parked: same stream entry).
    pub dead_lettered: usize,
}

/// Stores a batch in one transaction: the requests (`ON CONFLICT (event_id) DO NOTHING`)
/// and the hourly rollups of those actually inserted (`reporting::add_events`), the dead
/// letters (`ON CONFLICT (stream, entry_id) DO NOTHING`), and each key's
/// `last_used_at`, raised to the latest `started_at` of its requests (never lowered). Rows and
/// keys are written in id order, so concurrent batches that overlap (two replicas, a reclaim)
/// take their locks in the same order and cannot deadlock. Statements running longer than
/// `statement_timeout` are cancelled by the server.
pub async fn ingest_batch(
    conn: &mut AsyncPgConnection,
    mut records: Vec<NewRequestRecord>,
    dead_letters: &[NewDeadLetter],
    statement_timeout: Duration,
) -> Result<BatchOutcome, DbError> {
    records.sort_by_key(|r| r.event_id);
    let mut last_used: BTreeMap<Uuid, DateTime<Utc>> = BTreeMap::new();
    for record in &records {
        if let Some(key) = record.key_id {
            let at = last_used.entry(key).or_insert(record.started_at);
            *at = (*at).max(record.started_at);
        }
    }
    let timeout_ms = statement_timeout.as_millis().clamp(1, i32::MAX as u128);
    conn.transaction(async |conn| {
        // SET takes no bind parameters; the value is an integer we formatted.
        diesel::sql_query(format!("SET LOCAL statement_timeout = {timeout_ms}"))
            .execute(conn)
            .await?;
        let mut outcome = BatchOutcome::default();
        for chunk in dead_letters.chunks(ROWS_PER_STATEMENT) {
            outcome.dead_lettered += diesel::insert_into(usage_dead_letters::table)
                .values(chunk)
                .on_conflict((usage_dead_letters::stream, usage_dead_letters::entry_id))
                .do_nothing()
                .execute(conn)
                .await?;
        }
        // The rollups' shared lock first: a rebuild of these hours waits for this batch.
        super::reporting::lock_for_ingest(conn).await?;
        let mut inserted: Vec<Uuid> = Vec::with_capacity(records.len());
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let ids: Vec<Uuid> = diesel::insert_into(requests::table)
                .values(chunk)
                .on_conflict(requests::event_id)
                .do_nothing()
                .returning(requests::event_id)
                .get_results(conn)
                .await?;
            inserted.extend(ids);
        }
        // Only the rows inserted now count: a redelivered event is in its rollup already.
        super::reporting::add_events(conn, &inserted).await?;
        outcome.inserted = inserted.len();
        if !last_used.is_empty() {
            let (ids, ats): (Vec<Uuid>, Vec<DateTime<Utc>>) = last_used.into_iter().unzip();
            // Lock the keys to raise in id order, then raise them (GREATEST: a concurrent
            // batch may have raised one further meanwhile).
            diesel::sql_query(
                "WITH latest AS ( \
                     SELECT k.id, u.at FROM api_keys k \
                     JOIN unnest($1, $2) AS u(id, at) ON u.id = k.id \
                     WHERE k.last_used_at IS NULL OR k.last_used_at < u.at \
                     ORDER BY k.id \
                     FOR NO KEY UPDATE OF k) \
                 UPDATE api_keys SET last_used_at = GREATEST(api_keys.last_used_at, latest.at) \
                 FROM latest WHERE api_keys.id = latest.id",
            )
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<Timestamptz>, _>(ats)
            .execute(conn)
            .await?;
        }
        Ok(outcome)
    })
    .await
}

/// One stored request by its event id.
pub async fn find_request(
    conn: &mut AsyncPgConnection,
    event_id: Uuid,
) -> Result<Option<RequestRecord>, DbError> {
    Ok(requests::table
        .find(event_id)
        .select(RequestRecord::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The dead letters of a stream, oldest first.
pub async fn dead_letters(
    conn: &mut AsyncPgConnection,
    stream: &str,
) -> Result<Vec<DeadLetter>, DbError> {
    Ok(usage_dead_letters::table
        .filter(usage_dead_letters::stream.eq(stream))
        .order(usage_dead_letters::id.asc())
        .select(DeadLetter::as_select())
        .load(conn)
        .await?)
}
