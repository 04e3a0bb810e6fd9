//! Request idempotency: a model request carrying an `Idempotency-Key` header is executed once
//! per API key and `Idempotency-Key`; a retry with the same key and the same request (route and body bytes)
//! within `idempotency.ttl` gets the stored answer, without a provider call or a charge.
//!
//! [`Idempotency::begin`] looks the key up and either hands out a [`Claim`] (run the request,
//! then [`Claim::complete`] it with the answer; dropping it uncompleted releases the key so a
//! retry runs again), or the stored answer, or reports that the key was used for another
//! request. A duplicate arriving while the first is still running waits for it (until its
//! own deadline), then replays its answer, or runs itself if the first failed.
//!
//! Standalone, keys live in this process ([`local`], bounded). In cluster mode they live in
//! Redis ([`redis`], one Lua script per step) so every data plane sees them; a pending claim
//! is a lease that expires if its data plane dies. While Redis is unreachable, keys are
//! checked in this process only (logged once per outage, counted as `fallback`).
//!
//! Only complete 2xx answers up to `idempotency.max_response_kb` are stored: JSON bodies and
//! the exact bytes of cleanly ended streams, captured as they are written ([`Capture`]).
//! No Pingora types here; `proxy::idem` is the glue.

mod local;
mod redis;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use omg_shared::config::GatewayConfig;
use omg_shared::counters::CounterKeys;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::metrics::Metrics;
use local::{LocalFound, LocalStore, Slot};
use redis::{Found, RedisStore};

/// First wait between two looks at a pending key in Redis; doubled up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(25);
/// Longest wait between two looks at a pending key in Redis.
const POLL_MAX: Duration = Duration::from_millis(500);
/// After a Redis failure, Redis is not tried again for this long (the local store answers).
const REDIS_RETRY: Duration = Duration::from_secs(1);
/// Shortest Redis deadline: a stored answer (up to `max_response_kb`) travels in one reply.
const REDIS_MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest `Idempotency-Key` accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// HTTP status (2xx).
    pub status: u16,
    /// `content-type` as sent.
    pub content_type: String,
    /// The body as sent (a stream's exact bytes).
    pub body: Bytes,
}

/// What a key is bound to: SHA-256 over the method, the path and the raw body bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of one request.
    pub fn of(method: &str, path: &str, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        // NUL cannot occur in a method or a path: no two (method, path, body) share an input.
        hasher.update(method.as_bytes());
        hasher.update([0]);
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(body);
        Self(hasher.finalize().into())
    }

    fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The header's value when it is a valid key: 1–255 visible ASCII characters.
