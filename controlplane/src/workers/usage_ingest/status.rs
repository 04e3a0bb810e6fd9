//! The consumer's status, for `/healthz`: counters and the last outcome, updated by the
//! consumer, read by handlers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Where the consumer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IngestState {
    /// Not started yet (or not connected yet).
    Starting,
    /// Reading and storing.
    Ok,
    /// Redis cannot be reached (or refuses the stream commands); retrying.
    RedisUnavailable,
    /// Storing a batch failed; its entries stay pending and are retried.
    DatabaseUnavailable,
    /// Stopped (shutdown).
    Stopped,
}

/// The consumer's status, shared with `/healthz`. Create one, hand a clone of the `Arc` to
/// [`spawn`](super::spawn) (or [`UsageIngest::new`](super::UsageIngest::new)) and keep the
/// other for [`IngestStatus::health`].
#[derive(Debug)]
pub struct IngestStatus {
    ingested: AtomicU64,
    duplicates: AtomicU64,
    dead_lettered: AtomicU64,
    pending: AtomicU64,
    stream_length: AtomicU64,
    inner: Mutex<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    state: IngestState,
    consumer: Option<String>,
    last_batch_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
}

/// A point-in-time view of [`IngestStatus`], for `/healthz`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestHealth {
    pub state: IngestState,
    /// Connected to Redis, with the consumer group in place.
    pub connected: bool,
    /// This process's consumer name.
    pub consumer: Option<String>,
    /// When the last batch was stored and acknowledged.
    pub last_batch_at: Option<DateTime<Utc>>,
    /// The last failure (cleared by nothing: compare `last_error_at` with `last_batch_at`).
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Requests stored by this process.
    pub ingested_total: u64,
    /// Events skipped as already stored.
    pub duplicates_total: u64,
    /// Entries parked in `usage_dead_letters` by this process.
    pub dead_lettered_total: u64,
    /// Entries delivered to a consumer of the group and not yet acknowledged (last measured).
    pub pending: u64,
    /// Entries in the stream, i.e. not yet ingested (last measured).
    pub stream_length: u64,
}

impl Default for IngestStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl IngestStatus {
    /// A status in state `starting`.
    pub fn new() -> Self {
        Self {
            ingested: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            stream_length: AtomicU64::new(0),
            inner: Mutex::new(StatusInner {
                state: IngestState::Starting,
                consumer: None,
                last_batch_at: None,
                last_error: None,
                last_error_at: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StatusInner> {
        // Nothing panics while holding it; a poisoned lock still holds consistent values.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current view.
    pub fn health(&self) -> IngestHealth {
        let inner = self.lock();
        IngestHealth {
            state: inner.state,
            connected: matches!(
                inner.state,
                IngestState::Ok | IngestState::DatabaseUnavailable
            ),
            consumer: inner.consumer.clone(),
            last_batch_at: inner.last_batch_at,
            last_error: inner.last_error.clone(),
            last_error_at: inner.last_error_at,
            ingested_total: self.ingested.load(Ordering::Relaxed),
            duplicates_total: self.duplicates.load(Ordering::Relaxed),
            dead_lettered_total: self.dead_lettered.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            stream_length: self.stream_length.load(Ordering::Relaxed),
        }
    }

    pub(super) fn set_consumer(&self, consumer: &str) {
        self.lock().consumer = Some(consumer.to_owned());
    }

    pub(super) fn set_state(&self, state: IngestState) {
        self.lock().state = state;
    }

    pub(super) fn failed(&self, state: IngestState, error: &str) {
        let mut inner = self.lock();
        inner.state = state;
        inner.last_error = Some(error.to_owned());
        inner.last_error_at = Some(Utc::now());
    }

    /// Counts a committed batch.
    pub(super) fn stored(&self, inserted: usize, duplicates: usize, dead_lettered: usize) {
        self.ingested.fetch_add(inserted as u64, Ordering::Relaxed);
        self.duplicates
            .fetch_add(duplicates as u64, Ordering::Relaxed);
        self.dead_lettered
            .fetch_add(dead_lettered as u64, Ordering::Relaxed);
    }

    /// A batch was acknowledged.
    pub(super) fn acknowledged(&self) {
        self.lock().last_batch_at = Some(Utc::now());
    }

    pub(super) fn set_backlog(&self, pending: u64, stream_length: u64) {
        self.pending.store(pending, Ordering::Relaxed);
        self.stream_length.store(stream_length, Ordering::Relaxed);
    }
}
