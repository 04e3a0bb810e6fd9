//! Tenants and memberships.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::crypto;
use crate::db::models::{Membership, Stored, Tenant, TenantStatus, User, UserStatus};
use crate::db::tenants::PERSONAL;
use crate::db::{self, DbError};
use crate::service::audit::{Action, Entry};
use crate::service::error::{Error, Result};
use crate::service::mutate::{mutate, Tx};
use crate::service::validate;
use crate::state::AppState;

/// A tenant as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub allowed_models: Option<Vec<String>>,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            kind: t.kind.clone(),
            status: t.status.clone(),
            allowed_models: t.allowed_models.clone(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A tenant in listings: the tenant plus its budget in force and the current window's spend.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantSummary {
    #[serde(flatten)]
    pub tenant: TenantView,
    /// The budget in force (the tenant's override, else the default), USD per window;
    /// `null`: no budget applies.
    pub budget_limit_usd: Option<f64>,
    /// Spend in the budget's current window (`reporting.timezone`), from the stored usage.
    pub budget_spent_usd: f64,
}

async fn summaries(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    rows: &[Tenant],
) -> Result<Vec<TenantSummary>> {
    let ids: Vec<Uuid> = rows.iter().map(|t| t.id).collect();
    let budgets =
        crate::service::governance::budget_states(&state.config, conn, &ids, Utc::now()).await?;
    Ok(rows
        .iter()
        .map(|t| {
            let budget = budgets.get(&t.id);
            TenantSummary {
                tenant: TenantView::from(t),
                budget_limit_usd: budget.and_then(|b| b.limit_usd()),
                budget_spent_usd: budget
                    .map_or(0.0, |b| crate::service::governance::micros_to_usd(b.spent)),
            }
        })
        .collect())
}

/// One tenant with its budget and spend.
pub async fn summary(state: &AppState, tenant: &Tenant) -> Result<TenantSummary> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let mut all = summaries(state, &mut conn, std::slice::from_ref(tenant)).await?;
    all.pop().ok_or_else(|| Error::not_found("tenant"))
}

fn json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// A page of tenants: all for a super admin, the caller's otherwise; personal tenants only
/// with `include_personal`.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    include_personal: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TenantSummary>, i64)> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let scope = if caller.is_super_admin() {
        None
    } else {
        let ids: Vec<Uuid> = db::tenants::memberships_of(&mut conn, caller.user.id)
            .await?
            .into_iter()
            .filter(|(_, role)| *role >= Role::Viewer)
            .map(|(id, _)| id)
            .collect();
        Some(ids)
    };
    let (rows, total) =
        db::tenants::list(&mut conn, scope.as_deref(), include_personal, limit, offset).await?;
    Ok((summaries(state, &mut conn, &rows).await?, total))
}

/// Input of tenant creation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

/// Creates an organization tenant.
pub async fn create(state: &AppState, caller: &Caller, input: NewTenant) -> Result<TenantView> {
    let name = validate::tenant_name(&input.name)?;
    if let Some(models) = &input.allowed_models {
        crate::service::catalog::check_known(state, "allowed_models", models).await?;
    }
    let now = Utc::now();
    let tenant = Tenant {
        id: Uuid::now_v7(),
        name,
        kind: "organization".to_owned(),
        status: TenantStatus::Active.as_str().to_owned(),
        allowed_models: input.allowed_models,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        db::tenants::insert(tx.conn, &tenant).await?;
        tx.record(Entry {
            action: Action::TenantCreate,
            target_id: tenant.id.to_string(),
            tenant_id: Some(tenant.id),
            before: None,
            after: json(&TenantView::from(&tenant)),
        })
        .await
    })
    .await
    .map_err(|e| match e {
        DbError::Conflict(_) => Error::conflict(format!("a tenant named `{}` exists", tenant.name)),
        other => other.into(),
    })?;
    Ok(TenantView::from(&tenant))
}

/// Input of a tenant update.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default)]
    pub name: Option<String>,
}

