//! Prometheus metrics of the control plane (its own registry, `omg_cp_*`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The control plane's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    snapshots: SnapshotMetrics,
    internal_refused: prometheus::IntCounter,
    usage: UsageMetrics,
    alerts: AlertMetrics,
    retention: RetentionMetrics,
    files: FilesMetrics,
    batches: BatchMetrics,
}

/// The files service's metrics (`omg_cp_files_*`); cheap to clone.
#[derive(Clone)]
pub struct FilesMetrics {
    uploads: IntCounterVec,
    uploaded_bytes: IntCounter,
    deletes: IntCounterVec,
    sweep_errors: IntCounter,
}

impl FilesMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            uploads: IntCounterVec::new(
                Opts::new(
                    "omg_cp_files_uploads_total",
                    "File uploads by result (ok, too_large, invalid, error)",
                ),
                &["result"],
            )?,
            uploaded_bytes: IntCounter::new(
                "omg_cp_files_uploaded_bytes_total",
                "Plaintext bytes of the files stored",
            )?,
            deletes: IntCounterVec::new(
                Opts::new(
                    "omg_cp_files_deleted_total",
                    "Files deleted, by who deleted them (client, admin, sweeper)",
                ),
                &["by"],
            )?,
            sweep_errors: IntCounter::new(
                "omg_cp_files_sweep_errors_total",
                "Expired files the sweeper could not delete (store or database errors)",
            )?,
        };
        registry.register(Box::new(metrics.uploads.clone()))?;
        registry.register(Box::new(metrics.uploaded_bytes.clone()))?;
        registry.register(Box::new(metrics.deletes.clone()))?;
        registry.register(Box::new(metrics.sweep_errors.clone()))?;
        Ok(metrics)
    }

    /// Counts an upload by `result`; `bytes` stored when it succeeded.
    pub fn upload(&self, result: &str, bytes: u64) {
        self.uploads.with_label_values(&[result]).inc();
        self.uploaded_bytes.inc_by(bytes);
    }

    /// Counts `n` files deleted `by` a client, an admin or the sweeper.
    pub fn deleted(&self, by: &str, n: u64) {
        self.deletes.with_label_values(&[by]).inc_by(n);
    }

    /// Counts a file the sweeper failed to delete.
    pub fn sweep_error(&self) {
        self.sweep_errors.inc();
    }
}

/// The batch worker's metrics (`omg_cp_batch_*`); cheap to clone.
#[derive(Clone)]
pub struct BatchMetrics {
    /// Lines sent to a data plane.
    pub sent: IntCounter,
    /// Line outcomes: `done`, `failed`, `retried` (429/503, back to pending), `unreachable`
    /// (the data plane could not be reached), `stopped` (failed by cancel, expiry or a budget
    /// stop without being sent).
    pub lines: IntCounterVec,
    /// Batches finalized by final status (`completed`, `cancelled`, `expired`).
    pub finished: IntCounterVec,
    /// Lines being sent now by this control plane.
    pub in_flight: IntGauge,
}

impl BatchMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            sent: IntCounter::new(
                "omg_cp_batch_lines_sent_total",
                "Batch lines sent to a data plane (re-sends included)",
            )?,
            lines: IntCounterVec::new(
                Opts::new(
                    "omg_cp_batch_lines_total",
                    "Batch line outcomes (done, failed, retried, unreachable, stopped)",
                ),
                &["outcome"],
            )?,
            finished: IntCounterVec::new(
                Opts::new(
                    "omg_cp_batches_finished_total",
                    "Batches finalized by final status (completed, cancelled, expired)",
                ),
                &["status"],
            )?,
            in_flight: IntGauge::new(
                "omg_cp_batch_lines_in_flight",
                "Batch lines being sent by this control plane",
            )?,
        };
        registry.register(Box::new(metrics.sent.clone()))?;
        registry.register(Box::new(metrics.lines.clone()))?;
        registry.register(Box::new(metrics.finished.clone()))?;
        registry.register(Box::new(metrics.in_flight.clone()))?;
        Ok(metrics)
    }

    /// Counts `n` line outcomes.
    pub fn lines(&self, outcome: &str, n: u64) {
        self.lines.with_label_values(&[outcome]).inc_by(n);
    }
}

/// The retention job's metrics (`omg_cp_retention_*`); cheap to clone.
#[derive(Clone)]
pub struct RetentionMetrics {
    deleted: IntCounterVec,
    passes: IntCounterVec,
    last_success: IntGauge,
}

