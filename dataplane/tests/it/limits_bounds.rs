//! Issue 20 §1 and §2 against the real binary: reservations that are a true upper bound
//! (choices, images, long prompts), requests whose worst case cannot be bounded refused with
//! a 400, and hostile bodies refused after one linear scan.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// The mock answers after 50 ms, so the clients' requests overlap, and bills each request as
/// a provider may: two high-detail images (2 × 1,445 tokens)
/// and 100 tokens of text as prompt, and all 8 choices of `max_tokens: 100`. At $0.001 and
/// $0.002 per 1K tokens that is 2,990 + 1,600 = 4,590 micro-USD.
const BILLED: i64 = 4_590;

fn template(upstream: &omg_mock_upstream::MockUpstream, budget: &str) -> String {
    let alias = "  - alias: bill-worst\n    provider: mock\n    price_input: 0.001\n    \
                 price_output: 0.002\n    metadata: {mock_chunks: \"4\", mock_prompt_tokens: \
                 \"2990\", mock_completion_tokens: \"800\", mock_latency_ms: \"50\"}\n";
    format!(
        "{}rate_limits:\n  default_parallel_requests_key: 100\n  \
         default_requests_per_minute: 0\n  default_tokens_per_minute: 0\n\
         budgets:\n  default_usd: {budget}\n",
        config(upstream, "")
    )
    .replacen(
        "  - alias: mock-chat\n",
        &format!("{alias}  - alias: mock-chat\n"),
        1,
    )
    .replacen(
        "allowed_models: [mock-chat,",
        "allowed_models: [bill-worst, mock-chat,",
        1,
    )
}

/// `n: 8`, two images (one at `detail: high`, one without a detail) and a Chinese prompt
/// (about a token per character).
fn costly_request() -> Value {
    json!({
        "model": "bill-worst",
        "n": 8,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "网关在请求之前预留令牌".repeat(30)},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]}],
    })
}

/// 50 concurrent clients on a $1.00 budget: the final spend stays within the budget plus
/// the cost of one request. Before, a request reserved one choice, no image and the text
/// only, about a tenth of what it was billed, and concurrent requests overran the budget.
#[tokio::test]
async fn budget_holds_under_fifty_clients_sending_choices_images_and_cjk() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&template(&upstream, "1")).await;
    let url = format!("{}/v1/chat/completions", gateway.base);
    let mut clients = Vec::new();
    for _ in 0..50 {
        let client = gateway.client.clone();
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let mut admitted = 0u64;
            loop {
                let response = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .json(&costly_request())
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => admitted += 1,
                    429 => {
                        let body: Value = response.json().await.unwrap();
                        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                        return admitted;
                    }
                    status => panic!("{status}: {}", response.text().await.unwrap()),
                }
            }
        }));
    }
    let mut admitted = 0;
    for client in clients {
        admitted += client.await.unwrap();
    }
    assert!(
        admitted > 100,
        "only {admitted} admitted: {}",
        gateway.log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let records = loop {
        let records = gateway.usage();
        let done = records.iter().filter(|r| r["status"] == 200).count() as u64;
        if done >= admitted {
            break records;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "usage records missing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spent: i64 = records
        .iter()
        .map(|r| r["cost_micro_usd"].as_i64().unwrap_or(0))
        .sum();
    assert!(records
        .iter()
        .all(|r| r["cost_micro_usd"].as_i64() == Some(BILLED) || r["status"] != 200));
    assert!(
        spent <= 1_000_000 + BILLED,
        "spent {spent} of a $1.00 budget"
    );
}

/// Requests whose worst case cannot be bounded, and bodies past the parsing bounds: clear
/// 400s naming the parameter, before any reservation.
#[tokio::test]
async fn unbounded_requests_and_hostile_bodies_are_400s() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&template(&upstream, "1")).await;
    let refused = |body: Vec<u8>, path: &'static str| {
        let gateway = &gateway;
        async move {
            let response = gateway
                .post(path)
                .header("content-type", "application/json")
                .header("anthropic-version", "2023-06-01")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };
    let chat = |extra: Value| {
        let mut body =
            json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        serde_json::to_vec(&body).unwrap()
    };
    // u64::MAX once saturated the worst case and wrapped the local limiter's sums.
    for (extra, param) in [
        (json!({"max_tokens": u64::MAX}), "max_tokens"),
        (
            json!({"max_completion_tokens": 262_145}),
            "max_completion_tokens",
        ),
        (json!({"n": 129}), "n"),
        (json!({"n": 0}), "n"),
        // Billed beyond tokens: refused under a budget (this tenant has $1.00).
        (json!({"service_tier": "priority"}), "service_tier"),
        (json!({"web_search_options": {}}), "web_search_options"),
    ] {
        let (status, body) = refused(chat(extra.clone()), "/v1/chat/completions").await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    let completion = json!({"model": "mock-chat", "prompt": "hi", "best_of": 21});
    let (status, body) = refused(serde_json::to_vec(&completion).unwrap(), "/v1/completions").await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("best_of")),
        "{body}"
    );

    // 100,000 distinct keys in about 1 MiB: once a quadratic duplicate check.
    let keys: Vec<String> = (0..100_000).map(|i| format!(r#""k{i:06}":0"#)).collect();
    let wide = format!(
        r#"{{"model":"mock-chat","messages":[{{"role":"user","content":"hi"}}],{}}}"#,
        keys.join(",")
    );
    let (status, body) = refused(wide.into_bytes(), "/v1/chat/completions").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "request_too_complex", "{body}");

    // The Anthropic ingress has the same bounds.
    let deep = format!(
        r#"{{"model":"mock-chat","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}],"metadata":{}1{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let (status, body) = refused(deep.into_bytes(), "/v1/messages").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nested"),
        "{body}"
    );
    let beta = gateway
        .post("/v1/messages")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "prompt-caching-2024-07-31,context-1m-2025-08-07")
        .json(&json!({"model": "mock-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(beta.status(), 400);
    let body: Value = beta.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("context-1m"),
        "{body}"
    );
    let (status, body) = refused(
        serde_json::to_vec(&json!({"model": "mock-chat", "max_tokens": 300_000, "messages": [{"role": "user", "content": "hi"}]})).unwrap(),
        "/v1/messages",
    )
    .await;
    assert_eq!(status, 400, "{body}");
}
