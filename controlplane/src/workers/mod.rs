//! The control plane's long-running tasks, each started by `app::spawn_background` with only
//! the handles it uses: the snapshot publisher (`publisher/`), the usage stream consumer
//! (`usage_ingest/`), the budget alert evaluator (`alerts/`), the start-up rebuild of the
//! spend counters (`counters.rs`), the retention job (`retention.rs`) and the files sweeper
//! (`files_sweep.rs`). Their Redis commands are in `cluster/`; `AppState` holds
//! only their handles (`publisher::handle::Publisher`, `usage_ingest::status::IngestStatus`).

pub mod alerts;
pub mod counters;
pub mod files_sweep;
pub mod publisher;
pub mod retention;
pub mod usage_ingest;
