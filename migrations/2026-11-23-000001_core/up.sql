-- Control plane core: tenants, users, credentials, memberships, API keys, model catalog
-- overrides, allowlists and defaults, sessions, audit log, and the bootstrap ledger.
-- Money is integer micro-USD (BIGINT); times are timestamptz (UTC).

CREATE TABLE tenants (
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL DEFAULT 'organization' CHECK (kind IN ('organization', 'personal')),
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    -- NULL: every enabled alias; otherwise the aliases this tenant may call.
    allowed_models   TEXT[],
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Soft delete keeps usage history joinable; a deleted tenant's name can be reused.
    deleted_at       TIMESTAMPTZ
);
CREATE UNIQUE INDEX tenants_name_live ON tenants (lower(name)) WHERE deleted_at IS NULL;

CREATE TABLE users (
    id                  UUID PRIMARY KEY,
    email               TEXT NOT NULL,
    name                TEXT NOT NULL DEFAULT '',
    is_super_admin      BOOLEAN NOT NULL DEFAULT false,
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    personal_tenant_id  UUID REFERENCES tenants (id),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at       TIMESTAMPTZ
);
CREATE UNIQUE INDEX users_email ON users (lower(email));

-- Local passwords (argon2id PHC strings). OIDC identities come with SSO.
CREATE TABLE credentials (
    user_id        UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash  TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer', 'user')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Virtual keys sk-<prefix>.<secret>: only HMAC-SHA256(pepper, full key) is stored.
CREATE TABLE api_keys (
    id                  UUID PRIMARY KEY,
    tenant_id           UUID NOT NULL REFERENCES tenants (id),
    prefix              TEXT NOT NULL UNIQUE,
    secret_hash         BYTEA NOT NULL CHECK (length(secret_hash) = 32),
    name                TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'revoked')),
    scopes              TEXT[] NOT NULL DEFAULT '{}',
    expires_at          TIMESTAMPTZ,
    allowed_models      TEXT[],
    budget_micro_usd    BIGINT CHECK (budget_micro_usd >= 0),
    warning_threshold   DOUBLE PRECISION CHECK (warning_threshold > 0 AND warning_threshold <= 1),
    requests_per_minute BIGINT CHECK (requests_per_minute >= 0),
    tokens_per_minute   BIGINT CHECK (tokens_per_minute >= 0),
    parallel_requests   BIGINT CHECK (parallel_requests >= 0),
    created_by          UUID REFERENCES users (id) ON DELETE SET NULL,
    last_used_at        TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at          TIMESTAMPTZ
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

-- Tenant rate-limit overrides (NULL column = inherit the global default).
CREATE TABLE tenant_rate_limits (
    tenant_id           UUID PRIMARY KEY REFERENCES tenants (id),
    requests_per_minute BIGINT CHECK (requests_per_minute >= 0),
    tokens_per_minute   BIGINT CHECK (tokens_per_minute >= 0),
    parallel_requests   BIGINT CHECK (parallel_requests >= 0),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Tenant budget overrides.
CREATE TABLE tenant_budgets (
    tenant_id           UUID PRIMARY KEY REFERENCES tenants (id),
    budget_micro_usd    BIGINT NOT NULL CHECK (budget_micro_usd >= 0),
    warning_threshold   DOUBLE PRECISION NOT NULL CHECK (warning_threshold > 0 AND warning_threshold <= 1),
    refresh_schedule    TEXT NOT NULL,
    alert_emails        TEXT[] NOT NULL DEFAULT '{}',
    alert_webhooks      TEXT[] NOT NULL DEFAULT '{}',
    alert_cooldown_secs BIGINT,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Model catalog overrides. An alias with rows here is served from these rows instead of the
-- YAML catalog; `spec` is the catalog entry (the YAML schema) without its secret, which is
-- AES-256-GCM encrypted in `credential` (key_version || nonce || ciphertext+tag).
CREATE TABLE model_deployments (
    id                      UUID PRIMARY KEY,
    alias                   TEXT NOT NULL,
    spec                    JSONB NOT NULL,
    credential              BYTEA,
    credential_key_version  INTEGER,
    enabled                 BOOLEAN NOT NULL DEFAULT true,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX model_deployments_alias ON model_deployments (alias);

-- Alias-level switches, also for aliases that only exist in the YAML catalog.
CREATE TABLE model_alias_settings (
    alias       TEXT PRIMARY KEY,
    enabled     BOOLEAN NOT NULL DEFAULT true,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Aliases granted to new personal tenants (and re-synced to them on change).
CREATE TABLE default_models (
    alias       TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Rotating opaque refresh tokens, stored as SHA-256. A family is one login; presenting a
-- rotated token again revokes the whole family.
CREATE TABLE refresh_tokens (
    id           UUID PRIMARY KEY,
    family_id    UUID NOT NULL,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    realm        TEXT NOT NULL CHECK (realm IN ('admin', 'user')),
    token_hash   BYTEA NOT NULL UNIQUE,
    issued_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    rotated_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    user_agent   TEXT,
    ip           TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Append-only audit log: every mutation, with secrets redacted before they get here.
CREATE TABLE audit_log (
    id             BIGSERIAL PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_user_id  UUID,
    actor_email    TEXT NOT NULL,
    action         TEXT NOT NULL,
    target_type    TEXT NOT NULL,
    target_id      TEXT NOT NULL,
    tenant_id      UUID,
    before         JSONB,
    after          JSONB,
    request_id     TEXT NOT NULL,
    ip             TEXT
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at DESC);
CREATE INDEX audit_log_actor ON audit_log (actor_user_id, at DESC);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- Bootstrap items applied once each ("tenant:demo", "api_key:demo", …), so a restart never
-- recreates what an operator deleted or resets what they changed.
CREATE TABLE bootstrap_ledger (
    item        TEXT PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
