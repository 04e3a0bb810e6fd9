//! Anthropic's Messages API: `POST /v1/messages`, and its token count,
//! `POST /v1/messages/count_tokens` ([`count`]).
//!
//! Checked like Anthropic: the `x-api-key` header (never `Authorization: Bearer`), an
//! `anthropic-version` date header, then the whole body ([`validate`]). Answers are
//! Anthropic's `message` objects or event streams ([`stream`]) with the deterministic text of
//! the OpenAI routes, a `tool_use` block when asked for one, `stop_sequences` and `max_tokens`
//! honoured. Errors, scripted failures included, are `{"type":"error","error":{…}}`.

pub(crate) mod cache;
mod count;
mod stream;
mod validate;

use hyper::http::request::Parts;
use hyper::{Method, StatusCode};

use crate::behaviour::{Behaviour, Fail};
use crate::complete;
use crate::handler::{self, Reply};
use crate::openai::{self, quote};
use crate::Shared;

/// The Messages API's path.
pub(crate) const MESSAGES_PATH: &str = "/v1/messages";

/// The input the mock's tool calls carry, as streamed (`input_json_delta` pieces, split at
/// awkward places; the first is empty, as Anthropic sends it).
const TOOL_INPUT_PIECES: [&str; 4] = ["", r#"{"loc"#, r#"ation": "Pa"#, r#"ris"}"#];

/// The input of a whole (non-streamed) tool call.
const TOOL_INPUT: &str = r#"{"location":"Paris"}"#;

/// Output tokens of one tool call.
const TOOL_TOKENS: u64 = 3;

/// `{"type":"error","error":{"type":…,"message":…}}`.
fn error_body(kind: &str, message: &str) -> String {
    format!(
        r#"{{"type":"error","error":{{"type":{},"message":{}}}}}"#,
        quote(kind),
        quote(message)
    )
}

fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    Reply::json(status, error_body(kind, message))
}

fn invalid(message: &str) -> Reply {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// 401 unless `x-api-key` carries the key.
fn check_auth(parts: &Parts, key: &str) -> Option<Reply> {
    let message = match handler::header(parts, "x-api-key") {
        Some(given) if given == key => return None,
        Some(_) => "invalid x-api-key",
        None => "x-api-key header is required",
    };
    Some(error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        message,
    ))
}

/// 400 unless `anthropic-version` is a `YYYY-MM-DD` date.
fn check_version(parts: &Parts) -> Option<Reply> {
    match handler::header(parts, "anthropic-version") {
        Some(version) if crate::azure::is_date(version) => None,
        Some(version) => Some(invalid(&format!(
            "anthropic-version: invalid version {}; expected a date such as 2023-06-01",
            quote(version)
        ))),
        None => Some(invalid("anthropic-version: header is required")),
    }
}

/// A scripted failure as Anthropic answers it.
fn failure(fail: Fail, behaviour: &Behaviour) -> Reply {
    match fail {
        Fail::Internal => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error (mock fail-500)",
        ),
        Fail::BadGateway => error(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "Bad gateway (mock fail-502)",
        ),
        Fail::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "Service unavailable (mock fail-503)",
        ),
        Fail::Overloaded => error(handler::status_529(), "overloaded_error", "Overloaded"),
        Fail::BadRequest => invalid("mock bad request (fail-400)"),
        Fail::RateLimited => {
            let seconds = behaviour.retry_after.unwrap_or(1);
            Reply::Json {
                status: StatusCode::TOO_MANY_REQUESTS,
                body: error_body(
                    "rate_limit_error",
                    &format!(
                        "This request would exceed the rate limit for your organization (mock). Please retry \
                         after {seconds}s."
                    ),
                ),
                retry_after: Some(seconds),
            }
        }
    }
}

