//! Azure OpenAI: `POST /openai/deployments/{deployment}/chat/completions`, `/completions`,
//! `/embeddings` and `/images/generations`, each with `?api-version=`.
//!
//! Checked like Azure: the `api-key` header (or `Authorization: Bearer`, as with Entra ID)
//! must carry the configured key, the `api-version` query parameter must be present and look
//! like `YYYY-MM-DD` or `YYYY-MM-DD-preview`. The deployment name is free-form; it names the
//! model in the answers (the body's `model` is optional) and, like a `model`, may carry
//! directives. Answers are OpenAI's plus Azure's content filter annotations.

use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::behaviour::{Behaviour, Fail};
use crate::complete::{self, Call};
use crate::handler::{self, Reply};
use crate::openai::{self, Dialect, Flavour};
use crate::Shared;

/// Every Azure OpenAI route starts with this.
pub(crate) const PATH_PREFIX: &str = "/openai/";

/// Four harm categories, none filtered.
const SAFE: &str = r#"{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}"#;

/// What an answer cut short by the filter reports (`content-filter-completion`).
const FILTERED_COMPLETION: &str = r#"{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":true,"severity":"medium"}}"#;

/// `prompt_filter_results` of every completion answer.
pub(crate) const PROMPT_FILTER_RESULTS: &str = r#"[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]"#;

/// A choice's `content_filter_results` for an answer that finished with `finish_reason`.
pub(crate) fn completion_filter_results(finish_reason: &str) -> String {
    if finish_reason == "content_filter" {
        FILTERED_COMPLETION.to_owned()
    } else {
        SAFE.to_owned()
    }
}

/// The operations served under a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Chat,
    Completions,
    Embeddings,
    Images,
}

impl Operation {
    /// The operation's name in Azure's rate limit messages.
    fn name(self) -> &'static str {
        match self {
            Operation::Chat => "ChatCompletions_Create",
            Operation::Completions => "Completions_Create",
            Operation::Embeddings => "Embeddings_Create",
            Operation::Images => "ImageGenerations_Create",
        }
    }
}

/// `{"error":{"code":…,"message":…}}`, Azure's own error shape.
fn error_body(code: &str, message: &str) -> String {
    format!(
        r#"{{"error":{{"code":{},"message":{}}}}}"#,
        openai::quote(code),
        openai::quote(message)
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(status, error_body(code, message))
}

fn not_found() -> Reply {
    error(StatusCode::NOT_FOUND, "404", "Resource not found")
}

/// The deployment (percent-decoded) and operation of `/openai/deployments/{d}/{operation}`.
fn route(path: &str) -> Option<(String, Operation)> {
    let rest = path.strip_prefix("/openai/deployments/")?;
    let (deployment, operation) = rest.split_once('/')?;
    let operation = match operation {
        "chat/completions" => Operation::Chat,
        "completions" => Operation::Completions,
        "embeddings" => Operation::Embeddings,
        "images/generations" => Operation::Images,
        _ => return None,
    };
    let deployment = percent_decode(deployment)?;
    (!deployment.is_empty()).then_some((deployment, operation))
}

/// `%XX` escapes decoded; `None` if malformed or not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of query parameter `name` (not decoded).
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `YYYY-MM-DD` or `YYYY-MM-DD-preview`.
fn valid_api_version(version: &str) -> bool {
    let date = version.strip_suffix("-preview").unwrap_or(version);
    is_date(date)
}

/// `YYYY-MM-DD` (digits and dashes in place; month 01–12, day 01–31).
pub(crate) fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    if !(digits(0..4) && digits(5..7) && digits(8..10)) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// 401 unless `api-key: <key>`, or `Authorization: Bearer` with the key or a token the
/// mock's Entra ID endpoint issued and that has not expired.
fn check_auth(shared: &Shared, parts: &Parts, key: &str) -> Option<Reply> {
    let api_key = handler::header(parts, "api-key");
    let bearer = handler::header(parts, "authorization").and_then(|v| v.strip_prefix("Bearer "));
    if api_key == Some(key)
        || bearer == Some(key)
        || bearer.is_some_and(|token| shared.entra_tokens.valid(token))
    {
        return None;
    }
    Some(error(
        StatusCode::UNAUTHORIZED,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key \
         for an active subscription and use a correct regional API endpoint for your resource.",
    ))
}

/// A scripted failure as Azure answers it: its own 429, OpenAI's shapes otherwise.
fn failure(fail: Fail, behaviour: &Behaviour, operation: Operation, version: &str) -> Reply {
    if fail != Fail::RateLimited {
        return handler::openai_failure(fail, behaviour, "");
    }
    let seconds = behaviour.retry_after.unwrap_or(1);
    let unit = if seconds == 1 { "second" } else { "seconds" };
    let message = format!(
        "Requests to the {} Operation under Azure OpenAI API version {version} have exceeded call rate limit \
         of your current OpenAI S0 pricing tier. Please retry after {seconds} {unit}. Please go here: \
         https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
        operation.name()
    );
    Reply::Json {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: error_body("429", &message),
        retry_after: Some(seconds),
    }
}

/// The `content-filter` refusal: the prompt was filtered.
fn prompt_filtered() -> Reply {
    const BODY: &str = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}}}"#;
    Reply::json(StatusCode::BAD_REQUEST, BODY.to_owned())
}

