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
    /// Control plane: the Ed25519 key snapshots are signed with, the base64 of its PKCS#8
    /// document (`omg-controlplane keys generate-signing` makes one and prints its public
    /// key). Required when `redis.url` is set. Only the control plane holds it: a data plane
    /// (which holds the encryption keys) cannot make a snapshot the others accept.
    pub snapshot_signing_key: Option<Secret>,
    /// Data plane: the public keys (base64 of 32 bytes, comma or space separated) whose
    /// signatures make a snapshot acceptable; required in cluster mode. List the new key
    /// beside the old one while rotating. Control plane: optional; a snapshot in Redis signed
    /// by one of these (or its own key) is recognised as published by a control plane, so
    /// replicas mid-rotation do not overwrite each other's.
    pub snapshot_public_keys: Option<String>,
    /// Data plane: a snapshot whose version is more than this far above the version being
    /// served is refused (the control plane's versions grow by small steps; a huge jump
    /// would lock the data plane out of later snapshots). At start-up the bound is measured
    /// from the disk cache's version; without a cache any version is accepted. Default
    /// 1000000.
    pub snapshot_max_version_jump: u64,
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
            snapshot_signing_key: None,
            snapshot_public_keys: None,
            snapshot_max_version_jump: 1_000_000,
        }
    }
}

impl ClusterConfig {
    /// The public keys of `snapshot_public_keys` (empty when unset).
    pub fn snapshot_verifier(&self) -> Result<crate::cluster::SnapshotVerifier, String> {
        crate::cluster::SnapshotVerifier::from_list(
            self.snapshot_public_keys.as_deref().unwrap_or(""),
        )
        .map_err(|(position, error)| {
            format!("`cluster.snapshot_public_keys`: key {position} {error}")
        })
    }

    /// The signing key of `snapshot_signing_key`; `Ok(None)` when unset.
    pub fn snapshot_signer(&self) -> Result<Option<crate::cluster::SnapshotSigner>, String> {
        self.snapshot_signing_key
            .as_ref()
            .map(|key| {
                crate::cluster::SnapshotSigner::from_base64(key.expose())
                    .map_err(|error| format!("`cluster.snapshot_signing_key` {error}"))
            })
            .transpose()
    }

    /// The Redis names of the bus.
    pub fn bus_keys(&self) -> crate::cluster::BusKeys {
        crate::cluster::BusKeys::new(&self.snapshot_key, &self.usage_stream)
    }
}

/// The cluster rules both planes check.
pub(super) fn cluster_rules(config: &super::GatewayConfig) -> Vec<super::ConfigError> {
    let mut errors = Vec::new();
    let cluster = &config.cluster;
    bus_rules(cluster, &mut errors);
    internal_channel_rules(cluster, &mut errors);
    signing_rules(cluster, &mut errors);
    shared_secret_rules(config, &mut errors);
    errors
}

/// The bus's Redis names, intervals and the usage spool and batch sizes.
fn bus_rules(cluster: &ClusterConfig, errors: &mut Vec<super::ConfigError>) {
    use super::ConfigError;
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
}

/// The internal channel (files and batches): its URL, listener and shared secret.
fn internal_channel_rules(cluster: &ClusterConfig, errors: &mut Vec<super::ConfigError>) {
    use super::ConfigError;
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
}

/// The snapshot signature: keys that parse, a version jump of at least 1.
fn signing_rules(cluster: &ClusterConfig, errors: &mut Vec<super::ConfigError>) {
    use super::ConfigError;
    if let Err(message) = cluster.snapshot_verifier() {
        errors.push(ConfigError::new("cluster.snapshot_public_keys", message));
    }
    if let Err(message) = cluster.snapshot_signer() {
        errors.push(ConfigError::new("cluster.snapshot_signing_key", message));
    }
    if cluster.snapshot_max_version_jump == 0 {
        errors.push(ConfigError::new(
            "cluster.snapshot_max_version_jump",
            "must be at least 1",
        ));
    }
}

/// A cluster-mode data plane opens sealed snapshots and hashes keys like the control
/// plane: it needs the same key ring and pepper.
fn shared_secret_rules(config: &super::GatewayConfig, errors: &mut Vec<super::ConfigError>) {
    use super::ConfigError;
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
}

/// The data plane's own cluster rules: in cluster mode it needs the control plane's public
/// key to accept any snapshot.
pub(super) fn dataplane_rules(config: &super::GatewayConfig) -> Vec<super::ConfigError> {
    let unset = config
        .cluster
        .snapshot_public_keys
        .as_deref()
        .is_none_or(|keys| crate::cluster::split_list(keys).next().is_none());
    if config.redis.url.is_some() && unset {
        return vec![super::ConfigError::new(
            "cluster.snapshot_public_keys",
            "cluster mode (`redis.url` is set) needs the control plane's snapshot public key \
             (printed by `omg-controlplane keys generate-signing`, and by `omg-controlplane \
             keys public-key` from the signing key); unsigned snapshots are refused",
        )];
    }
    Vec::new()
}

/// The control plane's own cluster rules: publishing snapshots needs the signing key.
pub(super) fn controlplane_rules(config: &super::GatewayConfig) -> Vec<super::ConfigError> {
    if config.redis.url.is_some() && config.cluster.snapshot_signing_key.is_none() {
        return vec![super::ConfigError::new(
            "cluster.snapshot_signing_key",
            "required when `redis.url` is set: snapshots are signed; generate a key with \
             `omg-controlplane keys generate-signing` and give its public key to the data \
             planes (`cluster.snapshot_public_keys`)",
        )];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use crate::config::{load_layered, Mode};

    const PUBLIC: &str = "IDa5jVbB0JoABO8VhNxaMzfnOm0+Fb+/RWuPZ7azNIE=";
    const BASE: &str = "redis:\n  url: redis://127.0.0.1:6379/0\nsecurity:\n  api_key_pepper: pepper-pepper-pepper-pepper-32ch\n  encryption_keys:\n    - version: 1\n      key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    fn errors(text: &str, mode: Mode) -> String {
        load_layered(text, &|_| None, &[], mode)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn cluster_mode_needs_the_snapshot_keys_of_each_plane() {
        let missing = errors(BASE, Mode::Dataplane);
        assert!(
            missing.contains("cluster.snapshot_public_keys"),
            "{missing}"
        );
        let keyed = format!("{BASE}cluster:\n  snapshot_public_keys: \"{PUBLIC}\"\n");
        assert_eq!(errors(&keyed, Mode::Dataplane), "");
        let bad = format!("{BASE}cluster:\n  snapshot_public_keys: \"{PUBLIC} AAAA\"\n");
        let bad = errors(&bad, Mode::Dataplane);
        assert!(bad.contains("key 2 decodes to 3 bytes"), "{bad}");

        let controlplane = errors(BASE, Mode::Controlplane);
        assert!(
            controlplane.contains("cluster.snapshot_signing_key"),
            "{controlplane}"
        );
        let wrong = format!("{BASE}cluster:\n  snapshot_signing_key: \"{PUBLIC}\"\n");
        let wrong = errors(&wrong, Mode::Controlplane);
        assert!(wrong.contains("is not an Ed25519 private key"), "{wrong}");
        assert!(!wrong.contains(PUBLIC), "no key material in messages");
    }
}
