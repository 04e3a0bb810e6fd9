//! Control plane integration tests against the real Postgres (each test in its own database).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods
)]

mod accounts;
mod alerts;
mod audit;
mod auth;
mod batches;
mod binary;
mod bootstrap;
mod catalog;
mod exposure;
mod files;
mod governance;
mod harness;
mod internal;
mod key_owner;
mod key_race;
mod keys;
mod openapi;
mod personal;
mod rbac;
mod reporting;
mod retention;
mod sessions;
mod snapshot;
mod usage;
mod user;
