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
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let histogram_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let metric = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        Ok(Metrics {
            requests: counter_vec(
                "omg_requests_total",
                "Requests answered on /v1.",
                &["endpoint", "alias", "provider", "status"],
            )?,
            request_duration: histogram_vec(
                "omg_request_duration_seconds",
                "Time from request to last byte.",
                &["endpoint", "alias", "provider"],
            )?,
            ttft: histogram_vec(
                "omg_time_to_first_token_seconds",
                "Time from request to the first streamed content.",
                &["alias", "provider"],
            )?,
            tokens: counter_vec(
                "omg_tokens_total",
                "Tokens metered.",
                &["alias", "provider", "kind"],
            )?,
            cost: counter_vec(
                "omg_cost_micro_usd_total",
                "Cost metered, micro-USD.",
                &["alias", "provider"],
            )?,
            upstream_errors: counter_vec(
                "omg_upstream_errors_total",
                "Upstream failures by kind.",
                &["provider", "kind"],
            )?,
            upstream_attempts: counter_vec(
                "omg_upstream_attempts_total",
                "Upstream attempts by deployment and outcome (ok, or the failure kind).",
                &["alias", "deployment", "outcome"],
            )?,
            failovers: counter_vec(
                "omg_failovers_total",
                "Requests moved on to another deployment after a failed attempt.",
                &["alias"],
            )?,
            breaker_state: {
                let metric = IntGaugeVec::new(
                    Opts::new(
                        "omg_deployment_breaker_state",
                        "Circuit breaker per deployment on this data plane: 0 closed, 1 half-open, 2 open.",
                    ),
                    &["alias", "deployment", "provider"],
                )?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            breaker_transitions: counter_vec(
                "omg_breaker_transitions_total",
                "Circuit breaker changes by deployment and new state.",
                &["deployment", "to"],
            )?,
            health_checks: counter_vec(
                "omg_health_checks_total",
                "Active health checks by deployment and result (ok, failed).",
                &["deployment", "result"],
            )?,
            inflight: gauge("omg_inflight_requests", "Requests in progress.")?,
            snapshot_version: gauge(
                "omg_snapshot_version",
                "Version of the snapshot being served.",
            )?,
            snapshot_reloads: counter_vec(
                "omg_snapshot_reloads_total",
                "Snapshot reload attempts by result.",
                &["result"],
            )?,
            snapshot_age: gauge(
                "omg_snapshot_age_seconds",
                "Seconds since the snapshot being served was generated.",
            )?,
            snapshot_updates: counter_vec(
                "omg_snapshot_updates_total",
                "Snapshots received from the bus by result: applied, refused (tampered, older, \
                 wrong pepper, invalid) or error (Redis failed).",
                &["result"],
            )?,
            snapshot_last_error: gauge(
                "omg_snapshot_last_error_timestamp_seconds",
                "Unix time of the last refused snapshot or bus error (0: none).",
            )?,
            bus_connected: gauge(
                "omg_bus_connected",
                "1 while the snapshot bus (Redis) is connected, else 0.",
            )?,
            usage_records: counter("omg_usage_records_total", "Usage records written.")?,
            usage_write_errors: counter(
                "omg_usage_write_errors_total",
                "Usage records that could not be written.",
            )?,
            usage_spooled: counter(
                "omg_usage_spooled_total",
                "Usage records written to the spool.",
            )?,
            usage_shipped: counter(
                "omg_usage_shipped_total",
                "Usage records acknowledged by the usage stream.",
            )?,
            usage_spool_bytes: gauge(
                "omg_usage_spool_bytes",
                "Bytes of usage records spooled and not yet shipped.",
            )?,
            usage_spool_full: counter(
                "omg_usage_spool_full_total",
                "Usage records refused by a full spool (logged instead).",
            )?,
            usage_ship_errors: counter(
                "omg_usage_ship_errors_total",
                "Failed attempts to ship usage records to the usage stream.",
            )?,
            limit_rejections: counter_vec(
                "omg_limit_rejections_total",
                "Requests refused by a limit or budget, by limit: requests, tokens, parallel, \
                 budget or unavailable (Redis down with on_redis_error: reject).",
                &["limit"],
            )?,
            limits_redis_seconds: {
                let metric = prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "omg_limits_redis_seconds",
                        "Round trip of the shared limits check in Redis (cluster mode).",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    ]),
                )?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            limits_redis_up: gauge(
                "omg_limits_redis_up",
                "1 while shared limits are checked in Redis, 0 while the local share is used.",
            )?,
            limits_fallback: counter(
                "omg_limits_fallback_total",
                "Limit checks made locally at this data plane's share because Redis failed.",
            )?,
            limits_pending: gauge(
                "omg_limits_pending_settlements",
                "Settlements waiting for Redis to answer again.",
            )?,
            limits_pending_dropped: counter(
                "omg_limits_pending_dropped_total",
                "Settlements dropped because the replay queue was full (the control plane's \
                 counter rebuild restores spend from Postgres).",
            )?,
            idempotency: counter_vec(
                "omg_idempotency_total",
                "Requests with an Idempotency-Key by outcome: executed, replayed, mismatch \
                 (422), in_use (409: still running at the deadline); also waited (a duplicate \
                 waited for the first), fallback (Redis unreachable: checked locally), stored \
                 and not_stored (an executed answer kept for replays, or not: error, cut \
                 stream, too large).",
                &["outcome"],
            )?,
            batch_identity_refused: counter_vec(
                "omg_batch_identity_refused_total",
                "Batch lines (requests carrying the control plane's signed identity) refused, \
                 by cause: not_cluster, with_credentials, route, the identity's own causes \
                 (malformed, bad_signature, expired, wrong_request, wrong_query, \
                 wrong_audience, wrong_body, replayed, …), guard_unavailable (Redis), key \
                 (unknown, inactive or expired key, suspended tenant), tenant_mismatch, stream.",
                &["cause"],
            )?,
            downstream_connections: gauge(
                "omg_downstream_connections",
                "Client connections open on the /v1 listener.",
            )?,
            downstream_connections_refused: counter(
                "omg_downstream_connections_refused_total",
                "Client connections closed at accept because server.max_connections were open.",
            )?,
            downstream_timeouts: counter_vec(
                "omg_downstream_timeouts_total",
                "Client connections cut by a downstream deadline, by phase: head \
                 (server.request_head_timeout), body (server.request_body_timeout) or write \
                 (server.write_timeout).",
                &["phase"],
            )?,
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
