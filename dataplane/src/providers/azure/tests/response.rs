//! `response`: Azure's JSON answers pass through unchanged (filter results included), their
//! usage and image counts read.

use omg_shared::error::ErrorCode;

use super::{adapter, deployment, fixture, with_call};
use crate::providers::{ProviderAdapter, Usage};
use crate::request::Route;

const CHAT: &[u8] = br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#;
const EMBEDDINGS: &[u8] = br#"{"model":"embed","input":["a","b"]}"#;
const IMAGES: &[u8] = br#"{"model":"dalle","prompt":"An umbrella on the beach"}"#;

fn usage(prompt_tokens: u64, completion_tokens: u64, cached_tokens: u64, images: u64) -> Usage {
    Usage {
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cache_write_tokens: 0,
        images,
    }
}

#[test]
fn golden_answers_pass_through_with_their_usage() {
    let d = deployment(
        "https://my-resource.openai.azure.com",
        serde_json::json!({}),
    );
    for (name, route, raw, expected) in [
        // Cached prompt tokens come from `prompt_tokens_details`.
        ("response_text", Route::Chat, CHAT, usage(1410, 24, 1280, 0)),
        (
            "response_tool_calls",
            Route::Chat,
            CHAT,
            usage(1431, 21, 0, 0),
        ),
        // Cut by the output filter: `finish_reason: "content_filter"` is OpenAI's value too.
        ("response_filtered", Route::Chat, CHAT, usage(32, 57, 0, 0)),
        (
            "response_embeddings",
            Route::Embeddings,
            EMBEDDINGS,
            usage(17, 0, 0, 0),
        ),
        // DALL-E 3 reports no tokens: one image billed.
        (
            "response_images",
            Route::ImagesGenerations,
            IMAGES,
            usage(0, 0, 0, 1),
        ),
    ] {
        let body = fixture(&format!("{name}.json"));
        let answer = with_call(route, raw, |call| adapter(&d).response(call, &body))
            .unwrap_or_else(|error| panic!("{name}: {error:?}"));
        assert_eq!(answer.body, body, "{name}: passed through byte for byte");
        assert_eq!(answer.usage, Some(expected), "{name}");
    }
}

#[test]
fn filter_results_reach_the_client() {
    let d = deployment("https://r", serde_json::json!({}));
    let body = fixture("response_text.json");
    let answer = with_call(Route::Chat, CHAT, |call| adapter(&d).response(call, &body)).unwrap();
    let answer = super::json(&answer.body);
    assert_eq!(
        answer["prompt_filter_results"][0]["content_filter_results"]["jailbreak"]["detected"],
        false
    );
    assert_eq!(
        answer["choices"][0]["content_filter_results"]["protected_material_text"]["filtered"],
        false
    );
    let body = fixture("response_images.json");
    let answer = with_call(Route::ImagesGenerations, IMAGES, |call| {
        adapter(&d).response(call, &body)
    })
    .unwrap();
    assert!(super::json(&answer.body)["data"][0]["revised_prompt"].is_string());
}

#[test]
fn bodies_that_are_not_answers_fail_the_attempt() {
    let d = deployment("https://r", serde_json::json!({}));
    for (route, raw, body) in [
        (Route::Chat, CHAT, &b"<html>Bad gateway</html>"[..]),
        (Route::ImagesGenerations, IMAGES, br#"{"created":1}"#),
    ] {
        let error = with_call(route, raw, |call| adapter(&d).response(call, body)).unwrap_err();
        assert_eq!(error.code, ErrorCode::UpstreamError);
    }
}
