//! Integration tests: the real `omg-dataplane` binary on ephemeral ports, in front of the

//! scriptable mock upstream (`omg-mock-upstream`) over real HTTP. One test binary, one module
//! per area.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods
)]

mod harness;

mod anthropic;
mod azure;
mod azure_entra;
mod batch_lines;
mod bedrock;
mod cluster;
mod count_tokens;
mod deadlines;
mod errors;
mod faults;
mod huggingface;
mod idempotency;
mod images;
mod lifecycle;
mod limits;
mod limits_bounds;
mod messages;
mod passthrough;
mod routing;
mod streaming;
mod vertex;
