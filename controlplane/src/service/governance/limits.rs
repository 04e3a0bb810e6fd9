//! Tenant rate-limit overrides and the ceilings a tenant's keys must stay within.

use super::*;

// --- tenant rate limits ------------------------------------------------------------------------

/// The ceilings a tenant's keys must stay within (`None` = no ceiling).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantCeilings {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub parallel_requests: Option<u64>,
    pub budget_micro_usd: Option<MicroUsd>,
}

impl TenantCeilings {
    /// The tenant's limits in force: its override (`0` = unlimited), else the defaults (for
    /// RPM and TPM the defaults are per key, so a tenant without an override is uncapped).
    pub fn of(
        defaults: &Defaults,
        limits: Option<&TenantRateLimits>,
        budget: Option<&TenantBudget>,
    ) -> TenantCeilings {
        let positive = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
        let explicit = |v: Option<i64>| v.is_some();
        TenantCeilings {
            requests_per_minute: limits.and_then(|l| positive(l.requests_per_minute)),
            tokens_per_minute: limits.and_then(|l| positive(l.tokens_per_minute)),
            parallel_requests: if limits.is_some_and(|l| explicit(l.parallel_requests)) {
                limits.and_then(|l| positive(l.parallel_requests))
            } else {
                Some(defaults.limits.parallel_requests_tenant).filter(|n| *n > 0)
            },
            budget_micro_usd: match budget {
                Some(b) => Some(b.budget_micro_usd).filter(|m| *m > 0),
                None => Some(defaults.budget.micro_usd).filter(|m| *m > 0),
            },
        }
    }

    pub(super) fn budget_only(budget: Option<MicroUsd>) -> TenantCeilings {
        TenantCeilings {
            budget_micro_usd: budget,
            ..TenantCeilings::default()
        }
    }
}

