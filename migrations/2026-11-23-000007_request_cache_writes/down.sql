ALTER TABLE requests DROP COLUMN cache_write_tokens;
