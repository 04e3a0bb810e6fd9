//! Shared limits and budgets against a real Redis: several governors on one counter prefix
//! stand for several data planes. Each test uses its own prefix (or its own private
//! `redis-server` when it stops Redis), so tests run in parallel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use omg_dataplane::limits::plan::{BudgetCheck, ParallelCheck, RateCheck};
use omg_dataplane::limits::{Governor, GovernorSettings, Plan, RateKind, Refusal};
use omg_dataplane::snapshot::Governance;
use omg_mock_upstream::redis_server::PrivateRedis;
use omg_shared::budget::WindowSpan;
use omg_shared::config::RedisFailMode;
use omg_shared::counters::{BudgetScope, CounterKeys, LimitScope};
use omg_shared::snapshot::{BudgetWindow, RateLimitDefaults};
use uuid::Uuid;

const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";

fn settings(prefix: &str, lease_ttl: Duration) -> GovernorSettings {
    GovernorSettings {
        lease_ttl,
        redis_timeout: Duration::from_millis(500),
        counter_prefix: prefix.to_owned(),
    }
}

fn governance(live_dataplanes: u32, on_redis_error: RedisFailMode) -> Governance {
    Governance {
        rate_limits: RateLimitDefaults::default(),
        budget_default: None,
        model_limits: Default::default(),
        timezone: chrono_tz::Tz::UTC,
        live_dataplanes,
        on_redis_error,
    }
}

fn prefix() -> String {
    format!("it-limits:{}", Uuid::now_v7().simple())
}

fn rpm_plan(tenant: Uuid, limit: u64) -> Plan {
    Plan {
        rates: vec![RateCheck {
            scope: LimitScope::Tenant(tenant),
            kind: RateKind::Requests,
            limit,
            amount: 1,
        }],
        ..Plan::default()
    }
}

fn parallel_plan(tenant: Uuid, limit: u64) -> Plan {
    Plan {
        parallel: vec![ParallelCheck {
            scope: LimitScope::Tenant(tenant),
            limit,
        }],
        ..Plan::default()
    }
}

