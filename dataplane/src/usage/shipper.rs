//! Ships the usage spool to the Redis usage stream (`cluster.usage_stream`), at least once.
//!
//! One task reads complete lines from the spool's cursor and sends them with pipelined
//! `XADD <stream> * event <json>` (up to [`ShipperOptions::batch_max_records`] per round trip,
//! no `MAXLEN`: the control plane deletes what it has consumed). After Redis has answered, the
//! cursor moves and is saved, and fully shipped segments are deleted. A crash between the
//! `XADD` and the cursor save sends those records again; the control plane deduplicates on
//! `event_id`.
//!
//! The shipper has its own multiplexed connection made from a [`redis::Client`] (not a pooled
//! one): a batch of hundreds of entries then never queues in front of the request path's
//! Redis calls. When Redis cannot be reached or refuses the entries, records keep being
//! spooled; the shipper retries with exponential backoff (up to
//! [`ShipperOptions::backoff_max`]), logs the outage once at warn and, once it has caught up
//! again, how many records were replayed at info.
//!
//! Wiring: [`Shipper::run`] is the task; [`ShipperHandle`] (from [`Shipper::handle`]) gives
//! its [`ShipperStatus`] for `/healthz` and stops it from synchronous code.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omg_shared::cluster::USAGE_FIELD;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::time::Instant;

use super::handle::{lock, Shared, StoppedGuard};
pub use super::handle::{ShipperHandle, ShipperStatus};
use super::reader::Batch;
use super::spool::{Spool, SpoolReader};
use crate::metrics::Metrics;

/// Tunables of the shipper. The defaults suit production.
#[derive(Debug, Clone)]
pub struct ShipperOptions {
    /// Records per pipelined round trip. Default 500.
    pub batch_max_records: usize,
    /// Bytes read from the spool per round (a longer single record is still read whole).
    /// Default 1 MiB.
    pub batch_max_bytes: usize,
    /// First retry delay after a failure; doubles up to `backoff_max`. Default 100 ms.
    pub backoff_initial: Duration,
    /// Longest retry delay. Default 5 s.
    pub backoff_max: Duration,
    /// Time allowed to connect to Redis. Default 2 s.
    pub connect_timeout: Duration,
    /// Time allowed for Redis to answer a batch. Default 5 s.
    pub response_timeout: Duration,
    /// With nothing to ship, Redis is pinged this often so the status stays true. Default 5 s.
    pub ping_interval: Duration,
    /// Written records are synced to disk at most this long after being written. Default
    /// 100 ms.
    pub sync_interval: Duration,
    /// After the stop signal, time spent shipping what is pending; the rest stays on disk
    /// for the next start. Default 5 s.
    pub drain_timeout: Duration,
}

