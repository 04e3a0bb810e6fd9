//! The data layer: the only module that speaks diesel. Everything above it calls these plain
//! async functions with a pooled connection.

pub mod alerts;
pub mod audit;
pub mod batches;
pub mod catalog;
pub mod files;
pub mod governance;
pub mod keys;
pub mod models;
pub mod reporting;
pub mod retention;
pub mod schema;
pub mod sessions;
pub mod snapshot;
pub mod tenants;
pub mod transaction;
pub mod usage;
pub mod user_scope;
pub mod users;

use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel_async::pooled_connection::bb8::{Pool as Bb8Pool, PooledConnection};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Advisory lock key held while migrating, so two replicas booting together cannot race
/// (`omg-controlplane` in ASCII).
const MIGRATION_LOCK: i64 = 0x6f6d_672d_6370_6d67;

/// The connection pool.
pub type Pool = Bb8Pool<AsyncPgConnection>;
/// A connection borrowed from the pool.
pub type Conn<'a> = PooledConnection<'a, AsyncPgConnection>;

/// A data-layer failure. `NotFound` and `Conflict` are expected outcomes the API maps to
/// 404/409; everything else is an internal error, logged and never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No row matched.
    #[error("not found")]
    NotFound,
    /// A unique or check constraint refused the change.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The pool could not hand out a connection in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else diesel reported.
    #[error("database error: {0}")]
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for DbError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::NotFound => DbError::NotFound,
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                DbError::Conflict(info.constraint_name().unwrap_or("unique").to_owned())
            }
            Error::DatabaseError(DatabaseErrorKind::CheckViolation, info) => {
                DbError::Conflict(info.constraint_name().unwrap_or("check").to_owned())
            }
            other => DbError::Query(other),
        }
    }
}

impl<E: std::error::Error + 'static> From<bb8::RunError<E>> for DbError {
    fn from(error: bb8::RunError<E>) -> Self {
        DbError::Unavailable(error.to_string())
    }
}

/// Opens the pool. Connections are made lazily except the first, which proves the URL works.
pub async fn connect(url: &str, max_size: u32, timeout: Duration) -> Result<Pool, DbError> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    let pool = Bb8Pool::builder()
        .max_size(max_size)
        .connection_timeout(timeout)
        .build(manager)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    drop(pool.get().await?);
    Ok(pool)
}

/// Applies pending migrations under a Postgres advisory lock; returns the versions applied.
/// Needs the multi-threaded tokio runtime (the harness blocks in place).
pub async fn migrate(url: &str) -> Result<Vec<String>, DbError> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
        .map_err(|e| DbError::Unavailable(format!("migration failed: {e}")));
    let mut conn = harness.into_inner();
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .await?;
    applied
}

/// Migrations compiled in but not yet applied (for `/healthz` and `--check`).
pub async fn pending_migrations(url: &str) -> Result<usize, DbError> {
    let conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    let mut harness = AsyncMigrationHarness::new(conn);
    harness
        .pending_migrations(MIGRATIONS)
        .map(|pending| pending.len())
        .map_err(|e| DbError::Unavailable(format!("cannot read migration state: {e}")))
}

/// `SELECT 1` round trip time.
pub async fn ping(pool: &Pool) -> Result<Duration, DbError> {
    let started = Instant::now();
    let mut conn = pool.get().await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(started.elapsed())
}
