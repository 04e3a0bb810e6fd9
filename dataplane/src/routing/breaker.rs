//! The circuit breaker of one deployment, pure: every method takes the time (milliseconds on
//! a monotonic clock) so tests drive it without sleeping.
//!
//! Closed → Open after `failure_threshold` consecutive failures, or when the failure share over
//! `error_window` reaches `error_ratio` (once `min_requests` were seen), or at once on a
//! provider 429 (for its `Retry-After`, capped). Open → half-open when the rest is over: one
//! request (or active check) probes; its success closes the breaker, its failure opens it
//! again for a full cooldown.

use omg_shared::routing::HealthPolicy;

/// Buckets of the error-ratio window.
const BUCKETS: usize = 10;

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Takes traffic.
    Closed,
    /// Rests until `until_ms`.
    Open {
        /// End of the rest.
        until_ms: u64,
        /// Opened by a provider's 429 (a shorter rest) rather than failures.
        rate_limited: bool,
    },
    /// Rest over: one probe at a time decides.
    HalfOpen {
        /// A probe is out.
        probing: bool,
    },
}

impl BreakerState {
    /// Its name in status output and metrics.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }

    /// Gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen { .. } => 1,
            BreakerState::Open { .. } => 2,
        }
    }
}

/// What a deployment can take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Normal traffic.
    Open,
    /// Exactly one probe may go.
    Probe,
    /// Nothing until `until_ms` (`None`: a probe is out, no known end).
    Resting {
        /// When it may take a probe.
        until_ms: Option<u64>,
    },
}

/// A change worth logging and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Previous state name.
    pub from: &'static str,
    /// New state name.
    pub to: &'static str,
    /// Why, e.g. `consecutive_failures`.
    pub reason: &'static str,
}

/// Successes and failures per time bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    successes: u32,
    failures: u32,
}

/// One deployment's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    buckets: [Bucket; BUCKETS],
    /// Times it opened.
    pub opened_total: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            buckets: [Bucket::default(); BUCKETS],
            opened_total: 0,
        }
    }
}

impl Breaker {
    /// The state, with an elapsed rest shown as half-open.
    pub fn state(&self, now_ms: u64) -> BreakerState {
        match self.state {
            BreakerState::Open { until_ms, .. } if until_ms <= now_ms => {
                BreakerState::HalfOpen { probing: false }
            }
            state => state,
        }
    }

    /// Consecutive failures so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// What the deployment can take now (no change made).
    pub fn availability(&self, now_ms: u64) -> Availability {
        match self.state(now_ms) {
            BreakerState::Closed => Availability::Open,
            BreakerState::HalfOpen { probing: false } => Availability::Probe,
            BreakerState::HalfOpen { probing: true } => Availability::Resting { until_ms: None },
            BreakerState::Open { until_ms, .. } => Availability::Resting {
                until_ms: Some(until_ms),
            },
        }
    }

    /// Takes the right to send a request: `Some(false)` normal, `Some(true)` the probe,
    /// `None` resting.
    pub fn acquire(&mut self, now_ms: u64) -> Option<bool> {
        match self.availability(now_ms) {
            Availability::Open => Some(false),
            Availability::Probe => {
                self.state = BreakerState::HalfOpen { probing: true };
                Some(true)
            }
            Availability::Resting { .. } => None,
        }
    }

    /// A probe ended without a verdict (the client left): another may go.
    pub fn abandon_probe(&mut self) {
        if self.state == (BreakerState::HalfOpen { probing: true }) {
            self.state = BreakerState::HalfOpen { probing: false };
        }
    }

