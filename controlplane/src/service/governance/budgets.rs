//! The effective budget of a tenant: its `tenant_budgets` row, else the defaults.
//!
//! This is the one place that decides where a tenant's budget comes from; the alert
//! evaluator (and anything else that needs "the tenant's budget") calls it. The default is
//! the persisted one (`PUT /admin/budgets/default`) when set, else `budgets.*` from config.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use omg_shared::config::GatewayConfig;
use omg_shared::snapshot::{BudgetPolicy, BudgetWindow};
use uuid::Uuid;

use crate::db::{self, DbError};

/// Where a budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// The tenant's own `tenant_budgets` row.
    Tenant,
    /// The default (`budgets.*`).
    Default,
}

/// A tenant's budget as enforced and alerted on.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveTenantBudget {
    pub tenant_id: Uuid,
    pub tenant_name: String,
    /// Limit (micro-USD, `0` = no budget), warning threshold and window.
    pub policy: BudgetPolicy,
    pub source: BudgetSource,
    /// The tenant's own alert recipients (empty: the defaults apply).
    pub alert_emails: Vec<String>,
    /// The tenant's own alert webhooks (empty: the defaults apply).
    pub alert_webhooks: Vec<String>,
    /// The tenant's own alert cooldown.
    pub alert_cooldown: Option<Duration>,
}

/// The default window (`budgets.refresh_schedule`, validated at start-up).
pub fn default_window(config: &GatewayConfig) -> BudgetWindow {
    BudgetWindow::parse(&config.budgets.refresh_schedule).unwrap_or(BudgetWindow::CalendarMonth)
}

/// The effective budget of a live tenant; `None` when the tenant does not exist or was
/// deleted.
pub async fn effective_tenant_budget(
    conn: &mut AsyncPgConnection,
    config: &GatewayConfig,
    tenant_id: Uuid,
) -> Result<Option<EffectiveTenantBudget>, DbError> {
    let tenant = match db::tenants::get(conn, tenant_id).await {
        Ok(tenant) => tenant,
        Err(DbError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    // The defaults in force: the persisted rows (admin API) over the config.
    let defaults = crate::service::governance::load_defaults(config, conn)
        .await?
        .budget;
    let window = defaults.window;
    let budget = match db::governance::budget(conn, tenant_id).await? {
        Some(row) => EffectiveTenantBudget {
            tenant_id,
            tenant_name: tenant.name,
            policy: BudgetPolicy {
                limit_micro_usd: row.budget_micro_usd.max(0),
                warning_threshold: row.warning_threshold,
                window: BudgetWindow::parse(&row.refresh_schedule).unwrap_or(window),
            },
            source: BudgetSource::Tenant,
            alert_emails: row.alert_emails,
            alert_webhooks: row.alert_webhooks,
            alert_cooldown: row
                .alert_cooldown_secs
                .map(|secs| Duration::from_secs(u64::try_from(secs).unwrap_or(0))),
        },
        None => EffectiveTenantBudget {
            tenant_id,
            tenant_name: tenant.name,
            policy: BudgetPolicy {
                limit_micro_usd: defaults.micro_usd.max(0),
                warning_threshold: defaults.warning_threshold,
                window,
            },
            source: BudgetSource::Default,
            alert_emails: Vec::new(),
            alert_webhooks: Vec::new(),
            alert_cooldown: None,
        },
    };
    Ok(Some(budget))
}
