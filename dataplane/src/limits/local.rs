//! In-process limits: the standalone data plane's limiter, and a cluster data plane's
//! fallback while Redis is unreachable (then fed a [`Plan::local_share`]). Same rules as the
//! Redis scripts, under one mutex held for microseconds.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use omg_shared::counters::CounterKeys;
use omg_shared::money::MicroUsd;
use uuid::Uuid;

use super::counter::SlidingCounter;
use super::plan::{Plan, RateKind};
use super::{Ending, Failed, Raw};

#[derive(Default)]
struct State {
    rates: HashMap<String, SlidingCounter>,
    parallel: HashMap<String, HashSet<Uuid>>,
    /// Day counter key → settled micro-USD.
    spend: HashMap<String, MicroUsd>,
    /// Reservation key → lease → micro-USD.
    reservations: HashMap<String, HashMap<Uuid, MicroUsd>>,
    last_sweep: i64,
}

/// The in-process limiter.
#[derive(Default)]
pub struct LocalLimiter {
    state: Mutex<State>,
}

fn rate_key(
    keys: &CounterKeys,
    kind: RateKind,
    scope: &omg_shared::counters::LimitScope,
) -> String {
    match kind {
        RateKind::Requests => keys.requests(scope),
        RateKind::Tokens => keys.tokens(scope),
    }
}

impl LocalLimiter {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters half-written in a way
        // that matters more than refusing every request; keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks `plan` at second `now` and, when `admit` and everything fits, takes it under
    /// `lease`.
    pub fn check(
        &self,
        keys: &CounterKeys,
        plan: &Plan,
        lease: Uuid,
        admit: bool,
        now: i64,
    ) -> Raw {
        let mut state = self.state();
        state.sweep(now);
        let mut raw = Raw {
            now,
            ..Raw::default()
        };
        let mut rates = Vec::with_capacity(plan.rates.len());
        for (index, check) in plan.rates.iter().enumerate() {
            let key = rate_key(keys, check.kind, &check.scope);
            let counter = state.rates.entry(key.clone()).or_default();
            let total = counter.total(now);
            if raw.failed.is_none() && check.amount > 0 {
                match counter.retry_after(now, check.limit, check.amount) {
                    Some(0) => {}
                    retry => raw.failed = Some(Failed::Rate { index, retry }),
                }
            }
            let reset = counter.reset_after(now);
            rates.push((key, total, reset));
        }
        for (index, check) in plan.parallel.iter().enumerate() {
            let key = keys.parallel(&check.scope);
            let held = state.parallel.get(&key).map_or(0, HashSet::len) as u64;
            if raw.failed.is_none() && held >= check.limit {
                raw.failed = Some(Failed::Parallel { index });
            }
        }
        let mut budgets = Vec::with_capacity(plan.budgets.len());
        for (index, check) in plan.budgets.iter().enumerate() {
            let spent = saturating_sum(
                check
                    .span
                    .days
                    .iter()
                    .filter_map(|day| state.spend.get(&keys.spend_day(&check.scope, *day)))
                    .copied(),
            );
            let resv_key = keys.reservations(&check.scope);
            let reserved = state
                .reservations
                .get(&resv_key)
                .map_or(0, |open| saturating_sum(open.values().copied()));
            if raw.failed.is_none() && check.amount > 0 && !fits(spent, reserved, check) {
                raw.failed = Some(Failed::Budget { index });
            }
            budgets.push((resv_key, spent, reserved));
        }

        let take = admit && raw.failed.is_none();
        for ((key, total, reset), check) in rates.into_iter().zip(&plan.rates) {
            if take && check.amount > 0 {
                if let Some(counter) = state.rates.get_mut(&key) {
                    counter.add(now, check.amount);
                }
                raw.rates.push((total.saturating_add(check.amount), 60));
            } else {
                raw.rates.push((total, reset));
            }
        }
        if take {
            for check in &plan.parallel {
                state
                    .parallel
                    .entry(keys.parallel(&check.scope))
                    .or_default()
                    .insert(lease);
            }
        }
        for ((key, spent, reserved), check) in budgets.into_iter().zip(&plan.budgets) {
            if take && check.amount > 0 {
                state
                    .reservations
                    .entry(key)
                    .or_default()
                    .insert(lease, check.amount);
                raw.budgets
                    .push((spent, reserved.saturating_add(check.amount)));
            } else {
                raw.budgets.push((spent, reserved));
            }
        }
        raw
    }

