//! `:predict`: text embeddings (Vertex AI, `instances[].content`) and Imagen (both APIs,
//! `instances[].prompt`), and the answers of `:batchEmbedContents`.
//!
//! Imagen is checked like Google: one instance with a non-empty `prompt`; `parameters` keys
//! known (`negativePrompt`, `seed`, `addWatermark`, `enhancePrompt`, `storageUri` refused by
//! the Gemini API); `sampleCount` 1 to 4; an `aspectRatio` among Imagen's; a `seed` only with
//! `addWatermark: false` (the watermark is on by default); known `personGeneration`,
//! `safetySetting` and `outputOptions.mimeType`. Every image is [`PNG_B64`]. With the
//! `content-filter` directive every image is filtered: `{"raiFilteredReason"}` predictions
//! with `includeRaiReason: true`, else an empty answer (`{}`), as Imagen does.

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::{error, validate};
use crate::handler::Reply;
use crate::images::PNG_B64;

/// Dimensions of the mock's embeddings (`outputDimensionality` overrides).
const DIMS: usize = 8;

const ASPECT_RATIOS: [&str; 5] = ["1:1", "3:4", "4:3", "9:16", "16:9"];
const PARAMETERS: [&str; 15] = [
    "sampleCount",
    "aspectRatio",
    "negativePrompt",
    "seed",
    "addWatermark",
    "personGeneration",
    "safetySetting",
    "includeRaiReason",
    "includeSafetyAttributes",
    "outputOptions",
    "language",
    "enhancePrompt",
    "storageUri",
    "sampleImageSize",
    "guidanceScale",
];
/// `parameters` the Gemini API does not take.
const VERTEX_ONLY: [&str; 5] = [
    "negativePrompt",
    "seed",
    "addWatermark",
    "enhancePrompt",
    "storageUri",
];
/// The reason given for a filtered image.
const FILTERED_REASON: &str = "Your current safety filter threshold filtered out 1 generated images. You will not be charged for blocked images. Try rephrasing the prompt. Support codes: 56562880";

