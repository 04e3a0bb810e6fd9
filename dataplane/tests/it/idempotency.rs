//! `Idempotency-Key` with the real binary: a retry gets the stored answer (JSON, and a stream
//! byte for byte) without a second upstream call or a charge, another body with the same key
//! is refused, concurrent duplicates make one upstream call, failures are not stored, and in
//! cluster mode a second data plane replays what the first stored in Redis. The service is
//! also driven directly against Redis (a prefix per test), including Redis being unreachable.

use std::time::{Duration, Instant};

use omg_dataplane::idempotency::{Begin, Fingerprint, Idempotency, Request, Settings, Stored};
use omg_shared::config::load_str;
use omg_shared::keys::KeyHasher;
use omg_shared::snapshot::Snapshot;
use omg_shared::vault::Vault;
use serde_json::{json, Value};

use crate::cluster::{forget, publish, spawn, KEY_B64, PEPPER, SHARED_REDIS};
use crate::harness::*;

const CHAT: &str = "/v1/chat/completions";

async fn send(gateway: &Gateway, key: &str, body: &Value) -> reqwest::Response {
    gateway
        .post(CHAT)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn replayed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
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

/// The metrics once `ready` holds (or after 10 s, for the assertion to show them).
async fn metrics_when(gateway: &Gateway, ready: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = metrics(gateway).await;
        if ready(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn counted(metrics: &str, outcome: &str) -> u64 {
    let line = format!("omg_idempotency_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_json_answer_is_replayed_without_calling_or_billing_again() {
    let upstream = upstream().await;
    // One request per minute: replays must not need any of it.
    let template = format!(
        "{}rate_limits:\n  default_requests_per_minute: 1\n",
        config(&upstream, "")
    );
    let gateway = Gateway::start(&template).await;
    let body = chat("gpt-up", false);

    let first = send(&gateway, "order-42", &body).await;
    assert_eq!(first.status(), 200, "{}", gateway.log());
    assert!(!replayed(&first));
    let first_id = request_id(&first);
    let first_body = first.bytes().await.unwrap();
    assert_eq!(upstream.request_count(), 1);

    for _ in 0..3 {
        let again = send(&gateway, "order-42", &body).await;
        assert_eq!(again.status(), 200, "{}", gateway.log());
        assert!(replayed(&again));
        assert_eq!(again.headers()["content-type"], "application/json");
        // The usual headers, showing that the replay took nothing.
        assert_eq!(again.headers()["x-ratelimit-remaining-requests"], "0");
        let again_id = request_id(&again);
        assert!(!again_id.is_empty() && again_id != first_id);
        assert_eq!(again.bytes().await.unwrap(), first_body);

        let record = gateway.usage_of(&again_id).await;
        assert_eq!(record["status"], 200);
        assert_eq!(record["idempotent_replay"], true, "{record}");
        assert_eq!(record["cost_micro_usd"], 0);
        assert_eq!(record["total_tokens"], 0);
        assert_eq!(record["alias"], "gpt-up");
    }
    assert_eq!(
        upstream.request_count(),
        1,
        "replays never reach the upstream"
    );

    let record = gateway.usage_of(&first_id).await;
    assert!(record["cost_micro_usd"].as_i64().unwrap() > 0, "{record}");
    assert!(record.get("idempotent_replay").is_none(), "{record}");

    // The minute's one request was the first: anything that really runs is refused.
    let other = send(&gateway, "order-43", &body).await;
    assert_eq!(other.status(), 429);
    assert_eq!(upstream.request_count(), 1);

    let metrics = metrics_when(&gateway, |m| {
        counted(m, "executed") >= 2 && counted(m, "replayed") >= 3 && counted(m, "stored") >= 1
    })
    .await;
    assert_eq!(counted(&metrics, "executed"), 2, "{metrics}");
    assert_eq!(counted(&metrics, "replayed"), 3, "{metrics}");
    assert_eq!(counted(&metrics, "stored"), 1, "{metrics}");
}

#[tokio::test]
async fn a_stream_is_replayed_byte_for_byte() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let body = chat("gpt-up", true);
    let first = send(&gateway, "stream-1", &body).await;
    assert_eq!(first.status(), 200);
    let first_bytes = first.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&first_bytes).into_owned();
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    assert_eq!(upstream.request_count(), 1);

    let again = send(&gateway, "stream-1", &body).await;
    assert_eq!(again.status(), 200);
    assert!(replayed(&again));
    assert_eq!(again.headers()["content-type"], "text/event-stream");
    let id = request_id(&again);
    assert_eq!(again.bytes().await.unwrap(), first_bytes);
    assert_eq!(upstream.request_count(), 1);
    let record = gateway.usage_of(&id).await;
    assert_eq!(record["stream"], true);
    assert_eq!(record["idempotent_replay"], true);
    assert_eq!(record["cost_micro_usd"], 0);
}

#[tokio::test]
async fn a_reused_key_with_another_body_is_refused_and_bad_keys_are_400() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    assert_eq!(
        send(&gateway, "k-1", &chat("gpt-up", false)).await.status(),
        200
    );
    let other =
        json!({"model": "gpt-up", "messages": [{"role": "user", "content": "Something else"}]});
    let refused = send(&gateway, "k-1", &other).await;
    assert_eq!(refused.status(), 422);
    assert!(!request_id(&refused).is_empty());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {
            "message": body["error"]["message"],
            "type": "invalid_request_error",
            "param": null,
            "code": "idempotency_key_reused",
        }})
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
    // A stream of the same chat is another request too.
    assert_eq!(
        send(&gateway, "k-1", &chat("gpt-up", true)).await.status(),
        422
    );
    assert_eq!(upstream.request_count(), 1);

    for bad in ["has space", &"k".repeat(256)] {
        let response = send(&gateway, bad, &chat("gpt-up", false)).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["param"], "Idempotency-Key", "{body}");
        assert_eq!(body["error"]["code"], "invalid_value");
    }
    let twice = gateway
        .post(CHAT)
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&chat("gpt-up", false))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    assert_eq!(upstream.request_count(), 1);
}

