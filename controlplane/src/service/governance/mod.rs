//! Rate-limit and budget governance: the global defaults (persisted rows win over the YAML
//! config once set), tenant overrides, and a tenant's current spend against its budget.
//!
//! Money is integer micro-USD inside and USD numbers in the API. Windows are the shared
//! [`WindowSpan`]s in `reporting.timezone`, so the spend shown here is the spend the data
//! planes count.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use diesel_async::AsyncPgConnection;
use omg_shared::budget::{day_start, level, parse_timezone, WindowSpan};
use omg_shared::config::GatewayConfig;
use omg_shared::money::{usd_to_micros, MicroUsd};
use omg_shared::snapshot::BudgetWindow;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::models::{
    ApiKey, BudgetDefaultRow, KeyStatus, RateLimitDefaultsRow, Tenant, TenantBudget,
    TenantRateLimits,
};
use crate::db::{self, DbError};
use crate::service::audit::{Action, Entry};
use crate::service::error::{Error, Result};
use crate::service::mutate::mutate;
use crate::service::validate;
use crate::state::AppState;

/// Micro-USD as a USD number (exact to the micro-dollar for any realistic amount).
pub fn micros_to_usd(micros: MicroUsd) -> f64 {
    micros as f64 / 1_000_000.0
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Where a default comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The YAML config (`rate_limits.*`, `budgets.*`): nothing set through the API yet.
    Config,
    /// Set through the admin API (Postgres): wins over the config.
    Database,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Database => "database",
        }
    }
}

/// The global default rate limits in force (`0` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDefaults {
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
    pub parallel_requests_key: u64,
    pub parallel_requests_tenant: u64,
}

/// The default budget in force (`micro_usd == 0`: no default budget).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetDefault {
    pub micro_usd: MicroUsd,
    pub warning_threshold: f64,
    pub window: BudgetWindow,
}

/// Every default in force, with where each comes from.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub limits: LimitDefaults,
    pub limits_source: Source,
    pub limits_updated_at: Option<DateTime<Utc>>,
    pub budget: BudgetDefault,
    pub budget_source: Source,
    pub budget_updated_at: Option<DateTime<Utc>>,
}

/// The defaults in force: the persisted rows when present, else the config. Pure (the
/// snapshot builder calls it with the rows it read).
pub fn effective(
    config: &GatewayConfig,
    limits: Option<&RateLimitDefaultsRow>,
    budget: Option<&BudgetDefaultRow>,
) -> Defaults {
    let rl = &config.rate_limits;
    let config_window = BudgetWindow::parse(&config.budgets.refresh_schedule)
        .unwrap_or(BudgetWindow::CalendarMonth);
    Defaults {
        limits: match limits {
            Some(row) => LimitDefaults {
                requests_per_minute: to_u64(row.requests_per_minute),
                tokens_per_minute: to_u64(row.tokens_per_minute),
                parallel_requests_key: to_u64(row.parallel_requests_key),
                parallel_requests_tenant: to_u64(row.parallel_requests_tenant),
            },
            None => LimitDefaults {
                requests_per_minute: rl.default_requests_per_minute,
                tokens_per_minute: rl.default_tokens_per_minute,
                parallel_requests_key: rl.default_parallel_requests_key,
                parallel_requests_tenant: rl.default_parallel_requests_tenant,
            },
        },
        limits_source: if limits.is_some() {
            Source::Database
        } else {
            Source::Config
        },
        limits_updated_at: limits.map(|r| r.updated_at),
        budget: match budget {
            Some(row) => BudgetDefault {
                micro_usd: row.budget_micro_usd,
                warning_threshold: row.warning_threshold,
                window: BudgetWindow::parse(&row.refresh_schedule).unwrap_or(config_window),
            },
            None => BudgetDefault {
                micro_usd: usd_to_micros(config.budgets.default_usd).unwrap_or(0),
                warning_threshold: config.budgets.warning_threshold_perc,
                window: config_window,
            },
        },
        budget_source: if budget.is_some() {
            Source::Database
        } else {
            Source::Config
        },
        budget_updated_at: budget.map(|r| r.updated_at),
    }
}

/// Reads the persisted defaults and merges them over the config.
pub async fn load_defaults(
    config: &GatewayConfig,
    conn: &mut AsyncPgConnection,
) -> Result<Defaults, DbError> {
    let limits = db::governance::rate_limit_defaults(conn).await?;
    let budget = db::governance::budget_default(conn).await?;
    Ok(effective(config, limits.as_ref(), budget.as_ref()))
}

/// The reporting timezone (validated at start-up; UTC if it somehow is not).
pub fn timezone(config: &GatewayConfig) -> Tz {
    parse_timezone(&config.reporting.timezone).unwrap_or(Tz::UTC)
}

