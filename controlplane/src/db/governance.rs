//! Governance: persisted default limits and budget, tenant rate-limit and budget overrides
//! (read, upsert, delete), and spend read from `requests` (per tenant over a window, per
//! tenant/key/local day for the counter rebuild). The only budget SQL.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Date, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{BudgetDefaultRow, RateLimitDefaultsRow, TenantBudget, TenantRateLimits};
use super::schema::{
    budget_defaults, rate_limit_defaults, tenant_budgets, tenant_rate_limits, tenants,
};
use super::DbError;

/// The persisted default rate limits, if set.
pub async fn rate_limit_defaults(
    conn: &mut AsyncPgConnection,
) -> Result<Option<RateLimitDefaultsRow>, DbError> {
    Ok(rate_limit_defaults::table
        .select(RateLimitDefaultsRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Sets the default rate limits (the one row).
pub async fn put_rate_limit_defaults(
    conn: &mut AsyncPgConnection,
    row: &RateLimitDefaultsRow,
) -> Result<RateLimitDefaultsRow, DbError> {
    Ok(diesel::insert_into(rate_limit_defaults::table)
        .values(row)
        .on_conflict(rate_limit_defaults::id)
        .do_update()
        .set(row)
        .returning(RateLimitDefaultsRow::as_returning())
        .get_result(conn)
        .await?)
}

/// The persisted default budget, if set.
pub async fn budget_default(
    conn: &mut AsyncPgConnection,
) -> Result<Option<BudgetDefaultRow>, DbError> {
    Ok(budget_defaults::table
        .select(BudgetDefaultRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Sets the default budget (the one row).
pub async fn put_budget_default(
    conn: &mut AsyncPgConnection,
    row: &BudgetDefaultRow,
) -> Result<BudgetDefaultRow, DbError> {
    Ok(diesel::insert_into(budget_defaults::table)
        .values(row)
        .on_conflict(budget_defaults::id)
        .do_update()
        .set(row)
        .returning(BudgetDefaultRow::as_returning())
        .get_result(conn)
        .await?)
}

// --- tenant overrides ------------------------------------------------------------------------

/// A tenant's rate-limit override.
pub async fn rate_limits(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
) -> Result<Option<TenantRateLimits>, DbError> {
    Ok(tenant_rate_limits::table
        .find(tenant_id)
        .select(TenantRateLimits::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Every tenant rate-limit override.
pub async fn all_rate_limits(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<TenantRateLimits>, DbError> {
    Ok(tenant_rate_limits::table
        .select(TenantRateLimits::as_select())
        .load(conn)
        .await?)
}

/// Creates or replaces a tenant's rate-limit override.
pub async fn upsert_rate_limits(
    conn: &mut AsyncPgConnection,
    row: &TenantRateLimits,
) -> Result<(), DbError> {
    diesel::insert_into(tenant_rate_limits::table)
        .values(row)
        .on_conflict(tenant_rate_limits::tenant_id)
        .do_update()
        .set(row)
        .execute(conn)
        .await?;
    Ok(())
}

/// A tenant's budget override.
pub async fn budget(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
) -> Result<Option<TenantBudget>, DbError> {
    Ok(tenant_budgets::table
        .find(tenant_id)
        .select(TenantBudget::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Every tenant budget override.
pub async fn all_budgets(conn: &mut AsyncPgConnection) -> Result<Vec<TenantBudget>, DbError> {
    Ok(tenant_budgets::table
        .select(TenantBudget::as_select())
        .load(conn)
        .await?)
}

/// Creates or replaces a tenant's budget override.
pub async fn upsert_budget(
    conn: &mut AsyncPgConnection,
    row: &TenantBudget,
) -> Result<(), DbError> {
    diesel::insert_into(tenant_budgets::table)
        .values(row)
        .on_conflict(tenant_budgets::tenant_id)
        .do_update()
        .set(row)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a tenant's budget override; returns it when there was one.
pub async fn delete_budget(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
) -> Result<Option<TenantBudget>, DbError> {
    Ok(
        diesel::delete(tenant_budgets::table.filter(tenant_budgets::tenant_id.eq(tenant_id)))
            .returning(TenantBudget::as_returning())
            .get_result(conn)
            .await
            .optional()?,
    )
}

/// Removes a tenant's rate-limit override; returns it when there was one.
pub async fn delete_rate_limits(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
) -> Result<Option<TenantRateLimits>, DbError> {
    Ok(diesel::delete(
        tenant_rate_limits::table.filter(tenant_rate_limits::tenant_id.eq(tenant_id)),
    )
    .returning(TenantRateLimits::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// Budget overrides of live tenants with the tenant's name, by name.
pub async fn budget_overrides(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(TenantBudget, String)>, DbError> {
    Ok(tenant_budgets::table
        .inner_join(tenants::table)
        .filter(tenants::deleted_at.is_null())
        .order((tenants::name.asc(), tenants::id.asc()))
        .select((TenantBudget::as_select(), tenants::name))
        .load(conn)
        .await?)
}

/// Budget overrides of the given tenants.
pub async fn budgets_of(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<TenantBudget>, DbError> {
    Ok(tenant_budgets::table
        .filter(tenant_budgets::tenant_id.eq_any(ids.to_vec()))
        .select(TenantBudget::as_select())
        .load(conn)
        .await?)
}

#[derive(QueryableByName)]
struct TenantSpend {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = BigInt)]
    spent: i64,
}

/// One query for many tenants: each tenant's spend (micro-USD) in `[from, until)`.
/// Tenants without requests are absent from the map.
pub async fn tenant_spend(
    conn: &mut AsyncPgConnection,
    windows: &[(Uuid, DateTime<Utc>, DateTime<Utc>)],
) -> Result<HashMap<Uuid, i64>, DbError> {
    if windows.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = windows.iter().map(|w| w.0).collect();
    let from: Vec<DateTime<Utc>> = windows.iter().map(|w| w.1).collect();
    let until: Vec<DateTime<Utc>> = windows.iter().map(|w| w.2).collect();
    let rows: Vec<TenantSpend> = diesel::sql_query(
        "SELECT w.tenant_id, \
                LEAST(COALESCE(SUM(r.cost_micro_usd), 0), 9223372036854775807)::BIGINT AS spent \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w(tenant_id, since, until) \
         JOIN requests r ON r.tenant_id = w.tenant_id \
             AND r.started_at >= w.since AND r.started_at < w.until \
         GROUP BY w.tenant_id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<Array<Timestamptz>, _>(from)
    .bind::<Array<Timestamptz>, _>(until)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.tenant_id, r.spent)).collect())
}

/// Spend of one tenant, or one key of it, on one local day.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct DailySpend {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub tenant_id: Uuid,
    /// `None`: requests without a key (they count for the tenant only).
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    pub key_id: Option<Uuid>,
    /// The local day of `started_at` in the reporting timezone.
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub micro_usd: i64,
}

/// Spend per (tenant, key, local day in `timezone`) of requests started at or after `since`;
/// only non-zero sums.
pub async fn daily_spend(
    conn: &mut AsyncPgConnection,
    timezone: &str,
    since: DateTime<Utc>,
) -> Result<Vec<DailySpend>, DbError> {
    Ok(diesel::sql_query(
        "SELECT tenant_id, key_id, (started_at AT TIME ZONE $1)::date AS day, \
                LEAST(SUM(cost_micro_usd), 9223372036854775807)::BIGINT AS micro_usd \
         FROM requests \
         WHERE tenant_id IS NOT NULL AND started_at >= $2 \
         GROUP BY 1, 2, 3 \
         HAVING SUM(cost_micro_usd) > 0 \
         ORDER BY 1, 2, 3",
    )
    .bind::<Text, _>(timezone)
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await?)
}
