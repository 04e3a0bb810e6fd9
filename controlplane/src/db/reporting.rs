//! Usage reporting: the hourly rollups in `usage_rollups` (maintained by ingestion in the
//! batch's transaction, rebuilt from `requests` hour by hour), the aggregated reads behind
//! `/admin/usage/*` (days of any timezone assembled from hourly buckets), the names shown
//! beside ids, and the budget alert history.

use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Date, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::AlertEvent;
use super::schema::budget_alert_events;
use super::DbError;

/// Upper bounds (milliseconds, exclusive) of the latency and time-to-first-token histogram
/// buckets: bucket 0 holds values below the first bound, bucket `i` values in
/// `[BOUNDS[i-1], BOUNDS[i])`, the last bucket values at or above the last bound. Each bound is
/// 1.33 to 2 times the previous, so a percentile estimated inside a bucket is within that
/// factor of the truth. Changing them requires `rollups rebuild`.
pub const LATENCY_BOUNDS_MS: [i64; 24] = [
    5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500,
    10_000, 15_000, 20_000, 30_000, 60_000, 120_000,
];

/// Buckets per histogram.
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Advisory lock (one key, `'rlup'`) between ingestion (shared, per batch transaction) and a
/// rebuild (exclusive, per hour batch): a rebuilt hour never misses nor double-counts a batch
/// committed meanwhile.
const ROLLUP_LOCK: i64 = 0x726c_7570;

/// The BIGINT maximum, the ceiling of every saturating sum.
const MAX: &str = "9223372036854775807";

fn bounds_literal() -> String {
    let list: Vec<String> = LATENCY_BOUNDS_MS.iter().map(i64::to_string).collect();
    format!("'{{{}}}'::bigint[]", list.join(","))
}

fn hist_counts(column: &str) -> String {
    let counts: Vec<String> = (0..BUCKETS)
        .map(|i| format!("count(*) FILTER (WHERE {column} = {i})"))
        .collect();
    format!("ARRAY[{}]::bigint[]", counts.join(", "))
}

/// The summed columns of both rollup tables, in order.
const SUMS: [&str; 9] = [
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_micro_usd",
    "latency_ms_sum",
    "ttft_count",
    "ttft_ms_sum",
];

/// The aggregates of [`SUMS`] then the two histograms, over the rows of `source` (requests
/// with their bucket numbers `lb` and `tb`).
fn aggregates() -> String {
    format!(
        "count(*), count(*) FILTER (WHERE status >= 400), \
         LEAST(sum(prompt_tokens), {MAX})::bigint, \
         LEAST(sum(completion_tokens), {MAX})::bigint, \
         LEAST(sum(cached_tokens), {MAX})::bigint, \
         LEAST(sum(cost_micro_usd), {MAX})::bigint, \
         LEAST(sum(latency_ms), {MAX})::bigint, \
         count(ttft_ms), LEAST(COALESCE(sum(ttft_ms), 0), {MAX})::bigint, {}, {}",
        hist_counts("lb"),
        hist_counts("tb")
    )
}

/// The requests matching `filter` with their hour and histogram buckets.
fn source(filter: &str) -> String {
    let bounds = bounds_literal();
    format!(
        "(SELECT *, date_trunc('hour', started_at, 'UTC') AS h, \
             width_bucket(latency_ms, {bounds}) AS lb, width_bucket(ttft_ms, {bounds}) AS tb \
          FROM requests WHERE {filter}) q"
    )
}

/// `ON CONFLICT … DO UPDATE`: sums and histograms added, saturating.
fn merge_clause(constraint: &str) -> String {
    let add = |c: &str| format!("{c} = LEAST(r.{c}::numeric + EXCLUDED.{c}, {MAX})::bigint");
    let merge = |c: &str| {
        format!(
            "{c} = ARRAY(SELECT LEAST(a::numeric + b, {MAX})::bigint \
             FROM unnest(r.{c}, EXCLUDED.{c}) WITH ORDINALITY AS t(a, b, i) ORDER BY i)"
        )
    };
    let updates: Vec<String> = SUMS
        .iter()
        .map(|c| add(c))
        .chain([merge("latency_hist"), merge("ttft_hist")])
        .collect();
    format!(
        "ON CONFLICT ON CONSTRAINT {constraint} DO UPDATE SET {}",
        updates.join(", ")
    )
}

