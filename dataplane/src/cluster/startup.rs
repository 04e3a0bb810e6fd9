//! The first snapshot of a cluster-mode data plane: Redis, else the disk cache, else wait
//! (the process does not listen until it has one).

use std::time::{Duration, Instant};

use super::{read_cache, Cluster, Refusal, SnapshotSource};
use crate::snapshot::RuntimeSnapshot;

/// Time between two attempts while no snapshot is available.
const RETRY: Duration = Duration::from_secs(1);
/// An unchanged "still waiting" message is repeated this often.
const REPEAT_NOTE: Duration = Duration::from_secs(30);

/// One start-up attempt.
enum Attempt {
    Got(Box<RuntimeSnapshot>, SnapshotSource),
    Fatal(String),
    Missing { redis: String, disk: String },
}

impl Cluster {
    /// Returns the first snapshot to serve and where it came from, waiting (retrying every
    /// second) while neither Redis nor the disk cache has one. `Err` only when waiting cannot
    /// help: the snapshot in Redis was made with another pepper.
    pub async fn first_snapshot(&self) -> Result<(RuntimeSnapshot, SnapshotSource), String> {
        let mut last_note: Option<(String, Instant)> = None;
        loop {
            match self.attempt().await {
                Attempt::Got(runtime, source) => {
                    let (tenants, keys, models) = runtime.counts();
                    tracing::info!(
                        source = source.as_str(),
                        version = runtime.version,
                        tenants,
                        keys,
                        models,
                        "first snapshot loaded"
                    );
                    self.status.applied(source, runtime.version);
                    return Ok((*runtime, source));
                }
                Attempt::Fatal(message) => return Err(message),
                Attempt::Missing { redis, disk } => {
                    let note = format!("{redis}; {disk}");
                    let repeat = last_note
                        .as_ref()
                        .is_none_or(|(last, at)| *last != note || at.elapsed() >= REPEAT_NOTE);
                    if repeat {
                        tracing::warn!(
                            redis = %redis,
                            disk = %disk,
                            "no snapshot yet, so not listening: start the control plane (it publishes the \
                             snapshot), or check `redis.url`, `cluster.snapshot_key` and \
                             `security.encryption_keys`; retrying every second"
                        );
                        last_note = Some((note, Instant::now()));
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// One attempt: the disk cache is opened first, as the floor of what Redis may offer
    /// (not older, not more than `cluster.snapshot_max_version_jump` above); Redis's snapshot
    /// wins when acceptable, else the cache serves.
    async fn attempt(&self) -> Attempt {
        let (cached, disk) = self.cached();
        let floor = cached.as_ref().map(|runtime| runtime.version);
        let target = self.status.target().to_owned();
        let redis = match self.fetch_once().await {
            Ok(Some(sealed)) => {
                self.status.fetched();
                let opened = self.open(&sealed).and_then(|runtime| {
                    match floor.map(|floor| self.check_version(floor, runtime.version)) {
                        Some(Err(refusal)) => Err(refusal),
                        _ => Ok(runtime),
                    }
                });
                match opened {
                    Ok(runtime) => {
                        self.persist(sealed).await;
                        return Attempt::Got(Box::new(runtime), SnapshotSource::Redis);
                    }
                    Err(Refusal::Pepper) => {
                        return Attempt::Fatal(format!(
                            "the snapshot in Redis ({target}, key `{}`) was refused: {}",
                            self.keys.snapshot,
                            Refusal::Pepper
                        ))
                    }
                    Err(refusal) => {
                        let message = format!(
                            "the snapshot in Redis ({target}, key `{}`) was refused: {refusal}",
                            self.keys.snapshot
                        );
                        self.status.refused(message.clone());
                        message
                    }
                }
            }
            Ok(None) => {
                self.status.fetched();
                format!(
                    "Redis ({target}) holds no snapshot under `{}` yet",
                    self.keys.snapshot
                )
            }
            Err(error) => {
                self.status.set_connected(false);
                let message = format!("Redis ({target}) is unreachable: {error}");
                self.status.error(message.clone());
                message
            }
        };
        match cached {
            Some(runtime) => Attempt::Got(runtime, SnapshotSource::Disk),
            None => Attempt::Missing { redis, disk },
        }
    }

    /// The disk cache's snapshot, or why there is none.
    fn cached(&self) -> (Option<Box<RuntimeSnapshot>>, String) {
        let path = self.cache_path.display().to_string();
        match read_cache(&self.cache_path) {
            Ok(Some(sealed)) => match self.open(&sealed) {
                Ok(runtime) => (Some(Box::new(runtime)), String::new()),
                Err(refusal) => {
                    let message = format!("the cached snapshot `{path}` was refused: {refusal}");
                    self.status.refused(message.clone());
                    (None, message)
                }
            },
            Ok(None) => (None, format!("no cached snapshot at `{path}`")),
            Err(error) => {
                let message = format!("cannot read the cached snapshot `{path}`: {error}");
                self.status.failed(message.clone());
                (None, message)
            }
        }
    }
}
