//! Rate limits and budgets on the request path.
//!
//! Before a model request, [`Governor::admit`] checks a [`Plan`] (RPM, TPM, parallel slots at
//! key, tenant and alias level; tenant and key budgets) and takes what the request needs in
//! one step: a token reservation from the estimate, a parallel lease, a budget reservation of
//! the worst-case cost. After it, [`Governor::settle`] corrects tokens to the actual count,
//! frees the lease and turns the reservation into the actual spend.
//!
//! Standalone, the counters are in process ([`local`]). In cluster mode they are shared in
//! Redis ([`redis`], one script round trip each way), leases and reservations expire unless
//! renewed ([`Governor::run_renewer`]), so a data plane that dies frees them within
//! `rate_limits.lease_ttl`. While Redis is unreachable each data plane enforces its share of
//! every limit locally (limit ÷ live data planes), or refuses (`on_redis_error: reject`).

mod counter;
mod local;
mod outcome;
pub mod plan;
mod redis;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use omg_shared::budget::local_day;
use omg_shared::config::RedisFailMode;
use omg_shared::counters::{BudgetScope, CounterKeys};
use omg_shared::money::MicroUsd;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::snapshot::Governance;
pub use outcome::{interpret, BudgetView, Failed, Observed, RateView, Raw, Refusal};
pub use plan::{Estimate, Plan, RateKind};

/// How an admission ended: what settling needs besides the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// The admission's lease.
    pub lease: Uuid,
    /// Second the tokens were reserved in.
    pub second: i64,
    /// Actual tokens.
    pub tokens: u64,
    /// Actual cost.
    pub cost: MicroUsd,
    /// Local day the spend counts on.
    pub today: chrono::NaiveDate,
}

/// Where an admission was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// In process (standalone, or the local share during a Redis outage).
    Local,
    /// In Redis.
    Redis,
}

/// A request's hold on limits and budgets; give it back with [`Governor::settle`]. Dropped
/// unsettled (a bug or a cancelled task), it is released with zero usage.
pub struct Admission {
    governor: Arc<Governor>,
    plan: Plan,
    lease: Uuid,
    store: Store,
    second: i64,
    settled: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        tracing::warn!(lease = %self.lease, "an admission was dropped unsettled; releasing it with zero usage");
        let governor = self.governor.clone();
        let plan = std::mem::take(&mut self.plan);
        let (lease, store, second) = (self.lease, self.store, self.second);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                crate::tasks::spawn_named_on(&runtime, "release unsettled admission", async move {
                    governor.finish(plan, lease, store, second, 0, 0).await;
                });
            }
            Err(_) => governor.forget_lease(lease),
        }
    }
}

/// Settings fixed at start-up (`rate_limits.*` read by the data plane itself).
#[derive(Debug, Clone)]
pub struct GovernorSettings {
    /// `rate_limits.lease_ttl`.
    pub lease_ttl: Duration,
    /// `rate_limits.redis_timeout`.
    pub redis_timeout: Duration,
    /// `cluster.counter_prefix`.
    pub counter_prefix: String,
}

/// Leases held by this data plane, renewed until settled.
#[derive(Default)]
struct Held {
    /// lease → (zset, keep-alive keys).
    leases: HashMap<Uuid, (Vec<String>, Vec<String>)>,
}

/// The request path's limiter.
pub struct Governor {
    keys: CounterKeys,
    settings: GovernorSettings,
    local: local::LocalLimiter,
    redis: Option<redis::RedisLimiter>,
    /// Unix seconds before which Redis is not tried again after a failure.
    redis_retry_at: AtomicI64,
    redis_down: AtomicBool,
    held: Mutex<Held>,
    /// Budget scope → spend plus reservations last seen in Redis.
    seen: Mutex<HashMap<BudgetScope, MicroUsd>>,
    /// Settlements and spend to replay once Redis answers again.
    pending: Mutex<Vec<Pending>>,
    instance: String,
}

