//! `BedrockAdapter`: paths (the model id encoded once), credentials, routes.

use std::time::SystemTime;

use omg_shared::bedrock::AwsKeys;
use omg_shared::endpoint::Endpoint;
use omg_shared::secret::Secret;
use omg_shared::snapshot::Deployment;

use crate::providers::bedrock::{BedrockAdapter, BedrockCredential};
use crate::providers::{Call, ProviderAdapter};
use crate::request::{RequestBody, Route};

fn deployment(model: &str) -> Deployment {
    let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
        "id": "b#0", "provider": "bedrock", "provider_model": model, "weight": 1,
        "enabled": true, "pricing": {"input": 0, "output": 0}, "region": "us-east-1"
    }))
    .unwrap();
    deployment.endpoint = Some(Endpoint::parse("http://127.0.0.1:9000/proxy").unwrap());
    deployment
}

fn request(
    adapter: &BedrockAdapter,
    deployment: &Deployment,
    route: Route,
    body: &[u8],
) -> crate::providers::UpstreamRequest {
    let parsed = RequestBody::parse(body, &route).unwrap();
    let call = Call {
        route: &route,
        body: &parsed,
        raw: body,
        alias: "alias",
        request_id: "req-1",
        created: 1,
        ingress: crate::providers::Ingress::OpenAi,
        now: SystemTime::now(),
    };
    adapter.request(&call, deployment).unwrap()
}

#[test]
fn paths_credentials_and_routes() {
    let model = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0";
    let deployment = deployment(model);
    let bearer = BedrockAdapter::new(
        &deployment,
        BedrockCredential::ApiKey(Secret::new("bedrock-key")),
    )
    .unwrap();
    let chat = br#"{"model":"alias","messages":[{"role":"user","content":"hi"}]}"#;
    let built = request(&bearer, &deployment, Route::Chat, chat);
    assert_eq!(
        built.path,
        "/proxy/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(
        built.headers,
        vec![("authorization", "Bearer bedrock-key".to_owned())]
    );
    let stream = br#"{"model":"alias","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    assert!(request(&bearer, &deployment, Route::Chat, stream)
        .path
        .ends_with("/converse-stream"));
    let embed = br#"{"model":"alias","input":"hello"}"#;
    assert!(request(&bearer, &deployment, Route::Embeddings, embed)
        .path
        .ends_with("/invoke"));
    assert_eq!(bearer.stream_accept(), "application/vnd.amazon.eventstream");
    assert!(bearer.is_stream_content_type("application/vnd.amazon.eventstream"));
    assert!(!bearer.is_stream_content_type("text/event-stream"));

    let signed = BedrockAdapter::new(
        &deployment,
        BedrockCredential::Keys(AwsKeys {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: Secret::new("secret"),
            session_token: None,
        }),
    )
    .unwrap();
    let built = request(&signed, &deployment, Route::Chat, chat);
    let names: Vec<&str> = built.headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["x-amz-date", "authorization"]);
    let debug = format!("{signed:?} {bearer:?}");
    assert!(
        !debug.contains("secret") && !debug.contains("bedrock-key"),
        "{debug}"
    );
    let probe = signed.probe_at(&deployment, SystemTime::now());
    assert_eq!(probe.path, "/proxy/async-invoke?maxResults=1");
    assert!(probe.headers.iter().any(|(n, _)| *n == "authorization"));
}

#[test]
fn dot_only_model_ids_cannot_climb_the_path() {
    let deployment = deployment("..");
    let adapter =
        BedrockAdapter::new(&deployment, BedrockCredential::ApiKey(Secret::new("k"))).unwrap();
    let chat = br#"{"model":"alias","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        request(&adapter, &deployment, Route::Chat, chat).path,
        "/proxy/model/%2E%2E/converse"
    );
}
