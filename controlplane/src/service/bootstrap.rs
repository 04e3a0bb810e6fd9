//! Applies the config's `bootstrap` block. Each item (a tenant, an admin, a key, a
//! membership, tenant limits, a tenant budget) is applied once ever, recorded in
//! `bootstrap_ledger` in the same transaction: restarts never duplicate anything, and never
//! reset or recreate what an operator changed or deleted afterwards. Then every user without
//! a personal tenant gets one (`service/personal.rs`; idempotent, not a ledger item).

use chrono::Utc;

use omg_shared::config::GatewayConfig;
use omg_shared::keys::{format_key, valid_prefix};
use omg_shared::money::usd_to_micros;
use uuid::Uuid;

use crate::crypto;
use crate::db::models::{
    ApiKey, Role, Stored, Tenant, TenantBudget, TenantRateLimits, User, UserStatus,
};
use crate::db::{self, Conn, DbError};
use crate::service::audit::{Action, Actor, Entry};
use crate::service::mutate::unpublished;
use crate::state::AppState;

/// What one bootstrap run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub applied: Vec<String>,
    pub skipped: Vec<String>,
}

/// Bootstrap's changes are audited as the system's.
const BOOTSTRAP: Actor<'static> = Actor::System {
    email: "bootstrap",
    user_id: None,
    request_id: "bootstrap",
    ip: None,
};

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|n| i64::try_from(n).ok())
}

/// Applies every not-yet-applied item, section by section. Password hashing happens before
/// the transaction of each item.
pub async fn run(state: &AppState) -> Result<Report, String> {
    let mut report = Report::default();
    let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
    tenants(state, &mut conn, &mut report).await?;
    admin_users(state, &mut conn, &mut report).await?;
    memberships(state, &mut conn, &mut report).await?;
    api_keys(state, &mut conn, &mut report).await?;
    tenant_limits(state, &mut conn, &mut report).await?;
    tenant_budgets(state, &mut conn, &mut report).await?;
    let created = crate::service::personal::backfill(&mut conn, BOOTSTRAP)
        .await
        .map_err(|e| format!("creating missing personal tenants: {e}"))?;
    if created > 0 {
        tracing::info!(
            created,
            "personal tenants created for accounts that had none"
        );
    }
    Ok(report)
}

/// `bootstrap.tenants`: creates each tenant unless one of that name exists.
async fn tenants(state: &AppState, conn: &mut Conn<'_>, report: &mut Report) -> Result<(), String> {
    let config: &GatewayConfig = &state.config;
    let boot = &config.bootstrap;
    for tenant in &boot.tenants {
        let item = format!("tenant:{}", tenant.name.to_lowercase());
        let status = tenant.status.as_str();
        let applied = unpublished(conn, BOOTSTRAP, async |tx| {
            if !db::catalog::claim_bootstrap_item(tx.conn, &item).await? {
                return Ok::<_, DbError>(false);
            }
            if db::tenants::find_by_name(tx.conn, &tenant.name)
                .await?
                .is_some()
            {
                return Ok(true);
            }
            let now = Utc::now();
            let row = Tenant {
                id: Uuid::now_v7(),
                name: tenant.name.clone(),
                kind: "organization".to_owned(),
                status: status.to_owned(),
                allowed_models: tenant.allowed_models.clone(),
                created_at: now,
                updated_at: now,
                deleted_at: None,
            };
            db::tenants::insert(tx.conn, &row).await?;
            tx.record(Entry {
                action: Action::TenantCreate,
                target_id: row.id.to_string(),
                tenant_id: Some(row.id),
                before: None,
                after: Some(serde_json::json!({ "name": row.name, "status": row.status })),
            })
            .await?;
            Ok(true)
        })
        .await
        .map(|(applied, _)| applied)
        .map_err(|e| format!("bootstrap tenant `{}`: {e}", tenant.name))?;
        note(report, item, applied);
    }
    Ok(())
}

