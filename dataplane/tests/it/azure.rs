//! Azure OpenAI deployments through the real binary, against the mock upstream's Azure routes:
//! paths, `api-version`, credentials (`api-key` or bearer), metering, Azure's content filter
//! (a refused prompt, a filtered completion), its stream preamble, failover, and a catalog
//! entry the data plane refuses at start-up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use omg_mock_upstream::{MockUpstream, RecordedRequest};
use serde_json::{json, Value};

use crate::harness::*;

const VERSION: &str = "2024-10-21";

/// An `azure` entry of `alias` at `upstream`: Azure deployment `deployment`, `api_version`
/// `version`.
fn azure_at(alias: &str, upstream: &MockUpstream, deployment: &str, version: &str) -> Entry {
    Entry::new(alias, &upstream.origin(), "gpt-4o")
        .provider("azure")
        .with("deployment", &format!("\"{deployment}\""))
        .with("api_version", &format!("\"{version}\""))
}

fn azure(alias: &str, upstream: &MockUpstream, deployment: &str) -> Entry {
    azure_at(alias, upstream, deployment, VERSION)
}

/// One gateway, every Azure alias the tests use (deployment directives script the mock).
async fn start(upstream: &MockUpstream) -> Gateway {
    let entries = vec![
        azure("az", upstream, "prod-4o")
            .with("price_input", "0.001")
            .with("price_output", "0.002"),
        azure("az-embed", upstream, "embed-3").with("model_type", "embedding"),
        azure("az-bearer", upstream, "prod-4o").with("metadata", "{azure_auth: bearer}"),
        azure("az-refuse", upstream, "prod-4o+content-filter"),
        azure(
            "az-filtered",
            upstream,
            "prod-4o+content-filter-completion+chunks-6",
        ),
        azure_at("az-old", upstream, "prod-4o", "2024-06-01"),
        azure("az-fo", upstream, "down+fail-503").priority(0),
        azure("az-fo", upstream, "backup").priority(1),
    ];
    Gateway::start(&custom_config(&entries, "", "")).await
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn last(upstream: &MockUpstream) -> RecordedRequest {
    upstream
        .requests()
        .pop()
        .expect("the upstream saw no request")
}

#[tokio::test]
async fn chat_goes_to_the_deployment_path_with_the_api_key_and_is_metered() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("az", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    assert_eq!(header(&response, "x-omg-deployment"), Some("az#0"));
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");

    let seen = last(&upstream);
    assert_eq!(
        seen.path,
        format!("/openai/deployments/prod-4o/chat/completions?api-version={VERSION}")
    );
    assert_eq!(seen.query("api-version"), Some(VERSION));
    assert_eq!(seen.header("api-key"), Some(UPSTREAM_KEY));
    assert_eq!(
        seen.header("authorization"),
        None,
        "no bearer in api-key mode"
    );
    let sent = seen.json().unwrap();
    assert_eq!(sent["model"], "gpt-4o");
    assert!(sent.get("stream_options").is_none());

    let record = gateway.usage_of(&id).await;
    assert_eq!(record["status"], 200);
    assert_eq!(record["provider"], "azure");
    assert_eq!(record["usage_estimated"], false);
    assert_eq!(record["prompt_tokens"], answer["usage"]["prompt_tokens"]);
    assert_eq!(
        record["completion_tokens"],
        answer["usage"]["completion_tokens"]
    );
    let expected_cost = record["prompt_tokens"].as_u64().unwrap()
        + 2 * record["completion_tokens"].as_u64().unwrap();
    assert!(expected_cost > 0);
    assert_eq!(record["cost_micro_usd"].as_u64().unwrap(), expected_cost);
}

/// The `data:` payloads of a streamed answer, parsed (`[DONE]` left out, and checked last).
async fn chunks(response: reqwest::Response) -> Vec<Value> {
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|error| panic!("{error}: {e}")))
        .collect()
}

