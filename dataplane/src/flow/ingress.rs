//! The client's dialect on the way in: an Anthropic client's Messages request in the
//! OpenAI form that routes, admits and meters like any chat request.

use omg_shared::provider::ProviderKind;

use crate::error::ApiError;
use crate::ingress::anthropic;
use crate::snapshot::{DeploymentEntry, RuntimeSnapshot};

/// An Anthropic client's request in its OpenAI form. What the OpenAI form cannot carry
/// (documents, server tools, …) is refused, unless only Anthropic deployments will see the
/// request (every deployment of the alias, or any for `count_tokens`, which only they
/// answer): then the body goes upstream as written and those parts are only left out of the
/// form used for routing, limits and estimates.
pub fn translate_anthropic(
    snapshot: &RuntimeSnapshot,
    raw: &[u8],
    count_only: bool,
) -> Result<anthropic::Translated, ApiError> {
    anthropic::to_openai(raw, count_only).or_else(|refusal| {
        let native = |d: &DeploymentEntry| d.deployment.provider == ProviderKind::Anthropic;
        let only_anthropic = anthropic::model_of(raw)
            .and_then(|model| snapshot.model(&model))
            .is_some_and(|alias| {
                if count_only {
                    alias.deployments.iter().any(|d| counts(d))
                } else {
                    !alias.deployments.is_empty() && alias.deployments.iter().all(|d| native(d))
                }
            });
        if only_anthropic {
            anthropic::to_openai_for_native(raw, count_only)
        } else {
            Err(refusal)
        }
    })
}

/// Whether the deployment's provider counts tokens itself (`count_tokens` goes to it).
pub fn counts(deployment: &DeploymentEntry) -> bool {
    deployment
        .adapter
        .as_ref()
        .is_some_and(|adapter| adapter.counts_tokens())
}
