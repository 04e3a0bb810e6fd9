//! Image generation answers in OpenAI's shape (`POST /v1/images/generations`), shared by the
//! adapters: reading an OpenAI-format answer (usage and the number of images billed), and
//! writing one from the images a translating provider returned.
//!
//! Images are billed per image returned (the deployment's `price_per_image`), plus the
//! tokens the provider reports (`gpt-image-1` reports input and output tokens).

use serde::{Deserialize, Serialize};

use super::{Answer, Usage};
use crate::error::ApiError;
use crate::request::{ImageFormat, RequestBody};
use omg_shared::error::ErrorCode;

/// An OpenAI-format image answer, passed through unchanged: the images in `data` are
/// counted, and `usage` (`input_tokens`, `output_tokens`) read when present.
pub(crate) fn pass_through(body: &[u8]) -> Result<Answer, ApiError> {
    #[derive(Deserialize)]
    struct Probe {
        data: Vec<serde::de::IgnoredAny>,
        #[serde(default)]
        usage: Option<ImageUsage>,
    }
    #[derive(Deserialize, Default)]
    struct ImageUsage {
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
        #[serde(default)]
        input_tokens_details: Option<Details>,
    }
    #[derive(Deserialize, Default)]
    struct Details {
        #[serde(default)]
        cached_tokens: u64,
    }
    let probe = serde_json::from_slice::<Probe>(body).map_err(|_| {
        ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream answered an image request with a body that is not an image list.",
        )
    })?;
    let usage = probe.usage.unwrap_or_default();
    Ok(Answer {
        body: body.to_vec(),
        usage: Some(Usage {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            cached_tokens: usage.input_tokens_details.map_or(0, |d| d.cached_tokens),
            cache_write_tokens: 0,
            images: probe.data.len() as u64,
        }),
    })
}

/// One generated image, base64-encoded.
pub(crate) struct Generated<'a> {
    /// The image bytes, base64 (standard alphabet, padded), as the provider sent them.
    pub b64: &'a str,
    /// The media type, e.g. `image/png` (for `url` answers, which are `data:` URLs).
    pub media_type: &'a str,
    /// The prompt the provider actually used, when it rewrote it.
    pub revised_prompt: Option<&'a str>,
}

#[derive(Serialize)]
struct ImagesOut<'a> {
    created: i64,
    data: Vec<ImageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_format: Option<&'a str>,
}

#[derive(Serialize)]
struct ImageOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    b64_json: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revised_prompt: Option<&'a str>,
}

/// The OpenAI answer for images a translating provider returned as bytes: `b64_json` items,
/// or `data:` URLs when the client asked for `response_format: "url"`. The usage carries
/// the image count; the provider reports no tokens.
pub(crate) fn answer(
    created: i64,
    format: Option<ImageFormat>,
    images: &[Generated<'_>],
) -> Answer {
    let as_url = format == Some(ImageFormat::Url);
    let data = images
        .iter()
        .map(|image| ImageOut {
            b64_json: (!as_url).then_some(image.b64),
            url: as_url.then(|| format!("data:{};base64,{}", image.media_type, image.b64)),
            revised_prompt: image.revised_prompt,
        })
        .collect();
    let output_format = images
        .first()
        .and_then(|image| image.media_type.strip_prefix("image/"));
    let body = serde_json::to_vec(&ImagesOut {
        created,
        data,
        output_format,
    })
    .unwrap_or_default();
    Answer {
        body,
        usage: Some(Usage {
            images: images.len() as u64,
            ..Usage::default()
        }),
    }
}

/// The client's prompt (checked non-empty by [`RequestBody::parse`]).
pub(crate) fn prompt(body: &RequestBody<'_>) -> String {
    body.raw("prompt")
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .unwrap_or_default()
}

/// A string parameter of the client's body, if present and a string.
pub(crate) fn string_param(body: &RequestBody<'_>, name: &str) -> Option<String> {
    body.raw(name)
        .and_then(|raw| serde_json::from_str::<Option<String>>(raw.get()).ok())
        .flatten()
}

/// The error of a 200 answer that holds no image (every one filtered by the provider).
pub(crate) fn all_filtered(provider: &str, reason: Option<&str>) -> ApiError {
    ApiError::new(
        ErrorCode::ContentFilter,
        match reason {
            Some(reason) => format!(
                "{provider} generated no image: its safety filters blocked the request ({reason}). Rephrase the prompt."
            ),
            None => format!(
                "{provider} generated no image: its safety filters blocked the request. Rephrase the prompt."
            ),
        },
    )
    .with_param("prompt")
}

/// The aspect ratio the client's `size` (`<width>x<height>`) has exactly, among `allowed`
/// (`"16:9"`, …): `None` without a size (or `auto`), a 400 naming `size` and listing
/// `allowed` when it has none of them.
pub(crate) fn aspect_ratio(
    body: &RequestBody<'_>,
    allowed: &[&'static str],
    model: &str,
) -> Result<Option<&'static str>, ApiError> {
    let Some((width, height)) = body.image_size()? else {
        return Ok(None);
    };
    let (mut a, mut b) = (width, height);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let ratio = format!("{}:{}", width / a, height / a);
    allowed
        .iter()
        .find(|known| **known == ratio)
        .copied()
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "This model ({model}) generates images in aspect ratios {} only; `size` {width}x{height} is {ratio}: send a size with one of them, e.g. `1024x1024`",
                    allowed.join(", ")
                ),
            )
            .with_param("size")
        })
}

