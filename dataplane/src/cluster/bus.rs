//! Redis I/O of the snapshot bus: connections, the start-up fetch, and the follower (pub/sub
//! plus polling, reconnecting with backoff).

use std::time::Duration;

use futures_util::StreamExt;
use omg_shared::cluster::sealed_version;
use redis::aio::{MultiplexedConnection, PubSub};
use redis::AsyncConnectionConfig;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{Cluster, Refusal, SnapshotSource};
use crate::snapshot::SnapshotStore;

/// Time allowed to open a connection (and to subscribe).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for an answer; generous because a snapshot can be tens of MB.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnection delays: doubled after each failure, with jitter, up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Cluster {
    /// A connection for commands.
    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|error| self.scrub(error))
    }

    /// A dedicated connection subscribed to the channel of new versions.
    async fn subscription(&self) -> Result<PubSub, String> {
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.keys.snapshot_channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, subscribe).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(error)) => Err(self.scrub(error)),
            Err(_) => Err(format!(
                "no answer within {}s (subscribe)",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }

    /// `GET <snapshot_key>`.
    async fn get_sealed(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Option<Vec<u8>>, String> {
        redis::cmd("GET")
            .arg(&self.keys.snapshot)
            .query_async(conn)
            .await
            .map_err(|error| self.scrub(error))
    }

    /// `GET <snapshot_key>:version`: `Ok(None)` when unset; `Err(Ok(text))` when it holds
    /// something that is not a version.
    async fn get_version(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Result<Option<u64>, String>, String> {
        let text: Option<String> = redis::cmd("GET")
            .arg(&self.keys.snapshot_version)
            .query_async(conn)
            .await
            .map_err(|error| self.scrub(error))?;
        Ok(match text {
            None => Ok(None),
            Some(text) => text.trim().parse::<u64>().map(Some).map_err(|_| text),
        })
    }

    /// Start-up: connects and reads the sealed snapshot once. `Ok(None)`: Redis answered but
    /// holds none.
    pub(super) async fn fetch_once(&self) -> Result<Option<Vec<u8>>, String> {
        let fetch = async {
            let mut conn = self.connection().await?;
            self.get_sealed(&mut conn).await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT, fetch).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {}s",
                (CONNECT_TIMEOUT + RESPONSE_TIMEOUT).as_secs()
            )),
        }
    }

    /// Follows the bus until `shutdown` turns true (or its sender is gone): applies each newer
    /// snapshot to `store`, announced on the channel or found by polling the version key every
    /// `cluster.snapshot_poll_interval`. When Redis fails, keeps serving and reconnects with
    /// backoff; on reconnection the version is checked at once, so nothing missed is lost.
    pub async fn follow(&self, store: &SnapshotStore, mut shutdown: watch::Receiver<bool>) {
        let mut follower = Follower {
            cluster: self,
            store,
            refused: None,
            bad_version: None,
        };
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let ended = match self.subscription().await {
                Ok(pubsub) => match self.connection().await {
                    Ok(conn) => {
                        backoff = BACKOFF_MIN;
                        self.status.set_connected(true);
                        tracing::info!(
                            redis = %self.status.target(),
                            channel = %self.keys.snapshot_channel,
                            poll_interval_ms = self.poll_interval.as_millis() as u64,
                            "snapshot bus connected"
                        );
                        follower.serve(conn, pubsub, &mut shutdown).await
                    }
                    Err(message) => Ended::Lost(message),
                },
                Err(message) => Ended::Lost(message),
            };
            let message = match ended {
                Ended::Shutdown => return,
                Ended::Lost(message) => message,
            };
            self.status.set_connected(false);
            self.status
                .error(format!("redis {}: {message}", self.status.target()));
            let delay = backoff + backoff.mul_f64(rand::random::<f64>() / 2.0);
            tracing::warn!(
                redis = %self.status.target(),
                error = %message,
                retry_in_ms = delay.as_millis() as u64,
                serving_version = store.load().version,
                "snapshot bus unavailable; still serving the current snapshot"
            );
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(delay) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Why the follower left a connection.
enum Ended {
    Shutdown,
    Lost(String),
}

/// The follower's state across connections.
struct Follower<'a> {
    cluster: &'a Cluster,
    store: &'a SnapshotStore,
    /// The last version refused, so a value that stays in Redis is reported once.
    refused: Option<u64>,
    /// The last unreadable content of the version key, reported once.
    bad_version: Option<String>,
}

