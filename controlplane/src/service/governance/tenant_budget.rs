//! Tenant budget overrides, the budget in force and its spend in the current window.

use super::*;

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

/// Webhook URLs as views and audit entries show them: scheme and host (see
/// [`super::redact::redact_url`]).
fn masked_webhooks(urls: &[String]) -> Vec<String> {
    urls.iter().map(|u| super::redact::redact_url(u)).collect()
}

fn override_view(b: &TenantBudget, tenant_name: &str) -> BudgetOverrideView {
    BudgetOverrideView {
        tenant_id: b.tenant_id,
        tenant_name: tenant_name.to_owned(),
        budget_usd: micros_to_usd(b.budget_micro_usd),
        warning_threshold: b.warning_threshold,
        refresh_schedule: b.refresh_schedule.clone(),
        alert_emails: b.alert_emails.clone(),
        alert_webhooks: masked_webhooks(&b.alert_webhooks),
        alert_cooldown: b.alert_cooldown_secs.map(format_secs),
        updated_at: b.updated_at,
    }
}

/// Every tenant budget override, by tenant name.
pub async fn list_overrides(state: &AppState) -> Result<Vec<BudgetOverrideView>> {
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
        alert_webhooks: stored
            .map(|b| masked_webhooks(&b.alert_webhooks))
            .unwrap_or_default(),
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
pub async fn get_tenant_budget(state: &AppState, tenant: &Tenant) -> Result<TenantBudgetView> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    tenant_budget_now(state, &mut conn, tenant)
        .await
        .map_err(|e| Error::from_db(e, "tenant"))
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
) -> Result<TenantBudgetView> {
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
    let (emails, webhooks) = recipients(&input)?;
    let cooldown = cooldown_secs(input.alert_cooldown.as_deref())?;
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
    mutate(state, &mut conn, caller.into(), async |tx| {
        let before = db::governance::budget(tx.conn, tenant.id).await?;
        db::governance::upsert_budget(tx.conn, &row).await?;
        tx.record(Entry {
            action: Action::TenantBudget,
            target_id: tenant.id.to_string(),
            tenant_id: Some(tenant.id),
            before: before
                .map(|b| serde_json::to_value(override_view(&b, &tenant.name)).unwrap_or_default()),
            after: serde_json::to_value(override_view(&row, &tenant.name)).ok(),
        })
        .await
    })
    .await
    .map_err(|e| Error::from_db(e, "tenant"))?;
    tenant_budget_now(state, &mut conn, tenant)
        .await
        .map_err(|e| Error::from_db(e, "tenant"))
}

/// The alert recipients of a budget input, validated and deduplicated in their order.
fn recipients(input: &TenantBudgetInput) -> Result<(Vec<String>, Vec<String>)> {
    if input.alert_emails.len() > MAX_RECIPIENTS {
        return Err(Error::invalid(
            "alert_emails",
            format!("at most {MAX_RECIPIENTS} addresses"),
        ));
    }
    if input.alert_webhooks.len() > MAX_RECIPIENTS {
        return Err(Error::invalid(
            "alert_webhooks",
            format!("at most {MAX_RECIPIENTS} URLs"),
        ));
    }
    let mut emails = Vec::with_capacity(input.alert_emails.len());
    for (i, email) in input.alert_emails.iter().enumerate() {
        let email = validate::email(email).map_err(|_| {
            Error::invalid(format!("alert_emails[{i}]"), "must be an email address")
        })?;
        if !emails.contains(&email) {
            emails.push(email);
        }
    }
    let mut webhooks = Vec::with_capacity(input.alert_webhooks.len());
    for (i, url) in input.alert_webhooks.iter().enumerate() {
        if super::redact::is_redacted(url) {
            return Err(Error::invalid(
                format!("alert_webhooks[{i}]"),
                "is a masked URL as the API shows it; send the full URL",
            ));
        }
        let url = validate::webhook_url(&format!("alert_webhooks[{i}]"), url)?;
        if !webhooks.contains(&url) {
            webhooks.push(url);
        }
    }
    Ok((emails, webhooks))
}

/// `alert_cooldown` as whole seconds.
fn cooldown_secs(text: Option<&str>) -> Result<Option<i64>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let cooldown = omg_shared::duration::parse(text)
        .map_err(|message| Error::invalid("alert_cooldown", message))?;
    i64::try_from(cooldown.as_secs())
        .map(Some)
        .map_err(|_| Error::invalid("alert_cooldown", "too large"))
}

/// Removes a tenant's budget override (the default applies again). Idempotent.
pub async fn delete_tenant_budget(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> Result<()> {
    let mut conn = state.pool.get().await.map_err(DbError::from)?;
    let defaults = load_defaults(&state.config, &mut conn).await?;
    let keys = db::keys::list(&mut conn, tenant.id).await?;
    keys_within(
        &keys,
        &TenantCeilings::budget_only(Some(defaults.budget.micro_usd).filter(|m| *m > 0)),
    )?;
    mutate(state, &mut conn, caller.into(), async |tx| {
        if let Some(before) = db::governance::delete_budget(tx.conn, tenant.id).await? {
            tx.record(Entry {
                action: Action::TenantBudgetDelete,
                target_id: tenant.id.to_string(),
                tenant_id: Some(tenant.id),
                before: serde_json::to_value(override_view(&before, &tenant.name)).ok(),
                after: None,
            })
            .await?;
        }
        Ok::<_, DbError>(())
    })
    .await
    .map_err(|e| Error::from_db(e, "tenant"))
}
