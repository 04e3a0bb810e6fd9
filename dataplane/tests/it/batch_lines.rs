//! Batch lines with the real binary in cluster mode (the machine's Redis, a prefix per test,
//! the mock upstream): the control plane's batch worker sends each line with a signed identity
//! (`x-omg-identity`, audience `dataplane`) naming the batch's key instead of the key itself.
//! An accepted line runs as that key and its usage record carries the batch id; a forged,
//! stale, misaddressed, altered or replayed identity (also replayed at another data plane), an
//! unusable key, a tenant mismatch, credentials beside the identity and `"stream": true` are
//! refused; Redis down is 503; standalone refuses identities. A line whose sender leaves
//! mid-exchange is finished, stored and billed once, and its re-send is replayed.
//!
//! [`signed_line`] shows how a control plane signs a line (what the batch worker does).

use std::time::{Duration, Instant};

use omg_shared::cluster::{sign_identity, BatchLine, Identity, IDENTITY_HEADER, USAGE_FIELD};
use omg_shared::config::load_str;
use omg_shared::keys::KeyHasher;
use omg_shared::snapshot::Snapshot;
use omg_shared::vault::Vault;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

use crate::cluster::{forget, publish, spawn, KEY_B64, PEPPER, SHARED_REDIS};
use crate::harness::*;

/// `cluster.internal_secret` of both planes in these tests.
pub(crate) const INTERNAL_SECRET: &str = "batch-lines-it-internal-secret-0123456789";
const CHAT: &str = "/v1/chat/completions";

/// The identity header of one batch line of `batch_id`, sent as `key` of `tenant` with exactly
/// `body` to `path`: what the control plane's batch worker puts in [`IDENTITY_HEADER`]. Every
/// send (a re-send too) needs a fresh one.
pub(crate) fn signed_line(
    tenant: Uuid,
    key: Uuid,
    batch_id: &str,
    path: &str,
    body: &[u8],
) -> String {
    let line = BatchLine {
        tenant_id: tenant,
        key_id: key,
        user_id: None,
        batch_id,
        request_id: &format!("{batch_id}-line"),
        method: "POST",
        path,
        body,
    };
    let identity = Identity::for_batch_line(&line, chrono::Utc::now().timestamp()).unwrap();
    sign_identity(INTERNAL_SECRET.as_bytes(), &identity)
}

/// Signs `identity` as given (for the refusals).
fn signed(identity: &Identity) -> String {
    sign_identity(INTERNAL_SECRET.as_bytes(), identity)
}

/// The published snapshot's tenants and keys.
struct Ids {
    tenant: Uuid,
    key: Uuid,
    revoked: Uuid,
    frozen_tenant: Uuid,
    frozen_key: Uuid,
}

/// A control-plane-like snapshot: `gpt-up` and `up-slow` (answers after 1.5 s) on the mock
/// upstream; tenant `demo` with keys `demo` (active) and `gone` (revoked), tenant `frozen`
/// (suspended) with key `frz`.
fn sealed_catalog(upstream: &omg_mock_upstream::MockUpstream) -> (Vec<u8>, Ids) {
    let base = upstream.base_url();
    let yaml = format!(
        "model_catalog:\n\
         \x20 - {{alias: gpt-up, provider: openai-compatible, provider_model: gpt-test, endpoint: \"{base}\", api_key: \"{UPSTREAM_KEY}\", price_input: 0.001, price_output: 0.002, health_check: false}}\n\
         \x20 - {{alias: up-slow, provider: openai-compatible, provider_model: \"gpt-test+slow-1500\", endpoint: \"{base}\", api_key: \"{UPSTREAM_KEY}\", price_input: 0.001, price_output: 0.002, health_check: false}}\n\
         bootstrap:\n  tenants:\n    - name: demo\n    - {{name: frozen, status: suspended}}\n  api_keys:\n\
         \x20   - {{tenant: demo, prefix: demo, secret: my-secret}}\n\
         \x20   - {{tenant: demo, prefix: gone, secret: my-secret, status: revoked}}\n\
         \x20   - {{tenant: frozen, prefix: frz, secret: my-secret}}\n"
    );
    let config = load_str(&yaml, &|_| None).unwrap();
    let hasher = KeyHasher::new(PEPPER.as_bytes());
    let mut snapshot =
        Snapshot::from_config(&config, &hasher, 1, chrono::Utc::now().timestamp_millis()).unwrap();
    snapshot.key_check = Some(hasher.check_value());
    let key = |prefix: &str| snapshot.keys.iter().find(|k| k.prefix == prefix).unwrap();
    let ids = Ids {
        tenant: key("demo").tenant_id,
        key: key("demo").id,
        revoked: key("gone").id,
        frozen_tenant: key("frz").tenant_id,
        frozen_key: key("frz").id,
    };
    let vault = Vault::new(&[(1, [7u8; 32])], 1).unwrap();
    let sealed =
        omg_shared::cluster::seal_snapshot(&vault, &crate::cluster::signer(), &snapshot).unwrap();
    (sealed, ids)
}

