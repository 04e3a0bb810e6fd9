//! Image generation through `InvokeModel`, in the three body families of Bedrock's image
//! models (told apart by the body, as the model id would): Amazon Titan Image Generator and
//! Nova Canvas (`taskType`), Stability AI's SD3 / Stable Image (`prompt`) and SDXL
//! (`text_prompts`). Checked like Bedrock: required fields and their types, extraneous keys
//! refused, `taskType` `TEXT_IMAGE` only (the mock serves no edits), `numberOfImages` 1 to 5,
//! known aspect ratios, SDXL's sizes and style presets, seed ranges. Every image is
//! [`PNG_B64`].
//!
//! With the `content-filter` directive every image is filtered, in each family's shape:
//! Titan / Nova refuse with a `ValidationException` ("blocked by our content filters"),
//! Stability answers `finish_reasons: ["Filter reason: prompt"]`, SDXL an artifact with
//! `finishReason: CONTENT_FILTERED`.

use serde_json::{Map, Value};

use super::validation;
use crate::handler::Reply;
use crate::images::PNG_B64;
use crate::openai::quote;

/// The seed of answers that were given none.
const DEFAULT_SEED: u64 = 1_234_567;

const STABILITY_RATIOS: [&str; 9] = [
    "1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21",
];

const SDXL_SIZES: [(u64, u64); 9] = [
    (1024, 1024),
    (1152, 896),
    (1216, 832),
    (1344, 768),
    (1536, 640),
    (640, 1536),
    (768, 1344),
    (832, 1216),
    (896, 1152),
];

const SDXL_STYLES: [&str; 17] = [
    "3d-model",
    "analog-film",
    "anime",
    "cinematic",
    "comic-book",
    "digital-art",
    "enhance",
    "fantasy-art",
    "isometric",
    "line-art",
    "low-poly",
    "modeling-compound",
    "neon-punk",
    "origami",
    "photographic",
    "pixel-art",
    "tile-texture",
];

/// Whether a body is an image request (else Titan text embeddings).
pub(super) fn is_image_request(request: &Map<String, Value>) -> bool {
    ["taskType", "prompt", "text_prompts"]
        .iter()
        .any(|key| request.contains_key(*key))
}

/// Answers an image request to `model` (scripted failures were played already).
pub(super) fn generate(request: &Map<String, Value>, model: &str, filtered: bool) -> Reply {
    let result = if request.contains_key("taskType") {
        titan(request, model, filtered)
    } else if request.contains_key("text_prompts") {
        sdxl(request, filtered)
    } else {
        stability(request, filtered)
    };
    result.unwrap_or_else(|message| validation(&message))
}

type Check<T> = Result<T, String>;

fn malformed(message: &str) -> String {
    format!("Malformed input request: {message}, please reformat your input and try again.")
}

fn only(object: &Map<String, Value>, allowed: &[&str], path: &str) -> Check<()> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(malformed(&format!(
            "{path}: extraneous key [{key}] is not permitted"
        ))),
        None => Ok(()),
    }
}

fn text<'a>(object: &'a Map<String, Value>, key: &str, path: &str) -> Check<Option<&'a str>> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(text)),
        Some(_) => Err(malformed(&format!(
            "{path}/{key}: expected a non-empty string"
        ))),
    }
}

fn integer(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
    range: (u64, u64),
) -> Check<Option<u64>> {
    match object.get(key) {
        None => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if (range.0..=range.1).contains(&n) => Ok(Some(n)),
            _ => Err(malformed(&format!(
                "{path}/{key}: expected an integer from {} to {}",
                range.0, range.1
            ))),
        },
    }
}

fn number(object: &Map<String, Value>, key: &str, path: &str, range: (f64, f64)) -> Check<()> {
    match object.get(key) {
        None => Ok(()),
        Some(value) => match value.as_f64() {
            Some(n) if (range.0..=range.1).contains(&n) => Ok(()),
            _ => Err(malformed(&format!(
                "{path}/{key}: expected a number from {} to {}",
                range.0, range.1
            ))),
        },
    }
}

