//! End-to-end tests of the server with a minimal raw HTTP/1.1 client over `TcpStream`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{MockConfig, MockUpstream};

const KEY: &str = "test-key";

async fn server() -> MockUpstream {
    MockUpstream::start(MockConfig {
        api_key: Some(KEY.to_owned()),
        ..MockConfig::default()
    })
    .await
    .unwrap()
}

/// One HTTP/1.1 connection.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A whole response.
#[derive(Debug)]
struct Reply {
    head: Head,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `data:` payloads of an SSE body.
    fn events(&self) -> Vec<String> {
        sse_events(&String::from_utf8_lossy(&self.body))
    }
}

fn sse_events(text: &str) -> Vec<String> {
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "events end with a blank line: {text:?}"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_owned())
        .collect()
}

impl Client {
    async fn connect(upstream: &MockUpstream) -> Client {
        Client {
            stream: TcpStream::connect(upstream.addr()).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: mock\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.write_all(request.as_bytes()).await.unwrap();
    }

    async fn post(&mut self, path: &str, body: &Value, extra: &[(&str, &str)]) {
        let auth = format!("Bearer {KEY}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.send("POST", path, &headers, &body.to_string()).await;
    }

    /// Reads more bytes; false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Everything until the connection ends: the bytes (buffered ones included) and how it
    /// ended (`Ok` at EOF, the error of a reset).
    async fn until_end(&mut self) -> (Vec<u8>, std::io::Result<()>) {
        let mut chunk = [0u8; 8192];
        loop {
            let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .unwrap();
            match read {
                Ok(0) => return (std::mem::take(&mut self.buf), Ok(())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return (std::mem::take(&mut self.buf), Err(e)),
            }
        }
    }

    /// A CRLF-terminated line (without CRLF); `None` at EOF.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..pos].to_vec()).unwrap();
                self.buf.drain(..pos + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn head(&mut self) -> Head {
        let status_line = self.line().await.unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = self.line().await.unwrap();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Head { status, headers }
    }

    /// The next chunk of a chunked body: `Ok(None)` for the terminating chunk, `Err(())` when
    /// the connection ends first.
    async fn chunk(&mut self) -> Result<Option<Vec<u8>>, ()> {
        let size_line = self.line().await.ok_or(())?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        let data = self.exact(size).await.ok_or(())?;
        assert_eq!(self.exact(2).await.ok_or(())?, b"\r\n");
        Ok((size > 0).then_some(data))
    }

    /// A whole response; panics if a chunked body is cut.
    async fn reply(&mut self) -> Reply {
        let head = self.head().await;
        let body = if let Some(len) = head.header("content-length") {
            self.exact(len.parse().unwrap()).await.unwrap()
        } else {
            assert_eq!(head.header("transfer-encoding"), Some("chunked"));
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk().await.expect("stream cut") {
                body.extend_from_slice(&chunk);
            }
            body
        };
        Reply { head, body }
    }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello to the gateway"}]})
}

fn error_of(reply: &Reply) -> Value {
    let body = reply.json();
    let error = body["error"].as_object().unwrap();
    assert_eq!(error.len(), 4, "{body}");
    for key in ["message", "type", "param", "code"] {
        assert!(error.contains_key(key), "{body}");
    }
    body["error"].clone()
}

#[tokio::test]
async fn json_chat_completion_is_openai_shaped() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = chat("gpt-test");
    body["temperature"] = json!(0.5);
    client.post("/v1/chat/completions?x=1", &body, &[]).await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    assert_eq!(reply.head.header("content-type"), Some("application/json"));
    assert_eq!(reply.head.header("x-request-id"), Some("mock-1"));
    let answer = reply.json();
    assert!(answer["created"].as_u64().unwrap() > 1_700_000_000);
    let mut expected = json!({
        "id": "chatcmpl-mock-1",
        "object": "chat.completion",
        "created": answer["created"],
        "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "w0 w1 w2 w3 w4.", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        "system_fingerprint": "fp_mock"
    });
    assert_eq!(answer, expected);
    // Key order is OpenAI's.
    let text = String::from_utf8(reply.body.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"id":"chatcmpl-mock-1","object":"chat.completion","created":"#),
        "{text}"
    );

    // Same connection (keep-alive), chunk count from the model string.
    client
        .post("/v1/chat/completions", &chat("gpt-4o-mini+chunks-2"), &[])
        .await;
    let answer = client.reply().await.json();
    expected["id"] = json!("chatcmpl-mock-2");
    assert_eq!(answer["choices"][0]["message"]["content"], "w0 w1.");
    assert_eq!(answer["usage"]["completion_tokens"], 2);
    assert_eq!(answer["model"], "gpt-4o-mini+chunks-2");

    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(upstream.request_count(), 2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/chat/completions?x=1");
    assert_eq!(requests[0].header("Authorization"), Some("Bearer test-key"));
    assert_eq!(requests[0].json().unwrap(), body);
    assert_eq!(upstream.in_flight(), 0);
    assert_eq!(upstream.max_in_flight(), 1);
}

#[tokio::test]
async fn models_and_unknown_routes() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    client
        .send(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer test-key")],
            "",
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    assert_eq!(
        reply.json(),
        json!({"object": "list", "data": [{"id": "gpt-test", "object": "model", "created": 1_700_000_000, "owned_by": "mock"}]})
    );
    client
        .send(
            "GET",
            "/v1/chat/completions",
            &[("authorization", "Bearer test-key")],
            "",
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 404);
    assert_eq!(
        error_of(&reply)["message"],
        "Invalid URL (GET /v1/chat/completions)"
    );
    assert!(
        upstream.base_url().starts_with("http://127.0.0.1:")
            && upstream.base_url().ends_with("/v1")
    );
    assert_eq!(format!("{}/v1", upstream.origin()), upstream.base_url());
}

#[tokio::test]
async fn stream_without_usage() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = chat("gpt-test+chunks-3");
    body["stream"] = json!(true);
    client.post("/v1/chat/completions", &body, &[]).await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    assert_eq!(reply.head.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.head.header("cache-control"), Some("no-cache"));
    assert_eq!(reply.head.header("x-request-id"), Some("mock-1"));
    let events = reply.events();
    assert_eq!(events.len(), 6, "{events:?}");
    assert_eq!(events[5], "[DONE]");
    let chunks: Vec<Value> = events[..5]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["id"], "chatcmpl-mock-1");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-test+chunks-3");
        assert_eq!(chunk["system_fingerprint"], "fp_mock");
        assert!(chunk.get("usage").is_none(), "{chunk}");
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])
    );
    for (i, text) in ["w0 ", "w1 ", "w2."].into_iter().enumerate() {
        assert_eq!(
            chunks[i + 1]["choices"],
            json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}])
        );
    }
    assert_eq!(
        chunks[4]["choices"],
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}])
    );

    // The connection is still usable after a stream.
    client
        .post("/v1/chat/completions", &chat("gpt-test"), &[])
        .await;
    assert_eq!(client.reply().await.head.status, 200);
}

