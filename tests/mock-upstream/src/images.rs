//! Image generation as OpenAI (`POST /v1/images/generations`) and Azure OpenAI
//! (`/openai/deployments/{d}/images/generations`) answer it, checked like them: `prompt` a
//! non-empty string, `n` from 1 to 10 (1 for `dall-e-3`), a known `size`, `response_format`
//! `url` or `b64_json` (refused by `gpt-image-*` models, which always answer base64 and
//! report token usage). Every image is the same 1×1 PNG, also used by the Bedrock and Vertex
//! mocks.

use hyper::StatusCode;
use serde_json::{Map, Value};

use crate::complete::unix_now;
use crate::handler::Reply;
use crate::openai::{quote, words};

/// A valid 1×1 PNG, base64.
pub(crate) const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// Sizes the mock accepts (OpenAI's, across its image models).
const SIZES: [&str; 8] = [
    "auto",
    "256x256",
    "512x512",
    "1024x1024",
    "1536x1024",
    "1024x1536",
    "1792x1024",
    "1024x1792",
];

/// Output tokens `gpt-image-*` reports per generated image (its 1024×1024 medium quality).
pub(crate) const IMAGE_OUTPUT_TOKENS: u64 = 1056;

fn invalid(param: &str, message: &str) -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        message,
        Some(param),
        Some("invalid_value"),
    )
}

/// Answers an image generation (scripted failures were played already). `azure`: Azure's
/// dialect (filter annotations on every image).
pub(crate) fn generate(request: &Map<String, Value>, model: &str, azure: bool) -> Reply {
    let prompt = match request.get("prompt") {
        Some(Value::String(prompt)) if !prompt.trim().is_empty() => prompt,
        Some(_) => return invalid("prompt", "Invalid 'prompt': expected a non-empty string."),
        None => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "Missing required parameter: 'prompt'.",
                Some("prompt"),
                Some("missing_required_parameter"),
            )
        }
    };
    let most = if model.contains("dall-e-3") { 1 } else { 10 };
    let n = match request.get("n") {
        None | Some(Value::Null) => 1,
        Some(value) => match value.as_u64() {
            Some(n) if (1..=most).contains(&n) => n,
            _ => return invalid("n", &format!("Invalid 'n': must be between 1 and {most}.")),
        },
    };
    match request.get("size") {
        None | Some(Value::Null) => {}
        Some(Value::String(size)) if SIZES.contains(&size.as_str()) => {}
        Some(_) => {
            return invalid(
                "size",
                &format!("Invalid 'size': must be one of {}.", SIZES.join(", ")),
            )
        }
    }
    let token_model = model.contains("gpt-image");
    let url = match request.get("response_format") {
        None | Some(Value::Null) => !token_model,
        Some(_) if token_model => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "Unknown parameter: 'response_format'.",
                Some("response_format"),
                Some("unknown_parameter"),
            )
        }
        Some(Value::String(format)) if format == "url" => true,
        Some(Value::String(format)) if format == "b64_json" => false,
        Some(_) => {
            return invalid(
                "response_format",
                "Invalid 'response_format': must be 'url' or 'b64_json'.",
            )
        }
    };
    let filters = if azure {
        r#","content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}"#
    } else {
        ""
    };
    let revised = if model.contains("dall-e-3") {
        format!(
            r#","revised_prompt":{}"#,
            quote(&format!("A picture of {prompt}"))
        )
    } else {
        String::new()
    };
    let data: Vec<String> = (0..n)
        .map(|i| {
            let image = if url {
                format!(r#""url":"https://images.mock-upstream.invalid/{i}.png""#)
            } else {
                format!(r#""b64_json":"{PNG_B64}""#)
            };
            format!("{{{image}{revised}{filters}}}")
        })
        .collect();
    let usage = if token_model {
        let input = words(prompt).max(1);
        let output = IMAGE_OUTPUT_TOKENS * n;
        format!(
            r#","usage":{{"total_tokens":{},"input_tokens":{input},"output_tokens":{output},"input_tokens_details":{{"text_tokens":{input},"image_tokens":0}}}}"#,
            input + output
        )
    } else {
        String::new()
    };
    Reply::ok(format!(
        r#"{{"created":{},"data":[{}]{usage}}}"#,
        unix_now(),
        data.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: Reply) -> (StatusCode, Value) {
        match reply {
            Reply::Json { status, body, .. } => {
                (status, serde_json::from_str(&body).expect("json"))
            }
            _ => panic!("not a JSON reply"),
        }
    }

    fn request(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).expect("object")
    }

    #[test]
    fn token_models_answer_base64_with_usage() {
        let (status, json) = body(generate(
            &request(r#"{"prompt":"a red fox","n":2}"#),
            "gpt-image-1",
            false,
        ));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["data"][1]["b64_json"], PNG_B64);
        assert_eq!(json["usage"]["output_tokens"], 2 * IMAGE_OUTPUT_TOKENS);
        let (status, _) = body(generate(
            &request(r#"{"prompt":"x","response_format":"url"}"#),
            "gpt-image-1",
            false,
        ));
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn dall_e_answers_urls_and_checks_parameters() {
        let (status, json) = body(generate(&request(r#"{"prompt":"fox"}"#), "dall-e-3", true));
        assert_eq!(status, StatusCode::OK);
        assert!(json["data"][0]["url"].is_string());
        assert!(json["data"][0]["content_filter_results"].is_object());
        assert!(json.get("usage").is_none());
        for bad in [
            r#"{"prompt":"fox","n":2}"#,
            r#"{"prompt":""}"#,
            r#"{"n":1}"#,
            r#"{"prompt":"fox","size":"10x10"}"#,
            r#"{"prompt":"fox","response_format":"png"}"#,
        ] {
            let (status, _) = body(generate(&request(bad), "dall-e-3", false));
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
