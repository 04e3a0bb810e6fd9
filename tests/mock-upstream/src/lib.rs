//! A scriptable upstream for the gateway's integration tests, end-to-end tests and benchmarks,
//! speaking three providers' wire formats: OpenAI's, Anthropic's Messages API and Azure
//! OpenAI's. Each route checks what the real provider checks, so a gateway that translates
//! wrongly is refused, and answers in the provider's shapes with deterministic content.
//! Every request is recorded (method, path with its query string, headers, the whole body;
//! see [`RecordedRequest::query`]) and counted, whatever the route.
//!
//! # Routes
//!
//! **OpenAI** — `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings` over HTTP/1.1 (keep-alive). Checks: `Authorization: Bearer <key>`
//! (when [`MockConfig::api_key`] is set, else 401 `invalid_api_key`), a JSON object body,
//! `model` (a string), `messages` (a non-empty array) / `prompt` / `input`; for chat,
//! `tools` (`{type: "function", function: {name}}`, names `^[a-zA-Z0-9_-]{1,64}$`),
//! `tool_choice` (`none|auto|required` or a named function among `tools`, only with `tools`)
//! and the pairing of `tool` messages with the assistant's `tool_calls` (see
//! `openai::tools`). A chat answer calls the first tool (arguments `{"location":"Paris"}`,
//! `finish_reason: tool_calls`, streamed in argument pieces) when `tool_choice` forces it or
//! the last message is a user's mentioning the weather. Errors are
//! `{"error":{"message","type","param","code"}}`.
//!
//! **Anthropic** — `POST /v1/messages` and `POST /v1/messages/count_tokens` (other methods
//! and paths below `/v1/messages`: 404 `not_found_error`). Checks, in
//! order, each failing with `{"type":"error","error":{"type","message"}}`:
//! - `x-api-key: <key>` (when a key is configured; `Authorization: Bearer` does not count):
//!   else 401 `authentication_error` (`x-api-key header is required` / `invalid x-api-key`);
//! - `anthropic-version: YYYY-MM-DD`: else 400 `invalid_request_error` naming the header;
//! - the body, else 400 `invalid_request_error` with a message like Anthropic's
//!   (`<path>: <problem>`, e.g. `n: Extra inputs are not permitted`): a JSON object with only
//!   Anthropic's top-level fields (`model`, `messages`, `max_tokens`, `system`, `metadata`,
//!   `stop_sequences`, `stream`, `temperature`, `top_p`, `top_k`, `tools`, `tool_choice`,
//!   `thinking`, `service_tier`: OpenAI's `n`, `stream_options`, `frequency_penalty`, … are
//!   refused); `model` a string; `max_tokens` an integer ≥ 1; `messages` a non-empty array of
//!   `{role, content}` (no other keys, so no `tool_calls`), role `user` or `assistant` (a
//!   `system` role is refused), the first one `user`, content a non-empty string or non-empty
//!   array of blocks — `text` (non-empty), `image` (`base64` source of `image/jpeg|png|gif|webp`
//!   whose decoded bytes are of that type, or an `http(s)` `url` source), `tool_use` (assistant
//!   only; `id`, `name`, object `input`), `tool_result` (user only; `tool_use_id`, string or
//!   text/image `content`, `is_error`); every `tool_result` answers a `tool_use` of the message
//!   before, and every `tool_use` is answered in the next message (when there is one); a final
//!   assistant message (a prefill) may be empty but must not end with whitespace; `system` a
//!   string or `text` blocks; `tools` custom tools (`name` `^[a-zA-Z0-9_-]{1,128}$`, unique,
//!   `description` a string, `input_schema` an object with `type: "object"`; OpenAI's
//!   `{type: "function", function}` is refused) or versioned server tools (`web_search_20250305`);
//!   `tool_choice` an object `{type: auto|any|none}` or `{type: tool, name}` naming a tool,
//!   optionally `disable_parallel_tool_use`; `stop_sequences` strings, not only whitespace;
//!   `temperature` and `top_p` in 0..=1; `top_k` an integer ≥ 0; `stream` a boolean;
//!   `metadata` only `user_id` (a string); `thinking` `disabled` or `enabled` with
//!   1024 ≤ `budget_tokens` < `max_tokens`.
//!
//! The body is checked before the scripted behaviour is played. The answer is a `message`
//! (`id` `msg_mock_<n>`, the request's `model`) with the text of the OpenAI routes
//! (`w0 w1 … w{n-1}.`), `stop_reason` `end_turn` and `usage` (`input_tokens`: words of
//! `system` and the messages' text, as the OpenAI routes count prompt tokens; `output_tokens`:
//! the chunks, plus 3 for a tool call; cache tokens 0). With custom `tools`, a `tool_choice`
//! other than `none`, and either `tool_choice` `any` / `tool` or the word "weather" in the last
//! user message, the answer calls a tool: a `tool_use` block `{id: "toolu_mock_<n>", name: the
//! named or the first tool, input: {"location":"Paris"}}` (after the text unless forced),
//! `stop_reason: "tool_use"`. A stop sequence found in the text ends it before the sequence
//! (`stop_reason: "stop_sequence"`); `max_tokens` below the output tokens truncates the text
//! to `max_tokens` chunks, drops the tool call and says `max_tokens`. A stream (`stream:
//! true`) is `event: <type>\ndata: <json>\n\n` frames: `message_start` (empty content,
//! `output_tokens` 1), for the text `content_block_start`, `ping`, a `text_delta` per chunk,
//! `content_block_stop`; for a tool call `content_block_start` (`input: {}`), four
//! `input_json_delta` pieces split mid-token (the first empty), `content_block_stop`; then
//! `message_delta` (`stop_reason`, `stop_sequence`, `usage.output_tokens`) and
//! `message_stop`.
//!
//! `count_tokens` has the same header checks; its body may hold only `model`, `messages`,
//! `system`, `tools`, `tool_choice` and `thinking` (checked as above; `max_tokens`, `stream`
//! and the other Messages-only fields are refused as extra inputs, as Anthropic does). The
//! answer is `{"input_tokens": n}`: the words of `system` and the messages' text plus 1000
//! (so a forwarded count never equals the gateway's own estimate). Scripted behaviours from
//! the model name and headers apply as on `/v1/messages`.
//!
//! **Hugging Face embeddings** — TEI's `POST /embed` and `GET /health`, the Inference API's
//! `POST /hf-inference/models/{model}/pipeline/feature-extraction`: `Authorization: Bearer
//! <key>`, only the APIs' fields, `inputs` strings, TEI's batch (32) and token limits (an input
//! with `too-long`), errors `{"error","error_type"}`; see `huggingface.rs`.
//!
//! **Azure OpenAI** — `POST /openai/deployments/{deployment}/chat/completions`,
//! `…/completions`, `…/embeddings`, with `?api-version=`. Checks, in order:
//! - `api-key: <key>` or `Authorization: Bearer <key>` (Entra ID): else 401
//!   `{"error":{"code":"401","message":"Access denied due to invalid subscription key …"}}`;
//! - the path (any non-empty deployment name, percent-decoded; other paths and methods: 404
//!   `{"error":{"code":"404","message":"Resource not found"}}`);
//! - `api-version`: missing or empty, 400 `{"error":{"code":"MissingApiVersionParameter",…}}`;
//!   not `YYYY-MM-DD` or `YYYY-MM-DD-preview`, 404 `Resource not found`;
//! - the body as on the OpenAI routes, except that `model` is optional (a string if sent).
//!
//! Answers are the OpenAI routes' with `model` = the deployment, plus Azure's content filter
//! annotations: `prompt_filter_results` (all four categories `safe`) and per choice
//! `content_filter_results`. A stream starts with Azure's prompt filter chunk (`choices: []`,
//! empty `id`, `model` and `object`, `created: 0`), its role and finish chunks carry
//! `content_filter_results: {}`, its content chunks the `safe` results. Scripted 429s are
//! Azure's (`{"error":{"code":"429","message":"Requests to the ChatCompletions_Create
//! Operation under Azure OpenAI API version … Please retry after <s> seconds. …"}}`), other
//! failures OpenAI's.
//!
//! **Google** (Vertex AI, the Gemini API and the service-account token endpoint) —
//! `POST /token` (the JWT-bearer grant; the RS256 assertion is verified against the test
//! service account [`TEST_SERVICE_ACCOUNT`], its `iss`, `aud`, `scope` and `exp`),
//! `POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`,
//! `:streamGenerateContent?alt=sse`, `:predict` (text embeddings and Imagen; bearer token
//! minted by `/token`, unexpired, else 401 `UNAUTHENTICATED`), and
//! `POST /v1beta/models/{m}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:batchEmbedContents`, `:predict` (Imagen) (`x-goog-api-key`). Bodies are
//! checked like Gemini (roles `user`/`model`, one data field per part, function responses
//! answering the previous turn's calls, no unknown fields, Gemini's schema subset). Directives
//! `safety-block`, `prompt-block`, `thinking` (thought signatures required back) and
//! `stream-error`, and `content-filter` (every Imagen image filtered); see `vertex.rs`. [`MockUpstream::set_token_lifetime`] shortens tokens.
//!
//! **AWS Bedrock Runtime** — `POST /model/{modelId}/converse`, `…/converse-stream`,
//! `…/invoke` (Titan text embeddings; image generation in the Titan / Nova Canvas, Stability
//! AI and SDXL bodies, `content-filter` filtering every image) and `GET /async-invoke`. With a configured key, the
//! credential is checked first: `Authorization: Bearer <key>` (a Bedrock API key), or a SigV4
//! signature by access key [`BEDROCK_ACCESS_KEY_ID`] whose secret is the key, recomputed from
//! the received method, path (double-encoded canonical URI), query, signed headers and body,
//! with `x-amz-date` within five minutes; failures are 403 with `x-amzn-ErrorType`
//! (`InvalidSignatureException`, `UnrecognizedClientException`,
//! `MissingAuthenticationTokenException`, …) and `{"message"}`. Converse bodies are checked
//! like Bedrock: only Converse's top-level fields, `messages` alternating from a user turn,
//! one-member content blocks (non-blank `text`, `image` bytes of their format, `toolUse` in
//! assistant turns, `toolResult` in user turns answering the previous turn's `toolUse` ids),
//! `toolConfig` present when tools are used, `inferenceConfig` ranges. Answers mirror the
//! Anthropic routes' plan (text chunks, a `toolUse` for weather questions or a forced
//! `toolChoice`, stop sequences, `maxTokens`); streams are real event-stream frames with
//! CRCs, each delta frame sent in two pieces, `metadata` (usage) after `messageStop`.
//! `stream-error` sends a `throttlingException` frame after the first delta; `corrupt-crc`
//! breaks the second delta frame's CRC. Titan answers a deterministic unit vector (1024
//! dimensions unless `dimensions` says 256 or 512) and `inputTextTokenCount`.
//!
//! # Scripted behaviour
//!
//! Behaviour is scripted by `+`-separated directives, e.g.
//! `gpt-test+chunks-4+chunk-delay-50+cut-after-2`, read in this order (later ones win):
//! the instance's default ([`MockUpstream::set_behaviour`], or `POST /__mock/behaviour`),
//! on Azure routes the deployment name, the request's `model` string, the `x-mock-behaviour`
//! header. Unknown directives are ignored. They apply to every route unless said otherwise;
//! failures take the route's provider's error shape.
//!
//! - `fail-500`, `fail-502`, `fail-503`: that status with an OpenAI `server_error` body
//!   (Anthropic: `api_error`).
//! - `fail-529`: 529, Anthropic's `overloaded_error` (`server_error` on the other routes).
//! - `fail-429`: 429 `rate_limit_exceeded` with `retry-after: 1`; `retry-after-<s>` sets the
//!   value (Anthropic: `rate_limit_error`; Azure: its `code: "429"` body).
//! - `fail-400`: 400 `invalid_request_error`.
//! - `slow-<ms>`: wait before the response head. `hang`: never answer.
//! - `reset-after-headers`: send the 200 head (`text/event-stream` for streams, else
//!   `application/json`), then drop the connection with a TCP reset: no body.
//! - `close-reused`: a request arriving on a kept-alive connection that already served one
//!   is read and recorded, then the connection is closed without an answer (a server whose
//!   idle timeout fires just as a request arrives). Requests on new connections are answered.
//! - `chunks-<n>`: content chunks of the answer (default [`MockConfig::default_chunks`]).
//! - `chunk-delay-<ms>`: a stream waits before each content chunk (a chat stream's first
//!   event, the assistant role, goes at once); a JSON answer is sent as `n` pieces (`n` =
//!   `chunks`), the head at once and the delay before each piece.
//! - `gated` (OpenAI-shaped streams): each content chunk waits until the test calls
//!   [`open_gate`] once more, so a test proves chunks are forwarded one at a time (lockstep)
//!   without measuring time. The gate is process-wide (one test per process under nextest).
//! - `cut-after-<n>`: a stream drops the connection after `n` content chunks (no finish, no
//!   `[DONE]`, no terminating chunk); a JSON answer, whose head announces the whole body's
//!   `content-length`, drops it after `min(n, chunks − 1)` pieces, so it is always incomplete.
//!   On Anthropic routes, content chunks are the `text_delta` and `input_json_delta` events;
//!   a cut stream has no `content_block_stop`, `message_delta` or `message_stop`.
//! - `malformed`: the second stream event is not JSON; a JSON answer is `{not json`.
//! - `no-usage`: OpenAI and Azure streams never carry usage (Anthropic's always do).
//! - `tgi` (OpenAI chat route; a model named `tgi`, as TGI's own): answer in Text Generation
//!   Inference's dialect — empty `id`, fingerprint `3.1.2-native`, no role chunk but
//!   `role: "assistant"` in every delta, the finish on a last empty-content delta; a tool call
//!   with `id: "0"`, repeated in every delta with its `type` and a null `name` after the
//!   first, its finish (`stop`, not `tool_calls`) on the last arguments piece, and
//!   `description: null` in a whole answer.
//! - `stream-error` (Anthropic): after the first delta, the stream sends
//!   `event: error` / `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
//!   and ends (in order, with the terminating chunk).
//! - `content-filter` (Azure chat and completions): 400 `content_filter` (`param: "prompt"`,
//!   `innererror.code: "ResponsibleAIPolicyViolation"`, `hate` filtered at `high`). A `fail-*`
//!   directive wins over it.
//! - `content-filter-completion` (OpenAI-shaped routes): a 200 answer cut to the first half of
//!   its chunks (`chunks / 2`), `finish_reason: "content_filter"`; on Azure the choice's
//!   `content_filter_results` (the stream's finish chunk's) show `violence` filtered at `medium`.
//!
//! # Control endpoint
//!
//! `POST /__mock/behaviour` with a spec as the body sets the instance's default behaviour (an
//! empty body clears it) and answers `{"behaviour":"<spec>"}`; `GET /__mock/behaviour` reads
//! it. For end-to-end tests against the `omg-mock-upstream` binary, which cannot call
//! [`MockUpstream::set_behaviour`]. It needs no API key and is neither recorded nor counted.
//! `GET /__mock/requests` answers the requests recorded so far (what
//! [`MockUpstream::requests`] returns) as `{"data": [{method, path, headers, body}]}`, the
//! body as text; end-to-end tests count provider calls with it (nothing without recording).
//!
//! Also test receivers for the control plane's budget alerts: [`smtp::SmtpServer`] (a
//! recording SMTP server) and [`webhook::WebhookReceiver`] (records requests, answers
//! scripted statuses), and [`redis_server::PrivateRedis`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use omg_mock_upstream::{MockConfig, MockUpstream};
//! let upstream = MockUpstream::start(MockConfig { api_key: Some("k".into()), ..MockConfig::default() }).await?;
//! let base = upstream.base_url(); // http://127.0.0.1:PORT/v1
//! # let _ = base;
//! assert_eq!(upstream.request_count(), 0);
//! # Ok(())
//! # }
//! ```

