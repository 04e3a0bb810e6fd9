//! Files (issue 23): the service over real Postgres and a real store (`service.rs`), and
//! `/v1/files` through the internal listener with signed identities (`http.rs`).

mod admin;
mod http;
mod service;
