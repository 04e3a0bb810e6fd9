//! Imagen settings of a `vertex` entry (`model_type: image`): the `vertex_image_*` metadata
//! keys, checked at config load. Each becomes a `parameters` field of every `:predict`
//! request; the Gemini API takes neither a negative prompt, nor a seed, nor the watermark
//! switch (Vertex AI only), so those keys are refused with `vertex_api: gemini`.

use std::collections::BTreeMap;

use super::VertexApi;

/// Metadata key: `negativePrompt` (Vertex AI).
pub const IMAGE_NEGATIVE_PROMPT_KEY: &str = "vertex_image_negative_prompt";
/// Metadata key: `seed` (Vertex AI; needs `addWatermark: false`, set with it).
pub const IMAGE_SEED_KEY: &str = "vertex_image_seed";
/// Metadata key: `personGeneration`.
pub const IMAGE_PERSON_GENERATION_KEY: &str = "vertex_image_person_generation";
/// Metadata key: `safetySetting`.
pub const IMAGE_SAFETY_SETTING_KEY: &str = "vertex_image_safety_setting";
/// Metadata key: `addWatermark` (Vertex AI).
pub const IMAGE_ADD_WATERMARK_KEY: &str = "vertex_image_add_watermark";

/// `personGeneration` values.
pub const PERSON_GENERATION: [&str; 3] = ["dont_allow", "allow_adult", "allow_all"];
/// `safetySetting` values.
pub const SAFETY_SETTINGS: [&str; 4] = [
    "block_low_and_above",
    "block_medium_and_above",
    "block_only_high",
    "block_none",
];

/// The `vertex_image_*` settings of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSettings {
    /// `negativePrompt`.
    pub negative_prompt: Option<String>,
    /// `seed`.
    pub seed: Option<u32>,
    /// `personGeneration`.
    pub person_generation: Option<&'static str>,
    /// `safetySetting`.
    pub safety_setting: Option<&'static str>,
    /// `addWatermark`: the configured value, else `false` when a seed is configured (Imagen
    /// takes a seed only without the watermark).
    pub add_watermark: Option<bool>,
}

impl ImageSettings {
    /// Reads the `vertex_image_*` keys for `api`; `Err` names the key (its config path
    /// below the entry).
    pub fn from_metadata(
        metadata: &BTreeMap<String, String>,
        api: VertexApi,
    ) -> Result<Self, (&'static str, String)> {
        let get = |key: &str| metadata.get(key).map(|value| value.trim());
        let one_of = |key: &'static str,
                      allowed: &'static [&'static str]|
         -> Result<Option<&'static str>, (&'static str, String)> {
            match get(key) {
                None => Ok(None),
                Some(value) => allowed
                    .iter()
                    .find(|known| **known == value)
                    .copied()
                    .map(Some)
                    .ok_or_else(|| {
                        (
                            path(key),
                            format!("`{value}` is not one of {}", allowed.join(", ")),
                        )
                    }),
            }
        };
        let negative_prompt = match get(IMAGE_NEGATIVE_PROMPT_KEY) {
            None => None,
            Some("") => {
                return Err((
                    path(IMAGE_NEGATIVE_PROMPT_KEY),
                    "must not be empty (leave the key out for none)".to_owned(),
                ))
            }
            Some(text) => Some(text.to_owned()),
        };
        let seed = match get(IMAGE_SEED_KEY) {
            None => None,
            Some(text) => Some(text.parse::<u32>().map_err(|_| {
                (
                    path(IMAGE_SEED_KEY),
                    format!("`{text}` is not an integer from 0 to 4294967295"),
                )
            })?),
        };
        let add_watermark = match get(IMAGE_ADD_WATERMARK_KEY) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err((
                    path(IMAGE_ADD_WATERMARK_KEY),
                    format!("`{other}` is not `true` or `false`"),
                ))
            }
        };
        if seed.is_some() && add_watermark == Some(true) {
            return Err((
                path(IMAGE_SEED_KEY),
                "Imagen takes a seed only without the watermark: set `vertex_image_add_watermark: \"false\"` (or leave it out) with a seed".to_owned(),
            ));
        }
        if api == VertexApi::Gemini {
            for (key, present) in [
                (IMAGE_NEGATIVE_PROMPT_KEY, negative_prompt.is_some()),
                (IMAGE_SEED_KEY, seed.is_some()),
                (IMAGE_ADD_WATERMARK_KEY, add_watermark.is_some()),
            ] {
                if present {
                    return Err((
                        path(key),
                        "the Gemini API does not take it (Vertex AI only): remove it or use `vertex_api: vertex`".to_owned(),
                    ));
                }
            }
        }
        Ok(Self {
            negative_prompt,
            person_generation: one_of(IMAGE_PERSON_GENERATION_KEY, &PERSON_GENERATION)?,
            safety_setting: one_of(IMAGE_SAFETY_SETTING_KEY, &SAFETY_SETTINGS)?,
            add_watermark: add_watermark.or(seed.map(|_| false)),
            seed,
        })
    }
}

