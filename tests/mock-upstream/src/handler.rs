//! One request: record it, route it (OpenAI, Anthropic or Azure OpenAI), check what the
//! provider checks, play the scripted behaviour and answer.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::behaviour::{Behaviour, Fail};
use crate::body::{InFlight, MockBody, StreamItem};
use crate::complete::{self, Call};
use crate::conn::ConnControl;
use crate::openai::{self, Dialect, Flavour};
use crate::{anthropic, azure, bedrock, huggingface, vertex, RecordedRequest, Shared};

/// The control endpoint: the instance's default behaviour.
const BEHAVIOUR_PATH: &str = "/__mock/behaviour";

/// The control endpoint: the requests recorded so far.
const REQUESTS_PATH: &str = "/__mock/requests";

/// What to send back.
pub(crate) enum Reply {
    Json {
        status: StatusCode,
        body: String,
        /// `retry-after` in seconds.
        retry_after: Option<u64>,
    },
    /// A 200 JSON answer of `length` bytes sent in timed pieces (`chunk-delay`, `cut-after`).
    JsonPieces {
        length: usize,
        rx: mpsc::Receiver<StreamItem>,
    },
    Stream(mpsc::Receiver<StreamItem>),
    /// A Bedrock error: `x-amzn-ErrorType` header, `{"message"}` body.
    Aws {
        status: StatusCode,
        error_type: &'static str,
        body: String,
    },
    /// A Bedrock event stream (`application/vnd.amazon.eventstream`).
    EventStream(mpsc::Receiver<StreamItem>),
    /// `reset-after-headers`: a 200 head of this content type, then a TCP reset.
    Reset {
        content_type: &'static str,
    },
}

impl Reply {
    pub(crate) fn ok(body: String) -> Reply {
        Reply::Json {
            status: StatusCode::OK,
            body,
            retry_after: None,
        }
    }

    /// A JSON answer of any status, without `retry-after`.
    pub(crate) fn json(status: StatusCode, body: String) -> Reply {
        Reply::Json {
            status,
            body,
            retry_after: None,
        }
    }

    /// An OpenAI `invalid_request_error`.
    pub(crate) fn error(
        status: StatusCode,
        message: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Reply {
        let body = openai::error_body(message, "invalid_request_error", param, code);
        Reply::json(status, body)
    }
}

/// The operations served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Models,
    Chat,
    Completions,
    Embeddings,
    Images,
}

/// The hyper service function.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    control: Arc<ConnControl>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, Unanswered> {
    let reused = control.reused();
    if request.uri().path() == BEHAVIOUR_PATH {
        return Ok(behaviour_endpoint(&shared, request).await);
    }
    if request.uri().path() == REQUESTS_PATH {
        return Ok(requests_endpoint(&shared));
    }
    let in_flight = InFlight::enter(&shared);
    let seq = shared.next_seq();
    let (parts, body) = request.into_parts();
    let (body, body_ok) = match body.collect().await {
        Ok(collected) => (collected.to_bytes(), true),
        Err(_) => (Bytes::new(), false),
    };
    shared.record(RecordedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    });
    if reused && closes_reused(&shared, &parts, &body) {
        return Err(Unanswered);
    }
    let reply = if body_ok {
        respond(&shared, &parts, &body, seq).await
    } else {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "The request body could not be read.",
            None,
            None,
        )
    };
    Ok(into_response(reply, seq, in_flight, &control))
}

/// A request left unanswered on purpose (`close-reused`): hyper closes its connection.
#[derive(Debug)]
pub(crate) struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock upstream: close-reused")
    }
}

impl std::error::Error for Unanswered {}

