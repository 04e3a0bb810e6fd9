use bytes::BytesMut;
use omg_shared::endpoint::Endpoint;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::providers::{Ingress, StreamFault};
use crate::request::{RequestBody, Route};

fn deployment(endpoint: &str, extra: Value) -> Deployment {
    let mut spec = json!({
        "id": "gpt#0", "provider": "azure", "provider_model": "gpt-4o",
        "api_key": "azure-key", "api_version": "2024-10-21",
        "weight": 1, "enabled": true,
        "pricing": {"input": 0, "output": 0}
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    let mut deployment: Deployment = serde_json::from_value(spec).unwrap();
    deployment.endpoint = Some(Endpoint::parse(endpoint).unwrap());
    deployment
}

/// Credentials whose Entra ID cells already hold a token (no refresher, no network).
struct FakeEntra;

impl Credentials for FakeEntra {
    fn google(
        &self,
        _key: &omg_shared::vertex::ServiceAccountKey,
    ) -> Result<Arc<TokenCell>, String> {
        Err("no Google credentials in these tests".to_owned())
    }

    fn entra(&self, client: &EntraClient) -> Result<Arc<TokenCell>, String> {
        Ok(Arc::new(TokenCell::with_token(
            client.client_id.clone(),
            "entra-token",
        )))
    }
}

fn adapter(deployment: &Deployment) -> AzureAdapter {
    AzureAdapter::for_deployment(deployment, &FakeEntra).unwrap()
}

fn upstream(deployment: &Deployment, route: Route, raw: &[u8]) -> UpstreamRequest {
    let body = RequestBody::parse(raw, &route).unwrap();
    let call = Call {
        route: &route,
        body: &body,
        raw,
        alias: "gpt",
        request_id: "req-1",
        created: 1,
        ingress: Ingress::OpenAi,
        now: std::time::SystemTime::UNIX_EPOCH,
    };
    adapter(deployment).request(&call, deployment).unwrap()
}

const CHAT: &[u8] = br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn paths_name_the_deployment_and_the_api_version() {
    let d = deployment("https://res.openai.azure.com", json!({}));
    assert_eq!(
        upstream(&d, Route::Chat, CHAT).path,
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    );
    let named = deployment(
        "https://res.openai.azure.com/",
        json!({"deployment": "prod-4o", "api_version": "2025-01-01-preview"}),
    );
    assert_eq!(
        upstream(
            &named,
            Route::Completions,
            br#"{"model":"gpt","prompt":"x"}"#
        )
        .path,
        "/openai/deployments/prod-4o/completions?api-version=2025-01-01-preview"
    );
    assert_eq!(
        upstream(&named, Route::Embeddings, br#"{"model":"gpt","input":"x"}"#).path,
        "/openai/deployments/prod-4o/embeddings?api-version=2025-01-01-preview"
    );
    // A path prefix (a proxy in front of the resource) is kept; a trailing `/openai` is not
    // doubled.
    for (endpoint, path) in [
        (
            "http://proxy/azure",
            "/azure/openai/deployments/gpt-4o/chat/completions",
        ),
        (
            "https://res.openai.azure.com/openai",
            "/openai/deployments/gpt-4o/chat/completions",
        ),
        (
            "https://res.openai.azure.com/openai/",
            "/openai/deployments/gpt-4o/chat/completions",
        ),
    ] {
        let d = deployment(endpoint, json!({}));
        assert_eq!(
            upstream(&d, Route::Chat, CHAT).path,
            format!("{path}?api-version=2024-10-21"),
            "{endpoint}"
        );
    }
    let probe = adapter(&d).probe(&d);
    assert_eq!(probe.path, "/openai/models?api-version=2024-10-21");
    assert_eq!(probe.headers, vec![("api-key", "azure-key".to_owned())]);
}

#[test]
fn deployment_names_are_one_encoded_path_segment() {
    assert_eq!(encode_segment("gpt-4o_v2.1~x"), "gpt-4o_v2.1~x");
    assert_eq!(
        encode_segment("my dep/ü+fail?x#y%"),
        "my%20dep%2F%C3%BC%2Bfail%3Fx%23y%25"
    );
    assert_eq!(encode_segment(".."), "%2E%2E");
    assert_eq!(encode_segment("."), "%2E");
    let d = deployment("https://r", json!({"deployment": "a/b c"}));
    assert!(upstream(&d, Route::Chat, CHAT)
        .path
        .starts_with("/openai/deployments/a%2Fb%20c/chat/completions?"));
}

#[test]
fn credentials_go_in_api_key_or_as_a_bearer_token() {
    let d = deployment("https://r", json!({}));
    assert_eq!(
        upstream(&d, Route::Chat, CHAT).headers,
        vec![("api-key", "azure-key".to_owned())]
    );
    let bearer = deployment("https://r", json!({"metadata": {"azure_auth": "bearer"}}));
    assert_eq!(
        upstream(&bearer, Route::Chat, CHAT).headers,
        vec![("authorization", "Bearer azure-key".to_owned())]
    );
    let keyless = deployment("https://r", json!({"api_key": null}));
    assert!(upstream(&keyless, Route::Chat, CHAT).headers.is_empty());
    // Entra ID: the token of the app registration, never the client secret.
    let entra = deployment(
        "https://r",
        json!({"metadata": {"azure_auth": "entra", "azure_tenant_id": "contoso", "azure_client_id": "app-1"}}),
    );
    assert_eq!(
        upstream(&entra, Route::Chat, CHAT).headers,
        vec![("authorization", "Bearer entra-token".to_owned())]
    );
    assert_eq!(adapter(&entra).ready(), Ok(()));
}

#[test]
fn bad_settings_are_refused_naming_them() {
    let error = |extra: Value| {
        AzureAdapter::for_deployment(&deployment("https://r", extra), &FakeEntra).unwrap_err()
    };
    assert!(error(json!({"api_version": null})).contains("`api_version` is missing"));
    assert!(error(json!({"api_version": "v1"})).contains("`api_version` `v1`"));
    assert!(error(json!({"metadata": {"azure_auth": "kerberos"}})).contains("azure_auth"));
    assert!(error(json!({"metadata": {"azure_auth": "entra"}})).contains("azure_tenant_id"));
    assert!(error(json!({"deployment": ""})).contains("`deployment`"));
}

#[test]
fn bodies_get_the_provider_model_and_stream_usage_when_the_version_takes_it() {
    let body = |d: &Deployment, raw: &[u8]| -> Value {
        serde_json::from_slice(&upstream(d, Route::Chat, raw).body).unwrap()
    };
    let d = deployment("https://r", json!({}));
    let sent = body(&d, CHAT);
    assert_eq!(sent["model"], "gpt-4o");
    assert!(sent.get("stream_options").is_none());
    let stream = br#"{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        body(&d, stream)["stream_options"],
        json!({"include_usage": true})
    );
    // Before 2024-08-01 Azure refuses `stream_options`: not added, the client's kept.
    let old = deployment("https://r", json!({"api_version": "2024-06-01"}));
    assert!(body(&old, stream).get("stream_options").is_none());
    let asked = br#"{"model":"gpt","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        body(&old, asked)["stream_options"],
        json!({"include_usage": true})
    );
}

/// An Azure chat stream as the service sends it (gpt-4o, api-version 2024-10-21).
const STREAM: &str = concat!(
    "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"refusal\":null,\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1727000000,\"id\":\"chatcmpl-A1\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_1\",\"usage\":null}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}},\"delta\":{\"content\":\"Hello wörld\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1727000000,\"id\":\"chatcmpl-A1\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_1\",\"usage\":null}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"stop\",\"index\":0,\"logprobs\":null}],\"created\":1727000000,\"id\":\"chatcmpl-A1\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_1\",\"usage\":null}\n\n",
    "data: {\"choices\":[],\"created\":1727000000,\"id\":\"chatcmpl-A1\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_1\",\"usage\":{\"completion_tokens\":3,\"prompt_tokens\":9,\"total_tokens\":12}}\n\n",
    "data: [DONE]\n\n",
);

#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    result: Result<(), StreamFault>,
    usage: Option<crate::providers::Usage>,
    done: bool,
    saw_content: bool,
}