/// The config path of a key below its entry.
fn path(key: &'static str) -> &'static str {
    match key {
        IMAGE_NEGATIVE_PROMPT_KEY => "metadata.vertex_image_negative_prompt",
        IMAGE_SEED_KEY => "metadata.vertex_image_seed",
        IMAGE_PERSON_GENERATION_KEY => "metadata.vertex_image_person_generation",
        IMAGE_SAFETY_SETTING_KEY => "metadata.vertex_image_safety_setting",
        IMAGE_ADD_WATERMARK_KEY => "metadata.vertex_image_add_watermark",
        _ => "metadata",
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
    fn keys_are_read_and_a_seed_turns_the_watermark_off() {
        let settings = ImageSettings::from_metadata(
            &meta(&[
                ("vertex_image_negative_prompt", "blurry"),
                ("vertex_image_seed", "42"),
                ("vertex_image_person_generation", "allow_adult"),
                ("vertex_image_safety_setting", "block_only_high"),
            ]),
            VertexApi::Vertex,
        )
        .unwrap();
        assert_eq!(
            settings,
            ImageSettings {
                negative_prompt: Some("blurry".to_owned()),
                seed: Some(42),
                person_generation: Some("allow_adult"),
                safety_setting: Some("block_only_high"),
                add_watermark: Some(false),
            }
        );
        let settings = ImageSettings::from_metadata(
            &meta(&[("vertex_image_add_watermark", "true")]),
            VertexApi::Vertex,
        )
        .unwrap();
        assert_eq!(settings.add_watermark, Some(true));
        assert_eq!(
            ImageSettings::from_metadata(&BTreeMap::new(), VertexApi::Gemini),
            Ok(ImageSettings::default())
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (pairs, api, key, needle) in [
            (
                &[("vertex_image_seed", "-1")][..],
                VertexApi::Vertex,
                "metadata.vertex_image_seed",
                "integer",
            ),
            (
                &[
                    ("vertex_image_seed", "5"),
                    ("vertex_image_add_watermark", "true"),
                ][..],
                VertexApi::Vertex,
                "metadata.vertex_image_seed",
                "without the watermark",
            ),
            (
                &[("vertex_image_person_generation", "everyone")][..],
                VertexApi::Vertex,
                "metadata.vertex_image_person_generation",
                "allow_adult",
            ),
            (
                &[("vertex_image_safety_setting", "block_most")][..],
                VertexApi::Vertex,
                "metadata.vertex_image_safety_setting",
                "block_none",
            ),
            (
                &[("vertex_image_add_watermark", "yes")][..],
                VertexApi::Vertex,
                "metadata.vertex_image_add_watermark",
                "`true` or `false`",
            ),
            (
                &[("vertex_image_negative_prompt", " ")][..],
                VertexApi::Vertex,
                "metadata.vertex_image_negative_prompt",
                "empty",
            ),
            (
                &[("vertex_image_negative_prompt", "blurry")][..],
                VertexApi::Gemini,
                "metadata.vertex_image_negative_prompt",
                "Vertex AI only",
            ),
            (
                &[("vertex_image_seed", "1")][..],
                VertexApi::Gemini,
                "metadata.vertex_image_seed",
                "Gemini API",
            ),
        ] {
            let (bad, message) = ImageSettings::from_metadata(&meta(pairs), api).unwrap_err();
            assert_eq!(bad, key, "{pairs:?}");
            assert!(message.contains(needle), "{pairs:?}: {message}");
        }
    }
}
