//! Where usage records go. Standalone mode appends one JSON line per request to a file with a
//! single `write(2)` on an `O_APPEND` descriptor ([`JsonlSink`]): the record is in the kernel
//! before the request's ctx is dropped, so neither SIGTERM nor a crash of the process loses it.
//!
//! Cluster mode writes the same lines to a local write-ahead spool ([`spool::Spool`]), which
//! a background task ([`shipper::Shipper`]) ships to the Redis usage stream: a record survives
//! Redis being down and the process being killed, and reaches the stream at least once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use omg_shared::usage::UsageEvent;

use crate::metrics::Metrics;

mod handle;
mod reader;
pub mod shipper;
pub mod spool;

#[cfg(test)]
mod tests;

/// A destination for usage records. `record` never blocks on the network.
pub trait UsageSink: Send + Sync {
    /// Persists one record (or, failing that, logs it so it is not lost silently).
    fn record(&self, event: &UsageEvent);
}

/// A shared sink is a sink (the spool is shared by the proxy and its shipper).
impl<T: UsageSink + ?Sized> UsageSink for Arc<T> {
    fn record(&self, event: &UsageEvent) {
        (**self).record(event);
    }
}

/// Appends JSON lines to a file.
#[derive(Debug)]
pub struct JsonlSink {
    file: File,
    path: PathBuf,
}

impl JsonlSink {
    /// Opens (creating it and its directories) the file for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }
}

impl UsageSink for JsonlSink {
    fn record(&self, event: &UsageEvent) {
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(request_id = %event.request_id, %error, "usage record could not be serialized");
                Metrics::global().usage_write_errors.inc();
                return;
            }
        };
        line.push(b'\n');
        // One write call for the whole line: O_APPEND keeps concurrent lines whole.
        if let Err(error) = (&self.file).write_all(&line) {
            Metrics::global().usage_write_errors.inc();
            tracing::error!(
                path = %self.path.display(),
                %error,
                record = %String::from_utf8_lossy(&line[..line.len() - 1]),
                "usage record could not be written to the usage file; it is logged here instead"
            );
            return;
        }
        Metrics::global().usage_records.inc();
    }
}
