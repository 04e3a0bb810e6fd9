//! `omg-controlplane`: see `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use omg_controlplane::{app, server, settings};
use omg_shared::config::parse_listen_addr;

/// Open Model Gateway control plane: Postgres source of truth and admin API.
#[derive(Parser, Debug)]
#[command(name = "omg-controlplane", version)]
struct Cli {
    /// YAML config file (optional: everything can come from ROUTER_* variables).
    #[arg(long, env = "ROUTER_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// `.env` file to read (default: `./.env` when present). The process environment wins.
    #[arg(long, env = "ROUTER_ENV_FILE")]
    env_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "OMG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the admin API (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Validate the configuration and exit.
    Check,
    /// Print the admin API's OpenAPI document (JSON) and exit; needs no configuration.
    Openapi,
    /// Re-seal stored provider credentials with `security.active_encryption_key`, then exit.
    RotateCredentials,
    /// The snapshot signing key (cluster mode).
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// The shared limit and spend counters in Redis (cluster mode).
    Counters {
        #[command(subcommand)]
        action: CountersCommand,
    },
    /// The hourly usage rollups that reports read.
    Rollups {
        #[command(subcommand)]
        action: RollupsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum RollupsCommand {
    /// Recompute the hourly rollups from `requests`, one transaction per hour (ingestion goes
    /// on meanwhile), then exit. Without bounds: from the first to the last stored request.
    /// Never rebuild hours whose requests retention already deleted: their rollups would be
    /// replaced by nothing.
    Rebuild {
        /// First hour (RFC 3339; rounded down to the hour).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// End (RFC 3339, exclusive; rounded up to the hour).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Subcommand, Debug)]
enum CountersCommand {
    /// Recompute the per-day spend counters of the last 366 days from Postgres and merge
    /// them into Redis (a counter keeps its value when Redis already holds more), then exit.
    Rebuild,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Walk the audit log's hash chains and report each (one JSON line per chain, with the
    /// first broken link if any); exit code 1 when a chain is broken.
    Verify {
        /// Only this tenant's chain (`global`: entries without a tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Print a new Ed25519 snapshot signing key (for `cluster.snapshot_signing_key`) and its
    /// public key (for the data planes' `cluster.snapshot_public_keys`); needs no
    /// configuration.
    GenerateSigning,
    /// Print the public key of the configured `cluster.snapshot_signing_key`.
    PublicKey,
}

/// Writes `text` to stdout.
fn print(text: &str) -> ExitCode {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// `keys generate-signing`: YAML lines to paste into each plane's `cluster` section.
fn generate_signing() -> ExitCode {
    match omg_shared::cluster::generate_signing_key() {
        Ok((private, public)) => print(&format!(
            "# control plane only, keep secret: cluster.snapshot_signing_key \
             (ROUTER_CLUSTER_SNAPSHOT_SIGNING_KEY)\nsnapshot_signing_key: {private}\n\
             # data planes (and the control plane's replicas): cluster.snapshot_public_keys \
             (ROUTER_CLUSTER_SNAPSHOT_PUBLIC_KEYS)\nsnapshot_public_keys: {public}"
        )),
        Err(error) => {
            eprintln!("omg-controlplane: cannot generate a key: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `keys public-key`.
fn public_key(config: &omg_shared::config::GatewayConfig) -> ExitCode {
    match config.cluster.snapshot_signer() {
        Ok(Some(signer)) => print(&signer.public_key_base64()),
        Ok(None) => {
            eprintln!("omg-controlplane: `cluster.snapshot_signing_key` is not set");
            ExitCode::from(2)
        }
        Err(message) => {
            eprintln!("omg-controlplane: {message}");
            ExitCode::from(2)
        }
    }
}

/// `audit verify`: the report on stdout; `Err` (exit code 1) when a chain is broken.
async fn audit_verify(
    config: &omg_shared::config::GatewayConfig,
    tenant: Option<&str>,
) -> Result<(), String> {
    use omg_controlplane::service::audit;
    let chain = tenant.map(audit::parse_chain).transpose()?;
    let url = app::database_url(config)?;
    let pool = omg_controlplane::db::connect(&url, 1, config.database.connect_timeout)
        .await
        .map_err(|e| format!("cannot connect to Postgres: {e}"))?;
    let mut conn = pool.get().await.map_err(|e| format!("database: {e}"))?;
    let (lines, intact) = audit::verify(&mut conn, chain)
        .await
        .map_err(|e| format!("reading the audit log: {e}"))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for line in &lines {
            let _ = writeln!(out, "{line}");
        }
    }
    if intact {
        tracing::info!(chains = lines.len(), "audit chains intact");
        Ok(())
    } else {
        Err("an audit chain is broken: see the `broken` entry above".to_owned())
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OMG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// `openapi`: the admin API's OpenAPI document on stdout; needs no configuration.
fn openapi() -> ExitCode {
    match serde_json::to_string_pretty(&omg_controlplane::api::openapi::document()) {
        Ok(text) => print(&text),
        Err(e) => {
            eprintln!("omg-controlplane: cannot render the OpenAPI document: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration and the listen address; `Err` is the exit code (2, message
/// already on stderr).
fn load_config(
    cli: &Cli,
) -> Result<(omg_shared::config::GatewayConfig, std::net::SocketAddr), ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (config, sources) =
        match settings::load(cli.config.as_deref(), cli.env_file.as_deref(), env) {
            Ok(loaded) => loaded,
            Err(errors) => {
                eprintln!("omg-controlplane: invalid configuration:\n{errors}");
                return Err(ExitCode::from(2));
            }
        };
    let listen = config.server.listen_addr_or(":8090").to_owned();
    let addr = match parse_listen_addr(&listen) {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("omg-controlplane: invalid configuration:\n`server.listen_addr`: {message}");
            return Err(ExitCode::from(2));
        }
    };
    tracing::info!(config_file = ?sources.config_file, env_file = ?sources.env_file, "configuration loaded");
    Ok((config, addr))
}

/// `rotate-credentials`.
async fn rotate_credentials(config: omg_shared::config::GatewayConfig) -> Result<(), String> {
    let state = app::start(config).await?;
    let (resealed, current) =
        omg_controlplane::service::catalog::rotate_credentials(&state).await?;
    tracing::info!(
        resealed,
        already_current = current,
        "credential rotation done"
    );
    Ok(())
}

/// `counters rebuild`: the report logged, and on stdout for scripts.
async fn counters_rebuild(config: omg_shared::config::GatewayConfig) -> Result<(), String> {
    let state = app::start(config).await?;
    let Some(redis) = &state.redis else {
        return Err(
            "redis.url (ROUTER_REDIS_URL) is not set: there are no shared counters to rebuild"
                .to_owned(),
        );
    };
    let report = omg_controlplane::workers::counters::rebuild(
        &state.config,
        &state.pool,
        redis,
        chrono::Utc::now(),
    )
    .await?;
    tracing::info!(
        tenants = report.tenants,
        keys = report.keys,
        counters = report.counters,
        raised = report.raised,
        kept = report.kept,
        since = %report.since,
        took_ms = report.took_ms,
        "spend counters rebuilt from Postgres"
    );
    // The report on stdout, for scripts.
    if let Ok(text) = serde_json::to_string(&report) {
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    Ok(())
}

/// `rollups rebuild`: the report logged, and on stdout for scripts.
async fn rollups_rebuild(
    config: omg_shared::config::GatewayConfig,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), String> {
    let state = app::start(config).await?;
    let report = omg_controlplane::service::reporting::rebuild::rebuild(&state.pool, from, to)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        hours = report.hours,
        rows = report.rows,
        took_ms = report.took_ms,
        "usage rollups rebuilt from requests"
    );
    if let Ok(text) = serde_json::to_string(&report) {
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    Ok(())
}

/// The internal listener (`cluster.internal_listen_addr`), when configured.
fn internal_server(
    state: &actix_web::web::Data<omg_controlplane::state::AppState>,
) -> Result<Option<actix_web::dev::Server>, String> {
    let Some(text) = &state.config.cluster.internal_listen_addr else {
        return Ok(None);
    };
    let internal_addr = omg_shared::config::parse_listen_addr(text)?;
    let listener = std::net::TcpListener::bind(internal_addr).map_err(|e| {
        format!("cannot listen on {internal_addr} (cluster.internal_listen_addr): {e}")
    })?;
    let server = omg_controlplane::internal::build(state.clone(), listener, 1)
        .map_err(|e| format!("cannot serve on {internal_addr}: {e}"))?;
    tracing::info!(addr = %internal_addr, "internal listener (files and batches from data planes) listening");
    Ok(Some(server))
}

/// `serve` (the default): the admin API, the internal listener and the background tasks.
async fn serve(
    config: omg_shared::config::GatewayConfig,
    addr: std::net::SocketAddr,
    workers: usize,
) -> Result<(), String> {
    let state = app::start(config).await?;
    let background = app::spawn_background(&state)?;
    let internal = internal_server(&state)?;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("cannot listen on {addr} (server.listen_addr): {e}"))?;
    let server = server::build(state, listener, workers)
        .map_err(|e| format!("cannot serve on {addr}: {e}"))?;
    tracing::info!(%addr, "control plane listening");
    let served = match internal {
        Some(internal) => tokio::try_join!(server, internal)
            .map(|_| ())
            .map_err(|e| format!("server error: {e}")),
        None => server.await.map_err(|e| format!("server error: {e}")),
    };
    background.shutdown().await;
    served
}

/// Runs a subcommand that needs the runtime.
async fn dispatch(
    command: Command,
    config: omg_shared::config::GatewayConfig,
    addr: std::net::SocketAddr,
    workers: usize,
) -> Result<(), String> {
    match command {
        Command::Migrate => app::migrate(&config).await.map(|_| ()),
        Command::Check | Command::Openapi | Command::Keys { .. } => Ok(()),
        Command::RotateCredentials => rotate_credentials(config).await,
        Command::Audit {
            action: AuditCommand::Verify { tenant },
        } => audit_verify(&config, tenant.as_deref()).await,
        Command::Counters {
            action: CountersCommand::Rebuild,
        } => counters_rebuild(config).await,
        Command::Rollups {
            action: RollupsCommand::Rebuild { from, to },
        } => rollups_rebuild(config, from, to).await,
        Command::Serve => serve(config, addr, workers).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Openapi)) {
        return openapi();
    }
    if matches!(
        cli.command,
        Some(Command::Keys {
            action: KeysCommand::GenerateSigning
        })
    ) {
        return generate_signing();
    }
    init_logs(cli.log_format);
    let (config, addr) = match load_config(&cli) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Check) {
        tracing::info!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    if matches!(command, Command::Keys { .. }) {
        return public_key(&config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("omg-controlplane: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers = match config.server.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    match runtime.block_on(dispatch(command, config, addr, workers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "omg-controlplane stopped");
            eprintln!("omg-controlplane: {message}");
            ExitCode::FAILURE
        }
    }
}
