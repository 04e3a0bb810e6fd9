//! API keys: issue (the secret is returned once), list, get, update, revoke. A key's quotas
//! can never exceed its tenant's.

use chrono::{DateTime, Utc};
use omg_shared::keys::{format_key, valid_prefix};
use omg_shared::money::usd_to_micros;
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::crypto;
use crate::db::models::{ApiKey, KeyStatus, Stored, Tenant};
use crate::db::{self, DbError};
use crate::service::audit::{Action, Entry};
use crate::service::error::{Error, Result};
use crate::service::governance::{self, micros_to_usd};
use crate::service::mutate::mutate;
use crate::service::portal::PERSONAL;
use crate::service::validate;
use crate::state::AppState;

/// Rate limits of a key (`None` = inherit).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInput {
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub parallel_requests: Option<u64>,
}

/// A key as the API shows it: never its secret or hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub prefix: String,
    /// `sk-<prefix>.****`: enough to recognise the key.
    pub display: String,
    pub name: String,
    pub status: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub allowed_models: Option<Vec<String>>,
    /// USD per window (the default budget's window); stored as micro-USD.
    pub budget_usd: Option<f64>,
    pub warning_threshold: Option<f64>,
    pub rate_limit: RateLimitInput,
    /// Who issued the key.
    pub created_by: Option<Uuid>,
    /// The user the key acts for (stamped on its usage records); `null`: no owner.
    pub user_id: Option<Uuid>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok())
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id,
            tenant_id: k.tenant_id,
            prefix: k.prefix.clone(),
            display: format!("sk-{}.****", k.prefix),
            name: k.name.clone(),
            status: k.status.clone(),
            scopes: k.scopes.clone(),
            expires_at: k.expires_at,
            allowed_models: k.allowed_models.clone(),
            budget_usd: k.budget_micro_usd.map(micros_to_usd),
            warning_threshold: k.warning_threshold,
            rate_limit: RateLimitInput {
                requests_per_minute: to_u64(k.requests_per_minute),
                tokens_per_minute: to_u64(k.tokens_per_minute),
                parallel_requests: to_u64(k.parallel_requests),
            },
            created_by: k.created_by,
            user_id: k.user_id,
            last_used_at: k.last_used_at,
            created_at: k.created_at,
            updated_at: k.updated_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// The issuance answer: the view plus the full key, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub view: KeyView,
    pub key: String,
}

/// Input of key issuance.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    #[serde(default)]
    pub name: String,
    /// Public prefix; generated when absent.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub warning_threshold: Option<f64>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitInput>,
    /// The user the key acts for, stamped on its usage records: a member of the key's
    /// tenant, or the user whose personal tenant it is. Absent: no owner.
    #[serde(default)]
    pub user_id: Option<Uuid>,
}

fn double<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Input of a key update: absent fields stay, `null` clears.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    #[serde(default)]
    pub name: Option<String>,
    /// `active` or `disabled` (revoke with DELETE).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "double")]
    pub allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double")]
    pub budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double")]
    pub warning_threshold: Option<Option<f64>>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitInput>,
    /// The key's owner (see [`NewKey::user_id`]); `null` leaves the key without one.
    #[serde(default, deserialize_with = "double")]
    pub user_id: Option<Option<Uuid>>,
}

/// The ceilings a key of `tenant` must stay within.
struct Ceilings {
    rpm: Option<u64>,
    tpm: Option<u64>,
    parallel: Option<u64>,
    budget_micros: Option<i64>,
    allowed_models: Option<Vec<String>>,
}

async fn ceilings(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: &Tenant,
) -> Result<Ceilings> {
    let limits = db::governance::rate_limits(conn, tenant.id).await?;
    let budget = db::governance::budget(conn, tenant.id).await?;
    let defaults = governance::load_defaults(&state.config, conn).await?;
    let c = governance::TenantCeilings::of(&defaults, limits.as_ref(), budget.as_ref());
    Ok(Ceilings {
        rpm: c.requests_per_minute,
        tpm: c.tokens_per_minute,
        parallel: c.parallel_requests,
        budget_micros: c.budget_micro_usd,
        allowed_models: tenant.allowed_models.clone(),
    })
}

