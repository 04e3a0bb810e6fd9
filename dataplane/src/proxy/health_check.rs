//! Active health checks: every `health.interval`, each deployment with `health_check` on gets
//! a cheap request (its adapter's probe: the provider's model listing, `GET <endpoint>/models`
//! for OpenAI-shaped servers); the result feeds its breaker and the rolling window shown on `/deployments`.
//! Checks run concurrently, each bounded by `health.check_timeout`; never on the request path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;

use super::State;
use crate::routing::health::CheckResult;
use crate::snapshot::DeploymentEntry;

/// The background service running the checks.
pub struct HealthChecker {
    /// Shared state (snapshot, connector, resolver).
    pub state: Arc<State>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let snapshot = self.state.snapshots.load();
            let policy = snapshot.routing.health.clone();
            let targets: Vec<Arc<DeploymentEntry>> = snapshot
                .deployments()
                .filter(|d| d.deployment.health_check)
                .filter(|d| d.adapter.as_ref().is_some_and(|a| a.local().is_none()))
                .cloned()
                .collect();
            drop(snapshot);
            let mut checks = tokio::task::JoinSet::new();
            for target in targets {
                let state = Arc::clone(&self.state);
                let timeout = Duration::from_millis(policy.check_timeout_ms);
                let policy = policy.clone();
                checks.spawn(async move {
                    let result = check(&state, &target, timeout).await;
                    if !result.ok {
                        tracing::warn!(
                            deployment = %target.deployment.id,
                            detail = %result.detail,
                            "active health check failed"
                        );
                    }
                    target.health.record_check(result, &policy);
                });
            }
            while checks.join_next().await.is_some() {}
            let interval = Duration::from_millis(policy.interval_ms.max(1000));
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One check: the adapter's probe with the deployment's credential; 2xx passes.
async fn check(state: &State, target: &DeploymentEntry, timeout: Duration) -> CheckResult {
    let at_ms = chrono::Utc::now().timestamp_millis();
    let result = tokio::time::timeout(timeout, probe(state, target)).await;
    let (ok, detail) = match result {
        Err(_) => (false, "timeout".to_owned()),
        Ok(Err(detail)) => (false, detail),
        Ok(Ok(status)) => ((200..300).contains(&status), format!("HTTP {status}")),
    };
    CheckResult { at_ms, ok, detail }
}

async fn probe(state: &State, target: &DeploymentEntry) -> Result<u16, String> {
    let deployment = &target.deployment;
    let endpoint = deployment
        .endpoint
        .as_ref()
        .ok_or_else(|| "no endpoint".to_owned())?;
    let addr = state
        .resolver
        .resolve(&endpoint.host, endpoint.port)
        .await
        .map_err(|_| "dns".to_owned())?;
    let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
    peer.options.connection_timeout = Some(state.settings.connect_timeout);
    let (mut session, _) = state
        .connector
        .get_http_session(&peer)
        .await
        .map_err(|_| "connect".to_owned())?;
    let adapter = target
        .adapter
        .as_ref()
        .ok_or_else(|| "no adapter".to_owned())?;
    let probe = adapter.probe_at(deployment, std::time::SystemTime::now());
    let mut request = RequestHeader::build("GET", probe.path.as_bytes(), Some(4))
        .map_err(|_| "request".to_owned())?;
    let host = endpoint.host_header();
    let mut built = request
        .insert_header("host", host.as_str())
        .and_then(|()| request.insert_header("user-agent", super::upstream::USER_AGENT));
    for (name, value) in &probe.headers {
        built = built.and_then(|()| request.insert_header(*name, value.as_str()));
    }
    built.map_err(|_| "request".to_owned())?;
    session
        .write_request_header(Box::new(request))
        .await
        .map_err(|_| "write".to_owned())?;
    session
        .finish_request_body()
        .await
        .map_err(|_| "write".to_owned())?;
    session
        .read_response_header()
        .await
        .map_err(|_| "no response".to_owned())?;
    session
        .response_header()
        .map(|header| header.status.as_u16())
        .ok_or_else(|| "no response".to_owned())
}
