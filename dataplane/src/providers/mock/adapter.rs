//! [`MockAdapter`]: the `mock` provider behind [`ProviderAdapter`]. It answers in process
//! ([`LocalAnswer`]); the upstream half of the trait is never used by the glue.

use std::time::Duration;

use bytes::BytesMut;
use omg_shared::error::ErrorCode;
use omg_shared::mock::MockSettings;
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;

use super::{Local, LocalAnswer, LocalStream, MockRequest, StreamEvents};
use crate::error::ApiError;
use crate::providers::{
    Answer, Call, ClientError, ProbeRequest, ProviderAdapter, StreamFault, StreamState,
    StreamTranslator, UpstreamRequest, Usage,
};
use crate::request::Route;

/// The mock of one deployment, with its `mock_*` settings.
#[derive(Debug, Clone)]
pub struct MockAdapter {
    settings: MockSettings,
}

impl MockAdapter {
    /// From the deployment's metadata (`Err` names the bad `mock_*` key).
    pub fn for_deployment(deployment: &Deployment) -> Result<Self, String> {
        let settings = MockSettings::from_metadata(&deployment.metadata)
            .map_err(|(key, message)| format!("metadata `{key}`: {message}"))?;
        Ok(Self { settings })
    }

    fn latency(&self) -> Duration {
        Duration::from_millis(self.settings.latency_ms)
    }

    fn embeddings(&self, call: &Call<'_>) -> Local {
        let body = call.body;
        let (json, usage) = super::embeddings(
            &body.model,
            &body.embedding_inputs(),
            self.settings.embedding_dims,
            body.base64_embeddings,
        );
        Local::Json {
            delay: self.latency(),
            body: json,
            usage: Usage {
                prompt_tokens: self.settings.prompt_tokens.unwrap_or(usage.prompt_tokens),
                ..usage
            },
        }
    }

    fn images(&self, call: &Call<'_>) -> Local {
        let body = call.body;
        let answer = super::images(
            body.prompt_text().head(),
            body.images,
            body.image_format,
            call.created,
        );
        Local::Json {
            delay: self.latency(),
            body: answer.body,
            usage: Usage {
                prompt_tokens: self.settings.prompt_tokens.unwrap_or(0),
                ..answer.usage.unwrap_or_default()
            },
        }
    }

    fn text(&self, call: &Call<'_>) -> Local {
        let body = call.body;
        let prompt = body.prompt_text();
        let id = format!("chatcmpl-{}", call.request_id);
        let request = MockRequest {
            model: &body.model,
            prompt: prompt.head(),
            id: &id,
            created: u64::try_from(call.created).unwrap_or(0),
        };
        let (chunks, usage) = super::plan(&self.settings, &prompt);
        let chat = *call.route == Route::Chat;
        if !body.stream {
            let body = if chat {
                super::chat_completion(&request, &chunks, &usage)
            } else {
                super::text_completion(&request, &chunks, &usage)
            };
            return Local::Json {
                delay: self.latency(),
                body,
                usage,
            };
        }
        let events = StreamEvents::new(&request, chat, body.include_usage);
        let delays = std::iter::once(self.settings.ttft_ms)
            .chain(std::iter::repeat(self.settings.chunk_interval_ms));
        Local::Stream(LocalStream {
            opening: events.role(),
            chunks: delays
                .zip(&chunks)
                .map(|(delay, chunk)| (Duration::from_millis(delay), events.content(chunk)))
                .collect(),
            tokens_per_chunk: usage.completion_tokens / (chunks.len() as u64).max(1),
            closing: events.finish(&usage),
            usage,
        })
    }
}

impl LocalAnswer for MockAdapter {
    fn answer(&self, call: &Call<'_>) -> Local {
        match call.route {
            Route::Embeddings => self.embeddings(call),
            Route::ImagesGenerations => self.images(call),
            _ => self.text(call),
        }
    }
}

/// The mock sends nothing upstream: what the glue never asks of it fails plainly.
fn in_process() -> ApiError {
    ApiError::new(
        ErrorCode::InternalError,
        "The mock provider answers in process; it has no upstream.",
    )
}

impl ProviderAdapter for MockAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mock
    }

    fn local(&self) -> Option<&dyn LocalAnswer> {
        Some(self)
    }

    fn request(&self, _: &Call<'_>, _: &Deployment) -> Result<UpstreamRequest, ApiError> {
        Err(in_process())
    }

    fn response(&self, _: &Call<'_>, _: &[u8]) -> Result<Answer, ApiError> {
        Err(in_process())
    }

    fn stream(&self, _: &Call<'_>) -> Box<dyn StreamTranslator> {
        Box::<NoStream>::default()
    }

    fn client_error(&self, _: u16, _: &[u8]) -> ClientError {
        in_process().into()
    }

    fn probe(&self, _: &Deployment) -> ProbeRequest {
        ProbeRequest {
            path: String::new(),
            headers: Vec::new(),
        }
    }
}

/// The translator of a stream the mock never receives: any bytes are a fault.
#[derive(Default)]
struct NoStream {
    state: StreamState,
}

impl StreamTranslator for NoStream {
    fn push(&mut self, _: &[u8], _: &mut BytesMut) -> Result<(), StreamFault> {
        Err(StreamFault::MALFORMED)
    }
    fn state(&self) -> &StreamState {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Ingress;
    use crate::request::RequestBody;

    fn answer(route: Route, raw: &[u8]) -> Local {
        let body = RequestBody::parse(raw, &route).unwrap();
        let call = Call {
            route: &route,
            body: &body,
            raw,
            alias: "m",
            request_id: "req-1",
            created: 7,
            ingress: Ingress::OpenAi,
            now: std::time::SystemTime::UNIX_EPOCH,
        };
        let adapter = MockAdapter {
            settings: MockSettings {
                chunks: 3,
                ttft_ms: 5,
                chunk_interval_ms: 2,
                ..MockSettings::default()
            },
        };
        adapter.local().unwrap().answer(&call)
    }

    #[test]
    fn answers_are_described_whole_with_their_usage_and_delays() {
        let chat = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let Local::Json { body, usage, .. } = answer(Route::Chat, chat) else {
            panic!("a JSON answer");
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["id"], "chatcmpl-req-1");
        assert_eq!(json["created"], 7);
        assert_eq!(usage.completion_tokens, 3);
        let streamed =
            br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let Local::Stream(stream) = answer(Route::Chat, streamed) else {
            panic!("a stream");
        };
        let delays: Vec<u64> = stream
            .chunks
            .iter()
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, [5, 2, 2]);
        assert_eq!(stream.tokens_per_chunk, 1);
        assert!(stream.opening.is_some());
        assert!(stream.closing.ends_with(b"data: [DONE]\n\n"));
    }
}
