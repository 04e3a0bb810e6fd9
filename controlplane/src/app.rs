//! Start-up: connect, migrate, build the state, bootstrap. Every failure says what to fix.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use omg_shared::config::GatewayConfig;
use omg_shared::keys::KeyHasher;

use crate::auth::jwt::JwtKeys;
use crate::auth::throttle::LoginThrottle;
use crate::cluster;
use crate::crypto::{self, Vault};
use crate::db;
use crate::files::service::FileService;
use crate::files::store::BlobStore;
use crate::metrics::Metrics;
use crate::service::bootstrap;
use crate::settings::redact_url;
use crate::state::AppState;
use crate::workers::publisher::{self, Publisher, Publishing};
use crate::workers::usage_ingest::{self, IngestHandles, IngestStatus};
use crate::workers::{alerts, counters, files_sweep, retention};

/// The database URL from config (validated as present for the control plane).
pub fn database_url(config: &GatewayConfig) -> Result<String, String> {
    config
        .database
        .url
        .as_ref()
        .map(|s| s.expose().to_owned())
        .ok_or_else(|| "database.url is not set (or set ROUTER_DB_URL)".to_owned())
}

/// Applies migrations (under the advisory lock) and logs what ran. With
/// `database.owner_url`, they run as the owner role, which then grants the application role
/// (the user of `database.url`) its privileges: `audit_log` read and insert only.
pub async fn migrate(config: &GatewayConfig) -> Result<Vec<String>, String> {
    let app_url = database_url(config)?;
    let owner_url = config
        .database
        .owner_url
        .as_ref()
        .map(|url| url.expose().to_owned());
    let url = owner_url.as_deref().unwrap_or(&app_url);
    let applied = db::migrate(url)
        .await
        .map_err(|e| format!("migrating {}: {e}", redact_url(url)))?;
    if applied.is_empty() {
        tracing::info!("database schema is up to date");
    } else {
        tracing::info!(versions = ?applied, "migrations applied");
    }
    if let Some(owner_url) = &owner_url {
        let role = db::audit::grant_app_role(owner_url, &app_url)
            .await
            .map_err(|e| {
                format!(
                    "granting the application role its privileges (database.owner_url {}): {e}",
                    redact_url(owner_url)
                )
            })?;
        tracing::info!(
            role = %role,
            "application role granted its privileges (audit_log: SELECT and INSERT only)"
        );
    }
    Ok(applied)
}

/// The pool, once the schema is current: migrated when `database.run_migrations`, else
/// checked (pending migrations refuse the start).
async fn connect_and_migrate(config: &GatewayConfig) -> Result<db::Pool, String> {
    let url = database_url(config)?;
    let pool = db::connect(
        &url,
        config.database.max_connections,
        config.database.connect_timeout,
    )
    .await
    .map_err(|e| {
        format!(
            "cannot connect to Postgres at {} (database.url / ROUTER_DB_URL): {e}",
            redact_url(&url)
        )
    })?;
    if config.database.run_migrations {
        migrate(config).await?;
    } else {
        let pending = db::pending_migrations(&url)
            .await
            .map_err(|e| e.to_string())?;
        if pending > 0 {
            return Err(format!(
                "{pending} migration(s) pending and database.run_migrations is false: run `omg-controlplane migrate` first"
            ));
        }
    }
    Ok(pool)
}

/// The files service over the store `files.*` describes, once a test write went through
/// (a store that refuses it stops the start, naming the keys to fix).
async fn files_service(
    config: &GatewayConfig,
    pool: &db::Pool,
    metrics: &Metrics,
) -> Result<FileService, String> {
    let store = BlobStore::from_config(&config.files)?;
    store.check().await?;
    tracing::info!(
        backend = store.backend(),
        encrypted = config.files.encryption_key.is_some(),
        "files store ready"
    );
    Ok(FileService::new(
        pool.clone(),
        store,
        &config.files,
        metrics.files().clone(),
    ))
}