/// Answers `/v1/messages` and `/v1/messages/count_tokens`.
pub(crate) async fn respond(shared: &Shared, parts: &Parts, body: &[u8], seq: u64) -> Reply {
    if let Some(key) = &shared.config.api_key {
        if let Some(reply) = check_auth(parts, key) {
            return reply;
        }
    }
    let path = parts.uri.path();
    let counting = path == count::COUNT_TOKENS_PATH;
    if parts.method != Method::POST || !(path == MESSAGES_PATH || counting) {
        // `/v1/messages/batches`, … are not served.
        return error(StatusCode::NOT_FOUND, "not_found_error", "Not Found");
    }
    if let Some(reply) = check_version(parts) {
        return reply;
    }
    let Some(request) = handler::json_object(body) else {
        return invalid("The request body is not valid JSON (a JSON object is expected).");
    };
    if counting {
        return count::respond(shared, parts, &request).await;
    }
    let checked = match validate::check(&request) {
        Ok(checked) => checked,
        Err(message) => return invalid(&message),
    };
    let mut behaviour = Behaviour::default();
    behaviour.apply(&shared.default_behaviour());
    behaviour.apply(checked.model);
    behaviour.apply(handler::header_behaviour(parts).unwrap_or_default());
    let played =
        handler::play_common(&behaviour, checked.stream, |fail| failure(fail, &behaviour)).await;
    if let Some(reply) = played {
        return reply;
    }
    let n = behaviour.chunks.unwrap_or(shared.config.default_chunks);
    let cache = shared.prompt_cache.take(checked.cache_prefix.as_ref());
    let plan = Plan::new(&checked, n, seq, cache);
    if checked.stream {
        return Reply::Stream(crate::stream::start_steps(stream::plan(&plan, &behaviour)));
    }
    let body = if behaviour.malformed {
        "{not json".to_owned()
    } else {
        plan.message()
    };
    complete::json_answer(body, n, &behaviour)
}

/// The answer, decided up front: text chunks, maybe a tool call, why it stopped.
#[derive(Debug)]
struct Plan {
    id: String,
    model: String,
    /// The text block's pieces (no text block when empty).
    text: Vec<String>,
    /// The tool call's id and the tool's name.
    tool: Option<(String, String)>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    /// Uncached input tokens.
    input_tokens: u64,
    /// What the prompt cache read and wrote.
    cache: cache::CacheUse,
    output_tokens: u64,
}

impl Plan {
    fn new(checked: &validate::Checked<'_>, n: usize, seq: u64, cache: cache::CacheUse) -> Plan {
        let forced = checked.tool_call.as_ref().is_some_and(|call| call.forced);
        let mut text = if forced {
            Vec::new()
        } else {
            openai::chunks(n)
        };
        let mut tool = checked
            .tool_call
            .as_ref()
            .map(|call| (format!("toolu_mock_{seq}"), call.name.to_owned()));
        let mut stop_reason = if tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        };
        let stop_sequence = cut_at_stop_sequence(&mut text, &checked.stop_sequences);
        if stop_sequence.is_some() {
            tool = None;
            stop_reason = "stop_sequence";
        }
        let tool_tokens = if tool.is_some() { TOOL_TOKENS } else { 0 };
        let mut output_tokens = text.len() as u64 + tool_tokens;
        if checked.max_tokens < output_tokens {
            // Out of tokens: the text up to the limit, the tool call (if any) lost.
            text.truncate(usize::try_from(checked.max_tokens).unwrap_or(usize::MAX));
            tool = None;
            stop_reason = "max_tokens";
            output_tokens = checked.max_tokens;
        }
        Plan {
            id: format!("msg_mock_{seq}"),
            model: checked.model.to_owned(),
            text,
            tool,
            stop_reason,
            stop_sequence,
            input_tokens: checked
                .input_tokens
                .saturating_sub(cache.read + cache.write),
            cache,
            output_tokens,
        }
    }

    fn stop_sequence_json(&self) -> String {
        self.stop_sequence
            .as_deref()
            .map_or_else(|| "null".to_owned(), quote)
    }

    /// The non-streamed answer.
    fn message(&self) -> String {
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(format!(
                r#"{{"type":"text","text":{}}}"#,
                quote(&self.text.concat())
            ));
        }
        if let Some((id, name)) = &self.tool {
            content.push(format!(
                r#"{{"type":"tool_use","id":{},"name":{},"input":{TOOL_INPUT}}}"#,
                quote(id),
                quote(name)
            ));
        }
        format!(
            r#"{{"id":{},"type":"message","role":"assistant","model":{},"content":[{}],"stop_reason":{},"stop_sequence":{},"usage":{}}}"#,
            quote(&self.id),
            quote(&self.model),
            content.join(","),
            quote(self.stop_reason),
            self.stop_sequence_json(),
            self.usage(self.output_tokens)
        )
    }

    fn usage(&self, output_tokens: u64) -> String {
        format!(
            r#"{{"input_tokens":{},"output_tokens":{output_tokens},"cache_creation_input_tokens":{},"cache_read_input_tokens":{}}}"#,
            self.input_tokens, self.cache.write, self.cache.read
        )
    }
}

