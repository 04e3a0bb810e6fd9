//! Spool and shipper tests. They use the machine's Redis with a stream of their own, and a
//! private `redis-server` on an ephemeral port where Redis has to go down.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omg_shared::cluster::USAGE_FIELD;
use omg_shared::usage::{UsageEvent, USAGE_SCHEMA_VERSION};
use uuid::Uuid;

use super::shipper::{Shipper, ShipperHandle, ShipperOptions};
use super::spool::{list_segments, segment_path, Spool, SpoolError, SpoolOptions, SpoolReader};
use super::UsageSink;
use crate::metrics::Metrics;
use omg_mock_upstream::redis_server::PrivateRedis;

const SHARED_REDIS: &str = "redis://127.0.0.1:6379/";
const DEADLINE: Duration = Duration::from_secs(30);
const BIG: u64 = 64 * 1024 * 1024;

fn event(n: u64) -> UsageEvent {
    UsageEvent {
        schema_version: USAGE_SCHEMA_VERSION,
        event_id: Some(Uuid::now_v7()),
        request_id: format!("req-{n}"),
        started_at: "2026-11-22T10:00:00.123Z".to_owned(),
        tenant_id: Some(Uuid::now_v7()),
        key_id: Some(Uuid::now_v7()),
        user_id: Some(Uuid::now_v7()),
        alias: Some("gpt-test".to_owned()),
        provider: Some("mock".to_owned()),
        deployment: Some("mock-1".to_owned()),
        endpoint: "chat.completions".to_owned(),
        status: 200,
        error_code: Some("none".to_owned()),
        prompt_tokens: n,
        completion_tokens: 2 * n,
        total_tokens: 3 * n,
        cached_tokens: 1,
        cache_write_tokens: 0,
        images: 0,
        cost_micro_usd: 17 * n as i64,
        latency_ms: 12,
        ttft_ms: Some(5),
        stream: n % 2 == 0,
        usage_estimated: n % 3 == 0,
        idempotent_replay: false,
        batch_id: None,
    }
}

fn options() -> ShipperOptions {
    ShipperOptions {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_millis(200),
        sync_interval: Duration::from_millis(20),
        drain_timeout: Duration::from_secs(5),
        ..ShipperOptions::default()
    }
}

/// A stream of the shared Redis, deleted at the end of the test.
struct TestStream {
    name: String,
    url: String,
}

impl TestStream {
    fn new(url: &str) -> Self {
        Self {
            name: format!("omg:test:usage:{}", Uuid::now_v7()),
            url: url.to_owned(),
        }
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).unwrap()
    }

    /// The events in the stream, in order; every entry must hold exactly one field.
    async fn events(&self) -> Vec<UsageEvent> {
        let Ok(mut conn) = self.client().get_multiplexed_async_connection().await else {
            return Vec::new();
        };
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(&self.name)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        entries
            .into_iter()
            .map(|(_, fields)| {
                assert_eq!(fields.len(), 1, "one field per entry: {fields:?}");
                serde_json::from_str(&fields[USAGE_FIELD]).unwrap()
            })
            .collect()
    }

    async fn wait_for_len(&self, len: usize) -> Vec<UsageEvent> {
        let events = eventually(&format!("{len} entries in {}", self.name), || async {
            let got = self.events().await;
            (got.len() >= len).then_some(got)
        })
        .await;
        assert_eq!(events.len(), len, "no more entries than expected");
        events
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        if let Ok(mut conn) = self.client().get_connection() {
            let _ = redis::cmd("DEL").arg(&self.name).exec(&mut conn);
        }
    }
}

/// Polls `check` until it returns `Some`, for at most [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status_until(
    handle: &ShipperHandle,
    what: &str,
    ok: impl Fn(&super::shipper::ShipperStatus) -> bool,
) {
    eventually(what, || {
        let status = handle.status();
        let done = ok(&status);
        async move { done.then_some(()) }
    })
    .await;
}

fn spawn_shipper(
    reader: SpoolReader,
    url: &str,
    stream: &str,
) -> (ShipperHandle, tokio::task::JoinHandle<()>) {
    let shipper = Shipper::new(reader, redis::Client::open(url).unwrap(), stream, options());
    let handle = shipper.handle();
    (handle, tokio::spawn(shipper.run(std::future::pending())))
}

