//! Prometheus metrics of the data plane. Names live here and nowhere else; labels are
//! low-cardinality (alias, provider, status class, endpoint), never keys or tenants.

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// `omg_requests_total{endpoint,alias,provider,status}`
    pub requests: IntCounterVec,
    /// `omg_request_duration_seconds{endpoint,alias,provider}`
    pub request_duration: HistogramVec,
    /// `omg_time_to_first_token_seconds{alias,provider}`
    pub ttft: HistogramVec,
    /// `omg_tokens_total{alias,provider,kind}` (kind = prompt | completion)
    pub tokens: IntCounterVec,
    /// `omg_cost_micro_usd_total{alias,provider}`
    pub cost: IntCounterVec,
    /// `omg_upstream_errors_total{provider,kind}`
    pub upstream_errors: IntCounterVec,
    /// `omg_upstream_attempts_total{alias,deployment,outcome}` (outcome = ok | a failure kind)
    pub upstream_attempts: IntCounterVec,
    /// `omg_failovers_total{alias}`: attempts moved on to another deployment
    pub failovers: IntCounterVec,
    /// `omg_deployment_breaker_state{alias,deployment,provider}` (0 closed, 1 half-open, 2 open)
    pub breaker_state: IntGaugeVec,
    /// `omg_breaker_transitions_total{deployment,to}`
    pub breaker_transitions: IntCounterVec,
    /// `omg_health_checks_total{deployment,result}` (result = ok | failed)
    pub health_checks: IntCounterVec,
    /// `omg_inflight_requests`
    pub inflight: IntGauge,
    /// `omg_snapshot_version`
    pub snapshot_version: IntGauge,
    /// `omg_snapshot_reloads_total{result}`
    pub snapshot_reloads: IntCounterVec,
    /// `omg_snapshot_age_seconds` (set when `/metrics` is scraped)
    pub snapshot_age: IntGauge,
    /// `omg_snapshot_updates_total{result}` (cluster mode; result = applied | refused | error)
    pub snapshot_updates: IntCounterVec,
    /// `omg_snapshot_last_error_timestamp_seconds` (cluster mode)
    pub snapshot_last_error: IntGauge,
    /// `omg_bus_connected` (cluster mode: 1 while Redis answers)
    pub bus_connected: IntGauge,
    /// `omg_usage_records_total`
    pub usage_records: IntCounter,
    /// `omg_usage_write_errors_total`
    pub usage_write_errors: IntCounter,
    /// `omg_usage_spooled_total` (cluster mode)
    pub usage_spooled: IntCounter,
    /// `omg_usage_shipped_total` (cluster mode)
    pub usage_shipped: IntCounter,
    /// `omg_usage_spool_bytes` (cluster mode)
    pub usage_spool_bytes: IntGauge,
    /// `omg_usage_spool_full_total` (cluster mode)
    pub usage_spool_full: IntCounter,
    /// `omg_usage_ship_errors_total` (cluster mode)
    pub usage_ship_errors: IntCounter,
    /// `omg_limit_rejections_total{limit}` (requests | tokens | parallel | budget | unavailable)
    pub limit_rejections: IntCounterVec,
    /// `omg_limits_redis_seconds` (cluster mode: the admit round trip)
    pub limits_redis_seconds: prometheus::Histogram,
    /// `omg_limits_redis_up` (cluster mode: 0 while limits fall back to the local share)
    pub limits_redis_up: IntGauge,
    /// `omg_limits_fallback_total` (cluster mode: checks made at the local share)
    pub limits_fallback: IntCounter,
    /// `omg_limits_pending_settlements` (cluster mode: waiting for Redis)
    pub limits_pending: IntGauge,
    /// `omg_limits_pending_dropped_total` (cluster mode: over the replay queue's bound)
    pub limits_pending_dropped: IntCounter,
    /// `omg_idempotency_total{outcome}` (executed | replayed | mismatch | in_use | waited |
    /// fallback | stored | not_stored): requests with an `Idempotency-Key`
    pub idempotency: IntCounterVec,
    /// `omg_batch_identity_refused_total{cause}`: batch lines (requests carrying the control
    /// plane's signed identity) refused, by cause
    pub batch_identity_refused: IntCounterVec,
    /// `omg_downstream_connections`: client connections open on the `/v1` listener
    pub downstream_connections: IntGauge,
    /// `omg_downstream_connections_refused_total`: connections closed at accept because
    /// `server.max_connections` were open
    pub downstream_connections_refused: IntCounter,
    /// `omg_downstream_timeouts_total{phase}` (head | body | write): client connections cut
    /// by a downstream deadline
    pub downstream_timeouts: IntCounterVec,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

