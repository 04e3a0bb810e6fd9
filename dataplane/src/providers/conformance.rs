//! The conformance suite every provider adapter passes: one table (`conformance/table.rs`,
//! a row or more per [`ProviderKind`], each a sample deployment with its credential and what
//! its provider sends) and generic checks run on every row. A provider kind cannot be added
//! without a row: the table must cover [`ProviderKind::ALL`].
//!
//! Each check is what the proxy glue relies on without looking inside a provider's format:
//! the request carries the credential in the provider's header and nowhere else, never the
//! gateway's alias, and its `Debug` shows no header value; a stream translates the same
//! whatever its chunk boundaries and ends with `[DONE]`; a JSON answer becomes a
//! `chat.completion` with `usage`; a provider 400 becomes an OpenAI 400 with a message; no
//! error body, however broken, makes `client_error` panic; what an adapter refuses is a 400
//! before any upstream call.

mod table;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use omg_shared::provider::ProviderKind;
use serde_json::Value;

use super::{adapter_for, Call, Ingress, ProviderAdapter, UpstreamRequest};
use crate::request::{RequestBody, Route};
use table::{cases, credential, Case, Expect, ALIAS, CHAT, CHAT_STREAM};

/// When requests are made (signatures depend on it).
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// Every row with an adapter, built as the snapshot builds it.
fn subjects() -> Vec<(Case, Arc<dyn ProviderAdapter>)> {
    cases()
        .into_iter()
        .filter_map(|case| {
            let adapter = adapter_for(&case.deployment, credential(&case.deployment))
                .unwrap_or_else(|error| panic!("{}: no adapter: {error}", case.name));
            // The mock answers in process: nothing upstream to check.
            adapter
                .filter(|adapter| adapter.local().is_none())
                .map(|adapter| (case, adapter))
        })
        .collect()
}

