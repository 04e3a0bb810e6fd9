DROP TABLE usage_rollups_coarse;
DROP TABLE usage_rollups;