impl RetentionMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            deleted: IntCounterVec::new(
                Opts::new(
                    "omg_cp_retention_deleted_rows_total",
                    "Rows deleted by the retention job, by table",
                ),
                &["table"],
            )?,
            passes: IntCounterVec::new(
                Opts::new(
                    "omg_cp_retention_passes_total",
                    "Retention passes by result (ok, error, skipped: another control plane ran it)",
                ),
                &["result"],
            )?,
            last_success: IntGauge::new(
                "omg_cp_retention_last_success_timestamp_seconds",
                "Unix time of the last retention pass that completed",
            )?,
        };
        registry.register(Box::new(metrics.deleted.clone()))?;
        registry.register(Box::new(metrics.passes.clone()))?;
        registry.register(Box::new(metrics.last_success.clone()))?;
        Ok(metrics)
    }

    /// Counts rows deleted from `table`.
    pub fn deleted(&self, table: &str, rows: u64) {
        self.deleted.with_label_values(&[table]).inc_by(rows);
    }

    /// Counts a pass by `result` (`ok` also sets the last-success time).
    pub fn pass(&self, result: &str) {
        self.passes.with_label_values(&[result]).inc();
        if result == "ok" {
            self.last_success.set(chrono::Utc::now().timestamp());
        }
    }
}

/// The snapshot publisher's metrics (`omg_cp_snapshot_*`); cheap to clone (shared handles).
#[derive(Clone)]
pub struct SnapshotMetrics {
    version: IntGauge,
    bytes: IntGauge,
    publishes: IntCounterVec,
    build_seconds: Histogram,
}

impl SnapshotMetrics {
    /// Records a snapshot publication.
    pub fn published(&self, version: u64, bytes: usize, took: std::time::Duration) {
        self.version.set(i64::try_from(version).unwrap_or(i64::MAX));
        self.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.publishes.with_label_values(&["ok"]).inc();
        self.build_seconds.observe(took.as_secs_f64());
    }

    /// Counts a failed publication.
    pub fn failed(&self) {
        self.publishes.with_label_values(&["error"]).inc();
    }
}

/// The usage consumer's metrics (`omg_cp_usage_*`); cheap to clone (shared handles).
#[derive(Clone)]
pub struct UsageMetrics {
    /// Requests stored (new rows).
    pub ingested: IntCounter,
    /// Events already stored (same `event_id`), skipped.
    pub duplicates: IntCounter,
    /// Stream entries parked in `usage_dead_letters` (counted once per entry).
    pub dead_lettered: IntCounter,
    /// Failed attempts, by `kind` (`redis`, `database`).
    pub errors: IntCounterVec,
    /// Entries taken over from idle consumers.
    pub reclaimed: IntCounter,
    /// Seconds per batch, from decoding to acknowledgement.
    pub batch_duration: Histogram,
    /// Entries delivered to a consumer and not yet acknowledged (the group's pending list).
    pub pending: IntGauge,
    /// Entries in the stream, that is not yet ingested (ingested ones are deleted).
    pub stream_length: IntGauge,
}

impl UsageMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            ingested: IntCounter::new(
                "omg_cp_usage_ingested_total",
                "Usage events stored as new request rows",
            )?,
            duplicates: IntCounter::new(
                "omg_cp_usage_duplicates_total",
                "Usage events skipped because their event_id was already stored",
            )?,
            dead_lettered: IntCounter::new(
                "omg_cp_usage_dead_lettered_total",
                "Usage stream entries parked in usage_dead_letters",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "omg_cp_usage_ingest_errors_total",
                    "Failed usage ingestion attempts by kind (redis, database); retried",
                ),
                &["kind"],
            )?,
            reclaimed: IntCounter::new(
                "omg_cp_usage_reclaimed_total",
                "Usage entries taken over from idle consumers",
            )?,
            batch_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "omg_cp_usage_batch_duration_seconds",
                    "Usage batch processing time, from decoding to acknowledgement",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            pending: IntGauge::new(
                "omg_cp_usage_pending",
                "Usage entries delivered to a consumer and not yet acknowledged",
            )?,
            stream_length: IntGauge::new(
                "omg_cp_usage_stream_length",
                "Usage entries in the stream (not yet ingested)",
            )?,
        };
        registry.register(Box::new(metrics.ingested.clone()))?;
        registry.register(Box::new(metrics.duplicates.clone()))?;
        registry.register(Box::new(metrics.dead_lettered.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.reclaimed.clone()))?;
        registry.register(Box::new(metrics.batch_duration.clone()))?;
        registry.register(Box::new(metrics.pending.clone()))?;
        registry.register(Box::new(metrics.stream_length.clone()))?;
        Ok(metrics)
    }
}

/// The budget alert evaluator's metrics (`omg_cp_alerts_*`); cheap to clone.
#[derive(Clone)]
pub struct AlertMetrics {
    /// Delivery attempts by `channel` (email, webhook), `level` (warning, exceeded) and
    /// `outcome` (sent, failed, refused).
    pub sent: IntCounterVec,
    /// Tenant evaluations by `trigger` (ingest, sweep).
    pub evaluations: IntCounterVec,
    /// Evaluations that failed (database errors); retried by the next sweep.
    pub errors: IntCounter,
    /// Tenant notifications from usage ingestion dropped because the evaluator's queue was
    /// full (the next sweep covers them).
    pub dropped: IntCounter,
    /// Seconds per sweep.
    pub sweep_duration: Histogram,
}

