//! Streams: chunks arrive as produced, usage is forced upstream and stripped unless asked,
//! and cut-off streams are billed for what was seen.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn first_chunk_reaches_the_client_before_the_upstream_finishes() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let body = json!({"model": "up-paced", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let response = gateway
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let id = request_id(&response);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\"content\":\"w0 \"") {
        let chunk = stream
            .next()
            .await
            .expect("stream ended before the first content")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // The upstream paces its last three chunks 300 ms apart: if the gateway buffered the
    // stream, the rest would arrive at once instead of taking most of a second.
    let first_seen = std::time::Instant::now();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(
        first_seen.elapsed() >= std::time::Duration::from_millis(600),
        "chunks were coalesced, not streamed"
    );
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert!(
            chunk.get("usage").is_none_or(Value::is_null),
            "usage chunk must be stripped: {event}"
        );
    }
    let sent = upstream.requests().last().unwrap().json().unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "usage is always requested upstream"
    );
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["stream"], true);
    assert_eq!(record["completion_tokens"], 4);
    assert_eq!(record["usage_estimated"], false);
    assert!(record["ttft_ms"].as_u64().is_some());
}

/// The gateway forwards each chunk as it arrives, without waiting for more: the upstream
/// sends its next content chunk only once the client has received the previous one
/// (lockstep, the mock's `gated` directive), so a gateway that held chunks back (a write
/// path waiting for a buffer to fill, chunks bunched behind later ones) never completes the
/// stream. Conditions, not clocks: the only time limit is a generous deadline per chunk.
/// (How fast each chunk goes through is measured in `bench/`, not asserted here.)
#[tokio::test]
async fn chunks_reach_the_client_one_by_one_as_the_upstream_sends_them() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("up-gated", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    for chunk in 0..5 {
        omg_mock_upstream::open_gate();
        let wanted = format!("\"content\":\"w{chunk}");
        let deadline = Duration::from_secs(10);
        let seen = tokio::time::timeout(deadline, async {
            while !text.contains(&wanted) {
                match stream.next().await {
                    Some(Ok(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
                    other => panic!("the stream ended before chunk {chunk}: {other:?}\n{text}"),
                }
            }
        })
        .await;
        assert!(
            seen.is_ok(),
            "chunk {chunk} was sent upstream but did not reach the client: {text}"
        );
        let later = format!("\"content\":\"w{}", chunk + 1);
        assert!(
            !text.contains(&later),
            "a chunk ran ahead of its gate: {text}"
        );
    }
    while let Some(bytes) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&bytes.unwrap()));
    }
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn usage_chunk_is_kept_when_the_client_asks() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    for model in ["gpt-up", "mock-chat"] {
        let mut body = chat(model, true);
        body["stream_options"] = json!({"include_usage": true});
        let response = gateway
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        let id = request_id(&response);
        let events = sse_data(&response.text().await.unwrap());
        let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert_eq!(usage_chunk["choices"], json!([]), "{model}");
        let record = gateway.usage_of(&id).await;
        assert_eq!(
            record["completion_tokens"], usage_chunk["usage"]["completion_tokens"],
            "{model}"
        );
    }
}

#[tokio::test]
async fn a_cut_upstream_stream_ends_with_an_error_event_and_is_billed() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("up-cut", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let text = response.text().await.unwrap_or_default();
    let events = sse_data(&text);
    assert_ne!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "a cut stream must not look complete"
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["error_code"], "stream_interrupted");
    assert_eq!(record["usage_estimated"], true);
    assert!(record["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        record["completion_tokens"], 2,
        "two one-token chunks were seen"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_billed_for_what_was_seen() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    for model in ["up-long", "mock-slow"] {
        let response = gateway
            .post("/v1/chat/completions")
            .json(&chat(model, true))
            .send()
            .await
            .unwrap();
        let id = request_id(&response);
        let mut stream = response.bytes_stream();
        let mut text = String::new();
        while text.matches("\"content\":").count() < 3 {
            text.push_str(&String::from_utf8_lossy(
                &stream.next().await.unwrap().unwrap(),
            ));
        }
        drop(stream);
        let record = gateway.usage_of(&id).await;
        assert_eq!(record["status"], 499, "{model}");
        assert_eq!(record["usage_estimated"], true, "{model}");
        assert!(record["prompt_tokens"].as_u64().unwrap() > 0, "{model}");
        assert!(
            record["completion_tokens"].as_u64().unwrap() >= 2,
            "{model}: {record}"
        );
    }
    // The upstream connection is dropped, so the provider stops generating.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while upstream.in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "upstream stream still open after the client left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
