//! Cluster mode against real Redis: the machine's (each test under its own key prefix) and,
//! where Redis has to stop, a private `redis-server` on an ephemeral port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omg_shared::cluster::{seal_snapshot, SnapshotSigner, UNSIGNED_SNAPSHOT_MAGIC};
use omg_shared::config::{load_str, GatewayConfig};
use omg_shared::keys::KeyHasher;
use omg_shared::snapshot::Snapshot;
use omg_shared::vault::Vault;
use tokio::sync::watch;

use super::*;
use crate::snapshot::SnapshotStore;
use omg_mock_upstream::redis_server::PrivateRedis;

const PEPPER: &str = "cluster-test-pepper-0123456789abcdef";
const KEY_B64: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";
/// The control plane's snapshot signing key in these tests (PKCS#8, from `openssl genpkey
/// -algorithm ed25519`) and its public key.
const SIGNING_KEY: &str = "MC4CAQAwBQYDK2VwBCIEIIyHhivEbzEHfu8XnJtJGRREIKiwZ9awX+XzNTOED5j4";
const PUBLIC_KEY: &str = "IDa5jVbB0JoABO8VhNxaMzfnOm0+Fb+/RWuPZ7azNIE=";

fn signer() -> SnapshotSigner {
    SnapshotSigner::from_base64(SIGNING_KEY).unwrap()
}

/// Another key pair: a forger's, or the next key of a rotation.
fn other_signer() -> SnapshotSigner {
    let (private, _) = omg_shared::cluster::generate_signing_key().unwrap();
    SnapshotSigner::from_base64(&private).unwrap()
}

fn vault() -> Vault {
    Vault::new(&[(1, [7u8; 32])], 1).unwrap()
}

/// A snapshot with key `sk-v<version>.secret` (and `sk-demo.my-secret`), sealed and signed
/// by the control plane's key.
fn sealed_with(version: u64, pepper: &str, vault: &Vault, key_check: bool) -> Vec<u8> {
    sealed_by(version, pepper, vault, key_check, &signer())
}

fn sealed_by(
    version: u64,
    pepper: &str,
    vault: &Vault,
    key_check: bool,
    signer: &SnapshotSigner,
) -> Vec<u8> {
    let yaml = format!(
        "model_catalog:\n  - alias: mock-chat\n    provider: mock\nbootstrap:\n  tenants:\n    - name: demo\n  api_keys:\n    - {{tenant: demo, prefix: demo, secret: my-secret}}\n    - {{tenant: demo, prefix: v{version}, secret: secret}}\n"
    );
    let config = load_str(&yaml, &|_| None).unwrap();
    let hasher = KeyHasher::new(pepper.as_bytes());
    let mut snapshot = Snapshot::from_config(&config, &hasher, version, 1_700_000_000_000).unwrap();
    if key_check {
        snapshot.key_check = Some(hasher.check_value());
    }
    seal_snapshot(vault, signer, &snapshot).unwrap()
}

fn sealed(version: u64) -> Vec<u8> {
    sealed_with(version, PEPPER, &vault(), true)
}

fn config(redis_url: &str, prefix: &str, dir: &std::path::Path, poll: &str) -> GatewayConfig {
    config_with(redis_url, prefix, dir, poll, PUBLIC_KEY, "")
}

/// `extra`: more lines of the `cluster` section.
fn config_with(
    redis_url: &str,
    prefix: &str,
    dir: &std::path::Path,
    poll: &str,
    public_keys: &str,
    extra: &str,
) -> GatewayConfig {
    let yaml = format!(
        "redis:\n  url: \"{redis_url}\"\ncluster:\n  snapshot_key: \"{prefix}:snapshot\"\n  snapshot_poll_interval: {poll}\n  snapshot_cache_path: \"{}/cache/snapshot.sealed\"\n  snapshot_public_keys: \"{public_keys}\"\n{extra}security:\n  api_key_pepper: \"{PEPPER}\"\n  encryption_keys:\n    - version: 1\n      key: \"{KEY_B64}\"\n    - version: 2\n      key: \"{KEY2_B64}\"\n",
        dir.display()
    );
    load_str(&yaml, &|_| None).unwrap()
}

/// The second encryption key (`[9; 32]`), for rotation.
const KEY2_B64: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

