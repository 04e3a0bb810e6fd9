//! Routing and resilience under upstream faults: failover before the first byte (with the body
//! replayed whole), none after it, timeouts, broken streams, and streams that outlive SIGTERM.
//!
//! Several mock upstreams serve as the deployments of one alias; each deployment's behaviour
//! is its `provider_model` (the gateway forwards no client headers) or the instance's default
//! behaviour (`MockUpstream::set_behaviour`), which keeps the forwarded bodies identical.
//! Nothing here waits on a sleep that assumes timing: only on conditions, with deadlines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use omg_mock_upstream::MockUpstream;
use serde_json::{json, Value};

use crate::harness::*;

const CHAT: &str = "/v1/chat/completions";

/// Gives `entries` the priorities 0, 1, 2, … so they are tried in that order.
fn in_order(entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| entry.priority(u32::try_from(i).unwrap()))
        .collect()
}

async fn upstreams(n: usize) -> Vec<MockUpstream> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(upstream().await);
    }
    all
}

/// Chat requests an upstream received (other paths, such as health checks, are not counted).
fn chats(upstream: &MockUpstream) -> usize {
    upstream.requests_to(CHAT).len()
}

/// FNV-1a, 64 bits: a stable digest for comparing large bodies in messages.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Asserts an OpenAI error body (all four keys) and returns its `error` object.
fn openai_error(body: &Value) -> Value {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not an OpenAI error: {body}"));
    for key in ["message", "type", "param", "code"] {
        assert!(error.contains_key(key), "`{key}` missing in {body}");
    }
    body["error"].clone()
}

/// A streamed answer read to its end: the `data:` payloads.
async fn stream_events(response: reqwest::Response) -> Vec<String> {
    let text = response.text().await.unwrap_or_default();
    sse_data(&text)
}

/// The in-band error that ends a broken stream: the last event is `{"error": …}` and no
/// `[DONE]` was sent.
fn in_band_error(events: &[String]) -> Value {
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "a broken stream must not look complete: {events:?}"
    );
    let last: Value = serde_json::from_str(events.last().expect("no events at all"))
        .unwrap_or_else(|e| panic!("{e}: {events:?}"));
    openai_error(&last)
}

#[tokio::test]
async fn failover_across_three_deployments_replays_a_2mb_body() {
    let ups = upstreams(3).await;
    // The same provider model everywhere, failures set per instance: the three forwarded
    // bodies must then be byte-identical.
    ups[0].set_behaviour("fail-500");
    ups[1].set_behaviour("fail-503");
    let entries = in_order(
        ups.iter()
            .map(|u| Entry::new("fo", &u.base_url(), "gpt-test"))
            .collect(),
    );
    let gateway = Gateway::start(&custom_config(
        &entries,
        "",
        "routing:\n  max_attempts: 3\n",
    ))
    .await;

    // ~2 MB of varied text (a repeated byte would hide a shifted or recycled buffer).
    let mut content = String::with_capacity(2 * 1024 * 1024 + 64);
    let mut line = 0u64;
    while content.len() < 2 * 1024 * 1024 {
        content.push_str(&format!(
            "line {line:07} of the long prompt, {} ",
            line % 97
        ));
        line += 1;
    }
    let body = json!({"model": "fo", "messages": [{"role": "user", "content": content}]});
    let response = gateway.post(CHAT).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let third = deployment_id(&entries, 2);
    assert_eq!(header(&response, "x-omg-deployment"), Some(third.as_str()));
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");

    for (i, upstream) in ups.iter().enumerate() {
        assert_eq!(chats(upstream), 1, "deployment {i} saw one request");
    }
    let bodies: Vec<_> = ups
        .iter()
        .map(|u| u.requests_to(CHAT)[0].body.clone())
        .collect();
    let digests: Vec<(usize, u64)> = bodies.iter().map(|b| (b.len(), fnv1a(b))).collect();
    assert!(
        digests.iter().all(|d| *d == digests[0]),
        "every attempt replays the same body: {digests:?}"
    );
    let sent: Value = serde_json::from_slice(&bodies[2]).unwrap();
    assert_eq!(sent["model"], "gpt-test");
    let forwarded = sent["messages"][0]["content"].as_str().unwrap();
    assert_eq!(
        (forwarded.len(), fnv1a(forwarded.as_bytes())),
        (content.len(), fnv1a(content.as_bytes())),
        "the prompt arrived intact"
    );

    let record = gateway.usage_of(&id).await;
    assert_eq!(record["status"], 200);
    assert_eq!(record["deployment"], third.as_str());
    assert_eq!(record["alias"], "fo");
    assert!(record["error_code"].is_null(), "{record}");
}