enum Pending {
    Settle(redis::Settlement),
    Spend(String, MicroUsd),
}

/// Most settlements kept for replay during an outage (the rest are rebuilt from Postgres by
/// the control plane).
const PENDING_MAX: usize = 100_000;

impl Governor {
    /// Standalone: counters in process.
    pub fn local(settings: GovernorSettings) -> Arc<Self> {
        Arc::new(Self::new(settings, None))
    }

    /// Cluster: counters in the Redis at `url`.
    pub fn shared(settings: GovernorSettings, url: &str) -> Result<Arc<Self>, String> {
        let redis = redis::RedisLimiter::new(url, settings.redis_timeout)?;
        Ok(Arc::new(Self::new(settings, Some(redis))))
    }

    fn new(settings: GovernorSettings, redis: Option<redis::RedisLimiter>) -> Self {
        Self {
            keys: CounterKeys::new(&settings.counter_prefix),
            settings,
            local: local::LocalLimiter::default(),
            redis,
            redis_retry_at: AtomicI64::new(0),
            redis_down: AtomicBool::new(false),
            held: Mutex::new(Held::default()),
            seen: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            instance: format!(
                "{}:{}:{}",
                hostname(),
                std::process::id(),
                Uuid::now_v7().simple()
            ),
        }
    }

    /// This data plane's name in the live set.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Standalone: counts the spend of usage records written before this start (the JSONL
    /// usage file) into the budget windows, so a restart does not hand out a fresh budget.
    /// Returns the records counted.
    pub fn seed_spend(
        &self,
        timezone: chrono_tz::Tz,
        records: impl Iterator<Item = omg_shared::usage::UsageEvent>,
    ) -> usize {
        let oldest = Utc::now() - chrono::Duration::days(367);
        let mut counted = 0;
        for record in records {
            let (Some(tenant), true) = (record.tenant_id, record.cost_micro_usd > 0) else {
                continue;
            };
            let Ok(started) = DateTime::parse_from_rfc3339(&record.started_at) else {
                continue;
            };
            let started = started.with_timezone(&Utc);
            if started < oldest {
                continue;
            }
            let day = local_day(timezone, started);
            let mut scopes = vec![BudgetScope::Tenant(tenant)];
            if let Some(key) = record.key_id {
                scopes.push(BudgetScope::Key { tenant, key });
            }
            for scope in scopes {
                self.local
                    .add_spend(self.keys.spend_day(&scope, day), record.cost_micro_usd);
            }
            counted += 1;
        }
        counted
    }

    /// Whether Redis is currently being bypassed (cluster mode only).
    pub fn redis_down(&self) -> bool {
        self.redis_down.load(Ordering::Relaxed)
    }

    /// Checks `plan` and takes what it needs. Refusals and the state seen are returned
    /// either way (the state feeds the response headers).
    pub async fn admit(
        self: &Arc<Self>,
        governance: &Governance,
        plan: Plan,
        lease: Uuid,
    ) -> (Observed, Result<Admission, Refusal>) {
        let (raw, plan, store) = match self.run_check(governance, plan, lease, true).await {
            Ok(found) => found,
            Err(refusal) => {
                Metrics::global()
                    .limit_rejections
                    .with_label_values(&[refusal.label()])
                    .inc();
                return (Observed::default(), Err(refusal));
            }
        };
        let (observed, refusal) = interpret(&plan, &raw);
        if let Some(refusal) = refusal {
            Metrics::global()
                .limit_rejections
                .with_label_values(&[refusal.label()])
                .inc();
            return (observed, Err(refusal));
        }
        if store == Store::Redis && (!plan.parallel.is_empty() || !plan.budgets.is_empty()) {
            self.hold(&plan, lease);
        }
        let admission = Admission {
            governor: self.clone(),
            plan,
            lease,
            store,
            second: raw.now,
            settled: false,
        };
        (observed, Ok(admission))
    }

