//! Rate-limit and budget governance: the global defaults (persisted rows win over the YAML
//! config once set), tenant overrides, and a tenant's current spend against its budget.
//!
//! Money is integer micro-USD inside and USD numbers in the API. Windows are the shared
//! [`WindowSpan`]s in `reporting.timezone`, so the spend shown here is the spend the data
//! planes count.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use omg_shared::budget::{day_start, level, parse_timezone, WindowSpan};
use omg_shared::config::GatewayConfig;
use omg_shared::money::{usd_to_micros, MicroUsd};
use omg_shared::snapshot::BudgetWindow;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::error::{ApiError, ApiResult};
use crate::auth::Caller;
use crate::db::models::{
    ApiKey, BudgetDefaultRow, RateLimitDefaultsRow, Tenant, TenantBudget, TenantRateLimits,
};
use crate::db::{self, DbError};
use crate::service::audit::{self, Change};
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

fn non_negative(field: &str, value: i64) -> ApiResult<i64> {
    if value < 0 {
        return Err(ApiError::invalid(
            field,
            format!("must be a non-negative whole number (0 = unlimited), got {value}"),
        ));
    }
    Ok(value)
}

fn threshold(field: &str, value: f64) -> ApiResult<f64> {
    if !(value > 0.0 && value <= 1.0) {
        return Err(ApiError::invalid(
            field,
            format!("must be a fraction in (0, 1], got {value}"),
        ));
    }
    Ok(value)
}

fn window(field: &str, text: &str) -> ApiResult<BudgetWindow> {
    BudgetWindow::parse(text.trim()).map_err(|message| ApiError::invalid(field, message))
}

fn usd(field: &str, value: f64) -> ApiResult<MicroUsd> {
    usd_to_micros(value).map_err(|message| ApiError::invalid(field, message))
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
pub async fn get_rate_limit_defaults(state: &AppState) -> ApiResult<RateLimitDefaultsView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    Ok(RateLimitDefaultsView::from(&defaults))
}

/// Persists the global default rate limits (from now on they win over the config).
pub async fn set_rate_limit_defaults(
    state: &AppState,
    caller: &Caller,
    input: RateLimitDefaultsInput,
) -> ApiResult<RateLimitDefaultsView> {
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
    let after = conn
        .transaction(async |conn| {
            let before = load_defaults(config, conn).await?;
            db::governance::put_rate_limit_defaults(conn, &row).await?;
            let after = load_defaults(config, conn).await?;
            audit::record(
                conn,
                caller,
                Change {
                    action: "settings.rate_limits",
                    target_type: "settings",
                    target_id: "rate_limits".to_owned(),
                    tenant_id: None,
                    before: serde_json::to_value(RateLimitDefaultsView::from(&before)).ok(),
                    after: serde_json::to_value(RateLimitDefaultsView::from(&after)).ok(),
                },
            )
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
pub async fn get_budget_default(state: &AppState) -> ApiResult<BudgetDefaultView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    Ok(budget_default_view(&defaults, &state.config))
}

/// Persists the default budget (from now on it wins over the config).
pub async fn set_budget_default(
    state: &AppState,
    caller: &Caller,
    input: BudgetDefaultInput,
) -> ApiResult<BudgetDefaultView> {
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
    let after = conn
        .transaction(async |conn| {
            let before = load_defaults(config, conn).await?;
            let row = BudgetDefaultRow {
                id: true,
                budget_micro_usd: micro_usd,
                warning_threshold: warning.unwrap_or(before.budget.warning_threshold),
                refresh_schedule: schedule.unwrap_or(before.budget.window).as_string(),
                updated_at: Utc::now(),
            };
            db::governance::put_budget_default(conn, &row).await?;
            let after = load_defaults(config, conn).await?;
            audit::record(
                conn,
                caller,
                Change {
                    action: "budget_default.set",
                    target_type: "settings",
                    target_id: "budget_default".to_owned(),
                    tenant_id: None,
                    before: serde_json::to_value(budget_default_view(&before, config)).ok(),
                    after: serde_json::to_value(budget_default_view(&after, config)).ok(),
                },
            )
            .await?;
            Ok::<_, DbError>(after)
        })
        .await?;
    Ok(budget_default_view(&after, config))
}

// --- tenant budgets ----------------------------------------------------------------------------

/// A budget override as stored, in API units.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BudgetOverrideView {
    pub tenant_id: Uuid,
    pub tenant_name: String,
    /// USD per window; `0` = no budget for this tenant (the default does not apply).
    pub budget_usd: f64,
    pub warning_threshold: f64,
    pub refresh_schedule: String,
    pub alert_emails: Vec<String>,
    pub alert_webhooks: Vec<String>,
    /// Minimum time between two alerts of one level, e.g. `1h30m`; `null`: the default
    /// (`budgets.alert.cooldown`).
    pub alert_cooldown: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// `5400` → `1h30m`.
pub fn format_secs(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn override_view(b: &TenantBudget, tenant_name: &str) -> BudgetOverrideView {
    BudgetOverrideView {
        tenant_id: b.tenant_id,
        tenant_name: tenant_name.to_owned(),
        budget_usd: micros_to_usd(b.budget_micro_usd),
        warning_threshold: b.warning_threshold,
        refresh_schedule: b.refresh_schedule.clone(),
        alert_emails: b.alert_emails.clone(),
        alert_webhooks: b.alert_webhooks.clone(),
        alert_cooldown: b.alert_cooldown_secs.map(format_secs),
        updated_at: b.updated_at,
    }
}

/// Every tenant budget override, by tenant name.
pub async fn list_overrides(state: &AppState) -> ApiResult<Vec<BudgetOverrideView>> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    Ok(db::governance::budget_overrides(&mut conn)
        .await?
        .iter()
        .map(|(b, name)| override_view(b, name))
        .collect())
}

/// The current window of a budget.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    /// Stable name, e.g. `calendar_month:2026-11-01`.
    pub label: String,
    pub starts_at: DateTime<Utc>,
    /// When spend next drops (next window, or the oldest day leaving a rolling window).
    pub resets_at: DateTime<Utc>,
}

/// A tenant's budget in force (its override or the default), with the current spend.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantBudgetView {
    pub tenant_id: Uuid,
    /// `override` (the tenant's own) or `default`.
    pub source: String,
    /// USD per window; `null`: no budget applies.
    pub budget_usd: Option<f64>,
    pub warning_threshold: f64,
    pub refresh_schedule: String,
    /// IANA timezone of the window (`reporting.timezone`).
    pub timezone: String,
    pub alert_emails: Vec<String>,
    pub alert_webhooks: Vec<String>,
    /// e.g. `1h30m`; `null`: the default (`budgets.alert.cooldown`).
    pub alert_cooldown: Option<String>,
    /// Spend in the current window, from the stored usage (`requests`).
    pub spent_usd: f64,
    /// `budget_usd - spent_usd`, at least 0; `null` without a budget.
    pub remaining_usd: Option<f64>,
    /// `ok`, `warning` or `exceeded`; `null` without a budget.
    pub level: Option<String>,
    pub window: WindowView,
    /// When the override was last set (`null` for the default).
    pub updated_at: Option<DateTime<Utc>>,
}

