//! Tests of [`super`] without Redis: every refusal before the nonce claim, the key checks,
//! the body digest and the statuses. The claim itself is tested end to end in
//! `dataplane/tests/it/batch_lines.rs` (real Redis, two data planes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use omg_shared::cluster::{body_digest, new_nonce, sign_identity, Audience, Identity, RequestLine};
use omg_shared::config::load_str;
use omg_shared::keys::KeyHasher;
use omg_shared::snapshot::Snapshot;
use uuid::Uuid;

use super::*;

const SECRET: &str = "an-internal-secret-of-at-least-32-characters";
const NOW_MS: i64 = 1_700_000_000_000;

fn snapshot() -> RuntimeSnapshot {
    let text = r#"
model_catalog: [{alias: m, provider: mock}]
bootstrap:
  tenants: [{name: t}, {name: other}, {name: s, status: suspended}]
  api_keys:
    - {tenant: t, prefix: good, secret: s3cret}
    - {tenant: t, prefix: off, secret: s3cret, status: disabled}
    - {tenant: t, prefix: old, secret: s3cret, expires_at: "2020-01-01T00:00:00Z"}
    - {tenant: s, prefix: sus, secret: s3cret}
"#;
    let config = load_str(text, &|_| None).unwrap();
    let hasher = KeyHasher::new(b"pepper-for-tests");
    let snapshot = Snapshot::from_config(&config, &hasher, 1, 0).unwrap();
    RuntimeSnapshot::build(snapshot, hasher).unwrap()
}

/// Batch lines on a Redis nobody listens on (the claim fails: 503).
fn lines() -> BatchLines {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut config = omg_shared::config::GatewayConfig::default();
    config.redis.url = Some(Secret::new(format!("redis://127.0.0.1:{port}/0")));
    config.cluster.internal_secret = Some(Secret::new(SECRET));
    BatchLines::from_config(&config)
        .unwrap()
        .expect("configured")
}

fn identity(key: &KeyEntry, body: &[u8]) -> Identity {
    Identity {
        audience: Audience::Dataplane,
        tenant_id: key.key.tenant_id,
        key_id: key.key.id,
        user_id: None,
        request_id: "r1".to_owned(),
        method: "POST".to_owned(),
        path: "/v1/chat/completions".to_owned(),
        query: String::new(),
        nonce: new_nonce().unwrap(),
        issued_at: NOW_MS / 1000,
        batch_id: Some("batch_1".to_owned()),
        body_sha256: Some(body_digest(body)),
    }
}

fn arrival(header: &str) -> Arrival<'_> {
    Arrival {
        header: Some(header),
        request: RequestLine {
            method: "POST",
            path: "/v1/chat/completions",
            query: "",
            audience: Audience::Dataplane,
        },
        with_credentials: false,
        model_route: true,
    }
}

async fn cause(lines: Option<&BatchLines>, arrival: Arrival<'_>) -> (&'static str, u16) {
    let refusal = BatchLines::admit(lines, arrival, &snapshot(), NOW_MS)
        .await
        .map(|_| ())
        .expect_err("refused");
    (refusal.cause(), refusal.api_error().code.status())
}

#[tokio::test]
async fn refusals_before_the_claim_name_their_cause_and_status() {
    let snapshot = snapshot();
    let key = snapshot.key("good").unwrap();
    let header = sign_identity(SECRET.as_bytes(), &identity(key, b"{}"));
    let lines = lines();
    assert_eq!(cause(None, arrival(&header)).await, ("not_cluster", 401));
    let both = Arrival {
        with_credentials: true,
        ..arrival(&header)
    };
    assert_eq!(cause(Some(&lines), both).await, ("with_credentials", 400));
    let models = Arrival {
        model_route: false,
        ..arrival(&header)
    };
    assert_eq!(cause(Some(&lines), models).await, ("route", 401));
    let forged = sign_identity(
        b"another-secret-of-at-least-32-characters",
        &identity(key, b""),
    );
    assert_eq!(
        cause(Some(&lines), arrival(&forged)).await,
        ("bad_signature", 401)
    );
    let mut old = identity(key, b"");
    old.issued_at -= 3600;
    let old = sign_identity(SECRET.as_bytes(), &old);
    assert_eq!(cause(Some(&lines), arrival(&old)).await, ("expired", 401));
    let mut upward = identity(key, b"");
    upward.audience = Audience::Controlplane;
    let upward = sign_identity(SECRET.as_bytes(), &upward);
    assert_eq!(
        cause(Some(&lines), arrival(&upward)).await,
        ("wrong_audience", 401)
    );
    let mut elsewhere = identity(key, b"");
    elsewhere.path = "/v1/embeddings".to_owned();
    let elsewhere = sign_identity(SECRET.as_bytes(), &elsewhere);
    assert_eq!(
        cause(Some(&lines), arrival(&elsewhere)).await,
        ("wrong_request", 401)
    );
    // A valid identity reaches the claim: Redis does not answer, so it is refused (503).
    assert_eq!(
        cause(Some(&lines), arrival(&header)).await,
        ("guard_unavailable", 503)
    );
}

#[test]
fn the_named_key_must_exist_be_usable_and_be_the_identitys_tenants() {
    let snapshot = snapshot();
    let good = snapshot.key("good").unwrap();
    let at = |identity: &Identity| key_of(&snapshot, identity, NOW_MS);
    assert_eq!(at(&identity(good, b"")).unwrap().key.id, good.key.id);

    let mut unknown = identity(good, b"");
    unknown.key_id = Uuid::now_v7();
    let refused = at(&unknown).map(|_| ()).unwrap_err();
    assert_eq!(
        (refused.cause(), refused.api_error().code.status()),
        ("key", 401)
    );

    let mut elsewhere = identity(good, b"");
    elsewhere.tenant_id = Uuid::now_v7();
    let refused = at(&elsewhere).map(|_| ()).unwrap_err();
    assert_eq!(
        (refused.cause(), refused.api_error().code.status()),
        ("tenant_mismatch", 401)
    );

    for (prefix, status) in [("off", 401), ("old", 401), ("sus", 403)] {
        let key = snapshot.key(prefix).unwrap();
        let refused = at(&identity(key, b"")).map(|_| ()).unwrap_err();
        assert_eq!(
            (refused.cause(), refused.api_error().code.status()),
            ("key", status),
            "{prefix}"
        );
    }
}

#[test]
fn the_body_must_be_the_signed_one_and_a_digest_is_required() {
    let snapshot = snapshot();
    let key = snapshot.key("good").unwrap();
    let signed = identity(key, br#"{"model":"m"}"#);
    assert!(check_body(&signed, br#"{"model":"m"}"#).is_ok());
    let refused = check_body(&signed, br#"{"model":"x"}"#).unwrap_err();
    assert_eq!(
        (refused.cause(), refused.api_error().code.status()),
        ("wrong_body", 401)
    );
    let mut bare = signed;
    bare.body_sha256 = None;
    assert_eq!(check_body(&bare, b"").unwrap_err().cause(), "wrong_body");
}

#[test]
fn a_stream_is_refused_with_its_parameter_and_the_guard_with_its_own_code() {
    let stream = Refusal::Stream.api_error();
    assert_eq!((stream.code.status(), stream.param), (400, Some("stream")));
    let guard = Refusal::GuardUnavailable("down".to_owned()).api_error();
    assert_eq!(guard.code.code(), "replay_guard_unavailable");
    assert_eq!(guard.code.status(), 503);
    assert!(
        !guard.message.contains("down"),
        "the Redis error stays in the log"
    );
}
