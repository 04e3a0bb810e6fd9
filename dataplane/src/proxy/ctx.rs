//! [`RequestCtx`]: everything decided so far about one request. Dropped after `logging`, which
//! releases the in-flight slot ([`InflightGuard`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::State;
use crate::flow::meter::{Meter, Target};
use crate::idempotency::Recorder;
use crate::ingress::anthropic::EventConverter;
use crate::limits::{Admission, Observed};
use crate::metrics::Metrics;
use crate::request::Route;
use crate::snapshot::KeyEntry;

/// Counts the request as in flight until dropped (graceful drain waits on this count).
pub struct InflightGuard(Arc<State>);

impl InflightGuard {
    pub(super) fn new(state: Arc<State>) -> Self {
        state.inflight.fetch_add(1, Ordering::SeqCst);
        Metrics::global().inflight.inc();
        Self(state)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
        Metrics::global().inflight.dec();
    }
}

/// How answers reach an Anthropic client.
#[derive(Debug, Default)]
pub struct AnthropicEgress {
    /// The answer is already in Anthropic's shapes (an Anthropic deployment, or the
    /// gateway's own `count_tokens` answer).
    pub native: bool,
    /// The stream's converter, once a stream started.
    pub stream: Option<EventConverter>,
}

/// Per-request state.
pub struct RequestCtx {
    /// Request id (client's `x-request-id` when sane, else `event_id`).
    pub request_id: String,
    /// The gateway's own id of this request (UUIDv7): the usage record's idempotency key.
    /// Never taken from the client, so a reused `x-request-id` cannot hide a request's usage.
    pub event_id: uuid::Uuid,
    /// Set for forwarded routes (`/v1/files*`, `/v1/batches*`): the signed identity header.
    /// Pingora then proxies the request instead of the gateway answering it.
    pub forward: Option<String>,
    /// Arrival.
    pub started: Instant,
    /// Arrival, wall clock.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Matched route.
    pub route: Option<Route>,
    /// Resolved alias (only aliases in the catalog, so metric labels stay bounded).
    pub alias: Option<String>,
    /// The deployment used last (set per attempt by the exchange).
    pub target: Option<Target>,
    /// Status sent to the client; 499 when the client left first.
    pub status: u16,
    /// Error code of a failed request.
    pub error_code: Option<&'static str>,
    /// What the request consumed (decided by [`crate::flow::meter`]).
    pub meter: Meter,
    /// Time to first streamed content.
    pub ttft: Option<Duration>,
    /// Streamed.
    pub stream: bool,
    /// Upstream attempts made.
    pub attempts: u32,
    /// The authenticated key: the request's identity (tenant, key id, prefix) and its
    /// limits and budget headers.
    pub key: Option<Arc<KeyEntry>>,
    /// Limits and budget state for the response headers.
    pub observed: Option<Observed>,
    /// The request's hold on limits and budgets, settled after the response.
    pub admission: Option<Admission>,
    /// Running under an `Idempotency-Key` claim: the claim and the capture of the answer.
    pub idempotency: Option<Recorder>,
    /// Answered from the idempotency store (no provider call, nothing billed).
    pub idempotent_replay: bool,
    /// A batch line: the control plane's verified identity it was authenticated by (its batch
    /// id goes on the usage record).
    pub batch_line: Option<omg_shared::cluster::Identity>,
    /// The client speaks Anthropic's Messages API: answers and errors are written in its
    /// shapes (see `respond`).
    pub anthropic: Option<AnthropicEgress>,
    inflight: Option<InflightGuard>,
}

impl RequestCtx {
    pub(super) fn new(state: Arc<State>) -> Self {
        Self {
            request_id: String::new(),
            event_id: uuid::Uuid::nil(),
            forward: None,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            route: None,
            alias: None,
            target: None,
            status: 0,
            error_code: None,
            meter: Meter::default(),
            ttft: None,
            stream: false,
            attempts: 0,
            key: None,
            observed: None,
            admission: None,
            idempotency: None,
            idempotent_replay: false,
            batch_line: None,
            anthropic: None,
            inflight: Some(InflightGuard::new(state)),
        }
    }

    /// Takes the in-flight guard, so work after the response (settling limits) still
    /// counts as in flight for the graceful drain.
    pub fn take_inflight(&mut self) -> Option<InflightGuard> {
        self.inflight.take()
    }

    /// The authenticated tenant.
    pub fn tenant_id(&self) -> Option<Uuid> {
        self.key.as_ref().map(|k| k.key.tenant_id)
    }

    /// The authenticated key's id.
    pub fn key_id(&self) -> Option<Uuid> {
        self.key.as_ref().map(|k| k.key.id)
    }

    /// The authenticated key's owner, when it has one.
    pub fn user_id(&self) -> Option<Uuid> {
        self.key.as_ref().and_then(|k| k.key.user_id)
    }

    /// The batch the request is a line of, when it is one.
    pub fn batch_id(&self) -> Option<&str> {
        self.batch_line.as_ref().and_then(|i| i.batch_id.as_deref())
    }

    /// Whether the exchange goes on when the client leaves: a batch line's sender (the
    /// control plane) may die mid-request and re-send the line under the same
    /// `Idempotency-Key`, so the provider's answer is still completed, stored and billed as
    /// answered (docs/idempotency.md). Ordinary clients that leave are cut as before.
    pub fn detached(&self) -> bool {
        self.batch_line.is_some()
    }

    /// The authenticated key's prefix (for logs), or `-`.
    pub fn key_prefix(&self) -> &str {
        self.key.as_ref().map_or("-", |k| k.key.prefix.as_str())
    }

    /// The next attempt goes to `deployment`.
    pub fn attempting(&mut self, deployment: &crate::snapshot::DeploymentEntry) {
        self.attempts += 1;
        self.target = Some(Target {
            provider: deployment.deployment.provider,
            deployment: deployment.deployment.id.clone(),
            pricing: deployment.deployment.pricing,
        });
    }

    /// Marks the first streamed content.
    pub fn mark_first_token(&mut self) {
        if self.ttft.is_none() {
            self.ttft = Some(self.started.elapsed());
        }
    }
}
