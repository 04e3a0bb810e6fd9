//! What a limits check saw and decided, as the client sees it: the backends' raw answer
//! ([`Raw`]), the state for the response headers ([`Observed`]) and refusals ([`Refusal`]).

use chrono::{DateTime, Utc};
use omg_shared::budget::warning_at;
use omg_shared::counters::{BudgetScope, LimitScope};
use omg_shared::error::ErrorCode;
use omg_shared::money::{format_usd, MicroUsd};

use super::plan::{Plan, RateKind};
use crate::error::ApiError;

/// Which check failed, by index into the plan's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// A per-minute cap; `retry` is `None` when the request can never fit.
    Rate {
        /// Index in `plan.rates`.
        index: usize,
        /// Seconds until it fits.
        retry: Option<u64>,
    },
    /// A parallel cap.
    Parallel {
        /// Index in `plan.parallel`.
        index: usize,
    },
    /// A budget.
    Budget {
        /// Index in `plan.budgets`.
        index: usize,
    },
}

/// What a backend saw, in plan order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw {
    /// The first check that failed.
    pub failed: Option<Failed>,
    /// The backend's clock, Unix seconds.
    pub now: i64,
    /// Per rate: total in the window (after taking), seconds until empty.
    pub rates: Vec<(u64, u64)>,
    /// Per budget: settled spend, open reservations (after taking).
    pub budgets: Vec<(MicroUsd, MicroUsd)>,
}

/// A per-minute cap as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateView {
    /// Per minute.
    pub limit: u64,
    /// Left now.
    pub remaining: u64,
    /// Seconds until the window is empty.
    pub reset_secs: u64,
}

/// A budget as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetView {
    /// Limit of the window.
    pub limit: MicroUsd,
    /// Settled spend.
    pub spent: MicroUsd,
    /// Reserved by requests in flight.
    pub reserved: MicroUsd,
    /// Warning fraction.
    pub threshold: f64,
    /// When spend next drops.
    pub resets_at: DateTime<Utc>,
    /// Window name.
    pub window: String,
}

impl BudgetView {
    /// What can still be reserved.
    pub fn remaining(&self) -> MicroUsd {
        let left = i128::from(self.limit) - self.used();
        MicroUsd::try_from(left.max(0)).unwrap_or(MicroUsd::MAX)
    }

    /// Spend plus reservations, in `i128` so it never wraps.
    fn used(&self) -> i128 {
        i128::from(self.spent) + i128::from(self.reserved)
    }

    /// At or over the warning threshold.
    pub fn warning(&self) -> bool {
        self.used() >= i128::from(warning_at(self.limit, self.threshold))
    }

    /// Nothing more can be reserved.
    pub fn exceeded(&self) -> bool {
        self.used() >= i128::from(self.limit)
    }
}

/// The limit state shown in response headers: the tightest of each kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Requests per minute.
    pub requests: Option<RateView>,
    /// Tokens per minute.
    pub tokens: Option<RateView>,
    /// Budget.
    pub budget: Option<BudgetView>,
}

impl Observed {
    /// The response headers (`x-ratelimit-*`, `x-budget-*`).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(13);
        for (view, limit, remaining, reset) in [
            (
                self.requests,
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ),
            (
                self.tokens,
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ),
        ] {
            if let Some(view) = view {
                out.push((limit, view.limit.to_string()));
                out.push((remaining, view.remaining.to_string()));
                out.push((reset, duration_text(view.reset_secs)));
            }
        }
        if let Some(budget) = &self.budget {
            out.push(("x-budget-limit", format_usd(budget.limit)));
            out.push(("x-budget-spent", format_usd(budget.spent)));
            out.push(("x-budget-reserved", format_usd(budget.reserved)));
            out.push(("x-budget-remaining", format_usd(budget.remaining())));
            out.push(("x-budget-warning", budget.warning().to_string()));
            out.push(("x-budget-exceeded", budget.exceeded().to_string()));
            out.push(("x-budget-window", budget.window.clone()));
            out.push((
                "x-budget-reset",
                budget
                    .resets_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ));
        }
        out
    }
}

