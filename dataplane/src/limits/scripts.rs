//! The Lua scripts of the shared limits: one round trip before a request (check and take),
//! one after (settle), one per renewal tick. They use Redis's clock (`TIME`), so data planes
//! with skewed clocks still share one window. Key layout: `omg_shared::counters`.

/// Check and (when `ARGV[1] == "1"` and everything fits) take.
///
/// KEYS: the rate hashes, then the parallel zsets, then per budget its reservation hash,
/// reservation-expiry zset and day counters.
/// ARGV: admit flag, lease, lease ttl ms, #rates, #parallel, #budgets; per rate limit and
/// amount; per parallel its limit; per budget limit, amount and #days.
/// Returns `{failed kind (0 none, 1 rate, 2 parallel, 3 budget), failed index (1-based),
/// retry seconds (-1 never), now seconds, per rate total and reset seconds, per budget spent
/// and reserved}`.
pub const ADMIT: &str = r"
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local admit = ARGV[1] == '1'
local lease = ARGV[2]
local ttl = tonumber(ARGV[3])
local nr, np, nb = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local k, a = 1, 7
local failed, failed_index, retry = 0, 0, 0
local rates, pars, buds = {}, {}, {}
for i = 1, nr do
  local key = KEYS[k]; k = k + 1
  local limit, amount = tonumber(ARGV[a]), tonumber(ARGV[a + 1]); a = a + 2
  local flat = redis.call('HGETALL', key)
  local buckets, stale, total, newest = {}, {}, 0, 0
  for j = 1, #flat, 2 do
    local s, c = tonumber(flat[j]), tonumber(flat[j + 1])
    if s <= now_s - 60 then
      stale[#stale + 1] = flat[j]
    else
      total = total + c
      buckets[#buckets + 1] = {s, c}
      if s > newest then newest = s end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  if failed == 0 and amount > 0 and total + amount > limit then
    failed, failed_index = 1, i
    if amount > limit then
      retry = -1
    else
      table.sort(buckets, function(x, y) return x[1] < y[1] end)
      local left = total
      retry = 60
      for _, b in ipairs(buckets) do
        left = left - b[2]
        if left + amount <= limit then retry = b[1] + 60 - now_s; break end
      end
      if retry < 1 then retry = 1 end
    end
  end
  rates[i] = {key, total, newest, amount}
end
for i = 1, np do
  local key = KEYS[k]; k = k + 1
  local limit = tonumber(ARGV[a]); a = a + 1
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  if failed == 0 and admit and redis.call('ZCARD', key) >= limit then
    failed, failed_index, retry = 2, i, 1
  end
  pars[i] = key
end
for i = 1, nb do
  local resv, resx = KEYS[k], KEYS[k + 1]; k = k + 2
  local limit, amount, nd = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]); a = a + 3
  local expired = redis.call('ZRANGEBYSCORE', resx, '-inf', now_ms, 'LIMIT', 0, 1000)
  if #expired > 0 then
    local gone = 0
    for _, v in ipairs(redis.call('HMGET', resv, unpack(expired))) do
      if v then gone = gone + tonumber(v) end
    end
    redis.call('HDEL', resv, unpack(expired))
    redis.call('ZREM', resx, unpack(expired))
    if redis.call('HINCRBY', resv, '_sum', -gone) < 0 then redis.call('HSET', resv, '_sum', 0) end
  end
  local reserved = tonumber(redis.call('HGET', resv, '_sum') or '0')
  local spent = 0
  if nd > 0 then
    for _, v in ipairs(redis.call('MGET', unpack(KEYS, k, k + nd - 1))) do
      if v then spent = spent + tonumber(v) end
    end
  end
  k = k + nd
  if failed == 0 and amount > 0 and (spent + reserved >= limit or spent + reserved + amount > limit) then
    failed, failed_index, retry = 3, i, -1
  end
  buds[i] = {resv, resx, spent, reserved, amount}
end
if admit and failed == 0 then
  for _, r in ipairs(rates) do
    if r[4] > 0 then
      redis.call('HINCRBY', r[1], now_s, r[4])
      redis.call('EXPIRE', r[1], 120)
      r[2] = r[2] + r[4]
      r[3] = now_s
    end
  end
  for _, key in ipairs(pars) do
    redis.call('ZADD', key, now_ms + ttl, lease)
    redis.call('PEXPIRE', key, ttl * 2)
  end
  for _, b in ipairs(buds) do
    if b[5] > 0 then
      redis.call('HSET', b[1], lease, b[5])
      redis.call('HINCRBY', b[1], '_sum', b[5])
      redis.call('ZADD', b[2], now_ms + ttl, lease)
      redis.call('PEXPIRE', b[1], ttl * 2)
      redis.call('PEXPIRE', b[2], ttl * 2)
      b[4] = b[4] + b[5]
    end
  end
end
local out = {failed, failed_index, retry, now_s}
for _, r in ipairs(rates) do
  out[#out + 1] = r[2]
  if r[3] > 0 then out[#out + 1] = r[3] + 60 - now_s else out[#out + 1] = 0 end
end
for _, b in ipairs(buds) do
  out[#out + 1] = b[3]
  out[#out + 1] = b[4]
end
return out
";

/// Settle an admission.
///
/// KEYS: token rate hashes, parallel zsets, then per budget reservation hash, expiry zset and
/// today's day counter. ARGV: lease, token second, #token rates, #parallel, #budgets, day
/// ttl seconds; per token rate the correction; per budget the actual cost.
pub const SETTLE: &str = r"
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local lease, second = ARGV[1], tonumber(ARGV[2])
local nt, np, nb, day_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local k, a = 1, 7
for i = 1, nt do
  local key = KEYS[k]; k = k + 1
  local delta = tonumber(ARGV[a]); a = a + 1
  if delta ~= 0 and second > now_s - 60 and redis.call('HEXISTS', key, second) == 1 then
    if redis.call('HINCRBY', key, second, delta) < 0 then redis.call('HSET', key, second, 0) end
  end
end
for i = 1, np do
  redis.call('ZREM', KEYS[k], lease); k = k + 1
end
for i = 1, nb do
  local resv, resx, day = KEYS[k], KEYS[k + 1], KEYS[k + 2]; k = k + 3
  local cost = tonumber(ARGV[a]); a = a + 1
  local held = redis.call('HGET', resv, lease)
  if held then
    redis.call('HDEL', resv, lease)
    if redis.call('HINCRBY', resv, '_sum', -tonumber(held)) < 0 then redis.call('HSET', resv, '_sum', 0) end
  end
  redis.call('ZREM', resx, lease)
  if cost > 0 then
    redis.call('INCRBY', day, cost)
    redis.call('EXPIRE', day, day_ttl)
  end
end
return 1
";

/// Renew held leases and beat the heart.
///
/// KEYS: the data plane set, then `n` lease zsets, then keys only kept alive (reservation
/// hashes). ARGV: instance id, ttl ms, `n`, then per zset its lease. Leases already gone
/// (expired, or settled meanwhile) are not recreated.
pub const RENEW: &str = r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, n = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - 600000)
local renewed = 0
for i = 2, n + 1 do
  renewed = renewed + redis.call('ZADD', KEYS[i], 'XX', 'CH', now_ms + ttl, ARGV[i + 2])
end
for i = 2, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ttl * 2)
end
return renewed
";

/// Add spend (settlements made while Redis was unreachable). KEYS: day counters. ARGV: day
/// ttl seconds, then the amounts.
pub const ADD_SPEND: &str = r"
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], tonumber(ARGV[i + 1]))
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[1]))
end
return #KEYS
";
