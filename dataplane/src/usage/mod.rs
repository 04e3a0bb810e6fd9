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

use omg_shared::usage::{UsageEvent, USAGE_SCHEMA_VERSION};

use crate::flow::meter::Metered;
use crate::metrics::Metrics;

mod handle;
mod reader;
pub mod shipper;
pub mod spool;

#[cfg(test)]
mod record_tests;
#[cfg(test)]
mod tests;

/// The usage record of a request's closing state: the one place it is built.
pub fn record_of(metered: &Metered) -> UsageEvent {
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    UsageEvent {
        schema_version: USAGE_SCHEMA_VERSION,
        event_id: Some(metered.event_id),
        request_id: metered.request_id.clone(),
        started_at: metered
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        tenant_id: metered.tenant_id,
        key_id: metered.key_id,
        user_id: metered.user_id,
        alias: metered.alias.clone(),
        provider: metered
            .target
            .as_ref()
            .map(|t| t.provider.as_str().to_owned()),
        deployment: metered.target.as_ref().map(|t| t.deployment.clone()),
        endpoint: metered.endpoint().to_owned(),
        status: metered.status,
        error_code: metered.error_code.map(str::to_owned),
        prompt_tokens: metered.usage.prompt_tokens,
        completion_tokens: metered.usage.completion_tokens,
        total_tokens: metered.tokens(),
        cached_tokens: metered.usage.cached_tokens,
        cache_write_tokens: metered.usage.cache_write_tokens,
        images: metered.usage.images,
        cost_micro_usd: metered.cost,
        latency_ms: millis(metered.latency),
        ttft_ms: metered.ttft.map(millis),
        stream: metered.stream,
        usage_estimated: metered.usage_estimated,
        idempotent_replay: metered.idempotent_replay,
        batch_id: metered.batch_id.clone(),
    }
}

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