    /// Ends an admission: token reservations corrected to `tokens`, slots freed,
    /// reservations replaced by the actual `cost` on `today`.
    pub fn settle(&self, keys: &CounterKeys, plan: &Plan, end: &Ending, now: i64) {
        let Ending {
            lease,
            second: token_second,
            tokens,
            cost,
            today,
        } = *end;
        let mut state = self.state();
        for check in plan.rates.iter().filter(|r| r.kind == RateKind::Tokens) {
            let delta = i64::try_from(tokens)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(check.amount).unwrap_or(i64::MAX));
            if let Some(counter) = state
                .rates
                .get_mut(&rate_key(keys, check.kind, &check.scope))
            {
                counter.adjust(now, token_second, delta);
            }
        }
        for check in &plan.parallel {
            if let Some(held) = state.parallel.get_mut(&keys.parallel(&check.scope)) {
                held.remove(&lease);
            }
        }
        for check in &plan.budgets {
            if let Some(open) = state.reservations.get_mut(&keys.reservations(&check.scope)) {
                open.remove(&lease);
            }
            if cost > 0 {
                let day = state
                    .spend
                    .entry(keys.spend_day(&check.scope, today))
                    .or_default();
                *day = day.saturating_add(cost);
            }
        }
    }

    /// Adds settled spend to a day counter (start-up: spend recorded before a restart).
    pub fn add_spend(&self, day_key: String, cost: MicroUsd) {
        let mut state = self.state();
        let day = state.spend.entry(day_key).or_default();
        *day = day.saturating_add(cost);
    }

    /// Forgets spend and rate counts (kept: slots and reservations in flight). Used when
    /// Redis is back, so the next outage starts from what Redis then says.
    pub fn forget_counts(&self) {
        let mut state = self.state();
        state.rates.clear();
        state.spend.clear();
    }
}

/// A sum of micro-USD that stays at `i64::MAX` instead of wrapping (negative amounts, which
/// no caller stores, are taken as they are).
pub(super) fn saturating_sum(amounts: impl Iterator<Item = MicroUsd>) -> MicroUsd {
    amounts.fold(0, MicroUsd::saturating_add)
}

/// Whether a budget check still fits: nothing left is refused, and so is an amount that would
/// go over. Computed in `i128`, so no sum can wrap and open the budget.
fn fits(spent: MicroUsd, reserved: MicroUsd, check: &super::plan::BudgetCheck) -> bool {
    let used = i128::from(spent) + i128::from(reserved);
    let limit = i128::from(check.limit);
    used < limit && used + i128::from(check.amount) <= limit
}

impl State {
    /// Drops empty counters once a minute so memory follows the active keys.
    fn sweep(&mut self, now: i64) {
        if now - self.last_sweep < 60 {
            return;
        }
        self.last_sweep = now;
        self.rates.retain(|_, counter| !counter.is_empty(now));
        self.parallel.retain(|_, held| !held.is_empty());
        self.reservations.retain(|_, open| !open.is_empty());
        // Day counters: the key ends with the day; keep 400 days.
        let oldest = chrono::DateTime::from_timestamp(now - 400 * 86_400, 0)
            .map(|t| t.date_naive().to_string())
            .unwrap_or_default();
        self.spend.retain(|key, _| {
            key.rsplit(':')
                .next()
                .is_none_or(|day| day >= oldest.as_str())
        });
    }
}
