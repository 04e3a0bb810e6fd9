-- Governance defaults set at run time through the admin API. Each table holds at most one row
-- (`id` is always true); while it is absent the YAML config applies, once it is set it wins
-- over the config (`rate_limits.default_*`, `budgets.default_usd`,
-- `budgets.warning_threshold_perc`, `budgets.refresh_schedule`). `0` = unlimited / no budget,
-- as in the config.

-- Global default rate limits (`PUT /admin/settings/rate-limits`).
CREATE TABLE rate_limit_defaults (
    id                        BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    requests_per_minute       BIGINT NOT NULL CHECK (requests_per_minute >= 0),
    tokens_per_minute         BIGINT NOT NULL CHECK (tokens_per_minute >= 0),
    parallel_requests_key     BIGINT NOT NULL CHECK (parallel_requests_key >= 0),
    parallel_requests_tenant  BIGINT NOT NULL CHECK (parallel_requests_tenant >= 0),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The default budget of tenants without an override (`PUT /admin/budgets/default`);
-- its window is also the window of key budgets.
CREATE TABLE budget_defaults (
    id                 BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    budget_micro_usd   BIGINT NOT NULL CHECK (budget_micro_usd >= 0),
    warning_threshold  DOUBLE PRECISION NOT NULL CHECK (warning_threshold > 0 AND warning_threshold <= 1),
    refresh_schedule   TEXT NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
