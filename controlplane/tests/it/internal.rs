//! The internal channel: only requests with a valid, unexpired, unreplayed identity signed
//! with `cluster.internal_secret` for their method and path get through.

use std::net::TcpListener;

use omg_shared::cluster::{sign_identity, Identity, IDENTITY_HEADER};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::harness::*;

const SECRET: &str = "internal-secret-0123456789-0123456789-abcdef";

fn identity(method: &str, path: &str, issued_at: i64) -> Identity {
    Identity {
        tenant_id: Uuid::from_u128(7),
        key_id: Uuid::from_u128(8),
        user_id: None,
        request_id: format!("req-{}", Uuid::now_v7()),
        method: method.to_owned(),
        path: path.to_owned(),
        issued_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_channel_needs_a_valid_signature() {
    let cp = Cp::start(&format!(
        "cluster:\n  internal_listen_addr: \"127.0.0.1:0\"\n  internal_secret: \"{SECRET}\"\n  identity_window: 30s\n"
    ))
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = omg_controlplane::internal::build(cp.state.clone(), listener, 1).unwrap();
    tokio::spawn(server);
    let http = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();
    let path = "/v1/files/_identity";

    // A signed request streams through; the probe reports what arrived.
    let body = vec![b'x'; 3 * 1024 * 1024 + 17];
    let signed = sign_identity(SECRET.as_bytes(), &identity("POST", path, now));
    let res = http
        .post(format!("{base}{path}"))
        .header(IDENTITY_HEADER, &signed)
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
    let refused = |res: reqwest::Response| async move {
        assert_eq!(res.status(), 401);
        let error: serde_json::Value = res.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_api_key", "{error}");
        error["error"]["message"].as_str().unwrap().to_owned()
    };
    let replay = http
        .post(format!("{base}{path}"))
        .header(IDENTITY_HEADER, &signed)
        .send()
        .await
        .unwrap();
    refused(replay).await;

    // No header, another secret, another path, expired, garbage.
    let missing = http.post(format!("{base}{path}")).send().await.unwrap();
    assert!(refused(missing).await.contains("missing identity"));
    let cases = [
        sign_identity(
            b"not-the-secret-not-the-secret-xx",
            &identity("POST", path, now),
        ),
        sign_identity(
            SECRET.as_bytes(),
            &identity("POST", "/v1/batches/_identity", now),
        ),
        sign_identity(SECRET.as_bytes(), &identity("POST", path, now - 3600)),
        "v1.garbage".to_owned(),
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

    // Signed requests to endpoints not built yet get an OpenAI-shaped 404.
    let files = "/v1/files";
    let res = http
        .get(format!("{base}{files}"))
        .header(
            IDENTITY_HEADER,
            sign_identity(SECRET.as_bytes(), &identity("GET", files, now)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let error: serde_json::Value = res.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unknown_url");
}