fn feed(pieces: &[&[u8]], include_usage: bool) -> Outcome {
    let d = deployment("https://r", json!({}));
    let raw: &[u8] = if include_usage {
        br#"{"model":"gpt","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#
    } else {
        br#"{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
    };
    let body = RequestBody::parse(raw, &Route::Chat).unwrap();
    let call = Call {
        route: &Route::Chat,
        body: &body,
        raw,
        alias: "gpt",
        request_id: "req-1",
        created: 1,
        ingress: Ingress::OpenAi,
        now: std::time::SystemTime::UNIX_EPOCH,
    };
    let mut translator = adapter(&d).stream(&call);
    let mut out = BytesMut::new();
    let mut result = Ok(());
    for piece in pieces {
        result = translator.push(piece, &mut out);
        if result.is_err() {
            break;
        }
    }
    Outcome {
        out: out.to_vec(),
        result,
        usage: translator.reported_usage(),
        done: translator.is_done(),
        saw_content: translator.saw_content(),
    }
}

/// The events of [`STREAM`] the client gets.
fn expected(include_usage: bool) -> Vec<u8> {
    let events: Vec<&str> = STREAM.split_inclusive("\n\n").collect();
    let mut kept = events[1..4].concat();
    if include_usage {
        kept.push_str(events[4]);
    }
    kept.push_str(events[5]);
    kept.into_bytes()
}