/// Renames a tenant.
pub async fn rename(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    patch: TenantPatch,
) -> Result<TenantView> {
    let Some(name) = patch.name else {
        return Err(Error::invalid(
            "name",
            "nothing to change: give a new `name`",
        ));
    };
    let name = validate::tenant_name(&name)?;
    if tenant.kind == PERSONAL {
        return Err(Error::invalid(
            "name",
            "personal tenants keep their owner's name",
        ));
    }
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let updated = mutate(state, &mut conn, caller.into(), async |tx| {
        let updated = db::tenants::rename(tx.conn, tenant.id, &name).await?;
        tx.record(Entry {
            action: Action::TenantRename,
            target_id: tenant.id.to_string(),
            tenant_id: Some(tenant.id),
            before: json(&TenantView::from(tenant)),
            after: json(&TenantView::from(&updated)),
        })
        .await?;
        Ok::<_, DbError>(updated)
    })
    .await
    .map_err(|e| match e {
        DbError::Conflict(_) => Error::conflict(format!("a tenant named `{name}` exists")),
        other => Error::from_db(other, "tenant"),
    })?;
    Ok(TenantView::from(&updated))
}

/// Suspends or reactivates a tenant.
pub async fn set_status(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    status: &str,
) -> Result<TenantView> {
    let status = TenantStatus::parse(status)
        .ok_or_else(|| Error::invalid("status", "must be `active` or `suspended`"))?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let updated = mutate(state, &mut conn, caller.into(), async |tx| {
        let updated = db::tenants::set_status(tx.conn, tenant.id, status).await?;
        tx.record(Entry {
            action: Action::TenantStatus,
            target_id: tenant.id.to_string(),
            tenant_id: Some(tenant.id),
            before: json(&TenantView::from(tenant)),
            after: json(&TenantView::from(&updated)),
        })
        .await?;
        Ok::<_, DbError>(updated)
    })
    .await
    .map_err(|e| Error::from_db(e, "tenant"))?;
    Ok(TenantView::from(&updated))
}

/// Deletes a tenant. Safeguards: personal tenants cannot be deleted; a tenant with usable
/// keys needs `force` (its keys are then revoked in the same transaction); the caller must
/// repeat the tenant's name in `confirm`.
pub async fn delete(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    confirm: Option<&str>,
    force: bool,
) -> Result<()> {
    if tenant.kind == PERSONAL {
        return Err(Error::conflict(
            "personal tenants are removed with their user",
        ));
    }
    if confirm != Some(tenant.name.as_str()) {
        return Err(Error::invalid(
            "confirm",
            format!(
                "repeat the tenant's name (`?confirm={}`) to delete it",
                tenant.name
            ),
        ));
    }
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let active = db::keys::active_count(&mut conn, tenant.id).await?;
    if active > 0 && !force {
        return Err(Error::conflict(format!(
            "the tenant has {active} active API key(s); revoke them or pass `force=true`"
        )));
    }
    mutate(state, &mut conn, caller.into(), async |tx| {
        let now = Utc::now();
        let revoked = db::keys::revoke_all(tx.conn, tenant.id, now).await?;
        db::tenants::soft_delete(tx.conn, tenant.id).await?;
        tx.record(Entry {
            action: Action::TenantDelete,
            target_id: tenant.id.to_string(),
            tenant_id: Some(tenant.id),
            before: json(&TenantView::from(tenant)),
            after: Some(serde_json::json!({ "deleted": true, "keys_revoked": revoked })),
        })
        .await
    })
    .await
    .map_err(|e| Error::from_db(e, "tenant"))?;
    Ok(())
}

/// Replaces a tenant's model allowlist (`None`: every enabled alias).
pub async fn set_models(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    models: Option<Vec<String>>,
) -> Result<TenantView> {
    if let Some(models) = &models {
        crate::service::catalog::check_known(state, "models", models).await?;
    }
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let updated = mutate(state, &mut conn, caller.into(), async |tx| {
        let updated = db::tenants::set_allowed_models(tx.conn, tenant.id, models.clone()).await?;
        tx.record(Entry {
            action: Action::TenantModels,
            target_id: tenant.id.to_string(),
            tenant_id: Some(tenant.id),
            before: Some(serde_json::json!({ "allowed_models": tenant.allowed_models })),
            after: Some(serde_json::json!({ "allowed_models": updated.allowed_models })),
        })
        .await?;
        Ok::<_, DbError>(updated)
    })
    .await
    .map_err(|e| Error::from_db(e, "tenant"))?;
    Ok(TenantView::from(&updated))
}

// --- memberships -------------------------------------------------------------------------------