pub fn parse_key(value: &[u8]) -> Option<&str> {
    let valid = !value.is_empty()
        && value.len() <= MAX_KEY_LEN
        && value.iter().all(|b| b.is_ascii_graphic());
    if valid {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// One request under one key.
#[derive(Debug, Clone)]
pub struct Request {
    tenant: Uuid,
    /// SHA-256 of the API key's id and the client's `Idempotency-Key`: a slot belongs to one
    /// API key (another key of the tenant sending the same header never gets its answer);
    /// fixed length, and no client text in Redis names.
    digest: [u8; 32],
    fingerprint: Fingerprint,
}

impl Request {
    /// `api_key` is the id of the API key that sent the request, `key` the (validated)
    /// header value.
    pub fn new(tenant: Uuid, api_key: Uuid, key: &str, fingerprint: Fingerprint) -> Self {
        let mut hasher = Sha256::new();
        // Fixed-length id first: no two (api_key, key) pairs share an input.
        hasher.update(api_key.as_bytes());
        hasher.update(key.as_bytes());
        Self {
            tenant,
            digest: hasher.finalize().into(),
            fingerprint,
        }
    }

    fn slot(&self) -> Slot {
        Slot {
            tenant: self.tenant,
            digest: self.digest,
        }
    }
}

/// What [`Idempotency::begin`] decided.
pub enum Begin {
    /// New (or released) key: run the request, then complete the claim.
    Execute(Claim),
    /// Answered before: send this again.
    Replay(Arc<Stored>),
    /// The key was used with another request (route or body).
    Mismatch,
    /// The first request with this key was still running at the deadline.
    InUse,
}

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `idempotency.ttl`: how long a stored answer is replayed.
    pub ttl: Duration,
    /// `idempotency.max_response_kb` in bytes.
    pub max_response_bytes: usize,
    /// Deadline of one Redis round trip (`rate_limits.redis_timeout`, at least 1 s).
    pub redis_timeout: Duration,
    /// `cluster.counter_prefix`.
    pub counter_prefix: String,
}

impl Settings {
    /// From the config (`idempotency.*`, `rate_limits.redis_timeout`,
    /// `cluster.counter_prefix`).
    pub fn from_config(config: &GatewayConfig) -> Self {
        Self {
            ttl: config.idempotency.ttl,
            max_response_bytes: usize::try_from(
                config.idempotency.max_response_kb.saturating_mul(1024),
            )
            .unwrap_or(usize::MAX),
            redis_timeout: config.rate_limits.redis_timeout.max(REDIS_MIN_TIMEOUT),
            counter_prefix: config.cluster.counter_prefix.clone(),
        }
    }
}

/// The idempotency store of a data plane.
#[derive(Clone)]
pub struct Idempotency {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    keys: CounterKeys,
    local: LocalStore,
    redis: Option<RedisStore>,
    redis_down: AtomicBool,
    /// Milliseconds after `epoch` before which Redis is not tried again.
    redis_retry_at: AtomicU64,
    epoch: Instant,
}

/// One look at the key, in whichever store answered.
enum Step {
    Claimed(Claim),
    Done(Arc<Stored>),
    Mismatch,
    /// Someone else runs it: wait for the local store's signal, or poll Redis.
    Pending(Option<tokio::sync::watch::Receiver<()>>),
}

impl Idempotency {
    /// The service `config` asks for: `None` when `idempotency.enabled` is false; in Redis
    /// when `redis.url` is set (cluster mode), else in process.
    pub fn from_config(config: &GatewayConfig) -> Result<Option<Self>, String> {
        if !config.idempotency.enabled {
            return Ok(None);
        }
        let settings = Settings::from_config(config);
        match &config.redis.url {
            None => Ok(Some(Self::local(settings))),
            Some(url) => Self::shared(settings, url.expose()).map(Some),
        }
    }

    /// Keys in this process (standalone).
    pub fn local(settings: Settings) -> Self {
        Self::new(settings, None)
    }

    /// Keys in the Redis at `url` (cluster), this process's memory while it is unreachable.
    pub fn shared(settings: Settings, url: &str) -> Result<Self, String> {
        let redis = RedisStore::new(url, settings.redis_timeout)?;
        Ok(Self::new(settings, Some(redis)))
    }

    fn new(settings: Settings, redis: Option<RedisStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys: CounterKeys::new(&settings.counter_prefix),
                settings,
                local: LocalStore::default(),
                redis,
                redis_down: AtomicBool::new(false),
                redis_retry_at: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// Largest answer stored, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        self.inner.settings.max_response_bytes
    }

    /// Whether the last Redis round trip failed (keys are then checked locally).
    pub fn redis_down(&self) -> bool {
        self.inner.redis_down.load(Ordering::Relaxed)
    }

    /// Looks `request` up: a claim to run it, the stored answer, or a refusal. While another
    /// request holds the key, waits (at most `wait`) for it to end. `lease` bounds how long
    /// a claim in Redis survives a data plane that dies holding it.
    ///
    /// Cancel-safe: a claim taken by a future dropped mid-way is released.
    pub async fn begin(&self, request: &Request, lease: Duration, wait: Duration) -> Begin {
        let deadline = tokio::time::Instant::now() + wait;
        let mut poll = POLL_FIRST;
        let mut waited = false;
        let mut fallback = false;
        let begin = loop {
            let step = match self.step(request, lease).await {
                Ok(step) => step,
                Err(step) => {
                    fallback = true;
                    step
                }
            };
            match step {
                Step::Claimed(claim) => break Begin::Execute(claim),
                Step::Done(stored) => break Begin::Replay(stored),
                Step::Mismatch => break Begin::Mismatch,
                Step::Pending(signal) => {
                    waited = true;
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        break Begin::InUse;
                    }
                    match signal {
                        // Fires when the entry is completed or released (its sender dropped).
                        Some(mut signal) => {
                            let _ = tokio::time::timeout_at(deadline, signal.changed()).await;
                        }
                        None => {
                            tokio::time::sleep_until(deadline.min(now + poll)).await;
                            poll = (poll * 2).min(POLL_MAX);
                        }
                    }
                }
            }
        };
        let metrics = &Metrics::global().idempotency;
        let outcome = match &begin {
            Begin::Execute(_) => "executed",
            Begin::Replay(_) => "replayed",
            Begin::Mismatch => "mismatch",
            Begin::InUse => "in_use",
        };
        metrics.with_label_values(&[outcome]).inc();
        if waited {
            metrics.with_label_values(&["waited"]).inc();
        }
        if fallback {
            metrics.with_label_values(&["fallback"]).inc();
        }
        begin
    }

    /// One look: in Redis when configured and answering (`Ok`), else in this process (`Err`
    /// when that is a fallback from Redis).
    async fn step(&self, request: &Request, lease: Duration) -> Result<Step, Step> {
        let inner = &self.inner;
        let Some(redis) = &inner.redis else {
            return Ok(self.local_step(request));
        };
        if inner.millis() < inner.redis_retry_at.load(Ordering::Relaxed) {
            return Err(self.local_step(request));
        }
        let key = inner
            .keys
            .idempotency(request.tenant, &hex::encode(request.digest));
        let owner = format!("{:032x}", rand::random::<u128>());
        // Armed before the script runs: if this future is dropped mid-call, the claim it
        // may have taken is released.
        let mut claim = Claim {
            inner: inner.clone(),
            held: Held::Redis {
                key: key.clone(),
                owner: owner.clone(),
            },
            done: false,
        };
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let found = redis
            .claim(&key, &owner, &request.fingerprint.hex(), lease_ms)
            .await;
        match found {
            Ok(found) => {
                inner.redis_answered();
                if !matches!(found, Found::Claimed) {
                    claim.done = true;
                }
                Ok(match found {
                    Found::Claimed => Step::Claimed(claim),
                    Found::Pending => Step::Pending(None),
                    Found::Mismatch => Step::Mismatch,
                    Found::Done(stored) => Step::Done(Arc::new(stored)),
                })
            }
            Err(error) => {
                // Maybe taken before the reply was lost: the drop below releases it (if
                // Redis answers that; else the lease expires).
                drop(claim);
                inner.redis_failed(&error);
                Err(self.local_step(request))
            }
        }
    }

    fn local_step(&self, request: &Request) -> Step {
        let slot = request.slot();
        match self
            .inner
            .local
            .claim(slot, request.fingerprint, Instant::now())
        {
            LocalFound::Claimed(token) => Step::Claimed(Claim {
                inner: self.inner.clone(),
                held: Held::Local { slot, token },
                done: false,
            }),
            LocalFound::Pending(signal) => Step::Pending(Some(signal)),
            LocalFound::Mismatch => Step::Mismatch,
            LocalFound::Done(stored) => Step::Done(stored),
        }
    }
}