/// Connects, migrates (or checks the schema), builds the state and applies the bootstrap.
pub async fn start(config: GatewayConfig) -> Result<web::Data<AppState>, String> {
    let pool = connect_and_migrate(&config).await?;
    let redis = cluster::pool(&config.redis)?;
    let keys = config.security.decoded_encryption_keys()?;
    let active = config
        .security
        .active_key_version()
        .ok_or_else(|| "security.encryption_keys is empty".to_owned())?;
    let vault = Arc::new(Vault::new(&keys, active).map_err(|e| e.to_string())?);
    let snapshot_signer = config.cluster.snapshot_signer()?.map(Arc::new);
    let mut snapshot_verifier = config.cluster.snapshot_verifier()?;
    if let Some(signer) = &snapshot_signer {
        snapshot_verifier.extend(&signer.verifier());
    }
    let pepper = config
        .security
        .api_key_pepper
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec())
        .ok_or_else(|| "security.api_key_pepper is not set".to_owned())?;
    let session = &config.admin.session;
    let secret = session
        .jwt_secret
        .as_ref()
        .ok_or_else(|| "admin.session.jwt_secret is not set".to_owned())?;
    let jwt = JwtKeys::new(
        secret.expose().as_bytes(),
        i64::try_from(session.access_token_ttl.as_secs()).unwrap_or(900),
    );
    let decoy_hash = tokio::task::spawn_blocking(crypto::decoy_hash)
        .await
        .map_err(|e| e.to_string())?;
    let metrics = Metrics::new().map_err(|e| e.to_string())?;
    let files = Arc::new(files_service(&config, &pool, &metrics).await?);
    let state = web::Data::new(AppState {
        pool,
        redis,
        jwt,
        vault,
        snapshot_signer,
        snapshot_verifier,
        hasher: KeyHasher::new(&pepper),
        throttle: LoginThrottle::new(&config.admin.login_throttle),
        sessions: Default::default(),
        verifications: Default::default(),
        metrics,
        files,
        decoy_hash,
        refresh_ttl: session.refresh_token_ttl,
        publisher: Arc::new(Publisher::default()),
        usage_ingest: Arc::new(IngestStatus::new()),
        config: Arc::new(config),
    });
    let report = bootstrap::run(&state).await?;
    tracing::info!(
        applied = report.applied.len(),
        already_applied_or_skipped = report.skipped.len(),
        "bootstrap done"
    );
    Ok(state)
}

