//! Money as integer micro-USD, and token prices.
//!
//! Floats never hold money. Config prices are USD per 1K tokens (the seeds' convention);
//! they are converted once, at load, to integer nano-USD per 1K tokens so that prices as
//! small as $0.000001 per 1K tokens stay exact, and a request's cost is computed with one
//! rounding (up, so the gateway never under-bills) to whole micro-USD.

use serde::{Deserialize, Serialize};

/// Micro-USD: 1 USD = 1,000,000.
pub type MicroUsd = i64;

/// Micro-USD per USD.
pub const MICROS_PER_USD: i64 = 1_000_000;

/// Largest accepted price: $10,000 per 1K tokens (catches unit mistakes such as per-token
/// prices pasted as per-1K).
const MAX_PRICE_USD_PER_1K: f64 = 10_000.0;

/// Largest accepted image price: $1,000 per image.
const MAX_PRICE_USD_PER_IMAGE: f64 = 1_000.0;

/// Largest accepted budget: one trillion USD.
const MAX_USD: f64 = 1e12;

/// A token price in nano-USD per 1K tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PricePer1k(pub i64);

impl PricePer1k {
    /// Converts a USD-per-1K-tokens config value (e.g. `0.005`), rejecting negative, NaN and
    /// implausibly large values.
    pub fn from_usd(usd_per_1k: f64) -> Result<Self, String> {
        if !usd_per_1k.is_finite() || usd_per_1k < 0.0 {
            return Err(format!(
                "price must be a non-negative number of USD per 1K tokens, got {usd_per_1k}"
            ));
        }
        if usd_per_1k > MAX_PRICE_USD_PER_1K {
            return Err(format!(
                "price {usd_per_1k} USD per 1K tokens is above {MAX_PRICE_USD_PER_1K}; prices are per 1K tokens, not per token"
            ));
        }
        // Round at the nano-USD, which absorbs float noise such as 0.1 + 0.2.
        Ok(Self((usd_per_1k * 1e9).round() as i64))
    }

