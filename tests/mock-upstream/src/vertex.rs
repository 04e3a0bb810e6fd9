//! Google: the OAuth token endpoint of service accounts, Vertex AI and the Gemini API.
//!
//! - `POST /token`: the JWT-bearer grant. The form's `assertion` must be an RS256 JWT signed
//!   by the test service account (`tests/fixtures/vertex/`), with its `iss`, `aud` (this
//!   endpoint's URL), the `cloud-platform` `scope` and an unexpired `exp`. Answers
//!   `{access_token, expires_in, token_type}` with a fresh token living
//!   [`MockUpstream::set_token_lifetime`](crate::MockUpstream::set_token_lifetime) (default
//!   3599 s); else 400 `invalid_grant`.
//! - Vertex AI: `POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:{method}`
//!   (`generateContent`, `streamGenerateContent?alt=sse`, `predict`) and the probe
//!   `GET /v1beta1/publishers/google/models/{m}`, each with `Authorization: Bearer <a token
//!   minted here and not expired>` (else 401 `UNAUTHENTICATED`).
//! - Gemini API: `POST /v1beta/models/{m}:{method}` (`generateContent`,
//!   `streamGenerateContent?alt=sse`, `batchEmbedContents`, `predict` for Imagen) and
//!   `GET /v1beta/models/{m}`, with
//!   `x-goog-api-key: <the configured key>` (else 400 `INVALID_ARGUMENT` "API key not
//!   valid", as Google answers).
//!
//! Bodies are checked like Gemini ([`validate`]); `predict` (embeddings, Imagen) is
//! [`predict`]'s. The model name carries directives: the
//! common ones (`fail-*`, `chunks-*`, `chunk-delay-*`, `cut-after-*`, `malformed`,
//! `stream-error`, …) plus `safety-block` (the answer stops with `finishReason: SAFETY`),
//! `prompt-block` (no candidates, `promptFeedback.blockReason: SAFETY`) and `thinking`
//! (function calls carry a `thoughtSignature` that must come back on the next turn; usage
//! has `thoughtsTokenCount: 2`); `content-filter` filters every Imagen image. Errors are
//! `{"error":{"code","message","status"}}`.

mod predict;
pub(crate) mod token;
mod validate;

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::behaviour::{Behaviour, Fail};
use crate::handler::{self, Reply};
use crate::stream::Step;
use crate::Shared;
pub use token::{test_service_account, TEST_CLIENT_EMAIL, TEST_SERVICE_ACCOUNT};
pub(crate) use token::{TokenState, TOKEN_PATH};

/// Whether a path is Google's.
pub(crate) fn is_google_path(path: &str) -> bool {
    path == TOKEN_PATH
        || path.starts_with("/v1/projects/")
        || path.starts_with("/v1beta/models/")
        || path.starts_with("/v1beta1/publishers/google/models/")
}

fn error(status: StatusCode, message: &str) -> Reply {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    Reply::json(
        status,
        google_error(status.as_u16(), message, name).to_string(),
    )
}

fn google_error(code: u16, message: &str, status: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

/// Which API and operation a path names.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    gemini: bool,
    model: String,
    /// `None`: the probe (`GET` of the model).
    method: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let (gemini, rest) = if let Some(rest) = path.strip_prefix("/v1beta/models/") {
        (true, rest)
    } else if let Some(rest) = path.strip_prefix("/v1beta1/publishers/google/models/") {
        return (!rest.is_empty() && !rest.contains([':', '/'])).then(|| Route {
            gemini: false,
            model: rest.to_owned(),
            method: None,
        });
    } else {
        let rest = path.strip_prefix("/v1/projects/")?;
        let mut segments = rest.splitn(6, '/');
        let (_project, locations, _location, publishers, google, models) = (
            segments.next()?,
            segments.next()?,
            segments.next()?,
            segments.next()?,
            segments.next()?,
            segments.next()?,
        );
        if locations != "locations" || publishers != "publishers" || google != "google" {
            return None;
        }
        (false, models.strip_prefix("models/")?)
    };
    let (model, method) = match rest.split_once(':') {
        Some((model, method)) => (model, Some(method.to_owned())),
        None => (rest, None),
    };
    (!model.is_empty() && !model.contains('/')).then(|| Route {
        gemini,
        model: model.to_owned(),
        method,
    })
}

