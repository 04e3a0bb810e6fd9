//! Route and body parsing tests.

use super::*;

fn parse<'a>(body: &'a str, route: &Route) -> Result<RequestBody<'a>, ApiError> {
    RequestBody::parse(body.as_bytes(), route)
}

#[test]
fn routes() {
    assert_eq!(route("POST", "/v1/chat/completions"), Ok(Route::Chat));
    assert_eq!(route("GET", "/v1/models"), Ok(Route::ListModels));
    assert_eq!(
        route("GET", "/v1/models/org%2Fm"),
        Ok(Route::GetModel("org/m".to_owned()))
    );
    assert_eq!(
        route("GET", "/v1/chat/completions").err().map(|e| e.code),
        Some(ErrorCode::MethodNotAllowed)
    );
    assert_eq!(
        route("POST", "/v1/nope").err().map(|e| e.code),
        Some(ErrorCode::UnknownUrl)
    );
    assert_eq!(
        route("GET", "/").err().map(|e| e.code),
        Some(ErrorCode::UnknownUrl)
    );
}

#[test]
fn parses_a_chat_body_and_rewrites_it() {
    let text = r#"{"model":"alias","messages":[{"role":"user","content":"hi there"}],"stream":true,"temperature":0.5,"stream_options":{"include_usage":false}}"#;
    let body = parse(text, &Route::Chat).unwrap_or_else(|e| unreachable!("{e:?}"));
    assert_eq!(body.model, "alias");
    assert!(body.stream);
    assert!(!body.include_usage);
    let upstream: serde_json::Value =
        serde_json::from_slice(&body.upstream_body("gpt-4o")).unwrap_or_default();
    assert_eq!(upstream["model"], "gpt-4o");
    assert_eq!(upstream["stream_options"]["include_usage"], true);
    assert_eq!(upstream["temperature"], 0.5);
    assert_eq!(upstream["messages"][0]["content"], "hi there");
    assert_eq!(body.prompt_text().head().trim(), "hi there");
}

#[test]
fn non_stream_bodies_keep_their_fields() {
    let text = r#"{"model":"a","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"n\u0031":1}"#;
    let body = parse(text, &Route::Chat).unwrap_or_else(|e| unreachable!("{e:?}"));
    let upstream: serde_json::Value =
        serde_json::from_slice(&body.upstream_body("m")).unwrap_or_default();
    assert_eq!(upstream["n1"], 1);
    assert!(upstream.get("stream_options").is_none());
    assert_eq!(body.prompt_text().head().trim(), "x");
}

#[test]
fn client_mistakes_name_the_param() {
    let cases: [(&str, Route, ErrorCode, Option<&str>); 12] = [
        ("not json", Route::Chat, ErrorCode::InvalidJson, None),
        ("[1,2]", Route::Chat, ErrorCode::InvalidJson, None),
        (
            r#"{"model":"a","model":"b","messages":[{}]}"#,
            Route::Chat,
            ErrorCode::InvalidJson,
            None,
        ),
        (
            r#"{"messages":[{}]}"#,
            Route::Chat,
            ErrorCode::MissingParameter,
            Some("model"),
        ),
        (
            r#"{"model":5,"messages":[{}]}"#,
            Route::Chat,
            ErrorCode::InvalidParameter,
            Some("model"),
        ),
        (
            r#"{"model":"a"}"#,
            Route::Chat,
            ErrorCode::MissingParameter,
            Some("messages"),
        ),
        (
            r#"{"model":"a","messages":[]}"#,
            Route::Chat,
            ErrorCode::InvalidParameter,
            Some("messages"),
        ),
        (
            r#"{"model":"a","messages":"hi"}"#,
            Route::Chat,
            ErrorCode::InvalidParameter,
            Some("messages"),
        ),
        (
            r#"{"model":"a","messages":[{}],"stream":"yes"}"#,
            Route::Chat,
            ErrorCode::InvalidParameter,
            Some("stream"),
        ),
        (
            r#"{"model":"a"}"#,
            Route::Completions,
            ErrorCode::MissingParameter,
            Some("prompt"),
        ),
        (
            r#"{"model":"a"}"#,
            Route::Embeddings,
            ErrorCode::MissingParameter,
            Some("input"),
        ),
        (
            r#"{"model":"a","input":"x","encoding_format":"hex"}"#,
            Route::Embeddings,
            ErrorCode::InvalidParameter,
            Some("encoding_format"),
        ),
    ];
    for (text, route, code, param) in cases {
        let error = parse(text, &route).err();
        assert_eq!(error.as_ref().map(|e| e.code), Some(code), "{text}");
        assert_eq!(error.and_then(|e| e.param), param, "{text}");
    }
}

