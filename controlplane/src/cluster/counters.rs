//! The shared counters, seen from the control plane: the max-merge of rebuilt spend counters
//! (the control plane only ever raises them) and the count of live data planes from their
//! heartbeats.

use bb8_redis::redis::{self, aio::MultiplexedConnection};
use chrono::{DateTime, Utc};
use omg_shared::counters::{CounterKeys, DATAPLANE_LIVE_MS, SPEND_DAY_TTL_SECS};

use super::RedisPool;

/// Raises each `KEYS[i]` to `ARGV[i + 1]` when it holds less (absent or unreadable = 0), with
/// the TTL `ARGV[1]`; a counter already at or above keeps its value (the data planes may have
/// settled spend that is not ingested yet) and gets the TTL only if it has none. Returns how
/// many were raised.
const MERGE_SCRIPT: &str = r"
local ttl = tonumber(ARGV[1])
local raised = 0
for i, key in ipairs(KEYS) do
  local want = tonumber(ARGV[i + 1])
  local have = tonumber(redis.call('GET', key) or '0') or 0
  if want > have then
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
    raised = raised + 1
  elseif redis.call('TTL', key) == -1 then
    redis.call('EXPIRE', key, ttl)
  end
end
return raised
";

/// Merges one batch of day spend counters (`(name, micro-USD)`, all of one tenant: one hash
/// tag, so one Redis Cluster slot) with `max(existing, value)`, with the day counters' TTL.
/// Returns how many were raised.
pub async fn merge_spend(
    conn: &mut MultiplexedConnection,
    batch: &[(&String, &i64)],
) -> Result<usize, String> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(MERGE_SCRIPT).arg(batch.len());
    for (name, _) in batch {
        cmd.arg(name.as_str());
    }
    cmd.arg(SPEND_DAY_TTL_SECS);
    for (_, micros) in batch {
        cmd.arg(**micros);
    }
    let raised: i64 = cmd
        .query_async(conn)
        .await
        .map_err(|e| format!("redis: merging spend counters: {e}"))?;
    Ok(usize::try_from(raised).unwrap_or(0))
}

/// Heartbeats older than this are removed from the set (dead instances never come back under
/// the same id).
const DATAPLANE_FORGET_MS: i64 = 3_600_000;

/// Data planes whose last heartbeat in `<counter_prefix>:dataplanes` is younger than
/// [`DATAPLANE_LIVE_MS`]; at least 1, and 1 when Redis cannot say. Also forgets members
/// silent for an hour.
pub async fn live_dataplanes(counter_prefix: &str, redis: &RedisPool, now: DateTime<Utc>) -> u32 {
    let key = CounterKeys::new(counter_prefix).dataplanes();
    let now_ms = now.timestamp_millis();
    let counted: Result<u64, String> = async {
        let mut conn = redis.get().await.map_err(|e| e.to_string())?;
        let _: i64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({}", now_ms - DATAPLANE_FORGET_MS))
            .query_async(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("ZCOUNT")
            .arg(&key)
            .arg(format!("({}", now_ms - DATAPLANE_LIVE_MS))
            .arg("+inf")
            .query_async(&mut *conn)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match counted {
        Ok(n) => u32::try_from(n).unwrap_or(u32::MAX).max(1),
        Err(error) => {
            tracing::debug!(%error, "cannot count live data planes; assuming 1");
            1
        }
    }
}
