//! Azure OpenAI: `/openai/deployments/{deployment}/…?api-version=`.

use super::*;

const VERSION: &str = "2024-10-21";

fn chat_path(deployment: &str) -> String {
    format!("/openai/deployments/{deployment}/chat/completions?api-version={VERSION}")
}

fn question() -> Value {
    json!({"messages": [{"role": "user", "content": "Say hello to the gateway"}]})
}

const SAFE: &str = r#"{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}"#;

fn safe() -> Value {
    serde_json::from_str(SAFE).unwrap()
}

impl Client {
    /// `POST` with `api-key` (plus `extra`).
    async fn azure(&mut self, path: &str, body: &Value, extra: &[(&str, &str)]) {
        let mut headers = vec![("api-key", KEY), ("content-type", "application/json")];
        headers.extend_from_slice(extra);
        self.send("POST", path, &headers, &body.to_string()).await;
    }
}

#[tokio::test]
async fn auth_is_api_key_or_bearer() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let path = chat_path("gpt-4o");
    let body = question().to_string();
    let denied = json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}});
    for headers in [
        &[][..],
        &[("api-key", "wrong")],
        &[("authorization", "Bearer wrong")],
        &[("x-api-key", KEY)],
        &[("authorization", KEY)],
    ] {
        client.send("POST", &path, headers, &body).await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, 401, "{headers:?}");
        assert_eq!(reply.json(), denied, "{headers:?}");
    }
    for headers in [&[("api-key", KEY)], &[("authorization", "Bearer test-key")]] {
        client.send("POST", &path, headers, &body).await;
        assert_eq!(client.reply().await.head.status, 200, "{headers:?}");
    }
    assert_eq!(
        upstream
            .requests_to("/openai/deployments/gpt-4o/chat/completions")
            .len(),
        7
    );
}

#[tokio::test]
async fn api_version_and_paths() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    for path in [
        "/openai/deployments/d/chat/completions",
        "/openai/deployments/d/chat/completions?api-version=",
        "/openai/deployments/d/chat/completions?apiversion=2024-10-21",
    ] {
        client.azure(path, &question(), &[]).await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, 400, "{path}");
        assert_eq!(
            reply.json(),
            json!({"error": {"code": "MissingApiVersionParameter", "message": "The api-version query parameter (?api-version=) is required for all requests."}})
        );
    }
    let not_found = json!({"error": {"code": "404", "message": "Resource not found"}});
    for path in [
        "/openai/deployments/d/chat/completions?api-version=latest",
        "/openai/deployments/d/chat?api-version=2024-10-21",
        "/openai/deployments//chat/completions?api-version=2024-10-21",
        "/openai/models?api-version=2024-10-21",
    ] {
        client.azure(path, &question(), &[]).await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, 404, "{path}");
        assert_eq!(reply.json(), not_found, "{path}");
    }
    client
        .send("GET", &chat_path("d"), &[("api-key", KEY)], "")
        .await;
    assert_eq!(client.reply().await.head.status, 404);

    // Any deployment name; a preview version; the model named is the deployment.
    let path =
        "/openai/deployments/My_Deployment-2/chat/completions?api-version=2025-01-01-preview";
    client.azure(path, &question(), &[]).await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    assert_eq!(reply.json()["model"], "My_Deployment-2");
    let recorded = upstream.requests().pop().unwrap();
    assert_eq!(recorded.path, path);
    assert_eq!(recorded.query("api-version"), Some("2025-01-01-preview"));
    assert_eq!(recorded.header("api-key"), Some(KEY));
    assert_eq!(
        upstream
            .requests_to("/openai/deployments/My_Deployment-2/chat/completions")
            .len(),
        1
    );

    // Bodies are still checked like OpenAI's; `model`, when sent, must be a string.
    client
        .azure(&chat_path("d"), &json!({"messages": []}), &[])
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 400);
    assert_eq!(error_of(&reply)["code"], "empty_array");
    client
        .azure(&chat_path("d"), &json!({"model": 1, "messages": []}), &[])
        .await;
    assert_eq!(error_of(&client.reply().await)["param"], "model");
}

#[tokio::test]
async fn answers_carry_content_filter_results() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = question();
    body["model"] = json!("gpt-4o+chunks-2");
    client.azure(&chat_path("gpt-4o-prod"), &body, &[]).await;
    let answer = client.reply().await.json();
    assert_eq!(answer["id"], "chatcmpl-mock-1");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "gpt-4o-prod");
    assert_eq!(
        answer["prompt_filter_results"],
        json!([{"prompt_index": 0, "content_filter_results": safe()}])
    );
    assert_eq!(
        answer["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": "w0 w1.", "refusal": null}, "logprobs": null, "finish_reason": "stop", "content_filter_results": safe()}])
    );
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})
    );

    let path = format!("/openai/deployments/davinci+chunks-1/completions?api-version={VERSION}");
    client.azure(&path, &json!({"prompt": "a b"}), &[]).await;
    let answer = client.reply().await.json();
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["model"], "davinci+chunks-1");
    assert_eq!(answer["choices"][0]["text"], "w0.");
    assert_eq!(answer["choices"][0]["content_filter_results"], safe());
    assert!(answer["prompt_filter_results"].is_array());

    let path = format!("/openai/deployments/ada/embeddings?api-version={VERSION}");
    client
        .azure(&path, &json!({"input": ["a", "b"]}), &[])
        .await;
    let answer = client.reply().await.json();
    assert_eq!(answer["model"], "ada");
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert!(answer.get("prompt_filter_results").is_none());
}