/// Ends the text before the first stop sequence it contains; that sequence, if any.
pub(crate) fn cut_at_stop_sequence(text: &mut Vec<String>, stops: &[&str]) -> Option<String> {
    let whole = text.concat();
    let (at, stop) = stops
        .iter()
        .filter_map(|stop| whole.find(stop).map(|at| (at, *stop)))
        .min_by_key(|(at, _)| *at)?;
    let mut kept = Vec::new();
    let mut length = 0;
    for piece in text.drain(..) {
        if length + piece.len() <= at {
            length += piece.len();
            kept.push(piece);
        } else {
            let rest = &piece[..at - length];
            if !rest.is_empty() {
                kept.push(rest.to_owned());
            }
            break;
        }
    }
    *text = kept;
    Some(stop.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn pieces(n: usize) -> Vec<String> {
        openai::chunks(n)
    }

    #[test]
    fn stop_sequences_end_the_text_before_them() {
        let mut text = pieces(4);
        assert_eq!(
            cut_at_stop_sequence(&mut text, &["w2", "1 w"]),
            Some("1 w".to_owned())
        );
        assert_eq!(text, ["w0 ", "w"]);
        let mut text = pieces(3);
        assert_eq!(
            cut_at_stop_sequence(&mut text, &["w0"]),
            Some("w0".to_owned())
        );
        assert!(text.is_empty());
        let mut text = pieces(3);
        assert_eq!(cut_at_stop_sequence(&mut text, &["zz"]), None);
        assert_eq!(text, pieces(3));
    }

    fn checked<'a>(
        max_tokens: u64,
        tool_call: Option<validate::ToolCall<'a>>,
    ) -> validate::Checked<'a> {
        validate::Checked {
            model: "claude-test",
            max_tokens,
            stream: false,
            input_tokens: 4,
            stop_sequences: Vec::new(),
            cache_prefix: None,
            tool_call,
        }
    }

    #[test]
    fn plans() {
        let plan = Plan::new(&checked(100, None), 3, 7, cache::CacheUse::default());
        assert_eq!(
            (plan.text.len(), plan.stop_reason, plan.output_tokens),
            (3, "end_turn", 3)
        );
        assert_eq!(plan.id, "msg_mock_7");
        let plan = Plan::new(&checked(2, None), 3, 7, cache::CacheUse::default());
        assert_eq!(
            (
                plan.text.concat().as_str(),
                plan.stop_reason,
                plan.output_tokens
            ),
            ("w0 w1 ", "max_tokens", 2)
        );
        let call = |forced| {
            Some(validate::ToolCall {
                name: "get_weather",
                forced,
            })
        };
        let plan = Plan::new(&checked(100, call(true)), 3, 7, cache::CacheUse::default());
        assert!(plan.text.is_empty());
        assert_eq!(
            plan.tool,
            Some(("toolu_mock_7".to_owned(), "get_weather".to_owned()))
        );
        assert_eq!((plan.stop_reason, plan.output_tokens), ("tool_use", 3));
        let plan = Plan::new(&checked(100, call(false)), 2, 7, cache::CacheUse::default());
        assert_eq!(
            (plan.text.len(), plan.stop_reason, plan.output_tokens),
            (2, "tool_use", 5)
        );
        let plan = Plan::new(&checked(4, call(false)), 2, 7, cache::CacheUse::default());
        assert_eq!(
            (
                plan.text.len(),
                plan.tool.is_none(),
                plan.stop_reason,
                plan.output_tokens
            ),
            (2, true, "max_tokens", 4)
        );
        let body: Value = serde_json::from_str(
            &Plan::new(&checked(100, call(false)), 1, 2, cache::CacheUse::default()).message(),
        )
        .unwrap();
        assert_eq!(
            body["content"][1]["input"],
            serde_json::json!({"location": "Paris"})
        );
        let streamed: String = TOOL_INPUT_PIECES.concat();
        assert_eq!(
            serde_json::from_str::<Value>(&streamed).unwrap(),
            body["content"][1]["input"]
        );
    }
}
