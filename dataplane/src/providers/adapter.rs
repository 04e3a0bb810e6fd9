//! The one trait every provider adapter implements, and what flows through it.
//!
//! An adapter is pure: it builds the upstream request (path, provider headers with the
//! credential, body) from the client's OpenAI request, translates a JSON answer back, hands
//! out a stateful stream translator, and maps the provider's error answers. The proxy glue
//! (`crate::proxy::upstream`) owns every socket, timeout and retry; it never looks inside a
//! provider's format.

use std::fmt;
use std::time::SystemTime;

use bytes::BytesMut;
use omg_shared::error::{ErrorCode, OpenAiErrorBody};
use omg_shared::provider::ProviderKind;
use omg_shared::snapshot::Deployment;

use super::Usage;
use crate::error::ApiError;
use crate::request::{RequestBody, Route};

/// What one upstream attempt needs to know about the client's request.
pub struct Call<'a> {
    /// The endpoint called: for an Anthropic client, [`Route::Chat`] (a Messages request runs
    /// as the chat request it translates to) or [`Route::CountTokens`] (only ever sent to
    /// adapters that [count tokens](ProviderAdapter::counts_tokens)).
    pub route: &'a Route,
    /// The client's body, parsed.
    pub body: &'a RequestBody<'a>,
    /// The client's body, as sent.
    pub raw: &'a [u8],
    /// The alias the client asked for (echoed as `model` by translating adapters).
    pub alias: &'a str,
    /// The gateway's request id (names answers that carry no id of their own).
    pub request_id: &'a str,
    /// Unix seconds, the `created` of translated answers.
    pub created: i64,
    /// The API the client spoke (`body` and `raw` are always the OpenAI form).
    pub ingress: Ingress<'a>,
    /// When this attempt is made (the glue sets it per attempt): request signing.
    pub now: SystemTime,
}

/// The API a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress<'a> {
    /// OpenAI's.
    OpenAi,
    /// Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`).
    Anthropic {
        /// The client's Messages body, as sent.
        raw: &'a [u8],
        /// The client's `anthropic-beta` header.
        beta: Option<&'a str>,
    },
}

/// An upstream request, ready for the glue to send (always `POST`, JSON body).
pub struct UpstreamRequest {
    /// Path and query below the host, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Provider headers, the credential included. The glue adds `host`, `content-type`,
    /// `content-length`, `accept`, `accept-encoding`, `user-agent` and `x-request-id`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl fmt::Debug for UpstreamRequest {
    /// Header values are left out: one of them is a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("UpstreamRequest")
            .field("path", &self.path)
            .field("headers", &names)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// A `GET` that tells whether a deployment is up (active health checks).
pub struct ProbeRequest {
    /// Path and query below the host.
    pub path: String,
    /// Provider headers, the credential included.
    pub headers: Vec<(&'static str, String)>,
}

/// A translated JSON answer.
#[derive(Debug)]
pub struct Answer {
    /// The OpenAI-shaped body for the client.
    pub body: Vec<u8>,
    /// Usage the provider reported (`None`: the glue estimates).
    pub usage: Option<Usage>,
}

/// An error answer of the provider, as the client gets it.
#[derive(Debug)]
pub struct ClientError {
    /// HTTP status for the client.
    pub status: u16,
    /// OpenAI-shaped error body.
    pub body: OpenAiErrorBody,
}

impl From<ApiError> for ClientError {
    fn from(error: ApiError) -> Self {
        Self {
            status: error.code.status(),
            body: OpenAiErrorBody::new(error.code, error.message, error.param),
        }
    }
}

/// Why a stream cannot go on: the glue ends the client's stream with an in-band error (no
/// `[DONE]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFault {
    /// Metric and usage-record label.
    pub kind: &'static str,
    /// The in-band error's code.
    pub code: ErrorCode,
    /// The in-band error's message.
    pub message: &'static str,
}

impl StreamFault {
    /// An event grew past the splitter's limit.
    pub const OVERSIZED: StreamFault = StreamFault {
        kind: "upstream_protocol",
        code: ErrorCode::UpstreamError,
        message: "The upstream sent an oversized stream event.",
    };
    /// An event the translator cannot read.
    pub const MALFORMED: StreamFault = StreamFault {
        kind: "upstream_protocol",
        code: ErrorCode::UpstreamError,
        message: "The upstream sent a malformed stream event.",
    };
}

/// What a stream translator knows of its stream so far: what the relay reads to end, time and
/// bill it. Each translator keeps one (in its meter or its chunk writer) and updates it as it
/// translates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// The stream reached its proper end (`[DONE]` was written).
    pub done: bool,
    /// The provider sent an error in the stream; the in-band error was written.
    pub upstream_failed: bool,
    /// Content (text or a tool call) was written: the first token, for TTFT.
    pub saw_content: bool,
    /// Usage the provider reported so far (complete only once [`done`](Self::done)).
    pub usage: Option<Usage>,
    /// Completion tokens estimated from the content written so far.
    pub estimated_completion_tokens: u64,
}

