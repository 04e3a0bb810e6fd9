//! Image generation with Imagen through `:predict` (Vertex AI, and the Gemini API's
//! `/v1beta/models/{model}:predict`):
//!
//! `{"instances": [{"prompt"}], "parameters": {"sampleCount": n, "aspectRatio"?,
//! "negativePrompt"?, "seed"?, "addWatermark"?, "personGeneration"?, "safetySetting"?,
//! "includeRaiReason": true, "outputOptions": {"mimeType": "image/png"}}}` →
//! `{"predictions": [{"bytesBase64Encoded", "mimeType"} | {"raiFilteredReason"}]}`.
//!
//! `n` up to 4 (Imagen's limit), `size` as its exact aspect ratio among Imagen's; the other
//! parameters come from the entry's `vertex_image_*` metadata. Filtered images are left out;
//! when every one was, the client gets a 400 `content_filter` with Google's reason.

use std::borrow::Cow;

use omg_shared::error::ErrorCode;
use omg_shared::snapshot::Deployment;
use omg_shared::vertex::image::ImageSettings;
use omg_shared::vertex::VertexApi;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::providers::images::{self, Generated};
use crate::providers::Answer;
use crate::request::{ImageFormat, RequestBody};

/// Imagen's aspect ratios.
pub const IMAGEN_ASPECT_RATIOS: [&str; 5] = ["1:1", "3:4", "4:3", "9:16", "16:9"];
/// Most images one Imagen request makes.
pub const MAX_IMAGES: u64 = 4;

const MODEL: &str = "Google, Imagen";

/// The `:predict` body of an image generation request to `deployment` (its `vertex_image_*`
/// settings, checked when the snapshot was built).
pub fn imagen_request(
    body: &RequestBody<'_>,
    deployment: &Deployment,
    api: VertexApi,
) -> Result<Vec<u8>, ApiError> {
    let settings = ImageSettings::from_metadata(&deployment.metadata, api).map_err(|(key, message)| {
        tracing::error!(deployment = %deployment.id, key, %message, "an Imagen deployment is misconfigured");
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway's Imagen deployment is misconfigured; the operator is told.",
        )
    })?;
    build_imagen(body, &settings)
}

/// The `:predict` body of an image generation request with `settings`.
pub fn build_imagen(body: &RequestBody<'_>, settings: &ImageSettings) -> Result<Vec<u8>, ApiError> {
    if body.images > MAX_IMAGES {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("This model ({MODEL}) generates at most {MAX_IMAGES} images per request: send `n` from 1 to {MAX_IMAGES}"),
        )
        .with_param("n"));
    }
    images::png_only(body, MODEL)?;
    let prompt = images::prompt(body);
    let predict = Predict {
        instances: [Instance { prompt: &prompt }],
        parameters: Parameters {
            sample_count: body.images,
            aspect_ratio: images::aspect_ratio(body, &IMAGEN_ASPECT_RATIOS, MODEL)?,
            negative_prompt: settings.negative_prompt.as_deref(),
            seed: settings.seed,
            add_watermark: settings.add_watermark,
            person_generation: settings.person_generation,
            safety_setting: settings.safety_setting,
            include_rai_reason: true,
            output_options: OutputOptions {
                mime_type: "image/png",
            },
        },
    };
    serde_json::to_vec(&predict).map_err(|_| {
        ApiError::new(
            ErrorCode::InternalError,
            "The gateway failed to build the upstream request.",
        )
    })
}

#[derive(Serialize)]
struct Predict<'a> {
    instances: [Instance<'a>; 1],
    parameters: Parameters<'a>,
}

#[derive(Serialize)]
struct Instance<'a> {
    prompt: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Parameters<'a> {
    sample_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    add_watermark: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    person_generation: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_setting: Option<&'static str>,
    include_rai_reason: bool,
    output_options: OutputOptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutputOptions {
    mime_type: &'static str,
}

#[derive(Deserialize)]
struct PredictOut<'a> {
    #[serde(borrow, default)]
    predictions: Vec<Prediction<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prediction<'a> {
    #[serde(borrow, default)]
    bytes_base64_encoded: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    mime_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    rai_filtered_reason: Option<Cow<'a, str>>,
}

/// Translates a `:predict` answer into OpenAI's (`created`, the client's `response_format`).
/// An answer without predictions is every image filtered (what Imagen sends when it gives
/// no reason).
pub fn translate_imagen(
    body: &[u8],
    created: i64,
    format: Option<ImageFormat>,
) -> Result<Answer, ApiError> {
    let out: PredictOut<'_> = serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream answered an image request with a body that is not an Imagen answer.",
        )
    })?;
    let generated: Vec<Generated<'_>> = out
        .predictions
        .iter()
        .filter_map(|prediction| {
            let b64 = prediction.bytes_base64_encoded.as_deref()?;
            (!b64.is_empty()).then_some(Generated {
                b64,
                media_type: match prediction.mime_type.as_deref() {
                    Some("image/jpeg") => "image/jpeg",
                    Some("image/webp") => "image/webp",
                    _ => "image/png",
                },
                revised_prompt: None,
            })
        })
        .collect();
    if generated.is_empty() {
        let reason = out
            .predictions
            .iter()
            .find_map(|p| p.rai_filtered_reason.as_deref())
            .map(|reason| {
                let line: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                crate::error::truncate(line.trim(), 300)
            });
        return Err(images::all_filtered("Imagen", reason.as_deref()));
    }
    Ok(images::answer(created, format, &generated))
}

#[cfg(test)]
#[path = "tests/image.rs"]
mod tests;