/// The two `INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE` statements (fine rollups,
/// then the coarse grains) of the rows of `requests` matching `filter` (a SQL condition on
/// its columns). Groups are written in key order, so concurrent batches lock rollup rows in
/// the same order.
fn upsert_sql(filter: &str) -> [String; 2] {
    let dims = "tenant_id, key_id, user_id, alias, provider, deployment, status";
    let columns = format!("{}, latency_hist, ttft_hist", SUMS.join(", "));
    let fine = format!(
        "INSERT INTO usage_rollups AS r (hour, {dims}, {columns}) \
         SELECT h, {dims}, {} FROM {} \
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8 {}",
        aggregates(),
        source(filter),
        merge_clause("usage_rollups_key")
    );
    let coarse = format!(
        "INSERT INTO usage_rollups_coarse AS r (grain, hour, tenant_id, alias, {columns}) \
         SELECT CASE GROUPING(tenant_id, alias) WHEN 3 THEN 'all' WHEN 1 THEN 'tenant' \
                ELSE 'alias' END, h, tenant_id, alias, {} FROM {} \
         GROUP BY GROUPING SETS ((h), (h, tenant_id), (h, alias)) ORDER BY 1, 3, 4, 2 {}",
        aggregates(),
        source(filter),
        merge_clause("usage_rollups_coarse_key")
    );
    [fine, coarse]
}

fn upsert_events_sql() -> &'static [String; 2] {
    static SQL: OnceLock<[String; 2]> = OnceLock::new();
    SQL.get_or_init(|| upsert_sql("event_id = ANY($1)"))
}

fn upsert_range_sql() -> &'static [String; 2] {
    static SQL: OnceLock<[String; 2]> = OnceLock::new();
    SQL.get_or_init(|| upsert_sql("started_at >= $1 AND started_at < $2"))
}

