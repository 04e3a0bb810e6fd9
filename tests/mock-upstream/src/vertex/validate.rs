//! Gemini's body rules for `generateContent` / `streamGenerateContent`, `predict` and
//! `batchEmbedContents`: each failure is the message of a 400 `INVALID_ARGUMENT`, worded like
//! Google's (`Invalid JSON payload received. Unknown name "n": Cannot find field.`).

use base64::Engine as _;
use serde_json::{Map, Value};

/// What the answer depends on.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Words of every text part (prompt tokens).
    pub prompt_tokens: u64,
    /// `generationConfig.maxOutputTokens`.
    pub max_output_tokens: Option<u64>,
    /// `generationConfig.candidateCount` (default 1).
    pub candidates: u64,
    /// The function to call, when the model should call one: (name, forced).
    pub tool_call: Option<(String, bool)>,
}

const TOP_LEVEL: [&str; 8] = [
    "contents",
    "systemInstruction",
    "generationConfig",
    "tools",
    "toolConfig",
    "safetySettings",
    "cachedContent",
    "labels",
];

const GENERATION_CONFIG: [&str; 16] = [
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "candidateCount",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
];

/// Keys Gemini's `Schema` knows.
const SCHEMA: [&str; 22] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// The signature the mock gives a function call to `name` (`thinking` models).
pub(crate) fn signature_for(name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("mock-thought:{name}"))
}

