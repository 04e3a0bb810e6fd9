-- Files and batches (issue 23).
--
-- `files`: one row per uploaded (or batch-written) file. The content lives in the object
-- store under `storage_key`, a generated name that never contains the client's file name
-- (so no path the client sends can reach the store). `status`: `uploading` while the body
-- streams in, `processed` once stored, `error` when the upload failed, `deleted` after a
-- DELETE or the sweeper (the blob is gone then; the row stays so ids are never reused).
CREATE TABLE files (
    id              TEXT PRIMARY KEY,                 -- `file-` + 24 random base62
    tenant_id       UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id          UUID,                             -- the key that uploaded it (none: written by a batch)
    user_id         UUID,
    purpose         TEXT NOT NULL,
    filename        TEXT NOT NULL,                    -- metadata only
    bytes           BIGINT NOT NULL DEFAULT 0,        -- plaintext size
    status          TEXT NOT NULL,
    status_details  TEXT,
    storage_key     TEXT NOT NULL UNIQUE,
    -- 0: stored as uploaded; 1: AES-256-GCM in 64 KiB chunks with `files.encryption_key`.
    encryption      SMALLINT NOT NULL DEFAULT 0,
    sha256          TEXT,                             -- of the plaintext, hex
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ,
    deleted_at      TIMESTAMPTZ,
    CONSTRAINT files_status CHECK (status IN ('uploading', 'processed', 'error', 'deleted'))
);
-- Listing a tenant's files newest first (ids tie-break within a timestamp).
CREATE INDEX files_tenant_created ON files (tenant_id, created_at DESC, id DESC);
-- The sweeper: expired files not yet deleted, oldest expiry first.
CREATE INDEX files_expiring ON files (expires_at) WHERE status <> 'deleted' AND expires_at IS NOT NULL;

-- `batches`: OpenAI's batch object. `key_id` is the key the batch runs as (its limits,
-- budget, allowlist); `request_counts` are kept in step with `batch_lines`.
CREATE TABLE batches (
    id                 TEXT PRIMARY KEY,              -- `batch_` + 24 random base62
    tenant_id          UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id             UUID NOT NULL,
    user_id            UUID,
    endpoint           TEXT NOT NULL,
    input_file_id      TEXT NOT NULL REFERENCES files (id),
    completion_window  TEXT NOT NULL,
    status             TEXT NOT NULL,
    output_file_id     TEXT REFERENCES files (id),
    error_file_id      TEXT REFERENCES files (id),
    errors             JSONB,                         -- validation errors: [{code, message, param, line}]
    metadata           JSONB,
    model              TEXT,
    total              INTEGER NOT NULL DEFAULT 0,
    completed          INTEGER NOT NULL DEFAULT 0,
    failed             INTEGER NOT NULL DEFAULT 0,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    cached_tokens      BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    -- Why the batch stopped early (`budget_exceeded`, …): the remaining lines fail with it.
    stop_code          TEXT,
    stop_message       TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    in_progress_at     TIMESTAMPTZ,
    expires_at         TIMESTAMPTZ NOT NULL,
    finalizing_at      TIMESTAMPTZ,
    completed_at       TIMESTAMPTZ,
    failed_at          TIMESTAMPTZ,
    expired_at         TIMESTAMPTZ,
    cancelling_at      TIMESTAMPTZ,
    cancelled_at       TIMESTAMPTZ,
    CONSTRAINT batches_status CHECK (status IN ('validating', 'failed', 'in_progress',
        'finalizing', 'completed', 'expired', 'cancelling', 'cancelled'))
);
CREATE INDEX batches_tenant_created ON batches (tenant_id, created_at DESC, id DESC);
-- The worker: batches with work to do.
CREATE INDEX batches_active ON batches (status) WHERE status IN ('in_progress', 'finalizing', 'cancelling');

-- `batch_lines`: one row per input line, the unit a worker claims. `state`: `pending`
-- (not yet sent, or sent by a worker that died: `claimed_until` past), `claimed` (a worker
-- holds it until `claimed_until`), `done` (answered 2xx), `failed` (answered otherwise, or
-- stopped: budget, cancel, expiry). `attempts` counts sends; every send of a line carries
-- the same `Idempotency-Key` (`batch_<batch id>_<line>`), so a line re-sent after a crash
-- is answered from the data plane's stored answer, not by a second provider call.
CREATE TABLE batch_lines (
    batch_id       TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    line           INTEGER NOT NULL,                  -- 1-based line number in the input file
    custom_id      TEXT NOT NULL,
    method         TEXT NOT NULL,
    url            TEXT NOT NULL,
    body           BYTEA NOT NULL,                    -- the request body as sent
    state          TEXT NOT NULL DEFAULT 'pending',
    claimed_by     TEXT,
    claimed_until  TIMESTAMPTZ,
    attempts       INTEGER NOT NULL DEFAULT 0,
    status_code    INTEGER,
    request_id     TEXT,
    response       BYTEA,                             -- the answer body (2xx) or null
    error_code     TEXT,
    error_message  TEXT,
    finished_at    TIMESTAMPTZ,
    PRIMARY KEY (batch_id, line),
    CONSTRAINT batch_lines_state CHECK (state IN ('pending', 'claimed', 'done', 'failed'))
);
CREATE UNIQUE INDEX batch_lines_custom_id ON batch_lines (batch_id, custom_id);
CREATE INDEX batch_lines_open ON batch_lines (batch_id, line) WHERE state IN ('pending', 'claimed');

-- Usage rows of batch lines carry their batch.
ALTER TABLE requests ADD COLUMN batch_id TEXT;
CREATE INDEX requests_batch ON requests (batch_id) WHERE batch_id IS NOT NULL;
