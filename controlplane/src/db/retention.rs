//! Deleting expired rows for the retention job (`workers/retention.rs`): one bounded
//! statement per call, each its own short transaction, touching only rows older than the
//! cutoff (the ingester only inserts new ones, so the two never wait on each other).

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Int4, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;

/// First key of the two-key advisory lock held during a retention pass (`'retn'`), so that
/// two control planes do not delete the same rows at once.
const RETENTION_LOCK_CLASS: i32 = 0x7265_746e;

/// A table the retention job prunes, with the column its age is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pruned {
    /// `requests.started_at`.
    Requests,
    /// `usage_rollups.hour`.
    Rollups,
    /// `usage_rollups_coarse.hour`.
    RollupsCoarse,
    /// `budget_alert_events.created_at`.
    AlertEvents,
}

impl Pruned {
    /// The table's name (also the metric label).
    pub fn table(self) -> &'static str {
        match self {
            Pruned::Requests => "requests",
            Pruned::Rollups => "usage_rollups",
            Pruned::RollupsCoarse => "usage_rollups_coarse",
            Pruned::AlertEvents => "budget_alert_events",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Pruned::Requests => "started_at",
            Pruned::Rollups | Pruned::RollupsCoarse => "hour",
            Pruned::AlertEvents => "created_at",
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    value: bool,
}

/// Deletes up to `limit` rows of `table` older than `cutoff`; returns how many. The rows are
/// picked through the table's time index and deleted by `ctid` in the same statement.
pub async fn delete_batch(
    conn: &mut AsyncPgConnection,
    table: Pruned,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<usize, DbError> {
    let (name, column) = (table.table(), table.column());
    let sql = format!(
        "DELETE FROM {name} WHERE ctid = ANY(ARRAY(\
             SELECT ctid FROM {name} WHERE {column} < $1 LIMIT $2))"
    );
    Ok(diesel::sql_query(sql)
        .bind::<Timestamptz, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .execute(conn)
        .await?)
}

/// Tries the pass lock (session level, on `conn`) without waiting: `false` when another
/// control plane is running a pass.
pub async fn try_lock(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
    let row: Flag = diesel::sql_query("SELECT pg_try_advisory_lock($1, 0) AS value")
        .bind::<Int4, _>(RETENTION_LOCK_CLASS)
        .get_result(conn)
        .await?;
    Ok(row.value)
}

/// Releases [`try_lock`]'s lock (on the same connection).
pub async fn unlock(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    let _: Flag = diesel::sql_query("SELECT pg_advisory_unlock($1, 0) AS value")
        .bind::<Int4, _>(RETENTION_LOCK_CLASS)
        .get_result(conn)
        .await?;
    Ok(())
}