fn check_quota(
    field: &str,
    value: Option<u64>,
    ceiling: Option<u64>,
    what: &str,
) -> Result<Option<i64>> {
    let Some(value) = value else { return Ok(None) };
    if let Some(max) = ceiling {
        if value > max {
            return Err(Error::invalid(
                field,
                format!(
                    "{value} exceeds the tenant's {what} of {max}; raise the tenant's limit first"
                ),
            ));
        }
    }
    i64::try_from(value)
        .map(Some)
        .map_err(|_| Error::invalid(field, "too large"))
}

fn check_rate_limit(
    rl: &RateLimitInput,
    c: &Ceilings,
) -> Result<(Option<i64>, Option<i64>, Option<i64>)> {
    Ok((
        check_quota(
            "rate_limit.requests_per_minute",
            rl.requests_per_minute,
            c.rpm,
            "requests per minute",
        )?,
        check_quota(
            "rate_limit.tokens_per_minute",
            rl.tokens_per_minute,
            c.tpm,
            "tokens per minute",
        )?,
        check_quota(
            "rate_limit.parallel_requests",
            rl.parallel_requests,
            c.parallel,
            "parallel requests",
        )?,
    ))
}

fn check_budget(usd: Option<f64>, c: &Ceilings) -> Result<Option<i64>> {
    let Some(usd) = usd else { return Ok(None) };
    let micros = usd_to_micros(usd).map_err(|e| Error::invalid("budget_usd", e))?;
    if let Some(max) = c.budget_micros {
        if micros > max {
            return Err(Error::invalid(
                "budget_usd",
                format!(
                    "{} USD exceeds the tenant's budget of {} USD; raise the tenant's budget first",
                    micros_to_usd(micros),
                    micros_to_usd(max)
                ),
            ));
        }
    }
    Ok(Some(micros))
}

fn check_threshold(t: Option<f64>) -> Result<Option<f64>> {
    match t {
        Some(t) if !(t > 0.0 && t <= 1.0) => {
            Err(Error::invalid("warning_threshold", "must be in (0, 1]"))
        }
        other => Ok(other),
    }
}

fn check_models(models: &Option<Vec<String>>, c: &Ceilings) -> Result<()> {
    let Some(models) = models else { return Ok(()) };
    validate::aliases("allowed_models", models)?;
    if let Some(tenant_models) = &c.allowed_models {
        if let Some((i, m)) = models
            .iter()
            .enumerate()
            .find(|(_, m)| !tenant_models.contains(m))
        {
            return Err(Error::invalid(
                format!("allowed_models[{i}]"),
                format!("`{m}` is not in the tenant's allowed models"),
            ));
        }
    }
    Ok(())
}

