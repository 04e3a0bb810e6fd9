//! The live snapshot, swapped atomically; readers never block and never see a half update.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::RuntimeSnapshot;

/// Holds the current [`RuntimeSnapshot`].
#[derive(Debug)]
pub struct SnapshotStore {
    current: ArcSwap<RuntimeSnapshot>,
}

impl SnapshotStore {
    /// A store holding a first snapshot (the data plane serves only once it has one).
    pub fn new(initial: RuntimeSnapshot) -> Self {
        crate::tokens::warm(&initial);
        Self {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// The current snapshot; cheap, lock-free.
    pub fn load(&self) -> Arc<RuntimeSnapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot unless `next` is older than the current one.
    pub fn swap(&self, next: RuntimeSnapshot) -> Result<u64, String> {
        let current = self.current.load();
        if next.version < current.version {
            return Err(format!(
                "refusing snapshot version {} older than the current {}",
                next.version, current.version
            ));
        }
        let version = next.version;
        crate::tokens::warm(&next);
        self.current.store(Arc::new(next));
        // Deployments gone from the catalog stop being tracked.
        crate::routing::HealthRegistry::global().prune();
        Ok(version)
    }
}
