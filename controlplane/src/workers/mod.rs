//! The control plane's long-running tasks, each started by `app::spawn_background` with only
//! the handles it uses: the snapshot publisher (`publisher/`), the usage stream consumer
//! (`usage_ingest/`), the budget alert evaluator (`alerts/`) and the start-up rebuild of the
//! spend counters (`counters.rs`). Their Redis commands are in `cluster/`; `AppState` holds
//! only their handles (`publisher::handle::Publisher`, `usage_ingest::status::IngestStatus`).

pub mod alerts;
pub mod counters;
pub mod publisher;
pub mod usage_ingest;
