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
        let mut failed = None;
        let rates = state.rate_counts(keys, plan, now, &mut failed);
        state.check_slots(keys, plan, &mut failed);
        let budgets = state.budget_counts(keys, plan, &mut failed);
        let take = admit && failed.is_none();
        let rates = state.take_rates(rates, plan, take, now);
        if take {
            state.take_slots(keys, plan, lease);
        }
        let budgets = state.take_budgets(budgets, plan, take.then_some(lease));
        Raw {
            failed,
            now,
            rates,
            budgets,
        }
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

/// A rate check's counter before taking: its key, the total in the window, seconds until
/// it empties.
type RateCount = (String, u64, u64);

/// A budget check's standing before taking: its reservations key, settled spend, open
/// reservations.
type BudgetCount = (String, MicroUsd, MicroUsd);

impl State {
    /// Reads every rate counter of `plan`; the first that cannot take its amount goes into
    /// `failed` (unless an earlier check failed).
    fn rate_counts(
        &mut self,
        keys: &CounterKeys,
        plan: &Plan,
        now: i64,
        failed: &mut Option<Failed>,
    ) -> Vec<RateCount> {
        let mut rates = Vec::with_capacity(plan.rates.len());
        for (index, check) in plan.rates.iter().enumerate() {
            let key = rate_key(keys, check.kind, &check.scope);
            let counter = self.rates.entry(key.clone()).or_default();
            let total = counter.total(now);
            if failed.is_none() && check.amount > 0 {
                match counter.retry_after(now, check.limit, check.amount) {
                    Some(0) => {}
                    retry => *failed = Some(Failed::Rate { index, retry }),
                }
            }
            let reset = counter.reset_after(now);
            rates.push((key, total, reset));
        }
        rates
    }

    /// The first parallel cap of `plan` already full goes into `failed`.
    fn check_slots(&self, keys: &CounterKeys, plan: &Plan, failed: &mut Option<Failed>) {
        for (index, check) in plan.parallel.iter().enumerate() {
            let key = keys.parallel(&check.scope);
            let held = self.parallel.get(&key).map_or(0, HashSet::len) as u64;
            if failed.is_none() && held >= check.limit {
                *failed = Some(Failed::Parallel { index });
            }
        }
    }

    /// Reads every budget of `plan`; the first that cannot take its amount goes into
    /// `failed`.
    fn budget_counts(
        &self,
        keys: &CounterKeys,
        plan: &Plan,
        failed: &mut Option<Failed>,
    ) -> Vec<BudgetCount> {
        let mut budgets = Vec::with_capacity(plan.budgets.len());
        for (index, check) in plan.budgets.iter().enumerate() {
            let spent = saturating_sum(
                check
                    .span
                    .days
                    .iter()
                    .filter_map(|day| self.spend.get(&keys.spend_day(&check.scope, *day)))
                    .copied(),
            );
            let resv_key = keys.reservations(&check.scope);
            let reserved = self
                .reservations
                .get(&resv_key)
                .map_or(0, |open| saturating_sum(open.values().copied()));
            if failed.is_none() && check.amount > 0 && !fits(spent, reserved, check) {
                *failed = Some(Failed::Budget { index });
            }
            budgets.push((resv_key, spent, reserved));
        }
        budgets
    }

    /// Adds the rates' amounts when `take`; returns each rate's total and reset as the
    /// client sees them.
    fn take_rates(
        &mut self,
        rates: Vec<RateCount>,
        plan: &Plan,
        take: bool,
        now: i64,
    ) -> Vec<(u64, u64)> {
        let mut seen = Vec::with_capacity(rates.len());
        for ((key, total, reset), check) in rates.into_iter().zip(&plan.rates) {
            if take && check.amount > 0 {
                if let Some(counter) = self.rates.get_mut(&key) {
                    counter.add(now, check.amount);
                }
                seen.push((total.saturating_add(check.amount), 60));
            } else {
                seen.push((total, reset));
            }
        }
        seen
    }

    /// Takes a slot under `lease` in every parallel cap of `plan`.
    fn take_slots(&mut self, keys: &CounterKeys, plan: &Plan, lease: Uuid) {
        for check in &plan.parallel {
            self.parallel
                .entry(keys.parallel(&check.scope))
                .or_default()
                .insert(lease);
        }
    }

    /// Reserves the budgets' amounts under `lease` when there is one; returns each budget's
    /// spend and reservations as the client sees them.
    fn take_budgets(
        &mut self,
        budgets: Vec<BudgetCount>,
        plan: &Plan,
        lease: Option<Uuid>,
    ) -> Vec<(MicroUsd, MicroUsd)> {
        let mut seen = Vec::with_capacity(budgets.len());
        for ((key, spent, reserved), check) in budgets.into_iter().zip(&plan.budgets) {
            match lease.filter(|_| check.amount > 0) {
                Some(lease) => {
                    self.reservations
                        .entry(key)
                        .or_default()
                        .insert(lease, check.amount);
                    seen.push((spent, reserved.saturating_add(check.amount)));
                }
                None => seen.push((spent, reserved)),
            }
        }
        seen
    }

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
