//! The admin listener: `/healthz`, `/readyz`, `/deployments` and `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::cluster::BusStatus;
use crate::metrics::Metrics;
use crate::proxy::State;
use crate::routing::breaker::Availability;
use crate::snapshot::RuntimeSnapshot;
use crate::usage::shipper::ShipperHandle;

/// The admin listener.
pub(super) struct AdminApp {
    pub(super) state: Arc<State>,
    /// Cluster mode: the snapshot bus.
    pub(super) bus: Option<Arc<BusStatus>>,
    /// Cluster mode: the usage shipper.
    pub(super) usage: Option<ShipperHandle>,
}

/// An admin answer: status, content type, body.
type Answer = (u16, &'static str, Vec<u8>);

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/healthz" => self.healthz(),
            "/deployments" => self.deployments(),
            "/readyz" => self.readyz(),
            "/metrics" => self.metrics(),
            _ => (
                404,
                "application/json",
                br#"{"error":"not found; try /healthz, /readyz, /deployments or /metrics"}"#
                    .to_vec(),
            ),
        };
        http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

impl AdminApp {
    /// `/healthz`: the snapshot, in-flight requests, and (cluster mode) the bus, the limits
    /// store and the usage shipper; `degraded` when serving without one of them.
    fn healthz(&self) -> Answer {
        let snapshot = self.state.snapshots.load();
        let (tenants, keys, models) = snapshot.counts();
        let age = (chrono::Utc::now().timestamp_millis() - snapshot.generated_at_ms).max(0) / 1000;
        let mut body = serde_json::json!({
            "status": "ok",
            "mode": "standalone",
            "snapshot": {"version": snapshot.version, "age_seconds": age, "tenants": tenants, "keys": keys, "models": models},
            "inflight": self.state.inflight.load(Ordering::SeqCst),
            "draining": self.state.draining.load(Ordering::SeqCst),
        });
        if let Some(bus) = &self.bus {
            body["mode"] = "cluster".into();
            body["bus"] = bus.to_json(snapshot.version, snapshot.generated_at_ms);
            if !bus.connected() {
                // Still serving the last good snapshot, but not receiving updates.
                body["status"] = "degraded".into();
            }
            self.limits_health(&snapshot, &mut body);
        }
        let resting = snapshot
            .deployments()
            .filter(|d| !matches!(d.health.availability(), Availability::Open))
            .count();
        body["deployments"] = serde_json::json!({
            "total": snapshot.deployments().count(),
            "resting": resting,
        });
        if let Some(usage) = &self.usage {
            let status = usage.status();
            if !status.connected {
                // Serving; usage waits in the spool.
                body["status"] = "degraded".into();
            }
            body["usage"] = serde_json::to_value(status).unwrap_or_default();
        }
        (
            200,
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    }

    /// Cluster mode's `limits` part of `/healthz`: Redis, or the local share while it is down.
    fn limits_health(&self, snapshot: &RuntimeSnapshot, body: &mut serde_json::Value) {
        let governor = &self.state.governor;
        body["limits"] = serde_json::json!({
            "store": if governor.redis_down() { "local_share" } else { "redis" },
            "instance": governor.instance(),
            "live_dataplanes": snapshot.governance.live_dataplanes,
        });
        if governor.redis_down() {
            body["status"] = "degraded".into();
        }
    }

    /// `/deployments`: every deployment's health.
    fn deployments(&self) -> Answer {
        let snapshot = self.state.snapshots.load();
        let policy = &snapshot.routing.health;
        let list: Vec<_> = snapshot
            .deployments()
            .map(|d| d.health.status(policy, d.deployment.health_check))
            .collect();
        (
            200,
            "application/json",
            serde_json::to_vec(&serde_json::json!({ "deployments": list })).unwrap_or_default(),
        )
    }

    /// `/readyz`: 503 once draining.
    fn readyz(&self) -> Answer {
        if self.state.draining.load(Ordering::SeqCst) {
            (
                503,
                "application/json",
                br#"{"ready":false,"reason":"draining"}"#.to_vec(),
            )
        } else {
            (200, "application/json", br#"{"ready":true}"#.to_vec())
        }
    }

    /// `/metrics`: the Prometheus text, with the snapshot's age brought up to date.
    fn metrics(&self) -> Answer {
        let metrics = Metrics::global();
        let generated_at_ms = self.state.snapshots.load().generated_at_ms;
        metrics
            .snapshot_age
            .set((chrono::Utc::now().timestamp_millis() - generated_at_ms).max(0) / 1000);
        (200, "text/plain; version=0.0.4", metrics.render())
    }
}