#[test]
fn embedding_inputs() {
    let body = parse(
        r#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#,
        &Route::Embeddings,
    )
    .unwrap_or_else(|e| unreachable!("{e:?}"));
    assert_eq!(
        body.embedding_inputs(),
        vec!["a".to_owned(), "b".to_owned()]
    );
    assert!(body.base64_embeddings);
    let tokens = parse(r#"{"model":"e","input":[1,2,3]}"#, &Route::Embeddings)
        .unwrap_or_else(|e| unreachable!("{e:?}"));
    assert_eq!(tokens.embedding_inputs().len(), 1);
}

#[test]
fn max_tokens_above_the_cap_is_refused_naming_the_param() {
    let parse_chat = |extra: &str| {
        let text =
            format!(r#"{{"model":"a","messages":[{{"role":"user","content":"x"}}]{extra}}}"#);
        let body = RequestBody::parse(text.as_bytes(), &Route::Chat).map(|b| {
            (
                b.max_tokens,
                b.max_tokens_param,
                b.check_max_tokens(None).err(),
                b.check_max_tokens(Some(100)).err(),
            )
        });
        body.unwrap_or_else(|e| unreachable!("{e:?}"))
    };
    // u64::MAX once wrapped the local limiter's sums and opened the budget.
    let (max, param, unset, capped) = parse_chat(r#","max_tokens":18446744073709551615"#);
    assert_eq!((max, param), (Some(u64::MAX), "max_tokens"));
    for error in [unset, capped] {
        let error = error.unwrap_or_else(|| unreachable!("accepted"));
        assert_eq!(error.code, ErrorCode::InvalidParameter);
        assert_eq!(error.param, Some("max_tokens"));
    }
    // The documented cap, and the model's own `max_output_tokens`.
    let at_cap = format!(r#","max_completion_tokens":{MAX_OUTPUT_TOKENS_CAP}"#);
    let (_, param, unset, capped) = parse_chat(&at_cap);
    assert_eq!(param, "max_completion_tokens");
    assert!(unset.is_none());
    assert_eq!(capped.and_then(|e| e.param), Some("max_completion_tokens"));
    // Both sent: the larger bounds the completion, whichever it is.
    let (max, param, _, capped) = parse_chat(r#","max_completion_tokens":10,"max_tokens":500"#);
    assert_eq!((max, param), (Some(500), "max_tokens"));
    assert_eq!(capped.and_then(|e| e.param), Some("max_tokens"));
    let (max, _, _, capped) = parse_chat(r#","max_tokens":100"#);
    assert_eq!(max, Some(100));
    assert!(capped.is_none());
}

/// 100,000 distinct keys in about 1 MiB: the duplicate check was quadratic (minutes of one
/// worker); now the shape scan refuses the body after one pass.
#[test]
fn a_megabyte_of_distinct_keys_is_refused_in_one_pass() {
    let keys: Vec<String> = (0..100_000).map(|i| format!(r#""k{i:06}":0"#)).collect();
    let text = format!(
        r#"{{"model":"a","messages":[{{"role":"user","content":"x"}}],{}}}"#,
        keys.join(",")
    );
    assert!(text.len() > 1_000_000);
    let error = parse(&text, &Route::Chat).err();
    assert_eq!(error.map(|e| e.code), Some(ErrorCode::RequestTooComplex));
    // Under the cap, duplicates are still found (by hash, not by pairwise comparison).
    let some: Vec<String> = (0..200).map(|i| format!(r#""k{i}":0"#)).collect();
    let text = format!(
        r#"{{"model":"a","messages":[{{}}],{},"k7":1}}"#,
        some.join(",")
    );
    let error = parse(&text, &Route::Chat).err();
    assert_eq!(error.as_ref().map(|e| e.code), Some(ErrorCode::InvalidJson));
    assert!(error.is_some_and(|e| e.message.contains("duplicate key `k7`")));
}

proptest::proptest! {
    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        for route in [Route::Chat, Route::Completions, Route::Embeddings] {
            if let Ok(body) = RequestBody::parse(&bytes, &route) {
                let rewritten = body.upstream_body("m");
                proptest::prop_assert!(serde_json::from_slice::<serde_json::Value>(&rewritten).is_ok());
            }
        }
    }
}