/// Titan Image Generator and Nova Canvas: `{"taskType", "textToImageParams",
/// "imageGenerationConfig"}` → `{"images", "error"}`.
fn titan(request: &Map<String, Value>, model: &str, filtered: bool) -> Check<Reply> {
    only(
        request,
        &["taskType", "textToImageParams", "imageGenerationConfig"],
        "#",
    )?;
    match request.get("taskType").and_then(Value::as_str) {
        Some("TEXT_IMAGE") => {}
        Some("INPAINTING" | "OUTPAINTING" | "IMAGE_VARIATION" | "COLOR_GUIDED_GENERATION" | "BACKGROUND_REMOVAL") => {
            return Err(malformed("#/taskType: the mock serves TEXT_IMAGE only"))
        }
        _ => return Err(malformed("#/taskType: TEXT_IMAGE, INPAINTING, OUTPAINTING, IMAGE_VARIATION, COLOR_GUIDED_GENERATION or BACKGROUND_REMOVAL expected")),
    }
    let params = request
        .get("textToImageParams")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("#: required key [textToImageParams] not found"))?;
    only(
        params,
        &["text", "negativeText", "style"],
        "#/textToImageParams",
    )?;
    let prompt = text(params, "text", "#/textToImageParams")?
        .ok_or_else(|| malformed("#/textToImageParams: required key [text] not found"))?;
    if prompt.chars().count() > 1024 {
        return Err(malformed(
            "#/textToImageParams/text: expected maxLength: 1024",
        ));
    }
    if let Some(negative) = text(params, "negativeText", "#/textToImageParams")? {
        if negative.chars().count() < 3 {
            return Err(malformed(
                "#/textToImageParams/negativeText: expected minLength: 3",
            ));
        }
    }
    let empty = Map::new();
    let config = match request.get("imageGenerationConfig") {
        None => &empty,
        Some(Value::Object(config)) => config,
        Some(_) => {
            return Err(malformed(
                "#/imageGenerationConfig: expected type: JSONObject",
            ))
        }
    };
    let path = "#/imageGenerationConfig";
    only(
        config,
        &[
            "numberOfImages",
            "width",
            "height",
            "cfgScale",
            "seed",
            "quality",
        ],
        path,
    )?;
    let n = integer(config, "numberOfImages", path, (1, 5))?.unwrap_or(1);
    let width = integer(config, "width", path, (256, 4096))?;
    let height = integer(config, "height", path, (256, 4096))?;
    if width.is_some() != height.is_some() {
        return Err(malformed(&format!("{path}: width and height go together")));
    }
    number(config, "cfgScale", path, (1.1, 10.0))?;
    let max_seed = if model.contains("nova") {
        858_993_459
    } else {
        2_147_483_646
    };
    integer(config, "seed", path, (0, max_seed))?;
    match config.get("quality") {
        None => {}
        Some(Value::String(q)) if q == "standard" || q == "premium" => {}
        Some(_) => {
            return Err(malformed(&format!(
                "{path}/quality: standard or premium expected"
            )))
        }
    }
    if filtered {
        return Err("This request has been blocked by our content filters. Please adjust your text prompt to submit a new request.".to_owned());
    }
    let images = vec![quote(PNG_B64); usize::try_from(n).unwrap_or(1)].join(",");
    Ok(Reply::ok(format!(
        r#"{{"images":[{images}],"error":null}}"#
    )))
}

