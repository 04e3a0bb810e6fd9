//! Provider credentials that need I/O to find (environment, files), resolved beside the pure
//! adapters when a snapshot is built, never on the request path.

pub mod aws;
