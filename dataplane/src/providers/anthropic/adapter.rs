//! [`AnthropicAdapter`]: the Messages API behind the [`ProviderAdapter`] trait.

use std::collections::BTreeMap;

use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;

use super::native;
use super::{
    auth_header, build_request, map_error, translate_response, AnthropicDefaults, AnthropicStream,
    COUNT_TOKENS_PATH, MESSAGES_PATH,
};
use crate::error::ApiError;
use crate::providers::adapter::{
    endpoint_path, join, Answer, Call, ClientError, Ingress, ProbeRequest, ProviderAdapter,
    StreamTranslator, UpstreamRequest,
};

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
            // A Messages request or a token count: the same headers and body rules.
            let below_v1 = if native::counts_tokens(call) {
                COUNT_TOKENS_PATH
            } else {
                MESSAGES_PATH
            };
            let mut headers = vec![("anthropic-version", self.defaults.version.clone())];
            if let Some(beta) = native::beta_header(self.defaults.beta.as_deref(), beta) {
                headers.push(("anthropic-beta", beta));
            }
            if let Some(key) = &deployment.api_key {
                headers.push(auth_header(key.expose()));
            }
            return Ok(UpstreamRequest {
                path: path(deployment, below_v1),
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
        if native::counts_tokens(call) {
            return native::count_response(body);
        }
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
        Box::new(AnthropicStream::new(
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

    fn counts_tokens(&self) -> bool {
        true
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Usage;
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

    /// The upstream request and the parsed answer of an Anthropic client's call on `route`.
    fn native_call(
        route: crate::request::Route,
        raw: &[u8],
        answer: &[u8],
    ) -> (UpstreamRequest, Answer) {
        let metadata = BTreeMap::from([("anthropic_beta".to_owned(), "feature-a".to_owned())]);
        let adapter = AnthropicAdapter::from_metadata(&metadata).unwrap();
        assert!(adapter.counts_tokens());
        let translated = crate::ingress::anthropic::to_openai(raw, true).unwrap();
        let body =
            crate::request::RequestBody::parse(&translated.body, &crate::request::Route::Chat)
                .unwrap();
        let call = Call {
            route: &route,
            body: &body,
            raw: &translated.body,
            alias: "claude",
            request_id: "req-1",
            created: 0,
            ingress: Ingress::Anthropic {
                raw,
                beta: Some("feature-b"),
            },
            now: std::time::SystemTime::UNIX_EPOCH,
        };
        let mut target = deployment("https://api.anthropic.com/v1");
        target.api_key = Some(omg_shared::secret::Secret::new("sk-ant-test"));
        let request = adapter.request(&call, &target).unwrap();
        let answer = adapter.response(&call, answer).unwrap();
        (request, answer)
    }

    #[test]
    fn count_tokens_goes_to_the_counting_endpoint_as_written() {
        use crate::request::Route;
        let raw = br#"{"model":"claude","system":"Be brief.","messages":[{"role":"user","content":"Hi"}],"tools":[{"name":"f","input_schema":{"type":"object"}}]}"#;
        let counted = br#"{"input_tokens":42}"#;
        let (request, answer) = native_call(Route::CountTokens, raw, counted);
        assert_eq!(request.path, "/v1/messages/count_tokens");
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(header("anthropic-beta"), Some("feature-a,feature-b"));
        assert_eq!(header("x-api-key"), Some("sk-ant-test"));
        let mut expected: serde_json::Value = serde_json::from_slice(raw).unwrap();
        expected["model"] = serde_json::json!("claude-test");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&request.body).unwrap(),
            expected
        );
        assert_eq!(answer.body, counted);
        assert_eq!(answer.usage, Some(Usage::default()), "nothing is metered");

        // The same client body on Messages still goes to the Messages API.
        let raw =
            br#"{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#;
        let message = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}"#;
        let (request, answer) = native_call(Route::Chat, raw, message);
        assert_eq!(request.path, "/v1/messages");
        assert_eq!(answer.usage.map(|u| u.prompt_tokens), Some(3));
    }
}
