//! Alert delivery: webhook retries, failed deliveries and redirects, the SSRF policy.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_after_500s_and_records_every_attempt() {
    let env = Env::new("", vec![500, 500], "UTC", "2026-11-10T12:00:00Z").await;
    let tenant = env
        .tenant("initech", "weekly", &[], &[env.hook.url("/retry")], None)
        .await;
    env.spend(&tenant, 12_000_000, "2026-11-10T11:00:00Z").await;
    let (level, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!(level, BudgetLevel::Exceeded);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, "sent");
    let requests = env.hook.requests();
    assert_eq!(requests.len(), 3);
    // One delivery: the same id and body each time, each attempt signed.
    let delivery = requests[0].header("x-omg-delivery").unwrap().to_owned();
    for request in &requests {
        assert_eq!(request.header("x-omg-delivery"), Some(delivery.as_str()));
        assert_eq!(request.body, requests[0].body);
        assert!(verify_signature(
            request.header("x-omg-signature").unwrap(),
            &request.body
        ));
    }
    let events = env.events(&tenant).await;
    let attempts: Vec<(i32, &str, Option<&str>)> = events
        .iter()
        .map(|e| (e.attempt, e.outcome.as_str(), e.error.as_deref()))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, "failed", Some("HTTP 500")),
            (2, "failed", Some("HTTP 500")),
            (3, "sent", None)
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.delivery_id.to_string() == delivery && e.level == "exceeded"));
    assert!(env.metric(
        r#"omg_cp_alerts_sent_total{channel="webhook",level="exceeded",outcome="failed"} 2"#
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_wait_for_the_next_sweep_and_redirects_are_not_followed() {
    // The first answer is a redirect (to the metadata address), then 200.
    let env = Env::new("", vec![302], "UTC", "2026-11-10T12:00:00Z").await;
    let redirecting = env
        .tenant("umbrella", "weekly", &[], &[env.hook.url("/moved")], None)
        .await;
    env.spend(&redirecting, 9_000_000, "2026-11-10T11:00:00Z")
        .await;
    let (_, sent) = outcomes(&env.evaluate(&redirecting).await);
    assert_eq!(sent[0].1, "failed");
    // A 3xx is not retried and its Location is never visited.
    let requests = env.hook.requests();
    assert_eq!(requests.len(), 1);
    let events = env.events(&redirecting).await;
    assert_eq!(events.len(), 1);
    assert!(events[0]
        .error
        .as_deref()
        .unwrap()
        .contains("redirects are not followed"));
    // Within the sweep interval: not retried; after it: retried (and now accepted).
    env.clock.advance(chrono::Duration::seconds(30));
    let (_, sent) = outcomes(&env.evaluate(&redirecting).await);
    assert!(sent.is_empty());
    env.clock.advance(chrono::Duration::seconds(31));
    let (_, sent) = outcomes(&env.evaluate(&redirecting).await);
    assert_eq!(sent[0].1, "sent");
    assert_eq!(env.hook.requests().len(), 2);

    // A receiver that only answers 503: max_retries + 1 attempts, all recorded.
    let down = WebhookReceiver::start_with(vec![], 503).await.unwrap();
    let tenant = env
        .tenant("hooli", "weekly", &[], &[down.url("/down")], None)
        .await;
    env.spend(&tenant, 9_000_000, "2026-11-10T11:00:00Z").await;
    let (_, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!(sent[0].1, "failed");
    assert_eq!(down.requests().len(), 4);
    let events = env.events(&tenant).await;
    assert_eq!(
        events.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(events.iter().all(|e| e.outcome == "failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    // No allow list: the receivers on 127.0.0.1 are loopback, the metadata address is
    // link-local. Nothing is contacted.
    let env = Env::new(
        "    allow_private_targets: []\n",
        vec![],
        "UTC",
        "2026-11-10T12:00:00Z",
    )
    .await;
    let tenant = env
        .tenant(
            "cyberdyne",
            "calendar_month",
            &["security@example.com"],
            &[
                env.hook.url("/hook"),
                "http://169.254.169.254/latest/meta-data/?token=metadata-canary".to_owned(),
                "http://localhost:9/hook".to_owned(),
            ],
            None,
        )
        .await;
    env.spend(&tenant, 9_500_000, "2026-11-10T11:00:00Z").await;
    let (_, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!(sent.len(), 4);
    assert!(
        sent.iter().all(|(_, outcome)| *outcome == "refused"),
        "{sent:?}"
    );
    assert_eq!(env.smtp.connections(), 0);
    assert!(env.hook.requests().is_empty());
    let events = env.events(&tenant).await;
    for event in &events {
        let error = event.error.as_deref().unwrap();
        assert!(
            error.contains("budgets.alert.allow_private_targets"),
            "{error}"
        );
        assert!(!error.contains("canary") && !event.target.contains("canary"));
    }
    assert!(events[0].error.as_deref().unwrap().contains("loopback"));
    assert!(
        events[2].target.starts_with("http://169.254.169.254/…#"),
        "{}",
        events[2].target
    );
    assert!(events[2].error.as_deref().unwrap().contains("link-local"));
    // A refused target waits the cooldown, not the sweep interval.
    env.clock.advance(chrono::Duration::minutes(5));
    let (_, sent) = outcomes(&env.evaluate(&tenant).await);
    assert!(sent.is_empty());
    assert!(env.metric(
        r#"omg_cp_alerts_sent_total{channel="webhook",level="warning",outcome="refused"} 3"#
    ));
}
