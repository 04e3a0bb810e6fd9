//! Snapshot publishing: admin changes reach Redis as sealed, versioned snapshots, debounced;
//! the timer repairs a flushed Redis; content matches Postgres plus the YAML catalog.

use std::time::{Duration, Instant};

use bb8_redis::redis;
use omg_shared::cluster::open_snapshot;
use omg_shared::snapshot::Snapshot;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::harness::*;

pub fn redis_url() -> String {
    std::env::var("OMG_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub async fn redis_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at OMG_TEST_REDIS (default redis://127.0.0.1:6379)")
}

/// Config with Redis and a key namespace of this test only.
fn cluster_yaml(prefix: &str) -> String {
    format!(
        r#"
redis:
  url: "{}"
cluster:
  snapshot_key: "{prefix}:snapshot"
  snapshot_signing_key: "{SIGNING_KEY}"
  usage_stream: "{prefix}:usage"
  publish_interval: 300ms
  publish_debounce: 20ms
model_catalog:
  - alias: mock-gpt
    provider: mock
    price_input: 0.5
    price_output: 1.5
  - alias: gpt-4o-mini
    provider: openai
    api_key: "sk-yaml-secret-1234567"
"#,
        redis_url()
    )
}

pub async fn current(
    cp: &Cp,
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Option<Snapshot> {
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{prefix}:snapshot"))
        .query_async(conn)
        .await
        .unwrap();
    // `None` also while Redis holds something that does not open (a test's garbage).
    bytes.and_then(|b| open_snapshot(&cp.state.vault, &cp.state.snapshot_verifier, &b).ok())
}

/// Waits until the published snapshot satisfies `check`.
pub async fn wait_for(
    cp: &Cp,
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    within: Duration,
    check: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = Instant::now() + within;
    loop {
        if let Some(snapshot) = current(cp, conn, prefix).await {
            if check(&snapshot) {
                return snapshot;
            }
        }
        assert!(
            Instant::now() < deadline,
            "snapshot condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_are_published_sealed_and_versioned() {
    let prefix = format!("omgtest:{}", Uuid::now_v7().simple());
    let cp = Cp::start(&cluster_yaml(&prefix)).await;
    let mut redis = redis_conn().await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);

    // Published at start: the YAML catalog, the pepper check, no keys yet.
    let first = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |_| true).await;
    assert!(first.keys.is_empty());
    assert_eq!(
        first.key_check.as_deref(),
        Some(cp.state.hasher.check_value().as_str())
    );
    let aliases: Vec<&str> = first.models.iter().map(|m| m.alias.as_str()).collect();
    assert_eq!(aliases, ["mock-gpt", "gpt-4o-mini"]);
    let openai = &first.models[1].deployments[0];
    assert_eq!(
        openai.api_key.as_ref().map(|s| s.expose()),
        Some("sk-yaml-secret-1234567")
    );
    // Sealed: the secret is not readable in Redis.
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(format!("{prefix}:snapshot"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("sk-yaml-secret"));

    // A tenant and a key issued through the API appear within a second.
    let (status, tenant) = cp
        .call(
            Method::POST,
            "/admin/tenants",
            Some(&t),
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(status, 201, "{tenant}");
    let tid = tenant["id"].as_str().unwrap().to_owned();
    let (status, issued) = cp
        .call(
            Method::POST,
            &format!("/admin/tenants/{tid}/api-keys"),
            Some(&t),
            Some(
                json!({"name": "ci", "prefix": "acme-ci", "allowed_models": ["mock-gpt"],
                        "rate_limit": {"requests_per_minute": 50}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let kid = issued["id"].as_str().unwrap().to_owned();
    let with_key = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(1), |s| {
        s.keys.iter().any(|k| k.prefix == "acme-ci")
    })
    .await;
    assert!(with_key.version > first.version);
    let key = with_key
        .keys
        .iter()
        .find(|k| k.prefix == "acme-ci")
        .unwrap();
    assert_eq!(key.tenant_id.to_string(), tid);
    assert_eq!(
        key.allowed_models.as_deref(),
        Some(&["mock-gpt".to_owned()][..])
    );
    assert_eq!(key.limits.requests_per_minute, Some(50));
    assert_eq!(
        key.digest,
        cp.state.hasher.digest(issued["key"].as_str().unwrap())
    );

    // A database deployment replaces the YAML alias, with its credential opened; an alias
    // switched off disappears.
    let (status, created) = cp
        .call(
            Method::POST,
            "/admin/model-catalog",
            Some(&t),
            Some(json!({
            "alias": "gpt-4o-mini", "provider": "openai-compatible",
            "endpoint": "http://127.0.0.1:9/v1", "api_key": "sk-db-secret-987654321"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = cp
        .call(
            Method::PATCH,
            "/admin/model-catalog/aliases/mock-gpt",
            Some(&t),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let catalog = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(1), |s| {
        s.models.iter().all(|m| m.alias != "mock-gpt")
            && s.models.iter().any(|m| {
                m.alias == "gpt-4o-mini"
                    && m.deployments[0].api_key.as_ref().map(|k| k.expose())
                        == Some("sk-db-secret-987654321")
            })
    })
    .await;
    let deployment = &catalog.models[0].deployments[0];
    assert_eq!(deployment.id, created["id"].as_str().unwrap());

    // Revoked keys leave the snapshot.
    let (status, _) = cp
        .call(
            Method::DELETE,
            &format!("/admin/tenants/{tid}/api-keys/{kid}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let revoked = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(1), |s| {
        s.keys.is_empty()
    })
    .await;
    assert!(revoked.version > catalog.version);

    // Redis loses everything: the timer republishes.
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:snapshot"))
        .arg(format!("{prefix}:snapshot:version"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let repaired = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(3), |_| true).await;
    assert!(repaired.version > revoked.version);
    assert_eq!(repaired.tenants.len(), revoked.tenants.len());
    // The publisher records its status just after Redis answers: wait for it to catch up.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let status = loop {
        let status = cp.state.publisher.status();
        if status.version >= Some(repaired.version) || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        status.version >= Some(repaired.version),
        "{:?}",
        status.version
    );
    assert!(status.last_error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_newer_snapshot_is_kept_and_garbage_is_superseded() {
    let prefix = format!("omgtest:{}", Uuid::now_v7().simple());
    let cp = Cp::start(&cluster_yaml(&prefix)).await;
    let mut redis = redis_conn().await;
    let first = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |_| true).await;
    let setter = redis.clone();
    let set = |key: String, value: Vec<u8>| {
        let mut redis = setter.clone();
        async move {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async(&mut redis)
                .await
                .unwrap();
        }
    };

    // Another replica published the same content under a higher version: kept.
    let mut newer = first.clone();
    newer.version = first.version + 1000;
    let signer = cp.state.snapshot_signer.as_ref().unwrap();
    let sealed = omg_shared::cluster::seal_snapshot(&cp.state.vault, signer, &newer).unwrap();
    set(format!("{prefix}:snapshot"), sealed).await;
    set(
        format!("{prefix}:snapshot:version"),
        newer.version.to_string().into_bytes(),
    )
    .await;
    cp.state.publisher.changed();
    let deadline = Instant::now() + Duration::from_secs(3);
    while cp.state.publisher.status().version != Some(newer.version) {
        assert!(
            Instant::now() < deadline,
            "publisher never looked at the newer snapshot"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        current(&cp, &mut redis, &prefix).await.unwrap().version,
        newer.version
    );

    // Garbage under an even higher version: no control plane signed it, so it is replaced
    // without chasing its version.
    let garbage_version = first.version + 5000;
    set(
        format!("{prefix}:snapshot"),
        b"OMGSNAP2 not a snapshot".to_vec(),
    )
    .await;
    set(
        format!("{prefix}:snapshot:version"),
        garbage_version.to_string().into_bytes(),
    )
    .await;
    cp.state.publisher.changed();
    let repaired = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(3), |_| true).await;
    assert!(repaired.version < garbage_version);
    assert_eq!(repaired.tenants.len(), first.tenants.len());
}

/// Finding 9: a data plane holds the encryption keys, so it can seal a snapshot, and Redis
/// write access lets it store one under version `u64::MAX`. The control plane does not
/// recognise the signature and overwrites it (the newer-only write would otherwise refuse
/// every later version forever); the same for a version key that does not match the signed
/// envelope beside it, or that is not a number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_snapshot_under_a_huge_version_does_not_lock_out_the_control_plane() {
    let prefix = format!("omgtest:{}", Uuid::now_v7().simple());
    let cp = Cp::start(&cluster_yaml(&prefix)).await;
    let mut redis = redis_conn().await;
    let first = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |_| true).await;
    let (forger, _) = omg_shared::cluster::generate_signing_key().unwrap();
    let forger = omg_shared::cluster::SnapshotSigner::from_base64(&forger).unwrap();
    let mut forged = first.clone();
    forged.version = u64::MAX;
    forged.keys.clear();
    let signer = cp.state.snapshot_signer.as_ref().unwrap();
    let genuine_old = omg_shared::cluster::seal_snapshot(&cp.state.vault, signer, &first).unwrap();
    let cases: [(Vec<u8>, String); 4] = [
        (
            omg_shared::cluster::seal_snapshot(&cp.state.vault, &forger, &forged).unwrap(),
            u64::MAX.to_string(),
        ),
        // A genuine old envelope under a forged version key.
        (genuine_old, u64::MAX.to_string()),
        (b"whatever".to_vec(), "not-a-number".to_owned()),
        // Just above ours: published above it (data planes remember the version they
        // refused, so the same number would not be fetched again).
        (b"OMGSNAP2 garbage".to_vec(), "{next}".to_owned()),
    ];
    let mut last = first.version;
    for (envelope, version) in cases {
        let near = version == "{next}";
        let version = if near {
            (last + 1).to_string()
        } else {
            version
        };
        let _: () = redis::cmd("MSET")
            .arg(format!("{prefix}:snapshot"))
            .arg(envelope)
            .arg(format!("{prefix}:snapshot:version"))
            .arg(&version)
            .query_async(&mut redis)
            .await
            .unwrap();
        // A change to publish: the tenant count grows.
        let tenant = cp.tenant(&format!("t-{}", Uuid::now_v7().simple())).await;
        cp.state.publisher.changed();
        let replaced = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |s| {
            s.tenants.iter().any(|t| t.id == tenant.id)
        })
        .await;
        assert!(
            replaced.version > last && replaced.version < 1_000_000,
            "{version}"
        );
        if near {
            assert!(replaced.version > last + 1, "{version}");
        }
        let stored: String = redis::cmd("GET")
            .arg(format!("{prefix}:snapshot:version"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(stored, replaced.version.to_string());
        last = replaced.version;
    }
    assert!(cp.state.publisher.status().last_error.is_none());
}

/// `keys generate-signing` makes a usable pair (no configuration needed) and `keys
/// public-key` prints the configured key's public half.
#[test]
fn the_signing_key_commands_print_usable_keys() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_omg-controlplane"))
            .args(args)
            .env_remove("ROUTER_CONFIG_FILE")
            .output()
            .unwrap()
    };
    let out = run(&["keys", "generate-signing"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    let signer =
        omg_shared::cluster::SnapshotSigner::from_base64(&value("snapshot_signing_key")).unwrap();
    assert_eq!(signer.public_key_base64(), value("snapshot_public_keys"));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.yaml");
    let extra = format!(
        "redis:\n  url: \"{}\"\ncluster:\n  snapshot_signing_key: \"{SIGNING_KEY}\"\n",
        redis_url()
    );
    std::fs::write(
        &config,
        config_yaml("postgres://unused@127.0.0.1/x", &extra),
    )
    .unwrap();
    let out = run(&["--config", config.to_str().unwrap(), "keys", "public-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), PUBLIC_KEY);
}