// A test server: its tasks need no supervision (clippy.toml bans bare spawns in the product).
#![allow(clippy::disallowed_methods)]

mod anthropic;
mod azure;
mod bedrock;
mod behaviour;
mod body;
mod complete;
mod conn;
pub mod entra;
mod handler;
mod huggingface;
mod images;
mod openai;
pub mod redis_server;
pub mod smtp;

/// The access key id the mock's Bedrock routes accept for SigV4; its secret is the mock's
/// API key ([`MockConfig::api_key`]).
pub const BEDROCK_ACCESS_KEY_ID: &str = bedrock::sigv4::ACCESS_KEY_ID;
mod stream;
#[cfg(test)]
mod tests;
mod vertex;
pub mod webhook;

pub use stream::open_gate;
pub use vertex::{test_service_account, TEST_CLIENT_EMAIL, TEST_SERVICE_ACCOUNT};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the mock behaves by default.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// The bearer key every request must carry; `None` accepts any (or none).
    pub api_key: Option<String>,
    /// Content chunks per answer unless a `chunks-<n>` directive says otherwise.
    pub default_chunks: usize,
    /// Keep every request for [`MockUpstream::requests`]; off for load tests (`--no-record`),
    /// where the list would only grow.
    pub record: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            api_key: None,
            default_chunks: 5,
            record: true,
        }
    }
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path including the query string.
    pub path: String,
    /// Headers in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `name` (as sent, not percent-decoded), e.g. Azure's
    /// `api-version`.
    pub fn query(&self, name: &str) -> Option<&str> {
        azure::query_param(self.path.split_once('?').map(|(_, q)| q), name)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// State shared by the accept loop, the connections and the handle.
pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Directives applied before each request's own (see [`MockUpstream::set_behaviour`]).
    default_behaviour: Mutex<String>,
    seq: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
    /// Google OAuth tokens minted by `POST /token`.
    pub(crate) google_tokens: vertex::TokenState,
    /// Entra ID tokens minted by `POST /{tenant}/oauth2/v2.0/token`.
    pub(crate) entra_tokens: vertex::TokenState,
    /// Anthropic's prompt cache (prefixes written so far).
    pub(crate) prompt_cache: anthropic::cache::PromptCache,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        lock(&self.requests)
    }

    /// A copy of the requests recorded so far.
    pub(crate) fn recorded(&self) -> Vec<RecordedRequest> {
        self.requests().clone()
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        if self.config.record {
            self.requests().push(request);
        }
    }

    pub(crate) fn default_behaviour(&self) -> String {
        lock(&self.default_behaviour).clone()
    }

    pub(crate) fn set_default_behaviour(&self, spec: &str) {
        *lock(&self.default_behaviour) = spec.trim().to_owned();
    }

    /// 1, 2, 3, … per request (used in ids and `x-request-id`).
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Locks, ignoring poisoning (a panicking test thread must not break the others).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running mock upstream; stops accepting when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl MockUpstream {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(config: MockConfig) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        MockUpstream::start_on(listener, config).await
    }

    /// Serves on an already bound listener, on the current tokio runtime.
    pub async fn start_on(
        listener: TcpListener,
        config: MockConfig,
    ) -> std::io::Result<MockUpstream> {
        let addr = connectable(listener.local_addr()?);
        let shared = Arc::new(Shared {
            config,
            requests: Mutex::new(Vec::new()),
            default_behaviour: Mutex::new(String::new()),
            seq: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            google_tokens: vertex::TokenState::default(),
            entra_tokens: vertex::TokenState::default(),
            prompt_cache: anthropic::cache::PromptCache::default(),
        });
        let (shutdown, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(MockUpstream {
            addr,
            shared,
            shutdown,
        })
    }

    /// The address to connect to (a wildcard bind is reported as loopback).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`: the OpenAI base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`: the base URL of Anthropic (`/v1/messages` below it) and Azure
    /// OpenAI (`/openai/deployments/…`).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order of arrival (recorded once its body is read).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// Sets the instance's default behaviour: directives (`fail-503`, `hang`, …, see the crate
    /// docs) applied to every later request before its own `model` and `x-mock-behaviour`
    /// directives. An empty spec clears it. Lets a test make a deployment fail, then recover,
    /// without changing what the gateway sends. Requests already being answered keep the
    /// behaviour they started with.
    pub fn set_behaviour(&self, spec: &str) {
        self.shared.set_default_behaviour(spec);
    }

    /// How long the Google and Entra ID access tokens minted from now on live (`expires_in`; default
    /// 3599 s, at least 1 s): short lifetimes let tests watch a client refresh them.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.google_tokens.set_lifetime(lifetime);
        self.shared.entra_tokens.set_lifetime(lifetime);
    }

    /// The instance's default behaviour (empty: none).
    pub fn behaviour(&self) -> String {
        self.shared.default_behaviour()
    }

    /// The requests received so far on `path` (without its query string), in order.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .cloned()
            .collect()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests().len()
    }

    /// Requests whose response has not finished (a stream counts until its last byte or the
    /// client leaving).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The highest [`in_flight`](Self::in_flight) seen so far.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Stops accepting connections; idle keep-alive connections are closed, responses under
    /// way finish. Also done on drop.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A wildcard address becomes the loopback address of its family.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Resolves once shutdown was asked for (or the handle is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).header_read_timeout(None);
    loop {
        let accepted = tokio::select! {
            () = stopped(stop.clone()) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let control = Arc::new(conn::ConnControl::default());
        let io = TokioIo::new(conn::Conn::new(stream, Arc::clone(&control)));
        let service = service_fn(move |request| {
            handler::handle(Arc::clone(&shared), Arc::clone(&control), request)
        });
        let connection = builder.serve_connection(io, service);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stopped(stop) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}
