//! The data plane's side of the snapshot: a validated, indexed [`RuntimeSnapshot`] built from
//! a `shared::snapshot::Snapshot` and swapped atomically ([`SnapshotStore`]).
//!
//! The request path only ever sees a `RuntimeSnapshot`: O(1) lookups by key prefix and alias,
//! effective model allowlists precomputed per key, mock settings parsed.

mod runtime;
mod store;

pub use runtime::{
    AliasEntry, DeploymentEntry, Governance, KeyEntry, RuntimeSnapshot, TenantEntry,
};
pub use store::SnapshotStore;
