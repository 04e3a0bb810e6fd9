//! Budget alerts: the tenants with requests in a window, the delivery history in
//! `budget_alert_events`, and the per-tenant advisory lock that keeps two control-plane
//! replicas from alerting the same tenant at once. (Window spend: `governance.rs`.)

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{AlertEvent, NewAlertEvent};
use super::schema::budget_alert_events;
use super::DbError;

/// First key of the two-key advisory lock space used for alert evaluation (`'alrt'`).
const ALERT_LOCK_CLASS: i32 = 0x616c_7274;

#[derive(QueryableByName)]
struct TenantId {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Live tenants with at least one request in `[from, until)` (one index probe per tenant).
pub async fn tenants_with_requests(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Uuid>, DbError> {
    let rows: Vec<TenantId> = diesel::sql_query(
        "SELECT t.id FROM tenants t WHERE t.deleted_at IS NULL AND EXISTS ( \
             SELECT 1 FROM requests r WHERE r.tenant_id = t.id \
             AND r.started_at >= $1 AND r.started_at < $2) \
         ORDER BY t.id",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(until)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.id).collect())
}

/// What was delivered to one target for one level of a tenant's budget.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct TargetHistoryRow {
    #[diesel(sql_type = Text)]
    pub level: String,
    #[diesel(sql_type = Text)]
    pub channel: String,
    #[diesel(sql_type = Text)]
    pub target: String,
    /// The last successful delivery.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_sent_at: Option<DateTime<Utc>>,
    /// The window label of the last successful delivery.
    #[diesel(sql_type = Nullable<Text>)]
    pub last_sent_label: Option<String>,
    /// The last attempt that failed.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_failed_at: Option<DateTime<Utc>>,
    /// The last refused attempt.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_refused_at: Option<DateTime<Utc>>,
}

/// The delivery history of a tenant's budget (`key_id` NULL) since `since`, per level,
/// channel and target.
pub async fn target_history(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<TargetHistoryRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT level, channel, target, \
             MAX(created_at) FILTER (WHERE outcome = 'sent') AS last_sent_at, \
             (ARRAY_AGG(window_label ORDER BY created_at DESC, id DESC) \
                 FILTER (WHERE outcome = 'sent'))[1] AS last_sent_label, \
             MAX(created_at) FILTER (WHERE outcome = 'failed') AS last_failed_at, \
             MAX(created_at) FILTER (WHERE outcome = 'refused') AS last_refused_at \
         FROM budget_alert_events \
         WHERE tenant_id = $1 AND key_id IS NULL AND created_at >= $2 \
         GROUP BY level, channel, target",
    )
    .bind::<SqlUuid, _>(tenant_id)
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await?)
}

/// Records one delivery attempt.
pub async fn insert_event(
    conn: &mut AsyncPgConnection,
    event: &NewAlertEvent,
) -> Result<(), DbError> {
    diesel::insert_into(budget_alert_events::table)
        .values(event)
        .execute(conn)
        .await?;
    Ok(())
}

/// A tenant's recorded attempts, oldest first.
pub async fn events(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
) -> Result<Vec<AlertEvent>, DbError> {
    Ok(budget_alert_events::table
        .filter(budget_alert_events::tenant_id.eq(tenant_id))
        .order(budget_alert_events::id.asc())
        .select(AlertEvent::as_select())
        .load(conn)
        .await?)
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The tenant's half of the lock key (collisions only make two tenants skip each other's
/// turn; the next sweep evaluates them).
fn lock_key(tenant_id: Uuid) -> i32 {
    let bytes = tenant_id.as_bytes();
    i32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

/// Takes the session-level advisory lock of a tenant's alert evaluation on `conn`, without
/// waiting: `false` when another replica holds it.
pub async fn try_lock_tenant(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
) -> Result<bool, DbError> {
    let row: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1, $2) AS locked")
        .bind::<Int4, _>(ALERT_LOCK_CLASS)
        .bind::<Int4, _>(lock_key(tenant_id))
        .get_result(conn)
        .await?;
    Ok(row.locked)
}

/// Releases [`try_lock_tenant`]'s lock (on the same connection).
pub async fn unlock_tenant(conn: &mut AsyncPgConnection, tenant_id: Uuid) -> Result<(), DbError> {
    let _: Locked = diesel::sql_query("SELECT pg_advisory_unlock($1, $2) AS locked")
        .bind::<Int4, _>(ALERT_LOCK_CLASS)
        .bind::<Int4, _>(lock_key(tenant_id))
        .get_result(conn)
        .await?;
    Ok(())
}
