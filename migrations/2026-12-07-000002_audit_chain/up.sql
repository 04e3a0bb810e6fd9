-- Tamper evidence for the audit log: one hash chain per tenant and one for entries without a
-- tenant. Each entry written from now on stores the hash of the previous entry of its chain
-- (`prev_hash`, 32 zero bytes for the first: the genesis) and its own `hash`, SHA-256 over a
-- canonical encoding of the entry and `prev_hash` (computed by the control plane, see
-- `controlplane/src/db/audit/chain.rs`). Entries written before this migration keep NULL
-- hashes: `omg-controlplane audit verify` counts them as unchained and refuses an unchained
-- entry after its chain started.
ALTER TABLE audit_log ADD COLUMN prev_hash BYTEA, ADD COLUMN hash BYTEA;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_chain_hashes CHECK (
    (prev_hash IS NULL AND hash IS NULL)
    OR (octet_length(prev_hash) = 32 AND octet_length(hash) = 32)
);
-- Appends are serialised per chain (an advisory lock); this index also makes a fork (two
-- entries on the same predecessor) impossible.
CREATE UNIQUE INDEX audit_log_chain_link ON audit_log
    ((COALESCE(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), prev_hash)
    WHERE hash IS NOT NULL;
CREATE INDEX audit_log_chain_head ON audit_log (tenant_id, id DESC) WHERE hash IS NOT NULL;
