//! Personal tenants: every user has exactly one (`tenants.kind = 'personal'`, linked by
//! `users.personal_tenant_id`, the user its only member, as owner).
//!
//! Created in the transaction that creates the user (admin creation, a membership that
//! creates the account, bootstrap `admin_users`), at start-up for accounts from before
//! personal tenants, and at sign-in when still missing (an account created by an older
//! control plane during a rolling upgrade). [`ensure`] locks the user's row, so racing
//! sign-ins or replicas create one tenant; the tenant's name (`personal:<email>`) is unique
//! among live tenants as well. A personal tenant's allowlist is the global default models,
//! re-synced ([`resync`]) whenever they change; its budget and rate limits are the defaults
//! in force (no override rows: governance falls back to the defaults), until a super admin
//! sets an override like for any tenant.

use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::models::{Stored, Tenant, TenantStatus, User};
use crate::db::tenants::PERSONAL;
use crate::db::{self, DbError};
use crate::service::audit::{Action, Actor, Entry};
use crate::service::error::Result;
use crate::service::governance::{budget_states, micros_to_usd, BudgetState};
use crate::service::mutate::{mutate, unpublished, Tx};
use crate::state::AppState;

/// Personal tenants re-synced per transaction when the default models change.
pub const SYNC_BATCH: i64 = 500;

/// Users given a missing personal tenant per start-up pass (each in its own transaction).
const BACKFILL_PAGE: i64 = 500;

/// The name of `user`'s personal tenant. Tenant names given through the API or the config
/// cannot contain `:` or `@`, so it never collides with an organization's.
pub fn tenant_name(user: &User) -> String {
    format!("personal:{}", user.email.to_lowercase())
}

/// Makes sure `user_id` has a personal tenant, inside the caller's transaction: locks the
/// user's row, and creates the tenant (allowlist: the default models), the owner membership
/// and the link when there is none. Returns the tenant's id and whether it was created now.
///
/// Call it before the transaction records any entry without a tenant: it takes the
/// default models' lock, which `PUT /admin/default-models` takes before the global audit
/// chain's, and the opposite order could deadlock.
pub(crate) async fn ensure(tx: &mut Tx<'_>, user_id: Uuid) -> Result<(Uuid, bool), DbError> {
    let user = db::users::lock(tx.conn, user_id).await?;
    if let Some(id) = user.personal_tenant_id {
        return Ok((id, false));
    }
    db::tenants::lock_default_models(tx.conn, false).await?;
    let models = db::tenants::default_models(tx.conn).await?;
    let now = Utc::now();
    let tenant = Tenant {
        id: Uuid::now_v7(),
        name: tenant_name(&user),
        kind: PERSONAL.to_owned(),
        status: TenantStatus::Active.as_str().to_owned(),
        allowed_models: Some(models),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    db::tenants::insert(tx.conn, &tenant).await?;
    db::tenants::add_member(tx.conn, tenant.id, user.id, Role::Owner).await?;
    db::users::set_personal_tenant(tx.conn, user.id, tenant.id).await?;
    tx.record(Entry {
        action: Action::TenantCreate,
        target_id: tenant.id.to_string(),
        tenant_id: Some(tenant.id),
        before: None,
        after: Some(serde_json::json!({
            "name": tenant.name, "kind": PERSONAL, "status": tenant.status,
            "allowed_models": tenant.allowed_models, "user_id": user.id,
        })),
    })
    .await?;
    tx.record(Entry {
        action: Action::MembershipAdd,
        target_id: format!("{}:{}", tenant.id, user.id),
        tenant_id: Some(tenant.id),
        before: None,
        after: Some(serde_json::json!({ "email": user.email, "role": Role::Owner.as_str() })),
    })
    .await?;
    tracing::info!(user_id = %user.id, tenant_id = %tenant.id, "personal tenant created");
    Ok((tenant.id, true))
}

/// Gives every user without a personal tenant one (start-up, after the bootstrap items), one
/// transaction per user, audited as `actor`. Returns how many were created.
pub async fn backfill(conn: &mut db::Conn<'_>, actor: Actor<'_>) -> Result<usize, DbError> {
    let mut created = 0;
    loop {
        let missing = db::users::without_personal_tenant(conn, BACKFILL_PAGE).await?;
        for user_id in &missing {
            let ((_, new), _) =
                unpublished(conn, actor, async |tx| ensure(tx, *user_id).await).await?;
            created += usize::from(new);
        }
        if missing.len() < usize::try_from(BACKFILL_PAGE).unwrap_or(usize::MAX) {
            return Ok(created);
        }
    }
}

/// Sets every personal tenant's allowlist to the default models as stored now, in batches of
/// [`SYNC_BATCH`] tenants, each batch its own transaction with one audit entry
/// (`default_models.sync`, the tenants' ids); the publisher is told after each. Returns how
/// many tenants were synced. Idempotent: after a failure, running it again finishes the job.
pub async fn resync(state: &AppState, actor: Actor<'_>) -> Result<usize, DbError> {
    resync_in_batches(state, actor, SYNC_BATCH).await
}

/// [`resync`] with `batch` tenants per transaction.
pub async fn resync_in_batches(
    state: &AppState,
    actor: Actor<'_>,
    batch: i64,
) -> Result<usize, DbError> {
    let mut conn = state.pool.get().await?;
    let mut after: Option<Uuid> = None;
    let mut synced = 0;
    loop {
        let ids = mutate(state, &mut conn, actor, async |tx| {
            let ids = db::tenants::sync_personal_batch(tx.conn, after, batch).await?;
            if !ids.is_empty() {
                tx.record(Entry {
                    action: Action::PersonalTenantsSync,
                    target_id: "personal_tenants".to_owned(),
                    tenant_id: None,
                    before: None,
                    after: Some(serde_json::json!({ "tenants": ids })),
                })
                .await?;
            }
            Ok::<_, DbError>(ids)
        })
        .await?;
        synced += ids.len();
        match ids.last() {
            Some(last) if ids.len() == usize::try_from(batch).unwrap_or(usize::MAX) => {
                after = Some(*last);
            }
            _ => return Ok(synced),
        }
    }
}

/// A user's personal tenant in the admin users view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PersonalTenantView {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    /// The default models at the last re-sync (unless a super admin set the list).
    pub allowed_models: Option<Vec<String>>,
    /// `override` (the tenant's own budget) or `default`.
    pub budget_source: String,
    /// The budget in force, USD per window; `null`: no budget applies.
    pub budget_limit_usd: Option<f64>,
    /// Spend in the budget's current window (`reporting.timezone`), from the stored usage.
    pub budget_spent_usd: f64,
    /// `ok`, `warning` or `exceeded`; `null` without a budget.
    pub budget_level: Option<String>,
}

