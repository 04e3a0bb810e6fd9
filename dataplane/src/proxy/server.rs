//! Process assembly: the Pingora server with the `/v1` proxy service, the admin listener
//! (`/healthz`, `/readyz`, `/metrics`), the source of snapshot updates (standalone: config
//! reload on SIGHUP and file change; cluster: the snapshot bus, see `crate::cluster`) and the
//! drain-aware shutdown.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use omg_shared::config::GatewayConfig;
use omg_shared::keys::KeyHasher;
use omg_shared::snapshot::Snapshot;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{
    ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use tokio::signal::unix::{signal, SignalKind};

use super::{Gateway, Settings, State};
use crate::cluster::{BusStatus, Cluster, SnapshotSource};
use crate::config::ConfigSource;
use crate::idempotency::Idempotency;
use crate::limits::{Governor, GovernorSettings};
use crate::metrics::Metrics;
use crate::routing::breaker::Availability;
use crate::snapshot::{RuntimeSnapshot, SnapshotStore};
use crate::usage::shipper::{Shipper, ShipperHandle, ShipperOptions};
use crate::usage::spool::{Spool, SpoolOptions};
use crate::usage::{JsonlSink, UsageSink};

/// How often the config file is checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(2);
/// Longest wait for the usage shipper at shutdown (its own drain is 5 s).
const USAGE_DRAIN: Duration = Duration::from_secs(6);

/// Loads the config and runs the server until shutdown: standalone (snapshot from the config
/// file) unless `redis.url` is set, then cluster (snapshots from the control plane over
/// Redis). Errors are start-up errors, worded for the operator.
pub fn run(source: &ConfigSource) -> Result<(), String> {
    let config = source.load_for_start()?;
    crate::tokens::configure(config.server.tokenizer);
    if config.redis.url.is_some() {
        return run_cluster(&config);
    }
    let Some(path) = source.file() else {
        return Err(crate::config::NO_CONFIG.to_owned());
    };
    let pepper = Pepper::from_config(&config);
    let hasher = pepper.hasher(&config);
    let snapshot =
        Snapshot::from_config(&config, &hasher, 1, chrono::Utc::now().timestamp_millis())
            .map_err(|errors| format!("invalid config `{}`:\n{errors}", path.display()))?;
    let runtime = RuntimeSnapshot::build(snapshot, hasher)
        .map_err(|error| format!("invalid config: {error}"))?;
    Metrics::global()
        .snapshot_version
        .set(i64::try_from(runtime.version).unwrap_or(i64::MAX));
    let started = Prepared::new(&config)?.start(&config, runtime);
    let reloader = Reloader {
        source: source.clone(),
        path: path.to_owned(),
        state: started.state.clone(),
        pepper,
        server: config.server.clone(),
        fingerprint: Mutex::new(fingerprint(path)),
    };
    serve(&config, started, Follow::Config(Box::new(reloader)))
}

/// Cluster mode: nothing is served until a first snapshot arrives from Redis or the disk
/// cache; then the bus is followed.
fn run_cluster(config: &GatewayConfig) -> Result<(), String> {
    let cluster = Arc::new(Cluster::from_config(config)?);
    // Everything that can be wrong locally is checked before waiting for a snapshot.
    let prepared = Prepared::new(config)?;
    tracing::info!(
        redis = %cluster.status().target(),
        snapshot_key = %cluster.keys().snapshot,
        cache = %cluster.cache_path().display(),
        "cluster mode: loading the first snapshot"
    );
    let Some((runtime, _source)) = first_snapshot(&cluster)? else {
        return Ok(());
    };
    let started = prepared.start(config, runtime);
    let state = started.state.clone();
    serve(config, started, Follow::Bus(BusFollower { cluster, state }))
}

/// Waits for the first snapshot on a short-lived runtime (Pingora starts its own after).
/// `None`: SIGTERM or SIGINT came first.
fn first_snapshot(cluster: &Cluster) -> Result<Option<(RuntimeSnapshot, SnapshotSource)>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the start-up runtime: {error}"))?;
    runtime.block_on(async {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return cluster.first_snapshot().await.map(Some);
        };
        tokio::select! {
            first = cluster.first_snapshot() => first.map(Some),
            _ = term.recv() => {
                tracing::info!("SIGTERM before a first snapshot arrived: exiting");
                Ok(None)
            }
            _ = int.recv() => {
                tracing::info!("SIGINT before a first snapshot arrived: exiting");
                Ok(None)
            }
        }
    })
}

/// What is checked and opened before the first snapshot: listeners, the usage destination
/// (standalone: the JSONL file; cluster: the spool and its shipper) and the forward target.
struct Prepared {
    listeners: Listeners,
    sink: Box<dyn UsageSink>,
    shipper: Option<Shipper>,
    forward: Option<super::forward::ForwardTarget>,
    governor: Arc<Governor>,
    idempotency: Option<Idempotency>,
}

