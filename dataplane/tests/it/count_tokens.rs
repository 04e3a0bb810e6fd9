//! `POST /v1/messages/count_tokens` through the data plane binary: forwarded to an alias's
//! Anthropic deployments (the mock counts like Anthropic, 1000 more than any estimate),
//! answered with the gateway's estimate for other aliases, never metered — no usage record,
//! no token limit or budget, no idempotency store — but admitted against the requests-per-
//! minute and parallel limits, and leaving the deployments' breakers alone.

use serde_json::{json, Value};

use crate::harness::*;

const COUNT: &str = "/v1/messages/count_tokens";
/// What the mock adds to its word count (see the mock upstream's `anthropic/count.rs`).
const FRAMING: u64 = 1000;

fn count_request(gateway: &Gateway, request_id: &str) -> reqwest::RequestBuilder {
    gateway
        .client
        .post(format!("{}{COUNT}", gateway.base))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("x-request-id", request_id)
}

fn messages_request(gateway: &Gateway, request_id: &str) -> reqwest::RequestBuilder {
    gateway
        .client
        .post(format!("{}/v1/messages", gateway.base))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("x-request-id", request_id)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `omg_requests_total` for the count_tokens endpoint, one alias, provider and status.
async fn counted_requests(gateway: &Gateway, alias: &str, provider: &str, status: u16) -> u64 {
    let text = gateway
        .client
        .get(format!("{}/metrics", gateway.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!(
        "omg_requests_total{{alias=\"{alias}\",endpoint=\"messages.count_tokens\",provider=\"{provider}\",status=\"{status}\"}} "
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for the usage record of a later metered request, then checks that none of
/// `request_ids` (answered before it) has one and that no record names count_tokens.
async fn assert_unmetered(gateway: &Gateway, later: &str, request_ids: &[&str]) {
    gateway.usage_of(later).await;
    let records = gateway.usage();
    for record in &records {
        assert_ne!(record["endpoint"], "messages.count_tokens", "{record}");
        assert!(
            !request_ids.contains(&record["request_id"].as_str().unwrap_or("")),
            "{record}"
        );
    }
}

#[tokio::test]
async fn an_anthropic_alias_gets_anthropics_own_count_unmetered() {
    let upstream = upstream().await;
    let entries = [Entry::new("claude", &upstream.origin(), "claude-test")
        .provider("anthropic")
        .with("metadata", "{anthropic_beta: \"feature-a\"}")];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let body = json!({
        "model": "claude",
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "How many tokens is this sentence?"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"}
    });
    let ids = ["it-count-1", "it-count-2", "it-count-3"];
    for id in ids {
        let response = count_request(&gateway, id)
            .header("anthropic-beta", "token-counting-2024-11-01")
            .header("idempotency-key", "count-once")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", gateway.log());
        assert_eq!(header(&response, "request-id"), Some(id));
        assert_eq!(header(&response, "x-omg-deployment"), Some("claude#0"));
        assert_eq!(
            header(&response, "idempotent-replayed"),
            None,
            "never stored"
        );
        let answer: Value = response.json().await.unwrap();
        // 3 words of system + 6 of the message: Anthropic's count, not the gateway's.
        assert_eq!(answer, json!({"input_tokens": 9 + FRAMING}));
    }

    let seen = upstream.requests_to(COUNT);
    assert_eq!(seen.len(), ids.len(), "each count went upstream");
    assert_eq!(seen[0].header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        seen[0].header("anthropic-beta"),
        Some("feature-a,token-counting-2024-11-01")
    );
    let mut expected = body.clone();
    expected["model"] = json!("claude-test");
    assert_eq!(
        seen[0].json().unwrap(),
        expected,
        "only the model is replaced"
    );
    assert!(upstream.requests_to("/v1/messages").is_empty());

    let response = messages_request(&gateway, "it-count-then-message")
        .json(&json!({"model": "claude", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    assert_unmetered(&gateway, "it-count-then-message", &ids).await;
    assert_eq!(
        counted_requests(&gateway, "claude", "anthropic", 200).await,
        3
    );
    let log = gateway.log();
    let access: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("omg::access") && line.contains(COUNT))
        .collect();
    assert_eq!(access.len(), 3, "{log}");
    assert!(
        access[0].contains(r#""provider":"anthropic""#),
        "{}",
        access[0]
    );
}

#[tokio::test]
async fn other_aliases_get_the_gateways_estimate() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let ids = ["it-count-gpt", "it-count-mock"];
    for (alias, id) in [("gpt-up", ids[0]), ("mock-chat", ids[1])] {
        let response = count_request(&gateway, id)
            .json(&json!({"model": alias, "messages": [{"role": "user", "content": "How many tokens is this sentence?"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", gateway.log());
        assert_eq!(header(&response, "x-omg-deployment"), None, "{alias}");
        let answer: Value = response.json().await.unwrap();
        let tokens = answer["input_tokens"].as_u64().unwrap_or(0);
        assert!((1..FRAMING).contains(&tokens), "{alias}: {answer}");
        assert_eq!(answer.as_object().map(|o| o.len()), Some(1), "{answer}");
    }
    assert_eq!(upstream.request_count(), 0, "nothing went upstream");
    let response = gateway
        .post("/v1/chat/completions")
        .header("x-request-id", "it-count-later")
        .json(&chat("mock-chat", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_unmetered(&gateway, "it-count-later", &ids).await;
    assert_eq!(counted_requests(&gateway, "gpt-up", "-", 200).await, 1);
}

#[tokio::test]
async fn counts_fail_over_among_anthropic_deployments_and_errors_are_anthropics() {
    let upstream = upstream().await;
    let origin = upstream.origin();
    let entries = [
        // First by priority, but no token counter: never tried for a count.
        Entry::new("mixed", &upstream.base_url(), "gpt-test"),
        Entry::new("mixed", &origin, "claude-test+fail-529")
            .provider("anthropic")
            .priority(1),
        Entry::new("mixed", &origin, "claude-test")
            .provider("anthropic")
            .priority(2),
        Entry::new("down", &origin, "claude-test+fail-503").provider("anthropic"),
    ];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let question = json!([{"role": "user", "content": "Count me"}]);

    let response = count_request(&gateway, "it-count-failover")
        .json(&json!({"model": "mixed", "messages": question}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    assert_eq!(
        header(&response, "x-omg-deployment"),
        Some(deployment_id(&entries, 2).as_str())
    );
    assert_eq!(header(&response, "x-omg-attempts"), Some("2"));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"input_tokens": 2 + FRAMING}));
    assert!(upstream.requests_to("/v1/chat/completions").is_empty());
    let models: Vec<String> = upstream
        .requests_to(COUNT)
        .iter()
        .map(|r| r.json().unwrap()["model"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(models, ["claude-test+fail-529", "claude-test"]);

    // Anthropic refuses a Messages-only field: its 400, in Anthropic's shape.
    let response = count_request(&gateway, "it-count-400")
        .json(&json!({"model": "mixed", "max_tokens": 10, "messages": question}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "{}", gateway.log());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    let message = error["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("max_tokens"), "{error}");

    // Every Anthropic deployment failing: the gateway's error, in Anthropic's shape.
    let response = count_request(&gateway, "it-count-down")
        .json(&json!({"model": "down", "messages": question}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502, "{}", gateway.log());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "api_error", "{error}");

    let response = gateway
        .post("/v1/chat/completions")
        .header("x-request-id", "it-count-after-errors")
        .json(&chat("mixed", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_unmetered(
        &gateway,
        "it-count-after-errors",
        &["it-count-failover", "it-count-400", "it-count-down"],
    )
    .await;
    assert_eq!(
        counted_requests(&gateway, "mixed", "anthropic", 400).await,
        1
    );
}

fn limited(rpm: u64, parallel: u64, entries: &[Entry]) -> String {
    custom_config(entries, "", "")
        .replace(
            "default_requests_per_minute: 100000",
            &format!("default_requests_per_minute: {rpm}"),
        )
        .replace(
            "default_tokens_per_minute: 100000000",
            "default_tokens_per_minute: 1",
        )
        .replace(
            "default_parallel_requests_key: 1000",
            &format!("default_parallel_requests_key: {parallel}"),
        )
}

#[tokio::test]
async fn counts_take_the_request_limit_but_never_tokens() {
    let upstream = upstream().await;
    let entries = [Entry::new("claude", &upstream.origin(), "claude-test").provider("anthropic")];
    // Two requests a minute, one token a minute: counts are never charged tokens, so only
    // the request limit stops them.
    let gateway = Gateway::start(&limited(2, 1000, &entries)).await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "Count me"}]});
    for id in ["it-count-rpm-1", "it-count-rpm-2"] {
        let response = count_request(&gateway, id)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", gateway.log());
    }
    let refused = count_request(&gateway, "it-count-rpm-3")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429, "{}", gateway.log());
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["type"], "error", "Anthropic's shape: {error}");
    assert_eq!(
        upstream.requests_to(COUNT).len(),
        2,
        "the refused count stayed here"
    );
}

#[tokio::test]
async fn counts_take_a_parallel_slot_while_they_run() {
    let upstream = upstream().await;
    let entries = [
        Entry::new("claude", &upstream.origin(), "claude-test").provider("anthropic"),
        Entry::new("claude-slow", &upstream.origin(), "claude-test+slow-2000")
            .provider("anthropic"),
    ];
    let gateway = Gateway::start(&limited(100_000, 1, &entries)).await;
    let question = json!([{"role": "user", "content": "Count me"}]);
    let slow = count_request(&gateway, "it-count-slow")
        .json(&json!({"model": "claude-slow", "messages": question}))
        .send();
    let slow = tokio::spawn(slow);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while upstream.requests_to(COUNT).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let refused = count_request(&gateway, "it-count-parallel")
        .json(&json!({"model": "claude", "messages": question}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429, "{}", gateway.log());
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    // The slot comes back once the slow count has ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = count_request(&gateway, "it-count-after")
            .json(&json!({"model": "claude", "messages": question}))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", gateway.log());
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn failing_counts_never_rest_the_deployment() {
    let upstream = upstream().await;
    let entries = [
        Entry::new("limited", &upstream.origin(), "claude-test+fail-429").provider("anthropic"),
        Entry::new("overloaded", &upstream.origin(), "claude-test+fail-529").provider("anthropic"),
    ];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let question = json!([{"role": "user", "content": "Count me"}]);
    for (alias, n) in [("limited", 0), ("overloaded", 1)] {
        for attempt in 0..6 {
            let response = count_request(&gateway, &format!("it-count-breaker-{n}-{attempt}"))
                .json(&json!({"model": alias, "messages": question}))
                .send()
                .await
                .unwrap();
            assert_ne!(response.status(), 200);
        }
        // Every count reached the upstream: the deployment never rested.
        assert_eq!(upstream.requests_to(COUNT).len(), 6 * (n + 1));
    }
    let status: Value = gateway
        .client
        .get(format!("{}/deployments", gateway.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = status["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 2, "{status}");
    for deployment in list {
        assert_eq!(deployment["state"], "closed", "{deployment}");
        assert_eq!(deployment["opened_total"], 0, "{deployment}");
        assert_eq!(deployment["window_failures"], 0, "{deployment}");
    }
}
