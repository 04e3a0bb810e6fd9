//! The shared store of cluster mode: one hash per key (`CounterKeys::idempotency`), read and
//! written by the three scripts below over one multiplexed connection, reopened after a
//! failure (the style of `limits::redis`).
//!
//! Fields: `state` (`pending` | `done`), `fp` (hex fingerprint of the request), `owner` (the
//! claim's random token); once done, `status`, `ctype` and `body`. A pending key expires with
//! its lease, a done key after `idempotency.ttl`.

use std::time::Duration;

use bytes::Bytes;
use redis::Script;

use crate::redis_script::ScriptConn;

use super::Stored;

/// Claim, or read what is there. KEYS: the key. ARGV: owner, fingerprint, lease ms.
/// Returns `{'claimed'}`, `{'pending'}`, `{'mismatch'}` or `{'done', status, ctype, body}`.
const CLAIM: &str = r"
local h = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'ctype', 'body')
if not h[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[2], 'owner', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'claimed'}
end
if h[2] ~= ARGV[2] then return {'mismatch'} end
if h[1] == 'done' then return {'done', h[3] or '', h[4] or '', h[5] or ''} end
return {'pending'}
";

/// Store the answer, if the claim is still ours. KEYS: the key. ARGV: owner, status,
/// content type, body, ttl ms. Returns 1 when stored.
const COMPLETE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'state', 'owner')
if h[1] ~= 'pending' or h[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'ctype', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

/// Release a claim that stored nothing, if it is still ours and pending. KEYS: the key.
/// ARGV: owner. Returns 1 when released.
const RELEASE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'state', 'owner')
if h[1] ~= 'pending' or h[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

/// What the claim script found.
pub enum Found {
    /// Ours now.
    Claimed,
    /// Another request runs under the key.
    Pending,
    /// The key is bound to another request.
    Mismatch,
    /// The stored answer.
    Done(Stored),
}

/// Idempotency keys in Redis.
pub struct RedisStore {
    redis: ScriptConn,
    claim: Script,
    complete: Script,
    release: Script,
}

impl RedisStore {
    /// A store on `url`; connects lazily.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            redis: ScriptConn::new(url, timeout, "rate_limits.redis_timeout")?,
            claim: Script::new(CLAIM),
            complete: Script::new(COMPLETE),
            release: Script::new(RELEASE),
        })
    }

    /// Claims `key` for `owner` with a lease, or reads what is there.
    pub async fn claim(
        &self,
        key: &str,
        owner: &str,
        fingerprint: &str,
        lease_ms: u64,
    ) -> Result<Found, String> {
        let mut invocation = self.claim.prepare_invoke();
        invocation
            .key(key)
            .arg(owner)
            .arg(fingerprint)
            .arg(lease_ms);
        let reply: Vec<Vec<u8>> = self.redis.run(invocation).await?;
        decode(reply)
    }

    /// Stores the answer of `owner`'s claim for `ttl_ms`; `false` if the claim is gone.
    pub async fn complete(
        &self,
        key: &str,
        owner: &str,
        stored: &Stored,
        ttl_ms: u64,
    ) -> Result<bool, String> {
        let mut invocation = self.complete.prepare_invoke();
        invocation
            .key(key)
            .arg(owner)
            .arg(stored.status)
            .arg(&stored.content_type)
            .arg(stored.body.as_ref())
            .arg(ttl_ms);
        self.redis
            .run::<i64>(invocation)
            .await
            .map(|stored| stored == 1)
    }

    /// Releases `owner`'s claim if it is still pending.
    pub async fn release(&self, key: &str, owner: &str) -> Result<(), String> {
        let mut invocation = self.release.prepare_invoke();
        invocation.key(key).arg(owner);
        self.redis.run::<i64>(invocation).await.map(|_| ())
    }
}

/// Reads the claim script's reply.
fn decode(reply: Vec<Vec<u8>>) -> Result<Found, String> {
    let unexpected = || {
        "unexpected idempotency script reply (another gateway version on this Redis prefix?)"
            .to_owned()
    };
    let mut parts = reply.into_iter();
    let kind = parts.next().ok_or_else(unexpected)?;
    match kind.as_slice() {
        b"claimed" => Ok(Found::Claimed),
        b"pending" => Ok(Found::Pending),
        b"mismatch" => Ok(Found::Mismatch),
        b"done" => {
            let (Some(status), Some(content_type), Some(body)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(unexpected());
            };
            let status = std::str::from_utf8(&status)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|s| (200..300).contains(s))
                .ok_or_else(unexpected)?;
            Ok(Found::Done(Stored {
                status,
                content_type: String::from_utf8(content_type).map_err(|_| unexpected())?,
                body: Bytes::from(body),
            }))
        }
        _ => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode() {
        let done = decode(vec![
            b"done".to_vec(),
            b"200".to_vec(),
            b"application/json".to_vec(),
            b"{}".to_vec(),
        ]);
        assert!(
            matches!(done, Ok(Found::Done(Stored { status: 200, ref content_type, ref body }))
            if content_type == "application/json" && body.as_ref() == b"{}")
        );
        assert!(matches!(
            decode(vec![b"claimed".to_vec()]),
            Ok(Found::Claimed)
        ));
        assert!(matches!(
            decode(vec![b"pending".to_vec()]),
            Ok(Found::Pending)
        ));
        assert!(matches!(
            decode(vec![b"mismatch".to_vec()]),
            Ok(Found::Mismatch)
        ));
        assert!(decode(vec![]).is_err());
        assert!(decode(vec![b"done".to_vec(), b"200".to_vec()]).is_err());
        assert!(decode(vec![
            b"done".to_vec(),
            b"500".to_vec(),
            b"x".to_vec(),
            b"y".to_vec()
        ])
        .is_err());
    }
}
