//! Imagen through `:predict`: the body (golden-checked) with the entry's settings, the
//! refusals made before any upstream call, answers translated (filtered images left out,
//! every one filtered → 400 `content_filter`), the adapter's paths in both APIs and Google's
//! refusal of a prompt. (A child module of `image.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::SystemTime;

use omg_shared::endpoint::Endpoint;
use omg_shared::error::ErrorCode;
use omg_shared::secret::Secret;
use omg_shared::snapshot::Deployment;
use omg_shared::vertex::image::ImageSettings;
use omg_shared::vertex::VertexApi;
use serde_json::{json, Value};

use super::{build_imagen, translate_imagen};
use crate::providers::vertex::{map_error, VertexAdapter};
use crate::providers::{Call, ProviderAdapter};
use crate::request::{ImageFormat, RequestBody, Route};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn settings(pairs: &[(&str, &str)]) -> ImageSettings {
    let metadata: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ImageSettings::from_metadata(&metadata, VertexApi::Vertex).unwrap()
}

fn build(body: &Value, settings: &ImageSettings) -> Result<Value, crate::error::ApiError> {
    let raw = serde_json::to_vec(body).unwrap();
    let parsed = RequestBody::parse(&raw, &Route::ImagesGenerations).unwrap();
    build_imagen(&parsed, settings).map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn predict_bodies() {
    let body = json!({"model": "imagen", "prompt": "a red fox", "n": 3, "size": "1920x1080"});
    let built = build(
        &body,
        &settings(&[
            ("vertex_image_negative_prompt", "blurry"),
            ("vertex_image_seed", "42"),
            ("vertex_image_person_generation", "dont_allow"),
            ("vertex_image_safety_setting", "block_medium_and_above"),
        ]),
    )
    .unwrap();
    assert_eq!(
        built,
        json!({
            "instances": [{"prompt": "a red fox"}],
            "parameters": {
                "sampleCount": 3, "aspectRatio": "16:9", "negativePrompt": "blurry",
                "seed": 42, "addWatermark": false, "personGeneration": "dont_allow",
                "safetySetting": "block_medium_and_above", "includeRaiReason": true,
                "outputOptions": {"mimeType": "image/png"}
            }
        })
    );
    let built = build(&json!({"model": "imagen", "prompt": "p"}), &settings(&[])).unwrap();
    assert_eq!(
        built,
        json!({
            "instances": [{"prompt": "p"}],
            "parameters": {"sampleCount": 1, "includeRaiReason": true, "outputOptions": {"mimeType": "image/png"}}
        })
    );
    for (size, ratio) in [
        ("1024x1024", "1:1"),
        ("768x1024", "3:4"),
        ("1024x768", "4:3"),
        ("1080x1920", "9:16"),
    ] {
        let built = build(
            &json!({"model": "imagen", "prompt": "p", "size": size}),
            &settings(&[]),
        )
        .unwrap();
        assert_eq!(built["parameters"]["aspectRatio"], ratio, "{size}");
    }
}

#[test]
fn refusals_before_any_upstream_call() {
    let error = build(
        &json!({"model": "imagen", "prompt": "p", "n": 5}),
        &settings(&[]),
    )
    .unwrap_err();
    assert_eq!(error.param, Some("n"));
    assert!(error.message.contains("at most 4"), "{}", error.message);
    let error = build(
        &json!({"model": "imagen", "prompt": "p", "size": "1536x1024"}),
        &settings(&[]),
    )
    .unwrap_err();
    assert_eq!(error.param, Some("size"));
    assert!(
        error.message.contains("1:1, 3:4, 4:3, 9:16, 16:9"),
        "{}",
        error.message
    );
    let error = build(
        &json!({"model": "imagen", "prompt": "p", "output_format": "jpeg"}),
        &settings(&[]),
    )
    .unwrap_err();
    assert_eq!(error.param, Some("output_format"));
}

fn answer(body: &Value, format: Option<ImageFormat>) -> Result<Value, crate::error::ApiError> {
    let answer = translate_imagen(&serde_json::to_vec(body).unwrap(), 9, format)?;
    let mut json: Value = serde_json::from_slice(&answer.body).unwrap();
    json["_images_billed"] = json!(answer.usage.unwrap().images);
    Ok(json)
}

#[test]
fn answers_are_translated_and_filtered_images_left_out() {
    let two = json!({"predictions": [
        {"bytesBase64Encoded": PNG, "mimeType": "image/png"},
        {"raiFilteredReason": "Your current safety filter threshold filtered out 1 generated images."},
        {"bytesBase64Encoded": PNG, "mimeType": "image/png"}
    ]});
    let json = answer(&two, None).unwrap();
    assert_eq!(
        json,
        json!({"created": 9, "output_format": "png", "data": [{"b64_json": PNG}, {"b64_json": PNG}], "_images_billed": 2})
    );
    let json = answer(&two, Some(ImageFormat::Url)).unwrap();
    assert_eq!(
        json["data"][0]["url"],
        format!("data:image/png;base64,{PNG}")
    );

    let error = answer(
        &json!({"predictions": [{"raiFilteredReason": "The prompt may violate our policies. Support codes: 42876398"}]}),
        None,
    )
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::ContentFilter);
    assert_eq!(error.code.status(), 400);
    assert_eq!(error.param, Some("prompt"));
    assert!(
        error.message.contains("Support codes: 42876398"),
        "{}",
        error.message
    );
    // Without reasons, Imagen answers an empty object when it filtered everything.
    assert_eq!(
        answer(&json!({}), None).unwrap_err().code,
        ErrorCode::ContentFilter
    );
    assert_eq!(
        translate_imagen(b"[1]", 1, None)
            .map(|_| ())
            .unwrap_err()
            .code,
        ErrorCode::UpstreamError
    );
}