/// SD3.x, Stable Image Core and Ultra: `{"prompt", "mode", "aspect_ratio", "output_format",
/// "seed", "negative_prompt"}` → `{"seeds", "finish_reasons", "images"}`.
fn stability(request: &Map<String, Value>, filtered: bool) -> Check<Reply> {
    only(
        request,
        &[
            "prompt",
            "mode",
            "aspect_ratio",
            "output_format",
            "seed",
            "negative_prompt",
            "image",
            "strength",
        ],
        "#",
    )?;
    let prompt = text(request, "prompt", "#")?
        .ok_or_else(|| malformed("#: required key [prompt] not found"))?;
    if prompt.chars().count() > 10_000 {
        return Err(malformed("#/prompt: expected maxLength: 10000"));
    }
    match text(request, "mode", "#")? {
        None | Some("text-to-image") => {}
        Some("image-to-image") => {
            return Err(malformed("#/mode: the mock serves text-to-image only"))
        }
        Some(_) => {
            return Err(malformed(
                "#/mode: text-to-image or image-to-image expected",
            ))
        }
    }
    if request.contains_key("image") || request.contains_key("strength") {
        return Err(malformed("#: image and strength are for image-to-image"));
    }
    if let Some(ratio) = text(request, "aspect_ratio", "#")? {
        if !STABILITY_RATIOS.contains(&ratio) {
            return Err(malformed(&format!(
                "#/aspect_ratio: {ratio} is not a valid enum value ({})",
                STABILITY_RATIOS.join(", ")
            )));
        }
    }
    match text(request, "output_format", "#")? {
        None | Some("png" | "jpeg" | "webp") => {}
        Some(_) => return Err(malformed("#/output_format: png, jpeg or webp expected")),
    }
    let seed = integer(request, "seed", "#", (0, 4_294_967_294))?.unwrap_or(DEFAULT_SEED);
    text(request, "negative_prompt", "#")?;
    let (reason, image) = if filtered {
        (r#""Filter reason: prompt""#, "null".to_owned())
    } else {
        ("null", quote(PNG_B64))
    };
    Ok(Reply::ok(format!(
        r#"{{"seeds":[{seed}],"finish_reasons":[{reason}],"images":[{image}]}}"#
    )))
}

/// SDXL 1.0: `{"text_prompts", "cfg_scale", "seed", "steps", "width", "height",
/// "style_preset", "samples", …}` → `{"result", "artifacts"}`.
fn sdxl(request: &Map<String, Value>, filtered: bool) -> Check<Reply> {
    only(
        request,
        &[
            "text_prompts",
            "cfg_scale",
            "clip_guidance_preset",
            "height",
            "width",
            "sampler",
            "samples",
            "seed",
            "steps",
            "style_preset",
            "extras",
        ],
        "#",
    )?;
    let prompts = request
        .get("text_prompts")
        .and_then(Value::as_array)
        .filter(|prompts| !prompts.is_empty())
        .ok_or_else(|| malformed("#: required key [text_prompts] not found or empty"))?;
    for (i, prompt) in prompts.iter().enumerate() {
        let path = format!("#/text_prompts/{i}");
        let prompt = prompt
            .as_object()
            .ok_or_else(|| malformed(&format!("{path}: expected type: JSONObject")))?;
        only(prompt, &["text", "weight"], &path)?;
        text(prompt, "text", &path)?
            .ok_or_else(|| malformed(&format!("{path}: required key [text] not found")))?;
        if prompt.get("weight").is_some_and(|w| !w.is_number()) {
            return Err(malformed(&format!("{path}/weight: expected type: Number")));
        }
    }
    number(request, "cfg_scale", "#", (0.0, 35.0))?;
    integer(request, "steps", "#", (10, 150))?;
    integer(request, "samples", "#", (1, 1))?;
    let seed = integer(request, "seed", "#", (0, 4_294_967_295))?.unwrap_or(DEFAULT_SEED);
    let width = integer(request, "width", "#", (0, u64::MAX))?;
    let height = integer(request, "height", "#", (0, u64::MAX))?;
    let size = (width.unwrap_or(1024), height.unwrap_or(1024));
    if !SDXL_SIZES.contains(&size) {
        return Err(malformed(&format!(
            "#: {}x{} is not an allowed SDXL size",
            size.0, size.1
        )));
    }
    if let Some(style) = text(request, "style_preset", "#")? {
        if !SDXL_STYLES.contains(&style) {
            return Err(malformed(&format!(
                "#/style_preset: {style} is not a valid enum value"
            )));
        }
    }
    let reason = if filtered {
        "CONTENT_FILTERED"
    } else {
        "SUCCESS"
    };
    Ok(Reply::ok(format!(
        r#"{{"result":"success","artifacts":[{{"seed":{seed},"base64":{},"finishReason":"{reason}"}}]}}"#,
        quote(PNG_B64)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn reply(json: &str, model: &str, filtered: bool) -> (StatusCode, String) {
        let request: Map<String, Value> = serde_json::from_str(json).expect("object");
        assert!(is_image_request(&request));
        match generate(&request, model, filtered) {
            Reply::Json { status, body, .. } => (status, body),
            Reply::Aws { status, body, .. } => (status, body),
            _ => panic!("not a JSON reply"),
        }
    }

    const TITAN: &str = "amazon.titan-image-generator-v2:0";

    #[test]
    fn titan_and_nova() {
        let (status, body) = reply(
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"},"imageGenerationConfig":{"numberOfImages":2,"width":1024,"height":1024,"cfgScale":8,"seed":1,"quality":"premium"}}"#,
            TITAN,
            false,
        );
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["images"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["images"][0], PNG_B64);
        for bad in [
            r#"{"taskType":"INPAINTING","textToImageParams":{"text":"fox"}}"#,
            r#"{"taskType":"TEXT_IMAGE"}"#,
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":""}}"#,
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"},"extra":1}"#,
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"},"imageGenerationConfig":{"numberOfImages":6}}"#,
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"},"imageGenerationConfig":{"numberOfImages":0}}"#,
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"},"imageGenerationConfig":{"quality":"hd"}}"#,
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"},"imageGenerationConfig":{"width":1024}}"#,
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"},"imageGenerationConfig":{"style":"x"}}"#,
        ] {
            let (status, body) = reply(bad, TITAN, false);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
        let (status, _) = reply(
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"},"imageGenerationConfig":{"seed":900000000}}"#,
            "amazon.nova-canvas-v1:0",
            false,
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) = reply(
            r#"{"taskType":"TEXT_IMAGE","textToImageParams":{"text":"fox"}}"#,
            TITAN,
            true,
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("blocked by our content filters"), "{body}");
    }

    #[test]
    fn stability_and_sdxl() {
        let (status, body) = reply(
            r#"{"prompt":"fox","mode":"text-to-image","aspect_ratio":"3:2","output_format":"png","seed":5}"#,
            "stability.sd3-5-large-v1:0",
            false,
        );
        assert_eq!(status, StatusCode::OK);
        let json: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["seeds"][0], 5);
        assert_eq!(json["finish_reasons"][0], Value::Null);
        assert_eq!(json["images"][0], PNG_B64);
        let (_, body) = reply(r#"{"prompt":"fox"}"#, "stability.sd3", true);
        let json: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["finish_reasons"][0], "Filter reason: prompt");
        for bad in [
            r#"{"prompt":"fox","aspect_ratio":"7:4"}"#,
            r#"{"prompt":"fox","n":2}"#,
            r#"{"prompt":""}"#,
            r#"{"prompt":"fox","mode":"image-to-image"}"#,
        ] {
            let (status, _) = reply(bad, "stability.sd3", false);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }

        let (status, body) = reply(
            r#"{"text_prompts":[{"text":"fox","weight":1},{"text":"blurry","weight":-1}],"cfg_scale":7,"seed":3,"width":1024,"height":1024,"style_preset":"anime","samples":1}"#,
            "stability.stable-diffusion-xl-v1",
            false,
        );
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["artifacts"][0]["finishReason"], "SUCCESS");
        assert_eq!(json["artifacts"][0]["seed"], 3);
        let (_, body) = reply(r#"{"text_prompts":[{"text":"fox"}]}"#, "sdxl", true);
        assert!(body.contains("CONTENT_FILTERED"), "{body}");
        for bad in [
            r#"{"text_prompts":[]}"#,
            r#"{"text_prompts":[{"text":"fox"}],"samples":2}"#,
            r#"{"text_prompts":[{"text":"fox"}],"width":1000,"height":1000}"#,
            r#"{"text_prompts":[{"text":"fox"}],"style_preset":"vivid"}"#,
            r#"{"text_prompts":[{"text":"fox"}],"prompt":"x"}"#,
        ] {
            let (status, _) = reply(bad, "sdxl", false);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
