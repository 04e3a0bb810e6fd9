DROP SEQUENCE snapshot_version_seq;
DROP TABLE usage_dead_letters;
DROP TABLE requests;
