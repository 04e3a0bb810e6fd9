//! The publisher's handle, held by `AppState`: poke it after a change ([`Publisher::changed`]),
//! read what `/healthz` shows ([`Publisher::status`]). The publisher task records into it.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use omg_shared::snapshot::Snapshot;
use serde::Serialize;
use tokio::sync::Notify;

/// What `/healthz` shows of the publisher.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PublishStatus {
    /// Last version written to Redis.
    pub version: Option<u64>,
    /// When it was written.
    pub published_at: Option<DateTime<Utc>>,
    /// Tenants, keys and aliases in it.
    pub tenants: usize,
    pub keys: usize,
    pub models: usize,
    /// Live data planes counted into it (heartbeats younger than 30 s; at least 1).
    pub live_dataplanes: u32,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// The background publisher's handle: poke it after a change.
#[derive(Default)]
pub struct Publisher {
    changed: Notify,
    status: Mutex<PublishStatus>,
    /// The content hash of the last snapshot published (or found already held).
    last_hash: Mutex<Option<u64>>,
}

impl Publisher {
    /// Asks for a publication after the debounce delay.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// The current status.
    pub fn status(&self) -> PublishStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for the next [`changed`](Self::changed).
    pub(super) async fn poked(&self) {
        self.changed.notified().await;
    }

    /// Whether Redis holds what was published last (`stored`: the version key, parsed) and
    /// its content is `hash`: nothing to publish.
    pub(super) fn holds(&self, hash: u64, stored: Option<Option<u64>>) -> bool {
        let unchanged = self
            .last_hash
            .lock()
            .map(|h| *h == Some(hash))
            .unwrap_or(false);
        let last_version = self.status().version;
        unchanged && matches!(stored, Some(Some(v)) if Some(v) == last_version)
    }

    /// Redis already holds a snapshot of this content (`hash`) at `version`.
    pub(super) fn record_held(&self, hash: u64, version: u64) {
        if let Ok(mut last) = self.last_hash.lock() {
            *last = Some(hash);
        }
        if let Ok(mut status) = self.status.lock() {
            status.version = Some(version);
            status.last_error = None;
        }
    }

    /// `snapshot` (content `hash`) was published.
    pub(super) fn record_published(&self, snapshot: &Snapshot, hash: u64) {
        if let Ok(mut last) = self.last_hash.lock() {
            *last = Some(hash);
        }
        if let Ok(mut status) = self.status.lock() {
            status.version = Some(snapshot.version);
            status.published_at = Some(Utc::now());
            status.tenants = snapshot.tenants.len();
            status.keys = snapshot.keys.len();
            status.models = snapshot.models.len();
            status.live_dataplanes = snapshot.live_dataplanes;
            status.last_error = None;
        }
    }

    /// A publication failed with `message` (shown until the next success).
    pub(super) fn record_error(&self, message: String) {
        if let Ok(mut status) = self.status.lock() {
            status.last_error = Some(message);
            status.last_error_at = Some(Utc::now());
        }
    }
}