/// A tenant's budget in force and where its window stands.
#[derive(Debug, Clone)]
pub struct BudgetState {
    /// The override, if the tenant has one.
    pub stored: Option<TenantBudget>,
    /// Limit in force; `None` (or 0) = no budget.
    pub limit: Option<MicroUsd>,
    pub warning_threshold: f64,
    pub window: BudgetWindow,
    pub span: WindowSpan,
    /// End of today (local): the window's spend is `[span.starts_at, until)`.
    pub until: DateTime<Utc>,
    pub spent: MicroUsd,
}

impl BudgetState {
    fn new(
        defaults: &Defaults,
        stored: Option<TenantBudget>,
        tz: Tz,
        now: DateTime<Utc>,
    ) -> BudgetState {
        let (limit, warning_threshold, window) = match &stored {
            Some(b) => (
                b.budget_micro_usd,
                b.warning_threshold,
                BudgetWindow::parse(&b.refresh_schedule).unwrap_or(defaults.budget.window),
            ),
            None => (
                defaults.budget.micro_usd,
                defaults.budget.warning_threshold,
                defaults.budget.window,
            ),
        };
        let span = WindowSpan::current(window, tz, now);
        let today = span
            .days
            .last()
            .copied()
            .unwrap_or_else(|| omg_shared::budget::local_day(tz, now));
        BudgetState {
            stored,
            limit: Some(limit).filter(|l| *l > 0),
            warning_threshold,
            window,
            until: day_start(tz, today + Duration::days(1)),
            span,
            spent: 0,
        }
    }

    /// The limit in force in USD (`None`: no budget).
    pub fn limit_usd(&self) -> Option<f64> {
        self.limit.map(micros_to_usd)
    }
}

