//! Budget alerts: the evaluator task and delivery.
//!
//! The evaluator runs in the control plane next to usage ingestion. It evaluates a tenant
//! when ingestion committed a batch with requests of that tenant (the ingest loop hands the
//! tenant ids over a bounded queue and never waits: when the queue is full the ids are
//! dropped, counted, and left to the sweep), and every `budgets.alert.sweep_interval` it
//! sweeps every live tenant with requests in the current window (this also retries failed
//! deliveries and catches up after a restart).
//!
//! Evaluating a tenant: its effective budget ([`budgets::effective_tenant_budget`]), the
//! spend of the window containing now (`SUM(cost_micro_usd)` of its requests since the
//! window's start), its delivery history (`budget_alert_events`), then the pure decision
//! ([`policy::decide`]) and the deliveries it asks for. Every attempt is recorded, whatever
//! its outcome. A session-level advisory lock per tenant keeps two control-plane replicas
//! from evaluating the same tenant at once (the one that does not get it skips the tenant).
//!
//! Recipients: a tenant's own `alert_emails` / `alert_webhooks` when it has some, else
//! `budgets.alert.emails` / `.webhooks`. Cooldown: the tenant's `alert_cooldown_secs`, else
//! `budgets.alert.cooldown`. Webhooks are retried (`budgets.alert.webhook.max_retries`, with
//! exponential backoff and jitter) within a delivery; an email is one attempt per delivery,
//! and a failed target of either kind is tried again by the next sweep.

pub mod clock;
mod email;
pub mod policy;
pub mod target;
pub mod webhook;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use omg_shared::budget::{parse_timezone, BudgetLevel, WindowSpan};
use omg_shared::config::{AlertConfig, GatewayConfig};
use omg_shared::money::format_usd;
use omg_shared::ssrf::TargetPolicy;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use self::clock::{Clock, SystemClock};
use self::policy::{Channel, Decision, History, Target, TargetHistory, Timing};
use crate::db::models::NewAlertEvent;
use crate::db::{self, DbError, Pool};
use crate::metrics::AlertMetrics;
use crate::service::governance::budgets::{self, EffectiveTenantBudget};

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Accepted (SMTP `250` after `DATA`, HTTP 2xx).
    Sent,
    /// Did not get through; `retryable` when trying again soon may help.
    Failed { error: String, retryable: bool },
    /// Not attempted: the target is not allowed (SSRF policy), not usable (not an address,
    /// not an http(s) URL) or the channel is not configured.
    Refused(String),
}

impl Attempt {
    fn failed(error: String, retryable: bool) -> Self {
        Self::Failed { error, retryable }
    }

    /// `sent`, `failed` or `refused`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed { .. } => "failed",
            Self::Refused(_) => "refused",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Self::Sent => None,
            Self::Failed { error, .. } | Self::Refused(error) => Some(error),
        }
    }
}

/// The evaluator's settings (from `budgets.alert.*`, with timings tests can shorten).
#[derive(Debug, Clone)]
pub struct AlertOptions {
    /// Period of the sweep.
    pub sweep_interval: Duration,
    /// Delay before the first webhook retry; doubled per retry, ±20 % jitter.
    pub retry_base: Duration,
    /// Longest delay between two webhook attempts.
    pub retry_max: Duration,
    /// Tenant notifications the queue from ingestion holds.
    pub queue_capacity: usize,
}

impl AlertOptions {
    /// The options of `budgets.alert.*`.
    pub fn from_config(alert: &AlertConfig) -> Self {
        Self {
            sweep_interval: alert.sweep_interval.max(Duration::from_secs(1)),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            queue_capacity: 1024,
        }
    }
}

/// The ingest side of the queue: hands tenant ids to the evaluator without ever waiting.
#[derive(Clone)]
pub struct AlertNotifier {
    tx: mpsc::Sender<Uuid>,
    dropped: prometheus::IntCounter,
}

