//! The internal channel: only requests with a valid, unexpired identity signed with
//! `cluster.internal_secret` for their method, path and raw query get through, each once
//! across every control-plane replica (the nonce is claimed in Redis); without Redis the
//! channel fails closed.

use std::net::TcpListener;

use actix_web::web;
use omg_controlplane::state::AppState;
use omg_shared::cluster::{new_nonce, sign_identity, Audience, Identity, IDENTITY_HEADER};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::harness::*;
use crate::snapshot::{redis_conn, redis_url};

pub(crate) const SECRET: &str = "internal-secret-0123456789-0123456789-abcdef";

fn identity(method: &str, path: &str, query: &str, issued_at: i64) -> Identity {
    Identity {
        tenant_id: Uuid::from_u128(7),
        key_id: Uuid::from_u128(8),
        user_id: None,
        request_id: format!("req-{}", Uuid::now_v7()),
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        nonce: new_nonce().unwrap(),
        issued_at,
        audience: Audience::Controlplane,
        batch_id: None,
        body_sha256: None,
    }
}

fn signed(method: &str, path: &str, query: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    sign_identity(SECRET.as_bytes(), &identity(method, path, query, now))
}

/// The channel's settings with Redis at `redis` and every key under `prefix` (this test's).
pub(crate) fn channel_yaml(redis: &str, prefix: &str) -> String {
    format!(
        r#"
redis:
  url: "{redis}"
cluster:
  snapshot_key: "{prefix}:snapshot"
  usage_stream: "{prefix}:usage"
  counter_prefix: "{prefix}:ctr"
  snapshot_signing_key: "{SIGNING_KEY}"
  internal_listen_addr: "127.0.0.1:0"
  internal_secret: "{SECRET}"
  identity_window: 30s
"#
    )
}

pub(crate) fn test_prefix() -> String {
    format!("omg-test-chan-{}", Uuid::now_v7().simple())
}

/// Serves the internal listener of `state` on an ephemeral port; its base URL.
pub(crate) fn listen(state: &web::Data<AppState>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = omg_controlplane::internal::build(state.clone(), listener, 1).unwrap();
    tokio::spawn(server);
    base
}

