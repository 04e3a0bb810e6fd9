//! Control plane integration tests against the real Postgres (each test in its own database).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod alerts;
mod audit;
mod auth;
mod binary;
mod bootstrap;
mod catalog;
mod governance;
mod harness;
mod internal;
mod keys;
mod openapi;
mod rbac;
mod snapshot;
mod usage;
