//! Usage ingestion: the control plane's consumer of the Redis usage stream.
//!
//! Data planes `XADD` one entry per request to `cluster.usage_stream`, field
//! [`USAGE_FIELD`](omg_shared::cluster::USAGE_FIELD) = the
//! [`UsageEvent`](omg_shared::usage::UsageEvent) as JSON. Every control-plane replica reads
//! the stream in the consumer group [`USAGE_GROUP`] under its own consumer name and, per
//! batch: decodes each entry (entries that are not valid usage events become dead letters,
//! `decode.rs`), stores the events and the dead letters in one transaction (`ON CONFLICT DO
//! NOTHING`, so a re-delivered entry changes nothing), and only after the commit
//! acknowledges and deletes the entries (`XACK` + `XDEL` in one `MULTI`), which keeps the
//! stream as long as the backlog.
//!
//! Delivery is at-least-once and storage idempotent: a crash or an error anywhere before the
//! acknowledgement leaves the entries pending, and they are read again — by this consumer
//! (its own pending entries are read first after every failure and reconnection) or, when it
//! died, by another one that claims them once idle for `cluster.usage_reclaim_idle`.
//! Failures back off and retry; nothing is dropped. A Redis or Postgres outage logs one
//! warning when it starts and one line when it ends.

mod decode;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omg_shared::cluster::USAGE_GROUP;
use omg_shared::config::{ClusterConfig, RedisConfig};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use self::status::{IngestHealth, IngestState, IngestStatus};

use crate::cluster::usage_stream::{self, Client, Entry, UsageStream};
use crate::cluster::Connection;
use crate::db::models::{NewDeadLetter, NewRequestRecord};
use crate::db::{self, Pool};
use crate::metrics::UsageMetrics;
use crate::workers::alerts::AlertNotifier;

/// `XAUTOCLAIM` pages per maintenance round (each at most one batch).
const RECLAIM_PAGES: usize = 10;
/// First retry delay after a failure; doubled per consecutive failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// How the consumer runs. [`IngestOptions::from_cluster`] derives it from the config.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The stream (`cluster.usage_stream`).
    pub stream: String,
    /// The consumer group ([`USAGE_GROUP`]).
    pub group: String,
    /// This process's consumer name, unique per process: `<host>-<pid>-<random>`.
    pub consumer: String,
    /// Entries per read and per transaction (`cluster.usage_batch_size`).
    pub batch_size: usize,
    /// How long one `XREADGROUP` waits for new entries (also bounds how long shutdown waits
    /// for the read in progress).
    pub block: Duration,
    /// Entries pending this long with another consumer are claimed
    /// (`cluster.usage_reclaim_idle`).
    pub reclaim_idle: Duration,
    /// How often idle entries are claimed, idle consumers removed and the backlog measured.
    pub maintenance_interval: Duration,
    /// Other consumers idle this long with nothing pending are removed from the group.
    pub consumer_expiry: Duration,
    /// Longest retry delay after failures.
    pub max_backoff: Duration,
    /// Statement timeout of a batch's transaction.
    pub db_timeout: Duration,
}

impl IngestOptions {
    /// The options of `cluster.*`, with a fresh consumer name.
    pub fn from_cluster(cluster: &ClusterConfig) -> Self {
        let reclaim_idle = cluster.usage_reclaim_idle.max(Duration::from_millis(1));
        Self {
            stream: cluster.usage_stream.clone(),
            group: USAGE_GROUP.to_owned(),
            consumer: consumer_name(),
            batch_size: cluster.usage_batch_size.max(1),
            block: Duration::from_secs(1),
            reclaim_idle,
            maintenance_interval: (reclaim_idle / 2)
                .clamp(Duration::from_millis(100), Duration::from_secs(10)),
            consumer_expiry: (reclaim_idle * 4).max(Duration::from_secs(3600)),
            // Below the reclaim delay: a consumer retrying its own pending entries keeps
            // them from looking abandoned.
            max_backoff: (reclaim_idle / 2)
                .clamp(Duration::from_millis(100), Duration::from_secs(5)),
            db_timeout: Duration::from_secs(30),
        }
    }
}