impl AlertNotifier {
    /// Queues `tenants` for evaluation; those that do not fit are dropped and counted (the
    /// sweep evaluates them later).
    pub fn notify(&self, tenants: impl IntoIterator<Item = Uuid>) {
        let mut dropped = 0u64;
        for tenant in tenants {
            match self.tx.try_send(tenant) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                // The evaluator stopped (shutdown): nothing to do.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if dropped > 0 {
            self.dropped.inc_by(dropped);
            tracing::debug!(
                dropped,
                "alert queue full: tenants left to the next alert sweep"
            );
        }
    }
}

/// A bounded queue between ingestion and the evaluator.
pub fn queue(capacity: usize, metrics: &AlertMetrics) -> (AlertNotifier, mpsc::Receiver<Uuid>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        AlertNotifier {
            tx,
            dropped: metrics.dropped.clone(),
        },
        rx,
    )
}

/// Starts the evaluator of `config`: `None` when `budgets.alert.enabled` is false.
/// It runs until `shutdown` becomes `true` (or its sender is dropped).
pub fn spawn(
    pool: Pool,
    config: Arc<GatewayConfig>,
    metrics: AlertMetrics,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<(AlertNotifier, JoinHandle<()>)>, String> {
    if !config.budgets.alert.enabled {
        tracing::info!("budget alerts are disabled (budgets.alert.enabled: false)");
        return Ok(None);
    }
    let options = AlertOptions::from_config(&config.budgets.alert);
    let (notifier, rx) = queue(options.queue_capacity, &metrics);
    let evaluator = Evaluator::new(
        pool,
        config,
        options,
        Arc::new(SystemClock),
        metrics,
        shutdown,
    )?;
    Ok(Some((
        notifier,
        crate::tasks::spawn_named("budget alerts", evaluator.run(rx)),
    )))
}

/// What one tenant evaluation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// Alerts are disabled.
    Disabled,
    /// The tenant does not exist (any more) or has no budget.
    NoBudget,
    /// Another replica is evaluating this tenant.
    Busy,
    /// Evaluated: the level, the spend and the outcome of each delivery (the last attempt's).
    Done {
        level: BudgetLevel,
        spent: i64,
        window_label: String,
        deliveries: Vec<(Target, &'static str)>,
    },
}

/// Evaluates budgets and delivers alerts. Build with [`Evaluator::new`]; [`Evaluator::run`]
/// is the task; [`Evaluator::evaluate_tenant`] and [`Evaluator::sweep`] are its steps.
pub struct Evaluator {
    pool: Pool,
    config: Arc<GatewayConfig>,
    tz: Tz,
    policy: TargetPolicy,
    options: AlertOptions,
    clock: Arc<dyn Clock>,
    metrics: AlertMetrics,
    shutdown: watch::Receiver<bool>,
}

impl Evaluator {
    /// An evaluator of `config` (validated: the timezone and the allow list parse).
    pub fn new(
        pool: Pool,
        config: Arc<GatewayConfig>,
        options: AlertOptions,
        clock: Arc<dyn Clock>,
        metrics: AlertMetrics,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, String> {
        let tz = parse_timezone(&config.reporting.timezone)
            .map_err(|e| format!("reporting.timezone: {e}"))?;
        let policy = TargetPolicy::parse(&config.budgets.alert.allow_private_targets)
            .map_err(|(index, e)| format!("budgets.alert.allow_private_targets[{index}]: {e}"))?;
        let alert = &config.budgets.alert;
        if alert.enabled && !alert.webhooks.is_empty() && alert.webhook.secret.is_none() {
            return Err(
                "budgets.alert.webhook.secret is required when webhooks are configured".to_owned(),
            );
        }
        Ok(Self {
            pool,
            config,
            tz,
            policy,
            options,
            clock,
            metrics,
            shutdown,
        })
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    /// Evaluates queued tenants as they come and sweeps periodically (the first sweep at
    /// start), until shutdown.
    pub async fn run(self, rx: mpsc::Receiver<Uuid>) {
        tracing::info!(
            sweep_interval_ms = self.options.sweep_interval.as_millis() as u64,
            timezone = %self.tz,
            "budget alert evaluator started"
        );
        let mut rx = Some(rx);
        let mut shutdown = self.shutdown.clone();
        let mut ticker = tokio::time::interval(self.options.sweep_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.stopping() {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                received = next(&mut rx) => match received {
                    Some(first) => {
                        let mut tenants = BTreeSet::from([first]);
                        if let Some(rx) = rx.as_mut() {
                            while let Ok(more) = rx.try_recv() {
                                tenants.insert(more);
                            }
                        }
                        for tenant in tenants {
                            if self.stopping() {
                                break;
                            }
                            self.evaluate_logged(tenant, "ingest").await;
                        }
                    }
                    // Ingestion stopped: sweeps only.
                    None => rx = None,
                },
                _ = ticker.tick() => {
                    if let Err(e) = self.sweep().await {
                        self.metrics.errors.inc();
                        tracing::warn!(error = %e, "budget alert sweep failed; retried at the next one");
                    }
                }
            }
        }
        tracing::info!("budget alert evaluator stopped");
    }

    async fn evaluate_logged(&self, tenant: Uuid, trigger: &'static str) {
        self.metrics.evaluations.with_label_values(&[trigger]).inc();
        if let Err(e) = self.evaluate_tenant(tenant).await {
            self.metrics.errors.inc();
            tracing::warn!(
                tenant_id = %tenant,
                trigger,
                error = %e,
                "budget alert evaluation failed; retried at the next sweep"
            );
        }
    }

    /// Evaluates every live tenant with requests in the widest window in use; returns how
    /// many were evaluated.
    pub async fn sweep(&self) -> Result<usize, DbError> {
        if !self.config.budgets.alert.enabled {
            return Ok(0);
        }
        let started = Instant::now();
        let now = self.clock.now();
        let tenants = {
            let mut conn = self.pool.get().await?;
            let mut windows = BTreeSet::from([budgets::default_window(&self.config).as_string()]);
            for row in db::governance::all_budgets(&mut conn).await? {
                windows.insert(row.refresh_schedule);
            }
            let spans: Vec<WindowSpan> = windows
                .iter()
                .filter_map(|w| omg_shared::snapshot::BudgetWindow::parse(w).ok())
                .map(|w| WindowSpan::current(w, self.tz, now))
                .collect();
            let from = spans.iter().map(|s| s.starts_at).min().unwrap_or(now);
            let until = spans.iter().map(|s| s.resets_at).max().unwrap_or(now);
            db::alerts::tenants_with_requests(&mut conn, from, until).await?
        };
        let mut evaluated = 0;
        for tenant in tenants {
            if self.stopping() {
                break;
            }
            self.evaluate_logged(tenant, "sweep").await;
            evaluated += 1;
        }
        self.metrics
            .sweep_duration
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(tenants = evaluated, "budget alert sweep done");
        Ok(evaluated)
    }

    /// Evaluates one tenant and delivers what is due, under the tenant's advisory lock.
    pub async fn evaluate_tenant(&self, tenant_id: Uuid) -> Result<Evaluation, DbError> {
        if !self.config.budgets.alert.enabled {
            return Ok(Evaluation::Disabled);
        }
        let mut lock = self.pool.get().await?;
        if !db::alerts::try_lock_tenant(&mut lock, tenant_id).await? {
            tracing::debug!(tenant_id = %tenant_id, "tenant's budget is being evaluated by another replica");
            return Ok(Evaluation::Busy);
        }
        let result = self.evaluate_locked(tenant_id).await;
        if let Err(e) = db::alerts::unlock_tenant(&mut lock, tenant_id).await {
            tracing::error!(tenant_id = %tenant_id, error = %e, "releasing the alert lock failed");
        }
        result
    }

    async fn evaluate_locked(&self, tenant_id: Uuid) -> Result<Evaluation, DbError> {
        let now = self.clock.now();
        let mut conn = self.pool.get().await?;
        let Some(budget) =
            budgets::effective_tenant_budget(&mut conn, &self.config, tenant_id).await?
        else {
            return Ok(Evaluation::NoBudget);
        };
        if budget.policy.limit_micro_usd <= 0 {
            return Ok(Evaluation::NoBudget);
        }
        let alert = &self.config.budgets.alert;
        let timing = Timing {
            cooldown: budget.alert_cooldown.unwrap_or(alert.cooldown),
            retry_failed_after: self.options.sweep_interval,
        };
        let window = WindowSpan::current(budget.policy.window, self.tz, now);
        let spent = db::governance::tenant_spend(
            &mut conn,
            &[(tenant_id, window.starts_at, window.resets_at)],
        )
        .await?
        .get(&tenant_id)
        .copied()
        .unwrap_or(0);
        let since = policy::history_since(&window, timing, now);
        let history = target_history(&mut conn, tenant_id, since).await?;
        drop(conn);
        let targets = targets_of(&budget, alert);
        let decision = policy::decide(
            &budget.policy,
            self.tz,
            spent,
            &targets,
            &history,
            timing,
            now,
        );
        let mut deliveries = Vec::new();
        if !decision.due.is_empty() {
            log_due(&budget, &decision, spent);
        }
        for target in &decision.due {
            if self.stopping() {
                break;
            }
            let outcome = self.deliver(&budget, &decision, spent, target, now).await?;
            deliveries.push((target.clone(), outcome));
        }
        Ok(Evaluation::Done {
            level: decision.level,
            spent,
            window_label: decision.window.label,
            deliveries,
        })
    }

    /// One delivery: its attempts, each recorded. Returns the last attempt's outcome.
    async fn deliver(
        &self,
        budget: &EffectiveTenantBudget,
        decision: &Decision,
        spent: i64,
        target: &Target,
        decided_at: DateTime<Utc>,
    ) -> Result<&'static str, DbError> {
        let alert = &self.config.budgets.alert;
        let delivery = Delivery {
            id: Uuid::now_v7(),
            budget,
            decision,
            spent,
            target,
        };
        match target.channel {
            Channel::Email => {
                let (subject, body) = email_text(budget, decision, spent, self.tz);
                let result =
                    email::send(&alert.smtp, &self.policy, &target.address, &subject, body).await;
                self.record(&delivery, 1, &result).await?;
                Ok(result.outcome())
            }
            Channel::Webhook => self.deliver_webhook(&delivery, decided_at).await,
        }
    }

    /// A webhook delivery: signed, posted, retried with backoff while the failure is
    /// retryable (`budgets.alert.webhook.max_retries`), every attempt recorded.
    async fn deliver_webhook(
        &self,
        delivery: &Delivery<'_>,
        decided_at: DateTime<Utc>,
    ) -> Result<&'static str, DbError> {
        let webhook = &self.config.budgets.alert.webhook;
        let Some(secret) = webhook.secret.as_ref() else {
            let result = Attempt::Refused(
                "`budgets.alert.webhook.secret` is not set: webhooks cannot be signed".to_owned(),
            );
            self.record(delivery, 1, &result).await?;
            return Ok(result.outcome());
        };
        let body = serde_json::to_vec(&delivery.payload(decided_at)).unwrap_or_default();
        let attempts = webhook.max_retries.saturating_add(1);
        let mut last = "failed";
        for attempt in 1..=attempts {
            let result = webhook::post(
                &self.policy,
                &delivery.target.address,
                secret.expose().as_bytes(),
                delivery.id,
                &body,
                self.clock.now().timestamp(),
                webhook.timeout,
            )
            .await;
            let attempt_no = i32::try_from(attempt).unwrap_or(i32::MAX);
            self.record(delivery, attempt_no, &result).await?;
            last = result.outcome();
            let retryable = matches!(
                result,
                Attempt::Failed {
                    retryable: true,
                    ..
                }
            );
            let again = retryable && attempt < attempts;
            if !again || !self.backoff(attempt).await {
                break;
            }
        }
        Ok(last)
    }

    /// Records one attempt of `delivery`.
    async fn record(
        &self,
        delivery: &Delivery<'_>,
        attempt: i32,
        result: &Attempt,
    ) -> Result<(), DbError> {
        let event = delivery.event(attempt, result, self.clock.now());
        self.save(&event, result, delivery.budget).await
    }

    /// Waits before retry `attempt + 1`; `false` when shutdown interrupted the wait.
    async fn backoff(&self, attempt: u32) -> bool {
        let exp = self
            .options
            .retry_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let delay = exp
            .min(self.options.retry_max)
            .mul_f64(rand::thread_rng().gen_range(0.8..1.2));
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => !self.stopping(),
            _ = shutdown.changed() => false,
        }
    }

    /// Records an attempt, counts and logs it.
    async fn save(
        &self,
        event: &NewAlertEvent,
        result: &Attempt,
        budget: &EffectiveTenantBudget,
    ) -> Result<(), DbError> {
        self.metrics
            .sent
            .with_label_values(&[&event.channel, &event.level, result.outcome()])
            .inc();
        match result {
            Attempt::Sent => tracing::info!(
                tenant_id = %event.tenant_id,
                tenant = %budget.tenant_name,
                level = %event.level,
                channel = %event.channel,
                target = %event.target,
                attempt = event.attempt,
                "budget alert sent"
            ),
            Attempt::Failed { error, retryable } => tracing::warn!(
                tenant_id = %event.tenant_id,
                level = %event.level,
                channel = %event.channel,
                target = %event.target,
                attempt = event.attempt,
                retryable,
                error = %error,
                "budget alert attempt failed"
            ),
            Attempt::Refused(reason) => tracing::warn!(
                tenant_id = %event.tenant_id,
                level = %event.level,
                channel = %event.channel,
                target = %event.target,
                reason = %reason,
                "budget alert refused (the reason names the config key to change)"
            ),
        }
        let mut conn = self.pool.get().await?;
        db::alerts::insert_event(&mut conn, event).await
    }
}

