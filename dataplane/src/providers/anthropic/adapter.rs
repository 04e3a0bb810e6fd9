//! [`AnthropicAdapter`]: the Messages API behind the [`ProviderAdapter`] trait.

use std::collections::BTreeMap;

use bytes::BytesMut;
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;

use super::native;
use super::{
    auth_header, build_request, map_error, translate_response, AnthropicDefaults,
    StreamTranslator as Translator, MESSAGES_PATH,
};
use crate::error::ApiError;
use crate::providers::adapter::{
    endpoint_path, join, Answer, Call, ClientError, Ingress, ProbeRequest, ProviderAdapter,
    StreamFault, StreamTranslator, UpstreamRequest,
};
use crate::providers::Usage;

/// One Anthropic deployment's adapter.
#[derive(Debug)]
pub struct AnthropicAdapter {
    defaults: AnthropicDefaults,
}

impl AnthropicAdapter {
    /// Reads the deployment's `anthropic_*` metadata; `Err` names the bad key.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Self, String> {
        Ok(Self {
            defaults: AnthropicDefaults::from_metadata(metadata)?,
        })
    }
}

/// The Messages API path below an endpoint: its base URL is `https://api.anthropic.com`
/// (a configured `…/v1` is accepted too).
fn path(deployment: &Deployment, below_v1: &str) -> String {
    let prefix = endpoint_path(deployment);
    let prefix = prefix.trim_end_matches('/');
    match prefix.strip_suffix("/v1") {
        Some(base) => join(base, below_v1),
        None => join(prefix, below_v1),
    }
}

impl ProviderAdapter for AnthropicAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn request(
        &self,
        call: &Call<'_>,
        deployment: &Deployment,
    ) -> Result<UpstreamRequest, ApiError> {
        if let Ingress::Anthropic { raw, beta } = call.ingress {
            let mut headers = vec![("anthropic-version", self.defaults.version.clone())];
            if let Some(beta) = native::beta_header(self.defaults.beta.as_deref(), beta) {
                headers.push(("anthropic-beta", beta));
            }
            if let Some(key) = &deployment.api_key {
                headers.push(auth_header(key.expose()));
            }
            return Ok(UpstreamRequest {
                path: path(deployment, MESSAGES_PATH),
                headers,
                body: native::request_body(raw, &deployment.provider_model)?,
            });
        }
        let built = build_request(call.raw, &deployment.provider_model, &self.defaults)?;
        let mut headers = built.headers;
        if let Some(key) = &deployment.api_key {
            headers.push(auth_header(key.expose()));
        }
        Ok(UpstreamRequest {
            path: path(deployment, MESSAGES_PATH),
            headers,
            body: built.body,
        })
    }

    fn response(&self, call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
        if self.answers_natively(call) {
            return native::response(call, body);
        }
        let (body, usage) = translate_response(body, call.alias, call.request_id, call.created)?;
        Ok(Answer {
            body,
            usage: Some(usage),
        })
    }

    fn stream(&self, call: &Call<'_>) -> Box<dyn StreamTranslator> {
        if self.answers_natively(call) {
            return Box::new(native::PassThrough::new(call));
        }
        Box::new(Translator::new(
            call.alias,
            call.request_id,
            call.created,
            call.body.include_usage,
        ))
    }

    fn client_error(&self, status: u16, body: &[u8]) -> ClientError {
        map_error(status, body).into()
    }

    fn answers_natively(&self, call: &Call<'_>) -> bool {
        matches!(call.ingress, Ingress::Anthropic { .. })
    }

    fn probe(&self, deployment: &Deployment) -> ProbeRequest {
        let mut headers = vec![("anthropic-version", self.defaults.version.clone())];
        if let Some(key) = &deployment.api_key {
            headers.push(auth_header(key.expose()));
        }
        ProbeRequest {
            path: path(deployment, "/v1/models"),
            headers,
        }
    }
}

impl StreamTranslator for Translator {
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        Translator::push(self, bytes, out).map_err(|error| match error {
            super::StreamError::EventTooLarge => StreamFault::OVERSIZED,
            super::StreamError::Malformed => StreamFault::MALFORMED,
        })
    }

    fn is_done(&self) -> bool {
        Translator::is_done(self)
    }

    fn upstream_failed(&self) -> bool {
        self.failed()
    }

    fn saw_content(&self) -> bool {
        Translator::saw_content(self)
    }

    fn reported_usage(&self) -> Option<Usage> {
        self.usage()
    }

    fn estimated_completion_tokens(&self) -> u64 {
        Translator::estimated_completion_tokens(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omg_shared::endpoint::Endpoint;

    fn deployment(endpoint: &str) -> Deployment {
        let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
            "id": "claude#0", "provider": "anthropic", "provider_model": "claude-test",
            "weight": 1, "enabled": true,
            "pricing": {"input": 0, "output": 0}
        }))
        .unwrap();
        deployment.endpoint = Some(Endpoint::parse(endpoint).unwrap());
        deployment
    }

    #[test]
    fn paths_accept_base_urls_with_or_without_v1() {
        for base in [
            "https://api.anthropic.com",
            "https://api.anthropic.com/v1",
            "http://proxy/anthropic/v1/",
        ] {
            let deployment = deployment(base);
            assert!(
                path(&deployment, MESSAGES_PATH).ends_with("/v1/messages"),
                "{base}"
            );
            assert!(
                !path(&deployment, MESSAGES_PATH).contains("/v1/v1"),
                "{base}"
            );
        }
        assert_eq!(
            path(&deployment("http://proxy/anthropic"), MESSAGES_PATH),
            "/anthropic/v1/messages"
        );
        assert_eq!(super::super::DEFAULT_VERSION, "2023-06-01");
    }
}