/// `90` → `1m30s`, as OpenAI writes reset times.
fn duration_text(seconds: u64) -> String {
    if seconds >= 60 {
        format!("{}m{}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A per-minute cap.
    Rate {
        /// Requests or tokens.
        kind: RateKind,
        /// Whose.
        scope: LimitScope,
        /// Per minute.
        limit: u64,
        /// What the request needed.
        amount: u64,
        /// Seconds until it fits; `None` = never.
        retry: Option<u64>,
    },
    /// A parallel cap.
    Parallel {
        /// Whose.
        scope: LimitScope,
        /// Slots.
        limit: u64,
    },
    /// A budget.
    Budget {
        /// Whose.
        scope: BudgetScope,
        /// Its state.
        view: BudgetView,
        /// The worst-case cost of the request.
        amount: MicroUsd,
    },
    /// Redis unreachable and `on_redis_error: reject`.
    Unavailable,
}

fn scope_text(scope: &LimitScope) -> String {
    match scope {
        LimitScope::Tenant(_) => "your tenant".to_owned(),
        LimitScope::Key { .. } => "this API key".to_owned(),
        LimitScope::Alias(alias) => format!("the model `{alias}` (all tenants)"),
    }
}

impl Refusal {
    /// The label of `omg_limit_rejections_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Rate {
                kind: RateKind::Requests,
                ..
            } => "requests",
            Refusal::Rate {
                kind: RateKind::Tokens,
                ..
            } => "tokens",
            Refusal::Parallel { .. } => "parallel",
            Refusal::Budget { .. } => "budget",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// The client's error.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            Refusal::Rate {
                kind,
                scope,
                limit,
                amount,
                retry,
            } => {
                let (code, unit) = match kind {
                    RateKind::Requests => (ErrorCode::RequestRateLimited, "requests"),
                    RateKind::Tokens => (ErrorCode::TokenRateLimited, "tokens"),
                };
                let mut error = match retry {
                    Some(seconds) => ApiError::new(
                        code,
                        format!(
                            "Rate limit reached for {}: {limit} {unit} per minute. Retry in {seconds}s.",
                            scope_text(scope)
                        ),
                    ),
                    None => ApiError::new(
                        code,
                        format!(
                            "Request too large for {}: it needs up to {amount} tokens (prompt plus `max_tokens`) but the limit is {limit} tokens per minute. Lower `max_tokens` or shorten the prompt.",
                            scope_text(scope)
                        ),
                    ),
                };
                error.retry_after = Some(retry.unwrap_or(60));
                error
            }
            Refusal::Parallel { scope, limit } => {
                let mut error = ApiError::new(
                    ErrorCode::ParallelLimited,
                    format!(
                        "Too many requests in flight for {}: at most {limit} at a time. Retry when one finishes.",
                        scope_text(scope)
                    ),
                );
                error.retry_after = Some(1);
                error
            }
            Refusal::Budget {
                scope,
                view,
                amount,
            } => {
                let whose = match scope {
                    BudgetScope::Tenant(_) => "Your tenant's",
                    BudgetScope::Key { .. } => "This API key's",
                };
                ApiError::new(
                    ErrorCode::BudgetExceeded,
                    format!(
                        "{whose} budget of ${} for the window {} is used up: ${} spent, ${} reserved by requests in flight; this request could cost up to ${}. It resets at {}. Ask an admin to raise the budget, or lower `max_tokens`.",
                        format_usd(view.limit),
                        view.window,
                        format_usd(view.spent),
                        format_usd(view.reserved),
                        format_usd(*amount),
                        view.resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ),
                )
            }
            Refusal::Unavailable => {
                let mut error = ApiError::new(
                    ErrorCode::LimitsUnavailable,
                    "The gateway cannot check rate limits right now (its shared store is unreachable). Retry shortly.",
                );
                error.retry_after = Some(1);
                error
            }
        }
    }
}

/// Reads a backend's answer against the plan.
pub fn interpret(plan: &Plan, raw: &Raw) -> (Observed, Option<Refusal>) {
    let mut observed = Observed::default();
    for (check, (total, reset)) in plan.rates.iter().zip(&raw.rates) {
        let view = RateView {
            limit: check.limit,
            remaining: check.limit.saturating_sub(*total),
            reset_secs: *reset,
        };
        let slot = match check.kind {
            RateKind::Requests => &mut observed.requests,
            RateKind::Tokens => &mut observed.tokens,
        };
        if slot.is_none_or(|current| view.remaining < current.remaining) {
            *slot = Some(view);
        }
    }
    for (check, (spent, reserved)) in plan.budgets.iter().zip(&raw.budgets) {
        let view = BudgetView {
            limit: check.limit,
            spent: *spent,
            reserved: *reserved,
            threshold: check.threshold,
            resets_at: check.span.resets_at,
            window: check.span.label.clone(),
        };
        if observed
            .budget
            .as_ref()
            .is_none_or(|current| view.remaining() < current.remaining())
        {
            observed.budget = Some(view);
        }
    }
    let refusal = raw.failed.and_then(|failed| match failed {
        Failed::Rate { index, retry } => plan.rates.get(index).map(|check| Refusal::Rate {
            kind: check.kind,
            scope: check.scope.clone(),
            limit: check.limit,
            amount: check.amount,
            retry,
        }),
        Failed::Parallel { index } => plan.parallel.get(index).map(|check| Refusal::Parallel {
            scope: check.scope.clone(),
            limit: check.limit,
        }),
        Failed::Budget { index } => {
            let check = plan.budgets.get(index)?;
            let (spent, reserved) = raw.budgets.get(index).copied().unwrap_or_default();
            Some(Refusal::Budget {
                scope: check.scope,
                view: BudgetView {
                    limit: check.limit,
                    spent,
                    reserved,
                    threshold: check.threshold,
                    resets_at: check.span.resets_at,
                    window: check.span.label.clone(),
                },
                amount: check.amount,
            })
        }
    });
    (observed, refusal)
}
