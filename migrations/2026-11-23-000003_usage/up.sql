-- Usage: one row per request metered by a data plane, ingested from the Redis usage stream;
-- the entries that could not be read as usage events.

-- One row per request (per `UsageEvent`). `event_id` is the event's idempotency key (the
-- gateway-minted UUIDv7, or a UUIDv5 of `request_id` for records without one): ingestion is
-- at-least-once and `INSERT … ON CONFLICT (event_id) DO NOTHING` makes it exactly-once here.
--
-- tenant_id, key_id and user_id carry no foreign keys, deliberately: a record of money must
-- be stored even when its tenant, key or user was deleted (users are hard-deleted) or when it
-- arrives after the row it names is gone, and a foreign key would turn that into a rejected
-- batch. Reports join them with LEFT JOINs. No CHECK constraints either: ingestion validates
-- every event before inserting it (text without NUL and at most 1024 bytes, integers within
-- BIGINT, plausible timestamps) and dead-letters the ones that fail, so an insert can only
-- fail because the database is unavailable, never because of one bad record.
CREATE TABLE requests (
    event_id           UUID PRIMARY KEY,
    -- `x-request-id` (the client's when it sent a sane one): correlation with logs only.
    request_id         TEXT NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    tenant_id          UUID,
    key_id             UUID,
    user_id            UUID,
    alias              TEXT,
    provider           TEXT,
    deployment         TEXT,
    -- `chat.completions`, `completions`, `embeddings`, …
    endpoint           TEXT NOT NULL,
    -- HTTP status answered to the client (499: the client went away first).
    status             INTEGER NOT NULL,
    error_code         TEXT,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    total_tokens       BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cost_micro_usd     BIGINT NOT NULL,
    latency_ms         BIGINT NOT NULL,
    ttft_ms            BIGINT,
    stream             BOOLEAN NOT NULL,
    -- Token counts are estimates (stream cut before the provider reported usage).
    usage_estimated    BOOLEAN NOT NULL,
    schema_version     INTEGER NOT NULL,
    ingested_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Reports filter by tenant, key or alias over a time range, newest first.
CREATE INDEX requests_tenant_started ON requests (tenant_id, started_at DESC);
CREATE INDEX requests_key_started ON requests (key_id, started_at DESC);
CREATE INDEX requests_alias_started ON requests (alias, started_at DESC);
-- A btree rather than BRIN: rows arrive nearly in started_at order, so a BRIN index would be
-- tiny and good at wide ranges, but it cannot return rows in order, and the recent-requests
-- views page newest-first with a LIMIT (`ORDER BY started_at DESC LIMIT n`, keyset
-- `started_at < $cursor`), which a BRIN index answers only by reading and sorting the whole
-- range. Late records (spool replays after an outage, reclaimed entries) also widen BRIN
-- ranges. Revisit (BRIN plus time partitioning) when the table reaches billions of rows.
CREATE INDEX requests_started ON requests (started_at DESC);
-- Looking a request up by the id a client or a log line shows.
CREATE INDEX requests_request_id ON requests (request_id);

-- Usage stream entries that are not usage events (bad JSON, missing field, invalid values).
-- They are acknowledged and removed from the stream once parked here, so they never block
-- ingestion; an operator inspects, fixes and replays them (docs/operations.md). Unique per
-- stream entry, so an entry delivered again is parked once.
CREATE TABLE usage_dead_letters (
    id           BIGSERIAL PRIMARY KEY,
    stream       TEXT NOT NULL,
    entry_id     TEXT NOT NULL,
    -- The entry's `event` field as received (capped at 1 MiB), or all its fields as a JSON
    -- object when that field is missing. Raw bytes: it need not be UTF-8.
    payload      BYTEA NOT NULL,
    error        TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (stream, entry_id)
);
CREATE INDEX usage_dead_letters_received ON usage_dead_letters (received_at DESC);
