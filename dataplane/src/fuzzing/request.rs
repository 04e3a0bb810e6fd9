//! Fuzzing what reads a client's request: the route table, the body probe and the
//! provider request builders behind it, and the Anthropic Messages ingress.

use omg_shared::config::ModelType;
use omg_shared::keys::ParsedKey;
use serde_json::{Map, Value};

use super::stream::{subjects, with_call};
use crate::auth::extract_key;
use crate::ingress::anthropic::{model_of, to_openai, to_openai_for_native};
use crate::providers::Ingress;
use crate::request::{route, RequestBody, Route};

/// The routes with a JSON body, by the selector's low two bits.
static ROUTES: [Route; 4] = [
    Route::Chat,
    Route::Completions,
    Route::Embeddings,
    Route::ImagesGenerations,
];

/// The provider model every subject deployment names.
const PROVIDER_MODEL: &str = "provider-model-1";

/// The request probe (`RequestBody::parse`) on `[selector][body]`: bits 0-1 pick the route.
/// A body that parses re-joins, as the upstream body, into the client's object with `model`
/// replaced (and `stream_options` forced for streams), and every adapter builds its
/// upstream request from it or refuses it with a 4xx. Selector bit 7: the bytes are
/// `<method> <path>` for the route table instead; bit 6: a credential header's value (bits
/// 0-1: `authorization`, `api-key`, `x-api-key`), from which the key is picked and parsed.
pub fn request(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    if selector & 0x80 != 0 {
        let text = String::from_utf8_lossy(payload);
        let (method, path) = text.split_once(' ').unwrap_or((text.as_ref(), ""));
        if let Err(error) = route(method, path) {
            assert!(error.code.status() >= 400 && error.code.status() < 500);
        }
        return;
    }
    if selector & 0x40 != 0 {
        return key_header(selector, &String::from_utf8_lossy(payload));
    }
    let route = &ROUTES[usize::from(selector & 3)];
    probe(route, payload, Ingress::OpenAi);
}

/// Parses `raw` for `route` and checks what is built from it; whether it parsed.
fn probe(route: &Route, raw: &[u8], ingress: Ingress<'_>) -> bool {
    let body = match RequestBody::parse(raw, route) {
        Ok(body) => body,
        Err(error) => {
            assert!((400..500).contains(&error.code.status()), "{error:?}");
            return false;
        }
    };
    assert!(!body.model.is_empty());
    for force in [false, true] {
        check_upstream_body(
            raw,
            &body.upstream_body_with(PROVIDER_MODEL, force),
            force && body.stream,
        );
    }
    let _ = body.prompt();
    let _ = body.embedding_inputs();
    let _ = body.image_size();
    // Numbers serde_json's `Value` refuses (1e999) pass through unchanged.
    let client_is_json = serde_json::from_slice::<Value>(raw).is_ok();
    for subject in subjects() {
        let built = with_call(route, raw, ingress, |call| {
            subject.adapter.request(call, &subject.deployment)
        });
        match built {
            Some(Ok(request)) => {
                assert!(request.path.starts_with('/'), "path {}", request.path);
                let parsed = serde_json::from_slice::<Value>(&request.body);
                assert!(
                    parsed.is_ok() || !client_is_json,
                    "{:?}: the upstream body is not JSON",
                    subject.adapter.kind()
                );
            }
            // The subjects are chat deployments: for embeddings and images only "no panic"
            // holds (a chat deployment cannot be configured for them).
            Some(Err(error)) if route.model_type() == Some(ModelType::Llm) => {
                assert!((400..500).contains(&error.code.status()), "{error:?}")
            }
            Some(Err(_)) => {}
            None => {}
        }
    }
    true
}

/// The upstream body is the client's object, `model` replaced, `stream_options` forced when
/// `forced`, nothing else changed.
fn check_upstream_body(raw: &[u8], upstream: &[u8], forced: bool) {
    // A body the probe accepts may hold numbers serde_json's `Value` refuses (1e999): they
    // pass unchanged, so the upstream body is compared only when the client's parses.
    let Ok(mut client) = serde_json::from_slice::<Map<String, Value>>(raw) else {
        return;
    };
    let upstream = match serde_json::from_slice::<Map<String, Value>>(upstream) {
        Ok(upstream) => upstream,
        Err(error) => panic!("the upstream body is not a JSON object ({error})"),
    };
    client.insert("model".to_owned(), Value::String(PROVIDER_MODEL.to_owned()));
    if forced {
        client.insert(
            "stream_options".to_owned(),
            serde_json::json!({"include_usage": true}),
        );
    }
    assert_eq!(upstream, client, "the upstream body is not the client's");
}

/// The Anthropic Messages ingress on `[selector][body]`: bit 0 a `count_tokens` request, bit
/// 1 the native reading. A refusal is a 4xx; a translation goes through the probe's checks
/// (refused with a 4xx, or accepted, streamed as the translation says, and built by every
/// adapter, the Anthropic one from the client's own body).
pub fn anthropic_ingress(data: &[u8]) {
    let Some((&selector, raw)) = data.split_first() else {
        return;
    };
    let count_only = selector & 1 != 0;
    let _ = model_of(raw);
    let translated = if selector & 2 != 0 {
        to_openai_for_native(raw, count_only)
    } else {
        to_openai(raw, count_only)
    };
    let translated = match translated {
        Ok(translated) => translated,
        Err(error) => {
            assert!((400..500).contains(&error.code.status()), "{error:?}");
            return;
        }
    };
    // The probe may still refuse the translation with a 4xx (`messages: []` translates; the
    // probe refuses an empty list), which is what the client gets.
    let ingress = Ingress::Anthropic { raw, beta: None };
    if probe(&Route::Chat, &translated.body, ingress) && !count_only {
        let body = RequestBody::parse(&translated.body, &Route::Chat).ok();
        assert_eq!(body.map(|b| b.stream), Some(translated.stream));
    }
}

/// The key picked from a credential header is a trimmed part of its value, and parsing it
/// never panics.
fn key_header(selector: u8, value: &str) {
    let name =
        ["authorization", "api-key", "x-api-key", "authorization"][usize::from(selector & 3)];
    let presented = extract_key(|header| (header == name).then_some(value));
    if let Some(key) = presented {
        assert!(value.contains(key), "{key:?} is not part of {value:?}");
        assert_eq!(key, key.trim());
        let _ = ParsedKey::parse(key);
    }
}