impl Inner {
    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn redis_answered(&self) {
        if self.redis_down.swap(false, Ordering::Relaxed) {
            tracing::info!("idempotency: Redis answers again; Idempotency-Key is shared again");
        }
    }

    fn redis_failed(&self, error: &str) {
        let retry = u64::try_from(REDIS_RETRY.as_millis()).unwrap_or(u64::MAX);
        self.redis_retry_at
            .store(self.millis().saturating_add(retry), Ordering::Relaxed);
        if !self.redis_down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %error,
                "idempotency: Redis is unreachable; Idempotency-Key is checked in this data plane only until it answers again"
            );
        }
    }
}

/// Where a claim is held.
enum Held {
    Local { slot: Slot, token: u64 },
    Redis { key: String, owner: String },
}

/// The right to run a request under its key. [`Claim::complete`] stores the answer; dropped
/// uncompleted, the key is released and a retry runs again.
pub struct Claim {
    inner: Arc<Inner>,
    held: Held,
    done: bool,
}

impl Claim {
    /// Stores the answer for replays (for `idempotency.ttl`).
    pub async fn complete(mut self, stored: Stored) {
        let inner = self.inner.clone();
        let ttl = inner.settings.ttl;
        let stored_ok = match &self.held {
            Held::Local { slot, token } => {
                inner
                    .local
                    .complete(*slot, *token, stored, Instant::now() + ttl)
            }
            Held::Redis { key, owner } => {
                let Some(redis) = &inner.redis else { return };
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                match redis.complete(key, owner, &stored, ttl_ms).await {
                    Ok(stored) => stored,
                    Err(error) => {
                        // Released below (best effort); else the lease expires.
                        tracing::warn!(%error, "idempotency: the answer could not be stored in Redis; a retry will run again");
                        false
                    }
                }
            }
        };
        // Not stored when the claim was lost meanwhile (an expired lease taken over).
        self.done = stored_ok;
        Metrics::global()
            .idempotency
            .with_label_values(&[if stored_ok { "stored" } else { "not_stored" }])
            .inc();
    }