/// One alert delivery to one target: what every attempt's record carries.
struct Delivery<'a> {
    id: Uuid,
    budget: &'a EffectiveTenantBudget,
    decision: &'a Decision,
    spent: i64,
    target: &'a Target,
}

impl Delivery<'_> {
    /// The `budget_alert_events` row of one attempt.
    fn event(&self, attempt: i32, result: &Attempt, at: DateTime<Utc>) -> NewAlertEvent {
        NewAlertEvent {
            delivery_id: self.id,
            tenant_id: self.budget.tenant_id,
            key_id: None,
            level: self.decision.level.as_str().to_owned(),
            window_label: self.decision.window.label.clone(),
            channel: self.target.channel.as_str().to_owned(),
            target: self.target.recorded.clone(),
            attempt,
            outcome: result.outcome().to_owned(),
            error: result.error().map(str::to_owned),
            spend_micro_usd: self.spent,
            limit_micro_usd: self.budget.policy.limit_micro_usd,
            created_at: at,
        }
    }

    /// The webhook's JSON payload.
    fn payload(&self, decided_at: DateTime<Utc>) -> webhook::Payload {
        let (budget, decision, spent) = (self.budget, self.decision, self.spent);
        webhook::Payload {
            event: "budget.alert",
            tenant_id: budget.tenant_id,
            tenant_name: budget.tenant_name.clone(),
            level: decision.level.as_str(),
            spend_usd: spent as f64 / 1e6,
            limit_usd: budget.policy.limit_micro_usd as f64 / 1e6,
            spend_micro_usd: spent,
            limit_micro_usd: budget.policy.limit_micro_usd,
            window: budget.policy.window.as_string(),
            window_label: decision.window.label.clone(),
            resets_at: webhook::rfc3339(decision.window.resets_at),
            sent_at: webhook::rfc3339(decided_at),
        }
    }
}

