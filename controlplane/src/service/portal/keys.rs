//! API keys self-service (`/user/tenants/{tenant_id}/api-keys*`): the admin path of
//! `service::keys` (ceilings of the tenant and the defaults, one-time secret, audit entry,
//! publisher poke) under the rights of the caller's role (the table in `portal/mod.rs`).
//! A key is the caller's when they own it (`user_id`, the user its usage is stamped with); a
//! key issued here is owned by the caller, and `created_by` stays the issuer record. Keys a
//! `user` member may not see answer 404, like a key that does not exist.

use uuid::Uuid;

use super::MyTenant;
use crate::auth::Caller;
use crate::service::error::{Error, Result};
use crate::service::keys::{self, IssuedKey, KeyView, NewKey};
use crate::state::AppState;

fn owned_by(key: &KeyView, caller: &Caller) -> bool {
    key.user_id == Some(caller.user.id)
}

/// The keys of the tenant the caller may see (every key for viewers and above, else theirs).
pub async fn list(state: &AppState, caller: &Caller, scope: &MyTenant) -> Result<Vec<KeyView>> {
    let all = keys::list(state, &scope.tenant).await?;
    Ok(if scope.sees_all_keys() {
        all
    } else {
        all.into_iter().filter(|k| owned_by(k, caller)).collect()
    })
}

/// Issues a key owned by the caller (`user_id` may only name them), within the tenant's and
/// the defaults' ceilings; the secret is in this answer only.
pub async fn issue(
    state: &AppState,
    caller: &Caller,
    scope: &MyTenant,
    mut input: NewKey,
) -> Result<IssuedKey> {
    if input.user_id.is_some_and(|owner| owner != caller.user.id) {
        return Err(Error::invalid(
            "user_id",
            "a key issued here is owned by you; omit `user_id` (a tenant admin can issue keys \
             for other members through the admin API)",
        ));
    }
    input.user_id = Some(caller.user.id);
    keys::issue(state, caller, &scope.tenant, input).await
}

/// One key the caller may see.
pub async fn get(state: &AppState, caller: &Caller, scope: &MyTenant, id: Uuid) -> Result<KeyView> {
    let key = keys::get(state, &scope.tenant, id).await?;
    if !scope.sees_all_keys() && !owned_by(&key, caller) {
        return Err(Error::not_found("API key"));
    }
    Ok(key)
}

/// Revokes a key the caller owns, or any key for admins and owners (idempotent).
pub async fn revoke(
    state: &AppState,
    caller: &Caller,
    scope: &MyTenant,
    id: Uuid,
) -> Result<KeyView> {
    let key = get(state, caller, scope, id).await?;
    if !scope.revokes_any_key() && !owned_by(&key, caller) {
        return Err(Error::forbidden(format!(
            "your role in this tenant ({}) may revoke only the keys you own; ask a tenant \
             admin or owner",
            scope.role.as_str()
        )));
    }
    keys::revoke(state, caller, &scope.tenant, id).await
}