impl Metrics {
    /// The process-wide metrics.
    #[expect(
        clippy::expect_used,
        reason = "metric names and labels are constants; every test would catch a bad one"
    )]
    pub fn global() -> &'static Metrics {
        METRICS.get_or_init(|| Metrics::new().expect("metric definitions are valid"))
    }

    fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = Registrar(&registry);
        Ok(Metrics {
            requests: r.counter_vec(&defs::REQUESTS)?,
            request_duration: r.histogram_vec(&defs::REQUEST_DURATION)?,
            ttft: r.histogram_vec(&defs::TTFT)?,
            tokens: r.counter_vec(&defs::TOKENS)?,
            cost: r.counter_vec(&defs::COST)?,
            upstream_errors: r.counter_vec(&defs::UPSTREAM_ERRORS)?,
            upstream_attempts: r.counter_vec(&defs::UPSTREAM_ATTEMPTS)?,
            failovers: r.counter_vec(&defs::FAILOVERS)?,
            breaker_state: r.gauge_vec(&defs::BREAKER_STATE)?,
            breaker_transitions: r.counter_vec(&defs::BREAKER_TRANSITIONS)?,
            health_checks: r.counter_vec(&defs::HEALTH_CHECKS)?,
            inflight: r.gauge(&defs::INFLIGHT)?,
            snapshot_version: r.gauge(&defs::SNAPSHOT_VERSION)?,
            snapshot_reloads: r.counter_vec(&defs::SNAPSHOT_RELOADS)?,
            snapshot_age: r.gauge(&defs::SNAPSHOT_AGE)?,
            snapshot_updates: r.counter_vec(&defs::SNAPSHOT_UPDATES)?,
            snapshot_last_error: r.gauge(&defs::SNAPSHOT_LAST_ERROR)?,
            bus_connected: r.gauge(&defs::BUS_CONNECTED)?,
            usage_records: r.counter(&defs::USAGE_RECORDS)?,
            usage_write_errors: r.counter(&defs::USAGE_WRITE_ERRORS)?,
            usage_spooled: r.counter(&defs::USAGE_SPOOLED)?,
            usage_shipped: r.counter(&defs::USAGE_SHIPPED)?,
            usage_spool_bytes: r.gauge(&defs::USAGE_SPOOL_BYTES)?,
            usage_spool_full: r.counter(&defs::USAGE_SPOOL_FULL)?,
            usage_ship_errors: r.counter(&defs::USAGE_SHIP_ERRORS)?,
            limit_rejections: r.counter_vec(&defs::LIMIT_REJECTIONS)?,
            limits_redis_seconds: r.histogram(
                &defs::LIMITS_REDIS_SECONDS,
                &[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                ],
            )?,
            limits_redis_up: r.gauge(&defs::LIMITS_REDIS_UP)?,
            limits_fallback: r.counter(&defs::LIMITS_FALLBACK)?,
            limits_pending: r.gauge(&defs::LIMITS_PENDING)?,
            limits_pending_dropped: r.counter(&defs::LIMITS_PENDING_DROPPED)?,
            idempotency: r.counter_vec(&defs::IDEMPOTENCY)?,
            batch_identity_refused: r.counter_vec(&defs::BATCH_IDENTITY_REFUSED)?,
            downstream_connections: r.gauge(&defs::DOWNSTREAM_CONNECTIONS)?,
            downstream_connections_refused: r.counter(&defs::DOWNSTREAM_CONNECTIONS_REFUSED)?,
            downstream_timeouts: r.counter_vec(&defs::DOWNSTREAM_TIMEOUTS)?,
            registry,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "metrics encoding failed");
        }
        buffer
    }
}

/// A metric's name, help text and label names.
struct Def {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

/// Creates metrics from their [`Def`]s and registers them.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: M,
    ) -> Result<M, prometheus::Error> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn counter_vec(&self, def: &Def) -> Result<IntCounterVec, prometheus::Error> {
        self.register(IntCounterVec::new(
            Opts::new(def.name, def.help),
            def.labels,
        )?)
    }

    fn gauge_vec(&self, def: &Def) -> Result<IntGaugeVec, prometheus::Error> {
        self.register(IntGaugeVec::new(Opts::new(def.name, def.help), def.labels)?)
    }

    fn histogram_vec(&self, def: &Def) -> Result<HistogramVec, prometheus::Error> {
        let opts = HistogramOpts::new(def.name, def.help).buckets(LATENCY_BUCKETS.to_vec());
        self.register(HistogramVec::new(opts, def.labels)?)
    }

    fn histogram(
        &self,
        def: &Def,
        buckets: &[f64],
    ) -> Result<prometheus::Histogram, prometheus::Error> {
        let opts = HistogramOpts::new(def.name, def.help).buckets(buckets.to_vec());
        self.register(prometheus::Histogram::with_opts(opts)?)
    }

    fn gauge(&self, def: &Def) -> Result<IntGauge, prometheus::Error> {
        self.register(IntGauge::new(def.name, def.help)?)
    }

    fn counter(&self, def: &Def) -> Result<IntCounter, prometheus::Error> {
        self.register(IntCounter::new(def.name, def.help)?)
    }
}

