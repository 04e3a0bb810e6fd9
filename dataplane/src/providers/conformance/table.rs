//! The conformance table: one row or more per provider kind, each a sample deployment with
//! its credential and what its provider sends (a stream, an answer, a 400), reusing the
//! adapters' own fixtures where they have them.

use std::collections::BTreeMap;
use std::sync::Arc;

use omg_shared::bedrock::AwsKeys;
use omg_shared::endpoint::Endpoint;
use omg_shared::provider::ProviderKind;
use omg_shared::secret::Secret;
use omg_shared::snapshot::Deployment;
use serde_json::{json, Value};

use crate::credentials::{Credentials, TokenCell};
use crate::providers::bedrock::eventstream::encode;
use crate::providers::Credential;
use crate::request::Route;

/// The alias clients ask for; it must never reach a provider.
pub(super) const ALIAS: &str = "conformance-alias";

/// A plain chat request.
pub(super) const CHAT: &[u8] =
    br#"{"model":"conformance-alias","messages":[{"role":"user","content":"Say hi"}]}"#;

/// The same, streamed, with usage asked for.
pub(super) const CHAT_STREAM: &[u8] = br#"{"model":"conformance-alias","messages":[{"role":"user","content":"Say hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;

/// The token Vertex AI rows get from their (test) token cell.
const VERTEX_TOKEN: &str = "ya29.conformance-token";
const ENTRA_TOKEN: &str = "eyJ0eXAi.entra-conformance-token";

