//! What the snapshot bus is doing, for `/healthz` and the metrics. Updated by the start-up
//! and the follower; read by the admin listener. Holds no secret: error messages are scrubbed
//! of the Redis password before they get here, and the target is `host:port/db`.

use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};

use crate::metrics::Metrics;

/// Where the snapshot being served came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSource {
    /// Fetched from Redis.
    Redis,
    /// Read from the disk cache at start-up (Redis was unreachable or empty).
    Disk,
}

impl SnapshotSource {
    /// `redis` or `disk`.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotSource::Redis => "redis",
            SnapshotSource::Disk => "disk",
        }
    }
}

/// The bus state.
#[derive(Debug)]
pub struct BusStatus {
    /// `host:port/db` of Redis (no credentials).
    target: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    connected: bool,
    source: Option<SnapshotSource>,
    /// Last time Redis answered a version check or a fetch (Unix ms).
    last_fetch_ms: Option<i64>,
    /// Last time a snapshot was applied (Unix ms).
    last_applied_ms: Option<i64>,
    last_error: Option<String>,
    last_error_ms: Option<i64>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or(Value::Null, |at| Value::String(at.to_rfc3339()))
}

impl BusStatus {
    /// A status for Redis at `target` (`host:port/db`).
    pub fn new(target: String) -> Self {
        Metrics::global().bus_connected.set(0);
        Self {
            target,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `host:port/db` of Redis.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether Redis answered last time it was asked.
    pub fn connected(&self) -> bool {
        self.lock().connected
    }

    /// Where the snapshot being served came from.
    pub fn source(&self) -> Option<SnapshotSource> {
        self.lock().source
    }

    /// The last error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Redis is reachable (or not).
    pub(super) fn set_connected(&self, connected: bool) {
        Metrics::global().bus_connected.set(i64::from(connected));
        self.lock().connected = connected;
    }

    /// Redis answered a version check or a fetch.
    pub(super) fn fetched(&self) {
        Metrics::global().bus_connected.set(1);
        let mut inner = self.lock();
        inner.connected = true;
        inner.last_fetch_ms = Some(now_ms());
    }

    /// A snapshot was applied.
    pub(super) fn applied(&self, source: SnapshotSource, version: u64) {
        let metrics = Metrics::global();
        metrics
            .snapshot_updates
            .with_label_values(&["applied"])
            .inc();
        metrics
            .snapshot_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        let mut inner = self.lock();
        inner.source = Some(source);
        inner.last_applied_ms = Some(now_ms());
    }

    /// A snapshot was refused (its reason is logged by the caller).
    pub(super) fn refused(&self, message: String) {
        Metrics::global()
            .snapshot_updates
            .with_label_values(&["refused"])
            .inc();
        self.failed(message);
    }

    /// Redis failed (connection or command).
    pub(super) fn error(&self, message: String) {
        Metrics::global()
            .snapshot_updates
            .with_label_values(&["error"])
            .inc();
        self.failed(message);
    }

    /// Records an error without counting an update (e.g. the disk cache could not be
    /// written).
    pub(super) fn failed(&self, message: String) {
        let now = now_ms();
        Metrics::global().snapshot_last_error.set(now / 1000);
        let mut inner = self.lock();
        inner.last_error = Some(message);
        inner.last_error_ms = Some(now);
    }

    /// The `bus` object of `/healthz`, given the snapshot being served.
    pub fn to_json(&self, version: u64, generated_at_ms: i64) -> Value {
        let inner = self.lock();
        json!({
            "redis": self.target,
            "connected": inner.connected,
            "last_fetch_at": rfc3339(inner.last_fetch_ms),
            "last_applied_at": rfc3339(inner.last_applied_ms),
            "last_error": inner.last_error,
            "last_error_at": rfc3339(inner.last_error_ms),
            "snapshot_source": inner.source.map(SnapshotSource::as_str),
            "snapshot_version": version,
            "snapshot_age_seconds": ((now_ms() - generated_at_ms).max(0)) / 1000,
        })
    }
}
