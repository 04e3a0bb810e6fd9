//! Governance: default rate limits and budget (persisted over the config), tenant overrides,
//! key quotas within the tenant's, spend in listings (reporting timezone), the snapshot, the
//! live data plane count, and the Redis spend counter rebuild.

use std::time::Duration;

use bb8_redis::redis;
use chrono::{DateTime, Utc};
use omg_controlplane::db;
use omg_controlplane::db::models::NewRequestRecord;
use omg_controlplane::workers::counters;
use omg_shared::budget::{day_start, local_day, parse_timezone, WindowSpan};
use omg_shared::counters::{BudgetScope, CounterKeys, SPEND_DAY_TTL_SECS};
use omg_shared::snapshot::BudgetWindow;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::*;
use crate::snapshot::{redis_conn, redis_url, wait_for};

/// Stores one metered request of `micros` at `at`.
async fn spend(cp: &Cp, tenant: Option<Uuid>, key: Option<Uuid>, at: DateTime<Utc>, micros: i64) {
    let record = NewRequestRecord {
        event_id: Uuid::now_v7(),
        request_id: format!("req-{}", Uuid::now_v7().simple()),
        started_at: at,
        tenant_id: tenant,
        key_id: key,
        user_id: None,
        alias: Some("mock-gpt".into()),
        provider: Some("mock".into()),
        deployment: Some("mock-gpt#0".into()),
        endpoint: "chat.completions".into(),
        status: 200,
        error_code: None,
        prompt_tokens: 10,
        completion_tokens: 10,
        total_tokens: 20,
        cached_tokens: 0,
        cache_write_tokens: 0,
        cost_micro_usd: micros,
        latency_ms: 5,
        ttft_ms: None,
        stream: false,
        usage_estimated: false,
        schema_version: 1,
        batch_id: None,
        images: 0,
    };
    db::usage::ingest_batch(
        &mut *cp.conn().await,
        vec![record],
        &[],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

async fn audit_actions(cp: &Cp, token: &str) -> Vec<(String, Value, Value)> {
    let (status, page) = cp
        .call(Method::GET, "/admin/audit?limit=200", Some(token), None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["before"].clone(),
                e["after"].clone(),
            )
        })
        .collect()
}

