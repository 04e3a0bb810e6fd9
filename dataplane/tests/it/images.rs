//! `POST /v1/images/generations` through the real binary: OpenAI-format upstreams (token
//! usage of `gpt-image-*`, URLs of `dall-e-*`), Azure OpenAI (path, `api-key`, its content
//! policy refusal), the built-in mock (real PNGs), per-image billing in usage records and
//! budget admission, validation, and the capability matrix (`image_operation_unsupported`).

use omg_mock_upstream::MockUpstream;
use serde_json::{json, Value};

use crate::harness::*;

/// One gateway with every image alias the tests use.
async fn start(upstream: &MockUpstream, extra: &str) -> Gateway {
    let origin = upstream.origin();
    let image = |entry: Entry| {
        entry
            .with("model_type", "image")
            .with("price_per_image", "0.04")
    };
    let entries = vec![
        image(Entry::new("gpt-img", &upstream.base_url(), "gpt-image-1"))
            .with("price_input", "0.005")
            .with("price_output", "0.04"),
        image(Entry::new("dalle", &upstream.base_url(), "dall-e-3")),
        image(
            Entry::new("az-img", &origin, "dall-e-3")
                .provider("azure")
                .with("deployment", "\"dalle3-prod\"")
                .with("api_version", "\"2024-10-21\""),
        ),
        image(
            Entry::new("az-img-refuse", &origin, "dall-e-3")
                .provider("azure")
                .with("deployment", "\"dalle3+content-filter\"")
                .with("api_version", "\"2024-10-21\""),
        ),
        image(Entry::new("mock-img", &origin, "mock-img").provider("mock")),
        // An image alias whose only provider cannot draw.
        image(Entry::new("claude-img", &origin, "claude").provider("anthropic")),
        Entry::new("chat", &upstream.base_url(), "gpt-test"),
    ];
    Gateway::start(&custom_config(&entries, "", extra)).await
}