#[tokio::test]
async fn another_key_of_the_same_tenant_never_gets_the_stored_answer() {
    let upstream = upstream().await;
    let template = config(&upstream, "").replacen(
        "  api_keys:\n",
        "  api_keys:\n    - tenant: demo\n      prefix: demo2\n      secret: other-secret\n",
        1,
    );
    let gateway = Gateway::start(&template).await;
    let body = chat("gpt-up", false);
    let first = send(&gateway, "shared-42", &body).await;
    assert_eq!(first.status(), 200, "{}", gateway.log());
    let first_body = first.bytes().await.unwrap();

    // Same tenant, same `Idempotency-Key`, same body, other API key: runs on its own.
    let other = gateway
        .client
        .post(format!("{}{CHAT}", gateway.base))
        .bearer_auth("sk-demo2.other-secret")
        .header("Idempotency-Key", "shared-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "{}", gateway.log());
    assert!(!replayed(&other), "another key got the stored answer");
    let other_id = request_id(&other);
    assert_eq!(upstream.request_count(), 2);
    let record = gateway.usage_of(&other_id).await;
    assert!(record.get("idempotent_replay").is_none(), "{record}");
    assert!(record["cost_micro_usd"].as_i64().unwrap() > 0, "{record}");

    // The first key still gets its own answer back.
    let again = send(&gateway, "shared-42", &body).await;
    assert!(replayed(&again));
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(upstream.request_count(), 2);
}

#[tokio::test]
async fn concurrent_duplicates_make_one_upstream_call() {
    let upstream = upstream().await;
    let gateway = std::sync::Arc::new(Gateway::start(&config(&upstream, "")).await);
    // The upstream takes 3 s: duplicates arrive while the first runs, wait, then replay.
    let body = chat("up-slow", false);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (gateway, body) = (gateway.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let response = send(&gateway, "together", &body).await;
            let status = response.status();
            let replayed = replayed(&response);
            (status, replayed, response.bytes().await.unwrap())
        }));
    }
    let mut bodies = Vec::new();
    let mut replays = 0;
    for task in tasks {
        let (status, replayed, bytes) = task.await.unwrap();
        assert_eq!(status, 200, "{}", gateway.log());
        replays += usize::from(replayed);
        bodies.push(bytes);
    }
    assert_eq!(upstream.request_count(), 1);
    assert_eq!(replays, 4);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
}

#[tokio::test]
async fn failed_answers_are_not_stored() {
    let upstream = upstream().await;
    let gateway = Gateway::start(&config(&upstream, "")).await;
    let body = chat("up-fail-400", false);
    for calls in 1..=2 {
        let response = send(&gateway, "fails", &body).await;
        assert_eq!(response.status(), 400);
        assert!(!replayed(&response));
        assert_eq!(upstream.request_count(), calls);
    }
    // A stream cut by the upstream is not stored either.
    let cut = chat("up-cut", true);
    for calls in 3..=4 {
        let response = send(&gateway, "cut", &cut).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(text.contains("\"error\""), "{text}");
        assert_eq!(upstream.request_count(), calls);
    }
    // Counted when the request's claim is released, which may come just after the client
    // has read the answer.
    let metrics = metrics_when(&gateway, |m| counted(m, "not_stored") >= 4).await;
    assert_eq!(counted(&metrics, "not_stored"), 4, "{metrics}");
    assert_eq!(counted(&metrics, "replayed"), 0, "{metrics}");
}

