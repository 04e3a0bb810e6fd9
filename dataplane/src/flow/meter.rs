//! Metering: every decision about what a request consumed is made here, and nowhere else.
//! A provider's report is taken as is when complete; without one the prompt is counted and
//! marked estimated; a stream cut short bills at least the prompt plus the tokens seen;
//! implausible reports are clamped. [`Metered`] is the closing state of a request, priced,
//! from which the usage record (`crate::usage::record_of`), the metrics and the access log
//! are written.

use std::time::Duration;

use omg_shared::money::{MicroUsd, Pricing};
use omg_shared::provider::ProviderKind;
use omg_shared::tokens::MAX_REPORTED_TOKENS;

use crate::providers::Usage;
use crate::request::{RequestBody, Route};
use crate::tokens::{PromptSource, Vocabulary};

/// What a request consumed so far, and whether the counts are estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meter {
    usage: Usage,
    estimated: bool,
}

impl Meter {
    /// Counts the provider reported in full (or the mock's own exact counts).
    pub fn reported(usage: Usage) -> Self {
        Self {
            usage,
            estimated: false,
        }
    }

    /// Counts of an answer still being delivered (estimates until it completes).
    pub fn partial(usage: Usage) -> Self {
        Self {
            usage,
            estimated: true,
        }
    }

    /// A JSON answer: the provider's report, else the prompt counted with the deployment's
    /// tokenizer (estimated).
    pub async fn answer(
        reported: Option<Usage>,
        body: &RequestBody<'_>,
        provider_model: &str,
    ) -> Self {
        match reported {
            Some(usage) => Self::reported(usage),
            None => Self::partial(Usage {
                prompt_tokens: prompt_tokens(body, provider_model).await,
                ..Usage::default()
            }),
        }
    }

    /// A relayed stream, however it ended: what the provider reported once done; for a
    /// stream cut short, at least the prompt plus the tokens seen (a provider may report
    /// output usage only at the end).
    pub async fn stream(seen: StreamSeen, body: &RequestBody<'_>, provider_model: &str) -> Self {
        let estimated = seen.estimated_completion_tokens;
        match seen.reported {
            Some(usage) if seen.done => Self::reported(usage),
            Some(mut usage) => {
                let short = usage.completion_tokens < estimated;
                usage.completion_tokens = usage.completion_tokens.max(estimated);
                Self {
                    usage,
                    estimated: short,
                }
            }
            None => Self::partial(Usage {
                prompt_tokens: prompt_tokens(body, provider_model).await,
                completion_tokens: estimated,
                ..Usage::default()
            }),
        }
    }

    /// Adds completion tokens delivered (a stream in progress).
    pub fn delivered(&mut self, completion_tokens: u64) {
        self.usage.completion_tokens += completion_tokens;
    }

    /// The counts.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether they are estimates.
    pub fn estimated(&self) -> bool {
        self.estimated
    }
}

/// What a stream translator saw of a stream, when it ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamSeen {
    /// The stream reached its proper end.
    pub done: bool,
    /// Usage the provider reported (complete only when `done`).
    pub reported: Option<Usage>,
    /// Completion tokens estimated from the content delivered.
    pub estimated_completion_tokens: u64,
}

/// The prompt's tokens, counted with the tokenizer of `provider_model`.
async fn prompt_tokens(body: &RequestBody<'_>, provider_model: &str) -> u64 {
    PromptSource::of(body)
        .count_off_worker(Vocabulary::for_model(provider_model))
        .await
}

/// The deployment an attempt went to (the last one is the one that answered).
#[derive(Debug, Clone)]
pub struct Target {
    /// Its provider.
    pub provider: ProviderKind,
    /// Its id.
    pub deployment: String,
    /// Its prices.
    pub pricing: Pricing,
}

/// A request's closing state: what the usage record, the metrics and the access log say.
#[derive(Debug, Clone)]
pub struct Metered {
    /// The gateway's own id of the request (the record's idempotency key).
    pub event_id: uuid::Uuid,
    /// The request id.
    pub request_id: String,
    /// Arrival, wall clock.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Authenticated tenant.
    pub tenant_id: Option<uuid::Uuid>,
    /// Authenticated key.
    pub key_id: Option<uuid::Uuid>,
    /// The authenticated key's owner, when it has one.
    pub user_id: Option<uuid::Uuid>,
    /// Resolved alias.
    pub alias: Option<String>,
    /// The deployment that answered.
    pub target: Option<Target>,
    /// The matched route.
    pub route: Option<Route>,
    /// Status sent (499 when the client left first).
    pub status: u16,
    /// Error code of a failed request.
    pub error_code: Option<&'static str>,
    /// What it consumed (clamped).
    pub usage: Usage,
    /// The counts are estimates.
    pub usage_estimated: bool,
    /// Its price.
    pub cost: MicroUsd,
    /// Time to the end of the response.
    pub latency: Duration,
    /// Time to first streamed content.
    pub ttft: Option<Duration>,
    /// Streamed.
    pub stream: bool,
    /// Answered from the idempotency store.
    pub idempotent_replay: bool,
    /// The batch the request is a line of.
    pub batch_id: Option<String>,
}

impl Metered {
    /// The last step: a status for a request that sent none (499), the usage clamped
    /// ([`sanitize`]) and priced at the deployment that answered.
    pub fn closed(mut self, meter: Meter) -> Self {
        if self.status == 0 {
            self.status = 499;
        }
        self.usage = sanitize(meter.usage(), &self.request_id);
        self.usage_estimated = meter.estimated();
        let pricing = self.target.as_ref().map(|t| t.pricing).unwrap_or_default();
        self.cost = pricing.charge(&self.usage.consumption());
        self
    }

    /// The endpoint's name (metric label, record field).
    pub fn endpoint(&self) -> &'static str {
        self.route.as_ref().map_or("unknown", Route::endpoint_name)
    }

    /// The alias, or `-`.
    pub fn alias_label(&self) -> &str {
        self.alias.as_deref().unwrap_or("-")
    }

    /// The provider, or `-`.
    pub fn provider_label(&self) -> &'static str {
        self.target.as_ref().map_or("-", |t| t.provider.as_str())
    }

    /// Whether a usage record is written: authenticated model calls (token counts and
    /// model listings are not billed).
    pub fn billable(&self) -> bool {
        matches!(
            self.route,
            Some(
                Route::Chat
                    | Route::Completions
                    | Route::Embeddings
                    | Route::ImagesGenerations
                    | Route::Messages
            )
        ) && self.tenant_id.is_some()
    }

    /// Prompt plus completion tokens.
    pub fn tokens(&self) -> u64 {
        self.usage
            .prompt_tokens
            .saturating_add(self.usage.completion_tokens)
    }
}

/// Clamps each count of a provider's usage report to [`MAX_REPORTED_TOKENS`] (logged), so
/// nothing summed from it can wrap and a hostile or broken upstream cannot poison counters.
pub fn sanitize(mut usage: Usage, request_id: &str) -> Usage {
    let mut clamped = false;
    for count in [
        &mut usage.prompt_tokens,
        &mut usage.completion_tokens,
        &mut usage.cached_tokens,
        &mut usage.cache_write_tokens,
        &mut usage.images,
    ] {
        if *count > MAX_REPORTED_TOKENS {
            *count = MAX_REPORTED_TOKENS;
            clamped = true;
        }
    }
    if clamped {
        tracing::warn!(
            request_id,
            limit = MAX_REPORTED_TOKENS,
            "the provider reported implausible usage; clamped"
        );
    }
    usage
}

#[cfg(test)]
mod tests;