/// The budget state of each tenant: its override or the default, and its spend in the
/// current window. Three small reads plus one aggregated spend query, whatever the count.
pub async fn budget_states(
    config: &GatewayConfig,
    conn: &mut AsyncPgConnection,
    tenant_ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, BudgetState>, DbError> {
    if tenant_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let defaults = load_defaults(config, conn).await?;
    let tz = timezone(config);
    let mut stored: HashMap<Uuid, TenantBudget> = db::governance::budgets_of(conn, tenant_ids)
        .await?
        .into_iter()
        .map(|b| (b.tenant_id, b))
        .collect();
    let mut states: HashMap<Uuid, BudgetState> = tenant_ids
        .iter()
        .map(|id| (*id, BudgetState::new(&defaults, stored.remove(id), tz, now)))
        .collect();
    let windows: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = states
        .iter()
        .map(|(id, s)| (*id, s.span.starts_at, s.until))
        .collect();
    for (id, spent) in db::governance::tenant_spend(conn, &windows).await? {
        if let Some(state) = states.get_mut(&id) {
            state.spent = spent;
        }
    }
    Ok(states)
}

fn tenant_budget_view(
    tenant: &Tenant,
    s: &BudgetState,
    config: &GatewayConfig,
) -> TenantBudgetView {
    let stored = s.stored.as_ref();
    TenantBudgetView {
        tenant_id: tenant.id,
        source: if stored.is_some() {
            "override"
        } else {
            "default"
        }
        .to_owned(),
        budget_usd: s.limit_usd(),
        warning_threshold: s.warning_threshold,
        refresh_schedule: s.window.as_string(),
        timezone: config.reporting.timezone.clone(),
        alert_emails: stored.map(|b| b.alert_emails.clone()).unwrap_or_default(),
        alert_webhooks: stored.map(|b| b.alert_webhooks.clone()).unwrap_or_default(),
        alert_cooldown: stored.and_then(|b| b.alert_cooldown_secs).map(format_secs),
        spent_usd: micros_to_usd(s.spent),
        remaining_usd: s.limit.map(|l| micros_to_usd((l - s.spent).max(0))),
        level: s
            .limit
            .map(|l| level(l, s.warning_threshold, s.spent).as_str().to_owned()),
        window: WindowView {
            label: s.span.label.clone(),
            starts_at: s.span.starts_at,
            resets_at: s.span.resets_at,
        },
        updated_at: stored.map(|b| b.updated_at),
    }
}

async fn tenant_budget_now(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
) -> Result<TenantBudgetView, DbError> {
    let states = budget_states(&state.config, conn, &[tenant.id], Utc::now()).await?;
    let s = states.get(&tenant.id).ok_or(DbError::NotFound)?;
    Ok(tenant_budget_view(tenant, s, &state.config))
}

/// A tenant's budget in force with its current spend and level.
pub async fn get_tenant_budget(state: &AppState, tenant: &Tenant) -> ApiResult<TenantBudgetView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    tenant_budget_now(state, &mut conn, tenant)
        .await
        .map_err(|e| ApiError::from_db(e, "tenant"))
}

/// A tenant's budget override. Absent `warning_threshold` and `refresh_schedule` take the
/// default's; absent alert fields are empty (cooldown: `budgets.alert.cooldown`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBudgetInput {
    /// USD per window; `0` = no budget for this tenant (the default no longer applies).
    pub budget_usd: f64,
    #[serde(default)]
    pub warning_threshold: Option<f64>,
    /// `calendar_month`, `weekly` or `rolling_<N>d`.
    #[serde(default)]
    pub refresh_schedule: Option<String>,
    #[serde(default)]
    pub alert_emails: Vec<String>,
    /// `https://` or `http://` URLs.
    #[serde(default)]
    pub alert_webhooks: Vec<String>,
    /// e.g. `30m`, `1h30m`.
    #[serde(default)]
    pub alert_cooldown: Option<String>,
}

const MAX_RECIPIENTS: usize = 50;

