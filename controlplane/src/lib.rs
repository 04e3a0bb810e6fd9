//! `omg-controlplane`: the source of truth of Open Model Gateway. Owns the Postgres schema and
//! migrations, bootstraps tenants, admins and keys from config, and serves the admin API
//! (`/admin/**`) with RBAC and an append-only audit log. See ARCHITECTURE.md.

// Tests may spawn bare tasks; the product spawns through `tasks` (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod api;
pub mod app;
pub mod auth;
pub mod batches;
pub mod cluster;
pub mod crypto;
pub mod db;
pub mod files;
pub mod internal;
pub mod metrics;
pub mod server;
pub mod service;
pub mod settings;
pub mod state;
pub mod tasks;
pub mod workers;