/// One row of `GET /admin/personal-tenants`: a user and their personal tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PersonalTenantRow {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub user_status: String,
    /// `null` only for an account from before personal tenants that has not signed in since
    /// this control plane started (start-up gives every account one).
    pub tenant: Option<PersonalTenantView>,
}

fn tenant_view(tenant: &Tenant, budget: Option<&BudgetState>) -> PersonalTenantView {
    PersonalTenantView {
        id: tenant.id,
        name: tenant.name.clone(),
        status: tenant.status.clone(),
        allowed_models: tenant.allowed_models.clone(),
        budget_source: if budget.is_some_and(|b| b.stored.is_some()) {
            "override"
        } else {
            "default"
        }
        .to_owned(),
        budget_limit_usd: budget.and_then(BudgetState::limit_usd),
        budget_spent_usd: budget.map_or(0.0, |b| micros_to_usd(b.spent)),
        budget_level: budget.and_then(|b| {
            b.limit.map(|limit| {
                omg_shared::budget::level(limit, b.warning_threshold, b.spent)
                    .as_str()
                    .to_owned()
            })
        }),
    }
}

/// A page of users (by email) with their personal tenant, its budget in force and spend.
pub async fn list(
    state: &AppState,
    limit: i64,
    offset: i64,
) -> Result<(Vec<PersonalTenantRow>, i64)> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let (users, total) = db::users::list(&mut conn, limit, offset).await?;
    let ids: Vec<Uuid> = users.iter().filter_map(|u| u.personal_tenant_id).collect();
    let tenants = db::tenants::by_ids(&mut conn, &ids).await?;
    let budgets = budget_states(&state.config, &mut conn, &ids, Utc::now()).await?;
    let rows = users
        .iter()
        .map(|user| PersonalTenantRow {
            user_id: user.id,
            email: user.email.clone(),
            name: user.name.clone(),
            user_status: user.status.clone(),
            tenant: user
                .personal_tenant_id
                .and_then(|id| tenants.iter().find(|t| t.id == id))
                .map(|t| tenant_view(t, budgets.get(&t.id))),
        })
        .collect();
    Ok((rows, total))
}
