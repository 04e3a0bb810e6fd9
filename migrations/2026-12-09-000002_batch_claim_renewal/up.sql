-- Claims of batch lines are renewed while their worker lives (issue 23): each worker extends
-- `claimed_until` of the lines it holds every third of `batches.claim_lease`, so the lease
-- only bounds how long the lines of a worker that died wait, not how long a request may run.
-- The renewal finds a worker's lines by `claimed_by` among the claimed ones.
CREATE INDEX batch_lines_claimed_by ON batch_lines (claimed_by) WHERE state = 'claimed';
