//! Scripted faults: failures, cuts, resets, hangs, pacing and the runtime behaviour switch.

use super::*;

#[tokio::test]
async fn scripted_failures() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    client
        .post("/v1/chat/completions", &chat("gpt-test+fail-500"), &[])
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 500);
    assert_eq!(
        reply.json(),
        json!({"error": {"message": "mock internal error", "type": "server_error", "param": null, "code": null}})
    );

    client
        .post(
            "/v1/chat/completions",
            &chat("gpt-test"),
            &[("x-mock-behaviour", "fail-429")],
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 429);
    assert_eq!(reply.head.header("retry-after"), Some("1"));
    let error = error_of(&reply);
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("requests"), Some("rate_limit_exceeded"))
    );

    client
        .post(
            "/v1/embeddings",
            &json!({"model": "e+fail-400", "input": "x"}),
            &[],
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 400);
    assert_eq!(error_of(&reply)["type"], "invalid_request_error");

    client
        .send(
            "GET",
            "/v1/models",
            &[
                ("authorization", "Bearer test-key"),
                ("x-mock-behaviour", "fail-500"),
            ],
            "",
        )
        .await;
    assert_eq!(client.reply().await.head.status, 500);

    let started = Instant::now();
    client
        .post("/v1/chat/completions", &chat("gpt-test+slow-60"), &[])
        .await;
    assert_eq!(client.reply().await.head.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(60));

    // A non-streamed `malformed` answer is not JSON either.
    client
        .post("/v1/chat/completions", &chat("gpt-test+malformed"), &[])
        .await;
    assert_eq!(client.reply().await.body, b"{not json");
}

#[tokio::test]
async fn cut_after_closes_without_the_terminating_chunk() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = chat("gpt-test+chunks-6+cut-after-2");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    client.post("/v1/chat/completions", &body, &[]).await;
    let head = client.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let mut text = String::new();
    let ended = loop {
        match client.chunk().await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8(chunk).unwrap()),
            Ok(None) => break "terminating chunk",
            Err(()) => break "connection closed",
        }
    };
    assert_eq!(ended, "connection closed");
    let events = sse_events(&text);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events[0].contains("\"role\":\"assistant\""));
    assert!(events[1].contains("\"content\":\"w0 \""));
    assert!(events[2].contains("\"content\":\"w1 \""));
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.in_flight() > 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn chunks_arrive_as_produced_and_in_flight_follows_the_stream() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    let mut body = chat("gpt-test+chunks-3+chunk-delay-100");
    body["stream"] = json!(true);
    let started = Instant::now();
    client.post("/v1/chat/completions", &body, &[]).await;
    let head = client.head().await;
    assert_eq!(head.status, 200);
    let mut text = String::new();
    while !text.contains("\"content\":\"w0 \"") {
        text.push_str(&String::from_utf8(client.chunk().await.unwrap().unwrap()).unwrap());
    }
    // Two more chunks are 200 ms away: the stream is certainly still being produced.
    assert!(!text.contains("w1"), "{text}");
    assert_eq!(
        upstream.in_flight(),
        1,
        "first content arrives before the stream ends"
    );
    while let Some(chunk) = client.chunk().await.unwrap() {
        text.push_str(&String::from_utf8(chunk).unwrap());
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sse_events(&text).last().map(String::as_str), Some("[DONE]"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.in_flight() > 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn clients_leaving_end_streams_and_hangs() {
    let upstream = server().await;
    let mut streaming = Client::connect(&upstream).await;
    let mut body = chat("gpt-test+chunks-50+chunk-delay-50");
    body["stream"] = json!(true);
    streaming.post("/v1/chat/completions", &body, &[]).await;
    streaming.head().await;
    streaming.chunk().await.unwrap();
    let mut hanging = Client::connect(&upstream).await;
    hanging
        .post("/v1/chat/completions", &chat("gpt-test+hang"), &[])
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.in_flight() < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(upstream.max_in_flight(), 2);
    drop(streaming);
    drop(hanging);
    while upstream.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "in flight: {}",
            upstream.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn more_scripted_statuses_and_retry_after() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    for (spec, status) in [("fail-502", 502), ("fail-503", 503)] {
        client
            .post(
                "/v1/chat/completions",
                &chat(&format!("gpt-test+{spec}")),
                &[],
            )
            .await;
        let reply = client.reply().await;
        assert_eq!(reply.head.status, status, "{spec}");
        assert_eq!(error_of(&reply)["type"], "server_error", "{spec}");
        assert_eq!(reply.head.header("retry-after"), None, "{spec}");
    }
    client
        .post(
            "/v1/chat/completions",
            &chat("gpt-test+fail-429+retry-after-17"),
            &[],
        )
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 429);
    assert_eq!(reply.head.header("retry-after"), Some("17"));
    assert!(error_of(&reply)["message"]
        .as_str()
        .unwrap()
        .contains("try again in 17s"));
    // Streams fail the same way, before any event.
    let mut body = chat("gpt-test+fail-503");
    body["stream"] = json!(true);
    client.post("/v1/chat/completions", &body, &[]).await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 503);
    assert_eq!(reply.head.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn reset_after_headers_sends_the_head_then_resets() {
    let upstream = server().await;
    for (stream, content_type) in [(false, "application/json"), (true, "text/event-stream")] {
        let mut client = Client::connect(&upstream).await;
        let mut body = chat("gpt-test+reset-after-headers");
        body["stream"] = json!(stream);
        client.post("/v1/chat/completions", &body, &[]).await;
        let head = client.head().await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some(content_type));
        let (rest, end) = client.until_end().await;
        assert!(
            rest.is_empty(),
            "no body: {:?}",
            String::from_utf8_lossy(&rest)
        );
        assert_eq!(
            end.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "the connection is reset, not closed in order"
        );
    }
    assert_eq!(upstream.request_count(), 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.in_flight() > 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Other connections are unaffected.
    let mut client = Client::connect(&upstream).await;
    client
        .post("/v1/chat/completions", &chat("gpt-test"), &[])
        .await;
    assert_eq!(client.reply().await.head.status, 200);
}

#[tokio::test]
async fn default_behaviour_switches_at_runtime() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    upstream.set_behaviour("fail-503");
    assert_eq!(upstream.behaviour(), "fail-503");
    client
        .post("/v1/chat/completions", &chat("gpt-test"), &[])
        .await;
    assert_eq!(client.reply().await.head.status, 503);
    // The request's own directives come after the default and win.
    client
        .post("/v1/chat/completions", &chat("gpt-test+fail-500"), &[])
        .await;
    assert_eq!(client.reply().await.head.status, 500);
    // `/v1/models` too.
    client
        .send(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer test-key")],
            "",
        )
        .await;
    assert_eq!(client.reply().await.head.status, 503);
    // Settings other than failures combine with the request's.
    upstream.set_behaviour("chunks-2");
    client
        .post("/v1/chat/completions", &chat("gpt-test+no-usage"), &[])
        .await;
    assert_eq!(
        client.reply().await.json()["choices"][0]["message"]["content"],
        "w0 w1."
    );
    upstream.set_behaviour("");
    client
        .post("/v1/chat/completions", &chat("gpt-test"), &[])
        .await;
    assert_eq!(
        client.reply().await.json()["choices"][0]["message"]["content"],
        "w0 w1 w2 w3 w4."
    );
    assert_eq!(upstream.request_count(), 5);
}

#[tokio::test]
async fn the_control_endpoint_sets_the_default_behaviour() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    // No key needed; not recorded, not counted.
    client
        .send("POST", "/__mock/behaviour", &[], " fail-429+retry-after-3 ")
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 200);
    assert_eq!(reply.json(), json!({"behaviour": "fail-429+retry-after-3"}));
    assert_eq!(upstream.behaviour(), "fail-429+retry-after-3");
    client
        .post("/v1/chat/completions", &chat("gpt-test"), &[])
        .await;
    let reply = client.reply().await;
    assert_eq!(reply.head.status, 429);
    assert_eq!(reply.head.header("retry-after"), Some("3"));
    client.send("GET", "/__mock/behaviour", &[], "").await;
    assert_eq!(
        client.reply().await.json(),
        json!({"behaviour": "fail-429+retry-after-3"})
    );
    client.send("POST", "/__mock/behaviour", &[], "").await;
    assert_eq!(client.reply().await.json(), json!({"behaviour": ""}));
    client
        .post("/v1/chat/completions", &chat("gpt-test"), &[])
        .await;
    assert_eq!(client.reply().await.head.status, 200);
    client.send("DELETE", "/__mock/behaviour", &[], "").await;
    assert_eq!(client.reply().await.head.status, 405);
    let paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/chat/completions", "/v1/chat/completions"]);
    assert_eq!(upstream.requests_to("/v1/chat/completions").len(), 2);
    assert_eq!(upstream.max_in_flight(), 1);
    // The recorded requests, for tests against the binary.
    client.send("GET", "/__mock/requests", &[], "").await;
    let listed = client.reply().await.json();
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["method"], "POST");
    assert_eq!(data[0]["path"], "/v1/chat/completions");
    assert!(data[0]["body"].as_str().unwrap().contains("gpt-test"));
    assert_eq!(
        upstream.requests().len(),
        2,
        "the listing is not recorded itself"
    );
}