/// The addresses to listen on.
struct Listeners {
    listen: std::net::SocketAddr,
    admin_listen: std::net::SocketAddr,
}

impl Prepared {
    fn new(config: &GatewayConfig) -> Result<Self, String> {
        let (sink, shipper): (Box<dyn UsageSink>, Option<Shipper>) = match &config.redis.url {
            None => {
                let sink = JsonlSink::open(&config.usage.jsonl_path).map_err(|error| {
                    format!(
                        "cannot open the usage file `{}` (`usage.jsonl_path`): {error}",
                        config.usage.jsonl_path.display()
                    )
                })?;
                (Box::new(sink), None)
            }
            Some(url) => {
                let cluster = &config.cluster;
                let (spool, reader) = Spool::open_with(
                    &cluster.spool_dir,
                    SpoolOptions::from_max_mb(cluster.spool_max_mb),
                )
                .map_err(|error| error.to_string())?;
                let client = redis::Client::open(url.expose())
                    .map_err(|error| format!("`redis.url` is not a usable Redis URL: {error}"))?;
                let shipper = Shipper::new(
                    reader,
                    client,
                    &cluster.usage_stream,
                    ShipperOptions::default(),
                );
                (Box::new(spool), Some(shipper))
            }
        };
        let forward = super::forward::ForwardTarget::from_config(&config.cluster)?;
        let limits = GovernorSettings {
            lease_ttl: config.rate_limits.lease_ttl,
            redis_timeout: config.rate_limits.redis_timeout,
            counter_prefix: config.cluster.counter_prefix.clone(),
        };
        let governor = match &config.redis.url {
            None => Governor::local(limits),
            Some(url) => Governor::shared(limits, url.expose())?,
        };
        let listen = omg_shared::config::parse_listen_addr(
            config
                .server
                .listen_addr_or(omg_shared::config::ServerConfig::DATAPLANE_LISTEN_ADDR),
        )?;
        let admin_listen = omg_shared::config::parse_listen_addr(&config.server.admin_listen_addr)?;
        Ok(Self {
            listeners: Listeners {
                listen,
                admin_listen,
            },
            sink,
            shipper,
            forward,
            governor,
            idempotency: Idempotency::from_config(config)?,
        })
    }

    /// The shared state around the first snapshot, the addresses to listen on and the usage
    /// shipper (cluster mode).
    fn start(self, config: &GatewayConfig, runtime: RuntimeSnapshot) -> Started {
        if config.redis.url.is_none() {
            seed_budgets(&self.governor, config, &runtime);
        }
        let state = Arc::new(
            State::new(
                SnapshotStore::new(runtime),
                Settings::from_config(&config.server),
                self.sink,
                self.governor,
            )
            .with_forward(self.forward)
            .with_idempotency(self.idempotency),
        );
        Started {
            state,
            listeners: self.listeners,
            shipper: self.shipper,
        }
    }
}

/// Standalone: budgets count the spend already in the usage file (a restart must not reset
/// them). Unreadable lines are skipped (the file is append-only and may end mid-write).
fn seed_budgets(governor: &Governor, config: &GatewayConfig, runtime: &RuntimeSnapshot) {
    use std::io::BufRead;
    let path = &config.usage.jsonl_path;
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    let started = std::time::Instant::now();
    let records = std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<omg_shared::usage::UsageEvent>(&line).ok());
    let counted = governor.seed_spend(runtime.governance.timezone, records);
    tracing::info!(
        file = %path.display(),
        counted,
        took_ms = started.elapsed().as_millis() as u64,
        "budgets: spend of earlier requests counted from the usage file"
    );
}

/// The state and what `serve` runs around it.
struct Started {
    state: Arc<State>,
    listeners: Listeners,
    shipper: Option<Shipper>,
}

/// Runs the usage shipper for the lifetime of the server. It is stopped by the drain watcher
/// once no request is in flight (Pingora's shutdown watch fires earlier, while the last
/// requests still write records).
struct UsageShipper {
    shipper: Mutex<Option<Shipper>>,
}

#[async_trait]
impl BackgroundService for UsageShipper {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let shipper = self.shipper.lock().ok().and_then(|mut s| s.take());
        if let Some(shipper) = shipper {
            shipper.run(std::future::pending()).await;
        }
    }
}

/// Cluster mode: renews leases and reservations and announces the data plane, for the
/// lifetime of the process (settlements after the drain still need Redis).
struct LimitsRenewer {
    governor: Arc<Governor>,
}

#[async_trait]
impl BackgroundService for LimitsRenewer {
    async fn start(&self, _shutdown: ShutdownWatch) {
        self.governor
            .clone()
            .run_renewer(std::future::pending())
            .await;
    }
}

