ALTER TABLE batches DROP COLUMN IF EXISTS output_expires_secs;
DROP INDEX IF EXISTS batch_lines_claimed_by;
