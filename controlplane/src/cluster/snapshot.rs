//! The snapshot bus, written by the publisher: the version key and the sealed envelope read
//! back, and the newer-only publication (one Lua script: envelope, version, `PUBLISH`).

use bb8_redis::redis::{self, aio::MultiplexedConnection};
use omg_shared::cluster::BusKeys;

/// Writes the envelope, the version and publishes, only when newer than what Redis holds —
/// or when Redis holds exactly `ARGV[3]`, a version key the control plane found under a
/// snapshot it cannot verify (forged or garbage), so a forged huge version cannot lock
/// publishing out. An unreadable version key never blocks either.
/// Returns 1 when written, 0 when Redis already had this version or a newer one.
const PUBLISH_SCRIPT: &str = r"
local raw = redis.call('GET', KEYS[2])
local current = tonumber(raw or '0') or -1
local version = tonumber(ARGV[2])
if current >= version and raw ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1
";

/// The raw content of the version key (`None`: absent).
pub async fn read_version(
    conn: &mut MultiplexedConnection,
    keys: &BusKeys,
) -> Result<Option<String>, String> {
    redis::cmd("GET")
        .arg(&keys.snapshot_version)
        .query_async(conn)
        .await
        .map_err(|e| format!("redis GET {}: {e}", keys.snapshot_version))
}

/// The sealed envelope Redis holds (`None`: absent).
pub async fn read_envelope(
    conn: &mut MultiplexedConnection,
    keys: &BusKeys,
) -> Result<Option<Vec<u8>>, String> {
    redis::cmd("GET")
        .arg(&keys.snapshot)
        .query_async(conn)
        .await
        .map_err(|e| format!("redis GET {}: {e}", keys.snapshot))
}

/// Publishes `sealed` as `version` when it is newer than the stored version, or when the
/// version key holds exactly `replace` (empty: nothing to replace). `false`: Redis already
/// held this version or a newer one, and nothing was written.
pub async fn publish(
    conn: &mut MultiplexedConnection,
    keys: &BusKeys,
    sealed: &[u8],
    version: u64,
    replace: &str,
) -> Result<bool, String> {
    let written: i64 = redis::cmd("EVAL")
        .arg(PUBLISH_SCRIPT)
        .arg(3)
        .arg(&keys.snapshot)
        .arg(&keys.snapshot_version)
        .arg(&keys.snapshot_channel)
        .arg(sealed)
        .arg(version)
        .arg(replace)
        .query_async(conn)
        .await
        .map_err(|e| format!("redis publish: {e}"))?;
    Ok(written != 0)
}