fn unknown(name: &str, at: &str) -> String {
    format!("Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field.")
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Checks a `generateContent` body. `thinking`: function calls of model turns must carry the
/// signature the mock gave them.
pub(crate) fn generate_content(
    body: &Map<String, Value>,
    thinking: bool,
) -> Result<Checked, String> {
    for key in body.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
            ));
        }
    }
    let mut checked = Checked {
        candidates: 1,
        ..Checked::default()
    };
    if let Some(system) = body.get("systemInstruction") {
        let parts = system
            .get("parts")
            .and_then(Value::as_array)
            .ok_or("systemInstruction.parts is required")?;
        for part in parts {
            let text = part
                .get("text")
                .and_then(Value::as_str)
                .ok_or("systemInstruction parts must be text")?;
            checked.prompt_tokens += words(text);
        }
    }
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    let mut previous_calls: Vec<String> = Vec::new();
    for (i, content) in contents.iter().enumerate() {
        let object = content.as_object().ok_or("contents must be objects")?;
        for key in object.keys() {
            if key != "role" && key != "parts" {
                return Err(unknown(key, &format!("contents[{i}]")));
            }
        }
        let role = object.get("role").and_then(Value::as_str).unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(format!(
                "Please use a valid role: user, model. (contents[{i}].role is \"{role}\")"
            ));
        }
        let parts = object
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
            })?;
        let mut calls = Vec::new();
        let mut responses = Vec::new();
        for (j, part) in parts.iter().enumerate() {
            let at = format!("contents[{i}].parts[{j}]");
            let part = part.as_object().ok_or("parts must be objects")?;
            let data: Vec<&String> = part
                .keys()
                .filter(|k| !matches!(k.as_str(), "thoughtSignature" | "thought"))
                .collect();
            if data.len() != 1 {
                return Err(format!("* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"));
            }
            match data[0].as_str() {
                "text" => {
                    let text = part["text"].as_str().ok_or("text must be a string")?;
                    checked.prompt_tokens += words(text);
                }
                "inlineData" => {
                    let blob = &part["inlineData"];
                    let mime = blob.get("mimeType").and_then(Value::as_str).unwrap_or("");
                    let data = blob.get("data").and_then(Value::as_str).unwrap_or("");
                    if mime.is_empty()
                        || base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .is_err()
                    {
                        return Err(format!("Invalid value at '{at}.inline_data' (base64 data and a mimeType are required)"));
                    }
                }
                "fileData" => {
                    let file = &part["fileData"];
                    let uri = file.get("fileUri").and_then(Value::as_str).unwrap_or("");
                    if file.get("mimeType").and_then(Value::as_str).is_none() || uri.is_empty() {
                        return Err(format!("* GenerateContentRequest.{at}.file_data: fileUri and mimeType are required"));
                    }
                }
                "functionCall" => {
                    if role != "model" {
                        return Err(format!(
                            "{at}: function calls are only allowed in model turns"
                        ));
                    }
                    let call = &part["functionCall"];
                    let name = call
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("functionCall.name is required")?;
                    if !call.get("args").is_none_or(Value::is_object) {
                        return Err(format!("Invalid value at '{at}.function_call.args' (type.googleapis.com/google.protobuf.Struct)"));
                    }
                    if thinking
                        && part.get("thoughtSignature").and_then(Value::as_str)
                            != Some(signature_for(name).as_str())
                    {
                        return Err(format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}.", j + 1));
                    }
                    calls.push(name.to_owned());
                }
                "functionResponse" => {
                    if role != "user" {
                        return Err(format!(
                            "{at}: function responses are only allowed in user turns"
                        ));
                    }
                    let response = &part["functionResponse"];
                    let name = response
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("functionResponse.name is required")?;
                    if !response.get("response").is_some_and(Value::is_object) {
                        return Err(format!("Invalid value at '{at}.function_response.response' (type.googleapis.com/google.protobuf.Struct)"));
                    }
                    responses.push(name.to_owned());
                }
                other => return Err(unknown(other, &at)),
            }
        }
        if !responses.is_empty() {
            let mut expected = previous_calls.clone();
            let mut got = responses.clone();
            expected.sort();
            got.sort();
            if expected != got {
                return Err("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.".to_owned());
            }
        }
        previous_calls = calls;
        if i + 1 == contents.len() && role == "user" && responses.is_empty() {
            checked.tool_call = Some((String::new(), false)); // decided with the tools below
        }
    }
    checked.prompt_tokens = checked.prompt_tokens.max(1);
    if let Some(config) = body.get("generationConfig") {
        let config = config
            .as_object()
            .ok_or("generationConfig must be an object")?;
        for key in config.keys() {
            if !GENERATION_CONFIG.contains(&key.as_str()) {
                return Err(unknown(key, "generation_config"));
            }
        }
        checked.max_output_tokens = config.get("maxOutputTokens").and_then(Value::as_u64);
        if let Some(n) = config.get("candidateCount").and_then(Value::as_u64) {
            checked.candidates = n.clamp(1, 8);
        }
    }
    let declarations = tools(body.get("tools"))?;
    let (mode, allowed) = tool_config(body.get("toolConfig"))?;
    let wants_call = checked.tool_call.take().is_some();
    if wants_call && !declarations.is_empty() && mode != "NONE" {
        let name = allowed.unwrap_or_else(|| declarations[0].clone());
        checked.tool_call = Some((name, mode == "ANY"));
    }
    Ok(checked)
}