impl AlertMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            sent: IntCounterVec::new(
                Opts::new(
                    "omg_cp_alerts_sent_total",
                    "Budget alert delivery attempts by channel, level and outcome (sent, failed, refused)",
                ),
                &["channel", "level", "outcome"],
            )?,
            evaluations: IntCounterVec::new(
                Opts::new(
                    "omg_cp_alerts_evaluations_total",
                    "Tenant budget evaluations by trigger (ingest, sweep)",
                ),
                &["trigger"],
            )?,
            errors: IntCounter::new(
                "omg_cp_alerts_evaluation_errors_total",
                "Budget evaluations that failed (retried by the next sweep)",
            )?,
            dropped: IntCounter::new(
                "omg_cp_alerts_queue_dropped_total",
                "Tenant notifications dropped because the alert queue was full (the sweep covers them)",
            )?,
            sweep_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "omg_cp_alerts_sweep_duration_seconds",
                    "Time to evaluate every tenant with spend in its window",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )?,
        };
        registry.register(Box::new(metrics.sent.clone()))?;
        registry.register(Box::new(metrics.evaluations.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.sweep_duration.clone()))?;
        Ok(metrics)
    }
}

impl SnapshotMetrics {
    /// Registers the snapshot publisher's metrics in `registry`.
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let snapshot_version = IntGauge::new(
            "omg_cp_snapshot_version",
            "Version of the last snapshot published to Redis",
        )?;
        let snapshot_bytes = IntGauge::new(
            "omg_cp_snapshot_bytes",
            "Size of the last sealed snapshot published",
        )?;
        let snapshot_publishes = IntCounterVec::new(
            Opts::new(
                "omg_cp_snapshot_publishes_total",
                "Snapshot publications by result (ok, error)",
            ),
            &["result"],
        )?;
        let snapshot_build_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "omg_cp_snapshot_publish_duration_seconds",
                "Time to read, build, seal and publish a snapshot",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        registry.register(Box::new(snapshot_version.clone()))?;
        registry.register(Box::new(snapshot_bytes.clone()))?;
        registry.register(Box::new(snapshot_publishes.clone()))?;
        registry.register(Box::new(snapshot_build_seconds.clone()))?;
        Ok(Self {
            version: snapshot_version,
            bytes: snapshot_bytes,
            publishes: snapshot_publishes,
            build_seconds: snapshot_build_seconds,
        })
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "omg_cp_http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "omg_cp_http_request_duration_seconds",
                "HTTP request latency by route pattern",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )?;
        let pool_connections = IntGauge::new(
            "omg_cp_db_pool_connections",
            "Postgres connections open in the pool",
        )?;
        let pool_idle = IntGauge::new(
            "omg_cp_db_pool_idle_connections",
            "Idle Postgres connections in the pool",
        )?;
        let internal_refused = prometheus::IntCounter::new(
            "omg_cp_internal_refused_total",
            "Requests on the internal listener refused for a missing, invalid, expired or replayed identity",
        )?;
        registry.register(Box::new(internal_refused.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_idle.clone()))?;
        let snapshots = SnapshotMetrics::new(&registry)?;
        let usage = UsageMetrics::new(&registry)?;
        let alerts = AlertMetrics::new(&registry)?;
        let retention = RetentionMetrics::new(&registry)?;
        let files = FilesMetrics::new(&registry)?;
        let batches = BatchMetrics::new(&registry)?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool_connections,
            pool_idle,
            snapshots,
            internal_refused,
            usage,
            alerts,
            retention,
            files,
            batches,
        })
    }

    /// Records one request.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// Counts a refused internal request.
    pub fn internal_refused(&self) {
        self.internal_refused.inc();
    }

    /// Updates the pool gauges.
    pub fn set_pool(&self, connections: u32, idle: u32) {
        self.pool_connections.set(i64::from(connections));
        self.pool_idle.set(i64::from(idle));
    }

    /// The snapshot publisher's metrics.
    pub fn snapshots(&self) -> &SnapshotMetrics {
        &self.snapshots
    }

    /// The usage consumer's metrics.
    pub fn usage(&self) -> &UsageMetrics {
        &self.usage
    }

    /// The alert evaluator's metrics.
    pub fn alerts(&self) -> &AlertMetrics {
        &self.alerts
    }

    /// The retention job's metrics.
    pub fn retention(&self) -> &RetentionMetrics {
        &self.retention
    }

    /// The files service's metrics.
    pub fn files(&self) -> &FilesMetrics {
        &self.files
    }

    /// The batch worker's metrics.
    pub fn batches(&self) -> &BatchMetrics {
        &self.batches
    }

    /// The text exposition.
    pub fn render(&self) -> Result<String, String> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| e.to_string())?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}