fn prefix() -> String {
    format!("omg-test:dpsnap:{}", uuid::Uuid::now_v7())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// What the control plane does: store the envelope and its version, then announce it.
async fn publish(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    bytes: &[u8],
    version: u64,
    announce: bool,
) {
    let keys = BusKeys::new(&format!("{prefix}:snapshot"), "unused");
    let _: () = redis::cmd("SET")
        .arg(&keys.snapshot)
        .arg(bytes)
        .query_async(conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&keys.snapshot_version)
        .arg(version)
        .query_async(conn)
        .await
        .unwrap();
    if announce {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&keys.snapshot_channel)
            .arg(version)
            .query_async(conn)
            .await
            .unwrap();
    }
}

async fn cleanup(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}:snapshot"))
        .arg(format!("{prefix}:snapshot:version"))
        .query_async(conn)
        .await
        .unwrap_or(0);
}

/// A follower running on `store` (starting at `initial`), stopped when the sender drops.
fn follow(cluster: &Arc<Cluster>, initial: u64) -> (Arc<SnapshotStore>, watch::Sender<bool>) {
    let store = Arc::new(SnapshotStore::new(cluster.open(&sealed(initial)).unwrap()));
    let (stop, watch) = watch::channel(false);
    let (task_cluster, task_store) = (cluster.clone(), store.clone());
    tokio::spawn(async move { task_cluster.follow(&task_store, watch).await });
    (store, stop)
}

async fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

fn refused_total() -> u64 {
    crate::metrics::Metrics::global()
        .snapshot_updates
        .with_label_values(&["refused"])
        .get()
}

#[test]
fn cache_is_replaced_atomically_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/snapshot.sealed");
    assert!(read_cache(&path).unwrap().is_none());
    write_cache(&path, b"first").unwrap();
    write_cache(&path, b"second").unwrap();
    assert_eq!(read_cache(&path).unwrap().as_deref(), Some(&b"second"[..]));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let parent = path.parent().unwrap();
    let names: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["snapshot.sealed"],
        "no temporary file is left behind"
    );
    // A failed write leaves the previous cache intact.
    let blocked = dir.path().join("file-not-dir");
    std::fs::write(&blocked, b"x").unwrap();
    assert!(write_cache(&blocked.join("snapshot.sealed"), b"third").is_err());
    assert_eq!(read_cache(&path).unwrap().as_deref(), Some(&b"second"[..]));
}

#[test]
fn open_refuses_tampered_foreign_and_invalid_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::from_config(&config(SHARED_REDIS, "unused", dir.path(), "2s")).unwrap();
    let good = sealed(4);
    let runtime = cluster.open(&good).unwrap();
    assert_eq!(runtime.version, 4);
    assert!(runtime.key("v4").is_some());

    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(cluster.open(&tampered), Err(Refusal::Envelope(_))));
    // Relabelling the clear version is detected too (it is authenticated).
    let mut relabelled = good.clone();
    relabelled[15] = 9;
    assert!(matches!(
        cluster.open(&relabelled),
        Err(Refusal::Envelope(_))
    ));
    assert!(matches!(
        cluster.open(b"garbage"),
        Err(Refusal::Envelope(_))
    ));

    let other_key = Vault::new(&[(1, [9u8; 32])], 1).unwrap();
    assert!(matches!(
        cluster.open(&sealed_with(5, PEPPER, &other_key, true)),
        Err(Refusal::Envelope(_))
    ));
    let foreign = cluster.open(&sealed_with(
        5,
        "another-pepper-0123456789abcdef",
        &vault(),
        true,
    ));
    assert!(matches!(foreign, Err(Refusal::Pepper)));
    assert!(Refusal::Pepper
        .to_string()
        .contains("security.api_key_pepper"));
    assert!(matches!(
        cluster.open(&sealed_with(5, PEPPER, &vault(), false)),
        Err(Refusal::NoKeyCheck)
    ));

    let config = load_str("bootstrap:\n  tenants:\n    - name: demo\n", &|_| None).unwrap();
    let hasher = KeyHasher::new(PEPPER.as_bytes());
    let mut future = Snapshot::from_config(&config, &hasher, 6, 0).unwrap();
    future.key_check = Some(hasher.check_value());
    future.schema_version = 99;
    let refused = cluster.open(&seal_snapshot(&vault(), &signer(), &future).unwrap());
    assert!(
        matches!(&refused, Err(Refusal::Invalid(message)) if message.contains("schema version 99")),
        "{refused:?}"
    );
}

#[test]
fn redis_credentials_stay_out_of_messages() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::from_config(&config(
        "redis://user:s3cr3t-pw@127.0.0.1:6379/2",
        "unused",
        dir.path(),
        "2s",
    ))
    .unwrap();
    assert_eq!(cluster.status().target(), "127.0.0.1:6379/2");
    assert_eq!(
        cluster.scrub("auth failed for s3cr3t-pw"),
        "auth failed for ****"
    );
    assert!(!format!("{cluster:?}").contains("s3cr3t"));
}

