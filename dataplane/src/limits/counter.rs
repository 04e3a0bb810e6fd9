//! The sliding 60-second counter both backends use: one bucket per second, the total is the
//! sum of the buckets younger than 60 s. Any 60-second window aligned on seconds holds at
//! most the limit. The Redis scripts (`scripts.rs`) implement the same rules over a hash.

use std::collections::VecDeque;

/// Seconds a rate counter looks back.
pub const WINDOW_SECS: i64 = 60;

/// Counts of the last [`WINDOW_SECS`] seconds.
#[derive(Debug, Default, Clone)]
pub struct SlidingCounter {
    /// (second, amount), oldest first.
    buckets: VecDeque<(i64, u64)>,
}

impl SlidingCounter {
    /// Drops buckets that left the window.
    fn expire(&mut self, now: i64) {
        while self
            .buckets
            .front()
            .is_some_and(|(second, _)| *second <= now - WINDOW_SECS)
        {
            self.buckets.pop_front();
        }
    }

    /// The total within the window.
    pub fn total(&mut self, now: i64) -> u64 {
        self.expire(now);
        self.buckets
            .iter()
            .fold(0, |total, (_, amount)| total.saturating_add(*amount))
    }

    /// Adds to the current second.
    pub fn add(&mut self, now: i64, amount: u64) {
        self.expire(now);
        match self.buckets.back_mut() {
            Some((second, total)) if *second == now => *total = total.saturating_add(amount),
            _ => self.buckets.push_back((now, amount)),
        }
    }

    /// Corrects the bucket of `second` by `delta` (settling a token reservation), if it is
    /// still in the window; never below zero.
    pub fn adjust(&mut self, now: i64, second: i64, delta: i64) {
        self.expire(now);
        if let Some((_, total)) = self.buckets.iter_mut().find(|(s, _)| *s == second) {
            *total = total.saturating_add_signed(delta);
        }
    }

    /// Seconds until `amount` more fits under `limit` (0 = now), or `None` if it never can.
    pub fn retry_after(&mut self, now: i64, limit: u64, amount: u64) -> Option<u64> {
        if amount > limit {
            return None;
        }
        let mut total = self.total(now);
        if total.saturating_add(amount) <= limit {
            return Some(0);
        }
        for (second, bucket) in &self.buckets {
            total = total.saturating_sub(*bucket);
            if total.saturating_add(amount) <= limit {
                return Some(
                    u64::try_from(second + WINDOW_SECS - now)
                        .unwrap_or(1)
                        .max(1),
                );
            }
        }
        Some(u64::try_from(WINDOW_SECS).unwrap_or(60))
    }

    /// Seconds until the counter is empty again.
    pub fn reset_after(&mut self, now: i64) -> u64 {
        self.expire(now);
        self.buckets.back().map_or(0, |(second, _)| {
            u64::try_from(second + WINDOW_SECS - now).unwrap_or(0)
        })
    }

    /// Whether nothing is counted (the entry can be dropped).
    pub fn is_empty(&mut self, now: i64) -> bool {
        self.expire(now);
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_the_last_sixty_seconds() {
        let mut counter = SlidingCounter::default();
        counter.add(100, 3);
        counter.add(100, 2);
        counter.add(130, 1);
        assert_eq!(counter.total(130), 6);
        assert_eq!(counter.total(159), 6);
        assert_eq!(counter.total(160), 1);
        assert_eq!(counter.total(190), 0);
    }

    #[test]
    fn retry_after_frees_the_oldest_buckets_first() {
        let mut counter = SlidingCounter::default();
        counter.add(100, 5);
        counter.add(110, 5);
        assert_eq!(counter.retry_after(115, 10, 1), Some(45));
        assert_eq!(counter.retry_after(115, 10, 6), Some(55));
        assert_eq!(counter.retry_after(115, 10, 11), None);
        assert_eq!(counter.retry_after(161, 10, 5), Some(0));
        assert_eq!(counter.reset_after(115), 55);
    }

    #[test]
    fn settling_adjusts_the_reserved_second() {
        let mut counter = SlidingCounter::default();
        counter.add(100, 500);
        counter.adjust(101, 100, -450);
        assert_eq!(counter.total(101), 50);
        counter.adjust(101, 100, -100);
        assert_eq!(counter.total(101), 0);
        counter.adjust(200, 100, 10);
        assert_eq!(counter.total(200), 0);
    }

    proptest! {
        /// Admitting only what fits never lets any 60-second window exceed the limit.
        #[test]
        fn admitted_never_exceeds_the_limit(
            arrivals in proptest::collection::vec((0i64..3, 1u64..5), 1..400),
            limit in 1u64..50,
        ) {
            let mut counter = SlidingCounter::default();
            let mut now = 0;
            let mut admitted: Vec<(i64, u64)> = Vec::new();
            for (step, amount) in arrivals {
                now += step;
                if counter.retry_after(now, limit, amount) == Some(0) {
                    counter.add(now, amount);
                    admitted.push((now, amount));
                }
            }
            for (start, _) in &admitted {
                let in_window: u64 = admitted
                    .iter()
                    .filter(|(t, _)| *t >= *start && *t < start + WINDOW_SECS)
                    .map(|(_, a)| a)
                    .sum();
                prop_assert!(in_window <= limit);
            }
        }
    }
}
