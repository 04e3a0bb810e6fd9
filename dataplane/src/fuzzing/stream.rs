//! Fuzzing the provider adapters' readers: stream translators fed cut streams, JSON answer
//! translators, error mappers, and the Anthropic ingress's answer converters.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use omg_shared::endpoint::Endpoint;
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;
use serde_json::{json, Value};

use super::{bytewise, eventstream_records, frame_sse, Input};
use crate::credentials::{Credentials, TokenCell};
use crate::ingress::anthropic::{from_openai, from_openai_error, EventConverter};
use crate::providers::{
    adapter_for, Call, Ingress, ProviderAdapter, StreamFault, StreamTranslator, Usage,
};
use crate::request::{RequestBody, Route};

const ALIAS: &str = "fuzz-alias";

/// Streamed chat requests, with and without `stream_options.include_usage`.
const CHAT_STREAM_USAGE: &[u8] = br#"{"model":"fuzz-alias","messages":[{"role":"user","content":"Say hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
const CHAT_STREAM: &[u8] =
    br#"{"model":"fuzz-alias","messages":[{"role":"user","content":"Say hi"}],"stream":true}"#;

/// A request per route, for the JSON answer translators.
static REQUESTS: [(Route, &[u8]); 4] = [
    (
        Route::Chat,
        br#"{"model":"fuzz-alias","messages":[{"role":"user","content":"Say hi"}]}"#,
    ),
    (
        Route::Completions,
        br#"{"model":"fuzz-alias","prompt":"Say hi"}"#,
    ),
    (
        Route::Embeddings,
        br#"{"model":"fuzz-alias","input":"Say hi"}"#,
    ),
    (
        Route::ImagesGenerations,
        br#"{"model":"fuzz-alias","prompt":"A lighthouse"}"#,
    ),
];

/// Credentials as the snapshot builder hands them, tokens already minted.
struct FuzzCredentials;

impl Credentials for FuzzCredentials {
    fn google(
        &self,
        key: &omg_shared::vertex::ServiceAccountKey,
    ) -> Result<Arc<TokenCell>, String> {
        Ok(Arc::new(TokenCell::with_token(
            key.client_email.clone(),
            "fuzz-token",
        )))
    }

    fn entra(&self, client: &omg_shared::azure::EntraClient) -> Result<Arc<TokenCell>, String> {
        Ok(Arc::new(TokenCell::with_token(
            client.client_id.clone(),
            "fuzz-token",
        )))
    }
}

/// One adapter under test.
pub(super) struct Subject {
    pub(super) deployment: Deployment,
    pub(super) adapter: Arc<dyn ProviderAdapter>,
}

/// A deployment of `kind` at `endpoint` with the settings in `extra`.
fn deployment(kind: ProviderKind, endpoint: &str, extra: Value) -> Option<Deployment> {
    let mut base = json!({
        "id": format!("{}#0", kind.as_str()), "provider": kind.as_str(),
        "provider_model": "provider-model-1", "weight": 1, "enabled": true,
        "pricing": {"input": 0, "output": 0}, "api_key": "fuzz-key"
    });
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    let mut deployment: Deployment = serde_json::from_value(base).ok()?;
    deployment.endpoint = Some(Endpoint::parse(endpoint).ok()?);
    Some(deployment)
}

/// The adapters, by stream kind: OpenAI, Azure, Anthropic, Bedrock, Vertex (Gemini API),
/// Hugging Face (TGI chat).
pub(super) fn subjects() -> &'static [Subject] {
    static SUBJECTS: OnceLock<Vec<Subject>> = OnceLock::new();
    SUBJECTS.get_or_init(|| {
        let rows = [
            (ProviderKind::OpenAi, "https://api.openai.com/v1", json!({})),
            (
                ProviderKind::Azure,
                "https://fuzz.openai.azure.com",
                json!({"api_version": "2024-10-21"}),
            ),
            (
                ProviderKind::Anthropic,
                "https://api.anthropic.com",
                json!({}),
            ),
            (
                ProviderKind::Bedrock,
                "https://bedrock-runtime.us-east-1.amazonaws.com",
                json!({"region": "us-east-1", "provider_model": "anthropic.claude-test-v1:0"}),
            ),
            (
                ProviderKind::Vertex,
                "https://generativelanguage.googleapis.com",
                json!({"metadata": {"vertex_api": "gemini"}}),
            ),
            (
                ProviderKind::HuggingFace,
                "http://tgi.internal:8080",
                json!({"metadata": {"hf_embeddings": "tei"}}),
            ),
        ];
        let count = rows.len();
        let subjects: Vec<Subject> = rows
            .into_iter()
            .filter_map(|(kind, endpoint, extra)| {
                let deployment = deployment(kind, endpoint, extra)?;
                let credential =
                    crate::credentials::for_deployment(&deployment, &FuzzCredentials).ok()?;
                let adapter = adapter_for(&deployment, credential).ok()??;
                Some(Subject {
                    deployment,
                    adapter,
                })
            })
            .collect();
        assert_eq!(subjects.len(), count, "an adapter did not build");
        subjects
    })
}

