-- Budget alerts: one row per delivery attempt, whether it was sent, failed or refused.
--
-- The alert evaluator reads these rows to decide whether a level was already sent to a
-- target: in the current window (`window_label`, e.g. `calendar_month:2026-11-01`) or within
-- the cooldown (`created_at`). Attempts of one delivery (a webhook retried after a 500) share
-- `delivery_id` and number themselves from 1.
--
-- No foreign keys, as for `requests`: the history of what was sent outlives tenants and keys.
-- `target` is the recipient address or the webhook URL without userinfo, query or fragment
-- (they may carry tokens); `error` never holds secrets or full URLs.
CREATE TABLE budget_alert_events (
    id               BIGSERIAL PRIMARY KEY,
    delivery_id      UUID NOT NULL,
    tenant_id        UUID NOT NULL,
    -- Set for a key's budget; NULL for the tenant's.
    key_id           UUID,
    level            TEXT NOT NULL CHECK (level IN ('warning', 'exceeded')),
    window_label     TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    target           TEXT NOT NULL,
    attempt          INTEGER NOT NULL CHECK (attempt >= 1),
    -- `sent`: accepted (SMTP `250` after DATA, HTTP 2xx); `failed`: the attempt did not get
    -- through; `refused`: not attempted (the target resolves to a non-public address that
    -- `budgets.alert.allow_private_targets` does not allow, is not an address or http(s)
    -- URL, or its channel is not configured).
    outcome          TEXT NOT NULL CHECK (outcome IN ('sent', 'failed', 'refused')),
    error            TEXT,
    spend_micro_usd  BIGINT NOT NULL,
    limit_micro_usd  BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- "The last alert of (tenant, level, channel, target)": one index walk per target.
CREATE INDEX budget_alert_events_last ON budget_alert_events
    (tenant_id, level, channel, target, created_at DESC);
-- A tenant's recent history (the evaluator's read, the admin views), newest first.
CREATE INDEX budget_alert_events_tenant_created ON budget_alert_events (tenant_id, created_at DESC);