    /// A success (a request answered, or an active check passed).
    pub fn on_success(&mut self, now_ms: u64, policy: &HealthPolicy) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.bucket(now_ms, policy).successes += 1;
        match self.state(now_ms) {
            BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::Closed;
                self.buckets = [Bucket::default(); BUCKETS];
                Some(Transition {
                    from: "half_open",
                    to: "closed",
                    reason: "probe_succeeded",
                })
            }
            _ => None,
        }
    }

    /// A failure (connect error, timeout, 5xx, broken stream, failed check).
    pub fn on_failure(&mut self, now_ms: u64, policy: &HealthPolicy) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.bucket(now_ms, policy).failures += 1;
        match self.state(now_ms) {
            BreakerState::HalfOpen { .. } => Some(self.open(
                now_ms + policy.cooldown_ms,
                false,
                "half_open",
                "probe_failed",
            )),
            BreakerState::Closed => {
                if self.consecutive_failures >= policy.failure_threshold {
                    Some(self.open(
                        now_ms + policy.cooldown_ms,
                        false,
                        "closed",
                        "consecutive_failures",
                    ))
                } else if self.ratio_tripped(now_ms, policy) {
                    Some(self.open(now_ms + policy.cooldown_ms, false, "closed", "error_ratio"))
                } else {
                    None
                }
            }
            // Late answers of requests sent before it opened change nothing.
            BreakerState::Open { .. } => None,
        }
    }

    /// The provider answered 429: rest for its `Retry-After` (else the configured rest),
    /// capped, never shortening a longer rest already running.
    pub fn on_rate_limited(
        &mut self,
        now_ms: u64,
        retry_after_ms: Option<u64>,
        policy: &HealthPolicy,
    ) -> Option<Transition> {
        let rest = retry_after_ms
            .unwrap_or(policy.rate_limit_cooldown_ms)
            .clamp(1, policy.max_rate_limit_cooldown_ms.max(1));
        let until = now_ms + rest;
        let from = self.state(now_ms);
        if let BreakerState::Open { until_ms, .. } = from {
            if until_ms >= until {
                return None;
            }
        }
        Some(self.open(until, true, from.name(), "rate_limited"))
    }

    fn open(
        &mut self,
        until_ms: u64,
        rate_limited: bool,
        from: &'static str,
        reason: &'static str,
    ) -> Transition {
        self.state = BreakerState::Open {
            until_ms,
            rate_limited,
        };
        self.opened_total += 1;
        Transition {
            from,
            to: "open",
            reason,
        }
    }

    /// Successes and failures within the error window.
    pub fn window_counts(&self, now_ms: u64, policy: &HealthPolicy) -> (u32, u32) {
        let current = epoch(now_ms, policy);
        self.buckets
            .iter()
            .filter(|b| b.epoch + (BUCKETS as u64) > current && b.epoch <= current)
            .fold((0, 0), |(s, f), b| (s + b.successes, f + b.failures))
    }

    fn ratio_tripped(&self, now_ms: u64, policy: &HealthPolicy) -> bool {
        if policy.error_ratio <= 0.0 {
            return false;
        }
        let (successes, failures) = self.window_counts(now_ms, policy);
        let total = successes + failures;
        total >= policy.min_requests.max(1)
            && f64::from(failures) >= policy.error_ratio * f64::from(total)
    }

    fn bucket(&mut self, now_ms: u64, policy: &HealthPolicy) -> &mut Bucket {
        let current = epoch(now_ms, policy);
        let bucket = &mut self.buckets[(current % BUCKETS as u64) as usize];
        if bucket.epoch != current {
            *bucket = Bucket {
                epoch: current,
                ..Bucket::default()
            };
        }
        bucket
    }
}