#[tokio::test]
async fn a_published_snapshot_is_applied_within_a_second_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    // Polling is slow here: only pub/sub can deliver within a second.
    let cluster =
        Arc::new(Cluster::from_config(&config(SHARED_REDIS, &prefix, dir.path(), "60s")).unwrap());
    let (store, _stop) = follow(&cluster, 1);
    let status = cluster.status();
    until("connected", Duration::from_secs(5), || status.connected()).await;
    // The first poll runs right after connecting; let it pass.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut conn = connect(SHARED_REDIS).await;
    let bytes = sealed(2);
    publish(&mut conn, &prefix, &bytes, 2, true).await;
    let took = until("applied via pub/sub", Duration::from_secs(1), || {
        store.load().version == 2
    })
    .await;
    assert!(store.load().key("v2").is_some(), "applied in {took:?}");
    assert_eq!(status.source(), Some(SnapshotSource::Redis));

    let path = cluster.cache_path().to_owned();
    until("cache written", Duration::from_secs(2), || {
        read_cache(&path).ok().flatten().as_deref() == Some(bytes.as_slice())
    })
    .await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The same version again is a no-op.
    publish(&mut conn, &prefix, &bytes, 2, true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.load().version, 2);
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn a_lost_publish_is_caught_by_polling() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let cluster = Arc::new(
        Cluster::from_config(&config(SHARED_REDIS, &prefix, dir.path(), "300ms")).unwrap(),
    );
    let (store, _stop) = follow(&cluster, 1);
    let status = cluster.status();
    until("connected", Duration::from_secs(5), || status.connected()).await;

    let mut conn = connect(SHARED_REDIS).await;
    publish(&mut conn, &prefix, &sealed(3), 3, false).await;
    until("applied by polling", Duration::from_secs(3), || {
        store.load().version == 3
    })
    .await;
    assert!(store.load().key("v3").is_some());
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn older_tampered_and_foreign_snapshots_are_refused_and_the_current_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let config = config_with(
        SHARED_REDIS,
        &prefix,
        dir.path(),
        "200ms",
        PUBLIC_KEY,
        "  snapshot_max_version_jump: 1000\n",
    );
    let cluster = Arc::new(Cluster::from_config(&config).unwrap());
    let (store, _stop) = follow(&cluster, 5);
    let status = cluster.status();
    until("connected", Duration::from_secs(5), || status.connected()).await;
    let mut conn = connect(SHARED_REDIS).await;

    let mut tampered = sealed(7);
    let last = tampered.len() - 1;
    tampered[last] ^= 0x40;
    let other_key = Vault::new(&[(1, [9u8; 32])], 1).unwrap();
    // Finding 9: what a data plane holding the encryption keys can make.
    let forger = other_signer();
    let cases: Vec<(u64, Vec<u8>, &str)> = vec![
        (3, sealed(3), "older than the version 5"),
        (7, tampered, "signature does not verify"),
        (
            8,
            sealed_with(8, "another-pepper-0123456789abcdef", &vault(), true),
            "security.api_key_pepper",
        ),
        (
            9,
            sealed_with(9, PEPPER, &other_key, true),
            "failed authentication",
        ),
        (10, b"not a snapshot".to_vec(), "bad magic"),
        (12, unsigned(12), "unsigned snapshot"),
        (
            13,
            sealed_by(13, PEPPER, &vault(), true, &forger),
            "not in `cluster.snapshot_public_keys`",
        ),
        (
            u64::MAX,
            sealed_by(u64::MAX, PEPPER, &vault(), true, &forger),
            "snapshot_max_version_jump",
        ),
        // Even the control plane's own signature does not make a huge jump acceptable.
        (1006, sealed(1006), "snapshot_max_version_jump"),
    ];
    for (version, bytes, reason) in cases {
        let before = refused_total();
        publish(&mut conn, &prefix, &bytes, version, true).await;
        until(
            &format!("version {version} refused"),
            Duration::from_secs(3),
            || {
                status.last_error().is_some_and(|e| {
                    e.contains(&format!("version {version} refused")) && e.contains(reason)
                })
            },
        )
        .await;
        assert!(refused_total() > before);
        assert_eq!(
            store.load().version,
            5,
            "version {version}: still serving 5"
        );
        assert!(store.load().key("v5").is_some());
    }
    // A refused version staying in Redis is reported once, not at every poll.
    let before = refused_total();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(refused_total(), before, "refused once, not per poll");
    // Nothing refused reached the cache.
    assert!(read_cache(cluster.cache_path()).unwrap().is_none());

    publish(&mut conn, &prefix, &sealed(11), 11, true).await;
    until(
        "a good one is applied after",
        Duration::from_secs(2),
        || store.load().version == 11,
    )
    .await;
    cleanup(&mut conn, &prefix).await;
}

