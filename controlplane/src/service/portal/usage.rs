//! The caller's usage (`/user/usage/*`, a tenant's and a key's usage on `/user`): the
//! reporting service (`service::reporting`) over the caller's tenants only. Usage of a whole
//! tenant is shown where the caller sees every key of it (viewer and above, their personal
//! tenant); with the `user` role, only the usage of the keys they own.

use chrono::Utc;
use uuid::Uuid;

use super::keys;
use super::MyTenant;
use crate::auth::Caller;
use crate::db::{self, DbError};
use crate::service::error::Result;
use crate::service::reporting::{self as rep, RangeInput, Scope, UsageSummary};
use crate::state::AppState;

/// The tenants whose usage the caller sees: their personal tenant and those where their role
/// is viewer or above.
pub async fn scope(state: &AppState, caller: &Caller) -> Result<Scope> {
    let user = &caller.user;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let rows = db::user_scope::tenants_of(&mut conn, user.id, user.personal_tenant_id).await?;
    let tenants = rows
        .into_iter()
        .filter_map(|(tenant, role)| MyTenant::of(user, tenant, role))
        .filter(MyTenant::sees_all_keys)
        .map(|mine| mine.tenant.id)
        .collect();
    Ok(Scope::Tenants(tenants))
}

/// The usage of one key the caller may see (their own, or any for viewers and above; 404
/// otherwise).
pub async fn key_summary(
    state: &AppState,
    caller: &Caller,
    scope: &MyTenant,
    key_id: Uuid,
    input: &RangeInput,
) -> Result<UsageSummary> {
    let key = keys::get(state, caller, scope, key_id).await?;
    rep::key_summary(state, scope.tenant.id, key.id, input, Utc::now()).await
}