/// Every metric's name, help and labels, in the order of [`Metrics`]' fields.
mod defs {
    use super::Def;

    pub(super) const REQUESTS: Def = Def {
        name: "omg_requests_total",
        help: "Requests answered on /v1.",
        labels: &["endpoint", "alias", "provider", "status"],
    };

    pub(super) const REQUEST_DURATION: Def = Def {
        name: "omg_request_duration_seconds",
        help: "Time from request to last byte.",
        labels: &["endpoint", "alias", "provider"],
    };

    pub(super) const TTFT: Def = Def {
        name: "omg_time_to_first_token_seconds",
        help: "Time from request to the first streamed content.",
        labels: &["alias", "provider"],
    };

    pub(super) const TOKENS: Def = Def {
        name: "omg_tokens_total",
        help: "Tokens metered.",
        labels: &["alias", "provider", "kind"],
    };

    pub(super) const COST: Def = Def {
        name: "omg_cost_micro_usd_total",
        help: "Cost metered, micro-USD.",
        labels: &["alias", "provider"],
    };

    pub(super) const UPSTREAM_ERRORS: Def = Def {
        name: "omg_upstream_errors_total",
        help: "Upstream failures by kind.",
        labels: &["provider", "kind"],
    };

    pub(super) const UPSTREAM_ATTEMPTS: Def = Def {
        name: "omg_upstream_attempts_total",
        help: "Upstream attempts by deployment and outcome (ok, or the failure kind).",
        labels: &["alias", "deployment", "outcome"],
    };

    pub(super) const FAILOVERS: Def = Def {
        name: "omg_failovers_total",
        help: "Requests moved on to another deployment after a failed attempt.",
        labels: &["alias"],
    };

    pub(super) const BREAKER_STATE: Def = Def {
        name: "omg_deployment_breaker_state",
        help: "Circuit breaker per deployment on this data plane: 0 closed, 1 half-open, 2 open.",
        labels: &["alias", "deployment", "provider"],
    };

    pub(super) const BREAKER_TRANSITIONS: Def = Def {
        name: "omg_breaker_transitions_total",
        help: "Circuit breaker changes by deployment and new state.",
        labels: &["deployment", "to"],
    };

    pub(super) const HEALTH_CHECKS: Def = Def {
        name: "omg_health_checks_total",
        help: "Active health checks by deployment and result (ok, failed).",
        labels: &["deployment", "result"],
    };

    pub(super) const INFLIGHT: Def = Def {
        name: "omg_inflight_requests",
        help: "Requests in progress.",
        labels: &[],
    };

    pub(super) const SNAPSHOT_VERSION: Def = Def {
        name: "omg_snapshot_version",
        help: "Version of the snapshot being served.",
        labels: &[],
    };

    pub(super) const SNAPSHOT_RELOADS: Def = Def {
        name: "omg_snapshot_reloads_total",
        help: "Snapshot reload attempts by result.",
        labels: &["result"],
    };

    pub(super) const SNAPSHOT_AGE: Def = Def {
        name: "omg_snapshot_age_seconds",
        help: "Seconds since the snapshot being served was generated.",
        labels: &[],
    };

    pub(super) const SNAPSHOT_UPDATES: Def = Def {
        name: "omg_snapshot_updates_total",
        help: "Snapshots received from the bus by result: applied, refused (tampered, older, \
                 wrong pepper, invalid) or error (Redis failed).",
        labels: &["result"],
    };

    pub(super) const SNAPSHOT_LAST_ERROR: Def = Def {
        name: "omg_snapshot_last_error_timestamp_seconds",
        help: "Unix time of the last refused snapshot or bus error (0: none).",
        labels: &[],
    };

    pub(super) const BUS_CONNECTED: Def = Def {
        name: "omg_bus_connected",
        help: "1 while the snapshot bus (Redis) is connected, else 0.",
        labels: &[],
    };

    pub(super) const USAGE_RECORDS: Def = Def {
        name: "omg_usage_records_total",
        help: "Usage records written.",
        labels: &[],
    };

    pub(super) const USAGE_WRITE_ERRORS: Def = Def {
        name: "omg_usage_write_errors_total",
        help: "Usage records that could not be written.",
        labels: &[],
    };