/// Where snapshot updates come from.
enum Follow {
    /// Standalone: the config file (SIGHUP and file changes).
    Config(Box<Reloader>),
    /// Cluster: the Redis bus.
    Bus(BusFollower),
}

/// Assembles the Pingora server around `state` and runs it until shutdown.
fn serve(config: &GatewayConfig, started: Started, follow: Follow) -> Result<(), String> {
    let Started {
        state,
        listeners: Listeners {
            listen,
            admin_listen,
        },
        shipper,
    } = started;
    let usage = shipper.as_ref().map(Shipper::handle);
    let (tenants, keys, models) = state.snapshots.load().counts();
    let threads = match config.server.threads {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    // Pingora sleeps the whole grace period after SIGTERM; the drain watcher below exits as
    // soon as in-flight requests reach zero, so this is only the upper bound.
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(config.server.graceful_shutdown_timeout.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: config.server.upstream_idle_connections,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Behind the connection cap and the request-head deadline (`conn`).
    let gateway = http_proxy(
        &server.configuration,
        Gateway {
            state: state.clone(),
        },
    );
    let mut proxy = Service::new(
        "omg proxy".to_owned(),
        super::conn::Guarded::new(
            gateway,
            config.server.max_connections,
            config.server.request_head_timeout,
        ),
    );
    proxy.add_tcp(&listen.to_string());
    let bus = match &follow {
        Follow::Config(_) => None,
        Follow::Bus(follower) => Some(follower.cluster.status()),
    };
    let cluster_mode = bus.is_some();
    let mode = if cluster_mode {
        "cluster"
    } else {
        "standalone"
    };
    let mut admin = Service::new(
        "admin".to_owned(),
        AdminApp {
            state: state.clone(),
            bus,
            usage: usage.clone(),
        },
    );
    admin.add_tcp(&admin_listen.to_string());
    admin.threads = Some(1);
    server.add_service(proxy);
    server.add_service(admin);
    match follow {
        Follow::Config(reloader) => {
            server.add_service(background_service("config reload", *reloader));
        }
        Follow::Bus(follower) => {
            server.add_service(background_service("snapshot bus", follower));
        }
    }

    if cluster_mode {
        server.add_service(background_service(
            "limits renewer",
            LimitsRenewer {
                governor: state.governor.clone(),
            },
        ));
    }
    server.add_service(background_service(
        "health checker",
        super::health_check::HealthChecker {
            state: state.clone(),
        },
    ));
    if let Some(shipper) = shipper {
        server.add_service(background_service(
            "usage shipper",
            UsageShipper {
                shipper: Mutex::new(Some(shipper)),
            },
        ));
    }

    let cluster_usage = usage.is_some();
    spawn_drain_watcher(&server, state.clone(), usage);
    tracing::info!(
        mode,
        listen = %listen,
        admin = %admin_listen,
        threads,
        tenants,
        keys,
        models,
        usage = %if cluster_usage {
            format!("spool {} → stream {}", config.cluster.spool_dir.display(), config.cluster.usage_stream)
        } else {
            format!("file {}", config.usage.jsonl_path.display())
        },
        "open model gateway data plane starting"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            state,
            delay: config.server.graceful_shutdown_delay,
        }),
    });
    Ok(())
}

/// Follows the snapshot bus (cluster mode) for the lifetime of the server.
struct BusFollower {
    cluster: Arc<Cluster>,
    state: Arc<State>,
}

#[async_trait]
impl BackgroundService for BusFollower {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.cluster.follow(&self.state.snapshots, shutdown).await;
    }
}

/// The pepper keys are hashed with: from `security.api_key_pepper`, else random per process.
struct Pepper {
    random: Vec<u8>,
}

impl Pepper {
    fn from_config(config: &GatewayConfig) -> Self {
        if config.security.api_key_pepper.is_none() {
            tracing::info!("`security.api_key_pepper` is not set: API keys from the config are hashed with a random per-process pepper");
        }
        Self {
            random: rand::random::<[u8; 32]>().to_vec(),
        }
    }

    fn hasher(&self, config: &GatewayConfig) -> KeyHasher {
        match &config.security.api_key_pepper {
            Some(pepper) => KeyHasher::new(pepper.expose().as_bytes()),
            None => KeyHasher::new(&self.random),
        }
    }
}

/// Rebuilds the snapshot on SIGHUP and when the config file changes. A broken config keeps
/// the last good snapshot and says why.
struct Reloader {
    source: ConfigSource,
    path: PathBuf,
    state: Arc<State>,
    pepper: Pepper,
    server: omg_shared::config::ServerConfig,
    fingerprint: Mutex<Option<u64>>,
}