/// Answers one request to a Google path.
pub(crate) async fn respond(shared: &Shared, parts: &Parts, body: &[u8], seq: u64) -> Reply {
    let path = parts.uri.path();
    if path == TOKEN_PATH {
        return token::token(shared, parts, body);
    }
    let Some(route) = route(path) else {
        return error(
            StatusCode::NOT_FOUND,
            "The requested URL was not found on this server.",
        );
    };
    if route.gemini {
        if let Some(key) = &shared.config.api_key {
            if handler::header(parts, "x-goog-api-key") != Some(key.as_str()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "API key not valid. Please pass a valid API key.",
                );
            }
        }
    } else {
        let bearer =
            handler::header(parts, "authorization").and_then(|v| v.strip_prefix("Bearer "));
        if !bearer.is_some_and(|token| shared.google_tokens.valid(token)) {
            return error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            );
        }
    }
    let mut behaviour = Behaviour::default();
    behaviour.apply(&shared.default_behaviour());
    behaviour.apply(&route.model);
    behaviour.apply(handler::header_behaviour(parts).unwrap_or_default());
    let directives: Vec<&str> = route.model.split('+').collect();
    let thinking = directives.contains(&"thinking");

    let Some(method) = route.method.as_deref() else {
        if parts.method != Method::GET {
            return error(StatusCode::NOT_FOUND, "Method not found.");
        }
        return Reply::ok(
            json!({"name": format!("models/{}", route.model), "version": "001"}).to_string(),
        );
    };
    if parts.method != Method::POST {
        return error(StatusCode::NOT_FOUND, "Method not found.");
    }
    let stream = match method {
        "generateContent" | "predict" | "batchEmbedContents" => false,
        "streamGenerateContent" => {
            if crate::azure::query_param(parts.uri.query(), "alt") != Some("sse") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "The mock serves streams with ?alt=sse only.",
                );
            }
            true
        }
        _ => return error(StatusCode::NOT_FOUND, "Method not found."),
    };
    if method == "batchEmbedContents" && !route.gemini {
        return error(StatusCode::NOT_FOUND, "Method not found.");
    }
    let Some(request) = handler::json_object(body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid JSON payload received.");
    };
    let played = handler::play_common(&behaviour, stream, |fail| failure(fail, &behaviour)).await;
    if let Some(reply) = played {
        return reply;
    }
    match method {
        "predict" => predict::respond(&request, route.gemini, behaviour.content_filter),
        "batchEmbedContents" => match validate::batch_embed(&request, &route.model) {
            Ok(texts) => Reply::ok(predict::batch_embeddings(&texts, &request)),
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        },
        _ => {
            let checked = match validate::generate_content(&request, thinking) {
                Ok(checked) => checked,
                Err(message) => return error(StatusCode::BAD_REQUEST, &message),
            };
            let n = behaviour.chunks.unwrap_or(shared.config.default_chunks);
            let plan = Plan::new(&checked, n, seq, &directives);
            if stream {
                Reply::Stream(crate::stream::start_steps(plan.stream(&behaviour)))
            } else if behaviour.malformed {
                Reply::ok("{not json".to_owned())
            } else {
                crate::complete::json_answer(plan.whole().to_string(), n, &behaviour)
            }
        }
    }
}

/// A scripted failure as Google answers it.
fn failure(fail: Fail, behaviour: &Behaviour) -> Reply {
    match fail {
        Fail::Internal => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error encountered.",
        ),
        Fail::BadGateway => error(StatusCode::BAD_GATEWAY, "Bad gateway (mock fail-502)."),
        Fail::Unavailable | Fail::Overloaded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The model is overloaded. Please try again later.",
        ),
        Fail::BadRequest => error(StatusCode::BAD_REQUEST, "mock bad request (fail-400)"),
        Fail::RateLimited => Reply::Json {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: google_error(
                429,
                "Resource exhausted. Please try again later.",
                "RESOURCE_EXHAUSTED",
            )
            .to_string(),
            retry_after: Some(behaviour.retry_after.unwrap_or(1)),
        },
    }
}

// --- answers ---------------------------------------------------------------------------

/// The answer, decided up front.
struct Plan {
    response_id: String,
    text: Vec<String>,
    tool: Option<String>,
    candidates: u64,
    finish: &'static str,
    prompt_block: bool,
    stream_error: bool,
    thinking: bool,
    prompt_tokens: u64,
    output_tokens: u64,
}

/// Output tokens of one function call.
const TOOL_TOKENS: u64 = 3;

impl Plan {
    fn new(checked: &validate::Checked, n: usize, seq: u64, directives: &[&str]) -> Plan {
        let forced = checked
            .tool_call
            .as_ref()
            .is_some_and(|(_, forced)| *forced);
        let mut text = if forced {
            Vec::new()
        } else {
            crate::openai::chunks(n)
        };
        let mut tool = checked.tool_call.as_ref().map(|(name, _)| name.clone());
        let mut finish = "STOP";
        if directives.contains(&"safety-block") {
            text.truncate(n / 2);
            tool = None;
            finish = "SAFETY";
        }
        let mut output_tokens = text.len() as u64 + if tool.is_some() { TOOL_TOKENS } else { 0 };
        if let Some(max) = checked.max_output_tokens.filter(|max| *max < output_tokens) {
            text.truncate(usize::try_from(max).unwrap_or(usize::MAX));
            tool = None;
            finish = "MAX_TOKENS";
            output_tokens = max;
        }
        Plan {
            response_id: format!("mock-response-{seq}"),
            text,
            tool,
            candidates: checked.candidates,
            finish,
            prompt_block: directives.contains(&"prompt-block"),
            stream_error: directives.contains(&"stream-error"),
            thinking: directives.contains(&"thinking"),
            prompt_tokens: checked.prompt_tokens,
            output_tokens,
        }
    }