async fn stop(handle: &ShipperHandle, task: tokio::task::JoinHandle<()>) {
    handle.shutdown();
    task.await.unwrap();
    assert!(handle.wait_stopped(Duration::ZERO));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Collects what `tracing` logs while `f` runs on this thread.
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

fn append_raw(dir: &Path, seq: u64, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(segment_path(dir, seq))
        .unwrap();
    file.write_all(bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_the_stream_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let stream = TestStream::new(SHARED_REDIS);
    let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
    let (handle, task) = spawn_shipper(reader, SHARED_REDIS, &stream.name);
    let sent: Vec<UsageEvent> = (1..=3).map(event).collect();
    for event in &sent {
        spool.record(event);
    }
    assert_eq!(stream.wait_for_len(3).await, sent);
    status_until(&handle, "everything shipped", |s| {
        s.pending_bytes == 0 && s.shipped_total == 3 && s.connected
    })
    .await;
    let status = handle.status();
    assert_eq!(status.spooled_total, 3);
    assert_eq!(status.stream, stream.name);
    assert!(status.running);
    assert!(Metrics::global().usage_shipped.get() >= 3);
    assert!(Metrics::global().usage_spooled.get() >= 3);
    stop(&handle, task).await;
    assert!(!handle.status().running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_records_are_spooled_then_shipped_when_it_is_back() {
    let mut redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let stream = TestStream::new(&redis.url());
    let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
    let (handle, task) = spawn_shipper(reader, &redis.url(), &stream.name);

    let before: Vec<UsageEvent> = (0..5).map(event).collect();
    before.iter().for_each(|e| spool.record(e));
    assert_eq!(stream.wait_for_len(5).await, before);

    redis.stop();
    let during: Vec<UsageEvent> = (5..25).map(event).collect();
    during.iter().for_each(|e| spool.record(e));
    status_until(&handle, "the outage to be noticed", |s| {
        !s.connected && s.ship_errors_total > 0 && s.outage_seconds.is_some()
    })
    .await;
    let status = handle.status();
    assert!(status.pending_bytes > 0, "{status:?}");
    assert!(status.last_error.is_some());
    assert_eq!(status.spooled_total, 25);

    // A restarted Redis without persistence has lost the first five: the stream then holds
    // exactly what was spooled during the outage.
    redis.restart();
    assert_eq!(stream.wait_for_len(20).await, during);
    status_until(&handle, "recovery", |s| {
        s.connected && s.pending_bytes == 0 && s.outage_seconds.is_none() && s.last_error.is_none()
    })
    .await;
    stop(&handle, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_what_the_previous_run_did_not_ship() {
    let dir = tempfile::tempdir().unwrap();
    let stream = TestStream::new(SHARED_REDIS);
    let sent: Vec<UsageEvent> = (0..10).map(event).collect();
    let old_seq = {
        let (spool, _reader) = Spool::open(dir.path(), BIG).unwrap();
        sent.iter().for_each(|e| spool.record(e));
        assert!(spool.pending_bytes() > 0);
        spool.current_seq()
    };

    let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
    assert!(spool.current_seq() > old_seq);
    let pending = spool.pending_bytes();
    assert!(pending > 0);
    let (handle, task) = spawn_shipper(reader, SHARED_REDIS, &stream.name);
    assert_eq!(stream.wait_for_len(10).await, sent);
    let more = event(10);
    spool.record(&more);
    let got = stream.wait_for_len(11).await;
    assert_eq!(got.last(), Some(&more));
    status_until(&handle, "the old segment to be deleted", |s| {
        s.pending_bytes == 0
    })
    .await;
    eventually("the old segment to be deleted", || {
        let gone = list_segments(dir.path())
            .unwrap()
            .iter()
            .all(|s| s.seq > old_seq);
        async move { gone.then_some(()) }
    })
    .await;
    stop(&handle, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_xadd_and_cursor_save_resends_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let stream = TestStream::new(SHARED_REDIS);
    let sent: Vec<UsageEvent> = (0..5).map(event).collect();
    {
        let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
        sent.iter().for_each(|e| spool.record(e));
        let mut shipper = Shipper::new(
            reader,
            redis::Client::open(SHARED_REDIS).unwrap(),
            &stream.name,
            options(),
        );
        shipper.crash_after_send = true;
        let handle = shipper.handle();
        shipper.run(std::future::pending()).await;
        assert!(handle.wait_stopped(Duration::ZERO));
        assert_eq!(
            stream.events().await,
            sent,
            "sent, but the cursor was not saved"
        );
    }

    // The next start sends them again: duplicates, which ingestion drops by event_id.
    let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
    let (handle, task) = spawn_shipper(reader, SHARED_REDIS, &stream.name);
    let got = stream.wait_for_len(10).await;
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for event in &got {
        *counts.entry(event.event_id.unwrap()).or_default() += 1;
    }
    assert_eq!(counts.len(), 5);
    assert!(counts.values().all(|&n| n == 2));
    status_until(&handle, "caught up", |s| s.pending_bytes == 0).await;
    stop(&handle, task).await;
    // The handle keeps the spool (and its lock) alive too.
    drop((spool, handle));

    // Now the cursor is saved: a third start sends only what is new.
    let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
    let (handle, task) = spawn_shipper(reader, SHARED_REDIS, &stream.name);
    let new = event(99);
    spool.record(&new);
    let got = stream.wait_for_len(11).await;
    assert_eq!(got.last(), Some(&new));
    stop(&handle, task).await;
}

#[test]
fn a_partial_line_is_not_read_until_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), BIG).unwrap();
    let first = event(1);
    spool.record(&first);
    let second = event(2);
    let line = serde_json::to_vec(&second).unwrap();
    let (head, tail) = line.split_at(line.len() / 2);
    append_raw(dir.path(), spool.current_seq(), head);

    let batch = reader.next_batch(500, 1 << 20).unwrap().unwrap();
    let records: Vec<UsageEvent> = batch
        .records()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    assert_eq!(records, vec![first]);
    reader
        .commit_range(batch.seq, batch.start, batch.end)
        .unwrap();
    assert!(reader.next_batch(500, 1 << 20).unwrap().is_none());

    append_raw(dir.path(), spool.current_seq(), tail);
    assert!(
        reader.next_batch(500, 1 << 20).unwrap().is_none(),
        "no newline yet"
    );
    append_raw(dir.path(), spool.current_seq(), b"\n");
    let batch = reader.next_batch(500, 1 << 20).unwrap().unwrap();
    let records: Vec<UsageEvent> = batch
        .records()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    assert_eq!(records, vec![second]);
}

#[test]
fn a_record_longer_than_a_read_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), BIG).unwrap();
    let mut long = event(1);
    long.alias = Some("a".repeat(10_000));
    spool.record(&long);
    spool.record(&event(2));
    let batch = reader.next_batch(500, 1000).unwrap().unwrap();
    let records: Vec<UsageEvent> = batch
        .records()
        .map(|r| serde_json::from_slice(r).unwrap())
        .collect();
    assert_eq!(records, vec![long]);
}

#[test]
fn a_torn_record_at_the_end_of_an_old_segment_is_logged_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let sent: Vec<UsageEvent> = (0..2).map(event).collect();
    let old_seq = {
        let (spool, _reader) = Spool::open(dir.path(), BIG).unwrap();
        sent.iter().for_each(|e| spool.record(e));
        append_raw(
            dir.path(),
            spool.current_seq(),
            b"{\"schema_version\":1,\"torn-fragment",
        );
        spool.current_seq()
    };
    let (spool, mut reader) = Spool::open(dir.path(), BIG).unwrap();
    let batch = reader.next_batch(500, 1 << 20).unwrap().unwrap();
    assert_eq!(batch.seq, old_seq);
    assert_eq!(batch.len(), 2);
    reader
        .commit_range(batch.seq, batch.start, batch.end)
        .unwrap();
    let (next, logs) = capture_logs(|| reader.next_batch(500, 1 << 20).unwrap());
    assert!(next.is_none());
    assert!(logs.contains("torn-fragment"), "{logs}");
    assert!(logs.contains("incomplete record"), "{logs}");
    assert_eq!(spool.write_errors_total(), 1);
    assert_eq!(spool.pending_bytes(), 0);
    assert!(!segment_path(dir.path(), old_seq).exists());
    assert_eq!(reader.cursor().segment, spool.current_seq());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_logs_and_counts_the_record_then_frees_space_once_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let stream = TestStream::new(SHARED_REDIS);
    let options = SpoolOptions {
        max_bytes: 4096,
        segment_bytes: 1024,
    };
    let (spool, reader) = Spool::open_with(dir.path(), options).unwrap();
    let full_before = Metrics::global().usage_spool_full.get();
    let mut refused = None;
    for n in 0..100 {
        let record = event(n);
        let ((), logs) = capture_logs(|| spool.record(&record));
        if spool.full_total() > 0 {
            refused = Some((record, logs));
            break;
        }
    }
    let (refused, logs) = refused.expect("the spool fills up");
    assert!(logs.contains("usage spool is full"), "{logs}");
    let id = refused.event_id.unwrap().to_string();
    assert!(logs.contains(&id), "the record is in the log: {logs}");
    assert!(spool.disk_bytes() <= 4096);
    assert!(Metrics::global().usage_spool_full.get() > full_before);
    let accepted = spool.spooled_total() as usize;

    let (handle, task) = spawn_shipper(reader, SHARED_REDIS, &stream.name);
    stream.wait_for_len(accepted).await;
    status_until(&handle, "shipped segments to be deleted", |s| {
        s.pending_bytes == 0 && s.spool_bytes < 1024
    })
    .await;
    let later = event(1000);
    spool.record(&later);
    assert_eq!(spool.full_total(), 1);
    let got = stream.wait_for_len(accepted + 1).await;
    assert_eq!(got.last(), Some(&later));
    stop(&handle, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_lines_whole() {
    const THREADS: u64 = 8;
    const EACH: u64 = 250;
    let dir = tempfile::tempdir().unwrap();
    let stream = TestStream::new(SHARED_REDIS);
    let options = SpoolOptions {
        max_bytes: BIG,
        segment_bytes: 32 * 1024,
    };
    let (spool, reader) = Spool::open_with(dir.path(), options).unwrap();
    let (handle, task) = spawn_shipper(reader, SHARED_REDIS, &stream.name);
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|n| {
                        let event = event(t * EACH + n);
                        spool.record(&event);
                        event.event_id.unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let sent: HashSet<Uuid> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let total = (THREADS * EACH) as usize;
    assert_eq!(spool.spooled_total(), total as u64);
    let got = stream.wait_for_len(total).await;
    let got: HashSet<Uuid> = got.iter().map(|e| e.event_id.unwrap()).collect();
    assert_eq!(got, sent);
    status_until(&handle, "caught up", |s| s.pending_bytes == 0).await;
    stop(&handle, task).await;
    assert_eq!(handle.status().write_errors_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ships_what_is_pending_then_returns() {
    let dir = tempfile::tempdir().unwrap();
    let stream = TestStream::new(SHARED_REDIS);
    let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
    let shipper = Shipper::new(
        reader,
        redis::Client::open(SHARED_REDIS).unwrap(),
        &stream.name,
        options(),
    );
    let handle = shipper.handle();
    let sent: Vec<UsageEvent> = (0..50).map(event).collect();
    sent.iter().for_each(|e| spool.record(e));
    // Stopped before it even started: it still drains.
    handle.shutdown();
    shipper.run(std::future::pending()).await;
    assert_eq!(stream.events().await, sent);
    assert_eq!(spool.pending_bytes(), 0);
    assert!(handle.wait_stopped(Duration::ZERO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_without_redis_leaves_the_records_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("redis://127.0.0.1:{}/", free_port());
    let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
    let shipper = Shipper::new(
        reader,
        redis::Client::open(nowhere.as_str()).unwrap(),
        "omg:test:usage:nowhere",
        ShipperOptions {
            drain_timeout: Duration::from_millis(300),
            ..options()
        },
    );
    let handle = shipper.handle();
    (0..3).map(event).for_each(|e| spool.record(&e));
    let started = std::time::Instant::now();
    shipper
        .run(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
        })
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let status = handle.status();
    assert!(!status.running && !status.connected);
    assert!(status.ship_errors_total > 0);
    assert_eq!(status.pending_bytes, spool.pending_bytes());
    assert!(spool.pending_bytes() > 0);
    drop((spool, handle));
    let (spool, _reader) = Spool::open(dir.path(), BIG).unwrap();
    assert!(spool.pending_bytes() > 0, "still there for the next start");
}

#[test]
fn a_second_process_cannot_use_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, reader) = Spool::open(dir.path(), BIG).unwrap();
    let error = Spool::open(dir.path(), BIG).unwrap_err();
    assert!(matches!(error, SpoolError::Locked { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("cluster.spool_dir"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // The reader keeps the spool (and its lock) alive.
    drop(spool);
    assert!(Spool::open(dir.path(), BIG).is_err());
    drop(reader);
    assert!(Spool::open(dir.path(), BIG).is_ok());
}

#[test]
fn an_unusable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let message = Spool::open(&file, BIG).unwrap_err().to_string();
    assert!(message.contains("cluster.spool_dir"), "{message}");
}

#[test]
fn segment_sizes_follow_the_bound() {
    assert_eq!(
        SpoolOptions::from_max_mb(1024).segment_bytes,
        16 * 1024 * 1024
    );
    assert_eq!(SpoolOptions::from_max_mb(1).segment_bytes, 128 * 1024);
    assert_eq!(SpoolOptions::new(100_000).segment_bytes, 64 * 1024);
}

#[test]
fn a_corrupt_cursor_ships_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _reader) = Spool::open(dir.path(), BIG).unwrap();
        (0..3).map(event).for_each(|e| spool.record(&e));
    }
    std::fs::write(dir.path().join("cursor"), b"{not json").unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), BIG).unwrap();
    assert!(spool.pending_bytes() > 0);
    let batch = reader.next_batch(500, 1 << 20).unwrap().unwrap();
    assert_eq!(batch.len(), 3);
}
