//! Names of the shared limit and spend counters in Redis (cluster mode).
//!
//! Data planes read and write them in one Lua script per request (before: check and
//! reserve; after: settle); the control plane rebuilds the spend counters from Postgres.
//! Every key of a tenant carries the hash tag `{t:<tenant>}` so one request's keys stay
//! together; per-alias counters carry `{m:<alias>}`.
//!
//! | Key | Type | Holds |
//! |-----|------|-------|
//! | `<p>:{t:T}:rpm:t`, `<p>:{t:T}:rpm:k:K` | hash second → count | requests in the last 60 s |
//! | `<p>:{t:T}:tpm:t`, `<p>:{t:T}:tpm:k:K` | hash second → tokens | tokens in the last 60 s |
//! | `<p>:{m:A}:rpm`, `<p>:{m:A}:tpm` | as above | per-alias caps |
//! | `<p>:{t:T}:par:t`, `<p>:{t:T}:par:k:K` | zset lease → expiry ms | parallel slots |
//! | `<p>:{t:T}:spend:t:DAY`, `<p>:{t:T}:spend:k:K:DAY` | integer micro-USD | settled spend of a local day |
//! | `<p>:{t:T}:resv:t`, `<p>:{t:T}:resv:k:K` | hash lease → micro-USD | open reservations |
//! | `<p>:{t:T}:resx:t`, `<p>:{t:T}:resx:k:K` | zset lease → expiry ms | their expiries |
//! | `<p>:dataplanes` | zset instance → last beat ms | live data planes |
//! | `<p>:{t:T}:idem:H` | hash (state, fp, owner, status, ctype, body) | an `Idempotency-Key` (H: hex SHA-256 of it) |

use chrono::NaiveDate;
use uuid::Uuid;

/// How long a day's spend counter is kept: longer than the longest window (366 days).
pub const SPEND_DAY_TTL_SECS: u64 = 400 * 24 * 3600;

/// A data plane counts as live while its last heartbeat is younger than this.
pub const DATAPLANE_LIVE_MS: i64 = 30_000;

/// Whose budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    /// A tenant's budget.
    Tenant(Uuid),
    /// A key's own budget.
    Key {
        /// Its tenant.
        tenant: Uuid,
        /// The key.
        key: Uuid,
    },
}

impl BudgetScope {
    fn tenant(&self) -> Uuid {
        match self {
            Self::Tenant(tenant) | Self::Key { tenant, .. } => *tenant,
        }
    }

    fn suffix(&self) -> String {
        match self {
            Self::Tenant(_) => "t".to_owned(),
            Self::Key { key, .. } => format!("k:{key}"),
        }
    }
}

/// Whose rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitScope {
    /// All keys of a tenant.
    Tenant(Uuid),
    /// One key.
    Key {
        /// Its tenant.
        tenant: Uuid,
        /// The key.
        key: Uuid,
    },
    /// One model alias, over all tenants.
    Alias(String),
}

/// The counter names under one prefix (`cluster.counter_prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterKeys {
    prefix: String,
}

impl CounterKeys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    fn scoped(&self, scope: &LimitScope, what: &str) -> String {
        match scope {
            LimitScope::Tenant(tenant) => format!("{}:{{t:{tenant}}}:{what}:t", self.prefix),
            LimitScope::Key { tenant, key } => {
                format!("{}:{{t:{tenant}}}:{what}:k:{key}", self.prefix)
            }
            LimitScope::Alias(alias) => format!("{}:{{m:{alias}}}:{what}", self.prefix),
        }
    }

    /// Requests of the last 60 s.
    pub fn requests(&self, scope: &LimitScope) -> String {
        self.scoped(scope, "rpm")
    }

    /// Tokens of the last 60 s.
    pub fn tokens(&self, scope: &LimitScope) -> String {
        self.scoped(scope, "tpm")
    }

    /// Parallel leases.
    pub fn parallel(&self, scope: &LimitScope) -> String {
        self.scoped(scope, "par")
    }

    /// Settled spend of one local day.
    pub fn spend_day(&self, scope: &BudgetScope, day: NaiveDate) -> String {
        format!(
            "{}:{{t:{}}}:spend:{}:{day}",
            self.prefix,
            scope.tenant(),
            scope.suffix()
        )
    }

    /// Open reservations (lease → micro-USD).
    pub fn reservations(&self, scope: &BudgetScope) -> String {
        format!(
            "{}:{{t:{}}}:resv:{}",
            self.prefix,
            scope.tenant(),
            scope.suffix()
        )
    }

    /// Expiries of the open reservations (lease → Unix ms).
    pub fn reservation_expiries(&self, scope: &BudgetScope) -> String {
        format!(
            "{}:{{t:{}}}:resx:{}",
            self.prefix,
            scope.tenant(),
            scope.suffix()
        )
    }

    /// Live data planes (instance → last heartbeat, Unix ms).
    pub fn dataplanes(&self) -> String {
        format!("{}:dataplanes", self.prefix)
    }

    /// One `Idempotency-Key` of a tenant; `digest` is the hex SHA-256 of the client's key
    /// (client text never becomes part of a Redis name).
    pub fn idempotency(&self, tenant: Uuid, digest: &str) -> String {
        format!("{}:{{t:{tenant}}}:idem:{digest}", self.prefix)
    }

    /// One used nonce of the internal channel's identity header (32 hex digits, checked by
    /// the signature before it names a key): `SET NX` by the control plane that accepts it,
    /// expiring with the identity's window, so a replica never accepts it again.
    pub fn identity_nonce(&self, nonce: &str) -> String {
        format!("{}:nonce:{nonce}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_tenant_share_a_hash_tag() {
        let keys = CounterKeys::new("omg:ctr");
        let tenant = Uuid::from_u128(1);
        let key = Uuid::from_u128(2);
        let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let spend = keys.spend_day(&BudgetScope::Key { tenant, key }, day);
        assert_eq!(
            spend,
            format!("omg:ctr:{{t:{tenant}}}:spend:k:{key}:2026-11-23")
        );
        assert_eq!(
            keys.requests(&LimitScope::Tenant(tenant)),
            format!("omg:ctr:{{t:{tenant}}}:rpm:t")
        );
        assert_eq!(
            keys.tokens(&LimitScope::Alias("gpt-4o".into())),
            "omg:ctr:{m:gpt-4o}:tpm"
        );
        assert_eq!(
            keys.reservations(&BudgetScope::Tenant(tenant)),
            format!("omg:ctr:{{t:{tenant}}}:resv:t")
        );
        assert_eq!(
            keys.idempotency(tenant, "ab12"),
            format!("omg:ctr:{{t:{tenant}}}:idem:ab12")
        );
    }
}
