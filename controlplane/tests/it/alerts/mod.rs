//! Budget alerts against the real Postgres, a real SMTP receiver and a real webhook receiver
//! (both in-process on 127.0.0.1, `omg-mock-upstream`); the clock is injected so windows and
//! cooldowns are crossed without waiting. The last test runs the whole path: usage entries on
//! the real Redis, ingestion, the evaluator task, delivery.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bb8_redis::redis;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use omg_controlplane::db::models::{AlertEvent, NewRequestRecord, Tenant, TenantBudget};
use omg_controlplane::db::{self, Pool};
use omg_controlplane::metrics::Metrics;
use omg_controlplane::workers::alerts::clock::{Clock, ManualClock, SystemClock};
use omg_controlplane::workers::alerts::{queue, AlertOptions, Evaluation, Evaluator};
use omg_controlplane::workers::usage_ingest::{IngestOptions, IngestStatus, UsageIngest};
use omg_mock_upstream::smtp::{SmtpConfig, SmtpServer};
use omg_mock_upstream::webhook::WebhookReceiver;
use omg_shared::budget::BudgetLevel;
use omg_shared::cluster::{USAGE_FIELD, USAGE_GROUP};
use omg_shared::config::GatewayConfig;
use omg_shared::usage::UsageEvent;
use sha2::Sha256;
use tokio::sync::watch;
use uuid::Uuid;

use crate::harness::{config_yaml, parse_config, TestDb};

const SECRET: &str = "webhook-secret-0123456789";
const DEADLINE: Duration = Duration::from_secs(20);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Polls `check` until it holds, failing with `what` after [`DEADLINE`].
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

/// The `budgets:`/`reporting:` YAML of a test: the receivers (on 127.0.0.1, allowed unless
/// `extra_alert` sets its own `allow_private_targets`), fast settings.
fn alert_yaml(smtp: &SmtpServer, extra_alert: &str, timezone: &str) -> String {
    let allow = if extra_alert.contains("allow_private_targets") {
        ""
    } else {
        "    allow_private_targets: [\"127.0.0.0/8\"]\n"
    };
    format!(
        r#"
reporting:
  timezone: "{timezone}"
budgets:
  alert:
    cooldown: 1h
    sweep_interval: 60s
{allow}{extra_alert}
    smtp:
      host: "127.0.0.1"
      port: {port}
      from: "gateway@example.com"
      use_tls: false
      connect_timeout: 2s
    webhook:
      timeout: 2s
      max_retries: 3
      secret: "{SECRET}"
"#,
        port = smtp.addr().port()
    )
}

/// A test's database, receivers, clock and evaluator.
struct Env {
    db: TestDb,
    pool: Pool,
    metrics: Metrics,
    clock: ManualClock,
    smtp: SmtpServer,
    hook: WebhookReceiver,
    evaluator: Evaluator,
    _stop: watch::Sender<bool>,
}

impl Env {
    /// `extra_alert`: more `budgets.alert` keys (4-space indent); `script`: the webhook
    /// receiver's first statuses.
    async fn new(extra_alert: &str, script: Vec<u16>, timezone: &str, now: &str) -> Env {
        let db = TestDb::create().await;
        db::migrate(&db.url).await.unwrap();
        let pool = db::connect(&db.url, 4, Duration::from_secs(5))
            .await
            .unwrap();
        let smtp = SmtpServer::start(SmtpConfig::default()).await.unwrap();
        let hook = WebhookReceiver::start(script).await.unwrap();
        let config = parse_config(&config_yaml(
            &db.url,
            &alert_yaml(&smtp, extra_alert, timezone),
        ));
        let clock = ManualClock::new(at(now));
        let metrics = Metrics::new().unwrap();
        let (stop, stopped) = watch::channel(false);
        let evaluator = Evaluator::new(
            pool.clone(),
            Arc::new(config),
            fast_options(),
            Arc::new(clock.clone()),
            metrics.alerts().clone(),
            stopped,
        )
        .unwrap();
        Env {
            db,
            pool,
            metrics,
            clock,
            smtp,
            hook,
            evaluator,
            _stop: stop,
        }
    }