#[test]
fn a_refused_prompt_is_a_content_filter_error() {
    let error = map_error(
        400,
        br#"{"error":{"code":400,"message":"Image generation failed with the following error: The prompt could not be submitted. This prompt contains sensitive words that violate Google's Responsible AI practices. Try rephrasing the prompt.","status":"INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(error.code, ErrorCode::ContentFilter);
    assert_eq!(error.param, Some("prompt"));
    assert!(
        error.message.contains("Try rephrasing"),
        "{}",
        error.message
    );
    let error = map_error(
        400,
        br#"{"error":{"code":400,"message":"Number of images must be in [1, 4]","status":"INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(error.code, ErrorCode::InvalidParameter);
}

/// Every service account has the token `ya29.test`.
struct FixedToken;

impl crate::credentials::Credentials for FixedToken {
    fn google(
        &self,
        _key: &omg_shared::vertex::ServiceAccountKey,
    ) -> Result<std::sync::Arc<crate::credentials::TokenCell>, String> {
        Ok(std::sync::Arc::new(
            crate::credentials::TokenCell::with_token("test", "ya29.test"),
        ))
    }

    fn entra(
        &self,
        _client: &omg_shared::azure::EntraClient,
    ) -> Result<std::sync::Arc<crate::credentials::TokenCell>, String> {
        Err("no Entra ID app registrations in these tests".to_owned())
    }
}

fn call<'a>(route: &'a Route, body: &'a RequestBody<'a>, raw: &'a [u8]) -> Call<'a> {
    Call {
        route,
        body,
        raw,
        alias: "imagen",
        request_id: "req-1",
        created: 5,
        ingress: crate::providers::Ingress::OpenAi,
        now: SystemTime::now(),
    }
}

#[test]
fn vertex_ai_predicts_with_a_bearer_token() {
    let mut deployment: Deployment = serde_json::from_value(json!({
        "id": "imagen#0", "provider": "vertex", "provider_model": "imagen-3.0-generate-002",
        "weight": 1, "enabled": true, "pricing": {"input": 0, "output": 0},
        "region": "europe-west4", "metadata": {"vertex_project": "my-project"}
    }))
    .unwrap();
    deployment.endpoint =
        Some(Endpoint::parse("https://europe-west4-aiplatform.googleapis.com").unwrap());
    deployment.api_key = Some(Secret::new(include_str!(
        "../../../../../tests/fixtures/vertex/test-service-account.json"
    )));
    let adapter = VertexAdapter::for_deployment(
        &deployment,
        &crate::credentials::for_deployment(&deployment, &FixedToken).unwrap(),
    )
    .unwrap();
    let raw = br#"{"model":"imagen","prompt":"a red fox"}"#;
    let route = Route::ImagesGenerations;
    let body = RequestBody::parse(raw, &route).unwrap();
    let built = adapter
        .request(&call(&route, &body, raw), &deployment)
        .unwrap();
    assert_eq!(
        built.path,
        "/v1/projects/my-project/locations/europe-west4/publishers/google/models/imagen-3.0-generate-002:predict"
    );
    assert_eq!(
        built.headers,
        vec![("authorization", "Bearer ya29.test".to_owned())]
    );
}

#[test]
fn the_gemini_api_predicts_with_its_key() {
    let mut deployment: Deployment = serde_json::from_value(json!({
        "id": "imagen#0", "provider": "vertex", "provider_model": "imagen-4.0-generate-001",
        "weight": 1, "enabled": true, "pricing": {"input": 0, "output": 0},
        "metadata": {"vertex_api": "gemini", "vertex_image_person_generation": "allow_adult"}
    }))
    .unwrap();
    deployment.endpoint =
        Some(Endpoint::parse("https://generativelanguage.googleapis.com").unwrap());
    deployment.api_key = Some(Secret::new("studio-key"));
    let adapter = VertexAdapter::for_deployment(
        &deployment,
        &crate::credentials::for_deployment(&deployment, &FixedToken).unwrap(),
    )
    .unwrap();
    let raw = br#"{"model":"imagen","prompt":"a red fox","n":2}"#;
    let route = Route::ImagesGenerations;
    let body = RequestBody::parse(raw, &route).unwrap();
    let call = call(&route, &body, raw);
    let built = adapter.request(&call, &deployment).unwrap();
    assert_eq!(built.path, "/v1beta/models/imagen-4.0-generate-001:predict");
    assert_eq!(
        built.headers,
        vec![("x-goog-api-key", "studio-key".to_owned())]
    );
    let sent: Value = serde_json::from_slice(&built.body).unwrap();
    assert_eq!(sent["parameters"]["sampleCount"], 2);
    assert_eq!(sent["parameters"]["personGeneration"], "allow_adult");
    let upstream = serde_json::to_vec(
        &json!({"predictions": [{"bytesBase64Encoded": PNG, "mimeType": "image/png"}]}),
    )
    .unwrap();
    let answer = adapter.response(&call, &upstream).unwrap();
    assert_eq!(answer.usage.unwrap().images, 1);
}
