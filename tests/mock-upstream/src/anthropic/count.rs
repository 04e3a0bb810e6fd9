//! `POST /v1/messages/count_tokens`: Anthropic's token count of a Messages request.
//!
//! The body is checked like Anthropic checks it: only the fields the endpoint takes (`model`,
//! `messages`, `system`, `tools`, `tool_choice`, `thinking`; Messages-only fields such as
//! `max_tokens` or `stream` are refused as extra inputs), each checked as on `/v1/messages`
//! (`thinking.budget_tokens` has no `max_tokens` to stay below). The answer is
//! `{"input_tokens": n}`: the words of `system` and the messages' text (what a Messages
//! answer reports as `input_tokens`) plus [`FRAMING_TOKENS`], so a count that went upstream
//! is never the gateway's own estimate. Scripted behaviours apply as on `/v1/messages`.

use hyper::http::request::Parts;
use serde_json::{Map, Value};

use super::validate::{check_prompt, check_thinking, only, Check};
use super::{failure, invalid};
use crate::behaviour::Behaviour;
use crate::handler::{self, Reply};
use crate::Shared;

/// The endpoint's path.
pub(crate) const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";

/// Top-level fields the endpoint accepts.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
];

/// Added to every count: the framing of a request (roles, turn markers) that a real
/// tokenizer counts and a word count does not.
pub(crate) const FRAMING_TOKENS: u64 = 1000;

/// What the answer depends on.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Counted<'a> {
    pub model: &'a str,
    pub input_tokens: u64,
}

/// Checks a token-count body.
pub(super) fn check(request: &Map<String, Value>) -> Check<Counted<'_>> {
    only(request, FIELDS, "")?;
    let prompt = check_prompt(request)?;
    if let Some(thinking) = request.get("thinking") {
        check_thinking(thinking, None)?;
    }
    Ok(Counted {
        model: prompt.model,
        input_tokens: prompt.input_tokens + FRAMING_TOKENS,
    })
}

/// Answers a token count whose headers were checked.
pub(super) async fn respond(shared: &Shared, parts: &Parts, request: &Map<String, Value>) -> Reply {
    let counted = match check(request) {
        Ok(counted) => counted,
        Err(message) => return invalid(&message),
    };
    let mut behaviour = Behaviour::default();
    behaviour.apply(&shared.default_behaviour());
    behaviour.apply(counted.model);
    behaviour.apply(handler::header_behaviour(parts).unwrap_or_default());
    if let Some(reply) =
        handler::play_common(&behaviour, false, |fail| failure(fail, &behaviour)).await
    {
        return reply;
    }
    if behaviour.malformed {
        return Reply::ok("{not json".to_owned());
    }
    Reply::ok(format!(r#"{{"input_tokens":{}}}"#, counted.input_tokens))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn checked(body: Value) -> Check<u64> {
        let Value::Object(request) = body else {
            panic!("not an object")
        };
        check(&request).map(|counted| counted.input_tokens)
    }

    #[test]
    fn counts_words_plus_framing() {
        let body = json!({
            "model": "claude-test",
            "system": "Be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "auto"},
            "thinking": {"type": "enabled", "budget_tokens": 2048}
        });
        assert_eq!(checked(body), Ok(5 + FRAMING_TOKENS));
    }

    #[test]
    fn refuses_what_anthropic_refuses() {
        let user = json!([{"role": "user", "content": "hi"}]);
        for (body, expected) in [
            (json!({"messages": user}), "model: Field required"),
            (json!({"model": "m"}), "messages: Field required"),
            (
                json!({"model": "m", "messages": user, "max_tokens": 5}),
                "max_tokens: Extra inputs are not permitted",
            ),
            (
                json!({"model": "m", "messages": user, "stream": false}),
                "stream: Extra inputs are not permitted",
            ),
            (
                json!({"model": "m", "messages": []}),
                "messages: at least one message is required",
            ),
            (
                json!({"model": "m", "messages": user, "thinking": {"type": "enabled", "budget_tokens": 10}}),
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
            ),
        ] {
            let error = checked(body.clone()).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }
}
