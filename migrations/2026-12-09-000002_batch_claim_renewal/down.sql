DROP INDEX IF EXISTS batch_lines_claimed_by;