/// The built-in mock behind a failing real deployment: it takes the failover like any
/// deployment (it used to be served only when it came first in the order).
#[tokio::test]
async fn a_mock_deployment_is_a_failover_target() {
    let ups = upstreams(1).await;
    ups[0].set_behaviour("fail-500");
    let entries = in_order(vec![
        Entry::new("fallback", &ups[0].base_url(), "gpt-test"),
        Entry::new("fallback", "http://mock.invalid", "mock").provider("mock"),
    ]);
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let mock = deployment_id(&entries, 1);
    for stream in [false, true] {
        let response = gateway
            .post(CHAT)
            .json(&chat("fallback", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
        assert_eq!(header(&response, "x-omg-deployment"), Some(mock.as_str()));
        assert_eq!(header(&response, "x-omg-attempts"), Some("2"));
        let id = request_id(&response);
        let text = response.text().await.unwrap();
        if stream {
            assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
        } else {
            let answer: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(answer["object"], "chat.completion", "{answer}");
        }
        let record = gateway.usage_of(&id).await;
        assert_eq!(
            (record["status"].clone(), record["provider"].clone()),
            (json!(200), json!("mock")),
            "{record}"
        );
        assert_eq!(record["deployment"], mock.as_str());
        assert!(
            record["completion_tokens"].as_u64().unwrap() > 0,
            "{record}"
        );
        assert_eq!(record["usage_estimated"], false, "{record}");
    }
    assert_eq!(chats(&ups[0]), 2);
}

#[tokio::test]
async fn no_failover_after_the_first_byte() {
    let ups = upstreams(2).await;
    let entries = in_order(vec![
        Entry::new("cut", &ups[0].base_url(), "gpt-test+chunks-6+cut-after-2"),
        Entry::new("cut", &ups[1].base_url(), "gpt-test"),
    ]);
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = gateway
        .post(CHAT)
        .json(&chat("cut", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-omg-deployment"),
        Some(deployment_id(&entries, 0).as_str())
    );
    let id = request_id(&response);
    let events = stream_events(response).await;
    let error = in_band_error(&events);
    assert_eq!(error["code"], "upstream_error", "{events:?}");
    // The chunks sent before the cut reached the client, in order.
    let contents: Vec<String> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .filter(|text| !text.is_empty())
        .collect();
    assert_eq!(contents, ["w0 ", "w1 "], "{events:?}");
    assert_eq!(chats(&ups[0]), 1);
    assert_eq!(
        chats(&ups[1]),
        0,
        "once bytes reached the client, no other deployment is tried"
    );
    let record = gateway.usage_of(&id).await;
    assert!(
        record["completion_tokens"].as_u64().unwrap() > 0,
        "{record}"
    );
    assert!(record["error_code"].is_string(), "{record}");
    assert_eq!(record["deployment"], deployment_id(&entries, 0).as_str());
}

#[tokio::test]
async fn a_reset_after_the_response_head_fails_over() {
    let ups = upstreams(2).await;
    let entries = in_order(vec![
        Entry::new("reset", &ups[0].base_url(), "gpt-test+reset-after-headers"),
        Entry::new("reset", &ups[1].base_url(), "gpt-test"),
    ]);
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = gateway
        .post(CHAT)
        .json(&chat("reset", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let second = deployment_id(&entries, 1);
    assert_eq!(header(&response, "x-omg-deployment"), Some(second.as_str()));
    let id = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "w0 w1 w2 w3 w4."
    );
    assert_eq!((chats(&ups[0]), chats(&ups[1])), (1, 1));
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["status"], 200);
    assert_eq!(record["deployment"], second.as_str());
}

#[tokio::test]
async fn a_stream_reset_before_its_first_event_fails_over() {
    let ups = upstreams(2).await;
    let entries = in_order(vec![
        Entry::new(
            "reset-stream",
            &ups[0].base_url(),
            "gpt-test+reset-after-headers",
        ),
        Entry::new("reset-stream", &ups[1].base_url(), "gpt-test"),
    ]);
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = gateway
        .post(CHAT)
        .json(&chat("reset-stream", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    let second = deployment_id(&entries, 1);
    assert_eq!(header(&response, "x-omg-deployment"), Some(second.as_str()));
    assert_eq!(header(&response, "x-omg-attempts"), Some("2"));
    let events = stream_events(response).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!((chats(&ups[0]), chats(&ups[1])), (1, 1));
}

#[tokio::test]
async fn a_closed_port_and_a_cut_json_body_fail_over() {
    let ups = upstreams(2).await;
    // A port nothing listens on any more: the connection is refused.
    let closed = format!("http://127.0.0.1:{}/v1", free_port());
    let entries = in_order(vec![
        Entry::new("broken", &closed, "gpt-test"),
        Entry::new(
            "broken",
            &ups[0].base_url(),
            "gpt-test+chunks-4+cut-after-2",
        ),
        Entry::new("broken", &ups[1].base_url(), "gpt-test"),
    ]);
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = gateway
        .post(CHAT)
        .json(&chat("broken", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", gateway.log());
    assert_eq!(
        header(&response, "x-omg-deployment"),
        Some(deployment_id(&entries, 2).as_str())
    );
    assert_eq!((chats(&ups[0]), chats(&ups[1])), (1, 1));
}

#[tokio::test]
async fn a_connection_broken_mid_answer_is_a_502_not_a_timeout() {
    let ups = upstreams(2).await;
    let entries = [
        Entry::new("reset", &ups[0].base_url(), "gpt-test+reset-after-headers"),
        Entry::new("cut", &ups[1].base_url(), "gpt-test+chunks-4+cut-after-2"),
    ];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    for alias in ["reset", "cut"] {
        let started = Instant::now();
        let response = gateway
            .post(CHAT)
            .json(&chat(alias, false))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let id = request_id(&response);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, openai_error(&body)["code"].as_str()),
            (502, Some("upstream_error")),
            "{alias}: {body} after {:?}",
            started.elapsed()
        );
        assert_eq!(gateway.usage_of(&id).await["status"], 502, "{alias}");
    }
}

#[tokio::test]
async fn rate_limited_deployments_fail_over_then_429_with_retry_after() {
    let ups = upstreams(4).await;
    let limited = "gpt-test+fail-429+retry-after-7";
    let mut entries = in_order(vec![
        Entry::new("rl-one", &ups[0].base_url(), limited),
        Entry::new("rl-one", &ups[1].base_url(), "gpt-test"),
    ]);
    entries.extend(in_order(vec![
        Entry::new("rl-all", &ups[2].base_url(), limited),
        Entry::new("rl-all", &ups[3].base_url(), limited),
    ]));
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;

    // A 429 before the first byte moves on to the next deployment.
    let response = gateway
        .post(CHAT)
        .json(&chat("rl-one", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-omg-deployment"),
        Some(deployment_id(&entries, 1).as_str())
    );
    assert_eq!((chats(&ups[0]), chats(&ups[1])), (1, 1));

    // Every deployment rate limited: the client gets a 429 in OpenAI's shape with the
    // providers' Retry-After.
    let response = gateway
        .post(CHAT)
        .json(&chat("rl-all", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), Some("7"));
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    let error = openai_error(&body);
    assert_eq!(error["code"], "rate_limit_exceeded", "{body}");
    assert!(
        !error["message"].as_str().unwrap().contains(UPSTREAM_KEY),
        "{body}"
    );
    assert_eq!((chats(&ups[2]), chats(&ups[3])), (1, 1));
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["status"], 429);
    assert_eq!(record["cost_micro_usd"], 0);
}

/// The upstream sends its first event (the assistant role) at once, then stalls for 5 s
/// before its first content chunk; a 300 ms idle limit cuts it in between.
const STALLING: &str = "gpt-test+chunks-5+chunk-delay-5000";

async fn assert_cut_for_stalling(gateway: &Gateway, alias: &str) {
    let response = gateway
        .post(CHAT)
        .json(&chat(alias, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let events = stream_events(response).await;
    assert!(
        events[0].contains("\"role\":\"assistant\""),
        "the first event got through: {events:?}"
    );
    let error = in_band_error(&events);
    assert_eq!(error["code"], "upstream_timeout", "{events:?}");
    assert!(
        error["message"].as_str().unwrap().contains("stalled"),
        "{events:?}"
    );
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["error_code"], "stream_idle_timeout", "{record}");
    assert!(record["prompt_tokens"].as_u64().unwrap() > 0, "{record}");
    assert_eq!(record["stream"], true);
}

#[tokio::test]
async fn a_stalled_stream_is_cut_by_the_idle_timeout() {
    let upstream = upstream().await;
    let entries = [Entry::new("stall", &upstream.base_url(), STALLING)];
    let gateway =
        Gateway::start(&custom_config(&entries, "  stream_idle_timeout: 300ms", "")).await;
    assert_cut_for_stalling(&gateway, "stall").await;
    // The upstream connection is dropped with the stream.
    wait_until("the stalled upstream stream is closed", || {
        upstream.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn a_per_alias_stream_idle_timeout_cuts_only_that_alias() {
    let upstream = upstream().await;
    let entries = [
        Entry::new("stall", &upstream.base_url(), STALLING),
        // 600 ms gaps: over the alias limit above, well under the global 30 s.
        Entry::new(
            "patient",
            &upstream.base_url(),
            "gpt-test+chunks-2+chunk-delay-600",
        ),
    ];
    let gateway = Gateway::start(&custom_config(
        &entries,
        "",
        "routing:\n  aliases:\n    stall:\n      timeouts:\n        stream_idle: 300ms\n",
    ))
    .await;
    assert_cut_for_stalling(&gateway, "stall").await;
    let response = gateway
        .post(CHAT)
        .json(&chat("patient", true))
        .send()
        .await
        .unwrap();
    let events = stream_events(response).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
}

async fn assert_hang_times_out(gateway: &Gateway, alias: &str) {
    let response = gateway
        .post(CHAT)
        .json(&chat(alias, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(openai_error(&body)["code"], "upstream_timeout", "{body}");
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["status"], 504);
    assert_eq!(record["error_code"], "upstream_timeout");
}

#[tokio::test]
async fn a_hanging_upstream_times_out_with_504() {
    let upstream = upstream().await;
    let entries = [Entry::new("hang", &upstream.base_url(), "gpt-test+hang")];
    let gateway = Gateway::start(&custom_config(&entries, "  provider_timeout: 500ms", "")).await;
    assert_hang_times_out(&gateway, "hang").await;
    assert_eq!(chats(&upstream), 1);
    wait_until("the hanging upstream request is abandoned", || {
        upstream.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn a_per_alias_upstream_timeout_applies() {
    let upstream = upstream().await;
    let entries = [Entry::new("hang", &upstream.base_url(), "gpt-test+hang")];
    let gateway = Gateway::start(&custom_config(
        &entries,
        "",
        "routing:\n  aliases:\n    hang:\n      timeouts:\n        upstream: 500ms\n",
    ))
    .await;
    assert_hang_times_out(&gateway, "hang").await;
}

#[tokio::test]
async fn a_malformed_stream_event_ends_the_stream_with_an_in_band_error() {
    let upstream = upstream().await;
    let entries = [Entry::new(
        "bad",
        &upstream.base_url(),
        "gpt-test+malformed",
    )];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let response = gateway
        .post(CHAT)
        .json(&chat("bad", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let events = stream_events(response).await;
    let error = in_band_error(&events);
    assert_eq!(error["code"], "upstream_error", "{events:?}");
    assert!(
        events.iter().any(|e| e.contains("\"role\":\"assistant\"")),
        "events before the broken one reach the client: {events:?}"
    );
    let record = gateway.usage_of(&id).await;
    assert!(record["error_code"].is_string(), "{record}");
    assert!(record["prompt_tokens"].as_u64().unwrap() > 0, "{record}");
    assert_eq!(record["stream"], true);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_recorded_502() {
    let upstream = upstream().await;
    let entries = [Entry::new(
        "bad",
        &upstream.base_url(),
        "gpt-test+malformed",
    )];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;

    // A body that is not JSON, before anything reached the client: a 502, recorded.
    let response = gateway
        .post(CHAT)
        .json(&chat("bad", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(openai_error(&body)["code"], "upstream_error", "{body}");
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["status"], 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_live_streams_survive_sigterm() {
    const STREAMS: usize = 100;
    let upstream = upstream().await;
    // Ten chunks 500 ms apart: every stream is still running when SIGTERM arrives and when
    // the listener closes after the 2 s readiness delay.
    let entries = [Entry::new(
        "paced",
        &upstream.base_url(),
        "gpt-test+chunks-10+chunk-delay-500",
    )];
    let template = custom_config(&entries, "", "")
        .replace("graceful_shutdown_delay: 0s", "graceful_shutdown_delay: 2s")
        .replace(
            "graceful_shutdown_timeout: 20s",
            "graceful_shutdown_timeout: 30s",
        );
    let mut gateway = Gateway::start(&template).await;

    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let request = gateway
            .client
            .post(format!("{}{CHAT}", gateway.base))
            .bearer_auth(KEY)
            .json(&chat("paced", true));
        let started = Arc::clone(&started);
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            if response.status() != 200 {
                return Err(format!("status {}", response.status()));
            }
            let id = request_id(&response);
            let mut stream = response.bytes_stream();
            let mut text = String::new();
            let mut counted = false;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("{id}: {e} after {text:?}"))?;
                text.push_str(&String::from_utf8_lossy(&chunk));
                if !counted && text.contains("\n\n") {
                    counted = true;
                    started.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok::<_, String>((id, text))
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.load(Ordering::SeqCst) < STREAMS {
        assert!(
            Instant::now() < deadline,
            "only {} of {STREAMS} streams started; log:\n{}",
            started.load(Ordering::SeqCst),
            gateway.log()
        );
        if let Some(index) = tasks.iter().position(tokio::task::JoinHandle::is_finished) {
            let early = tasks.swap_remove(index).await.unwrap();
            panic!("a stream ended before all {STREAMS} started: {early:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        upstream.in_flight(),
        STREAMS,
        "every stream is live upstream when SIGTERM is sent"
    );

    gateway.signal("TERM");
    // Readiness flips at once and stays 503 while the listener still accepts (the 2 s delay);
    // after that the admin listener may be gone too, so a refused connection ends the wait.
    let mut readiness = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = gateway
            .client
            .get(format!("{}/readyz", gateway.admin))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        readiness.push(ready);
        if ready == 503 || ready == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "readiness never flipped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut ids = Vec::with_capacity(STREAMS);
    for task in tasks {
        let (id, text) = task.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.trim_end().ends_with("data: [DONE]"),
            "stream {id} was cut: {text}"
        );
        assert_eq!(text.matches("\"content\":\"w").count(), 10, "{id}: {text}");
        ids.push(id);
    }
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "log:\n{}",
        gateway.log()
    );
    // The 2 s delay leaves the poll ample time to see the flip before the admin listener
    // closes.
    assert_eq!(
        readiness.last(),
        Some(&503),
        "/readyz answers 503 while draining (polls: {readiness:?})"
    );
    let records = gateway.usage();
    let streams: Vec<&Value> = records.iter().filter(|r| r["stream"] == true).collect();
    assert_eq!(streams.len(), STREAMS, "{records:?}");
    assert_eq!(records.len(), STREAMS, "nothing else was sent");
    for id in &ids {
        let record = streams
            .iter()
            .find(|r| r["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no usage record for {id}"));
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["completion_tokens"], 10, "{record}");
        assert!(record["error_code"].is_null(), "{record}");
    }
}

/// Polls `condition` until it holds (up to 10 s).
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Three chat requests to an upstream that closes every kept-alive connection as the next
/// request arrives on it; the upstream's count of chat requests, and the gateway's metrics.
async fn three_rounds_against_a_closing_upstream(server_extra: &str) -> (usize, String) {
    let ups = upstreams(1).await;
    let entries = vec![Entry::new(
        "pooled",
        &ups[0].base_url(),
        "gpt-test+close-reused",
    )];
    let gateway = Gateway::start(&custom_config(&entries, server_extra, "")).await;
    for round in 0..3 {
        let response = gateway
            .post(CHAT)
            .json(&chat("pooled", false))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "round {round}, log:\n{}",
            gateway.log()
        );
        assert_eq!(header(&response, "x-omg-attempts"), Some("1"));
        let id = request_id(&response);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(gateway.usage_of(&id).await["status"], 200);
    }
    let metrics = reqwest::get(format!("{}/metrics", gateway.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (chats(&ups[0]), metrics)
}

fn stale_connections(metrics: &str) -> Option<&str> {
    metrics
        .lines()
        .find(|line| {
            line.starts_with("omg_upstream_errors_total") && line.contains("stale_connection")
        })
        .and_then(|line| line.rsplit(' ').next())
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_not_failed() {
    // The upstream closes a kept-alive connection as the next request arrives on it (its
    // idle timeout and the request crossed): the request goes again on a new connection,
    // within the same attempt, and the client never sees the race. Rounds 2 and 3 each
    // reach the upstream twice: on the closed connection, then on a new one.
    let (chats, metrics) = three_rounds_against_a_closing_upstream("").await;
    assert_eq!(chats, 5);
    assert_eq!(stale_connections(&metrics), Some("2"), "{metrics}");
}

#[tokio::test]
async fn no_idle_connections_kept_means_a_connection_per_request() {
    let (chats, metrics) =
        three_rounds_against_a_closing_upstream("  upstream_idle_connections: 0").await;
    assert_eq!(chats, 3);
    assert_eq!(stale_connections(&metrics), None, "{metrics}");
}