/// A member as the API shows it. An account's profile (`name`, `status`) is shown only to
/// super admins and to the tenant whose owner created the account: a tenant learns nothing
/// about an account that other tenants (or a super admin) set up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub status: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
}

/// Whether `caller` may see the profile of an account `provisioned_by` in `tenant`.
fn sees_profile(caller: &Caller, tenant: &Tenant, provisioned_by: Option<Uuid>) -> bool {
    caller.is_super_admin() || provisioned_by == Some(tenant.id)
}

fn member_view(m: &Membership, u: &User, profile: bool) -> MemberView {
    MemberView {
        user_id: u.id,
        email: u.email.clone(),
        name: profile.then(|| u.name.clone()),
        role: m.role.clone(),
        status: profile.then(|| u.status.clone()),
        created_at: m.created_at,
    }
}

/// Members of a tenant.
pub async fn members(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> Result<Vec<MemberView>> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let rows = db::tenants::members(&mut conn, tenant.id).await?;
    Ok(rows
        .iter()
        .map(|(m, u, by)| member_view(m, u, sees_profile(caller, tenant, *by)))
        .collect())
}

/// Input of adding a member.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub email: String,
    pub role: String,
    /// Name of a new account (ignored for an existing one).
    #[serde(default)]
    pub name: Option<String>,
    /// Password of a new account. Set by a tenant owner it is temporary: its only use is
    /// choosing a new one (`POST /admin/auth/password`). Refused for an existing account.
    #[serde(default)]
    pub password: Option<String>,
}

const PASSWORD_FOR_EXISTING: &str = "password_for_existing_account";
const PROVISIONED_ELSEWHERE: &str = "provisioned_by_another_tenant";

/// The account a new membership is for: the existing one (adopted under the rules of
/// [`NewMember`]), or one created now; with whether the caller may see its profile.
async fn member_account(
    tx: &mut Tx<'_>,
    caller: &Caller,
    tenant: &Tenant,
    email: &str,
    input: &NewMember,
    password_hash: Option<&str>,
) -> Result<(User, bool), DbError> {
    if let Some(user) = db::users::find_by_email(tx.conn, email).await? {
        if input.password.is_some() {
            return Err(DbError::Conflict(PASSWORD_FOR_EXISTING.to_owned()));
        }
        let by = db::users::provisioned_by(tx.conn, user.id).await?;
        if by.is_some_and(|t| t != tenant.id) {
            if !caller.is_super_admin() {
                return Err(DbError::Conflict(PROVISIONED_ELSEWHERE.to_owned()));
            }
            crate::service::users::disown(tx, user.id, Some(tenant.id)).await?;
        }
        let visible = sees_profile(caller, tenant, by);
        return Ok((user, visible));
    }
    let now = Utc::now();
    let mut user = User {
        id: Uuid::now_v7(),
        email: email.to_owned(),
        name: input.name.clone().unwrap_or_default(),
        is_super_admin: false,
        status: UserStatus::Active.as_str().to_owned(),
        personal_tenant_id: None,
        created_at: now,
        updated_at: now,
        last_login_at: None,
    };
    db::users::insert(tx.conn, &user).await?;
    let owner_made = !caller.is_super_admin();
    if owner_made {
        db::users::set_provisioned_by(tx.conn, user.id, Some(tenant.id)).await?;
    }
    match (password_hash, owner_made) {
        (Some(hash), true) => db::users::set_temporary_password(tx.conn, user.id, hash).await?,
        (Some(hash), false) => db::users::set_password_hash(tx.conn, user.id, hash).await?,
        (None, _) => {}
    }
    let (personal, _) = crate::service::personal::ensure(tx, user.id).await?;
    user.personal_tenant_id = Some(personal);
    tx.record(Entry {
        action: Action::UserCreate,
        target_id: user.id.to_string(),
        tenant_id: Some(tenant.id),
        before: None,
        after: Some(serde_json::json!({ "email": user.email, "name": user.name,
                "password_set": password_hash.is_some(),
                "password_temporary": password_hash.is_some() && owner_made })),
    })
    .await?;
    Ok((user, true))
}