fn error_field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_defaults_are_persisted_over_the_config() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let viewer = cp.user("viewer@x.test", false).await;
    let tenant = cp.tenant("acme").await;
    cp.member(&tenant, &viewer, "viewer").await;
    let v = cp.token(viewer.id);

    // Config values until something is set; any signed-in admin may read them.
    let (status, limits) = cp
        .call(Method::GET, "/admin/settings/rate-limits", Some(&v), None)
        .await;
    assert_eq!(status, 200, "{limits}");
    assert_eq!(
        limits,
        json!({"requests_per_minute": 1000, "tokens_per_minute": 1_000_000,
               "parallel_requests_key": 10, "parallel_requests_tenant": 100,
               "source": "config", "updated_at": null})
    );

    // Validation names the field.
    let path = "/admin/settings/rate-limits";
    let full = json!({"requests_per_minute": 60, "tokens_per_minute": 6000,
                      "parallel_requests_key": 2, "parallel_requests_tenant": 8});
    let mut missing = full.clone();
    missing
        .as_object_mut()
        .unwrap()
        .remove("parallel_requests_key");
    let mut negative = full.clone();
    negative["tokens_per_minute"] = json!(-1);
    let mut unknown = full.clone();
    unknown["burst"] = json!(3);
    for (body, field) in [
        (missing, "parallel_requests_key"),
        (negative, "tokens_per_minute"),
        (unknown, "burst"),
    ] {
        let (status, err) = cp.call(Method::PUT, path, Some(&t), Some(body)).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(error_field(&err), field, "{err}");
    }
    let (status, set) = cp
        .call(Method::PUT, path, Some(&t), Some(full.clone()))
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["source"], "database");
    assert_eq!(set["parallel_requests_tenant"], 8);
    let (_, again) = cp.call(Method::GET, path, Some(&v), None).await;
    assert_eq!(again["requests_per_minute"], 60);
    assert_eq!(again["source"], "database");

    // The default budget.
    let path = "/admin/budgets/default";
    let (status, budget) = cp.call(Method::GET, path, Some(&v), None).await;
    assert_eq!(status, 200, "{budget}");
    assert_eq!(budget["budget_usd"], 100.0);
    assert_eq!(budget["warning_threshold"], 0.8);
    assert_eq!(budget["refresh_schedule"], "calendar_month");
    assert_eq!(budget["source"], "config");
    for (body, field) in [
        (json!({"budget_usd": -1.0}), "budget_usd"),
        (
            json!({"budget_usd": 5.0, "refresh_schedule": "monthly"}),
            "refresh_schedule",
        ),
        (
            json!({"budget_usd": 5.0, "warning_threshold": 1.5}),
            "warning_threshold",
        ),
        (
            json!({"budget_usd": 5.0, "warning_threshold": 0.0}),
            "warning_threshold",
        ),
        (json!({}), "budget_usd"),
    ] {
        let (status, err) = cp.call(Method::PUT, path, Some(&t), Some(body)).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(error_field(&err), field, "{err}");
    }
    let (status, set) = cp
        .call(
            Method::PUT,
            path,
            Some(&t),
            Some(json!({"budget_usd": 250.25, "refresh_schedule": "rolling_7d"})),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["budget_usd"], 250.25);
    assert_eq!(set["warning_threshold"], 0.8, "absent: kept");
    assert_eq!(set["refresh_schedule"], "rolling_7d");
    assert_eq!(set["source"], "database");
    let row = db::governance::budget_default(&mut *cp.conn().await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.budget_micro_usd, 250_250_000, "stored as micro-USD");

    // The tenant without an override now shows the persisted default.
    let (_, tb) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{}/budget", tenant.id),
            Some(&v),
            None,
        )
        .await;
    assert_eq!(tb["source"], "default");
    assert_eq!(tb["budget_usd"], 250.25);
    assert_eq!(tb["refresh_schedule"], "rolling_7d");
    assert_eq!(tb["level"], "ok");

    let audit = audit_actions(&cp, &t).await;
    let limits_entry = audit
        .iter()
        .find(|(a, _, _)| a == "settings.rate_limits")
        .expect("settings.rate_limits audited");
    assert_eq!(limits_entry.1["source"], "config");
    assert_eq!(limits_entry.2["requests_per_minute"], 60);
    let budget_entry = audit
        .iter()
        .find(|(a, _, _)| a == "budget_default.set")
        .expect("budget_default.set audited");
    assert_eq!(budget_entry.1["budget_usd"], 100.0);
    assert_eq!(budget_entry.2["budget_usd"], 250.25);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_overrides_and_key_quotas_stay_within_them() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let tenant = cp.tenant("acme").await;
    let base = format!("/admin/tenants/{}", tenant.id);
    let budget_path = format!("{base}/budget");
    let limits_path = format!("{base}/rate-limits");

    // Validation of the budget override.
    for (body, field) in [
        (json!({"budget_usd": "ten"}), ""),
        (json!({"budget_usd": -5.0}), "budget_usd"),
        (
            json!({"budget_usd": 5.0, "alert_emails": ["ok@x.test", "nope"]}),
            "alert_emails[1]",
        ),
        (
            json!({"budget_usd": 5.0, "alert_webhooks": ["ftp://hooks.x.test/a"]}),
            "alert_webhooks[0]",
        ),
        (
            json!({"budget_usd": 5.0, "alert_cooldown": "soon"}),
            "alert_cooldown",
        ),
        (
            json!({"budget_usd": 5.0, "refresh_schedule": "rolling_0d"}),
            "refresh_schedule",
        ),
        (
            json!({"budget_usd": 5.0, "warning_threshold": 2}),
            "warning_threshold",
        ),
    ] {
        let (status, err) = cp
            .call(Method::PUT, &budget_path, Some(&t), Some(body))
            .await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(error_field(&err), field, "{err}");
    }
    let (status, set) = cp
        .call(
            Method::PUT,
            &budget_path,
            Some(&t),
            Some(
                json!({"budget_usd": 40.5, "warning_threshold": 0.5, "refresh_schedule": "weekly",
                        "alert_emails": ["Finance@Acme.test"],
                        "alert_webhooks": ["https://hooks.acme.test/budget?team=ml"],
                        "alert_cooldown": "90m"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["source"], "override");
    assert_eq!(set["budget_usd"], 40.5);
    assert_eq!(set["alert_emails"], json!(["finance@acme.test"]));
    assert_eq!(set["alert_cooldown"], "1h30m");
    assert_eq!(set["spent_usd"], 0.0);
    assert_eq!(set["remaining_usd"], 40.5);
    assert_eq!(set["level"], "ok");
    assert!(set["window"]["label"]
        .as_str()
        .unwrap()
        .starts_with("weekly:"));

    let (status, overrides) = cp
        .call(Method::GET, "/admin/budgets/overrides", Some(&t), None)
        .await;
    assert_eq!(status, 200, "{overrides}");
    assert_eq!(overrides["data"][0]["tenant_name"], "acme");
    assert_eq!(overrides["data"][0]["budget_usd"], 40.5);
    assert_eq!(overrides["data"][0]["alert_cooldown"], "1h30m");

    // Rate-limit override: GET before any (inherits), then set.
    let (status, limits) = cp.call(Method::GET, &limits_path, Some(&t), None).await;
    assert_eq!(status, 200, "{limits}");
    assert_eq!(limits["overridden"], false);
    assert_eq!(
        limits["effective"],
        json!({"requests_per_minute": null, "tokens_per_minute": null, "parallel_requests": 100})
    );
    let (status, err) = cp
        .call(
            Method::PUT,
            &limits_path,
            Some(&t),
            Some(json!({"requests_per_minute": -3})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_field(&err), "requests_per_minute");
    let (status, limits) = cp
        .call(
            Method::PUT,
            &limits_path,
            Some(&t),
            Some(json!({"requests_per_minute": 100, "parallel_requests": 5})),
        )
        .await;
    assert_eq!(status, 200, "{limits}");
    assert_eq!(limits["overridden"], true);
    assert_eq!(limits["requests_per_minute"], 100);
    assert_eq!(limits["tokens_per_minute"], Value::Null);
    assert_eq!(
        limits["effective"],
        json!({"requests_per_minute": 100, "tokens_per_minute": null, "parallel_requests": 5})
    );

    // Keys stay within the tenant's limits and budget.
    let keys = format!("{base}/api-keys");
    for (body, field) in [
        (
            json!({"rate_limit": {"requests_per_minute": 150}}),
            "rate_limit.requests_per_minute",
        ),
        (
            json!({"rate_limit": {"parallel_requests": 6}}),
            "rate_limit.parallel_requests",
        ),
        (json!({"budget_usd": 41.0}), "budget_usd"),
    ] {
        let (status, err) = cp.call(Method::POST, &keys, Some(&t), Some(body)).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(error_field(&err), field, "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tenant's"),
            "{err}"
        );
    }
    let (status, key) = cp
        .call(
            Method::POST,
            &keys,
            Some(&t),
            Some(json!({"prefix": "acme-q", "budget_usd": 30.25,
                        "rate_limit": {"requests_per_minute": 80, "parallel_requests": 5}})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["budget_usd"], 30.25);
    let kid: Uuid = key["id"].as_str().unwrap().parse().unwrap();
    let stored = db::keys::get(&mut *cp.conn().await, tenant.id, kid)
        .await
        .unwrap();
    assert_eq!(stored.budget_micro_usd, Some(30_250_000));

    // Lowering the tenant below a key's quota is refused, naming the field and the key.
    let (status, err) = cp
        .call(
            Method::PUT,
            &limits_path,
            Some(&t),
            Some(json!({"requests_per_minute": 50, "parallel_requests": 5})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(error_field(&err), "requests_per_minute");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sk-acme-q"),
        "{err}"
    );
    let (status, err) = cp
        .call(
            Method::PUT,
            &budget_path,
            Some(&t),
            Some(json!({"budget_usd": 30.0})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(error_field(&err), "budget_usd");

    // Removing the overrides: the defaults apply again; removing twice is harmless.
    let (status, _) = cp.call(Method::DELETE, &limits_path, Some(&t), None).await;
    assert_eq!(status, 204);
    let (status, _) = cp.call(Method::DELETE, &limits_path, Some(&t), None).await;
    assert_eq!(status, 204);
    let (_, limits) = cp.call(Method::GET, &limits_path, Some(&t), None).await;
    assert_eq!(limits["overridden"], false);
    let (status, _) = cp.call(Method::DELETE, &budget_path, Some(&t), None).await;
    assert_eq!(status, 204);
    let (_, budget) = cp.call(Method::GET, &budget_path, Some(&t), None).await;
    assert_eq!(budget["source"], "default");
    assert_eq!(budget["budget_usd"], 100.0);
    assert_eq!(budget["alert_emails"], json!([]));

    // A missing tenant is 404 for a super admin too.
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/budget", Uuid::now_v7()),
            Some(&t),
            Some(json!({"budget_usd": 1.0})),
        )
        .await;
    assert_eq!(status, 404);

    let actions: Vec<String> = audit_actions(&cp, &t)
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    for action in [
        "tenant.budget",
        "tenant.rate_limits",
        "tenant.rate_limits_delete",
        "tenant.budget_delete",
    ] {
        assert_eq!(
            actions.iter().filter(|a| *a == action).count(),
            1,
            "{action} in {actions:?}"
        );
    }
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_show_budget_and_spend_in_the_reporting_timezone() {
    let zone = "America/New_York";
    let cp = Cp::start(&format!(
        "reporting:\n  timezone: {zone}\nbudgets:\n  default_usd: 100\n  refresh_schedule: calendar_month\n"
    ))
    .await;
    let tz = parse_timezone(zone).unwrap();
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let monthly = cp.tenant("a-monthly").await;
    let daily = cp.tenant("b-daily").await;
    let unbudgeted = cp.tenant("c-none").await;
    let now = Utc::now();

    // a-monthly (the default, calendar month in New York): a request one second after the
    // month started there counts; one second before does not (though it is the same UTC
    // month whenever New York's month began after 00:00 UTC — always, at UTC−4/−5).
    let month = WindowSpan::current(BudgetWindow::CalendarMonth, tz, now);
    spend(
        &cp,
        Some(monthly.id),
        None,
        month.starts_at + chrono::Duration::seconds(1),
        1_250_000,
    )
    .await;
    spend(
        &cp,
        Some(monthly.id),
        None,
        month.starts_at - chrono::Duration::seconds(1),
        9_000_000,
    )
    .await;
    spend(&cp, Some(monthly.id), Some(Uuid::now_v7()), now, 250_000).await;

    // b-daily (override, rolling_1d): only today's requests, local day.
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/budget", daily.id),
            Some(&t),
            Some(json!({"budget_usd": 2.0, "refresh_schedule": "rolling_1d", "warning_threshold": 0.5})),
        )
        .await;
    assert_eq!(status, 200);
    let today = day_start(tz, local_day(tz, now));
    spend(&cp, Some(daily.id), None, today, 1_500_000).await;
    spend(
        &cp,
        Some(daily.id),
        None,
        today - chrono::Duration::seconds(1),
        7_000_000,
    )
    .await;

    // c-none (override with 0: no budget).
    let (status, _) = cp
        .call(
            Method::PUT,
            &format!("/admin/tenants/{}/budget", unbudgeted.id),
            Some(&t),
            Some(json!({"budget_usd": 0})),
        )
        .await;
    assert_eq!(status, 200);
    spend(&cp, Some(unbudgeted.id), None, now, 10).await;

    let (status, page) = cp.call(Method::GET, "/admin/tenants", Some(&t), None).await;
    assert_eq!(status, 200, "{page}");
    let data = page["data"].as_array().unwrap();
    let by_name = |name: &str| data.iter().find(|d| d["name"] == name).unwrap().clone();
    let a = by_name("a-monthly");
    assert_eq!(a["budget_limit_usd"], 100.0);
    assert_eq!(a["budget_spent_usd"], 1.5);
    let b = by_name("b-daily");
    assert_eq!(b["budget_limit_usd"], 2.0);
    assert_eq!(b["budget_spent_usd"], 1.5);
    let c = by_name("c-none");
    assert_eq!(c["budget_limit_usd"], Value::Null);
    assert_eq!(c["budget_spent_usd"], 0.00001);

    let (status, one) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{}", daily.id),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["budget_spent_usd"], 1.5);
    assert_eq!(one["name"], "b-daily");
    let (_, budget) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{}/budget", daily.id),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(budget["spent_usd"], 1.5);
    assert_eq!(
        budget["level"], "warning",
        "1.5 of 2.0 with a 0.5 threshold"
    );
    assert_eq!(budget["remaining_usd"], 0.5);
    assert_eq!(budget["timezone"], zone);
    let (_, budget) = cp
        .call(
            Method::GET,
            &format!("/admin/tenants/{}/budget", unbudgeted.id),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(budget["level"], Value::Null);
    assert_eq!(budget["budget_usd"], Value::Null);
    cp.stop().await;
}

/// A Redis-backed control plane whose keys are all under `prefix`.
fn cluster_yaml(prefix: &str, extra: &str) -> String {
    format!(
        r#"
redis:
  url: "{}"
cluster:
  snapshot_key: "{prefix}:snapshot"
  snapshot_signing_key: "{SIGNING_KEY}"
  usage_stream: "{prefix}:usage"
  counter_prefix: "{prefix}:ctr"
  publish_interval: 200ms
  publish_debounce: 20ms
model_catalog:
  - alias: mock-gpt
    provider: mock
{extra}
"#,
        redis_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_follows_persisted_defaults_overrides_and_live_data_planes() {
    let prefix = format!("omgtest:{}", Uuid::now_v7().simple());
    let cp = Cp::start(&cluster_yaml(&prefix, "")).await;
    let mut redis = redis_conn().await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let tenant = cp.tenant("acme").await;

    // At first: the config's defaults and one data plane (no heartbeats yet).
    let first = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |s| {
        s.tenants.iter().any(|x| x.id == tenant.id)
    })
    .await;
    assert_eq!(first.rate_limits.requests_per_minute, 1000);
    assert_eq!(
        first.budget_default.map(|b| b.limit_micro_usd),
        Some(100_000_000)
    );
    assert_eq!(first.live_dataplanes, 1);

    for (path, body) in [
        (
            "/admin/settings/rate-limits".to_owned(),
            json!({"requests_per_minute": 7, "tokens_per_minute": 70,
                   "parallel_requests_key": 1, "parallel_requests_tenant": 3}),
        ),
        (
            "/admin/budgets/default".to_owned(),
            json!({"budget_usd": 12.5, "warning_threshold": 0.9, "refresh_schedule": "weekly"}),
        ),
        (
            format!("/admin/tenants/{}/budget", tenant.id),
            json!({"budget_usd": 3.0, "refresh_schedule": "rolling_30d"}),
        ),
        (
            format!("/admin/tenants/{}/rate-limits", tenant.id),
            json!({"requests_per_minute": 5, "tokens_per_minute": 0}),
        ),
    ] {
        let (status, body) = cp.call(Method::PUT, &path, Some(&t), Some(body)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let snap = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |s| {
        s.rate_limits.requests_per_minute == 7
            && s.budget_default
                .is_some_and(|b| b.limit_micro_usd == 12_500_000)
            && s.tenants
                .iter()
                .any(|x| x.id == tenant.id && x.limits.requests_per_minute == Some(5))
            && s.tenants
                .iter()
                .any(|x| x.id == tenant.id && x.budget.is_some())
    })
    .await;
    assert_eq!(snap.rate_limits.tokens_per_minute, 70);
    assert_eq!(snap.rate_limits.parallel_requests_key, 1);
    assert_eq!(snap.rate_limits.parallel_requests_tenant, 3);
    let default = snap.budget_default.unwrap();
    assert_eq!(default.window, BudgetWindow::Weekly);
    assert!((default.warning_threshold - 0.9).abs() < f64::EPSILON);
    let ours = snap.tenants.iter().find(|x| x.id == tenant.id).unwrap();
    let budget = ours.budget.unwrap();
    assert_eq!(budget.limit_micro_usd, 3_000_000);
    assert_eq!(budget.window, BudgetWindow::RollingDays(30));
    assert!(
        (budget.warning_threshold - 0.9).abs() < f64::EPSILON,
        "the default's threshold"
    );
    assert_eq!(ours.limits.tokens_per_minute, Some(0));

    // A budget of 0 as the default: no default budget in the snapshot.
    let (status, _) = cp
        .call(
            Method::PUT,
            "/admin/budgets/default",
            Some(&t),
            Some(json!({"budget_usd": 0})),
        )
        .await;
    assert_eq!(status, 200);
    wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |s| {
        s.budget_default.is_none()
    })
    .await;

    // Heartbeats: three fresh data planes and a stale one; the timer republishes the count.
    let beats = CounterKeys::new(&format!("{prefix}:ctr")).dataplanes();
    let now_ms = Utc::now().timestamp_millis();
    let _: i64 = redis::cmd("ZADD")
        .arg(&beats)
        .arg(now_ms)
        .arg("dp-a")
        .arg(now_ms)
        .arg("dp-b")
        .arg(now_ms - 1000)
        .arg("dp-c")
        .arg(now_ms - 120_000)
        .arg("dp-stale")
        .query_async(&mut redis)
        .await
        .unwrap();
    let snap = wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |s| {
        s.live_dataplanes == 3
    })
    .await;
    assert_eq!(snap.live_dataplanes, 3);
    assert_eq!(cp.state.publisher.status().live_dataplanes, 3);
    // Gone: back to one.
    let _: i64 = redis::cmd("DEL")
        .arg(&beats)
        .query_async(&mut redis)
        .await
        .unwrap();
    wait_for(&cp, &mut redis, &prefix, Duration::from_secs(5), |s| {
        s.live_dataplanes == 1
    })
    .await;
    cleanup(&mut redis, &prefix).await;
    cp.stop().await;
}

async fn cleanup(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(redis)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(redis)
            .await
            .unwrap();
    }
}

async fn counter(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<i64> {
    redis::cmd("GET").arg(key).query_async(redis).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_merges_the_maximum_and_survives_a_flushed_prefix() {
    let prefix = format!("omgtest:{}", Uuid::now_v7().simple());
    let zone = "Asia/Tokyo";
    let cp = Cp::start(&cluster_yaml(
        &prefix,
        &format!("reporting:\n  timezone: {zone}\n"),
    ))
    .await;
    let mut redis = redis_conn().await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let tz = parse_timezone(zone).unwrap();
    let now = Utc::now();
    let today = local_day(tz, now);
    let day = |back: i64| today - chrono::Duration::days(back);
    // One hour into a Tokyo day is still the previous day in UTC: grouping by UTC days
    // would put these rows on the wrong counters.
    let at = |back: i64| day_start(tz, day(back)) + chrono::Duration::hours(1);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let (k1, k2) = (Uuid::now_v7(), Uuid::now_v7());
    spend(&cp, Some(a), Some(k1), day_start(tz, today), 300).await;
    spend(&cp, Some(a), Some(k1), day_start(tz, today), 200).await;
    spend(&cp, Some(a), None, day_start(tz, today), 50).await;
    spend(&cp, Some(a), Some(k1), at(3), 1000).await;
    spend(&cp, Some(b), Some(k2), at(10), 7).await;
    spend(&cp, Some(b), Some(k2), at(366), 999).await; // outside the 366 days
    spend(&cp, None, None, at(1), 12345).await; // no tenant: no counter

    let names = CounterKeys::new(&format!("{prefix}:ctr"));
    let ta = BudgetScope::Tenant(a);
    let ka = BudgetScope::Key { tenant: a, key: k1 };
    let tb = BudgetScope::Tenant(b);
    let kb = BudgetScope::Key { tenant: b, key: k2 };
    // Redis already counts more for today (settled, not yet ingested) and less for day −3.
    let _: () = redis::cmd("SET")
        .arg(names.spend_day(&ta, day(0)))
        .arg(10_000)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(names.spend_day(&ka, day(3)))
        .arg(5)
        .query_async(&mut redis)
        .await
        .unwrap();

    let (status, report) = cp
        .call(Method::POST, "/admin/budgets/rebuild", Some(&t), None)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tenants"], 2);
    assert_eq!(report["keys"], 2);
    assert_eq!(report["counters"], 6);
    assert_eq!(report["since"], day(365).to_string());

    let expected = [
        (names.spend_day(&ta, day(0)), 10_000),
        (names.spend_day(&ka, day(0)), 500),
        (names.spend_day(&ta, day(3)), 1000),
        (names.spend_day(&ka, day(3)), 1000),
        (names.spend_day(&tb, day(10)), 7),
        (names.spend_day(&kb, day(10)), 7),
    ];
    for (key, value) in &expected {
        assert_eq!(counter(&mut redis, key).await, Some(*value), "{key}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            ttl > 0 && ttl <= SPEND_DAY_TTL_SECS as i64,
            "{key}: ttl {ttl}"
        );
    }
    assert_eq!(
        counter(&mut redis, &names.spend_day(&tb, day(366))).await,
        None
    );
    assert_eq!(
        counter(&mut redis, &names.spend_day(&ta, day(4))).await,
        None
    );

    // Redis emptied: everything comes back from Postgres (today's tenant counter at the
    // Postgres value now).
    cleanup(&mut redis, &format!("{prefix}:ctr")).await;
    let pool = cp.state.redis.clone().unwrap();
    let rebuilt = counters::rebuild(&cp.state.config, &cp.state.pool, &pool, Utc::now())
        .await
        .unwrap();
    assert_eq!(rebuilt.counters, 6);
    assert_eq!(rebuilt.raised, 6);
    assert_eq!(rebuilt.kept, 0);
    assert_eq!(
        counter(&mut redis, &names.spend_day(&ta, day(0))).await,
        Some(550)
    );
    // Run again: nothing to raise.
    let again = counters::rebuild(&cp.state.config, &cp.state.pool, &pool, Utc::now())
        .await
        .unwrap();
    assert_eq!((again.raised, again.kept), (0, 6));

    let audit = audit_actions(&cp, &t).await;
    let entry = audit
        .iter()
        .find(|(a, _, _)| a == "counters.rebuild")
        .expect("counters.rebuild audited");
    assert_eq!(entry.2["counters"], 6);
    cleanup(&mut redis, &prefix).await;
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_without_redis_says_so() {
    let cp = Cp::start("").await;
    let root = cp.user("root@x.test", true).await;
    let t = cp.token(root.id);
    let (status, err) = cp
        .call(Method::POST, "/admin/budgets/rebuild", Some(&t), None)
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redis.url"),
        "{err}"
    );
    cp.stop().await;
}
