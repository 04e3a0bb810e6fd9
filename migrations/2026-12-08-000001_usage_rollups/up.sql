-- Usage rollups: hourly sums of `requests`, maintained by the usage ingester in the same
-- transaction as the rows it inserts (only rows actually inserted: a redelivered event is
-- never counted twice) and rebuilt from `requests` by `omg-controlplane rollups rebuild`.
-- Reports (`/admin/usage/*`) read only this table: any timezone's days are assembled from
-- the hourly buckets (docs/reporting.md).
--
-- One row per (hour, tenant, key, user, alias, provider, deployment, status). The dimensions
-- copy the request's (nullable, no foreign keys, like `requests`); `NULLS NOT DISTINCT`
-- makes a missing dimension a value of its own in the unique key, so the upsert's
-- `ON CONFLICT` finds the row of requests without a key or alias.
--
-- Sums are BIGINT; the writers saturate at the BIGINT maximum instead of failing a batch
-- (`LEAST(… ::numeric, 9223372036854775807)`), and readers sum them as NUMERIC.
--
-- `latency_hist` and `ttft_hist` count requests per latency bucket (milliseconds). The bucket
-- bounds are `db/reporting.rs::LATENCY_BOUNDS_MS` (24 bounds from 5 ms to 120 s, each about
-- 1.5 to 2 times the previous; 25 buckets: below the first bound, between two bounds, at or
-- above the last). Percentiles are estimated from them by linear interpolation inside the
-- bucket (docs/reporting.md states the precision). Changing the bounds requires a rebuild.
CREATE TABLE usage_rollups (
    hour               TIMESTAMPTZ NOT NULL,
    tenant_id          UUID,
    key_id             UUID,
    user_id            UUID,
    alias              TEXT,
    provider           TEXT,
    deployment         TEXT,
    status             INTEGER NOT NULL,
    requests           BIGINT NOT NULL,
    -- Requests answered with a status >= 400 (499: the client left).
    errors             BIGINT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cost_micro_usd     BIGINT NOT NULL,
    latency_ms_sum     BIGINT NOT NULL,
    -- Requests with a time to first token (streams), and the sum of those times.
    ttft_count         BIGINT NOT NULL,
    ttft_ms_sum        BIGINT NOT NULL,
    latency_hist       BIGINT[] NOT NULL,
    ttft_hist          BIGINT[] NOT NULL,
    CONSTRAINT usage_rollups_key UNIQUE NULLS NOT DISTINCT
        (hour, tenant_id, key_id, user_id, alias, provider, deployment, status)
);
-- Reports read a time range, optionally of some tenants, one key or one alias.
CREATE INDEX usage_rollups_tenant_hour ON usage_rollups (tenant_id, hour);
CREATE INDEX usage_rollups_key_hour ON usage_rollups (key_id, hour);
CREATE INDEX usage_rollups_alias_hour ON usage_rollups (alias, hour);
-- (The unique key's index, led by `hour`, serves unfiltered ranges.)

-- The same sums at three coarse grains, so the common reports read one row per hour and
-- entity instead of every (key, user, provider, deployment, status) combination:
-- `all` (per hour: tenant_id and alias NULL), `tenant` (per hour and tenant) and `alias` (per
-- hour and alias). Written by the same statements as `usage_rollups` (one
-- `GROUP BY GROUPING SETS` upsert per batch), rebuilt with them. `grain` tells a tenant-less
-- `tenant` row from an `all` row. Every batch updates its hours' `all` row: concurrent
-- batches of one hour queue on that row lock until their transactions commit.
CREATE TABLE usage_rollups_coarse (
    grain              TEXT NOT NULL CHECK (grain IN ('all', 'tenant', 'alias')),
    hour               TIMESTAMPTZ NOT NULL,
    tenant_id          UUID,
    alias              TEXT,
    requests           BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cost_micro_usd     BIGINT NOT NULL,
    latency_ms_sum     BIGINT NOT NULL,
    ttft_count         BIGINT NOT NULL,
    ttft_ms_sum        BIGINT NOT NULL,
    latency_hist       BIGINT[] NOT NULL,
    ttft_hist          BIGINT[] NOT NULL,
    -- Covering: reports read an entity's hours with an index-only scan, in entity order,
    -- instead of one heap page per hour (rows of one hour are written together, so an
    -- entity's hours are scattered over the heap).
    CONSTRAINT usage_rollups_coarse_key UNIQUE NULLS NOT DISTINCT
        (grain, tenant_id, alias, hour)
        INCLUDE (requests, errors, prompt_tokens, completion_tokens, cached_tokens,
                 cost_micro_usd, latency_ms_sum, ttft_count, ttft_ms_sum, latency_hist,
                 ttft_hist)
);
-- The retention job deletes expired hours (`retention.rollups`).
CREATE INDEX usage_rollups_coarse_hour ON usage_rollups_coarse (hour);