/// A 401 of the channel; its message.
async fn refused(res: reqwest::Response) -> String {
    assert_eq!(res.status(), 401);
    let error: serde_json::Value = res.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key", "{error}");
    error["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_channel_needs_a_valid_signature() {
    let cp = Cp::start(&channel_yaml(&redis_url(), &test_prefix())).await;
    let base = listen(&cp.state);
    let http = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();
    let path = "/v1/files/_identity";

    // A signed request streams through; the probe reports what arrived.
    let body = vec![b'x'; 3 * 1024 * 1024 + 17];
    let header = signed("POST", path, "");
    let res = http
        .post(format!("{base}{path}"))
        .header(IDENTITY_HEADER, &header)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let probe: serde_json::Value = res.json().await.unwrap();
    assert_eq!(probe["tenant_id"], Uuid::from_u128(7).to_string());
    assert_eq!(probe["body_bytes"], body.len());
    assert_eq!(probe["body_sha256"], hex::encode(Sha256::digest(&body)));

    // The same header again: a replay.
    let replay = http
        .post(format!("{base}{path}"))
        .header(IDENTITY_HEADER, &header)
        .send()
        .await
        .unwrap();
    assert!(refused(replay).await.contains("(replayed:"));

    // No header, another secret, another path, expired, garbage.
    let missing = http.post(format!("{base}{path}")).send().await.unwrap();
    assert!(refused(missing).await.contains("missing identity"));
    let cases = [
        sign_identity(
            b"not-the-secret-not-the-secret-xx",
            &identity("POST", path, "", now),
        ),
        signed("POST", "/v1/batches/_identity", ""),
        sign_identity(SECRET.as_bytes(), &identity("POST", path, "", now - 3600)),
        "v2.garbage".to_owned(),
    ];
    for header in cases {
        let res = http
            .post(format!("{base}{path}"))
            .header(IDENTITY_HEADER, header)
            .send()
            .await
            .unwrap();
        refused(res).await;
    }

    // Signed requests to unknown endpoints get an OpenAI-shaped 404.
    let unknown = "/v1/unknown";
    let res = http
        .get(format!("{base}{unknown}"))
        .header(IDENTITY_HEADER, signed("GET", unknown, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let error: serde_json::Value = res.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unknown_url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_accepted_once_across_replicas_and_only_with_its_query() {
    // Two control planes on one database and one Redis namespace, each with its listener.
    let prefix = test_prefix();
    let yaml = channel_yaml(&redis_url(), &prefix);
    let a = Cp::start(&yaml).await;
    let b = omg_controlplane::app::start(parse_config(&config_yaml(&a.db.url, &yaml)))
        .await
        .unwrap();
    let (base_a, base_b) = (listen(&a.state), listen(&b));
    let http = reqwest::Client::new();
    let path = "/v1/files/_identity";
    let query = "purpose=batch&limit=2&after=file-%2Fx";

    // Accepted by replica A, then replayed verbatim to replica B (and to A): refused.
    let header = signed("POST", path, query);
    let first = http
        .post(format!("{base_a}{path}?{query}"))
        .header(IDENTITY_HEADER, &header)
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let probe: serde_json::Value = first.json().await.unwrap();
    assert_eq!(probe["query"], query);
    for base in [&base_b, &base_a] {
        let replay = http
            .post(format!("{base}{path}?{query}"))
            .header(IDENTITY_HEADER, &header)
            .body("payload")
            .send()
            .await
            .unwrap();
        let message = refused(replay).await;
        assert!(message.contains("(replayed:"), "{message}");
    }
    // The nonce is held in Redis under the cluster's prefix, for the identity's window.
    let nonce = identity_nonce(&header);
    let mut conn = redis_conn().await;
    let ttl: i64 = bb8_redis::redis::cmd("PTTL")
        .arg(format!("{prefix}:ctr:nonce:{nonce}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=31_000).contains(&ttl), "{ttl}");

    // An altered query string (changed, dropped, reordered) is refused by either replica and
    // does not use the nonce up: the request as signed still goes through once.
    let header = signed("GET", path, query);
    let altered = [
        format!("{base_b}{path}?purpose=batch&limit=100&after=file-%2Fx"),
        format!("{base_a}{path}"),
        format!("{base_b}{path}?limit=2&purpose=batch&after=file-%2Fx"),
    ];
    for url in altered {
        let res = http
            .get(&url)
            .header(IDENTITY_HEADER, &header)
            .send()
            .await
            .unwrap();
        let message = refused(res).await;
        assert!(message.contains("(wrong_query:"), "{url}: {message}");
    }
    let res = http
        .get(format!("{base_b}{path}?{query}"))
        .header(IDENTITY_HEADER, &header)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A data plane of the previous release (identity format v1): told to upgrade.
    let header = signed("POST", path, "");
    let old = format!("v1.{}", header.split_once('.').unwrap().1);
    let res = http
        .post(format!("{base_b}{path}"))
        .header(IDENTITY_HEADER, old)
        .send()
        .await
        .unwrap();
    let message = refused(res).await;
    assert!(message.contains("(outdated_format:"), "{message}");
    assert!(message.contains("upgrade the data planes"), "{message}");
}

/// The nonce inside a signed header (its payload is base64url JSON).
fn identity_nonce(header: &str) -> String {
    use base64::Engine as _;
    let payload = header.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let identity: Identity = serde_json::from_slice(&json).unwrap();
    identity.nonce
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_channel_fails_closed() {
    // Nothing listens on port 1: the replay guard cannot record the nonce.
    let db = TestDb::create().await;
    let yaml = config_yaml(
        &db.url,
        &channel_yaml("redis://127.0.0.1:1", &test_prefix()),
    );
    let state = omg_controlplane::app::start(parse_config(&yaml))
        .await
        .unwrap();
    let base = listen(&state);
    let path = "/v1/batches/_identity";
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header(IDENTITY_HEADER, signed("POST", path, ""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let error: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        error["error"]["code"], "replay_guard_unavailable",
        "{error}"
    );
    assert_eq!(error["error"]["type"], "server_error", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("replay guard needs Redis"), "{message}");
}
