//! Per-process guards of the sign-in path: the cache of live sessions that access tokens are
//! checked against, and the bound on concurrent password verifications.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

/// How long a session found live may be trusted without asking Postgres again. A session
/// revoked by another control-plane replica stops working here within this bound; one
/// revoked by this process stops at once (it is forgotten locally).
pub const SESSION_CHECK_TTL: Duration = Duration::from_secs(5);
/// Sessions remembered at most (the cache is cleared of stale entries, then emptied, when
/// full: a miss only costs a query).
const SESSION_CACHE_CAPACITY: usize = 10_000;

/// Sessions (refresh-token families) recently seen live, with their user.
pub struct SessionCache {
    ttl: Duration,
    capacity: usize,
    live: Mutex<HashMap<Uuid, (Uuid, Instant)>>,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self::new(SESSION_CHECK_TTL, SESSION_CACHE_CAPACITY)
    }
}

impl SessionCache {
    /// A cache trusting an entry for `ttl`, holding at most `capacity`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            live: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Uuid, (Uuid, Instant)>) -> R) -> R {
        let mut map = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    /// Whether `session` of `user` was seen live less than the TTL ago.
    pub fn is_fresh(&self, session: Uuid, user: Uuid) -> bool {
        self.with(|map| {
            map.get(&session)
                .is_some_and(|(owner, at)| *owner == user && at.elapsed() < self.ttl)
        })
    }

    /// Records that `session` of `user` was just found live.
    pub fn remember(&self, session: Uuid, user: Uuid) {
        let ttl = self.ttl;
        let capacity = self.capacity;
        self.with(|map| {
            if map.len() >= capacity {
                map.retain(|_, (_, at)| at.elapsed() < ttl);
                if map.len() >= capacity {
                    map.clear();
                }
            }
            map.insert(session, (user, Instant::now()));
        });
    }

    /// Forgets a session this process just ended.
    pub fn forget(&self, session: Uuid) {
        self.with(|map| {
            map.remove(&session);
        });
    }

    /// Forgets every session of a user whose sessions this process just ended.
    pub fn forget_user(&self, user: Uuid) {
        self.with(|map| map.retain(|_, (owner, _)| *owner != user));
    }
}

/// How long a login waits for a verification slot before answering 503.
const VERIFICATION_WAIT: Duration = Duration::from_secs(10);

/// The bound on concurrent argon2 verifications (one per core): a burst of logins queues
/// here instead of occupying every blocking thread.
pub struct Verifications {
    permits: Semaphore,
    waiting: AtomicUsize,
}

impl Default for Verifications {
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

impl Verifications {
    /// At most `n` verifications at once.
    pub fn new(n: usize) -> Self {
        Self {
            permits: Semaphore::new(n.max(1)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A slot, or `None` after waiting too long.
    pub async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = tokio::time::timeout(VERIFICATION_WAIT, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.ok().and_then(Result::ok)
    }

    /// Every slot, held until the permit is dropped (tests: to hold logins at the gate).
    pub async fn acquire_all(&self) -> Option<SemaphorePermit<'_>> {
        let n = u32::try_from(self.permits.available_permits()).ok()?;
        self.permits.acquire_many(n).await.ok()
    }

    /// How many logins wait for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cache_trusts_for_the_ttl_and_forgets() {
        let cache = SessionCache::new(Duration::from_secs(60), 2);
        let (s1, s2, s3, u1, u2) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        assert!(!cache.is_fresh(s1, u1));
        cache.remember(s1, u1);
        assert!(cache.is_fresh(s1, u1));
        assert!(!cache.is_fresh(s1, u2), "bound to its user");
        cache.forget(s1);
        assert!(!cache.is_fresh(s1, u1));
        cache.remember(s1, u1);
        cache.remember(s2, u2);
        cache.forget_user(u1);
        assert!(!cache.is_fresh(s1, u1));
        assert!(cache.is_fresh(s2, u2));
        cache.remember(s1, u1);
        cache.remember(s3, u1);
        assert!(cache.with(|m| m.len()) <= 2, "bounded");

        let expired = SessionCache::new(Duration::ZERO, 10);
        expired.remember(s1, u1);
        assert!(!expired.is_fresh(s1, u1), "never trusted past the TTL");
    }

    #[tokio::test]
    async fn verifications_are_bounded() {
        let v = Verifications::new(2);
        let a = v.acquire().await;
        let b = v.acquire().await;
        assert!(a.is_some() && b.is_some());
        assert_eq!(v.permits.available_permits(), 0);
        drop(a);
        assert!(v.acquire().await.is_some());
    }
}