#[tokio::test]
async fn disabled_ignores_the_header() {
    let upstream = upstream().await;
    let template = format!("{}idempotency:\n  enabled: false\n", config(&upstream, ""));
    let gateway = Gateway::start(&template).await;
    for calls in 1..=2 {
        let response = send(&gateway, "ignored", &chat("gpt-up", false)).await;
        assert_eq!(response.status(), 200);
        assert!(!replayed(&response));
        assert_eq!(upstream.request_count(), calls);
    }
    // Not even checked.
    let response = send(&gateway, "has space", &chat("gpt-up", false)).await;
    assert_eq!(response.status(), 200);
}

fn prefix() -> String {
    format!("it-idem:{}", uuid::Uuid::now_v7().simple())
}

async fn connect() -> redis::aio::MultiplexedConnection {
    redis::Client::open(SHARED_REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Deletes every key under `prefix`.
async fn clean(prefix: &str) {
    let mut conn = connect().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

/// A control-plane-like snapshot with `gpt-up` and `up-slow` on the mock upstream.
fn sealed_catalog(upstream: &omg_mock_upstream::MockUpstream) -> Vec<u8> {
    let base = upstream.base_url();
    let yaml = format!(
        "model_catalog:\n\
         \x20 - {{alias: gpt-up, provider: openai-compatible, provider_model: gpt-test, endpoint: \"{base}\", api_key: \"{UPSTREAM_KEY}\", price_input: 0.001, price_output: 0.002, health_check: false}}\n\
         \x20 - {{alias: up-slow, provider: openai-compatible, provider_model: \"gpt-test+slow-3000\", endpoint: \"{base}\", api_key: \"{UPSTREAM_KEY}\", health_check: false}}\n\
         bootstrap:\n  tenants:\n    - name: demo\n  api_keys:\n    - {{tenant: demo, prefix: demo, secret: my-secret}}\n"
    );
    let config = load_str(&yaml, &|_| None).unwrap();
    let hasher = KeyHasher::new(PEPPER.as_bytes());
    let mut snapshot =
        Snapshot::from_config(&config, &hasher, 1, chrono::Utc::now().timestamp_millis()).unwrap();
    snapshot.key_check = Some(hasher.check_value());
    let vault = Vault::new(&[(1, [7u8; 32])], 1).unwrap();
    omg_shared::cluster::seal_snapshot(&vault, &crate::cluster::signer(), &snapshot).unwrap()
}

#[tokio::test]
async fn cluster_data_planes_share_keys_through_redis() {
    let upstream = upstream().await;
    let prefix = prefix();
    let snapshot_key = format!("{prefix}:snap");
    publish(
        SHARED_REDIS,
        &snapshot_key,
        &sealed_catalog(&upstream),
        1,
        false,
    )
    .await;
    let start = || {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("ROUTER_REDIS_URL", SHARED_REDIS.to_owned()),
            ("ROUTER_CLUSTER_SNAPSHOT_KEY", snapshot_key.clone()),
            ("ROUTER_CLUSTER_COUNTER_PREFIX", format!("{prefix}:ctr")),
            ("ROUTER_CLUSTER_USAGE_STREAM", format!("{prefix}:usage")),
            ("ROUTER_SECURITY_API_KEY_PEPPER", PEPPER.to_owned()),
            ("OMG_ENCRYPTION_KEYS", format!("1:{KEY_B64}")),
            (
                "ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH",
                dir.path().join("snapshot.sealed").display().to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        spawn(dir, &[], &env)
    };
    let (mut a, mut b) = (start(), start());
    assert!(a.wait_ready().await, "log:\n{}", a.log());
    assert!(b.wait_ready().await, "log:\n{}", b.log());

    let body = chat("gpt-up", false);
    let first = send(&a, "shared-1", &body).await;
    assert_eq!(first.status(), 200, "{}", a.log());
    let first_body = first.bytes().await.unwrap();
    assert_eq!(upstream.request_count(), 1);
    let again = send(&b, "shared-1", &body).await;
    assert_eq!(again.status(), 200, "{}", b.log());
    assert!(replayed(&again));
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(
        upstream.request_count(),
        1,
        "the second data plane replayed"
    );
    let other = json!({"model": "gpt-up", "messages": [{"role": "user", "content": "else"}]});
    assert_eq!(send(&b, "shared-1", &other).await.status(), 422);

    // A duplicate on the other data plane while the first still runs: it waits in Redis
    // (polling), then replays.
    let slow = chat("up-slow", false);
    let running = tokio::spawn({
        let (client, url) = (a.client.clone(), format!("{}{CHAT}", a.base));
        let slow = slow.clone();
        async move {
            let response = client
                .post(url)
                .bearer_auth(KEY)
                .header("Idempotency-Key", "shared-2")
                .json(&slow)
                .send()
                .await
                .unwrap();
            (response.status(), response.bytes().await.unwrap())
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.request_count() < 2 {
        assert!(Instant::now() < deadline, "the slow request never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let duplicate = send(&b, "shared-2", &slow).await;
    assert_eq!(duplicate.status(), 200, "{}", b.log());
    assert!(replayed(&duplicate));
    let duplicate_body = duplicate.bytes().await.unwrap();
    let (status, original) = running.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(duplicate_body, original);
    assert_eq!(upstream.request_count(), 2);
    assert_eq!(counted(&metrics(&b).await, "waited"), 1);

    drop((a, b));
    forget(SHARED_REDIS, &snapshot_key).await;
    clean(&prefix).await;
}

fn settings(prefix: &str) -> Settings {
    Settings {
        ttl: Duration::from_secs(60),
        max_response_bytes: 1 << 20,
        redis_timeout: Duration::from_secs(1),
        counter_prefix: prefix.to_owned(),
    }
}

fn answer(text: &str) -> Stored {
    Stored {
        status: 200,
        content_type: "application/json".to_owned(),
        body: text.to_owned().into(),
    }
}

fn request(key: &str, body: &str) -> Request {
    Request::new(
        uuid::Uuid::from_u128(42),
        uuid::Uuid::from_u128(43),
        key,
        Fingerprint::of("POST", CHAT, body.as_bytes()),
    )
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_redis_store_claims_replays_releases_and_wakes_waiters() {
    let prefix = prefix();
    let a = Idempotency::shared(settings(&prefix), SHARED_REDIS).unwrap();
    let b = Idempotency::shared(settings(&prefix), SHARED_REDIS).unwrap();

    let Begin::Execute(claim) = a.begin(&request("k", "x"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    assert!(matches!(
        b.begin(&request("k", "y"), LONG, LONG).await,
        Begin::Mismatch
    ));
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.begin(&request("k", "x"), LONG, LONG).await }
    });
    claim.complete(answer("stored")).await;
    match waiter.await.unwrap() {
        Begin::Replay(stored) => assert_eq!(stored.body.as_ref(), b"stored"),
        _ => panic!("expected a replay"),
    }

    // Released (dropped uncompleted): the waiter on the other data plane runs it itself.
    let Begin::Execute(claim) = a.begin(&request("r", "x"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.begin(&request("r", "x"), LONG, LONG).await }
    });
    drop(claim);
    let Begin::Execute(second) = waiter.await.unwrap() else {
        panic!("expected the waiter to execute");
    };
    second.complete(answer("second")).await;
    assert!(matches!(
        a.begin(&request("r", "x"), LONG, LONG).await,
        Begin::Replay(stored) if stored.body.as_ref() == b"second"
    ));

    // A claim whose data plane died expires with its lease; a waiter gives up at its
    // deadline before that.
    let lease = Duration::from_millis(1500);
    let Begin::Execute(claim) = a.begin(&request("d", "x"), lease, LONG).await else {
        panic!("expected to execute");
    };
    std::mem::forget(claim);
    assert!(matches!(
        b.begin(&request("d", "x"), LONG, Duration::from_millis(50))
            .await,
        Begin::InUse
    ));
    assert!(matches!(
        b.begin(&request("d", "x"), LONG, LONG).await,
        Begin::Execute(_)
    ));
    assert!(!a.redis_down() && !b.redis_down());
    clean(&prefix).await;
}

#[tokio::test]
async fn without_redis_keys_are_checked_locally() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let service = Idempotency::shared(settings(&prefix()), &url).unwrap();
    let Begin::Execute(claim) = service.begin(&request("k", "x"), LONG, LONG).await else {
        panic!("expected to execute");
    };
    assert!(service.redis_down());
    claim.complete(answer("local")).await;
    assert!(matches!(
        service.begin(&request("k", "x"), LONG, LONG).await,
        Begin::Replay(stored) if stored.body.as_ref() == b"local"
    ));
    assert!(matches!(
        service.begin(&request("k", "y"), LONG, LONG).await,
        Begin::Mismatch
    ));
}