/// Data planes on the shared Redis under one prefix, accepting batch lines.
struct Fixture {
    upstream: omg_mock_upstream::MockUpstream,
    prefix: String,
    snapshot_key: String,
    ids: Ids,
}

impl Fixture {
    async fn new() -> Fixture {
        let upstream = upstream().await;
        let prefix = format!("it-batch:{}", Uuid::now_v7().simple());
        let snapshot_key = format!("{prefix}:snap");
        let (sealed, ids) = sealed_catalog(&upstream);
        publish(SHARED_REDIS, &snapshot_key, &sealed, 1, false).await;
        Fixture {
            upstream,
            prefix,
            snapshot_key,
            ids,
        }
    }

    /// A data plane of this cluster (its `redis.url` is `redis_url`).
    async fn data_plane_on(&self, redis_url: &str, cache: Option<&[u8]>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join("snapshot.sealed");
        if let Some(sealed) = cache {
            std::fs::write(&cache_path, sealed).unwrap();
        }
        let env = [
            ("ROUTER_REDIS_URL", redis_url.to_owned()),
            ("ROUTER_CLUSTER_SNAPSHOT_KEY", self.snapshot_key.clone()),
            (
                "ROUTER_CLUSTER_COUNTER_PREFIX",
                format!("{}:ctr", self.prefix),
            ),
            (
                "ROUTER_CLUSTER_USAGE_STREAM",
                format!("{}:usage", self.prefix),
            ),
            ("ROUTER_CLUSTER_INTERNAL_SECRET", INTERNAL_SECRET.to_owned()),
            ("ROUTER_SECURITY_API_KEY_PEPPER", PEPPER.to_owned()),
            ("OMG_ENCRYPTION_KEYS", format!("1:{KEY_B64}")),
            (
                "ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH",
                cache_path.display().to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let mut gateway = spawn(dir, &[], &env);
        assert!(gateway.wait_ready().await, "log:\n{}", gateway.log());
        gateway
    }

    async fn data_plane(&self) -> Gateway {
        self.data_plane_on(SHARED_REDIS, None).await
    }

    /// The usage record of `request_id` once shipped to the usage stream.
    async fn usage_of(&self, request_id: &str) -> Value {
        let mut conn = redis::Client::open(SHARED_REDIS)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(format!("{}:usage", self.prefix))
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            let found = entries
                .iter()
                .flat_map(|(_, fields)| fields)
                .filter(|(name, _)| name == USAGE_FIELD)
                .filter_map(|(_, event)| serde_json::from_str::<Value>(event).ok())
                .find(|event| event["request_id"] == request_id);
            if let Some(event) = found {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "no usage record for {request_id}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn clean(self) {
        forget(SHARED_REDIS, &self.snapshot_key).await;
        let mut conn = redis::Client::open(SHARED_REDIS)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> =
                redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
}

/// Sends `body` to `path` of `gateway` with `identity` (and nothing else) as header.
async fn line(
    gateway: &Gateway,
    path: &str,
    identity: &str,
    body: &[u8],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = gateway
        .client
        .post(format!("{}{path}", gateway.base))
        .header(IDENTITY_HEADER, identity)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let json = response.json().await.unwrap_or(Value::Null);
    (status, json, headers)
}

fn chat_body(model: &str) -> Vec<u8> {
    serde_json::to_vec(&chat(model, false)).unwrap()
}

/// The error's message and code.
fn error(json: &Value) -> (&str, &str) {
    (
        json["error"]["message"].as_str().unwrap_or(""),
        json["error"]["code"].as_str().unwrap_or(""),
    )
}

async fn refused_count(gateway: &Gateway, cause: &str) -> u64 {
    let text = gateway
        .client
        .get(format!("{}/metrics", gateway.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("omg_batch_identity_refused_total{{cause=\"{cause}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_signed_line_runs_as_its_key_and_its_usage_carries_the_batch_id() {
    let fixture = Fixture::new().await;
    let gateway = fixture.data_plane().await;
    let ids = &fixture.ids;
    let body = chat_body("gpt-up");
    let header = signed_line(ids.tenant, ids.key, "batch_it1", CHAT, &body);
    let (status, json, headers) = line(&gateway, CHAT, &header, &body).await;
    assert_eq!(status, 200, "{json}\n{}", gateway.log());
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(fixture.upstream.request_count(), 1);
    // The upstream gets the gateway's credential, never the identity.
    let sent = &fixture.upstream.requests()[0];
    assert_eq!(sent.header(IDENTITY_HEADER), None);
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    let record = fixture.usage_of(&request_id).await;
    assert_eq!(record["batch_id"], "batch_it1", "{record}");
    assert_eq!(record["tenant_id"], json!(ids.tenant));
    assert_eq!(record["key_id"], json!(ids.key));
    assert_eq!(record["status"], 200);
    assert!(record["cost_micro_usd"].as_i64().unwrap() > 0, "{record}");
    assert!(
        !gateway.log().contains(&header),
        "the identity header is never logged"
    );

    // Another endpoint: the identity is bound to the path it was signed for.
    let embed = br#"{"model":"gpt-up","input":"x"}"#;
    let for_chat = signed_line(ids.tenant, ids.key, "batch_it1", CHAT, embed);
    let (status, json, _) = line(&gateway, "/v1/embeddings", &for_chat, embed).await;
    assert_eq!((status, error(&json).1), (401, "invalid_api_key"), "{json}");
    assert!(error(&json).0.contains("wrong_request"), "{json}");
    // A client key's requests carry no batch id.
    let response = gateway
        .client
        .post(format!("{}{CHAT}", gateway.base))
        .bearer_auth(KEY)
        .json(&chat("gpt-up", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = fixture.usage_of(&request_id_of(&response)).await;
    assert!(record.get("batch_id").is_none(), "{record}");
    drop(gateway);
    fixture.clean().await;
}

fn request_id_of(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn forged_stale_misaddressed_altered_and_replayed_lines_are_refused() {
    let fixture = Fixture::new().await;
    let (a, b) = (fixture.data_plane().await, fixture.data_plane().await);
    let ids = &fixture.ids;
    let body = chat_body("gpt-up");
    let fresh = |key: Uuid, tenant: Uuid| {
        let line = BatchLine {
            tenant_id: tenant,
            key_id: key,
            user_id: None,
            batch_id: "batch_it2",
            request_id: "batch_it2-line",
            method: "POST",
            path: CHAT,
            body: &body,
        };
        Identity::for_batch_line(&line, chrono::Utc::now().timestamp()).unwrap()
    };
    let refused = |status: u16, cause: &'static str| (status, cause);
    let mut cases: Vec<(String, Vec<u8>, (u16, &str))> = Vec::new();
    // The body is not the one signed.
    cases.push((
        signed(&fresh(ids.key, ids.tenant)),
        chat_body("up-slow"),
        refused(401, "wrong_body"),
    ));
    // No digest signed at all.
    let mut bare = fresh(ids.key, ids.tenant);
    bare.body_sha256 = None;
    cases.push((signed(&bare), body.clone(), refused(401, "wrong_body")));
    // Addressed to the control plane.
    let mut upward = fresh(ids.key, ids.tenant);
    upward.audience = omg_shared::cluster::Audience::Controlplane;
    cases.push((
        signed(&upward),
        body.clone(),
        refused(401, "wrong_audience"),
    ));
    // Signed outside `cluster.identity_window` (60 s).
    let mut stale = fresh(ids.key, ids.tenant);
    stale.issued_at -= 120;
    cases.push((signed(&stale), body.clone(), refused(401, "expired")));
    // Another secret.
    let forged = sign_identity(
        b"not-the-internal-secret-0123456789abcdef",
        &fresh(ids.key, ids.tenant),
    );
    cases.push((forged, body.clone(), refused(401, "bad_signature")));
    // Unknown, revoked, another tenant's key, a suspended tenant.
    cases.push((
        signed(&fresh(Uuid::now_v7(), ids.tenant)),
        body.clone(),
        refused(401, "key"),
    ));
    cases.push((
        signed(&fresh(ids.revoked, ids.tenant)),
        body.clone(),
        refused(401, "key"),
    ));
    cases.push((
        signed(&fresh(ids.key, ids.frozen_tenant)),
        body.clone(),
        refused(401, "tenant_mismatch"),
    ));
    cases.push((
        signed(&fresh(ids.frozen_key, ids.frozen_tenant)),
        body.clone(),
        refused(403, "key"),
    ));
    for (header, sent, (status, cause)) in &cases {
        let before = refused_count(&a, cause).await;
        let (got, json, _) = line(&a, CHAT, header, sent).await;
        assert_eq!(got, *status, "{cause}: {json}");
        assert_eq!(refused_count(&a, cause).await, before + 1, "{cause}");
    }
    assert_eq!(
        fixture.upstream.request_count(),
        0,
        "nothing refused reached the upstream"
    );

    // Replayed: the same header twice at one data plane, then at another.
    let header = signed(&fresh(ids.key, ids.tenant));
    assert_eq!(line(&a, CHAT, &header, &body).await.0, 200);
    let (status, json, _) = line(&a, CHAT, &header, &body).await;
    assert_eq!(status, 401, "{json}");
    assert!(error(&json).0.contains("replayed"), "{json}");
    let (status, json, _) = line(&b, CHAT, &header, &body).await;
    assert_eq!(status, 401, "another data plane refuses it too: {json}");
    assert!(error(&json).0.contains("replayed"), "{json}");
    assert_eq!(refused_count(&b, "replayed").await, 1);
    assert_eq!(fixture.upstream.request_count(), 1);

    // Credentials beside the identity; a stream; a route batch lines do not use.
    let both = b
        .client
        .post(format!("{}{CHAT}", b.base))
        .bearer_auth(KEY)
        .header(IDENTITY_HEADER, signed(&fresh(ids.key, ids.tenant)))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    assert!(error(&both.json().await.unwrap()).0.contains("both"));
    let streamed = serde_json::to_vec(&chat("gpt-up", true)).unwrap();
    let header = signed_line(ids.tenant, ids.key, "batch_it2", CHAT, &streamed);
    let (status, json, _) = line(&b, CHAT, &header, &streamed).await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["error"]["param"], "stream");
    let models = b
        .client
        .get(format!("{}/v1/models", b.base))
        .header(IDENTITY_HEADER, signed(&fresh(ids.key, ids.tenant)))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
    assert_eq!(fixture.upstream.request_count(), 1);
    drop((a, b));
    fixture.clean().await;
}

#[tokio::test]
async fn without_redis_a_line_is_refused_503_and_standalone_refuses_identities() {
    let fixture = Fixture::new().await;
    let (sealed, ids) = sealed_catalog(&fixture.upstream);
    // Started from its disk cache; nothing listens at its Redis.
    let dead = format!("redis://127.0.0.1:{}/0", free_port());
    let gateway = fixture.data_plane_on(&dead, Some(&sealed)).await;
    let body = chat_body("gpt-up");
    let header = signed_line(ids.tenant, ids.key, "batch_it3", CHAT, &body);
    let (status, json, _) = line(&gateway, CHAT, &header, &body).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(error(&json).1, "replay_guard_unavailable", "{json}");
    assert_eq!(fixture.upstream.request_count(), 0);
    drop(gateway);

    let standalone = Gateway::start(&config(&fixture.upstream, "")).await;
    let (status, json, _) = line(&standalone, CHAT, &header, &body).await;
    assert_eq!(status, 401, "{json}");
    assert!(error(&json).0.contains("cluster mode"), "{json}");
    assert_eq!(fixture.upstream.request_count(), 0);
    fixture.clean().await;
}

/// Sends a line over a raw connection and closes it once the upstream has the request: the
/// sender vanishing mid-exchange (the control plane killed).
/// Its request id is `<line>-first`.
async fn send_then_vanish(
    gateway: &Gateway,
    fixture: &Fixture,
    header: &str,
    body: &[u8],
    (key, line): (&str, &str),
) {
    let before = fixture.upstream.request_count();
    let address = gateway.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    // Closed with a reset (what a killed process's socket with unread data gets), so the
    // data plane's write of the answer fails instead of landing in a buffer.
    stream.set_zero_linger().unwrap();
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{IDENTITY_HEADER}: {header}\r\nidempotency-key: {key}\r\nx-request-id: {line}-first\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fixture.upstream.request_count() == before {
        assert!(
            Instant::now() < deadline,
            "the line never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stream);
}

#[tokio::test]
async fn a_line_whose_sender_vanished_is_finished_stored_and_billed_once() {
    let fixture = Fixture::new().await;
    let (a, b) = (fixture.data_plane().await, fixture.data_plane().await);
    let ids = &fixture.ids;
    let body = chat_body("up-slow");
    let resend = |gateway: &Gateway, key: &str| {
        let header = signed_line(ids.tenant, ids.key, "batch_it4", CHAT, &body);
        gateway
            .client
            .post(format!("{}{CHAT}", gateway.base))
            .header(IDENTITY_HEADER, header)
            .header("idempotency-key", key.to_owned())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };

    // Re-sent after the first finished: the stored answer, no second upstream call.
    let key = "batch_batch_it4_0";
    let header = signed_line(ids.tenant, ids.key, "batch_it4", CHAT, &body);
    send_then_vanish(&a, &fixture, &header, &body, (key, "line-0")).await;
    let first = fixture.usage_of("line-0-first").await;
    assert_eq!(first["status"], 200, "billed as answered: {first}");
    assert_eq!(first["batch_id"], "batch_it4");
    assert!(first["completion_tokens"].as_u64().unwrap() > 0, "{first}");
    let again = resend(&b, key).await.unwrap();
    assert_eq!(again.status(), 200, "{}", b.log());
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(fixture.upstream.request_count(), 1);
    let replay = fixture.usage_of(&request_id_of(&again)).await;
    assert_eq!(replay["idempotent_replay"], true);
    assert_eq!(replay["cost_micro_usd"], 0);

    // Re-sent while the first still runs (the upstream answers after 1.5 s): it waits, then
    // gets the same answer.
    let key = "batch_batch_it4_1";
    let header = signed_line(ids.tenant, ids.key, "batch_it4", CHAT, &body);
    send_then_vanish(&a, &fixture, &header, &body, (key, "line-1")).await;
    let again = resend(&b, key).await.unwrap();
    assert_eq!(again.status(), 200, "{}", b.log());
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let answer: Value = again.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(
        fixture.upstream.request_count(),
        2,
        "one upstream call per line"
    );
    let first = fixture.usage_of("line-1-first").await;
    assert_eq!(first["status"], 200, "{first}");
    drop((a, b));
    fixture.clean().await;
}
