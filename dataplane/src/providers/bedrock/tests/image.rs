//! Bedrock image generation: each family's body (golden-checked), the answers of each family
//! translated (filtered images left out, every image filtered → 400 `content_filter`), the
//! refusals made before any upstream call, the adapter's route and Bedrock's errors.
//! (A child module of `image.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::SystemTime;

use omg_shared::bedrock::ImageSettings;
use omg_shared::endpoint::Endpoint;
use omg_shared::error::ErrorCode;
use omg_shared::secret::Secret;
use omg_shared::snapshot::Deployment;
use serde_json::{json, Value};

use super::{build_image, translate_image};
use crate::providers::bedrock::{map_error, BedrockAdapter, BedrockCredential};
use crate::providers::{Call, ProviderAdapter};
use crate::request::{ImageFormat, RequestBody, Route};

const TITAN: &str = "amazon.titan-image-generator-v2:0";
const NOVA: &str = "amazon.nova-canvas-v1:0";
const SD3: &str = "stability.sd3-5-large-v1:0";
const SDXL: &str = "stability.stable-diffusion-xl-v1";
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn settings(pairs: &[(&str, &str)]) -> ImageSettings {
    let metadata: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ImageSettings::from_metadata(&metadata).unwrap()
}

fn build(
    body: &Value,
    settings: &ImageSettings,
    model: &str,
) -> Result<Value, crate::error::ApiError> {
    let raw = serde_json::to_vec(body).unwrap();
    let parsed = RequestBody::parse(&raw, &Route::ImagesGenerations).unwrap();
    build_image(&parsed, settings, model).map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn titan_and_nova_bodies() {
    let body = json!({"model": "pics", "prompt": "a red fox", "n": 3, "size": "1024x1024", "quality": "hd"});
    let built = build(
        &body,
        &settings(&[
            ("bedrock_image_cfg_scale", "7.5"),
            ("bedrock_image_seed", "42"),
            ("bedrock_image_negative_prompt", "blurry, text"),
        ]),
        TITAN,
    )
    .unwrap();
    assert_eq!(
        built,
        json!({
            "taskType": "TEXT_IMAGE",
            "textToImageParams": {"text": "a red fox", "negativeText": "blurry, text"},
            "imageGenerationConfig": {
                "numberOfImages": 3, "width": 1024, "height": 1024,
                "cfgScale": 7.5, "seed": 42, "quality": "premium"
            }
        })
    );
    // The minimal body: no size, the entry's quality, n defaulting to 1; Nova shares it.
    let minimal = json!({"model": "pics", "prompt": "a red fox"});
    let built = build(
        &minimal,
        &settings(&[("bedrock_image_quality", "premium")]),
        NOVA,
    )
    .unwrap();
    assert_eq!(
        built,
        json!({
            "taskType": "TEXT_IMAGE",
            "textToImageParams": {"text": "a red fox"},
            "imageGenerationConfig": {"numberOfImages": 1, "quality": "premium"}
        })
    );
    // The client's quality wins over the entry's; OpenAI's values map onto Titan's two.
    for (quality, expected) in [
        ("standard", "standard"),
        ("low", "standard"),
        ("medium", "standard"),
        ("auto", "standard"),
        ("high", "premium"),
        ("hd", "premium"),
    ] {
        let body = json!({"model": "pics", "prompt": "p", "quality": quality});
        let built = build(
            &body,
            &settings(&[("bedrock_image_quality", "premium")]),
            TITAN,
        )
        .unwrap();
        assert_eq!(
            built["imageGenerationConfig"]["quality"], expected,
            "{quality}"
        );
    }
    let error = build(
        &json!({"model": "pics", "prompt": "p", "quality": "ultra"}),
        &settings(&[]),
        TITAN,
    )
    .unwrap_err();
    assert_eq!(error.param, Some("quality"));
}

#[test]
fn stability_bodies_take_one_image_in_an_exact_aspect_ratio() {
    let body = json!({"model": "pics", "prompt": "a red fox", "size": "1536x1024", "response_format": "b64_json"});
    let built = build(
        &body,
        &settings(&[
            ("bedrock_image_seed", "7"),
            ("bedrock_image_negative_prompt", "blurry"),
        ]),
        SD3,
    )
    .unwrap();
    assert_eq!(
        built,
        json!({
            "prompt": "a red fox", "mode": "text-to-image", "aspect_ratio": "3:2",
            "output_format": "png", "seed": 7, "negative_prompt": "blurry"
        })
    );
    let built = build(
        &json!({"model": "pics", "prompt": "p"}),
        &settings(&[]),
        SD3,
    )
    .unwrap();
    assert_eq!(
        built,
        json!({"prompt": "p", "mode": "text-to-image", "output_format": "png"})
    );
    let error = build(
        &json!({"model": "pics", "prompt": "p", "size": "1792x1024"}),
        &settings(&[]),
        SD3,
    )
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidParameter);
    assert_eq!(error.param, Some("size"));
    assert!(
        error
            .message
            .contains("1:1, 16:9, 21:9, 2:3, 3:2, 4:5, 5:4, 9:16, 9:21"),
        "{}",
        error.message
    );
    let error = build(
        &json!({"model": "pics", "prompt": "p", "n": 2}),
        &settings(&[]),
        SD3,
    )
    .unwrap_err();
    assert_eq!(error.param, Some("n"));
    assert!(
        error.message.contains("one image per request"),
        "{}",
        error.message
    );
}