#[tokio::test]
async fn the_follower_keeps_serving_while_redis_is_down_and_catches_up_after() {
    let port = free_port();
    let mut redis = PrivateRedis::start_on(port);
    let dir = tempfile::tempdir().unwrap();
    let cluster =
        Arc::new(Cluster::from_config(&config(&redis.url(), "bus", dir.path(), "60s")).unwrap());
    let (store, _stop) = follow(&cluster, 1);
    let status = cluster.status();
    until("connected", Duration::from_secs(5), || status.connected()).await;

    redis.stop();
    until("disconnection noticed", Duration::from_secs(5), || {
        !status.connected()
    })
    .await;
    assert!(status.last_error().is_some_and(|e| e.contains("127.0.0.1")));
    assert_eq!(store.load().version, 1);

    // Redis comes back already holding a newer snapshot whose announcement nobody heard:
    // the check made on reconnection finds it (polling is 60s here).
    let redis = PrivateRedis::start_on(port);
    let mut conn = connect(&redis.url()).await;
    publish(&mut conn, "bus", &sealed(2), 2, true).await;
    until(
        "caught up after reconnecting",
        Duration::from_secs(10),
        || store.load().version == 2,
    )
    .await;
    assert!(status.connected());
}

#[tokio::test]
async fn start_up_uses_redis_then_the_disk_cache_and_otherwise_waits() {
    // Redis first: the snapshot is applied and cached.
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let cluster = Cluster::from_config(&config(SHARED_REDIS, &prefix, dir.path(), "2s")).unwrap();
    let mut conn = connect(SHARED_REDIS).await;
    publish(&mut conn, &prefix, &sealed(4), 4, false).await;
    let (runtime, source) = cluster.first_snapshot().await.unwrap();
    assert_eq!((runtime.version, source), (4, SnapshotSource::Redis));
    assert_eq!(
        read_cache(cluster.cache_path()).unwrap(),
        Some(sealed_bytes_of(&mut conn, &prefix).await)
    );
    cleanup(&mut conn, &prefix).await;

    // Redis unreachable: the disk cache.
    let port = free_port();
    let offline = format!("redis://127.0.0.1:{port}/0");
    let cluster = Cluster::from_config(&config(&offline, "bus", dir.path(), "2s")).unwrap();
    let (runtime, source) = cluster.first_snapshot().await.unwrap();
    assert_eq!((runtime.version, source), (4, SnapshotSource::Disk));
    assert!(!cluster.status().connected());

    // Neither: wait until Redis has one.
    let empty = tempfile::tempdir().unwrap();
    let cluster =
        Arc::new(Cluster::from_config(&config(&offline, "bus", empty.path(), "2s")).unwrap());
    let waiting = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.first_snapshot().await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished());
    let redis = PrivateRedis::start_on(port);
    let mut conn = connect(&redis.url()).await;
    publish(&mut conn, "bus", &sealed(6), 6, false).await;
    let (runtime, source) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((runtime.version, source), (6, SnapshotSource::Redis));
}

/// A snapshot in the unsigned envelope of earlier versions (sealed with the right key).
fn unsigned(version: u64) -> Vec<u8> {
    let signed = sealed(version);
    let opened = omg_shared::cluster::open_snapshot(&vault(), &signer().verifier(), &signed);
    let json = serde_json::to_vec(&opened.unwrap()).unwrap();
    let mut header = UNSIGNED_SNAPSHOT_MAGIC.to_vec();
    header.extend_from_slice(&version.to_be_bytes());
    let mut out = header.clone();
    out.extend_from_slice(&vault().seal(&json, &header).unwrap());
    out
}