/// Turns one provider stream into OpenAI `chat.completion.chunk` (or completion) events.
/// Bytes may be split anywhere. A translator implements [`push`](Self::push) (and
/// [`finish`](Self::finish) when its provider's streams end without a terminal event) and
/// shows its [`StreamState`]; the getters read that state.
pub trait StreamTranslator: Send {
    /// Feeds upstream bytes and appends the client events they complete to `out`. On `Err`,
    /// `out` holds what came before the bad event: send it, then the in-band error.
    fn push(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<(), StreamFault>;
    /// The upstream closed the stream cleanly (end of body). For providers whose streams end
    /// without a terminal event (Gemini): write the end (finish, usage, `[DONE]`) to `out` if
    /// what was received is a complete answer, so [`is_done`](Self::is_done) turns true;
    /// otherwise write nothing and the glue reports an interrupted stream.
    fn finish(&mut self, _out: &mut BytesMut) {}
    /// The stream's state so far.
    fn state(&self) -> &StreamState;
    /// The stream reached its proper end (`[DONE]` was written to `out`).
    fn is_done(&self) -> bool {
        self.state().done
    }
    /// The provider sent an error in the stream; the in-band error was written to `out`.
    fn upstream_failed(&self) -> bool {
        self.state().upstream_failed
    }
    /// Content (text or a tool call) was written: the first token, for TTFT.
    fn saw_content(&self) -> bool {
        self.state().saw_content
    }
    /// Usage the provider reported so far (complete only once [`is_done`](Self::is_done)).
    fn reported_usage(&self) -> Option<Usage> {
        self.state().usage
    }
    /// Completion tokens estimated from the content written so far.
    fn estimated_completion_tokens(&self) -> u64 {
        self.state().estimated_completion_tokens
    }
}

/// A provider adapter: see the module docs. One per deployment, built with the snapshot
/// (bad provider settings are refused then, not per request).
pub trait ProviderAdapter: Send + Sync + fmt::Debug {
    /// The provider kind served.
    fn kind(&self) -> ProviderKind;
    /// The upstream request for one attempt at `deployment`. `Err`: the client's request
    /// cannot be expressed for this provider (400, before any upstream call).
    fn request(
        &self,
        call: &Call<'_>,
        deployment: &Deployment,
    ) -> Result<UpstreamRequest, ApiError>;
    /// Translates a 200 JSON answer. `Err` with a 4xx code: the provider refused the client's
    /// request inside its 200 (e.g. a blocked prompt); the client gets it as is. Any other
    /// `Err`: the body is not a valid answer (the glue counts the attempt as failed and may
    /// try the next deployment).
    fn response(&self, call: &Call<'_>, body: &[u8]) -> Result<Answer, ApiError>;
    /// A translator for one streamed answer.
    fn stream(&self, call: &Call<'_>) -> Box<dyn StreamTranslator>;
    /// Maps an error answer that is the client's to see (a 4xx other than 401, 403, 404 and
    /// 429, which the glue handles as the deployment's failures).
    fn client_error(&self, status: u16, body: &[u8]) -> ClientError;
    /// The active health check's request.
    fn probe(&self, deployment: &Deployment) -> ProbeRequest;
    /// Whether the answers of this call are in the client's own dialect (the provider speaks
    /// it: no OpenAI form in between). Only then do [`response`](Self::response) and
    /// [`stream`](Self::stream) produce something other than OpenAI's shapes.
    fn answers_natively(&self, call: &Call<'_>) -> bool {
        let _ = call;
        false
    }

    /// Whether the provider counts the tokens of an Anthropic Messages request itself. Only
    /// then does the glue send it `count_tokens` calls ([`Route::CountTokens`], Anthropic
    /// ingress): [`request`](Self::request) builds the provider's token-counting request and
    /// [`response`](Self::response) passes its answer (`{"input_tokens": n}`) through, with
    /// zero usage (counting consumes no tokens). Aliases without such a deployment are
    /// answered with the gateway's own estimate.
    fn counts_tokens(&self) -> bool {
        false
    }

    /// Whether an attempt can be made now. `Err` (a message for the operator, no secret):
    /// the attempt fails as the deployment's, retryable, before any connection, e.g. while a
    /// credential minted in the background is not available yet.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// The active health check's request at `now` (adapters that sign requests need the
    /// time); by default [`probe`](Self::probe).
    fn probe_at(&self, deployment: &Deployment, now: SystemTime) -> ProbeRequest {
        let _ = now;
        self.probe(deployment)
    }
    /// The answerer of an adapter that answers in process (the built-in `mock`): the glue
    /// then sends nothing upstream and plays its answer out. `None` for real providers.
    fn local(&self) -> Option<&dyn super::mock::LocalAnswer> {
        None
    }

    /// The `accept` header of a streamed request.
    fn stream_accept(&self) -> &'static str {
        "text/event-stream"
    }
    /// Whether a 200 answer of this (lowercased) content type is the stream the adapter's
    /// translator reads.
    fn is_stream_content_type(&self, content_type: &str) -> bool {
        content_type.starts_with("text/event-stream")
    }
}

/// The path prefix of the deployment's endpoint (`/v1`, or empty).
pub(crate) fn endpoint_path(deployment: &Deployment) -> &str {
    deployment.endpoint.as_ref().map_or("", |e| e.path.as_str())
}

/// Joins an endpoint path prefix and a route path.
pub(crate) fn join(prefix: &str, path: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + path.len());
    out.push_str(prefix.trim_end_matches('/'));
    out.push_str(path);
    out
}
