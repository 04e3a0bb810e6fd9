//! Login throttling: failures counted per account and per client IP in a sliding window.
//! In-process: with two control-plane replicas each enforces its own window (documented).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sliding-window failure counters.
pub struct LoginThrottle {
    per_account: u32,
    per_ip: u32,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// A throttle allowing `per_account` / `per_ip` failures per `window`.
    pub fn new(per_account: u32, per_ip: u32, window: Duration) -> Self {
        Self {
            per_account,
            per_ip,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, VecDeque<Instant>>) -> R) -> R {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    fn recent(map: &mut HashMap<String, VecDeque<Instant>>, key: &str, window: Duration) -> usize {
        let now = Instant::now();
        match map.get_mut(key) {
            Some(times) => {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > window)
                {
                    times.pop_front();
                }
                let n = times.len();
                if n == 0 {
                    map.remove(key);
                }
                n
            }
            None => 0,
        }
    }

    /// `Some(retry_after)` when the account or the IP is over its limit.
    pub fn check(&self, account: &str, ip: &str) -> Option<Duration> {
        let account_key = format!("a:{}", account.to_lowercase());
        let ip_key = format!("i:{ip}");
        self.with(|map| {
            let over_account =
                Self::recent(map, &account_key, self.window) >= self.per_account as usize;
            let over_ip = Self::recent(map, &ip_key, self.window) >= self.per_ip as usize;
            if !(over_account || over_ip) {
                return None;
            }
            let oldest = [&account_key, &ip_key]
                .iter()
                .filter_map(|k| map.get(*k).and_then(|t| t.front().copied()))
                .min()?;
            Some(
                self.window
                    .saturating_sub(oldest.elapsed())
                    .max(Duration::from_secs(1)),
            )
        })
    }

    /// Records a failed attempt.
    pub fn failed(&self, account: &str, ip: &str) {
        let now = Instant::now();
        self.with(|map| {
            for key in [format!("a:{}", account.to_lowercase()), format!("i:{ip}")] {
                let times = map.entry(key).or_default();
                times.push_back(now);
                while times.len() > 1000 {
                    times.pop_front();
                }
            }
            // Bound memory under a spray of distinct accounts.
            if map.len() > 100_000 {
                let window = self.window;
                map.retain(|_, t| t.back().is_some_and(|last| last.elapsed() <= window));
            }
        });
    }

    /// Clears the account's failures after a successful login (the IP's stay).
    pub fn succeeded(&self, account: &str) {
        let key = format!("a:{}", account.to_lowercase());
        self.with(|map| {
            map.remove(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_per_account_and_per_ip() {
        let t = LoginThrottle::new(2, 3, Duration::from_secs(60));
        assert!(t.check("a@x", "1.1.1.1").is_none());
        t.failed("a@x", "1.1.1.1");
        t.failed("A@x", "1.1.1.1");
        assert!(t.check("a@x", "9.9.9.9").is_some(), "account limit");
        assert!(t.check("b@x", "1.1.1.1").is_none());
        t.failed("b@x", "1.1.1.1");
        assert!(t.check("c@x", "1.1.1.1").is_some(), "ip limit");
        t.succeeded("a@x");
        assert!(t.check("a@x", "2.2.2.2").is_none());
    }
}