/// Checks that `user_id` may own a key of `tenant`: a member of it, or the user whose
/// personal tenant it is.
async fn check_owner(
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: &Tenant,
    user_id: Uuid,
) -> Result<()> {
    if db::tenants::role_of(conn, tenant.id, user_id)
        .await?
        .is_some()
    {
        return Ok(());
    }
    if tenant.kind == PERSONAL {
        match db::users::get(conn, user_id).await {
            Ok(user) if user.personal_tenant_id == Some(tenant.id) => return Ok(()),
            Ok(_) | Err(DbError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::invalid(
        "user_id",
        format!(
            "user {user_id} is not a member of this tenant; add them as a member first, or omit \
             `user_id` for a key without an owner"
        ),
    ))
}

fn generated_prefix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The requested prefix's form and the expiry, checked before anything is read.
fn check_prefix_and_expiry(input: &NewKey) -> Result<()> {
    if input.prefix.as_deref().is_some_and(|p| !valid_prefix(p)) {
        return Err(Error::invalid(
            "prefix",
            "must be 1-32 characters of A-Z, a-z, 0-9, `_` or `-`",
        ));
    }
    if input.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(Error::invalid("expires_at", "must be in the future"));
    }
    Ok(())
}

/// The requested prefix when no key has it yet, or a generated one.
async fn free_prefix(conn: &mut db::Conn<'_>, requested: Option<String>) -> Result<String> {
    let Some(prefix) = requested else {
        return Ok(generated_prefix());
    };
    if db::keys::prefix_exists(conn, &prefix).await? {
        return Err(Error::invalid(
            "prefix",
            "is taken; choose another or omit it",
        ));
    }
    Ok(prefix)
}

/// Issues a key. The full key is in the answer and nowhere else: only its keyed hash is kept.
pub async fn issue(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    input: NewKey,
) -> Result<IssuedKey> {
    let name = validate::display_name("name", &input.name)?;
    check_prefix_and_expiry(&input)?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let c = ceilings(state, &mut conn, tenant).await?;
    let (rpm, tpm, parallel) = check_rate_limit(&input.rate_limit.unwrap_or_default(), &c)?;
    let budget = check_budget(input.budget_usd, &c)?;
    let threshold = check_threshold(input.warning_threshold)?;
    check_models(&input.allowed_models, &c)?;
    if let Some(owner) = input.user_id {
        check_owner(&mut conn, tenant, owner).await?;
    }
    let prefix = free_prefix(&mut conn, input.prefix).await?;
    let secret = crypto::random_token();
    let full = format_key(&prefix, &secret);
    let now = Utc::now();
    let key = ApiKey {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        prefix,
        secret_hash: state.hasher.digest(&full).0.to_vec(),
        name,
        status: KeyStatus::Active.as_str().to_owned(),
        scopes: input.scopes,
        expires_at: input.expires_at,
        allowed_models: input.allowed_models,
        budget_micro_usd: budget,
        warning_threshold: threshold,
        requests_per_minute: rpm,
        tokens_per_minute: tpm,
        parallel_requests: parallel,
        created_by: Some(caller.user.id),
        last_used_at: None,
        created_at: now,
        updated_at: now,
        revoked_at: None,
        user_id: input.user_id,
    };
    let view = KeyView::from(&key);
    mutate(state, &mut conn, caller.into(), async |tx| {
        db::keys::insert(tx.conn, &key).await?;
        tx.record(Entry {
            action: Action::ApiKeyIssue,
            target_id: key.id.to_string(),
            tenant_id: Some(tenant.id),
            before: None,
            after: serde_json::to_value(&view).ok(),
        })
        .await
    })
    .await
    .map_err(|e| match e {
        DbError::Conflict(_) => Error::invalid("prefix", "is taken; choose another or omit it"),
        other => other.into(),
    })?;
    tracing::info!(key_id = %key.id, tenant_id = %tenant.id, prefix = %key.prefix, "API key issued");
    Ok(IssuedKey { view, key: full })
}

/// A tenant's keys.
pub async fn list(state: &AppState, tenant: &Tenant) -> Result<Vec<KeyView>> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    Ok(db::keys::list(&mut conn, tenant.id)
        .await?
        .iter()
        .map(KeyView::from)
        .collect())
}

/// One key.
pub async fn get(state: &AppState, tenant: &Tenant, id: Uuid) -> Result<KeyView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let key = db::keys::get(&mut conn, tenant.id, id)
        .await
        .map_err(|e| Error::from_db(e, "API key"))?;
    Ok(KeyView::from(&key))
}

/// A validated [`KeyPatch`]: what to change (`None` = unchanged).
#[derive(Default)]
struct KeyChanges {
    name: Option<String>,
    enabled: Option<bool>,
    expires_at: Option<Option<DateTime<Utc>>>,
    allowed_models: Option<Option<Vec<String>>>,
    budget_micro_usd: Option<Option<i64>>,
    warning_threshold: Option<Option<f64>>,
    rate_limit: Option<(Option<i64>, Option<i64>, Option<i64>)>,
    user_id: Option<Option<Uuid>>,
}

impl KeyChanges {
    fn validate(patch: KeyPatch, c: &Ceilings) -> Result<Self> {
        let mut changes = KeyChanges::default();
        if let Some(name) = &patch.name {
            changes.name = Some(validate::display_name("name", name)?);
        }
        if let Some(status) = &patch.status {
            changes.enabled = Some(match KeyStatus::parse(status) {
                Some(KeyStatus::Active) => true,
                Some(KeyStatus::Disabled) => false,
                Some(KeyStatus::Revoked) | None => {
                    return Err(Error::invalid(
                        "status",
                        "must be `active` or `disabled` (revoke with DELETE)",
                    ))
                }
            });
        }
        if let Some(expires) = patch.expires_at {
            if expires.is_some_and(|at| at <= Utc::now()) {
                return Err(Error::invalid("expires_at", "must be in the future"));
            }
            changes.expires_at = Some(expires);
        }
        if let Some(models) = patch.allowed_models {
            check_models(&models, c)?;
            changes.allowed_models = Some(models);
        }
        if let Some(budget) = patch.budget_usd {
            changes.budget_micro_usd = Some(check_budget(budget, c)?);
        }
        if let Some(threshold) = patch.warning_threshold {
            changes.warning_threshold = Some(check_threshold(threshold)?);
        }
        if let Some(rl) = patch.rate_limit {
            changes.rate_limit = Some(check_rate_limit(&rl, c)?);
        }
        changes.user_id = patch.user_id;
        Ok(changes)
    }

