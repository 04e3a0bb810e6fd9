//! Admission: what a request must take from the limits and budgets before any upstream is
//! contacted. A plan is built from the governance of the snapshot; only when a token limit
//! or a budget needs it is the request's worst case estimated. Taking the plan (Redis or the
//! local governor) is the glue's (`crate::proxy`).

use std::sync::Arc;

use crate::error::ApiError;
use crate::limits::{plan, Estimate, RateKind};
use crate::request::{priced, RequestBody, Route};
use crate::snapshot::{AliasEntry, DeploymentEntry, KeyEntry, RuntimeSnapshot};
use crate::tokens::{PromptSource, Vocabulary};

/// A request about to be admitted: what its estimate is made from.
pub struct Admitted<'r> {
    /// Its alias.
    pub alias: &'r AliasEntry,
    /// The deployments it may go to, in order.
    pub order: &'r [Arc<DeploymentEntry>],
    /// The operation (an Anthropic client's Messages request runs as chat).
    pub route: &'r Route,
    /// Its OpenAI form, parsed.
    pub body: &'r RequestBody<'r>,
    /// The client's Messages body, when it spoke Anthropic.
    pub anthropic: Option<&'r [u8]>,
    /// Its `anthropic-beta` header.
    pub beta: Option<&'r str>,
}

/// The plan a model request takes (`None`: no limit or budget applies). What a reservation
/// cannot bound is refused under a budget; the prompt is counted only when a token limit or
/// a budget needs it.
pub async fn request_plan(
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
    request: &Admitted<'_>,
) -> Result<Option<plan::Plan>, ApiError> {
    let mut plan = plan::build(
        &snapshot.governance,
        key,
        Some(&request.alias.alias),
        Some(Estimate::default()),
        chrono::Utc::now(),
    );
    if plan.is_empty() {
        return Ok(None);
    }
    if !plan.budgets.is_empty() {
        priced::refuse_under_budget(request.body, request.anthropic, request.beta)?;
    }
    if plan.needs_estimate() {
        plan.charge(estimate(snapshot, request).await);
    }
    Ok(Some(plan))
}

/// The plan of a `count_tokens` request: one request of the per-minute request limits and
/// a parallel slot; token limits and budgets are left out (`None`: nothing applies).
pub fn count_plan(
    snapshot: &RuntimeSnapshot,
    key: &KeyEntry,
    alias: Option<&str>,
) -> Option<plan::Plan> {
    let mut plan = plan::build(
        &snapshot.governance,
        key,
        alias,
        Some(Estimate::default()),
        chrono::Utc::now(),
    );
    plan.rates.retain(|rate| rate.kind == RateKind::Requests);
    plan.budgets.clear();
    (!plan.is_empty()).then_some(plan)
}

/// The plan that only reads the limits and budget state, for the headers of a request that
/// takes nothing (`None`: nothing applies).
pub fn look_plan(snapshot: &RuntimeSnapshot, key: &KeyEntry) -> Option<plan::Plan> {
    let plan = plan::build(&snapshot.governance, key, None, None, chrono::Utc::now());
    (!plan.is_empty()).then_some(plan)
}

/// The worst case a request may take: its prompt (counted with the tokenizer of the first
/// deployment's model, bounded from above, at most the model's `context_window`) plus the
/// largest completion it may get (`max_tokens`, else the model's `max_output_tokens`, else
/// `rate_limits.default_max_tokens`) for every choice and prompt it asks for, priced at the
/// dearest deployment it may fail over to.
pub async fn estimate(snapshot: &RuntimeSnapshot, request: &Admitted<'_>) -> Estimate {
    let Admitted {
        alias,
        order,
        route,
        body,
        ..
    } = request;
    let source = PromptSource::of(body);
    let prompts = source.prompts();
    let counted = source
        .count_off_worker(Vocabulary::of_first(order))
        .await
        .max(1);
    let prompt = alias
        .context_window
        .filter(|window| *window > 0)
        .map_or(counted, |window| {
            counted.min(window.saturating_mul(prompts))
        });
    let completion = match route {
        Route::Embeddings | Route::ImagesGenerations => 0,
        _ => body
            .max_tokens
            .or(alias.max_output_tokens)
            .unwrap_or(snapshot.governance.rate_limits.default_max_tokens.max(1))
            .saturating_mul(body.choices())
            .saturating_mul(prompts),
    };
    let cost = order
        .iter()
        .map(|d| {
            d.deployment
                .pricing
                .worst_case(prompt, completion, body.images)
        })
        .max()
        .unwrap_or(0);
    Estimate {
        tokens: prompt.saturating_add(completion),
        cost,
    }
}