/// Answers `:predict` (scripted failures were played already).
pub(super) fn respond(request: &Map<String, Value>, gemini: bool, filtered: bool) -> Reply {
    let imagen = request
        .get("instances")
        .and_then(|i| i.get(0))
        .is_some_and(|instance| instance.get("prompt").is_some());
    if imagen {
        return match imagen_answer(request, gemini, filtered) {
            Ok(body) => Reply::ok(body),
            Err(message) => error(StatusCode::BAD_REQUEST, &message),
        };
    }
    if gemini {
        // The Gemini API predicts with Imagen only (text embeddings: batchEmbedContents).
        return error(StatusCode::NOT_FOUND, "Method not found.");
    }
    match validate::predict(request) {
        Ok(texts) => Reply::ok(predictions(&texts, request)),
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

fn unknown(name: &str, at: &str) -> String {
    format!("Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field.")
}

/// Checks an Imagen request; its answer.
fn imagen_answer(
    request: &Map<String, Value>,
    gemini: bool,
    filtered: bool,
) -> Result<String, String> {
    if let Some(key) = request
        .keys()
        .find(|k| *k != "instances" && *k != "parameters")
    {
        return Err(unknown(key, ""));
    }
    let instances = request
        .get("instances")
        .and_then(Value::as_array)
        .ok_or("instances must be an array")?;
    let [instance] = instances.as_slice() else {
        return Err("Only one instance is supported per request.".to_owned());
    };
    let instance = instance
        .as_object()
        .ok_or("instances[0] must be an object")?;
    if let Some(key) = instance.keys().find(|k| *k != "prompt") {
        return Err(unknown(key, "instances[0]"));
    }
    match instance.get("prompt") {
        Some(Value::String(prompt)) if !prompt.trim().is_empty() => {}
        _ => return Err("The prompt must be a non-empty string.".to_owned()),
    }
    let empty = Map::new();
    let parameters = match request.get("parameters") {
        None => &empty,
        Some(Value::Object(parameters)) => parameters,
        Some(_) => return Err("parameters must be an object".to_owned()),
    };
    for key in parameters.keys() {
        if !PARAMETERS.contains(&key.as_str()) {
            return Err(unknown(key, "parameters"));
        }
        if gemini && VERTEX_ONLY.contains(&key.as_str()) {
            return Err(format!("{key} parameter is not supported in Gemini API."));
        }
    }
    let count = match parameters.get("sampleCount") {
        None => 1,
        Some(value) => match value.as_u64() {
            Some(n @ 1..=4) => n,
            _ => return Err("Number of images must be in [1, 4].".to_owned()),
        },
    };
    let string = |key: &str, allowed: &[&str]| -> Result<(), String> {
        match parameters.get(key) {
            None => Ok(()),
            Some(Value::String(value))
                if allowed.is_empty() || allowed.contains(&value.as_str()) =>
            {
                Ok(())
            }
            Some(_) if allowed.is_empty() => Err(format!("{key} must be a string.")),
            Some(value) => Err(format!(
                "Invalid {key}: {value}. Supported values: {}.",
                allowed.join(", ")
            )),
        }
    };
    string("aspectRatio", &ASPECT_RATIOS)?;
    string("negativePrompt", &[])?;
    string(
        "personGeneration",
        &["dont_allow", "allow_adult", "allow_all"],
    )?;
    string(
        "safetySetting",
        &[
            "block_low_and_above",
            "block_medium_and_above",
            "block_only_high",
            "block_none",
        ],
    )?;
    for key in [
        "addWatermark",
        "includeRaiReason",
        "includeSafetyAttributes",
        "enhancePrompt",
    ] {
        if parameters.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("{key} must be a boolean."));
        }
    }
    if let Some(seed) = parameters.get("seed") {
        if seed.as_u64().and_then(|s| u32::try_from(s).ok()).is_none() {
            return Err("seed must be an unsigned 32-bit integer.".to_owned());
        }
        if parameters.get("addWatermark") != Some(&Value::Bool(false)) {
            return Err(
                "Seed is not supported when watermark is enabled. Set addWatermark to false."
                    .to_owned(),
            );
        }
    }
    let mime_type = match parameters.get("outputOptions") {
        None => "image/png",
        Some(Value::Object(options)) => {
            if let Some(key) = options
                .keys()
                .find(|k| *k != "mimeType" && *k != "compressionQuality")
            {
                return Err(unknown(key, "parameters.outputOptions"));
            }
            match options.get("mimeType") {
                None => "image/png",
                Some(Value::String(m)) if m == "image/png" => "image/png",
                Some(Value::String(m)) if m == "image/jpeg" => "image/jpeg",
                Some(_) => {
                    return Err("outputOptions.mimeType must be image/png or image/jpeg.".to_owned())
                }
            }
        }
        Some(_) => return Err("outputOptions must be an object.".to_owned()),
    };
    let n = usize::try_from(count).unwrap_or(1);
    if filtered {
        if parameters.get("includeRaiReason") == Some(&Value::Bool(true)) {
            let reasons = vec![json!({"raiFilteredReason": FILTERED_REASON}); n];
            return Ok(json!({"predictions": reasons}).to_string());
        }
        return Ok("{}".to_owned());
    }
    let predictions = vec![json!({"bytesBase64Encoded": PNG_B64, "mimeType": mime_type}); n];
    Ok(json!({"predictions": predictions}).to_string())
}

fn vector(i: usize, dims: usize) -> Vec<f64> {
    (0..dims)
        .map(|j| ((i * dims + j) as f64 + 1.0) / 100.0)
        .collect()
}

fn dims(value: Option<&Value>) -> usize {
    value
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(DIMS)
        .clamp(1, 3072)
}

fn predictions(texts: &[String], request: &Map<String, Value>) -> String {
    let dims = dims(
        request
            .get("parameters")
            .and_then(|p| p.get("outputDimensionality")),
    );
    let predictions: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({"embeddings": {"values": vector(i, dims), "statistics": {"token_count": text.split_whitespace().count().max(1), "truncated": false}}})
        })
        .collect();
    json!({"predictions": predictions, "metadata": {"billableCharacterCount": texts.iter().map(String::len).sum::<usize>()}}).to_string()
}