#[test]
fn the_prompt_filter_chunk_is_dropped_and_the_rest_passes() {
    for include_usage in [false, true] {
        let outcome = feed(&[STREAM.as_bytes()], include_usage);
        assert_eq!(outcome.result, Ok(()));
        assert_eq!(
            String::from_utf8_lossy(&outcome.out),
            String::from_utf8_lossy(&expected(include_usage))
        );
        assert!(outcome.done && outcome.saw_content);
        assert_eq!(
            outcome
                .usage
                .map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((9, 3))
        );
    }
    // Only a leading one: once content flowed, chunks without choices are the provider's.
    let events: Vec<&str> = STREAM.split_inclusive("\n\n").collect();
    let late = [events[1], events[0], events[2]].concat();
    let outcome = feed(&[late.as_bytes()], true);
    assert_eq!(outcome.out, late.as_bytes());
    // Malformed events are still refused; in-band errors still pass.
    let broken = format!("{}data: {{not json\n\n", events[0]);
    assert_eq!(
        feed(&[broken.as_bytes()], false).result,
        Err(StreamFault::MALFORMED)
    );
    let error = "data: {\"error\":{\"message\":\"boom\"}}\n\n";
    assert_eq!(feed(&[error.as_bytes()], false).out, error.as_bytes());
}

#[test]
fn prompt_filter_chunks_are_recognised() {
    assert!(is_prompt_filter_chunk(
        STREAM
            .split_inclusive("\n\n")
            .next()
            .unwrap_or_default()
            .as_bytes()
    ));
    for kept in [
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n",
        "data: {\"choices\":[{\"index\":0}]}\n\n",
        "data: {\"choices\":[],\"error\":{\"message\":\"x\"}}\n\n",
        "data: {\"id\":\"x\"}\n\n",
        "data: [DONE]\n\n",
        ": keep-alive\n\n",
    ] {
        assert!(!is_prompt_filter_chunk(kept.as_bytes()), "{kept}");
    }
}

/// `input` cut at `points` (any order, any range).
fn split(input: &[u8], points: &[usize], include_usage: bool) -> Outcome {
    let mut points: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for point in points {
        pieces.push(&input[last..point]);
        last = point;
    }
    pieces.push(&input[last..]);
    feed(&pieces, include_usage)
}

proptest! {
    /// Split anywhere (inside UTF-8 sequences, inside JSON, inside `\r\n`), the client gets
    /// the same bytes and the same usage as from the whole stream.
    #[test]
    fn chunk_boundaries_do_not_matter(
        cuts in proptest::collection::vec(0usize..4096, 0..40),
        include_usage in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let input = if crlf { STREAM.replace('\n', "\r\n") } else { STREAM.to_owned() };
        let reference = feed(&[input.as_bytes()], include_usage);
        prop_assert_eq!(split(input.as_bytes(), &cuts, include_usage), reference);
    }
}

fn mapped(status: u16, body: &str) -> (u16, Value) {
    let error = map_error(status, body.as_bytes());
    (error.status, serde_json::to_value(error.body).unwrap())
}

#[test]
fn content_filter_refusals_become_openai_errors() {
    // As Azure sends it (api-version 2024-10-21).
    let body = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}}}"#;
    let (status, error) = mapped(400, body);
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "content_filter");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "prompt");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("The response was filtered"),
        "{message}"
    );
    assert!(!error.to_string().contains("innererror") && !error.to_string().contains("severity"));
    // A long message is cut.
    let long = body.replace("Please modify", &"x".repeat(2000));
    let (_, error) = mapped(400, &long);
    assert_eq!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .count(),
        501
    );
}

#[test]
fn azure_error_bodies_keep_their_status_and_say_what_to_fix() {
    let (status, error) = mapped(
        404,
        r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#,
    );
    assert_eq!(status, 404);
    assert_eq!(error["error"]["code"], "DeploymentNotFound");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("`deployment`"));

    let (status, error) = mapped(
        404,
        r#"{"error":{"code":"404","message":"Resource not found"}}"#,
    );
    assert_eq!(status, 404);
    assert_eq!(error["error"]["code"], Value::Null);
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Resource not found") && message.contains("`api_version`"),
        "{message}"
    );

    let (status, error) = mapped(
        400,
        r#"{"error":{"code":"OperationNotSupported","message":"The embeddings operation does not work with the specified model, gpt-4o. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993."}}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "OperationNotSupported");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], Value::Null);

    // OpenAI-shaped errors from Azure keep their fields.
    let (status, error) = mapped(
        400,
        r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "context_length_exceeded");
    assert_eq!(error["error"]["param"], "messages");

    let (status, error) = mapped(
        400,
        r#"{"error":{"code":400,"message":"Unrecognized request argument supplied: stream_options"}}"#,
    );
    assert_eq!((status, error["error"]["code"].clone()), (400, Value::Null));
    assert_eq!(
        error["error"]["message"],
        "Unrecognized request argument supplied: stream_options"
    );

    let (status, error) = mapped(422, "<html>oops</html>");
    assert_eq!(status, 422);
    assert_eq!(
        error["error"]["message"],
        "The upstream rejected the request with HTTP 422."
    );

    let (status, error) = mapped(302, r#"{"error":{"code":"Moved","message":"elsewhere"}}"#);
    assert_eq!(status, 502);
    assert_eq!(error["error"]["code"], "upstream_error");
}
