//! Everything a snapshot is built from, read in one consistent transaction.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::models::{
    ApiKey, BudgetDefaultRow, KeyStatus, ModelDeployment, RateLimitDefaultsRow, Stored, Tenant,
    TenantBudget, TenantRateLimits,
};
use super::schema::{api_keys, tenant_budgets, tenant_rate_limits, tenants};
use super::DbError;

/// The rows of one snapshot and the version allocated for it.
#[derive(Debug)]
pub struct SnapshotRows {
    /// From `snapshot_version_seq`: strictly increasing across restarts and replicas.
    pub version: i64,
    /// Live tenants.
    pub tenants: Vec<Tenant>,
    /// Keys that are not revoked, of live tenants.
    pub keys: Vec<ApiKey>,
    /// Tenant rate-limit overrides.
    pub rate_limits: Vec<TenantRateLimits>,
    /// Tenant budget overrides.
    pub budgets: Vec<TenantBudget>,
    /// Persisted catalog deployments, by alias then creation.
    pub deployments: Vec<ModelDeployment>,
    /// Alias switches.
    pub alias_settings: Vec<(String, bool)>,
    /// The persisted default rate limits (they win over the config when set).
    pub rate_limit_defaults: Option<RateLimitDefaultsRow>,
    /// The persisted default budget (it wins over the config when set).
    pub budget_default: Option<BudgetDefaultRow>,
}

#[derive(QueryableByName)]
struct Next {
    #[diesel(sql_type = BigInt)]
    version: i64,
}

/// Allocates a version and reads every table in one REPEATABLE READ transaction, the version
/// first: a higher version never sees an older state of the database than a lower one.
pub async fn load(conn: &mut AsyncPgConnection) -> Result<SnapshotRows, DbError> {
    conn.build_transaction()
        .repeatable_read()
        .run(async |conn| {
            let Next { version } =
                diesel::sql_query("SELECT nextval('snapshot_version_seq') AS version")
                    .get_result::<Next>(conn)
                    .await?;
            let tenants = tenants::table
                .filter(tenants::deleted_at.is_null())
                .order(tenants::id)
                .select(Tenant::as_select())
                .load(conn)
                .await?;
            let keys = api_keys::table
                .inner_join(tenants::table)
                .filter(tenants::deleted_at.is_null())
                .filter(api_keys::status.ne(KeyStatus::Revoked.as_str()))
                .order(api_keys::id)
                .select(ApiKey::as_select())
                .load(conn)
                .await?;
            let rate_limits = tenant_rate_limits::table
                .select(TenantRateLimits::as_select())
                .load(conn)
                .await?;
            let budgets = tenant_budgets::table
                .select(TenantBudget::as_select())
                .load(conn)
                .await?;
            let deployments = super::catalog::deployments(conn).await?;
            let alias_settings = super::catalog::alias_settings(conn).await?;
            let rate_limit_defaults = super::governance::rate_limit_defaults(conn).await?;
            let budget_default = super::governance::budget_default(conn).await?;
            Ok::<_, DbError>(SnapshotRows {
                version,
                tenants,
                keys,
                rate_limits,
                budgets,
                deployments,
                alias_settings,
                rate_limit_defaults,
                budget_default,
            })
        })
        .await
}

/// A version above `floor`: moves `snapshot_version_seq` past it when it is behind (a
/// restored database, a foreign value in Redis), then allocates.
pub async fn next_version_after(conn: &mut AsyncPgConnection, floor: i64) -> Result<i64, DbError> {
    diesel::sql_query(
        "SELECT setval('snapshot_version_seq', GREATEST($1, (SELECT last_value FROM snapshot_version_seq)))",
    )
    .bind::<BigInt, _>(floor)
    .execute(conn)
    .await?;
    let Next { version } = diesel::sql_query("SELECT nextval('snapshot_version_seq') AS version")
        .get_result::<Next>(conn)
        .await?;
    Ok(version)
}
