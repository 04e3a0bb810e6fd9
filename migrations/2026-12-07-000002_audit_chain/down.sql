DROP INDEX audit_log_chain_head;
DROP INDEX audit_log_chain_link;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_chain_hashes;
ALTER TABLE audit_log DROP COLUMN hash, DROP COLUMN prev_hash;
