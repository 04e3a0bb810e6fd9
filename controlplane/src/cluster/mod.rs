//! The control plane's Redis I/O (cluster mode), the counterpart of the data plane's
//! `cluster/`: the pool and its health probe (`mod.rs`), the snapshot bus the publisher writes
//! (`snapshot.rs`), the shared spend counters and data plane heartbeats (`counters.rs`), the
//! internal channel's replay guard (`nonces.rs`), and the usage stream the consumer reads
//! (`usage_stream/`). No other control-plane module sends Redis commands.

pub mod counters;
pub mod nonces;
pub mod snapshot;
pub mod usage_stream;

use std::time::{Duration, Instant};

use bb8_redis::redis;
use omg_shared::config::RedisConfig;

/// One multiplexed Redis connection (what the workers hold while they talk to Redis).
pub use bb8_redis::redis::aio::MultiplexedConnection as Connection;

/// A Redis connection pool (health, and the bus in cluster mode).
pub type RedisPool = bb8::Pool<bb8_redis::RedisConnectionManager>;

/// The pool of `redis.url`, or `None` (logged) when it is not set. Connections are opened on
/// first use.
pub fn pool(config: &RedisConfig) -> Result<Option<RedisPool>, String> {
    let Some(url) = &config.url else {
        tracing::warn!(
            "redis.url is not set: the control plane runs without Redis (no snapshot publishing)"
        );
        return Ok(None);
    };
    let manager = bb8_redis::RedisConnectionManager::new(url.expose())
        .map_err(|e| format!("redis.url (ROUTER_REDIS_URL) is not a valid Redis URL: {e}"))?;
    Ok(Some(
        bb8::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(Duration::from_secs(2))
            .build_unchecked(manager),
    ))
}

/// `PING` through the pool: the round trip's latency (`/healthz`).
pub async fn ping(pool: &RedisPool) -> Result<Duration, String> {
    let started = Instant::now();
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let _: String = redis::cmd("PING")
        .query_async(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(started.elapsed())
}
