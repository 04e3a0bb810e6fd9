//! One request: record it, check what OpenAI checks, play the scripted behaviour and answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::behaviour::{Behaviour, Fail};
use crate::body::{InFlight, MockBody, StreamItem};
use crate::conn::ConnControl;
use crate::openai::{self, Answer, Flavour, StreamEvents, Usage};
use crate::stream;
use crate::{RecordedRequest, Shared};

/// The control endpoint: the instance's default behaviour.
const BEHAVIOUR_PATH: &str = "/__mock/behaviour";

/// What to send back.
enum Reply {
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
    /// `reset-after-headers`: a 200 head of this content type, then a TCP reset.
    Reset {
        content_type: &'static str,
    },
}

impl Reply {
    fn ok(body: String) -> Reply {
        Reply::Json {
            status: StatusCode::OK,
            body,
            retry_after: None,
        }
    }

    fn error(status: StatusCode, message: &str, param: Option<&str>, code: Option<&str>) -> Reply {
        let body = openai::error_body(message, "invalid_request_error", param, code);
        Reply::Json {
            status,
            body,
            retry_after: None,
        }
    }
}

/// The operations served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Models,
    Chat,
    Completions,
    Embeddings,
}

/// The hyper service function.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    control: Arc<ConnControl>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    if request.uri().path() == BEHAVIOUR_PATH {
        return Ok(behaviour_endpoint(&shared, request).await);
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
        (method, path) => {
            return Reply::error(
                StatusCode::NOT_FOUND,
                &format!("Invalid URL ({method} {path})"),
                None,
                None,
            );
        }
    };
    let header_behaviour = parts
        .headers
        .get("x-mock-behaviour")
        .and_then(|v| v.to_str().ok());

    let mut behaviour = Behaviour::default();
    behaviour.apply(&shared.default_behaviour());

    if endpoint == Endpoint::Models {
        behaviour.apply(header_behaviour.unwrap_or_default());
        if let Some(reply) = play_common(&behaviour, "gpt-test", false).await {
            return reply;
        }
        return Reply::ok(openai::MODEL_LIST.to_owned());
    }

    let request = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => {
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
    let streamed = streamed && endpoint != Endpoint::Embeddings;
    if let Some(reply) = play_common(&behaviour, model, streamed).await {
        return reply;
    }

    match endpoint {
        Endpoint::Embeddings => embeddings(&request, model),
        Endpoint::Chat | Endpoint::Completions => {
            let flavour = if endpoint == Endpoint::Chat {
                Flavour::Chat
            } else {
                Flavour::Completion
            };
            let prompt_tokens = match prompt_tokens(&request, flavour) {
                Ok(tokens) => tokens,
                Err(reply) => return reply,
            };
            completion(
                shared,
                &request,
                &behaviour,
                flavour,
                model,
                prompt_tokens,
                seq,
            )
        }
        Endpoint::Models => Reply::ok(openai::MODEL_LIST.to_owned()),
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

/// `hang`, `slow-*`, `fail-*` and `reset-after-headers`, common to every endpoint (`streamed`:
/// the request asked for a stream).
async fn play_common(behaviour: &Behaviour, model: &str, streamed: bool) -> Option<Reply> {
    if behaviour.hang {
        // Never answer; hyper drops this future when the client goes away.
        std::future::pending::<()>().await;
    }
    if !behaviour.slow.is_zero() {
        tokio::time::sleep(behaviour.slow).await;
    }
    let server_error = |status: StatusCode, message: &str| Reply::Json {
        status,
        body: openai::error_body(message, "server_error", None, None),
        retry_after: None,
    };
    let Some(fail) = behaviour.fail else {
        return behaviour.reset_after_headers.then_some(Reply::Reset {
            content_type: if streamed {
                "text/event-stream"
            } else {
                "application/json"
            },
        });
    };
    match fail {
        Fail::Internal => Some(server_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mock internal error",
        )),
        Fail::BadGateway => Some(server_error(
            StatusCode::BAD_GATEWAY,
            "mock bad gateway (fail-502)",
        )),
        Fail::Unavailable => Some(server_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is overloaded or not ready yet (mock fail-503).",
        )),
        Fail::RateLimited => {
            let seconds = behaviour.retry_after.unwrap_or(1);
            Some(Reply::Json {
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
            })
        }
        Fail::BadRequest => Some(Reply::error(
            StatusCode::BAD_REQUEST,
            "mock bad request (fail-400)",
            None,
            None,
        )),
    }
}

