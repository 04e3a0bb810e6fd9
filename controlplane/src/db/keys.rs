//! API keys.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{ApiKey, KeyStatus, Stored};
use super::schema::api_keys;
use super::DbError;

/// Inserts a key.
pub async fn insert(conn: &mut AsyncPgConnection, key: &ApiKey) -> Result<(), DbError> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether a prefix is taken (by any key, revoked ones included).
pub async fn prefix_exists(conn: &mut AsyncPgConnection, prefix: &str) -> Result<bool, DbError> {
    let n: i64 = api_keys::table
        .filter(api_keys::prefix.eq(prefix))
        .count()
        .get_result(conn)
        .await?;
    Ok(n > 0)
}

/// One key of a tenant.
pub async fn get(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<ApiKey, DbError> {
    Ok(api_keys::table
        .filter(api_keys::id.eq(id))
        .filter(api_keys::tenant_id.eq(tenant_id))
        .select(ApiKey::as_select())
        .first(conn)
        .await?)
}

/// A tenant's keys, newest first.
pub async fn list(conn: &mut AsyncPgConnection, tenant_id: Uuid) -> Result<Vec<ApiKey>, DbError> {
    Ok(api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .order(api_keys::created_at.desc())
        .select(ApiKey::as_select())
        .load(conn)
        .await?)
}

/// Every key (snapshot building).
pub async fn all(conn: &mut AsyncPgConnection) -> Result<Vec<ApiKey>, DbError> {
    Ok(api_keys::table
        .select(ApiKey::as_select())
        .load(conn)
        .await?)
}

/// How many usable keys a tenant has.
pub async fn active_count(conn: &mut AsyncPgConnection, tenant_id: Uuid) -> Result<i64, DbError> {
    Ok(api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .filter(api_keys::status.eq(KeyStatus::Active.as_str()))
        .count()
        .get_result(conn)
        .await?)
}

/// One key of a tenant, its row locked until the transaction ends (so an update and a
/// revocation serialise instead of overwriting each other).
pub async fn get_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<ApiKey, DbError> {
    Ok(api_keys::table
        .filter(api_keys::id.eq(id))
        .filter(api_keys::tenant_id.eq(tenant_id))
        .for_update()
        .select(ApiKey::as_select())
        .first(conn)
        .await?)
}

/// Writes a key's settings: name, scopes, expiry, models, budget, limits, owner. Never
/// `status` or `revoked_at`; a revoked key is left alone (`NotFound`).
pub async fn update(conn: &mut AsyncPgConnection, key: &ApiKey) -> Result<ApiKey, DbError> {
    Ok(diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(key.id))
            .filter(api_keys::status.ne(KeyStatus::Revoked.as_str())),
    )
    .set((
        api_keys::name.eq(&key.name),
        api_keys::scopes.eq(&key.scopes),
        api_keys::expires_at.eq(key.expires_at),
        api_keys::allowed_models.eq(&key.allowed_models),
        api_keys::budget_micro_usd.eq(key.budget_micro_usd),
        api_keys::warning_threshold.eq(key.warning_threshold),
        api_keys::requests_per_minute.eq(key.requests_per_minute),
        api_keys::tokens_per_minute.eq(key.tokens_per_minute),
        api_keys::parallel_requests.eq(key.parallel_requests),
        api_keys::user_id.eq(key.user_id),
        api_keys::updated_at.eq(Utc::now()),
    ))
    .returning(ApiKey::as_returning())
    .get_result(conn)
    .await?)
}

/// Switches a key between `active` and `disabled`; a revoked key is left alone (`NotFound`).
pub async fn set_enabled(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    enabled: bool,
) -> Result<ApiKey, DbError> {
    Ok(diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(id))
            .filter(api_keys::status.ne(KeyStatus::Revoked.as_str())),
    )
    .set((
        api_keys::status.eq(if enabled {
            KeyStatus::Active
        } else {
            KeyStatus::Disabled
        }
        .as_str()),
        api_keys::updated_at.eq(Utc::now()),
    ))
    .returning(ApiKey::as_returning())
    .get_result(conn)
    .await?)
}

/// Revokes one key of a tenant for good (`NotFound` when it is already revoked).
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<ApiKey, DbError> {
    Ok(diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(id))
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::status.ne(KeyStatus::Revoked.as_str())),
    )
    .set((
        api_keys::status.eq(KeyStatus::Revoked.as_str()),
        api_keys::revoked_at.eq(Some(at)),
        api_keys::updated_at.eq(at),
    ))
    .returning(ApiKey::as_returning())
    .get_result(conn)
    .await?)
}

/// Revokes every active or disabled key of a tenant (tenant deletion).
pub async fn revoke_all(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    at: DateTime<Utc>,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::status.ne(KeyStatus::Revoked.as_str())),
    )
    .set((
        api_keys::status.eq(KeyStatus::Revoked.as_str()),
        api_keys::revoked_at.eq(Some(at)),
        api_keys::updated_at.eq(at),
    ))
    .execute(conn)
    .await?)
}
