//! Unit tests of the limiter's glue: interpretation, headers and the local backend.

use chrono::Utc;
use omg_shared::budget::WindowSpan;
use omg_shared::counters::{BudgetScope, CounterKeys, LimitScope};
use omg_shared::error::ErrorCode;
use omg_shared::money::format_usd;
use omg_shared::snapshot::BudgetWindow;
use uuid::Uuid;

use super::local::LocalLimiter;
use super::plan::{BudgetCheck, ParallelCheck, RateCheck};
use super::*;

fn plan(rpm: u64, parallel: u64, budget: MicroUsd, cost: MicroUsd) -> Plan {
    let tenant = Uuid::from_u128(7);
    Plan {
        rates: vec![RateCheck {
            scope: LimitScope::Tenant(tenant),
            kind: RateKind::Requests,
            limit: rpm,
            amount: 1,
        }],
        parallel: vec![ParallelCheck {
            scope: LimitScope::Tenant(tenant),
            limit: parallel,
        }],
        budgets: vec![BudgetCheck {
            scope: BudgetScope::Tenant(tenant),
            limit: budget,
            threshold: 0.5,
            span: WindowSpan::current(BudgetWindow::CalendarMonth, chrono_tz::Tz::UTC, Utc::now()),
            amount: cost,
        }],
        timezone: None,
    }
}

fn ending(lease: Uuid, cost: MicroUsd, today: chrono::NaiveDate) -> Ending {
    Ending {
        lease,
        second: 1000,
        tokens: 0,
        cost,
        today,
    }
}

#[test]
fn local_backend_enforces_rpm_parallel_and_budget() {
    let keys = CounterKeys::new("t");
    let local = LocalLimiter::default();
    let plan = plan(3, 2, 100, 40);
    let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    assert_eq!(local.check(&keys, &plan, a, true, 1000).failed, None);
    assert_eq!(local.check(&keys, &plan, b, true, 1000).failed, None);
    // Third: parallel cap 2 reached.
    assert_eq!(
        local.check(&keys, &plan, c, true, 1000).failed,
        Some(Failed::Parallel { index: 0 })
    );
    let today = Utc::now().date_naive();
    local.settle(&keys, &plan, &ending(a, 30, today), 1001);
    // Budget: 30 spent + 40 reserved + 40 asked = 110 > 100.
    assert_eq!(
        local.check(&keys, &plan, c, true, 1001).failed,
        Some(Failed::Budget { index: 0 })
    );
    local.settle(&keys, &plan, &ending(b, 10, today), 1002);
    // 40 spent: fits, but this is the third request of the minute.
    let raw = local.check(&keys, &plan, c, true, 1002);
    assert_eq!(raw.failed, None);
    let raw = local.check(&keys, &plan, Uuid::from_u128(4), true, 1003);
    assert!(matches!(
        raw.failed,
        Some(Failed::Rate {
            index: 0,
            retry: Some(57)
        })
    ));
    let (observed, refusal) = interpret(&plan, &raw);
    assert!(matches!(refusal, Some(Refusal::Rate { .. })));
    let budget = observed.budget.unwrap();
    assert_eq!((budget.spent, budget.reserved), (40, 40));
    assert!(budget.warning() && !budget.exceeded());
}

#[test]
fn headers_report_the_tightest_limits() {
    let tenant = Uuid::from_u128(7);
    let observed = Observed {
        requests: Some(RateView {
            limit: 60,
            remaining: 59,
            reset_secs: 90,
        }),
        tokens: None,
        budget: Some(BudgetView {
            limit: 1_000_000,
            spent: 250_000,
            reserved: 50_000,
            threshold: 0.8,
            resets_at: Utc::now(),
            window: "calendar_month:2026-11-01".into(),
        }),
    };
    let headers: std::collections::HashMap<_, _> = observed.headers().into_iter().collect();
    assert_eq!(headers["x-ratelimit-limit-requests"], "60");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "59");
    assert_eq!(headers["x-ratelimit-reset-requests"], "1m30s");
    assert_eq!(headers["x-budget-remaining"], format_usd(700_000));
    assert_eq!(headers["x-budget-warning"], "false");
    assert_eq!(headers["x-budget-exceeded"], "false");
    let refusal = Refusal::Budget {
        scope: BudgetScope::Tenant(tenant),
        view: observed.budget.clone().unwrap(),
        amount: 5,
    };
    let error = refusal.to_api_error();
    assert_eq!(error.code, ErrorCode::BudgetExceeded);
    assert_eq!(error.retry_after, None);
}

