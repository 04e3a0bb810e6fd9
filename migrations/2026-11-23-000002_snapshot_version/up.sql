-- Snapshot versions (cluster mode). One sequence, so versions strictly increase across
-- control plane restarts and replicas; data planes never accept a version older than the one
-- they hold. A version is allocated inside the transaction that reads the snapshot's rows.
CREATE SEQUENCE snapshot_version_seq;