/// What was sent, failed or refused per (level, channel, target) since `since`.
async fn target_history(
    conn: &mut db::Conn<'_>,
    tenant_id: Uuid,
    since: DateTime<Utc>,
) -> Result<History, DbError> {
    let mut history = History::new();
    for row in db::alerts::target_history(conn, tenant_id, since).await? {
        let level = match row.level.as_str() {
            "warning" => BudgetLevel::Warning,
            "exceeded" => BudgetLevel::Exceeded,
            _ => continue,
        };
        let Some(channel) = Channel::parse(&row.channel) else {
            continue;
        };
        history.insert(
            (level, channel, row.target),
            TargetHistory {
                last_sent: row.last_sent_at.zip(row.last_sent_label),
                last_failed_at: row.last_failed_at,
                last_refused_at: row.last_refused_at,
            },
        );
    }
    Ok(history)
}

/// The log line of an evaluation with deliveries due.
fn log_due(budget: &EffectiveTenantBudget, decision: &Decision, spent: i64) {
    tracing::info!(
        tenant_id = %budget.tenant_id,
        tenant = %budget.tenant_name,
        level = decision.level.as_str(),
        spend_usd = %format_usd(spent),
        limit_usd = %format_usd(budget.policy.limit_micro_usd),
        window = %decision.window.label,
        targets = decision.due.len(),
        "budget alert due"
    );
}

