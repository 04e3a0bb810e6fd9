//! Image generation on Bedrock through the binary: Titan (SigV4), Stability AI and SDXL
//! bodies as the mock checks them, b64_json and `data:` URL answers, images billed per image
//! in the usage record, refusals before any upstream call, and filtered prompts → 400
//! `content_filter`.

use omg_mock_upstream::{MockUpstream, BEDROCK_ACCESS_KEY_ID};
use serde_json::{json, Value};

use crate::harness::*;

const IMAGES: &str = "/v1/images/generations";
const TITAN: &str = "amazon.titan-image-generator-v2:0";
const SD3: &str = "stability.sd3-5-large-v1:0";
const SDXL: &str = "stability.stable-diffusion-xl-v1";
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A SigV4-signed image entry at $0.04 per image, with more metadata (`key: value, …`).
fn image_entry(alias: &str, upstream: &MockUpstream, model: &str, metadata: &str) -> Entry {
    Entry::new(alias, &upstream.origin(), model)
        .provider("bedrock")
        .with("region", "us-east-1")
        .with("model_type", "image")
        .with("price_per_image", "0.04")
        .with(
            "metadata",
            &format!("{{aws_access_key_id: {BEDROCK_ACCESS_KEY_ID}{metadata}}}"),
        )
}

fn png_of(item: &Value) -> Vec<u8> {
    let bytes = match (item["b64_json"].as_str(), item["url"].as_str()) {
        (Some(b64), None) => decode_base64(b64),
        (None, Some(url)) => decode_base64(
            url.strip_prefix("data:image/png;base64,")
                .unwrap_or_else(|| panic!("not a PNG data URL: {url}")),
        ),
        _ => panic!("neither b64_json nor url: {item}"),
    };
    assert!(bytes.starts_with(PNG_SIGNATURE), "not a PNG: {item}");
    bytes
}

#[tokio::test]
async fn images_are_generated_signed_and_billed_per_image() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&custom_config(
        &[
            image_entry(
                "titan",
                &upstream,
                TITAN,
                ", bedrock_image_quality: premium, bedrock_image_seed: \"42\"",
            ),
            image_entry(
                "sd3",
                &upstream,
                SD3,
                ", bedrock_image_negative_prompt: blurry",
            ),
            image_entry(
                "sdxl",
                &upstream,
                SDXL,
                ", bedrock_image_style: photographic, bedrock_image_cfg_scale: \"7\"",
            ),
        ],
        "",
        "",
    ))
    .await;

    // Titan: two images, base64, the request signed and checked by the mock.
    let response = gateway
        .post(IMAGES)
        .header("x-request-id", "it-bedrock-titan")
        .json(
            &json!({"model": "titan", "prompt": "a red fox in the snow", "n": 2,
                      "size": "1024x1024", "response_format": "b64_json"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{answer}");
    data.iter().for_each(|item| {
        png_of(item);
    });
    assert!(answer["created"].as_i64().unwrap() > 0);
    let seen = upstream.requests_to("/model/amazon.titan-image-generator-v2%3A0/invoke");
    assert_eq!(seen.len(), 1);
    let authorization = seen[0].header("authorization").unwrap();
    assert!(
        authorization.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={BEDROCK_ACCESS_KEY_ID}/"
        )),
        "{authorization}"
    );
    assert_eq!(
        seen[0].json().unwrap(),
        json!({
            "taskType": "TEXT_IMAGE",
            "textToImageParams": {"text": "a red fox in the snow"},
            "imageGenerationConfig": {"numberOfImages": 2, "width": 1024, "height": 1024,
                                      "seed": 42, "quality": "premium"}
        })
    );
    let record = gateway.usage_of("it-bedrock-titan").await;
    assert_eq!(record["provider"], "bedrock", "{record}");
    assert_eq!(record["endpoint"], "images.generations", "{record}");
    assert_eq!(record["images"], 2, "{record}");
    assert_eq!(
        record["cost_micro_usd"], 80_000,
        "two images at $0.04: {record}"
    );

    // Stability AI: one image as a data: URL, the size as its aspect ratio.
    let response = gateway
        .post(IMAGES)
        .header("x-request-id", "it-bedrock-sd3")
        .json(
            &json!({"model": "sd3", "prompt": "a lighthouse", "size": "1536x1024",
                      "response_format": "url"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    png_of(&answer["data"][0]);
    let sent = upstream.requests_to("/model/stability.sd3-5-large-v1%3A0/invoke")[0]
        .json()
        .unwrap();
    assert_eq!(
        sent,
        json!({"prompt": "a lighthouse", "mode": "text-to-image", "aspect_ratio": "3:2",
               "output_format": "png", "negative_prompt": "blurry"})
    );
    let record = gateway.usage_of("it-bedrock-sd3").await;
    assert_eq!(
        (record["images"].as_u64(), record["cost_micro_usd"].as_u64()),
        (Some(1), Some(40_000)),
        "{record}"
    );

    // SDXL: the style preset and cfg scale of the entry.
    let response = gateway
        .post(IMAGES)
        .json(&json!({"model": "sdxl", "prompt": "a castle", "size": "1024x1024"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    let answer: Value = response.json().await.unwrap();
    png_of(&answer["data"][0]);
    let sent = upstream.requests_to("/model/stability.stable-diffusion-xl-v1/invoke")[0]
        .json()
        .unwrap();
    assert_eq!(sent["style_preset"], "photographic");
    assert_eq!(sent["cfg_scale"], 7);
    assert_eq!(sent["samples"], 1);

    // Refused before any upstream call: n above the family's limit, a size without its ratio.
    let before = upstream.requests().len();
    for (body, param) in [
        (json!({"model": "sd3", "prompt": "x", "n": 2}), "n"),
        (json!({"model": "titan", "prompt": "x", "n": 6}), "n"),
        (
            json!({"model": "sd3", "prompt": "x", "size": "1792x1024"}),
            "size",
        ),
    ] {
        let response = gateway.post(IMAGES).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Bedrock"),
            "{error}"
        );
    }
    assert_eq!(upstream.requests().len(), before);
}

#[tokio::test]
async fn filtered_prompts_are_content_filter_errors_and_bill_nothing() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&custom_config(
        &[
            image_entry("titan", &upstream, &format!("{TITAN}+content-filter"), ""),
            image_entry("sd3", &upstream, &format!("{SD3}+content-filter"), ""),
            image_entry("sdxl", &upstream, &format!("{SDXL}+content-filter"), ""),
        ],
        "",
        "",
    ))
    .await;
    for (alias, needle) in [
        ("titan", "blocked by our content filters"),
        ("sd3", "Filter reason: prompt"),
        ("sdxl", "CONTENT_FILTERED"),
    ] {
        let request_id = format!("it-bedrock-filtered-{alias}");
        let response = gateway
            .post(IMAGES)
            .header("x-request-id", &request_id)
            .json(&json!({"model": alias, "prompt": "something forbidden"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{alias}: {}", gateway.log());
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "content_filter", "{error}");
        assert_eq!(error["error"]["param"], "prompt", "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(needle),
            "{alias}: {error}"
        );
        let record = gateway.usage_of(&request_id).await;
        assert_eq!(record["status"], 400, "{record}");
        assert_eq!(record["images"].as_u64().unwrap_or(0), 0, "{record}");
        assert_eq!(record["cost_micro_usd"], 0, "{record}");
    }
}