    fn usage(&self, output_tokens: u64) -> Value {
        let candidates = output_tokens * self.candidates;
        let thoughts = if self.thinking { 2 } else { 0 };
        let mut usage = json!({
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": candidates,
            "totalTokenCount": self.prompt_tokens + candidates + thoughts,
        });
        if self.thinking {
            usage["thoughtsTokenCount"] = json!(thoughts);
        }
        usage
    }

    fn blocked(&self) -> Value {
        json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
            "usageMetadata": {"promptTokenCount": self.prompt_tokens, "totalTokenCount": self.prompt_tokens},
            "modelVersion": "gemini-mock-001",
            "responseId": self.response_id,
        })
    }

    fn function_call_part(&self, name: &str) -> Value {
        let mut part = json!({"functionCall": {"name": name, "args": {"location": "Paris"}}});
        if self.thinking {
            part["thoughtSignature"] = json!(validate::signature_for(name));
        }
        part
    }

    fn response(&self, candidates: Vec<Value>, usage: Value) -> Value {
        json!({"candidates": candidates, "usageMetadata": usage, "modelVersion": "gemini-mock-001", "responseId": self.response_id})
    }

    /// The non-streamed answer.
    fn whole(&self) -> Value {
        if self.prompt_block {
            return self.blocked();
        }
        let candidates = (0..self.candidates)
            .map(|index| {
                let mut parts = Vec::new();
                if !self.text.is_empty() {
                    parts.push(json!({"text": self.text.concat()}));
                }
                if let Some(name) = &self.tool {
                    parts.push(self.function_call_part(name));
                }
                json!({"content": {"role": "model", "parts": parts}, "finishReason": self.finish, "index": index})
            })
            .collect();
        self.response(candidates, self.usage(self.output_tokens))
    }

    /// The stream: one event per text piece (every candidate), the function call, then the
    /// finish with the final usage. Usage rides on every event (growing; the last wins).
    fn stream(&self, behaviour: &Behaviour) -> Vec<Step> {
        let event = |value: Value| Step::Event(Bytes::from(format!("data: {value}\r\n\r\n")));
        let mut steps = Vec::new();
        if self.prompt_block {
            steps.push(event(self.blocked()));
            return steps;
        }
        let part_event = |part: Value, tokens: u64| {
            let candidates = (0..self.candidates)
                .map(|index| json!({"content": {"role": "model", "parts": [part.clone()]}, "index": index}))
                .collect();
            event(self.response(candidates, self.usage(tokens)))
        };
        for (i, piece) in self.text.iter().enumerate() {
            if behaviour.cut_after == Some(i) {
                steps.push(Step::Cut);
                return steps;
            }
            if !behaviour.chunk_delay.is_zero() {
                steps.push(Step::Delay(behaviour.chunk_delay));
            }
            steps.push(part_event(json!({"text": piece}), i as u64 + 1));
            if self.stream_error && i == 0 {
                let error = google_error(500, "Internal error encountered.", "INTERNAL");
                steps.push(event(error));
                return steps;
            }
            if behaviour.malformed && i == 0 {
                steps.push(Step::Event(Bytes::from_static(b"data: {not json\r\n\r\n")));
            }
        }
        if behaviour.cut_after.is_some() {
            steps.push(Step::Cut);
            return steps;
        }
        let mut last_parts = Vec::new();
        if let Some(name) = &self.tool {
            last_parts.push(self.function_call_part(name));
        }
        let candidates = (0..self.candidates)
            .map(|index| {
                let mut candidate = json!({"content": {"role": "model", "parts": last_parts.clone()}, "finishReason": self.finish, "index": index});
                if last_parts.is_empty() {
                    candidate["content"]["parts"] = json!([{"text": ""}]);
                }
                candidate
            })
            .collect();
        steps.push(event(
            self.response(candidates, self.usage(self.output_tokens)),
        ));
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/v1/projects/p/locations/us-central1/publishers/google/models/gemini-test:generateContent"),
            Some(Route { gemini: false, model: "gemini-test".to_owned(), method: Some("generateContent".to_owned()) })
        );
        assert_eq!(
            route("/v1beta/models/gemini-test+thinking:streamGenerateContent"),
            Some(Route {
                gemini: true,
                model: "gemini-test+thinking".to_owned(),
                method: Some("streamGenerateContent".to_owned())
            })
        );
        assert_eq!(
            route("/v1beta1/publishers/google/models/gemini-test"),
            Some(Route {
                gemini: false,
                model: "gemini-test".to_owned(),
                method: None
            })
        );
        assert_eq!(
            route("/v1/projects/p/locations/l/models/m:generateContent"),
            None
        );
        assert_eq!(route("/v1beta/models/:generateContent"), None);
    }
}
