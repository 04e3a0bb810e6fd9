//! The `/user` API's view of a caller's tenants: the live tenants they are a member of, plus
//! their personal tenant (`users.personal_tenant_id`), each with the membership role if any.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{Role, Tenant};
use super::schema::{memberships, tenants};
use super::DbError;

/// The caller's live tenants with their membership role (`None`: the personal tenant without
/// a membership row), in no particular order.
pub async fn tenants_of(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    personal_tenant_id: Option<Uuid>,
) -> Result<Vec<(Tenant, Option<Role>)>, DbError> {
    scoped(conn, user_id, personal_tenant_id, None).await
}

/// One live tenant of the caller (member of it, or their personal tenant), with the
/// membership role if any; `None` when it is not the caller's (or does not exist).
pub async fn tenant_of(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    personal_tenant_id: Option<Uuid>,
    tenant_id: Uuid,
) -> Result<Option<(Tenant, Option<Role>)>, DbError> {
    Ok(scoped(conn, user_id, personal_tenant_id, Some(tenant_id))
        .await?
        .into_iter()
        .next())
}

async fn scoped(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    personal_tenant_id: Option<Uuid>,
    only: Option<Uuid>,
) -> Result<Vec<(Tenant, Option<Role>)>, DbError> {
    let mut query = tenants::table
        .left_join(
            memberships::table.on(memberships::tenant_id
                .eq(tenants::id)
                .and(memberships::user_id.eq(user_id))),
        )
        .filter(tenants::deleted_at.is_null())
        .filter(
            memberships::user_id
                .is_not_null()
                .or(tenants::id.nullable().eq(personal_tenant_id)),
        )
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(tenants::id.eq(id));
    }
    let rows: Vec<(Tenant, Option<String>)> = query
        .select((Tenant::as_select(), memberships::role.nullable()))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant, role)| (tenant, role.as_deref().and_then(Role::parse)))
        .collect())
}
