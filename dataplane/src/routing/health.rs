//! Per-deployment health on this data plane: the breaker, requests in flight (for
//! `least_busy`), the recent active-check results. One [`DeploymentHealth`] per deployment
//! lives in the process-wide [`HealthRegistry`] and survives snapshot swaps as long as the
//! deployment keeps the same definition.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use omg_shared::provider::ProviderKind;
use omg_shared::routing::HealthPolicy;
use omg_shared::snapshot::Deployment;
use serde::Serialize;

use super::breaker::{Availability, Breaker, BreakerState, Transition};
use crate::metrics::Metrics;

/// One active-check result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// When (Unix ms).
    pub at_ms: i64,
    /// Passed.
    pub ok: bool,
    /// What was seen (`HTTP 200`, `connect`, `timeout` …).
    pub detail: String,
}

/// The health of one deployment.
#[derive(Debug)]
pub struct DeploymentHealth {
    /// Deployment id (`alias#n`).
    pub id: String,
    /// Its alias.
    pub alias: String,
    /// Its provider.
    pub provider: ProviderKind,
    breaker: Mutex<Breaker>,
    in_flight: AtomicU32,
    checks: Mutex<VecDeque<CheckResult>>,
    last_error: Mutex<Option<&'static str>>,
}

/// How a request attempt ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The deployment answered (including a client error it caught).
    Success,
    /// The deployment failed (`kind` names how, e.g. `status_5xx`).
    Failure(&'static str),
    /// The provider answered 429 (`Retry-After` in ms when given).
    RateLimited(Option<u64>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DeploymentHealth {
    fn new(deployment: &Deployment) -> Self {
        let alias = deployment
            .id
            .rsplit_once('#')
            .map_or(deployment.id.as_str(), |(alias, _)| alias)
            .to_owned();
        Self {
            id: deployment.id.clone(),
            alias,
            provider: deployment.provider,
            breaker: Mutex::new(Breaker::default()),
            in_flight: AtomicU32::new(0),
            checks: Mutex::new(VecDeque::new()),
            last_error: Mutex::new(None),
        }
    }

    /// Requests in flight to it from this data plane.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// What it can take now.
    pub fn availability(&self) -> Availability {
        lock(&self.breaker).availability(now_ms())
    }

    /// Takes the right to send one request: `None` while it rests (or another probe is out).
    pub fn acquire(self: &Arc<Self>) -> Option<Permit> {
        let probe = lock(&self.breaker).acquire(now_ms())?;
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Permit {
            health: Arc::clone(self),
            probe,
            done: false,
        })
    }

    /// Applies an outcome (of a request or an active check) to the breaker.
    pub fn record(&self, outcome: Outcome, policy: &HealthPolicy) {
        let now = now_ms();
        let transition = {
            let mut breaker = lock(&self.breaker);
            let transition = match outcome {
                Outcome::Success => breaker.on_success(now, policy),
                Outcome::Failure(_) => breaker.on_failure(now, policy),
                Outcome::RateLimited(retry_after) => {
                    breaker.on_rate_limited(now, retry_after, policy)
                }
            };
            self.publish(breaker.state(now));
            transition
        };
        match outcome {
            Outcome::Failure(kind) => *lock(&self.last_error) = Some(kind),
            Outcome::RateLimited(_) => *lock(&self.last_error) = Some("status_429"),
            Outcome::Success => {}
        }
        if let Some(transition) = transition {
            self.log_transition(transition, policy);
        }
    }

    /// Keeps an active-check result (the last `rolling_window`) and feeds the breaker: a
    /// failed check counts as a failure, a passing one as a success (it closes a half-open
    /// breaker: the check was the probe).
    pub fn record_check(&self, result: CheckResult, policy: &HealthPolicy) {
        let outcome = if result.ok {
            Outcome::Success
        } else {
            Outcome::Failure("health_check")
        };
        Metrics::global()
            .health_checks
            .with_label_values(&[self.id.as_str(), if result.ok { "ok" } else { "failed" }])
            .inc();
        {
            let mut checks = lock(&self.checks);
            checks.push_back(result);
            while checks.len() > policy.rolling_window.max(1) as usize {
                checks.pop_front();
            }
        }
        // A passing check only counts once the rest is over: it is the probe.
        if outcome == Outcome::Success
            && matches!(
                lock(&self.breaker).state(now_ms()),
                BreakerState::Open { .. }
            )
        {
            return;
        }
        self.record(outcome, policy);
    }

    fn publish(&self, state: BreakerState) {
        Metrics::global()
            .breaker_state
            .with_label_values(&[&self.alias, &self.id, self.provider.as_str()])
            .set(state.gauge());
    }

    fn log_transition(&self, transition: Transition, policy: &HealthPolicy) {
        Metrics::global()
            .breaker_transitions
            .with_label_values(&[&self.id, transition.to])
            .inc();
        if transition.to == "open" {
            tracing::warn!(
                deployment = %self.id,
                provider = self.provider.as_str(),
                from = transition.from,
                reason = transition.reason,
                last_error = lock(&self.last_error).unwrap_or("-"),
                cooldown_ms = policy.cooldown_ms,
                "circuit breaker opened: the deployment gets no traffic until its rest is over"
            );
        } else {
            tracing::info!(
                deployment = %self.id,
                from = transition.from,
                to = transition.to,
                reason = transition.reason,
                "circuit breaker changed"
            );
        }
    }

    /// What `/deployments` on the admin listener shows.
    pub fn status(&self, policy: &HealthPolicy, checked: bool) -> DeploymentStatus {
        let now = now_ms();
        let breaker = lock(&self.breaker);
        let state = breaker.state(now);
        let (successes, failures) = breaker.window_counts(now, policy);
        DeploymentStatus {
            id: self.id.clone(),
            alias: self.alias.clone(),
            provider: self.provider.as_str(),
            state: state.name(),
            healthy: matches!(state, BreakerState::Closed),
            retry_in_ms: match state {
                BreakerState::Open { until_ms, .. } => Some(until_ms.saturating_sub(now)),
                _ => None,
            },
            rate_limited: matches!(
                state,
                BreakerState::Open {
                    rate_limited: true,
                    ..
                }
            ),
            consecutive_failures: breaker.consecutive_failures(),
            window_successes: successes,
            window_failures: failures,
            opened_total: breaker.opened_total,
            in_flight: self.in_flight(),
            last_error: *lock(&self.last_error),
            health_check: checked,
            checks: lock(&self.checks).iter().cloned().collect(),
        }
    }
}

/// A deployment's health as shown on the admin listener.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    /// Deployment id.
    pub id: String,
    /// Alias.
    pub alias: String,
    /// Provider kind.
    pub provider: &'static str,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// Takes normal traffic.
    pub healthy: bool,
    /// Time left of the rest.
    pub retry_in_ms: Option<u64>,
    /// The rest comes from a provider 429.
    pub rate_limited: bool,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// Successes in the error window.
    pub window_successes: u32,
    /// Failures in the error window.
    pub window_failures: u32,
    /// Times the breaker opened.
    pub opened_total: u64,
    /// Requests in flight.
    pub in_flight: u32,
    /// Last failure kind.
    pub last_error: Option<&'static str>,
    /// Active checks on.
    pub health_check: bool,
    /// Recent check results, oldest first.
    pub checks: Vec<CheckResult>,
}

