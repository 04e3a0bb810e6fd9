//! Tenants, memberships, default models. (Tenant limit and budget overrides: `governance.rs`.)

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{Membership, Role, Stored, Tenant, TenantStatus, User};
use super::schema::{default_models, memberships, tenants, users};
use super::DbError;

/// A live (not deleted) tenant by id.
pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Tenant, DbError> {
    Ok(tenants::table
        .filter(tenants::id.eq(id))
        .filter(tenants::deleted_at.is_null())
        .select(Tenant::as_select())
        .first(conn)
        .await?)
}

/// A live tenant by name (case-insensitive).
pub async fn find_by_name(
    conn: &mut AsyncPgConnection,
    name: &str,
) -> Result<Option<Tenant>, DbError> {
    Ok(tenants::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(name) = lower(")
                .bind::<diesel::sql_types::Text, _>(name)
                .sql(")"),
        )
        .filter(tenants::deleted_at.is_null())
        .select(Tenant::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Page of live tenants ordered by name; `only` restricts to the given ids (a tenant admin's
/// scope); personal tenants only with `include_personal`. Returns the page and the total
/// count.
pub async fn list(
    conn: &mut AsyncPgConnection,
    only: Option<&[Uuid]>,
    include_personal: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Tenant>, i64), DbError> {
    let mut query = tenants::table
        .filter(tenants::deleted_at.is_null())
        .into_boxed();
    let mut count = tenants::table
        .filter(tenants::deleted_at.is_null())
        .into_boxed();
    if let Some(ids) = only {
        query = query.filter(tenants::id.eq_any(ids.to_vec()));
        count = count.filter(tenants::id.eq_any(ids.to_vec()));
    }
    if !include_personal {
        query = query.filter(tenants::kind.ne(PERSONAL));
        count = count.filter(tenants::kind.ne(PERSONAL));
    }
    let total: i64 = count.count().get_result(conn).await?;
    let rows = query
        .order((tenants::name.asc(), tenants::id.asc()))
        .limit(limit)
        .offset(offset)
        .select(Tenant::as_select())
        .load(conn)
        .await?;
    Ok((rows, total))
}

/// Every live tenant (snapshot building).
pub async fn all_live(conn: &mut AsyncPgConnection) -> Result<Vec<Tenant>, DbError> {
    Ok(tenants::table
        .filter(tenants::deleted_at.is_null())
        .order(tenants::name.asc())
        .select(Tenant::as_select())
        .load(conn)
        .await?)
}

/// Inserts a tenant.
pub async fn insert(conn: &mut AsyncPgConnection, tenant: &Tenant) -> Result<(), DbError> {
    diesel::insert_into(tenants::table)
        .values(tenant)
        .execute(conn)
        .await?;
    Ok(())
}

/// Renames a tenant.
pub async fn rename(conn: &mut AsyncPgConnection, id: Uuid, name: &str) -> Result<Tenant, DbError> {
    Ok(diesel::update(
        tenants::table
            .filter(tenants::id.eq(id))
            .filter(tenants::deleted_at.is_null()),
    )
    .set((tenants::name.eq(name), tenants::updated_at.eq(Utc::now())))
    .returning(Tenant::as_returning())
    .get_result(conn)
    .await?)
}

/// Sets a tenant's status.
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: TenantStatus,
) -> Result<Tenant, DbError> {
    Ok(diesel::update(
        tenants::table
            .filter(tenants::id.eq(id))
            .filter(tenants::deleted_at.is_null()),
    )
    .set((
        tenants::status.eq(status.as_str()),
        tenants::updated_at.eq(Utc::now()),
    ))
    .returning(Tenant::as_returning())
    .get_result(conn)
    .await?)
}

/// Replaces a tenant's model allowlist (`None` = every enabled alias).
pub async fn set_allowed_models(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    models: Option<Vec<String>>,
) -> Result<Tenant, DbError> {
    Ok(diesel::update(
        tenants::table
            .filter(tenants::id.eq(id))
            .filter(tenants::deleted_at.is_null()),
    )
    .set((
        tenants::allowed_models.eq(models),
        tenants::updated_at.eq(Utc::now()),
    ))
    .returning(Tenant::as_returning())
    .get_result(conn)
    .await?)
}

/// Soft-deletes a tenant.
pub async fn soft_delete(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Tenant, DbError> {
    let now = Utc::now();
    Ok(diesel::update(
        tenants::table
            .filter(tenants::id.eq(id))
            .filter(tenants::deleted_at.is_null()),
    )
    .set((
        tenants::deleted_at.eq(Some(now)),
        tenants::updated_at.eq(now),
    ))
    .returning(Tenant::as_returning())
    .get_result(conn)
    .await?)
}

/// `tenants.kind` of a user's personal tenant.
pub const PERSONAL: &str = "personal";

/// Live tenants by id (any order).
pub async fn by_ids(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> Result<Vec<Tenant>, DbError> {
    Ok(tenants::table
        .filter(tenants::id.eq_any(ids.to_vec()))
        .filter(tenants::deleted_at.is_null())
        .select(Tenant::as_select())
        .load(conn)
        .await?)
}

/// First key of the two-key advisory lock guarding the default models (`'dflt'`).
const DEFAULT_MODELS_LOCK_CLASS: i32 = 0x6466_6c74;

/// Takes the transaction-scoped lock on the default models: shared by a personal tenant's
/// creation (which copies them), exclusive by their replacement. A tenant created while the
/// defaults change therefore either commits first (and the re-sync that follows the change
/// sees it) or copies the new defaults.
pub async fn lock_default_models(
    conn: &mut AsyncPgConnection,
    exclusive: bool,
) -> Result<(), DbError> {
    let function = if exclusive {
        "pg_advisory_xact_lock"
    } else {
        "pg_advisory_xact_lock_shared"
    };
    diesel::sql_query(format!("SELECT {function}($1, 0)"))
        .bind::<diesel::sql_types::Int4, _>(DEFAULT_MODELS_LOCK_CLASS)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct SyncedId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Sets the allowlist of up to `limit` live personal tenants with ids after `after` (in id
/// order) to the default models as stored *now* (not as the caller saw them: when two
/// changes race, the last batch to run writes the last committed list). Returns the ids
/// updated, in order; fewer than `limit` means the walk is done.
pub async fn sync_personal_batch(
    conn: &mut AsyncPgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>, DbError> {
    let rows: Vec<SyncedId> = diesel::sql_query(
        "WITH batch AS ( \
             SELECT id FROM tenants \
             WHERE kind = 'personal' AND deleted_at IS NULL AND ($1::uuid IS NULL OR id > $1) \
             ORDER BY id LIMIT $2) \
         UPDATE tenants t SET \
             allowed_models = COALESCE( \
                 (SELECT array_agg(alias ORDER BY alias) FROM default_models), '{}'::text[]), \
             updated_at = now() \
         FROM batch WHERE t.id = batch.id \
         RETURNING t.id",
    )
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(after)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    let mut ids: Vec<Uuid> = rows.into_iter().map(|r| r.id).collect();
    ids.sort();
    Ok(ids)
}

// --- memberships -------------------------------------------------------------------------------

/// The caller's role in a tenant, if any.
pub async fn role_of(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Role>, DbError> {
    let role: Option<String> = memberships::table
        .filter(memberships::tenant_id.eq(tenant_id))
        .filter(memberships::user_id.eq(user_id))
        .select(memberships::role)
        .first(conn)
        .await
        .optional()?;
    Ok(role.as_deref().and_then(Role::parse))
}

/// Every (tenant id, role) of a user, live tenants only.
pub async fn memberships_of(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> Result<Vec<(Uuid, Role)>, DbError> {
    let rows: Vec<(Uuid, String)> = memberships::table
        .inner_join(tenants::table)
        .filter(memberships::user_id.eq(user_id))
        .filter(tenants::deleted_at.is_null())
        .select((memberships::tenant_id, memberships::role))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, role)| Role::parse(&role).map(|role| (id, role)))
        .collect())
}

/// Members of a tenant with their user rows and the tenant that provisioned each account.
pub async fn members(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
) -> Result<Vec<(Membership, User, Option<Uuid>)>, DbError> {
    Ok(memberships::table
        .inner_join(users::table)
        .filter(memberships::tenant_id.eq(tenant_id))
        .order(users::email.asc())
        .select((
            Membership::as_select(),
            User::as_select(),
            users::provisioned_by_tenant,
        ))
        .load(conn)
        .await?)
}

/// One membership.
pub async fn membership(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Membership, DbError> {
    Ok(memberships::table
        .filter(memberships::tenant_id.eq(tenant_id))
        .filter(memberships::user_id.eq(user_id))
        .select(Membership::as_select())
        .first(conn)
        .await?)
}

/// Adds a membership (conflict if present).
pub async fn add_member(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<Membership, DbError> {
    let now = Utc::now();
    Ok(diesel::insert_into(memberships::table)
        .values(Membership {
            tenant_id,
            user_id,
            role: role.as_str().to_owned(),
            created_at: now,
            updated_at: now,
        })
        .returning(Membership::as_returning())
        .get_result(conn)
        .await?)
}

/// Changes a member's role.
pub async fn set_role(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<Membership, DbError> {
    Ok(diesel::update(
        memberships::table
            .filter(memberships::tenant_id.eq(tenant_id))
            .filter(memberships::user_id.eq(user_id)),
    )
    .set((
        memberships::role.eq(role.as_str()),
        memberships::updated_at.eq(Utc::now()),
    ))
    .returning(Membership::as_returning())
    .get_result(conn)
    .await?)
}

/// Removes a membership.
pub async fn remove_member(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<(), DbError> {
    let n = diesel::delete(
        memberships::table
            .filter(memberships::tenant_id.eq(tenant_id))
            .filter(memberships::user_id.eq(user_id)),
    )
    .execute(conn)
    .await?;
    if n == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// How many owners a tenant has.
pub async fn owner_count(conn: &mut AsyncPgConnection, tenant_id: Uuid) -> Result<i64, DbError> {
    Ok(memberships::table
        .filter(memberships::tenant_id.eq(tenant_id))
        .filter(memberships::role.eq(Role::Owner.as_str()))
        .count()
        .get_result(conn)
        .await?)
}

// --- default models ----------------------------------------------------------------------------

/// The global default models.
pub async fn default_models(conn: &mut AsyncPgConnection) -> Result<Vec<String>, DbError> {
    Ok(default_models::table
        .order(default_models::alias.asc())
        .select(default_models::alias)
        .load(conn)
        .await?)
}

/// Replaces the global default models.
pub async fn set_default_models(
    conn: &mut AsyncPgConnection,
    aliases: &[String],
) -> Result<(), DbError> {
    diesel::delete(default_models::table).execute(conn).await?;
    let rows: Vec<_> = aliases
        .iter()
        .map(|alias| default_models::alias.eq(alias))
        .collect();
    diesel::insert_into(default_models::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}