/// Refuses when a live key of the tenant has a quota above `c` (naming the field and key).
pub(super) fn keys_within(keys: &[ApiKey], c: &TenantCeilings) -> Result<()> {
    for key in keys.iter().filter(|k| k.status() != KeyStatus::Revoked) {
        let checks = [
            (
                "requests_per_minute",
                key.requests_per_minute,
                c.requests_per_minute,
            ),
            (
                "tokens_per_minute",
                key.tokens_per_minute,
                c.tokens_per_minute,
            ),
            (
                "parallel_requests",
                key.parallel_requests,
                c.parallel_requests,
            ),
        ];
        for (field, value, ceiling) in checks {
            if let (Some(value), Some(max)) = (value.and_then(|v| u64::try_from(v).ok()), ceiling) {
                if value > max {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "key `sk-{}.****` ({}) allows {value}, above the tenant's {max}; lower the key's limit first",
                            key.prefix, key.id
                        ),
                    ));
                }
            }
        }
        if let (Some(value), Some(max)) = (key.budget_micro_usd, c.budget_micro_usd) {
            if value > max {
                return Err(Error::invalid(
                    "budget_usd",
                    format!(
                        "key `sk-{}.****` ({}) has a budget of {} USD, above the tenant's {} USD; lower the key's budget first",
                        key.prefix,
                        key.id,
                        micros_to_usd(value),
                        micros_to_usd(max)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The limits in force for a tenant (`null` = unlimited).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EffectiveLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub parallel_requests: Option<u64>,
}

/// A tenant's rate limits: its override and what is in force.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantRateLimitsView {
    pub tenant_id: Uuid,
    /// Whether the tenant has an override.
    pub overridden: bool,
    /// The override's values (`null` = inherit, `0` = unlimited).
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub parallel_requests: Option<u64>,
    /// The tenant-wide limits in force (`null` = unlimited); a key never exceeds them.
    pub effective: EffectiveLimits,
    /// What a key of this tenant without its own limits gets (the global defaults, capped by
    /// the tenant's; `0` = unlimited).
    pub key_defaults: RateLimitDefaultsView,
    pub updated_at: Option<DateTime<Utc>>,
}

fn rate_limits_view(
    tenant: &Tenant,
    defaults: &Defaults,
    limits: Option<&TenantRateLimits>,
) -> TenantRateLimitsView {
    let c = TenantCeilings::of(defaults, limits, None);
    let raw = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    TenantRateLimitsView {
        tenant_id: tenant.id,
        overridden: limits.is_some(),
        requests_per_minute: limits.and_then(|l| raw(l.requests_per_minute)),
        tokens_per_minute: limits.and_then(|l| raw(l.tokens_per_minute)),
        parallel_requests: limits.and_then(|l| raw(l.parallel_requests)),
        effective: EffectiveLimits {
            requests_per_minute: c.requests_per_minute,
            tokens_per_minute: c.tokens_per_minute,
            parallel_requests: c.parallel_requests,
        },
        key_defaults: RateLimitDefaultsView::from(defaults),
        updated_at: limits.map(|l| l.updated_at),
    }
}

/// A tenant's rate limits.
pub async fn get_tenant_rate_limits(
    state: &AppState,
    tenant: &Tenant,
) -> Result<TenantRateLimitsView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    let limits = db::governance::rate_limits(&mut conn, tenant.id).await?;
    Ok(rate_limits_view(tenant, &defaults, limits.as_ref()))
}

/// A tenant's rate-limit override: absent or `null` = inherit, `0` = unlimited.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantRateLimitsInput {
    #[serde(default)]
    pub requests_per_minute: Option<i64>,
    #[serde(default)]
    pub tokens_per_minute: Option<i64>,
    #[serde(default)]
    pub parallel_requests: Option<i64>,
}

/// Sets (creates or replaces) a tenant's rate-limit override. Refused while a key of the
/// tenant has a higher limit.
pub async fn set_tenant_rate_limits(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    input: TenantRateLimitsInput,
) -> Result<TenantRateLimitsView> {
    let check = |field: &str, v: Option<i64>| v.map(|v| non_negative(field, v)).transpose();
    let row = TenantRateLimits {
        tenant_id: tenant.id,
        requests_per_minute: check("requests_per_minute", input.requests_per_minute)?,
        tokens_per_minute: check("tokens_per_minute", input.tokens_per_minute)?,
        parallel_requests: check("parallel_requests", input.parallel_requests)?,
        updated_at: Utc::now(),
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    let keys = db::keys::list(&mut conn, tenant.id).await?;
    keys_within(
        &keys,
        &TenantCeilings::of(&defaults, Some(&row), None).rates_only(),
    )?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::governance::rate_limits(tx.conn, tenant.id).await?;
        db::governance::upsert_rate_limits(tx.conn, &row).await?;
        tx.record(Entry {
            action: Action::TenantRateLimits,
            target_id: tenant.id.to_string(),
            tenant_id: Some(tenant.id),
            before: before.and_then(|b| serde_json::to_value(&b).ok()),
            after: serde_json::to_value(&row).ok(),
        })
        .await
    })
    .await
    .map_err(|e| Error::from_db(e, "tenant"))?;
    Ok(rate_limits_view(tenant, &defaults, Some(&row)))
}

impl TenantCeilings {
    fn rates_only(mut self) -> TenantCeilings {
        self.budget_micro_usd = None;
        self
    }
}

/// Removes a tenant's rate-limit override (the defaults apply again). Idempotent.
pub async fn delete_tenant_rate_limits(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> Result<()> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    let keys = db::keys::list(&mut conn, tenant.id).await?;
    keys_within(
        &keys,
        &TenantCeilings::of(&defaults, None, None).rates_only(),
    )?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        if let Some(before) = db::governance::delete_rate_limits(tx.conn, tenant.id).await? {
            tx.record(Entry {
                action: Action::TenantRateLimitsDelete,
                target_id: tenant.id.to_string(),
                tenant_id: Some(tenant.id),
                before: serde_json::to_value(&before).ok(),
                after: None,
            })
            .await?;
        }
        Ok::<_, DbError>(())
    })
    .await
    .map_err(|e| Error::from_db(e, "tenant"))
}
