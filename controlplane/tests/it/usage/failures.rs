//! Usage ingestion under failures: a database outage, a Redis outage, RESP3, large batches.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failure_acknowledges_nothing_and_rows_arrive_after_recovery() {
    let mut env = Env::new().await;
    env.start(env.options());
    env.xadd_event(&event(None, None, at(T0))).await;
    env.wait_rows(1).await;

    // The table disappears under the consumer.
    let mut admin = AsyncPgConnection::establish(&env.db.url).await.unwrap();
    diesel::sql_query("ALTER TABLE requests RENAME TO requests_away")
        .execute(&mut admin)
        .await
        .unwrap();
    env.xadd_event(&event(None, None, at(T0 + 1))).await;
    env.xadd_event(&event(None, None, at(T0 + 2))).await;
    let db_errors = env.metrics.usage().errors.with_label_values(&["database"]);
    let errors = || db_errors.get();
    wait_for("three failed attempts", || async { errors() >= 3 }).await;
    let health = env.status.health();
    assert_eq!(health.state, IngestState::DatabaseUnavailable);
    assert!(health.connected);
    assert!(health.last_error.unwrap().contains("requests"));
    // Nothing was acknowledged or deleted; what was read stays pending (and nothing more is
    // read while it is: the backlog waits in the stream).
    assert_eq!(env.xlen().await, 2);
    let pending = env.pending().await;
    assert!((1..=2).contains(&pending), "{pending} pending");

    diesel::sql_query("ALTER TABLE requests_away RENAME TO requests")
        .execute(&mut admin)
        .await
        .unwrap();
    env.wait_rows(3).await;
    env.wait_drained().await;
    wait_for("state ok", || async {
        env.status.health().state == IngestState::Ok
    })
    .await;

    // A table locked past the statement timeout: same story.
    env.stop().await;
    let mut options = env.options();
    options.db_timeout = Duration::from_millis(300);
    env.start(options);
    diesel::sql_query("BEGIN")
        .execute(&mut admin)
        .await
        .unwrap();
    diesel::sql_query("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE")
        .execute(&mut admin)
        .await
        .unwrap();
    let before = errors();
    env.xadd_event(&event(None, None, at(T0 + 3))).await;
    wait_for("a statement timeout", || async { errors() > before }).await;
    assert!(env
        .status
        .health()
        .last_error
        .unwrap()
        .contains("statement timeout"));
    assert_eq!(env.xlen().await, 1);
    diesel::sql_query("COMMIT")
        .execute(&mut admin)
        .await
        .unwrap();
    env.wait_rows(4).await;
    env.wait_drained().await;
    assert_eq!(env.metrics.usage().ingested.get(), 4);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_survived() {
    let mut server = PrivateRedis::start();
    let mut env = Env::with_redis(server.url()).await;
    env.start(env.options());
    env.xadd_event(&event(None, None, at(T0))).await;
    env.wait_rows(1).await;

    server.stop();
    wait_for("the outage to be noticed", || async {
        env.status.health().state == IngestState::RedisUnavailable
    })
    .await;
    assert!(!env.status.health().connected);
    let redis_errors = || {
        env.metrics
            .usage()
            .errors
            .with_label_values(&["redis"])
            .get()
    };
    wait_for("a few reconnection attempts", || async {
        redis_errors() >= 3
    })
    .await;

    // Back empty (no persistence): the consumer reconnects and recreates its group.
    server.restart();
    env.redis = connect_redis(&server.url()).await;
    env.xadd_event(&event(None, None, at(T0 + 1))).await;
    env.wait_rows(2).await;
    env.wait_drained().await;
    wait_for("state ok", || async {
        env.status.health().state == IngestState::Ok
    })
    .await;
    env.stop().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_over_resp3_too() {
    // The consumer speaks RESP3 (maps in replies); the test's own connection RESP2.
    let mut env = Env::with_redis(format!("{}?protocol=resp3", redis_url())).await;
    env.redis = connect_redis(&redis_url()).await;
    env.create_group().await;
    env.xadd_event(&event(None, None, at(T0))).await;
    env.xadd(b"garbage").await;
    assert_eq!(env.read_as("dead-controlplane").await, 2);
    let mut options = env.options();
    options.reclaim_idle = Duration::from_millis(200);
    options.consumer_expiry = Duration::from_millis(500);
    let me = options.consumer.clone();
    env.start(options);
    env.xadd_event(&event(None, None, at(T0 + 1))).await;
    env.wait_rows(2).await;
    env.wait_drained().await;
    assert_eq!(env.metrics.usage().dead_lettered.get(), 1);
    assert_eq!(env.metrics.usage().reclaimed.get(), 2);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while env.consumers().await != [me.clone()] {
        assert!(tokio::time::Instant::now() < deadline, "idle consumer kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.status.health().state, IngestState::Ok);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_larger_than_one_statement_are_stored_whole_and_once() {
    let env = Env::new().await;
    let (tenant, key) = env.tenant_and_key().await;
    let records: Vec<_> = (0..2_500)
        .map(|i| {
            let json =
                serde_json::to_vec(&event(Some(key.id), Some(tenant.id), at(T0 + i))).unwrap();
            to_record(&json)
        })
        .collect();
    let first = db::usage::ingest_batch(
        &mut *env.conn().await,
        records.clone(),
        &[],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(first.inserted, 2_500);
    let again = db::usage::ingest_batch(
        &mut *env.conn().await,
        records,
        &[],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(again.inserted, 0);
    assert_eq!(env.rows().await, 2_500);
    assert_eq!(env.last_used(&key).await, Some(at(T0 + 2_499)));
}