fn epoch(now_ms: u64, policy: &HealthPolicy) -> u64 {
    now_ms / (policy.error_window_ms / BUCKETS as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            cooldown_ms: 1000,
            failure_threshold: 3,
            error_ratio: 0.5,
            error_window_ms: 10_000,
            min_requests: 10,
            rate_limit_cooldown_ms: 200,
            max_rate_limit_cooldown_ms: 5000,
            ..HealthPolicy::default()
        }
    }

    #[test]
    fn consecutive_failures_trip_then_a_probe_recovers() {
        let p = policy();
        let mut b = Breaker::default();
        assert!(b.on_failure(0, &p).is_none());
        assert!(b.on_success(1, &p).is_none(), "a success resets the count");
        assert!(b.on_failure(2, &p).is_none());
        assert!(b.on_failure(3, &p).is_none());
        let t = b
            .on_failure(4, &p)
            .expect("third consecutive failure trips");
        assert_eq!((t.to, t.reason), ("open", "consecutive_failures"));
        assert_eq!(b.acquire(500), None, "resting");
        assert_eq!(b.availability(1004), Availability::Probe);
        assert_eq!(b.acquire(1004), Some(true), "the probe");
        assert_eq!(b.acquire(1005), None, "one probe at a time");
        let t = b.on_success(1006, &p).expect("probe success closes");
        assert_eq!(t.to, "closed");
        assert_eq!(b.acquire(1007), Some(false));
    }

    #[test]
    fn a_failed_probe_rests_a_full_cooldown_and_an_abandoned_one_frees_the_slot() {
        let p = policy();
        let mut b = Breaker::default();
        for t in 0..3 {
            b.on_failure(t, &p);
        }
        assert_eq!(b.acquire(2000), Some(true));
        b.abandon_probe();
        assert_eq!(
            b.acquire(2001),
            Some(true),
            "abandoned probe frees the slot"
        );
        let t = b.on_failure(2002, &p).expect("probe failure reopens");
        assert_eq!(t.reason, "probe_failed");
        assert_eq!(
            b.availability(2500),
            Availability::Resting {
                until_ms: Some(3002)
            }
        );
        assert_eq!(b.opened_total, 2);
    }

    #[test]
    fn the_error_ratio_trips_without_consecutive_failures() {
        let p = policy();
        let mut b = Breaker::default();
        // Alternate: never 3 in a row, but 50% over the window once 10 were seen.
        let mut tripped = None;
        for i in 0..10u64 {
            tripped = if i % 2 == 0 {
                b.on_failure(i * 10, &p)
            } else {
                b.on_success(i * 10, &p)
            }
            .or(tripped);
        }
        assert_eq!(tripped, None, "the 10th event is a success");
        let t = b.on_failure(200, &p).expect("6 of 11 failed");
        assert_eq!(t.reason, "error_ratio");
        // Old buckets age out of the window.
        let mut fresh = Breaker::default();
        for i in 0..9u64 {
            fresh.on_failure(i * 5000, &p);
            fresh.on_success(i * 5000 + 1, &p);
        }
        assert_eq!(
            fresh.window_counts(45_000, &p),
            (1, 1),
            "only the event at 40s is within 10s"
        );
        assert_eq!(fresh.state(45_000), BreakerState::Closed);
    }

    #[test]
    fn rate_limits_rest_for_retry_after_capped_and_never_shorten_a_rest() {
        let p = policy();
        let mut b = Breaker::default();
        let t = b.on_rate_limited(0, Some(1500), &p).expect("opens");
        assert_eq!(t.reason, "rate_limited");
        assert_eq!(
            b.availability(1499),
            Availability::Resting {
                until_ms: Some(1500)
            }
        );
        assert_eq!(
            b.on_rate_limited(10, Some(100), &p),
            None,
            "shorter: ignored"
        );
        b.on_rate_limited(20, Some(60_000), &p);
        assert_eq!(
            b.availability(21),
            Availability::Resting {
                until_ms: Some(5020)
            }
        );
        let mut c = Breaker::default();
        c.on_rate_limited(0, None, &p);
        assert_eq!(
            c.availability(0),
            Availability::Resting {
                until_ms: Some(200)
            }
        );
    }

    #[test]
    fn failures_while_open_change_nothing() {
        let p = policy();
        let mut b = Breaker::default();
        for t in 0..3 {
            b.on_failure(t, &p);
        }
        assert_eq!(b.on_failure(10, &p), None);
        assert_eq!(b.opened_total, 1);
    }
}