#[test]
fn sdxl_bodies() {
    let body = json!({"model": "pics", "prompt": "a red fox", "size": "1024x1024"});
    let built = build(
        &body,
        &settings(&[
            ("bedrock_image_style", "photographic"),
            ("bedrock_image_cfg_scale", "10"),
            ("bedrock_image_seed", "3"),
            ("bedrock_image_negative_prompt", "blurry"),
        ]),
        SDXL,
    )
    .unwrap();
    assert_eq!(
        built,
        json!({
            "text_prompts": [{"text": "a red fox", "weight": 1}, {"text": "blurry", "weight": -1}],
            "cfg_scale": 10, "seed": 3, "width": 1024, "height": 1024,
            "style_preset": "photographic", "samples": 1
        })
    );
    let error = build(
        &json!({"model": "pics", "prompt": "p", "n": 4}),
        &settings(&[]),
        SDXL,
    )
    .unwrap_err();
    assert_eq!(error.param, Some("n"));
}

#[test]
fn refusals_before_any_upstream_call() {
    let error = build(
        &json!({"model": "pics", "prompt": "p", "n": 6}),
        &settings(&[]),
        TITAN,
    )
    .unwrap_err();
    assert_eq!(error.param, Some("n"));
    assert!(error.message.contains("at most 5"), "{}", error.message);
    let error = build(
        &json!({"model": "pics", "prompt": "p", "output_format": "webp"}),
        &settings(&[]),
        TITAN,
    )
    .unwrap_err();
    assert_eq!(error.param, Some("output_format"));
    // A model id that names no family, without `bedrock_image_format`: an operator error.
    let error = build(
        &json!({"model": "pics", "prompt": "p"}),
        &settings(&[]),
        "custom-model",
    )
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::InternalError);
    let built = build(
        &json!({"model": "pics", "prompt": "p"}),
        &settings(&[("bedrock_image_format", "titan")]),
        "custom-model",
    )
    .unwrap();
    assert_eq!(built["taskType"], "TEXT_IMAGE");
}

fn answer(body: &Value, format: Option<ImageFormat>) -> Result<Value, crate::error::ApiError> {
    let answer = translate_image(&serde_json::to_vec(body).unwrap(), 1_700_000_000, format)?;
    let mut json: Value = serde_json::from_slice(&answer.body).unwrap();
    json["_images_billed"] = json!(answer.usage.unwrap().images);
    Ok(json)
}

#[test]
fn answers_of_each_family_are_translated() {
    let titan = json!({"images": [PNG, PNG], "error": null});
    let json = answer(&titan, None).unwrap();
    assert_eq!(
        json,
        json!({
            "created": 1_700_000_000, "output_format": "png",
            "data": [{"b64_json": PNG}, {"b64_json": PNG}], "_images_billed": 2
        })
    );
    let json = answer(&titan, Some(ImageFormat::Url)).unwrap();
    assert_eq!(
        json["data"][1]["url"],
        format!("data:image/png;base64,{PNG}")
    );

    let stability = json!({"seeds": [42], "finish_reasons": [null], "images": [PNG]});
    let json = answer(&stability, Some(ImageFormat::B64Json)).unwrap();
    assert_eq!(json["data"], json!([{"b64_json": PNG}]));
    assert_eq!(json["_images_billed"], 1);

    let sdxl = json!({"result": "success", "artifacts": [{"seed": 3, "base64": PNG, "finishReason": "SUCCESS"}]});
    let json = answer(&sdxl, None).unwrap();
    assert_eq!(json["data"], json!([{"b64_json": PNG}]));

    // A JPEG is labelled as one.
    let jpeg = json!({"images": ["/9j/4AAQSkZJRg=="]});
    let json = answer(&jpeg, Some(ImageFormat::Url)).unwrap();
    assert_eq!(
        json["data"][0]["url"],
        "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
    );
    assert_eq!(json["output_format"], "jpeg");
}