fn generate(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "prompt": "a lighthouse at dawn"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn post(gateway: &Gateway, body: &Value) -> (u16, String, Value) {
    let response = gateway
        .post("/v1/images/generations")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let id = request_id(&response);
    (status, id, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn token_priced_models_are_billed_for_tokens_and_images() {
    let upstream = upstream().await;
    let gateway = start(&upstream, "").await;
    let (status, id, answer) = post(&gateway, &generate("gpt-img", json!({"n": 2}))).await;
    assert_eq!(status, 200, "{answer}\nlog:\n{}", gateway.log());
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
    assert!(answer["data"][0]["b64_json"].is_string());

    let seen = upstream
        .requests()
        .pop()
        .expect("the upstream saw the request");
    assert_eq!(seen.path, "/v1/images/generations");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    let sent = seen.json().unwrap();
    assert_eq!(sent["model"], "gpt-image-1");
    assert_eq!(sent["n"], 2);

    let record = gateway.usage_of(&id).await;
    assert_eq!(record["endpoint"], "images.generations");
    assert_eq!(record["images"], 2);
    let input = answer["usage"]["input_tokens"].as_u64().unwrap();
    let output = answer["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(record["prompt_tokens"], input);
    assert_eq!(record["completion_tokens"], output);
    // $0.005/1K input, $0.04/1K output, $0.04 per image; one rounding up to the micro-USD.
    let nano_1k = input * 5_000_000 + output * 40_000_000 + 2 * 40_000_000 * 1000;
    assert_eq!(
        record["cost_micro_usd"].as_u64().unwrap(),
        nano_1k.div_ceil(1_000_000)
    );
}

#[tokio::test]
async fn urls_pass_through_and_per_image_prices_apply() {
    let upstream = upstream().await;
    let gateway = start(&upstream, "").await;
    let (status, id, answer) = post(
        &gateway,
        &generate(
            "dalle",
            json!({"response_format": "url", "size": "1024x1792"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["data"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    assert!(answer["data"][0]["revised_prompt"].is_string());
    let sent = upstream.requests().pop().unwrap().json().unwrap();
    assert_eq!(sent["size"], "1024x1792");
    assert_eq!(sent["response_format"], "url");
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["images"], 1);
    assert_eq!(record["cost_micro_usd"], 40_000);
    assert_eq!(record["usage_estimated"], false);
}

#[tokio::test]
async fn azure_generates_at_the_deployment_path_and_maps_its_content_policy() {
    let upstream = upstream().await;
    let gateway = start(&upstream, "").await;
    let (status, id, answer) = post(&gateway, &generate("az-img", json!({}))).await;
    assert_eq!(status, 200, "{answer}\nlog:\n{}", gateway.log());
    assert!(answer["data"][0]["content_filter_results"].is_object());
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(
        seen.path,
        "/openai/deployments/dalle3-prod/images/generations?api-version=2024-10-21"
    );
    assert_eq!(seen.header("api-key"), Some(UPSTREAM_KEY));
    assert_eq!(gateway.usage_of(&id).await["images"], 1);

    let (status, id, error) = post(&gateway, &generate("az-img-refuse", json!({}))).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "content_policy_violation");
    assert_eq!(error["error"]["param"], "prompt");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("safety system"));
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["status"], 400);
    assert_eq!(record["cost_micro_usd"], 0);
}

#[tokio::test]
async fn the_mock_provider_draws_real_pngs() {
    let upstream = upstream().await;
    let gateway = start(&upstream, "").await;
    let (status, id, answer) = post(
        &gateway,
        &generate("mock-img", json!({"n": 3, "response_format": "b64_json"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    use base64::Engine as _;
    for image in data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(image["b64_json"].as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["images"], 3);
    assert_eq!(record["cost_micro_usd"], 120_000);
    let (status, _, answer) = post(
        &gateway,
        &generate("mock-img", json!({"response_format": "url"})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer["data"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
}

#[tokio::test]
async fn bad_requests_and_unsupported_operations_are_refused_before_any_upstream_call() {
    let upstream = upstream().await;
    let gateway = start(&upstream, "").await;
    let cases = [
        (
            json!({"model": "gpt-img"}),
            400,
            "missing_required_parameter",
            "prompt",
        ),
        (
            generate("gpt-img", json!({"prompt": "  "})),
            400,
            "invalid_value",
            "prompt",
        ),
        (
            generate("gpt-img", json!({"n": 11})),
            400,
            "invalid_value",
            "n",
        ),
        (
            generate("gpt-img", json!({"n": 0})),
            400,
            "invalid_value",
            "n",
        ),
        (
            generate("gpt-img", json!({"size": "huge"})),
            400,
            "invalid_value",
            "size",
        ),
        (
            generate("gpt-img", json!({"response_format": "png"})),
            400,
            "invalid_value",
            "response_format",
        ),
        (
            generate("gpt-img", json!({"stream": true})),
            400,
            "invalid_value",
            "stream",
        ),
        (
            generate("claude-img", json!({})),
            400,
            "image_operation_unsupported",
            "model",
        ),
        (
            generate("chat", json!({})),
            400,
            "operation_unsupported",
            "model",
        ),
    ];
    for (body, status, code, param) in cases {
        let (got, _, error) = post(&gateway, &body).await;
        assert_eq!(
            (got, &error["error"]["code"], &error["error"]["param"]),
            (status, &json!(code), &json!(param)),
            "{body} → {error}"
        );
        assert!(!error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
    }
    // Chat on an image model is refused too.
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("gpt-img", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        upstream.requests().is_empty(),
        "nothing reached the upstream"
    );

    // `/v1/models` shows what each alias can do.
    let models: Value = gateway
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let capabilities = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["capabilities"].clone())
    };
    assert_eq!(capabilities("az-img"), Some(json!(["images_generate"])));
    assert_eq!(capabilities("claude-img"), Some(json!([])));
}

#[tokio::test]
async fn budgets_admit_image_requests_by_their_price() {
    let upstream = upstream().await;
    // $0.05 a month: one image ($0.04) fits, two do not.
    let gateway = start(&upstream, "budgets:\n  default_usd: 0.05\n").await;
    let (status, _, error) = post(&gateway, &generate("dalle", json!({"n": 2}))).await;
    // dall-e-3 takes one image per request upstream; the budget refuses first.
    assert_eq!(status, 429, "{error}");
    assert_eq!(error["error"]["code"], "budget_exceeded");
    assert!(upstream.requests().is_empty());
    let (status, _, answer) = post(&gateway, &generate("mock-img", json!({}))).await;
    assert_eq!(status, 200, "{answer}");
}