#[tokio::test]
async fn stream_with_usage_and_no_usage() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = chat("gpt-test+chunks-2");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    client.post("/v1/chat/completions", &body, &[]).await;
    let events = client.reply().await.events();
    assert_eq!(events.len(), 6, "{events:?}");
    assert_eq!(events[5], "[DONE]");
    let chunks: Vec<Value> = events[..5]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for chunk in &chunks[..4] {
        assert!(
            chunk["usage"].is_null() && chunk.get("usage").is_some(),
            "{chunk}"
        );
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(
        chunks[4]["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})
    );

    // `no-usage` (here from the header) wins over the request.
    client
        .post(
            "/v1/chat/completions",
            &body,
            &[("x-mock-behaviour", "no-usage")],
        )
        .await;
    let events = client.reply().await.events();
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events.iter().all(|e| !e.contains("usage")), "{events:?}");
}

#[tokio::test]
async fn completions_json_and_stream() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    client
        .post(
            "/v1/completions",
            &json!({"model": "gpt-test+chunks-2", "prompt": ["a b", "c"]}),
            &[],
        )
        .await;
    let answer = client.reply().await.json();
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["id"], "cmpl-mock-1");
    assert_eq!(
        answer["choices"],
        json!([{"text": "w0 w1.", "index": 0, "logprobs": null, "finish_reason": "stop"}])
    );
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    );

    let body = json!({"model": "gpt-test+chunks-2+malformed", "prompt": "hi", "stream": true, "stream_options": {"include_usage": true}});
    client.post("/v1/completions", &body, &[]).await;
    let events = client.reply().await.events();
    assert_eq!(events.len(), 6, "{events:?}");
    assert_eq!(events[1], "{not json");
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "w0 ");
    assert!(first["usage"].is_null());
    let finish: Value = serde_json::from_str(&events[3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage: Value = serde_json::from_str(&events[4]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 2);
    assert_eq!(events[5], "[DONE]");
}

#[tokio::test]
async fn auth_failures_are_401() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let body = chat("gpt-test").to_string();
    client
        .send(
            "POST",
            "/v1/chat/completions",
            &[("authorization", "Bearer wrong")],
            &body,
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 401);
    assert_eq!(reply.head.header("content-type"), Some("application/json"));
    let error = error_of(&reply);
    assert_eq!(error["code"], "invalid_api_key");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(!error["message"].as_str().unwrap().contains("wrong"));
    client.send("GET", "/v1/models", &[], "").await;
    assert_eq!(client.reply().await.head.status, 401);
    client
        .send(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer test-key2")],
            "",
        )
        .await;
    assert_eq!(client.reply().await.head.status, 401);
    assert_eq!(
        upstream.request_count(),
        3,
        "rejected requests are recorded too"
    );

    // Without a configured key anything goes.
    let open = MockUpstream::start(MockConfig::default()).await.unwrap();
    let mut client = Client::connect(&open).await;
    client
        .send("POST", "/v1/chat/completions", &[], &body)
        .await;
    assert_eq!(client.reply().await.head.status, 200);
}