/// `bootstrap.admin_users`: creates each super admin, or promotes an existing user.
async fn admin_users(
    state: &AppState,
    conn: &mut Conn<'_>,
    report: &mut Report,
) -> Result<(), String> {
    let config: &GatewayConfig = &state.config;
    let boot = &config.bootstrap;
    for admin in &boot.admin_users {
        let item = format!("admin_user:{}", admin.email.to_lowercase());
        let hash = hash_password(admin.password.as_ref()).await?;
        let applied = unpublished(conn, BOOTSTRAP, async |tx| {
            if !db::catalog::claim_bootstrap_item(tx.conn, &item).await? {
                return Ok::<_, DbError>(false);
            }
            match db::users::find_by_email(tx.conn, &admin.email).await? {
                Some(existing) => {
                    crate::service::personal::ensure(tx, existing.id).await?;
                    if !existing.is_super_admin {
                        db::users::update(tx.conn, existing.id, None, Some(true), None).await?;
                        tx.record(Entry {
                            action: Action::UserPromote,
                            target_id: existing.id.to_string(),
                            tenant_id: None,
                            before: Some(serde_json::json!({ "is_super_admin": false })),
                            after: Some(serde_json::json!({ "is_super_admin": true })),
                        })
                        .await?;
                    }
                }
                None => {
                    let now = Utc::now();
                    let user = User {
                        id: Uuid::now_v7(),
                        email: admin.email.to_lowercase(),
                        name: admin.name.clone(),
                        is_super_admin: true,
                        status: UserStatus::Active.as_str().to_owned(),
                        personal_tenant_id: None,
                        created_at: now,
                        updated_at: now,
                        last_login_at: None,
                    };
                    db::users::insert(tx.conn, &user).await?;
                    if let Some(hash) = &hash {
                        db::users::set_password_hash(tx.conn, user.id, hash).await?;
                    }
                    // Before the global audit entry (the lock order of the default models).
                    crate::service::personal::ensure(tx, user.id).await?;
                    tx.record(Entry {
                        action: Action::UserCreate,
                        target_id: user.id.to_string(),
                        tenant_id: None,
                        before: None,
                        after: Some(
                            serde_json::json!({ "email": user.email, "is_super_admin": true,
                                "password_set": hash.is_some() }),
                        ),
                    })
                    .await?;
                }
            }
            Ok(true)
        })
        .await
        .map(|(applied, _)| applied)
        .map_err(|e| format!("bootstrap admin user `{}`: {e}", admin.email))?;
        note(report, item, applied);
    }
    Ok(())
}

/// `bootstrap.memberships`: adds each member (skipped while its tenant or user is missing).
async fn memberships(
    state: &AppState,
    conn: &mut Conn<'_>,
    report: &mut Report,
) -> Result<(), String> {
    let config: &GatewayConfig = &state.config;
    let boot = &config.bootstrap;
    for membership in &boot.memberships {
        let item = format!(
            "membership:{}:{}",
            membership.tenant.to_lowercase(),
            membership.email.to_lowercase()
        );
        let applied = unpublished(conn, BOOTSTRAP, async |tx| {
            let Some(tenant) = db::tenants::find_by_name(tx.conn, &membership.tenant).await? else {
                return Ok::<_, DbError>(None);
            };
            let Some(user) = db::users::find_by_email(tx.conn, &membership.email).await? else {
                return Ok(None);
            };
            if !db::catalog::claim_bootstrap_item(tx.conn, &item).await? {
                return Ok(Some(false));
            }
            if db::tenants::role_of(tx.conn, tenant.id, user.id)
                .await?
                .is_none()
            {
                let role = Role::parse(&membership.role).ok_or_else(|| {
                    DbError::Conflict(format!("`{}` is not a role", membership.role))
                })?;
                db::tenants::add_member(tx.conn, tenant.id, user.id, role).await?;
                tx.record(Entry {
                    action: Action::MembershipAdd,
                    target_id: format!("{}:{}", tenant.id, user.id),
                    tenant_id: Some(tenant.id),
                    before: None,
                    after: Some(
                        serde_json::json!({ "email": user.email, "role": membership.role }),
                    ),
                })
                .await?;
            }
            Ok(Some(true))
        })
        .await
        .map(|(applied, _)| applied)
        .map_err(|e| format!("bootstrap membership `{item}`: {e}"))?;
        match applied {
            Some(applied) => note(report, item, applied),
            None => {
                tracing::warn!(%item, "bootstrap membership skipped: its tenant or user does not exist (deleted, or missing from bootstrap.tenants / admin_users)");
                report.skipped.push(item);
            }
        }
    }
    Ok(())
}

