//! Shutdown: the signal handlers (SIGTERM drains, SIGINT stops, SIGQUIT upgrades) and the
//! drain watcher that exits once no request is in flight.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, Server, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::proxy::State;
use crate::usage::shipper::ShipperHandle;

/// Longest wait for the usage shipper at shutdown (its own drain is 5 s).
const USAGE_DRAIN: Duration = Duration::from_secs(6);

/// SIGTERM: flip readiness, wait `graceful_shutdown_delay`, then let Pingora stop accepting
/// and drain. SIGINT: exit now. SIGQUIT: Pingora's graceful upgrade.
pub(super) struct Signals {
    pub(super) state: Arc<State>,
    pub(super) delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!(
                "cannot install signal handlers; the process will only stop when killed"
            );
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(delay_ms = self.delay.as_millis() as u64, "SIGTERM: not ready any more; draining");
                self.state.draining.store(true, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                ShutdownSignal::FastShutdown
            }
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}

/// Once Pingora has stopped accepting, exit as soon as no request is in flight (usage records
/// are written before a request's ctx is dropped), instead of sleeping the whole grace period.
pub(super) fn spawn_drain_watcher(
    server: &Server,
    state: Arc<State>,
    usage: Option<ShipperHandle>,
) {
    let mut phases = server.watch_execution_phase();
    let spawned = std::thread::Builder::new()
        .name("drain-watcher".to_owned())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => {
                    let started = std::time::Instant::now();
                    while state.inflight.load(Ordering::SeqCst) > 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "drained: no request in flight"
                    );
                    if let Some(usage) = &usage {
                        // Ship what is pending (bounded); the rest waits in the spool.
                        usage.shutdown();
                        if !usage.wait_stopped(USAGE_DRAIN) {
                            tracing::warn!("usage shipper still busy; what is left stays in the spool for the next start");
                        }
                    }
                    tracing::info!("exiting");
                    std::process::exit(0);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "drain watcher not started; shutdown will wait the whole grace period");
    }
}
