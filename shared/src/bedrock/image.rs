//! Image generation settings of a `bedrock` entry (`model_type: image`): the `bedrock_image_*`
//! metadata keys, checked at config load, and the body format of the model.
//!
//! Bedrock's image models take one of four `InvokeModel` bodies:
//!
//! - `titan` (Amazon Titan Image Generator, `amazon.titan-image-*`) and `nova` (Amazon Nova
//!   Canvas, `amazon.nova-canvas*`): `{"taskType": "TEXT_IMAGE", "textToImageParams",
//!   "imageGenerationConfig"}`, up to 5 images a request;
//! - `stability` (Stable Diffusion 3.x, Stable Image Core and Ultra, other `stability.*`):
//!   `{"prompt", "mode", "aspect_ratio", …}`, one image a request;
//! - `sdxl` (`stability.stable-diffusion-xl*`): `{"text_prompts", "cfg_scale", …}`, one image
//!   a request.
//!
//! The format is `metadata.bedrock_image_format`, else read from the model id (an inference
//! profile's region prefix and an ARN's path are looked through).

use std::collections::BTreeMap;

/// Metadata key: the body format (`titan`, `nova`, `stability`, `sdxl`).
pub const IMAGE_FORMAT_KEY: &str = "bedrock_image_format";
/// Metadata key: Titan / Nova `taskType` (only `TEXT_IMAGE` is served).
pub const IMAGE_TASK_TYPE_KEY: &str = "bedrock_image_task_type";
/// Metadata key: Titan / Nova `quality` (`standard`, `premium`) when the client sends none.
pub const IMAGE_QUALITY_KEY: &str = "bedrock_image_quality";
/// Metadata key: `cfgScale` (Titan, Nova) / `cfg_scale` (SDXL).
pub const IMAGE_CFG_SCALE_KEY: &str = "bedrock_image_cfg_scale";
/// Metadata key: SDXL's `style_preset`.
pub const IMAGE_STYLE_KEY: &str = "bedrock_image_style";
/// Metadata key: the seed of every request.
pub const IMAGE_SEED_KEY: &str = "bedrock_image_seed";
/// Metadata key: the negative prompt of every request.
pub const IMAGE_NEGATIVE_PROMPT_KEY: &str = "bedrock_image_negative_prompt";

/// SDXL's style presets.
pub const SDXL_STYLES: [&str; 17] = [
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

/// The `InvokeModel` body family of an image model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFamily {
    /// Amazon Titan Image Generator (v1, v2).
    Titan,
    /// Amazon Nova Canvas.
    Nova,
    /// Stability AI's Stable Diffusion 3.x, Stable Image Core and Ultra.
    Stability,
    /// Stability AI's Stable Diffusion XL.
    Sdxl,
}

impl ImageFamily {
    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFamily::Titan => "titan",
            ImageFamily::Nova => "nova",
            ImageFamily::Stability => "stability",
            ImageFamily::Sdxl => "sdxl",
        }
    }

    /// The model family's display name, for messages.
    pub fn display(self) -> &'static str {
        match self {
            ImageFamily::Titan => "Amazon Titan Image Generator",
            ImageFamily::Nova => "Amazon Nova Canvas",
            ImageFamily::Stability => "Stability AI",
            ImageFamily::Sdxl => "Stable Diffusion XL",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "titan" => Some(ImageFamily::Titan),
            "nova" => Some(ImageFamily::Nova),
            "stability" => Some(ImageFamily::Stability),
            "sdxl" => Some(ImageFamily::Sdxl),
            _ => None,
        }
    }

    /// The family a model id suggests: `amazon.titan-image-*`, `amazon.nova-canvas*`,
    /// `stability.stable-diffusion-xl*`, other `stability.*`. Inference profile prefixes
    /// (`us.`, `eu.`, …) and ARNs (`…/model-id`) are looked through.
    pub fn for_model(model_id: &str) -> Option<Self> {
        let id = model_id.rsplit('/').next().unwrap_or(model_id);
        let id = match id.split_once('.') {
            Some((prefix, rest))
                if prefix != "amazon"
                    && prefix != "stability"
                    && (2..=6).contains(&prefix.len())
                    && prefix.bytes().all(|b| b.is_ascii_lowercase()) =>
            {
                rest
            }
            _ => id,
        };
        if id.starts_with("amazon.titan-image") {
            Some(ImageFamily::Titan)
        } else if id.starts_with("amazon.nova-canvas") {
            Some(ImageFamily::Nova)
        } else if id.starts_with("stability.stable-diffusion-xl") {
            Some(ImageFamily::Sdxl)
        } else if id.starts_with("stability.") {
            Some(ImageFamily::Stability)
        } else {
            None
        }
    }

    /// Most images one request may ask for.
    pub fn max_images(self) -> u64 {
        match self {
            ImageFamily::Titan | ImageFamily::Nova => 5,
            ImageFamily::Stability | ImageFamily::Sdxl => 1,
        }
    }

    /// The largest seed the family accepts.
    fn max_seed(self) -> u64 {
        match self {
            ImageFamily::Titan => 2_147_483_646,
            ImageFamily::Nova => 858_993_459,
            ImageFamily::Stability => 4_294_967_294,
            ImageFamily::Sdxl => 4_294_967_295,
        }
    }
}