/// `bootstrap.api_keys`: issues each key with a fixed prefix and secret.
async fn api_keys(
    state: &AppState,
    conn: &mut Conn<'_>,
    report: &mut Report,
) -> Result<(), String> {
    let config: &GatewayConfig = &state.config;
    let boot = &config.bootstrap;
    for key in &boot.api_keys {
        let (Some(prefix), Some(secret)) = (&key.prefix, &key.secret) else {
            tracing::warn!(tenant = %key.tenant, "bootstrap API key skipped: it needs `prefix` and `secret` (issue keys through the admin API otherwise)");
            continue;
        };
        if !valid_prefix(prefix) {
            return Err(format!("bootstrap.api_keys: invalid prefix `{prefix}`"));
        }
        let item = format!("api_key:{prefix}");
        let digest = state.hasher.digest(&format_key(prefix, secret.expose()));
        let applied = unpublished(conn, BOOTSTRAP, async |tx| {
            let Some(tenant) = db::tenants::find_by_name(tx.conn, &key.tenant).await? else {
                return Ok::<_, DbError>(None);
            };
            if !db::catalog::claim_bootstrap_item(tx.conn, &item).await? {
                return Ok(Some(false));
            }
            if db::keys::prefix_exists(tx.conn, prefix).await? {
                return Ok(Some(true));
            }
            let now = Utc::now();
            let rl = key.rate_limit.unwrap_or_default();
            let expires_at = match &key.expires_at {
                Some(text) => chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .map_err(|e| DbError::Conflict(format!("expires_at: {e}")))?,
                None => None,
            };
            let row = ApiKey {
                id: Uuid::now_v7(),
                tenant_id: tenant.id,
                prefix: prefix.clone(),
                secret_hash: digest.0.to_vec(),
                name: key.name.clone(),
                status: key.status.as_str().to_owned(),
                scopes: key.scopes.clone(),
                expires_at,
                allowed_models: key.allowed_models.clone(),
                budget_micro_usd: key.budget_usd.and_then(|usd| usd_to_micros(usd).ok()),
                warning_threshold: key.warning_threshold,
                requests_per_minute: to_i64(rl.requests_per_minute),
                tokens_per_minute: to_i64(rl.tokens_per_minute),
                parallel_requests: to_i64(rl.parallel_requests),
                created_by: None,
                last_used_at: None,
                created_at: now,
                updated_at: now,
                revoked_at: None,
                user_id: None,
            };
            db::keys::insert(tx.conn, &row).await?;
            tx.record(Entry {
                action: Action::ApiKeyIssue,
                target_id: row.id.to_string(),
                tenant_id: Some(tenant.id),
                before: None,
                after: Some(serde_json::json!({ "prefix": row.prefix, "name": row.name })),
            })
            .await?;
            Ok(Some(true))
        })
        .await
        .map(|(applied, _)| applied)
        .map_err(|e| format!("bootstrap API key `{prefix}`: {e}"))?;
        match applied {
            Some(applied) => note(report, item, applied),
            None => {
                tracing::warn!(%item, tenant = %key.tenant, "bootstrap API key skipped: its tenant does not exist");
                report.skipped.push(item);
            }
        }
    }
    Ok(())
}

/// `bootstrap.tenant_limits`: sets each tenant's rate limits unless it has some.
async fn tenant_limits(
    state: &AppState,
    conn: &mut Conn<'_>,
    report: &mut Report,
) -> Result<(), String> {
    let config: &GatewayConfig = &state.config;
    let boot = &config.bootstrap;
    for limits in &boot.tenant_limits {
        let item = format!("tenant_limits:{}", limits.tenant.to_lowercase());
        let applied = unpublished(conn, BOOTSTRAP, async |tx| {
            let Some(tenant) = db::tenants::find_by_name(tx.conn, &limits.tenant).await? else {
                return Ok::<_, DbError>(None);
            };
            if !db::catalog::claim_bootstrap_item(tx.conn, &item).await? {
                return Ok(Some(false));
            }
            if db::governance::rate_limits(tx.conn, tenant.id)
                .await?
                .is_none()
            {
                let row = TenantRateLimits {
                    tenant_id: tenant.id,
                    requests_per_minute: to_i64(limits.limits.requests_per_minute),
                    tokens_per_minute: to_i64(limits.limits.tokens_per_minute),
                    parallel_requests: to_i64(limits.limits.parallel_requests),
                    updated_at: Utc::now(),
                };
                db::governance::upsert_rate_limits(tx.conn, &row).await?;
                tx.record(Entry {
                    action: Action::TenantRateLimits,
                    target_id: tenant.id.to_string(),
                    tenant_id: Some(tenant.id),
                    before: None,
                    after: serde_json::to_value(&row).ok(),
                })
                .await?;
            }
            Ok(Some(true))
        })
        .await
        .map(|(applied, _)| applied)
        .map_err(|e| format!("bootstrap tenant limits `{}`: {e}", limits.tenant))?;
        match applied {
            Some(applied) => note(report, item, applied),
            None => report.skipped.push(item),
        }
    }
    Ok(())
}