impl Default for ShipperOptions {
    fn default() -> Self {
        Self {
            batch_max_records: 500,
            batch_max_bytes: 1024 * 1024,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
            sync_interval: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The shipping task. Build it with the reader [`Spool::open`] returned, then `run` it.
pub struct Shipper {
    reader: Arc<Mutex<SpoolReader>>,
    spool: Arc<Spool>,
    client: redis::Client,
    options: ShipperOptions,
    shared: Arc<Shared>,
    /// Test hook: return right after the first `XADD` succeeds, before the cursor is saved.
    #[cfg(test)]
    pub(super) crash_after_send: bool,
}

/// What one round did.
enum Round {
    /// Sent (or skipped) a batch; there may be more.
    Shipped,
    /// Nothing complete to ship.
    Idle,
    /// Something failed; retry after the backoff.
    Failed,
    /// The test hook fired.
    #[cfg(test)]
    Crashed,
}

/// State of one `run`.
struct Session {
    conn: Option<MultiplexedConnection>,
    backoff: Duration,
    last_ok: Option<Instant>,
    last_sync: Instant,
    outage: Option<Instant>,
    replay: Option<Replay>,
    spool_failing: bool,
    sync_failing: bool,
}

/// Records shipped since Redis came back (or since start), until caught up.
struct Replay {
    since: Instant,
    after: &'static str,
    outage: Option<Duration>,
    records: u64,
}

impl Shipper {
    /// A shipper of `reader`'s spool to the stream `stream` (`cluster.usage_stream`) of the
    /// Redis at `client` (`redis::Client::open(redis.url)`).
    pub fn new(
        reader: SpoolReader,
        client: redis::Client,
        stream: &str,
        options: ShipperOptions,
    ) -> Self {
        let spool = reader.spool().clone();
        Self {
            reader: Arc::new(Mutex::new(reader)),
            shared: Arc::new(Shared::new(stream, spool.clone())),
            spool,
            client,
            options,
            #[cfg(test)]
            crash_after_send: false,
        }
    }

    /// Status and stop control, for `/healthz` and the shutdown path.
    pub fn handle(&self) -> ShipperHandle {
        ShipperHandle {
            shared: self.shared.clone(),
        }
    }

    /// Ships until `shutdown` resolves or [`ShipperHandle::shutdown`] is called, then ships
    /// what is pending for at most `drain_timeout` and returns; what is left stays on disk for
    /// the next start. Records written after that are spooled and shipped by the next start.
    /// Pingora's shutdown watch fires before in-flight requests have drained: prefer
    /// [`ShipperHandle::shutdown`] once they have (or pass `std::future::pending()`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = self.shared.clone();
        shared.running.store(true, Ordering::Release);
        *lock(&shared.stopped) = false;
        let _stopped = StoppedGuard(shared.clone());
        let mut stop_requested = shared.stop.subscribe();
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                _ = stop_requested.wait_for(|stop| *stop) => {}
            }
        };
        tokio::pin!(stop);
        let now = Instant::now();
        let mut session = Session {
            conn: None,
            backoff: self.options.backoff_initial,
            last_ok: None,
            last_sync: now,
            outage: None,
            replay: (self.spool.pending_bytes() > 0).then_some(Replay {
                since: now,
                after: "restart",
                outage: None,
                records: 0,
            }),
            spool_failing: false,
            sync_failing: false,
        };
        tracing::info!(
            stream = %shared.stream,
            spool_dir = %self.spool.dir().display(),
            pending_bytes = self.spool.pending_bytes(),
            "usage shipper started"
        );
        loop {
            self.sync_if_due(&mut session, false).await;
            match self.round(&mut session).await {
                Round::Shipped => {
                    tokio::select! {
                        biased;
                        () = &mut stop => break,
                        () = std::future::ready(()) => {}
                    }
                }
                Round::Idle => {
                    self.caught_up(&mut session);
                    let dirty = self.spool.is_dirty();
                    tokio::select! {
                        () = &mut stop => break,
                        () = self.spool.notified() => {}
                        () = tokio::time::sleep(self.options.sync_interval), if dirty => {}
                        () = tokio::time::sleep(self.options.ping_interval) => {}
                    }
                }
                Round::Failed => {
                    let backoff = self.next_backoff(&mut session);
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
                #[cfg(test)]
                Round::Crashed => return,
            }
        }
        self.drain(&mut session).await;
    }

    async fn drain(&self, session: &mut Session) {
        let deadline = Instant::now() + self.options.drain_timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.round(session)).await {
                Ok(Round::Shipped) => {}
                Ok(Round::Failed) => {
                    let backoff = self.next_backoff(session);
                    if Instant::now() + backoff >= deadline {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                }
                Ok(Round::Idle) | Err(_) => break,
                #[cfg(test)]
                Ok(Round::Crashed) => return,
            }
        }
        self.sync_if_due(session, true).await;
        let pending_bytes = self.spool.pending_bytes();
        if pending_bytes > 0 {
            tracing::warn!(
                stream = %self.shared.stream,
                spool_dir = %self.spool.dir().display(),
                pending_bytes,
                "usage shipper stopped with records left in the spool; the next start ships them"
            );
        } else {
            tracing::info!(stream = %self.shared.stream, "usage shipper stopped; every spooled record was shipped");
        }
    }

    /// Reads a batch and ships it; with nothing to ship, keeps the connection checked.
    async fn round(&self, session: &mut Session) -> Round {
        let batch = match self.read().await {
            Ok(batch) => {
                if session.spool_failing {
                    session.spool_failing = false;
                    tracing::info!(spool_dir = %self.spool.dir().display(), "usage spool readable again");
                }
                batch
            }
            Err(error) => {
                self.count_failure(&error.to_string());
                if !session.spool_failing {
                    session.spool_failing = true;
                    tracing::error!(spool_dir = %self.spool.dir().display(), %error, "cannot read the usage spool; retrying");
                }
                return Round::Failed;
            }
        };
        if let Some(batch) = batch.as_ref().filter(|batch| batch.is_empty()) {
            // Blank lines only: nothing to send.
            self.commit(batch).await;
            return Round::Shipped;
        }
        let mut conn = match self.connection(session).await {
            Ok(conn) => conn,
            Err(error) => return self.redis_failed(session, &error),
        };
        let Some(batch) = batch else {
            let due = session
                .last_ok
                .is_none_or(|at| at.elapsed() >= self.options.ping_interval);
            if due {
                if let Err(error) = redis::cmd("PING").exec_async(&mut conn).await {
                    return self.redis_failed(session, &error);
                }
                self.succeeded(session, 0, self.spool.pending_bytes());
            }
            return Round::Idle;
        };
        let mut pipe = redis::pipe();
        for record in batch.records() {
            pipe.cmd("XADD")
                .arg(&self.shared.stream)
                .arg("*")
                .arg(USAGE_FIELD)
                .arg(record)
                .ignore();
        }
        if let Err(error) = pipe.exec_async(&mut conn).await {
            return self.redis_failed(session, &error);
        }
        #[cfg(test)]
        if self.crash_after_send {
            return Round::Crashed;
        }
        let records = batch.len() as u64;
        let backlog = self.spool.pending_bytes();
        self.commit(&batch).await;
        self.shared.shipped.fetch_add(records, Ordering::Relaxed);
        Metrics::global().usage_shipped.inc_by(records);
        self.succeeded(session, records, backlog);
        Round::Shipped
    }

