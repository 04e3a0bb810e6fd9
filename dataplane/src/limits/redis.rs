//! The shared limiter of cluster mode: the scripts of [`super::scripts`] over one multiplexed
//! connection, reopened after a failure.

use std::time::Duration;

use omg_shared::counters::{CounterKeys, SPEND_DAY_TTL_SECS};
use omg_shared::money::MicroUsd;
use redis::Script;

use crate::redis_script::ScriptConn;
use uuid::Uuid;

use super::plan::{Plan, RateKind};
use super::{scripts, Ending, Failed, Raw};

/// Limits in Redis.
pub struct RedisLimiter {
    redis: ScriptConn,
    admit: Script,
    settle: Script,
    renew: Script,
    add_spend: Script,
}

/// What a settlement needs, kept so it can be retried after an outage.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// Token rate counters and their corrections.
    pub tokens: Vec<(String, i64)>,
    /// Parallel zsets.
    pub parallel: Vec<String>,
    /// Per budget: reservation hash, expiry zset, today's counter, actual cost.
    pub budgets: Vec<(String, String, String, MicroUsd)>,
    /// The lease.
    pub lease: Uuid,
    /// Second the tokens were reserved in.
    pub token_second: i64,
}

impl Settlement {
    /// The settlement of an admission.
    pub fn new(keys: &CounterKeys, plan: &Plan, end: &Ending) -> Self {
        let Ending {
            lease,
            second: token_second,
            tokens,
            cost,
            today,
        } = *end;
        let tokens = plan
            .rates
            .iter()
            .filter(|r| r.kind == RateKind::Tokens && r.amount > 0)
            .map(|r| {
                let delta = i64::try_from(tokens)
                    .unwrap_or(i64::MAX)
                    .saturating_sub(i64::try_from(r.amount).unwrap_or(i64::MAX));
                (keys.tokens(&r.scope), delta)
            })
            .collect();
        Self {
            tokens,
            parallel: plan
                .parallel
                .iter()
                .map(|p| keys.parallel(&p.scope))
                .collect(),
            budgets: plan
                .budgets
                .iter()
                .map(|b| {
                    (
                        keys.reservations(&b.scope),
                        keys.reservation_expiries(&b.scope),
                        keys.spend_day(&b.scope, today),
                        cost,
                    )
                })
                .collect(),
            lease,
            token_second,
        }
    }
}

impl RedisLimiter {
    /// A limiter on `url`; connects lazily.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            redis: ScriptConn::new(url, timeout, "rate_limits.redis_timeout")?,
            admit: Script::new(scripts::ADMIT),
            settle: Script::new(scripts::SETTLE),
            renew: Script::new(scripts::RENEW),
            add_spend: Script::new(scripts::ADD_SPEND),
        })
    }

    /// The admit script.
    pub async fn check(
        &self,
        keys: &CounterKeys,
        plan: &Plan,
        lease: Uuid,
        admit: bool,
        ttl: Duration,
    ) -> Result<Raw, String> {
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .arg(if admit { "1" } else { "0" })
            .arg(lease.to_string())
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(plan.rates.len())
            .arg(if admit { plan.parallel.len() } else { 0 })
            .arg(plan.budgets.len());
        for rate in &plan.rates {
            invocation
                .key(match rate.kind {
                    RateKind::Requests => keys.requests(&rate.scope),
                    RateKind::Tokens => keys.tokens(&rate.scope),
                })
                .arg(rate.limit)
                .arg(rate.amount);
        }
        if admit {
            for parallel in &plan.parallel {
                invocation
                    .key(keys.parallel(&parallel.scope))
                    .arg(parallel.limit);
            }
        }
        for budget in &plan.budgets {
            invocation
                .key(keys.reservations(&budget.scope))
                .key(keys.reservation_expiries(&budget.scope))
                .arg(budget.limit)
                .arg(budget.amount)
                .arg(budget.span.days.len());
            for day in &budget.span.days {
                invocation.key(keys.spend_day(&budget.scope, *day));
            }
        }
        let reply: Vec<i64> = self.redis.run(invocation).await?;
        decode(&reply, plan.rates.len(), plan.budgets.len())
    }

    /// The settle script.
    pub async fn settle(&self, settlement: &Settlement) -> Result<(), String> {
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .arg(settlement.lease.to_string())
            .arg(settlement.token_second)
            .arg(settlement.tokens.len())
            .arg(settlement.parallel.len())
            .arg(settlement.budgets.len())
            .arg(SPEND_DAY_TTL_SECS);
        for (key, delta) in &settlement.tokens {
            invocation.key(key).arg(*delta);
        }
        for key in &settlement.parallel {
            invocation.key(key);
        }
        for (resv, resx, day, cost) in &settlement.budgets {
            invocation.key(resv).key(resx).key(day).arg(*cost);
        }
        self.redis.run::<i64>(invocation).await.map(|_| ())
    }

    /// Renews `leases` (zset, lease), keeps `alive` keys, beats the heart of `instance`.
    pub async fn renew(
        &self,
        keys: &CounterKeys,
        instance: &str,
        ttl: Duration,
        leases: &[(String, Uuid)],
        alive: &[String],
    ) -> Result<(), String> {
        let mut invocation = self.renew.prepare_invoke();
        invocation
            .key(keys.dataplanes())
            .arg(instance)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(leases.len());
        for (zset, lease) in leases {
            invocation.key(zset).arg(lease.to_string());
        }
        for key in alive {
            invocation.key(key);
        }
        self.redis.run::<i64>(invocation).await.map(|_| ())
    }

    /// Adds spend settled locally during an outage.
    pub async fn add_spend(&self, spend: &[(String, MicroUsd)]) -> Result<(), String> {
        if spend.is_empty() {
            return Ok(());
        }
        let mut invocation = self.add_spend.prepare_invoke();
        invocation.arg(SPEND_DAY_TTL_SECS);
        for (key, amount) in spend {
            invocation.key(key).arg(*amount);
        }
        self.redis.run::<i64>(invocation).await.map(|_| ())
    }
}

/// Reads the admit script's reply.
fn decode(reply: &[i64], rates: usize, budgets: usize) -> Result<Raw, String> {
    if reply.len() != 4 + 2 * rates + 2 * budgets {
        return Err(format!(
            "unexpected limits script reply of {} values (another gateway version on this Redis prefix?)",
            reply.len()
        ));
    }
    let index = usize::try_from(reply[1] - 1).unwrap_or(0);
    let retry = u64::try_from(reply[2]).ok();
    let failed = match reply[0] {
        0 => None,
        1 => Some(Failed::Rate { index, retry }),
        2 => Some(Failed::Parallel { index }),
        _ => Some(Failed::Budget { index }),
    };
    let mut at = 4;
    let mut raw = Raw {
        failed,
        now: reply[3],
        ..Raw::default()
    };
    for _ in 0..rates {
        raw.rates.push((
            u64::try_from(reply[at]).unwrap_or(0),
            u64::try_from(reply[at + 1]).unwrap_or(0),
        ));
        at += 2;
    }
    for _ in 0..budgets {
        raw.budgets.push((reply[at], reply[at + 1]));
        at += 2;
    }
    Ok(raw)
}