/// Within ingestion's transaction, before its rows are inserted: the shared side of the lock a
/// rebuild takes exclusively.
pub async fn lock_for_ingest(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind::<Int8, _>(ROLLUP_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds the stored requests `event_ids` (the rows this transaction just inserted) to their
/// hourly rollups: one statement for the whole batch.
pub async fn add_events(conn: &mut AsyncPgConnection, event_ids: &[Uuid]) -> Result<(), DbError> {
    if event_ids.is_empty() {
        return Ok(());
    }
    for sql in upsert_events_sql() {
        diesel::sql_query(sql)
            .bind::<Array<SqlUuid>, _>(event_ids)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Recomputes the rollups (fine and coarse) of the hours in `[from, until)` (both on hour
/// boundaries) from `requests`, in one transaction under the exclusive rollup lock; returns
/// the fine rollup rows written.
pub async fn rebuild_hours(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<usize, DbError> {
    conn.transaction(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<Int8, _>(ROLLUP_LOCK)
            .execute(conn)
            .await?;
        for table in ["usage_rollups", "usage_rollups_coarse"] {
            diesel::sql_query(format!(
                "DELETE FROM {table} WHERE hour >= $1 AND hour < $2"
            ))
            .bind::<Timestamptz, _>(from)
            .bind::<Timestamptz, _>(until)
            .execute(conn)
            .await?;
        }
        let [fine, coarse] = upsert_range_sql();
        let written = diesel::sql_query(fine)
            .bind::<Timestamptz, _>(from)
            .bind::<Timestamptz, _>(until)
            .execute(conn)
            .await?;
        diesel::sql_query(coarse)
            .bind::<Timestamptz, _>(from)
            .bind::<Timestamptz, _>(until)
            .execute(conn)
            .await?;
        Ok(written)
    })
    .await
}

#[derive(QueryableByName)]
struct Span {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    first: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last: Option<DateTime<Utc>>,
}

/// The first and last `started_at` of `requests` (`None` when the table is empty).
pub async fn requests_span(
    conn: &mut AsyncPgConnection,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, DbError> {
    let span: Span =
        diesel::sql_query("SELECT min(started_at) AS first, max(started_at) AS last FROM requests")
            .get_result(conn)
            .await?;
    Ok(span.first.zip(span.last))
}

/// A dimension rows can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Tenant,
    Key,
    User,
    Alias,
    Provider,
    Deployment,
    Status,
}

impl Dimension {
    fn expr(self) -> &'static str {
        match self {
            Self::Tenant => "tenant_id::text",
            Self::Key => "key_id::text",
            Self::User => "user_id::text",
            Self::Alias => "alias",
            Self::Provider => "provider",
            Self::Deployment => "deployment",
            Self::Status => "status::text",
        }
    }
}

/// What an aggregated read covers: rollup hours in `[from, until)`, and the optional filters.
#[derive(Debug, Clone, Default)]
pub struct RollupFilter {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Only these tenants (`None`: every tenant, and rows without one).
    pub tenant_ids: Option<Vec<Uuid>>,
    pub key_id: Option<Uuid>,
    /// Only these aliases.
    pub aliases: Option<Vec<String>>,
}

/// Sums of one entity on one local day.
#[derive(Debug, Clone, QueryableByName)]
pub struct DailyRow {
    /// The group's value (`None`: no grouping, or the dimension was missing).
    #[diesel(sql_type = Nullable<Text>)]
    pub entity: Option<String>,
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = BigInt)]
    pub errors: i64,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub cached_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub cost_micro_usd: i64,
    #[diesel(sql_type = BigInt)]
    pub latency_ms_sum: i64,
    #[diesel(sql_type = BigInt)]
    pub ttft_count: i64,
    #[diesel(sql_type = BigInt)]
    pub ttft_ms_sum: i64,
    #[diesel(sql_type = Array<BigInt>)]
    pub latency_hist: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    pub ttft_hist: Vec<i64>,
}

/// The coarse grain that answers `filter` grouped by `group`, if one does: no key filter,
/// and at most one of tenant and alias among the filters and the grouping.
fn coarse_grain(filter: &RollupFilter, group: Option<Dimension>) -> Option<&'static str> {
    if filter.key_id.is_some() {
        return None;
    }
    let tenant = filter.tenant_ids.is_some() || group == Some(Dimension::Tenant);
    let alias = filter.aliases.is_some() || group == Some(Dimension::Alias);
    let other = group.is_some_and(|g| !matches!(g, Dimension::Tenant | Dimension::Alias));
    match (tenant, alias, other) {
        (_, _, true) | (true, true, _) => None,
        (false, false, _) => Some("all"),
        (true, false, _) => Some("tenant"),
        (false, true, _) => Some("alias"),
    }
}

fn daily_sql(group: Option<Dimension>, grain: Option<&str>) -> String {
    let entity = group.map_or("NULL::text", Dimension::expr);
    let sum = |c: &str| format!("LEAST(sum({c}), {MAX})::bigint AS {c}");
    let hist = |c: &str| {
        let items: Vec<String> = (1..=BUCKETS)
            .map(|i| format!("LEAST(COALESCE(sum({c}[{i}]), 0), {MAX})"))
            .collect();
        format!("ARRAY[{}]::bigint[] AS {c}", items.join(", "))
    };
    let columns: Vec<String> = SUMS
        .iter()
        .map(|c| sum(c))
        .chain([hist("latency_hist"), hist("ttft_hist")])
        .collect();
    let (table, key_filter) = match grain {
        // The grain is a fixed literal of `coarse_grain`.
        Some(grain) => (
            format!("usage_rollups_coarse WHERE grain = '{grain}' AND"),
            "",
        ),
        None => (
            "usage_rollups WHERE".to_owned(),
            "AND ($5::uuid IS NULL OR key_id = $5)",
        ),
    };
    // A bucket belongs to the local day of its middle (exact for zones on whole hours).
    format!(
        "SELECT {entity} AS entity, \
             ((hour + interval '30 minutes') AT TIME ZONE $3)::date AS day, {} \
         FROM {table} hour >= $1 AND hour < $2 \
           AND ($4::uuid[] IS NULL OR tenant_id = ANY($4)) {key_filter} \
           AND ($6::text[] IS NULL OR alias = ANY($6)) \
         GROUP BY 1, 2",
        columns.join(", ")
    )
}

/// Sums per local day of `timezone` (an IANA name Postgres knows), per value of `group`
/// when given; from the coarse grains when one answers, else from the fine rollups. JIT is
/// off for the read: compiling costs more than these scans.
pub async fn daily(
    conn: &mut AsyncPgConnection,
    filter: &RollupFilter,
    timezone: &str,
    group: Option<Dimension>,
) -> Result<Vec<DailyRow>, DbError> {
    let sql = daily_sql(group, coarse_grain(filter, group));
    conn.transaction(async |conn| {
        diesel::sql_query("SET LOCAL jit = off")
            .execute(conn)
            .await?;
        Ok(diesel::sql_query(sql)
            .bind::<Timestamptz, _>(filter.from)
            .bind::<Timestamptz, _>(filter.until)
            .bind::<Text, _>(timezone)
            .bind::<Nullable<Array<SqlUuid>>, _>(filter.tenant_ids.as_deref())
            .bind::<Nullable<SqlUuid>, _>(filter.key_id)
            .bind::<Nullable<Array<Text>>, _>(filter.aliases.as_deref())
            .load(conn)
            .await?)
    })
    .await
}

#[derive(QueryableByName)]
struct Label {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    label: String,
}

/// Display names of the given ids of `dimension` (tenant and key names, user emails); ids
/// not found (deleted rows) are absent.
pub async fn labels(
    conn: &mut AsyncPgConnection,
    dimension: Dimension,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, DbError> {
    let sql = match dimension {
        Dimension::Tenant => "SELECT id, name AS label FROM tenants WHERE id = ANY($1)",
        Dimension::Key => "SELECT id, name AS label FROM api_keys WHERE id = ANY($1)",
        Dimension::User => "SELECT id, email AS label FROM users WHERE id = ANY($1)",
        _ => return Ok(Vec::new()),
    };
    let rows: Vec<Label> = diesel::sql_query(sql)
        .bind::<Array<SqlUuid>, _>(ids)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.label)).collect())
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Those of `ids` that name a tenant (deleted ones included: their usage stays reportable).
pub async fn existing_tenants(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, DbError> {
    let rows: Vec<Found> = diesel::sql_query("SELECT id FROM tenants WHERE id = ANY($1)")
        .bind::<Array<SqlUuid>, _>(ids)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Whether key `key_id` belongs to tenant `tenant_id`.
pub async fn key_of_tenant(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    key_id: Uuid,
) -> Result<bool, DbError> {
    let rows: Vec<Found> =
        diesel::sql_query("SELECT id FROM api_keys WHERE id = $1 AND tenant_id = $2")
            .bind::<SqlUuid, _>(key_id)
            .bind::<SqlUuid, _>(tenant_id)
            .load(conn)
            .await?;
    Ok(!rows.is_empty())
}

/// Filters of the budget alert history.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only these tenants' attempts.
    pub tenant_ids: Option<Vec<Uuid>>,
    pub level: Option<String>,
    pub channel: Option<String>,
    /// The attempt's outcome: `sent`, `failed` or `refused`.
    pub outcome: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Keyset: only attempts with a smaller id.
    pub before_id: Option<i64>,
}

/// Budget alert delivery attempts matching `filter`, newest first, at most `limit`.
pub async fn alert_events(
    conn: &mut AsyncPgConnection,
    filter: &AlertFilter,
    limit: i64,
) -> Result<Vec<AlertEvent>, DbError> {
    use budget_alert_events as e;
    let mut query = e::table.select(AlertEvent::as_select()).into_boxed();
    if let Some(tenants) = &filter.tenant_ids {
        query = query.filter(e::tenant_id.eq_any(tenants.clone()));
    }
    if let Some(level) = &filter.level {
        query = query.filter(e::level.eq(level.clone()));
    }
    if let Some(channel) = &filter.channel {
        query = query.filter(e::channel.eq(channel.clone()));
    }
    if let Some(outcome) = &filter.outcome {
        query = query.filter(e::outcome.eq(outcome.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(e::created_at.ge(since));
    }
    if let Some(before) = filter.before_id {
        query = query.filter(e::id.lt(before));
    }
    Ok(query.order(e::id.desc()).limit(limit).load(conn).await?)
}