/// Runs `f` with the call of the client request `raw` on `route` (`None`: the probe refuses
/// `raw`).
pub(super) fn with_call<R>(
    route: &Route,
    raw: &[u8],
    ingress: Ingress<'_>,
    f: impl FnOnce(&Call<'_>) -> R,
) -> Option<R> {
    let body = RequestBody::parse(raw, route).ok()?;
    let call = Call {
        route,
        body: &body,
        raw,
        alias: ALIAS,
        request_id: "req-fuzz",
        created: 1_750_000_000,
        ingress,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
    };
    Some(f(&call))
}

/// Everything observable after feeding a stream translator.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    result: Result<(), StreamFault>,
    usage: Option<Usage>,
    estimated: u64,
    done: bool,
    failed: bool,
    saw_content: bool,
}

/// Feeds `pieces` in order, stopping at the first error, then the clean close when none
/// came: what the glue does.
fn drive(translator: &mut dyn StreamTranslator, pieces: &[&[u8]]) -> Outcome {
    let mut out = BytesMut::new();
    let mut result = Ok(());
    for piece in pieces {
        result = translator.push(piece, &mut out);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        translator.finish(&mut out);
    }
    Outcome {
        out: out.to_vec(),
        result,
        usage: translator.reported_usage(),
        estimated: translator.estimated_completion_tokens(),
        done: translator.is_done(),
        failed: translator.upstream_failed(),
        saw_content: translator.saw_content(),
    }
}

/// What the client may see of a translated stream: OpenAI events, each exactly
/// `data: <JSON object>` or `data: [DONE]` and a blank line, nothing after `[DONE]`, which
/// is there exactly when the translator says the stream is done.
fn assert_openai_sse(outcome: &Outcome) {
    let framed = frame_sse(&[outcome.out.as_slice()]);
    assert!(framed.remainder.is_empty(), "an unterminated event");
    let mut saw_done = false;
    for event in &framed.events {
        assert!(!saw_done, "an event after [DONE]: {event:?}");
        let Some(payload) = event
            .strip_prefix(b"data: ")
            .and_then(|e| e.strip_suffix(b"\n\n"))
        else {
            panic!("not a data event: {event:?}");
        };
        assert!(!payload.contains(&b'\n') && !payload.contains(&b'\r'));
        if payload == b"[DONE]" {
            saw_done = true;
            continue;
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(value) => assert!(value.is_object(), "not an object: {event:?}"),
            Err(error) => panic!("not JSON ({error}): {event:?}"),
        }
    }
    assert_eq!(saw_done, outcome.done, "[DONE] written ≠ is_done");
}

/// The events written are events of the input, in order (pass-through).
fn assert_subsequence(out: &[u8], input: &[u8]) {
    let written = frame_sse(&[out]);
    assert!(written.remainder.is_empty(), "an unterminated event");
    let mut source = frame_sse(&[input]).events.into_iter();
    for event in &written.events {
        assert!(
            source.any(|candidate| candidate == *event),
            "an event not in the input, or out of order: {event:?}"
        );
    }
}

/// Which stream a selector picks (its low four bits, modulo the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// A provider adapter's translator (index into [`subjects`]).
    Provider(usize),
    /// Bedrock's translator fed the raw payload (no framing made for it).
    BedrockRaw,
    /// The Anthropic ingress: OpenAI chunks → Anthropic events, or Anthropic's passed on.
    Egress { native: bool },
}

const STREAMS: [Stream; 9] = [
    Stream::Provider(0),
    Stream::Provider(1),
    Stream::Provider(2),
    Stream::Provider(3),
    Stream::Provider(4),
    Stream::Provider(5),
    Stream::BedrockRaw,
    Stream::Egress { native: false },
    Stream::Egress { native: true },
];

/// Index of Bedrock in [`subjects`] (its input is records made into event-stream frames).
const BEDROCK: usize = 3;

/// Stream translators fed cut streams. Selector: bits 0-3 pick the stream (modulo 9:
/// OpenAI, Azure, Anthropic, Bedrock with the payload as records made into valid frames,
/// Vertex, Hugging Face TGI, Bedrock raw, Anthropic egress, Anthropic egress native); bit 4
/// whether the client asked for usage. The outcome must not depend on the cuts; translated
/// streams must be OpenAI SSE; the OpenAI pass-through forwards input events only.
pub fn stream(data: &[u8]) {
    let input = Input::read(data);
    let stream = STREAMS[usize::from(input.selector & 0x0f) % STREAMS.len()];
    let raw = if input.selector & 0x10 != 0 {
        CHAT_STREAM_USAGE
    } else {
        CHAT_STREAM
    };
    match stream {
        Stream::Egress { native } => egress(&input, native),
        Stream::BedrockRaw => provider_stream(BEDROCK, raw, input.payload, &input.cuts),
        Stream::Provider(BEDROCK) => {
            let (bytes, _) = eventstream_records(input.payload);
            provider_stream(BEDROCK, raw, &bytes, &input.cuts);
        }
        Stream::Provider(index) => provider_stream(index, raw, input.payload, &input.cuts),
    }
}

