//! The in-process store: standalone mode, and cluster mode while Redis is unreachable.
//!
//! A key is either pending (a request runs under it; duplicates wait on its signal) or done
//! (the stored answer, until it expires). Bounded: at most [`MAX_ENTRIES`] stored answers
//! and [`MAX_BYTES`] of bodies; beyond either, the oldest answers are evicted early (a retry
//! of an evicted key runs again). Pending keys are not counted: there are at most as many as
//! requests in flight. Expired answers are dropped when met and on every store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;
use uuid::Uuid;

use super::{Fingerprint, Stored};

/// Most stored answers kept in process.
pub const MAX_ENTRIES: usize = 100_000;
/// Most body bytes kept in process (256 MiB).
pub const MAX_BYTES: usize = 256 * 1024 * 1024;

/// One key of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The tenant.
    pub tenant: Uuid,
    /// SHA-256 of the client's key.
    pub digest: [u8; 32],
}

/// What a look at a key found.
pub enum LocalFound {
    /// Claimed with this token.
    Claimed(u64),
    /// Held by a running request; the receiver's `changed()` returns once it completes or
    /// releases the key.
    Pending(watch::Receiver<()>),
    /// Held or answered for another request.
    Mismatch,
    /// Answered.
    Done(Arc<Stored>),
}

enum Entry {
    Pending {
        fingerprint: Fingerprint,
        token: u64,
        /// Never sent on: dropping it (when the entry is replaced or removed) wakes waiters.
        signal: watch::Sender<()>,
    },
    Done {
        fingerprint: Fingerprint,
        token: u64,
        stored: Arc<Stored>,
        expires: Instant,
    },
}

#[derive(Default)]
struct Map {
    entries: HashMap<Slot, Entry>,
    /// Stored answers in the order they expire (the ttl is fixed): (expiry, slot, token).
    /// Items whose entry was replaced or removed are skipped when they come up.
    order: VecDeque<(Instant, Slot, u64)>,
    /// Stored answers (done entries).
    done: usize,
    /// Their body bytes.
    bytes: usize,
    next_token: u64,
}

/// The in-process store.
pub struct LocalStore {
    map: Mutex<Map>,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::with_bounds(MAX_ENTRIES, MAX_BYTES)
    }
}

impl LocalStore {
    /// A store with other bounds (tests).
    pub fn with_bounds(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: Mutex::new(Map::default()),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        // Nothing here panics while holding the lock; a poisoned map is still consistent.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims `slot` for `fingerprint`, or reports who has it.
    pub fn claim(&self, slot: Slot, fingerprint: Fingerprint, now: Instant) -> LocalFound {
        let mut map = self.lock();
        match map.entries.get(&slot) {
            Some(Entry::Pending {
                fingerprint: held,
                signal,
                ..
            }) => {
                return if *held == fingerprint {
                    LocalFound::Pending(signal.subscribe())
                } else {
                    LocalFound::Mismatch
                };
            }
            Some(Entry::Done {
                fingerprint: held,
                stored,
                expires,
                ..
            }) if *expires > now => {
                return if *held == fingerprint {
                    LocalFound::Done(stored.clone())
                } else {
                    LocalFound::Mismatch
                };
            }
            Some(Entry::Done { .. }) => map.remove(&slot),
            None => {}
        }
        map.next_token += 1;
        let token = map.next_token;
        map.entries.insert(
            slot,
            Entry::Pending {
                fingerprint,
                token,
                signal: watch::channel(()).0,
            },
        );
        LocalFound::Claimed(token)
    }

    /// Stores the answer of the claim `token` until `expires`; `false` if the claim is gone.
    pub fn complete(&self, slot: Slot, token: u64, stored: Stored, expires: Instant) -> bool {
        let mut map = self.lock();
        let fingerprint = match map.entries.get(&slot) {
            Some(Entry::Pending {
                fingerprint,
                token: held,
                ..
            }) if *held == token => *fingerprint,
            _ => return false,
        };
        map.done += 1;
        map.bytes += stored.body.len();
        map.order.push_back((expires, slot, token));
        // Replacing the pending entry drops its signal: waiters wake and find the answer.
        map.entries.insert(
            slot,
            Entry::Done {
                fingerprint,
                token,
                stored: Arc::new(stored),
                expires,
            },
        );
        self.evict(&mut map, Instant::now());
        true
    }

    /// Releases the claim `token` (nothing stored): the next request with the key runs.
    pub fn release(&self, slot: Slot, token: u64) {
        let mut map = self.lock();
        if matches!(map.entries.get(&slot), Some(Entry::Pending { token: held, .. }) if *held == token)
        {
            // Dropping the entry drops its signal: waiters wake and claim it themselves.
            map.entries.remove(&slot);
        }
    }

    /// Drops expired answers, then the oldest ones while over a bound (the newest one stays,
    /// whatever its size).
    fn evict(&self, map: &mut Map, now: Instant) {
        while let Some(&(expires, slot, token)) = map.order.front() {
            let over = map.done > self.max_entries || map.bytes > self.max_bytes;
            if expires > now && !over {
                break;
            }
            if map.done <= 1 && expires > now {
                break;
            }
            map.order.pop_front();
            if matches!(map.entries.get(&slot), Some(Entry::Done { token: held, .. }) if *held == token)
            {
                map.remove(&slot);
            }
        }
    }

    /// Keys held (pending or done).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Map {
    /// Removes an entry, keeping the counts of stored answers right.
    fn remove(&mut self, slot: &Slot) {
        if let Some(Entry::Done { stored, .. }) = self.entries.remove(slot) {
            self.done -= 1;
            self.bytes -= stored.body.len();
        }
    }
}