    async fn read(&self) -> io::Result<Option<Batch>> {
        let reader = self.reader.clone();
        let (records, bytes) = (self.options.batch_max_records, self.options.batch_max_bytes);
        tokio::task::spawn_blocking(move || lock(&reader).next_batch(records, bytes))
            .await
            .map_err(io::Error::other)?
    }

    async fn commit(&self, batch: &Batch) {
        let reader = self.reader.clone();
        let (seq, start, end) = (batch.seq, batch.start, batch.end);
        let result =
            tokio::task::spawn_blocking(move || lock(&reader).commit_range(seq, start, end))
                .await
                .map_err(io::Error::other)
                .and_then(|result| result);
        if let Err(error) = result {
            tracing::warn!(
                spool_dir = %self.spool.dir().display(),
                %error,
                "cannot save the usage spool cursor; after a restart these records are sent again (the control plane drops duplicates)"
            );
        }
    }

    async fn connection(&self, session: &mut Session) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(conn) = &session.conn {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.response_timeout));
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let conn = tokio::time::timeout(
            self.options.connect_timeout + self.options.response_timeout,
            connect,
        )
        .await
        .map_err(|_| {
            redis::RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out connecting to Redis",
            ))
        })??;
        session.conn = Some(conn.clone());
        Ok(conn)
    }

    fn redis_failed(&self, session: &mut Session, error: &redis::RedisError) -> Round {
        let message = error.to_string();
        self.count_failure(&message);
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
        {
            session.conn = None;
        }
        self.shared.connected.store(false, Ordering::Release);
        if session.outage.is_none() {
            let now = Instant::now();
            session.outage = Some(now);
            *lock(&self.shared.outage_since) = Some(now);
            tracing::warn!(
                stream = %self.shared.stream,
                error = %message,
                pending_bytes = self.spool.pending_bytes(),
                "usage stream unavailable; usage records stay in the spool and are retried"
            );
        } else {
            tracing::debug!(stream = %self.shared.stream, error = %message, "usage stream still failing");
        }
        Round::Failed
    }

    fn count_failure(&self, message: &str) {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        Metrics::global().usage_ship_errors.inc();
        *lock(&self.shared.last_error) = Some(message.to_owned());
    }

    /// Redis answered; `records` were shipped out of `backlog_bytes` pending before.
    fn succeeded(&self, session: &mut Session, records: u64, backlog_bytes: u64) {
        session.backoff = self.options.backoff_initial;
        session.last_ok = Some(Instant::now());
        self.shared.connected.store(true, Ordering::Release);
        *lock(&self.shared.last_error) = None;
        if let Some(since) = session.outage.take() {
            *lock(&self.shared.outage_since) = None;
            let outage = since.elapsed();
            tracing::info!(
                stream = %self.shared.stream,
                outage_ms = outage.as_millis() as u64,
                backlog_bytes,
                "usage stream reachable again; replaying the spool"
            );
            session.replay.get_or_insert(Replay {
                since: Instant::now(),
                after: "outage",
                outage: Some(outage),
                records: 0,
            });
        }
        if let Some(replay) = &mut session.replay {
            replay.records += records;
        }
    }

    /// Nothing left to ship: report the end of a replay.
    fn caught_up(&self, session: &mut Session) {
        if session.outage.is_some() {
            return;
        }
        if let Some(replay) = session.replay.take() {
            tracing::info!(
                stream = %self.shared.stream,
                after = replay.after,
                outage_ms = replay.outage.map(|outage| outage.as_millis() as u64),
                replayed = replay.records,
                took_ms = replay.since.elapsed().as_millis() as u64,
                "usage spool replayed; caught up with the usage stream"
            );
        }
    }

    fn next_backoff(&self, session: &mut Session) -> Duration {
        let backoff = session.backoff;
        session.backoff = (backoff * 2).min(self.options.backoff_max);
        backoff
    }

    /// Syncs the spool to disk when something was written at least `sync_interval` ago (or
    /// now, with `force`).
    async fn sync_if_due(&self, session: &mut Session, force: bool) {
        if !self.spool.is_dirty()
            || (!force && session.last_sync.elapsed() < self.options.sync_interval)
        {
            return;
        }
        session.last_sync = Instant::now();
        let spool = self.spool.clone();
        let result = tokio::task::spawn_blocking(move || spool.sync())
            .await
            .map_err(io::Error::other)
            .and_then(|result| result);
        match result {
            Ok(()) if session.sync_failing => {
                session.sync_failing = false;
                tracing::info!(spool_dir = %self.spool.dir().display(), "usage spool syncs to disk again");
            }
            Ok(()) => {}
            Err(error) => {
                if !session.sync_failing {
                    session.sync_failing = true;
                    tracing::error!(
                        spool_dir = %self.spool.dir().display(),
                        %error,
                        "cannot sync the usage spool to disk; a power failure could lose unshipped records"
                    );
                }
            }
        }
    }
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("stream", &self.shared.stream)
            .field("spool", &self.spool)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
