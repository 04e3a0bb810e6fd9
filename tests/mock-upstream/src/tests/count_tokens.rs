//! `POST /v1/messages/count_tokens`: Anthropic's checks, the count, scripted failures.

use super::anthropic::anthropic_error;
use super::*;

#[tokio::test]
async fn count_tokens_counts_like_anthropic() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let version = ("anthropic-version", "2023-06-01");
    let count = |model: &str| {
        json!({
            "model": model,
            "system": "Be brief",
            "messages": [{"role": "user", "content": "Say hello to the gateway"}]
        })
        .to_string()
    };
    let path = "/v1/messages/count_tokens";
    client
        .send(
            "POST",
            path,
            &[("x-api-key", KEY), version],
            &count("claude-test"),
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    assert_eq!(reply.head.header("content-type"), Some("application/json"));
    // 2 + 5 words, plus the framing no estimate guesses.
    assert_eq!(reply.json(), json!({"input_tokens": 1007}));

    // The same key and version checks as Messages.
    client
        .send("POST", path, &[version], &count("claude-test"))
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 401);
    assert_eq!(anthropic_error(&reply).0, "authentication_error");
    client
        .send("POST", path, &[("x-api-key", KEY)], &count("claude-test"))
        .await;
    assert_eq!(client.reply().await.head.status, 400);
    client
        .send("GET", path, &[("x-api-key", KEY), version], "")
        .await;
    assert_eq!(client.reply().await.head.status, 404);

    // Messages-only fields are extra inputs; model and messages are required.
    let headers = [("x-api-key", KEY), version];
    for (body, expected) in [
        (
            json!({"model": "claude-test", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens: Extra inputs are not permitted",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model: Field required",
        ),
        (json!({"model": "claude-test"}), "messages: Field required"),
    ] {
        client.send("POST", path, &headers, &body.to_string()).await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, 400, "{body}");
        let (kind, message) = anthropic_error(&reply);
        assert_eq!(kind, "invalid_request_error");
        assert!(message.contains(expected), "{message}");
    }

    // Scripted behaviours, from the model.
    client
        .send("POST", path, &headers, &count("claude-test+fail-529"))
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 529);
    assert_eq!(anthropic_error(&reply).0, "overloaded_error");
    assert_eq!(upstream.requests_to(path).len(), 8);
}