/// Validates `messages` / `prompt` and counts the prompt's tokens.
fn prompt_tokens(request: &Map<String, Value>, flavour: Flavour) -> Result<u64, Reply> {
    match flavour {
        Flavour::Chat => match request.get("messages") {
            Some(Value::Array(messages)) if !messages.is_empty() => Ok(openai::chat_prompt_tokens(messages)),
            Some(Value::Array(_)) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                Some("messages"),
                Some("empty_array"),
            )),
            Some(_) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Invalid type for 'messages': expected an array of objects.",
                Some("messages"),
                Some("invalid_type"),
            )),
            None => Err(missing("messages")),
        },
        Flavour::Completion => match request.get("prompt") {
            Some(prompt @ (Value::String(_) | Value::Array(_))) => Ok(openai::input_tokens(prompt)),
            Some(_) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Invalid type for 'prompt': expected a string or an array.",
                Some("prompt"),
                Some("invalid_type"),
            )),
            None => Err(missing("prompt")),
        },
    }
}

fn missing(param: &str) -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        &format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

/// Number of embedding inputs: a string, an array of strings, a token array or an array of
/// token arrays.
fn embedding_items(input: &Value) -> Option<usize> {
    let is_token = |v: &Value| v.as_u64().is_some();
    match input {
        Value::String(_) => Some(1),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_string) => Some(items.len()),
        Value::Array(items) if items.iter().all(is_token) => Some(1),
        Value::Array(items) => items
            .iter()
            .all(|item| {
                item.as_array()
                    .is_some_and(|tokens| !tokens.is_empty() && tokens.iter().all(is_token))
            })
            .then_some(items.len()),
        _ => None,
    }
}

fn embeddings(request: &Map<String, Value>, model: &str) -> Reply {
    let Some(input) = request.get("input") else {
        return missing("input");
    };
    let Some(items) = embedding_items(input) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "Invalid 'input': expected a non-empty string, an array of strings or an array of token arrays.",
            Some("input"),
            Some("invalid_value"),
        );
    };
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    Reply::ok(openai::embeddings(
        model,
        items,
        base64,
        openai::input_tokens(input),
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn completion(
    shared: &Shared,
    request: &Map<String, Value>,
    behaviour: &Behaviour,
    flavour: Flavour,
    model: &str,
    prompt_tokens: u64,
    seq: u64,
) -> Reply {
    let n = behaviour.chunks.unwrap_or(shared.config.default_chunks);
    let chunks = openai::chunks(n);
    let id = match flavour {
        Flavour::Chat => format!("chatcmpl-mock-{seq}"),
        Flavour::Completion => format!("cmpl-mock-{seq}"),
    };
    let answer = Answer {
        id: &id,
        created: unix_now(),
        model,
        chunks: &chunks,
        usage: Usage {
            prompt: prompt_tokens,
            completion: n as u64,
        },
    };
    if request.get("stream") != Some(&Value::Bool(true)) {
        let body = if behaviour.malformed {
            "{not json".to_owned()
        } else {
            match flavour {
                Flavour::Chat => openai::chat_completion(&answer),
                Flavour::Completion => openai::text_completion(&answer),
            }
        };
        if behaviour.chunk_delay.is_zero() && behaviour.cut_after.is_none() {
            return Reply::ok(body);
        }
        let length = body.len();
        return Reply::JsonPieces {
            length,
            rx: stream::start_pieces(Bytes::from(body), n, behaviour),
        };
    }
    let asked_usage = request
        .get("stream_options")
        .and_then(|options| options.get("include_usage"))
        .is_some_and(|v| v == &Value::Bool(true));
    let events = StreamEvents {
        answer,
        flavour,
        include_usage: asked_usage && !behaviour.no_usage,
    };
    Reply::Stream(stream::start(&events, behaviour))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_inputs() {
        use serde_json::json;
        assert_eq!(embedding_items(&json!("a")), Some(1));
        assert_eq!(embedding_items(&json!(["a", "b"])), Some(2));
        assert_eq!(embedding_items(&json!([1, 2, 3])), Some(1));
        assert_eq!(embedding_items(&json!([[1], [2, 3]])), Some(2));
        assert_eq!(embedding_items(&json!([])), None);
        assert_eq!(embedding_items(&json!([[]])), None);
        assert_eq!(embedding_items(&json!(["a", 1])), None);
        assert_eq!(embedding_items(&json!(7)), None);
    }
}