/// Runs `f` with the call of a client request `raw` on `route`.
fn with_call<R>(route: Route, raw: &[u8], f: impl FnOnce(&Call<'_>) -> R) -> R {
    let body = RequestBody::parse(raw, &route).unwrap();
    let call = Call {
        route: &route,
        body: &body,
        raw,
        alias: ALIAS,
        request_id: "req-conformance",
        created: 1_750_000_000,
        ingress: Ingress::OpenAi,
        now: now(),
    };
    f(&call)
}

fn json(name: &str, what: &str, bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|error| {
        panic!(
            "{name}: {what} is not JSON ({error}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

#[test]
fn the_table_covers_every_provider_kind() {
    let cases = cases();
    for kind in ProviderKind::ALL {
        assert!(
            cases.iter().any(|case| case.kind == kind),
            "provider kind `{}` has no row in the conformance table",
            kind.as_str()
        );
    }
    for case in &cases {
        assert_eq!(case.deployment.provider, case.kind, "{}", case.name);
    }
}

#[test]
fn every_kind_has_an_adapter_of_its_kind_and_only_the_mock_answers_in_process() {
    for case in cases() {
        let adapter = adapter_for(&case.deployment, credential(&case.deployment))
            .unwrap_or_else(|error| panic!("{}: {error}", case.name))
            .unwrap_or_else(|| panic!("{}: no adapter", case.name));
        assert_eq!(adapter.kind(), case.kind, "{}", case.name);
        assert_eq!(
            adapter.local().is_some(),
            case.kind == ProviderKind::Mock,
            "{}",
            case.name
        );
    }
}

/// The credential header is there with the expected value, once.
fn assert_credential(case: &Case, what: &str, headers: &[(&'static str, String)]) {
    let (name, expect) = &case.credential;
    let values: Vec<&String> = headers
        .iter()
        .filter(|(header, _)| header == name)
        .map(|(_, value)| value)
        .collect();
    assert_eq!(
        values.len(),
        1,
        "{}: {what}: one `{name}` header",
        case.name
    );
    match expect {
        Expect::Exact(value) => assert_eq!(values[0], value, "{}: {what}", case.name),
        Expect::Bearer(token) => {
            assert_eq!(
                *values[0],
                format!("Bearer {token}"),
                "{}: {what}",
                case.name
            )
        }
        Expect::Prefix(prefix) => assert!(
            values[0].starts_with(prefix),
            "{}: {what}: `{name}` should start with {prefix:?}",
            case.name
        ),
    }
}

/// Secrets appear in no path, body or other header, and `Debug` shows no header value.
fn assert_confined(case: &Case, request: &UpstreamRequest) {
    let (credential, _) = case.credential;
    let body = String::from_utf8_lossy(&request.body);
    for secret in &case.secrets {
        assert!(
            !request.path.contains(secret),
            "{}: secret in the path",
            case.name
        );
        assert!(!body.contains(secret), "{}: secret in the body", case.name);
        for (name, value) in &request.headers {
            if *name != credential {
                assert!(!value.contains(secret), "{}: secret in `{name}`", case.name);
            }
        }
    }
    let debug = format!("{request:?}");
    for (name, value) in &request.headers {
        assert!(
            value.is_empty() || !debug.contains(value.as_str()),
            "{}: the Debug output shows the value of `{name}`",
            case.name
        );
    }
}

#[test]
fn requests_carry_the_credential_and_the_provider_model_never_the_alias() {
    for (case, adapter) in subjects() {
        let request = with_call(Route::Chat, CHAT, |call| {
            adapter.request(call, &case.deployment)
        })
        .unwrap_or_else(|error| panic!("{}: a plain chat is refused: {error:?}", case.name));
        assert!(
            request.path.starts_with('/'),
            "{}: {}",
            case.name,
            request.path
        );
        assert_credential(&case, "request", &request.headers);
        assert_confined(&case, &request);
        let body = json(case.name, "the request body", &request.body);
        assert!(body.is_object(), "{}: the body is not an object", case.name);
        if let Some(model) = body.get("model") {
            assert_eq!(
                model,
                case.deployment.provider_model.as_str(),
                "{}",
                case.name
            );
        }
        let text = String::from_utf8_lossy(&request.body);
        assert!(
            !text.contains(ALIAS),
            "{}: the alias is in the body",
            case.name
        );
        assert!(
            !request.path.contains(ALIAS),
            "{}: the alias is in the path",
            case.name
        );

        let probe = adapter.probe_at(&case.deployment, now());
        assert!(probe.path.starts_with('/'), "{}: {}", case.name, probe.path);
        assert_credential(&case, "probe", &probe.headers);
    }
}

/// What a translator wrote for `pieces`, fed in order, then the end of the body.
fn translate(adapter: &dyn ProviderAdapter, pieces: &[&[u8]]) -> (Vec<u8>, bool) {
    with_call(Route::Chat, CHAT_STREAM, |call| {
        let mut translator = adapter.stream(call);
        let mut out = BytesMut::new();
        for piece in pieces {
            translator.push(piece, &mut out).unwrap();
        }
        translator.finish(&mut out);
        (out.to_vec(), translator.is_done())
    })
}

#[test]
fn streams_end_with_done_whatever_their_chunk_boundaries() {
    for (case, adapter) in subjects() {
        let stream = &case.stream[..];
        let whole = with_call(Route::Chat, CHAT_STREAM, |call| {
            let mut translator = adapter.stream(call);
            let mut out = BytesMut::new();
            translator.push(stream, &mut out).unwrap();
            translator.finish(&mut out);
            assert!(translator.is_done(), "{}: not done", case.name);
            assert!(!translator.upstream_failed(), "{}: failed", case.name);
            assert!(translator.saw_content(), "{}: no content seen", case.name);
            let usage = translator.reported_usage();
            assert!(usage.is_some_and(|u| u.prompt_tokens > 0), "{}", case.name);
            out.to_vec()
        });
        assert!(
            whole.ends_with(b"data: [DONE]\n\n"),
            "{}: the stream does not end with [DONE]",
            case.name
        );
        let text = std::str::from_utf8(&whole).unwrap();
        for event in text.split_terminator("\n\n") {
            let payload = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{}: not a data event: {event:?}", case.name));
            if payload != "[DONE]" {
                let chunk = json(case.name, "a chunk", payload.as_bytes());
                assert_eq!(chunk["object"], "chat.completion.chunk", "{}", case.name);
                assert!(chunk["choices"].is_array(), "{}: {payload}", case.name);
            }
        }
        for cut in 0..=stream.len() {
            let (out, done) = translate(adapter.as_ref(), &[&stream[..cut], &stream[cut..]]);
            assert!(done, "{}: not done when cut at {cut}", case.name);
            assert_eq!(out, whole, "{}: cut at {cut}", case.name);
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            translate(adapter.as_ref(), &bytes).0,
            whole,
            "{}: byte by byte",
            case.name
        );
    }
}

#[test]
fn answers_become_chat_completions_with_usage() {
    for (case, adapter) in subjects() {
        let answer = with_call(Route::Chat, CHAT, |call| {
            adapter.response(call, case.answer)
        })
        .unwrap_or_else(|error| panic!("{}: {error:?}", case.name));
        let body = json(case.name, "the answer", &answer.body);
        assert_eq!(body["object"], "chat.completion", "{}", case.name);
        let message = &body["choices"][0]["message"];
        assert_eq!(message["role"], "assistant", "{}: {body}", case.name);
        assert!(message["content"].is_string(), "{}: {body}", case.name);
        let usage = &body["usage"];
        let count = |key: &str| {
            usage[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{}: usage.{key} in {body}", case.name))
        };
        let (prompt, completion) = (count("prompt_tokens"), count("completion_tokens"));
        assert_eq!(count("total_tokens"), prompt + completion, "{}", case.name);
        let billed = answer.usage.expect("usage reported");
        assert_eq!(
            (billed.prompt_tokens, billed.completion_tokens),
            (prompt, completion),
            "{}",
            case.name
        );
    }
}

#[test]
fn provider_400s_become_openai_400s_with_a_message() {
    for (case, adapter) in subjects() {
        let error = adapter.client_error(400, case.bad_request);
        assert_eq!(error.status, 400, "{}: {:?}", case.name, error.body);
        assert!(
            !error.body.error.message.trim().is_empty(),
            "{}: no message",
            case.name
        );
        let body = json(case.name, "the error body", &error.body.to_json());
        assert!(body["error"]["type"].is_string(), "{}: {body}", case.name);
    }
}

#[test]
fn client_error_never_panics_on_garbage() {
    let deep = "[".repeat(100_000);
    let huge = "x".repeat(1 << 20);
    let huge_message = format!(r#"{{"error":{{"message":"{huge}"}},"message":"{huge}"}}"#);
    let bodies: [&[u8]; 11] = [
        b"",
        b"not json at all",
        b"{",
        b"null",
        b"[]",
        br#"{"error":null}"#,
        br#"{"error":42,"message":false,"type":[]}"#,
        &[0xff, 0xfe, 0x00, 0x80],
        deep.as_bytes(),
        huge.as_bytes(),
        huge_message.as_bytes(),
    ];
    for (case, adapter) in subjects() {
        for status in [400, 404, 408, 413, 422, 429, 500, 503] {
            for body in bodies {
                let error = adapter.client_error(status, body);
                assert!(
                    (400..600).contains(&error.status),
                    "{}: HTTP {status} → {}",
                    case.name,
                    error.status
                );
                assert!(
                    !error.body.error.message.trim().is_empty(),
                    "{}: HTTP {status}, {} bytes: no message",
                    case.name,
                    body.len()
                );
                assert!(
                    error.body.error.message.chars().count() <= 1_000,
                    "{}: HTTP {status}: a message of {} characters",
                    case.name,
                    error.body.error.message.chars().count()
                );
            }
        }
    }
}

#[test]
fn what_an_adapter_refuses_is_a_400_before_any_call() {
    for (case, adapter) in subjects() {
        for (route, raw) in &case.refused {
            let result = with_call(route.clone(), raw, |call| {
                adapter.request(call, &case.deployment)
            });
            let error = match result {
                Ok(request) => panic!(
                    "{}: {} was not refused ({request:?})",
                    case.name,
                    String::from_utf8_lossy(raw)
                ),
                Err(error) => error,
            };
            assert_eq!(error.code.status(), 400, "{}: {error:?}", case.name);
            assert!(!error.message.is_empty(), "{}", case.name);
        }
    }
}