fn add_member_error(e: DbError) -> Error {
    match e {
        DbError::Conflict(c) if c == PASSWORD_FOR_EXISTING => Error::invalid(
            "password",
            "this account exists: its password is not set here (a super admin can reset it)",
        ),
        DbError::Conflict(c) if c == PROVISIONED_ELSEWHERE => Error::conflict(
            "this account was created by another tenant's owner; ask a super admin to add it",
        ),
        DbError::Conflict(_) => {
            Error::conflict("this user is already a member; change their role instead")
        }
        other => other.into(),
    }
}

/// Adds a member, creating the account if the email is new.
pub async fn add_member(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    input: NewMember,
) -> Result<MemberView> {
    if tenant.kind == PERSONAL {
        return Err(Error::conflict(
            "a personal tenant has one member, its user; share through an organization tenant",
        ));
    }
    let email = validate::email(&input.email)?;
    let role = Role::parse(&input.role)
        .ok_or_else(|| Error::invalid("role", "must be one of owner, admin, viewer, user"))?;
    let password_hash = match &input.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let (membership, user, visible) = mutate(state, &mut conn, caller.into(), async |tx| {
        let (user, visible) =
            member_account(tx, caller, tenant, &email, &input, password_hash.as_deref()).await?;
        let membership = db::tenants::add_member(tx.conn, tenant.id, user.id, role).await?;
        tx.record(Entry {
            action: Action::MembershipAdd,
            target_id: format!("{}:{}", tenant.id, user.id),
            tenant_id: Some(tenant.id),
            before: None,
            after: Some(serde_json::json!({ "email": user.email, "role": role.as_str() })),
        })
        .await?;
        Ok::<_, DbError>((membership, user, visible))
    })
    .await
    .map_err(add_member_error)?;
    state.sessions.forget_user(user.id);
    Ok(member_view(&membership, &user, visible))
}

/// Changes a member's role; the last owner cannot be demoted.
pub async fn change_role(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    user_id: Uuid,
    role: &str,
) -> Result<MemberView> {
    let role = Role::parse(role)
        .ok_or_else(|| Error::invalid("role", "must be one of owner, admin, viewer, user"))?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let (membership, user, by) = mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::tenants::membership(tx.conn, tenant.id, user_id).await?;
        if before.role() == Role::Owner
            && role != Role::Owner
            && db::tenants::owner_count(tx.conn, tenant.id).await? <= 1
        {
            return Err(DbError::Conflict("last_owner".to_owned()));
        }
        let after = db::tenants::set_role(tx.conn, tenant.id, user_id, role).await?;
        let user = db::users::get(tx.conn, user_id).await?;
        let by = db::users::provisioned_by(tx.conn, user_id).await?;
        tx.record(Entry {
            action: Action::MembershipRole,
            target_id: format!("{}:{}", tenant.id, user_id),
            tenant_id: Some(tenant.id),
            before: Some(serde_json::json!({ "role": before.role })),
            after: Some(serde_json::json!({ "role": after.role })),
        })
        .await?;
        Ok((after, user, by))
    })
    .await
    .map_err(|e| match e {
        DbError::Conflict(_) => {
            Error::conflict("a tenant keeps at least one owner; promote another member first")
        }
        other => Error::from_db(other, "membership"),
    })?;
    Ok(member_view(
        &membership,
        &user,
        sees_profile(caller, tenant, by),
    ))
}

/// Removes a member; the last owner cannot be removed.
pub async fn remove_member(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    user_id: Uuid,
) -> Result<()> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::tenants::membership(tx.conn, tenant.id, user_id).await?;
        if before.role() == Role::Owner && db::tenants::owner_count(tx.conn, tenant.id).await? <= 1
        {
            return Err(DbError::Conflict("last_owner".to_owned()));
        }
        db::tenants::remove_member(tx.conn, tenant.id, user_id).await?;
        tx.record(Entry {
            action: Action::MembershipRemove,
            target_id: format!("{}:{}", tenant.id, user_id),
            tenant_id: Some(tenant.id),
            before: Some(serde_json::json!({ "role": before.role })),
            after: None,
        })
        .await
    })
    .await
    .map_err(|e| match e {
        DbError::Conflict(_) => {
            Error::conflict("a tenant keeps at least one owner; promote another member first")
        }
        other => Error::from_db(other, "membership"),
    })
}

/// argon2id off the async threads, with the password policy.
pub async fn hash_password(password: &str) -> Result<String> {
    validate::password(password)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}