fn budget_plan(tenant: Uuid, limit: i64, amount: i64) -> Plan {
    Plan {
        budgets: vec![BudgetCheck {
            scope: BudgetScope::Tenant(tenant),
            limit,
            threshold: 0.8,
            span: WindowSpan::current(BudgetWindow::CalendarMonth, chrono_tz::Tz::UTC, Utc::now()),
            amount,
        }],
        ..Plan::default()
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_data_planes_share_one_rpm_limit() {
    let prefix = prefix();
    let a = Governor::shared(settings(&prefix, Duration::from_secs(30)), SHARED_REDIS).unwrap();
    let b = Governor::shared(settings(&prefix, Duration::from_secs(30)), SHARED_REDIS).unwrap();
    let gov = governance(2, RedisFailMode::LocalShare);
    let tenant = Uuid::now_v7();
    let mut admitted = 0;
    let mut refused = Vec::new();
    for i in 0..300 {
        let governor = if i % 2 == 0 { &a } else { &b };
        match governor
            .admit(&gov, rpm_plan(tenant, 120), Uuid::now_v7())
            .await
        {
            (_, Ok(admission)) => {
                admitted += 1;
                governor.settle(admission, 0, 0).await;
            }
            (observed, Err(refusal)) => {
                assert_eq!(observed.requests.map(|r| r.remaining), Some(0));
                refused.push(refusal);
            }
        }
    }
    assert_eq!(admitted, 120);
    match &refused[0] {
        Refusal::Rate {
            retry: Some(seconds),
            limit: 120,
            ..
        } => {
            assert!((1..=60).contains(seconds), "{seconds}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!a.redis_down() && !b.redis_down());
}

#[tokio::test]
async fn parallel_slots_are_shared_and_freed_on_settle() {
    let prefix = prefix();
    let a = Governor::shared(settings(&prefix, Duration::from_secs(30)), SHARED_REDIS).unwrap();
    let b = Governor::shared(settings(&prefix, Duration::from_secs(30)), SHARED_REDIS).unwrap();
    let gov = governance(2, RedisFailMode::LocalShare);
    let tenant = Uuid::now_v7();
    let mut held = Vec::new();
    for i in 0..5 {
        let governor = if i % 2 == 0 { &a } else { &b };
        let (_, admission) = governor
            .admit(&gov, parallel_plan(tenant, 5), Uuid::now_v7())
            .await;
        held.push((governor.clone(), admission.unwrap()));
    }
    let (_, sixth) = b
        .admit(&gov, parallel_plan(tenant, 5), Uuid::now_v7())
        .await;
    assert!(matches!(sixth, Err(Refusal::Parallel { limit: 5, .. })));
    let (governor, admission) = held.pop().unwrap();
    governor.settle(admission, 0, 0).await;
    let (_, again) = b
        .admit(&gov, parallel_plan(tenant, 5), Uuid::now_v7())
        .await;
    assert!(again.is_ok());
}

#[tokio::test]
async fn budget_holds_under_fifty_concurrent_clients_on_two_data_planes() {
    let prefix = prefix();
    let a = Governor::shared(settings(&prefix, Duration::from_secs(30)), SHARED_REDIS).unwrap();
    let b = Governor::shared(settings(&prefix, Duration::from_secs(30)), SHARED_REDIS).unwrap();
    let gov = Arc::new(governance(2, RedisFailMode::LocalShare));
    let tenant = Uuid::now_v7();
    // $1.00; each request may cost up to 3 cents and costs 2 to 3 cents.
    let limit = 1_000_000;
    let worst = 30_000;
    let mut tasks = Vec::new();
    for client in 0..50u64 {
        let governor = if client % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        let gov = gov.clone();
        tasks.push(tokio::spawn(async move {
            let mut spent = 0;
            loop {
                let plan = budget_plan(tenant, limit, worst);
                match governor.admit(&gov, plan, Uuid::now_v7()).await {
                    (_, Ok(admission)) => {
                        tokio::task::yield_now().await;
                        let cost = 20_000 + (client as i64 * 211) % 10_001;
                        governor.settle(admission, 0, cost).await;
                        spent += cost;
                    }
                    (_, Err(Refusal::Budget { .. })) => return spent,
                    (_, Err(other)) => panic!("{other:?}"),
                }
            }
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert!(total <= limit, "spent {total} > {limit}");
    assert!(total > limit - worst, "stopped early at {total}");
    // The counters agree with what was settled, and nothing stays reserved.
    let keys = CounterKeys::new(&prefix);
    let mut conn = redis::Client::open(SHARED_REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let day = omg_shared::budget::local_day(chrono_tz::Tz::UTC, Utc::now());
    let counted: i64 = redis::cmd("GET")
        .arg(keys.spend_day(&BudgetScope::Tenant(tenant), day))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(counted, total);
    let reserved: Option<i64> = redis::cmd("HGET")
        .arg(keys.reservations(&BudgetScope::Tenant(tenant)))
        .arg("_sum")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(reserved.unwrap_or(0), 0);
}

#[tokio::test]
async fn a_dead_data_planes_leases_and_reservations_expire() {
    let prefix = prefix();
    let ttl = Duration::from_secs(3);
    let gov = governance(1, RedisFailMode::LocalShare);
    let tenant = Uuid::now_v7();
    let plan = || {
        let mut plan = parallel_plan(tenant, 1);
        plan.budgets = budget_plan(tenant, 100, 100).budgets;
        plan
    };
    let dead = Governor::shared(settings(&prefix, ttl), SHARED_REDIS).unwrap();
    let (_, admission) = dead.admit(&gov, plan(), Uuid::now_v7()).await;
    // The data plane dies holding both: nothing settles, nothing renews.
    std::mem::forget(admission.unwrap());
    drop(dead);
    let alive = Governor::shared(settings(&prefix, ttl), SHARED_REDIS).unwrap();
    let (_, refused) = alive.admit(&gov, plan(), Uuid::now_v7()).await;
    assert!(matches!(refused, Err(Refusal::Parallel { .. })));
    let started = Instant::now();
    wait_for("the dead lease to expire", ttl * 3, async || {
        match alive.admit(&gov, plan(), Uuid::now_v7()).await.1 {
            Ok(admission) => {
                alive.settle(admission, 0, 0).await;
                true
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(
        started.elapsed() <= ttl + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn held_leases_are_renewed_past_their_ttl() {
    let prefix = prefix();
    let ttl = Duration::from_secs(3);
    let gov = governance(1, RedisFailMode::LocalShare);
    let tenant = Uuid::now_v7();
    let holder = Governor::shared(settings(&prefix, ttl), SHARED_REDIS).unwrap();
    let renewer = tokio::spawn(holder.clone().run_renewer(std::future::pending()));
    let (_, held) = holder
        .admit(&gov, parallel_plan(tenant, 1), Uuid::now_v7())
        .await;
    let held = held.unwrap();
    let other = Governor::shared(settings(&prefix, ttl), SHARED_REDIS).unwrap();
    // Twice the ttl later the slot is still taken.
    let until = Instant::now() + ttl * 2;
    while Instant::now() < until {
        let (_, refused) = other
            .admit(&gov, parallel_plan(tenant, 1), Uuid::now_v7())
            .await;
        assert!(matches!(refused, Err(Refusal::Parallel { .. })));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    holder.settle(held, 0, 0).await;
    let (_, admitted) = other
        .admit(&gov, parallel_plan(tenant, 1), Uuid::now_v7())
        .await;
    assert!(admitted.is_ok());
    renewer.abort();
}

#[tokio::test]
async fn redis_down_enforces_each_data_planes_share_then_recovers() {
    let mut redis = PrivateRedis::start();
    let prefix = prefix();
    let a = Governor::shared(settings(&prefix, Duration::from_secs(30)), &redis.url()).unwrap();
    let gov = governance(2, RedisFailMode::LocalShare);
    let tenant = Uuid::now_v7();
    // Spend $0.60 of $1.00 while Redis is up.
    let (_, admission) = a
        .admit(
            &gov,
            budget_plan(tenant, 1_000_000, 600_000),
            Uuid::now_v7(),
        )
        .await;
    a.settle(admission.unwrap(), 0, 600_000).await;
    redis.stop();

    // RPM 10 over two data planes: 5 here.
    let mut admitted = 0;
    for _ in 0..20 {
        if let (_, Ok(admission)) = a.admit(&gov, rpm_plan(tenant, 10), Uuid::now_v7()).await {
            admitted += 1;
            a.settle(admission, 0, 0).await;
        }
    }
    assert_eq!(admitted, 5);
    assert!(a.redis_down());
    // Budget: half of the $0.40 left = $0.20 here.
    let mut spent = 0;
    while let (_, Ok(admission)) = a
        .admit(&gov, budget_plan(tenant, 1_000_000, 50_000), Uuid::now_v7())
        .await
    {
        a.settle(admission, 0, 50_000).await;
        spent += 50_000;
        assert!(spent <= 200_000);
    }
    assert_eq!(spent, 200_000);

    // Reject mode answers Unavailable instead.
    let reject = governance(2, RedisFailMode::Reject);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, refused) = a.admit(&reject, rpm_plan(tenant, 10), Uuid::now_v7()).await;
    assert!(matches!(refused, Err(Refusal::Unavailable)));

    // Back: the spend made during the outage reaches Redis through the renewer.
    redis.restart();
    let renewer = tokio::spawn(a.clone().run_renewer(std::future::pending()));
    let keys = CounterKeys::new(&prefix);
    let day = omg_shared::budget::local_day(chrono_tz::Tz::UTC, Utc::now());
    let url = redis.url();
    wait_for(
        "the outage spend to be replayed",
        Duration::from_secs(30),
        async || {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return false;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let spent: Option<i64> = redis::cmd("GET")
                .arg(keys.spend_day(&BudgetScope::Tenant(tenant), day))
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            // The private Redis keeps nothing on disk: only the replayed outage spend is there.
            spent == Some(200_000)
        },
    )
    .await;
    assert!(!a.redis_down());
    renewer.abort();
}

/// The standalone binary: limits in process, headers on every `/v1` answer, 429s in OpenAI's
/// shape.
#[tokio::test]
async fn standalone_rpm_limit_and_headers() {
    use crate::harness::*;
    let upstream = upstream().await;
    let template = format!(
        "{}rate_limits:\n  default_requests_per_minute: 3\nbudgets:\n  default_usd: 0\n",
        config(&upstream, "")
    );
    let gateway = Gateway::start(&template).await;
    let models = gateway
        .client
        .get(format!("{}/v1/models", gateway.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    assert_eq!(models.headers()["x-ratelimit-limit-requests"], "3");
    assert_eq!(models.headers()["x-ratelimit-remaining-requests"], "3");
    for remaining in ["2", "1", "0"] {
        let response = gateway
            .post("/v1/chat/completions")
            .json(&chat("mock-chat", false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", gateway.log());
        assert_eq!(
            response.headers()["x-ratelimit-remaining-requests"],
            remaining
        );
        assert!(response.headers().contains_key("x-ratelimit-limit-tokens"));
    }
    let refused = gateway
        .post("/v1/chat/completions")
        .json(&chat("mock-chat", true))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(!request_id(&refused).is_empty());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "requests");
    // A 404 for an unknown model still tells the client where it stands.
    let unknown = gateway
        .post("/v1/chat/completions")
        .json(&chat("no-such-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["x-ratelimit-remaining-requests"], "0");
}

#[tokio::test]
async fn standalone_budget_is_reserved_out_then_refused() {
    use crate::harness::*;
    let upstream = upstream().await;
    // $0.001 = 1000 micro-USD; each request may cost up to ~205 (100 completion tokens at
    // $0.002/1K plus the prompt) and costs less.
    let template = format!(
        "{}budgets:\n  default_usd: 0.001\n  warning_threshold_perc: 0.5\n",
        config(&upstream, "")
    );
    let gateway = Gateway::start(&template).await;
    let mut admitted = 0;
    let refused = loop {
        let mut body = chat("mock-chat", false);
        body["max_tokens"] = 100.into();
        let response = gateway
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            break response;
        }
        admitted += 1;
        assert!(admitted < 500, "the budget never ran out");
        let headers = response.headers();
        assert_eq!(headers["x-budget-limit"], "0.001000");
        for name in [
            "x-budget-spent",
            "x-budget-remaining",
            "x-budget-warning",
            "x-budget-exceeded",
            "x-budget-window",
            "x-budget-reset",
        ] {
            assert!(headers.contains_key(name), "{name} missing");
        }
    };
    assert!(admitted >= 4, "{admitted}");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-should-retry"], "false");
    assert_eq!(refused.headers()["x-budget-exceeded"], "false");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    // Spend recorded in usage never exceeds the budget.
    let spent: i64 = gateway
        .usage()
        .iter()
        .map(|record| record["cost_micro_usd"].as_i64().unwrap_or(0))
        .sum();
    assert!(spent <= 1000, "{spent}");
}

/// Standalone budgets survive a restart: the spend already in the usage file counts.
#[tokio::test]
async fn standalone_budget_survives_a_restart() {
    use crate::harness::*;
    let upstream = upstream().await;
    let template = format!("{}budgets:\n  default_usd: 0.001\n", config(&upstream, ""));
    let mut gateway = Gateway::start(&template).await;
    let ask = |gateway: &Gateway| {
        let mut body = chat("mock-chat", false);
        body["max_tokens"] = 100.into();
        gateway.post("/v1/chat/completions").json(&body).send()
    };
    // Spend until the spend alone refuses: a 429 while an earlier request's reservation is
    // still unsettled (its worst case held, settling in the background) is asked again.
    loop {
        let answer = ask(&gateway).await.unwrap();
        if answer.status() == 200 {
            continue;
        }
        assert_eq!(answer.status(), 429, "{}", gateway.log());
        let reserved = &answer.headers()["x-budget-reserved"];
        if !reserved
            .to_str()
            .unwrap()
            .chars()
            .any(|c| matches!(c, '1'..='9'))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let usage_file = gateway.usage_path();
    let spent: i64 = gateway
        .usage()
        .iter()
        .map(|r| r["cost_micro_usd"].as_i64().unwrap_or(0))
        .sum();
    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(std::time::Duration::from_secs(20)).await,
        Some(0)
    );
    // Same usage file, new process: still refused, and the headers show the spend.
    let template = template.replace("{DIR}/usage.jsonl", &usage_file.display().to_string());
    let again = Gateway::start(&template).await;
    let refused = ask(&again).await.unwrap();
    assert_eq!(refused.status(), 429, "{}", again.log());
    assert_eq!(
        refused.headers()["x-budget-spent"],
        omg_shared::money::format_usd(spent)
    );
}

/// Token limits reserve the prompt as OpenAI's tokenizer counts it (`server.tokenizer: bpe`,
/// the default), plus OpenAI's per-message framing and `max_tokens`. A Chinese prompt has
/// about one token per character, four times what a characters-per-token rule says: with
/// `heuristic` the same request slips under the limit.
#[tokio::test]
async fn token_limits_reserve_the_tokenized_prompt() {
    use crate::harness::*;
    let upstream = upstream().await;
    let prompt = "网关在请求之前预留令牌".repeat(10);
    for (tokenizer, refused) in [("bpe", true), ("heuristic", false)] {
        let template = format!(
            "{}rate_limits:\n  default_tokens_per_minute: 100\n",
            config(&upstream, &format!("  tokenizer: {tokenizer}"))
        );
        let gateway = Gateway::start(&template).await;
        let body = serde_json::json!({
            "model": "mock-chat",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": prompt}],
        });
        let response = gateway
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        if refused {
            assert_eq!(response.status(), 429, "{}", gateway.log());
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["type"], "tokens", "{body}");
        } else {
            assert_eq!(response.status(), 200, "{}", gateway.log());
        }
    }
    // Exactly: messages are counted one per line ("hello world\n" is 3 tokens in o200k_base),
    // each message adds 3 and priming the answer 3, then `max_tokens`: 19 of 100 taken while
    // the request runs.
    let template = format!(
        "{}rate_limits:\n  default_tokens_per_minute: 100\n",
        config(&upstream, "")
    );
    let gateway = Gateway::start(&template).await;
    let body = serde_json::json!({
        "model": "mock-chat",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hello world"}],
    });
    let response = gateway
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], "81");
}
