//! Image generation through `InvokeModel` (`POST /model/{modelId}/invoke`), in the body format
//! of the model's family ([`ImageFamily`], from `metadata.bedrock_image_format` or the model
//! id):
//!
//! - `titan` / `nova`: `{"taskType": "TEXT_IMAGE", "textToImageParams": {"text",
//!   "negativeText"?}, "imageGenerationConfig": {"numberOfImages", "width"?, "height"?,
//!   "cfgScale"?, "seed"?, "quality"}}` → `{"images": ["<base64>", …], "error": null}`;
//!   `n` up to 5, `size` as `width` / `height`, `quality` `hd` / `high` → `premium`, the
//!   other OpenAI values → `standard` (default `metadata.bedrock_image_quality`).
//! - `stability`: `{"prompt", "mode": "text-to-image", "aspect_ratio"?, "output_format":
//!   "png", "seed"?, "negative_prompt"?}` → `{"seeds", "finish_reasons", "images"}`; one
//!   image per request, `size` as its exact aspect ratio.
//! - `sdxl`: `{"text_prompts": [{"text", "weight": 1}, {negative, "weight": -1}?],
//!   "cfg_scale"?, "seed"?, "width"?, "height"?, "style_preset"?, "samples": 1}` →
//!   `{"result", "artifacts": [{"seed", "base64", "finishReason"}]}`; one image per request.
//!
//! The seed, cfg scale, style and negative prompt come from the entry's `bedrock_image_*`
//! metadata (OpenAI's API has none of them). Answers are read by their shape, whatever the
//! family: images the provider filtered are left out; when every one was, the client gets a
//! 400 `content_filter`.

use std::borrow::Cow;

use omg_shared::bedrock::{ImageFamily, ImageQuality, ImageSettings};
use omg_shared::error::ErrorCode;
use serde::{Deserialize, Serialize};

use super::PROVIDER;
use crate::error::ApiError;
use crate::providers::images::{self, Generated};
use crate::providers::Answer;
use crate::request::{ImageFormat, RequestBody};

/// Aspect ratios of Stability AI's Bedrock models.
pub const STABILITY_ASPECT_RATIOS: [&str; 9] = [
    "1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21",
];

/// The `InvokeModel` body of an image generation request for `model_id`.
pub fn build_image(
    body: &RequestBody<'_>,
    settings: &ImageSettings,
    model_id: &str,
) -> Result<Vec<u8>, ApiError> {
    let family = settings.family(model_id).map_err(|(key, message)| {
        tracing::error!(%model_id, key, %message, "a Bedrock image deployment is misconfigured");
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway's Bedrock image deployment is misconfigured; the operator is told.",
        )
    })?;
    let model = format!("Bedrock, {}", family.display());
    check_count(body, family, &model)?;
    images::png_only(body, &model)?;
    let prompt = images::prompt(body);
    let negative = settings.negative_prompt.as_deref();
    let json = match family {
        ImageFamily::Titan | ImageFamily::Nova => {
            let (width, height) = body.image_size()?.unzip();
            serde_json::to_vec(&TitanRequest {
                task_type: "TEXT_IMAGE",
                text_to_image_params: TextToImage {
                    text: &prompt,
                    negative_text: negative,
                },
                image_generation_config: GenerationConfig {
                    number_of_images: body.images,
                    width,
                    height,
                    cfg_scale: settings.cfg_scale.as_ref(),
                    seed: settings.seed,
                    quality: quality(body, settings.quality)?.as_str(),
                },
            })
        }
        ImageFamily::Stability => serde_json::to_vec(&StabilityRequest {
            prompt: &prompt,
            mode: "text-to-image",
            aspect_ratio: images::aspect_ratio(body, &STABILITY_ASPECT_RATIOS, &model)?,
            output_format: "png",
            seed: settings.seed,
            negative_prompt: negative,
        }),
        ImageFamily::Sdxl => {
            let (width, height) = body.image_size()?.unzip();
            let mut text_prompts = vec![TextPrompt {
                text: &prompt,
                weight: 1,
            }];
            if let Some(text) = negative {
                text_prompts.push(TextPrompt { text, weight: -1 });
            }
            serde_json::to_vec(&SdxlRequest {
                text_prompts,
                cfg_scale: settings.cfg_scale.as_ref(),
                seed: settings.seed,
                width,
                height,
                style_preset: settings.style.as_deref(),
                samples: 1,
            })
        }
    };
    json.map_err(|_| {
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway failed to build the upstream request.",
        )
    })
}

/// Refuses an `n` above what `family` generates per request (`model` names it in messages).
fn check_count(body: &RequestBody<'_>, family: ImageFamily, model: &str) -> Result<(), ApiError> {
    if body.images <= family.max_images() {
        return Ok(());
    }
    let message = if family.max_images() == 1 {
        format!("This model ({model}) generates one image per request: send `n: 1` (or one request per image)")
    } else {
        format!(
            "This model ({model}) generates at most {} images per request: send `n` from 1 to {}",
            family.max_images(),
            family.max_images()
        )
    };
    Err(invalid("n", message))
}

