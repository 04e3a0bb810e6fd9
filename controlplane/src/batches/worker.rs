//! The batch worker (`batches.enabled`): every `batches.poll_interval` (sooner when a line
//! finishes) it
//! 1. stops running batches past their expiry (`batch_expired`);
//! 2. fails the unsent lines of cancelling and stopped batches (`batch_cancelled`, the stop
//!    code: `batch_expired`, `budget_exceeded`);
//! 3. finalizes batches with no open line (`finalize.rs`);
//! 4. claims lines of running batches (`FOR UPDATE SKIP LOCKED`, a lease of
//!    `batches.claim_lease`), at most `batches.max_concurrency` in flight per process, and
//!    sends each to `batches.dataplane_url` as the batch's key: a signed identity (audience
//!    `dataplane`, the batch id, the body's SHA-256, a fresh nonce) and `Idempotency-Key:
//!    batch_<id>_<line>`, the same on every send, so a line re-sent after a crash is answered
//!    from the data plane's stored answer.
//!
//! A 429/503 puts the line back to pending and pauses its batch for the time the answer names;
//! so does an unreachable data plane (with backoff). A budget stop fails the line and stops
//! the batch. Answers whose rate-limit headers show less than `batches.headroom_percent` of a
//! limit left pause the batch until the window resets. Pauses are kept in this process's
//! memory (another replica may send meanwhile; each learns from its own answers).
//! Logs start with `batch worker:`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omg_shared::cluster::{sign_identity, BatchLine, Identity, IDENTITY_HEADER};
use omg_shared::config::GatewayConfig;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::answer::{self, Verdict};
use super::finalize;
use crate::db::batches::{self as sql, ActiveBatch, ClaimedLine, LineOutcome};
use crate::db::{DbError, Pool};
use crate::files::service::FileService;
use crate::metrics::BatchMetrics;

/// Sends of one line before a retryable refusal (429/503, unreachable) fails it.
pub const MAX_ATTEMPTS: i32 = 20;

/// Batches looked at per tick.
const ACTIVE_PER_TICK: i64 = 200;
/// Longest a send of one line may take (a safety net: the data plane's own timeouts end an
/// exchange first).
const SEND_TIMEOUT: Duration = Duration::from_secs(900);

/// The longest backoff after the data plane could not be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the worker needs.
pub struct WorkerHandles {
    pub pool: Pool,
    pub config: Arc<GatewayConfig>,
    pub files: Arc<FileService>,
    pub metrics: BatchMetrics,
}

/// The batch a line belongs to, as its send needs it.
#[derive(Debug, Clone)]
struct Owner {
    batch_id: String,
    tenant_id: uuid::Uuid,
    key_id: uuid::Uuid,
    user_id: Option<uuid::Uuid>,
}

/// One worker (one per control plane).
pub struct Worker {
    handles: WorkerHandles,
    /// This process's name on claims: `<host>-<random>`.
    replica: String,
    client: reqwest::Client,
    base: String,
    secret: Vec<u8>,
    slots: Arc<Semaphore>,
    paused: Mutex<HashMap<String, Instant>>,
    finalizing: Mutex<HashSet<String>>,
    wake: Notify,
    /// When this worker's claims were last extended.
    renewed: Mutex<Option<Instant>>,
}

/// Why the worker cannot run on this control plane (logged once at start-up).
pub fn unavailable(config: &GatewayConfig) -> Option<&'static str> {
    if !config.batches.enabled {
        return Some("batches.enabled is false");
    }
    if config.batches.dataplane_url.is_none() {
        return Some("batches.dataplane_url is not set: batch creation answers 503 until it is");
    }
    if config.cluster.internal_secret.is_none() {
        return Some("cluster.internal_secret is not set: batch lines cannot be signed");
    }
    None
}