/// `<host>-<pid>-<random>`: unique per process, recognisable in `XINFO CONSUMERS`.
pub fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "controlplane".to_owned());
    let host: String = host
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    )
}

/// What the consumer works with: the database, its metrics and status, and where stored
/// tenants are announced (budget alerts, when given).
pub struct IngestHandles {
    pub pool: Pool,
    pub metrics: UsageMetrics,
    pub status: Arc<IngestStatus>,
    pub alerts: Option<AlertNotifier>,
}

/// Starts the consumer of `redis.url` and `cluster.*` on the current tokio runtime.
/// `Ok(None)` when `redis.url` is not set (no bus: nothing to ingest). It runs until
/// `shutdown` becomes `true` (or its sender is dropped), then finishes the batch in hand and
/// returns. The tenants of each stored batch go to `alerts` when given.
pub fn spawn(
    redis: &RedisConfig,
    cluster: &ClusterConfig,
    handles: IngestHandles,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, String> {
    let Some(url) = &redis.url else {
        return Ok(None);
    };
    let IngestHandles {
        pool,
        metrics,
        status,
        alerts,
    } = handles;
    let mut ingest = UsageIngest::new(
        pool,
        url.expose(),
        IngestOptions::from_cluster(cluster),
        metrics,
        status,
    )?;
    if let Some(alerts) = alerts {
        ingest = ingest.with_alerts(alerts);
    }
    Ok(Some(crate::tasks::spawn_named(
        "usage ingest",
        ingest.run(shutdown),
    )))
}

/// The consumer. Build it with [`UsageIngest::new`] and drive it with [`UsageIngest::run`].
pub struct UsageIngest {
    pool: Pool,
    client: Client,
    /// The stream, group and consumer name of `options`.
    bus: UsageStream,
    options: IngestOptions,
    metrics: UsageMetrics,
    status: Arc<IngestStatus>,
    /// Where the tenants of each stored batch are announced (budget alerts).
    alerts: Option<AlertNotifier>,
    /// The consumer's own connection (blocking reads must not hold a pooled one, and need a
    /// response timeout longer than the block).
    conn: Option<Connection>,
    /// Read this consumer's pending entries (`0`) before new ones (`>`): at start, after a
    /// reconnection and after a failed batch.
    own_pending: bool,
    next_maintenance: Instant,
    failures: u32,
    redis_down_since: Option<Instant>,
    db_down_since: Option<Instant>,
}

/// Why a step failed: the entries in hand stay pending.
#[derive(Debug)]
enum Failure {
    Redis(String),
    Database(String),
}

impl UsageIngest {
    /// A consumer of `redis_url` (not connected yet: [`run`](Self::run) connects and retries).
    pub fn new(
        pool: Pool,
        redis_url: &str,
        options: IngestOptions,
        metrics: UsageMetrics,
        status: Arc<IngestStatus>,
    ) -> Result<Self, String> {
        let client = usage_stream::client(redis_url)?;
        let bus = UsageStream {
            stream: options.stream.clone(),
            group: options.group.clone(),
            consumer: options.consumer.clone(),
        };
        Ok(Self {
            pool,
            client,
            bus,
            options,
            metrics,
            status,
            alerts: None,
            conn: None,
            own_pending: true,
            next_maintenance: Instant::now(),
            failures: 0,
            redis_down_since: None,
            db_down_since: None,
        })
    }

    /// Announces the tenants of every stored batch to the budget alert evaluator (never
    /// waiting: a full queue drops them, and the evaluator's sweep covers them).
    pub fn with_alerts(mut self, alerts: AlertNotifier) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Consumes until `shutdown` is `true` or its sender is dropped; the batch in hand is
    /// finished first (a read in progress ends within `block`).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        self.status.set_consumer(&self.options.consumer);
        tracing::info!(
            stream = %self.options.stream,
            group = %self.options.group,
            consumer = %self.options.consumer,
            batch_size = self.options.batch_size,
            "usage ingestion started"
        );
        while !stopping(&shutdown) {
            match self.step().await {
                Ok(()) => self.failures = 0,
                Err(failure) => {
                    self.failed(failure);
                    let delay = self.backoff();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        self.status.set_state(IngestState::Stopped);
        tracing::info!(consumer = %self.options.consumer, "usage ingestion stopped");
    }

    fn backoff(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = FIRST_BACKOFF.saturating_mul(1u32 << self.failures.min(16).saturating_sub(1));
        let capped = exp.min(self.options.max_backoff);
        // ±20 % jitter, so replicas that failed together do not retry in lockstep.
        capped.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }

    fn failed(&mut self, failure: Failure) {
        // Whatever failed, this consumer's pending entries are read again first.
        self.own_pending = true;
        match failure {
            Failure::Redis(error) => {
                self.conn = None;
                self.metrics.errors.with_label_values(&["redis"]).inc();
                self.status.failed(IngestState::RedisUnavailable, &error);
                if self.redis_down_since.is_none() {
                    self.redis_down_since = Some(Instant::now());
                    tracing::warn!(
                        stream = %self.options.stream,
                        error = %error,
                        "usage stream unavailable: retrying with backoff (data planes keep their records)"
                    );
                } else {
                    tracing::debug!(error = %error, "usage stream still unavailable");
                }
            }
            Failure::Database(error) => {
                self.metrics.errors.with_label_values(&["database"]).inc();
                self.status.failed(IngestState::DatabaseUnavailable, &error);
                if self.db_down_since.is_none() {
                    self.db_down_since = Some(Instant::now());
                    tracing::warn!(
                        error = %error,
                        "storing usage failed: the entries stay pending and are retried with backoff"
                    );
                } else {
                    tracing::debug!(error = %error, "storing usage still fails");
                }
            }
        }
    }

    fn redis_ok(&mut self) {
        if let Some(since) = self.redis_down_since.take() {
            tracing::info!(
                stream = %self.options.stream,
                outage_ms = since.elapsed().as_millis() as u64,
                "usage stream reachable again"
            );
        }
        if self.db_down_since.is_none() {
            self.status.set_state(IngestState::Ok);
        }
    }

    fn db_ok(&mut self) {
        if let Some(since) = self.db_down_since.take() {
            tracing::info!(
                outage_ms = since.elapsed().as_millis() as u64,
                "storing usage works again"
            );
        }
        self.status.set_state(IngestState::Ok);
    }

    /// The consumer's connection, opened (and the group created) when there is none.
    async fn connection(&mut self) -> Result<Connection, Failure> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let (conn, created) = self
            .bus
            .connect(&self.client, self.options.block + Duration::from_secs(5))
            .await
            .map_err(Failure::Redis)?;
        if created {
            tracing::info!(
                stream = %self.options.stream,
                group = %self.options.group,
                "usage consumer group created"
            );
        }
        self.own_pending = true;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// One round: maintenance when due, then one read and its batch.
    async fn step(&mut self) -> Result<(), Failure> {
        let mut conn = self.connection().await?;
        if Instant::now() >= self.next_maintenance {
            // Scheduled before it runs: a failing round is not retried at every step.
            self.next_maintenance = Instant::now() + self.options.maintenance_interval;
            self.maintenance(&mut conn).await?;
        }
        let own = self.own_pending;
        let read = self
            .bus
            .read(&mut conn, own, self.options.batch_size, self.options.block)
            .await;
        let entries = read.map_err(Failure::Redis)?;
        self.redis_ok();
        if own && entries.is_empty() {
            self.own_pending = false;
        }
        self.process(&mut conn, entries).await
    }

    /// Decodes, stores in one transaction, then acknowledges and deletes.
    async fn process(&mut self, conn: &mut Connection, entries: Vec<Entry>) -> Result<(), Failure> {
        if entries.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let Decoded {
            ids,
            records,
            dead_letters,
        } = self.decode(entries);
        let received = records.len();
        let tenants: BTreeSet<Uuid> = records.iter().filter_map(|r| r.tenant_id).collect();
        let outcome = self.store(records, &dead_letters).await?;
        if received + dead_letters.len() > 0 {
            self.db_ok();
        }
        let duplicates = received.saturating_sub(outcome.inserted);
        self.account(&outcome, duplicates, &dead_letters, tenants);
        // Only now, after the commit: acknowledge and drop the entries.
        self.bus
            .ack_and_delete(conn, &ids)
            .await
            .map_err(Failure::Redis)?;
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        self.status.acknowledged();
        tracing::debug!(
            entries = ids.len(),
            inserted = outcome.inserted,
            duplicates,
            dead_lettered = outcome.dead_lettered,
            "usage batch ingested"
        );
        Ok(())
    }

    /// Splits a batch into usage records and dead letters (every entry's id kept, to be
    /// acknowledged); entries deleted from the stream by something else are logged.
    fn decode(&self, entries: Vec<Entry>) -> Decoded {
        let mut decoded = Decoded {
            ids: Vec::with_capacity(entries.len()),
            records: Vec::with_capacity(entries.len()),
            dead_letters: Vec::new(),
        };
        let mut vanished = 0usize;
        for entry in entries {
            match &entry.fields {
                None => vanished += 1,
                Some(fields) => match decode::decode(fields) {
                    Ok(record) => decoded.records.push(record),
                    Err((payload, error)) => {
                        decoded.dead_letters.push(NewDeadLetter {
                            stream: self.options.stream.clone(),
                            entry_id: entry.id.clone(),
                            payload,
                            error,
                        });
                    }
                },
            }
            decoded.ids.push(entry.id);
        }
        if vanished > 0 {
            tracing::warn!(
                stream = %self.options.stream,
                count = vanished,
                "pending usage entries were deleted from the stream by something else before they were ingested"
            );
        }
        decoded
    }

    /// Stores the records and dead letters in one transaction, within the database timeout.
    async fn store(
        &self,
        records: Vec<NewRequestRecord>,
        dead_letters: &[NewDeadLetter],
    ) -> Result<db::usage::BatchOutcome, Failure> {
        if records.is_empty() && dead_letters.is_empty() {
            return Ok(db::usage::BatchOutcome::default());
        }
        let db_timeout = self.options.db_timeout;
        let pool = &self.pool;
        let stored = tokio::time::timeout(db_timeout + Duration::from_secs(5), async {
            let mut db = pool.get().await.map_err(db::DbError::from)?;
            db::usage::ingest_batch(&mut db, records, dead_letters, db_timeout).await
        })
        .await;
        match stored {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(Failure::Database(e.to_string())),
            Err(_) => Err(Failure::Database(format!(
                "storing a usage batch took longer than {} s",
                (db_timeout + Duration::from_secs(5)).as_secs()
            ))),
        }
    }

    /// Logs the dead letters, counts the batch and tells the alert evaluator which tenants
    /// spent.
    fn account(
        &self,
        outcome: &db::usage::BatchOutcome,
        duplicates: usize,
        dead_letters: &[NewDeadLetter],
        tenants: BTreeSet<Uuid>,
    ) {
        for letter in dead_letters {
            tracing::warn!(
                stream = %letter.stream,
                entry_id = %letter.entry_id,
                error = %letter.error,
                "usage entry is not a valid usage event: parked in usage_dead_letters"
            );
        }
        self.metrics.ingested.inc_by(outcome.inserted as u64);
        self.metrics.duplicates.inc_by(duplicates as u64);
        self.metrics
            .dead_lettered
            .inc_by(outcome.dead_lettered as u64);
        self.status
            .stored(outcome.inserted, duplicates, outcome.dead_lettered);
        if outcome.inserted > 0 {
            if let Some(alerts) = &self.alerts {
                alerts.notify(tenants);
            }
        }
    }

    /// Claims idle entries of other consumers, removes long-idle empty consumers, measures
    /// the backlog.
    async fn maintenance(&mut self, conn: &mut Connection) -> Result<(), Failure> {
        self.reclaim(conn).await?;
        self.remove_idle_consumers(conn).await?;
        self.measure(conn).await
    }

    async fn reclaim(&mut self, conn: &mut Connection) -> Result<(), Failure> {
        let mut cursor = "0-0".to_owned();
        for _ in 0..RECLAIM_PAGES {
            let (next, entries, deleted) = self
                .bus
                .autoclaim(
                    conn,
                    self.options.reclaim_idle,
                    &cursor,
                    self.options.batch_size,
                )
                .await
                .map_err(Failure::Redis)?;
            if deleted > 0 {
                tracing::warn!(
                    stream = %self.options.stream,
                    count = deleted,
                    "pending usage entries were deleted from the stream by something else before they were ingested"
                );
            }
            if !entries.is_empty() {
                tracing::info!(
                    stream = %self.options.stream,
                    count = entries.len(),
                    idle_ms = self.options.reclaim_idle.as_millis() as u64,
                    "claimed usage entries left pending by an idle consumer"
                );
                self.metrics.reclaimed.inc_by(entries.len() as u64);
                self.process(conn, entries).await?;
            }
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        Ok(())
    }

    async fn remove_idle_consumers(&mut self, conn: &mut Connection) -> Result<(), Failure> {
        let consumers = self.bus.consumers(conn).await.map_err(Failure::Redis)?;
        let expiry_ms = self.options.consumer_expiry.as_millis();
        for consumer in consumers {
            if consumer.name == self.options.consumer
                || consumer.pending > 0
                || u128::from(consumer.idle_ms) < expiry_ms
            {
                continue;
            }
            let dropped = self
                .bus
                .delete_consumer(conn, &consumer.name)
                .await
                .map_err(Failure::Redis)?;
            if dropped > 0 {
                // It read entries between XINFO and DELCONSUMER: they are still in the
                // stream but no longer pending for anyone.
                tracing::error!(
                    consumer = %consumer.name,
                    dropped,
                    "removed a usage consumer that had just read entries; they stay in the stream unacknowledged"
                );
            } else {
                tracing::info!(
                    consumer = %consumer.name,
                    idle_ms = consumer.idle_ms,
                    "removed an idle usage consumer"
                );
            }
        }
        Ok(())
    }

    async fn measure(&mut self, conn: &mut Connection) -> Result<(), Failure> {
        let (pending, length) = self.bus.backlog(conn).await.map_err(Failure::Redis)?;
        self.metrics
            .pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.metrics
            .stream_length
            .set(i64::try_from(length).unwrap_or(i64::MAX));
        self.status.set_backlog(pending, length);
        Ok(())
    }
}

fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// A batch read off the stream: the ids to acknowledge, the records to store, the entries
/// that are not usage events.
struct Decoded {
    ids: Vec<String>,
    records: Vec<NewRequestRecord>,
    dead_letters: Vec<NewDeadLetter>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn consumer_names_are_unique_and_tidy() {
        let a = consumer_name();
        let b = consumer_name();
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
        assert!(a.contains(&format!("-{}-", std::process::id())));
    }

    #[test]
    fn options_follow_the_config() {
        let opts = IngestOptions::from_cluster(&ClusterConfig::default());
        assert_eq!(opts.max_backoff, Duration::from_secs(5));
        assert_eq!(opts.maintenance_interval, Duration::from_secs(10));
        assert_eq!(opts.consumer_expiry, Duration::from_secs(3600));
        assert!(opts.max_backoff < opts.reclaim_idle);
    }
}