/// Azure's refusal of an image prompt (`content_policy_violation`).
fn image_prompt_filtered() -> Reply {
    const BODY: &str = r#"{"error":{"code":"content_policy_violation","inner_error":{"code":"ResponsibleAIPolicyViolation","content_filter_results":{"hate":{"filtered":true,"severity":"high"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}},"message":"Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system."}}"#;
    Reply::json(StatusCode::BAD_REQUEST, BODY.to_owned())
}

/// Answers one request under [`PATH_PREFIX`].
pub(crate) async fn respond(shared: &Shared, parts: &Parts, body: &[u8], seq: u64) -> Reply {
    if let Some(key) = &shared.config.api_key {
        if let Some(reply) = check_auth(shared, parts, key) {
            return reply;
        }
    }
    let Some((deployment, operation)) = route(parts.uri.path()) else {
        return not_found();
    };
    if parts.method != Method::POST {
        return not_found();
    }
    let version = match query_param(parts.uri.query(), "api-version") {
        None | Some("") => {
            return error(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        Some(version) if !valid_api_version(version) => return not_found(),
        Some(version) => version,
    };
    let Some(request) = handler::json_object(body) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your \
             HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
            None,
        );
    };
    let mut behaviour = Behaviour::default();
    behaviour.apply(&shared.default_behaviour());
    behaviour.apply(&deployment);
    match request.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(model)) => behaviour.apply(model),
        Some(_) => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "Invalid type for 'model': expected a string.",
                Some("model"),
                Some("invalid_type"),
            );
        }
    }
    behaviour.apply(handler::header_behaviour(parts).unwrap_or_default());
    let streamed = !matches!(operation, Operation::Embeddings | Operation::Images)
        && request.get("stream") == Some(&Value::Bool(true));
    let played = handler::play_common(&behaviour, streamed, |fail| {
        failure(fail, &behaviour, operation, version)
    })
    .await;
    if let Some(reply) = played {
        return reply;
    }
    if behaviour.content_filter && operation == Operation::Images {
        return image_prompt_filtered();
    }
    if behaviour.content_filter && operation != Operation::Embeddings {
        return prompt_filtered();
    }
    let call = Call {
        shared,
        request: &request,
        behaviour: &behaviour,
        model: &deployment,
        dialect: Dialect::Azure,
        seq,
    };
    match operation {
        Operation::Chat => complete::completion(&call, Flavour::Chat),
        Operation::Completions => complete::completion(&call, Flavour::Completion),
        Operation::Embeddings => complete::embeddings(&request, &deployment),
        Operation::Images => crate::images::generate(&request, &deployment, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/openai/deployments/gpt-4o/chat/completions"),
            Some(("gpt-4o".to_owned(), Operation::Chat))
        );
        assert_eq!(
            route("/openai/deployments/my%2Bdep+fail-503/embeddings"),
            Some(("my+dep+fail-503".to_owned(), Operation::Embeddings))
        );
        assert_eq!(
            route("/openai/deployments/d/completions"),
            Some(("d".to_owned(), Operation::Completions))
        );
        assert_eq!(route("/openai/deployments//completions"), None);
        assert_eq!(route("/openai/deployments/d/chat"), None);
        assert_eq!(route("/openai/deployments/d"), None);
        assert_eq!(route("/openai/models"), None);
        assert_eq!(route("/openai/deployments/%zz/completions"), None);
    }

    #[test]
    fn api_versions_and_queries() {
        for good in ["2024-02-01", "2024-10-21", "2025-01-01-preview"] {
            assert!(valid_api_version(good), "{good}");
        }
        for bad in [
            "",
            "2024-2-01",
            "2024-13-01",
            "2024-02-00",
            "latest",
            "2024-02-01-beta",
        ] {
            assert!(!valid_api_version(bad), "{bad}");
        }
        let query = Some("a=1&api-version=2024-02-01&flag");
        assert_eq!(query_param(query, "api-version"), Some("2024-02-01"));
        assert_eq!(query_param(query, "flag"), Some(""));
        assert_eq!(query_param(query, "b"), None);
        assert_eq!(query_param(None, "a"), None);
    }
}