impl Reloader {
    fn reload(&self, reason: &str) {
        let metrics = Metrics::global();
        let result = self
            .source
            .load()
            .map_err(|errors| errors.to_string())
            .and_then(|config| {
                let hasher = self.pepper.hasher(&config);
                let version = self.state.snapshots.load().version + 1;
                let snapshot = Snapshot::from_config(
                    &config,
                    &hasher,
                    version,
                    chrono::Utc::now().timestamp_millis(),
                )
                .map_err(|errors| errors.to_string())?;
                let runtime = RuntimeSnapshot::build(snapshot, hasher)?;
                if serde_json::to_value(&config.server).ok()
                    != serde_json::to_value(&self.server).ok()
                {
                    tracing::warn!(
                        "`server.*` settings changed; they take effect only after a restart"
                    );
                }
                let counts = runtime.counts();
                self.state
                    .snapshots
                    .swap(runtime)
                    .map(|version| (version, counts))
            });
        match result {
            Ok((version, (tenants, keys, models))) => {
                metrics
                    .snapshot_version
                    .set(i64::try_from(version).unwrap_or(i64::MAX));
                metrics.snapshot_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(reason, version, tenants, keys, models, "config reloaded");
            }
            Err(errors) => {
                metrics.snapshot_reloads.with_label_values(&["error"]).inc();
                tracing::error!(reason, path = %self.path.display(), errors = %errors, "config reload failed; still serving the last good config");
            }
        }
    }

    fn file_changed(&self) -> bool {
        let now = fingerprint(&self.path);
        match self.fingerprint.lock() {
            Ok(mut last) if *last != now => {
                *last = now;
                now.is_some()
            }
            _ => false,
        }
    }
}

fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; reload on file change only");
                None
            }
        };
        let mut tick = tokio::time::interval(RELOAD_POLL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => self.reload("SIGHUP"),
                _ = tick.tick() => {
                    if self.file_changed() {
                        self.reload("file change");
                    }
                }
            }
        }
    }
}

/// SIGTERM: flip readiness, wait `graceful_shutdown_delay`, then let Pingora stop accepting
/// and drain. SIGINT: exit now. SIGQUIT: Pingora's graceful upgrade.
struct Signals {
    state: Arc<State>,
    delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!(
                "cannot install signal handlers; the process will only stop when killed"
            );
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(delay_ms = self.delay.as_millis() as u64, "SIGTERM: not ready any more; draining");
                self.state.draining.store(true, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                ShutdownSignal::FastShutdown
            }
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}

/// Once Pingora has stopped accepting, exit as soon as no request is in flight (usage records
/// are written before a request's ctx is dropped), instead of sleeping the whole grace period.
fn spawn_drain_watcher(server: &Server, state: Arc<State>, usage: Option<ShipperHandle>) {
    let mut phases = server.watch_execution_phase();
    let spawned = std::thread::Builder::new()
        .name("drain-watcher".to_owned())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => {
                    let started = std::time::Instant::now();
                    while state.inflight.load(Ordering::SeqCst) > 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "drained: no request in flight"
                    );
                    if let Some(usage) = &usage {
                        // Ship what is pending (bounded); the rest waits in the spool.
                        usage.shutdown();
                        if !usage.wait_stopped(USAGE_DRAIN) {
                            tracing::warn!("usage shipper still busy; what is left stays in the spool for the next start");
                        }
                    }
                    tracing::info!("exiting");
                    std::process::exit(0);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "drain watcher not started; shutdown will wait the whole grace period");
    }
}

/// The admin listener.
struct AdminApp {
    state: Arc<State>,
    /// Cluster mode: the snapshot bus.
    bus: Option<Arc<BusStatus>>,
    /// Cluster mode: the usage shipper.
    usage: Option<ShipperHandle>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let (status, content_type, body) = match path.as_str() {
            "/healthz" => {
                let snapshot = self.state.snapshots.load();
                let (tenants, keys, models) = snapshot.counts();
                let age = (chrono::Utc::now().timestamp_millis() - snapshot.generated_at_ms).max(0)
                    / 1000;
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
                }
                if self.bus.is_some() {
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
            "/deployments" => {
                let snapshot = self.state.snapshots.load();
                let policy = &snapshot.routing.health;
                let list: Vec<_> = snapshot
                    .deployments()
                    .map(|d| d.health.status(policy, d.deployment.health_check))
                    .collect();
                (
                    200,
                    "application/json",
                    serde_json::to_vec(&serde_json::json!({ "deployments": list }))
                        .unwrap_or_default(),
                )
            }
            "/readyz" => {
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
            "/metrics" => {
                let metrics = Metrics::global();
                let generated_at_ms = self.state.snapshots.load().generated_at_ms;
                metrics
                    .snapshot_age
                    .set((chrono::Utc::now().timestamp_millis() - generated_at_ms).max(0) / 1000);
                (200, "text/plain; version=0.0.4", metrics.render())
            }
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