/// The value a credential header must have.
pub(super) enum Expect {
    /// Exactly this.
    Exact(&'static str),
    /// `Bearer <this>`.
    Bearer(&'static str),
    /// Starting with this (signatures).
    Prefix(&'static str),
}

/// One sample deployment and what its provider says.
pub(super) struct Case {
    /// The row, in messages.
    pub(super) name: &'static str,
    pub(super) kind: ProviderKind,
    pub(super) deployment: Deployment,
    /// The header carrying the credential, and its value.
    pub(super) credential: (&'static str, Expect),
    /// Secret material that must appear nowhere but in that header.
    pub(super) secrets: Vec<&'static str>,
    /// A complete answer streamed in the provider's framing (usage included).
    pub(super) stream: Vec<u8>,
    /// A complete JSON answer.
    pub(super) answer: &'static [u8],
    /// A 400 error body in the provider's shape.
    pub(super) bad_request: &'static [u8],
    /// Requests the adapter itself refuses (before any upstream call).
    pub(super) refused: Vec<(Route, &'static [u8])>,
}

/// Credentials as the snapshot builder would hand them: Google service accounts get a cell
/// holding a token already.
pub(super) struct TestCredentials;

impl Credentials for TestCredentials {
    fn google(
        &self,
        key: &omg_shared::vertex::ServiceAccountKey,
    ) -> Result<Arc<TokenCell>, String> {
        Ok(Arc::new(TokenCell::with_token(
            key.client_email.clone(),
            VERTEX_TOKEN,
        )))
    }

    fn entra(&self, client: &omg_shared::azure::EntraClient) -> Result<Arc<TokenCell>, String> {
        Ok(Arc::new(TokenCell::with_token(
            client.client_id.clone(),
            ENTRA_TOKEN,
        )))
    }
}

/// The credential the snapshot builder would resolve for `deployment` with
/// [`TestCredentials`].
pub(super) fn credential(deployment: &Deployment) -> Credential {
    crate::credentials::for_deployment(deployment, &TestCredentials)
        .unwrap_or_else(|error| panic!("{}: no credential: {error}", deployment.id))
}

/// Every row.
pub(super) fn cases() -> Vec<Case> {
    vec![
        openai(),
        openai_compatible(),
        azure(),
        azure_entra(),
        anthropic(),
        bedrock_api_key(),
        bedrock_sigv4(),
        vertex_ai(),
        gemini_api(),
        huggingface(),
        mock(),
    ]
}

/// `base` with the members of `extra` set (both objects).
fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// A catalog entry of `kind` at `endpoint`, with the settings in `extra`.
fn deployment(kind: ProviderKind, endpoint: &str, extra: Value) -> Deployment {
    let base = json!({
        "id": format!("{}#0", kind.as_str()), "provider": kind.as_str(),
        "provider_model": "provider-model-1", "weight": 1, "enabled": true,
        "pricing": {"input": 0, "output": 0}
    });
    Deployment {
        endpoint: Some(Endpoint::parse(endpoint).unwrap()),
        ..serde_json::from_value(merged(base, extra)).unwrap()
    }
}

// --- OpenAI's format ------------------------------------------------------------------

const OPENAI_STREAM: &str = concat!(
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"provider-model-1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"provider-model-1","choices":[{"index":0,"delta":{"content":"Hi there"},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"provider-model-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"provider-model-1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

const OPENAI_ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"provider-model-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

const OPENAI_400: &[u8] = br#"{"error":{"message":"Invalid value for 'temperature'.","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}"#;

/// A provider of OpenAI's format with a bearer key: everything is passed through, so the
/// adapter refuses nothing (the provider decides).
fn openai_format(
    name: &'static str,
    kind: ProviderKind,
    endpoint: &str,
    key: &'static str,
) -> Case {
    Case {
        name,
        kind,
        deployment: deployment(kind, endpoint, json!({ "api_key": key })),
        credential: ("authorization", Expect::Bearer(key)),
        secrets: vec![key],
        stream: OPENAI_STREAM.as_bytes().to_vec(),
        answer: OPENAI_ANSWER,
        bad_request: OPENAI_400,
        refused: Vec::new(),
    }
}

fn openai() -> Case {
    openai_format(
        "openai",
        ProviderKind::OpenAi,
        "https://api.openai.com/v1",
        "sk-conformance-openai",
    )
}

fn openai_compatible() -> Case {
    openai_format(
        "openai-compatible",
        ProviderKind::OpenAiCompatible,
        "http://vllm.internal:8000/v1",
        "compatible-conformance-key",
    )
}

fn azure() -> Case {
    // Azure's stream opens with its prompt filter chunk.
    let filter = r#"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#;
    let mut case = openai_format(
        "azure",
        ProviderKind::Azure,
        "https://conformance.openai.azure.com",
        "azure-conformance-key",
    );
    case.deployment.api_version = Some("2024-10-21".to_owned());
    case.credential = ("api-key", Expect::Exact("azure-conformance-key"));
    case.stream = format!("{filter}\n\n{OPENAI_STREAM}").into_bytes();
    case.bad_request =
        br#"{"error":{"code":"BadRequest","message":"Invalid value for 'temperature'."}}"#;
    case
}

/// Azure with Entra ID tokens: the bearer is the token, never the client secret (`api_key`).
fn azure_entra() -> Case {
    let mut case = azure();
    case.name = "azure (Entra ID)";
    case.deployment.metadata = BTreeMap::from([
        ("azure_auth".to_owned(), "entra".to_owned()),
        ("azure_tenant_id".to_owned(), "contoso".to_owned()),
        ("azure_client_id".to_owned(), "conformance-app".to_owned()),
    ]);
    case.credential = ("authorization", Expect::Bearer(ENTRA_TOKEN));
    case
}

fn huggingface() -> Case {
    let mut case = openai_format(
        "huggingface (TEI embeddings)",
        ProviderKind::HuggingFace,
        "http://tei.internal:8080",
        "hf_conformance",
    );
    case.deployment.metadata = BTreeMap::from([("hf_embeddings".to_owned(), "tei".to_owned())]);
    case.bad_request = br#"{"error":"Input validation error: `inputs` cannot be empty","error_type":"Validation"}"#;
    // TEI takes texts only.
    case.refused = vec![(
        Route::Embeddings,
        br#"{"model":"conformance-alias","input":[[1,2,3]]}"#,
    )];
    case
}

// --- translated providers -------------------------------------------------------------

/// Chat parameters the translating adapters refuse.
const LOGPROBS: &[u8] = br#"{"model":"conformance-alias","messages":[{"role":"user","content":"Say hi"}],"logprobs":true}"#;
const COMPLETIONS: &[u8] = br#"{"model":"conformance-alias","prompt":"Say hi"}"#;

fn anthropic() -> Case {
    Case {
        name: "anthropic",
        kind: ProviderKind::Anthropic,
        deployment: deployment(
            ProviderKind::Anthropic,
            "https://api.anthropic.com",
            json!({"api_key": "sk-ant-conformance"}),
        ),
        credential: ("x-api-key", Expect::Exact("sk-ant-conformance")),
        secrets: vec!["sk-ant-conformance"],
        stream: include_bytes!("../anthropic/fixtures/stream_text.sse").to_vec(),
        answer: include_bytes!("../anthropic/fixtures/response_text.json"),
        bad_request: br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#,
        refused: vec![
            (Route::Chat, LOGPROBS),
            (
                Route::Chat,
                br#"{"model":"conformance-alias","messages":[{"role":"user","content":"Say hi"}],"n":2}"#,
            ),
        ],
    }
}

/// Bedrock's stream fixture (`[event type, payload]` pairs) as event-stream frames.
fn bedrock_stream() -> Vec<u8> {
    let events: Value = serde_json::from_slice(include_bytes!(
        "../bedrock/fixtures/stream_tool_use.events.json"
    ))
    .unwrap();
    let mut bytes = Vec::new();
    for pair in events.as_array().unwrap() {
        let headers = [
            (":event-type", pair[0].as_str().unwrap()),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ];
        bytes.extend(encode(&headers, &serde_json::to_vec(&pair[1]).unwrap()));
    }
    bytes
}

fn bedrock(name: &'static str, credential: Value) -> Case {
    let settings = json!({"region": "us-east-1", "provider_model": "anthropic.claude-test-v1:0"});
    Case {
        name,
        kind: ProviderKind::Bedrock,
        deployment: deployment(
            ProviderKind::Bedrock,
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            merged(settings, credential),
        ),
        credential: ("authorization", Expect::Prefix("")),
        secrets: Vec::new(),
        stream: bedrock_stream(),
        answer: include_bytes!("../bedrock/fixtures/response_text.json"),
        bad_request:
            br#"{"message":"The provided request is not valid: temperature out of range"}"#,
        refused: vec![(Route::Chat, LOGPROBS), (Route::Completions, COMPLETIONS)],
    }
}

fn bedrock_api_key() -> Case {
    Case {
        credential: ("authorization", Expect::Bearer("bedrock-conformance-key")),
        secrets: vec!["bedrock-conformance-key"],
        ..bedrock(
            "bedrock (API key)",
            json!({"api_key": "bedrock-conformance-key"}),
        )
    }
}

fn bedrock_sigv4() -> Case {
    let mut case = bedrock("bedrock (SigV4)", json!({}));
    case.deployment.aws_keys = Some(AwsKeys {
        access_key_id: "AKIDCONFORMANCE".to_owned(),
        secret_access_key: Secret::new("conformance/secret/access+key"),
        session_token: Some(Secret::new("conformance-session-token")),
    });
    case.credential = (
        "authorization",
        Expect::Prefix("AWS4-HMAC-SHA256 Credential=AKIDCONFORMANCE/"),
    );
    case.secrets = vec!["conformance/secret/access+key"];
    case
}

fn vertex(name: &'static str, extra: Value) -> Case {
    Case {
        name,
        kind: ProviderKind::Vertex,
        deployment: deployment(
            ProviderKind::Vertex,
            "https://us-central1-aiplatform.googleapis.com",
            extra,
        ),
        credential: ("authorization", Expect::Prefix("")),
        secrets: Vec::new(),
        stream: include_bytes!("../vertex/fixtures/stream_text.sse").to_vec(),
        answer: include_bytes!("../vertex/fixtures/response_text.json"),
        bad_request: br#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}"#,
        refused: vec![(Route::Chat, LOGPROBS), (Route::Completions, COMPLETIONS)],
    }
}

fn vertex_ai() -> Case {
    let key = include_str!("../../../../tests/fixtures/vertex/test-service-account.json");
    Case {
        credential: ("authorization", Expect::Bearer(VERTEX_TOKEN)),
        secrets: vec![VERTEX_TOKEN, "PRIVATE KEY"],
        ..vertex(
            "vertex (Vertex AI, service account)",
            json!({"api_key": key, "region": "us-central1",
                "metadata": {"vertex_project": "conformance-project"}}),
        )
    }
}

fn gemini_api() -> Case {
    Case {
        credential: ("x-goog-api-key", Expect::Exact("gemini-conformance-key")),
        secrets: vec!["gemini-conformance-key"],
        ..vertex(
            "vertex (Gemini API key)",
            json!({"api_key": "gemini-conformance-key", "metadata": {"vertex_api": "gemini"}}),
        )
    }
}

/// The mock answers in process (its adapter's `local`): nothing to check here beyond that.
fn mock() -> Case {
    Case {
        name: "mock",
        kind: ProviderKind::Mock,
        deployment: deployment(ProviderKind::Mock, "http://mock.invalid", json!({})),
        credential: ("", Expect::Exact("")),
        secrets: Vec::new(),
        stream: Vec::new(),
        answer: b"",
        bad_request: b"",
        refused: Vec::new(),
    }
}
