//! Cluster mode with the real binary: cold start from the disk cache while Redis is down,
//! waiting (not listening) until a snapshot is published, pub/sub updates end to end, Redis
//! going away, a pepper mismatch stopping start-up. Redis is the machine's (unique keys) or a
//! private `redis-server` on an ephemeral port where it has to start late or stop.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use omg_shared::cluster::{seal_snapshot, BusKeys, SnapshotSigner};
use omg_shared::config::load_str;
use omg_shared::keys::KeyHasher;
use omg_shared::snapshot::Snapshot;
use omg_shared::vault::Vault;
use serde_json::Value;

use omg_mock_upstream::redis_server::PrivateRedis;

use crate::harness::*;

pub(crate) const PEPPER: &str = "cluster-it-pepper-0123456789abcdef";
pub(crate) const KEY_B64: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
pub(crate) const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";
/// The control plane's snapshot signing key in these tests (PKCS#8, from `openssl genpkey
/// -algorithm ed25519`) and its public key, given to every data plane [`spawn`] starts.
pub(crate) const SIGNING_KEY: &str =
    "MC4CAQAwBQYDK2VwBCIEIIyHhivEbzEHfu8XnJtJGRREIKiwZ9awX+XzNTOED5j4";
pub(crate) const PUBLIC_KEY: &str = "IDa5jVbB0JoABO8VhNxaMzfnOm0+Fb+/RWuPZ7azNIE=";

/// The test control plane's signer.
pub(crate) fn signer() -> SnapshotSigner {
    SnapshotSigner::from_base64(SIGNING_KEY).unwrap()
}

/// A control-plane-like snapshot: alias `mock-chat`, keys `sk-demo.my-secret` and
/// `sk-v<version>.secret`, sealed with the test key and signed by the test control plane.
fn sealed_with(version: u64, pepper: &str) -> Vec<u8> {
    sealed_by(version, pepper, &signer())
}

fn sealed_by(version: u64, pepper: &str, signer: &SnapshotSigner) -> Vec<u8> {
    let yaml = format!(
        "model_catalog:\n  - alias: mock-chat\n    provider: mock\nbootstrap:\n  tenants:\n    - name: demo\n  api_keys:\n    - {{tenant: demo, prefix: demo, secret: my-secret}}\n    - {{tenant: demo, prefix: v{version}, secret: secret}}\n"
    );
    let config = load_str(&yaml, &|_| None).unwrap();
    let hasher = KeyHasher::new(pepper.as_bytes());
    let mut snapshot = Snapshot::from_config(
        &config,
        &hasher,
        version,
        chrono::Utc::now().timestamp_millis(),
    )
    .unwrap();
    snapshot.key_check = Some(hasher.check_value());
    let vault = Vault::new(&[(1, [7u8; 32])], 1).unwrap();
    seal_snapshot(&vault, signer, &snapshot).unwrap()
}

fn sealed(version: u64) -> Vec<u8> {
    sealed_with(version, PEPPER)
}

