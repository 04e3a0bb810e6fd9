//! What one request must be checked against: the effective limits of its key, tenant and
//! model alias, and its budgets, with the amounts it would take. Pure: no I/O, no clock
//! beyond the `now` it is given.

use chrono::{DateTime, Utc};
use omg_shared::budget::WindowSpan;
use omg_shared::counters::{BudgetScope, LimitScope};
use omg_shared::money::MicroUsd;

use crate::snapshot::{Governance, KeyEntry};

/// Requests or tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

/// One per-minute cap.
#[derive(Debug, Clone, PartialEq)]
pub struct RateCheck {
    /// Whose.
    pub scope: LimitScope,
    /// Requests or tokens.
    pub kind: RateKind,
    /// Per minute (> 0).
    pub limit: u64,
    /// What this request takes (0 = only look).
    pub amount: u64,
}

/// One parallel cap.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelCheck {
    /// Whose.
    pub scope: LimitScope,
    /// Slots (> 0).
    pub limit: u64,
}

/// One budget.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCheck {
    /// Whose.
    pub scope: BudgetScope,
    /// Limit of the window, micro-USD.
    pub limit: MicroUsd,
    /// Warning fraction.
    pub threshold: f64,
    /// Current window.
    pub span: WindowSpan,
    /// Worst-case cost reserved by this request (0 = only look).
    pub amount: MicroUsd,
}

/// Everything to check for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Per-minute caps.
    pub rates: Vec<RateCheck>,
    /// Parallel caps (empty when only looking).
    pub parallel: Vec<ParallelCheck>,
    /// Budgets.
    pub budgets: Vec<BudgetCheck>,
    /// Reporting timezone: spend is counted on the local day it is settled.
    pub timezone: Option<chrono_tz::Tz>,
}

impl Plan {
    /// Whether there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty() && self.parallel.is_empty() && self.budgets.is_empty()
    }

    /// Whether a token limit or a budget needs what the request is expected to take.
    pub fn needs_estimate(&self) -> bool {
        !self.budgets.is_empty() || self.rates.iter().any(|r| r.kind == RateKind::Tokens)
    }

    /// Sets what the request takes from its token limits and budgets (at most
    /// [`MAX_AMOUNT`] each).
    pub fn charge(&mut self, estimate: Estimate) {
        for rate in &mut self.rates {
            if rate.kind == RateKind::Tokens {
                rate.amount = estimate.tokens.min(MAX_AMOUNT.unsigned_abs());
            }
        }
        for budget in &mut self.budgets {
            budget.amount = estimate.cost.clamp(0, MAX_AMOUNT);
        }
    }

    /// The same plan at `1 / share` of every limit (rounded down, so `share` data planes
    /// together never exceed it), with budgets reduced to their share of what was left at
    /// the last look (`spent_seen` gives spend + reservations last seen for a scope).
    pub fn local_share(
        &self,
        share: u32,
        spent_seen: impl Fn(&BudgetScope) -> Option<MicroUsd>,
    ) -> Plan {
        let share = u64::from(share.max(1));
        let mut plan = self.clone();
        for rate in &mut plan.rates {
            rate.limit /= share;
        }
        for parallel in &mut plan.parallel {
            parallel.limit /= share;
        }
        for budget in &mut plan.budgets {
            let left = budget
                .limit
                .saturating_sub(spent_seen(&budget.scope).unwrap_or(0))
                .max(0);
            budget.limit = left / i64::try_from(share).unwrap_or(1);
        }
        plan
    }
}

/// Largest amount a request takes from one limit or budget: 10^13 tokens or micro-USD
/// ($10 million), far above any real request. The Redis scripts' Lua writes numbers of 10^14
/// and more in exponent form, which `HINCRBY` would refuse; no configurable TPM limit comes
/// near it, and a request reserving it is refused by any budget below $10 million.
pub const MAX_AMOUNT: MicroUsd = 10_000_000_000_000;

/// What a request is expected to take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Prompt plus the largest completion it may get.
    pub tokens: u64,
    /// Its worst-case cost.
    pub cost: MicroUsd,
}

/// A configured value; `0` means unlimited.
fn effective(value: Option<u64>, default: u64) -> Option<u64> {
    Some(value.unwrap_or(default)).filter(|v| *v > 0)
}

/// Caps a key's value at its tenant's.
fn capped(key: Option<u64>, tenant: Option<u64>) -> Option<u64> {
    match (key, tenant) {
        (Some(key), Some(tenant)) => Some(key.min(tenant)),
        (key, tenant) => key.or(tenant),
    }
}

