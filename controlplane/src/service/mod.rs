//! Business logic: validation, transactions, audit. Handlers call these; these call `db`.

pub mod audit;
pub mod bootstrap;
pub mod catalog;
pub mod counters;
pub mod error;
pub mod governance;
pub mod keys;
pub mod mutate;
pub mod personal;
pub mod portal;
pub mod reporting;
pub mod session;
pub mod tenants;
pub mod users;
pub mod validate;

pub use error::Error;
