//! The usage record: one per request, whatever its outcome.
//!
//! Data planes emit it (to a JSONL file in standalone mode, to a Redis stream in cluster
//! mode); the control plane stores it idempotently by `request_id`. Fields are only ever
//! added, as optional, so old consumers keep parsing new records.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::MicroUsd;

/// The record's schema version.
pub const USAGE_SCHEMA_VERSION: u32 = 1;

/// One request's metering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// [`USAGE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The gateway's own id of the request (UUIDv7), the idempotency key of ingestion. Never
    /// the client's: a client reusing an `x-request-id` must not make two requests look like
    /// one. Absent only in records written before it existed; ingestion then derives one
    /// from `request_id` ([`UsageEvent::idempotency_key`]).
    #[serde(default)]
    pub event_id: Option<Uuid>,
    /// The request id (`x-request-id`: the client's when it sent a sane one), for
    /// correlation with logs.
    pub request_id: String,
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// Tenant, when the key was resolved.
    pub tenant_id: Option<Uuid>,
    /// Key, when resolved.
    pub key_id: Option<Uuid>,
    /// Portal user behind the key, when known.
    #[serde(default)]
    pub user_id: Option<Uuid>,
    /// Requested alias.
    pub alias: Option<String>,
    /// Provider kind that served (or failed) it.
    pub provider: Option<String>,
    /// Deployment id.
    pub deployment: Option<String>,
    /// Operation: `chat.completions`, `completions`, `embeddings`, `models`, …
    pub endpoint: String,
    /// HTTP status returned to the client (499 when the client went away first; a batch
    /// line's answer stands even if its sender left).
    pub status: u16,
    /// Error code when the request failed.
    pub error_code: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
    /// Prompt tokens served from the provider's cache (billed at `price_cache_read`).
    #[serde(default)]
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's cache (billed at `price_cache_write`).
    /// Written only when non-zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Images generated (image generation), billed at the deployment's `price_per_image`.
    /// Written only when non-zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub images: u64,
    /// Cost in micro-USD.
    pub cost_micro_usd: MicroUsd,
    /// Total time in the gateway, ms.
    pub latency_ms: u64,
    /// Time to the first streamed byte of content, ms.
    pub ttft_ms: Option<u64>,
    /// Streamed response.
    pub stream: bool,
    /// Token counts are estimates (stream cut before the provider reported usage).
    pub usage_estimated: bool,
    /// The answer was replayed from the idempotency store (`Idempotency-Key`): no provider
    /// call, zero tokens and cost. Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent_replay: bool,
    /// The batch whose line this request was (`batch_…`): set when the control plane's
    /// batch worker sent it with a signed identity naming the batch. Written only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Namespace of ids derived from `request_id` for records without `event_id`.
const LEGACY_EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x0b5e_55ed_70c3_4a11_8d0e_a1b2_c3d4_e5f6);

impl UsageEvent {
    /// The key ingestion deduplicates on: `event_id`, else a UUIDv5 of `request_id`.
    pub fn idempotency_key(&self) -> Uuid {
        self.event_id
            .unwrap_or_else(|| Uuid::new_v5(&LEGACY_EVENT_NAMESPACE, self.request_id.as_bytes()))
    }
}