    /// The settings of `key` with the changes applied (status is written separately).
    fn apply(&self, mut key: ApiKey) -> ApiKey {
        if let Some(name) = &self.name {
            key.name = name.clone();
        }
        if let Some(expires) = self.expires_at {
            key.expires_at = expires;
        }
        if let Some(models) = &self.allowed_models {
            key.allowed_models = models.clone();
        }
        if let Some(budget) = self.budget_micro_usd {
            key.budget_micro_usd = budget;
        }
        if let Some(threshold) = self.warning_threshold {
            key.warning_threshold = threshold;
        }
        if let Some((rpm, tpm, parallel)) = self.rate_limit {
            key.requests_per_minute = rpm;
            key.tokens_per_minute = tpm;
            key.parallel_requests = parallel;
        }
        if let Some(owner) = self.user_id {
            key.user_id = owner;
        }
        key
    }
}

/// The answer to changing a revoked key.
fn revoked_conflict() -> Error {
    Error::conflict("the key is revoked; issue a new one")
}

/// Updates a key's name, status, expiry, models, budget, limits or owner. The row is locked
/// for the transaction and a revoked key is never written, so an update racing a revocation
/// either lands before it or answers 409; it never brings the key back.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    id: Uuid,
    patch: KeyPatch,
) -> Result<KeyView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let c = ceilings(state, &mut conn, tenant).await?;
    let changes = KeyChanges::validate(patch, &c)?;
    if let Some(Some(owner)) = changes.user_id {
        check_owner(&mut conn, tenant, owner).await?;
    }
    let after = mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::keys::get_for_update(tx.conn, tenant.id, id).await?;
        if before.status() == KeyStatus::Revoked {
            return Err(DbError::Conflict("revoked".to_owned()));
        }
        let mut after = db::keys::update(tx.conn, &changes.apply(before.clone())).await?;
        if let Some(enabled) = changes.enabled {
            after = db::keys::set_enabled(tx.conn, id, enabled).await?;
        }
        tx.record(Entry {
            action: Action::ApiKeyUpdate,
            target_id: id.to_string(),
            tenant_id: Some(tenant.id),
            before: serde_json::to_value(KeyView::from(&before)).ok(),
            after: serde_json::to_value(KeyView::from(&after)).ok(),
        })
        .await?;
        Ok::<_, DbError>(after)
    })
    .await
    .map_err(|e| match e {
        DbError::Conflict(_) => revoked_conflict(),
        other => Error::from_db(other, "API key"),
    })?;
    Ok(KeyView::from(&after))
}

/// Revokes a key for good (idempotent: a revoked key answers as it is).
pub async fn revoke(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    id: Uuid,
) -> Result<KeyView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let (after, changed) = mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::keys::get_for_update(tx.conn, tenant.id, id).await?;
        if before.status() == KeyStatus::Revoked {
            return Ok::<_, DbError>((before, false));
        }
        let after = db::keys::revoke(tx.conn, tenant.id, id, Utc::now()).await?;
        tx.record(Entry {
            action: Action::ApiKeyRevoke,
            target_id: id.to_string(),
            tenant_id: Some(tenant.id),
            before: serde_json::to_value(KeyView::from(&before)).ok(),
            after: serde_json::to_value(KeyView::from(&after)).ok(),
        })
        .await?;
        Ok((after, true))
    })
    .await
    .map_err(|e| Error::from_db(e, "API key"))?;
    if changed {
        tracing::info!(key_id = %id, tenant_id = %tenant.id, "API key revoked");
    }
    Ok(KeyView::from(&after))
}
