DROP SEQUENCE snapshot_version_seq;