    pub(super) const USAGE_SPOOLED: Def = Def {
        name: "omg_usage_spooled_total",
        help: "Usage records written to the spool.",
        labels: &[],
    };

    pub(super) const USAGE_SHIPPED: Def = Def {
        name: "omg_usage_shipped_total",
        help: "Usage records acknowledged by the usage stream.",
        labels: &[],
    };

    pub(super) const USAGE_SPOOL_BYTES: Def = Def {
        name: "omg_usage_spool_bytes",
        help: "Bytes of usage records spooled and not yet shipped.",
        labels: &[],
    };

    pub(super) const USAGE_SPOOL_FULL: Def = Def {
        name: "omg_usage_spool_full_total",
        help: "Usage records refused by a full spool (logged instead).",
        labels: &[],
    };

    pub(super) const USAGE_SHIP_ERRORS: Def = Def {
        name: "omg_usage_ship_errors_total",
        help: "Failed attempts to ship usage records to the usage stream.",
        labels: &[],
    };

    pub(super) const LIMIT_REJECTIONS: Def = Def {
        name: "omg_limit_rejections_total",
        help: "Requests refused by a limit or budget, by limit: requests, tokens, parallel, \
                 budget or unavailable (Redis down with on_redis_error: reject).",
        labels: &["limit"],
    };

    pub(super) const LIMITS_REDIS_SECONDS: Def = Def {
        name: "omg_limits_redis_seconds",
        help: "Round trip of the shared limits check in Redis (cluster mode).",
        labels: &[],
    };

    pub(super) const LIMITS_REDIS_UP: Def = Def {
        name: "omg_limits_redis_up",
        help: "1 while shared limits are checked in Redis, 0 while the local share is used.",
        labels: &[],
    };

    pub(super) const LIMITS_FALLBACK: Def = Def {
        name: "omg_limits_fallback_total",
        help: "Limit checks made locally at this data plane's share because Redis failed.",
        labels: &[],
    };

    pub(super) const LIMITS_PENDING: Def = Def {
        name: "omg_limits_pending_settlements",
        help: "Settlements waiting for Redis to answer again.",
        labels: &[],
    };

    pub(super) const LIMITS_PENDING_DROPPED: Def = Def {
        name: "omg_limits_pending_dropped_total",
        help: "Settlements dropped because the replay queue was full (the control plane's \
                 counter rebuild restores spend from Postgres).",
        labels: &[],
    };

    pub(super) const IDEMPOTENCY: Def = Def {
        name: "omg_idempotency_total",
        help: "Requests with an Idempotency-Key by outcome: executed, replayed, mismatch \
                 (422), in_use (409: still running at the deadline); also waited (a duplicate \
                 waited for the first), fallback (Redis unreachable: checked locally), stored \
                 and not_stored (an executed answer kept for replays, or not: error, cut \
                 stream, too large).",
        labels: &["outcome"],
    };

    pub(super) const BATCH_IDENTITY_REFUSED: Def = Def {
        name: "omg_batch_identity_refused_total",
        help: "Batch lines (requests carrying the control plane's signed identity) refused, \
                 by cause: not_cluster, with_credentials, route, the identity's own causes \
                 (malformed, bad_signature, expired, wrong_request, wrong_query, \
                 wrong_audience, wrong_body, replayed, …), guard_unavailable (Redis), key \
                 (unknown, inactive or expired key, suspended tenant), tenant_mismatch, stream.",
        labels: &["cause"],
    };

    pub(super) const DOWNSTREAM_CONNECTIONS: Def = Def {
        name: "omg_downstream_connections",
        help: "Client connections open on the /v1 listener.",
        labels: &[],
    };

    pub(super) const DOWNSTREAM_CONNECTIONS_REFUSED: Def = Def {
        name: "omg_downstream_connections_refused_total",
        help: "Client connections closed at accept because server.max_connections were open.",
        labels: &[],
    };

    pub(super) const DOWNSTREAM_TIMEOUTS: Def = Def {
        name: "omg_downstream_timeouts_total",
        help: "Client connections cut by a downstream deadline, by phase: head \
                 (server.request_head_timeout), body (server.request_body_timeout) or write \
                 (server.write_timeout).",
        labels: &["phase"],
    };
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn every_definition_registers_once_and_renders() {
        let metrics = Metrics::new().expect("valid definitions");
        metrics.inflight.set(1);
        metrics.limits_redis_seconds.observe(0.001);
        metrics
            .breaker_state
            .with_label_values(&["a", "d", "p"])
            .set(2);
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        for name in [
            "omg_inflight_requests 1",
            "omg_limits_redis_seconds_bucket{le=\"0.0005\"}",
            "omg_deployment_breaker_state{alias=\"a\",deployment=\"d\",provider=\"p\"} 2",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