fn provider_stream(index: usize, raw: &[u8], bytes: &[u8], cuts: &[usize]) {
    let Some(subject) = subjects().get(index) else {
        return;
    };
    let feed = |pieces: &[&[u8]]| {
        with_call(&Route::Chat, raw, Ingress::OpenAi, |call| {
            drive(subject.adapter.stream(call).as_mut(), pieces)
        })
    };
    let Some(whole) = feed(&[bytes]) else {
        return;
    };
    assert_eq!(
        feed(&super::cut(bytes, cuts)),
        Some(whole.clone()),
        "depends on the cuts"
    );
    assert_eq!(
        feed(&bytewise(bytes)),
        Some(whole.clone()),
        "differs byte by byte"
    );
    match subject.adapter.kind() {
        ProviderKind::Anthropic | ProviderKind::Bedrock | ProviderKind::Vertex => {
            assert_openai_sse(&whole)
        }
        ProviderKind::OpenAi => assert_subsequence(&whole.out, bytes),
        _ => {}
    }
}

fn convert(native: bool, pieces: &[&[u8]]) -> Vec<u8> {
    let mut converter = if native {
        EventConverter::native(ALIAS, "req-fuzz")
    } else {
        EventConverter::translating(ALIAS, "req-fuzz")
    };
    let mut out = BytesMut::new();
    for piece in pieces {
        converter.push(piece, &mut out);
    }
    out.to_vec()
}

/// The Anthropic ingress's stream converter: cut-independent; translating, it writes only
/// `event: <name>` / `data: <JSON object>` events.
fn egress(input: &Input<'_>, native: bool) {
    let whole = convert(native, &[input.payload]);
    assert_eq!(
        convert(native, &input.pieces()),
        whole,
        "depends on the cuts"
    );
    assert_eq!(
        convert(native, &bytewise(input.payload)),
        whole,
        "differs byte by byte"
    );
    if native {
        return;
    }
    let framed = frame_sse(&[whole.as_slice()]);
    assert!(framed.remainder.is_empty(), "an unterminated event");
    for event in &framed.events {
        assert_anthropic_event(event);
    }
}

fn assert_anthropic_event(event: &Bytes) {
    let text = std::str::from_utf8(event).unwrap_or_default();
    let Some((name, data)) = text
        .strip_prefix("event: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .and_then(|rest| rest.split_once("\ndata: "))
    else {
        panic!("not an Anthropic event: {event:?}");
    };
    assert!(
        !name.is_empty() && !name.contains('\n'),
        "event name {name:?}"
    );
    match serde_json::from_str::<Value>(data) {
        Ok(value) => assert!(value.is_object(), "not an object: {event:?}"),
        Err(error) => panic!("not JSON ({error}): {event:?}"),
    }
}

/// JSON answers and error bodies. Selector: bits 0-3 pick the adapter (modulo 6, as in
/// [`stream`]), bits 4-5 the route (chat, completions, embeddings, images). An answer
/// translated by Anthropic's, Bedrock's or Vertex's adapter is JSON; an error answer maps to a 4xx or 502 with a serializable body; the
/// Anthropic ingress's converters of OpenAI answers and errors write JSON.
pub fn response(data: &[u8]) {
    let input = Input::read(data);
    let body = input.payload;
    let subjects = subjects();
    let subject = &subjects[usize::from(input.selector & 0x0f) % subjects.len()];
    let (route, raw) = &REQUESTS[usize::from(input.selector >> 4) % REQUESTS.len()];
    with_call(route, raw, Ingress::OpenAi, |call| {
        if subject.adapter.request(call, &subject.deployment).is_err() {
            return;
        }
        let translating = matches!(
            subject.adapter.kind(),
            ProviderKind::Anthropic | ProviderKind::Bedrock | ProviderKind::Vertex
        );
        // Pass-through answers are the provider's bytes: its usage is read without
        // validating the strings it skips, so they need not be valid JSON.
        match subject.adapter.response(call, body) {
            Ok(answer) if translating => {
                let parsed = serde_json::from_slice::<Value>(&answer.body);
                assert!(parsed.is_ok(), "the answer is not JSON: {:?}", answer.body);
            }
            _ => {}
        }
    });
    let status = 400 + u16::from(input.selector % 100);
    let error = subject.adapter.client_error(status, body);
    assert!(
        (400..600).contains(&error.status),
        "status {}",
        error.status
    );
    assert!(serde_json::to_vec(&error.body).is_ok());
    if let Some(converted) = from_openai(body, ALIAS, "req-fuzz") {
        assert!(serde_json::from_slice::<Value>(&converted).is_ok());
    }
    let converted = from_openai_error(status, body);
    assert!(serde_json::from_slice::<Value>(&converted).is_ok());
}
