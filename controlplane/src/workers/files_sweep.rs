//! The files sweeper (`files.sweep_interval`, `files.sweep_batch_size`): every interval it
//! deletes the files whose `expires_at` has passed — blob first, then the row marked
//! `deleted` — a batch at a time until a batch comes back short. Rows are claimed with
//! `FOR UPDATE SKIP LOCKED`, so control-plane replicas sweeping at once share the work
//! instead of repeating it. A blob the store refuses to delete (bad credentials, missing
//! permission) is logged with the file id, counted (`omg_cp_files_sweep_errors_total`) and
//! retried at the next sweep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::files::service::FileService;

/// Longest wait before the first sweep (start-up work goes first).
const FIRST_SWEEP_DELAY: Duration = Duration::from_secs(60);

/// Runs sweep steps until one deletes fewer than `batch` files or `stopping()`; returns how
/// many files went. An error ends the sweep (logged by the caller).
pub async fn sweep(
    files: &FileService,
    batch: u32,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<u64, crate::files::service::FileError> {
    let mut total = 0u64;
    loop {
        let n = files.sweep_once(batch).await?;
        total = total.saturating_add(u64::from(n));
        if n < batch || stopping() {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Starts the sweeper; it stops at the next step or wait once `stop` turns true.
pub fn spawn(
    files: Arc<FileService>,
    interval: Duration,
    batch: u32,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    crate::tasks::spawn_named("files-sweep", async move {
        let mut wait = interval.min(FIRST_SWEEP_DELAY);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            wait = interval;
            let started = Instant::now();
            let stopping = || *stop.borrow();
            match sweep(&files, batch.max(1), &stopping).await {
                Ok(0) => tracing::debug!("files sweep: nothing expired"),
                Ok(deleted) => tracing::info!(
                    deleted,
                    took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "files sweep deleted expired files"
                ),
                Err(error) => {
                    tracing::error!(%error, "files sweep failed; retried at the next interval")
                }
            }
        }
    })
}
