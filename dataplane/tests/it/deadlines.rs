//! Downstream deadlines with the real binary: slowloris connections are closed by the
//! request-head deadline while real traffic goes on, a slow body gets 408, a streaming client
//! that stops reading is cut by the write timeout (its parallel slot released, its usage
//! recorded) or by `stream_max_duration`, and connections over the cap are closed at accept.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::*;

fn addr(gateway: &Gateway) -> SocketAddr {
    gateway.base.trim_start_matches("http://").parse().unwrap()
}

async fn metrics(gateway: &Gateway) -> String {
    gateway
        .client
        .get(format!("{}/metrics", gateway.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one metric series (0 when absent).
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (up to 20 s) until `ready` holds for the metrics text; returns the last text.
async fn metrics_when(gateway: &Gateway, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics(gateway).await;
        if ready(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Trickles a request head that never ends, one byte every 500 ms, until the gateway closes
/// the connection (then how long it stayed open) or 30 s passed (`None`).
async fn trickle(addr: SocketAddr, connected: Arc<AtomicUsize>) -> Option<Duration> {
    // Before the connect: the gateway's accept, and its deadline, come after this.
    let opened = Instant::now();
    let mut socket = TcpStream::connect(addr).await.ok()?;
    connected.fetch_add(1, Ordering::SeqCst);
    let head = b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\n";
    let endless = head.iter().chain(b"x-slow: a\r\n".iter().cycle());
    let mut buf = [0u8; 256];
    for byte in endless {
        if socket.write_all(&[*byte]).await.is_err() {
            return Some(opened.elapsed());
        }
        tokio::select! {
            _ = socket.read(&mut buf) => return Some(opened.elapsed()),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if opened.elapsed() > Duration::from_secs(30) {
            return None;
        }
    }
    None
}

/// The soft open-file limit of this process, which the gateway inherits (`None`: unlimited
/// or unknown).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test]
async fn slowloris_connections_are_closed_by_the_head_deadline_while_traffic_flows() {
    // 500 sockets here and 500 in the gateway, plus the rest of each process.
    if let Some(limit) = open_file_limit() {
        assert!(
            limit >= 1100,
            "`ulimit -n` is {limit}: this test needs at least 1100 open files"
        );
    }
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "  request_head_timeout: 2s\n")).await;
    let target = addr(&gateway);
    let connected = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..500)
        .map(|_| tokio::spawn(trickle(target, connected.clone())))
        .collect();
    let wait = Instant::now() + Duration::from_secs(20);
    while connected.load(Ordering::SeqCst) < 500 && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(connected.load(Ordering::SeqCst), 500, "{}", gateway.log());

    // Real traffic while the 500 connections trickle.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for n in 0..20 {
        let response = client
            .post(format!("{}/v1/chat/completions", gateway.base))
            .bearer_auth(KEY)
            .json(&chat("mock-chat", n % 2 == 0))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", gateway.log());
        response.bytes().await.unwrap();
    }

    for task in slow {
        let open_for = task.await.unwrap();
        let open_for = open_for.expect("a trickling connection was never closed");
        assert!(
            open_for >= Duration::from_secs(2) && open_for < Duration::from_secs(15),
            "closed after {open_for:?}"
        );
    }
    let text = metrics_when(&gateway, |m| {
        value(m, r#"omg_downstream_timeouts_total{phase="head"}"#) >= 500.0
    })
    .await;
    assert!(
        value(&text, r#"omg_downstream_timeouts_total{phase="head"}"#) >= 500.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_body_not_sent_in_time_gets_408_and_the_connection_closes() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "  request_body_timeout: 1s\n")).await;
    let mut socket = TcpStream::connect(addr(&gateway)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\":"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // Reads to the end: the gateway answers, then closes.
    let read = tokio::time::timeout(Duration::from_secs(15), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer to a stalled body within 15 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"request_timeout""#), "{text}");
    assert!(text.contains(r#""type":"invalid_request_error""#), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let text = metrics(&gateway).await;
    assert_eq!(
        value(&text, r#"omg_downstream_timeouts_total{phase="body"}"#),
        1.0,
        "{text}"
    );
}

/// Starts a long stream on a socket with a small receive buffer, reads its response head,
/// and returns the socket (kept open, never read again).
async fn stalled_stream(gateway: &Gateway, model: &str, request_id: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr(gateway)).await.unwrap();
    let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "Talk for a long time"}]})
        .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\nx-request-id: {request_id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response head");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    stream
}

/// A stream of 200,000 chunks: far more than socket buffers hold.
/// `short` answers at once.
fn long_stream(upstream: &omg_mock_upstream::MockUpstream) -> Vec<Entry> {
    vec![
        Entry::new("endless", &upstream.base_url(), "gpt-test+chunks-200000"),
        Entry::new("short", &upstream.base_url(), "gpt-test"),
    ]
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_released_and_billed_for_what_was_sent() {
    let upstream = upstream().await;
    let template = custom_config(&long_stream(&upstream), "  write_timeout: 1s\n", "").replace(
        "default_parallel_requests_key: 1000",
        "default_parallel_requests_key: 1",
    );
    let gateway = Gateway::start(&template).await;
    let stalled = stalled_stream(&gateway, "endless", "it-stalled-reader").await;
    let stopped = Instant::now();

    let record = gateway.usage_of("it-stalled-reader").await;
    let cut_after = stopped.elapsed();
    assert!(
        cut_after < Duration::from_secs(10),
        "cut after {cut_after:?}"
    );
    assert_eq!(record["status"], 499, "{record}");
    assert_eq!(record["error_code"], "write_timeout", "{record}");
    let completion = record["completion_tokens"].as_u64().unwrap_or(0);
    assert!(
        completion > 0 && completion < 200_000,
        "billed for what was delivered: {record}"
    );
    assert!(record["cost_micro_usd"].as_i64().is_some(), "{record}");

    // The parallel slot (cap 1) is free again: the next request is admitted.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let response = gateway
            .post("/v1/chat/completions")
            .json(&chat("short", false))
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status != 429 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(status, 200, "{}", gateway.log());
    let text = metrics(&gateway).await;
    assert_eq!(
        value(&text, r#"omg_downstream_timeouts_total{phase="write"}"#),
        1.0,
        "{text}"
    );
    drop(stalled);
}

#[tokio::test]
async fn stream_max_duration_also_cuts_a_blocked_write() {
    let upstream = upstream().await;
    let template = custom_config(
        &long_stream(&upstream),
        "  write_timeout: 60s\n  stream_max_duration: 2s\n",
        "",
    );
    let gateway = Gateway::start(&template).await;
    let stalled = stalled_stream(&gateway, "endless", "it-stalled-max").await;
    let stopped = Instant::now();
    let record = gateway.usage_of("it-stalled-max").await;
    assert!(stopped.elapsed() < Duration::from_secs(10));
    assert_eq!(record["status"], 499, "{record}");
    assert_eq!(record["error_code"], "stream_max_duration", "{record}");
    assert!(
        record["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{record}"
    );
    drop(stalled);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_accept() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(
        &upstream,
        "  max_connections: 4\n  request_head_timeout: 60s\n",
    ))
    .await;
    let series = "omg_downstream_connections";
    // The harness's client may keep one connection from its readiness check.
    let open = value(&metrics(&gateway).await, series) as usize;
    let mut idle = Vec::new();
    for _ in open..4 {
        idle.push(TcpStream::connect(addr(&gateway)).await.unwrap());
    }
    let text = metrics_when(&gateway, |m| value(m, series) >= 4.0).await;
    assert_eq!(value(&text, series), 4.0, "{text}");

    let mut extra = TcpStream::connect(addr(&gateway)).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection over the cap was not closed: {read:?}"
    );
    let text = metrics(&gateway).await;
    assert!(
        value(&text, "omg_downstream_connections_refused_total") >= 1.0,
        "{text}"
    );
    assert!(gateway.log().contains("connection cap reached"));

    drop(idle);
    let text = metrics_when(&gateway, |m| value(m, series) <= open as f64).await;
    assert!(value(&text, series) <= open as f64, "{text}");
    let response = gateway
        .post("/v1/chat/completions")
        .json(&chat("mock-chat", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
