//! Imagen through the binary: Vertex AI `:predict` with a token minted at the mock's token
//! endpoint, the Gemini API's `:predict` with its key, b64_json and `data:` URL answers,
//! images billed per image in the usage record, refusals before any upstream call, and a
//! filtered prompt → 400 `content_filter` with Google's reason.

use std::time::{Duration, Instant};

use omg_mock_upstream::{test_service_account, MockUpstream};
use serde_json::{json, Value};

use super::{config, entry, last_to, VERTEX_PREFIX};
use crate::harness::*;

const IMAGES: &str = "/v1/images/generations";

/// One gateway with Imagen on Vertex AI (seeded, filtered) and on the Gemini API.
async fn start(upstream: &MockUpstream) -> Gateway {
    let origin = upstream.origin();
    let sa = test_service_account(&origin);
    let image = "    region: europe-west4\n    model_type: image\n    price_per_image: 0.04\n";
    let entries = vec![
        entry(
            "imagen",
            "imagen-test",
            &origin,
            &sa,
            &format!("{image}    metadata: {{vertex_image_seed: \"42\", vertex_image_person_generation: allow_adult}}\n"),
        ),
        entry("imagen-filtered", "imagen-test+content-filter", &origin, &sa, image),
        entry(
            "studio-imagen",
            "imagen-test",
            &origin,
            UPSTREAM_KEY,
            "    model_type: image\n    price_per_image: 0.04\n    metadata: {vertex_api: gemini, vertex_image_safety_setting: block_low_and_above}\n",
        ),
    ];
    Gateway::start(&config(
        &entries,
        &["imagen", "imagen-filtered", "studio-imagen"],
    ))
    .await
}

/// Posts until the gateway has its first token (minted in the background; until then
/// attempts fail as the deployment's, 502).
async fn first_images(gateway: &Gateway, body: &Value) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = gateway.post(IMAGES).json(body).send().await.unwrap();
        if response.status() != 502 || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn png_bytes(b64: &str) -> Vec<u8> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {b64}"));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    bytes
}

#[tokio::test]
async fn imagen_generates_with_a_minted_token_and_bills_per_image() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let body = json!({"model": "imagen", "prompt": "a red fox in the snow", "n": 3,
                      "size": "1920x1080", "response_format": "b64_json"});
    let response = first_images(&gateway, &body).await;
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{answer}");
    for item in data {
        png_bytes(item["b64_json"].as_str().unwrap());
    }
    let seen = last_to(&upstream, &format!("{VERTEX_PREFIX}/imagen-test:predict"));
    assert!(seen
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ya29.mock-token-"));
    assert_eq!(
        seen.json().unwrap(),
        json!({
            "instances": [{"prompt": "a red fox in the snow"}],
            "parameters": {"sampleCount": 3, "aspectRatio": "16:9", "seed": 42,
                           "addWatermark": false, "personGeneration": "allow_adult",
                           "includeRaiReason": true, "outputOptions": {"mimeType": "image/png"}}
        })
    );
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["provider"], "vertex", "{record}");
    assert_eq!(record["endpoint"], "images.generations", "{record}");
    assert_eq!(record["images"], 3, "{record}");
    assert_eq!(
        record["cost_micro_usd"], 120_000,
        "three images at $0.04: {record}"
    );

    // n above Imagen's 4, a size without one of its ratios: refused before any call.
    let before = upstream.requests().len();
    for (body, param) in [
        (json!({"model": "imagen", "prompt": "x", "n": 5}), "n"),
        (
            json!({"model": "imagen", "prompt": "x", "size": "1536x1024"}),
            "size",
        ),
    ] {
        let response = gateway.post(IMAGES).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    assert_eq!(upstream.requests().len(), before);

    // Every image filtered: 400 content_filter with Google's reason, nothing billed.
    let response = gateway
        .post(IMAGES)
        .header("x-request-id", "it-imagen-filtered")
        .json(&json!({"model": "imagen-filtered", "prompt": "something forbidden", "n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "{}", gateway.log());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "content_filter", "{error}");
    assert_eq!(error["error"]["param"], "prompt", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("safety filter threshold"),
        "{error}"
    );
    let record = gateway.usage_of("it-imagen-filtered").await;
    assert_eq!(record["images"].as_u64().unwrap_or(0), 0, "{record}");
    assert_eq!(record["cost_micro_usd"], 0, "{record}");
}

#[tokio::test]
async fn the_gemini_api_answers_data_urls() {
    let upstream = upstream().await;
    let gateway = start(&upstream).await;
    let response = gateway
        .post(IMAGES)
        .header("x-request-id", "it-studio-imagen")
        .json(
            &json!({"model": "studio-imagen", "prompt": "a lighthouse", "n": 2,
                      "response_format": "url"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    for item in answer["data"].as_array().unwrap() {
        let url = item["url"].as_str().unwrap();
        png_bytes(url.strip_prefix("data:image/png;base64,").unwrap());
    }
    let seen = last_to(&upstream, "/v1beta/models/imagen-test:predict");
    assert_eq!(seen.header("x-goog-api-key"), Some(UPSTREAM_KEY));
    let sent = seen.json().unwrap();
    assert_eq!(sent["parameters"]["sampleCount"], 2);
    assert_eq!(sent["parameters"]["safetySetting"], "block_low_and_above");
    let record = gateway.usage_of("it-studio-imagen").await;
    assert_eq!(record["images"], 2, "{record}");
    assert_eq!(record["cost_micro_usd"], 80_000, "{record}");
}
