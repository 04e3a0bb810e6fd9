//! Reload on file change and SIGHUP, broken configs kept out, graceful shutdown with streams
//! in flight.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::harness::*;

async fn status_with_key(gateway: &Gateway, key: &str) -> u16 {
    gateway
        .client
        .post(format!("{}/v1/chat/completions", gateway.base))
        .bearer_auth(key)
        .json(&chat("mock-chat", false))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn wait_for(gateway: &Gateway, key: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_with_key(gateway, key).await != status {
        assert!(
            Instant::now() < deadline,
            "key {key} never answered {status}; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn config_changes_apply_and_broken_configs_are_refused() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let original = std::fs::read_to_string(&gateway.config_path).unwrap();
    assert_eq!(status_with_key(&gateway, "sk-second.key-2").await, 401);

    let with_key = original.replace(
        "  api_keys:\n",
        "  api_keys:\n    - tenant: demo\n      prefix: second\n      secret: key-2\n",
    );
    std::fs::write(&gateway.config_path, &with_key).unwrap();
    wait_for(&gateway, "sk-second.key-2", 200).await;

    // A broken edit is refused; the last good config keeps serving.
    std::fs::write(
        &gateway.config_path,
        with_key.replace("provider: mock", "provider: banana"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gateway.log().contains("config reload failed") {
        assert!(Instant::now() < deadline, "broken config not reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gateway.log().contains("model_catalog[0].provider"),
        "the error names the key"
    );
    assert_eq!(status_with_key(&gateway, "sk-second.key-2").await, 200);

    // SIGHUP reloads too: revoke the second key by removing it.
    std::fs::write(&gateway.config_path, &original).unwrap();
    gateway.signal("HUP");
    wait_for(&gateway, "sk-second.key-2", 401).await;
    assert_eq!(status_with_key(&gateway, KEY).await, 200);
    let metrics = gateway
        .client
        .get(format!("{}/metrics", gateway.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("omg_snapshot_reloads_total{result=\"error\"}"));
    assert!(metrics.contains("omg_requests_total"));
}

#[tokio::test]
async fn sigterm_lets_streams_finish_and_keeps_every_usage_record() {
    let upstream = upstream().await;
    let mut gateway = Gateway::start(&config(&upstream, "")).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let response = gateway
            .post("/v1/chat/completions")
            .json(&chat("mock-slow", true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = request_id(&response);
        let mut stream = response.bytes_stream();
        let first = stream.next().await.unwrap().unwrap();
        assert!(!first.is_empty());
        streams.push((id, stream));
    }
    gateway.signal("TERM");
    // The signal is handled asynchronously: wait for readiness to flip (503), or for the
    // admin listener to close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = gateway
            .client
            .get(format!("{}/readyz", gateway.admin))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if ready == 503 || ready == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never flipped after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (id, mut stream) in streams {
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        assert!(
            text.trim_end().ends_with("data: [DONE]"),
            "stream {id} was cut: {text}"
        );
    }
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(20)).await,
        Some(0),
        "log:\n{}",
        gateway.log()
    );
    let records: Vec<Value> = gateway.usage();
    assert_eq!(records.len(), 5);
    assert!(records
        .iter()
        .all(|r| r["status"] == 200 && r["completion_tokens"] == 6));
}
