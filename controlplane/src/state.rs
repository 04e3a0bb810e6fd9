//! Everything a handler needs, built once at start-up: handles only (pools, keys, caches,
//! metrics, the background workers' handles). The workers themselves get just the handles
//! they use (`app::spawn_background`).

use std::sync::Arc;
use std::time::Duration;

use omg_shared::config::GatewayConfig;
use omg_shared::keys::KeyHasher;

use crate::auth::guard::{SessionCache, Verifications};
use crate::auth::jwt::JwtKeys;
use crate::auth::throttle::LoginThrottle;
use crate::cluster::RedisPool;
use crate::crypto::Vault;
use crate::db::Pool;
use crate::files::service::FileService;
use crate::metrics::Metrics;
use crate::workers::publisher::handle::Publisher;
use crate::workers::usage_ingest::status::IngestStatus;

/// Shared application state.
pub struct AppState {
    pub pool: Pool,
    pub redis: Option<RedisPool>,
    pub config: Arc<GatewayConfig>,
    pub jwt: JwtKeys,
    pub vault: Arc<Vault>,
    /// Signs published snapshots (`cluster.snapshot_signing_key`; set whenever Redis is).
    pub snapshot_signer: Option<Arc<omg_shared::cluster::SnapshotSigner>>,
    /// The keys a snapshot found in Redis is recognised by: the signer's own and
    /// `cluster.snapshot_public_keys`.
    pub snapshot_verifier: omg_shared::cluster::SnapshotVerifier,
    pub hasher: KeyHasher,
    pub throttle: LoginThrottle,
    /// Sessions recently found live (access tokens are checked against their session).
    pub sessions: SessionCache,
    /// The bound on concurrent password verifications.
    pub verifications: Verifications,
    pub metrics: Metrics,
    /// Verified against when a login names an unknown account (equal timing).
    pub decoy_hash: String,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// The snapshot publisher's handle (poked after changes; idle without Redis).
    pub publisher: Arc<Publisher>,
    /// The usage consumer's status (for `/healthz`; idle without Redis).
    pub usage_ingest: Arc<IngestStatus>,
    /// The files service (`/v1/files` on the internal listener, the admin file views, the
    /// sweeper, the batch worker).
    pub files: Arc<FileService>,
}
