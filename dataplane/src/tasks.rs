//! Named, supervised background tasks of the data plane. Spawn through [`spawn_named`] (or
//! [`spawn_named_on`] with a runtime handle) instead of a bare `tokio::spawn`, so that a task
//! that panics is logged with its name and counted, and its end is traced. A panic still
//! reaches the task's `JoinHandle` as before.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Tasks that panicked since the process started.
static PANICKED: AtomicU64 = AtomicU64::new(0);

/// Spawns `future` on the current runtime as the task `name`. Panics (like `tokio::spawn`)
/// outside a runtime.
pub fn spawn_named<F>(name: &'static str, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_named_on(&Handle::current(), name, future)
}

/// Spawns `future` on `runtime` as the task `name`.
pub fn spawn_named_on<F>(runtime: &Handle, name: &'static str, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // The one place a task is spawned: wrapped in `supervised`.
    #[allow(clippy::disallowed_methods)]
    runtime.spawn(supervised(name, future))
}

/// How many named tasks have panicked since the process started.
pub fn panicked() -> u64 {
    PANICKED.load(Ordering::Relaxed)
}

/// Runs `future`; logs and counts a panic, then lets it go on unwinding (so the task's
/// `JoinHandle` still sees it).
async fn supervised<F: Future>(name: &'static str, future: F) -> F::Output {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(output) => {
            tracing::trace!(task = name, "task ended");
            output
        }
        Err(panic) => {
            PANICKED.fetch_add(1, Ordering::Relaxed);
            tracing::error!(task = name, panic = panic_message(&*panic), "task panicked");
            std::panic::resume_unwind(panic)
        }
    }
}

/// The message a panic was raised with, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_returns_its_output() {
        let task = spawn_named("answer", async { 42 });
        assert_eq!(task.await.ok(), Some(42));
    }

    #[tokio::test]
    async fn a_panic_is_counted_and_still_reaches_the_handle() {
        let before = panicked();
        let task = spawn_named("doomed", async {
            if panicked() < u64::MAX {
                panic!("boom");
            }
        });
        let joined = task.await;
        assert!(joined.is_err_and(|error| error.is_panic()));
        assert!(panicked() > before);
    }
}
