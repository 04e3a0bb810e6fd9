//! The outside view of a [`Shipper`](super::shipper::Shipper): its status for `/healthz` and its stop control, usable
//! from any thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::spool::Spool;

/// The shipper's state as `/healthz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShipperStatus {
    /// The usage stream.
    pub stream: String,
    /// `run` is going (false before it starts and after it returns).
    pub running: bool,
    /// The last exchange with Redis succeeded.
    pub connected: bool,
    /// Bytes spooled and not yet acknowledged by the stream.
    pub pending_bytes: u64,
    /// Bytes of the spool on disk (bounded by `cluster.spool_max_mb`).
    pub spool_bytes: u64,
    /// Records spooled by this process.
    pub spooled_total: u64,
    /// Records acknowledged by the stream, by this process.
    pub shipped_total: u64,
    /// Records refused by a full spool (each logged at error level).
    pub spool_full_total: u64,
    /// Records that could not be written to the spool, or were torn (each logged).
    pub write_errors_total: u64,
    /// Failed shipping rounds.
    pub ship_errors_total: u64,
    /// How long the stream has been failing, when it is.
    pub outage_seconds: Option<u64>,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

/// Status and stop control of a [`Shipper`](super::shipper::Shipper), usable from any thread.
#[derive(Clone)]
pub struct ShipperHandle {
    pub(super) shared: Arc<Shared>,
}

/// What the shipper and its handles share.
pub(super) struct Shared {
    pub stream: String,
    pub spool: Arc<Spool>,
    pub running: AtomicBool,
    pub connected: AtomicBool,
    pub shipped: AtomicU64,
    pub errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub outage_since: Mutex<Option<Instant>>,
    pub stop: watch::Sender<bool>,
    pub stopped: Mutex<bool>,
    stopped_changed: Condvar,
}

impl Shared {
    pub fn new(stream: &str, spool: Arc<Spool>) -> Self {
        Self {
            stream: stream.to_owned(),
            spool,
            running: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            shipped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            outage_since: Mutex::new(None),
            stop: watch::channel(false).0,
            stopped: Mutex::new(false),
            stopped_changed: Condvar::new(),
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ShipperHandle {
    /// The current status.
    pub fn status(&self) -> ShipperStatus {
        let shared = &self.shared;
        let spool = &shared.spool;
        ShipperStatus {
            stream: shared.stream.clone(),
            running: shared.running.load(Ordering::Acquire),
            connected: shared.connected.load(Ordering::Acquire),
            pending_bytes: spool.pending_bytes(),
            spool_bytes: spool.disk_bytes(),
            spooled_total: spool.spooled_total(),
            shipped_total: shared.shipped.load(Ordering::Relaxed),
            spool_full_total: spool.full_total(),
            write_errors_total: spool.write_errors_total(),
            ship_errors_total: shared.errors.load(Ordering::Relaxed),
            outage_seconds: lock(&shared.outage_since).map(|since| since.elapsed().as_secs()),
            last_error: lock(&shared.last_error).clone(),
        }
    }

    /// Asks `run` to ship what is pending (for at most `drain_timeout`) and return. Call it
    /// once no request is in flight any more, so their records are shipped too.
    pub fn shutdown(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Blocks until `run` has returned, or `timeout`; true if it has. For the drain watcher
    /// thread: `shutdown()`, then `wait_stopped(drain_timeout + margin)`, then exit.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let stopped = lock(&self.shared.stopped);
        let (stopped, _) = self
            .shared
            .stopped_changed
            .wait_timeout_while(stopped, timeout, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *stopped
    }
}

impl std::fmt::Debug for ShipperHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ShipperHandle")
            .field(&self.status())
            .finish()
    }
}

/// Marks the shipper stopped however `run` ends (returned or dropped).
pub(super) struct StoppedGuard(pub Arc<Shared>);

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
        self.0.connected.store(false, Ordering::Release);
        *lock(&self.0.stopped) = true;
        self.0.stopped_changed.notify_all();
    }
}