async fn sealed_bytes_of(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<u8> {
    redis::cmd("GET")
        .arg(format!("{prefix}:snapshot"))
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn start_up_refuses_a_snapshot_made_with_another_pepper() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let cluster = Cluster::from_config(&config(SHARED_REDIS, &prefix, dir.path(), "2s")).unwrap();
    let mut conn = connect(SHARED_REDIS).await;
    let foreign = sealed_with(4, "another-pepper-0123456789abcdef", &vault(), true);
    publish(&mut conn, &prefix, &foreign, 4, false).await;
    let message = cluster.first_snapshot().await.err().unwrap_or_default();
    assert!(message.contains("security.api_key_pepper"), "{message}");
    cleanup(&mut conn, &prefix).await;
}

/// Rotation of both keys: the data plane lists the old and the new public key while the
/// control plane switches, then only the new one; the encryption key rotates the same way
/// (the data plane holds both versions). Updates never stop.
#[tokio::test]
async fn signing_and_encryption_key_rotation_keeps_data_planes_updating() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let new = other_signer();
    let rotated_vault = Vault::new(&[(1, [7u8; 32]), (2, [9u8; 32])], 2).unwrap();
    let both = format!("{PUBLIC_KEY}, {}", new.public_key_base64());
    let cluster = Arc::new(
        Cluster::from_config(&config_with(
            SHARED_REDIS,
            &prefix,
            dir.path(),
            "100ms",
            &both,
            "",
        ))
        .unwrap(),
    );
    let (store, stop) = follow(&cluster, 1);
    let status = cluster.status();
    until("connected", Duration::from_secs(5), || status.connected()).await;
    let mut conn = connect(SHARED_REDIS).await;
    let steps = [
        (2, sealed(2)),
        (3, sealed_by(3, PEPPER, &vault(), true, &new)),
        (4, sealed_by(4, PEPPER, &rotated_vault, true, &new)),
    ];
    for (version, bytes) in steps {
        publish(&mut conn, &prefix, &bytes, version, true).await;
        until(
            &format!("version {version}"),
            Duration::from_secs(3),
            || store.load().version == version,
        )
        .await;
    }
    drop(stop);

    // The old public key removed: a restart starts from the cache (signed by the new key)
    // and keeps following; the old key's signature no longer counts.
    let only_new = new.public_key_base64();
    let cluster = Arc::new(
        Cluster::from_config(&config_with(
            SHARED_REDIS,
            &prefix,
            dir.path(),
            "100ms",
            &only_new,
            "",
        ))
        .unwrap(),
    );
    let (runtime, _) = cluster.first_snapshot().await.unwrap();
    assert_eq!(runtime.version, 4);
    let store = Arc::new(SnapshotStore::new(runtime));
    let (_stop, watch) = watch::channel(false);
    let (task_cluster, task_store) = (cluster.clone(), store.clone());
    tokio::spawn(async move { task_cluster.follow(&task_store, watch).await });
    let status = cluster.status();
    publish(&mut conn, &prefix, &sealed(5), 5, true).await;
    until("the old key refused", Duration::from_secs(3), || {
        status
            .last_error()
            .is_some_and(|e| e.contains("version 5 refused"))
    })
    .await;
    let bytes = sealed_by(6, PEPPER, &rotated_vault, true, &new);
    publish(&mut conn, &prefix, &bytes, 6, true).await;
    until("version 6", Duration::from_secs(3), || {
        store.load().version == 6
    })
    .await;
    cleanup(&mut conn, &prefix).await;
}

/// At start-up the disk cache is the floor: a version too far above it is refused and the
/// cache serves. Deleting the cache (the documented recovery) accepts what Redis holds.
#[tokio::test]
async fn start_up_bounds_the_version_jump_from_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let config = config_with(
        SHARED_REDIS,
        &prefix,
        dir.path(),
        "2s",
        PUBLIC_KEY,
        "  snapshot_max_version_jump: 10\n",
    );
    let cluster = Cluster::from_config(&config).unwrap();
    write_cache(cluster.cache_path(), &sealed(4)).unwrap();
    let mut conn = connect(SHARED_REDIS).await;
    publish(&mut conn, &prefix, &sealed(15), 15, false).await;
    let (runtime, source) = cluster.first_snapshot().await.unwrap();
    assert_eq!((runtime.version, source), (4, SnapshotSource::Disk));
    assert!(cluster
        .status()
        .last_error()
        .is_some_and(|e| e.contains("snapshot_max_version_jump")));

    publish(&mut conn, &prefix, &sealed(14), 14, false).await;
    let (runtime, source) = cluster.first_snapshot().await.unwrap();
    assert_eq!((runtime.version, source), (14, SnapshotSource::Redis));

    publish(&mut conn, &prefix, &sealed(100), 100, false).await;
    std::fs::remove_file(cluster.cache_path()).unwrap();
    let (runtime, source) = cluster.first_snapshot().await.unwrap();
    assert_eq!((runtime.version, source), (100, SnapshotSource::Redis));
    cleanup(&mut conn, &prefix).await;
}