/// Whether `close-reused` applies: the instance's default behaviour, the `model` string or
/// the `x-mock-behaviour` header asks for it.
fn closes_reused(shared: &Shared, parts: &Parts, body: &[u8]) -> bool {
    let mut behaviour = Behaviour::default();
    behaviour.apply(&shared.default_behaviour());
    if let Some(model) = json_object(body).and_then(|object| {
        object
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) {
        behaviour.apply(&model);
    }
    behaviour.apply(header_behaviour(parts).unwrap_or_default());
    behaviour.close_reused
}

/// `GET` / `POST /__mock/behaviour`: read or set the instance's default behaviour.
async fn behaviour_endpoint(shared: &Shared, request: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = request.into_parts();
    let (status, spec) = match parts.method {
        Method::GET => (StatusCode::OK, shared.default_behaviour()),
        Method::POST | Method::PUT => match body.collect().await.map(|b| b.to_bytes()) {
            Ok(bytes) => match std::str::from_utf8(&bytes) {
                Ok(spec) => {
                    shared.set_default_behaviour(spec);
                    (StatusCode::OK, shared.default_behaviour())
                }
                Err(_) => (StatusCode::BAD_REQUEST, shared.default_behaviour()),
            },
            Err(_) => (StatusCode::BAD_REQUEST, shared.default_behaviour()),
        },
        _ => (StatusCode::METHOD_NOT_ALLOWED, shared.default_behaviour()),
    };
    let body = format!(r#"{{"behaviour":{}}}"#, openai::quote(&spec));
    let mut response = Response::new(MockBody::untracked(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `GET /__mock/requests`: every recorded request as `{"data": [{method, path, headers, body}]}`
/// (headers as `[name, value]` pairs, the body as text, lossily decoded), in order of arrival.
fn requests_endpoint(shared: &Shared) -> Response<MockBody> {
    let data: Vec<Value> = shared
        .recorded()
        .iter()
        .map(|r| {
            serde_json::json!({
                "method": r.method,
                "path": r.path,
                "headers": r.headers,
                "body": String::from_utf8_lossy(&r.body),
            })
        })
        .collect();
    let body = serde_json::json!({ "data": data }).to_string();
    let mut response = Response::new(MockBody::untracked(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn into_response(
    reply: Reply,
    seq: u64,
    in_flight: InFlight,
    control: &ConnControl,
) -> Response<MockBody> {
    let request_id =
        HeaderValue::from_str(&format!("mock-{seq}")).unwrap_or(HeaderValue::from_static("mock"));
    let mut response = match reply {
        Reply::Json {
            status,
            body,
            retry_after,
        } => {
            let mut response = Response::new(MockBody::full(Bytes::from(body), in_flight));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        Reply::JsonPieces { length, rx } => {
            let mut response = Response::new(MockBody::channel(rx, in_flight));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            // The whole body's length, so a cut answer is visibly incomplete.
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
            response
        }
        Reply::Aws {
            status,
            error_type,
            body,
        } => {
            let mut response = Response::new(MockBody::full(Bytes::from(body), in_flight));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert("x-amzn-errortype", HeaderValue::from_static(error_type));
            response
        }
        Reply::EventStream(rx) => {
            let mut response = Response::new(MockBody::channel(rx, in_flight));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.amazon.eventstream"),
            );
            response
        }
        Reply::Reset { content_type } => {
            control.reset_on_close();
            let mut response = Response::new(MockBody::reset(in_flight));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        Reply::Stream(rx) => {
            let mut response = Response::new(MockBody::channel(rx, in_flight));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    };
    response.headers_mut().insert("x-request-id", request_id);
    response
}

async fn respond(shared: &Shared, parts: &Parts, body: &[u8], seq: u64) -> Reply {
    let path = parts.uri.path();
    let under_messages = path
        .strip_prefix(anthropic::MESSAGES_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if under_messages {
        return anthropic::respond(shared, parts, body, seq).await;
    }
    if crate::entra::serves(path) {
        return crate::entra::token(shared, parts, body);
    }
    if path.starts_with(azure::PATH_PREFIX) {
        return azure::respond(shared, parts, body, seq).await;
    }
    if huggingface::serves(path) {
        return huggingface::respond(shared, parts, body);
    }
    if vertex::is_google_path(path) {
        return vertex::respond(shared, parts, body, seq).await;
    }
    if path.starts_with(bedrock::MODEL_PREFIX) || path == bedrock::ASYNC_INVOKE_PATH {
        return bedrock::respond(shared, parts, body, seq).await;
    }
    if let Some(key) = &shared.config.api_key {
        if let Some(reply) = check_auth(parts, key) {
            return reply;
        }
    }
    let endpoint = match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/v1/models") => Endpoint::Models,
        (&Method::POST, "/v1/chat/completions") => Endpoint::Chat,
        (&Method::POST, "/v1/completions") => Endpoint::Completions,
        (&Method::POST, "/v1/embeddings") => Endpoint::Embeddings,
        (&Method::POST, "/v1/images/generations") => Endpoint::Images,
        (method, path) => {
            return Reply::error(
                StatusCode::NOT_FOUND,
                &format!("Invalid URL ({method} {path})"),
                None,
                None,
            );
        }
    };
    let header_behaviour = header_behaviour(parts);

    let mut behaviour = Behaviour::default();
    behaviour.apply(&shared.default_behaviour());

    if endpoint == Endpoint::Models {
        behaviour.apply(header_behaviour.unwrap_or_default());
        if let Some(reply) = play_common(&behaviour, false, |fail| {
            openai_failure(fail, &behaviour, "gpt-test")
        })
        .await
        {
            return reply;
        }
        return Reply::ok(openai::MODEL_LIST.to_owned());
    }

    let request = match json_object(body) {
        Some(map) => map,
        None => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your \
                 HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
                None,
                None,
            );
        }
    };
    let model = match request.get("model") {
        Some(Value::String(model)) => model.as_str(),
        Some(_) => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "Invalid type for 'model': expected a string.",
                Some("model"),
                Some("invalid_type"),
            )
        }
        None => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "you must provide a model parameter",
                Some("model"),
                None,
            )
        }
    };
    behaviour.apply(model);
    behaviour.apply(header_behaviour.unwrap_or_default());
    let streamed = request.get("stream") == Some(&Value::Bool(true));
    let streamed = streamed && !matches!(endpoint, Endpoint::Embeddings | Endpoint::Images);
    if let Some(reply) = play_common(&behaviour, streamed, |fail| {
        openai_failure(fail, &behaviour, model)
    })
    .await
    {
        return reply;
    }

    let call = Call {
        shared,
        request: &request,
        behaviour: &behaviour,
        model,
        dialect: if behaviour.tgi {
            Dialect::Tgi
        } else {
            Dialect::OpenAi
        },
        seq,
    };
    match endpoint {
        Endpoint::Embeddings => complete::embeddings(&request, model),
        Endpoint::Images => crate::images::generate(&request, model, false),
        Endpoint::Chat => complete::completion(&call, Flavour::Chat),
        Endpoint::Completions => complete::completion(&call, Flavour::Completion),
        Endpoint::Models => Reply::ok(openai::MODEL_LIST.to_owned()),
    }
}

/// The `x-mock-behaviour` header's directives, if any.
pub(crate) fn header_behaviour(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get("x-mock-behaviour")
        .and_then(|v| v.to_str().ok())
}

/// A header's value as text (`None`: absent or not visible ASCII).
pub(crate) fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request body as a JSON object, `None` if it is not one.
pub(crate) fn json_object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        Ok(_) | Err(_) => None,
    }
}

/// 401 unless `Authorization: Bearer <key>` matches exactly.
fn check_auth(parts: &Parts, key: &str) -> Option<Reply> {
    let given = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let expected = format!("Bearer {key}");
    let message = match given {
        Some(given) if given == expected.as_bytes() => return None,
        Some(_) => {
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
        }
        None => {
            "You didn't provide an API key. You need to provide your API key in an Authorization header using \
             Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        }
    };
    Some(Reply::error(
        StatusCode::UNAUTHORIZED,
        message,
        None,
        Some("invalid_api_key"),
    ))
}

/// `hang`, `slow-*`, `fail-*` and `reset-after-headers`, common to every route (`streamed`:
/// the request asked for a stream); `failure` shapes a scripted failure the way the route's
/// provider does.
pub(crate) async fn play_common(
    behaviour: &Behaviour,
    streamed: bool,
    failure: impl FnOnce(Fail) -> Reply,
) -> Option<Reply> {
    if behaviour.hang {
        // Never answer; hyper drops this future when the client goes away.
        std::future::pending::<()>().await;
    }
    if !behaviour.slow.is_zero() {
        tokio::time::sleep(behaviour.slow).await;
    }
    match behaviour.fail {
        Some(fail) => Some(failure(fail)),
        None => behaviour.reset_after_headers.then_some(Reply::Reset {
            content_type: if streamed {
                "text/event-stream"
            } else {
                "application/json"
            },
        }),
    }
}

/// 529, Anthropic's "overloaded" status.
pub(crate) fn status_529() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// A scripted failure in OpenAI's shapes.
pub(crate) fn openai_failure(fail: Fail, behaviour: &Behaviour, model: &str) -> Reply {
    let server_error = |status: StatusCode, message: &str| {
        Reply::json(
            status,
            openai::error_body(message, "server_error", None, None),
        )
    };
    match fail {
        Fail::Internal => server_error(StatusCode::INTERNAL_SERVER_ERROR, "mock internal error"),
        Fail::BadGateway => server_error(StatusCode::BAD_GATEWAY, "mock bad gateway (fail-502)"),
        Fail::Unavailable => server_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is overloaded or not ready yet (mock fail-503).",
        ),
        Fail::Overloaded => server_error(status_529(), "The server is overloaded (mock fail-529)."),
        Fail::RateLimited => {
            let seconds = behaviour.retry_after.unwrap_or(1);
            Reply::Json {
                status: StatusCode::TOO_MANY_REQUESTS,
                body: openai::error_body(
                    &format!(
                        "Rate limit reached for {model} (mock). Please try again in {seconds}s."
                    ),
                    "requests",
                    None,
                    Some("rate_limit_exceeded"),
                ),
                retry_after: Some(seconds),
            }
        }
        Fail::BadRequest => Reply::error(
            StatusCode::BAD_REQUEST,
            "mock bad request (fail-400)",
            None,
            None,
        ),
    }
}
