//! `request`: deployment paths, `api-version`, the credential header, bodies; the golden
//! requests of each operation.

use omg_shared::snapshot::Deployment;
use serde_json::{json, Value};

use super::{adapter, build, deployment, fixture, golden_json, with_call};
use crate::providers::azure::encode_segment;
use crate::providers::{ProviderAdapter, UpstreamRequest};
use crate::request::Route;

fn upstream(deployment: &Deployment, route: Route, raw: &[u8]) -> UpstreamRequest {
    with_call(route, raw, |call| {
        adapter(deployment).request(call, deployment).unwrap()
    })
}

/// What an upstream request is, as the golden files hold it.
fn as_json(request: &UpstreamRequest) -> Value {
    json!({
        "path": request.path,
        "headers": request.headers.iter().map(|(name, value)| json!([name, value])).collect::<Vec<_>>(),
        "body": super::json(&request.body),
    })
}

#[test]
fn golden_requests() {
    let chat = deployment(
        "https://my-resource.openai.azure.com/",
        json!({"deployment": "gpt-4o-prod"}),
    );
    let entra = deployment(
        "https://my-resource.openai.azure.com",
        json!({"deployment": "gpt-4o-prod", "metadata": {"azure_auth": "entra", "azure_tenant_id": "contoso.onmicrosoft.com", "azure_client_id": "11111111-2222-3333-4444-555555555555"}}),
    );
    let embeddings = deployment(
        "https://my-resource.openai.azure.com",
        json!({"provider_model": "text-embedding-3-small"}),
    );
    let images = deployment(
        "https://my-resource.openai.azure.com",
        json!({"provider_model": "dall-e-3"}),
    );
    for (name, d, route) in [
        ("request_chat", &chat, Route::Chat),
        ("request_stream", &entra, Route::Chat),
        ("request_embeddings", &embeddings, Route::Embeddings),
        ("request_images", &images, Route::ImagesGenerations),
    ] {
        let request = upstream(d, route, &fixture(&format!("{name}.openai.json")));
        golden_json(&format!("{name}.azure.json"), &as_json(&request));
    }
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
    let error = |extra: Value| build(&deployment("https://r", extra)).unwrap_err();
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
