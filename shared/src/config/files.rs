//! `files.*` and `batches.*` (control plane): where uploaded files are stored, how big they
//! may be, when expired ones are swept, and how the batch worker runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::encryption::decode_key;
use super::{ConfigError, GatewayConfig};
use crate::secret::Secret;

/// Where file contents live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStorage {
    /// A directory on the control plane's disk (`files.local_dir`).
    #[default]
    Local,
    /// An S3 bucket or any S3-compatible store (`files.s3.*`).
    S3,
}

/// The purposes a file may be uploaded with (OpenAI's upload purposes).
pub const UPLOAD_PURPOSES: [&str; 7] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
    "batch_output",
];

/// `files.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// `local` (default) or `s3`.
    pub storage: FileStorage,
    /// Directory holding the blobs when `storage` is `local` (created at start-up).
    /// Default `./data/files`.
    pub local_dir: PathBuf,
    /// The bucket when `storage` is `s3`.
    pub s3: S3Config,
    /// Base64 of 32 random bytes (`openssl rand -base64 32`): file contents are encrypted
    /// with AES-256-GCM in 64 KiB chunks before they reach the store, whatever the backend.
    /// Files written before the key was set stay readable; losing the key loses every file
    /// written with it. Default none (stored as uploaded).
    pub encryption_key: Option<Secret>,
    /// Largest upload in MiB for any purpose, 1–1048576. Default 512.
    pub max_size_mb: u64,
    /// Per-purpose caps in MiB (each ≤ `max_size_mb`), e.g. `{batch: 200}`. Default
    /// `{batch: 200}` (OpenAI's batch input limit).
    pub purpose_max_size_mb: BTreeMap<String, u64>,
    /// Time between two sweeps of expired files, 10s–24h. Default 10m.
    #[serde(with = "crate::duration")]
    pub sweep_interval: Duration,
    /// Expired files deleted per sweep step, 1–10000. Default 100.
    pub sweep_batch_size: u32,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            storage: FileStorage::Local,
            local_dir: PathBuf::from("./data/files"),
            s3: S3Config::default(),
            encryption_key: None,
            max_size_mb: 512,
            purpose_max_size_mb: BTreeMap::from([("batch".to_owned(), 200)]),
            sweep_interval: Duration::from_secs(600),
            sweep_batch_size: 100,
        }
    }
}

/// `files.s3.*`: an AWS S3 bucket or any S3-compatible store (MinIO, Ceph, R2, moto).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Bucket name (required with `storage: s3`; must exist).
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `gateway/files` (no leading or trailing `/`).
    pub prefix: String,
    /// Region. Default `us-east-1`.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store, e.g. `http://minio:9000`; unset for AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub force_path_style: bool,
    /// Allow a plain-HTTP `endpoint` (test and in-cluster stores only).
    pub allow_http: bool,
    /// Static credentials; when unset the standard AWS chain is used (`AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` in the environment, web identity / IRSA, instance metadata).
    pub access_key_id: Option<Secret>,
    /// The secret of `access_key_id` (set both or neither).
    pub secret_access_key: Option<Secret>,
}