/// Refuses an `output_format` other than `png`: translating adapters ask for PNG.
pub(crate) fn png_only(body: &RequestBody<'_>, model: &str) -> Result<(), ApiError> {
    match string_param(body, "output_format").as_deref() {
        None | Some("png") => Ok(()),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("This model ({model}) answers PNG images only: send `output_format: \"png\"` or leave it out"),
        )
        .with_param("output_format")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_counts_images_and_reads_token_usage() {
        let body = br#"{"created":1,"data":[{"b64_json":"aGk="},{"b64_json":"aGk="}],
            "usage":{"input_tokens":12,"output_tokens":4160,"total_tokens":4172,
                     "input_tokens_details":{"text_tokens":12,"image_tokens":0}}}"#;
        let answer = pass_through(body).expect("an image list");
        assert_eq!(answer.body, body.to_vec());
        assert_eq!(
            answer.usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 4160,
                cached_tokens: 0,
                cache_write_tokens: 0,
                images: 2,
            })
        );
        let dall_e = pass_through(br#"{"created":1,"data":[{"url":"https://x/y.png"}]}"#)
            .expect("an image list");
        assert_eq!(dall_e.usage.map(|u| u.images), Some(1));
        for bad in [&b"{}"[..], b"[]", b"not json", b"{\"data\":3}"] {
            assert_eq!(
                pass_through(bad).map(|_| ()).map_err(|e| e.code),
                Err(ErrorCode::UpstreamError)
            );
        }
    }

    fn body(json: &str) -> RequestBody<'_> {
        RequestBody::parse(json.as_bytes(), &crate::request::Route::ImagesGenerations)
            .expect("a valid image body")
    }

    #[test]
    fn sizes_map_to_exact_aspect_ratios_or_are_refused() {
        let allowed = ["1:1", "16:9", "2:3"];
        let ratio = |json: &str| aspect_ratio(&body(json), &allowed, "Test");
        assert_eq!(ratio(r#"{"model":"m","prompt":"p"}"#).ok(), Some(None));
        assert_eq!(
            ratio(r#"{"model":"m","prompt":"p","size":"auto"}"#).ok(),
            Some(None)
        );
        assert_eq!(
            ratio(r#"{"model":"m","prompt":"p","size":"1024x1024"}"#).ok(),
            Some(Some("1:1"))
        );
        assert_eq!(
            ratio(r#"{"model":"m","prompt":"p","size":"1920x1080"}"#).ok(),
            Some(Some("16:9"))
        );
        assert_eq!(
            ratio(r#"{"model":"m","prompt":"p","size":"1024x1536"}"#).ok(),
            Some(Some("2:3"))
        );
        let error = ratio(r#"{"model":"m","prompt":"p","size":"1792x1024"}"#).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidParameter);
        assert_eq!(error.param, Some("size"));
        assert!(
            error.message.contains("1:1, 16:9, 2:3") && error.message.contains("7:4"),
            "{}",
            error.message
        );
        assert!(png_only(&body(r#"{"model":"m","prompt":"p"}"#), "Test").is_ok());
        assert!(png_only(
            &body(r#"{"model":"m","prompt":"p","output_format":"png"}"#),
            "Test"
        )
        .is_ok());
        let error = png_only(
            &body(r#"{"model":"m","prompt":"p","output_format":"jpeg"}"#),
            "Test",
        )
        .unwrap_err();
        assert_eq!(error.param, Some("output_format"));
    }

    #[test]
    fn translated_answers_are_b64_or_data_urls() {
        let images = [Generated {
            b64: "iVBORw0KGgo=",
            media_type: "image/png",
            revised_prompt: None,
        }];
        let b64 = answer(7, None, &images);
        let json: serde_json::Value = serde_json::from_slice(&b64.body).expect("json");
        assert_eq!(json["created"], 7);
        assert_eq!(json["data"][0]["b64_json"], "iVBORw0KGgo=");
        assert_eq!(json["output_format"], "png");
        assert_eq!(b64.usage.map(|u| u.images), Some(1));
        let url = answer(7, Some(ImageFormat::Url), &images);
        let json: serde_json::Value = serde_json::from_slice(&url.body).expect("json");
        assert_eq!(json["data"][0]["url"], "data:image/png;base64,iVBORw0KGgo=");
        assert!(json["data"][0].get("b64_json").is_none());
    }
}
