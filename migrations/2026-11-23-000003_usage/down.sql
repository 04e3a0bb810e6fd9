DROP TABLE usage_dead_letters;
DROP TABLE requests;