/// `batches.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchesConfig {
    /// Run the batch worker in this control plane. Default true (needs `dataplane_url`).
    pub enabled: bool,
    /// The data plane's `/v1` base the worker sends batch lines to, e.g.
    /// `http://omg-dataplane:8080` (a Service in front of every data plane). Required when
    /// `enabled`; lines are signed with `cluster.internal_secret`.
    pub dataplane_url: Option<String>,
    /// Most requests in one batch, 1–50000. Default 50000.
    pub max_requests: u32,
    /// Largest request body in one line, in KiB. Default 1024.
    pub max_line_kb: u32,
    /// Lines in flight at once per control plane, over all batches, 1–1024. Default 8.
    pub max_concurrency: u32,
    /// How often the worker looks for work, 100ms–1m (it wakes at least every third of
    /// `claim_lease` to renew its claims). Default 2s.
    #[serde(with = "crate::duration")]
    pub poll_interval: Duration,
    /// How long a claimed line belongs to one worker before another may take it over (the
    /// first died), 5s–1h. A living worker renews its claims every third of it, so this
    /// bounds how long the lines of a crashed control plane wait, not how long a request may
    /// run. Default 1m.
    #[serde(with = "crate::duration")]
    pub claim_lease: Duration,
    /// Share of a key's rate limits kept for interactive traffic, 0–90 %: the worker waits
    /// while less than this share of requests or tokens remains in the window. Default 20.
    pub headroom_percent: u8,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dataplane_url: None,
            max_requests: 50_000,
            max_line_kb: 1024,
            max_concurrency: 8,
            poll_interval: Duration::from_secs(2),
            claim_lease: Duration::from_secs(60),
            headroom_percent: 20,
        }
    }
}

impl FilesConfig {
    /// The decoded `encryption_key`; `None` when unset. Validation guarantees it decodes.
    pub fn decoded_encryption_key(&self) -> Option<[u8; 32]> {
        self.encryption_key
            .as_ref()
            .and_then(|key| decode_key(key).ok())
    }

    /// The cap for `purpose`, in bytes: its own entry, else `max_size_mb`.
    pub fn max_bytes(&self, purpose: &str) -> u64 {
        let mb = self
            .purpose_max_size_mb
            .get(purpose)
            .copied()
            .unwrap_or(self.max_size_mb);
        mb.saturating_mul(1024 * 1024)
    }
}

/// `files.*`: storage settings complete, key decodable, sizes and sweeps in range.
pub(super) fn files_rules(config: &GatewayConfig) -> Vec<ConfigError> {
    let files = &config.files;
    let mut errors = Vec::new();
    let mut error = |path: &str, message: String| errors.push(ConfigError::new(path, message));
    if !(1..=1_048_576).contains(&files.max_size_mb) {
        error(
            "files.max_size_mb",
            "must be between 1 and 1048576".to_owned(),
        );
    }
    for (purpose, mb) in &files.purpose_max_size_mb {
        let path = format!("files.purpose_max_size_mb.{purpose}");
        if !UPLOAD_PURPOSES.contains(&purpose.as_str()) {
            error(
                &path,
                format!("unknown purpose; one of {}", UPLOAD_PURPOSES.join(", ")),
            );
        } else if *mb == 0 || *mb > files.max_size_mb {
            error(
                &path,
                format!(
                    "must be between 1 and files.max_size_mb ({})",
                    files.max_size_mb
                ),
            );
        }
    }
    if !(Duration::from_secs(10)..=Duration::from_secs(86_400)).contains(&files.sweep_interval) {
        error(
            "files.sweep_interval",
            "must be between 10s and 24h".to_owned(),
        );
    }
    if !(1..=10_000).contains(&files.sweep_batch_size) {
        error(
            "files.sweep_batch_size",
            "must be between 1 and 10000".to_owned(),
        );
    }
    if let Some(key) = &files.encryption_key {
        if let Err(message) = decode_key(key) {
            error("files.encryption_key", message);
        }
    }
    if files.storage == FileStorage::S3 {
        errors.extend(s3_rules(&files.s3));
    } else if files.local_dir.as_os_str().is_empty() {
        errors.push(ConfigError::new(
            "files.local_dir",
            "must not be empty with storage `local`",
        ));
    }
    errors
}