/// The answer of `:batchEmbedContents`.
pub(super) fn batch_embeddings(texts: &[String], request: &Map<String, Value>) -> String {
    let dims = dims(
        request
            .get("requests")
            .and_then(|r| r.pointer("/0/outputDimensionality")),
    );
    let embeddings: Vec<Value> = (0..texts.len())
        .map(|i| json!({"values": vector(i, dims)}))
        .collect();
    json!({"embeddings": embeddings}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str, gemini: bool, filtered: bool) -> Result<Value, String> {
        let request: Map<String, Value> = serde_json::from_str(json).expect("object");
        imagen_answer(&request, gemini, filtered)
            .map(|body| serde_json::from_str(&body).expect("json"))
    }

    #[test]
    fn imagen_answers_sample_count_pngs() {
        let json = answer(
            r#"{"instances":[{"prompt":"fox"}],"parameters":{"sampleCount":3,"aspectRatio":"16:9","negativePrompt":"x","seed":4,"addWatermark":false,"personGeneration":"allow_adult","safetySetting":"block_only_high","includeRaiReason":true,"outputOptions":{"mimeType":"image/png"}}}"#,
            false,
            false,
        )
        .expect("valid");
        assert_eq!(json["predictions"].as_array().map(Vec::len), Some(3));
        assert_eq!(json["predictions"][0]["bytesBase64Encoded"], PNG_B64);
        assert_eq!(json["predictions"][0]["mimeType"], "image/png");
        let json = answer(r#"{"instances":[{"prompt":"fox"}]}"#, true, false).expect("valid");
        assert_eq!(json["predictions"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn imagen_filters_in_its_shape() {
        let json = answer(
            r#"{"instances":[{"prompt":"fox"}],"parameters":{"sampleCount":2,"includeRaiReason":true}}"#,
            false,
            true,
        )
        .expect("valid");
        assert_eq!(json["predictions"][1]["raiFilteredReason"], FILTERED_REASON);
        let json = answer(r#"{"instances":[{"prompt":"fox"}]}"#, false, true).expect("valid");
        assert_eq!(json, json!({}));
    }

    #[test]
    fn imagen_checks_what_google_checks() {
        for (bad, gemini, needle) in [
            (
                r#"{"instances":[{"prompt":"fox"}],"parameters":{"sampleCount":5}}"#,
                false,
                "[1, 4]",
            ),
            (
                r#"{"instances":[{"prompt":"fox"}],"parameters":{"sampleCount":0}}"#,
                false,
                "[1, 4]",
            ),
            (
                r#"{"instances":[{"prompt":"fox"}],"parameters":{"aspectRatio":"3:2"}}"#,
                false,
                "Supported values",
            ),
            (
                r#"{"instances":[{"prompt":"fox"}],"parameters":{"seed":1}}"#,
                false,
                "watermark",
            ),
            (
                r#"{"instances":[{"prompt":"fox"}],"parameters":{"n":1}}"#,
                false,
                "Unknown name \"n\"",
            ),
            (
                r#"{"instances":[{"prompt":"fox"}],"parameters":{"negativePrompt":"x"}}"#,
                true,
                "not supported in Gemini API",
            ),
            (
                r#"{"instances":[{"prompt":"fox"}],"parameters":{"personGeneration":"everyone"}}"#,
                false,
                "Supported values",
            ),
            (
                r#"{"instances":[{"prompt":"fox"},{"prompt":"cat"}]}"#,
                false,
                "one instance",
            ),
            (r#"{"instances":[{"prompt":""}]}"#, false, "non-empty"),
            (
                r#"{"instances":[{"prompt":"fox"}],"extra":1}"#,
                false,
                "Unknown name",
            ),
        ] {
            let message = answer(bad, gemini, false).expect_err(bad);
            assert!(message.contains(needle), "{bad}: {message}");
        }
    }
}