/// A reservation of `i64::MAX` (an unbounded `max_tokens` priced at saturation) once made
/// `spent + reserved + amount` wrap negative: the request was admitted and, while it was in
/// flight, every other request of the scope passed the budget check.
#[test]
fn huge_amounts_never_wrap_the_budget_check() {
    let keys = CounterKeys::new("t");
    let local = LocalLimiter::default();
    let today = Utc::now().date_naive();
    let small = plan(1000, 1000, 1_000_000, 600_000);
    let first = Uuid::from_u128(1);
    assert_eq!(local.check(&keys, &small, first, true, 1000).failed, None);
    let huge = plan(1000, 1000, 1_000_000, MicroUsd::MAX);
    assert_eq!(
        local
            .check(&keys, &huge, Uuid::from_u128(2), true, 1000)
            .failed,
        Some(Failed::Budget { index: 0 })
    );
    // Nothing was taken by the refused request: the budget still refuses what is over it.
    let over = plan(1000, 1000, 1_000_000, 400_001);
    assert_eq!(
        local
            .check(&keys, &over, Uuid::from_u128(3), true, 1000)
            .failed,
        Some(Failed::Budget { index: 0 })
    );
    // A budget as large as the type: two near-maximal reservations cannot both fit, and
    // the headers' arithmetic saturates instead of wrapping.
    let roomy_limiter = LocalLimiter::default();
    let roomy = plan(1000, 1000, MicroUsd::MAX, MicroUsd::MAX - 10);
    assert_eq!(
        roomy_limiter
            .check(&keys, &roomy, Uuid::from_u128(4), true, 1000)
            .failed,
        None
    );
    let raw = roomy_limiter.check(&keys, &roomy, Uuid::from_u128(5), true, 1000);
    assert_eq!(raw.failed, Some(Failed::Budget { index: 0 }));
    let (observed, _) = interpret(&roomy, &raw);
    let view = observed.budget.unwrap();
    assert_eq!(view.remaining(), 10);
    assert!(view.warning() && !view.exceeded());
    // Settling huge costs saturates the day counter.
    local.settle(&keys, &small, &ending(first, MicroUsd::MAX, today), 1001);
    local.settle(
        &keys,
        &small,
        &ending(Uuid::from_u128(9), MicroUsd::MAX, today),
        1001,
    );
    let raw = local.check(&keys, &small, Uuid::from_u128(6), true, 1001);
    assert_eq!(raw.failed, Some(Failed::Budget { index: 0 }));
    assert_eq!(raw.budgets[0].0, MicroUsd::MAX);
}

#[test]
fn token_counters_saturate() {
    let mut plan = plan(u64::MAX - 1, 1000, 0, 0);
    plan.budgets.clear();
    plan.rates[0].kind = RateKind::Tokens;
    plan.rates[0].amount = u64::MAX - 1;
    let keys = CounterKeys::new("t");
    let local = LocalLimiter::default();
    assert_eq!(
        local
            .check(&keys, &plan, Uuid::from_u128(1), true, 1000)
            .failed,
        None
    );
    let raw = local.check(&keys, &plan, Uuid::from_u128(2), true, 1000);
    assert!(matches!(raw.failed, Some(Failed::Rate { index: 0, .. })));
}

/// Amounts stay below what the Redis scripts' Lua writes in exponent form.
#[test]
fn charges_are_capped_for_the_redis_scripts() {
    let mut capped = plan(10, 10, MicroUsd::MAX, 0);
    capped.rates[0].kind = RateKind::Tokens;
    capped.charge(Estimate {
        tokens: u64::MAX,
        cost: MicroUsd::MAX,
    });
    assert_eq!(capped.budgets[0].amount, plan::MAX_AMOUNT);
    assert_eq!(capped.rates[0].amount, plan::MAX_AMOUNT.unsigned_abs());
}