#[test]
fn filtered_images_are_left_out_and_all_filtered_is_a_content_filter_error() {
    let some = json!({"result": "success", "artifacts": [
        {"seed": 1, "base64": PNG, "finishReason": "SUCCESS"},
        {"seed": 2, "base64": "blurred", "finishReason": "CONTENT_FILTERED"}
    ]});
    let json = answer(&some, None).unwrap();
    assert_eq!(json["data"], json!([{"b64_json": PNG}]));
    assert_eq!(json["_images_billed"], 1);

    for (body, reason) in [
        (
            json!({"seeds": [1], "finish_reasons": ["Filter reason: prompt"], "images": [null]}),
            "Filter reason: prompt",
        ),
        (
            json!({"seeds": [1], "finish_reasons": ["Filter reason: output image"], "images": []}),
            "Filter reason: output image",
        ),
        (
            json!({"result": "success", "artifacts": [{"seed": 2, "base64": "x", "finishReason": "CONTENT_FILTERED"}]}),
            "CONTENT_FILTERED",
        ),
        (
            json!({"images": [], "error": "This request has been blocked by our content filters."}),
            "blocked by our content filters",
        ),
    ] {
        let error = answer(&body, None).unwrap_err();
        assert_eq!(error.code, ErrorCode::ContentFilter, "{body}");
        assert_eq!(error.code.status(), 400);
        assert_eq!(error.param, Some("prompt"));
        assert!(error.message.contains(reason), "{}", error.message);
    }
    for bad in [
        json!({"message": "nope"}),
        json!({"images": []}),
        json!({"result": "success", "artifacts": [{"seed": 1, "finishReason": "ERROR"}]}),
        json!({"seeds": [1], "finish_reasons": ["Inference error"], "images": [null]}),
    ] {
        assert_eq!(
            answer(&bad, None).unwrap_err().code,
            ErrorCode::UpstreamError,
            "{bad}"
        );
    }
    assert_eq!(
        translate_image(b"not json", 1, None)
            .map(|_| ())
            .unwrap_err()
            .code,
        ErrorCode::UpstreamError
    );
}

#[test]
fn bedrock_errors_of_image_requests() {
    let error = map_error(
        400,
        br#"{"message":"Malformed input request: #/imageGenerationConfig/numberOfImages: 6 is not less or equal to 5, please reformat your input and try again."}"#,
    );
    assert_eq!(error.code, ErrorCode::InvalidParameter);
    assert_eq!(error.code.status(), 400);
    assert!(
        error.message.contains("numberOfImages: 6"),
        "{}",
        error.message
    );
    let error = map_error(
        400,
        br#"{"__type":"ValidationException","message":"This request has been blocked by our content filters. Please adjust your text prompt to submit a new request."}"#,
    );
    assert_eq!(error.code, ErrorCode::ContentFilter);
    assert_eq!(error.param, Some("prompt"));
    assert!(
        error.message.starts_with("This request has been blocked"),
        "{}",
        error.message
    );
}

#[test]
fn the_adapter_invokes_the_model_and_translates_the_answer() {
    let mut deployment: Deployment = serde_json::from_value(json!({
        "id": "pics#0", "provider": "bedrock", "provider_model": TITAN, "weight": 1,
        "enabled": true, "pricing": {"input": 0, "output": 0}, "region": "us-east-1",
        "metadata": {"bedrock_image_quality": "premium"}
    }))
    .unwrap();
    deployment.endpoint =
        Some(Endpoint::parse("https://bedrock-runtime.us-east-1.amazonaws.com").unwrap());
    let adapter =
        BedrockAdapter::new(&deployment, BedrockCredential::ApiKey(Secret::new("k"))).unwrap();
    let raw = br#"{"model":"pics","prompt":"a red fox","n":2,"response_format":"url"}"#;
    let route = Route::ImagesGenerations;
    let body = RequestBody::parse(raw, &route).unwrap();
    let call = Call {
        route: &route,
        body: &body,
        raw,
        alias: "pics",
        request_id: "req-1",
        created: 5,
        ingress: crate::providers::Ingress::OpenAi,
        now: SystemTime::now(),
    };
    let built = adapter.request(&call, &deployment).unwrap();
    assert_eq!(
        built.path,
        "/model/amazon.titan-image-generator-v2%3A0/invoke"
    );
    let sent: Value = serde_json::from_slice(&built.body).unwrap();
    assert_eq!(sent["imageGenerationConfig"]["numberOfImages"], 2);
    assert_eq!(sent["imageGenerationConfig"]["quality"], "premium");
    let upstream = serde_json::to_vec(&json!({"images": [PNG, PNG], "error": null})).unwrap();
    let answer = adapter.response(&call, &upstream).unwrap();
    let json: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["created"], 5);
    assert!(json["data"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert_eq!(answer.usage.unwrap().images, 2);
}