/// The right to send one request to a deployment; counts it in flight until dropped. An
/// outcome must be reported with [`Permit::finish`]; a permit dropped without one (the
/// client left) frees a probe slot without a verdict.
#[derive(Debug)]
pub struct Permit {
    health: Arc<DeploymentHealth>,
    probe: bool,
    done: bool,
}

impl Permit {
    /// Reports how the attempt ended.
    pub fn finish(mut self, outcome: Outcome, policy: &HealthPolicy) {
        self.done = true;
        self.health.record(outcome, policy);
    }

    /// This attempt is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.probe && !self.done {
            lock(&self.health.breaker).abandon_probe();
        }
    }
}

/// Every deployment's health, keyed by its definition (id, provider, endpoint, model), so an
/// edited deployment starts afresh.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    entries: Mutex<HashMap<String, Arc<DeploymentHealth>>>,
}

impl HealthRegistry {
    /// The process-wide registry.
    pub fn global() -> &'static HealthRegistry {
        static REGISTRY: OnceLock<HealthRegistry> = OnceLock::new();
        REGISTRY.get_or_init(HealthRegistry::default)
    }

    /// The health of a deployment (created on first sight).
    pub fn entry(&self, deployment: &Deployment) -> Arc<DeploymentHealth> {
        let key = format!(
            "{}|{}|{}|{}",
            deployment.id,
            deployment.provider.as_str(),
            deployment
                .endpoint
                .as_ref()
                .map_or(String::new(), |e| format!(
                    "{}:{}{}",
                    e.host, e.port, e.path
                )),
            deployment.provider_model
        );
        let mut entries = lock(&self.entries);
        if let Some(found) = entries.get(&key) {
            return Arc::clone(found);
        }
        let health = Arc::new(DeploymentHealth::new(deployment));
        health.publish(BreakerState::Closed);
        entries.insert(key, Arc::clone(&health));
        health
    }

    /// Forgets deployments no snapshot holds any more (and their gauges).
    pub fn prune(&self) {
        let metrics = Metrics::global();
        lock(&self.entries).retain(|_, health| {
            let live = Arc::strong_count(health) > 1;
            if !live {
                let _ = metrics.breaker_state.remove_label_values(&[
                    &health.alias,
                    &health.id,
                    health.provider.as_str(),
                ]);
            }
            live
        });
    }
}

/// Milliseconds on the process's monotonic clock.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}