impl Follower<'_> {
    async fn serve(
        &mut self,
        mut conn: MultiplexedConnection,
        pubsub: PubSub,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        let mut messages = pubsub.into_on_message();
        // The first tick is immediate: catch up with whatever was published meanwhile.
        let mut poll = tokio::time::interval(self.cluster.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let announced = tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Ended::Shutdown;
                    }
                    continue;
                }
                message = messages.next() => match message {
                    None => return Ended::Lost("the pub/sub connection closed".to_owned()),
                    Some(message) => {
                        let payload: String = message.get_payload().unwrap_or_default();
                        let version = payload.trim().parse::<u64>().ok();
                        tracing::debug!(payload = %payload, "snapshot version announced");
                        // An unreadable announcement still prompts a check of the version key.
                        version
                    }
                },
                _ = poll.tick() => None,
            };
            if let Err(message) = self.check(&mut conn, announced).await {
                return Ended::Lost(message);
            }
        }
    }

    /// Looks at the announced version (or reads the version key) and applies it when newer.
    /// `Err` only when Redis failed.
    async fn check(
        &mut self,
        conn: &mut MultiplexedConnection,
        announced: Option<u64>,
    ) -> Result<(), String> {
        let version = match announced {
            Some(version) => version,
            None => {
                let read = self.cluster.get_version(conn).await?;
                self.cluster.status.fetched();
                match read {
                    Ok(Some(version)) => version,
                    Ok(None) => return Ok(()),
                    Err(text) => {
                        if self.bad_version.as_deref() != Some(text.as_str()) {
                            tracing::error!(
                                key = %self.cluster.keys.snapshot_version,
                                "the version key does not hold a version number; ignoring it"
                            );
                            self.cluster.status.refused(format!(
                                "`{}` does not hold a version number",
                                self.cluster.keys.snapshot_version
                            ));
                            self.bad_version = Some(text);
                        }
                        return Ok(());
                    }
                }
            }
        };
        if !self.is_candidate(version) {
            return Ok(());
        }
        let Some(sealed) = self.cluster.get_sealed(conn).await? else {
            tracing::debug!(version, "version announced but no snapshot stored yet");
            return Ok(());
        };
        self.cluster.status.fetched();
        let version = match sealed_version(&sealed) {
            Ok(version) => version,
            Err(error) => {
                self.refuse(version, error.into());
                return Ok(());
            }
        };
        if !self.is_candidate(version) {
            return Ok(());
        }
        match self.cluster.open(&sealed) {
            Ok(runtime) => {
                let (tenants, keys, models) = runtime.counts();
                match self.store.swap(runtime) {
                    Ok(version) => {
                        self.cluster.status.applied(SnapshotSource::Redis, version);
                        tracing::info!(version, tenants, keys, models, "snapshot applied");
                        self.cluster.persist(sealed).await;
                    }
                    Err(_) => {
                        let current = self.store.load().version;
                        self.refuse(version, Refusal::Older { version, current });
                    }
                }
            }
            Err(refusal) => self.refuse(version, refusal),
        }
        Ok(())
    }

    /// Whether `version` is worth fetching: newer than the one served, within
    /// `cluster.snapshot_max_version_jump` of it, and not refused already. Others are
    /// refused here (once).
    fn is_candidate(&mut self, version: u64) -> bool {
        let current = self.store.load().version;
        if version == current || self.refused == Some(version) {
            return false;
        }
        match self.cluster.check_version(current, version) {
            Ok(()) => true,
            Err(refusal) => {
                self.refuse(version, refusal);
                false
            }
        }
    }

    fn refuse(&mut self, version: u64, refusal: Refusal) {
        if self.refused == Some(version) {
            return;
        }
        self.refused = Some(version);
        let serving = self.store.load().version;
        tracing::error!(
            version,
            serving_version = serving,
            reason = %refusal,
            "snapshot refused; still serving the last good one"
        );
        self.cluster
            .status
            .refused(format!("snapshot version {version} refused: {refusal}"));
    }
}