/// Titan / Nova `quality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageQuality {
    /// `standard`.
    Standard,
    /// `premium`.
    Premium,
}

impl ImageQuality {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageQuality::Standard => "standard",
            ImageQuality::Premium => "premium",
        }
    }
}

/// The `bedrock_image_*` settings of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSettings {
    /// `bedrock_image_format` (else read from the model id, see [`ImageSettings::family`]).
    pub format: Option<ImageFamily>,
    /// `bedrock_image_quality`: the default `quality` (Titan, Nova).
    pub quality: Option<ImageQuality>,
    /// `bedrock_image_cfg_scale` (Titan, Nova, SDXL), a positive number as written.
    pub cfg_scale: Option<serde_json::Number>,
    /// `bedrock_image_style`: SDXL's `style_preset`.
    pub style: Option<String>,
    /// `bedrock_image_seed`.
    pub seed: Option<u64>,
    /// `bedrock_image_negative_prompt`.
    pub negative_prompt: Option<String>,
}

impl ImageSettings {
    /// Reads the `bedrock_image_*` keys; `Err` names the bad key.
    pub fn from_metadata(
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, (&'static str, String)> {
        let get = |key: &str| metadata.get(key).map(|value| value.trim());
        let format = match get(IMAGE_FORMAT_KEY) {
            None => None,
            Some(text) => Some(ImageFamily::parse(text).ok_or_else(|| {
                (
                    IMAGE_FORMAT_KEY,
                    format!("`{text}` is not an image body format; use `titan`, `nova`, `stability` or `sdxl`"),
                )
            })?),
        };
        match get(IMAGE_TASK_TYPE_KEY) {
            None | Some("TEXT_IMAGE") => {}
            Some(other) => {
                return Err((
                    IMAGE_TASK_TYPE_KEY,
                    format!("`{other}` is not served: the gateway serves image generation (`TEXT_IMAGE`) only, not edits or variations"),
                ))
            }
        }
        let quality = match get(IMAGE_QUALITY_KEY) {
            None => None,
            Some("standard") => Some(ImageQuality::Standard),
            Some("premium") => Some(ImageQuality::Premium),
            Some(other) => {
                return Err((
                    IMAGE_QUALITY_KEY,
                    format!("`{other}` is not `standard` or `premium`"),
                ))
            }
        };
        let cfg_scale = match get(IMAGE_CFG_SCALE_KEY) {
            None => None,
            Some(text) => {
                let number = text
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n > 0.0)
                    .and_then(|_| serde_json::from_str::<serde_json::Number>(text).ok())
                    .ok_or_else(|| {
                        (
                            IMAGE_CFG_SCALE_KEY,
                            format!("`{text}` is not a positive number such as `8` or `7.5`"),
                        )
                    })?;
                Some(number)
            }
        };
        let style = match get(IMAGE_STYLE_KEY) {
            None => None,
            Some(style) if SDXL_STYLES.contains(&style) => Some(style.to_owned()),
            Some(other) => {
                return Err((
                    IMAGE_STYLE_KEY,
                    format!(
                        "`{other}` is not an SDXL style preset; use one of {}",
                        SDXL_STYLES.join(", ")
                    ),
                ))
            }
        };
        let seed = match get(IMAGE_SEED_KEY) {
            None => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                (
                    IMAGE_SEED_KEY,
                    format!("`{text}` is not a non-negative integer"),
                )
            })?),
        };
        let negative_prompt = match metadata.get(IMAGE_NEGATIVE_PROMPT_KEY) {
            None => None,
            Some(text) if text.trim().is_empty() => {
                return Err((
                    IMAGE_NEGATIVE_PROMPT_KEY,
                    "must not be empty (leave the key out for none)".to_owned(),
                ))
            }
            Some(text) => Some(text.trim().to_owned()),
        };
        Ok(Self {
            format,
            quality,
            cfg_scale,
            style,
            seed,
            negative_prompt,
        })
    }

    /// The body format of `model_id`'s requests, with the keys that do not apply to it
    /// refused; `Err` names the key.
    pub fn family(&self, model_id: &str) -> Result<ImageFamily, (&'static str, String)> {
        let family = match self.format.or_else(|| ImageFamily::for_model(model_id)) {
            Some(family) => family,
            None => {
                return Err((
                    IMAGE_FORMAT_KEY,
                    format!("the model id `{model_id}` does not tell the image body format; set it to `titan`, `nova`, `stability` or `sdxl`"),
                ))
            }
        };
        let name = family.as_str();
        if self.style.is_some() && family != ImageFamily::Sdxl {
            return Err((
                IMAGE_STYLE_KEY,
                format!("style presets are SDXL's (`sdxl`); the `{name}` format has none"),
            ));
        }
        if self.quality.is_some() && !matches!(family, ImageFamily::Titan | ImageFamily::Nova) {
            return Err((
                IMAGE_QUALITY_KEY,
                format!("`quality` is Titan's and Nova Canvas's; the `{name}` format has none"),
            ));
        }
        if let Some(scale) = &self.cfg_scale {
            let value = scale.as_f64().unwrap_or(0.0);
            let range = match family {
                ImageFamily::Titan | ImageFamily::Nova => Some((1.1, 10.0)),
                ImageFamily::Sdxl => Some((0.0, 35.0)),
                ImageFamily::Stability => None,
            };
            match range {
                None => {
                    return Err((
                        IMAGE_CFG_SCALE_KEY,
                        format!("the `{name}` format takes no cfg scale"),
                    ))
                }
                Some((low, high)) if !(low..=high).contains(&value) => {
                    return Err((
                        IMAGE_CFG_SCALE_KEY,
                        format!(
                            "`{scale}` is out of range for the `{name}` format ({low} to {high})"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(seed) = self.seed.filter(|seed| *seed > family.max_seed()) {
            return Err((
                IMAGE_SEED_KEY,
                format!(
                    "`{seed}` is out of range for the `{name}` format (0 to {})",
                    family.max_seed()
                ),
            ));
        }
        Ok(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn families_come_from_the_model_id_or_the_metadata() {
        for (model, family) in [
            ("amazon.titan-image-generator-v2:0", ImageFamily::Titan),
            ("amazon.titan-image-generator-v1", ImageFamily::Titan),
            ("amazon.nova-canvas-v1:0", ImageFamily::Nova),
            ("us.amazon.nova-canvas-v1:0", ImageFamily::Nova),
            ("stability.stable-diffusion-xl-v1", ImageFamily::Sdxl),
            ("stability.sd3-5-large-v1:0", ImageFamily::Stability),
            (
                "us.stability.stable-image-ultra-v1:1",
                ImageFamily::Stability,
            ),
            (
                "arn:aws:bedrock:us-west-2::foundation-model/stability.stable-image-core-v1:1",
                ImageFamily::Stability,
            ),
        ] {
            assert_eq!(ImageFamily::for_model(model), Some(family), "{model}");
        }
        assert_eq!(ImageFamily::for_model("amazon.titan-embed-text-v2:0"), None);
        let settings = ImageSettings::default();
        let (key, message) = settings
            .family("arn:aws:bedrock:x:provisioned-model/abc")
            .unwrap_err();
        assert_eq!(key, IMAGE_FORMAT_KEY);
        assert!(message.contains("titan"), "{message}");
        let settings = ImageSettings::from_metadata(&meta(&[(IMAGE_FORMAT_KEY, "nova")])).unwrap();
        assert_eq!(
            settings.family("my-provisioned-model"),
            Ok(ImageFamily::Nova)
        );
    }

    #[test]
    fn keys_are_read_and_checked() {
        let settings = ImageSettings::from_metadata(&meta(&[
            ("bedrock_image_format", "sdxl"),
            ("bedrock_image_task_type", "TEXT_IMAGE"),
            ("bedrock_image_cfg_scale", "7.5"),
            ("bedrock_image_style", "photographic"),
            ("bedrock_image_seed", "42"),
            ("bedrock_image_negative_prompt", " blurry "),
        ]))
        .unwrap();
        assert_eq!(settings.format, Some(ImageFamily::Sdxl));
        assert_eq!(
            settings
                .cfg_scale
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("7.5")
        );
        assert_eq!(settings.style.as_deref(), Some("photographic"));
        assert_eq!(settings.seed, Some(42));
        assert_eq!(settings.negative_prompt.as_deref(), Some("blurry"));
        assert_eq!(settings.family("x"), Ok(ImageFamily::Sdxl));

        for (key, value, needle) in [
            ("bedrock_image_format", "dalle", "titan"),
            (
                "bedrock_image_task_type",
                "INPAINTING",
                "not edits or variations",
            ),
            ("bedrock_image_task_type", "IMAGE_VARIATION", "TEXT_IMAGE"),
            ("bedrock_image_quality", "hd", "premium"),
            ("bedrock_image_cfg_scale", "-1", "positive number"),
            ("bedrock_image_cfg_scale", "NaN", "positive number"),
            ("bedrock_image_style", "vivid", "photographic"),
            ("bedrock_image_seed", "-3", "integer"),
            ("bedrock_image_negative_prompt", "  ", "empty"),
        ] {
            let (bad, message) = ImageSettings::from_metadata(&meta(&[(key, value)])).unwrap_err();
            assert_eq!(bad, key);
            assert!(message.contains(needle), "{key}: {message}");
        }
    }

    #[test]
    fn keys_that_do_not_apply_to_the_format_are_refused() {
        let family = |pairs: &[(&str, &str)], model: &str| {
            ImageSettings::from_metadata(&meta(pairs))
                .unwrap()
                .family(model)
        };
        let titan = "amazon.titan-image-generator-v2:0";
        let (key, message) = family(&[("bedrock_image_style", "anime")], titan).unwrap_err();
        assert_eq!(key, IMAGE_STYLE_KEY);
        assert!(message.contains("`titan` format has none"), "{message}");
        let (key, _) = family(
            &[("bedrock_image_quality", "premium")],
            "stability.sd3-5-large-v1:0",
        )
        .unwrap_err();
        assert_eq!(key, IMAGE_QUALITY_KEY);
        let (key, _) = family(
            &[("bedrock_image_cfg_scale", "5")],
            "stability.sd3-5-large-v1:0",
        )
        .unwrap_err();
        assert_eq!(key, IMAGE_CFG_SCALE_KEY);
        let (key, message) = family(&[("bedrock_image_cfg_scale", "12")], titan).unwrap_err();
        assert_eq!(key, IMAGE_CFG_SCALE_KEY);
        assert!(message.contains("1.1 to 10"), "{message}");
        let (key, _) = family(
            &[("bedrock_image_seed", "900000000")],
            "amazon.nova-canvas-v1:0",
        )
        .unwrap_err();
        assert_eq!(key, IMAGE_SEED_KEY);
        assert_eq!(
            family(
                &[
                    ("bedrock_image_quality", "premium"),
                    ("bedrock_image_cfg_scale", "8")
                ],
                titan
            ),
            Ok(ImageFamily::Titan)
        );
        assert_eq!(
            family(
                &[("bedrock_image_cfg_scale", "30")],
                "stability.stable-diffusion-xl-v1"
            ),
            Ok(ImageFamily::Sdxl)
        );
    }
}
