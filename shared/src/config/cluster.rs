//! `cluster.*`: how the planes meet over Redis and the internal channel. A data plane is in
//! cluster mode when `redis.url` is set; otherwise it serves its config file standalone.
//! Re-exported from [`super`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// `cluster.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Both planes: Redis key of the sealed snapshot. `<key>:version` holds its version and
    /// `<key>:published` is the pub/sub channel of new versions. Default `omg:snapshot`.
    pub snapshot_key: String,
    /// Both planes: Redis stream of usage records. Default `omg:usage`.
    pub usage_stream: String,

    /// Data plane: how often the snapshot version is polled besides pub/sub (which can lose
    /// messages). Default 2s.
    #[serde(with = "crate::duration")]
    pub snapshot_poll_interval: Duration,
    /// Data plane: the last good snapshot, sealed as received, replaced by atomic rename.
    /// Used at start-up when Redis is unreachable. Default `./data/snapshot.sealed`.
    pub snapshot_cache_path: PathBuf,
    /// Data plane: directory of the usage spool (a write-ahead log shipped to the usage
    /// stream; it grows while Redis is unreachable). Default `./data/usage-spool`.
    pub spool_dir: PathBuf,
    /// Data plane: largest size of the spool in MiB; past it, records are logged at error
    /// level instead of spooled and `omg_usage_spool_full_total` counts them. Default 1024.
    pub spool_max_mb: u64,
    /// Data plane: base URL of the control plane's internal listener, where `/v1/files*` and
    /// `/v1/batches*` are forwarded. Unset: those endpoints answer 404.
    pub internal_url: Option<String>,

    /// Control plane: longest time between two snapshot publications. Default 30s.
    #[serde(with = "crate::duration")]
    pub publish_interval: Duration,
    /// Control plane: a change is published this long after it, so bursts of changes make
    /// one snapshot. Default 100ms.
    #[serde(with = "crate::duration")]
    pub publish_debounce: Duration,
    /// Control plane: usage records inserted per transaction. Default 500.
    pub usage_batch_size: usize,
    /// Control plane: usage entries read but not acknowledged for this long (their consumer
    /// died) are claimed by another consumer. Default 30s.
    #[serde(with = "crate::duration")]
    pub usage_reclaim_idle: Duration,
    /// Control plane: listener of the internal channel (files and batches forwarded by data
    /// planes). Unset: not started. Keep it on a private network.
    pub internal_listen_addr: Option<String>,

    /// Both planes: secret signing the identity header of the internal channel (at least 32
    /// characters). Required when the internal channel is used.
    pub internal_secret: Option<Secret>,
    /// Both planes: an identity header is accepted this long around its signing time.
    /// Default 60s.
    #[serde(with = "crate::duration")]
    pub identity_window: Duration,
    /// Prefix of the shared limit and spend counters (`<prefix>:{t:<tenant>}:…`, see
    /// `docs/limits.md`). Default `omg:ctr`.
    pub counter_prefix: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            snapshot_key: "omg:snapshot".to_owned(),
            usage_stream: "omg:usage".to_owned(),
            snapshot_poll_interval: Duration::from_secs(2),
            snapshot_cache_path: PathBuf::from("./data/snapshot.sealed"),
            spool_dir: PathBuf::from("./data/usage-spool"),
            spool_max_mb: 1024,
            internal_url: None,
            publish_interval: Duration::from_secs(30),
            publish_debounce: Duration::from_millis(100),
            usage_batch_size: 500,
            usage_reclaim_idle: Duration::from_secs(30),
            internal_listen_addr: None,
            internal_secret: None,
            identity_window: Duration::from_secs(60),
            counter_prefix: "omg:ctr".to_owned(),
        }
    }
}

impl ClusterConfig {
    /// The Redis names of the bus.
    pub fn bus_keys(&self) -> crate::cluster::BusKeys {
        crate::cluster::BusKeys::new(&self.snapshot_key, &self.usage_stream)
    }
}

/// The cluster rules both planes check.
pub(super) fn cluster_rules(config: &super::GatewayConfig) -> Vec<super::ConfigError> {
    use super::ConfigError;
    let mut errors = Vec::new();
    let cluster = &config.cluster;
    let key_ok =
        |key: &str| !key.is_empty() && key.len() <= 200 && !key.chars().any(|c| c.is_whitespace());
    if !key_ok(&cluster.snapshot_key) {
        errors.push(ConfigError::new(
            "cluster.snapshot_key",
            "must be a Redis key without spaces (1–200 characters)",
        ));
    }
    if !key_ok(&cluster.counter_prefix) {
        errors.push(ConfigError::new(
            "cluster.counter_prefix",
            "must be a Redis key prefix without spaces (1–200 characters)",
        ));
    }
    if !key_ok(&cluster.usage_stream) {
        errors.push(ConfigError::new(
            "cluster.usage_stream",
            "must be a Redis key without spaces (1–200 characters)",
        ));
    }
    for (path, value) in [
        (
            "cluster.snapshot_poll_interval",
            cluster.snapshot_poll_interval,
        ),
        ("cluster.publish_interval", cluster.publish_interval),
        ("cluster.usage_reclaim_idle", cluster.usage_reclaim_idle),
        ("cluster.identity_window", cluster.identity_window),
    ] {
        if value.is_zero() {
            errors.push(ConfigError::new(path, "must be greater than zero"));
        }
    }
    if cluster.spool_max_mb == 0 {
        errors.push(ConfigError::new(
            "cluster.spool_max_mb",
            "must be at least 1 (MiB)",
        ));
    }
    if !(1..=10_000).contains(&cluster.usage_batch_size) {
        errors.push(ConfigError::new(
            "cluster.usage_batch_size",
            format!("{} is outside 1..=10000", cluster.usage_batch_size),
        ));
    }
    if let Some(url) = &cluster.internal_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(ConfigError::new(
                "cluster.internal_url",
                "must be a base URL like `http://controlplane:8091`",
            ));
        }
    }
    if let Some(addr) = &cluster.internal_listen_addr {
        if let Err(message) = super::parse_listen_addr(addr) {
            errors.push(ConfigError::new("cluster.internal_listen_addr", message));
        }
    }
    let channel_used = cluster.internal_url.is_some() || cluster.internal_listen_addr.is_some();
    match &cluster.internal_secret {
        None if channel_used => errors.push(ConfigError::new(
            "cluster.internal_secret",
            "required when `cluster.internal_url` or `cluster.internal_listen_addr` is set; \
             generate one with `openssl rand -base64 48` and give both planes the same value",
        )),
        Some(secret) if secret.expose().chars().count() < 32 => errors.push(ConfigError::new(
            "cluster.internal_secret",
            format!(
                "is {} characters; use at least 32 (`openssl rand -base64 48`)",
                secret.expose().chars().count()
            ),
        )),
        _ => {}
    }
    // A cluster-mode data plane opens sealed snapshots and hashes keys like the control
    // plane: it needs the same key ring and pepper.
    if config.redis.url.is_some() {
        if config.security.encryption_keys.is_empty() {
            errors.push(ConfigError::new(
                "security.encryption_keys",
                "cluster mode (`redis.url` is set) needs the control plane's encryption keys \
                 to open the sealed snapshot",
            ));
        }
        if config.security.api_key_pepper.is_none() {
            errors.push(ConfigError::new(
                "security.api_key_pepper",
                "cluster mode (`redis.url` is set) needs the control plane's pepper to check \
                 API keys",
            ));
        }
    }
    errors
}