/// Titan / Nova `quality`: the client's OpenAI `quality` (`hd` / `high` → `premium`;
/// `standard`, `low`, `medium`, `auto` → `standard`), else the entry's, else `standard`.
fn quality(
    body: &RequestBody<'_>,
    default: Option<ImageQuality>,
) -> Result<ImageQuality, ApiError> {
    match images::string_param(body, "quality").as_deref() {
        None => Ok(default.unwrap_or(ImageQuality::Standard)),
        Some("hd" | "high") => Ok(ImageQuality::Premium),
        Some("standard" | "low" | "medium" | "auto") => Ok(ImageQuality::Standard),
        Some(_) => Err(invalid(
            "quality",
            "`quality` must be `standard`, `hd`, `low`, `medium`, `high` or `auto`".to_owned(),
        )),
    }
}

fn invalid(param: &'static str, message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message).with_param(param)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest<'a> {
    task_type: &'static str,
    text_to_image_params: TextToImage<'a>,
    image_generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TextToImage<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_text: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    number_of_images: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cfg_scale: Option<&'a serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    quality: &'static str,
}

#[derive(Serialize)]
struct StabilityRequest<'a> {
    prompt: &'a str,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'static str>,
    output_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<&'a str>,
}

#[derive(Serialize)]
struct SdxlRequest<'a> {
    text_prompts: Vec<TextPrompt<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cfg_scale: Option<&'a serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    style_preset: Option<&'a str>,
    samples: u32,
}

#[derive(Serialize)]
struct TextPrompt<'a> {
    text: &'a str,
    weight: i8,
}

// --- answers ---------------------------------------------------------------------------

/// Any family's answer: `images` (+ `error`: Titan, Nova; + `finish_reasons`: Stability) or
/// `artifacts` (SDXL).
#[derive(Deserialize)]
struct InvokeOut<'a> {
    #[serde(borrow, default)]
    images: Option<Vec<Option<Cow<'a, str>>>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    finish_reasons: Option<Vec<Option<Cow<'a, str>>>>,
    #[serde(borrow, default)]
    artifacts: Option<Vec<Artifact<'a>>>,
}

#[derive(Deserialize)]
struct Artifact<'a> {
    #[serde(borrow, default)]
    base64: Option<Cow<'a, str>>,
    #[serde(rename = "finishReason", borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

/// What became of each image the model was asked for.
enum Outcome<'a> {
    Image(Cow<'a, str>),
    Filtered(Cow<'a, str>),
    Failed,
}

/// Translates an image answer of any family into OpenAI's (`created`, the client's
/// `response_format`).
pub fn translate_image(
    body: &[u8],
    created: i64,
    format: Option<ImageFormat>,
) -> Result<Answer, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream answered an image request with a body that is not an image answer.",
        )
    };
    let out: InvokeOut<'_> = serde_json::from_slice(body).map_err(|_| bad())?;
    let outcomes: Vec<Outcome<'_>> = if let Some(artifacts) = out.artifacts {
        artifacts
            .into_iter()
            .map(
                |artifact| match (artifact.finish_reason.as_deref(), artifact.base64) {
                    (None | Some("SUCCESS"), Some(b64)) => Outcome::Image(b64),
                    (Some("CONTENT_FILTERED"), _) => {
                        Outcome::Filtered(Cow::Borrowed("CONTENT_FILTERED"))
                    }
                    _ => Outcome::Failed,
                },
            )
            .collect()
    } else if let Some(mut images) = out.images {
        // Stability: one finish reason per image (a filtered one may come without its image).
        let mut reasons = out.finish_reasons.unwrap_or_default();
        let count = images.len().max(reasons.len());
        images.resize(count, None);
        reasons.resize(count, None);
        let mut outcomes: Vec<Outcome<'_>> = images
            .into_iter()
            .zip(reasons)
            .map(|(b64, reason)| match (reason, b64) {
                (Some(reason), _) if reason.to_ascii_lowercase().starts_with("filter") => {
                    Outcome::Filtered(reason)
                }
                (None, Some(b64)) => Outcome::Image(b64),
                _ => Outcome::Failed,
            })
            .collect();
        if outcomes.is_empty() {
            // Titan / Nova: no image, and the moderation message in `error`.
            if let Some(error) = out.error.filter(|e| !e.is_empty()) {
                outcomes.push(Outcome::Filtered(error));
            }
        }
        outcomes
    } else {
        return Err(bad());
    };
    let mut generated = Vec::with_capacity(outcomes.len());
    let mut filtered = None;
    for outcome in &outcomes {
        match outcome {
            Outcome::Image(b64) if !b64.is_empty() => generated.push(Generated {
                b64,
                media_type: media_type(b64),
                revised_prompt: None,
            }),
            Outcome::Filtered(reason) => filtered = filtered.or(Some(reason.as_ref())),
            Outcome::Image(_) | Outcome::Failed => {}
        }
    }
    if generated.is_empty() {
        return Err(match filtered {
            Some(reason) => images::all_filtered(PROVIDER, Some(&clean(reason))),
            None => ApiError::new(
                ErrorCode::UpstreamError,
                "The upstream model generated no image.",
            ),
        });
    }
    Ok(images::answer(created, format, &generated))
}

/// The media type of base64 image bytes, by their signature (PNG unless JPEG or WebP).
fn media_type(b64: &str) -> &'static str {
    if b64.starts_with("/9j/") {
        "image/jpeg"
    } else if b64.starts_with("UklGR") {
        "image/webp"
    } else {
        "image/png"
    }
}

/// A provider's reason, as one short line.
fn clean(reason: &str) -> String {
    let line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::error::truncate(line.trim(), 200)
}

#[cfg(test)]
#[path = "tests/image.rs"]
mod tests;
