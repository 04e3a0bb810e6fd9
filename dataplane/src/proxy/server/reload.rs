//! Standalone mode's reloader: the snapshot is rebuilt from the config file on SIGHUP and
//! when the file changes; a broken config keeps the last good snapshot.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use omg_shared::config::GatewayConfig;
use omg_shared::keys::KeyHasher;
use omg_shared::snapshot::Snapshot;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::ConfigSource;
use crate::metrics::Metrics;
use crate::proxy::State;
use crate::snapshot::RuntimeSnapshot;

/// How often the config file is checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The pepper keys are hashed with: from `security.api_key_pepper`, else random per process.
pub(super) struct Pepper {
    random: Vec<u8>,
}

impl Pepper {
    pub(super) fn from_config(config: &GatewayConfig) -> Self {
        if config.security.api_key_pepper.is_none() {
            tracing::info!("`security.api_key_pepper` is not set: API keys from the config are hashed with a random per-process pepper");
        }
        Self {
            random: rand::random::<[u8; 32]>().to_vec(),
        }
    }

    pub(super) fn hasher(&self, config: &GatewayConfig) -> KeyHasher {
        match &config.security.api_key_pepper {
            Some(pepper) => KeyHasher::new(pepper.expose().as_bytes()),
            None => KeyHasher::new(&self.random),
        }
    }
}

/// Rebuilds the snapshot on SIGHUP and when the config file changes. A broken config keeps
/// the last good snapshot and says why.
pub(super) struct Reloader {
    source: ConfigSource,
    path: PathBuf,
    state: Arc<State>,
    pepper: Pepper,
    server: omg_shared::config::ServerConfig,
    fingerprint: Mutex<Option<u64>>,
}

impl Reloader {
    /// Follows the file at `path` (read through `source`) for `state`; `config` is what the
    /// server started with.
    pub(super) fn new(
        source: &ConfigSource,
        path: &Path,
        state: Arc<State>,
        pepper: Pepper,
        config: &GatewayConfig,
    ) -> Self {
        Self {
            source: source.clone(),
            path: path.to_owned(),
            state,
            pepper,
            server: config.server.clone(),
            fingerprint: Mutex::new(fingerprint(path)),
        }
    }

    fn reload(&self, reason: &str) {
        let metrics = Metrics::global();
        let result = self
            .source
            .load()
            .map_err(|errors| errors.to_string())
            .and_then(|config| {
                let hasher = self.pepper.hasher(&config);
                let version = self.state.snapshots.load().version + 1;
                let snapshot = Snapshot::from_config(
                    &config,
                    &hasher,
                    version,
                    chrono::Utc::now().timestamp_millis(),
                )
                .map_err(|errors| errors.to_string())?;
                let runtime = RuntimeSnapshot::build(snapshot, hasher)?;
                if serde_json::to_value(&config.server).ok()
                    != serde_json::to_value(&self.server).ok()
                {
                    tracing::warn!(
                        "`server.*` settings changed; they take effect only after a restart"
                    );
                }
                let counts = runtime.counts();
                self.state
                    .snapshots
                    .swap(runtime)
                    .map(|version| (version, counts))
            });
        match result {
            Ok((version, (tenants, keys, models))) => {
                metrics
                    .snapshot_version
                    .set(i64::try_from(version).unwrap_or(i64::MAX));
                metrics.snapshot_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(reason, version, tenants, keys, models, "config reloaded");
            }
            Err(errors) => {
                metrics.snapshot_reloads.with_label_values(&["error"]).inc();
                tracing::error!(reason, path = %self.path.display(), errors = %errors, "config reload failed; still serving the last good config");
            }
        }
    }

    fn file_changed(&self) -> bool {
        let now = fingerprint(&self.path);
        match self.fingerprint.lock() {
            Ok(mut last) if *last != now => {
                *last = now;
                now.is_some()
            }
            _ => false,
        }
    }
}

/// A hash of the file's bytes (`None` when it cannot be read).
fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; reload on file change only");
                None
            }
        };
        let mut tick = tokio::time::interval(RELOAD_POLL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => self.reload("SIGHUP"),
                _ = tick.tick() => {
                    if self.file_changed() {
                        self.reload("file change");
                    }
                }
            }
        }
    }
}
