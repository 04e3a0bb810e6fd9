//! Process assembly: the Pingora server with the `/v1` proxy service, the admin listener
//! (`/healthz`, `/readyz`, `/metrics`), the source of snapshot updates (standalone: config
//! reload on SIGHUP and file change; cluster: the snapshot bus, see `crate::cluster`) and the
//! drain-aware shutdown. The admin app, the reloader and the signal handling are in
//! `server/`.

mod admin;
mod reload;
mod signals;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use omg_shared::config::GatewayConfig;
use omg_shared::snapshot::Snapshot;
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use tokio::signal::unix::{signal, SignalKind};

use admin::AdminApp;
use reload::{Pepper, Reloader};
use signals::Signals;

use super::{Gateway, Settings, State};
use crate::auth::batch::BatchLines;
use crate::cluster::{BusStatus, Cluster, SnapshotSource};
use crate::config::ConfigSource;
use crate::idempotency::Idempotency;
use crate::limits::{Governor, GovernorSettings};
use crate::metrics::Metrics;
use crate::snapshot::{RuntimeSnapshot, SnapshotStore};
use crate::usage::shipper::{Shipper, ShipperHandle, ShipperOptions};
use crate::usage::spool::{Spool, SpoolOptions};
use crate::usage::{JsonlSink, UsageSink};

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
    let reloader = Reloader::new(source, path, started.state.clone(), pepper, &config);
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
    batch_lines: Option<BatchLines>,
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
            batch_lines: BatchLines::from_config(config)?,
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
            .with_idempotency(self.idempotency)
            .with_batch_lines(self.batch_lines),
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
        listeners,
        shipper,
    } = started;
    let usage = shipper.as_ref().map(Shipper::handle);
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
    let bus = match &follow {
        Follow::Config(_) => None,
        Follow::Bus(follower) => Some(follower.cluster.status()),
    };
    let cluster_mode = bus.is_some();
    add_listeners(&mut server, config, &listeners, &state, bus, usage.clone());
    add_background(&mut server, &state, follow, shipper);
    let cluster_usage = usage.is_some();
    signals::spawn_drain_watcher(&server, state.clone(), usage);
    log_start(
        config,
        &state,
        &listeners,
        threads,
        cluster_mode,
        cluster_usage,
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            state,
            delay: config.server.graceful_shutdown_delay,
        }),
    });
    Ok(())
}

/// The `/v1` proxy service, behind the connection cap and the request-head deadline
/// (`conn`), and the admin listener (one thread).
fn add_listeners(
    server: &mut Server,
    config: &GatewayConfig,
    listeners: &Listeners,
    state: &Arc<State>,
    bus: Option<Arc<BusStatus>>,
    usage: Option<ShipperHandle>,
) {
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
    proxy.add_tcp(&listeners.listen.to_string());
    let mut admin = Service::new(
        "admin".to_owned(),
        AdminApp {
            state: state.clone(),
            bus,
            usage,
        },
    );
    admin.add_tcp(&listeners.admin_listen.to_string());
    admin.threads = Some(1);
    server.add_service(proxy);
    server.add_service(admin);
}

/// The background services: the snapshot source, the limits renewer (cluster mode), the
/// health checker and the usage shipper (cluster mode).
fn add_background(
    server: &mut Server,
    state: &Arc<State>,
    follow: Follow,
    shipper: Option<Shipper>,
) {
    let cluster_mode = match follow {
        Follow::Config(reloader) => {
            server.add_service(background_service("config reload", *reloader));
            false
        }
        Follow::Bus(follower) => {
            server.add_service(background_service("snapshot bus", follower));
            true
        }
    };
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
}

/// The start-up line: mode, listeners, threads, what the snapshot holds, where usage goes.
fn log_start(
    config: &GatewayConfig,
    state: &State,
    listeners: &Listeners,
    threads: usize,
    cluster_mode: bool,
    cluster_usage: bool,
) {
    let (tenants, keys, models) = state.snapshots.load().counts();
    let mode = if cluster_mode {
        "cluster"
    } else {
        "standalone"
    };
    tracing::info!(
        mode,
        listen = %listeners.listen,
        admin = %listeners.admin_listen,
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
