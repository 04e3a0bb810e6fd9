-- Prompt tokens a request wrote to the provider's prompt cache (Anthropic, Bedrock), billed at
-- the deployment's `price_cache_write`; 0 for providers without cache writes.
ALTER TABLE requests ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
