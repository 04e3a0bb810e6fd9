//! Parameters a provider cannot honour are refused (400, naming the parameter) rather than
//! silently dropped; their no-op values (`n: 1`, `logprobs: false`, a zero penalty, an empty
//! `logit_bias`, `response_format: text`, `modalities: ["text"]`) pass.

use std::borrow::Cow;

use serde::Deserialize;

use super::invalid;
use super::request::{decode, ChatRequest};
use crate::error::ApiError;

/// A parameter (or family of parameters) of OpenAI's chat API a provider may not honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `n` other than 1.
    N,
    /// `logprobs: true` and any `top_logprobs`.
    Logprobs,
    /// `response_format` other than `text`.
    ResponseFormat,
    /// `audio` and `modalities` other than text.
    AudioOutput,
    /// Non-zero `presence_penalty` / `frequency_penalty`.
    Penalties,
    /// A non-empty `logit_bias`.
    LogitBias,
    /// `prediction`.
    Prediction,
    /// `reasoning_effort`.
    ReasoningEffort,
    /// `web_search_options`.
    WebSearch,
    /// The legacy `functions` / `function_call`.
    LegacyFunctions,
}

/// What one provider refuses; the checks run in a fixed order, so the first refused
/// parameter of a request is named whatever the list's order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusals(pub(crate) &'static [Refused]);

impl Refusals {
    /// Everything a provider without these features refuses.
    pub(crate) const ALL: Refusals = Refusals(&[
        Refused::N,
        Refused::Logprobs,
        Refused::ResponseFormat,
        Refused::AudioOutput,
        Refused::Penalties,
        Refused::LogitBias,
        Refused::Prediction,
        Refused::ReasoningEffort,
        Refused::WebSearch,
        Refused::LegacyFunctions,
    ]);

    fn refuses(self, what: Refused) -> bool {
        self.0.contains(&what)
    }
}

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// Refuses the parameters of `chat` that `provider` (its name in messages: "Anthropic")
/// cannot honour, as listed in `refusals`.
pub(crate) fn refuse_unsupported(
    chat: &ChatRequest<'_>,
    provider: &str,
    refusals: Refusals,
) -> Result<(), ApiError> {
    let refused = match refused_value(chat, refusals)? {
        Some(refused) => Some(refused),
        None => refused_presence(chat, refusals),
    };
    match refused {
        Some((param, what)) => Err(invalid(
            param,
            &format!("{what} is not supported for this model ({provider})."),
        )),
        None => Ok(()),
    }
}

/// The first refused parameter whose value matters (`n` other than 1, `logprobs: true`, a
/// `response_format` other than `text`, audio output, non-zero penalties, a non-empty
/// `logit_bias`): its name and how the message calls it.
fn refused_value(
    chat: &ChatRequest<'_>,
    refusals: Refusals,
) -> Result<Option<(&'static str, Cow<'static, str>)>, ApiError> {
    let found = |param: &'static str, what: &'static str| Ok(Some((param, Cow::Borrowed(what))));
    if refusals.refuses(Refused::N) && decode::<u64>(chat.n, "n")?.is_some_and(|n| n != 1) {
        return found("n", "`n` other than 1");
    }
    if refusals.refuses(Refused::Logprobs) {
        if decode::<bool>(chat.logprobs, "logprobs")? == Some(true) {
            return found("logprobs", "`logprobs`");
        }
        if chat.top_logprobs.is_some() {
            return found("top_logprobs", "`top_logprobs`");
        }
    }
    if refusals.refuses(Refused::ResponseFormat) {
        if let Some(format) = decode::<ResponseFormat<'_>>(chat.response_format, "response_format")?
        {
            if format.kind != "text" {
                return found("response_format", "`response_format` other than `text`");
            }
        }
    }
    if refusals.refuses(Refused::AudioOutput) {
        if chat.audio.is_some() {
            return found("audio", "Audio output");
        }
        if decode::<Vec<Cow<'_, str>>>(chat.modalities, "modalities")?
            .is_some_and(|modalities| modalities.iter().any(|m| m != "text"))
        {
            return found("modalities", "Output modalities other than `text`");
        }
    }
    if refusals.refuses(Refused::Penalties) {
        for (raw, param) in [
            (chat.presence_penalty, "presence_penalty"),
            (chat.frequency_penalty, "frequency_penalty"),
        ] {
            if decode::<f64>(raw, param)?.is_some_and(|value| value != 0.0) {
                return Ok(Some((param, format!("A non-zero `{param}`").into())));
            }
        }
    }
    if refusals.refuses(Refused::LogitBias)
        && decode::<serde_json::Map<String, serde_json::Value>>(chat.logit_bias, "logit_bias")?
            .is_some_and(|bias| !bias.is_empty())
    {
        return found("logit_bias", "`logit_bias`");
    }
    Ok(None)
}

/// The first refused parameter that is refused whatever its value: its name and how the
/// message calls it.
fn refused_presence(
    chat: &ChatRequest<'_>,
    refusals: Refusals,
) -> Option<(&'static str, Cow<'static, str>)> {
    [
        (
            Refused::Prediction,
            chat.prediction,
            "prediction",
            "`prediction`",
        ),
        (
            Refused::ReasoningEffort,
            chat.reasoning_effort,
            "reasoning_effort",
            "`reasoning_effort`",
        ),
        (
            Refused::WebSearch,
            chat.web_search_options,
            "web_search_options",
            "`web_search_options`",
        ),
        (
            Refused::LegacyFunctions,
            chat.functions,
            "functions",
            "The legacy `functions` (use `tools`)",
        ),
        (
            Refused::LegacyFunctions,
            chat.function_call,
            "function_call",
            "The legacy `function_call` (use `tool_choice`)",
        ),
    ]
    .into_iter()
    .find(|(refused, raw, _, _)| refusals.refuses(*refused) && raw.is_some())
    .map(|(_, _, param, what)| (param, Cow::Borrowed(what)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str, refusals: Refusals) -> Option<(&'static str, String)> {
        let chat = ChatRequest::parse(body.as_bytes()).unwrap();
        refuse_unsupported(&chat, "Test", refusals)
            .err()
            .map(|error| (error.param.unwrap_or_default(), error.message))
    }

    #[test]
    fn only_listed_parameters_are_refused_and_null_is_absent() {
        let body = r#"{"n": 2, "presence_penalty": 1, "response_format": {"type": "json_object"}}"#;
        assert_eq!(refused(body, Refusals::ALL).unwrap().0, "n");
        assert_eq!(refused(body, Refusals(&[Refused::Logprobs])), None);
        let (param, message) = refused(body, Refusals(&[Refused::Penalties])).unwrap();
        assert_eq!(param, "presence_penalty");
        assert_eq!(
            message,
            "A non-zero `presence_penalty` is not supported for this model (Test)."
        );
        let nulls = r#"{"n": null, "logprobs": null, "top_logprobs": null, "audio": null,
            "logit_bias": null, "prediction": null, "functions": null, "function_call": null}"#;
        assert_eq!(refused(nulls, Refusals::ALL), None);
    }
}