#[tokio::test]
async fn json_answers_are_paced_and_cut_too() {
    let upstream = server().await;
    let mut client = Client::connect(&upstream).await;
    // Paced: the head at once, the body in four pieces 60 ms apart.
    let started = Instant::now();
    client
        .post(
            "/v1/chat/completions",
            &chat("gpt-test+chunks-4+chunk-delay-60"),
            &[],
        )
        .await;
    let head = client.head().await;
    assert_eq!(head.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(60),
        "the head does not wait for the body"
    );
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    let body = client.exact(length).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(240));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "w0 w1 w2 w3.");

    // Cut: fewer bytes than announced, then the connection ends.
    let mut client = Client::connect(&upstream).await;
    client
        .post(
            "/v1/chat/completions",
            &chat("gpt-test+chunks-4+cut-after-2"),
            &[],
        )
        .await;
    let head = client.head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    let (body, _) = client.until_end().await;
    assert_eq!(body.len(), length / 2, "two of four pieces");

    // A `slow` stream waits before its head; `hang` holds a stream request too.
    let mut client = Client::connect(&upstream).await;
    let mut slow = chat("gpt-test+slow-60+chunks-1");
    slow["stream"] = json!(true);
    let started = Instant::now();
    client.post("/v1/chat/completions", &slow, &[]).await;
    let reply = client.reply().await;
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(reply.events().last().map(String::as_str), Some("[DONE]"));
    let mut hanging = Client::connect(&upstream).await;
    let mut hang = chat("gpt-test+hang");
    hang["stream"] = json!(true);
    hanging.post("/v1/chat/completions", &hang, &[]).await;
    let waited = tokio::time::timeout(Duration::from_millis(200), hanging.fill()).await;
    assert!(waited.is_err(), "a hanging stream sends nothing");
}