#[tokio::test]
async fn streams_lose_the_prompt_filter_chunk_and_are_billed() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    for include_usage in [false, true] {
        let mut body = chat("az", true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let response = gateway
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
        let id = request_id(&response);
        let chunks = chunks(response).await;
        for chunk in &chunks {
            assert!(
                chunk["id"].as_str().is_some_and(|id| !id.is_empty()),
                "an empty-id chunk reached the client: {chunk}"
            );
            assert!(chunk.get("prompt_filter_results").is_none(), "{chunk}");
        }
        let usage_chunks: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
        assert_eq!(usage_chunks.len(), usize::from(include_usage), "{chunks:?}");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "w0 w1 w2 w3 w4.");

        let sent = last(&upstream).json().unwrap();
        assert_eq!(sent["stream_options"], json!({"include_usage": true}));
        let record = gateway.usage_of(&id).await;
        assert_eq!(record["status"], 200);
        assert_eq!(record["usage_estimated"], false, "{record}");
        assert_eq!(record["completion_tokens"], 5, "{record}");
        assert!(record["cost_micro_usd"].as_u64().unwrap() > 0, "{record}");
    }

    // Before 2024-08-01 Azure refuses `stream_options`: none is sent, usage is estimated.
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("az-old", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let chunks = chunks(response).await;
    assert!(chunks.iter().all(|c| c["id"] != ""), "{chunks:?}");
    let seen = last(&upstream);
    assert_eq!(seen.query("api-version"), Some("2024-06-01"));
    assert!(seen.json().unwrap().get("stream_options").is_none());
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["usage_estimated"], true, "{record}");
    assert!(
        record["completion_tokens"].as_u64().unwrap() > 0,
        "{record}"
    );
}

#[tokio::test]
async fn embeddings_and_completions_use_their_deployment_paths() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let response = gateway
        .post("/v1/embeddings")
        .json(&json!({"model": "az-embed", "input": ["hello azure", "bye"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
    assert!(answer["data"][0]["embedding"].is_array());
    assert_eq!(
        last(&upstream).path,
        format!("/openai/deployments/embed-3/embeddings?api-version={VERSION}")
    );
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["endpoint"], "embeddings");
    assert!(record["prompt_tokens"].as_u64().unwrap() > 0, "{record}");

    let response = gateway
        .post("/v1/completions")
        .json(&json!({"model": "az", "prompt": "Say hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(
        last(&upstream).path,
        format!("/openai/deployments/prod-4o/completions?api-version={VERSION}")
    );
}

#[tokio::test]
async fn content_filter_refusals_and_filtered_completions() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("az-refuse", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let id = request_id(&response);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "content_filter");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "prompt");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("content management policy"));
    assert!(
        !text.contains("innererror") && !text.contains("severity"),
        "nothing else of Azure's body: {text}"
    );
    assert_eq!(gateway.usage_of(&id).await["status"], 400);
    assert_eq!(
        upstream.request_count(),
        1,
        "a refused prompt is not tried elsewhere"
    );

    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("az-filtered", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(answer["choices"][0]["message"]["content"], "w0 w1 w2 ");

    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("az-filtered", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let chunks = chunks(response).await;
    let reasons: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|r| !r.is_null())
        .collect();
    assert_eq!(reasons, [&json!("content_filter")], "{chunks:?}");
}

#[tokio::test]
async fn bearer_mode_sends_the_token_as_authorization() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("az-bearer", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let seen = last(&upstream);
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(seen.header("api-key"), None);
}

#[tokio::test]
async fn a_failing_deployment_fails_over_to_the_next_azure_deployment() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("az-fo", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    // Ids number an alias's deployments in catalog order.
    let backup = "az-fo#1";
    assert_eq!(header(&response, "x-omg-deployment"), Some(backup));
    assert_eq!(header(&response, "x-omg-attempts"), Some("2"));
    let id = request_id(&response);
    assert!(!chunks(response).await.is_empty());
    let paths: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.path.split('?').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/openai/deployments/down%2Bfail-503/chat/completions",
            "/openai/deployments/backup/chat/completions"
        ]
    );
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["deployment"], backup);
    assert_eq!(record["usage_estimated"], false);
}

#[tokio::test]
async fn an_entry_without_api_version_is_refused_at_start_up() {
    let upstream = upstream().await;
    let entries = [Entry::new("az", &upstream.origin(), "gpt-4o").provider("azure")];
    let dir = tempfile::tempdir().unwrap();
    let config = custom_config(&entries, "", "")
        .replace("{PORT}", &free_port().to_string())
        .replace("{ADMIN}", &free_port().to_string())
        .replace("{DIR}", &dir.path().display().to_string());
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_omg-dataplane"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROUTER_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the data plane started with an invalid Azure entry");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(status.code(), Some(2), "log:\n{log}");
    assert!(
        log.contains("model_catalog[0].api_version") && log.contains("azure_openai_version"),
        "the error names the key and the fix:\n{log}"
    );
    assert_eq!(upstream.request_count(), 0);
}
