-- Claims of batch lines are renewed while their worker lives (issue 23): each worker extends
-- `claimed_until` of the lines it holds every third of `batches.claim_lease`, so the lease
-- only bounds how long the lines of a worker that died wait, not how long a request may run.
-- The renewal finds a worker's lines by `claimed_by` among the claimed ones.
CREATE INDEX batch_lines_claimed_by ON batch_lines (claimed_by) WHERE state = 'claimed';

-- OpenAI's `output_expires_after.seconds` of a batch: its output and error files expire that
-- long after they are written (anchor `created_at`); null keeps them until deleted.
ALTER TABLE batches ADD COLUMN output_expires_secs INTEGER;