#[tokio::test]
async fn invalid_requests_are_400() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let cases: Vec<(&str, String, Value, Value)> = vec![
        (
            "/v1/chat/completions",
            "{\"model\": ".to_owned(),
            Value::Null,
            Value::Null,
        ),
        (
            "/v1/chat/completions",
            "[1]".to_owned(),
            Value::Null,
            Value::Null,
        ),
        (
            "/v1/chat/completions",
            json!({"model": 4, "messages": []}).to_string(),
            json!("model"),
            json!("invalid_type"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}]}).to_string(),
            json!("model"),
            Value::Null,
        ),
        (
            "/v1/chat/completions",
            json!({"model": "m", "messages": []}).to_string(),
            json!("messages"),
            json!("empty_array"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "m"}).to_string(),
            json!("messages"),
            json!("missing_required_parameter"),
        ),
        (
            "/v1/completions",
            json!({"model": "m"}).to_string(),
            json!("prompt"),
            json!("missing_required_parameter"),
        ),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": 3}).to_string(),
            json!("prompt"),
            json!("invalid_type"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "m"}).to_string(),
            json!("input"),
            json!("missing_required_parameter"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "m", "input": []}).to_string(),
            json!("input"),
            json!("invalid_value"),
        ),
    ];
    for (path, body, param, code) in cases {
        client
            .send("POST", path, &[("authorization", "Bearer test-key")], &body)
            .await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, 400, "{body}");
        let error = error_of(&reply);
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"], param, "{body}");
        assert_eq!(error["code"], code, "{body}");
        if param.is_null() {
            assert!(
                error["message"].as_str().unwrap().contains("JSON"),
                "{error}"
            );
        }
    }
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    client
        .post(
            "/v1/embeddings",
            &json!({"model": "text-embedding-test", "input": ["a b", "c"]}),
            &[],
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    let floats = reply.json();
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "text-embedding-test");
    assert_eq!(
        floats["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let values: Vec<f64> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let expected: Vec<f64> = (0..8).map(|j| ((i * 8 + j) as f64 + 1.0) / 100.0).collect();
        assert_eq!(values, expected);
    }

    client
        .post("/v1/embeddings", &json!({"model": "text-embedding-test", "input": ["a b", "c"], "encoding_format": "base64"}), &[])
        .await;
    let encoded = client.reply().await.json();
    for (i, item) in encoded["data"].as_array().unwrap().iter().enumerate() {
        let bytes = base64_decode(item["embedding"].as_str().unwrap());
        assert_eq!(bytes.len(), 32);
        let values: Vec<f32> = bytes
            .chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let expected: Vec<f32> = (0..8).map(|j| ((i * 8 + j) as f32 + 1.0) / 100.0).collect();
        assert_eq!(values, expected);
    }

    client
        .post(
            "/v1/embeddings",
            &json!({"model": "e", "input": [[1, 2, 3], [4]]}),
            &[],
        )
        .await;
    let tokens = client.reply().await.json();
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2);
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let upstream = server().await;
    let addr = upstream.addr();
    let mut client = Client::connect(&upstream).await;
    client
        .send(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer test-key")],
            "",
        )
        .await;
    assert_eq!(client.reply().await.head.status, 200);
    upstream.shutdown();
    // The idle keep-alive connection is closed.
    assert!(!client.fill().await);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

mod anthropic;
mod azure;
mod count_tokens;
mod faults;
