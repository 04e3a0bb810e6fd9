//! Cluster mode: the data plane follows the snapshots the control plane publishes on Redis
//! instead of building one from its config file. All Redis I/O of the snapshot bus is here.
//!
//! The control plane writes, atomically and only when newer: `SET <snapshot_key> <sealed>`,
//! `SET <snapshot_key>:version <n>`, `PUBLISH <snapshot_key>:published <n>`
//! ([`BusKeys`]). A data plane:
//! - at start-up ([`Cluster::first_snapshot`]) reads the sealed snapshot from Redis, else its
//!   disk cache (`cluster.snapshot_cache_path`), else waits (not listening) until one arrives;
//! - then ([`Cluster::follow`]) listens on the pub/sub channel and also polls the version key
//!   (pub/sub drops messages while disconnected), fetches newer versions, and swaps them in;
//! - opens each one with [`open_snapshot`] (its Ed25519 signature checked against
//!   `cluster.snapshot_public_keys` before anything is decrypted, then authenticated with
//!   `security.encryption_keys`), checks its `key_check` against its own pepper, builds the
//!   [`RuntimeSnapshot`], and persists the sealed bytes to the disk cache (atomic replace,
//!   mode 0600);
//! - refuses a version more than `cluster.snapshot_max_version_jump` above the one served
//!   (at start-up: above the disk cache's), so even a signed snapshot cannot lock it out of
//!   later ones with a huge version.
//!
//! Refused snapshots (unsigned, signed by an unknown key, tampered, older, too far ahead,
//! another pepper, invalid) are logged and counted; the last good one keeps serving.

mod bus;
mod cache;
mod startup;
mod status;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use omg_shared::cluster::{open_snapshot, BusKeys, EnvelopeError, SnapshotVerifier};
use omg_shared::config::GatewayConfig;
use omg_shared::keys::KeyHasher;
use omg_shared::vault::Vault;

pub use cache::{read_cache, write_cache};
pub use status::{BusStatus, SnapshotSource};

use crate::snapshot::RuntimeSnapshot;

/// What cluster mode needs, built once from the config.
pub struct Cluster {
    keys: BusKeys,
    vault: Vault,
    /// `cluster.snapshot_public_keys`.
    verifier: SnapshotVerifier,
    /// `cluster.snapshot_max_version_jump`.
    max_jump: u64,
    hasher: KeyHasher,
    /// `hasher.check_value()`, compared with each snapshot's `key_check`.
    key_check: String,
    client: redis::Client,
    /// The Redis password, if any, to scrub from error messages.
    password: Option<String>,
    cache_path: PathBuf,
    poll_interval: Duration,
    status: std::sync::Arc<BusStatus>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("redis", &self.status.target())
            .field("keys", &self.keys)
            .field("cache_path", &self.cache_path)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// Why a sealed snapshot was not applied.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not a sealed snapshot, not authentic (tampered, or sealed with a key this data plane
    /// does not have), or not parseable.
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    /// Made by a control plane with another pepper: every key would be refused.
    #[error(
        "the snapshot's key digests were made with another pepper: `security.api_key_pepper` \
         differs from the control plane's; give both planes the same value"
    )]
    Pepper,
    /// No `key_check`: not made by a control plane.
    #[error(
        "the snapshot carries no `key_check`, so its pepper cannot be verified (not published \
         by a control plane?)"
    )]
    NoKeyCheck,
    /// Opened, but not servable (schema version, unknown tenant, unsupported provider, …).
    #[error("the snapshot is invalid: {0}")]
    Invalid(String),
    /// Too far above the one being served (`cluster.snapshot_max_version_jump`).
    #[error(
        "version {version} is more than {bound} above the version {current} being served \
         (`cluster.snapshot_max_version_jump`); see docs/cluster.md, \"Recovery\""
    )]
    Jump {
        /// The refused version.
        version: u64,
        /// The version being served.
        current: u64,
        /// The configured bound.
        bound: u64,
    },
    /// Older than the one being served (no rollback).
    #[error("version {version} is older than the version {current} being served")]
    Older {
        /// The refused version.
        version: u64,
        /// The version being served.
        current: u64,
    },
}