    /// The state for the headers of a request that takes nothing.
    pub async fn look(self: &Arc<Self>, governance: &Governance, plan: Plan) -> Observed {
        match self.run_check(governance, plan, Uuid::nil(), false).await {
            Ok((raw, plan, _)) => interpret(&plan, &raw).0,
            Err(_) => Observed::default(),
        }
    }

    /// Runs the check in Redis, or locally (standalone, or at the local share while Redis
    /// is unreachable). Returns the plan actually checked.
    async fn run_check(
        &self,
        governance: &Governance,
        plan: Plan,
        lease: Uuid,
        admit: bool,
    ) -> Result<(Raw, Plan, Store), Refusal> {
        let now = Utc::now().timestamp();
        let Some(redis) = &self.redis else {
            let raw = self.local.check(&self.keys, &plan, lease, admit, now);
            return Ok((raw, plan, Store::Local));
        };
        if plan.is_empty() {
            return Ok((Raw::default(), plan, Store::Local));
        }
        if now >= self.redis_retry_at.load(Ordering::Relaxed) {
            let started = std::time::Instant::now();
            match redis
                .check(&self.keys, &plan, lease, admit, self.settings.lease_ttl)
                .await
            {
                Ok(raw) => {
                    Metrics::global()
                        .limits_redis_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.redis_answered();
                    self.remember(&plan, &raw);
                    return Ok((raw, plan, Store::Redis));
                }
                Err(error) => self.redis_failed(&error),
            }
        }
        if governance.on_redis_error == RedisFailMode::Reject {
            return Err(Refusal::Unavailable);
        }
        Metrics::global().limits_fallback.inc();
        let share = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            plan.local_share(governance.live_dataplanes, |scope| seen.get(scope).copied())
        };
        let raw = self.local.check(&self.keys, &share, lease, admit, now);
        Ok((raw, share, Store::Local))
    }

    fn remember(&self, plan: &Plan, raw: &Raw) {
        if plan.budgets.is_empty() {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (check, (spent, reserved)) in plan.budgets.iter().zip(&raw.budgets) {
            seen.insert(check.scope, spent.saturating_add(*reserved));
        }
    }

    fn redis_failed(&self, error: &str) {
        self.redis_retry_at
            .store(Utc::now().timestamp() + 1, Ordering::Relaxed);
        Metrics::global().limits_redis_up.set(0);
        if !self.redis_down.swap(true, Ordering::Relaxed) {
            tracing::error!(
                error,
                "limits: Redis unreachable; enforcing each limit locally at its share (limit ÷ live data planes) until it answers (rate_limits.on_redis_error)"
            );
        }
    }

    fn redis_answered(&self) {
        Metrics::global().limits_redis_up.set(1);
        if self.redis_down.swap(false, Ordering::Relaxed) {
            tracing::info!("limits: Redis answers again; shared limits resume");
            self.local.forget_counts();
        }
    }

    fn hold(&self, plan: &Plan, lease: Uuid) {
        let zsets = plan
            .parallel
            .iter()
            .map(|p| self.keys.parallel(&p.scope))
            .chain(
                plan.budgets
                    .iter()
                    .filter(|b| b.amount > 0)
                    .map(|b| self.keys.reservation_expiries(&b.scope)),
            )
            .collect();
        let alive = plan
            .budgets
            .iter()
            .filter(|b| b.amount > 0)
            .map(|b| self.keys.reservations(&b.scope))
            .collect();
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leases
            .insert(lease, (zsets, alive));
    }

    fn forget_lease(&self, lease: Uuid) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leases
            .remove(&lease);
    }

    /// Gives an admission back: `tokens` and `cost` are the request's actual usage.
    pub async fn settle(&self, mut admission: Admission, tokens: u64, cost: MicroUsd) {
        admission.settled = true;
        let plan = std::mem::take(&mut admission.plan);
        self.finish(
            plan,
            admission.lease,
            admission.store,
            admission.second,
            tokens,
            cost,
        )
        .await;
    }

    async fn finish(
        &self,
        plan: Plan,
        lease: Uuid,
        store: Store,
        second: i64,
        tokens: u64,
        cost: MicroUsd,
    ) {
        let now = Utc::now();
        let today = local_day(plan.timezone.unwrap_or(chrono_tz::Tz::UTC), now);
        let end = Ending {
            lease,
            second,
            tokens,
            cost,
            today,
        };
        match store {
            Store::Local => {
                self.local.settle(&self.keys, &plan, &end, now.timestamp());
                // In cluster mode the spend still belongs in Redis once it answers.
                if self.redis.is_some() && cost > 0 {
                    let spend = plan
                        .budgets
                        .iter()
                        .map(|b| Pending::Spend(self.keys.spend_day(&b.scope, today), cost));
                    self.queue(spend);
                }
            }
            Store::Redis => {
                self.forget_lease(lease);
                let settlement = redis::Settlement::new(&self.keys, &plan, &end);
                if let Some(redis) = &self.redis {
                    if let Err(error) = redis.settle(&settlement).await {
                        tracing::warn!(error, %lease, "limits: settling in Redis failed; retried when it answers");
                        self.redis_failed(&error);
                        self.queue(std::iter::once(Pending::Settle(settlement)));
                    }
                }
            }
        }
    }

    fn queue(&self, items: impl Iterator<Item = Pending>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for item in items {
            if pending.len() >= PENDING_MAX {
                Metrics::global().limits_pending_dropped.inc();
                continue;
            }
            pending.push(item);
        }
        Metrics::global()
            .limits_pending
            .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
    }

    /// Cluster mode: renews held leases and reservations, announces this data plane in the
    /// live set, and replays settlements queued during an outage, every third of the lease
    /// time, until `shutdown`.
    pub async fn run_renewer(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let Some(redis) = &self.redis else {
            return;
        };
        let period = self.settings.lease_ttl / 3;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = &mut shutdown => {
                    self.replay(redis).await;
                    return;
                }
            }
            let (leases, alive) = {
                let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                let mut leases = Vec::new();
                let mut alive = Vec::new();
                for (lease, (zsets, keep)) in &held.leases {
                    leases.extend(zsets.iter().map(|z| (z.clone(), *lease)));
                    alive.extend(keep.iter().cloned());
                }
                alive.sort();
                alive.dedup();
                (leases, alive)
            };
            match redis
                .renew(
                    &self.keys,
                    &self.instance,
                    self.settings.lease_ttl,
                    &leases,
                    &alive,
                )
                .await
            {
                Ok(()) => {
                    self.redis_answered();
                    self.replay(redis).await;
                }
                Err(error) => self.redis_failed(&error),
            }
        }
    }

    async fn replay(&self, redis: &redis::RedisLimiter) {
        let items = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if items.is_empty() {
            return;
        }
        let total = items.len();
        let mut spend = Vec::new();
        let mut failed = Vec::new();
        for item in items {
            match item {
                Pending::Spend(key, amount) => spend.push((key, amount)),
                Pending::Settle(settlement) => {
                    if redis.settle(&settlement).await.is_err() {
                        failed.push(Pending::Settle(settlement));
                    }
                }
            }
        }
        for chunk in spend.chunks(500) {
            if redis.add_spend(chunk).await.is_err() {
                failed.extend(chunk.iter().cloned().map(|(k, a)| Pending::Spend(k, a)));
            }
        }
        let left = failed.len();
        if left < total {
            tracing::info!(
                replayed = total - left,
                left,
                "limits: settlements made during the Redis outage replayed"
            );
        }
        self.queue(failed.into_iter());
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "dataplane".to_owned())
}

#[cfg(test)]
mod tests;
