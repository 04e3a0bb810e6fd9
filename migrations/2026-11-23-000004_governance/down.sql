DROP TABLE budget_defaults;
DROP TABLE rate_limit_defaults;