#[tokio::test]
async fn content_filters() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    client
        .azure(
            &chat_path("d"),
            &question(),
            &[("x-mock-behaviour", "content-filter")],
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 400);
    let body = reply.json();
    let error = &body["error"];
    assert_eq!(
        (
            error["code"].as_str(),
            error["param"].as_str(),
            error["status"].as_u64()
        ),
        (Some("content_filter"), Some("prompt"), Some(400))
    );
    assert!(error["type"].is_null());
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("The response was filtered due to the prompt triggering Azure OpenAI's content management policy"));
    assert_eq!(error["innererror"]["code"], "ResponsibleAIPolicyViolation");
    assert_eq!(
        error["innererror"]["content_filter_result"]["hate"],
        json!({"filtered": true, "severity": "high"})
    );

    // Cut short by the filter.
    client
        .azure(
            &chat_path("d+chunks-4+content-filter-completion"),
            &question(),
            &[],
        )
        .await;
    let answer = client.reply().await.json();
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "content_filter");
    assert_eq!(choice["message"]["content"], "w0 w1 ");
    assert_eq!(
        choice["content_filter_results"]["violence"],
        json!({"filtered": true, "severity": "medium"})
    );
    assert_eq!(answer["usage"]["completion_tokens"], 2);

    // Streamed: the last chunk says so.
    let mut body = question();
    body["stream"] = json!(true);
    client
        .azure(
            &chat_path("d+chunks-4+content-filter-completion"),
            &body,
            &[],
        )
        .await;
    let events = client.reply().await.events();
    let finish: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        finish["choices"][0]["content_filter_results"]["violence"]["filtered"],
        true
    );
}

#[tokio::test]
async fn streams_start_with_the_prompt_filter_chunk() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = question();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    client
        .azure(&chat_path("gpt-4o+chunks-2"), &body, &[])
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.header("content-type"), Some("text/event-stream"));
    let events = reply.events();
    assert_eq!(events.len(), 7, "{events:?}");
    assert_eq!(events[6], "[DONE]");
    let chunks: Vec<Value> = events[..6]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(
        chunks[0],
        json!({"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": safe()}]})
    );
    assert_eq!(
        chunks[1]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null, "content_filter_results": {}}])
    );
    for (chunk, text) in chunks[2..4].iter().zip(["w0 ", "w1."]) {
        assert_eq!(chunk["model"], "gpt-4o+chunks-2");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(
            chunk["choices"],
            json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null, "content_filter_results": safe()}])
        );
    }
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"][0]["content_filter_results"], json!({}));
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 2);

    // Stream faults work as on the OpenAI routes: cut after one content chunk.
    body["model"] = json!("x+cut-after-1");
    client.azure(&chat_path("d"), &body, &[]).await;
    assert_eq!(client.head().await.status, 200);
    let mut text = String::new();
    while let Ok(Some(chunk)) = client.chunk().await {
        text.push_str(&String::from_utf8(chunk).unwrap());
    }
    let events = sse_events(&text);
    assert_eq!(
        events.len(),
        3,
        "prelude, role, one content chunk: {events:?}"
    );
}

#[tokio::test]
async fn scripted_failures() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    // Directives in the deployment name; Azure's own 429.
    client
        .azure(&chat_path("d+fail-429+retry-after-2"), &question(), &[])
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 429);
    assert_eq!(reply.head.header("retry-after"), Some("2"));
    let body = reply.json();
    assert_eq!(body["error"]["code"], "429");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ChatCompletions_Create")
            && message.contains(VERSION)
            && message.contains("retry after 2 seconds"),
        "{message}"
    );
    for (spec, status) in [("fail-500", 500), ("fail-503", 503), ("fail-400", 400)] {
        client
            .azure(&chat_path("d"), &question(), &[("x-mock-behaviour", spec)])
            .await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, status, "{spec}");
        error_of(&reply);
    }
    // A failure wins over the content filter.
    client
        .azure(&chat_path("d+content-filter+fail-503"), &question(), &[])
        .await;
    assert_eq!(client.reply().await.head.status, 503);
    upstream.set_behaviour("fail-502");
    client.azure(&chat_path("d"), &question(), &[]).await;
    assert_eq!(client.reply().await.head.status, 502);
    upstream.set_behaviour("");
    client
        .azure(&chat_path("d+malformed"), &question(), &[])
        .await;
    assert_eq!(client.reply().await.body, b"{not json");
}