/// The checks of a request by `key` on `alias`. `estimate` is `None` for requests that only
/// look (listings, errors before admission): nothing is taken and no slot is held.
pub fn build(
    governance: &Governance,
    key: &KeyEntry,
    alias: Option<&str>,
    estimate: Option<Estimate>,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan {
        timezone: Some(governance.timezone),
        ..Plan::default()
    };
    let scopes = Scopes::of(key);
    plan.rates = rate_checks(governance, key, &scopes, alias, estimate);
    if estimate.is_some() {
        plan.parallel = parallel_checks(governance, key, &scopes);
    }
    plan.budgets = budget_checks(governance, key, estimate.map_or(0, |e| e.cost), now);
    plan
}

/// The key's and its tenant's counter scopes.
struct Scopes {
    key: LimitScope,
    tenant: LimitScope,
}

impl Scopes {
    fn of(key: &KeyEntry) -> Self {
        let tenant = key.tenant.tenant.id;
        Self {
            key: LimitScope::Key {
                tenant,
                key: key.key.id,
            },
            tenant: LimitScope::Tenant(tenant),
        }
    }
}

/// The per-minute checks: the key's (within its tenant's), the tenant's, and the alias's
/// when `rate_limits.models` caps it. Without an estimate they take nothing (a dry check).
fn rate_checks(
    governance: &Governance,
    key: &KeyEntry,
    scopes: &Scopes,
    alias: Option<&str>,
    estimate: Option<Estimate>,
) -> Vec<RateCheck> {
    let defaults = &governance.rate_limits;
    let (tenant_limits, key_limits) = (&key.tenant.tenant.limits, &key.key.limits);
    let (requests, tokens) = match estimate {
        Some(estimate) => (1, estimate.tokens),
        None => (0, 0),
    };
    let mut rates = Vec::new();
    let mut rate = |scope: &LimitScope, kind, limit: Option<u64>, amount| {
        if let Some(limit) = limit {
            rates.push(RateCheck {
                scope: scope.clone(),
                kind,
                limit,
                amount,
            });
        }
    };
    let tenant_rpm = effective(tenant_limits.requests_per_minute, 0);
    let tenant_tpm = effective(tenant_limits.tokens_per_minute, 0);
    let key_rpm = capped(
        effective(key_limits.requests_per_minute, defaults.requests_per_minute),
        tenant_rpm,
    );
    let key_tpm = capped(
        effective(key_limits.tokens_per_minute, defaults.tokens_per_minute),
        tenant_tpm,
    );
    rate(&scopes.key, RateKind::Requests, key_rpm, requests);
    rate(&scopes.key, RateKind::Tokens, key_tpm, tokens);
    rate(&scopes.tenant, RateKind::Requests, tenant_rpm, requests);
    rate(&scopes.tenant, RateKind::Tokens, tenant_tpm, tokens);
    if let Some((alias, model)) =
        alias.and_then(|alias| Some((alias, governance.model_limits.get(alias)?)))
    {
        let scope = LimitScope::Alias(alias.to_owned());
        let (rpm, tpm) = (model.requests_per_minute, model.tokens_per_minute);
        rate(&scope, RateKind::Requests, effective(rpm, 0), requests);
        rate(&scope, RateKind::Tokens, effective(tpm, 0), tokens);
    }
    rates
}

/// The parallel caps: the key's (within its tenant's) and the tenant's.
fn parallel_checks(governance: &Governance, key: &KeyEntry, scopes: &Scopes) -> Vec<ParallelCheck> {
    let defaults = &governance.rate_limits;
    let tenant_parallel = effective(
        key.tenant.tenant.limits.parallel_requests,
        defaults.parallel_requests_tenant,
    );
    let key_parallel = capped(
        effective(
            key.key.limits.parallel_requests,
            defaults.parallel_requests_key,
        ),
        tenant_parallel,
    );
    [
        (&scopes.key, key_parallel),
        (&scopes.tenant, tenant_parallel),
    ]
    .into_iter()
    .filter_map(|(scope, limit)| {
        Some(ParallelCheck {
            scope: scope.clone(),
            limit: limit?,
        })
    })
    .collect()
}