    /// A tenant with a $10 budget (warning at 80 %), alerting `emails` and `webhooks`.
    async fn tenant(
        &self,
        name: &str,
        window: &str,
        emails: &[&str],
        webhooks: &[String],
        cooldown_secs: Option<i64>,
    ) -> Tenant {
        let now = Utc::now();
        let tenant = Tenant {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            kind: "organization".to_owned(),
            status: "active".to_owned(),
            allowed_models: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let mut conn = self.pool.get().await.unwrap();
        db::tenants::insert(&mut conn, &tenant).await.unwrap();
        db::governance::upsert_budget(
            &mut conn,
            &TenantBudget {
                tenant_id: tenant.id,
                budget_micro_usd: 10_000_000,
                warning_threshold: 0.8,
                refresh_schedule: window.to_owned(),
                alert_emails: emails.iter().map(|e| (*e).to_owned()).collect(),
                alert_webhooks: webhooks.to_vec(),
                alert_cooldown_secs: cooldown_secs,
                updated_at: now,
            },
        )
        .await
        .unwrap();
        tenant
    }

    /// Stores one request of `cost` micro-USD for `tenant` started at `started`.
    async fn spend(&self, tenant: &Tenant, cost: i64, started: &str) {
        let record = NewRequestRecord {
            event_id: Uuid::now_v7(),
            request_id: format!("req-{}", Uuid::now_v7().simple()),
            started_at: at(started),
            tenant_id: Some(tenant.id),
            key_id: None,
            user_id: None,
            alias: Some("gpt-4o".to_owned()),
            provider: Some("openai".to_owned()),
            deployment: None,
            endpoint: "chat.completions".to_owned(),
            status: 200,
            error_code: None,
            prompt_tokens: 10,
            completion_tokens: 10,
            total_tokens: 20,
            cached_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
            cost_micro_usd: cost,
            latency_ms: 100,
            ttft_ms: None,
            stream: false,
            usage_estimated: false,
            schema_version: 1,
            batch_id: None,
        };
        let mut conn = self.pool.get().await.unwrap();
        db::usage::ingest_batch(&mut conn, vec![record], &[], Duration::from_secs(5))
            .await
            .unwrap();
    }

    async fn evaluate(&self, tenant: &Tenant) -> Evaluation {
        self.evaluator.evaluate_tenant(tenant.id).await.unwrap()
    }

    async fn events(&self, tenant: &Tenant) -> Vec<AlertEvent> {
        db::alerts::events(&mut self.pool.get().await.unwrap(), tenant.id)
            .await
            .unwrap()
    }

    fn metric(&self, needle: &str) -> bool {
        self.metrics.render().unwrap().lines().any(|l| l == needle)
    }
}

fn fast_options() -> AlertOptions {
    AlertOptions {
        sweep_interval: Duration::from_secs(60),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        queue_capacity: 16,
    }
}

/// The (level, outcome) of each delivery of an evaluation.
fn outcomes(evaluation: &Evaluation) -> (BudgetLevel, Vec<(String, &'static str)>) {
    match evaluation {
        Evaluation::Done {
            level, deliveries, ..
        } => (
            *level,
            deliveries
                .iter()
                .map(|(target, outcome)| (target.recorded.clone(), *outcome))
                .collect(),
        ),
        other => panic!("not evaluated: {other:?}"),
    }
}

/// Verifies `X-OMG-Signature` as a receiver would.
fn verify_signature(header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header.split_once(",v1=") else {
        return false;
    };
    let Some(t) = t.strip_prefix("t=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&hex::decode(v1).unwrap_or_default())
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_then_exceeded_arrive_once_by_email_and_signed_webhook() {
    let env = Env::new("", vec![], "UTC", "2026-11-10T12:00:00Z").await;
    let hook_url = env.hook.url("/hooks/budget?token=hook-token-canary");
    let tenant = env
        .tenant(
            "acme",
            "calendar_month",
            &["finance@example.com"],
            std::slice::from_ref(&hook_url),
            Some(3600),
        )
        .await;
    let recorded_hook = omg_controlplane::service::governance::redact::redact_url(&hook_url);
    assert!(!recorded_hook.contains("hooks/budget") && !recorded_hook.contains("canary"));

    // Below the threshold: nothing.
    env.spend(&tenant, 7_000_000, "2026-11-05T10:00:00Z").await;
    let (level, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!((level, sent.len()), (BudgetLevel::Ok, 0));

    // $8.50 of $10: the warning, by both channels (found by the sweep).
    env.spend(&tenant, 1_500_000, "2026-11-10T11:00:00Z").await;
    assert_eq!(env.evaluator.sweep().await.unwrap(), 1);
    let messages = env.smtp.messages();
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert_eq!(mail.to, vec!["finance@example.com".to_owned()]);
    assert_eq!(mail.from, "gateway@example.com");
    let subject = mail.header("subject").unwrap();
    assert!(
        subject.contains("warning") && subject.contains("acme"),
        "{subject}"
    );
    let body = mail.body();
    for expected in [
        "Tenant:     acme",
        "Level:      warning",
        "Spend:      $8.50",
        "Limit:      $10.00",
        "calendar_month:2026-11-01",
        "2026-12-01T00:00:00Z",
    ] {
        assert!(body.contains(expected), "{expected} in\n{body}");
    }
    let requests = env.hook.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/budget?token=hook-token-canary");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let signature = request.header("x-omg-signature").unwrap();
    assert!(verify_signature(signature, &request.body), "{signature}");
    assert!(!verify_signature(signature, b"{\"tampered\":true}"));
    let json = request.json().unwrap();
    assert_eq!(json["event"], "budget.alert");
    assert_eq!(json["tenant_id"], tenant.id.to_string());
    assert_eq!(json["tenant_name"], "acme");
    assert_eq!(json["level"], "warning");
    assert_eq!(json["spend_micro_usd"], 8_500_000);
    assert_eq!(json["limit_micro_usd"], 10_000_000);
    assert_eq!(json["spend_usd"], 8.5);
    assert_eq!(json["limit_usd"], 10.0);
    assert_eq!(json["window"], "calendar_month");
    assert_eq!(json["window_label"], "calendar_month:2026-11-01");
    assert_eq!(json["resets_at"], "2026-12-01T00:00:00Z");
    assert_eq!(json["sent_at"], "2026-11-10T12:00:00Z");

    // Again two hours later, even beyond the cooldown: not twice in one window.
    env.clock.advance(chrono::Duration::hours(2));
    let (level, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!((level, sent.len()), (BudgetLevel::Warning, 0));
    assert_eq!(env.smtp.messages().len(), 1);
    assert_eq!(env.hook.requests().len(), 1);

    // Over the limit: the exceeded alert, at once (another level).
    env.spend(&tenant, 2_000_000, "2026-11-10T13:30:00Z").await;
    let (level, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!(level, BudgetLevel::Exceeded);
    assert_eq!(
        sent,
        vec![
            ("finance@example.com".to_owned(), "sent"),
            (recorded_hook.clone(), "sent")
        ]
    );
    assert!(env.smtp.messages()[1]
        .header("subject")
        .unwrap()
        .contains("exceeded"));
    assert_eq!(env.hook.requests()[1].json().unwrap()["level"], "exceeded");
    let (_, sent) = outcomes(&env.evaluate(&tenant).await);
    assert!(sent.is_empty());

    // Every attempt is recorded; the URL without its token.
    let events = env.events(&tenant).await;
    let summary: Vec<(&str, &str, &str, &str, i32)> = events
        .iter()
        .map(|e| {
            (
                e.level.as_str(),
                e.channel.as_str(),
                e.target.as_str(),
                e.outcome.as_str(),
                e.attempt,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("warning", "email", "finance@example.com", "sent", 1),
            ("warning", "webhook", recorded_hook.as_str(), "sent", 1),
            ("exceeded", "email", "finance@example.com", "sent", 1),
            ("exceeded", "webhook", recorded_hook.as_str(), "sent", 1),
        ]
    );
    assert!(events.iter().all(|e| !e.target.contains("canary")));
    assert_eq!(events[2].spend_micro_usd, 10_500_000);
    assert_eq!(events[2].limit_micro_usd, 10_000_000);
    assert_eq!(events[0].window_label, "calendar_month:2026-11-01");
    assert_eq!(events[0].created_at, at("2026-11-10T12:00:00Z"));
    assert!(env.metric(
        r#"omg_cp_alerts_sent_total{channel="webhook",level="exceeded",outcome="sent"} 1"#
    ));

    // Another replica holding the tenant's lock: this one skips it.
    let mut other = env.pool.get().await.unwrap();
    assert!(db::alerts::try_lock_tenant(&mut other, tenant.id)
        .await
        .unwrap());
    assert_eq!(env.evaluate(&tenant).await, Evaluation::Busy);
    db::alerts::unlock_tenant(&mut other, tenant.id)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldown_holds_back_a_new_window_and_defaults_apply() {
    // A one-day rolling window with a two-day cooldown, recipients from the defaults.
    let smtp_dummy = "    emails: [\"ops@example.com\"]\n";
    let env = Env::new(smtp_dummy, vec![], "UTC", "2026-11-10T12:00:00Z").await;
    let tenant = env
        .tenant("globex", "rolling_1d", &[], &[], Some(2 * 86_400))
        .await;
    env.spend(&tenant, 9_000_000, "2026-11-10T11:00:00Z").await;
    let (_, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!(sent, vec![("ops@example.com".to_owned(), "sent")]);
    // Next day: a new window at warning again, but within the cooldown.
    env.clock.set(at("2026-11-11T12:00:00Z"));
    env.spend(&tenant, 9_000_000, "2026-11-11T11:00:00Z").await;
    let (level, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!((level, sent.len()), (BudgetLevel::Warning, 0));
    // Two days after the first: due again.
    env.clock.set(at("2026-11-12T12:00:01Z"));
    env.spend(&tenant, 9_000_000, "2026-11-12T11:00:00Z").await;
    let (_, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!(sent, vec![("ops@example.com".to_owned(), "sent")]);
    assert_eq!(env.smtp.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_rolls_over_in_the_reporting_timezone() {
    let allow = "    allow_private_targets: [\"127.0.0.0/8\"]\n";
    let env = Env::new(allow, vec![], "America/New_York", "2026-11-20T15:00:00Z").await;
    let tenant = env
        .tenant(
            "wayne",
            "calendar_month",
            &["bruce@example.com"],
            &[env.hook.url("/h")],
            Some(3600),
        )
        .await;
    env.spend(&tenant, 12_000_000, "2026-11-20T14:00:00Z").await;
    let (level, sent) = outcomes(&env.evaluate(&tenant).await);
    assert_eq!((level, sent.len()), (BudgetLevel::Exceeded, 2));
    // 03:00 UTC on Dec 1 is still Nov 30 in New York: the same window.
    env.clock.set(at("2026-12-01T03:00:00Z"));
    let evaluation = env.evaluate(&tenant).await;
    let Evaluation::Done {
        window_label,
        spent,
        ..
    } = &evaluation
    else {
        panic!("{evaluation:?}")
    };
    assert_eq!(window_label, "calendar_month:2026-11-01");
    assert_eq!(*spent, 12_000_000);
    assert!(outcomes(&evaluation).1.is_empty());
    // December in New York: November's spend no longer counts...
    env.clock.set(at("2026-12-01T09:00:00Z"));
    let evaluation = env.evaluate(&tenant).await;
    assert_eq!(outcomes(&evaluation), (BudgetLevel::Ok, vec![]));
    // ...and December's own spend alerts again in the new window.
    env.spend(&tenant, 11_000_000, "2026-12-01T06:00:00Z").await;
    let evaluation = env.evaluate(&tenant).await;
    let Evaluation::Done {
        window_label,
        spent,
        ..
    } = &evaluation
    else {
        panic!("{evaluation:?}")
    };
    assert_eq!(window_label, "calendar_month:2026-12-01");
    assert_eq!(*spent, 11_000_000);
    assert_eq!(outcomes(&evaluation).1.len(), 2);
    let json = env.hook.requests()[1].json().unwrap();
    assert_eq!(json["window_label"], "calendar_month:2026-12-01");
    assert_eq!(json["resets_at"], "2027-01-01T05:00:00Z");
    let events = env.events(&tenant).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].window_label, "calendar_month:2026-12-01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_alerts_send_nothing() {
    let env = Env::new(
        "    enabled: false\n",
        vec![],
        "UTC",
        "2026-11-10T12:00:00Z",
    )
    .await;
    let tenant = env
        .tenant(
            "stark",
            "calendar_month",
            &["tony@example.com"],
            &[env.hook.url("/h")],
            None,
        )
        .await;
    env.spend(&tenant, 50_000_000, "2026-11-10T11:00:00Z").await;
    assert_eq!(env.evaluate(&tenant).await, Evaluation::Disabled);
    assert_eq!(env.evaluator.sweep().await.unwrap(), 0);
    assert!(env.events(&tenant).await.is_empty());
    assert_eq!(env.smtp.connections(), 0);
    assert!(env.hook.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_alerts_start_no_evaluator() {
    let db = TestDb::create().await;
    let cp = crate::harness::Cp::start_on(db, "budgets:\n  alert:\n    enabled: false\n").await;
    assert!(omg_controlplane::workers::alerts::spawn(
        cp.state.pool.clone(),
        cp.state.config.clone(),
        cp.state.metrics.alerts().clone(),
        watch::channel(false).1
    )
    .unwrap()
    .is_none());
    cp.stop().await;
}

fn usage_event(tenant: Uuid, cost: i64) -> UsageEvent {
    UsageEvent {
        schema_version: 1,
        event_id: Some(Uuid::now_v7()),
        request_id: format!("req-{}", Uuid::now_v7().simple()),
        started_at: Utc::now().to_rfc3339(),
        tenant_id: Some(tenant),
        key_id: None,
        user_id: None,
        alias: Some("gpt-4o".to_owned()),
        provider: Some("openai".to_owned()),
        deployment: None,
        endpoint: "chat.completions".to_owned(),
        status: 200,
        error_code: None,
        prompt_tokens: 10,
        completion_tokens: 10,
        total_tokens: 20,
        cached_tokens: 0,
        cache_write_tokens: 0,
        cost_micro_usd: cost,
        latency_ms: 100,
        ttft_ms: None,
        stream: false,
        usage_estimated: false,
        idempotent_replay: false,
        batch_id: None,
        images: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_usage_triggers_an_alert() {
    let env = Env::new(
        "    allow_private_targets: [\"127.0.0.1/32\"]\n",
        vec![],
        "UTC",
        "2026-11-10T12:00:00Z",
    )
    .await;
    let tenant = env
        .tenant(
            "oscorp",
            "calendar_month",
            &["norman@example.com"],
            &[],
            None,
        )
        .await;
    // The evaluator task on the system clock, sweeping only hourly (its first sweep at
    // start finds nothing): the alert must come from the ingest notification.
    let config: GatewayConfig =
        parse_config(&config_yaml(&env.db.url, &alert_yaml(&env.smtp, "", "UTC")));
    let (stop, stopped) = watch::channel(false);
    let options = AlertOptions {
        sweep_interval: Duration::from_secs(3600),
        ..fast_options()
    };
    let (notifier, rx) = queue(options.queue_capacity, env.metrics.alerts());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let evaluator = Evaluator::new(
        env.pool.clone(),
        Arc::new(config),
        options,
        clock,
        env.metrics.alerts().clone(),
        stopped.clone(),
    )
    .unwrap();
    let evaluator = tokio::spawn(evaluator.run(rx));
    let redis_url =
        std::env::var("OMG_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let stream = format!("omg:test:alerts:{}", Uuid::now_v7().simple());
    let ingest = UsageIngest::new(
        env.pool.clone(),
        &redis_url,
        IngestOptions {
            stream: stream.clone(),
            group: USAGE_GROUP.to_owned(),
            consumer: format!("test-{}", Uuid::now_v7().simple()),
            batch_size: 50,
            block: Duration::from_millis(200),
            reclaim_idle: Duration::from_millis(500),
            maintenance_interval: Duration::from_millis(100),
            consumer_expiry: Duration::from_secs(3600),
            max_backoff: Duration::from_millis(200),
            db_timeout: Duration::from_secs(5),
        },
        env.metrics.usage().clone(),
        Arc::new(IngestStatus::new()),
    )
    .unwrap()
    .with_alerts(notifier);
    let ingest = tokio::spawn(ingest.run(stopped));
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for _ in 0..3 {
        let json = serde_json::to_vec(&usage_event(tenant.id, 3_000_000)).unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg(USAGE_FIELD)
            .arg(json)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    wait_for("the alert email", || async {
        !env.smtp.messages().is_empty()
    })
    .await;
    let subject = env.smtp.messages()[0].header("subject").unwrap();
    assert!(
        subject.contains("warning") || subject.contains("exceeded"),
        "{subject}"
    );
    wait_for("the recorded attempt", || async {
        env.events(&tenant)
            .await
            .iter()
            .any(|e| e.outcome == "sent")
    })
    .await;
    assert!(env
        .metrics
        .render()
        .unwrap()
        .contains(r#"omg_cp_alerts_evaluations_total{trigger="ingest"}"#));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), evaluator)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), ingest)
        .await
        .unwrap()
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
}

mod delivery;
