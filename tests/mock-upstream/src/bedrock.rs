//! AWS Bedrock Runtime: `POST /model/{modelId}/converse`, `/converse-stream` (an AWS event
//! stream), `/invoke` (Amazon Titan text embeddings' body, or an image model's: [`image`]),
//! and `GET /async-invoke` (the gateway's health probe).
//!
//! Checked like Bedrock, in order: the credential — `Authorization: Bearer <key>` (a Bedrock
//! API key) or a SigV4 signature ([`sigv4`]) by access key [`sigv4::ACCESS_KEY_ID`] whose
//! secret is the mock's key, recomputed from the request, with `x-amz-date` within five
//! minutes (else 403 `InvalidSignatureException`, `UnrecognizedClientException`, …); the
//! path (the model id percent-decoded once); the body ([`validate`] for Converse). Errors are
//! `{"message"}` with an `x-amzn-ErrorType` header. The model id, like a `model`, may carry
//! directives. Stream frames carry real CRCs; each delta frame is sent in two pieces, split
//! mid-frame. Bedrock-only directives: `stream-error` (a `throttlingException` frame after
//! the first delta, then the end) and `corrupt-crc` (the second delta frame's CRC is wrong);
//! `content-filter` filters every image of an image request.

mod image;
pub mod sigv4;
mod stream;
mod validate;

use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::anthropic::cut_at_stop_sequence;
use crate::behaviour::{Behaviour, Fail};
use crate::complete;
use crate::handler::{self, Reply};
use crate::openai::{self, quote};
use crate::Shared;

/// Every model route starts with this.
pub(crate) const MODEL_PREFIX: &str = "/model/";
/// `ListAsyncInvokes`, the health probe.
pub(crate) const ASYNC_INVOKE_PATH: &str = "/async-invoke";

/// The tool call's input, as streamed (pieces split mid-token; the first empty).
const TOOL_INPUT_PIECES: [&str; 4] = ["", r#"{"loc"#, r#"ation": "Pa"#, r#"ris"}"#];
const TOOL_INPUT: &str = r#"{"location":"Paris"}"#;
const TOOL_TOKENS: u64 = 3;
/// Titan's default embedding size.
const DEFAULT_DIMENSIONS: u64 = 1024;

/// A Bedrock error: status, `x-amzn-ErrorType`, `{"message"}`.
pub(crate) fn error(status: StatusCode, error_type: &'static str, message: &str) -> Reply {
    Reply::Aws {
        status,
        error_type,
        body: format!(r#"{{"message":{}}}"#, quote(message)),
    }
}

fn validation(message: &str) -> Reply {
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// A scripted failure as Bedrock answers it.
fn failure(fail: Fail) -> Reply {
    match fail {
        Fail::Internal | Fail::BadGateway => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "The server encountered an internal error (mock).",
        ),
        Fail::Unavailable | Fail::Overloaded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "The service is temporarily unavailable (mock).",
        ),
        Fail::RateLimited => error(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        Fail::BadRequest => validation("mock bad request (fail-400)"),
    }
}

/// The credential: Bearer API key or SigV4 (nothing is checked without a configured key).
fn check_auth(parts: &Parts, body: &[u8], key: &str) -> Option<Reply> {
    let authorization = handler::header(parts, "authorization").unwrap_or_default();
    if let Some(given) = authorization.strip_prefix("Bearer ") {
        return (given != key).then(|| {
            error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "Authentication failed: the Bedrock API key is invalid.",
            )
        });
    }
    match sigv4::verify(parts, body, key) {
        Ok(_) => None,
        Err(refusal) => Some(error(
            StatusCode::FORBIDDEN,
            refusal.error_type,
            &refusal.message,
        )),
    }
}

/// The model id and operation of `/model/{id}/{operation}`.
fn route(path: &str) -> Option<(String, &str)> {
    let rest = path.strip_prefix(MODEL_PREFIX)?;
    let (id, operation) = rest.split_once('/')?;
    let id = crate::azure::percent_decode(id)?;
    (!id.is_empty()).then_some((id, operation))
}

/// Answers the Bedrock routes.
pub(crate) async fn respond(shared: &Shared, parts: &Parts, body: &[u8], seq: u64) -> Reply {
    if let Some(key) = &shared.config.api_key {
        if let Some(reply) = check_auth(parts, body, key) {
            return reply;
        }
    }
    if parts.uri.path() == ASYNC_INVOKE_PATH && parts.method == Method::GET {
        return Reply::ok(r#"{"asyncInvokeSummaries":[]}"#.to_owned());
    }
    let Some((model, operation)) = route(parts.uri.path()) else {
        return error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        );
    };
    if parts.method != Method::POST {
        return error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        );
    }
    let Some(request) = handler::json_object(body) else {
        return validation("Malformed input request, please reformat your input and try again.");
    };
    let mut behaviour = Behaviour::default();
    behaviour.apply(&shared.default_behaviour());
    behaviour.apply(&model);
    behaviour.apply(handler::header_behaviour(parts).unwrap_or_default());
    match operation {
        "converse" | "converse-stream" => {
            let checked = match validate::check(&request) {
                Ok(checked) => checked,
                Err(message) => return validation(&message),
            };
            let streamed = operation == "converse-stream";
            if let Some(reply) = handler::play_common(&behaviour, streamed, failure).await {
                return reply;
            }
            let n = behaviour.chunks.unwrap_or(shared.config.default_chunks);
            let plan = Plan::new(&checked, n, seq);
            if streamed {
                return Reply::EventStream(crate::stream::start_steps(stream::plan(
                    &plan, &behaviour,
                )));
            }
            let body = if behaviour.malformed {
                "{not json".to_owned()
            } else {
                plan.answer()
            };
            complete::json_answer(body, n, &behaviour)
        }
        "invoke" => {
            if let Some(reply) = handler::play_common(&behaviour, false, failure).await {
                return reply;
            }
            if image::is_image_request(&request) {
                return image::generate(&request, &model, behaviour.content_filter);
            }
            titan(&request)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        ),
    }
}

