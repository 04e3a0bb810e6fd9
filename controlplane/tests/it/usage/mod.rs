//! Usage ingestion against the real Postgres and Redis: each test has its own database and its
//! own stream name; the Redis-outage test runs a private `redis-server`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bb8_redis::redis::{self, aio::MultiplexedConnection, Value};
use chrono::{DateTime, TimeZone, Utc};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use omg_controlplane::db::models::{ApiKey, NewDeadLetter, Tenant};
use omg_controlplane::db::{self, Pool};
use omg_controlplane::metrics::Metrics;
use omg_controlplane::workers::usage_ingest::{
    IngestOptions, IngestState, IngestStatus, UsageIngest,
};
use omg_shared::cluster::{USAGE_FIELD, USAGE_GROUP};
use omg_shared::usage::UsageEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use omg_mock_upstream::redis_server::PrivateRedis;

use crate::harness::TestDb;

const DEADLINE: Duration = Duration::from_secs(20);

fn redis_url() -> String {
    std::env::var("OMG_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Polls `check` until it holds, failing the test with `what` after [`DEADLINE`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// A test's database, stream and consumer.
struct Env {
    db: TestDb,
    pool: Pool,
    metrics: Metrics,
    status: Arc<IngestStatus>,
    redis_url: String,
    stream: String,
    redis: MultiplexedConnection,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Env {
    async fn new() -> Env {
        Env::with_redis(redis_url()).await
    }

    async fn with_redis(redis_url: String) -> Env {
        let db = TestDb::create().await;
        db::migrate(&db.url).await.unwrap();
        let pool = db::connect(&db.url, 4, Duration::from_secs(5))
            .await
            .unwrap();
        let redis = connect_redis(&redis_url).await;
        Env {
            db,
            pool,
            metrics: Metrics::new().unwrap(),
            status: Arc::new(IngestStatus::new()),
            redis_url,
            stream: format!("omg:test:usage:{}", Uuid::now_v7().simple()),
            redis,
            running: None,
        }
    }

    /// Options for fast tests: short blocks, quick maintenance and retries.
    fn options(&self) -> IngestOptions {
        IngestOptions {
            stream: self.stream.clone(),
            group: USAGE_GROUP.to_owned(),
            consumer: format!("test-{}", Uuid::now_v7().simple()),
            batch_size: 50,
            block: Duration::from_millis(200),
            reclaim_idle: Duration::from_millis(500),
            maintenance_interval: Duration::from_millis(100),
            consumer_expiry: Duration::from_secs(3600),
            max_backoff: Duration::from_millis(200),
            db_timeout: Duration::from_secs(5),
        }
    }

    fn start(&mut self, options: IngestOptions) {
        let ingest = UsageIngest::new(
            self.pool.clone(),
            &self.redis_url,
            options,
            self.metrics.usage().clone(),
            self.status.clone(),
        )
        .unwrap();
        let (tx, rx) = watch::channel(false);
        self.running = Some((tx, tokio::spawn(ingest.run(rx))));
    }

    /// Signals shutdown and waits for the consumer to return.
    async fn stop(&mut self) {
        let (tx, handle) = self.running.take().expect("running");
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the consumer stops within 10 s")
            .unwrap();
        assert_eq!(self.status.health().state, IngestState::Stopped);
    }

    async fn conn(&self) -> db::Conn<'_> {
        self.pool.get().await.unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        let row: Count = diesel::sql_query(sql)
            .get_result(&mut *self.conn().await)
            .await
            .unwrap();
        row.n
    }

    async fn rows(&self) -> i64 {
        self.count("SELECT count(*) AS n FROM requests").await
    }

    async fn xadd(&mut self, payload: &[u8]) -> String {
        redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg(USAGE_FIELD)
            .arg(payload)
            .query_async(&mut self.redis)
            .await
            .unwrap()
    }

    async fn xadd_event(&mut self, event: &UsageEvent) -> String {
        let json = serde_json::to_vec(event).unwrap();
        self.xadd(&json).await
    }

    async fn xlen(&mut self) -> u64 {
        redis::cmd("XLEN")
            .arg(&self.stream)
            .query_async(&mut self.redis)
            .await
            .unwrap()
    }

    async fn pending(&mut self) -> u64 {
        let summary: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(USAGE_GROUP)
            .query_async(&mut self.redis)
            .await
            .unwrap();
        match summary {
            Value::Array(items) => match items.as_slice().first() {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap(),
                other => panic!("XPENDING count: {other:?}"),
            },
            other => panic!("XPENDING: {other:?}"),
        }
    }

    /// Waits until the stream is empty and nothing is pending.
    async fn wait_drained(&mut self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if self.xlen().await == 0 && self.pending().await == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for the stream to drain"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn wait_rows(&self, n: i64) {
        wait_for(&format!("{n} request rows"), || async {
            self.rows().await == n
        })
        .await;
    }

    async fn create_group(&mut self) {
        let _: Value = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(USAGE_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.redis)
            .await
            .unwrap();
    }

    /// Reads entries as `consumer` and never acknowledges them.
    async fn read_as(&mut self, consumer: &str) -> usize {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(USAGE_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(100)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut self.redis)
            .await
            .unwrap();
        match reply {
            Value::Array(streams) => match streams.as_slice().first() {
                Some(Value::Array(pair)) => match pair.get(1) {
                    Some(Value::Array(entries)) => entries.len(),
                    other => panic!("entries: {other:?}"),
                },
                other => panic!("stream: {other:?}"),
            },
            other => panic!("XREADGROUP: {other:?}"),
        }
    }

    async fn consumers(&mut self) -> Vec<String> {
        let reply: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(USAGE_GROUP)
            .query_async(&mut self.redis)
            .await
            .unwrap();
        let Value::Array(consumers) = reply else {
            panic!("XINFO CONSUMERS: {reply:?}")
        };
        consumers
            .iter()
            .map(|c| match c {
                Value::Array(fields) => match (&fields[0], &fields[1]) {
                    (Value::BulkString(k), Value::BulkString(v)) if k == b"name" => {
                        String::from_utf8(v.clone()).unwrap()
                    }
                    other => panic!("consumer fields: {other:?}"),
                },
                other => panic!("consumer: {other:?}"),
            })
            .collect()
    }

    async fn tenant_and_key(&self) -> (Tenant, ApiKey) {
        let now = Utc::now();
        let tenant = Tenant {
            id: Uuid::now_v7(),
            name: "usage-test".to_owned(),
            kind: "organization".to_owned(),
            status: "active".to_owned(),
            allowed_models: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let key = ApiKey {
            id: Uuid::now_v7(),
            tenant_id: tenant.id,
            prefix: "usage".to_owned(),
            secret_hash: vec![7; 32],
            name: "k".to_owned(),
            status: "active".to_owned(),
            scopes: Vec::new(),
            expires_at: None,
            allowed_models: None,
            budget_micro_usd: None,
            warning_threshold: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            parallel_requests: None,
            created_by: None,
            last_used_at: None,
            created_at: now,
            updated_at: now,
            revoked_at: None,
            user_id: None,
        };
        let mut conn = self.conn().await;
        db::tenants::insert(&mut conn, &tenant).await.unwrap();
        db::keys::insert(&mut conn, &key).await.unwrap();
        (tenant, key)
    }

    async fn last_used(&self, key: &ApiKey) -> Option<DateTime<Utc>> {
        db::keys::get(&mut *self.conn().await, key.tenant_id, key.id)
            .await
            .unwrap()
            .last_used_at
    }

    async fn cleanup(mut self) {
        if self.running.is_some() {
            self.stop().await;
        }
        let _: Value = redis::cmd("DEL")
            .arg(&self.stream)
            .query_async(&mut self.redis)
            .await
            .unwrap();
    }
}

async fn connect_redis(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis (is it running? OMG_TEST_REDIS)")
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A complete event; `key` and `started` vary per test.
fn event(key: Option<Uuid>, tenant: Option<Uuid>, started: DateTime<Utc>) -> UsageEvent {
    UsageEvent {
        schema_version: 1,
        event_id: Some(Uuid::now_v7()),
        request_id: format!("req-{}", Uuid::now_v7().simple()),
        started_at: rfc3339(started),
        tenant_id: tenant,
        key_id: key,
        user_id: Some(Uuid::now_v7()),
        alias: Some("gpt-4o".to_owned()),
        provider: Some("openai".to_owned()),
        deployment: Some("gpt-4o-east".to_owned()),
        endpoint: "chat.completions".to_owned(),
        status: 200,
        error_code: None,
        prompt_tokens: 1200,
        completion_tokens: 345,
        total_tokens: 1545,
        cached_tokens: 1024,
        cache_write_tokens: 512,
        images: 0,
        cost_micro_usd: 98_765,
        latency_ms: 1834,
        ttft_ms: Some(211),
        stream: true,
        usage_estimated: true,
        idempotent_replay: false,
        batch_id: None,
    }
}

const T0: i64 = 1_795_000_000_000; // 2026-11-18

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_rows_with_every_field_and_touch_their_key() {
    let mut env = Env::new().await;
    let (tenant, key) = env.tenant_and_key().await;
    // Written before the consumer group exists: still ingested (group created from 0).
    let mut full = event(Some(key.id), Some(tenant.id), at(T0 + 5_000));
    full.batch_id = Some("batch_0123456789abcdef".to_owned());
    env.xadd_event(&full).await;
    env.xadd_event(&event(Some(key.id), Some(tenant.id), at(T0)))
        .await;
    // A failed request without key or alias, and a legacy record without event_id.
    let mut bare = event(None, None, at(T0 + 1_000));
    bare.event_id = None;
    bare.user_id = None;
    bare.alias = None;
    bare.provider = None;
    bare.deployment = None;
    bare.ttft_ms = None;
    bare.status = 499;
    bare.error_code = Some("client_closed_request".to_owned());
    bare.stream = false;
    bare.usage_estimated = false;
    env.xadd_event(&bare).await;

    env.start(env.options());
    env.wait_rows(3).await;
    env.wait_drained().await;

    let row = db::usage::find_request(&mut *env.conn().await, full.event_id.unwrap())
        .await
        .unwrap()
        .expect("stored under its event_id");
    assert_eq!(row.request_id, full.request_id);
    assert_eq!(row.started_at, at(T0 + 5_000));
    assert_eq!(row.tenant_id, Some(tenant.id));
    assert_eq!(row.key_id, Some(key.id));
    assert_eq!(row.user_id, full.user_id);
    assert_eq!(row.alias.as_deref(), Some("gpt-4o"));
    assert_eq!(row.provider.as_deref(), Some("openai"));
    assert_eq!(row.deployment.as_deref(), Some("gpt-4o-east"));
    assert_eq!(row.endpoint, "chat.completions");
    assert_eq!(row.status, 200);
    assert_eq!(row.error_code, None);
    assert_eq!(
        (
            row.prompt_tokens,
            row.completion_tokens,
            row.total_tokens,
            row.cached_tokens,
            row.cache_write_tokens
        ),
        (1200, 345, 1545, 1024, 512)
    );
    assert_eq!(row.cost_micro_usd, 98_765);
    assert_eq!((row.latency_ms, row.ttft_ms), (1834, Some(211)));
    assert!(row.stream && row.usage_estimated);
    assert_eq!(row.schema_version, 1);
    assert_eq!(row.batch_id.as_deref(), Some("batch_0123456789abcdef"));
    assert!((Utc::now() - row.ingested_at).num_seconds().abs() < 60);

    let legacy = db::usage::find_request(&mut *env.conn().await, bare.idempotency_key())
        .await
        .unwrap()
        .expect("a legacy record is stored under the UUIDv5 of its request_id");
    assert_eq!(legacy.status, 499);
    assert_eq!(legacy.error_code.as_deref(), Some("client_closed_request"));
    assert_eq!(
        (legacy.key_id, legacy.alias, legacy.ttft_ms),
        (None, None, None)
    );
    assert!(!legacy.stream && !legacy.usage_estimated);
    assert_eq!(legacy.batch_id, None);

    // last_used_at is the latest started_at of the key's requests…
    assert_eq!(env.last_used(&key).await, Some(at(T0 + 5_000)));
    // …and a late, older record never lowers it.
    env.xadd_event(&event(Some(key.id), Some(tenant.id), at(T0 - 60_000)))
        .await;
    env.wait_rows(4).await;
    assert_eq!(env.last_used(&key).await, Some(at(T0 + 5_000)));
    env.xadd_event(&event(Some(key.id), Some(tenant.id), at(T0 + 9_000)))
        .await;
    env.wait_rows(5).await;
    assert_eq!(env.last_used(&key).await, Some(at(T0 + 9_000)));

    let usage = env.metrics.usage();
    assert_eq!(usage.ingested.get(), 5);
    assert_eq!(usage.duplicates.get(), 0);
    let health = env.status.health();
    assert_eq!(health.state, IngestState::Ok);
    assert!(health.connected);
    assert_eq!(health.ingested_total, 5);
    assert!(health.last_batch_at.is_some());
    let text = env.metrics.render().unwrap();
    for name in [
        "omg_cp_usage_ingested_total 5",
        "omg_cp_usage_batch_duration_seconds_count",
        "omg_cp_usage_pending",
        "omg_cp_usage_stream_length",
    ] {
        assert!(text.contains(name), "{name} in\n{text}");
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_per_event_id_whatever_is_delivered_twice() {
    let mut env = Env::new().await;
    let twice = event(None, None, at(T0));
    // The same event sent twice (a data plane re-sending its spool)…
    env.xadd_event(&twice).await;
    env.xadd_event(&twice).await;

    // …and an entry stored but not acknowledged: the consumer died between the commit and
    // XACK. It is pending for the consumer's name and its row already exists.
    let committed = event(None, None, at(T0 + 1));
    env.create_group().await;
    let options = env.options();
    env.xadd_event(&committed).await;
    assert_eq!(env.read_as(&options.consumer).await, 3);
    let record = {
        // What the dead process had committed.
        let json = serde_json::to_vec(&committed).unwrap();
        let stored = db::usage::ingest_batch(
            &mut *env.conn().await,
            vec![to_record(&json)],
            &[],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(stored.inserted, 1);
        committed.event_id.unwrap()
    };

    // Same consumer name (the process came back): reads its own pending entries first.
    env.start(options);
    env.wait_drained().await;
    assert_eq!(env.rows().await, 2);
    assert!(db::usage::find_request(&mut *env.conn().await, record)
        .await
        .unwrap()
        .is_some());
    let usage = env.metrics.usage();
    assert_eq!(usage.ingested.get(), 1);
    assert_eq!(usage.duplicates.get(), 2);
    assert_eq!(env.status.health().duplicates_total, 2);
    // The rollups count each stored row once, however often it was delivered.
    let rollups = "SELECT COALESCE(sum(requests), 0)::bigint AS n FROM usage_rollups";
    assert_eq!(env.count(rollups).await, 2);
    let all = "SELECT COALESCE(sum(requests), 0)::bigint AS n FROM usage_rollups_coarse \
               WHERE grain = 'all'";
    assert_eq!(env.count(all).await, 2);
    env.cleanup().await;
}

/// The row ingestion would make of a serialized event (via the public batch API).
fn to_record(json: &[u8]) -> omg_controlplane::db::models::NewRequestRecord {
    let event: UsageEvent = serde_json::from_slice(json).unwrap();
    omg_controlplane::db::models::NewRequestRecord {
        event_id: event.idempotency_key(),
        request_id: event.request_id,
        started_at: DateTime::parse_from_rfc3339(&event.started_at)
            .unwrap()
            .with_timezone(&Utc),
        tenant_id: event.tenant_id,
        key_id: event.key_id,
        user_id: event.user_id,
        alias: event.alias,
        provider: event.provider,
        deployment: event.deployment,
        endpoint: event.endpoint,
        status: i32::from(event.status),
        error_code: event.error_code,
        prompt_tokens: event.prompt_tokens as i64,
        completion_tokens: event.completion_tokens as i64,
        total_tokens: event.total_tokens as i64,
        cached_tokens: event.cached_tokens as i64,
        cache_write_tokens: event.cache_write_tokens as i64,
        cost_micro_usd: event.cost_micro_usd,
        latency_ms: event.latency_ms as i64,
        ttft_ms: event.ttft_ms.map(|v| v as i64),
        stream: event.stream,
        usage_estimated: event.usage_estimated,
        schema_version: event.schema_version as i32,
        batch_id: event.batch_id,
        images: 0,
    }
}

/// The replay statement of docs/operations.md ("Dead letters"), for dead letter `$1`.
const REPLAY_SQL: &str = "\
INSERT INTO requests (event_id, request_id, started_at, tenant_id, key_id, user_id, alias,
    provider, deployment, endpoint, status, error_code, prompt_tokens, completion_tokens,
    total_tokens, cached_tokens, cache_write_tokens, images, cost_micro_usd, latency_ms, ttft_ms,
    stream, usage_estimated, schema_version)
SELECT e.event_id, e.request_id, e.started_at, e.tenant_id, e.key_id, e.user_id, e.alias,
    e.provider, e.deployment, e.endpoint, e.status, e.error_code, e.prompt_tokens,
    e.completion_tokens, e.total_tokens, COALESCE(e.cached_tokens, 0),
    COALESCE(e.cache_write_tokens, 0), COALESCE(e.images, 0), e.cost_micro_usd, e.latency_ms,
    e.ttft_ms, e.stream, e.usage_estimated, e.schema_version
FROM usage_dead_letters d,
    jsonb_to_record(convert_from(d.payload, 'UTF8')::jsonb) AS e(event_id uuid,
        request_id text, started_at timestamptz, tenant_id uuid, key_id uuid, user_id uuid,
        alias text, provider text, deployment text, endpoint text, status int,
        error_code text, prompt_tokens bigint, completion_tokens bigint, total_tokens bigint,
        cached_tokens bigint, cache_write_tokens bigint, images bigint, cost_micro_usd bigint,
        latency_ms bigint, ttft_ms bigint, stream boolean, usage_estimated boolean,
        schema_version int)
WHERE d.id = $1 AND e.event_id IS NOT NULL
ON CONFLICT (event_id) DO NOTHING";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_are_parked_once_and_the_stream_drains() {
    let mut env = Env::new().await;
    let garbage = env.xadd(b"{this is not json").await;
    let missing: String = redis::cmd("XADD")
        .arg(&env.stream)
        .arg("*")
        .arg("other")
        .arg("value")
        .query_async(&mut env.redis)
        .await
        .unwrap();
    let mut too_old = event(None, None, at(T0));
    too_old.started_at = "1970-01-01T00:00:00.000Z".to_owned();
    let invalid = env.xadd_event(&too_old).await;
    env.xadd_event(&event(None, None, at(T0))).await;

    env.start(env.options());
    env.wait_rows(1).await;
    env.wait_drained().await;
    let letters = db::usage::dead_letters(&mut *env.conn().await, &env.stream)
        .await
        .unwrap();
    let ids: Vec<&str> = letters.iter().map(|l| l.entry_id.as_str()).collect();
    assert_eq!(ids, [&garbage, &missing, &invalid]);
    assert_eq!(letters[0].payload, b"{this is not json");
    assert!(
        letters[0].error.starts_with("invalid JSON"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[1].payload, br#"{"other":"value"}"#);
    assert!(letters[1].error.contains("no `event` field"));
    assert!(
        letters[2].error.contains("started_at"),
        "{}",
        letters[2].error
    );
    assert_eq!(env.metrics.usage().dead_lettered.get(), 3);
    assert_eq!(env.status.health().dead_lettered_total, 3);

    // The same entry parked again (delivered twice) stays one dead letter.
    let again = NewDeadLetter {
        stream: env.stream.clone(),
        entry_id: garbage.clone(),
        payload: b"{this is not json".to_vec(),
        error: "invalid JSON".to_owned(),
    };
    let outcome = db::usage::ingest_batch(
        &mut *env.conn().await,
        Vec::new(),
        &[again],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(outcome.dead_lettered, 0);
    assert_eq!(
        env.count("SELECT count(*) AS n FROM usage_dead_letters")
            .await,
        3
    );

    // The documented repair: fix the payload, replay it with SQL.
    let mut conn = env.conn().await;
    diesel::sql_query(
        "UPDATE usage_dead_letters SET payload = convert_to(jsonb_set(convert_from(payload, \
         'UTF8')::jsonb, '{started_at}', '\"2026-11-23T10:00:00Z\"')::text, 'UTF8') WHERE id = $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(letters[2].id)
    .execute(&mut conn)
    .await
    .unwrap();
    for _ in 0..2 {
        diesel::sql_query(REPLAY_SQL)
            .bind::<diesel::sql_types::BigInt, _>(letters[2].id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    drop(conn);
    let replayed = db::usage::find_request(&mut *env.conn().await, too_old.event_id.unwrap())
        .await
        .unwrap()
        .expect("replayed");
    assert_eq!(
        replayed.started_at.to_rfc3339(),
        "2026-11-23T10:00:00+00:00"
    );
    assert_eq!(replayed.cost_micro_usd, too_old.cost_micro_usd);
    assert_eq!(env.rows().await, 2);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_a_dead_consumer_are_claimed_and_it_is_removed() {
    let mut env = Env::new().await;
    env.create_group().await;
    for i in 0..3 {
        env.xadd_event(&event(None, None, at(T0 + i))).await;
    }
    // Another control plane read them and died before acknowledging.
    assert_eq!(env.read_as("dead-controlplane").await, 3);
    assert_eq!(env.pending().await, 3);

    let mut options = env.options();
    options.reclaim_idle = Duration::from_millis(300);
    options.consumer_expiry = Duration::from_millis(800);
    let me = options.consumer.clone();
    env.start(options);
    env.wait_rows(3).await;
    env.wait_drained().await;
    assert_eq!(env.metrics.usage().reclaimed.get(), 3);
    // Idle with nothing pending: removed from the group; the live consumer stays.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let consumers = env.consumers().await;
        if consumers == [me.clone()] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead consumer still listed: {consumers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.cleanup().await;
}

mod failures;