impl Worker {
    /// A worker for `handles`; `None` when batches cannot run here ([`unavailable`]).
    pub fn new(handles: WorkerHandles) -> Option<Arc<Self>> {
        if unavailable(&handles.config).is_some() {
            return None;
        }
        let batches = &handles.config.batches;
        let base = batches
            .dataplane_url
            .clone()?
            .trim_end_matches('/')
            .to_owned();
        let secret = handles
            .config
            .cluster
            .internal_secret
            .as_ref()?
            .expose()
            .as_bytes()
            .to_vec();
        // A safety net only: the data plane bounds every exchange by its own timeouts, and
        // claims are renewed while the line is in flight (`renew_claims`).
        let timeout = SEND_TIMEOUT;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "controlplane".to_owned());
        let replica = format!("{host}-{}", super::random_id(""));
        let slots = Arc::new(Semaphore::new(
            usize::try_from(batches.max_concurrency.max(1)).unwrap_or(8),
        ));
        Some(Arc::new(Self {
            handles,
            replica,
            client,
            base,
            secret,
            slots,
            paused: Mutex::new(HashMap::new()),
            finalizing: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            renewed: Mutex::new(None),
        }))
    }

    /// This worker's name on its claims.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Runs until `stop` says so: then lets lines in flight finish for up to 10 s, aborts the
    /// rest and puts every line this worker still holds back to pending.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        tracing::info!(replica = %self.replica, dataplane = %self.base, "batch worker: started");
        let mut tasks = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            if let Err(e) = self.renew_claims().await {
                tracing::warn!(error = %e, "batch worker: claims not renewed; retrying");
            }
            if let Err(e) = self.tick(&mut tasks).await {
                tracing::warn!(error = %e, "batch worker: pass failed; retrying");
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = tokio::time::sleep(self.nap()) => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
        match self.release_all().await {
            Ok(n) if n > 0 => tracing::info!(
                lines = n,
                "batch worker: stopped; its unfinished lines are pending again"
            ),
            Ok(_) => tracing::info!("batch worker: stopped"),
            Err(e) => {
                tracing::warn!(error = %e, "batch worker: stopped; its claimed lines return when their lease ends")
            }
        }
    }

    /// Time between two passes: `batches.poll_interval`, but short enough for the claims to
    /// be renewed every third of the lease.
    fn nap(&self) -> Duration {
        let batches = &self.handles.config.batches;
        batches.poll_interval.min(batches.claim_lease / 3)
    }

    /// The claim lease in milliseconds.
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.handles.config.batches.claim_lease.as_millis()).unwrap_or(600_000)
    }

    /// Extends this worker's claims once a third of the lease has passed since the last
    /// time: a line in flight stays ours however long it runs, and the lines of a worker that
    /// died wait at most one lease.
    async fn renew_claims(&self) -> Result<(), DbError> {
        let due = self.handles.config.batches.claim_lease / 3;
        let last = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < due) {
            return Ok(());
        }
        let mut conn = self.handles.pool.get().await?;
        sql::renew(&mut conn, &self.replica, self.lease_ms()).await?;
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(())
    }

    async fn release_all(&self) -> Result<usize, DbError> {
        let mut conn = self.handles.pool.get().await?;
        sql::release_all(&mut conn, &self.replica).await
    }

    /// One pass: expiry, stops, finalization, claims. Public for tests.
    pub async fn tick(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<(), DbError> {
        let active = {
            let mut conn = self.handles.pool.get().await?;
            for id in sql::stop_expired(&mut conn).await? {
                tracing::info!(batch = %id, "batch worker: batch expired; its unsent lines fail");
            }
            sql::active(&mut conn, ACTIVE_PER_TICK).await?
        };
        self.forget_pauses(&active);
        for batch in active {
            let open = self.stop_open_lines(&batch).await?;
            if open == 0 {
                self.start_finalizing(&batch.id, tasks);
            } else if batch.status == "in_progress"
                && batch.stop_code.is_none()
                && !batch.expired
                && batch.claimable > 0
                && !self.is_paused(&batch.id)
            {
                self.claim_and_send(&batch, tasks).await?;
            }
        }
        Ok(())
    }

    /// Fails the unsent lines of a cancelling or stopped batch; the lines still open.
    async fn stop_open_lines(&self, batch: &ActiveBatch) -> Result<i64, DbError> {
        let (code, message) = match (batch.status.as_str(), &batch.stop_code) {
            ("cancelling", _) => (
                "batch_cancelled",
                "The batch was cancelled before this request was sent.",
            ),
            ("in_progress", Some(code)) => (
                code.as_str(),
                batch
                    .stop_message
                    .as_deref()
                    .unwrap_or("The batch was stopped before this request was sent."),
            ),
            _ => return Ok(batch.open),
        };
        if batch.claimable == 0 {
            return Ok(batch.open);
        }
        let mut conn = self.handles.pool.get().await?;
        let failed = sql::fail_open(&mut conn, &batch.id, code, message).await?;
        if failed > 0 {
            self.handles
                .metrics
                .lines("stopped", u64::try_from(failed).unwrap_or(0));
            tracing::info!(batch = %batch.id, lines = failed, code, "batch worker: unsent lines failed");
        }
        Ok(batch.open - failed)
    }

    /// Drops the pauses of batches no longer active (finished ones), so the map stays small.
    fn forget_pauses(&self, active: &[ActiveBatch]) {
        if active.len() as i64 >= ACTIVE_PER_TICK {
            return; // Not every active batch was read: keep them all.
        }
        if let Ok(mut paused) = self.paused.lock() {
            paused.retain(|id, _| active.iter().any(|b| &b.id == id));
        }
    }

    fn is_paused(&self, batch_id: &str) -> bool {
        let Ok(mut paused) = self.paused.lock() else {
            return false;
        };
        match paused.get(batch_id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                paused.remove(batch_id);
                false
            }
            None => false,
        }
    }

    fn pause(&self, batch_id: &str, wait: Duration) {
        if let Ok(mut paused) = self.paused.lock() {
            let until = Instant::now() + wait;
            let entry = paused.entry(batch_id.to_owned()).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    fn start_finalizing(self: &Arc<Self>, batch_id: &str, tasks: &mut JoinSet<()>) {
        let fresh = self
            .finalizing
            .lock()
            .map(|mut set| set.insert(batch_id.to_owned()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let worker = self.clone();
        let id = batch_id.to_owned();
        tasks.spawn(async move {
            let result = finalize::finalize(&worker.handles.pool, &worker.handles.files, &id).await;
            match result {
                Ok(Some(done)) => {
                    worker.handles.metrics.finished.with_label_values(&[done.status]).inc();
                    tracing::info!(batch = %id, status = done.status, output_file = ?done.output_file_id, error_file = ?done.error_file_id, "batch worker: batch finalized");
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(batch = %id, error = %e, "batch worker: finalizing failed; retried next pass"),
            }
            if let Ok(mut set) = worker.finalizing.lock() {
                set.remove(&id);
            }
        });
    }

    async fn claim_and_send(
        self: &Arc<Self>,
        batch: &ActiveBatch,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), DbError> {
        let free = self
            .slots
            .available_permits()
            .min(usize::try_from(batch.claimable).unwrap_or(0));
        if free == 0 {
            return Ok(());
        }
        let lease = self.lease_ms();
        let claimed = {
            let mut conn = self.handles.pool.get().await?;
            sql::claim(
                &mut conn,
                &batch.id,
                &self.replica,
                lease,
                i64::try_from(free).unwrap_or(1),
            )
            .await?
        };
        let owner = Owner {
            batch_id: batch.id.clone(),
            tenant_id: batch.tenant_id,
            key_id: batch.key_id,
            user_id: batch.user_id,
        };
        for line in claimed {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                // Cannot happen (claims ≤ free slots); the line returns with its lease.
                break;
            };
            let worker = self.clone();
            let owner = owner.clone();
            tasks.spawn(async move {
                worker.handles.metrics.in_flight.inc();
                worker.run_line(&owner, line).await;
                worker.handles.metrics.in_flight.dec();
                drop(permit);
                worker.wake.notify_one();
            });
        }
        Ok(())
    }

    /// Sends one line and records what became of it.
    async fn run_line(&self, owner: &Owner, line: ClaimedLine) {
        self.handles.metrics.sent.inc();
        let sent = self.send(owner, &line).await;
        let (outcome, label) = match sent {
            Ok((status, headers, body)) => {
                let verdict = answer::verdict(status, &headers, &body);
                if let Some(wait) =
                    answer::headroom_wait(&headers, self.handles.config.batches.headroom_percent)
                {
                    self.pause(&owner.batch_id, wait);
                }
                let request_id = headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                tracing::info!(batch = %owner.batch_id, line = line.line, status, attempt = line.attempts, "batch worker: line answered");
                match self.outcome_of(owner, &line, verdict, status, request_id, body) {
                    Some(done) => done,
                    None => return self.retry_later(owner, &line, "retried").await,
                }
            }
            Err(e) => {
                tracing::warn!(batch = %owner.batch_id, line = line.line, attempt = line.attempts, error = %e, "batch worker: data plane unreachable");
                if line.attempts < MAX_ATTEMPTS {
                    let backoff =
                        Duration::from_secs(1u64 << line.attempts.clamp(0, 6)).min(MAX_BACKOFF);
                    self.pause(&owner.batch_id, backoff);
                    return self.retry_later(owner, &line, "unreachable").await;
                }
                let outcome = LineOutcome {
                    error_code: Some("dataplane_unreachable".to_owned()),
                    error_message: Some(format!(
                        "The gateway could not deliver this request after {MAX_ATTEMPTS} attempts."
                    )),
                    ..LineOutcome::default()
                };
                (outcome, "failed")
            }
        };
        self.record(owner, &line, &outcome, label).await;
    }

    /// The outcome to record, or `None` to send the line again later (the batch paused).
    fn outcome_of(
        &self,
        owner: &Owner,
        line: &ClaimedLine,
        verdict: Verdict,
        status: u16,
        request_id: Option<String>,
        body: Vec<u8>,
    ) -> Option<(LineOutcome, &'static str)> {
        let base = LineOutcome {
            status_code: Some(i32::from(status)),
            request_id,
            response: Some(body),
            ..LineOutcome::default()
        };
        match verdict {
            Verdict::Done(tokens) => Some((
                LineOutcome {
                    done: true,
                    input_tokens: tokens.input,
                    cached_tokens: tokens.cached,
                    output_tokens: tokens.output,
                    reasoning_tokens: tokens.reasoning,
                    ..base
                },
                "done",
            )),
            Verdict::Failed { code, message } => Some((
                LineOutcome {
                    error_code: Some(code),
                    error_message: Some(message),
                    ..base
                },
                "failed",
            )),
            Verdict::Stop { code, message } => {
                tracing::warn!(batch = %owner.batch_id, line = line.line, code = %code, "batch worker: budget spent; the batch stops");
                Some((
                    LineOutcome {
                        error_code: Some(code.clone()),
                        error_message: Some(message.clone()),
                        stop: Some((code, message)),
                        ..base
                    },
                    "failed",
                ))
            }
            Verdict::Retry(wait) if line.attempts < MAX_ATTEMPTS => {
                self.pause(&owner.batch_id, wait);
                None
            }
            Verdict::Retry(_) => {
                let (code, message) =
                    answer::error_of(status, base.response.as_deref().unwrap_or_default());
                Some((
                    LineOutcome {
                        error_code: Some(code),
                        error_message: Some(message),
                        ..base
                    },
                    "failed",
                ))
            }
        }
    }

    async fn retry_later(&self, owner: &Owner, line: &ClaimedLine, label: &str) {
        self.handles.metrics.lines(label, 1);
        let released = async {
            let mut conn = self.handles.pool.get().await?;
            sql::release(&mut conn, &owner.batch_id, line.line, &self.replica).await
        }
        .await;
        if let Err(e) = released {
            tracing::warn!(batch = %owner.batch_id, line = line.line, error = %e, "batch worker: line not released; it returns when its lease ends");
        }
    }

    async fn record(&self, owner: &Owner, line: &ClaimedLine, outcome: &LineOutcome, label: &str) {
        let recorded = async {
            let mut conn = self.handles.pool.get().await?;
            sql::finish(
                &mut conn,
                &owner.batch_id,
                line.line,
                &self.replica,
                outcome,
            )
            .await
        }
        .await;
        match recorded {
            Ok(true) => self.handles.metrics.lines(label, 1),
            Ok(false) => {
                tracing::warn!(batch = %owner.batch_id, line = line.line, "batch worker: line no longer ours (lease expired and taken over); outcome dropped")
            }
            Err(e) => {
                tracing::warn!(batch = %owner.batch_id, line = line.line, error = %e, "batch worker: outcome not stored; the line is sent again after its lease")
            }
        }
    }

    /// POSTs the line to the data plane; its status, headers and body.
    async fn send(
        &self,
        owner: &Owner,
        line: &ClaimedLine,
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), String> {
        let request_id = format!("{}_{}", owner.batch_id, line.line);
        let identity = Identity::for_batch_line(
            &BatchLine {
                tenant_id: owner.tenant_id,
                key_id: owner.key_id,
                user_id: owner.user_id,
                batch_id: &owner.batch_id,
                request_id: &request_id,
                method: "POST",
                path: &line.url,
                body: &line.body,
            },
            chrono::Utc::now().timestamp(),
        )
        .ok_or("the system's random source failed")?;
        let response = self
            .client
            .post(format!("{}{}", self.base, line.url))
            .header(IDENTITY_HEADER, sign_identity(&self.secret, &identity))
            .header(
                "idempotency-key",
                idempotency_key(&owner.batch_id, line.line),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(line.body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok((status, headers, body.to_vec()))
    }
}

/// The `Idempotency-Key` of a line: the same on every send.
pub fn idempotency_key(batch_id: &str, line: i32) -> String {
    format!("{batch_id}_{line}")
}

/// Starts the worker when batches can run here; logs why not otherwise (once).
pub fn spawn(handles: WorkerHandles, stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    if let Some(reason) = unavailable(&handles.config) {
        // An error only where batches can be asked for (the internal listener is on).
        let reachable = handles.config.cluster.internal_listen_addr.is_some();
        if handles.config.batches.enabled && reachable {
            tracing::error!(reason, "batch worker: not started");
        } else {
            tracing::info!(reason, "batch worker: not started");
        }
        return None;
    }
    let worker = Worker::new(handles)?;
    Some(crate::tasks::spawn_named("batch_worker", worker.run(stop)))
}
