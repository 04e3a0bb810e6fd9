//! Login throttling in sliding windows, checked before any password is hashed:
//! - attempts (not only failures) per client source, so a concurrent burst cannot slip
//!   through while the first verifications run;
//! - failures per client source;
//! - failures per account *and* source, so an anonymous client can lock an account out only
//!   for itself, never for its owner signing in from elsewhere.
//!
//! A source is the client's IPv4 address, or its IPv6 /64 (one subscriber's prefix, trivially
//! rotated within). In-process: with two control-plane replicas each enforces its own window
//! (documented).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use omg_shared::config::LoginThrottleConfig;

/// Timestamps kept per key at most (bounds memory for one hot key).
const MAX_EVENTS_PER_KEY: usize = 1000;
/// Keys kept before stale ones are swept (bounds memory under a spray of accounts).
const MAX_KEYS: usize = 100_000;

/// Sliding-window counters of login attempts and failures.
pub struct LoginThrottle {
    per_account: u32,
    failures_per_source: u32,
    attempts_per_source: u32,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The throttle's unit of a client: an IPv4 address or an IPv6 /64.
pub fn source_of(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => ip.to_owned(),
    }
}

impl LoginThrottle {
    /// A throttle with the limits of `admin.login_throttle`.
    pub fn new(config: &LoginThrottleConfig) -> Self {
        Self {
            per_account: config.max_failures_per_account,
            failures_per_source: config.max_failures_per_ip,
            attempts_per_source: config.max_attempts_per_ip,
            window: config.window,
            events: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, VecDeque<Instant>>) -> R) -> R {
        let mut map = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    /// Drops the key's events older than the window; returns how many remain and the oldest.
    fn recent(
        map: &mut HashMap<String, VecDeque<Instant>>,
        key: &str,
        window: Duration,
    ) -> (usize, Option<Instant>) {
        let Some(times) = map.get_mut(key) else {
            return (0, None);
        };
        while times.front().is_some_and(|t| t.elapsed() > window) {
            times.pop_front();
        }
        let (n, oldest) = (times.len(), times.front().copied());
        if n == 0 {
            map.remove(key);
        }
        (n, oldest)
    }

    fn record(map: &mut HashMap<String, VecDeque<Instant>>, key: String, window: Duration) {
        let times = map.entry(key).or_default();
        times.push_back(Instant::now());
        while times.len() > MAX_EVENTS_PER_KEY {
            times.pop_front();
        }
        if map.len() > MAX_KEYS {
            map.retain(|_, t| t.back().is_some_and(|last| last.elapsed() <= window));
        }
    }

    fn keys(account: &str, ip: &str) -> [String; 3] {
        let source = source_of(ip);
        [
            format!("t:{source}"),
            format!("i:{source}"),
            format!("a:{}|{source}", account.to_lowercase()),
        ]
    }

    /// Admits one login attempt (and counts it), or `Err(retry_after)` when the source is over
    /// its attempts or failures, or this account has failed too often from this source.
    pub fn begin(&self, account: &str, ip: &str) -> Result<(), Duration> {
        let [attempts, failures, account_key] = Self::keys(account, ip);
        let limits = [
            (&attempts, self.attempts_per_source),
            (&failures, self.failures_per_source),
            (&account_key, self.per_account),
        ];
        self.with(|map| {
            let mut retry: Option<Duration> = None;
            for (key, limit) in limits {
                let (n, oldest) = Self::recent(map, key, self.window);
                if n >= limit as usize {
                    let wait =
                        oldest.map_or(self.window, |t| self.window.saturating_sub(t.elapsed()));
                    retry = Some(retry.map_or(wait, |r| r.max(wait)));
                }
            }
            match retry {
                Some(wait) => Err(wait.max(Duration::from_secs(1))),
                None => {
                    Self::record(map, attempts.clone(), self.window);
                    Ok(())
                }
            }
        })
    }

    /// Records a failed attempt.
    pub fn failed(&self, account: &str, ip: &str) {
        let [_, failures, account_key] = Self::keys(account, ip);
        self.with(|map| {
            Self::record(map, failures, self.window);
            Self::record(map, account_key, self.window);
        });
    }

    /// Clears the account's failures from this source after a successful login (the source's
    /// own counters stay).
    pub fn succeeded(&self, account: &str, ip: &str) {
        let [_, _, account_key] = Self::keys(account, ip);
        self.with(|map| {
            map.remove(&account_key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_account: u32, failures: u32, attempts: u32) -> LoginThrottle {
        LoginThrottle::new(&LoginThrottleConfig {
            max_failures_per_account: per_account,
            max_failures_per_ip: failures,
            max_attempts_per_ip: attempts,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn account_failures_lock_only_their_source() {
        let t = throttle(2, 100, 100);
        for _ in 0..2 {
            assert!(t.begin("a@x", "1.1.1.1").is_ok());
            t.failed("A@x", "1.1.1.1");
        }
        assert!(
            t.begin("a@x", "1.1.1.1").is_err(),
            "locked from the failing source"
        );
        assert!(
            t.begin("a@x", "9.9.9.9").is_ok(),
            "the owner elsewhere is not locked out"
        );
        assert!(
            t.begin("b@x", "1.1.1.1").is_ok(),
            "other accounts from that source"
        );
        t.succeeded("a@x", "1.1.1.1");
        assert!(t.begin("a@x", "1.1.1.1").is_ok());
    }

    #[test]
    fn failures_per_source() {
        let t = throttle(100, 2, 100);
        t.failed("a@x", "1.1.1.1");
        t.failed("b@x", "1.1.1.1");
        assert!(t.begin("c@x", "1.1.1.1").is_err());
        assert!(t.begin("c@x", "1.1.1.2").is_ok());
    }

    #[test]
    fn attempts_are_counted_before_any_outcome() {
        let t = throttle(100, 100, 3);
        for _ in 0..3 {
            assert!(t.begin("a@x", "1.1.1.1").is_ok());
        }
        let wait = t.begin("a@x", "1.1.1.1").unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait >= Duration::from_secs(1));
        assert!(t.begin("a@x", "1.1.1.2").is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = throttle(100, 100, 2);
        assert!(t.begin("a@x", "2001:db8:1:2::1").is_ok());
        assert!(t.begin("a@x", "2001:db8:1:2:ffff::9").is_ok());
        assert!(t.begin("a@x", "2001:db8:1:2:abcd::7").is_err(), "same /64");
        assert!(t.begin("a@x", "2001:db8:1:3::1").is_ok(), "another /64");
        assert_eq!(source_of("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(source_of("2001:db8:1:2::1"), "2001:db8:1:2::/64");
    }
}