/// The budgets: the key's, then the tenant's (else the default budget), each reserving
/// `cost`.
fn budget_checks(
    governance: &Governance,
    key: &KeyEntry,
    cost: MicroUsd,
    now: DateTime<Utc>,
) -> Vec<BudgetCheck> {
    let tenant_id = key.tenant.tenant.id;
    let tenant_policy = key.tenant.tenant.budget.as_ref();
    [
        (
            BudgetScope::Key {
                tenant: tenant_id,
                key: key.key.id,
            },
            key.key.budget.as_ref(),
        ),
        (
            BudgetScope::Tenant(tenant_id),
            tenant_policy.or(governance.budget_default.as_ref()),
        ),
    ]
    .into_iter()
    .filter_map(|(scope, policy)| {
        let policy = policy.filter(|p| p.limit_micro_usd > 0)?;
        Some(BudgetCheck {
            scope,
            limit: policy.limit_micro_usd,
            threshold: policy.warning_threshold,
            span: WindowSpan::current(policy.window, governance.timezone, now),
            amount: cost,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use omg_shared::config::RedisFailMode;
    use omg_shared::snapshot::{
        ApiKey, BudgetPolicy, BudgetWindow, Limits, RateLimitDefaults, Tenant,
    };
    use uuid::Uuid;

    use super::*;
    use crate::snapshot::TenantEntry;

    fn governance() -> Governance {
        Governance {
            rate_limits: RateLimitDefaults {
                requests_per_minute: 100,
                tokens_per_minute: 0,
                parallel_requests_key: 10,
                parallel_requests_tenant: 20,
                default_max_tokens: 4096,
            },
            budget_default: Some(BudgetPolicy {
                limit_micro_usd: 5_000_000,
                warning_threshold: 0.8,
                window: BudgetWindow::CalendarMonth,
            }),
            model_limits: BTreeMap::from([(
                "gpt".to_owned(),
                Limits {
                    requests_per_minute: Some(7),
                    tokens_per_minute: None,
                    parallel_requests: None,
                },
            )]),
            timezone: chrono_tz::Tz::UTC,
            live_dataplanes: 2,
            on_redis_error: RedisFailMode::LocalShare,
        }
    }

    fn key(tenant_limits: Limits, key_limits: Limits) -> KeyEntry {
        let tenant = Tenant {
            id: Uuid::from_u128(1),
            name: "t".into(),
            status: Default::default(),
            allowed_models: None,
            limits: tenant_limits,
            budget: None,
        };
        KeyEntry {
            key: ApiKey {
                id: Uuid::from_u128(2),
                tenant_id: tenant.id,
                prefix: "p".into(),
                digest: omg_shared::keys::KeyHasher::new(b"pepper-pepper-pepper-pepper-32ch")
                    .digest("sk-p.s"),
                name: String::new(),
                status: Default::default(),
                expires_at_ms: None,
                allowed_models: None,
                limits: key_limits,
                budget: None,
                user_id: None,
            },
            tenant: Arc::new(TenantEntry { tenant }),
            allowed: None,
        }
    }

    #[test]
    fn key_limits_never_exceed_the_tenant() {
        let key = key(
            Limits {
                requests_per_minute: Some(50),
                tokens_per_minute: None,
                parallel_requests: Some(3),
            },
            Limits {
                requests_per_minute: Some(500),
                tokens_per_minute: None,
                parallel_requests: None,
            },
        );
        let estimate = Estimate {
            tokens: 10,
            cost: 42,
        };
        let plan = build(&governance(), &key, Some("gpt"), Some(estimate), Utc::now());
        let limits: Vec<(LimitScope, RateKind, u64, u64)> = plan
            .rates
            .iter()
            .map(|r| (r.scope.clone(), r.kind, r.limit, r.amount))
            .collect();
        let tenant = LimitScope::Tenant(Uuid::from_u128(1));
        let key_scope = LimitScope::Key {
            tenant: Uuid::from_u128(1),
            key: Uuid::from_u128(2),
        };
        assert_eq!(
            limits,
            vec![
                (key_scope.clone(), RateKind::Requests, 50, 1),
                (tenant.clone(), RateKind::Requests, 50, 1),
                (LimitScope::Alias("gpt".into()), RateKind::Requests, 7, 1),
            ]
        );
        // Parallel: key default 10 capped by the tenant's 3.
        assert_eq!(
            plan.parallel,
            vec![
                ParallelCheck {
                    scope: key_scope,
                    limit: 3
                },
                ParallelCheck {
                    scope: tenant,
                    limit: 3
                }
            ]
        );
        assert_eq!(plan.budgets.len(), 1);
        assert_eq!(plan.budgets[0].amount, 42);
        assert_eq!(plan.budgets[0].limit, 5_000_000);
    }

    #[test]
    fn looking_takes_nothing_and_holds_no_slot() {
        let key = key(Limits::default(), Limits::default());
        let plan = build(&governance(), &key, None, None, Utc::now());
        assert!(plan.parallel.is_empty());
        assert!(plan.rates.iter().all(|r| r.amount == 0));
        assert!(plan.budgets.iter().all(|b| b.amount == 0));
    }

    #[test]
    fn the_local_share_divides_limits_and_what_is_left_of_budgets() {
        let key = key(Limits::default(), Limits::default());
        let plan = build(
            &governance(),
            &key,
            Some("gpt"),
            Some(Estimate { tokens: 1, cost: 1 }),
            Utc::now(),
        );
        let share = plan.local_share(2, |_| Some(1_000_000));
        assert_eq!(share.rates[0].limit, 50);
        assert_eq!(share.rates[1].limit, 3);
        assert_eq!(share.parallel[0].limit, 5);
        assert_eq!(share.budgets[0].limit, 2_000_000);
    }
}
