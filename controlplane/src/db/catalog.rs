//! Persisted model catalog overrides and the bootstrap ledger.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::ModelDeployment;
use super::schema::{bootstrap_ledger, model_alias_settings, model_deployments};
use super::DbError;

/// Every persisted deployment, by alias then creation.
pub async fn deployments(conn: &mut AsyncPgConnection) -> Result<Vec<ModelDeployment>, DbError> {
    Ok(model_deployments::table
        .order((
            model_deployments::alias.asc(),
            model_deployments::created_at.asc(),
        ))
        .select(ModelDeployment::as_select())
        .load(conn)
        .await?)
}

/// One deployment.
pub async fn deployment(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<ModelDeployment, DbError> {
    Ok(model_deployments::table
        .find(id)
        .select(ModelDeployment::as_select())
        .first(conn)
        .await?)
}

/// Inserts a deployment.
pub async fn insert_deployment(
    conn: &mut AsyncPgConnection,
    row: &ModelDeployment,
) -> Result<(), DbError> {
    diesel::insert_into(model_deployments::table)
        .values(row)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces a deployment's spec, credential and switch.
pub async fn update_deployment(
    conn: &mut AsyncPgConnection,
    row: &ModelDeployment,
) -> Result<ModelDeployment, DbError> {
    Ok(diesel::update(model_deployments::table.find(row.id))
        .set((
            model_deployments::alias.eq(&row.alias),
            model_deployments::spec.eq(&row.spec),
            model_deployments::credential.eq(&row.credential),
            model_deployments::credential_key_version.eq(row.credential_key_version),
            model_deployments::enabled.eq(row.enabled),
            model_deployments::updated_at.eq(Utc::now()),
        ))
        .returning(ModelDeployment::as_returning())
        .get_result(conn)
        .await?)
}

/// Deletes a deployment.
pub async fn delete_deployment(conn: &mut AsyncPgConnection, id: Uuid) -> Result<(), DbError> {
    let n = diesel::delete(model_deployments::table.find(id))
        .execute(conn)
        .await?;
    if n == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// Alias switches: (alias, enabled).
pub async fn alias_settings(conn: &mut AsyncPgConnection) -> Result<Vec<(String, bool)>, DbError> {
    Ok(model_alias_settings::table
        .select((model_alias_settings::alias, model_alias_settings::enabled))
        .load(conn)
        .await?)
}

/// Enables or disables an alias.
pub async fn set_alias_enabled(
    conn: &mut AsyncPgConnection,
    alias: &str,
    enabled: bool,
) -> Result<(), DbError> {
    let now = Utc::now();
    diesel::insert_into(model_alias_settings::table)
        .values((
            model_alias_settings::alias.eq(alias),
            model_alias_settings::enabled.eq(enabled),
            model_alias_settings::updated_at.eq(now),
        ))
        .on_conflict(model_alias_settings::alias)
        .do_update()
        .set((
            model_alias_settings::enabled.eq(enabled),
            model_alias_settings::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a bootstrap item; `false` when it was applied before.
pub async fn claim_bootstrap_item(
    conn: &mut AsyncPgConnection,
    item: &str,
) -> Result<bool, DbError> {
    let n = diesel::insert_into(bootstrap_ledger::table)
        .values(bootstrap_ledger::item.eq(item))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Replaces a deployment's sealed credential (key rotation).
pub async fn set_credential(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    sealed: &[u8],
    key_version: i32,
) -> Result<(), DbError> {
    diesel::update(model_deployments::table.find(id))
        .set((
            model_deployments::credential.eq(Some(sealed)),
            model_deployments::credential_key_version.eq(Some(key_version)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
