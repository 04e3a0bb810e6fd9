//! The internal channel's replay guard in Redis: each identity nonce is claimed with one
//! `SET <counter_prefix>:nonce:<nonce> 1 NX PX <ms>`, so a forwarded request is accepted by
//! exactly one control-plane replica, once.

use std::time::Duration;

use bb8_redis::redis;

use super::RedisPool;

/// Longest wait for Redis (pool checkout plus the command) before the guard gives up and the
/// request is refused (fail closed).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// Claims `key` for `ttl`: `Ok(true)` when this call set it (first use), `Ok(false)` when it
/// existed (a replay), `Err` when Redis did not answer within [`CLAIM_TIMEOUT`].
pub async fn claim_once(pool: &RedisPool, key: &str, ttl: Duration) -> Result<bool, String> {
    let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let claim = async {
        let mut conn = pool.get().await.map_err(|e| format!("redis: {e}"))?;
        let reply: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async(&mut *conn)
            .await
            .map_err(|e| format!("redis: SET NX of an identity nonce: {e}"))?;
        Ok(reply.is_some())
    };
    tokio::time::timeout(CLAIM_TIMEOUT, claim)
        .await
        .map_err(|_| format!("redis did not answer within {}s", CLAIM_TIMEOUT.as_secs()))?
}