/// Titan text embeddings: `{"inputText", "dimensions"?, "normalize"?, "embeddingTypes"?}`.
fn titan(request: &serde_json::Map<String, Value>) -> Reply {
    if let Some(key) = request
        .keys()
        .find(|k| !["inputText", "dimensions", "normalize", "embeddingTypes"].contains(&k.as_str()))
    {
        return validation(&format!("Malformed input request: extraneous key [{key}] is not permitted, please reformat your input and try again."));
    }
    let text = match request.get("inputText") {
        Some(Value::String(text)) if !text.is_empty() => text,
        _ => return validation("Malformed input request: #: required key [inputText] not found, please reformat your input and try again."),
    };
    let dimensions = match request.get("dimensions") {
        None => DEFAULT_DIMENSIONS,
        Some(value) => match value.as_u64() {
            Some(n @ (256 | 512 | 1024)) => n,
            _ => return validation("Malformed input request: #/dimensions: 256, 512 or 1024 expected, please reformat your input and try again."),
        },
    };
    if !matches!(request.get("normalize"), None | Some(Value::Bool(_))) {
        return validation("Malformed input request: #/normalize: expected type: Boolean, please reformat your input and try again.");
    }
    let body = vector(text, dimensions);
    Reply::ok(format!(
        r#"{{"embedding":{body},"embeddingsByType":{{"float":{body}}},"inputTextTokenCount":{}}}"#,
        openai::words(text).max(1)
    ))
}

/// A deterministic unit vector of `dimensions` floats for `text`, as JSON.
fn vector(text: &str, dimensions: u64) -> String {
    let seed = text.bytes().fold(17u64, |acc, b| {
        acc.wrapping_mul(131).wrapping_add(u64::from(b))
    });
    let raw: Vec<f64> = (0..dimensions)
        .map(|j| {
            let x = seed.wrapping_add(j.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 40;
            (x % 2000) as f64 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    let values: Vec<String> = raw.iter().map(|v| format!("{:.6}", v / norm)).collect();
    format!("[{}]", values.join(","))
}

/// The answer, decided up front.
#[derive(Debug)]
pub(super) struct Plan {
    text: Vec<String>,
    /// The tool call's id and name.
    tool: Option<(String, String)>,
    stop_reason: &'static str,
    input_tokens: u64,
    output_tokens: u64,
}

impl Plan {
    fn new(checked: &validate::Checked<'_>, n: usize, seq: u64) -> Plan {
        let forced = checked.tool_call.is_some_and(|(_, forced)| forced);
        let mut text = if forced {
            Vec::new()
        } else {
            openai::chunks(n)
        };
        let mut tool = checked
            .tool_call
            .map(|(name, _)| (format!("tooluse_mock_{seq}"), name.to_owned()));
        let mut stop_reason = if tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        };
        if cut_at_stop_sequence(&mut text, &checked.stop_sequences).is_some() {
            tool = None;
            stop_reason = "stop_sequence";
        }
        let mut output_tokens = text.len() as u64 + if tool.is_some() { TOOL_TOKENS } else { 0 };
        if let Some(max) = checked.max_tokens.filter(|max| *max < output_tokens) {
            text.truncate(usize::try_from(max).unwrap_or(usize::MAX));
            tool = None;
            stop_reason = "max_tokens";
            output_tokens = max;
        }
        Plan {
            text,
            tool,
            stop_reason,
            input_tokens: checked.input_tokens,
            output_tokens,
        }
    }

    fn usage(&self) -> String {
        format!(
            r#"{{"inputTokens":{},"outputTokens":{},"totalTokens":{}}}"#,
            self.input_tokens,
            self.output_tokens,
            self.input_tokens + self.output_tokens
        )
    }

    /// The non-streamed Converse answer.
    fn answer(&self) -> String {
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(format!(r#"{{"text":{}}}"#, quote(&self.text.concat())));
        }
        if let Some((id, name)) = &self.tool {
            content.push(format!(
                r#"{{"toolUse":{{"toolUseId":{},"name":{},"input":{TOOL_INPUT}}}}}"#,
                quote(id),
                quote(name)
            ));
        }
        format!(
            r#"{{"output":{{"message":{{"role":"assistant","content":[{}]}}}},"stopReason":{},"usage":{},"metrics":{{"latencyMs":42}}}}"#,
            content.join(","),
            quote(self.stop_reason),
            self.usage()
        )
    }
}