fn non_negative(field: &str, value: i64) -> Result<i64> {
    if value < 0 {
        return Err(Error::invalid(
            field,
            format!("must be a non-negative whole number (0 = unlimited), got {value}"),
        ));
    }
    Ok(value)
}

fn threshold(field: &str, value: f64) -> Result<f64> {
    if !(value > 0.0 && value <= 1.0) {
        return Err(Error::invalid(
            field,
            format!("must be a fraction in (0, 1], got {value}"),
        ));
    }
    Ok(value)
}

fn window(field: &str, text: &str) -> Result<BudgetWindow> {
    BudgetWindow::parse(text.trim()).map_err(|message| Error::invalid(field, message))
}

fn usd(field: &str, value: f64) -> Result<MicroUsd> {
    usd_to_micros(value).map_err(|message| Error::invalid(field, message))
}

// --- global default rate limits ----------------------------------------------------------------

/// The global default rate limits (`0` = unlimited).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RateLimitDefaultsView {
    /// Requests per minute of a key without its own limit.
    pub requests_per_minute: u64,
    /// Tokens per minute of a key without its own limit.
    pub tokens_per_minute: u64,
    /// Concurrent requests of a key without its own limit.
    pub parallel_requests_key: u64,
    /// Concurrent requests of a tenant without its own limit.
    pub parallel_requests_tenant: u64,
    /// `config` (the YAML `rate_limits.default_*`) or `database` (set through this API,
    /// wins over the config).
    pub source: String,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<&Defaults> for RateLimitDefaultsView {
    fn from(d: &Defaults) -> Self {
        Self {
            requests_per_minute: d.limits.requests_per_minute,
            tokens_per_minute: d.limits.tokens_per_minute,
            parallel_requests_key: d.limits.parallel_requests_key,
            parallel_requests_tenant: d.limits.parallel_requests_tenant,
            source: d.limits_source.as_str().to_owned(),
            updated_at: d.limits_updated_at,
        }
    }
}

/// New global default rate limits: every field, `0` = unlimited.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDefaultsInput {
    pub requests_per_minute: i64,
    pub tokens_per_minute: i64,
    pub parallel_requests_key: i64,
    pub parallel_requests_tenant: i64,
}

/// The global default rate limits in force.
pub async fn get_rate_limit_defaults(state: &AppState) -> Result<RateLimitDefaultsView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    Ok(RateLimitDefaultsView::from(&defaults))
}

/// Persists the global default rate limits (from now on they win over the config).
pub async fn set_rate_limit_defaults(
    state: &AppState,
    caller: &Caller,
    input: RateLimitDefaultsInput,
) -> Result<RateLimitDefaultsView> {
    let row = RateLimitDefaultsRow {
        id: true,
        requests_per_minute: non_negative("requests_per_minute", input.requests_per_minute)?,
        tokens_per_minute: non_negative("tokens_per_minute", input.tokens_per_minute)?,
        parallel_requests_key: non_negative("parallel_requests_key", input.parallel_requests_key)?,
        parallel_requests_tenant: non_negative(
            "parallel_requests_tenant",
            input.parallel_requests_tenant,
        )?,
        updated_at: Utc::now(),
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let config = &state.config;
    let after = mutate(state, &mut conn, caller.into(), async |tx| {
        let before = load_defaults(config, tx.conn).await?;
        db::governance::put_rate_limit_defaults(tx.conn, &row).await?;
        let after = load_defaults(config, tx.conn).await?;
        tx.record(Entry {
            action: Action::SettingsRateLimits,
            target_id: "rate_limits".to_owned(),
            tenant_id: None,
            before: serde_json::to_value(RateLimitDefaultsView::from(&before)).ok(),
            after: serde_json::to_value(RateLimitDefaultsView::from(&after)).ok(),
        })
        .await?;
        Ok::<_, DbError>(after)
    })
    .await?;
    Ok(RateLimitDefaultsView::from(&after))
}

// --- default budget ----------------------------------------------------------------------------

/// The default budget of tenants without an override.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BudgetDefaultView {
    /// USD per window; `0` = no default budget.
    pub budget_usd: f64,
    /// Fraction of the budget where the warning state starts.
    pub warning_threshold: f64,
    /// `calendar_month`, `weekly` or `rolling_<N>d` (also the window of key budgets).
    pub refresh_schedule: String,
    /// IANA timezone of the windows (`reporting.timezone`).
    pub timezone: String,
    /// `config` (the YAML `budgets.*`) or `database` (set through this API, wins over the
    /// config).
    pub source: String,
    pub updated_at: Option<DateTime<Utc>>,
}

