//! The retention job: one pass deletes only expired rows, in batches of `batch_size`, from
//! `requests`, `budget_alert_events`, `usage_rollups` and `usage_rollups_coarse`; `0` keeps
//! rows forever; a pass running elsewhere makes this one skip; the metric counts the rows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::RunQueryDsl;
use omg_controlplane::db;
use omg_controlplane::db::models::NewRequestRecord;
use omg_controlplane::workers::retention::{run_pass, PassReport};
use omg_shared::config::RetentionConfig;
use uuid::Uuid;

use crate::harness::*;

const DAY: Duration = Duration::from_secs(86_400);

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(cp: &Cp, sql: &str) -> i64 {
    let row: Count = diesel::sql_query(sql)
        .get_result(&mut *cp.conn().await)
        .await
        .unwrap();
    row.n
}

fn days_ago(now: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    now - chrono::Duration::days(days)
}

fn request(started_at: DateTime<Utc>) -> NewRequestRecord {
    NewRequestRecord {
        event_id: Uuid::now_v7(),
        request_id: format!("req-{}", Uuid::now_v7().simple()),
        started_at,
        tenant_id: Some(Uuid::now_v7()),
        key_id: None,
        user_id: None,
        alias: Some("mock-gpt".into()),
        provider: Some("mock".into()),
        deployment: None,
        endpoint: "chat.completions".into(),
        status: 200,
        error_code: None,
        prompt_tokens: 1,
        completion_tokens: 1,
        total_tokens: 2,
        cached_tokens: 0,
        cache_write_tokens: 0,
        images: 0,
        cost_micro_usd: 1,
        latency_ms: 1,
        ttft_ms: None,
        stream: false,
        usage_estimated: false,
        schema_version: 1,
        batch_id: None,
    }
}

async fn alert_event(cp: &Cp, created_at: DateTime<Utc>) {
    diesel::sql_query(
        "INSERT INTO budget_alert_events (delivery_id, tenant_id, level, window_label, channel, \
         target, attempt, outcome, spend_micro_usd, limit_micro_usd, created_at) \
         VALUES (gen_random_uuid(), gen_random_uuid(), 'warning', 'weekly:x', 'email', \
         'ops@x.test', 1, 'sent', 1, 2, $1)",
    )
    .bind::<Timestamptz, _>(created_at)
    .execute(&mut *cp.conn().await)
    .await
    .unwrap();
}

fn retention(batch_size: u32) -> RetentionConfig {
    RetentionConfig {
        requests: 30 * DAY,
        rollups: 60 * DAY,
        alert_events: 40 * DAY,
        interval: Duration::from_secs(3600),
        batch_size,
    }
}

async fn pass(cp: &Cp, config: &RetentionConfig, now: DateTime<Utc>) -> PassReport {
    run_pass(
        &cp.state.pool,
        config,
        cp.state.metrics.retention(),
        now,
        &|| false,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_deletes_only_expired_rows_in_batches() {
    let cp = Cp::start("").await;
    let now = Utc::now();
    let mut rows: Vec<_> = [31, 45, 90, 200, 400]
        .map(|d| request(days_ago(now, d)))
        .into();
    rows.extend([0, 1, 29].map(|d| request(days_ago(now, d))));
    db::usage::ingest_batch(&mut *cp.conn().await, rows, &[], Duration::from_secs(10))
        .await
        .unwrap();
    for d in [41, 100, 365, 2, 39] {
        alert_event(&cp, days_ago(now, d)).await;
    }

    // Rows are kept forever with 0.
    let forever = RetentionConfig {
        requests: Duration::ZERO,
        rollups: Duration::ZERO,
        alert_events: Duration::ZERO,
        ..retention(2)
    };
    assert_eq!(pass(&cp, &forever, now).await, PassReport::default());
    assert_eq!(count(&cp, "SELECT count(*) AS n FROM requests").await, 8);

    // The ingester rolled the rows up by hour; rollups are kept 60 days, longer than rows.
    const OLD_ROLLUPS: &str = "SELECT (SELECT count(*) FROM usage_rollups WHERE hour < now() - interval '60 days') \
         + (SELECT count(*) FROM usage_rollups_coarse WHERE hour < now() - interval '60 days') AS n";
    let expired_rollups = count(&cp, OLD_ROLLUPS).await;
    assert!(expired_rollups >= 3, "{expired_rollups}");
    // 2 rows per statement.
    let report = pass(&cp, &retention(2), now).await;
    assert_eq!(
        (
            report.skipped,
            report.requests,
            report.alert_events,
            report.rollups
        ),
        (false, 5, 3, u64::try_from(expired_rollups).unwrap())
    );
    assert!(report.batches >= 3 + 2 + 2, "{report:?}");
    assert_eq!(count(&cp, OLD_ROLLUPS).await, 0);
    assert!(
        count(
            &cp,
            "SELECT count(*) AS n FROM usage_rollups WHERE hour < now() - interval '30 days'"
        )
        .await
            >= 1,
        "rollups outlive the request rows"
    );
    assert_eq!(count(&cp, "SELECT count(*) AS n FROM requests").await, 3);
    assert_eq!(
        count(
            &cp,
            "SELECT count(*) AS n FROM requests WHERE started_at >= now() - interval '30 days'"
        )
        .await,
        3,
        "the recent rows are the ones kept"
    );
    assert_eq!(
        count(&cp, "SELECT count(*) AS n FROM budget_alert_events").await,
        2
    );
    let metrics = cp.state.metrics.render().unwrap();
    assert!(
        metrics.contains("omg_cp_retention_deleted_rows_total{table=\"requests\"} 5"),
        "{metrics}"
    );

    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_running_elsewhere_makes_this_one_skip() {
    let cp = Cp::start("").await;
    let now = Utc::now();
    db::usage::ingest_batch(
        &mut *cp.conn().await,
        vec![request(days_ago(now, 100))],
        &[],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut other = cp.conn().await;
    assert!(db::retention::try_lock(&mut other).await.unwrap());
    let report = pass(&cp, &retention(100), now).await;
    assert!(report.skipped);
    assert_eq!(count(&cp, "SELECT count(*) AS n FROM requests").await, 1);
    db::retention::unlock(&mut other).await.unwrap();
    drop(other);
    assert_eq!(pass(&cp, &retention(100), now).await.requests, 1);
    cp.stop().await;
}
