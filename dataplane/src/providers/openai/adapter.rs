//! The adapter for OpenAI-format providers (`openai`, `openai-compatible`): the body passes
//! through with `model` replaced (and usage forced on for streams); answers pass through,
//! metered.

use bytes::BytesMut;
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;

use super::{response_usage, EventAction, StreamMeter};
use crate::error::ApiError;
use crate::providers::adapter::{
    endpoint_path, join, Answer, Call, ClientError, ProbeRequest, ProviderAdapter, StreamFault,
    StreamTranslator, UpstreamRequest,
};
use crate::providers::StreamState;
use crate::request::Route;
use crate::sse::SseSplitter;

/// `openai` and `openai-compatible`.
#[derive(Debug)]
pub struct OpenAiAdapter {
    kind: ProviderKind,
}

impl OpenAiAdapter {
    /// The adapter for one of the OpenAI-format kinds.
    pub fn new(kind: ProviderKind) -> Self {
        Self { kind }
    }
}

/// `authorization: Bearer <key>` when the deployment has a key.
fn bearer(deployment: &Deployment) -> Vec<(&'static str, String)> {
    deployment
        .api_key
        .as_ref()
        .map(|key| vec![("authorization", format!("Bearer {}", key.expose()))])
        .unwrap_or_default()
}

impl ProviderAdapter for OpenAiAdapter {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn request(
        &self,
        call: &Call<'_>,
        deployment: &Deployment,
    ) -> Result<UpstreamRequest, ApiError> {
        let prefix = endpoint_path(deployment);
        Ok(UpstreamRequest {
            path: join(prefix, call.route.upstream_path()),
            headers: bearer(deployment),
            body: call.body.upstream_body(&deployment.provider_model),
        })
    }

    fn response(&self, call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError> {
        match call.route {
            Route::ImagesGenerations => crate::providers::images::pass_through(body),
            _ => pass_through_answer(body),
        }
    }

    fn stream(&self, call: &Call<'_>) -> Box<dyn StreamTranslator> {
        Box::new(PassThrough::new(call.body.include_usage))
    }

    fn client_error(&self, status: u16, body: &[u8]) -> ClientError {
        // Pass the provider's OpenAI-shaped error on with its status; nothing else of its
        // body (an unreadable one gets a generic message).
        let body = serde_json::from_slice::<OpenAiErrorBody>(body).unwrap_or_else(|_| {
            OpenAiErrorBody::new(
                ErrorCode::InvalidParameter,
                format!("The upstream rejected the request with HTTP {status}."),
                None,
            )
        });
        ClientError {
            status: if (400..500).contains(&status) {
                status
            } else {
                502
            },
            body,
        }
    }

    fn probe(&self, deployment: &Deployment) -> ProbeRequest {
        let prefix = endpoint_path(deployment);
        ProbeRequest {
            path: join(prefix, "/models"),
            headers: bearer(deployment),
        }
    }
}

/// An OpenAI-format JSON answer, passed through unchanged with its `usage` read.
pub(crate) fn pass_through_answer(body: &[u8]) -> Result<Answer, ApiError> {
    match response_usage(body) {
        Ok(usage) => Ok(Answer {
            body: body.to_vec(),
            usage,
        }),
        Err(_) => Err(ApiError::new(
            ErrorCode::UpstreamError,
            "The upstream answered with a body that is not JSON.",
        )),
    }
}

/// An OpenAI stream, forwarded event by event: the usage chunk the client did not ask for
/// left out, malformed events refused.
pub(crate) struct PassThrough {
    splitter: SseSplitter,
    meter: StreamMeter,
}

impl PassThrough {
    /// A pass-through stream; `client_wants_usage` is the client's own
    /// `stream_options.include_usage`.
    pub(crate) fn new(client_wants_usage: bool) -> Self {
        Self {
            splitter: SseSplitter::default(),
            meter: StreamMeter::new(client_wants_usage),
        }
    }
}

impl StreamTranslator for PassThrough {
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault> {
        let events = self
            .splitter
            .push(bytes)
            .map_err(|_| StreamFault::OVERSIZED)?;
        for event in events {
            match self.meter.process(&event) {
                EventAction::Forward => out.extend_from_slice(&event),
                EventAction::Drop => {}
                EventAction::Malformed => return Err(StreamFault::MALFORMED),
            }
        }
        Ok(())
    }

    fn state(&self) -> &StreamState {
        &self.meter.state
    }
}