async fn next(rx: &mut Option<mpsc::Receiver<Uuid>>) -> Option<Uuid> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The tenant's own recipients per channel when it has some, else the defaults.
fn targets_of(budget: &EffectiveTenantBudget, alert: &AlertConfig) -> Vec<Target> {
    let emails = if budget.alert_emails.is_empty() {
        &alert.emails
    } else {
        &budget.alert_emails
    };
    let webhooks = if budget.alert_webhooks.is_empty() {
        &alert.webhooks
    } else {
        &budget.alert_webhooks
    };
    emails
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| Target::email(e))
        .chain(
            webhooks
                .iter()
                .filter(|w| !w.trim().is_empty())
                .map(|w| Target::webhook(w)),
        )
        .collect()
}

/// The subject and plain-text body of an alert email.
fn email_text(
    budget: &EffectiveTenantBudget,
    decision: &Decision,
    spent: i64,
    tz: Tz,
) -> (String, String) {
    let limit = budget.policy.limit_micro_usd;
    let usd = |micros: i64| {
        let text = format_usd(micros);
        // Cents are enough unless finer digits are set.
        match text.strip_suffix("0000") {
            Some(cents) => cents.to_owned(),
            None => text,
        }
    };
    let headline = match decision.level {
        BudgetLevel::Exceeded => "exceeded its budget",
        _ => "reached the warning threshold of its budget",
    };
    let subject = format!(
        "[Open Model Gateway] Budget {}: tenant {} at ${} of ${}",
        decision.level.as_str(),
        budget.tenant_name,
        usd(spent),
        usd(limit)
    );
    let percent = if limit > 0 {
        spent as f64 * 100.0 / limit as f64
    } else {
        0.0
    };
    let local = |at: DateTime<Utc>| {
        at.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    };
    let body = format!(
        "Tenant {name} {headline}.\n\
         \n\
         Tenant:     {name}\n\
         Tenant id:  {id}\n\
         Level:      {level}\n\
         Spend:      ${spend} ({percent:.1}% of the limit)\n\
         Limit:      ${limit_usd} (warning at {threshold:.0}%)\n\
         Window:     {window} ({label}), since {start}\n\
         Resets at:  {reset} ({reset_utc})\n\
         \n\
         This alert is sent once per window and level.\n",
        name = budget.tenant_name,
        id = budget.tenant_id,
        level = decision.level.as_str(),
        spend = usd(spent),
        limit_usd = usd(limit),
        threshold = budget.policy.warning_threshold * 100.0,
        window = budget.policy.window.as_string(),
        label = decision.window.label,
        start = local(decision.window.starts_at),
        reset = local(decision.window.resets_at),
        reset_utc = webhook::rfc3339(decision.window.resets_at),
    );
    (subject, body)
}