    /// The price as USD per 1K tokens, for display.
    pub fn as_usd(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// An image price in nano-USD per generated image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PricePerImage(pub i64);

impl PricePerImage {
    /// Converts a USD-per-image config value (e.g. `0.04`), rejecting negative, NaN and
    /// implausibly large values.
    pub fn from_usd(usd_per_image: f64) -> Result<Self, String> {
        if !usd_per_image.is_finite() || usd_per_image < 0.0 {
            return Err(format!(
                "price must be a non-negative number of USD per image, got {usd_per_image}"
            ));
        }
        if usd_per_image > MAX_PRICE_USD_PER_IMAGE {
            return Err(format!(
                "price {usd_per_image} USD per image is above {MAX_PRICE_USD_PER_IMAGE}"
            ));
        }
        Ok(Self((usd_per_image * 1e9).round() as i64))
    }

    /// The price as USD per image, for display.
    pub fn as_usd(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// Input, output, prompt-cache and image prices of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pricing {
    /// Price of prompt (input) tokens.
    pub input: PricePer1k,
    /// Price of completion (output) tokens.
    pub output: PricePer1k,
    /// Price of each generated image (image models; absent in snapshots before it existed).
    #[serde(default, skip_serializing_if = "is_free")]
    pub image: PricePerImage,
    /// Price of prompt tokens read from the provider's prompt cache; `None`: the input price
    /// (absent in snapshots before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<PricePer1k>,
    /// Price of prompt tokens written to the provider's prompt cache (Anthropic's and
    /// Bedrock's cache writes); `None`: the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<PricePer1k>,
}

fn is_free(price: &PricePerImage) -> bool {
    price.0 == 0
}

/// What one request consumed, as it is billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumption {
    /// Every prompt token, cache reads and cache writes included (OpenAI's `prompt_tokens`).
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Of `prompt_tokens`, those written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// Images generated.
    pub images: u64,
}

impl Pricing {
    /// Cost in micro-USD of uncached prompt and completion tokens, rounded up to the next
    /// whole micro-USD.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> MicroUsd {
        self.charge(&Consumption {
            prompt_tokens,
            completion_tokens,
            ..Consumption::default()
        })
    }

    /// Cost of what a request consumed in micro-USD, rounded up once to the next whole
    /// micro-USD. Cache reads and writes are billed at their prices, the rest of the prompt
    /// at the input price; cache counts larger than the prompt are capped at it (reads
    /// first), so a provider's inconsistent counts never bill a token twice.
    pub fn charge(&self, used: &Consumption) -> MicroUsd {
        let read = used.cache_read_tokens.min(used.prompt_tokens);
        let write = used
            .cache_write_tokens
            .min(used.prompt_tokens.saturating_sub(read));
        let uncached = used.prompt_tokens - read - write;
        let nano_times_1k = u128::from(uncached) * price(self.input)
            + u128::from(read) * price(self.cache_read.unwrap_or(self.input))
            + u128::from(write) * price(self.cache_write.unwrap_or(self.input))
            + u128::from(used.completion_tokens) * price(self.output)
            + u128::from(used.images) * self.image.0.max(0) as u128 * 1000;
        // nano-USD per 1K tokens × tokens: divide by 1000 (per 1K) and by 1000 (nano →
        // micro), rounding up once.
        let micros = nano_times_1k.div_ceil(1_000_000);
        i64::try_from(micros).unwrap_or(i64::MAX)
    }

    /// The most a request of this size can cost: every prompt token at the dearest of the
    /// input and prompt-cache prices (budget and limit reservations).
    pub fn worst_case(&self, prompt_tokens: u64, completion_tokens: u64, images: u64) -> MicroUsd {
        let dearest = [Some(self.input), self.cache_read, self.cache_write]
            .into_iter()
            .flatten()
            .max_by_key(|price| price.0)
            .unwrap_or(self.input);
        Pricing {
            input: dearest,
            cache_read: None,
            cache_write: None,
            ..*self
        }
        .charge(&Consumption {
            prompt_tokens,
            completion_tokens,
            images,
            ..Consumption::default()
        })
    }
}

/// A price as an unsigned multiplier (negative prices, refused at load, count as free).
fn price(price: PricePer1k) -> u128 {
    price.0.max(0) as u128
}

/// Converts a USD amount from config (e.g. a budget of `150.0`) to micro-USD.
pub fn usd_to_micros(usd: f64) -> Result<MicroUsd, String> {
    if !usd.is_finite() || usd < 0.0 {
        return Err(format!(
            "amount must be a non-negative number of USD, got {usd}"
        ));
    }
    if usd > MAX_USD {
        return Err(format!("amount {usd} USD is too large"));
    }
    Ok((usd * MICROS_PER_USD as f64).round() as i64)
}

/// Formats micro-USD as a decimal USD string with 6 decimals (`"1.250000"`), for headers.
pub fn format_usd(micros: MicroUsd) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prices_convert_exactly() {
        assert_eq!(PricePer1k::from_usd(0.005), Ok(PricePer1k(5_000_000)));
        assert_eq!(PricePer1k::from_usd(0.0001), Ok(PricePer1k(100_000)));
        assert_eq!(PricePer1k::from_usd(0.1 + 0.2), Ok(PricePer1k(300_000_000)));
        assert!(PricePer1k::from_usd(-1.0).is_err());
        assert!(PricePer1k::from_usd(f64::NAN).is_err());
        assert!(PricePer1k::from_usd(20_000.0).is_err());
    }

    #[test]
    fn cost_matches_the_seeds_formula_and_rounds_up() {
        // (1000 * 0.005 + 500 * 0.015) / 1000 USD = 0.0125 USD = 12,500 micro-USD.
        let pricing = Pricing {
            input: PricePer1k::from_usd(0.005).unwrap_or_default(),
            output: PricePer1k::from_usd(0.015).unwrap_or_default(),
            ..Pricing::default()
        };
        assert_eq!(pricing.cost(1000, 500), 12_500);
        // One token at $0.0001/1K is 0.1 micro-USD: billed as 1.
        let cheap = Pricing {
            input: PricePer1k(100_000),
            output: PricePer1k(0),
            ..Pricing::default()
        };
        assert_eq!(cheap.cost(1, 0), 1);
        assert_eq!(cheap.cost(0, 0), 0);
        assert_eq!(Pricing::default().cost(1_000_000, 1_000_000), 0);
    }