impl Cluster {
    /// From a validated config with `redis.url` set. Errors are worded for the operator.
    pub fn from_config(config: &GatewayConfig) -> Result<Self, String> {
        let url = config
            .redis
            .url
            .as_ref()
            .ok_or("cluster mode needs `redis.url` (or `ROUTER_REDIS_URL` / `--redis-url`)")?;
        let client = redis::Client::open(url.expose()).map_err(|error| {
            let message = error.to_string().replace(url.expose(), "****");
            format!(
                "`redis.url` is not a usable Redis URL: {message} (use `redis://[:password@]host:6379/0`; \
                 TLS `rediss://` is not supported by this build)"
            )
        })?;
        let info = client.get_connection_info();
        let target = format!("{}/{}", info.addr(), info.redis_settings().db());
        let password = info
            .redis_settings()
            .password()
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        let pepper =
            config.security.api_key_pepper.as_ref().ok_or(
                "cluster mode needs `security.api_key_pepper` (the control plane's pepper)",
            )?;
        let hasher = KeyHasher::new(pepper.expose().as_bytes());
        let vault = Vault::from_config(&config.security)
            .map_err(|error| format!("cannot open sealed snapshots: {error}"))?;
        let verifier = config.cluster.snapshot_verifier()?;
        if verifier.is_empty() {
            return Err(
                "cluster mode needs `cluster.snapshot_public_keys` (the control plane's \
                        snapshot public key)"
                    .to_owned(),
            );
        }
        Ok(Self {
            keys: config.cluster.bus_keys(),
            vault,
            verifier,
            max_jump: config.cluster.snapshot_max_version_jump,
            key_check: hasher.check_value(),
            hasher,
            client,
            password,
            cache_path: config.cluster.snapshot_cache_path.clone(),
            poll_interval: config.cluster.snapshot_poll_interval,
            status: std::sync::Arc::new(BusStatus::new(target)),
        })
    }

    /// The bus state shown by `/healthz`.
    pub fn status(&self) -> std::sync::Arc<BusStatus> {
        self.status.clone()
    }

    /// The Redis names followed.
    pub fn keys(&self) -> &BusKeys {
        &self.keys
    }

    /// The disk cache of the last good snapshot.
    pub fn cache_path(&self) -> &std::path::Path {
        &self.cache_path
    }

    /// Opens a sealed snapshot and builds its runtime form: authentic, made with this data
    /// plane's pepper, and servable. Does not compare versions.
    pub fn open(&self, sealed: &[u8]) -> Result<RuntimeSnapshot, Refusal> {
        let snapshot = open_snapshot(&self.vault, &self.verifier, sealed)?;
        match snapshot.key_check.as_deref() {
            None => return Err(Refusal::NoKeyCheck),
            Some(check) if check != self.key_check => return Err(Refusal::Pepper),
            Some(_) => {}
        }
        RuntimeSnapshot::build(snapshot, self.hasher.clone()).map_err(Refusal::Invalid)
    }

    /// Whether `version` may follow `current`: not older, and not more than
    /// `cluster.snapshot_max_version_jump` above.
    fn check_version(&self, current: u64, version: u64) -> Result<(), Refusal> {
        if version < current {
            return Err(Refusal::Older { version, current });
        }
        if version - current > self.max_jump {
            return Err(Refusal::Jump {
                version,
                current,
                bound: self.max_jump,
            });
        }
        Ok(())
    }

    /// Writes an accepted snapshot to the disk cache, off the async threads. A failure is
    /// logged and shown by `/healthz`: the data plane serves without it, but a cold start
    /// while Redis is down would not find this version.
    async fn persist(&self, sealed: Vec<u8>) {
        let path = self.cache_path.clone();
        let written = tokio::task::spawn_blocking(move || write_cache(&path, &sealed)).await;
        let error = match written {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::error!(
            path = %self.cache_path.display(),
            %error,
            "cannot write the snapshot cache; a cold start while Redis is down would not find this version"
        );
        self.status.failed(format!(
            "cannot write the snapshot cache `{}`: {error}",
            self.cache_path.display()
        ));
    }

    /// `message` with the Redis password, if any, masked.
    fn scrub(&self, message: impl std::fmt::Display) -> String {
        let message = message.to_string();
        match &self.password {
            Some(password) => message.replace(password.as_str(), "****"),
            None => message,
        }
    }
}