/// `bootstrap.tenant_budgets`: sets each tenant's budget unless it has one.
async fn tenant_budgets(
    state: &AppState,
    conn: &mut Conn<'_>,
    report: &mut Report,
) -> Result<(), String> {
    let config: &GatewayConfig = &state.config;
    let boot = &config.bootstrap;
    for budget in &boot.tenant_budgets {
        let item = format!("tenant_budget:{}", budget.tenant.to_lowercase());
        let micros = usd_to_micros(budget.budget_usd)
            .map_err(|e| format!("bootstrap.tenant_budgets `{}`: {e}", budget.tenant))?;
        let cooldown = match &budget.alert_cooldown {
            Some(text) => Some(humantime_secs(text).map_err(|e| {
                format!(
                    "bootstrap.tenant_budgets `{}`.alert_cooldown: {e}",
                    budget.tenant
                )
            })?),
            None => None,
        };
        let applied = unpublished(conn, BOOTSTRAP, async |tx| {
            let Some(tenant) = db::tenants::find_by_name(tx.conn, &budget.tenant).await? else {
                return Ok::<_, DbError>(None);
            };
            if !db::catalog::claim_bootstrap_item(tx.conn, &item).await? {
                return Ok(Some(false));
            }
            if db::governance::budget(tx.conn, tenant.id).await?.is_none() {
                let row = TenantBudget {
                    tenant_id: tenant.id,
                    budget_micro_usd: micros,
                    warning_threshold: budget
                        .warning_threshold
                        .unwrap_or(config.budgets.warning_threshold_perc),
                    refresh_schedule: budget
                        .refresh_schedule
                        .clone()
                        .unwrap_or_else(|| config.budgets.refresh_schedule.clone()),
                    alert_emails: budget.alert_emails.clone(),
                    alert_webhooks: budget.alert_webhooks.clone(),
                    alert_cooldown_secs: cooldown,
                    updated_at: Utc::now(),
                };
                db::governance::upsert_budget(tx.conn, &row).await?;
                tx.record(Entry {
                    action: Action::TenantBudget,
                    target_id: tenant.id.to_string(),
                    tenant_id: Some(tenant.id),
                    before: None,
                    after: serde_json::to_value(&row).ok(),
                })
                .await?;
            }
            Ok(Some(true))
        })
        .await
        .map(|(applied, _)| applied)
        .map_err(|e| format!("bootstrap tenant budget `{}`: {e}", budget.tenant))?;
        match applied {
            Some(applied) => note(report, item, applied),
            None => report.skipped.push(item),
        }
    }
    Ok(())
}

/// An admin's password hash, computed off the runtime's threads.
async fn hash_password(
    password: Option<&omg_shared::secret::Secret>,
) -> Result<Option<String>, String> {
    match password {
        Some(p) => {
            let p = p.expose().to_owned();
            Ok(Some(
                tokio::task::spawn_blocking(move || crypto::hash_password(&p))
                    .await
                    .map_err(|e| e.to_string())??,
            ))
        }
        None => Ok(None),
    }
}

fn note(report: &mut Report, item: String, applied: bool) {
    if applied {
        tracing::info!(%item, "bootstrap item applied");
        report.applied.push(item);
    } else {
        report.skipped.push(item);
    }
}

fn humantime_secs(text: &str) -> Result<i64, String> {
    let d = omg_shared::duration::parse(text)?;
    i64::try_from(d.as_secs()).map_err(|_| "too large".to_owned())
}