fn s3_rules(s3: &S3Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if s3.bucket.trim().is_empty() {
        errors.push(ConfigError::new(
            "files.s3.bucket",
            "required with `files.storage: s3`",
        ));
    }
    if s3.prefix.starts_with('/') || s3.prefix.ends_with('/') || s3.prefix.contains("..") {
        errors.push(ConfigError::new(
            "files.s3.prefix",
            "must not start or end with `/` nor contain `..`",
        ));
    }
    if let Some(endpoint) = &s3.endpoint {
        match endpoint.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => {}
            Some(("http", rest)) if !rest.is_empty() && s3.allow_http => {}
            Some(("http", _)) => errors.push(ConfigError::new(
                "files.s3.endpoint",
                "is plain http: set `files.s3.allow_http: true` for a test or in-cluster store",
            )),
            _ => errors.push(ConfigError::new(
                "files.s3.endpoint",
                format!("`{endpoint}` is not an http(s) URL"),
            )),
        }
    }
    if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
        errors.push(ConfigError::new(
            "files.s3.secret_access_key",
            "set both `access_key_id` and `secret_access_key`, or neither (the AWS credential chain)",
        ));
    }
    errors
}

/// `batches.*`: ranges, and a data plane to send lines to when the worker runs.
pub(super) fn batches_rules(config: &GatewayConfig) -> Vec<ConfigError> {
    let batches = &config.batches;
    let mut errors = Vec::new();
    let mut error = |path: &str, message: &str| errors.push(ConfigError::new(path, message));
    if !(1..=50_000).contains(&batches.max_requests) {
        error("batches.max_requests", "must be between 1 and 50000");
    }
    if !(1..=1024).contains(&batches.max_concurrency) {
        error("batches.max_concurrency", "must be between 1 and 1024");
    }
    if !(1..=102_400).contains(&batches.max_line_kb) {
        error("batches.max_line_kb", "must be between 1 and 102400");
    }
    let poll = Duration::from_millis(100)..=Duration::from_secs(60);
    if !poll.contains(&batches.poll_interval) {
        error("batches.poll_interval", "must be between 100ms and 1m");
    }
    let lease = Duration::from_secs(5)..=Duration::from_secs(3600);
    if !lease.contains(&batches.claim_lease) {
        error("batches.claim_lease", "must be between 5s and 1h");
    }
    if batches.headroom_percent > 90 {
        error("batches.headroom_percent", "must be between 0 and 90");
    }
    if batches.enabled {
        match &batches.dataplane_url {
            None => {}
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {}
            Some(_) => error("batches.dataplane_url", "must be an http(s) URL"),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Vec<String> {
        let config: GatewayConfig = serde_yaml::from_str(yaml).unwrap();
        let mut errors = files_rules(&config);
        errors.extend(batches_rules(&config));
        errors.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults_pass() {
        assert!(check("{}").is_empty());
    }

    #[test]
    fn s3_needs_a_bucket_and_an_explicit_plain_http_allowance() {
        let errors = check("files: {storage: s3, s3: {endpoint: 'http://127.0.0.1:9000'}}");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("files.s3.bucket"));
        assert!(errors[1].contains("files.s3.endpoint") && errors[1].contains("allow_http"));
        let ok = "files: {storage: s3, s3: {bucket: b, endpoint: 'http://h:1', allow_http: true}}";
        assert!(check(ok).is_empty());
    }

    #[test]
    fn sizes_keys_and_ranges_are_named_by_path() {
        let errors = check(
            "files: {max_size_mb: 10, purpose_max_size_mb: {batch: 20, nope: 1}, encryption_key: abc}\n\
             batches: {max_concurrency: 0, poll_interval: 5m, dataplane_url: 'ftp://x'}",
        );
        let joined = errors.join("\n");
        for path in [
            "files.purpose_max_size_mb.batch",
            "files.purpose_max_size_mb.nope",
            "files.encryption_key",
            "batches.max_concurrency",
            "batches.poll_interval",
            "batches.dataplane_url",
        ] {
            assert!(joined.contains(path), "{path} missing from {joined}");
        }
    }

    #[test]
    fn purpose_caps_fall_back_to_the_global_cap() {
        let config = FilesConfig::default();
        assert_eq!(config.max_bytes("batch"), 200 * 1024 * 1024);
        assert_eq!(config.max_bytes("vision"), 512 * 1024 * 1024);
    }
}