/// The background work of a serving control plane (with Redis: the snapshot publisher, the
/// usage consumer and the start-up counter rebuild). Dropping it stops the usage consumer; [`Background::shutdown`] lets
/// it finish the batch in hand first.
pub struct Background {
    publisher: Option<tokio::task::JoinHandle<()>>,
    rebuild: Option<tokio::task::JoinHandle<()>>,
    ingest: Option<tokio::task::JoinHandle<()>>,
    alerts: Option<tokio::task::JoinHandle<()>>,
    retention: Option<tokio::task::JoinHandle<()>>,
    files_sweep: tokio::task::JoinHandle<()>,
    batches: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Background {
    /// Stops the tasks: the publisher at once, the usage consumer after its current batch
    /// (bounded by 40 s: its statement timeout is 30 s), the alert evaluator after the
    /// attempt in hand (bounded by 30 s; webhook retries are not waited for).
    pub async fn shutdown(self) {
        if let Some(publisher) = self.publisher {
            publisher.abort();
        }
        if let Some(rebuild) = self.rebuild {
            rebuild.abort();
        }
        let _ = self.stop.send(true);
        if let Some(ingest) = self.ingest {
            if tokio::time::timeout(Duration::from_secs(40), ingest)
                .await
                .is_err()
            {
                tracing::warn!("usage consumer did not stop within 40 s; its unacknowledged entries will be reclaimed");
            }
        }
        if let Some(alerts) = self.alerts {
            let abort = alerts.abort_handle();
            if tokio::time::timeout(Duration::from_secs(30), alerts)
                .await
                .is_err()
            {
                abort.abort();
                tracing::warn!("budget alert evaluator did not stop within 30 s; stopped (the next start evaluates again)");
            }
        }
        let sweep = self.files_sweep.abort_handle();
        if tokio::time::timeout(Duration::from_secs(30), self.files_sweep)
            .await
            .is_err()
        {
            sweep.abort();
            tracing::warn!(
                "files sweeper did not stop within 30 s; stopped (the next sweep resumes)"
            );
        }
        if let Some(batches) = self.batches {
            let abort = batches.abort_handle();
            if tokio::time::timeout(Duration::from_secs(20), batches)
                .await
                .is_err()
            {
                abort.abort();
                tracing::warn!("batch worker: did not stop within 20 s; its lines return to pending when their lease ends");
            }
        }
        if let Some(retention) = self.retention {
            let abort = retention.abort_handle();
            if tokio::time::timeout(Duration::from_secs(30), retention)
                .await
                .is_err()
            {
                abort.abort();
                tracing::warn!(
                    "retention job did not stop within 30 s; stopped (the next pass resumes)"
                );
            }
        }
    }
}

/// Starts the background work: the retention job (unless everything is kept forever), the
/// budget alert evaluator (unless alerts are disabled) and,
/// with Redis, the snapshot publisher, the usage consumer (which feeds the evaluator) and a
/// one-off rebuild of the spend counters from Postgres.
pub fn spawn_background(state: &AppState) -> Result<Background, String> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let publisher = state
        .redis
        .as_ref()
        .map(|redis| publisher::spawn(publishing(state, redis.clone())));
    let rebuild = state.redis.as_ref().map(|redis| {
        counters::spawn_startup_rebuild(state.config.clone(), state.pool.clone(), redis.clone())
    });
    let alerts = alerts::spawn(
        state.pool.clone(),
        state.config.clone(),
        state.metrics.alerts().clone(),
        stopped.clone(),
    )?;
    let retention = retention::spawn(
        state.pool.clone(),
        state.config.clone(),
        state.metrics.retention().clone(),
        stopped.clone(),
    );
    let files_sweep = files_sweep::spawn(
        state.files.clone(),
        state.config.files.sweep_interval,
        state.config.files.sweep_batch_size,
        stopped.clone(),
    );
    let batches = crate::batches::worker::spawn(
        crate::batches::worker::WorkerHandles {
            pool: state.pool.clone(),
            config: state.config.clone(),
            files: state.files.clone(),
            metrics: state.metrics.batches().clone(),
        },
        stopped.clone(),
    );
    let (notifier, alerts) = match alerts {
        Some((notifier, task)) => (Some(notifier), Some(task)),
        None => (None, None),
    };
    let handles = IngestHandles {
        pool: state.pool.clone(),
        metrics: state.metrics.usage().clone(),
        status: state.usage_ingest.clone(),
        alerts: notifier,
    };
    let ingest = usage_ingest::spawn(&state.config.redis, &state.config.cluster, handles, stopped)?;
    Ok(Background {
        publisher,
        rebuild,
        ingest,
        alerts,
        retention,
        files_sweep,
        batches,
        stop,
    })
}

/// The publisher's handles, taken from the state.
fn publishing(state: &AppState, redis: cluster::RedisPool) -> Publishing {
    Publishing {
        pool: state.pool.clone(),
        redis,
        config: state.config.clone(),
        vault: state.vault.clone(),
        signer: state.snapshot_signer.clone(),
        verifier: state.snapshot_verifier.clone(),
        key_check: state.hasher.check_value(),
        metrics: state.metrics.snapshots().clone(),
        handle: state.publisher.clone(),
    }
}