async fn connect_url(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

/// What the control plane does: the envelope, its version, then (optionally) the announcement.
pub(crate) async fn publish(
    url: &str,
    snapshot_key: &str,
    bytes: &[u8],
    version: u64,
    announce: bool,
) {
    let mut conn = connect_url(url).await.unwrap();
    let keys = BusKeys::new(snapshot_key, "unused");
    let _: () = redis::cmd("SET")
        .arg(&keys.snapshot)
        .arg(bytes)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&keys.snapshot_version)
        .arg(version)
        .query_async(&mut conn)
        .await
        .unwrap();
    if announce {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&keys.snapshot_channel)
            .arg(version)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

async fn stored(url: &str, snapshot_key: &str) -> Option<Vec<u8>> {
    let mut conn = connect_url(url).await.unwrap();
    redis::cmd("GET")
        .arg(snapshot_key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

pub(crate) async fn forget(url: &str, snapshot_key: &str) {
    if let Ok(mut conn) = connect_url(url).await {
        let _: redis::RedisResult<i64> = redis::cmd("DEL")
            .arg(snapshot_key)
            .arg(format!("{snapshot_key}:version"))
            .query_async(&mut conn)
            .await;
    }
}

/// Starts the binary with `args` and `env` (the process's `ROUTER_*` variables removed), on
/// fresh ports, with the test control plane's public key unless `env` sets another; does not
/// wait.
pub(crate) fn spawn(dir: tempfile::TempDir, args: &[String], env: &[(String, String)]) -> Gateway {
    let port = free_port();
    let admin_port = free_port();
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_omg-dataplane"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROUTER_") {
            command.env_remove(name);
        }
    }
    let child = command
        .args(args)
        .env("ROUTER_CLUSTER_SNAPSHOT_PUBLIC_KEYS", PUBLIC_KEY)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("ROUTER_SERVER_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "ROUTER_SERVER_ADMIN_LISTEN_ADDR",
            format!("127.0.0.1:{admin_port}"),
        )
        .env(
            "ROUTER_USAGE_JSONL_PATH",
            dir.path().join("usage.jsonl").display().to_string(),
        )
        // Each process its own spool (a spool directory is locked to one data plane).
        .env(
            "ROUTER_CLUSTER_SPOOL_DIR",
            dir.path().join("spool").display().to_string(),
        )
        .env("ROUTER_SERVER_GRACEFUL_SHUTDOWN_DELAY", "0s")
        .env("ROUTER_SERVER_THREADS", "2")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    Gateway {
        child,
        base: format!("http://127.0.0.1:{port}"),
        admin: format!("http://127.0.0.1:{admin_port}"),
        config_path: dir.path().join("gateway.yaml"),
        dir,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

async fn chat_status(gateway: &Gateway, key: &str) -> u16 {
    gateway
        .client
        .post(format!("{}/v1/chat/completions", gateway.base))
        .bearer_auth(key)
        .json(&chat("mock-chat", false))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn health(gateway: &Gateway) -> Value {
    gateway
        .client
        .get(format!("{}/healthz", gateway.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
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

async fn wait_log(gateway: &Gateway, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gateway.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "log never said `{needle}`:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn listening(url: &str) -> bool {
    let address = url.trim_start_matches("http://");
    std::net::TcpStream::connect(address).is_ok()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn cold_start_from_the_disk_cache_while_redis_is_down_with_settings_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache/snapshot.sealed");
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    std::fs::write(&cache, sealed(3)).unwrap();
    // Nothing listens there; the password must never show.
    let redis_url = format!("redis://:pw-not-to-be-shown@127.0.0.1:{}/0", free_port());
    let env = [
        ("ROUTER_REDIS_URL", redis_url.as_str()),
        ("ROUTER_SECURITY_API_KEY_PEPPER", PEPPER),
        ("OMG_ENCRYPTION_KEYS", &format!("1:{KEY_B64}")),
        (
            "ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH",
            &cache.display().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let started = Instant::now();
    let mut gateway = spawn(dir, &[], &env);
    assert!(gateway.wait_ready().await, "log:\n{}", gateway.log());
    let ready_in = started.elapsed();
    assert!(ready_in < Duration::from_secs(10), "ready in {ready_in:?}");

    assert_eq!(chat_status(&gateway, "sk-v3.secret").await, 200);
    assert_eq!(chat_status(&gateway, KEY).await, 200);
    assert_eq!(chat_status(&gateway, "sk-v4.secret").await, 401);

    let health = self::health(&gateway).await;
    assert_eq!(health["mode"], "cluster", "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["snapshot"]["version"], 3);
    let bus = &health["bus"];
    assert_eq!(bus["snapshot_source"], "disk", "{health}");
    assert_eq!(bus["connected"], false);
    assert_eq!(bus["snapshot_version"], 3);
    assert!(
        bus["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1")),
        "{health}"
    );
    let metrics = self::metrics(&gateway).await;
    assert!(metrics.contains("omg_bus_connected 0"), "{metrics}");
    assert!(metrics.contains("omg_snapshot_version 3"));
    assert!(metrics.contains("omg_snapshot_age_seconds"));
    assert!(metrics.contains("omg_snapshot_updates_total{result=\"error\"}"));
    assert!(metrics.contains("omg_snapshot_last_error_timestamp_seconds"));
    assert!(!health.to_string().contains("pw-not-to-be-shown"));
    assert!(
        !gateway.log().contains("pw-not-to-be-shown"),
        "{}",
        gateway.log()
    );
    eprintln!("cold start from the disk cache: ready in {ready_in:?}");
}

#[tokio::test]
async fn without_any_snapshot_it_waits_without_listening_then_follows_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis_url = format!("redis://127.0.0.1:{port}/0");
    let cache = dir.path().join("snapshot.sealed");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster:\n  snapshot_key: from-the-file\n  snapshot_poll_interval: 60s\nsecurity:\n  api_key_pepper: \"{PEPPER}\"\n  encryption_keys:\n    - version: 1\n      key: \"{KEY_B64}\"\n"
        ),
    )
    .unwrap();
    // The flags override the file (`snapshot_key`) and select cluster mode.
    let args = [
        "--config".to_owned(),
        config.display().to_string(),
        "--redis-url".to_owned(),
        redis_url.clone(),
        "--snapshot-key".to_owned(),
        "gw:snap".to_owned(),
        "--snapshot-cache".to_owned(),
        cache.display().to_string(),
    ];
    let mut gateway = spawn(dir, &args, &[]);
    wait_log(&gateway, "no snapshot yet").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(gateway.child.try_wait().unwrap().is_none(), "still running");
    assert!(
        !listening(&gateway.base),
        "no public listener before a snapshot"
    );
    assert!(
        !listening(&gateway.admin),
        "no admin listener before a snapshot"
    );
    assert!(gateway.log().contains("start the control plane"));

    let mut redis = PrivateRedis::start_on(port);
    publish(&redis.url(), "gw:snap", &sealed(2), 2, false).await;
    assert!(gateway.wait_ready().await, "log:\n{}", gateway.log());
    assert_eq!(chat_status(&gateway, "sk-v2.secret").await, 200);
    // The cache holds exactly what Redis held, mode 0600.
    assert_eq!(
        std::fs::read(&cache).ok(),
        stored(&redis.url(), "gw:snap").await
    );
    assert_eq!(mode_of(&cache), 0o600);
    let status = health(&gateway).await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["bus"]["snapshot_source"], "redis", "{status}");

    // A new version reaches requests through pub/sub (polling is 60s here).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !health(&gateway).await["bus"]["connected"]
        .as_bool()
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "bus never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(&redis.url(), "gw:snap", &sealed(3), 3, true).await;
    let published = Instant::now();
    while chat_status(&gateway, "sk-v3.secret").await != 200 {
        assert!(
            published.elapsed() < Duration::from_secs(1),
            "version 3 not applied within 1s; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "pub/sub update reached requests in {:?}",
        published.elapsed()
    );
    assert_eq!(chat_status(&gateway, "sk-v2.secret").await, 401);

    // Redis goes away: still serving, and health says so.
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&gateway).await["bus"]["connected"] != false {
        assert!(Instant::now() < deadline, "disconnection not reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(chat_status(&gateway, "sk-v3.secret").await, 200);

    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(20)).await,
        Some(0),
        "log:\n{}",
        gateway.log()
    );
}

#[tokio::test]
async fn a_snapshot_made_with_another_pepper_stops_start_up() {
    let key = format!("omg-test:dpsnap-it:{}", uuid::Uuid::now_v7());
    publish(
        SHARED_REDIS,
        &key,
        &sealed_with(5, "another-pepper-0123456789abcdef"),
        5,
        false,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ROUTER_REDIS_URL", SHARED_REDIS),
        ("ROUTER_CLUSTER_SNAPSHOT_KEY", &key),
        ("ROUTER_SECURITY_API_KEY_PEPPER", PEPPER),
        ("OMG_ENCRYPTION_KEYS", &format!("1:{KEY_B64}")),
        (
            "ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH",
            &dir.path().join("snapshot.sealed").display().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let mut gateway = spawn(dir, &[], &env);
    let code = gateway.wait_exit(Duration::from_secs(20)).await;
    forget(SHARED_REDIS, &key).await;
    assert_eq!(code, Some(2), "log:\n{}", gateway.log());
    assert!(
        gateway.log().contains("security.api_key_pepper"),
        "{}",
        gateway.log()
    );
}

#[tokio::test]
async fn sigterm_while_waiting_exits_cleanly_and_standalone_still_needs_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "ROUTER_REDIS_URL",
            format!("redis://127.0.0.1:{}/0", free_port()),
        ),
        ("ROUTER_SECURITY_API_KEY_PEPPER", PEPPER.to_owned()),
        ("OMG_ENCRYPTION_KEYS", format!("1:{KEY_B64}")),
        (
            "ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH",
            dir.path().join("snapshot.sealed").display().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let mut gateway = spawn(dir, &[], &env);
    wait_log(&gateway, "no snapshot yet").await;
    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "log:\n{}",
        gateway.log()
    );

    // Standalone mode (no `redis.url`) without a file says what to do.
    let mut gateway = spawn(tempfile::tempdir().unwrap(), &[], &[]);
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)).await, Some(2));
    assert!(gateway.log().contains("--config FILE"), "{}", gateway.log());
}

/// Finding 9 end to end: a snapshot sealed with the shared encryption key but signed by
/// another key (what a compromised data plane can make) is refused, and its version does not
/// hold back the control plane's next one. A data plane
/// without `cluster.snapshot_public_keys` does not start.
#[tokio::test]
async fn a_forged_snapshot_is_refused_and_the_public_key_is_required() {
    let key = format!("omg-test:dpsnap-it:{}", uuid::Uuid::now_v7());
    publish(SHARED_REDIS, &key, &sealed(1), 1, false).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("snapshot.sealed").display().to_string();
    let env = [
        ("ROUTER_REDIS_URL", SHARED_REDIS),
        ("ROUTER_CLUSTER_SNAPSHOT_KEY", &key),
        ("ROUTER_CLUSTER_SNAPSHOT_POLL_INTERVAL", "100ms"),
        ("ROUTER_SECURITY_API_KEY_PEPPER", PEPPER),
        ("OMG_ENCRYPTION_KEYS", &format!("1:{KEY_B64}")),
        ("ROUTER_CLUSTER_SNAPSHOT_CACHE_PATH", &cache),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let mut gateway = spawn(dir, &[], &env);
    assert!(gateway.wait_ready().await, "log:\n{}", gateway.log());

    let (forger, _) = omg_shared::cluster::generate_signing_key().unwrap();
    let forger = SnapshotSigner::from_base64(&forger).unwrap();
    publish(SHARED_REDIS, &key, &sealed_by(7, PEPPER, &forger), 7, true).await;
    wait_log(&gateway, "not in `cluster.snapshot_public_keys`").await;
    assert_eq!(health(&gateway).await["snapshot"]["version"], 1);
    assert_eq!(chat_status(&gateway, "sk-v1.secret").await, 200);

    publish(SHARED_REDIS, &key, &sealed(2), 2, true).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&gateway).await["snapshot"]["version"] != 2 {
        assert!(Instant::now() < deadline, "log:\n{}", gateway.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat_status(&gateway, "sk-v2.secret").await, 200);
    forget(SHARED_REDIS, &key).await;

    let mut env = env.to_vec();
    env.push((
        "ROUTER_CLUSTER_SNAPSHOT_PUBLIC_KEYS".to_owned(),
        String::new(),
    ));
    let mut unkeyed = spawn(tempfile::tempdir().unwrap(), &[], &env);
    assert_eq!(unkeyed.wait_exit(Duration::from_secs(10)).await, Some(2));
    assert!(
        unkeyed.log().contains("cluster.snapshot_public_keys"),
        "{}",
        unkeyed.log()
    );
}