/// Sets (creates or replaces) a tenant's budget override.
pub async fn set_tenant_budget(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    input: TenantBudgetInput,
) -> ApiResult<TenantBudgetView> {
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
    if input.alert_emails.len() > MAX_RECIPIENTS {
        return Err(ApiError::invalid(
            "alert_emails",
            format!("at most {MAX_RECIPIENTS} addresses"),
        ));
    }
    if input.alert_webhooks.len() > MAX_RECIPIENTS {
        return Err(ApiError::invalid(
            "alert_webhooks",
            format!("at most {MAX_RECIPIENTS} URLs"),
        ));
    }
    let mut emails = Vec::with_capacity(input.alert_emails.len());
    for (i, email) in input.alert_emails.iter().enumerate() {
        let email = validate::email(email).map_err(|_| {
            ApiError::invalid(format!("alert_emails[{i}]"), "must be an email address")
        })?;
        if !emails.contains(&email) {
            emails.push(email);
        }
    }
    let mut webhooks = Vec::with_capacity(input.alert_webhooks.len());
    for (i, url) in input.alert_webhooks.iter().enumerate() {
        let url = validate::webhook_url(&format!("alert_webhooks[{i}]"), url)?;
        if !webhooks.contains(&url) {
            webhooks.push(url);
        }
    }
    let cooldown = match input.alert_cooldown.as_deref() {
        Some(text) => {
            let d = omg_shared::duration::parse(text)
                .map_err(|message| ApiError::invalid("alert_cooldown", message))?;
            Some(
                i64::try_from(d.as_secs())
                    .map_err(|_| ApiError::invalid("alert_cooldown", "too large"))?,
            )
        }
        None => None,
    };
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    let row = TenantBudget {
        tenant_id: tenant.id,
        budget_micro_usd: micro_usd,
        warning_threshold: warning.unwrap_or(defaults.budget.warning_threshold),
        refresh_schedule: schedule.unwrap_or(defaults.budget.window).as_string(),
        alert_emails: emails,
        alert_webhooks: webhooks,
        alert_cooldown_secs: cooldown,
        updated_at: Utc::now(),
    };
    let keys = db::keys::list(&mut conn, tenant.id).await?;
    keys_within(
        &keys,
        &TenantCeilings::budget_only(Some(micro_usd).filter(|m| *m > 0)),
    )?;
    conn.transaction(async |conn| {
        let before = db::tenants::budget(conn, tenant.id).await?;
        db::tenants::upsert_budget(conn, &row).await?;
        audit::record(
            conn,
            caller,
            Change {
                action: "tenant.budget",
                target_type: "tenant",
                target_id: tenant.id.to_string(),
                tenant_id: Some(tenant.id),
                before: before.map(|b| {
                    serde_json::to_value(override_view(&b, &tenant.name)).unwrap_or_default()
                }),
                after: serde_json::to_value(override_view(&row, &tenant.name)).ok(),
            },
        )
        .await
    })
    .await
    .map_err(|e| ApiError::from_db(e, "tenant"))?;
    tenant_budget_now(state, &mut conn, tenant)
        .await
        .map_err(|e| ApiError::from_db(e, "tenant"))
}

/// Removes a tenant's budget override (the default applies again). Idempotent.
pub async fn delete_tenant_budget(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> ApiResult<()> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    let keys = db::keys::list(&mut conn, tenant.id).await?;
    keys_within(
        &keys,
        &TenantCeilings::budget_only(Some(defaults.budget.micro_usd).filter(|m| *m > 0)),
    )?;
    conn.transaction(async |conn| {
        if let Some(before) = db::governance::delete_budget(conn, tenant.id).await? {
            audit::record(
                conn,
                caller,
                Change {
                    action: "tenant.budget_delete",
                    target_type: "tenant",
                    target_id: tenant.id.to_string(),
                    tenant_id: Some(tenant.id),
                    before: serde_json::to_value(override_view(&before, &tenant.name)).ok(),
                    after: None,
                },
            )
            .await?;
        }
        Ok::<_, DbError>(())
    })
    .await
    .map_err(|e| ApiError::from_db(e, "tenant"))
}

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

    fn budget_only(budget: Option<MicroUsd>) -> TenantCeilings {
        TenantCeilings {
            budget_micro_usd: budget,
            ..TenantCeilings::default()
        }
    }
}

/// Refuses when a live key of the tenant has a quota above `c` (naming the field and key).
fn keys_within(keys: &[ApiKey], c: &TenantCeilings) -> ApiResult<()> {
    for key in keys.iter().filter(|k| k.status != "revoked") {
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
                    return Err(ApiError::invalid(
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
                return Err(ApiError::invalid(
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
) -> ApiResult<TenantRateLimitsView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    let limits = db::tenants::rate_limits(&mut conn, tenant.id).await?;
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
) -> ApiResult<TenantRateLimitsView> {
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
    conn.transaction(async |conn| {
        let before = db::tenants::rate_limits(conn, tenant.id).await?;
        db::tenants::upsert_rate_limits(conn, &row).await?;
        audit::record(
            conn,
            caller,
            Change {
                action: "tenant.rate_limits",
                target_type: "tenant",
                target_id: tenant.id.to_string(),
                tenant_id: Some(tenant.id),
                before: before.and_then(|b| serde_json::to_value(&b).ok()),
                after: serde_json::to_value(&row).ok(),
            },
        )
        .await
    })
    .await
    .map_err(|e| ApiError::from_db(e, "tenant"))?;
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
) -> ApiResult<()> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    let keys = db::keys::list(&mut conn, tenant.id).await?;
    keys_within(
        &keys,
        &TenantCeilings::of(&defaults, None, None).rates_only(),
    )?;
    conn.transaction(async |conn| {
        if let Some(before) = db::governance::delete_rate_limits(conn, tenant.id).await? {
            audit::record(
                conn,
                caller,
                Change {
                    action: "tenant.rate_limits_delete",
                    target_type: "tenant",
                    target_id: tenant.id.to_string(),
                    tenant_id: Some(tenant.id),
                    before: serde_json::to_value(&before).ok(),
                    after: None,
                },
            )
            .await?;
        }
        Ok::<_, DbError>(())
    })
    .await
    .map_err(|e| ApiError::from_db(e, "tenant"))
}

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