    /// Releases the key without storing anything (what dropping does), counted.
    pub fn abandon(self) {
        Metrics::global()
            .idempotency
            .with_label_values(&["not_stored"])
            .inc();
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match &self.held {
            Held::Local { slot, token } => self.inner.local.release(*slot, *token),
            Held::Redis { key, owner } => {
                let (inner, key, owner) = (self.inner.clone(), key.clone(), owner.clone());
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    crate::tasks::spawn_named_on(
                        &runtime,
                        "release idempotency claim",
                        async move {
                            if let Some(redis) = &inner.redis {
                                if let Err(error) = redis.release(&key, &owner).await {
                                    tracing::debug!(%error, "idempotency: release failed; the claim expires with its lease");
                                }
                            }
                        },
                    );
                }
            }
        }
    }
}

/// The answer as it is written to the client, kept for [`Claim::complete`]; bounded by
/// `idempotency.max_response_kb` (beyond it, nothing is kept and nothing will be stored).
#[derive(Debug)]
pub struct Capture {
    limit: usize,
    status: u16,
    content_type: String,
    chunks: Vec<Bytes>,
    len: usize,
    overflow: bool,
}

impl Capture {
    /// An empty capture keeping at most `limit` body bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            status: 0,
            content_type: String::new(),
            chunks: Vec::new(),
            len: 0,
            overflow: false,
        }
    }

    /// The response header was written.
    pub fn start(&mut self, status: u16, content_type: &str) {
        self.status = status;
        content_type.clone_into(&mut self.content_type);
        self.chunks.clear();
        self.len = 0;
        self.overflow = false;
    }

    /// Body bytes were written (a reference count, not a copy).
    pub fn push(&mut self, bytes: &Bytes) {
        if self.overflow || bytes.is_empty() {
            return;
        }
        if self.len + bytes.len() > self.limit {
            self.overflow = true;
            self.chunks = Vec::new();
            return;
        }
        self.len += bytes.len();
        self.chunks.push(bytes.clone());
    }

    /// The complete answer, if it is storable: a 2xx within the limit.
    pub fn finish(self) -> Option<Stored> {
        if self.overflow || !(200..300).contains(&self.status) {
            return None;
        }
        let body = match self.chunks.len() {
            1 => self.chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut body = Vec::with_capacity(self.len);
                for chunk in &self.chunks {
                    body.extend_from_slice(chunk);
                }
                Bytes::from(body)
            }
        };
        Some(Stored {
            status: self.status,
            content_type: self.content_type,
            body,
        })
    }
}

/// A request running under a claim: the claim and the capture of its answer.
pub struct Recorder {
    claim: Claim,
    /// What the client received so far.
    pub capture: Capture,
}

impl Recorder {
    /// Records the answer to `claim`, up to `limit` bytes.
    pub fn new(claim: Claim, limit: usize) -> Self {
        Self {
            claim,
            capture: Capture::new(limit),
        }
    }

    /// After the response: stores it when it ended `clean` (complete, no error) and is
    /// storable; else releases the key.
    pub async fn finish(self, clean: bool) {
        match self.capture.finish().filter(|_| clean) {
            Some(stored) => self.claim.complete(stored).await,
            None => self.claim.abandon(),
        }
    }
}