fn budget_default_view(d: &Defaults, config: &GatewayConfig) -> BudgetDefaultView {
    BudgetDefaultView {
        budget_usd: micros_to_usd(d.budget.micro_usd),
        warning_threshold: d.budget.warning_threshold,
        refresh_schedule: d.budget.window.as_string(),
        timezone: config.reporting.timezone.clone(),
        source: d.budget_source.as_str().to_owned(),
        updated_at: d.budget_updated_at,
    }
}

/// A new default budget. Absent `warning_threshold` and `refresh_schedule` keep the values
/// in force.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetDefaultInput {
    /// USD per window; `0` = no default budget.
    pub budget_usd: f64,
    #[serde(default)]
    pub warning_threshold: Option<f64>,
    #[serde(default)]
    pub refresh_schedule: Option<String>,
}

/// The default budget in force.
pub async fn get_budget_default(state: &AppState) -> Result<BudgetDefaultView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    Ok(budget_default_view(&defaults, &state.config))
}

/// Persists the default budget (from now on it wins over the config).
pub async fn set_budget_default(
    state: &AppState,
    caller: &Caller,
    input: BudgetDefaultInput,
) -> Result<BudgetDefaultView> {
    let micro_usd = usd("budget_usd", input.budget_usd)?;
    let warning = input
        .warning_threshold
        .map(|t| threshold("warning_threshold", t))
        .transpose()?;
    let schedule = input
        .refresh_schedule
        .as_deref()
        .map(|s| window("refresh_schedule", s))
        .transpose()?;
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let config = &state.config;
    let after = mutate(state, &mut conn, caller.into(), async |tx| {
        let before = load_defaults(config, tx.conn).await?;
        let row = BudgetDefaultRow {
            id: true,
            budget_micro_usd: micro_usd,
            warning_threshold: warning.unwrap_or(before.budget.warning_threshold),
            refresh_schedule: schedule.unwrap_or(before.budget.window).as_string(),
            updated_at: Utc::now(),
        };
        db::governance::put_budget_default(tx.conn, &row).await?;
        let after = load_defaults(config, tx.conn).await?;
        tx.record(Entry {
            action: Action::BudgetDefaultSet,
            target_id: "budget_default".to_owned(),
            tenant_id: None,
            before: serde_json::to_value(budget_default_view(&before, config)).ok(),
            after: serde_json::to_value(budget_default_view(&after, config)).ok(),
        })
        .await?;
        Ok::<_, DbError>(after)
    })
    .await?;
    Ok(budget_default_view(&after, config))
}

pub mod budgets;
mod limits;
pub mod redact;
mod tenant_budget;

pub use limits::*;
pub use tenant_budget::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_compactly() {
        assert_eq!(format_secs(5400), "1h30m");
        assert_eq!(format_secs(45), "45s");
        assert_eq!(format_secs(0), "0s");
        assert_eq!(format_secs(3661), "1h1m1s");
    }

    #[test]
    fn persisted_defaults_win_over_the_config() {
        let config = GatewayConfig::default();
        let d = effective(&config, None, None);
        assert_eq!(d.limits_source, Source::Config);
        assert_eq!(d.limits.requests_per_minute, 1000);
        assert_eq!(d.budget.micro_usd, 100_000_000);
        let row = RateLimitDefaultsRow {
            id: true,
            requests_per_minute: 5,
            tokens_per_minute: 6,
            parallel_requests_key: 7,
            parallel_requests_tenant: 8,
            updated_at: Utc::now(),
        };
        let budget = BudgetDefaultRow {
            id: true,
            budget_micro_usd: 0,
            warning_threshold: 0.5,
            refresh_schedule: "rolling_7d".into(),
            updated_at: Utc::now(),
        };
        let d = effective(&config, Some(&row), Some(&budget));
        assert_eq!(d.limits_source, Source::Database);
        assert_eq!(d.limits.parallel_requests_tenant, 8);
        assert_eq!(d.budget.micro_usd, 0);
        assert_eq!(d.budget.window, BudgetWindow::RollingDays(7));
    }

    #[test]
    fn tenant_ceilings_inherit_parallel_and_budget_only() {
        let d = effective(&GatewayConfig::default(), None, None);
        let c = TenantCeilings::of(&d, None, None);
        assert_eq!(c.requests_per_minute, None);
        assert_eq!(c.parallel_requests, Some(100));
        assert_eq!(c.budget_micro_usd, Some(100_000_000));
        let limits = TenantRateLimits {
            tenant_id: Uuid::nil(),
            requests_per_minute: Some(50),
            tokens_per_minute: Some(0),
            parallel_requests: Some(0),
            updated_at: Utc::now(),
        };
        let c = TenantCeilings::of(&d, Some(&limits), None);
        assert_eq!(c.requests_per_minute, Some(50));
        assert_eq!(c.tokens_per_minute, None);
        assert_eq!(c.parallel_requests, None, "0 = unlimited");
    }
}