    #[test]
    fn images_are_priced_per_image_with_one_rounding() {
        let pricing = Pricing {
            input: PricePer1k::from_usd(0.0001).unwrap_or_default(),
            output: PricePer1k(0),
            image: PricePerImage::from_usd(0.04).unwrap_or_default(),
            ..Pricing::default()
        };
        // 2 images at $0.04 plus 1 prompt token at $0.0001/1K (0.1 micro-USD): one rounding.
        let images = |prompt_tokens, images| {
            pricing.charge(&Consumption {
                prompt_tokens,
                images,
                ..Consumption::default()
            })
        };
        assert_eq!(images(1, 2), 80_001);
        assert_eq!(images(0, 3), 120_000);
        assert_eq!(pricing.cost(1, 0), 1);
        assert!(PricePerImage::from_usd(-0.01).is_err());
        assert!(PricePerImage::from_usd(5_000.0).is_err());
        assert_eq!(
            PricePerImage::from_usd(0.0025),
            Ok(PricePerImage(2_500_000))
        );
    }

    #[test]
    fn prompt_cache_reads_and_writes_have_their_own_prices() {
        // Claude Sonnet: $3/M input, $0.30/M cache reads, $3.75/M cache writes, $15/M output.
        let pricing = Pricing {
            input: PricePer1k::from_usd(0.003).unwrap_or_default(),
            output: PricePer1k::from_usd(0.015).unwrap_or_default(),
            cache_read: PricePer1k::from_usd(0.0003).ok(),
            cache_write: PricePer1k::from_usd(0.00375).ok(),
            ..Pricing::default()
        };
        let used = Consumption {
            prompt_tokens: 10_000,
            completion_tokens: 1_000,
            cache_read_tokens: 6_000,
            cache_write_tokens: 3_000,
            images: 0,
        };
        // Uncached 1,000 × $3/M, reads 6,000 × $0.30/M, writes 3,000 × $3.75/M, output
        // 1,000 × $15/M: 3,000 + 1,800 + 11,250 + 15,000 = 31,050 micro-USD.
        assert_eq!(pricing.charge(&used), 31_050);
        // Unset cache prices fall back to the input price.
        let plain = Pricing {
            cache_read: None,
            cache_write: None,
            ..pricing
        };
        assert_eq!(plain.charge(&used), plain.cost(10_000, 1_000));
        // Counts larger than the prompt never bill a token twice.
        let inconsistent = Consumption {
            prompt_tokens: 100,
            cache_read_tokens: 80,
            cache_write_tokens: 80,
            ..Consumption::default()
        };
        // 80 reads at $0.30/M and the 20 tokens left as writes at $3.75/M: 24 + 75 micro-USD.
        assert_eq!(pricing.charge(&inconsistent), 99);
        // Reservations take the dearest prompt price: cache writes here.
        assert_eq!(pricing.worst_case(10_000, 1_000, 0), 37_500 + 15_000);
        assert_eq!(
            plain.worst_case(10_000, 1_000, 0),
            plain.cost(10_000, 1_000)
        );
    }

    #[test]
    fn usd_formatting() {
        assert_eq!(format_usd(1_250_000), "1.250000");
        assert_eq!(format_usd(7), "0.000007");
        assert_eq!(format_usd(-5), "-0.000005");
        assert_eq!(usd_to_micros(150.0), Ok(150_000_000));
        assert!(usd_to_micros(-1.0).is_err());
    }

    proptest! {
        #[test]
        fn cost_is_monotonic_and_never_below_exact(p in 0u64..10_000_000, c in 0u64..10_000_000,
                                                   pin in 0i64..100_000_000_000, pout in 0i64..100_000_000_000) {
            let pricing = Pricing { input: PricePer1k(pin), output: PricePer1k(pout), ..Pricing::default() };
            let cost = pricing.cost(p, c);
            let exact_pico = u128::from(p) * pin as u128 + u128::from(c) * pout as u128;
            prop_assert!((cost as u128) * 1_000_000 >= exact_pico);
            prop_assert!((cost as u128) * 1_000_000 < exact_pico + 1_000_000);
            prop_assert!(pricing.cost(p + 1, c) >= cost);
        }
    }
}
