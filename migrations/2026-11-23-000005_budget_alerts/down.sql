DROP TABLE budget_alert_events;