/// The declared function names; schemas checked like Gemini does.
fn tools(tools: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(tools) = tools else {
        return Ok(Vec::new());
    };
    let tools = tools.as_array().ok_or("tools must be an array")?;
    let mut names = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let tool = tool.as_object().ok_or("tools must be objects")?;
        for (key, value) in tool {
            if key != "functionDeclarations" {
                return Err(unknown(key, &format!("tools[{i}]")));
            }
            for (j, declaration) in value.as_array().into_iter().flatten().enumerate() {
                let at = format!("tools[{i}].function_declarations[{j}]");
                let declaration = declaration
                    .as_object()
                    .ok_or("declarations must be objects")?;
                for key in declaration.keys() {
                    if !matches!(
                        key.as_str(),
                        "name" | "description" | "parameters" | "parametersJsonSchema" | "response"
                    ) {
                        return Err(unknown(key, &at));
                    }
                }
                let name = declaration
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
                if !valid {
                    return Err(format!(
                        "* GenerateContentRequest.{at}.name: Invalid function name."
                    ));
                }
                if let Some(schema) = declaration.get("parameters") {
                    check_schema(schema, &format!("{at}.parameters"))?;
                    let object = schema
                        .get("type")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t.eq_ignore_ascii_case("object"));
                    let empty = schema
                        .get("properties")
                        .and_then(Value::as_object)
                        .is_none_or(Map::is_empty);
                    if object && empty {
                        return Err(format!("* GenerateContentRequest.{at}.parameters.properties: should be non-empty for OBJECT type"));
                    }
                }
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

fn check_schema(schema: &Value, at: &str) -> Result<(), String> {
    let Value::Object(map) = schema else {
        return Err(format!(
            "Invalid value at '{at}': a schema must be an object"
        ));
    };
    for (key, value) in map {
        if !SCHEMA.contains(&key.as_str()) {
            return Err(unknown(key, at));
        }
        match key.as_str() {
            "properties" => {
                for (name, property) in value.as_object().into_iter().flatten() {
                    check_schema(property, &format!("{at}.properties[{name}]"))?;
                }
            }
            "items" => check_schema(value, &format!("{at}.items"))?,
            "anyOf" => {
                for (k, option) in value.as_array().into_iter().flatten().enumerate() {
                    check_schema(option, &format!("{at}.any_of[{k}]"))?;
                }
            }
            "type" if !value.is_string() => {
                return Err(format!(
                    "Invalid value at '{at}.type': a single type name is expected"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `toolConfig.functionCallingConfig`: the mode (default `AUTO`) and the one allowed name.
fn tool_config(config: Option<&Value>) -> Result<(String, Option<String>), String> {
    let Some(config) = config else {
        return Ok(("AUTO".to_owned(), None));
    };
    let calling = config
        .get("functionCallingConfig")
        .and_then(Value::as_object)
        .ok_or("toolConfig.functionCallingConfig is required")?;
    for key in calling.keys() {
        if key != "mode" && key != "allowedFunctionNames" {
            return Err(unknown(key, "tool_config.function_calling_config"));
        }
    }
    let mode = calling
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    if !matches!(mode, "AUTO" | "ANY" | "NONE" | "VALIDATED") {
        return Err(format!(
            "Invalid value at 'tool_config.function_calling_config.mode' (\"{mode}\")"
        ));
    }
    let allowed = calling
        .get("allowedFunctionNames")
        .and_then(Value::as_array)
        .and_then(|names| names.first())
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((mode.to_owned(), allowed))
}

/// Checks a `predict` body; the inputs' texts.
pub(crate) fn predict(body: &Map<String, Value>) -> Result<Vec<String>, String> {
    for key in body.keys() {
        if key != "instances" && key != "parameters" {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
            ));
        }
    }
    let instances = body
        .get("instances")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty())
        .ok_or("instances must be a non-empty array")?;
    instances
        .iter()
        .map(|instance| {
            instance
                .get("content")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| "each instance needs a string `content`".to_owned())
        })
        .collect()
}

/// Checks a `batchEmbedContents` body for `model`; the inputs' texts.
pub(crate) fn batch_embed(body: &Map<String, Value>, model: &str) -> Result<Vec<String>, String> {
    for key in body.keys() {
        if key != "requests" {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
            ));
        }
    }
    let requests = body
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or("requests must be a non-empty array")?;
    let expected = format!("models/{model}");
    requests
        .iter()
        .enumerate()
        .map(|(i, request)| {
            if request.get("model").and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(format!("* BatchEmbedContentsRequest.requests[{i}].model: the model must be `{expected}`"));
            }
            request
                .pointer("/content/parts/0/text")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("* BatchEmbedContentsRequest.requests[{i}].content: text is required"))
        })
        .collect()
}
