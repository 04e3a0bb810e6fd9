//! Routing and resilience against the real binary: the weighted split, `least_busy`, the
//! circuit breaker (trip, rest, probe, recovery), provider 429 rests, active health checks.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use omg_mock_upstream::{MockConfig, MockUpstream};
use serde_json::Value;

use crate::harness::{chat, custom_config, free_port, upstream, Entry, Gateway, UPSTREAM_KEY};

/// A mock upstream on `port` (a deployment that was down comes back).
async fn upstream_on(port: u16) -> MockUpstream {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        })
        .unwrap();
    MockUpstream::start_on(
        listener,
        MockConfig {
            api_key: Some(UPSTREAM_KEY.to_owned()),
            ..MockConfig::default()
        },
    )
    .await
    .unwrap()
}

async fn send(gateway: &Gateway, model: &str) -> reqwest::Response {
    gateway
        .post("/v1/chat/completions")
        .json(&chat(model, false))
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn deployments(gateway: &Gateway) -> Vec<Value> {
    let body: Value = gateway
        .client
        .get(format!("{}/deployments", gateway.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["deployments"].as_array().cloned().unwrap_or_default()
}

async fn deployment(gateway: &Gateway, id: &str) -> Value {
    deployments(gateway)
        .await
        .into_iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no deployment {id}"))
}

/// Waits until `check` holds for the deployment's status (up to 20 s).
async fn wait_deployment(gateway: &Gateway, id: &str, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = deployment(gateway, id).await;
        if check(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became {what}: {status}\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weighted_split_follows_the_weights_over_1000_requests() {
    let light = upstream().await;
    let heavy = upstream().await;
    let entries = [
        Entry::new("split", &light.base_url(), "gpt-test").weight(1),
        Entry::new("split", &heavy.base_url(), "gpt-test").weight(3),
    ];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let mut tasks = tokio::task::JoinSet::new();
    let gateway = std::sync::Arc::new(gateway);
    for worker in 0..16 {
        let gateway = gateway.clone();
        tasks.spawn(async move {
            let count = if worker < 8 { 63 } else { 62 };
            for _ in 0..count {
                let response = send(&gateway, "split").await;
                assert_eq!(response.status(), 200);
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let (l, h) = (light.request_count(), heavy.request_count());
    assert_eq!(l + h, 1000);
    // Binomial(1000, 0.25): sd ≈ 13.7; ±5 sd.
    assert!((182..=318).contains(&l), "light got {l}, heavy {h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_busy_spreads_concurrent_requests_whatever_the_weights() {
    let a = upstream().await;
    let b = upstream().await;
    let entries = [
        Entry::new("busy", &a.base_url(), "gpt-test+slow-5000").weight(9),
        Entry::new("busy", &b.base_url(), "gpt-test+slow-5000").weight(1),
    ];
    let gateway = Gateway::start(&custom_config(
        &entries,
        "",
        "routing:\n  aliases:\n    busy: {strategy: least_busy}\n",
    ))
    .await;
    let gateway = std::sync::Arc::new(gateway);
    let mut tasks = tokio::task::JoinSet::new();
    // One at a time, each sent once the previous one is in flight upstream, so every pick
    // sees the loads the earlier ones made.
    for sent in 1..=10 {
        let gateway_ = gateway.clone();
        tasks.spawn(async move { send(&gateway_, "busy").await.status() });
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.in_flight() + b.in_flight() < sent {
            assert!(
                Instant::now() < deadline,
                "request {sent} never reached an upstream"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(
        (a.in_flight(), b.in_flight()),
        (5, 5),
        "weighted 9:1 would load `a`"
    );
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_opens_rests_probes_and_recovers() {
    // `primary` listens nowhere yet: connection refused.
    let port = free_port();
    let primary_base = format!("http://127.0.0.1:{port}/v1");
    let backup = upstream().await;
    let entries = [
        Entry::new("guarded", &primary_base, "gpt-test").priority(0),
        Entry::new("guarded", &backup.base_url(), "gpt-test").priority(1),
    ];
    let gateway = Gateway::start(&custom_config(
        &entries,
        "",
        // A rest long enough that a loaded CI machine cannot sleep through it between the
        // checks below; the test then waits (on the state, not a timer) for the half-open.
        "health:\n  cooldown: 8s\n  failure_threshold: 3\n",
    ))
    .await;

    for n in 1..=3 {
        let response = send(&gateway, "guarded").await;
        assert_eq!(response.status(), 200, "failover to the backup");
        assert_eq!(header(&response, "x-omg-deployment"), "guarded#1");
        assert_eq!(header(&response, "x-omg-attempts"), "2", "request {n}");
    }
    let status = deployment(&gateway, "guarded#0").await;
    assert_eq!(status["state"], "open", "{status}");
    assert_eq!(status["last_error"], "connect");
    assert!(status["retry_in_ms"].as_u64().unwrap() <= 8000);

    // While it rests, requests go straight to the backup.
    let response = send(&gateway, "guarded").await;
    assert_eq!(header(&response, "x-omg-attempts"), "1");
    assert_eq!(header(&response, "x-omg-deployment"), "guarded#1");

    // The primary comes back; after the rest, one probe closes the breaker.
    let primary = upstream_on(port).await;
    wait_deployment(&gateway, "guarded#0", "half-open", |s| {
        s["state"] == "half_open"
    })
    .await;
    let response = send(&gateway, "guarded").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-omg-deployment"),
        "guarded#0",
        "the probe"
    );
    // The probe's success is recorded once its exchange ends, which may be just after the
    // client has read the answer: wait for it.
    wait_deployment(&gateway, "guarded#0", "closed", |s| s["state"] == "closed").await;
    let status = deployment(&gateway, "guarded#0").await;
    assert_eq!(status["opened_total"], 1);
    assert_eq!(primary.request_count(), 1);

    let metrics = gateway
        .client
        .get(format!("{}/metrics", gateway.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"omg_breaker_transitions_total{deployment="guarded#0",to="open"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"omg_failovers_total{alias="guarded"} 3"#));
    assert!(metrics.contains(r#"omg_deployment_breaker_state{alias="guarded",deployment="guarded#0",provider="openai-compatible"} 0"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_429_rests_the_deployment_for_its_retry_after() {
    let limited = upstream().await;
    let entries = [Entry::new(
        "limited",
        &limited.base_url(),
        "gpt-test+fail-429",
    )];
    let gateway = Gateway::start(&custom_config(&entries, "", "")).await;
    let first = send(&gateway, "limited").await;
    assert_eq!(first.status(), 429);
    assert_eq!(header(&first, "retry-after"), "1");
    let status = deployment(&gateway, "limited#0").await;
    assert_eq!(status["state"], "open");
    assert_eq!(status["rate_limited"], true);
    assert!(status["retry_in_ms"].as_u64().unwrap() <= 1000, "{status}");

    // Resting: refused without calling the provider, with the time to wait.
    let second = send(&gateway, "limited").await;
    if second.status() == 503 {
        assert_eq!(header(&second, "retry-after"), "1");
        let body: Value = second.json().await.unwrap();
        assert_eq!(body["error"]["code"], "no_healthy_upstream");
        assert_eq!(limited.request_count(), 1);
    } else {
        // The one-second rest was already over (slow machine): it probed.
        assert_eq!(second.status(), 429);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_checks_trip_a_dead_deployment_and_bring_it_back() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let entries = [Entry::new("checked", &base, "gpt-test").checked()];
    let gateway = Gateway::start(&custom_config(
        &entries,
        "",
        "health:\n  interval: 1s\n  cooldown: 1s\n  failure_threshold: 2\n  rolling_window: 3\n  check_timeout: 1s\n",
    ))
    .await;
    wait_deployment(&gateway, "checked#0", "open from failed checks", |s| {
        s["state"] == "open" && s["last_error"] == "health_check"
    })
    .await;
    let status = deployment(&gateway, "checked#0").await;
    assert_eq!(status["health_check"], true);
    let checks = status["checks"].as_array().unwrap();
    assert!(
        !checks.is_empty() && checks.iter().all(|c| c["ok"] == false),
        "{status}"
    );
    let refused = send(&gateway, "checked").await;
    assert!(
        [502, 503].contains(&refused.status().as_u16()),
        "{}",
        refused.status()
    );

    let up = upstream_on(port).await;
    wait_deployment(&gateway, "checked#0", "closed by a passing check", |s| {
        s["state"] == "closed"
    })
    .await;
    let status = deployment(&gateway, "checked#0").await;
    let checks = status["checks"].as_array().unwrap();
    assert!(checks.len() <= 3, "rolling window of 3: {status}");
    assert_eq!(checks.last().unwrap()["ok"], true);
    assert!(up.requests().iter().any(|r| r.path.ends_with("/models")));
    let response = send(&gateway, "checked").await;
    assert_eq!(response.status(), 200);
}
